"""Train BandwidthLSTM on a windows file. torchrun entry point, one readable loop (nanoGPT style).

    torchrun --standalone --nproc_per_node=2 -m netassets.dwcp.train \
        --config=<run>/config.json --windows=<run>/windows.npz --out=<run>

``--config`` is the run's ``config.TrainConfig`` file (written by the asset), ``--windows`` the
windows it trains on, ``--out`` the run's folder. Writes there: best_model.pt (tensors and plain
values only, the best epoch), model.safetensors (its final weights), history.json and
predictions.npz (test-split predictions in original units, with their window indices).

The network is trained as a DeltaForecaster (see model.py). Its linear start is fitted in closed
form and frozen before any epoch: a relative ridge AR per target (own relative window) and an
absolute ridge per target (every feature's window plus the clock features, when the windows carry
them), penalties chosen on validation, blended per target with the absolute share from BLEND_GRID
that does best on validation in original units. The LSTM's loss is the MSE of what the linear start
leaves of the change from the last observed value, relative to the window's level and in units of
its training std. (Weighting it by the level squared, to match RMSE in original units, was tried on
HSDPA: worse at horizons 1 and 3.) Epoch 0 is the linear start; the best epoch, early stopping and
the learning-rate schedule read the validation split only, in the verdict's metric (mean over
targets of RMSE / std, original units). The network is an ensemble of ``ensemble_members``
BandwidthLSTMs trained in the same loop on the same batches, each on its own loss (the loss is
the mean of the members' MSEs), and validated as their mean; the best epoch's mean network output
is then scaled by the share from NET_SHARE_GRID that does best on validation (averaging it with
the linear start); the test split is predicted once, by that model.
StandardScaler statistics (mean, population std) come from the training split
only; the seed fit them before splitting, which leaks test statistics into training.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from netassets.core.torchrun import worker_session
from netassets.core.training import (
    EarlyStopping, all_reduce_sum, init_distributed, load_checkpoint, save_checkpoint, save_weights, seed_everything,
    share_main_buffers, shutdown_distributed,
)
from netassets.dwcp.config import TrainConfig
from netassets.dwcp.runs import CHECKPOINT, HISTORY, PREDICTIONS, WEIGHTS
from netassets.dwcp.baselines import fit_ridge_on_validation
from netassets.dwcp.model import DeltaForecaster, build_model
from netassets.dwcp.windows import Windows


def parse_args(argv: list[str]) -> tuple[TrainConfig, Path, Path]:
    """``--config=<file> --windows=<file> --out=<folder>``: the training values come from the file only."""
    values = dict(arg.removeprefix("--").partition("=")[::2] for arg in argv)
    missing = [k for k in ("config", "windows", "out") if not values.get(k)]
    unknown = sorted(set(values) - {"config", "windows", "out"})
    if missing or unknown:
        raise ValueError(f"usage: --config=<file> --windows=<file> --out=<folder> (missing {missing}, unknown {unknown})")
    return TrainConfig.read(Path(values["config"])), Path(values["windows"]), Path(values["out"])


# A window's level (mean |target|) is floored at this fraction of the target's training mean, so a
# window of zeros (an outage) does not turn a small change into a huge relative one.
LEVEL_FLOOR = 0.05
TIME, WEEKDAY = "time_of_day", "day_of_week"  # clock features the absolute linear path encodes, when present
ABSOLUTE_ALPHAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e3)
BLEND_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)  # absolute share of the linear start, chosen per target on validation
NET_SHARE_GRID = tuple(round(0.1 * k, 1) for k in range(1, 11))  # the network's share in the final forecast, chosen on validation


def standardise(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std over all axes but the last (sklearn's StandardScaler)."""
    flat = a.reshape(-1, a.shape[-1]).astype(np.float64)
    scale = flat.std(axis=0)
    return flat.mean(axis=0), np.where(scale > 0, scale, 1.0)


class _DeltaLoss(nn.Module):
    """What DistributedDataParallel wraps: its forward must be the function the loss reads."""

    def __init__(self, forecaster: DeltaForecaster):
        super().__init__()
        self.forecaster = forecaster

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forecaster.member_deltas(x)


def _batched(model, X: torch.Tensor, index: np.ndarray, device: torch.device) -> torch.Tensor:
    """``model`` on the windows at ``index``, 1024 at a time, on the CPU."""
    with torch.no_grad():
        return torch.cat([model(X[c].to(device)).cpu() for c in np.array_split(index, max(1, len(index) // 1024))])


def main(argv: list[str]) -> None:
    cfg, windows_path, out = parse_args(argv)
    env = init_distributed()
    seed_everything(cfg.seed)
    started = time.monotonic()
    with worker_session() as session:
        data = Windows.load(windows_path)
        train_idx, val_idx, test_idx = (data.part(s) for s in ("train", "val", "test"))
        if min(len(train_idx), len(val_idx), len(test_idx)) < 2:
            raise ValueError(f"{windows_path}: train/val/test hold {len(train_idx)}/{len(val_idx)}/"
                             f"{len(test_idx)} windows; each needs at least 2")
        x_mean, x_scale = standardise(data.x[train_idx])
        y_mean, y_scale = standardise(data.y[train_idx])
        y_train = np.abs(data.y[train_idx].astype(np.float64)).mean(axis=0)
        X = torch.from_numpy(((data.x - x_mean) / x_scale).astype(np.float32))
        scaler = {"x_mean": x_mean.tolist(), "x_scale": x_scale.tolist(), "y_mean": y_mean.tolist(),
                  "y_scale": y_scale.tolist(), "level_floor": np.maximum(LEVEL_FLOOR * y_train, 1e-12).tolist(),
                  "delta_scale": [1.0] * len(data.targets)}  # set below, from the training split

        arch = {"n_features": len(data.features), "n_targets": len(data.targets), "lstm_sizes": list(cfg.lstm_sizes),
                "dense_sizes": list(cfg.dense_sizes), "members": cfg.ensemble_members, "dropout": cfg.dropout, "dense2_dropout": cfg.dense2_dropout,
                "window": data.window, "target_index": [data.features.index(t) for t in data.targets],
                "time_index": data.features.index(TIME) if TIME in data.features else -1,
                "weekday_index": data.features.index(WEEKDAY) if TIME in data.features and WEEKDAY in data.features else -1}
        raw_model = build_model(arch, scaler)
        with torch.no_grad():
            change = raw_model.relative_change(X, torch.from_numpy(data.y.astype(np.float32))).numpy()
            lags = raw_model.relative_windows(X).flatten(1).numpy().astype(np.float64)
            level = raw_model.targets_of(X)[2].numpy().astype(np.float64)
        _, delta_scale = standardise(change[train_idx])
        scaler["delta_scale"] = delta_scale.tolist()
        raw_model.delta_scale.copy_(torch.from_numpy(delta_scale.astype(np.float32)))
        D = torch.from_numpy((change / delta_scale).astype(np.float32))  # no centring: 0 = persistence
        level_weight = (level * delta_scale) ** 2  # D's squared error times this = squared error in original units
        # The linear path is, per target, the closed-form ridge fit of D on that target's own
        # relative window (training rows, penalty chosen on validation; other targets' lags get 0,
        # as in an AR model: with 4 targets they overfitted), frozen: the LSTM learns what it leaves.
        n_targets = len(data.targets)
        weight, bias, alphas = np.zeros((n_targets, lags.shape[1])), np.zeros(n_targets), []
        for i in range(n_targets):
            own = np.arange(i, lags.shape[1], n_targets)  # relative.flatten(1) is (window, target) row-major
            w, b, alpha = fit_ridge_on_validation(lags[:, own], D[:, i].numpy().astype(np.float64), train_idx, val_idx)
            weight[i, own], bias[i] = w[:, 0], b[0]
            alphas.append(alpha)
        with torch.no_grad():
            raw_model.linear.weight.copy_(torch.from_numpy(weight))
            raw_model.linear.bias.copy_(torch.from_numpy(bias))
            absolute_inputs = raw_model.absolute_features(X).numpy().astype(np.float64)
            relative_start = raw_model.linear_start(X).numpy().astype(np.float64)  # blend 0: the relative path
        # The absolute path: per target, ridge of the standardised level on every feature's window
        # and the clock features (training rows, penalty on validation).
        y_std = (data.y.astype(np.float64) - y_mean) / y_scale
        abs_weight, abs_bias, abs_alphas = np.zeros((n_targets, absolute_inputs.shape[1])), np.zeros(n_targets), []
        absolute_fits = len(train_idx) > absolute_inputs.shape[1]  # else: the relative path alone (blend 0)
        for i in range(n_targets if absolute_fits else 0):
            w, b, alpha = fit_ridge_on_validation(absolute_inputs, y_std[:, i], train_idx, val_idx, ABSOLUTE_ALPHAS)
            abs_weight[i], abs_bias[i] = w[:, 0], b[0]
            abs_alphas.append(alpha)
        # The blend weight per target: the one whose linear start does best on validation (original units).
        with torch.no_grad():
            raw_model.linear_abs.weight.copy_(torch.from_numpy(abs_weight))
            raw_model.linear_abs.bias.copy_(torch.from_numpy(abs_bias))
            raw_model.blend.fill_(1.0)
            absolute_start = raw_model.linear_start(X).numpy().astype(np.float64)
        blend, blend_val_mse = np.zeros(n_targets), []
        for i in range(n_targets):
            scores = {beta: float(((((1 - beta) * relative_start[val_idx, i] + beta * absolute_start[val_idx, i])
                                    - D[val_idx, i].numpy()) ** 2 * level_weight[val_idx, i]).mean())
                      for beta in (BLEND_GRID if absolute_fits else (0.0,))}
            blend[i] = min(scores, key=scores.get)
            blend_val_mse.append(scores)
        with torch.no_grad():
            raw_model.blend.copy_(torch.from_numpy(blend.astype(np.float32)))
        raw_model.linear.requires_grad_(False)
        raw_model.linear_abs.requires_grad_(False)
        raw_model = raw_model.to(env.device)
        model = _DeltaLoss(raw_model)
        model = DistributedDataParallel(model) if env.distributed else model
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.lr_factor, patience=cfg.lr_patience)
        stopper = EarlyStopping(mode="min", patience=cfg.early_stopping_patience)
        n_params = sum(p.numel() for p in raw_model.parameters())
        session.log(f"BandwidthLSTM {n_params:,} parameters; linear start: relative ridge alphas {alphas}, "
                    f"absolute ridge alphas {abs_alphas} ({absolute_inputs.shape[1]} inputs), blend (absolute share) "
                    f"{blend.tolist()} chosen on validation; windows train/val/test "
                    f"{len(train_idx)}/{len(val_idx)}/{len(test_idx)}; world size {env.world_size}")

        # Every rank takes the same number of batches (DDP all-reduces gradients per batch).
        per_rank = len(train_idx) // env.world_size
        val_mine = val_idx[env.rank::env.world_size]
        # Validation reads the verdict's metric: mean over targets of RMSE (original units) / std.
        val_spread = np.where(data.y[val_idx].std(axis=0) > 0, data.y[val_idx].std(axis=0), 1.0)
        val_level_weight = torch.from_numpy(level_weight.astype(np.float32))
        def validation_loss() -> float:
            share_main_buffers(raw_model, env)
            raw_model.eval()
            err = (_batched(raw_model.delta, X, val_mine, env.device) - D[val_mine]) ** 2 * val_level_weight[val_mine]
            *val_sq, val_n = all_reduce_sum([*err.double().sum(0).tolist(), len(val_mine)], env)
            return float((np.sqrt(np.array(val_sq) / val_n) / val_spread).mean())

        def save(epoch: int, val_loss: float) -> None:
            if env.is_main:
                save_checkpoint(out / CHECKPOINT, {
                    "model": raw_model.state_dict(), "arch": arch, "epoch": epoch, "val_loss": val_loss,
                    "features": data.features, "targets": data.targets, "window": data.window, "horizon": data.horizon,
                    "scaler": scaler, "config": cfg.as_dict(),
                })

        # Epoch 0 is the linear start (the network's output is still zero): the LSTM is kept only
        # for an epoch that beats it on validation.
        start_loss = validation_loss()
        if not math.isfinite(start_loss):
            raise ValueError(f"{windows_path}: validation loss {start_loss} before training: a non-finite value "
                             f"reached the validation windows or the scalers")
        stopper.step(start_loss)
        save(0, start_loss)
        session.log(f"epoch 0 (linear start) val {start_loss:.5f}")
        history: list[dict] = []
        stop_reason = f"ran all {cfg.epochs} epochs"
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            order = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(cfg.seed + epoch))
            mine = train_idx[order[env.rank * per_rank:(env.rank + 1) * per_rank].numpy()]
            loss_sum, seen = 0.0, 0
            for start in range(0, len(mine), cfg.batch_size):
                batch = mine[start:start + cfg.batch_size]
                if len(batch) < 2:
                    continue  # batch norm cannot train on a single window
                xb, db = X[batch].to(env.device), D[batch].to(env.device)
                member_deltas = model(xb)  # each member on its own loss: the mean of their MSEs
                loss = torch.nn.functional.mse_loss(member_deltas, db.expand_as(member_deltas))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum, seen = loss_sum + loss.item() * len(batch), seen + len(batch)

            loss_sum, seen = all_reduce_sum([loss_sum, seen], env)
            train_loss, val_loss = loss_sum / max(seen, 1), validation_loss()
            if not math.isfinite(val_loss):
                stop_reason = f"validation loss {val_loss} at epoch {epoch}: diverged; the best earlier epoch is kept"
                session.log(stop_reason)
                break
            scheduler.step(val_loss)
            improved = stopper.step(val_loss)
            lr = optimizer.param_groups[0]["lr"]
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr})
            session.log(f"epoch {epoch}/{cfg.epochs} train {train_loss:.5f} val {val_loss:.5f} lr {lr:.2e}"
                        + (" *" if improved else ""))
            if improved:
                save(epoch, val_loss)
            if stopper.should_stop:
                stop_reason = f"early stopping after epoch {epoch}: no improvement for {stopper.patience} epochs"
                session.log(stop_reason)
                break

        if env.is_main:
            best = load_checkpoint(out / CHECKPOINT)
            raw_model.load_state_dict(best["model"])
            raw_model.eval()
            # Model averaging of the linear start and the best epoch: the network's share, on validation.
            shrink_val = {}
            if best["epoch"] > 0:
                for share in NET_SHARE_GRID:
                    raw_model.net_share.fill_(share)
                    err = (_batched(raw_model.delta, X, val_idx, env.device) - D[val_idx]) ** 2 * val_level_weight[val_idx]
                    shrink_val[share] = float((np.sqrt(err.double().mean(0).numpy()) / val_spread).mean())
                raw_model.net_share.fill_(min(shrink_val, key=shrink_val.get))
                best["model"] = raw_model.state_dict()
                save_checkpoint(out / CHECKPOINT, best)
            predictions = _batched(raw_model, X, test_idx, env.device).numpy().astype(np.float64) * y_scale + y_mean
            np.savez(out / PREDICTIONS, index=test_idx, prediction=predictions)
            save_weights(out / WEIGHTS, raw_model.state_dict(), {"epoch": best["epoch"], "window": data.window})
            duration = time.monotonic() - started
            (out / HISTORY).write_text(json.dumps({"epochs": history, "start_val_loss": start_loss,
                                                   "validation_metric": "mean over targets of RMSE / std (original units)",
                                                   "linear_start": {"relative_alphas": alphas, "absolute_alphas": abs_alphas,
                                                                    "blend": blend.tolist(),
                                                                    "blend_val_mse": [{str(k): v for k, v in m.items()} for m in blend_val_mse]},
                                                   "best_epoch": best["epoch"],
                                                   "net_share": float(raw_model.net_share), "net_share_val": {str(k): v for k, v in shrink_val.items()},
                                                   "stop_reason": stop_reason, "training_time_seconds": duration, "world_size": env.world_size,
                                                   "n_params": n_params, "config": cfg.as_dict()}, indent=1))
            test_rmse = np.sqrt(((predictions - data.y[test_idx]) ** 2).mean(axis=0))
            session.report(metadata={
                "epochs_run": len(history), "best_epoch (by validation loss)": best["epoch"],
                "validation_best_loss (mean RMSE / std)": float(best["val_loss"]),
                "parameters": n_params, "world_size": env.world_size, "training_time_s": round(duration, 2),
                "windows_train_val_test": f"{len(train_idx)}/{len(val_idx)}/{len(test_idx)}",
                **{f"test_rmse_{t}": float(v) for t, v in zip(data.targets, test_rmse)},
                "checkpoint": str(out / CHECKPOINT),
            })
    shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1:])
