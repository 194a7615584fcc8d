"""The loop every worker runs: ask a trial, run the cell, report, tell; until the budget is used.

:func:`run_worker` runs identically in the kernel (the inline backend), on a thread, in a
loky process, or in a Dask/Ray worker: everything it needs comes in a :class:`Job`, which
pickles. It loads the study from the store and runs trials until the study holds the
target number of finished trials. The budget is counted under the store's per-study lock,
so the study ends with exactly that many however many workers there are, and Optuna's
pruners see every worker's rungs through the shared storage.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from nbtune import _compat
from nbtune.cell import rng
from nbtune.cell.program import (
    CellProgram,
    MetricError,
    TrialInterrupted,
    TrialRuntime,
    TrialStopped,
    TrialTimeout,
    recorded_value,
)
from nbtune.cell.reads import zero_division_nan
from nbtune.exceptions import ConfigError
from nbtune.run.checkpoints import (
    KEEP_PAUSED,
    has_checkpoint,
    paused_in_memory,
    plain_carried,
    prune_checkpoints,
    resume_point,
    save_checkpoint,
)
from nbtune.run.liveness import BaseLiveness, ProcessLiveness, active_trial
from nbtune.run.output import OUTPUT_TAIL, captured_output, native_output, warnings_in
from nbtune.run.samplers import make_sampler
from nbtune.run.schedulers import SchedulerSpec, make_pruner
from nbtune.store.attrs import (
    ATTR,
    diverged,
    finished_count,
    is_continuation,
    is_interrupted,
    queued_continuations,
    refused,
)
from nbtune.store.base import BaseStore
from nbtune.store.control import BaseControl

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    import optuna

__all__ = [
    "N_FAILURES_TO_STOP",
    "N_RAISED_TO_STOP",
    "Job",
    "WorkerStopped",
    "ended_in_run",
    "first_failures",
    "run_one",
    "run_worker",
    "running_threads",
]

_logger = logging.getLogger(__name__)

N_FAILURES_TO_STOP = 3  # the first trials of a run all failing the same way = a bug in the cell
# ... at the cell's own raise statement (a simulation that does not converge for those values): the
# cell judged the configurations, and three in a row can be the luck of the first draws
N_RAISED_TO_STOP = 10


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"the environment variable {name}={value!r} must be a whole number") from None


@dataclass
class Job:
    """Everything a worker needs; pickles to other processes.

    The number of trials to reach is not here: it lives in ``control`` (one owner, which
    ``+ trials`` changes while the search runs).
    """

    program: CellProgram
    store: BaseStore
    study_name: str
    control: BaseControl
    sampler: str = "tpe"
    seed: int | None = None
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    liveness: BaseLiveness = field(default_factory=ProcessLiveness)
    deadline: float | None = None
    trial_timeout: float | None = None  # seconds a trial may run (--trial-timeout)
    # a trial still in one call stuck_grace past the limit ends its worker process (set by the
    # backends whose workers are processes the coordinator replaces: never the kernel's)
    ends_stuck_trials: bool = False
    # ten failures in a row at the cell's own raise or the time limit stop the run as a bug; not the
    # checks' runs, whose failures by seed are what they report
    refusals_stop: bool = True
    run_start: int = 0  # number of the first trial of this run
    seed_offset: int = 0  # trials in the study when this run began
    vary_seed: bool = False  # each trial's '# tune: seed' variable is the cell's value + its number
    outer_fold: int | None = None  # nested CV: the value of the '# tune: outer(k)' variable
    keep_checkpoints: int = 3  # the best K complete trials keep their saved state
    # the study's trials from this number on ran this very cell (--resume over an edit moves it): an
    # error those met beside complete ones is the configurations', not a bug
    code_since: int = 0
    # the fingerprints of the notebook data the cell reads, taken in the kernel as the run began: a worker's
    # in-place check hashes the data once, after its first trial, not before it too (_InPlace)
    data_before: dict[str, str] | None = None
    # the settings of the user's modules that the notebook set since it imported them ('reg.SCALE = 3.0'):
    # a worker process imports such a module from its file, and is given them (module -> name -> value)
    module_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the kernel's fingerprints of the user's modules the cell uses (its identity's "imports"): a worker
    # process that runs other code of one stops the search before its first trial (_check_module_code)
    module_code: dict[str, str] = field(default_factory=dict)
    # paused trials of a cell without declared state that each worker process keeps in memory
    keep_paused: int = field(default_factory=lambda: _env_int("NBTUNE_KEEP_PAUSED", KEEP_PAUSED))
    parent_pid: int = field(default_factory=os.getpid)
    cwd: str = field(default_factory=os.getcwd)  # the kernel's: relative paths in the cell mean the same in workers
    # how the kernel starts processes; a cell's own (a DataLoader's workers) start the same way in workers
    mp_start_method: str = field(default_factory=lambda: multiprocessing.get_start_method())

    def seed_for(self, worker: int) -> int | None:
        """Each worker's sampler seed; a resumed run must not replay the first run's configurations."""
        if self.seed is None:
            return None
        return (self.seed + 7919 * self.seed_offset + 104729 * worker) % (2**32)

    @property
    def memory_key(self) -> str:
        """This study, among the studies whose paused trials a process keeps in memory."""
        return f"{self.store.location(self.study_name)}::{self.study_name}"

    def study(self) -> optuna.Study:
        """The study as the coordinator reads and writes it (no worker's sampler or pruner)."""
        import optuna

        return optuna.load_study(study_name=self.study_name, storage=self.store.storage(self.study_name))

    def n_trials(self) -> int:
        """The study's trials now, of every state (a seed that must move past what was drawn)."""
        return len(self.study().get_trials(deepcopy=False))

    def open_study(self, worker: int) -> optuna.Study:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = make_sampler(self.sampler, self.program.params, self.seed_for(worker))
        try:
            return optuna.load_study(
                study_name=self.study_name,
                storage=self.store.storage(self.study_name),
                sampler=sampler,
                pruner=make_pruner(self.scheduler),
            )
        except KeyError:
            if os.getpid() == self.parent_pid:
                raise
            # A worker on another machine, or one that sees another folder at the store's path: the
            # study the kernel made is not there (a 140-line traceback ending in "Record does not
            # exist"; found trying nbtune as a new user)
            import socket

            raise ConfigError(
                f"a worker on {socket.gethostname()} (process {os.getpid()}) cannot find the study "
                f"{self.study_name!r} in {self.store.location(self.study_name)}: a journal store is a folder, and every "
                "worker must reach that same folder (a shared file system); on a cluster without one, use a database "
                "store (--store postgresql://...)"
            ) from None


class _RunningThreads:
    """Which thread of this process runs which trial (Stop now interrupts threads by ident).

    ``with running_threads.running(number):`` registers the calling thread for the block; a
    class rather than a generator, as it is entered once per trial."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.trials: dict[int, int] = {}  # thread ident -> trial number

    def running(self, number: int) -> _Running:
        return _Running(self, number)

    def idents(self) -> list[int]:
        with self.lock:
            return list(self.trials)


class _Running:
    __slots__ = ("ident", "number", "threads")

    def __init__(self, threads: _RunningThreads, number: int) -> None:
        self.threads, self.number, self.ident = threads, number, 0

    def __enter__(self) -> None:
        self.ident = threading.get_ident()
        with self.threads.lock:
            self.threads.trials[self.ident] = self.number

    def __exit__(self, *exc: object) -> None:
        with self.threads.lock:
            self.threads.trials.pop(self.ident, None)


running_threads = _RunningThreads()


def async_raise(ident: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in the thread ``ident`` at its next bytecode (None: drop one not raised yet).
    Python code stops there; a call into compiled code that does not return is not cut short."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None if exc is None else ctypes.py_object(exc))


EXIT_STUCK = 75  # a worker process's exit code when it ended itself to cut a trial (:func:`_stuck`)


def stuck_grace(limit: float) -> float:
    """How long past ``--trial-timeout`` a worker process waits for a trial's exception to land
    before it ends itself (:meth:`TrialClock._stuck`): a call that returns soon after the limit
    costs less than a new worker pool and the trial running beside it."""
    return max(5.0, 0.25 * limit)


class TrialClock:
    """``--trial-timeout``: a trial that runs past it gets :class:`TrialTimeout` in its thread.

    The exception is raised in the cell's own code, never inside nbtune's work within the trial
    (a suggestion, an epoch's report, a checkpoint: the store's writes): entered as the runtime's
    ``guard`` around that work, the clock holds it back, and raises it when the work is done.

    In a worker process (``on_stuck``), a trial whose exception has not landed
    :func:`stuck_grace` later is in a call into compiled code that does not return: it is recorded
    and the process ends (:meth:`_stuck`), which the coordinator replaces.
    """

    def __init__(self, seconds: float, on_stuck: Callable[[FrameType | None], None] | None = None) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._inside = 0  # nbtune's own work running in the trial now (nested)
        self._running = False
        self._ident = 0
        self._timers: list[threading.Timer] = []
        self._on_stuck = on_stuck

    def start(self) -> None:
        """On the trial's thread, as its cell starts."""
        self._ident, self._running = threading.get_ident(), True
        self._timers = [threading.Timer(self.seconds, self._expire)]
        if self._on_stuck is not None:
            self._timers.append(threading.Timer(self.seconds + stuck_grace(self.seconds), self._stuck))
        for timer in self._timers:
            timer.daemon = True
            timer.start()

    def stop(self) -> None:
        """On the trial's thread, as its cell ended (either way)."""
        with self._lock:
            self._running = False
            expired = self.expired
        for timer in self._timers:
            timer.cancel()
        if expired:  # ran out as the cell ended: not raised yet, and not to be raised later
            async_raise(self._ident, None)

    def _stuck(self) -> None:
        """``stuck_grace`` after the limit, the exception has not landed: the trial's thread is in
        one call into compiled code that has not returned (an SVM's fit at an extreme ``C``), which
        an exception cannot cut. ``on_stuck`` records the trial and ends the process. Not while
        nbtune's own work runs (its writes are never cut); with the lock held, so the trial's thread
        cannot start any, nor record the trial itself, meanwhile. A call that holds Python's lock
        all along keeps this thread from running at all."""
        with self._lock:
            if self._running and not self._inside and self._on_stuck is not None:
                self._on_stuck(sys._current_frames().get(self._ident))

    def finish(self) -> None:
        """The trial reported its last epoch (or fold): its work is done, and it is not cut after
        it (a limit that ran out during that last report had made a finished trial a stopped one;
        found trying nbtune as a new user)."""
        with self._lock:
            self._running = self.expired = False

    def _expire(self) -> None:
        with self._lock:
            if not self._running:
                return
            self.expired = True
            if not self._inside:
                async_raise(self._ident, TrialTimeout)

    def __enter__(self) -> None:
        with self._lock:
            self._inside += 1
            expired = self.expired and self._inside == 1
        if expired:  # ran out just before: raised here, before the work starts
            async_raise(self._ident, None)
            with self._lock:
                self._inside -= 1
            raise TrialTimeout()

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        with self._lock:
            self._inside -= 1
            expired = self.expired and not self._inside
        if expired and kind is None:  # ran out during nbtune's work: now that it is done
            raise TrialTimeout()


def ended_in_run(trials: list[optuna.trial.FrozenTrial], run_start: int) -> list[optuna.trial.FrozenTrial]:
    """The trials of the run that began at trial ``run_start`` that ended on their own (complete
    or failed, not interrupted), in order: what :func:`first_failures` reads."""
    return sorted(
        (
            t
            for t in trials
            if t.number >= run_start
            and (t.state.name in ("COMPLETE", "FAIL") or ATTR.TIMED_OUT in t.user_attrs)  # (cut at its last epoch)
            and not is_interrupted(t)
        ),
        key=lambda t: t.number,
    )


def first_failures(ended: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Of a run's first trials to end on their own (in order), those that decide whether the cell
    has a bug: the first :data:`N_FAILURES_TO_STOP` that did not fail at the cell's own ``raise``
    or by ``--trial-timeout`` (:func:`refused`: a crash, a NameError, a TypeError), when no trial
    completed before the last of them; else the first :data:`N_RAISED_TO_STOP` when they all
    failed at that ``raise`` or by the time limit (ten configurations
    in a row that the cell refused are a bug as surely as three that crashed; three were the luck of
    a simulation's first draws, found trying nbtune as a new user). Empty when neither is there yet.
    A NameError below the cell's own ``raise`` was hidden by it, the two alternating, and spent
    the whole budget (found trying nbtune as a new user)."""
    crashes: list[optuna.trial.FrozenTrial] = []
    for t in ended:
        if t.state.name == "COMPLETE":
            break
        if not refused(t):
            crashes.append(t)
            if len(crashes) == N_FAILURES_TO_STOP:
                return crashes
    raised = ended[:N_RAISED_TO_STOP]
    if len(raised) == N_RAISED_TO_STOP and all(refused(t) for t in raised):
        return raised
    return []


def _failure(t: optuna.trial.FrozenTrial) -> str | None:
    """What a failed trial failed with, as the bug guard compares them."""
    if ATTR.TIMED_OUT in t.user_attrs:
        return "TrialTimeout"
    return t.user_attrs.get(ATTR.FAILURE, t.user_attrs.get(ATTR.ERROR))


def _first_failures_match(study: optuna.Study, job: Job) -> bool:
    """The first trials of this run to end on their own all failed with one error
    (:func:`first_failures`): the cell has a bug.

    A trial the scheduler paused or stopped at a rung (PRUNED) is not counted: it never reached
    the rest of the cell, so a bug after the first rung (a typo at epoch 2) would otherwise hide
    behind the pauses while every continuation fails. Trials that diverged (their metric NaN or
    infinite) are a bug only if no trial of the study ever reported a number; nor is an error that
    trials of an earlier run of the study (the same code, on the same data) ended with beside
    complete ones: some configurations raise it (an invalid solver and penalty), and a re-run that
    starts with three of them goes on."""
    trials = study.get_trials(deepcopy=False)
    mine = first_failures(ended_in_run(trials, job.run_start))
    if not mine or (not job.refusals_stop and all(refused(t) for t in mine)):
        return False
    # The same exception at the same place of the cell is the same bug, whatever its message
    # says (values differ from trial to trial); a trial cut by the time limit at its last epoch is
    # one that ran past it too (a limit below a full trial's time had cut every one, and the search
    # went on to its end without a complete trial; found trying nbtune as a new user).
    failures = {_failure(t) for t in mine}
    if not all(t.state.name == "FAIL" or ATTR.TIMED_OUT in t.user_attrs for t in mine) or len(failures) != 1:
        return False
    same_code = [t for t in trials if t.number >= job.code_since]
    if any(t.state.name == "COMPLETE" for t in same_code) and any(
        t.number < job.run_start and _failure(t) in failures for t in same_code if t.state.name == "FAIL"
    ):
        return False
    if diverged(mine[0]):
        # A metric that came out NaN or infinite is the configurations' doing (a range whose top
        # diverges), unless the cell never gave a number at all, in this run or an earlier one.
        return not any(t.value is not None or t.intermediate_values for t in trials)
    return True


def run_one(job: Job, study: optuna.Study, trial: optuna.Trial) -> str:
    """Run one trial to its end and tell the study; returns the final state's name.

    Raises:
        TrialInterrupted: the trial was stopped by the user (Stop now, Interrupt); it is recorded
            as interrupted (it does not count and runs again on resume) before this raises.
    """
    from optuna.trial import TrialState

    storage, tid = _compat.storage_of(study), _compat.trial_id(trial)
    attrs = _compat.attrs_at_start(trial)
    check = attrs.get(ATTR.CHECK)  # a run of the checks after a search
    names = job.program.state
    epochs_loop = job.program.spec.epochs is not None
    resume = attrs.get(ATTR.RESUME) if epochs_loop else None
    runtime = TrialRuntime(
        job.program,
        trial,
        should_stop_now=job.control.stop_now_requested,
        max_step=job.scheduler.R,
        # PBT pauses the baseline too: it is a member like the others
        prunable=(not attrs.get(ATTR.BASELINE) or job.scheduler.scheduler.pauses) and check is None,
        seed=_trial_seed(job, trial, attrs.get(ATTR.SEED)),
        reveal_holdout=check is not None,
        outer_fold=job.outer_fold,
        on_checkpoint=(
            lambda step, ns: save_checkpoint(job.store, trial, ns, _epoch_state(job, ns), step, job.program.carried)
        )
        if names and epochs_loop
        else None,
        resume=(lambda: _resume_point(job, storage, tid, resume)) if resume else None,
        guard=(clock := TrialClock(job.trial_timeout, on_stuck=lambda frame: _stuck(job, study, trial, frame, out)))
        if job.trial_timeout is not None
        else None,
        # (through the trial: the pruner reads its cached record)
        on_guardrails=lambda step, by: trial.set_user_attr(ATTR.BREAKS, {"epoch": step, "by": by} if by else None),
    )
    out: list[str] = []  # bound before a forced stop (an async exception) can arrive
    warned: list[str] = []  # the distinct warnings it printed (ATTR.WARNINGS)
    with active_trial(tid), job.liveness.heartbeat(tid):
        try:
            try:
                with running_threads.running(trial.number), captured_output() as out:
                    _compat.show_warnings_again()  # each trial's output has its warnings
                    if job.trial_timeout is None:
                        value = job.program.run(runtime)
                    else:
                        clock.start()
                        try:
                            value = job.program.run(runtime)
                        finally:
                            clock.stop()
            finally:
                whole = "".join(out)
                if whole.strip():
                    storage.set_trial_user_attr(tid, ATTR.OUTPUT, whole[-OUTPUT_TAIL:])
                    if warned := warnings_in(whole):
                        storage.set_trial_user_attr(tid, ATTR.WARNINGS, warned)
        except TrialStopped:
            _keep_records(job, storage, tid, runtime, stopped=True)
            for label, violation in (trial.user_attrs.get(ATTR.BREAKS) or {}).get("by", {}).items():
                # stopped breaking a guardrail: Optuna's samplers count it infeasible, as a complete one
                trial.set_constraint(label, violation)
            if job.scheduler.pause and runtime._ns is not None:
                decision = storage.get_trial(tid).user_attrs.get(ATTR.DECISION, {})
                if decision.get("paused") and names:  # its state after this epoch: it goes on from here if promoted
                    save_checkpoint(
                        job.store,
                        trial,
                        runtime._ns,
                        _epoch_state(job, runtime._ns),
                        decision["epoch"],
                        job.program.carried,
                    )
                # and all it bound, in this process's memory: a promotion here goes on from its optimizer and
                # scheduler too, not only its declared state (a checkpoint of the model alone restarted the
                # learning-rate schedule and lost Adam's moments: found trying nbtune as a new user). A
                # successive-halving pause (ranked at its rung); PBT's members go on from their checkpoints.
                if decision.get("paused") and decision["epoch"] == runtime._step and "rank" in decision:
                    standing = decision["rank"] / max(1, decision["n_compared"])
                    paused_in_memory.keep(
                        job.memory_key,
                        trial.number,
                        runtime._step,
                        runtime._ns,
                        job.program.globals,
                        standing,
                        job.keep_paused,
                    )
            _compat.tell_quietly(study, trial, state=TrialState.PRUNED)
            if names:
                prune_checkpoints(study, job.store, job.keep_checkpoints)  # a stopped trial never resumes
            return "PRUNED"
        except TrialInterrupted:
            # its --record curve so far goes on with its re-run, as its learning curve does (lost: found
            # retesting nbtune as a user)
            with contextlib.suppress(Exception):
                _keep_records(job, storage, tid, runtime, stopped=True)
            _record_interrupted(study, trial)
            raise
        except TrialTimeout as e:
            return _timed_out(job, study, trial, job.program.failure_line(e), job.program.user_traceback(e))
        except MetricError as e:
            behind = _why_not_finite(e, warned, job.program)
            storage.set_trial_user_attr(tid, ATTR.ERROR, f"MetricError: {e}" + (f" (after {behind})" if behind else ""))
            storage.set_trial_user_attr(tid, ATTR.FAILURE, f"MetricError: {e.name or job.program.metric} {e.kind}")
            if (
                job.program.sets_non_finite
                and e.kind == "not finite"
                and (e.name or job.program.metric) == job.program.metric
            ):  # its own NaN: the cell judged it, as a raise does
                storage.set_trial_user_attr(tid, ATTR.RAISED, True)
            _compat.tell_quietly(study, trial, state=TrialState.FAIL)
            return "FAIL"
        # sys.exit() in a cell fails the trial, not the kernel. So does a KeyboardInterrupt the
        # cell raises itself: the kernel's Interrupt never reaches a trial as one (signals go
        # to the main thread, trials run on others; worker processes turn SIGINT into
        # WorkerStopped), so re-running that configuration would only raise it again.
        except (Exception, SystemExit, KeyboardInterrupt) as e:
            signalled = _signal_behind(e)
            if signalled is not None:  # an Interrupt or Stop now, not the cell's error
                _record_interrupted(study, trial)
                raise signalled from None
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            if isinstance(e, ValueError) and "read-only" in msg and os.getpid() != job.parent_pid:
                # joblib hands worker processes a notebook array over 1 MB memory-mapped, read only:
                # 'Xbig += x' failed every trial there (found trying nbtune as a new user)
                msg += (
                    " (worker processes get a notebook array over 1 MB memory-mapped and read-only: change a copy "
                    "in the cell, 'X = X + x' or 'X = X.copy()', as a trial must not change the notebook's data anyway)"
                )
            storage.set_trial_user_attr(
                tid, ATTR.ERROR, (f"{type(e).__name__}: {msg}" if msg else type(e).__name__)[:500]
            )
            storage.set_trial_user_attr(tid, ATTR.TRACEBACK, job.program.user_traceback(e)[-8000:])
            line = job.program.failure_line(e)
            storage.set_trial_user_attr(tid, ATTR.FAILURE, type(e).__name__ + (f" at line {line}" if line else ""))
            if job.program.raises_at(line):
                storage.set_trial_user_attr(tid, ATTR.RAISED, True)
            _compat.tell_quietly(study, trial, state=TrialState.FAIL)
            return "FAIL"
        if runtime.holdout_value is not None:
            storage.set_trial_user_attr(tid, ATTR.HOLDOUT, runtime.holdout_value)
        if runtime.fold_values:
            storage.set_trial_user_attr(tid, ATTR.FOLDS, runtime.fold_values)
        _keep_records(job, storage, tid, runtime)
        for label, violation in runtime.constraints.items():
            trial.set_constraint(label, violation)  # Optuna's: best_trial and the samplers use them
        if job.program.state and runtime._ns is not None:
            save_checkpoint(job.store, trial, runtime._ns, job.program.state)
        _compat.tell_quietly(study, trial, value)
        if job.program.state:
            prune_checkpoints(study, job.store, job.keep_checkpoints)
        return "COMPLETE"


class _InPlace:
    """Whether a worker process's first trial of a run changed the notebook data it was given in
    place (``history.append``, ``df["pred"] = ...``): in the kernel that reaches the notebook, and
    the search says so; in a worker process it changes that process's copy only, which its later
    trials see, and the notebook's stays as it was: said too, from the trial that did it (it was
    silent; found trying nbtune as a new user). Once per process and run: the data is hashed after the
    first trial, and compared with the kernel's fingerprints from when the run began."""

    _seen: ClassVar[set[tuple[str, int]]] = set()

    def __init__(self, job: Job) -> None:
        from nbtune.cell.annotations import parse_cell

        program = job.program  # (its parsed tree stays in the kernel: parsed again here)
        self.spec = program.spec if program.spec.tree is not None else parse_cell(program.source, program.line_offset)
        # (the kernel's fingerprints of the same data: a process-independent hash, as a study's identity
        # is across kernel restarts; hashing a large object twice per worker took 20-50 s: found
        # retesting as a user)
        self.before = job.data_before if job.data_before is not None else self._data(job)

    def _data(self, job: Job) -> dict[str, str]:
        from nbtune.cell.identity import cell_identity

        data: dict[str, str] = cell_identity(self.spec, job.program.globals, None, job.program.sealed())["data"]
        return data

    @classmethod
    def first(cls, job: Job) -> _InPlace | None:
        if os.getpid() == job.parent_pid:  # (in the kernel the search says it from the notebook's own data)
            return None
        key = (job.memory_key, job.run_start)
        if key in cls._seen:
            return None
        cls._seen.add(key)
        try:
            return cls(job)
        except Exception:  # a fingerprint that fails: nothing to compare
            return None

    def changed(self, job: Job) -> list[str]:
        from nbtune.cell.identity import same_data

        try:
            now = self._data(job)
        except Exception:
            return []
        return sorted(n for n, h in self.before.items() if n in now and not same_data(h, now[n]))


def cut_beside(job: Job, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """A trial whose worker process was ended with another's (loky ends a pool's processes when
    one dies), when it had already run past ``--trial-timeout`` itself: it is cut, as its own
    process would have cut it, not re-run in full as an interrupted one (found trying nbtune as a
    new user). In the coordinator, after the pool died."""
    _timed_out(job, study, trial, None, "", ended=True, owner=(trial.user_attrs.get(ATTR.OWNER) or {}).get("pid"))


def _timed_out(
    job: Job,
    study: optuna.Study,
    trial: optuna.Trial | optuna.trial.FrozenTrial,
    line: int | None,
    trace: str,
    ended: bool = False,
    owner: int | None = None,
) -> str:
    """The trial ran past ``--trial-timeout``: stopped at its last epoch (or fold) if it reported
    one, which then counts as an early stop does; failed if not (a bad configuration to the default
    sampler). Either way the search goes on. ``line``: where in the cell it was cut; ``ended``: its
    worker process is ending (:func:`_stuck`), or, with ``owner`` (that process), ended
    (:func:`cut_beside`)."""
    from optuna.trial import TrialState

    storage, tid = _compat.storage_of(study), _compat.trial_id(trial)
    assert job.trial_timeout is not None
    ran = (datetime.datetime.now() - trial.datetime_start).total_seconds() if trial.datetime_start else 0.0
    # one call into compiled code is cut only when it returns: the overrun said (17.4 s under a 5 s limit)
    over = ended or ran > job.trial_timeout + max(1.0, 0.2 * job.trial_timeout)
    where = f" at line {line} of the cell" if line else ""
    limit = (f"ran {ran:.1f} s, past " if over else "ran past ") + f"--trial-timeout {job.trial_timeout:g} s"
    if ended and owner is not None:
        limit += ", when its worker process was ended with the pool, for another trial that was cut"
    elif ended:
        limit += (
            f", in a call into compiled code{where} that had not returned: its worker process was ended, and replaced"
        )
    else:
        limit += (f", cut{where}" if line else "") + (" when a call into compiled code there returned" if over else "")
        if over and os.getpid() == job.parent_pid:  # in the kernel: worker processes would not have waited
            limit += (
                f" (worker processes, as --jobs 2 runs trials, end such a trial {stuck_grace(job.trial_timeout):g} s "
                "past the limit)"
            )
    storage.set_trial_user_attr(tid, ATTR.TIMED_OUT, job.trial_timeout)
    if ended:
        storage.set_trial_user_attr(tid, ATTR.ENDED_PROCESS, owner or os.getpid())
    last = storage.get_trial(tid).last_step
    if last is not None:
        unit = job.scheduler.unit
        reason = f"it {limit}; its {job.program.metric} at {unit} {last} stands" + (
            "; it leaves the population, and PBT goes on with the other members"
            if job.scheduler.scheduler.pauses
            else ""
        )
        storage.set_trial_user_attr(tid, ATTR.DECISION, {"epoch": last, "unit": unit, "reason": reason})
        _compat.tell_quietly(study, _told(trial), state=TrialState.PRUNED)
        if job.program.state:
            prune_checkpoints(study, job.store, job.keep_checkpoints)  # a stopped trial never resumes
        return "TIMED_OUT"  # (stopped: PRUNED in the study)
    storage.set_trial_user_attr(tid, ATTR.ERROR, f"TrialTimeout: {limit}")
    if trace:
        storage.set_trial_user_attr(tid, ATTR.TRACEBACK, trace[-8000:])
    storage.set_trial_user_attr(tid, ATTR.FAILURE, "TrialTimeout")
    _compat.tell_quietly(study, _told(trial), state=TrialState.FAIL)
    return "FAIL"


def _told(trial: optuna.Trial | optuna.trial.FrozenTrial) -> optuna.Trial | int:
    """What ``study.tell`` takes: the running trial, or the number of one read from the store."""
    import optuna

    return trial if isinstance(trial, optuna.Trial) else trial.number


def _stuck(job: Job, study: optuna.Study, trial: optuna.Trial, frame: FrameType | None, out: list[str]) -> None:
    """``--trial-timeout`` in a worker process: the trial is still in one call into compiled code
    :func:`stuck_grace` past the limit (an SVM's fit that does not converge), where no exception
    can reach it. It is recorded as :func:`_timed_out` records a cut trial, with what it printed
    so far, and the process ends; the coordinator replaces the worker pool (the trial running
    beside it runs again). Never the kernel's own process."""
    if os.getpid() == job.parent_pid or not job.ends_stuck_trials:
        return
    line, trace = job.program.stuck_at(frame)
    try:
        whole = "".join(out)
        if whole.strip():
            _compat.storage_of(study).set_trial_user_attr(_compat.trial_id(trial), ATTR.OUTPUT, whole[-OUTPUT_TAIL:])
        _timed_out(job, study, trial, line, trace, ended=True)
        if _first_failures_match(study, job):  # ten in a row: the search stops, as when they end in the cell
            job.control.stop("bug")
    except Exception:  # the store is unreachable: the trial's lease or the pool's death tells
        _logger.exception("could not record trial %d, cut by --trial-timeout", trial.number)
    _logger.warning(
        "trial %d: still in a call past --trial-timeout; ending worker process %d", trial.number, os.getpid()
    )
    os._exit(EXIT_STUCK)


def _record_interrupted(study: optuna.Study, trial: optuna.Trial) -> None:
    """The trial was stopped from outside: it does not count, and runs again on resume."""
    from optuna.trial import TrialState

    why = (
        "the kernel died; its worker stopped the trial"
        if _ParentWatch.parent_died
        else "stopped by the user (Stop now / Interrupt)"
    )
    _compat.storage_of(study).set_trial_user_attr(_compat.trial_id(trial), ATTR.INTERRUPTED, why)
    _compat.tell_quietly(study, trial, state=TrialState.FAIL)


def _epoch_state(job: Job, ns: dict[str, Any]) -> tuple[str, ...]:
    """What an epoch's checkpoint keeps: the state, and the plain values one epoch hands to the next
    (a step count, the best score so far), so the trial goes on from it as a straight run."""
    return job.program.state + plain_carried(ns, job.program.carried, job.program.carried_set)


def _resume_point(
    job: Job, storage: Any, tid: int, resume: dict[str, Any]
) -> tuple[dict[str, Any] | None, int, dict[int, float]]:
    """Where a continuation starts: the paused trial's variables kept in this process's memory,
    its checkpoint, or (neither) the first epoch again, trained silently up to where it paused."""
    if "memory" not in resume:
        return resume_point(job.store, resume)
    kept = paused_in_memory.take(job.memory_key, int(resume["memory"]))
    # else its checkpoint, or (a cell that declares no state) training those epochs again
    fallback = {k: v for k, v in resume.items() if k != "memory"}
    if "artifact" not in fallback:
        fallback["retrain"] = True
    if kept is not None and kept[0] == int(resume["step"]):
        _, step, values = resume_point(job.store, {**fallback, "retrain": True})  # (its curve: no file read)
        return dict(kept[1]) | {rng.KEY: kept[2]}, step, values
    # not in this process (a re-run of a cut continuation elsewhere): say so on the trial
    storage.set_trial_user_attr(tid, ATTR.RESUME, fallback)
    return resume_point(job.store, fallback)


def _trial_seed(job: Job, trial: optuna.Trial, seed: int | None) -> int | None:
    """The seed variable's value in this trial: a check's own (``seed``, queued with it), else the
    cell's (common random numbers), or with ``--vary-seed`` the cell's plus the trial number
    (recorded on the trial)."""
    seed_var = job.program.spec.seed
    if seed_var is None:
        return None
    if seed is None and job.vary_seed:
        seed = seed_var.default + trial.number
        trial.set_user_attr(ATTR.SEED, seed)  # a fixed seed is the cell's, recorded with the study
    return seed_var.default if seed is None else int(seed)


PROMOTION_POLL = 0.2  # seconds an idle worker waits before it looks for a trial to promote again


def _promote(job: Job, study: optuna.Study, owner: dict[str, Any], final: bool = False) -> optuna.Trial | None:
    """Pause-and-promote: start the continuation of a paused trial that now ranks in the top
    1/eta of its rung (from its checkpoint, with its curve so far), or None. ``final``: the
    search would end otherwise. Call under the store's lock."""
    pruner = study.pruner
    promotion = getattr(pruner, "promotion", None)
    if promotion is None or not job.scheduler.pause:
        return None
    # A cell without declared state has no checkpoint: its continuation trains again from the start.
    state = bool(job.program.state)
    found = promotion(study, (lambda t: has_checkpoint(job.store, t)) if state else (lambda t: True), final)
    if found is None:
        return None
    paused = found.trial
    source = found.source or paused  # PBT: a top member's state
    if state:
        saved = source.user_attrs[ATTR.CHECKPOINT]
        if source is not paused:  # PBT: another member's weights, not its random draws
            saved = {**saved, "copied": True}
        if found.params is not None:  # PBT's new values, not the saved ones (of a variable the loop changes)
            saved = {**saved, "explored": sorted(k for k, v in found.params.items() if source.params.get(k) != v)}
        if (
            source is paused
            and found.params in (None, paused.params)
            and paused_in_memory.claim(job.memory_key, paused.number)
        ):  # all its variables are still in this process: they go on, the checkpoint is the fallback
            saved = {**saved, "memory": paused.number}
    elif (
        source is paused
        and found.params in (None, paused.params)
        and paused_in_memory.claim(job.memory_key, paused.number)
    ):  # its variables are still in this process: it goes on from them
        saved = {"step": found.epoch, "memory": paused.number}
    else:  # it trains again from the first epoch, silently up to where it paused
        saved = {"step": found.epoch, "retrain": True}
    values = {str(s): v for s, v in source.intermediate_values.items() if s <= saved["step"]}
    previous = paused.user_attrs.get(ATTR.PROMOTED, {})
    attrs: dict[str, Any] = {k: paused.user_attrs[k] for k in ATTR.KEEP_ON_RERUN if k in paused.user_attrs}
    if found.params is not None and found.params != paused.params:
        attrs.pop(ATTR.BASELINE, None)  # PBT: it took another member's hyperparameters
    attrs.update(
        {
            ATTR.OWNER: owner,
            ATTR.RESUME: {**saved, "values": values},
            ATTR.PROMOTED: {
                "from": paused.number,
                "root": previous.get("root", paused.user_attrs.get(ATTR.RERUN_OF, paused.number)),
                "epoch": found.epoch,
                "rank": found.rank,
                "n_compared": found.n_compared,
                "n_keep": found.n_keep,
                "value": found.value,
                "at_end": final,  # the best of a rung no other trial went on from, when no more arrive
            },
        }
    )
    if found.note is not None:
        attrs[ATTR.PBT] = found.note
    return _compat.new_trial_with_attrs(study, attrs, fixed_params=found.params or paused.params)


def _take_queued_continuation(
    study: optuna.Study, trials: list[optuna.trial.FrozenTrial], owner: dict[str, Any]
) -> optuna.Trial | None:
    """A cut continuation queued to run again (:func:`queued_continuations`), started, or None.
    Call under the store's lock."""
    import optuna
    from optuna.trial import TrialState

    storage = _compat.storage_of(study)
    for t in queued_continuations(trials):
        tid = _compat.trial_id(t)
        try:
            if storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                storage.set_trial_user_attr(tid, ATTR.OWNER, owner)
                return optuna.Trial(study, tid)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def _others_running(job: Job, trials: list[optuna.trial.FrozenTrial]) -> bool:
    """Trials that live workers still run (and that may make a paused trial promotable)."""
    return any(
        t.state.name == "RUNNING" and (owner := t.user_attrs.get(ATTR.OWNER)) and not job.liveness.is_dead(owner, t)
        for t in trials
    )


class _Budget:
    """Trials that use the budget (finished ones that count, and running ones), counted
    incrementally: a finished trial never changes again, so each is looked at once."""

    def __init__(self) -> None:
        self._settled = 0  # trials[:settled] are all finished
        self._counted = 0  # how many of those count toward --trials

    def used(self, trials: list[optuna.trial.FrozenTrial]) -> int:
        i = self._settled
        while i < len(trials) and trials[i].state.is_finished():
            i += 1
        self._counted += finished_count(trials[self._settled : i])
        self._settled = i
        rest = trials[i:]
        running = sum(1 for t in rest if t.state.name == "RUNNING" and not is_continuation(t))
        return self._counted + finished_count(rest) + running


def _keep_records(job: Job, storage: Any, tid: int, runtime: TrialRuntime, stopped: bool = False) -> None:
    """What ``--record`` keeps of a trial: its variables' values at the end of the cell, or, for a
    trial stopped at an epoch, when it stopped (they were left out: found trying nbtune as a new
    user); and their numbers after each epoch (``res.curves()``)."""
    records = runtime.records
    if stopped and runtime._ns is not None:
        ns = runtime._ns
        records = {name: recorded_value(name, ns) for name in job.program.records if name in ns}
    if records:
        storage.set_trial_user_attr(tid, ATTR.RECORD, records)
    if runtime.record_curves:
        curves = {name: [[step, v] for step, v in sorted(c.items())] for name, c in runtime.record_curves.items()}
        storage.set_trial_user_attr(tid, ATTR.RECORD_CURVES, curves)


def _why_not_finite(e: MetricError, warned: list[str], program: CellProgram) -> str | None:
    """What says why the trial's metric is not finite: the warning it printed, scikit-learn's
    ``UndefinedMetricWarning`` (a validation fold with one class: 'Only one class is present in
    y_true. ROC AUC score is not defined in that case.'), else numpy's last ``RuntimeWarning``
    (``invalid value encountered in divide``); else the cell's ``zero_division=np.nan``, which gives NaN
    without a warning. None for another failure, or nothing to say. The failure had read as a
    divergence, with advice about step sizes (found trying nbtune as a new user)."""
    if e.kind != "not finite":
        return None
    for category in ("UndefinedMetricWarning", "RuntimeWarning"):
        said = [w for w in warned if w.startswith(category + ":")]
        if said:
            return said[-1] if len(said[-1]) <= 200 else said[-1][:197] + "..."
    # (a worker process's program comes without its syntax tree: parsed again, on a failure only)
    from nbtune.cell.annotations import parse_cell

    tree = program.spec.tree or parse_cell(program.source, program.line_offset).tree
    line = zero_division_nan(tree) if tree is not None else None
    return f"zero_division=nan at line {line}: a split with no predicted or no true positives" if line else None


class WorkerStopped(TrialInterrupted):
    """A worker process was told to stop (SIGTERM from the coordinator's forced stop)."""


class WorkerInterrupted(TrialInterrupted):
    """The kernel's Interrupt reached a worker process (SIGINT goes to the whole process group)."""


class _Signalled:
    """The exception a signal raised in this worker process during its current search, if any.

    A signal raises its exception wherever the worker is, possibly inside Optuna's journal lock,
    whose clean-up is not safe against it: ``release()`` then raises ``FileNotFoundError`` (or
    ``acquire()`` a ``RuntimeError``) in its place, the lock itself released. An ``OSError`` or
    ``RuntimeError`` raised after a signal is that signal's exception."""

    raised: TrialInterrupted | None = None


def _raise_stopped(signum: int, frame: Any) -> None:
    _raise_once(WorkerStopped())


def _raise_interrupted(signum: int, frame: Any) -> None:
    _raise_once(WorkerInterrupted())


def _raise_once(e: TrialInterrupted) -> None:
    """The first signal of a search stops the worker; a later one finds it stopping already and
    raises nothing. It landed in the recording of the first one's trial as interrupted (Interrupt,
    then the forced stop's SIGTERM on a loaded machine) and left that trial RUNNING for good."""
    if _Signalled.raised is not None:
        return
    _Signalled.raised = e
    raise e


def _signal_behind(e: BaseException) -> BaseException | None:
    """The signal's exception that ``e`` stands for (Optuna's lock replaced it), or None."""
    if isinstance(e, (OSError, RuntimeError)) and _Signalled.raised is not None:
        return _Signalled.raised
    return None


PARENT_POLL = 0.25  # seconds between checks that the kernel still lives
ORPHAN_GRACE = 5.0  # seconds an orphaned worker gets to record its trial before it exits


class _ParentWatch:
    """A worker process that outlives its kernel stops itself.

    Killed kernels leave loky workers behind, running trials for nobody (and, on a GPU,
    holding its memory). When the parent dies the process is re-parented, so a thread polls
    ``os.getppid()``; on a change it sends this process SIGTERM (the running trial ends at
    its next Python line and is recorded as interrupted, to run again on resume) and, should
    the process still live ``ORPHAN_GRACE`` seconds later, ends it.
    """

    _started: ClassVar[set[int]] = set()  # one watch per process (workers run many jobs)
    _lock = threading.Lock()
    parent_died = False  # set before the SIGTERM: the trial it cuts was not stopped by the user

    @classmethod
    def start(cls, parent: int) -> None:
        with cls._lock:
            if os.getpid() in cls._started or os.getppid() != parent:
                return  # already watching, or not the kernel's child (a Dask or Ray worker)
            cls._started.add(os.getpid())
        threading.Thread(target=cls._watch, args=(parent,), name="nbtune-parent-watch", daemon=True).start()

    @staticmethod
    def _watch(parent: int) -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL)
        _logger.warning("worker %d: the kernel (pid %d) died; stopping", os.getpid(), parent)
        _ParentWatch.parent_died = True
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(ORPHAN_GRACE)
        os._exit(1)


def run_worker(job: Job, worker: int = 0) -> int:
    """The loop of one worker: run trials until the study has the target number finished.

    Returns:
        How many trials this worker ran.

    Raises:
        StoreError: the database failed under it, said in the driver's words here, in the process
            where the error's chain is (a worker process's error reaches the kernel without it:
            'StorageInternalError' with no words; found trying nbtune as a new user).
    """
    from nbtune.store.database import store_error

    try:
        return _run_worker(job, worker)
    except Exception as e:
        said = store_error(e, job.store)
        if said is None:
            raise
        raise said from None


def _set_module_settings(settings: dict[str, dict[str, Any]]) -> None:
    """Give this worker process the settings the notebook set on the user's modules (``reg.SCALE =
    3.0``), which its import of their files does not have: its trials ran with the file's value,
    where the kernel's ran with the notebook's (found retesting). A module that does not import here
    is left to the trials, whose error says why."""
    import importlib

    for name, values in settings.items():
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        for key, value in values.items():
            setattr(module, key, value)


# module -> this process's fingerprint of it in the searches it ran, found to be the kernel's
_MODULES_RUN: dict[str, str] = {}


def _check_module_code(job: Job) -> None:
    """Stop before the first trial when this worker process runs other code of a user's module than
    the kernel, whose code the study's identity records. A process imports a module once: a Dask or
    Ray worker that ran a search before an edit of ``src/mlproj/models.py`` went on running the old
    code in a new version of the study said to be the new code's (loky's local workers are replaced
    instead: ``LokyBackend._replace_stale_workers``); and a worker that imports the file now runs
    the edited file where the kernel, which imported it before the edit and did not reload it, runs
    and records the old code.

    Raises:
        CellError: names the module and what to do, in one line; no trial ran.
    """
    from nbtune.cell.identity import module_code_here
    from nbtune.exceptions import CellError

    for name, kernels in sorted(job.module_code.items()):
        try:
            here = module_code_here(name)
        except Exception:  # (nothing to compare)
            continue
        if here is None or kernels == "?" or here == kernels:
            if here is not None:
                _MODULES_RUN[name] = here
            continue
        import socket

        where = f"a worker process (pid {os.getpid()} on {socket.gethostname()})"
        if _MODULES_RUN.get(name) == here:
            raise CellError(
                f"{where} runs the code of {name} it imported before the module was edited (a process imports a "
                "module once), not the kernel's: restart the cluster's workers so that they import it again (Dask: "
                "client.restart(); a local Ray that nbtune started: ray.shutdown() in the notebook) and run the cell "
                "again; no trial ran"
            )
        file = getattr(sys.modules[name], "__file__", "")
        raise CellError(
            f"{where} imports other code of {name} than the kernel runs: its file ({file}) was edited since the "
            "kernel imported it (reload it in the notebook: '%load_ext autoreload' then '%autoreload 2', which also "
            "updates the names imported from it, or restart the kernel), or the workers import another copy of it "
            "(make it the same); no trial ran"
        )


def _run_worker(job: Job, worker: int) -> int:
    import optuna
    from optuna.trial import TrialState

    in_process = os.getpid() != job.parent_pid
    main = threading.current_thread() is threading.main_thread()
    if in_process:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if main:
            _Signalled.raised = None  # a warm worker: a signal of an earlier search is over
            # Interrupt (SIGINT to the kernel's process group) and our Stop now (SIGTERM)
            # end the running trial cleanly, recorded as interrupted.
            signal.signal(signal.SIGINT, _raise_interrupted)
            signal.signal(signal.SIGTERM, _raise_stopped)
            _ParentWatch.start(job.parent_pid)
        if job.control.register_worker(worker):  # its task was restarted on this process (Dask's retry)
            # the same seed would draw the configurations its predecessor drew (found trying nbtune)
            job = dataclasses.replace(job, seed_offset=job.seed_offset + max(1, job.n_trials()))
        # Warm workers outlive a search; the notebook may have changed folder (%cd) since they started.
        # Only the kernel's own worker processes follow it: a Dask or Ray worker keeps its folder.
        if os.getppid() == job.parent_pid and os.getcwd() != job.cwd and os.path.isdir(job.cwd):
            os.chdir(job.cwd)
        # loky makes its own start method the default in its workers, and a plain
        # multiprocessing.Process (a PyTorch DataLoader's workers) then fails there ("'Process'
        # object has no attribute 'env'"): processes the cell starts start as in the kernel.
        if multiprocessing.get_start_method(allow_none=True) != job.mp_start_method:
            multiprocessing.set_start_method(job.mp_start_method, force=True)
        _set_module_settings(job.module_settings)
        _check_module_code(job)
    study = job.open_study(worker)
    _compat.begin_ask_tell_loop(study)
    paused_in_memory.enter(job.memory_key)
    owner = job.liveness.owner(worker)
    budget = _Budget()
    done = 0
    trial: optuna.Trial | None = None
    # The data is hashed before the first ask and after its trial is told: a trial's recorded
    # duration is its own (a 3.7 s baseline under --trial-timeout 3s was the cell's 3 s and the
    # hashing of a large frame, twice: found trying nbtune as a new user)
    in_place = _InPlace.first(job)
    # A worker on another machine (Dask, Ray) has no parent watch: it follows the kernel's beats.
    grace = getattr(job.liveness, "grace", None) if job.liveness.period else None
    capture = native_output.enter()  # what compiled libraries write below sys.stdout goes to the trial too
    try:
        while not job.control.stop_requested():
            if job.deadline is not None and time.time() >= job.deadline:
                job.control.stop("timeout")
                break
            if grace is not None and not job.control.kernel_alive(grace):
                _logger.warning(
                    "worker %d: the kernel stopped beating for %.0f s; starting no more trials", worker, grace
                )
                break
            with job.store.lock(job.study_name):
                trial = _promote(job, study, owner)
                target = job.control.target()
                # a database counts the started trials (an upper bound of those that use the budget):
                # far from the target, no need to read every trial
                started = job.store.started_count(study) if trial is None else None
                if trial is None and started is not None and started < target:
                    trial = _compat.new_trial_with_attrs(study, {ATTR.OWNER: owner}, synced=True)
                elif trial is None:
                    trials = study.get_trials(deepcopy=False)
                    if budget.used(trials) >= target:
                        trial = _take_queued_continuation(study, trials, owner)
                        if trial is None and not (job.scheduler.pause and _others_running(job, trials)):
                            trial = _promote(job, study, owner, final=True)
                            if trial is None:
                                if job.scheduler.pause:
                                    if job.program.state:
                                        prune_checkpoints(study, job.store, job.keep_checkpoints, final=True)
                                    if trials:  # the paused trials left are stopped for good: say so
                                        study.set_user_attr(ATTR.PAUSES_ENDED, max(t.number for t in trials))
                                break
                    else:
                        trial = _compat.new_trial_with_attrs(study, {ATTR.OWNER: owner}, synced=True)
            if trial is None:  # pause-and-promote: running trials may still make a paused one promotable
                time.sleep(PROMOTION_POLL)
                continue
            state = run_one(job, study, trial)
            if in_place is not None and (changed := in_place.changed(job)):
                study.set_user_attr(f"{ATTR.CHANGED_IN_WORKER}:{trial.number}", changed)
            in_place = trial = None
            done += 1
            if _compat.grid_exhausted(study):
                job.control.stop("grid exhausted")
                break
            if state in ("FAIL", "TIMED_OUT") and _first_failures_match(study, job):
                job.control.stop("bug")
                break
    except (TrialInterrupted, KeyboardInterrupt, OSError, RuntimeError) as caught:
        # The coordinator asked (Stop now), the user interrupted (SIGINT reaches the kernel's
        # whole process group) or the pool is shutting down: stop here, wherever we were.
        e = caught if isinstance(caught, (TrialInterrupted, KeyboardInterrupt)) else _signal_behind(caught)
        if e is None:
            raise
        storage = _compat.storage_of(study)
        # This worker's trial, whether or not the interrupt came before `trial` was bound (it may
        # arrive inside the ask itself, after the trial was created): the running one it owns.
        mine = {_compat.trial_id(t) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if t.user_attrs.get(ATTR.OWNER) == owner}  # fmt: skip
        if trial is not None and storage.get_trial(_compat.trial_id(trial)).state == TrialState.RUNNING:
            mine.add(_compat.trial_id(trial))
        for tid in mine:
            storage.set_trial_user_attr(tid, ATTR.INTERRUPTED, "stopped before it ran")
            storage.set_trial_state_values(tid, TrialState.FAIL)
        if not isinstance(e, WorkerStopped) and not job.control.stop_requested():
            job.control.stop("interrupted")
        _logger.info("worker %d (pid %d) stopped by %s", worker, os.getpid(), type(e).__name__)
    finally:
        native_output.leave(capture)
        _compat.end_ask_tell_loop(study)
        paused_in_memory.leave(job.memory_key)
        if in_process and main:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # an idle worker survives Interrupt
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return done
