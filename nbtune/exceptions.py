"""Exceptions and warnings raised by nbtune.

Every error says what went wrong, where (as the notebook numbers the cell's
lines, the ``%%tune`` line being line 1) and how to fix it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "NbtuneError",
    "AnnotationError",
    "CellError",
    "ConfigError",
    "StoreError",
    "StudyNotFound",
    "TrialsFailedError",
    "NbtuneWarning",
]


# What every attempt at several objectives is told (found trying nbtune as an Optuna user).
ONE_METRIC = (
    "nbtune tunes one metric: keep the others as guardrails (--subject-to 'n_coef <= 100') or records (--record n_coef)"
)


class NbtuneError(Exception):
    """Base class of every error nbtune raises on purpose.

    Attributes:
        result: for an error that stopped a search once it had begun (its first trials failed,
            workers kept dying, a cluster or a database went away), the search as it stopped (a
            ``TuneResult``: its trials, failed ones included) when the store could still be read;
            else None. ``%%tune -o NAME`` binds it.
    """

    result: Any = None

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of the traceback: the error is nbtune's own, its message says what and
        how to fix it, and the frames inside nbtune and Optuna read as a crash (a deleted store file read by
        ``res.trials_dataframe()``: found retesting as a user). Outside IPython the traceback is Python's."""
        return [f"{type(self).__name__}: {self}"]


class ConfigError(NbtuneError, ValueError):
    """An option of the search has a bad value (bad ``%%tune`` line or ``tune()`` argument)."""


class AnnotationError(NbtuneError, ValueError):
    """A ``# tune:`` comment is malformed, or sits on something it cannot annotate.

    Attributes:
        lineno: the line in the notebook cell (the ``%%tune`` line is line 1), or None.
    """

    def __init__(self, message: str, lineno: int | None = None) -> None:
        super().__init__(message)
        self.lineno = lineno


class CellError(NbtuneError):
    """The cell itself cannot become an objective (syntax error, unpicklable global...)."""


class StudyNotFound(NbtuneError, KeyError):
    """``load_study`` / ``load_result`` found no such study (or, without a name, not exactly one)
    in the store. A ``KeyError`` whose message reads as written (a plain ``KeyError`` prints its
    message quoted, as a key)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StoreError(NbtuneError, OSError):
    """The store could not be written or reached mid-search (a full disk, a read-only folder, a
    database that went away); the finished trials are kept."""


class TrialsFailedError(NbtuneError):
    """The first trials all failed with the same error, so the search stopped early.

    Attributes:
        traceback: the user's traceback of the first failure, as text.
        result: the search as it stopped (a ``TuneResult``: its trials, failed ones included),
            or None.
    """

    def __init__(self, message: str, traceback: str = "", result: Any = None) -> None:
        super().__init__(message)
        self.traceback = traceback
        self.result = result

    def _render_traceback_(self) -> list[str]:
        """The first failed trial's traceback (the cell's lines), then the one line: as ``%%tune`` shows it."""
        first = (
            ["Traceback of the first failed trial:", *self.traceback.rstrip().splitlines()] if self.traceback else []
        )
        return [*first, *super()._render_traceback_()]


class NbtuneWarning(UserWarning):
    """Something the user should know that does not stop the search."""
