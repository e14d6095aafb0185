"""Traffic assets: flow files -> ``traffic_flows`` index in DuckDB -> ``traffic_lstm`` next-packet model.

``traffic_flows`` stores one row per flow (file, line, byte offset and length, packet and
feature counts), not the packets, in DuckDB. The packets it parses while indexing are written
once into a binary packet cache beside the partition ($NETASSETS_HOME/cache/traffic/<site>/<day>/,
``netassets.traffic.cache``), fingerprinted by each landing file's size and mtime; training
reads that cache memory-mapped, so an epoch never parses text (a stale or missing cache is
rebuilt once before training starts).

``traffic_lstm`` trains in its own run folder and goes to production through the model store
only when it beats the strongest simple baseline on the test flows (``netassets.traffic.runs``
has the files and the rule). The compute lives in ``netassets/traffic/``; this module wires it.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field, field_validator, model_validator

from netassets.core.automation import landing_fingerprint_metadata
from netassets.core.metadata import shown
from netassets.core.partitions import context_partition
from netassets.core.settings import safe_name
from netassets.core.torchrun import launch_torchrun
from netassets.core.warehouse import POOL, DuckDBWarehouse
from netassets.defs.traffic.pipeline import PIPELINE
from netassets.traffic.config import TrainConfig

VERDICT_CHECK = "beats_strongest_baseline"


class TrafficFlowsConfig(dg.Config):
    skip_bad_flows: bool = Field(default=False, strict=True, description=(
        "False: the first bad flow fails the partition, naming file and line. True: bad flows are left "
        "out and counted per reason in the metadata and a log warning, with file:line of the first few"))


@dg.asset(partitions_def=PIPELINE.partitions, pool=POOL, group_name=PIPELINE.name, kinds={"duckdb"})
def traffic_flows(context: dg.AssetExecutionContext, config: TrafficFlowsConfig, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """One row per flow of landing/traffic/<site>/<day>/*.{csv,json,jsonl}, with its packet count;
    the parsed packets go once into the partition's packet cache, which training reads."""
    from netassets.traffic.ingest import index_partition

    partition = context_partition(context, PIPELINE.dimension)
    indexed = index_partition(partition.day, partition.other, skip_bad=config.skip_bad_flows)
    if indexed.skipped_warning:
        context.log.warning(indexed.skipped_warning)
    write = warehouse.replace_partition("traffic_flows", {"day": partition.day, "site": partition.other},
                                        data=indexed.frame)
    return dg.MaterializeResult(metadata={
        **write.metadata,
        **indexed.summary(),
        **landing_fingerprint_metadata(indexed.index.states),
        "skipped_examples": dg.MetadataValue.md("\n".join(f"- `{e}`" for e in indexed.index.skipped_examples) or "none"),
    })


class TrafficLSTMConfig(TrainConfig, dg.Config):
    """Every value is checked here, when the run's config is read, before anything is launched:
    a message names the field and its allowed range. The training fields (``TrainConfig``) go
    to the worker as the run's config.json."""

    sites: list[str] = Field(default=[], description="train on these sites only; empty: every site in traffic_flows")
    init_from: str = Field(default="scratch", min_length=1, max_length=500, description=(
        "'scratch', 'resume' (the live model) or a checkpoint path relative to the model's folder "
        "(models/traffic/traffic_lstm), e.g. runs/<run_id>/checkpoint.pt (the best epoch of a run that "
        "failed or was killed later)"))
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
    def _continued_if_no_epochs(self) -> "TrafficLSTMConfig":
        if self.epochs == 0 and self.init_from == "scratch":
            raise ValueError("epochs must be >= 1 for a model trained from scratch (epochs 0 only scores a "
                             "continued model, init_from 'resume' or a checkpoint)")
        return self


@dg.asset(
    deps=[traffic_flows],
    group_name=PIPELINE.name,
    kinds={"pytorch"},
    check_specs=[dg.AssetCheckSpec(VERDICT_CHECK, asset="traffic_lstm",
                                   description="The model beats its strongest simple baseline on the test flows "
                                               "(WARN when it loses; it is then not promoted)")],
)
def traffic_lstm(context: dg.AssetExecutionContext, config: TrafficLSTMConfig, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Next-packet LSTM trained with torchrun on the indexed flows, split by partition; test
    cosine similarity next to persistence (next = current), the training mean packet by
    position and persistence with that mean for packet 1, on the same flows, and the seed's
    plots. Promoted to the live model only when it beats the strongest of them on test."""
    from netassets.traffic import runs
    from netassets.traffic.report import plots, validation_table

    store = runs.model_store()
    flows = runs.training_flows(warehouse, config.sites)
    # Everything that can be refused is refused before the run's folder exists.
    source = runs.init_source(store, config.init_from)
    run = runs.prepare_run(store, context.run_id, flows, TrainConfig.of(config), source)
    context.log.info("split: %s", run.split_rule)
    worker = launch_torchrun(context, "netassets.traffic.train", run.worker_args,
                             nproc=config.nproc).get_materialize_result()

    outcome = runs.conclude(store, run, config.init_from)
    live = outcome.live.path("checkpoint") if outcome.live is not None else None
    if outcome.promoted:
        context.log.info("promoted run %s to the live model %s: %s", run.run_id, live, outcome.evaluation.verdict)
    else:
        context.log.warning("the live model %s stays as it was: %s", live or "(none yet)", outcome.refusal)
    metadata = {**worker.metadata, **outcome.evaluation.metadata(), "validation": validation_table(outcome.report),
                "sites": sorted(run.flows["site"].unique()), "run_dir": str(run.folder),
                **plots(outcome.report, run.folder),
                "live_model": dg.MetadataValue.path(str(live) if live else "none"),
                "live_model_replaced": outcome.promoted,
                "promotion": dg.MetadataValue.text("promoted" if outcome.promoted else outcome.refusal)}
    return dg.MaterializeResult(metadata=shown(metadata), check_results=[outcome.evaluation.check_result(VERDICT_CHECK)])
