"""An Optuna search space written in Hydra's override syntax, as the hydra-optuna-sweeper plugin read it.

`hydra.sweeper.params` (then the command line) maps each key to:
- `interval(a, b)`: a float, uniform in [a, b]; `tag(log, interval(a, b))`: log-uniform;
- `choice(x, y, …)` or `x,y,…` (and `shuffle(…)` of either, or of a range): one of those values (categorical);
- `range(a, b[, step])`: a number on that grid, as Hydra's range lists it (b excluded): integers when a, b and
  step are, else floats;
- a single value: fixed, the same for every trial (a value on the command line fixes a key the params search).

Optuna is imported when a study starts (it is an optional extra), not when Hydra scans its plugins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.types import Override, Transformer

from dps_exp.errors import ConfigError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution


@dataclass
class SearchSpace:
    """What each trial gets: a value drawn by Optuna for each searched key, the fixed ones as given."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)
    """key (with its `+`, if any) -> the override's value as written."""

    @classmethod
    def parse(cls, overrides: Sequence[Override]) -> SearchSpace:
        """The space of these overrides, in order: a key given again replaces its earlier setting."""
        space = cls()
        for override in overrides:
            key = override.get_key_element()
            space.distributions.pop(key, None)
            space.fixed.pop(key, None)
            if not override.is_sweep_override():
                space.fixed[key] = override.get_value_element_as_str()
            else:
                space.distributions[key] = space.distribution(override)
        return space

    @staticmethod
    def distribution(override: Override) -> BaseDistribution:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        value = override.value()
        if override.is_interval_sweep():
            return FloatDistribution(float(value.start), float(value.end), log="log" in value.tags)
        if override.is_range_sweep() and not value.shuffle:
            grid = list(override.sweep_iterator())
            if not grid:
                raise ConfigError(f"{override.input_line}: the range holds no value")
            numbers = (value.start, value.stop, value.step)
            if all(isinstance(v, int) for v in numbers):
                return IntDistribution(min(grid), max(grid), step=abs(value.step))
            return FloatDistribution(float(min(grid)), float(max(grid)), step=abs(float(value.step)))
        if override.is_choice_sweep() or override.is_range_sweep():  # a shuffled range is a set of choices
            # numbers and booleans as themselves, anything else as the override writes it (`'x y'`, `[1,2]`), so
            # that `key=<choice>` reads back as that choice
            return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
        raise ConfigError(
            f"{override.input_line}: an Optuna search takes interval(…), choice(…), a,b,… or range(…), not this sweep"
        )

    def shared(self) -> list[str]:
        """The overrides every trial gets: the fixed ones."""
        return [f"{key}={value}" for key, value in self.fixed.items()]

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """A trial's overrides: its drawn values (`params`, by key, as Optuna gives them), then the fixed ones."""
        return [f"{key}={params[key]}" for key in self.distributions] + self.shared()
