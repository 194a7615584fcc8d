"""Search-space dimensions: what a ``# tune: KIND(args)`` comment on an assignment means.

Each kind maps to one Optuna distribution. Arguments are Python literals; they are
validated here, before any trial runs, with messages that name the cell line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbtune.exceptions import AnnotationError

if TYPE_CHECKING:
    import optuna

__all__ = ["Param", "PARAM_KINDS"]

# kind -> (positional arity or None for variadic, allowed keywords)
PARAM_KINDS: dict[str, tuple[int | None, frozenset[str]]] = {
    "uniform": (2, frozenset({"step"})),
    "loguniform": (2, frozenset()),
    "int": (2, frozenset({"step"})),
    "logint": (2, frozenset()),
    "choice": (None, frozenset()),
}

_Scalar = (bool, int, float, str, type(None))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class Param:
    """One tunable variable of the cell.

    Args:
        name: the variable assigned on the annotated line.
        kind: one of :data:`PARAM_KINDS`.
        args: the positional literal arguments.
        kwargs: the keyword literal arguments (``step``).
        default: the value the cell assigns without the magic (the baseline).
        lineno: the notebook line of the annotation (``%%tune`` is line 1).
    """

    name: str
    kind: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    default: Any = None
    lineno: int = 0

    def __post_init__(self) -> None:
        self._validate()

    # --- validation -----------------------------------------------------------------
    def _fail(self, what: str, fix: str) -> None:
        raise AnnotationError(
            f"line {self.lineno} of the %%tune cell: {self.kind} for {self.name!r} {what}; {fix}",
            self.lineno,
        )

    def _validate(self) -> None:
        kind, args = self.kind, self.args
        if kind == "choice":
            if len(args) < 1:
                self._fail("needs at least one value", 'list the values, e.g. choice("relu", "tanh")')
            for v in args:
                if not isinstance(v, _Scalar):
                    self._fail(
                        f"values must be numbers, strings, booleans or None, got {v!r}",
                        "give scalar values and build objects from them in the cell",
                    )
            if len(set(map(repr, args))) != len(args):
                self._fail(f"has repeated values {list(args)!r}", "list each value once")
            if not any(self.default == v and type(self.default) is type(v) for v in args):
                self._fail(
                    f"default {self.default!r} is not among the choices {list(args)!r}",
                    "add the default to the choices or change the assigned value",
                )
            return
        low, high = args
        integer = kind in ("int", "logint")
        for label, v in (("low", low), ("high", high)):
            if integer and not (isinstance(v, int) and not isinstance(v, bool)):
                self._fail(f"needs integer bounds, got {label}={v!r}", "use uniform() for real numbers")
            if not integer and not _is_number(v):
                self._fail(f"needs numeric bounds, got {label}={v!r}", "give numbers such as 0.0 and 1.0")
            if not integer and not math.isfinite(v):
                self._fail(f"needs finite bounds, got {label}={v!r}", "give finite numbers")
        if low >= high:
            self._fail(f"needs low < high, got low={low!r}, high={high!r}", "swap or widen the bounds")
        if kind in ("loguniform", "logint") and low <= 0:
            fix = "use int() or a low such as 1" if integer else "use uniform() or a low such as 1e-5"
            self._fail(f"needs low > 0 (log scale), got {low!r}", fix)
        step = self.kwargs.get("step")
        if step is not None:
            ok = isinstance(step, int) and not isinstance(step, bool) if integer else _is_number(step)
            if not ok:
                self._fail(f"step must be {'an integer' if integer else 'a number'}, got {step!r}", "fix step=")
            if step <= 0:
                self._fail(f"step must be > 0, got {step!r}", "use a positive step")
        d = self.default
        if integer and not (isinstance(d, int) and not isinstance(d, bool)):
            self._fail(f"default must be an integer, got {d!r}", "assign an integer such as " + str(low))
        if not integer and not _is_number(d):
            self._fail(f"default must be a number, got {d!r}", f"assign a number such as {low!r}")
        if not (low <= d <= high):
            self._fail(
                f"default {d!r} is outside the range [{low!r}, {high!r}]",
                "widen the range or change the assigned value",
            )

    # --- Optuna ---------------------------------------------------------------------
    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution this annotation stands for."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        step = self.kwargs.get("step")
        if self.kind == "choice":
            return CategoricalDistribution(list(self.args))
        low, high = self.args
        if self.kind == "uniform":
            if step is not None:
                # Optuna needs (high - low) to be a multiple of step: shrink high like Optuna would.
                n = math.floor((high - low) / step + 1e-9)
                high = low + n * step
            return FloatDistribution(float(low), float(high), step=step)
        if self.kind == "loguniform":
            return FloatDistribution(float(low), float(high), log=True)
        if self.kind == "int":
            return IntDistribution(low, high, step=step or 1)
        return IntDistribution(low, high, log=True)

    def grid_values(self) -> list[Any] | None:
        """Every value of a finite dimension, or None when it is continuous."""
        if self.kind == "choice":
            return list(self.args)
        step = self.kwargs.get("step")
        low, high = self.args
        if self.kind in ("int", "logint"):
            return list(range(low, high + 1, step or 1))
        if self.kind == "uniform" and step is not None:
            n = math.floor((high - low) / step + 1e-9)
            return [round(low + i * step, 12) for i in range(n + 1)]
        return None

    def describe(self) -> str:
        """The annotation as the user wrote it, e.g. ``loguniform(1e-05, 0.1)``."""
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.kind}({', '.join(parts)})"

    def fingerprint(self) -> list[Any]:
        """A JSON-able summary used to detect a changed search space."""
        return [self.name, self.kind, list(self.args), sorted(self.kwargs.items())]
