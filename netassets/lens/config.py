"""The LENS PatchTST training config, declared once: the asset's run config inherits it and the
torchrun worker reads it from the run folder's ``config.json`` (``core.config.TrainingConfig``).

Light on purpose (pydantic only): the Dagster modules import it when the code location loads.
The default recipe was chosen on validation days of bench/lens_train.py's data: 30 epochs (the
seed's 5 stopped far short), warmup + cosine decay, best weights by validation macro-F1,
10-point patches every 5 points (19 overlapping patches rather than 5 of 20 points).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, model_validator

from netassets.core.config import TrainingConfig

CONTEXT_POINTS = 100  # the first 1.0 s of a group at 10 ms
# Metrics that can pick the best weights, and whether lower or higher is better.
MONITORS = {"val_loss": "min", "val_accuracy": "max", "val_macro_f1": "max"}
LR_SCHEDULES = ("cosine", "constant")
DROPOUTS = ("attention_dropout", "ff_dropout", "positional_dropout", "path_dropout")


class TrainConfig(TrainingConfig):
    """Every knob of the seed's train_patchtst.py, bounded; the worker's config and the asset's run config."""

    epochs: int = Field(default=30, ge=1, description="training epochs (a resume with more epochs stretches the schedule)")
    batch_size: int = Field(default=64, ge=1, description="samples per optimiser step, per process")
    lr: float = Field(default=3e-3, gt=0, allow_inf_nan=False, description="peak learning rate")
    lr_schedule: str = Field(default="cosine", description="'cosine': linear warmup, then cosine decay to "
                                                           "min_lr_ratio * lr; 'constant': constant after the warmup")
    warmup_fraction: float = Field(default=0.05, ge=0, lt=1, description="share of all optimiser steps spent warming up")
    min_lr_ratio: float = Field(default=0.1, ge=0, lt=1, description="the cosine schedule ends at this share of lr")
    label_smoothing: float = Field(default=0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    weight_decay: float = Field(default=0.01, ge=0, allow_inf_nan=False, description="AdamW weight decay")
    amp: bool = Field(default=True, description="bfloat16 autocast; GPU only, ignored on CPU")
    patch_length: int = Field(default=10, description=f"points per patch, in 1..{CONTEXT_POINTS}")
    patch_stride: int = Field(default=5, ge=0, description="points between patch starts; 0: same as patch_length "
                                                           "(non-overlapping patches)")
    d_model: int = Field(default=64, ge=1, description="transformer width (divisible by num_attention_heads)")
    num_attention_heads: int = Field(default=4, ge=1, description="attention heads per layer")
    num_hidden_layers: int = Field(default=2, ge=1, description="transformer encoder layers")
    ffn_dim: int = Field(default=128, ge=1, description="feed-forward width inside each layer")
    attention_dropout: float = Field(default=0.1, ge=0, lt=1, description="dropout on attention weights")
    ff_dropout: float = Field(default=0.2, ge=0, lt=1, description="dropout in the feed-forward blocks")
    positional_dropout: float = Field(default=0.05, ge=0, lt=1, description="dropout after the positional encoding")
    path_dropout: float = Field(default=0.05, ge=0, lt=1, description="stochastic depth (drop path) rate")
    eval_interval: int = Field(default=1, ge=1, description="epochs between validations")
    save_interval: int = Field(default=1, ge=1, description="epochs between last.pt checkpoints")
    monitor_metric: str = Field(default="val_macro_f1", description="val_loss, val_accuracy or val_macro_f1: picks "
                                                                    "the best weights")
    num_workers: int = Field(default=0, ge=0, description="DataLoader workers per process")
    seed: int = Field(default=0, description="seeds the weights, the sampler, dropout and the baselines")
    resume: bool = Field(default=True, description="continue from the run folder's last.pt when it exists")
    resume_from: str = Field(default="", description="or from this checkpoint (same architecture), a path inside the "
                                                     "lens/patchtst model folder (runs/<run_id>/last.pt); empty: none")
    max_steps: int = Field(default=0, ge=0, description="stop (saving last.pt, resumable) after this many optimiser "
                                                        "steps in total; 0: no limit")

    @model_validator(mode="after")
    def _valid_recipe(self) -> "TrainConfig":
        problems = []
        for name, value in self:
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"{name} must be a finite number, got {value}")
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule {self.lr_schedule!r} is not one of {list(LR_SCHEDULES)}")
        if self.monitor_metric not in MONITORS:
            problems.append(f"monitor_metric {self.monitor_metric!r} is not one of {sorted(MONITORS)}")
        if not 1 <= self.patch_length <= CONTEXT_POINTS:
            problems.append(f"patch_length must be in 1..{CONTEXT_POINTS} and patch_stride >= 0")
        if self.d_model % self.num_attention_heads:
            problems.append(f"d_model {self.d_model} must be divisible by num_attention_heads {self.num_attention_heads}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))
        return self

    def arch(self, num_input_channels: int, num_targets: int) -> dict[str, Any]:
        return {
            "num_input_channels": num_input_channels, "context_length": CONTEXT_POINTS,
            "patch_length": self.patch_length, "patch_stride": self.patch_stride or self.patch_length,
            "d_model": self.d_model, "num_attention_heads": self.num_attention_heads,
            "num_hidden_layers": self.num_hidden_layers, "ffn_dim": self.ffn_dim, "num_targets": num_targets,
        }

    def learning_rate(self, step: int, total_steps: int) -> float:
        """nanoGPT's schedule: linear warmup over the first ``warmup_fraction`` of the steps, then
        cosine decay to ``min_lr_ratio * lr`` at the last step (or constant after the warmup)."""
        warmup = int(self.warmup_fraction * total_steps)
        if step < warmup:
            return self.lr * (step + 1) / (warmup + 1)
        if self.lr_schedule == "constant":
            return self.lr
        progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        min_lr = self.min_lr_ratio * self.lr
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.lr - min_lr)

    def dropouts(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in DROPOUTS}
