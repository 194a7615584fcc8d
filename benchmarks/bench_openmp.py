"""Multi-threaded fits in the kernel (``--jobs 1``) against raw Optuna, after the notebook fitted a model.

scikit-learn's HistGradientBoostingClassifier and a PyTorch MLP use GNU OpenMP (libgomp), which keeps
a pool of threads per thread that ran a parallel region, and stops spinning between regions once
the threads of all its pools outnumber the cores. A notebook that fitted a model before the search
has a pool on the kernel's main thread; nbtune's trials run on the search's thread, whose own pool
then ran every fit 3-4 times slower (found trying nbtune as a new user). nbtune now frees the main
thread's pool before the trials (``nbtune.run.backends.release_openmp_pools``). This script times,
in one process and interleaved: raw Optuna's ``study.optimize`` on the main thread, nbtune with
the pool freed (what it does), and nbtune with the release switched off (what it did).

    python benchmarks/bench_openmp.py [--trials 15] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

import nbtune
from nbtune.run import backends

HGB_CELL = """\
lr = 0.1  # tune: loguniform(0.01, 0.3)
leaves = 31  # tune: logint(8, 64)
t0 = time.perf_counter()
model = HistGradientBoostingClassifier(learning_rate=lr, max_leaf_nodes=leaves, max_iter=30,
                                       early_stopping=False, random_state=0).fit(X[:30000], y[:30000])
fit_s = time.perf_counter() - t0
acc = model.score(X[30000:], y[30000:])
"""

TORCH_CELL = """\
lr = 0.1  # tune: loguniform(0.01, 0.3)
width = 256  # tune: int(64, 256)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, 4))
opt = torch.optim.SGD(net.parameters(), lr=lr)
t0 = time.perf_counter()
for i in range(0, 20000, 256):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(Xt[i:i + 256]), yt[i:i + 256]).backward()
    opt.step()
fit_s = time.perf_counter() - t0
acc = float((net(Xt[:2000]).argmax(1) == yt[:2000]).float().mean())
"""


def namespace() -> dict:
    """The notebook: its data, and one model fitted on the main thread first, as a notebook does."""
    import time as time_module

    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = rng.standard_normal((50_000, 20), dtype=np.float32)
    y = (X @ rng.standard_normal(20).astype(np.float32) > 0).astype(np.int8)
    ns = {
        "np": np,
        "time": time_module,
        "HistGradientBoostingClassifier": HistGradientBoostingClassifier,
        "X": X,
        "y": y,
    }
    try:
        import torch

        g = torch.Generator().manual_seed(0)
        ns.update(torch=torch, Xt=torch.randn(20000, 64, generator=g), yt=torch.randint(0, 4, (20000,), generator=g))
    except ImportError:
        pass
    return ns


def warm_main_thread(ns: dict, task: str) -> None:
    """What a notebook did before the search: the same kind of fit, on the kernel's main thread."""
    if task == "hgb":
        ns["HistGradientBoostingClassifier"](max_iter=5).fit(ns["X"][:5000], ns["y"][:5000])
    else:
        torch = ns["torch"]
        net = torch.nn.Linear(64, 4)
        net(ns["Xt"][:4096]).sum().backward()


def raw_optuna(ns: dict, cell: str, n: int) -> tuple[float, float]:
    """Seconds for n trials of the same code as an Optuna objective, and the median fit."""
    fits: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        env = dict(ns)
        env["lr"] = trial.suggest_float("lr", 0.01, 0.3, log=True)
        if "leaves" in cell:
            env["leaves"] = trial.suggest_int("leaves", 8, 64, log=True)
        else:
            env["width"] = trial.suggest_int("width", 64, 256)
        body = "\n".join(line for line in cell.splitlines() if "# tune:" not in line)
        exec(compile(body, "<objective>", "exec"), env)
        fits.append(env["fit_s"])
        return float(env["acc"])

    t = time.perf_counter()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=n)
    return time.perf_counter() - t, statistics.median(fits)


def nbtune_run(ns: dict, cell: str, n: int, store: str, release: bool) -> tuple[float, float]:
    real = backends.release_openmp_pools
    if not release:
        backends.release_openmp_pools = lambda: 0  # what nbtune did before
    try:
        t = time.perf_counter()
        res = nbtune.tune(
            cell, maximize="acc", n_trials=n, sampler="random", seed=0, scheduler="none", store=store,
            view=None, user_ns=ns, record=["fit_s"],
        )  # fmt: skip
        elapsed = time.perf_counter() - t
    finally:
        backends.release_openmp_pools = real
    fits = [t.user_attrs["nbtune:record"]["fit_s"] for t in res.study.trials if t.state.name == "COMPLETE"]
    return elapsed, statistics.median(fits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "openmp.json"))
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ns = namespace()
    tasks = {"hgb": HGB_CELL, **({"torch": TORCH_CELL} if "torch" in ns else {})}
    out: dict = {"trials": args.trials, "repeat": args.repeat, "tasks": {}}
    for task, cell in tasks.items():
        rows: dict[str, list[tuple[float, float]]] = {"raw": [], "nbtune": [], "nbtune_before": []}
        for _ in range(args.repeat):  # interleaved: the machine's noise falls on all three alike
            with tempfile.TemporaryDirectory() as d:
                warm_main_thread(ns, task)
                rows["raw"].append(raw_optuna(ns, cell, args.trials))
                warm_main_thread(ns, task)
                rows["nbtune"].append(nbtune_run(ns, cell, args.trials, f"{d}/a", release=True))
                warm_main_thread(ns, task)
                rows["nbtune_before"].append(nbtune_run(ns, cell, args.trials, f"{d}/b", release=False))
        med = {k: statistics.median(v[0] for v in rows[k]) for k in rows}
        fit = {k: statistics.median(v[1] for v in rows[k]) for k in rows}
        out["tasks"][task] = {
            "seconds": med,
            "median_fit_seconds": fit,
            "ratio_vs_raw": {k: med[k] / med["raw"] for k in ("nbtune", "nbtune_before")},
            "runs": rows,
        }
        print(
            f"{task}: {args.trials} trials, median of {args.repeat}: raw Optuna {med['raw']:.2f} s (fit {fit['raw']:.3f} s), "
            f"nbtune {med['nbtune']:.2f} s = {med['nbtune'] / med['raw']:.2f}x (fit {fit['nbtune']:.3f} s), "
            f"nbtune without freeing the pool {med['nbtune_before']:.2f} s = {med['nbtune_before'] / med['raw']:.2f}x "
            f"(fit {fit['nbtune_before']:.3f} s)"
        )
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
