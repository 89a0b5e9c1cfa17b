"""results.csv and results_by_seed.csv: the rows of the job and seed-group tables."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from typing import Any

from src.sweeps.collect import _ordered_keys, job_numbers
from src.sweeps.records import RESULTS_COLUMNS, SEED_KEY, STATUSES, TRIAL_COLUMNS, Job, SweepReport

log = logging.getLogger(__name__)


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


def csv_text(columns: list[str], rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
