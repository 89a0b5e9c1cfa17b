"""Sweeps on this machine: --multirun with Hydra's basic launcher and with submitit_local, both
with 2-process DDP jobs, and Optuna searches (a failed trial does not end the study)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

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
    run_main(
        [
            "--multirun",
            *extra,
            "optimizer.lr=1e-3,5e-4",
            *tiny_run(tiny_root, total_iter=4),
            "trainer.strategy=ddp",
            "trainer.devices=2",
            f"hydra.sweep.dir={sweep}",
        ]
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


def test_optuna_search_runs_three_trials(tiny_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    run_main(
        [
            "--multirun",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=3",
            *tiny_run(tiny_root, total_iter=2),
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert len(job_dirs(sweep)) == 3
    result = OmegaConf.load(sweep / "optimization_results.yaml")
    assert 0.0 <= result.best_value <= 1.0
    # scheduler.warmup_iters, also searched, is fixed by the tiny schedule's override
    assert set(result.best_params) == {"optimizer.lr", "optimizer.weight_decay"}
    lrs = {OmegaConf.load(job / "config.yaml").optimizer.lr for job in job_dirs(sweep)}
    assert len(lrs) == 3


def test_a_failed_trial_does_not_end_the_study(tiny_root: Path, tmp_path: Path) -> None:
    """A grid over 2 x 2 settings, 3 trials: at least one asks for model.backbone=resnet101,
    which the config check refuses; the study reports -1 for it and goes on."""
    search = tmp_path / "conf" / "hparams_search"
    search.mkdir(parents=True)
    (search / "grid_with_failure.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /hydra/sweeper: optuna\n"
        "  - override /hydra/sweeper/sampler: grid\n"
        "failed_trial_value: -1.0\n"
        "hydra:\n  sweeper:\n    direction: maximize\n    n_trials: 3\n"
        "    params:\n      model.backbone: choice(resnet18, resnet101)\n"
        "      optimizer.lr: choice(0.001, 0.0005)\n"
    )
    sweep = tmp_path / "optuna"
    result = run_main(
        [
            "--multirun",
            f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
            "hparams_search=grid_with_failure",
            *tiny_run(tiny_root),
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert "this trial failed; reporting -1.0" in result.stdout + result.stderr
    trials = [OmegaConf.load(job / ".hydra" / "overrides.yaml") for job in job_dirs(sweep)]
    assert len(trials) == 3
    assert any("model.backbone=resnet101" in t for t in trials)
    assert any("model.backbone=resnet18" in t for t in trials)
    assert OmegaConf.load(sweep / "optimization_results.yaml").best_value >= 0.0
