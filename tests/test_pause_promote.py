"""Pause-and-promote: with a declared state, Hyperband and ASHA pause a trial that is not (yet)
in the top 1/eta at a rung, and continue it from its checkpoint when it ranks there later.
Real IPython shell, real store files, real worker processes; the state is a scikit-learn
estimator trained with ``partial_fit``."""

from __future__ import annotations

import collections
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbtune.run.schedulers import Rungs, SchedulerSpec, format_decision, make_pruner
from nbtune.store.attrs import ATTR, continuations, finished_count

SETUP = """\
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier

X, y = load_digits(return_X_y=True)
X = X / 16.0
"""

# Each epoch appends "alpha,eta0,epoch" to a file: which epochs of which configuration ran.
CELL = """\
alpha = 1e-4  # tune: loguniform(1e-6, 1e-1)
eta0 = 0.01   # tune: loguniform(1e-4, 1.0)
clf = SGDClassifier(loss="log_loss", alpha=alpha, learning_rate="constant", eta0=eta0, random_state=0)  # tune: state
for epoch in range(9):  # tune: epochs
    clf.partial_fit(X[:1200], y[:1200], classes=np.arange(10))
    with open("epochs.log", "a") as f:
        f.write(f"{alpha!r},{eta0!r},{epoch}\\n")
    acc = clf.score(X[1200:], y[1200:])
fits = clf.t_  # SGD's own count of samples seen + 1: the epochs this model was trained for
"""


def run(ip, line, cell=CELL):
    return ip.run_cell_magic("tune", line, cell)


@pytest.fixture
def data(ip):
    ip.run_cell(SETUP)
    return ip


def _epochs_run() -> collections.Counter[tuple[str, str, int]]:
    lines = Path("epochs.log").read_text().split()
    return collections.Counter((a, e, int(k)) for a, e, k in (line.split(",") for line in lines))


def _check_search(res, n_trials: int, R: int = 9) -> None:
    """The invariants of pause-and-promote, on the study a search left."""
    kind = "asha" if res.scheduler.startswith("ASHA") else "hyperband"  # the rungs it ran with
    trials = res.study.trials
    promoted = continuations(trials)
    assert finished_count(trials) == n_trials  # continuations do not count as new configurations
    # No epoch of a configuration ran twice: a continuation starts after the epoch it was paused at.
    ran = _epochs_run()
    assert ran and max(ran.values()) == 1
    # A complete trial's model was trained for R epochs in all, across its pauses: its state was loaded.
    for t in trials:
        if t.state.name == "COMPLETE":
            assert t.user_attrs[ATTR.RECORD]["fits"] == R * 1200 + 1
            assert sorted(t.intermediate_values) == list(range(1, R + 1))  # the whole curve, once
    for t in trials:
        p = t.user_attrs.get(ATTR.PROMOTED)
        if p:
            paused = trials[p["from"]]
            assert paused.params == t.params
            assert (
                paused.user_attrs[ATTR.DECISION]["paused"] and paused.user_attrs[ATTR.DECISION]["epoch"] == p["epoch"]
            )
            # the continuation replays the paused trial's curve, then goes on
            assert all(t.intermediate_values[s] == v for s, v in paused.intermediate_values.items())
            assert p["rank"] <= p["n_keep"]  # promoted because it ranked in the top 1/eta then
    for t in trials:
        d = t.user_attrs.get(ATTR.DECISION)
        if d:
            assert d["paused"] and d["rank"] > d["n_keep"] >= 0 and d["n_keep"] == d["n_compared"] // 3
    # At the end no paused trial is left that ranks in the top 1/eta of its rung.
    spec = SchedulerSpec(kind=kind, R=R, metric="acc", direction="maximize", pause=True)
    pruner = make_pruner(spec)
    assert pruner.promotion(res.study, lambda t: True) is None
    # Retention: only the best 3 complete trials keep their files (paused ones were deleted at the end).
    files = list(Path(".nbtune/artifacts").iterdir())
    assert len(files) == min(3, sum(t.state.name == "COMPLETE" for t in trials))
    assert set(promoted) == {t.user_attrs[ATTR.PROMOTED]["from"] for t in trials if ATTR.PROMOTED in t.user_attrs}


def test_paused_trials_are_promoted_and_continue_from_their_checkpoint(data):
    res = run(data, "--maximize acc --trials 24 --seed 0 --record fits -o res")
    trials = res.study.trials
    assert "pause-and-promote" in res.scheduler
    _check_search(res, 24)
    promoted = continuations(trials)
    assert promoted, "some paused trial was promoted"
    # The first trial to reach a rung has nobody to beat: it is paused, not let through.
    first = next(t for t in trials if ATTR.DECISION in t.user_attrs)
    assert first.user_attrs[ATTR.DECISION]["n_keep"] == 0
    # Fewer epochs than stop-only successive halving spends on the same configurations' full runs
    full = sum(
        len(t.intermediate_values) - t.user_attrs.get(ATTR.PROMOTED, {}).get("epoch", 0)
        for t in trials
        if t.state.name == "COMPLETE"
    )
    assert full < sum(_epochs_run().values())
    # What the user reads: the counts do not count a configuration twice, and say what happened.
    words = res.count_words()
    assert f"{len(promoted)} paused and continued" in words
    text = str(res)
    assert "20 complete" not in text and f"{res.counts()['pruned']} stopped early" in text
    # the summary's list of decisions holds the continued ones too, and its count says so (it added
    # up to 25 where the head said 23; found trying nbtune as a new user)
    head = re.search(r"<details><summary>([^<]*stopped early[^<]*)</summary>", res.html())[1]
    assert head.endswith(f", {len(promoted)} paused and continued"), head
    assert len(res.decisions()) == res.counts()["pruned"] + len(promoted)
    frame = res.trials_dataframe()
    cont = frame[frame["continues"].notna()]
    assert len(cont) == len(promoted)
    assert set(frame.index[frame["continued_as"].notna()]) == set(promoted)
    # The best model comes back: trained for all 9 epochs.
    assert res.best_state()["clf"].t_ == 9 * 1200 + 1


def test_pause_and_promote_in_worker_processes(data):
    res = run(data, "--maximize acc --trials 16 --seed 1 --jobs 2 --scheduler asha --record fits -o res")
    _check_search(res, 16)


def test_stop_only_stops_for_good(data):
    res = run(data, "--maximize acc --trials 12 --seed 0 --stop-only --record fits -o res")
    assert "pause" not in res.scheduler
    trials = res.study.trials
    assert len(trials) == 12 and not continuations(trials)
    assert not any(t.user_attrs.get(ATTR.DECISION, {}).get("paused") for t in trials)
    # the old behaviour: the first arrivals at a rung go on unopposed, so more full-length trials
    assert sum(t.state.name == "COMPLETE" for t in trials) >= 2


def test_without_state_a_promoted_trial_continues_from_the_workers_memory(data):
    """A cell that declares no state has no checkpoint, but the worker that paused a trial still has
    its variables (the model) in memory: a promotion it makes continues from them, and no epoch of a
    configuration runs twice."""
    res = run(data, "--maximize acc --trials 24 --seed 0 --record fits -o res", CELL.replace("  # tune: state", ""))
    trials = res.study.trials
    assert finished_count(trials) == 24
    promoted = [t for t in trials if ATTR.PROMOTED in t.user_attrs]
    assert promoted, "some paused trial was promoted"
    from_memory = [t for t in promoted if "memory" in t.user_attrs[ATTR.RESUME]]
    assert from_memory, "the inline worker kept the paused trials it promoted"
    ran = _epochs_run()
    for t in from_memory:
        paused = trials[t.user_attrs[ATTR.PROMOTED]["from"]]
        assert t.user_attrs[ATTR.RESUME]["memory"] == paused.number and "retrain" not in t.user_attrs[ATTR.RESUME]
        assert ran[(repr(t.params["alpha"]), repr(t.params["eta0"]), 0)] == 1  # not trained again
        assert min(t.intermediate_values) == 1 and max(t.intermediate_values) > max(paused.intermediate_values)
        if t.state.name == "COMPLETE":  # the very model that paused, trained on: 9 epochs in all
            assert t.user_attrs[ATTR.RECORD]["fits"] == 9 * 1200 + 1
    for (alpha, eta0, epoch), n in ran.items():
        retrained = any(repr(t.params["alpha"]) == alpha and "retrain" in t.user_attrs[ATTR.RESUME] for t in promoted)
        assert n == 1 or retrained, f"epoch {epoch} of ({alpha}, {eta0}) ran {n} times"
    from nbtune.run.checkpoints import paused_in_memory

    assert len(paused_in_memory) == 0  # forgotten when the search ended


# Each epoch draws from numpy's shared generator, seeded before the loop, as PyTorch's dropout
# draws from the generator torch.manual_seed seeds: a straight run of rate r reports r * (the sum
# of the first k draws) at epoch k.
DRAWS_CELL = """\
seed = 0  # tune: seed
rate = 0.5  # tune: uniform(0.01, 1.0)
np.random.seed(seed)
w = 0.0{mark}
for epoch in range(9):  # tune: epochs
    w += rate * np.random.rand()
    acc = w
"""


@pytest.mark.parametrize("mark,how", [("", "memory"), ("  # tune: state", "artifact")])
def test_a_trial_that_goes_on_draws_the_random_numbers_a_straight_run_draws(data, mark, how, monkeypatch):
    """A promoted trial continues with the shared generators' states it paused with, restored after
    its code before the loop ran again (which seeds them afresh): its curve is the one the same
    configuration gives when it runs straight through, from the worker's memory or a checkpoint."""
    import numpy as np

    if how == "artifact":  # (else the inline worker goes on from its memory)
        monkeypatch.setenv("NBTUNE_KEEP_PAUSED", "0")

    res = run(data, "--maximize acc --trials 24 --seed 2 -o res", DRAWS_CELL.format(mark=mark))
    went_on = [t for t in res.study.trials if how in (t.user_attrs.get(ATTR.RESUME) or {})]
    assert went_on, f"some paused trial went on from its {how}"
    sums = np.cumsum(np.random.RandomState(0).rand(9))
    for t in res.study.trials:
        for k, v in t.intermediate_values.items():
            assert v == pytest.approx(t.params["rate"] * sums[k - 1]), (t.number, k)
    assert all(max(t.intermediate_values) > t.user_attrs[ATTR.RESUME]["step"] for t in went_on)
    if mark:  # what the user gets back is the variables, not the generators
        assert set(res.best_state()) == {"w"}


# A tuned value the loop changes as it goes (an epsilon that decays), and a generator the cell
# makes itself before the loop, not marked as state: a straight run of rate r reports, at epoch k,
# the sum of r * 0.5**i * draw_i over the first k draws of default_rng(0).
CHANGED_CELL = """\
rate = 0.5  # tune: uniform(0.1, 1.0)
g = np.random.default_rng(0)
w = [0.0]  # tune: state
for epoch in range(9):  # tune: epochs
    w = [w[0] + rate * g.random()]
    rate *= 0.5
    acc = w[0]
"""


def test_a_trial_that_goes_on_from_its_checkpoint_keeps_what_the_loop_changed(data, monkeypatch):
    """The decayed value and the generator's draws went back to the start in a continuation from a
    checkpoint: it reported values no straight run gives (a best of 2.4 where 1.3 is the most;
    found trying nbtune as a new user)."""
    monkeypatch.setenv("NBTUNE_KEEP_PAUSED", "0")  # from the checkpoint, not the inline worker's memory
    import numpy as np

    res = run(data, "--maximize acc --trials 24 --seed 2 -o res", CHANGED_CELL)
    went_on = [t for t in res.study.trials if "artifact" in (t.user_attrs.get(ATTR.RESUME) or {})]
    assert went_on, "some paused trial went on from its checkpoint"
    draws = np.random.default_rng(0).random(9)
    for t in res.study.trials:
        straight = np.cumsum(t.params["rate"] * 0.5 ** np.arange(9) * draws)
        for k, v in t.intermediate_values.items():
            assert v == pytest.approx(straight[k - 1]), (t.number, k)
    assert set(res.best_state()) == {"w"}  # what the user gets back is the state they marked


def test_a_bad_keep_paused_setting_is_one_clear_line(data, monkeypatch):
    monkeypatch.setenv("NBTUNE_KEEP_PAUSED", "many")
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="NBTUNE_KEEP_PAUSED='many' must be a whole number"):
        run(data, "--maximize acc --trials 4 --seed 0", CELL.replace("  # tune: state", ""))


def test_without_state_or_memory_a_promoted_trial_trains_again_from_the_start(data, monkeypatch):
    """With nothing kept in memory (NBTUNE_KEEP_PAUSED=0, or a promotion by another worker
    process) a promoted trial trains again from the first epoch, silently up to where it was
    paused (its curve is replayed), as scikit-learn's halving searches retrain. Successive halving
    is the same; only the cost differs."""
    monkeypatch.setenv("NBTUNE_KEEP_PAUSED", "0")
    res = run(data, "--maximize acc --trials 24 --seed 0 --record fits -o res", CELL.replace("  # tune: state", ""))
    assert res.scheduler.startswith("ASHA") and "pause-and-promote" in res.scheduler  # the default
    trials = res.study.trials
    assert finished_count(trials) == 24
    promoted = [t for t in trials if ATTR.PROMOTED in t.user_attrs]
    assert promoted, "some paused trial was promoted"
    ran = _epochs_run()
    for t in promoted:
        paused = trials[t.user_attrs[ATTR.PROMOTED]["from"]]
        assert t.user_attrs[ATTR.RESUME] == {
            "step": t.user_attrs[ATTR.PROMOTED]["epoch"],
            "retrain": True,
            "values": {str(s): v for s, v in paused.intermediate_values.items()},
        }
        assert ran[(repr(t.params["alpha"]), repr(t.params["eta0"]), 0)] >= 2  # the first epoch ran again
        assert all(t.intermediate_values[s] == v for s, v in paused.intermediate_values.items())  # reported once
    for t in trials:
        if t.state.name == "COMPLETE":
            assert t.user_attrs[ATTR.RECORD]["fits"] == 9 * 1200 + 1  # this run trained all 9 epochs itself
            assert sorted(t.intermediate_values) == list(range(1, 10))
        d = t.user_attrs.get(ATTR.DECISION)
        if d:
            assert d["paused"] and d["rank"] > d["n_keep"] >= 0
    spec = SchedulerSpec(kind="asha", R=9, metric="acc", direction="maximize", pause=True)
    assert make_pruner(spec).promotion(res.study, lambda t: True) is None  # nothing promotable is left
    assert not Path(".nbtune/artifacts").exists() or not list(Path(".nbtune/artifacts").iterdir())
    assert f"{len(promoted)} paused and continued" in res.count_words()


def test_pause_needs_a_successive_halving_scheduler():
    from nbtune.exceptions import ConfigError

    with pytest.raises(ConfigError, match="pause-and-promote needs --scheduler hyperband or asha, not median"):
        SchedulerSpec(kind="median", R=9, pause=True)


def test_the_reasons_read_well():
    d = {"epoch": 3, "value": 0.62, "paused": True, "rung": 1, "bracket": 0, "rank": 3, "n_compared": 4, "n_keep": 1}
    assert format_decision(7, d, "acc", "maximize") == (
        "trial 7 paused at epoch 3 (rung 1, bracket 0): acc 0.62 ranks 3 of 4, only the top 1 go on for now; "
        "it goes on if it climbs into them as more trials reach this rung"
    )
    assert format_decision(7, d, "acc", "maximize", continued_as=12).endswith(
        "acc 0.62 ranked 3 of 4; promoted later, continued as trial 12"
    )
    first = {**d, "rank": 1, "n_compared": 1, "n_keep": 0, "eta": 3}
    assert "only 1 trial reached this rung so far, too few for any to go on (the top 1/3 do)" in format_decision(
        7, first, "acc", "maximize"
    )
    # paused when the search ended: ranked 1 of 1 is no contradiction once it says why it did not go on
    assert format_decision(7, first, "acc", "maximize", ended=True).endswith(
        "acc 0.62 ranked 1 of 1 when it got there (too few had reached this rung for any to go on); "
        "it was paused, and not promoted before the search ended"
    )
    assert "ranked 3 of 4 when it got there (only the top 1 went on then)" in format_decision(
        7, d, "acc", "maximize", ended=True
    )


@settings(max_examples=300, deadline=None)
@given(
    curves=st.lists(
        st.dictionaries(
            st.sampled_from([1, 3, 9]),
            st.one_of(st.just(math.nan), st.sampled_from([0.1, 0.5, 0.9]), st.floats(0, 1)),
        ),
        max_size=20,
    ),
    probe=st.integers(0, 25),
    value=st.one_of(st.just(math.nan), st.sampled_from([0.1, 0.5, 0.9]), st.floats(0, 1)),
    direction=st.sampled_from(["maximize", "minimize"]),
    eta=st.integers(2, 4),
)
def test_a_trials_standing_is_its_rank_among_the_others_at_the_rung(curves, probe, value, direction, eta):
    """The standing that pause and promotion use is, by its definition, the count of the others at
    the rung that did strictly better (NaN ranks last), whatever the trial's own record says."""
    import optuna

    spec = SchedulerSpec(kind="asha", R=27, metric="acc", direction=direction, pause=True, eta=eta)
    study = optuna.create_study(direction=direction)
    for c in curves:
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, intermediate_values=c))
    trials = study.trials
    rungs = Rungs(spec, None, study)
    if probe < len(trials):
        me = trials[probe]
    else:  # a trial of no record yet
        me = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING)
        me.number = probe
    for epoch in (1, 3, 9):
        others = [
            t.intermediate_values[epoch] for t in trials if t.number != me.number and epoch in t.intermediate_values
        ]
        numbers = [v for v in others if not math.isnan(v)]
        better = (
            len(numbers)
            if math.isnan(value)
            else sum((v > value) if direction == "maximize" else (v < value) for v in numbers)
        )
        ordered = sorted(numbers + ([] if math.isnan(value) else [value]), reverse=direction == "maximize")
        rank, n, n_keep, got = rungs.standing(me, epoch, value)
        assert (rank, n, n_keep) == (better + 1, len(others) + 1, (len(others) + 1) // eta)
        assert got == ordered


def test_rungs_rank_nan_last_and_ignore_superseded(tmp_path):
    import optuna

    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 's.db'}")
    spec = SchedulerSpec(kind="asha", R=9, metric="acc", direction="maximize", pause=True)

    def add(values: dict[int, float], attrs: dict | None = None, state=optuna.trial.TrialState.PRUNED):
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=None if state != optuna.trial.TrialState.COMPLETE else values[max(values)],
                intermediate_values=values,
                user_attrs=attrs or {},
                params={"x": 0.5},
                distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
            )
        )

    paused = {ATTR.DECISION: {"paused": True, "epoch": 1}}
    add({1: 0.5}, paused)  # 0
    add({1: 0.9}, paused)  # 1: promoted already (trial 3 continues it)
    add({1: 0.1}, paused)  # 2
    add({1: 0.9, 2: 0.91}, {ATTR.PROMOTED: {"from": 1, "root": 1, "epoch": 1}}, optuna.trial.TrialState.RUNNING)
    add({1: math.nan}, paused)  # 4
    rungs = Rungs(spec, None, study)
    assert [t.number for t in rungs.trials] == [0, 2, 3, 4]  # trial 1 is represented by trial 3
    rank, n, n_keep, _ = rungs.standing(study.trials[4], 1, math.nan)
    assert (rank, n, n_keep) == (4, 4, 1)
    # trial 0 ranks 2nd of 4: only the top 1 go on; with two more worse trials it is promoted
    assert rungs.promotion(lambda t: True) is None
    add({1: 0.2}, paused)
    add({1: 0.3}, paused)
    found = Rungs(spec, None, study).promotion(lambda t: True)
    assert found is not None and found.trial.number == 0 and (found.rank, found.n_compared, found.n_keep) == (2, 6, 2)
    assert Rungs(spec, None, study).promotion(lambda t: t.number != 0) is None  # its checkpoint is gone


def test_when_no_more_trials_come_the_best_of_a_small_rung_goes_on(tmp_path):
    """Successive halving keeps floor(n/eta) but at least one per rung: at the end of a search the
    best paused trial of a rung that fewer than eta trials reached is promoted, once."""
    import optuna

    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 's.db'}")
    spec = SchedulerSpec(kind="asha", R=9, metric="acc", direction="maximize", pause=True)
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for v in (0.4, 0.6):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.PRUNED,
                intermediate_values={1: v},
                user_attrs={ATTR.DECISION: {"paused": True, "epoch": 1}},
                params={"x": v},
                distributions=dist,
            )
        )
    rungs = Rungs(spec, None, study)
    assert rungs.promotion(lambda t: True) is None  # 2 < eta reached epoch 1: none goes on yet
    found = rungs.promotion(lambda t: True, final=True)
    assert found is not None and found.trial.number == 1 and found.n_keep == 1
    # once one went on from that rung, the end rule promotes no other
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE,
            value=0.9,
            intermediate_values={1: 0.6, 2: 0.8, 9: 0.9},
            user_attrs={ATTR.PROMOTED: {"from": 1, "root": 1, "epoch": 1}},
            params={"x": 0.6},
            distributions=dist,
        )
    )
    assert Rungs(spec, None, study).promotion(lambda t: True, final=True) is None


def test_after_the_search_the_reasons_say_which_paused_trials_stay_stopped(data):
    res = run(data, "--maximize acc --trials 16 --seed 0 -o res")
    trials = res.study.trials
    promoted = continuations(trials)
    ended = res.study.user_attrs[ATTR.PAUSES_ENDED]
    left = [t for t in trials if t.user_attrs.get(ATTR.DECISION, {}).get("paused") and t.number not in promoted]
    assert left and all(t.number <= ended for t in left)
    frame = res.trials_dataframe()
    for t in left:
        assert "not promoted before the search ended" in frame.loc[t.number, "stopped_reason"]
        assert not frame.loc[t.number, "paused"]
    # a paused trial that was continued is no longer paused: its continuation is (found trying
    # nbtune as an Optuna user: df[df.paused] mixed both)
    assert promoted and all(
        not frame.loc[n, "paused"] and frame.loc[n, "continued_as"] == c for n, c in promoted.items()
    )
    assert not any("for now" in d for d in res.decisions())
    # the summary's example of a stopped trial is one that was stopped, not one promoted later
    example = next(line for line in str(res).splitlines() if "stopped early, e.g." in line)
    assert "promoted later" not in example and "not promoted before the search ended" in example


def test_changing_the_scheduler_starts_a_new_version(data):
    first = run(data, "--maximize acc --trials 6 --seed 0 -o res")
    stop_only = run(data, "--maximize acc --trials 6 --seed 0 --stop-only -o res")
    assert stop_only.study.study_name == first.study.study_name + ":v2"
    assert any("schedule asha with pause-and-promote -> trials that never pause" in m for m in stop_only.messages)
    pbt = run(data, "--maximize acc --scheduler pbt --population 4 --interval 3 -o res", CELL.replace(
        "    clf.partial_fit", "    clf.eta0 = eta0\n    clf.partial_fit"))  # fmt: skip
    assert pbt.study.study_name.endswith(":v3") and pbt.n_finished == 4
    # the code changed too (a line added for PBT): the message says both
    assert any("schedule " in m and "the cell's code changed" in m for m in pbt.messages), pbt.messages
    again = run(data, "--maximize acc --trials 6 --seed 0 -o res")  # the first schedule again: its study
    assert again.study.study_name == first.study.study_name


def test_the_baseline_does_not_take_the_place_of_the_best_of_a_small_rung(tmp_path):
    """The baseline always runs to the end; at the end of a search it does not count as the trial
    that went on from a rung, so the best paused trial there is still promoted."""
    import optuna

    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 's.db'}")
    spec = SchedulerSpec(kind="asha", R=9, metric="acc", direction="maximize", pause=True)
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, value=0.5, intermediate_values={1: 0.3, 3: 0.4, 9: 0.5},
            user_attrs={ATTR.BASELINE: True}, params={"x": 0.5}, distributions=dist,
        )
    )  # fmt: skip
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, intermediate_values={1: 0.6},
            user_attrs={ATTR.DECISION: {"paused": True, "epoch": 1}}, params={"x": 0.1}, distributions=dist,
        )
    )  # fmt: skip
    found = Rungs(spec, None, study).promotion(lambda t: True, final=True)
    assert found is not None and found.trial.number == 1


def test_a_baseline_that_ranks_first_does_not_keep_the_searched_configurations_from_the_end(tmp_path):
    """Seen on a 20-trial search of gradient boosting: 4 trials reached epoch 9 and the baseline
    ranked first there, so it took the only place; the search ended with the baseline as its only
    full-length trial, none of the 19 configurations it searched trained to the end. At the end
    of a search the best paused trial of such a rung goes on (the second best stays paused)."""
    import optuna

    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{tmp_path / 's.db'}")
    spec = SchedulerSpec(kind="asha", R=27, metric="acc", direction="maximize", pause=True)
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}

    def add(values, attrs, state=optuna.trial.TrialState.PRUNED, value=None):
        x = len(study.trials) / 10
        study.add_trial(optuna.trial.create_trial(
            state=state, value=value, intermediate_values=values, user_attrs=attrs, params={"x": x}, distributions=dist
        ))  # fmt: skip

    add({1: 0.63, 3: 0.68, 9: 0.70, 27: 0.68}, {ATTR.BASELINE: True}, optuna.trial.TrialState.COMPLETE, 0.68)
    for v in (0.67, 0.69, 0.68):  # trials 1-3, paused at epoch 9: the baseline (0.70) ranks first of 4
        add({1: 0.66, 3: 0.68, 9: v}, {ATTR.DECISION: {"paused": True, "epoch": 9}})
    rungs = Rungs(spec, None, study)
    assert rungs.standing(study.trials[2], 9, 0.69)[:3] == (2, 4, 1)
    assert rungs.promotion(lambda t: True) is None  # while trials may still arrive, ASHA waits
    found = rungs.promotion(lambda t: True, final=True)
    assert found is not None and found.trial.number == 2 and found.epoch == 9
    # once it went on, no other trial of that rung is promoted at the end
    add({1: 0.66, 3: 0.68, 9: 0.69, 27: 0.71}, {ATTR.PROMOTED: {"from": 2, "root": 2, "epoch": 9}},
        optuna.trial.TrialState.COMPLETE, 0.71)  # fmt: skip
    assert Rungs(spec, None, study).promotion(lambda t: True, final=True) is None


def test_the_memory_of_paused_trials_is_bounded():
    """What a worker keeps of paused trials: the most promising few, nothing on an accelerator,
    nothing past the byte limit, the notebook's own objects never copied in."""
    import numpy as np
    import torch

    from nbtune.run.checkpoints import PausedInMemory

    kept = PausedInMemory(limit_bytes=10_000)
    data = np.zeros(100_000)  # the notebook's (800 kB): not part of a trial's variables
    base = {"data": data}
    for n, standing in enumerate([0.5, 0.2, 0.9, 0.4]):
        loader = torch.utils.data.DataLoader(torch.arange(4))
        ns = {"data": data, "w": np.full(10, n), "__builtins__": {}, "step": lambda: None, "np": np, "loader": loader}
        assert kept.keep("s", n, 3, ns, base, standing, limit=3) is True
    assert len(kept) == 3 and not kept.has("s", 2)  # the least promising (ranked 0.9 of its rung) went
    assert kept.keep("s", 9, 3, {"w": np.ones(10)}, base, 0.95, limit=3) is False  # worse than all kept
    assert kept.claim("s", 1) and not kept.has("s", 1)
    step, variables, generators = kept.take("s", 1)
    assert set(generators) >= {"random", "numpy", "torch"}  # the shared generators when it paused
    # functions, modules and data loaders are the continuation's own (a function's globals are its run's)
    assert step == 3 and set(variables) == {"w"} and variables["w"][0] == 1
    assert kept.take("s", 1) is None  # once
    assert kept.keep("s", 5, 3, {"w": np.ones(2_000)}, base, 0.1, limit=3) is False  # 16 kB > the limit
    meta = torch.nn.Linear(4, 4, device="meta")  # not on the CPU: a GPU's memory is the next trials'
    assert kept.keep("s", 6, 3, {"model": meta}, base, 0.1, limit=3) is False
    assert kept.keep("other", 1, 3, {"w": np.ones(10)}, base, 0.1, limit=3) is True  # counted per search
    assert kept.keep("s", 7, 3, {"w": np.ones(10)}, base, 0.1, limit=0) is False  # NBTUNE_KEEP_PAUSED=0
    kept.enter("s")
    kept.enter("s")
    kept.leave("s")
    assert kept.has("s", 0)  # another worker of this process still runs the search
    kept.leave("s")
    assert not kept.has("s", 0) and kept.has("other", 1)


TORCH_CELL = """\
lr = 0.05  # tune: loguniform(0.001, 0.5)
torch.manual_seed(0)
model = nn.Linear(4, 2)  # tune: state
opt = torch.optim.SGD(model.parameters(), lr=lr)  # built from the model before the loop, not state
for epoch in range(9):  # tune: epochs
    opt.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    opt.step()
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model(X), y).item()
"""


def _straight_run(lr: float, X, y, batches: bool) -> list[float]:
    """The curve of TORCH_CELL (``batches``: LOADER_CELL) run straight through, with ``lr``."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True, generator=g) if batches else [(X, y)]
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    out = []
    for _ in range(9):
        for xb, yb in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        with torch.no_grad():
            out.append(nn.functional.cross_entropy(model(X), y).item())
    return out


LOADER_CELL = """\
lr = 0.05  # tune: loguniform(0.001, 0.5)
torch.manual_seed(0)
g = torch.Generator().manual_seed(0)  # tune: state
loader = DataLoader(TensorDataset(X, y), batch_size=16, shuffle=True, generator=g)
model = nn.Linear(4, 2)  # tune: state
opt = torch.optim.SGD(model.parameters(), lr=lr)
for epoch in range(9):  # tune: epochs
    for xb, yb in loader:
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model(X), y).item()
"""


# the loader's generator made in its call (as the PyTorch tutorial wrote it): the loader holds the only
# reference, so a trial that went on made it again and shuffled from the seed again (found trying nbtune
# as a new user; res.best_state() was then no model of a straight run)
INLINE_CELL = LOADER_CELL.replace("g = torch.Generator().manual_seed(0)  # tune: state\n", "").replace(
    "generator=g)", "generator=torch.Generator().manual_seed(0))"
)


@pytest.mark.parametrize("batches, memory", [(False, False), (True, False), ("inline", False), ("inline", True)])
def test_a_torch_trial_that_goes_on_from_its_checkpoint_is_a_straight_run(data, batches, memory, monkeypatch):
    """Only the model is state (and, with a DataLoader, its generator), and what the cell builds
    from them before the loop holds the fresh objects: the optimizer the fresh model's parameters,
    the loader the fresh generator. A promoted (or resumed) trial loads the saved state into those
    objects, so the optimizer trains the resumed weights and the loader shuffles on. Replacing the
    variables instead left the optimizer stepping parameters nothing read (a flat curve, with the
    README's own example) and the loader replaying epoch 1's batch order (found trying nbtune as a
    new user). Every trial's curve is the one a straight run of its configuration gives."""
    if not memory:
        monkeypatch.setenv("NBTUNE_KEEP_PAUSED", "0")  # from the checkpoint, not the inline worker's memory
    pytest.importorskip("torch")
    data.run_cell(
        "import torch\nfrom torch import nn\nfrom torch.utils.data import DataLoader, TensorDataset\n"
        "gen = torch.Generator().manual_seed(1)\nX = torch.randn(64, 4, generator=gen)\ny = (X[:, 0] > 0).long()\n"
    )
    cell = {False: TORCH_CELL, True: LOADER_CELL, "inline": INLINE_CELL}[batches]
    res = run(data, "--minimize loss --trials 16 --seed 0 -o res", cell)
    if memory:
        went_on = [t for t in res.study.trials if "memory" in (t.user_attrs.get(ATTR.RESUME) or {})]
    else:
        went_on = [t for t in res.study.trials if "artifact" in (t.user_attrs.get(ATTR.RESUME) or {})]
    assert went_on, "some paused trial went on from its checkpoint (or the worker's memory)"
    for t in res.study.trials:
        expected = _straight_run(t.params["lr"], data.user_ns["X"], data.user_ns["y"], bool(batches))
        for k, v in t.intermediate_values.items():
            assert v == pytest.approx(expected[k - 1], rel=1e-5), (t.number, k)


CARRIED_CELL = """\
lr = 0.1  # tune: loguniform(0.01, 1.0)
model = {"w": 0.0}  # tune: state
step = 0
best, bad = -1e9, 0
history = []
ema = np.zeros(3)  # an array the loop assigns: kept (data it only reads is not)
data = np.ones(3)
for epoch in range(9):  # tune: epochs
    step += 1
    model["w"] += lr * min(1.0, step / 5)  # a warm-up over the first 5 epochs
    history.append(model["w"])
    ema = 0.5 * ema + 0.5 * data * model["w"]
    score = -((model["w"] - 2) ** 2) + 0.01 * len(history) + 0.001 * float(ema[0])
    if score > best:
        best, bad = score, 0
    else:
        bad += 1
    acc = best - 0.001 * bad
"""


def _carried_straight_run(lr: float) -> list[float]:
    w, best, bad, out, ema = 0.0, -1e9, 0, [], 0.0
    for step in range(1, 10):
        w += lr * min(1.0, step / 5)
        ema = 0.5 * ema + 0.5 * w
        score = -((w - 2) ** 2) + 0.01 * step + 0.001 * ema
        best, bad = (score, 0) if score > best else (best, bad + 1)
        out.append(best - 0.001 * bad)
    return out


def test_what_an_epoch_hands_to_the_next_goes_on_with_a_trial_from_its_checkpoint(ip, monkeypatch):
    """A warm-up's step count, the best score so far, a patience counter and a history list, set
    before the loop: a trial that went on from its checkpoint started them again (the warm-up
    restarted, the patience counter forgot), so it was not the run its configuration gives (found
    trying nbtune as a new user)."""
    monkeypatch.setenv("NBTUNE_KEEP_PAUSED", "0")  # from the checkpoint, not the inline worker's memory
    ip.run_cell("import numpy as np")
    res = run(ip, "--maximize acc --trials 16 --seed 0 -o res", CARRIED_CELL)
    went_on = [t for t in res.study.trials if "artifact" in (t.user_attrs.get(ATTR.RESUME) or {})]
    assert set(went_on[0].user_attrs[ATTR.RESUME]["names"]) == {"model", "step", "best", "bad", "history", "ema"}
    assert went_on, "some paused trial went on from its checkpoint"
    for t in res.study.trials:
        expected = _carried_straight_run(t.params["lr"])
        for k, v in t.intermediate_values.items():
            assert v == pytest.approx(expected[k - 1], rel=1e-9), (t.number, k)
    # the final checkpoint (best_state, --apply) keeps the state alone
    assert set(res.best_state()) == {"model"}


# An optimizer with momentum and a step schedule, an object built before the loop on the model,
# which alone is state: as a PyTorch cell marks 'model = Net()  # tune: state' and builds AdamW and
# StepLR on it (objects an epoch's checkpoint does not keep: the state's to mark).
MOMENTUM_SETUP = """\
class Momentum:
    def __init__(self, model, lr):
        self.model, self.v, self.lr, self.steps = model, 0.0, lr, 0

    def step(self):
        self.v = 0.9 * self.v + self.lr
        self.model["w"] += self.v
        self.steps += 1
        if self.steps % 3 == 0:
            self.lr *= 0.5
"""
MOMENTUM_CELL = """\
lr = 0.1  # tune: loguniform(0.01, 1.0)
model = {"w": 0.0}  # tune: state
opt = Momentum(model, lr)
for epoch in range(9):  # tune: epochs
    opt.step()
    loss = (model["w"] - 2.0) ** 2
"""


def _momentum_straight_run(lr: float) -> list[float]:
    w, v, out = 0.0, 0.0, []
    for step in range(1, 10):
        v = 0.9 * v + lr
        w += v
        if step % 3 == 0:
            lr *= 0.5
        out.append((w - 2.0) ** 2)
    return out


def test_a_promoted_trial_whose_optimizer_is_not_state_goes_on_from_the_workers_memory(ip, monkeypatch):
    """With the model alone marked as state, a promoted trial went on from its checkpoint with the
    optimizer and its schedule built afresh: momentum lost, the schedule restarted, so its value was
    not what its configuration gives (0.8973 where a straight run gives 0.8907: found trying nbtune
    as a new user). The worker that paused it keeps all it bound in memory too and goes on from
    there; the checkpoint is for another process (or a resume)."""
    ip.run_cell(MOMENTUM_SETUP)
    res = run(ip, "--minimize loss --trials 16 --seed 0 -o res", MOMENTUM_CELL)
    went_on = [t for t in res.study.trials if ATTR.PROMOTED in t.user_attrs]
    assert went_on and all({"memory", "artifact"} <= set(t.user_attrs[ATTR.RESUME]) for t in went_on)
    for t in res.study.trials:
        expected = _momentum_straight_run(t.params["lr"])
        for k, v in t.intermediate_values.items():
            assert v == pytest.approx(expected[k - 1], rel=1e-9), (t.number, k)
    assert set(res.best_state()) == {"model"}
    # from the checkpoint alone (another process, NBTUNE_KEEP_PAUSED=0) the optimizer starts afresh
    monkeypatch.setenv("NBTUNE_KEEP_PAUSED", "0")
    again = run(ip, "--minimize loss --trials 16 --seed 0 --fresh -o res", MOMENTUM_CELL)
    afresh = [t for t in again.study.trials if ATTR.PROMOTED in t.user_attrs and t.state.name == "COMPLETE"]
    assert afresh and all("memory" not in t.user_attrs[ATTR.RESUME] for t in afresh)
    assert any(t.value != pytest.approx(_momentum_straight_run(t.params["lr"])[-1]) for t in afresh)


def test_a_cut_continuation_queued_again_runs_when_the_budget_is_used(ip):
    """A promoted trial cut by a dead kernel is queued again; its configuration counts toward -n
    already (its paused trial does), so once the budget was used it was left waiting for good: the
    re-run said 're-running ... first' and then 'nothing to run' (found trying nbtune as a new user)."""
    import optuna

    import nbtune

    cell = MOMENTUM_CELL
    ip.run_cell(MOMENTUM_SETUP)
    res = run(ip, "--minimize loss --trials 8 --seed 0 --name cut -o res", cell)
    paused = next(t for t in res.study.trials if (t.user_attrs.get(ATTR.DECISION) or {}).get("paused"))
    step = paused.user_attrs[ATTR.DECISION]["epoch"]
    # what requeue_interrupted queues for a continuation of it that a dead kernel cut
    res.study.enqueue_trial(
        paused.params,
        user_attrs={
            ATTR.RERUN_OF: 99,
            ATTR.PROMOTED: {"from": paused.number, "root": paused.number, "epoch": step, "rank": 1,
                            "n_compared": 3, "n_keep": 1, "value": paused.intermediate_values[step], "at_end": True},
            ATTR.RESUME: {"step": step, "retrain": True,
                          "values": {str(s): v for s, v in paused.intermediate_values.items() if s <= step}},
        },
    )  # fmt: skip
    again = run(ip, "--minimize loss --trials 8 --seed 0 --name cut -o res", cell)
    assert not any("nothing to run" in m for m in again.messages), again.messages
    trials = nbtune.load_study("cut").trials
    assert not [t.number for t in trials if t.state == optuna.trial.TrialState.WAITING]
    went_on = [t for t in trials if t.user_attrs.get(ATTR.RERUN_OF) == 99]
    assert len(went_on) == 1 and went_on[0].state.name == "COMPLETE"
    assert sorted(went_on[0].intermediate_values) == list(range(1, 10))  # its curve, replayed then trained on
    assert again.n_finished == res.n_finished  # (no new configuration)
