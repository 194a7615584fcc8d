"""Backends: workers on threads, loky processes and Dask, with the real cell sent to them; dead workers replaced."""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np
import pytest

import nbtune
from nbtune.store.attrs import ATTR

BUSY = """\
x = 0.5  # tune: uniform(0, 1)
import os, time
t = time.perf_counter()
while time.perf_counter() - t < 0.05:
    pass
pid = os.getpid()
loss = (x - 0.3) ** 2
"""


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_two_jobs_exact_count(tmp_path, backend):
    res = nbtune.tune(BUSY, minimize="loss", n_trials=9, n_jobs=2, backend=backend, store=tmp_path, view=None)
    trials = res.study.trials
    assert res.n_finished == 9 and len(trials) == 9
    assert all(t.state.name == "COMPLETE" for t in trials)
    workers = {t.user_attrs[ATTR.OWNER]["worker"] for t in trials}
    assert workers == {0, 1}
    pids = {t.user_attrs[ATTR.OWNER]["pid"] for t in trials}
    import os

    if backend == "loky":
        assert len(pids) == 2 and os.getpid() not in pids
    else:
        assert pids == {os.getpid()}
    # with --seed, the note that two jobs do not repeat a search (the README said it; the run did not),
    # once a kernel (a tutorial said it six times)
    from nbtune import _tune

    _tune._TOLD.discard("seed-jobs")
    again = nbtune.tune(
        BUSY, minimize="loss", n_trials=11, n_jobs=2, backend=backend, store=tmp_path, view=None, seed=1
    )
    note = "--seed 1 with 2 jobs: what the sampler has seen when it draws depends on which trials finish first"
    assert any(m.startswith(note) for m in again.messages), again.messages
    alone = nbtune.tune(BUSY, minimize="loss", n_trials=12, store=tmp_path, view=None, seed=1)
    assert not any("jobs:" in m for m in alone.messages), alone.messages
    twice = nbtune.tune(
        BUSY, minimize="loss", n_trials=13, n_jobs=2, backend=backend, store=tmp_path, view=None, seed=1
    )
    assert not any("jobs:" in m for m in twice.messages), twice.messages


# Optuna's journal lock is not safe against an exception raised inside it: an Interrupt (SIGINT to
# the kernel's process group) that reaches a worker right after the lock's file was unlinked makes
# its clean-up raise FileNotFoundError instead. This cell stands in for that moment, in Optuna's own
# code: its module sees a wrapped `os` whose unlink of a released lock is followed by SIGINT.
LOCK_RACE = """\
x = 0.5  # tune: uniform(0, 1)
import os, signal
import optuna.storages.journal._file as journal_file
class UnlinkThenInterrupt:
    def __getattr__(self, name):
        return getattr(os, name)
    def unlink(self, path):
        os.unlink(path)
        if str(path).endswith(".rename"):
            journal_file.os = os
            os.kill(os.getpid(), signal.SIGINT)
for epoch in range(5):  # tune: epochs
    loss = (x - 0.3) ** 2 + 1 / (epoch + 1)
    if epoch == 2 and x < 0.5:
        journal_file.os = UnlinkThenInterrupt()
"""


def test_an_interrupt_inside_optunas_journal_lock_is_an_interrupt_not_a_failed_trial(tmp_path):
    res = nbtune.tune(
        LOCK_RACE, minimize="loss", n_trials=12, n_jobs=2, seed=0, store=str(tmp_path), view=None, scheduler="none"
    )
    trials = res.study.trials
    assert not any("FileNotFoundError" in str(t.user_attrs.get(ATTR.ERROR, "")) for t in trials)
    cut = [t for t in trials if ATTR.INTERRUPTED in t.user_attrs]
    assert cut and all(t.state.name == "FAIL" and t.params["x"] < 0.5 for t in cut)
    assert "interrupted" in str(res) and res.n_finished < 12  # the search stopped, as at any Interrupt


def test_compiled_cell_with_notebook_function_pickles(ip, tmp_path):
    # A function and a class defined "in the notebook" travel to loky workers by value.
    ip.run_cell("class Scale:\n    k = 2.0\n\ndef shifted(x):\n    return (x - 0.25) ** 2 * Scale.k\n")
    res = ip.run_cell_magic(
        "tune",
        f"--trials 6 --jobs 2 --minimize loss --store {tmp_path}",
        "x = 0.5  # tune: uniform(0, 1)\nloss = shifted(x)\n",
    )
    assert res.n_finished == 6 and all(t.state.name == "COMPLETE" for t in res.study.trials)


def test_large_array_is_memory_mapped_in_workers(ip, tmp_path):
    ip.user_ns["big"] = np.ones(400_000)  # 3.2 MB
    res = ip.run_cell_magic(
        "tune",
        f"--trials 4 --jobs 2 --minimize loss --store {tmp_path}",
        "import numpy as np\nx = 0.5  # tune: uniform(0, 1)\nloss = x + float(isinstance(big, np.memmap))\n",
    )
    assert all(t.value >= 1.0 for t in res.study.trials), "the array was copied, not memory-mapped"


def test_unpicklable_global_names_the_variable(ip, tmp_path):
    from IPython.core.error import UsageError

    ip.user_ns["lock"] = threading.Lock()
    cell = "x = 0.5  # tune: uniform(0, 1)\nwith lock:\n    loss = x\n"
    with pytest.raises(
        UsageError,
        match="the notebook variable 'lock' \\(lock\\) cannot be sent to worker processes .* --backend threading",
    ):
        ip.run_cell_magic("tune", f"--trials 4 --jobs 2 --minimize loss --store {tmp_path}", cell)
    res = ip.run_cell_magic("tune", f"--trials 4 --jobs 2 --backend threading --minimize loss --store {tmp_path}", cell)
    assert res.n_finished == 4


def test_worker_killed_mid_trial(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="nbtune")
    flag = tmp_path / "killed-once"
    cell = f"""\
x = 0.5  # tune: uniform(0, 1)
import os, signal, time
time.sleep(0.1)
if not os.path.exists({str(flag)!r}):
    open({str(flag)!r}, "w").close()
    os.kill(os.getpid(), signal.SIGKILL)   # as the OOM killer would
loss = x
"""
    res = nbtune.tune(
        cell, minimize="loss", n_trials=8, n_jobs=2, backend="loky", store=tmp_path / "s", view=None, seed=1
    )
    assert res.n_finished == 8
    died = [t for t in res.study.trials if "WorkerDied" in (t.user_attrs.get(ATTR.ERROR) or "")]
    assert len(died) == 1, [(t.number, t.state, t.user_attrs) for t in res.study.trials]
    assert "SIGKILL" in died[0].user_attrs[ATTR.ERROR]
    assert any("a worker died and was replaced" in m for m in res.messages)
    logged = [r.getMessage() for r in caplog.records if r.name == "nbtune.run.coordinator"]
    assert any("SIGKILL" in m and "replacing the worker pool (restart 1 of 5)" in m for m in logged), logged
    assert any(m.startswith("search ") and "ended" in m for m in logged), logged
    complete = [t for t in res.study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 7
    # with --seed, the new pool's samplers drew the old pool's configurations again (found trying
    # nbtune as a new user); only the re-run of a cut trial repeats one, on purpose
    drawn = [tuple(t.params.items()) for t in complete if ATTR.RERUN_OF not in t.user_attrs]
    assert len(set(drawn)) == len(drawn), drawn
    # the other worker's trial, cut short when loky replaced the pool, ran again in this search
    reruns = {t.user_attrs.get(ATTR.RERUN_OF): t for t in res.study.trials}
    for t in res.study.trials:
        if ATTR.INTERRUPTED in t.user_attrs and t.params:
            assert t.number in reruns and reruns[t.number].params == t.params


@contextlib.contextmanager
def _dask_client(n_workers: int = 2):
    """A local Dask cluster of ``n_workers`` one-thread worker processes (each under a nanny), and
    a Client on it; yields the cluster."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        yield cluster


def test_dask_local_cluster(tmp_path):
    with _dask_client(2):
        res = nbtune.tune(BUSY, minimize="loss", n_trials=6, n_jobs=2, backend="dask", store=tmp_path, view=None)
    assert res.n_finished == 6
    import os

    pids = {t.user_attrs[ATTR.OWNER]["pid"] for t in res.study.trials}
    assert os.getpid() not in pids and len(pids) >= 1


def test_dask_on_a_one_thread_cluster_runs_trials_on_its_worker_not_in_the_kernel(tmp_path):
    """joblib's Dask backend ran every task in the calling process when the cluster had one
    thread: the header said 'on 2 dask worker(s)' and every trial ran in the kernel (found trying
    nbtune as a new user)."""
    import os

    with _dask_client(1):
        res = nbtune.tune(BUSY, minimize="loss", n_trials=4, n_jobs=2, backend="dask", store=tmp_path, view=None)
    assert res.n_finished == 4
    assert os.getpid() not in {t.user_attrs[ATTR.OWNER]["pid"] for t in res.study.trials}


def test_a_dask_cluster_without_workers_ends_the_search_saying_so(tmp_path, monkeypatch):
    """Every worker dead (started with --no-nanny, each taken down by a trial): the progress line
    repeated for minutes, '0 running', waiting forever (found trying nbtune as a new user)."""
    distributed = pytest.importorskip("distributed")
    from nbtune.run import backends

    monkeypatch.setattr(backends, "NO_WORKERS_GRACE", 1.0)
    with (
        distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster),
        pytest.raises(nbtune.ConfigError, match=r"--backend dask: the cluster at tcp://.* has had no worker for 1 s"),
    ):
        nbtune.tune(BUSY, minimize="loss", n_trials=4, n_jobs=2, backend="dask", store=tmp_path, view=None)


def test_a_dask_scheduler_lost_mid_search_is_one_line_or_a_note(tmp_path):
    """The scheduler killed mid-search: a long joblib traceback ending in FutureCancelledError,
    though the workers went on and finished the study (found trying nbtune as a new user). Now a
    note when they finished it, one line when they could not."""
    import os
    import signal

    distributed = pytest.importorskip("distributed")
    slow = "x = 0.5  # tune: uniform(0, 1)\nimport time\ntime.sleep(0.3)\nloss = x\n"
    # the scheduler goes, its workers finish the trials the study needs
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    address = cluster.scheduler_address
    with distributed.Client(cluster):
        threading.Timer(2.0, cluster.close).start()
        res = nbtune.tune(slow, minimize="loss", n_trials=20, n_jobs=2, backend="dask", store=tmp_path / "a", view=None)
    assert res.n_finished == 20
    assert any(m.startswith(f"the Dask scheduler at {address} went away mid-search") for m in res.messages)
    # the scheduler and its workers go: the study is short of its target
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    address = cluster.scheduler_address
    with distributed.Client(cluster) as client:
        pids = list(client.run(os.getpid).values())

        def crash():
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            cluster.close()

        threading.Timer(2.0, crash).start()
        with pytest.raises(
            nbtune.ConfigError, match=rf"--backend dask: the scheduler at {address} went away mid-"
        ) as e:
            nbtune.tune(
                slow, minimize="loss", n_trials=40, n_jobs=2, backend="dask", store=tmp_path / "b", view=None,
            )  # fmt: skip
    assert 0 < len(nbtune.load_study(store=tmp_path / "b").trials) < 40  # what finished is kept
    # and the error carries the search as it stopped (what %%tune -o binds)
    assert (
        0 < e.value.result.n_finished < 40
        and e.value.result.study.study_name == "loss-" + e.value.result.study.study_name.split("-", 1)[1]
    )


def test_dask_without_client_is_a_clear_error(tmp_path):
    pytest.importorskip("distributed")
    import glob
    import tempfile

    before = set(glob.glob(f"{tempfile.gettempdir()}/nbtune-*"))
    with pytest.raises(nbtune.ConfigError, match="--backend dask needs a running dask.distributed Client"):
        nbtune.tune(BUSY, minimize="loss", n_trials=2, n_jobs=2, backend="dask", store=tmp_path, view=None)
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []  # checked before anything was written
    assert set(glob.glob(f"{tempfile.gettempdir()}/nbtune-*")) == before


def test_ray_started_by_nbtune_keeps_its_notices_about_nbtunes_own_choices_out_of_the_notebook(tmp_path):
    """Without a ray.init() of the user's, nbtune starts Ray on the kernel's main thread before the
    search (Ray installs its SIGTERM handler, and does not warn it could not), and joblib's
    ``context`` argument, which Ray's pool ignores, is not reported to the user. Then a search on
    the Ray instance that is up (one Ray start for both: about 15 s)."""
    pytest.importorskip("ray")
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import os, threading, numpy as np, nbtune, ray
        inits = []
        real_init = ray.init
        ray.init = lambda *a, **k: (inits.append(threading.current_thread() is threading.main_thread()), real_init(*a, **k))[1]
        res = nbtune.tune({BUSY!r}, minimize="loss", n_trials=4, n_jobs=2, backend="ray", store={str(tmp_path)!r}, view=None)
        print("finished", res.n_finished, "inits", inits, "ray up", ray.is_initialized())
        # on the Ray instance now up (as one the user started): each worker a Ray task in a Ray worker
        # process, the notebook's data and functions sent with the job, the trial count exact
        weights = np.arange(1000.0)
        res = nbtune.tune(
            {BUSY!r} + "loss += float(scale(weights))\\n", minimize="loss", n_trials=6, n_jobs=2, backend="ray",
            store={str(tmp_path)!r}, view=None, name="sent", user_ns={{"weights": weights, "scale": lambda w: w.sum() / 1e9}},
        )
        trials = res.study.trials
        owners = [t.user_attrs["nbtune:owner"] for t in trials]
        print(
            "second", res.n_finished, len(trials), sorted({{t.state.name for t in trials}}),
            {{o["worker"] for o in owners}} <= {{0, 1}}, os.getpid() not in {{o["pid"] for o in owners}},
            abs(res.best_value - ((res.best_params["x"] - 0.3) ** 2 + weights.sum() / 1e9)) < 1e-9, "inits", len(inits),
        )
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "finished 4 inits [True] ray up True" in run.stdout
    # (a Ray worker process may start after the other worker ran every trial: which ran is not asserted)
    assert "second 6 6 ['COMPLETE'] True True True inits 1" in run.stdout, run.stdout
    log = run.stdout + run.stderr
    assert "Started a local Ray instance" in log  # Ray's own notice of what it did stays
    assert "'context' argument is not supported" not in log
    assert "SIGTERM handler is not set" not in log


def test_ray_that_cannot_start_is_one_line_before_any_trial(ip, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from IPython.core.error import UsageError

    if ray.is_initialized():  # pragma: no cover - another test left it running
        ray.shutdown()
    monkeypatch.setenv("RAY_ADDRESS", "nonsense")
    with pytest.raises(UsageError) as e:
        ip.run_cell_magic("tune", f"--jobs 2 --backend ray --minimize loss --store {tmp_path}", BUSY)
    assert str(e.value).startswith("--backend ray: Ray did not start (RAY_ADDRESS='nonsense'): ValueError: ")
    assert "fix RAY_ADDRESS, or call ray.init(...)" in str(e.value) and "\n" not in str(e.value)
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    for journal in tmp_path.glob("*.journal"):  # at most the queued baseline: no trial ran
        storage = JournalStorage(JournalFileBackend(str(journal)))
        for name in optuna.get_all_study_names(storage):
            assert all(t.state.name == "WAITING" for t in optuna.load_study(study_name=name, storage=storage).trials)


def test_ray_is_not_started_for_a_study_that_is_already_finished(tmp_path, monkeypatch):
    """Re-running a finished cell with --backend ray shows its results at once: Ray starts (about
    5 s) only when there are trials to run."""
    ray = pytest.importorskip("ray")

    if ray.is_initialized():  # pragma: no cover - another test left it running
        ray.shutdown()
    first = nbtune.tune(BUSY, minimize="loss", n_trials=3, store=tmp_path, view=None)
    calls = []
    monkeypatch.setattr(ray, "init", lambda *a, **k: calls.append(1))
    again = nbtune.tune(BUSY, minimize="loss", n_trials=3, n_jobs=2, backend="ray", store=tmp_path, view=None)
    assert calls == [] and not ray.is_initialized()
    assert again.study.study_name == first.study.study_name and again.n_finished == 3
    monkeypatch.undo()
    monkeypatch.setenv("RAY_ADDRESS", "nonsense")
    with pytest.raises(nbtune.ConfigError, match="Ray did not start"):  # more trials: Ray is needed, and checked
        nbtune.tune(BUSY, minimize="loss", n_trials=4, n_jobs=2, backend="ray", store=tmp_path, view=None)


def test_ray_backend_names_the_extra_when_missing(ip, tmp_path, monkeypatch):
    import importlib.util

    from IPython.core.error import UsageError

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    with pytest.raises(UsageError, match=r"--backend ray needs ray; install it with: pip install 'nbtune\[ray\]'"):
        ip.run_cell_magic(
            "tune",
            f"--jobs 2 --backend ray --minimize loss --store {tmp_path}",
            "x = 0.5  # tune: uniform(0, 1)\nloss = x\n",
        )


def test_shell_escapes_work_in_worker_processes(ip, tmp_path):
    res = ip.run_cell_magic(
        "tune",
        f"--trials 4 --jobs 2 --minimize loss --store {tmp_path}",
        "x = 0.5  # tune: uniform(0, 1)\nout = !echo a b\nloss = x + len(out) + len(out.fields(0))\n",
    )
    assert res.n_finished == 4 and all(t.state.name == "COMPLETE" for t in res.study.trials)
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="line 3 of the %%tune cell: the magic %time cannot run in worker processes"):
        ip.run_cell_magic(
            "tune",
            f"--trials 4 --jobs 2 --minimize loss --store {tmp_path}/m",
            "x = 0.5  # tune: uniform(0, 1)\n%time y = 1\nloss = x\n",
        )

    # the magic named, not the variable it assigns (it had said "the magic t")
    with pytest.raises(UsageError, match=r"the magic %timeit cannot run .* or plain Python \(time.perf_counter\(\)"):
        ip.run_cell_magic(
            "tune",
            f"--trials 4 --jobs 2 --minimize loss --store {tmp_path}/t",
            "x = 0.5  # tune: uniform(0, 1)\nt = %timeit -o -n 1 -r 1 sum([1])\nloss = x\n",
        )

    with pytest.raises(UsageError, match="line 3 of the %%tune cell: the help line 'dict\\?' cannot run in worker"):
        ip.run_cell_magic(
            "tune",
            f"--trials 4 --jobs 2 --minimize loss --store {tmp_path}/h",
            "x = 0.5  # tune: uniform(0, 1)\ndict?\nloss = x\n",
        )


def test_stop_now_names_no_empty_list_of_workers(caplog):
    """'sending SIGTERM to workers []', then 'workers [] outlived SIGTERM; sending SIGKILL' twice (found
    trying nbtune as a new user): signals go to worker processes that run, and an empty list is said."""
    import subprocess
    import sys
    import types

    from nbtune.run.backends import LokyBackend

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    job = types.SimpleNamespace(control=types.SimpleNamespace(worker_pids=lambda: [gone.pid]))
    with caplog.at_level("WARNING", logger="nbtune.run.backends"):
        LokyBackend().force_stop(job)
        LokyBackend().kill(job)
    said = [r.getMessage() for r in caplog.records]
    assert said == ["Stop now: no worker process of this search is running; its trials end with their workers"]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    job.control.worker_pids = lambda: [gone.pid, sleeper.pid]
    caplog.clear()
    with caplog.at_level("WARNING", logger="nbtune.run.backends"):
        LokyBackend().kill(job)
    assert sleeper.wait(timeout=10) == -9
    assert [r.getMessage() for r in caplog.records] == [
        f"Stop now: workers [{sleeper.pid}] outlived SIGTERM; sending SIGKILL"
    ]


@pytest.mark.skipif(not os.path.exists("/proc/self/task") or (os.cpu_count() or 1) < 2, reason="Linux, 2+ cores")
def test_the_notebooks_openmp_pool_is_freed_before_trials_run_on_the_search_thread(ip, tmp_path, monkeypatch):
    """A model fitted in the notebook leaves GNU OpenMP a pool of threads on the kernel's main thread,
    and with the trials' own pool on the search's thread, libgomp stopped spinning between parallel
    regions: every HistGradientBoosting fit ran 3-4 times slower than in a plain Optuna loop (found
    trying nbtune as a new user; the times are in benchmarks/bench_openmp.py). Here: the main
    thread's pool workers end when it is freed, and a search in the kernel frees it first."""
    pytest.importorskip("sklearn")
    import subprocess
    import sys

    from nbtune.run import backends

    # In a process of its own (the suite's earlier tests leave this one's OpenMP in any state): a fit on
    # the main thread makes its pool; freed, the pool's worker threads end.
    script = (
        "import os, threading, time\nimport numpy as np\nfrom sklearn.ensemble import HistGradientBoostingClassifier\n"
        "from nbtune.run.backends import release_openmp_pools\n"
        "X = np.random.default_rng(0).standard_normal((2000, 5)); y = (X[:, 0] > 0).astype(int)\n"
        "HistGradientBoostingClassifier(max_iter=3).fit(X, y)\n"
        "before = set(os.listdir('/proc/self/task'))\n"
        "freed = release_openmp_pools()\n"
        "for _ in range(100):\n"
        "    ended = before - set(os.listdir('/proc/self/task'))\n"
        "    if ended: break\n"
        "    time.sleep(0.02)\n"
        "print(freed, len(ended))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    freed, ended = map(int, out.stdout.split())
    assert freed >= 1 and ended >= 1, out.stdout + out.stderr
    calls = []
    monkeypatch.setattr(backends, "release_openmp_pools", lambda: calls.append(threading.current_thread().name))
    cell = "lr = 0.1  # tune: loguniform(0.01, 0.3)\nacc = lr\n"
    for backend in ("auto", "threading"):
        ip.run_cell_magic(
            "tune", f"--maximize acc -n 2 --backend {backend} --view none --store {tmp_path}/{backend}", cell
        )
    assert calls == [threading.current_thread().name] * 2  # on the thread that waits, before the trials


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_time_measured_in_trials_side_by_side_is_said_to_vary(ip, tmp_path, jobs):
    """A latency guardrail under --jobs 2: the same model measured 194 and 433 µs, and one trial broke
    the guardrail by 0.24 ms (found trying nbtune as a new user)."""
    cell = "x = 0.5  # tune: uniform(0, 1)\nlatency_ms = x\nloss = x\n"
    res = ip.run_cell_magic(
        "tune",
        f"--minimize loss -n 2 --jobs {jobs} --subject-to 'latency_ms <= 2' --record latency_ms --store {tmp_path}",
        cell,
    )
    said = [m for m in res.messages if "reads like a time measured in the cell" in m]
    assert len(said) == (jobs > 1) and (not said or said[0].startswith("'latency_ms' reads like a time"))


@pytest.mark.parametrize("jobs", [1, 2])
def test_what_ipython_gives_a_cell_works_in_trials(ip, tmp_path, jobs):
    """Top-level await, display(), exit() and a help line, as in a plain run of the cell: await
    failed every trial at compile time, display was a NameError in worker processes, exit() a
    NameError ('SystemExit' now) (found trying nbtune as a new user)."""
    ip.run_cell("import asyncio")
    cell = (
        "x = 0.5  # tune: uniform(0, 1)\n"
        "await asyncio.sleep(0.001)\n"
        "display({'x': round(x, 3)})\n"
        "if x > 0.7:\n"
        "    exit()\n"
        "loss = x\n"
    )
    res = ip.run_cell_magic("tune", f"--trials 6 --jobs {jobs} --minimize loss --seed 3 --store {tmp_path}", cell)
    rows = res.trials_dataframe()
    assert (rows.state == "COMPLETE").sum() >= 3 and res.n_finished == 6
    for number, row in rows.iterrows():
        assert f"{{'x': {round(res.study.trials[number].params['x'], 3)}}}" in row.output
        assert row.state == "COMPLETE" or row.error == "SystemExit"
    if jobs == 1:  # (a help line needs the kernel's IPython)
        again = ip.run_cell_magic(
            "tune",
            f"--trials 2 --minimize loss --store {tmp_path}/h",
            "x = 0.5  # tune: uniform(0, 1)\ndict?\nloss = x\n",
        )
        assert all(t.state.name == "COMPLETE" for t in again.study.trials)


def test_a_line_magic_in_a_trial_leaves_no_trial_variable_in_the_notebook(ip, tmp_path):
    """%timeit copies a trial's variables into the notebook's namespace and puts back only the
    names that were there: the baseline's model and r2 were left behind (found trying nbtune as a
    new user)."""
    ip.run_cell("existing = 'mine'")
    cell = "x = 0.5  # tune: uniform(0, 1)\nmodel = [x]\nexisting = x\n%timeit -n1 -r1 sum(model)\nloss = x\n"
    res = ip.run_cell_magic("tune", f"--trials 3 --minimize loss --store {tmp_path}", cell)
    assert all(t.state.name == "COMPLETE" for t in res.study.trials)
    assert "per loop" in res.trials_dataframe().output.iloc[0]  # the magic ran in the trial
    assert "model" not in ip.user_ns and "loss" not in ip.user_ns and ip.user_ns["existing"] == "mine"


def test_what_the_compiler_refuses_is_said_before_any_trial(ip, tmp_path):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match=r"^line 3 of the %%tune cell: 'return' outside function: return 5$"):
        ip.run_cell_magic(
            "tune",
            f"--trials 3 --minimize loss --store {tmp_path}",
            "x = 0.5  # tune: uniform(0, 1)\nreturn 5\nloss = x\n",
        )


@pytest.mark.parametrize("backend, jobs", [("auto", 1), ("threading", 2), ("loky", 2)])
def test_trial_prints_are_kept_with_the_trial(tmp_path, capsys, backend, jobs):
    import sys

    cell = (
        "x = 0.5  # tune: uniform(0, 1)\nimport sys, warnings\nprint('epoch log', x)\n"
        "print('to stderr', file=sys.stderr)\nloss = x\n"
    )
    before = sys.stdout
    res = nbtune.tune(cell, minimize="loss", n_trials=4, n_jobs=jobs, backend=backend, store=tmp_path, view=None)
    assert sys.stdout is before
    captured = capsys.readouterr()
    assert "epoch log" not in captured.out and "to stderr" not in captured.err
    for t in res.study.trials:
        out = t.user_attrs[ATTR.OUTPUT]
        assert out == f"epoch log {t.params['x']}\nto stderr\n"
    assert res.trials_dataframe()["output"].str.startswith("epoch log").all()


def test_a_cell_that_starts_its_own_processes_runs_in_worker_processes(tmp_path):
    """What a PyTorch DataLoader(num_workers=2) does in a trial: plain multiprocessing.Process objects."""
    cell = (
        "x = 0.5  # tune: uniform(0, 1)\n"
        "import multiprocessing as mp\n"
        "ends = [mp.Pipe(duplex=False) for _ in range(2)]\n"
        "procs = [mp.Process(target=w.send, args=(x,)) for _, w in ends]\n"
        "for p in procs:\n    p.start()\n"
        "values = [r.recv() for r, _ in ends]\n"
        "for p in procs:\n    p.join()\n"
        "loss = sum(values) + sum(p.exitcode for p in procs)\n"
    )
    res = nbtune.tune(cell, minimize="loss", n_trials=4, n_jobs=2, backend="loky", store=tmp_path, view=None, seed=0)
    assert res.n_finished == 4 and res.counts() == {"complete": 4}, res.errors()
    assert all(t.value == 2 * t.params["x"] for t in res.study.trials)


def test_warm_workers_follow_the_notebook_to_another_folder(ip, tmp_path, monkeypatch):
    """Worker processes outlive a search; after %cd a cell's relative paths still mean the notebook's folder."""
    cell = 'x = 0.5  # tune: uniform(0, 1)\nopen("here.txt", "a").write("x")\nloss = x'
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    nbtune.tune(cell, minimize="loss", n_trials=4, n_jobs=2, store=str(tmp_path / "s"), view=None)
    monkeypatch.chdir(tmp_path / "b")  # the same warm workers run the next search
    nbtune.tune(cell, minimize="loss", n_trials=4, n_jobs=2, store=str(tmp_path / "s2"), view=None)
    assert len((tmp_path / "a" / "here.txt").read_text()) == 4
    assert len((tmp_path / "b" / "here.txt").read_text()) == 4


def test_a_crashed_worker_is_said_in_a_whole_sentence():
    """joblib's message was cut at 160 characters, mid-sentence (found trying nbtune as a new user)."""
    from nbtune.run.coordinator import _death_reason

    loky = (
        "A worker process managed by the executor was unexpectedly terminated. This could be caused by a "
        "segmentation fault while calling the function or by an excessive memory usage causing the Operating "
        "System to kill the worker.\n\nThe exit codes of the workers are {SIGSEGV(-11)}"
    )
    assert _death_reason(RuntimeError(loky)) == (
        "the worker process crashed (SIGSEGV(-11): a crash in compiled code, such as a segmentation fault)"
    )
    assert _death_reason(RuntimeError(loky.replace("SIGSEGV(-11)", "EXIT(1)"))) == (
        "the worker process died unexpectedly (exit code EXIT(1))"
    )
    assert _death_reason(RuntimeError(loky.replace("SIGSEGV(-11)", "SIGKILL(-9)"))).startswith(
        "the worker process was killed (SIGKILL"
    )


def test_workers_that_keep_dying_end_the_search_with_its_trials_and_the_right_cause(tmp_path):
    """A trial that calls os._exit(1) in every configuration: the search gave up with 'the cell may
    run out of memory' (exit code 1 is no memory kill), and neither -o nor the dashboard got the
    trials it had (found trying nbtune as a new user)."""
    cell = "x = 0.5  # tune: uniform(0, 1)\nimport os, time\ntime.sleep(0.05)\nos._exit(1)\nloss = x\n"
    with pytest.raises(nbtune.TrialsFailedError) as info:
        nbtune.tune(cell, minimize="loss", n_trials=30, n_jobs=2, backend="loky", store=tmp_path / "s", view=None)
    message = str(info.value)
    assert message.startswith("worker processes keep dying (5 restarts; the latest: the worker process died")
    assert "a trial ends its process (os._exit, a library that exits)" in message and "memory" not in message
    res = info.value.result
    assert res is not None and any("WorkerDied" in (t.user_attrs.get(ATTR.ERROR) or "") for t in res.study.trials)
    assert any(m.startswith("a worker died and was replaced") for m in res.messages)


def test_a_worker_that_cannot_reach_the_journal_folder_says_so(tmp_path):
    """Dask workers on a machine without the notebook's folder: a 140-line traceback ending in
    "KeyError: 'Record does not exist.'" (found trying nbtune as a new user)."""
    from nbtune.cell.program import compile_cell
    from nbtune.run.worker import Job
    from nbtune.store.control import FileControl
    from nbtune.store.journal import Store

    program = compile_cell("x = 0.5  # tune: uniform(0, 1)\nloss = x\n", metric="loss", direction="minimize")
    elsewhere = Job(
        program=program, store=Store(tmp_path), study_name="s", control=FileControl(4, tmp_path / "run"), parent_pid=-1
    )
    with pytest.raises(nbtune.ConfigError, match=r"cannot find the study 's' in .*every worker must reach that same"):
        elsewhere.open_study(0)
    here = Job(program=program, store=Store(tmp_path), study_name="s", control=FileControl(4, tmp_path / "run2"))
    with pytest.raises(KeyError):  # the kernel's own process: a missing study is nbtune's bug, not a setup
        here.open_study(0)


def test_a_dask_worker_restarted_by_its_nanny_draws_new_configurations(tmp_path):
    """With --seed, a worker whose process a trial ended (os._exit) was restarted by its nanny on
    a new process, whose sampler drew its predecessor's configurations again: 5 of 12 repeated
    (found trying nbtune as a new user). Only deliberate re-runs (nbtune:rerun_of) repeat one."""
    import collections

    cell = "x = 0.3  # tune: uniform(0, 1)\nimport os, time\ntime.sleep(0.1)\nif x > 0.6:\n    os._exit(1)\nloss = x\n"
    with _dask_client(2):
        res = nbtune.tune(
            cell, minimize="loss", n_trials=12, n_jobs=2, backend="dask", seed=1, store=tmp_path, view=None,
        )  # fmt: skip
    died = [t for t in res.study.trials if "WorkerDied" in (t.user_attrs.get(ATTR.ERROR) or "")]
    assert died, "no worker died: nothing tested"
    drawn = [t.params["x"] for t in res.study.trials if ATTR.RERUN_OF not in t.user_attrs]
    assert [x for x, n in collections.Counter(drawn).items() if n > 1] == []


def test_a_worker_processs_traceback_shows_the_notebook_functions_lines(ip):
    """cloudpickle ships a notebook function's code as '<dynamic-code>': under --jobs 2 a failed
    trial's traceback said 'File "<dynamic-code>", line 3, in train_one_epoch' and no line, where
    --jobs 1 shows the cell and the line (found trying nbtune as a new user)."""
    from IPython.core.error import UsageError

    from nbtune.store.attrs import ATTR

    ip.run_cell("def helper(x):\n    return [x][0]\n\ndef train_one_epoch(x):\n    return helper(x) / len([])\n")
    with pytest.raises(UsageError, match="the first 3 trials of this run all failed with ZeroDivisionError"):
        ip.run_cell_magic(
            "tune",
            "--minimize loss -n 3 --jobs 2 --name tb",
            "x = 0.5  # tune: uniform(0, 1)\nloss = train_one_epoch(x)\n",
        )
    failed = nbtune.load_study("tb").trials
    assert failed
    text = failed[0].user_attrs[ATTR.TRACEBACK]
    assert "<dynamic-code>" not in text and "return helper(x) / len([])" in text, text
