"""Train the Embed-LSTM on saved windows:
``torchrun -m netassets.device_load.train --config=RUN/config.json --windows=... --scalers=... --out=RUN``.

One readable loop (nanoGPT style). The training values come in one JSON file, a
``netassets.device_load.config.TrainConfig`` (written by the asset, read here with the same
model, bounds included); the command line carries only paths and the split rule of the windows.
DDP over torchrun's ranks (gloo on CPU); each rank takes an equal shard of the shuffled
training windows, so every rank runs the same number of steps. Validation runs on every rank
(the set is small and the weights are identical), so early stopping and the LR schedule agree
without a broadcast. Rank 0 writes, in the run folder ``--out``, the best epoch's weights as
safetensors (``model.safetensors``, with the detector's held-out reference errors and its
config as metadata) and ``evaluation.json`` (a ``netassets.core.evaluation.Evaluation``: test
MSE next to the simple baselines on the same test windows), and reports its validation MSE
(the split early stopping read) through dagster-pipes. The asset promotes the weights through
the model store only when they win on test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from netassets.core.evaluation import Evaluation
from netassets.core.files import write_json
from netassets.core.torchrun import worker_session
from netassets.core.training import (
    EarlyStopping, all_reduce_sum, init_distributed, load_checkpoint, save_checkpoint, save_weights, seed_everything,
    shutdown_distributed,
)
from netassets.device_load.config import TrainConfig
from netassets.device_load.features import Windows, load_windows
from netassets.device_load.model import EmbedLSTM, ModelConfig, persistence, predict, window_mean
from netassets.device_load.store import EVALUATION, MODEL_NAME, WEIGHTS

BEST = "best.pt"  # the best epoch so far, a resumable checkpoint beside the final files
DEFAULT_SPLIT_RULE = "by target time, as saved in the windows file"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="TrainConfig JSON (runs/<run id>/config.json)")
    parser.add_argument("--windows", type=Path, required=True, help="windows.npz written by device_load_windows")
    parser.add_argument("--scalers", type=Path, required=True, help="scalers.json beside it; stored with the weights")
    parser.add_argument("--out", type=Path, required=True, help=f"run folder: {WEIGHTS} and {EVALUATION} go there")
    parser.add_argument("--split_rule", default=DEFAULT_SPLIT_RULE, help="how the windows were split, for the verdict")
    return parser.parse_args(argv)


def mse(prediction: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((prediction - target) ** 2)) if len(target) else float("nan")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = TrainConfig.read(args.config)
    env = init_distributed(prefer_cuda=False)  # small model, CPU tensors throughout (gloo)
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    windows, split = load_windows(args.windows)
    scalers = json.loads(args.scalers.read_text())
    train, val, test = (windows.take(split == s) for s in range(3))
    if not len(train) or not len(val):
        raise SystemExit(f"{args.windows}: need training and validation windows, got {len(train)} and {len(val)}")

    model_config = ModelConfig(n_routers=len(scalers["routers"]), n_features=windows.x.shape[2])
    model = EmbedLSTM(model_config).to(env.device)
    trainable = DistributedDataParallel(model) if env.distributed else model
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=config.lr_factor, patience=config.lr_patience)
    stopper = EarlyStopping(mode="min", patience=config.patience)
    x_train, r_train, y_train = (torch.as_tensor(a) for a in (train.x, train.router_id, train.y))
    shard = len(train) // env.world_size  # equal shards: DDP needs the same number of steps on every rank
    if shard == 0 or config.epochs < 1:
        raise SystemExit(f"{args.windows}: {len(train)} training windows for {env.world_size} process(es) and "
                         f"{config.epochs} epoch(s): need at least one window per process and one epoch")
    # The best epoch so far waits in the run folder; the weights are written only once, finished
    # (the asset then decides whether they replace the production model).
    args.out.mkdir(parents=True, exist_ok=True)
    best_path = args.out / BEST
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
                raise SystemExit(f"{args.windows}: validation error was never finite; no model to keep")
            best = load_checkpoint(best_path)
            model.load_state_dict(best["model"])
            evaluation = evaluate(model, val, test, scalers["routers"], args.split_rule)
            val_errors = np.abs(predict(model, val.x, val.router_id) - val.actual)
            save_weights(args.out / WEIGHTS, {
                **{f"model.{name}": tensor for name, tensor in model.state_dict().items()},
                # The detector's reference at inference: held-out errors per router, in time order.
                "val_errors": torch.as_tensor(val_errors),
                "val_router_id": torch.as_tensor(val.router_id),
                "val_target_time": torch.as_tensor(val.target_time.astype("int64")),
            }, metadata={
                "model_config": json.dumps(dataclasses.asdict(model_config)),
                "train_config": json.dumps(config.as_dict()),
                "scalers": json.dumps(scalers),
                "best_epoch": str(best["epoch"]),
                "evaluation": json.dumps(evaluation.to_dict()),
            })
            write_json(args.out / EVALUATION, evaluation.to_dict())
            best_path.unlink()
            session.report(metadata={
                "val_mse": stopper.best,  # validation: the split early stopping chose the epoch on
                "test_mse": evaluation.scores[MODEL_NAME]["mse"],
                "test_beats_strongest_baseline": evaluation.beats_strongest_baseline,
                "best_epoch": best["epoch"],
                "epochs_run": epoch + 1,
                "nproc": env.world_size,
                "train_windows": len(train),
                "val_windows": len(val),
                "test_windows": len(test),
                "candidate": str(args.out / WEIGHTS),
            })
    shutdown_distributed()


def evaluate(model: EmbedLSTM, val: Windows, test: Windows, routers: list[str], split_rule: str) -> Evaluation:
    """Test MSE (scaled, winsorised targets) of the model and of each simple baseline, on the same windows.

    Baselines: persistence (next = last value) and the window mean. Validation MSE rides
    along as a separate column, named as such: it chose the epoch, so it is not the verdict.
    """
    predictions = {MODEL_NAME: lambda part: predict(model, part.x, part.router_id),
                   "persistence": lambda part: persistence(torch.as_tensor(part.x)).numpy(),
                   "window_mean": lambda part: window_mean(torch.as_tensor(part.x)).numpy()}
    scores = {name: {"mse": mse(forecast(test), test.y), "val_mse": mse(forecast(val), val.y)}
              for name, forecast in predictions.items()}
    missing = sorted(set(routers) - {routers[i] for i in np.unique(test.router_id)})
    notes = (f"routers with no test windows (not in the verdict): {', '.join(missing)}",) if missing else ()
    if not len(test):
        notes += ("no test windows at all: the verdict cannot be read; load more days",)
    return Evaluation(model=MODEL_NAME, metric="mse", higher_is_better=False, scores=scores, rows=len(test),
                      split_rule=split_rule, notes=notes)


if __name__ == "__main__":
    main()
