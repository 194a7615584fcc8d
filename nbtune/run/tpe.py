"""The default sampler: Optuna's multivariate TPE, fitted where the trials can be compared.

Under a multi-fidelity scheduler most trials stop early, at different epochs. Optuna's TPE
ranks every complete trial above every stopped one whatever their values, and stopped ones by
how far they got; its good group is its best tenth of *all* trials. Early in a search that
group is simply the first configurations to finish, however they scored, and TPE then
proposes more of them. Under pause-and-promote it also counts a configuration that went on
once per rung it paused at.

BOHB (Falkner, Klein and Hutter, ICML 2018) fits its model on one budget instead: the largest
at which enough configurations were evaluated, each valued there. :class:`TPESampler` shows
Optuna's TPE that view of the study (:func:`at_largest_budget`); with no epochs loop, or
before any epoch has enough observations, TPE sees the study as it is.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nbtune import _compat

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

__all__ = ["TPESampler", "at_largest_budget", "observations_needed"]

_ENDED = (TrialState.COMPLETE, TrialState.PRUNED)


def observations_needed(n_params: int) -> int:
    """How many configurations an epoch needs before the model is fitted there: BOHB's d + 3
    (d hyperparameters; ``min_points_in_model`` d + 1, and 2 more)."""
    return n_params + 3


def at_largest_budget(trials: list[FrozenTrial], n_min: int) -> list[FrozenTrial]:
    """The trials as the model should see them: one observation per configuration at the
    largest step (epoch) that at least ``n_min`` configurations reached, valued at that step,
    as a complete trial. A configuration that went on after a pause is one configuration, seen
    through its furthest trial. A configuration that stopped before that step is left out, unless
    it finished there (its cell's loop ended early): its final value stands. Trials that have
    not ended (running, failed) are passed through for the sampler's own filters.

    Without intermediate values (no epochs loop), or before any step has ``n_min``
    configurations, the trials are returned as they are.
    """
    if not any(t.intermediate_values for t in trials):  # no epochs loop: nothing to compare at
        return trials
    furthest: dict[tuple[Any, ...], FrozenTrial] = {}
    for t in trials:
        if t.state not in _ENDED or (not t.intermediate_values and t.state != TrialState.COMPLETE):
            continue
        key = tuple(sorted(t.params.items()))
        seen = furthest.get(key)
        if seen is None or _further(t, seen):
            furthest[key] = t
    reached = Counter(step for t in furthest.values() for step in t.intermediate_values)
    budgets = [step for step, n in reached.items() if n >= n_min]
    if not budgets:
        return trials
    budget = max(budgets)
    out = [t for t in trials if t.state not in _ENDED]
    for t in furthest.values():
        if budget in t.intermediate_values:
            value = t.intermediate_values[budget]
        elif t.state == TrialState.COMPLETE and t.value is not None and (t.last_step or 0) < budget:
            value = t.value
        else:
            continue
        if not math.isfinite(value):
            continue
        seen = copy.copy(t)  # the study's own record stays as it is
        seen.state, seen.value = TrialState.COMPLETE, value
        out.append(seen)
    out.sort(key=lambda t: t.number)
    return out


def _further(t: FrozenTrial, than: FrozenTrial) -> bool:
    """``t`` took its configuration further than ``than`` did (complete beats stopped)."""
    return (t.state == TrialState.COMPLETE, t.last_step or 0) > (than.state == TrialState.COMPLETE, than.last_step or 0)


class TPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE (multivariate by default in nbtune) with BOHB's choice of observations:
    at the largest epoch with :func:`observations_needed` configurations. A study with one
    objective and no epochs loop sees exactly Optuna's TPE.

    TPE draws at random while it sees fewer trials than its startup count (10), so when the
    model moves up to an epoch that has d + 3 < 10 configurations, the next proposals are random
    until 10 have reached it: bursts of exploration at each move, as BOHB samples at random
    when no budget has enough observations.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._n_params = 0  # hyperparameters, from the relative search space: BOHB's d

    def observations_needed(self) -> int:
        return observations_needed(self._n_params)

    def _view(self, study: optuna.Study) -> optuna.Study:
        if len(study.directions) > 1 or self._n_params == 0:
            return study
        n_min = self.observations_needed()
        return _compat.study_view(study, lambda trials: at_largest_budget(trials, n_min))

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._n_params = max(self._n_params, len(search_space))
        return super().sample_relative(self._view(study), trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return super().sample_independent(self._view(study), trial, param_name, param_distribution)
