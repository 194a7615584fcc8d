"""The plain API: :func:`tune` runs a search over an annotated cell; ``%%tune`` calls it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from nbtune._executor import Control, Job, Search, check_picklable, effective_jobs, resolve_backend
from nbtune._objective import CellProgram, TrialRuntime, compile_cell
from nbtune._sampler import check_sampler, grid_size
from nbtune._scheduler import SchedulerSpec
from nbtune._store import ATTR, Store, default_store_dir, finished_count
from nbtune.exceptions import ConfigError, NbtuneWarning, TrialsFailedError

if TYPE_CHECKING:
    import optuna

    from nbtune._result import TuneResult

__all__ = ["tune", "tune_async", "parse_timeout"]

_logger = logging.getLogger(__name__)

_TIMEOUT_RE = re.compile(r"^\s*(?P<n>\d+(?:\.\d*)?)\s*(?P<u>s|sec|m|min|h)?\s*$")
POLL_SECONDS = 0.1


def parse_timeout(value: str | float | int | None) -> float | None:
    """Seconds from ``90``, ``"90s"``, ``"10m"`` or ``"2h"``.

    Raises:
        ConfigError: anything else.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _TIMEOUT_RE.match(str(value))
        if not m:
            raise ConfigError(f"--timeout takes seconds or a duration such as 90s, 10m or 2h; got {value!r}")
        seconds = float(m.group("n")) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, None: 1}[m.group("u")]
    if seconds <= 0:
        raise ConfigError(f"--timeout must be positive; got {value!r}")
    return seconds


def _default_name(metric: str, direction: str, program: CellProgram) -> str:
    # Stable across edits of the code: only the metric, its direction and the names of
    # the tuned variables matter. Changed ranges make a new *version* of the same name.
    key = json.dumps([metric, direction, sorted(p.name for p in program.params)])
    return f"{metric}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"


def _fingerprint(program: CellProgram) -> dict[str, Any]:
    return {"params": [p.fingerprint() for p in program.params], "metric": program.metric,
            "direction": program.direction}


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


@dataclass
class _Prepared:
    program: CellProgram
    study: optuna.Study
    store: Store
    job: Job | None  # None when the study already has enough finished trials
    n_trials: int
    n_jobs: int
    backend: str
    messages: list[str]
    scheduler: SchedulerSpec
    sampler: str
    apply: bool
    user_ns: dict[str, Any] | None


def _prepare(
    cell: str,
    *,
    maximize: str | None,
    minimize: str | None,
    n_trials: int,
    timeout: str | float | None,
    sampler: str,
    seed: int | None,
    name: str | None,
    store: str | Path | None,
    fresh: bool,
    n_jobs: int,
    backend: str,
    scheduler: str | None,
    min_epochs: int,
    eta: int,
    max_epochs: int | None,
    user_ns: dict[str, Any] | None,
    transform: Callable[[str], str] | None,
    apply: bool,
    line_offset: int,
) -> _Prepared:
    import optuna

    # 1. options, before anything runs
    if (maximize is None) == (minimize is None):
        both = "both --maximize and --minimize were given" if maximize else "no metric was given"
        raise ConfigError(f"{both}; pass exactly one of --maximize NAME or --minimize NAME (the cell variable to optimise)")
    metric = maximize or minimize
    assert metric is not None
    direction = "maximize" if maximize else "minimize"
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ConfigError(f"--trials must be a whole number >= 1; got {n_trials!r}")
    seconds = parse_timeout(timeout)
    if seed is not None and (not isinstance(seed, int) or seed < 0):
        raise ConfigError(f"--seed must be a whole number >= 0; got {seed!r}")
    jobs = effective_jobs(n_jobs)
    backend = resolve_backend(backend, jobs)
    if name is not None:
        Store.check_name(name)
    from nbtune._scheduler import SCHEDULERS

    if scheduler is not None and scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}; got {scheduler!r}")

    # 2. the cell
    program = compile_cell(cell, metric=metric, direction=direction, user_ns=user_ns,
                           transform=transform, line_offset=line_offset)
    check_sampler(sampler, program.params)
    epochs = program.spec.epochs
    if scheduler is None:
        scheduler = "hyperband" if epochs else "none"
    if scheduler != "none" and epochs is None:
        raise ConfigError(
            f"--scheduler {scheduler} needs an epochs loop to stop trials early: mark the training "
            "loop with '# tune: epochs', e.g. 'for epoch in range(20):  # tune: epochs'"
        )
    R = max_epochs if max_epochs is not None else (epochs.length if epochs else None)
    if max_epochs is not None and max_epochs < 1:
        raise ConfigError(f"--max-epochs must be >= 1; got {max_epochs}")
    if scheduler in ("hyperband", "asha") and R is None:
        raise ConfigError(
            f"line {epochs.lineno} of the %%tune cell: the length of the epochs loop cannot be known "  # type: ignore[union-attr]
            "before it runs; pass --max-epochs R (the epochs of a full trial), or loop over range(R)"
        )
    sched = SchedulerSpec(kind=scheduler, R=R, r=min_epochs, eta=eta, metric=metric, direction=direction)
    if backend in ("loky", "dask", "ray"):
        for i, text in enumerate(cell.splitlines()):
            if text.lstrip().startswith("%"):
                raise ConfigError(
                    f"line {i + line_offset + 1} of the %%tune cell: the magic {text.strip().split()[0]} cannot run "
                    f"in worker processes (no IPython there); use --backend threading, or plain Python"
                )
        check_picklable(program)

    # 3. the study in the store
    st = Store(store if store is not None else default_store_dir(user_ns))
    base = name or _default_name(metric, direction, program)
    messages: list[str] = []
    versions = st.versions(base)
    fp = _fingerprint(program)
    target = versions[-1] if versions else Store.versioned(base, 1)
    if versions:
        storage = st.storage(target)
        spaces = {v: optuna.load_study(study_name=v, storage=storage).user_attrs.get(ATTR.SPACE) for v in versions}
        latest_fp = spaces[versions[-1]]
        # The latest version whose space is this cell's (going back to an earlier space
        # resumes that version rather than starting another).
        matching = [v for v in versions if spaces[v] in (None, fp)]
        if fresh:
            target = Store.versioned(base, len(versions) + 1)
            messages.append(f"--fresh: started {target!r}; earlier versions are kept in {st.journal_path(base)}")
        elif matching:
            target = matching[-1]
            if target != versions[-1]:
                messages.append(f"the search space is that of {target!r} again: resumed it")
        else:
            target = Store.versioned(base, len(versions) + 1)
            messages.append(
                f"the search space changed since {versions[-1]!r} ({_describe_change(latest_fp or {}, fp)}): "
                f"started {target!r}; the old study is kept"
            )
    storage = st.storage(target)
    with st.lock(target):
        study = optuna.create_study(study_name=target, storage=storage, load_if_exists=True,
                                    direction=optuna.study.StudyDirection[direction.upper()])
        if ATTR.SPACE not in study.user_attrs:
            study.set_user_attr(ATTR.SPACE, fp)
            study.set_user_attr(ATTR.CONFIG, {"metric": metric, "direction": direction, "scheduler": sched.kind,
                                              "R": sched.R, "r": sched.r, "eta": sched.eta})
            # Grid search enumerates every point itself (the defaults among them when they lie
            # on the grid); an enqueued extra trial would not count as a grid point.
            if sampler != "grid":
                study.enqueue_trial(program.spec.defaults, user_attrs={ATTR.BASELINE: True})
    reaped = st.reap_dead_trials(study)
    if reaped:
        messages.append(f"marked {len(reaped)} trial(s) left running by a stopped kernel as failed "
                        f"(interrupted; their configurations run again): {reaped}")
    if sampler != "grid":
        requeued = st.requeue_interrupted(study)
        if requeued:
            messages.append(f"re-running the configurations of interrupted trial(s) {requeued} first")

    trials = study.get_trials(deepcopy=False)
    done = finished_count(trials)
    if sampler == "grid":
        size = grid_size(program.params)
        if n_trials > size:
            messages.append(f"the grid has {size} points, so the search stops after {size} trials")
            n_trials = size
    job = None
    # Trial numbers of this run start after every trial that was not merely queued.
    n_before = sum(1 for t in trials if t.state.name != "WAITING")
    if done < n_trials:
        if done:
            messages.append(f"resumed {target!r} with {done} finished trials")
        job = Job(program=program, store=st, study_name=target, n_trials=n_trials, sampler=sampler, seed=seed,
                  scheduler=sched, control=Control(), deadline=(time.time() + seconds) if seconds else None,
                  run_start=n_before, seed_offset=n_before)
    else:
        messages.append(f"{target!r} already has {done} finished trials (target {n_trials}): nothing to run; "
                        "raise --trials to continue the search")
    return _Prepared(program=program, study=study, store=st, job=job, n_trials=n_trials, n_jobs=jobs, backend=backend,
                     messages=messages, scheduler=sched, sampler=sampler, apply=apply, user_ns=user_ns)


def _make_result(prep: _Prepared, extra: list[str]) -> TuneResult:
    from nbtune._result import TuneResult

    return TuneResult(prep.study, prep.program.metric, n_trials=prep.job.n_trials if prep.job else prep.n_trials,
                      store_path=str(prep.store.journal_path(prep.study.study_name)),
                      messages=prep.messages + extra, scheduler=prep.scheduler.describe(), sampler=prep.sampler)


def _finish(prep: _Prepared, search: Search | None, interrupted: bool) -> TuneResult:
    extra: list[str] = []
    why = ""
    if search is not None:
        why = search.job.control.why()
        if search.error is not None:
            from nbtune._objective import TrialInterrupted

            if not (interrupted and isinstance(search.error, (KeyboardInterrupt, TrialInterrupted))):
                raise search.error
        if interrupted or why == "interrupted":
            extra.append("interrupted: finished trials are kept; re-run the cell to resume")
        elif why == "timeout":
            extra.append("stopped at the --timeout; re-run the cell to continue")
        elif why == "stop":
            extra.append("stopped by the user; re-run the cell to continue")
        for d in search.worker_deaths:
            extra.append(f"a worker died and was replaced: {d}")
        search.job.n_trials = search.job.control.target(search.job.n_trials)  # after +N trials
        search.job.control.cleanup()
    result = _make_result(prep, extra)
    if prep.job is not None:
        result.n_trials = prep.job.n_trials
    if search is not None and why == "bug" and not interrupted:
        raise _bug_error(result, prep)
    if prep.apply:
        _apply(prep, result)
    return result


def _bug_error(result: TuneResult, prep: _Prepared) -> TrialsFailedError:
    from optuna.trial import TrialState

    failed = [t for t in result.trials if t.state == TrialState.FAIL and ATTR.ERROR in t.user_attrs]
    first = failed[-1] if failed else None
    tb = first.user_attrs.get(ATTR.TRACEBACK, "") if first else ""
    err = first.user_attrs.get(ATTR.ERROR, "") if first else ""
    return TrialsFailedError(
        f"the first 3 trials of this run all failed with {err}; the cell probably has a bug, so the "
        f"search stopped instead of spending the budget (fix it and re-run; the failed trials are kept "
        f"in {prep.study.study_name!r})",
        tb,
    )


def _apply(prep: _Prepared, result: TuneResult) -> None:
    """Run the cell once in the notebook namespace with the best values."""
    if prep.user_ns is None:
        raise ConfigError("--apply needs the notebook namespace (user_ns)")
    try:
        best = result.best_params
    except ValueError:
        warnings.warn("--apply: no trial completed, so there is no best configuration to apply",
                      NbtuneWarning, stacklevel=3)
        return
    runtime = TrialRuntime(prep.program, None, fixed=best)
    prep.program.run(runtime, base=prep.user_ns)
    prep.user_ns.pop("__nbtune__", None)
    result.messages.append("--apply: ran the cell with the best values; its variables are in the notebook")


def _close(prep: _Prepared, search: Search | None, interrupted: bool, live: Any) -> TuneResult:
    """The result; the live view gets its final redraw either way."""
    try:
        result = _finish(prep, search, interrupted)
    except BaseException:
        if live is not None:  # no result will be displayed: the dashboard stays where it is
            live.close(_make_result(prep, []), handover=False)
        raise
    if live is not None:
        live.close(result)
    return result


def _start(prep: _Prepared, view_factory: Callable[..., Any] | None) -> tuple[Search | None, Any]:
    if prep.job is None:
        return None, None
    search = Search(prep.job, n_jobs=prep.n_jobs, backend=prep.backend)
    view = view_factory(prep, search) if view_factory is not None else None
    search.start()
    return search, view


@contextlib.contextmanager
def _quiet_optuna() -> Any:
    import optuna

    old = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(old)


def _wait_stopped(search: Search, view: Any, limit: float = 10.0) -> None:
    t_end = time.monotonic() + limit
    while not search.wait(POLL_SECONDS) and time.monotonic() < t_end:
        if view is not None:
            view.update()


def tune(
    cell: str,
    *,
    maximize: str | None = None,
    minimize: str | None = None,
    n_trials: int = 20,
    timeout: str | float | None = None,
    sampler: str = "tpe",
    seed: int | None = None,
    name: str | None = None,
    store: str | Path | None = None,
    fresh: bool = False,
    n_jobs: int = 1,
    backend: str = "auto",
    scheduler: str | None = None,
    min_epochs: int = 1,
    eta: int = 3,
    max_epochs: int | None = None,
    user_ns: dict[str, Any] | None = None,
    apply: bool = False,
    transform: Callable[[str], str] | None = None,
    view: str | Callable[..., Any] | None = "auto",
    line_offset: int = 1,
) -> TuneResult:
    """Search the hyperparameters of an annotated cell; every trial is kept in the store.

    The cell is plain Python where ``name = default  # tune: KIND(args)`` marks a
    tunable variable and ``for ... :  # tune: epochs`` marks the training loop (the
    budget axis). Trial 0 runs the defaults (the baseline). Re-running with the same
    cell continues the same study until it has ``n_trials`` finished trials.

    Args:
        cell: the cell body.
        maximize: the variable to maximise (exactly one of ``maximize``/``minimize``).
        minimize: the variable to minimise.
        n_trials: target number of finished trials (complete, pruned or failed).
        timeout: stop starting trials after this long (seconds or ``"90s"``, ``"10m"``, ``"2h"``).
        sampler: ``tpe`` (default), ``random``, ``grid``, ``gp``, ``cmaes`` or ``qmc``.
        seed: seed of the sampler; the same seed gives the same configurations with one job.
        name: study name; by default derived from the metric and the tuned variables.
        store: the store folder; default ``.nbtune/`` beside the notebook.
        fresh: start a new version of the study, keeping the old one.
        n_jobs: parallel workers (-1: all cores).
        backend: ``auto`` (the kernel for 1 job, loky processes for more), ``threading``,
            ``loky``, ``dask`` or ``ray``.
        scheduler: ``hyperband`` (default with an epochs loop), ``asha``, ``median`` or ``none``.
        min_epochs: r, the epochs before the first comparison.
        eta: the reduction factor (1/eta of trials continue at each rung).
        max_epochs: R, needed when the epochs loop's length is not known in advance.
        user_ns: the namespace whose globals the cell reads (the notebook's).
        apply: afterwards, run the cell in ``user_ns`` with the best values.
        transform: IPython's ``transform_cell`` for ``!cmd`` and ``%magic`` lines.
        view: ``"auto"`` (widgets in a notebook, text elsewhere), ``"text"``, None (silent),
            or a factory ``(prepared, search) -> view``.
        line_offset: lines above the body in the notebook cell (the ``%%tune`` line).

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
    with _quiet_optuna():
        prep = _prepare(cell, maximize=maximize, minimize=minimize, n_trials=n_trials, timeout=timeout,
                        sampler=sampler, seed=seed, name=name, store=store, fresh=fresh, n_jobs=n_jobs,
                        backend=backend, scheduler=scheduler, min_epochs=min_epochs, eta=eta,
                        max_epochs=max_epochs, user_ns=user_ns, transform=transform, apply=apply,
                        line_offset=line_offset)
    factory = _view_factory(view)
    interrupted = False
    with _quiet_optuna():
        search, live = _start(prep, factory)
        if search is not None:
            try:
                while not search.wait(POLL_SECONDS):
                    if live is not None:
                        live.update()
            except KeyboardInterrupt:
                interrupted = True
                search.stop_now()
                with contextlib.suppress(KeyboardInterrupt):
                    _wait_stopped(search, live)
        return _close(prep, search, interrupted, live)


async def tune_async(cell: str, **kwargs: Any) -> TuneResult:
    """:func:`tune` for a running event loop: awaits the search instead of blocking.

    In a Jupyter kernel this keeps the kernel responsive while trials run, so widget
    buttons (Stop, Stop now, +N trials) are handled at once; Interrupt (which cancels
    the awaiting cell) stops the search gracefully and returns the partial result.
    """
    view = kwargs.pop("view", "auto")
    with _quiet_optuna():
        prep = _prepare(cell, **_with_defaults(kwargs))
    factory = _view_factory(view)
    interrupted = False
    with _quiet_optuna():
        search, live = _start(prep, factory)
        if search is not None:
            while not search.done.is_set():
                try:
                    await asyncio.sleep(POLL_SECONDS)
                    if live is not None:
                        live.update()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    interrupted = True
                    search.stop_now()
                    t_end = time.monotonic() + 10
                    while not search.done.is_set() and time.monotonic() < t_end:
                        with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
                            await asyncio.sleep(POLL_SECONDS)
                            if live is not None:
                                live.update()
                    break
        return _close(prep, search, interrupted, live)


_DEFAULTS: dict[str, Any] = dict(maximize=None, minimize=None, n_trials=20, timeout=None, sampler="tpe", seed=None,
                                 name=None, store=None, fresh=False, n_jobs=1, backend="auto", scheduler=None,
                                 min_epochs=1, eta=3, max_epochs=None, user_ns=None, transform=None, apply=False,
                                 line_offset=1)


def _with_defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = set(kwargs) - set(_DEFAULTS)
    if unknown:
        raise TypeError(f"tune_async() got unexpected keyword arguments {sorted(unknown)}")
    return {**_DEFAULTS, **kwargs}


def _view_factory(view: str | Callable[..., Any] | None) -> Callable[..., Any] | None:
    if view is None:
        return None
    if callable(view):
        return view
    from nbtune import _widgets

    if view == "auto":
        return _widgets.auto_view
    if view == "text":
        return _widgets.TextView
    if view == "widget":
        return _widgets.widget_view
    raise ConfigError(f"view must be 'auto', 'text', 'widget' or None; got {view!r}")
