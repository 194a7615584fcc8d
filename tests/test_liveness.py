"""Which trials' owners are gone, and what recovery does with their trials."""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from nbtune.run.liveness import ProcessLiveness, active_trial, process_start, reap_dead_trials, requeue_interrupted
from nbtune.store.attrs import ATTR, finished_count
from nbtune.store.journal import JournalStore


def _running(started: datetime.datetime | None = None, trial_id: int = 0) -> optuna.trial.FrozenTrial:
    return optuna.trial.FrozenTrial(
        number=0,
        state=TrialState.RUNNING,
        value=None,
        datetime_start=started or datetime.datetime.now(),
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=trial_id,
    )


@pytest.fixture(scope="module")
def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_owner_records_this_process():
    owner = ProcessLiveness().owner(3)
    assert owner == {"host": socket.gethostname(), "pid": os.getpid(), "worker": 3, "start": process_start(os.getpid())}


def test_verdicts(dead_pid):
    live = ProcessLiveness()
    me = live.owner(0)
    host = socket.gethostname()
    old = datetime.datetime.now() - datetime.timedelta(days=2)
    assert live.is_dead({"host": host, "pid": dead_pid}, _running())
    assert not live.is_dead({"host": host, "pid": os.getppid()}, _running())  # alive
    assert live.is_dead({"host": host, "pid": os.getppid(), "start": "1"}, _running())  # pid reused
    assert not live.is_dead({"host": "another-machine", "pid": dead_pid}, _running())  # can't tell: alive
    assert live.is_dead({}, _running(old)) and not live.is_dead({}, _running())
    assert live.is_dead(me, _running(trial_id=41))  # this process, but not running that trial
    with active_trial(41):
        assert not live.is_dead(me, _running(trial_id=41))


def test_reap_and_requeue(tmp_path, dead_pid):
    store = JournalStore(tmp_path)
    study = optuna.create_study(study_name="s", storage=store.storage("s"))
    host = socket.gethostname()
    for pid in (dead_pid, dead_pid, os.getppid()):
        t = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        study._storage.set_trial_user_attr(t._trial_id, ATTR.OWNER, {"host": host, "pid": pid})
    reaped = reap_dead_trials(study, ProcessLiveness(), culprits={-1}, culprit_error="WorkerDied: x")
    assert reaped == [0, 1]
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING]
    assert all(ATTR.INTERRUPTED in t.user_attrs for t in study.trials[:2])  # not the culprit: re-run
    assert requeue_interrupted(study, store) == [0, 1]
    assert requeue_interrupted(study, store) == []  # once each
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert [t.user_attrs[ATTR.RERUN_OF] for t in waiting] == [0, 1]
    assert [t.system_attrs["fixed_params"] for t in waiting] == [study.trials[0].params, study.trials[1].params]


def test_a_rerun_cut_by_the_user_again_is_queued_again(tmp_path):
    """A configuration interrupted twice (Interrupt, re-run, Interrupt) was dropped for good, the baseline
    among them, without a word (found retesting Interrupt as a user): each cut re-run is queued again."""
    store = JournalStore(tmp_path)
    study = optuna.create_study(study_name="s", storage=store.storage("s"))
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for n in range(3):
        t = study.ask(dist)
        study._storage.set_trial_user_attr(t._trial_id, ATTR.INTERRUPTED, "stopped by the user (Stop now / Interrupt)")
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        queued = requeue_interrupted(study, store)
        assert queued == [n], (n, queued)  # the configuration's latest cut trial
        waiting = study.trials[-1]
        assert waiting.state == TrialState.WAITING and waiting.system_attrs["fixed_params"] == study.trials[0].params
    assert requeue_interrupted(study, store) == []  # each cut trial once


def test_a_rerun_whose_process_dies_again_fails_and_counts(tmp_path, dead_pid):
    """A configuration whose trials end their process (os._exit, a segfault): cut, queued again,
    cut again, each time an interruption that never counted, so on a cluster the search went on
    forever (found trying nbtune as a new user). The second death is a failure."""
    store = JournalStore(tmp_path)
    study = optuna.create_study(study_name="s", storage=store.storage("s"))
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    host = socket.gethostname()
    t = study.ask(dist)
    study._storage.set_trial_user_attr(t._trial_id, ATTR.OWNER, {"host": host, "pid": dead_pid})
    assert reap_dead_trials(study, ProcessLiveness()) == [0]
    assert ATTR.INTERRUPTED in study.trials[0].user_attrs  # the first time: it may be the machine's fault
    assert requeue_interrupted(study, store) == [0]
    again = study.ask(dist)
    assert again.user_attrs[ATTR.RERUN_OF] == 0
    study._storage.set_trial_user_attr(again._trial_id, ATTR.OWNER, {"host": host, "pid": dead_pid})
    assert reap_dead_trials(study, ProcessLiveness()) == [1]
    second = study.trials[1]
    assert ATTR.INTERRUPTED not in second.user_attrs and second.state == TrialState.FAIL
    assert second.user_attrs[ATTR.ERROR].startswith("WorkerDied: the kernel or worker running it stopped")
    assert "as when it ran this configuration before (trial 0)" in second.user_attrs[ATTR.ERROR]
    assert finished_count(study.trials) == 1 and requeue_interrupted(study, store) == []
    # a kernel killed by hand twice is told apart from a crash by the user only: the message says how to run it
    # again (found trying nbtune as a new user), and that call does
    call = f"res.study.enqueue_trial({second.params!r}) runs it in the next search"
    assert second.user_attrs[ATTR.ERROR].endswith(
        "killed by hand both times, the configuration is not at fault: " + call
    )
    study.enqueue_trial(second.params)
    assert study.ask(dist).params == second.params


def test_the_culprit_fails_for_good(tmp_path, dead_pid):
    store = JournalStore(tmp_path)
    study = optuna.create_study(study_name="s", storage=store.storage("s"))
    t = study.ask()
    study._storage.set_trial_user_attr(t._trial_id, ATTR.OWNER, {"host": socket.gethostname(), "pid": dead_pid})
    assert reap_dead_trials(study, ProcessLiveness(), culprits={dead_pid}, culprit_error="WorkerDied: oom") == [0]
    trial = study.trials[0]
    assert trial.user_attrs[ATTR.ERROR] == "WorkerDied: oom" and ATTR.INTERRUPTED not in trial.user_attrs
    assert requeue_interrupted(study, store) == []


def test_a_search_ends_only_when_another_processs_trial_ended_or_ran_again(tmp_path):
    """Two kernels on one study, one killed mid-trial after the other's workers ran out of trials
    to start: the survivor ended '15/16 trials finished (1 running)', the dead kernel's trial left
    RUNNING for good (found trying nbtune as a new user). It waits for that trial: its owner gone,
    the trial is marked and its configuration runs again, so the study has its 4 trials."""
    import signal
    import threading
    import time

    import nbtune

    cell = "x = 0.5  # tune: uniform(0, 1)\nimport os, time\ntime.sleep(60 if os.environ.get('NBTUNE_TEST_SLOW') else 0.05)\nloss = x\n"
    script = (
        "import nbtune, sys\n"
        f"nbtune.tune({cell!r}, minimize='loss', n_trials=4, store=sys.argv[1], name='shared', seed=0, view=None)\n"
    )
    env = dict(os.environ, NBTUNE_TEST_SLOW="1", PYTHONPATH=os.pathsep.join(sys.path))
    other = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # the other kernel runs the baseline, slowly
            try:
                trials = optuna.load_study(study_name="shared", storage=JournalStore(tmp_path).storage("shared")).trials
            except Exception:
                trials = []
            if any(t.state == TrialState.RUNNING for t in trials):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the other process never started its trial")
        threading.Timer(2.0, lambda: os.kill(other.pid, signal.SIGKILL)).start()
        res = nbtune.tune(cell, minimize="loss", n_trials=4, store=tmp_path, name="shared", seed=0, view=None)
    finally:
        other.kill()
        other.wait()
    states = [t.state.name for t in res.study.trials]
    assert "RUNNING" not in states, states
    assert res.n_finished == 4
    cut = [t for t in res.study.trials if ATTR.INTERRUPTED in t.user_attrs]
    assert len(cut) == 1 and cut[0].number == 0
    rerun = [t for t in res.study.trials if t.user_attrs.get(ATTR.RERUN_OF) == 0]
    assert len(rerun) == 1 and rerun[0].state.name == "COMPLETE" and rerun[0].params == cut[0].params
    assert any(
        "of a process that stopped (another kernel or worker) were marked interrupted and run again" in m
        for m in res.messages
    ), res.messages


def test_a_copy_of_a_store_taken_mid_search_runs_the_trial_its_original_was_running(tmp_path):
    """A store copied (cp -r, a zip, a sync) while a kernel ran a search there holds that trial as
    RUNNING, owned by a process that lives: the search in the copy waited for that process to end,
    or forever when it was another machine's (found trying nbtune as a new user). The owner records
    the store folder's identity: a process of this machine that ran it in another folder is not
    running it here."""
    import shutil
    import time

    import nbtune

    live = tmp_path / "live"
    cell = (
        "import os, time\nx = 0.5  # tune: uniform(0, 1)\n"
        "time.sleep(0.3 if x == 0.5 else float(os.environ.get('NAP', '0.01')))\nscore = x\n"
    )
    script = (
        "import nbtune, sys\n"
        f"nbtune.tune({cell!r}, maximize='score', n_trials=3, seed=0, store=sys.argv[1], name='s', view=None)\n"
    )
    original = subprocess.Popen([sys.executable, "-c", script, str(live)], env={**os.environ, "NAP": "60"})
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # the baseline done, the next trial running (for 60 s)
            if (live / "s.journal").exists():
                trials = nbtune.load_study("s", store=live).trials
                if len(trials) == 2 and trials[1].state.name == "RUNNING":
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("the original search did not reach its second trial")
        for _ in range(20):  # as cp -r again: a journal lock held for a write came and went under the copy (CI)
            try:
                shutil.copytree(live, tmp_path / "copy")
                break
            except shutil.Error:
                shutil.rmtree(tmp_path / "copy", ignore_errors=True)
                time.sleep(0.05)
        started = time.time()
        res = nbtune.tune(cell, maximize="score", n_trials=3, seed=0, store=tmp_path / "copy", name="s", view=None)
        assert time.time() - started < 30 and res.n_finished == 3, res.messages
        said = "marked 1 trial(s) left running by a stopped kernel (or by one that runs the store this one was copied"
        assert any(said in m for m in res.messages), res.messages
        assert original.poll() is None  # the original still runs its own
        frame = res.trials_dataframe()  # which trial ran the cut one's configuration again, both ways
        [again] = frame.index[frame["rerun_of"] == 1]
        assert frame.loc[1, "rerun_as"] == again and frame.loc[1, "interrupted"]
        assert not ProcessLiveness(live).is_dead(nbtune.load_study("s", store=live).trials[1].user_attrs[
            "nbtune:owner"], nbtune.load_study("s", store=live).trials[1])  # fmt: skip
    finally:
        original.kill()
        original.wait()
