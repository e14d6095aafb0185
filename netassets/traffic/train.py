"""Train the next-packet LSTM on indexed flows; a torchrun entry point.

    torchrun --standalone --nproc_per_node=2 -m netassets.traffic.train \\
        --config config.json --flows flows.parquet --landing ~/.netassets/landing/traffic \\
        --checkpoint checkpoint.pt --weights model.safetensors --report report.json [--init_from init_from.pt]

``--config`` is the run's ``TrainConfig`` (``config.py``), written by the ``traffic_lstm``
asset into the run's folder and read here with the same model, so every value is parsed and
bounded once. ``--flows`` is the index written by that asset (one row per flow: file, byte
offset, length, line, and its ``split``: train / val / test, made by whole partitions in
``split.py``); the packets are read through that index from the binary packet caches
``traffic_flows`` wrote (``--cache``, ``traffic/cache.py``), memory-mapped, one batch at a time:
an epoch never parses text, and a capture larger than memory trains as well as a small one. A
cache that is missing or stale (its landing file's size or mtime differ) is rebuilt once, when
the worker starts. ``Flows`` (parsing the raw files) stays as the reference reader.

Validation chooses the best epoch (masked MSE); the test flows are scored once, by that
epoch's weights, next to the simple baselines on the same flows (``core.evaluation``). The
best epoch is saved twice: ``--checkpoint`` (resumable: optimizer, statistics, history) each
time validation improves, and ``--weights`` (safetensors, the model's tensors with its
architecture and statistics as metadata) once training ends.

Each rank takes every world_size-th flow. Feature statistics for the normalisation come
from one streaming pass over the training flows, merged across ranks, and are saved in the
checkpoint; a continued run (``--init_from``, the seed's ``-m``) reuses the checkpoint's
statistics so the model keeps seeing inputs on the scale it was trained on.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.nn.parallel import DistributedDataParallel

from netassets.core.evaluation import SPLITS, Evaluation
from netassets.core.torchrun import worker_session
from netassets.core.training import (
    EarlyStopping,
    all_reduce_sum,
    check_compatible,
    init_distributed,
    load_checkpoint,
    save_checkpoint,
    save_weights,
    seed_everything,
    shutdown_distributed,
)
from netassets.traffic.config import TrainConfig
from netassets.traffic.model import (
    FeatureStats,
    NextPacketLSTM,
    flow_cosine,
    make_batch,
    masked_mse,
    normaliser,
    packet_cosine,
)
from netassets.traffic.cache import CachedFlows
from netassets.traffic.packet_file import cache_dir
from netassets.traffic.readers import FlowFile, FlowRecord

ARCHITECTURE = ["n_features", "hidden_size", "num_layers", "normalisation"]
# the model and its baselines, as the evaluation names them
MODEL, PERSISTENCE, TYPICAL = "next-packet LSTM", "persistence (next = current)", "training mean packet by position"
TYPICAL_START = "persistence, training mean first packet"


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """The run's ``TrainConfig`` (from ``--config``) and the paths of its data and outputs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="the run's TrainConfig as JSON (config.py)")
    parser.add_argument("--flows", required=True, help="parquet index of the flows to use, with their split")
    parser.add_argument("--landing", type=Path, required=True, help="folder the index's source_file paths are relative to")
    parser.add_argument("--checkpoint", type=Path, required=True, help="this run's best epoch, resumable (torch.save)")
    parser.add_argument("--weights", type=Path, required=True, help="this run's best epoch's weights (safetensors)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="packet cache folder (default: $NETASSETS_HOME/cache/traffic)")
    parser.add_argument("--report", type=Path, required=True, help="JSON written by rank 0: history, validation, test evaluation")
    parser.add_argument("--split_rule", default="as given by the index's split column", help="how the flows were split, in words")
    parser.add_argument("--init_from", default="scratch", help="'scratch' or a checkpoint to continue from")
    args = parser.parse_args(argv)
    return TrainConfig.read(args.config), args


def weights_metadata(architecture: dict, stats: FeatureStats, epoch: int) -> dict[str, str]:
    """What a safetensors file needs beside the tensors to rebuild and feed the model (``model.load_model``)."""
    return {"architecture": json.dumps({k: architecture[k] for k in ARCHITECTURE}), "epoch": str(epoch),
            "stats": json.dumps(stats.to_array().tolist())}


def split_indices(index: pl.DataFrame, path: str) -> dict[str, np.ndarray]:
    """Row numbers of each split named in the index's ``split`` column; each must be non-empty."""
    if "split" not in index.columns:
        raise ValueError(f"{path}: the flow index has no 'split' column (train / val / test)")
    split = index["split"].to_numpy()
    unknown = sorted(set(split) - set(SPLITS))
    if unknown:
        raise ValueError(f"{path}: unknown split values {unknown}; expected {SPLITS}")
    indices = {name: np.flatnonzero(split == name) for name in SPLITS}
    if any(len(rows) == 0 for rows in indices.values()):
        raise ValueError(f"{path}: {len(index)} flows give " + ", ".join(f"{len(v)} {k}" for k, v in indices.items())
                         + " flows; every split needs at least one")
    return indices


class Flows:
    """Flows of the index, parsed from the raw files on demand (the reference reader; training
    reads ``cache.CachedFlows``, the same interface); a context manager that unmaps the files on
    exit, so a failed run in a long-lived process leaves no mapping behind."""

    def __init__(self, index: pl.DataFrame, landing: Path):
        self._files: dict[str, FlowFile] = {}
        try:
            files = index.select("source_file", "file_size", "file_mtime_ns").unique(maintain_order=True)
            for name, size, mtime in files.iter_rows():
                path = landing / name
                stat = path.stat()
                if (stat.st_size, stat.st_mtime_ns) != (size, mtime):
                    raise RuntimeError(f"{path} changed since it was indexed; re-materialise its traffic_flows partition")
                self._files[name] = FlowFile(path)
        except BaseException:
            self.close()
            raise
        self._rows = list(index.select("source_file", "line_no", "byte_offset", "byte_length").iter_rows())

    def close(self) -> None:
        for flow_file in self._files.values():
            flow_file.close()

    def __enter__(self) -> "Flows":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> np.ndarray:
        name, line, offset, length = self._rows[i]
        return self._files[name].read(FlowRecord(line, offset, length))


def feature_stats(flows: Flows | CachedFlows, indices: np.ndarray, n_features: int, env) -> FeatureStats:
    """One streaming pass over this rank's training flows, then merged over all ranks."""
    stats = FeatureStats.empty(n_features)
    for i in indices:
        stats = stats.merge(FeatureStats.of(flows[i]))
    # Each rank writes its summary into its own row; a sum then gathers every row everywhere.
    rows = np.zeros((env.world_size, 1 + 4 * n_features))
    rows[env.rank] = np.nan_to_num(stats.to_array(), posinf=0.0, neginf=0.0)  # inf bounds of an empty shard
    gathered = np.asarray(all_reduce_sum(rows.ravel().tolist(), env)).reshape(rows.shape)
    merged = FeatureStats.empty(n_features)
    for row in gathered:
        if row[0] > 0:
            merged = merged.merge(FeatureStats.from_array(row))
    return merged


def batches(flows: Flows | CachedFlows, indices: np.ndarray, config: TrainConfig, normalise, device: torch.device):
    for start in range(0, len(indices), config.batch_size):
        batch = make_batch([flows[i] for i in indices[start : start + config.batch_size]], config.seq_len, normalise)
        yield tuple(t.to(device) for t in batch)


@torch.no_grad()
def position_means(flows: Flows | CachedFlows, train: np.ndarray, n_features: int, config: TrainConfig, normalise, env) -> torch.Tensor:
    """The mean normalised training packet at each position (seq_len, features): the
    "typical flow" baseline, which knows what packet t of a flow usually is but not this flow."""
    mine = train[env.rank :: env.world_size]
    sums, counts = np.zeros((config.seq_len, n_features)), np.zeros(config.seq_len)
    for _, targets, mask in batches(flows, mine, config, normalise, torch.device("cpu")):
        sums += (targets * mask[..., None]).sum(dim=0).double().numpy()
        counts += mask.sum(dim=0).double().numpy()
    totals = np.asarray(all_reduce_sum([*sums.ravel(), *counts], env))
    sums, counts = totals[: sums.size].reshape(sums.shape), totals[sums.size :]
    means = sums / np.maximum(counts, 1)[:, None]
    return torch.from_numpy(means).float().to(env.device)


@torch.no_grad()
def evaluate(predict, flows: Flows | CachedFlows, rows: np.ndarray, config: TrainConfig, normalise, env) -> dict:
    """Scores of ``predict(inputs)`` on the flows ``rows``; each rank scores its share, sums are all-reduced."""
    mine = np.arange(env.rank, len(rows), env.world_size)
    per_flow = np.zeros(len(rows))
    sums = np.zeros(2 + 2 * config.seq_len)  # squared error, packets, per-position cosine, per-position packets
    for batch_no, (inputs, targets, mask) in enumerate(batches(flows, rows[mine], config, normalise, env.device)):
        prediction = predict(inputs)
        batch_rows = mine[batch_no * config.batch_size :][: len(inputs)]
        per_flow[batch_rows] = flow_cosine(prediction, targets, mask).cpu().numpy()
        sums[0] += float(masked_mse(prediction, targets, mask)) * float(mask.sum())
        sums[1] += float(mask.sum())
        sums[2 : 2 + config.seq_len] += packet_cosine(prediction, targets, mask).sum(dim=0).cpu().numpy()
        sums[2 + config.seq_len :] += mask.sum(dim=0).cpu().numpy()
    per_flow = np.asarray(all_reduce_sum(per_flow.tolist(), env))
    sums = np.asarray(all_reduce_sum(sums.tolist(), env))
    counts = sums[2 + config.seq_len :]
    curve = np.divide(sums[2 : 2 + config.seq_len], counts, out=np.full(config.seq_len, np.nan), where=counts > 0)
    return {
        "mse": float(sums[0] / max(sums[1], 1)),
        "cos_mean": float(per_flow.mean()),
        "cos_median": float(np.median(per_flow)),
        "cos_first_packet": float(curve[0]),
        "cos_by_position": [None if math.isnan(v) else float(v) for v in curve],
    }


def score_test_flows(model, flows: Flows | CachedFlows, test: np.ndarray, typical: torch.Tensor, config: TrainConfig,
                     split_rule: str, normalise, env) -> tuple[Evaluation, dict[str, list]]:
    """The test flows scored once: the chosen model and every baseline on exactly these flows.
    Returns the evaluation and each scorer's cosine by packet position (for the plot)."""
    def typical_start(inputs: torch.Tensor) -> torch.Tensor:
        # persistence has only the zero packet to offer for packet 1; the typical first packet is better
        return torch.cat([typical[:1].expand(len(inputs), 1, -1), inputs[:, 1:]], dim=1)

    predictors = {MODEL: model, PERSISTENCE: lambda inputs: inputs,
                  TYPICAL: lambda inputs: typical.expand(len(inputs), -1, -1), TYPICAL_START: typical_start}
    scored = {name: evaluate(predict, flows, test, config, normalise, env) for name, predict in predictors.items()}
    evaluation = Evaluation(
        model=MODEL, metric="cos_mean", higher_is_better=True, rows=len(test), split_rule=split_rule,
        scores={name: {k: v for k, v in s.items() if k != "cos_by_position"} for name, s in scored.items()},
        notes=("rows are flows; cosine similarity per packet in the normalised feature space, masked beyond each "
               "flow's true length, averaged per flow (the seed's metric)",
               "best epoch chosen on validation MSE; test scored once, by that epoch's weights"))
    return evaluation, {name: s["cos_by_position"] for name, s in scored.items()}


def main(argv: list[str] | None = None) -> None:
    config, args = parse_args(argv)
    torch.set_num_threads(config.torch_threads)
    env = init_distributed()
    seed_everything(config.seed)
    with worker_session() as session:
        index = pl.read_parquet(args.flows)
        n_features = int(index["n_features"][0])
        if index["n_features"].n_unique() != 1:
            raise ValueError(f"{args.flows}: flows of several packet dimensions {index['n_features'].unique().to_list()}")
        split = split_indices(index, args.flows)
        train, val, test = split["train"], split["val"], split["test"]
        with CachedFlows(index, args.landing, args.cache or cache_dir()) as flows:
            if flows.rebuilt:
                session.log(f"rebuilt {len(flows.rebuilt)} missing or stale packet caches (once, before training)")
            model = NextPacketLSTM(n_features, config.hidden_size, config.num_layers).to(env.device)
            optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
            architecture = {**config.as_dict(), "n_features": n_features}
            history: list[dict] = []
            resumed_epoch = None
            if args.init_from == "scratch":
                stats = feature_stats(flows, train[env.rank :: env.world_size], n_features, env)
            else:
                saved = load_checkpoint(Path(args.init_from))
                check_compatible(saved["architecture"], architecture, ARCHITECTURE, Path(args.init_from))
                model.load_state_dict(saved["model"])
                optimizer.load_state_dict(saved["optimizer"])
                stats, history, resumed_epoch = FeatureStats.from_array(saved["stats"].numpy()), saved["history"], saved["epoch"]
                session.log(f"continuing from {args.init_from} after epoch {resumed_epoch}")
            normalise = normaliser(config.normalisation, stats)
            on_gpu = env.device.type == "cuda"
            ddp = DistributedDataParallel(model, device_ids=[env.local_rank] if on_gpu else None) if env.distributed else model

            val_persistence = evaluate(lambda inputs: inputs, flows, val, config, normalise, env)
            # A continued run starts from the loaded model's score on today's validation flows,
            # so it only replaces the checkpoint with something better on the same footing.
            best = None if resumed_epoch is None else {**evaluate(model, flows, val, config, normalise, env), "epoch": resumed_epoch}
            best_weights = None if best is None else {k: v.detach().clone() for k, v in model.state_dict().items()}
            stopper = EarlyStopping("min", config.patience, best=best["mse"] if best else None)
            first_epoch = (resumed_epoch or 0) + 1
            for epoch in range(first_epoch, first_epoch + config.epochs):
                flows.check_unchanged()  # the caches stand for the landing files as indexed
                model.train()
                order = np.random.default_rng(config.seed + epoch).permutation(train)
                per_rank = math.ceil(len(order) / env.world_size)
                # Equal batch counts on every rank (DDP synchronises each backward): wrap around to pad.
                mine = np.resize(order, per_rank * env.world_size)[env.rank :: env.world_size]
                loss_sum, packets = 0.0, 0.0
                for inputs, targets, mask in batches(flows, mine, config, normalise, env.device):
                    loss = masked_mse(ddp(inputs), targets, mask)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    loss_sum, packets = loss_sum + loss.item() * float(mask.sum()), packets + float(mask.sum())
                loss_sum, packets = all_reduce_sum([loss_sum, packets], env)
                model.eval()
                scores = evaluate(model, flows, val, config, normalise, env)
                history.append({"epoch": epoch, "train_mse": loss_sum / max(packets, 1), "val_mse": scores["mse"],
                                "val_cos_mean": scores["cos_mean"], "val_cos_median": scores["cos_median"]})
                if env.is_main:
                    session.log(" ".join(f"{k} {v:.4g}" for k, v in history[-1].items()))
                if stopper.step(scores["mse"]):
                    best = {**scores, "epoch": epoch}
                    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    if env.is_main:
                        save_checkpoint(args.checkpoint, {
                            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "architecture": architecture, "stats": torch.from_numpy(stats.to_array()),
                            "epoch": epoch, "history": history,
                        })
                if stopper.should_stop:
                    session.log(f"early stop: no improvement in {config.patience} epochs")
                    break
            if best is None:
                raise RuntimeError("no epoch ran (epochs=0 on a fresh model): nothing to report")

            model.load_state_dict(best_weights)
            model.eval()
            if env.is_main and best["epoch"] != resumed_epoch:  # an epoch of this run was saved as its checkpoint
                save_weights(args.weights, best_weights, weights_metadata(architecture, stats, best["epoch"]))
            typical = position_means(flows, train, n_features, config, normalise, env)
            evaluation, test_curves = score_test_flows(model, flows, test, typical, config, args.split_rule, normalise, env)
        session.log(evaluation.verdict)

        report = {"config": {**config.as_dict(), "init_from": args.init_from, "split_rule": args.split_rule},
                  "n_features": n_features, "world_size": env.world_size,
                  "flows": {name: len(rows) for name, rows in split.items()}, "history": history,
                  "best_epoch": best["epoch"], "val": {"model": best, "persistence": val_persistence},
                  "evaluation": evaluation.to_dict(), "test_cos_by_position": test_curves,
                  "stats": {"mean": stats.mean.tolist(), "std": stats.std.tolist(),
                            "min": stats.minimum.tolist(), "max": stats.maximum.tolist(), "packets": stats.count}}
        if env.is_main:
            args.report.write_text(json.dumps(report))
        test_scores = evaluation.scores
        session.report(metadata={
            **{f"{name}_flows": len(rows) for name, rows in split.items()}, "n_features": n_features,
            "best_epoch": best["epoch"], "epochs_run": sum(h["epoch"] >= first_epoch for h in history),
            "val_cos_mean": best["cos_mean"], "val_cos_median": best["cos_median"], "val_mse": best["mse"],
            "val_persistence_cos_mean": val_persistence["cos_mean"],
            "test_cos_mean": test_scores[MODEL]["cos_mean"], "test_cos_median": test_scores[MODEL]["cos_median"],
            "test_persistence_cos_mean": test_scores[PERSISTENCE]["cos_mean"],
            "test_persistence_cos_median": test_scores[PERSISTENCE]["cos_median"],
            "checkpoint": str(args.checkpoint), "world_size": env.world_size,
        })
    shutdown_distributed()


if __name__ == "__main__":
    main()
