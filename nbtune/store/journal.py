"""The notebook-local store: Optuna journal files in a folder beside the notebook.

One journal file per study name, ``<store>/<name>.journal``. It is Optuna's own
append-only, fsync'd log (safe for several local processes), so ``optuna.load_study``
and ``optuna-dashboard <file>`` read it as they are. Versions of a study (after the
search space changed, or ``--fresh``) live in the same file as ``name``, ``name:v2``...
A run's stop flags live in ``<store>/runs/`` while it runs, so every worker that reaches
the store reaches them too.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtune.cell.identity import notebook_path
from nbtune.exceptions import ConfigError, NbtuneWarning, StoreError, StudyNotFound
from nbtune.store.artifacts import artifacts_location, open_artifact_store
from nbtune.store.base import OUTER, BaseStore, base_name, check_name, is_check_study, versioned
from nbtune.store.repair import repair_journal

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import optuna

    from nbtune.store.control import BaseControl

__all__ = ["JournalStore", "Store", "default_store_dir", "load_study", "open_store"]

_logger = logging.getLogger(__name__)

STORE_DIRNAME = ".nbtune"


_LOADED_IN: list[str] = []  # the working folder when %load_ext nbtune ran (the kernel's first)


def remember_loaded_in() -> None:
    """``%load_ext nbtune``: the working folder then, to tell when a notebook changed it since."""
    if not _LOADED_IN:
        with contextlib.suppress(OSError):
            _LOADED_IN.append(os.getcwd())


def loaded_in() -> str | None:
    return _LOADED_IN[0] if _LOADED_IN else None


def default_store_dir(user_ns: dict[str, Any] | None = None) -> Path:
    """``.nbtune/`` beside the notebook when the kernel knows where it is, else in the cwd.

    Jupyter Server sets ``JPY_SESSION_NAME`` (and ``__session__``) to the notebook path;
    VS Code sets ``__vsc_ipynb_file__``. nbclient and plain IPython set neither, and run
    in the notebook's folder (nbclient) or wherever the user started them.
    """
    notebook = notebook_path(user_ns)
    if notebook is not None:
        path = Path(notebook)
        if path.is_absolute() and path.parent.is_dir():
            return path.parent / STORE_DIRNAME
    return Path.cwd() / STORE_DIRNAME


class _Cache:
    """Per-process caches: one JournalStorage per file (it keeps the parsed log), one lock path per study."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.storages: dict[str, Any] = {}
        # a journal's (device, inode, size, its last bytes) when last opened
        self.seen: dict[str, tuple[int, int, int, bytes]] = {}
        self.lock_paths: dict[tuple[Path, str], str] = {}
        # (pid, lock file) -> (its open file, the lock of this process's threads): flock excludes
        # other processes; threads of one process share the file, so they take the thread lock first
        self.flocks: dict[tuple[int, str], _Flock] = {}

    def clear(self) -> None:
        with self.lock:
            self.storages.clear()
            self.lock_paths.clear()


_CACHE = _Cache()


class _Flock:
    """A lock file this process keeps open, and the lock its threads take before ``flock`` (threads
    of one process share the open file, so ``flock`` alone would not exclude them)."""

    __slots__ = ("fd", "file_id", "threads")

    def __init__(self, fd: int, threads: threading.Lock) -> None:
        self.fd, self.threads = fd, threads
        st = os.fstat(fd)
        self.file_id = (st.st_dev, st.st_ino)


def _same_file(lock: _Flock, path: str) -> bool:
    """Whether the open lock file is still the file at ``path`` (not deleted or replaced)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == lock.file_id


def _flock(path: str) -> _Flock:
    """This process's open lock file at ``path``, opened again if the store was deleted since."""
    key = (os.getpid(), path)  # a forked child must not share its parent's open file (and lock)
    entry = _CACHE.flocks.get(key)
    if entry is None or not _same_file(entry, path):
        with _CACHE.lock:
            entry = _CACHE.flocks.get(key)
            if entry is None or not _same_file(entry, path):
                threads = entry.threads if entry is not None else threading.Lock()
                if entry is not None:  # (its fd closed once: a failed open below must not close it again)
                    del _CACHE.flocks[key]
                    with contextlib.suppress(OSError):
                        os.close(entry.fd)
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)  # the store folder was deleted
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                entry = _CACHE.flocks[key] = _Flock(fd, threads)
    return entry


class _FlockHeld:
    """``with``: the lock held (a class, not a generator: it is taken once per trial)."""

    __slots__ = ("lock",)

    def __init__(self, lock: _Flock) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        self.lock.threads.acquire()
        try:
            fcntl.flock(self.lock.fd, fcntl.LOCK_EX)
        except BaseException:
            self.lock.threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self.lock.fd, fcntl.LOCK_UN)
        finally:
            self.lock.threads.release()


@contextlib.contextmanager
def _open_lock(path: str) -> Iterator[None]:  # pragma: no cover - Windows
    """Optuna's lock file, created and deleted around the block (no ``fcntl``)."""
    from optuna.storages.journal import JournalFileOpenLock

    lock = JournalFileOpenLock(path, grace_period=30)
    while not lock.acquire():  # acquire blocks until it succeeds
        time.sleep(0.01)
    try:
        yield
    finally:
        lock.release()


def _ends(path: Path, size: int) -> bytes:
    """The journal's bytes just before ``size`` (what an append leaves as they are)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, size - 64))
            return f.read(min(size, 64))
    except OSError:
        return b""


@functools.cache
def _backend_class() -> type:
    """Optuna's journal file, whose deletion while a study is open reads as one line: Optuna's
    FileNotFoundError came as a traceback from ``res.trials_dataframe()`` (found trying nbtune as a
    new user, who deleted the file with the kernel running). Made on first use: Optuna is imported
    when a store is opened, not with nbtune."""
    from optuna.storages.journal import JournalFileBackend

    class Backend(JournalFileBackend):
        def read_logs(self, log_number_from: int) -> Any:
            try:
                yield from super().read_logs(log_number_from)
            except FileNotFoundError:
                raise StoreError(
                    f"the store file {self._file_path} is gone (deleted or moved after the study ran), so its trials "
                    "cannot be read; put it back, or re-run the cell to start the study again"
                ) from None

    return Backend


def _Backend(path: str) -> Any:
    return _backend_class()(path)


class JournalStore(BaseStore):
    """A folder of study journals.

    Args:
        directory: the folder; created on first write.

    Example:
        >>> store = JournalStore("/tmp/nbtune-doc-example")
        >>> store.journal_path("val_acc-1a2b3c:v2").name
        'val_acc-1a2b3c.journal'
    """

    def __init__(self, directory: str | os.PathLike[str], artifacts: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory).expanduser().absolute()
        if self.directory.suffix == ".journal" and self.directory.is_file():
            # the study's file, as optuna-dashboard takes it (found trying nbtune as a new user): its folder
            self.directory = self.directory.parent
        # checkpoints: <store>/artifacts, or an object store (s3://bucket/prefix) or another folder
        self.artifacts = artifacts_location(artifacts, self.directory / "artifacts")
        self.repairs: list[str] = []  # what storage() repaired, for the run's messages

    def __repr__(self) -> str:
        return f"Store({str(self.directory)!r})"

    # Kept as static methods of the store for code written against round 1.
    base_name = staticmethod(base_name)
    check_name = staticmethod(check_name)
    versioned = staticmethod(versioned)

    def journal_path(self, name: str) -> Path:
        return self.directory / f"{base_name(name)}.journal"

    def location(self, name: str) -> str:
        return str(self.journal_path(name))

    def release_dead_writers_locks(self, name: str, older_than: float = 2.0, wait: bool = False) -> None:
        """Optuna's journal lock (a ``<journal>.lock`` symlink) left by a worker killed while it
        wrote: every other writer waited out its 30 s grace period, the search frozen ("It is taking
        longer than 10.0 seconds to acquire the lock file"; found trying nbtune as a new user).
        Removed when older than ``older_than`` seconds (a write holds it for milliseconds); with
        ``wait``, when it is younger, once it is that old (every writer that could hold it is dead)."""
        lock = Path(f"{self.journal_path(name)}.lock")
        with contextlib.suppress(OSError):
            held = lock.lstat()
            age = time.time() - held.st_mtime
            if age <= older_than:
                if not wait:
                    return
                # A writer killed a moment ago left it (the pool's others, killed when one died): wait
                # until a live writer would have let it go, rather than for Optuna's 30 s (a cut trial's
                # worker stalled the next ones 30 s; found by this project's tests)
                time.sleep(older_than - age + 0.05)
                now = lock.lstat()  # (gone: it was a live writer's, released)
                if (now.st_ino, now.st_mtime) != (held.st_ino, held.st_mtime):
                    return  # another writer's since
            lock.unlink()
            _logger.info("removed the journal lock %s that a dead worker left held", lock)

    def where(self) -> str:
        return str(self.directory)

    def storage(self, name: str, repair: bool = True) -> optuna.storages.BaseStorage:
        """The (per-process, cached) Optuna storage holding study ``name``.

        A journal that Optuna cannot parse (a bad record in the middle, left by an older
        nbtune appending after damage, a git merge) is repaired first: its bad lines are set
        aside (with ``repair=False``, the ValueError is raised instead: a listing only reads).
        """
        from optuna.storages import JournalStorage

        path = self.journal_path(name)
        key = str(path)
        with _CACHE.lock:
            st = _CACHE.storages.get(key)
            seen = _CACHE.seen.get(key)
            try:
                stat = os.stat(path)
                now: tuple[int, int, int] | None = (stat.st_dev, stat.st_ino, stat.st_size)
            except OSError:
                now = None
            # A file replaced (git checkout or merge, a backup restored, a repair), cut shorter than
            # this process read it, or rewritten in place (an inode reused: the bytes where it ended
            # are not there any more): the parsed log is another file's, read it afresh.
            if (
                now is not None
                and seen is not None
                and (now[:2] != seen[:2] or now[2] < seen[2] or _ends(path, seen[2]) != seen[3])
            ):
                st = None
            if now is not None:
                _CACHE.seen[key] = (*now, _ends(path, now[2]))
            if st is None or now is None:
                if now is None:
                    self._writable()
                    if seen is not None:  # this process read it before: deleted or moved since
                        self.repairs.append(
                            f"the store file {path} that this kernel read before is gone (deleted or moved): "
                            f"study {name!r} starts again, empty; to keep its trials, put the file back and "
                            "re-run the cell"
                        )
                        _CACHE.seen.pop(key, None)
                try:
                    st = JournalStorage(_Backend(key))
                except ValueError:  # json.JSONDecodeError included
                    if not repair:
                        raise
                    message = repair_journal(path, full=True)
                    if message is None:
                        raise
                    self.repairs.append(message)
                    st = JournalStorage(_Backend(key))
                _CACHE.storages[key] = st
            return st

    def check(self, name: str) -> list[str]:
        message = repair_journal(self.journal_path(name))
        if message is None:
            return []
        with _CACHE.lock:  # re-read from the repaired file
            _CACHE.storages.pop(str(self.journal_path(name)), None)
        return [message]

    def _writable(self) -> None:
        """Create the store folder, or say in one line why it cannot be written."""
        if self.directory.exists() and not self.directory.is_dir():
            raise ConfigError(f"the store {self.directory} is a file, not a folder; pass --store with a folder")
        if self.directory.is_symlink() and not self.directory.exists():
            raise ConfigError(
                f"the store {self.directory} is a link to {os.readlink(self.directory)}, which does not exist: "
                "create that folder, or remove the link, or pass --store with another folder"
            )
        try:
            made = not self.directory.exists()
            self.directory.mkdir(parents=True, exist_ok=True)
            if made:
                _write_gitignore(self.directory)
        except OSError as e:
            raise ConfigError(
                f"the store {self.directory} cannot be created ({e.strerror or e}); "
                "pass --store with a folder you can write to"
            ) from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise ConfigError(
                f"the store {self.directory} is read-only; finished studies can be viewed "
                "(%tune_show, nbtune.load_study) but not run: pass --store with a folder you can write to"
            )

    def study_names(self) -> list[str]:
        """Every study in the store (all versions), oldest file first."""
        out: list[str] = []
        if not self.directory.is_dir():
            return out
        for path in sorted(self.directory.glob("*.journal"), key=lambda p: p.stat().st_mtime):
            try:  # listing reads: another study's damaged file is repaired when it is opened, not here
                out.extend(s.study_name for s in self.storage(path.stem, repair=False).get_all_studies())
            except ValueError:  # its file's name is its study's (the versions in it are read when it is opened)
                out.append(path.stem)
        return out

    def _names_near(self, base: str) -> list[str]:
        # All versions of a name share one file: read only that one.
        if not self.journal_path(base).exists():
            return []
        return [s.study_name for s in self.storage(base).get_all_studies()]

    def started_count(self, study: optuna.Study) -> int | None:
        from nbtune import _compat

        try:
            return _compat.journal_trial_count(_compat.storage_of(study), _compat.study_id(study))
        except (AttributeError, KeyError):  # another Optuna's journal: read the trials instead
            return None

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """A cross-process lock for one study (trial budget accounting), taken before every ask.

        ``flock`` on a lock file kept open by each process: two system calls, where creating and
        deleting a lock file (Optuna's ``JournalFileOpenLock``, the fallback without ``fcntl``)
        costs a tenth of a millisecond per trial.
        """
        path = _CACHE.lock_paths.get((self.directory, name))
        if path is None:
            self._writable()
            path = _CACHE.lock_paths[(self.directory, name)] = str(self.directory / f"{base_name(name)}.journal.budget")
        if fcntl is None:  # pragma: no cover - Windows
            return _open_lock(path)
        return _FlockHeld(_flock(path))

    def artifact_store(self) -> Any:
        """``<store>/artifacts`` (Optuna's file-system artifact store), or the object store given."""
        return open_artifact_store(self.artifacts)

    def artifacts_where(self) -> str:
        return str(self.artifacts)

    def control(self, name: str, n_trials: int) -> BaseControl:
        from nbtune.store.control import FileControl, sweep_dead_runs

        self._writable()
        journal = self.journal_path(name)
        # (before any trial: a journal, budget lock or runs folder chmod'ed read-only failed with a
        # PermissionError traceback, once the search had begun: found trying nbtune as a new user)
        for path in (journal, journal.with_name(journal.name + ".budget"), self.directory / "runs"):
            if path.exists() and not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0)):
                raise ConfigError(
                    f"the store's {path.name} ({path}) is read-only; finished studies can be viewed (%tune_show, "
                    "nbtune.load_study) but not run: make it writable (chmod u+w) or pass --store with a folder you "
                    "can write to"
                )
        sweep_dead_runs(self.directory / "runs")
        return FileControl(n_trials, self.directory / "runs" / f"{base_name(name)}-{uuid.uuid4().hex[:8]}")


Store = JournalStore  # the public name (nbtune.Store)


def open_store(
    location: str | os.PathLike[str] | None,
    user_ns: dict[str, Any] | None = None,
    artifacts: str | os.PathLike[str] | None = None,
) -> BaseStore:
    """The store ``--store`` names: a database URL (``postgresql://...``), a folder, or by default
    the ``NBTUNE_STORE`` environment variable's, else ``.nbtune/`` beside the notebook.

    Checkpoint files go where ``--artifacts`` (or ``NBTUNE_ARTIFACTS``) says: an object store
    (``s3://bucket/prefix``) that workers on every machine reach, or a folder; by default
    ``artifacts/`` in the store folder, or for a database store ``.nbtune/artifacts`` beside the
    notebook."""
    from nbtune.store.database import DatabaseStore, is_database_url

    if location is None and os.environ.get("NBTUNE_STORE"):
        location = os.environ["NBTUNE_STORE"]  # a URL kept out of the notebook (its password too)
    if artifacts is None and os.environ.get("NBTUNE_ARTIFACTS"):
        artifacts = os.environ["NBTUNE_ARTIFACTS"]
    if is_database_url(location):
        return DatabaseStore(str(location), artifacts=artifacts or default_store_dir(user_ns) / "artifacts")
    return JournalStore(location if location is not None else default_store_dir(user_ns), artifacts=artifacts)


def load_study(name: str | None = None, store: str | os.PathLike[str] | None = None) -> optuna.Study:
    """Open a study of a store (the notebook-local one by default) as a plain :class:`optuna.Study`.

    Args:
        name: the study name as ``%%tune`` printed it; without a version suffix the latest
            version is opened (``name:v1`` is the first). None opens the only study of the store.
        store: the store folder, or a database URL; default ``.nbtune/`` beside the notebook (or in the cwd).

    Raises:
        KeyError: no such study; the message lists the studies in the store.

    Example:
        >>> import nbtune  # doctest: +SKIP
        >>> study = nbtune.load_study("val_acc-1a2b3c")  # doctest: +SKIP
        >>> study.best_params  # doctest: +SKIP
    """
    import optuna

    st = open_store(store, _user_ns())
    if name is None:
        bases = sorted({base_name(n) for n in st.study_names()})
        if not bases:
            raise StudyNotFound(
                f"the store {st.where()} holds no study yet: run a %%tune cell, or pass the store (store=, --store in "
                f"%%tune){_inside(st)}"
            )
        if len(bases) != 1:
            raise StudyNotFound(f"the store {st.where()} holds {len(bases)} studies {bases}; pass the name of one")
        name = bases[0]
    if is_check_study(name):  # the checks of a search (re-validation, holdout runs)
        if name not in st.study_names():
            raise StudyNotFound(f"no checks {name!r} in {st.where()}: re-validation or --holdout never ran for it")
        return optuna.load_study(study_name=name, storage=st.storage(name))
    versions = st.versions(name)
    if not versions:
        known = sorted({base_name(n) for n in st.study_names()})
        folds = [n for n in known if n.startswith(f"{name}0")]
        if name.endswith(OUTER) and folds:  # %tune_show NAME.outer shows them together; one study is one fold
            raise StudyNotFound(
                f"{name!r} is a nested cross-validation: each outer fold is a study of its own "
                f"({', '.join(repr(f) for f in folds[:1])}, ...), or %tune_show {name} shows them together"
            )
        raise StudyNotFound(f"no study {name!r} in {st.where()}; the store holds {known}{'' if known else _inside(st)}")
    if ":v" in name:
        target = versioned(base_name(name), int(name.rsplit(":v", 1)[1]))
        if target not in versions:
            raise StudyNotFound(f"no version {name!r} in {st.where()}; the versions are {versions}")
    else:
        target, which = versions[-1], "the latest"
        here = notebook_path(_user_ns())
        if len(versions) > 1 and here:
            # this notebook's latest, not another notebook's in the same folder (found trying nbtune as
            # a new user: a script's load_result() got the other data's best parameters)
            mine = [v for v in versions if _made_in(st, v, here)]
            if mine and mine[-1] != target:
                target, which = mine[-1], f"the latest this notebook ({os.path.basename(here)}) ran"
        if len(versions) > 1:  # the name %%tune printed for version 1 is this one's base: say which opened
            warnings.warn(
                f"{name!r} has {len(versions)} versions (the cell, its notebook or its data changed, or --fresh): "
                f"opened {which}, {target!r}; '{name}:v1' opens the first ('{name}:v2' the second, and so on)",
                NbtuneWarning,
                stacklevel=2,
            )
    study = optuna.load_study(study_name=target, storage=st.storage(target))
    for repaired in st.repairs:  # opening it repaired its file (a torn end, a git merge): say so
        warnings.warn(repaired, NbtuneWarning, stacklevel=2)
    return study


GITIGNORE = """\
# Written by nbtune when it made this store. The journals (*.journal) are the studies: commit them to
# share results. What follows is a run's working files and what repairs set aside (git's conflicts
# in a journal are merged by running the cell: see the README), and the checkpoints, which can be
# large: delete the last line to commit them too.
runs/
*.budget
*.lock
*.repairing
*.damaged-*
*.conflict-*
artifacts/
"""


def _write_gitignore(directory: Path) -> None:
    """What a new store folder tells git to leave out (found trying nbtune as a new user: a run's
    owner file and a repair's side files were committed with the journals)."""
    with contextlib.suppress(OSError), open(directory / ".gitignore", "x") as f:
        f.write(GITIGNORE)


def _made_in(st: BaseStore, version: str, notebook: str) -> bool:
    """Whether the notebook a study's version records is ``notebook`` (by its file's name: a project
    folder moved or copied is the same notebook)."""
    import optuna

    from nbtune.store.attrs import ATTR

    recorded = optuna.load_study(study_name=version, storage=st.storage(version)).user_attrs.get(ATTR.IDENTITY) or {}
    made = recorded.get("notebook")
    return isinstance(made, str) and os.path.basename(made.replace("\\", "/")) == os.path.basename(notebook)


def _inside(st: BaseStore) -> str:
    """Why a store holds nothing, when it can be told: ' (did you mean DIR/.nbtune?)' for a folder
    that holds a store (a project folder passed for its store), or a link to a folder that does not
    exist (found trying nbtune as a new user)."""
    where = Path(st.where())
    inner = where / STORE_DIRNAME
    if any(inner.glob("*.journal")):
        return f" (did you mean the store inside it, {inner}?)"
    if where.is_symlink() and not where.exists():
        return f" (it is a link to {os.readlink(where)}, which does not exist)"
    if not where.exists() and where.parent.is_dir():  # run where no search ran: no store here (found trying nbtune)
        return " (no such folder: run from the notebook's folder, or pass the store)"
    return ""


def _user_ns() -> dict[str, Any] | None:
    try:
        from IPython.core.getipython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    ip = get_ipython()
    return ip.user_ns if ip is not None else None
