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
from nbtune.store.attrs import ATTR
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


def test_the_culprit_fails_for_good(tmp_path, dead_pid):
    store = JournalStore(tmp_path)
    study = optuna.create_study(study_name="s", storage=store.storage("s"))
    t = study.ask()
    study._storage.set_trial_user_attr(t._trial_id, ATTR.OWNER, {"host": socket.gethostname(), "pid": dead_pid})
    assert reap_dead_trials(study, ProcessLiveness(), culprits={dead_pid}, culprit_error="WorkerDied: oom") == [0]
    trial = study.trials[0]
    assert trial.user_attrs[ATTR.ERROR] == "WorkerDied: oom" and ATTR.INTERRUPTED not in trial.user_attrs
    assert requeue_interrupted(study, store) == []
