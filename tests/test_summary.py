"""A study seen as a search: counts, best trials, reasons, the text and HTML summary and the DataFrame."""

from __future__ import annotations

import datetime
import math

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from nbtune.run.schedulers import format_decision
from nbtune.store.attrs import ATTR
from nbtune.view.format import fmt, plural_trials
from nbtune.view.result import TuneResult
from nbtune.view.summary import StudySummary

T0 = datetime.datetime(2024, 5, 1, 12, 0, 0)
DISTS = {"x": FloatDistribution(0.0, 1.0), "act": CategoricalDistribution(["relu", "tanh"])}
ASHA_STOP = {
    "epoch": 1,
    "rung": 0,
    "bracket": None,
    "scheduler": "asha",
    "value": 0.2,
    "cutoff": 0.6,
    "n_keep": 1,
    "n_compared": 3,
}
MEDIAN_STOP = {"epoch": 2, "scheduler": "median", "value": 0.25, "cutoff": 0.5, "n_compared": 3}


def trial(state=TrialState.COMPLETE, value=None, x=0.5, act="relu", attrs=None, curve=None, seconds=10):
    t = create_trial(
        state=state,
        value=value,
        params={"x": x, "act": act},
        distributions=DISTS,
        user_attrs=attrs or {},
        intermediate_values=curve or {},
    )
    t.datetime_start = T0
    t.datetime_complete = T0 + datetime.timedelta(seconds=seconds)
    return t


def make_study(direction="maximize", name="demo"):
    """0 baseline 0.5, 1 best 0.8, 2 stopped (asha), 3 failed, 4 interrupted, 5 complete 0.3, 6 stopped (median)."""
    study = optuna.create_study(study_name=name, direction=direction)
    for t in [
        trial(value=0.5, x=0.1, attrs={ATTR.BASELINE: True}, curve={1: 0.4, 2: 0.5}, seconds=5),
        trial(value=0.8, x=0.5, act="tanh", curve={1: 0.6, 2: 0.8}),
        trial(TrialState.PRUNED, x=0.9, attrs={ATTR.DECISION: ASHA_STOP}, curve={1: 0.2}),
        trial(TrialState.FAIL, x=0.2, attrs={ATTR.ERROR: "ValueError: bad lr"}),
        trial(TrialState.FAIL, x=0.3, attrs={ATTR.INTERRUPTED: "stopped by the user", ATTR.OUTPUT: "epoch 1\n"}),
        trial(value=0.3, x=0.7, curve={1: 0.3, 2: 0.3}, seconds=20),
        trial(TrialState.PRUNED, x=0.4, act="tanh", attrs={ATTR.DECISION: MEDIAN_STOP}, curve={1: 0.1, 2: 0.25}),
    ]:
        study.add_trial(t)
    return study


@pytest.fixture
def result():
    return TuneResult(
        make_study(),
        "acc",
        n_trials=10,
        messages=["resumed 'demo' with <6> finished trials"],
        scheduler="asha",
        sampler="tpe",
    )


def test_basic_numbers(result):
    assert result.counts() == {"complete": 3, "pruned": 2, "fail": 1, "interrupted": 1}
    assert result.n_finished == 6
    assert result.direction == "maximize"
    assert (result.best_trial.number, result.best_value, result.best_params) == (1, 0.8, {"x": 0.5, "act": "tanh"})
    assert isinstance(result, StudySummary)


@pytest.mark.parametrize(
    "attrs, counts, finished",
    [
        ({}, {"fail": 1}, 1),
        ({ATTR.INTERRUPTED: "worker died"}, {"interrupted": 1}, 0),
        ({ATTR.INTERRUPTED: "stop now", ATTR.ERROR: "KeyboardInterrupt"}, {"interrupted": 1}, 0),
    ],
)
def test_interrupted_apart_from_failed(attrs, counts, finished):
    study = optuna.create_study()
    study.add_trial(trial(TrialState.FAIL, attrs=attrs))
    summary = StudySummary(study, "acc")
    assert summary.counts() == counts and summary.n_finished == finished


def test_running_and_waiting_trials_are_counted_but_not_finished():
    study = optuna.create_study()
    study.add_trial(trial(value=1.0))
    study.add_trial(create_trial(state=TrialState.RUNNING, params={"x": 0.2}, distributions={"x": DISTS["x"]}))
    study.enqueue_trial({"x": 0.3})
    summary = StudySummary(study, "acc")
    assert summary.counts() == {"complete": 1, "running": 1, "waiting": 1}
    assert summary.n_finished == 1


@pytest.mark.parametrize(
    "direction, expected",
    [
        ("maximize", [(0, 0.5), (1, 0.8), (5, 0.8)]),
        ("minimize", [(0, 0.5), (1, 0.5), (5, 0.3)]),
    ],
)
def test_best_so_far(direction, expected):
    assert StudySummary(make_study(direction), "acc").best_so_far() == expected


@pytest.mark.parametrize(
    "direction, k, numbers",
    [
        ("maximize", 5, [1, 0, 5]),
        ("maximize", 2, [1, 0]),
        ("maximize", 0, []),
        ("minimize", 5, [5, 0, 1]),
        ("minimize", 1, [5]),
    ],
)
def test_top(direction, k, numbers):
    assert [t.number for t in StudySummary(make_study(direction), "acc").top(k)] == numbers


def test_decisions_and_errors(result):
    assert result.decisions() == [
        "trial 2 stopped at epoch 1 (rung 0): acc 0.2 < cutoff 0.6, only the top 1 of 3 go on",
        "trial 6 stopped at epoch 2: best acc 0.25 < median 0.5 of 3 completed trials",
    ]
    assert result.errors() == {3: "ValueError: bad lr"}


def test_decisions_follow_the_direction():
    assert StudySummary(make_study("minimize"), "loss").decisions()[1] == (
        "trial 6 stopped at epoch 2: best loss 0.25 > median 0.5 of 3 completed trials"
    )


def test_summary_text(result):
    assert result.summary() == "\n".join(
        [
            "nbtune study 'demo': 6/10 trials finished (3 complete, 2 stopped early, 1 failed; besides them, 1 interrupted)",
            "best acc = 0.8 (trial 1): x=0.5, act=tanh",
            "  trial 0: acc = 0.5 (x=0.1, act=relu)",
            "  trial 5: acc = 0.3 (x=0.7, act=relu)",
            "2 stopped early, e.g. trial 6 stopped at epoch 2: best acc 0.25 < median 0.5 of 3 completed trials",
            "1 failed, e.g. trial 3: ValueError: bad lr",
            "resumed 'demo' with <6> finished trials",
        ]
    )
    assert repr(result) == result.summary()


def test_summary_of_an_empty_study():
    summary = StudySummary(optuna.create_study(study_name="empty"), "acc")
    assert summary.summary() == "nbtune study 'empty': 0 trials finished ()\nno trial completed yet"
    assert summary.best_so_far() == [] and summary.top() == [] and summary.counts() == {}
    with pytest.raises(ValueError, match="no trial completed yet"):
        _ = summary.best_params


def test_summary_without_a_completed_trial():
    study = optuna.create_study(study_name="s")
    study.add_trial(trial(TrialState.FAIL, attrs={ATTR.ERROR: "RuntimeError: x"}))
    assert StudySummary(study, "acc", n_trials=3).summary() == (
        "nbtune study 's': 1/3 trials finished (1 failed)\nno trial completed: the one that finished failed\n"
        "1 failed, e.g. trial 0: RuntimeError: x"
    )
    study.add_trial(trial(TrialState.FAIL, attrs={ATTR.ERROR: "RuntimeError: x"}))
    study.add_trial(trial(TrialState.PRUNED))
    interrupted = optuna.create_study(study_name="i")
    interrupted.add_trial(trial(TrialState.FAIL, attrs={ATTR.INTERRUPTED: "stopped by the user"}))
    assert "\nno trial completed yet" in StudySummary(interrupted, "acc", n_trials=6).summary()  # it did not fail
    # a study that already had more trials than this run's target: no "3/2"; a paused trial may still go on
    assert (
        StudySummary(study, "acc", n_trials=2)
        .summary()
        .startswith("nbtune study 's': 3 trials finished (1 stopped early, 2 failed)\nno trial completed yet")
    )


def test_html(result):
    page = result.html(plot=False)
    assert page.startswith("<div class='nbtune-summary'><h4 style='margin:4px 0'>nbtune · demo</h4>")
    assert page.endswith("</div>")
    assert "<p>6/10 trials finished · 3 complete · 2 stopped early · 1 failed · 1 interrupted · tpe · asha</p>" in page
    assert "<p><b>best acc = 0.8</b> (trial 1): <code>x=0.5</code>, <code>act=tanh</code></p>" in page
    assert "<thead><tr><th>trial</th><th>acc</th><th>x</th><th>act</th></tr></thead>" in page
    assert "<tr style='background:rgba(52,168,83,0.2)'><td>1</td><td>0.8</td><td>0.5</td><td>tanh</td></tr>" in page
    assert "<tr><td>0</td><td>0.5</td><td>0.1</td><td>relu</td></tr><tr><td>5</td>" in page
    assert "<details><summary>2 trials stopped early</summary><ul><li>trial 2 stopped at epoch 1 (rung 0): " in page
    assert "<details><summary>1 trial failed</summary><ul><li>trial 3: ValueError: bad lr</li></ul></details>" in page
    assert "<p><i>resumed &#x27;demo&#x27; with &lt;6&gt; finished trials</i></p>" in page
    assert "<img" not in page
    assert result._repr_html_().startswith(page[: -len("</div>")])


def test_html_max_rows(result):
    page = result.html(plot=False, max_rows=1)
    assert page.count("<tr>") + page.count("<tr style=") == 2


def test_html_escapes_names_and_values():
    study = optuna.create_study(study_name="a<b>")
    study.add_trial(
        create_trial(value=1.0, params={"x&y": "<i>"}, distributions={"x&y": CategoricalDistribution(["<i>"])})
    )
    page = StudySummary(study, "m<1>").html(plot=False)
    assert "nbtune · a&lt;b&gt;" in page and "<b>best m&lt;1&gt; = 1</b>" in page
    assert "<code>x&amp;y=&lt;i&gt;</code>" in page and "<th>x&amp;y</th>" in page and "<td>&lt;i&gt;</td>" in page
    assert "<i>" not in page


def test_html_of_an_empty_study_has_no_table_and_no_plot():
    page = StudySummary(optuna.create_study(study_name="e"), "acc").html(plot=True)
    assert (
        page == "<div class='nbtune-summary'><h4 style='margin:4px 0'>nbtune · e</h4><p>0 trials finished · </p></div>"
    )


def test_html_with_a_plot(result):
    page = result.html()
    assert "<img alt='best so far' src='data:image/png;base64,iVBORw0KGgo" in page


def test_mimebundle_without_a_view(result):
    bundle = result._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert bundle["text/plain"] == result.summary()


STOP_COLUMNS = ["stopped_epoch", "stopped_rung", "stopped_bracket", "stopped_cutoff", "stopped_n_compared"]


def test_trials_dataframe(result):
    df = result.trials_dataframe()
    assert df.index.name == "number" and list(df.index) == list(range(7))
    assert list(df.columns) == [
        "state",
        "value",
        "datetime_start",
        "datetime_complete",
        "duration",
        "params_x",
        "params_act",
        "epochs",
        "baseline",
        "error",
        "interrupted",
        "output",
        "warnings",
        *STOP_COLUMNS,
        "stopped_reason",
        "paused",
        "continued_as",
        "continues",
        "rerun_of",
        "rerun_as",
    ]
    assert list(df["state"]) == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL", "FAIL", "COMPLETE", "PRUNED"]
    assert list(df["baseline"]) == [True] + [False] * 6
    assert list(df["epochs"].fillna(-1)) == [2, 2, 1, -1, -1, 2, 2]
    assert df.loc[0, "duration"] == pd.Timedelta(seconds=5) and df.loc[5, "duration"] == pd.Timedelta(seconds=20)
    assert df.loc[3, "error"] == "ValueError: bad lr" and df.loc[4, "interrupted"] == "stopped by the user"
    assert df.loc[4, "output"] == "epoch 1\n" and pd.isna(df.loc[0, "output"])
    assert df.loc[2, "stopped_reason"] == format_decision(2, ASHA_STOP, "acc", "maximize")
    assert (df.loc[2, "stopped_epoch"], df.loc[2, "stopped_rung"], df.loc[2, "stopped_cutoff"]) == (1, 0, 0.6)
    assert df.loc[6, "stopped_epoch"] == 2 and math.isnan(df.loc[6, "stopped_rung"])
    assert math.isnan(df.loc[2, "stopped_bracket"]) and df.loc[6, "stopped_n_compared"] == 3
    assert df.loc[[0, 1, 3, 4, 5], "stopped_epoch"].isna().all()
    assert df.loc[[0, 1, 3, 4, 5], "stopped_reason"].isna().all()
    assert all(df[c].dtype == np.float64 for c in STOP_COLUMNS)


def test_trials_dataframe_without_stopped_trials():
    study = optuna.create_study()
    study.add_trial(trial(value=0.5))
    study.add_trial(trial(TrialState.FAIL, attrs={ATTR.ERROR: "E"}))
    df = TuneResult(study, "acc").trials_dataframe()
    for col in STOP_COLUMNS:
        assert col in df and df[col].isna().all() and df[col].dtype == np.float64
    assert "stopped_reason" in df and df["stopped_reason"].isna().all()
    assert all(c in df and df[c].isna().all() for c in ("paused", "continued_as", "continues"))
    assert pd.isna(df["error"].iloc[0]) and df["error"].iloc[1] == "E"
    # "none" is None in the text columns, whether or not another trial has text there
    assert df["error"].iloc[0] is None and df["output"].iloc[0] is None and df["stopped_reason"].iloc[0] is None


def test_trials_dataframe_of_an_empty_study():
    df = TuneResult(optuna.create_study(), "acc").trials_dataframe()
    assert df.empty and list(df.columns) == []


@pytest.mark.parametrize(
    "value, text",
    [
        (0.5, "0.5"),
        (0.0, "0"),
        (-0.0, "0"),  # a gap of -0.0 is 0 (it read "a gap of -0")
        (0.123456, "0.1235"),
        (1.0, "1"),
        (0.001, "0.001"),
        (0.000999, "9.990e-04"),
        (-1e-5, "-1.000e-05"),
        (99999.0, "1e+05"),
        (100000.0, "1.000e+05"),
        (-123456.0, "-1.235e+05"),
        (math.inf, "inf"),
        (math.nan, "nan"),
        (np.float64(2e-4), "2.000e-04"),
        (3, "3"),
        (123456789, "123456789"),
        (True, "True"),
        (None, "None"),
        ("relu", "relu"),
    ],
)
def test_fmt(value, text):
    assert fmt(value) == text


@pytest.mark.parametrize("n, text", [(0, "0 trials"), (1, "1 trial"), (2, "2 trials"), (21, "21 trials")])
def test_plural_trials(n, text):
    assert plural_trials(n) == text


def test_a_paused_trial_whose_continuation_was_cut_counts_as_paused():
    """After an Interrupt with two workers: '10/14 finished · 1 complete · 8 paused · 2 interrupted ·
    2 paused and continued' did not add up: a paused trial whose continuation was cut goes on
    again, so it is paused, not continued (found trying nbtune as a new user)."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from nbtune.store.attrs import ATTR
    from nbtune.view.summary import StudySummary

    study = optuna.create_study(direction="maximize")
    dist = {"x": FloatDistribution(0, 1)}
    paused = {ATTR.DECISION: {"paused": True, "epoch": 3, "rank": 2, "n_compared": 3, "n_keep": 1}}
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.9, params={"x": 0.1}, distributions=dist))
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params={"x": 0.2},
            distributions=dist,
            user_attrs=paused,
            intermediate_values={3: 0.5},
        )
    )
    cut = {ATTR.PROMOTED: {"from": 1, "root": 1, "epoch": 3}, ATTR.INTERRUPTED: "stopped by the user"}
    study.add_trial(create_trial(state=TrialState.FAIL, params={"x": 0.2}, distributions=dist, user_attrs=cut))
    words = StudySummary(study, "acc", n_trials=2).count_words()
    assert words == ["1 complete", "1 paused", "1 interrupted"], words


def test_a_whole_float_hyperparameter_keeps_its_point():
    """choice("sqrt", "log2", 1.0, 0.5) showed max_features=1: to scikit-learn one feature, where
    1.0 is all of them (found trying nbtune as a new user)."""
    from nbtune.view.format import fmt_param

    assert [fmt_param(v) for v in (1.0, -2.0, 1, 0.5, 1e6, "sqrt", True, None)] == [
        "1.0",
        "-2.0",
        "1",
        "0.5",
        "1.000e+06",
        "sqrt",
        "True",
        "None",
    ]
    study = optuna.create_study(direction="maximize")
    dist = {"max_features": optuna.distributions.CategoricalDistribution(["sqrt", 1.0, 0.5])}
    study.add_trial(optuna.trial.create_trial(value=0.9, params={"max_features": 1.0}, distributions=dist))
    summary = StudySummary(study, "acc")
    assert "max_features=1.0" in summary.summary()
    assert "<code>max_features=1.0</code>" in summary.html(plot=False)
    assert "<td>1.0</td>" in summary.html(plot=False)


def test_a_holdout_better_than_the_metric_is_not_said_to_be_within_a_gap():
    """'a gap of -0.6811 after 4 trials ... (within 0.4359)' read as a contradiction (found trying
    nbtune as a new user): a holdout that scores better says so."""
    from nbtune.view.checks import HoldoutReport

    better = HoldoutReport("val_rmse", "test_rmse", "minimize", 3, 4.36, 3.68, 4, None)
    assert better.gap < 0 and not better.warn
    text = better.sentence()
    assert "within" not in text
    assert text.endswith(
        ": the holdout scores better than the metric, so nothing says the search's score is optimistic."
    )
    worse = HoldoutReport("val_acc", "test_acc", "maximize", 3, 0.90, 0.89, 4, None)
    assert worse.sentence().endswith("(within 0.02).")


def test_one_trial_is_a_trial():
    study = optuna.create_study(study_name="one")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    assert StudySummary(study, "loss").summary().startswith("nbtune study 'one': 1 trial finished (1 complete)")


def test_a_name_people_guess_on_a_result_says_where_it_is():
    """'res.df' raised a plain AttributeError (found trying nbtune as a new user): what people guess
    from other tools names what holds it; other names stay plain, with Python's own suggestion."""
    import optuna

    from nbtune.view.result import TuneResult

    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    res = TuneResult(study, "loss")
    with pytest.raises(AttributeError, match=r"no attribute 'df': res.trials_dataframe\(\) is every trial"):
        res.df  # noqa: B018
    with pytest.raises(AttributeError, match=r"'best_model': res.best_state\(\)"):
        res.best_model  # noqa: B018
    with pytest.raises(AttributeError) as plain:
        res.best_param  # noqa: B018
    assert str(plain.value) == "'TuneResult' object has no attribute 'best_param'" and plain.value.name == "best_param"
    assert not hasattr(res, "__getstate_x__") and not hasattr(res, "_repr_latex_")
    assert res.best_params == study.best_params  # the real ones are untouched
