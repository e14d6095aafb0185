"""Traffic assets: flow files -> ``traffic_flows`` index in DuckDB -> ``traffic_lstm`` next-packet model.

``traffic_flows`` stores one row per flow (file, line, byte offset and length, packet and
feature counts), not the packets: the raw files stay the single copy of the data, and the
model reads each flow back from its offset, as the seed does with its mmap'ed feature files.
"""

import json
from pathlib import Path
from typing import Literal

import dagster as dg
import polars as pl

from netassets.core.partitions import context_partition, day_by
from netassets.core.settings import artifacts_dir, landing_dir, safe_name
from netassets.core.sql import load_sql
from netassets.core.torchrun import launch_torchrun
from netassets.core.warehouse import POOL, DuckDBWarehouse
from netassets.traffic.readers import index_files, landing_files
from netassets.traffic.report import plots, score_table

PIPELINE = "traffic"
SITE = "site"
traffic_partitions = day_by(SITE, "traffic_sites")


class TrafficFlowsConfig(dg.Config):
    skip_bad_flows: bool = False
    """False: the first bad flow fails the partition, naming file and line. True: bad flows are
    left out and counted per reason in the metadata (with examples)."""


@dg.asset(partitions_def=traffic_partitions, pool=POOL, group_name=PIPELINE, kinds={"duckdb"})
def traffic_flows(context: dg.AssetExecutionContext, config: TrafficFlowsConfig, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """One row per flow of landing/traffic/<site>/<day>/*.{csv,json,jsonl}, with its packet count."""
    partition = context_partition(context, SITE)
    root = landing_dir(PIPELINE)
    files = landing_files(root, partition.day, partition.other)
    if not files:
        raise FileNotFoundError(f"no .csv/.json/.jsonl flow files in {root / partition.other / partition.day.isoformat()}")
    index = index_files(files, root, skip_bad=config.skip_bad_flows)
    if index.skipped:
        context.log.warning("skipped %d bad flows: %s", sum(index.skipped.values()), "; ".join(index.skipped_examples))
    frame = index.frame.with_columns(day=pl.lit(partition.day), site=pl.lit(partition.other))
    rows = warehouse.replace_partition("traffic_flows", {"day": partition.day, "site": partition.other}, data=frame)
    packets = index.frame["n_packets"]
    return dg.MaterializeResult(metadata={
        "flows": rows,
        "files": len(files),
        "packets": int(packets.sum()),
        "features_per_packet": index.n_features,
        "packets_per_flow_median": float(packets.median()),
        "packets_per_flow_max": int(packets.max()),
        "skipped_flows": sum(index.skipped.values()),
        "skipped_by_reason": dict(index.skipped),
        "skipped_examples": dg.MetadataValue.md("\n".join(f"- `{e}`" for e in index.skipped_examples) or "none"),
    })


class TrafficLSTMConfig(dg.Config):
    sites: list[str] = []  # train on these sites only; empty: every site in traffic_flows
    init_from: str = "scratch"  # "scratch", "resume" (the current checkpoint) or a checkpoint path (relative: under the models folder)
    seq_len: int = 100
    normalisation: Literal["l2", "standardise", "minmax"] = "standardise"
    hidden_size: int = 128
    num_layers: int = 1
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 5
    val_fraction: float = 0.3
    seed: int = 0
    nproc: int = 0  # torchrun processes; 0: one per GPU, or 1 on CPU


def check_resumable(checkpoint: Path, architecture: dict) -> None:
    """Fail in the asset, with the reason, rather than as an exit code from torchrun."""
    # torch is imported here, not at module level, to keep loading the code location fast
    from netassets.core.training import check_compatible, load_checkpoint
    from netassets.traffic.train import ARCHITECTURE

    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint to continue from not found: {checkpoint}")
    check_compatible(load_checkpoint(checkpoint)["architecture"], architecture, ARCHITECTURE, checkpoint)


@dg.asset(
    deps=[traffic_flows],
    group_name=PIPELINE,
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec("beats_persistence_baseline", asset="traffic_lstm")],
)
def traffic_lstm(context: dg.AssetExecutionContext, config: TrafficLSTMConfig, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Next-packet LSTM trained with torchrun on the indexed flows; held-out cosine similarity
    next to the persistence baseline (next packet = current packet), and the seed's plots."""
    sites = [safe_name(site, SITE) for site in config.sites]
    with warehouse.connect(read_only=True) as conn:
        if not warehouse.table_exists(conn, "traffic_flows"):
            raise LookupError("table traffic_flows does not exist yet: materialise traffic_flows partitions first")
        flows = conn.execute(load_sql(PIPELINE, "training_flows"), {"sites": sites}).pl()
    if flows.is_empty():
        raise ValueError(f"no flows in traffic_flows for sites {sites or 'any'}")
    if flows["n_features"].n_unique() > 1:
        raise ValueError(
            f"flows have different packet dimensions {sorted(flows['n_features'].unique())} "
            f"across sites {sorted(flows['site'].unique())}: choose sites of one dimension in config 'sites'"
        )

    models = artifacts_dir(PIPELINE)
    checkpoint = models / "checkpoint.pt"
    init_from = config.init_from
    if init_from != "scratch":
        init_from = checkpoint if init_from == "resume" else models / Path(init_from).expanduser()
        check_resumable(init_from, {**config.model_dump(), "n_features": int(flows["n_features"][0])})
    run_dir = models / "runs" / context.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    flows.write_parquet(run_dir / "flows.parquet")
    args = {
        "flows": run_dir / "flows.parquet", "landing": landing_dir(PIPELINE), "checkpoint": checkpoint,
        "report": run_dir / "report.json", "init_from": init_from,
        **config.model_dump(exclude={"sites", "init_from", "nproc"}),
    }
    worker = launch_torchrun(
        context, "netassets.traffic.train", [f"--{k}={v}" for k, v in args.items()], nproc=config.nproc
    ).get_materialize_result()

    report = json.loads((run_dir / "report.json").read_text())
    beats = report["model"]["cos_mean"] > report["persistence"]["cos_mean"]
    return dg.MaterializeResult(
        metadata={**worker.metadata, "scores": score_table(report), "sites": sorted(flows["site"].unique()),
                  "run_dir": str(run_dir), **plots(report, run_dir)},
        check_results=[dg.AssetCheckResult(
            check_name="beats_persistence_baseline",
            passed=bool(beats),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"lstm_cos_mean": report["model"]["cos_mean"],
                      "persistence_cos_mean": report["persistence"]["cos_mean"]},
            description=None if beats else "the model does not beat the persistence baseline on held-out flows",
        )],
    )
