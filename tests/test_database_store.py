"""The database store (--store postgresql://...): a real PostgreSQL server started for the test
session, real worker processes. The store's contract is checked on both kinds of store."""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import time

import optuna
import pytest

import nbtune
from nbtune.exceptions import ConfigError
from nbtune.store.attrs import ATTR, finished_count
from nbtune.store.database import DatabaseStore, masked
from nbtune.store.journal import JournalStore, open_store

CELL = "x = 0.5  # tune: uniform(0, 1)\nimport time\ntime.sleep(0.02)\nloss = (x - 0.3) ** 2\n"


@pytest.fixture(params=["journal", "postgres"])
def store(request, tmp_path):
    """Each kind of store, empty."""
    if request.param == "journal":
        return str(tmp_path / "store")
    url = request.getfixturevalue("postgres_url")
    db = DatabaseStore(url)
    for s in db.storage("").get_all_studies():  # the session's database is shared: start empty
        optuna.delete_study(study_name=s.study_name, storage=db.storage(""))
    return url


def test_a_search_runs_and_resumes_on_either_store(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = nbtune.tune(CELL, minimize="loss", n_trials=6, seed=0, store=store, view=None, name="same")
    assert res.n_finished == 6
    again = nbtune.tune(CELL, minimize="loss", n_trials=9, seed=0, store=store, view=None, name="same")
    assert again.n_finished == 9 and again.study.study_name == "same"
    study = nbtune.load_study("same", store=store)
    assert len(study.trials) == 9 and study.trials[0].user_attrs.get(ATTR.BASELINE)
    assert open_store(store).versions("same") == ["same"]


def test_worker_processes_share_the_exact_budget(store, tmp_path, monkeypatch):
    """Two loky worker processes ask trials from the same database under its advisory lock."""
    monkeypatch.chdir(tmp_path)
    res = nbtune.tune(CELL, minimize="loss", n_trials=16, n_jobs=2, seed=0, store=store, view=None, name="jobs")
    trials = res.study.trials
    assert finished_count(trials) == 16 and len(trials) == 16
    assert len({t.user_attrs[ATTR.OWNER]["pid"] for t in trials}) == 2


def test_a_worker_killed_mid_trial_loses_no_trial_on_either_store(store, tmp_path, monkeypatch):
    """A database store's trials live by leases, which take --lease-grace to expire: when a local
    worker was killed, its trial and the one loky's pool replacement cut stayed RUNNING, and the
    search ended 2 short (found trying nbtune as a new user). The pool's dead processes are known."""
    monkeypatch.chdir(tmp_path)
    flag = tmp_path / "killed-once"
    cell = (
        "x = 0.5  # tune: uniform(0, 1)\nimport os, signal, time\ntime.sleep(0.1)\n"
        f"if not os.path.exists({str(flag)!r}):\n    open({str(flag)!r}, 'w').close()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\nloss = x\n"
    )
    t0 = time.time()
    res = nbtune.tune(
        cell,
        minimize="loss",
        n_trials=8,
        n_jobs=2,
        backend="loky",
        store=store,
        view=None,
        name="kill",
        **({"lease_grace": 180} if "://" in str(store) else {}),  # (a folder store has no leases: refused)
    )
    trials = res.study.trials
    assert not any(t.state.name == "RUNNING" for t in trials), [(t.number, t.state.name) for t in trials]
    assert finished_count(trials) == 8 and sum(t.state.name == "COMPLETE" for t in trials) == 7
    assert time.time() - t0 < 150  # not the lease grace (180 s) of a cut trial (a loaded machine takes 30 s)


def test_stop_reaches_workers_through_the_store(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    st = open_store(store)
    control = st.control("flags", 5)
    assert not control.stop_requested() and control.target() == 5
    # another process (a pickled copy, as a worker gets it) sees what the kernel says
    import pickle

    worker = pickle.loads(pickle.dumps(control))
    control.set_target(8)
    control.stop_now()
    assert worker.target() == 8 and worker.stop_requested() and worker.stop_now_requested()
    worker.register_worker(3)
    assert control.worker_pids()
    control.cleanup()
    assert not pickle.loads(pickle.dumps(control)).stop_requested()
    # a killed kernel's rows are swept when the next run starts on this machine (they stayed for good)
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = st.control("flags", 5)
    dead._put("owner", f"{socket.gethostname()} {int(gone.stdout)}")
    live = st.control("flags", 5)
    st.control("flags", 5)
    assert dead._get("target") is None and live._get("target") == "5"


def test_the_lock_is_exclusive_across_connections(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    st = open_store(store)
    order: list[str] = []

    def other() -> None:
        with st.lock("locked"):
            order.append("other")

    with st.lock("locked"):
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.3)
        order.append("first")
    t.join(10)
    assert order == ["first", "other"]


def test_the_password_is_never_shown(postgres_url):
    url = postgres_url.replace("postgres@", "postgres:s3cret@", 1)
    store = DatabaseStore(url)
    assert "s3cret" not in repr(store) and "s3cret" not in store.where() and ":***@" in store.where()
    assert masked("postgresql://u:p@h/db") == "postgresql://u:***@h/db"
    assert masked("postgresql://u:p@h/db", "failed: password=p host=h") == "failed: password=*** host=h"
    # a password written raw with an '@' of its own (found trying nbtune as a new user)
    raw = "postgresql://tuner:p@ss:w0rd@127.0.0.1:5499/studies"
    assert masked(raw) == "postgresql://tuner:***@127.0.0.1:5499/studies"
    assert "w0rd" not in masked(raw, f"cannot open {raw}: invalid literal for int()")
    with pytest.raises(ConfigError) as e:
        nbtune.tune(CELL, minimize="loss", n_trials=1, store="postgresql://u:s3cret@/nope?host=/nonexistent", view=None)
    assert "s3cret" not in str(e.value) and "cannot open the store postgresql://u:***@" in str(e.value)


def _as_role(url, role, grants):
    """``url`` as a new login ``role`` given ``grants`` (SQL) in the session's database."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as db:
        if db.execute(sqlalchemy.text(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'")).first():
            db.execute(sqlalchemy.text(f"DROP OWNED BY {role}"))
            db.execute(sqlalchemy.text(f"DROP ROLE {role}"))
        db.execute(sqlalchemy.text(f"CREATE ROLE {role} LOGIN"))
        for grant in grants:
            db.execute(sqlalchemy.text(grant.format(role=role)))
    engine.dispose()
    user = url.split("://", 1)[1].split("@", 1)[0]
    return url.replace(f"://{user}@", f"://{role}@", 1)


def test_a_user_without_rights_is_told_so_not_that_the_server_is_down(postgres_url, tmp_path, monkeypatch):
    """A user that may connect but not use the tables, or only read them, was told of a commit
    that failed 'e.g. exceeding max length', or that the database could not be reached (found
    trying nbtune as a new user): the driver's words, and what to grant."""
    monkeypatch.chdir(tmp_path)
    nbtune.tune(CELL, minimize="loss", n_trials=2, store=postgres_url, name="rights", view=None)
    guest = _as_role(postgres_url, "nbtune_guest", [])
    with pytest.raises(
        ConfigError, match="permission denied for table version_info; the database user may not use Optuna's"
    ):
        nbtune.load_study("rights", store=guest)
    reader = _as_role(postgres_url, "nbtune_reader", ["GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"])
    assert len(nbtune.load_study("rights", store=reader).trials) == 2  # it may view the study
    for jobs in (1, 2):  # in worker processes too (the driver's words were lost on the way back)
        with pytest.raises(nbtune.exceptions.StoreError, match=r"refused a write \(permission denied for"):
            nbtune.tune(CELL, minimize="loss", n_trials=4, n_jobs=jobs, store=reader, name="rights", view=None)
    assert len(nbtune.load_study("rights", store=postgres_url).trials) == 2  # nothing lost


def test_a_missing_driver_is_named_with_what_to_install():
    """postgresql+psycopg2:// was told to install psycopg; and a cluster's worker that lacks the
    driver (while the kernel has it) must know it is meant (found trying nbtune as a new user)."""
    pytest.importorskip("sqlalchemy")
    if importlib.util.find_spec("pg8000") is not None:
        pytest.skip("pg8000 is installed")
    with pytest.raises(
        ConfigError,
        match=r"needs the database driver pg8000 in .*'s process \d+: .*; pip install pg8000 \(the kernel and every worker",
    ):
        DatabaseStore("postgresql+pg8000://u@localhost/db").storage("x")


def test_unsupported_databases_are_one_clear_line():
    with pytest.raises(ConfigError, match="nbtune stores studies in PostgreSQL .* 'mysql' is neither"):
        nbtune.tune(CELL, minimize="loss", n_trials=1, store="mysql://u@h/db", view=None)


def test_a_folder_is_a_journal_store(tmp_path):
    assert isinstance(open_store(str(tmp_path / "s")), JournalStore)


def test_checkpoints_and_pause_and_promote_with_a_database_store(postgres_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cell = """\
lr = 0.1  # tune: loguniform(1e-3, 1.0)
model = {"w": 0.0}  # tune: state
for epoch in range(9):  # tune: epochs
    model["w"] += lr
    score = -abs(model["w"] - 1.0)
"""
    res = nbtune.tune(cell, maximize="score", n_trials=12, n_jobs=2, seed=0, store=postgres_url, view=None, name="ckpt")
    assert "pause-and-promote" in res.scheduler and finished_count(res.study.trials) == 12
    best = res.best_state()["model"]
    assert best["w"] == pytest.approx(9 * res.best_params["lr"])  # every epoch, across its pauses
    assert (tmp_path / ".nbtune" / "artifacts").is_dir()
    assert any(str(tmp_path / ".nbtune" / "artifacts") in m for m in res.messages)


def test_the_environment_names_the_default_store(postgres_url, tmp_path, monkeypatch):
    """NBTUNE_STORE holds the URL (and so any password) outside the notebook."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBTUNE_STORE", postgres_url)
    res = nbtune.tune(CELL, minimize="loss", n_trials=2, seed=0, view=None, name="fromenv")
    assert isinstance(open_store(None), DatabaseStore)
    assert "fromenv" in DatabaseStore(postgres_url).study_names() and res.n_finished == 2
    assert not (tmp_path / ".nbtune").exists() or not list((tmp_path / ".nbtune").glob("*.journal"))


SLOW = "x = 0.5  # tune: uniform(0, 1)\nimport time\nfor e in range(40):  # tune: epochs\n    time.sleep(0.05)\n    loss = (x - 0.3) ** 2 + 1 / (e + 1)\n"


def _cut_search_in_another_process(url: str, name: str, finished: int) -> None:
    """A search of study ``name`` in another process (another machine, as far as leases go),
    killed with SIGKILL in the middle of a trial once ``finished`` trials finished (however long
    the process took to start on a busy machine)."""
    import subprocess
    import sys

    script = (
        "import nbtune\n"
        f"nbtune.tune({SLOW!r}, minimize='loss', n_trials=50, seed=0, store={url!r}, name={name!r}, "
        "view=None, heartbeat=0.3, scheduler='none')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    storage = optuna.storages.RDBStorage(url)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        except KeyError:  # not created yet
            continue
        running = [t for t in trials if t.state.name == "RUNNING"]
        if finished_count(trials) >= finished and running and (running[0].last_step or 0) >= 5:
            break
    proc.kill()
    proc.wait()


def test_a_dead_workers_trial_is_requeued_when_its_lease_expires(postgres_url, tmp_path, monkeypatch):
    """No /proc across machines: the trial of a killed process is found by its expired lease, while
    this search runs, and its configuration runs again; the count stays exact."""
    monkeypatch.chdir(tmp_path)
    _cut_search_in_another_process(postgres_url, "leased", finished=2)
    before = nbtune.load_study("leased", store=postgres_url)
    running = [t for t in before.trials if t.state.name == "RUNNING"]
    assert len(running) == 1, [t.state.name for t in before.trials]
    done = finished_count(before.trials)
    res = nbtune.tune(
        SLOW, minimize="loss", n_trials=done + 3, seed=0, store=postgres_url, name="leased", view=None,
        heartbeat=0.3, lease_grace=1.5, scheduler="none",
    )  # fmt: skip
    trials = res.study.trials
    cut = next(t for t in trials if t.number == running[0].number)
    assert cut.state.name == "FAIL" and ATTR.INTERRUPTED in cut.user_attrs
    rerun = [t for t in trials if t.user_attrs.get(ATTR.RERUN_OF) == cut.number]
    assert len(rerun) == 1 and rerun[0].state.name == "COMPLETE" and rerun[0].params == cut.params
    assert finished_count(trials) == done + 3 and not any(t.state.name == "RUNNING" for t in trials)


@contextlib.contextmanager
def _dask_cluster(tmp_path):
    """`dask scheduler` and two `dask worker` processes, each worker in its own folder; yields
    (client, worker processes)."""
    import os
    import subprocess
    import sys

    distributed = pytest.importorskip("distributed")
    bindir = os.path.dirname(sys.executable)
    sched = tmp_path / "scheduler.json"
    procs = [
        subprocess.Popen(
            [f"{bindir}/dask", "scheduler", "--scheduler-file", str(sched), "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", ":0", "--no-show"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    try:
        for _ in range(30):
            if sched.exists():
                break
            time.sleep(0.5)
        for i in range(2):
            folder = tmp_path / f"worker{i}"
            folder.mkdir()
            procs.append(
                subprocess.Popen(
                    [f"{bindir}/dask", "worker", "--scheduler-file", str(sched), "--nthreads", "1", "--no-nanny",
                     "--local-directory", str(folder), "--dashboard-address", ":0"],
                    cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        with distributed.Client(scheduler_file=str(sched), timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            yield client, procs[1:]
    finally:
        for p in procs[::-1]:
            p.kill()
            p.wait()


def test_stop_from_the_notebook_reaches_the_cluster_through_the_database(postgres_url, tmp_path, monkeypatch):
    """The Stop button writes the run's stop flag in the store: workers on the cluster see it and
    start no new trial; the search ends early, saying so."""
    from sqlalchemy import text

    monkeypatch.chdir(tmp_path)
    with _dask_cluster(tmp_path):
        results = []
        search = threading.Thread(
            target=lambda: results.append(
                nbtune.tune(
                    SLOW, minimize="loss", n_trials=40, n_jobs=2, seed=0, backend="dask", store=postgres_url,
                    name="stopped", view=None, scheduler="none",
                )
            )
        )  # fmt: skip
        search.start()
        db = DatabaseStore(postgres_url)
        for _ in range(300):  # until two trials finished
            time.sleep(0.2)
            if (
                "stopped" in db.study_names()
                and finished_count(nbtune.load_study("stopped", store=postgres_url).trials) >= 2
            ):
                break
        with db.engine().begin() as conn:  # what the dashboard's Stop writes, through the store
            run = conn.execute(text("SELECT run FROM nbtune_control WHERE run LIKE 'stopped-%' LIMIT 1")).scalar()
            conn.execute(text("INSERT INTO nbtune_control (run, key, value) VALUES (:r, 'stop', 'stop')"), {"r": run})
        search.join(120)
    assert not search.is_alive() and results
    res = results[0]
    assert 2 <= res.n_finished < 40 and not any(t.state.name == "RUNNING" for t in res.study.trials)
    assert any("stopped by the user" in m for m in res.messages), res.messages


def _kill_mid_trial(url: str, name: str, victim: int, after_epochs: int) -> threading.Thread:
    """A thread that SIGKILLs worker process ``victim`` once it runs a trial of study ``name`` past
    ``after_epochs`` epochs (as the OOM killer or a lost machine would)."""
    import os
    import signal

    db = DatabaseStore(url)

    def watch() -> None:
        for _ in range(300):
            time.sleep(0.2)
            study = nbtune.load_study(name, store=url) if name in db.study_names() else None
            if any(
                t.state.name == "RUNNING" and t.user_attrs.get(ATTR.OWNER, {}).get("pid") == victim
                and len(t.intermediate_values) >= after_epochs
                for t in (study.trials if study else [])
            ):  # fmt: skip
                os.kill(victim, signal.SIGKILL)
                return

    killer = threading.Thread(target=watch, daemon=True)
    killer.start()
    return killer


def test_a_dask_cluster_of_separate_processes_with_no_shared_folder(postgres_url, tmp_path, monkeypatch):
    """`dask scheduler` and two `dask worker` processes, each in its own folder; the store is the
    database. One worker is killed mid-trial: its trial comes back through its lease."""
    import os

    monkeypatch.chdir(tmp_path)
    with _dask_cluster(tmp_path) as (_client, workers):
        victim = workers[0].pid
        killer = _kill_mid_trial(postgres_url, "cluster", victim, after_epochs=3)
        res = nbtune.tune(
            SLOW, minimize="loss", n_trials=8, n_jobs=2, seed=0, backend="dask", store=postgres_url,
            name="cluster", view=None, heartbeat=0.3, lease_grace=1.5, scheduler="none",
        )  # fmt: skip
        killer.join()
    trials = res.study.trials
    assert finished_count(trials) == 8 and not any(t.state.name == "RUNNING" for t in trials)
    owners = {t.user_attrs[ATTR.OWNER]["pid"] for t in trials}
    assert os.getpid() not in owners and victim in owners  # the workers ran the trials, not the kernel
    cut = [t for t in trials if ATTR.INTERRUPTED in t.user_attrs]
    assert cut and all(any(r.user_attrs.get(ATTR.RERUN_OF) == c.number for r in trials) for c in cut)
    assert not list(tmp_path.glob("worker*/.nbtune")) and not (tmp_path / ".nbtune").exists()


def test_two_notebooks_on_one_database_never_share_a_study_by_accident(postgres_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = nbtune.tune(CELL, minimize="loss", n_trials=2, store=postgres_url, view=None,
                        user_ns={"__session__": "/work/a/analysis.ipynb"})  # fmt: skip
    second = nbtune.tune(CELL, minimize="loss", n_trials=2, store=postgres_url, view=None,
                         user_ns={"__session__": "/work/b/other.ipynb"})  # fmt: skip
    import getpass

    user = getpass.getuser()
    assert first.study.study_name.startswith(f"{user}.analysis.loss-")
    assert second.study.study_name.startswith(f"{user}.other.loss-")
    assert len(first.study.trials) == len(second.study.trials) == 2
    # a folder store belongs to one notebook: no prefix
    assert nbtune.tune(
        CELL, minimize="loss", n_trials=1, store=str(tmp_path / "s"), view=None
    ).study.study_name.startswith("loss-")


def test_postgres_scheme_as_hosting_services_write_it():
    assert DatabaseStore("postgres://u@h/db").url == "postgresql+psycopg://u@h/db"


def test_after_a_kernel_restart_the_cell_resumes_on_the_cluster(postgres_url, tmp_path, monkeypatch):
    """The kernel dies mid-search (SIGKILL) while the cluster runs its trials: the workers see
    its beats stop and start no more trials, and the restarted kernel's run of the same cell
    continues the study to exactly --trials, keeping every trial finished before."""
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    with _dask_cluster(tmp_path):
        sched = tmp_path / "scheduler.json"
        kernel = subprocess.Popen(
            [sys.executable, "-c",
             "import distributed, nbtune\n"
             f"client = distributed.Client(scheduler_file={str(sched)!r})\n"
             f"nbtune.tune({SLOW!r}, minimize='loss', n_trials=10, n_jobs=2, seed=0, backend='dask', "
             f"store={postgres_url!r}, name='restart', view=None, heartbeat=0.3, lease_grace=1.5, "
             "scheduler='none')\n"],
            cwd=tmp_path,
        )  # fmt: skip
        db = DatabaseStore(postgres_url)
        before: set[int] = set()
        for _ in range(300):
            time.sleep(0.2)
            if "restart" in db.study_names():
                trials = nbtune.load_study("restart", store=postgres_url).trials
                before = {t.number for t in trials if t.state.name == "COMPLETE"}
                if len(before) >= 3:
                    break
        kernel.kill()
        kernel.wait()
        assert len(before) >= 3
        time.sleep(4)  # the workers notice (1.5 s without a beat), finish the trial they run, and stop
        settled = finished_count(nbtune.load_study("restart", store=postgres_url).trials)
        time.sleep(2)
        orphaned = nbtune.load_study("restart", store=postgres_url).trials
        assert finished_count(orphaned) == settled < 10  # nobody runs trials for the dead kernel
        res = nbtune.tune(
            SLOW, minimize="loss", n_trials=10, n_jobs=2, seed=0, backend="dask", store=postgres_url,
            name="restart", view=None, heartbeat=0.3, lease_grace=1.5, scheduler="none",
        )  # fmt: skip
    trials = res.study.trials
    assert finished_count(trials) == 10 and not any(t.state.name == "RUNNING" for t in trials)
    assert before <= {t.number for t in trials if t.state.name == "COMPLETE"}  # nothing finished was lost


class _Counted:
    """A large array that writes a line to ``log`` each time a process unpickles it."""

    def __init__(self, size: int, log: str) -> None:
        import numpy as np

        self.data, self.log = np.ones(size), log

    def __reduce__(self):  # cloudpickle sends the function by value: workers need no import
        def arrive(data, log):
            import types

            with open(log, "a") as f:
                f.write("x\n")
            return types.SimpleNamespace(data=data)

        arrive.__module__ = "__main__"
        return arrive, (self.data, self.log)


def test_notebook_data_reaches_each_cluster_worker_once_per_run_not_per_trial(postgres_url, tmp_path, monkeypatch):
    """A 40 MB array the cell reads is sent with each worker's task: 2 copies for 12 trials."""
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "arrivals.log"
    cell = "x = 0.5  # tune: uniform(0, 1)\nloss = (x - 0.3) ** 2 + float(DATA.data[:1].sum()) * 0\n"
    with _dask_cluster(tmp_path), pytest.warns(UserWarning, match="large graph"):  # dask says it, rightly
        res = nbtune.tune(
            cell, minimize="loss", n_trials=12, n_jobs=2, seed=0, backend="dask", store=postgres_url,
            name="data-once", view=None, user_ns={"DATA": _Counted(5_000_000, str(log))},
        )  # fmt: skip
    assert finished_count(res.study.trials) == 12
    # once per worker task (2), not once per trial (12); on a busy machine one worker may run
    # every trial before the other's task starts, so which ran trials is not asserted
    owners = {t.user_attrs[ATTR.OWNER]["pid"] for t in res.study.trials}
    arrivals = log.read_text().count("x")
    assert 1 <= len(owners) <= 2 and 1 <= arrivals <= 2, arrivals


@pytest.fixture
def s3(monkeypatch):
    """A real S3 API (moto's server, on a port of localhost only) with a bucket; boto3 everywhere,
    workers included, finds it through the environment, as it would find AWS or MinIO."""
    import socket

    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket="nbtune-test")
    yield client
    server.stop()


STATEFUL = """\
x = 0.5  # tune: uniform(0, 1)
import time
model = {"epochs": 0}  # tune: state
for e in range(30):  # tune: epochs
    time.sleep(0.05)
    model["epochs"] += 1
    loss = (x - 0.3) ** 2 + 1 / (e + 1)
"""


def test_checkpoints_in_an_object_store_resume_a_cut_trial_on_another_machine(postgres_url, s3, tmp_path, monkeypatch):
    """No shared folder at all: the store is the database, the checkpoints are in S3. A worker is
    SIGKILLed mid-trial; its trial comes back through its lease and the other worker continues it
    from its last checkpoint, read from S3. The best model is read back from S3 too."""
    monkeypatch.chdir(tmp_path)
    with _dask_cluster(tmp_path) as (_client, workers):
        victim = workers[0].pid
        killer = _kill_mid_trial(postgres_url, "s3ckpt", victim, after_epochs=8)
        res = nbtune.tune(
            STATEFUL, minimize="loss", n_trials=4, n_jobs=2, seed=0, backend="dask", store=postgres_url,
            artifacts="s3://nbtune-test/project-a", name="s3ckpt", view=None, heartbeat=0.3, lease_grace=1.5,
            scheduler="none",
        )  # fmt: skip
        killer.join()
    trials = res.study.trials
    assert finished_count(trials) == 4 and not any(t.state.name == "RUNNING" for t in trials)
    resumed = [t for t in trials if ATTR.RERUN_OF in t.user_attrs and t.user_attrs.get(ATTR.RESUME, {}).get("step")]
    assert resumed, [(t.number, t.user_attrs) for t in trials]  # continued from a checkpoint, not from scratch
    assert res.best_state()["model"]["epochs"] == 30  # every epoch, across the cut, read back from S3
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="nbtune-test").get("Contents", [])]
    assert keys and all(k.startswith("project-a/") for k in keys)
    assert not list(tmp_path.rglob("artifacts"))  # nothing on any local disk
    assert any("s3://nbtune-test/project-a" in m for m in res.messages)


def test_an_object_store_url_without_its_package_or_bucket_is_one_clear_line(tmp_path, monkeypatch):
    from nbtune.store.artifacts import open_artifact_store

    with pytest.raises(ConfigError, match="name the bucket"):
        open_artifact_store("s3:///prefix")
    monkeypatch.setitem(__import__("sys").modules, "boto3", None)
    with pytest.raises(ConfigError, match=r"pip install 'nbtune\[s3\]'"):
        open_artifact_store("s3://bucket/prefix")
