"""Which Optuna sampler proposes the next configuration: a registry (``--sampler``).

Adding a sampler is one :class:`SamplerKind` passed to :func:`register_sampler`: its name,
the package it needs, a check of the search space, and a factory over Optuna's sampler.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbtune._registry import Registry
from nbtune.cell.space import Param
from nbtune.exceptions import ONE_METRIC, ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["SAMPLERS", "SamplerKind", "register_sampler", "sampler_kind", "check_sampler", "make_sampler", "grid_size"]


@dataclass(frozen=True)
class SamplerKind:
    """One ``--sampler`` choice.

    Attributes:
        name: the option value.
        make: ``(params, seed) -> optuna.samplers.BaseSampler``.
        needs: ``(module, extra)``: the package it imports and the nbtune extra providing it.
        enumerates: it walks a finite grid itself: the baseline is not enqueued (it would not
            count as a grid point), interrupted points are not re-queued, and ``--trials`` is
            capped at the grid's size.
        models_choices: it models ``choice(...)`` parameters; else Optuna draws them at random
            (CMA-ES and QMC search numeric ranges only), and the run says so.
        help: a few words for ``%%tune?``.
    """

    name: str
    make: Callable[[list[Param], int | None], optuna.samplers.BaseSampler]
    needs: tuple[str, str] | None = None
    enumerates: bool = False
    models_choices: bool = True
    help: str = ""


SAMPLERS: Registry[SamplerKind] = Registry(
    "--sampler", hints={n: ONE_METRIC for n in ("nsga2", "nsgaii", "nsga3", "nsgaiii", "motpe", "mocma")}
)


def register_sampler(kind: SamplerKind) -> SamplerKind:
    """Make ``kind`` available as ``--sampler <kind.name>``."""
    return SAMPLERS.register(kind.name, kind)


def sampler_kind(name: str) -> SamplerKind:
    """The registered sampler called ``name`` (ConfigError listing the choices if there is none)."""
    return SAMPLERS.lookup(name)


# Optuna's GridSampler lists every combination up front: a grid larger than this is a typo (a
# step too fine, a range too wide) that would fill the memory before the first trial.
GRID_LIMIT = 10**6


def _many(n: int) -> str:
    """4,004,001; 2e+20 past a billion."""
    return f"{n:,}" if n < 10**9 else f"{n:.3g}"


def grid_size(params: list[Param]) -> int:
    return math.prod(p.grid_count() or 0 for p in params)


def check_sampler(name: str, params: list[Param]) -> SamplerKind:
    """Validate ``--sampler`` against the installed packages and the search space.

    Raises:
        ConfigError: unknown sampler, a missing extra, or grid search on a continuous space.
    """
    kind = sampler_kind(name)
    if kind.needs and importlib.util.find_spec(kind.needs[0]) is None:
        module, extra = kind.needs
        raise ConfigError(
            f"--sampler {name} needs the package {module!r}; install it with: pip install 'nbtune[{extra}]'"
        )
    if kind.enumerates:
        for p in params:
            if p.grid_count() is None:
                raise ConfigError(
                    f"--sampler {name} needs a finite space, but line {p.lineno} of the %%tune cell "
                    f"({p.name} = {p.describe()}) is continuous; give it step=, use choice(...), "
                    "or pick --sampler random/tpe"
                )
        size = grid_size(params)
        if size > GRID_LIMIT:
            p = max(params, key=lambda q: q.grid_count() or 0)
            raise ConfigError(
                f"--sampler {name}: the grid has {_many(size)} points, more than the {GRID_LIMIT:,} it can list; "
                f"line {p.lineno} of the %%tune cell ({p.name} = {p.describe()}) has {_many(p.grid_count() or 0)} "
                "values: give it a coarser step or fewer choices, or pick --sampler random/tpe"
            )
    return kind


def make_sampler(name: str, params: list[Param], seed: int | None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler called ``name``, seeded with ``seed``."""
    return sampler_kind(name).make(params, seed)


def _tpe(params: list[Param], seed: int | None) -> Any:
    from nbtune.run.tpe import TPESampler  # imports optuna: not at `import nbtune`

    # Multivariate TPE captures interactions (lr x batch size), which matters for nets; fitted
    # at the largest epoch with enough observations, as BOHB does (nbtune.run.tpe says why).
    return TPESampler(seed=seed, multivariate=True)


def _random(params: list[Param], seed: int | None) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _grid(params: list[Param], seed: int | None) -> Any:
    import optuna

    space: dict[str, list[Any]] = {p.name: p.grid_values() or [] for p in params}
    return optuna.samplers.GridSampler(space, seed=seed)


def _gp(params: list[Param], seed: int | None) -> Any:
    import optuna

    return optuna.samplers.GPSampler(seed=seed)


def _cmaes(params: list[Param], seed: int | None) -> Any:
    import optuna

    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)


def _qmc(params: list[Param], seed: int | None) -> Any:
    import optuna

    # scrambled: Optuna's default (unscrambled Sobol' points) starts at the box's corner and, in one
    # dimension, repeats the baseline's midpoint as its second point (found trying nbtune as a new user)
    return optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)


for _kind in (
    SamplerKind("tpe", _tpe, help="multivariate TPE, fitted at the largest epoch with enough observations (default)"),
    SamplerKind("random", _random, help="independent uniform draws"),
    SamplerKind("grid", _grid, enumerates=True, help="every point of a finite space"),
    SamplerKind("gp", _gp, needs=("torch", "gp"), help="Gaussian-process Bayesian optimisation"),
    SamplerKind("cmaes", _cmaes, needs=("cmaes", "cmaes"), models_choices=False, help="CMA-ES"),
    SamplerKind("qmc", _qmc, needs=("scipy", "qmc"), models_choices=False, help="quasi-Monte Carlo (Sobol)"),
):
    register_sampler(_kind)
