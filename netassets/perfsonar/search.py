"""The search client: perfSONAR packet-loss documents from OpenSearch or Elasticsearch 7/8.

``SearchClient`` holds the connection settings and every call; the Dagster resource
``netassets.defs.perfsonar.resources.PerfsonarSearch`` is this class bound as a resource.

opensearch-py speaks to OpenSearch and to Elasticsearch 7.x/8.x for the calls used here
(search with sort + search_after, bulk); the `elasticsearch` 8/9 clients refuse OpenSearch
(product check, compatible-with headers), so opensearch-py is the one client for both.

Credentials come from environment variables through ``dg.EnvVar`` and are only handed to the
client; every error raised here names the hosts and the HTTP status, never a credential, and a
host URL carrying ``user:password@`` is refused at configuration time.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import urlsplit

import dagster as dg
from opensearchpy import OpenSearch, helpers
from opensearchpy import exceptions as os_errors
from pydantic import Field

from netassets.core.partitions import daily
from netassets.core.settings import safe_name
from netassets.perfsonar.documents import FieldMapping, Measurement, ParsedHits, parse_hits, source_clause

HOSTS_ENV = "NETASSETS_ES_HOSTS"
USER_ENV = "NETASSETS_ES_USER"
PASSWORD_ENV = "NETASSETS_ES_PASSWORD"


class SearchError(RuntimeError):
    """A search call failed for a reason other than the cluster being unreachable."""


class SearchUnavailableError(SearchError):
    """The cluster could not be reached (refused, DNS, timeout after retries)."""


class SearchAuthError(SearchError):
    """The cluster refused the credentials (401) or the user may not read the index (403)."""


@dataclass(frozen=True)
class Cursor:
    """Position after the last document a sensor tick has seen: indexed time, index, tiebreaker.
    The index is part of it because ``_id``, the default tiebreaker, is unique only within one
    index: two documents of one instant with one id in two indices would otherwise sort as one,
    and a page or tick ending between them passed over the second for good."""

    indexed_at: int
    tiebreaker: Any
    index: str = ""  # "": a cursor stored before the index was part of it (sorts before every index)

    def as_sort(self) -> list[Any]:
        return [self.indexed_at, self.index, self.tiebreaker]


@dataclass
class ChangeBatch:
    """Documents indexed after a cursor: what they touch and where the cursor moves to."""

    parsed: ParsedHits
    cursor: Cursor | None  # None when nothing new was found
    documents: int
    truncated: bool  # more documents are waiting beyond max_documents
    without_cursor_field: int = 0  # documents in the index the sensor can never see: no indexed_at


def _check_host(url: str, position: int) -> str:
    """A host entry as a URL, refused (without echoing it: it may hold a password) when it carries
    credentials or is not a URL of a host and port."""
    where = f"entry {position} of perfsonar_search.hosts ({HOSTS_ENV})"
    if "@" in url:
        # Any '@', not only what urlsplit reads as user:password@ ('http://u:p/w@host' hides it):
        # the URL would end up in error messages and skip reasons. Credentials go in the env vars.
        raise ValueError(f"{where} holds '@': host URLs must not carry credentials; set {USER_ENV} and "
                         f"{PASSWORD_ENV} instead")
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number, quoting it)
    except ValueError:
        raise ValueError(f"{where} has a port that is not a number") from None
    if not parts.hostname or parts.scheme not in ("http", "https"):
        raise ValueError(f"{where} is not an http(s) URL of a host")
    return parts.geturl()


class SearchClient(dg.Config):
    """An OpenSearch / Elasticsearch cluster holding perfSONAR packet-loss documents."""

    hosts: str = Field(description=f"comma-separated cluster URLs (env {HOSTS_ENV})")
    index_pattern: str = Field(default="ps_packetloss*", description="indices to read")
    username: str | None = Field(default=None, description=f"basic-auth user (env {USER_ENV})")
    password: str | None = Field(default=None, repr=False, description=f"basic-auth password (env {PASSWORD_ENV})")
    verify_certs: bool = Field(default=True, description="verify the TLS certificates of the cluster")
    ca_certs: str | None = Field(default=None, description="CA bundle for TLS clusters")
    timeout_seconds: float = Field(default=30.0, gt=0, description="timeout of one HTTP request")
    max_retries: int = Field(default=3, ge=0, description="retries on connection errors and timeouts")
    page_size: int = Field(default=5000, ge=1, le=10_000, description="hits per search_after page")
    settle_seconds: int = Field(
        default=60, ge=0,
        description="the sensor ignores documents indexed less than this long ago, so a document that becomes"
        " searchable late (refresh interval, bulk in flight) cannot fall behind the cursor",
    )
    fields: FieldMapping = Field(default_factory=FieldMapping, description="where each attribute lives in a document")

    @property
    def host_list(self) -> list[str]:
        # Checked here rather than in a pydantic validator: a validation error echoes the input value.
        urls = [_check_host(h.strip(), position) for position, h in enumerate(self.hosts.split(","), 1) if h.strip()]
        if not urls:
            raise ValueError("perfsonar_search.hosts is empty")
        return urls

    @contextmanager
    def client(self) -> Iterator[OpenSearch]:
        """A client for one operation, closed with its connection pool on exit.

        Every method below opens its own: the resource holds no connection between calls, so
        a sensor tick or a step cannot leave one open, and no teardown hook is needed (one
        would make sensor contexts context-managed).
        """
        auth = (self.username, self.password or "") if self.username else None
        client = OpenSearch(
            hosts=self.host_list,
            http_auth=auth,
            verify_certs=self.verify_certs,
            ca_certs=self.ca_certs,
            ssl_show_warn=False,
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
            retry_on_timeout=True,
        )
        try:
            yield client
        finally:
            client.close()

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Translate client exceptions into errors that say what failed, without credentials."""
        where = f"{action} on {','.join(self.host_list)} (index {self.index_pattern!r})"
        try:
            yield
        except os_errors.AuthenticationException:
            raise SearchAuthError(
                f"{where}: authentication failed (HTTP 401); check {USER_ENV} / {PASSWORD_ENV}"
            ) from None
        except os_errors.AuthorizationException as exc:
            raise SearchAuthError(f"{where}: not authorised (HTTP 403, {exc.error})") from None
        except os_errors.ConnectionError as exc:
            # ConnectionTimeout is a ConnectionError; the client already retried max_retries times.
            raise SearchUnavailableError(f"{where}: cluster unreachable ({type(exc).__name__})") from None
        except os_errors.TransportError as exc:
            raise SearchError(f"{where}: HTTP {exc.status_code} {exc.error}: {exc.info}") from None

    def _pages(self, client: OpenSearch, query: dict, sort: list[dict], source_fields: Sequence[str],
               search_after: list | None, limit: int | None) -> Iterator[list[dict]]:
        """search_after pages in sort order, up to ``limit`` hits (consistent under concurrent indexing
        because every page restarts from the last sort key rather than from an offset)."""
        seen = 0
        while limit is None or seen < limit:
            size = self.page_size if limit is None else min(self.page_size, limit - seen)
            body: dict[str, Any] = {"size": size, "query": query, "sort": sort, "_source": list(source_fields),
                                    "track_total_hits": False}
            if search_after is not None:
                body["search_after"] = search_after
            # A shard that fails or times out still answers HTTP 200 with the other shards' hits:
            # taken as the whole page, it would move the sensor's cursor past the missing ones.
            response = client.search(index=self.index_pattern, body=body,
                                     params={"allow_partial_search_results": "false"})
            shards = response.get("_shards") or {}
            if response.get("timed_out") or shards.get("failed"):
                raise SearchError(f"search answered from {shards.get('successful', '?')} of {shards.get('total', '?')} "
                                  f"shards ({shards.get('failed', 0)} failed, timed out: {bool(response.get('timed_out'))})"
                                  "; nothing is taken from a partial answer")
            hits = response["hits"]["hits"]
            if not hits:
                return
            yield hits
            seen += len(hits)
            search_after = hits[-1]["sort"]
            if len(hits) < size:
                return

    def _source_fields(self) -> list[str]:
        f = self.fields
        return [f.timestamp, f.packet_loss, *f.source, *f.destination, f.source_site, f.destination_site]

    def fetch_day(self, source: str, day: dt.date) -> ParsedHits:
        """Every packet-loss measurement from ``source`` with a timestamp in ``day`` (UTC), in time order."""
        start = int(dt.datetime.combine(day, dt.time(), dt.timezone.utc).timestamp() * 1000)
        f = self.fields
        query = {"bool": {"filter": [
            {"range": {f.timestamp: {"gte": start, "lt": start + 86_400_000}}},
            source_clause(f, source),
        ]}}
        sort = [{f.timestamp: "asc"}, {"_index": "asc"}, {f.tiebreaker: "asc"}]
        parsed = ParsedHits()
        with self._errors(f"fetching {source} on {day}"), self.client() as client:
            for hits in self._pages(client, query, sort, self._source_fields(), None, None):
                page = parse_hits(hits, f)
                # exactly this source: an analysed text field's term also matched other hosts
                parsed.measurements.extend(m for m in page.measurements if m.source == source)
                parsed.skipped.update(page.skipped)
            parsed.without_cursor_field = self._count_without_cursor_field(client, query["bool"]["filter"])
        return parsed

    def _count_without_cursor_field(self, client: OpenSearch, filters: list[dict] | None = None) -> int:
        """Documents lacking the cursor field: perfsonar_new_data_sensor can never see them, so they are counted."""
        query = {"bool": {"filter": filters or [], "must_not": [{"exists": {"field": self.fields.indexed_at}}]}}
        return int(client.count(index=self.index_pattern, body={"query": query})["count"])

    def changes_since(self, cursor: Cursor | None, max_documents: int, now: float | None = None) -> ChangeBatch:
        """Documents indexed after ``cursor`` (and at least settle_seconds ago), oldest first."""
        f = self.fields
        settled = int(((now if now is not None else time.time()) - self.settle_seconds) * 1000)
        query = {"range": {f.indexed_at: {"lte": settled}}}  # also drops documents without the field
        sort = [{f.indexed_at: "asc"}, {"_index": "asc"}, {f.tiebreaker: "asc"}]
        parsed = ParsedHits()
        last: list | None = None
        documents = 0
        with self._errors("looking for new documents"), self.client() as client:
            for hits in self._pages(client, query, sort, self._source_fields(),
                                    cursor.as_sort() if cursor else None, max_documents):
                page = parse_hits(hits, f)
                parsed.measurements.extend(page.measurements)
                parsed.skipped.update(page.skipped)
                documents += len(hits)
                last = hits[-1]["sort"]
            unseen = self._count_without_cursor_field(client)
        return ChangeBatch(
            parsed=parsed,
            cursor=Cursor(int(last[0]), last[2], last[1]) if last else None,
            documents=documents,
            truncated=documents >= max_documents,
            without_cursor_field=unseen,
        )

    def index_documents(self, index: str, documents: Sequence[dict], id_field: str | None = None) -> int:
        """Bulk-index documents (alarms write-back, demo seeding); returns the number indexed."""
        actions = [
            {"_index": index, **({"_id": doc[id_field]} if id_field else {}), "_source": doc} for doc in documents
        ]
        with self._errors(f"indexing into {index!r}"), self.client() as client:
            indexed, _ = helpers.bulk(client, actions, chunk_size=self.page_size, refresh="wait_for")
        return int(indexed)


def parse_cursor(raw: str | None) -> Cursor | None:
    """The sensor's stored cursor (JSON of ``indexed_at``, ``index`` and ``tiebreaker``), None at
    the beginning. A cursor stored without ``index`` resumes at the first document of its instant:
    that instant's documents are seen again, and their partitions re-made (a replace: no harm)."""
    if not raw:
        return None
    value = json.loads(raw)
    return Cursor(int(value["indexed_at"]), value["tiebreaker"], str(value.get("index", "")))


def dump_cursor(cursor: Cursor) -> str:
    return json.dumps({"indexed_at": cursor.indexed_at, "index": cursor.index, "tiebreaker": cursor.tiebreaker})


def touched_partitions(measurements: Iterable[Measurement]) -> tuple[Counter, Counter]:
    """{'<day>|<source>': documents} inside the partitions' calendar, and what was left out, by reason."""
    touched, ignored = Counter(), Counter()
    for m in measurements:
        day = dt.datetime.fromtimestamp(m.timestamp_ms / 1000, dt.timezone.utc).date()
        try:
            safe_name(m.source, "source")
        except ValueError:
            ignored["source_not_a_safe_name"] += 1
            continue
        if not daily.has_partition_key(day.isoformat()):  # before the day axis or after today: no partition
            ignored["day_outside_partitions"] += 1
            continue
        touched[f"{day.isoformat()}|{m.source}"] += 1
    return touched, ignored
