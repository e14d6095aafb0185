"""perfSONAR assets: packet-loss documents -> perfsonar_packet_loss -> perfsonar_anomaly_scores -> perfsonar_alarms.

Thin wiring: the SQL is in ``netassets.perfsonar.tables``, the scoring and its figure in
``netassets.perfsonar.report``, the detector in ``netassets.perfsonar.model``. The scores of a
day read the day before too, so they follow a re-loaded day by their automation condition.
"""

import dagster as dg
import pandas as pd
from pydantic import Field

from netassets.core.automation import follow_upstream
from netassets.core.metadata import shown
from netassets.core.partitions import DayPartition, context_partition
from netassets.core.plots import figure_metadata, table_markdown
from netassets.core.settings import artifacts_dir, landing_dir
from netassets.core.warehouse import POOL, DuckDBWarehouse
from netassets.defs.perfsonar.pipeline import PIPELINE
from netassets.defs.perfsonar.resources import PerfsonarSearch
from netassets.perfsonar.evaluation import NO_PROMOTION, detector_name, evaluate, hour_table, labels_for, scorer_flags
from netassets.perfsonar.model import METHODS, DetectorSettings, HourScore
from netassets.perfsonar.tables import (alarm_documents, check_index_name, detector_matrix, write_alarms,
                                        write_packet_loss, write_scores)

SOURCE = PIPELINE.dimension


@dg.asset(
    group_name="perfsonar",
    partitions_def=PIPELINE.partitions,
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
    write, loaded = write_packet_loss(warehouse, partition, pulled.measurements)
    return dg.MaterializeResult(metadata={
        **write.metadata,
        "documents_used": len(pulled.measurements),
        "documents_skipped": pulled.skipped_total,
        "skipped_by_reason": dg.MetadataValue.json(skipped),
        "documents_without_indexed_at": pulled.without_cursor_field,
        **loaded,
        "index_pattern": perfsonar_search.index_pattern,
    })


class AnomalyConfig(dg.Config):
    method: str = Field(default=DetectorSettings.method, description=f"one of {METHODS}: the rank-scan tail"
                        " probability (default) or the seed's per-hour classifier")
    tail_cut: float = Field(default=DetectorSettings.tail_cut, allow_inf_nan=False,
                            description="rank scan: flag an hour whose score, -log10 of its family-wise tail"
                            " probability, exceeds this (2: p < 0.01)")
    cut: float = Field(default=DetectorSettings.cut, ge=-1, lt=1, allow_inf_nan=False,
                       description="seed classifier: flag an hour whose scaled accuracy (in [-1, 1]) exceeds this"
                       " (seed: 0.05)")
    steps: int = Field(default=DetectorSettings.steps, ge=1, description="full-batch Adam steps")
    learning_rate: float = Field(default=DetectorSettings.learning_rate, gt=0, le=10, allow_inf_nan=False,
                                 description="Adam learning rate of the per-hour classifiers")
    min_reference_rows: int = Field(default=DetectorSettings.min_reference_rows, ge=1,
                                    description="score an hour only if its 24 h reference holds this many minutes")
    min_subject_rows: int = Field(default=DetectorSettings.min_subject_rows, ge=2,
                                  description="score an hour only if it holds this many minutes")
    baseline_z: float = Field(default=DetectorSettings.baseline_z, gt=0,
                              description="per-destination z-score above which the baseline flags an hour")
    step_threshold: float = Field(default=DetectorSettings.step_threshold, gt=0,
                                  description="rise of an hour's mean loss over its reference mean above which the"
                                  " loss-step baseline flags it")
    seed: int = Field(default=DetectorSettings.seed, description="seed of the classifiers' initialisation and split")

    def settings(self) -> DetectorSettings:
        return DetectorSettings(method=self.method, tail_cut=self.tail_cut, cut=self.cut, steps=self.steps,
                                learning_rate=self.learning_rate, min_reference_rows=self.min_reference_rows,
                                min_subject_rows=self.min_subject_rows, baseline_z=self.baseline_z,
                                step_threshold=self.step_threshold, seed=self.seed)


BASELINE_CHECK = "beats_strongest_baseline"


def _evaluation_metadata(partition: DayPartition, matrix: pd.DataFrame, scores: list[HourScore],
                         settings: DetectorSettings, log) -> tuple[dict, dg.AssetCheckResult]:
    """The detector's flags next to every baseline's on the scored hours and, where a truth file
    labels some of them, the evaluation on those hours with its verdict; the baseline-verdict
    check result either way (a WARN saying nothing was evaluated where no label exists)."""
    flags = scorer_flags(matrix, scores, settings)
    scored = sorted(flags[detector_name(settings)])
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
                          model=detector_name(settings), notes=[f"labels: {', '.join(p.name for p in labels.files)} ({len(labels.labelled)} of"
                                 f" {len(scored)} scored hours labelled)"])
    metadata = {**evaluation.metadata(), "evaluation_json": dg.MetadataValue.json(shown(evaluation.to_dict())),
                "flags": table_markdown(hour_table(flags, labels.anomalous)), **alarms}
    return metadata, evaluation.check_result(check_name=BASELINE_CHECK)


@dg.asset(
    group_name="perfsonar",
    partitions_def=PIPELINE.partitions,
    deps=[dg.AssetDep(perfsonar_packet_loss, partition_mapping=dg.MultiPartitionMapping({
        # An hour's reference is the 24 h before it: the first hours of a day read the day before.
        "day": dg.DimensionPartitionMapping("day", dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=0)),
        SOURCE: dg.DimensionPartitionMapping(SOURCE, dg.IdentityPartitionMapping()),
    }))],
    pool=POOL,
    kinds={"pytorch", "duckdb"},
    # A re-loaded day re-scores the day after, whose first hours use it as reference (what
    # perfsonar_rescore_sensor did), once the day after has losses of its own.
    automation_condition=follow_upstream(),
    check_specs=[dg.AssetCheckSpec(BASELINE_CHECK, asset="perfsonar_anomaly_scores", description=(
        "WARN unless the detector's per-hour F1 beats every baseline's on the day's labelled hours (generator truth"
        " files); with no labels (production) it warns that nothing was evaluated."))],
    description="Every hour of the day scored against the previous 24 h: by default the rank-scan tail probability"
    " (each minute's place in its destination's reference distribution, summed over 20-60 minute windows,"
    " Bonferroni over windows and destinations); method='seed' runs the seed's per-hour classifiers instead;"
    " z-score and loss-step baselines alongside, evaluated per hour where the generator's labels exist."
    " Re-made by itself when the day before is re-loaded.",
)
def perfsonar_anomaly_scores(
    context: dg.AssetExecutionContext, config: AnomalyConfig, warehouse: DuckDBWarehouse
) -> dg.MaterializeResult:
    from netassets.perfsonar.report import score_day, score_summary, scores_table, shaded_chart

    partition = context_partition(context, SOURCE)
    settings = config.settings()
    matrix = detector_matrix(warehouse, partition)
    if matrix.empty:
        raise dg.Failure(description=f"perfsonar_anomaly_scores {partition.key}: perfsonar_packet_loss holds nothing"
                         f" for {partition.other!r} on {partition.day} or the day before; materialise it first",
                         metadata={"day": str(partition.day), "source": partition.other})
    scores, seconds = score_day(matrix, partition.day, settings)
    write = write_scores(warehouse, partition, scores, settings.flag_cut, matrix.shape[1])
    evaluation, check = _evaluation_metadata(partition, matrix, scores, settings, context.log)
    summary = score_summary(scores)
    plot = figure_metadata("plot", shaded_chart(matrix, scores, partition, settings.flag_cut),
                           save_to=artifacts_dir("perfsonar") / "plots" / f"{partition.day}_{partition.other}.png")
    return dg.MaterializeResult(metadata=shown({
        **write.metadata,
        **summary,
        "hours_not_scored": dg.MetadataValue.json(summary["hours_not_scored"]),
        "detector": detector_name(settings),
        "destinations": matrix.shape[1],
        "training_seconds": seconds,
        "scores": table_markdown(scores_table(scores)),
        **plot,
        "scores_split": "score: -log10 of the hour's family-wise tail probability against its 24 h reference"
        " (nothing is trained)" if settings.method == "rank_scan" else "held-out acc and score: each hour's"
        " classifier judged on the 30 % of its own and its reference's minutes it was not trained on",
        **evaluation,
    }), check_results=[check])


class AlarmsConfig(dg.Config):
    write_back_index: str = Field(
        default="", description="if set, also index the alarms into this index (as the ATLAS alarm worker did); off by default")


@dg.asset(
    group_name="perfsonar",
    partitions_def=PIPELINE.partitions,
    deps=[perfsonar_anomaly_scores],
    pool=POOL,
    kinds={"duckdb"},
    automation_condition=follow_upstream(),  # follows a re-score of its day
    description="Flagged hours of a source-day with the destinations that drove them; optionally written back to an"
    " index. Re-made by itself after its day's scores change.",
)
def perfsonar_alarms(
    context: dg.AssetExecutionContext, config: AlarmsConfig, warehouse: DuckDBWarehouse,
    perfsonar_search: PerfsonarSearch,
) -> dg.MaterializeResult:
    partition = context_partition(context, SOURCE)
    check_index_name(config.write_back_index)
    write, alarms = write_alarms(warehouse, partition)
    written = 0
    if config.write_back_index and write.rows:
        written = perfsonar_search.index_documents(config.write_back_index, alarm_documents(partition, alarms),
                                                   id_field="alarm_id")
    return dg.MaterializeResult(metadata={
        **write.metadata,
        "alarm_hours": dg.MetadataValue.json([a.strftime("%H:00") for a in alarms["hour"]]),
        "written_back": written,
        "write_back_index": config.write_back_index or "(off)",
    })
