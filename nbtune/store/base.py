"""The store interface: where a study's trials live, and the few things nbtune needs beside them.

A store only *stores*: it hands out Optuna storages, lists the studies and their versions,
gives a cross-process lock per study (the exact trial budget), and keeps a run's shared
state (stop flags, the trial target, the workers: :mod:`nbtune.store.control`) where every
worker reaches it, through :meth:`BaseStore.control`. Whether a trial's owner still lives
is the run's business (:mod:`nbtune.run.liveness`).

Implementations: :class:`nbtune.store.journal.JournalStore` (a folder of Optuna journal
files beside the notebook, the default) and :class:`nbtune.store.database.DatabaseStore`
(a database URL, on ``optuna.storages.RDBStorage``); :func:`nbtune.store.journal.open_store`
picks one from ``--store``.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from nbtune.exceptions import ConfigError

if TYPE_CHECKING:
    import optuna

    from nbtune.store.control import BaseControl

__all__ = [
    "BaseStore",
    "check_name",
    "base_name",
    "versioned",
    "version_number",
    "check_study_name",
    "is_check_study",
    "outer_fold_study",
    "outer_fold_of",
]

MAX_NAME = 120  # characters; the journal file name adds a suffix, and file names stop at 255 bytes
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_VERSION_RE = re.compile(r"^(?P<base>.+?)(?::v(?P<n>\d+))?(?:@check)?$")
CHECK_SUFFIX = "@check"  # not a character a user's name may have: no collision


def check_name(name: str) -> None:
    """A study name must be usable as a file name and a database key.

    Raises:
        ConfigError: the name has other characters.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"study name {name!r} may only use letters, digits, '_', '-' and '.'; e.g. --name mlp_search")
    if len(name) > MAX_NAME:
        raise ConfigError(
            f"study name {name[:20]!r}... is {len(name)} characters long; the store allows {MAX_NAME} "
            "(it names a file): pass a shorter --name"
        )


def base_name(study_name: str) -> str:
    """``"acc-1a2b3c:v2"`` -> ``"acc-1a2b3c"``."""
    m = _VERSION_RE.match(study_name)
    assert m is not None
    return m.group("base")


def version_number(study_name: str) -> int:
    """``"acc-1a2b3c:v2"`` -> 2; a name without a suffix is version 1."""
    m = _VERSION_RE.match(study_name)
    return int(m.group("n") or 1) if m else 1


def check_study_name(study_name: str) -> str:
    """The study that keeps the checks of ``study_name`` (re-validation runs, the holdout
    evaluation): beside it in the store, never one of its versions, never seen by its sampler.

    Example:
        >>> check_study_name("acc-1a2b3c:v2")
        'acc-1a2b3c:v2@check'
    """
    return study_name + CHECK_SUFFIX


def is_check_study(name: str) -> bool:
    return name.endswith(CHECK_SUFFIX)


OUTER = ".outer"  # nested cross-validation: outer fold i of search NAME is the study NAME.outerI


def outer_fold_study(base: str, fold: int) -> str:
    """The study of outer fold ``fold`` of the nested search ``base``."""
    return f"{base}{OUTER}{fold}"


def outer_fold_of(name: str) -> tuple[str, int] | None:
    """``"acc-1a2b3c.outer2"`` -> ``("acc-1a2b3c", 2)``; None for a study that is no outer fold's."""
    head, dot, fold = name.rpartition(OUTER)
    return (head, int(fold)) if dot and fold.isdigit() else None


def versioned(base: str, n: int) -> str:
    """The name of version ``n`` of ``base``: the first version has no suffix."""
    return base if n <= 1 else f"{base}:v{n}"


class BaseStore(abc.ABC):
    """Where studies live. Instances pickle to worker processes.

    Versions of a study (after its search space changed, or ``--fresh``) are named
    ``name``, ``name:v2``, ``name:v3``... and kept together.

    Attributes:
        repairs: what the store repaired while opening a study, one line each (the run says so).
    """

    repairs: list[str]
    leases: bool = False  # it keeps trial leases (renew_lease, lease_age): owners on any machine

    def renew_lease(self, trial_id: int) -> None:
        """The trial's worker is alive now (a heartbeat)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no leases")

    def end_lease(self, trial_id: int) -> None:
        """The trial's worker is done with it."""

    def namespace(self, user_ns: dict[str, Any] | None) -> str:
        """The prefix of default study names in this store: "" where the store belongs to one
        notebook (a folder beside it); a shared database prefixes the user and the notebook."""
        return ""

    def started_count(self, study: optuna.Study) -> int | None:
        """How many of the study's trials have started, if the store can count them without reading
        every trial (a database); None otherwise. An upper bound of the trials that use the budget."""
        return None

    def lease_age(self, trial_id: int) -> float | None:
        """Seconds since the trial's lease was last renewed (the store's clock), None if it has none."""
        return None

    @abc.abstractmethod
    def storage(self, name: str) -> optuna.storages.BaseStorage:
        """The Optuna storage holding study ``name`` (cached per process)."""

    @abc.abstractmethod
    def study_names(self) -> list[str]:
        """Every study in the store (all versions)."""

    @abc.abstractmethod
    def lock(self, name: str) -> AbstractContextManager[None]:
        """A lock that every worker of study ``name`` shares (the exact trial budget)."""

    @abc.abstractmethod
    def location(self, name: str) -> str:
        """Where study ``name`` is, for messages and ``optuna-dashboard`` (a path or URL)."""

    def where(self) -> str:
        """The store itself, for messages (a folder, or a URL without its password)."""
        return self.location("")

    def release_dead_writers_locks(self, name: str, older_than: float = 2.0, wait: bool = False) -> None:
        """Free what a process killed in the middle of a write to study ``name`` left held, held
        longer than ``older_than`` seconds (a write holds it for milliseconds; ``wait``: wait until
        it is, when every writer that could hold it is dead): called when a worker pool died, and
        as a run starts (a killed kernel). Nothing to free by default (a database's transactions
        end with their connections)."""

    @abc.abstractmethod
    def control(self, name: str, n_trials: int) -> BaseControl:
        """Fresh stop flags, trial target (``n_trials``) and worker registry for one run of
        study ``name``, reachable by every worker that can reach this store."""

    def artifact_store(self) -> Any:
        """Where trials' files (checkpoints) go: an ``optuna.artifacts`` store."""
        raise NotImplementedError(f"{type(self).__name__} keeps no files beside its trials")

    def artifacts_where(self) -> str:
        """Where :meth:`artifact_store` keeps its files, for messages."""
        return ""

    def check(self, name: str) -> list[str]:
        """Make study ``name`` safe to append to (e.g. set a damaged tail aside); one line per repair."""
        return []

    def versions(self, name: str) -> list[str]:
        """The versions of ``name`` in the store, oldest first."""
        base = base_name(name)
        return sorted(
            (n for n in self._names_near(base) if base_name(n) == base and not is_check_study(n)), key=version_number
        )

    def _names_near(self, base: str) -> Iterator[str] | list[str]:
        """Study names that may be versions of ``base`` (a store can narrow the search)."""
        return self.study_names()
