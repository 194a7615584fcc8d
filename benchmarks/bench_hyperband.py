"""Hyperband against full-fidelity search at an equal epoch budget: which finds better configurations?

Three ways of spending the same number of training epochs on one annotated cell:

* ``hyperband+tpe``: nbtune's default with a ``# tune: epochs`` loop (TPE sampler, Hyperband
  scheduler with r=1, R=27, eta=3). It runs trials until the epochs they used (the sum of
  each trial's ``last_step``, in trial order) exceed the budget; the history is then cut at
  the budget: a trial counts only if it *ended* within it.
* ``tpe``: full-fidelity TPE (``scheduler="none"``), every trial trains all 27 epochs.
* ``random``: full-fidelity random search (``sampler="random", scheduler="none"``).

The budget defaults to 27 epochs x 20 full trials = 540 epochs. Trial 0 of every study is the
cell's defaults (the baseline). Two small, real tasks, each split 60/20/20 (train /
validation / holdout, stratified, fixed seed), searched over ``lr`` (loguniform 1e-4..1),
``alpha`` (loguniform 1e-6..0.1) and ``hidden`` (logint 16..256):

1. ``digits``: scikit-learn's 8x8 digits, an ``MLPClassifier`` (adam) trained epoch by
   epoch with ``partial_fit``.
2. ``synthetic``: ``make_classification(n_samples=3000, n_features=40, n_informative=10,
   class_sep=0.8, flip_y=0.05)`` with the same MLP. Configurations differ more here (validation
   accuracy 0.5-0.86): too large learning rates are clearly bad, and small learning rates with
   wide layers keep improving until the last epoch (late bloomers).

For each task, method and seed (the seed is the sampler's; the data and the model's
``random_state`` are fixed) it records:

* the best validation accuracy as a function of epochs spent, on a grid of budgets
  (``curve``; ``null`` before the first trial that trained all 27 epochs finished). Only
  complete trials count: a stopped trial's accuracy at epoch 3 is not a model you can use;
* the final best validation accuracy within the budget;
* the HOLDOUT accuracy of that best configuration, retrained from scratch for 27 epochs on
  the train split (training is deterministic, so the retrained model reproduces the trial's
  validation accuracy; ``retrain_matches`` checks it);
* the epochs spent until the best-so-far reached a target: each ``--target`` fraction (0.98
  and 0.995) of the best validation accuracy any method reached on that task and seed
  (``null``: never);
* the wall time of the trials within the budget (first start to last end);
* for Hyperband, late bloomers: every trial it stopped is trained fully, and counted if it
  would have beaten Hyperband's best (``stopped_trials``); and, over the distinct
  configurations the full-fidelity searches trained, the Spearman correlation of the accuracy
  after 1, 3 and 9 epochs (Hyperband's rungs) with the accuracy after 27.

Summaries are medians over seeds (a median curve point is ``null`` unless every seed has a
value there; a target never reached counts as infinitely many epochs). TPE's first 10 trials
are random (Optuna's startup) with the same seed, so TPE and random coincide at first.
Writes ``benchmarks/results/hyperband.json`` and ``hyperband.png`` (one panel per task:
median best-so-far validation accuracy against epochs spent, min-max over seeds shaded) and
prints a table. Single process (one job, BLAS limited to one thread); about 2.5 minutes on a
shared 2-core machine with the defaults (each extra seed about 45 s)::

    python benchmarks/bench_hyperband.py [--seeds 3] [--budget 540] [--target 0.98 0.995] [--out DIR]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one process, one thread: honest timings on a shared machine

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

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import sklearn  # noqa: E402
from _split import split_scaled  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from sklearn.datasets import load_digits, make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

import nbtune  # noqa: E402

warnings.filterwarnings("ignore", category=ConvergenceWarning)

EPOCHS = 27  # R: the epochs of a full trial (the length of the cell's epochs loop)
DATA_SEED = 0
MODEL_SEED = 0

CELL = f"""\
lr = 1e-3          # tune: loguniform(1e-4, 1.0)
alpha = 1e-4       # tune: loguniform(1e-6, 1e-1)
hidden = 64        # tune: logint(16, 256)
model = make_model(lr, alpha, hidden)
for epoch in range({EPOCHS}):      # tune: epochs
    model.partial_fit(X_train, y_train, classes=classes)
    val_acc = model.score(X_val, y_val)
"""

METHODS = {  # name -> nbtune.tune keyword arguments
    "hyperband+tpe": dict(sampler="tpe"),  # the default scheduler with an epochs loop: Hyperband
    "tpe": dict(sampler="tpe", scheduler="none"),
    "random": dict(sampler="random", scheduler="none"),
}


# --- the tasks ----------------------------------------------------------------------------
def make_model(lr: float, alpha: float, hidden: int) -> MLPClassifier:
    return MLPClassifier(
        solver="adam", learning_rate_init=lr, alpha=alpha, hidden_layer_sizes=(int(hidden),), random_state=MODEL_SEED
    )


def split(X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """60/20/20 train/validation/holdout, stratified; features standardised on train."""
    return split_scaled(X, y, DATA_SEED, first={"test_size": 0.4}, second={"test_size": 0.5})


def tasks() -> dict[str, tuple[str, dict[str, Any]]]:
    X, y = load_digits(return_X_y=True)
    X2, y2 = make_classification(
        n_samples=3000, n_features=40, n_informative=10, class_sep=0.8, flip_y=0.05, random_state=DATA_SEED
    )
    return {
        "digits": ("load_digits (1797 x 64, 10 classes), MLPClassifier adam, partial_fit per epoch", split(X, y)),
        "synthetic": (
            "make_classification(n_samples=3000, n_features=40, n_informative=10, class_sep=0.8, "
            "flip_y=0.05), MLPClassifier adam, partial_fit per epoch",
            split(X2, y2),
        ),
    }


def retrain(params: dict[str, Any], data: dict[str, Any]) -> tuple[float, float]:
    """(validation, holdout) accuracy of ``params`` trained from scratch for the full epochs."""
    model = make_model(params["lr"], params["alpha"], params["hidden"])
    for _ in range(EPOCHS):
        model.partial_fit(data["X_train"], data["y_train"], classes=data["classes"])
    return model.score(data["X_val"], data["y_val"]), model.score(data["X_holdout"], data["y_holdout"])


# --- one search ---------------------------------------------------------------------------
def epochs_of(t: optuna.trial.FrozenTrial) -> int:
    return int(t.last_step or 0)


def run_search(
    method: str, data: dict[str, Any], seed: int, budget: int
) -> tuple[list[optuna.trial.FrozenTrial], int, float]:
    """The study's trials (in order, all of them) and how many ``tune`` calls it took."""
    kwargs = METHODS[method]
    user_ns = {k: data[k] for k in ("X_train", "y_train", "X_val", "y_val", "classes")} | {"make_model": make_model}
    full = math.ceil(budget / EPOCHS)
    # Hyperband spends fewer epochs per trial: one call with a generous number of trials (about
    # 55 fit in 540 epochs), so the trials within the budget are one uninterrupted, seeded sampler
    # stream. Only if that falls short is the study resumed (nbtune continues it up to the new
    # n_trials, with a sampler seeded differently) until the epochs spent exceed the budget.
    n_trials = full if kwargs.get("scheduler") == "none" else 4 * full
    calls = 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nbtune-bench-hb-") as store:
        while True:
            # Optuna's HyperbandPruner assigns trials to brackets by a hash of the study name and
            # the trial number, so the name varies with the seed: seeds vary the bracket sequence too.
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
                **kwargs,
            )
            calls += 1
            trials = sorted(res.study.get_trials(deepcopy=True), key=lambda t: t.number)
            spent = sum(epochs_of(t) for t in trials)
            if spent >= budget:
                return trials, calls, time.perf_counter() - t0
            n_trials += max(5, math.ceil((budget - spent) / max(spent / len(trials), 1)) + 5)


def analyse(trials: list[optuna.trial.FrozenTrial], budget: int, grid: list[int]) -> dict[str, Any]:
    """Best-so-far history within the budget (only trials that ended within it count)."""
    cum, best, best_trial, best_at = 0, -math.inf, None, None
    history: list[tuple[int, float]] = []  # (epochs spent, best so far) after each trial
    used: list[optuna.trial.FrozenTrial] = []
    for t in trials:
        if t.state == TrialState.FAIL:
            raise RuntimeError(f"trial {t.number} failed: {t.user_attrs}")
        if cum + epochs_of(t) > budget:
            break
        cum += epochs_of(t)
        used.append(t)
        if t.state == TrialState.COMPLETE and t.value is not None and t.value > best:
            best, best_trial, best_at = t.value, t, cum
        history.append((cum, best))
    curve = []
    for g in grid:
        vals = [b for c, b in history if c <= g]
        curve.append(vals[-1] if vals and vals[-1] > -math.inf else None)
    states = [t.state.name for t in used]
    # Wall time of the trials within the budget (first start to last end), whatever ran after.
    span = (used[-1].datetime_complete - used[0].datetime_start).total_seconds() if used else 0.0
    return {
        "seconds_in_budget": span,
        "history": history,
        "curve": curve,
        "best_val": best if best_trial is not None else None,
        "best_trial": best_trial,
        "best_at": best_at,
        "epochs_used": cum,
        "trials_in_budget": len(used),
        "trials_run": len(trials),
        "epochs_run": sum(epochs_of(t) for t in trials),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
    }


def stopped_diagnosis(
    used: list[optuna.trial.FrozenTrial], data: dict[str, Any], own_best: float | None, best_of_all: float
) -> dict[str, Any]:
    """Train every trial Hyperband stopped for the full epochs: would any have won? (late bloomers)"""
    rows = []
    for t in used:
        if t.state != TrialState.PRUNED:
            continue
        full, _ = retrain(t.params, data)
        rows.append(
            {
                "number": t.number,
                "stopped_at_epoch": t.last_step,
                "value_when_stopped": t.intermediate_values[t.last_step],
                "full_val": full,
            }
        )
    own = -math.inf if own_best is None else own_best
    return {
        "n_stopped": len(rows),
        "would_beat_own_best": sum(r["full_val"] > own for r in rows),
        "would_beat_best_of_all": sum(r["full_val"] > best_of_all for r in rows),
        "best_full_val_of_stopped": max((r["full_val"] for r in rows), default=None),
        "trials": rows,
    }


def rank_correlations(curves: dict[tuple[Any, ...], dict[int, float]]) -> dict[str, Any]:
    """Spearman correlation of the accuracy after 1, 3 and 9 epochs (Hyperband's rungs) with the
    accuracy after all epochs, over the distinct configurations the full-fidelity searches trained."""
    from scipy.stats import spearmanr

    out: dict[str, Any] = {"n_configs": len(curves)}
    for e in (1, 3, 9):
        pairs = [(c[e], c[EPOCHS]) for c in curves.values() if e in c and EPOCHS in c]
        out[f"epoch_{e}"] = float(spearmanr(*zip(*pairs)).statistic) if len(pairs) > 2 else None
    return out


def epochs_to(history: list[tuple[int, float]], target: float) -> int | None:
    for c, b in history:
        if b >= target:
            return c
    return None


def median_or_none(xs: list[float | None]) -> float | None:
    """Median where a missing value (target never reached) counts as infinitely many epochs."""
    m = statistics.median([math.inf if x is None else x for x in xs])
    return None if math.isinf(m) else m


# --- main ---------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="sampler seeds 0..N-1 (default 3)")
    ap.add_argument("--budget", type=int, default=20 * EPOCHS, help=f"epochs per search (default 20 x {EPOCHS})")
    ap.add_argument(
        "--target",
        type=float,
        nargs="+",
        default=[0.98, 0.995],
        help="targets as fractions of the best validation accuracy any method reached on that task "
        "and seed (default 0.98 0.995)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).with_name("results"),
        help="folder for hyperband.json and hyperband.png (default benchmarks/results)",
    )
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t_start = time.perf_counter()
    step = max(1, EPOCHS // 3)
    grid = list(range(0, args.budget + 1, step))
    if grid[-1] != args.budget:
        grid.append(args.budget)

    out: dict[str, Any] = {
        "what": "best validation accuracy vs epochs spent at an equal epoch budget: Hyperband+TPE vs full-fidelity "
        "TPE and random search (nbtune.tune, one job)",
        "command": f"python benchmarks/bench_hyperband.py --seeds {args.seeds} --budget {args.budget} "
        f"--target {' '.join(map(str, args.target))}",
        "config": {
            "budget_epochs": args.budget,
            "epochs_per_full_trial": EPOCHS,
            "seeds": list(range(args.seeds)),
            "target_fractions": args.target,
            "hyperband": {"r": 1, "R": EPOCHS, "eta": 3},
            "grid_epochs": grid,
            "cell": CELL,
            "methods": METHODS,
            "split": "60/20/20 train/validation/holdout, stratified, random_state=0, StandardScaler on train",
            "model_random_state": MODEL_SEED,
        },
        "versions": {
            "python": platform.python_version(),
            "nbtune": getattr(nbtune, "__version__", "?"),
            "optuna": optuna.__version__,
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
        },
        "tasks": {},
    }
    for task, (desc, data) in tasks().items():
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
        full_fidelity: dict[tuple[Any, ...], dict[int, float]] = {}  # distinct configs trained 27 epochs
        for seed in range(args.seeds):
            per_seed = {}
            for method in METHODS:
                trials, calls, secs = run_search(method, data, seed, args.budget)
                a = analyse(trials, args.budget, grid)
                a["seconds"] = secs
                a["tune_calls"] = calls
                a["used_trials"] = trials[: a["trials_in_budget"]]
                per_seed[method] = a
                print(
                    f"  {task:9s} seed {seed} {method:13s} best val {a['best_val'] or float('nan'):.4f}  "
                    f"{a['trials_in_budget']} trials in budget ({a['complete']} complete, {a['pruned']} pruned)  "
                    f"{a['seconds_in_budget']:5.1f}s in budget ({secs:.1f}s with the overshoot)",
                    flush=True,
                )
            top = max(a["best_val"] for a in per_seed.values() if a["best_val"] is not None)
            targets = {f"{f:g}": f * top for f in args.target}
            for method, a in per_seed.items():
                bt = a.pop("best_trial")
                used = a.pop("used_trials")
                val, hold = retrain(bt.params, data)
                extra: dict[str, Any] = {}
                if method == "hyperband+tpe":
                    extra["stopped_trials"] = stopped_diagnosis(used, data, a["best_val"], top)
                else:
                    for t in used:  # pooled for the early-vs-final rank correlation
                        if t.state == TrialState.COMPLETE:
                            full_fidelity.setdefault(tuple(sorted(t.params.items())), t.intermediate_values)
                runs[method].append(
                    {
                        "seed": seed,
                        "best_val": a["best_val"],
                        "best_params": bt.params,
                        "best_trial_number": bt.number,
                        "best_found_at_epoch": a["best_at"],
                        "holdout_acc": hold,
                        "retrain_val": val,
                        "retrain_matches": abs(val - a["best_val"]) < 1e-12,
                        "targets": targets,
                        "epochs_to_target": {k: epochs_to(a["history"], v) for k, v in targets.items()},
                        "epochs_used": a["epochs_used"],
                        "trials_in_budget": a["trials_in_budget"],
                        "complete_in_budget": a["complete"],
                        "pruned_in_budget": a["pruned"],
                        "trials_run": a["trials_run"],
                        "epochs_run": a["epochs_run"],
                        "tune_calls": a["tune_calls"],
                        "seconds_total": a["seconds"],
                        "seconds_in_budget": a["seconds_in_budget"],
                        "curve": a["curve"],
                        **extra,
                    }
                )
        summary = {}
        for method, rs in runs.items():
            curves = np.array([[np.nan if v is None else v for v in r["curve"]] for r in rs], dtype=float)
            med = [None if np.isnan(col).any() else float(np.median(col)) for col in curves.T]
            summary[method] = {
                "median_best_val": statistics.median(r["best_val"] for r in rs),
                "median_holdout_acc": statistics.median(r["holdout_acc"] for r in rs),
                "median_epochs_to_target": {
                    k: median_or_none([r["epochs_to_target"][k] for r in rs]) for k in rs[0]["epochs_to_target"]
                },
                "reached_target": {
                    k: f"{sum(r['epochs_to_target'][k] is not None for r in rs)}/{len(rs)}"
                    for k in rs[0]["epochs_to_target"]
                },
                "median_trials_in_budget": statistics.median(r["trials_in_budget"] for r in rs),
                "median_complete_in_budget": statistics.median(r["complete_in_budget"] for r in rs),
                "median_seconds_in_budget": statistics.median(r["seconds_in_budget"] for r in rs),
                "median_curve": med,
                "min_curve": [None if np.isnan(c).any() else float(c.min()) for c in curves.T],
                "max_curve": [None if np.isnan(c).any() else float(c.max()) for c in curves.T],
            }
        hb = runs["hyperband+tpe"]
        versus = {}
        for m in ("tpe", "random"):
            diffs = [h["best_val"] - r["best_val"] for h, r in zip(hb, runs[m])]
            versus[m] = {
                "better": sum(d > 1e-12 for d in diffs),
                "tie": sum(abs(d) <= 1e-12 for d in diffs),
                "worse": sum(d < -1e-12 for d in diffs),
            }
        st = [r["stopped_trials"] for r in hb]
        late = {
            "median_stopped": statistics.median(x["n_stopped"] for x in st),
            "median_would_beat_own_best": statistics.median(x["would_beat_own_best"] for x in st),
            "median_would_beat_best_of_all": statistics.median(x["would_beat_best_of_all"] for x in st),
            "seeds_where_a_stopped_trial_would_beat_own_best": sum(x["would_beat_own_best"] > 0 for x in st),
            "rank_correlation_with_final": rank_correlations(full_fidelity),
        }
        out["tasks"][task] = {
            "description": desc,
            "summary": summary,
            "hyperband_vs": versus,
            "late_bloomers": late,
            "runs": runs,
        }

    out["runtime_seconds"] = time.perf_counter() - t_start
    results = args.out
    results.mkdir(parents=True, exist_ok=True)
    (results / "hyperband.json").write_text(json.dumps(out, indent=2))
    plot(out, grid, results / "hyperband.png")
    print_table(out)
    print(f"total {out['runtime_seconds']:.0f}s; wrote {results / 'hyperband.json'} and {results / 'hyperband.png'}")


def print_table(out: dict[str, Any]) -> None:
    cfg = out["config"]
    n = len(cfg["seeds"])
    keys = [f"{f:g}" for f in cfg["target_fractions"]]
    print(
        f"\nmedians over {n} seeds; budget {cfg['budget_epochs']} epochs (= {cfg['budget_epochs'] / EPOCHS:g} full "
        f"trials); 'to X': epochs spent until the best-so-far reached X x the best validation accuracy any "
        f"method reached on that task and seed (seeds that reached it / all)"
    )
    head = (
        f"{'task':10s} {'method':14s} {'best val':>8s} {'holdout':>8s} "
        + " ".join(f"{'to ' + k:>12s}" for k in keys)
        + f" {'trials (full)':>13s} {'time':>6s}"
    )
    print(head)
    print("-" * len(head))
    for task, t in out["tasks"].items():
        for method, s in t["summary"].items():
            ets = []
            for k in keys:
                e = s["median_epochs_to_target"][k]
                ets.append(f"{'never' if e is None else f'{e:g}'} ({s['reached_target'][k]})")
            tr = f"{s['median_trials_in_budget']:g} ({s['median_complete_in_budget']:g})"
            print(
                f"{task:10s} {method:14s} {s['median_best_val']:8.4f} {s['median_holdout_acc']:8.4f} "
                + " ".join(f"{e:>12s}" for e in ets)
                + f" {tr:>13s} {s['median_seconds_in_budget']:5.1f}s"
            )
        h = t["hyperband_vs"]
        print(
            f"{'':10s} hyperband+tpe per seed, best val: "
            + "; ".join(f"vs {m} {c['better']} better / {c['tie']} tie / {c['worse']} worse" for m, c in h.items())
        )
        lb = t["late_bloomers"]
        rc = lb["rank_correlation_with_final"]
        print(
            f"{'':10s} stopped trials trained fully (median over seeds): {lb['median_would_beat_own_best']:g} of "
            f"{lb['median_stopped']:g} would have beaten Hyperband's best ({lb['median_would_beat_best_of_all']:g} the "
            f"best of all methods); on {lb['seeds_where_a_stopped_trial_would_beat_own_best']}/{n} seeds at least one"
        )
        print(
            f"{'':10s} Spearman(val at epoch 1/3/9, val at epoch {EPOCHS}) over {rc['n_configs']} full-fidelity "
            f"configs: {rc['epoch_1']:.2f} / {rc['epoch_3']:.2f} / {rc['epoch_9']:.2f}"
        )


def plot(out: dict[str, Any], grid: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks_ = out["tasks"]
    fig, axes = plt.subplots(1, len(tasks_), figsize=(6 * len(tasks_), 4.2), squeeze=False)
    colors = {"hyperband+tpe": "tab:red", "tpe": "tab:blue", "random": "tab:gray"}
    labels = {
        "hyperband+tpe": "Hyperband + TPE (nbtune default)",
        "tpe": "TPE, full fidelity (= random for its first 10 trials)",
        "random": "random, full fidelity",
    }
    styles = {"hyperband+tpe": "-", "tpe": "-", "random": "--"}
    for ax, (task, t) in zip(axes[0], tasks_.items()):
        lows = []
        for method in ("random", "tpe", "hyperband+tpe"):  # Hyperband drawn on top
            s = t["summary"][method]
            x = [g for g, v in zip(grid, s["median_curve"]) if v is not None]
            y = [v for v in s["median_curve"] if v is not None]
            ax.step(x, y, where="post", color=colors[method], label=labels[method], lw=2, ls=styles[method])
            lo = [v for v in s["min_curve"] if v is not None]
            hi = [v for v in s["max_curve"] if v is not None]
            xs = [g for g, v in zip(grid, s["min_curve"]) if v is not None]
            ax.fill_between(xs, lo, hi, step="post", color=colors[method], alpha=0.12, lw=0)
            if y:
                lows.append(y[min(len(y) - 1, 1)])
        ax.set_title(f"{task} ({len(out['config']['seeds'])} seeds, median; shaded: min-max)", fontsize=10)
        ax.set_xlabel("epochs spent (sum over trials)")
        ax.set_ylabel("best validation accuracy so far")
        ax.set_xlim(0, grid[-1])
        if lows:
            top = max(s["median_best_val"] for s in t["summary"].values())
            ax.set_ylim(min(lows) - 0.01, top + 0.01)
        ax.grid(alpha=0.3)
        handles, names = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], names[::-1], loc="lower right", fontsize=8)
    fig.suptitle(f"Equal budget of {grid[-1]} epochs (= {grid[-1] / EPOCHS:g} full {EPOCHS}-epoch trials)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
