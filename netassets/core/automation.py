"""Sensors and schedules every pipeline builds the same way.

- ``landing_sensor``: watches a pipeline's landing folder. Each ``<day>|<region>`` partition on
  disk has a fingerprint of its files (name, size, mtime); the pipeline's raw asset records the
  fingerprint of the files it read on its materialisation (metadata key ``LANDING_FINGERPRINT``).
  A tick adds unseen regions to the dynamic partitions and requests runs for exactly the
  partitions whose fingerprint on disk differs from the one on their latest materialisation, so
  a first tick over a landing folder already materialised requests only what is new or changed.
  Run keys are ``<partition>@<fingerprint>`` so a tick never duplicates work. The cursor holds
  only the partitions requested and not yet seen materialised with that fingerprint (in flight,
  or failed: re-requested when their files change): it stays bounded. Dagster stores the new
  cursor only when the tick succeeds. A file is taken only once
  it is complete: a partition with a file modified within the settle interval
  (NETASSETS_LANDING_SETTLE_SECONDS, default 30 s) waits for a later tick, so a copy in
  progress is never ingested half-written. An entry that cannot be read (a broken symlink, no
  permission) or a link that leads outside the landing root is skipped and named in the tick's
  log; the rest of the landing folder proceeds.
- ``follow_upstream``: the declarative rule for assets that must be re-made after what they
  read changes (clusters after a GMM refit or new features, perfSONAR's re-score of the day
  after): requested once each time a dependency is updated, never while a dependency is
  missing or in progress. One ``automation_sensor`` evaluates every such condition (Dagster's
  own follow-up mechanism; no hand-written follow-up sensor).
- ``monthly_retrain_schedule``: model assets, 1st of the month 03:00 UTC (NETASSETS_RETRAIN_CRON).
- ``daily_ingestion_schedule``: yesterday x every known region, 02:00 UTC (NETASSETS_INGEST_CRON).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import dagster as dg

from netassets.core.files import file_states, inside_root
from netassets.core.partitions import daily
from netassets.core.settings import landing_settle_seconds, parse_day, safe_name, start_date

RETRAIN_CRON_ENV = "NETASSETS_RETRAIN_CRON"
INGEST_CRON_ENV = "NETASSETS_INGEST_CRON"

# Materialisation metadata key: the fingerprint of the landing files a raw asset read.
LANDING_FINGERPRINT = "netassets/landing_fingerprint"

Scan = Callable[[], Mapping[tuple[str, str], Sequence[Path]]]


def fingerprint(states: Mapping[Path, tuple[int, int]]) -> str:
    """A short digest of each file's name, size and mtime (``core.files.file_states``)."""
    digest = hashlib.sha1()
    for path, (size, mtime_ns) in sorted(states.items()):
        digest.update(f"{path.name}\0{size}\0{mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def landing_fingerprint_metadata(states: Mapping[Path, tuple[int, int]]) -> dict[str, str]:
    """The metadata a raw asset adds to its materialisation: the fingerprint of the files it read,
    from the states it took before reading them (the landing sensor compares it with the disk)."""
    return {LANDING_FINGERPRINT: fingerprint(states)}


def materialised_fingerprints(instance: dg.DagsterInstance, asset_key: dg.AssetKey,
                              partitions: set[str]) -> dict[str, str]:
    """{partition: the landing fingerprint on its latest materialisation} for those that have one."""
    if not partitions:
        return {}
    latest = instance.get_latest_storage_id_by_partition(
        asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=partitions)
    if not latest:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=list(latest.values())), limit=len(latest)).records
    found = {}
    for record in records:
        materialization = record.asset_materialization
        value = materialization.metadata.get(LANDING_FINGERPRINT) if materialization else None
        if value is not None and materialization.partition is not None:
            found[materialization.partition] = getattr(value, "value", value)
    return found


def _usable_states(files: Sequence[Path], root: Path | None, unusable: list[str]) -> dict[Path, tuple[int, int]]:
    """(size, mtime) of the files that can be read and lie inside ``root``; the others are named in ``unusable``."""
    states = {}
    for path in files:
        try:
            if root is not None and not inside_root(path, root):
                unusable.append(f"{path}: leads outside the landing root {root}; not read")
                continue
            states.update(file_states([path]))
        except OSError as exc:
            unusable.append(f"{path}: {exc.strerror or exc}")
    return states


def landing_sensor(
    *,
    name: str,
    target: dg.AssetSelection | Sequence[dg.AssetsDefinition] | Sequence[str],
    dynamic: dg.DynamicPartitionsDefinition,
    scan: Scan,
    description: str,
    minimum_interval_seconds: int = 60,
    root: Callable[[], Path] | None = None,
    settle_seconds: float | None = None,
    fingerprint_asset: dg.AssetKey | str | Sequence[str] | None = None,
) -> dg.SensorDefinition:
    """``scan()`` returns {(day 'YYYY-MM-DD', region): [files]} for what is on disk now.

    ``root()`` is the landing root: files resolving outside it are refused. ``settle_seconds``
    overrides NETASSETS_LANDING_SETTLE_SECONDS. ``fingerprint_asset`` is the asset whose
    materialisations record ``LANDING_FINGERPRINT`` (the pipeline's raw asset): a partition
    materialised from the files now on disk is not requested again.
    """
    fingerprint_key = dg.AssetKey.from_coercible(fingerprint_asset) if fingerprint_asset is not None else None

    @dg.sensor(
        name=name,
        target=target,
        description=description,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        settle = landing_settle_seconds() if settle_seconds is None else settle_seconds
        landing_root = root() if root is not None else None
        current: dict[str, str] = {}
        rejected: list[str] = []
        settling: list[str] = []
        settled_before = time.time() - settle
        for (day, region), files in scan().items():
            try:
                landed_day = parse_day(day, "landing day folder")
                safe_name(region, "region")
            except ValueError as exc:
                rejected.append(f"{day}|{region}: {exc}")
                continue
            # A day outside the day axis is no partition: requested, it would fail the whole tick
            # (and every tick after) in Dagster. Days to come are left for the tick that reaches them.
            if not daily.has_partition_key(day):
                if landed_day < dt.date.fromisoformat(start_date()):
                    rejected.append(f"{day}|{region}: before the first day of the day axis, {start_date()} "
                                    "(NETASSETS_START_DATE)")
                continue
            states = _usable_states(files, landing_root, rejected)
            if not states:
                continue
            key = f"{day}|{region}"
            if max(mtime_ns for _, mtime_ns in states.values()) > settled_before * 1e9:
                settling.append(key)
                if key in seen:  # keep the last complete version's fingerprint until this one settles
                    current[key] = seen[key]
                continue
            current[key] = fingerprint(states)
        for reason in rejected:
            context.log.warning("ignoring landing entry %s", reason)
        if settling:
            context.log.info("waiting for files still being written (modified within %.0f s): %s",
                             settle, ", ".join(settling))
        materialised = (materialised_fingerprints(context.instance, fingerprint_key, set(current))
                        if fingerprint_key is not None else {})
        # In flight: requested with this fingerprint and not yet materialised with it.
        pending = {key: fp for key, fp in seen.items()
                   if key in current and materialised.get(key) != fp
                   and (current[key] == fp or key in settling)}
        changed = sorted(key for key, fp in current.items()
                         if key not in settling and materialised.get(key) != fp and pending.get(key) != fp)
        cursor = json.dumps({**pending, **{key: current[key] for key in changed}}, sort_keys=True)
        if not changed:
            waiting = f"; {len(settling)} still being written" if settling else ""
            message = f"no new or changed files ({len(current)} partitions on disk{waiting})"
            if cursor != (context.cursor or "{}"):
                context.update_cursor(cursor)
            return dg.SkipReason(message)
        known = set(context.instance.get_dynamic_partitions(dynamic.name))
        new_regions = sorted({key.split("|")[1] for key in changed} - known)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(partition_key=key, run_key=f"{key}@{current[key]}", tags={"netassets/trigger": name})
                for key in changed
            ],
            dynamic_partitions_requests=(
                [dynamic.build_add_request(new_regions)] if new_regions else []
            ),
            cursor=cursor,
        )

    return _sensor


def follow_upstream() -> dg.AutomationCondition:
    """Request a partition once after any dependency is updated, when none is missing or running."""
    condition = dg.AutomationCondition
    return (
        condition.any_deps_updated().since_last_handled()
        & ~condition.any_deps_missing()
        & ~condition.any_deps_in_progress()
        & ~condition.in_progress()
    ).with_label("follow_upstream")


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "netassets_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=60,
        description="Evaluates every asset's automation condition (core.automation.follow_upstream): re-makes "
                    "what read a dependency that changed, e.g. lens_clusters after lens_gmm or lens_group_features, "
                    "perfSONAR's scores of the day after a day's re-score.",
    )


def monthly_retrain_schedule(
    *, name: str, target: dg.AssetSelection | Sequence[dg.AssetsDefinition] | Sequence[str], description: str
) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=name,
        target=target,
        cron_schedule=os.environ.get(RETRAIN_CRON_ENV, "0 3 1 * *"),
        execution_timezone="UTC",
        description=description,
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )


def daily_ingestion_schedule(
    *,
    name: str,
    target: dg.AssetSelection | Sequence[dg.AssetsDefinition] | Sequence[str],
    dynamic: dg.DynamicPartitionsDefinition,
    description: str,
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=name,
        target=target,
        cron_schedule=os.environ.get(INGEST_CRON_ENV, "0 2 * * *"),
        execution_timezone="UTC",
        description=description,
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        day = (context.scheduled_execution_time.date() - dt.timedelta(days=1)).isoformat()
        if not daily.has_partition_key(day):  # a deployment's first day: yesterday is before the day axis
            return dg.SkipReason(f"{day} is before the first day of the day axis, {start_date()}")
        regions = sorted(context.instance.get_dynamic_partitions(dynamic.name))
        if not regions:
            return dg.SkipReason(f"no partitions registered in {dynamic.name!r} yet")
        return [dg.RunRequest(partition_key=f"{day}|{region}", run_key=f"{name}:{day}|{region}") for region in regions]

    return _schedule
