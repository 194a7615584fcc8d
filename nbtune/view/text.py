"""Text progress: a line every few seconds, for terminals, scripts and headless runs."""

from __future__ import annotations

import datetime
import sys
import time
from typing import TYPE_CHECKING, Any

from nbtune.run.output import beside_trials
from nbtune.store.attrs import ATTR, NO_LIMIT, finished_count
from nbtune.view.base import BaseView, RunInfo
from nbtune.view.format import fmt, of_target
from nbtune.view.progress import Clock, Snapshot, duration, eta_text, long_running

if TYPE_CHECKING:
    from nbtune.run.coordinator import Search

__all__ = ["TextView"]


class TextView(BaseView):
    """Progress as a line every few seconds, for terminals and headless runs."""

    def __init__(
        self, run: RunInfo, search: Search, every: float = 5.0, clock: Clock | None = None, stream: Any = None
    ) -> None:
        self.run, self.search = run, search
        self.clock = clock or Clock()
        self.every = every
        self.stream = stream or beside_trials(sys.stdout)
        self.t0 = self.clock.now()
        self._last = self.t0  # the header below is the first line; progress follows every few s
        self._start_finished = finished_count(run.study.get_trials(deepcopy=False))
        self._started_at = datetime.datetime.now()  # Optuna's trial times are naive local times
        target, deadline = search.control.target(), search.deadline
        more = (
            f"running {target - self._start_finished} more"
            if target < NO_LIMIT
            else f"running until the --timeout ({duration(max(0.0, deadline - time.time()))})"
            if deadline is not None
            else "running"
        )
        print(
            f"nbtune: {run.study.study_name} · {run.sampler} · {run.scheduler.describe()} · "
            f"{of_target(self._start_finished, target)} trials done, {more} "
            f"on {search.n_jobs} {search.backend.name} worker(s)"
            + (
                f", at most {duration(limit, exact=True)} a trial"
                if (limit := getattr(search, "trial_timeout", None))
                else ""
            ),
            file=self.stream,
            flush=True,
        )
        for note in run.notes:  # before the first trial, not only in the summary after the last
            print(f"  note: {note}", file=self.stream, flush=True)

    def update(self) -> None:
        now = self.clock.now()
        if now - self._last < self.every:
            return
        self._last = now
        study = self.run.study
        snap = Snapshot(
            study.get_trials(deepcopy=False),
            self.search.control.target(),
            self.run.direction,
            self.run.metric,
            study.user_attrs.get(ATTR.PAUSES_ENDED),
        )
        best = f" · best {snap.metric} {fmt(snap.best.value)} (trial {snap.best.number})" if snap.best else ""
        eta = eta_text(snap, self._started_at, deadline=self.search.deadline)
        print(
            f"  {of_target(snap.finished, snap.target)} finished · {len(snap.running)} running · "
            + (f"{snap.paused} paused · " if snap.paused else "")
            + f"{snap.pruned - snap.paused} stopped early · "
            f"{snap.failed} failed{best} · {duration(now - self.t0)}{' · ' + eta if eta else ''}" + long_running(snap),
            file=self.stream,
            flush=True,
        )
