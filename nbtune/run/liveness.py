"""Who runs which trial, whether they still live, and recovery of the trials of the dead.

Optuna's journal has no heartbeat: a killed kernel or worker leaves its trials RUNNING
forever. So every trial records its owner when it is asked (:meth:`BaseLiveness.owner`,
written in the same journal record as the trial), and before a run and after a worker
died, :func:`reap_dead_trials` marks the trials of dead owners failed (interrupted) and
:func:`requeue_interrupted` queues their configurations again.

:class:`ProcessLiveness` decides with the operating system (a pid, its start time, /proc on
Linux), so it can only judge owners on this machine. A lease-based liveness (owners renew
a heartbeat in the store) is the multi-machine implementation of the same interface.
"""

from __future__ import annotations

import abc
import contextlib
import datetime
import logging
import os
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nbtune import _compat
from nbtune.store.attrs import ATTR, is_interrupted
from nbtune.store.processes import is_alive, process_start

if TYPE_CHECKING:
    import optuna

    from nbtune.store.base import BaseStore

__all__ = [
    "BaseLiveness",
    "LeaseLiveness",
    "ProcessLiveness",
    "active_trial",
    "dead_trials",
    "liveness_of",
    "process_start",
    "reap_dead_trials",
    "requeue_interrupted",
]

_logger = logging.getLogger(__name__)

UNOWNED_GRACE = 24 * 3600  # seconds a RUNNING trial without an owner (not started by nbtune) is left alone


class _ActiveTrials:
    """Trials being run by this very process right now (so a resume does not reap them)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: set[int] = set()

    def __contains__(self, trial_id: int) -> bool:
        with self.lock:
            return trial_id in self.ids


_ACTIVE = _ActiveTrials()


class active_trial:  # used as a function: ``with active_trial(trial_id):``
    """Mark ``trial_id`` as run by this process while the block runs.

    A class rather than a generator: it is entered once per trial, and on millisecond trials a
    generator's set-up is a measurable share of nbtune's own cost."""

    __slots__ = ("trial_id",)

    def __init__(self, trial_id: int) -> None:
        self.trial_id = trial_id

    def __enter__(self) -> None:
        with _ACTIVE.lock:
            _ACTIVE.ids.add(self.trial_id)

    def __exit__(self, *exc: object) -> None:
        with _ACTIVE.lock:
            _ACTIVE.ids.discard(self.trial_id)


class BaseLiveness(abc.ABC):
    """Decides whether the owner of a RUNNING trial is gone.

    Contract: :meth:`owner` is called once per trial by the worker that asks it, and its
    JSON-able result is stored with the trial; :meth:`is_dead` is called by anyone, later,
    with that record, and answers False whenever it cannot tell (a trial is never taken
    from a live owner).
    """

    @abc.abstractmethod
    def owner(self, worker: int) -> dict[str, Any]:
        """The record identifying the calling worker."""

    @abc.abstractmethod
    def is_dead(self, owner: dict[str, Any], trial: optuna.trial.FrozenTrial) -> bool: ...

    period: float | None = None  # seconds between checks for dead owners while a search runs (None: none)

    def heartbeat(self, trial_id: int) -> contextlib.AbstractContextManager[None]:
        """Held while a worker runs the trial (a lease renews itself meanwhile)."""
        return contextlib.nullcontext()


class ProcessLiveness(BaseLiveness):
    """Owners are processes of this machine: ``{"host", "pid", "worker", "start", "store"}``.

    ``store``: the store folder; its identity on this machine (device and inode) is recorded with
    each trial, so a copy of the store (``cp -r``, a zip, a sync taken while a search ran) knows
    that the live process that owns its RUNNING trials runs them in the original: there they are
    cut (it waited for that process to end: found trying nbtune as a new user)."""

    def __init__(self, store: str | os.PathLike[str] | None = None) -> None:
        self.store = None if store is None else str(store)

    def _folder(self) -> str | None:
        if self.store is None:
            return None
        try:
            st = os.stat(self.store)
        except OSError:
            return None
        return f"{st.st_dev}:{st.st_ino}"

    def owner(self, worker: int) -> dict[str, Any]:
        pid = os.getpid()
        out = {"host": socket.gethostname(), "pid": pid, "worker": worker, "start": process_start(pid)}
        folder = self._folder()
        if folder is not None:
            out["store"] = folder
        return out

    def is_dead(self, owner: dict[str, Any], trial: optuna.trial.FrozenTrial) -> bool:
        host, pid = owner.get("host"), owner.get("pid")
        if host is not None and host != socket.gethostname():
            return False  # another machine's worker: we cannot tell whether it lives
        if owner.get("store") is not None and self._folder() not in (None, owner["store"]):
            return True  # a process of this machine that ran it in another folder: this is a copy
        if pid is None:  # a trial nbtune did not start: leave it unless it is old
            if trial.datetime_start is None:
                return True
            return (datetime.datetime.now() - trial.datetime_start).total_seconds() > UNOWNED_GRACE
        if pid == os.getpid():
            return _compat.trial_id(trial) not in _ACTIVE
        return not is_alive(pid, owner.get("start"))


class LeaseLiveness(BaseLiveness):
    """Owners on any machine renew a lease in the store while they run a trial.

    A worker renews its trial's lease every ``interval`` seconds (a heartbeat thread); a trial
    whose lease has not been renewed for ``grace`` seconds (the store's clock) is dead, whoever
    looks. Optuna's own heartbeat (``RDBStorage(heartbeat_interval=...)``) exists only inside
    ``study.optimize()``, and nbtune runs its own ask-and-tell loop, so the lease is nbtune's.

    Args:
        store: a store that keeps leases (``store.leases``: the database store).
        interval: seconds between renewals.
        grace: seconds without a renewal after which the owner counts as gone (default 4 x interval).
    """

    def __init__(self, store: BaseStore, interval: float = 5.0, grace: float | None = None) -> None:
        self.store = store
        self.interval = float(interval)
        self.grace = float(grace) if grace is not None else 4 * self.interval
        self.period = self.interval

    def owner(self, worker: int) -> dict[str, Any]:
        pid = os.getpid()
        return {"host": socket.gethostname(), "pid": pid, "worker": worker, "start": process_start(pid), "lease": True}

    @contextlib.contextmanager
    def heartbeat(self, trial_id: int) -> Iterator[None]:
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.interval):
                try:
                    self.store.renew_lease(trial_id)
                except Exception:  # the database is briefly unreachable: the next renewal may work
                    _logger.warning("could not renew the lease of trial id %d", trial_id, exc_info=True)

        # no renewal now: until the first one, a trial is judged by its start (a query saved per trial)
        beat = threading.Thread(target=renew, name="nbtune-lease", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                self.store.end_lease(trial_id)

    def is_dead(self, owner: dict[str, Any], trial: optuna.trial.FrozenTrial) -> bool:
        started = trial.datetime_start
        old = started is None or (datetime.datetime.now() - started).total_seconds() > self.grace
        if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            # this process's: dead if it runs it no more (and it was not just asked, about to run)
            return _compat.trial_id(trial) not in _ACTIVE and old
        age = self.store.lease_age(_compat.trial_id(trial))
        if age is None:  # no lease: not renewed yet (just asked), or its worker ended: judge by its start
            return old
        return age > self.grace


def liveness_of(store: BaseStore, heartbeat: float = 5.0, grace: float | None = None) -> BaseLiveness:
    """How a store's running trials are known to live: leases renewed in a database (workers on
    any machine), else the owners' processes on this machine."""
    return LeaseLiveness(store, heartbeat, grace) if store.leases else ProcessLiveness(store.where())


def dead_trials(
    study: optuna.Study, liveness: BaseLiveness, gone: set[int] | None = None
) -> list[optuna.trial.FrozenTrial]:
    """The RUNNING trials whose owner is gone (a dead kernel or worker left them); ``gone``: pids
    of this machine known to have died (a worker pool this process ran), whatever the leases say."""
    from optuna.trial import TrialState

    here = socket.gethostname()
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if _gone(t.user_attrs.get(ATTR.OWNER) or {}, gone, here)
        or liveness.is_dead(t.user_attrs.get(ATTR.OWNER) or {}, t)
    ]


def _gone(owner: dict[str, Any], gone: set[int] | None, here: str) -> bool:
    return bool(gone) and owner.get("host") == here and owner.get("pid") in gone  # type: ignore[operator]


def reap_dead_trials(
    study: optuna.Study,
    liveness: BaseLiveness,
    *,
    reason: str = "the kernel or worker running it stopped (interrupt, restart or crash)",
    culprits: set[int] | None = None,
    culprit_error: str | None = None,
    gone: set[int] | None = None,
) -> list[int]:
    """Mark RUNNING trials whose owner is gone as failed (interrupted).

    Args:
        study: the study to clean up.
        liveness: decides which owners are gone.
        reason: why they stopped, recorded as their interrupted reason.
        culprit_error: when a worker died of its trial (out of memory, say), that trial
            fails with this error instead of being interrupted: it counts and is not re-run.
        culprits: the pids that died of their own trial; None means every dead one.
        gone: pids of this machine known to have died (see :func:`dead_trials`).

    Returns:
        The numbers of the trials marked.
    """
    from optuna.trial import TrialState

    storage = _compat.storage_of(study)
    reaped = []
    for t in dead_trials(study, liveness, gone):
        owner = t.user_attrs.get(ATTR.OWNER) or {}
        first = t.user_attrs.get(ATTR.RERUN_OF)
        try:
            if (
                culprit_error is not None
                and ATTR.INTERRUPTED not in t.user_attrs
                and (culprits is None or owner.get("pid") in culprits)
            ):
                storage.set_trial_user_attr(_compat.trial_id(t), ATTR.ERROR, culprit_error)
            elif first is not None:
                # The second time this configuration's process died under it: a failure that counts
                # (toward -n, and the three-failures rule), not an interruption. Interrupted, it was
                # never counted, and a cell whose trials crash their worker (os._exit, a segfault)
                # searched on forever on a cluster (found trying nbtune as a new user).
                storage.set_trial_user_attr(
                    _compat.trial_id(t),
                    ATTR.ERROR,
                    f"WorkerDied: {reason}, as when it ran this configuration before (trial {first}): a trial that "
                    "ends or crashes its process (os._exit, a segfault, out of memory)? If the kernel was restarted "
                    "or killed by hand both times, the configuration is not at fault: "
                    f"res.study.enqueue_trial({t.params!r}) runs it in the next search",
                )
            else:
                storage.set_trial_user_attr(_compat.trial_id(t), ATTR.INTERRUPTED, reason)
            storage.set_trial_state_values(_compat.trial_id(t), TrialState.FAIL)
        except Exception:  # finished concurrently (it was alive after all)
            continue
        reaped.append(t.number)
    if reaped:
        # info, not a warning: the result's messages tell the user, once
        _logger.info("marked %d abandoned trial(s) of %s as failed: %s", len(reaped), study.study_name, reaped)
    return reaped


def requeue_interrupted(study: optuna.Study, store: BaseStore) -> list[int]:
    """Queue the configurations of interrupted trials again (each interrupted trial once), so an
    interrupt costs time but not a configuration the sampler chose, however often it is cut: a
    re-run cut by a second Interrupt was dropped for good, the baseline too, without a word (found
    retesting Interrupt as a user). A configuration that keeps crashing its process cannot hold the
    study back: its second death is a failure, not an interruption (:func:`reap_dead_trials`).

    Returns:
        The numbers of the trials whose configurations were queued.
    """

    def todo() -> list[optuna.trial.FrozenTrial]:
        trials = study.get_trials(deepcopy=False)
        done = {t.user_attrs.get(ATTR.RERUN_OF) for t in trials}
        return [t for t in trials if is_interrupted(t) and t.number not in done and t.params]

    out: list[int] = []
    if not todo():
        return out  # nothing to write (a read-only store stays untouched)
    with store.lock(study.study_name):
        for t in todo():  # again under the lock: another process may have queued them
            attrs: dict[str, Any] = {ATTR.RERUN_OF: t.number}
            attrs.update({k: t.user_attrs[k] for k in ATTR.KEEP_ON_RERUN if t.user_attrs.get(k) is not None})
            saved = t.user_attrs.get(ATTR.CHECKPOINT)
            if saved and saved.get("step"):  # it resumes from its last saved epoch, with its curve so far
                values = {str(s): v for s, v in t.intermediate_values.items() if s <= saved["step"]}
                attrs[ATTR.RESUME] = {**saved, "values": values}
            elif ATTR.RESUME in t.user_attrs:  # cut before its first save: from where it began again
                attrs[ATTR.RESUME] = t.user_attrs[ATTR.RESUME]
            study.enqueue_trial(t.params, user_attrs=attrs)
            out.append(t.number)
    if out:
        _logger.info("queued the configurations of interrupted trial(s) %s of %s again", out, study.study_name)
    return out
