"""Pieces every training script needs, so each pipeline's train.py is only its model and loop.

- ``init_distributed``: DDP from torchrun's environment (gloo on CPU, NCCL on GPU).
- ``save_checkpoint`` / ``load_checkpoint``: atomic writes; loads with ``weights_only=True``,
  so a checkpoint holds tensors and plain Python values only (no pickled objects).
- ``save_weights`` / ``load_weights``: a model's tensors as safetensors (no code, no pickle),
  with string metadata; the files a model store promotes.
- ``EarlyStopping``: best value of a monitored metric, patience.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from netassets.core.files import atomic_write


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(prefer_cuda: bool = True) -> DistEnv:
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = prefer_cuda and torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistEnv(rank, local_rank, world_size, device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], env: DistEnv) -> list[float]:
    """Sum per-rank totals (loss sums, counts) so every rank sees the global figure."""
    if not env.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return t.tolist()


def share_main_buffers(model: torch.nn.Module, env: DistEnv) -> None:
    """Every rank takes the main rank's buffers (BatchNorm's running statistics), before ranks score
    shards of a split with their own copy: DDP sends them only at a training forward's start, so
    after an epoch's last step each rank holds its own, and the verdict that picks the best epoch
    would be read partly on models that are not the one saved."""
    if env.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file then rename: a killed run never leaves a half checkpoint."""
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=True)


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """A state dict as safetensors, written atomically (tensors made contiguous, shared storage copied)."""
    from safetensors.torch import save

    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in state_dict.items()}
    payload = save(tensors, metadata={k: str(v) for k, v in (metadata or {}).items()})
    return atomic_write(path, lambda handle: handle.write(payload))


def load_weights(path: Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}, dict(handle.metadata() or {})


def check_compatible(saved: dict[str, Any], current: dict[str, Any], keys: list[str], path: Path) -> None:
    """Refuse to resume from a checkpoint whose architecture differs from the current config."""
    diffs = {k: (saved.get(k), current.get(k)) for k in keys if saved.get(k) != current.get(k)}
    if diffs:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diffs.items())
        raise ValueError(f"checkpoint {path} is incompatible with the current config ({detail})")


class EarlyStopping:
    """Track the best value of a metric; ``step`` returns True when it improved."""

    def __init__(self, mode: str = "min", patience: int = 10, best: float | None = None, bad_epochs: int = 0):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.mode, self.patience = mode, patience
        self.best = best if best is not None else (math.inf if mode == "min" else -math.inf)
        self.bad_epochs = bad_epochs

    def step(self, value: float) -> bool:
        improved = value < self.best if self.mode == "min" else value > self.best
        if improved:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state(self) -> dict[str, Any]:
        return {"best": float(self.best), "bad_epochs": self.bad_epochs}
