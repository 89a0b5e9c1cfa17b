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

import logging
from pathlib import Path

from src.run_dir import write_atomic
from src.sweeps.collect import collect
from src.sweeps.html import render_html
from src.sweeps.records import REPORT_HTML, RESULTS_BY_SEED_CSV, RESULTS_CSV
from src.sweeps.tables import csv_text, groups_rows, results_rows

log = logging.getLogger(__name__)


def write_report(sweep_dir: str | Path, sweep_ended: bool = False) -> list[Path]:
    """Write results.csv, results_by_seed.csv and report.html into the sweep dir; returns their
    paths. Raises NotASweepDir."""
    report = collect(Path(sweep_dir), sweep_ended=sweep_ended)
    written = []
    for name, table in ((RESULTS_CSV, results_rows), (RESULTS_BY_SEED_CSV, groups_rows)):
        write_atomic(report.sweep_dir / name, csv_text(*table(report)))
        written.append(report.sweep_dir / name)
    write_atomic(report.sweep_dir / REPORT_HTML, render_html(report))
    written.append(report.sweep_dir / REPORT_HTML)
    return written
