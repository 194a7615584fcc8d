"""What nbtune writes beside Optuna's own records, and how trials count toward ``--trials``.

Every name here is a user attribute of a study or a trial, so plain Optuna (and
optuna-dashboard) shows it too.
"""

from __future__ import annotations

import datetime
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = [
    "ATTR",
    "busy_spans",
    "configuration",
    "continuations",
    "cross_validated",
    "diverged",
    "finished_count",
    "is_continuation",
    "is_feasible",
    "is_interrupted",
    "ran_sealed",
    "ranked",
    "refused",
    "run_seconds",
]


class ATTR:
    """Names of the trial/study attributes nbtune writes (user attrs, visible in Optuna)."""

    SPACE = "nbtune:space"  # study: the search-space fingerprint
    CONFIG = "nbtune:config"  # study: metric, direction, scheduler settings
    IDENTITY = "nbtune:identity"  # study: fingerprints of the cell's code, notebook and data
    # study, + ":<k>": the k-th run that ran trials in it (0, 1, ...): when, from which trial, its
    # target, --seed, jobs, sampler and scheduler, and the versions of Python and the libraries the
    # cell reads (a reviewer could not tell from the store whether a result can be replayed)
    RUN = "nbtune:run"
    BASELINE = "nbtune:baseline"  # trial: evaluates the cell's own defaults
    OWNER = "nbtune:owner"  # trial: {"host", "pid", "worker", "start", "store"} running it (one journal write)
    ERROR = "nbtune:error"  # trial: "ValueError: message" of a failed trial
    TRACEBACK = "nbtune:traceback"
    FAILURE = "nbtune:failure"  # trial: what failed and where ("ValueError at line 5"), to group failures
    INTERRUPTED = "nbtune:interrupted"  # trial: reason; such trials don't count as finished
    RERUN_OF = "nbtune:rerun_of"  # trial: the interrupted trial whose configuration it runs again
    DECISION = "nbtune:decision"  # trial: why the scheduler stopped it (dict)
    # trial: the guardrails it breaks so far, read after its epochs ({"epoch", "by": {label: violation}},
    # None once it meets them again): at a rung it does not go on
    BREAKS = "nbtune:breaks"
    OUTPUT = "nbtune:output"  # trial: the tail of what it printed
    TIMED_OUT = "nbtune:timed_out"  # trial: it ran past --trial-timeout (the limit in seconds)
    # trial: cut by --trial-timeout in a call into compiled code that did not return, by ending its
    # worker process (that process's pid: the coordinator replaces the pool without counting a death)
    ENDED_PROCESS = "nbtune:ended_process"
    # study, + ":<trial number>": the notebook variables that trial changed in place in its worker
    # process (that process's copy), the first of a run in each process (before 2026-12-01 a trial's)
    CHANGED_IN_WORKER = "nbtune:changed_in_worker"
    # trial: a record of it was lost to damage in the store file (repair.py; found trying nbtune as a new user)
    DAMAGED = "nbtune:damaged"
    RAISED = "nbtune:raised"  # trial: it failed at the cell's own raise statement (the cell judged its configuration)
    WARNINGS = "nbtune:warnings"  # trial: the distinct warnings it printed ["Category: message", ...]
    CELL = "nbtune:cell"  # study: {"source", "line_offset", "holdout"}: the cell, to re-run it later
    SEED = "nbtune:seed"  # trial: the value the '# tune: seed' variable took
    CHECK = "nbtune:check"  # trial of a check study: {"role": "revalidate" | "final", "candidate": N}
    REQUEST = "nbtune:request"  # check study: {"candidates", "seeds"} the latest re-validation compares
    HOLDOUT = "nbtune:holdout"  # trial of a check study: the sealed holdout metric's value
    # trial of a check study: the fingerprint of the lines sealed with the holdout (and the data only
    # they read) it ran; check study: {"now": the latest run's, "unstamped": what runs without one ran}
    SEALED = "nbtune:sealed"
    RECORD = "nbtune:record"  # trial: {variable: value} of --record (a stopped trial's: when it stopped)
    RECORD_CURVES = "nbtune:record_curves"  # trial: {variable: [[epoch, value], ...]} of --record, each epoch
    CHECKPOINT = "nbtune:checkpoint"  # trial: {"artifact": id, "bytes": n, "names": [...]} of its saved state
    CHECKPOINT_ERROR = "nbtune:checkpoint_error"  # trial: why its state could not be saved
    RESUME = "nbtune:resume"  # queued re-run of a cut trial: {"artifact", "step", "values"} to continue from
    FOLDS = "nbtune:folds"  # trial: the metric in each cross-validation fold ('# tune: folds(k)')
    # trial continuing a paused one (pause-and-promote): {"from", "root", "epoch", "rank", "n_compared", "n_keep"}
    PROMOTED = "nbtune:promoted"
    # PBT continuation: {"member", "epoch", "value", "rank", "n"[, "donor", "donor_trial", "donor_value", "changes"]}
    PBT = "nbtune:pbt"
    # study: trials up to this number that are paused and not continued stay stopped (the search ended)
    PAUSES_ENDED = "nbtune:pauses_ended"
    # study: the number of its first trial that ran the cell's code as recorded now (--resume over
    # an edit of the cell sets it): failures before it are other code's
    CODE_SINCE = "nbtune:code_since"
    # study: each time --resume continued it over a change, [{"first_trial": n, "changes": [...]}]: the
    # identity it records is then the latest cell's, and this is what says its trials ran on others
    RESUMED_OVER = "nbtune:resumed_over"
    # study: the "possible leak" notes of the latest run with --holdout (lines of the search that read the
    # holdout's data): the holdout's gap cannot tell a leak then, and its sentence says so
    HOLDOUT_LEAKS = "nbtune:holdout_leaks"
    NOTE = "nbtune:note"  # study: --note, what the sweep is for
    # study: the --timeout (seconds) a run of it stopped at: with that timeout the study is done
    TIMEOUT_REACHED = "nbtune:timeout_reached"

    # What a re-queued (interrupted) trial keeps: it is the same run again.
    KEEP_ON_RERUN = (BASELINE, SEED, CHECK, PROMOTED, SEALED)


# A run's trial target when only --timeout limits it: workers go on until the time is up.
NO_LIMIT = 10**9


def run_seconds(trials: list[optuna.trial.FrozenTrial]) -> list[float]:
    """How long each of the finished ``trials`` ran, in seconds (those with both times)."""
    return [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.datetime_complete is not None and t.datetime_start is not None
    ]


def busy_spans(
    trials: list[optuna.trial.FrozenTrial], running_until: datetime.datetime | None = None
) -> list[tuple[datetime.datetime, datetime.datetime]]:
    """The times during which at least one of ``trials`` ran: their start-to-end spans merged,
    in order (trials still running end at ``running_until``, or are left out without it)."""
    spans: list[tuple[datetime.datetime, datetime.datetime]] = []
    for t in trials:
        end = t.datetime_complete or running_until
        if t.datetime_start is not None and end is not None:
            spans.append((t.datetime_start, end))
    merged: list[tuple[datetime.datetime, datetime.datetime]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def searched_seconds(trials: list[optuna.trial.FrozenTrial]) -> float:
    """How long the study has searched: the time during which at least one of its trials ran
    (the union of their start-to-end spans, so parallel workers count once and a kernel that
    died loses nothing of it)."""
    return sum((b - a).total_seconds() for a, b in busy_spans(trials))


def refused(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial that failed on a verdict about its configuration: the cell's own ``raise`` (a
    solver that fails there) or ``--trial-timeout`` (too slow). Ten in a row make a bug, not three."""
    return bool(trial.user_attrs.get(ATTR.RAISED)) or ATTR.TIMED_OUT in trial.user_attrs


def is_interrupted(trial: optuna.trial.FrozenTrial) -> bool:
    """A failed trial that was cut by the user or a dead process: it does not count, and runs again."""
    return trial.state.name == "FAIL" and ATTR.INTERRUPTED in trial.user_attrs


# A failure that says the numbers blew up: the metric came out NaN or infinite (nbtune's own
# MetricError, "val_loss not finite"), or the cell's code said so (an overflow, "Input contains NaN").
_DIVERGED = re.compile(r"not finite|\bnan\b|\binf\b|infinity|overflow|diverg", re.IGNORECASE)
# NaN in the data the model is given, not in what it computed: scikit-learn's "Input X contains NaN",
# "... does not accept missing values encoded as NaN" (the commonest tabular bug, advised to clip gradients)
_MISSING_DATA = re.compile(r"input [xy] contains|missing values", re.IGNORECASE)


def diverged(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial that failed because its configuration diverged, not because of a bug in the cell
    or the machine. The one place this is decided: the default sampler counts such a
    configuration as a bad one, the bug guard does not count it as a bug, the diagnosis reports it."""
    if trial.state.name != "FAIL" or ATTR.INTERRUPTED in trial.user_attrs:
        return False
    attrs = trial.user_attrs
    text = f"{attrs.get(ATTR.FAILURE, '')} {attrs.get(ATTR.ERROR, '')}"
    return _DIVERGED.search(text) is not None and _MISSING_DATA.search(text) is None


def cross_validated(study: optuna.Study) -> bool:
    """The study's trial steps are cross-validation folds ('# tune: folds(k)'), not epochs: their
    values are the running mean over the folds, not a learning curve."""
    return (study.user_attrs.get(ATTR.CONFIG) or {}).get("unit") == "fold" or any(
        ATTR.FOLDS in t.user_attrs for t in study.get_trials(deepcopy=False)[:20]
    )


def is_continuation(trial: optuna.trial.FrozenTrial) -> bool:
    """A promoted trial's continuation (pause-and-promote): the same configuration, not a new one."""
    return ATTR.PROMOTED in trial.user_attrs


def queued_continuations(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """A cut continuation's re-run, queued: its configuration counts toward ``-n`` already (its
    paused trial does), so it runs whatever the budget (it was left waiting for good once the budget
    was used: found trying nbtune as a new user)."""
    return [t for t in trials if t.state.name == "WAITING" and ATTR.PROMOTED in t.user_attrs]


def continuations(trials: list[optuna.trial.FrozenTrial]) -> dict[int, int]:
    """Paused trials that were promoted (pause-and-promote): paused trial's number -> the number
    of the trial that continued it."""
    return {t.user_attrs[ATTR.PROMOTED]["from"]: t.number for t in trials if ATTR.PROMOTED in t.user_attrs}


def recorded_curves(trials: list[optuna.trial.FrozenTrial]) -> dict[int, dict[str, dict[int, float]]]:
    """Each trial's ``--record`` numbers by epoch (``ATTR.RECORD_CURVES``): trial number -> variable ->
    {epoch: value}. A continued trial's (pause-and-promote, or a cut trial's re-run) start with the
    trial it continues: its curve is its configuration's, as its intermediate values are."""
    by_number = {t.number: t for t in trials}
    done: dict[int, dict[str, dict[int, float]]] = {}

    def of(t: optuna.trial.FrozenTrial, depth: int = 0) -> dict[str, dict[int, float]]:
        if t.number in done:
            return done[t.number]
        own = {
            name: {int(step): float(value) for step, value in points}
            for name, points in (t.user_attrs.get(ATTR.RECORD_CURVES) or {}).items()
        }
        # (and a cut trial's re-run, which goes on from its last epoch: its curve before the cut)
        parent = by_number.get((t.user_attrs.get(ATTR.PROMOTED) or {}).get("from", t.user_attrs.get(ATTR.RERUN_OF, -1)))
        if parent is not None and depth < 100:
            before = of(parent, depth + 1)
            own = {name: {**before.get(name, {}), **own.get(name, {})} for name in {*before, *own}}
        done[t.number] = own
        return own

    return {t.number: of(t) for t in trials}


def held_continuations(trials: list[optuna.trial.FrozenTrial]) -> dict[int, int]:
    """:func:`continuations` whose continuation was not cut (interrupted): for what a view shows, a
    paused trial whose continuation an Interrupt cut is paused again (its re-run goes on from it)."""
    by_number = {t.number: t for t in trials}
    return {p: c for p, c in continuations(trials).items() if c not in by_number or not is_interrupted(by_number[c])}


def finished_count(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that count toward ``--trials``: complete, pruned, or failed on their own. A paused
    trial counts once: its continuations (pause-and-promote) do not count again."""
    return sum(1 for t in trials if t.state.is_finished() and not is_interrupted(t) and not is_continuation(t))


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Meets every guardrail (``--subject-to``): Optuna's rule, all constraint values <= 0."""
    return all(v <= 0 for v in trial.constraints.values())


def configuration(params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """A configuration as a key: two trials with equal keys ran the same hyperparameters (values
    by their repr, so that ``1`` and ``1.0`` or ``True`` stay apart)."""
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def ranked(trials: list[optuna.trial.FrozenTrial], direction: str) -> list[optuna.trial.FrozenTrial]:
    """The trials a search can choose from, best first: complete, with a value, meeting every
    guardrail. ``direction``: ``"maximize"`` or ``"minimize"``."""
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None and is_feasible(t)]
    sign = -1.0 if direction == "maximize" else 1.0
    done.sort(key=lambda t: (sign * t.value, t.number))  # type: ignore[operator]  # ties: the first, as Optuna's best_trial
    return done


def ran_sealed(checks: optuna.Study, t: optuna.trial.FrozenTrial) -> bool:
    """Whether check run ``t`` ran the lines sealed with the holdout as they are now (the latest
    checks planned); always, for a check study of a cell without a holdout."""
    sealed = checks.user_attrs.get(ATTR.SEALED)
    return not sealed or t.user_attrs.get(ATTR.SEALED, sealed.get("unstamped")) == sealed.get("now")


def run_records(study_attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """The study's runs that ran trials (``nbtune:run:<k>``), first to last."""
    prefix = ATTR.RUN + ":"
    keys = [k for k in study_attrs if k.startswith(prefix) and k[len(prefix) :].isdigit()]
    return [study_attrs[k] for k in sorted(keys, key=lambda k: int(k[len(prefix) :]))]


def versions_changed(runs: list[dict[str, Any]]) -> list[str]:
    """What the last run's versions changed from the run before it's: ``["sklearn 1.4.2 -> 1.5.0"]``."""
    if len(runs) < 2:
        return []
    before, now = runs[-2].get("versions") or {}, runs[-1].get("versions") or {}
    return [
        f"{name} {before.get(name, 'none')} -> {now.get(name, 'none')}"
        for name in sorted({*before, *now}, key=str.lower)
        if name in before and name in now and before[name] != now[name]
    ]


def conditional_reads(study_attrs: dict[str, Any]) -> dict[str, Any]:
    """:func:`~nbtune.cell.annotations.read_only_under` of the cell a study recorded (``nbtune:cell``):
    the tuned variables it reads only under some choices; {} when it has none or the cell is not
    recorded (or no longer parses)."""
    from nbtune.cell.annotations import parse_cell, read_only_under

    cell = study_attrs.get(ATTR.CELL) or {}
    if not isinstance(cell.get("source"), str):
        return {}
    try:
        return dict(read_only_under(parse_cell(cell["source"], int(cell.get("line_offset", 1)))))
    except Exception:  # a cell of an older nbtune that no longer parses
        return {}
