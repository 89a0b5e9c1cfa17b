"""The Hydra Sweeper plugin class (Hydra finds it by scanning ``hydra_plugins``). The search
itself is in ``_search``, imported at setup: only a sweep pays for importing Optuna."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

# Registers the hydra/sweeper=srlane_optuna config node when Hydra scans the plugins.
from hydra_plugins.srlane_optuna_sweeper.config import SRLaneOptunaSweeperConf  # noqa: F401


class SRLaneOptunaSweeper(Sweeper):
    """Optuna ask/tell over Hydra's launchers, with storage, pruning and failure handling."""

    def __init__(self, **settings: Any) -> None:
        # Plain containers, resolved now: the sampler's seed may interpolate the task config.
        self.settings = {
            key: OmegaConf.to_container(value, resolve=True)
            if OmegaConf.is_config(value)
            else value
            for key, value in settings.items()
        }
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.search: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra_plugins.srlane_optuna_sweeper._search import OptunaSearch

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.search = OptunaSearch(self.settings, config, self.launcher, self.check_overrides)

    def check_overrides(self, overrides: list[str]) -> None:
        """Compose the job's config here (the launcher may do it on another machine), so that a
        bad override fails now with Hydra's message."""
        self.validate_batch_is_legal([overrides])

    def sweep(self, arguments: list[str]) -> Any:
        return self.search.run(arguments)
