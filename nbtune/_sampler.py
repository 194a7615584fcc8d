"""Which Optuna sampler proposes the next configuration (``--sampler``)."""

from __future__ import annotations

import importlib.util
import math
from typing import TYPE_CHECKING, Any

from nbtune._space import Param
from nbtune.exceptions import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["SAMPLERS", "check_sampler", "make_sampler", "grid_size"]

SAMPLERS = ("tpe", "random", "grid", "gp", "cmaes", "qmc")

# sampler -> (module it needs, extra to install)
_NEEDS = {"gp": ("torch", "gp"), "cmaes": ("cmaes", "cmaes"), "qmc": ("scipy", "qmc")}


def grid_size(params: list[Param]) -> int:
    return math.prod(len(p.grid_values() or []) for p in params)


def check_sampler(name: str, params: list[Param]) -> None:
    """Validate ``--sampler`` against the installed packages and the search space.

    Raises:
        ConfigError: unknown sampler, a missing extra, or grid search on a continuous space.
    """
    if name not in SAMPLERS:
        raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}; got {name!r}")
    need = _NEEDS.get(name)
    if need and importlib.util.find_spec(need[0]) is None:
        raise ConfigError(
            f"--sampler {name} needs the package {need[0]!r}; install it with: pip install 'nbtune[{need[1]}]'"
        )
    if name == "grid":
        for p in params:
            if p.grid_values() is None:
                raise ConfigError(
                    f"--sampler grid needs a finite space, but line {p.lineno} of the %%tune cell "
                    f"({p.name} = {p.describe()}) is continuous; give it step=, use choice(...), "
                    "or pick --sampler random/tpe"
                )


def make_sampler(name: str, params: list[Param], seed: int | None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler called ``name``, seeded with ``seed``."""
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        space: dict[str, list[Any]] = {p.name: p.grid_values() or [] for p in params}
        return optuna.samplers.GridSampler(space, seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    # TPE: multivariate captures interactions (lr x batch size), which matters for nets.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True)
