"""Schedulers (Hyperband, ASHA, median): a registry, and the reasons behind each stop.

The decisions are Optuna's own pruners', configured with explicit resources so every
process agrees on brackets and rungs (``"auto"`` would be inferred per process). A thin
wrapper, :class:`ExplainedPruner`, records *why* a trial was stopped in the store: the
epoch and rung, the trial's value, the cutoff it missed, how many trials it was
compared with, and its bracket. Names follow the Hyperband/ASHA papers: ``R`` the max
resource (epochs), ``r`` the min resource, ``eta`` the reduction factor, ``s`` the bracket.

Adding a scheduler is one :class:`BaseScheduler` subclass and one :func:`register_scheduler`.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from nbtune import _compat
from nbtune._registry import Registry
from nbtune.exceptions import ConfigError
from nbtune.store.attrs import ATTR, is_interrupted

if TYPE_CHECKING:
    import optuna

__all__ = [
    "SCHEDULERS",
    "BaseScheduler",
    "SchedulerSpec",
    "register_scheduler",
    "scheduler_kind",
    "make_pruner",
    "format_decision",
    "Promotion",
    "Rungs",
    "first_rung",
]

_logger = logging.getLogger(__name__)


def _count(n: int, noun: str) -> str:
    """ "1 epoch", "3 epochs"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def first_rung(R: int | None, eta: int, n: int) -> int:
    """r, the first rung's epochs, where ``n`` configurations can fill every rung of an
    ``R``-epoch loop (``--min-epochs`` when not given).

    Successive halving keeps ⌊n/eta⌋ of the trials at each rung, so ``n`` configurations fill
    k = ⌊log_eta n⌋ rungs before the last: r = ⌈R / eta**k⌉, at least one rung (scikit-learn's
    ``min_resources="exhaust"``, with the last comparison before R). A rung that fewer than eta
    configurations can reach keeps none of them on merit: 20 configurations over a 27-epoch loop
    from r=1 would be compared at 1, 3 and 9 epochs, where ⌊20/27⌋ = 0 would reach the end, and
    the search would spend most of its epochs on 1- and 3-epoch scraps. From r=3 (rungs at 3 and
    9) 2 of them go on to 27 epochs: over 30 seeds of ``benchmarks/bench_search.py --trials 20``
    that picked better on two of three tasks and as well on the third, spending 1.7-1.9x the epochs
    (README, Benchmarks (i)).
    """
    if R is None or eta < 2:  # (--eta below 2 is refused by SchedulerSpec, with the fix)
        return 1
    fill = eta  # eta**k for the k rungs n configurations fill
    while fill * eta <= n:
        fill *= eta
    return max(1, math.ceil(R / fill))


class BaseScheduler:
    """One ``--scheduler`` choice: which Optuna pruner decides, and how to explain a stop.

    Attributes:
        name: the option value.
        needs_epochs: it stops trials at epochs, so the cell needs a ``# tune: epochs`` loop.
        needs_R: it needs the epochs of a full trial (R) before the first trial runs.
        rungs: it compares trials at rungs r * eta**k (successive halving); with a declared state
            it pauses and promotes them (:meth:`pause_decision`, :meth:`promotion`).
        pauses: it always pauses and continues trials, so it needs a declared state (PBT).
    """

    name: ClassVar[str]
    needs_epochs: ClassVar[bool] = True
    needs_R: ClassVar[bool] = False
    rungs: ClassVar[bool] = False
    pauses: ClassVar[bool] = False

    def pause_decision(
        self, spec: SchedulerSpec, inner: Any, study: optuna.Study, trial: optuna.trial.FrozenTrial
    ) -> dict[str, Any] | None:
        """With ``spec.pause``: the decision to pause ``trial`` at the step it just reported, or None."""
        return None

    def promotion(
        self,
        spec: SchedulerSpec,
        inner: Any,
        study: optuna.Study,
        usable: Callable[[optuna.trial.FrozenTrial], bool],
        final: bool = False,
    ) -> Promotion | None:
        """With ``spec.pause``: the paused trial a free worker continues next, or None. ``final``:
        no new configuration will start and no trial runs (the search would end)."""
        return None

    def pruner(self, spec: SchedulerSpec) -> optuna.pruners.BasePruner | None:
        """Optuna's pruner for ``spec``; None for no early stopping."""
        return None

    def n_brackets(self, spec: SchedulerSpec) -> int:
        return 1

    def describe(self, spec: SchedulerSpec) -> str:
        return "no scheduler: every trial runs to its end"

    def explain(
        self,
        pruner: optuna.pruners.BasePruner,
        spec: SchedulerSpec,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        decision: dict[str, Any],
    ) -> dict[str, Any]:
        """Complete ``decision`` (epoch, value, scheduler) with the cutoff and the competitors."""
        return decision


SCHEDULERS: Registry[BaseScheduler] = Registry(
    "--scheduler", aliases={"successivehalving": "asha", "noppruner": "none", "patient": "median"}
)


def register_scheduler(scheduler: BaseScheduler) -> BaseScheduler:
    """Make ``scheduler`` available as ``--scheduler <scheduler.name>``."""
    return SCHEDULERS.register(scheduler.name, scheduler)


def scheduler_kind(name: str) -> BaseScheduler:
    """The registered scheduler called ``name`` (ConfigError listing the choices if there is none)."""
    return SCHEDULERS.lookup(name)


@dataclass(frozen=True)
class SchedulerSpec:
    """How trials are stopped early.

    Args:
        kind: a name in :data:`SCHEDULERS`.
        R: the max resource (epochs of a full trial).
        r: the min resource (epochs before the first rung).
        eta: the reduction factor: about 1/eta of trials continue at each rung.
        metric: the metric's name (for the reasons).
        direction: ``"maximize"`` or ``"minimize"``.
        unit: what a step is, for the reasons (``"epoch"``, ``"fold"``).
    """

    kind: str = "none"
    R: int | None = None
    r: int = 1
    eta: int = 3
    metric: str = "value"
    direction: str = "maximize"
    unit: str = "epoch"  # what a step is: "epoch", or "fold" with '# tune: folds'
    pause: bool = False  # pause-and-promote: a trial that is not (yet) in the top 1/eta at a rung waits
    population: int = 8  # PBT: members
    interval: int | None = None  # PBT: epochs between decisions
    perturb: tuple[str, ...] = ()  # PBT: the hyperparameters explore changes (those the epochs loop reads)

    def __post_init__(self) -> None:
        scheduler_kind(self.kind)
        if self.r < 1:
            raise ConfigError(f"--min-epochs must be >= 1, got {self.r}")
        if self.eta < 2:
            raise ConfigError(f"--eta must be >= 2 (the reduction factor), got {self.eta}")
        if self.scheduler.rungs and self.R is not None and self.r > self.R:
            raise ConfigError(f"the epochs loop has {self.R} epochs, fewer than --min-epochs {self.r}")
        if self.pause and not (self.scheduler.rungs or self.scheduler.pauses):
            raise ConfigError(f"pause-and-promote needs --scheduler hyperband or asha, not {self.kind}")

    @property
    def scheduler(self) -> BaseScheduler:
        return SCHEDULERS[self.kind]

    @property
    def n_brackets(self) -> int:
        return self.scheduler.n_brackets(self)

    def rung_epochs(self, s: int = 0) -> list[int]:
        """The epochs at which bracket ``s`` compares trials: r * eta**(s + k) < R."""
        if not self.scheduler.rungs:
            return []
        out: list[int] = []
        k = 0
        while True:
            e = self.r * self.eta ** (s + k)
            if (self.R is not None and e >= self.R) or (self.R is None and k > 20):
                return out
            out.append(e)
            k += 1

    def rung_of(self, step: int | None) -> int | None:
        """The highest rung (epoch r * eta**rung) a trial at epoch ``step`` has reached, or None."""
        if step is None or not self.scheduler.rungs or step < self.r:
            return None
        return math.floor(math.log(step / self.r, self.eta) + 1e-9)

    def describe(self) -> str:
        text = self.scheduler.describe(self)
        return (
            text + ", pause-and-promote" if self.pause and not self.scheduler.pauses else text
        )  # (PBT pauses its own way)


class _NoScheduler(BaseScheduler):
    name = "none"
    needs_epochs = False


class _SuccessiveHalving(BaseScheduler):
    """Shared by Hyperband and ASHA: the cutoff among the trials that reached the same rung."""

    needs_R = True
    rungs = True

    def pause_decision(
        self, spec: SchedulerSpec, inner: Any, study: optuna.Study, trial: optuna.trial.FrozenTrial
    ) -> dict[str, Any] | None:
        return _pause_decision(spec, inner, study, trial)

    def promotion(
        self,
        spec: SchedulerSpec,
        inner: Any,
        study: optuna.Study,
        usable: Callable[[optuna.trial.FrozenTrial], bool],
        final: bool = False,
    ) -> Promotion | None:
        return Rungs(spec, inner, study).promotion(usable, final)

    def _bracket(self, pruner: Any, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int | None:
        return None

    def explain(
        self,
        pruner: Any,
        spec: SchedulerSpec,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        decision: dict[str, Any],
    ) -> dict[str, Any]:
        maximize = spec.direction == "maximize"
        fresh = _compat.storage_of(study).get_trial(_compat.trial_id(trial))
        rung = max(_compat.completed_rung(fresh), 0)
        bracket = self._bracket(pruner, study, trial)
        peers = study.get_trials(deepcopy=False)
        if bracket is not None:
            peers = [t for t in peers if self._bracket(pruner, study, t) == bracket]
        competing = [v for t in peers if t.number != trial.number and (v := _compat.rung_value(t, rung)) is not None]
        mine = _compat.rung_value(fresh, rung)
        value = mine if mine is not None else decision["value"]
        competing.append(value)
        n = len(competing)
        n_keep = max(n // spec.eta, 1)
        cutoff = sorted(competing, reverse=maximize)[n_keep - 1]
        # Rungs are numbered as epochs r * eta**rung, the same in every bracket.
        decision.update(
            rung=rung + (bracket or 0), cutoff=cutoff, n_compared=n, n_keep=n_keep, bracket=bracket, value=value
        )
        decision["rule"] = f"top 1/{spec.eta} of the trials that reached this rung continue"
        return decision


class _Hyperband(_SuccessiveHalving):
    name = "hyperband"

    def pruner(self, spec: SchedulerSpec) -> optuna.pruners.BasePruner:
        import optuna

        return optuna.pruners.HyperbandPruner(
            min_resource=spec.r, max_resource=int(spec.R or 0), reduction_factor=spec.eta
        )

    def _bracket(self, pruner: Any, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int | None:
        return _compat.bracket_of(pruner, study, trial)

    def n_brackets(self, spec: SchedulerSpec) -> int:
        if spec.R is None:
            return 1
        return math.floor(math.log(spec.R / spec.r, spec.eta) + 1e-9) + 1

    def describe(self, spec: SchedulerSpec) -> str:
        return f"Hyperband (r={spec.r}, R={spec.R}, eta={spec.eta}, {_count(spec.n_brackets, 'bracket')})"


class _Asha(_SuccessiveHalving):
    name = "asha"

    def pruner(self, spec: SchedulerSpec) -> optuna.pruners.BasePruner:
        import optuna

        return optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.r, reduction_factor=spec.eta)

    def describe(self, spec: SchedulerSpec) -> str:
        rungs = spec.rung_epochs()
        if not rungs:  # a loop as short as the first rung: nothing to compare before the end
            return (
                f"ASHA (r={spec.r}, R={spec.R}, eta={spec.eta}: no rung before the last {spec.unit}, every trial runs to "
                "the end)"
            )
        return f"ASHA (r={spec.r}, R={spec.R}, eta={spec.eta}, rungs at {spec.unit}s {rungs})"


class _Median(BaseScheduler):
    name = "median"

    def pruner(self, spec: SchedulerSpec) -> optuna.pruners.BasePruner:
        import optuna

        # steps are epochs done (from 1); Optuna's earliest stop is at step == n_warmup_steps
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=spec.r)

    def describe(self, spec: SchedulerSpec) -> str:
        return f"median stopping (after {_count(spec.r, spec.unit)})"  # folds, with '# tune: folds'

    def explain(
        self,
        pruner: Any,
        spec: SchedulerSpec,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        decision: dict[str, Any],
    ) -> dict[str, Any]:
        step = decision["epoch"]
        others = sorted(
            t.intermediate_values[step]
            for t in study.get_trials(deepcopy=False)
            if t.state.name == "COMPLETE" and step in t.intermediate_values
        )
        half = len(others) // 2
        median = others[half] if len(others) % 2 else sum(others[half - 1 : half + 1]) / 2
        best = (max if spec.direction == "maximize" else min)(
            v for s, v in trial.intermediate_values.items() if s <= step
        )
        decision.update(value=best, cutoff=median, n_compared=len(others), rung=None, bracket=None)
        decision["rule"] = "best so far worse than the median of completed trials at this epoch"
        return decision


for _scheduler in (_Hyperband(), _Asha(), _Median(), _NoScheduler()):
    register_scheduler(_scheduler)


# Pause-and-promote -------------------------------------------------------------------------
#
# Successive halving as its papers define it (Jamieson & Talwalkar 2016; ASHA, Li et al. 2020):
# a trial that reaches a rung goes on only if it is in the top 1/eta of the trials that reached
# that rung *so far*. One that is not (yet), including the first arrivals, which have no peers
# to beat, is *paused*: its state is saved and its worker takes other work. When more trials
# have reached the rung, a paused trial that now ranks in the top 1/eta is *promoted*: a worker
# continues it from its checkpoint (a new Optuna trial, which replays its curve and carries
# ``nbtune:promoted``). Workers promote before they start new configurations, highest rung
# first, as ASHA does. Stop-only successive halving (Optuna's pruners) instead lets the first
# arrivals at a rung through unopposed, and stops for good those that rank low early.


@dataclass(frozen=True)
class Promotion:
    """A paused trial that ranks in the top 1/eta of its rung now."""

    trial: optuna.trial.FrozenTrial
    epoch: int
    rank: int  # 1 = best of the trials that reached this rung
    n_compared: int
    n_keep: int
    value: float
    source: optuna.trial.FrozenTrial | None = None  # whose checkpoint it continues from (PBT: a donor's)
    params: dict[str, Any] | None = None  # its configuration from now on (PBT: perturbed)
    note: dict[str, Any] | None = None  # PBT: the exploit/explore decision


def _breaks(trial: optuna.trial.FrozenTrial) -> dict[str, float]:
    """The guardrails ``trial`` breaks so far ({label: violation}; empty: none, or not known yet)."""
    breaks = trial.user_attrs.get(ATTR.BREAKS)
    return dict(breaks["by"]) if breaks else {}


def _breaks_decision(spec: SchedulerSpec, trial: optuna.trial.FrozenTrial, breaks: dict[str, float]) -> dict[str, Any]:
    """The stop of a trial that breaks a guardrail when it reaches a rung: however it scores, it
    cannot be the search's pick, so it takes no place from one that can (found trying nbtune as a
    new user: trials over a size budget were promoted to the end and the ones within it left
    paused, and the search ended with no complete trial that met the guardrails)."""
    step = trial.last_step
    which = ", ".join(f"{label!r} (by {by:.4g})" for label, by in breaks.items())
    return {
        "epoch": step,
        "value": trial.intermediate_values.get(step) if step is not None else None,
        "scheduler": spec.kind,
        "rung": spec.rung_of(step),
        "breaks": breaks,
        "reason": f"it breaks the guardrail {which}: only trials that meet the guardrails go on",
    }


def _is_paused(trial: optuna.trial.FrozenTrial) -> bool:
    return trial.state.name == "PRUNED" and bool(trial.user_attrs.get(ATTR.DECISION, {}).get("paused"))


class Rungs:
    """The values successive halving compares at each rung, per bracket, for pause-and-promote.

    A paused trial that was promoted is represented by its continuation (which replays its
    curve), and an interrupted trial by its re-run, so no configuration counts twice.
    """

    def __init__(self, spec: SchedulerSpec, inner: Any, study: optuna.Study) -> None:
        self.spec, self.inner, self.study = spec, inner, study
        trials = study.get_trials(deepcopy=False)
        self._by_number = {t.number: t for t in trials}
        superseded = {t.user_attrs[ATTR.PROMOTED]["from"] for t in trials if ATTR.PROMOTED in t.user_attrs}
        self.trials = [t for t in trials if t.number not in superseded and not is_interrupted(t)]
        self._brackets: dict[int, int | None] = {}
        # (bracket, epoch) -> (the value of each trial that reached it, their non-NaN values sorted)
        self._rungs: dict[tuple[int | None, int], tuple[dict[int, float], list[float]]] = {}
        self._went: dict[tuple[int | None, int], bool] = {}  # (bracket, epoch) -> a competitor went on from it

    def root(self, trial: optuna.trial.FrozenTrial) -> int:
        """The number of the trial that started this configuration (its bracket's)."""
        promoted = trial.user_attrs.get(ATTR.PROMOTED)
        if promoted:
            return int(promoted["root"])
        return int(trial.user_attrs.get(ATTR.RERUN_OF, trial.number))

    def bracket(self, trial: optuna.trial.FrozenTrial) -> int | None:
        if self.spec.kind != "hyperband":
            return None
        root = self.root(trial)
        if root not in self._brackets:
            self._brackets[root] = _compat.bracket_of(self.inner, self.study, self._by_number.get(root, trial))
        return self._brackets[root]

    def _rung(self, bracket: int | None, epoch: int) -> tuple[dict[int, float], list[float]]:
        """The trials of ``bracket`` that reached ``epoch``: each one's value there, and the
        values that are numbers, sorted. Built once per rung: a promotion looks up every paused
        trial's standing, which would otherwise scan the study once per paused trial."""
        key = (bracket, epoch)
        if key not in self._rungs:
            reached = {  # (one that breaks a guardrail ranks last: it cannot be the pick)
                t.number: v if not _breaks(t) else math.nan
                for t in self.trials
                if (v := t.intermediate_values.get(epoch)) is not None and self.bracket(t) == bracket
            }
            self._rungs[key] = reached, sorted(v for v in reached.values() if not math.isnan(v))
        return self._rungs[key]

    def standing(self, trial: optuna.trial.FrozenTrial, epoch: int, value: float) -> tuple[int, int, int, list[float]]:
        """(rank of ``value``, trials compared, how many go on, the values best first) at ``epoch``
        among the trials of ``trial``'s bracket; a NaN value reached the rung and ranks last."""
        reached, numbers = self._rung(self.bracket(trial), epoch)
        own = reached.get(trial.number)  # the trial's own record of the rung is not a competitor
        numbers = numbers.copy()  # the rung's list is shared by every lookup
        if own is not None and not math.isnan(own):
            numbers.remove(own)
        maximize = self.spec.direction == "maximize"
        if math.isnan(value):
            better = len(numbers)
        elif maximize:
            better = len(numbers) - bisect.bisect_right(numbers, value)
        else:
            better = bisect.bisect_left(numbers, value)
        n = len(reached) - (own is not None) + 1
        if not math.isnan(value):
            bisect.insort(numbers, value)
        return better + 1, n, n // self.spec.eta, numbers[::-1] if maximize else numbers

    def promotion(self, usable: Callable[[optuna.trial.FrozenTrial], bool], final: bool = False) -> Promotion | None:
        """The paused trial to continue next: one in the top 1/eta of its rung now, from the
        highest rung first, the best first; ``usable`` says whether its checkpoint is there.

        ``final``: no more trials will reach any rung. Successive halving then keeps at least one
        trial per rung, as its papers do (⌊n/eta⌋, but at least 1): where none of the trials that
        reached a rung went on (fewer than eta got there, or the baseline took the only place: it
        runs to the end whatever its rank, it does not compete), the best paused one does.
        """
        maximize = self.spec.direction == "maximize"
        found: list[Promotion] = []
        at_end: dict[tuple[int | None, int], Promotion] = {}  # per rung no trial went on from: its best
        for t in self.trials:
            if not _is_paused(t) or _breaks(t):
                continue
            epoch = int(t.user_attrs[ATTR.DECISION]["epoch"])
            value = t.intermediate_values.get(epoch)
            if value is None or math.isnan(value):
                continue
            rank, n, n_keep, _ = self.standing(t, epoch, value)
            if rank <= n_keep:
                found.append(Promotion(t, epoch, rank, n, n_keep, value))
            elif final and not self._went_on(t, epoch):
                best = at_end.get(key := (self.bracket(t), epoch))
                if best is None or (value > best.value if maximize else value < best.value):
                    at_end[key] = Promotion(t, epoch, rank, n, max(n_keep, 1), value)
        found += at_end.values()
        found.sort(key=lambda p: (-p.epoch, -p.value if maximize else p.value))
        return next((p for p in found if usable(p.trial)), None)

    def _went_on(self, trial: optuna.trial.FrozenTrial, epoch: int) -> bool:
        """Whether a trial of ``trial``'s bracket went on past ``epoch`` (the baseline always runs to
        the end, so it does not count: it never competed for the place)."""
        key = (self.bracket(trial), epoch)
        if key not in self._went:  # once per rung: at the end of a search every paused trial asks
            self._went[key] = any(
                epoch in t.intermediate_values
                and max(t.intermediate_values) > epoch
                and not t.user_attrs.get(ATTR.BASELINE)
                and self.bracket(t) == key[0]
                for t in self.trials
            )
        return self._went[key]


def _pause_decision(
    spec: SchedulerSpec, inner: Any, study: optuna.Study, trial: optuna.trial.FrozenTrial
) -> dict[str, Any] | None:
    """Pause ``trial`` at the rung it just reached, unless it is in the top 1/eta there: the
    decision to record, or None to go on."""
    step = trial.last_step
    if step is None:
        return None
    # Most epochs cross no rung: the trials are gathered only when this one did (Hyperband needs
    # them first, to know the trial's bracket and so its rungs).
    rungs = Rungs(spec, inner, study) if spec.kind == "hyperband" else None
    bracket = rungs.bracket(trial) if rungs is not None else None
    previous = max((s for s in trial.intermediate_values if s < step), default=0)
    crossed = [e for e in spec.rung_epochs(bracket or 0) if previous < e <= step]
    if not crossed:
        return None
    rungs = rungs or Rungs(spec, inner, study)
    epoch = crossed[-1]
    value = trial.intermediate_values[epoch]
    rank, n, n_keep, ordered = rungs.standing(trial, epoch, value)
    if rank <= n_keep:
        return None
    return {
        "epoch": epoch,
        "value": value,
        "scheduler": spec.kind,
        "paused": True,
        "rung": spec.rung_of(epoch),
        "bracket": bracket,
        "rank": rank,
        "n_compared": n,
        "n_keep": n_keep,
        "eta": spec.eta,
        "cutoff": ordered[n_keep - 1] if n_keep else None,
        "rule": f"the top 1/{spec.eta} of the trials that reached this rung go on; the others wait to be promoted",
    }


def make_pruner(spec: SchedulerSpec) -> optuna.pruners.BasePruner:
    """The Optuna pruner for ``spec``, wrapped so that it records its reasons."""
    import optuna

    inner = spec.scheduler.pruner(spec)
    if inner is None and not spec.pause:
        return optuna.pruners.NopPruner()
    pruner: optuna.pruners.BasePruner = _explained_pruner_class()(inner, spec)
    return pruner


class _LazyClass:
    """ExplainedPruner subclasses Optuna's BasePruner, so it is defined on first use:
    ``import nbtune`` must not import optuna."""

    cls: Any = None


def _explained_pruner_class() -> Any:
    if _LazyClass.cls is not None:
        return _LazyClass.cls
    import optuna

    class ExplainedPruner(optuna.pruners.BasePruner):
        """Delegates every decision to an Optuna pruner and writes down why it pruned."""

        def __init__(self, inner: optuna.pruners.BasePruner, spec: SchedulerSpec) -> None:
            self._inner = inner
            self._spec = spec

        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            breaks = _breaks(trial)
            if breaks and self._compares_at(trial.last_step):
                stop = _breaks_decision(self._spec, trial, breaks)
                _compat.storage_of(study).set_trial_user_attr(_compat.trial_id(trial), ATTR.DECISION, stop)
                return True
            if self._spec.pause and ATTR.CHECKPOINT_ERROR not in trial.user_attrs:
                paused = self._spec.scheduler.pause_decision(self._spec, self._inner, study, trial)
                if paused is None:
                    return False
                _compat.storage_of(study).set_trial_user_attr(_compat.trial_id(trial), ATTR.DECISION, paused)
                return True
            if self._inner is None or not self._inner.prune(study, trial):
                return False
            step = trial.last_step
            value = trial.intermediate_values[step] if step is not None else float("nan")
            decision: dict[str, Any] = {"epoch": step, "value": value, "scheduler": self._spec.kind}
            try:
                if isinstance(value, float) and math.isnan(value):
                    decision["reason"] = f"{self._spec.metric} is NaN"
                else:
                    decision = self._spec.scheduler.explain(self._inner, self._spec, study, trial, decision)
            except Exception:  # an explanation must never break the search
                _logger.exception("could not explain the stop of trial %d", trial.number)
                decision = {"epoch": step, "reason": "stopped by the scheduler"}
            if self._spec.unit != "epoch":
                decision["unit"] = self._spec.unit
            _compat.storage_of(study).set_trial_user_attr(_compat.trial_id(trial), ATTR.DECISION, decision)
            return True

        def _compares_at(self, step: int | None) -> bool:
            """The scheduler compares trials at ``step``: a rung of successive halving (bracket 0's
            rungs hold every bracket's), any epoch from the median rule's first; not PBT's."""
            spec = self._spec
            if step is None or spec.scheduler.pauses:
                return False
            if spec.scheduler.rungs:
                return step in spec.rung_epochs(0)
            return self._inner is not None and step >= spec.r

        def promotion(
            self, study: optuna.Study, usable: Callable[[optuna.trial.FrozenTrial], bool], final: bool = False
        ) -> Promotion | None:
            """Pause-and-promote: the paused trial a free worker continues next, or None."""
            if not self._spec.pause:
                return None
            return self._spec.scheduler.promotion(self._spec, self._inner, study, usable, final)

    _LazyClass.cls = ExplainedPruner
    return ExplainedPruner


def format_decision(
    number: int,
    decision: dict[str, Any],
    metric: str,
    direction: str,
    continued_as: int | None = None,
    ended: bool = False,
) -> str:
    """One sentence a person can read, e.g.

    ``trial 17 stopped at epoch 3 (rung 1): val_acc 0.62 < cutoff 0.71, only the top 3 of 9 go on``

    ``continued_as``: a paused trial's continuation (pause-and-promote), if it was promoted;
    ``ended``: it was paused when the search ended, so it stays stopped.
    """
    epoch = decision.get("epoch")
    head = f"trial {number} stopped at {decision.get('unit', 'epoch')} {epoch}"
    if decision.get("rung") is not None:
        head += f" (rung {decision['rung']}"
        if decision.get("bracket") is not None:
            head += f", bracket {decision['bracket']}"
        head += ")"
    if "reason" in decision:
        return f"{head}: {decision['reason']}"
    if decision.get("scheduler") == "pbt":
        head = f"trial {number} (member {decision.get('member')}) reached {decision.get('unit', 'epoch')} {epoch}"
        return head + (
            f", continued as trial {continued_as}" if continued_as is not None else ", waiting for the others"
        )
    if decision.get("paused"):
        head = head.replace("stopped", "paused", 1)
        value, n, n_keep = decision.get("value"), decision.get("n_compared"), decision.get("n_keep")
        if continued_as is not None:
            return f"{head}: {metric} {value:.4g} ranked {decision.get('rank')} of {n}; promoted later, continued as trial {continued_as}"
        if ended:
            then = f"only the top {n_keep} went on then" if n_keep else "too few had reached this rung for any to go on"
            return (
                f"{head.replace('paused', 'stopped', 1)}: {metric} {value:.4g} ranked {decision.get('rank')} of {n} "
                f"when it got there ({then}); it was paused, and not promoted before the search ended"
            )
        if not n_keep:
            return (
                f"{head}: {metric} {value:.4g}; only {_count(n or 0, 'trial')} reached this rung so far, too few "
                f"for any to go on (the top 1/{decision.get('eta')} do); it goes on if it ranks among them later"
            )
        return (
            f"{head}: {metric} {value:.4g} ranks {decision.get('rank')} of {n}, only the top {n_keep} go on "
            "for now; it goes on if it climbs into them as more trials reach this rung"
        )
    value, cutoff = decision.get("value"), decision.get("cutoff")
    op = "<" if direction == "maximize" else ">"
    if decision.get("scheduler") == "median":
        return (
            f"{head}: best {metric} {value:.4g} {op} median {cutoff:.4g} "
            f"of {decision.get('n_compared')} completed trials"
        )
    return (
        f"{head}: {metric} {value:.4g} {op} cutoff {cutoff:.4g}, "
        f"only the top {decision.get('n_keep')} of {decision.get('n_compared')} go on"
    )
