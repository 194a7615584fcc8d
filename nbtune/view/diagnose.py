"""Failure signatures: what went wrong in which trials, the evidence, where in the space, and
what to change.

Read from the trials alone (their state, error, learning curve and recorded variables), so
it works for any stored study:

* **diverged**: a metric that became NaN or infinite, an error that says so, a learning
  curve that ended clearly worse than it started without improving first, or ended worse by more
  than its first value, or a minimized metric over a thousand times the median trial's (a loss
  that blew up in its first epoch: its curve never ended worse);
* **metric undefined**: a metric that came out NaN after scikit-learn's ``UndefinedMetricWarning``
  (a validation fold with one class, no predicted positives), with the fold it happened in;
* **did not learn**: a learning curve that stayed flat from the first epoch at a poor level
  (worse than the median trial by a quarter of the spread);
* **overfitting** / **underfitting**: with a training score kept by ``--record`` (the metric's
  name with ``val`` as ``train``, or ``train_`` before it: ``train_auc`` for ``val_auc``, the same
  measure): a large train-validation gap, or a low training score;
  without one, a validation curve that improved clearly and then rose back past its start
  (by less than its first value: more is a divergence) is overfitting too, and so are complete
  curves (two at least) that peaked well before their end and then worsened steadily (two steps
  in three for the worse), giving back more than a sixth of their gain;
* **failed**: other errors, grouped by exception and cell line;
* **worsened over the loop**: nine trials in ten or more whose loop ended worse than it started,
  whatever their values: a running error over a simulation's time steps, no learning curve;
* **dominated by one fold**: with ``# tune: folds(k)``, trials whose mean over the folds is
  one fold's (its value a hundred times the other folds' median);
* **warned**: a warning the trials printed (a ``ConvergenceWarning``: the model stopped before it
  converged and was scored as it stopped; a ``RuntimeWarning`` of an overflow), grouped by its
  category and message with the numbers left out; deprecation warnings, about the code and not
  the result, are left out.

With ``# tune: folds(k)`` a trial's steps are its folds, not epochs: the curve signatures
(diverged from its curve, did not learn, a curve that turned) are not read from them.

Each finding names the parameter range its trials share when one parameter separates them
from the rest ("all with lr >= 0.08"), which is usually the fix: move the range.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbtune.cell.names import metric_reads_as
from nbtune.cell.reads import non_finite_assignments
from nbtune.cell.space import as_drawn
from nbtune.store.attrs import ATTR, continuations, is_feasible, is_interrupted, run_seconds
from nbtune.store.attrs import diverged as failed_diverging
from nbtune.view.format import fmt, is_number, plural_trials

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from nbtune.view.summary import StudySummary

    # a region of the space: its text ("lr >= 0.08"), and whether a trial lies in it
    _Region = tuple[str, Callable[[optuna.trial.FrozenTrial], bool]]

__all__ = ["Finding", "diagnose", "findings_frame"]

ADVICE = {
    "diverged": "lower the range's top (learning rates and step sizes first), or clip gradients",
    "did not learn": "move the range away from there (a learning rate too small to move the weights, too much "
    "regularisation), or check the labels and the feature scaling",
    "overfitting": "more regularisation (weight decay, dropout, smaller models), more data, or fewer epochs",
    "underfitting": "bigger models or less regularisation; more epochs",
    "failed": "read the traceback (res.trials_dataframe().error, or the Failed tab) and fix the cell or the range; "
    "if these configurations raise it by nature (a clustering left with one label, a solver that rejects a "
    'penalty), catch it in the cell and set the metric to NaN (except ValueError: acc = float("nan")): the '
    "cell's verdict on them",
    "metric undefined": "the metric has no value on what these trials scored: a validation split or fold with one "
    "class (split with stratification: StratifiedKFold, train_test_split(..., stratify=y)), or predictions of one "
    "class only (a threshold or a weight that predicts no positives: narrow its range, or pass zero_division=)",
    "warned": "these trials' results came with it: read it (res.trials_dataframe().warnings) and fix the cell or "
    "the range",
}

# Warnings about the code, not about a trial's result: every trial prints them alike.
_CODE_WARNINGS = ("DeprecationWarning", "PendingDeprecationWarning", "FutureWarning")


@dataclass
class Finding:
    """One failure signature.

    Attributes:
        kind: ``"diverged"``, ``"metric undefined"``, ``"did not learn"``, ``"overfitting"``, ``"underfitting"``, ``"failed"``,
            ``"set to NaN by the cell"``, ``"warned"``, ``"dominated by one fold"``, ``"worsened over the loop"`` or ``"ran past
            --trial-timeout"``.
        trials: the trial numbers it rests on.
        evidence: what was seen, in words.
        region: the parameter range those trials share, if one parameter separates them.
        advice: what to change.
    """

    kind: str
    trials: list[int]
    evidence: str
    region: str = ""
    advice: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def sentence(self) -> str:
        where = f", all with {self.region}" if self.region else ""
        return f"{plural_trials(len(self.trials))} {self.kind} ({self.evidence}){where}: {self.advice}"


def _region(hit: list[optuna.trial.FrozenTrial], rest: list[optuna.trial.FrozenTrial]) -> str:
    """``"lr >= 0.08"`` when every trial of ``hit`` lies beyond a threshold that (almost) none of
    ``rest`` crosses, for the parameter that separates them best; else "". Where some of the rest
    lie in it too, a second parameter that leaves them out is added (``solver in ('lbfgs', 'sag')
    and penalty = 'l1'``: the first alone read as 'drop lbfgs' where lbfgs without a penalty
    completed; found trying nbtune as a new user), else how many of them it holds is said."""
    if len(hit) < 2 or not rest:
        return ""
    # A few trials lie beyond some parameter's threshold by chance: with fewer than 5, the region must
    # hold none of the rest (3 failures of a choice of two flags were put down to 'C <= 0.07' while
    # trials with C = 0.04 completed; found trying nbtune as a new user); with more, a fifth of it.
    found = _separating(hit, rest, 0.2 if len(hit) >= 5 else 0.0)
    if found is None:  # no one parameter: two together, each holding every failure (lbfgs and newton-cg with l1)
        return _pair(hit, rest)
    text, inside = found
    also = [t for t in rest if inside(t)]
    if not also:
        return text
    second = _separating(hit, also, 0.0, skip=text.split(" ", 1)[0])
    if second is not None:
        return f"{text} and {second[0]}"
    return f"{text} (as {'does' if len(also) == 1 else 'do'} {len(also)} of the others)"


def _pair(hit: list[optuna.trial.FrozenTrial], rest: list[optuna.trial.FrozenTrial]) -> str:
    """Two parameters whose regions together hold every trial of ``hit`` and none of ``rest``, each
    region the one its parameter's values in ``hit`` make; "" if no pair does."""
    names = sorted({k for t in hit for k in t.params}, key=lambda n: (_numeric(_values(hit + rest, n)), n))
    regions = [r for name in names if (r := _holding(hit, rest, name))]  # (choices first)
    for (text1, in1), (text2, in2) in itertools.combinations(regions, 2):
        if not any(in1(t) and in2(t) for t in rest):
            return f"{text1} and {text2}"
    return ""


def _values(trials: list[optuna.trial.FrozenTrial], name: str) -> list[Any]:
    return [as_drawn(t.params[name]) for t in trials if name in t.params]  # (a tuple choice as the tuple)


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _candidates(
    hit: list[optuna.trial.FrozenTrial], rest: list[optuna.trial.FrozenTrial], name: str
) -> list[tuple[_Region, float]]:
    """The regions of ``name`` that hold every trial of ``hit``: either side of its values' span
    for a number, the one, two or three choices they took otherwise; each with how far it lies from
    the rest's values (for a threshold, the gap to the nearest value of the rest beyond it, as a
    fraction of the spread; 0 for one choice, -1 for two or three)."""
    hv, rv = _values(hit, name), _values(rest, name)
    if len(hv) != len(hit):
        return []
    if _numeric(hv + rv):
        scale = _scale(hv + rv)
        found = []
        for op, cut in ((">=", min(hv)), ("<=", max(hv))):
            inside = _beyond(name, op, cut)
            beyond = [v for v in rv if not (v >= cut if op == ">=" else v <= cut)]
            gap = min(abs(scale(cut) - scale(v)) for v in beyond) if beyond else 0.0
            found.append(((f"{name} {op} {_bound(cut, op)}", inside), gap))
        return found
    values = set(map(repr, hv))
    if len(values) == 1:
        return [((f"{name} = {hv[0]!r}", _among(name, values)), 0.0)]
    if len(values) <= 3:  # two or three choices: objective in ('regression', 'huber')
        return [((f"{name} in ({', '.join(sorted(values))})", _among(name, values)), -1.0)]
    return []


def _holding(hit: list[optuna.trial.FrozenTrial], rest: list[optuna.trial.FrozenTrial], name: str) -> _Region | None:
    """The region of ``name`` that holds every trial of ``hit`` (up to three choices, or a side of
    a threshold), when it leaves out some of ``rest``; else None."""
    for region, _ in _candidates(hit, rest, name):
        if not all(region[1](t) for t in rest):
            return region
    return None


def _separating(
    hit: list[optuna.trial.FrozenTrial], rest: list[optuna.trial.FrozenTrial], tolerance: float, skip: str = ""
) -> _Region | None:
    """The region (text, and whether a trial lies in it) of the parameter that holds every trial of
    ``hit`` and at most ``tolerance`` of ``rest``, separating them best; None if none does."""
    # best: (share of the rest it leaves out, how far from the rest it lies), region
    best: tuple[tuple[float, float], _Region | None] = ((0.0, 0.0), None)
    for name in sorted({k for t in hit for k in t.params} - {skip}):  # (sorted: ties never follow set order)
        among = [t for t in rest if name in t.params]
        for region, gap in _candidates(hit, among, name) if among else ():
            share = sum(map(region[1], among)) / len(among)
            if share <= tolerance and (1 - share, gap) > best[0]:
                best = ((1 - share, gap), region)
    return best[1]


def _beyond(name: str, op: str, cut: float) -> Callable[[optuna.trial.FrozenTrial], bool]:
    def inside(t: optuna.trial.FrozenTrial) -> bool:
        v = t.params.get(name)
        return isinstance(v, (int, float)) and ((v >= cut) if op == ">=" else (v <= cut))

    return inside


def _among(name: str, values: set[str]) -> Callable[[optuna.trial.FrozenTrial], bool]:
    return lambda t: name in t.params and repr(as_drawn(t.params[name])) in values


def _bound(cut: float, op: str) -> str:
    """The cut as the region's bound, rounded outward to 4 significant digits: 'x >= 0.7151' holds
    the trial at x = 0.715189, which 'x >= 0.7152' left out (found trying nbtune as a new user)."""
    if not isinstance(cut, float) or cut == 0 or not math.isfinite(cut):
        return fmt(cut)
    e = math.floor(math.log10(abs(cut))) - 3
    mantissa = (math.floor if op == ">=" else math.ceil)(round(cut / 10.0**e, 9))
    return fmt(float(f"{mantissa}e{e}"))  # (not mantissa * 10**e: 3.0000000000000004e-05)


def _scale(values: list[float]) -> Callable[[float], float]:
    """A parameter's values as fractions of their spread, in log space when they span more than
    a factor of 10 (a learning rate): so that two parameters' gaps compare."""
    lo, hi = min(values), max(values)
    if lo > 0 and hi / lo > 10:
        span = math.log(hi / lo)
        return lambda v: math.log(v / lo) / span
    span = (hi - lo) or 1.0
    return lambda v: (v - lo) / span


def _advice(kind: str, region: str, epochs: bool = True) -> str:
    """The advice, turned toward the region: diverging at the bottom of a range (a depth of 2, a
    batch of 8) is not fixed by lowering its top. Gradients are spoken of only for a cell that
    trains in epochs."""
    clip = ", or clip gradients" if epochs else ""
    if " and " in region or " (as " in region:  # two parameters together, or not all of the region: no range to move
        region = ""
    if kind == "diverged" and " <= " in region:
        name, _, cut = region.partition(" <= ")
        return f"raise the bottom of {name}'s range above {cut}{clip}"
    if kind == "diverged" and " >= " in region:
        name, _, cut = region.partition(" >= ")
        return f"lower the top of {name}'s range below {cut}{clip}"
    if kind == "diverged" and " = " in region:
        name, _, value = region.partition(" = ")
        return f"leave {value} out of {name}'s choices{clip}"
    if kind == "diverged" and " in (" in region:
        name, _, values = region.partition(" in ")
        return f"leave {values.strip('()')} out of {name}'s choices{clip}"
    if kind == "diverged" and not epochs:
        return "lower the top of the ranges that scale steps or weights, or scale the features"
    return ADVICE[kind]


def _curve(t: optuna.trial.FrozenTrial) -> list[float]:
    return [t.intermediate_values[s] for s in sorted(t.intermediate_values)]


def _sampling_noise(trials: list[optuna.trial.FrozenTrial]) -> float:
    """How far a score over a fixed set of examples moves by chance, where the study's learning curves
    move in steps (an accuracy over 300 validation examples moves by 1/300): two standard errors of a
    proportion near their median, for values within [0, 1]; 0 otherwise. A validation accuracy that
    wandered between 0.877 and 0.907 over 300 examples, five examples, was called overfitting (found
    retesting nbtune as a user)."""
    values = [v for t in trials for v in t.intermediate_values.values() if math.isfinite(v)]
    distinct = sorted(set(values))
    if len(distinct) < 3 or len(distinct) * 2 > len(values) or distinct[0] < 0 or distinct[-1] > 1:
        return 0.0
    step = min(b - a for a, b in itertools.pairwise(distinct))
    if step <= 1e-9:
        return 0.0
    p = statistics.median(values)
    return 2 * math.sqrt(max(p * (1 - p), 0.0) * step)  # (n = 1 / step examples)


def _peaked(values: list[float], maximize: bool, noise: float = 0.0) -> int | None:
    """Where a complete learning curve peaked, when it peaked at least three epochs before its end
    and then worsened steadily: most of its steps since were for the worse (two in three), it
    gave back more than a sixth of what it gained, and it ended at about its worst since the peak.
    The trial is scored past its best: a boosting model's validation RMSE, 69k after the first
    epoch, 54.5k at epoch 5, 57k at epoch 27; or, where noise the model cannot learn dominates the
    RMSE, 1.855 -> 1.792 at epoch 3 -> 1.867 (no gain of 10%, so a "clear improvement" rule missed
    it). A curve that wanders about a plateau is rarely steady that way; nor is a decline within
    ``noise`` (:func:`_sampling_noise`) one. None otherwise."""
    if len(values) < 5:
        return None
    v = [x if maximize else -x for x in values]  # higher is better
    at = max(range(len(v)), key=v.__getitem__)
    gain = v[at] - v[0]
    after = v[at:]
    # a decline over the last few epochs of a long loop is a wiggle (a running return that peaked at
    # episode 139 of 150; found trying nbtune as a new user): at least a fifth of the curve
    if gain <= 0 or len(after) - 1 < max(3, 0.2 * (len(v) - 1)):
        return None
    lost = v[at] - v[-1]
    worse = sum(b < a for a, b in itertools.pairwise(after))
    if lost <= gain / 6 or lost < 0.8 * (v[at] - min(after)) or worse * 3 < 2 * (len(after) - 1) or lost <= noise:
        return None
    return at


def _jitter(curves: list[list[float]]) -> float:
    """How much a learning curve of this study moves from one epoch to the next, typically: the median
    over the curves of their median step. A noisy objective (an RL return over a few episodes, which
    moved 0.356, 0.202, -0.058 by chance) then ends "worse" by chance, and read as diverged (found
    trying nbtune as a new RL user); a smooth one moves little, and its clear falls still count."""
    steps = [
        statistics.median(abs(b - a) for a, b in itertools.pairwise(c))
        for c in curves
        if len(c) >= 3 and all(math.isfinite(v) for v in c)
    ]
    return statistics.median(steps) if len(steps) >= 4 else 0.0


def _ended_worse(
    values: list[float], maximize: bool, scale: float = 0.0, usual_start: float | None = None, jitter: float = 0.0
) -> str:
    """How a learning curve that ended clearly worse than it started (by more than 10% of its first
    value, or of ``scale``, the spread of the study's values, when that is larger: a return that
    starts near 0, -0.07 then -0.115 after 12 noisy episodes, is no collapse where returns range
    over 0.9; found trying nbtune as a new user) got there: ``"collapsed"`` when it ended worse by
    more than the first value itself
    (training blew up), or never improved first, or rose in large steps; ``"turned"`` when it
    improved, then rose back past its start by less, clearly or step by small step (a validation
    loss turning up as the model overfits, the common reading); ``""`` when it did not end worse."""
    if len(values) < 3:
        return ""
    first, last = values[0], values[-1]
    if usual_start is not None:  # a lucky first value (one episode's return) is no level it fell from
        first = min(first, usual_start) if maximize else max(first, usual_start)
    margin = max(0.1 * max(abs(first), scale), 3 * jitter) + 1e-12  # (jitter: _jitter)
    if not (last < first - margin if maximize else last > first + margin):
        return ""
    best = max(values) if maximize else min(values)
    improved = best > first + margin if maximize else best < first - margin
    if abs(last - first) > abs(first):
        return "collapsed"
    if improved:
        return "turned"
    # A little better first, then worse step by small step: a boosting model's validation loss is
    # near its best after the first epoch's rounds and overfits from there (it was called diverged;
    # found trying nbtune as a new user). A blow-up comes in large steps.
    i = values.index(best)
    after = values[i:]
    if i > 0 and len(after) >= 4:
        steps = [abs(b - a) for a, b in itertools.pairwise(after)]
        if max(steps) <= 0.5 * abs(last - best):
            return "turned"
    return "collapsed"


def _spread_of_last_values(trials: list[optuna.trial.FrozenTrial]) -> float:
    """How far apart the trials' last values lie, from the 10th to the 90th percentile: the scale
    of what is a clear change of the metric in this study."""
    last = sorted(
        v
        for t in trials
        if t.intermediate_values and math.isfinite(v := t.intermediate_values[max(t.intermediate_values)])
    )
    if len(last) < 4:
        return 0.0
    return last[int(0.9 * (len(last) - 1))] - last[int(0.1 * (len(last) - 1))]


def _ran_past_the_limit(
    slow: list[optuna.trial.FrozenTrial], trials: list[optuna.trial.FrozenTrial], maximize: bool, unit: str
) -> Finding:
    """The trials ``--trial-timeout`` cut: where they lie, and whether the limit or the range is
    what to change. A cut trial already better than every complete one, or complete trials that
    took nearly the limit (two workers sharing the cores), say to raise the limit, not to narrow the
    range (found trying nbtune as a new user)."""
    limit = slow[-1].user_attrs[ATTR.TIMED_OUT]
    cut = [t for t in slow if t.state.name == "PRUNED" and t.intermediate_values]
    rest = [t for t in trials if ATTR.TIMED_OUT not in t.user_attrs and t.state.is_finished()]
    complete = [t for t in rest if t.state.name == "COMPLETE" and t.value is not None]
    evidence = f"the limit is {fmt(limit)} s" + (
        ""
        if not cut
        else f"; each stopped at its last {unit}"
        if len(cut) == len(slow)
        else f"; {len(cut)} stopped at their last {unit}, {len(slow) - len(cut)} failed before one"
    )
    best = (max if maximize else min)((t.value for t in complete), default=None)  # type: ignore[type-var]
    ahead = [
        t
        for t in cut
        if best is not None
        and ((v := t.intermediate_values[max(t.intermediate_values)]) >= best if maximize else v <= best)
    ]
    longest = max(run_seconds(complete), default=0.0)
    raise_it = "raise --trial-timeout (the trials cut already stay cut: raise -n too, for new ones)"
    if ahead:
        evidence += f"; trial {ahead[0].number}, cut at {unit} {ahead[0].last_step}, already scored as well as every complete trial"
        advice = f"these configurations are worth the time: {raise_it}"
    elif longest >= 0.8 * limit:
        evidence += f"; complete trials took up to {fmt(round(longest, 1))} s"
        advice = (
            "the limit is about as long as a trial that completes: configurations no slower than those are cut when "
            f"the machine is busy (two workers sharing its cores): {raise_it}"
        )
    else:
        advice = (
            "these configurations are slow (bigger models, more iterations, a solver taking tiny steps): narrow the "
            f"range there if they are not worth the time, or {raise_it}"
        )
    return Finding("ran past --trial-timeout", sorted(t.number for t in slow), evidence, _region(slow, rest), advice)


def _undefined(t: optuna.trial.FrozenTrial) -> tuple[str, str] | None:
    """(the warning, ``"fold = 2"`` or "") when the trial failed as its metric came out NaN after
    scikit-learn's ``UndefinedMetricWarning`` (the worker adds it to the error), else None."""
    error = str(t.user_attrs.get(ATTR.ERROR, ""))
    m = re.search(
        r"\(after (?:UndefinedMetricWarning: )?((?<=UndefinedMetricWarning: ).*|zero_division=nan.*)\)$", error
    )
    if not error.startswith("MetricError") or m is None:
        return None
    fold = re.search(r" with (\w+ = \d+): got ", error)
    return m[1], fold[1] if fold else ""


def _set_to_nan(study: optuna.Study, metric: str) -> list[int]:
    """The notebook lines where the study's cell sets ``metric`` to NaN or infinity itself, from
    the cell it recorded (:func:`nbtune.cell.reads.non_finite_assignments`)."""
    import ast

    cell = study.user_attrs.get(ATTR.CELL) or {}
    try:
        tree = ast.parse(str(cell.get("source", "")))
    except (SyntaxError, ValueError):  # IPython syntax in it ('%time'): not read
        return []
    offset = int(cell.get("line_offset", 1))
    return [line + offset for line in non_finite_assignments(tree, metric)]


def diagnose(result: StudySummary) -> list[Finding]:
    """The failure signatures of a study, most trials first."""
    trials = [t for t in result.trials if t.state.is_finished() and not is_interrupted(t)]
    maximize = result.direction == "maximize"
    findings: list[Finding] = []
    by_number = {t.number: t for t in trials}

    # With '# tune: folds(k)' a trial's steps are the running mean over its folds, no learning curve.
    folds = result.cross_validated
    diverged: dict[int, str] = {}
    turned: dict[int, str] = {}
    peaked: dict[int, int] = {}  # trial -> the epoch its curve peaked at, well before it ended
    # the scale of a clear change: the spread of the trials' last values, those that blew up left out
    curves = {t.number: _curve(t) for t in trials}  # (read by every kind below: sorted once)
    blew_up = {
        t.number for t in trials if _ended_worse(curves[t.number], maximize) == "collapsed" or failed_diverging(t)
    }
    scale = _spread_of_last_values([t for t in trials if t.number not in blew_up])
    # where the trials' curves usually start: one that starts far better by luck (the first episode's
    # return, a running mean over one episode) and ends where the others are did not collapse
    starts = [t.intermediate_values[min(t.intermediate_values)] for t in trials if t.intermediate_values]
    usual_start = statistics.median(starts) if len(starts) >= 4 else None
    noise = _sampling_noise(trials)  # (a score over few examples: a decline within it is no overfitting)
    jitter = _jitter(list(curves.values()))  # (a noisy objective's curves: an end worse by chance is no divergence)
    # A metric scikit-learn could not define (a fold with one class, no predicted positives) is no divergence:
    # it read as one, with advice about step sizes (found trying nbtune as a new user)
    undefined = {t.number: u for t in trials if (u := _undefined(t)) is not None}
    # A metric whose name reads the other way (--minimize val_acc): its curves' "worse" is the model's better,
    # and they read as divergence (found trying nbtune as a new user); said once, instead of the curves' kinds
    reads_as = metric_reads_as(result.metric)
    turned_round = (reads_as == "score" and not maximize) or (reads_as == "error" and maximize)
    for t in trials:
        if t.number in undefined:
            continue
        if failed_diverging(t):
            diverged[t.number] = "a non-finite metric or an overflow"
        elif folds or turned_round:
            continue
        elif (how := _ended_worse(curve := curves[t.number], maximize, scale, usual_start, jitter)) == "collapsed":
            diverged[t.number] = "a learning curve that ended worse than it started"
        elif how == "turned":
            best_epoch = sorted(t.intermediate_values)[curve.index((max if maximize else min)(curve))]
            turned[t.number] = f"a validation curve best at epoch {best_epoch} that ended worse than it started"
        elif t.state.name == "COMPLETE" and (at := _peaked(curve, maximize, noise)) is not None:
            peaked[t.number] = sorted(t.intermediate_values)[at]
    # A minimized loss that came out orders of magnitude above the others' from its first epoch on
    # (7.3e15 where the median trial's is 0.3: SGD at a learning rate too large): its curve never
    # "ended worse", so it read as a trial like the others (found trying nbtune as a new user)
    if not maximize:
        ended = [t.value for t in trials if t.state.name == "COMPLETE" and t.value is not None]
        typical = statistics.median(ended) if len(ended) >= 5 else 0.0
        for t in trials:
            if typical > 0 and t.number not in diverged and t.value is not None and t.value > 1000 * typical:
                diverged[t.number] = f"a {result.metric} {fmt(t.value / typical)} times the median trial's"
    # A NaN the cell sets itself ('except ValueError: acc = float("nan")' where a solver rejects a
    # penalty) is its verdict on the configuration, not a divergence (the advice spoke of step sizes;
    # found trying nbtune as a new user)
    own = _set_to_nan(result.study, result.metric)
    verdict = {
        n: why
        for n, why in diverged.items()
        if own and str(by_number[n].user_attrs.get(ATTR.ERROR, "")).startswith("MetricError")
    }
    for n in verdict:
        del diverged[n]
    if len(peaked) >= 2:  # one curve that sags at its end is noise as often as not
        first, last = min(peaked.values()), max(peaked.values())
        where = f"epoch {first}" if first == last else f"epochs {first}-{last}"
        for n in peaked:
            turned[n] = f"a validation curve best at {where} that then worsened to its end"

    # Did not learn: flat curves, or several trials stuck at exactly the worst final score.
    # The scale of "flat": how far apart the other trials' results are (diverged ones excluded:
    # a loss of 1e30 would make every curve look flat).
    finals = [
        t.value for t in trials if t.state.name == "COMPLETE" and t.value is not None and t.number not in diverged
    ]
    spread = (max(finals) - min(finals)) if len(finals) > 1 else 0.0
    flat: dict[int, str] = {}
    epochs = not folds and any(len(t.intermediate_values) > 1 for t in trials)
    fit = [] if turned_round else _fit(result, trials, maximize, epochs)
    if len(finals) >= 4 and spread > 0 and not folds and not turned_round:
        median = statistics.median(finals)
        for t in trials:
            values = curves[t.number]
            # Flat from the first epoch, at a poor level: worse than the median trial by a quarter
            # of the spread (a curve that is flat at a good value learned in its first epoch).
            poor = (median - values[-1] if maximize else values[-1] - median) > 0.25 * spread if values else False
            if t.number not in diverged and len(values) >= 3 and max(values) - min(values) <= 0.01 * spread and poor:
                flat[t.number] = f"a flat learning curve at {fmt(values[-1])}"

    failed: dict[str, list[int]] = defaultdict(list)
    slow = [t for t in trials if ATTR.TIMED_OUT in t.user_attrs]
    for t in trials:
        if (
            t.state.name == "FAIL"
            and t.number not in diverged
            and t.number not in undefined
            and t.number not in verdict  # (said once, as the cell's verdict)
            and ATTR.TIMED_OUT not in t.user_attrs
        ):
            failed[t.user_attrs.get(ATTR.FAILURE) or t.user_attrs.get(ATTR.ERROR) or "an error"].append(t.number)

    others = [t for t in trials if t.state.name == "COMPLETE" and t.number not in diverged and t.number not in flat]
    over = {n for f in fit if f.kind == "overfitting" for n in f.trials}  # a recorded training score said it
    turned = {n: why for n, why in turned.items() if n not in over}
    # how many trials' loops ended worse than they started, whatever their values
    scheduler = (result.study.user_attrs.get(ATTR.CONFIG) or {}).get("scheduler")
    continued = continuations(trials)  # a paused trial that went on is one configuration, seen at its furthest
    with_curves = {t.number: c for t in trials if t.number not in continued and len(c := curves[t.number]) > 1}
    rising = [n for n, c in with_curves.items() if ((c[-1] < c[0]) if maximize else (c[-1] > c[0]))]
    # (nearly) every trial's values grew over the loop, some of them far, whatever its hyperparameters
    worsened = (
        not folds
        and not turned_round
        and len(with_curves) >= 4
        and len(rising) >= 0.9 * len(with_curves)
        and any(_ended_worse(with_curves[n], maximize, scale) == "collapsed" for n in rising)
    )
    if worsened:
        # a running error over a simulation's time steps was called diverged, with the advice to
        # move the range away from the true parameters (found trying nbtune as a new user)
        findings.append(
            Finding(
                "worsened over the loop",
                sorted(rising),
                f"nearly all: {len(rising)} of {len(with_curves)} curves ended worse than they started",
                "",
                "if the loop's steps are not epochs a model learns in (a simulation's time steps, an "
                "error summed as it goes), its values are no learning curve: compare trials at their "
                + (
                    "end (no '# tune: epochs' mark: the trials are compared at their end already, but "
                    "the curves and this diagnosis read the loop as epochs)"
                    if scheduler == "none"
                    else "end (--scheduler none, or no '# tune: epochs' mark)"
                )
                + "; if it is training, the cell's updates make every configuration worse (a sign, a scale)",
            )
        )
    for kind, hits in (("diverged", diverged), ("did not learn", flat), ("overfitting", turned)):
        if hits:
            # the same evidence once, with how many trials share it: "6 trials ... (at 0.1, 2 trials; ...)"
            counts = Counter(hits.values())
            why = [text + (f", {n} trials" if 1 < n < len(hits) else "") for text, n in counts.most_common()]
            hit = [by_number[n] for n in sorted(hits)]
            rest = [t for t in others if t.number not in hits]
            region = _region(hit, rest)
            advice = _advice(kind, region, epochs)
            if kind == "diverged" and not any(t.number not in hits for t in trials):
                # every trial, whatever its values: no range to move (an expm1 of a price blew up a Ridge
                # search, and the advice spoke of learning rates and gradients; found trying nbtune)
                advice = (
                    "every trial diverged, whatever its hyperparameters: look at the cell's computation rather than "
                    "a range (an exp of large numbers, a log of 0, a division by 0, predictions back-transformed "
                    "from another scale)"
                )
            by_curve = [n for n, text in hits.items() if text.startswith("a learning curve")]
            if kind == "diverged" and worsened and by_curve:
                continue  # said below, as the loop's own doing
            findings.append(Finding(kind, sorted(hits), "; ".join(why), region, advice))
    if undefined:
        warned = Counter(w for w, _ in undefined.values()).most_common(1)[0][0]
        folds_at = sorted({f for _, f in undefined.values() if f})
        hit = [by_number[n] for n in sorted(undefined)]
        findings.append(
            Finding(
                "metric undefined",
                sorted(undefined),
                f"{result.metric} came out NaN after {warned!r}" + (f" ({', '.join(folds_at)})" if folds_at else ""),
                _region(hit, [t for t in trials if t.number not in undefined]),
                ADVICE["metric undefined"],
            )
        )
    if verdict:
        hit = [by_number[n] for n in sorted(verdict)]
        where = ", ".join(map(str, own))
        findings.append(
            Finding(
                "set to NaN by the cell",
                sorted(verdict),
                f"{result.metric} came out NaN or infinite, as the cell sets it itself (line{'s' if len(own) > 1 else ''} "
                f"{where})",
                _region(hit, [t for t in trials if t.number not in verdict]),
                "the cell's own verdict on these configurations (a solver that rejects a penalty, say): they count "
                "as the worst results, and the search moves away from them; narrow the range to leave them out if "
                "they are known not to work",
            )
        )
    for signature, numbers in failed.items():
        example = by_number[numbers[0]].user_attrs.get(ATTR.ERROR, "")
        hit = [by_number[n] for n in numbers]
        rest = [t for t in trials if t.number not in numbers]
        evidence = signature + (f", e.g. {example!r}" if example and example not in signature else "")
        # two failures share a region by chance as often as not, and nbtune's own CellError (a loop
        # that ran another length, say) is the code's, whatever the trials' values
        region = _region(hit, rest) if len(hit) >= 3 and not signature.startswith("CellError") else ""
        findings.append(Finding("failed", numbers, evidence, region, ADVICE["failed"]))
    if slow:
        findings.append(_ran_past_the_limit(slow, trials, maximize, "fold" if folds else "epoch"))
    findings.extend(fit)
    findings.extend(_warned(trials, by_number, {**diverged, **{n: w for n, (w, _) in undefined.items()}}))
    findings.extend(_lopsided_folds(trials))
    findings.sort(key=lambda f: -len(f.trials))
    if turned_round and any(t.state.name == "COMPLETE" for t in trials):
        other = "--maximize" if reads_as == "score" else "--minimize"
        findings.insert(
            0,
            Finding(
                f"{result.direction}d {'a score' if reads_as == 'score' else 'an error'}",
                # the configurations: a paused trial's continuation is the same one (it counted 4 where the header
                # said 3/3 trials finished: found trying nbtune as a new user)
                [t.number for t in trials if ATTR.PROMOTED not in t.user_attrs],
                f"{result.metric!r} reads like {'a score' if reads_as == 'score' else 'an error or a loss'}",
                "",
                f"if {'higher' if reads_as == 'score' else 'lower'} is better, the best trial is the worst model and "
                f"the learning curves read the other way round (they are not diagnosed); run with {other} "
                f"{result.metric} (a new study)",
            ),
        )
    return findings


def _warned(
    trials: list[optuna.trial.FrozenTrial], by_number: dict[int, optuna.trial.FrozenTrial], diverged: dict[int, str]
) -> list[Finding]:
    """The warnings trials printed (``ATTR.WARNINGS``), one finding per category and message, the
    numbers in the message left out ("lbfgs failed to converge after 100 iteration(s)" and
    "... after 288 ..." are one)."""
    hits: dict[str, list[int]] = defaultdict(list)
    example: dict[str, str] = {}
    for t in trials:
        if t.number in diverged:  # said already, and that is the trial's story
            continue
        for w in t.user_attrs.get(ATTR.WARNINGS) or ():
            if _about_the_code(w):
                continue
            key = re.sub(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", w)
            if not hits[key] or hits[key][-1] != t.number:
                hits[key].append(t.number)
            example.setdefault(key, w)
    out = []
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    for key, numbers in hits.items():
        hit = [by_number[n] for n in numbers]
        rest = [t for t in finished if t.number not in numbers]
        region = _region(hit, rest) if len(hit) >= 3 else ""
        text = example[key] if len(example[key]) <= 160 else example[key][:157] + "..."
        out.append(Finding("warned", numbers, repr(text), region, _warning_advice(key, region), {"warning": key}))
    return out


def _lopsided_folds(trials: list[optuna.trial.FrozenTrial]) -> list[Finding]:
    """Trials whose mean over the folds is one fold's: a fold's value a hundred times the other
    folds' median, in two trials or more (a MAPE over a fold with zero actuals, 2.9e15 beside
    0.03: the search tuned to two Christmas days; found trying nbtune as a new user)."""
    hits: dict[int, str] = {}
    for t in trials:
        folds = t.user_attrs.get(ATTR.FOLDS)
        if t.state.name != "COMPLETE" or not isinstance(folds, list) or len(folds) < 3:
            continue
        sizes = [abs(float(v)) for v in folds if is_number(v) and math.isfinite(float(v))]
        if len(sizes) != len(folds):
            continue
        worst = max(range(len(sizes)), key=sizes.__getitem__)
        rest = statistics.median(sizes[:worst] + sizes[worst + 1 :])
        if sizes[worst] > 100 * rest and sizes[worst] > 1e-12:
            hits[t.number] = f"fold {worst}'s {fmt(folds[worst])} against a median of {fmt(rest)} over the others"
    if len(hits) < 2:
        return []
    example = next(iter(hits.values()))
    return [
        Finding(
            "dominated by one fold",
            sorted(hits),
            f"e.g. {example}",
            "",
            "the mean over the folds is that fold's value, so the search tunes to that fold: look at its data (a "
            "metric divided by values near 0, as a MAPE is by zero actuals; a fold with very few examples), or "
            "use a metric that stays on one scale there",
        )
    ]


def _about_the_code(warning: str) -> bool:
    """A warning about the code rather than the trial's result: a deprecation, by its category
    (``DeprecationWarning``, ``FutureWarning`` and the libraries' own kinds of them, such as
    pandas' ``Pandas4Warning``, a DeprecationWarning under another name) or by its words."""
    category, _, message = warning.partition(": ")
    if category in _CODE_WARNINGS or "Deprecat" in category or "Future" in category:
        return True
    if re.fullmatch(r"[A-Za-z]+\d+Warning", category):  # Pandas4Warning, RemovedInDjango60Warning
        return True
    words = message.lower()
    return any(w in words for w in ("deprecated", "will be removed", "in a future version", "is deprecated"))


def _warning_advice(warning: str, region: str) -> str:
    """What a warning asks for, turned toward the region (where it came, one parameter apart)."""
    where = f" where {region}" if region else ""
    if warning.startswith("ConvergenceWarning"):
        return (
            "these models stopped before they converged and were scored as they stopped: raise the iteration "
            f"limit (max_iter){where}, or scale the features"
        )
    if warning.startswith("RuntimeWarning") and any(w in warning for w in ("overflow", "invalid value", "divide")):
        return (
            f"numbers overflowed or became NaN{where}: lower the range's top (step sizes first), or scale the features"
        )
    return ADVICE["warned"]


_VALIDATION_WORDS = ("validation", "valid", "val", "dev", "eval")


def _train_names(metric: str) -> set[str]:
    """The names of the training score that measures what ``metric`` measures: ``val_auc`` ->
    ``train_auc``, ``valid_loss`` -> ``train_loss``, ``acc`` -> ``train_acc`` or ``acc_train``. A
    ``train_loss`` next to a ``val_auc`` is another measure, on another scale and perhaps in the
    other direction: reading it as the metric's training score turned the advice around."""
    parts = metric.split("_")
    out = {"_".join("train" if p.lower() in _VALIDATION_WORDS else p for p in parts)} - {metric}
    if not out:
        out = {f"train_{metric}", f"{metric}_train"}
    return out


def _train_name(t: optuna.trial.FrozenTrial, metric: str) -> str | None:
    names = _train_names(metric)
    return next((str(k) for k in t.user_attrs.get(ATTR.RECORD) or {} if k in names), None)


def _fit_advice(kind: str, region: str, epochs: bool) -> str:
    """What to change for over- or underfitting: where (the region, when one parameter separates
    those trials), and the epochs only for a cell that has them."""
    where = f" where {region}" if region else ""
    if kind == "overfitting":
        return f"more regularisation (weight decay, dropout, smaller models){where}, more data" + (
            f", or fewer epochs{where}" if epochs else ""
        )
    return f"bigger models or less regularisation{where}" + ("; more epochs" if epochs else "")


def _fit(
    result: StudySummary, trials: list[optuna.trial.FrozenTrial], maximize: bool, epochs: bool = True
) -> list[Finding]:
    """Over- and underfitting from a recorded training score, against the best trial: a gap
    between training and validation well above the best trial's is overfitting, a training
    score in the worst quarter, well below the best trial's, is underfitting; each only where it
    costs (overfit trials no better than the median trial on validation, underfit ones well below
    the best trial)."""
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None and _train_name(t, result.metric)]
    if len(done) < 4:
        return []
    name = _train_name(done[0], result.metric)
    assert name is not None
    train = {t.number: float(v) for t in done if is_number(v := t.user_attrs[ATTR.RECORD].get(name))}
    done = [t for t in done if t.number in train]
    sign = 1.0 if maximize else -1.0
    gap = {t.number: sign * (train[t.number] - float(t.value)) for t in done}  # type: ignore[arg-type]
    # the best trial the search could choose: one that meets the guardrails (--subject-to)
    feasible = [t for t in done if is_feasible(t)] or done
    best = (max if maximize else min)(feasible, key=lambda t: t.value)  # type: ignore[arg-type, return-value]
    spread = max(train.values()) - min(train.values())
    if spread <= 0:
        return []
    out = []
    values = [float(t.value) for t in done]  # type: ignore[arg-type]
    median_value = statistics.median(values)
    # The validation score's step, when it moves in steps (trials tie): an accuracy over 40 examples
    # moves by 0.025, one example. A gap that differs from the best trial's by a step or two is one
    # or two examples, not a signature.
    distinct = sorted(set(values))
    step = min((b - a for a, b in itertools.pairwise(distinct)), default=0.0) if len(distinct) < len(values) else 0.0
    # Overfit: a train-validation gap well above the best trial's, and it costs: worse than the median trial.
    # A trial that also fits the training data worse than the best trial (by more than a quarter of the
    # spread) is no overfit one: a larger gap there comes from a model that cannot follow the data (an
    # underfit model extrapolating a trend: the most regularised trial was told to regularise more,
    # found trying nbtune as a new forecasting user).
    over = [
        t
        for t in done
        if gap[t.number] > gap[best.number] + max(0.5 * abs(gap[best.number]), 0.25 * spread, 2 * step)
        and sign * (float(t.value) - median_value) <= 0  # type: ignore[arg-type]
        and sign * (train[t.number] - train[best.number]) >= -0.25 * spread
    ]
    if over and len(over) < len(done):
        out.append(
            Finding(
                "overfitting",
                [t.number for t in over],
                f"{name} beats {result.metric} by {fmt(statistics.median(gap[t.number] for t in over))} (median), "
                f"against {fmt(gap[best.number])} for the best trial",
                region := _region(over, [t for t in done if t not in over]),
                _fit_advice("overfitting", region, epochs),
            )
        )
    ranked = sorted(done, key=lambda t: sign * train[t.number])
    quarter = ranked[: max(1, len(ranked) // 4)]
    # Underfit: among the worst quarter on training data, well below the best trial there, and it
    # costs: below the best trial on validation by more than a step, and by more than a quarter of
    # the trials' spread there (with four trials one is always in the worst quarter; one that ties
    # for the best validation score, or the second best of ten with a training score of 0.982
    # against 1, is no model that cannot fit: found trying nbtune as a new user).
    limit = train[best.number] - sign * 0.5 * spread
    costs = max(step, 0.25 * (max(values) - min(values)))
    under = [
        t
        for t in quarter
        if sign * (limit - train[t.number]) > 0
        and sign * (float(best.value) - float(t.value)) > costs  # type: ignore[arg-type]
        and t not in over
    ]
    if under:
        worst_train = (max if maximize else min)(train[t.number] for t in under)
        out.append(
            Finding(
                "underfitting",
                [t.number for t in under],
                f"{name} in the worst quarter, {fmt(worst_train)} at best against {fmt(train[best.number])} for "
                "the best trial: the model cannot fit the training data",
                region := _region(under, [t for t in done if t not in under]),
                _fit_advice("underfitting", region, epochs),
            )
        )
    return out


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    """``res.diagnose()``: one row per finding."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "kind": f.kind,
                "n_trials": len(f.trials),
                "trials": f.trials,
                "evidence": f.evidence,
                "region": f.region,
                "advice": f.advice,
            }
            for f in findings
        ],
        columns=["kind", "n_trials", "trials", "evidence", "region", "advice"],
    )
