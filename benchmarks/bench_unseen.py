"""The default search on tasks it was not chosen on: a PyTorch regression that minimizes a loss.

Written by a teammate trying nbtune as a new user (2026-11-30), unlike the suite of
``bench_search.py`` (accuracy, maximized, on ``make_classification``): a small PyTorch network
(one hidden layer, SGD with momentum; learning rate, width and momentum tuned) fitted to
``make_regression(n_features=20, noise=10)`` for 27 epochs, minimizing the validation MSE, with
400 training, 200 validation and 1000 holdout examples. Two cells:

* ``regression``: learning rate in loguniform(1e-4, 0.5), where nothing diverges;
* ``regression-diverging``: learning rate in loguniform(1e-4, 10.0); above about 0.7 the loss
  becomes NaN in the first epoch (nbtune fails such a trial: its metric is not finite).

Each at ``-n 20`` (nbtune's default) and ``-n 60``, 5 seeds (the seed draws the split). Methods:
``nbtune`` (the default), ``nbtune-before`` (the default's model until 2026-11-30:
configurations stopped before the model's epoch, and diverged ones, left out of TPE's model;
``--methods nbtune:sampler=tpe-bohb-only`` in ``bench_search.py``), ``nbtune-random``
(``--sampler random``, the same scheduler), and ``optuna-defaults`` (``optuna.create_study()``:
TPE and the median rule, the objective reporting every epoch, as many trials). Per method, over
seeds: the holdout MSE of the best configuration (retrained from scratch), its validation MSE, the
configurations that diverged, and the epochs spent.

    python benchmarks/bench_unseen.py [--seeds 5] [--trials 20 60] [--methods nbtune optuna-defaults ...]

``--methods nbtune:key=value,...`` runs nbtune with options, as in ``bench_search.py`` (e.g.
``nbtune:min_epochs=3``). The rows are merged into ``results/unseen.json``: a run replaces only
the rows of its own methods, trial counts and seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
import warnings
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from bench_search import TPEBefore, options_of  # also registers --sampler tpe-bohb-only

import nbtune

EPOCHS = 27
CELL = """
lr = 0.01         # tune: loguniform(1e-4, {top})
hidden = 32       # tune: logint(8, 128)
momentum = 0.9    # tune: uniform(0.0, 0.99)
net, opt = make(lr, hidden, momentum)
for epoch in range(27):  # tune: epochs
    train_epoch(net, opt)
    val_loss = mse(net, Xva, yva)
"""
TOPS = {"regression": 0.5, "regression-diverging": 10.0}


def namespace(seed: int) -> dict[str, Any]:
    import torch
    from sklearn.datasets import make_regression

    torch.set_num_threads(1)
    X, y = make_regression(n_samples=1600, n_features=20, noise=10.0, random_state=0)
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], y[order]
    mu, sd, ymu, ysd = X[:400].mean(0), X[:400].std(0), y[:400].mean(), y[:400].std()
    Xt = torch.tensor((X - mu) / sd, dtype=torch.float32)
    yt = torch.tensor((y - ymu) / ysd, dtype=torch.float32)[:, None]

    def make(lr: float, hidden: int, momentum: float) -> tuple[Any, Any]:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(20, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
        return net, torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)

    def train_epoch(net: Any, opt: Any) -> None:
        for i in range(0, 400, 50):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(Xt[i : i + 50]), yt[i : i + 50]).backward()
            opt.step()

    def mse(net: Any, X: Any, y: Any) -> Any:
        with torch.no_grad():
            return torch.nn.functional.mse_loss(net(X), y)

    return {
        "make": make, "train_epoch": train_epoch, "mse": mse,
        "Xva": Xt[400:600], "yva": yt[400:600], "Xho": Xt[600:], "yho": yt[600:],
    }  # fmt: skip


def holdout(ns: dict[str, Any], params: dict[str, Any]) -> float:
    net, opt = ns["make"](params["lr"], params["hidden"], params["momentum"])
    for _ in range(EPOCHS):
        ns["train_epoch"](net, opt)
    return float(ns["mse"](net, ns["Xho"], ns["yho"]))


def run_nbtune(task: str, seed: int, n: int, **options: Any) -> dict[str, Any]:
    ns = namespace(seed)
    with tempfile.TemporaryDirectory() as store:
        res = nbtune.tune(
            CELL.format(top=TOPS[task]), minimize="val_loss", n_trials=n, seed=seed, store=store,
            user_ns=ns, view=None, **options,
        )  # fmt: skip
        trials = res.study.trials
        promoted = [t for t in trials if "nbtune:promoted" in t.user_attrs]
        epochs = sum(len(t.intermediate_values) for t in trials) - sum(
            t.user_attrs["nbtune:promoted"]["epoch"] for t in promoted
        )
        diverged = sum(t.state.name == "FAIL" for t in trials)
        return {"val": res.best_value, "params": res.best_params, "diverged": diverged, "epochs": epochs}


def run_optuna(task: str, seed: int, n: int) -> dict[str, Any]:
    ns = namespace(seed)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, TOPS[task], log=True)
        hidden = trial.suggest_int("hidden", 8, 128, log=True)
        momentum = trial.suggest_float("momentum", 0.0, 0.99)
        net, opt = ns["make"](lr, hidden, momentum)
        loss = math.nan
        for epoch in range(EPOCHS):
            ns["train_epoch"](net, opt)
            loss = float(ns["mse"](net, ns["Xva"], ns["yva"]))
            trial.report(loss, epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return loss

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n, catch=(Exception,))
    epochs = sum(len(t.intermediate_values) for t in study.trials)
    diverged = sum(t.state.name == "FAIL" or any(not math.isfinite(v) for v in t.intermediate_values.values())
                   for t in study.trials)  # fmt: skip
    done = [t for t in study.trials if t.state.name == "COMPLETE" and math.isfinite(t.value)]
    best = min(done, key=lambda t: t.value)
    return {"val": best.value, "params": best.params, "diverged": diverged, "epochs": epochs}


METHODS = {
    "nbtune": lambda task, seed, n: run_nbtune(task, seed, n),
    "nbtune-before": lambda task, seed, n: run_nbtune(task, seed, n, sampler="tpe-bohb-only"),
    "nbtune-random": lambda task, seed, n: run_nbtune(task, seed, n, sampler="random"),
    "optuna-defaults": run_optuna,
}


def method(name: str) -> Any:
    """A method of METHODS, or ``nbtune:key=value,...``: nbtune with options, as in bench_search.py
    (e.g. ``nbtune:min_epochs=3``)."""
    if name in METHODS:
        return METHODS[name]
    if not name.startswith("nbtune:"):
        raise SystemExit(f"unknown method {name!r}: one of {', '.join(METHODS)}, or nbtune:key=value,...")
    options = options_of(name)
    return lambda task, seed, n: run_nbtune(task, seed, n, **options)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--trials", type=int, nargs="+", default=[20, 60])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    args = ap.parse_args()
    assert TPEBefore is not None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # Optuna warns of every NaN trial
    warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
    out: dict[str, Any] = {"seeds": args.seeds, "rows": []}
    for task in TOPS:
        for n in args.trials:
            per: dict[str, list[float]] = {}
            for name in args.methods:
                rows = []
                for seed in range(args.seeds):
                    t = time.perf_counter()
                    row = method(name)(task, seed, n)
                    row.update(task=task, trials=n, method=name, seed=seed, seconds=time.perf_counter() - t)
                    row["holdout"] = holdout(namespace(seed), row["params"])
                    rows.append(row)
                out["rows"].extend(rows)
                per[name] = [r["holdout"] for r in rows]
                print(
                    f"{task:21s} -n {n:<3d} {name:16s} holdout MSE median {statistics.median(per[name]):.4f} "
                    f"worst {max(per[name]):.4f} · val median {statistics.median(r['val'] for r in rows):.4f} · "
                    f"diverged {sum(r['diverged'] for r in rows):3d} · epochs median "
                    f"{statistics.median(r['epochs'] for r in rows):.0f}",
                    flush=True,
                )
            if "nbtune" in per:
                for name, values in per.items():
                    if name != "nbtune":
                        d = [a - b for a, b in zip(per["nbtune"], values)]
                        print(f"{'':28s} nbtune minus {name}: {statistics.mean(d):+.4f} per seed, "
                              f"lower on {sum(x < 0 for x in d)} of {len(d)} seeds")  # fmt: skip
    # merged into the results file: a run of some methods or trial counts replaces only their rows
    path = Path(__file__).with_name("results") / "unseen.json"
    key = itemgetter("task", "trials", "method", "seed")
    ran = {key(r) for r in out["rows"]}
    if path.exists():
        kept = [r for r in json.loads(path.read_text())["rows"] if key(r) not in ran]
        out["rows"] = kept + out["rows"]
        out["seeds"] = max([out["seeds"]] + [r["seed"] + 1 for r in kept])
    path.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
