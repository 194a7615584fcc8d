"""matplotlib figures of a search: the overview, and one figure per view of the chooser.

nbtune's own figures are built with ``matplotlib.figure.Figure`` (no pyplot), so drawing
them never touches the user's current figure. The views that Optuna already draws (slice,
contour, parallel coordinate, importance, EDF, timeline) come from
``optuna.visualization.matplotlib``; those use pyplot and a global style sheet, so they are
drawn inside ``matplotlib.rc_context`` (the user's style comes back) and their figures are
closed at once (the inline backend never shows them a second time).
"""

from __future__ import annotations

import base64
import io
import itertools
import logging
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbtune import _compat
from nbtune._registry import Registry
from nbtune.store.attrs import ATTR, busy_spans, conditional_reads, continuations, is_feasible, recorded_curves
from nbtune.view.format import fmt, is_number

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from nbtune.view.summary import StudySummary as TuneResult

__all__ = [
    "PLOT_VIEWS",
    "PlotChoice",
    "PlotView",
    "curves_figure",
    "dashboard_figure",
    "history_png_base64",
    "importance",
    "to_png",
    "view_figure",
]

_logger = logging.getLogger(__name__)

_BEST = "#1a73e8"
_DONE = "#5f6368"
_PRUNED = "#e37400"
_FAIL = "#d93025"
WIDE = (9.0, 4.2)  # inches at 100 dpi: 900 px, as wide as a notebook's output area


def robust_ylim(values: list[float]) -> tuple[float, float] | None:
    """Limits that keep the bulk of ``values`` readable when a few are off the scale (a diverged
    loss of 1e22 would flatten every other curve to a line at 0): the 10th to 90th percentile,
    widened by three times its span. None when nothing is far out."""
    finite = sorted(v for v in values if v == v and abs(v) != float("inf"))
    if len(finite) < 5:
        return None
    lo, hi = finite[len(finite) // 10], finite[(len(finite) * 9) // 10]
    span = (hi - lo) or abs(hi) or 1.0
    low, high = lo - 3 * span, hi + 3 * span
    if finite[0] >= low and finite[-1] <= high:
        return None
    return max(finite[0], low), min(finite[-1], high)


def _clip_axis(ax: Any, values: list[float]) -> int:
    """Apply :func:`robust_ylim`; returns how many values fall outside (0: nothing clipped)."""
    lim = robust_ylim(values)
    if lim is None:
        return 0
    ax.set_ylim(*lim)
    return sum(1 for v in values if v < lim[0] or v > lim[1])


def _figure(w: float, h: float, ncols: int = 1, nrows: int = 1) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")  # 10-pt text is ~14 px at 100 % zoom
    axes = fig.subplots(nrows, ncols, squeeze=False) if nrows > 1 else fig.subplots(1, ncols)
    return fig, axes


def _draw_history(ax: Any, result: TuneResult) -> None:
    from optuna.trial import TrialState

    trials = sorted(result.trials, key=lambda t: t.number)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    ok = [t for t in complete if is_feasible(t)]
    xs, ys = [t.number for t in ok], [t.value for t in ok]
    ax.scatter(xs, ys, s=10, color=_DONE, alpha=0.6, label="completed")
    bad = [t for t in complete if not is_feasible(t)]
    if bad:
        ax.scatter(
            [t.number for t in bad],
            [t.value for t in bad],
            s=14,
            facecolors="none",
            edgecolors=_FAIL,
            label="breaks a guardrail",
        )
    pruned = [(t.number, t.value) for t in trials if t.state == TrialState.PRUNED and t.value is not None]
    if pruned:
        ax.scatter(*zip(*pruned), s=10, marker="x", color=_PRUNED, alpha=0.6, label="stopped early")
    bsf = result.best_so_far()
    if bsf:
        bx, by = zip(*bsf)
        ax.step(bx, by, where="post", color=_BEST, lw=2, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(result.metric)
    off = _clip_axis(ax, [float(t.value) for t in trials if t.value is not None])
    ax.set_title("best so far" + (f" ({off} off the scale)" if off else ""), fontsize=11)
    if xs or pruned:
        ax.legend(fontsize=9, loc="best")


def _searched_by(trials: list[Any]) -> Callable[[Any], float]:
    """A function of a moment: how long the study had searched by then (its ``busy_spans``, as
    ``searched_seconds`` counts the whole), so the time between two runs of a resumed study, when
    nothing ran, does not count."""
    import bisect
    import datetime

    merged = busy_spans(trials, running_until=datetime.datetime.now())
    starts = [a for a, _ in merged]
    before = list(itertools.accumulate(((b - a).total_seconds() for a, b in merged[:-1]), initial=0.0))

    def searched(moment: Any) -> float:
        i = bisect.bisect_right(starts, moment) - 1
        if i < 0:
            return 0.0
        a, b = merged[i]
        return float(before[i] + (min(moment, b) - a).total_seconds())

    return searched


def whole_ticks(axis: Any) -> None:
    """Ticks at whole numbers only: epochs (2.5 and 7.5 were ticked)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def readable_log_ticks(axis: Any) -> None:
    """A log axis that spans under three decades, labelled 20, 50, 100, 200, 500: matplotlib labels
    its minor ticks too there, and a width searched over logint(16, 512) read '2x10^1 3x10^1 4x10^1'
    on top of each other (found trying nbtune as a new user). Wider axes keep their powers of ten."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = sorted(axis.get_view_interval())
    if axis.get_scale() != "log" or lo <= 0 or math.log10(hi / lo) >= 3:
        return

    def ticks(subs: tuple[float, ...]) -> int:
        return sum(
            lo <= s * 10.0**e <= hi
            for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            for s in subs
        )

    # at most five labels, in a panel a ninth of a slice plot wide (0.002 0.005 0.01 ... ran together)
    candidates = ((1.0, 1.5, 2.0, 3.0, 5.0, 7.0), (1.0, 2.0, 5.0), (1.0, 3.0), (1.0,))
    subs = next((c for c in candidates if ticks(c) <= 5), (1.0,))
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _draw_history_time(ax: Any, result: TuneResult) -> bool:
    from optuna.trial import TrialState

    done = [
        t
        for t in result.trials
        if t.state == TrialState.COMPLETE and t.value is not None and t.datetime_complete and is_feasible(t)
    ]
    if not done:
        return False
    searched = _searched_by(result.trials)
    done.sort(key=lambda t: t.datetime_complete)  # type: ignore[arg-type, return-value]
    maximize = result.direction == "maximize"
    xs, ys, best = [], [], None
    for t in done:
        v = t.value
        if best is None or (v > best if maximize else v < best):  # type: ignore[operator]
            best = v
        xs.append(searched(t.datetime_complete))
        ys.append(best)
    ax.step(xs, ys, where="post", color=_BEST, lw=2)
    # (not wall time: a study resumed hours later was a flat line over the pause)
    ax.set_xlabel("seconds of search (time between runs left out)")
    ax.set_ylabel(f"best {result.metric}")
    ax.set_title("best so far over time", fontsize=11)
    return True


def _draw_curves(ax: Any, result: TuneResult, max_curves: int = 120) -> bool:
    from optuna.trial import TrialState

    promoted = continuations(result.trials)  # a paused trial's curve goes on in its continuation's
    trials = [t for t in result.trials if t.intermediate_values and t.number not in promoted]
    if not trials:
        return False
    best = result._best_or_none()
    # Thousands of lines are slow and unreadable: keep the running, the best and the latest.
    if len(trials) > max_curves:
        maximize = result.direction == "maximize"
        scored = [t for t in trials if t.value is not None]
        scored.sort(key=lambda t: t.value, reverse=maximize)  # type: ignore[arg-type, return-value]
        keep = {t.number for t in scored[: max_curves // 4]}
        keep |= {t.number for t in trials if t.state == TrialState.RUNNING}
        for t in sorted(trials, key=lambda t: -t.number):
            if len(keep) >= max_curves:
                break
            keep.add(t.number)
        trials = [t for t in trials if t.number in keep]
    for t in trials:
        steps = sorted(t.intermediate_values)
        vals = [t.intermediate_values[s] for s in steps]
        if t.state == TrialState.PRUNED:
            ax.plot(steps, vals, color=_PRUNED, alpha=0.35, lw=0.8)
            ax.scatter([steps[-1]], [vals[-1]], marker="x", color=_PRUNED, s=14)
        elif t.state == TrialState.RUNNING:
            ax.plot(steps, vals, color=_BEST, alpha=0.8, lw=1.2, ls="--")
        else:
            ax.plot(steps, vals, color=_DONE, alpha=0.45, lw=0.8)
    if best is not None and best.intermediate_values:
        steps = sorted(best.intermediate_values)
        ax.plot(
            steps,
            [best.intermediate_values[s] for s in steps],
            color=_BEST,
            lw=2.2,
            label=f"best (trial {best.number})",
        )
        ax.legend(fontsize=9, loc="best")
    ax.set_xlabel(result.unit)
    whole_ticks(ax.xaxis)
    ax.set_ylabel(result.metric)
    off = _clip_axis(ax, [float(t.intermediate_values[max(t.intermediate_values)]) for t in trials])
    ax.set_title(
        _curves_title(result) + " (x = stopped early" + (f"; {off} off the scale" if off else "") + ")", fontsize=11
    )
    return True


MIN_TRIALS_FOR_IMPORTANCE = 10  # fewer configurations give importances that flip from run to run


@dataclass(frozen=True)
class Importance:
    """Optuna's default importance (PED-ANOVA) of each parameter, and what it rests on: the
    ``n`` latest complete trials' final values (``epoch`` None), or, where successive halving
    completed fewer than :data:`MIN_TRIALS_FOR_IMPORTANCE`, the ``n`` configurations compared at
    ``epoch``, the largest epoch that many reached (what the default sampler's model sees).
    ``conditional``: the parameters the cell reads only under some choices (then ``method`` is
    Optuna's mean decrease in impurity, a random forest's, which splits on the choice first)."""

    values: dict[str, float]
    n: int
    epoch: int | None = None
    method: str = "PED-ANOVA"
    conditional: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.values)

    def rests_on(self) -> str:
        if self.epoch is None:
            return f"{self.n} complete trials"
        return f"{self.n} configurations at epoch {self.epoch}"


def importance_of(result: TuneResult, max_trials: int = 500) -> Importance:
    """The parameters' importance (:class:`Importance`), empty below
    :data:`MIN_TRIALS_FOR_IMPORTANCE` configurations to compare or with a single parameter.

    Complete trials are compared at their end. Under successive halving few trials complete by
    design; then the configurations are compared at the largest epoch at least 10 of them
    reached, each valued there, as BOHB and nbtune's TPE fit their model (each configuration
    once, however many times it paused).
    """
    import optuna
    from optuna.trial import TrialState

    from nbtune.run.tpe import compared_at

    none = Importance({}, 0)
    if len(param_names(result.trials[:200])) < 2:
        return none
    done = [t for t in result.trials if t.state == TrialState.COMPLETE and t.value is not None]
    epoch = None
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        found = compared_at(list(result.trials), MIN_TRIALS_FOR_IMPORTANCE)
        if found is None:
            return none
        epoch, seen, _ = found
        done = [t for t in seen if t.state == TrialState.COMPLETE]
        if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
            return none
    # A parameter read only under some choices (n_neighbors under model == "knn") holds a value in
    # every trial: PED-ANOVA, which compares the best trials' values with all of them, ranked the
    # choice itself near 0 where it decided everything (found trying nbtune as a new user). A random
    # forest splits on the choice first: Optuna's mean decrease in impurity, on at most 200 trials.
    conditional = tuple(sorted(_conditional(result)))
    if conditional:
        max_trials = min(max_trials, 200)
    done = sorted(done, key=lambda t: t.number)[-max_trials:]  # the cost grows with the trials
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the study seen through these trials (a new study would log its creation to stderr)
            view = _compat.study_view(result.study, lambda _: done)
            evaluator = (
                optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
                if conditional
                else optuna.importance.PedAnovaImportanceEvaluator()
            )
            values = optuna.importance.get_param_importances(view, evaluator=evaluator)
    except Exception:  # importance is a nicety: never fail the display for it
        _logger.debug("importance failed", exc_info=True)
        return none
    method = "mean decrease in impurity" if conditional else "PED-ANOVA"
    return Importance({k: float(v) for k, v in values.items()}, len(done), epoch, method, conditional)


def _conditional(result: TuneResult) -> list[str]:
    """The tuned variables the study's cell reads only under some of a choice's values."""
    return list(conditional_reads(result.study.user_attrs))


def importance(result: TuneResult, max_trials: int = 500) -> dict[str, float]:
    """Each parameter's importance (:func:`importance_of`); {} when there is not enough to compare."""
    return importance_of(result, max_trials).values


def _n_complete(result: TuneResult) -> int:
    return sum(t.state.name == "COMPLETE" and t.value is not None for t in result.trials)


def _draw_importance(ax: Any, imp: Importance) -> None:
    names = list(imp.values)[::-1]
    ax.barh(names, [imp.values[n] for n in names], color=_BEST)
    # (and which parameters the cell reads only under some choices: what their ranking means)
    read = f"; read only under some choices: {', '.join(imp.conditional)}" if imp.conditional else ""
    # wrapped: in a half-width panel it ran off the figure (found trying nbtune as a new user)
    ax.set_xlabel("\n".join(textwrap.wrap(f"importance ({imp.method}, {imp.rests_on()}){read}", 48)))
    ax.set_title("what mattered" if imp.epoch is None else f"what mattered by epoch {imp.epoch}", fontsize=11)


def dashboard_figure(result: TuneResult, with_importance: bool = False) -> Figure:
    """Best so far (by trial and by time), learning curves (if any) and importance (at the end)."""
    has_curves = any(t.intermediate_values for t in result.trials)
    imp = importance_of(result) if with_importance else Importance({}, 0)
    n = 2 + int(has_curves) + int(bool(imp))
    # Two panels a row at 900 px: what fits a notebook's output area without being shrunk.
    rows = (n + 1) // 2
    fig, grid = _figure(WIDE[0], 3.3 * rows, ncols=2, nrows=rows)
    axes = list(grid.ravel()) if rows > 1 else list(grid)
    if n % 2:
        axes[-1].remove()
    _draw_history(axes[0], result)
    _draw_history_time(axes[1], result)
    i = 2
    if has_curves:
        _draw_curves(axes[i], result)
        i += 1
    if imp:
        _draw_importance(axes[i], imp)
    return fig


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def history_png_base64(result: TuneResult) -> str:
    try:
        fig = dashboard_figure(result, with_importance=True)
        return base64.b64encode(to_png(fig)).decode()
    except Exception:  # never fail a display for a plot
        _logger.debug("plot failed", exc_info=True)
        return ""


# ----------------------------------------------------------------------------------------
# The chooser's views: one large figure each.


@dataclass(frozen=True)
class PlotChoice:
    """What the dashboard's chooser asks for, besides the view.

    Attributes:
        params: the parameters to show (slice, contour, parallel coordinate); empty = all.
        color_by: the parameter that colours the learning curves (None: by state).
        metric: a ``--record`` variable the learning curves draw instead of the metric (None: the metric).
    """

    params: tuple[str, ...] = ()
    color_by: str | None = None
    metric: str | None = None


@dataclass(frozen=True)
class PlotView:
    """One entry of the chooser.

    Attributes:
        draw: ``(result, choice) -> Figure``.
        uses: which of the chooser's controls apply: ``"params"``, ``"color_by"`` or ``""``.
        min_complete: complete trials the view needs; below that it says so instead of drawing.
        help: one line shown under the chooser.
    """

    draw: Callable[[TuneResult, PlotChoice], Figure]
    uses: str = ""
    min_complete: int = 1
    help: str = ""


PLOT_VIEWS: Registry[PlotView] = Registry("plot view")


def param_names(trials: list[Any]) -> list[str]:
    """The parameters of ``trials``, in the order first seen (the order the cell declares them)."""
    return list(dict.fromkeys(k for t in trials for k in t.params))


def _colour_scale(result: TuneResult, name: str) -> tuple[Callable[[Any], Any], Any]:
    """``value -> colour`` for one parameter, and what to draw as its key (a ScalarMappable or
    a list of (label, colour))."""
    import matplotlib as mpl

    values = [t.params[name] for t in result.trials if name in t.params]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and len(set(values)) > 1:
        dist = next((t.distributions[name] for t in result.trials if name in t.distributions), None)
        lo, hi = min(values), max(values)
        log = bool(getattr(dist, "log", False)) and lo > 0
        norm = mpl.colors.LogNorm(lo, hi) if log else mpl.colors.Normalize(lo, hi)
        cmap = mpl.colormaps["viridis"]
        return (lambda v: cmap(norm(v))), mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    cats = list(dict.fromkeys(map(str, values)))
    palette = mpl.colormaps["tab10"]
    colours = {c: palette(i % 10) for i, c in enumerate(cats)}
    return (lambda v: colours[str(v)]), [(c, colours[c]) for c in cats]


def curves_figure(
    result: TuneResult,
    color_by: str | None = None,
    max_curves: int = 120,
    n_labels: int = 5,
    metric: str | None = None,
) -> Figure:
    """Learning curves, one line per trial, large: coloured by ``color_by`` (or by state), the
    best trial thick, the ``n_labels`` best trials labelled with their number at their last
    epoch, stopped trials ending in an x. ``metric``: a ``--record`` variable's numbers by epoch
    instead of the metric's (the trials still ranked by the metric)."""
    from optuna.trial import TrialState

    fig, ax = _figure(*WIDE)
    promoted = continuations(result.trials)
    every = result.trials
    recorded = metric if metric is not None and metric != result.metric else None
    if recorded is not None:  # the same trials, with the recorded variable's curve (found trying nbtune as a new user)
        curves = recorded_curves(every)
        every = [_with_curve(t, curves[t.number].get(recorded, {})) for t in every]
    by_number = {t.number: t for t in every}
    trials = [t for t in every if t.intermediate_values and t.number not in promoted]
    if not trials:
        finished = any(t.state.is_finished() for t in result.trials)
        _say(
            ax,
            "no learning curves: the cell has no epochs loop (mark one with '# tune: epochs')"
            if finished
            else "no trial has reported an epoch yet",
        )
        return fig
    best = result._best_or_none()
    if best is not None:
        best = by_number.get(best.number, best)
    maximize = result.direction == "maximize"
    scored = sorted(
        (t for t in trials if t.value is not None and t.state == TrialState.COMPLETE),
        key=lambda t: t.value,  # type: ignore[arg-type, return-value]
        reverse=maximize,
    )
    if len(trials) > max_curves:  # the running, the best and the latest: readable and fast
        keep = {t.number for t in scored[: max_curves // 4]} | {
            t.number for t in trials if t.state == TrialState.RUNNING
        }
        for t in sorted(trials, key=lambda t: -t.number):
            if len(keep) >= max_curves:
                break
            keep.add(t.number)
        trials = [t for t in trials if t.number in keep]
    colour = None
    key: Any = None
    if color_by is not None and any(color_by in t.params for t in trials):
        colour, key = _colour_scale(result, color_by)
    for t in trials:
        steps = sorted(t.intermediate_values)
        vals = [t.intermediate_values[s] for s in steps]
        if colour is not None and color_by in t.params:
            c = colour(t.params[color_by])
        else:
            c = {TrialState.PRUNED: _PRUNED, TrialState.RUNNING: _BEST}.get(t.state, _DONE)
        ls = "--" if t.state == TrialState.RUNNING else "-"
        ax.plot(steps, vals, color=c, alpha=0.75 if colour is not None else 0.5, lw=1.0, ls=ls)
        if t.state == TrialState.PRUNED:
            ax.scatter([steps[-1]], [vals[-1]], marker="x", color=c, s=18)
    off = _clip_axis(ax, [float(t.intermediate_values[max(t.intermediate_values)]) for t in trials])
    _label_ends(ax, scored[:n_labels], best.number if best is not None else None)
    if best is not None and best.intermediate_values:
        steps = sorted(best.intermediate_values)
        ax.plot(steps, [best.intermediate_values[s] for s in steps], color="black", lw=2.4, alpha=0.85)
    if isinstance(key, list):
        from matplotlib.lines import Line2D

        drawn = {str(t.params[color_by]) for t in trials if color_by in t.params}  # (a branch with no curves: no key)
        handles = [Line2D([0], [0], color=c, lw=2, label=f"{color_by}={lab}") for lab, c in key if lab in drawn][:10]
        ax.legend(handles=handles, fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    elif key is not None:
        from matplotlib.colors import LogNorm
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        bar = fig.colorbar(key, ax=ax, label=color_by)
        if isinstance(key.norm, LogNorm):  # 20, 50, 100 rather than 2x10^1, 5x10^1, 10^2
            bar.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            bar.ax.yaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.16)
    ax.set_xlabel(result.unit)
    whole_ticks(ax.xaxis)
    ax.set_ylabel(recorded or result.metric)
    colour_note = f"colour = {color_by}" if colour is not None else "grey finished, orange stopped early, blue running"
    # the best, or trials, that report no epoch (a branch of the cell without the epochs loop): said, as
    # nothing is drawn in black then (found trying nbtune as a new user)
    flat = sum(1 for t in result.trials if t.state.is_finished() and not t.intermediate_values)
    black = (
        "black = best" if best is None or best.intermediate_values else f"the best, trial {best.number}, has no curve"
    )
    of = f" ({recorded}; the best by {result.metric})" if recorded else ""
    title = (
        f"{_curves_title(result)}{of} of {len(trials)} trials ({colour_note}; {black}; x = stopped early"
        + (f"; {off} off the scale" if off else "")
        + (f"; {flat} finished without one" if flat else "")
        + ")"
    )
    ax.set_title(textwrap.fill(title, 90), fontsize=11)  # (wider than the figure, it was cut at both ends)
    return fig


def _with_curve(t: Any, curve: dict[int, float]) -> Any:
    """A copy of trial ``t`` whose intermediate values are ``curve`` (a recorded variable's)."""
    import copy

    drawn = copy.copy(t)
    drawn.intermediate_values = dict(curve)
    return drawn


def _curves_title(result: TuneResult) -> str:
    """What the curves are: with '# tune: folds(k)' a trial's steps are its folds, and its curve
    the running mean over them, not a learning curve (a fold that scores higher looked like a
    model that overfit after "epoch 4"; found trying nbtune as a new user)."""
    return "running mean over the folds" if result.cross_validated else "learning curves"


def _label_ends(ax: Any, trials: list[Any], best_number: int | None, gap_px: float = 14.0) -> None:
    """Label each trial's curve at its last epoch with its number, pushing labels apart
    vertically so that curves ending at the same value stay readable."""
    ends = []
    for t in trials:
        last = max(t.intermediate_values)
        ends.append((t, last, t.intermediate_values[last]))
    if not ends:
        return
    ax.autoscale_view()
    pix = ax.transData.transform([(x, y) for _, x, y in ends])
    order = sorted(range(len(ends)), key=lambda i: -pix[i][1])
    placed: list[float] = []
    for i in order:
        y = pix[i][1] if not placed else min(pix[i][1], placed[-1] - gap_px)
        placed.append(y)
        t, x, v = ends[i]
        star = " ★" if t.number == best_number else ""
        ax.annotate(
            f"#{t.number} {fmt(v)}{star}",
            (x, v),
            xytext=(6, (y - pix[i][1]) * 72 / ax.figure.dpi),
            textcoords="offset points",
            fontsize=9,
            va="center",
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "#888"} if abs(y - pix[i][1]) > 3 else None,
        )


def _say(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, wrap=True, transform=ax.transAxes)
    ax.set_axis_off()


def message_figure(text: str) -> Figure:
    """A small figure that says why a view cannot be drawn yet."""
    fig, ax = _figure(WIDE[0], 1.2)
    _say(ax, text)
    return fig


def _optuna_figure(draw: Callable[[], Any], title: str = "") -> Figure:
    """A figure drawn by ``optuna.visualization.matplotlib``, at the dashboard's size, without
    leaving Optuna's global style sheet or an open pyplot figure behind."""
    import matplotlib
    import matplotlib.pyplot as plt
    import numpy as np

    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib views experimental
        axes = draw()
        first = np.ravel(axes)[0] if isinstance(axes, np.ndarray) else axes
        fig: Figure = first.figure
        plt.close(fig)  # ours now, not pyplot's: the inline backend won't show it again
        w, h = fig.get_size_inches()
        fig.set_size_inches(max(w, WIDE[0]), max(h, WIDE[1]))
        fig.set_dpi(100)
        if title:  # (after Optuna's own, "Slice Plot")
            own = fig.get_suptitle()
            if not own and first.get_title():  # parallel coordinates titles its axes: one title, not two on each other
                first.set_title("\n".join(textwrap.wrap(f"{first.get_title()} · {title}", 90)), fontsize=11)
            else:
                fig.suptitle(f"{own} · {title}" if own else title, fontsize=11)
    return fig


def _complete_only(result: TuneResult) -> str:
    """What Optuna's slice, contour and parallel-coordinates views leave out, for their title: they
    draw complete trials only, and a contour interpolated from 7 of 30 trials said nothing of it
    (found trying nbtune as a new user). "" when nothing is left out."""
    counts = result.counts()
    paused = len(result._still_paused())  # (as the header says them: paused while they may go on)
    stopped = counts.get("pruned", 0) - paused
    left = [
        f"{n} {word}"
        for n, word in ((stopped, "stopped early"), (paused, "paused"), (counts.get("fail", 0), "failed"))
        if n
    ]
    if not left:
        return ""
    n = counts.get("complete", 0)
    return f"drawn: the {n} complete trial{'' if n == 1 else 's'}; left out: {' and '.join(left)}"


MAX_PARAMS_SHOWN = 8  # the parameters a slice or parallel-coordinates view shows unless told which


def _chosen(result: TuneResult, choice: PlotChoice, at_most: int | None = None) -> list[str]:
    """The parameters a view draws: those asked for, else all, or the most important first when there
    are more than ``at_most`` (:data:`MAX_PARAMS_SHOWN`): 11 made a slice plot 3,500 px wide and the
    parallel coordinates' labels ran into each other (found trying nbtune as a new user)."""
    names = param_names(result.trials[:200])
    chosen = [p for p in choice.params if p in names]
    if chosen:
        return chosen[:at_most] if at_most else chosen
    limit = at_most or MAX_PARAMS_SHOWN
    if len(names) <= limit:
        return names
    ranked = [n for n in importance(result) if n in names]
    return [*ranked, *(n for n in names if n not in ranked)][:limit]


def _title(result: TuneResult, choice: PlotChoice, shown: list[str]) -> str:
    """The title's notes: the trials left out, and the parameters when not all are shown."""
    notes = [_complete_only(result)]
    names = param_names(result.trials[:200])
    if not choice.params and len(shown) < len(names):
        notes.append(f"{len(shown)} of {len(names)} parameters, the most important (params=[...] for others)")
    return " · ".join(n for n in notes if n)


def _slice(result: TuneResult, choice: PlotChoice) -> Figure:
    import numpy as np
    from optuna.visualization.matplotlib import plot_slice

    def draw() -> Any:
        axes = plot_slice(result.study, params=shown, target_name=result.metric)
        # Optuna colours the points by trial number from white: the first trials, the baseline among
        # them, were near-invisible on its grey background. A colour map without white, and an edge
        # (inside Optuna's style, where the colour bar is drawn again).
        for ax in np.ravel(axes) if isinstance(axes, np.ndarray) else [axes]:
            for points in ax.collections:
                if points.get_array() is not None:
                    points.set_cmap("viridis")
                    points.set_edgecolor("0.25")
                    if points.colorbar is not None:
                        points.colorbar.update_normal(points)
            readable_log_ticks(ax.xaxis)
        return axes

    shown = _chosen(result, choice)
    fig = _optuna_figure(draw, _title(result, choice, shown))
    if len(shown) >= SLICES_A_ROW:
        _in_rows(fig, [ax for ax in fig.axes if ax.get_label() != "<colorbar>"])
    return fig


SLICES_A_ROW = 4  # slice panels per row of a 900-px figure (Optuna puts them all in one: 3,500 px for 11)


def _in_rows(fig: Figure, axes: list[Any]) -> None:
    """Optuna's one row of slice panels laid out :data:`SLICES_A_ROW` a row in the dashboard's width,
    each row's first panel with the metric's ticks and name, the colour bar beside them all."""
    bars = [ax for ax in fig.axes if ax not in axes]
    rows = -(-len(axes) // SLICES_A_ROW)
    tall = 0.6 + 2.8 * rows  # inches: the title's half inch, then 2.8 a row
    fig.set_size_inches(WIDE[0], tall)
    left, right, top, bottom = 0.08, 0.87, 1 - 0.5 / tall, 0.1 / tall
    width, height = (right - left) / SLICES_A_ROW, (top - bottom) / rows
    below, above = 0.6 / tall, 0.1 / tall  # room for the ticks and the parameter's name; between rows
    metric = axes[0].get_ylabel()
    for i, ax in enumerate(axes):
        row, col = divmod(i, SLICES_A_ROW)
        y = top - (row + 1) * height + below
        ax.set_position((left + col * width, y, width * 0.88, height - below - above))
        ax.tick_params(labelleft=col == 0)
        ax.set_ylabel(metric if col == 0 else "")
    for bar in bars:
        bar.set_position((0.9, bottom + 0.6 / tall, 0.015, top - bottom - 0.8 / tall))


def _contour(result: TuneResult, choice: PlotChoice) -> Figure:
    import numpy as np
    from optuna.visualization.matplotlib import plot_contour

    params = _chosen(result, choice, at_most=2)
    if len(params) < 2:
        return message_figure("a contour plot needs two parameters: choose two")

    def draw() -> Any:
        axes = plot_contour(result.study, params=params, target_name=result.metric)
        for ax in np.ravel(axes) if isinstance(axes, np.ndarray) else [axes]:  # (one Axes for two parameters)
            readable_log_ticks(ax.xaxis)
            readable_log_ticks(ax.yaxis)
        return axes

    return _optuna_figure(draw, _complete_only(result))


def _parallel(result: TuneResult, choice: PlotChoice) -> Figure:
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    shown = _chosen(result, choice)
    fig = _optuna_figure(
        lambda: plot_parallel_coordinate(result.study, params=shown, target_name=result.metric),
        _title(result, choice, shown),
    )
    for each in fig.axes:  # each parameter's own axis: 0.01 0.03 0.1 0.3, not nine of 2x10^-2 crowded
        readable_log_ticks(each.yaxis)
    # room below for the slanted parameter names ('weight_decay' was cut at the figure's edge: found trying nbtune)
    fig.subplots_adjust(bottom=max(fig.subplotpars.bottom, 0.22))
    ax = fig.axes[0]
    legend = ax.get_legend()
    if legend is not None:  # guardrails: Optuna's Feasible/Infeasible legend sat on the title (found trying nbtune)
        handles = [h for h in legend.legend_handles if h is not None]
        labels = [t.get_text() for t in legend.get_texts()]
        ax.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
        ax.set_title(ax.get_title(), pad=26)
    return fig


def _importance(result: TuneResult, choice: PlotChoice) -> Figure:
    imp = importance_of(result)
    if not imp:
        if len(param_names(result.trials[:200])) < 2:
            return message_figure("importance compares parameters: this study has fewer than two")
        if any(t.intermediate_values for t in result.trials):
            return message_figure(
                f"importance needs {MIN_TRIALS_FOR_IMPORTANCE} configurations measured at one epoch "
                f"({len({tuple(sorted(t.params.items())) for t in result.trials if t.intermediate_values})} "
                "so far): fewer give rankings that change from run to run; raise -n"
            )
        return message_figure(
            f"importance needs {MIN_TRIALS_FOR_IMPORTANCE} complete trials ({_n_complete(result)} so far): "
            "fewer give rankings that change from run to run"
        )
    fig, ax = _figure(*WIDE)
    _draw_importance(ax, imp)
    return fig


def _edf(result: TuneResult, choice: PlotChoice) -> Figure:
    from optuna.visualization.matplotlib import plot_edf

    return _optuna_figure(lambda: plot_edf(result.study, target_name=result.metric))


def _timeline(result: TuneResult, choice: PlotChoice) -> Figure:
    from optuna.visualization.matplotlib import plot_timeline

    return _optuna_figure(lambda: plot_timeline(result.study, n_recent_trials=200))


def recorded_names(trials: list[Any], numbers: bool = False) -> list[str]:
    """The variables ``trials`` kept with ``--record`` (``numbers``: those kept as numbers), in the
    order first seen."""
    return list(
        dict.fromkeys(
            k for t in trials for k, v in (t.user_attrs.get(ATTR.RECORD) or {}).items() if not numbers or is_number(v)
        )
    )


def _recorded(result: TuneResult, choice: PlotChoice) -> Figure:
    """Each recorded variable against the metric: does the metric improve while it gets worse?"""
    from optuna.trial import TrialState

    names = recorded_names(result.trials, numbers=True)
    if not names:
        return message_figure("no recorded numbers: add --record VAR,... to the %%tune line to keep more per trial")
    fig, axes = _figure(WIDE[0], WIDE[1], ncols=len(names[:4]))
    axes = list(axes) if len(names[:4]) > 1 else [axes]
    done = [t for t in result.trials if t.state == TrialState.COMPLETE and t.value is not None]
    for ax, name in zip(axes, names[:4]):
        for feasible, colour, label in ((True, _BEST, "meets the guardrails"), (False, _FAIL, "breaks a guardrail")):
            pts = [
                (t.user_attrs[ATTR.RECORD][name], t.value)
                for t in done
                if is_number((t.user_attrs.get(ATTR.RECORD) or {}).get(name)) and is_feasible(t) == feasible
            ]
            if pts:
                ax.scatter(*zip(*pts), s=14, color=colour, alpha=0.7, label=label)
        ax.set_xlabel(name)
        ax.set_ylabel(result.metric)
    if any(not is_feasible(t) for t in done):
        axes[0].legend(fontsize=9, loc="best")
    fig.suptitle(f"recorded variables against {result.metric} ({len(done)} complete trials)", fontsize=11)
    return fig


def _overview(result: TuneResult, choice: PlotChoice) -> Figure:
    return dashboard_figure(result, with_importance=True)


PLOT_VIEWS.register("overview", PlotView(_overview, help="best so far by trial and by time, learning curves"))
PLOT_VIEWS.register(
    "learning curves",
    PlotView(
        lambda r, c: curves_figure(r, c.color_by, metric=c.metric),
        uses="color_by",
        min_complete=0,
        help="every trial's metric by epoch; the best five labelled by trial number",
    ),
)
PLOT_VIEWS.register(
    "slice", PlotView(_slice, uses="params", help="the metric against each parameter (Optuna's plot_slice)")
)
PLOT_VIEWS.register(
    "contour",
    PlotView(
        _contour, uses="params", min_complete=3, help="the metric over the first two chosen parameters (plot_contour)"
    ),
)
PLOT_VIEWS.register(
    "parallel coordinates",
    PlotView(_parallel, uses="params", min_complete=2, help="one line per trial across the parameters"),
)
PLOT_VIEWS.register(
    "importance",
    PlotView(_importance, min_complete=0, help="how much each parameter explains the metric (PED-ANOVA)"),
)
PLOT_VIEWS.register(
    "recorded",
    PlotView(
        _recorded,
        min_complete=1,
        help="each --record variable against the metric: proxy overfitting shows as a metric that improves "
        "while they get worse",
    ),
)
PLOT_VIEWS.register(
    "EDF", PlotView(_edf, help="share of trials at or below each metric value (empirical distribution)")
)
PLOT_VIEWS.register(
    "timeline", PlotView(_timeline, min_complete=0, help="when each trial ran, and how it ended, per worker time")
)


def view_figure(name: str, result: TuneResult, choice: PlotChoice | None = None) -> Figure:
    """The figure of one chooser view (a short message figure when it cannot be drawn yet).

    Raises:
        ConfigError: an unknown view name.
    """
    # the names as the docs write them, in any case: res.plot("edf"), res.plot("Learning curves")
    name = next((k for k in PLOT_VIEWS if isinstance(name, str) and k.lower() == name.lower()), name)
    view = PLOT_VIEWS.lookup(name)
    if choice is not None:
        known = param_names(result.trials[:200])
        unknown = [p for p in choice.params if p not in known]
        if choice.color_by is not None and choice.color_by not in known:
            unknown.append(choice.color_by)
        if unknown:
            from nbtune.exceptions import ConfigError

            raise ConfigError(f"{unknown[0]!r} is not a parameter of this study; its parameters are {', '.join(known)}")
        if choice.metric is not None and choice.metric != result.metric:
            from nbtune.exceptions import ConfigError

            recorded = sorted({n for c in recorded_curves(result.trials).values() for n in c})
            if view.uses != "color_by":
                raise ConfigError(f"metric= is for the learning curves view, not {name!r}")
            if choice.metric not in recorded:
                raise ConfigError(
                    f"{choice.metric!r} has no curves in this study: the curves are {result.metric!r} and the numbers "
                    f"--record kept by epoch ({', '.join(map(repr, recorded)) or 'none: run with --record VARS'})"
                )
    n = _n_complete(result)
    if n < view.min_complete:
        left = _complete_only(result).partition("left out: ")[2]  # (the others, stopped or failed, are not drawn)
        return message_figure(
            f"{name} needs {view.min_complete} complete trials; {n} so far" + (f" (not drawn: {left})" if left else "")
        )
    if view.uses == "params" and not param_names(result.trials[:200]):
        return message_figure(f"{name} needs parameters: the study has none yet")
    return view.draw(result, choice or PlotChoice())
