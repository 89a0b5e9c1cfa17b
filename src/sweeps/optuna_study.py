"""The Optuna study of a sweep (hparams_search=optuna): its trials, parameter importances,
and which job ran which trial."""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra_plugins.srlane_optuna_sweeper.study import FAIL_REASON, INTERRUPTED, RUN_DIR, STUDY_FILE
from src.sweeps.jobs import read_json
from src.sweeps.records import TRIAL_OVERRIDE, Job, Study, Trial, split_override

log = logging.getLogger(__name__)


def read_study(sweep_dir: Path) -> Study | None:
    """The study named by <sweep dir>/optuna_study.json, None without that file. A study that
    cannot be loaded comes back with ``error`` set: the rest of the report still gets written."""
    spec_path = sweep_dir / STUDY_FILE
    if not spec_path.is_file():
        return None
    spec = read_json(spec_path)
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
        raise ValueError(f"{STUDY_FILE} names no storage")
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
        run_dir=str(attrs[RUN_DIR]) if attrs.get(RUN_DIR) else None,
        fail_reason=str(attrs[FAIL_REASON]) if attrs.get(FAIL_REASON) else None,
        interrupted=bool(attrs.get(INTERRUPTED)),
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
