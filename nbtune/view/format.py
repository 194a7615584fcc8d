"""How numbers and counts are written in every view: one place, so they read the same."""

from __future__ import annotations

from typing import Any

__all__ = ["fmt", "plural", "plural_trials"]


def plural(n: int, noun: str) -> str:
    """ "1 member", "3 members"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def plural_trials(n: int) -> str:
    """ "1 trial", "3 trials"."""
    return plural(n, "trial")


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(v)
