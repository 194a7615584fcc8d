"""The dashboard's logic without a browser (ipywidgets' dummy comm)."""

from __future__ import annotations

import html
import re

import pytest

import nbtune
from nbtune.cell.program import compile_cell
from nbtune.run.coordinator import Search
from nbtune.run.worker import Job
from nbtune.store.attrs import NO_LIMIT
from nbtune.store.control import FileControl
from nbtune.store.journal import Store
from nbtune.view.progress import Clock as _Clock
from nbtune.view.widgets import StudyTable, WidgetView

CURVES = """\
q = 0.5  # tune: uniform(0.0, 1.0)
for epoch in range(9):  # tune: epochs
    acc = q * (1 - 0.5 ** (epoch + 1))
"""


class FakeClock(_Clock):
    def __init__(self):
        self.t = 1000.0
        super().__init__(lambda: self.t)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    # stop-only: the decisions shown are Optuna's stops, with their cutoffs
    return nbtune.tune(
        CURVES, maximize="acc", n_trials=40, seed=0, sampler="random", store=store, view=None, stop_only=True
    ).study


def _view(study, search=None, clock=None):
    from nbtune.run.schedulers import SchedulerSpec

    return WidgetView(
        study,
        "acc",
        "maximize",
        sampler="random",
        search=search,
        display=False,
        scheduler=SchedulerSpec(kind="hyperband", R=9, metric="acc"),
        clock=clock or FakeClock(),
    )


def test_header_table_and_decisions(study):
    v = _view(study)
    assert "40/40 finished" in v.status.value and "stopped early" in v.status.value
    best = study.best_trial
    assert f"acc = {best.value:.4g}" in v.best.value
    rows = re.findall(r"<tr class='nbtune-row[^']*' data-trial='(\d+)'", v.table_html.value)
    assert len(rows) == 15  # one page, not 40 rows
    assert "nbtune-best" in v.table_html.value
    n_pruned = sum(t.state.name == "PRUNED" for t in study.trials)
    assert v.decisions.value.count("<li class='nbtune-decision'>") == n_pruned
    assert "stopped at epoch" in v.decisions.value and "cutoff" in v.decisions.value
    assert v.plot.value[:4] == b"\x89PNG"
    assert v.controls.layout.display == "none"  # no search running: no controls


def test_sort_by_metric_and_paging(study):
    v = _view(study)
    v.sort.value = "metric"
    first = re.search(r"data-trial='(\d+)'", v.table_html.value).group(1)
    assert int(first) == study.best_trial.number
    assert v.page_label.value == "page 1/3"
    v.next_page.click()
    assert v.page_label.value == "page 2/3"
    v.next_page.click()
    v.next_page.click()
    assert v.page_label.value == "page 3/3"
    rows = re.findall(r"data-trial='(\d+)'", v.table_html.value)
    assert len(rows) == 10


def test_table_rows_for_a_huge_study_stay_bounded():
    class T:
        def __init__(self, n, state, value):
            from optuna.trial import TrialState

            self.number, self.state, self.value = n, getattr(TrialState, state), value
            self.intermediate_values, self.last_step = {}, None

    trials = [T(i, "COMPLETE", i % 97) for i in range(10_000)] + [T(10_000, "RUNNING", None)]
    table = StudyTable(page_size=20)
    rows, pages = table.rows(trials, "maximize")
    assert len(rows) == 20 and pages == 501 and rows[0].state.name == "RUNNING"
    table.sort = "metric"
    rows, _ = table.rows(trials, "maximize")
    assert rows[1].value == 96


def test_a_paused_trial_reads_paused_while_it_may_go_on_and_stopped_early_once_the_search_ended(tmp_path):
    import optuna

    from nbtune.store.attrs import ATTR, continuations

    # pause-and-promote (the default with an epochs loop); the search ran to its budget, so the
    # trials still paused at its end stay stopped
    study = nbtune.tune(CURVES, maximize="acc", n_trials=12, seed=0, sampler="random", store=tmp_path, view=None).study
    promoted = continuations(study.trials)
    left = [t.number for t in study.trials if t.user_attrs.get(ATTR.DECISION, {}).get("paused")]
    left = [n for n in left if n not in promoted]
    assert left and promoted  # some went on later, some never did
    ended = _view(study)
    assert "paused" not in ended.status.value and f"{len(left)} stopped early" in ended.status.value
    # the same study as it was before the end (or after a Stop): those trials may still go on
    live = optuna.create_study(direction="maximize")
    live.add_trials(study.trials)
    live.set_user_attr(ATTR.PAUSES_ENDED, None)
    before = _view(live)
    assert f"{len(left)} paused" in before.status.value and " 0 stopped early" in before.status.value
    # said as the header says it (the tab read "Stopped early (N)" beside "0 stopped early · N paused")
    assert f"0 stopped early, {len(left)} paused for now" in before.decisions.value
    assert before.tabs.get_title(1) == f"Stopped/paused ({len(left)})"
    for view, state, text in ((ended, "pruned", "stopped early"), (before, "paused", "paused")):
        view.table.page_size = 100
        view.redraw(plots=False)
        for n in left:
            row = re.search(rf"<tr class='[^']*' data-trial='{n}' data-state='([^']*)'.*?</tr>", view.table_html.value)
            assert row and row.group(1) == state and f">{text}</span>" in row.group(0)
    for n, continued_as in promoted.items():  # went on: says where, whatever the end
        assert f"data-trial='{n}' data-state='paused → #{continued_as}'" in before.table_html.value
    # so do the result's summary (the HTML a saved notebook keeps) and the terminal's progress line
    from nbtune.view.summary import StudySummary

    assert f"{len(left)} stopped early" in StudySummary(study, "acc").count_words()
    words = StudySummary(live, "acc").count_words()
    assert f"{len(left)} paused" in words and not any("stopped early" in w for w in words)
    went_on = f", {len(promoted)} paused and continued" if promoted else ""  # (listed too: the count adds up)
    assert f"0 stopped early, {len(left)} paused for now{went_on}</summary>" in StudySummary(live, "acc").html()
    assert "paused for now" not in StudySummary(study, "acc").html()
    # the saved summary's list of stops is the last 5, and says how many more there are (it was cut silently)
    n_dec = len(StudySummary(study, "acc").decisions())
    assert n_dec > 5 and f"and {n_dec - 5} earlier: <code>res.decisions()</code>" in StudySummary(study, "acc").html()
    assert f"stopped early ({len(left)} of them paused for now), e.g." in StudySummary(live, "acc").summary()
    assert "paused for now" not in StudySummary(study, "acc").summary()
    import io
    import types

    from nbtune.run.schedulers import SchedulerSpec
    from nbtune.view.base import RunInfo
    from nbtune.view.text import TextView

    for s, expected in ((study, f"running · {len(left)} stopped early"), (live, f"{len(left)} paused · 0 stopped")):
        clock, out = FakeClock(), io.StringIO()
        search = types.SimpleNamespace(control=types.SimpleNamespace(target=lambda: 12), n_jobs=1, deadline=None)
        search.backend = types.SimpleNamespace(name="inline")
        run = RunInfo(
            s,
            "acc",
            "maximize",
            "random",
            SchedulerSpec(kind="asha", R=9),
            compile_cell(CURVES, metric="acc", direction="maximize"),
        )
        text = TextView(run, search, clock=clock, stream=out)
        clock.t += 10
        text.update()
        assert expected in out.getvalue().splitlines()[-1]


def test_redraws_are_throttled(study):
    clock = FakeClock()
    v = _view(study, clock=clock)
    n = v.n_redraws
    for _ in range(10):
        v.update()
    assert v.n_redraws == n  # no time passed
    clock.t += 0.6
    v.update()
    v.update()
    assert v.n_redraws == n + 1
    last_plot = v._last_plot
    clock.t += 0.6
    v.update()
    assert v._last_plot == last_plot  # plots redraw at most every 3 s
    clock.t += max(3.0, 20 * v._plot_cost) + 0.01  # plots also wait 20x their own cost
    v.update()
    assert v._last_plot == clock.t
    # a slow redraw spaces the next ones out: drawing never takes more than ~5% of the time
    v._cost = 1.0
    n = v.n_redraws
    clock.t += 10
    v.update()
    assert v.n_redraws == n
    clock.t += 10.5
    v.update()
    assert v.n_redraws == n + 1


def test_controls_set_the_search_flags(study, tmp_path):
    program = compile_cell(CURVES, metric="acc", direction="maximize")
    job = Job(program=program, store=Store(tmp_path), study_name="x", control=FileControl(40, tmp_path / "run"))
    search = Search(job)
    v = _view(study, search=search)
    assert v.controls.layout.display != "none"
    v.more.value = 25
    v.more_button.click()
    assert job.control.target() == 65 and v.progress.max == 65
    v.stop_button.click()
    assert job.control.stop_requested() and not job.control.stop_now_requested()
    assert v.stop_button.disabled
    v.stop_now_button.click()
    assert job.control.stop_now_requested()
    job.control.cleanup()


def test_live_view_during_a_real_search(tmp_path):
    views = []

    def factory(run, search):
        v = WidgetView(
            run.study, run.metric, run.direction, search=search, display=False, refresh=0.0, scheduler=run.scheduler
        )
        views.append(v)
        return v

    slow = CURVES.replace("    acc =", "    import time; time.sleep(0.01)\n    acc =")
    res = nbtune.tune(slow, maximize="acc", n_trials=12, seed=0, store=tmp_path, view=factory)
    v = views[0]
    assert v.n_redraws > 3
    assert "12/12 finished" in v.status.value and "done" in v.status.value
    assert v.stop_button.disabled and v.more_button.disabled and v.controls.layout.display == "none"
    bundle = res._repr_mimebundle_()  # static: renders after the notebook is reopened too
    assert set(bundle) == {"text/plain", "text/html"} and "12/12 trials finished" in bundle["text/plain"]
    shown = res.show()  # the live dashboard comes back on demand
    assert "nbtune-view" in shown._dom_classes and res._view.widget is shown


@pytest.mark.parametrize("backend, jobs", [("auto", 1), ("loky", 2)])
def test_stop_now_cancels_running_trials_without_epochs(tmp_path, backend, jobs, caplog):
    """Stop now interrupts even a trial that never reaches an epoch boundary (and says so in the log)."""
    import logging
    import time

    caplog.set_level(logging.INFO, logger="nbtune")
    clicked = {}

    class Clicker(nbtune.BaseView):
        def __init__(self, run, search):
            self.search, self.run = search, run

        def update(self):
            done = [t for t in self.run.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
            if len(done) >= 2 and "t" not in clicked:
                clicked["t"] = time.monotonic()
                self.search.stop_now()

        def close(self, result, handover=True):
            clicked["closed"] = time.monotonic()

    # (trials of different lengths: two that ended in the same poll of the view left none running to cut, on a
    # loaded machine)
    cell = (
        "x = 0.5  # tune: uniform(0, 1)\nimport time\nif x != 0.5:\n    for _ in range(100 + int(400 * x)):\n"
        "        time.sleep(0.01)\nloss = x\n"
    )
    res = nbtune.tune(
        cell, minimize="loss", n_trials=50, n_jobs=jobs, backend=backend, seed=0, store=tmp_path, view=Clicker
    )
    assert clicked["closed"] - clicked["t"] < 6
    states = [t.state.name for t in res.study.trials]
    assert "RUNNING" not in states
    interrupted = [t for t in res.study.trials if "nbtune:interrupted" in t.user_attrs]
    assert 1 <= len(interrupted) <= jobs
    assert res.n_finished == states.count("COMPLETE") >= 2
    assert any(
        "did not stop within" in r.getMessage() and "forcing them to stop" in r.getMessage() for r in caplog.records
    )
    # and the result says what happened (it said nothing; found trying nbtune as a new user)
    assert any(m.startswith("stopped now by the user: the running trials were cut") for m in res.messages)


def test_failures_are_listed_with_their_errors(tmp_path):
    cell = "x = 0.5  # tune: uniform(0, 1)\nif x > 0.5:\n    raise ValueError(f'bad x')\nloss = x\n"
    res = nbtune.tune(cell, minimize="loss", n_trials=8, seed=0, sampler="random", store=tmp_path, view=None)
    v = WidgetView(res.study, "loss", "minimize", display=False, clock=FakeClock())
    n_failed = sum(t.state.name == "FAIL" for t in res.study.trials)
    assert n_failed and v.failures.value.count("class='nbtune-failure'") == n_failed
    assert "ValueError: bad x" in v.failures.value
    assert v.tabs.get_title(2) == f"Failed ({n_failed})"  # its own tab: never cut off
    assert "nbtune-failed-count" in v.status.value and f"{n_failed} failed" in v.status.value


THREE_PARAMS = """\
lr = 0.01  # tune: loguniform(1e-4, 1e-1)
width = 32  # tune: int(8, 128)
act = "relu"  # tune: choice("relu", "tanh")
for epoch in range(9):  # tune: epochs
    acc = (1 - 0.5 ** (epoch + 1)) * (1 - abs(lr - 0.01)) + width / 1000 + (act == "relu") * 0.01
n_params = width * 65
"""


def test_the_plot_chooser_draws_every_view_with_its_own_controls(tmp_path):
    from nbtune.view.plots import PLOT_VIEWS

    res = nbtune.tune(
        THREE_PARAMS,
        maximize="acc",
        n_trials=40,
        seed=0,
        sampler="random",
        store=tmp_path,
        view=None,
        record="n_params",
        scheduler="hyperband",  # enough complete trials for every view (ASHA completes about one in 27 here)
    )
    v = _view(res.study)
    v.close(res, handover=False)
    assert list(v.plot_params.options) == ["lr", "width", "act"]
    assert [value for _, value in v.color_by.options] == [None, "lr", "width", "act"]
    seen = {}
    for name, view in PLOT_VIEWS.items():
        v.plot_view.value = name
        png = v.plot.value
        assert png[:4] == b"\x89PNG", name
        width, height = _png_size(png)
        assert width >= 880 and height >= 300, (name, width, height)  # large enough to read
        seen[name] = png
        assert (v.color_by.layout.display != "none") == (view.uses == "color_by"), name
        assert (v.plot_params.layout.display != "none") == (view.uses == "params"), name
        assert html.escape(view.help) in v.plot_help.value
    assert len(set(seen.values())) == len(seen)  # each view is its own picture
    v.plot_view.value = "learning curves"
    by_state = v.plot.value
    v.color_by.value = "lr"
    assert v.plot.value != by_state
    v.plot_view.value = "contour"
    v.plot_params.value = ("width",)
    assert _png_size(v.plot.value)[1] < 200  # one parameter: a line saying to choose two
    v.plot_params.value = ("width", "lr")
    assert _png_size(v.plot.value)[1] >= 400


def _png_size(png):
    import struct

    return struct.unpack(">II", png[16:24])


def test_the_eta_rests_on_the_pace_of_this_runs_latest_trials_and_says_so():
    import datetime

    from optuna.trial import TrialState, create_trial

    from nbtune.view.progress import Snapshot, eta_text

    t0 = datetime.datetime(2026, 1, 1, 12, 0, 0)

    def done(at, state=TrialState.COMPLETE):
        t = create_trial(state=state, value=0.5 if state == TrialState.COMPLETE else None)
        t.datetime_start, t.datetime_complete = t0, t0 + datetime.timedelta(seconds=at)
        return t

    earlier_run = [done(-100), done(-99)]
    # a slow start (worker start-up: 30 s), then one trial every 2 s
    trials = [*earlier_run, done(30), done(32, TrialState.PRUNED), done(34), done(36)]
    snap = Snapshot(trials, target=26, direction="maximize", metric="acc")
    at36 = t0 + datetime.timedelta(seconds=36)  # as the last trial ended
    assert eta_text(snap, since=t0, now=at36) == "~40s left (pace of the last 4 trials)"  # 20 left x 2 s
    assert eta_text(Snapshot(trials[:4], 26, "maximize", "acc"), since=t0, now=at36) == ""  # 2 trials: too early to say
    assert eta_text(Snapshot(trials, 6, "maximize", "acc"), since=t0, now=at36) == ""  # nothing left
    # the --timeout comes first: the time to it; only the time limits the run: the time to it
    import time

    soon = time.time() + 12.4
    assert eta_text(snap, since=t0, deadline=soon, now=at36) == "12s left (--timeout)"
    assert eta_text(snap, since=t0, deadline=soon + 60, now=at36) == "~40s left (pace of the last 4 trials)"
    assert (
        eta_text(Snapshot(trials, NO_LIMIT, "maximize", "acc"), since=t0, deadline=soon, now=at36)
        == "12s left (--timeout)"
    )
    # with trials paused, promotions go on besides the configurations left: a lower bound, said so
    # ('~1s left' with 22 paused trials, some to be promoted; found trying nbtune as a new user)
    from nbtune.store.attrs import ATTR

    paused = done(38, TrialState.PRUNED)
    paused.user_attrs[ATTR.DECISION] = {"paused": True, "epoch": 1, "rank": 2, "n_compared": 3, "n_keep": 1}
    with_paused = Snapshot([*trials, paused], 27, "maximize", "acc")
    assert with_paused.paused == 1
    assert (
        eta_text(with_paused, since=t0, now=at36 + datetime.timedelta(seconds=2))
        == "~40s+ left (pace of the last 5 trials; paused ones may go on)"
    )
    # between two ends it counts down; a trial running past the pace slows it, and it grows, said so
    # (it sat at the same time left while one slow trial ran: found trying nbtune as a new user)
    assert eta_text(snap, since=t0, now=at36 + datetime.timedelta(seconds=1)) == "~39s left (pace of the last 4 trials)"
    late = eta_text(snap, since=t0, now=at36 + datetime.timedelta(seconds=10))  # (6 + 10) / 4 s per trial, 19 more
    assert late == "~1m16s+ left (pace of the last 4 trials; no trial has ended for 10s)", late
    later = eta_text(snap, since=t0, now=at36 + datetime.timedelta(seconds=30))
    assert later.startswith("~2m51s+ left"), later
    # fast trials (a pace of 0.1 s): a wait under a second is no news ('no trial has ended for 0s' was said)
    fast = [done(36 + i / 10) for i in range(5)]
    quick = eta_text(Snapshot(fast, 30, "maximize", "acc"), since=t0, now=at36 + datetime.timedelta(seconds=0.9))
    assert quick == "~2s left (pace of the last 5 trials)", quick
    # the last trial, overdue: no time to give
    assert eta_text(Snapshot(trials, 7, "maximize", "acc"), since=t0, now=at36 + datetime.timedelta(seconds=10)) == ""


def test_with_only_a_timeout_the_bar_is_the_time_and_there_is_no_target_to_raise(tmp_path):
    views = []

    def factory(run, search):
        views.append(WidgetView(run.study, run.metric, run.direction, search=search, display=False, refresh=0.0))
        return views[-1]

    slow = CURVES.replace("    acc =", "    import time; time.sleep(0.01)\n    acc =")
    res = nbtune.tune(slow, maximize="acc", timeout=1.0, seed=0, store=tmp_path, view=factory)
    v = views[0]
    assert v.more_button.layout.display == "none" and v.more.layout.display == "none"
    assert v.progress.max == 1000 and v.progress.value == 1000 and v.progress.bar_style == "success"
    assert f"{res.n_finished} finished" in v.status.value and "/1000000000" not in v.status.value
    assert f"{res.n_finished} trials finished" in res.summary()


def test_a_dashboard_handed_over_to_the_result_leaves_no_widget_models_behind(ip, tmp_path):
    """A notebook saved with its widget state kept every run's dashboard (about 100 kB each),
    though nothing displayed them any more (found trying nbtune as a new user)."""
    from ipywidgets.widgets.widget import _instances

    before = set(_instances)
    views = []

    def factory(run, search):
        views.append(WidgetView(run.study, run.metric, run.direction, search=search, display=True, refresh=0.0))
        return views[-1]

    res = nbtune.tune(CURVES, maximize="acc", n_trials=6, seed=0, store=tmp_path, view=factory)
    assert views[0].n_redraws >= 1 and views[0]._handle is not None
    assert set(_instances) - before == set()  # every model of the dashboard is closed
    shown = res.show()  # the live dashboard comes back on demand, as a new one
    assert shown.comm is not None and shown.model_id in _instances


def test_the_progress_line_names_a_trial_that_runs_far_longer_than_the_others():
    """A trial that hangs (no --trial-timeout) is seen in the text progress, with its configuration."""
    import datetime

    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from nbtune.view.progress import Snapshot, long_running

    t0 = datetime.datetime(2026, 1, 1, 12, 0, 0)
    finished = []
    for _ in range(4):
        t = create_trial(state=TrialState.COMPLETE, value=0.5)
        t.datetime_start, t.datetime_complete = t0, t0 + datetime.timedelta(seconds=2)
        finished.append(t)
    stuck = create_trial(
        state=TrialState.RUNNING, params={"slow": 0.83}, distributions={"slow": FloatDistribution(0, 1)}
    )
    stuck.number, stuck.datetime_start = 4, t0
    snap = Snapshot([*finished, stuck], target=10, direction="maximize", metric="acc")
    late = t0 + datetime.timedelta(seconds=250)
    assert long_running(snap, now=late) == " · trial 4 running for 4m10s (slow=0.83)"
    assert long_running(snap, now=t0 + datetime.timedelta(seconds=30)) == ""  # not yet a minute
    # trials that all take minutes: one of them is not named for taking minutes too
    for t in finished:
        t.datetime_complete = t0 + datetime.timedelta(seconds=100)
    assert long_running(Snapshot([*finished, stuck], 10, "maximize", "acc"), now=late) == ""
