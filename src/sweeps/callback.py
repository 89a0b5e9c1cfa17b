"""The Hydra callback that writes the sweep report after each job and at the end of a multirun
(``hydra.callbacks.sweep_report`` in conf/config.yaml)."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from src.run_dir import JOB_ERROR, write_atomic
from src.sweeps.jobs import one_line
from src.sweeps.report import write_report

log = logging.getLogger(__name__)


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
    write_atomic(job_dir / JOB_ERROR, f"{summary}\n\n{trace}")


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
