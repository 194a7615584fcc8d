"""The data fingerprint of a study's identity: nbtune's (the C pickler, since 2026-12-01) against
``joblib.hash`` (before), on the notebook values a cell reads.

Every search hashes the notebook data its cell reads, in the kernel before the first trial and once
in each worker process (its check of data changed in place). ``joblib.hash`` pickles with Python's
pure-Python pickler: a list of 1M dicts took about 19 s, so a cell reading it waited that long
before its first trial, and a worker as long again. The two are timed interleaved on each value
(median of the repeats), and the ratio is joblib's time over nbtune's.

    python benchmarks/bench_fingerprint.py [--repeat 3] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nbtune.cell.identity import value_fingerprint


def values(scale: float) -> dict[str, Callable[[], Any]]:
    """What notebooks read, by kind: made when timed, so that only one is in memory at a time."""
    n = int(1_000_000 * scale)
    rng = np.random.default_rng(0)
    return {
        "1M dicts (records)": lambda: [
            {"user": i, "item": f"item{i % 5000}", "rating": float(i % 5), "ts": 1_700_000_000 + i} for i in range(n)
        ],
        "1M strings (texts)": lambda: [f"review {i}: the product was fine, shipping slow" for i in range(n)],
        "200k token lists": lambda: [list(range(i % 50, i % 50 + 30)) for i in range(n // 5)],
        "1M (int, str) tuples": lambda: [(i, f"label{i % 100}") for i in range(n)],
        "dict of 100k arrays": lambda: {f"k{i}": np.full(8, i, dtype=np.float32) for i in range(n // 10)},
        "200 MB float array": lambda: rng.random(int(25_000_000 * scale)),
        "1M-row DataFrame (pandas' hashes: unchanged)": lambda: pd.DataFrame(
            {"a": np.arange(n), "s": [f"s{i % 1000}" for i in range(n)]}
        ),
    }


def timed(value: Any, pickled: bool) -> float:
    start = time.perf_counter()
    value_fingerprint(value, pickled)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="size of the values (1.0: as named)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "fingerprint.json"))
    args = ap.parse_args()
    rows = []
    for name, make in values(args.scale).items():
        value = make()
        nbtune_s, joblib_s = [], []
        for _ in range(args.repeat):  # interleaved: the machine's noise falls on both
            nbtune_s.append(timed(value, True))
            joblib_s.append(timed(value, False))
        ours, theirs = statistics.median(nbtune_s), statistics.median(joblib_s)
        row = {
            "value": name,
            "nbtune_s": round(ours, 3),
            "joblib_s": round(theirs, 3),
            "ratio": round(theirs / ours, 1),
        }
        rows.append(row)
        print(
            f"{name:45s} nbtune {row['nbtune_s']:7.2f} s   joblib.hash {row['joblib_s']:7.2f} s   {row['ratio']:5.1f}x"
        )
    Path(args.out).write_text(json.dumps({"repeat": args.repeat, "scale": args.scale, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
