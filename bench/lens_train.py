"""LENS models: PatchTST on held-out days against its baselines, training inside the asset
(torchrun + pipes + DDP) vs a bare loop on the same tensors, the data-loading share of a step,
and features + cluster assignment in groups/s.

    python -m bench.lens_train [--days 3] [--hours 1] [--epochs 0] [--full-day-hours 24] [--nproc 1]

1. Generates --days x 2 regions x --hours of LENS data, ingests and featurises every
   partition, fits lens_gmm (default settings) and materialises lens_patchtst with --nproc
   processes and the asset's default recipe (``LensPatchTSTConfig``; --epochs > 0 overrides its
   epochs). The held-out verdict is the asset's: accuracy and macro-F1 of PatchTST, the majority
   class and logistic regression on the same test groups, for seeds 0 and 1. Its samples/s is
   measured inside the training loop, per epoch (the first epoch, which includes warm-up, is
   dropped), as is the share of step time spent waiting for the next batch. The bare loop trains
   the same model on the same dataset.npz with the same batch size and thread count, in this
   process, with no DDP, no evaluation, no learning-rate schedule and no checkpoints. They run
   alternately, twice each (asset, bare, asset, bare): the machine is shared, and the spread
   between runs shows how much its load drifted. Overhead = 1 - mean(asset) / mean(bare)
   (target < 10 %). The asset's wall time, with torchrun's
   start and the interpreter imports, is shown apart.
2. One day-partition at --full-day-hours (24 = full rate, 5,760 groups): lens_group_features
   and lens_clusters, groups/s for the computation alone and for the whole asset run.

Writes bench/results/lens_train.json. On a GPU machine the same script reports the GPU run
with AMP (the asset uses bfloat16 autocast when CUDA is present).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netassets.lens.config import TrainConfig

REGIONS = ["chicago", "ottawa"]
START = dt.date(2023, 11, 1)


def bare_loop(dataset: Path, config: TrainConfig, threads: int) -> dict:
    """The same model and tensors in a plain loop: the floor the asset's loop is compared with."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from netassets.lens.patchtst import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with np.load(dataset) as data:
        x, y, weight = (torch.from_numpy(data[k]) for k in ("x_train", "y_train", "class_weight"))
    batch_size = config.batch_size
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(config.arch(x.shape[2], len(weight)), config.dropouts()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loader = DataLoader(TensorDataset(x, y.long()), batch_size=batch_size, shuffle=True)
    weight = weight.to(device)
    rates = []
    for _ in range(config.epochs):
        start, samples = time.perf_counter(), 0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(past_values=xb).prediction_logits.float()
            loss = F.cross_entropy(logits, yb, weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            samples += len(yb)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(samples / (time.perf_counter() - start))
    return {"samples_per_s": statistics.median(rates[1:] or rates), "per_epoch": rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--hours", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=0, help="0: the asset's default")
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--full-day-hours", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("bench/results/lens_train.json"))
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="lens_train_bench_"))
    os.environ["NETASSETS_HOME"] = str(home)
    os.environ.pop("NETASSETS_LENS_ROOT", None)
    threads = int(os.environ.setdefault("OMP_NUM_THREADS", "1"))  # what launch_torchrun gives each worker

    import dagster as dg

    from netassets.core.warehouse import DuckDBWarehouse
    from netassets.defs.lens.assets import lens_clusters, lens_group_features, lens_ingest
    from netassets.defs.lens.model_assets import LensPatchTSTConfig, lens_gmm, lens_patchtst
    from netassets.lens.config import TrainConfig
    from netassets.lens.models import patchtst_store, refusal_of
    from netassets.lens.sample import write_lens
    from netassets.pipelines import pipeline

    landing = home / "landing" / "lens"
    write_lens(landing, REGIONS, START, args.days, seed=0, hours=args.hours)
    warehouse = DuckDBWarehouse(database=str(home / "warehouse.duckdb"))
    resources = {"warehouse": warehouse}
    config = {"nproc": args.nproc, **({"epochs": args.epochs} if args.epochs else {})}
    recipe = LensPatchTSTConfig(**config)
    report: dict = {"days": args.days, "hours": args.hours, "regions": REGIONS, "nproc": args.nproc,
                    "threads_per_process": threads, "recipe": recipe.identity() | {"epochs": recipe.epochs}}
    with dg.instance_for_test() as instance:
        pipeline("lens").register(instance, REGIONS + ["fullday"])
        for offset in range(args.days):
            for region in REGIONS:
                dg.materialize([lens_ingest, lens_group_features], resources=resources,
                               instance=instance, partition_key=f"{(START + dt.timedelta(offset)).isoformat()}|{region}")
        gmm = dg.materialize([lens_gmm], resources=resources, instance=instance)
        gmm_meta = gmm.asset_materializations_for_node("lens_gmm")[0].metadata
        report["gmm"] = {"k": gmm_meta["k"].value, "ari_vs_generator_regimes": gmm_meta["ari_vs_generator_regimes"].value}
        print(f"GMM: k={report['gmm']['k']}, ARI vs generator regimes {report['gmm']['ari_vs_generator_regimes']:.3f}", flush=True)

        def train_asset(seed: int) -> tuple[dict, Path]:
            start = time.perf_counter()
            trained = dg.materialize([lens_patchtst], resources=resources, instance=instance,
                                     run_config={"ops": {"lens_patchtst": {"config": {**config, "seed": seed}}}})
            wall = time.perf_counter() - start
            meta = trained.asset_materializations_for_node("lens_patchtst")[0].metadata
            run_dir = Path(meta["run_folder"].path)
            history = json.loads((run_dir / "result.json").read_text())["history"]
            steady = history[1:] or history
            evaluations = list(patchtst_store().candidate().evaluations)
            return {
                "seed": seed, "wall_s": wall, "epochs": len(history), "best_epoch": meta["best_epoch"].value,
                "samples_per_s": statistics.median(h["samples_per_s"] for h in steady),
                "data_wait_share": statistics.median(h["data_wait_share"] for h in steady),
                "train_groups": meta["groups_per_split"].data["train"], "test_rows": evaluations[0].rows,
                "test": evaluations[0].scores, "promotable": refusal_of(evaluations) is None,
                "verdicts": [e.verdict for e in evaluations],
            }, run_dir

        report["asset"], run_dir = train_asset(seed=0)
        train_config = TrainConfig.of(recipe)
        start = time.perf_counter()
        report["bare"] = bare_loop(run_dir / "dataset.npz", train_config, threads)
        report["bare"]["wall_s"] = time.perf_counter() - start
        # Again after a second asset run, so load drift on the shared machine shows up as a spread.
        report["asset_second_run"], _ = train_asset(seed=1)
        report["bare"]["samples_per_s_second_run"] = bare_loop(run_dir / "dataset.npz", train_config, threads)["samples_per_s"]
        asset_rate = statistics.mean([report["asset"]["samples_per_s"], report["asset_second_run"]["samples_per_s"]])
        bare_rate = statistics.mean([report["bare"]["samples_per_s"], report["bare"]["samples_per_s_second_run"]])
        report["overhead"] = 1 - asset_rate / bare_rate

        # One full-rate day for one region, through the real assets.
        write_lens(landing, ["fullday"], START, 1, seed=1, hours=args.full_day_hours)
        key = f"{START.isoformat()}|fullday"
        dg.materialize([lens_ingest], resources=resources, instance=instance, partition_key=key)
        timings = {}
        for asset, metric in ((lens_group_features, "groups_per_s"), (lens_clusters, "groups_per_s_assignment")):
            start = time.perf_counter()
            result = dg.materialize([asset], resources=resources, instance=instance, partition_key=key)
            wall = time.perf_counter() - start
            asset_meta = result.asset_materializations_for_node(asset.key.path[-1])[0].metadata
            rows = asset_meta["dagster/row_count"].value
            timings[asset.key.path[-1]] = {"groups": rows, "compute_groups_per_s": asset_meta[metric].value,
                                           "run_groups_per_s": rows / wall, "run_s": wall}
        report["full_day"] = timings

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    a, a2, b = report["asset"], report["asset_second_run"], report["bare"]
    print(f"\nPatchTST training, {a['train_groups']} training groups, batch {recipe.batch_size}, {a['epochs']} epochs, "
          f"{args.nproc} process(es) x {threads} thread(s), CPU")
    print(f"{'loop':<28} {'samples/s':>10} {'data wait':>10} {'wall s':>8}")
    print(f"{'asset (torchrun+pipes+DDP)':<28} {a['samples_per_s']:>10.0f} {a['data_wait_share']:>10.1%} {a['wall_s']:>8.1f}")
    print(f"{'bare loop':<28} {b['samples_per_s']:>10.0f} {'-':>10} {b['wall_s']:>8.1f}")
    print(f"{'asset, second run':<28} {a2['samples_per_s']:>10.0f}")
    print(f"{'bare loop, second run':<28} {b['samples_per_s_second_run']:>10.0f}")
    print(f"overhead inside the loop (means of both runs): {report['overhead']:+.1%} (target < 10 %)")
    print(f"\nheld-out day(s), the same {a['test_rows']} test groups for every scorer (test split)")
    print(f"{'scorer':<22} {'seed':>4} {'accuracy':>9} {'macro-F1':>9}")
    for run in (a, a2):
        for name, scores in run["test"].items():
            print(f"{name:<22} {run['seed']:>4} {scores['accuracy']:>9.3f} {scores['macro_f1']:>9.3f}")
        print(f"  seed {run['seed']}: {'promotable' if run['promotable'] else 'NOT promotable'}; " + "; ".join(run["verdicts"]))
    print(f"\none day-partition at {args.full_day_hours} h")
    print(f"{'asset':<22} {'groups':>7} {'compute groups/s':>17} {'run groups/s':>13} {'run s':>7}")
    for name, t in report["full_day"].items():
        print(f"{name:<22} {t['groups']:>7} {t['compute_groups_per_s']:>17,.0f} {t['run_groups_per_s']:>13,.0f} {t['run_s']:>7.1f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
