"""The perfSONAR warehouse tables: the SQL and frame work behind each asset and its GX checks.

Every function takes the warehouse and the partition (``DayPartition``: the day and the source)
and returns what the asset reports; nothing here knows Dagster.
"""

from __future__ import annotations

import re
from typing import Sequence

import pandas as pd
import polars as pl

from netassets.core.partitions import DayPartition
from netassets.core.sql import load_sql
from netassets.core.warehouse import DuckDBWarehouse, PartitionWrite
from netassets.perfsonar.documents import Measurement
from netassets.perfsonar.model import HourScore, loss_matrix

_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,200}\Z")


def where(partition: DayPartition) -> dict:
    return {"day": partition.day, "source": partition.other}


def write_packet_loss(warehouse: DuckDBWarehouse, partition: DayPartition,
                      measurements: Sequence[Measurement]) -> tuple[PartitionWrite, dict]:
    """Replace the partition with the pulled measurements, one row per minute x destination (the
    last document of a minute wins); returns the write and what the load collapsed and covered."""
    m = measurements
    frame = pl.DataFrame({
        "seq": range(len(m)),
        "timestamp_ms": [x.timestamp_ms for x in m],
        "destination": [x.destination for x in m],
        "source_site": [x.source_site for x in m],
        "destination_site": [x.destination_site for x in m],
        "packet_loss": [x.packet_loss for x in m],
    }, schema_overrides={"source_site": pl.String, "destination_site": pl.String})
    with warehouse.connect() as conn:
        conn.register("perfsonar_pulled", frame.to_arrow())
        write = warehouse.replace_partition(
            "perfsonar_packet_loss", where(partition), select_sql=load_sql("perfsonar", "perfsonar_packet_loss"),
            params=where(partition), conn=conn,
        )
        destinations, collapsed, first, last = conn.execute(
            "SELECT count(DISTINCT destination), sum(documents) - count(*), min(minute), max(minute)"
            " FROM perfsonar_packet_loss WHERE day = $day AND source = $source",
            where(partition),
        ).fetchone()
    return write, {"duplicate_documents_collapsed": int(collapsed), "destinations": int(destinations),
                   "first_minute": str(first), "last_minute": str(last)}


def detector_matrix(warehouse: DuckDBWarehouse, partition: DayPartition) -> pd.DataFrame:
    """The minute x destination loss matrix of the day and the day before (an hour's reference)."""
    return loss_matrix(warehouse.query(load_sql("perfsonar", "detector_input"), where(partition)).to_pandas())


def score_rows(partition: DayPartition, scores: list[HourScore], cut: float, destinations: int) -> pl.DataFrame:
    return pl.DataFrame([{
        "day": partition.day, "source": partition.other, "hour": s.hour.to_pydatetime(), "status": s.status,
        "reference_rows": s.reference_rows, "subject_rows": s.subject_rows, "destinations": destinations,
        "accuracy": s.accuracy, "chance": s.chance, "score": s.score, "cut": cut, "flagged": s.flagged,
        "top_destinations": ", ".join(s.top_destinations), "baseline_max_z": s.baseline_max_z,
        "baseline_flagged": s.baseline_flagged,
    } for s in scores], schema_overrides={"accuracy": pl.Float64, "chance": pl.Float64, "score": pl.Float64,
                                          "baseline_max_z": pl.Float64})


def write_scores(warehouse: DuckDBWarehouse, partition: DayPartition, scores: list[HourScore], cut: float,
                 destinations: int) -> PartitionWrite:
    return warehouse.replace_partition("perfsonar_anomaly_scores", where(partition),
                                       data=score_rows(partition, scores, cut, destinations))


def check_index_name(index: str) -> None:
    if index and not _INDEX_NAME.match(index):
        raise ValueError(f"write_back_index {index!r} is not a valid lowercase index name")


def write_alarms(warehouse: DuckDBWarehouse, partition: DayPartition) -> tuple[PartitionWrite, pl.DataFrame]:
    """The flagged hours of the partition's scores; a quiet day has none (an empty partition is the
    right answer there, not an error)."""
    write = warehouse.replace_partition("perfsonar_alarms", where(partition),
                                        select_sql=load_sql("perfsonar", "perfsonar_alarms"),
                                        params=where(partition), allow_empty=True)
    return write, warehouse.read_partition("perfsonar_alarms", where(partition), order_by="hour")


def alarm_documents(partition: DayPartition, alarms: pl.DataFrame) -> list[dict]:
    """The alarms as documents for the write-back index (as the ATLAS alarm worker wrote them)."""
    return [{
        "alarm_id": f"{partition.other}|{a['hour'].isoformat()}", "source": partition.other,
        "hour": a["hour"].isoformat(), "score": a["score"],
        "destinations": [d for d in a["top_destinations"].split(", ") if d],
        "detector": "perfsonar_anomaly_scores",
    } for a in alarms.iter_rows(named=True)]


# ---- what the GX checks validate ------------------------------------------------------------

def loss_for_validation(warehouse: DuckDBWarehouse, partition: DayPartition) -> pd.DataFrame:
    return warehouse.query("""
        SELECT minute, destination, packet_loss, documents,
               datediff('minute', CAST(day AS TIMESTAMP), minute) AS minute_of_day
        FROM perfsonar_packet_loss WHERE day = $day AND source = $source""", where(partition)).to_pandas()


def scores_for_validation(warehouse: DuckDBWarehouse, partition: DayPartition) -> pd.DataFrame:
    # Unscored hours hold NULLs: score_matches_status checks that, and the range expectations read
    # them as 0 (core's GX summary cannot format the result of an all-NULL column, e.g. a day
    # on which no hour had enough reference).
    return warehouse.query("""
        SELECT hour, status, (score IS NOT NULL) = (status = 'scored') AS score_matches_status,
               coalesce(accuracy, 0) AS accuracy, coalesce(chance, 0) AS chance,
               -- a scaled accuracy (seed classifier rows carry an accuracy) is at most 1; the rank scan's
               -- -log10 tail probability is unbounded above
               CASE WHEN accuracy IS NULL THEN 0 ELSE coalesce(score, 0) END AS score
        FROM perfsonar_anomaly_scores WHERE day = $day AND source = $source""", where(partition)).to_pandas()
