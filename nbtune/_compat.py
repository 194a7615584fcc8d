"""Every use of Optuna's or IPython's private API, in one place, each with why.

Checked against Optuna 4.0-5.0 (the range ``pyproject.toml`` allows; CI runs the version
pinned in ``requirements/ci.txt``) and IPython 8.12-9.18. When a new release breaks one of
these, this module is the only place to change; ``.ci/latest`` runs the suite against the
newest releases to see it early.
"""

from __future__ import annotations

import copy
import sys
import weakref
from collections.abc import Callable, Container
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = [
    "storage_of",
    "trial_id",
    "new_trial_with_attrs",
    "tell_quietly",
    "begin_ask_tell_loop",
    "end_ask_tell_loop",
    "grid_exhausted",
    "study_view",
    "rung_value",
    "completed_rung",
    "bracket_of",
    "is_asyncio_runner",
    "show_warnings_again",
]


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The study's storage. Optuna exposes no public accessor; nbtune writes trial attributes
    of *other* trials through it (dead owners' trials, scheduler decisions)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The storage id of a study (storages key studies by it)."""
    return int(study._study_id)


def rdb_started_count(engine: Any, study_id: int) -> int:
    """How many trials of the study have started (any state but WAITING), counted by the database:
    ``RDBStorage`` has no such query (``get_n_trials`` loads every trial). Optuna's schema keeps
    trials in the table ``trials``, their state as the TrialState name."""
    from sqlalchemy import text

    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT count(*) FROM trials WHERE study_id = :s AND state != 'WAITING'"), {"s": study_id}
        ).first()
    return int(row[0]) if row is not None else 0


def journal_trial_count(storage: Any, study_id: int) -> int:
    """How many trials the journal holds for the study (WAITING ones included), without building
    the list of trials that ``get_n_trials`` builds: the journal's replay keeps their ids."""
    with storage._thread_lock:
        storage._sync_with_backend()
        return len(storage._replay_result._study_id_to_trial_ids[study_id])


def set_study_user_attrs(study: optuna.Study, attrs: dict[str, Any]) -> None:
    """``study.set_user_attr(key, value)`` for each item. On a journal, the records Optuna would
    write (one per attribute) go in one append: one ``fsync`` and one file lock instead of one
    each, which is most of a new study's start on a disk."""
    storage: Any = storage_of(study)
    try:
        from optuna.storages.journal._storage import JournalOperation

        backend, replay, lock = storage._backend, storage._replay_result, storage._thread_lock
    except (AttributeError, ImportError):  # another storage (or a future Optuna): one write each
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        return
    op, sid = int(JournalOperation.SET_STUDY_USER_ATTR), study_id(study)
    with lock:
        logs = [
            {"op_code": op, "worker_id": replay.worker_id, "study_id": sid, "user_attr": {k: v}}
            for k, v in attrs.items()
        ]
        backend.append_logs(logs)
        storage._sync_with_backend()


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage id of a trial (the number is per study; storages key trials by this id)."""
    return trial._trial_id


def attrs_at_start(trial: optuna.Trial) -> dict[str, Any]:
    """A trial's user attributes as they were when it was asked, read only: ``Trial`` fetched the
    trial once when it was made (``Trial.user_attrs`` reads the storage again and deep-copies)."""
    cached = getattr(trial, "_cached_frozen_trial", None)
    if cached is None:  # pragma: no cover - a future Optuna
        return dict(storage_of(trial.study).get_trial(trial._trial_id).user_attrs)
    return cached.user_attrs  # type: ignore[no-any-return]


def fixed_params(trial: optuna.Trial) -> dict[str, Any]:
    """The values a trial was queued with (``study.enqueue_trial``), as Optuna keeps them (JSON: a tuple
    is a list). Read from the storage: for an error's message only."""
    attrs = storage_of(trial.study).get_trial(trial._trial_id).system_attrs
    return dict(attrs.get("fixed_params") or {})


_NOT_WAITING: weakref.WeakKeyDictionary[Any, dict[int, int]] = weakref.WeakKeyDictionary()


def _pop_waiting_trial_id(study: optuna.Study, synced: bool) -> int | None:
    """``Study._pop_waiting_trial_id``. With ``synced`` (the caller read the journal under the
    store's lock just now), from the journal's replay as it stands, and only from the first trial
    that was still waiting at the last look: a trial never goes back to WAITING, so the ones
    before it need no second look. Optuna reads the journal again and scans every trial, which
    grows with the study. A trial queued by another process since the lock was taken is found by
    the next ask."""
    import optuna  # (runs before every trial: ``from optuna.x import y`` costs ten times more)

    storage: Any = storage_of(study)
    replay = getattr(storage, "_replay_result", None)
    if not synced or replay is None:
        return study._pop_waiting_trial_id()
    waiting_state = optuna.trial.TrialState.WAITING
    with storage._thread_lock:
        trials, ids = replay._trials, replay._study_id_to_trial_ids[study._study_id]
        seen = _NOT_WAITING.setdefault(storage, {})
        start = seen.get(study._study_id, 0)
        waiting: list[int] = [i for i in ids[start:] if trials[i].state == waiting_state]
        seen[study._study_id] = ids.index(waiting[0], start) if waiting else len(ids)
    for tid in waiting:
        try:
            if storage.set_trial_state_values(tid, state=optuna.trial.TrialState.RUNNING):
                return tid
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def new_trial_with_attrs(
    study: optuna.Study, user_attrs: dict[str, Any], fixed_params: dict[str, Any] | None = None, synced: bool = False
) -> optuna.Trial:
    """``study.ask()``, with ``user_attrs`` written in the same storage record.

    Every journal write is an fsync; writing the owner separately would cost a third more
    I/O per trial than plain Optuna. Enqueued trials (the baseline, re-runs) come first, as
    in ``study.ask()``: that uses ``_pop_waiting_trial_id``; the cached trial list must be
    dropped first, as ``ask()`` does.

    With ``fixed_params`` the new trial runs that configuration (a promoted trial's
    continuation), started at once rather than queued: ``enqueue_trial`` keeps fixed values in
    the ``fixed_params`` system attribute, which ``Trial.suggest_*`` reads; so does this.

    ``synced``: the caller read the journal under the store's lock just now
    (:func:`journal_trial_count`), so the queue is looked up without reading it again.
    """
    import datetime

    import optuna  # (runs before every trial: ``from optuna.x import y`` costs ten times more)

    study._thread_local.cached_all_trials = None
    tid = None if fixed_params is not None else _pop_waiting_trial_id(study, synced)
    storage = storage_of(study)
    if tid is None:
        template = optuna.trial.FrozenTrial(
            number=-1,
            state=optuna.trial.TrialState.RUNNING,
            value=None,
            datetime_start=datetime.datetime.now(),
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs=dict(user_attrs),
            system_attrs={} if fixed_params is None else {"fixed_params": dict(fixed_params)},
            intermediate_values={},
            trial_id=-1,
        )
        tid = storage.create_new_trial(study._study_id, template_trial=template)
    else:
        for key, value in user_attrs.items():
            storage.set_trial_user_attr(tid, key, value)
    return optuna.Trial(study, tid)


def tell_quietly(study: optuna.Study, trial: optuna.Trial | int, value: float | None = None, state: Any = None) -> None:
    """``study.tell`` without the deep copy of the trial it returns (a third of nbtune's
    per-trial overhead on fast cells); ``optimize()`` calls the same function."""
    import optuna.study._tell

    tell = getattr(optuna.study._tell, "_tell_with_warning", None)
    if tell is None:  # pragma: no cover - a future Optuna
        study.tell(trial, value, state=state)
        return
    tell(study=study, trial=trial, value_or_values=value, state=state, suppress_warning=True)


def set_tpe_good_group(sampler: optuna.samplers.TPESampler, size: Callable[[int], int]) -> None:
    """Size TPE's good group with ``size(n)`` (n: the trials it ranks). Optuna reads ``_gamma``
    at every proposal; its ``gamma`` argument, which sets it, is deprecated since 4.9."""
    sampler._gamma = size


def begin_ask_tell_loop(study: optuna.Study) -> None:
    """GridSampler calls ``study.stop()`` when the grid is exhausted, which Optuna allows only
    inside ``optimize()``; nbtune runs the ask-and-tell loop itself and honours the flag."""
    study._thread_local.in_optimize_loop = True


def end_ask_tell_loop(study: optuna.Study) -> None:
    study._thread_local.in_optimize_loop = False


def grid_exhausted(study: optuna.Study) -> bool:
    """Whether ``study.stop()`` was called (by GridSampler) during the loop."""
    return bool(study._stop_flag)


class _StudyView:
    """What a sampler sees of a study: its trials as ``transform`` gives them, computed once
    (a sampler reads them several times per proposal); everything else is the study's own."""

    def __init__(self, study: optuna.Study, transform: Callable[[list[Any]], list[Any]]) -> None:
        self._study = study
        self._transform = transform
        self._seen: list[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self, deepcopy: bool = True, states: Container[Any] | None = None, use_cache: bool = False
    ) -> list[Any]:
        if self._seen is None:
            self._seen = self._transform(self._study._get_trials(deepcopy=False, states=None, use_cache=use_cache))
        kept = [t for t in self._seen if states is None or t.state in states]
        return copy.deepcopy(kept) if deepcopy else kept

    def get_trials(self, deepcopy: bool = True, states: Container[Any] | None = None) -> list[Any]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[Any]:
        return self.get_trials()


def study_view(study: optuna.Study, transform: Callable[[list[Any]], list[Any]]) -> optuna.Study:
    """``study`` as a sampler should see it: its trials replaced by ``transform(all its trials)``.

    Optuna's samplers read the history through ``Study._get_trials`` (TPE, with its per-thread
    cache) or ``get_trials``; both read the transformed list. Everything else, writes included,
    goes to ``study``. Pass the view only to a sampler's ``sample_relative`` and
    ``sample_independent`` (a new one for each proposal), or to an importance evaluator.
    """
    view: Any = _StudyView(study, transform)
    return view  # type: ignore[no-any-return]


def completed_rung(trial: optuna.trial.FrozenTrial) -> int:
    """The highest rung whose value successive halving recorded for ``trial`` (-1: none).

    Optuna's SuccessiveHalving/Hyperband pruners keep rung values in the system attributes
    ``completed_rung_<k>``; nbtune reads them to explain a stop (the cutoff, the competitors).
    """
    rung = -1
    while f"completed_rung_{rung + 1}" in trial.system_attrs:
        rung += 1
    return rung


def rung_value(trial: optuna.trial.FrozenTrial, rung: int) -> float | None:
    """The value ``trial`` was compared with at ``rung``, or None."""
    value = trial.system_attrs.get(f"completed_rung_{rung}")
    return None if value is None else float(value)


def bracket_of(pruner: optuna.pruners.HyperbandPruner, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
    """The Hyperband bracket of ``trial`` (crc32 of the study name and number, so every process
    agrees); HyperbandPruner keeps the rule private, and sets its brackets up on its first decision."""
    if not pruner._pruners:
        pruner._try_initialization(study)
    return pruner._get_bracket_id(study, trial)


def show_warnings_again() -> None:
    """Let the warnings a library printed once in this process print again, once, in the next
    trial: the ``"default"`` action prints a warning once per place and message, so after the
    first trial of a process a library's ``UserWarning`` with a fixed message reached no other
    trial's output, and the diagnosis counted one trial where every trial warned. The warnings
    module's own hook for a change of its filters (which empties every module's registry of
    warnings shown) does it; the filters themselves stay as the user set them. Python has no
    public call for it; a no-op where it is missing."""
    import warnings

    mutated = getattr(warnings, "_filters_mutated", None) or getattr(warnings, "_filters_mutated_lock_held", None)
    if mutated is not None:
        try:
            mutated()
        except Exception:  # a changed private signature: warnings then print once per process, as before
            pass


def is_asyncio_runner(shell: Any) -> bool:
    """Whether IPython awaits top-level ``await`` on asyncio (``%autoawait asyncio``): the only
    runner under which a ``%%tune`` cell may become an awaiting cell. IPython names the class
    privately (``_AsyncIORunner``) and exports no predicate."""
    return type(getattr(shell, "loop_runner", None)).__name__ == "_AsyncIORunner"


def content_hash(value: Any) -> str:
    """``joblib.hash``, with torch tensors (parameters, buffers, datasets' tensors, modules'
    weights) hashed by their dtype, shape and values, and random generators by their type.

    joblib hashes a tensor by pickling it, and that pickle is not stable: two
    ``torch.arange(5.)`` hash differently, even in one process, so every study that reads a
    tensor would start a new version after a kernel restart. A random generator's state moves
    each time a trial draws from it: a ``DataLoader(..., generator=torch.Generator().manual_seed(0))``
    or an object holding ``np.random.default_rng(0)`` hashed differently after every search. Values
    without either hash as ``joblib.hash`` hashes them. ``joblib.hashing.NumpyHasher`` is joblib's
    own (undocumented) hasher; overriding its ``save`` is the one way to change how a type is
    hashed. torch is never imported here.
    """
    import random

    from joblib import hashing

    torch: Any = sys.modules.get("torch")
    numpy: Any = sys.modules.get("numpy")
    rngs: tuple[type, ...] = (random.Random,)
    if numpy is not None:
        rngs += (numpy.random.Generator, numpy.random.RandomState, numpy.random.BitGenerator)
    if torch is not None:
        rngs += (torch.Generator,)
    base: Any = hashing.NumpyHasher if numpy is not None else hashing.Hasher

    class _Hasher(base):  # type: ignore[misc]
        def save(self, obj: Any) -> None:
            if isinstance(obj, rngs):
                obj = ("random generator", type(obj).__module__, type(obj).__qualname__)
            elif torch is not None and isinstance(obj, torch.Tensor):
                data = obj.detach().cpu()
                if data.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
                    data = data.float()
                obj = ("torch.Tensor", str(obj.dtype), tuple(obj.shape), data.contiguous().numpy())
            super().save(obj)

    hasher = _Hasher(hash_name="md5", coerce_mmap=False) if numpy is not None else _Hasher(hash_name="md5")
    return str(hasher.hash(value))


def widget_by_id(model_id: str) -> Any:
    """The live ipywidgets widget with this model id, or None. ipywidgets keeps them in
    ``widget._instances`` (8.x; ``Widget.widgets``, deprecated, is the same dict)."""
    module = sys.modules.get("ipywidgets.widgets.widget")
    instances = getattr(module, "_instances", None) if module is not None else None
    return instances.get(model_id) if isinstance(instances, dict) else None
