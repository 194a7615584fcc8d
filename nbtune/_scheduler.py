"""Schedulers (Hyperband, ASHA, median) and the reasons behind each stop.

The decisions are Optuna's own pruners', configured with explicit resources so every
process agrees on brackets and rungs (``"auto"`` would be inferred per process). A thin
wrapper, :class:`ExplainedPruner`, records *why* a trial was stopped in the store: the
epoch and rung, the trial's value, the cutoff it missed, how many trials it was
compared with, and its bracket. Names follow the Hyperband/ASHA papers: ``R`` the max
resource (epochs), ``r`` the min resource, ``eta`` the reduction factor, ``s`` the bracket.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbtune.exceptions import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["SchedulerSpec", "SCHEDULERS", "make_pruner", "format_decision"]

_logger = logging.getLogger(__name__)

SCHEDULERS = ("hyperband", "asha", "median", "none")


@dataclass(frozen=True)
class SchedulerSpec:
    """How trials are stopped early.

    Args:
        kind: one of :data:`SCHEDULERS`.
        R: the max resource (epochs of a full trial).
        r: the min resource (epochs before the first rung).
        eta: the reduction factor: about 1/eta of trials continue at each rung.
        metric: the metric's name (for the reasons).
        direction: ``"maximize"`` or ``"minimize"``.
    """

    kind: str = "none"
    R: int | None = None
    r: int = 1
    eta: int = 3
    metric: str = "value"
    direction: str = "maximize"

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULERS:
            raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}; got {self.kind!r}")
        if self.r < 1:
            raise ConfigError(f"--min-epochs must be >= 1, got {self.r}")
        if self.eta < 2:
            raise ConfigError(f"--eta must be >= 2 (the reduction factor), got {self.eta}")
        if self.kind in ("hyperband", "asha") and self.R is not None and self.R < self.r:
            raise ConfigError(f"the epochs loop has {self.R} epochs, fewer than --min-epochs {self.r}")

    @property
    def n_brackets(self) -> int:
        if self.kind != "hyperband" or self.R is None:
            return 1
        return math.floor(math.log(self.R / self.r, self.eta) + 1e-9) + 1

    def rung_epochs(self, s: int = 0) -> list[int]:
        """The epochs at which bracket ``s`` compares trials: r * eta**(s + k) < R."""
        if self.kind not in ("hyperband", "asha"):
            return []
        out: list[int] = []
        k = 0
        while True:
            e = self.r * self.eta ** (s + k)
            if self.R is not None and e >= self.R:
                return out
            if self.R is None and k > 20:
                return out
            out.append(e)
            k += 1

    def describe(self) -> str:
        if self.kind == "hyperband":
            return f"Hyperband (r={self.r}, R={self.R}, eta={self.eta}, {self.n_brackets} brackets)"
        if self.kind == "asha":
            return f"ASHA (r={self.r}, R={self.R}, eta={self.eta}, rungs at epochs {self.rung_epochs()})"
        if self.kind == "median":
            return f"median stopping (after {self.r} epochs)"
        return "no early stopping"


def make_pruner(spec: SchedulerSpec) -> optuna.pruners.BasePruner:
    """The Optuna pruner for ``spec``, wrapped so that it records its reasons."""
    import optuna

    if spec.kind == "hyperband":
        inner: optuna.pruners.BasePruner = optuna.pruners.HyperbandPruner(
            min_resource=spec.r, max_resource=int(spec.R or 0), reduction_factor=spec.eta
        )
    elif spec.kind == "asha":
        inner = optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.r, reduction_factor=spec.eta)
    elif spec.kind == "median":
        inner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=max(spec.r - 1, 0))
    else:
        return optuna.pruners.NopPruner()
    pruner: optuna.pruners.BasePruner = _explained_pruner_class()(inner, spec)
    return pruner


_EXPLAINED: Any = None


def _explained_pruner_class() -> Any:
    # Defined lazily so that `import nbtune` does not import optuna.
    global _EXPLAINED
    if _EXPLAINED is not None:
        return _EXPLAINED
    import optuna
    from optuna.trial import TrialState

    from nbtune._store import ATTR

    class ExplainedPruner(optuna.pruners.BasePruner):
        """Delegates every decision to an Optuna pruner and writes down why it pruned."""

        def __init__(self, inner: optuna.pruners.BasePruner, spec: SchedulerSpec) -> None:
            self._inner = inner
            self._spec = spec

        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            if not self._inner.prune(study, trial):
                return False
            try:
                decision = self._explain(study, trial)
            except Exception:  # an explanation must never break the search
                _logger.exception("could not explain the stop of trial %d", trial.number)
                decision = {"epoch": trial.last_step, "reason": "stopped by the scheduler"}
            study._storage.set_trial_user_attr(trial._trial_id, ATTR.DECISION, decision)
            return True

        def _explain(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
            spec = self._spec
            step = trial.last_step
            value = trial.intermediate_values[step] if step is not None else float("nan")
            maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
            decision: dict[str, Any] = {"epoch": step, "value": value, "scheduler": spec.kind}
            if isinstance(value, float) and math.isnan(value):
                decision["reason"] = f"{spec.metric} is NaN"
                return decision
            trials = study.get_trials(deepcopy=False)
            if spec.kind == "median":
                others = [
                    t.intermediate_values[step]
                    for t in trials
                    if t.state == TrialState.COMPLETE and step in t.intermediate_values
                ]
                others.sort()
                median = others[len(others) // 2] if len(others) % 2 else sum(others[len(others) // 2 - 1:len(others) // 2 + 1]) / 2
                best = (max if maximize else min)(
                    v for s, v in trial.intermediate_values.items() if s <= step  # type: ignore[operator]
                )
                decision.update(value=best, cutoff=median, n_compared=len(others), rung=None, bracket=None)
                decision["rule"] = "best so far worse than the median of completed trials at this epoch"
                return decision
            fresh = study._storage.get_trial(trial._trial_id)
            rung = -1
            while f"completed_rung_{rung + 1}" in fresh.system_attrs:
                rung += 1
            rung = max(rung, 0)
            key = f"completed_rung_{rung}"
            bracket = None
            peers = trials
            if isinstance(self._inner, optuna.pruners.HyperbandPruner):
                bracket = self._inner._get_bracket_id(study, trial)
                peers = [t for t in trials if self._inner._get_bracket_id(study, t) == bracket]
            competing = [t.system_attrs[key] for t in peers if key in t.system_attrs and t.number != trial.number]
            competing.append(fresh.system_attrs.get(key, value))
            n = len(competing)
            n_keep = max(n // spec.eta, 1)
            ranked = sorted(competing, reverse=maximize)
            cutoff = ranked[n_keep - 1]
            # Rungs are numbered as epochs r * eta**rung, the same in every bracket.
            decision.update(rung=rung + (bracket or 0), cutoff=cutoff, n_compared=n, n_keep=n_keep, bracket=bracket,
                            value=fresh.system_attrs.get(key, value))
            decision["rule"] = f"top 1/{spec.eta} of the trials that reached this rung continue"
            return decision

    _EXPLAINED = ExplainedPruner
    return ExplainedPruner


def format_decision(number: int, decision: dict[str, Any], metric: str, direction: str) -> str:
    """One sentence a person can read, e.g.

    ``trial 17 stopped at epoch 3 (rung 1): val_acc 0.62 < cutoff 0.71, only the top 3 of 9 go on``
    """
    epoch = decision.get("epoch")
    head = f"trial {number} stopped at epoch {epoch}"
    if decision.get("rung") is not None:
        head += f" (rung {decision['rung']}"
        if decision.get("bracket") is not None:
            head += f", bracket {decision['bracket']}"
        head += ")"
    if "reason" in decision:
        return f"{head}: {decision['reason']}"
    value, cutoff = decision.get("value"), decision.get("cutoff")
    op = "<" if direction == "maximize" else ">"
    if decision.get("scheduler") == "median":
        return (f"{head}: best {metric} {value:.4g} {op} median {cutoff:.4g} "
                f"of {decision.get('n_compared')} completed trials")
    return (f"{head}: {metric} {value:.4g} {op} cutoff {cutoff:.4g}, "
            f"only the top {decision.get('n_keep')} of {decision.get('n_compared')} go on")
