"""LENS per-partition assets: hour CSVs -> lens_raw_irtt + lens_clean_groups (one step, one
transaction) -> lens_group_features -> lens_clusters. The work is in ``netassets.lens.ingest``
and ``netassets.lens.models``."""


import dagster as dg
import numpy as np
from pydantic import Field

from netassets.core.automation import LANDING_FINGERPRINT, follow_upstream
from netassets.core.expectations import gx_check_spec
from netassets.core.metadata import shown
from netassets.core.partitions import context_partition
from netassets.core.plots import table_markdown
from netassets.core.warehouse import POOL, DuckDBWarehouse
from netassets.defs.lens.pipeline import PIPELINE
from netassets.lens.cleaning import GROUP_POINTS

LENS_RAW = dg.AssetKey("lens_raw_irtt")
LENS_CLEAN = dg.AssetKey("lens_clean_groups")
LENS_FEATURES = dg.AssetKey("lens_group_features")
LENS_GMM = dg.AssetKey("lens_gmm")
LENS_CLUSTERS = dg.AssetKey("lens_clusters")

LENS_RAW_GX = gx_check_spec(
    asset=LENS_RAW, name="gx_expectations", partitions_def=PIPELINE.partitions,
    description="Over one row per hour file: non-empty, hours unique, 1 to 3.6 M rows of the day a file, timestamps "
                "unique (99.9 % of each file), lost share in [0, 1]. (Schema, empty fields and latency values outside -1 or "
                "[0, 10000) ms are refused by the reader itself, naming the line.)",
)
LENS_CLEAN_GX = gx_check_spec(
    asset=LENS_CLEAN, name="gx_expectations", partitions_def=PIPELINE.partitions,
    description="Every group has exactly 1500 points in both fills; fill share within the threshold; values "
                "plausible; non-empty. Evaluated on per-group aggregates of the arrays written.",
)


class LensCleanConfig(dg.Config):
    min_samples: int = Field(
        default=1300, ge=0, lt=GROUP_POINTS,
        description=f"keep groups with MORE than this many observed points of {GROUP_POINTS} (seed: 1300)",
    )


@dg.multi_asset(
    name="lens_ingest",
    specs=[
        dg.AssetSpec(LENS_RAW, group_name="lens", kinds={"duckdb", "csv"},
                     description="LENS irtt hour files of one day x region, read once and validated: one row per hour "
                                 "file with rows of the day (rows, lost, duplicates, first and last stamp); the raw rows stay in "
                                 "the files, queried with lens_raw_irtt_rows(day, region)."),
        dg.AssetSpec(LENS_CLEAN, group_name="lens", kinds={"duckdb", "numpy"}, deps=[LENS_RAW],
                     description="Seed-faithful cleaning: one row per kept 15 s group on a 1500-point grid: the nearest "
                                 "fill (rtt_nearest) and a bitmap of the received points (rtt_observed); the seed's "
                                 "token fill (-1 in the gaps) is lens_rtt_token(rtt_nearest, rtt_observed)."),
    ],
    check_specs=[LENS_RAW_GX, LENS_CLEAN_GX],
    partitions_def=PIPELINE.partitions,
    pool=POOL,
)
def lens_ingest(context: dg.AssetExecutionContext, config: LensCleanConfig, warehouse: DuckDBWarehouse):
    """Raw file statistics and clean groups of a partition in one transaction: after any failure
    (bad file, no group, a kill) both tables still describe the same files, the previous ones.
    The two GX suites run in this step, on aggregates of the arrays it writes (blocking
    downstream), on a worker thread that overlaps them, and GX's import, with the step's work:
    the raw files' suite while the groups are cleaned, the groups' suite while they are written."""
    import pandas as pd

    from netassets.core.expectations import StepChecks, gx_step_check
    from netassets.lens import quality
    from netassets.lens.ingest import clean_group_summary, prepare_partition, write_partition

    partition = context_partition(context, PIPELINE.dimension)
    with StepChecks() as checks:
        def check_raw_files(statistics) -> None:
            checks.submit(lambda: gx_step_check(LENS_RAW_GX, quality.raw_file_frame(statistics),
                                                quality.raw_file_expectations(), partition.key))

        prepared = prepare_partition(partition, config.min_samples, context.log, counted=check_raw_files)
        checks.submit(lambda: gx_step_check(LENS_CLEAN_GX, pd.DataFrame(clean_group_summary(prepared.groups, prepared.table)),
                                            quality.clean_group_expectations(), partition.key))
        done = write_partition(warehouse, prepared, context.log)
        raw = done.raw
        yield dg.MaterializeResult(asset_key=LENS_RAW, metadata=shown({
            **raw.metadata,
            "raw_rows_sql": dg.MetadataValue.text(
                f"SELECT * FROM lens_raw_irtt_rows(DATE '{partition.day}', '{partition.other}')"),
            "reader": raw.reader,
            "lost_packet_share": raw.lost_packet_share,
            "hour_files": len(raw.files.present),
            "missing_hours": dg.MetadataValue.json(raw.files.missing_hours),
            "empty_files": dg.MetadataValue.json([p.name for p in raw.files.empty]),
            "truncated_lines_dropped": raw.truncated_lines,
            "rows_outside_day_dropped": raw.rows_outside_day,
            LANDING_FINGERPRINT: raw.fingerprint,
            "source": dg.MetadataValue.path(str(raw.source)),
        }))
        yield dg.MaterializeResult(asset_key=LENS_CLEAN, metadata=shown({
            **done.clean.metadata,
            "mean_fill_share": done.mean_fill_share,
            "duplicate_ticks_dropped": done.duplicate_ticks,
            "min_samples": done.min_samples,
        }))
        yield from checks.results()


@dg.asset(
    group_name="lens",
    partitions_def=PIPELINE.partitions,
    deps=[LENS_CLEAN],
    pool=POOL,
    kinds={"duckdb", "numpy"},
    description="Per-group features of the nearest-filled RTT (seed's 7 + std + missing share), one row per group.",
)
def lens_group_features(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    from netassets.lens.models import write_group_features

    partition = context_partition(context, PIPELINE.dimension)
    done = write_group_features(warehouse, partition)
    if done.non_finite:
        context.log.warning("%s: %d group(s) have non-finite features; the finite-features check will fail",
                            partition.key, done.non_finite)
    return dg.MaterializeResult(metadata=shown({
        **done.write.metadata,
        "groups_per_s": done.write.rows / max(done.seconds, 1e-9),
        "non_finite_groups": done.non_finite,
        "feature_summary": table_markdown(done.summary),
    }))


@dg.asset(
    group_name="lens",
    partitions_def=PIPELINE.partitions,
    deps=[LENS_FEATURES, LENS_GMM],
    pool=POOL,
    kinds={"duckdb", "numpy"},
    automation_condition=follow_upstream(),
    description="Cluster id and its posterior probability for every group, from the current lens_gmm. Re-made "
                "automatically (netassets_automation sensor) in every partition with features after lens_gmm "
                "changes, and in a partition after its lens_group_features are re-made.",
)
def lens_clusters(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    from netassets.lens.models import assign_clusters

    done = assign_clusters(warehouse, context_partition(context, PIPELINE.dimension))
    metadata = {
        **done.write.metadata,
        "gmm_version": done.gmm.version,
        "cluster_sizes": dg.MetadataValue.json(
            {str(i): int(n) for i, n in enumerate(np.bincount(done.labels, minlength=done.gmm.k))}),
        "mean_probability": float(done.probability.mean()),
        "groups_per_s_assignment": done.write.rows / max(done.seconds, 1e-9),
    }
    if done.ari is not None:
        metadata["ari_vs_generator_regimes"] = done.ari
    return dg.MaterializeResult(metadata=shown(metadata))
