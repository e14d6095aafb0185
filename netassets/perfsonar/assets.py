"""perfSONAR: packet-loss documents -> perfsonar_packet_loss -> perfsonar_anomaly_scores -> perfsonar_alarms."""


import os
import re
import time

import dagster as dg
import pandas as pd
import polars as pl
from pydantic import Field

from netassets.core.partitions import DayPartition, context_partition
from netassets.core.plots import figure_metadata, plt, table_markdown
from netassets.core.settings import artifacts_dir, landing_dir
from netassets.core.sql import load_sql
from netassets.core.warehouse import POOL, DuckDBWarehouse
from netassets.perfsonar.evaluation import DETECTOR, NO_PROMOTION, evaluate, hour_table, labels_for, scorer_flags
from netassets.perfsonar.model import DetectorSettings, HourScore, day_hours, loss_matrix, score_hours
from netassets.perfsonar.partitions import SOURCE, perfsonar_partitions
from netassets.perfsonar.resources import PerfsonarSearch

PLOTTED_DESTINATIONS = 20  # the seed plots a subset of the links too
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,200}$")


def _where(partition: DayPartition) -> dict:
    return {"day": partition.day, "source": partition.other}


@dg.asset(
    group_name="perfsonar",
    partitions_def=perfsonar_partitions,
    pool=POOL,
    kinds={"opensearch", "duckdb"},
    description="Packet loss of one source host over one day, one row per minute x destination (last document of a"
    " minute wins), pulled from the cluster with search_after.",
)
def perfsonar_packet_loss(
    context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, perfsonar_search: PerfsonarSearch
) -> dg.MaterializeResult:
    partition = context_partition(context, SOURCE)
    pulled = perfsonar_search.fetch_day(partition.other, partition.day)
    skipped = pulled.skipped_by_reason()
    if pulled.skipped_total:
        context.log.warning("%s: skipped %d unusable documents: %s", partition.key, pulled.skipped_total,
                            {k: v for k, v in skipped.items() if v})
    if pulled.without_cursor_field:
        context.log.warning("%s: %d documents have no %r field: loaded here, but perfsonar_new_data_sensor never "
                            "sees them, so late ones trigger no run", partition.key, pulled.without_cursor_field,
                            perfsonar_search.fields.indexed_at)
    if not pulled.measurements:
        raise dg.Failure(
            description=f"perfsonar_packet_loss {partition.key}: no usable packet-loss documents from source"
            f" {partition.other!r} on {partition.day} in {perfsonar_search.index_pattern!r}"
            f" ({pulled.skipped_total} skipped: {skipped}); the previous version of the partition is kept",
            metadata={"documents_skipped": pulled.skipped_total},
        )
    m = pulled.measurements
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
        rows = warehouse.replace_partition(
            "perfsonar_packet_loss", _where(partition), select_sql=load_sql("perfsonar", "perfsonar_packet_loss"),
            params=_where(partition), conn=conn,
        )
        destinations, collapsed, first, last = conn.execute(
            "SELECT count(DISTINCT destination), sum(documents) - count(*), min(minute), max(minute)"
            " FROM perfsonar_packet_loss WHERE day = $day AND source = $source",
            _where(partition),
        ).fetchone()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": rows,
        "documents_used": len(m),
        "documents_skipped": pulled.skipped_total,
        "skipped_by_reason": dg.MetadataValue.json(skipped),
        "documents_without_indexed_at": pulled.without_cursor_field,
        "duplicate_documents_collapsed": int(collapsed),
        "destinations": int(destinations),
        "first_minute": str(first),
        "last_minute": str(last),
        "index_pattern": perfsonar_search.index_pattern,
    })


class AnomalyConfig(dg.Config):
    cut: float = Field(default=DetectorSettings.cut, ge=-1, lt=1, allow_inf_nan=False,
                       description="flag an hour whose scaled accuracy (in [-1, 1]) exceeds this (seed: 0.05)")
    steps: int = Field(default=DetectorSettings.steps, ge=1, description="full-batch Adam steps")
    learning_rate: float = Field(default=DetectorSettings.learning_rate, gt=0, le=10, allow_inf_nan=False,
                                 description="Adam learning rate of the per-hour classifiers")
    min_reference_rows: int = Field(default=DetectorSettings.min_reference_rows, ge=1,
                                    description="score an hour only if its 24 h reference holds this many minutes")
    min_subject_rows: int = Field(default=DetectorSettings.min_subject_rows, ge=2)
    baseline_z: float = Field(default=DetectorSettings.baseline_z, gt=0,
                              description="per-destination z-score above which the baseline flags an hour")
    step_threshold: float = Field(default=DetectorSettings.step_threshold, gt=0,
                                  description="rise of an hour's mean loss over its reference mean above which the"
                                  " loss-step baseline flags it")
    seed: int = 0

    def settings(self) -> DetectorSettings:
        return DetectorSettings(cut=self.cut, steps=self.steps, learning_rate=self.learning_rate,
                                min_reference_rows=self.min_reference_rows, min_subject_rows=self.min_subject_rows,
                                baseline_z=self.baseline_z, step_threshold=self.step_threshold, seed=self.seed)


def _score_rows(partition: DayPartition, scores: list[HourScore], cut: float, destinations: int) -> pl.DataFrame:
    return pl.DataFrame([{
        "day": partition.day, "source": partition.other, "hour": s.hour.to_pydatetime(), "status": s.status,
        "reference_rows": s.reference_rows, "subject_rows": s.subject_rows, "destinations": destinations,
        "accuracy": s.accuracy, "chance": s.chance, "score": s.score, "cut": cut, "flagged": s.flagged,
        "top_destinations": ", ".join(s.top_destinations), "baseline_max_z": s.baseline_max_z,
        "baseline_flagged": s.baseline_flagged,
    } for s in scores], schema_overrides={"accuracy": pl.Float64, "chance": pl.Float64, "score": pl.Float64,
                                          "baseline_max_z": pl.Float64})


def _shaded_chart(matrix: pd.DataFrame, scores: list[HourScore], partition: DayPartition, cut: float):
    """The seed's figure: the day's loss series, then the score with detected hours shaded."""
    day = matrix[(matrix.index >= pd.Timestamp(partition.day)) & (matrix.index < pd.Timestamp(partition.day) + pd.Timedelta(days=1))]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 7), sharex=True)
    day.iloc[:, :PLOTTED_DESTINATIONS].plot(ax=top, legend=False, linewidth=0.7)
    top.set_ylabel("packet loss")
    top.set_title(f"{partition.other} on {partition.day}: {matrix.shape[1]} destinations")
    hours = [s.hour for s in scores]
    bottom.step(hours, [s.score if s.score is not None else float("nan") for s in scores], where="post", color="g",
                label="scaled accuracy")
    for s in scores:
        if s.flagged:
            bottom.axvspan(s.hour, s.hour + pd.Timedelta(hours=1), color="b", alpha=0.3)
    bottom.axhline(cut, color="k", linestyle="--", linewidth=0.8, label=f"cut {cut}")
    bottom.set_ylabel("score")
    bottom.legend(loc="upper left")
    return fig


BASELINE_CHECK = "perfsonar_anomaly_scores_beats_baselines"


def _evaluation_metadata(partition: DayPartition, matrix: pd.DataFrame, scores: list[HourScore],
                         settings: DetectorSettings, log) -> tuple[dict, dg.AssetCheckResult]:
    """The detector's flags next to every baseline's on the scored hours and, where a truth file
    labels some of them, the evaluation on those hours with its verdict; the baseline-verdict
    check result either way (a WARN saying nothing was evaluated where no label exists)."""
    flags = scorer_flags(matrix, scores, settings)
    scored = sorted(flags[DETECTOR])
    labels = labels_for(landing_dir("perfsonar"), partition.other, scored)
    for problem in labels.unreadable:
        log.warning("%s: truth file skipped: %s", partition.key, problem)
    alarms = {f"alarms ({name})": sum(f.values()) for name, f in flags.items()}
    if labels.unreadable:
        alarms["truth_files_unreadable"] = dg.MetadataValue.json(labels.unreadable)
    if not labels.labelled:
        why = (f"no truth file in {landing_dir('perfsonar')} labels any of the {len(scored)} scored hours of"
               f" {partition.other!r} on {partition.day} (production data has no labels)")
        metadata = {"evaluation": dg.MetadataValue.md(f"not evaluated: {why}; flags side by side only.\n\n"
                                                      f"{NO_PROMOTION}"),
                    "flags": table_markdown(hour_table(flags, None)), **alarms}
        check = dg.AssetCheckResult(check_name=BASELINE_CHECK, passed=False, severity=dg.AssetCheckSeverity.WARN,
                                    description=f"not evaluated: {why}; nothing shows the detector beats its baselines",
                                    metadata={"evaluated": False})
        return metadata, check
    evaluation = evaluate({name: {h: f[h] for h in labels.labelled} for name, f in flags.items()}, labels.anomalous,
                          notes=[f"labels: {', '.join(p.name for p in labels.files)} ({len(labels.labelled)} of"
                                 f" {len(scored)} scored hours labelled)"])
    metadata = {**evaluation.metadata(), "evaluation_json": dg.MetadataValue.json(evaluation.to_dict()),
                "flags": table_markdown(hour_table(flags, labels.anomalous)), **alarms}
    return metadata, evaluation.check_result(check_name=BASELINE_CHECK)


@dg.asset(
    group_name="perfsonar",
    partitions_def=perfsonar_partitions,
    deps=[dg.AssetDep(perfsonar_packet_loss, partition_mapping=dg.MultiPartitionMapping({
        # An hour's reference is the 24 h before it: the first hours of a day read the day before.
        "day": dg.DimensionPartitionMapping("day", dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=0)),
        SOURCE: dg.DimensionPartitionMapping(SOURCE, dg.IdentityPartitionMapping()),
    }))],
    pool=POOL,
    kinds={"pytorch", "duckdb"},
    check_specs=[dg.AssetCheckSpec(BASELINE_CHECK, asset="perfsonar_anomaly_scores", description=(
        "WARN unless the detector's per-hour F1 beats every baseline's on the day's labelled hours (generator truth"
        " files); with no labels (production) it warns that nothing was evaluated."))],
    description="The seed's detector for every hour of the day (reference = previous 24 h, subject = the hour,"
    " held-out scaled accuracy), all 24 classifiers trained together; z-score and loss-step baselines alongside,"
    " evaluated per hour where the generator's labels exist.",
)
def perfsonar_anomaly_scores(
    context: dg.AssetExecutionContext, config: AnomalyConfig, warehouse: DuckDBWarehouse
) -> dg.MaterializeResult:
    import torch  # here, not at module level: the code location imports this module

    partition = context_partition(context, SOURCE)
    long = warehouse.query(load_sql("perfsonar", "detector_input"), _where(partition)).to_pandas()
    matrix = loss_matrix(long)
    if matrix.empty:
        raise dg.Failure(description=f"perfsonar_anomaly_scores {partition.key}: perfsonar_packet_loss holds nothing"
                         f" for {partition.other!r} on {partition.day} or the day before; materialise it first")
    # The batched model is small; more threads than two only contend. Restored afterwards, since
    # in-process execution (materialize, tests) shares the setting with every later step.
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        started = time.perf_counter()
        scores = score_hours(matrix, day_hours(partition.day), config.settings())
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    warehouse.replace_partition("perfsonar_anomaly_scores", _where(partition),
                                data=_score_rows(partition, scores, config.cut, matrix.shape[1]))

    scored = [s for s in scores if s.status == "scored"]
    agree = sum(s.flagged == s.baseline_flagged for s in scored)
    evaluation, check = _evaluation_metadata(partition, matrix, scores, config.settings(), context.log)
    plot = figure_metadata(_shaded_chart(matrix, scores, partition, config.cut),
                           save_to=artifacts_dir("perfsonar") / "plots" / f"{partition.day}_{partition.other}.png")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(scores),
        "hours_scored": len(scored),
        "hours_not_scored": dg.MetadataValue.json({s.hour.strftime("%H:00"): s.status for s in scores if s.status != "scored"}),
        "alarms": sum(s.flagged for s in scored),
        "baseline_alarms": sum(s.baseline_flagged for s in scored),
        "detector_baseline_agreement": agree / len(scored) if scored else float("nan"),
        "mean_heldout_accuracy": sum(s.accuracy for s in scored) / len(scored) if scored else float("nan"),
        "destinations": matrix.shape[1],
        "training_seconds": seconds,
        "scores": table_markdown([{
            "hour": s.hour.strftime("%H:00"), "status": s.status, "ref": s.reference_rows, "sub": s.subject_rows,
            "held-out acc": s.accuracy, "chance": s.chance, "score": s.score, "flagged": s.flagged,
            "baseline max z": s.baseline_max_z, "baseline flagged": s.baseline_flagged,
            "top destinations": ", ".join(s.top_destinations),
        } for s in scores]),
        "plot": plot,
        "scores_split": "held-out acc and score: each hour's classifier judged on the 30 % of its own and its"
        " reference's minutes it was not trained on",
        **evaluation,
    }, check_results=[check])


class AlarmsConfig(dg.Config):
    write_back_index: str = Field(
        default="", description="if set, also index the alarms into this index (as the ATLAS alarm worker did); off by default")


@dg.asset(
    group_name="perfsonar",
    partitions_def=perfsonar_partitions,
    deps=[perfsonar_anomaly_scores],
    pool=POOL,
    kinds={"duckdb"},
    description="Flagged hours of a source-day with the destinations that drove them; optionally written back to an index.",
)
def perfsonar_alarms(
    context: dg.AssetExecutionContext, config: AlarmsConfig, warehouse: DuckDBWarehouse,
    perfsonar_search: PerfsonarSearch,
) -> dg.MaterializeResult:
    partition = context_partition(context, SOURCE)
    if config.write_back_index and not _INDEX_NAME.match(config.write_back_index):
        raise ValueError(f"write_back_index {config.write_back_index!r} is not a valid lowercase index name")
    # A quiet day has no alarms: an empty partition is the right answer here, not an error.
    rows = warehouse.replace_partition("perfsonar_alarms", _where(partition),
                                       select_sql=load_sql("perfsonar", "perfsonar_alarms"),
                                       params=_where(partition), allow_empty=True)
    alarms = warehouse.read_partition("perfsonar_alarms", _where(partition), order_by="hour")
    written = 0
    if config.write_back_index and rows:
        documents = [{
            "alarm_id": f"{partition.other}|{a['hour'].isoformat()}", "source": partition.other,
            "hour": a["hour"].isoformat(), "score": a["score"], "destinations": [d for d in a["top_destinations"].split(", ") if d],
            "detector": "perfsonar_anomaly_scores",
        } for a in alarms.iter_rows(named=True)]
        written = perfsonar_search.index_documents(config.write_back_index, documents, id_field="alarm_id")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": rows,
        "alarm_hours": dg.MetadataValue.json([a.strftime("%H:00") for a in alarms["hour"]]),
        "written_back": written,
        "write_back_index": config.write_back_index or "(off)",
    })
