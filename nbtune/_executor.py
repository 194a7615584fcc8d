"""Run trials: in the kernel, on threads, on local processes (loky) or on a cluster.

Each worker (a thread, a joblib task on a loky process, or a Dask/Ray task) runs
:func:`run_worker`: it loads the study from the notebook-local store and runs trials
until the study holds ``n_trials`` finished trials. The budget is coordinated through
the store under a file lock, so the study ends with exactly ``n_trials`` finished
trials however many workers there are, and Optuna's pruners see every worker's rungs.

:class:`Search` is the coordinator in the kernel: it starts the workers on a
background thread, so the kernel's main thread stays free to draw progress and to
handle Stop, Stop now and Interrupt.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtune._objective import CellProgram, MetricError, TrialInterrupted, TrialRuntime, TrialStopped
from nbtune._sampler import make_sampler
from nbtune._scheduler import SchedulerSpec, make_pruner
from nbtune._store import ATTR, Store, active_trial, finished_count, process_start
from nbtune.exceptions import CellError, ConfigError

if TYPE_CHECKING:
    import optuna

__all__ = ["BACKENDS", "Control", "Job", "Search", "run_worker", "check_picklable"]

_logger = logging.getLogger(__name__)

BACKENDS = ("auto", "threading", "loky", "dask", "ray")
N_FAILURES_TO_STOP = 3  # the first trials of a run all failing the same way = a bug in the cell
STOP_NOW_GRACE = 1.5  # seconds a trial gets to notice Stop now before it is forced


class Control:
    """Stop flags shared by the coordinator and its workers.

    Threads see ``threading.Event``s; processes (which get a pickled copy) see marker
    files in a private folder, cheap enough to check after every epoch.
    """

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory or tempfile.mkdtemp(prefix="nbtune-run-")
        self._stop = threading.Event()
        self._stop_now = threading.Event()

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.directory = state["directory"]
        self._stop = threading.Event()
        self._stop_now = threading.Event()

    def _mark(self, name: str, text: str = "") -> None:
        with contextlib.suppress(OSError):
            Path(self.directory, name).write_text(text)

    def _has(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.directory, name))

    def stop(self, why: str = "stop") -> None:
        """Start no new trials; running ones finish."""
        self._stop.set()
        self._mark("stop", why)

    def stop_now(self) -> None:
        """Interrupt running trials too."""
        self._stop.set()
        self._stop_now.set()
        self._mark("stop")
        self._mark("stop_now")

    def stop_requested(self) -> bool:
        return self._stop.is_set() or self._has("stop")

    def stop_now_requested(self) -> bool:
        return self._stop_now.is_set() or self._has("stop_now")

    def set_target(self, n_trials: int) -> None:
        """Change the number of trials while the search runs (+N trials)."""
        self._mark("target", str(int(n_trials)))

    def target(self, default: int) -> int:
        with contextlib.suppress(OSError, ValueError):
            return int(Path(self.directory, "target").read_text())
        return default

    def register_worker(self, worker: int) -> None:
        """A worker process says who it is (Stop now and the death watch need its pid)."""
        self._mark(f"worker-{os.getpid()}", str(worker))

    def worker_pids(self) -> list[int]:
        pids = []
        for p in Path(self.directory).glob("worker-*"):
            with contextlib.suppress(ValueError):
                pids.append(int(p.name.split("-", 1)[1]))
        return pids

    def forget_workers(self) -> None:
        for pid in self.worker_pids():
            Path(self.directory, f"worker-{pid}").unlink(missing_ok=True)

    def why(self) -> str:
        with contextlib.suppress(OSError):
            return Path(self.directory, "stop").read_text()
        return ""

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Job:
    """Everything a worker needs; pickles to other processes."""

    program: CellProgram
    store: Store
    study_name: str
    n_trials: int
    sampler: str = "tpe"
    seed: int | None = None
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    control: Control = field(default_factory=Control)
    deadline: float | None = None
    run_start: int = 0  # number of the first trial of this run
    seed_offset: int = 0  # trials in the study when this run began
    parent_pid: int = field(default_factory=os.getpid)


def _seed_for(job: Job, worker: int) -> int | None:
    if job.seed is None:
        return None
    # A resumed run must not replay the configurations of the first run.
    return (job.seed + 7919 * job.seed_offset + 104729 * worker) % (2**32)


def _open_study(job: Job, worker: int) -> optuna.Study:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = make_sampler(job.sampler, job.program.params, _seed_for(job, worker))
    return optuna.load_study(
        study_name=job.study_name,
        storage=job.store.storage(job.study_name),
        sampler=sampler,
        pruner=make_pruner(job.scheduler),
    )


class _WorkerState:
    """What a worker is doing right now (for Stop now on threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_trial: dict[int, int] = {}  # thread ident -> trial number


_STATE = _WorkerState()


def _first_failures_match(study: optuna.Study, job: Job) -> bool:
    from optuna.trial import TrialState

    mine = sorted(
        (t for t in study.get_trials(deepcopy=False) if t.number >= job.run_start and t.state.is_finished()
         and ATTR.INTERRUPTED not in t.user_attrs),
        key=lambda t: t.number,
    )[:N_FAILURES_TO_STOP]
    if len(mine) < N_FAILURES_TO_STOP:
        return False
    errors = {t.user_attrs.get(ATTR.ERROR) for t in mine}
    return all(t.state == TrialState.FAIL for t in mine) and len(errors) == 1


OUTPUT_TAIL = 2000  # characters of a trial's printed output kept in the store


class _ThreadOutput:
    """sys.stdout/sys.stderr stand-in: a trial's prints go to that trial's buffer.

    Sixty trials printing every epoch would bury the notebook (and on worker processes the
    prints would be lost); each trial's output is kept with the trial instead. Writes from
    any other thread pass through unchanged.
    """

    def __init__(self, original: Any, local: threading.local) -> None:
        self._original = original
        self._local = local

    def write(self, text: str) -> int:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            return int(self._original.write(text) or 0)
        buf.append(text)
        return len(text)

    def flush(self) -> None:
        if getattr(self._local, "buf", None) is None:
            self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


_OUTPUT_LOCAL = threading.local()
_OUTPUT_LOCK = threading.Lock()
_OUTPUT_USERS = 0


@contextlib.contextmanager
def _captured_output() -> Any:
    import sys

    global _OUTPUT_USERS
    with _OUTPUT_LOCK:
        if _OUTPUT_USERS == 0:
            sys.stdout = _ThreadOutput(sys.stdout, _OUTPUT_LOCAL)
            sys.stderr = _ThreadOutput(sys.stderr, _OUTPUT_LOCAL)
        _OUTPUT_USERS += 1
    buf: list[str] = []
    _OUTPUT_LOCAL.buf = buf
    try:
        yield buf
    finally:
        _OUTPUT_LOCAL.buf = None
        with _OUTPUT_LOCK:
            _OUTPUT_USERS -= 1
            if _OUTPUT_USERS == 0:
                for name in ("stdout", "stderr"):
                    stream = getattr(sys, name)
                    if isinstance(stream, _ThreadOutput):
                        setattr(sys, name, stream._original)


def run_one(job: Job, study: optuna.Study, trial: optuna.Trial, worker: int) -> str:
    """Run one trial to its end and tell the study; returns the final state's name."""
    from optuna.trial import TrialState

    storage, tid = study._storage, trial._trial_id
    runtime = TrialRuntime(job.program, trial, should_stop_now=job.control.stop_now_requested,
                           max_step=job.scheduler.R)
    ident = threading.get_ident()
    with active_trial(tid):
        with _STATE.lock:
            _STATE.in_trial[ident] = trial.number
        try:
            try:
                with _captured_output() as out:
                    value = job.program.run(runtime)
            finally:
                with _STATE.lock:
                    _STATE.in_trial.pop(ident, None)
                text = "".join(out)[-OUTPUT_TAIL:]
                if text.strip():
                    storage.set_trial_user_attr(tid, ATTR.OUTPUT, text)
        except TrialStopped:
            _tell(study, trial, state=TrialState.PRUNED)
            return "PRUNED"
        except (TrialInterrupted, KeyboardInterrupt):
            storage.set_trial_user_attr(tid, ATTR.INTERRUPTED, "stopped by the user (Stop now / Interrupt)")
            _tell(study, trial, state=TrialState.FAIL)
            raise
        except MetricError as e:
            storage.set_trial_user_attr(tid, ATTR.ERROR, f"MetricError: {e}")
            _tell(study, trial, state=TrialState.FAIL)
            return "FAIL"
        except (Exception, SystemExit) as e:  # sys.exit() in a cell fails the trial, not the kernel
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            storage.set_trial_user_attr(tid, ATTR.ERROR, f"{type(e).__name__}: {msg}"[:500])
            storage.set_trial_user_attr(tid, ATTR.TRACEBACK, job.program.user_traceback(e)[-8000:])
            _tell(study, trial, state=TrialState.FAIL)
            return "FAIL"
        _tell(study, trial, value)
        return "COMPLETE"


def _tell(study: optuna.Study, trial: optuna.Trial, value: float | None = None, state: Any = None) -> None:
    """``study.tell`` without the deep copy of the trial it returns (a third of our
    per-trial overhead on fast cells); Optuna's optimize() calls the same function."""
    try:
        from optuna.study._tell import _tell_with_warning
    except ImportError:  # pragma: no cover - a future Optuna
        study.tell(trial, value, state=state)
        return
    _tell_with_warning(study=study, trial=trial, value_or_values=value, state=state, suppress_warning=True)


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
        self._counted += finished_count(trials[self._settled:i])
        self._settled = i
        rest = trials[i:]
        running = sum(1 for t in rest if t.state.name == "RUNNING")
        return self._counted + finished_count(rest) + running


def _ask(study: optuna.Study, owner: dict[str, Any]) -> optuna.Trial:
    """``study.ask()``, with the trial's owner written in the same journal record.

    Every journal write is an fsync; writing the owner separately would cost a third
    more I/O per trial than plain Optuna.
    """
    import datetime

    import optuna
    from optuna.trial import FrozenTrial, TrialState

    study._thread_local.cached_all_trials = None
    trial_id = study._pop_waiting_trial_id()  # enqueued trials (the baseline) come first
    if trial_id is None:
        template = FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, datetime_start=datetime.datetime.now(),
            datetime_complete=None, params={}, distributions={}, user_attrs={ATTR.OWNER: owner},
            system_attrs={}, intermediate_values={}, trial_id=-1)
        trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
    else:
        study._storage.set_trial_user_attr(trial_id, ATTR.OWNER, owner)
    return optuna.Trial(study, trial_id)


class _Term(TrialInterrupted):
    pass


def _raise_term(signum: int, frame: Any) -> None:
    raise _Term()


def _raise_int(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt()


def run_worker(job: Job, worker: int = 0) -> int:
    """The loop of one worker: run trials until the study has ``n_trials`` finished ones.

    Returns:
        How many trials this worker finished.
    """
    import optuna
    from optuna.trial import TrialState

    in_process = os.getpid() != job.parent_pid
    main = threading.current_thread() is threading.main_thread()
    if in_process:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if main:
            # Interrupt (SIGINT to the kernel's process group) and our Stop now (SIGTERM)
            # end the running trial cleanly, recorded as interrupted.
            signal.signal(signal.SIGINT, _raise_int)
            signal.signal(signal.SIGTERM, _raise_term)
        job.control.register_worker(worker)
    study = _open_study(job, worker)
    # GridSampler calls study.stop() when the grid is exhausted, which Optuna only allows
    # inside optimize(); we run the ask-and-tell loop ourselves and honour the same flag.
    study._thread_local.in_optimize_loop = True
    host, pid = socket.gethostname(), os.getpid()
    owner = {"host": host, "pid": pid, "worker": worker, "start": process_start(pid)}
    budget = _Budget()
    done = 0
    trial: optuna.Trial | None = None
    try:
        while not job.control.stop_requested():
            if job.deadline is not None and time.time() >= job.deadline:
                job.control.stop("timeout")
                break
            with job.store.lock(job.study_name):
                if budget.used(study.get_trials(deepcopy=False)) >= job.control.target(job.n_trials):
                    break
                trial = _ask(study, owner)
            state = run_one(job, study, trial, worker)
            trial = None
            done += 1
            if study._stop_flag:  # the grid is exhausted
                job.control.stop("grid exhausted")
                break
            if state == "FAIL" and _first_failures_match(study, job):
                job.control.stop("bug")
                break
    except (TrialInterrupted, KeyboardInterrupt) as e:
        # The coordinator asked (Stop now), the user interrupted (SIGINT reaches the kernel's
        # whole process group) or the pool is shutting down: stop here, wherever we were.
        if trial is not None and study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
            study._storage.set_trial_user_attr(trial._trial_id, ATTR.INTERRUPTED, "stopped before it ran")
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if not isinstance(e, _Term) and not job.control.stop_requested():
            job.control.stop("interrupted")
    finally:
        study._thread_local.in_optimize_loop = False
        if in_process and main:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # an idle worker survives Interrupt
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return done


def check_picklable(program: CellProgram) -> None:
    """Fail early, naming the variable, when a global the cell reads cannot go to a process.

    Raises:
        CellError: names the variable and suggests ``--backend threading``.
    """
    import cloudpickle  # joblib's loky ships it; it is what sends the cell to workers

    for name, value in program.globals.items():
        if type(value).__module__ == "numpy" or type(value).__name__ in ("DataFrame", "Series"):
            continue  # always picklable; joblib memory-maps large arrays
        try:
            cloudpickle.dumps(value)
        except Exception as e:
            raise CellError(
                f"the notebook variable {name!r} ({type(value).__name__}) cannot be sent to worker "
                f"processes ({type(e).__name__}: {str(e)[:120]}); use --backend threading, or create "
                "it inside the %%tune cell"
            ) from None


def _backend_available(backend: str) -> None:
    import importlib.util

    if backend == "dask":
        if importlib.util.find_spec("distributed") is None:
            raise ConfigError("--backend dask needs dask.distributed; install it with: pip install 'nbtune[dask]'")
    if backend == "ray":
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--backend ray needs ray; install it with: pip install 'nbtune[ray]'")


def resolve_backend(backend: str, n_jobs: int) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    _backend_available(backend)
    if backend == "auto":
        return "inline" if n_jobs == 1 else "loky"
    return backend


def effective_jobs(n_jobs: int) -> int:
    if n_jobs == 0 or n_jobs < -1:
        raise ConfigError(f"--jobs must be a positive number or -1 (all cores); got {n_jobs}")
    return os.cpu_count() or 1 if n_jobs == -1 else n_jobs


class _DeathWatch:
    """Which worker process died *first*.

    When one loky worker dies, loky SIGKILLs the others too; only the first death is the
    trial's own fault (e.g. out of memory), the rest are collateral and get re-run. On
    Linux a pidfd becomes readable the moment its process exits, so a thread waiting on
    them sees the culprit before loky reacts.
    """

    def __init__(self, control: Control) -> None:
        self.control = control
        self.first_dead: set[int] = set()
        self._fds: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nbtune-deathwatch", daemon=True)
        self.supported = hasattr(os, "pidfd_open")

    def start(self) -> None:
        if self.supported:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1)
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    def reset(self) -> None:
        self.first_dead = set()

    def _run(self) -> None:
        import select

        while not self._stop.is_set():
            for pid in self.control.worker_pids():
                if pid not in self._fds:
                    with contextlib.suppress(OSError):
                        self._fds[pid] = os.pidfd_open(pid)
            fds = {fd: pid for pid, fd in self._fds.items()}
            if not fds:
                self._stop.wait(0.02)
                continue
            ready, _, _ = select.select(list(fds), [], [], 0.02)
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
        backend: ``inline`` (one worker thread in the kernel), ``threading``, ``loky``,
            ``dask`` or ``ray``.
    """

    def __init__(self, job: Job, n_jobs: int = 1, backend: str = "inline") -> None:
        self.job = job
        self.n_jobs = n_jobs
        self.backend = backend
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.worker_deaths: list[str] = []
        self._thread = threading.Thread(target=self._run, name="nbtune-search", daemon=True)
        self._kill_timer: threading.Timer | None = None

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    # control -------------------------------------------------------------------------
    def stop(self) -> None:
        self.job.control.stop("stop")

    def stop_now(self) -> None:
        self.job.control.stop_now()
        if self._kill_timer is None:
            self._kill_timer = threading.Timer(STOP_NOW_GRACE, self._force_stop)
            self._kill_timer.daemon = True
            self._kill_timer.start()

    def _force_stop(self) -> None:
        if self.done.is_set():
            return
        if self.backend in ("inline", "threading"):
            with _STATE.lock:
                idents = list(_STATE.in_trial)
            for ident in idents:
                # The trial's Python code gets TrialInterrupted at its next bytecode.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(TrialInterrupted))
        elif self.backend == "loky":
            for pid in self.job.control.worker_pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
            t = threading.Timer(3.0, self._kill_workers)
            t.daemon = True
            t.start()

    def _kill_workers(self) -> None:
        if self.done.is_set():
            return
        for pid in self.job.control.worker_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    # the coordinator thread -------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self.backend == "inline":
                with contextlib.suppress(TrialInterrupted, KeyboardInterrupt):
                    run_worker(self.job, 0)
            else:
                self._run_parallel()
        except BaseException as e:  # reported by the driver in the main thread
            self.error = e
        finally:
            if self._kill_timer is not None:
                self._kill_timer.cancel()
            self.done.set()

    def _run_parallel(self) -> None:
        watch = _DeathWatch(self.job.control) if self.backend == "loky" else None
        if watch is not None:
            watch.start()
        try:
            self._run_parallel_watched(watch)
        finally:
            if watch is not None:
                watch.stop()

    def _run_parallel_watched(self, watch: _DeathWatch | None) -> None:
        import joblib

        restarts = 0
        while True:
            try:
                if self.backend == "dask":
                    from distributed import get_client

                    try:
                        client = get_client()
                    except ValueError:
                        raise ConfigError(
                            "--backend dask needs a running dask.distributed Client; start one first, e.g. "
                            "'from distributed import Client, LocalCluster; client = Client(LocalCluster())'"
                        ) from None
                    with joblib.parallel_config(backend="dask", client=client):
                        joblib.Parallel(n_jobs=self.n_jobs)(
                            joblib.delayed(run_worker)(self.job, i) for i in range(self.n_jobs)
                        )
                elif self.backend == "ray":
                    from ray.util.joblib import register_ray

                    register_ray()
                    with joblib.parallel_config(backend="ray"):
                        joblib.Parallel(n_jobs=self.n_jobs)(
                            joblib.delayed(run_worker)(self.job, i) for i in range(self.n_jobs)
                        )
                else:
                    joblib.Parallel(n_jobs=self.n_jobs, backend=self.backend)(
                        joblib.delayed(run_worker)(self.job, i) for i in range(self.n_jobs)
                    )
                return
            except Exception as e:
                if type(e).__name__ != "TerminatedWorkerError" or self.job.control.stop_now_requested():
                    if type(e).__name__ == "TerminatedWorkerError":
                        self._reap()
                        return
                    raise
                # A worker died mid-trial (killed, out of memory): its trial fails with the
                # reason, the other workers' trials are recorded as interrupted (they will be
                # re-run), and the search goes on with a fresh pool.
                time.sleep(0.1)  # let the watch see every death
                culprits = watch.first_dead if watch is not None and watch.supported else None
                died = self._reap(culprit_error=f"WorkerDied: {_death_reason(e)}", culprits=culprits)
                if watch is not None:
                    watch.reset()
                self.worker_deaths.append(f"{_death_reason(e)} (trials {died})")
                restarts += 1
                if restarts > 5:
                    raise CellError(
                        "worker processes keep dying (5 restarts); the cell may run out of memory: "
                        "lower --jobs or the model size"
                    ) from None
                self.job.control.forget_workers()

    def _reap(self, culprit_error: str | None = None, culprits: set[int] | None = None) -> list[int]:
        """Mark the trials of dead workers failed and queue the interrupted ones again."""
        import optuna

        store = self.job.store
        study = optuna.load_study(study_name=self.job.study_name, storage=store.storage(self.job.study_name))
        died = store.reap_dead_trials(study, reason="its worker process was stopped", culprits=culprits,
                                      culprit_error=culprit_error)
        if self.job.sampler != "grid":
            store.requeue_interrupted(study)
        return died


def _death_reason(e: BaseException) -> str:
    text = str(e)
    if "SIGKILL" in text or "-9" in text:
        return "the worker process was killed (SIGKILL; often the system ran out of memory)"
    return "the worker process died unexpectedly (" + text.splitlines()[0][:160] + ")"
