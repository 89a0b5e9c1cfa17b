"""Two nodes with torchrun, on loopback: two `torchrun --nnodes 2 --node-rank {0,1}` launches make
one run (one run dir, ranks agreeing on the metric, checkpoints written once), and a run whose
two nodes are killed after a checkpoint resumes to the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.launch.processes import _free_port
from tests.launcher_helpers import ROOT, tiny_run

pytestmark = pytest.mark.slow

NODES = 2


def torchrun_node(node_rank: int, port: int, args: list[str]) -> subprocess.Popen[str]:
    """One node of the launch: `torchrun ... -m src.main <args>`, output merged on a pipe; its
    own session, so the test can kill the node whole."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",  # the `torchrun` console script, from this interpreter
        f"--nnodes={NODES}",
        f"--node-rank={node_rank}",
        "--nproc-per-node=1",
        "--master-addr=127.0.0.1",
        f"--master-port={port}",
        "-m",
        "src.main",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def run_nodes(args: list[str], timeout: float = 300) -> list[str]:
    """Both nodes to the end; their outputs. Fails with the output of a node that failed."""
    port = _free_port()
    nodes = [torchrun_node(rank, port, args) for rank in range(NODES)]
    outputs = [node.communicate(timeout=timeout)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-4000:]
    return outputs


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts each worker in a session of its own, so a
    process group kill of torchrun alone would leave the worker training)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_nodes(nodes: list[subprocess.Popen[str]]) -> None:
    """SIGKILL the nodes as a power cut would: each torchrun, its workers and their children,
    all found before the first kill (a worker whose torchrun died is adopted by init)."""
    pids = [pid for node in nodes for pid in (node.pid, *descendants(node.pid))]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # already gone
    for node in nodes:
        node.wait(timeout=30)
        if node.stdout is not None:
            node.stdout.close()


def run_killed_after_checkpoint(args: list[str], marker: str) -> None:
    """Start both nodes; kill both when node 0 prints ``marker``."""
    port = _free_port()
    nodes = [torchrun_node(rank, port, args) for rank in range(NODES)]
    assert nodes[0].stdout is not None
    seen = []
    try:
        for line in nodes[0].stdout:
            seen.append(line)
            if marker in line:
                break
        else:
            raise AssertionError(f"{marker!r} never printed:\n{''.join(seen)[-4000:]}")
    finally:
        kill_nodes(nodes)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["model"]


def validation_lines(log: Path) -> list[str]:
    return [
        line.split(" - ", 1)[1] for line in log.read_text().splitlines() if "validation at" in line
    ]


def test_two_torchrun_nodes_make_one_run_that_resumes_exactly(
    tiny_root: Path, tmp_path: Path
) -> None:
    common = [
        *tiny_run(tiny_root, total_iter=6),
        "trainer.num_nodes=2",
        "trainer.devices=1",
        "trainer.strategy=ddp",
    ]
    straight = tmp_path / "straight"
    run_nodes([*common, "run_name=straight", f"hydra.run.dir={straight}"])

    # One run: one dir holding both ranks' logs, each rank on its node, one set of checkpoints.
    rank0, rank1 = straight / "main.log", straight / "train_ddp_process_1.log"
    assert "rank 0 of 2: node 0" in rank0.read_text()
    assert "rank 1 of 2: node 1" in rank1.read_text()
    assert "rank 1 of 2" not in rank0.read_text()  # rank 1 logs nothing into main.log
    assert validation_lines(rank0) == validation_lines(rank1) != []
    assert sorted(p.name for p in (straight / "checkpoints").iterdir()) == [
        "best.ckpt",
        "last.ckpt",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["straight"]

    # Both nodes killed after the checkpoint of iteration 2, then the same commands again.
    killed = tmp_path / "killed"
    args = [*common, "run_name=killed", f"hydra.run.dir={killed}"]
    run_killed_after_checkpoint(args, "last.ckpt at iteration 2")
    step = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["train_state"]
    assert step["step"] < 6, "the kill came after the run had finished"
    run_nodes(args)
    assert (
        f"resumed from {killed / 'checkpoints' / 'last.ckpt'}" in (killed / "main.log").read_text()
    )
    reference, resumed = weights(straight), weights(killed)
    assert reference.keys() == resumed.keys()
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    assert validation_lines(killed / "main.log")[-1] == validation_lines(rank0)[-1]
