"""Launch `torchrun` from an asset through dagster-pipes, and the worker side of that link.

Asset side::

    result = launch_torchrun(context, "netassets.dwcp.train", ["--data", str(path)], nproc=cfg.nproc)

Worker side (the module's ``main``)::

    with worker_session() as session:   # rank 0 talks to Dagster, other ranks print
        session.log("epoch 1 loss 0.3")
        session.report(metadata={...})  # rank 0 only: the asset's materialisation

Only rank 0 opens pipes: if every rank did, Dagster would receive one materialisation per
rank and fail the run. Other ranks' output reaches the compute logs only.

No trainer outlives its run. torchrun starts each worker in a new session, so killing the
run's process group, the step process or the torchrun agent used to leave workers training
on as orphans. Both the agent and every worker therefore start through this module
(``python -m netassets.core.torchrun launch|worker ...``), which asks Linux to SIGKILL the
process when its parent dies (``PR_SET_PDEATHSIG``) before anything else is imported:
killing any level takes every level below it down.
"""

from __future__ import annotations

import os
import runpy
import shlex
import signal
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Sequence

if TYPE_CHECKING:  # workers import this module too: they need dagster_pipes, not all of dagster
    import dagster as dg

# Extra torchrun flags for several machines, e.g.
#   NETASSETS_TORCHRUN_ARGS="--nnodes=2 --node_rank=0 --rdzv_backend=c10d --rdzv_endpoint=host:29400"
# They replace --standalone (which means one machine, a local rendezvous).
TORCHRUN_ARGS_ENV = "NETASSETS_TORCHRUN_ARGS"


def default_nproc() -> int:
    import torch

    return max(torch.cuda.device_count(), 1)


def torchrun_command(module: str, args: Sequence[str], nproc: int | None = None) -> list[str]:
    nproc = default_nproc() if nproc in (None, 0) else nproc
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    rendezvous = shlex.split(os.environ.get(TORCHRUN_ARGS_ENV, "")) or ["--standalone"]
    return [sys.executable, "-m", __name__, "launch", *rendezvous, f"--nproc_per_node={nproc}",
            "-m", __name__, "worker", module, *map(str, args)]


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGKILL this process as soon as its parent dies (Linux; a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _guarded_main(argv: list[str]) -> None:
    """``launch <torchrun args>`` runs the torchrun agent, ``worker <module> <args>`` one rank."""
    if len(argv) < 2 or argv[0] not in ("launch", "worker"):
        raise SystemExit(f"usage: python -m {__name__} launch <torchrun args> | worker <module> <args>")
    die_with_parent()
    role, rest = argv[0], argv[1:]
    target = "torch.distributed.run" if role == "launch" else rest.pop(0)
    sys.argv = [target, *rest]
    runpy.run_module(target, run_name="__main__", alter_sys=True)


def launch_torchrun(
    context: dg.AssetExecutionContext,
    module: str,
    args: Sequence[str],
    *,
    nproc: int | None = None,
    extras: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> dg.PipesClientCompletedInvocation:
    """Run ``torchrun -m module args`` and wait; raises if any rank fails."""
    import dagster as dg

    command = torchrun_command(module, args, nproc)
    context.log.info("launching: %s", shlex.join(command))
    child_env = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **(env or {})}
    return dg.PipesSubprocessClient().run(command=command, context=context, extras=extras or {}, env=child_env)


class _Session:
    def __init__(self, pipes, rank: int):
        self._pipes = pipes
        self.rank = rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def extras(self) -> dict[str, Any]:
        return dict(self._pipes.extras) if self._pipes is not None else {}

    def log(self, message: str) -> None:
        if self._pipes is not None:
            self._pipes.log.info(message)
        else:
            print(f"[rank {self.rank}] {message}", flush=True)

    def report(self, metadata: dict[str, Any], data_version: str | None = None) -> None:
        """The asset's materialisation (rank 0 under Dagster; printed otherwise)."""
        if self._pipes is not None:
            self._pipes.report_asset_materialization(metadata=metadata, data_version=data_version)
        elif self.is_main:
            print(f"[rank 0] result: {metadata}", flush=True)


@contextmanager
def worker_session() -> Iterator[_Session]:
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, open_dagster_pipes

    rank = int(os.environ.get("RANK", "0"))
    if rank == 0 and DAGSTER_PIPES_CONTEXT_ENV_VAR in os.environ:
        with open_dagster_pipes() as pipes:
            yield _Session(pipes, rank)
    else:
        yield _Session(None, rank)


if __name__ == "__main__":
    _guarded_main(sys.argv[1:])
