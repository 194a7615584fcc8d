"""Validation discipline, measured: does re-validation pick better, and how optimistic is a search?

Two experiments, each over ``--seeds`` seeds (default 5), with nbtune's own options:

1. **Re-validation vs the search's winner** (``--revalidate 3 --seeds 5``). A decision tree
   that draws random features at each split (``max_features``), so its score depends on the
   seed; scikit-learn's breast-cancer data split train / validation / holdout afresh for every
   benchmark seed. A 60-trial TPE search (the tree's seed fixed, as nbtune does by default),
   then the top 3 configurations re-run with 5 other seeds. Compared, on the holdout (averaged
   over the same 5 re-validation seeds for both, so only the *choice* differs): the search's
   winner and the most stable pick (best lower 95% bound).
2. **The optimism of a long search** (``--holdout``). A 500-trial random search of 8-feature
   subsets for a logistic regression on a 40-feature problem with a 30-example validation set
   (a leaky setting on purpose) and a 1,000-example holdout. Reported: the winner's validation
   accuracy, its sealed holdout accuracy, and the gap, which is what a search *without* a sealed
   holdout would silently report as its result; and whether nbtune warned.

Results go to ``benchmarks/results/validation.json``; the numbers are what they are, including
where re-validation picks the same or a worse configuration.

    python benchmarks/bench_validation.py            # about 2 minutes on 2 cores
    python benchmarks/bench_validation.py --seeds 3  # quicker
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import nbtune
from nbtune.exceptions import NbtuneWarning

TREE_CELL = """\
seed = 0              # tune: seed
max_depth = 4         # tune: int(1, 12)
min_samples_leaf = 1  # tune: logint(1, 40)
max_features = 1.0    # tune: uniform(0.05, 1.0)
model = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=min_samples_leaf,
                               max_features=max_features, random_state=seed)
model.fit(X_train, y_train)
val_acc = model.score(X_val, y_val)
test_acc = model.score(X_test, y_test)
"""

SUBSET_CELL = """\
subset = 0    # tune: int(0, 1000000)
cols = np.random.default_rng(subset).choice(40, size=8, replace=False)
model = LogisticRegression(max_iter=200).fit(X_train[:, cols], y_train)
val_acc = model.score(X_val[:, cols], y_val)
test_acc = model.score(X_test[:, cols], y_test)
"""


def revalidation(seed: int, store: Path) -> dict[str, object]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_breast_cancer(return_X_y=True)
    X_dev, X_test, y_dev, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    X_train, X_val, y_train, y_val = train_test_split(X_dev, y_dev, test_size=0.25, stratify=y_dev, random_state=seed)
    ns = dict(DecisionTreeClassifier=DecisionTreeClassifier, X_train=X_train, y_train=y_train, X_val=X_val)
    ns.update(y_val=y_val, X_test=X_test, y_test=y_test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NbtuneWarning)
        res = nbtune.tune(
            TREE_CELL,
            maximize="val_acc",
            n_trials=60,
            seed=seed,
            revalidate=3,
            seeds=5,
            holdout="test_acc",
            user_ns=ns,
            store=store,
            name=f"reval{seed}",
            view=None,
        )
    df = res.revalidation()
    winner = df[df.search_rank == df.search_rank.min()].iloc[0]
    pick = df[df.chosen].iloc[0]
    return {
        "seed": seed,
        "winner_trial": int(winner.name),
        "pick_trial": int(pick.name),
        "same_choice": bool(winner.name == pick.name),
        "winner_search_val": float(winner.search_value),
        "winner_val_mean": float(winner["mean"]),
        "pick_val_mean": float(pick["mean"]),
        "winner_holdout": float(winner.test_acc_mean),
        "pick_holdout": float(pick.test_acc_mean),
    }


def optimism(seed: int, store: Path, n_trials: int) -> dict[str, object]:
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    X, y = make_classification(n_samples=1430, n_features=40, n_informative=6, random_state=seed, flip_y=0.1)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, train_size=400, random_state=seed)
    ns = dict(np=np, LogisticRegression=LogisticRegression, X_train=X_train, y_train=y_train)
    ns.update(X_val=X_rest[:30], y_val=y_rest[:30], X_test=X_rest[30:], y_test=y_rest[30:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NbtuneWarning)
        res = nbtune.tune(
            SUBSET_CELL,
            maximize="val_acc",
            n_trials=n_trials,
            seed=seed,
            sampler="random",
            holdout="test_acc",
            user_ns=ns,
            store=store,
            name=f"leak{seed}",
            view=None,
        )
    h = res.holdout()
    assert h is not None
    return {
        "seed": seed,
        "n_trials": n_trials,
        "validation": h.value,
        "holdout": h.holdout_value,
        "gap": h.gap,
        "warned": any(issubclass(w.category, NbtuneWarning) for w in caught),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=500, help="trials of the leaky search")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = parser.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        reval = [revalidation(s, store) for s in range(args.seeds)]
        for r in reval:
            print(
                f"seed {r['seed']}: winner holdout {r['winner_holdout']:.3f}, re-validated pick "
                f"{r['pick_holdout']:.3f}" + (" (same configuration)" if r["same_choice"] else "")
            )
        leak = [optimism(s, store, args.trials) for s in range(args.seeds)]
        for r in leak:
            print(
                f"seed {r['seed']}: {r['n_trials']} trials, validation {r['validation']:.3f} vs holdout "
                f"{r['holdout']:.3f}: gap {r['gap']:+.3f}{' (warned)' if r['warned'] else ''}"
            )
    diff = [float(r["pick_holdout"]) - float(r["winner_holdout"]) for r in reval]  # type: ignore[arg-type]
    out = {
        "revalidation": {
            "runs": reval,
            "mean_holdout_gain_of_the_pick": statistics.fmean(diff),
            "pick_better": sum(d > 0 for d in diff),
            "pick_worse": sum(d < 0 for d in diff),
            "same_or_equal": sum(d == 0 for d in diff),
        },
        "optimism": {
            "runs": leak,
            "mean_gap": statistics.fmean(float(r["gap"]) for r in leak),  # type: ignore[arg-type]
            "warned": sum(bool(r["warned"]) for r in leak),
        },
        "runtime_seconds": time.time() - t0,
    }
    print(
        f"re-validation: the pick's holdout minus the winner's, mean {out['revalidation']['mean_holdout_gain_of_the_pick']:+.4f} "
        f"(better {out['revalidation']['pick_better']}, worse {out['revalidation']['pick_worse']}, "
        f"equal {out['revalidation']['same_or_equal']} of {args.seeds})"
    )
    print(
        f"a {args.trials}-trial search on 30 validation examples is optimistic by {out['optimism']['mean_gap']:+.3f} on average"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "validation.json").write_text(json.dumps(out, indent=2))
    print(f"total {out['runtime_seconds']:.0f}s; wrote {args.out / 'validation.json'}")


if __name__ == "__main__":
    main()
