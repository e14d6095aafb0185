"""Training helpers shared by the trainers, under a real torchrun (two processes over gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def test_ranks_score_with_the_main_ranks_batchnorm_statistics(tmp_path):
    """DDP sends buffers only at a training forward's start: after an epoch's last step each rank
    holds its own running statistics, and a validation split scored in shards would be read on
    models that are not the one saved. share_main_buffers gives every rank the main rank's."""
    script = tmp_path / "ranks.py"
    script.write_text(textwrap.dedent(f"""
        import json, torch
        from torch import nn
        from torch.nn.parallel import DistributedDataParallel
        from netassets.core.training import init_distributed, share_main_buffers, shutdown_distributed
        env = init_distributed()
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        ddp = DistributedDataParallel(model)
        torch.manual_seed(env.rank)  # each rank its own batch, as a sampler gives
        ddp(torch.randn(8, 3) * (env.rank + 1)).sum().backward()  # the epoch's last training step
        before = model[1].running_mean.tolist()
        share_main_buffers(model, env)
        with open({str(tmp_path)!r} + f"/rank{{env.rank}}.json", "w") as out:
            json.dump({{"before": before, "after": model[1].running_mean.tolist()}}, out)
        shutdown_distributed()
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    main, other = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert main["before"] != other["before"]  # the ranks had drifted apart
    assert other["after"] == main["after"] == main["before"]
