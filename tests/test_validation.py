"""Validation discipline in a real IPython shell with real scikit-learn models: the seed
variable, re-validation across seeds, the sealed holdout and its leakage warning."""

from __future__ import annotations

import random
import re

import optuna
import pandas as pd
import pytest
from IPython.core.error import UsageError

import nbtune
from nbtune.exceptions import NbtuneWarning
from nbtune.store.attrs import ATTR


def run(ip, line, cell):
    return ip.run_cell_magic("tune", line, cell)


TREES = """\
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier

X, y = load_breast_cancer(return_X_y=True)
X_dev, X_test, y_dev, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
X_train, X_val, y_train, y_val = train_test_split(X_dev, y_dev, test_size=0.3, random_state=0, stratify=y_dev)
"""

# A decision tree that sees a random subset of features at each split: with max_features=2 its
# validation accuracy swings with the seed; at seed 0 that configuration is the luckiest.
TREE_CELL = """\
seed = 0            # tune: seed
max_features = 8    # tune: choice(1, 2, 4, 8, 30)
max_depth = 4       # tune: choice(2, 4, 8)
model = DecisionTreeClassifier(max_features=max_features, max_depth=max_depth, random_state=seed)
model.fit(X_train, y_train)
val_acc = model.score(X_val, y_val)
test_acc = model.score(X_test, y_test)
"""


@pytest.fixture
def trees(ip):
    ip.run_cell(TREES)
    return ip


def test_revalidation_changes_the_winner_of_a_seed_unstable_search(trees):
    with pytest.warns(NbtuneWarning, match="mean of 5 seeds") as caught:
        res = run(
            trees,
            "--maximize val_acc --sampler grid --trials 15 --revalidate 3 --seeds 5 --holdout test_acc -o res",
            TREE_CELL,
        )
    assert "--revalidate K" not in str(caught[0].message)  # it did that already
    assert res.n_finished == 15  # the checks are not search trials
    best = res.best_trial
    assert best.params == {"max_features": 2, "max_depth": 4}  # lucky at seed 0
    df = res.revalidation()
    assert list(df.index[:3]) == [t.number for t in res.top(3)]  # the top 3 of the search, in order
    assert (df.n_seeds == 5).all() and (df.failed == 0).all()
    chosen = df[df.chosen]
    assert len(chosen) == 1
    pick = chosen.iloc[0]
    assert pick.name != best.number and pick.params_max_features == 30  # stable beats lucky
    assert pick.rank_change > 0  # it moved up
    # the rule: the best lower end of the 95% interval
    assert pick.ci95_low == df.ci95_low.max()
    assert df.loc[best.number].sd > 3 * pick.sd
    # the re-validation runs are kept beside the study, with their seeds, never in it
    checks = optuna.load_study(study_name=res.study.study_name + "@check", storage=res.study._storage)
    runs = [t for t in checks.trials if t.user_attrs[ATTR.CHECK]["role"] == "revalidate"]
    assert len(runs) == 15 and {t.user_attrs[ATTR.SEED] for t in runs} == {1, 2, 3, 4, 5}
    assert all(ATTR.HOLDOUT in t.user_attrs for t in runs)
    assert not any(ATTR.HOLDOUT in t.user_attrs for t in res.study.trials)  # sealed during the search
    text = res.summary()
    assert "re-validated the top 3 configurations with 5 seeds each" in text
    assert f"the most stable is trial {pick.name}, not the search's best (trial {best.number})" in text
    assert "nbtune-revalidation" in res.html()
    h = res.holdout()
    assert h.trial == pick.name and h.n_runs == 5 and h.n_trials == 15
    # its repr says the tolerance the gap is held to ('threshold=None' read as none: found trying nbtune)
    assert repr(h).endswith(f"gap={h.gap!r}, tolerance={h.tolerance!r}, warn={h.warn!r})") and h.tolerance == 0.02
    # the holdout of the chosen configuration only: the others' beside it invited choosing by it
    assert df.test_acc_mean[pick.name] == pytest.approx(h.holdout_value)
    assert df.test_acc_mean.drop(pick.name).isna().all()


def test_revalidation_resumes_and_never_runs_a_check_twice(trees):
    line = "--maximize val_acc --sampler grid --trials 15 --revalidate 2 --seeds 3 -o res"
    run(trees, line, TREE_CELL)
    res = run(trees, line, TREE_CELL)  # the same cell again: nothing new to run
    checks = optuna.load_study(study_name=res.study.study_name + "@check", storage=res.study._storage)
    assert len(checks.trials) == 6
    res.revalidate(top=3, seeds=3, view=None)  # one more candidate: 3 new runs only
    assert len(checks.trials) == 9 and len(res.revalidation()) == 3
    assert res.n_finished == 15
    # 3 seeds: the interval is wide, and the summary says why (found trying nbtune as a new user)
    assert "with 3 seeds a 95% interval is 4.303 standard errors wide either side" in res.summary()


def test_the_revalidation_table_keeps_a_choices_values_as_drawn(ip):
    """choice(None, 1000, 5000) read 1000.0 and NaN in res.revalidation(), a value TfidfVectorizer
    rejects when passed back (found trying nbtune as a new user); trials_dataframe() kept them."""
    cell = "seed = 0  # tune: seed\nk = None  # tune: choice(None, 1000, 5000)\nval = (k or 0) / 1000 + 0.001 * seed\n"
    res = run(ip, "--maximize val --sampler grid --trials 3 --revalidate 3 --seeds 2 -o res", cell)
    table = res.revalidation()
    assert sorted(table["params_k"], key=str) == [1000, 5000, None], table["params_k"]
    assert all(v is None or type(v) is int for v in table["params_k"]), list(table["params_k"])


def test_revalidation_says_when_its_intervals_do_not_tell_the_pick_from_the_next(ip):
    """Two candidates whose 95% intervals overlap were reported as 'the most stable is trial 14', a verdict
    the seeds did not give (found trying nbtune as a new RL user); apart, nothing more is said."""
    noisy = "seed = 0  # tune: seed\nx = 1  # tune: choice(1, 2, 3)\nval = x * 0.01 + [0.0, 0.3, -0.2, 0.25, -0.3][seed % 5]\n"
    res = run(ip, "--maximize val --sampler grid --trials 3 --revalidate 2 --seeds 5 --name noisy -o r", noisy)
    said = [m for m in res.summary().splitlines() if "intervals overlap" in m]
    assert len(said) == 1 and "5 seeds do not tell them apart" in said[0] and "seeds=10))" in said[0], res.summary()
    clear = noisy.replace("x * 0.01", "x * 10")
    res = run(ip, "--maximize val --sampler grid --trials 3 --revalidate 2 --seeds 5 --name clear -o r", clear)
    assert "intervals overlap" not in res.summary(), res.summary()
    # two values that make the same model (max_features 0.5888 and 0.5906: five features each) score the same with
    # every seed: more seeds cannot tell them apart, and the advice to add them was false (found auditing as a user)
    same = noisy.replace("x * 0.01", "min(x, 2) * 0.01")
    res = run(ip, "--maximize val --sampler grid --trials 3 --revalidate 2 --seeds 5 --name same -o r", same)
    table = res.revalidation()
    assert sorted(table.params_x) == [2, 3] and table["mean"].nunique() == 1, table
    picked, other = table.index[table.chosen][0], table.index[~table.chosen][0]
    assert (
        f"trial {picked} and trial {other} scored the same with every seed: with this data their values make the same "
        "model, and no number of seeds tells them apart" in res.summary()
    ), res.summary()
    assert "intervals overlap" not in res.summary()
    # the sd the interval used is a column: the candidates' pooled sd where it is larger (it could not be rebuilt)
    from nbtune.view.checks import t_quantile

    for _, row in table.iterrows():
        half = t_quantile(row.n_seeds - 1) * row.ci_sd / row.n_seeds**0.5
        assert row.ci_sd >= row.sd and row.ci95_high - row["mean"] == pytest.approx(half)


def test_tune_validate_revalidates_a_stored_study(trees, capsys):
    searched = run(trees, "--maximize val_acc --sampler grid --trials 15 --name trees", TREE_CELL)
    res = trees.run_line_magic("tune_validate", "trees --top 2 --seeds 3 -o rv")
    assert res is trees.user_ns["rv"]
    df = res.revalidation()
    assert len(df) == 2 and (df.n_seeds == 3).all()
    shown = trees.run_line_magic("tune_show", "trees -o again")
    assert len(trees.user_ns["again"].revalidation()) == 2  # reopened, the checks are there
    assert shown is trees.user_ns["again"]  # the magic's value too
    # The data changed since the search: re-validating on it would mix runs on two datasets into one
    # interval without a word (found trying nbtune as a new user).
    trees.run_cell("y_train = y_train[::-1].copy()")
    with pytest.raises(
        UsageError, match="the notebook data it reads changed: y_train since 'trees' ran: re-validating now"
    ):
        trees.run_line_magic("tune_validate", "trees --top 2 --seeds 4")
    # and so do the results bound before: the search's kept the old labels and re-validated on them,
    # where the magic refused (found trying nbtune as a new user)
    for before in (searched, res):
        with pytest.raises(
            nbtune.exceptions.ConfigError, match="the notebook data it reads changed: y_train since 'trees' ran"
        ):
            before.revalidate(top=2, seeds=4, view=None)
    assert len(res.revalidation()) == 2 and (res.revalidation().n_seeds == 3).all()


def test_tune_validate_after_the_loops_length_changed_says_the_data_changed(ip):
    """The notebook's N_EPISODES changed since the search: the error spoke of a --max-epochs the
    user never gave (found trying nbtune as a new user)."""
    ip.run_cell("N_EPISODES = 6")
    cell = (
        "seed = 0  # tune: seed\n"
        "a = 0.5  # tune: uniform(0.1, 1.0)\n"
        "rng = __import__('random').Random(seed)\n"
        "total = 0.0\n"
        "for episode in range(N_EPISODES):  # tune: epochs\n"
        "    total += a * rng.random()\n"
        "    score = total\n"
    )
    run(ip, "--maximize score --trials 6 --name eps --scheduler none", cell)
    ip.run_cell("N_EPISODES = 7")
    with pytest.raises(UsageError) as e:
        ip.run_line_magic("tune_validate", "eps --top 2 --seeds 2")
    assert str(e.value).startswith("the notebook data it reads changed: N_EPISODES since 'eps' ran"), str(e.value)
    ip.run_cell("N_EPISODES = 6")  # put back, it runs
    assert len(ip.run_line_magic("tune_validate", "eps --top 2 --seeds 2 -o rv").revalidation()) == 2


def test_tune_validate_revalidates_a_cross_validated_study(ip):
    """The stored study's steps are its folds, not epochs: they are not passed back as --max-epochs."""
    cell = (
        "seed = 0  # tune: seed\nfold = 0  # tune: folds(3)\nx = 0.5  # tune: uniform(0, 1)\n"
        "loss = (x - 0.3) ** 2 + fold * 0.01 + seed * 0.001\n"
    )
    run(ip, "--minimize loss --trials 4 --seed 0 --name cv", cell)
    df = ip.run_line_magic("tune_validate", "cv --top 2 --seeds 2 -o rv").revalidation()
    assert len(df) == 2 and (df.n_seeds == 2).all() and (df.failed == 0).all()


def test_the_seed_is_fixed_in_the_search_unless_asked_to_vary(ip):
    cell = "seed = 7  # tune: seed\nx = 0.5  # tune: uniform(0, 1)\nloss = seed + x\n"
    res = run(ip, "--minimize loss --trials 4 --seed 0 --name fixed -o r", cell)
    assert all(7 <= t.value < 8 for t in res.study.trials)  # common random numbers
    res = run(ip, "--minimize loss --trials 4 --seed 0 --name varied --vary-seed -o r", cell)
    assert [t.user_attrs[ATTR.SEED] for t in res.study.trials] == [7, 8, 9, 10]
    assert [int(t.value) for t in res.study.trials] == [7, 8, 9, 10]


def test_revalidation_of_a_search_with_varied_seeds_uses_seeds_no_trial_ran_with(ip):
    """With --vary-seed trial k ran with the seed + k: re-validating on the seed + 1 ... scored
    candidates again on their own search seeds, repeating their luck (found trying nbtune as a new
    user)."""
    cell = "seed = 7  # tune: seed\nx = 0.5  # tune: uniform(0, 1)\nloss = seed % 3 + x\n"
    res = run(ip, "--minimize loss --trials 6 --seed 0 --vary-seed --revalidate 2 --seeds 3 -o r", cell)
    searched = {t.user_attrs[ATTR.SEED] for t in res.study.trials}
    assert searched == set(range(7, 13))
    checked = {t.user_attrs[ATTR.SEED] for t in res.checks.checks.trials}
    assert checked == {13, 14, 15}
    # Without --vary-seed the search ran with the cell's seed alone: the next ones.
    res = run(ip, "--minimize loss --trials 6 --seed 0 --revalidate 2 --seeds 3 --name fixed -o r", cell)
    assert {t.user_attrs[ATTR.SEED] for t in res.checks.checks.trials} == {8, 9, 10}


LEAKY_SETUP = """\
import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

X, y = make_classification(n_samples=1600, n_features=40, n_informative=6, random_state=0, flip_y=0.1)
X_train, X_rest, y_train, y_rest = train_test_split(X, y, train_size=400, random_state=0)
X_test, y_test = X_rest[:1000], y_rest[:1000]
"""

# The search picks 8 of 40 features: with a tiny validation set and many trials it finds a subset
# that fits the validation set's noise.
SUBSET_CELL = """\
subset = 0    # tune: int(0, 1000000)
cols = np.random.default_rng(subset).choice(40, size=8, replace=False)
model = LogisticRegression(max_iter=200).fit(X_train[:, cols], y_train)
val_acc = model.score(X_val[:, cols], y_val)
test_acc = model.score(X_test[:, cols], y_test)
"""


def test_the_default_holdout_gap_follows_the_metrics_scale(ip):
    """0.02 is two points of accuracy; for an MSE in the thousands it made every search warn, at
    any gap (found trying nbtune as a new user on a regression)."""
    cell = "a = 0.5  # tune: uniform(0, 1)\nval_mse = 2900 + 100 * (a - 0.3) ** 2\ntest_mse = val_mse * {ratio}\n"
    res = run(
        ip, "--minimize val_mse --sampler random --seed 0 --trials 6 --holdout test_mse -o r", cell.format(ratio=1.05)
    )
    h = res.holdout()
    assert h.gap > 100 and not h.warn and h.tolerance == pytest.approx(0.1 * h.holdout_value)
    with pytest.warns(NbtuneWarning, match=r"the gap exceeds 3\d\d(\.\d+)? \(10% of the holdout, the default"):
        res = run(
            ip, "--minimize val_mse --sampler random --seed 0 --trials 6 --holdout test_mse", cell.format(ratio=1.2)
        )
    # The same error in other units (a target divided by 100,000): the same relative gap warns,
    # where an absolute 0.02 was more than the error itself (found trying nbtune as a new user).
    small = cell.replace("2900 + 100", "0.029 + 0.001")
    with pytest.warns(NbtuneWarning, match=r"the gap exceeds 0\.00\d+ \(10% of the holdout, the default"):
        res = run(
            ip,
            "--minimize val_mse --sampler random --seed 0 --trials 6 --holdout test_mse -o r",
            small.format(ratio=1.2),
        )
    assert res.holdout().warn and res.holdout().value < 0.04
    # --holdout-gap still decides
    res = run(ip, "--minimize val_mse --trials 6 --holdout test_mse --holdout-gap 500 -o r", cell.format(ratio=1.05))
    assert res.holdout().tolerance == 500


def test_a_leaky_search_warns_and_an_honest_one_does_not(ip):
    ip.run_cell(LEAKY_SETUP + "X_val, y_val = X_rest[1000:1030], y_rest[1000:1030]\n")
    with pytest.warns(NbtuneWarning, match=r"WARNING: the gap exceeds 0\.02"):
        res = run(ip, "--maximize val_acc --sampler random --seed 0 --trials 200 --holdout test_acc -o r", SUBSET_CELL)
    h = res.holdout()
    assert h.trial == res.best_trial.number and h.value == res.best_value and h.n_trials == 200
    assert h.gap > 0.05 and h.warn
    assert "after 200 trials against the same validation data" in res.summary()
    assert "nbtune-holdout" in res.html() and "color:#d93025" in res.html()

    ip.run_cell("X_val, y_val = X_rest[1000:1600], y_rest[1000:1600]\n")
    res = run(
        ip,
        "--maximize val_acc --sampler random --seed 0 --trials 10 --holdout test_acc --name honest -o r",
        SUBSET_CELL,
    )
    h = res.holdout()
    assert not h.warn and h.gap < 0.02
    assert "(within 0.02)" in h.sentence() if h.gap >= 0 else "the holdout scores better" in h.sentence()


def test_a_gap_with_no_search_behind_it_is_not_put_down_to_the_search(ip):
    """One trial, the cell's own defaults: the warning said the search picked an optimistic score
    and advised fewer trials (found trying nbtune as a new user: a macro F1 on a small holdout)."""
    from nbtune.view.checks import HoldoutReport

    def report(**kw):
        return HoldoutReport("val_f1", "test_f1", "maximize", 0, 0.7459, 0.7108, 1, None, **kw)

    text = report(baseline=True).sentence()
    assert "No search picked this configuration (it is the cell's own defaults): the validation data and" in text
    assert "optimistic" not in text and "fewer trials" not in text
    few = HoldoutReport("val_f1", "test_f1", "maximize", 2, 0.7459, 0.7108, 3, None).sentence()
    assert "Little of it is the search's doing (it compared 3 trials)" in few
    many = HoldoutReport("val_f1", "test_f1", "maximize", 2, 0.7459, 0.7108, 40, None).sentence()
    assert "The search picked what scores best on the data it was chosen on" in many
    # the defaults picked by re-validation from the top ones of 12 trials: picked on that data after all
    # (it said 'No search picked this configuration': found trying nbtune as a new user)
    picked = HoldoutReport("val_f1", "test_f1", "maximize", 0, 0.7459, 0.7108, 12, None, n_runs=3, baseline=True)
    assert "No search picked" not in picked.sentence() and "The search picked" in picked.sentence()
    # in a search of one trial, the baseline
    cell = "alpha = 0.1  # tune: loguniform(0.01, 1.0)\nval_f1 = 0.75 - alpha / 100\ntest_f1 = 0.71\n"
    with pytest.warns(NbtuneWarning, match="No search picked this configuration"):
        res = run(ip, "--maximize val_f1 -n 1 --holdout test_f1 -o r", cell)
    assert res.holdout().baseline


def test_lines_only_the_holdout_reads_are_sealed_with_it(ip, tmp_path):
    """'final = refit(...)' before 'test_loss = ... final ...' ran in every trial, for a score no
    trial computes (found trying nbtune as a new user): sealed with the holdout, it runs once."""
    calls = tmp_path / "calls"
    ip.user_ns["calls"] = str(calls)
    ip.run_cell("def refit(x):\n    open(calls, 'a').write('r')\n    return x\n")
    cell = (
        "x = 0.5  # tune: uniform(0, 1)\n"
        "loss = (x - 0.3) ** 2\n"
        "final = refit(x)\n"
        "shifted = final + 0.05\n"
        "test_loss = (shifted - 0.35) ** 2\n"
        "used = loss * 2\n"  # read by --record: not the holdout's
        "trained = open(calls, 'a').write('t')\n"  # read by no one (Keras' 'history = model.fit(...)'): it runs
    )
    res = run(ip, "--minimize loss --trials 6 --seed 0 --holdout test_loss --holdout-gap 1 --record used -o r", cell)
    assert calls.read_text().count("r") == 1  # once: the final evaluation
    assert calls.read_text().count("t") == 7  # every trial and the final evaluation
    assert res.holdout().holdout_value == pytest.approx((res.best_params["x"] + 0.05 - 0.35) ** 2)
    assert all("used" in t.user_attrs[ATTR.RECORD] for t in res.study.trials)

    # a line that sets again what the search lines read ('X = X.iloc[30:]', a scaler's 'X = fit_transform(X)')
    # runs in every trial: it was sealed because it reads itself, and the search tuned on the data before
    # it while the holdout run scored the data after it (found trying nbtune as a new forecasting user)
    cell = (
        "x = 0.5  # tune: uniform(0, 1)\n"
        "data = [1.0, 2.0, 3.0, 4.0]\n"
        "data = data[2:]\n"
        "n = len(data)\n"
        "loss = (x - 0.3) ** 2 + sum(data)\n"
        "test_loss = (x - 0.35) ** 2 + sum(data)\n"
    )
    res = run(
        ip, "--minimize loss --trials 4 --seed 0 --holdout test_loss --holdout-gap 1 --record n --name self", cell
    )
    assert {t.user_attrs[ATTR.RECORD]["n"] for t in res.study.trials} == {2}
    assert all(t.value == pytest.approx((t.params["x"] - 0.3) ** 2 + 7.0) for t in res.study.trials)


def test_the_lines_sealed_with_the_holdout_are_no_leak_and_a_helpers_reads_are_never_sealed(ip):
    """'scale = y_test.std()', read by the sealed line alone, is sealed with it: it read as a search line's
    possible leak. And 'X = X[5:]' read by a notebook helper the search calls runs in every trial: sealed, the
    trials ran on the data before it while the holdout run scored the data after it (both found retesting)."""
    ip.run_cell(
        "import numpy as np\nrng = np.random.default_rng(0)\nX, y = rng.normal(size=(40, 2)), rng.normal(size=40)\n"
        "X_test, y_test = rng.normal(size=(20, 2)), rng.normal(size=20)\n"
        "def fit_eval(a):\n    return float(((X[:, 0] * a - y) ** 2).mean()), len(X)\n"
    )
    cell = (
        "a = 0.5  # tune: uniform(0, 1)\nX = X[5:]\ny = y[5:]\nval_mse, n = fit_eval(a)\n"
        "scale = y_test.std()\ntest_mse = float(((X_test[:, 0] * a - y_test) ** 2).mean()) / scale\n"
    )
    res = run(ip, "--minimize val_mse -n 3 --seed 0 --holdout test_mse --holdout-gap 100 --record n -o r", cell)
    assert not any("leak" in m for m in res.messages), res.messages
    assert {t.user_attrs[ATTR.RECORD]["n"] for t in res.study.trials} == {35}
    report = res.holdout()
    assert report.value == pytest.approx(res.study.trials[report.trial].value)


def test_the_holdout_is_never_computed_during_the_search(ip, tmp_path):
    """The sealed lines cost nothing per trial: here they would fail if they ran."""
    calls = tmp_path / "calls"
    ip.user_ns["calls"] = str(calls)
    cell = (
        "x = 0.5  # tune: uniform(0, 1)\n"
        "loss = (x - 0.3) ** 2\n"
        "test_loss = open(calls, 'a').write('x') and (x - 0.35) ** 2\n"
    )
    res = run(ip, "--minimize loss --trials 12 --seed 0 --holdout test_loss --holdout-gap 1 -o r", cell)
    assert calls.read_text() == "x"  # once: the final evaluation of the best configuration
    assert res.holdout().trial == res.best_trial.number


@pytest.mark.parametrize(
    "line, cell, message",
    [
        (
            "",
            "seed = 0.5  # tune: seed\nx = 1  # tune: int(0, 3)\nloss = x\n",
            "line 2 of the %%tune cell: the seed 'seed' must be a whole number >= 0 \\(got 0.5\\)",
        ),
        (
            "",
            "s = 0  # tune: seed\nt = 1  # tune: seed\nx = 1  # tune: int(0, 3)\nloss = x\n",
            "line 3 of the %%tune cell: a second '# tune: seed' \\('t'; the first is 's' on line 2\\)",
        ),
        ("", "seed = 0  # tune: seed(3)\nx = 1  # tune: int(0, 3)\nloss = x\n", "'seed' takes no arguments"),
        (
            "",
            "seed = 0  # tune: seed\nx = 1  # tune: int(0, 3)\nseed = 4\nloss = x\n",
            "line 4 of the %%tune cell: 'seed' is annotated on line 2 but set again here",
        ),
        (
            "--revalidate 3",
            "x = 1  # tune: int(0, 3)\nloss = x\n",
            "--revalidate re-runs configurations with other seeds, but the %%tune cell has no seed variable; mark the one",
        ),
        (
            "--vary-seed",
            "x = 1  # tune: int(0, 3)\nloss = x\n",
            "--vary-seed gives the seed variable a new value in each trial, but the %%tune cell has none",
        ),
        ("--seeds 1", "x = 1  # tune: int(0, 3)\nloss = x\n", "--seeds must be a whole number >= 2"),
        (
            "--revalidate -1",
            "x = 1  # tune: int(0, 3)\nloss = x\n",
            "--revalidate takes how many of the top configurations",
        ),
        (
            "--holdout loss",
            "x = 1  # tune: int(0, 3)\nloss = x\n",
            "--holdout loss names the metric the search optimises",
        ),
        ("--holdout test_loss", "x = 1  # tune: int(0, 3)\nloss = x\n", "the %%tune cell never assigns 'test_loss'"),
        (  # another measure (a log loss searched, an AUC held out: found trying nbtune as a new user)
            "--holdout test_auc",
            "x = 1  # tune: int(0, 3)\nloss = x\ntest_auc = x\n",
            re.escape(
                "--holdout test_auc reads as a score (higher is better) and the metric loss as an error (lower is "
                "better): the holdout is the metric's own measure on the held-out data (nbtune compares the two to "
                "say how optimistic the search's value is); compute it as loss is computed, on the held-out data "
                "('test_loss = ...', --holdout test_loss)"
            ),
        ),
        (
            "--holdout test_loss",
            "x = 1  # tune: int(0, 3)\nloss = x\ntest_loss = x + 1\nprint(test_loss)\n",
            "line 5 of the %%tune cell reads 'test_loss', the sealed holdout",
        ),
        (
            "--holdout t --holdout-gap 0",
            "x = 1  # tune: int(0, 3)\nloss = x\nt = x\n",
            "--holdout-gap must be a positive number",
        ),
        (
            "--holdout-gap 0.05",
            "x = 1  # tune: int(0, 3)\nloss = x\n",
            "--holdout-gap sets when the sealed holdout warns",
        ),
        (
            "--seeds 3",
            "x = 1  # tune: int(0, 3)\nloss = x\n",
            "--seeds 3 sets the seeds of re-validation, which is not",
        ),
        (
            "--holdout t",
            "x = 1  # tune: int(0, 3)\nloss, t = x, x + 1\n",
            "line 3 of the %%tune cell assigns 't' \\(the sealed holdout\\) together with 'loss'",
        ),
        (
            "--holdout t --record t",
            "x = 1  # tune: int(0, 3)\nloss = x\nt = x\n",
            "--record t: 't' is the sealed holdout",
        ),
        (
            "--holdout t --subject-to 't <= 3'",
            "x = 1  # tune: int(0, 3)\nloss = x\nt = x\n",
            "--subject-to t: 't' is the sealed holdout",
        ),
        (
            "",
            "f = 0  # tune: folds\nx = 1  # tune: int(0, 3)\nloss = x\n",
            "folds takes the number of folds, e.g. 'fold = 0  # tune: folds\\(5\\)'",
        ),
    ],
)
def test_bad_validation_input_is_one_line_before_any_trial(ip, line, cell, message):
    with pytest.raises(UsageError, match=message):
        run(ip, f"--minimize loss --trials 3 {line}", cell)
    assert nbtune.Store(".nbtune").study_names() == []  # nothing ran, nothing was stored


def test_a_holdout_of_another_measure_the_same_way_round_is_one_line_before_any_trial(ip):
    """Accuracy searched, an AUC held out: the gap compared the two (found retesting as a user); the same
    measure under other names (accuracy and acc, roc_auc and auc) is fine."""
    cell = "x = 1  # tune: int(0, 3)\nval_acc = x\ntest_auc = x\ntest_accuracy = x\n"
    with pytest.raises(UsageError) as info:
        run(ip, "--maximize val_acc --trials 3 --holdout test_auc", cell)
    assert str(info.value) == (
        "--holdout test_auc measures auc and the metric val_acc acc: the holdout is the metric's own measure on the "
        "held-out data (nbtune compares the two to say how optimistic the search's value is); compute it as val_acc "
        "is computed, on the held-out data ('test_acc = ...', --holdout test_acc)"
    )
    assert nbtune.Store(".nbtune").study_names() == []
    assert run(ip, "--maximize val_acc --trials 3 --holdout test_accuracy", cell).n_finished == 3


def test_threads_that_seed_a_shared_generator_are_warned_about(ip):
    cell = "import random\nx = 1  # tune: int(0, 3)\nrandom.seed(x)\nloss = random.random()\n"
    with pytest.warns(NbtuneWarning, match=r"line 4 of the %%tune cell: random\.seed\(\) seeds a generator that all"):
        run(ip, "--minimize loss --trials 2 --jobs 2 --backend threading", cell)


def test_a_guardrail_makes_the_unconstrained_best_infeasible(trees):
    cell = (
        "max_depth = 3         # tune: choice(1, 2, 3, 4, 6, 8)\n"
        "min_samples_leaf = 1  # tune: choice(1, 5, 20)\n"
        "model = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=min_samples_leaf, random_state=0)\n"
        "model.fit(X_train, y_train)\n"
        "val_acc = model.score(X_val, y_val)\n"
        "train_acc = model.score(X_train, y_train)\n"
        "n_leaves = model.get_n_leaves()\n"
    )
    free = run(trees, "--maximize val_acc --sampler grid --trials 18 --name free -o f", cell)
    assert free.best_trial.user_attrs.get(ATTR.RECORD) is None
    leaves = {t.number: None for t in free.study.trials}
    res = run(
        trees,
        "--maximize val_acc --sampler grid --trials 18 --name guarded --subject-to 'n_leaves <= 6' "
        "--record train_acc,n_leaves -o g",
        cell,
    )
    records = {t.number: t.user_attrs[ATTR.RECORD] for t in res.study.trials}
    assert set(records[0]) == {"train_acc", "n_leaves"} and len(leaves) == 18
    best = res.best_trial
    assert records[best.number]["n_leaves"] <= 6
    # the unconstrained best (same grid, same scores) breaks the guardrail
    unconstrained = max(res.study.trials, key=lambda t: t.value)
    assert unconstrained.value > best.value and records[unconstrained.number]["n_leaves"] > 6
    assert unconstrained.constraints == {"n_leaves <= 6": records[unconstrained.number]["n_leaves"] - 6}
    assert free.best_value == unconstrained.value
    df = res.trials_dataframe()
    assert {"record_train_acc", "record_n_leaves", "feasible", "constraint_n_leaves <= 6"} <= set(df.columns)
    assert df.feasible.sum() == sum(r["n_leaves"] <= 6 for r in records.values())
    assert "of them breaking 'n_leaves <= 6'" in res.summary()
    assert all(t.number != unconstrained.number for t in res.top(5))
    # the dashboard marks the infeasible trials and shows the feasibility rate
    from nbtune.view.widgets import WidgetView

    v = WidgetView(res.study, "val_acc", "maximize", display=False)
    assert f"{int(df.feasible.sum())}/18 complete meet the guardrails" in v.status.value
    v.table.sort = "metric"
    v.redraw(force=True)
    assert "data-state='infeasible'" in v.table_html.value and "breaks n_leaves &lt;= 6 (by" in v.table_html.value
    assert "n_leaves" in v.table_html.value  # the recorded column


# A network whose size is known before its first epoch, and whose wider versions score higher: a
# size budget that only the narrower ones meet.
SIZED = """\
width = 32  # tune: int(4, 100)
n_params = width * 10
acc = 0.0
for epoch in range(9):  # tune: epochs
    acc = (1 - 1 / (epoch + 2)) * (width / 100) ** 0.5 + 0.001 * ((width * 7919) % 13)
"""


@pytest.mark.parametrize("options", ["", "--stop-only", "--scheduler hyperband"])
def test_a_trial_known_to_break_a_guardrail_does_not_go_on_at_a_rung(ip, options):
    """Successive halving promoted the wider networks, over a size budget, to the end and left the
    ones within it paused: the search ended with no complete trial that met the guardrail (found
    trying nbtune as a new user). A guardrail's variable set by the epoch is read there."""
    res = run(ip, f"--maximize acc -n 30 --seed 1 --subject-to 'n_params <= 400' {options} -o res", SIZED)
    trials = res.study.trials
    broke = [t for t in trials if t.params["width"] > 40 and not t.user_attrs.get(ATTR.BASELINE)]
    assert broke and all(t.state.name == "PRUNED" for t in broke)
    first = min(int(t.user_attrs[ATTR.DECISION]["epoch"]) for t in broke)
    assert all(t.last_step == t.user_attrs[ATTR.DECISION]["epoch"] for t in broke)  # stopped at the rung it reached
    decision = broke[0].user_attrs[ATTR.DECISION]
    assert decision["reason"].startswith(
        f"it breaks the guardrail 'n_params <= 400' (by {broke[0].params['width'] * 10 - 400}"
    )
    assert not decision.get("paused") and first >= 1
    assert all(t.constraints["n_params <= 400"] > 0 for t in broke)  # infeasible to Optuna's samplers too
    feasible = [t for t in trials if t.state.name == "COMPLETE" and t.params["width"] <= 40]
    assert len(feasible) >= 2, [(t.number, t.state.name, t.params) for t in trials]
    assert res.best_trial.params["width"] <= 40
    assert "no completed trial meets the guardrails" not in res.summary()
    said = rf"stopped early \((\d+ of them paused for now, )?{len(broke)} for breaking a guardrail at a rung\)"
    assert re.search(said, res.summary()), res.summary()


@pytest.mark.parametrize(
    "where",
    [
        "after",  # set after the loop: not known at a rung
        # set in the loop, lower as training goes on: a trial over the bound at a rung may meet it at the end
        # (found retesting the change: a sparse model stopped at epoch 3 would have met 'nnz <= 270' at epoch 9)
        "in",
        # and in worker processes, which rebuild the cell without its syntax tree: there every guardrail read as
        # set before the loop (found trying nbtune as a new user: a model's size set in a boosting loop)
        "in, --jobs 2",
    ],
)
def test_a_guardrail_that_can_change_stops_nothing_early(ip, where):
    """Only a guardrail's variable the cell sets before its epochs loop is read at the rungs."""
    cell = SIZED.replace("n_params = width * 10\n", "")
    if where == "after":
        cell += "n_params = width * 10\n"
    else:
        cell += "    n_params = width * 10 // (epoch + 1)\n"
    jobs = "--jobs 2" if "jobs" in where else ""
    res = run(ip, f"--maximize acc -n 20 --seed 1 --subject-to 'n_params <= 400' {jobs} -o res", cell)
    assert not any(ATTR.BREAKS in t.user_attrs and t.user_attrs[ATTR.BREAKS] for t in res.study.trials)
    assert not any("reason" in (t.user_attrs.get(ATTR.DECISION) or {}) for t in res.study.trials)


@pytest.mark.parametrize(
    "line, message",
    [
        ("--subject-to 'latency < 3'", "--subject-to takes a cell variable, <= or >=, and a number"),
        ("--subject-to 'latency <= fast'", "--subject-to takes a cell variable, <= or >=, and a number"),
        ("--subject-to 'latency <= 3'", "--subject-to 'latency <= 3': the %%tune cell never assigns 'latency'"),
        ("--record nope", "--record: the %%tune cell never assigns 'nope'"),
        # a notebook variable is not in a trial's namespace (every trial had failed at run time)
        ("--subject-to 'LIMIT <= 2'", "never assigns 'LIMIT', so no trial could be checked against it .the notebook's"),
        ("--record LIMIT", "--record: the %%tune cell never assigns 'LIMIT', so no trial could record it"),
        ("--record loss", "--record loss: 'loss' is the metric, which every trial keeps already"),
        ("--record 'a b'", "--record takes cell variable names separated by commas"),
    ],
)
def test_bad_guardrails_and_records_are_one_line_before_any_trial(ip, line, message):
    ip.user_ns["LIMIT"] = 3
    with pytest.raises(UsageError, match=message):
        run(ip, f"--minimize loss --trials 3 {line}", "x = 1  # tune: int(0, 3)\nloss = x\n")


GD_SETUP = """\
import numpy as np

rng = np.random.default_rng(0)
X = rng.normal(size=(200, 5))
y = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + rng.normal(scale=0.1, size=200)
"""

# Plain gradient descent: a step size above ~2/(largest eigenvalue) diverges to inf/NaN, a tiny
# one barely moves.
GD_CELL = """\
lr = 0.1   # tune: loguniform(1e-5, 30)
w = np.zeros(5)
for epoch in range(12):  # tune: epochs
    w = w - lr * X.T @ (X @ w - y) / len(y)
    loss = float(np.mean((X @ w - y) ** 2))
"""


def test_diagnose_finds_divergence_and_no_learning_with_their_ranges(ip):
    ip.run_cell(GD_SETUP)
    res = run(ip, "--minimize loss --sampler random --seed 0 --trials 40 --scheduler none -o r", GD_CELL)
    df = res.diagnose()
    kinds = dict(zip(df.kind, df.index))
    assert {"diverged", "did not learn"} <= set(kinds), df
    div = df.loc[kinds["diverged"]]
    lrs = {t.number: t.params["lr"] for t in res.study.trials}
    assert div.region.startswith("lr >= ") and min(lrs[n] for n in div.trials) >= 1.0
    assert "ended worse than it started" in div.evidence
    assert div.advice == f"lower the top of lr's range below {div.region.split(' >= ')[1]}, or clip gradients"
    flat = df.loc[kinds["did not learn"]]
    assert flat.region.startswith("lr <= ") and max(lrs[n] for n in flat.trials) < 1e-3
    for finding in (div, flat):  # evidence shared by several trials is said once, with how many
        parts = finding.evidence.split("; ")
        n = sum(int(p.rsplit(", ", 1)[1].split()[0]) if p.endswith(" trials") else 1 for p in parts)
        assert n == len(finding.trials) or len(parts) == 1, finding.evidence
    text = res.summary()
    assert "diagnosis: " in text and "diverged" in text
    from nbtune.view.widgets import WidgetView

    v = WidgetView(res.study, "loss", "minimize", display=False)
    assert "What went wrong" in v.failures.value and "finding" in v.status.value


def test_a_metric_scikit_learn_cannot_define_is_said_with_its_warning_and_fold_not_as_a_divergence(ip):
    """ROC AUC on folds with one class came out NaN: the trials read 'diverged (a non-finite metric or
    an overflow)', with advice about step sizes, and neither the error nor the diagnosis said why or
    in which fold (found trying nbtune as a new user, on imbalanced data)."""
    ip.run_cell(
        "import numpy as np\nfrom sklearn.datasets import make_classification\n"
        "from sklearn.linear_model import LogisticRegression\nfrom sklearn.metrics import roc_auc_score\n"
        "X, y = make_classification(400, weights=[0.9], random_state=0)\norder = np.argsort(y, kind='stable')\n"
        "X, y = X[order], y[order]  # sorted by class: unshuffled folds 0-3 hold one class\n"
        "splits = [(np.setdiff1d(np.arange(400), np.arange(80 * k, 80 * k + 80)), np.arange(80 * k, 80 * k + 80))"
        " for k in range(5)]\n"
    )
    cell = (
        "fold = 0  # tune: folds(5)\nC = 1.0  # tune: loguniform(0.01, 10)\ntr, va = splits[fold]\n"
        "model = LogisticRegression(C=C).fit(X[tr], y[tr])\n"
        "cv_auc = roc_auc_score(y[va], model.predict_proba(X[va])[:, 1])\n"
    )
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("tune", "--maximize cv_auc -n 4 --seed 0 --view none", cell)
    said = str(info.value)
    assert "cv_auc is not finite at the end of the cell with fold = 0: got nan (after UndefinedMetricWarning: " in said
    assert "Only one class is present in y_true" in said, said
    res = nbtune.load_result()
    df = res.diagnose()
    assert list(df.kind) == ["metric undefined"], df
    finding = df.iloc[0]
    assert finding.evidence.startswith("cv_auc came out NaN after 'Only one class is present in y_true.")
    assert finding.evidence.endswith("(fold = 0)") and "stratify=y" in finding.advice, finding
    # precision with zero_division=np.nan is NaN without a warning where nothing is predicted positive: the
    # same finding (found retesting)
    ip.run_cell(
        "from sklearn.metrics import precision_score\nrng = np.random.default_rng(0)\nperm = rng.permutation(400)"
    )
    thresholded = (
        "thr = 0.95  # tune: uniform(0.9, 0.999)\nmodel = LogisticRegression(C=0.001).fit(X[perm[:300]], y[perm[:300]])\n"
        "p = model.predict_proba(X[perm[300:]])[:, 1]\n"
        "val_prec = precision_score(y[perm[300:]], p > thr, zero_division=np.nan)\n"
    )
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("tune", "--maximize val_prec -n 4 --seed 0 --view none --name thr", thresholded)
    assert "got nan (after zero_division=nan at line 5: a split with no predicted or no true positives)" in str(
        info.value
    ), info.value
    assert list(nbtune.load_result("thr").diagnose().kind) == ["metric undefined"]
    # and from worker processes, which get the cell without its syntax tree (it went unsaid there)
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("tune", "--maximize val_prec -n 4 --seed 0 --view none --name thr2 --jobs 2", thresholded)
    assert "zero_division=nan at line 5: a split with no predicted or no true positives" in str(info.value), info.value


def test_a_metric_minimized_that_reads_like_a_score_is_diagnosed_as_such_not_as_diverged(ip):
    """--minimize val_acc was named before the search, and then diagnose() said '3 trials diverged (a learning
    curve that ended worse than it started): lower the range's top', of trials that learned normally
    (found trying nbtune as a new user)."""
    cell = (
        "lr = 0.1  # tune: loguniform(0.01, 1)\nacc = 0.5\nfor epoch in range(6):  # tune: epochs\n"
        "    acc = acc + lr * (1 - acc)\n    val_acc = acc\n"
    )
    res = ip.run_cell_magic("tune", "--minimize val_acc -n 8 --seed 0 --view none --scheduler none", cell)
    df = res.diagnose()
    assert list(df.kind) == ["minimized a score"], df
    assert "run with --maximize val_acc (a new study)" in df.iloc[0].advice
    # said once in the summary, by the diagnosis, not again by the note from before the search
    assert res.summary().count("reads like a score") == 1, res.summary()
    assert res.html().count("reads like a score") == 1
    right = ip.run_cell_magic("tune", "--maximize val_acc -n 8 --seed 0 --view none --scheduler none", cell)
    assert "minimized a score" not in set(right.diagnose().kind)
    # under pause-and-promote, a continuation is its paused trial's configuration: counted once (4 trials
    # minimized a score, where the header said 3/3 trials finished: found trying nbtune as a new user)
    paused = ip.run_cell_magic("tune", "--minimize val_acc -n 4 --seed 0 --view none --name paused", cell)
    assert any(ATTR.PROMOTED in t.user_attrs for t in paused.study.trials)
    said = paused.diagnose().set_index("kind").loc["minimized a score"]
    assert len(said.trials) == paused.n_finished == 4, (said.trials, paused.n_finished)


@pytest.mark.parametrize(
    "code, said",
    [
        (
            "model.fit(X_tr, y_tr)\nval_acc = model.score(X_tr, y_tr)\n",
            "line 5 of the %%tune cell: val_acc is scored on X_tr, y_tr",
        ),
        (
            "model.fit(X_tr, y_tr)\np = model.predict_proba(X_tr)[:, 1]\nval_acc = roc_auc_score(y_tr, p)\n",
            "line 6 of the %%tune cell: val_acc is scored on X_tr, y_tr, the data line 4 fits the model on",
        ),
        ("model.fit(X[tr], y[tr])\nval_acc = model.score(X[tr], y[tr])\n", "val_acc is scored on X[tr], y[tr]"),
        # scored on other data, cross-validated, or unsupervised: nothing to say
        ("model.fit(X_tr, y_tr)\nval_acc = model.score(X_va, y_va)\n", None),
        ("model.fit(X[tr], y[tr])\nval_acc = model.score(X[va], y[va])\n", None),
        ("val_acc = cross_val_score(model, X_tr, y_tr, cv=3).mean()\nmodel.fit(X_tr, y_tr)\n", None),
        ("s = cross_val_score(model, X_tr, y_tr)\nmodel.fit(X_tr, y_tr)\nval_acc = s.mean()\n", None),
        ("km = KMeans(2, n_init=2, random_state=0).fit(X_tr)\nval_acc = silhouette_score(X_tr, km.labels_)\n", None),
        # a helper given the model alone scores it on its own data (read as scored on the fit's: found by a new user)
        ("model = model.fit(X_tr, y_tr)\nval_acc = evaluate(model)\n", None),
        ("fitted = LogisticRegression(C=C).fit(X_tr, y_tr)\nval_acc = evaluate(fitted)\n", None),
        (
            "val_acc = model.fit(X_tr, y_tr).score(X_tr, y_tr)\n",
            "line 4 of the %%tune cell: val_acc is scored on X_tr, y_tr",
        ),
        # data made in the cell, by name or by a slice through .iloc (found trying nbtune as a new forecasting user)
        (
            "Xs = X * 1.0\nys = y + 0\nmodel.fit(Xs, ys)\nval_acc = roc_auc_score(ys, model.predict(Xs))\n",
            "line 7 of the %%tune cell: val_acc is scored on Xs, ys, the data line 6 fits the model on",
        ),
        (
            "import pandas as pd\nF, t = pd.DataFrame(X), pd.Series(y)\nmodel.fit(F.iloc[tr], t.iloc[tr])\n"
            "val_acc = roc_auc_score(t.iloc[tr], model.predict(F.iloc[tr]))\n",
            "val_acc is scored on F.iloc[tr], t.iloc[tr]",
        ),
        (
            "import pandas as pd\nF, t = pd.DataFrame(X), pd.Series(y)\nmodel.fit(F.iloc[tr], t.iloc[tr])\n"
            "val_acc = roc_auc_score(t.iloc[va], model.predict(F.iloc[va]))\n",
            None,
        ),
        ("Xs = X[:200] * 1.0\nXv = X[200:] * 1.0\nmodel.fit(Xs, y_tr)\nval_acc = model.score(Xv, y_va)\n", None),
    ],
)
def test_a_metric_scored_on_the_data_the_model_fits_is_said_before_the_search(ip, code, said):
    """val_ap = average_precision_score(y_train, model.predict_proba(X_train)[:, 1]) ran without a word:
    the search favours the most overfit configuration (found trying nbtune as a new user)."""
    ip.run_cell(
        "import numpy as np\nfrom sklearn.datasets import make_classification\nfrom sklearn.cluster import KMeans\n"
        "from sklearn.linear_model import LogisticRegression\nfrom sklearn.metrics import roc_auc_score, silhouette_score\n"
        "from sklearn.model_selection import cross_val_score\nX, y = make_classification(300, random_state=0)\n"
        "X_tr, y_tr, X_va, y_va = X[:200], y[:200], X[200:], y[200:]\ntr, va = np.arange(200), np.arange(200, 300)\n"
        "def evaluate(m):\n    return m.score(X_va, y_va)\n"
    )
    cell = f"C = 1.0  # tune: loguniform(0.01, 10)\nmodel = LogisticRegression(C=C)\n{code}"
    res = ip.run_cell_magic("tune", "--maximize val_acc -n 2 --seed 0 --view none", cell)
    notes = [m for m in res.messages if "the data line" in m]
    assert (len(notes) == 1 and said in notes[0]) if said else not notes, res.messages
    # a training score by name is what it says
    train = ip.run_cell_magic("tune", "--maximize train_acc -n 2 --view none", cell.replace("val_acc", "train_acc"))
    assert not any("the data line" in m for m in train.messages)


def test_diagnose_finds_overfitting_and_underfitting_from_a_recorded_training_score(trees):
    """The training score read is the metric's own measure: a train_loss recorded first beside
    --maximize val_acc, lower when the model fits better, was read as the training accuracy and
    called the deep trees underfitting (found trying nbtune as a new user)."""
    cell = (
        "max_depth = 3  # tune: choice(1, 2, 3, 4, 6, 8, 12, 16)\n"
        "model = DecisionTreeClassifier(max_depth=max_depth, random_state=0)\n"
        "model.fit(X_train, y_train)\n"
        "val_acc = model.score(X_val, y_val)\n"
        "train_loss = 1 - model.score(X_train, y_train)\n"
        "train_acc = model.score(X_train, y_train)\n"
    )
    res = run(trees, "--maximize val_acc --sampler grid --trials 8 --record train_loss,train_acc -o r", cell)
    df = res.diagnose().set_index("kind")
    depth = {t.number: t.params["max_depth"] for t in res.study.trials}
    over = df.loc["overfitting"]
    assert sorted(depth[n] for n in over.trials) == [6, 8, 12, 16]  # deep trees
    assert over.region == "max_depth >= 6"
    assert "train_acc beats val_acc by" in over.evidence
    under = df.loc["underfitting"]
    assert sorted(depth[n] for n in under.trials) == [1, 2]  # stumps
    assert under.region == "max_depth <= 2"
    # the advice names the region, and no epochs: the cell has none (it said 'in that region; more epochs')
    assert over.advice == "more regularisation (weight decay, dropout, smaller models) where max_depth >= 6, more data"
    assert under.advice == "bigger models or less regularisation where max_depth <= 2"
    assert "did not learn" not in df.index
    # Only the loss recorded: no training score of the metric's measure, so no fit signature.
    res = run(trees, "--maximize val_acc --sampler grid --trials 8 --record train_loss --name loss_only -o r", cell)
    assert not {"overfitting", "underfitting"} & set(res.diagnose().kind), res.diagnose()


def test_a_decline_within_the_sampling_noise_of_a_score_is_no_overfitting():
    """A validation accuracy over 300 examples that wandered from 0.907 down to 0.877, five examples, was
    called overfitting with advice to regularise (found retesting nbtune as a user); over 30000 examples
    the same curve is a decline well past chance."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from nbtune.view.diagnose import _peaked, _sampling_noise

    def trials(n):
        jitter = 1e-5 if n > 1000 else 0.0  # (over many examples, values rarely repeat)
        curves = [[0.80, 0.86, 0.89, 0.907, 0.900, 0.893, 0.887, 0.880, 0.877]] + [
            [
                v + jitter * (i + 10 * k)
                for i, v in enumerate([0.80 + 0.01 * k, 0.85, 0.87, 0.88, 0.89, 0.89, 0.893, 0.897, 0.9])
            ]
            for k in range(6)
        ]
        return [
            create_trial(
                state=TrialState.COMPLETE,
                value=c[-1],
                params={"x": 0.1},
                distributions={"x": FloatDistribution(0, 1)},
                intermediate_values={i + 1: round(v * n) / n for i, v in enumerate(c)},
            )
            for c in curves
        ]

    few, many = trials(300), trials(30000)
    curve = [few[0].intermediate_values[k] for k in sorted(few[0].intermediate_values)]
    assert _peaked(curve, True) == 3  # (without the noise: a peak at the 4th epoch)
    assert _sampling_noise(few) > 0.03 and _peaked(curve, True, _sampling_noise(few)) is None
    assert _sampling_noise(many) < 0.005 and _peaked(curve, True, _sampling_noise(many)) == 3


def test_a_noisy_objectives_curve_that_ends_worse_by_chance_is_no_divergence():
    """RL returns over a few episodes move by chance from epoch to epoch: [0.356, 0.202, -0.058] was called
    diverged, with advice to lower the learning rate (found trying nbtune as a new RL user). Against the
    study's own epoch-to-epoch steps it is noise; a loss that blows up is still a collapse."""
    from nbtune.view.diagnose import _ended_worse, _jitter

    noisy = [[0.356, 0.202, -0.058], [0.1, 0.35, 0.12, 0.4], [0.3, 0.05, 0.33, 0.2], [0.2, 0.45, 0.25], [0.5, 0.3, 0.6]]
    jitter = _jitter(noisy)
    assert jitter > 0.15
    assert _ended_worse(noisy[0], True) == "collapsed"  # (without the study's jitter, as before)
    assert _ended_worse(noisy[0], True, 0.5, None, jitter) == ""
    smooth = [[1.0, 0.8, 0.7, 0.65], [1.0, 0.85, 0.75, 0.7], [1.0, 0.9, 0.8, 0.75], [1.0, 0.7, 0.6, 0.55]]
    blown = [1.0, 0.8, 5.0, 80.0]
    assert _ended_worse(blown, False, 0.2, None, _jitter([*smooth, blown])) == "collapsed"


def test_a_boosting_curve_that_overfits_step_by_step_is_not_divergence():
    """XGBoost's validation log-loss: near its best after the first epoch's rounds, then up a little
    each round past where it started. Called diverged, with the advice to clip gradients (found
    trying nbtune as a new user with the README's own recipe). A blow-up in large steps still is."""
    from nbtune.view.diagnose import _ended_worse

    boosting = [0.362, 0.357, 0.355, 0.36, 0.37, 0.38, 0.39, 0.40, 0.41, 0.427]
    assert _ended_worse(boosting, maximize=False) == "turned"
    assert _ended_worse([1 - v for v in boosting], maximize=True) == "turned"
    assert _ended_worse([0.69, 0.68, 0.75, 0.9, 1.3], maximize=False) == "collapsed"  # a blow-up
    assert _ended_worse([1.0, 1.2, 1.5, 1.9], maximize=False) == "collapsed"  # never better
    assert _ended_worse([0.4, 0.35, 1.2], maximize=False) == "collapsed"  # worse by more than it started


def test_missing_values_in_the_data_are_a_failure_not_divergence(ip):
    """scikit-learn's 'Input X contains NaN' (a model that takes no missing values) was diagnosed as
    diverged, with the advice to clip gradients (found trying nbtune as a new user)."""
    pytest.importorskip("sklearn")
    ip.run_cell(
        "import numpy as np\nfrom sklearn.linear_model import LogisticRegression\n"
        "from sklearn.ensemble import HistGradientBoostingClassifier\n"
        "X = np.random.default_rng(0).normal(size=(60, 2))\nX[::7, 1] = np.nan\ny = (np.nan_to_num(X[:, 0]) > 0).astype(int)\n"
    )
    cell = (
        "algo = 'hgb'  # tune: choice('hgb', 'logreg')\nC = 1.0  # tune: loguniform(0.1, 10)\n"
        "m = HistGradientBoostingClassifier(max_iter=5) if algo == 'hgb' else LogisticRegression(C=C)\n"
        "acc = m.fit(X, y).score(X, y)\n"
    )
    res = run(ip, "--maximize acc --trials 8 --seed 0 --sampler random -o r", cell)
    failed = [t for t in res.study.trials if t.state.name == "FAIL"]
    assert failed and all("Input X contains NaN" in t.user_attrs[ATTR.ERROR] for t in failed)
    kinds = set(res.diagnose().kind)
    assert "diverged" not in kinds and "failed" in kinds, res.diagnose()


def test_a_nan_the_cell_sets_itself_is_its_verdict_not_divergence(ip):
    """'except ValueError: acc = float("nan")' where the solver rejects the penalty: diagnosed as
    diverged, with advice about step sizes (found trying nbtune as a new user)."""
    pytest.importorskip("sklearn")
    ip.run_cell(
        "import numpy as np\nfrom sklearn.linear_model import LogisticRegression\n"
        "X = np.random.default_rng(0).normal(size=(80, 3))\ny = (X[:, 0] > 0).astype(int)\n"
    )
    cell = (
        "penalty = 'l2'  # tune: choice('l2', 'l1')\nC = 1.0  # tune: loguniform(0.1, 10)\n"
        "try:\n    acc = LogisticRegression(penalty=penalty, C=C, solver='lbfgs').fit(X, y).score(X, y)\n"
        "except ValueError:\n    acc = float('nan')\n"
    )
    res = run(ip, "--maximize acc --trials 10 --seed 0 --sampler random -o r", cell)
    rejected = [t.number for t in res.study.trials if t.params["penalty"] == "l1"]
    assert rejected
    found = res.diagnose().set_index("kind")
    assert "diverged" not in found.index, found
    row = found.loc["set to NaN by the cell"]
    assert row.trials == rejected and row.region == "penalty = 'l1'", row
    assert row.evidence == "acc came out NaN or infinite, as the cell sets it itself (line 7)", row.evidence
    assert "verdict" in row.advice and "step" not in row.advice
    assert "failed" not in found.index, found  # said once (it was a second finding too)
    # and, being the cell's verdict, ten in a row stop the search, not three (as at its own raise)
    assert all(t.user_attrs.get(ATTR.RAISED) for t in res.study.trials if t.number in rejected)
    l1 = cell.replace("'l2'  # tune: choice('l2', 'l1')", "'l1'  # tune: choice('l1', 'elasticnet')")
    with pytest.raises(UsageError, match="^every trial of this run failed with MetricError: acc is not finite"):
        run(ip, "--maximize acc --trials 6 --seed 0 --sampler random --name l1 -o r", l1)
    assert len(nbtune.load_study("l1").trials) == 6  # not three: all of them ran


def test_a_validation_loss_that_turns_up_is_overfitting_not_divergence(ip):
    """Down, then up past where it started, by less than its first value: the shape of a
    validation loss as a model overfits (found trying nbtune as a new user: it was called
    diverged, with the advice to lower the learning rate)."""
    cell = (
        "wd = 0.5  # tune: uniform(0, 1)\n"
        "for epoch in range(10):  # tune: epochs\n"
        "    loss = 1.0 - 0.3 * min(epoch, 3) / 3 + max(0, epoch - 3) * 0.2 * (1 - wd)\n"
    )
    res = run(ip, "--minimize loss --sampler random --seed 0 --trials 16 --scheduler none -o r", cell)
    df = res.diagnose().set_index("kind")
    assert "diverged" not in df.index, df
    over = df.loc["overfitting"]
    wds = {t.number: t.params["wd"] for t in res.study.trials}
    turned = {n for n, w in wds.items() if 0.7 + 1.2 * (1 - w) > 1.1}  # back past where it started
    sagged = {n for n, w in wds.items() if 1.2 * (1 - w) > 0.3 / 6} - turned  # back by a sixth of the gain
    assert len(turned) >= 4 and sagged and set(over.trials) == turned | sagged
    assert "best at epoch 4 that ended worse than it started" in over.evidence and "fewer epochs" in over.advice
    assert "best at epoch 4 that then worsened to its end" in over.evidence
    assert over.region.startswith("wd <= ")


def test_the_fit_diagnosis_compares_with_the_best_trial_that_meets_the_guardrails(ip):
    """'0.43 at best against 1 for the best trial': the trial with a training score of 1 broke the
    guardrail, so it was no best trial (found trying nbtune as a new user)."""
    cell = (
        "k = 1  # tune: choice(1, 2, 3, 4, 5, 6, 7, 8)\n"
        "train_acc = {8: 1.0}.get(k, 0.5 + 0.04 * k)\n"
        "val_acc = {8: 0.99}.get(k, 0.5 + 0.03 * k)\n"
        "size = 100 if k == 8 else k\n"
    )
    res = run(
        ip, "--maximize val_acc --sampler grid --trials 8 --record train_acc --subject-to 'size <= 10' -o r", cell
    )
    assert res.best_params == {"k": 7}
    under = [f for f in res.diagnose().itertuples() if f.kind == "underfitting"]
    assert all("against 1 for the best trial" not in f.evidence for f in under), under


def test_a_training_score_near_the_best_is_not_underfitting(ip):
    """Some trial is always in the worst quarter on training data: 0.99 against 1.0, with the
    best validation score of all, is no model that cannot fit (found trying nbtune as a new
    user)."""
    cell = (
        "k = 1  # tune: choice(1, 2, 3, 4)\n"
        "train_acc = 0.99 if k == 4 else 1.0\n"
        "val_acc = 0.98 if k in (1, 4) else 0.95\n"
    )
    # trial 0 (the baseline, k = 1) is the best trial; the k = 4 trials tie with it
    res = run(ip, "--maximize val_acc --sampler random --seed 0 --trials 12 --record train_acc -o r", cell)
    assert any(t.params["k"] == 4 for t in res.study.trials) and res.study.best_trial.number == 0
    assert "underfitting" not in set(res.diagnose().kind)
    # the second and third best of eight, with training scores of 0.975 and 0.98 against 1 (the
    # spread of training scores is small): called underfitting, found trying nbtune as a new user
    cell = (
        "k = 1  # tune: choice(1, 2, 3, 4, 5, 6, 7, 8)\n"
        "train_acc = {1: 0.975, 2: 0.98}.get(k, 1.0)\n"
        "val_acc = {1: 0.940, 2: 0.938, 3: 0.943}.get(k, 0.9 + 0.001 * k)\n"
    )
    res = run(ip, "--maximize val_acc --sampler grid --trials 8 --record train_acc --name close -o r", cell)
    assert res.best_params == {"k": 3}
    assert "underfitting" not in set(res.diagnose().kind), res.diagnose()
    # a larger train-validation gap with a training score worse than the best trial's too is no overfitting:
    # the most regularised trial was told to regularise more (found trying nbtune as a new forecasting user)
    cell = (
        "k = 1  # tune: choice(1, 2, 3, 4, 5, 6, 7, 8)\n"
        "train_mae = 8.9 if k == 8 else 8.4 + 0.01 * k\n"
        "val_mae = {3: 8.79, 8: 9.63}.get(k, 8.85 + 0.05 * k)\n"
    )
    res = run(ip, "--minimize val_mae --sampler grid --trials 8 --record train_mae --name trend -o r", cell)
    assert res.best_params == {"k": 3}
    found = res.diagnose().set_index("kind")
    eight = next(t.number for t in res.study.trials if t.params["k"] == 8)
    assert "overfitting" not in found.index or eight not in found.loc["overfitting"].trials, found
    assert eight in found.loc["underfitting"].trials, found


def test_the_running_mean_over_folds_is_no_learning_curve(ip):
    """With '# tune: folds(k)' a trial's steps are its folds: a first fold easier than the others
    made every trial look diverged, with advice to clip gradients (found trying nbtune as a new
    user on a Ridge regression)."""
    cell = (
        "fold = 0  # tune: folds(5)\n"
        "alpha = 0.5  # tune: uniform(0, 1)\n"
        "loss = (alpha - 0.3) ** 2 + [1, 5, 5, 5, 5][fold] * (1 + alpha)\n"
    )
    res = run(ip, "--minimize loss --sampler random --seed 0 --trials 8 -o r", cell)
    assert res.study.trials[0].intermediate_values  # the steps are there, the running mean rising
    assert res.diagnose().empty, res.diagnose()
    # nor is it drawn or counted as one: a report's slide read "epoch" and "learning curves" (found
    # trying nbtune as a new user)
    df = res.trials_dataframe()
    assert "epochs" not in df and (df.folds == 5).all()
    trial = res.study.trials[3]
    assert df.fold_values[3] == trial.user_attrs[ATTR.FOLDS] and len(df.fold_values[3]) == 5
    assert df.fold_std[3] == pytest.approx(__import__("statistics").stdev(trial.user_attrs[ATTR.FOLDS]))
    for view in ("overview", "learning curves"):
        axes = [ax for ax in res.plot(view).axes if ax.get_xlabel() in ("fold", "epoch")]
        assert [ax.get_xlabel() for ax in axes] == ["fold"], view
        assert axes[0].get_title().startswith("running mean over the folds"), axes[0].get_title()


def test_a_gap_of_one_validation_example_is_not_overfitting(ip):
    """40 validation examples: accuracy moves by 0.025. A gap of 0.05 against the best trial's
    0.025 is one example, and was called overfitting in 12 of 15 trials (found trying nbtune as a
    new user on load_wine)."""
    cell = (
        "k = 1  # tune: choice(1, 2, 3, 4, 5, 6, 7, 8)\n"
        "train_acc = 0.975 if k == 8 else 1.0\n"
        "val_acc = {1: 0.975, 8: 0.925}.get(k, 0.95)\n"
    )
    res = run(ip, "--maximize val_acc --sampler grid --trials 8 --record train_acc -o r", cell)
    assert "overfitting" not in set(res.diagnose().kind), res.diagnose()
    # ten examples' worth is still a signature
    res = run(ip, "--maximize val_acc --sampler grid --trials 8 --record train_acc -o r", cell.replace("0.95)", "0.7)"))
    assert "overfitting" in set(res.diagnose().kind)


def test_no_findings_for_a_healthy_search(ip):
    res = run(ip, "--minimize loss --trials 10 --seed 0", "x = 0.5  # tune: uniform(0, 1)\nloss = (x - 0.3) ** 2\n")
    assert res.diagnose().empty and "diagnosis" not in res.summary()


NESTED_SETUP = """\
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

X, y = load_breast_cancer(return_X_y=True)
outer_cv = KFold(3, shuffle=True, random_state=0)
inner_cv = KFold(3, shuffle=True, random_state=1)
outer_splits = list(outer_cv.split(X))

def model(C):
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
"""

NESTED_CELL = """\
outer = 0   # tune: outer(3)
fold = 0    # tune: folds(3)
C = 1.0     # tune: choice(0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
train, test = outer_splits[outer]
inner_train, inner_val = list(inner_cv.split(X[train]))[fold]
val_acc = model(C).fit(X[train][inner_train], y[train][inner_train]).score(X[train][inner_val], y[train][inner_val])
test_acc = model(C).fit(X[train], y[train]).score(X[test], y[test])
"""


def test_nested_cv_matches_scikit_learns_nested_cv_of_the_same_search(ip):
    ip.run_cell(NESTED_SETUP)
    res = run(ip, "--maximize val_acc --sampler grid --trials 6 --holdout test_acc -o nested", NESTED_CELL)
    grid = ip.ev(
        "GridSearchCV(model(1.0), {'logisticregression__C': [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]}, cv=inner_cv)"
    )
    X, y, outer_cv = ip.user_ns["X"], ip.user_ns["y"], ip.user_ns["outer_cv"]
    from sklearn.model_selection import cross_val_score

    expected = cross_val_score(grid, X, y, cv=outer_cv)
    df = res.frame()
    assert list(df.outer) == pytest.approx(list(expected), abs=1e-12)  # the same outer scores
    for i, (tr, _) in enumerate(ip.user_ns["outer_splits"]):
        grid.fit(X[tr], y[tr])
        assert df.loc[i, "params_C"] == grid.best_params_["logisticregression__C"]  # the same winners
        assert df.loc[i, "inner"] == pytest.approx(grid.best_score_, abs=1e-12)  # the same inner CV means
    # each outer fold has its own study, never a shared one
    assert len(set(df.study)) == 3 and all(name.endswith(f".outer{i}") for i, name in enumerate(df.study))
    mean, sd = res.estimate()
    assert mean == pytest.approx(expected.mean(), abs=1e-12) and sd == pytest.approx(expected.std(ddof=1), abs=1e-12)
    assert "nested cross-validation: 3/3 outer folds scored" in res.summary()
    # a search's own methods are each outer fold's, and the error says where (a bare AttributeError
    # left a new user guessing)
    with pytest.raises(
        AttributeError, match=r"no 'trials_dataframe': it is k searches.*res.folds\[i\].trials_dataframe"
    ):
        res.trials_dataframe()
    with pytest.raises(AttributeError, match="'NestedResult' object has no attribute 'nonsense'"):
        res.nonsense  # noqa: B018
    assert "nbtune-nested" in res._repr_mimebundle_()["text/html"]
    # inside each trial: one run per inner fold, the mean is the value, the running mean the steps
    t = res.folds[0].study.trials[0]
    folds = t.user_attrs[ATTR.FOLDS]
    assert len(folds) == 3 and t.value == pytest.approx(sum(folds) / 3)
    assert t.intermediate_values == pytest.approx({1: folds[0], 2: sum(folds[:2]) / 2, 3: sum(folds) / 3})
    # reopened (after a restart, in another notebook): %tune_show NAME shows the nested result, as
    # does %tune_show alone when it is the store's only search; an outer fold's study by its name
    name = df.study[0].rpartition(".outer")[0]
    for line in (name, ""):
        ip.run_line_magic("tune_show", f"{line} -o again")
        again = ip.user_ns["again"]
        assert again.k == 3 and again.summary() == res.summary()
        pd.testing.assert_frame_equal(again.frame(), df)
    assert ip.run_line_magic("tune_show", f"{name}.outer1 -o one") is ip.user_ns["one"]
    assert ip.user_ns["one"].study.study_name == f"{name}.outer1"
    # a plain search of the same name (the default name is the metric's and the tuned names'):
    # %tune_show NAME showed the nested table, and the plain search could not be shown at all
    # (found trying nbtune as a new user)
    plain = "x = 0.5  # tune: uniform(0, 1)\nacc = x\n"
    ip.run_cell_magic("tune", f"--maximize acc -n 2 --name {name} --view none", plain)
    ip.run_line_magic("tune_show", f"{name} -o plain")
    assert ip.user_ns["plain"].study.study_name == name
    assert f"%tune_show {name}.outer shows its outer folds" in ip.user_ns["plain"].summary()
    ip.run_line_magic("tune_show", f"{name}.outer -o again")
    assert ip.user_ns["again"].k == 3 and ip.user_ns["again"].summary() == res.summary()
    with pytest.raises(UsageError, match="no nested cross-validation named 'elsewhere'"):
        ip.run_line_magic("tune_show", "elsewhere.outer")
    with pytest.raises(KeyError, match=rf"'{name}.outer' is a nested cross-validation: each outer fold is a study"):
        nbtune.load_study(f"{name}.outer")


def test_a_scheduler_can_stop_a_trial_between_folds(ip):
    cell = "fold = 0  # tune: folds(5)\nx = 0.5  # tune: uniform(0, 1)\nloss = (x - 0.3) ** 2 + fold * 0.01\n"
    res = run(ip, "--minimize loss --trials 30 --seed 0 --sampler random --scheduler asha -o r", cell)
    stopped = [t for t in res.study.trials if t.state.name == "PRUNED"]
    assert stopped and all(1 <= t.last_step < 5 for t in stopped)
    assert all(" stopped at fold " in d for d in res.decisions())
    assert res.scheduler.startswith("ASHA") and "R=5" in res.scheduler
    assert "rungs at folds [" in res.scheduler  # (it said epochs; found trying nbtune as a new user)
    res = run(ip, "--minimize loss --trials 4 --seed 0 --sampler random --scheduler median -o r", cell)
    assert res.scheduler == "median stopping (after 1 fold)"


@pytest.mark.parametrize(
    "line, cell, message",
    [
        (
            "",
            "f = 0  # tune: folds(1)\nx = 1  # tune: int(0, 3)\nloss = x\n",
            "folds\\(k\\) needs a whole number of folds k >= 2, got 1",
        ),
        (
            "",
            "f = 5  # tune: folds(5)\nx = 1  # tune: int(0, 3)\nloss = x\n",
            "the fold 'f' must start as a whole number from 0 to 4 \\(got 5\\)",
        ),
        (
            "",
            "f = 0  # tune: folds(3)\ng = 0  # tune: folds(3)\nx = 1  # tune: int(0, 3)\nloss = x\n",
            "a second '# tune: folds\\(...\\)'",
        ),
        (
            "",
            "f = 0  # tune: folds(3)\nx = 1  # tune: int(0, 3)\nfor e in range(3):  # tune: epochs\n    loss = x\n",
            "cross-validation folds and an epochs loop \\(line 4\\) in one cell are not supported",
        ),
        (
            "",
            "o = 0  # tune: outer(3)\nx = 1  # tune: int(0, 3)\nloss = x\n",
            "nested cross-validation scores each outer fold's winner",
        ),
        (
            "--max-epochs 3",
            "f = 0  # tune: folds(3)\nx = 1  # tune: int(0, 3)\nloss = x + f\n",
            "--max-epochs has no epochs loop to describe",
        ),
        # a fold variable the cell never reads: every fold the same split (found trying nbtune as a new user)
        (
            "",
            "f = 0  # tune: folds(3)\nx = 1  # tune: int(0, 3)\nloss = x\n",
            "line 2 of the %%tune cell: the cross-validation fold variable 'f' is never read, so all 3 folds would",
        ),
        # or read only by a print: every fold ran the same split, silently (found trying nbtune as a new user)
        (
            "",
            'f = 0  # tune: folds(3)\nx = 1  # tune: int(0, 3)\nprint("fold", f)\nloss = x\n',
            "the cross-validation fold variable 'f' is never read but by what the cell prints, so all 3 folds would",
        ),
        (
            "--holdout t",
            "o = 0  # tune: outer(3)\nx = 1  # tune: int(0, 3)\nloss = x\nt = x\n",
            "the nested cross-validation's outer fold variable 'o' is never read",
        ),
        (
            "--revalidate 2",
            "seed = 0  # tune: seed\nx = 1  # tune: int(0, 3)\nloss = x\n",
            "line 2: --revalidate runs configurations with other values of the seed 'seed', but the cell never reads it",
        ),
    ],
)
def test_bad_folds_are_one_line_before_any_trial(ip, line, cell, message):
    with pytest.raises(UsageError, match=message):
        run(ip, f"--minimize loss --trials 3 {line}", cell)


def test_a_seed_the_cell_never_reads_is_named(ip):
    res = run(ip, "--minimize loss --trials 2", "seed = 0  # tune: seed\nx = 1  # tune: int(0, 3)\nloss = x\n")
    assert any(m.startswith("line 2: the seed 'seed' is never read") for m in res.messages), res.messages
    res = run(
        ip,
        "--minimize loss --trials 2 --name used",
        "seed = 0  # tune: seed\nx = 1  # tune: int(0, 3)\nloss = x + seed\n",
    )
    assert not any("never read" in m for m in res.messages)


def test_the_dashboard_shows_the_checks(trees):
    res = run(trees, "--maximize val_acc --sampler grid --trials 15 --revalidate 2 --seeds 3 -o res", TREE_CELL)
    from nbtune.view.widgets import show

    view = show(res)
    assert view.tabs.get_title(4) == "Checks"
    assert "nbtune-revalidation" in view.checks.value and "Re-validation across seeds" in view.checks.value
    # where widgets do not render (a reopened notebook, nbconvert, GitHub): the text says it too
    bundle = view.root._repr_mimebundle_()
    assert "re-validated the top 2 configurations with 3 seeds each" in bundle["text/plain"]
    assert "nbtune-summary" in bundle["text/html"] and "<img" not in bundle["text/html"]  # GitHub renders it
    plain = show(run(trees, "--maximize val_acc --sampler grid --trials 15 --name plain -o p", TREE_CELL))
    assert "No checks ran" in plain.checks.value


def test_re_validation_compares_every_candidate_on_the_same_seeds(trees):
    res = run(trees, "--maximize val_acc --sampler grid --trials 15 --revalidate 2 --seeds 3 -o res", TREE_CELL)
    res.revalidate(top=3, seeds=2, view=None)
    df = res.revalidation()
    assert len(df) == 3 and (df.n_seeds == 2).all()  # the earlier third seed is not mixed in
    assert "with 2 seeds each" in res.summary()


def test_a_spread_of_zero_from_few_seeds_does_not_win_by_itself():
    """Candidate A scores 0.80 on all 3 seeds (sd 0), B 0.84 +- 0.02: with the pooled spread as
    a floor B's lower bound is higher; without it A's zero-width interval would win."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from nbtune.view.checks import CheckReport

    study = optuna.create_study(direction="maximize")
    checks = optuna.create_study(direction="maximize")
    dist = {"x": FloatDistribution(0, 1)}
    for x, v in ((0.1, 0.9), (0.2, 0.85)):
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=v, params={"x": x}, distributions=dist))
    for cand, values in ((0, [0.80, 0.80, 0.80]), (1, [0.84, 0.82, 0.86])):
        for seed, v in zip((1, 2, 3), values):
            attrs = {ATTR.CHECK: {"role": "revalidate", "candidate": cand}, ATTR.SEED: seed}
            checks.add_trial(create_trial(state=TrialState.COMPLETE, value=v, user_attrs=attrs))
    report = CheckReport(study, checks, "acc")
    assert report.chosen().number == 1
    a = report.candidates()[0]
    assert a.sd == 0 and a.half_width > 0.03  # its interval is as wide as the pooled spread makes it


def test_a_changed_guardrail_starts_a_new_version(trees):
    cell = (
        "max_depth = 3  # tune: choice(1, 2, 3, 4)\n"
        "model = DecisionTreeClassifier(max_depth=max_depth, random_state=0).fit(X_train, y_train)\n"
        "val_acc = model.score(X_val, y_val)\nn_leaves = model.get_n_leaves()\n"
    )
    first = run(trees, "--maximize val_acc --sampler grid --trials 4 --subject-to 'n_leaves <= 8' -o a", cell)
    second = run(trees, "--maximize val_acc --sampler grid --trials 4 --subject-to 'n_leaves <= 2' -o b", cell)
    assert second.study.study_name == first.study.study_name + ":v2"
    # said as the guardrails' change, not the search space's (found trying nbtune as a new user)
    assert any(
        m.startswith(
            f"the guardrails changed since {first.study.study_name!r} (guardrails ['n_leaves <= 8'] -> "
            "['n_leaves <= 2']"
        )
        for m in second.messages
    ), second.messages
    assert second.best_trial.user_attrs.get(ATTR.RECORD) is None and second.best_params == {"max_depth": 1}


def test_a_guardrail_variable_not_set_is_named_as_itself(ip):
    """'--subject-to n <= 2' with n set only on one branch: the failure was grouped and summarised as
    'MetricError: auc missing', the metric (found trying nbtune as a new user)."""
    cell = "p = 'l2'  # tune: choice('l1', 'l2')\nauc = 0.5 if p == 'l1' else 0.6\nif p == 'l1':\n    n = 1\n"
    res = run(ip, "--maximize auc --sampler grid --trials 2 --subject-to 'n <= 2' -o r", cell)
    failed = [t for t in res.study.trials if t.state.name == "FAIL"]
    assert [t.user_attrs[ATTR.FAILURE] for t in failed] == ["MetricError: n missing"]
    assert "auc missing" not in res.summary()


def test_a_recorded_variable_that_is_no_number_is_kept_and_the_trial_counts(ip):
    """--record solver, a string: every trial failed ("solver is not a number") and the search
    stopped after three, its metric values lost (found trying nbtune as a new user)."""
    cell = (
        "x = 1  # tune: int(0, 3)\n"
        "loss = x\n"
        "solver = 'lbfgs' if x % 2 else 'saga'\n"
        "ok = x > 1\n"
        "sizes = [x, 2 * x]\n"
        "n = x * 10\n"
        "n_iter = None if x % 2 else x\n"  # a model's n_iter_ where it has none: it said 'NoneType None'
    )
    res = run(ip, "--minimize loss --sampler grid --trials 4 --record solver,ok,sizes,n,n_iter -o r", cell)
    assert all(t.state.name == "COMPLETE" for t in res.study.trials)
    records = {t.params["x"]: t.user_attrs[ATTR.RECORD] for t in res.study.trials}
    assert records[1] == {"solver": "lbfgs", "ok": False, "sizes": "list [1, 2]", "n": 10.0, "n_iter": None}
    assert records[2]["n_iter"] == 2.0
    assert records[2]["solver"] == "saga" and records[2]["ok"] is True
    df = res.trials_dataframe()
    assert set(df.record_solver) == {"lbfgs", "saga"}
    # the recorded plot shows the numbers only
    from nbtune.view import plots

    fig = plots.view_figure("recorded", res)
    assert [ax.get_xlabel() for ax in fig.axes] == ["n", "n_iter"]  # (n_iter: where it is a number)


def test_when_no_trial_meets_the_guardrails_the_summary_says_so(ip):
    cell = "x = 1  # tune: int(0, 3)\nloss = x\nsize = 10 + x\n"
    res = run(ip, "--minimize loss --trials 4 --seed 0 --subject-to 'size <= 5' -o r", cell)
    assert "no completed trial meets the guardrails (4 trials complete, all breaking 'size <= 5')" in res.summary()
    with pytest.raises(ValueError, match="no completed trial meets the guardrails"):
        _ = res.best_value
    # --apply and the checks say why there is nothing to choose (they said no trial completed)
    with pytest.warns(NbtuneWarning, match="--apply: no complete trial met the guardrails"):
        res = run(
            ip,
            "--minimize loss --trials 4 --seed 0 --subject-to 'size <= 5' --holdout t --apply -o r",
            cell + "t = x\n",
        )
    assert "checks: no complete trial met the guardrails (--subject-to), so there is nothing" in "\n".join(res.messages)


def test_revalidation_chooses_only_a_configuration_that_meets_the_guardrails_with_every_seed(ip):
    """A guardrail that holds on the search's seed and breaks on others: the configuration was
    still called the most stable and --apply took it (found trying nbtune as a new user)."""
    cell = (
        "seed = 0  # tune: seed\n"
        "x = 1  # tune: choice(1, 2, 3, 4)\n"
        "loss = x + 0.01 * seed\n"
        "latency = 15 + (30 if seed != 0 and x == 1 else 0)\n"  # x = 1, the best, is slow on other seeds
    )
    res = run(
        ip, "--minimize loss --sampler grid --trials 4 --revalidate 2 --seeds 3 --subject-to 'latency <= 20' -o r", cell
    )
    df = res.revalidation()
    assert df.loc[res.best_trial.number, "broke_guardrail"] == 3 and not df.loc[res.best_trial.number, "chosen"]
    chosen = res.checks.chosen()
    assert chosen is not None and chosen.params == {"x": 2}
    assert res.chosen_params == {"x": 2} != res.best_params  # the pick, where best_params is the search's best
    text = "\n".join(res.checks.lines())
    assert "broke a guardrail with 3 of 3 seeds" in text and "the most stable is trial" in text
    assert (
        f"of the configurations that met every guardrail with every seed (not trial(s) {res.best_trial.number})" in text
    )
    # --apply runs the cell with the pick and the cell's own seed, and says so: its numbers are that seed's, where
    # re-validation's are means (three numbers differed without a word: found trying nbtune as a new user)
    applied = run(
        ip,
        "--minimize loss --sampler grid --trials 4 --revalidate 2 --seeds 3 --subject-to 'latency <= 20' --apply -o r",
        cell,
    )
    assert any(
        m.startswith(
            f"--apply: ran the cell with the most stable re-validated values (trial {chosen.number}) and seed = 0"
        )
        for m in applied.messages
    ), applied.messages
    assert ip.user_ns["x"] == 2 and ip.user_ns["loss"] == 2
    # None meets it with every seed: none is chosen, and the summary says why.
    res = run(
        ip,
        "--minimize loss --sampler grid --trials 4 --revalidate 2 --seeds 3 --subject-to 'latency <= 20' --name all_slow -o r",
        cell.replace("and x == 1 ", ""),
    )
    assert res.checks.chosen() is None
    assert "no configuration met every guardrail with every seed, so none is chosen" in "\n".join(res.checks.lines())


def test_quoted_options_and_repeated_records(ip):
    cell = "x = 1  # tune: int(0, 3)\nloss = x\na = 2 * x\nb = 3 * x\n"
    res = run(ip, "--minimize 'loss' --trials 2 --name 'quoted' --record 'a' --record b -o r", cell)
    assert res.study.study_name == "quoted"
    assert set(res.study.trials[0].user_attrs[ATTR.RECORD]) == {"a", "b"}
    with pytest.raises(nbtune.exceptions.ConfigError, match="'nope' is not a parameter of this study"):
        res.plot("slice", params=["nope"])
    with pytest.raises(nbtune.exceptions.ConfigError, match="'z' is not a parameter"):
        res.plot("learning curves", color_by="z")


def test_load_study_opens_a_check_study(trees):
    res = run(trees, "--maximize val_acc --sampler grid --trials 15 --revalidate 1 --seeds 2 --name lc -o r", TREE_CELL)
    checks = nbtune.load_study("lc@check")
    assert checks.study_name == "lc@check" and len(checks.trials) == 2
    assert res.study.study_name == "lc"
    with pytest.raises(KeyError, match="re-validation or --holdout never ran"):
        nbtune.load_study("other@check")


def test_the_advice_for_divergence_turns_toward_where_it_happens():
    """A depth of 2 that diverges is not fixed by lowering the range's top (found trying nbtune as
    a new user)."""
    from nbtune.view.diagnose import _advice

    assert _advice("diverged", "max_depth <= 3") == "raise the bottom of max_depth's range above 3, or clip gradients"
    assert _advice("diverged", "lr >= 0.5") == "lower the top of lr's range below 0.5, or clip gradients"
    assert _advice("diverged", "act = 'relu'") == "leave 'relu' out of act's choices, or clip gradients"
    assert _advice("diverged", "").startswith("lower the range's top (learning rates")
    # a cell without epochs has no gradients to clip (a Ridge whose metric overflowed)
    assert _advice("diverged", "alpha >= 3", epochs=False) == "lower the top of alpha's range below 3"
    assert _advice("diverged", "", epochs=False).startswith("lower the top of the ranges that scale steps or weights")


def test_every_trial_diverged_points_at_the_cell_not_a_range(ip):
    """A Ridge search whose metric is an expm1 of predictions on the price scale overflowed in every
    trial; the advice spoke of learning rates and clipping gradients (found trying nbtune as a new user)."""
    ip.run_cell("import numpy as np")
    cell = "alpha = 1.0  # tune: loguniform(1e-3, 10)\nrmse = float(np.expm1(np.float64(1e4) + alpha))\n"
    with pytest.raises(UsageError):  # every trial fails the same way: the cell has a bug, and says so
        run(ip, "--minimize rmse --trials 6 --sampler random -o r", cell)
    found = ip.user_ns["r"].diagnose()
    assert list(found.kind) == ["diverged"]
    assert found.advice[0].startswith("every trial diverged, whatever its hyperparameters: look at the cell's")


def test_apply_runs_the_whole_cell_the_sealed_holdout_too(trees):
    """--apply is a plain run of the cell with the chosen values: the holdout's lines (which may
    refit the final model) ran nowhere and 'test_acc' was undefined afterwards, though the message
    said the cell's variables were in the notebook (found trying nbtune as a new user)."""
    line = "--maximize val_acc --sampler grid --trials 6 --holdout test_acc --holdout-gap 0.5 --apply -o res"
    res = run(trees, line, TREE_CELL)
    assert trees.user_ns["test_acc"] == pytest.approx(res.holdout().holdout_value)
    assert trees.user_ns["max_depth"] == res.best_params["max_depth"]


def test_apply_says_when_its_run_breaks_a_guardrail_the_trial_met(ip):
    """A fit time measured on a busy machine: 3.7 s after --apply where the trial's 0.45 s met 'fit_time <=
    0.5', and nothing said so (found trying nbtune as a new user). Here the cell's measure differs from the
    search's six runs to the plain run --apply makes."""
    ip.user_ns["runs"] = []
    cell = "c = 0.5  # tune: uniform(0, 1)\nruns.append(c)\nval = c\nfit_time = 9.0 if len(runs) > 6 else 0.1\n"
    res = ip.run_cell_magic("tune", "--maximize val -n 6 --seed 0 --subject-to 'fit_time <= 0.5' --apply", cell)
    said = [m for m in res.messages if m.startswith("--apply: ran the cell")]
    assert len(said) == 1 and ip.user_ns["fit_time"] == 9.0, res.messages
    assert said[0].endswith(
        f"; in this run fit_time <= 0.5 does not hold (fit_time = 9), where trial {res.best_trial.number} met it: a "
        "measure that varies between runs (time, memory) or an unseeded cell; check it before you use the model"
    ), said[0]
    ip.user_ns["runs"] = []
    kept = ip.run_cell_magic(
        "tune", "--maximize val -n 6 --seed 0 --subject-to 'fit_time <= 10' --apply --name kept", cell
    )
    assert not any("does not hold" in m for m in kept.messages), kept.messages


def test_apply_of_a_cross_validated_cell_says_which_fold_the_notebook_holds(ip):
    cell = "fold = 0  # tune: folds(3)\nx = 0.5  # tune: uniform(0, 1)\nloss = (x - 0.3) ** 2 + fold\n"
    res = run(ip, "--minimize loss --trials 4 --seed 0 --apply -o r", cell)
    assert ip.user_ns["loss"] == pytest.approx((res.best_params["x"] - 0.3) ** 2)  # fold 0's, not the mean
    assert any(
        "(once, with fold = 0: loss is that fold's, the study's value the mean over the folds)" in m
        for m in res.messages
    )


def test_the_region_of_a_finding_is_the_parameter_that_separates_it_widest():
    """Two parameters both separated the diverged trials, and the first in set order won: 'all with
    h <= 16' where lr >= 5 was the cause (found trying nbtune as a new user)."""
    from optuna.distributions import FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    from nbtune.view.diagnose import _region

    def trial(lr, h):
        return create_trial(
            state=TrialState.COMPLETE,
            value=0.0,
            params={"h": h, "lr": lr},
            distributions={"h": IntDistribution(8, 64, log=True), "lr": FloatDistribution(1e-4, 10, log=True)},
        )

    hit = [trial(5.0, 16), trial(8.0, 12)]  # h <= 16 separates them too, but only just
    rest = [trial(1e-3, 20), trial(1e-2, 32), trial(3e-3, 64), trial(5e-4, 40)]
    assert _region(hit, rest) == "lr >= 5"


def test_a_few_failures_are_put_down_to_a_region_only_when_it_holds_none_of_the_rest():
    """3 failures caused by a combination of two choices were put down to 'C <= 0.07486' while
    trials with C = 0.036 and 0.040 completed (found trying nbtune as a new user)."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from nbtune.view.diagnose import _region

    def trial(c):
        return create_trial(
            state=TrialState.COMPLETE,
            value=0.0,
            params={"C": c},
            distributions={"C": FloatDistribution(1e-3, 10, log=True)},
        )

    hit = [trial(0.01), trial(0.05), trial(0.0749)]
    rest = [trial(v) for v in (0.036, 0.04, 0.3, 0.9, 2.0, 4.0, 6.0, 8.0, 9.0, 9.5)]
    assert _region(hit, rest) == ""
    assert _region(hit, rest[2:]) == "C <= 0.0749"  # none of the rest there: that is the region
    # with more failures, a fifth of the rest may share the region
    hit5 = [trial(v) for v in (0.01, 0.02, 0.03, 0.05, 0.0749)]
    assert _region(hit5, rest) == "C <= 0.0749 (as do 2 of the others)"  # said, as it is not all of it


def test_a_failure_of_two_choices_together_is_put_down_to_both():
    """LogisticRegression's lbfgs and sag reject an l1 penalty: 'all with solver in ('lbfgs', 'sag')'
    read as 'drop lbfgs' where lbfgs without a penalty completed (found trying nbtune as a new user)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from nbtune.view.diagnose import _region

    dists = {
        "solver": CategoricalDistribution(["lbfgs", "sag", "saga", "liblinear"]),
        "penalty": CategoricalDistribution(["l1", "l2", None]),
    }

    def trial(solver, penalty):
        return create_trial(
            state=TrialState.COMPLETE, value=0.0, params={"solver": solver, "penalty": penalty}, distributions=dists
        )

    hit = [trial(s, "l1") for s in ("lbfgs", "sag", "lbfgs", "sag", "lbfgs")]
    rest = [trial("liblinear", "l1"), trial("saga", "l1"), trial("saga", "l2"), trial("liblinear", "l2")] * 2
    rest += [trial("lbfgs", None), trial("lbfgs", "l2")]
    assert _region(hit, rest) == "solver in ('lbfgs', 'sag') and penalty = 'l1'"
    # where neither alone holds few enough of the rest: the pair (it said nothing: found retesting this)
    dists["C"] = FloatDistribution(1e-3, 10, log=True)

    def run(solver, penalty, c):
        params = {"solver": solver, "penalty": penalty, "C": c}
        return create_trial(state=TrialState.COMPLETE, value=0.0, params=params, distributions=dists)

    hit = [
        run(s, "l1", c)
        for s, c in (("lbfgs", 0.1), ("lbfgs", 2.0), ("lbfgs", 0.01), ("sag", 1.0), ("sag", 0.3), ("sag", 5.0))
    ]
    rest = [run("liblinear", "l1", c) for c in (0.05, 0.5, 3.0, 8.0, 0.2)] + [
        run("saga", "l1", 0.4),
        run("saga", "l1", 4.0),
    ]
    rest += [run(s, "l2", c) for s in ("lbfgs", "sag", "saga", "liblinear") for c in (0.02, 0.7, 6.0)]
    assert _region(hit, rest) == "penalty = 'l1' and solver in ('lbfgs', 'sag')"


def test_a_search_metric_on_the_holdouts_data_is_a_leak_said_before_any_trial(ip, capsys):
    """val_rmse computed on X_test/y_test beside --holdout test_rmse: 'a gap of -0 ... within',
    though the search tuned to the test data (found trying nbtune as a new user). Said as the
    search starts; a list of column names both read is no data."""
    ip.run_cell(
        "import numpy as np\nrng = np.random.default_rng(0)\nX_val, y_val = rng.normal(size=(20, 2)), rng.normal(size=20)\n"
        "X_test, y_test = rng.normal(size=(20, 2)), rng.normal(size=20)\nX = rng.normal(size=(40, 2))\n"
        "test = np.arange(20, 40)\nval = np.arange(20)\nCOLS = [0, 1]\nclass Model:\n    def __init__(self, a):\n"
        "        self.a = a\n    def fit(self):\n        return self\n    def err(self, X, y):\n"
        "        return float(((X[:, 0] * self.a - y) ** 2).mean())\n"
    )
    leaky = (
        "a = 0.5  # tune: uniform(0, 1)\nmodel = Model(a).fit()\nval_mse = model.err(X_test, y_test)\n"
        "test_mse = model.err(X_test, y_test)\n"
    )
    res = run(ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --view text", leaky)
    said = "possible leak: line 4 of the %%tune cell reads 'X_test', 'y_test', as the sealed holdout's line 5"
    assert any(m.startswith(said) for m in res.messages), res.messages
    assert capsys.readouterr().out.splitlines()[1].startswith("  note: " + said)  # before any trial
    # and the holdout's gap, 0 here, does not reassure (found trying nbtune as a new user)
    sentence = res.holdout().sentence()
    assert "(within 100)." in sentence and sentence.endswith(
        "But the search read the holdout's data (line 4 of the %%tune cell reads 'X_test', 'y_test'): a "
        "small gap is what a leak looks like too, so this check cannot tell; score the search on other data."
    ), sentence
    # lines that read the same data: one note naming them (three notes said it three times: found trying nbtune)
    twice = leaky.replace(
        "val_mse = model.err(X_test, y_test)\n",
        "first = model.err(X_test, y_test)\nval_mse = model.err(X_test, y_test) + 0 * first\n",
    )
    res = run(ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --name twice", twice)
    leaks = [m for m in res.messages if m.startswith("possible leak")]
    assert len(leaks) == 1 and leaks[0].startswith(
        "possible leak: lines 4 and 5 of the %%tune cell read 'X_test', 'y_test', as the sealed holdout's line 6"
    ), leaks
    # validation data for the search, the test data only in the sealed line; a shared array indexed,
    # a list of columns read by both: no leak
    honest = leaky.replace("model.err(X_test, y_test)\ntest", "model.err(X_val, y_val)\ntest")
    res = run(ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --name honest", honest)
    assert not any("leak" in m for m in res.messages)
    assert "But the search read" not in res.holdout().sentence()
    indexed = (
        "a = 0.5  # tune: uniform(0, 1)\nmodel = Model(a).fit()\nval_mse = model.err(X[val][:, COLS], y_val)\n"
        "test_mse = model.err(X[test][:, COLS], y_test)\n"
    )
    res = run(ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --name indexed", indexed)
    assert not any("leak" in m for m in res.messages), res.messages
    # the test data read by a notebook function the search's line calls (and the sealed line too)
    ip.run_cell("def score_test(m):\n    return _err(m)\ndef _err(m):\n    return m.err(X_test, y_test)\n")
    through = leaky.replace("val_mse = model.err(X_test, y_test)", "val_mse = score_test(model)")
    res = run(ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --name through", through)
    said = "line 4 of the %%tune cell reads 'X_test', 'y_test' (through score_test()), as the sealed holdout's line 5"
    assert any(said in m for m in res.messages), res.messages
    ip.run_cell("scorers = {'test': lambda m: m.err(X_test, y_test)}")  # a dict of scorers (found by a new user)
    in_dict = leaky.replace("val_mse = model.err(X_test, y_test)", "val_mse = scorers['test'](model)")
    res = run(ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --name dict", in_dict)
    assert any("line 4 of the %%tune cell reads 'X_test', 'y_test' (through scorers)" in m for m in res.messages)
    ip.run_cell("X_v2, y_v2 = X_test, y_test")
    alias = leaky.replace("val_mse = model.err(X_test, y_test)", "val_mse = model.err(X_v2, y_val)")
    res = run(ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --name alias", alias)
    said = "line 4 of the %%tune cell reads 'X_v2' (the same object as 'X_test'), as the sealed holdout's line 5"
    assert any(said in m for m in res.messages), res.messages
    sealed_through = honest.replace("test_mse = model.err(X_test, y_test)", "test_mse = score_test(model)")
    sealed_through = sealed_through.replace("model.err(X_val, y_val)", "model.err(X_test, y_val)")
    res = run(ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --name st", sealed_through)
    assert any("line 4 of the %%tune cell reads 'X_test', as the sealed" in m for m in res.messages), res.messages


def test_editing_only_the_lines_sealed_with_the_holdout_keeps_the_search(ip, tmp_path):
    """A finished search with --holdout, then an edit of the sealed refit alone (n_jobs=1 -> 2) or a
    corrected test set: a new version ran every trial again, though no trial runs those lines (found
    twice trying nbtune as a new user). The search is kept, and only its checks run again, with them."""
    ip.run_cell(
        "import numpy as np\nrng = np.random.default_rng(0)\nX_val, y_val = rng.normal(size=(30, 2)), rng.normal(size=30)\n"
        "X_test, y_test = rng.normal(size=(30, 2)), rng.normal(size=30)\n"
        "def err(a, X, y, scale=1.0):\n    return float(((X[:, 0] * a * scale - y) ** 2).mean())\n"
    )
    cell = (
        "a = 0.5  # tune: uniform(0, 1)\nval_mse = err(a, X_val, y_val)\nfinal_scale = 1.0\n"
        "test_mse = err(a, X_test, y_test, final_scale)\n"
    )
    line = "--minimize val_mse --trials 6 --holdout test_mse --holdout-gap 100 --view none --name sealed"
    first = run(ip, line, cell)
    h1 = first.holdout()
    assert first.study.study_name == "sealed" and len(first.study.trials) == 6 and h1.holdout_value > 0
    edited = run(ip, line, cell.replace("final_scale = 1.0", "final_scale = 2.0"))
    assert edited.study.study_name == "sealed" and len(edited.study.trials) == 6, edited.messages
    assert any("the lines sealed with the holdout, or the data only they read, changed since 1 check run" in m
               for m in edited.messages), edited.messages  # fmt: skip
    a = first.study.best_params["a"]
    assert h1.holdout_value == pytest.approx(((ip.user_ns["X_test"][:, 0] * a - ip.user_ns["y_test"]) ** 2).mean())
    h2 = edited.holdout()
    assert h2.holdout_value == pytest.approx(((ip.user_ns["X_test"][:, 0] * a * 2 - ip.user_ns["y_test"]) ** 2).mean())
    assert h2.n_runs == 1  # the run of the lines as they were is no longer counted
    # the test set corrected: the search is kept too; the study's checks re-run once
    ip.run_cell("y_kept = y_test\ny_test = y_test + 1.0")
    again = run(ip, line, cell.replace("final_scale = 1.0", "final_scale = 2.0"))
    assert again.study.study_name == "sealed" and len(again.study.trials) == 6, again.messages
    assert again.holdout().holdout_value == pytest.approx(
        ((ip.user_ns["X_test"][:, 0] * a * 2 - ip.user_ns["y_test"]) ** 2).mean()
    )
    # the data restored: the run made with it counts again, and nothing runs
    ip.run_cell("y_test = y_kept")
    back = run(ip, line, cell.replace("final_scale = 1.0", "final_scale = 2.0"))
    assert not any("changed since" in m for m in back.messages), back.messages
    assert back.holdout().holdout_value == h2.holdout_value
    # an edit of the search's own lines is a new version, as before
    other = run(ip, line, cell.replace("val_mse = err(a, X_val, y_val)", "val_mse = err(a, X_val, y_val) + 0.0"))
    assert other.study.study_name == "sealed:v2"


def test_the_holdout_warning_of_a_cross_validated_search_does_not_suggest_cross_validation(ip):
    """A search over folds(5) whose holdout gap warned: 'more validation data or cross-validation'
    (found trying nbtune as a new user). It suggests more folds or more data in them."""
    cell = (
        "fold = 0  # tune: folds(3)\nx = 0.95  # tune: uniform(0, 1)\n"
        "acc = 0.9 - (x - 0.3) ** 2 + 0.01 * fold\ntest_acc = acc - 0.2\n"
    )  # (the cell's defaults far from the best: the search picks another configuration)
    with pytest.warns(
        NbtuneWarning,
        match=r"To narrow the gap: more data in the folds, or more folds \(folds\(k\) with a larger k\), fewer trials "
        r"per dataset, or mark the cell's seed \('seed = 0  # tune: seed'\) and re-validate",  # (no seed to vary)
    ):
        res = run(ip, "--maximize acc --trials 4 --holdout test_acc --view none", cell)
    assert res.holdout().cross_validated
    # a re-run with nothing to run: said in its summary, not warned again (it was, twice per run)
    again = run(ip, "--maximize acc --trials 4 --holdout test_acc --view none", cell)  # (a warning would fail here)
    assert again.holdout().warn and "WARNING: the gap exceeds" in again.summary()
    with pytest.warns(NbtuneWarning, match="To narrow the gap: more validation data or cross-validation"):
        plain = run(
            ip, "--maximize acc --trials 4 --holdout test_acc --view none", cell.replace("  # tune: folds(3)", "")
        )
    # the folds live in a comment: dropping it, or folds(3) -> folds(5), is another metric, so another
    # version (a re-run resumed the 3-fold study)
    assert plain.study.study_name == res.study.study_name + ":v2"
    with pytest.warns(NbtuneWarning):
        five = run(ip, "--maximize acc --trials 4 --holdout test_acc --view none", cell.replace("folds(3)", "folds(5)"))
    assert five.study.study_name == res.study.study_name + ":v3"


def test_a_cross_validated_searchs_holdout_gap_allows_for_the_spread_over_its_folds(ip):
    """An AUC gap of 0.03 over a 375-example holdout warned "the gap exceeds 0.02", about one standard
    error of that holdout (found trying nbtune as a new user). The folds' spread shows how much a score
    over that many examples varies by chance: twice it is the default."""
    cell = (
        "fold = 0  # tune: folds(4)\nx = 0.95  # tune: uniform(0, 1)\n"
        "auc = 0.9 - (x - 0.3) ** 2 + 0.05 * (fold % 2)\ntest_auc = auc - 0.035\n"
    )  # folds 0.05 apart (sd about 0.029): a gap of 0.035 is within twice that
    res = run(ip, "--maximize auc --trials 4 --holdout test_auc --view none -o res", cell)
    report = res.holdout()
    assert report.noise == pytest.approx(0.0289, abs=1e-3) and report.tolerance == pytest.approx(2 * report.noise)
    assert not report.warn and 0.02 < report.gap < report.tolerance
    wider = cell.replace("auc - 0.035", "auc - 0.07")  # a gap of 0.07: beyond it
    with pytest.warns(NbtuneWarning, match=r"the gap exceeds 0\.05774 \(twice the spread of its scores over the folds"):
        run(ip, "--maximize auc --trials 4 --holdout test_auc --view none --name wider", wider)


def test_honest_final_refits_and_shared_frames_are_no_leak(ip):
    """False 'possible leak' notes (found trying nbtune as a new user): a one-line final refit on the
    training and validation data, 'clone(model).fit(np.vstack([X_train, X_val]), ...).score(X_test,
    y_test)', named every search line reading X_train or X_val; so did a frame split by index
    (df.loc[te_idx]) and labels passed by name (labels=classes)."""
    ip.run_cell(
        "import numpy as np, pandas as pd\nfrom sklearn.base import clone\nfrom sklearn.linear_model import Ridge\n"
        "rng = np.random.default_rng(0)\nX_train, y_train = rng.normal(size=(40, 3)), rng.normal(size=40)\n"
        "X_val, y_val = rng.normal(size=(20, 3)), rng.normal(size=20)\nX_test, y_test = rng.normal(size=(20, 3)), "
        "rng.normal(size=20)\ndf = pd.DataFrame(rng.normal(size=(60, 4)), columns=list('abcy'))\n"
        "tr_idx, te_idx = df.index[:40], df.index[40:]\nclasses = np.arange(3)\n"
        "def err(m, X, y, labels=None):\n    return float(((m.predict(X) - y) ** 2).mean())\n"
    )
    refit = (
        "a = 1.0  # tune: loguniform(0.01, 10)\nmodel = Ridge(alpha=a).fit(X_train, y_train)\n"
        "val_mse = err(model, X_val, y_val, labels=classes)\n"
        "test_mse = err(clone(model).fit(np.vstack([X_train, X_val]), np.concatenate([y_train, y_val])), X_test, "
        "y_test, labels=classes)\n"
    )
    res = run(ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --view none --name refit", refit)
    assert not any("leak" in m for m in res.messages), res.messages
    frame = (
        "a = 1.0  # tune: loguniform(0.01, 10)\nmodel = Ridge(alpha=a).fit(df.loc[tr_idx, ['a', 'b']], "
        "df.loc[tr_idx, 'y'])\nval_mse = err(model, df.iloc[20:40][['a', 'b']], df.iloc[20:40]['y'])\n"
        "test_mse = err(model, df.loc[te_idx, ['a', 'b']], df.loc[te_idx, 'y'])\n"
    )
    res = run(ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --view none --name frame", frame)
    assert not any("leak" in m for m in res.messages), res.messages
    # the same refit in a notebook function (found trying nbtune as a new user)
    ip.run_cell(
        "def refit(m):\n    return clone(m).fit(np.vstack([X_train, X_val]), np.concatenate([y_train, y_val]))\n"
    )
    helper = refit.replace(
        "clone(model).fit(np.vstack([X_train, X_val]), np.concatenate([y_train, y_val]))", "refit(model)"
    )
    res = run(
        ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --view none --name helper", helper
    )
    assert not any("leak" in m for m in res.messages), res.messages
    # a pandas holdout read by column, test["y"] and test[cols], in the search's line too: the frame
    # was taken for shared data indexed by the sealed line, and the leak went unnamed (found trying
    # nbtune as a new user); the same frames read honestly are no leak
    ip.run_cell("train, val, test = df.iloc[:30], df.iloc[30:45], df.iloc[45:]\ncols = ['a', 'b']\n")
    columns = (
        "a = 1.0  # tune: loguniform(0.01, 10)\nmodel = Ridge(alpha=a).fit(train[cols], train['y'])\n"
        "val_mse = err(model, test[cols], test['y'])\ntest_mse = err(model, test[cols], test['y'])\n"
    )
    res = run(ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --view none --name cols", columns)
    assert any("possible leak: line 4 of the %%tune cell reads 'test'" in m for m in res.messages), res.messages
    honest = columns.replace("val_mse = err(model, test[cols], test['y'])", "val_mse = err(model, val[cols], val['y'])")
    res = run(ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --view none --name cols2", honest)
    assert not any("leak" in m for m in res.messages), res.messages
    # the refit's test data read by the search is still a leak
    leaky = refit.replace("val_mse = err(model, X_val, y_val", "val_mse = err(model, X_test, y_test")
    res = run(ip, "--minimize val_mse --trials 2 --holdout test_mse --holdout-gap 100 --view none --name leaky", leaky)
    assert any("possible leak: line 4 of the %%tune cell reads 'X_test', 'y_test'" in m for m in res.messages)


def test_an_evaluators_own_data_read_on_both_sides_is_no_leak(ip):
    """A recommender masks the items a user already has when it ranks: 'evaluate(U, V, val)' in the
    search and 'evaluate(U, V, test)' sealed both read train_mask, and every holdout check was voided
    as a 'possible leak' of it, once more for the negative sampler that reads it too (found trying
    nbtune as a new user). The data the two calls differ by is the holdout's; scoring the search on
    it is still a leak, and so is a shared name that reads as test data."""
    ip.run_cell(
        "import numpy as np\nrng = np.random.default_rng(0)\ntrain_mask = rng.random((30, 20)) < 0.2\n"
        "val, test = rng.integers(0, 20, size=30), rng.integers(0, 20, size=30)\n"
        "def evaluate(U, V, held):\n    s = U @ V.T\n    s[train_mask] = -np.inf\n"
        "    return float((s.argmax(1) == held).mean())\n"
        "def rank(U, V, held, mask):\n    s = U @ V.T\n    s[mask] = -np.inf\n    return float((s.argmax(1) == held).mean())\n"
        "def sample_negatives(k):\n    return np.flatnonzero(~train_mask[0])[:k]\n"
    )
    cell = (
        "scale = 0.1  # tune: loguniform(0.01, 1)\nr = np.random.default_rng(1)\n"
        "U, V = r.normal(size=(30, 4)) * scale, r.normal(size=(20, 4))\nneg = sample_negatives(3)\n"
        "hit_rate = evaluate(U, V, val)\ntest_hit_rate = evaluate(U, V, test)\n"
    )
    line = "--maximize hit_rate --trials 2 --holdout test_hit_rate --holdout-gap 100 --view none"
    res = run(ip, f"{line} --name rec", cell)
    assert not any("leak" in m for m in res.messages), res.messages
    # the holdout's shape alone read by the search tunes nothing to it (each was a 'possible leak': found by a new user)
    shaped = cell.replace("neg = sample_negatives(3)", "neg = sample_negatives(test.shape[0] // 10 + len(test) // 10)")
    res = run(ip, f"{line} --name shaped", shaped)
    assert not any("leak" in m for m in res.messages), res.messages
    passed = cell.replace("evaluate(U, V, val)", "rank(U, V, val, mask=train_mask)").replace(
        "evaluate(U, V, test)", "rank(U, V, test, mask=train_mask)"
    )
    res = run(ip, f"{line} --name passed", passed)
    assert not any("leak" in m for m in res.messages), res.messages
    # the search scored on the test data: named, the mask alone not
    leaky = passed.replace("rank(U, V, val, mask=train_mask)", "rank(U, V, test, mask=train_mask)")
    res = run(ip, f"{line} --name leaky", leaky)
    # one note, each line's reads in it (a note per line: found trying nbtune as a new user)
    leaks = [m for m in res.messages if m.startswith("possible leak: ")]
    assert len(leaks) == 1 and "line 6 reads 'test', 'train_mask'," in leaks[0], res.messages
    ip.run_cell("X_test = train_mask")  # the same evaluator's shared argument, named as test data: still the holdout's
    named = passed.replace("mask=train_mask", "mask=X_test")
    res = run(ip, f"{line} --name named", named)
    assert any(m.startswith("possible leak: line 6 of the %%tune cell reads 'X_test'") for m in res.messages)


def test_re_validation_without_the_holdout_after_a_sealed_edit_runs_once(ip):
    """Re-validation runs record the sealed lines' fingerprint they ran with; after an edit of those
    lines, a re-validation without --holdout must not take its own new runs for out-of-date ones
    and queue them again at every re-run."""
    ip.run_cell(
        "import numpy as np\nrng = np.random.default_rng(0)\nX_val, y_val = rng.normal(size=(30, 2)), rng.normal(size=30)\n"
        "X_test, y_test = rng.normal(size=(30, 2)), rng.normal(size=30)\n"
        "def err(a, X, y, seed=0):\n    return float(((X[:, 0] * a - y) ** 2).mean()) + 1e-3 * (seed % 3)\n"
    )
    cell = (
        "seed = 0  # tune: seed\na = 0.5  # tune: uniform(0, 1)\nval_mse = err(a, X_val, y_val, seed)\nk = 1.0\n"
        "test_mse = err(a * k, X_test, y_test)\n"
    )
    base = "--minimize val_mse --trials 6 --view none --name reval"
    run(ip, base + " --holdout test_mse --holdout-gap 100", cell)
    run(ip, base + " --holdout test_mse --holdout-gap 100", cell.replace("k = 1.0", "k = 2.0"))  # sealed lines edited
    first = run(ip, base + " --revalidate 2 --seeds 2", cell.replace("k = 1.0", "k = 2.0"))
    assert len(first.revalidation()) == 2
    again = run(ip, base + " --revalidate 2 --seeds 2", cell.replace("k = 1.0", "k = 2.0"))
    n_runs = len(again.checks.checks.trials)
    assert n_runs == len(
        run(ip, base + " --revalidate 2 --seeds 2", cell.replace("k = 1.0", "k = 2.0")).checks.checks.trials
    )
    assert not any("changed since" in m for m in again.messages), again.messages


def test_two_failures_are_not_put_down_to_a_region():
    """Two solver/penalty clashes that happened to have the two smallest C: 'all with C <= 0.04185:
    ... fix the cell or the range' blamed C (found trying nbtune as a new user). Two failures share
    a region by chance; three or more that do are named."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from nbtune.store.attrs import ATTR
    from nbtune.view.diagnose import diagnose
    from nbtune.view.summary import StudySummary

    def study_with(n_failed):
        study = optuna.create_study(direction="maximize")
        dist = {"C": FloatDistribution(0.001, 10, log=True)}
        failure = {ATTR.ERROR: "ValueError: clash", ATTR.FAILURE: "ValueError at line 4"}
        for i in range(n_failed):
            study.add_trial(create_trial(state=TrialState.FAIL, params={"C": 0.001 * (i + 1)}, distributions=dist,
                                         user_attrs=failure))  # fmt: skip
        for i in range(12):
            study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.9, params={"C": 0.1 * (i + 1)},
                                         distributions=dist))  # fmt: skip
        return next(f for f in diagnose(StudySummary(study, "acc")) if f.kind == "failed")

    assert study_with(2).region == ""
    assert study_with(3).region.startswith("C <= ")


def test_revalidation_says_when_it_cut_among_configurations_that_tie(trees):
    """Nine configurations tied at the top of tutorial 06's search, and --revalidate 3 took the
    first three by trial number without saying so (found by a teammate as a new user)."""
    cell = (
        "seed = 0  # tune: seed\n"
        "max_depth = 4  # tune: choice(2, 3, 4, 6, 8)\n"
        "model = DecisionTreeClassifier(max_depth=max_depth, random_state=seed).fit(X_train, y_train)\n"
        "val_acc = round(model.score(X_val, y_val), 1)\n"
    )
    res = run(trees, "--maximize val_acc --sampler grid --trials 5 --revalidate 2 --seeds 2 -o res", cell)
    values = [t.value for t in res.study.trials]
    assert len(set(values)) == 1  # every configuration scores the same, rounded
    cut = res.revalidation().index[-1]
    expected = f"3 more configurations tie with trial {cut} at val_acc {values[0]:.4g} and were not re-validated"
    assert expected in res.summary()
    assert "(the search ranks ties by trial number): --revalidate 5 takes them too" in res.summary()
    assert "nbtune-ties" in res.html()
    res.revalidate(top=5, seeds=2, view=None)  # all of them: nothing left out, nothing said
    assert "tie with trial" not in res.summary() and "nbtune-ties" not in res.html()


PEAKED = """\
rate = 0.06  # tune: uniform(0.05, 0.08)
for epoch in range(10):  # tune: epochs
    loss = 1 - 0.8 * min(epoch, 3) / 3 + rate * max(0, epoch - 3)
"""


def test_curves_that_peaked_well_before_their_end_are_overfitting(ip):
    """A boosting model's validation RMSE, best at epochs 5-9 of 27 and 5% higher at its end: the
    trials were scored past their best, and res.diagnose() was empty (found trying nbtune as a
    new user)."""
    res = run(ip, "--minimize loss --trials 4 --sampler random --scheduler none -o r", PEAKED)
    found = res.diagnose()
    assert list(found.kind) == ["overfitting"] and found.n_trials[0] == 4, found
    assert found.evidence[0] == "a validation curve best at epoch 4 that then worsened to its end"
    assert "fewer epochs" in found.advice[0]
    from nbtune.view.diagnose import _peaked

    # the teammate's curves: 69k after the first epoch, 54.5k at epoch 5, a steady rise to 57k at 27
    rmse = [69.0, 59.0, 56.0, 55.0, 54.5] + [54.5 + 2.5 * i / 22 for i in range(1, 23)]
    assert _peaked(rmse, maximize=False) == 4
    # a noisy RMSE that gains 3% and then ends above its start (found trying nbtune as a new user)
    noisy = [1.855, 1.811, 1.792, 1.802, 1.81, 1.822, 1.819, 1.835, 1.848, 1.853, 1.867]
    assert _peaked(noisy, maximize=False) == 2
    wobbly = [69.0, 59.0, 56.0, 55.0, 54.5] + [54.5 + 2.5 * (i % 2) for i in range(1, 23)]
    assert _peaked(wobbly, maximize=False) is None  # it ends at its best: wandering, not worsening
    # a curve that levels off, sags a little, or wanders about its plateau is no finding
    for after in ("0.01 * rate * max(0, epoch - 3)", "rate * (epoch > 3) * (epoch % 2)"):
        other = PEAKED.replace("rate * max(0, epoch - 3)", after)
        assert run(ip, "--minimize loss --trials 4 --sampler random --scheduler none -o r", other).diagnose().empty


@pytest.mark.parametrize(
    "split, said",
    [
        ("tr, va = list(KFold(5, shuffle=True).split(X))[fold]", "KFold(...) shuffles without random_state"),
        ("tr, va = list(KFold(5, shuffle=True, random_state=0).split(X))[fold]", None),
        ("tr, va = list(KFold(5).split(X))[fold]", None),  # no shuffling: the same folds every time
        ("tr, va = list(sklearn.model_selection.ShuffleSplit(5).split(X))[fold]", "ShuffleSplit(...) shuffles"),
        ("tr, va = train_test_split(np.arange(len(y)), test_size=0.3)", "train_test_split(...) shuffles"),
        ("tr, va = train_test_split(np.arange(len(y)), test_size=0.3, random_state=seed)", None),
    ],
)
def test_a_split_that_shuffles_without_a_seed_in_the_cell_is_named(trees, split, said):
    """`KFold(5, shuffle=True)` in a folds(5) cell reshuffled every fold of every trial: the folds
    overlapped and the trials were compared on other data, silently (found trying nbtune as a new user)."""
    trees.run_cell("import numpy as np, sklearn.model_selection\nfrom sklearn.model_selection import KFold")
    folds = "fold = 0  # tune: folds(5)\n" if "[fold]" in split else ""
    cell = (
        f"seed = 0  # tune: seed\n{folds}max_depth = 4  # tune: int(2, 8)\n"
        f"{split}\n"
        "model = DecisionTreeClassifier(max_depth=max_depth, random_state=seed).fit(X[tr], y[tr])\n"
        "val_acc = model.score(X[va], y[va])\n"
    )
    res = run(trees, "--maximize val_acc --trials 2 --view none -o r", cell)
    notes = [m for m in res.messages if "shuffles without random_state" in m]
    if said is None:
        assert not notes, notes
    else:
        assert len(notes) == 1 and notes[0].startswith(f"line {5 if folds else 4}: {said}"), res.messages
        assert "pass random_state=0 (or the '# tune: seed' variable), or split once outside the cell" in notes[0]


def test_a_splitter_made_in_an_earlier_cell_that_shuffles_without_a_seed_is_named(trees):
    """cv = KFold(5, shuffle=True) in an earlier cell, cv.split(X) in the search: the same problem,
    silent (found trying nbtune as a new user)."""
    trees.run_cell("from sklearn.model_selection import KFold\ncv = KFold(5, shuffle=True)\nok = KFold(5)\n")
    cell = (
        "fold = 0  # tune: folds(5)\nmax_depth = 4  # tune: int(2, 8)\n"
        "tr, va = list({cv}.split(X))[fold]\n"
        "model = DecisionTreeClassifier(max_depth=max_depth, random_state=0).fit(X[tr], y[tr])\n"
        "val_acc = model.score(X[va], y[va])\n"
    )
    res = run(trees, "--maximize val_acc --trials 2 --view none -o r", cell.format(cv="cv"))
    assert any(m.startswith("the cell reads 'cv', a KFold that shuffles without random_state") for m in res.messages)
    res = run(trees, "--maximize val_acc --trials 2 --view none -o r", cell.format(cv="ok"))
    assert not any("shuffles" in m for m in res.messages), res.messages


def test_a_split_that_shuffles_a_series_indexed_by_date_is_named(ip):
    """KFold(5, shuffle=True) and train_test_split on a frame indexed by date train on the future: the
    forecast scored better than it will be, and nothing was said (found trying nbtune as a new
    forecasting user). A split by time, or data with no dates, says nothing."""
    ip.run_cell(
        "import numpy as np, pandas as pd\nfrom sklearn.linear_model import Ridge\n"
        "from sklearn.model_selection import KFold, TimeSeriesSplit, cross_val_score, train_test_split\n"
        "df = pd.DataFrame({'x': np.arange(60.0), 'y': np.arange(60.0)}, index=pd.date_range('2024-01-01', periods=60))\n"
        "plain = df.reset_index(drop=True)\ncv = KFold(5, shuffle=True, random_state=0)\n"
    )
    cell = "a = 0.5  # tune: uniform(0, 1)\n{split}\nloss = a * len(tr)\n"
    said = "shuffles the rows of 'df', which is indexed by date: each model trains on days after"
    for split, name in (
        ("tr, va = train_test_split(df, random_state=0)", "train_test_split"),
        ("tr, va = next(KFold(5, shuffle=True, random_state=0).split(df[['x']]))", "KFold"),
        ("tr, va = next(cv.split(df.x))", "KFold"),
        ("tr = cross_val_score(Ridge(), df[['x']], df.y, cv=KFold(5, shuffle=True, random_state=0))", "KFold"),
    ):
        res = run(ip, f"--minimize loss -n 2 --view none --name s{abs(hash(split))}", cell.format(split=split))
        notes = [m for m in res.messages if said in m]
        assert len(notes) == 1 and notes[0].startswith(f"line 3: {name}(...) {said}"), (split, res.messages)
    for split in (
        "tr, va = train_test_split(df, shuffle=False)",
        "tr, va = next(TimeSeriesSplit(5).split(df))",
        "tr, va = next(KFold(5).split(df))",
        "tr, va = train_test_split(plain, random_state=0)",
        "tr = cross_val_score(Ridge(), df[['x']], df.y, cv=TimeSeriesSplit(5))",
    ):
        res = run(ip, f"--minimize loss -n 2 --view none --name q{abs(hash(split))}", cell.format(split=split))
        assert not any("indexed by date" in m for m in res.messages), (split, res.messages)


def test_an_estimator_or_a_notebook_generator_that_draws_at_random_unseeded_is_named(trees):
    """--seed repeated the configurations and not their scores: RandomForestClassifier(n_estimators=n)
    with no random_state scored 0.930 and 0.933 in two runs, and a cell drawing from the notebook's
    rng = np.random.default_rng(0) gave each trial what the trials before it left (found trying
    nbtune as a new user). Both said before the search; seeded ones, and deterministic models, not."""
    trees.run_cell(
        "import numpy as np\nfrom sklearn.ensemble import RandomForestClassifier\nrng = np.random.default_rng(0)"
    )
    cell = "n = 20  # tune: int(5, 50)\n{imports}model = {model}.fit(X, y)\nidx = {rows}\nval_acc = model.score(X[idx], y[idx])\n"

    def notes(**parts):
        res = run(trees, "--maximize val_acc --trials 2 --seed 0 --view none", cell.format(**parts))
        return [m for m in res.messages if "random_state" in m or "random generator" in m]

    said = notes(imports="", model="RandomForestClassifier(n_estimators=n)", rows="rng.choice(len(X), 50)")
    assert said == [
        "line 3: RandomForestClassifier(...) draws at random and is given no random_state, so the same configuration "
        "scores differently from trial to trial (noise in their ranking; --seed repeats the configurations, not their "
        "scores); pass random_state=0",
        "the cell draws from the notebook's random generator 'rng' (a Generator): each trial starts where the trials "
        "before it left it (each worker process from its own copy), so what a trial draws depends on the order trials "
        "ran, and a new seed for it is no new version of the study; make one in the cell from a fixed seed "
        "(rng = np.random.default_rng(0))",
    ], said
    # imported by the cell itself, through its module: said too
    said = notes(
        imports="import sklearn.ensemble as ens\n",
        model="ens.ExtraTreesClassifier(n_estimators=n)",
        rows="slice(0, 50)",
    )
    assert len(said) == 1 and said[0].startswith("line 4: ExtraTreesClassifier(...) draws at random"), said
    # seeded, deterministic, or its own generator: nothing to say
    assert notes(imports="", model="RandomForestClassifier(n_estimators=n, random_state=0)", rows="slice(0, 50)") == []
    assert (
        notes(
            imports="from sklearn.linear_model import RidgeClassifier\n",
            model="RidgeClassifier(alpha=n)",
            rows="slice(0, 50)",
        )
        == []
    )
    # no random_state to pass (DBSCAN, a voting ensemble), or SGD that does not shuffle: nothing (the advice
    # raised a TypeError: found trying nbtune as a new user); a Gaussian mixture draws: said
    trees.run_cell(
        "from sklearn.cluster import DBSCAN, AgglomerativeClustering\nfrom sklearn.ensemble import VotingClassifier\n"
        "from sklearn.linear_model import SGDClassifier, LogisticRegression\nfrom sklearn.mixture import GaussianMixture"
    )
    for quiet in (
        "DBSCAN(eps=n / 10).fit(X) and RandomForestClassifier(n_estimators=n, random_state=0)",
        "AgglomerativeClustering(n_clusters=2).fit(X) and RandomForestClassifier(n_estimators=n, random_state=0)",
        "VotingClassifier([('lr', LogisticRegression(C=n))])",
        "SGDClassifier(alpha=1 / n, shuffle=False, max_iter=50, tol=None)",
    ):
        assert notes(imports="", model=quiet, rows="slice(0, 50)") == [], quiet
    mixture = notes(
        imports="", model="GaussianMixture(2).fit(X) and RandomForestClassifier(random_state=0)", rows="slice(0, 50)"
    )
    assert len(mixture) == 1 and mixture[0].startswith("line 3: GaussianMixture(...) draws at random"), mixture
    seeded = run(
        trees,
        "--maximize val_acc --trials 2 --seed 0 --view none",
        "seed = 0  # tune: seed\n"
        + cell.format(imports="", model="RandomForestClassifier(n_estimators=n)", rows="slice(0, 50)"),
    )
    assert any(m.endswith("pass random_state=seed (the '# tune: seed' variable)") for m in seeded.messages)
    # seeded after it is built, or a model that draws only under an option: nothing; an explicit None: said
    seeded_later = "RandomForestClassifier(n_estimators=n).set_params(random_state=0)"
    assert notes(imports="", model=seeded_later, rows="slice(0, 50)") == []
    hgb = "from sklearn.ensemble import HistGradientBoostingClassifier as H\n"
    assert notes(imports=hgb, model="H(max_iter=n)", rows="slice(0, 50)") == []
    none = notes(imports="", model="RandomForestClassifier(n_estimators=n, random_state=None)", rows="slice(0, 50)")
    assert len(none) == 1 and "RandomForestClassifier(...) draws at random" in none[0]
    # a RandomState is made again as one (scikit-learn refuses a Generator for random_state)
    trees.run_cell("rs = np.random.RandomState(0)")
    legacy = notes(imports="", model="RandomForestClassifier(n_estimators=n, random_state=rs)", rows="slice(0, 50)")
    assert legacy and legacy[-1].endswith("(rs = np.random.RandomState(0))"), legacy
    # looked at, not drawn from: nothing
    looked = notes(
        imports="print(type(rng))\n",
        model="RandomForestClassifier(n_estimators=n, random_state=0)",
        rows="slice(0, 50)",
    )
    assert looked == [], looked
    # a notebook function the cell calls that draws from it (and the notebook functions it calls): said, with its
    # name; where the cell makes its own rng, the function reads the cell's (the trial hands it its namespace)
    trees.run_cell("def pick(k):\n    return rng.choice(len(X), k)\n\ndef rows():\n    return pick(50)")
    by_function = notes(imports="", model="RandomForestClassifier(n_estimators=n, random_state=0)", rows="rows()")
    assert by_function == [
        "the notebook function 'rows' the cell calls draws from the notebook's random generator 'rng' (a Generator): "
        "each trial starts where the trials before it left it (each worker process from its own copy), so what a "
        "trial draws depends on the order trials ran, and a new seed for it is no new version of the study; make "
        "one in the cell from a fixed seed (rng = np.random.default_rng(0)), which rows then reads"
    ], by_function
    own_rng = notes(
        imports="rng = np.random.default_rng(1)\n",
        model="RandomForestClassifier(n_estimators=n, random_state=0)",
        rows="rows()",
    )
    assert own_rng == [], own_rng
    # a generator a notebook function takes as a default argument: the cell's own rng does not replace it, so
    # the cell is told to pass one (found trying nbtune as a new user: nothing was said); passed, nothing to say
    trees.run_cell("gen = np.random.default_rng(123)\ndef draw(k, rng=gen):\n    return rng.choice(len(X), k)")
    by_default = notes(
        imports="rng = np.random.default_rng(1)\n", model="RandomForestClassifier(n_estimators=n, random_state=0)",
        rows="draw(50)",
    )  # fmt: skip
    assert len(by_default) == 1 and by_default[0].startswith(
        "the notebook function 'draw' the cell calls draws from the notebook's random generator 'gen' (a Generator, "
        "its default argument 'rng'): each trial starts where"
    ), by_default
    assert by_default[0].endswith(
        "make one in the cell from a fixed seed and pass it: draw(..., rng=np.random.default_rng(0))"
    )
    for passed in ("draw(50, rng)", "draw(50, rng=rng)"):
        assert notes(
            imports="rng = np.random.default_rng(1)\n", model="RandomForestClassifier(n_estimators=n, random_state=0)",
            rows=passed,
        ) == []  # fmt: skip
    # with a '# tune: seed' variable, the generator is made from it (the advice showed default_rng(0))
    res = run(
        trees,
        "--maximize val_acc --trials 2 --seed 0 --view none",
        "seed = 0  # tune: seed\n"
        + cell.format(imports="", model="RandomForestClassifier(random_state=seed)", rows="rows()"),
    )
    assert any(m.endswith("(rng = np.random.default_rng(seed)), which rows then reads") for m in res.messages), (
        res.messages
    )
    own = "np.random.default_rng(0).choice(len(X), 50)"
    assert (
        notes(
            imports="rng = np.random.default_rng(1)\n",
            model="RandomForestClassifier(n_estimators=n, random_state=0)",
            rows=own.replace("np.random.default_rng(0)", "rng"),
        )
        == []
    )


def test_folds_whose_mean_is_one_folds_value_are_named(ip):
    """A MAPE over a fold with zero actuals: 2.9e15 beside 0.03, and the search tuned to that fold
    silently (found trying nbtune as a new user)."""
    cell = (
        "fold = 0  # tune: folds(4)\nx = 0.5  # tune: uniform(0, 1)\nmape = [0.03, 0.04, 3e15, 0.02][fold] * (1 + x)\n"
    )
    res = run(ip, "--minimize mape --trials 4 --sampler random --seed 0 -o r", cell)
    found = res.diagnose()
    assert list(found.kind) == ["dominated by one fold"] and found.n_trials[0] == 4, found
    assert found.evidence[0].startswith("e.g. fold 2's ") and "against a median of" in found.evidence[0]
    assert "diagnosis: 4 trials dominated by one fold" in res.summary()
    even = cell.replace("3e15", "0.05")
    assert run(ip, "--minimize mape --trials 4 --sampler random --seed 0 -o r", even).diagnose().empty


def test_a_running_error_over_a_simulations_steps_is_not_called_divergence(ip):
    """A fit whose loss is the RMSE so far, over the days of an epidemic, grows as the epidemic
    rises: '39 trials diverged ..., all with beta <= 2.777: raise the bottom of beta's range',
    which excluded the true beta (found trying nbtune as a new user)."""
    cell = (
        "beta = 0.6  # tune: uniform(0.1, 3)\n"
        "sq = 0.0\n"
        "for day in range(12):  # tune: epochs\n"
        "    sq += (beta - 0.6) ** 2 + 0.05 * day\n"
        "    rmse = (sq / (day + 1)) ** 0.5\n"
    )
    res = run(ip, "--minimize rmse --trials 8 --sampler random --seed 0 --scheduler none -o r", cell)
    found = res.diagnose()
    assert "diverged" not in set(found.kind), found
    row = found[found.kind == "worsened over the loop"].iloc[0]
    assert "the trials are compared at their end already" in row.advice  # (it advised --scheduler none)
    assert row.evidence.startswith("nearly all: 8 of 8 curves ended worse than they started")
    assert row.region == ""
    # under successive halving, paused trials that went on are one configuration each
    res = run(ip, "--minimize rmse --trials 20 --sampler random --seed 0 -o r", cell)
    row = res.diagnose().set_index("kind").loc["worsened over the loop"]
    assert "compare trials at their end (--scheduler none" in row.advice
    n_configs = len({tuple(t.params.items()) for t in res.study.trials})
    assert f"of {n_configs} curves" in row.evidence, (row.evidence, n_configs)


def test_noisy_returns_that_start_near_zero_are_not_called_diverged_or_overfitting():
    """A running mean of episode returns starts near 0 and wanders: -0.07 then -0.115 after 12
    episodes is no collapse where the trials' returns range over 0.9. Three of the best
    configurations of a Q-learning search were called diverged and overfitting, with advice to clip
    gradients (found trying nbtune as a new user; these are that study's curves)."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from nbtune.view.diagnose import diagnose
    from nbtune.view.summary import StudySummary

    trial_8 = (
        "-0.09 -0.09 -0.083 -0.075 0.126 0.233 0.19 0.146 0.111 0.073 0.065 0.054 0.045 0.032 0.029 0.021 0.019 0.016"
    )
    trial_8 += " 0.013 0.006 0.003 -0.004 -0.011 -0.019 -0.067 -0.119 -0.122 -0.117 -0.116 -0.108 -0.11 -0.108 -0.106 -0.103 -0.108 -0.118"
    cut = {
        8: [float(v) for v in trial_8.split()],
        21: [-0.07, -0.045, -0.047, -0.06, -0.058, -0.083, -0.091, -0.082, -0.112, -0.115, -0.113, -0.115],
        22: [-0.02, -0.08, -0.09, -0.08, -0.07, -0.078, -0.069, -0.069, -0.069, -0.064, -0.065, -0.072],
    }
    finals = [-0.129, -0.092, -0.09, -0.084, -0.078, -0.074, -0.072, -0.062, -0.02, -0.011, 0.048, 0.15, 0.344]
    finals += [0.384, 0.438, 0.596, 0.747, 0.795, 0.84, -0.118, -0.115, -0.077, -0.073, -0.071, -0.017, -0.002, 0.058]
    study = optuna.create_study(direction="maximize")
    rng = random.Random(0)
    for number in range(30):
        q0 = rng.random()
        if number in cut:
            curve, state, value = cut[number], TrialState.PRUNED, None
        else:
            final = finals.pop()
            curve = [-0.1 + (final + 0.1) * (e + 1) / 36 for e in range(36)]
            state, value = TrialState.COMPLETE, final
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params={"q0": q0},
                distributions={"q0": FloatDistribution(0, 1)},
                intermediate_values={e + 1: v for e, v in enumerate(curve)},
            )
        )
    # a lucky first episode (a mean over one return) that the mean then leaves, as every trial's does;
    # and a return that peaked at episode 139 of 150, a wiggle at the end (found retesting the above)
    lucky = [0.92, 0.445, 0.293, 0.215, 0.17, 0.138] + [0.1 - 0.004 * e for e in range(34)]
    late = [-0.1 + 0.001 * e for e in range(139)] + [0.039 - 0.004 * e for e in range(11)]
    for curve, state in ((lucky, TrialState.PRUNED), (late, TrialState.COMPLETE), (late, TrialState.COMPLETE)):
        study.add_trial(
            create_trial(
                state=state,
                value=curve[-1] if state == TrialState.COMPLETE else None,
                params={"q0": 0.5},
                distributions={"q0": FloatDistribution(0, 1)},
                intermediate_values={e + 1: v for e, v in enumerate(curve)},
            )
        )
    kinds = {f.kind for f in diagnose(StudySummary(study, "mean_return"))}
    assert not kinds & {"diverged", "overfitting"}, kinds
    # a curve that does collapse on this scale still is diverged
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params={"q0": 0.5},
            distributions={"q0": FloatDistribution(0, 1)},
            intermediate_values={1: 0.3, 2: 0.1, 3: -0.4, 4: -0.9},
        )
    )
    assert "diverged" in {f.kind for f in diagnose(StudySummary(study, "mean_return"))}


def test_a_regions_bound_is_rounded_outward_so_that_it_holds_its_trials():
    """'all with x >= 0.7152' covered a trial at x = 0.715189 (found trying nbtune as a new user)."""
    from nbtune.view.diagnose import _bound

    assert _bound(0.715189, ">=") == "0.7151" and _bound(0.715189, "<=") == "0.7152"
    assert _bound(-0.0123456, "<=") == "-0.01234" and _bound(0.5449, ">=") == "0.5449"
    assert _bound(3e-5, "<=") == "3.000e-05" and _bound(3, ">=") == "3"


def test_a_loss_that_blew_up_from_its_first_epoch_is_divergence(ip):
    """SGD at a learning rate too large: a validation loss of 7.3e15 from the first epoch on, where
    the median trial's is 0.3, was read as a trial like the others: its curve never ended worse than
    it started (found trying nbtune as a new user)."""
    cell = (
        "lr = 0.1  # tune: loguniform(1e-3, 10.0)\n"
        "for epoch in range(3):  # tune: epochs\n"
        "    val_loss = 7.3e15 - epoch if lr > 2.0 else 0.3 + lr / (epoch + 1)\n"
    )
    res = run(ip, "--minimize val_loss --sampler random --seed 0 --trials 24 --scheduler none -o r", cell)
    df = res.diagnose()
    big = {t.number for t in res.study.trials if t.value is not None and t.value > 1e10}
    assert big, "some configuration blew up"
    found = df[df.kind == "diverged"]
    assert len(found) == 1 and set(found.iloc[0].trials) == big, df
    assert "times the median trial's" in found.iloc[0].evidence and found.iloc[0].region.startswith("lr >= ")


def test_failures_of_two_choices_the_rest_never_took_have_those_as_their_region():
    """Five failures, all with objective 'regression' or 'huber' (the rest 'binary'): the region was
    empty, as only one choice could be a region (found trying nbtune as a new user)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from nbtune.view.diagnose import _advice, _region

    choices = ("binary", "regression", "cross_entropy", "huber")

    def trial(objective, lr):
        return create_trial(
            state=TrialState.COMPLETE,
            value=0.0,
            params={"objective": objective, "lr": lr},
            distributions={"objective": CategoricalDistribution(choices), "lr": FloatDistribution(1e-3, 1, log=True)},
        )

    hit = [trial(o, lr) for o, lr in (("regression", 0.01), ("huber", 0.2), ("regression", 0.5), ("huber", 0.03))]
    rest = [trial("binary", lr) for lr in (0.005, 0.05, 0.3, 0.9)]
    assert _region(hit, rest) == "objective in ('huber', 'regression')"
    assert (
        _advice("diverged", _region(hit, rest))
        == "leave 'huber', 'regression' out of objective's choices, or clip gradients"
    )
    assert _region(hit, [*rest, trial("huber", 0.1)]) == ""  # the rest took one of them too


def test_notebook_arrays_the_cell_changes_in_place_are_said_before_the_search(ip):
    """Factors made in an earlier cell and updated in the cell (np.add.at(U, ...), U += ...): every trial
    warm-started from the last, and the best was whichever ran late; said only after the search (found
    trying nbtune as a new user). Said before it now; a copy made in the cell, or a model's own
    attribute, is no such change."""
    ip.run_cell("import numpy as np\nU = np.zeros((5, 2))\nV = np.ones((4, 2))\nrows = np.array([0, 1, 1])")
    cell = (
        "lr = 0.1  # tune: loguniform(0.01, 1)\n{own}for epoch in range(3):  # tune: epochs\n"
        "    {change}\n    loss = float(((U @ V.T - 1) ** 2).mean()) + lr\n"
    )
    line = "--minimize loss -n 3 --view none --scheduler none"
    res = run(ip, f"{line} --name add_at", cell.format(own="", change="np.add.at(U, rows, lr)"))
    said = [m for m in res.messages if "in place, in every trial" in m]
    assert said == [
        "line 4: 'np.add.at(U, rows, lr)' changes the notebook's 'U' in place, in every trial: each trial starts "
        "from what the trials before it left (each worker process from its own copy), so a trial's score depends on "
        "the trials that ran before it and the notebook's 'U' ends as the last one left it; make the trial's own in "
        "the cell ('U = U.copy()' before it changes, or build it in the cell)"
    ], res.messages
    # a tensor is made the trial's own with .clone() (it has no .copy(): found retesting)
    ip.run_cell("import torch\nW = torch.zeros(3)")
    res = run(ip, f"{line} --name tensor", cell.format(own="", change="W.add_(lr)"))
    assert any("'W.add_(lr)' changes the notebook's 'W' in place" in m and "('W = W.clone()' before it changes" in m
               for m in res.messages), res.messages  # fmt: skip
    for change in ("U += lr * V[:1]", "U[0] -= lr", "U.fill(lr)"):
        res = run(ip, f"{line} --name c{abs(hash(change))}", cell.format(own="", change=change))
        assert any(f"'{change}' changes the notebook's 'U' in place" in m for m in res.messages), (change, res.messages)
    own = run(ip, f"{line} --name own", cell.format(own="U = U.copy()\n", change="np.add.at(U, rows, lr)"))
    assert not any("in place, in every trial" in m for m in own.messages), own.messages


def test_draws_from_a_global_generator_the_cell_never_seeds_are_said(ip):
    """np.random.randn(...) noise and a PyTorch network built in the cell with no seed: each trial drew other
    numbers, and nothing was said, where a forest without random_state was named (found trying nbtune as a new
    user). Seeded in the cell, drawn from the cell's own generator, or a layer with no weights: nothing."""
    import torch  # noqa: F401  (loaded, as in a notebook that uses it)

    ip.run_cell(
        "import numpy as np, random, torch, torch.nn as nn\nX = np.zeros((20, 3))\n"
        "class Net(nn.Module):\n    def __init__(self, h):\n        super().__init__()\n        self.l = nn.Linear(3, h)\n"
    )

    def said(code, seed=""):
        res = run(
            ip, f"--minimize loss -n 2 --view none --name g{abs(hash(code))}", f"{seed}a = 4  # tune: int(2, 8)\n{code}"
        )
        return [m for m in res.messages if "global random generator" in m]

    assert said("loss = float((X + np.random.randn(*X.shape)).mean()) * a\n") == [
        "line 3: np.random.randn(...) draws from NumPy's global random generator, which the cell never seeds: the same "
        "configuration scores differently from trial to trial (noise in their ranking; --seed repeats the "
        "configurations, not their scores); call np.random.seed(0) first, or draw from rng = "
        "np.random.default_rng(0) made in the cell"
    ]
    assert said("loss = a * random.random()\n")[0].startswith("line 3: random.random(...) draws from Python's")
    torch_said = said("net = nn.Sequential(nn.Linear(3, a), nn.ReLU())\nloss = float(net[0].weight.sum())\n")
    assert len(torch_said) == 1 and torch_said[0].startswith(
        "line 3: nn.Linear(...) draws from PyTorch's global random generator (its initial weights)"
    ), torch_said
    assert said("net = Net(a)\nloss = float(net.l.weight.sum())\n")[0].startswith(
        "line 3: Net(...) draws from PyTorch's"
    )
    seeded = said(
        "net = Net(a)\nloss = float(net.l.weight.sum())\n", seed="seed = 0  # tune: seed\ntorch.manual_seed(seed)\n"
    )
    assert seeded == [], seeded
    unseeded_var = said("net = Net(a)\nloss = float(net.l.weight.sum() + seed)\n", seed="seed = 0  # tune: seed\n")
    assert unseeded_var[0].endswith("call torch.manual_seed(seed) first (the '# tune: seed' variable)"), unseeded_var
    # seeded by a notebook helper, or weights loaded over the initial ones: nothing (both were said: found retesting)
    ip.run_cell("def set_all(s):\n    np.random.seed(s)\n    torch.manual_seed(s)\nstate = Net(4).state_dict()")
    for quiet in (
        "set_all(0)\nnet = Net(4)\nloss = float(net.l.weight.sum() + a + np.random.randn())\n",
        "net = Net(4)\nnet.load_state_dict(state)\nloss = float(net.l.weight.sum() + a)\n",
        "rng = np.random.default_rng(0)\nloss = float(a * rng.normal())\n",
        "np.random.seed(1)\nloss = float(a * np.random.randn())\n",
        "net = nn.ReLU()\nloss = float(a)\n",
        "g = torch.Generator().manual_seed(0)\nloss = float(torch.randn(a, generator=g).sum())\n",
        "w = torch.empty(3, a)\nnn.init.zeros_(w)\nloss = float(w.sum())\n",
        "dl = torch.utils.data.DataLoader(range(a), shuffle=False)\nloss = float(a)\n",
        "dl = torch.utils.data.DataLoader(range(a), shuffle=True, generator=torch.Generator().manual_seed(0))\nloss = 1.0\n",
    ):
        assert said(quiet) == [], quiet
    # what else draws from PyTorch's generator: initialisers, a shuffling loader, random_split (found trying nbtune)
    for code, call in (
        ("w = torch.empty(3, a)\nnn.init.normal_(w)\nloss = float(w.sum())\n", "line 4: nn.init.normal_"),
        (
            "dl = torch.utils.data.DataLoader(range(a), shuffle=True)\nloss = float(a)\n",
            "line 3: torch.utils.data.DataLoader",
        ),
        (
            "parts = torch.utils.data.random_split(range(a), [0.5, 0.5])\nloss = 1.0\n",
            "line 3: torch.utils.data.random_split",
        ),
    ):
        got = said(code)
        assert len(got) == 1 and got[0].startswith(f"{call}(...) draws from PyTorch's"), (code, got)
    # a notebook helper that draws from the global generator itself, or through a helper of its own (the same
    # configuration and seed scored 0.60, 0.61 and 0.50, with nothing said: found trying nbtune as a new user)
    ip.run_cell(
        "def explore(p, eps):\n    return np.random.randint(2) if np.random.rand() < eps else p\n"
        "def episode(p):\n    return [explore(p, 0.1) for _ in range(3)]\n"
        "def noisy(x):\n    return x + random.random()\n"
        "def quiet(x, rng):\n    return x + rng.random()\n"
    )
    for code, call in (
        ("loss = float(explore(a, 0.5))\n", "line 3: explore(...) draws from NumPy's"),
        ("loss = float(sum(episode(a)))\n", "line 3: episode(...) draws from NumPy's"),
        ("loss = noisy(a)\n", "line 3: noisy(...) draws from Python's"),
    ):
        got = said(code)
        assert len(got) == 1 and got[0].startswith(call), (code, got)
    assert said("loss = quiet(a, np.random.default_rng(0))\n") == []
    assert said("loss = float(explore(a, 0.5))\n", seed="np.random.seed(0)\n") == []
    # a generator of the cell's own seeded is no seeding of PyTorch's global one: the model's initial weights
    # are still drawn unseeded (nothing was said: found trying nbtune as a new PyTorch user)
    for own in (
        "g = torch.Generator().manual_seed(0)\n",
        "g = torch.Generator()\ng.manual_seed(0)\n",
        "dl = torch.utils.data.DataLoader(range(4), shuffle=True, generator=torch.Generator().manual_seed(0))\n",
    ):
        got = said(own + "net = Net(a)\nloss = float(net.l.weight.sum())\n")
        assert len(got) == 1 and "Net(...) draws from PyTorch's global random generator" in got[0], (own, got)
    # a generator made in the cell with no seed starts from fresh entropy, whatever else is seeded
    res = run(
        ip,
        "--minimize loss -n 2 --view none --name fresh",
        "seed = 0  # tune: seed\na = 4  # tune: int(2, 8)\nrng = np.random.default_rng()\nloss = float(rng.normal() + a)\n",
    )
    fresh = [m for m in res.messages if "fresh entropy" in m]
    assert fresh == [
        "line 4: np.random.default_rng() is given no seed, so it starts from fresh entropy in every trial: the same "
        "configuration scores differently from trial to trial (noise in their ranking; --seed repeats the "
        "configurations, not their scores); give it the '# tune: seed' variable: np.random.default_rng(seed)"
    ], res.messages


def test_what_is_read_from_the_cells_syntax_tree_travels_to_worker_processes():
    """A worker process gets the cell without its syntax tree: the guardrails set in the epochs loop and the
    lines of the cell's own raise must be known there as in the kernel."""
    import pickle

    from nbtune._tune import parse_constraint
    from nbtune.cell.program import compile_cell

    cell = (
        "w = 1.0  # tune: uniform(0, 1)\nsize = w * 10\nfor epoch in range(3):  # tune: epochs\n"
        "    acc = w\n    nnz = w / (epoch + 1)\nif acc > 2:\n    raise RuntimeError('no')\n"
    )
    constraints = [parse_constraint("size <= 9"), parse_constraint("nnz <= 1")]
    program = compile_cell(cell, metric="acc", direction="maximize", user_ns={}, constraints=constraints)
    raising = [line for line in range(12) if program.raises_at(line)]
    shipped = pickle.loads(pickle.dumps(program))
    assert shipped.spec.tree is None and len(raising) == 1
    assert [c[0] for c in shipped.guardrails_before_the_loop()] == ["size"]
    assert [line for line in range(12) if shipped.raises_at(line)] == raising


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_equal_interval_ends_are_broken_by_the_better_mean(direction):
    """Minimising, the key had the mean negated, so min took the worse mean of two candidates whose upper ends
    were equal (found by a user auditing the numbers)."""
    from nbtune.view.checks import Candidate, CheckReport

    study = optuna.create_study(direction=direction)
    report = CheckReport(study, None, "m")
    better, worse = (2.0, 1.0) if direction == "maximize" else (1.0, 2.0)
    # the same interval end: a wide interval around one mean, none around the other
    a = Candidate(0, {}, better, 1, values=[better - 0.5, better + 0.5, better])
    b = Candidate(1, {}, worse, 2, values=[worse, worse, worse])
    b.values = [v + report.bound(a) - report.bound(b) for v in b.values]
    assert report.bound(a) == pytest.approx(report.bound(b), abs=1e-12) and a.mean != b.mean
    report.candidates = lambda: [a, b]  # type: ignore[method-assign]
    want = a if (a.mean > b.mean) == (direction == "maximize") else b
    assert report.chosen() is want
