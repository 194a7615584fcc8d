"""--trial-timeout: a trial that runs too long is cut, recorded, and the search goes on (real IPython
shell, real worker processes, real store files)."""

from __future__ import annotations

import re
import time

import pytest
from IPython.core.error import UsageError

from nbtune.cell.program import TrialTimeout
from nbtune.run.worker import TrialClock
from nbtune.store.attrs import ATTR

# configurations with slow > 0.5 never end on their own (a solver taking ever smaller steps)
HANGS = """\
import time
slow = 0.2   # tune: uniform(0, 1)
t0 = time.time()
while slow > 0.5 and time.time() - t0 < 60:
    time.sleep(0.01)
score = -slow
"""

SLOW_EPOCHS = """\
import time
slow = 0.2   # tune: uniform(0, 1)
model = {"w": 0}  # tune: state
for epoch in range(20):  # tune: epochs
    time.sleep(0.2 if slow > 0.5 else 0.005)
    model["w"] += 1
    score = epoch - slow
"""


def _timed_out(res):
    return [t for t in res.study.trials if ATTR.TIMED_OUT in t.user_attrs]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_trial_past_the_limit_fails_and_the_search_goes_on(ip, jobs):
    t0 = time.time()
    res = ip.run_cell_magic("tune", f"-n 10 --maximize score --seed 0 --jobs {jobs} --trial-timeout 1", HANGS)
    assert time.time() - t0 < 40  # a hanging trial took 60 s before
    cut = _timed_out(res)
    assert cut and all(t.params["slow"] > 0.5 for t in cut)
    assert all(t.state.name == "FAIL" for t in cut)
    assert all(0.9 < (t.datetime_complete - t.datetime_start).total_seconds() < 10 for t in cut)
    error = cut[0].user_attrs[ATTR.ERROR]
    # where it was: the loop (cell lines 5-6, the %%tune line being line 1)
    assert re.fullmatch(r"TrialTimeout: ran past --trial-timeout 1 s, cut at line [56] of the cell", error), error
    assert re.search(r"line [56]", cut[0].user_attrs[ATTR.TRACEBACK])
    # the others ran as usual, and the study reached its target
    assert res.n_finished == 10 and res.best_value == max(t.value for t in res.study.trials if t.value is not None)
    assert all(t.state.name == "COMPLETE" for t in res.study.trials if t.params["slow"] <= 0.5)
    assert "TrialTimeout" in res.trials_dataframe().error.dropna().iloc[0]
    summary = res.summary()
    assert "ran past --trial-timeout (the limit is 1 s), all with slow >= 0.5" in summary, summary


def test_an_epochs_trial_past_the_limit_stops_at_its_last_epoch_whose_value_stands(ip, tmp_path, capsys):
    res = ip.run_cell_magic("tune", "-n 8 --maximize score --seed 0 --scheduler none --trial-timeout 1", SLOW_EPOCHS)
    assert "running 8 more on 1 inline worker(s), at most 1s a trial" in capsys.readouterr().out
    cut = _timed_out(res)
    assert cut and all(t.params["slow"] > 0.5 for t in cut)
    for t in cut:
        # stopped, not failed: its learning curve up to its last epoch is a result like a rung's
        assert t.state.name == "PRUNED" and 2 <= t.last_step < 20
        decision = t.user_attrs[ATTR.DECISION]
        assert decision["epoch"] == t.last_step and not decision.get("paused")
        assert f"its score at epoch {t.last_step} stands" in decision["reason"]
    df = res.trials_dataframe()
    reason = df.loc[cut[0].number, "stopped_reason"]
    assert reason.startswith(f"trial {cut[0].number} stopped at epoch {cut[0].last_step}: it ran past --trial-timeout")
    # a stopped trial never resumes: its saved state went with it
    assert res.n_finished == 8
    assert "each stopped at its last epoch" in res.summary()


def test_ten_trials_in_a_row_past_the_limit_stop_the_search_and_name_it(ip):
    cell = "import time\nx = 0.5  # tune: uniform(0, 1)\nwhile True:\n    time.sleep(0.01)\nscore = x\n"
    with pytest.raises(UsageError) as e:
        ip.run_cell_magic("tune", "-n 30 --maximize score --trial-timeout 0.2 -o res", cell)
    msg = str(e.value)
    assert msg.startswith("the first 10 trials of this run all ran past --trial-timeout 0.2 s, so the search stopped")
    assert "raise --trial-timeout, or narrow the ranges" in msg and "bug" not in msg
    assert len(ip.user_ns["res"].study.trials) == 10


def test_the_limit_is_held_back_during_nbtunes_own_work_and_raised_after_it():
    """A store write or a checkpoint is never cut halfway: the limit takes effect when it is done."""
    clock = TrialClock(0.05)
    clock.start()
    finished = False
    with pytest.raises(TrialTimeout), clock:  # nbtune's work inside the trial (a report, a checkpoint)
        deadline = time.time() + 0.3
        while time.time() < deadline:  # Python bytecode: an exception raised at once would land here
            pass
        finished = True
    assert finished and clock.expired
    clock.stop()
    # out of nbtune's work the cell's own code is cut where it is
    clock = TrialClock(0.05)
    clock.start()
    with pytest.raises(TrialTimeout):
        deadline = time.time() + 5
        while time.time() < deadline:
            pass
    clock.stop()


def test_a_trial_that_ends_in_time_leaves_no_limit_behind():
    clock = TrialClock(0.2)
    clock.start()
    clock.stop()
    deadline = time.time() + 0.5
    while time.time() < deadline:  # past the limit: nothing is raised in this thread later
        pass
    assert not clock.expired


def test_bad_values_are_named_before_any_trial(ip):
    for value, said in (("0", "--trial-timeout must be positive; got '0'"), ("1x", "--trial-timeout takes seconds")):
        with pytest.raises(UsageError, match=said):
            ip.run_cell_magic(
                "tune", f"-n 2 --maximize score --trial-timeout {value}", "x = 1  # tune: int(0, 3)\nscore = x\n"
            )


def test_re_validation_runs_are_cut_too(ip):
    """A seed whose run never ends hung --revalidate, whose runs had no limit (found trying nbtune as
    a new user)."""
    cell = (
        "import time\n"
        "x = 0.5   # tune: uniform(0.0, 1.0)\n"
        "seed = 0  # tune: seed\n"
        "t0 = time.time()\n"
        "while seed > 0 and time.time() - t0 < 60:\n"
        "    time.sleep(0.01)\n"
        "m = x\n"
    )
    t0 = time.time()
    res = ip.run_cell_magic("tune", "--maximize m -n 5 --seed 0 --trial-timeout 1 --revalidate 2 --seeds 2", cell)
    assert time.time() - t0 < 30
    df = res.revalidation()
    assert len(df) == 2 and (df.failed == 2).all(), df


@pytest.mark.parametrize("loop", ["epochs", "folds"])
def test_a_trial_whose_limit_runs_out_during_its_last_report_is_complete(ip, monkeypatch, loop):
    """A folds(3) trial had all three folds in, the limit ran out while the last was being written,
    and it was recorded as stopped early: out of the best (found trying nbtune as a new user). The
    last report is made slow here, as a loaded machine made it."""
    import optuna

    report = optuna.trial.Trial.report

    def slow_last(self, value, step):
        report(self, value, step)
        if step == 3:
            time.sleep(1.3)

    monkeypatch.setattr(optuna.trial.Trial, "report", slow_last)
    cell = (
        "k = 1  # tune: int(1, 2)\nfor epoch in range(3):  # tune: epochs\n    val = 0.5 + 0.01 * epoch + 0.001 * k\n"
        if loop == "epochs"
        else "fold = 0  # tune: folds(3)\nk = 1  # tune: int(1, 2)\nval = 0.5 + 0.01 * fold + 0.001 * k\n"
    )
    res = ip.run_cell_magic("tune", "--maximize val -n 1 --scheduler none --trial-timeout 1", cell)
    t = res.study.trials[0]
    assert t.state.name == "COMPLETE" and ATTR.TIMED_OUT not in t.user_attrs, t.user_attrs


def test_a_limit_below_a_full_trials_time_stops_the_search_after_ten_cut_trials(ip):
    """Every trial cut at its first fold: 14 stopped early, no complete trial, and the search ran to
    its end without a word (found trying nbtune as a new user)."""
    cell = "import time\nfold = 0  # tune: folds(3)\nk = 1.0  # tune: uniform(0, 1)\ntime.sleep(0.3)\nval = k + fold\n"
    with pytest.raises(UsageError) as e:
        ip.run_cell_magic("tune", "--maximize val -n 14 --trial-timeout 0.5 -o res", cell)
    assert str(e.value).startswith(
        "the first 10 trials of this run all ran past --trial-timeout 0.5 s (10 of them stopped before their last "
        "epoch or fold), so the search stopped instead of spending the budget: raise --trial-timeout (a full trial "
        "takes longer)"
    ), str(e.value)
    res = ip.user_ns["res"]
    assert len(res.study.trials) == 10
    # and the result says so, and where the best of them is (it said 'no trial completed yet', after the search)
    from nbtune.view.format import fmt

    best = max(res.study.trials, key=lambda t: t.intermediate_values[t.last_step])
    with pytest.raises(ValueError) as e:
        res.best_params  # noqa: B018
    assert str(e.value) == (
        "no trial completed: 10 trials stopped before the end of the epochs loop (all cut by --trial-timeout 0.5 s); "
        f"the best of them is trial {best.number} (val = {fmt(best.intermediate_values[best.last_step])} at fold "
        f"{best.last_step}: "
        f"res.study.trials[{best.number}]); raise --trial-timeout for trials that run to the end"
    ), str(e.value)
    assert "no trial completed yet" not in res.summary()


def test_one_long_compiled_call_is_cut_when_it_returns_and_the_overrun_is_said(ip):
    """'ran past --trial-timeout 5 s' for a trial of 17.4 s: only the duration column told (found
    trying nbtune as a new user)."""
    cell = "import time\nx = 0.5  # tune: uniform(0, 1)\nif x > 0.5:\n    time.sleep(2.5)\nscore = x\n"
    res = ip.run_cell_magic("tune", "-n 6 --maximize score --seed 1 --trial-timeout 1", cell)
    cut = _timed_out(res)
    assert cut
    error = cut[0].user_attrs[ATTR.ERROR]
    assert re.fullmatch(
        r"TrialTimeout: ran 2\.\d s, past --trial-timeout 1 s, cut at line 5 of the cell when a call into compiled "
        r"code there returned \(worker processes, as --jobs 2 runs trials, end such a trial 5 s past the limit\)",
        error,
    ), error


def _with_times(trials, spans):
    import datetime

    t0 = datetime.datetime(2026, 1, 1)
    for t, span in zip(trials, spans, strict=True):
        t.datetime_start, t.datetime_complete = t0, t0 + datetime.timedelta(seconds=span)
    return trials


def test_the_diagnosis_says_to_raise_the_limit_when_cut_trials_were_worth_it_or_trials_run_near_it():
    """'narrow the range there' steered away from the best batch size, cut while ahead of every
    complete trial; and blamed configurations cut because two workers slowed every fit (found
    trying nbtune as a new user)."""
    import optuna
    from optuna.distributions import IntDistribution
    from optuna.trial import TrialState, create_trial

    from nbtune.view.diagnose import diagnose
    from nbtune.view.summary import StudySummary

    def study_of(cut_value, complete_span):
        study = optuna.create_study(direction="maximize")
        trials = [
            create_trial(
                state=TrialState.COMPLETE,
                value=0.6 + b / 10000,
                params={"batch": b},
                distributions={"batch": IntDistribution(1, 1024)},
                intermediate_values={e: 0.5 + b / 10000 + 0.01 * e for e in range(1, 11)},
            )
            for b in (256, 512, 1024, 300)
        ]
        for b in (8, 9):
            t = create_trial(
                state=TrialState.PRUNED,
                params={"batch": b},
                distributions={"batch": IntDistribution(1, 1024)},
                intermediate_values={1: 0.5, 2: 0.55, 3: 0.6, 4: cut_value},
                user_attrs={ATTR.TIMED_OUT: 2.0},
            )
            trials.append(t)
        for t in _with_times(trials, [complete_span] * 4 + [2.0, 2.0]):
            study.add_trial(t)
        (finding,) = [f for f in diagnose(StudySummary(study, "val")) if f.kind == "ran past --trial-timeout"]
        return finding

    slow = study_of(cut_value=0.62, complete_span=0.5)
    assert slow.region == "batch <= 9" and slow.advice.startswith("these configurations are slow")
    ahead = study_of(cut_value=0.9, complete_span=0.5)
    assert "cut at epoch 4, already scored as well as every complete trial" in ahead.evidence
    assert ahead.advice.startswith("these configurations are worth the time: raise --trial-timeout")
    near = study_of(cut_value=0.62, complete_span=1.9)
    assert "complete trials took up to 1.9 s" in near.evidence
    assert near.advice.startswith("the limit is about as long as a trial that completes")


STUCK = """\
import time
x = 0.5  # tune: uniform(0, 1)
if x >= 0.5:  # (the baseline's 0.5 among them: one cut at least, whatever the draws)
    time.sleep(60)  # one call that does not return in time (an SVM's fit that does not converge)
score = x
"""

STUCK_AT_EPOCH_3 = """\
import time
x = 0.5  # tune: uniform(0, 1)
for epoch in range(5):  # tune: epochs
    if x >= 0.5 and epoch == 3:
        time.sleep(60)
    score = x + epoch
"""


@pytest.mark.parametrize("loop", [False, True])
def test_a_trial_stuck_in_one_call_ends_its_worker_process_and_the_search_goes_on(ip, loop):
    """A call into compiled code that does not return (libsvm at an extreme C) was cut only when it
    returned: a worker process ends itself instead, and the pool is replaced."""
    t0 = time.time()
    options = "-n 6 --maximize score --seed 3 --jobs 2 --trial-timeout 1 --scheduler none"
    res = ip.run_cell_magic("tune", options, STUCK_AT_EPOCH_3 if loop else STUCK)
    took = time.time() - t0
    cut = _timed_out(res)
    assert cut and all(t.params["x"] >= 0.5 for t in cut), [t.params for t in res.study.trials]
    assert took < 15 * len(cut) + 20, took  # 60 s each before
    for t in cut:
        assert t.user_attrs[ATTR.ENDED_PROCESS] > 0
        # cut stuck_grace (5 s) after the 1 s limit (a worker's first trial also loads the cell: up to 18 s
        # under the full suite's load), not after the 60 s call
        assert 5.5 < (t.datetime_complete - t.datetime_start).total_seconds() < 30
    if loop:  # stopped at its last epoch, whose value stands, as a trial cut in Python code is
        assert all(t.state.name == "PRUNED" and t.last_step == 3 for t in cut)  # (steps count from 1)
        reason = cut[0].user_attrs[ATTR.DECISION]["reason"]
        assert "in a call into compiled code at line 6 of the cell that had not returned" in reason, reason
        assert reason.endswith("its score at epoch 3 stands"), reason
    else:
        assert all(t.state.name == "FAIL" for t in cut)
        error = cut[0].user_attrs[ATTR.ERROR]
        assert re.fullmatch(
            r"TrialTimeout: ran \d+\.\d s, past --trial-timeout 1 s, in a call into compiled code at line 5 of the "
            r"cell that had not returned: its worker process was ended, and replaced",
            error,
        ), error
        assert "time.sleep(60)" in cut[0].user_attrs[ATTR.TRACEBACK]
    # the others ran as usual, and the study reached its target; the note says what happened
    assert res.n_finished == 6
    assert all(t.state.name == "COMPLETE" for t in res.study.trials if t.params["x"] < 0.5)
    assert "stayed in a call into compiled code past --trial-timeout" in res.summary()


def test_a_trial_ended_with_the_pool_after_its_own_limit_is_cut_not_run_again(tmp_path, monkeypatch):
    """loky ends a pool's processes when one dies: a trial beside the one that was cut, already
    past the limit itself, was recorded as interrupted and run again in full (a 24 s limit: 30 s,
    then 30 s more; found trying nbtune as a new user). Over the limit it is cut; under it, it runs
    again as before."""
    import datetime

    import optuna
    from optuna.trial import TrialState

    from nbtune.cell.program import compile_cell
    from nbtune.run.coordinator import Search
    from nbtune.run.worker import Job
    from nbtune.store.control import FileControl
    from nbtune.store.journal import Store

    store = Store(tmp_path)
    program = compile_cell(
        "x = 0.5  # tune: uniform(0, 1)\nfor epoch in range(5):  # tune: epochs\n    loss = x\n",
        metric="loss",
        direction="minimize",
    )
    job = Job(program=program, store=store, study_name="s", control=FileControl(4, tmp_path / "run"), trial_timeout=2.0)
    study = optuna.create_study(study_name="s", storage=store.storage("s"))
    dead = 2**22 + 17  # (no such process)
    for reported in (False, True, False):
        t = study.ask()
        study._storage.set_trial_user_attr(t._trial_id, ATTR.OWNER, {"pid": dead})
        if reported:
            t.report(0.3, 1)
    # as though the first two had run 5 s, the third 1 s (the store keeps the real starts)
    running = study.get_trials(deepcopy=True)
    for t, ran in zip(running, (5.0, 5.0, 1.0), strict=True):
        t.datetime_start = datetime.datetime.now() - datetime.timedelta(seconds=ran)
    monkeypatch.setattr(optuna.Study, "get_trials", lambda self, deepcopy=False, states=None: running)
    Search(job)._cut_beside({dead})
    monkeypatch.undo()
    after = {t.number: t for t in optuna.load_study(study_name="s", storage=store.storage("s")).trials}
    assert after[0].state == TrialState.FAIL and after[0].user_attrs[ATTR.ENDED_PROCESS] == dead
    assert after[0].user_attrs[ATTR.ERROR] == (
        "TrialTimeout: ran 5.0 s, past --trial-timeout 2 s, when its worker process was ended with the pool, for "
        "another trial that was cut"
    )
    assert after[1].state == TrialState.PRUNED and after[1].user_attrs[ATTR.TIMED_OUT] == 2.0  # its epoch stands
    assert after[2].state == TrialState.RUNNING  # within its limit: the reap makes it a re-run, as before
