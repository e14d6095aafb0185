"""torchrun across nodes, on this machine: two launcher agents on the loopback interface
(--nnodes=2, --rdzv_backend=c10d, one rendezvous endpoint, one gloo process each). Node 0 is the
traffic_lstm asset's own launch (NETASSETS_TORCHRUN_ARGS); node 1 is started by the test from
the command the launcher publishes (NETASSETS_TORCHRUN_PEERS_FILE), as ssh or a job controller
would on another machine. Rank 0 alone reports through pipes. The trained weights equal those of
a single-node run with 2 processes (the same global batch, the same shards) within 1e-6."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import dagster as dg
import torch

from netassets.core.pgserver import free_port
from netassets.core.torchrun import TORCHRUN_ARGS_ENV, TORCHRUN_PEERS_FILE_ENV, peer_command
from netassets.core.training import load_checkpoint
from netassets.defs.traffic.assets import traffic_lstm
from netassets.traffic.runs import model_store
from netassets_tests.traffic.test_pipeline import SMALL, generate, materialise_flows

TOLERANCE = 1e-6  # max |weight difference|; gloo sums the same two shards in the same order either way


def train(warehouse, instance, nproc: int):
    config = {**SMALL, "epochs": 2, "nproc": nproc}
    return dg.materialize([traffic_lstm], instance=instance, resources={"warehouse": warehouse},
                          run_config={"ops": {"traffic_lstm": {"config": config}}})


def test_two_node_torchrun_matches_a_single_node_run(netassets_home, warehouse, instance, tmp_path, monkeypatch):
    generate(flows=24, days=3)
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        materialise_flows(warehouse, instance, key=f"{day}|edge-a")
    single = train(warehouse, instance, nproc=2)
    assert single.success

    peers = tmp_path / "peers.json"
    monkeypatch.setenv(TORCHRUN_ARGS_ENV, f"--nnodes=2 --node_rank=0 --rdzv_backend=c10d "
                                          f"--rdzv_endpoint=127.0.0.1:{free_port()} --rdzv_id=netassets-test")
    monkeypatch.setenv(TORCHRUN_PEERS_FILE_ENV, str(peers))
    outcome: dict = {}
    node0 = threading.Thread(target=lambda: outcome.update(result=train(warehouse, instance, nproc=1)), daemon=True)
    node0.start()
    deadline = time.monotonic() + 120
    while not peers.exists():
        assert node0.is_alive() and time.monotonic() < deadline, f"node 0 never published its command: {outcome}"
        time.sleep(0.1)
    published = json.loads(peers.read_text())
    assert "--nnodes=2" in published["argv"] and "--nproc_per_node=1" in published["argv"]
    node1 = subprocess.run(peer_command(published["argv"], 1), env={**os.environ, **published["env"]},
                           capture_output=True, text=True, timeout=300)
    node0.join(timeout=300)
    assert node1.returncode == 0, node1.stdout[-3000:] + node1.stderr[-3000:]
    multi = outcome["result"]
    assert multi.success

    # Rank 0 alone reported: one materialisation, world size 2 across the two nodes.
    (event,) = multi.asset_materializations_for_node("traffic_lstm")
    assert event.metadata["world_size"].value == 2
    assert single.asset_materializations_for_node("traffic_lstm")[0].metadata["world_size"].value == 2
    assert "[rank 1]" in node1.stdout  # node 1's rank printed instead of opening pipes

    runs = model_store().root / "runs"
    weights = [load_checkpoint(runs / r.run_id / "checkpoint.pt")["model"] for r in (single, multi)]
    assert weights[0].keys() == weights[1].keys()
    diff = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
    assert diff <= TOLERANCE, f"two-node weights differ from single-node ones by {diff}"
    reports = [json.loads((runs / r.run_id / "report.json").read_text()) for r in (single, multi)]
    losses = [[h["val_mse"] for h in rep["history"]] for rep in reports]
    assert torch.allclose(torch.tensor(losses[0]), torch.tensor(losses[1]), atol=TOLERANCE, rtol=0), losses


def test_rank_zero_is_on_node_zero_whatever_order_the_rendezvous_chose(monkeypatch):
    from netassets.core import torchrun

    # c10d numbered node 0's only worker 1 (its agent sorted after node 1's): renumbered to 0.
    for name, value in {"NETASSETS_NODE_RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "1",
                        "RANK": "1", "GROUP_RANK": "1", "TORCHELASTIC_USE_AGENT_STORE": "True"}.items():
        monkeypatch.setenv(name, value)
    torchrun._rank_by_node()
    assert (os.environ["RANK"], os.environ["GROUP_RANK"]) == ("0", "0")
    monkeypatch.setenv("NETASSETS_NODE_RANK", "2")  # a node rank beyond --nnodes is refused
    try:
        torchrun._rank_by_node()
    except SystemExit as exc:
        assert "does not fit a world of 2" in str(exc)
    else:
        raise AssertionError("node rank 2 of 2 nodes accepted")
    command = torchrun.torchrun_command("m", ["--x=1"], nproc=1)
    assert torchrun._nnodes(command) == "1"
    monkeypatch.setenv(TORCHRUN_ARGS_ENV, "--nnodes=2 --node_rank=0 --rdzv_backend=c10d --rdzv_endpoint=h:1")
    command = torchrun.torchrun_command("m", ["--x=1"], nproc=1)
    assert torchrun._nnodes(command) == "2" and "--node_rank=1" in peer_command(command, 1)
