"""Two-node training on a real two-node SLURM cluster (conftest.py `slurm_two_nodes`): a sweep of
two 2-node DDP jobs (hydra/launcher=slurm, trainer.num_nodes=2) puts each job's ranks on both
nodes, the ranks agree on the metric, and the job requeued without warning resumes to the
weights of the job that ran through."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.cluster.conftest import SlurmCluster
from tests.cluster.sweeps import job_id, start_sweep, wait_for_line, wait_sweep, weights
from tests.launcher_helpers import tiny_run

pytestmark = pytest.mark.slow


def lines_with(log: Path, text: str) -> list[str]:
    return [line.split(" - ", 1)[1] for line in log.read_text().splitlines() if text in line]


def test_two_node_jobs_span_both_nodes_and_a_requeued_one_resumes_exactly(
    slurm_two_nodes: SlurmCluster, tiny_root: Path, tmp_path: Path
) -> None:
    """Two identical 2-node jobs (they differ only in the ONNX opset an export would use): job 0
    is requeued without warning after its first checkpoint, job 1 runs through."""
    cluster, sweep = slurm_two_nodes, tmp_path / "sweep"
    args = [
        "--multirun",
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={cluster.partition}",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=3",
        "hydra.launcher.timeout_min=15",
        f"hydra.sweep.dir={sweep}",
        "export.opset=17,18",
        # Long enough that job 0 is still training when SLURM kills it, KillWait (5 s) after the
        # requeue (submitit ignores SLURM's SIGTERM): with 12 iterations it had reached
        # iteration 9-10, a faster machine would have finished, and nothing would resume.
        *tiny_run(tiny_root, total_iter=40),
        "trainer.num_nodes=2",
        "trainer.devices=1",
        "trainer.strategy=ddp",
    ]
    log = tmp_path / "sweep.log"
    proc = start_sweep(cluster, args, log)
    try:
        wait_for_line(sweep / "0" / "main.log", "last.ckpt at iteration 2", timeout=240, sweep=proc)
        cluster.run("scontrol", "requeue", job_id(sweep / "0"))
        assert wait_sweep(proc, cluster, sweep, log, timeout=600) == 0, log.read_text()[-3000:]
    finally:
        proc.kill()

    jobs = [job_id(sweep / job) for job in ("0", "1")]
    for job in ("0", "1"):
        rank0, rank1 = sweep / job / "main.log", sweep / job / "train_ddp_process_1.log"
        # Each rank on its own node: SLURM's node id and the node's slurmd in the rank's log.
        assert "SLURM_NODEID=0, SLURMD_NODENAME=srlane-node1" in rank0.read_text()
        assert "SLURM_NODEID=1, SLURMD_NODENAME=srlane-node2" in rank1.read_text()
        assert lines_with(rank0, "validation at") == lines_with(rank1, "validation at") != []
    assert "resumed from" in (sweep / "0" / "main.log").read_text()
    reference, resumed = weights(sweep / "1"), weights(sweep / "0")
    assert reference.keys() == resumed.keys()
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)

    # Accounting: both jobs ran on both nodes and completed; job 0 also has its REQUEUED record.
    sacct = cluster.poll_sacct(
        ["-D", "-X", "-n", "-P", "-o", "JobIDRaw,State,NNodes,NodeList", "-j", ",".join(jobs)],
        lambda out: out.count("COMPLETED") >= 2 and "REQUEUED" in out,
    )
    print(sacct)
    assert sacct.count("|COMPLETED|2|srlane-node[1-2]") == 2, sacct
    assert f"{jobs[0]}|REQUEUED|2|srlane-node[1-2]" in sacct, sacct
