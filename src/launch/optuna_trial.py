"""The job's side of an Optuna search (``--multirun hparams_search=optuna``).

The sweeper (hydra_plugins/srlane_optuna_sweeper) gives each job its trial through the config
(``sweep.storage``, ``sweep.study_name``, ``sweep.trial``). The study lives in a storage every
job can reach (a journal file on a shared file system, or a database), so pruning works the same
whether the job runs in the sweeper's process, as a local process or as a SLURM job:

- ``OptunaPruning`` (added to the callbacks when ``sweep.trial`` is set): after each validation
  rank 0 reports the val F1 to the trial at the iteration step and asks the study's pruner; all
  ranks stop together when it says so (the run saves its checkpoint as for any stop).
- ``run_trial``: records on the trial the job's run dir and its result or failure, for the
  sweeper to read when its launcher lost the job's return value (a job killed on SLURM fails
  the launcher's call).

Only rank 0 touches the storage. A storage error never fails the training: it is logged, and
the sweeper decides the trial's state from what it has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from src.launch.processes import process_rank

log = logging.getLogger(__name__)


class TrialLink:
    """This job's trial in the sweep's study, opened from the storage both sides share."""

    def __init__(self, storage: str, study_name: str, number: int) -> None:
        import optuna

        from hydra_plugins.srlane_optuna_sweeper import study as shared

        backend = shared.open_storage(storage)
        study_id = backend.get_study_id_from_name(study_name)
        pruner = shared.make_pruner(backend.get_study_user_attrs(study_id).get(shared.PRUNER))
        # The sampler is never used here (the sweeper samples); RandomSampler costs nothing.
        study = optuna.load_study(
            study_name=study_name,
            storage=backend,
            sampler=optuna.samplers.RandomSampler(),
            pruner=pruner,
        )
        trial_id = backend.get_trial_id_from_study_id_trial_number(study_id, number)
        self.number = number
        self.trial = optuna.trial.Trial(study, trial_id)

    def set(self, key: str, value: Any) -> None:
        self.trial.set_user_attr(key, value)

    def report(self, value: float, step: int) -> bool:
        """Report ``value`` at ``step``; True when the study's pruner stops the trial."""
        self.trial.report(value, step)
        return self.trial.should_prune()


@lru_cache(maxsize=4)
def trial_link(storage: str, study_name: str, number: int) -> TrialLink:
    """One link per trial and process (the callback and ``run_trial`` share it)."""
    return TrialLink(storage, study_name, number)


def _link(sweep: Any) -> TrialLink | None:
    if sweep.trial is None:
        return None
    if not sweep.storage or not sweep.study_name:
        raise ValueError(
            f"sweep.trial={sweep.trial} needs sweep.storage and sweep.study_name; the Optuna "
            "sweeper (hparams_search=optuna) sets all three, do not set them by hand"
        )
    return trial_link(str(sweep.storage), str(sweep.study_name), int(sweep.trial))


def _record(sweep: Any, key: str, value: Any) -> None:
    """Set a user attribute on the trial; a storage error is logged, never raised."""
    try:
        link = _link(sweep)
        if link is not None:
            link.set(key, value)
    except Exception as err:  # the training's outcome matters more than the record
        log.warning("could not record %s on Optuna trial %s: %s", key, sweep.trial, err)


def run_trial(sweep: DictConfig, run_dir: Path, job: Callable[[], float | None]) -> float | None:
    """Run ``job`` as the sweep's trial ``sweep.trial``: rank 0 records the run dir, then the
    value the job returns or why it failed (the exception is raised again)."""
    from hydra_plugins.srlane_optuna_sweeper import study as shared

    rank0 = process_rank() == 0
    if rank0:
        _record(sweep, shared.RUN_DIR, str(run_dir))
    try:
        value = job()
    except Exception as err:
        if rank0:
            log.exception("Optuna trial %s failed", sweep.trial)
            _record(sweep, shared.FAIL_REASON, f"{type(err).__name__}: {err}"[:2000])
        raise
    if rank0:
        _record(sweep, shared.JOB_RESULT, None if value is None else float(value))
    return value


class OptunaPruning:
    """Report ``monitor`` to the trial after each validation; stop when the study's pruner
    prunes the trial. Steps are training iterations (MedianPruner's n_warmup_steps too)."""

    def __init__(self, sweep: Any, monitor: str = "F1") -> None:
        self.sweep = sweep
        self.monitor = monitor

    def on_validation_end(self, runner: Any, metrics: dict[str, Any]) -> None:
        step = runner.state.step
        value = float(metrics[self.monitor])
        prune = runner.fabric.is_global_zero and self._report(value, step)
        # Only rank 0 asks the storage; every rank must stop at the same step, or the ranks that
        # train on wait forever in the next collective.
        prune = bool(runner.fabric.broadcast(prune, src=0))
        if not prune:
            return
        log.info(
            "pruned by the Optuna study at iteration %d (val %s %.4f, trial %s): stopping",
            step,
            self.monitor,
            value,
            self.sweep.trial,
        )
        runner.request_stop(f"pruned by the Optuna study (trial {self.sweep.trial})")

    def _report(self, value: float, step: int) -> bool:
        from hydra_plugins.srlane_optuna_sweeper import study as shared

        try:
            link = _link(self.sweep)
            if link is None or not link.report(value, step):
                return False
            link.set(shared.PRUNED_AT, step)  # the sweeper tells the study PRUNED from it
            return True
        except Exception as err:
            log.warning(
                "Optuna trial %s: could not report the validation at iteration %d (%s); "
                "training goes on without pruning",
                self.sweep.trial,
                step,
                err,
            )
            return False
