"""A database store under load: 1, 2, 4 and 8 worker processes against one PostgreSQL.

A trivial cell (one uniform parameter, no work), the random sampler (its cost does not grow with
the study, so what is measured is the store), ``--trials N`` per configuration. For each number
of worker processes it measures, from the first trial's start to the last trial's end (worker
start-up excluded):

* nbtune's throughput (trials/s) and time per trial, with ``--jobs K`` (loky) and the database
  store (its lock, its control table and the leases included);
* raw Optuna's, in the same run: K processes each running ``study.optimize`` on the same
  ``RDBStorage`` (no lock, no leases), the baseline nbtune is compared with.

The server is started by this script (tests/postgres.py: a temp folder, a Unix socket, fsync off
as in the tests, so the numbers are the software's, not the disk's), or pass ``--url``.
Writes ``benchmarks/results/database.json``. About 2 minutes on 2 cores::

    python benchmarks/bench_database.py [--trials 200] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

import nbtune

CELL = "x = 0.5  # tune: uniform(0.0, 1.0)\nloss = (x - 0.3) ** 2\n"


def _span(trials: list[optuna.trial.FrozenTrial]) -> float:
    return (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()


def _raw_worker(url: str, name: str, n: int, seed: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=url, sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(lambda t: (t.suggest_float("x", 0.0, 1.0) - 0.3) ** 2, n_trials=n)


def raw(url: str, k: int, n: int) -> float:
    name = f"raw-{k}-{time.time_ns()}"
    study = optuna.create_study(study_name=name, storage=url)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_raw_worker, args=(url, name, n // k, i)) for i in range(k)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return _span(study.trials) / len(study.trials)


def ours(url: str, k: int, n: int) -> tuple[float, float]:
    name = f"nbtune-{k}-{time.time_ns()}"
    t0 = time.perf_counter()
    res = nbtune.tune(
        CELL, minimize="loss", n_trials=n, n_jobs=k, sampler="random", seed=0, store=url, name=name, view=None
    )
    wall = time.perf_counter() - t0
    assert res.n_finished == n
    return _span(res.study.trials) / n, wall


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
    from postgres import postgres_server

    with postgres_server("nbtune_bench") as started:
        yield started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--url", default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[dict[str, Any]] = []
    with server(args.url) as url:
        from nbtune.store.database import DatabaseStore

        sa_url = DatabaseStore(url).url  # the psycopg driver, as nbtune uses it
        ours(url, 1, 10)  # warm: imports, tables
        for k in (1, 2, 4, 8):
            ratios, per_ours, per_raw, walls = [], [], [], []
            for _ in range(2):  # interleaved
                r = raw(sa_url, k, args.trials)
                o, wall = ours(url, k, args.trials)
                per_raw.append(r)
                per_ours.append(o)
                walls.append(wall)
                ratios.append(o / r)
            row = {
                "workers": k,
                "nbtune_ms_per_trial": 1000 * statistics.median(per_ours),
                "raw_optuna_ms_per_trial": 1000 * statistics.median(per_raw),
                "ratio": statistics.median(ratios),
                "nbtune_trials_per_s": 1 / statistics.median(per_ours),
                "raw_trials_per_s": 1 / statistics.median(per_raw),
                "nbtune_wall_s": statistics.median(walls),
            }
            rows.append(row)
            print(
                f"{k} worker(s): nbtune {row['nbtune_ms_per_trial']:.1f} ms/trial ({row['nbtune_trials_per_s']:.0f}/s), "
                f"raw Optuna {row['raw_optuna_ms_per_trial']:.1f} ms/trial ({row['raw_trials_per_s']:.0f}/s), "
                f"ratio {row['ratio']:.2f}x",
                flush=True,
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "what": "trivial cell, random sampler, K worker processes on one PostgreSQL (Unix socket, fsync off)",
        "trials": args.trials,
        "rows": rows,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "nbtune": nbtune.__version__},
    }
    (out / "database.json").write_text(json.dumps(payload, indent=1))
    print(f"wrote {out / 'database.json'}")


if __name__ == "__main__":
    main()
