"""The result of a search: the ``optuna.Study`` plus the views people want of it."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nbtune.cell.space import as_drawn, drawn_params
from nbtune.run.schedulers import format_decision
from nbtune.store.attrs import ATTR, continuations, is_feasible, recorded_curves, run_records
from nbtune.view.format import missing_as_none, params_as_drawn
from nbtune.view.lineage import lineage
from nbtune.view.summary import StudySummary, pauses_ended

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from matplotlib.figure import Figure

    from nbtune.store.base import BaseStore
    from nbtune.view.base import BaseView
    from nbtune.view.checks import HoldoutReport

__all__ = ["TuneResult"]


_TABLE = "res.trials_dataframe() is every trial as a pandas DataFrame (res.curves() their learning curves)"
_MODEL = "res.best_state() gives the chosen trial's saved '# tune: state' variables, without retraining; --apply re-runs the cell with its values"
_GUESSES = {
    "df": _TABLE,
    "dataframe": _TABLE,
    "to_dataframe": _TABLE,
    "to_pandas": _TABLE,
    "results": _TABLE,
    "trials_df": _TABLE,
    "table": _TABLE,
    "best": "res.best_params, res.best_value and res.best_trial (Optuna's names)",
    "best_config": "res.best_params (res.chosen_params after re-validation)",
    "best_hyperparameters": "res.best_params (res.chosen_params after re-validation)",
    "best_score": "res.best_value",
    "best_metric": "res.best_value",
    "best_model": _MODEL,
    "model": _MODEL,
    "best_estimator_": _MODEL,
    "history": "res.best_so_far() is the best value after each trial; res.curves() every trial's learning curve",
    "plot_history": "res.plot() draws the dashboard's views ('overview', 'learning curves', 'slice', ...); "
    "optuna.visualization.plot_optimization_history(res.study) is Optuna's",
}


class TuneResult(StudySummary):
    """What ``%%tune`` returns (and binds with ``--out``).

    Attributes:
        study: the :class:`optuna.Study`, live on the notebook-local store.
        metric: the metric's variable name.
        messages: notes about this run (resumed, new version, stopped because...).

    Example:
        >>> res = nbtune.tune(cell, maximize="val_acc", n_trials=20)  # doctest: +SKIP
        >>> res.best_params, res.best_value  # doctest: +SKIP
        >>> res.trials_dataframe().sort_values("value").head()  # doctest: +SKIP
    """

    _view: BaseView | None = None
    interrupted: bool = False  # the search was stopped by Interrupt (Ctrl-C), not by its budget or Stop

    def __getattr__(self, name: str) -> Any:
        """Only for a name it does not have: what people guess from other tools (``res.df``,
        ``res.best_model``) is pointed to what holds it, in the error itself (a plain
        ``AttributeError`` with no hint: found trying nbtune as a new user)."""
        hint = _GUESSES.get(name.lower()) if not name.startswith("_") else None
        said = f"{type(self).__name__!r} object has no attribute {name!r}" + (f": {hint}" if hint else "")
        raise AttributeError(said, name=name, obj=self)

    # Runs the checks of this study (set by nbtune.tune / %tune_show, which can compile the cell):
    # (result, top, seeds, options) -> None, updating result.checks.
    _checker: Callable[..., None] | None = None

    @property
    def chosen_trial(self) -> optuna.trial.FrozenTrial:
        """The search trial whose configuration to use: the re-validation's pick (the most stable of
        the top ones) when re-validation ran, else the best. The one place this is decided: for
        :attr:`chosen_params`, :meth:`best_state` and ``--apply``.

        Raises:
            ValueError: no trial completed yet (as :attr:`best_trial`).
        """
        chosen = self.checks.chosen() if self.checks is not None else None
        return self.study.trials[chosen.number] if chosen is not None else self.best_trial

    @property
    def chosen_params(self) -> dict[str, Any]:
        """The configuration to use (:attr:`chosen_trial`'s). ``best_params`` stays the search's
        best, as Optuna's ``best_trial`` (after ``--revalidate`` the two may differ, and the pick
        was found only in :meth:`revalidation`; found trying nbtune as a new user). As the cell got it."""
        return drawn_params(self.chosen_trial.params)

    def revalidate(self, top: int = 3, seeds: int = 5, **options: Any) -> TuneResult:
        """Re-run the top ``top`` configurations with ``seeds`` other seeds each, at full fidelity.

        Needs a ``# tune: seed`` variable in the cell. Runs are kept with the study (in
        ``NAME@check``; never counted as search trials, never shown to the sampler), so calling
        it again reuses the finished ones and runs only what is missing. ``options``: ``n_jobs``,
        ``backend``, ``view`` as for :func:`nbtune.tune`.

        Returns:
            This result, with :meth:`revalidation` filled in.
        """
        if self._checker is None:
            from nbtune.exceptions import ConfigError

            raise ConfigError(
                "this result cannot re-run its cell; open it with %tune_show NAME (or run the %%tune cell "
                "with --revalidate K) in the notebook that defines the cell's variables"
            )
        self._checker(self, top, seeds, options)
        return self

    def runs(self) -> pd.DataFrame:
        """One row per run of the cell that ran trials in this study (the first, a resume, a larger
        ``-n``), indexed by run: ``started``, ``first_trial`` (the number of the first trial it made),
        ``target`` (the finished trials it ran to), ``seed`` (``--seed``), ``jobs``, ``backend``,
        ``sampler``, ``scheduler``, ``resumed_over`` (what had changed when ``--resume`` continued the
        study over it: the cell's code, the notebook data it reads), then one column per version:
        Python's, and those of nbtune, Optuna and the libraries the cell reads or imports (``sklearn``,
        ``torch``, ...). What a reviewer needs
        to tell whether the study can be replayed: the same ``--seed`` with one job repeats a search as
        its runs repeat (a resumed run's draws follow from the trials before it). Runs before
        2026-12-01 were not recorded."""
        import pandas as pd

        fixed = [
            "run", "started", "first_trial", "target", "seed", "jobs", "backend", "sampler", "scheduler", "resumed_over"
        ]  # fmt: skip
        rows = [
            {"run": k, **{c: r.get(c) for c in fixed[1:]}, **(r.get("versions") or {})}
            for k, r in enumerate(run_records(self.study.user_attrs))
        ]
        df = pd.DataFrame(rows, columns=list(dict.fromkeys([*fixed, *(c for row in rows for c in row)])))
        df["started"] = pd.to_datetime(df["started"])
        missing_as_none(df, "resumed_over")
        return df.set_index("run")

    def revalidation(self) -> pd.DataFrame:
        """The re-validated configurations: per seed-averaged mean, sd, 95% CI, the rank change
        against the search and which is the most stable choice (an empty frame before any)."""
        import pandas as pd

        return self.checks.frame() if self.checks is not None else pd.DataFrame()

    _store: BaseStore | None = None  # where the study lives (its checkpoints too)

    def best_state(self, trial: int | None = None) -> dict[str, Any]:
        """The saved state (the ``# tune: state`` variables) of the chosen trial, without
        retraining: the most stable re-validated configuration's search trial if re-validation
        ran, else the best trial; or trial number ``trial``.

        Raises:
            ConfigError: that trial has no saved state (the message says why and what to do).
        """
        from nbtune.exceptions import ConfigError
        from nbtune.run.checkpoints import read_checkpoint

        number = trial if trial is not None else self.chosen_trial.number
        trials = self.study.trials
        if not isinstance(number, int) or not 0 <= number < len(trials):
            raise ConfigError(f"best_state(trial=...) takes a trial number from 0 to {len(trials) - 1}; got {number!r}")
        t = trials[number]
        if t.state.name != "COMPLETE":
            raise ConfigError(
                f"trial {number} did not complete ({'stopped early' if t.state.name == 'PRUNED' else t.state.name.lower()}"
                f" at epoch {t.last_step}): it has no trained state; take a complete one, e.g. the best (no argument)"
            )
        if self._store is None:  # (a TuneResult made by hand: "no saved state" was said of a saved one)
            raise ConfigError(
                "this result does not know its store, where the checkpoints are: open the study with "
                f"nbtune.load_result({self.study.study_name!r}) (or %tune_show {self.study.study_name} -o res)"
            )
        state = read_checkpoint(self._store, t)
        if state is None:
            why = t.user_attrs.get(ATTR.CHECKPOINT_ERROR)
            raise ConfigError(
                f"trial {number} has no saved state"
                + (
                    f": {why}"
                    if why
                    else (
                        " (only the best --keep-checkpoints trials keep theirs)"
                        if ATTR.CHECKPOINT in t.user_attrs
                        else "; mark the model in the cell ('model = make_model()  # tune: state', or --state model) "
                        "and run the search again with --fresh (this study's trials ran without saving it, and "
                        "re-running the cell continues them)"
                    )
                )
            )
        return state

    def diagnose(self) -> pd.DataFrame:
        """Failure signatures: which trials diverged, did not learn, over- or underfit, or
        failed the same way; the evidence, the parameter range they share and what to change
        (one row per finding; see :mod:`nbtune.view.diagnose`)."""
        from nbtune.view.diagnose import diagnose, findings_frame

        return findings_frame(diagnose(self))

    def holdout(self) -> HoldoutReport | None:
        """The chosen configuration's metric against the sealed holdout score (``--holdout``)."""
        return self.checks.holdout_report() if self.checks is not None else None

    def trials_dataframe(self) -> pd.DataFrame:
        """One row per trial, indexed by trial number: Optuna's ``state``, ``value``, ``params_*`` and
        times (not its ``user_attrs_*``/``system_attrs_*``: nbtune's own records are the columns below;
        ``res.study.trials_dataframe()`` is Optuna's frame, with ``number`` as a column).

        Extra columns: ``epochs`` (last reported epoch; with ``# tune: folds(k)``, ``folds``, the
        folds it ran, ``fold_values``, their scores, and ``fold_std``, their standard deviation), ``baseline``, ``error``, ``record_<var>``
        (``--record``), ``feasible`` and ``constraint_<guardrail>`` (``--subject-to``; > 0 breaks it), ``seed``,
        ``interrupted``, ``rerun_of`` (the interrupted trial whose configuration this one ran again) and
        ``rerun_as`` (the trial that ran an interrupted one's again), ``damaged`` (when a record of the trial
        was lost to damage in the store file), ``output`` (the tail of what the trial printed), for stopped trials ``stopped_epoch``,
        ``stopped_rung``, ``stopped_bracket``, ``stopped_cutoff``, ``stopped_n_compared`` and ``stopped_reason``,
        and with pause-and-promote ``paused`` (a stopped trial that may still be promoted), ``continued_as`` (the
        trial that continued a promoted one) and ``continues`` (the paused trial a continuation took over).
        """
        import pandas as pd

        rows = []
        folds = self.cross_validated
        promoted = continuations(self.trials)
        rerun_as = {t.user_attrs[ATTR.RERUN_OF]: t.number for t in self.trials if ATTR.RERUN_OF in t.user_attrs}
        ended = pauses_ended(self.trials, self.study.user_attrs.get(ATTR.PAUSES_ENDED), promoted)
        for t in self.trials:
            row: dict[str, Any] = {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "datetime_start": t.datetime_start,
                "datetime_complete": t.datetime_complete,
                "duration": (t.datetime_complete - t.datetime_start)
                if t.datetime_complete and t.datetime_start
                else None,
            }
            for k, v in t.params.items():
                row[f"params_{k}"] = as_drawn(v)
            if folds:  # its steps are folds: how many ran, and how far apart their scores were
                values = t.user_attrs.get(ATTR.FOLDS) or []
                row["folds"] = t.last_step
                row["fold_std"] = statistics.stdev(values) if len(values) > 1 else None
                row["fold_values"] = values or None
            else:
                row["epochs"] = t.last_step
            row["baseline"] = bool(t.user_attrs.get(ATTR.BASELINE, False))
            row["error"] = t.user_attrs.get(ATTR.ERROR)
            row["interrupted"] = t.user_attrs.get(ATTR.INTERRUPTED)
            row["output"] = t.user_attrs.get(ATTR.OUTPUT)
            row["warnings"] = t.user_attrs.get(ATTR.WARNINGS)  # the distinct warnings it printed
            if ATTR.SEED in t.user_attrs:
                row["seed"] = t.user_attrs[ATTR.SEED]
            for k, v in (t.user_attrs.get(ATTR.RECORD) or {}).items():
                row[f"record_{k}"] = v
            if t.constraints:
                row["feasible"] = is_feasible(t)
                row.update({f"constraint_{k}": v for k, v in t.constraints.items()})
            d = t.user_attrs.get(ATTR.DECISION)
            if d:
                row.update(
                    stopped_epoch=d.get("epoch"),
                    stopped_rung=d.get("rung"),
                    stopped_bracket=d.get("bracket"),
                    stopped_cutoff=d.get("cutoff"),
                    stopped_n_compared=d.get("n_compared"),
                    stopped_reason=format_decision(
                        t.number, d, self.metric, self.direction, promoted.get(t.number), t.number in ended
                    ),
                )
                if d.get("paused"):  # still paused (may go on), or continued, or stopped when the search ended
                    going_on = promoted.get(t.number)
                    row.update(paused=t.number not in ended and going_on is None, continued_as=going_on)
            if ATTR.PROMOTED in t.user_attrs:
                row["continues"] = t.user_attrs[ATTR.PROMOTED]["from"]
            # an interrupted trial's configuration run again (from its last saved epoch, with state)
            row["rerun_of"] = t.user_attrs.get(ATTR.RERUN_OF)
            row["rerun_as"] = rerun_as.get(t.number)
            if ATTR.DAMAGED in t.user_attrs:  # a record of it was lost to damage in the store file
                row["damaged"] = t.user_attrs[ATTR.DAMAGED]
            rows.append(row)
        df = pd.DataFrame(rows)
        if df.empty:
            return df
        # The same columns and dtypes whether or not any trial was stopped.
        for col in ("stopped_epoch", "stopped_rung", "stopped_bracket", "stopped_cutoff", "stopped_n_compared"):
            df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else float("nan")
        if "stopped_reason" not in df:
            df["stopped_reason"] = None
        for col in ("paused", "continued_as", "continues"):  # pause-and-promote's, whether or not any paused
            if col not in df:
                df[col] = None
        for col in ("rerun_of", "rerun_as"):  # whole numbers where there are any, else None; last
            df[col] = pd.Series([None if pd.isna(v) else int(v) for v in df.pop(col)], index=df.index, dtype=object)
        if "damaged" in df:
            df["damaged"] = df.pop("damaged")
        params_as_drawn(df, [drawn_params(t.params) for t in self.trials])
        # A recorded whole number stays one where some trial recorded none (n_iter_ 12, not 12.0)
        for col in [c for c in df.columns if c.startswith("record_")]:
            name = col.removeprefix("record_")
            given = [r[name] for t in self.trials if name in (r := t.user_attrs.get(ATTR.RECORD) or {})]
            kept = [v for v in given if v is not None]  # (None where it has none: n_iter_ of some models)
            if len(kept) < len(df) and kept and all(type(v) is int for v in kept):
                df[col] = df[col].astype("Int64")
        # Text columns say "none" as None in every study (pandas makes it NaN once some trial has text).
        missing_as_none(df, "error", "interrupted", "output", "stopped_reason")
        return df.set_index("number")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        # Never the widget's MIME type: a saved notebook is reopened without the kernel's widget
        # models, and JupyterLab would then show "Error displaying widget: model not found"
        # instead of the results. The static summary renders everywhere (JupyterLab, Notebook 7,
        # VS Code, GitHub, nbconvert); res.show() or %tune_show brings the live dashboard back.
        return {"text/plain": self.summary(), "text/html": self.html()}

    def curves(self) -> pd.DataFrame:
        """Every trial's learning curve, long: one row per trial and epoch (per fold with ``#
        tune: folds``) it reported, with ``trial``, ``step``, ``state``, the metric (its value at that
        step: a fold's running mean) and, with ``--record``, one column per recorded variable (its
        number after that epoch), for stopped trials too. A continued trial (pause-and-promote) holds
        its whole curve, the epochs before its pause too, as Optuna's intermediate values do: its
        own rows are its configuration's curve (``continues`` in ``trials_dataframe()`` names the
        paused trial, whose rows stop at the pause). For ``seaborn.lineplot(data=res.curves(),
        x="step", y="val_loss", units="trial", estimator=None)``, or ``.pivot(index="step",
        columns="trial", values=...)``."""
        import pandas as pd

        recorded = recorded_curves(self.trials)
        rows = []
        fixed = ("trial", "step", "state", self.metric)
        names: dict[str, None] = {}
        for t in self.trials:
            curves = recorded[t.number]
            names.update(dict.fromkeys(n for n in curves if n not in fixed))
            for step in sorted(set(t.intermediate_values) | {s for c in curves.values() for s in c}):
                row = {
                    "trial": t.number,
                    "step": step,
                    "state": t.state.name,
                    self.metric: t.intermediate_values.get(step),
                }
                row.update({name: c.get(step) for name, c in curves.items() if name not in fixed})
                rows.append(row)
        frame = pd.DataFrame(rows, columns=["trial", "step", "state", self.metric, *names])
        return frame.astype({"trial": int, "step": int, self.metric: float, **{n: float for n in names}})

    def lineage(self, trial: int | None = None) -> pd.DataFrame:
        """Where a trial's state came from, interval by interval (PBT, pause-and-promote): one row
        per segment with ``trial``, ``member``, ``from_epoch``, ``to_epoch``, ``value`` (the metric
        at ``to_epoch``), ``copied_from`` (the member whose state it took) and the
        hyperparameters it trained with. ``trial``: the best trial by default. With PBT this
        is the hyperparameter schedule the search discovered; ``res.plot("lineage")`` draws it."""
        import pandas as pd

        number = trial if trial is not None else self.best_trial.number
        if not any(t.number == number for t in self.trials):
            raise ValueError(f"res.lineage() takes a trial number of this study; got {number}")
        rows = [{k: v for k, v in s.items() if k != "params"} | s["params"] for s in lineage(self.trials, number)]
        frame = pd.DataFrame(rows)
        frame["copied_from"] = frame["copied_from"].astype("Int64")  # a member number, or <NA>
        return frame

    def plot(
        self,
        view: str = "overview",
        params: list[str] | None = None,
        color_by: str | None = None,
        metric: str | None = None,
    ) -> Figure:
        """One of the dashboard's plot views as a matplotlib figure (shown when it ends a cell).

        Args:
            view: ``"overview"``, ``"learning curves"``, ``"slice"``, ``"contour"``,
                ``"parallel coordinates"``, ``"importance"``, ``"EDF"`` or ``"timeline"``.
            params: the parameters to show (slice, contour, parallel coordinates); all by default.
            color_by: the parameter that colours the learning curves.
            metric: for the learning curves, a ``--record`` variable to draw by epoch instead of the
                metric (``"train_loss"``).

        Example:
            >>> res.plot("learning curves", color_by="lr")  # doctest: +SKIP
            >>> res.plot("learning curves", metric="val_loss")  # doctest: +SKIP
        """
        # In a kernel, loading pyplot's backend (its first figure) is what registers the inline
        # backend's PNG display of figures; without it the first plot would show as text.
        import matplotlib.pyplot as plt

        plt.close(plt.figure())

        from nbtune.view.plots import PlotChoice, view_figure

        return view_figure(view, self, PlotChoice(params=tuple(params or ()), color_by=color_by, metric=metric))

    def show(self) -> Any:
        """The dashboard widget of this study (table, stopped-early log, plots)."""
        from nbtune.view.widgets import show

        self._view = show(self)
        return self._view.widget
