"""(b) Speed-up of --jobs 2 over --jobs 1 on a CPU-bound pure-Python cell.

16 trials of about 0.3 s of pure-Python work each. Compared in the same run with
Optuna's own thread-based ``n_jobs=2`` on the same objective (GIL-bound, ~1.0x).

    python benchmarks/bench_parallel.py [--trials 16] [--work 0.3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import optuna

import nbtune


def calibrate(seconds: float) -> int:
    """Loop iterations that take about ``seconds`` of pure Python on this machine."""
    n, t = 200_000, 0.0
    while t < 0.05:
        t0 = time.perf_counter()
        s = 0
        for i in range(n):
            s += i * i % 7
        t = time.perf_counter() - t0
        n *= 2
    return int(n / 2 * seconds / t)


CELL = """\
x = 0.5  # tune: uniform(0.0, 1.0)
s = 0
for i in range(N_ITER):
    s += i * i % 7
loss = (x - 0.3) ** 2 + s * 0
"""


def run_nbtune(n_trials: int, n_jobs: int, n_iter: int, backend: str = "auto") -> float:
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        res = nbtune.tune(
            CELL,
            minimize="loss",
            n_trials=n_trials,
            n_jobs=n_jobs,
            backend=backend,
            user_ns={"N_ITER": n_iter},
            store=d,
            seed=0,
            sampler="random",
            view=None,
        )
        assert res.n_finished == n_trials
        return time.perf_counter() - t


def run_optuna_threads(n_trials: int, n_jobs: int, n_iter: int) -> float:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        s = 0
        for i in range(n_iter):
            s += i * i % 7
        return (x - 0.3) ** 2 + s * 0

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    t = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, n_jobs=n_jobs)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--work", type=float, default=0.3)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_iter = calibrate(args.work)
    # warm workers: the first --jobs 2 search of a session starts the worker processes; the next
    # one reuses them (loky keeps its executor between searches with the same number of jobs)
    cold = run_nbtune(2, 2, 1000)
    warm = run_nbtune(2, 2, 1000)
    one = run_nbtune(args.trials, 1, n_iter)
    two = run_nbtune(args.trials, 2, n_iter)
    thr = run_nbtune(args.trials, 2, n_iter, backend="threading")
    o1 = run_optuna_threads(args.trials, 1, n_iter)
    o2 = run_optuna_threads(args.trials, 2, n_iter)
    out = {
        "trials": args.trials,
        "work_s": args.work,
        "nbtune_jobs1_s": one,
        "nbtune_jobs2_s": two,
        "nbtune_jobs2_threading_s": thr,
        "speedup_jobs2": one / two,
        "speedup_threading": one / thr,
        "optuna_njobs1_s": o1,
        "optuna_njobs2_s": o2,
        "optuna_speedup": o1 / o2,
        "first_search_jobs2_s": cold,
        "second_search_jobs2_s": warm,
    }
    print(f"--jobs 1: {one:.2f} s · --jobs 2 (processes): {two:.2f} s · speed-up {one / two:.2f}x (target >= 1.8x)")
    print(f"--jobs 2 --backend threading: {thr:.2f} s · speed-up {one / thr:.2f}x")
    print(f"Optuna n_jobs=1: {o1:.2f} s · n_jobs=2 (threads): {o2:.2f} s · speed-up {o1 / o2:.2f}x")
    print(f"a 2-trial --jobs 2 search: first of the session {cold:.2f} s, second {warm:.2f} s (warm workers)")
    Path(__file__).with_name("results").mkdir(exist_ok=True)
    Path(__file__).with_name("results").joinpath("parallel.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
