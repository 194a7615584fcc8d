"""matplotlib figures of a search: best so far, learning curves, parameter importance.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so drawing them from the
search never touches the user's current figure or the inline backend's state.
"""

from __future__ import annotations

import base64
import io
import logging
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from nbtune.view.summary import StudySummary as TuneResult

__all__ = ["dashboard_figure", "history_png_base64", "importance", "to_png"]

_logger = logging.getLogger(__name__)

_BEST = "#1a73e8"
_DONE = "#5f6368"
_PRUNED = "#e37400"


def _figure(w: float, h: float, ncols: int = 1) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")  # 10-pt text is ~14 px at 100 % zoom
    axes = fig.subplots(1, ncols)
    return fig, axes


def _draw_history(ax: Any, result: TuneResult) -> None:
    from optuna.trial import TrialState

    trials = sorted(result.trials, key=lambda t: t.number)
    xs = [t.number for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    ys = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    ax.scatter(xs, ys, s=10, color=_DONE, alpha=0.6, label="completed")
    pruned = [(t.number, t.value) for t in trials if t.state == TrialState.PRUNED and t.value is not None]
    if pruned:
        ax.scatter(*zip(*pruned), s=10, marker="x", color=_PRUNED, alpha=0.6, label="stopped early")
    bsf = result.best_so_far()
    if bsf:
        bx, by = zip(*bsf)
        ax.step(bx, by, where="post", color=_BEST, lw=2, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(result.metric)
    ax.set_title("best so far", fontsize=11)
    if xs or pruned:
        ax.legend(fontsize=9, loc="best")


def _draw_history_time(ax: Any, result: TuneResult) -> bool:
    from optuna.trial import TrialState

    done = [t for t in result.trials if t.state == TrialState.COMPLETE and t.value is not None and t.datetime_complete]
    if not done:
        return False
    starts = [t.datetime_start for t in result.trials if t.datetime_start is not None]
    t0 = min(starts)
    done.sort(key=lambda t: t.datetime_complete)  # type: ignore[arg-type, return-value]
    maximize = result.direction == "maximize"
    xs, ys, best = [], [], None
    for t in done:
        v = t.value
        if best is None or (v > best if maximize else v < best):  # type: ignore[operator]
            best = v
        xs.append((t.datetime_complete - t0).total_seconds())  # type: ignore[operator]
        ys.append(best)
    ax.step(xs, ys, where="post", color=_BEST, lw=2)
    ax.set_xlabel("seconds since the first trial")
    ax.set_ylabel(f"best {result.metric}")
    ax.set_title("best so far over time", fontsize=11)
    return True


def _draw_curves(ax: Any, result: TuneResult, max_curves: int = 120) -> bool:
    from optuna.trial import TrialState

    trials = [t for t in result.trials if t.intermediate_values]
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
    ax.set_xlabel("epoch")
    ax.set_ylabel(result.metric)
    ax.set_title("learning curves (x = stopped early)", fontsize=11)
    return True


MIN_TRIALS_FOR_IMPORTANCE = 10  # fewer complete trials give importances that flip from run to run


def importance(result: TuneResult, max_trials: int = 500) -> dict[str, float]:
    """Optuna's default importance (PED-ANOVA) of the latest ``max_trials`` completed trials;
    {} below :data:`MIN_TRIALS_FOR_IMPORTANCE` complete trials or with a single parameter."""
    import optuna
    from optuna.trial import TrialState

    done = [t for t in result.trials if t.state == TrialState.COMPLETE]
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE or len(result.study.best_params) < 2:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = result.study
            if len(done) > max_trials:
                # the cost grows with the trials; a sample of the latest ones tells the same story.
                study = optuna.create_study(directions=result.study.directions)
                study.add_trials(sorted(done, key=lambda t: t.number)[-max_trials:])
            return dict(
                optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
                )
            )
    except Exception:  # importance is a nicety: never fail the display for it
        _logger.debug("importance failed", exc_info=True)
        return {}


def _draw_importance(ax: Any, imp: dict[str, float], n_trials: int) -> None:
    names = list(imp)[::-1]
    ax.barh(names, [imp[n] for n in names], color=_BEST)
    ax.set_xlabel(f"importance (PED-ANOVA, {n_trials} complete trials)")
    ax.set_title("what mattered", fontsize=11)


def dashboard_figure(result: TuneResult, with_importance: bool = False) -> Figure:
    """Best so far (by trial and by time), learning curves (if any) and importance (at the end)."""
    has_curves = any(t.intermediate_values for t in result.trials)
    imp = importance(result) if with_importance else {}
    n = 2 + int(has_curves) + int(bool(imp))
    fig, axes = _figure(3.6 * n, 2.8, ncols=n)
    axes = list(axes)
    _draw_history(axes[0], result)
    _draw_history_time(axes[1], result)
    i = 2
    if has_curves:
        _draw_curves(axes[i], result)
        i += 1
    if imp:
        _draw_importance(axes[i], imp, min(500, sum(t.state.name == "COMPLETE" for t in result.trials)))
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
