"""The project's Optuna sweeper for Hydra (``--multirun hparams_search=optuna``).

Why its own: hydra-optuna-sweeper (1.3.0 the latest release) pins Optuna < 3, which breaks with
SQLAlchemy 2, and it has neither pruning nor a way for a job to know its trial. This plugin runs
Optuna >= 4 with ask/tell through whatever Hydra launcher is configured (basic, submitit local,
SLURM), keeps the study in a storage every job can reach (by default a journal file in the sweep
dir), and passes each job its trial (``sweep.storage``, ``sweep.study_name``, ``sweep.trial``),
so that the job reports its validations and stops when the study's pruner says so
(src/launch/optuna_trial.py).

Modules: ``config`` (the ``hydra/sweeper: srlane_optuna`` node), ``srlane_optuna_sweeper`` (the
plugin class Hydra finds), ``study`` (storage, study file, trial attributes: shared with the jobs
and with report tools), ``_search_space`` and ``_search`` (the search itself, imported only when a
sweep runs, so that Hydra's plugin scan at every start does not import Optuna).
"""

__version__ = "0.1.0"
