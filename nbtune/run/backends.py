"""Where workers run: a registry of backends (``--backend``).

A backend starts ``n_jobs`` workers, each running :func:`nbtune.run.worker.run_worker`
on the same :class:`~nbtune.run.worker.Job`, and returns when they have all ended. The
coordinator (:mod:`nbtune.run.coordinator`) asks it to force a stop when trials do not
notice *Stop now* in time, and whether an exception means a worker process died.

Adding a backend is one subclass of :class:`BaseBackend` and one :func:`register_backend`
call; ``auto`` picks ``inline`` for one job and ``loky`` for more.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import importlib.util
import logging
import os
import signal
from typing import Any, ClassVar

from nbtune._registry import Registry
from nbtune.cell.program import CellProgram, TrialInterrupted
from nbtune.exceptions import CellError, ConfigError, NbtuneError
from nbtune.run.worker import Job, async_raise, run_worker, running_threads

__all__ = ["BACKENDS", "BaseBackend", "SchedulerLost", "register_backend", "resolve_backend", "effective_jobs"]

_logger = logging.getLogger(__name__)


class BaseBackend(abc.ABC):
    """How a search's workers are started and, when needed, stopped by force.

    Attributes:
        name: the ``--backend`` value.
        processes: workers are other processes: the cell and the globals it reads must
            pickle, and IPython magics are not available there.
        needs: ``(module, extra)`` that must be importable, named in the error with the
            ``pip install 'nbtune[extra]'`` that provides it.
    """

    name: ClassVar[str]
    processes: ClassVar[bool] = True
    needs: ClassVar[tuple[str, str] | None] = None

    def check(self) -> None:
        """Raises ConfigError when the backend's package is missing."""
        if self.needs is not None and importlib.util.find_spec(self.needs[0]) is None:
            module, extra = self.needs
            raise ConfigError(f"--backend {self.name} needs {module}; install it with: pip install 'nbtune[{extra}]'")

    def start(self) -> None:
        """Called on the kernel's main thread before a search's workers start, and only when
        there are trials to run (a finished study starts nothing).

        Raises:
            ConfigError: the backend cannot start.
        """

    @abc.abstractmethod
    def run(self, job: Job, n_jobs: int) -> None:
        """Run ``n_jobs`` workers to their end."""

    def force_stop(self, job: Job) -> None:
        """Trials did not notice Stop now within the grace period: end them by force, if this
        backend can. The default can't (remote workers stop at their next epoch)."""

    def starting(self, job: Job) -> bool:
        """No worker has begun running trials yet (they are still starting): the forced stop then
        cuts no trial, and says so itself."""
        return False

    def kill(self, job: Job) -> None:
        """The forced stop did not end the workers either: the last resort."""

    def retire(self) -> None:
        """After a search whose workers a signal cut (Interrupt, the forced stop): end the worker
        processes this backend keeps warm for the next search, if it keeps any."""

    def is_worker_death(self, error: BaseException) -> bool:
        """Whether ``error`` (raised by :meth:`run`) means a worker process died."""
        return False

    @property
    def watches_deaths(self) -> bool:
        """Whether the coordinator should watch worker pids to tell the first death apart."""
        return False


class _Backends(Registry[BaseBackend]):
    def choices(self) -> list[str]:
        # "inline" is what "auto" means for one job; users choose "auto".
        return ["auto", *(n for n in self if n != "inline")]


BACKENDS = _Backends("--backend")


def register_backend(backend: BaseBackend) -> BaseBackend:
    """Make ``backend`` available as ``--backend <backend.name>``."""
    return BACKENDS.register(backend.name, backend)


_OMP_PAUSE_HARD = 2  # omp_pause_resource_t: omp_pause_soft 1, omp_pause_hard 2
_gomp: dict[str, Any] = {}  # path of a loaded GNU OpenMP runtime -> its omp_pause_resource_all, or None


def release_openmp_pools() -> int:
    """Free the calling thread's GNU OpenMP thread pools (``omp_pause_resource_all``), before trials
    run on another thread of this process; how many runtimes freed one.

    GNU OpenMP (libgomp: scikit-learn's histogram gradient boosting, PyTorch, LightGBM, XGBoost)
    keeps a pool of threads per thread that ran a parallel region, and once the threads of all its
    pools outnumber the cores it stops spinning between parallel regions and sleeps instead. A
    notebook that fitted a model before the search has such a pool on the kernel's main thread, so
    the trials' own pool, on the search's thread, ran every fit 3-4 times slower (found trying
    nbtune as a new user: HistGradientBoostingClassifier 0.80 s a trial against 0.26 s in a plain
    Optuna loop; a PyTorch MLP 2-4 times slower). Freed, the main thread's pool is made again the
    next time the notebook's own code needs it. Only libgomp's is freed (Linux, where the runtimes
    loaded are listed in /proc/self/maps): its pause frees the calling thread's pool alone.
    """
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[5].strip() for line in maps if "libgomp" in line and line.count(" ") >= 5}
    except OSError:  # not Linux
        return 0
    freed = 0
    for path in paths:
        if path not in _gomp:
            import ctypes

            try:
                pause = getattr(ctypes.CDLL(path), "omp_pause_resource_all", None)  # (GCC 10 and later)
            except OSError:
                pause = None
            if pause is not None:
                pause.argtypes, pause.restype = [ctypes.c_int], ctypes.c_int
            _gomp[path] = pause
        if _gomp[path] is not None and _gomp[path](_OMP_PAUSE_HARD) == 0:
            freed += 1
    return freed


def _alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` whose process still runs (this machine's)."""
    out = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except OSError:  # (another user's: it runs)
            pass
        out.append(pid)
    return out


def _interrupt_threads() -> None:
    for ident in running_threads.idents():
        async_raise(ident, TrialInterrupted)  # the trial's Python code gets it at its next bytecode


class InlineBackend(BaseBackend):
    """One worker on the coordinator's own thread in the kernel (``auto`` with one job)."""

    name = "inline"
    processes = False

    def start(self) -> None:
        release_openmp_pools()  # the trials run on the search's thread (see there)

    def run(self, job: Job, n_jobs: int) -> None:
        with contextlib.suppress(TrialInterrupted, KeyboardInterrupt):
            run_worker(job, 0)

    def force_stop(self, job: Job) -> None:
        _interrupt_threads()


class _JoblibBackend(BaseBackend):
    """Workers as joblib tasks, one per job, on a joblib backend."""

    def parallel_config(self) -> Any:
        """The ``joblib.parallel_config`` to run under."""
        import joblib

        return joblib.parallel_config(backend=self.name)

    def run(self, job: Job, n_jobs: int) -> None:
        import joblib

        with self.parallel_config():
            joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(run_worker)(job, i) for i in range(n_jobs))


class ThreadingBackend(_JoblibBackend):
    """Threads of the kernel's process: for code that releases the GIL (numpy, PyTorch)."""

    name = "threading"
    processes = False

    def start(self) -> None:
        release_openmp_pools()

    def force_stop(self, job: Job) -> None:
        _interrupt_threads()


class LokyBackend(_JoblibBackend):
    """Local worker processes (joblib's loky): the default for more than one job."""

    name = "loky"
    # what the kernel's own modules were when the pool's processes started: (sys.path, fingerprints)
    _imported: ClassVar[tuple[tuple[str, ...], dict[str, str]] | None] = None

    def run(self, job: Job, n_jobs: int) -> None:
        self._replace_stale_workers()
        # a trial stuck past --trial-timeout in compiled code ends its worker; the pool is replaced
        super().run(dataclasses.replace(job, ends_stuck_trials=True), n_jobs)

    def _replace_stale_workers(self) -> None:
        """loky keeps its processes between searches, and a process imports a module once: after an
        edit of the user's own module (``src/mlproj/models.py``, brought into the kernel by
        ``%autoreload`` or ``importlib.reload``), the workers went on running the code they had
        imported, in a new version of the study said to be the new code's; and a folder added to
        ``sys.path`` since they started was not theirs, so its modules did not import (found trying
        nbtune as a new user). Such workers are replaced (about 1 s)."""
        import sys

        from nbtune.cell.identity import user_modules_loaded

        try:
            path, code = tuple(sys.path), user_modules_loaded()
        except Exception:  # (nothing to compare: the workers stay as they are)
            return
        before = LokyBackend._imported
        LokyBackend._imported = (path, code)
        if before is None or _loky_executor() is None:
            return
        edited = sorted(m for m in code if m in before[1] and before[1][m] != code[m])
        if edited or path != before[0]:
            _logger.warning(
                "starting the worker processes again: %s since they started",
                f"the code of {', '.join(edited)} changed" if edited else "sys.path changed",
            )
            self.retire()

    def starting(self, job: Job) -> bool:
        return not job.control.worker_pids()

    def force_stop(self, job: Job) -> None:
        registered = job.control.worker_pids()
        if not registered:
            # No worker has started its loop yet: they are still rebuilding what the cell reads (a large
            # notebook object). They would start the search once done, after the kernel said it stopped,
            # and run it to the end unseen (found trying nbtune as a new user): the pool's processes end.
            _logger.warning(
                "Interrupt or Stop now: no trial had started (the worker processes were still starting); ending them"
            )
            self.retire()
            return
        pids = _alive(registered)
        if not pids:  # (it had said "sending SIGTERM to workers []": found trying nbtune as a new user)
            _logger.warning("Stop now: no worker process of this search is running; its trials end with their workers")
            return
        _logger.warning("Stop now: trials did not stop in time; sending SIGTERM to workers %s", pids)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def kill(self, job: Job) -> None:
        pids = _alive(job.control.worker_pids())
        if not pids:  # they ended after SIGTERM
            return
        _logger.warning("Stop now: workers %s outlived SIGTERM; sending SIGKILL", pids)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def retire(self) -> None:
        """loky keeps its processes for the next search. A signal raises wherever a process is, and
        one cut inside an import (``torch.optim.Adam`` imports sympy the first time) keeps that
        package half made: every later trial in it failed with ``module 'sympy' has no attribute
        'printing'``, and the search stopped as for a bug in the cell, until a kernel restart (found
        trying nbtune as a new user). The next search starts new processes (about 1 s)."""
        executor = _loky_executor()
        if executor is not None:
            executor.shutdown(wait=True, kill_workers=True)

    def is_worker_death(self, error: BaseException) -> bool:
        return type(error).__name__ == "TerminatedWorkerError"

    @property
    def watches_deaths(self) -> bool:
        return hasattr(os, "pidfd_open")


def _loky_executor() -> Any:
    """The pool of processes loky keeps between searches (None: none started, or shut down)."""
    from joblib.externals.loky import reusable_executor

    return getattr(reusable_executor, "_executor", None)


class DaskBackend(_JoblibBackend):
    """Workers on a dask.distributed cluster (the running Client's)."""

    name = "dask"
    needs = ("distributed", "dask")

    def _client(self) -> Any:
        from distributed import get_client

        try:
            return get_client()
        except ValueError:
            raise ConfigError(
                "--backend dask needs a running dask.distributed Client; start one first, e.g. "
                "'from distributed import Client, LocalCluster; client = Client(LocalCluster())'"
            ) from None

    def check(self) -> None:
        super().check()
        self._client()  # before anything is created, not when the workers start

    def run(self, job: Job, n_jobs: int) -> None:
        """One task per worker on the cluster, submitted directly: joblib's Dask backend runs its
        tasks one by one in the calling process when the cluster has a single thread (every trial
        then ran in the kernel, under a header saying "on 2 dask worker(s)"). The job (the cell and
        the notebook data it reads) travels inside each task: once per worker and run, never per
        trial (scattering it instead would pin both tasks to the worker holding the data).

        While they run, the cluster is watched: with no worker left for :data:`NO_WORKERS_GRACE`
        seconds (every worker died, and nothing restarts them) the search ends saying so instead of
        waiting forever, and a scheduler that went away is one line.
        """
        import time

        client = self._client()
        address = getattr(client.scheduler, "address", None) or "its address"  # (gone with the scheduler)
        futures = [client.submit(run_worker, job, i, pure=False) for i in range(n_jobs)]
        empty_since: float | None = None
        try:
            while not all(f.done() for f in futures):
                time.sleep(0.5)
                try:
                    workers = client.scheduler_info().get("workers") or {}
                except Exception as e:  # the scheduler is gone
                    raise self._lost(address, e) from None
                if workers:
                    empty_since = None
                    continue
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since > NO_WORKERS_GRACE:
                    raise ConfigError(
                        f"--backend dask: the cluster at {address} has had no worker for "
                        f"{NO_WORKERS_GRACE:.0f} s (they died, and nothing restarted them: a worker started with "
                        "--no-nanny, or one that a trial's crash took down); the finished trials are kept: start "
                        "workers and re-run the cell (trials left running are run again)"
                    )
            client.gather(futures)  # the first worker's error, if any
        except NbtuneError:  # said already (a trial's own CellError, no workers left)
            raise
        except Exception as e:
            if _lost_scheduler(e):
                raise self._lost(address, e) from None
            raise
        finally:
            with contextlib.suppress(Exception):
                client.cancel([f for f in futures if not f.done()])

    @staticmethod
    def _lost(where: str, e: BaseException) -> SchedulerLost:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        lost = f"the Dask scheduler at {where} went away mid-search ({type(e).__name__}: {reason})"
        return SchedulerLost(
            f"--backend dask: the {lost[9:]}; the finished trials are kept: restart the cluster and the Client, then "
            "re-run the cell (trials left running are run again)",
            lost,
        )

    def is_worker_death(self, error: BaseException) -> bool:
        # a task whose workers kept dying under it (a trial that ends its process, out of memory)
        return type(error).__name__ == "KilledWorker"


class SchedulerLost(ConfigError):
    """The Dask Client lost its scheduler mid-search; ``lost`` says so in a sentence. Its workers
    may go on with the trials they run (they reach the store, not the scheduler): the coordinator
    waits for them, and raises this only when the study is still short of its target."""

    def __init__(self, message: str, lost: str) -> None:
        super().__init__(message)
        self.lost = lost


NO_WORKERS_GRACE = 30.0  # seconds a Dask cluster may have no worker (a nanny restarts one in a few)


def _lost_scheduler(e: BaseException) -> bool:
    """The Client lost its scheduler (distributed's CommClosedError, a future cancelled for
    "scheduler-connection-lost", a connection refused)."""
    names = {c.__name__ for c in type(e).__mro__}
    return bool(names & {"CommClosedError", "FutureCancelledError", "CancelledError"}) or (
        isinstance(e, OSError) and "connect" in str(e).lower()
    )


def _not_joblibs_context_notice(record: logging.LogRecord) -> bool:
    """Ray's pool warns that joblib's ``context`` argument is not supported (joblib always passes
    it, and nbtune does not need it): not for the notebook."""
    return not record.getMessage().startswith("The 'context' argument is not supported")


class RayBackend(_JoblibBackend):
    """Workers on a Ray cluster, through Ray's joblib backend."""

    name = "ray"
    needs = ("ray", "ray")

    def start(self) -> None:
        import ray

        if not ray.is_initialized():
            # On the kernel's main thread, before any trial: the search runs on another thread,
            # where Ray cannot install its SIGTERM handler (and says so), and a Ray that cannot
            # start fails now. Connects to RAY_ADDRESS or a running local instance, else starts
            # one (about 5 s: not for a study that is already finished); a cluster is the user's
            # own ray.init(address=...) before the search.
            try:
                ray.init()
            except Exception as e:
                where = f" (RAY_ADDRESS={os.environ['RAY_ADDRESS']!r})" if os.environ.get("RAY_ADDRESS") else ""
                reason = (str(e).strip().splitlines() or [""])[0][:200]
                raise ConfigError(
                    f"--backend ray: Ray did not start{where}: {type(e).__name__}: {reason}; fix RAY_ADDRESS, or "
                    "call ray.init(...) in the notebook before the search"
                ) from None

    def parallel_config(self) -> Any:
        import joblib
        from ray.util.joblib import register_ray

        register_ray()
        logging.getLogger("ray.util.multiprocessing.pool").addFilter(_not_joblibs_context_notice)
        return joblib.parallel_config(backend="ray")


for _backend in (InlineBackend(), ThreadingBackend(), LokyBackend(), DaskBackend(), RayBackend()):
    register_backend(_backend)


def effective_jobs(n_jobs: int) -> int:
    """``-1`` -> the number of cores.

    Raises:
        ConfigError: 0 or below -1.
    """
    if n_jobs == 0 or n_jobs < -1:
        raise ConfigError(f"--jobs must be a positive number or -1 (all cores); got {n_jobs}")
    return os.cpu_count() or 1 if n_jobs == -1 else n_jobs


def resolve_backend(name: str, n_jobs: int) -> BaseBackend:
    """The backend for ``--backend name`` with ``n_jobs`` workers (``auto``: inline or loky).

    Raises:
        ConfigError: unknown name or missing package.
    """
    if name not in BACKENDS.choices():
        raise BACKENDS.unknown(name)
    if name == "auto":
        name = "inline" if n_jobs == 1 else "loky"
    backend = BACKENDS.lookup(name)
    backend.check()
    return backend


def check_sendable(program: CellProgram, cell: str, line_offset: int) -> None:
    """Fail early, naming the line or the variable, when a cell cannot run in worker processes.

    Raises:
        ConfigError: a ``%magic`` line (no IPython in a worker).
        CellError: a global the cell reads cannot be pickled; suggests ``--backend threading``.
    """
    raw = cell.splitlines()
    for i, text in enumerate(program.source.splitlines()):  # IPython's syntax, as IPython made it Python
        if "get_ipython().run_line_magic(" in text or "get_ipython().run_cell_magic(" in text:
            said = raw[i].strip() if i < len(raw) else text.strip()
            # (of 't = %timeit -o f()' it had named 't': found trying nbtune as a new user)
            magic = next((w for w in said.split() if w.startswith("%")), said.split()[0])
            what = f"the help line {said!r}" if said.endswith("?") or said.startswith("?") else f"the magic {magic}"
            plain = (
                "plain Python (time.perf_counter(), or timeit.repeat(f, number=...))"
                if magic.lstrip("%") in ("time", "timeit")
                else "plain Python"
            )
            raise ConfigError(
                f"line {i + line_offset + 1} of the %%tune cell: {what} cannot run in worker processes (no IPython "
                f"there); use --backend threading, or {plain}"
            )
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
