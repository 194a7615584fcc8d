"""The kernel's side of a run: start the workers, obey Stop and Interrupt, replace dead workers.

:class:`Search` runs a :class:`~nbtune.run.worker.Job` on a backend from a background
thread, so the kernel's main thread stays free to draw progress and to handle *Stop*,
*Stop now* and Interrupt. When a local worker process dies mid-trial (killed, out of
memory), the trial it ran fails with the reason, the trials cut short with it are
recorded as interrupted and run again, and the search goes on with a fresh pool. Every
death, restart and forced stop is logged (``logging.getLogger("nbtune.run.coordinator")``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable

from nbtune.exceptions import TrialsFailedError
from nbtune.run.backends import BACKENDS, BaseBackend, SchedulerLost
from nbtune.run.liveness import reap_dead_trials, requeue_interrupted
from nbtune.run.samplers import sampler_kind
from nbtune.run.worker import Job, cut_beside
from nbtune.store.attrs import ATTR, finished_count
from nbtune.store.control import BaseControl
from nbtune.store.processes import is_alive

__all__ = ["MAX_RESTARTS", "STOP_NOW_GRACE", "KILL_GRACE", "Search"]

_logger = logging.getLogger(__name__)

STOP_NOW_GRACE = 1.5  # seconds a trial gets to notice Stop now before it is forced
KILL_GRACE = 3.0  # seconds after the forced stop before worker processes are killed
MAX_RESTARTS = 5  # worker pools replaced after deaths before the search gives up


class _DeathWatch:
    """Which worker process died *first*.

    When one loky worker dies, loky SIGKILLs the others too; only the first death is the
    trial's own fault (e.g. out of memory), the rest are collateral and get re-run. On
    Linux a pidfd becomes readable the moment its process exits, so a thread waiting on
    them sees the culprit before loky reacts.
    """

    LOOK = 0.02  # seconds between looks for workers that registered, until all have
    IDLE = 0.5  # the same once every expected worker is watched (a death wakes the watch at once)

    def __init__(self, control: BaseControl, expected: int = 0) -> None:
        self.control = control
        self.expected = expected
        self.first_dead: set[int] = set()
        self._fds: dict[int, int] = {}
        self._stop = threading.Event()
        self._wake = os.pipe()  # __exit__ ends a wait at once
        self._thread = threading.Thread(target=self._run, name="nbtune-deathwatch", daemon=True)

    def __enter__(self) -> _DeathWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        os.write(self._wake[1], b"x")
        self._thread.join(1)
        for fd in [*self._fds.values(), *self._wake]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    def _watching_all(self) -> bool:
        return 0 < self.expected <= len(self._fds)

    def _run(self) -> None:
        import select

        while not self._stop.is_set():
            # Listing the registered workers is a directory read: while every worker the search
            # started is watched, it waits for a death instead (a replaced pool's dead ones leave).
            if not self._watching_all():
                try:
                    pids = self.control.worker_pids()
                except Exception:  # a database store briefly unreachable: look again next time
                    _logger.debug("could not list the workers", exc_info=True)
                    pids = []
                for pid in pids:
                    if pid not in self._fds:
                        with contextlib.suppress(OSError):
                            self._fds[pid] = os.pidfd_open(pid)
            fds = {fd: pid for pid, fd in self._fds.items()}
            if not fds:
                self._stop.wait(self.LOOK)
                continue
            timeout = self.IDLE if self._watching_all() else self.LOOK
            ready, _, _ = select.select([*fds, self._wake[0]], [], [], timeout)
            ready = [fd for fd in ready if fd in fds]
            if ready and not self.first_dead:
                self.first_dead = {fds[fd] for fd in ready}
            for fd in ready:
                os.close(fd)
                self._fds.pop(fds[fd], None)


class Search:
    """Runs a :class:`Job` on ``n_jobs`` workers from a background thread.

    Args:
        job: what to run.
        n_jobs: number of workers.
        backend: a registered backend or its name (``inline``, ``threading``, ``loky``,
            ``dask``, ``ray``).

    Attributes:
        done: set when every worker has ended.
        error: what ended the search abnormally, re-raised by the caller; None otherwise.
        worker_deaths: one sentence per worker trouble the search went on after (a replaced worker
            pool, a trial whose lease expired, a cluster's scheduler lost), for the result's notes.
    """

    def __init__(self, job: Job, n_jobs: int = 1, backend: BaseBackend | str = "inline") -> None:
        self.job = job
        self.n_jobs = n_jobs
        self.backend = BACKENDS[backend] if isinstance(backend, str) else backend
        self.done = threading.Event()
        self.signalled = False  # Interrupt or the forced stop signalled the workers: retired at the end
        self._ended = threading.Lock()  # held while the search ends: cleanup() then waits for it
        self._cleanup_at_end = False
        self._finished = False  # the coordinator thread is past its clean-up
        self.error: BaseException | None = None
        self.worker_deaths: list[str] = []
        self._thread = threading.Thread(target=self._run, name="nbtune-search", daemon=True)
        self._timers: list[threading.Timer] = []
        self._cut_seen: set[int] = set()  # trials whose cut (--trial-timeout) replaced the pool

    @property
    def control(self) -> BaseControl:
        return self.job.control

    @property
    def deadline(self) -> float | None:
        """When the --timeout ends the run (``time.time()``), if it has one."""
        return self.job.deadline

    @property
    def trial_timeout(self) -> float | None:
        """How long one trial may run (--trial-timeout), if there is a limit."""
        return self.job.trial_timeout

    def start(self) -> None:
        _logger.info(
            "search %s: %d %s worker(s), target %d trials",
            self.job.study_name,
            self.n_jobs,
            self.backend.name,
            self.control.target(),
        )
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def cleanup(self) -> None:
        """Forget the run's control state: now if the search has ended, else when it ends. Workers
        still starting (rebuilding a large notebook object) read the stop from it: taken away while they
        started, they ran the whole search after the kernel said it was interrupted (found trying nbtune
        as a new user)."""
        with self._ended:
            if self._thread.is_alive() and not self._finished:
                self._cleanup_at_end = True
                return
        self.control.cleanup()

    # control -------------------------------------------------------------------------
    def stop(self) -> None:
        """Start no new trials; running ones finish."""
        self.control.stop("stop")

    def stop_now(self) -> None:
        """End running trials too: they get STOP_NOW_GRACE seconds to notice, then are forced."""
        self.control.stop_now()
        if not self._timers:
            self._later(STOP_NOW_GRACE, self._force_stop)

    def _later(self, seconds: float, fn: Callable[[], None]) -> None:
        t = threading.Timer(seconds, fn)
        t.daemon = True
        self._timers.append(t)
        t.start()

    def _force_stop(self) -> None:
        if self.done.is_set():
            return
        if not self.backend.starting(self.job):  # (else no trial had started: the backend says so)
            _logger.warning(
                "search %s: running trials did not stop within %.1f s (Interrupt or Stop now); forcing them to stop "
                "(a trial inside a compiled call, a model's fit, stops when that call returns)",
                self.job.study_name,
                STOP_NOW_GRACE,
            )
        self.signalled = True
        self.backend.force_stop(self.job)
        self._later(KILL_GRACE, self._kill)

    def _kill(self) -> None:
        if not self.done.is_set():
            self.backend.kill(self.job)

    # the coordinator thread -------------------------------------------------------------
    def _run(self) -> None:
        if self.job.liveness.period:  # leases: a worker on another machine may die without a word
            self.control.beat()  # and the kernel too: its beats tell remote workers it still runs
            threading.Thread(target=self._reap_expired, name="nbtune-leases", daemon=True).start()
        try:
            if self.backend.watches_deaths:
                with _DeathWatch(self.control, self.n_jobs) as watch:
                    self._run_restarting(watch)
            else:
                self._run_restarting(None)
        except BaseException as e:  # reported by the driver in the main thread
            self.error = e
        finally:
            for t in self._timers:
                t.cancel()
            if self.signalled or self.control.why() == "interrupted":  # (a worker may tell it first)
                try:
                    self.backend.retire()
                except Exception:  # the next search makes new processes anyway if these are broken
                    _logger.exception("search %s: ending the interrupted worker processes failed", self.job.study_name)
            with self._ended:
                self._finished = True
                if self._cleanup_at_end:
                    self.control.cleanup()
            # said before done is set: whoever waits for it may read the log at once
            _logger.info("search %s ended (%s)", self.job.study_name, self.control.why() or "budget reached")
            self.done.set()

    def _run_restarting(self, watch: _DeathWatch | None) -> None:
        restarts = 0
        while True:
            try:
                self.backend.run(self.job, self.n_jobs)
                if not self._others_left_work():
                    return
                continue  # a trial whose owner died was queued again: run it
            except SchedulerLost as e:
                # The cluster's workers run their trials without it: what they had may finish the study
                self._others_left_work()
                if self._n_finished() < self.control.target():
                    raise
                self.worker_deaths.append(f"{e.lost}; its workers finished the trials the study needed")
                return
            except Exception as e:
                if not self.backend.is_worker_death(e):
                    raise
                if self.control.stop_now_requested():  # we killed them ourselves
                    self._reap()
                    return
                # A worker died mid-trial (killed, out of memory): its trial fails with the
                # reason, the other workers' trials are recorded as interrupted (they will be
                # re-run), and the search goes on with a fresh pool.
                time.sleep(0.1)  # let the watch see every death
                culprits = watch.first_dead if watch is not None else None
                reason = _death_reason(e)
                # the pool's processes are gone now (loky kills the rest, in a moment): their trials
                # are dead whatever a lease says, which would take --lease-grace to expire
                gone = self._pool_gone()
                if gone == set(self.control.worker_pids()):  # every writer of the pool is dead
                    self.job.store.release_dead_writers_locks(self.job.study_name, wait=True)
                cut = self._cut_by_timeout()  # (before the trials beside them are cut too: said apart)
                if cut:
                    self._cut_beside(gone)
                died = self._reap(culprit_error=f"WorkerDied: {reason}", culprits=culprits, gone=gone)
                if watch is not None:
                    watch.first_dead = set()
                if cut:  # a trial stuck past --trial-timeout ended its worker: not a death to give up over
                    cut += self._cut_by_timeout()
                    self.worker_deaths.append(
                        f"trial(s) {cut} stayed in a call into compiled code past --trial-timeout: their worker "
                        "process was ended and the pool replaced"
                        + (f" (trial(s) {died}, running beside them, {_REAPED})" if died else "")
                    )
                    self.control.forget_workers()
                    self.job.seed_offset = max(self.job.seed_offset + 1, self.job.n_trials())
                    continue
                self.worker_deaths.append(f"a worker died and was replaced: {reason} (trials {died})")
                restarts += 1
                if restarts > MAX_RESTARTS:
                    # the partial result is the caller's to make (-o binds it, the dashboard shows it)
                    raise TrialsFailedError(_dying_message(self.worker_deaths)) from None
                _logger.warning(
                    "search %s: %s; trials %s; replacing the worker pool (restart %d of %d)",
                    self.job.study_name,
                    reason,
                    died,
                    restarts,
                    MAX_RESTARTS,
                )
                self.control.forget_workers()
                # The new pool's samplers must not draw again what the old pool's drew from the same
                # seeds: with --seed, trials 7-10 repeated trials 1-4 (found trying nbtune as a new user)
                self.job.seed_offset = max(self.job.seed_offset + 1, self.job.n_trials())

    def _pool_gone(self, within: float = 2.0) -> set[int]:
        """The pool's processes that are dead, once all are or ``within`` seconds passed (loky ends
        the others when one dies, by a signal that takes a moment to land)."""
        deadline = time.monotonic() + within
        while True:
            pids = set(self.control.worker_pids())
            gone = {pid for pid in pids if not is_alive(pid)}
            if gone == pids or time.monotonic() > deadline:
                return gone
            time.sleep(0.05)

    def _cut_beside(self, gone: set[int]) -> None:
        """The trials of dead processes that had already run past ``--trial-timeout``: cut, as
        their own process would have cut them (:func:`cut_beside`), not interrupted and re-run in
        full (a 24 s limit: a trial ran 30 s, was ended with the pool, and ran 30 s again)."""
        limit = self.job.trial_timeout
        if limit is None or not gone:
            return
        import datetime

        from optuna.trial import TrialState

        study = self.job.study()
        now = datetime.datetime.now()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = (t.user_attrs.get(ATTR.OWNER) or {}).get("pid")
            if owner in gone and t.datetime_start is not None and (now - t.datetime_start).total_seconds() > limit:
                try:
                    cut_beside(self.job, study, t)
                except Exception:  # finished concurrently after all: the reap below sees it
                    _logger.debug("could not record trial %d as cut", t.number, exc_info=True)

    def _cut_by_timeout(self) -> list[int]:
        """The trials of this run that ended their worker process to be cut (``--trial-timeout``:
        a call into compiled code that did not return) since the last look."""
        seen = self._cut_seen
        cut = [
            t.number
            for t in self.job.study().get_trials(deepcopy=False)
            if t.number >= self.job.run_start and ATTR.ENDED_PROCESS in t.user_attrs and t.number not in seen
        ]
        seen.update(cut)
        return cut

    def _n_finished(self) -> int:
        """The study's trials that count toward the target (``finished_count``)."""
        return finished_count(self.job.study().get_trials(deepcopy=False))

    def _others_left_work(self) -> bool:
        """The workers ended with the budget reached, counting trials other processes run (another
        kernel on the same study, a worker on another machine). Wait for those to end: if their
        owner is gone, its trials are marked and queued again, and True says to run them; a search
        ended while one still ran came up short of its trials with one left RUNNING forever."""
        from optuna.trial import TrialState

        study = self.job.study()
        # those running now: the trials another kernel starts meanwhile are its own run's, not ours to wait for
        waiting = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        while waiting:
            if self.control.why() or self.control.stop_requested() or self.control.stop_now_requested():
                return False
            if self.deadline is not None and time.time() >= self.deadline:
                return False
            waiting &= {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
            if not waiting:
                return False
            died = self._reap()
            if died:
                self.worker_deaths.append(
                    f"trial(s) {died} of a process that stopped (another kernel or worker) {_REAPED}"
                )
                return True
            time.sleep(self.OTHERS_POLL)
        return False

    OTHERS_POLL = 0.5  # seconds between looks at trials other processes run, once this search's are done

    def _reap_expired(self) -> None:
        """While the search runs: fail and re-queue the trials whose lease expired."""
        period = self.job.liveness.period or 5.0
        while not self.done.wait(period):
            try:
                self.control.beat()
                died = self._reap()
            except Exception:  # the database is briefly unreachable: try again next period
                _logger.warning("search %s: could not check the trials' leases", self.job.study_name, exc_info=True)
                continue
            if died:
                self.worker_deaths.append(
                    f"the lease of trial(s) {died} expired (their worker stopped renewing it): they {_REAPED}"
                )

    def _reap(
        self, culprit_error: str | None = None, culprits: set[int] | None = None, gone: set[int] | None = None
    ) -> list[int]:
        """Mark the trials of dead workers failed and queue the interrupted ones again."""
        job = self.job
        study = job.study()
        died = reap_dead_trials(
            study,
            job.liveness,
            reason="its worker process was stopped",
            culprits=culprits,
            culprit_error=culprit_error,
            gone=gone,
        )
        if not sampler_kind(job.sampler).enumerates:
            requeue_interrupted(study, job.store)
        return died


# what reap_dead_trials and requeue_interrupted did with a dead process's trials
_REAPED = "were marked interrupted and run again (a configuration that lost its process twice: failed)"


def _dying_message(deaths: list[str]) -> str:
    """Why the search gave up replacing its worker pool, from how the workers died: running out of
    memory only when the system killed them (an exit code of 1 is a trial ending its process)."""
    killed = any("SIGKILL" in d for d in deaths)
    crashed = any("crashed" in d for d in deaths)
    cause = (
        "the cell may run out of memory: lower --jobs or the model size"
        if killed
        else "a crash in compiled code: run one of those trials' configurations with --jobs 1 to see where"
        if crashed
        else "a trial ends its process (os._exit, a library that exits): run one of those trials' configurations "
        "with --jobs 1 to see where"
    )
    replaced = [d for d in deaths if d.startswith("a worker died and was replaced: ")]
    latest = replaced[-1].removeprefix("a worker died and was replaced: ") if replaced else "unknown"
    return (
        f"worker processes keep dying ({MAX_RESTARTS} restarts; the latest: {latest}); "
        f"{cause}; the finished trials are kept"
    )


def _death_reason(e: BaseException) -> str:
    text = str(e)
    if "SIGKILL" in text or "-9" in text:
        return "the worker process was killed (SIGKILL; often the system ran out of memory)"
    codes = re.search(r"exit codes of the workers are \{([^}]*)\}", text)  # joblib's (loky's) words
    if codes:
        how = codes.group(1)
        if "SIGSEGV" in how or "SIGBUS" in how or "SIGABRT" in how:
            return f"the worker process crashed ({how}: a crash in compiled code, such as a segmentation fault)"
        return f"the worker process died unexpectedly (exit code {how})"
    first = text.splitlines()[0] if text else type(e).__name__
    return "the worker process died unexpectedly (" + (first if len(first) <= 160 else first[:157] + "...") + ")"
