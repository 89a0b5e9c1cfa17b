"""What the sweeper, its trial jobs and report tools share: where a sweep's study lives, how to
open it, the pruner the jobs apply, and the user attributes a trial carries.

A storage string is either a database URL (``sqlite:///abs/path.db``, ``postgresql://...``) or
the path of an Optuna journal file (``JournalStorage(JournalFileBackend(path))``, Optuna >= 4:
appends under a file lock, so jobs on several machines can share it on a network file system).

``<sweep dir>/optuna_study.json`` names the study of a sweep: ``{"storage", "study_name",
"direction", ...}``; ``load_sweep_study(sweep_dir)`` opens it.

Optuna is imported inside the functions: Hydra imports this module at every start (plugin scan).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from src.run_dir import write_atomic

if TYPE_CHECKING:
    import optuna

STUDY_FILE = "optuna_study.json"
JOURNAL_FILE = "optuna.journal"
RESULTS_FILE = "optimization_results.yaml"

# Trial user attributes.
RUN_DIR = "run_dir"  # the job's output dir (set by the job)
JOB_RESULT = "job_result"  # the value the job returned (set by the job)
FAIL_REASON = "fail_reason"  # why the trial failed (the job or the sweeper)
PRUNED_AT = "pruned_at_step"  # the iteration at which the pruner stopped the job (the job)
INTERRUPTED = "interrupted"  # the sweep that ran it stopped first; not counted in n_trials
# Study user attribute: the pruner config, which every job instantiates to decide itself.
PRUNER = "pruner"

# Short pruner names; each a pruner whose arguments all have defaults.
PRUNERS = {
    "median": "optuna.pruners.MedianPruner",
    "hyperband": "optuna.pruners.HyperbandPruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
    "none": "optuna.pruners.NopPruner",
}


def is_url(storage: str) -> bool:
    return "://" in storage


def resolve_storage(storage: str | None, sweep_dir: Path) -> str:
    """The storage string every job can use: absolute paths (jobs may run in another working
    dir), the journal file in the sweep dir by default."""
    if not storage:
        return str((sweep_dir / JOURNAL_FILE).resolve())
    if storage.startswith("sqlite:///"):
        path = storage[len("sqlite:///") :]
        if path and path != ":memory:" and not os.path.isabs(path):
            return "sqlite:///" + str(Path(path).resolve())
        return storage
    if is_url(storage):
        return storage
    return str(Path(storage).expanduser().resolve())


def open_storage(storage: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from a storage string (see the module docstring)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if is_url(storage):
        return optuna.storages.get_storage(storage)
    Path(storage).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(storage))


def pruner_spec(pruner: Any) -> dict[str, Any]:
    """The pruner config as a plain ``{"_target_": ..., **arguments}`` from a short name, a
    mapping with a ``_target_``, or None (no pruning)."""
    if pruner is None:
        return {"_target_": PRUNERS["none"]}
    if isinstance(pruner, str):
        if pruner not in PRUNERS:
            raise ValueError(
                f"hydra.sweeper.pruner={pruner!r} is not a short pruner name; use one of "
                f"{sorted(PRUNERS)} or a mapping with a _target_, e.g. "
                "{_target_: optuna.pruners.MedianPruner, n_startup_trials: 5}"
            )
        return {"_target_": PRUNERS[pruner]}
    if isinstance(pruner, Mapping) and "_target_" in pruner:
        return dict(pruner)
    raise ValueError(
        f"hydra.sweeper.pruner={pruner!r}: give a short name ({sorted(PRUNERS)}) or a mapping "
        "with a _target_"
    )


def make_pruner(spec: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    from hydra.utils import instantiate

    return instantiate(dict(pruner_spec(spec)))


def write_study_file(sweep_dir: Path, content: Mapping[str, Any]) -> Path:
    """Write ``<sweep dir>/optuna_study.json`` whole or not at all (readers may poll it)."""
    return write_atomic(sweep_dir / STUDY_FILE, json.dumps(dict(content), indent=2) + "\n")


def read_study_file(sweep_dir: Path) -> dict[str, Any] | None:
    path = Path(sweep_dir) / STUDY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_sweep_study(sweep_dir: Path | str) -> optuna.Study:
    """The Optuna study of a sweep dir, as its optuna_study.json names it."""
    import optuna

    spec = read_study_file(Path(sweep_dir))
    if spec is None:
        raise FileNotFoundError(
            f"{Path(sweep_dir) / STUDY_FILE} does not exist: not the sweep dir of an Optuna "
            "search (hparams_search=optuna), or the sweep has not started"
        )
    return optuna.load_study(study_name=spec["study_name"], storage=open_storage(spec["storage"]))
