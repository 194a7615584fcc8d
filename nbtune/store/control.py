"""What the kernel tells its workers while a search runs, and who the workers are.

A :class:`BaseControl` carries one run's stop flags (*Stop*, *Stop now*), its trial target
(*+ trials*) and the registry of worker processes (for forced stops and the death watch).
The coordinator and every worker hold one; workers on other processes get a pickled copy,
so an implementation keeps its state somewhere all of them reach: the store gives the right
one (:meth:`nbtune.store.base.BaseStore.control`).

:class:`FileControl` keeps the state as small marker files in a folder (inside the store's
folder for the journal store), cheap enough to check after every epoch; threads in the
coordinator's own process also see in-memory events, at once.
"""

from __future__ import annotations

import abc
import contextlib
import math
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from nbtune.store.processes import is_alive, process_start

__all__ = ["BaseControl", "FileControl"]


class BaseControl(abc.ABC):
    """Stop flags, the trial target and the worker registry of one run.

    The contract: every method may be called from any worker, thread or process, at any
    time, and must be cheap (workers check :meth:`stop_now_requested` after every epoch).
    """

    def __init__(self, n_trials: int) -> None:
        self._stop = threading.Event()
        self._stop_now = threading.Event()
        self._n_trials = int(n_trials)  # the last target seen, should the shared one be unreadable
        # Whether a copy was ever made (pickled for another process). Until then every flag
        # and target was put through this object, which set its events at once: the checks
        # before every trial and after every epoch need not read the shared state.
        self._copied = False

    def __getstate__(self) -> dict[str, Any]:
        self._copied = True
        state = self.__dict__.copy()
        del state["_stop"], state["_stop_now"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._stop = threading.Event()
        self._stop_now = threading.Event()

    # the shared state, kept where every worker reaches it --------------------------------
    @abc.abstractmethod
    def _put(self, key: str, value: str) -> None:
        """Record ``key`` (best effort: a flag that cannot be written must not stop a trial)."""

    @abc.abstractmethod
    def _get(self, key: str) -> str | None:
        """The value of ``key``, or None when it was never put."""

    def _has(self, key: str) -> bool:
        """Whether ``key`` was put (the per-epoch check; implementations may make it cheaper)."""
        return self._get(key) is not None

    @abc.abstractmethod
    def _delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def _keys(self, prefix: str) -> list[str]: ...

    def cleanup(self) -> None:
        """Forget this run's state (the run is over)."""

    # what the coordinator and the workers say ------------------------------------------
    def stop(self, why: str = "stop") -> None:
        """Start no new trials; running ones finish. ``why`` is kept for the final message."""
        self._stop.set()
        self._put("stop", why)

    def stop_now(self) -> None:
        """Interrupt running trials too."""
        self._stop.set()
        self._stop_now.set()
        if not self._get("stop"):
            self._put("stop", "stop now")
        self._put("stop_now", "1")

    def stop_requested(self) -> bool:
        return self._stop.is_set() or (self._copied and self._has("stop"))

    def stop_now_requested(self) -> bool:
        return self._stop_now.is_set() or (self._copied and self._has("stop_now"))

    def clock(self) -> float:
        """Seconds on a clock every worker reads alike (the database's for the database store)."""
        return time.time()

    def beat(self) -> None:
        """The kernel is alive (called every lease period while a search runs): workers on other
        machines, which no parent watch reaches, stop starting trials when the beats stop."""
        self._put("kernel", repr(self.clock()))

    def kernel_alive(self, grace: float) -> bool:
        """False once the kernel has not beaten for ``grace`` seconds (True if it never did)."""
        beat = self._get("kernel")
        try:
            age = self.clock() - float(beat) if beat is not None else 0.0
        except ValueError:
            return True
        return not age >= grace  # an unreadable clock (NaN) is no verdict

    def why(self) -> str:
        """Why the run stopped: ``stop``, ``timeout``, ``interrupted``, ``bug``, ``grid exhausted``, or ''."""
        return self._get("stop") or ""

    def set_target(self, n_trials: int) -> None:
        """Change the number of finished trials the run aims at (+ trials, while it runs)."""
        self._n_trials = int(n_trials)
        self._put("target", str(self._n_trials))

    def target(self) -> int:
        """The number of finished trials the run aims at: the one owner of that number."""
        if not self._copied:
            return self._n_trials
        with contextlib.suppress(TypeError, ValueError):
            self._n_trials = int(self._get("target"))  # type: ignore[arg-type]
        return self._n_trials

    def register_worker(self, worker: int) -> int:
        """A worker process says who it is (Stop now and the death watch need its pid). Returns
        how many other processes held the same worker slot before in this run: a cluster that
        restarted a dead worker's task on a new process (its sampler must not draw the same
        configurations again)."""
        mine = f"worker-{os.getpid()}"
        before = sum(1 for key in self._keys("worker-") if key != mine and self._get(key) == str(worker))
        self._put(mine, str(worker))
        return before

    def worker_pids(self) -> list[int]:
        pids = []
        for key in self._keys("worker-"):
            with contextlib.suppress(ValueError):
                pids.append(int(key.split("-", 1)[1]))
        return pids

    def forget_workers(self) -> None:
        for pid in self.worker_pids():
            self._delete(f"worker-{pid}")


OWNER_KEY = "owner"  # a run control's key (a file, a row) for run_owner(): who started the run


def run_owner() -> str:
    """What a run's control records of the process that started it: "<host> <pid> <start>"."""
    return f"{socket.gethostname()} {os.getpid()} {process_start(os.getpid())}"


def owner_gone(owner: str | None) -> bool:
    """Whether the process ``owner`` (:func:`run_owner`) names has ended (its pid reused by another
    counts): only for this machine's, whose processes it can see (False when unsure)."""
    try:
        host, pid, *start = (owner or "").split()
        if host != socket.gethostname() or int(pid) == os.getpid():
            return False
    except ValueError:  # no owner (being made), unreadable
        return False
    return not is_alive(int(pid), start[0] if start and start[0] != "None" else None)


def sweep_dead_runs(runs: Path) -> None:
    """Remove the control folders of runs whose process is gone (a killed kernel leaves its
    ``runs/<name>-<id>`` behind)."""
    for folder in runs.glob("*-*"):
        with contextlib.suppress(OSError):
            if owner_gone(Path(folder, OWNER_KEY).read_text()):
                shutil.rmtree(folder, ignore_errors=True)


class FileControl(BaseControl):
    """A run's state as marker files in ``directory`` (a private temp folder by default).

    Args:
        n_trials: the run's target number of finished trials.
        directory: the folder; every worker must reach it (the journal store puts it in the
            store folder, so a shared filesystem carries it to other machines too).
    """

    FRESH = 0.5  # seconds the target read from its file is reused (a worker asks before every trial)

    def __init__(self, n_trials: int, directory: str | os.PathLike[str] | None = None) -> None:
        super().__init__(n_trials)
        self._target_seen = -math.inf
        if directory is None:
            directory = tempfile.mkdtemp(prefix="nbtune-run-")
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.directory = str(directory)
        self._put(OWNER_KEY, run_owner())  # (a sweep knows a dead run's folder)
        self.set_target(n_trials)

    def _put(self, key: str, value: str) -> None:
        with contextlib.suppress(OSError):
            Path(self.directory, key).write_text(value)

    def _get(self, key: str) -> str | None:
        try:
            with open(os.path.join(self.directory, key)) as f:
                return f.read()
        except OSError:
            return None

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._target_seen = -math.inf  # another process (or machine): its clock, its own reads

    def set_target(self, n_trials: int) -> None:
        super().set_target(n_trials)
        self._target_seen = time.monotonic()

    def target(self) -> int:
        if time.monotonic() - self._target_seen < self.FRESH:
            return self._n_trials
        self._target_seen = time.monotonic()
        return super().target()

    def _has(self, key: str) -> bool:
        # checked before every trial: os.access answers without raising for a missing file
        return os.access(os.path.join(self.directory, key), os.F_OK)

    def _delete(self, key: str) -> None:
        Path(self.directory, key).unlink(missing_ok=True)

    def _keys(self, prefix: str) -> list[str]:
        return [p.name for p in Path(self.directory).glob(prefix + "*")]

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
