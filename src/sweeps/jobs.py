"""One job dir of a sweep, read from what the job wrote (src/run_dir.py names the files):
its overrides, run lock, metrics.csv / metrics.json, log, and from those its status
(``job_status``), metrics and wall time."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from src.metrics.tusimple import result_note
from src.run_dir import CHECKPOINT_DIR, JOB_ERROR, LOCK_FILE, MAIN_LOG, METRICS_CSV, METRICS_JSON
from src.sweeps.records import (
    CHECKPOINTS,
    COMPLETED,
    FAILED,
    HEADLINE,
    PRUNED,
    RECENT_S,
    RUNNING,
    TRAIN_LOSS,
    Job,
    Trial,
)

log = logging.getLogger(__name__)


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


def read_json(path: Path) -> dict[str, Any]:
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
    summary = read_json(job_dir / METRICS_JSON)
    train, val = read_metrics_csv(job_dir)
    job.metrics = job_metrics(summary, train, val)
    job.train_curve = [(r["step"], r[TRAIN_LOSS]) for r in train if TRAIN_LOSS in r]
    job.val_curve = [(r["step"], r[f"val/{HEADLINE}"]) for r in val if f"val/{HEADLINE}" in r]
    for name in CHECKPOINTS:
        path = job_dir / CHECKPOINT_DIR / name
        if path.is_file():
            job.checkpoints[name.replace(".", "_")] = path.relative_to(sweep_dir).as_posix()
    log_path = job_dir / MAIN_LOG
    log_text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    job.status, job.detail = job_status(job_dir, summary, log_text, sweep_ended, now, trial)
    job.detail = "; ".join(filter(None, [job.detail, *result_notes(summary, val, job.metrics)]))
    job.wall_time_s = wall_time(job_dir, job.status == RUNNING, now)
    return job


def result_notes(
    summary: dict[str, Any], val: list[dict[str, float]], metrics: dict[str, float]
) -> list[str]:
    """The best and the last validation, validate and test results that are TuSimple scores
    of a model predicting no lane (F1 0.667, which would read as a working model), each with
    why (src/metrics/tusimple.py ``no_lane_note``); from the numbers, so older runs and running
    jobs are marked too."""
    found: dict[str, str] = {}
    best_step = metrics.get("best_step")
    best = next((r for r in val if best_step is not None and r.get("step") == best_step), None)
    note = result_note(best, "val/") if best else summary.get("best_note")
    if note:
        found[f"best (iteration {best_step:g})"] = note
    final = summary.get("final_validation") or (val[-1] if val else None)
    if final and final.get("step") != best_step and (note := result_note(final, "val/")):
        found["final validation"] = note
    for mode in ("validate", "test"):
        if isinstance(summary.get(mode), dict) and (note := result_note(summary[mode])):
            found[f"mode={mode}"] = note
    return [f"{where}: {note}" for where, note in found.items()]


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
