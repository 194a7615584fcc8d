"""Population-based training and checkpoints: three measurements, same-run comparisons.

(a) **The toy problem of Jaderberg et al. 2017 (figure 2).** Two parameters theta (start
    (0.9, 0.9)), the real objective Q = 1.2 - (theta0² + theta1²), and a hyperparameter h that
    lets gradient ascent on a *surrogate* improve one coordinate only (h = "theta0" or "theta1").
    Any fixed h leaves the other coordinate at 0.9, so Q <= 0.39; members that take turns reach
    Q ≈ 1.2. PBT (population 2, as in the paper, and 4) against grid search (both values of h)
    and random search, each with the same number of steps (members x 60).
(b) **A small real network whose learning rate should change during training.** A PyTorch MLP
    (64-128-10, SGD with momentum) on the digits, 30 epochs; the epochs loop sets the optimizer's
    learning rate from ``lr`` each epoch. PBT (population 8, every 3 epochs) against nbtune's
    default (TPE + Hyperband with pause-and-promote) and random search, at an equal budget of
    240 epochs (8 x 30), over 5 seeds. Validation accuracy of the final incumbent, and its test
    accuracy (the checkpoint of the best trial, or, for Hyperband cut at the budget, the
    configuration retrained: training is deterministic).
(c) **Checkpoint cost per epoch** for a 10 MB and a 200 MB state (a numpy array), against the
    alternative a user would write: ``pickle.dump`` of the same state to a file, flushed with
    ``os.fsync``, each epoch. nbtune's cost is the difference between the same search with and
    without ``--state``, divided by the epochs.

Writes ``benchmarks/results/pbt.json`` and prints tables. One process, BLAS and torch on one
thread; about 4 minutes on a shared 2-core machine::

    python benchmarks/bench_pbt.py [--seeds 5] [--out DIR]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pickle  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import nbtune  # noqa: E402
from nbtune.store.attrs import ATTR  # noqa: E402

TOY_STEPS = 60
TOY = f"""\
import numpy as np
h = "theta0"  # tune: choice("theta0", "theta1")
theta = np.array([0.9, 0.9])  # tune: state
for step in range({TOY_STEPS}):  # tune: epochs
    w = np.array([1.0, 0.0]) if h == "theta0" else np.array([0.0, 1.0])
    theta = theta + 0.05 * (-2 * w * theta)  # gradient ascent on the surrogate 1.2 - w . theta**2
    Q = 1.2 - float((theta ** 2).sum())
"""

EPOCHS = 30
NET = f"""\
import torch
torch.manual_seed(0)
torch.set_num_threads(1)
lr = 0.05          # tune: loguniform(1e-3, 1.0)
momentum = 0.9     # tune: uniform(0.0, 0.95)
wd = 1e-4          # tune: loguniform(1e-6, 1e-2)
model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))  # tune: state
opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)  # tune: state
for epoch in range({EPOCHS}):  # tune: epochs
    for g in opt.param_groups:  # PBT changes these between epochs: the loop sets them
        g["lr"], g["momentum"], g["weight_decay"] = lr, momentum, wd
    for i in range(0, len(Xt), 32):  # fixed order: training is deterministic
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(Xt[i:i + 32]), yt[i:i + 32]).backward()
        opt.step()
    with torch.no_grad():
        val_acc = float((model(Xv).argmax(1) == yv).float().mean())
"""


def toy(seeds: int) -> dict[str, Any]:
    out: dict[str, list[float]] = {"pbt (2 members)": [], "pbt (4 members)": [], "grid (2)": [], "random (4)": []}
    with tempfile.TemporaryDirectory() as store:
        for seed in range(seeds):
            common = dict(maximize="Q", seed=seed, store=store, fresh=True, view=None, name=f"toy{seed}")
            for n in (2, 4):
                res = nbtune.tune(TOY, scheduler="pbt", population=n, interval=4, **common)
                out[f"pbt ({n} members)"].append(res.best_value)
            res = nbtune.tune(TOY, sampler="grid", scheduler="none", n_trials=2, **common)
            out["grid (2)"].append(res.best_value)
            res = nbtune.tune(TOY, sampler="random", scheduler="none", n_trials=4, **common)
            out["random (4)"].append(res.best_value)
    return {k: {"median": statistics.median(v), "worst": min(v), "best": max(v), "runs": v} for k, v in out.items()}


def _data() -> dict[str, Any]:
    import torch

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    X_dev, X_test, y_dev, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    X_tr, X_val, y_tr, y_val = train_test_split(X_dev, y_dev, test_size=0.3, stratify=y_dev, random_state=0)
    t = torch.tensor
    return {"Xt": t(X_tr), "yt": t(y_tr), "Xv": t(X_val), "yv": t(y_val), "X_test": t(X_test), "y_test": t(y_test)}


def _test_acc(model: Any, d: dict[str, Any]) -> float:
    import torch

    with torch.no_grad():
        return float((model(d["X_test"]).argmax(1) == d["y_test"]).float().mean())


def _retrain(params: dict[str, Any], d: dict[str, Any]) -> Any:
    ns = {k: d[k] for k in ("Xt", "yt", "Xv", "yv")}
    src = NET
    for k, v in params.items():
        src = src.replace(f"{k} = ", f"{k} = {v!r}  #", 1)
    exec(compile(src.replace("# tune: state", "").replace("# tune: epochs", ""), "<retrain>", "exec"), ns)
    return ns["model"], ns["val_acc"]


def _epochs_of(t: optuna.trial.FrozenTrial) -> int:
    return int(t.last_step or 0) - int(t.user_attrs.get(ATTR.PROMOTED, {}).get("epoch", 0))


def network(seeds: int) -> dict[str, Any]:
    d = _data()
    ns = {k: d[k] for k in ("Xt", "yt", "Xv", "yv")}
    budget = 8 * EPOCHS
    runs: dict[str, list[dict[str, Any]]] = {"pbt": [], "hyperband (default)": [], "random": []}
    with tempfile.TemporaryDirectory() as store:
        for seed in range(seeds):
            common = dict(maximize="val_acc", seed=seed, store=store, user_ns=ns, view=None, name=f"net{seed}")
            t0 = time.perf_counter()
            res = nbtune.tune(NET, scheduler="pbt", population=8, interval=3, fresh=True, **common)
            runs["pbt"].append(
                {
                    "val": res.best_value,
                    "test": _test_acc(res.best_state()["model"], d),
                    "epochs": sum(_epochs_of(t) for t in res.study.trials),
                    "seconds": time.perf_counter() - t0,
                    "lr_schedule": res.lineage()["lr"].tolist(),
                }
            )
            t0 = time.perf_counter()
            res = nbtune.tune(NET, sampler="random", scheduler="none", n_trials=8, fresh=True, **common)
            runs["random"].append(
                {
                    "val": res.best_value,
                    "test": _test_acc(res.best_state()["model"], d),
                    "epochs": sum(_epochs_of(t) for t in res.study.trials),
                    "seconds": time.perf_counter() - t0,
                }
            )
            # Hyperband: run past the budget, then cut the history at it (one job: trials in order).
            t0 = time.perf_counter()
            res = nbtune.tune(NET, n_trials=60, fresh=True, **common)
            cum, best = 0, None
            for t in sorted(res.study.trials, key=lambda t: t.number):
                if cum + _epochs_of(t) > budget:
                    break
                cum += _epochs_of(t)
                if t.state == TrialState.COMPLETE and (best is None or t.value > best.value):
                    best = t
            assert best is not None
            model, val = _retrain(best.params, d)
            runs["hyperband (default)"].append(
                {
                    "val": best.value,
                    "test": _test_acc(model, d),
                    "retrain_matches": abs(val - best.value) < 1e-9,
                    "epochs": cum,
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(f"seed {seed}: " + ", ".join(f"{m} {r[-1]['val']:.4f}/{r[-1]['test']:.4f}" for m, r in runs.items()))
    summary = {
        m: {
            k: {
                "median": statistics.median(x[k] for x in r),
                "worst": min(x[k] for x in r),
                "best": max(x[k] for x in r),
            }
            for k in ("val", "test")
        }
        | {"epochs": statistics.median(x["epochs"] for x in r)}
        for m, r in runs.items()
    }
    return {"budget_epochs": budget, "summary": summary, "runs": runs}


def checkpoint_cost(epochs: int = 5, repeat: int = 3) -> dict[str, Any]:
    out = {}
    for mb in (10, 200):
        cell = f"""\
import numpy as np
x = 0.5  # tune: uniform(0, 1)
weights = np.zeros({mb} * 2**20 // 8)  # tune: state
for epoch in range({epochs}):  # tune: epochs
    weights[epoch] = x
    score = float(weights[epoch])
"""
        with_state, without, raw = [], [], []
        with tempfile.TemporaryDirectory() as store:
            for _ in range(repeat):
                for flag, bucket in ((True, with_state), (False, without)):
                    src = cell if flag else cell.replace("  # tune: state", "")
                    t0 = time.perf_counter()
                    nbtune.tune(src, maximize="score", n_trials=1, scheduler="none", store=store, fresh=True, view=None)
                    bucket.append(time.perf_counter() - t0)
                state = {"weights": np.zeros(mb * 2**20 // 8)}
                t0 = time.perf_counter()
                for _ in range(epochs):  # what a user would write: save the state each epoch
                    with open(Path(store) / "manual.pkl", "wb") as f:
                        pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
                        f.flush()
                        os.fsync(f.fileno())
                raw.append(time.perf_counter() - t0)
        # per epoch; a trial with state saves after each epoch but the last and once at the end
        per_epoch = (statistics.median(with_state) - statistics.median(without)) / epochs
        manual = statistics.median(raw) / epochs
        out[f"{mb} MB"] = {
            "nbtune_s_per_epoch": per_epoch,
            "manual_pickle_fsync_s_per_epoch": manual,
            "ratio": per_epoch / manual if manual > 0 else math.nan,
        }
        print(f"{mb} MB state: nbtune {per_epoch * 1000:.0f} ms/epoch, pickle+fsync {manual * 1000:.0f} ms/epoch")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    a = toy(args.seeds)
    for k, v in a.items():
        print(f"(a) {k:16s} Q median {v['median']:.3f} worst {v['worst']:.3f} best {v['best']:.3f}")
    b = network(args.seeds)
    for k, v in b["summary"].items():
        print(
            f"(b) {k:20s} val {v['val']['median']:.4f} (worst {v['val']['worst']:.4f}) "
            f"test {v['test']['median']:.4f} (worst {v['test']['worst']:.4f}) epochs {v['epochs']}"
        )
    c = checkpoint_cost()
    payload = {
        "toy": a,
        "network": b,
        "checkpoint_cost": c,
        "seeds": args.seeds,
        "seconds_total": time.perf_counter() - t0,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "nbtune": nbtune.__version__},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pbt.json").write_text(json.dumps(payload, indent=1, default=str))
    print(f"wrote {out / 'pbt.json'} in {payload['seconds_total']:.0f}s")


if __name__ == "__main__":
    main()
