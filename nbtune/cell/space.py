"""Search-space dimensions: what a ``# tune: KIND(args)`` comment on an assignment means.

Each kind maps to one Optuna distribution. Arguments are Python literals; they are
validated here, before any trial runs, with messages that name the cell line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext
from typing import TYPE_CHECKING, Any, NoReturn

from nbtune.exceptions import AnnotationError

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna

__all__ = ["Param", "ParamKind", "PARAM_KINDS", "as_drawn", "drawn_params", "register_param_kind", "suggest"]

_Scalar = (bool, int, float, str, type(None))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _whole(x: Any) -> Any:
    """``x`` as an int when it is a float holding a whole number (``1e4``), else ``x``."""
    return int(x) if isinstance(x, float) and x.is_integer() and abs(x) <= 2**53 else x


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class ParamKind:
    """A kind of value annotation (``uniform``, ``choice``...): its arguments, checks and distribution.

    Attributes:
        name: what follows ``# tune:``.
        arity: the number of positional arguments, or None for any number.
        keywords: the keyword arguments it accepts.
    """

    name: str = ""
    arity: int | None = 2
    keywords: frozenset[str] = frozenset()

    def validate(self, p: Param) -> None:
        """Raise (through ``p.fail``) when the arguments or the default are wrong."""

    def distribution(self, p: Param) -> optuna.distributions.BaseDistribution:
        raise NotImplementedError

    def grid_values(self, p: Param) -> list[Any] | None:
        """Every value of a finite dimension, or None when it is continuous."""
        return None

    def grid_count(self, p: Param) -> int | None:
        """How many values :meth:`grid_values` has, without listing them (None: continuous)."""
        values = self.grid_values(p)
        return None if values is None else len(values)


# Steps are checked on the numbers as written, in decimal, exactly: Python's default 28 digits
# round 5e27 - 0.5 and cannot divide 5e27 by 0.5 (DivisionImpossible); doubles span about 10**632.
_EXACT = Context(prec=800)


def _off_step(x: float, low: float, step: float) -> bool:
    """Whether ``x`` is not ``low`` plus a whole number of ``step``s."""
    with localcontext(_EXACT):
        return (Decimal(str(x)) - Decimal(str(low))) % Decimal(str(step)) != 0


class _Range(ParamKind):
    """``low``..``high`` numbers: uniform, loguniform, int, logint."""

    def __init__(self, name: str, *, integer: bool, log: bool) -> None:
        self.name, self.integer, self.log = name, integer, log
        self.keywords = frozenset() if log else frozenset({"step"})

    def validate(self, p: Param) -> None:
        low, high = p.args
        integer = self.integer
        for label, v in (("low", low), ("high", high)):
            if integer and not _is_int(v):
                p.fail(f"needs integer bounds, got {label}={v!r}", "use uniform() for real numbers")
            if not integer and not _is_number(v):
                p.fail(f"needs numeric bounds, got {label}={v!r}", "give numbers such as 0.0 and 1.0")
            if not integer and not math.isfinite(v):
                p.fail(f"needs finite bounds, got {label}={v!r}", "give finite numbers")
        if low >= high:
            p.fail(f"needs low < high, got low={low!r}, high={high!r}", "swap or widen the bounds")
        if self.log and low <= 0:
            fix = "use int() or a low such as 1" if integer else "use uniform() or a low such as 1e-5"
            p.fail(f"needs low > 0 (log scale), got {low!r}", fix)
        step = p.kwargs.get("step")
        if step is not None:
            if not (_is_int(step) if integer else _is_number(step)):
                p.fail(f"step must be {'an integer' if integer else 'a number'}, got {step!r}", "fix step=")
            if step <= 0:
                p.fail(f"step must be > 0, got {step!r}", "use a positive step")
        if step is not None and _off_step(high, low, step):
            found = self._values(p)
            assert found is not None  # a stepped range is finite
            n, value = found  # the first few values only: there may be 10**20 of them
            shown = ", ".join(repr(value(i)) for i in range(min(n, 5))) + (", ..." if n > 5 else "")
            p.fail(
                f"cannot reach high={high!r} in steps of {step!r} from {low!r} (the values are {shown})",
                "make high - low a multiple of step",
            )
        d = p.default
        _no_tuple_default(p)
        if integer and not _is_int(d):
            p.fail(f"default must be an integer, got {d!r}", "assign an integer such as " + str(low))
        if not integer and not _is_number(d):
            p.fail(f"default must be a number, got {d!r}", f"assign a number such as {low!r}")
        if not (low <= d <= high):
            p.fail(
                f"default {d!r} is outside the range [{low!r}, {high!r}]",
                "widen the range or change the assigned value",
            )
        if step is not None and _off_step(d, low, step):
            p.fail(
                f"default {d!r} is not one of its values (from {low!r} in steps of {step!r})",
                "assign one of the values as the default",
            )

    def _steps(self, p: Param) -> tuple[Decimal, Decimal, int] | None:
        """(low, step, n): the stepped values are low + i * step for i in 0..n, as decimals.

        Decimal arithmetic on the numbers as written, as Optuna checks them: with floats,
        (1 - 0) / 0.3 lands just under 3 and the top value (0.9) would be lost.
        """
        step = p.kwargs.get("step")
        if step is None:
            return None
        low, high = (Decimal(str(v)) for v in p.args)
        d_step = Decimal(str(step))
        with localcontext(_EXACT):
            return low, d_step, int((high - low) // d_step)

    def distribution(self, p: Param) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import FloatDistribution, IntDistribution

        low, high = p.args
        steps = self._steps(p)
        if steps is not None:
            # Optuna needs (high - low) to be a multiple of step; shrink high to the last step
            # ourselves, so Optuna has nothing to adjust (and nothing to warn about).
            d_low, d_step, n = steps
            high = int(d_low + n * d_step) if self.integer else float(d_low + n * d_step)
        if self.integer:
            return IntDistribution(low, high, log=self.log, step=p.kwargs.get("step") or 1)
        return FloatDistribution(float(low), float(high), log=self.log, step=p.kwargs.get("step"))

    def _values(self, p: Param) -> tuple[int, Callable[[int], Any]] | None:
        """(how many, the i-th) of the range's values, none of them listed; None when continuous."""
        low, high = p.args
        if self.integer:
            values = range(low, high + 1, p.kwargs.get("step") or 1)
            return len(values), values.__getitem__
        steps = self._steps(p)
        if steps is None:
            return None
        d_low, d_step, n = steps
        return n + 1, lambda i: float(d_low + i * d_step)

    def grid_values(self, p: Param) -> list[Any] | None:
        found = self._values(p)
        return None if found is None else [found[1](i) for i in range(found[0])]

    def grid_count(self, p: Param) -> int | None:
        found = self._values(p)
        return None if found is None else found[0]


class _Choice(ParamKind):
    name = "choice"
    arity = None

    def validate(self, p: Param) -> None:
        args = p.args
        if len(args) < 1:
            p.fail("needs at least one value", 'list the values, e.g. choice("relu", "tanh")')
        if len(args) == 1 and isinstance(args[0], (list, tuple)) and all(isinstance(v, _Scalar) for v in args[0]):
            # a param_grid's habit (found trying nbtune as a new user)
            listed = ", ".join(map(repr, args[0]))
            what = "a list" if isinstance(args[0], list) else "a tuple"
            p.fail(f"takes the values themselves, not {what}: got {args[0]!r}", f"write choice({listed})")
        for v in args:
            if v == ():
                p.fail("has an empty tuple, ()", "give each tuple one value or more, e.g. (64,)")
            if isinstance(v, tuple) and all(isinstance(x, _Scalar) for x in v):
                continue  # hidden_layer_sizes, ngram_range: a tuple of scalars is a value (see _encoded)
            if isinstance(v, list) and v and all(isinstance(x, _Scalar) for x in v):
                p.fail(
                    f"values must be numbers, strings, booleans, None or tuples of them, got the list {v!r}",
                    f"write it as a tuple, {tuple(v)!r}",
                )
            if isinstance(v, str) and _as_tuple(v) is not None:
                p.fail(f"has the text {v!r}, which reads as a tuple", f"write the tuple itself, {_as_tuple(v)!r}")
            if not isinstance(v, _Scalar):
                p.fail(
                    f"values must be numbers, strings, booleans, None or tuples of them, got {v!r}",
                    "give such values and build objects from them in the cell",
                )
        if len(set(map(repr, args))) != len(args):
            p.fail(f"has repeated values {list(args)!r}", "list each value once")
        # Optuna finds a choice by ==, so True and 1 (or 1 and 1.0) would share one slot.
        for i, v in enumerate(args):
            for w in args[:i]:
                if v == w:
                    p.fail(
                        f"has values that Python treats as equal: {w!r} and {v!r}",
                        "keep one of them (Optuna tells choices apart with ==)",
                    )
        if not any(isinstance(v, tuple) for v in args):
            _no_tuple_default(p)
        if not any(p.default == v and type(p.default) is type(v) for v in args):
            p.fail(
                f"default {p.default!r} is not among the choices {list(args)!r}",
                "add the default to the choices or change the assigned value",
            )

    def distribution(self, p: Param) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution([_encoded(v) for v in p.args])

    def grid_values(self, p: Param) -> list[Any] | None:
        return [_encoded(v) for v in p.args]


def _encoded(value: Any) -> Any:
    """A choice's value as Optuna keeps it: a tuple as its text, ``"(64, 32)"`` (Optuna's choices are
    None, bools, numbers and strings, and its stores write them as JSON). :func:`as_drawn` reads it back."""
    return repr(value) if isinstance(value, tuple) else value


def _as_tuple(text: str) -> tuple[Any, ...] | None:
    if not (text.startswith("(") and text.endswith(")")):
        return None
    import ast

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, tuple) else None


def as_drawn(value: Any) -> Any:
    """A parameter's value as the cell gets it from the value Optuna keeps: a tuple choice's text back
    to the tuple (``"(64, 32)"`` to ``(64, 32)``); any other value as it is. A choice's text never reads
    as a tuple (refused: write the tuple)."""
    if isinstance(value, str) and value[:1] == "(":
        found = _as_tuple(value)
        if found is not None:
            return found
    return value


def drawn_params(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as the cell got them (:func:`as_drawn` of each)."""
    return {k: as_drawn(v) for k, v in params.items()}


_TUPLE_FIX = (
    "tune the number that varies and build the tuple in the cell, e.g. 'ngram_max = 2  # tune: int(1, 3)' then "
    "'ngram_range=(1, ngram_max)'; or choose among tuples, 'ngram_range = (1, 1)  # tune: choice((1, 1), (1, 2))'"
)


def _no_tuple_default(p: Param) -> None:
    """A tuple assigned as the default (``ngram_range = (1, 1)``, or ``= 1, 2``, which makes one): it read
    'default (1, 2) is not among the choices [1, 2]' and 'must be an integer, got (1, 1)', which named
    no tuple (found trying nbtune as a new user)."""
    if isinstance(p.default, tuple):
        p.fail(
            f"default {p.default!r} is a tuple (a comma on the line makes one), and a tuned value is one number, "
            "string, boolean or None",
            _TUPLE_FIX,
        )


PARAM_KINDS: dict[str, ParamKind] = {}


def register_param_kind(kind: ParamKind) -> ParamKind:
    """Make ``# tune: <kind.name>(...)`` a value annotation (and an annotation kind of the parser)."""
    PARAM_KINDS[kind.name] = kind
    return kind


for _kind in (
    _Range("uniform", integer=False, log=False),
    _Range("loguniform", integer=False, log=True),
    _Range("int", integer=True, log=False),
    _Range("logint", integer=True, log=True),
    _Choice(),
):
    register_param_kind(_kind)


def suggest(trial: optuna.Trial, name: str, dist: optuna.distributions.BaseDistribution) -> Any:
    """``trial.suggest_*`` for an Optuna distribution (the public API, so samplers see the usual calls)."""
    import optuna  # (runs in every trial: ``from optuna.x import y`` costs ten times more)

    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, optuna.distributions.FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


@dataclass(frozen=True)
class Param:
    """One tunable variable of the cell.

    Args:
        name: the variable assigned on the annotated line.
        kind: a name in :data:`PARAM_KINDS`.
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
        kind = PARAM_KINDS[self.kind]
        if getattr(kind, "integer", False):  # int(1e2, 1e4): whole numbers written as floats are those ints
            object.__setattr__(self, "args", tuple(_whole(a) for a in self.args))
            if "step" in self.kwargs:
                object.__setattr__(self, "kwargs", {**self.kwargs, "step": _whole(self.kwargs["step"])})
        kind.validate(self)

    def fail(self, what: str, fix: str) -> NoReturn:
        """Raise the one-line error about this annotation: what is wrong, and the fix."""
        raise AnnotationError(
            f"line {self.lineno} of the %%tune cell: {self.kind} for {self.name!r} {what}; {fix}", self.lineno
        )

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution this annotation stands for (made once: every trial asks)."""
        dist = self.__dict__.get("_distribution")
        if dist is None:
            dist = self.__dict__["_distribution"] = PARAM_KINDS[self.kind].distribution(self)
        return dist

    def grid_values(self) -> list[Any] | None:
        """Every value of a finite dimension, as Optuna keeps it, or None when it is continuous."""
        return PARAM_KINDS[self.kind].grid_values(self)

    def encoded(self, value: Any) -> Any:
        """``value`` as Optuna keeps it (a tuple choice as its text): for a value the cell sets, its default."""
        return _encoded(value)

    def grid_count(self) -> int | None:
        """How many values a finite dimension has (not listed), or None when it is continuous."""
        return PARAM_KINDS[self.kind].grid_count(self)

    def describe(self) -> str:
        """The annotation as the user wrote it, e.g. ``loguniform(1e-05, 0.1)``."""
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.kind}({', '.join(parts)})"

    def fingerprint(self) -> list[Any]:
        """A JSON-able summary used to detect a changed search space."""
        return [self.name, self.kind, list(self.args), sorted(self.kwargs.items())]
