"""The Optuna sweeper on a real SLURM cluster: every trial a SLURM job of its own, two at a time,
pruned through the shared journal file, and a trial whose job is killed from outside."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hydra_plugins.srlane_optuna_sweeper import study as shared
from tests.cluster.conftest import SlurmCluster
from tests.cluster.sweeps import job_id, slurm_args, start_sweep, wait_sweep
from tests.launch.test_optuna_sweeper import search_args

pytestmark = pytest.mark.slow


def sweep_log(tmp_path: Path) -> str:
    return (tmp_path / "sweep.log").read_text()[-4000:]


def test_search_of_slurm_jobs_prunes_and_fails_trials(
    slurm_cluster: SlurmCluster, tiny_root: Path, tmp_path: Path
) -> None:
    """conf 0.99: COMPLETE; conf 0.4 with lr 3e-3: F1 0.22 at iteration 2, PRUNED by the
    ThresholdPruner; lr 1e30: non-finite loss, FAIL (see tests/test_optuna_sweeper.py)."""
    sweep = tmp_path / "sweep"
    params = {"model.conf_threshold": "choice(0.99, 0.4)", "optimizer.lr": "choice(3e-3, 1e30)"}
    args = [
        *slurm_args(slurm_cluster, sweep),
        *search_args(tmp_path, tiny_root, params, n_trials=4, total_iter=4)[1:],
        "hydra.sweeper.n_jobs=2",
    ]
    proc = start_sweep(slurm_cluster, args, tmp_path / "sweep.log")
    assert wait_sweep(proc, slurm_cluster, sweep, tmp_path / "sweep.log", 600) == 0, sweep_log(
        tmp_path
    )
    trials = shared.load_sweep_study(sweep).trials
    states = {(t.params["model.conf_threshold"], t.params["optimizer.lr"]): t.state for t in trials}
    assert states == {
        (0.99, 3e-3): TrialState.COMPLETE,
        (0.4, 3e-3): TrialState.PRUNED,
        (0.99, 1e30): TrialState.FAIL,
        (0.4, 1e30): TrialState.FAIL,
    }
    pruned = next(t for t in trials if t.state == TrialState.PRUNED)
    assert pruned.user_attrs[shared.PRUNED_AT] == 2
    assert "pruned by the Optuna study" in (sweep / str(pruned.number) / "main.log").read_text()
    # Each trial ran as its own SLURM job (the run name is the job id); sacct says which failed.
    jobs = {job_id(sweep / str(t.number)): t.state for t in trials}
    assert len(jobs) == 4
    expected = {job: "FAILED" if s == TrialState.FAIL else "COMPLETED" for job, s in jobs.items()}
    assert slurm_cluster.wait_final(set(jobs)) == expected


def test_a_trial_killed_on_slurm_fails_and_the_search_goes_on(
    slurm_cluster: SlurmCluster, tiny_root: Path, tmp_path: Path
) -> None:
    """Two trials at once, one of 400 iterations: scancel its job. The trial is FAIL with the
    launcher's reason, the other trial completes, and one failure of two is within
    max_failure_rate=0.5: the sweep exits 0."""
    sweep = tmp_path / "sweep"
    params = {"trainer.total_iter": "choice(4, 400)", "model.conf_threshold": "choice(0.99)"}
    args = [
        *slurm_args(slurm_cluster, sweep),
        *search_args(tmp_path, tiny_root, params, n_trials=2)[1:],
        "hydra.sweeper.n_jobs=2",
    ]
    proc = start_sweep(slurm_cluster, args, tmp_path / "sweep.log")
    long_run = wait_for_log_line(sweep, "iteration 2/400", timeout=300)
    killed = job_id(long_run)
    slurm_cluster.run("scancel", killed)
    assert wait_sweep(proc, slurm_cluster, sweep, tmp_path / "sweep.log", 300) == 0, sweep_log(
        tmp_path
    )
    trials = {t.params["trainer.total_iter"]: t for t in shared.load_sweep_study(sweep).trials}
    assert trials[4].state == TrialState.COMPLETE
    assert trials[400].state == TrialState.FAIL
    assert sweep / str(trials[400].number) == long_run
    assert "without a result" in trials[400].user_attrs[shared.FAIL_REASON]
    assert slurm_cluster.wait_final([killed]) == {killed: "CANCELLED"}


def wait_for_log_line(sweep: Path, text: str, timeout: float) -> Path:
    """The job dir whose main.log first shows ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for log in sweep.glob("*/main.log"):
            if text in log.read_text(errors="ignore"):
                return log.parent
        time.sleep(0.2)
    raise AssertionError(f"{text!r} did not appear in a job log of {sweep} within {timeout} s")
