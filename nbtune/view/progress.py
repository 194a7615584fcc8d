"""Progress arithmetic shared by the live views: counts at one moment, elapsed time, ETA."""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from nbtune.store.attrs import NO_LIMIT, finished_count, held_continuations, is_feasible, is_interrupted, run_seconds
from nbtune.view.format import fmt_param
from nbtune.view.summary import still_paused

if TYPE_CHECKING:
    import optuna

__all__ = ["Clock", "Snapshot", "duration", "eta_text", "long_running"]

LONG_RUNNING = 60.0  # seconds a trial runs before the progress line names it (unless trials are that slow)


class Clock:
    """Wall clock; tests substitute a fake one to check throttling without sleeping."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now


class Snapshot:
    """Counts and progress of a study at one moment, computed once per refresh."""

    def __init__(
        self,
        trials: list[optuna.trial.FrozenTrial],
        target: int,
        direction: str,
        metric: str,
        pauses_ended_at: int | None = None,
    ) -> None:
        """``pauses_ended_at``: the study's ``nbtune:pauses_ended`` (paused trials up to it stay stopped)."""
        from optuna.trial import TrialState

        self.trials = trials
        self.target = target
        self.finished = finished_count(trials)
        self.running = [t for t in trials if t.state == TrialState.RUNNING]
        promoted = held_continuations(trials)  # paused, then continued (and not cut): not stopped
        self.pruned = sum(1 for t in trials if t.state == TrialState.PRUNED and t.number not in promoted)
        # paused (pause-and-promote, PBT), not continued yet, and not stopped for good when a search
        # ended: they may still go on (in this run, or the next after a Stop)
        self.still_paused = still_paused(trials, pauses_ended_at, promoted)
        self.paused = len(self.still_paused)
        self.interrupted = sum(1 for t in trials if is_interrupted(t))
        self.failed = sum(1 for t in trials if t.state == TrialState.FAIL) - self.interrupted
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        done = [t for t in complete if is_feasible(t)]
        self.constrained = any(t.constraints for t in complete)
        self.n_complete, self.n_feasible = len(complete), len(done)
        self.best = (max if direction == "maximize" else min)(done, key=lambda t: t.value) if done else None  # type: ignore[arg-type, return-value]
        self.direction = direction
        self.metric = metric


def eta_text(
    snap: Snapshot,
    since: datetime.datetime,
    pace_of: int = 10,
    deadline: float | None = None,
    now: datetime.datetime | None = None,
) -> str:
    """Time left at the pace of the latest trials, saying so; "" until three trials of this run
    have finished. With a ``deadline`` (the --timeout, as ``time.time()``) the time to it when
    that comes first, or when only the time limits the run.

    The pace is the rate at which the latest ``pace_of`` trials finished (since ``since``,
    the start of this run), so worker start-up and the first slow trials do not count, and
    with several workers it is their combined rate. Under Hyperband later trials tend to run
    longer (fewer are stopped early): the estimate is then optimistic, which is why it says
    what it rests on. With paused trials (pause-and-promote) it is a lower bound ("~5s+"): those
    promoted go on as new trials besides the configurations left.

    Between two ends it counts down to the next one the pace expects; past it (a long trial), that
    trial's time so far joins the pace, and the estimate grows while it runs (it sat still for
    as long as one slow trial ran: found trying nbtune as a new user).
    """
    ends = sorted(
        t.datetime_complete
        for t in snap.trials
        if t.datetime_complete is not None
        and t.datetime_complete >= since
        and t.state.is_finished()
        and not is_interrupted(t)
    )
    to_deadline = max(0.0, deadline - time.time()) if deadline is not None else math.inf
    timeout = f"{duration(to_deadline)} left (--timeout)"
    if snap.target >= NO_LIMIT:
        return timeout if deadline is not None else ""
    left = snap.target - snap.finished
    if len(ends) < 3 or left <= 0:
        return ""
    recent = ends[-pace_of:]
    span = (recent[-1] - recent[0]).total_seconds()
    if span <= 0:
        return ""
    per_trial = span / (len(recent) - 1)
    waited = max(0.0, ((now or datetime.datetime.now()) - recent[-1]).total_seconds())  # (naive local times)
    # (a wait under a second is no news: it read 'no trial has ended for 0s' between fast trials)
    overdue = waited > per_trial and waited >= 1.0
    if not overdue:  # the next end is due in per_trial - waited
        left_s = max(0.0, per_trial * left - min(waited, per_trial))
    else:  # the wait so far is the next interval's lower bound, and the pace slows with it
        per_trial = (span + waited) / len(recent)
        left_s = per_trial * (left - 1)
    if left_s > to_deadline:
        return timeout
    if overdue and left_s < 1:  # the last trials, running longer than the pace: the time is theirs to tell
        return ""
    why = [f"pace of the last {len(recent)} trials"]
    if overdue:
        why.append(f"no trial has ended for {duration(waited)}")
    if snap.paused:  # promoted ones go on as new trials, not counted in what is left: a lower bound
        why.append("paused ones may go on")
    bound = "+" if overdue or snap.paused else ""
    return f"~{duration(left_s)}{bound} left ({'; '.join(why)})"


def long_running(snap: Snapshot, now: datetime.datetime | None = None) -> str:
    """`` · trial 7 running for 4m10s (slow=0.83)``: the longest-running trial, when it has run
    well past the others (a minute, and five times the median finished trial): a trial that hangs
    is seen, and which configuration it is. "" otherwise."""
    now = now or datetime.datetime.now()  # Optuna's trial times are naive local times
    started = [t for t in snap.running if t.datetime_start is not None]
    if not started:
        return ""
    oldest = min(started, key=lambda t: t.datetime_start)  # type: ignore[arg-type, return-value]
    assert oldest.datetime_start is not None
    ran = (now - oldest.datetime_start).total_seconds()
    spans = sorted(run_seconds(snap.trials))
    usual = spans[len(spans) // 2] if spans else 0.0
    if ran < max(LONG_RUNNING, 5 * usual):
        return ""
    shown = [f"{k}={fmt_param(v)}" for k, v in oldest.params.items()]
    params = ", ".join(shown[:4]) + (", ..." if len(shown) > 4 else "")
    return f" · trial {oldest.number} running for {duration(ran)}" + (f" ({params})" if params else "")


def duration(s: float, exact: bool = False) -> str:
    """``"42s"``, ``"3m05s"``, ``"2h10m"``; with ``exact``, a limit under 10 s as given (``"0.5s"``, not "0s")."""
    if exact and s < 10:
        return f"{s:g}s"
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s // 60:.0f}m{s % 60:02.0f}s"
    return f"{s // 3600:.0f}h{(s % 3600) // 60:02.0f}m"
