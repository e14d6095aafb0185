import os

import dagster as dg

from netassets.perfsonar.assets import perfsonar_alarms, perfsonar_anomaly_scores, perfsonar_packet_loss
from netassets.perfsonar.checks import perfsonar_anomaly_scores_gx, perfsonar_packet_loss_gx
from netassets.perfsonar.resources import HOSTS_ENV, PASSWORD_ENV, USER_ENV, PerfsonarSearch
from netassets.perfsonar.sensors import (
    perfsonar_daily_schedule,
    perfsonar_job,
    perfsonar_new_data_sensor,
    perfsonar_rescore_sensor,
)


def _credential(name: str) -> dg.EnvVar | None:
    # Only the variable's name goes into the config; an unset variable means no authentication.
    return dg.EnvVar(name) if name in os.environ else None


defs = dg.Definitions(
    assets=[perfsonar_packet_loss, perfsonar_anomaly_scores, perfsonar_alarms],
    asset_checks=[perfsonar_packet_loss_gx, perfsonar_anomaly_scores_gx],
    jobs=[perfsonar_job],
    sensors=[perfsonar_new_data_sensor, perfsonar_rescore_sensor],
    schedules=[perfsonar_daily_schedule],
    resources={
        "perfsonar_search": PerfsonarSearch(
            hosts=dg.EnvVar(HOSTS_ENV), username=_credential(USER_ENV), password=_credential(PASSWORD_ENV)
        )
    },
)
