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

import ast
import asyncio
import contextlib
import dataclasses
import errno
import hashlib
import inspect
import json
import logging
import os
import re
import time
import types
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nbtune import _compat
from nbtune._checks import plan_checks, require_seed
from nbtune._config import (
    DEFAULT_TRIALS,
    ETA_DEFAULT,
    HEARTBEAT_DEFAULT,
    TuneConfig,
    config_from,
    parse_constraint,
    parse_timeout,
    with_config_signature,
)
from nbtune.cell.annotations import (
    CellSpec,
    FoldsVar,
    compared_outside_choices,
    inactive_in,
    parse_cell,
    read_only_under,
    set_only_under,
)
from nbtune.cell.identity import (
    JOBLIB,
    PICKLED,
    cell_identity,
    code_names,
    describe_difference,
    describe_space_change,
    legacy_fingerprints,
    made_by_joblib,
    notebook_path,
    same_data,
    settings_set_from_outside,
    users_file,
    weakly_known,
)
from nbtune.cell.loops import (
    built_from_state,
    cap_beside_early_stopping,
    epochs_loop,
    lengths_over,
    names_that_take_effect,
    running_best,
)
from nbtune.cell.names import NEGATED, TIME_WORDS, metric_reads_as, words
from nbtune.cell.program import (
    CellProgram,
    TrialInterrupted,
    TrialRuntime,
    compile_cell,
    holdout_leaks,
    is_data,
)
from nbtune.cell.reads import (
    called_name,
    changed_in_some_trials,
    changes_notebook_arrays,
    never_read,
    notebook_inputs,
    scored_on_fit_data,
)
from nbtune.cell.space import drawn_params
from nbtune.exceptions import CellError, ConfigError, NbtuneError, NbtuneWarning, StoreError, TrialsFailedError
from nbtune.run.backends import BaseBackend, check_sendable, effective_jobs, resolve_backend
from nbtune.run.checkpoints import checkpoint_files, read_checkpoint
from nbtune.run.coordinator import Search
from nbtune.run.liveness import (
    BaseLiveness,
    ProcessLiveness,
    dead_trials,
    liveness_of,
    reap_dead_trials,
    requeue_interrupted,
)
from nbtune.run.output import native_output
from nbtune.run.samplers import SamplerKind, check_sampler, grid_size
from nbtune.run.schedulers import SchedulerSpec, first_rung, scheduler_kind
from nbtune.run.worker import N_FAILURES_TO_STOP, Job, ended_in_run, first_failures
from nbtune.store.attrs import (
    ATTR,
    finished_count,
    is_feasible,
    is_interrupted,
    queued_continuations,
    refused,
    run_records,
    searched_seconds,
    versions_changed,
)
from nbtune.store.base import (
    BaseStore,
    base_name,
    check_study_name,
    is_check_study,
    outer_fold_of,
    outer_fold_study,
    versioned,
)
from nbtune.store.journal import open_store
from nbtune.view.base import BaseView, RunInfo, ViewFactory
from nbtune.view.format import fmt, plural
from nbtune.view.progress import duration
from nbtune.view.summary import still_paused

if TYPE_CHECKING:
    import optuna

    from nbtune.run.schedulers import BaseScheduler
    from nbtune.view.nested import NestedResult
    from nbtune.view.result import TuneResult

__all__ = ["tune", "tune_async", "load_result", "parse_timeout"]

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

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
    liveness: BaseLiveness = field(default_factory=ProcessLiveness)
    phase: str = ""  # what the views call this run instead of the sampler ("checks: ...")
    outer_fold: int | None = None  # nested CV: the outer fold this search is for
    identity: dict[str, Any] | None = None  # what the study records of the cell, its notebook and data
    resumed_over: list[str] = field(default_factory=list)  # --resume continued the study over these changes

    def run_info(self) -> RunInfo:
        return RunInfo(
            study=self.study,
            metric=self.program.metric,
            direction=self.program.direction,
            sampler=self.phase or self.sampler.name,
            scheduler=self.scheduler,
            program=self.program,
            n_jobs=self.n_jobs,
            backend=self.backend.name,
            notes=tuple(self.messages),
        )


def _unmarked_epochs_loop(program: CellProgram) -> int | None:
    """The line of a training loop the cell did not mark: a top-level ``for`` over epochs or rounds
    that sets the metric, in a cell with no epochs loop and no folds."""
    import ast

    spec = program.spec
    if spec.epochs is not None or spec.folds is not None or spec.tree is None:
        return None
    for node in spec.tree.body:
        if not isinstance(node, ast.For):
            continue
        # its words say epochs or boosting rounds ('for epoch in range(5)', 'range(N_ROUNDS)'); a
        # loop over folds ('for k in range(5): tr, va = splits[k]') is cross-validation, not training
        words = " ".join(n.id for part in (node.target, node.iter) for n in ast.walk(part) if isinstance(n, ast.Name))
        sets = any(
            isinstance(n, ast.Name) and n.id == program.metric and isinstance(n.ctx, ast.Store)
            for part in node.body
            for n in ast.walk(part)
        )
        if sets and re.search(r"epoch|round", words, re.IGNORECASE) and not re.search(r"fold", words, re.IGNORECASE):
            return node.lineno  # (the tree counts the notebook's lines)
    return None


def _direction_note(
    metric: str, direction: str, tree: ast.Module | None = None, notebook: dict[str, Any] | None = None
) -> list[str]:
    """A note when the metric's name reads as the other direction's (``--maximize val_rmse``,
    ``--minimize neg_rmse``), or the cell scores with a scikit-learn scorer that negates an
    error (``scoring="neg_root_mean_squared_error"``) and the search minimizes: the search would
    look for the worst model, and report it as the best."""
    reads_as = metric_reads_as(metric)
    if direction == "minimize" and reads_as == "negated error":
        return [
            f"{metric!r} reads like an error negated so that higher is better (scikit-learn's neg_ scorers), but the "
            f"search minimizes it: its best trial is the worst model; run with --maximize {metric} instead "
            "(a new study)"
        ]
    scorer = _negated_score_of(tree, metric, notebook) if direction == "minimize" and tree is not None else None
    if scorer is not None:  # (a val_loss that is that score un-negated too: found trying nbtune as a new user)
        return [
            f"the cell scores with scoring={scorer!r}, which scikit-learn negates so that higher is better, and "
            f"{metric!r} is that score, not negated back, but the search minimizes it: its best trial is the worst "
            f"model; run with --maximize {metric} instead (a new study), or negate it in the cell "
            f"({metric} = -...)"
        ]
    if direction == "maximize" and reads_as == "error":
        kind, better, other = "an error or a loss, which is minimized", "lower", "--minimize"
    elif direction == "minimize" and reads_as == "score":
        kind, better, other = "a score, which is maximized", "higher", "--maximize"
    else:
        line = _scored_by_score_method(tree, metric) if direction == "minimize" and tree is not None else None
        if line is None:
            return []
        return [
            f"line {line}: {metric!r} is an estimator's .score(...), scikit-learn's accuracy (a classifier's) or R² "
            "(a regressor's), which is higher when the model is better, but the search minimizes it: its best trial "
            f"is the worst model; run with --maximize {metric} instead (a new study)"
        ]
    return [
        f"{metric!r} reads like {kind}, but the search {direction}s it: if {better} is better, its best trial "
        f"is the worst model; run with {other} {metric} instead (a new study)"
    ]


def _scored_by_score_method(tree: ast.Module, metric: str) -> int | None:
    """The line where every assignment of ``metric`` is an estimator's ``.score(...)`` as it is
    (``val_score = model.score(X_val, y_val)``, ``float(...)`` of it; not negated, not ``1 - ...``), or
    None: minimized, a ``val_score`` (a name that says neither direction) went unsaid while its best
    trial had the lowest R² (found trying nbtune as a new forecasting user)."""
    values = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == metric for t in n.targets)
    ]

    def is_score(v: ast.expr) -> bool:
        if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "float" and len(v.args) == 1:
            v = v.args[0]
        return isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and v.func.attr == "score"

    if values and all(is_score(v) for v in values):
        return values[0].lineno
    return None


def _negated_score_of(tree: ast.Module, metric: str, notebook: dict[str, Any] | None = None) -> str | None:
    """The scikit-learn scorer that negates an error (``scoring="neg_log_loss"``, or its name in a
    variable first) whose score reaches ``metric`` through the cell's assignments without being
    negated back (``-``, ``abs``), or None. A name assigned from an expression that holds the
    scorer's name, or a name that holds it, carries it (``scores = cross_validate(...,
    scoring=sc)``, ``val_loss = scores["test_score"].mean()``); a subscript or attribute assigned
    carries it to its base name; so does a notebook variable ``notebook`` holds that is such a name
    (``SCORING = "neg_log_loss"`` in an earlier cell: found retesting), or a notebook dict's key or
    settings object's attribute that holds one (``CFG["scoring"]``, ``CFG.scoring``)."""
    found: dict[str, str] = {  # name -> the scorer its value carries
        n: v for n, v in (notebook or {}).items() if isinstance(v, str) and _NEG_SCORER.fullmatch(v)
    }

    def held(n: ast.AST) -> Any:  # CFG["scoring"], CFG.scoring, CFG.get("scoring"): a notebook dict's or object's
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr == "get"
            and isinstance(n.func.value, ast.Name)
            and n.args
            and isinstance(n.args[0], ast.Constant)
        ):
            holder = (notebook or {}).get(n.func.value.id)
            return holder.get(n.args[0].value) if isinstance(holder, dict) else None
        if not (isinstance(n, (ast.Subscript, ast.Attribute)) and isinstance(n.value, ast.Name)):
            return None
        holder = (notebook or {}).get(n.value.id)
        if isinstance(n, ast.Attribute):  # its own __dict__, else its class's: no property of a library's object runs
            for own in (getattr(holder, "__dict__", None), getattr(type(holder), "__dict__", None)):
                if isinstance(own, Mapping) and isinstance(own.get(n.attr), str):
                    return own[n.attr]
            return None
        key = n.slice.value if isinstance(n.slice, ast.Constant) else None
        return holder.get(key) if isinstance(holder, dict) and isinstance(key, (str, int)) else None

    def source(expr: ast.AST) -> str | None:
        for n in ast.walk(expr):
            value = n.value if isinstance(n, ast.Constant) else held(n)
            if isinstance(value, str) and _NEG_SCORER.fullmatch(value):
                return value
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in found:
                return found[n.id]
        return None

    def negative(expr: ast.AST) -> bool:  # -1, -1.0
        return (
            isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub) and isinstance(expr.operand, ast.Constant)
        )

    def negated(expr: ast.AST) -> bool:  # -score, abs(score), 1 - score, -1 * score
        for n in ast.walk(expr):
            if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub) and source(n.operand):
                return True
            if (
                isinstance(n, ast.Call)
                and getattr(n.func, "id", getattr(n.func, "attr", None)) in {"abs", "absolute"}
                and any(source(a) for a in n.args)
            ):
                return True
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Sub) and source(n.right):
                return True
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult) and (negative(n.left) or negative(n.right)):
                return True
        return False

    def bases(target: ast.AST) -> list[str]:
        if isinstance(target, ast.Name):
            return [target.id]
        if isinstance(target, (ast.Subscript, ast.Attribute, ast.Starred)):
            return bases(target.value)
        if isinstance(target, (ast.Tuple, ast.List)):
            return [b for e in target.elts for b in bases(e)]
        return []

    flows: list[tuple[list[ast.AST], ast.AST]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            flows.append((list(node.targets), node.value))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)) and node.value is not None:
            flows.append(([node.target], node.value))
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            flows.append(([node.target], node.iter))
    for _ in range(len(flows) + 1):  # until nothing new is carried
        grew = False
        for targets, value in flows:
            scorer = source(value)
            if scorer is None or negated(value):
                continue
            for name in (b for t in targets for b in bases(t)):
                if name not in found:
                    found[name], grew = scorer, True
        if not grew:
            break
    return found.get(metric)


# scikit-learn's scorers that negate an error so that higher is better: neg_mean_squared_error, neg_log_loss,
# neg_brier_score, neg_mean_poisson_deviance ... (not any name that starts with neg_: a column 'neg_reviews')
_NEG_SCORER = re.compile(r"neg_[a-z0-9_]*(error|loss|brier|deviance)[a-z0-9_]*")


# scikit-learn's splitters that shuffle by default, and those that shuffle when asked (shuffle=True)
_SHUFFLING_SPLITS = {
    "train_test_split",
    "ShuffleSplit",
    "StratifiedShuffleSplit",
    "GroupShuffleSplit",
    "RepeatedKFold",
    "RepeatedStratifiedKFold",
}
_SPLITS_THAT_MAY_SHUFFLE = {"KFold", "StratifiedKFold", "StratifiedGroupKFold", "GroupKFold"}


def _shuffling_split(call: ast.Call) -> str | None:
    """The scikit-learn splitter ``call`` makes or calls, when it shuffles: ``train_test_split(...)``
    and ``ShuffleSplit(...)`` unless given ``shuffle=False``, ``KFold(...)`` when given ``shuffle=True``
    (its name; None otherwise)."""
    name = called_name(call)
    said = {k.arg: k.value for k in call.keywords if k.arg is not None}.get("shuffle")
    shuffle = said.value if isinstance(said, ast.Constant) else None  # True, False, or not a literal
    shuffles = (name in _SHUFFLING_SPLITS and shuffle is not False) or (
        name in _SPLITS_THAT_MAY_SHUFFLE and shuffle is True
    )
    return name if shuffles else None


def _unseeded_splits(tree: ast.Module) -> list[tuple[int, str]]:
    """The cell's calls of a scikit-learn splitter that shuffles without ``random_state``:
    each trial splits the data anew, so trials are compared on different validation sets (with
    ``folds(k)``, the folds of one trial overlap too). As ``(line, name)``."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if any(k.arg is None for k in node.keywords):  # **options: cannot tell
            continue
        name = _shuffling_split(node)
        seed = {k.arg: k.value for k in node.keywords}.get("random_state")
        if name and (seed is None or (isinstance(seed, ast.Constant) and seed.value is None)):
            found.append((node.lineno, name))
    return found


def _shuffled_time_series(tree: ast.Module, globals_read: dict[str, Any]) -> list[tuple[int, str, str]]:
    """The cell's splits that shuffle the rows of a notebook frame or series indexed by date
    (``train_test_split(df, ...)``, ``KFold(5, shuffle=True).split(X)``): every model then trains on
    days after those it is scored on, which no forecast has (nothing was said: found trying nbtune as
    a new forecasting user). As ``(line, the splitter, the variable)``."""

    def splitter(node: ast.expr) -> str | None:  # the shuffling splitter a '.split' is called on
        if isinstance(node, ast.Call):
            return _shuffling_split(node)
        value = globals_read.get(node.id) if isinstance(node, ast.Name) else None
        kind = type(value).__name__
        if type(value).__module__.startswith("sklearn.") and (
            kind in _SHUFFLING_SPLITS or (kind in _SPLITS_THAT_MAY_SHUFFLE and getattr(value, "shuffle", False))
        ):
            return kind
        return None

    def dated(arg: ast.expr) -> str | None:  # df, df.y, df[cols], df.iloc[...]: a notebook object indexed by date
        base = arg
        while isinstance(base, (ast.Attribute, ast.Subscript)):
            base = base.value
        value = globals_read.get(base.id) if isinstance(base, ast.Name) else None
        index = getattr(value, "index", None) if type(value).__module__.startswith("pandas") else None
        return base.id if type(index).__name__ in ("DatetimeIndex", "PeriodIndex") else None  # type: ignore[attr-defined]

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or any(k.arg is None for k in node.keywords):
            continue
        f = node.func
        cv = {k.arg: k.value for k in node.keywords}.get("cv")
        if isinstance(f, ast.Name) and f.id == "train_test_split":
            name = _shuffling_split(node)
        elif isinstance(f, ast.Attribute) and f.attr == "split":
            name = splitter(f.value)
        elif cv is not None:  # cross_val_score(model, df[feats], df.y, cv=KFold(5, shuffle=True)) (found retesting)
            name = splitter(cv)
        else:
            continue
        var = next((v for a in node.args if (v := dated(a)) is not None), None) if name else None
        if name and var:
            found.append((node.lineno, name, var))
    return found


# scikit-learn's estimators that draw at random with their default random_state=None (not those that
# use it only under some option: Ridge's sag solver, SVC's probability=True)
_RANDOM_MODULES = (
    "sklearn.ensemble",
    "sklearn.tree",
    "sklearn.neural_network",
    "sklearn.cluster",
    "sklearn.manifold",
    "sklearn.kernel_approximation",
    "sklearn.random_projection",
    "sklearn.mixture",
)
# of scikit-learn's decompositions, those that draw at random by default (PCA and NMF do not on most data)
_RANDOM_DECOMPOSITIONS = {
    "TruncatedSVD", "LatentDirichletAllocation", "FastICA", "DictionaryLearning", "MiniBatchDictionaryLearning",
    "MiniBatchNMF", "SparsePCA", "MiniBatchSparsePCA",
}  # fmt: skip
_RANDOM_LINEAR = {"SGDClassifier", "SGDRegressor", "SGDOneClassSVM", "Perceptron", "PassiveAggressiveClassifier"}
# of those modules, the ones that draw only under an option (early stopping on a large set, subsampling)
_DETERMINISTIC_BY_DEFAULT = {"HistGradientBoostingClassifier", "HistGradientBoostingRegressor"}


def _unseeded_estimators(tree: ast.Module, globals_read: dict[str, Any]) -> list[tuple[int, str]]:
    """The cell's calls of a scikit-learn estimator that draws at random, without ``random_state``
    (``RandomForestClassifier(n_estimators=n)``): the same configuration scores differently from
    trial to trial, and ``--seed`` repeats the configurations but not their scores (found trying
    nbtune as a new user). As ``(line, name)``; a class the cell imports itself is looked up in the
    modules already loaded (nothing is imported to find it)."""
    imported = _imported_by(tree)
    # seeded after it is built (m.set_params(random_state=0), m.random_state = 0): left alone
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "set_params"
            and any(k.arg == "random_state" for k in node.keywords)
        ):
            return []
        if isinstance(node, ast.Attribute) and node.attr == "random_state" and isinstance(node.ctx, ast.Store):
            return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or any(k.arg is None for k in node.keywords):
            continue
        seed = next((k.value for k in node.keywords if k.arg == "random_state"), None)
        if seed is not None and not (isinstance(seed, ast.Constant) and seed.value is None):
            continue
        obj = _called(node, imported, globals_read)
        if not isinstance(obj, type):
            continue
        module = obj.__module__
        if obj.__name__ in _DETERMINISTIC_BY_DEFAULT:
            continue
        if not (
            module.startswith(_RANDOM_MODULES)
            or (module.startswith("sklearn.") and obj.__name__ in _RANDOM_LINEAR | _RANDOM_DECOMPOSITIONS)
        ):
            continue
        # one with no random_state draws nothing (DBSCAN, AgglomerativeClustering, VotingClassifier: the
        # advice raised a TypeError, found trying nbtune as a new user), nor does SGD that does not shuffle
        if not _takes_random_state(obj) or (obj.__name__ in _RANDOM_LINEAR and _literal(node, "shuffle") is False):
            continue
        found.append((node.lineno, obj.__name__))
    return found


def _imported_by(tree: ast.Module) -> dict[str, Any]:
    """What the cell's imports bind, looked up in the modules already loaded (nothing is imported)."""
    import sys

    imported: dict[str, Any] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level and node.module in sys.modules:
            for alias in node.names:
                imported[alias.asname or alias.name] = getattr(sys.modules[node.module], alias.name, None)
        elif isinstance(node, ast.Import):
            for alias in node.names:  # import a.b as m: m is a.b; import a.b: a
                if alias.name in sys.modules:
                    root = alias.name if alias.asname else alias.name.partition(".")[0]
                    imported[alias.asname or root] = sys.modules.get(root)
    return imported


def _called(call: ast.Call, imported: dict[str, Any], globals_read: dict[str, Any]) -> Any:
    """The object a call calls, when its name leads there through modules only (``np.random.randn``,
    ``nn.Linear``, a notebook class); None otherwise (no attribute of anything else is read)."""
    chain, f = [], call.func
    while isinstance(f, ast.Attribute):
        chain.append(f.attr)
        f = f.value
    if not isinstance(f, ast.Name):
        return None
    obj: Any = imported.get(f.id, globals_read.get(f.id))
    for attr in reversed(chain):
        obj = getattr(obj, attr, None) if isinstance(obj, types.ModuleType) else None
    return obj


# PyTorch's layers whose construction draws initial weights from its global generator
_TORCH_DRAWING_LAYERS = re.compile(
    r"(Lazy)?(Linear|Bilinear|Conv|ConvTranspose|LSTM|GRU|RNN|Embedding|MultiheadAttention|Transformer)"
)
_TORCH_DRAWS = {"randn", "rand", "randint", "randperm", "normal", "bernoulli", "multinomial", "rand_like", "randn_like"}


# calls that make a generator of the cell's own (its seed is its own, not the global generator's)
_MAKES_GENERATORS = frozenset({"Generator", "RandomState", "Random", "default_rng"})


def _unseeded_global_draws(tree: ast.Module, globals_read: dict[str, Any]) -> list[tuple[int, str, str, bool]]:
    """The cell's first draw from each library's global generator (NumPy's ``np.random.randn``,
    Python's ``random.random``, PyTorch's through ``torch.randn`` or a layer's initial weights, a
    notebook ``nn.Module`` class) in a cell that calls nothing that seeds (no call whose name says
    ``seed``: ``np.random.seed``, ``torch.manual_seed``, ``seed_everything``, a ``set_seed`` of the
    notebook's): each trial draws other numbers, and the same configuration scores differently
    (found trying nbtune as a new user: a network built in the cell without a seed said nothing,
    where a forest without random_state did). As ``(line, the call, the library, whether it draws a
    model's initial weights)``."""
    import sys

    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    # a generator of the cell's own seeded (g = torch.Generator().manual_seed(seed), g.manual_seed(s)) is
    # no seeding of the global one (it hid a model's unseeded initial weights: found trying nbtune as a
    # new PyTorch user, with the tutorial's own loader)
    own = {
        t.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
        for t in n.targets
        if isinstance(t, ast.Name)
        and any(isinstance(c, ast.Call) and called_name(c) in _MAKES_GENERATORS for c in ast.walk(n.value))
    }

    def seeds_a_global(call: ast.Call) -> bool:
        receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
        if isinstance(receiver, ast.Call) or (isinstance(receiver, ast.Name) and receiver.id in own):
            return False
        return "seed" in called_name(call).lower()

    if any(seeds_a_global(c) for c in calls):
        return []
    # seeded by a notebook function the cell calls ('def set_all(s): torch.manual_seed(s); ...', found retesting)
    for c in calls:
        f = globals_read.get(c.func.id) if isinstance(c.func, ast.Name) else None
        if isinstance(f, types.FunctionType) and any("seed" in n.lower() for n in code_names(f.__code__)):
            return []
    loads_weights = any(called_name(c) in _LOADS_WEIGHTS for c in calls)
    imported = _imported_by(tree)
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    np_global = getattr(getattr(getattr(np, "random", None), "mtrand", None), "_rand", None)  # (NumPy's own)
    data = sys.modules.get("torch.utils.data")
    found: dict[str, tuple[int, str, str, bool]] = {}
    for call in sorted(calls, key=lambda c: (c.lineno, c.col_offset)):
        obj = _called(call, imported, globals_read)
        if obj is None:
            continue
        library = None
        if torch is not None and any(k.arg in ("generator", "sampler", "batch_sampler") for k in call.keywords):
            continue  # (its own generator)
        if (library := _global_draw(obj, np_global, torch)) is not None:
            pass
        elif torch is not None and isinstance(obj, type) and issubclass(obj, torch.nn.Module):
            if not loads_weights and (
                obj.__module__ == "__main__"
                or _TORCH_DRAWING_LAYERS.fullmatch(obj.__name__)
                or (obj.__module__.startswith("torch.nn") and _TORCH_DRAWING_LAYERS.match(obj.__name__))
            ):
                library = "torch"
        elif torch is not None and getattr(obj, "__module__", "") == "torch.nn.init" and obj.__name__.endswith("_"):
            if not loads_weights and obj.__name__ not in ("zeros_", "ones_", "constant_", "eye_", "dirac_"):
                library = "torch"  # nn.init.normal_(w), xavier_uniform_, kaiming_normal_, ...
        elif data is not None and obj is getattr(data, "random_split", None):
            library = "torch"
        elif data is not None and obj is getattr(data, "DataLoader", None) and _shuffles(call):
            library = "torch"  # its order each epoch (sampler= or generator= given: its own)
        elif isinstance(obj, types.FunctionType) and obj.__module__ == "__main__":
            library = _draws_in(obj, np_global, torch)  # a notebook helper's own np.random.rand() (found by a user)
        if library is not None and library not in found:
            found[library] = (call.lineno, ast.unparse(call.func), library, isinstance(obj, type))
    return sorted(found.values())


def _global_draw(obj: Any, np_global: Any, torch: Any) -> str | None:
    """The library whose global generator calling ``obj`` draws from (``np.random.randn``,
    ``random.random``, ``torch.randn``; not their ``seed`` or state functions), or None. ``np_global``:
    NumPy's own ``RandomState``, which its module functions are bound to."""
    import random

    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if np_global is not None and owner is np_global and name not in ("seed", "get_state", "set_state"):
        return "numpy"
    if owner is getattr(random, "_inst", None) and name not in ("seed", "getstate", "setstate"):
        return "random"
    if torch is not None and name in _TORCH_DRAWS and _from_torch(obj, torch):
        return "torch"
    return None


def _draws_in(f: types.FunctionType, np_global: Any, torch: Any, depth: int = 0) -> str | None:
    """The library whose global generator a notebook function draws from in its own code
    (``np.random.rand()``, ``random.random()``, ``torch.randn(...)``; and in the notebook functions it
    calls, two deep), or None: a helper's draws made the same configuration and seed score 0.60,
    0.61 and 0.50, with nothing said (found trying nbtune as a new user)."""
    import dis

    codes, out = [f.__code__], None
    while codes and out is None:
        code = codes.pop()
        codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]  # lambdas, comprehensions
        obj: Any = None
        for ins in dis.get_instructions(code):
            if ins.opname == "LOAD_GLOBAL":
                obj = f.__globals__.get(str(ins.argval))
                if isinstance(obj, types.FunctionType) and obj.__module__ == "__main__" and obj is not f and depth < 2:
                    out = _draws_in(obj, np_global, torch, depth + 1)
                    if out is not None:
                        break
            elif ins.opname in ("LOAD_ATTR", "LOAD_METHOD") and isinstance(obj, types.ModuleType):
                obj = getattr(obj, str(ins.argval), None)
                out = _global_draw(obj, np_global, torch)
                if out is not None:
                    break
            else:
                obj = None
    return out


def _generators_made_unseeded(tree: ast.Module, globals_read: dict[str, Any]) -> list[tuple[int, str]]:
    """``np.random.default_rng()``, ``np.random.RandomState()`` or ``random.Random()`` made in the cell
    with no seed (or ``None``): each starts from fresh entropy in every trial, whatever seeds the
    global generators (found trying nbtune as a new user). As ``(line, the call)``."""
    import random
    import sys

    np: Any = sys.modules.get("numpy")
    makers = {id(random.Random)}
    if np is not None:
        makers |= {id(np.random.default_rng), id(np.random.RandomState)}
    imported = _imported_by(tree)
    out = []
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call) or id(_called(call, imported, globals_read)) not in makers:
            continue
        given = [*call.args, *(k.value for k in call.keywords if k.arg == "seed")]
        if not given or all(isinstance(a, ast.Constant) and a.value is None for a in given):
            out.append((call.lineno, ast.unparse(call.func)))
    return sorted(out)


def _shuffles(call: ast.Call) -> bool:
    """A ``DataLoader(...)`` call given ``shuffle=`` other than a literal False."""
    return any(
        k.arg == "shuffle" and not (isinstance(k.value, ast.Constant) and not k.value.value) for k in call.keywords
    )


def _from_torch(obj: Any, torch: Any) -> bool:
    return getattr(torch, getattr(obj, "__name__", ""), None) is obj


# what replaces a model's initial weights: a net built and then loaded draws nothing that counts (found retesting)
_LOADS_WEIGHTS = {"load_state_dict", "from_pretrained", "load_from_checkpoint"}
_SEED_CALL = {"numpy": "np.random.seed({})", "random": "random.seed({})", "torch": "torch.manual_seed({})"}


def _takes_random_state(cls: type) -> bool:
    try:
        return "random_state" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return True  # (cannot tell: as before)


def _literal(call: ast.Call, keyword: str) -> Any:
    """The literal value the call gives ``keyword``, or None."""
    value = next((k.value for k in call.keywords if k.arg == keyword), None)
    return value.value if isinstance(value, ast.Constant) else None


_GENERATORS = {
    ("numpy.random", "Generator"),
    ("numpy.random", "RandomState"),
    ("random", "Random"),
    ("torch", "Generator"),
}
_LOOKS = {"print", "type", "repr", "str", "id", "isinstance", "display"}  # calls that only look at a value
_MAKE_GENERATOR = {  # one of the same kind, made from a seed (scikit-learn takes a RandomState, not a Generator)
    "Generator": "np.random.default_rng({})",
    "RandomState": "np.random.RandomState({})",
    "Random": "random.Random({})",
    "torch.Generator": "torch.Generator().manual_seed({})",
}


def _make_generator(kind: str, seed: str) -> str:
    """The code that makes a generator of ``kind`` from ``seed`` (the '# tune: seed' variable, or 0):
    the advice showed ``default_rng(0)`` beside 'from the # tune: seed variable' (found trying nbtune)."""
    return _MAKE_GENERATOR.get(kind, _MAKE_GENERATOR["Generator"]).format(seed)


def _generator_kind(value: Any) -> str | None:
    """``"Generator"``, ``"RandomState"``, ``"Random"``, ``"torch.Generator"`` for a random generator, else None."""
    kind = type(value)
    module = kind.__module__.rsplit("._", 1)[0].removesuffix(".mtrand")
    if (module, kind.__name__) not in _GENERATORS:
        return None
    return f"torch.{kind.__name__}" if module == "torch" else kind.__name__


def _notebook_generators(
    globals_read: dict[str, Any], tree: ast.Module, user_ns: dict[str, Any] | None = None
) -> list[tuple[str, str, str | None, str | None]]:
    """The notebook's random generators the cell draws from (``rng = np.random.default_rng(0)`` in an
    earlier cell, then ``rng.choice(...)`` or ``random_state=rng`` in the cell, read before the cell
    binds it), or that a notebook function it calls reads (``def noisy(x): return x +
    rng.normal(...)``) where the cell binds no such name, or takes as a default argument (``def
    negatives(k, rng=gen):``, which the cell's own generator of that name does not replace): as
    ``(name, type, the function or None, the argument or None)``. Looked at in the cell,
    ``print(type(rng))``, is no draw."""
    inputs = notebook_inputs(tree)
    drawn: set[str] = set()  # rng.choice(...), f(..., rng), f(random_state=rng), g = rng
    for node in ast.walk(tree):
        used: list[ast.expr] = []
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _LOOKS):
            used = [*node.args, *(k.value for k in node.keywords)]
            if isinstance(node.func, ast.Attribute):
                used.append(node.func.value)
        elif isinstance(node, ast.Assign):
            used = [node.value]
        drawn.update(n.id for n in used if isinstance(n, ast.Name))
    out: list[tuple[str, str, str | None, str | None]] = [
        (name, kind, None, None)
        for name, value in globals_read.items()
        if name in inputs and name in drawn and (kind := _generator_kind(value)) is not None
    ]
    if user_ns is None:
        return out
    # A notebook function reads the notebook's generator, unless the cell binds that name: then a trial
    # hands the function its own namespace (see functions_reading), and it reads the cell's.
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    told = {name for name, _, _, _ in out}
    told_ids = {id(user_ns.get(name)) for name in told}
    for fname, function in globals_read.items():
        if not (isinstance(function, types.FunctionType) and function.__globals__ is user_ns):
            continue
        seen: set[int] = set()
        todo = [function]
        while todo:  # and the notebook functions it calls
            f = todo.pop()
            if id(f) in seen:
                continue
            seen.add(id(f))
            for name in sorted(code_names(f.__code__) - bound - told):
                value = user_ns.get(name)
                if (kind := _generator_kind(value)) is not None:
                    out.append((name, kind, fname, None))
                    told.add(name)
                    told_ids.add(id(value))
                elif isinstance(value, types.FunctionType) and value.__globals__ is user_ns:
                    todo.append(value)
            for arg, value in _default_arguments(f).items():  # bound when the function was defined
                if id(value) in told_ids or (kind := _generator_kind(value)) is None:
                    continue
                if f is function and _always_passed(tree, fname, f, arg):
                    continue
                name = next((n for n, v in user_ns.items() if v is value and not n.startswith("_")), arg)
                out.append((name, kind, fname if f is function else f.__name__, arg))
                told_ids.add(id(value))
    return out


def _always_passed(tree: ast.Module, fname: str, f: types.FunctionType, arg: str) -> bool:
    """Every call of ``fname`` in the cell passes ``arg`` (by name, or by its place): its default is never used."""
    code = f.__code__
    place = code.co_varnames[: code.co_argcount].index(arg) if arg in code.co_varnames[: code.co_argcount] else None
    calls = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == fname
    ]
    return bool(calls) and all(
        any(k.arg == arg or k.arg is None for k in c.keywords)
        or (place is not None and (len(c.args) > place or any(isinstance(a, ast.Starred) for a in c.args)))
        for c in calls
    )


def _default_arguments(f: types.FunctionType) -> dict[str, Any]:
    """A function's default arguments by name (positional ones and keyword-only ones)."""
    code, defaults = f.__code__, f.__defaults__ or ()
    positional = code.co_varnames[: code.co_argcount]
    return {**dict(zip(positional[len(positional) - len(defaults) :], defaults)), **(f.__kwdefaults__ or {})}


def _unseeded_splitters(globals_read: dict[str, Any]) -> list[str]:
    """The notebook's scikit-learn splitters the cell reads that shuffle without ``random_state``
    (``cv = KFold(5, shuffle=True)`` in an earlier cell): each trial's ``cv.split`` shuffles anew."""
    return [
        name
        for name, value in globals_read.items()
        if type(value).__name__ in _SHUFFLING_SPLITS | _SPLITS_THAT_MAY_SHUFFLE
        and type(value).__module__.startswith("sklearn.")
        and getattr(value, "random_state", 0) is None
        and getattr(value, "shuffle", True) is not False
    ]


def _unread(program: CellProgram, name: str) -> bool:
    """The cell never reads ``name`` (nor a notebook function it calls)."""
    tree = program.spec.tree
    return tree is not None and bool(never_read(tree, [name])) and name not in program.read_by_functions


def _default_name(metric: str, direction: str, program: CellProgram) -> str:
    # Stable across edits of the code: only the metric, its direction and the names of
    # the tuned variables matter. Changed ranges make a new *version* of the same name.
    key = json.dumps([metric, direction, sorted(p.name for p in program.params)])
    return f"{metric}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"


def _fingerprint(program: CellProgram, spec: SchedulerSpec) -> dict[str, Any]:
    fp: dict[str, Any] = {
        "params": [p.fingerprint() for p in program.params],
        "metric": program.metric,
        "direction": program.direction,
    }
    if program.constraints:  # the guardrails decide which trial is best: another set is another study
        fp["guardrails"] = sorted(c[3] for c in program.constraints)
    schedule = _schedule(spec)
    if schedule:  # trials that pause and continue are not comparable with stop-only ones: another study
        fp["schedule"] = schedule
    # As the store gives it back: compared with a stored one, a tuple (step=...) must not differ from
    # the list JSON made of it, or every re-run of a cell with a step would start a new version.
    stored: dict[str, Any] = json.loads(json.dumps(fp))
    return stored


def _schedule(spec: SchedulerSpec) -> str:
    """How trials pause and continue, in words ("" for stop-only schedulers, as before pausing existed)."""
    if not spec.pause:
        return ""
    if spec.scheduler.pauses:
        return f"{spec.kind} ({spec.population} members, every {spec.interval} epochs)"
    return f"{spec.kind} with pause-and-promote"


def _what_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    """ "schedule" when only how trials pause and continue changed, "metric" when only the metric or
    its direction did, "guardrails" when only the guardrails did (a loosened one had read "the search
    space changed": found trying nbtune as a new user), else "search space"."""
    for what, keys in (("schedule", {"schedule"}), ("metric", {"metric", "direction"}), ("guardrails", {"guardrails"})):
        rest = {k: v for k, v in old.items() if k not in keys}, {k: v for k, v in new.items() if k not in keys}
        if rest[0] == rest[1]:
            return what
    return "search space"


def _compile(cell: str, cfg: TuneConfig) -> tuple[CellProgram, SamplerKind, SchedulerSpec]:
    """The cell, and the options that depend on it (sampler vs space, scheduler vs epochs loop)."""
    program = compile_cell(
        cell,
        metric=cfg.metric,
        direction=cfg.direction,
        user_ns=cfg.user_ns,
        transform=cfg.transform,
        line_offset=cfg.line_offset,
        holdout=cfg.holdout,
        constraints=[parse_constraint(c) for c in cfg.subject_to or []],
        records=list(cfg.record or []),
        state=list(cfg.state or []),
    )
    if cfg.revalidate:
        require_seed(program, "--revalidate")
    if cfg.vary_seed and program.spec.seed is None:
        raise ConfigError(
            "--vary-seed gives the seed variable a new value in each trial, but the %%tune cell has none; "
            "mark it, e.g. 'seed = 0  # tune: seed'"
        )
    seed = program.spec.seed
    if seed is not None and (cfg.revalidate or cfg.vary_seed) and _unread(program, seed.name):
        option = "--revalidate" if cfg.revalidate else "--vary-seed"
        raise ConfigError(
            f"line {seed.lineno}: {option} runs configurations with other values of the seed {seed.name!r}, but the "
            "cell never reads it, so every seed would run the same thing; seed your code with it "
            f"(random_state={seed.name}, torch.manual_seed({seed.name}), np.random.default_rng({seed.name}))"
        )
    sampler = check_sampler(cfg.sampler, program.params)
    epochs = program.spec.epochs
    folds = program.spec.folds  # with folds, a trial's steps are its folds (the running mean after each)
    # ASHA with pause-and-promote by default: the best and most robust search at an equal epoch budget
    # in benchmarks/bench_search.py (README, Benchmarks (i)); Hyperband hedges against late bloomers.
    kind = scheduler_kind(cfg.scheduler if cfg.scheduler is not None else ("asha" if epochs else "none"))
    R: int | None
    if folds is not None:
        if cfg.max_epochs is not None:
            raise ConfigError(
                f"--max-epochs has no epochs loop to describe: the trial's steps are the {folds.k} folds of line "
                f"{folds.lineno}; drop --max-epochs"
            )
        R, unit = folds.k, "fold"
    else:
        R, unit = _epochs_resource(cfg, program, kind), "epoch"
    # Successive halving pauses a trial that is not (yet) in the top 1/eta at a rung, along an
    # epochs loop: it continues from its worker's memory, else from its checkpoint when the cell
    # declares state, else it trains again from the start (as scikit-learn's halving searches do).
    pause = kind.rungs and epochs is not None and folds is None and not cfg.stop_only
    _check_pbt_options(cfg, kind)
    _check_unused_scheduler_options(cfg, kind, epochs is not None or folds is not None)
    pbt: dict[str, Any] = {}
    if kind.pauses:
        pause = True
        pbt = _pbt_settings(cfg, program, R)
    r = cfg.min_epochs
    if r is None:  # the first rung where the run's configurations fill every rung (the baseline does not compete)
        # (with only a --timeout, how many will run is not known: the rungs of the default 20, where a
        # short search still trains some configurations to the end)
        n = cfg.n_trials if cfg.n_trials is not None else DEFAULT_TRIALS
        if sampler.enumerates:  # a grid smaller than -n: its points are all the configurations there are
            n = min(n, grid_size(program.params))
        r = first_rung(R, cfg.eta, n - (0 if sampler.enumerates else 1)) if kind.rungs else 1
    spec = SchedulerSpec(
        kind=kind.name,
        R=R,
        r=r,
        eta=cfg.eta,
        metric=cfg.metric,
        direction=cfg.direction,
        unit=unit,
        pause=pause,
        **pbt,
    )
    return program, sampler, spec


def _check_pbt_options(cfg: TuneConfig, kind: BaseScheduler) -> None:
    """PBT's options without PBT, or --stop-only with it, would be ignored: say so instead."""
    if kind.name == "pbt":
        if cfg.stop_only:
            raise ConfigError(
                "--stop-only does not apply to --scheduler pbt: its members pause at every interval and go on "
                "(from their own state or a better member's); drop --stop-only"
            )
        return
    given = [f for f, v in (("--population", cfg.population), ("--interval", cfg.interval)) if v is not None]
    if given:
        raise ConfigError(
            f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for population-based training, but the "
            f"scheduler is {kind.name}: add --scheduler pbt, or drop {' and '.join(given)}"
        )


def _check_lease_options(cfg: TuneConfig, store: BaseStore) -> None:
    """--heartbeat and --lease-grace set a database store's leases; with a folder store they were
    ignored without a word (found trying nbtune as a new user): said before any trial."""
    if store.leases:
        return
    given = [
        o
        for o, used in (
            ("--heartbeat", cfg.heartbeat != HEARTBEAT_DEFAULT),
            ("--lease-grace", cfg.lease_grace is not None),
        )
        if used
    ]
    if given:
        options = " and ".join(given)
        raise ConfigError(
            f"{options} would be ignored: {'they set' if len(given) > 1 else 'it sets'} a database store's leases, "
            f"and this study's store is the folder {store.where()}, where nbtune watches this machine's worker "
            f"processes themselves; drop {options}, or pass --store postgresql://... for workers on other machines"
        )


def _check_unused_scheduler_options(cfg: TuneConfig, kind: BaseScheduler, steps: bool) -> None:
    """Successive halving's options given to a search that would not use them (a cell without an
    epochs loop, --scheduler none, median or pbt) were ignored without a word, where --scheduler asha
    on such a cell is refused (found trying nbtune as a new user): said instead, before any trial."""
    unused = []
    if cfg.min_epochs is not None and not (kind.rungs or kind.name == "median"):
        unused.append("--min-epochs")
    if cfg.eta != ETA_DEFAULT and not kind.rungs:
        unused.append("--eta")
    if cfg.stop_only and not kind.rungs and not kind.pauses:  # (PBT's is said by _check_pbt_options)
        unused.append("--stop-only")
    if cfg.max_epochs is not None and not steps:
        unused.append("--max-epochs")
    if not unused:
        return
    why = (
        "the cell has no epochs loop, so no scheduler stops its trials (mark the training loop with "
        "'# tune: epochs' for one)"
        if not steps
        else f"--scheduler {kind.name} does not use "
        + ("it" if len(unused) == 1 else "them")
        + " (successive halving's: --scheduler asha or hyperband"
        + (", and median's first epoch to compare at for --min-epochs" if "--min-epochs" in unused else "")
        + ")"
    )
    raise ConfigError(f"{' and '.join(unused)} would be ignored: {why}; drop {' and '.join(unused)}")


def _pbt_settings(cfg: TuneConfig, program: CellProgram, R: int | None) -> dict[str, Any]:
    """PBT's population, interval and the hyperparameters it may change, checked against the cell."""
    epochs = program.spec.epochs
    if program.spec.folds is not None or epochs is None or R is None:
        raise ConfigError("--scheduler pbt needs an epochs loop ('# tune: epochs'), not folds")
    if not program.state:
        raise ConfigError(
            "--scheduler pbt copies models from member to member: mark what a member's training state is, "
            "e.g. 'model = Net()  # tune: state' and 'opt = Adam(...)  # tune: state' (or --state model,opt)"
        )
    interval = cfg.interval if cfg.interval is not None else max(1, R // 4)
    if interval >= R:
        raise ConfigError(
            f"--interval {interval} leaves no decision inside the {R} epochs of line {epochs.lineno}; "
            f"give an interval below {R}, e.g. --interval {max(1, R // 4)}"
        )
    assert program.spec.tree is not None
    read = names_that_take_effect(program.spec.tree, epochs.lineno, list(program.state))
    perturb = tuple(p.name for p in program.params if p.name in read)
    return {"population": cfg.population or 8, "interval": interval, "perturb": perturb}


def _tuned_work_per_epoch(program: CellProgram, spec: SchedulerSpec) -> list[str]:
    """A loop inside the epochs loop whose length a tuned variable sets (``for _ in range(rounds):``
    with ``rounds`` tuned): one epoch trains more in some trials than in others, and successive
    halving compares them at the same epoch, unequal budgets (accepted without a word: found
    trying nbtune as a new user, boosting rounds per epoch tuned from 5 to 100)."""
    epochs = program.spec.epochs
    if epochs is None or program.spec.tree is None or spec.kind == "none":
        return []
    loop = epochs_loop(program.spec.tree, epochs.lineno)
    tuned = {p.name for p in program.params}
    if loop is None:
        return []
    for node in ast.walk(ast.Module(body=loop.body, type_ignores=[])):
        if isinstance(node, (ast.For, ast.While)):
            test = node.iter if isinstance(node, ast.For) else node.test
            read = sorted({n.id for n in ast.walk(test) if isinstance(n, ast.Name)} & tuned)
            if read:
                return [
                    f"line {node.lineno} of the %%tune cell: the loop inside the epochs loop runs as long as "
                    f"{', '.join(read)} says, which is tuned: one epoch trains more in some trials than in others, and "
                    "successive halving compares trials at the same epoch, so it compares unequal budgets; keep the "
                    "work per epoch fixed (tune what each round does, not how many run per epoch)"
                ]
    return []


def _metric_unset_for_some_choices(program: CellProgram, user_ns: dict[str, Any] | None) -> list[str]:
    """The metric, a guardrail's or a ``--record`` variable set only under tests of a tuned choice
    that leave some of its values out (the ``svm`` branch fits and never scores): those trials fail
    with MetricError, which a search learnt from four failed trials in eight (found trying nbtune as
    a new user; a guardrail's, later, as well). Said before any trial."""
    from nbtune.cell.program import sets_as_global

    if program.spec.tree is None:
        return []
    roles = {program.metric: ""}
    for name, _, _, label in program.constraints:
        roles.setdefault(name, f" (the guardrail {label!r})")
    for name in program.records:
        roles.setdefault(name, " (--record)")
    out = []
    for variable, role in roles.items():
        places = set_only_under(program.spec, variable)
        if not places or sets_as_global(program.spec.tree, variable, user_ns or {}):
            continue
        tested = {c for place in places for c, _, _ in place}
        if len(tested) != 1:  # several choices together: left to the trials (and the diagnosis)
            continue
        [name] = tested
        param = next(p for p in program.params if p.name == name)
        unset = [v for v in param.args if not any(all((v in vs) == held for _, vs, held in place) for place in places)]
        if not unset:
            continue
        values = " or ".join(repr(v) for v in unset)
        out.append(
            f"{variable!r}{role} is set only under tests of {name!r} that leave out {name} = {values}: the trials "
            f"that draw {'it' if len(unset) == 1 else 'them'} will fail (MetricError); set {variable} in "
            f"{'that branch' if len(unset) == 1 else 'those branches'} too, or leave {values} out of {name}'s "
            f"choices (line {param.lineno})"
        )
    return out


def _scored_on_fit_data(program: CellProgram) -> list[str]:
    """The metric scored on the data the cell fits the model on: the search would pick the
    configuration that fits its training data best, the most overfit (said nowhere: found trying
    nbtune as a new user). Not for a metric named as a training score (``train_acc``)."""
    if program.spec.tree is None or "train" in words(program.metric):
        return []
    found = scored_on_fit_data(program.spec.tree, program.metric)
    if found is None:
        return []
    line, fit, data = found
    return [
        f"line {line} of the %%tune cell: {program.metric} is scored on {', '.join(data)}, the data line {fit} fits "
        "the model on: the search would favour the configurations that fit their training data best (the most "
        f"overfit); score {program.metric} on data the model does not train on (a validation split), and keep the "
        "training score with --record if you want it"
    ]


def _cap_beside_early_stopping(program: CellProgram) -> list[str]:
    """A tuned number of rounds (``n_estimators``) in a cell whose library stops early: where early
    stopping ends a trial before the cap, the tuned value changes nothing, and it blurs the
    importances (said nowhere but the README: found trying nbtune as a new user)."""
    if program.spec.tree is None:
        return []
    found = cap_beside_early_stopping(program.spec.tree, {p.name for p in program.params}, program.globals)
    if found is None:
        return []
    name, line, stop = found
    return [
        f"line {line} of the %%tune cell: {name} caps the rounds, and early stopping (line {stop}) ends training "
        f"before the cap wherever it stops first: there the tuned {name} changes nothing (and blurs the "
        f"importances); fix {name} high and let early stopping choose the rounds, or tune it without early stopping"
    ]


def _state_note(program: CellProgram) -> list[str]:
    """What a trial that goes on from its checkpoint builds afresh, said before the search: the
    variables made from a state variable before the epochs loop that are not state themselves; and
    a data loader marked as state, which every checkpoint would write with its whole dataset."""
    epochs = program.spec.epochs
    if not program.state or epochs is None or program.spec.tree is None:
        return []
    tree = program.spec.tree
    out = [
        f"line {line}: {name!r} is a data loader marked as state: every epoch's checkpoint would write it with its "
        "whole dataset; mark the model and its optimizer instead (the loader is made again before the loop, and "
        "nbtune keeps its shuffling generator going)"
        for name in program.state
        if (line := _makes_a_data_loader(tree, name)) is not None
    ]
    # (a loader built on a generator marked as state is no state to mark: the note above says why)
    built = [
        b
        for b in built_from_state(tree, list(program.state), epochs.lineno)
        if _makes_a_data_loader(tree, b[0]) is None
    ]
    if not built:
        return out
    names = " and ".join(f"{name} (line {line})" for name, line, _ in built)
    origins = ", ".join(sorted({repr(origin) for _, _, origin in built}))
    return [
        *out,
        f"{names} {'is' if len(built) == 1 else 'are'} built before the epochs loop from the state {origins} and "
        f"{'is' if len(built) == 1 else 'are'} not state: a trial that goes on from its checkpoint (promoted, resumed "
        "after a cut, PBT) builds them afresh on the loaded state; if they keep state of their own (an optimizer's "
        "momentum, a scheduler's step count), mark them as state too "
        f"(--state {','.join([*program.state, *(n for n, _, _ in built)])})",
    ]


def _makes_a_data_loader(tree: ast.Module, name: str) -> int | None:
    """The line of the cell's ``name = DataLoader(...)`` (or ``torch.utils.data.DataLoader(...)``), or None
    (a loader marked as state was accepted silently, and its checkpoints held the dataset: found
    trying nbtune as a new PyTorch user)."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
            and isinstance(node.value, ast.Call)
            and called_name(node.value) == "DataLoader"
        ):
            return node.lineno
    return None


def pbt_note(spec: SchedulerSpec, program: CellProgram) -> str | None:
    """What PBT cannot change, said before the search: tuned variables the epochs loop never reads."""
    fixed = [p for p in program.params if p.name not in spec.perturb]
    if not fixed or spec.kind != "pbt":
        return None
    names = ", ".join(f"{p.name} (line {p.lineno})" for p in fixed)
    state = ", ".join(program.state)
    if not spec.perturb:
        return (
            f"PBT: none of the tuned variables ({names}) takes effect once a member goes on from a checkpoint: the "
            f"epochs loop does not read them, and they build only the state ({state}), which the checkpoint "
            "replaces; so explore cannot change them and members only copy better members' state. Read them "
            "inside the loop (e.g. set 'for g in opt.param_groups: g[\"lr\"] = lr' each epoch) for PBT to adapt them"
        )
    return (
        f"PBT changes {', '.join(spec.perturb)} between epochs; {names} "
        f"{'builds' if len(fixed) == 1 else 'build'} only the state ({state}) before the epochs loop, so each "
        "member keeps its own (copied with the state when it exploits another)"
    )


def _tuned_loop_length(program: CellProgram) -> tuple[list[str], int, int] | None:
    """The tuned variables the epochs loop's length reads (``for _ in range(n_epochs // 3):`` with
    ``n_epochs`` tuned), and the shortest and longest it runs over their ends and defaults; None
    when it reads none, or the lengths cannot be read."""
    epochs, tree = program.spec.epochs, program.spec.tree
    loop = epochs_loop(tree, epochs.lineno) if epochs is not None and tree is not None else None
    if loop is None or tree is None:
        return None
    import optuna.distributions as d

    values: dict[str, list[Any]] = {}
    for p in program.params:
        dist = p.distribution()
        if isinstance(dist, d.CategoricalDistribution):
            values[p.name] = list(p.args)
        elif isinstance(dist, (d.IntDistribution, d.FloatDistribution)):
            values[p.name] = [dist.low, dist.high, p.default]
    read = [n.id for n in ast.walk(loop.iter) if isinstance(n, ast.Name) and n.id in values]
    span = lengths_over(loop, tree, program.globals, values)
    return None if span is None or not read else (list(dict.fromkeys(read)), *span)


def _tuned_length_words(names: list[str], shortest: int, longest: int) -> str:
    return (
        f"the epochs loop's length is set by the tuned {', '.join(repr(n) for n in names)} "
        f"({shortest} to {longest} epochs)"
    )


def _epochs_resource(cfg: TuneConfig, program: CellProgram, kind: BaseScheduler) -> int | None:
    """R, the epochs of a full trial: the loop's length or --max-epochs (checked against each other)."""
    epochs = program.spec.epochs
    if kind.needs_epochs and epochs is None:
        raise ConfigError(
            f"--scheduler {kind.name} needs an epochs loop "
            + (
                "(its members train side by side and trade state between epochs)"
                if kind.pauses
                else "to stop trials early"
            )
            + ": mark the training "
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
        tuned = _tuned_loop_length(program)
        if tuned is not None:  # (found trying nbtune as a new user: the generic 'e.g. --max-epochs 20')
            names, shortest, longest = tuned
            raise ConfigError(
                f"line {epochs.lineno} of the %%tune cell: {_tuned_length_words(names, shortest, longest)}, but "
                f"--scheduler {kind.name} decides how long each trial trains; fix the loop at its longest "
                f"({longest}) and drop the annotation of {names[0]!r}, or tune the length itself with --scheduler none "
                f"(every trial then trains as long as it says), or pass --max-epochs {longest} (its longest)"
            )
        raise ConfigError(
            f"line {epochs.lineno} of the %%tune cell: the length of the epochs loop cannot be known before it "
            f"runs ({epochs.why}); pass --max-epochs R (the epochs of a full trial, e.g. --max-epochs 20)"
        )
    return R


def _tuned_length_note(program: CellProgram, scheduler: SchedulerSpec) -> list[str]:
    """Said before the search when the epochs loop's length is tuned (and --max-epochs given) under
    successive halving: a trial that ends before the others is ranked as complete against configurations
    trained longer, at rungs it never reached (found trying nbtune as a new user: nothing was said)."""
    tuned = _tuned_loop_length(program) if scheduler.scheduler.rungs else None
    if tuned is None:
        return []
    names, shortest, longest = tuned
    return [
        f"{_tuned_length_words(names, shortest, longest)}: a trial whose loop ends early is complete, and ranked "
        f"against configurations trained for up to {scheduler.R} epochs, at rungs it never reached; to compare "
        f"configurations at equal epochs, fix the loop at {longest} and let the scheduler decide how long each "
        "trains (or --scheduler none to tune the length itself)"
    ]


_TOLD: set[str] = set()  # the notes this kernel says once, whatever the study ("seed-jobs")
_TOLD_NO_NOTEBOOK: set[tuple[str, str]] = set()  # (store, study) this kernel said it cannot tell notebooks apart for


def _choose_version(
    store: BaseStore,
    base: str,
    fp: dict[str, Any],
    identity: dict[str, Any],
    cfg: TuneConfig,
    messages: list[str],
    legacy: Callable[[str], str | None] | None = None,
) -> tuple[str, list[str]]:
    """The study name to use: the latest version made by this very cell (same space, code,
    notebook and data), or a new version that says what changed; and, for a study ``--resume``
    continues over a change, what changed (its trials so far ran other code, or on other data).
    ``legacy``: the notebook's data fingerprinted as before 2026-12-01, for studies recorded then."""
    import optuna

    def describe(recorded: dict[str, Any] | None) -> list[str]:
        return describe_difference(recorded, identity, legacy)

    versions = store.versions(base)
    if not versions:
        return versioned(base, 1), []
    storage = store.storage(base)
    attrs = {v: optuna.load_study(study_name=v, storage=storage).user_attrs for v in versions}
    same_space = [v for v in versions if attrs[v].get(ATTR.SPACE) in (None, fp)]
    same = [v for v in same_space if not describe(attrs[v].get(ATTR.IDENTITY))]
    latest = versions[-1]
    new = versioned(base, len(versions) + 1)
    if cfg.fresh:
        messages.append(f"--fresh: started {new!r}; earlier versions are kept in {store.location(base)}")
        return new, []
    if same:
        if same[-1] != latest:
            messages.append(
                f"this cell (its search space, code, notebook and data) is that of {same[-1]!r} again: resumed it"
            )
        from nbtune.view.widgets import in_kernel

        # (not with --name: that is what the note advises; it said so to cells that gave one: found trying nbtune)
        if (
            not identity.get("notebook")
            and cfg.name is None
            and in_kernel()
            and (store.where(), same[-1]) not in _TOLD_NO_NOTEBOOK
        ):
            # (found trying nbtune as a new user with papermill; said once per study and kernel)
            _TOLD_NO_NOTEBOOK.add((store.where(), same[-1]))
            messages.append(
                f"continued {same[-1]!r}: this kernel does not say which notebook it runs (one that nbconvert or "
                "papermill started), so the study is told apart by its cell alone, and another notebook in this "
                "folder with the same cell continues it too; give --name to keep two notebooks apart"
            )
        return same[-1], []

    def apart(v: str) -> tuple[bool, int]:
        differences = describe(attrs[v].get(ATTR.IDENTITY))
        return any(d.startswith("the notebook data") for d in differences), len(differences)

    # what --resume continues: the version closest to this cell, on the same data if one is (it continued
    # the latest, made on other data, where the one before it was this data's; found trying nbtune as a
    # new user), then with the fewest changes, the latest among equals
    resumes = min(reversed(same_space), key=apart) if same_space else None
    if resumes is not None and cfg.resume:
        target = resumes
        differences = describe(attrs[target].get(ATTR.IDENTITY))
        messages.append(f"--resume: continued {target!r} although {'; '.join(differences)}")
        return target, differences
    if not same_space:  # (when some version has this space, the change is said against the closest of them)
        also = _another_cell_hint(describe(attrs[latest].get(ATTR.IDENTITY)), cfg)  # the code, notebook, data
        messages.append(
            f"the {_what_changed(attrs[latest][ATTR.SPACE] or {}, fp)} changed since {latest!r} "
            f"({describe_space_change(attrs[latest][ATTR.SPACE] or {}, fp)}{'; ' + '; '.join(also) if also else ''}): "
            f"started {new!r}; the old study is kept"
            + (
                " (--resume continues a study over an edit of its code, notebook or data, never over another "
                "search space: its trials were drawn from other ranges)"
                if cfg.resume
                else ""
            )
        )
    else:
        # against the version this cell is closest to (the code of v1 again, other data: "the data
        # changed since v1", not "the code changed" since v2); the latest among equals
        closest = min(reversed(same_space), key=lambda v: len(describe(attrs[v].get(ATTR.IDENTITY))))
        differences = _another_cell_hint(describe(attrs[closest].get(ATTR.IDENTITY)), cfg)
        messages.append(
            f"{'; '.join(differences)} since {closest!r} ran: started {new!r}, so its results are not "
            f"mixed with this cell's; the old study is kept (--resume continues "
            f"{'it' if closest == resumes else repr(resumes)} instead)"
        )
    return new, []


def _another_cell_hint(differences: list[str], cfg: TuneConfig) -> list[str]:
    """The default name is the metric's and the tuned names': another cell can share it, and a cell's
    code that changed may be another cell's (a LogisticRegression cell and an SVC cell that both tune
    C for val_acc; said where the space stayed the same, and since a new user found it missing, where
    the space changed too)."""
    if cfg.name is None and "the cell's code changed" in differences:
        at = differences.index("the cell's code changed")
        differences = list(differences)
        differences[at] += (
            " (an edit, or another cell that tunes the same names for the same metric: --name tells them apart)"
        )
    return differences


def _resumed_identity(
    stored: dict[str, Any] | None, identity: dict[str, Any], legacy: Callable[[str], str | None] | None = None
) -> dict[str, Any]:
    """What a resumed study records: this run's identity; but when the study is the same by
    :func:`describe_difference` (not ``--resume`` over a change), the data fingerprints it had, and
    what its trials left when they changed notebook data in place, stay: a kernel restarted with
    the data made afresh is still the same study. A fingerprint made before 2026-12-01 (``legacy``
    says the data is the same) is replaced by this run's, so that the next comparisons need no old one."""
    if not stored or describe_difference(stored, identity, legacy):
        return identity
    now = identity["data"]
    old = {
        n
        for n, h in stored.get("data", {}).items()
        if n in now and now[n].startswith((PICKLED, JOBLIB)) and made_by_joblib(h)
    }
    kept = {n: h for n, h in stored.get("data", {}).items() if n in now and n not in old}
    out = {**identity, "data": {**identity["data"], **kept}}
    if not identity.get("notebook") and stored.get("notebook"):
        # a kernel that does not know its notebook (nbconvert, papermill) continued it: the notebook
        # that made it stays, so another notebook is still told apart (it shared the study after one
        # headless run: found trying nbtune as a new user)
        out["notebook"] = stored["notebook"]
    in_place = {n: h for n, h in stored.get("in_place", {}).items() if n not in old}
    if in_place:
        out["in_place"] = in_place
    return out


def _open_study(
    store: BaseStore,
    target: str,
    program: CellProgram,
    sampler: SamplerKind,
    spec: SchedulerSpec,
    identity: dict[str, Any],
    cell: dict[str, Any],
    fresh: bool = False,
    legacy: Callable[[str], str | None] | None = None,
) -> optuna.Study:
    """Create or load the study; a new one records its space, identity, settings (``fresh``: made by
    --fresh) and cell and queues the baseline; a resumed one records the identity and cell it now
    continues with."""
    import optuna

    if target in store.versions(target):
        study = optuna.load_study(study_name=target, storage=store.storage(target))
        if ATTR.SPACE in study.user_attrs:
            recorded = _resumed_identity(study.user_attrs.get(ATTR.IDENTITY), identity, legacy)
            if study.user_attrs.get(ATTR.IDENTITY) != recorded:  # --resume, or a study of an older nbtune
                study.set_user_attr(ATTR.IDENTITY, recorded)
            if study.user_attrs.get(ATTR.CELL) != cell:
                study.set_user_attr(ATTR.CELL, cell)
            return study  # nothing else to write: a read-only store can show a finished study
    with store.lock(target):
        study = optuna.create_study(
            study_name=target,
            storage=store.storage(target),
            load_if_exists=True,
            direction=optuna.study.StudyDirection[program.direction.upper()],
        )
        if ATTR.SPACE not in study.user_attrs:
            settings = {
                "metric": program.metric,
                "direction": program.direction,
                "scheduler": spec.kind,
                "R": spec.R,
                "r": spec.r,
                "eta": spec.eta,
                "unit": spec.unit,  # "epoch", or "fold": a trial's steps are then no learning curve
                "sampler": sampler.name,
            }
            if fresh:  # what made this version, when nothing else changed (nbtune.studies() says so)
                settings["fresh"] = True
            _compat.set_study_user_attrs(
                study,
                {
                    ATTR.SPACE: _fingerprint(program, spec),
                    ATTR.IDENTITY: identity,
                    ATTR.CELL: cell,
                    ATTR.CONFIG: settings,
                },
            )
            # A sampler that enumerates a grid visits the defaults itself when they lie on the
            # grid; an enqueued extra trial would not count as a grid point.
            if not sampler.enumerates:
                baseline = {p.name: p.encoded(program.spec.defaults[p.name]) for p in program.params}
                study.enqueue_trial(baseline, user_attrs={ATTR.BASELINE: True})
    return study


def _recover(
    study: optuna.Study, store: BaseStore, liveness: BaseLiveness, sampler: SamplerKind, messages: list[str]
) -> None:
    """Trials left RUNNING by a dead kernel or worker fail (interrupted) and run again first."""
    reaped = reap_dead_trials(study, liveness)
    if reaped:
        messages.append(
            f"marked {len(reaped)} trial(s) left running by a stopped kernel (or by one that runs the store this one "
            "was copied from) as failed "
            f"(interrupted; their configurations run again): {reaped}"
        )
    if not sampler.enumerates:
        requeued = requeue_interrupted(study, store)
        if requeued:
            messages.append(f"re-running the configurations of interrupted trial(s) {requeued} first")


def _store_moved_with_the_folder(cfg: TuneConfig) -> str | None:
    """A note when the default store follows a working folder the notebook changed: in a kernel
    that does not know its notebook (nbconvert, papermill, plain IPython) the store is ``.nbtune``
    in the working folder, so an ``os.chdir("data")`` in an earlier cell put the study in
    ``data/.nbtune`` silently, where a run in JupyterLab would not find it (found trying nbtune
    as a new user)."""
    from nbtune.store.journal import STORE_DIRNAME, loaded_in
    from nbtune.view.widgets import in_kernel

    start = loaded_in()
    if cfg.store is not None or os.environ.get("NBTUNE_STORE") or start is None or not in_kernel():
        return None
    if notebook_path(cfg.user_ns) is not None or os.path.realpath(os.getcwd()) == os.path.realpath(start):
        return None
    return (
        f"the store is {os.path.join(os.getcwd(), STORE_DIRNAME)}, in the working folder, which the notebook changed "
        f"since nbtune was loaded in {start}: this kernel does not say which notebook it runs, so the store follows "
        "the working folder; pass --store to keep the studies in one place"
    )


def _plan(cell: str, cfg: TuneConfig, outer_fold: int | None = None) -> _Plan:
    """Everything before the first trial; every error here is raised before any trial runs.

    ``outer_fold``: nested CV's outer fold this search is for (its own study, ``NAME.outerI``).
    """
    cfg.check()
    n_jobs = effective_jobs(cfg.n_jobs)
    backend = resolve_backend(cfg.backend, n_jobs)
    program, sampler, spec = _compile(cell, cfg)
    if backend.processes:
        check_sendable(program, cell, cfg.line_offset)

    store = open_store(cfg.store, cfg.user_ns, cfg.artifacts)
    _check_lease_options(cfg, store)
    base = cfg.name or store.namespace(cfg.user_ns) + _default_name(cfg.metric, cfg.direction, program)
    if outer_fold is not None:
        base = outer_fold_study(base, outer_fold)
    messages = store.check(base)  # a damaged tail is set aside before anything is appended
    moved = _store_moved_with_the_folder(cfg)
    if moved:
        messages.append(moved)
    identity = cell_identity(program.spec, program.globals, cfg.user_ns, program.sealed())
    legacy = legacy_fingerprints(program.globals)  # for studies recorded before 2026-12-01
    # over_change: --resume continues a study whose trials so far ran other code
    target, over_change = _choose_version(store, base, _fingerprint(program, spec), identity, cfg, messages, legacy)
    # The cell as written, to re-run it after the search (re-validation, %tune_validate).
    cell_record = {
        "source": cell,
        "line_offset": cfg.line_offset,
        "holdout": cfg.holdout,
        "gap": cfg.gap,
        "subject_to": list(cfg.subject_to or []),
        "record": list(cfg.record or []),
        "state": list(cfg.state or []),
    }
    # a journal lock that a killed kernel or worker left held: the first write would wait out
    # Optuna's 30 s grace, with its raw "taking longer than 10.0 seconds" lines (found trying nbtune)
    store.release_dead_writers_locks(target, older_than=10.0)
    study = _open_study(store, target, program, sampler, spec, identity, cell_record, fresh=cfg.fresh, legacy=legacy)
    if cfg.note is not None and study.user_attrs.get(ATTR.NOTE) != cfg.note:  # (a tracker's notes: found trying nbtune)
        study.set_user_attr(ATTR.NOTE, cfg.note)
    if over_change:  # the identity recorded is this cell's from now on: what its trials ran on is kept here
        first = sum(1 for t in study.get_trials(deepcopy=False) if t.state.name != "WAITING")
        earlier = study.user_attrs.get(ATTR.RESUMED_OVER) or []
        study.set_user_attr(ATTR.RESUMED_OVER, [*earlier, {"first_trial": first, "changes": over_change}])
    ran_with = (study.user_attrs.get(ATTR.CONFIG) or {}).get("sampler")
    # what only matters to trials that will run (not said by a re-run with nothing to run)
    for_trials: list[str] = []
    if ran_with is not None and ran_with != sampler.name:  # the sampler does not make a new version: say so
        messages.append(
            f"{target!r} ran with --sampler {ran_with}; this run's trials (if any) come from {sampler.name}, in the "
            "same study: to compare samplers, give each its own --name"
        )
        # the sampler it runs with now: a third run says what the second ran with (it named the first
        # for ever; found trying nbtune as an Optuna user)
        study.set_user_attr(ATTR.CONFIG, {**(study.user_attrs.get(ATTR.CONFIG) or {}), "sampler": sampler.name})
    if not backend.processes and n_jobs > 1:
        _warn_shared_seeding(program)
    unread = never_read(program.spec.tree, [p.name for p in program.params]) if program.spec.tree else []
    messages.extend(_direction_note(program.metric, program.direction, program.spec.tree, program.globals))
    choices = [p.name for p in program.params if p.kind == "choice"]
    if not sampler.models_choices and choices:  # Optuna draws them at random, and says nothing
        messages.append(
            f"--sampler {sampler.name} searches the numeric ranges only: {', '.join(map(repr, choices))} "
            f"({'a choice' if len(choices) == 1 else 'choices'}) {'is' if len(choices) == 1 else 'are'} drawn at "
            "random in every trial; the default (TPE) models choices too"
        )
    messages.extend(
        f"line {lineno}: '{code}' changes the notebook's {name!r} in place, and only in some trials: every trial gets "
        "that same object (each worker process its own copy under --jobs 2), so the trials after one that ran it "
        f"keep what it set, whatever their own values say; start each trial from a copy made in the cell first "
        f"({_copy_advice([name], cfg.user_ns or {})}) and change that"
        for lineno, name, code in (
            changed_in_some_trials(program.spec.tree, set(program.globals)) if program.spec.tree is not None else []
        )
    )
    arrays = {n for n, v in program.globals.items() if _is_array(v)}
    messages.extend(
        f"line {lineno}: '{code}' changes the notebook's {name!r} in place, in every trial: each trial starts from "
        "what the trials before it left (each worker process from its own copy), so a trial's score depends on the "
        f"trials that ran before it and the notebook's {name!r} ends as the last one left it; make the trial's own "
        f"in the cell ({_copy_advice([name], cfg.user_ns or {})} before it changes, or build it in the cell)"
        for lineno, name, code in (
            changes_notebook_arrays(program.spec.tree, arrays) if program.spec.tree is not None and arrays else []
        )
    )
    messages.extend(
        f"line {lineno}: {name}(...) shuffles without random_state, so every trial splits the data anew and "
        "trials are compared on different validation data (noise in their ranking); pass random_state=0 (or the "
        "'# tune: seed' variable), or split once outside the cell"
        for lineno, name in (_unseeded_splits(program.spec.tree) if program.spec.tree is not None else [])
    )
    messages.extend(
        f"line {lineno}: {name}(...) shuffles the rows of {var!r}, which is indexed by date: each model trains on "
        "days after the ones it is scored on, a look into the future that a forecast never has (its score is "
        "better than it will be); split by time instead (shuffle=False, TimeSeriesSplit, or folds of consecutive "
        "dates)"
        for lineno, name, var in (
            _shuffled_time_series(program.spec.tree, program.globals) if program.spec.tree is not None else []
        )
    )
    seed_hint = "the '# tune: seed' variable" if program.spec.seed is not None else "a fixed seed"
    seed_code = program.spec.seed.name if program.spec.seed is not None else "0"
    messages.extend(
        f"line {lineno}: {call}(...) draws from "
        + {"numpy": "NumPy's", "random": "Python's", "torch": "PyTorch's"}[library]
        + " global random generator"
        + (" (its initial weights)" if weights else "")
        + ", which the cell never seeds: the same configuration scores differently from trial to trial (noise in "
        "their ranking; --seed repeats the configurations, not their scores); call "
        + _SEED_CALL[library].format(seed_code)
        + (f" first ({seed_hint})" if program.spec.seed is not None else " first")
        + (f", or draw from rng = np.random.default_rng({seed_code}) made in the cell" if library == "numpy" else "")
        for lineno, call, library, weights in (
            _unseeded_global_draws(program.spec.tree, program.globals) if program.spec.tree is not None else []
        )
    )
    messages.extend(
        f"line {lineno}: {call}() is given no seed, so it starts from fresh entropy in every trial: the same "
        "configuration scores differently from trial to trial (noise in their ranking; --seed repeats the "
        f"configurations, not their scores); give it {seed_hint}: {call}({seed_code})"
        for lineno, call in (
            _generators_made_unseeded(program.spec.tree, program.globals) if program.spec.tree is not None else []
        )
    )
    messages.extend(
        f"line {lineno}: {name}(...) draws at random and is given no random_state, so the same configuration scores "
        "differently from trial to trial (noise in their ranking; --seed repeats the configurations, not their "
        + (
            f"scores); pass random_state={program.spec.seed.name} (the '# tune: seed' variable)"
            if program.spec.seed is not None
            else "scores); pass random_state=0"
        )
        for lineno, name in (
            _unseeded_estimators(program.spec.tree, program.globals) if program.spec.tree is not None else []
        )
    )
    messages.extend(
        ("the cell draws" if function is None else f"the notebook function {function!r} the cell calls draws")
        + f" from the notebook's random generator {name!r} (a {kind}"
        + ("" if arg is None else f", its default argument {arg!r}")
        + "): each trial starts where the trials "
        "before it left it (each worker process from its own copy), so what a trial draws depends on the order "
        f"trials ran, and a new seed for it is no new version of the study; make one in the cell from {seed_hint} "
        + (
            f"({name} = {_make_generator(kind, seed_code)})"
            + ("" if function is None else f", which {function} then reads")
            if arg is None
            else f"and pass it: {function}(..., {arg}={_make_generator(kind, seed_code)})"
        )
        for name, kind, function, arg in (
            _notebook_generators(program.globals, program.spec.tree, cfg.user_ns) if program.spec.tree else []
        )
    )
    messages.extend(
        f"the cell reads {name!r}, a {type(program.globals[name]).__name__} that shuffles without random_state, so "
        "every trial splits the data anew and trials are compared on different validation data; make it with "
        "random_state=0"
        for name in _unseeded_splitters(program.globals)
    )
    messages.extend(
        f"line {lineno}: {p.name!r} is compared with {value!r}, which is not one of its choices {list(p.args)!r}: "
        "in the search that test never holds (or always does); add it to the choices if it should be searched"
        + (
            f" (it is one letter from {near!r}: if that is a typo, the trials that draw {near!r} run another branch "
            "than the one written for it)"
            if near is not None
            else ""
        )
        for lineno, p, value, _, near in compared_outside_choices(program.spec)
    )
    if cfg.holdout is not None and program.spec.tree is not None:  # shown as the search starts
        leaks = holdout_leaks(program.spec.tree, cfg.holdout, cfg.user_ns or {}, program.sealed())
        messages.extend(leaks)
        if (study.user_attrs.get(ATTR.HOLDOUT_LEAKS) or []) != leaks:  # (a finished study writes nothing)
            study.set_user_attr(ATTR.HOLDOUT_LEAKS, leaks)
    for holder, function, read in program.unreachable:
        messages.append(
            f"{function} (reached through {holder!r}: a decorator, a default argument, a dict, a partial or a method) reads "
            f"{', '.join(repr(n) for n in read)} as a global, which the cell sets: a trial cannot give it its own, so "
            "it reads the notebook's; pass the value as an argument"
        )
    for_trials.extend(_tuned_length_note(program, spec))
    unmarked = _unmarked_epochs_loop(program)
    if unmarked is not None:
        for_trials.append(
            f"line {unmarked}: {program.metric!r} is set in this loop, which is not marked '# tune: epochs', so every "
            "trial runs to its end; mark it ('for epoch in range(EPOCHS):  # tune: epochs') for successive halving "
            "to stop poor trials early"
        )
    timed = [
        n for n in dict.fromkeys([c[0] for c in program.constraints] + list(program.records)) if words(n) & TIME_WORDS
    ]
    if timed and n_jobs > 1:  # (found trying nbtune as a new user: the same model's latency 194 and 433 µs)
        for_trials.append(
            f"{', '.join(map(repr, timed))} {'reads' if len(timed) == 1 else 'read'} like a time measured in the cell, "
            f"and {n_jobs} trials run side by side "
            "on this machine's cores: what one measures varies with what runs beside it; measure it as the best of "
            "several repeats (min(timeit.repeat(...))), or run with --jobs 1"
        )
    if cfg.seed is not None and n_jobs > 1 and not sampler.enumerates and "seed-jobs" not in _TOLD:
        _TOLD.add("seed-jobs")  # (the README said so, the run did not; once a kernel: a tutorial said it six times)
        for_trials.append(
            f"--seed {cfg.seed} with {n_jobs} jobs: what the sampler has seen when it draws depends on which trials "
            "finish first, so the search does not repeat exactly; --jobs 1 repeats it"
        )
    seed = program.spec.seed
    if seed is not None and _unread(program, seed.name):
        messages.append(
            f"line {seed.lineno}: the seed {seed.name!r} is never read, so the cell's randomness does not follow "
            f"it; seed your code with it (random_state={seed.name}, torch.manual_seed({seed.name})) or drop its "
            "'# tune: seed' comment"
        )
    lines = {p.name: p.lineno for p in program.params}
    for name, early in program.read_above:  # (read only above: an error, from compile_cell)
        messages.append(
            f"line {', '.join(map(str, early))} reads {name!r} above its '# tune:' line {lines[name]}, where "
            "it is still the notebook's value, not the trial's; move the '# tune:' assignment above it"
        )
    for param in [p for p in program.params if p.name in unread and p.name not in program.read_by_functions]:
        messages.append(
            f"line {param.lineno}: {param.name!r} is tuned but the cell never reads it, so each trial draws a value "
            "that changes nothing (and that blurs the importances); use it, or drop its '# tune:' comment"
        )
    best = (
        running_best(program.spec.tree, program.spec.epochs.lineno, program.metric, list(program.state))
        if program.state and program.spec.epochs is not None and program.spec.tree is not None
        else None
    )
    if best is not None:
        messages.append(
            f"line {best[1]}: {program.metric!r} is the best epoch's score so far ({best[0]}), but the state kept "
            "is the last epoch's: res.best_state() and --apply give the model after the last epoch, which may score "
            f"less; set {program.metric!r} to the epoch's own score (successive halving compares epochs as they "
            "are), or keep the best epoch's model as state too (best_model = copy.deepcopy(model) under the same "
            "'if', with --state best_model)"
        )
    weak = weakly_known(identity)
    if weak:
        messages.append(
            f"{', '.join(weak)} cannot be hashed, so a change to {'it' if len(weak) == 1 else 'them'} "
            "would not start a new version of the study"
        )
    # owners renew leases in a database store (any machine); with a journal, they are this machine's processes
    liveness = liveness_of(store, cfg.heartbeat, cfg.lease_grace)
    _recover(study, store, liveness, sampler, messages)
    messages[:0] = store.repairs
    note = pbt_note(spec, program)
    if note:
        for_trials.append(note)
    for_trials.extend(_state_note(program))
    for_trials.extend(_tuned_work_per_epoch(program, spec))
    for_trials.extend(_cap_beside_early_stopping(program))
    for_trials.extend(_scored_on_fit_data(program))
    for_trials.extend(_metric_unset_for_some_choices(program, cfg.user_ns))

    trials = study.get_trials(deepcopy=False)
    done = finished_count(trials)
    n_trials = spec.population if spec.scheduler.pauses else cfg.trials  # PBT: one trial per member
    if spec.scheduler.pauses and cfg.n_trials is not None and cfg.n_trials != spec.population:
        messages.append(
            f"-n {cfg.n_trials} is not used with --scheduler pbt: the population is the configurations "
            f"(--population {spec.population})"
        )
    if sampler.enumerates:
        size = grid_size(program.params)
        if n_trials > size:
            messages.append(f"the grid has {size} points, so the search stops after {size} trials")
            n_trials = size
    job = None
    # PBT: a run cut by --timeout or Stop leaves members paused at an interval, each counted as one
    # finished configuration; the population is done only when none is left paused
    waiting = still_paused(trials, study.user_attrs.get(ATTR.PAUSES_ENDED)) if spec.scheduler.pauses else set()
    seconds = cfg.seconds
    searched = searched_seconds(trials) if seconds is not None else 0.0
    timed_out = seconds is not None and (
        searched >= seconds or study.user_attrs.get(ATTR.TIMEOUT_REACHED, -1.0) >= seconds
    )
    # a cut continuation queued again runs whatever -n: its configuration counts already
    if (done < n_trials or waiting or queued_continuations(trials)) and not timed_out:
        if done and waiting and done >= n_trials:
            messages.append(
                f"resumed {target!r}: the {plural(len(waiting), 'member')} paused when the last run stopped go on"
            )
        elif done:
            messages.append(f"resumed {target!r} with {plural(done, 'finished trial')}")
        settings = study.user_attrs.get(ATTR.CONFIG)
        if settings is not None and settings.get("r") != spec.r:  # -n moved the first rung: show this run's
            study.set_user_attr(ATTR.CONFIG, {**settings, "r": spec.r})
        # Trial numbers of this run start after every trial that was not merely queued.
        n_before = sum(1 for t in trials if t.state.name != "WAITING")
        if seconds is not None and searched > 0:
            messages.append(
                f"the study has searched {duration(searched)} of its --timeout {duration(seconds)}: "
                f"{duration(seconds - searched)} to go"
            )
        messages.extend(for_trials)
        # the trials from which on the study ran this cell's code: --resume over an edit starts them anew
        code_since = n_before if over_change else int(study.user_attrs.get(ATTR.CODE_SINCE, 0))
        if over_change:
            study.set_user_attr(ATTR.CODE_SINCE, code_since)
        job = Job(
            program=program,
            store=store,
            study_name=target,
            control=store.control(target, n_trials),
            sampler=sampler.name,
            seed=cfg.seed,
            scheduler=spec,
            liveness=liveness,
            deadline=(time.time() + seconds - searched) if seconds is not None else None,
            trial_timeout=cfg.trial_seconds,
            run_start=n_before,
            seed_offset=n_before,
            vary_seed=cfg.vary_seed,
            outer_fold=outer_fold,
            keep_checkpoints=cfg.keep_checkpoints,
            code_since=code_since,
            data_before=identity["data"],
            module_settings=settings_set_from_outside() if backend.processes else {},
            module_code=identity.get("imports", {}) if backend.processes else {},
        )
    elif timed_out:
        messages.append(
            f"{target!r} has searched {duration(max(searched, seconds or 0))}, its --timeout "
            f"{duration(seconds or 0)}, with {plural(done, 'finished trial')}: nothing to run; raise --timeout to continue the "
            "search"
        )
    elif spec.scheduler.pauses:  # PBT: -n is not its budget (it said to raise it, beside "-n is not used")
        messages.append(
            f"{target!r} has run its population of {spec.population} to the end: nothing to run; --fresh starts "
            "another population (a larger --population or --max-epochs is a new version of the study)"
        )
    else:
        messages.append(
            f"{target!r} already has {plural(done, 'finished trial')} (target {n_trials}): nothing to run; "
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
        liveness=liveness,
        outer_fold=outer_fold,
        identity=identity,
        resumed_over=over_change,
    )


_GLOBAL_SEEDERS = {"manual_seed", "seed", "set_seed", "manual_seed_all"}
_RNG_MODULES = {"torch", "random", "np", "numpy", "tf", "tensorflow", "cuda", "keras", "utils"}


def _warn_shared_seeding(program: CellProgram) -> None:
    """Threads share a process's global random generators: a cell that seeds them gives every
    running trial the same stream, whichever seeded last. Say so, with the line and the fix."""
    import ast

    tree = ast.parse(program.source)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        if node.func.attr in _GLOBAL_SEEDERS and owner_name in _RNG_MODULES:
            line = node.lineno + program.line_offset
            warnings.warn(
                f"line {line} of the %%tune cell: {ast.unparse(node.func)}() seeds a generator that all threads "
                "share, so with --backend threading and several jobs the trials draw from one stream and are not "
                "reproducible; use processes (the default for --jobs > 1) or per-trial generators "
                "(np.random.default_rng(seed), torch.Generator().manual_seed(seed), random_state=seed)",
                NbtuneWarning,
                stacklevel=5,
            )
            return


# 2. start ---------------------------------------------------------------------------------
def _record_run(plan: _Plan) -> None:
    """This run, recorded with the study (``nbtune:run:<k>``; ``res.runs()`` reads them back)."""
    import datetime

    import optuna

    from nbtune.cell.identity import library_versions

    k = sum(1 for key in plan.study.user_attrs if key.startswith(ATTR.RUN + ":"))
    trials = plan.study.get_trials(deepcopy=False)
    waiting = [t.number for t in trials if t.state == optuna.trial.TrialState.WAITING]  # (the baseline, re-runs)
    record = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "first_trial": min(waiting, default=len(trials)),
        "target": plan.n_trials,
        "seed": plan.cfg.seed,
        "jobs": plan.n_jobs,
        "backend": plan.backend.name,
        "sampler": plan.sampler.name,
        "scheduler": plan.scheduler.describe(),
        "versions": library_versions(plan.program.globals, plan.program.spec.tree),
        "resumed_over": "; ".join(plan.resumed_over) or None,  # --resume over an edit or other data
    }
    plan.study.set_user_attr(f"{ATTR.RUN}:{k}", record)


def _start(plan: _Plan, factory: ViewFactory | None) -> tuple[Search | None, BaseView | None]:
    if plan.job is None:
        return None, None
    _record_run(plan)
    plan.backend.start()
    search = Search(plan.job, n_jobs=plan.n_jobs, backend=plan.backend)
    view = factory(plan.run_info(), search) if factory is not None else None
    search.start()
    return search, view


# 4. close ---------------------------------------------------------------------------------
_STOP_MESSAGES = {
    "interrupted": "interrupted: finished trials are kept; re-run the cell to resume",
    "timeout": "stopped at the --timeout (how long the study searches in all); raise it to search longer",
    "stop": "stopped by the user; re-run the cell to continue",
    "stop now": "stopped now by the user: the running trials were cut (not counted); re-run the cell to continue, "
    "cut trials first (from their last saved epoch with '# tune: state')",
}


def _result(plan: _Plan, extra: list[str], n_trials: int | None = None) -> TuneResult:
    from nbtune.view.result import TuneResult

    result = TuneResult(
        plan.study,
        plan.program.metric,
        n_trials=n_trials if n_trials is not None else plan.n_trials,
        store_path=plan.store.location(plan.study.study_name),
        messages=plan.messages + extra,
        scheduler=plan.scheduler.describe(),
        sampler=plan.sampler.name,
    )
    result._store = plan.store
    return result


def _pool_ended(e: BaseException) -> bool:
    """An error of the worker pool itself (broken while its processes started, or shut down by the
    forced stop): after Interrupt, the interrupt's doing."""
    return type(e).__module__.startswith(("joblib.", "concurrent.futures")) or (
        isinstance(e, RuntimeError) and "executor" in str(e).lower()
    )


def _unsent(error: BaseException) -> str:
    """Why the worker processes could not rebuild what the cell reads: their own error (loky's
    traceback from the worker, as the pool's cause) and what to do about it. It had said only the
    commonest cause, a C-level wrapper, where a module of the user's failed to import in the workers
    (found trying nbtune as a new user)."""
    lines = [line.strip() for line in str(error.__cause__ or "").splitlines() if line.strip().strip('"')]
    theirs = lines[-1] if lines else ""  # (loky quotes the worker's traceback in triple quotes)
    said = f" ({theirs})" if theirs else ""
    if theirs.startswith(("ModuleNotFoundError", "ImportError")):
        return (
            f"the worker processes could not import a module the cell's objects come from{said}: make it "
            "importable outside the notebook (a package installed with 'pip install -e .', or a module beside "
            "the notebook), or use --backend threading"
        )
    if theirs:
        return (
            f"the worker processes could not rebuild what the cell reads from the notebook{said}: a module that "
            "fails to import outside the notebook (one that calls get_ipython() when imported), or an object "
            "that pickles by a reference to the notebook (a function under functools.lru_cache or another C-level "
            "wrapper); make it importable in a plain Python process, define it in a module, or use --backend threading"
        )
    return (
        "the worker processes could not rebuild what the cell reads from the notebook: an object that "
        "pickles by a reference to the notebook (a function under functools.lru_cache or another "
        "C-level wrapper) cannot reach them; define it in a module the workers import, or use "
        "--backend threading"
    )


def _finish(plan: _Plan, search: Search | None, interrupted: bool) -> TuneResult:
    extra: list[str] = []
    why = ""
    n_trials = plan.n_trials
    if search is not None:
        why = search.control.why()
        # Interrupt reaches worker processes still unpickling the job: their pool breaks ("could not
        # un-serialize"), which read as an object the workers cannot rebuild (found trying nbtune as
        # a new user): Interrupt's doing, not the cell's
        if search.error is not None and not (
            interrupted
            and (
                isinstance(search.error, (KeyboardInterrupt, TrialInterrupted))
                or search.backend.is_worker_death(search.error)
                or _pool_ended(search.error)
            )
        ):
            if isinstance(search.error, TrialsFailedError) and search.error.result is None:
                # workers that kept dying: the search as it stopped, as after three failures
                deaths = list(search.worker_deaths)
                search.cleanup()
                raise TrialsFailedError(str(search.error), "", _result(plan, deaths, search.control.target())) from None
            search.cleanup()
            if type(search.error).__name__ == "BrokenProcessPool" and "un-serialize" in str(search.error):
                raise CellError(_unsent(search.error)) from None
            if isinstance(search.error, OSError) and not isinstance(search.error, NbtuneError):
                # a full disk, a store made read-only mid-search: one line, and the trials so far (found
                # trying nbtune as a new user: -o was left unbound, as the README said it would not be)
                said = _disk_error(search.error, plan.cfg.store)
                if said is not None:
                    search.error = said
            if isinstance(search.error, NbtuneError) and search.error.result is None:
                # the cluster, its scheduler or the database stopped the search: the trials it finished
                # are kept, and -o binds them as after an Interrupt (when the store can still be read)
                with contextlib.suppress(Exception):
                    search.error.result = _result(plan, list(search.worker_deaths), search.control.target())
            raise search.error
        if why == "timeout" and not interrupted and plan.cfg.seconds is not None:
            # done with this timeout, though the trials' spans may add up to a little less of it
            plan.study.set_user_attr(ATTR.TIMEOUT_REACHED, plan.cfg.seconds)
        message = _STOP_MESSAGES.get("interrupted" if interrupted else why)
        if message:
            extra.append(message)
        if interrupted and not search.done.is_set() and not search.backend.processes:
            still = _still_running(plan)
            if still:
                native_output.release()  # (what is printed next is the user's, not the running trial's)
            extra.extend(still)
        extra.extend(search.worker_deaths)
        n_trials = search.control.target()  # after + trials
        search.cleanup()
    if search is not None:
        extra.extend(_changed_in_place(plan))
        extra.extend(_loop_shorter_than_max_epochs(plan))
        extra.extend(_negative_error_minimized(plan))
        extra.extend(_best_at_the_edge(plan))
        extra.extend(_metric_did_not_move(plan))
        extra.extend(_rung_could_not_rank(plan))
        changed = versions_changed(run_records(plan.study.user_attrs))
        if changed:  # trials of both sets of versions in one study: a replay needs both (res.runs())
            extra.append(
                f"this run's library versions differ from the run before it's ({', '.join(changed)}): the study holds "
                "trials of both; res.runs() lists each run's versions"
            )
    result = _result(plan, extra, n_trials)
    result.interrupted = interrupted or why == "interrupted"
    if search is not None and why == "bug" and not interrupted:
        raise _bug_error(result, plan)
    if (
        search is not None
        and not result.interrupted
        and _nothing_but_failures(result, plan, refusals_count=plan.job is None or plan.job.refusals_stop)
    ):
        # fewer than 3 trials were left to run (a re-run of a study whose first ones failed)
        raise _bug_error(result, plan, every=True)
    return result


def _still_running(plan: _Plan) -> list[str]:
    """Trials in the kernel's threads that Interrupt could not cut within the wait: a call in compiled
    code (a model's fit) takes the forced stop only when it returns. The summary said "1 running" and the
    trial later read as failed, unexplained (found trying nbtune as a new user, with a 14 s SVC fit)."""
    from optuna.trial import TrialState

    run_start = plan.job.run_start if plan.job is not None else 0
    running = [
        t.number for t in plan.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number >= run_start
    ]
    if not running:
        return []
    which = (
        f"trial {running[0]} still runs" if len(running) == 1 else f"trials {', '.join(map(str, running))} still run"
    )
    return [
        f"{which} inside a call that Interrupt cannot cut (a model's fit, in compiled code): when it returns, it ends "
        "as cut (not counted), and runs again first when you re-run the cell"
    ]


def _nothing_but_failures(result: TuneResult, plan: _Plan, refusals_count: bool = True) -> bool:
    """Every trial this run finished failed, and none of the study ever completed (``refusals_count``
    False: failures at the cell's own raise or the time limit do not make it a bug, as in the checks)."""
    run_start = plan.job.run_start if plan.job is not None else 0
    trials = result.trials
    ran = [t for t in trials if t.number >= run_start and t.state.is_finished() and not is_interrupted(t)]
    if not refusals_count and all(refused(t) for t in ran):
        return False
    return (
        bool(ran) and all(t.state.name == "FAIL" for t in ran) and not any(t.state.name == "COMPLETE" for t in trials)
    )


# errors that cannot be negative: a value below 0 is a score negated so that higher is better
_NON_NEGATIVE_ERRORS = {"mse", "rmse", "mae", "mape", "smape", "msle", "rmsle", "logloss", "brier", "crossentropy"}


def _negative_error_minimized(plan: _Plan) -> list[str]:
    """Every complete trial's metric is below 0 where its name says an error that cannot be
    (``val_rmse``, ``val_log_loss``), and the search minimized it: the cell reports a score that
    scikit-learn negates (``make_scorer(..., greater_is_better=False)``, a search's ``best_score_``),
    and the best trial is the worst model. The cell's own code is read before the search
    (:func:`_direction_note`); this is what the values say after it."""
    metric = plan.program.metric
    said = words(metric)
    if (
        plan.program.direction != "minimize"
        or said & NEGATED
        or not (said & _NON_NEGATIVE_ERRORS or {"log", "loss"} <= said)
    ):
        return []
    values = [
        t.value for t in plan.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None
    ]
    if len(values) < 2 or not all(v < 0 for v in values):
        return []
    return [
        f"every complete trial's {metric!r} is below 0 ({max(values):.4g} at most), which such an error cannot be: the "
        "cell reports a score negated so that higher is better (scikit-learn's neg_ scorers, greater_is_better="
        f"False), and the search minimized it, so its best trial is the worst model; negate it in the cell "
        f"({metric} = -...) or run with --maximize {metric} (a new study)"
    ]


EDGE = 0.02  # the outer share of a range (on its own scale) where a best value is at its edge


def _best_at_the_edge(plan: _Plan) -> list[str]:
    """The best trial's value of a tuned number at an end of its range: better values may lie
    beyond it, the first thing an Optuna user checks after a search (it went unsaid: found trying
    nbtune as a new user, with a learning rate of 0.2955 in (0.01, 0.3)). Read from ten complete
    trials on, on the range's own scale (log for loguniform); a whole-number range of four values
    or fewer has edges that are as good as any."""
    import math

    from optuna.distributions import FloatDistribution, IntDistribution

    trials = plan.study.get_trials(deepcopy=False)
    complete = [
        t for t in trials if t.state.name == "COMPLETE" and t.value is not None and ATTR.CHECK not in t.user_attrs
    ]
    if len(complete) < 10:
        return []
    feasible = [t for t in complete if is_feasible(t)]  # (with guardrails: the best that meets them)
    if not feasible:
        return []
    sign = 1.0 if plan.program.direction == "minimize" else -1.0
    best = min(feasible, key=lambda t: sign * float(t.value))  # type: ignore[arg-type]
    # a value the best configuration never read (n_neighbors of a forest) is no edge to widen
    unread = inactive_in(best.params, read_only_under(plan.program.spec))
    # trials as good as the best elsewhere in the range: no edge (min_df at 1 tied with min_df 3: found
    # trying nbtune as a new user)
    tied = [t for t in feasible if t.value == best.value and t.number != best.number]
    out = []
    for name, d in best.distributions.items():
        if not isinstance(d, (FloatDistribution, IntDistribution)) or name not in best.params or name in unread:
            continue
        if isinstance(d, IntDistribution) and (d.high - d.low) // (d.step or 1) < 4:
            continue
        low, high, v = float(d.low), float(d.high), float(best.params[name])
        if d.log:
            low, high, v = math.log(low), math.log(high), math.log(v)
        if high <= low:
            continue
        where = (v - low) / (high - low)
        end = "bottom" if where <= EDGE else "top" if where >= 1 - EDGE else None
        if end == "bottom" and (d.low == 0 or (isinstance(d, IntDistribution) and d.low == 1)):
            # nothing below it to widen to for most such values (min_samples_leaf at 1, dropout at 0:
            # "widen that end" could not be followed, found trying nbtune as a new user)
            continue
        if end is not None and all(t.params.get(name) == best.params[name] for t in tied):
            out.append(
                f"the best trial's {name} ({fmt(best.params[name])}) is at the {end} of its range ({fmt(d.low)}, "
                f"{fmt(d.high)}): better values may lie beyond it; widen that end of the range (a new version of the "
                "study) to see"
            )
    return out


def _rung_could_not_rank(plan: _Plan) -> list[str]:
    """The first rung of successive halving where more trials tied for the best value than go on: all
    of them went on, and the rung saved nothing (every trial of a noisy objective drew the same numbers
    at epoch 1, measured before its first update: 14 of 14 tied at 0.209, and nothing was stopped;
    found trying nbtune as a new RL user)."""
    import math

    spec = plan.scheduler
    if not spec.scheduler.rungs or spec.scheduler.pauses:
        return []
    r = spec.r
    at = [
        t.intermediate_values[r]
        for t in plan.study.get_trials(deepcopy=False)
        if r in t.intermediate_values
        and math.isfinite(t.intermediate_values[r])
        and not ({ATTR.PROMOTED, ATTR.RERUN_OF} & set(t.user_attrs))  # (a continuation is its trial's curve again)
    ]
    if len(at) < 2 * spec.eta:
        return []
    best = (max if spec.direction == "maximize" else min)(at)
    tied = sum(v == best for v in at)
    if tied <= max(1, len(at) // spec.eta) or tied * 2 < len(at):
        return []
    later = f"compare them later (--min-epochs {r * spec.eta})" if spec.R is None or r * spec.eta < spec.R else ""
    draws = "give each trial its own draws (--vary-seed)" if plan.program.spec.seed is not None else ""
    todo = " or ".join(w for w in (later, draws) if w) or "a metric that tells configurations apart at that epoch"
    return [
        f"at {spec.unit} {r}, {tied} of the {len(at)} trials that reached it scored the same {plan.program.metric} "
        f"({fmt(best)}): successive halving could not rank them, so they all went on; {todo}"
    ]


def _metric_did_not_move(plan: _Plan) -> list[str]:
    """Every complete trial scored the same, over configurations that differ: the tuned values
    changed nothing the metric measures (a model made again after the tuned one, ``clf =
    LinearSVC(C=1.0)`` below ``clf = LinearSVC(C=C)``; a value set again before it is read). The
    search then chose among equals, silently (found trying nbtune as a new user)."""
    trials = plan.study.get_trials(deepcopy=False)
    complete = [
        t for t in trials if t.state.name == "COMPLETE" and t.value is not None and ATTR.CHECK not in t.user_attrs
    ]
    configurations = {repr(sorted(t.params.items())) for t in complete}
    values = {float(t.value) for t in complete}  # type: ignore[arg-type]
    if len(complete) < 5 or len(configurations) < 3 or len(values) != 1:
        return []
    # the values that varied among them (it named a tuple every complete trial had: found retesting as a user)
    tuned = [p.name for p in plan.program.spec.params if len({repr(t.params.get(p.name)) for t in complete}) > 1]
    return [
        f"every complete trial scored {plan.program.metric} = {fmt(values.pop())}, whatever its "
        f"{', '.join(tuned) or 'values'}: the tuned values changed nothing the metric measures; check that the cell "
        "uses them (a model made again after the tuned one, a variable set again before it is read)"
    ]


def _loop_shorter_than_max_epochs(plan: _Plan) -> list[str]:
    """Every complete trial's loop ended before --max-epochs (a loop whose length nbtune cannot
    read, over a generator): the rungs were placed for epochs no trial runs, and it went unsaid
    (found trying nbtune as a new user). One that runs longer fails its trials, with a message."""
    epochs, R = plan.program.spec.epochs, plan.cfg.max_epochs
    if epochs is None or epochs.length is not None or R is None:
        return []
    complete = [t for t in plan.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.last_step]
    ran = {t.last_step or 0 for t in complete}
    if len(complete) < 2 or len(ran) != 1 or max(ran) >= R:  # (a loop that ends by itself, early stopping: ran varies)
        return []
    n = ran.pop()
    return [
        f"the epochs loop (line {epochs.lineno}) ran {n} epochs in every complete trial, fewer than --max-epochs {R}: "
        f"the rungs were placed for {R} epochs; give --max-epochs {n} (a new version of the study) for rungs that "
        "fit the loop"
    ]


def _changed_in_place(plan: _Plan) -> list[str]:
    """Trials run in the kernel's process get the notebook's own objects: one that changed a
    notebook variable in place (``X -= 0.1``, ``history.append``, ``model.fit`` on a notebook
    model) changed it for the trials after it and for the notebook. Said after the search, from
    the fingerprints the study recorded before it."""
    if plan.identity is None:
        return []
    if plan.backend.processes:
        run_start = plan.job.run_start if plan.job is not None else 0
        prefix = ATTR.CHANGED_IN_WORKER + ":"
        seen = sorted(
            {
                n
                for key, names in plan.study.user_attrs.items()
                if key.startswith(prefix) and int(key[len(prefix) :]) >= run_start
                for n in names
            }
        )
        if not seen:
            return []
        return [
            f"the trials changed notebook data in place in their worker processes: {', '.join(seen)} (e.g. "
            "'.append', 'df[col] = ...', '.fit' on a notebook object): each process's later trials saw what its "
            "earlier ones left (harmless only where every trial sets it anew, as a fit on the same data does), and "
            "the notebook's own is unchanged (with --jobs 1 it would hold the result); change a copy made in the "
            f"cell instead ({_copy_advice(seen, plan.cfg.user_ns or {})})"
        ]
    changed = _left_in_notebook(plan)
    if not changed:
        return []
    return [
        f"the trials changed notebook data in place: {', '.join(changed)} (e.g. 'X -= 1', '.append', '.fit' on a "
        "notebook object): each trial saw what the ones before it left (harmless only where every trial sets it "
        "anew, as a fit on the same data does), and the notebook now holds the last one's; change a copy made in "
        f"the cell instead ({_copy_advice(changed, plan.cfg.user_ns or {})})"
    ]


def _is_array(value: Any) -> bool:
    """Data (:func:`is_data`, the holdout check's rule) with a shape: an array, a frame or a tensor;
    never raises (an object whose ``shape`` is a property that fails is none)."""
    try:
        return is_data(value) and hasattr(value, "shape")
    except Exception:
        return False


def _copy_advice(names: list[str], user_ns: dict[str, Any]) -> str:
    """How to make each changed object the trial's own, by its kind: clone() was advised for a torch
    module and a dict too (found trying nbtune as a new user)."""

    def one(name: str) -> str:
        value = user_ns.get(name)
        module = type(value).__module__ or ""
        if hasattr(value, "get_params") and module.startswith("sklearn"):
            return f"{name} = sklearn.base.clone({name})"
        if isinstance(value, dict):
            return f"{name} = dict({name})"
        if isinstance(value, list):
            return f"{name} = list({name})"
        if module.startswith("torch") and callable(getattr(value, "clone", None)):  # a tensor: no .copy()
            return f"{name} = {name}.clone()"
        if hasattr(value, "copy") and hasattr(value, "shape"):  # arrays, frames
            return f"{name} = {name}.copy()"
        return f"{name} = copy.deepcopy({name})"

    return ", ".join(repr(one(n)) for n in names[:3])


def _left_in_notebook(plan: _Plan) -> list[str]:
    """The notebook variables the cell read that differ now from when the search began (what its
    trials in the kernel, or ``--apply``, changed in place), recorded with the study: re-running
    the cell (Run All) finds the notebook as they left it, and that is not another study's data."""
    if plan.identity is None:
        return []
    now = cell_identity(plan.program.spec, plan.program.globals, plan.cfg.user_ns, plan.program.sealed())["data"]
    changed = sorted(n for n, h in plan.identity["data"].items() if n in now and not same_data(h, now[n]))
    if changed:
        recorded = dict(plan.study.user_attrs.get(ATTR.IDENTITY) or plan.identity)
        recorded["in_place"] = {**recorded.get("in_place", {}), **{n: now[n] for n in changed}}
        plan.study.set_user_attr(ATTR.IDENTITY, recorded)
    return changed


def _bug_error(result: TuneResult, plan: _Plan, every: bool = False) -> TrialsFailedError:
    """The search stopped for a bug in the cell: the failures that decided it (``first_failures``),
    the latest of them with its traceback (not a failure of another kind that came later: a
    NameError below the cell's own ``raise`` was reported as the RuntimeError of that raise)."""
    run_start = plan.job.run_start if plan.job is not None else 0
    ended = ended_in_run(result.trials, run_start)
    decided = first_failures(ended)
    failed = [t for t in result.trials if t.state.name == "FAIL" and ATTR.ERROR in t.user_attrs]
    first = decided[-1] if decided and not every else (failed[-1] if failed else None)
    tb = first.user_attrs.get(ATTR.TRACEBACK, "") if first else ""
    err = first.user_attrs.get(ATTR.ERROR, "") if first else ""
    failure = first.user_attrs.get(ATTR.FAILURE, "") if first else ""
    where = [f"line {failure.rsplit(' at line ', 1)[1]} of the %%tune cell"] if " at line " in failure else []
    module = _raised_in_users_file(tb)
    # (it read as the cell's bug alone, where the traceback ended in the project's src/: found trying nbtune)
    if module:
        where.append(f"raised in {module}")
    if where:
        err += f" ({', '.join(where)})"
    paused = any(
        t.state.name == "PRUNED" and t.number >= run_start and ATTR.TIMED_OUT not in t.user_attrs for t in result.trials
    )
    n = len(decided) or N_FAILURES_TO_STOP
    skipped = bool(decided) and any(refused(t) for t in ended[: ended.index(decided[-1])])
    earlier = any(t.number < run_start for t in result.trials)
    which = (
        "every trial of this run" + (", and of the study before it," if earlier else "")
        if every
        else f"the first {n} trials of this run that failed other than at the cell's own raise"
        if skipped and not refused(decided[-1])
        else f"the first {n} trials of this run that were not paused or stopped early"
        if paused
        else f"the first {n} trials of this run"
    )
    kept = f"the failed trials are kept in {plan.study.study_name!r}"
    if (
        first is not None
        and ATTR.TIMED_OUT in first.user_attrs
        and all(ATTR.TIMED_OUT in t.user_attrs for t in decided)
    ):
        cut = sum(t.state.name == "PRUNED" for t in decided)
        return TrialsFailedError(
            f"{which} {'' if every else 'all '}ran past --trial-timeout {first.user_attrs[ATTR.TIMED_OUT]:g} s"
            + (f" ({cut} of them stopped before their last epoch or fold)" if cut else "")
            + (", and none of them completed" if every else ", so the search stopped instead of spending the budget")
            + ": raise --trial-timeout"
            + (" (a full trial takes longer)" if cut else "")
            + f", or narrow the ranges that make a trial slow, and re-run ({kept})",
            tb,
            result,
        )
    kind = err.split(":", 1)[0]
    # what a configuration can raise by nature (a ValueError, an IndexError), not what only a bug does; the
    # cell's own values failing with it too is said, as what makes a bug likelier (the advice to catch it
    # read as an invitation to hide one: a float target in cross_entropy; found trying nbtune as a new user)
    own = next((t for t in decided if t.user_attrs.get(ATTR.BASELINE)), None)
    natural = kind.isidentifier() and kind not in _ONLY_BUGS and "read-only" not in err
    return TrialsFailedError(
        f"{which} {'failed' if every else 'all failed'} with {err}"
        + (f" (the cell's own values too, trial {own.number})" if own is not None else "")
        + f"; {'your code' if module else 'the cell'} probably has a bug, so the "
        f"search stopped instead of spending the budget (fix it and re-run; {kept})"
        + (
            f". Only if these configurations raise it by nature (a clustering left with one label, a solver that rejects "
            f"a penalty), catch it in the cell and set {plan.program.metric} to NaN ('except {kind}: "
            f"{plan.program.metric} = float(\"nan\")'): the cell's verdict on them, a failed row, and the search "
            "goes on (a poor finite value would squash every plot)"
            if natural
            else ""
        ),
        tb,
        result,
    )


def _raised_in_users_file(tb: str) -> str:
    """Where a trial's traceback ends when that is a file of the user's own (a module of the
    project's, not the cell or a library): ``src/mlproj/deep.py, line 6, in _per_class``."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', tb)
    if not frames:
        return ""
    path, line, name = frames[-1]
    # (not the cell, nor a function another cell defined: ipykernel writes cells as ipykernel_<pid>/<hash>.py)
    if path.startswith("<") or os.path.basename(os.path.dirname(path)).startswith("ipykernel_") or not users_file(path):
        return ""
    shown = os.path.relpath(path) if os.path.abspath(path).startswith(os.getcwd() + os.sep) else path
    return f"{shown}, line {line}, in {name}"


# errors no configuration raises by nature: the advice to catch them is left out of the bug stop
_ONLY_BUGS = frozenset(
    (
        "SyntaxError",
        "IndentationError",
        "NameError",
        "UnboundLocalError",
        "ImportError",
        "ModuleNotFoundError",
        "AttributeError",
        "TypeError",
        "MetricError",
    )
)


def _apply(plan: _Plan, result: TuneResult) -> None:
    """Run the cell once in the notebook namespace with the chosen values: the most stable
    re-validated configuration, else the best."""
    if not plan.cfg.apply:
        return
    if result.interrupted:
        result.messages.append("--apply: skipped, the search was interrupted; re-run the cell to finish it")
        return
    user_ns = plan.cfg.user_ns
    if user_ns is None:
        raise ConfigError("--apply needs the notebook namespace (user_ns)")
    chosen = result.checks.chosen() if result.checks is not None else None  # (for the words below)
    try:
        picked = result.chosen_trial
    except ValueError:
        warnings.warn(
            f"--apply: {_none_to_choose(result.study)}, so there is no best configuration to apply",
            NbtuneWarning,
            stacklevel=4,
        )
        return
    values, number = drawn_params(picked.params), picked.number
    if plan.program.state:
        state = read_checkpoint(plan.store, picked)
        if state is not None:
            user_ns.update(values)
            user_ns.update(state)
            metric = plan.program.metric  # the model's measured score: a later cell must not read a stale one
            user_ns[metric] = picked.value
            # No line of the cell runs, the sealed holdout's neither: its variable is set from the holdout run of
            # this very configuration when there is one, else said (a later cell read a NameError: found trying
            # nbtune as a new user)
            sealed = ""
            if plan.cfg.holdout is not None:
                report = result.holdout()
                if report is not None and report.trial == number and report.n_runs == 1:
                    user_ns[plan.cfg.holdout] = report.holdout_value
                    sealed = f", {plan.cfg.holdout} (its holdout run)"
                else:
                    sealed = (
                        f"; the sealed lines did not run ({plan.cfg.holdout} is not set: res.holdout() has its value; "
                        "to run them, run the cell with res.chosen_params)"
                    )
            # with folds, the state is the last fold's: a model fitted on that fold's training rows only, which
            # read as the best model (found trying nbtune as a new user)
            folded = plan.program.spec.folds
            fold = (
                f"; its last fold's, {folded.name} = {folded.k - 1}, fitted on that fold's training rows only: for a "
                "final model on all the data, refit it with res.chosen_params"
                if folded is not None
                else ""
            )
            result.messages.append(
                f"--apply: loaded {', '.join(state)} from trial {number}'s checkpoint (no retraining{fold}) and set "
                f"{', '.join(values)} and {metric} (its value in that trial){sealed}; the cell's other variables "
                "are not in the notebook" + (", nor what the sealed lines make" if sealed.startswith(",") else "")
            )
            return
    # the whole cell, as a plain run of it: the sealed holdout's lines too (the search is over, and
    # they may refit the final model on all the development data)
    runtime = TrialRuntime(plan.program, None, fixed=values, reveal_holdout=True)
    plan.program.run(runtime, base=user_ns)
    user_ns.pop("__nbtune__", None)
    # the trial met its guardrails; this run may not (a fit time measured on a busy machine: 3.7 s against
    # the trial's 0.45 s under 'fit_time <= 0.5' went unsaid, found trying nbtune as a new user)
    broken = [
        f"{label} does not hold ({name} = {fmt(user_ns.get(name))})"
        for name, _, _, label in plan.program.constraints
        if runtime.constraints.get(label, 0.0) > 0
    ]
    held = (
        f"; in this run {' and '.join(broken)}, where trial {number} met it: a measure that varies between runs "
        "(time, memory) or an unseeded cell; check it before you use the model"
        if broken
        else ""
    )
    which = f"the most stable re-validated values (trial {chosen.number})" if chosen is not None else "the best values"
    folds = plan.program.spec.folds
    once = (
        f" (once, with {folds.name} = {folds.default}: {plan.program.metric} is that fold's, the study's value the "
        "mean over the folds)"
        if folds is not None
        else ""
    )
    seed = plan.program.spec.seed
    # its numbers are that seed's, where re-validation's are a mean over seeds (three numbers differed without
    # a word: found trying nbtune as a new user)
    seeded = (
        f" and {seed.name} = {seed.default}, as the cell sets it (re-validation's numbers are means over its seeds)"
        if seed is not None and chosen is not None
        else ""
    )
    result.messages.append(f"--apply: ran the cell with {which}{once}{seeded}; its variables are in the notebook{held}")


def _none_to_choose(study: optuna.Study) -> str:
    """Why a search has no configuration to choose: none completed, or none met the guardrails."""
    if any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
        return "no complete trial met the guardrails (--subject-to)"
    return "no trial completed"


# 5. the checks ----------------------------------------------------------------------------
def _check_plan(plan: _Plan, result: TuneResult) -> _Plan | None:
    """The check phase after a search (re-validation, the holdout's evaluation), if asked for
    and the search was not interrupted; its job is None when every run is already done."""
    cfg = plan.cfg
    if result.interrupted or not (cfg.revalidate or cfg.holdout):
        return None
    runs = plan_checks(
        program=plan.program,
        store=plan.store,
        study=plan.study,
        liveness=plan.liveness,
        top=cfg.revalidate,
        seeds=cfg.n_seeds,
        final=cfg.holdout is not None,
        R=plan.scheduler.R,
        outer_fold=plan.outer_fold,
        sealed=_sealed_now(plan),
        trial_timeout=cfg.trial_seconds,
    )
    if runs is None:
        result.messages.append(f"checks: {_none_to_choose(plan.study)}, so there is nothing to re-validate or evaluate")
        return None
    return dataclasses.replace(
        plan,
        cfg=dataclasses.replace(cfg, apply=False),
        scheduler=runs.job.scheduler if runs.job is not None else plan.scheduler,
        study=runs.study,
        n_trials=runs.target,
        job=runs.job,
        messages=runs.messages,
        phase=f"checks of {plan.study.study_name!r}: {runs.target} full-length runs "
        + ("(re-validation across seeds)" if cfg.revalidate else f"(the {cfg.holdout} holdout)"),
    )


def _sealed_now(plan: _Plan) -> str | None:
    """The fingerprint of the lines sealed with the holdout and the data only they read, as the
    notebook has them now (``%tune_validate`` of a stored study too)."""
    if plan.cfg.holdout is None or plan.program.spec.tree is None:
        return None
    identity = plan.identity or cell_identity(
        plan.program.spec, plan.program.globals, plan.cfg.user_ns, plan.program.sealed()
    )
    sealed: str | None = identity.get("sealed")
    return sealed


def _close_checks(
    plan: _Plan, checks: _Plan, search: Search | None, interrupted: bool, view: BaseView | None, result: TuneResult
) -> None:
    """The checks' outcome into the search's result."""
    from nbtune.view.checks import CheckReport

    done = _close(checks, search, interrupted, view)
    result.checks = CheckReport(plan.study, checks.study, plan.program.metric, plan.cfg.holdout, threshold=plan.cfg.gap)
    result.messages.extend(checks.messages)
    if done.interrupted:
        result.interrupted = True
        result.messages.append("the checks were interrupted: their finished runs are kept; re-run the cell to finish")
    h = result.checks.holdout_report()
    # nested CV reports its folds together; a re-run that ran no check says it in its summary only
    if h is not None and h.warn and plan.outer_fold is None and checks.job is not None:
        warnings.warn(h.sentence(), NbtuneWarning, stacklevel=4)


def _note_checkpoints(plan: _Plan, result: TuneResult) -> None:
    """Say what the checkpoints cost, and why a state could not be saved."""
    if not plan.program.state:
        return
    n, size = checkpoint_files(plan.store, plan.study)
    errors = {t.user_attrs[ATTR.CHECKPOINT_ERROR] for t in plan.study.trials if ATTR.CHECKPOINT_ERROR in t.user_attrs}
    result.messages.extend(f"checkpoint not saved: {e}" for e in sorted(errors)[:2])
    if n:
        result.messages.append(
            f"checkpoints: the state ({', '.join(plan.program.state)}) of {n} trial(s) is kept (the best "
            f"{plan.cfg.keep_checkpoints} complete ones, and cut ones waiting to resume), {size / 1e6:.1f} MB in "
            f"{plan.store.artifacts_where()}; res.best_state() loads it"
        )


def _wait(search: Search | None, view: BaseView | None) -> bool:
    """Block until the search ends; True if Interrupt (Ctrl-C) ended it."""
    if search is None:
        return False
    try:
        while not search.wait(POLL_SECONDS):
            if view is not None:
                view.update()
    except KeyboardInterrupt:
        search.signalled = True  # (Interrupt's SIGINT reaches the kernel's worker processes too)
        search.stop_now()
        with contextlib.suppress(KeyboardInterrupt):
            t_end = time.monotonic() + STOP_WAIT
            while not search.wait(POLL_SECONDS) and time.monotonic() < t_end:
                if view is not None:
                    view.update()
        return True
    return False


async def _wait_async(search: Search | None, view: BaseView | None) -> bool:
    """:func:`_wait` awaiting: the kernel handles widget messages meanwhile."""
    if search is None:
        return False
    while not search.done.is_set():
        try:
            await asyncio.sleep(POLL_SECONDS)
            if view is not None:
                view.update()
        except (asyncio.CancelledError, KeyboardInterrupt):
            search.signalled = True
            search.stop_now()
            t_end = time.monotonic() + STOP_WAIT
            while not search.done.is_set() and time.monotonic() < t_end:
                with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
                    await asyncio.sleep(POLL_SECONDS)
                    if view is not None:
                        view.update()
            return True
    return False


# A search as steps: the generators yield each (search, view) to be waited for and receive whether
# Interrupt ended it. tune() blocks on each (_drive) and tune_async() awaits it (_drive_async):
# that is all the two differ in.
_Steps = Generator["tuple[Search | None, BaseView | None]", bool, _T]


def _drive(steps: _Steps[_T]) -> _T:
    """Run ``steps``, blocking while each search runs."""
    try:
        search, view = next(steps)
        while True:
            search, view = steps.send(_wait(search, view))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def _drive_async(steps: _Steps[_T]) -> _T:
    """Run ``steps``, awaiting each search (the kernel stays responsive)."""
    try:
        search, view = next(steps)
        while True:
            search, view = steps.send(await _wait_async(search, view))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _check_steps(plan: _Plan, result: TuneResult, factory: ViewFactory | None) -> _Steps[None]:
    """The checks after a search (re-validation, the sealed holdout), if it asks for any."""
    checks = _check_plan(plan, result)
    if checks is not None:
        search, view = _start(checks, factory)
        _close_checks(plan, checks, search, (yield search, view), view, result)


def _run_checks(plan: _Plan, result: TuneResult, factory: ViewFactory | None) -> None:
    _drive(_check_steps(plan, result, factory))


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Interrupt ends the planning of a search at once, before any trial: one line, no traceback.

    A %%tune cell in a kernel is async, and ipykernel's SIGINT handler for an async cell only cancels
    its await; planning does not await, so over a large notebook object (which it reads, and hashes
    for the study's identity) Interrupt took effect only 20 s later, once the search had started
    (found retesting Interrupt as a user). While planning, Python's own handler raises
    KeyboardInterrupt, as in a plain cell; the kernel's is put back before the search starts."""
    import signal
    import threading

    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if previous in (None, signal.SIG_IGN):  # (not the main thread, or a process that ignores Interrupt)
        previous = None
    else:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # nothing showed for those 20 s: said once planning takes long (found retesting Interrupt as a user)
    slow = threading.Timer(PLANNING_NOTE_AFTER, _say_planning)
    slow.daemon = True
    slow.start()
    try:
        yield
    except KeyboardInterrupt:
        raise NbtuneError(
            "interrupted before the search began (while reading the cell and the notebook data it uses): no trial "
            "ran; re-run the cell to start it"
        ) from None
    finally:
        slow.cancel()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


PLANNING_NOTE_AFTER = 5.0  # seconds of planning before the cell says what it is doing


def _say_planning() -> None:
    print(
        "nbtune: reading the cell and the notebook data it uses (hashed for the study's identity: a large object "
        "takes a while; Interrupt stops it)",
        flush=True,
    )


def _search_steps(cell: str, cfg: TuneConfig) -> _Steps[TuneResult | NestedResult]:
    """Everything :func:`tune` does, as steps: the search (one per outer fold with nested
    cross-validation), its checks, the checkpoints' note and ``--apply``."""
    factory = _view_factory(cfg.view)
    outer = _outer_folds(cell, cfg)
    folds: list[TuneResult] = []
    for i in range(outer.k if outer is not None else 1):
        with _interruptible():
            plan = _plan(cell, cfg, outer_fold=None if outer is None else i)
        search, view = _start(plan, factory)
        result = _close(plan, search, (yield search, view), view)
        if outer is None:
            yield from _check_steps(plan, result, factory)
            _note_checkpoints(plan, result)
            _apply(plan, result)
            if plan.cfg.apply:
                _left_in_notebook(plan)  # what the applied cell changed in place: Run All resumes the study
            result._checker = _checker(plan)
            return result
        folds.append(result)
        if result.interrupted:
            break
        yield from _check_steps(plan, result, factory)
        if result.interrupted:
            break
    assert outer is not None
    return _nested_result(folds, outer.k, cfg)


def _checker(plan: _Plan) -> Any:
    """``TuneResult.revalidate``: the check phase of this plan with other options, blocking."""

    def run(result: TuneResult, top: int, seeds: int, options: dict[str, Any]) -> None:
        unknown = set(options) - {"n_jobs", "backend", "view"}
        if unknown:
            raise TypeError(f"revalidate() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        cfg = dataclasses.replace(plan.cfg, revalidate=top, seeds=seeds, apply=False, **options).check()
        if top < 1:
            raise ConfigError(f"revalidate(top=...) must be >= 1; got {top!r}")
        n_jobs = effective_jobs(cfg.n_jobs)
        again = dataclasses.replace(plan, cfg=cfg, n_jobs=n_jobs, backend=resolve_backend(cfg.backend, n_jobs))
        require_seed(again.program, "revalidate()")
        _same_data_as_the_search(again)
        result.interrupted = False
        with _quiet_optuna():
            _run_checks(again, result, _view_factory(cfg.view))

    return run


def _same_data_as_the_search(plan: _Plan) -> None:
    """Re-validation runs the configurations on the notebook's data now: if it is not what the
    search read, the new runs would be averaged with earlier ones on other data (labels shuffled
    since, a frame sampled down) into one interval without a word (found trying nbtune as a new user).

    Raises:
        ConfigError: the data changed since the search ran.
    """
    recorded = plan.study.user_attrs.get(ATTR.IDENTITY)
    if not recorded or plan.program.spec.tree is None:
        return
    # the notebook's values now, not those the result kept: 'y_val = 1 - y_val' rebinds, and res.revalidate()
    # ran on the old labels where %tune_validate said the data changed (found trying nbtune as a new user)
    ns = plan.cfg.user_ns
    current = plan.program.globals if ns is None else {n: ns[n] for n in plan.program.globals if n in ns}
    now = cell_identity(plan.program.spec, current, ns, plan.program.sealed())
    # (and the code of the user's own modules: the recorded cell runs again, their code as it is now)
    changed = [
        d
        for d in describe_difference(recorded, now, legacy_fingerprints(current))
        if d.startswith(("the notebook data", "the code it imports"))
    ]
    if changed:
        raise ConfigError(
            f"{changed[0]} since {plan.study.study_name!r} ran: re-validating now would score its configurations on "
            "other data or code than it chose them with, and mix those runs with earlier ones; restore them, or run "
            "the search again (it starts a new version)"
        )


def load_result(name: str | None = None, store: str | Path | None = None) -> TuneResult:
    """A stored study as the result ``%tune_show NAME -o res`` binds, from a script or another
    notebook: ``best_params``, ``best_state()`` (the trained model, without retraining),
    ``trials_dataframe()``, ``summary()``, its plots and its checks (re-validation, the holdout).

    Args:
        name: the study name as ``%%tune`` printed it (the latest version without ``:vN``); None:
            the only study of the store.
        store: the store folder or database URL; default ``.nbtune/`` beside the notebook (in the
            current directory from a script), or ``NBTUNE_STORE``.

    Raises:
        KeyError: no such study; the message lists the studies in the store.

    Example:
        >>> import nbtune  # doctest: +SKIP
        >>> res = nbtune.load_result("val_acc-1a2b3c")  # doctest: +SKIP
        >>> model = res.best_state()["model"]  # doctest: +SKIP
    """
    from nbtune.store.journal import _user_ns, load_study, open_store

    user_ns = _user_ns()
    with warnings.catch_warnings(record=True) as said:  # said at the caller's line, not this one
        warnings.simplefilter("always", NbtuneWarning)
        study = load_study(name, store=store)
    for w in said:
        warnings.warn(w.message, w.category, stacklevel=2)
    return stored_result(study, open_store(store, user_ns), user_ns, None)


def stored_result(study: optuna.Study, store: BaseStore, user_ns: dict[str, Any] | None, transform: Any) -> TuneResult:
    """A stored study as a result (``%tune_show``, ``%tune_validate``): its checks so far, and
    able to run more when the study recorded its cell and the notebook defines what it reads."""
    from nbtune.view.checks import CheckReport
    from nbtune.view.result import TuneResult

    cfg_attrs = study.user_attrs.get(ATTR.CONFIG, {})
    metric = cfg_attrs.get("metric", "value")
    cell = study.user_attrs.get(ATTR.CELL) or {}
    result = TuneResult(
        study,
        metric,
        store_path=store.location(study.study_name),
        scheduler=cfg_attrs.get("scheduler", ""),
        sampler="stored study",
    )
    result._store = store
    # Trials a dead kernel or worker left RUNNING: said, not written (viewing writes nothing)
    cut = [t.number for t in dead_trials(study, liveness_of(store))]
    if cut:
        result.messages.append(
            f"trial(s) {cut} show as running, but the kernel or worker that ran them is gone: they were cut, "
            "and run again (from their last saved epoch, if any) when the cell runs"
        )
    name = check_study_name(study.study_name)
    checks = None
    if name in store.study_names():
        import optuna

        checks = optuna.load_study(study_name=name, storage=store.storage(name))
    if checks is not None or cell.get("holdout"):
        result.checks = CheckReport(study, checks, metric, cell.get("holdout"), threshold=cell.get("gap"))
    if "source" not in cell:
        return result
    direction = study.direction.name.lower()
    annotations = _annotations(cell["source"], transform, cell.get("line_offset", 1))
    folds = annotations.folds if annotations is not None else None
    cfg = TuneConfig(
        maximize=metric if direction == "maximize" else None,
        minimize=metric if direction == "minimize" else None,
        user_ns=user_ns,
        transform=transform,
        line_offset=cell.get("line_offset", 1),
        holdout=cell.get("holdout"),
        holdout_gap=cell.get("gap") if cell.get("holdout") else None,
        subject_to=cell.get("subject_to"),
        record=cell.get("record"),
        # the epochs of a full trial (a loop whose length the cell does not spell out needs them); a
        # cell with folds(k) stored its folds there, which are not epochs
        max_epochs=None if folds is not None else cfg_attrs.get("R"),
    )

    def run(result: TuneResult, top: int, seeds: int, options: dict[str, Any]) -> None:
        try:
            program, sampler, spec = _compile(cell["source"], dataclasses.replace(cfg, scheduler="none"))
        except ConfigError as e:
            # a loop that now runs another length than the search's (N_EPISODES changed): the data
            # changed, which is the thing to say, not a --max-epochs the user never gave (found
            # trying nbtune as a new user)
            _changed_since_the_search(cell["source"], dataclasses.replace(cfg, max_epochs=None), store, study)
            raise e from None
        plan = _Plan(
            cfg=cfg,
            program=program,
            sampler=sampler,
            scheduler=spec,
            backend=resolve_backend(cfg.backend, 1),
            n_jobs=1,
            store=store,
            study=study,
            n_trials=0,
            job=None,
        )
        _checker(plan)(result, top, seeds, options)

    result._checker = run
    return result


def _changed_since_the_search(source: str, cfg: TuneConfig, store: BaseStore, study: optuna.Study) -> None:
    """Raises the data's ConfigError when the notebook data the study's cell reads changed since
    the search (compiled without what the search recorded of it); nothing if it did not, or if the
    cell does not compile so either."""
    try:
        program, sampler, spec = _compile(source, dataclasses.replace(cfg, scheduler="none"))
    except ConfigError:
        return
    _same_data_as_the_search(
        _Plan(cfg, program, sampler, spec, resolve_backend(cfg.backend, 1), 1, store, study, 0, None)
    )


def stored_nested(
    name: str | None, store: BaseStore, user_ns: dict[str, Any] | None, transform: Any
) -> NestedResult | None:
    """A stored nested cross-validation (``%tune_show NAME`` of a cell with ``# tune: outer(k)``):
    its outer folds' studies ``NAME.outer0`` ... as the result the cell showed, or None when the
    store has no such search. ``name`` None: the store's only search, when it is a nested one."""
    import optuna

    from nbtune.view.nested import NestedResult

    searches: dict[str, list[tuple[int, str]]] = {}
    bases = {base_name(n) for n in store.study_names() if not is_check_study(n)}
    for b in bases:
        outer = outer_fold_of(b)
        if outer is not None:
            searches.setdefault(outer[0], []).append((outer[1], b))
    if name is None:
        if len(searches) != 1 or len(bases) != len(next(iter(searches.values()))):
            return None
        name = next(iter(searches))
    found = sorted(searches.get(base_name(name), []))
    if not found:
        return None
    latest = [store.versions(b)[-1] for _, b in found]
    studies = [optuna.load_study(study_name=n, storage=store.storage(n)) for n in latest]
    folds = [stored_result(study, store, user_ns, transform) for study in studies]
    cell = folds[0].study.user_attrs.get(ATTR.CELL) or {}
    spec = _annotations(cell["source"], transform, cell.get("line_offset", 1)) if "source" in cell else None
    k = spec.outer.k if spec is not None and spec.outer is not None else len(folds)
    return NestedResult(folds, k, folds[0].metric, cell.get("holdout") or "")


def _close(plan: _Plan, search: Search | None, interrupted: bool, view: BaseView | None) -> TuneResult:
    """The result; the live view gets its final redraw either way."""
    try:
        result = _finish(plan, search, interrupted)
    except TrialsFailedError as e:
        if view is not None:  # the result as it stopped is shown (%%tune) with the error
            view.close(e.result if e.result is not None else _result(plan, []), handover=e.result is not None)
        raise
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
def tune(cell: str, **options: Any) -> TuneResult | NestedResult:
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
    with _quiet_optuna(), _script_words(cfg), _store_errors(cfg.store):
        return _drive(_search_steps(cell, cfg))


@with_config_signature
async def tune_async(cell: str, **options: Any) -> TuneResult | NestedResult:
    """:func:`tune` for a running event loop: awaits the search instead of blocking.

    In a Jupyter kernel this keeps the kernel responsive while trials run, so widget
    buttons (Stop, Stop now, + trials) are handled at once; Interrupt (which cancels
    the awaiting cell) stops the search gracefully and returns the partial result.

    Args:
        cell: the cell body.
        {options}
    """
    cfg = config_from(options, "tune_async")
    with _quiet_optuna(), _script_words(cfg), _store_errors(cfg.store):
        return await _drive_async(_search_steps(cell, cfg))


_DISK_ERRORS = {
    errno.ENOSPC: "its disk is full",
    errno.EDQUOT: "its disk quota is used up",
    errno.EROFS: "it is read-only",
}


def _disk_error(e: OSError, store: Any) -> StoreError | None:
    """The one line for a store folder that could not be written mid-search (a full disk, a folder
    made read-only: its files' permissions, not only a read-only file system), or None."""
    why = _DISK_ERRORS.get(e.errno or 0)
    if why is None and e.errno in (errno.EACCES, errno.EPERM) and e.filename:
        from nbtune.store.database import is_database_url
        from nbtune.store.journal import _user_ns, default_store_dir

        if not is_database_url(store):
            folder = Path(store) if store is not None else default_store_dir(_user_ns())
            with contextlib.suppress(OSError, ValueError):
                if Path(os.path.abspath(e.filename)).is_relative_to(folder.resolve()):
                    why = "its permissions do not allow it"
    if why is None:
        return None
    fix = "free space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable (chmod u+w)"
    return StoreError(
        f"the store could not be written: {why} ({e.strerror}{': ' + str(e.filename) if e.filename else ''}); "
        f"the finished trials are kept: {fix} or pass --store with a folder you can write to, then re-run the cell"
    )


@contextlib.contextmanager
def _store_errors(store: Any) -> Iterator[None]:
    """A store that cannot be written or reached mid-search is one line saying so, with what is kept
    and what to do, not a chain of tracebacks (a full disk, a read-only folder, a database restart)."""
    try:
        yield
    except NbtuneError:
        raise
    except OSError as e:
        disk = _disk_error(e, store)
        if disk is None:
            raise
        raise disk from None
    except Exception as e:
        from nbtune.store.database import store_error

        said = store_error(e, store)
        if said is None:
            raise
        raise said from None


@contextlib.contextmanager
def _script_words(cfg: TuneConfig) -> Iterator[None]:
    """Errors name "line 2 of the %%tune cell"; a cell given to tune() as a string is "the cell"
    (its lines counted from its own first line: ``line_offset`` 0)."""
    try:
        yield
    except NbtuneError as e:
        if cfg.line_offset == 0:
            e.args = tuple(a.replace("the %%tune cell", "the cell") if isinstance(a, str) else a for a in e.args)
        raise


def _annotations(cell: str, transform: Callable[[str], str] | None, line_offset: int) -> CellSpec | None:
    """The cell's annotations, or None when they do not parse (errors are _plan's to report)."""
    try:
        return parse_cell(transform(cell) if transform is not None else cell, line_offset)
    except NbtuneError:
        return None


def _outer_folds(cell: str, cfg: TuneConfig) -> FoldsVar | None:
    """Nested CV's outer fold variable, if the cell has one."""
    spec = _annotations(cell, cfg.transform, cfg.line_offset)
    return spec.outer if spec is not None else None


def _nested_result(folds: list[TuneResult], k: int, cfg: TuneConfig) -> NestedResult:
    from nbtune.view.nested import NestedResult

    result = NestedResult(folds, k, cfg.metric, cfg.holdout or "")
    if cfg.apply:
        warnings.warn(
            "--apply: nested cross-validation estimates the tuning procedure and has one winner per outer fold, "
            "not one model; run the cell without '# tune: outer' to tune and apply the final model",
            NbtuneWarning,
            stacklevel=4,
        )
    return result


def _view_factory(view: Any) -> ViewFactory | None:
    from nbtune.view.registry import view_factory

    return view_factory(view)
