"""The launcher on a real SLURM cluster (hydra/launcher=slurm): a DDP sweep, a job killed from
outside, and preemption (requeue without warning, and the early-warning signal) resuming to the
weights of an uninterrupted run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from src.engine.run_lock import RunDirLock
from tests.cluster.conftest import FINAL_STATES, SlurmCluster
from tests.cluster.sweeps import (
    job_id,
    slurm_args,
    start_sweep,
    wait_for_line,
    wait_sweep,
    weights,
)
from tests.launcher_helpers import tiny_run

pytestmark = pytest.mark.slow


def test_slurm_sweep_of_two_ddp_jobs(
    slurm_cluster: SlurmCluster, tiny_root: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    args = [
        *slurm_args(slurm_cluster, sweep),
        "optimizer.lr=1e-3,5e-4",
        *tiny_run(tiny_root, total_iter=4),
        "trainer.strategy=ddp",
        "trainer.devices=2",
    ]
    log = tmp_path / "sweep.log"
    proc = start_sweep(slurm_cluster, args, log)
    assert wait_sweep(proc, slurm_cluster, sweep, log, timeout=600) == 0, log.read_text()[-3000:]
    for job in ("0", "1"):
        run = sweep / job
        assert (run / "metrics.json").is_file()
        rank0 = [x for x in (run / "main.log").read_text().splitlines() if "validation at" in x]
        rank1 = [
            x
            for x in (run / "train_ddp_process_1.log").read_text().splitlines()
            if "validation at" in x
        ]
        assert len(rank0) == len(rank1) == 1
        assert rank0[0].split(" - ")[1] == rank1[0].split(" - ")[1]
    # The sweep's own two jobs, polled until accounting has their final state (it lags the
    # results on disk: right after the sweep a job can still read RUNNING).
    states = slurm_cluster.wait_final([job_id(sweep / "0"), job_id(sweep / "1")])
    assert set(states.values()) == {"COMPLETED"}, states


def test_job_killed_from_outside_is_reported_not_waited_for(
    slurm_cluster: SlurmCluster, tiny_root: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    args = [*slurm_args(slurm_cluster, sweep), *tiny_run(tiny_root, total_iter=400)]
    log = tmp_path / "sweep.log"
    proc = start_sweep(slurm_cluster, args, log)
    wait_for_line(sweep / "0" / "main.log", "iteration 2/400", timeout=180, sweep=proc)
    slurm_cluster.run("scancel", job_id(sweep / "0"))
    start = time.monotonic()
    code = wait_sweep(proc, slurm_cluster, sweep, log, timeout=300)
    assert code != 0
    assert time.monotonic() - start < 300
    assert "CANCELLED" in log.read_text() or "UncompletedJobError" in log.read_text()


def test_a_rank_failing_before_the_others_meet_ends_the_job(
    slurm_cluster: SlurmCluster, tiny_root: Path, tmp_path: Path
) -> None:
    """Rank 0 of a 2-rank job is refused its run dir (another process holds the run lock) and
    exits before the process group exists; srun ends rank 1 (SLURM_KILL_BAD_EXIT in the
    launcher's setup) instead of leaving it waiting for rank 0 until the rendezvous timeout."""
    sweep = tmp_path / "sweep"
    args = [
        *slurm_args(slurm_cluster, sweep),
        *tiny_run(tiny_root, total_iter=4),
        "trainer.strategy=ddp",
        "trainer.devices=2",
    ]
    log = tmp_path / "sweep.log"
    with RunDirLock(sweep / "0"):
        proc = start_sweep(slurm_cluster, args, log)
        assert wait_sweep(proc, slurm_cluster, sweep, log, timeout=180) != 0
    assert "is in use by another run" in (sweep / "0" / "job_error.txt").read_text()
    # The job failed (srun: "task 0: Exited with exit code 1", "task 1: Killed").
    (job,) = [p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()]  # no array
    assert slurm_cluster.wait_state(job, FINAL_STATES, timeout=60) == "FAILED"


def test_preempted_jobs_resume_to_the_uninterrupted_weights(
    slurm_cluster: SlurmCluster, tiny_root: Path, tmp_path: Path
) -> None:
    """Three identical jobs (they differ only in the ONNX opset an export would use): job 0 is
    requeued without warning, job 1 gets SLURM's early-warning signal, job 2 runs through."""
    sweep = tmp_path / "sweep"
    args = [
        *slurm_args(slurm_cluster, sweep),
        "export.opset=17,18,19",
        # Job 0 must still be training when SLURM kills it 5 s after the requeue: with 40
        # iterations it had reached iteration 21 here.
        *tiny_run(tiny_root, total_iter=60),
        "trainer.checkpoint_every_iters=4",
    ]
    log = tmp_path / "sweep.log"
    proc = start_sweep(slurm_cluster, args, log)

    wait_for_line(sweep / "0" / "main.log", "last.ckpt at iteration 4", timeout=180, sweep=proc)
    slurm_cluster.run("scontrol", "requeue", job_id(sweep / "0"))
    wait_for_line(sweep / "1" / "main.log", "last.ckpt at iteration 4", timeout=180, sweep=proc)
    slurm_cluster.run("scancel", "--signal=USR2", job_id(sweep / "1"))

    assert wait_sweep(proc, slurm_cluster, sweep, log, timeout=900) == 0, log.read_text()[-3000:]
    requeued, signalled = (
        (sweep / "0" / "main.log").read_text(),
        (sweep / "1" / "main.log").read_text(),
    )
    assert "resumed from" in requeued
    assert "received SIGUSR2" in signalled and "resumed from" in signalled
    reference = weights(sweep / "2")
    for run in (sweep / "0", sweep / "1"):
        resumed = weights(run)
        assert all(torch.equal(reference[k], resumed[k]) for k in reference), run
    # Accounting keeps a REQUEUED record of each interrupted run (-D: all of a job's records).
    history = slurm_cluster.poll_sacct(
        ["-D", "-X", "-n", "-P", "-o", "JobID,State", "-j"]
        + [f"{job_id(sweep / '0')},{job_id(sweep / '1')}"],
        lambda out: out.count("REQUEUED") >= 2,
    )
    assert history.count("REQUEUED") >= 2, history
