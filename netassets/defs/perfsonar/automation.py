"""perfSONAR jobs, sensors and schedules.

perfsonar_new_data_sensor runs for exactly the day x source partitions that new documents touch.
The cursor is the (indexed_at, index, tiebreaker) sort key of the last document seen, so a tick reads
only documents indexed since, in a total order: nothing is read twice or skipped, and a late
document (an old measurement indexed today) is after the cursor like any other and re-runs its
old day; the scores and alarms of the day after, whose first hours use it as reference, follow by
their automation condition (``core.automation.follow_upstream``, evaluated by
``netassets_automation``). Dagster stores the cursor only when the tick returns it: an
unreachable cluster gives a SkipReason and the next tick starts from the same place; an
authentication failure fails the tick with a clear error (a misconfiguration to fix, not a
transient outage).
"""


import dagster as dg

from netassets.core.automation import daily_ingestion_schedule
from netassets.defs.perfsonar.pipeline import PIPELINE
from netassets.defs.perfsonar.resources import PerfsonarSearch
from netassets.perfsonar.search import SearchUnavailableError, dump_cursor, parse_cursor, touched_partitions

# Bounds one tick's work; the rest is picked up by the next tick from the moved cursor.
MAX_DOCUMENTS_PER_TICK = 100_000

perfsonar_ingest_job = dg.define_asset_job(
    "perfsonar_ingest_job",
    selection=dg.AssetSelection.assets("perfsonar_packet_loss", "perfsonar_anomaly_scores", "perfsonar_alarms"),
    partitions_def=PIPELINE.partitions,
    description="Per day x source: pull the packet loss, score every hour, write the alarms.",
)


@dg.sensor(
    name="perfsonar_new_data_sensor",
    job=perfsonar_ingest_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="New packet-loss documents in the cluster -> new sources as partitions, runs for the touched"
    " day x source partitions (late documents re-run their day).",
)
def perfsonar_new_data_sensor(
    context: dg.SensorEvaluationContext, perfsonar_search: PerfsonarSearch
) -> dg.SensorResult | dg.SkipReason:
    cursor = parse_cursor(context.cursor)
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

    touched, ignored = touched_partitions(batch.parsed.measurements)
    if batch.parsed.skipped_total or ignored:
        context.log.warning("%d new documents unusable %s, %d outside the partitions %s", batch.parsed.skipped_total,
                            dict(batch.parsed.skipped), sum(ignored.values()), dict(ignored))
    if batch.truncated:
        context.log.info("more than %d new documents; the next tick continues from the cursor", MAX_DOCUMENTS_PER_TICK)
    known = set(context.instance.get_dynamic_partitions(PIPELINE.dynamic.name))
    new_sources = sorted({key.split("|")[1] for key in touched} - known)
    position = f"{batch.cursor.indexed_at}:{batch.cursor.index}:{batch.cursor.tiebreaker}"
    return dg.SensorResult(
        run_requests=[
            # The run key names the cursor position: a tick evaluated twice from the same cursor
            # (its result was not stored) asks for the same runs and Dagster launches them once.
            dg.RunRequest(partition_key=key, run_key=f"{key}@{position}",
                          tags={"netassets/trigger": "perfsonar_new_data_sensor", "perfsonar/documents": str(n)})
            for key, n in sorted(touched.items())
        ],
        dynamic_partitions_requests=[PIPELINE.dynamic.build_add_request(new_sources)] if new_sources else [],
        cursor=dump_cursor(batch.cursor),
    )


perfsonar_daily_ingestion_schedule = daily_ingestion_schedule(
    name="perfsonar_daily_ingestion_schedule",
    target=perfsonar_ingest_job,
    dynamic=PIPELINE.dynamic,
    description="Yesterday x every known source, for clusters where the sensor is not running.",
)
