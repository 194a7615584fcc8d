"""The notebook-local store: Optuna journal files in a folder beside the notebook.

One journal file per study name, ``<store>/<name>.journal``. It is Optuna's own
append-only, fsync'd log (safe for several local processes), so ``optuna.load_study``
and ``optuna-dashboard <file>`` read it as they are. Versions of a study (after the
search space changed, or ``--fresh``) live in the same file as ``name``, ``name:v2``...

The journal has no heartbeat, so every trial records its owner (host, pid); a RUNNING
trial whose owner is gone is marked failed (interrupted) when the study is resumed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtune.exceptions import ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["Store", "default_store_dir", "load_study", "ATTR"]

_logger = logging.getLogger(__name__)

STORE_DIRNAME = ".nbtune"


class ATTR:
    """Names of the trial/study attributes nbtune writes (user attrs, visible in Optuna)."""

    SPACE = "nbtune:space"  # study: the search-space fingerprint
    CONFIG = "nbtune:config"  # study: metric, direction, scheduler settings
    BASELINE = "nbtune:baseline"  # trial: evaluates the cell's own defaults
    OWNER = "nbtune:owner"  # trial: {"host", "pid", "worker"} running it (one journal write)
    ERROR = "nbtune:error"  # trial: "ValueError: message" of a failed trial
    TRACEBACK = "nbtune:traceback"
    INTERRUPTED = "nbtune:interrupted"  # trial: reason; such trials don't count as finished
    RERUN_OF = "nbtune:rerun_of"  # trial: the interrupted trial whose configuration it runs again
    DECISION = "nbtune:decision"  # trial: why the scheduler stopped it (dict)
    OUTPUT = "nbtune:output"  # trial: the tail of what it printed


_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_VERSION_RE = re.compile(r"^(?P<base>.+?)(?::v(?P<n>\d+))?$")


def default_store_dir(user_ns: dict[str, Any] | None = None) -> Path:
    """``.nbtune/`` beside the notebook when the kernel knows where it is, else in the cwd.

    Jupyter Server sets ``JPY_SESSION_NAME`` (and ``__session__``) to the notebook path;
    VS Code sets ``__vsc_ipynb_file__``. nbclient and plain IPython set neither, and run
    in the notebook's folder (nbclient) or wherever the user started them.
    """
    ns = user_ns or {}
    for candidate in (ns.get("__vsc_ipynb_file__"), os.environ.get("JPY_SESSION_NAME"), ns.get("__session__")):
        if isinstance(candidate, str) and candidate.endswith(".ipynb"):
            path = Path(candidate)
            if path.is_absolute() and path.parent.is_dir():
                return path.parent / STORE_DIRNAME
    return Path.cwd() / STORE_DIRNAME


def _proc_stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> str | None:
    """When the process started (Linux: clock ticks since boot), to tell a reused pid apart."""
    fields = _proc_stat(pid)
    return fields[19].decode() if fields is not None and len(fields) > 19 else None


def _is_alive(pid: int, start: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    if fields is None or len(fields) <= 19:
        return True  # no /proc: the signal check is all we have
    if start is not None and fields[19].decode() != start:
        return False  # the pid now belongs to another process
    return fields[0] != b"Z"  # a killed process not yet reaped by its parent is a zombie: dead


# Trials being run by this very process right now (so a resume does not reap them).
_ACTIVE_TRIALS: set[int] = set()
_ACTIVE_LOCK = threading.Lock()


@contextlib.contextmanager
def active_trial(trial_id: int) -> Iterator[None]:
    with _ACTIVE_LOCK:
        _ACTIVE_TRIALS.add(trial_id)
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE_TRIALS.discard(trial_id)


_STORAGES: dict[str, Any] = {}
_LOCK_PATHS: dict[tuple[Path, str], str] = {}
_STORAGES_LOCK = threading.Lock()


class Store:
    """A folder of study journals.

    Args:
        directory: the folder; created on first write.

    Example:
        >>> store = Store("/tmp/nbtune-doc-example")
        >>> store.journal_path("val_acc-1a2b3c").name
        'val_acc-1a2b3c.journal'
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser().absolute()

    def __repr__(self) -> str:
        return f"Store({str(self.directory)!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": str(self.directory)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.directory = Path(state["directory"])

    @staticmethod
    def base_name(study_name: str) -> str:
        m = _VERSION_RE.match(study_name)
        assert m is not None
        return m.group("base")

    @staticmethod
    def check_name(name: str) -> None:
        if not _NAME_RE.match(name):
            raise ConfigError(
                f"study name {name!r} may only use letters, digits, '_', '-' and '.'; "
                "e.g. --name mlp_search"
            )

    def journal_path(self, name: str) -> Path:
        return self.directory / f"{self.base_name(name)}.journal"

    def storage(self, name: str) -> optuna.storages.BaseStorage:
        """The (per-process, cached) Optuna storage holding study ``name``."""
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = self.journal_path(name)
        key = str(path)
        with _STORAGES_LOCK:
            st = _STORAGES.get(key)
            if st is None or not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                st = JournalStorage(JournalFileBackend(key))
                _STORAGES[key] = st
            return st

    def study_names(self) -> list[str]:
        """Every study in the store (all versions), oldest file first."""
        out: list[str] = []
        if not self.directory.is_dir():
            return out
        for path in sorted(self.directory.glob("*.journal"), key=lambda p: p.stat().st_mtime):
            out.extend(s.study_name for s in self.storage(path.stem).get_all_studies())
        return out

    def versions(self, name: str) -> list[str]:
        """The versions of ``name`` in its journal, oldest first."""
        base = self.base_name(name)
        if not self.journal_path(base).exists():
            return []
        names = [s.study_name for s in self.storage(base).get_all_studies()]

        def version(n: str) -> int:
            m = _VERSION_RE.match(n)
            return int(m.group("n") or 1) if m else 1

        return sorted((n for n in names if self.base_name(n) == base), key=version)

    @staticmethod
    def versioned(base: str, n: int) -> str:
        return base if n <= 1 else f"{base}:v{n}"

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """A cross-process lock for one study (trial budget accounting)."""
        from optuna.storages.journal import JournalFileOpenLock

        path = _LOCK_PATHS.get((self.directory, name))
        if path is None:
            p = self.directory / f"{self.base_name(name)}.journal.budget"
            p.parent.mkdir(parents=True, exist_ok=True)
            path = _LOCK_PATHS[(self.directory, name)] = str(p)
        lock = JournalFileOpenLock(path, grace_period=30)
        while not lock.acquire():  # pragma: no cover - acquire blocks until it succeeds
            time.sleep(0.01)
        try:
            yield
        finally:
            lock.release()

    def requeue_interrupted(self, study: optuna.Study) -> list[int]:
        """Queue the configurations of interrupted trials again (once each), so an interrupt
        costs time but never a configuration the sampler chose.

        Returns:
            The numbers of the trials whose configurations were queued.
        """
        from optuna.trial import TrialState

        out = []
        with self.lock(study.study_name):
            trials = study.get_trials(deepcopy=False)
            done = {t.user_attrs.get(ATTR.RERUN_OF) for t in trials}
            for t in trials:
                if (t.state == TrialState.FAIL and ATTR.INTERRUPTED in t.user_attrs and t.number not in done
                        and t.params):
                    attrs: dict[str, Any] = {ATTR.RERUN_OF: t.number}
                    if t.user_attrs.get(ATTR.BASELINE):
                        attrs[ATTR.BASELINE] = True
                    study.enqueue_trial(t.params, user_attrs=attrs)
                    out.append(t.number)
        return out

    def reap_dead_trials(
        self,
        study: optuna.Study,
        *,
        reason: str = "the kernel or worker running it stopped (interrupt, restart or crash)",
        culprits: set[int] | None = None,
        culprit_error: str | None = None,
    ) -> list[int]:
        """Mark RUNNING trials whose process is gone as failed (interrupted).

        Args:
            study: the study to clean up.
            reason: why they stopped, recorded as their interrupted reason.
            culprit_error: when a worker died of its trial (out of memory, say), that trial
                fails with this error instead of being interrupted: it counts and is not re-run.
            culprits: the pids that died of their own trial; None means every dead one.

        Returns:
            The numbers of the trials marked.
        """
        from optuna.trial import TrialState

        host = socket.gethostname()
        reaped = []
        storage = study._storage
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = t.user_attrs.get(ATTR.OWNER) or {}
            owner_host = owner.get("host")
            pid = owner.get("pid")
            if owner_host is not None and owner_host != host:
                continue  # another machine's worker: we cannot tell whether it lives
            if pid is None:
                dead = True  # a trial nbtune did not start; leave it only if it is recent
                if t.datetime_start is not None:
                    import datetime as _dt

                    age = (_dt.datetime.now() - t.datetime_start).total_seconds()
                    dead = age > 24 * 3600
            elif pid == os.getpid():
                with _ACTIVE_LOCK:
                    dead = t._trial_id not in _ACTIVE_TRIALS
            else:
                dead = not _is_alive(pid, owner.get("start"))
            if not dead:
                continue
            if (culprit_error is not None and ATTR.INTERRUPTED not in t.user_attrs
                    and (culprits is None or pid in culprits)):
                storage.set_trial_user_attr(t._trial_id, ATTR.ERROR, culprit_error)
            else:
                storage.set_trial_user_attr(t._trial_id, ATTR.INTERRUPTED, reason)
            try:
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            except Exception:  # pragma: no cover - finished concurrently
                continue
            reaped.append(t.number)
        if reaped:
            _logger.info("marked %d abandoned trial(s) of %s as failed: %s", len(reaped), study.study_name, reaped)
        return reaped


def finished_count(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that count toward ``--trials``: complete, pruned, or failed on their own."""
    from optuna.trial import TrialState

    n = 0
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            n += 1
        elif t.state == TrialState.FAIL and ATTR.INTERRUPTED not in t.user_attrs:
            n += 1
    return n


def load_study(name: str | None = None, store: str | os.PathLike[str] | None = None) -> optuna.Study:
    """Open a study of the notebook-local store as a plain :class:`optuna.Study`.

    Args:
        name: the study name as ``%%tune`` printed it; without a version suffix the latest
            version is opened (``name:v1`` is the first). None opens the only study of the store.
        store: the store folder; default ``.nbtune/`` beside the notebook (or in the cwd).

    Raises:
        KeyError: no such study; the message lists the studies in the store.

    Example:
        >>> import nbtune  # doctest: +SKIP
        >>> study = nbtune.load_study("val_acc-1a2b3c")  # doctest: +SKIP
        >>> study.best_params  # doctest: +SKIP
    """
    import optuna

    st = Store(store if store is not None else default_store_dir(_user_ns()))
    if name is None:
        names = st.study_names()
        bases = sorted({Store.base_name(n) for n in names})
        if len(bases) != 1:
            raise KeyError(
                f"the store {st.directory} holds {len(bases)} studies {bases}; pass the name of one"
            )
        name = bases[0]
    versions = st.versions(name)
    if not versions:
        known = sorted({Store.base_name(n) for n in st.study_names()})
        raise KeyError(f"no study {name!r} in {st.directory}; the store holds {known}")
    if ":v" in name:
        target = Store.versioned(Store.base_name(name), int(name.rsplit(":v", 1)[1]))
        if target not in versions:
            raise KeyError(f"no version {name!r} in {st.directory}; the versions are {versions}")
    else:
        target = versions[-1]
    return optuna.load_study(study_name=target, storage=st.storage(target))


def _user_ns() -> dict[str, Any] | None:
    try:
        from IPython.core.getipython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    ip = get_ipython()
    return ip.user_ns if ip is not None else None
