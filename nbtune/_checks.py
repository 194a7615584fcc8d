"""The checks after a search: re-validation of the top configurations across seeds, and the
one evaluation of the sealed holdout.

Their runs are trials of the check study ``NAME@check``, kept in the same store file as the
search: full fidelity (no scheduler), each with its configuration, its seed and its role
queued up front. So they run on the same workers as the search, are resumable like any
trial (an interrupted run is queued again, a finished one is never run twice), and never
reach the search's sampler or its trial count. :mod:`nbtune.view.checks` reads them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbtune.cell.program import CellProgram
from nbtune.exceptions import ConfigError
from nbtune.run.liveness import BaseLiveness, reap_dead_trials
from nbtune.run.schedulers import SchedulerSpec
from nbtune.run.worker import Job
from nbtune.store.attrs import ATTR, configuration, finished_count, is_interrupted, ran_sealed, ranked
from nbtune.store.base import BaseStore, check_study_name

if TYPE_CHECKING:
    import optuna

__all__ = ["CheckRuns", "check_seeds", "plan_checks", "require_seed"]


def require_seed(program: CellProgram, option: str) -> None:
    """Re-validation varies the seed: the cell must say which variable it is.

    Raises:
        ConfigError: no ``# tune: seed`` variable.
    """
    if program.spec.seed is None:
        raise ConfigError(
            f"{option} re-runs configurations with other seeds, but the %%tune cell has no seed variable; mark the "
            "one your code seeds its randomness with, e.g. 'seed = 0  # tune: seed', and use it "
            "(random_state=seed, torch.manual_seed(seed), np.random.default_rng(seed))"
        )


def check_seeds(program: CellProgram, n: int, study: optuna.Study | None = None) -> list[int]:
    """The seeds of re-validation: the ``n`` after the search's own that no trial of ``study``
    ran with (the search chose the candidates on its seeds, so scoring them on one again would
    repeat its luck; with ``--vary-seed`` trial k ran with the seed + k)."""
    assert program.spec.seed is not None
    base = program.spec.seed.default
    used = {base}
    if study is not None:
        used |= {s for t in study.get_trials(deepcopy=False) if isinstance(s := t.user_attrs.get(ATTR.SEED), int)}
    return list(itertools.islice((s for s in itertools.count(base + 1) if s not in used), n))


@dataclass
class CheckRuns:
    """The check study and what is left to run in it (``job`` None: nothing)."""

    study: optuna.Study
    job: Job | None
    target: int
    messages: list[str] = field(default_factory=list)


def _top(study: optuna.Study, k: int) -> list[optuna.trial.FrozenTrial]:
    """The ``k`` best complete trials that meet the guardrails, with distinct configurations."""
    out, seen = [], set()
    for t in ranked(study.get_trials(deepcopy=False), study.direction.name.lower()):
        key = configuration(t.params)
        if key not in seen:
            seen.add(key)
            out.append(t)
        if len(out) == k:
            break
    return out


def _key(t: optuna.trial.FrozenTrial) -> tuple[Any, ...]:
    check = t.user_attrs.get(ATTR.CHECK) or {}
    return (check.get("role"), check.get("candidate"), t.user_attrs.get(ATTR.SEED))


def plan_checks(
    *,
    program: CellProgram,
    store: BaseStore,
    study: optuna.Study,
    liveness: BaseLiveness,
    top: int = 0,
    seeds: int = 5,
    final: bool = False,
    R: int | None = None,
    outer_fold: int | None = None,
    sealed: str | None = None,
    trial_timeout: float | None = None,
) -> CheckRuns | None:
    """Queue the runs the checks still need in the check study of ``study``.

    Args:
        top, seeds: re-validate the ``top`` best configurations with ``seeds`` seeds each.
        final: evaluate the search's best configuration once (the sealed holdout, when there is
            no re-validation to choose from).
        R: the epochs of a full run (the checks run every trial to it).
        sealed: the fingerprint of the lines sealed with the holdout and the data only they read
            (``cell_identity``'s ``"sealed"``): a run made with others is out of date, and runs again.
        trial_timeout: ``--trial-timeout``: a run past it is cut, as a search trial is (a seed whose
            episode never ends hung the re-validation; found trying nbtune as a new user).

    Returns:
        None when there is nothing to check (no complete trial yet).

    Raises:
        ConfigError: re-validation without a seed variable.
    """
    import optuna

    wanted: list[tuple[str, optuna.trial.FrozenTrial, int | None]] = []
    request: dict[str, Any] | None = None
    if top > 0:
        require_seed(program, "--revalidate")
        candidates = _top(study, top)
        fresh = check_seeds(program, seeds, study)
        for t in candidates:
            wanted.extend(("revalidate", t, s) for s in fresh)
        # What this re-validation compares: these candidates on these seeds, whatever earlier
        # requests ran (every candidate is judged on the same seeds).
        request = {"candidates": [t.number for t in candidates], "seeds": fresh}
    elif final:
        best = _top(study, 1)
        if best:
            seed = program.spec.seed.default if program.spec.seed is not None else None
            wanted.append(("final", best[0], seed))
    if not wanted:
        return None
    name = check_study_name(study.study_name)
    with store.lock(name):
        checks = optuna.create_study(
            study_name=name, storage=store.storage(name), load_if_exists=True, direction=study.direction
        )
        if ATTR.CONFIG not in checks.user_attrs:
            checks.set_user_attr(ATTR.CONFIG, {**study.user_attrs.get(ATTR.CONFIG, {}), "scheduler": "none"})
        if request is not None and checks.user_attrs.get(ATTR.REQUEST) != request:
            checks.set_user_attr(ATTR.REQUEST, request)
        was = checks.user_attrs.get(ATTR.SEALED)
        if sealed is not None and (was or {}).get("now") != sealed:
            # runs made before runs were stamped ran what the first stamp says
            checks.set_user_attr(ATTR.SEALED, {"now": sealed, "unstamped": (was or {}).get("unstamped", sealed)})
    messages: list[str] = []
    if request is not None and (study.user_attrs.get(ATTR.CONFIG) or {}).get("scheduler") == "pbt":
        # (it re-trained each member's last values from scratch without a word: found trying nbtune as a new user)
        messages.append(
            "re-validating a PBT study runs each member's final hyperparameters, fixed, from the first epoch; PBT "
            "changed them while it trained (res.lineage() has the schedule), so these runs measure another training "
            "than the one the search scored"
        )
    reaped = reap_dead_trials(checks, liveness)
    if reaped:
        messages.append(f"marked {len(reaped)} check run(s) left running by a stopped kernel as interrupted")
    with store.lock(name):
        # An interrupted run is queued again here (a finished one never is): the user asked for it.
        # (without --holdout now, runs still count as made with the sealed lines as they last were)
        stamp = sealed if sealed is not None else (checks.user_attrs.get(ATTR.SEALED) or {}).get("now")
        finished = [t for t in checks.get_trials(deepcopy=False) if not is_interrupted(t)]
        have = {_key(t) for t in finished if ran_sealed(checks, t)}
        stale = {_key(t) for t in finished if not ran_sealed(checks, t)} - have
        again = sum((role, trial.number, seed) in stale for role, trial, seed in wanted)
        if again:
            messages.append(
                f"the lines sealed with the holdout, or the data only they read, changed since {again} check "
                "run(s) ran: those run again with them (the search's trials are kept: no trial runs the sealed lines)"
            )
        for role, trial, seed in wanted:
            if (role, trial.number, seed) in have:
                continue
            attrs: dict[str, Any] = {ATTR.CHECK: {"role": role, "candidate": trial.number}}
            if seed is not None:
                attrs[ATTR.SEED] = seed
            if stamp is not None:
                attrs[ATTR.SEALED] = stamp
            checks.enqueue_trial(trial.params, user_attrs=attrs)
    trials = checks.get_trials(deepcopy=False)
    waiting = sum(1 for t in trials if t.state.name == "WAITING")
    target = finished_count(trials) + waiting
    job = None
    if waiting:
        n_before = sum(1 for t in trials if t.state.name != "WAITING")
        job = Job(
            program=program,
            store=store,
            study_name=name,
            control=store.control(name, target),
            sampler="random",  # never asked: every run is queued with its configuration
            scheduler=SchedulerSpec(kind="none", R=R, metric=program.metric, direction=program.direction),
            liveness=liveness,
            run_start=n_before,
            seed_offset=n_before,
            outer_fold=outer_fold,
            trial_timeout=trial_timeout,
            refusals_stop=False,
        )
    return CheckRuns(study=checks, job=job, target=target, messages=messages)
