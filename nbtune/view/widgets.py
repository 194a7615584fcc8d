"""Live views of a running search: an ipywidgets dashboard, or text where there is none.

Views only *watch*: the driver calls :meth:`update` from the kernel's main thread every
~0.1 s; a view reads the study at most every ``refresh`` seconds, redraws the table in
one ``hold_sync()`` batch, and redraws plots at most every ``plot_every`` seconds. The
controls only set flags on the :class:`~nbtune.run.worker.Search`; the workers obey them.
"""

from __future__ import annotations

import datetime
import html
import logging
import math
import sys
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from nbtune.run.output import close_widgets
from nbtune.run.schedulers import format_decision
from nbtune.store.attrs import ATTR, NO_LIMIT, continuations, finished_count, is_feasible, is_interrupted
from nbtune.view import lineage as _lineage  # noqa: F401  (registers the "lineage" plot view)
from nbtune.view.base import BaseView, RunInfo
from nbtune.view.format import fmt, fmt_param, of_target, plural_trials
from nbtune.view.plots import param_names, recorded_names
from nbtune.view.progress import Clock, Snapshot, duration, eta_text
from nbtune.view.summary import StudySummary, decision_sentences
from nbtune.view.text import TextView

if TYPE_CHECKING:
    import optuna

    from nbtune.run.coordinator import Search
    from nbtune.run.schedulers import SchedulerSpec
    from nbtune.view.result import TuneResult

__all__ = ["WidgetView", "StudyTable", "auto_view", "widget_view", "in_kernel"]

_logger = logging.getLogger(__name__)


def in_kernel() -> bool:
    """True inside a Jupyter kernel (widgets have a front end to talk to)."""
    ip = _shell()
    return ip is not None and getattr(ip, "kernel", None) is not None


def _shell() -> Any:
    mod = sys.modules.get("IPython")
    if mod is None:
        return None
    return mod.get_ipython()


def auto_view(run: RunInfo, search: Search) -> BaseView:
    """Widgets in a Jupyter kernel, text progress anywhere else."""
    if not in_kernel():
        return TextView(run, search)
    if "google.colab" in sys.modules:  # Colab renders ipywidgets 8 only with its custom manager
        try:
            from google.colab import output

            output.enable_custom_widget_manager()
        except Exception:  # pragma: no cover - Colab only
            _logger.debug("could not enable Colab's widget manager", exc_info=True)
    return widget_view(run, search)


def widget_view(run: RunInfo, search: Search) -> WidgetView:
    """The live dashboard of a run."""
    return WidgetView(
        run.study,
        run.metric,
        run.direction,
        sampler=run.sampler,
        scheduler=run.scheduler,
        search=search,
        notes=run.notes,
    )


# ----------------------------------------------------------------------------------------
# The table: shows the rows that matter, never thousands of DOM rows.

# Secondary text: the front end's own muted colour where it has one (JupyterLab's and Notebook 7's
# themes, dark ones too: a fixed grey was hard to read on a dark background), grey elsewhere.
_MUTED = "var(--jp-ui-font-color2, #5f6368)"

_STATE_STYLE = {
    "RUNNING": "color:#1a73e8;font-weight:600",
    "COMPLETE": "color:#188038",
    "PRUNED": "color:#e37400",
    "FAIL": "color:#d93025",
    "WAITING": f"color:{_MUTED}",
    "PAUSED": "color:#e37400;font-style:italic",
    "INFEASIBLE": "color:#d93025;font-style:italic",
}


class StudyTable:
    """Which rows to show, in which order, page by page.

    Rows: the running trials first, then the best one, then the rest sorted by ``sort``
    ("metric": best first; "recent": newest first), ``page_size`` rows a page.
    """

    def __init__(self, page_size: int = 15) -> None:
        self.page_size = page_size
        self.page = 0
        self.sort = "recent"

    def rows(
        self, trials: list[optuna.trial.FrozenTrial], direction: str, best_number: int | None = None
    ) -> tuple[list[optuna.trial.FrozenTrial], int]:
        from optuna.trial import TrialState

        running = [t for t in trials if t.state == TrialState.RUNNING]
        # The best trial is pinned under the running ones, whatever the sort.
        pinned = [t for t in trials if t.number == best_number and t.state != TrialState.RUNNING]
        rest = [
            t for t in trials if t.state not in (TrialState.RUNNING, TrialState.WAITING) and t.number != best_number
        ]
        if self.sort == "metric":
            sign = -1.0 if direction == "maximize" else 1.0

            def key(t: optuna.trial.FrozenTrial) -> tuple[int, float]:
                v = t.value if t.value is not None else (t.intermediate_values[t.last_step] if t.last_step else None)
                if t.state == TrialState.COMPLETE and v is not None:
                    return (0, sign * v)
                if v is not None:
                    return (1, sign * v)
                return (2, 0.0)

            rest.sort(key=key)
        else:
            rest.sort(key=lambda t: -t.number)
        ordered = running + pinned + rest
        n_pages = max(1, math.ceil(len(ordered) / self.page_size))
        self.page = min(max(self.page, 0), n_pages - 1)
        start = self.page * self.page_size
        return ordered[start : start + self.page_size], n_pages

    def html(
        self,
        trials: list[optuna.trial.FrozenTrial],
        direction: str,
        metric: str,
        scheduler: SchedulerSpec | None,
        best_number: int | None,
        paused: Collection[int] = (),
    ) -> tuple[str, int]:
        """The page's rows; ``paused``: the trials that may still go on (``Snapshot.still_paused``,
        which the header counts), labelled *paused*."""
        rows, n_pages = self.rows(trials, direction, best_number)
        promoted = continuations(trials)
        params = param_names(trials[:50])
        records = recorded_names(trials[-50:])
        head = ["#", "state", *params, "epoch", "rung", f"{metric} (latest)", metric, *records, "time"]
        out = ["<table class='nbtune-table' style='border-collapse:collapse;font-size:12px'><thead><tr>"]
        out += [
            f"<th style='text-align:left;padding:2px 8px;border-bottom:1px solid #ccc'>{html.escape(h)}</th>"
            for h in head
        ]
        out.append("</tr></thead><tbody>")
        for t in rows:
            state = t.state.name
            label = state.lower()
            if is_interrupted(t):
                label = "interrupted"
            elif state == "COMPLETE" and not is_feasible(t):
                label = "infeasible"
            elif t.number in paused:
                label = "paused"  # may go on; "paused → #N" once it did
            latest = t.intermediate_values[t.last_step] if t.last_step is not None else None
            rung = scheduler.rung_of(t.last_step) if scheduler is not None else None
            dur = None
            if t.datetime_start is not None:
                import datetime as _dt

                dur = ((t.datetime_complete or _dt.datetime.now()) - t.datetime_start).total_seconds()
            title = ""
            if t.number in promoted:
                label = f"paused → #{promoted[t.number]}"
            elif ATTR.PROMOTED in t.user_attrs:
                title = f"continues trial {t.user_attrs[ATTR.PROMOTED]['from']} (paused, then promoted)"
            if ATTR.DECISION in t.user_attrs:
                title = format_decision(
                    t.number, t.user_attrs[ATTR.DECISION], metric, direction, promoted.get(t.number)
                )
            elif ATTR.ERROR in t.user_attrs:
                title = t.user_attrs[ATTR.ERROR]
            elif ATTR.INTERRUPTED in t.user_attrs:
                title = t.user_attrs[ATTR.INTERRUPTED]
            elif label == "infeasible":
                title = "breaks " + ", ".join(f"{k} (by {fmt(v)})" for k, v in t.constraints.items() if v > 0)
            best = t.number == best_number
            row_style = (
                "background:rgba(52,168,83,0.2);font-weight:600" if best else ""
            )  # (readable in dark themes too)
            cls = "nbtune-row nbtune-best" if best else f"nbtune-row nbtune-{label.split()[0]}"
            cells = [
                str(t.number) + (" ★" if best else "") + (" (baseline)" if t.user_attrs.get(ATTR.BASELINE) else ""),
                f"<span style='{_STATE_STYLE.get(label.upper(), _STATE_STYLE.get(state, ''))}' "
                f"title='{html.escape(title, quote=True)}'>"
                f"{'stopped early' if label == 'pruned' else label}</span>",
            ]
            cells += [html.escape(fmt_param(t.params[k])) if k in t.params else "" for k in params]
            cells += [
                str(t.last_step or ""),
                "" if rung is None else str(rung),
                fmt(latest) if latest is not None else "",
                fmt(t.value) if t.value is not None and state == "COMPLETE" else "",
                *(fmt((t.user_attrs.get(ATTR.RECORD) or {}).get(k, "")) for k in records),
                duration(dur) if dur is not None else "",
            ]
            out.append(
                f"<tr class='{cls}' data-trial='{t.number}' data-state='{label}' style='{row_style}'>"
                + "".join(f"<td style='padding:2px 8px'>{c}</td>" for c in cells)
                + "</tr>"
            )
        out.append("</tbody></table>")
        return "".join(out), n_pages


class WidgetView(BaseView):
    """The live dashboard: header, progress, controls, trial table, decisions, plots.

    Args:
        study: the study to show (read, never written).
        metric: the metric's name; direction: ``"maximize"`` or ``"minimize"``.
        sampler: its name, for the header; scheduler: its :class:`SchedulerSpec`.
        search: the running search (its flags are what the buttons set); None for a stored study.
        refresh: seconds between table redraws.
        plot_every: seconds between plot redraws.
        clock: time source (tests pass a fake one).
        display: whether to show itself on creation (tests pass False).
        n_trials: the target number of trials of a stored study (shown as "7/65 finished").
        notes: what nbtune found before the first trial, shown under the header.
    """

    def __init__(
        self,
        study: optuna.Study,
        metric: str,
        direction: str,
        *,
        sampler: str = "",
        scheduler: Any = None,
        search: Search | None = None,
        refresh: float = 0.5,
        plot_every: float = 3.0,
        clock: Clock | None = None,
        display: bool = True,
        n_trials: int | None = None,
        notes: tuple[str, ...] = (),
    ) -> None:
        import ipywidgets as w

        from nbtune.run.schedulers import SchedulerSpec

        self.study, self.search = study, search
        self.n_trials = n_trials  # the target of a stored study's last run, when it is known
        self.sampler = sampler
        self.scheduler = scheduler or SchedulerSpec(metric=metric, direction=direction)
        self.clock = clock or Clock()
        self.refresh, self.plot_every = refresh, plot_every
        self.t0 = self.clock.now()
        self._last = -math.inf
        self._last_plot = -math.inf
        self._cost = 0.0  # seconds the last table redraw took (real time)
        self._named: StudySummary | None = None  # says the best trial's values (those it never read apart)
        self._plot_cost = 0.0
        self._closed = False
        self.n_redraws = 0
        self.table = StudyTable()
        self.metric = metric
        self.direction = direction
        trials = study.get_trials(deepcopy=False)
        self._start_finished = finished_count(trials)
        self._started_at = datetime.datetime.now()  # Optuna's trial times are naive local times

        self.title = w.HTML()
        self.title.add_class("nbtune-title")
        self.notes = w.HTML(
            "".join(
                f"<div style='color:{'#b06000' if n.startswith('possible leak') else _MUTED}'>note: {html.escape(n)}</div>"
                for n in notes
            ),
            layout=w.Layout(display="" if notes else "none"),
        )
        self.notes.add_class("nbtune-notes")
        self.progress = w.IntProgress(
            min=0, max=max(self._target(), 1), value=self._start_finished, layout=w.Layout(width="320px")
        )
        self.progress.add_class("nbtune-progress")
        self.status = w.HTML()
        self.status.add_class("nbtune-status")
        self.best = w.HTML()
        self.best.add_class("nbtune-bestline")
        self.stop_button = w.Button(
            description="Stop",
            icon="stop",
            tooltip="start no new trials; running ones finish",
            layout=w.Layout(width="90px"),
        )
        self.stop_button.add_class("nbtune-stop")
        self.stop_now_button = w.Button(
            description="Stop now",
            button_style="danger",
            icon="times",
            tooltip="cancel running trials too; finished ones are kept",
            layout=w.Layout(width="110px"),
        )
        self.stop_now_button.add_class("nbtune-stop-now")
        self.more = w.BoundedIntText(value=10, min=1, max=100000, layout=w.Layout(width="70px"))
        self.more.add_class("nbtune-more-n")
        self.more_button = w.Button(
            description="+ trials",
            icon="plus",
            layout=w.Layout(width="90px"),
            tooltip="raise the target number of trials while the search runs",
        )
        self.more_button.add_class("nbtune-more")
        # Only the --timeout limits the run: the bar shows its time, and there is no target to raise.
        self._deadline = search.deadline if search is not None else None
        self._wall0 = time.time()
        if self._target() >= NO_LIMIT:
            self.more.layout.display = self.more_button.layout.display = "none"
        self.sort = w.ToggleButtons(
            options=[("recent", "recent"), (f"best {self.metric}", "metric")],
            value="recent",
            style={"button_width": "110px"},
        )
        self.sort.add_class("nbtune-sort")
        self.prev_page = w.Button(icon="chevron-left", layout=w.Layout(width="36px"), tooltip="previous page")
        self.next_page = w.Button(icon="chevron-right", layout=w.Layout(width="36px"), tooltip="next page")
        self.page_label = w.HTML()
        self.table_html = w.HTML()
        self.table_html.add_class("nbtune-trials")
        self.decisions = w.HTML()
        self.decisions.add_class("nbtune-decisions")
        self.plot = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.plot.add_class("nbtune-plot")
        from nbtune.view.plots import PLOT_VIEWS

        self.plot_view = w.Dropdown(
            options=list(PLOT_VIEWS), value="overview", description="view", layout=w.Layout(width="260px")
        )
        self.plot_view.add_class("nbtune-plot-view")
        self.color_by = w.Dropdown(
            options=[("state", None)], value=None, description="colour by", layout=w.Layout(width="240px")
        )
        self.color_by.add_class("nbtune-color-by")
        self.plot_params = w.SelectMultiple(
            options=[], rows=4, description="parameters", layout=w.Layout(width="300px")
        )
        self.plot_params.add_class("nbtune-plot-params")
        self.plot_help = w.HTML()
        self.plot_help.add_class("nbtune-plot-help")
        self._result: TuneResult | None = None
        self._diagnosis = ""  # the failure signatures, refreshed with the plots
        self._n_findings = 0

        self.stop_button.on_click(lambda _: self._stop())
        self.stop_now_button.on_click(lambda _: self._stop_now())
        self.more_button.on_click(lambda _: self._more())
        self.sort.observe(self._on_sort, names="value")
        self.prev_page.on_click(lambda _: self._page(-1))
        self.next_page.on_click(lambda _: self._page(+1))
        for chooser in (self.plot_view, self.color_by, self.plot_params):
            chooser.observe(self._on_plot_choice, names="value")

        controls = w.HBox([self.stop_button, self.stop_now_button, self.more, self.more_button])
        if search is None:
            controls.layout.display = "none"
        self.controls = controls
        pager = w.HBox([self.sort, self.prev_page, self.page_label, self.next_page])
        self.failures = w.HTML()
        self.failures.add_class("nbtune-failures")
        plots_box = w.VBox(
            [w.HBox([self.plot_view, self.color_by, self.plot_params]), self.plot_help, self.plot],
            layout=w.Layout(width="100%"),
        )
        self.checks = w.HTML()
        self.checks.add_class("nbtune-checks")
        self.tabs = w.Tab(
            children=[w.VBox([pager, self.table_html]), self.decisions, self.failures, plots_box, self.checks]
        )
        for i, t in enumerate(["Trials", "Stopped early", "Failed", "Plots", "Checks"]):
            self.tabs.set_title(i, t)
        self.root = _Root(
            children=[self.title, self.notes, w.HBox([self.progress, self.status]), self.best, controls, self.tabs]
        )
        self.root.add_class("nbtune-view")
        self.root._nbtune_view = self
        self._handle = None
        self._show_plot_controls()
        self.redraw(force=True)
        if display:
            from IPython.display import display as _display

            self._handle = _display(self.root, display_id=True)

    # controls (run on whatever thread the kernel handles the click on) ----------------
    @property
    def widget(self) -> Any:
        return self.root

    def _target(self) -> int:
        if self.search is None:
            return self.n_trials or finished_count(self.study.get_trials(deepcopy=False))
        return self.search.control.target()

    def _stop(self) -> None:
        if self.search is not None:
            self.search.stop()
            self.stop_button.disabled = True
            self.status.value += " · <b>stopping after the running trials…</b>"

    def _stop_now(self) -> None:
        if self.search is not None:
            self.search.stop_now()
            self.stop_button.disabled = self.stop_now_button.disabled = True
            self.status.value += " · <b>stopping now…</b>"

    def _more(self) -> None:
        if self.search is not None and not self.search.done.is_set():
            new = self._target() + int(self.more.value)
            self.search.control.set_target(new)
            self.progress.max = new
            self._last = -math.inf

    def _on_sort(self, change: dict[str, Any]) -> None:
        self.table.sort = change["new"]
        self.table.page = 0
        self.redraw(force=True, plots=False)

    def _on_plot_choice(self, change: dict[str, Any]) -> None:
        self._show_plot_controls()
        self.redraw(force=True, plots=True, result=self._result)

    def _show_plot_controls(self) -> None:
        from nbtune.view.plots import PLOT_VIEWS

        view = PLOT_VIEWS[self.plot_view.value]
        self.color_by.layout.display = "" if view.uses == "color_by" else "none"
        self.plot_params.layout.display = "" if view.uses == "params" else "none"
        self.plot_help.value = f"<span style='font-size:12px;color:{_MUTED}'>{html.escape(view.help)}</span>"

    def _page(self, delta: int) -> None:
        self.table.page += delta
        self.redraw(force=True, plots=False)

    # drawing ---------------------------------------------------------------------------
    def update(self) -> None:
        self.redraw()

    def redraw(self, force: bool = False, plots: bool | None = None, result: TuneResult | None = None) -> None:
        now = self.clock.now()
        # Never spend more than ~5% of the time drawing: wait at least 20x the last draw's cost.
        if not force and now - self._last < max(self.refresh, 20 * self._cost):
            return
        self._last = now
        self.n_redraws += 1
        t_start = time.perf_counter()
        trials = self.study.get_trials(deepcopy=False)
        target = self._target()
        ended = self.study.user_attrs.get(ATTR.PAUSES_ENDED)
        snap = Snapshot(trials, target, self.direction, self.metric, ended)
        elapsed = now - self.t0
        running = self.search is not None and not self.search.done.is_set()
        study = self.study.study_name
        table, n_pages = self.table.html(
            trials,
            self.direction,
            self.metric,
            self.scheduler,
            snap.best.number if snap.best else None,
            snap.still_paused,
        )
        failed = [t for t in trials if ATTR.ERROR in t.user_attrs]
        n_stopped = snap.pruned
        # Only the latest reasons are shown (and formatted): fast for huge studies.
        decisions = [
            text for _, text in decision_sentences(trials, self.metric, self.direction, last=100, ended_at=ended)
        ][-50:]
        want_plots = (
            plots
            if plots is not None
            else (result is not None or now - self._last_plot >= max(self.plot_every, 20 * self._plot_cost))
        )
        png = None
        findings = None
        if want_plots:
            from nbtune.view.diagnose import diagnose

            findings = diagnose(result or StudySummary(self.study, self.metric))
            self._n_findings = len(findings)
        if want_plots:
            self._last_plot = now
            t_plot = time.perf_counter()
            png = self._plot_png(result, trials)
            self._plot_cost = time.perf_counter() - t_plot
        limit = getattr(self.search, "trial_timeout", None)  # (a view of a stored study has no search)
        with self.root.hold_sync():
            self.title.value = (
                f"<b>nbtune</b> · <code>{html.escape(study)}</code> · {html.escape(self.sampler)}"
                f" · {html.escape(self.scheduler.describe())}"
                + (f" · at most {duration(limit, exact=True)} a trial" if limit else "")
            )
            if target >= NO_LIMIT:  # the time is the limit: the bar is the share of it spent
                span = (self._deadline - self._wall0) if self._deadline is not None else 0.0
                self.progress.max = 1000
                spent = (time.time() - self._wall0) / span if span > 0 else 1.0
                self.progress.value = 1000 if not running else min(1000, int(1000 * spent))
                self.progress.bar_style = "" if running else "success"
            else:
                self.progress.max = max(target, 1)
                self.progress.value = min(snap.finished, self.progress.max)
                self.progress.bar_style = "" if running else ("success" if snap.finished >= target else "warning")
            failed_part = f"{snap.failed} failed"
            if snap.failed:
                failed_part = f"<b class='nbtune-failed-count' style='color:#d93025'>{failed_part}</b>"
            parts = [
                f"{of_target(snap.finished, target)} finished",
                f"{len(snap.running)} running",
                f"{snap.pruned - snap.paused} stopped early",
                failed_part,
            ]
            if snap.paused:  # they may still go on: in this run, or the next after a Stop
                parts.insert(2, f"{snap.paused} paused")
            if snap.interrupted:
                parts.append(f"{snap.interrupted} interrupted")
            if self._n_findings:
                parts.append(
                    f"<span class='nbtune-findings' style='color:#d93025'>{self._n_findings} "
                    f"finding{'s' if self._n_findings > 1 else ''} ('What went wrong' in the Failed tab)</span>"
                )
            if snap.constrained:
                parts.append(
                    f"<span class='nbtune-feasible'>{snap.n_feasible}/{snap.n_complete} complete meet the guardrails</span>"
                )
            if self.search is not None:
                parts.append(duration(elapsed))
                if running:
                    parts.append(eta_text(snap, self._started_at, deadline=self._deadline))
            if not running and self.search is not None:
                parts.append("done")
            self.status.value = " · ".join(p for p in parts if p)
            if snap.best is not None:
                if self._named is None:  # (the cell is parsed once: which parameters a configuration reads)
                    self._named = StudySummary(self.study, self.metric)
                params = self._named._params_text(snap.best, escape=True)
                self.best.value = (
                    f"best <b>{html.escape(self.metric)} = {fmt(snap.best.value)}</b> "
                    f"(trial {snap.best.number}): {params}"
                )
            else:
                self.best.value = html.escape(StudySummary(self.study, self.metric)._no_best())
            self.table_html.value = table
            self.page_label.value = f"page {self.table.page + 1}/{n_pages}"
            items = "".join(f"<li class='nbtune-decision'>{html.escape(d)}</li>" for d in decisions[::-1])
            pbt = self.scheduler.kind == "pbt"  # its members pause at every interval: decisions, not stops
            n_pbt = sum(1 for t in trials if ATTR.PBT in t.user_attrs)
            self.decisions.value = (
                f"<div style='font-size:12px'>PBT's exploit/explore decisions ({n_pbt})"
                if pbt
                # a paused trial may still be promoted (in this run, or the next after a Stop): apart
                else f"<div style='font-size:12px'>{n_stopped - snap.paused} stopped early, {snap.paused} paused for now"
                if snap.paused
                else f"<div style='font-size:12px'>{plural_trials(n_stopped)} stopped early"
            ) + f"{' (latest first)' if decisions else ''}<ul>{items}</ul></div>"
            fitems = "".join(
                f"<li class='nbtune-failure'>trial {t.number}: {html.escape(t.user_attrs[ATTR.ERROR])}</li>"
                for t in failed[-20:][::-1]
            )
            if findings is not None:
                items = "".join(f"<li class='nbtune-finding'>{html.escape(f.sentence())}</li>" for f in findings[:8])
                self._diagnosis = f"<b>What went wrong</b><ul>{items}</ul>" if findings else ""
            self.failures.value = (
                f"<div style='font-size:12px'>{self._diagnosis}{plural_trials(len(failed))} failed"
                + (" (latest first; the full tracebacks are in <code>res.trials_dataframe()</code>)" if failed else "")
                + f"<ul>{fitems}</ul></div>"
            )
            shown = result or self._result
            checks = shown.checks if shown is not None else None
            self.checks.value = (
                f"<div style='font-size:12px'>{checks.html()}</div>"
                if checks is not None
                else "<div style='font-size:12px'>No checks ran. <code>--revalidate K</code> re-runs the top K "
                "configurations across seeds; <code>--holdout VAR</code> scores the chosen one on sealed data "
                "(see <code>%%tune?</code>).</div>"
            )
            self.tabs.set_title(  # as the header counts them: stopped early, and paused (they may go on)
                1,
                f"PBT decisions ({n_pbt})"
                if pbt
                else f"Stopped/paused ({n_stopped})"  # (a tab shows about 20 characters whole)
                if snap.paused
                else f"Stopped early ({n_stopped})",
            )
            self.tabs.set_title(  # the header points to the findings there
                2, f"Failed ({len(failed)})"
            )
            if png is not None:
                self.plot.value = png
            if not running:
                self.stop_button.disabled = self.stop_now_button.disabled = self.more_button.disabled = True
                self.controls.layout.display = "none"  # nothing left to control
        self._cost = time.perf_counter() - t_start - (self._plot_cost if png is not None else 0.0)

    def _plot_png(self, result: TuneResult | None, trials: list[Any]) -> bytes | None:
        from nbtune.view.plots import PlotChoice, dashboard_figure, to_png, view_figure

        res = result or StudySummary(self.study, self.metric)
        if not any(t.value is not None or t.intermediate_values for t in trials):
            return None
        names = param_names(res.trials[:200])
        if list(self.plot_params.options) != names:  # new parameters appear as trials start
            with self.plot_params.hold_trait_notifications():
                self.plot_params.options = names
            self.color_by.options = [("state", None), *((n, n) for n in names)]
        choice = PlotChoice(params=tuple(self.plot_params.value), color_by=self.color_by.value)
        try:
            if self.plot_view.value == "overview":  # importance (slow, unstable early) only at the end
                return to_png(dashboard_figure(res, with_importance=result is not None))
            return to_png(view_figure(self.plot_view.value, res, choice))
        except Exception:  # a plot must never break the search
            _logger.debug("plot failed", exc_info=True)
            return None

    def close(self, result: TuneResult, handover: bool = True) -> None:
        """Final redraw; with ``handover`` the live dashboard then gives way to the result's display.

        The result (the cell's Out) is a static summary that every front end renders, also
        after the notebook is saved and reopened without this kernel's widget models; the
        live slot is emptied so that nothing in the saved notebook needs them.
        """
        if self._closed:
            return
        self._closed = True
        self._result = result
        if not (handover and self._handle is not None):
            self.redraw(force=True, result=result)  # (a dashboard handed over is never seen again)
            return
        self._handle.update({"text/plain": ""}, raw=True)
        # Its widget models too: a notebook saved with its widget state kept every dashboard of
        # every run (about 100 kB each) though nothing displays them; res.show() makes a new one.
        close_widgets([self.root])


def _root_class() -> Any:
    import ipywidgets as w

    class Root(w.VBox):
        """The dashboard box; its text fallback is the search summary, not a widget repr."""

        _nbtune_view: Any = None

        def _repr_mimebundle_(self, **kwargs: Any) -> Any:
            bundle = super()._repr_mimebundle_(**kwargs)
            view = self._nbtune_view
            if view is not None and isinstance(bundle, dict):
                # the result once there is one (with its checks: re-validation, the holdout)
                shown = view._result or StudySummary(view.study, view.metric)
                bundle["text/plain"] = shown.summary()
                if view._result is not None:  # res.show(), %tune_show: what GitHub and nbconvert render
                    bundle["text/html"] = view._result.html(plot=False)
            return bundle

    return Root


class _LazyRoot:
    cls: Any = None

    def __call__(self, **kwargs: Any) -> Any:
        if self.cls is None:
            self.cls = _root_class()
        return self.cls(**kwargs)


_Root = _LazyRoot()


def show(result: TuneResult, display: bool = False) -> WidgetView:
    """A dashboard of a stored study, without running trials (``%tune_show``)."""
    from nbtune.run.schedulers import SchedulerSpec

    cfg = result.study.user_attrs.get(ATTR.CONFIG, {})
    sched = SchedulerSpec(
        kind=cfg.get("scheduler", "none"),
        R=cfg.get("R"),
        r=cfg.get("r", 1),
        eta=cfg.get("eta", 3),
        metric=result.metric,
        direction=result.direction,
    )
    view = WidgetView(
        result.study,
        result.metric,
        result.direction,
        sampler=result.sampler or "stored study",
        scheduler=sched,
        display=display,
        n_trials=result.n_trials,
    )
    view.close(result)
    return view
