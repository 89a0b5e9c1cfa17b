"""The whole sweep: its job dirs (``collect``), the jobs planned but not started, and the
grouping of jobs that differ only in their seed."""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from hydra_plugins.srlane_optuna_sweeper.study import STUDY_FILE
from src.sweeps.jobs import (
    expected_jobs,
    find_job_dirs,
    read_job,
    read_overrides,
    sweep_hydra_config,
)
from src.sweeps.optuna_study import match_trials, read_study, remaining_trials
from src.sweeps.records import (
    BEST_COLUMNS,
    COMPLETED,
    HEADLINE,
    SEED_KEY,
    TRAIN_LOSS,
    Group,
    Job,
    NotASweepDir,
    Study,
    SweepReport,
)

log = logging.getLogger(__name__)


def collect(sweep_dir: Path, sweep_ended: bool = False, now: float | None = None) -> SweepReport:
    """Read every job of the sweep (and its Optuna study); raises NotASweepDir."""
    sweep_dir = Path(sweep_dir)
    check_sweep_dir(sweep_dir)
    job_dirs = find_job_dirs(sweep_dir)
    now = time.time() if now is None else now
    hydra_node = sweep_hydra_config(sweep_dir, job_dirs)
    study = read_study(sweep_dir)
    trials = match_trials(study, [(d, read_overrides(d)) for d in job_dirs]) if study else {}
    for job_dir, trial in trials.items():
        trial.job = job_dir.relative_to(sweep_dir).as_posix()
    jobs = [read_job(sweep_dir, d, sweep_ended, now, trials.get(d)) for d in job_dirs]
    jobs += not_started(jobs, expected_jobs(hydra_node), study)
    return assemble(sweep_dir, jobs, study, sweep_ended)


SWEEP_MARKERS = ("multirun.yaml", STUDY_FILE)  # basic sweeper; the Optuna sweeper


def check_sweep_dir(sweep_dir: Path) -> None:
    """A sweep dir holds multirun.yaml or optuna_study.json, or (other sweepers) job dirs as
    direct children. Not any dir with jobs somewhere below: multirun/ itself would otherwise
    merge every sweep into one report."""
    if not sweep_dir.is_dir():
        raise NotASweepDir(f"{sweep_dir} is not a directory")
    if any((sweep_dir / m).is_file() for m in SWEEP_MARKERS):
        return
    if any((c / ".hydra" / "overrides.yaml").is_file() for c in _subdirs(sweep_dir)):
        return
    below = sorted(d for c in _subdirs(sweep_dir) for d in (c, *_subdirs(c)) if _is_marked(d))
    hint = f"; sweep dirs below it: {', '.join(map(str, below[:3]))}" if below else ""
    raise NotASweepDir(
        f"{sweep_dir} is not a sweep dir: it holds no multirun.yaml, no {STUDY_FILE} and "
        "no job dir (a dir with .hydra/overrides.yaml). Pass the dir of one --multirun "
        f"(hydra.sweep.dir), e.g. multirun/2026-11-26_09-11-42{hint}"
    )


def _subdirs(path: Path) -> list[Path]:
    try:
        return [c for c in path.iterdir() if c.is_dir() and not c.name.startswith(".")]
    except OSError:
        return []


def _is_marked(path: Path) -> bool:
    return any((path / m).is_file() for m in SWEEP_MARKERS)


def not_started(
    jobs: list[Job], expected: list[list[str]] | int | None, study: Study | None
) -> list[Job]:
    """Rows for the jobs the sweep has not started (yet, or ever: a sweep stopped early)."""
    if expected is None:
        return []
    nums = {j.num for j in jobs if j.num is not None}
    if isinstance(expected, int):  # Optuna: the next job numbers, params not drawn yet
        first = max(nums, default=-1) + 1
        missing = range(first, first + remaining_trials(expected, study, jobs))
        return [Job(job=str(n), num=n, job_dir=None, overrides=[]) for n in missing]
    seen = {tuple(j.overrides) for j in jobs}
    return [
        Job(job=str(n), num=n, job_dir=None, overrides=list(o), detail="no job dir")
        for n, o in enumerate(expected)
        if n not in nums and tuple(o) not in seen
    ]


def assemble(
    sweep_dir: Path, jobs: list[Job], study: Study | None, sweep_ended: bool
) -> SweepReport:
    keys = _ordered_keys(j.params for j in jobs)
    values = {k: {j.params.get(k) for j in jobs if j.job_dir is not None} for k in keys}
    varying = [k for k in keys if len(values[k]) > 1]
    started = [j for j in jobs if j.job_dir is not None]
    common = [o for o in started[0].overrides if all(o in j.overrides for j in started)]
    return SweepReport(
        sweep_dir=sweep_dir,
        jobs=jobs,
        groups=group_by_seed(jobs, varying),
        metric_columns=metric_columns(jobs),
        varying_keys=varying,
        common_overrides=common if started else [],
        study=study,
        sweep_ended=sweep_ended,
        generated_at=time.strftime("%Y-%m-%d %H:%M:%S"),
    )


def _ordered_keys(dicts: Iterable[dict[str, str]]) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


def metric_columns(jobs: Sequence[Job]) -> list[str]:
    """The numeric per-job columns: best, steps, every final validation metric (F1 first),
    the last training loss, the wall time."""
    finals = sorted(
        {k for j in jobs for k in j.metrics if k.startswith("final_val/")},
        key=lambda k: (k != f"final_val/{HEADLINE}", k),
    )
    return [*BEST_COLUMNS, *finals, f"final_{TRAIN_LOSS}", "wall_time_s"]


def job_numbers(job: Job) -> dict[str, float]:
    numbers = dict(job.metrics)
    if job.wall_time_s is not None:
        numbers["wall_time_s"] = job.wall_time_s
    return numbers


def group_by_seed(jobs: Sequence[Job], varying: Sequence[str]) -> list[Group]:
    """Jobs with the same overrides except ``seed``, in order of first appearance. Each metric
    is aggregated over the group's completed jobs: mean, sample std (None for n < 2), n."""
    groups: dict[tuple[str, ...], list[Job]] = {}
    for job in jobs:
        key = tuple(sorted(f"{k}={v}" for k, v in job.params.items() if k != SEED_KEY))
        groups.setdefault(key, []).append(job)
    columns = metric_columns(jobs)
    result = []
    for members in groups.values():
        params = {k: members[0].params.get(k, "") for k in varying if k != SEED_KEY}
        done = [job_numbers(j) for j in members if j.status == COMPLETED]
        stats = {c: mean_std([d[c] for d in done if c in d]) for c in columns}
        label = " ".join(f"{k}={v}" for k, v in params.items()) or "(all jobs)"
        result.append(Group(label=label, params=params, jobs=members, stats=stats))
    return result


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None, int]:
    """(mean, sample standard deviation with ddof=1, n); std is None below two values."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None, None, 0
    std = statistics.stdev(finite) if len(finite) > 1 else None
    return statistics.fmean(finite), std, len(finite)
