"""How numbers and counts are written in every view: one place, so they read the same."""

from __future__ import annotations

from typing import Any

from nbtune.store.attrs import NO_LIMIT

__all__ = ["fmt", "fmt_param", "is_number", "missing_as_none", "of_target", "plural", "plural_trials"]


def of_target(n: int, target: int | None) -> str:
    """ "12/20" (finished of the target); "12" when only the --timeout limits the run, or when
    there is no target or the study already had more."""
    return f"{n}/{target}" if target and n <= target < NO_LIMIT else f"{n}"


def plural(n: int, noun: str) -> str:
    """ "1 member", "3 members"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def plural_trials(n: int) -> str:
    """ "1 trial", "3 trials"."""
    return plural(n, "trial")


def fmt(v: Any) -> str:
    if isinstance(v, float):
        v += 0.0  # -0.0 is 0 ("a gap of -0")
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(v)


def fmt_param(v: Any) -> str:
    """A hyperparameter's value: as :func:`fmt`, but a whole float keeps its point (``1.0``, not
    ``1``): to scikit-learn ``max_features=1`` is one feature and ``1.0`` all of them, and a
    value copied from the summary must build the same model."""
    text = fmt(v)
    if isinstance(v, float) and v.is_integer() and text.lstrip("-").isdigit():
        return text + ".0"
    return text


def is_number(value: Any) -> bool:
    """A recorded value that is a number (``--record`` keeps strings and other values as text)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def missing_as_none(frame: Any, *columns: str) -> None:
    """Text columns of a DataFrame with ``None`` where a row has no value, not ``NaN`` (what pandas
    makes of a missing one): ``df.note[k] is None`` reads as written. In place."""
    for column in columns:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)


def params_as_drawn(frame: Any, params: list[dict[str, Any]]) -> None:
    """A choice's values as they were drawn in a DataFrame's ``params_*`` columns: None stays None
    and 12 stays 12 (pandas had made a column of ``choice(None, 3, 6, 12)`` float, 12.0 and NaN, that
    a model rejects: found trying nbtune as a new user). ``params``: each row's. In place."""
    import pandas as pd

    for column in [c for c in frame.columns if c.startswith("params_")]:
        name = column.removeprefix("params_")
        drawn = [p[name] for p in params if name in p]
        if any(v is None for v in drawn) or (
            frame[column].dtype.kind == "f" and any(isinstance(v, int) and not isinstance(v, bool) for v in drawn)
        ):
            frame[column] = pd.Series([p.get(name) for p in params], index=frame.index, dtype=object)
