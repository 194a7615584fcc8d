"""Lineage: where a trial's model came from, interval by interval (PBT, pause-and-promote).

A continuation (``nbtune:promoted``) resumes from a checkpoint: its own member's (a promoted
or PBT trial that kept its state) or, when a PBT member exploits, a better member's
(``nbtune:pbt`` names the donor). Walking those links back from a trial gives the segments
its final state was trained in, each with the hyperparameters it used: for PBT, the schedule
the search discovered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbtune.cell.space import drawn_params
from nbtune.store.attrs import ATTR, continuations
from nbtune.view.plots import PLOT_VIEWS, WIDE, PlotChoice, PlotView, _figure, message_figure, whole_ticks

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

    from nbtune.view.summary import StudySummary as TuneResult

__all__ = ["lineage", "lineage_figure"]


def lineage(trials: list[optuna.trial.FrozenTrial], number: int) -> list[dict[str, Any]]:
    """The segments trial ``number``'s state was trained in, first to last: ``trial``, ``member``,
    ``from_epoch``, ``to_epoch``, ``value`` (the metric at ``to_epoch``), ``copied_from`` (the
    member whose state it took, PBT) and ``params``."""
    by_number = {t.number: t for t in trials}
    out: list[dict[str, Any]] = []
    t = by_number.get(number)
    while t is not None:
        promoted = t.user_attrs.get(ATTR.PROMOTED) or {}
        note = t.user_attrs.get(ATTR.PBT) or {}
        start = int(promoted.get("epoch", 0))
        end = int(t.last_step or start)
        out.append(
            {
                "trial": t.number,
                "member": int(promoted.get("root", t.user_attrs.get(ATTR.RERUN_OF, t.number))),
                "from_epoch": start,
                "to_epoch": end,
                "value": t.intermediate_values.get(end),
                "copied_from": note.get("donor"),
                "params": drawn_params(t.params),
            }
        )
        before = note.get("donor_trial") if "donor" in note else promoted.get("from")
        t = by_number.get(before) if before is not None else None
    return out[::-1]


def lineage_figure(result: TuneResult, trial: int | None = None) -> Figure:
    """The metric along the lineage of ``trial`` (the best by default), with the epochs where it
    took a better member's state, and one panel per hyperparameter that changed along the way."""
    import math

    best = result._best_or_none()
    number = trial if trial is not None else (best.number if best is not None else None)
    if number is None:
        return message_figure("no lineage yet: no trial has completed")
    trials = result.trials
    final = next((t for t in trials if t.number == number), None)
    if final is None:
        return message_figure(f"no trial {number} in this study")
    if not final.intermediate_values:  # (a cell without an epochs loop: it crashed on the empty curve)
        return message_figure(
            f"a lineage follows a trial's model epoch by epoch, across pause-and-promote and PBT: trial {number} "
            "has no learning curve (mark the cell's epochs loop with '# tune: epochs')"
        )
    segments = lineage(trials, number)
    names = [k for k in final.params if len({repr(s["params"].get(k)) for s in segments}) > 1] or list(final.params)[:2]
    fig, grid = _figure(WIDE[0], 2.6 + 1.4 * len(names), nrows=1 + len(names))
    axes = [row[0] for row in grid] if len(names) else [grid]
    ax = axes[0]
    promoted = continuations(trials)
    for t in trials:  # every member's latest curve, faint, for context
        if t.number not in promoted and t.intermediate_values and t.number != number:
            steps = sorted(t.intermediate_values)
            ax.plot(steps, [t.intermediate_values[s] for s in steps], color="#bbbbbb", lw=0.7, alpha=0.6)
    steps = sorted(final.intermediate_values)
    ax.plot(steps, [final.intermediate_values[s] for s in steps], color="#1a73e8", lw=2.2, label=f"trial {number}")
    for s in segments:
        if s["copied_from"] is not None:
            ax.axvline(s["from_epoch"], color="#e37400", lw=0.8, ls=":")
            ax.annotate(
                f"copied\nmember {s['copied_from']}",
                (s["from_epoch"], ax.get_ylim()[0]),
                fontsize=7,
                color="#e37400",
                va="bottom",
                ha="left",
            )
    ax.set_ylabel(result.metric)
    n_copies = sum(s["copied_from"] is not None for s in segments)
    ax.set_title(
        f"lineage of trial {number}: {len(segments)} intervals, state copied {n_copies} time(s)"
        if len(segments) > 1
        # ("1 intervals, state copied 0 time(s)" said nothing of why: found trying nbtune as a new user)
        else f"trial {number} trained in one go: no pause, promotion or PBT copy in its lineage",
        fontsize=11,
    )
    for name, ax in zip(names, axes[1:]):
        xs: list[float] = []
        ys: list[Any] = []
        for s in segments:
            xs += [s["from_epoch"], s["to_epoch"]]
            ys += [s["params"].get(name)] * 2
        ax.plot(xs, ys, color="#188038", lw=1.8, drawstyle="steps-post")
        dist = final.distributions.get(name)
        if getattr(dist, "log", False) and all(isinstance(y, (int, float)) and y > 0 for y in ys):
            ax.set_yscale("log")
        ax.set_ylabel(name)
        if all(isinstance(y, (int, float)) and not math.isnan(y) for y in ys):
            ax.margins(y=0.15)
    axes[-1].set_xlabel("epoch")
    whole_ticks(axes[-1].xaxis)
    for a in axes:  # one epoch axis for every panel
        a.set_xlim(0, max(steps[-1], segments[-1]["to_epoch"]) + 0.5)
    return fig


def _draw(result: TuneResult, choice: PlotChoice) -> Figure:
    return lineage_figure(result)


PLOT_VIEWS.register(
    "lineage",
    PlotView(
        _draw,
        min_complete=1,
        help="where the best model came from, interval by interval: with PBT, the hyperparameter schedule it found",
    ),
)
