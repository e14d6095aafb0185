"""One training run of the next-packet LSTM, outside Dagster: the flows it reads, its folder,
where it continues from, and whether its model goes to production.

Every model file goes through one ``core.model_store.ModelStore`` (``model_store()``), under
``artifacts_dir("traffic") / "traffic_lstm"``::

    runs/<run_id>/        one training run: config.json (its TrainConfig), flows.parquet (the
                          index with each flow's split), init_from.pt (the checkpoint it
                          continued from), checkpoint.pt (its best epoch, resumable),
                          model.safetensors (that epoch's weights), report.json and plots
    candidate.json        the last trained run, with its test verdict
    production/<run_id>.<time>.<n>/  the live model's checkpoint.pt and model.safetensors
    production.json      which production folder is live: replaced only by a finished run
                          whose best epoch beats the strongest simple baseline on the test flows

Flows are split by whole partitions (``split.py``); validation picks the best epoch, test judges
it once against persistence and the typical-flow baselines on the same flows
(``core.evaluation``). A run that fails, is killed or loses on test writes only into its own
folder, so the live model stays what the last promoted run made it.

No torch at module level: the Dagster asset imports this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from netassets.core.evaluation import Evaluation
from netassets.core.files import copy_file
from netassets.core.model_store import ModelStore, ModelVersion
from netassets.core.settings import landing_dir, safe_name
from netassets.core.sql import load_sql
from netassets.traffic import cache
from netassets.traffic.packet_file import cache_dir
from netassets.traffic.config import TrainConfig
from netassets.traffic.split import assign_splits

if TYPE_CHECKING:  # the resource type only; this module needs no dagster
    from netassets.core.warehouse import DuckDBWarehouse

MODEL = "traffic_lstm"
CHECKPOINT, WEIGHTS, REPORT = "checkpoint.pt", "model.safetensors", "report.json"


def model_store() -> ModelStore:
    """The next-packet LSTM's store (built on each call: NETASSETS_HOME may change between runs)."""
    return ModelStore("traffic", MODEL, produced_by="traffic_lstm")


def training_flows(warehouse: "DuckDBWarehouse", sites: list[str]) -> pl.DataFrame:
    """The indexed flows of ``sites`` (all when empty), refused unless they share one packet dimension."""
    sites = [safe_name(site, "site") for site in sites]
    with warehouse.connect(read_only=True) as conn:
        if not warehouse.table_exists(conn, "traffic_flows"):
            raise LookupError("table traffic_flows does not exist yet: materialise traffic_flows partitions first")
        flows = conn.execute(load_sql("traffic", "training_flows"), {"sites": sites}).pl()
    if flows.is_empty():
        raise ValueError(f"no flows in traffic_flows for sites {sites or 'any'}")
    if flows["n_features"].n_unique() > 1:
        raise ValueError(
            f"flows have different packet dimensions {sorted(flows['n_features'].unique())} "
            f"across sites {sorted(flows['site'].unique())}: choose sites of one dimension in config 'sites'"
        )
    return flows


def init_source(store: ModelStore, init_from: str) -> Path | None:
    """The checkpoint ``init_from`` names ('scratch': None; 'resume': the live model's), refused
    before the run's folder exists when it is not there."""
    if init_from == "scratch":
        return None
    if init_from == "resume":
        live = store.production()
        source = live.path("checkpoint") if live is not None else store.root / "production.json"
    else:
        source = store.inside(init_from, "init_from")
    if not source.is_file():
        raise FileNotFoundError(f"init_from {init_from!r}: checkpoint to continue from not found: {source}"
                                + (" (no model promoted yet)" if init_from == "resume" else ""))
    return source


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


@dataclass(frozen=True)
class PreparedRun:
    run_id: str
    folder: Path
    flows: pl.DataFrame  # with each flow's split
    split_rule: str
    worker_args: list[str]  # for ``torchrun -m netassets.traffic.train``


def prepare_run(store: ModelStore, run_id: str, flows: pl.DataFrame, config: TrainConfig,
                source: Path | None) -> PreparedRun:
    """Split the flows, make the run's folder and write what the worker reads there."""
    flows, split_rule = assign_splits(flows, config.val_fraction, config.test_fraction)
    folder = store.run_dir(run_id)
    # A retried step reuses its run's folder: a model an earlier attempt left must not be
    # proposed as this attempt's.
    for name in (CHECKPOINT, WEIGHTS):
        (folder / name).unlink(missing_ok=True)
    init_from = "scratch"
    if source is not None:
        init_from = resume_from(source, folder, {**config.as_dict(), "n_features": int(flows["n_features"][0])})
    flows.write_parquet(folder / "flows.parquet")
    config.write(folder / "config.json")
    # Packet caches missing or stale (a landing file changed, a cache deleted) are built here,
    # once, before the ranks start: every epoch then reads them memory-mapped.
    cache.ensure(flows, landing_dir("traffic"), cache_dir())
    args = {"config": folder / "config.json", "flows": folder / "flows.parquet", "landing": landing_dir("traffic"),
            "cache": cache_dir(),
            "checkpoint": folder / CHECKPOINT, "weights": folder / WEIGHTS, "report": folder / REPORT,
            "init_from": init_from, "split_rule": split_rule}
    return PreparedRun(run_id, folder, flows, split_rule, [f"--{k}={v}" for k, v in args.items()])


@dataclass(frozen=True)
class RunOutcome:
    report: dict
    evaluation: Evaluation
    refusal: str | None  # why production was kept; None: this run's model is live now
    live: ModelVersion | None  # the production model after this run

    @property
    def promoted(self) -> bool:
        return self.refusal is None


def conclude(store: ModelStore, run: PreparedRun, init_from: str) -> RunOutcome:
    """Propose the run's best epoch and promote it when it beats the strongest baseline on test;
    otherwise production stays as it was and the outcome says why."""
    report = json.loads((run.folder / REPORT).read_text())
    evaluation = Evaluation.from_dict(report["evaluation"])
    store.finish_run(run.run_id, best_epoch=report["best_epoch"])
    # A continued run in which no epoch beat the checkpoint it started from saved none.
    if not (run.folder / CHECKPOINT).is_file():
        return RunOutcome(report, evaluation, f"no epoch improved on {init_from} on validation", store.production())
    candidate = store.propose(run.run_id, {"checkpoint": CHECKPOINT, "weights": WEIGHTS}, [evaluation],
                              best_epoch=report["best_epoch"], split_rule=run.split_rule,
                              sites=sorted(run.flows["site"].unique()))
    problems = store.refusals(candidate)
    if problems:
        return RunOutcome(report, evaluation, "; ".join(problems), store.production())
    return RunOutcome(report, evaluation, None, store.promote(version=candidate))
