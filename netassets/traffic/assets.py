"""Traffic assets: flow files -> ``traffic_flows`` index in DuckDB -> ``traffic_lstm`` next-packet model.

``traffic_flows`` stores one row per flow (file, line, byte offset and length, packet and
feature counts), not the packets: the raw files stay the single copy of the data, and the
model reads each flow back from its offset, as the seed does with its mmap'ed feature files.

``traffic_lstm`` files, under ``artifacts_dir("traffic")``::

    checkpoint.pt        the live model: replaced, in one rename, only by a finished run whose
                         best epoch beats the strongest simple baseline on the test flows
    runs/<run_id>/       one training run: flows.parquet (the index with each flow's split),
                         init_from.pt (the checkpoint it continued from), checkpoint.pt (its best
                         epoch), report.json and plots

Flows are split by whole partitions (``split.py``: by day, else by day x site, else in capture
order within the one partition); validation picks the best epoch, test judges it once against
persistence and the typical-flow baselines on the same flows (``core.evaluation``). A run that
fails, is killed or loses on test writes only into its own folder, so the live model stays what
the last promoted run made it, and two runs at once never write into one file.
"""

import json
import os
from pathlib import Path
from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field, field_validator, model_validator

from netassets.core.evaluation import Evaluation, promotion_refusal
from netassets.core.files import copy_file
from netassets.core.partitions import context_partition, day_by
from netassets.core.settings import artifacts_dir, landing_dir, safe_name
from netassets.core.sql import load_sql
from netassets.core.torchrun import launch_torchrun
from netassets.core.warehouse import POOL, DuckDBWarehouse
from netassets.traffic.readers import MAX_EXAMPLES, index_files, landing_files
from netassets.traffic.report import plots, validation_table
from netassets.traffic.split import assign_splits

PIPELINE = "traffic"
SITE = "site"
CHECKPOINT = "checkpoint.pt"
VERDICT_CHECK = "baseline_verdict"
traffic_partitions = day_by(SITE, "traffic_sites")


class TrafficFlowsConfig(dg.Config):
    skip_bad_flows: bool = Field(default=False, description=(
        "False: the first bad flow fails the partition, naming file and line. True: bad flows are left "
        "out and counted per reason in the metadata and a log warning, with file:line of the first few"))

    @field_validator("skip_bad_flows", mode="before")
    @classmethod
    def _strict_bool(cls, value):
        if not isinstance(value, bool):
            raise ValueError(f"skip_bad_flows must be true or false, got {value!r}")
        return value


WARN_EXAMPLES = 5  # skipped flows named in the log warning (the metadata keeps up to MAX_EXAMPLES)


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
        shown = index.skipped_examples[:WARN_EXAMPLES]
        context.log.warning("skipped %d bad flows (%s); first %d: %s", sum(index.skipped.values()),
                            ", ".join(f"{n} {reason}" for reason, n in sorted(index.skipped.items())), len(shown),
                            "; ".join(shown))
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


def _finite(**bounds) -> dict:
    """Field bounds for a float that must be a finite number (NaN and inf refused, naming the field)."""
    return {"allow_inf_nan": False, **bounds}


class TrafficLSTMConfig(dg.Config):
    """Every value is checked here, when the run's config is read, before anything is launched:
    a message names the field and its allowed range."""

    sites: list[str] = Field(default=[], description="train on these sites only; empty: every site in traffic_flows")
    init_from: str = Field(default="scratch", min_length=1, max_length=500, description=(
        "'scratch', 'resume' (the live model) or a checkpoint path relative to the models folder, "
        "e.g. runs/<run_id>/checkpoint.pt (the best epoch of a run that failed or was killed later)"))
    seq_len: int = Field(default=100, ge=1, le=100_000, description="packets per flow the model sees (padded/truncated), 1..100000")
    normalisation: Literal["l2", "standardise", "minmax"] = "standardise"
    hidden_size: int = Field(default=128, ge=1, le=8192, description="LSTM hidden units, 1..8192")
    num_layers: int = Field(default=1, ge=1, le=32, description="stacked LSTM layers, 1..32")
    epochs: int = Field(default=10, ge=0, le=100_000, description=(
        "epochs to train, 0..100000 (0 only when continuing: the loaded model is scored as it is)"))
    batch_size: int = Field(default=64, ge=1, le=1_000_000, description="flows per batch, 1..1000000")
    learning_rate: float = Field(default=1e-3, **_finite(gt=0, le=10), description="Adam learning rate, finite, in (0, 10]")
    patience: int = Field(default=5, ge=1, le=100_000, description="epochs without a validation improvement before stopping, 1..100000")
    # fractions of the days (or day x site partitions) that validate and test; see split.py
    val_fraction: float = Field(default=0.15, **_finite(gt=0, lt=1), description="share of partitions that validate, in (0, 1)")
    test_fraction: float = Field(default=0.15, **_finite(gt=0, lt=1), description="share of partitions that test, in (0, 1)")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="random seed, 0..2**32-1")
    nproc: int = Field(default=0, ge=0, le=1024, description="torchrun processes, 0..1024; 0: one per GPU, or 1 on CPU")

    @field_validator("sites")
    @classmethod
    def _valid_sites(cls, value: list[str]) -> list[str]:
        for site in value:
            safe_name(site, "site in sites")
        if len(set(value)) != len(value):
            raise ValueError(f"sites lists a site twice: {value}")
        return value

    @field_validator("init_from")
    @classmethod
    def _valid_init_from(cls, value: str) -> str:
        if value in ("scratch", "resume"):
            return value
        path = Path(value)
        if path.is_absolute() or ".." in path.parts or "\0" in value:
            raise ValueError(f"init_from must be 'scratch', 'resume' or a path inside the models folder "
                             f"(e.g. runs/<run_id>/checkpoint.pt), got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "TrafficLSTMConfig":
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"val_fraction + test_fraction must be < 1 (some partitions must train), "
                             f"got {self.val_fraction} + {self.test_fraction}")
        if self.epochs == 0 and self.init_from == "scratch":
            raise ValueError("epochs must be >= 1 for a model trained from scratch (epochs 0 only scores a "
                             "continued model, init_from 'resume' or a checkpoint)")
        return self


def resume_from(checkpoint: Path, run_dir: Path, architecture: dict) -> Path:
    """The checkpoint to continue from, copied into the run's folder: every rank loads that copy,
    so all start from the same weights even if another run replaces the live model meanwhile.
    An unusable checkpoint fails here, with the reason, rather than as an exit code from torchrun."""
    # torch is imported here, not at module level, to keep loading the code location fast
    from netassets.core.training import check_compatible, load_checkpoint
    from netassets.traffic.train import ARCHITECTURE

    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint to continue from not found: {checkpoint}")
    snapshot = copy_file(checkpoint, run_dir / "init_from.pt")
    check_compatible(load_checkpoint(snapshot)["architecture"], architecture, ARCHITECTURE, checkpoint)
    return snapshot


def checkpoint_under(models: Path, relative: str) -> Path:
    """A configured checkpoint path, refused unless it stays inside the models folder."""
    path = (models / relative).resolve()
    if not path.is_relative_to(models.resolve()):
        raise ValueError(f"init_from {relative!r} must be a path inside {models} (e.g. runs/<run_id>/checkpoint.pt)")
    return path


def make_live(run_checkpoint: Path, live: Path) -> None:
    """Replace the live model by a finished run's checkpoint in one rename."""
    # copy_file stages beside its target under a fixed name, which two runs promoting at once
    # would share; a copy staged in the run's own folder is this run's alone.
    os.replace(copy_file(run_checkpoint, run_checkpoint.with_name("live.pt")), live)


@dg.asset(
    deps=[traffic_flows],
    group_name=PIPELINE,
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec(VERDICT_CHECK, asset="traffic_lstm",
                                   description="The model beats its strongest simple baseline on the test flows")],
)
def traffic_lstm(context: dg.AssetExecutionContext, config: TrafficLSTMConfig, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Next-packet LSTM trained with torchrun on the indexed flows, split by partition; test
    cosine similarity next to persistence (next = current), the training mean packet by
    position and persistence with that mean for packet 1, on the same flows, and the seed's
    plots. Promoted to the live model only when it beats the strongest of them on test."""
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
    live = models / CHECKPOINT
    # Everything that can be refused is refused before the run's folder exists.
    source = None
    if config.init_from != "scratch":
        source = live if config.init_from == "resume" else checkpoint_under(models, config.init_from)
        if not source.is_file():
            raise FileNotFoundError(f"init_from {config.init_from!r}: checkpoint to continue from not found: {source}")
    flows, split_rule = assign_splits(flows, config.val_fraction, config.test_fraction)
    run_dir = models / "runs" / safe_name(context.run_id, "run id")
    run_dir.mkdir(parents=True, exist_ok=True)
    # A retried step reuses its run's folder: a checkpoint an earlier attempt left must not be
    # promoted as this attempt's.
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
    init_from = config.init_from
    if source is not None:
        init_from = resume_from(source, run_dir, {**config.model_dump(), "n_features": int(flows["n_features"][0])})
    context.log.info("split: %s", split_rule)
    flows.write_parquet(run_dir / "flows.parquet")
    args = {
        "flows": run_dir / "flows.parquet", "landing": landing_dir(PIPELINE), "checkpoint": run_dir / CHECKPOINT,
        "report": run_dir / "report.json", "init_from": init_from, "split_rule": split_rule,
        **config.model_dump(exclude={"sites", "init_from", "nproc", "val_fraction", "test_fraction"}),
    }
    worker = launch_torchrun(
        context, "netassets.traffic.train", [f"--{k}={v}" for k, v in args.items()], nproc=config.nproc
    ).get_materialize_result()

    report = json.loads((run_dir / "report.json").read_text())
    evaluation = Evaluation.from_dict(report["evaluation"])
    # A continued run in which no epoch beat the checkpoint it started from saved none.
    trained = (run_dir / CHECKPOINT).is_file()
    refusal = promotion_refusal(evaluation) if trained else f"no epoch improved on {config.init_from} on validation"
    if refusal is None:
        make_live(run_dir / CHECKPOINT, live)
        context.log.info("promoted %s to the live model %s: %s", run_dir / CHECKPOINT, live, evaluation.verdict)
    else:
        context.log.warning("the live model %s stays as it was: %s", live, refusal)
    metadata = {**worker.metadata, **evaluation.metadata(), "validation": validation_table(report),
                "sites": sorted(flows["site"].unique()), "run_dir": str(run_dir), **plots(report, run_dir),
                "live_model": dg.MetadataValue.path(str(live)), "live_model_replaced": refusal is None,
                "promotion": dg.MetadataValue.text("promoted" if refusal is None else refusal)}
    return dg.MaterializeResult(metadata=metadata, check_results=[evaluation.check_result(VERDICT_CHECK)])
