"""Sweep report: every job of a multirun in one table, seeds aggregated, and a static HTML page.

Written into the sweep dir after each job of a multirun and at its end
(``SweepReportCallback``, configured under ``hydra.callbacks`` in conf/config.yaml), and on
demand (``python scripts/sweep_report.py multirun/<time>``):

- ``results.csv``: one row per job (``RESULTS_COLUMNS`` then the overridden keys, the metrics,
  the checkpoints);
- ``results_by_seed.csv``: jobs whose overrides differ only in ``seed``, as mean, sample std
  and n of each metric over their completed jobs;
- ``report.html``: both tables (sortable), the training curves, and the Optuna study when the
  sweep has one (src/sweeps/html.py).

Everything is read from what the jobs write (a job dir is any dir under the sweep dir holding
``.hydra/overrides.yaml``): ``metrics.json`` (written once training has finished),
``metrics.csv``, ``main.log``, ``checkpoints/``, the run lock ``.lock`` and ``job_error.txt``
(the exception of a failed job, written by the callback: Hydra sends it to stderr only). Jobs
that never started come from the sweep's own record (``multirun.yaml`` of Hydra's basic
sweeper; ``n_trials`` of an Optuna sweep). See ``job_status`` for how a status is decided.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import statistics
import struct
import sys
import time
import traceback
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

RESULTS_CSV = "results.csv"
RESULTS_BY_SEED_CSV = "results_by_seed.csv"
REPORT_HTML = "report.html"
# The exception of a failed job (SweepReportCallback.on_job_end): one summary line, then the
# traceback.
JOB_ERROR = "job_error.txt"
OPTUNA_STUDY_JSON = "optuna_study.json"  # {"storage", "study_name", "direction"}

# The files of a run dir (src/inference/evaluate.py, src/engine/loggers.py, src/engine/checkpoint.py, src/engine/run_lock.py).
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
MAIN_LOG = "main.log"
LOCK_FILE = ".lock"
CHECKPOINTS = ("best.ckpt", "last.ckpt")

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


# ---------------------------------------------------------------------------------- records
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


# ------------------------------------------------------------------------------- overrides
def split_override(override: str) -> tuple[str, str]:
    """``key=value`` -> (key, value); ``+key=v`` / ``++key=v`` count as ``key``, ``~key`` has
    the value ``~``."""
    key, sep, value = override.partition("=")
    if key.startswith("~"):
        return key.lstrip("~"), "~" + value if sep else "~"
    return key.lstrip("+"), value


def read_overrides(job_dir: Path) -> list[str]:
    data = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    return [str(o) for o in data]


def _natural_key(text: str) -> list[Any]:
    """Sort key of a job dir: numbers inside names compare as numbers (job 10 after job 9)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text)]


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Every dir under the sweep dir holding ``.hydra/overrides.yaml`` (any subdir layout).
    Hidden dirs (.submitit) are skipped, and job dirs are not searched further: they hold
    checkpoints and validation images, not other jobs."""
    found = []
    for root, dirs, _ in os.walk(sweep_dir):
        here = Path(root)
        if here != sweep_dir and (here / ".hydra" / "overrides.yaml").is_file():
            found.append(here)
            dirs.clear()
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return sorted(found, key=lambda p: _natural_key(p.relative_to(sweep_dir).as_posix()))


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def sweep_hydra_config(sweep_dir: Path, job_dirs: Sequence[Path]) -> dict[str, Any]:
    """The sweep's ``hydra`` node: multirun.yaml (basic sweeper) or a job's .hydra/hydra.yaml
    (other sweepers write no multirun.yaml)."""
    if (sweep_dir / "multirun.yaml").is_file():
        return _load_yaml(sweep_dir / "multirun.yaml").get("hydra") or {}
    for job_dir in job_dirs:
        hydra_node = _load_yaml(job_dir / ".hydra" / "hydra.yaml").get("hydra")
        if hydra_node:
            return hydra_node
    return {}


def expected_jobs(hydra_node: dict[str, Any]) -> list[list[str]] | int | None:
    """The jobs the sweep will run: the override lists of a basic sweep (job num = index), the
    number of trials of an Optuna sweep, or None when unknown."""
    sweeper = hydra_node.get("sweeper") or {}
    target = str(sweeper.get("_target_", ""))
    if target.endswith("BasicSweeper"):
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = sweeper.get("params") or {}
        arguments = [f"{k}={v}" for k, v in params.items()]
        arguments += list((hydra_node.get("overrides") or {}).get("task") or [])
        try:
            parsed = OverridesParser.create().parse_overrides(arguments)
            (batch,) = BasicSweeper.split_arguments(parsed, max_batch_size=None)
        except Exception as err:  # a sweep syntax this reader does not know: no expectations
            log.debug("cannot expand the sweep's overrides: %s", err)
            return None
        return batch
    if "optuna" in target.lower() and isinstance(sweeper.get("n_trials"), int):
        return int(sweeper["n_trials"])
    return None


# --------------------------------------------------------------------------------- run files
@dataclass
class LockState:
    held: bool | None  # None: the OS could not be asked (not Linux, unsupported filesystem)
    holder: dict[str, Any]  # pid, host, since; left in the file only by a process that died


def read_lock(job_dir: Path) -> LockState | None:
    """The run lock of src/engine/run_lock.py, or None when the job never took it. Asked with
    F_GETLK, which only tests: taking the lock, even briefly, could refuse a run starting at
    that moment."""
    path = job_dir / LOCK_FILE
    if not path.is_file():
        return None
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    return LockState(_lock_held(path), holder if isinstance(holder, dict) else {})


def _lock_held(path: Path) -> bool | None:
    if not sys.platform.startswith("linux"):
        return None  # struct flock's layout below is Linux's
    import fcntl

    layout = "hhqqi4x"  # l_type, l_whence, l_start, l_len, l_pid (+ padding)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        query = struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        return struct.unpack(layout, answer)[0] != fcntl.F_UNLCK
    except (OSError, struct.error):
        return None
    finally:
        os.close(fd)


def read_metrics_csv(job_dir: Path) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """(training rows, validation rows) of the job's metrics.csv, values as floats."""
    path = job_dir / METRICS_CSV
    train: list[dict[str, float]] = []
    val: list[dict[str, float]] = []
    if not path.is_file():
        return train, val
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            if None in raw.values():  # a row cut short by a crash mid-append
                continue
            row = {k: float(v) for k, v in raw.items() if v not in ("", None)}
            (val if "val_step" in row else train).append(row)
    return train, val


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


LOG_RECORD = re.compile(r"^\[[^\]]*\]\[[^\]]*\]\[(\w+)\] - (.*)$")


def log_findings(text: str) -> tuple[str | None, str | None]:
    """(the stop reason, the last error) in a job's main.log. An error is the last ERROR or
    CRITICAL record, with the exception that ends its traceback."""
    stop = error = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = LOG_RECORD.match(line)
        if not match:
            continue
        level, message = match.groups()
        if message.startswith("training stopped at iteration"):
            stop = message.split(": ", 1)[-1]
        if level in ("ERROR", "CRITICAL"):
            exception = _exception_after(lines, i + 1)
            error = f"{message}: {exception}" if exception else message
    return stop, error


def _exception_after(lines: list[str], start: int) -> str | None:
    """The exception (type and message, on one line) ending the traceback printed after a log
    record, if any: from the traceback's last unindented line to the next record."""
    end = next((i for i in range(start, len(lines)) if LOG_RECORD.match(lines[i])), len(lines))
    block = lines[start:end]
    heads = [
        i
        for i, line in enumerate(block)
        if line.strip()
        and not line.startswith((" ", "\t", "Traceback", "During handling", "The above"))
    ]
    if not heads:
        return None
    return one_line("\n".join(block[heads[-1] :]))


def one_line(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------------------- one job
def read_job(
    sweep_dir: Path, job_dir: Path, sweep_ended: bool, now: float, trial: Trial | None = None
) -> Job:
    """Everything the report shows about one job dir."""
    hydra_node = _load_yaml(job_dir / ".hydra" / "hydra.yaml").get("hydra") or {}
    num = (hydra_node.get("job") or {}).get("num")
    job = Job(
        job=job_dir.relative_to(sweep_dir).as_posix(),
        num=num if isinstance(num, int) else None,
        job_dir=job_dir,
        overrides=read_overrides(job_dir),
        trial=trial,
    )
    summary = _read_json(job_dir / METRICS_JSON)
    train, val = read_metrics_csv(job_dir)
    job.metrics = job_metrics(summary, train, val)
    job.train_curve = [(r["step"], r[TRAIN_LOSS]) for r in train if TRAIN_LOSS in r]
    job.val_curve = [(r["step"], r[f"val/{HEADLINE}"]) for r in val if f"val/{HEADLINE}" in r]
    for name in CHECKPOINTS:
        path = job_dir / "checkpoints" / name
        if path.is_file():
            job.checkpoints[name.replace(".", "_")] = path.relative_to(sweep_dir).as_posix()
    log_path = job_dir / MAIN_LOG
    log_text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    job.status, job.detail = job_status(job_dir, summary, log_text, sweep_ended, now, trial)
    job.wall_time_s = wall_time(job_dir, job.status == RUNNING, now)
    return job


def job_metrics(
    summary: dict[str, Any], train: list[dict[str, float]], val: list[dict[str, float]]
) -> dict[str, float]:
    """Best metric and step, final step, the last validation, the last training loss. From
    metrics.json once training has finished, else from the rows logged so far."""
    metrics: dict[str, float] = {}
    headline = f"val/{HEADLINE}"
    scored = [r for r in val if headline in r]
    if "best_metric" in summary and summary.get("best_step", -1) >= 0:
        metrics[f"best_{HEADLINE}"] = float(summary["best_metric"])
        metrics["best_step"] = float(summary["best_step"])
    elif scored:
        best = max(scored, key=lambda r: r[headline])  # first of equals, as the runner keeps
        metrics[f"best_{HEADLINE}"], metrics["best_step"] = best[headline], best["step"]
    steps = [r["step"] for r in train + val]
    if "final_step" in summary:
        metrics["final_step"] = float(summary["final_step"])
    elif steps:
        metrics["final_step"] = max(steps)
    final_val = summary.get("final_validation") or (val[-1] if val else {})
    for key, value in final_val.items():
        if key.startswith("val/") and isinstance(value, (int, float)):
            metrics[f"final_{key}"] = float(value)
    losses = [r[TRAIN_LOSS] for r in train if TRAIN_LOSS in r]
    if losses:
        metrics[f"final_{TRAIN_LOSS}"] = losses[-1]
    return metrics


def job_status(
    job_dir: Path,
    summary: dict[str, Any],
    log_text: str,
    sweep_ended: bool,
    now: float,
    trial: Trial | None = None,
) -> tuple[str, str]:
    """(status, detail) of a job dir, first rule that applies:

    1. running: its run lock is held (the run holds it for its lifetime, src/engine/run_lock.py);
    2. pruned: its Optuna trial is PRUNED, or its stop reason (main.log) mentions pruning;
    3. completed: metrics.json holds the training summary (or a validate / test result);
       the detail is the stop reason (early stopping) if any;
    4. failed: the exception of job_error.txt or of the log's last ERROR record, else the
       fail_reason the sweeper recorded on its FAIL trial (e.g. a SLURM job that was lost);
    5. failed: a lock left with its holder's pid (the process died: killed, out of memory);
    6. running: no lock taken yet, the sweep not ended, and the log or dir changed within
       RECENT_S (a job starting up);
    7. failed: no result, and nothing runs in the dir.
    """
    lock = read_lock(job_dir)
    if lock is not None and lock.held:
        holder = lock.holder
        return RUNNING, f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}" + (
            f" since {holder['since']}" if holder.get("since") else ""
        )
    stop, error = log_findings(log_text)
    if (trial is not None and trial.state == "PRUNED") or (stop and "prun" in stop.lower()):
        return PRUNED, stop or "pruned by the Optuna pruner"
    if "final_step" in summary:
        return COMPLETED, stop or ""
    for mode in ("test", "validate"):
        if isinstance(summary.get(mode), dict):
            f1 = summary[mode].get(HEADLINE)
            return COMPLETED, f"mode={mode}" + (f": {HEADLINE}={f1:.4f}" if f1 is not None else "")
    error_file = job_dir / JOB_ERROR
    if error_file.is_file():
        return FAILED, error_file.read_text(errors="replace").partition("\n")[0]
    if error:
        return FAILED, error
    if trial is not None and trial.state == "FAIL" and trial.fail_reason:
        return FAILED, one_line(trial.fail_reason)
    if lock is not None and lock.holder.get("pid"):
        holder = lock.holder
        return FAILED, (
            f"no result; its process (pid {holder['pid']} on {holder.get('host', '?')}) ended "
            "without releasing the run lock (killed?)"
        )
    if lock is None and not sweep_ended and now - _last_change(job_dir) < RECENT_S:
        return RUNNING, "starting (no run lock yet)"
    reason = "the sweep has ended" if sweep_ended else "no process holds its run lock"
    return FAILED, f"no result and no error logged; {reason}"


def _last_change(job_dir: Path) -> float:
    paths = [job_dir, job_dir / MAIN_LOG, job_dir / METRICS_CSV, job_dir / ".hydra"]
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def wall_time(job_dir: Path, running: bool, now: float) -> float | None:
    """Seconds from the job's start (Hydra writes .hydra/overrides.yaml first) to its last
    written result or log line; until now for a running job. A job run again in the same dir
    (a resume) counts from its last start."""
    start_file = job_dir / ".hydra" / "overrides.yaml"
    if not start_file.is_file():
        return None
    start = start_file.stat().st_mtime
    if running:
        return max(0.0, now - start)
    ends = [job_dir / n for n in (METRICS_JSON, METRICS_CSV, MAIN_LOG, JOB_ERROR)]
    end = max((p.stat().st_mtime for p in ends if p.is_file()), default=start)
    return max(0.0, end - start)


# ------------------------------------------------------------------------------- the sweep
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


SWEEP_MARKERS = ("multirun.yaml", OPTUNA_STUDY_JSON)  # basic sweeper; the Optuna sweeper


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
        f"{sweep_dir} is not a sweep dir: it holds no multirun.yaml, no {OPTUNA_STUDY_JSON} and "
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


# ---------------------------------------------------------------------------------- optuna
def read_study(sweep_dir: Path) -> Study | None:
    """The study named by <sweep dir>/optuna_study.json, None without that file. A study that
    cannot be loaded comes back with ``error`` set: the rest of the report still gets written."""
    spec_path = sweep_dir / OPTUNA_STUDY_JSON
    if not spec_path.is_file():
        return None
    spec = _read_json(spec_path)
    study = Study(
        name=str(spec.get("study_name", "")),
        storage=str(spec.get("storage", "")),
        direction=str(spec.get("direction", "maximize")),
    )
    try:
        import optuna

        loaded = optuna.load_study(
            study_name=study.name, storage=open_storage(sweep_dir, study.storage)
        )
        if len(loaded.directions) != 1:
            raise ValueError("a multi-objective study: the report shows single-objective ones")
        study.direction = loaded.direction.name.lower()
        study.trials = [_trial(t) for t in loaded.trials]
    except Exception as err:
        study.error = f"{type(err).__name__}: {err}"
        return study
    study.importances, study.importance_note = param_importances(loaded)
    return study


def open_storage(sweep_dir: Path, storage: str) -> Any:
    """An Optuna storage from a URL (``sqlite:///x.db``, ``postgresql://...``) or the path of
    a journal file (JournalStorage with JournalFileBackend, Optuna >= 4). Relative paths are
    tried from the working dir, then from the sweep dir. A missing file is an error: opening it
    would create an empty study store."""
    if not storage:
        raise ValueError(f"{OPTUNA_STUDY_JSON} names no storage")
    sqlite = re.match(r"sqlite:///(.+)$", storage)
    if sqlite:
        path = _existing(sweep_dir, sqlite.group(1))
        return f"sqlite:///{path}"
    if "://" in storage:
        return storage
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(_existing(sweep_dir, storage))))


def _existing(sweep_dir: Path, name: str) -> Path:
    path = Path(name)
    for candidate in (path, sweep_dir / path) if not path.is_absolute() else (path,):
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"the Optuna storage file {name} does not exist")


def _trial(frozen: Any) -> Trial:
    values = frozen.values or []
    steps = frozen.intermediate_values
    attrs = frozen.user_attrs
    return Trial(
        number=frozen.number,
        state=frozen.state.name,
        value=float(values[0]) if len(values) == 1 else None,
        params=dict(frozen.params),
        last_intermediate=float(steps[max(steps)]) if steps else None,
        run_dir=str(attrs["run_dir"]) if attrs.get("run_dir") else None,
        fail_reason=str(attrs["fail_reason"]) if attrs.get("fail_reason") else None,
        interrupted=bool(attrs.get("interrupted")),
    )


def param_importances(study: Any) -> tuple[dict[str, float] | None, str]:
    """(importance per parameter, how it was computed), or (None, why not)."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return None, (
            "parameter importances need at least 2 completed trials; this study has "
            f"{len(complete)}"
        )
    # PED-ANOVA named explicitly: Optuna 5's default (4's was fANOVA, which needs
    # scikit-learn), deterministic, so every rewrite of the report shows the same numbers.
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as err:
        return None, f"parameter importances could not be computed: {type(err).__name__}: {err}"
    if not importances:
        return None, "no parameter took more than one value in the completed trials"
    note = f"PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator) over {len(complete)} "
    note += "completed trials" + "".join(f"; {w.message}" for w in caught)
    return {k: float(v) for k, v in importances.items()}, note


def match_trials(study: Study, jobs: Sequence[tuple[Path, list[str]]]) -> dict[Path, Trial]:
    """Job dir -> the trial it ran. The project's sweeper passes ``sweep.trial=<number>`` and
    the trial records its ``run_dir``; other sweepers are matched on the params (equal to the
    job's overrides), from the ends of both lists: a study kept between sweeps holds earlier
    sweeps' trials first."""
    by_number = {t.number: t for t in study.trials}
    by_run_dir = {os.path.realpath(t.run_dir): t for t in study.trials if t.run_dir}
    free = [t for t in reversed(study.trials) if t.params]
    matched: dict[Path, Trial] = {}
    for job_dir, overrides in reversed(jobs):
        params = dict(split_override(o) for o in overrides)
        trial = by_number.get(_int(params.get(TRIAL_OVERRIDE)))
        trial = trial or by_run_dir.get(os.path.realpath(job_dir))
        if trial is None:
            trial = next((t for t in free if _params_match(t.params, params)), None)
        if trial is not None:
            matched[job_dir] = trial
            if trial in free:
                free.remove(trial)
    return matched


def _params_match(trial_params: dict[str, Any], overrides: dict[str, str]) -> bool:
    return all(k in overrides and _same_value(v, overrides[k]) for k, v in trial_params.items())


def _same_value(param: Any, override: str) -> bool:
    try:
        return math.isclose(float(param), float(override), rel_tol=1e-9, abs_tol=0.0)
    except (TypeError, ValueError):
        return str(param) == override.strip("'\"")


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def remaining_trials(n_trials: int, study: Study | None, jobs: Sequence[Job]) -> int:
    """Trials an Optuna sweep has still to start: n_trials counts the study's finished trials
    that were not interrupted (the project's sweeper; a rerun of the study goes on counting),
    less those in flight. Without a readable study: n_trials less this sweep's jobs."""
    if study is None or study.error:
        return max(0, n_trials - len(jobs))
    finished = sum(
        t.state in ("COMPLETE", "PRUNED", "FAIL") and not t.interrupted for t in study.trials
    )
    in_flight = sum(t.state in ("RUNNING", "WAITING") for t in study.trials)
    return max(0, n_trials - finished - in_flight)


# ---------------------------------------------------------------------------------- tables
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def results_rows(report: SweepReport) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of results.csv."""
    keys = _ordered_keys(j.params for j in report.jobs)
    columns = [*RESULTS_COLUMNS, *keys, *report.metric_columns, "best_ckpt", "last_ckpt"]
    if report.study is not None:
        columns += TRIAL_COLUMNS
    rows = []
    for job in report.jobs:
        row: dict[str, Any] = {
            "job": job.job,
            "status": job.status,
            "detail": job.detail,
            "overrides": " ".join(job.overrides),
            **job.params,
            **job_numbers(job),
            **job.checkpoints,
        }
        if job.trial is not None:
            row.update(
                optuna_trial=job.trial.number,
                optuna_state=job.trial.state,
                optuna_value=job.trial.value,
            )
        rows.append({c: _cell(row.get(c)) for c in columns})
    return columns, rows


def groups_rows(report: SweepReport) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of results_by_seed.csv: per metric <metric>_mean, _std, _n."""
    keys = [k for k in report.varying_keys if k != SEED_KEY]
    stats = [f"{m}_{s}" for m in report.metric_columns for s in ("mean", "std", "n")]
    columns = ["group", *keys, "jobs", "seeds", "statuses", *stats]
    rows = []
    for group in report.groups:
        row: dict[str, Any] = {
            "group": group.label,
            **group.params,
            "jobs": " ".join(j.job for j in group.jobs),
            "seeds": " ".join(j.params.get(SEED_KEY, "") for j in group.jobs).strip(),
            "statuses": status_counts(group.jobs),
        }
        for metric, (mean, std, n) in group.stats.items():
            row.update({f"{metric}_mean": mean, f"{metric}_std": std, f"{metric}_n": n})
        rows.append({c: _cell(row.get(c)) for c in columns})
    return columns, rows


def status_counts(jobs: Sequence[Job]) -> str:
    counts = {s: sum(j.status == s for j in jobs) for s in STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def _write_atomic(path: Path, text: str) -> None:
    """Readers never see half a file; two writers (jobs failing at once) do not collide."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def csv_text(columns: list[str], rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_report(sweep_dir: str | Path, sweep_ended: bool = False) -> list[Path]:
    """Write results.csv, results_by_seed.csv and report.html into the sweep dir; returns their
    paths. Raises NotASweepDir."""
    from src.sweeps.html import render_html

    report = collect(Path(sweep_dir), sweep_ended=sweep_ended)
    written = []
    for name, table in ((RESULTS_CSV, results_rows), (RESULTS_BY_SEED_CSV, groups_rows)):
        _write_atomic(report.sweep_dir / name, csv_text(*table(report)))
        written.append(report.sweep_dir / name)
    _write_atomic(report.sweep_dir / REPORT_HTML, render_html(report))
    written.append(report.sweep_dir / REPORT_HTML)
    return written


# -------------------------------------------------------------------------- hydra callback
class SweepReportCallback(Callback):
    """Writes the sweep report after each job and when the multirun ends: the report follows a
    long sweep, and exists when a failure ends the sweep (Hydra's basic sweeper raises a job's
    exception after its batch and never calls on_multirun_end). A failed job first records its
    exception in job_error.txt (Hydra prints it to stderr only). A report failure is logged,
    never raised: the sweep must not depend on it."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        _report_safely(Path(str(config.hydra.sweep.dir)), sweep_ended=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        from src.launch.processes import process_rank

        mode = config.hydra.get("mode")
        # Single runs have no sweep; the other ranks of a job (submitit runs the job once per
        # rank) leave the report to rank 0.
        if getattr(mode, "name", mode) != "MULTIRUN" or process_rank() != 0:
            return
        try:
            job_dir = Path(str(config.hydra.runtime.output_dir))
            if job_return.status == JobStatus.FAILED:
                record_failure(job_dir, job_return._return_value)  # return_value re-raises
            sweep_dir = _sweep_dir_of(job_dir, str(config.hydra.sweep.subdir))
        except Exception as err:
            log.warning("could not record the job for the sweep report: %s", err)
            return
        _report_safely(sweep_dir, sweep_ended=False)


def record_failure(job_dir: Path, error: BaseException) -> None:
    """<job dir>/job_error.txt: the exception on one line, then its traceback."""
    summary = one_line("".join(traceback.format_exception_only(type(error), error)))
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    _write_atomic(job_dir / JOB_ERROR, f"{summary}\n\n{trace}")


def _sweep_dir_of(job_dir: Path, subdir: str) -> Path:
    """The job dir is <sweep dir>/<subdir>, as this job resolved it (a job run elsewhere, e.g.
    by submitit, may resolve ${now:} in hydra.sweep.dir differently)."""
    depth = len(Path(subdir).parts)
    return job_dir.parents[depth - 1] if depth else job_dir


def _report_safely(sweep_dir: Path, sweep_ended: bool) -> None:
    try:
        paths = write_report(sweep_dir, sweep_ended=sweep_ended)
    except Exception as err:
        log.warning("sweep report not written for %s: %s: %s", sweep_dir, type(err).__name__, err)
        return
    log.info("sweep report: %s", paths[-1])
