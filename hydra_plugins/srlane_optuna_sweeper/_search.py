"""The search: ask Optuna for trials, run each as a Hydra job through the configured launcher,
tell the study how each ended.

- Each job gets the trial's params plus ``sweep.storage=... sweep.study_name=... sweep.trial=N``
  (src/config.py SweepTrialConfig): the job reports its validations to the trial and stops when
  the study's pruner says so (src/launch/optuna_trial.py), and records its result on the trial.
- The job's output dir is ``<hydra.sweep.dir>/<trial number>`` (the job number is the trial
  number), so a continued study never reuses a dir.
- Launchers that start processes (submitit local, SLURM) get one launch call per trial, from a
  thread each, so that ``n_jobs`` trials are in flight and a finished or pruned trial's slot is
  refilled at once; a killed job then fails only its own trial. Hydra's basic launcher runs
  jobs inside this process (signal handlers, logging, cwd): one at a time, in this thread.
- Only this process tells the study (one writer of final states); the jobs write user
  attributes (``study`` module) that it reads when the launcher lost a job's return value.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from hydra_plugins.srlane_optuna_sweeper import study as shared
from hydra_plugins.srlane_optuna_sweeper._search_space import (
    SearchSpace,
    build_search_space,
    grid_search_space,
)

log = logging.getLogger(__name__)

# States that count towards n_trials (a trial marked interrupted does not).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_REASON_LIMIT = 2000  # characters of a failure's reason kept on the trial


class SweepFailedError(RuntimeError):
    """Too many trials of this sweep failed (hydra.sweeper.max_failure_rate)."""


@dataclass
class Outcome:
    state: TrialState
    value: float | None = None
    reason: str | None = None


@dataclass
class Settings:
    direction: str
    study_name: str
    storage: str | None
    n_trials: int
    n_jobs: int
    max_failure_rate: float
    sampler: dict[str, Any]
    pruner: Any
    params: dict[str, Any] | None

    def check(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"hydra.sweeper.direction={self.direction!r}: maximize or minimize")
        if self.n_trials < 0 or self.n_jobs < 1:
            raise ValueError(
                f"hydra.sweeper.n_trials={self.n_trials} must be >= 0 and "
                f"hydra.sweeper.n_jobs={self.n_jobs} >= 1"
            )
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ValueError(
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} must be in [0, 1]"
            )


def quote(value: str) -> str:
    """A string override value, quoted (storage URLs hold ':' and '/')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class OptunaSearch:
    def __init__(
        self,
        settings: Mapping[str, Any],
        config: DictConfig,
        launcher: Any,
        check_overrides: Callable[[list[str]], None],
    ) -> None:
        self.settings = Settings(**settings)
        self.settings.check()
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.launcher = launcher
        self.check_overrides = check_overrides
        # Jobs inside this process (basic launcher) run one at a time in this thread.
        self.inline = isinstance(launcher, BasicLauncher)
        self.storage = shared.resolve_storage(self.settings.storage, self.sweep_dir)
        self.returns: list[JobReturn | None] = []

    # ------------------------------------------------------------------ the sweep
    def run(self, arguments: list[str]) -> list[JobReturn | None]:
        space = build_search_space(self.settings.params, arguments)
        if not space.distributions:
            raise ValueError(
                "nothing to search: give hydra.sweeper.params (conf/hparams_search/optuna.yaml) "
                "or a choice/interval/range override on the command line"
            )
        study = self.open_study(space)
        self.fail_interrupted(study)
        planned = self.settings.n_trials - counted(study)
        log.info(
            "Optuna study %r in %s: %d of %d trials done, %d to run (%d at a time); "
            "search space: %s",
            study.study_name,
            self.storage,
            counted(study),
            self.settings.n_trials,
            max(planned, 0),
            1 if self.inline else self.settings.n_jobs,
            {name: str(dist) for name, dist in space.distributions.items()},
        )
        try:
            self.run_trials(study, space, max(planned, 0))
        finally:
            self.write_results(study)
        return self.returns

    def open_study(self, space: SearchSpace) -> optuna.Study:
        """Create the study or continue it (same storage and name); write optuna_study.json."""
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        self.check_sweep_dir()
        sampler_cfg = dict(self.settings.sampler)
        if sampler_cfg.get("_target_") == "optuna.samplers.GridSampler":
            sampler_cfg.setdefault("search_space", grid_search_space(space))
        pruner = shared.pruner_spec(self.settings.pruner)
        # Trial attributes are written through the storage's public API (by trial id).
        self.backend = shared.open_storage(self.storage)
        self.sampler = instantiate(sampler_cfg)
        study = optuna.create_study(
            study_name=self.settings.study_name,
            storage=self.backend,
            sampler=self.sampler,
            pruner=shared.make_pruner(pruner),
            direction=self.settings.direction,
            load_if_exists=True,
        )
        if study.direction.name.lower() != self.settings.direction:
            raise ValueError(
                f"study {study.study_name!r} in {self.storage} maximises/minimises the other "
                f"way ({study.direction.name.lower()}): use another hydra.sweeper.study_name or "
                f"hydra.sweeper.direction={study.direction.name.lower()}"
            )
        self.study_id = self.backend.get_study_id_from_name(study.study_name)
        study.set_user_attr(shared.PRUNER, pruner)  # the jobs build the same pruner from it
        shared.write_study_file(
            self.sweep_dir,
            {
                "storage": self.storage,
                "study_name": study.study_name,
                "direction": self.settings.direction,
                "n_trials": self.settings.n_trials,
                "pruner": pruner,
            },
        )
        return study

    def check_sweep_dir(self) -> None:
        """Job dirs are numbered by trial: two studies in one sweep dir would share them."""
        existing = shared.read_study_file(self.sweep_dir)
        if existing is None:
            return
        same = (existing.get("storage"), existing.get("study_name")) == (
            self.storage,
            self.settings.study_name,
        )
        if not same:
            raise ValueError(
                f"{self.sweep_dir} already holds study {existing.get('study_name')!r} in "
                f"{existing.get('storage')}; its job dirs are numbered by that study's trials. "
                "Continue it with the same hydra.sweeper.study_name and storage, or give this "
                "study another hydra.sweep.dir"
            )

    def fail_interrupted(self, study: optuna.Study) -> None:
        """Trials still RUNNING belong to a sweep that stopped before telling them (Ctrl-C, a
        lost login node): FAIL, marked interrupted, so that n_trials gives their slots again.
        One sweep process per study at a time: it would fail another live sweep's trials."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            reason = "interrupted: the sweep that ran it stopped before the trial ended"
            self.set_attr(trial.number, shared.INTERRUPTED, True)
            self.tell(study, trial.number, Outcome(TrialState.FAIL, reason=reason))

    def run_trials(self, study: optuna.Study, space: SearchSpace, planned: int) -> None:
        """Keep up to n_jobs trials in flight until n_trials are done or too many failed."""
        in_flight = 1 if self.inline else self.settings.n_jobs
        budget = self.settings.max_failure_rate * planned
        results: queue.Queue[tuple[int, JobReturn | None, BaseException | None]] = queue.Queue()
        running: set[int] = set()
        failures: list[str] = []
        while True:
            stopping = len(failures) > budget
            while not stopping and len(running) < in_flight and self.remaining(study, running):
                number = self.start_trial(study, space, results)
                running.add(number)
            if not running:
                break
            number, ret, error = results.get()
            running.discard(number)
            self.returns.append(ret)
            outcome = self.outcome(study, number, ret, error)
            self.tell(study, number, outcome)
            if outcome.state == TrialState.FAIL:
                failures.append(f"trial {number}: {outcome.reason}")
        if len(failures) > budget:
            raise SweepFailedError(
                f"{len(failures)} of the {planned} trials this sweep was to run failed, more than "
                f"hydra.sweeper.max_failure_rate={self.settings.max_failure_rate} allows; the "
                "last: " + " | ".join(failures[-3:]) + ". Each trial's reason is its fail_reason "
                f"(optuna-dashboard {self.storage}) and its log is in {self.sweep_dir}/<trial>/. "
                "Fix the cause, or raise max_failure_rate; rerunning the command continues the "
                "study"
            )

    def remaining(self, study: optuna.Study, running: set[int]) -> bool:
        if self.grid_exhausted(study):
            if not running:
                log.info("GridSampler: every point of the grid has been run; no more trials")
            return False
        return counted(study) + len(running) < self.settings.n_trials

    def grid_exhausted(self, study: optuna.Study) -> bool:
        grid = isinstance(self.sampler, optuna.samplers.GridSampler)
        return grid and self.sampler.is_exhausted(study)

    def start_trial(self, study: optuna.Study, space: SearchSpace, results: queue.Queue) -> int:
        """Ask a trial and launch its job (inline: run it to its end now)."""
        trial = study.ask(space.distributions)
        searched = space.searched(trial.params)
        overrides = [
            *space.fixed,
            *searched,
            f"sweep.storage={quote(self.storage)}",
            f"sweep.study_name={quote(study.study_name)}",
            f"sweep.trial={trial.number}",
        ]
        try:
            self.check_overrides(overrides)
        except Exception as err:
            # A config the job cannot compose is the search space's fault: stop the sweep.
            self.tell(study, trial.number, Outcome(TrialState.FAIL, reason=describe(err)))
            raise
        log.info("trial %d: %s", trial.number, " ".join(searched))
        if self.inline:
            results.put((trial.number, *self.launch(overrides, trial.number)))
        else:
            threading.Thread(
                target=lambda: results.put((trial.number, *self.launch(overrides, trial.number))),
                name=f"optuna-trial-{trial.number}",
                daemon=True,  # Ctrl-C ends the sweep without waiting for cluster jobs
            ).start()
        return trial.number

    def launch(
        self, overrides: list[str], number: int
    ) -> tuple[JobReturn | None, BaseException | None]:
        """Run one trial's job (job number = trial number); the launcher's error if it lost
        the job (submitit raises for a job killed on the cluster)."""
        try:
            (ret,) = self.launcher.launch([overrides], initial_job_idx=number)
            return ret, None
        except Exception as err:
            return None, err

    # ---------------------------------------------------------------- outcomes
    def outcome(
        self,
        study: optuna.Study,
        number: int,
        ret: JobReturn | None,
        error: BaseException | None,
    ) -> Outcome:
        """How the trial ended: the job's return when the launcher has it, else what the job
        recorded on the trial (a sibling of a killed job, or the killed job itself)."""
        attrs = self.trial(number).user_attrs
        if ret is not None and ret.status == JobStatus.FAILED:
            # The exception the job raised (the return_value property would re-raise it).
            return Outcome(TrialState.FAIL, reason=describe(ret._return_value))
        if shared.PRUNED_AT in attrs:
            return Outcome(TrialState.PRUNED)
        if ret is not None:
            return finished_value(ret.return_value)
        if shared.JOB_RESULT in attrs:
            return finished_value(attrs[shared.JOB_RESULT])
        if shared.FAIL_REASON in attrs:
            reason = f"{attrs[shared.FAIL_REASON]} (launcher: {describe(error)})"
            return Outcome(TrialState.FAIL, reason=reason)
        return Outcome(
            TrialState.FAIL,
            reason=f"the job ended without a result (killed or lost?): {describe(error)}",
        )

    def tell(self, study: optuna.Study, number: int, outcome: Outcome) -> None:
        if outcome.reason is not None:
            self.set_attr(number, shared.FAIL_REASON, outcome.reason[:_REASON_LIMIT])
        values = outcome.value if outcome.state == TrialState.COMPLETE else None
        try:
            study.tell(number, values, state=outcome.state, skip_if_finished=True)
        except RuntimeError:
            # GridSampler calls study.stop() once the grid is done, which works only inside
            # study.optimize; tell stored the state before (remaining() stops the sweep).
            if not self.grid_exhausted(study):
                raise
        frozen = self.trial(number)
        if outcome.state == TrialState.COMPLETE:
            log.info("trial %d COMPLETE: %s", number, outcome.value)
        elif outcome.state == TrialState.PRUNED:
            at = frozen.user_attrs.get(shared.PRUNED_AT)
            log.info("trial %d PRUNED at iteration %s (last value %s)", number, at, frozen.value)
        else:
            log.warning("trial %d FAIL: %s", number, outcome.reason)

    def trial(self, number: int) -> FrozenTrial:
        return self.backend.get_trial(self.trial_id(number))

    def trial_id(self, number: int) -> int:
        return self.backend.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def set_attr(self, number: int, key: str, value: Any) -> None:
        self.backend.set_trial_user_attr(self.trial_id(number), key, value)

    def write_results(self, study: optuna.Study) -> None:
        """<sweep dir>/optimization_results.yaml: the best trial and the count per state."""
        trials = study.get_trials(deepcopy=False)
        states = {s.name: sum(t.state == s for t in trials) for s in TrialState}
        result: dict[str, Any] = {
            "name": study.study_name,
            "storage": self.storage,
            "states": {k: v for k, v in states.items() if v},
        }
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if complete:
            best = study.best_trial
            result.update(best_trial=best.number, best_value=best.value, best_params=best.params)
            log.info("best trial %d: %s %s", best.number, best.value, best.params)
        OmegaConf.save(OmegaConf.create(result), self.sweep_dir / shared.RESULTS_FILE)


def counted(study: optuna.Study) -> int:
    """Finished trials that count towards n_trials (interrupted ones give their slot back)."""
    trials = study.get_trials(deepcopy=False, states=FINISHED)
    return sum(not t.user_attrs.get(shared.INTERRUPTED) for t in trials)


def finished_value(value: Any) -> Outcome:
    """COMPLETE with a finite number, else FAIL saying what came back."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return Outcome(TrialState.FAIL, reason=f"the job returned {value!r}, not a number")
    if not math.isfinite(number):
        return Outcome(TrialState.FAIL, reason=f"the job returned {number}, not a finite number")
    return Outcome(TrialState.COMPLETE, value=number)


def describe(error: Any) -> str:
    if error is None:
        return "no error reported"
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"
    return str(error)
