"""The sweeper's config node: ``hydra/sweeper: srlane_optuna`` (conf/hparams_search/optuna.yaml
selects it). Named apart from hydra-optuna-sweeper's ``optuna`` so that both can be installed."""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses cannot resolve postponed annotations.
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class SRLaneOptunaSweeperConf:
    _target_: str = "hydra_plugins.srlane_optuna_sweeper.srlane_optuna_sweeper.SRLaneOptunaSweeper"
    # Hydra instantiates plugins recursively: keep sampler and pruner as configs, the sweeper
    # builds them (GridSampler needs the search space; the jobs rebuild the pruner).
    _recursive_: bool = False
    direction: str = "maximize"  # of the value the task function returns; or minimize
    study_name: str = "srlane"
    # An Optuna storage URL (sqlite:///path.db, postgresql://...) or the path of a journal file;
    # null: <hydra.sweep.dir>/optuna.journal. Every job must reach it (pruning reads it).
    storage: str | None = None
    # The study's total of finished trials (COMPLETE, PRUNED or FAIL): a rerun of the same
    # command on the same storage and study runs only what is missing.
    n_trials: int = 20
    # Trials in flight at once (launchers that start processes: local, slurm). Hydra's basic
    # launcher runs jobs inside the sweeper's process, one at a time.
    n_jobs: int = 1
    # The sweep stops with an error once more than this fraction of the trials it runs failed.
    max_failure_rate: float = 0.5
    # Any Optuna sampler as a _target_ with its arguments (GridSampler: the search space is
    # taken from the choice(...) params when not given).
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler"})
    # null (no pruning), a short name (median, hyperband, successive_halving, none) or a
    # _target_ with arguments; steps are training iterations.
    pruner: Any = None
    # The search space in Hydra's override grammar, e.g. optimizer.lr: tag(log, interval(1e-4,
    # 3e-3)), scheduler.warmup_iters: choice(25, 50, 100), x: range(1, 9, 2). Command-line
    # overrides of the same key replace an entry.
    params: dict[str, Any] | None = None


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="srlane_optuna",
    node=SRLaneOptunaSweeperConf,
    provider="srlane_optuna_sweeper",
)
