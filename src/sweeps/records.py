"""The records of a sweep report: what a job, a trial, a seed group and the whole sweep are, and
the names of the files it reads and writes. Built by src/sweeps/collect.py, shown by tables.py
and html.py."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.run_dir import BEST_CKPT, LAST_CKPT

log = logging.getLogger(__name__)


RESULTS_CSV = "results.csv"
RESULTS_BY_SEED_CSV = "results_by_seed.csv"
REPORT_HTML = "report.html"

CHECKPOINTS = (BEST_CKPT, LAST_CKPT)  # the checkpoints a job row links to

HEADLINE = "F1"  # the validation metric the runner selects on (LaneEvaluator.headline)
TRAIN_LOSS = "train/loss"
SEED_KEY = "seed"
TRIAL_OVERRIDE = "sweep.trial"  # the trial number the project's Optuna sweeper gives a job

COMPLETED, RUNNING, FAILED, PRUNED, NOT_STARTED = (
    "completed",
    "running",
    "failed",
    "pruned",
    "not started",
)
STATUSES = (COMPLETED, RUNNING, FAILED, PRUNED, NOT_STARTED)

# A job dir without a run lock (the seconds between Hydra starting the job and the run taking
# its lock) counts as running while its log or dir changed this recently.
RECENT_S = 120.0

RESULTS_COLUMNS = ["job", "status", "detail", "overrides"]
# Per-job numbers, in this order after the override columns; final_val/<name> for every
# validation metric the job logged, F1 first.
BEST_COLUMNS = [f"best_{HEADLINE}", "best_step", "final_step"]
TRIAL_COLUMNS = ["optuna_trial", "optuna_state", "optuna_value"]


class NotASweepDir(ValueError):
    """The directory holds no multirun: no multirun.yaml, no job dir, no Optuna study."""


@dataclass
class Trial:
    """One Optuna trial as the report shows it."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None
    params: dict[str, Any]
    last_intermediate: float | None = None  # where a pruned trial stopped
    job: str | None = None  # the job dir it ran in, when it could be matched
    # User attributes of the project's sweeper (hydra_plugins/srlane_optuna_sweeper/study.py).
    run_dir: str | None = None  # the job's output dir
    fail_reason: str | None = None
    interrupted: bool = False  # its sweep stopped first: not counted towards n_trials


@dataclass
class Study:
    """The sweep's Optuna study, or why it could not be read."""

    name: str
    storage: str
    direction: str = "maximize"
    trials: list[Trial] = field(default_factory=list)
    importances: dict[str, float] | None = None
    importance_note: str = ""  # why importances are absent, or how they were computed
    error: str = ""  # the study could not be loaded


@dataclass
class Job:
    """One job of the sweep: where it ran, what it was given, how far it got."""

    job: str  # its dir relative to the sweep dir ("3", "lr_0.1/0"), or the job number
    num: int | None
    job_dir: Path | None
    overrides: list[str]
    status: str = NOT_STARTED
    detail: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)  # best_ckpt / last_ckpt: rel path
    train_curve: list[tuple[float, float]] = field(default_factory=list)  # (step, train/loss)
    val_curve: list[tuple[float, float]] = field(default_factory=list)  # (step, val/F1)
    trial: Trial | None = None

    @property
    def params(self) -> dict[str, str]:
        """Override key -> value as Hydra wrote it (``+key`` and ``key`` are one key)."""
        return dict(split_override(o) for o in self.overrides)


@dataclass
class Group:
    """Jobs whose overrides differ only in the seed."""

    label: str
    params: dict[str, str]  # the varying keys other than the seed
    jobs: list[Job]
    stats: dict[str, tuple[float | None, float | None, int]]  # metric -> (mean, std, n)


@dataclass
class SweepReport:
    sweep_dir: Path
    jobs: list[Job]
    groups: list[Group]
    metric_columns: list[str]  # numeric per-job columns, in table order
    varying_keys: list[str]  # override keys whose value differs between jobs
    common_overrides: list[str]  # overrides every job has
    study: Study | None
    sweep_ended: bool
    generated_at: str


def split_override(override: str) -> tuple[str, str]:
    """``key=value`` -> (key, value); ``+key=v`` / ``++key=v`` count as ``key``, ``~key`` has
    the value ``~``."""
    key, sep, value = override.partition("=")
    if key.startswith("~"):
        return key.lstrip("~"), "~" + value if sep else "~"
    return key.lstrip("+"), value
