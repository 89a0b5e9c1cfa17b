"""Sweeps on this machine: --multirun with Hydra's basic launcher and with submitit_local, both
with 2-process DDP jobs. Optuna searches: tests/launch/test_optuna_sweeper.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.launcher_helpers import run_main, tiny_run

pytestmark = pytest.mark.slow


def validation_reports(run: Path) -> dict[str, str]:
    """The validation line of each rank's log in a job dir, by log file name."""
    reports = {}
    for log in sorted(run.glob("*.log")):
        lines = [x for x in log.read_text().splitlines() if "validation at iteration" in x]
        assert len(lines) == 1, log
        reports[log.name] = lines[0].split(" - ", 1)[1]
    return reports


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.parametrize("launcher", ["basic", "local"])
def test_sweep_of_two_jobs_with_two_ddp_ranks_each(
    tiny_root: Path, tmp_path: Path, launcher: str
) -> None:
    sweep = tmp_path / "sweep"
    extra = [] if launcher == "basic" else ["hydra/launcher=local"]
    # A config found only through a search path given on the command line: every rank of a
    # job must compose it (the basic launcher's job starts its rank 1 itself).
    (tmp_path / "more_conf" / "optimizer").mkdir(parents=True)
    (tmp_path / "more_conf" / "optimizer" / "adamw_elsewhere.yaml").write_text(
        "defaults:\n  - adamw\n  - _self_\n"
    )
    run_main(
        [
            "--multirun",
            *extra,
            f"hydra.searchpath=[file://{tmp_path / 'more_conf'}]",
            "optimizer=adamw_elsewhere",
            "optimizer.lr=1e-3,5e-4",
            *tiny_run(tiny_root, total_iter=4),
            "trainer.strategy=ddp",
            "trainer.devices=2",
            f"hydra.sweep.dir={sweep}",
        ],
        timeout=300,  # a rank that cannot compose would leave the other waiting for it
    )
    jobs = job_dirs(sweep)
    assert [p.name for p in jobs] == ["0", "1"]  # nothing written outside the job dirs
    results = []
    for job in jobs:
        reports = validation_reports(job)
        assert set(reports) == {"main.log", "train_ddp_process_1.log"}, job
        assert len(set(reports.values())) == 1, reports  # both ranks report the same metric
        results.append(next(iter(reports.values())))
        saved = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
        assert saved["config"]["trainer"]["devices"] == 2
    assert results[0] != results[1]  # two jobs with different learning rates
