"""Population-based training (Jaderberg et al. 2017, "Population Based Training of Neural
Networks"): ``--scheduler pbt --population N --interval K``.

N members train side by side. Every K epochs each member pauses (its state is saved, as with
pause-and-promote), and when every member has reached that epoch the members continue one
by one. A member in the bottom quarter of the population at that epoch *exploits*: it
continues from the state of a member of the top quarter (chosen at random among those whose
checkpoint is there) with that member's hyperparameters, and *explores*: each hyperparameter
the epochs loop reads is multiplied by 0.8 or 1.2 (for a log-scaled one that is a step in log
space), or with probability 1/4 drawn anew from its range; integers are rounded and moved by
at least one step, numeric choices move to a neighbouring choice, other choices are drawn
anew, and every value stays within the declared range. The others continue their own state.

In the store, a member is a chain of Optuna trials, one per interval: a trial pauses (PRUNED,
``nbtune:decision`` with ``paused``) and its continuation is a new trial with the new
hyperparameters, the state it resumes from and that state's curve so far (``nbtune:promoted``,
as for pause-and-promote), plus ``nbtune:pbt``: the decision, which ``res.decisions()`` and
the dashboard explain. Only the last trial of a member, which reaches R, is complete, so
``best_trial`` is the best member at the end. Because the cell runs again for each interval,
the new hyperparameter values are assigned at the top as usual, and the loaded state replaces
what the cell built: the epochs loop must read a hyperparameter (e.g. set the optimizer's
learning rate each epoch) for a new value to take effect after a donor's optimizer state
is loaded; nbtune says before the search which tuned variables the loop does not read.

Checkpoint retention: a paused member's file is kept while any member may still continue from
it (until every member has gone past that epoch); the rest follows the usual rule.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

from nbtune.run.schedulers import BaseScheduler, Promotion, SchedulerSpec, register_scheduler
from nbtune.store.attrs import ATTR, continuations, is_interrupted

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna

__all__ = ["QUANTILE", "RESAMPLE_PROBABILITY", "FACTORS", "perturb", "format_pbt", "frontier"]

QUANTILE = 0.25  # the bottom quarter copies the top quarter
RESAMPLE_PROBABILITY = 0.25  # explore: draw a hyperparameter anew instead of perturbing it
FACTORS = (0.8, 1.2)


def _root(trial: optuna.trial.FrozenTrial) -> int:
    """The member: the number of the trial that started it."""
    promoted = trial.user_attrs.get(ATTR.PROMOTED)
    if promoted:
        return int(promoted["root"])
    return int(trial.user_attrs.get(ATTR.RERUN_OF, trial.number))


def _paused_at(trial: optuna.trial.FrozenTrial) -> int | None:
    d = trial.user_attrs.get(ATTR.DECISION)
    if trial.state.name == "PRUNED" and d and d.get("paused"):
        return int(d["epoch"])
    return None


def _epoch_of(trial: optuna.trial.FrozenTrial) -> float:
    """How far a member's latest trial has got (inf: done or out, it holds nobody back)."""
    state = trial.state.name
    if state in ("COMPLETE", "FAIL"):
        return math.inf
    paused = _paused_at(trial)
    if paused is not None:
        return paused
    if state == "PRUNED":  # stopped for another reason (a NaN metric): out of the population
        return math.inf
    resume = trial.user_attrs.get(ATTR.RESUME) or {}
    start, last = int(resume.get("step", 0)), trial.last_step or 0
    if last > start:
        # It reported that epoch and may be pausing there right now: until it has, it is not
        # there yet (with two workers a member was ranked at an interval among 3 of 4).
        return last - 0.5
    return max(last, start)


def frontier(trials: list[optuna.trial.FrozenTrial]) -> float:
    """The epoch every member has reached: a paused checkpoint at an earlier epoch can go."""
    superseded = continuations(trials)
    live = [t for t in trials if t.number not in superseded and not is_interrupted(t)]
    return min((_epoch_of(t) for t in live), default=math.inf)


def _sample(dist: Any, rng: random.Random) -> Any:
    import optuna

    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return rng.choice(list(dist.choices))
    if isinstance(dist, optuna.distributions.IntDistribution):
        if dist.log:
            value = round(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))
        else:
            value = rng.randint(dist.low, dist.high)
        return _snap_int(value, dist)
    if dist.log:
        return math.exp(rng.uniform(math.log(dist.low), math.log(dist.high)))
    return _snap_float(rng.uniform(dist.low, dist.high), dist)


def _snap_int(value: float, dist: Any) -> int:
    step = dist.step or 1
    value = dist.low + round((value - dist.low) / step) * step
    return int(min(max(value, dist.low), dist.low + (dist.high - dist.low) // step * step))


def _snap_float(value: float, dist: Any) -> float:
    value = min(max(value, dist.low), dist.high)
    if getattr(dist, "step", None):
        value = dist.low + round((value - dist.low) / dist.step) * dist.step
        value = min(value, dist.high)
    return float(value)


def perturb(
    params: dict[str, Any], distributions: dict[str, Any], names: tuple[str, ...], rng: random.Random
) -> dict[str, Any]:
    """Explore: the hyperparameters ``names`` of ``params`` moved within their ranges."""
    import optuna

    out = dict(params)
    for name in names:
        dist, value = distributions.get(name), params.get(name)
        if dist is None or value is None:
            continue
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            choices = list(dist.choices)
            numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)
            if rng.random() < RESAMPLE_PROBABILITY or not numeric or len(choices) < 2:
                out[name] = rng.choice(choices)
            else:  # a neighbour in the order of the values
                ordered = sorted(choices, key=float)  # type: ignore[arg-type]
                i = ordered.index(value) + rng.choice((-1, 1))
                out[name] = ordered[min(max(i, 0), len(ordered) - 1)]
            continue
        if rng.random() < RESAMPLE_PROBABILITY:
            out[name] = _sample(dist, rng)
            continue
        factor = rng.choice(FACTORS)
        if isinstance(dist, optuna.distributions.IntDistribution):
            new = round(value * factor)
            if new == value:  # small integers: move by at least one step
                new = value + (dist.step or 1) * (1 if factor > 1 else -1)
            out[name] = _snap_int(new, dist)
        elif value == 0:
            out[name] = _sample(dist, rng)
        else:
            out[name] = _snap_float(value * factor, dist)
    return out


def _next_interval(
    spec: SchedulerSpec, study: optuna.Study, usable: Callable[[optuna.trial.FrozenTrial], bool]
) -> Promotion | None:
    """The member to continue next (the one furthest behind, once every member got that far),
    with what it continues from: its own state, or a top member's, perturbed."""
    trials = study.get_trials(deepcopy=False)
    superseded = continuations(trials)
    live = [t for t in trials if t.number not in superseded and not is_interrupted(t)]
    if len({_root(t) for t in live}) < spec.population:
        return None  # not every member has started
    waiting = [t for t in live if _paused_at(t) is not None]
    own_ok = {t.number: usable(t) for t in waiting}
    # A member whose own checkpoint is gone cannot continue: it does not hold the others back.
    behind = min((_epoch_of(t) for t in live if own_ok.get(t.number, True)), default=math.inf)
    ready = [t for t in waiting if _paused_at(t) == behind and own_ok[t.number]]
    if not ready:
        return None
    trial = min(ready, key=_root)
    epoch = int(behind)
    maximize = spec.direction == "maximize"
    at_epoch: dict[int, tuple[float, optuna.trial.FrozenTrial]] = {}
    for t in trials:  # every member's value at this epoch, continued or not
        if _paused_at(t) == epoch and not is_interrupted(t) and not math.isnan(t.intermediate_values[epoch]):
            at_epoch[_root(t)] = (t.intermediate_values[epoch], t)
    ranking = sorted(at_epoch.items(), key=lambda kv: -kv[1][0] if maximize else kv[1][0])
    member, value = _root(trial), trial.intermediate_values[epoch]
    n = len(ranking)
    q = max(1, int(n * QUANTILE)) if n >= 2 else 0  # at least one copies, in a small population
    position = next((i for i, (m, _) in enumerate(ranking) if m == member), n)
    note: dict[str, Any] = {"member": member, "epoch": epoch, "value": value, "rank": position + 1, "n": n}
    if q and position >= n - q:
        rng = random.Random(f"{study.study_name}:{member}:{epoch}")
        donors = [(m, v, t) for m, (v, t) in ranking[:q] if usable(t)]  # never one without a checkpoint
        if donors:
            donor, donor_value, source = rng.choice(donors)
            params = perturb(source.params, source.distributions, spec.perturb, rng)
            note.update(
                donor=donor,
                donor_trial=source.number,
                donor_value=donor_value,
                changes={k: [source.params[k], params[k]] for k in spec.perturb if k in params},
            )
            return Promotion(trial, epoch, position + 1, n, q, value, source=source, params=params, note=note)
        note["no_donor"] = True  # in the bottom quarter, but no top member's checkpoint is left to copy
    return Promotion(trial, epoch, position + 1, n, q, value, note=note)


def format_pbt(note: dict[str, Any], metric: str) -> str:
    """``member 5 at epoch 12: copied member 2 (val_acc 0.91 vs 0.84), lr 0.010 → 0.012``"""
    head = f"member {note['member']} at epoch {note['epoch']}"
    if "donor" not in note:
        why = (
            "; it is in the bottom quarter, but no better member's checkpoint was left to copy (a finished run deletes "
            "them)"
            if note.get("no_donor")
            else ""
        )
        return (
            f"{head}: kept its own state and hyperparameters ({metric} {note['value']:.4g}, "
            f"{note['rank']} of {note['n']}){why}"
        )
    changes = ", ".join(f"{k} {_fmt(a)} → {_fmt(b)}" for k, (a, b) in note.get("changes", {}).items())
    return f"{head}: copied member {note['donor']} ({metric} {note['donor_value']:.4g} vs {note['value']:.4g})" + (
        f", {changes}" if changes else ""
    )


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


class _Pbt(BaseScheduler):
    name = "pbt"
    needs_R = True
    pauses = True

    def describe(self, spec: SchedulerSpec) -> str:
        return f"population-based training ({spec.population} members, every {spec.interval} epochs)"

    def pause_decision(
        self, spec: SchedulerSpec, inner: Any, study: optuna.Study, trial: optuna.trial.FrozenTrial
    ) -> dict[str, Any] | None:
        step = trial.last_step
        if step is None or not spec.interval or step % spec.interval or step >= (spec.R or 0):
            return None
        return {
            "epoch": step,
            "value": trial.intermediate_values[step],
            "scheduler": "pbt",
            "paused": True,
            "member": _root(trial),
            "interval": spec.interval,
        }

    def promotion(
        self,
        spec: SchedulerSpec,
        inner: Any,
        study: optuna.Study,
        usable: Callable[[optuna.trial.FrozenTrial], bool],
        final: bool = False,
    ) -> Promotion | None:
        return _next_interval(spec, study, usable)


register_scheduler(_Pbt())
