"""The dashboard on a 10,000-trial study: cost of one table redraw, of the plots, and sizes.

    python benchmarks/bench_widgets.py [--trials 10000]

A study with curves, stopped trials and their reasons is built in memory (Optuna's
``create_trial``), then the widget is drawn from it as it would be during a search.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from nbtune.run.schedulers import SchedulerSpec
from nbtune.store.attrs import ATTR
from nbtune.view.result import TuneResult
from nbtune.view.widgets import WidgetView


def build(n: int) -> optuna.Study:
    rng = random.Random(0)
    study = optuna.create_study(direction="maximize", study_name="bench")
    trials = []
    for _i in range(n):
        q = rng.random()
        steps = 27 if rng.random() < 0.3 else rng.choice([1, 3, 9])
        iv = {s: q * (1 - 0.6**s) for s in range(1, steps + 1)}
        pruned = steps < 27
        attrs = (
            {
                ATTR.DECISION: {
                    "epoch": steps,
                    "rung": 0,
                    "bracket": 0,
                    "value": iv[steps],
                    "cutoff": 0.7,
                    "n_compared": 9,
                    "n_keep": 3,
                }
            }
            if pruned
            else {}
        )
        trials.append(
            create_trial(
                state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
                value=iv[steps],
                params={"q": q, "lr": 10 ** rng.uniform(-5, -1)},
                distributions={"q": FloatDistribution(0, 1), "lr": FloatDistribution(1e-5, 0.1, log=True)},
                intermediate_values=iv,
                user_attrs=attrs,
            )
        )
    study.add_trials(trials)
    return study


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10_000)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = build(args.trials)
    sched = SchedulerSpec(kind="hyperband", R=27, metric="acc", direction="maximize")
    t = time.perf_counter()
    view = WidgetView(study, "acc", "maximize", sampler="tpe", scheduler=sched, display=False)
    first = time.perf_counter() - t
    t = time.perf_counter()
    view.redraw(force=True, plots=False)
    table = time.perf_counter() - t
    t = time.perf_counter()
    view.redraw(force=True, plots=True)
    plots = time.perf_counter() - t
    t = time.perf_counter()
    html = TuneResult(study, "acc").html()
    summary = time.perf_counter() - t
    rows = view.table_html.value.count("<tr class=")
    out = {
        "trials": args.trials,
        "first_draw_s": first,
        "table_redraw_s": table,
        "plots_redraw_s": plots,
        "html_summary_s": summary,
        "table_rows_in_dom": rows,
        "table_html_bytes": len(view.table_html.value),
        "decisions_html_bytes": len(view.decisions.value),
        "plot_png_bytes": len(view.plot.value),
        "html_summary_bytes": len(html),
    }
    for k, v in out.items():
        print(f"{k:22s} {v:.3f}" if isinstance(v, float) else f"{k:22s} {v}")
    Path(__file__).with_name("results").mkdir(exist_ok=True)
    Path(__file__).with_name("results").joinpath("widgets.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
