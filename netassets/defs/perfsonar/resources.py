"""The perfsonar_search resource: the search client (``netassets.perfsonar.search``) bound with credentials from the environment."""

import os

import dagster as dg

from netassets.perfsonar.search import HOSTS_ENV, PASSWORD_ENV, USER_ENV, SearchClient


class PerfsonarSearch(SearchClient, dg.ConfigurableResource):
    """An OpenSearch / Elasticsearch cluster holding perfSONAR packet-loss documents."""


def _credential(name: str) -> dg.EnvVar | None:
    # Only the variable's name goes into the config; an unset variable means no authentication.
    return dg.EnvVar(name) if name in os.environ else None


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={
        "perfsonar_search": PerfsonarSearch(
            hosts=dg.EnvVar(HOSTS_ENV), username=_credential(USER_ENV), password=_credential(PASSWORD_ENV)
        )
    })
