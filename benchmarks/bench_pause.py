"""Pause-and-promote against stop-only Hyperband at an equal epoch budget.

The same annotated cell, with its model declared as state (``# tune: state``), searched two ways
by nbtune's default (TPE sampler + Hyperband, r=1, R=27, eta=3, one job):

* ``pause``: the default when a cell declares state. A trial that is not (yet) in the top
  1/eta of the trials that reached a rung is paused (checkpointed) and continued from its
  checkpoint only if it ranks there later (successive halving as its papers define it).
* ``stop-only``: ``--stop-only``, Optuna's pruners: the first arrivals at a rung go on
  unopposed, and a trial that ranks low when it arrives is stopped for good.

The task (6 hyperparameters, as in issue 14): ``make_classification(n_samples=10000,
n_features=20, n_informative=10, n_redundant=4, n_classes=4, n_clusters_per_class=3,
class_sep=0.8, flip_y=0.03)``, split 60/20/20 train/validation/holdout (stratified, fixed), an
``MLPClassifier`` (adam) trained epoch by epoch with ``partial_fit``, searched over the learning
rate, L2 penalty, width, depth, batch size and Adam's beta_1.

Each search runs until its trials have used more than the budget (default 810 epochs = 30
full trials); the history is then cut at the budget, in trial order (one job, so trials run
one after the other): a trial counts if it *ended* within the budget. A continuation's
epochs are those after its pause (the replayed curve is not trained again). Per method and
seed it records:

* ``full_share``: the share of the epochs spent on configurations that reached R (all their
  epochs, before and after pauses), the measure issue 12 asks for;
* ``best_val``: the best validation accuracy of a complete trial within the budget, and
  ``holdout``: the holdout accuracy of that configuration retrained from scratch for R epochs
  (training is deterministic; ``retrain_matches`` checks that the retrained model reproduces
  the trial's validation accuracy);
* ``epochs_to_1pp``: epochs spent until the best-so-far came within 1 point of the method's
  final best; the number of configurations tried, complete, stopped/paused and promoted;
* ``seconds``: wall time of the trials within the budget.

Medians, worst and best over seeds are printed and written to ``benchmarks/results/pause.json``.
One process, BLAS on one thread; about 3 minutes per seed on a shared 2-core machine::

    python benchmarks/bench_pause.py [--seeds 5] [--budget 810] [--out DIR]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import optuna  # noqa: E402
from _split import split_scaled  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

import nbtune  # noqa: E402
from nbtune.store.attrs import ATTR  # noqa: E402

warnings.filterwarnings("ignore", category=ConvergenceWarning)

EPOCHS = 27
DATA_SEED = 0
MODEL_SEED = 0

CELL = f"""\
lr = 1e-3          # tune: loguniform(1e-5, 1e-1)
alpha = 1e-4       # tune: loguniform(1e-7, 1e-1)
width = 64         # tune: logint(16, 256)
depth = 2          # tune: int(1, 3)
batch = 64         # tune: choice(32, 64, 128, 256)
beta_1 = 0.9       # tune: uniform(0.5, 0.99)
model = make_model(lr, alpha, width, depth, batch, beta_1)  # tune: state
for epoch in range({EPOCHS}):      # tune: epochs
    model.partial_fit(X_train, y_train, classes=classes)
    val_acc = model.score(X_val, y_val)
"""

METHODS = {"pause": {}, "stop-only": {"stop_only": True}}


def make_model(lr: float, alpha: float, width: int, depth: int, batch: int, beta_1: float) -> MLPClassifier:
    return MLPClassifier(
        solver="adam",
        learning_rate_init=lr,
        alpha=alpha,
        hidden_layer_sizes=(int(width),) * int(depth),
        batch_size=int(batch),
        beta_1=beta_1,
        random_state=MODEL_SEED,
    )


def data() -> dict[str, Any]:
    X, y = make_classification(
        n_samples=10000,
        n_features=20,
        n_informative=10,
        n_redundant=4,
        n_classes=4,
        n_clusters_per_class=3,
        class_sep=0.8,
        flip_y=0.03,
        random_state=DATA_SEED,
    )
    return split_scaled(X, y, DATA_SEED, first={"test_size": 0.4}, second={"test_size": 0.5})


def retrain(params: dict[str, Any], d: dict[str, Any]) -> tuple[float, float]:
    model = make_model(
        params["lr"], params["alpha"], params["width"], params["depth"], params["batch"], params["beta_1"]
    )
    for _ in range(EPOCHS):
        model.partial_fit(d["X_train"], d["y_train"], classes=d["classes"])
    return model.score(d["X_val"], d["y_val"]), model.score(d["X_holdout"], d["y_holdout"])


def epochs_of(t: optuna.trial.FrozenTrial) -> int:
    """Epochs the trial trained: a continuation's replayed curve was trained by the paused trial."""
    return int(t.last_step or 0) - int(t.user_attrs.get(ATTR.PROMOTED, {}).get("epoch", 0))


def run_search(method: str, d: dict[str, Any], seed: int, budget: int) -> list[optuna.trial.FrozenTrial]:
    user_ns = {k: d[k] for k in ("X_train", "y_train", "X_val", "y_val", "classes")} | {"make_model": make_model}
    n_trials = 4 * math.ceil(budget / EPOCHS)
    with tempfile.TemporaryDirectory(prefix="nbtune-bench-pause-") as store:
        while True:
            res = nbtune.tune(
                CELL,
                maximize="val_acc",
                n_trials=n_trials,
                seed=seed,
                store=store,
                name=f"bench-seed{seed}",
                user_ns=user_ns,
                view=None,
                n_jobs=1,
                **METHODS[method],
            )
            trials = sorted(res.study.get_trials(deepcopy=True), key=lambda t: t.number)
            spent = sum(epochs_of(t) for t in trials)
            if spent >= budget:
                return trials
            n_trials += max(5, math.ceil((budget - spent) / max(spent / len(trials), 1)) + 5)


def analyse(trials: list[optuna.trial.FrozenTrial], budget: int, d: dict[str, Any]) -> dict[str, Any]:
    cum, best, best_trial = 0, -math.inf, None
    history: list[tuple[int, float]] = []
    used: list[optuna.trial.FrozenTrial] = []
    for t in trials:
        if t.state == TrialState.FAIL:
            raise RuntimeError(f"trial {t.number} failed: {t.user_attrs.get(ATTR.ERROR)}")
        if cum + epochs_of(t) > budget:
            break
        cum += epochs_of(t)
        used.append(t)
        if t.state == TrialState.COMPLETE and t.value is not None and t.value > best:
            best, best_trial = t.value, t
        history.append((cum, best))
    numbers = {t.number for t in used}
    # configurations that reached R, with every epoch any of their trials trained
    root = {}
    for t in used:
        p = t.user_attrs.get(ATTR.PROMOTED)
        root[t.number] = root.get(p["from"], p["from"]) if p else t.number
    full_roots = {root[t.number] for t in used if t.state == TrialState.COMPLETE}
    full_epochs = sum(epochs_of(t) for t in used if root[t.number] in full_roots)
    promoted = sum(1 for t in used if ATTR.PROMOTED in t.user_attrs and t.user_attrs[ATTR.PROMOTED]["from"] in numbers)
    out: dict[str, Any] = {
        "epochs_used": cum,
        "full_share": full_epochs / cum if cum else None,
        "configurations": len(used) - promoted,
        "complete": sum(1 for t in used if t.state == TrialState.COMPLETE),
        "promoted": promoted,
        "seconds": (used[-1].datetime_complete - used[0].datetime_start).total_seconds() if used else 0.0,
        "best_val": None,
        "holdout": None,
        "epochs_to_1pp": None,
    }
    if best_trial is not None:
        val, holdout = retrain(best_trial.params, d)
        out.update(
            best_val=best,
            holdout=holdout,
            retrain_matches=abs(val - best) < 1e-9,
            best_params=best_trial.params,
            epochs_to_1pp=next(c for c, b in history if b >= best - 0.01),
        )
    return out


def summarise(runs: list[dict[str, Any]], key: str) -> dict[str, float | None]:
    vals = [r[key] for r in runs if r[key] is not None]
    if not vals:
        return {"median": None, "worst": None, "best": None}
    worst, best = (max, min) if key in ("epochs_to_1pp", "seconds") else (min, max)
    return {"median": statistics.median(vals), "worst": worst(vals), "best": best(vals)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=30 * EPOCHS)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    d = data()
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        for method in METHODS:
            r = analyse(run_search(method, d, seed, args.budget), args.budget, d)
            r["seed"] = seed
            results[method].append(r)
            print(
                f"seed {seed} {method:9s} val {r['best_val']:.4f} holdout {r['holdout']:.4f} "
                f"full-length share {r['full_share']:.0%} configs {r['configurations']} "
                f"promoted {r['promoted']} {r['seconds']:.0f}s",
                flush=True,
            )
    summary = {
        m: {k: summarise(runs, k) for k in ("best_val", "holdout", "full_share", "epochs_to_1pp", "seconds")}
        | {"configurations": statistics.median(r["configurations"] for r in runs)}
        for m, runs in results.items()
    }
    per_seed = [
        {m: results[m][i]["holdout"] for m in METHODS} | {"seed": results["pause"][i]["seed"]}
        for i in range(args.seeds)
    ]
    wins = sum(1 for s in per_seed if s["pause"] >= s["stop-only"])
    print(f"\n{'method':10s} {'val med':>8s} {'holdout med/worst/best':>24s} {'full share':>10s} {'configs':>8s}")
    for m, s in summary.items():
        h = s["holdout"]
        print(
            f"{m:10s} {s['best_val']['median']:8.4f} {h['median']:8.4f}/{h['worst']:.4f}/{h['best']:.4f} "
            f"{s['full_share']['median']:10.0%} {s['configurations']:8.0f}"
        )
    print(f"pause-and-promote's holdout >= stop-only's on {wins} of {args.seeds} seeds")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "what": "pause-and-promote vs stop-only Hyperband (TPE, r=1, R=27, eta=3), equal epoch budget, one job",
        "budget_epochs": args.budget,
        "seeds": args.seeds,
        "summary": summary,
        "holdout_by_seed": per_seed,
        "pause_holdout_at_least_stop_only": f"{wins}/{args.seeds}",
        "runs": {m: [{k: v for k, v in r.items()} for r in runs] for m, runs in results.items()},
        "seconds_total": time.perf_counter() - t0,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "nbtune": nbtune.__version__},
    }
    (out / "pause.json").write_text(json.dumps(payload, indent=1, default=str))
    print(f"wrote {out / 'pause.json'} in {payload['seconds_total']:.0f}s")


if __name__ == "__main__":
    main()
