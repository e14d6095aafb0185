"""Launch `torchrun` from an asset through dagster-pipes, and the worker side of that link.

Asset side::

    result = launch_torchrun(context, "netassets.dwcp.train", ["--config", str(run / "config.json"), ...], nproc=config.nproc)

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
# With --nnodes > 1 the asset's step is node 0; the other nodes run the same command with their
# own --node_rank (``peer_command``) and see the same paths (a shared filesystem). If this names
# a file, the launcher writes {"argv": ..., "env": ...} there (atomically) for whatever starts
# the other nodes (ssh, a job controller, the multi-node test); the command is logged either way.
TORCHRUN_PEERS_FILE_ENV = "NETASSETS_TORCHRUN_PEERS_FILE"


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


def peer_command(command: Sequence[str], node_rank: int) -> list[str]:
    """The launcher command of node ``node_rank``: node 0's command with its --node_rank replaced."""
    if node_rank < 0:
        raise ValueError(f"node_rank must be >= 0, got {node_rank}")
    out, replaced = [], False
    for arg in command:
        if arg.startswith("--node_rank=") or arg.startswith("--node-rank="):
            arg, replaced = f"--node_rank={node_rank}", True
        out.append(arg)
    if not replaced:
        raise ValueError(f"no --node_rank=... in the launcher command (set it in {TORCHRUN_ARGS_ENV})")
    return out


def _flag(command: Sequence[str], name: str) -> str | None:
    for arg, following in zip(command, [*command[1:], ""]):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name:
            return following
        if arg == "-m":  # the launcher's own flags end at the module
            break
    return None


def _nnodes(command: Sequence[str]) -> str:
    launcher_args = command[command.index("launch") + 1:] if "launch" in command else command
    return _flag(launcher_args, "--nnodes") or "1"


NODE_RANK_ENV = "NETASSETS_NODE_RANK"


def _rank_by_node() -> None:
    """Make global rank = node_rank x nproc_per_node + local rank.

    The c10d rendezvous numbers nodes by (hostname, agent pid), ignoring --node_rank, so rank 0
    (the one that reports) could land on a node without the Dagster pipes context: the asset
    would get no materialisation. The asset's launch is node 0; renumbering before any process
    group exists puts rank 0 there. Only where workers reach the agents' store (TORCHELASTIC_USE_AGENT_STORE,
    c10d's default), so no worker has to host the store at MASTER_ADDR."""
    node_rank, local_rank = os.environ.get(NODE_RANK_ENV), os.environ.get("LOCAL_RANK")
    world, local_world = os.environ.get("WORLD_SIZE"), os.environ.get("LOCAL_WORLD_SIZE")
    if None in (node_rank, local_rank, world, local_world) or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return
    rank = int(node_rank) * int(local_world) + int(local_rank)
    if int(world) % int(local_world) or not 0 <= rank < int(world):
        raise SystemExit(f"--node_rank={node_rank} with {local_world} processes per node does not fit a world of {world}"
                         " (every node needs the same --nproc_per_node and a distinct --node_rank below --nnodes)")
    os.environ.update(RANK=str(rank), GROUP_RANK=node_rank, ROLE_RANK=str(rank))


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
    if role == "launch":
        node_rank = _flag(rest, "--node_rank") or _flag(rest, "--node-rank")
        if node_rank is not None:
            os.environ[NODE_RANK_ENV] = node_rank  # the workers below inherit it
    else:
        _rank_by_node()
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
    if _nnodes(command) not in ("1", "1:1"):
        context.log.info("other nodes run: %s (with their --node_rank)", shlex.join(command))
        peers_file = os.environ.get(TORCHRUN_PEERS_FILE_ENV)
        if peers_file:
            import json
            from pathlib import Path

            target = Path(peers_file)
            partial = target.with_name(target.name + ".partial")
            partial.write_text(json.dumps({"argv": command, "env": child_env}))
            partial.replace(target)
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
