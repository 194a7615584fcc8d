"""The matplotlib figures of a search: which panels, their data, PNG bytes, importance."""

from __future__ import annotations

import base64
import datetime
import itertools

import optuna
import pytest
from matplotlib.figure import Figure
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

import nbtune.exceptions
from nbtune.store.attrs import ATTR
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
    assert over_time.get_xlabel() == "seconds of search (time between runs left out)"
    line = over_time.lines[0]
    by_time = {"maximize": [0.5, 0.5, 0.8], "minimize": [0.5, 0.3, 0.3]}[direction]
    assert list(line.get_xdata()) == [10.0, 20.0, 30.0] and list(line.get_ydata()) == by_time


def test_best_so_far_over_time_leaves_out_the_time_between_runs():
    """A study resumed later: 'best so far over time' ran from 0 to 430 s, a flat line over the hours
    nothing ran (found trying nbtune as a new user). The axis is the time the study searched."""
    first, later = trial(value=0.5, done_after=10), trial(value=0.8, done_after=15)
    later.datetime_start = T0 + datetime.timedelta(seconds=3600)  # the next day's run: 15 s of it
    later.datetime_complete = later.datetime_start + datetime.timedelta(seconds=15)
    _, over_time = plots.dashboard_figure(summary_of([first, later])).axes
    assert list(over_time.lines[0].get_xdata()) == [10.0, 25.0]


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
    assert panel.get_xlabel().replace("\n", " ") == "importance (PED-ANOVA, 10 complete trials)"


def test_text_is_readable():
    """At least 11 px at 100 % zoom: font size in points x dpi / 72."""
    fig = plots.dashboard_figure(summary_of(grid_trials(12, curve={1: 0.1})), with_importance=True)
    sizes = [t.get_fontsize() for ax in fig.axes for t in (ax.title, ax.xaxis.label, *ax.get_xticklabels())]
    sizes += [t.get_fontsize() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert min(sizes) * fig.dpi / 72 >= 11


def test_best_so_far_ignores_trials_stopped_early():
    """A stopped trial's value is its last epoch's (e.g. epoch 1): never a finished result."""
    summary = summary_of(
        [
            trial(value=0.5),
            trial(value=0.99, state=TrialState.PRUNED, curve={1: 0.99}),
            trial(value=0.7),
        ]
    )
    history = plots.dashboard_figure(summary).axes[0]
    assert list(history.lines[0].get_ydata()) == [0.5, 0.7]
    stopped = [c for c in history.collections if c.get_label() == "stopped early"]
    assert len(stopped) == 1 and list(stopped[0].get_offsets()[0]) == [1, 0.99]


LR_ACT = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "act": optuna.distributions.CategoricalDistribution(["a", "b"]),
}


def log_trials(k):
    dists = LR_ACT
    out = []
    for i in range(k):
        lr = 10 ** (-4 + 3 * i / (k - 1))
        curve = {e: (1 - 0.5**e) * (1 - abs(lr - 0.01)) for e in range(1, 6)}
        out.append(
            create_trial(
                state=TrialState.COMPLETE,
                value=curve[5],
                params={"lr": lr, "act": "ab"[i % 2]},
                distributions=dists,
                intermediate_values=curve,
                user_attrs={ATTR.RECORD: {"train_acc": curve[5] + 0.05, "n_params": 10 * i}},
            )
        )
    return out


def test_learning_curves_coloured_by_a_parameter_and_labelled_by_trial():
    summary = summary_of(log_trials(12))
    fig = plots.curves_figure(summary, color_by="lr")
    ax, bar = fig.axes
    assert bar.get_ylabel() == "lr" and bar.get_yscale() == "log"  # a log parameter gets a log colour scale
    colours = {tuple(line.get_color()) for line in ax.lines[:-1]}
    assert len(colours) == 12  # one colour per lr value
    labels = [t.get_text() for t in ax.texts]
    best = summary.study.best_trial
    assert len(labels) == 5 and f"#{best.number} {best.value:.4g} ★" in labels
    # labels of curves ending at nearly the same value are pushed apart, never on top of each other
    plots.to_png(fig)  # lays the figure out
    renderer = fig._get_renderer()
    ys = sorted(t.get_window_extent(renderer).y0 for t in ax.texts)
    assert all(b - a >= 10 for a, b in itertools.pairwise(ys))
    by_act = plots.curves_figure(summary, color_by="act")
    legend = by_act.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["act=a", "act=b"]
    assert "colour = act" in by_act.axes[0].get_title()


@pytest.mark.parametrize("name", list(plots.PLOT_VIEWS))
def test_every_view_is_readable_and_leaves_the_users_matplotlib_alone(name):
    import matplotlib
    import matplotlib.pyplot as plt

    summary = summary_of(log_trials(12))
    before = dict(matplotlib.rcParams)
    open_before = plt.get_fignums()
    fig = plots.view_figure(name, summary, plots.PlotChoice(params=("lr", "act"), color_by="lr"))
    assert dict(matplotlib.rcParams) == before  # Optuna's ggplot style sheet does not stay behind
    assert plt.get_fignums() == open_before  # nor an open pyplot figure the inline backend would show
    w, h = fig.get_size_inches() * fig.dpi
    assert w >= 880 and h >= 400
    png = plots.to_png(fig)
    assert png.startswith(PNG)
    texts = [t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label) if t.get_text()]
    assert texts and min(t.get_fontsize() for t in texts) * fig.dpi / 72 >= 11


def _message(fig):
    return fig.axes[0].texts[0].get_text()


def halving_trials(k, complete=3):
    """``k`` configurations stopped at epoch 1 as successive halving stops them, ``complete`` of
    them (the best at epoch 1) trained on to epoch 9; lr explains the metric, act does not."""
    dists = LR_ACT
    out = []
    for i in range(k):
        lr = 10 ** (-4 + 3 * i / (k - 1))
        first = 0.3 + 0.5 * i / k
        done = i >= k - complete
        curve = {1: first, 3: first + 0.05, 9: first + 0.1} if done else {1: first}
        out.append(
            create_trial(
                state=TrialState.COMPLETE if done else TrialState.PRUNED,
                value=curve[9] if done else None,
                params={"lr": lr, "act": "ab"[i % 2]},
                distributions=dists,
                intermediate_values=curve,
            )
        )
    return out


def test_importance_after_successive_halving_compares_configurations_at_an_epoch():
    """With the default ASHA few trials complete (3-5 of 40-60 in teammates' searches): the
    importance view said it needed 10 complete trials. It compares the configurations at the
    largest epoch 10 of them reached, as the default sampler's model does."""
    summary = summary_of(halving_trials(14))
    imp = plots.importance_of(summary)
    assert (imp.n, imp.epoch) == (14, 1)
    assert imp.values["lr"] > imp.values["act"]
    assert plots.importance(summary) == imp.values
    fig = plots.view_figure("importance", summary)
    assert fig.axes[0].get_xlabel().replace("\n", " ") == "importance (PED-ANOVA, 14 configurations at epoch 1)"
    assert fig.axes[0].get_title() == "what mattered by epoch 1"
    panel = plots.dashboard_figure(summary, with_importance=True).axes[-1]
    assert panel.get_title() == "what mattered by epoch 1"
    # a configuration paused at epoch 1 and trained on later counts once, through its furthest trial
    again = [
        create_trial(
            state=TrialState.PRUNED,
            params=t.params,
            distributions=t.distributions,
            intermediate_values={1: t.intermediate_values[1]},
        )
        for t in summary.trials
        if t.state == TrialState.COMPLETE
    ]
    assert plots.importance_of(summary_of(halving_trials(14) + again)).n == 14
    # enough complete trials: their final values, as before
    assert plots.importance_of(summary_of(halving_trials(14, complete=10))).epoch is None
    assert plots.importance_of(summary_of(halving_trials(9))) == plots.Importance({}, 0)


def test_a_lineage_of_a_trial_without_a_learning_curve_says_why():
    """res.plot("lineage") of a cell without an epochs loop raised an IndexError (found trying
    nbtune as a new user); every other view that cannot be drawn says why."""
    from nbtune.view.lineage import lineage_figure  # registers the view, as nbtune's result does

    no_epochs = summary_of(grid_trials(4))
    assert "has no learning curve (mark the cell" in _message(plots.view_figure("lineage", no_epochs))
    assert "no trial 9 in this study" in _message(lineage_figure(no_epochs, trial=9))
    # learning curves of a cell without an epochs loop say why there are none (it said "no trial has
    # reported an epoch yet" after the search; found trying nbtune as a new user)
    assert "the cell has no epochs loop" in _message(plots.view_figure("learning curves", no_epochs))
    # a trial that trained in one go says so (it said "1 intervals, state copied 0 time(s)")
    fig = lineage_figure(summary_of(log_trials(4)))
    assert fig.axes[0].get_title().endswith("trained in one go: no pause, promotion or PBT copy in its lineage")


def test_a_view_that_cannot_be_drawn_yet_says_why():
    few = summary_of(log_trials(4))
    fig = plots.view_figure("importance", few)
    assert "importance needs 10 configurations measured at one epoch (4 so far)" in fig.axes[0].texts[0].get_text()
    assert "raise -n" in fig.axes[0].texts[0].get_text()
    no_epochs = summary_of(grid_trials(4))
    assert "importance needs 10 complete trials (4 so far)" in _message(plots.view_figure("importance", no_epochs))
    one_param = summary_of(grid_trials(12, one_param=True))
    assert "fewer than two" in _message(plots.view_figure("importance", one_param))
    fig = plots.view_figure("contour", summary_of([]))
    assert "contour needs 3 complete trials; 0 so far" in fig.axes[0].texts[0].get_text()
    with pytest.raises(nbtune.exceptions.ConfigError, match="plot view must be one of overview, learning curves"):
        plots.view_figure("pie", few)
    # the names as the README writes them, in any case: res.plot("edf") failed (found trying nbtune as a new user)
    assert "needs 10 configurations" in _message(plots.view_figure("Importance", few))
    assert plots.view_figure("edf", few) is not None


def test_recorded_variables_are_plotted_against_the_metric():
    fig = plots.view_figure("recorded", summary_of(log_trials(12)))
    axes = fig.axes
    assert [ax.get_xlabel() for ax in axes] == ["train_acc", "n_params"]
    assert all(ax.get_ylabel() == "acc" for ax in axes)
    assert len(axes[0].collections[0].get_offsets()) == 12
    assert (
        "no recorded numbers" in plots.view_figure("recorded", summary_of(grid_trials(3))).axes[0].texts[0].get_text()
    )


def test_a_diverged_value_does_not_flatten_the_others():
    trials = [trial(value=0.5 + i / 100, curve={1: 0.3, 2: 0.5 + i / 100}) for i in range(10)]
    trials.append(trial(value=6.7e22, curve={1: 1e10, 2: 6.7e22}))
    summary = summary_of(trials, direction="minimize")
    curves = plots.curves_figure(summary).axes[0]
    _, high = curves.get_ylim()
    assert high < 10 and "1 off the scale" in curves.get_title()
    history = plots.dashboard_figure(summary).axes[0]
    assert history.get_ylim()[1] < 10 and "off the scale" in history.get_title()
    assert plots.robust_ylim([0.1, 0.2, 0.3, 0.25, 0.15]) is None  # nothing far out: matplotlib's own limits


def test_the_slice_plots_first_trials_are_visible():
    """Optuna's slice plot colours points by trial number from white: the baseline and the first
    trials were near-invisible on its grey background (found trying nbtune as a new user)."""
    fig = plots.view_figure("slice", summary_of(log_trials(12)))
    coloured = [c for ax in fig.axes for c in ax.collections if c.get_array() is not None]
    assert coloured and all(c.get_cmap().name == "viridis" for c in coloured)
    first = min(coloured[0].get_array())
    assert min(coloured[0].get_cmap()(coloured[0].norm(first))[:3]) < 0.9  # not white


def _title(fig):
    """A view's title as one line: the figure's, or (parallel coordinates) its axes' own."""
    return (fig.get_suptitle() or fig.axes[0].get_title()).replace("\n", " ")


@pytest.mark.parametrize("view", ["slice", "contour", "parallel coordinates"])
def test_optunas_views_say_which_trials_they_leave_out(view):
    """They draw complete trials only: a contour interpolated from 7 of 30 trials said nothing of the
    23 stopped early (found trying nbtune as a new user)."""
    trials = [trial(value=0.5 + i / 20, x=i / 10, n=1 + i % 3, curve={1: 0.3, 2: 0.5 + i / 20}) for i in range(5)]
    trials += [trial(value=0.2, x=0.05 * i, n=2, state=TrialState.PRUNED, curve={1: 0.2}) for i in range(1, 4)]
    title = _title(plots.view_figure(view, summary_of(trials)))
    assert title.endswith("drawn: the 5 complete trials; left out: 3 stopped early"), title
    assert "left out" not in _title(plots.view_figure(view, summary_of(trials[:5])))
    trials[-1].user_attrs["nbtune:decision"] = {
        "epoch": 1,
        "paused": True,
    }  # (may still go on: said as the header says it)
    title = _title(plots.view_figure(view, summary_of(trials)))
    assert title.endswith("left out: 2 stopped early and 1 paused"), title
    # and so does the message when too few are complete to draw (one is enough for a slice)
    few = plots.view_figure(view, summary_of(trials[:1] + trials[5:]))
    said = [t.get_text() for ax in few.axes for t in ax.texts]
    if view != "slice":
        assert said and said[0].endswith("(not drawn: 2 stopped early and 1 paused)"), said


def test_epoch_axes_tick_whole_epochs():
    """Learning curves over 1..5 epochs were ticked 1.5, 2.5, ... (found trying nbtune as a new user)."""
    short = [trial(value=0.2 + i / 10, x=i / 10, curve={1: 0.1, 2: 0.15 + i / 20, 3: 0.2 + i / 10}) for i in range(4)]
    fig = plots.curves_figure(summary_of(short))
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_the_feasible_legend_of_parallel_coordinates_stays_off_the_title():
    """With guardrails, Optuna's Feasible/Infeasible legend sat on the plot's title (found trying
    nbtune as a new user)."""
    study = optuna.create_study(direction="maximize")
    for i, t in enumerate(grid_trials(8)):
        t.system_attrs["constraints"] = [-1.0 if i % 3 else 1.0]  # as Optuna keeps a trial's guardrails
        study.add_trial(t)
    fig = plots.view_figure("parallel coordinates", StudySummary(study, "acc"))
    ax = fig.axes[0]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    legend, title = ax.get_legend(), ax.title
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["Feasible", "Infeasible"]
    box, head = legend.get_window_extent(renderer), title.get_window_extent(renderer)
    assert box.y1 <= head.y0 + 1 or box.y0 >= head.y1 - 1, (box, head)  # above or below it, not on it


@pytest.mark.parametrize("view", ["slice", "contour"])
def test_a_log_axis_over_a_decade_or_two_is_labelled_without_overlap(view):
    """A width searched over logint(16, 512): matplotlib labelled the minor ticks of its log axis,
    '2x10^1 3x10^1 4x10^1' on top of each other (found trying nbtune as a new user). Plain numbers,
    apart; an axis over many decades keeps its powers of ten."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    dists = {"width": IntDistribution(16, 512, log=True), "lr": FloatDistribution(1e-6, 1.0, log=True)}
    study = optuna.create_study(direction="maximize")
    for i in range(20):
        params = {"width": int(16 * 32 ** (i / 19)), "lr": 10 ** (-6 + 6 * ((i * 7) % 20) / 19)}
        study.add_trial(create_trial(value=i / 20, params=params, distributions=dists))
    fig = plots.view_figure(view, StudySummary(study, "acc"), plots.PlotChoice(params=("width", "lr")))
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    axes = {a.get_label().get_text(): a for ax in fig.axes for a in (ax.xaxis, ax.yaxis) if a.get_scale() == "log"}
    assert set(axes) == {"width", "lr"}, axes
    for name, axis in axes.items():
        lo, hi = sorted(axis.get_view_interval())
        shown = [
            t
            for t in axis.get_ticklabels(which="both")
            if t.get_visible() and t.get_text() and lo <= t.get_position()[axis.axis_name == "y"] <= hi
        ]
        boxes = sorted((t.get_window_extent(renderer) for t in shown), key=lambda b: (b.x0, b.y0))
        assert all(not a.overlaps(b) for a, b in itertools.pairwise(boxes)), [t.get_text() for t in shown]
        texts = [t.get_text() for t in shown]
        if name == "width":
            assert texts == ["20", "50", "100", "200", "500"], texts
        else:
            assert len(texts) >= 3 and all("10^" in t for t in texts), texts


def test_importance_of_a_space_with_conditional_parameters_ranks_the_choice_that_decides():
    """family decided everything (ridge and lasso ~10, rf 82, knn 120) and PED-ANOVA ranked it near 0,
    with alpha, read only by two families, at 0.93 (found trying nbtune as a new user). A space whose
    cell reads parameters only under some choices is ranked by a random forest's impurity, said."""
    from optuna.distributions import CategoricalDistribution

    dists = {
        "family": CategoricalDistribution(["ridge", "lasso", "rf", "knn"]),
        "alpha": FloatDistribution(1e-3, 100, log=True),
        "k": IntDistribution(1, 50),
    }
    cell = (
        'family = "ridge"  # tune: choice("ridge", "lasso", "rf", "knn")\nalpha = 1.0  # tune: loguniform(1e-3, 100)\n'
        'k = 5  # tune: int(1, 50)\nif family in ("ridge", "lasso"):\n    loss = 10 + alpha / 100\n'
        'elif family == "knn":\n    loss = 120 + k / 10\nelse:\n    loss = 82.0\n'
    )
    study = optuna.create_study()
    study.set_user_attr(ATTR.CELL, {"source": cell, "line_offset": 1})
    rng = __import__("random").Random(0)
    for i in range(40):  # mostly lasso, as TPE draws once it found it
        family = "lasso" if i % 10 < 7 else ["ridge", "rf", "knn"][i % 3]
        params = {"family": family, "alpha": 10 ** rng.uniform(-3, 2), "k": rng.randint(1, 50)}
        loss = {"ridge": 10 + params["alpha"] / 100, "lasso": 10 + params["alpha"] / 100, "knn": 120 + params["k"] / 10}
        study.add_trial(create_trial(value=loss.get(family, 82.0), params=params, distributions=dists))
    imp = plots.importance_of(StudySummary(study, "loss"))
    assert imp.method == "mean decrease in impurity" and imp.conditional == ("alpha", "k")
    assert max(imp.values, key=imp.values.get) == "family", imp.values
    fig = plots.view_figure("importance", StudySummary(study, "loss"))
    texts = [t.get_text() for t in fig.axes[0].texts] + [fig.axes[0].get_xlabel().replace("\n", " ")]
    assert any("read only under some choices: alpha, k" in t for t in texts)
    assert any("mean decrease in impurity" in t for t in texts)
    # a cell without such branches keeps Optuna's default
    plain = cell.split("if family")[0] + "loss = alpha + k + len(family)\n"
    study.set_user_attr(ATTR.CELL, {"source": plain, "line_offset": 1})
    assert plots.importance_of(StudySummary(study, "loss")).method == "PED-ANOVA"


@pytest.mark.parametrize("view", ["slice", "parallel coordinates"])
def test_a_space_of_many_parameters_shows_the_most_important_in_the_dashboards_width(view):
    """Eleven parameters: a slice plot 3,500 px wide, and parallel coordinates whose labels ran into
    each other (found trying nbtune as a new user). The eight most important, said in the title;
    the slices four a row in 900 px, each row's first with the metric's ticks."""
    names = [f"p{i}" for i in range(11)]
    dists = {n: FloatDistribution(0.0, 1.0) for n in names}
    rng = __import__("random").Random(0)
    study = optuna.create_study()
    for _ in range(30):
        params = {n: rng.random() for n in names}
        study.add_trial(create_trial(value=10 * params["p9"] + 0.1 * params["p0"], params=params, distributions=dists))
    fig = plots.view_figure(view, StudySummary(study, "loss"))
    assert _title(fig).endswith("8 of 11 parameters, the most important (params=[...] for others)"), _title(fig)
    shown = {t.get_text() for ax in fig.axes for t in [ax.xaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]}
    assert "p9" in shown
    assert fig.get_size_inches()[0] <= 9.0 or view != "slice", fig.get_size_inches()
    if view == "slice":
        panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert len(panels) == 8
        rows = sorted({round(ax.get_position().y0, 3) for ax in panels})
        assert len(rows) == 2
        firsts = [ax for ax in panels if round(ax.get_position().x0, 3) == round(panels[0].get_position().x0, 3)]
        assert len(firsts) == 2 and all(ax.get_ylabel() == "loss" for ax in firsts)
    # asked for, all of them are drawn
    every = plots.view_figure(view, StudySummary(study, "loss"), plots.PlotChoice(params=tuple(names)))
    assert "of 11 parameters" not in _title(every)


def test_learning_curves_of_a_branch_without_an_epochs_loop_say_what_is_not_drawn():
    """color_by="model" where the best, a forest, ran no epochs loop: nothing was drawn in black and the
    key listed model=rf with nothing of it plotted (found trying nbtune as a new user)."""
    from optuna.distributions import CategoricalDistribution

    dists = {"model": CategoricalDistribution(["sgd", "rf"]), "x": FloatDistribution(0.0, 1.0)}
    study = optuna.create_study(direction="maximize")
    for i in range(6):
        curve = {1: 0.5 + i / 100, 2: 0.6 + i / 100} if i % 2 else {}
        params = {"model": "sgd" if i % 2 else "rf", "x": i / 10}
        value = 0.6 + i / 100 if i % 2 else 0.95
        study.add_trial(create_trial(value=value, params=params, distributions=dists, intermediate_values=curve))
    fig = plots.curves_figure(StudySummary(study, "acc"), color_by="model")
    title = fig.axes[0].get_title().replace("\n", " ")
    assert "the best, trial 0, has no curve" in title and "3 finished without one" in title, title
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["model=sgd"]
