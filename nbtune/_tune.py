"""The plain API: :func:`tune` runs a search over an annotated cell; ``%%tune`` calls it.

A call goes through four steps, each a function below:

1. :func:`_plan` — check the options, compile the cell, open (or resume, or version) the
   study in the store, recover what a dead kernel left, and decide what to run;
2. :func:`_start` — start the :class:`~nbtune.run.coordinator.Search` and its view;
3. the wait — blocking (:func:`tune`) or awaiting (:func:`tune_async`), with Interrupt
   turned into a graceful *Stop now*;
4. :func:`_close` — the :class:`~nbtune.view.result.TuneResult`, the final redraw, ``--apply``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbtune._config import TuneConfig, config_from, parse_timeout, with_config_signature
from nbtune.cell.identity import cell_identity, describe_difference, weakly_known
from nbtune.cell.program import CellProgram, TrialInterrupted, TrialRuntime, compile_cell
from nbtune.exceptions import ConfigError, NbtuneWarning, TrialsFailedError
from nbtune.run.backends import BaseBackend, check_sendable, effective_jobs, resolve_backend
from nbtune.run.coordinator import Search
from nbtune.run.liveness import BaseLiveness, ProcessLiveness, reap_dead_trials, requeue_interrupted
from nbtune.run.samplers import SamplerKind, check_sampler, grid_size
from nbtune.run.schedulers import SchedulerSpec, scheduler_kind
from nbtune.run.worker import Job
from nbtune.store.attrs import ATTR, finished_count
from nbtune.store.base import BaseStore, versioned
from nbtune.store.journal import JournalStore, default_store_dir
from nbtune.view.base import BaseView, RunInfo, ViewFactory

if TYPE_CHECKING:
    import optuna

    from nbtune.view.result import TuneResult

__all__ = ["tune", "tune_async", "parse_timeout"]

_logger = logging.getLogger(__name__)

POLL_SECONDS = 0.1
STOP_WAIT = 10.0  # seconds the driver waits for workers to stop after Interrupt


# 1. the plan ----------------------------------------------------------------------------
@dataclass
class _Plan:
    """What a call will do: the compiled cell, the study, and the job to run (None: nothing)."""

    cfg: TuneConfig
    program: CellProgram
    sampler: SamplerKind
    scheduler: SchedulerSpec
    backend: BaseBackend
    n_jobs: int
    store: BaseStore
    study: optuna.Study
    n_trials: int  # the target asked for (capped at the grid's size); a run's Control owns it after
    job: Job | None
    messages: list[str] = field(default_factory=list)

    def run_info(self) -> RunInfo:
        return RunInfo(
            study=self.study,
            metric=self.program.metric,
            direction=self.program.direction,
            sampler=self.sampler.name,
            scheduler=self.scheduler,
            program=self.program,
            n_jobs=self.n_jobs,
            backend=self.backend.name,
        )


def _default_name(metric: str, direction: str, program: CellProgram) -> str:
    # Stable across edits of the code: only the metric, its direction and the names of
    # the tuned variables matter. Changed ranges make a new *version* of the same name.
    key = json.dumps([metric, direction, sorted(p.name for p in program.params)])
    return f"{metric}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"


def _fingerprint(program: CellProgram) -> dict[str, Any]:
    return {
        "params": [p.fingerprint() for p in program.params],
        "metric": program.metric,
        "direction": program.direction,
    }


def _describe_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    o = {p[0]: p for p in old.get("params", [])}
    n = {p[0]: p for p in new.get("params", [])}
    changes = []
    for name in sorted(set(o) | set(n)):
        if name not in o:
            changes.append(f"{name} added")
        elif name not in n:
            changes.append(f"{name} removed")
        elif o[name] != n[name]:
            changes.append(f"{name} {o[name][1]}{tuple(o[name][2])} -> {n[name][1]}{tuple(n[name][2])}")
    return ", ".join(changes) or "settings changed"


def _compile(cell: str, cfg: TuneConfig) -> tuple[CellProgram, SamplerKind, SchedulerSpec]:
    """The cell, and the options that depend on it (sampler vs space, scheduler vs epochs loop)."""
    program = compile_cell(
        cell,
        metric=cfg.metric,
        direction=cfg.direction,
        user_ns=cfg.user_ns,
        transform=cfg.transform,
        line_offset=cfg.line_offset,
    )
    sampler = check_sampler(cfg.sampler, program.params)
    epochs = program.spec.epochs
    kind = scheduler_kind(cfg.scheduler if cfg.scheduler is not None else ("hyperband" if epochs else "none"))
    if kind.needs_epochs and epochs is None:
        raise ConfigError(
            f"--scheduler {kind.name} needs an epochs loop to stop trials early: mark the training "
            "loop with '# tune: epochs', e.g. 'for epoch in range(20):  # tune: epochs'"
        )
    if (
        cfg.max_epochs is not None
        and epochs is not None
        and epochs.length is not None
        and cfg.max_epochs != epochs.length
    ):
        raise ConfigError(
            f"--max-epochs {cfg.max_epochs} contradicts the epochs loop on line {epochs.lineno} of the %%tune cell, "
            f"which runs {epochs.length} epochs; drop --max-epochs (nbtune reads the loop) or make them agree"
        )
    R = cfg.max_epochs if cfg.max_epochs is not None else (epochs.length if epochs else None)
    if kind.needs_R and R is None:
        assert epochs is not None
        raise ConfigError(
            f"line {epochs.lineno} of the %%tune cell: the length of the epochs loop cannot be known before it "
            f"runs ({epochs.why}); pass --max-epochs R (the epochs of a full trial, e.g. --max-epochs $EPOCHS)"
        )
    spec = SchedulerSpec(kind=kind.name, R=R, r=cfg.min_epochs, eta=cfg.eta, metric=cfg.metric, direction=cfg.direction)
    return program, sampler, spec


def _choose_version(
    store: BaseStore, base: str, fp: dict[str, Any], identity: dict[str, Any], cfg: TuneConfig, messages: list[str]
) -> str:
    """The study name to use: the latest version made by this very cell (same space, code,
    notebook and data), or a new version that says what changed."""
    import optuna

    versions = store.versions(base)
    if not versions:
        return versioned(base, 1)
    storage = store.storage(base)
    attrs = {v: optuna.load_study(study_name=v, storage=storage).user_attrs for v in versions}
    same_space = [v for v in versions if attrs[v].get(ATTR.SPACE) in (None, fp)]
    same = [v for v in same_space if not describe_difference(attrs[v].get(ATTR.IDENTITY), identity)]
    latest = versions[-1]
    new = versioned(base, len(versions) + 1)
    if cfg.fresh:
        messages.append(f"--fresh: started {new!r}; earlier versions are kept in {store.location(base)}")
        return new
    if same:
        if same[-1] != latest:
            messages.append(
                f"this cell (its search space, code, notebook and data) is that of {same[-1]!r} again: resumed it"
            )
        return same[-1]
    if same_space and cfg.resume:
        target = same_space[-1]
        differences = describe_difference(attrs[target].get(ATTR.IDENTITY), identity)
        messages.append(f"--resume: continued {target!r} although {'; '.join(differences)}")
        return target
    if attrs[latest].get(ATTR.SPACE) not in (None, fp):
        messages.append(
            f"the search space changed since {latest!r} ({_describe_change(attrs[latest][ATTR.SPACE] or {}, fp)}): "
            f"started {new!r}; the old study is kept"
        )
    else:
        differences = describe_difference(attrs[latest].get(ATTR.IDENTITY), identity)
        messages.append(
            f"{'; '.join(differences)} since {latest!r} ran: started {new!r}, so its results are not "
            "mixed with this cell's; the old study is kept (--resume continues it instead)"
        )
    return new


def _open_study(
    store: BaseStore,
    target: str,
    program: CellProgram,
    sampler: SamplerKind,
    spec: SchedulerSpec,
    identity: dict[str, Any],
) -> optuna.Study:
    """Create or load the study; a new one records its space, identity and settings and queues
    the baseline; a resumed one records the identity it now continues with."""
    import optuna

    if target in store.versions(target):
        study = optuna.load_study(study_name=target, storage=store.storage(target))
        if ATTR.SPACE in study.user_attrs:
            if study.user_attrs.get(ATTR.IDENTITY) != identity:  # --resume, or a study of an older nbtune
                study.set_user_attr(ATTR.IDENTITY, identity)
            return study  # nothing else to write: a read-only store can show a finished study
    with store.lock(target):
        study = optuna.create_study(
            study_name=target,
            storage=store.storage(target),
            load_if_exists=True,
            direction=optuna.study.StudyDirection[program.direction.upper()],
        )
        if ATTR.SPACE not in study.user_attrs:
            study.set_user_attr(ATTR.SPACE, _fingerprint(program))
            study.set_user_attr(ATTR.IDENTITY, identity)
            study.set_user_attr(
                ATTR.CONFIG,
                {
                    "metric": program.metric,
                    "direction": program.direction,
                    "scheduler": spec.kind,
                    "R": spec.R,
                    "r": spec.r,
                    "eta": spec.eta,
                },
            )
            # A sampler that enumerates a grid visits the defaults itself when they lie on the
            # grid; an enqueued extra trial would not count as a grid point.
            if not sampler.enumerates:
                study.enqueue_trial(program.spec.defaults, user_attrs={ATTR.BASELINE: True})
    return study


def _recover(
    study: optuna.Study, store: BaseStore, liveness: BaseLiveness, sampler: SamplerKind, messages: list[str]
) -> None:
    """Trials left RUNNING by a dead kernel or worker fail (interrupted) and run again first."""
    reaped = reap_dead_trials(study, liveness)
    if reaped:
        messages.append(
            f"marked {len(reaped)} trial(s) left running by a stopped kernel as failed "
            f"(interrupted; their configurations run again): {reaped}"
        )
    if not sampler.enumerates:
        requeued = requeue_interrupted(study, store)
        if requeued:
            messages.append(f"re-running the configurations of interrupted trial(s) {requeued} first")


def _plan(cell: str, cfg: TuneConfig) -> _Plan:
    """Everything before the first trial; every error here is raised before any trial runs."""
    cfg.check()
    n_jobs = effective_jobs(cfg.n_jobs)
    backend = resolve_backend(cfg.backend, n_jobs)
    program, sampler, spec = _compile(cell, cfg)
    if backend.processes:
        check_sendable(program, cell, cfg.line_offset)

    store = JournalStore(cfg.store if cfg.store is not None else default_store_dir(cfg.user_ns))
    base = cfg.name or _default_name(cfg.metric, cfg.direction, program)
    messages = store.check(base)  # a damaged tail is set aside before anything is appended
    identity = cell_identity(program.spec, program.globals, cfg.user_ns)
    target = _choose_version(store, base, _fingerprint(program), identity, cfg, messages)
    study = _open_study(store, target, program, sampler, spec, identity)
    weak = weakly_known(identity)
    if weak:
        messages.append(
            f"{', '.join(weak)} cannot be hashed, so a change to {'it' if len(weak) == 1 else 'them'} "
            "would not start a new version of the study"
        )
    liveness = ProcessLiveness()  # owners are processes of this machine (journal store)
    _recover(study, store, liveness, sampler, messages)
    messages[:0] = store.repairs

    trials = study.get_trials(deepcopy=False)
    done = finished_count(trials)
    n_trials = cfg.n_trials
    if sampler.enumerates:
        size = grid_size(program.params)
        if n_trials > size:
            messages.append(f"the grid has {size} points, so the search stops after {size} trials")
            n_trials = size
    job = None
    if done < n_trials:
        if done:
            messages.append(f"resumed {target!r} with {done} finished trials")
        # Trial numbers of this run start after every trial that was not merely queued.
        n_before = sum(1 for t in trials if t.state.name != "WAITING")
        seconds = cfg.seconds
        job = Job(
            program=program,
            store=store,
            study_name=target,
            control=store.control(target, n_trials),
            sampler=sampler.name,
            seed=cfg.seed,
            scheduler=spec,
            liveness=liveness,
            deadline=(time.time() + seconds) if seconds else None,
            run_start=n_before,
            seed_offset=n_before,
        )
    else:
        messages.append(
            f"{target!r} already has {done} finished trials (target {n_trials}): nothing to run; "
            "raise --trials to continue the search"
        )
    return _Plan(
        cfg=cfg,
        program=program,
        sampler=sampler,
        scheduler=spec,
        backend=backend,
        n_jobs=n_jobs,
        store=store,
        study=study,
        n_trials=n_trials,
        job=job,
        messages=messages,
    )


# 2. start ---------------------------------------------------------------------------------
def _start(plan: _Plan, factory: ViewFactory | None) -> tuple[Search | None, BaseView | None]:
    if plan.job is None:
        return None, None
    search = Search(plan.job, n_jobs=plan.n_jobs, backend=plan.backend)
    view = factory(plan.run_info(), search) if factory is not None else None
    search.start()
    return search, view


# 4. close ---------------------------------------------------------------------------------
_STOP_MESSAGES = {
    "interrupted": "interrupted: finished trials are kept; re-run the cell to resume",
    "timeout": "stopped at the --timeout; re-run the cell to continue",
    "stop": "stopped by the user; re-run the cell to continue",
}


def _result(plan: _Plan, extra: list[str], n_trials: int | None = None) -> TuneResult:
    from nbtune.view.result import TuneResult

    return TuneResult(
        plan.study,
        plan.program.metric,
        n_trials=n_trials if n_trials is not None else plan.n_trials,
        store_path=plan.store.location(plan.study.study_name),
        messages=plan.messages + extra,
        scheduler=plan.scheduler.describe(),
        sampler=plan.sampler.name,
    )


def _finish(plan: _Plan, search: Search | None, interrupted: bool) -> TuneResult:
    extra: list[str] = []
    why = ""
    n_trials = plan.n_trials
    if search is not None:
        why = search.control.why()
        if search.error is not None and not (
            interrupted and isinstance(search.error, (KeyboardInterrupt, TrialInterrupted))
        ):
            search.control.cleanup()
            raise search.error
        message = _STOP_MESSAGES.get("interrupted" if interrupted else why)
        if message:
            extra.append(message)
        extra.extend(f"a worker died and was replaced: {d}" for d in search.worker_deaths)
        n_trials = search.control.target()  # after + trials
        search.control.cleanup()
    result = _result(plan, extra, n_trials)
    result.interrupted = interrupted or why == "interrupted"
    if search is not None and why == "bug" and not interrupted:
        raise _bug_error(result, plan)
    if plan.cfg.apply and result.interrupted:
        result.messages.append("--apply: skipped, the search was interrupted; re-run the cell to finish it")
    elif plan.cfg.apply:
        _apply(plan, result)
    return result


def _bug_error(result: TuneResult, plan: _Plan) -> TrialsFailedError:
    failed = [t for t in result.trials if t.state.name == "FAIL" and ATTR.ERROR in t.user_attrs]
    first = failed[-1] if failed else None
    tb = first.user_attrs.get(ATTR.TRACEBACK, "") if first else ""
    err = first.user_attrs.get(ATTR.ERROR, "") if first else ""
    failure = first.user_attrs.get(ATTR.FAILURE, "") if first else ""
    if " at line " in failure:
        err += f" (line {failure.rsplit(' at line ', 1)[1]} of the %%tune cell)"
    return TrialsFailedError(
        f"the first 3 trials of this run all failed with {err}; the cell probably has a bug, so the "
        f"search stopped instead of spending the budget (fix it and re-run; the failed trials are kept "
        f"in {plan.study.study_name!r})",
        tb,
    )


def _apply(plan: _Plan, result: TuneResult) -> None:
    """Run the cell once in the notebook namespace with the best values."""
    user_ns = plan.cfg.user_ns
    if user_ns is None:
        raise ConfigError("--apply needs the notebook namespace (user_ns)")
    try:
        best = result.best_params
    except ValueError:
        warnings.warn(
            "--apply: no trial completed, so there is no best configuration to apply", NbtuneWarning, stacklevel=4
        )
        return
    plan.program.run(TrialRuntime(plan.program, None, fixed=best), base=user_ns)
    user_ns.pop("__nbtune__", None)
    result.messages.append("--apply: ran the cell with the best values; its variables are in the notebook")


def _close(plan: _Plan, search: Search | None, interrupted: bool, view: BaseView | None) -> TuneResult:
    """The result; the live view gets its final redraw either way."""
    try:
        result = _finish(plan, search, interrupted)
    except BaseException:
        if view is not None:  # no result will be displayed: the dashboard stays where it is
            view.close(_result(plan, []), handover=False)
        raise
    if view is not None:
        view.close(result)
    return result


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    import optuna

    old = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(old)


# the API ----------------------------------------------------------------------------------
@with_config_signature
def tune(cell: str, **options: Any) -> TuneResult:
    """Search the hyperparameters of an annotated cell; every trial is kept in the store.

    The cell is plain Python where ``name = default  # tune: KIND(args)`` marks a
    tunable variable and ``for ... :  # tune: epochs`` marks the training loop (the
    budget axis). Trial 0 runs the defaults (the baseline). Re-running with the same
    cell continues the same study until it has ``n_trials`` finished trials.

    Args:
        cell: the cell body.
        {options}

    Returns:
        A :class:`TuneResult` with ``.study``, ``.best_params``, ``.best_value`` and
        ``.trials_dataframe()``.

    Raises:
        ConfigError, AnnotationError, CellError: bad options or cell, before any trial runs.
        TrialsFailedError: the first 3 trials failed with the same error.

    Example:
        >>> import nbtune
        >>> cell = '''
        ... x = 0.0  # tune: uniform(-2.0, 2.0)
        ... loss = (x - 1) ** 2
        ... '''
        >>> res = nbtune.tune(cell, minimize="loss", n_trials=10, seed=0,
        ...                   store="/tmp/nbtune-doctest", fresh=True, view=None)
        >>> res.n_finished
        10
    """
    cfg = config_from(options, "tune")
    with _quiet_optuna():
        plan = _plan(cell, cfg)
        factory = _view_factory(cfg.view)
        search, view = _start(plan, factory)
        interrupted = False
        if search is not None:
            try:
                while not search.wait(POLL_SECONDS):
                    if view is not None:
                        view.update()
            except KeyboardInterrupt:
                interrupted = True
                search.stop_now()
                with contextlib.suppress(KeyboardInterrupt):
                    t_end = time.monotonic() + STOP_WAIT
                    while not search.wait(POLL_SECONDS) and time.monotonic() < t_end:
                        if view is not None:
                            view.update()
        return _close(plan, search, interrupted, view)


@with_config_signature
async def tune_async(cell: str, **options: Any) -> TuneResult:
    """:func:`tune` for a running event loop: awaits the search instead of blocking.

    In a Jupyter kernel this keeps the kernel responsive while trials run, so widget
    buttons (Stop, Stop now, + trials) are handled at once; Interrupt (which cancels
    the awaiting cell) stops the search gracefully and returns the partial result.

    Args:
        cell: the cell body.
        {options}
    """
    cfg = config_from(options, "tune_async")
    with _quiet_optuna():
        plan = _plan(cell, cfg)
        factory = _view_factory(cfg.view)
        search, view = _start(plan, factory)
        interrupted = False
        if search is not None:
            while not search.done.is_set():
                try:
                    await asyncio.sleep(POLL_SECONDS)
                    if view is not None:
                        view.update()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    interrupted = True
                    search.stop_now()
                    t_end = time.monotonic() + STOP_WAIT
                    while not search.done.is_set() and time.monotonic() < t_end:
                        with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
                            await asyncio.sleep(POLL_SECONDS)
                            if view is not None:
                                view.update()
                    break
        return _close(plan, search, interrupted, view)


def _view_factory(view: Any) -> ViewFactory | None:
    from nbtune.view.registry import view_factory

    return view_factory(view)
