"""Day x region partitions, declared once.

The day dimension is a calendar: every day from NETASSETS_START_DATE (by default the
generators' first day, NETASSETS_SAMPLE_START = 2023-11-01) exists, so new days need no
registration; the second dimension is dynamic per pipeline and filled by that
pipeline's landing sensor (or `netassets register`) from what it finds on disk or in the index.
Multi-partition keys read ``<day>|<region>`` (dimensions sorted by name).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from netassets.core.settings import safe_name, start_date

DAY = "day"

daily = dg.DailyPartitionsDefinition(start_date=start_date(), end_offset=1)


def day_by(dimension: str, dynamic: dg.DynamicPartitionsDefinition) -> dg.MultiPartitionsDefinition:
    """MultiPartitionsDefinition of the shared calendar and one dynamic dimension."""
    if dimension <= DAY:
        # Dagster orders dimensions by name; keep 'day' first so keys read '<day>|<other>'.
        raise ValueError(f"second dimension {dimension!r} must sort after 'day'")
    return dg.MultiPartitionsDefinition(
        {DAY: daily, dimension: dynamic}
    )


@dataclass(frozen=True)
class DayPartition:
    day: dt.date
    other: str  # region, site or source, already validated

    @property
    def key(self) -> str:
        return f"{self.day.isoformat()}|{self.other}"


def parse_day_key(day: str) -> dt.date:
    try:
        return dt.date.fromisoformat(day)
    except (TypeError, ValueError):
        raise ValueError(f"invalid day {day!r} in partition key: expected YYYY-MM-DD") from None


def parse_partition_key(key: str | dg.MultiPartitionKey, dimension: str) -> DayPartition:
    """Validate a ``<day>|<value>`` key before it reaches SQL or a path."""
    if isinstance(key, dg.MultiPartitionKey):
        parts = key.keys_by_dimension
        day, other = parts.get(DAY), parts.get(dimension)
    else:
        pieces = str(key).split("|")
        if len(pieces) != 2:
            raise ValueError(f"invalid partition key {key!r}: expected '<day>|<{dimension}>'")
        day, other = pieces
    return DayPartition(parse_day_key(day), safe_name(other, dimension))


def context_partition(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, dimension: str) -> DayPartition:
    return parse_partition_key(context.partition_key, dimension)
