"""Train BandwidthLSTM on a windows file. torchrun entry point, one readable loop (nanoGPT style).

    torchrun --standalone --nproc_per_node=2 -m netassets.dwcp.train --config=run.json --epochs=3

``--config`` is a JSON file of TrainConfig fields; ``--field=value`` overrides one. Writes into
``out_dir``: best_model.pt (tensors and plain values only), history.json and predictions.npz
(test-split predictions in original units, with their window indices).

StandardScaler statistics (mean, population std) come from the training split only; the seed
fit them before splitting, which leaks test statistics into training.
"""

from __future__ import annotations

import ast
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from netassets.core.torchrun import worker_session
from netassets.core.training import (
    EarlyStopping, all_reduce_sum, config_dict, dataclass_from_dict, init_distributed, load_checkpoint,
    save_checkpoint, seed_everything, shutdown_distributed,
)
from netassets.dwcp.artifacts import CHECKPOINT, HISTORY, PREDICTIONS
from netassets.dwcp.model import build_model
from netassets.dwcp.windows import Windows


@dataclass
class TrainConfig:
    windows_path: str = ""             # the guide's --data-path (a windows .npz here)
    out_dir: str = ""                  # the guide's --output-dir
    epochs: int = 150
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 42
    lstm_sizes: tuple[int, ...] = (256, 128, 64)
    dense_sizes: tuple[int, int, int] = (128, 64, 32)
    dropout: float = 0.3
    dense2_dropout: float = 0.21
    early_stopping_patience: int = 15
    lr_patience: int = 5               # ReduceLROnPlateau, as in the seed: halve after 5 flat epochs
    lr_factor: float = 0.5


def parse_config(argv: list[str]) -> TrainConfig:
    values: dict = {}
    for arg in argv:
        key, _, raw = arg.removeprefix("--").partition("=")
        if key == "config":
            values.update(json.loads(Path(raw).read_text()))
        else:
            try:
                values[key.replace("-", "_")] = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                values[key.replace("-", "_")] = raw  # a plain string such as a path
    cfg = dataclass_from_dict(TrainConfig, values)
    if not cfg.windows_path or not cfg.out_dir:
        raise ValueError("windows_path and out_dir are required")
    return cfg


def standardise(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std over all axes but the last (sklearn's StandardScaler)."""
    flat = a.reshape(-1, a.shape[-1]).astype(np.float64)
    scale = flat.std(axis=0)
    return flat.mean(axis=0), np.where(scale > 0, scale, 1.0)


def main(argv: list[str]) -> None:
    cfg = parse_config(argv)
    env = init_distributed()
    seed_everything(cfg.seed)
    out = Path(cfg.out_dir)
    started = time.monotonic()
    with worker_session() as session:
        data = Windows.load(Path(cfg.windows_path))
        train_idx, val_idx, test_idx = (data.part(s) for s in ("train", "val", "test"))
        if min(len(train_idx), len(val_idx), len(test_idx)) < 2:
            raise ValueError(f"{cfg.windows_path}: train/val/test hold {len(train_idx)}/{len(val_idx)}/"
                             f"{len(test_idx)} windows; each needs at least 2")
        x_mean, x_scale = standardise(data.x[train_idx])
        y_mean, y_scale = standardise(data.y[train_idx])
        X = torch.from_numpy(((data.x - x_mean) / x_scale).astype(np.float32))
        Y = torch.from_numpy(((data.y - y_mean) / y_scale).astype(np.float32))

        arch = {"n_features": len(data.features), "n_targets": len(data.targets), "lstm_sizes": list(cfg.lstm_sizes),
                "dense_sizes": list(cfg.dense_sizes), "dropout": cfg.dropout, "dense2_dropout": cfg.dense2_dropout}
        raw_model = build_model(arch).to(env.device)
        model = DistributedDataParallel(raw_model) if env.distributed else raw_model
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.lr_factor, patience=cfg.lr_patience)
        stopper = EarlyStopping(mode="min", patience=cfg.early_stopping_patience)
        n_params = sum(p.numel() for p in raw_model.parameters())
        session.log(f"BandwidthLSTM {n_params:,} parameters; windows train/val/test "
                    f"{len(train_idx)}/{len(val_idx)}/{len(test_idx)}; world size {env.world_size}")

        # Every rank takes the same number of batches (DDP all-reduces gradients per batch).
        per_rank = len(train_idx) // env.world_size
        val_mine = val_idx[env.rank::env.world_size]
        history: list[dict] = []
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(cfg.seed + epoch))
            mine = train_idx[order[env.rank * per_rank:(env.rank + 1) * per_rank].numpy()]
            loss_sum, seen = 0.0, 0
            for start in range(0, len(mine), cfg.batch_size):
                batch = mine[start:start + cfg.batch_size]
                if len(batch) < 2:
                    continue  # batch norm cannot train on a single window
                xb, yb = X[batch].to(env.device), Y[batch].to(env.device)
                loss = torch.nn.functional.mse_loss(model(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum, seen = loss_sum + loss.item() * len(batch), seen + len(batch)

            raw_model.eval()
            with torch.no_grad():
                val_sq = sum(((raw_model(X[c].to(env.device)) - Y[c].to(env.device)) ** 2).mean(1).sum().item()
                             for c in np.array_split(val_mine, max(1, len(val_mine) // 1024)) if len(c))
            loss_sum, seen, val_sq, val_n = all_reduce_sum([loss_sum, seen, val_sq, len(val_mine)], env)
            train_loss, val_loss = loss_sum / max(seen, 1), val_sq / val_n
            if not math.isfinite(val_loss):
                raise ValueError(f"epoch {epoch}: validation loss {val_loss}: training diverged (lower --learning-rate?)")
            scheduler.step(val_loss)
            improved = stopper.step(val_loss)
            lr = optimizer.param_groups[0]["lr"]
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr})
            session.log(f"epoch {epoch}/{cfg.epochs} train {train_loss:.5f} val {val_loss:.5f} lr {lr:.2e}"
                        + (" *" if improved else ""))
            if improved and env.is_main:
                save_checkpoint(out / CHECKPOINT, {
                    "model": raw_model.state_dict(), "arch": arch, "epoch": epoch, "val_loss": val_loss,
                    "features": data.features, "targets": data.targets, "window": data.window, "horizon": data.horizon,
                    "scaler": {"x_mean": x_mean.tolist(), "x_scale": x_scale.tolist(),
                               "y_mean": y_mean.tolist(), "y_scale": y_scale.tolist()},
                    "config": config_dict(cfg),
                })
            if stopper.should_stop:
                session.log(f"early stopping after epoch {epoch}: no improvement for {stopper.patience} epochs")
                break

        if env.is_main:
            best = load_checkpoint(out / CHECKPOINT)
            raw_model.load_state_dict(best["model"])
            raw_model.eval()
            with torch.no_grad():
                scaled = torch.cat([raw_model(X[c].to(env.device)).cpu()
                                    for c in np.array_split(test_idx, max(1, len(test_idx) // 1024))])
            predictions = scaled.numpy().astype(np.float64) * y_scale + y_mean
            np.savez(out / PREDICTIONS, index=test_idx, prediction=predictions)
            duration = time.monotonic() - started
            (out / HISTORY).write_text(json.dumps({"epochs": history, "best_epoch": best["epoch"],
                                                   "training_time_seconds": duration, "world_size": env.world_size,
                                                   "n_params": n_params, "config": config_dict(cfg)}, indent=1))
            test_rmse = np.sqrt(((predictions - data.y[test_idx]) ** 2).mean(axis=0))
            session.report(metadata={
                "epochs_run": len(history), "best_epoch": best["epoch"], "best_val_loss": float(best["val_loss"]),
                "parameters": n_params, "world_size": env.world_size, "training_time_s": round(duration, 2),
                "windows_train_val_test": f"{len(train_idx)}/{len(val_idx)}/{len(test_idx)}",
                **{f"test_rmse_{t}": float(v) for t, v in zip(data.targets, test_rmse)},
                "checkpoint": str(out / CHECKPOINT),
            })
    shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1:])
