"""The search space from Hydra's override grammar, and the overrides of one trial.

``hydra.sweeper.params`` and the command line use the same grammar; a command-line override of
a key replaces the config's entry (a plain value there fixes the parameter):

- ``choice(a, b, c)`` or ``a,b,c``: CategoricalDistribution;
- ``interval(lo, hi)``: FloatDistribution (``tag(log, ...)``: log scale; ``tag(int, ...)``:
  IntDistribution);
- ``range(start, stop[, step])``: the values Python's range would give, as an Int or Float
  distribution with that step (``tag(log, range(...))``: log scale, step 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

_PRIMITIVES = (str, int, float, bool, type(None))


@dataclass
class SearchSpace:
    """What every trial gets: the searched distributions and the fixed overrides."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)  # passed to every job as given
    # Categorical params whose choices are written as override strings (lists, dicts).
    raw: set[str] = field(default_factory=set)

    def searched(self, params: Mapping[str, Any]) -> list[str]:
        """The overrides of a trial's sampled ``params``."""
        return [
            f"{name}={value if name in self.raw else override_value(value)}"
            for name, value in params.items()
        ]


def override_value(value: Any) -> str:
    """A sampled value in the override grammar (strings escaped the way Hydra writes them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    # Hydra's own writer of values in its grammar (used by its basic sweeper as well).
    return Override._get_value_element_as_str(value)


def build_search_space(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> SearchSpace:
    """The search space of ``hydra.sweeper.params`` and the command-line ``arguments``."""
    parser = OverridesParser.create()
    from_config = parser.parse_overrides([f"{k}={v}" for k, v in (params or {}).items()])
    from_command_line = parser.parse_overrides(list(arguments))
    entries: dict[str, Override] = {}
    for override in [*from_config, *from_command_line]:
        entries[override.key_or_group] = override  # the command line comes last and wins
    space = SearchSpace()
    for override in entries.values():
        assert override.input_line is not None
        if not override.is_sweep_override():
            space.fixed.append(override.input_line)
            continue
        name = override.get_key_element()
        space.distributions[name] = distribution(override, space.raw)
    return space


def distribution(override: Override, raw: set[str]) -> BaseDistribution:
    """The Optuna distribution of one sweep override (``raw``: gets the names of categorical
    params whose choices had to be kept as override strings)."""
    value = override.value()
    log = "log" in getattr(value, "tags", ())
    if isinstance(value, ChoiceSweep):
        if log:
            raise ValueError(f"{override.input_line}: tag(log, ...) needs an interval or a range")
        choices = list(value.list)
        if not all(isinstance(c, _PRIMITIVES) for c in choices):
            # Optuna stores primitives only: lists and dicts travel as their override strings.
            raw.add(override.get_key_element())
            choices = [Override._get_value_element_as_str(c) for c in choices]
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        values = list(value.range())
        if not values:
            raise ValueError(f"{override.input_line}: the range is empty")
        if all(isinstance(v, int) for v in values):
            return IntDistribution(values[0], values[-1], log=log, step=int(value.step))
        step = None if log else float(value.step)
        return FloatDistribution(float(values[0]), float(values[-1]), log=log, step=step)
    if isinstance(value, IntervalSweep):
        assert value.start is not None and value.end is not None
        if "int" in value.tags:
            return IntDistribution(int(value.start), int(value.end), log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(
        f"{override.input_line}: the Optuna sweeper searches choice(...), range(...) and "
        "interval(...); give this key a single value"
    )


def grid_search_space(space: SearchSpace) -> dict[str, list[Any]]:
    """GridSampler's search space: every searched param must be a choice (or a range)."""
    grid: dict[str, list[Any]] = {}
    for name, dist in space.distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        else:
            raise ValueError(
                f"GridSampler: {name} is an interval; a grid needs choice(...) or an int "
                "range(...) for every searched param (or give the sampler its search_space)"
            )
    return grid
