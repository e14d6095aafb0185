"""Train the Embed-LSTM on saved windows: ``torchrun -m netassets.device_load.train --windows=... --out=...``.

One readable loop (nanoGPT style): every ``TrainConfig`` field is a ``--name=value`` flag.
DDP over torchrun's ranks (gloo on CPU); each rank takes an equal shard of the shuffled
training windows, so every rank runs the same number of steps. Validation runs on every rank
(the set is small and the weights are identical), so early stopping and the LR schedule agree
without a broadcast. Rank 0 saves the best checkpoint and reports, through dagster-pipes,
held-out MSE next to the persistence baseline (next value = last value).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from netassets.core.plots import markdown_table
from netassets.core.torchrun import worker_session
from netassets.core.training import (
    EarlyStopping, all_reduce_sum, init_distributed, load_checkpoint, save_checkpoint, seed_everything,
    shutdown_distributed,
)
from netassets.device_load.features import Windows, load_windows
from netassets.device_load.model import EmbedLSTM, ModelConfig, persistence, predict


@dataclass
class TrainConfig:
    windows: str = ""  # windows.npz written by device_load_windows
    scalers: str = ""  # scalers.json beside it; embedded in the checkpoint
    out: str = ""  # checkpoint path
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    lr_factor: float = 0.5  # ReduceLROnPlateau on validation MSE
    lr_patience: int = 2
    patience: int = 5  # early stopping on validation MSE
    seed: int = 0
    threads: int = 1


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(TrainConfig):
        parser.add_argument(f"--{field.name}", type=type(field.default), default=field.default)
    config = TrainConfig(**vars(parser.parse_args(argv)))
    for name in ("windows", "scalers", "out"):
        if not getattr(config, name):
            parser.error(f"--{name} is required")
    return config


def mse(prediction: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((prediction - target) ** 2)) if len(target) else float("nan")


def main(argv: list[str] | None = None) -> None:
    config = parse_config(argv)
    env = init_distributed(prefer_cuda=False)  # small model, CPU tensors throughout (gloo)
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    windows, split = load_windows(Path(config.windows))
    scalers = json.loads(Path(config.scalers).read_text())
    train, val, test = (windows.take(split == s) for s in range(3))
    if not len(train) or not len(val):
        raise SystemExit(f"{config.windows}: need training and validation windows, got {len(train)} and {len(val)}")

    model_config = ModelConfig(n_routers=len(scalers["routers"]), n_features=windows.x.shape[2])
    model = EmbedLSTM(model_config).to(env.device)
    trainable = DistributedDataParallel(model) if env.distributed else model
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config.lr_factor, patience=config.lr_patience)
    stopper = EarlyStopping(mode="min", patience=config.patience)
    x_train, r_train, y_train = (torch.as_tensor(a) for a in (train.x, train.router_id, train.y))
    shard = len(train) // env.world_size  # equal shards: DDP needs the same number of steps on every rank
    if shard == 0 or config.epochs < 1:
        raise SystemExit(f"{config.windows}: {len(train)} training windows for {env.world_size} process(es) and "
                         f"{config.epochs} epoch(s): need at least one window per process and one epoch")
    # Detection loads config.out while this trains: the best epoch so far waits beside it, and
    # config.out is replaced only by the finished checkpoint.
    best_path = Path(config.out).with_name(f".{Path(config.out).name}.best")
    if env.is_main:
        best_path.unlink(missing_ok=True)

    with worker_session() as session:
        for epoch in range(config.epochs):
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed + epoch))
            mine = order[env.rank * shard:(env.rank + 1) * shard]
            trainable.train()
            loss_sum = 0.0
            for start in range(0, shard, config.batch_size):
                batch = mine[start:start + config.batch_size]
                loss = torch.nn.functional.mse_loss(trainable(x_train[batch], r_train[batch]), y_train[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(batch)
            total, count = all_reduce_sum([loss_sum, float(shard)], env)
            val_mse = mse(predict(model, val.x, val.router_id), val.y)
            schedule.step(val_mse)
            if stopper.step(val_mse) and env.is_main:
                save_checkpoint(best_path, {"model": model.state_dict(), "epoch": epoch})
            session.log(f"epoch {epoch} train_mse {total / count:.4f} val_mse {val_mse:.4f} "
                        f"lr {optimizer.param_groups[0]['lr']:.2g} best {stopper.best:.4f}")
            if stopper.should_stop:
                break

        if env.is_main:
            if not best_path.exists():
                raise SystemExit(f"{config.windows}: validation error was never finite; no model to keep")
            best = load_checkpoint(best_path)
            model.load_state_dict(best["model"])
            report = evaluate(model, {"val": val, "test": test})
            val_errors = np.abs(predict(model, val.x, val.router_id) - val.actual)
            save_checkpoint(Path(config.out), {
                "model": model.state_dict(),
                "model_config": dataclasses.asdict(model_config),
                "train_config": dataclasses.asdict(config),
                "scalers": scalers,
                "best_epoch": best["epoch"],
                # DBSCAN's reference density at inference: held-out errors per router.
                "val_errors": torch.as_tensor(val_errors),
                "val_router_id": torch.as_tensor(val.router_id),
                "scores": report["scores"],
            })
            best_path.unlink()
            session.report(metadata={
                **report["metadata"],
                "best_epoch": best["epoch"],
                "epochs_run": epoch + 1,
                "nproc": env.world_size,
                "train_windows": len(train),
                "val_windows": len(val),
                "test_windows": len(test),
                "checkpoint": str(best_path),
            })
    shutdown_distributed()


def evaluate(model: EmbedLSTM, sets: dict[str, Windows]) -> dict:
    """Held-out MSE of the model and of persistence, in scaled units, on the winsorised targets."""
    rows, scores = [], {}
    for name, part in sets.items():
        if not len(part):
            continue
        model_mse = mse(predict(model, part.x, part.router_id), part.y)
        baseline_mse = mse(persistence(torch.as_tensor(part.x)).numpy(), part.y)
        scores[name] = {"model_mse": model_mse, "persistence_mse": baseline_mse}
        rows.append({"split": name, "windows": len(part), "embed_lstm_mse": model_mse,
                     "persistence_mse": baseline_mse, "beats_baseline": model_mse < baseline_mse})
    val = scores["val"]
    return {
        "scores": scores,
        "metadata": {
            "val_mse": val["model_mse"],
            "val_persistence_mse": val["persistence_mse"],
            "beats_persistence": bool(val["model_mse"] < val["persistence_mse"]),
            "scores": {"type": "md", "raw_value": markdown_table(rows)},
        },
    }


if __name__ == "__main__":
    main()
