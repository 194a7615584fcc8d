"""Which search should be the default? nbtune's default against the field's anchors, per seed.

Three tasks of different character, each searched by every method at an equal budget of
training epochs (default 810 = 30 full trials of R=27 epochs, one job per search):

* ``mlp``: scikit-learn ``MLPClassifier`` (adam) trained epoch by epoch with ``partial_fit`` on
  ``make_classification(n_features=20, n_informative=10, n_redundant=4, n_classes=4,
  n_clusters_per_class=3, class_sep=0.8, flip_y=0.03)`` (3600 train, 1200 validation); 6 hyperparameters
  (learning rate, L2, width, depth, batch size, Adam's beta_1), as in issue 14.
* ``gbm``: ``HistGradientBoostingClassifier`` with boosting rounds as the fidelity (an epoch
  is 4 more rounds, ``warm_start``), on a binary problem with many clusters and noise features;
  5 hyperparameters (learning rate, leaves, minimum leaf size, L2, feature fraction).
* ``torch``: a small PyTorch network (two hidden layers, dropout) trained with SGD and momentum,
  on a 6-class problem; 6 hyperparameters (learning rate, momentum, weight decay, width,
  dropout, batch size).

``--tasks gbm-val3600`` (not in the default suite) is ``gbm`` with 3600 validation examples instead
of 900: whether the methods separate there once validation can tell the configurations apart.

``--trials N`` gives every method N configurations instead of an epoch budget: the comparison a
user makes between ``%%tune -n 20`` (nbtune's default count) and Optuna's ``n_trials=20``. Each
method then spends the epochs its own rule spends on them: the full-fidelity searches N x 27,
scikit-learn's halving search its "exhaust" plan (with 9-26 candidates it starts at 3 epochs, so
that it ends at 27). Nothing is cut; the "epochs" column says what each spent.

Each seed draws the train/validation/holdout split (stratified; the holdout is large, 5000-6000
examples, so that it measures an incumbent to within about half a point) and fixes the model's
random state and the search's. The methods (all but nbtune's are the libraries' own, untouched):

* ``nbtune``: ``nbtune.tune(cell)`` with no option but the metric and the seed: the default
  (multivariate TPE fitted as BOHB fits its model, at the largest epoch that at least d + 3
  configurations reached; ASHA r=1, R=27, eta=3 with pause-and-promote; the cells
  declare no state, so a promoted trial continues from its worker's memory).
* ``optuna-random-sh``: Optuna ``RandomSampler`` + ``SuccessiveHalvingPruner(min_resource=1,
  reduction_factor=3)``.
* ``optuna-tpe-hb``: Optuna ``TPESampler`` + ``HyperbandPruner(1, 27, 3)``.
* ``sklearn-halving``: scikit-learn's ``HalvingRandomSearchCV`` (factor 3, 1 to 27 epochs as
  the resource, validated on the same validation split); it retrains from scratch at every rung,
  and those epochs count. Its number of candidates is the largest whose plan fits the budget.
* ``random-full`` / ``tpe-full``: Optuna random and TPE, every trial all 27 epochs.

A search runs until its trials have spent the budget; its history is cut there, in trial
order (a trial counts if it *ended* within the budget). Per method, over seeds, it reports:

* ``holdout``: the holdout accuracy of the final incumbent (the best full-length configuration
  by validation accuracy), retrained from scratch for 27 epochs: median, worst, best;
* ``val``: the incumbent's validation accuracy;
* ``to_1pp``: epochs spent until the best-so-far validation accuracy came within 1 point of the
  best final validation accuracy *any* method reached on that task and seed ("never" counts as
  infinitely many for the median);
* ``full_share``: the share of the epochs spent on configurations that were trained to 27;
* ``seconds``: wall time of the search.

Alternatives to the default are nbtune with options, ``nbtune:key=value,...`` in ``--methods``
(values are JSON or strings), e.g. ``nbtune:stop_only=true`` (the previous default: Optuna's
stop-only Hyperband), ``nbtune:sampler=tpe-optuna`` (the default before 2026-11-29: Optuna's
multivariate TPE, fed every trial), ``nbtune:sampler=tpe-budget10`` (today's default
without its random bursts: the model moves up an epoch only once 10 configurations reached it) or ``nbtune:sampler=tpe-random3`` (BOHB's safeguard: a third
of the configurations drawn at random), registered below. ``experiment:baseline-competes`` is the
default with its baseline paused at the rungs like any other trial (nbtune trains it to the end).
``optuna-defaults`` (only when named) is what ``optuna.create_study()`` gives an objective that
reports every epoch: ``TPESampler`` and ``MedianPruner``, both with their default settings.

``--report A.json B.json`` runs nothing: it pools earlier results and prints the table and, seed
by seed, the default's holdout accuracy minus each other method's (mean and standard error):
medians of separate columns move with each split's luck; a paired difference twice its standard
error is one the benchmark can tell from noise.

The table's ``val-ho`` is the median of the incumbent's validation minus holdout accuracy: how much
its validation score overstated it. ``--noise`` runs instead the default alone and retrains every
configuration it trained to the end, to measure whether the task's validation split ranks those
as the holdout does (Spearman), how far apart they are on the holdout, and where the pick lands
among them (``search-noise.json``): a search that compares more configurations on the same
validation examples picks more of their noise when those cannot tell the configurations apart.

Writes ``benchmarks/results/search.json`` (``search-partial.json`` with ``--methods``) and prints a
table. Runs ``--jobs`` (task, seed) pairs at once, each in its own process with BLAS and torch on
one thread. On a shared 2-core machine the six methods take about 8 minutes per seed: ``--seeds
3`` (about 25 minutes) is the quick check, the 5 seeds of the committed results about 40::

    python benchmarks/bench_search.py [--seeds 5] [--tasks mlp gbm torch] [--methods ...] [--jobs 2]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread per process: honest timings on a shared machine

import argparse  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from _split import split_scaled  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

import nbtune  # noqa: E402
from nbtune.cell.annotations import parse_cell  # noqa: E402
from nbtune.cell.space import suggest  # noqa: E402
from nbtune.run.tpe import TPESampler as BudgetTPE  # noqa: E402
from nbtune.store.attrs import ATTR  # noqa: E402

EPOCHS = 27  # R: the epochs of a full-length trial
ETA = 3


# --- the tasks -------------------------------------------------------------------------------
@dataclass
class Task:
    name: str
    description: str
    space: str  # the cell's "# tune:" lines
    trainer: Callable[[dict[str, Any], int, np.ndarray, np.ndarray, np.ndarray], Any]
    dataset: Callable[[int], tuple[np.ndarray, np.ndarray]]
    sizes: tuple[int, int, int]  # train, validation, holdout
    params: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.params = parse_cell(self.cell()).params

    def cell(self) -> str:
        names = ", ".join(f"{line.split('=')[0].strip()}={line.split('=')[0].strip()}" for line in self.lines())
        return (
            self.space
            + f"model = make(dict({names}))\n"
            + f"for epoch in range({EPOCHS}):  # tune: epochs\n"
            + "    model.epoch()\n"
            + "    val_acc = model.score(X_val, y_val)\n"
        )

    def lines(self) -> list[str]:
        return [line for line in self.space.splitlines() if line.strip()]


class SkMLP:
    def __init__(self, p: dict[str, Any], seed: int, X: np.ndarray, y: np.ndarray, classes: np.ndarray) -> None:
        from sklearn.neural_network import MLPClassifier

        self.X, self.y, self.classes = X, y, classes
        self.model = MLPClassifier(
            solver="adam",
            learning_rate_init=p["lr"],
            alpha=p["alpha"],
            hidden_layer_sizes=(int(p["width"]),) * int(p["depth"]),
            batch_size=int(p["batch"]),
            beta_1=p["beta_1"],
            random_state=seed,
        )

    def epoch(self) -> None:
        self.model.partial_fit(self.X, self.y, classes=self.classes)

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(self.model.score(X, y))


class Boosting:
    ROUNDS = 4  # boosting rounds per "epoch"

    def __init__(self, p: dict[str, Any], seed: int, X: np.ndarray, y: np.ndarray, classes: np.ndarray) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.X, self.y = X, y
        self.model = HistGradientBoostingClassifier(
            learning_rate=p["learning_rate"],
            max_leaf_nodes=int(p["leaves"]),
            min_samples_leaf=int(p["min_leaf"]),
            l2_regularization=p["l2"],
            max_features=p["features"],
            max_iter=0,
            warm_start=True,
            early_stopping=False,
            random_state=seed,
        )

    def epoch(self) -> None:
        self.model.max_iter += self.ROUNDS
        self.model.fit(self.X, self.y)

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(self.model.score(X, y))


class TorchNet:
    def __init__(self, p: dict[str, Any], seed: int, X: np.ndarray, y: np.ndarray, classes: np.ndarray) -> None:
        import torch

        torch.set_num_threads(1)
        torch.manual_seed(seed)
        width, drop = int(p["width"]), float(p["dropout"])
        self.net = torch.nn.Sequential(
            torch.nn.Linear(X.shape[1], width),
            torch.nn.ReLU(),
            torch.nn.Dropout(drop),
            torch.nn.Linear(width, width),
            torch.nn.ReLU(),
            torch.nn.Dropout(drop),
            torch.nn.Linear(width, len(classes)),
        )
        self.opt = torch.optim.SGD(
            self.net.parameters(), lr=p["lr"], momentum=p["momentum"], weight_decay=p["weight_decay"]
        )
        self.X = torch.as_tensor(X, dtype=torch.float32)
        self.y = torch.as_tensor(y, dtype=torch.long)
        self.batch = int(p["batch"])
        self.gen = torch.Generator().manual_seed(seed)

    def epoch(self) -> None:
        import torch

        self.net.train()
        order = torch.randperm(len(self.X), generator=self.gen)
        loss_fn = torch.nn.functional.cross_entropy
        for i in range(0, len(order), self.batch):
            idx = order[i : i + self.batch]
            self.opt.zero_grad()
            loss = loss_fn(self.net(self.X[idx]), self.y[idx])
            if not torch.isfinite(loss):
                return  # diverged: the weights are NaN and the accuracy says so
            loss.backward()
            self.opt.step()

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        import torch

        self.net.eval()
        with torch.no_grad():
            pred = self.net(torch.as_tensor(X, dtype=torch.float32)).argmax(1).numpy()
        return float((pred == y).mean())


def _mlp_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=n, n_features=20, n_informative=10, n_redundant=4, n_classes=4,
        n_clusters_per_class=3, class_sep=0.8, flip_y=0.03, random_state=0,
    )  # fmt: skip


def _gbm_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=n, n_features=30, n_informative=10, n_redundant=5, n_classes=2,
        n_clusters_per_class=6, class_sep=0.6, flip_y=0.05, random_state=1,
    )  # fmt: skip


def _torch_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=n, n_features=32, n_informative=16, n_redundant=4, n_classes=6,
        n_clusters_per_class=2, class_sep=1.0, flip_y=0.02, random_state=2,
    )  # fmt: skip


TASKS = {
    "mlp": Task(
        "mlp",
        "MLPClassifier (adam), partial_fit per epoch; make_classification, 20 features, 4 classes; 3600 train, 1200 validation",
        "lr = 1e-3  # tune: loguniform(1e-5, 1e-1)\n"
        "alpha = 1e-4  # tune: loguniform(1e-7, 1e-1)\n"
        "width = 64  # tune: logint(16, 256)\n"
        "depth = 2  # tune: int(1, 3)\n"
        "batch = 64  # tune: choice(32, 64, 128, 256)\n"
        "beta_1 = 0.9  # tune: uniform(0.5, 0.99)\n",
        SkMLP,
        _mlp_data,
        (3600, 1200, 6000),
    ),
    "gbm": Task(
        "gbm",
        f"HistGradientBoostingClassifier, {Boosting.ROUNDS} boosting rounds per epoch (warm start); "
        "make_classification, 30 features, 2 classes, 12 clusters; 1800 train, 900 validation",
        "learning_rate = 0.1  # tune: loguniform(0.005, 0.5)\n"
        "leaves = 31  # tune: logint(4, 256)\n"
        "min_leaf = 20  # tune: logint(1, 200)\n"
        "l2 = 1e-3  # tune: loguniform(1e-6, 10.0)\n"
        "features = 1.0  # tune: uniform(0.2, 1.0)\n",
        Boosting,
        _gbm_data,
        (1800, 900, 5000),
    ),
    "torch": Task(
        "torch",
        "PyTorch MLP (2 hidden layers, dropout), SGD with momentum; make_classification, 32 features, 6 classes; 1800 train, 900 validation",
        "lr = 0.01  # tune: loguniform(1e-4, 1.0)\n"
        "momentum = 0.9  # tune: uniform(0.0, 0.99)\n"
        "weight_decay = 1e-4  # tune: loguniform(1e-7, 1e-2)\n"
        "width = 64  # tune: logint(16, 256)\n"
        "dropout = 0.1  # tune: uniform(0.0, 0.6)\n"
        "batch = 64  # tune: choice(16, 32, 64, 128)\n",
        TorchNet,
        _torch_data,
        (1800, 900, 5000),
    ),
}
SUITE = list(TASKS)  # the tasks run by default; the ones below only when named in --tasks
# Gradient boosting with four times the validation examples (the train and holdout sizes kept): is
# the default's gap on ``gbm`` the validation split's noise (--noise), or the search's?
TASKS["gbm-val3600"] = Task(
    "gbm-val3600",
    TASKS["gbm"].description.replace("900 validation", "3600 validation"),
    TASKS["gbm"].space,
    Boosting,
    _gbm_data,
    (1800, 3600, 5000),
)


def split(task: Task, seed: int) -> dict[str, Any]:
    """Train/validation/holdout of the task's sizes, stratified and drawn by the seed; standardised
    on train. The holdout is large (5000-6000 examples), so that it measures the incumbent to within
    about half a point; training and validation are the size a search pays for."""
    n_tr, n_val, n_ho = task.sizes
    X, y = task.dataset(n_tr + n_val + n_ho)
    return split_scaled(X, y, seed, first={"train_size": n_tr}, second={"train_size": n_val})


def retrain(task: Task, params: dict[str, Any], d: dict[str, Any], seed: int) -> tuple[float, float]:
    """(validation, holdout) accuracy of ``params`` trained from scratch for all epochs."""
    model = task.trainer(params, seed, d["X_train"], d["y_train"], d["classes"])
    for _ in range(EPOCHS):
        model.epoch()
    return model.score(d["X_val"], d["y_val"]), model.score(d["X_holdout"], d["y_holdout"])


# --- the methods -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """What every method of a run gets: ``epochs`` of training (the search runs until its trials
    spent them, and its history is cut there), or ``trials`` configurations (``--trials N``: what
    a user asks for with ``%%tune -n N`` or Optuna's ``n_trials``; each method spends the epochs its
    own rule spends on them)."""

    epochs: int | None = None
    trials: int | None = None

    def __str__(self) -> str:
        return f"{self.trials} configurations" if self.trials else f"{self.epochs} epochs"

    @classmethod
    def of(cls, results: dict[str, Any]) -> Budget:
        """The budget a results file was run with (files from before ``--trials`` have only epochs)."""
        return cls(results["budget_epochs"], results.get("budget_trials"))


# A method returns its evaluations in the order they ended: (config key, params, epochs trained
# by this evaluation, validation accuracy if it trained all EPOCHS else None, when it ended
# (time.time(), None if unknown)). A configuration that ran several times (a retrain from
# scratch, a promotion) has one key.
Evaluation = tuple[Any, dict[str, Any], int, "float | None", "float | None"]


def run_nbtune(task: Task, d: dict[str, Any], seed: int, budget: Budget, **options: Any) -> list[Evaluation]:
    ns = {k: d[k] for k in ("X_val", "y_val")}
    ns["make"] = lambda p: task.trainer(p, seed, d["X_train"], d["y_train"], d["classes"])
    epochs = budget.epochs or 0
    n_trials = budget.trials or 4 * math.ceil(epochs / EPOCHS)
    with tempfile.TemporaryDirectory(prefix="nbtune-bench-search-") as store:
        while True:
            res = nbtune.tune(
                task.cell(),
                maximize="val_acc",
                n_trials=n_trials,
                seed=seed,
                store=store,
                name=f"bench-{task.name}-{seed}",
                user_ns=ns,
                view=None,
                n_jobs=1,
                **options,
            )
            trials = sorted(res.study.get_trials(deepcopy=True), key=lambda t: t.datetime_complete or t.datetime_start)
            root: dict[int, int] = {}
            evals: list[Evaluation] = []
            for t in trials:
                if t.state == TrialState.FAIL:
                    raise RuntimeError(f"{task.name} seed {seed}: trial {t.number} failed: {t.user_attrs}")
                promoted = t.user_attrs.get(ATTR.PROMOTED) or {}
                root[t.number] = root.get(promoted["from"], promoted["from"]) if promoted else t.number
                retrained = (t.user_attrs.get(ATTR.RESUME) or {}).get("retrain")
                trained = int(t.last_step or 0) - (0 if retrained else int(promoted.get("epoch", 0)))
                full = t.state == TrialState.COMPLETE and int(t.last_step or 0) >= EPOCHS
                end = t.datetime_complete.timestamp() if t.datetime_complete else None
                evals.append((root[t.number], t.params, trained, t.value if full else None, end))
            if budget.trials or sum(e[2] for e in evals) >= epochs:
                return evals
            n_trials += 2 * math.ceil(epochs / EPOCHS)


def _objective(task: Task, d: dict[str, Any], seed: int) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        p = {q.name: suggest(trial, q.name, q.distribution()) for q in task.params}
        model = task.trainer(p, seed, d["X_train"], d["y_train"], d["classes"])
        acc = 0.0
        for e in range(1, EPOCHS + 1):
            model.epoch()
            acc = model.score(d["X_val"], d["y_val"])
            trial.report(acc, e)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return acc

    return objective


def run_optuna(
    sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner
) -> Callable[[Task, dict[str, Any], int, Budget], list[Evaluation]]:
    def run(task: Task, d: dict[str, Any], seed: int, budget: Budget) -> list[Evaluation]:
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner, study_name=f"s{seed}")
        objective = _objective(task, d, seed)
        spent = 0
        evals: list[Evaluation] = []
        while len(evals) < budget.trials if budget.trials else spent < (budget.epochs or 0):
            study.optimize(objective, n_trials=1)
            t = study.trials[-1]
            trained = int(t.last_step or 0)
            spent += trained
            value = t.value if t.state == TrialState.COMPLETE else None
            evals.append((t.number, t.params, trained, value, time.time()))
        return evals

    return run


def _sampler_dists(task: Task) -> dict[str, Any]:
    """scikit-learn ``param_distributions`` equal to the cell's space."""
    from scipy import stats

    class LogInt:
        def __init__(self, low: int, high: int) -> None:
            self.dist = stats.loguniform(low - 0.5 + 1e-9 if low > 1 else low, high + 0.5)
            self.low, self.high = low, high

        def rvs(self, random_state: Any = None) -> int:
            return int(min(max(round(self.dist.rvs(random_state=random_state)), self.low), self.high))

    out: dict[str, Any] = {}
    for p in task.params:
        dist = p.distribution()
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            out[p.name] = list(dist.choices)
        elif isinstance(dist, optuna.distributions.IntDistribution):
            out[p.name] = LogInt(dist.low, dist.high) if dist.log else stats.randint(dist.low, dist.high + 1)
        elif dist.log:
            out[p.name] = stats.loguniform(dist.low, dist.high)
        else:
            out[p.name] = stats.uniform(dist.low, dist.high - dist.low)
    return out


def _estimator(task: Task, seed: int, classes: np.ndarray) -> Any:
    """A scikit-learn estimator over the task's trainer with ``epochs`` as a parameter."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    names = [p.name for p in task.params]

    class Epochs(ClassifierMixin, BaseEstimator):
        def __init__(self, epochs: int = EPOCHS, **params: Any) -> None:
            self.epochs = epochs
            for k, v in params.items():
                setattr(self, k, v)

        def fit(self, X: np.ndarray, y: np.ndarray) -> Epochs:
            self.model_ = task.trainer({n: getattr(self, n) for n in names}, seed, X, y, classes)
            for _ in range(int(self.epochs)):
                self.model_.epoch()
            self.classes_ = classes
            return self

        def score(self, X: np.ndarray, y: np.ndarray, sample_weight: Any = None) -> float:
            return self.model_.score(X, y)

    sig = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    sig += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in ["epochs", *names]]
    Epochs.__init__.__signature__ = inspect.Signature(sig)  # type: ignore[attr-defined]
    defaults = {p.name: p.default for p in task.params}
    return Epochs(epochs=EPOCHS, **defaults)


def halving_candidates(budget: int) -> int:
    """The most candidates whose successive-halving plan (retrain at 1, 3, 9, 27 epochs) fits the budget."""
    n = 1
    while True:
        k, r, total = n + 1, 1, 0
        while r <= EPOCHS:
            total += k * r
            k, r = math.ceil(k / ETA), r * ETA
        if total > budget:
            return n
        n += 1


def run_halving(task: Task, d: dict[str, Any], seed: int, budget: Budget) -> list[Evaluation]:
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingRandomSearchCV, PredefinedSplit

    X = np.concatenate([d["X_train"], d["X_val"]])
    y = np.concatenate([d["y_train"], d["y_val"]])
    fold = np.r_[np.full(len(d["X_train"]), -1), np.zeros(len(d["X_val"]))]
    search = HalvingRandomSearchCV(
        _estimator(task, seed, d["classes"]),
        _sampler_dists(task),
        n_candidates=budget.trials or halving_candidates(budget.epochs or 0),
        resource="epochs",
        # N configurations: scikit-learn's own way to end at the full 27 epochs with fewer than 27
        # candidates ("exhaust" starts higher: 3 epochs for 9-26); with 1 it would end at 9
        min_resources="exhaust" if budget.trials else 1,
        max_resources=EPOCHS,
        factor=ETA,
        cv=PredefinedSplit(fold),
        refit=False,
        random_state=seed,
        n_jobs=1,
        error_score=0.0,
    )
    search.fit(X, y)
    cv = search.cv_results_
    evals: list[Evaluation] = []
    for i in np.argsort(cv["iter"], kind="stable"):
        # scikit-learn adds the resource to a candidate's parameters: without it, one key per configuration
        params = {k: v for k, v in cv["params"][i].items() if k != "epochs"}
        r = int(cv["n_resources"][i])
        key = tuple(sorted(params.items()))
        evals.append((key, params, r, float(cv["mean_test_score"][i]) if r == EPOCHS else None, None))
    return evals


def nbtune_variant(name: str) -> Callable[[Task, dict[str, Any], int, Budget], list[Evaluation]]:
    """``nbtune:key=value,...``: nbtune with options (values are JSON, or strings), e.g.
    ``nbtune:sampler=random`` or ``nbtune:stop_only=true``: how an alternative default is evaluated."""
    options = options_of(name)
    return lambda task, d, s, b: run_nbtune(task, d, s, b, **options)


def options_of(name: str) -> dict[str, Any]:
    """The options of ``nbtune:key=value,...`` (values are JSON, or strings)."""
    options: dict[str, Any] = {}
    for pair in name.partition(":")[2].split(","):
        key, _, value = pair.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def run_baseline_competes(task: Task, d: dict[str, Any], seed: int, budget: Budget) -> list[Evaluation]:
    """``experiment:baseline-competes``: the default with its baseline (trial 0, the cell's defaults)
    paused at the rungs like any other trial, where nbtune always trains it to the end (27 epochs:
    a tenth of a 270-epoch budget). Measures what that reference point costs the search."""
    from unittest import mock

    from nbtune import _compat

    at_start = _compat.attrs_at_start

    def without_baseline(trial: optuna.Trial) -> dict[str, Any]:
        return {k: v for k, v in at_start(trial).items() if k != ATTR.BASELINE}

    with mock.patch.object(_compat, "attrs_at_start", without_baseline):  # the trials run on this process
        return run_nbtune(task, d, seed, budget)


def methods(
    seed: int, extra: tuple[str, ...] = ()
) -> dict[str, Callable[[Task, dict[str, Any], int, Budget], list[Evaluation]]]:
    S = optuna.samplers
    P = optuna.pruners
    experiments = {
        "experiment:baseline-competes": run_baseline_competes,
        # what optuna.create_study() gives a script that reports every epoch: TPE and the median rule
        "optuna-defaults": run_optuna(S.TPESampler(seed=seed), P.MedianPruner()),
    }
    return (
        {n: nbtune_variant(n) for n in extra if n.startswith("nbtune:")}
        | {n: experiments[n] for n in extra if n in experiments}
        | {
            "nbtune": lambda task, d, s, b: run_nbtune(task, d, s, b),
            "optuna-random-sh": run_optuna(S.RandomSampler(seed=seed), P.SuccessiveHalvingPruner(1, ETA)),
            "optuna-tpe-hb": run_optuna(S.TPESampler(seed=seed), P.HyperbandPruner(1, EPOCHS, ETA)),
            "sklearn-halving": run_halving,
            "random-full": run_optuna(S.RandomSampler(seed=seed), P.NopPruner()),
            "tpe-full": run_optuna(S.TPESampler(seed=seed), P.NopPruner()),
        }
    )


# --- alternatives evaluated for the default (``--methods nbtune:sampler=NAME``) ---------------
class _Mixed(optuna.samplers.BaseSampler):
    """BOHB's safeguard: a fixed fraction of configurations drawn at random, the rest by ``model``."""

    def __init__(self, model: optuna.samplers.BaseSampler, fraction: float, seed: int | None) -> None:
        self._model, self._fraction, self._seed = model, fraction, seed or 0
        self._random = optuna.samplers.RandomSampler(seed=seed)

    def _is_random(self, trial: Any) -> bool:
        import random

        return random.Random(self._seed * 1_000_003 + trial.number).random() < self._fraction

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return self._model.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        return {} if self._is_random(trial) else self._model.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        sampler = self._random if self._is_random(trial) else self._model
        return sampler.sample_independent(study, trial, name, dist)

    def before_trial(self, study: Any, trial: Any) -> None:
        self._model.before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._model.after_trial(study, trial, state, values)


class _TPEAtBudget10(BudgetTPE):
    """Today's default with a floor: the model moves up to an epoch only once 10 configurations (TPE's
    startup count) reached it, so TPE never falls back to random draws (``tpe-budget10``)."""

    def observations_needed(self) -> int:
        return max(super().observations_needed(), 10)


def before_stopped_counted(trials: list[Any], n_min: int) -> list[Any]:
    """The default's view of the study until 2026-11-30: configurations stopped before the model's
    epoch, and diverged ones, left out of TPE's model altogether (now they are in its bad group)."""
    import copy
    from collections import Counter

    ended = (TrialState.COMPLETE, TrialState.PRUNED)
    if not any(t.intermediate_values for t in trials):
        return trials
    furthest: dict[Any, Any] = {}
    for t in trials:
        if t.state not in ended or (not t.intermediate_values and t.state != TrialState.COMPLETE):
            continue
        key = tuple(sorted(t.params.items()))
        seen = furthest.get(key)
        rank = (t.state == TrialState.COMPLETE, t.last_step or 0)
        if seen is None or rank > (seen.state == TrialState.COMPLETE, seen.last_step or 0):
            furthest[key] = t
    reached = Counter(step for t in furthest.values() for step in t.intermediate_values)
    budgets = [step for step, n in reached.items() if n >= n_min]
    if not budgets:
        return trials
    budget = max(budgets)
    out = [t for t in trials if t.state not in ended]
    for t in furthest.values():
        if budget in t.intermediate_values:
            value = t.intermediate_values[budget]
        elif t.state == TrialState.COMPLETE and t.value is not None and (t.last_step or 0) < budget:
            value = t.value
        else:
            continue
        if math.isfinite(value):
            seen = copy.copy(t)
            seen.state, seen.value = TrialState.COMPLETE, value
            out.append(seen)
    return sorted(out, key=lambda t: t.number)


class TPEBefore(BudgetTPE):
    """The default sampler until 2026-11-30 (``tpe-bohb-only``): :func:`before_stopped_counted`."""

    def _view(self, study: Any) -> Any:
        from nbtune import _compat

        if len(study.directions) > 1 or self._n_params == 0:
            return study
        n_min = self.observations_needed()
        return _compat.study_view(study, lambda trials: before_stopped_counted(trials, n_min))


def _register_alternatives() -> None:
    from nbtune.run.samplers import SamplerKind, register_sampler

    def tpe_random3(params: list[Any], seed: int | None) -> optuna.samplers.BaseSampler:
        return _Mixed(optuna.samplers.TPESampler(seed=seed, multivariate=True), 1 / 3, seed)

    def tpe_budget10(params: list[Any], seed: int | None) -> optuna.samplers.BaseSampler:
        return _TPEAtBudget10(seed=seed, multivariate=True)

    def tpe_bohb_gamma(params: list[Any], seed: int | None) -> optuna.samplers.BaseSampler:
        # BOHB's good group: its top 15 %, and never fewer than d + 1 observations (Falkner et al.)
        d = len(params)
        return BudgetTPE(seed=seed, multivariate=True, gamma=lambda n: min(n - 1, max(d + 1, math.ceil(0.15 * n))))

    def tpe_optuna(params: list[Any], seed: int | None) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)

    register_sampler(SamplerKind("tpe-random3", tpe_random3, help="benchmark alternative: BOHB's random third"))
    register_sampler(SamplerKind("tpe-budget10", tpe_budget10, help="benchmark alternative: no random bursts"))
    register_sampler(
        SamplerKind(
            "tpe-bohb-gamma",
            tpe_bohb_gamma,
            help="benchmark alternative: BOHB's view and its good group of at least d + 1",
        )
    )
    register_sampler(SamplerKind("tpe-optuna", tpe_optuna, help="the previous default: Optuna's multivariate TPE"))
    register_sampler(
        SamplerKind(
            "tpe-bohb-only",
            lambda params, seed: TPEBefore(seed=seed, multivariate=True),
            help="the default until 2026-11-30: stopped and diverged configurations left out of the model",
        )
    )


_register_alternatives()


# --- one (task, seed): every method --------------------------------------------------------
def within_budget(evals: list[Evaluation], budget: int | None) -> Iterator[Evaluation]:
    """The evaluations, in the order they ended, until the budget of epochs is spent: a configuration
    counts once it ended within it (``None``: a budget of configurations, every evaluation counts)."""
    spent = 0
    for e in evals:
        spent += e[2]
        if budget is not None and spent > budget:
            return
        yield e


def analyse(evals: list[Evaluation], budget: int | None, started: float) -> dict[str, Any]:
    """The history within the budget."""
    spent, best, best_params, ended = 0, -math.inf, None, time.time()
    history: list[tuple[int, float]] = []
    epochs_of: dict[Any, int] = {}
    full: set[Any] = set()
    for key, params, trained, val, end in within_budget(evals, budget):
        spent += trained
        ended = end or ended
        epochs_of[key] = epochs_of.get(key, 0) + trained
        if val is not None:
            full.add(key)
            if val > best:
                best, best_params = val, params
        history.append((spent, best))
    return {
        "epochs": spent,
        "best_val": None if best_params is None else best,
        "best_params": best_params,
        "history": history,
        "configurations": len(epochs_of),
        "full_length": len(full),
        "full_share": sum(epochs_of[k] for k in full) / spent if spent else None,
        "seconds": ended - started,  # until the last evaluation within the budget ended
    }


def run_pair(task_name: str, seed: int, budget: Budget, names: list[str]) -> dict[str, Any]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = TASKS[task_name]
    d = split(task, seed)
    out: dict[str, Any] = {}
    for name in names:
        run = methods(seed, tuple(names))[name]
        started = time.time()
        a = analyse(run(task, d, seed, budget), budget.epochs, started)
        if a["best_params"] is not None:
            a["holdout"] = retrain(task, a["best_params"], d, seed)[1]
        else:
            a["holdout"] = None
        out[name] = a
        print(
            f"  {task_name:6s} seed {seed} {name:17s} val {a['best_val'] or math.nan:.4f} holdout "
            f"{a['holdout'] or math.nan:.4f} full share {a['full_share']:.0%} configs {a['configurations']:3d} "
            f"{a['seconds']:5.1f}s",
            flush=True,
        )
    top = max(a["best_val"] for a in out.values() if a["best_val"] is not None)
    for a in out.values():
        a["history"] = [h for i, h in enumerate(a["history"]) if i == 0 or h[1] != a["history"][i - 1][1]]
        a["to_1pp"] = to_1pp(a["history"], top)
    return {"task": task_name, "seed": seed, "methods": out}


def to_1pp(history: list[Any], top: float) -> int | None:
    """Epochs spent until the best-so-far validation accuracy came within 1 point of ``top``."""
    return next((c for c, b in history if b >= top - 0.01), None)


def noise_pair(task_name: str, seed: int, budget: int) -> dict[str, Any]:
    """Can the validation split tell the default's finished configurations apart? Runs the default
    search and retrains every configuration it trained to the end (within the budget) to measure
    its holdout accuracy: how the validation ranking agrees with the holdout's (Spearman), how far
    apart the finished configurations are on the holdout, and where the pick lands among them."""
    from scipy.stats import spearmanr

    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = TASKS[task_name]
    d = split(task, seed)
    finished = {key: (val, params) for key, params, _, val, _ in within_budget(run_nbtune(task, d, seed, Budget(epochs=budget)), budget)
                if val is not None}  # fmt: skip
    vals = [v for v, _ in finished.values()]
    holdouts = [retrain(task, p, d, seed)[1] for _, p in finished.values()]
    pick = int(np.argmax(vals))  # the first best, as the search's incumbent
    out = {
        "task": task_name,
        "seed": seed,
        "finished": len(vals),
        "spearman_val_holdout": float(spearmanr(vals, holdouts)[0]) if len(vals) > 2 else None,
        "holdout_of_pick": holdouts[pick],
        "best_holdout": max(holdouts),
        "holdout_spread": max(holdouts) - min(holdouts),
        "pick_rank_on_holdout": 1 + sum(h > holdouts[pick] for h in holdouts),
        "val_of_pick": vals[pick],
    }
    # The rungs: 30 random configurations trained to the end, their validation accuracy at each rung
    # against the end's, and whether the best at the end was in the top third there (kept by halving).
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed), pruner=optuna.pruners.NopPruner()
    )
    study.optimize(_objective(task, d, seed), n_trials=30)  # every trial reports all its epochs
    a = np.array([[t.intermediate_values[e] for e in range(1, EPOCHS + 1)] for t in study.trials])
    top_end = int(np.argmax(a[:, -1]))
    out["rungs"] = {
        str(r): {
            "spearman_with_end": float(spearmanr(a[:, r - 1], a[:, -1])[0]),
            "best_at_end_in_top_third": top_end in np.argsort(-a[:, r - 1])[: len(a) // ETA],
        }
        for r in (1, ETA, ETA**2)
    }
    print(
        f"  {task_name:6s} seed {seed:2d}: {out['finished']:2d} finished, Spearman(val, holdout) "
        f"{out['spearman_val_holdout'] or math.nan:+.2f}, holdout spread {100 * out['holdout_spread']:.1f} pt, the pick "
        f"{out['holdout_of_pick']:.4f} (rank {out['pick_rank_on_holdout']} on the holdout; best {out['best_holdout']:.4f}); "
        "rungs: "
        + ", ".join(
            f"epoch {r} Spearman with {EPOCHS} {v['spearman_with_end']:+.2f}"
            + ("" if v["best_at_end_in_top_third"] else " (the best was cut)")
            for r, v in out["rungs"].items()
        ),
        flush=True,
    )
    return out


def noise(tasks: list[str], seeds: range, budget: int, jobs: int, out_dir: Path) -> None:
    pairs = [(task, seed) for seed in seeds for task in tasks]
    with ProcessPoolExecutor(jobs) as pool:
        rows = list(pool.map(noise_pair, *zip(*pairs), [budget] * len(pairs)))
    summary = {}
    print("\nthe default's finished configurations, medians over seeds")
    for task in tasks:
        mine = [r for r in rows if r["task"] == task]
        summary[task] = {
            k: statistics.median(r[k] for r in mine)
            for k in ("finished", "spearman_val_holdout", "holdout_spread", "pick_rank_on_holdout")
        } | {"pick_minus_best_holdout": statistics.median(r["holdout_of_pick"] - r["best_holdout"] for r in mine)}
        summary[task]["rungs"] = {
            r: {
                "spearman_with_end": statistics.median(x["rungs"][r]["spearman_with_end"] for x in mine),
                "best_at_end_cut": sum(not x["rungs"][r]["best_at_end_in_top_third"] for x in mine),
            }
            for r in mine[0]["rungs"]
        }
        s = summary[task]
        print(
            f"{task:6s} finished {s['finished']:4.1f}  Spearman(val, holdout) {s['spearman_val_holdout']:+.2f}  "
            f"holdout spread {100 * s['holdout_spread']:.1f} pt  pick's holdout rank {s['pick_rank_on_holdout']:.0f}, "
            f"{100 * s['pick_minus_best_holdout']:+.2f} pt from the best finished; "
            + ", ".join(
                f"epoch {r} Spearman with {EPOCHS} {v['spearman_with_end']:+.2f} (best cut on {v['best_at_end_cut']})"
                for r, v in s["rungs"].items()
            )
        )
    payload = {
        "what": "whether each task's validation split can rank the configurations the default trained to the end",
        "command": f"python benchmarks/bench_search.py --noise --seeds {len(seeds)} --first-seed {seeds.start} "
        f"--tasks {' '.join(tasks)} --budget {budget} --jobs {jobs}",
        "summary": summary,
        "runs": rows,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "search-noise.json"
    path.write_text(json.dumps(payload, indent=1))
    print(f"wrote {path}")


def refresh_to_1pp(row: dict[str, Any]) -> None:
    """A pair's methods may come from separate runs: measure each against the best final validation
    accuracy of all of them (a method run before histories were kept keeps its stored count)."""
    top = max(a["best_val"] for a in row["methods"].values() if a["best_val"] is not None)
    for a in row["methods"].values():
        if "history" in a:
            a["to_1pp"] = to_1pp(a["history"], top)


def summarise(rows: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    def spread(xs: list[float | None], low_is_worse: bool = True) -> dict[str, float | None]:
        ys = [x for x in xs if x is not None]
        if not ys:
            return {"median": None, "worst": None, "best": None}
        return {"median": statistics.median(ys), "worst": min(ys) if low_is_worse else max(ys),
                "best": max(ys) if low_is_worse else min(ys)}  # fmt: skip

    out: dict[str, Any] = {}
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        out[task] = {}
        for m in names:
            runs = [r["methods"][m] for r in mine]
            # a re-run of one method alone has no to_1pp: it compares with the others' runs of the pair
            to = [math.inf if r["to_1pp"] is None else r["to_1pp"] for r in runs if "to_1pp" in r]
            med_to = statistics.median(to) if len(to) == len(runs) else math.inf
            out[task][m] = {
                "holdout": spread([r["holdout"] for r in runs]),
                "val": spread([r["best_val"] for r in runs]),
                # how much the incumbent's validation accuracy overstated its holdout accuracy
                "optimism": statistics.median(
                    r["best_val"] - r["holdout"] for r in runs if r["best_val"] is not None and r["holdout"] is not None
                ),
                "to_1pp": {
                    "median": None if math.isinf(med_to) else med_to,
                    "reached": f"{sum(x is not None and not math.isinf(x) for x in to)}/{len(runs)}"
                    if len(to) == len(runs)
                    else "n/a",
                },
                "full_share": statistics.median(r["full_share"] for r in runs),
                "epochs": statistics.median(r["epochs"] for r in runs),
                "configurations": statistics.median(r["configurations"] for r in runs),
                "seconds": statistics.median(r["seconds"] for r in runs),
            }
    return out


def verdict(summary: dict[str, Any], default: str = "nbtune") -> dict[str, Any]:
    """Issue 14's rule: median holdout >= every anchor's, worst >= every anchor's worst - 1 pp."""
    out = {}
    for task, s in summary.items():
        me = s[default]["holdout"]
        anchors = {m: v["holdout"] for m, v in s.items() if m != default}
        out[task] = {
            "median_at_least_every_anchor": all(me["median"] >= a["median"] for a in anchors.values()),
            "worst_within_1pp_of_every_anchor": all(me["worst"] >= a["worst"] - 0.01 for a in anchors.values()),
        }
    return out


def paired(rows: list[dict[str, Any]], default: str = "nbtune") -> dict[str, Any]:
    """Seed by seed, the default's holdout accuracy minus each other method's (the two searched the
    same split with the same seed): the mean difference, its standard error, and on how many seeds
    the default was ahead and behind. Medians and worst seeds of separate columns move with the
    splits' luck; a paired difference larger than twice its standard error is one the benchmark
    can tell apart from noise."""
    out: dict[str, Any] = {}
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r["methods"] for r in rows if r["task"] == task and default in r["methods"]]
        out[task] = {}
        for m in dict.fromkeys(n for ms in mine for n in ms if n != default):
            diffs = [ms[default]["holdout"] - ms[m]["holdout"] for ms in mine if m in ms]
            if len(diffs) < 2:
                continue
            mean, se = statistics.mean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
            out[task][m] = {
                "seeds": len(diffs),
                "mean": mean,
                "standard_error": se,
                "ahead": sum(x > 0 for x in diffs),
                "behind": sum(x < 0 for x in diffs),
                "reading": "ahead" if mean > 2 * se else "behind" if mean < -2 * se else "not told apart",
            }
    return out


def print_paired(pairs: dict[str, Any], default: str = "nbtune") -> None:
    print(f"\nseed by seed: {default}'s holdout minus each method's (mean +- standard error, in points)")
    width = max((len(m) for ms in pairs.values() for m in ms), default=0)
    for task, ms in pairs.items():
        for m, p in ms.items():
            print(
                f"{task:6s} {m:{width}s} {100 * p['mean']:+6.2f} +- {100 * p['standard_error']:4.2f}   ahead on "
                f"{p['ahead']:2d}, behind on {p['behind']:2d} of {p['seeds']:2d} seeds: {p['reading']}"
            )


def report(files: list[Path], default: str) -> None:
    """The pooled table and the paired differences of earlier results: no search is run. A (task,
    seed) pair held by several files is taken from the first. ``default`` may list several names,
    ``A|B``: in each pair the first it holds is the default (a re-run of the default with newer
    code, where there is one)."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    budgets = set()
    for f in files:
        data = json.loads(f.read_text())
        budgets.add(Budget.of(data))
        for r in data["runs"]:
            rows.setdefault((r["task"], r["seed"]), r)
    candidates = default.split("|")
    default = candidates[0]
    pooled = []
    for r in rows.values():
        chosen = next((r["methods"][c] for c in candidates if c in r["methods"]), None)
        ms = {m: v for m, v in r["methods"].items() if m not in candidates}
        pooled.append(r | {"methods": ({default: chosen} if chosen else {}) | ms})
    for r in pooled:
        refresh_to_1pp(r)
    names = [m for m in methods(0) if all(m in r["methods"] for r in pooled)]
    if default not in names:
        names.insert(0, default)
    seeds = len({s for _, s in rows})
    print(f"{len(pooled)} (task, seed) pairs from {', '.join(map(str, files))}")
    summary = summarise([r for r in pooled if all(m in r["methods"] for m in names)], names)
    print_table(summary, verdict(summary, default), seeds, budgets.pop() if len(budgets) == 1 else None)
    print_paired(paired(pooled, default), default)


def print_table(summary: dict[str, Any], verdicts: dict[str, Any], seeds: int, budget: Budget | None = None) -> None:
    w = max([17] + [len(m) for s in summary.values() for m in s])
    head = (
        f"{'task':6s} {'method':{w}s} {'holdout median':>14s} {'worst':>6s} {'best':>6s} {'val med':>7s} {'val-ho':>6s} "
        f"{'to 1 pp':>11s} {'full share':>10s} {'epochs':>6s} {'configs':>7s} {'time':>6s}"
    )
    each = f"; {budget} each" if budget else ""
    print(f"\n{seeds} seeds{each}; holdout accuracy of the final incumbent retrained for {EPOCHS} epochs")
    print(head)
    print("-" * len(head))
    for task, s in summary.items():
        for m, v in s.items():
            h, to = v["holdout"], v["to_1pp"]
            reach = "never" if to["median"] is None else f"{to['median']:.0f}"
            t = "n/a" if to["reached"] == "n/a" else f"{reach} ({to['reached']})"
            print(
                f"{task:6s} {m:{w}s} {h['median']:14.4f} {h['worst']:6.4f} {h['best']:6.4f} {v['val']['median']:7.4f} "
                f"{100 * v['optimism']:+6.2f} "
                f"{t:>11s} {v['full_share']:10.0%} {v.get('epochs', math.nan):6.0f} {v['configurations']:7.0f} "
                f"{v['seconds']:5.0f}s"
            )
        vd = verdicts.get(task)
        if vd:
            print(
                f"{'':6s} default: median >= every anchor: {'yes' if vd['median_at_least_every_anchor'] else 'NO'}; "
                f"worst >= every anchor's worst - 1 pp: {'yes' if vd['worst_within_1pp_of_every_anchor'] else 'NO'}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="how many seeds (default 5)")
    ap.add_argument(
        "--first-seed", type=int, default=0, help="seeds FIRST..FIRST+N-1 (default 0): a later range is out of sample"
    )
    ap.add_argument(
        "--reuse",
        type=Path,
        nargs="+",
        default=[],
        help="earlier results (JSON): a (task, seed) pair they hold with every method is not run again "
        "(a search's accuracies depend on its seed only)",
    )
    ap.add_argument("--tasks", nargs="+", default=SUITE, choices=list(TASKS))
    ap.add_argument("--methods", nargs="+", default=None, help="default: all")
    ap.add_argument("--budget", type=int, default=30 * EPOCHS, help=f"epochs per search (default 30 x {EPOCHS})")
    ap.add_argument(
        "--trials",
        type=int,
        default=None,
        help="a budget of N configurations per search instead of epochs (nbtune's default -n is 20): "
        "writes search-trials{N}.json",
    )
    ap.add_argument("--jobs", type=int, default=2, help="(task, seed) pairs run at once (default 2)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    ap.add_argument(
        "--report",
        type=Path,
        nargs="+",
        default=None,
        help="run nothing: print the pooled table and the seed-by-seed differences of these results (JSON)",
    )
    ap.add_argument(
        "--default",
        default="nbtune",
        help="with --report: the method the others are compared with ('A|B': A where a pair holds it, else B)",
    )
    ap.add_argument(
        "--noise",
        action="store_true",
        help="measure instead whether the validation split ranks the default's finished configurations as the "
        "holdout does (writes search-noise.json)",
    )
    args = ap.parse_args()
    if args.noise:
        noise(args.tasks, range(args.first_seed, args.first_seed + args.seeds), args.budget, args.jobs, args.out)
        return
    if args.report:
        report(args.report, args.default)
        return
    names = args.methods or list(methods(0))
    budget = Budget(trials=args.trials) if args.trials else Budget(epochs=args.budget)
    t0 = time.perf_counter()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    pairs = [(task, seed) for seed in seeds for task in args.tasks]
    earlier: dict[tuple[str, int], dict[str, Any]] = {}
    for f in args.reuse:
        old = json.loads(f.read_text())
        if Budget.of(old) != budget:
            sys.exit(f"--reuse {f}: its budget was {Budget.of(old)}, not {budget}")
        for r in old["runs"]:
            if (r["task"], r["seed"]) in pairs and set(names) <= set(r["methods"]):
                earlier[(r["task"], r["seed"])] = r
    todo = [p for p in pairs if p not in earlier]
    print(f"{len(pairs) - len(todo)} (task, seed) pairs reused, {len(todo)} to run", flush=True)
    fresh: dict[tuple[str, int], dict[str, Any]] = {}
    if todo:
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = pool.map(run_pair, *zip(*todo), [budget] * len(todo), [names] * len(todo))
            fresh = dict(zip(todo, runs))
    rows = [earlier.get(p) or fresh[p] for p in pairs]
    summary = summarise(rows, names)
    verdicts = verdict(summary) if "nbtune" in names and len(names) > 1 else {}
    print_table(summary, verdicts, args.seeds, budget)
    pairs_ = paired(rows) if "nbtune" in names and len(names) > 1 else {}
    if pairs_:
        print_paired(pairs_)
    import sklearn
    import torch

    payload = {
        "what": f"nbtune's default search against the field's anchors at an equal budget ({budget}), per seed",
        "command": f"python benchmarks/bench_search.py --seeds {args.seeds} --first-seed {args.first_seed} --tasks {' '.join(args.tasks)} "
        + (f"--trials {budget.trials}" if budget.trials else f"--budget {budget.epochs}")
        + f" --jobs {args.jobs}"
        + (f" --methods {' '.join(names)}" if args.methods else "")
        + (f" --reuse {' '.join(map(str, args.reuse))}" if args.reuse else ""),
        "budget_epochs": budget.epochs,
        "budget_trials": budget.trials,
        "epochs_per_full_trial": EPOCHS,
        "tasks": {t: {"description": TASKS[t].description, "cell": TASKS[t].cell()} for t in args.tasks},
        "summary": summary,
        "verdict": verdicts,
        "paired": pairs_,
        "runs": rows,
        "seconds_total": time.perf_counter() - t0,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "nbtune": nbtune.__version__,
            "optuna": optuna.__version__,
            "sklearn": sklearn.__version__,
            "torch": torch.__version__,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"search-trials{budget.trials}.json" if budget.trials else "search.json"
    path = args.out / (name if args.methods is None else "search-partial.json")
    path.write_text(json.dumps(payload, indent=1, default=str))
    print(f"total {payload['seconds_total']:.0f}s; wrote {path}")


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    main()
