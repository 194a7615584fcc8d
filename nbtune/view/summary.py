"""The numbers and the static text of a study: what every view and the result share."""

from __future__ import annotations

import html
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from nbtune.cell.space import drawn_params
from nbtune.run.pbt import format_pbt
from nbtune.run.schedulers import format_decision
from nbtune.store.attrs import (
    ATTR,
    conditional_reads,
    continuations,
    cross_validated,
    finished_count,
    held_continuations,
    is_feasible,
    is_interrupted,
    ranked,
    refused,
)
from nbtune.view.format import fmt, fmt_param, of_target, plural_trials

if TYPE_CHECKING:
    import optuna

    from nbtune.view.checks import CheckReport

__all__ = ["StudySummary", "fmt", "plural_trials"]

_TURNED_ROUND = ("minimized a score", "maximized an error")  # diagnose's kinds for a metric run the other way


class StudySummary:
    """A study seen as a search: counts, the best trials, the reasons, a text and HTML summary.

    :class:`~nbtune.view.result.TuneResult` is this plus the dashboard and the DataFrame;
    the live views use it to draw a study that is still running.

    Args:
        study: the study, read (never written).
        metric: the metric's variable name.
        n_trials: the target number of finished trials, if there is one.
        store_path: where the study is stored (shown in summaries).
        messages: notes about the run, shown after the numbers.
        scheduler, sampler: their descriptions, for the header.
    """

    def __init__(
        self,
        study: optuna.Study,
        metric: str,
        *,
        n_trials: int | None = None,
        store_path: str | None = None,
        messages: list[str] | None = None,
        scheduler: str = "",
        sampler: str = "",
    ) -> None:
        self.study = study
        self.metric = metric
        self.n_trials = n_trials
        self.store_path = store_path
        self.messages = list(messages or [])
        self.scheduler = scheduler
        self.sampler = sampler
        self.checks: CheckReport | None = None  # re-validation and holdout, when they ran

    # --- the numbers -----------------------------------------------------------------
    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    @property
    def direction(self) -> str:
        return self.study.direction.name.lower()

    @property
    def cross_validated(self) -> bool:
        """The trials' steps are cross-validation folds ('# tune: folds(k)'), not epochs: their
        values are the running mean over the folds, not a learning curve."""
        return cross_validated(self.study)

    @property
    def unit(self) -> str:
        """What a trial's steps are: "fold" or "epoch"."""
        return "fold" if self.cross_validated else "epoch"

    @property
    def best_trial(self) -> optuna.trial.FrozenTrial:
        """The best complete trial that meets the guardrails.

        Raises:
            ValueError: there is none; the message says why.
        """
        best = self._best_or_none()
        if best is None:
            raise ValueError(self._no_best())
        return best

    @property
    def best_params(self) -> dict[str, Any]:
        """The best configuration found, as the cell got it (a tuple choice a tuple; raises ValueError,
        saying why, while there is none)."""
        return drawn_params(self.best_trial.params)

    @property
    def best_value(self) -> float:
        value = self.best_trial.value
        assert value is not None
        return value

    @property
    def n_finished(self) -> int:
        return finished_count(self.trials)

    def counts(self) -> dict[str, int]:
        """Trials by state; interrupted ones (which don't count) apart from failed ones, and paused
        trials that were promoted (their continuation has the configuration's outcome) apart
        from stopped ones."""
        c: Counter[str] = Counter()
        promoted = held_continuations(self.trials)
        for t in self.trials:
            state = t.state.name.lower()
            if is_interrupted(t):
                state = "interrupted"
            elif t.number in promoted:
                state = "promoted"
            c[state] += 1
        return dict(c)

    def count_words(self) -> list[str]:
        """The counts in the words the dashboard uses: "3 complete", "2 stopped early", "1 failed"."""
        words = {"pruned": "stopped early", "fail": "failed", "waiting": "queued", "promoted": "paused and continued"}
        order = ["complete", "pruned", "fail", "interrupted", "running", "waiting", "promoted"]
        c = self.counts()
        out = [f"{c[k]} {words.get(k, k)}" for k in sorted(c, key=lambda k: (order.index(k) if k in order else 99, k))]
        # stopped trials that may still go on (a run ended by Stop): "paused", as the dashboard says
        paused = len(self._still_paused()) if c.get("pruned") else 0
        if paused:
            at, rest = out.index(f"{c['pruned']} stopped early"), c["pruned"] - paused
            out[at : at + 1] = [f"{paused} paused"] + ([f"{rest} stopped early"] if rest else [])
        # the guardrails, named: how many complete trials break each, or that all meet them (the header
        # said nothing when all did, and 'a guardrail' when some broke one; found trying nbtune as a new user)
        complete = [t for t in self.trials if t.state.name == "COMPLETE"]
        guardrails = sorted({k for t in complete for k in t.constraints})
        if guardrails:
            breaking = [t for t in complete if not is_feasible(t)]
            broken = sorted({k for t in breaking for k, v in t.constraints.items() if v > 0})
            said = (
                f"{len(breaking)} of them breaking {' or '.join(map(repr, broken))}"
                if breaking
                else f"{'both' if len(complete) == 2 else 'all'} meeting {' and '.join(map(repr, guardrails))}"
                if len(complete) > 1
                else f"meeting {' and '.join(map(repr, guardrails))}"
            )
            out.insert(1 if c.get("complete") else 0, said)
        return out

    def _still_paused(self) -> set[int]:
        """Stopped trials that may still go on (a run ended by Stop leaves them paused)."""
        return still_paused(self.trials, self.study.user_attrs.get(ATTR.PAUSES_ENDED), held_continuations(self.trials))

    def decisions(self) -> list[str]:
        """The scheduler's decisions as sentences, in trial order: why each trial was stopped or
        paused, and with PBT each member's exploit/explore decision."""
        return [text for _, text in self._decision_sentences()]

    def _decision_sentences(self) -> list[tuple[str, str]]:
        ended = self.study.user_attrs.get(ATTR.PAUSES_ENDED)
        return decision_sentences(self.trials, self.metric, self.direction, ended_at=ended)

    def errors(self) -> dict[int, str]:
        """Failed trials' errors by trial number."""
        return {t.number: t.user_attrs[ATTR.ERROR] for t in self.trials if ATTR.ERROR in t.user_attrs}

    def top(self, k: int = 5) -> list[optuna.trial.FrozenTrial]:
        return ranked(self.trials, self.direction)[:k]

    def _no_best(self) -> str:
        """Why there is no best trial, in words."""
        complete = [t for t in self.trials if t.state.name == "COMPLETE"]
        if complete and not any(is_feasible(t) for t in complete):
            broken = sorted({k for t in complete for k, v in t.constraints.items() if v > 0})
            return (
                f"no completed trial meets the guardrails ({plural_trials(len(complete))} complete, all breaking "
                f"{' or '.join(repr(b) for b in broken)}): widen the search space or loosen --subject-to"
            )
        finished = [t for t in self.trials if t.state.is_finished() and not is_interrupted(t)]
        if finished and all(t.state.name == "FAIL" for t in finished):
            return f"no trial completed: {'the one' if len(finished) == 1 else f'all {len(finished)}'} that finished failed"
        stopped = [t for t in finished if t.state.name == "PRUNED" and t.last_step is not None]
        if stopped and not complete:
            # every trial stopped before its last epoch (cut by --trial-timeout, stopped at a rung): it had said
            # "no trial completed yet" after the search, with nothing to do (found trying nbtune as a new user)
            sign = -1.0 if self.direction == "maximize" else 1.0
            last = {t.number: t.intermediate_values[t.last_step] for t in stopped if t.last_step is not None}
            top = min(stopped, key=lambda t: sign * float(last[t.number]))
            cut = sum(ATTR.TIMED_OUT in t.user_attrs for t in stopped)
            why = (
                f" ({'all' if cut == len(stopped) else cut} cut by --trial-timeout "
                f"{fmt(next(t.user_attrs[ATTR.TIMED_OUT] for t in stopped if ATTR.TIMED_OUT in t.user_attrs))} s)"
                if cut
                else ""
            )
            paused = any((t.user_attrs.get(ATTR.DECISION) or {}).get("paused") for t in stopped)
            todo = (
                "raise --trial-timeout"
                if cut
                else "re-run the cell: its paused trials go on"  # (an Interrupt mid-PBT: -n is not its budget)
                if paused
                else "raise --trials"
            )
            return (
                f"no trial completed: {plural_trials(len(stopped))} stopped before the end of the epochs loop{why}; the "
                f"best of them is trial {top.number} ({self.metric} = {fmt(last[top.number])} at "
                f"{(top.user_attrs.get(ATTR.DECISION) or {}).get('unit', 'epoch')} {top.last_step}: "
                f"res.study.trials[{top.number}]); {todo}"
                + ("" if paused and not cut else " for trials that run to the end")
            )
        return "no trial completed yet"

    def _finished(self) -> str:
        """'12/20' (finished of the target), or '20' when the study already had more than this run's target."""
        return of_target(self.n_finished, self.n_trials)

    def _trials_word(self) -> str:
        """ "trial" after "1" ("1 trials finished"), else "trials" ("1/20 trials")."""
        return "trial" if self._finished() == "1" else "trials"

    def _best_or_none(self) -> optuna.trial.FrozenTrial | None:
        try:
            return self.study.best_trial
        except ValueError:
            return None

    # --- display ---------------------------------------------------------------------
    _reads: dict[str, Any] | None = None

    def _params_text(self, t: optuna.trial.FrozenTrial, escape: bool = False, code: bool = False) -> str:
        """``model=rf, depth=5 (unread here: n_neighbors)``: a trial's values, those its configuration
        never read (``n_neighbors`` of a forest, under ``if model == "knn":``) named apart: the summary
        read 'model=rf, n_neighbors=30' as if 30 mattered (found trying nbtune as a new user).
        ``escape``: as HTML; ``code``: each value in ``<code>`` too."""
        from nbtune.cell.annotations import inactive_in

        if self._reads is None:
            self._reads = conditional_reads(self.study.user_attrs)
        unread = inactive_in(t.params, self._reads) if self._reads else set()
        escape = escape or code

        def one(k: str, v: Any) -> str:
            text = html.escape(f"{k}={fmt_param(v)}") if escape else f"{k}={fmt_param(v)}"
            return f"<code>{text}</code>" if code else text

        text = ", ".join(one(k, v) for k, v in t.params.items() if k not in unread)
        if unread:
            names = ", ".join(k for k in t.params if k in unread)
            text += f" (unread here: {html.escape(names) if escape else names})"
        return text

    def summary(self) -> str:
        """A few lines of plain text: what a terminal, GitHub or nbconvert shows."""
        # what the finished count counts, then the rest: '20/20 trials finished (3 complete, 17 stopped
        # early, 1 interrupted, ...)' did not add up (found trying nbtune as a new user)
        aside = ("interrupted", "running", "queued", "paused and continued")
        words = self.count_words()
        counted = [w for w in words if not w.split(" ", 1)[1].startswith(aside)]
        others = [w for w in words if w not in counted]
        lines = [
            f"nbtune study {self.study.study_name!r}: {self._finished()} {self._trials_word()} finished ("
            + ", ".join(counted)
            + (("; besides them, " if counted else "") + ", ".join(others) if others else "")
            + ")"
        ]
        best = self._best_or_none()
        if best is not None:
            lines.append(f"best {self.metric} = {fmt(best.value)} (trial {best.number}): {self._params_text(best)}")
        else:
            lines.append(self._no_best())
        for t in self.top(5)[1:]:  # with their values: what the runners-up were, without the frame
            params = self._params_text(t)
            lines.append(f"  trial {t.number}: {self.metric} = {fmt(t.value)}" + (f" ({params})" if params else ""))
        stops = [text for kind, text in self._decision_sentences() if kind == "stop"]
        if stops:
            paused = len(self._still_paused())
            broke = sum("breaks" in (t.user_attrs.get(ATTR.DECISION) or {}) for t in self.trials)
            of = ", ".join(
                ([f"{paused} of them paused for now"] if paused else [])
                + ([f"{broke} for breaking a guardrail at a rung"] if broke else [])
            )
            lines.append(f"{self.counts().get('pruned', 0)} stopped early{f' ({of})' if of else ''}, e.g. {stops[-1]}")
        pbt = [n for t in self.trials if (n := t.user_attrs.get(ATTR.PBT))]
        if pbt:
            exploits = [n for n in pbt if "donor" in n]
            lines.append(
                f"PBT: {len(exploits)} of {len(pbt)} decisions copied a better member"
                + (f", e.g. {format_pbt(exploits[-1], self.metric)}" if exploits else "")
            )
        errs = self.errors()
        if errs:
            # the latest: after a re-run, this run's, not an old one's; a crash before the cell's own
            # raise (a NameError below 'raise RuntimeError(sol.message)' was hidden behind it)
            raised = {t.number for t in self.trials if refused(t)}
            n, e = ([(n, e) for n, e in errs.items() if n not in raised] or list(errs.items()))[-1]
            lines.append(f"{len(errs)} failed, e.g. trial {n}: {e}")
        findings = self._findings()
        lines.extend(f"diagnosis: {f.sentence()}" for f in findings[:3])
        if self.checks is not None:
            lines.extend(self.checks.lines())
        lines.extend(self._notes(findings))
        if self.store_path:  # where every trial is kept (it was said nowhere: found trying nbtune as a new user)
            lines.append(f"kept in {self.store_path}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.summary())

    def _repr_html_(self) -> str:
        return self.html()

    def html(self, plot: bool = True, max_rows: int = 10) -> str:
        """A static HTML summary: best configuration, top trials, counts, a plot."""
        esc = html.escape
        best = self._best_or_none()
        parts = [f"<div class='nbtune-summary'><h4 style='margin:4px 0'>nbtune · {esc(self.study.study_name)}</h4>"]
        parts.append(
            "<p>"
            + f"{self._finished()} {self._trials_word()} finished · "
            + " · ".join(esc(w) for w in self.count_words())
            + (f" · {esc(self.sampler)}" if self.sampler else "")
            + (f" · {esc(self.scheduler)}" if self.scheduler else "")
            + "</p>"
        )
        if best is not None:
            parts.append(
                f"<p><b>best {esc(self.metric)} = {fmt(best.value)}</b> (trial {best.number}): "
                + self._params_text(best, code=True)
                + "</p>"
            )
        top = self.top(max_rows)
        if top:
            keys = list(top[0].params)
            head = "".join(f"<th>{esc(k)}</th>" for k in ["trial", self.metric, *keys])
            body = ""
            for t in top:
                style = (
                    " style='background:rgba(52,168,83,0.2)'" if best is not None and t.number == best.number else ""
                )
                cells = [str(t.number), fmt(t.value)] + [esc(fmt_param(t.params.get(k, ""))) for k in keys]
                body += f"<tr{style}>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>"
            parts.append(f"<table class='nbtune-top'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        dec = self.decisions()
        if dec:
            items = "".join(f"<li>{esc(d)}</li>" for d in dec[-5:])
            if len(dec) > 5:  # (it was cut to the last 5 without a word)
                items += f"<li><i>and {len(dec) - 5} earlier: <code>res.decisions()</code> lists them all</i></li>"
            paused = len(self._still_paused())
            n_pbt = sum(1 for t in self.trials if ATTR.PBT in t.user_attrs)
            head = (
                f"PBT's exploit/explore decisions ({n_pbt})"  # members pause at every interval: not stops
                if n_pbt
                else f"{self.counts().get('pruned', 0) - paused} stopped early, {paused} paused for now"
                if paused  # as the dashboard says
                else f"{plural_trials(self.counts().get('pruned', 0))} stopped early"
            )
            went_on = self.counts().get("promoted", 0)
            if went_on and not n_pbt:  # their decisions are listed too: the count adds up (found trying nbtune)
                head += f", {went_on} paused and continued"
            parts.append(f"<details><summary>{head}</summary><ul>{items}</ul></details>")
        errs = self.errors()
        if errs:
            items = "".join(f"<li>trial {n}: {esc(e)}</li>" for n, e in list(errs.items())[:5])
            if len(errs) > 5:
                items += f"<li><i>and {len(errs) - 5} more: <code>res.errors()</code> lists them all</i></li>"
            parts.append(f"<details><summary>{plural_trials(len(errs))} failed</summary><ul>{items}</ul></details>")
        findings = self._findings()
        if findings:
            items = "".join(f"<li>{esc(f.sentence())}</li>" for f in findings[:5])
            parts.append(
                f"<details open class='nbtune-diagnosis'><summary>diagnosis</summary><ul>{items}</ul></details>"
            )
        if self.checks is not None:
            parts.append(self.checks.html())
        for m in self._notes(findings):
            parts.append(f"<p><i>{esc(m)}</i></p>")
        if self.store_path:
            parts.append(f"<p style='opacity:0.7'><small>kept in <code>{esc(self.store_path)}</code></small></p>")
        if plot and best is not None:
            from nbtune.view.plots import history_png_base64

            img = history_png_base64(self)
            if img:
                parts.append(f"<img alt='best so far' src='data:image/png;base64,{img}'/>")
        parts.append("</div>")
        return "".join(parts)

    def _notes(self, findings: list[Any]) -> list[str]:
        """The run's notes, less the one a finding says again: a metric minimized that reads like a
        score was said twice in the summary, as the note before the search and as the diagnosis
        (found trying nbtune as a new user); the diagnosis, which counts the trials, stays."""
        if not any(f.kind in _TURNED_ROUND for f in findings):
            return self.messages
        return [m for m in self.messages if not m.startswith(f"{self.metric!r} reads like")]

    def _findings(self) -> list[Any]:
        """Failure signatures worth a line of the summary: plain failures are already counted
        there, so they appear only when they share a parameter range."""
        from nbtune.view.diagnose import diagnose

        try:
            return [f for f in diagnose(self) if f.kind != "failed" or f.region]
        except Exception:  # a diagnosis is a nicety: never fail a display for it
            return []

    def best_so_far(self) -> list[tuple[int, float]]:
        """(trial number, best value so far) after each completed trial that meets the guardrails."""
        from optuna.trial import TrialState

        out, best = [], math.nan
        maximize = self.direction == "maximize"
        for t in sorted(self.trials, key=lambda t: t.number):
            if t.state == TrialState.COMPLETE and t.value is not None and is_feasible(t):
                if math.isnan(best) or (t.value > best if maximize else t.value < best):
                    best = t.value
                out.append((t.number, best))
        return out


def decision_sentences(
    trials: list[optuna.trial.FrozenTrial],
    metric: str,
    direction: str,
    last: int | None = None,
    ended_at: int | None = None,
) -> list[tuple[str, str]]:
    """(kind, sentence) of the scheduler's decisions, in trial order: ``"stop"`` for a trial stopped
    (or paused, not continued yet) at a rung, ``"promoted"`` for a paused trial that was continued,
    ``"pbt"`` for a PBT member's exploit/explore decision. ``last``: only the latest so many trials
    are looked at (fast for huge studies); ``ended_at``: the study's ``nbtune:pauses_ended``."""
    promoted = continuations(trials)
    ended = pauses_ended(trials, ended_at, promoted)
    out = []
    for t in trials if last is None else trials[-last:]:
        note = t.user_attrs.get(ATTR.PBT)
        if note:
            out.append(("pbt", format_pbt(note, metric)))
        d = t.user_attrs.get(ATTR.DECISION)
        if d and d.get("scheduler") != "pbt":  # PBT's pauses are its interval: the decision is the note
            kind = "promoted" if t.number in promoted else "stop"
            text = format_decision(t.number, d, metric, direction, promoted.get(t.number), t.number in ended)
            out.append((kind, text))
    return out


def _paused_not_continued(
    trials: list[optuna.trial.FrozenTrial], promoted: dict[int, int] | None
) -> list[optuna.trial.FrozenTrial]:
    if promoted is None:
        promoted = continuations(trials)
    return [
        t
        for t in trials
        if t.state.name == "PRUNED" and t.number not in promoted and t.user_attrs.get(ATTR.DECISION, {}).get("paused")
    ]


def pauses_ended(
    trials: list[optuna.trial.FrozenTrial], ended_at: int | None, promoted: dict[int, int] | None = None
) -> set[int]:
    """Paused trials that stay stopped: not continued, and paused before the search ended.
    ``promoted``: ``continuations(trials)``, when the caller has it already."""
    if ended_at is None:
        return set()
    return {t.number for t in _paused_not_continued(trials, promoted) if t.number <= ended_at}


def still_paused(
    trials: list[optuna.trial.FrozenTrial], ended_at: int | None, promoted: dict[int, int] | None = None
) -> set[int]:
    """Paused trials that may still go on, in this run or the next after a Stop: not continued, and
    paused after the last search that ended by its budget (``ended_at``: ``nbtune:pauses_ended``)."""
    return {t.number for t in _paused_not_continued(trials, promoted) if ended_at is None or t.number > ended_at}
