"""The launcher on a real SLURM cluster (hydra/launcher=slurm): a DDP sweep, a job killed from
outside, and preemption (requeue without warning, and the early-warning signal) resuming to the
weights of an uninterrupted run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.cluster.conftest import SlurmCluster
from tests.launcher_helpers import ROOT, tiny_run

pytestmark = pytest.mark.slow


def slurm_args(cluster: SlurmCluster, sweep: Path, cpus: int = 1) -> list[str]:
    return [
        "--multirun",
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={cluster.partition}",
        f"hydra.launcher.cpus_per_task={cpus}",
        "hydra.launcher.mem_gb=3",
        "hydra.launcher.timeout_min=15",
        f"hydra.sweep.dir={sweep}",
    ]


def start_sweep(cluster: SlurmCluster, args: list[str], log: Path) -> subprocess.Popen:
    env = {**cluster.env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "src.main", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for_line(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(errors="ignore"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} did not appear in {path} within {timeout} s")


def job_id(run: Path) -> str:
    """The SLURM job id of a sweep job: its run_name (SLURM_JOB_ID), in the saved config."""
    return str(OmegaConf.load(run / "config.yaml").run_name)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["model"]


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
    proc = start_sweep(slurm_cluster, args, tmp_path / "sweep.log")
    assert proc.wait(timeout=600) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
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
    wait_for_line(sweep / "0" / "main.log", "iteration 2/400", timeout=180)
    slurm_cluster.run("scancel", job_id(sweep / "0"))
    start = time.monotonic()
    code = proc.wait(timeout=300)
    assert code != 0
    assert time.monotonic() - start < 300
    assert "CANCELLED" in log.read_text() or "UncompletedJobError" in log.read_text()


def test_preempted_jobs_resume_to_the_uninterrupted_weights(
    slurm_cluster: SlurmCluster, tiny_root: Path, tmp_path: Path
) -> None:
    """Three identical jobs (they differ only in the logger's project name): job 0 is requeued
    without warning, job 1 gets SLURM's early-warning signal, job 2 runs through."""
    sweep = tmp_path / "sweep"
    args = [
        *slurm_args(slurm_cluster, sweep),
        "logger.project=a,b,c",
        *tiny_run(tiny_root, total_iter=40),
        "trainer.checkpoint_every_iters=4",
    ]
    log = tmp_path / "sweep.log"
    proc = start_sweep(slurm_cluster, args, log)

    wait_for_line(sweep / "0" / "main.log", "last.ckpt at iteration 4", timeout=180)
    slurm_cluster.run("scontrol", "requeue", job_id(sweep / "0"))
    wait_for_line(sweep / "1" / "main.log", "last.ckpt at iteration 4", timeout=180)
    slurm_cluster.run("scancel", "--signal=USR2", job_id(sweep / "1"))

    assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
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
