"""The matplotlib figures of a search: which panels, their data, PNG bytes, importance."""

from __future__ import annotations

import base64
import datetime

import optuna
import pytest
from matplotlib.figure import Figure
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from nbtune.view import plots
from nbtune.view.summary import StudySummary

PNG = b"\x89PNG\r\n\x1a\n"
T0 = datetime.datetime(2024, 5, 1, 12, 0, 0)
DISTS = {"x": FloatDistribution(0.0, 1.0), "n": IntDistribution(1, 8)}


def trial(value=None, x=0.5, n=1, state=TrialState.COMPLETE, curve=None, done_after=None, one_param=False):
    params = {"x": x} if one_param else {"x": x, "n": n}
    t = create_trial(
        state=state,
        value=value,
        params=params,
        distributions={k: DISTS[k] for k in params},
        intermediate_values=curve or {},
    )
    if done_after is not None:
        t.datetime_start = T0
        t.datetime_complete = T0 + datetime.timedelta(seconds=done_after)
    return t


def summary_of(trials, direction="maximize"):
    study = optuna.create_study(direction=direction)
    for t in trials:
        study.add_trial(t)
    return StudySummary(study, "acc")


def grid_trials(k, **kw):
    return [trial(value=(i % 5) / 5 + (i % 3) / 30, x=(i % 5) / 5, n=1 + i % 3, **kw) for i in range(k)]


@pytest.mark.parametrize(
    "trials, n_axes",
    [
        ([], 2),
        ([trial(value=0.5)], 2),
        ([trial(state=TrialState.FAIL)], 2),
        ([trial(value=0.5), trial(value=0.7)], 2),
        ([trial(value=0.5, curve={1: 0.3, 2: 0.5})], 3),
        ([trial(value=0.5), trial(state=TrialState.PRUNED, curve={1: 0.1})], 3),
        ([trial(state=TrialState.RUNNING, curve={1: 0.1})], 3),
    ],
)
def test_dashboard_figure_panels(trials, n_axes):
    fig = plots.dashboard_figure(summary_of(trials))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes


def test_no_importance_panel_below_four_complete_trials():
    summary = summary_of(grid_trials(3, curve={1: 0.1}))
    assert len(plots.dashboard_figure(summary, with_importance=True).axes) == 3
    assert len(plots.dashboard_figure(summary_of(grid_trials(3)), with_importance=True).axes) == 2


@pytest.mark.parametrize("direction, best", [("maximize", [0.5, 0.8, 0.8]), ("minimize", [0.5, 0.5, 0.3])])
def test_history_panels(direction, best):
    summary = summary_of(
        [
            trial(value=0.5, done_after=10),
            trial(value=0.8, done_after=30),
            trial(state=TrialState.FAIL),
            trial(value=0.3, done_after=20),
        ],
        direction,
    )
    history, over_time = plots.dashboard_figure(summary).axes
    assert history.get_title() == "best so far" and history.get_ylabel() == "acc"
    step = history.lines[0]
    assert list(step.get_xdata()) == [0, 1, 3] and list(step.get_ydata()) == best
    assert over_time.get_title() == "best so far over time"
    assert over_time.get_xlabel() == "seconds since the first trial"
    line = over_time.lines[0]
    by_time = {"maximize": [0.5, 0.5, 0.8], "minimize": [0.5, 0.3, 0.3]}[direction]
    assert list(line.get_xdata()) == [10.0, 20.0, 30.0] and list(line.get_ydata()) == by_time


def test_panels_without_a_completed_trial_stay_empty():
    history, over_time, curves = plots.dashboard_figure(
        summary_of([trial(state=TrialState.PRUNED, curve={1: 0.2}), trial(state=TrialState.FAIL)])
    ).axes
    assert len(history.lines) == 0 and history.get_legend() is None
    assert len(over_time.lines) == 0 and over_time.get_title() == ""
    assert curves.get_title() == "learning curves (x = stopped early)" and len(curves.lines) == 1


def test_learning_curves_draw_the_best_on_top():
    summary = summary_of(
        [
            trial(value=0.5, curve={1: 0.4, 2: 0.5}),
            trial(value=0.8, curve={1: 0.6, 2: 0.8}),
            trial(state=TrialState.PRUNED, curve={1: 0.1}),
        ]
    )
    curves = plots.dashboard_figure(summary).axes[2]
    assert len(curves.lines) == 4
    assert list(curves.lines[-1].get_ydata()) == [0.6, 0.8]
    assert curves.get_legend().get_texts()[0].get_text() == "best (trial 1)"


def test_many_learning_curves_are_thinned():
    trials = [trial(value=i / 20, curve={1: i / 40, 2: i / 20}) for i in range(20)]
    ax = Figure().subplots()
    assert plots._draw_curves(ax, summary_of(trials), max_curves=8) is True
    assert len(ax.lines) == 8 + 1


def test_to_png():
    data = plots.to_png(plots.dashboard_figure(summary_of([trial(value=0.5, curve={1: 0.5})])))
    assert isinstance(data, bytes) and data.startswith(PNG) and len(data) > 1000


def test_history_png_base64():
    text = plots.history_png_base64(summary_of(grid_trials(3)))
    assert isinstance(text, str)
    assert base64.b64decode(text, validate=True).startswith(PNG)


def test_history_png_base64_never_raises():
    broken = StudySummary(None, "acc")
    with pytest.raises(AttributeError):
        plots.dashboard_figure(broken)
    assert plots.history_png_base64(broken) == ""


@pytest.mark.parametrize(
    "trials",
    [
        [],
        grid_trials(3),
        [*grid_trials(3), trial(state=TrialState.PRUNED, curve={1: 0.1}), trial(state=TrialState.FAIL)],
        grid_trials(10, one_param=True),
    ],
)
def test_importance_needs_four_complete_trials_and_two_params(trials):
    summary = summary_of(trials)
    assert plots.importance(summary) == {}


@pytest.mark.slow  # fANOVA imports scikit-learn: seconds without cached bytecode
def test_importance_and_its_panel():
    summary = summary_of(grid_trials(12, curve={1: 0.1}))
    imp = plots.importance(summary)
    assert set(imp) == {"x", "n"}
    assert sum(imp.values()) == pytest.approx(1.0)
    assert imp["x"] > imp["n"]
    assert set(plots.importance(summary, max_trials=5)) == {"x", "n"}
    fig = plots.dashboard_figure(summary, with_importance=True)
    assert len(fig.axes) == 4 and len(plots.dashboard_figure(summary).axes) == 3
    panel = fig.axes[-1]
    assert panel.get_title() == "what mattered"
    assert [t.get_text() for t in panel.get_yticklabels()] == list(imp)[::-1]


def test_importance_rests_on_enough_trials_and_says_how_many():
    """Below 10 complete trials importances flip from run to run: no panel; above, the count is shown."""
    assert plots.importance(summary_of(grid_trials(9, curve={1: 0.1}))) == {}
    summary = summary_of(grid_trials(10, curve={1: 0.1}))
    assert set(plots.importance(summary)) == {"x", "n"}
    panel = plots.dashboard_figure(summary, with_importance=True).axes[-1]
    assert panel.get_xlabel() == "importance (PED-ANOVA, 10 complete trials)"


def test_text_is_readable():
    """At least 11 px at 100 % zoom: font size in points x dpi / 72."""
    fig = plots.dashboard_figure(summary_of(grid_trials(12, curve={1: 0.1})), with_importance=True)
    sizes = [t.get_fontsize() for ax in fig.axes for t in (ax.title, ax.xaxis.label, *ax.get_xticklabels())]
    sizes += [t.get_fontsize() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert min(sizes) * fig.dpi / 72 >= 11
