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

In both, a configuration whose trial failed on its own (it diverged: its metric came out NaN or
infinite; or it raised: a simulation that does not converge there, parameters that clash) is a
bad observation, as Optuna's TPE ranks a pruned trial whose last report was NaN. Optuna's TPE
leaves failed trials out of its model, and a region it never sees can look the most promising to
it: the top of a learning-rate range that diverges was proposed again and again, and an ODE fit
whose solver raised for some parameters failed 26 of its last 27 trials there (found trying
nbtune as a new user). A trial that was interrupted (Stop now, a dead worker) says nothing of its
configuration, and stays out.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nbtune import _compat
from nbtune.store.attrs import is_interrupted

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

__all__ = ["TPESampler", "at_largest_budget", "compared_at", "failed_on_its_own", "observations_needed"]

_ENDED = (TrialState.COMPLETE, TrialState.PRUNED)


def observations_needed(n_params: int) -> int:
    """How many configurations an epoch needs before the model is fitted there: BOHB's d + 3
    (d hyperparameters; ``min_points_in_model`` d + 1, and 2 more)."""
    return n_params + 3


def at_largest_budget(trials: list[FrozenTrial], n_min: int) -> list[FrozenTrial]:
    """The trials as the model should see them (:func:`model_view`)."""
    return model_view(trials, n_min)[0]


def model_view(trials: list[FrozenTrial], n_min: int) -> tuple[list[FrozenTrial], int | None]:
    """The trials as the model should see them: one observation per configuration, at the
    largest step (epoch) that at least ``n_min`` configurations reached, valued at that step, as a
    complete trial. A configuration that went on after a pause is one configuration, seen through
    its furthest trial. A configuration that stopped before that step is left out, as BOHB leaves
    out lower budgets (where epochs rank configurations only roughly, late bloomers lose), unless
    it finished there (its cell's loop ended early): its final value stands. Trials that have not
    ended (running, failed) are passed through for the sampler's own filters.

    A configuration whose trial failed on its own (:func:`failed_on_its_own`: it diverged, or
    raised), at whatever epoch, is a pruned trial with no value, which TPE ranks below every other
    observation (what it scored before it failed does not stand): known bad, where a configuration
    left out is unknown. One stopped for breaking a guardrail stays in as it is: its constraints make
    it infeasible to TPE.

    Without intermediate values (no epochs loop), or before any step has ``n_min``
    configurations, the trials are returned as they are, failed ones shown as bad.

    Returns:
        The trials, and how many configurations are compared at the step (None when the trials
        are returned as they are).
    """
    if not any(t.intermediate_values for t in trials):  # no epochs loop: nothing to compare at
        return _with_failed_as_bad(trials), None
    found = compared_at(trials, n_min)
    if found is None:
        return _with_failed_as_bad(trials), None
    _, seen, blew_up = found
    bad = {t.number: _bad(t) for t in blew_up}
    out = [bad.get(t.number, t) for t in trials if t.state not in _ENDED]  # running and failed ones pass
    out += seen
    # stopped for breaking a guardrail before the step: TPE ranks them infeasible (their constraints)
    compared = {t.number for t in seen}
    out += [t for t in trials if t.number not in compared and _broke_a_guardrail(t)]
    out.sort(key=lambda t: t.number)
    return out, sum(t.state == TrialState.COMPLETE for t in seen)


def compared_at(trials: list[FrozenTrial], n_min: int) -> tuple[int, list[FrozenTrial], list[FrozenTrial]] | None:
    """The largest step (epoch) that at least ``n_min`` configurations reached, and the
    configurations compared there, as :func:`model_view` describes: each once, valued at that
    step, as a complete trial (a copy), or as a pruned trial with no value where that value is not
    finite; then the configurations that failed on their own (their trials as they are). None without such a
    step.
    """
    furthest: dict[tuple[Any, ...], FrozenTrial] = {}
    blew_up: dict[tuple[Any, ...], FrozenTrial] = {}
    for t in trials:
        if failed_on_its_own(t):
            blew_up.setdefault(tuple(sorted(t.params.items())), t)
        if t.state not in _ENDED or (not t.intermediate_values and t.state != TrialState.COMPLETE):
            continue
        key = tuple(sorted(t.params.items()))
        seen = furthest.get(key)
        if seen is None or _further(t, seen):
            furthest[key] = t
    for key in blew_up:  # it went on after a pause and then failed
        furthest.pop(key, None)
    reached = Counter(step for t in furthest.values() for step in t.intermediate_values)
    budgets = [step for step, n in reached.items() if n >= n_min]
    if not budgets:
        return None
    budget = max(budgets)
    out = []
    for t in furthest.values():
        if budget in t.intermediate_values:
            value = t.intermediate_values[budget]
        elif t.state == TrialState.COMPLETE and t.value is not None and (t.last_step or 0) < budget:
            value = t.value
        else:  # stopped before the step: left out (its low epochs do not rank it among these)
            continue
        if not math.isfinite(value):
            out.append(_bad(t))
            continue
        seen = copy.copy(t)  # the study's own record stays as it is
        seen.state, seen.value = TrialState.COMPLETE, value
        out.append(seen)
    return budget, out, list(blew_up.values())


def _broke_a_guardrail(t: FrozenTrial) -> bool:
    """A trial the scheduler stopped because it broke a guardrail (``--subject-to``), which its
    constraints say: known bad whatever the epoch it stopped at, as a failed one is."""
    return t.state == TrialState.PRUNED and any(v > 0 for v in t.constraints.values())


def _bad(t: FrozenTrial) -> FrozenTrial:
    """``t`` as TPE's worst kind of observation: pruned, with no value at any epoch (a copy: the
    study's own record stays as it is)."""
    seen = copy.copy(t)
    seen.state, seen.value, seen.intermediate_values = TrialState.PRUNED, None, {}
    return seen


def failed_on_its_own(t: FrozenTrial) -> bool:
    """A failed trial that says its configuration is bad: it diverged or raised (not interrupted:
    Stop now, a dead worker's lease; and with parameters to be bad at)."""
    return t.state == TrialState.FAIL and bool(t.params) and not is_interrupted(t)


def _with_failed_as_bad(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials as they are, failed ones shown as bad (the same list when there are none)."""
    if not any(failed_on_its_own(t) for t in trials):
        return trials
    return [_bad(t) if failed_on_its_own(t) else t for t in trials]


def _further(t: FrozenTrial, than: FrozenTrial) -> bool:
    """``t`` took its configuration further than ``than`` did (complete beats stopped)."""
    return (t.state == TrialState.COMPLETE, t.last_step or 0) > (than.state == TrialState.COMPLETE, than.last_step or 0)


class TPESampler(optuna.samplers.TPESampler):
    """Optuna's TPE (multivariate by default in nbtune) with BOHB's choice of observations: at
    the largest epoch with :func:`observations_needed` configurations (:func:`model_view`). Its
    good group is the best tenth (at most 25) of the configurations compared there, as Optuna's is
    of all trials; the configurations that failed (diverged or raised) are in its bad group. A
    study with one objective and no epochs loop sees Optuna's TPE, failed configurations counted
    as bad ones.

    TPE draws at random until 10 configurations are compared (its startup count), so when the
    model moves up to an epoch that has d + 3 < 10 configurations, the next proposals are random
    until 10 have reached it: bursts of exploration at each move, as BOHB samples at random
    when no budget has enough observations.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._n_params = 0  # hyperparameters, from the relative search space: BOHB's d
        self._startup = int(options.get("n_startup_trials", 10))
        self._compared: int | None = None  # configurations compared at the model's epoch, for this proposal
        _compat.set_tpe_good_group(self, self._good_group)

    def _good_group(self, n: int) -> int:
        """Optuna's rule (the best tenth, at most 25) of the configurations compared, the failed
        ones not counted: as many good ones however many failed."""
        return min(math.ceil(0.1 * (n if self._compared is None else self._compared)), 25)

    def observations_needed(self) -> int:
        return observations_needed(self._n_params)

    def _view(self, study: optuna.Study) -> optuna.Study:
        self._compared = None
        if len(study.directions) > 1 or self._n_params == 0:
            return study
        n_min = self.observations_needed()

        def transform(trials: list[FrozenTrial]) -> list[FrozenTrial]:
            seen, self._compared = model_view(trials, n_min)
            if self._compared is not None and self._compared < self._startup:
                # TPE's own count says it draws at random: failed configurations do not count
                seen = [t for t in seen if t.state != TrialState.PRUNED]
            return seen

        return _compat.study_view(study, transform)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._n_params = max(self._n_params, len(search_space))
        return super().sample_relative(self._view(study), trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return super().sample_independent(self._view(study), trial, param_name, param_distribution)
