"""Boosting rounds as epochs: the README's two ways of adding a batch of rounds per epoch, timed.

Successive halving reads a gradient-boosting model once per epoch, so an epoch is a batch of rounds
added to the model so far. Calling ``lgb.train(..., init_model=booster)`` or ``xgb.train(...,
xgb_model=booster)`` once per epoch (the README's pattern until 2026-12-01) starts the library afresh
each time and costs more with every epoch; a teammate trying nbtune as a new user measured 10x on
1,000 rounds. The README now adds rounds to one booster (``Booster.update`` and the metric the
library keeps of its validation set). This script times both ways, interleaved, on the same data
and rounds, and checks they give the same model (the same validation RMSE). No search runs: the cost
is the library's, inside any trial.

    python benchmarks/bench_boosting.py [--epochs 40] [--rounds 25] [--repeat 3]

Needs lightgbm and xgboost (``pip install lightgbm xgboost``); a library that is missing is skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.datasets import make_regression


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = make_regression(n_samples=30000, n_features=20, noise=10, random_state=0)
    return X[:20000], y[:20000], X[20000:], y[20000:]


def lightgbm_ways(epochs: int, rounds: int) -> dict[str, Callable[[], float]]:
    import lightgbm as lgb

    X_tr, y_tr, X_val, y_val = _data()
    params = {"objective": "regression", "metric": "rmse", "learning_rate": 0.05, "num_leaves": 31, "verbose": -1}

    def update() -> float:
        dtrain = lgb.Dataset(X_tr, y_tr)
        dval = lgb.Dataset(X_val, y_val, reference=dtrain)
        booster = lgb.Booster(params, dtrain)
        booster.add_valid(dval, "val")
        for _epoch in range(epochs):
            for _ in range(rounds):
                booster.update()
            val_rmse = booster.eval_valid()[0][2]
        return float(val_rmse)

    def init_model() -> float:
        dtrain = lgb.Dataset(X_tr, y_tr, free_raw_data=False)
        booster = None
        for _epoch in range(epochs):
            booster = lgb.train(params, dtrain, num_boost_round=rounds, init_model=booster, keep_training_booster=True)
            val_rmse = float(np.sqrt(np.mean((booster.predict(X_val) - y_val) ** 2)))
        return val_rmse

    return {"update": update, "init_model": init_model}


def xgboost_ways(epochs: int, rounds: int) -> dict[str, Callable[[], float]]:
    import xgboost as xgb

    X_tr, y_tr, X_val, y_val = _data()
    params = {"objective": "reg:squarederror", "eval_metric": "rmse", "eta": 0.05, "max_depth": 6, "verbosity": 0}

    def update() -> float:
        dtrain, dval = xgb.DMatrix(X_tr, y_tr), xgb.DMatrix(X_val, y_val)
        booster = xgb.Booster(params, [dtrain, dval])
        for epoch in range(epochs):
            for i in range(rounds):
                booster.update(dtrain, epoch * rounds + i)
            val_rmse = float(booster.eval(dval, "val").rsplit(":", 1)[1])
        return val_rmse

    def xgb_model() -> float:
        dtrain, dval = xgb.DMatrix(X_tr, y_tr), xgb.DMatrix(X_val, y_val)
        booster = None
        for _epoch in range(epochs):
            booster = xgb.train(params, dtrain, num_boost_round=rounds, xgb_model=booster)
            val_rmse = float(np.sqrt(np.mean((booster.predict(dval) - y_val) ** 2)))
        return val_rmse

    return {"update": update, "xgb_model": xgb_model}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=25, help="rounds per epoch")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "boosting.json"))
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    for library, ways in (("lightgbm", lightgbm_ways), ("xgboost", xgboost_ways)):
        try:
            runs = ways(args.epochs, args.rounds)
        except ImportError as e:
            print(f"{library}: skipped ({e})")
            continue
        times: dict[str, list[float]] = {name: [] for name in runs}
        rmse: dict[str, float] = {}
        for _ in range(args.repeat):  # interleaved: the machine's noise falls on both alike
            for name, run in runs.items():
                t0 = time.perf_counter()
                rmse[name] = run()
                times[name].append(time.perf_counter() - t0)
        median = {name: statistics.median(ts) for name, ts in times.items()}
        fast, slow = runs  # (the README's way first)
        results[library] = {
            "seconds": median,
            "ratio": median[slow] / median[fast],
            "val_rmse": rmse,
            "same_model": abs(rmse[fast] - rmse[slow]) <= 1e-6 * max(1.0, abs(rmse[slow])),
        }
        print(
            f"{library}: {args.epochs} epochs of {args.rounds} rounds: {fast} {median[fast]:.2f} s, {slow} "
            f"{median[slow]:.2f} s ({median[slow] / median[fast]:.2f}x); validation RMSE {rmse[fast]:.4f} and "
            f"{rmse[slow]:.4f}"
        )
    out = {"epochs": args.epochs, "rounds": args.rounds, "repeat": args.repeat, "results": results}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
