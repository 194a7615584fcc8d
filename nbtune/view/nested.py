"""Nested cross-validation: one search per outer fold, each winner scored once on its fold.

The inner searches choose hyperparameters on data their outer fold never holds out, so the
mean of the winners' outer scores estimates how well *the whole tuning procedure* does on new
data; the mean of the inner scores (what each search believed) is optimistic, and the gap
between the two is the optimism of a single search.
"""

from __future__ import annotations

import html
import math
import statistics
from typing import TYPE_CHECKING, Any

from nbtune.cell.space import as_drawn
from nbtune.view.format import fmt, fmt_param

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from nbtune.view.result import TuneResult

__all__ = ["NestedResult"]


class NestedResult:
    """What a ``%%tune`` cell with ``# tune: outer(k)`` returns.

    Attributes:
        folds: one :class:`~nbtune.view.result.TuneResult` per outer fold, in order (fewer
            than ``k`` when the run was interrupted).
        k: the number of outer folds.
    """

    def __init__(self, folds: list[TuneResult], k: int, metric: str, holdout: str) -> None:
        self.folds, self.k, self.metric, self.holdout = folds, k, metric, holdout

    # what the magic and the notebook use of a result ------------------------------------
    @property
    def interrupted(self) -> bool:
        return any(r.interrupted for r in self.folds) or len(self.folds) < self.k

    @property
    def n_finished(self) -> int:
        return sum(r.n_finished for r in self.folds)

    @property
    def study(self) -> optuna.Study:
        """The latest outer fold's study."""
        return self.folds[-1].study

    def __getattr__(self, name: str) -> Any:
        # A search's methods (res.plot, res.trials_dataframe, res.best_params ...) belong to each
        # outer fold's search: a bare AttributeError left the user guessing (found trying nbtune)
        from nbtune.view.result import TuneResult

        if not name.startswith("_") and hasattr(TuneResult, name):
            raise AttributeError(
                f"a nested cross-validation's result has no {name!r}: it is k searches, one per outer fold. "
                f"Each is a TuneResult: res.folds[i].{name}; the whole procedure: res.estimate(), res.frame(), "
                "res.summary()"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # the numbers ----------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """One row per outer fold: its study, the chosen trial and configuration, the inner
        estimate (what the search believed), the outer score and the gap."""
        import pandas as pd

        rows = []
        for i, r in enumerate(self.folds):
            h = r.holdout()
            row: dict[str, Any] = {"outer_fold": i, "study": r.study.study_name, "n_trials": r.n_finished}
            if h is not None:
                row.update(trial=h.trial, inner=h.value, outer=h.holdout_value, gap=h.gap)
                row.update({f"params_{k}": as_drawn(v) for k, v in r.study.trials[h.trial].params.items()})
            rows.append(row)
        return pd.DataFrame(rows).set_index("outer_fold") if rows else pd.DataFrame()

    def _scores(self) -> tuple[list[float], list[float]]:
        reports = [r.holdout() for r in self.folds]
        done = [h for h in reports if h is not None]
        return [h.value for h in done], [h.holdout_value for h in done]

    def estimate(self) -> tuple[float, float]:
        """Mean and standard deviation of the outer scores: the estimate of the procedure."""
        _, outer = self._scores()
        if not outer:
            return math.nan, math.nan
        return statistics.fmean(outer), statistics.stdev(outer) if len(outer) > 1 else math.nan

    def lines(self) -> list[str]:
        inner, outer = self._scores()
        out = [f"nested cross-validation: {len(outer)}/{self.k} outer folds scored"]
        if outer:
            m, sd = self.estimate()
            mi = statistics.fmean(inner)
            sdi = statistics.stdev(inner) if len(inner) > 1 else math.nan
            out.append(
                f"  outer {self.holdout} {fmt(m)} ± {fmt(sd)} (mean ± sd over folds): the estimate of the whole "
                f"tuning procedure on new data"
            )
            optimism = mi - m if self.folds[0].direction == "maximize" else m - mi
            verdict = (
                f"optimistic by {fmt(optimism)}"
                if optimism > 0
                else f"not optimistic here (the outer score is {fmt(-optimism)} better)"
            )
            out.append(f"  inner {self.metric} {fmt(mi)} ± {fmt(sdi)}: what the searches believed, {verdict}")
        for i, r in enumerate(self.folds):
            h = r.holdout()
            if h is not None:
                params = ", ".join(f"{k}={fmt_param(v)}" for k, v in r.study.trials[h.trial].params.items())
                out.append(
                    f"  fold {i}: {self.metric} {fmt(h.value)} -> {self.holdout} {fmt(h.holdout_value)} "
                    f"(trial {h.trial} of {r.n_finished}: {params})"
                )
        if self.interrupted:
            out.append("interrupted: the finished folds and trials are kept; re-run the cell to resume")
        return out

    def summary(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.summary())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/plain": self.summary(), "text/html": self.html()}

    def html(self) -> str:
        esc = html.escape
        lines = self.lines()
        head = "".join(f"<p>{esc(line.strip())}</p>" for line in lines[:3])
        df = self.frame()
        table = df.to_html(float_format=lambda v: fmt(float(v)), classes="nbtune-nested") if not df.empty else ""
        return f"<div class='nbtune-summary'><h4 style='margin:4px 0'>nbtune · nested CV</h4>{head}{table}</div>"
