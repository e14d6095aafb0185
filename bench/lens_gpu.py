"""LENS PatchTST on a GPU: real torchrun, AMP off vs on, and an interrupted run resumed exactly.

    python -m bench.lens_gpu [--samples 40000] [--out bench/results/lens_gpu.json]

Needs CUDA (it says so and exits cleanly without). Synthetic, separable data of the shape
lens_patchtst trains on (first second of each group, token + nearest channels, 8 clusters),
the worker's default model size. Reports samples/s and the data-wait share per epoch for AMP
off (the baseline) and AMP on, and, for a tiny model, whether a run stopped by max_steps and
resumed on the GPU ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

TINY = dict(patch_length=10, d_model=16, num_attention_heads=2, num_hidden_layers=1, ffn_dim=32)


def write_dataset(path: Path, samples: int, channels: int, classes: int, seed: int = 0) -> Path:
    from netassets.lens.patchtst import class_weights

    rng = np.random.default_rng(seed)

    def split(n):
        y = rng.integers(0, classes, n)
        return (rng.normal(0, 1, (n, 100, channels)) + y[:, None, None]).astype(np.float32), y

    (xt, yt), (xv, yv), (xs, ys) = split(samples), split(samples // 8), split(samples // 8)
    np.savez(path, x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys,
             class_weight=class_weights(yt, classes), input_mean=np.zeros(channels), input_std=np.ones(channels))
    return path


def torchrun_epochs(data: Path, out_dir: Path, amp: bool) -> list[dict]:
    from netassets.lens.config import TrainConfig

    config = TrainConfig(epochs=3, batch_size=512, amp=amp).write(out_dir / "config.json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "netassets.lens.train",
           "--config", str(config), "--data", str(data), "--out-dir", str(out_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"torchrun failed:\n{(done.stdout + done.stderr)[-3000:]}")
    number = r"([0-9.]+(?:e[+-]?[0-9]+)?)"
    return [{"samples_per_s": float(rate), "data_wait_share": float(wait)}
            for rate, wait in re.findall(rf"samples_per_s {number} data_wait_share {number}", done.stdout + done.stderr)]


def resume_is_exact(tmp: Path) -> dict:
    from netassets.core.training import load_checkpoint
    from netassets.lens.config import TrainConfig
    from netassets.lens.train import train

    data = write_dataset(tmp / "toy.npz", 120, channels=1, classes=3)
    common = dict(epochs=3, batch_size=16, seed=3, amp=True, **TINY)
    straight = train(TrainConfig(**common), data, tmp / "straight")
    assert train(TrainConfig(max_steps=11, **common), data, tmp / "resumed") is None
    resumed = train(TrainConfig(**common), data, tmp / "resumed")
    a, b = load_checkpoint(tmp / "straight" / "last.pt"), load_checkpoint(tmp / "resumed" / "last.pt")
    return {"max_weight_difference": max(float((a["model"][k] - b["model"][k]).abs().max()) for k in a["model"]),
            "same_loss_history": [h["train_loss"] for h in straight["history"]] == [h["train_loss"] for h in resumed["history"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/lens_gpu.json"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("lens_gpu: no CUDA device here; run it on a GPU machine")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_dataset(tmp / "data.npz", args.samples, channels=2, classes=8)
        runs = {f"amp {'on' if amp else 'off'}": torchrun_epochs(data, tmp / f"amp_{amp}", amp) for amp in (False, True)}
        resume = resume_is_exact(tmp)
    print(f"LENS PatchTST, torchrun x1 on {torch.cuda.get_device_name(0)}, {args.samples:,} training samples, batch 512")
    print(f"{'run':<8} {'epoch':>5} {'samples/s':>10} {'data wait':>9}")
    for name, epochs in runs.items():
        for i, e in enumerate(epochs, start=1):
            print(f"{name:<8} {i:>5} {e['samples_per_s']:>10,.0f} {e['data_wait_share']:>9.1%}")
    steady = {name: float(np.mean([e["samples_per_s"] for e in epochs[1:]])) for name, epochs in runs.items()}
    print(f"AMP on vs off (epochs 2+): {steady['amp on'] / steady['amp off']:.2f}x")
    print(f"interrupted + resumed on the GPU vs straight: max weight difference {resume['max_weight_difference']:.1e}, "
          f"same loss history {resume['same_loss_history']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                                    "samples": args.samples, "epochs": runs, "steady_samples_per_s": steady,
                                    "amp_speedup": steady["amp on"] / steady["amp off"], "resume": resume}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
