"""The notebook-local store: location, versions, torn writes, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import threading

import optuna
import pandas as pd
import pytest

import nbtune
from nbtune.store.attrs import ATTR, finished_count
from nbtune.store.journal import Store, default_store_dir

CELL = "x = 0.5  # tune: uniform(0, 1)\nloss = (x - 0.2) ** 2\n"


def test_store_beside_the_notebook(tmp_path, monkeypatch):
    nb = tmp_path / "proj" / "train.ipynb"
    nb.parent.mkdir()
    nb.write_text("{}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))
    assert default_store_dir({}) == nb.parent / ".nbtune"
    monkeypatch.delenv("JPY_SESSION_NAME")
    assert default_store_dir({"__vsc_ipynb_file__": str(nb)}) == nb.parent / ".nbtune"
    assert default_store_dir({"__session__": str(nb)}) == nb.parent / ".nbtune"
    assert default_store_dir({}) == tmp_path / ".nbtune"


def test_magic_uses_the_notebook_folder(ip, tmp_path, monkeypatch):
    nb = tmp_path / "nbdir" / "a.ipynb"
    nb.parent.mkdir()
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))
    res = ip.run_cell_magic("tune", "--trials 2 --minimize loss", CELL)
    journal = nb.parent / ".nbtune" / f"{res.study.study_name}.journal"
    assert journal.exists()
    # the summary says where its trials are kept, as does the result read back (it was said nowhere)
    assert res.summary().splitlines()[-1] == f"kept in {journal}", res.summary()
    assert f"kept in <code>{journal}</code>" in res.html()
    assert nbtune.load_result(res.study.study_name, store=journal.parent).summary().endswith(f"kept in {journal}")


def test_torn_last_line_is_tolerated(tmp_path):
    res = nbtune.tune(CELL, minimize="loss", n_trials=4, store=tmp_path, view=None)
    journal = tmp_path / f"{res.study.study_name}.journal"
    with open(journal, "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "x", "trial_id": 3, "sta')  # a crash mid-write
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name=res.study.study_name, storage=JournalStorage(JournalFileBackend(str(journal))))
    assert finished_count(study.trials) == 4


SLOW_CELL = "x = 0.5  # tune: uniform(0, 1)\nimport time\ntime.sleep(0.2)\nloss = (x - 0.2) ** 2\n"


def _writer(store, seed):
    nbtune.tune(SLOW_CELL, minimize="loss", n_trials=16, store=store, seed=seed, view=None, name="shared")


def test_two_kernels_write_one_study(tmp_path):
    # two independent processes (as two kernels would) continue the same study
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s)) for s in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    study = nbtune.load_study("shared", store=tmp_path)
    assert finished_count(study.trials) == 16  # the budget is shared, not doubled
    assert len({t.user_attrs["nbtune:owner"]["pid"] for t in study.trials}) == 2


def test_load_study_errors_list_what_is_there(tmp_path):
    nbtune.tune(CELL, minimize="loss", n_trials=2, store=tmp_path, view=None, name="one")
    nbtune.tune(CELL, minimize="loss", n_trials=2, store=tmp_path, view=None, name="two")
    with pytest.raises(KeyError, match="no study 'three' .* the store holds \\['one', 'two'\\]"):
        nbtune.load_study("three", store=tmp_path)
    with pytest.raises(KeyError, match="holds 2 studies") as info:
        nbtune.load_result(store=tmp_path)
    # a KeyError that reads as written (a plain one printed its message quoted, as a key: found trying nbtune)
    assert isinstance(info.value, nbtune.StudyNotFound) and str(info.value).startswith("the store ")
    assert Store(tmp_path).versions("one") == ["one"]


def test_tune_show_looks_back(ip, tmp_path):
    res = ip.run_cell_magic("tune", f"--trials 3 --minimize loss --store {tmp_path} --name looked", CELL)
    # its value too: 'res = %tune_show NAME' (it was None, found trying nbtune as a new user)
    assert ip.run_line_magic("tune_show", f"looked --store {tmp_path} -o shown") is ip.user_ns["shown"]
    shown = ip.user_ns["shown"]
    assert shown.study.study_name == "looked" and shown.best_value == res.best_value
    assert "3 trials finished" in repr(shown)
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="no study 'nope'"):
        ip.run_line_magic("tune_show", f"nope --store {tmp_path}")
    with pytest.raises(UsageError, match="holds no study yet: run a %%tune cell"):
        ip.run_line_magic("tune_show", f"--store {tmp_path}/empty")
    assert (
        ip.run_line_magic("tune_show", f"looked --store {tmp_path} --view none -o quiet").best_value == res.best_value
    )
    assert ip.user_ns["quiet"].best_value == res.best_value


def test_what_a_store_holds_is_one_table_with_what_changed_between_versions(ip, tmp_path, capsys):
    """For a report: which studies and versions there are, and why a version was made, which
    '%tune_show NAME' said only by number (found trying nbtune as a new user)."""
    ip.run_cell("X = [1, 2]")
    for body in ("loss = x\n", "loss = x + 1\n", "loss = x + len(X)\n"):
        ip.run_cell_magic(
            "tune",
            f"-n 3 --minimize loss --name a --seed 0 --store {tmp_path}",
            "x = 0.5  # tune: uniform(0, 1)\n" + body,
        )
    ip.run_cell("X = [1, 2, 3]")
    ip.run_cell_magic(
        "tune",
        f"-n 3 --minimize loss --name a --seed 0 --store {tmp_path}",
        "x = 0.5  # tune: uniform(0, 1)\nloss = x + len(X)\n",
    )
    res = ip.run_cell_magic(
        "tune",
        f"-n 2 --maximize acc --name b --seed 0 --store {tmp_path} --revalidate 1 --seeds 2",
        "seed = 0  # tune: seed\ny = 0.5  # tune: uniform(0, 1)\nacc = y + seed / 1000\n",
    )
    # the same cell again, --fresh (it said '--fresh, or settings not recorded': found trying nbtune)
    ip.run_cell_magic(
        "tune",
        f"-n 3 --minimize loss --name a --seed 0 --store {tmp_path} --fresh",
        "x = 0.5  # tune: uniform(0, 1)\nloss = x + len(X)\n",
    )
    df = nbtune.studies(tmp_path)
    assert list(df.index) == ["a", "a:v2", "a:v3", "a:v4", "a:v5", "b"]
    assert list(df.changed) == [
        None,
        "the cell's code changed",
        "the cell's code changed",
        "the notebook data it reads changed: X",
        "--fresh",
        None,
    ]
    assert list(df.version) == [1, 2, 3, 4, 5, 1] and (df.metric[:5] == "loss").all() and df.direction.b == "maximize"
    assert (df.finished == [3, 3, 3, 3, 3, 2]).all() and df.best_value.b == res.best_value
    with_checks = nbtune.studies(tmp_path, checks=True)
    assert "b@check" in with_checks.index and pd.isna(with_checks.best_value["b@check"])  # seeds, not a result
    # opened itself, a check study says what it is (its "best" was one lucky seed's)
    ip.run_line_magic("tune_show", f"b@check --store {tmp_path} --view none -o checks")
    assert ip.user_ns["checks"].messages[0].startswith("'b@check' holds the checks of 'b': re-validation runs")
    # %tune_show without a name, over a store of several: the table, not an error
    capsys.readouterr()
    assert ip.run_line_magic("tune_show", f"--store {tmp_path}") is None
    assert "%tune_show NAME opens one" in capsys.readouterr().out


def test_the_store_table_counts_complete_trials_as_the_summary_does(ip, tmp_path):
    """With guardrails, 'complete' had counted only the trials that meet them (6 where the summary said
    '14 complete, 8 of them breaking a guardrail'), and a tightened bound read as 'its search space or
    settings' where the run itself had named it (found trying nbtune as a new user)."""
    cell = "x = 0.5  # tune: uniform(0, 1)\nlat = 10 * x\nacc = x\n"
    for bound in (8, 5):
        res = ip.run_cell_magic(
            "tune",
            f"-n 6 --maximize acc --name g --seed 0 --sampler random --store {tmp_path} --subject-to 'lat <= {bound}'",
            cell,
        )
    complete = sum(t.state.name == "COMPLETE" for t in res.study.trials)
    feasible = sum(t.state.name == "COMPLETE" and t.params["x"] * 10 <= 5 for t in res.study.trials)
    assert 0 < feasible < complete == 6
    df = nbtune.studies(tmp_path)
    assert list(df.index) == ["g", "g:v2"] and df.complete["g:v2"] == 6 and df.feasible["g:v2"] == feasible
    assert df.changed["g:v2"] == "guardrails ['lat <= 8'] -> ['lat <= 5']", df.changed["g:v2"]
    assert df.best_value["g:v2"] == res.best_value
    plain = ip.run_cell_magic("tune", f"-n 2 --maximize acc --name p --store {tmp_path}", cell)
    assert plain.n_finished == 2 and pd.isna(nbtune.studies(tmp_path).feasible["p"])
    # the summary names the guardrail, also when every complete trial meets it (it said nothing then)
    assert f"{complete - feasible} of them breaking 'lat <= 5'" in res.summary()
    met = ip.run_cell_magic("tune", f"-n 3 --maximize acc --name m --store {tmp_path} --subject-to 'lat <= 20'", cell)
    assert "3 complete, all meeting 'lat <= 20'" in met.summary(), met.summary()


def test_compare_puts_studies_of_one_metric_side_by_side(tmp_path):
    """A sweep tool's comparison (found missing trying nbtune as a new user coming from W&B Sweeps): one
    row per study and their best so far on one figure, by trial and by epochs trained."""
    cell = "x = 0.5  # tune: uniform(0, 1)\nfor epoch in range(3):  # tune: epochs\n    loss = (x - 0.3) ** 2 + 1 / (epoch + 1)\n"
    nbtune.tune(cell, minimize="loss", n_trials=6, store=tmp_path, view=None, name="m", seed=0)
    nbtune.tune(cell, minimize="loss", n_trials=6, store=tmp_path, view=None, name="m", seed=1, fresh=True)
    nbtune.tune(
        cell, minimize="loss", n_trials=5, store=tmp_path, view=None, name="r", sampler="random", seed=0, note="random"
    )
    versions = nbtune.compare("m", store=tmp_path)
    assert list(versions.frame.index) == ["m", "m:v2"]
    both = nbtune.compare("m", "r", store=tmp_path)  # (a name alone: its latest version, said)
    frame = both.frame
    assert list(frame.index) == ["m:v2", "r"] and list(frame.finished) == [6, 5]
    assert both.notes == ["'m' is its latest version, 'm:v2' ('m:v1' is the first)"]
    # NAME:v1 is the first version (it was refused), and a study given twice is said (found trying nbtune)
    first = nbtune.compare("m:v1", "m:v2", "m", store=tmp_path)
    assert list(first.frame.index) == ["m", "m:v2"] and first.notes[-1] == "'m:v2' given twice: shown once"
    assert frame.loc["r", "sampler"] == "random" and frame.epochs.gt(0).all()
    # --note: what a sweep is for, with it in both tables (a tracker's habit: found trying nbtune as a new user)
    assert frame.loc["r", "note"] == "random" and frame.loc["m:v2", "note"] is None
    assert nbtune.studies(tmp_path).note.to_dict() == {"m": None, "m:v2": None, "r": "random"}
    for name, study in zip(frame.index, both.studies, strict=True):
        assert (
            frame.loc[name, "best_value"] == study.best_value
            and frame.loc[name, "best_trial"] == study.best_trial.number
        )
    fig = both.figure()
    assert [ax.get_xlabel() for ax in fig.axes][1] == "epochs trained (all trials)"
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["m:v2", "r"]
    bundle = both._repr_mimebundle_()
    assert "<table" in bundle["text/html"] and "data:image/png;base64," in bundle["text/html"]
    nbtune.tune(
        "x = 0.5  # tune: uniform(0, 1)\nacc = x\n", maximize="acc", n_trials=2, store=tmp_path, view=None, name="a"
    )
    with pytest.raises(ValueError, match="compares studies of one metric, in one direction: 'm:v2' minimizes loss"):
        nbtune.compare("m:v2", "a", store=tmp_path)
    with pytest.raises(nbtune.StudyNotFound, match="no study 'zz'"):
        nbtune.compare("zz", store=tmp_path)
    # another space, and a study whose runs used two samplers, are said
    wider = cell.replace("uniform(0, 1)", "uniform(0, 2)")
    nbtune.tune(wider, minimize="loss", n_trials=3, store=tmp_path, view=None, name="w", sampler="random")
    nbtune.tune(wider, minimize="loss", n_trials=5, store=tmp_path, view=None, name="w")
    mixed = nbtune.compare("r", "w", store=tmp_path)
    assert mixed.frame.loc["w", "sampler"] == "random, tpe"
    assert mixed.notes == ["'w' searched another space than 'r': x uniform(0, 1) -> uniform(0, 2)"], mixed.notes
    assert "searched another space than" in mixed._repr_mimebundle_()["text/html"]


def test_versions_stay_reachable(tmp_path):
    nbtune.tune(CELL, minimize="loss", n_trials=2, store=tmp_path, view=None, name="v")
    nbtune.tune(CELL, minimize="loss", n_trials=3, store=tmp_path, view=None, name="v", fresh=True)
    with pytest.warns(
        nbtune.NbtuneWarning, match="'v' has 2 versions .*: opened the latest, 'v:v2'; 'v:v1' opens the first"
    ):
        assert len(nbtune.load_study("v", store=tmp_path).trials) == 3
    assert len(nbtune.load_study("v:v2", store=tmp_path).trials) == 3
    assert len(nbtune.load_study("v:v1", store=tmp_path).trials) == 2
    with pytest.raises(KeyError, match="no version 'v:v7' .* the versions are \\['v', 'v:v2'\\]"):
        nbtune.load_study("v:v7", store=tmp_path)


def test_a_new_studys_records_are_one_append_that_plain_optuna_reads(tmp_path, monkeypatch):
    from optuna.storages.journal import JournalFileBackend

    appends: list[list[dict]] = []
    real = JournalFileBackend.append_logs
    monkeypatch.setattr(JournalFileBackend, "append_logs", lambda self, logs: appends.append(logs) or real(self, logs))
    res = nbtune.tune(CELL, minimize="loss", n_trials=1, store=tmp_path, view=None, name="one")
    settings = [logs for logs in appends if any("user_attr" in log and "study_id" in log for log in logs)]
    settings = [
        logs for logs in settings if not any(ATTR.RUN in str(log.get("user_attr")) for log in logs)
    ]  # (a run's)
    assert len(settings) == 1 and len(settings[0]) == 4  # space, identity, cell, settings: one fsync, not four
    monkeypatch.undo()
    path = next(tmp_path.glob("*.journal"))
    study = optuna.load_study(study_name="one", storage=optuna.storages.JournalStorage(JournalFileBackend(str(path))))
    assert study.user_attrs == res.study.user_attrs
    assert {"nbtune:space", "nbtune:identity", "nbtune:cell", "nbtune:config"} <= set(study.user_attrs)
    assert study.user_attrs["nbtune:config"]["metric"] == "loss"
    assert nbtune.tune(CELL, minimize="loss", n_trials=2, store=tmp_path, view=None, name="one").n_finished == 2


def test_a_cell_with_steps_resumes_its_study(tmp_path):
    """step= is kept in the space's fingerprint; read back from the journal it must still equal the
    cell's, or every re-run would start a new version and train everything again."""
    cell = "bs = 200  # tune: int(50, 600, step=50)\nx = 0.5  # tune: uniform(0, 1, step=0.1)\nloss = x + bs / 1000\n"
    first = nbtune.tune(cell, minimize="loss", n_trials=3, store=tmp_path, view=None, seed=0)
    again = nbtune.tune(cell, minimize="loss", n_trials=3, store=tmp_path, view=None, seed=0)
    assert again.study.study_name == first.study.study_name and len(again.study.trials) == 3
    assert any("nothing to run" in m for m in again.messages)
    more = nbtune.tune(cell, minimize="loss", n_trials=5, store=tmp_path, view=None, seed=0)
    assert more.study.study_name == first.study.study_name and len(more.study.trials) == 5


def test_interrupted_configurations_run_again(tmp_path):
    from nbtune.store.attrs import ATTR

    # what Stop now and Interrupt raise inside a running trial
    cell = (
        "x = 0.5  # tune: uniform(0, 1)\nimport os\nif x != 0.5 and not os.path.exists('flag'):\n"
        "    open('flag', 'w').close()\n    raise __import__('nbtune.cell.program').cell.program.TrialInterrupted()\n"
        "loss = x\n"
    )
    import os

    os.chdir(tmp_path)
    res = nbtune.tune(cell, minimize="loss", n_trials=5, store=tmp_path, view=None, seed=0)
    lost = [t for t in res.study.trials if ATTR.INTERRUPTED in t.user_attrs]
    assert len(lost) == 1 and res.n_finished == 1 and any("interrupted" in m for m in res.messages)
    res = nbtune.tune(cell, minimize="loss", n_trials=5, store=tmp_path, view=None, seed=0)
    again = [t for t in res.study.trials if t.user_attrs.get(ATTR.RERUN_OF) == lost[0].number]
    assert len(again) == 1 and again[0].params == lost[0].params and again[0].state.name == "COMPLETE"
    assert res.n_finished == 5
    assert any(f"interrupted trial(s) [{lost[0].number}]" in m for m in res.messages)


def test_a_reused_pid_does_not_keep_a_dead_trial_running(tmp_path):
    import os

    from nbtune.store.attrs import ATTR

    res = nbtune.tune(CELL, minimize="loss", n_trials=2, store=tmp_path, view=None, name="reuse")
    study = res.study
    # a trial left RUNNING by a process whose pid now belongs to someone else (this process)
    tid = study._storage.create_new_trial(study._study_id)
    study._storage.set_trial_user_attr(
        tid, ATTR.OWNER, {"host": __import__("socket").gethostname(), "pid": os.getppid(), "start": "1"}
    )
    res = nbtune.tune(CELL, minimize="loss", n_trials=4, store=tmp_path, view=None, name="reuse")
    assert res.n_finished == 4
    assert any("left running by a stopped kernel" in m for m in res.messages)


@pytest.mark.parametrize("kind, match", [("file", "is a file, not a folder"), ("proc", "cannot be created")])
def test_an_unusable_store_is_one_clear_line(ip, tmp_path, kind, match):
    from IPython.core.error import UsageError

    store = tmp_path / "a-file" if kind == "file" else "/proc/nbtune-store"
    if kind == "file":
        store.write_text("not a folder")
    with pytest.raises(UsageError, match=match + ".*pass --store"):
        ip.run_cell_magic("tune", f"--trials 2 --minimize loss --store {store}", CELL)


def test_a_configuration_cut_again_is_re_run_once_per_cut(tmp_path):
    """A configuration whose re-run is cut again runs again when the cell runs again (a second Interrupt
    dropped it for good, found retesting Interrupt as a user), once per cut: not again and again in one run."""
    from nbtune.store.attrs import ATTR

    cell = (
        "x = 0.5  # tune: uniform(0, 1)\nif x != 0.5:\n"
        "    raise __import__('nbtune.cell.program').cell.program.TrialInterrupted()\nloss = x\n"
    )
    runs = [nbtune.tune(cell, minimize="loss", n_trials=3, store=tmp_path, view=None, seed=0) for _ in range(3)]
    trials = runs[-1].study.trials
    first_cut = next(t for t in trials if ATTR.INTERRUPTED in t.user_attrs)
    chain = [first_cut.number]
    while True:
        reruns = [t for t in trials if t.user_attrs.get(ATTR.RERUN_OF) == chain[-1]]
        assert len(reruns) <= 1, reruns
        if not reruns:
            break
        assert reruns[0].params == first_cut.params
        chain.append(reruns[0].number)
    assert len(chain) == 3, chain  # cut in the first run, run again (and cut) in each of the two after it


@pytest.mark.parametrize("exc", ["KeyboardInterrupt", "SystemExit(2)"])
def test_the_cells_own_keyboard_interrupt_is_a_failed_trial(tmp_path, exc):
    """Only the kernel's Interrupt interrupts; a KeyboardInterrupt the cell raises is a bug in the cell."""
    # (tune() counts the lines of the cell string from its first: the raise is line 3)
    from nbtune.store.attrs import ATTR

    cell = f"x = 0.5  # tune: uniform(0, 1)\nif x != 0.5:\n    raise {exc}\nloss = x\n"
    res = nbtune.tune(cell, minimize="loss", n_trials=3, store=tmp_path, view=None, seed=0, sampler="random")
    failed = [t for t in res.study.trials if t.state.name == "FAIL"]
    assert failed and not any(ATTR.INTERRUPTED in t.user_attrs for t in res.study.trials)
    assert all(
        exc.split("(")[0] in t.user_attrs[ATTR.ERROR] and "line 3" in t.user_attrs[ATTR.TRACEBACK] for t in failed
    )
    assert not res.interrupted and res.n_finished == 3
    again = nbtune.tune(cell, minimize="loss", n_trials=3, store=tmp_path, view=None, seed=0, sampler="random")
    assert len(again.study.trials) == 3  # nothing re-queued


def test_queued_trials_are_taken_once_in_order_by_every_process(tmp_path):
    """The worker's ask takes a queued (WAITING) trial from the journal it has just read under the
    store's lock, looking only from the first trial that still waited: two storages on one file
    (two processes) take each queued trial once, in order, and new ones queued later too."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from nbtune import _compat

    path = str(tmp_path / "s.journal")
    a = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(path)))
    b = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(path)))

    def ask(study):  # as run_worker does, under the lock: count (reads the journal), then ask
        _compat.journal_trial_count(_compat.storage_of(study), _compat.study_id(study))
        trial = _compat.new_trial_with_attrs(study, {"by": "a" if study is a else "b"}, synced=True)
        return trial.number, trial.suggest_float("x", 0, 10)

    a.enqueue_trial({"x": 1.0})
    a.enqueue_trial({"x": 2.0})
    assert ask(a) == (0, 1.0)
    assert ask(b) == (1, 2.0)  # b has not read the journal since the queue was made
    n, x = ask(a)
    assert n == 2 and x not in (1.0, 2.0)  # nothing queued: a new trial
    b.enqueue_trial({"x": 3.0})  # queued by another process after a looked
    assert ask(a) == (3, 3.0)
    assert ask(b)[0] == 4
    for t in a.get_trials(deepcopy=False):
        assert t.state == optuna.trial.TrialState.RUNNING
    assert [t.user_attrs["by"] for t in a.get_trials(deepcopy=False)] == ["a", "b", "a", "a", "b"]


def _hold_lock(directory: str, name: str, held, release) -> None:
    with Store(directory).lock(name):
        held.set()
        release.wait(30)


def test_the_budget_lock_excludes_other_processes_and_outlives_a_deleted_store(tmp_path):
    import shutil
    import threading

    # (threads of one process: test_database_store.py::test_the_lock_is_exclusive_across_connections)
    store = Store(tmp_path / "s")

    def taken_while_another_process_holds_it() -> bool:
        ctx = mp.get_context("spawn")
        held, release = ctx.Event(), ctx.Event()
        p = ctx.Process(target=_hold_lock, args=(str(tmp_path / "s"), "study", held, release))
        p.start()
        got = threading.Event()

        def take() -> None:
            with store.lock("study"):
                got.set()

        try:
            assert held.wait(60)
            t = threading.Thread(target=take, daemon=True)
            t.start()
            taken = got.wait(0.5)
            release.set()
            t.join(10)
            assert got.is_set()  # and once the other process lets go, it is taken
            return taken
        finally:
            release.set()
            p.join(30)

    assert not taken_while_another_process_holds_it()
    # The store deleted and made again (rm -rf .nbtune between searches): this process's open
    # lock file is the deleted one; a lock on it would not exclude the new file's holders.
    shutil.rmtree(tmp_path / "s")
    (tmp_path / "s").mkdir()
    assert not taken_while_another_process_holds_it()
    assert (tmp_path / "s" / "study.journal.budget").exists()


def test_a_journal_lock_left_by_a_dead_writer_is_released(tmp_path):
    """A worker killed while it wrote left Optuna's journal lock: every writer waited out its 30 s
    grace period when the pool was replaced (found trying nbtune as a new user)."""
    import os
    import time

    store = Store(tmp_path)
    lock = f"{store.journal_path('s')}.lock"
    os.symlink(str(store.journal_path("s")), lock)  # as Optuna's JournalFileSymlinkLock makes it
    store.release_dead_writers_locks("s")
    assert os.path.lexists(lock)  # fresh: a live writer may hold it
    old = time.time() - 10
    os.utime(lock, (old, old), follow_symlinks=False)
    store.release_dead_writers_locks("s")
    assert not os.path.lexists(lock)
    # one a writer killed a moment ago left (loky ends the pool's others when one dies): waited for,
    # when the pool is known dead, until a live writer would have let it go (not Optuna's 30 s)
    os.symlink(str(store.journal_path("s")), lock)
    t0 = time.monotonic()
    store.release_dead_writers_locks("s", older_than=0.5, wait=True)
    assert not os.path.lexists(lock) and 0.4 < time.monotonic() - t0 < 2
    # and one a live writer let go meanwhile, or took again, is not removed
    os.symlink(str(store.journal_path("s")), lock)
    threading.Timer(0.1, lambda: (os.unlink(lock), os.symlink(str(store.journal_path("s")), lock))).start()
    store.release_dead_writers_locks("s", older_than=0.5, wait=True)
    assert os.path.lexists(lock)


def test_a_run_starts_without_waiting_for_a_lock_a_killed_kernel_left(tmp_path, caplog):
    """A kernel killed mid-write left Optuna's journal lock: the next run waited out its 30 s
    grace, printing Optuna's raw 'taking longer than 10.0 seconds' lines (found trying nbtune)."""
    import logging
    import os
    import time

    import nbtune

    cell = "x = 0.5  # tune: uniform(0, 1)\nloss = x\n"
    nbtune.tune(cell, minimize="loss", n_trials=1, store=tmp_path, name="s", view=None)
    lock = f"{Store(tmp_path).journal_path('s')}.lock"
    os.symlink(str(Store(tmp_path).journal_path("s")), lock)
    old = time.time() - 60
    os.utime(lock, (old, old), follow_symlinks=False)
    caplog.set_level(logging.INFO)
    res = nbtune.tune(cell, minimize="loss", n_trials=3, store=tmp_path, name="s", view=None)
    assert res.n_finished == 3 and not os.path.lexists(lock)
    assert not any("taking longer" in r.getMessage() for r in caplog.records)


_SCRIPT = """
import os, sys, nbtune
store = sys.argv[1]
cell = (
    "import os\\nx = 0.5  # tune: uniform(0, 1)\\n"
    "if x < 0.3:\\n    os.chmod(STORE + '/s.journal', 0o444)\\nloss = x\\n"
)
try:
    res = nbtune.tune(
        cell, minimize="loss", n_trials=int(sys.argv[2]), seed=0, store=store, name="s", view=None,
        user_ns={"STORE": store},
    )
    print("OK", res.n_finished)
except Exception as e:
    print(type(e).__name__, e, "|", getattr(e, "result", None) and e.result.n_finished)
"""


def _as_a_user(script, *args):
    """``script`` run as a user whose file permissions hold (root's override dropped, as setpriv does)."""
    import os
    import shutil
    import subprocess
    import sys

    caps = ["--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search", "--"]
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("root without setpriv: permissions cannot be made to hold")
    prefix = ["setpriv", *caps] if os.geteuid() == 0 else []
    out = subprocess.run([*prefix, sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True)
    return out.stdout.strip() or out.stderr


def test_a_store_made_read_only_is_one_line_before_a_trial_or_with_the_trials_so_far_mid_search(tmp_path):
    """A journal made read-only with chmod (not a read-only file system) failed with a PermissionError
    traceback once the search had begun, and -o was left unbound (found trying nbtune as a new user)."""
    store = tmp_path / "st"
    assert _as_a_user(_SCRIPT, store, 1) == "OK 1"  # the baseline
    mid = _as_a_user(_SCRIPT, store, 12)  # a trial makes the journal read-only as the search runs
    assert mid.startswith("StoreError the store could not be written: its permissions do not allow it"), mid
    assert "the finished trials are kept: make it writable (chmod u+w)" in mid, mid
    finished = len(nbtune.load_study("s", store=store).trials) - 1  # (the trial that failed to end)
    assert int(mid.rsplit("| ", 1)[1]) == finished >= 1, mid  # the result of the trials so far
    before = (store / "s.journal").read_bytes()
    again = _as_a_user(_SCRIPT, store, 14)  # said before any trial
    assert again.startswith("ConfigError the store's s.journal") and "is read-only" in again, again
    assert (store / "s.journal").read_bytes() == before


def test_a_store_named_by_its_journal_file_its_project_folder_or_a_dangling_link_is_found_or_said(tmp_path):
    """Found trying nbtune as a new user: the journal's path (what optuna-dashboard takes) read as an
    empty store, a project folder passed for its store said only 'holds no study yet', and a link to
    a folder that does not exist said 'cannot be created (File exists)'."""
    from nbtune.exceptions import NbtuneWarning

    project = tmp_path / "proj"
    cell = "x = 0.5  # tune: uniform(0, 1)\nloss = x\n"
    nbtune.tune(cell, minimize="loss", n_trials=2, store=project / ".nbtune", name="s", view=None)
    assert nbtune.load_result("s", store=project / ".nbtune" / "s.journal").n_finished == 2
    with pytest.raises(
        KeyError, match=r"holds no study yet: .* \(did you mean the store inside it, .*proj/\.nbtune\?\)"
    ):
        nbtune.load_study(store=project)
    with pytest.warns(NbtuneWarning, match=r"holds no study yet \(did you mean the store inside it"):
        assert nbtune.studies(project).empty
    with pytest.raises(KeyError, match=r"no study 's' in .*proj; the store holds \[\] \(did you mean the store inside"):
        nbtune.load_result("s", store=project)  # (and a name given: found retesting)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(nbtune.ConfigError, match=r"is a link to .*gone, which does not exist"):
        nbtune.tune(cell, minimize="loss", n_trials=1, store=link, view=None)
    with pytest.raises(KeyError, match=r"holds \[\] \(it is a link to .*gone, which does not exist\)"):
        nbtune.load_study("s", store=link)  # reading says so too
    with pytest.warns(NbtuneWarning, match=r"holds no study yet \(it is a link to .*gone, which does not exist\)"):
        nbtune.studies(link)
    # a folder with no store at all: said (it read as an empty store; found trying nbtune as a new user)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(
        KeyError, match=r"holds \[\] \(no such folder: run from the notebook's folder, or pass the store\)"
    ):
        nbtune.load_result("s", store=tmp_path / "elsewhere" / ".nbtune")


def test_a_new_store_tells_git_to_commit_its_journals_and_leave_out_working_files(tmp_path):
    """Found trying nbtune as a new user: 'git add -A' after a search committed a run's owner file,
    the budget lock and a repair's side files with the journals."""
    import subprocess

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # fmt: skip
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, env=env)
    cell = "x = 0.5  # tune: uniform(0, 1)\nmodel = [x]  # tune: state\nloss = x\n"
    nbtune.tune(cell, minimize="loss", n_trials=2, store=tmp_path / ".nbtune", name="s", view=None)
    (tmp_path / ".nbtune" / "runs" / "s-1234").mkdir(parents=True, exist_ok=True)
    (tmp_path / ".nbtune" / "s.journal.damaged-20261201-000000").write_text("x")
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True, env=env)
    staged = subprocess.run(["git", "diff", "--cached", "--name-only"], cwd=tmp_path, capture_output=True, text=True,
                            env=env).stdout.split()  # fmt: skip
    assert sorted(staged) == [".nbtune/.gitignore", ".nbtune/s.journal"], staged
    # a store folder that was there before is the user's: its files are left as they are
    mine = tmp_path / "mine"
    mine.mkdir()
    nbtune.tune(cell, minimize="loss", n_trials=1, store=mine, name="s", view=None)
    assert not (mine / ".gitignore").exists()


def test_load_results_warnings_point_at_the_callers_line(tmp_path):
    """'has 2 versions ... opened the latest' pointed at nbtune's own line (found retesting)."""
    cell = "x = 0.5  # tune: uniform(0, 1)\nloss = x\n"
    nbtune.tune(cell, minimize="loss", n_trials=1, store=tmp_path, name="v", view=None)
    nbtune.tune(cell, minimize="loss", n_trials=1, store=tmp_path, name="v", view=None, fresh=True)
    with pytest.warns(nbtune.NbtuneWarning, match="opened the latest") as said:
        nbtune.load_result("v", store=tmp_path)
    assert [w.filename for w in said] == [__file__]


def test_each_run_is_recorded_with_its_seed_options_and_library_versions(ip, tmp_path):
    """A reviewer could not tell from the store which --seed, how many trials or which library
    versions made a study, nor that a resumed run draws from the trials before it (found trying
    nbtune as a new user). res.runs(), nbtune.studies() and a note when the versions changed."""
    import numpy as np
    import optuna

    ip.run_cell("import numpy as np\nX = np.arange(5.0)")
    cell = "x = 0.5  # tune: uniform(0, 1)\nloss = float((X * x).sum())\n"
    first = ip.run_cell_magic("tune", f"--minimize loss -n 4 --seed 3 --store {tmp_path} --name r", cell)
    runs = first.runs()
    assert list(runs.index) == [0] and runs.first_trial[0] == 0 and runs.target[0] == 4 and runs.seed[0] == 3
    assert runs.jobs[0] == 1 and runs.sampler[0] == "tpe" and runs.scheduler[0] == first.scheduler
    assert runs.numpy[0] == np.__version__ and runs.optuna[0] == optuna.__version__ and "python" in runs
    # the first run's versions were other ones: the next run says so, as the study now mixes both
    study = first.study
    study.set_user_attr("nbtune:run:0", {**study.user_attrs["nbtune:run:0"], "versions": {"numpy": "1.0.0"}})
    second = ip.run_cell_magic("tune", f"--minimize loss -n 6 --seed 4 --store {tmp_path} --name r", cell)
    runs = second.runs()
    assert list(runs.first_trial) == [0, 4] and list(runs.target) == [4, 6] and list(runs.seed) == [3, 4]
    said = [m for m in second.messages if "library versions" in m]
    assert said == [
        f"this run's library versions differ from the run before it's (numpy 1.0.0 -> {np.__version__}): the study "
        "holds trials of both; res.runs() lists each run's versions"
    ], second.messages
    df = nbtune.studies(tmp_path)
    assert df.runs["r"] == 2 and df.seed["r"] == 4
    # an object whose attributes raise (a proxy) is read as its type: no failed run for a version
    from nbtune.cell.identity import library_versions

    class Proxy:
        def __getattr__(self, name):
            raise RuntimeError(name)

        @property
        def __module__(self):
            raise RuntimeError("__module__")

    assert set(library_versions({"p": Proxy()}, None)) == {"python", "nbtune", "optuna"}
    # a re-run with nothing to run is no run
    third = ip.run_cell_magic("tune", f"--minimize loss -n 6 --seed 4 --store {tmp_path} --name r", cell)
    assert len(third.runs()) == 2


def test_a_journal_deleted_while_the_kernel_runs_is_one_line_then_said_when_the_study_starts_again(
    ip, tmp_path, capsys
):
    """``os.remove(".nbtune/x.journal")`` with the kernel alive: ``res.trials_dataframe()`` gave Optuna's
    FileNotFoundError as a traceback, and re-running the cell started the study again, empty, without a
    word (found trying nbtune as a new user)."""
    from nbtune.exceptions import StoreError

    res = ip.run_cell_magic("tune", "--trials 3 --minimize loss --name gone", CELL)
    journal = tmp_path / ".nbtune" / "gone.journal"
    journal.unlink()
    with pytest.raises(StoreError, match=r"^the store file .*gone\.journal is gone \(deleted or moved after the "):
        res.trials_dataframe()
    # and in a notebook, one line (IPython showed the frames inside nbtune and Optuna: found retesting as a user)
    ip.user_ns["gone_res"] = res
    capsys.readouterr()
    ip.run_cell("gone_res.trials_dataframe()")
    shown = capsys.readouterr()
    lines = [line for line in (shown.out + shown.err).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("StoreError: the store file ") and "Traceback" not in lines[0], lines
    again = ip.run_cell_magic("tune", "--trials 3 --minimize loss --name gone", CELL)
    assert again.n_finished == 3 and journal.exists()
    assert any(
        m.startswith(
            f"the store file {journal} that this kernel read before is gone (deleted or moved): study 'gone' "
            "starts again, empty"
        )
        for m in again.messages
    ), again.messages
    third = ip.run_cell_magic("tune", "--trials 4 --minimize loss --name gone", CELL)  # said once, not again
    assert third.n_finished == 4 and not any("is gone" in m for m in third.messages)
