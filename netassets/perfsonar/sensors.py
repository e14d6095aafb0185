"""perfsonar_new_data_sensor: runs for exactly the day x source partitions that new documents touch.

The cursor is the (indexed_at, tiebreaker) sort key of the last document seen, so a tick reads
only documents indexed since, in a total order: nothing is read twice or skipped, and a late
document (an old measurement indexed today) is after the cursor like any other and re-runs its
old day; perfsonar_rescore_sensor then re-scores the day after, whose first hours use it as
reference. Dagster stores the cursor only when the tick returns it: an unreachable cluster gives a
SkipReason and the next tick starts from the same place; an authentication failure fails the
tick with a clear error (a misconfiguration to fix, not a transient outage).
"""

import datetime as dt
import json
from collections import Counter
from typing import Iterable

import dagster as dg

from netassets.core.automation import daily_ingestion_schedule, materialization_sensor
from netassets.core.settings import safe_name, start_date
from netassets.perfsonar.assets import perfsonar_alarms, perfsonar_anomaly_scores, perfsonar_packet_loss
from netassets.perfsonar.documents import Measurement
from netassets.perfsonar.partitions import perfsonar_partitions, perfsonar_sources_name
from netassets.perfsonar.resources import Cursor, PerfsonarSearch, SearchUnavailableError

# Bounds one tick's work; the rest is picked up by the next tick from the moved cursor.
MAX_DOCUMENTS_PER_TICK = 100_000

perfsonar_job = dg.define_asset_job(
    "perfsonar_job",
    selection=dg.AssetSelection.assets(perfsonar_packet_loss, perfsonar_anomaly_scores, perfsonar_alarms),
    partitions_def=perfsonar_partitions,
)


def _cursor(raw: str | None) -> Cursor | None:
    if not raw:
        return None
    value = json.loads(raw)
    return Cursor(int(value["indexed_at"]), value["tiebreaker"])


def touched_partitions(measurements: Iterable[Measurement], today: dt.date) -> tuple[Counter, Counter]:
    """{'<day>|<source>': documents} inside the partitions' calendar, and what was left out, by reason."""
    first_day = dt.date.fromisoformat(start_date())
    touched, ignored = Counter(), Counter()
    for m in measurements:
        day = dt.datetime.fromtimestamp(m.timestamp_ms / 1000, dt.timezone.utc).date()
        try:
            safe_name(m.source, "source")
        except ValueError:
            ignored["source_not_a_safe_name"] += 1
            continue
        if not first_day <= day <= today + dt.timedelta(days=1):
            ignored["day_outside_partitions"] += 1
            continue
        touched[f"{day.isoformat()}|{m.source}"] += 1
    return touched, ignored


@dg.sensor(
    name="perfsonar_new_data_sensor",
    job=perfsonar_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="New packet-loss documents in the cluster -> new sources as partitions, runs for the touched"
    " day x source partitions (late documents re-run their day).",
)
def perfsonar_new_data_sensor(
    context: dg.SensorEvaluationContext, perfsonar_search: PerfsonarSearch
) -> dg.SensorResult | dg.SkipReason:
    cursor = _cursor(context.cursor)
    try:
        batch = perfsonar_search.changes_since(cursor, MAX_DOCUMENTS_PER_TICK)
    except SearchUnavailableError as exc:
        return dg.SkipReason(f"{exc}; cursor kept at {context.cursor or 'the beginning'}")
    invisible = ""
    if batch.without_cursor_field:
        invisible = (f"; {batch.without_cursor_field} documents in {perfsonar_search.index_pattern!r} have no "
                     f"{perfsonar_search.fields.indexed_at!r} field and are never seen by this sensor")
        context.log.warning(invisible.removeprefix("; "))
    if batch.cursor is None:
        return dg.SkipReason(f"no documents indexed since {context.cursor or 'the beginning'}{invisible}")

    touched, ignored = touched_partitions(batch.parsed.measurements, dt.datetime.now(dt.timezone.utc).date())
    if batch.parsed.skipped_total or ignored:
        context.log.warning("%d new documents unusable %s, %d outside the partitions %s", batch.parsed.skipped_total,
                            dict(batch.parsed.skipped), sum(ignored.values()), dict(ignored))
    if batch.truncated:
        context.log.info("more than %d new documents; the next tick continues from the cursor", MAX_DOCUMENTS_PER_TICK)
    known = set(context.instance.get_dynamic_partitions(perfsonar_sources_name))
    new_sources = sorted({key.split("|")[1] for key in touched} - known)
    position = f"{batch.cursor.indexed_at}:{batch.cursor.tiebreaker}"
    return dg.SensorResult(
        run_requests=[
            # The run key names the cursor position: a tick evaluated twice from the same cursor
            # (its result was not stored) asks for the same runs and Dagster launches them once.
            dg.RunRequest(partition_key=key, run_key=f"{key}@{position}",
                          tags={"netassets/trigger": "perfsonar_new_data_sensor", "perfsonar/documents": str(n)})
            for key, n in sorted(touched.items())
        ],
        dynamic_partitions_requests=(
            [dg.AddDynamicPartitionsRequest(perfsonar_sources_name, new_sources)] if new_sources else []
        ),
        cursor=json.dumps({"indexed_at": batch.cursor.indexed_at, "tiebreaker": batch.cursor.tiebreaker}),
    )


def next_day(partition_key: str) -> str:
    day, source = partition_key.split("|", 1)
    return f"{dt.date.fromisoformat(day) + dt.timedelta(days=1)}|{source}"


def _rescore_requests(context: dg.SensorEvaluationContext, records) -> list[dg.RunRequest]:
    loaded = context.instance.get_materialized_partitions(perfsonar_packet_loss.key)
    requests = {}
    for record in records:
        following = next_day(record.partition_key)
        if following in loaded:  # where the next day has no losses yet, its own load will score it
            requests[following] = dg.RunRequest(
                partition_key=following, run_key=f"rescore {following} after #{record.storage_id}",
                asset_selection=[perfsonar_anomaly_scores.key, perfsonar_alarms.key],
                tags={"netassets/trigger": "perfsonar_rescore_sensor", "perfsonar/reloaded": record.partition_key},
            )
    return list(requests.values())


perfsonar_rescore_sensor = materialization_sensor(
    name="perfsonar_rescore_sensor",
    watched=perfsonar_packet_loss.key,
    job=perfsonar_job,
    requests=_rescore_requests,
    description="A re-loaded day of packet loss -> re-score the day after, whose first hours use it as reference.",
)


perfsonar_daily_schedule = daily_ingestion_schedule(
    name="perfsonar_daily_ingest",
    target=perfsonar_job,
    dynamic_partitions_name=perfsonar_sources_name,
    description="Yesterday x every known source, for clusters where the sensor is not running.",
)
