"""The database store (--store postgresql://...): a real PostgreSQL server started for the test
session, real worker processes. The store's contract is checked on both kinds of store."""

from __future__ import annotations

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
    with pytest.raises(ConfigError) as e:
        nbtune.tune(CELL, minimize="loss", n_trials=1, store="postgresql://u:s3cret@/nope?host=/nonexistent", view=None)
    assert "s3cret" not in str(e.value) and "cannot open the store postgresql://u:***@" in str(e.value)


def test_unsupported_databases_are_one_clear_line():
    with pytest.raises(ConfigError, match="nbtune stores studies in PostgreSQL .* not 'mysql'"):
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
