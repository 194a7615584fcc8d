"""(a) Per-trial overhead of nbtune against raw Optuna on the same kind of journal store.

A trivial cell, 300 trials, random and TPE samplers, one job. Also measures what the live
widget costs (its throughput against no view). Prints ratios measured in the same run: of whole
searches (each making its study in a new journal file, then running the trials), and of one
more trial (the long searches' time beyond searches of a third as many trials, per extra trial:
a search's fixed start cancels out).

    python benchmarks/bench_overhead.py [--trials 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import optuna

import nbtune

CELL = "x = 0.5  # tune: uniform(0.0, 1.0)\nloss = (x - 0.3) ** 2\n"


def raw_optuna(n: int, sampler: str, store: str) -> float:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        return (x - 0.3) ** 2

    # Both timers take in making the study in a new journal file, as nbtune.tune() does (until
    # 2026-11-30 this one started after create_study, so nbtune's start was counted against it alone)
    t = time.perf_counter()
    storage = JournalStorage(JournalFileBackend(f"{store}/raw.journal"))
    s = (
        optuna.samplers.RandomSampler(seed=0)
        if sampler == "random"
        else optuna.samplers.TPESampler(seed=0, multivariate=True)
    )
    study = optuna.create_study(storage=storage, sampler=s)
    study.optimize(objective, n_trials=n)
    return time.perf_counter() - t


def nbtune_run(n: int, sampler: str, store: str, view=None, throughput: bool = False) -> float:
    t = time.perf_counter()
    res = nbtune.tune(CELL, minimize="loss", n_trials=n, sampler=sampler, seed=0, store=store, view=view)
    elapsed = time.perf_counter() - t
    assert res.n_finished == n
    if throughput:  # seconds from the first trial's start to the last trial's end
        trials = res.study.trials
        return (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return elapsed


def widget_factory(run, search):
    from nbtune.view.widgets import WidgetView

    return WidgetView(
        run.study, run.metric, run.direction, sampler=run.sampler, scheduler=run.scheduler, search=search, display=False
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--widget-trials", type=int, default=1000)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = {}
    small = max(1, args.trials // 3)
    for sampler in ("random", "tpe"):
        raw, ours, raw_small, ours_small = [], [], [], []
        for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
            for n, r_list, o_list in ((args.trials, raw, ours), (small, raw_small, ours_small)):
                with tempfile.TemporaryDirectory() as d:
                    r_list.append(raw_optuna(n, sampler, d))
                with tempfile.TemporaryDirectory() as d:
                    o_list.append(nbtune_run(n, sampler, d))
        r, o = statistics.median(raw), statistics.median(ours)
        pairs = sorted(b / a for a, b in zip(raw, ours))  # each repeat's own ratio: how far the noise reaches
        # The cost of one more trial: what the long searches took beyond the short ones, per extra
        # trial (a search's fixed start, the study and its baseline, cancels out)
        extra = args.trials - small
        r_marginal = (r - statistics.median(raw_small)) / extra
        o_marginal = (o - statistics.median(ours_small)) / extra
        out[sampler] = {
            "raw_optuna_s": r,
            "nbtune_s": o,
            "ratio": o / r,
            "raw_ms_per_trial": 1000 * r / args.trials,
            "nbtune_ms_per_trial": 1000 * o / args.trials,
            "repeat_ratios": pairs,
            "small_trials": small,
            "raw_marginal_ms": 1000 * r_marginal,
            "nbtune_marginal_ms": 1000 * o_marginal,
            "marginal_ratio": o_marginal / r_marginal,
        }
        print(
            f"{sampler:6s}: raw Optuna {1000 * r / args.trials:6.2f} ms/trial · nbtune {1000 * o / args.trials:6.2f} "
            f"ms/trial · ratio {o / r:.2f}x (target <= 1.1x; the repeats' own ratios {pairs[0]:.2f}x-{pairs[-1]:.2f}x); "
            f"one more trial: {1000 * r_marginal:.2f} vs {1000 * o_marginal:.2f} ms, {o_marginal / r_marginal:.2f}x"
        )
    plain, widget = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            plain.append(nbtune_run(args.widget_trials, "random", d, throughput=True))
        with tempfile.TemporaryDirectory() as d:
            widget.append(nbtune_run(args.widget_trials, "random", d, view=widget_factory, throughput=True))
    p, w = statistics.median(plain), statistics.median(widget)
    out["widget"] = {"no_view_s": p, "widget_s": w, "throughput_cost": 1 - p / w}
    print(f"widget: throughput cost {100 * (1 - p / w):.1f}% of trials/s (target <= 5%)")
    Path(__file__).with_name("results").mkdir(exist_ok=True)
    Path(__file__).with_name("results").joinpath("overhead.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
