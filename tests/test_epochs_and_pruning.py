"""The epochs loop, the schedulers and the recorded reasons for every stop."""

from __future__ import annotations

import pytest

import nbtune
from nbtune.cell.program import TrialRuntime, compile_cell
from nbtune.run.schedulers import SchedulerSpec, format_decision
from nbtune.store.attrs import ATTR


class FakeTrial:
    """Records reports; prunes at a chosen step."""

    def __init__(self, prune_at=None):
        self.reports, self.prune_at, self.params = [], prune_at, {}

    def suggest_float(self, name, low, high, **kw):
        return low

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.prune_at is not None and self.reports[-1][0] >= self.prune_at


def run(body, prune_at=None, max_step=None):
    program = compile_cell("x = 0.5  # tune: uniform(0, 1)\n" + body, metric="m", direction="maximize")
    trial = FakeTrial(prune_at)
    rt = TrialRuntime(program, trial, max_step=max_step)
    return program, trial, rt


def test_reports_after_every_iteration():
    program, trial, rt = run("for e in range(4):  # tune: epochs\n    m = e * 10\nafter = 1\n")
    assert program.run(rt) == 30
    assert trial.reports == [(1, 0), (2, 10), (3, 20), (4, 30)]


def test_continue_still_reports_and_break_reports_last():
    _, trial, rt = run(
        "for e in range(6):  # tune: epochs\n    m = e\n    if e == 1:\n        continue\n"
        "    if e == 3:\n        break\nm = m + 100\n"
    )
    assert rt.program.run(rt) == 103
    assert trial.reports == [(1, 0), (2, 1), (3, 2), (4, 3)]


def test_nested_loops_only_outer_is_the_budget():
    _, trial, rt = run(
        "for e in range(3):  # tune: epochs\n    for b in range(5):\n        if b == 2:\n"
        "            break\n        m = e + b\n"
    )
    assert rt.program.run(rt) == 3
    assert [s for s, _ in trial.reports] == [1, 2, 3]


def test_stop_ends_the_cell_at_that_epoch():
    from nbtune.cell.program import TrialStopped

    program, trial, rt = run(
        "ran = []\nfor e in range(9):  # tune: epochs\n    m = e\n"
        "    try:\n        pass\n    except Exception:\n        pass\nraise RuntimeError('never reached')\n",
        prune_at=3,
    )
    with pytest.raises(TrialStopped) as info:
        program.run(rt)
    assert info.value.step == 3 and trial.reports[-1] == (3, 2)


def test_user_except_exception_cannot_swallow_the_stop():
    from nbtune.cell.program import TrialStopped

    program, _trial, rt = run(
        "try:\n    for e in range(9):  # tune: epochs\n        m = e\nexcept Exception:\n    m = -1\n", prune_at=2
    )
    with pytest.raises(TrialStopped):
        program.run(rt)


def test_no_stop_at_the_last_epoch():
    _program, _trial, _rt = run("for e in range(3):  # tune: epochs\n    m = e\n", prune_at=1, max_step=1)
    # step 1 == R: a trial that reached R is complete
    program2, _trial2, rt2 = run("for e in range(1):  # tune: epochs\n    m = e\n", prune_at=1, max_step=1)
    assert program2.run(rt2) == 0


def test_epochs_loop_inside_a_function_is_rejected(ip):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="line 4 of the %%tune cell: the epochs loop is inside a function"):
        ip.run_cell_magic(
            "tune",
            "--maximize m",
            "x = 0.5  # tune: uniform(0, 1)\ndef f():\n    for e in range(3):  # tune: epochs\n        pass\nm = 1\n",
        )
    with pytest.raises(UsageError, match="a second '# tune: epochs' loop \\(the first is on line 3\\)"):
        ip.run_cell_magic(
            "tune",
            "--maximize m",
            "x = 0.5  # tune: uniform(0, 1)\nfor a in range(2):  # tune: epochs\n"
            "    m = a\nfor b in range(2):  # tune: epochs\n    m = b\n",
        )


@pytest.mark.parametrize(
    "R, r, eta, brackets, rungs0", [(27, 1, 3, 4, [1, 3, 9]), (9, 1, 3, 3, [1, 3]), (100, 2, 4, 3, [2, 8, 32])]
)
def test_spec_rungs(R, r, eta, brackets, rungs0):
    spec = SchedulerSpec(kind="hyperband", R=R, r=r, eta=eta)
    assert spec.n_brackets == brackets and spec.rung_epochs(0) == rungs0


CURVES = """\
q = 0.5  # tune: uniform(0.0, 1.0)
for epoch in range(27):  # tune: epochs
    acc = q * (1 - 0.5 ** (epoch + 1))
"""


@pytest.mark.parametrize("scheduler", ["hyperband", "asha", "median"])
def test_decisions_are_recorded_with_reasons(tmp_path, scheduler):
    """Stop-only rules (Optuna's pruners; pause-and-promote's reasons: test_pause_promote.py)."""
    res = nbtune.tune(
        CURVES, maximize="acc", n_trials=30, scheduler=scheduler, seed=0, sampler="random", store=tmp_path, view=None,
        stop_only=scheduler != "median",
    )  # fmt: skip
    pruned = [t for t in res.study.trials if t.state.name == "PRUNED"]
    assert pruned, "nothing was stopped"
    for t in pruned:
        d = t.user_attrs[ATTR.DECISION]
        assert d["epoch"] == t.last_step and d["value"] <= d["cutoff"]
        assert d["n_compared"] >= 1
        if scheduler != "median":
            assert d["rung"] >= 0 and (d["bracket"] is not None) == (scheduler == "hyperband")
            # rung k means epoch r * eta**k
            assert d["epoch"] == 3 ** d["rung"]
    df = res.trials_dataframe()
    stopped = df[df["state"] == "PRUNED"]
    assert stopped["stopped_reason"].str.contains(r"stopped at epoch \d+").all()
    text = res.decisions()[0]
    assert text.startswith(f"trial {pruned[0].number} stopped at epoch {pruned[0].last_step}")
    assert "acc" in text and ("cutoff" in text or "median" in text)
    # complete trials ran all 27 epochs
    assert all(t.last_step == 27 for t in res.study.trials if t.state.name == "COMPLETE")


def test_the_median_rule_stops_nothing_before_its_first_epochs(tmp_path):
    """--min-epochs 5 is 'median stopping (after 5 epochs)': no trial is stopped before epoch 5."""
    res = nbtune.tune(
        CURVES, maximize="acc", n_trials=20, scheduler="median", min_epochs=5, seed=0, sampler="random",
        store=tmp_path, view=None,
    )  # fmt: skip
    pruned = [t for t in res.study.trials if t.state.name == "PRUNED"]
    assert pruned and min(t.last_step for t in pruned) == 5


def test_format_decision_reads_like_a_sentence():
    d = {"epoch": 3, "rung": 1, "bracket": 0, "value": 0.62, "cutoff": 0.71, "n_compared": 9, "n_keep": 3}
    assert format_decision(17, d, "val_acc", "maximize") == (
        "trial 17 stopped at epoch 3 (rung 1, bracket 0): val_acc 0.62 < cutoff 0.71, only the top 3 of 9 go on"
    )


def test_hyperband_brackets_hold_across_processes(tmp_path):
    res = nbtune.tune(
        CURVES, maximize="acc", n_trials=24, n_jobs=2, seed=0, sampler="random", store=tmp_path, view=None,
        scheduler="hyperband",
    )  # fmt: skip
    assert res.n_finished == 24
    from optuna.pruners import HyperbandPruner

    r = res.study.user_attrs[ATTR.CONFIG]["r"]
    assert r == 3  # 23 searched configurations fill rungs from epoch 3 (3 and 9): 23 -> 7 -> 2
    hb = HyperbandPruner(min_resource=r, max_resource=27, reduction_factor=3)
    hb._try_initialization(res.study)
    for t in res.study.trials:
        d = t.user_attrs.get(ATTR.DECISION)
        if d:  # a promoted trial's continuation stays in the bracket of the trial that started it
            root = res.study.trials[t.user_attrs.get(ATTR.PROMOTED, {}).get("root", t.number)]
            assert d["bracket"] == hb._get_bracket_id(res.study, root)
    assert len({t.user_attrs[ATTR.OWNER]["pid"] for t in res.study.trials}) == 2


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_the_baseline_is_never_stopped_early(tmp_path, backend):
    """Trial 0 runs the cell's own defaults to the end, even when they are the worst configuration
    and the other worker's trials reached the rungs first (the baseline is slow here)."""
    cell = (
        "x = 0.0  # tune: uniform(0, 1)\nimport time\n"
        "for epoch in range(9):  # tune: epochs\n"
        "    time.sleep(0.3 if x == 0.0 else 0.0)\n"
        "    acc = x * (epoch + 1)\n"
    )
    res = nbtune.tune(
        cell,
        maximize="acc",
        n_trials=20,
        seed=0,
        store=tmp_path,
        view=None,
        sampler="random",
        scheduler="asha",
        n_jobs=2,
        backend=backend,
    )
    baseline = [t for t in res.study.trials if t.user_attrs.get(ATTR.BASELINE)]
    assert len(baseline) == 1 and baseline[0].state.name == "COMPLETE" and baseline[0].last_step == 9
    early = [t for t in res.study.trials if t.datetime_complete < baseline[0].datetime_complete]
    assert sum(t.state.name == "PRUNED" for t in early) >= 3  # others were stopped at the rungs meanwhile


def test_a_tuned_cap_of_rounds_beside_early_stopping_is_said_before_the_search(ip):
    """A tuned max_iter / n_estimators with the library's early stopping on: where it stops first,
    the tuned value changes nothing (the README said so; the search did not: found trying nbtune as
    a new user). A real scikit-learn fit; then the forms of LightGBM and XGBoost, read from the cell."""
    ip.run_cell("from sklearn.datasets import make_classification\nX, y = make_classification(300, random_state=0)")
    cell = (
        "from sklearn.ensemble import HistGradientBoostingClassifier\n"
        "n_iter = 50  # tune: int(10, 60)\nlr = 0.1  # tune: loguniform(0.01, 0.3)\n"
        "model = HistGradientBoostingClassifier(\n    max_iter=n_iter, learning_rate=lr, early_stopping=True\n)\n"
        "acc = model.fit(X, y).score(X, y)\n"
    )
    res = ip.run_cell_magic("tune", "--maximize acc -n 3 --seed 0", cell)
    said = [m for m in res.messages if "early stopping" in m]
    assert said == [
        "line 6 of the %%tune cell: n_iter caps the rounds, and early stopping (line 6) ends training before the "
        "cap wherever it stops first: there the tuned n_iter changes nothing (and blurs the importances); fix "
        "n_iter high and let early stopping choose the rounds, or tune it without early stopping"
    ], res.messages
    off = ip.run_cell_magic(
        "tune", "--maximize acc -n 3 --seed 0", cell.replace("early_stopping=True", "early_stopping=False")
    )
    assert not any("early stopping" in m for m in off.messages)

    import ast

    from nbtune.cell.loops import cap_beside_early_stopping

    def found(code):
        return cap_beside_early_stopping(ast.parse(code), {"n_est", "rounds"})

    lgb = "params = {'num_boost_round': rounds}\nb = lgb.train(params, d, callbacks=[lgb.early_stopping(50)])\n"
    assert found(lgb) == ("rounds", 1, 2)
    xgb = "m = XGBClassifier(n_estimators=int(n_est), early_stopping_rounds=30)\n"
    assert found(xgb) == ("n_est", 1, 1)
    assert found(xgb.replace("30", "None")) is None
    assert found("m = XGBClassifier(n_estimators=500, early_stopping_rounds=30)\n") is None  # not tuned
    assert found("m = LGBMClassifier(n_estimators=n_est)\nm.fit(X, y)\n") is None  # no early stopping
    # the early stopping of the model it makes, given by name or on a call on it; not another model's
    cb = "cb = [lgb.early_stopping(5)]\nm = LGBMClassifier(n_estimators=n_est)\nm.fit(X, y, callbacks=cb)\n"
    assert found(cb) == ("n_est", 2, 1)
    inline = "b = lgb.train({'early_stopping_round': 5, 'verbose': -1}, d, num_boost_round=rounds)\n"
    assert found(inline) == ("rounds", 1, 1)
    other = "m0 = HGB(early_stopping=True).fit(X, y)\nm = GradientBoostingClassifier(n_estimators=n_est).fit(X, y)\n"
    assert found(other) is None
    unused = "cb = [lgb.early_stopping(5)]\nm = LGBMClassifier(n_estimators=n_est).fit(X, y)\n"
    assert found(unused) is None
    # a name is read as what the cell assigned to it (es = True was missed: found trying nbtune as a new user)
    named = "es = True\nm = HGB(max_iter=n_est, early_stopping=es)\n"
    assert found(named) == ("n_est", 2, 2)
    assert found(named.replace("True", "False")) is None
    assert found("esr = None\nm = XGBClassifier(n_estimators=n_est, early_stopping_rounds=esr)\n") is None
    # and as the notebook set it in an earlier cell (found retesting)
    earlier = "m = HGB(max_iter=n_est, early_stopping=ES)\n"
    assert cap_beside_early_stopping(ast.parse(earlier), {"n_est"}, {"ES": True}) == ("n_est", 1, 1)
    assert cap_beside_early_stopping(ast.parse(earlier), {"n_est"}, {"ES": False}) is None


def test_a_tuned_number_of_rounds_per_epoch_is_said_before_the_search(ip):
    """'for _ in range(rounds):' inside the epochs loop with rounds tuned: successive halving
    compared trials with 5 and 100 rounds per epoch at the same rung, without a word (found trying
    nbtune as a new user)."""
    cell = (
        "rounds = 25  # tune: int(5, 100)\nw = 0.0\nfor epoch in range(9):  # tune: epochs\n"
        "    for _ in range(rounds):\n        w += 0.001\n    loss = 1 / (1 + w)\n"
    )
    res = ip.run_cell_magic("tune", "--minimize loss -n 4 --seed 0", cell)
    said = [m for m in res.messages if "inside the epochs loop" in m]
    assert said and said[0].startswith(
        "line 5 of the %%tune cell: the loop inside the epochs loop runs as long as rounds"
    )
    fixed = ip.run_cell_magic(
        "tune", "--minimize loss -n 4 --seed 0 --name fixed", cell.replace("range(rounds)", "range(25)")
    )
    assert not any("inside the epochs loop" in m for m in fixed.messages)


def test_a_tuned_length_of_the_epochs_loop_is_said_with_its_longest(ip):
    """n_epochs tuned and 'for period in range(n_epochs // 3):  # tune: epochs': refused with a generic
    'e.g. --max-epochs 20', and with --max-epochs the trials that end early were ranked as complete
    against longer ones without a word (found trying nbtune as a new user)."""
    from IPython.core.error import UsageError

    cell = (
        "n_epochs = 6  # tune: int(3, 15, step=3)\nx = 0.5  # tune: uniform(0, 1)\n"
        "for period in range(n_epochs // 3):  # tune: epochs\n    acc = 1 - (x - 0.3) ** 2 + 0.01 * period\n"
    )
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("tune", "--maximize acc -n 4 --view none", cell)
    assert str(info.value) == (
        "line 4 of the %%tune cell: the epochs loop's length is set by the tuned 'n_epochs' (1 to 5 epochs), but "
        "--scheduler asha decides how long each trial trains; fix the loop at its longest (5) and drop the "
        "annotation of 'n_epochs', or tune the length itself with --scheduler none (every trial then trains as long "
        "as it says), or pass --max-epochs 5 (its longest)"
    )
    res = ip.run_cell_magic("tune", "--maximize acc -n 4 --view none --max-epochs 5", cell)
    assert any(
        m.startswith("the epochs loop's length is set by the tuned 'n_epochs' (1 to 5 epochs): a trial whose loop ends")
        for m in res.messages
    ), res.messages
    none = ip.run_cell_magic("tune", "--maximize acc -n 4 --view none --scheduler none", cell)
    assert not any("length is set by the tuned" in m for m in none.messages), none.messages
