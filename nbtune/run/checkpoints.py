"""Checkpoints: a trial's state (the variables marked ``# tune: state``) kept in the store.

When a trial completes, its state variables are serialised into one file and attached to
the trial with Optuna's artifact API (``optuna.artifacts.upload_artifact`` into a
``FileSystemArtifactStore`` at ``<store>/artifacts``); the trial's ``nbtune:checkpoint``
attribute says which file, how large and which variables. A retention rule keeps the files
of the ``keep`` best complete trials and deletes the others, so the folder stays small.
``TuneResult.best_state()`` loads the best trial's state without retraining, and
``--apply`` uses it.

The state is written in one call, so what its variables share stays shared (an optimizer keeps
pointing at its model's parameters): ``torch.save`` when a variable is a torch module,
optimizer or tensor (torch is never imported otherwise), cloudpickle otherwise; both pickle
with cloudpickle, so classes and functions defined in the notebook work.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import pickle
import sys
import tempfile
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbtune._registry import Registry
from nbtune.cell import rng
from nbtune.run.pbt import frontier as pbt_frontier
from nbtune.store.attrs import ATTR, is_feasible, is_interrupted

if TYPE_CHECKING:
    import optuna

    from nbtune.store.base import BaseStore

__all__ = [
    "SERIALIZERS",
    "has_checkpoint",
    "Serializer",
    "load_state",
    "prune_checkpoints",
    "resume_point",
    "save_checkpoint",
    "state_bytes",
    "PausedInMemory",
    "paused_in_memory",
]

_logger = logging.getLogger(__name__)
_FORMAT = "nbtune-state-2"  # a pickled {"format", "kind", "payload"} (the first checkpoints)
_MAGIC = b"nbtune-state-3\n"  # then the serializer's name, a newline, and its bytes: no second copy


@dataclass(frozen=True)
class Serializer:
    """How a trial's state (a dict of variables) is written and read back, all in one call, so
    objects the variables share stay shared (an optimizer keeps pointing at its model's
    parameters).

    Attributes:
        accepts: whether this serializer is the one for a state (it sees every value).
        dumps, loads: state -> bytes, bytes -> state.
    """

    accepts: Callable[[dict[str, Any]], bool]
    dumps: Callable[[dict[str, Any]], bytes]
    loads: Callable[[bytes], dict[str, Any]]


SERIALIZERS: Registry[Serializer] = Registry("serializer")


def _has_torch(state: dict[str, Any]) -> bool:
    torch = sys.modules.get("torch")  # never imported here: a torch object means torch is loaded
    if torch is None:
        return False
    return any(isinstance(v, (torch.nn.Module, torch.optim.Optimizer, torch.Tensor)) for v in state.values())


def _torch_dumps(state: dict[str, Any]) -> bytes:
    import cloudpickle
    import torch

    buf = io.BytesIO()
    torch.save(state, buf, pickle_module=cloudpickle)  # cloudpickle: classes defined in the notebook
    return buf.getvalue()


def _torch_loads(data: bytes) -> dict[str, Any]:
    import torch

    # our own file (a whole module and optimizer, not only weights), so not weights_only
    return dict(torch.load(io.BytesIO(data), weights_only=False))


def _pickle_dumps(state: dict[str, Any]) -> bytes:
    import cloudpickle  # joblib depends on it: it is what sends cells to loky workers

    return bytes(cloudpickle.dumps(state))


SERIALIZERS.register("torch", Serializer(_has_torch, _torch_dumps, _torch_loads))
SERIALIZERS.register("pickle", Serializer(lambda state: True, _pickle_dumps, pickle.loads))


def _serializer_for(state: dict[str, Any]) -> str:
    """The newest registered serializer that accepts the state; cloudpickle when none does."""
    specific = [k for k in reversed(SERIALIZERS) if k != "pickle"]
    return next((k for k in specific if SERIALIZERS[k].accepts(state)), "pickle")


class StateError(Exception):
    """A state variable could not be saved; the message names it."""


def state_bytes(ns: dict[str, Any], names: tuple[str, ...], generators: dict[str, Any] | None = None) -> bytes:
    """The state variables of a finished cell run, as one file's content; with ``generators``
    (:func:`nbtune.cell.rng.capture`), the random generators' states too.

    Raises:
        StateError: a variable is missing or cannot be serialised (named in the message).
    """
    missing = [n for n in names if n not in ns]
    if missing:
        raise StateError(f"the state variable {missing[0]!r} was not set when the cell ended")
    state = {n: ns[n] for n in names}
    kind = _serializer_for(state)
    if generators is not None:
        state[rng.KEY] = generators
    try:
        payload = SERIALIZERS[kind].dumps(state)
    except Exception as e:
        culprit = names[0]
        for n in names:  # which variable: the first that cannot be saved alone
            try:
                SERIALIZERS[kind].dumps({n: ns[n]})
            except Exception:
                culprit = n
                break
        raise StateError(
            f"cannot save the state variable {culprit!r} ({type(ns[culprit]).__name__}) with {kind}: "
            f"{type(e).__name__}: {str(e)[:200]}; mark a variable that can be saved (e.g. the model, not "
            "an open file or a data loader)"
        ) from None
    return _MAGIC + kind.encode() + b"\n" + payload


def plain_carried(ns: dict[str, Any], names: tuple[str, ...], assigned: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Of the variables carried from epoch to epoch (:func:`nbtune.cell.loops.carried_across_epochs`),
    those an epoch's checkpoint keeps: plain values (numbers, strings, arrays and tensors, and lists,
    tuples, dicts and sets of them, up to a million numbers: counters, best scores, histories, an
    EMA). Objects (a data loader, a scheduler, a model) are the state's to mark."""
    return tuple(n for n in names if n in ns and _plain(ns[n], [_CARRIED_ITEMS], arrays=n in assigned))


_CARRIED_ITEMS = (
    1_000_000  # numbers a carried variable may hold (8 MB as floats): a per-batch loss list, an EMA of weights
)


def _plain(value: Any, budget: list[int], arrays: bool = False) -> bool:
    """``arrays``: an array or tensor counts (the loop assigns the variable: an EMA, a running mean;
    an array it only reads is data, which every continued run has anyway)."""
    budget[0] -= 1
    if budget[0] < 0:
        return False
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return True
    module = type(value).__module__.split(".")[0]
    if rng.is_generator(value):  # np.random.default_rng(seed) made before the loop: its draws go on
        return True  # (a continuation without it drew afresh from the seed; found trying nbtune as a new user)
    if module in ("numpy", "torch") and hasattr(value, "shape"):
        if getattr(value, "shape", None) == () and module == "numpy":
            return True  # a numpy scalar
        size = int(value.size if module == "numpy" else value.numel())
        budget[0] -= size
        return arrays and budget[0] >= 0 and not getattr(value, "requires_grad", False)
    if isinstance(value, (list, tuple, set, frozenset, collections.deque)):
        return all(_plain(v, budget, arrays=True) for v in value)  # a history of tensors
    if isinstance(value, dict):
        return all(_plain(k, budget) and _plain(v, budget, arrays=True) for k, v in value.items())
    return False


def load_state(data: bytes) -> dict[str, Any]:
    """The variables of a checkpoint file's content."""
    if data.startswith(_MAGIC):
        end = data.index(b"\n", len(_MAGIC))
        kind = data[len(_MAGIC) : end].decode()
        return SERIALIZERS.lookup(kind).loads(data[end + 1 :])
    content = pickle.loads(data)
    if not isinstance(content, dict) or content.get("format") != _FORMAT:
        raise ValueError("not an nbtune checkpoint")
    return SERIALIZERS.lookup(content["kind"]).loads(content["payload"])


def save_checkpoint(
    store: BaseStore,
    trial: optuna.Trial,
    ns: dict[str, Any],
    names: tuple[str, ...],
    step: int | None = None,
    carried: tuple[str, ...] = (),
) -> None:
    """Attach the trial's state to it, replacing its previous checkpoint: after an epoch
    (``step``) while it runs, or at its end (before it is told complete). A failure to save is
    recorded on the trial (``nbtune:checkpoint_error``) and never fails it. ``carried``: the
    variables one epoch hands to the next, whose data loaders' generators are kept (:func:`rng.capture`)."""
    from optuna.artifacts import upload_artifact

    attrs = trial.user_attrs  # a deep copy per access in Optuna, and this runs every epoch: read once
    if ATTR.CHECKPOINT_ERROR in attrs:
        return  # said once; the same variables would fail again
    try:
        data = state_bytes(ns, names, rng.capture(ns, carried))  # a resumed trial draws the numbers it would have drawn
    except StateError as e:
        trial.set_user_attr(ATTR.CHECKPOINT_ERROR, str(e))
        return
    previous = attrs.get(ATTR.CHECKPOINT)
    fd, path = tempfile.mkstemp(prefix="nbtune-state-", suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        artifact_id = upload_artifact(
            artifact_store=store.artifact_store(),
            file_path=path,
            study_or_trial=trial,
            mimetype="application/octet-stream",
        )
    except OSError as e:  # a full disk or a read-only store: the trial goes on without its checkpoint
        trial.set_user_attr(ATTR.CHECKPOINT_ERROR, f"cannot write the checkpoint: {type(e).__name__}: {e}")
        return
    finally:
        os.unlink(path)
    meta: dict[str, Any] = {"artifact": artifact_id, "bytes": len(data), "names": list(names)}
    if step is not None:
        meta["step"] = step
    trial.set_user_attr(ATTR.CHECKPOINT, meta)
    if previous:
        _remove(store, previous["artifact"])


def _remove(store: BaseStore, artifact_id: str) -> bool:
    from optuna.artifacts.exceptions import ArtifactNotFound

    try:
        store.artifact_store().remove(artifact_id)
        return True
    except (ArtifactNotFound, FileNotFoundError):
        return False  # removed already (by another worker or an earlier run)


# --- paused trials kept in memory ----------------------------------------------------------------
# A cell that declares no state has no checkpoint. A trial of it that pauses at a rung leaves its
# variables (the model, its optimizer) in the finished run's namespace: a worker keeps the most
# promising few, and when it promotes one of those it continues from them instead of training its
# epochs again. Objects on a GPU are never kept (the next trials need that memory); nor is anything
# past a size, so that a worker's memory stays bounded.

KEEP_PAUSED = 8  # paused trials of a search a worker process keeps in memory at most (NBTUNE_KEEP_PAUSED)
KEEP_PAUSED_BYTES = 1 << 30  # and at most this much of their arrays and tensors (what can be measured)


def _device_bytes(value: Any) -> tuple[int, bool]:
    """(bytes of the arrays and tensors ``value`` holds that can be counted cheaply, whether any
    is on an accelerator)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        tensors: list[Any] = []
        if isinstance(value, torch.nn.Module):
            tensors = [*value.parameters(), *value.buffers()]
        elif isinstance(value, torch.Tensor):
            tensors = [value]
        elif isinstance(value, torch.optim.Optimizer):
            tensors = [v for st in value.state.values() for v in st.values() if isinstance(v, torch.Tensor)]
        if tensors:
            on_device = any(t.device.type != "cpu" for t in tensors)
            return sum(t.element_size() * t.nelement() for t in tensors), on_device
    nbytes = getattr(value, "nbytes", None)  # numpy arrays, pandas frames' values
    return (nbytes if isinstance(nbytes, int) else 0), False


def _is_data_loader(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.utils.data.DataLoader)


@dataclass
class _Kept:
    step: int
    variables: dict[str, Any]
    generators: dict[str, Any]  # the shared random generators' states when it paused (cell.rng)
    standing: float  # rank / trials compared at its rung when it paused: lower is more promising
    nbytes: int


class PausedInMemory:
    """The variables of paused trials of this process, by (study, trial number); bounded, the
    least promising dropped first. Thread-safe (the threads backend runs several workers)."""

    def __init__(self, limit_bytes: int = KEEP_PAUSED_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, int], _Kept] = {}
        self._claimed: dict[tuple[str, int], _Kept] = {}
        self._workers: dict[str, int] = {}  # study -> workers of this process running its search

    def enter(self, study: str) -> None:
        """A worker of this process starts on ``study``."""
        with self._lock:
            self._workers[study] = self._workers.get(study, 0) + 1

    def leave(self, study: str) -> None:
        """A worker of this process is done with ``study``: the last one forgets its trials."""
        with self._lock:
            self._workers[study] = self._workers.get(study, 1) - 1
            if self._workers[study] > 0:
                return
            del self._workers[study]
        self.clear(study)

    def keep(self, study: str, number: int, step: int, ns: dict[str, Any], base: dict[str, Any],
             standing: float, limit: int = KEEP_PAUSED) -> bool:  # fmt: skip
        """Keep what the cell bound in ``ns`` (names not in ``base``, the notebook's globals, or
        rebound) for trial ``number`` paused after ``step``, with at most ``limit`` trials of
        ``study`` kept; False if it is not kept."""
        if limit <= 0:
            return False
        # Functions, classes and modules the cell defines or imports are defined again when the
        # continuation runs the cell (the old ones would read the paused run's globals); so are
        # data loaders (a persistent one would keep its worker processes alive).
        variables = {
            k: v
            for k, v in ns.items()
            if not k.startswith("__")
            and k != "get_ipython"
            and not (k in base and base[k] is v)
            and not isinstance(v, (types.FunctionType, type, types.ModuleType))
            and not _is_data_loader(v)
        }
        nbytes = 0
        for v in variables.values():
            size, on_device = _device_bytes(v)
            if on_device:
                return False
            nbytes += size
        if nbytes > self.limit_bytes:
            return False
        with self._lock:
            # (the loaders the cell made: their generators go on, as in a straight run)
            loaders = [k for k, v in ns.items() if _is_data_loader(v) and not (k in base and base[k] is v)]
            self._kept[(study, number)] = _Kept(step, variables, rng.capture(ns, loaders), standing, nbytes)
            while (
                sum(1 for key in self._kept if key[0] == study) > limit
                or sum(k.nbytes for k in self._kept.values()) > self.limit_bytes
            ):
                mine = [key for key in self._kept if key[0] == study]
                if not mine:
                    break
                worst = max(mine, key=lambda key: (self._kept[key].standing, -self._kept[key].step))
                del self._kept[worst]
            return (study, number) in self._kept

    def has(self, study: str, number: int) -> bool:
        with self._lock:
            return (study, number) in self._kept

    def claim(self, study: str, number: int) -> bool:
        """Reserve trial ``number``'s variables for its continuation (no longer dropped to make room)."""
        with self._lock:
            kept = self._kept.pop((study, number), None)
            if kept is not None:
                self._claimed[(study, number)] = kept
            return kept is not None

    def take(self, study: str, number: int) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
        """The claimed variables of trial ``number``, the epoch they are after and the random
        generators' states then, or None."""
        with self._lock:
            kept = self._claimed.pop((study, number), None)
        return None if kept is None else (kept.step, kept.variables, kept.generators)

    def clear(self, study: str | None = None) -> None:
        """Forget ``study``'s trials (all with None): its search ended."""
        with self._lock:
            for d in (self._kept, self._claimed):
                for key in [k for k in d if study is None or k[0] == study]:
                    del d[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)


paused_in_memory = PausedInMemory()


def resume_point(store: BaseStore, resume: dict[str, Any]) -> tuple[dict[str, Any] | None, int, dict[int, float]]:
    """What a cut trial left: its state after its last saved epoch, that epoch, its curve up to it.
    The state is None for a promotion without a checkpoint (a cell that declares no state): the
    continuation trains those epochs again.

    Raises:
        StateError: the checkpoint file is gone.
    """
    from optuna.artifacts.exceptions import ArtifactNotFound

    step = int(resume["step"])
    values = {int(k): float(v) for k, v in resume.get("values", {}).items() if int(k) <= step}
    if resume.get("retrain"):
        return None, step, values
    try:
        with store.artifact_store().open_reader(resume["artifact"]) as f:
            state = load_state(f.read())
    except ArtifactNotFound:
        raise StateError(f"the checkpoint to resume from ({resume['artifact']}) is gone") from None
    if resume.get("copied"):  # PBT: a member that takes another's weights keeps drawing its own numbers
        state.pop(rng.KEY, None)
    for name in resume.get("explored", ()):  # PBT: new values of tuned variables the loop changes
        state.pop(name, None)
    return state, step, values


def prune_checkpoints(study: optuna.Study, store: BaseStore, keep: int, final: bool = False) -> int:
    """Delete the checkpoint files of all but the ``keep`` best complete (feasible) trials, and
    of trials that will never resume; returns how many files it deleted. Safe to call from
    several workers.

    A paused trial (pause-and-promote) keeps its file while the run may still promote it: until
    its continuation no longer needs it, or, with ``final`` (the run used its budget), the end.
    """
    from optuna.trial import TrialState

    all_trials = study.get_trials(deepcopy=False)
    rerun_done = {t.user_attrs.get(ATTR.RERUN_OF) for t in all_trials if t.state.is_finished()}
    # what a trial that runs, or will run again, resumes from
    needed = {
        t.user_attrs[ATTR.RESUME]["artifact"]
        for t in all_trials
        if "artifact" in t.user_attrs.get(ATTR.RESUME, {})
        and (not t.state.is_finished() or (is_interrupted(t) and t.number not in rerun_done))
    }
    promoted = {t.user_attrs[ATTR.PROMOTED]["from"] for t in all_trials if ATTR.PROMOTED in t.user_attrs}
    trials = [
        t
        for t in all_trials
        if t.state == TrialState.COMPLETE and ATTR.CHECKPOINT in t.user_attrs and t.value is not None
    ]
    maximize = study.direction.name == "MAXIMIZE"
    trials.sort(key=lambda t: (not is_feasible(t), -t.value if maximize else t.value))  # type: ignore[operator]

    # Stopped-early and failed trials never resume: their last epoch's state goes too. An
    # interrupted trial's stays until its re-run has ended (it resumes from it).
    def paused(t: optuna.trial.FrozenTrial) -> bool:
        return bool(t.user_attrs.get(ATTR.DECISION, {}).get("paused"))

    # PBT: a member may continue from another's checkpoint at the epoch it reached itself, so a
    # paused checkpoint stays until every member has gone past its epoch.
    frontier = pbt_frontier(all_trials) if any(ATTR.PBT in t.user_attrs for t in all_trials) else None

    def done_with(t: optuna.trial.FrozenTrial) -> bool:
        d = t.user_attrs[ATTR.DECISION]
        return t.number in promoted and (d.get("scheduler") != "pbt" or frontier is None or d["epoch"] < frontier)

    dropped = [
        t
        for t in all_trials
        if ATTR.CHECKPOINT in t.user_attrs
        and t.user_attrs[ATTR.CHECKPOINT]["artifact"] not in needed
        and (
            (t.state == TrialState.PRUNED and (not paused(t) or final or done_with(t)))
            or (t.state == TrialState.FAIL and (not is_interrupted(t) or t.number in rerun_done))
        )
    ]
    return sum(_remove(store, t.user_attrs[ATTR.CHECKPOINT]["artifact"]) for t in trials[keep:] + dropped)


def has_checkpoint(store: BaseStore, trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial's checkpoint file is still there."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    meta = trial.user_attrs.get(ATTR.CHECKPOINT)
    if not meta:
        return False
    try:
        with store.artifact_store().open_reader(meta["artifact"]):
            return True
    except ArtifactNotFound:
        return False


def read_checkpoint(store: BaseStore, trial: optuna.trial.FrozenTrial) -> dict[str, Any] | None:
    """The state ``trial`` ended with, or None when it has none (or its file was pruned). An epoch's
    checkpoint left because the last one could not be written (a full disk) is no end state: loaded
    as the model the trial's value measured, it was an earlier epoch's (found trying nbtune as a
    new user)."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    meta = trial.user_attrs.get(ATTR.CHECKPOINT)
    if not meta or meta.get("step") is not None:
        return None
    try:
        with store.artifact_store().open_reader(meta["artifact"]) as f:
            state = load_state(f.read())
    except ArtifactNotFound:
        return None
    state.pop(rng.KEY, None)  # the user's variables only: the generators are for a resumed trial
    return state


def checkpoint_files(store: BaseStore, study: optuna.Study) -> tuple[int, int]:
    """How many of the study's checkpoints are kept, and their size in bytes."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    n = size = 0
    for t in study.get_trials(deepcopy=False):
        meta = t.user_attrs.get(ATTR.CHECKPOINT)
        if meta:
            try:
                with store.artifact_store().open_reader(meta["artifact"]):
                    n += 1
                    size += int(meta.get("bytes", 0))
            except ArtifactNotFound:
                continue
    return n, size
