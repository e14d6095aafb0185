"""Train the next-packet LSTM on indexed flows; a torchrun entry point.

    torchrun --standalone --nproc_per_node=2 -m netassets.traffic.train \\
        --flows flows.parquet --landing ~/.netassets/landing/traffic \\
        --checkpoint model.pt --report report.json --epochs 5 [--init_from model.pt]

``--flows`` is the index written by the ``traffic_lstm`` asset (one row per flow: file,
byte offset, length, line); flows are parsed from the raw files through that index one
batch at a time, so a capture larger than memory trains as well as a small one.

Each rank takes every world_size-th flow. Feature statistics for the normalisation come
from one streaming pass over the training flows, merged across ranks, and are saved in the
checkpoint; a continued run (``--init_from``, the seed's ``-m``) reuses the checkpoint's
statistics so the model keeps seeing inputs on the scale it was trained on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.nn.parallel import DistributedDataParallel

from netassets.core.torchrun import worker_session
from netassets.core.training import (
    EarlyStopping,
    all_reduce_sum,
    check_compatible,
    init_distributed,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    shutdown_distributed,
)
from netassets.traffic.model import (
    NORMALISATIONS,
    FeatureStats,
    NextPacketLSTM,
    flow_cosine,
    make_batch,
    masked_mse,
    normaliser,
    packet_cosine,
)
from netassets.traffic.readers import FlowFile, FlowRecord

ARCHITECTURE = ["n_features", "hidden_size", "num_layers", "normalisation"]


@dataclass
class TrainConfig:
    flows: str = ""  # parquet index of the flows to use
    landing: str = ""  # folder the index's source_file paths are relative to
    checkpoint: str = ""  # where this run's best model is written (the asset makes it the live model afterwards)
    report: str = ""  # JSON written by rank 0: history and held-out scores
    init_from: str = "scratch"  # "scratch" or a checkpoint to continue from
    seq_len: int = 100
    normalisation: str = "standardise"  # l2 | standardise | minmax
    hidden_size: int = 128
    num_layers: int = 1
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    patience: int = 5
    val_fraction: float = 0.3
    seed: int = 0
    torch_threads: int = 1


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in fields(TrainConfig):
        parser.add_argument(f"--{f.name}", type=type(f.default), default=f.default)
    config = TrainConfig(**vars(parser.parse_args(argv)))
    if config.normalisation not in NORMALISATIONS:
        parser.error(f"--normalisation must be one of {NORMALISATIONS}")
    if not 0 < config.val_fraction < 1 or config.seq_len < 1 or config.epochs < 0:
        parser.error("need 0 < val_fraction < 1, seq_len >= 1, epochs >= 0")
    return config


def in_validation(source_file: str, line: int, fraction: float) -> bool:
    """A stable hash of the flow's identity, not a shuffled split: a flow stays on its side when
    new days are added and a continued run is scored on flows it never trained on."""
    digest = hashlib.blake2b(f"{source_file}:{line}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


class Flows:
    """Flows of the index, parsed from the raw files on demand; a context manager that unmaps
    the files on exit, so a failed run in a long-lived process leaves no mapping behind."""

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


def feature_stats(flows: Flows, indices: np.ndarray, n_features: int, env) -> FeatureStats:
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


def batches(flows: Flows, indices: np.ndarray, config: TrainConfig, normalise, device: torch.device):
    for start in range(0, len(indices), config.batch_size):
        batch = make_batch([flows[i] for i in indices[start : start + config.batch_size]], config.seq_len, normalise)
        yield tuple(t.to(device) for t in batch)


@torch.no_grad()
def evaluate(predict, flows: Flows, val: np.ndarray, config: TrainConfig, normalise, env) -> dict:
    """Held-out scores of ``predict(inputs)``; each rank scores its share, sums are all-reduced."""
    mine = np.arange(env.rank, len(val), env.world_size)
    per_flow = np.zeros(len(val))
    sums = np.zeros(2 + 2 * config.seq_len)  # squared error, packets, per-position cosine, per-position packets
    for batch_no, (inputs, targets, mask) in enumerate(batches(flows, val[mine], config, normalise, env.device)):
        prediction = predict(inputs)
        rows = mine[batch_no * config.batch_size :][: len(inputs)]
        per_flow[rows] = flow_cosine(prediction, targets, mask).cpu().numpy()
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


def main(argv: list[str] | None = None) -> None:
    config = parse_config(argv)
    torch.set_num_threads(config.torch_threads)
    env = init_distributed()
    seed_everything(config.seed)
    with worker_session() as session:
        index = pl.read_parquet(config.flows)
        n_features = int(index["n_features"][0])
        if index["n_features"].n_unique() != 1:
            raise ValueError(f"{config.flows}: flows of several packet dimensions {index['n_features'].unique().to_list()}")
        with Flows(index, Path(config.landing)) as flows:
            is_val = np.array([in_validation(s, l, config.val_fraction)
                               for s, l in index.select("source_file", "line_no").iter_rows()])
            train, val = np.flatnonzero(~is_val), np.flatnonzero(is_val)
            if len(train) == 0 or len(val) == 0:
                raise ValueError(f"{len(index)} flows give {len(train)} training and {len(val)} validation flows; need both")

            model = NextPacketLSTM(n_features, config.hidden_size, config.num_layers).to(env.device)
            optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
            architecture = {**asdict(config), "n_features": n_features}
            history: list[dict] = []
            resumed_epoch = None
            if config.init_from == "scratch":
                stats = feature_stats(flows, train[env.rank :: env.world_size], n_features, env)
            else:
                saved = load_checkpoint(Path(config.init_from))
                check_compatible(saved["architecture"], architecture, ARCHITECTURE, Path(config.init_from))
                model.load_state_dict(saved["model"])
                optimizer.load_state_dict(saved["optimizer"])
                stats, history, resumed_epoch = FeatureStats.from_array(saved["stats"].numpy()), saved["history"], saved["epoch"]
                session.log(f"continuing from {config.init_from} after epoch {resumed_epoch}")
            normalise = normaliser(config.normalisation, stats)
            on_gpu = env.device.type == "cuda"
            ddp = DistributedDataParallel(model, device_ids=[env.local_rank] if on_gpu else None) if env.distributed else model

            persistence = evaluate(lambda inputs: inputs, flows, val, config, normalise, env)
            # A continued run starts from the loaded model's score on today's validation flows,
            # so it only replaces the checkpoint with something better on the same footing.
            best = None if resumed_epoch is None else {**evaluate(model, flows, val, config, normalise, env), "epoch": resumed_epoch}
            stopper = EarlyStopping("min", config.patience, best=best["mse"] if best else None)
            first_epoch = (resumed_epoch or 0) + 1
            for epoch in range(first_epoch, first_epoch + config.epochs):
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
                    if env.is_main:
                        save_checkpoint(Path(config.checkpoint), {
                            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "architecture": architecture, "stats": torch.from_numpy(stats.to_array()),
                            "epoch": epoch, "history": history,
                        })
                if stopper.should_stop:
                    session.log(f"early stop: no improvement in {config.patience} epochs")
                    break
            if best is None:
                raise RuntimeError("no epoch ran (epochs=0 on a fresh model): nothing to report")

        report = {"config": asdict(config), "n_features": n_features, "train_flows": len(train), "val_flows": len(val),
                  "world_size": env.world_size, "history": history, "model": best, "persistence": persistence,
                  "stats": {"mean": stats.mean.tolist(), "std": stats.std.tolist(),
                            "min": stats.minimum.tolist(), "max": stats.maximum.tolist(), "packets": stats.count}}
        if env.is_main:
            Path(config.report).write_text(json.dumps(report))
        session.report(metadata={
            "train_flows": len(train), "val_flows": len(val), "n_features": n_features,
            "best_epoch": best["epoch"], "epochs_run": sum(h["epoch"] >= first_epoch for h in history),
            "val_cos_mean": best["cos_mean"], "val_cos_median": best["cos_median"], "val_mse": best["mse"],
            "persistence_cos_mean": persistence["cos_mean"], "persistence_cos_median": persistence["cos_median"],
            "beats_persistence": bool(best["cos_mean"] > persistence["cos_mean"]),
            "checkpoint": config.checkpoint, "world_size": env.world_size,
        })
    shutdown_distributed()


if __name__ == "__main__":
    main()
