"""Train the LENS PatchTST cluster classifier; the torchrun entry point.

    torchrun --standalone --nproc_per_node=2 -m netassets.lens.train \\
        --config run/config.json --data run/dataset.npz --out-dir run/

One config (``netassets.lens.config.TrainConfig``, read from the JSON file the asset wrote),
one loop. ``dataset.npz`` (written by the lens_patchtst asset) holds
standardised inputs ``x_{train,val,test}`` of shape (groups, 100, channels), labels
``y_*``, ``class_weight`` and the standardisation ``input_mean``/``input_std``.

Every ``save_interval`` epochs ``last.pt`` is written; a new run with the same ``out_dir``
continues from it (``resume``, default on), mid-epoch if it stopped there, with the RNG
state restored, so an interrupted run ends with the same weights as an uninterrupted one.
``best.pt`` holds the weights with the best monitored validation metric; the test split is
scored once, with those weights, at the end, and those weights are written as
``model.safetensors`` (the file the model store promotes). The learning rate follows
``TrainConfig.learning_rate`` (warmup, then cosine decay) by optimiser step, so a resumed run
continues the schedule where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from netassets.core.files import write_json
from netassets.core.torchrun import worker_session
from netassets.core.training import (
    DistEnv,
    EarlyStopping,
    all_reduce_sum,
    check_compatible,
    init_distributed,
    load_checkpoint,
    save_checkpoint,
    save_weights,
    seed_everything,
    share_main_buffers,
    shutdown_distributed,
)
from netassets.lens.config import MONITORS, TrainConfig
from netassets.lens.patchtst import ARCH_KEYS, WEIGHTS_FILE, build_model, confusion, scores_from_confusion


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """What a resumed run needs to draw the same dropout masks: the CPU RNG, and the GPU's when on one."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, torch.Tensor] | torch.Tensor, device: torch.device) -> None:
    """Inverse of ``rng_state``; also takes the bare CPU state older checkpoints hold.

    The checkpoint is loaded onto the training device, but the setters take CPU byte tensors.
    """
    state = state if isinstance(state, dict) else {"cpu": state}
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, Path, Path]:
    parser = argparse.ArgumentParser(prog="python -m netassets.lens.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="TrainConfig as JSON (written by the asset)")
    parser.add_argument("--data", type=Path, required=True, help="dataset.npz written by the asset")
    parser.add_argument("--out-dir", type=Path, required=True, help="the run folder: checkpoints, result, weights")
    args = parser.parse_args(argv)
    return TrainConfig.read(args.config), args.data, args.out_dir


def load_dataset(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def evaluate(model, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, num_classes: int, env: DistEnv,
             batch_size: int, autocast) -> dict[str, Any]:
    """Loss and confusion matrix over the whole split: each rank scores a strided shard, then all-reduce."""
    share_main_buffers(model, env)
    model.eval()
    shard = torch.arange(env.rank, len(x), env.world_size)
    loss_sum, matrix = 0.0, np.zeros((num_classes, num_classes))
    with torch.no_grad():
        for start in range(0, len(shard), batch_size):
            idx = shard[start : start + batch_size]
            xb, yb = x[idx].to(env.device), y[idx].to(env.device)
            with autocast():
                logits = model(past_values=xb).prediction_logits.float()
            loss_sum += F.cross_entropy(logits, yb, weight=weight, reduction="sum").item()
            matrix += confusion(yb.cpu().numpy(), logits.argmax(dim=1).cpu().numpy(), num_classes)
    totals = all_reduce_sum([loss_sum, *matrix.ravel().tolist()], env)
    matrix = np.asarray(totals[1:]).reshape(num_classes, num_classes)
    model.train()
    return {"loss": float(totals[0] / max(matrix.sum(), 1)), "confusion": matrix.astype(int), **scores_from_confusion(matrix)}


def train(config: TrainConfig, data: Path | str, out_dir: Path | str) -> dict[str, Any] | None:
    env = init_distributed()
    seed_everything(config.seed)
    out_dir = Path(out_dir)
    data = load_dataset(Path(data))
    x = {split: torch.from_numpy(data[f"x_{split}"]).float() for split in ("train", "val", "test")}
    y = {split: torch.from_numpy(data[f"y_{split}"]).long() for split in ("train", "val", "test")}
    num_classes = len(data["class_weight"])
    weight = torch.from_numpy(data["class_weight"]).to(env.device)
    arch = config.arch(num_input_channels=x["train"].shape[2], num_targets=num_classes)

    model = build_model(arch, config.dropouts()).to(env.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    use_amp = config.amp and env.device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else nullcontext
    stopper = EarlyStopping(MONITORS[config.monitor_metric], patience=math.inf)
    start_epoch, batches_done, step, history = 0, 0, 0, []
    running = [0.0, 0.0]  # this epoch's loss sum and sample count, kept across a mid-epoch stop

    with worker_session() as session:
        session.log(f"world size {env.world_size} on {env.device}; AMP {'on' if use_amp else 'off'}"
                    + (" (requested, but AMP is GPU-only)" if config.amp and not use_amp else ""))
        resume_path = Path(config.resume_from) if config.resume_from else out_dir / "last.pt"
        if config.resume_from and not resume_path.is_file():
            raise FileNotFoundError(f"resume_from checkpoint {resume_path} does not exist")
        if (config.resume or config.resume_from) and resume_path.is_file():
            state = load_checkpoint(resume_path, env.device)
            check_compatible(state["arch"], arch, list(ARCH_KEYS), resume_path)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_epoch, batches_done, step = state["epoch"], state["batches_done"], state["step"]
            running = list(state["running"]) if env.is_main else [0.0, 0.0]  # the whole epoch's so far, once
            history = list(state["history"])
            stopper = EarlyStopping(MONITORS[config.monitor_metric], patience=math.inf, **state["best"])
            restore_rng_state(state["rng"], env.device)
            session.log(f"resumed from {resume_path} at epoch {start_epoch + 1}, batch {batches_done}, step {step}")

        ddp_model = (
            DistributedDataParallel(model, device_ids=[env.local_rank] if env.device.type == "cuda" else None)
            if env.distributed else model
        )
        # The loader yields sample indices only; a batch is gathered from the training split, copied
        # to the device once. Collating samples one by one had a GPU run wait on the loader for
        # ~40 % of its step time (measured on an H100); the batches are the same either way.
        train_x, train_y = x["train"].to(env.device), y["train"].to(env.device)
        positions = TensorDataset(torch.arange(len(train_y)))
        sampler = DistributedSampler(positions, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=config.seed)
        # Its own generator: creating an epoch's iterator then never draws from the global RNG,
        # whose state the checkpoint restores for dropout.
        loader = DataLoader(positions, batch_size=config.batch_size, sampler=sampler, num_workers=config.num_workers,
                            generator=torch.Generator().manual_seed(config.seed))

        def checkpoint(epoch: int, batches: int) -> dict[str, Any]:
            return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "arch": arch,
                    "config": config.as_dict(), "epoch": epoch, "batches_done": batches, "step": step,
                    "running": running, "history": history, "best": stopper.state(), "rng": rng_state(env.device),
                    "input_mean": data["input_mean"].tolist(), "input_std": data["input_std"].tolist()}

        total_steps = config.epochs * len(loader)  # the schedule's length; a resume with more epochs stretches it
        interrupted = False
        for epoch in range(start_epoch, config.epochs):
            sampler.set_epoch(epoch)
            model.train()
            epoch_start, wait_time, samples = time.perf_counter(), 0.0, 0
            # Summed on the device: a .item() per step would stall a GPU once a step.
            loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
            fetch_start = time.perf_counter()
            for batch_index, (batch,) in enumerate(loader):
                if batch_index < batches_done:  # already trained on before the interruption
                    fetch_start = time.perf_counter()
                    continue
                batch = batch.to(env.device, non_blocking=True)
                xb, yb = train_x[batch], train_y[batch]
                wait_time += time.perf_counter() - fetch_start
                with autocast():
                    logits = ddp_model(past_values=xb).prediction_logits.float()
                loss = F.cross_entropy(logits, yb, weight=weight, label_smoothing=config.label_smoothing)
                for group in optimizer.param_groups:
                    group["lr"] = config.learning_rate(step, total_steps)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                loss_sum += loss.detach().double() * len(yb)
                samples += len(yb)
                if config.max_steps and step >= config.max_steps:
                    interrupted = batch_index + 1 < len(loader) or epoch + 1 < config.epochs
                    if interrupted:
                        # The epoch so far on every rank (each holds its own part): the main rank
                        # saves the sum, and a resumed run gives it back to the main rank only.
                        running = all_reduce_sum([running[0] + loss_sum.item(), running[1] + samples], env)
                        if env.is_main:
                            save_checkpoint(out_dir / "last.pt", checkpoint(epoch, batch_index + 1))
                        session.log(f"max_steps {config.max_steps} reached at epoch {epoch + 1}; saved last.pt")
                        break
                fetch_start = time.perf_counter()
            if interrupted:
                break
            elapsed = time.perf_counter() - epoch_start
            epoch_loss, count, samples_all, wait_all, elapsed_all = all_reduce_sum(
                [running[0] + loss_sum.item(), running[1] + samples, samples, wait_time, elapsed], env)
            record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": epoch_loss / max(count, 1),
                      "samples_per_s": samples_all / max(elapsed_all / env.world_size, 1e-9),
                      "data_wait_share": wait_all / max(elapsed_all, 1e-9)}
            running, batches_done = [0.0, 0.0], 0
            if (epoch + 1) % config.eval_interval == 0 or epoch + 1 == config.epochs:
                val = evaluate(model, x["val"], y["val"], weight, num_classes, env, config.batch_size * 4, autocast)
                record.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_macro_f1=val["macro_f1"])
                if stopper.step(record[config.monitor_metric]) and env.is_main:
                    save_checkpoint(out_dir / "best.pt", {"model": model.state_dict(), "arch": arch,
                                                          "epoch": epoch + 1, config.monitor_metric: record[config.monitor_metric],
                                                          "input_mean": data["input_mean"].tolist(),
                                                          "input_std": data["input_std"].tolist()})
            history.append(record)
            session.log(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
            if env.is_main and ((epoch + 1) % config.save_interval == 0 or epoch + 1 == config.epochs):
                save_checkpoint(out_dir / "last.pt", checkpoint(epoch + 1, 0))
        if env.distributed:
            torch.distributed.barrier()  # rank 0 has finished writing best.pt

        result = None
        if not interrupted:
            if not (out_dir / "best.pt").is_file():
                raise FileNotFoundError(f"{out_dir / 'best.pt'} is missing: no validation ran in this output folder")
            best = load_checkpoint(out_dir / "best.pt", env.device)
            model.load_state_dict(best["model"])
            test = evaluate(model, x["test"], y["test"], weight, num_classes, env, config.batch_size * 4, autocast)
            result = {
                "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"], "test_loss": test["loss"],
                "test_confusion": test["confusion"].tolist(), "best_epoch": best["epoch"],
                "monitor_metric": config.monitor_metric, "best_monitored": stopper.best,
                "epochs_trained": len(history), "steps": step, "world_size": env.world_size,
                "device": str(env.device), "amp": use_amp, "history": history,
            }
            if env.is_main:
                # The weights a model store promotes: tensors only (safetensors), with what rebuilds the model.
                save_weights(out_dir / WEIGHTS_FILE, best["model"], {
                    "arch": json.dumps(arch), "best_epoch": str(best["epoch"]),
                    "input_mean": json.dumps(data["input_mean"].tolist()),
                    "input_std": json.dumps(data["input_std"].tolist())})
                write_json(out_dir / "result.json", result)
                session.log(f"test accuracy {test['accuracy']:.4f} macro-F1 {test['macro_f1']:.4f} "
                            f"(best epoch {best['epoch']} by {config.monitor_metric})")
        if env.is_main:
            session.report(metadata={
                "status": "interrupted (max_steps)" if interrupted else "complete",
                "steps": step, "world_size": env.world_size, "device": str(env.device),
                **({k: result[k] for k in ("test_accuracy", "test_macro_f1", "best_epoch")} if result else {}),
            })
    shutdown_distributed()
    return result


def main(argv: list[str] | None = None) -> None:
    train(*parse_args(argv))


if __name__ == "__main__":
    main()
