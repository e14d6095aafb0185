"""perfSONAR packet-loss documents: field names of old and new indices, and parsing of search hits.

Old documents (network_weather-*, the seed) name the endpoints ``src``/``dest``; newer
``ps_packetloss`` documents use ``src_host``/``dest_host`` and add ``src_site``/``dest_site``.
A hit is read with the first field of each list that the document has, so one index pattern
can span both generations. A hit that cannot become a measurement is skipped and counted by
reason; the counts go to the asset's metadata.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import dagster as dg
from pydantic import Field

SKIP_REASONS = (
    "missing_timestamp",
    "bad_timestamp",
    "missing_source",
    "missing_destination",
    "missing_packet_loss",
    "non_numeric_packet_loss",
    "packet_loss_out_of_range",
)


class FieldMapping(dg.Config):
    """Where each measurement attribute lives in a document's _source."""

    timestamp: str = Field(default="timestamp", description="measurement time (epoch ms or ISO-8601)")
    packet_loss: str = Field(default="packet_loss", description="lost / sent packets of the test, 0..1")
    source: list[str] = Field(default=["src_host", "src"], description="source host fields, newest schema first")
    destination: list[str] = Field(default=["dest_host", "dest"], description="destination host fields, newest first")
    source_site: str = Field(default="src_site", description="source site (new documents only)")
    destination_site: str = Field(default="dest_site", description="destination site (new documents only)")
    indexed_at: str = Field(
        default="indexed_at",
        description="time the document was indexed (epoch ms date field, e.g. set by an ingest pipeline from"
        " _ingest.timestamp); the sensor's cursor. Pointing it at the measurement time works but cannot see late"
        " documents.",
    )
    tiebreaker: str = Field(
        default="_id",
        description="unique sortable field that orders documents with equal times; Elasticsearch 8 refuses"
        " sorting on _id by default, so point this at a unique keyword field there",
    )


@dataclass(frozen=True)
class Measurement:
    timestamp_ms: int
    source: str
    destination: str
    source_site: str | None
    destination_site: str | None
    packet_loss: float


@dataclass
class ParsedHits:
    measurements: list[Measurement] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    without_cursor_field: int = 0  # read, but invisible to the new-data sensor (no indexed_at)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def skipped_by_reason(self) -> dict[str, int]:
        return {reason: int(self.skipped.get(reason, 0)) for reason in SKIP_REASONS}


# Epoch milliseconds that a measurement can have: 1970 up to the end of year 9999, what Python's
# dates hold. Beyond is a unit mistake (a producer writing microseconds: year ~56000, still a
# valid Elasticsearch date) that would otherwise fail every sensor tick turning it into a day.
MAX_EPOCH_MS = 253_402_300_799_999


def epoch_ms(value: Any) -> int | None:
    """Epoch milliseconds from a number, a numeric string or an ISO-8601 string, within
    [0, MAX_EPOCH_MS]; None if unreadable or out of that range."""
    ms = _epoch_ms(value)
    return ms if ms is not None and 0 <= ms <= MAX_EPOCH_MS else None


def _epoch_ms(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return int(number) if math.isfinite(number) else None
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)  # perfSONAR stores UTC
        try:
            return int(parsed.timestamp() * 1000)
        except (OverflowError, ValueError, OSError):  # year 1 in a zone east of UTC, say
            return None
    return None


def _host(value: Any) -> str | None:
    """A host name or address as a string; None for what cannot be one (an array, an object)."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    return None


def first_present(source: Mapping[str, Any], names: Iterable[str]) -> Any:
    for name in names:
        value = source.get(name)
        if value not in (None, ""):
            return value
    return None


def _loss(value: Any) -> tuple[float | None, str | None]:
    if value is None or value == "":
        return None, "missing_packet_loss"
    if isinstance(value, bool):
        return None, "non_numeric_packet_loss"
    try:
        loss = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float64
        return None, "non_numeric_packet_loss"
    if not math.isfinite(loss):
        return None, "non_numeric_packet_loss"
    if not 0.0 <= loss <= 1.0:
        return None, "packet_loss_out_of_range"
    return loss, None


def parse_hit(hit: Mapping[str, Any], fields: FieldMapping) -> Measurement | str:
    """A Measurement, or the reason (one of SKIP_REASONS) the hit is skipped."""
    doc = hit.get("_source") or {}
    raw_ts = doc.get(fields.timestamp)
    if raw_ts in (None, ""):
        return "missing_timestamp"
    ts = epoch_ms(raw_ts)
    if ts is None:
        return "bad_timestamp"
    source = _host(first_present(doc, fields.source))
    if source is None:
        return "missing_source"
    destination = _host(first_present(doc, fields.destination))
    if destination is None:
        return "missing_destination"
    loss, reason = _loss(doc.get(fields.packet_loss))
    if reason:
        return reason
    site = doc.get(fields.source_site)
    dest_site = doc.get(fields.destination_site)
    return Measurement(ts, source, destination, _host(site), _host(dest_site), loss)


def parse_hits(hits: Iterable[Mapping[str, Any]], fields: FieldMapping) -> ParsedHits:
    parsed = ParsedHits()
    for hit in hits:
        result = parse_hit(hit, fields)
        if isinstance(result, str):
            parsed.skipped[result] += 1
        else:
            parsed.measurements.append(result)
    return parsed


def source_clause(fields: FieldMapping, source: str) -> dict:
    """Match a source host in any source field, as a keyword or through a dynamic mapping's .keyword.
    On an older index's analysed text field the ``term`` also matches other hosts (another case,
    more words): the caller keeps only the measurements whose source is exactly ``source``."""
    should = []
    for name in fields.source:
        should.append({"term": {name: source}})
        should.append({"term": {f"{name}.keyword": source}})
    return {"bool": {"should": should, "minimum_should_match": 1}}
