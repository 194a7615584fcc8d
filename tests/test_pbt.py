"""Population-based training: members pause every K epochs; the worst copy the state and the
(perturbed) hyperparameters of the best. Real IPython shell, real store files, real worker
processes; numpy, scikit-learn and PyTorch state."""

from __future__ import annotations

import math
import random
from pathlib import Path

import optuna
import pytest
from IPython.core.error import UsageError

from nbtune.run.pbt import perturb
from nbtune.store.attrs import ATTR, continuations, finished_count

# Jaderberg et al. 2017, figure 2: two parameters theta, a surrogate objective that a member's
# hyperparameter h lets it improve along one coordinate only; Q is the real objective.
TOY = """\
import numpy as np
h = "theta0"  # tune: choice("theta0", "theta1")
theta = np.array([0.9, 0.9])  # tune: state
for step in range(40):  # tune: epochs
    w = np.array([1.0, 0.0]) if h == "theta0" else np.array([0.0, 1.0])
    theta = theta + 0.05 * (-2 * w * theta)  # gradient ascent on 1.2 - w . theta**2
    Q = 1.2 - float((theta ** 2).sum())
"""

# Every member keeps a history in its state: which hyperparameters trained each epoch.
NUMERIC = """\
lr = 0.01      # tune: loguniform(1e-3, 1e-1)
width = 8      # tune: int(2, 16, step=2)
batch = 32     # tune: choice(16, 32, 64, 128)
mom = 0.5      # tune: uniform(0.0, 0.9, step=0.1)
state = {"history": [], "x": 0.0}  # tune: state
for epoch in range(12):  # tune: epochs
    state["history"].append((epoch, lr, width, batch, mom))
    state["x"] += lr * (1 + mom) - abs(batch - 64) / 1000 + width / 100
    score = state["x"]
"""


def run(ip, line, cell):
    return ip.run_cell_magic("tune", line, cell)


def _check_population(res, population: int, R: int) -> None:
    trials = res.study.trials
    by_number = {t.number: t for t in trials}
    assert finished_count(trials) == population  # members, not intervals
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == population and all(t.last_step == R for t in complete)
    for t in trials:
        note, promoted = t.user_attrs.get(ATTR.PBT), t.user_attrs.get(ATTR.PROMOTED)
        if promoted is None:
            continue
        assert note is not None and note["member"] == promoted["root"] and note["epoch"] == promoted["epoch"]
        own = by_number[promoted["from"]]
        assert own.user_attrs[ATTR.DECISION]["paused"] and own.user_attrs[ATTR.DECISION]["epoch"] == note["epoch"]
        source = by_number[note["donor_trial"]] if "donor" in note else own
        assert source.user_attrs[ATTR.DECISION]["epoch"] == note["epoch"]  # a donor at the same epoch
        # the continuation's curve so far is the state's: its source's
        assert all(t.intermediate_values[s] == v for s, v in source.intermediate_values.items())
        if "donor" in note:
            assert note["donor_value"] >= note["value"]  # copied a better member
            unchanged = {k: v for k, v in t.params.items() if k not in note["changes"]}
            assert unchanged == {k: source.params[k] for k in unchanged}
        else:
            assert t.params == own.params  # kept its own hyperparameters
    # No dangling checkpoint: every file left belongs to a kept trial, the best 3 complete ones.
    files = {p.name for p in Path(".nbtune/artifacts").iterdir()}
    kept = {t.user_attrs[ATTR.CHECKPOINT]["artifact"] for t in complete if ATTR.CHECKPOINT in t.user_attrs}
    assert files <= kept and len(files) == 3


def test_a_population_cut_by_the_timeout_goes_on_when_the_cell_runs_again(ip):
    """Members paused at an interval when --timeout ends the run each count as one configuration:
    the population was 'done' (4 of 4) and a re-run had nothing to run, with nothing complete."""
    slow = TOY.replace(
        "for step in range(40):  # tune: epochs\n",
        "for step in range(40):  # tune: epochs\n    import time; time.sleep(0.01)\n",
    )
    cut = run(ip, "--maximize Q --scheduler pbt --population 4 --interval 4 --seed 0 --timeout 1 -o res", slow)
    assert not any(t.state.name == "COMPLETE" for t in cut.study.trials)
    with pytest.raises(ValueError, match="; re-run the cell: its paused trials go on$"):  # (not "raise --trials")
        cut.best_params  # noqa: B018
    res = run(ip, "--maximize Q --scheduler pbt --population 4 --interval 4 --seed 0 -o res", slow)
    assert res.study.study_name == cut.study.study_name
    assert any("paused when the last run stopped go on" in m for m in res.messages), res.messages
    assert sum(t.state.name == "COMPLETE" for t in res.study.trials) == 4 and res.best_value > 1.1
    again = run(ip, "--maximize Q --scheduler pbt --population 4 --interval 4 --seed 0 -o res", slow)
    assert any("nothing to run" in m for m in again.messages)  # done now
    # and what would run more: not -n, which PBT does not use (it said to raise --trials: found trying nbtune)
    assert any(
        m.endswith(
            "has run its population of 4 to the end: nothing to run; --fresh starts another population "
            "(a larger --population or --max-epochs is a new version of the study)"
        )
        for m in again.messages
    )
    assert not any("raise --trials" in m for m in again.messages), again.messages


def test_pbt_solves_the_toy_problem_of_the_paper(ip):
    res = run(ip, "--maximize Q --scheduler pbt --population 4 --interval 4 --seed 0 -o res", TOY)
    _check_population(res, 4, 40)
    # A fixed h improves one coordinate only: Q <= 1.2 - 0.81 = 0.39. PBT members take turns.
    assert res.best_value > 1.1
    lineage = res.lineage()
    assert lineage["from_epoch"].tolist() == list(range(0, 40, 4))
    assert set(lineage["h"]) == {"theta0", "theta1"}  # the schedule it found switches h
    assert lineage["copied_from"].notna().any()
    assert any("copied member" in d for d in res.decisions())
    assert "population-based training (4 members, every 4 epochs)" in res.scheduler
    assert "PBT:" in str(res) and "copied a better member" in str(res)
    # its decisions are decisions, not stops (the tab read "Stopped early (0)" above them)
    assert "PBT's exploit/explore decisions (" in res.html() and "stopped early" not in res.html()
    from nbtune.view.widgets import show

    view = show(res)
    assert view.tabs.get_title(1).startswith("PBT decisions (") and "PBT's exploit/explore" in view.decisions.value
    # the dashboard's view of it
    fig = res.plot("lineage")
    assert len(fig.axes) == 2 and fig.axes[0].get_title().startswith(f"lineage of trial {res.best_trial.number}")


def test_re_validating_a_pbt_study_says_what_it_measures(ip):
    """res.revalidate() on a PBT study re-trained each member's final hyperparameters, fixed, from scratch,
    without a word: not the schedule PBT found (found trying nbtune as a new RL user)."""
    seeded = TOY.replace("import numpy as np\n", "import numpy as np\nseed = 0  # tune: seed\n").replace(
        "theta = np.array([0.9, 0.9])", "theta = np.array([0.9, 0.9]) + 0 * seed"
    )
    res = run(ip, "--maximize Q --scheduler pbt --population 4 --interval 8 --seed 0 -o res", seeded)
    res.revalidate(top=1, seeds=2, view=None)
    assert any(m.startswith("re-validating a PBT study runs each member's final hyperparameters") for m in res.messages)


def test_pbt_keeps_hyperparameters_in_range_and_the_history_of_the_state(ip):
    res = run(ip, "--maximize score --scheduler pbt --population 6 --interval 3 --seed 1 -o res", NUMERIC)
    _check_population(res, 6, 12)
    for t in res.study.trials:
        p = t.params
        assert 1e-3 <= p["lr"] <= 1e-1 and p["width"] in range(2, 17, 2) and p["batch"] in (16, 32, 64, 128)
        assert 0.0 <= p["mom"] <= 0.9 and abs(p["mom"] * 10 - round(p["mom"] * 10)) < 1e-9
    # The best model's state holds every epoch once, each trained with its lineage's values.
    best = res.best_state()["state"]
    lineage = res.lineage()
    assert [e for e, *_ in best["history"]] == list(range(12))
    for epoch, lr, width, batch, mom in best["history"]:
        seg = lineage[(lineage.from_epoch <= epoch) & (epoch < lineage.to_epoch)].iloc[0]
        assert (lr, width, batch, mom) == (seg.lr, seg.width, seg.batch, seg.mom)


def test_a_member_that_explores_starts_from_its_new_value_of_a_variable_the_loop_changes(ip):
    """The loop decays a tuned value: a member that keeps its hyperparameters goes on with the decayed
    value (as a straight run), one that explores starts from the new value PBT gave it."""
    cell = (
        "lr = 0.05  # tune: loguniform(1e-3, 1e-1)\n"
        "state = {'x': 0.0}  # tune: state\n"
        "for epoch in range(12):  # tune: epochs\n"
        "    now = lr\n"
        "    state['x'] += now\n"
        "    lr *= 0.5\n"
        "    score = now\n"
    )
    res = run(ip, "--maximize score --scheduler pbt --population 4 --interval 3 --seed 3 -o res", cell)
    by_number = {t.number: t for t in res.study.trials}

    def since(t):
        """The epoch from which the member has had its value: its latest new one, else the start
        (None: it took another member's weights on the way, and with them that member's value)."""
        while ATTR.PROMOTED in t.user_attrs:
            resume = t.user_attrs[ATTR.RESUME]
            if resume.get("explored"):
                return t.user_attrs[ATTR.PROMOTED]["epoch"]
            if resume.get("copied"):
                return None
            t = by_number[t.user_attrs[ATTR.PROMOTED]["from"]]
        return 0

    kept = explored = 0
    for t in res.study.trials:
        promoted = t.user_attrs.get(ATTR.PROMOTED)
        if promoted is None:
            continue
        epoch, resume = promoted["epoch"], t.user_attrs[ATTR.RESUME]
        first = t.intermediate_values[epoch + 1]
        if resume.get("explored"):
            explored += 1
            assert first == pytest.approx(t.params["lr"]), t.number  # its new value, from the start
        elif since(t) is not None:
            kept += 1  # the decayed value goes on, as in a straight run
            assert first == pytest.approx(t.params["lr"] * 0.5 ** (epoch - since(t))), t.number
    assert kept and explored


def test_pbt_in_worker_processes(ip):
    res = run(ip, "--maximize Q --scheduler pbt --population 4 --interval 8 --jobs 2 --seed 2 -n 50 -o res", TOY)
    _check_population(res, 4, 40)
    # -n is not PBT's: said, not silently ignored; and its header is PBT's alone
    assert (
        "-n 50 is not used with --scheduler pbt: the population is the configurations (--population 4)" in res.messages
    )
    assert "pause-and-promote" not in res.scheduler
    assert len(continuations(res.study.trials)) == 4 * (40 // 8 - 1)


def test_pbt_says_which_tuned_variables_the_loop_never_reads(ip):
    cell = """\
lr = 0.1      # tune: loguniform(1e-3, 1.0)
width = 4     # tune: int(2, 8)
model = {"w": [0.0] * width}  # tune: state
for epoch in range(8):  # tune: epochs
    model["w"][0] += lr
    acc = model["w"][0]
"""
    res = run(ip, "--maximize acc --scheduler pbt --population 2 --interval 2 -o res", cell)
    note = next(m for m in res.messages if m.startswith("PBT"))
    assert note == (
        "PBT changes lr between epochs; width (line 3) builds only the state (model) before the epochs loop, so "
        "each member keeps its own (copied with the state when it exploits another)"
    )
    none_read = cell.replace('model["w"][0] += lr', 'model["w"][0] += 0.1')
    res = run(ip, "--maximize acc --scheduler pbt --population 2 --interval 2 --fresh -o res", none_read)
    assert any("none of the tuned variables (lr (line 2), width (line 3)) takes effect" in m for m in res.messages), (
        res.messages
    )
    # lr builds an optimizer-like variable that is not state, which the loop uses: built afresh with the
    # new value each interval, so it takes effect and explore changes it (found trying nbtune as a new user)
    rebuilt = cell.replace(
        'model = {"w": [0.0] * width}  # tune: state\n',
        'model = {"w": [0.0] * width}  # tune: state\nstep = {"size": lr}\n',
    )
    rebuilt = rebuilt.replace('model["w"][0] += lr', 'model["w"][0] += step["size"]')
    res = run(ip, "--maximize acc --scheduler pbt --population 2 --interval 2 --fresh -o res", rebuilt)
    assert next(m for m in res.messages if m.startswith("PBT")).startswith("PBT changes lr between epochs; width")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--scheduler pbt --population 4", "--scheduler pbt copies models from member to member: mark what"),
        ("--scheduler pbt --population 1", "--population must be a whole number >= 2; got 1"),
        ("--scheduler pbt --interval 0", "--interval must be a whole number of epochs >= 1; got 0"),
        # PBT's options without PBT, and --stop-only with it, would be ignored silently
        ("--population 4", "--population is for population-based training, but the scheduler is asha: add"),
        ("--interval 3 --population 4", "--population and --interval are for population-based training"),
        ("--scheduler pbt --stop-only", "--stop-only does not apply to --scheduler pbt"),
    ],
)
def test_pbt_input_errors_are_one_line_before_any_trial(ip, line, message):
    cell = "lr = 0.1  # tune: loguniform(1e-3, 1.0)\nfor e in range(8):  # tune: epochs\n    acc = lr * e\n"
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(ip, f"--maximize acc {line}", cell)
    assert not Path(".nbtune").exists() or not list(Path(".nbtune").glob("*.journal"))


def test_an_interval_as_long_as_the_loop_is_an_error(ip):
    cell = "lr = 0.1  # tune: loguniform(1e-3, 1.0)\ns = {}  # tune: state\nfor e in range(8):  # tune: epochs\n    acc = lr * e\n"
    with pytest.raises(
        UsageError, match="--interval 8 leaves no decision inside the 8 epochs of line 4; give an interval below 8"
    ):
        run(ip, "--maximize acc --scheduler pbt --interval 8", cell)


def test_the_optimizer_takes_the_new_learning_rate_after_a_donors_state(ip):
    """The known pitfall: a donor's optimizer state carries the donor's learning rate. A loop
    that sets it each epoch trains with the member's own (perturbed) value."""
    pytest.importorskip("torch")
    cell = """\
import torch
torch.manual_seed(0)
lr = 0.05   # tune: loguniform(1e-3, 0.5)
model = torch.nn.Linear(4, 1)  # tune: state
opt = torch.optim.SGD(model.parameters(), lr=lr)  # tune: state
X, y = torch.ones(32, 4), torch.zeros(32, 1)
for epoch in range(9):  # tune: epochs
    for g in opt.param_groups:
        g["lr"] = lr
    loss_t = ((model(X) - y) ** 2).mean()
    opt.zero_grad()
    loss_t.backward()
    opt.step()
    used_lr = opt.param_groups[0]["lr"]
    loss = float(loss_t.detach())
"""
    res = run(ip, "--minimize loss --scheduler pbt --population 4 --interval 3 --seed 0 --record used_lr -o res", cell)
    exploits = [t for t in res.study.trials if "donor" in t.user_attrs.get(ATTR.PBT, {})]
    assert exploits
    for t in res.study.trials:
        if ATTR.RECORD in t.user_attrs:  # complete: the optimizer ran with this trial's lr
            assert t.user_attrs[ATTR.RECORD]["used_lr"] == pytest.approx(t.params["lr"])


def test_perturb_stays_in_range_and_moves():
    dists = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
        "mom": optuna.distributions.FloatDistribution(0.0, 0.9, step=0.1),
        "n": optuna.distributions.IntDistribution(1, 5),
        "w": optuna.distributions.IntDistribution(16, 256, log=True),
        "bs": optuna.distributions.CategoricalDistribution((16, 32, 64)),
        "act": optuna.distributions.CategoricalDistribution(("relu", "tanh")),
    }
    params = {"lr": 1e-1, "mom": 0.9, "n": 1, "w": 256, "bs": 16, "act": "relu"}
    names = tuple(dists)
    moved = {k: 0 for k in names}
    for seed in range(300):
        out = perturb(params, dists, names, random.Random(seed))
        for k, d in dists.items():
            assert d._contains(d.to_internal_repr(out[k])), (k, out[k])
            moved[k] += out[k] != params[k]
        assert abs(out["mom"] * 10 - round(out["mom"] * 10)) < 1e-9  # on the step grid
        if out["lr"] != params["lr"] and out["lr"] < 0.1:
            assert math.isclose(out["lr"], 0.08) or out["lr"] != 0.08  # x0.8, or drawn anew
    assert all(v > 30 for v in moved.values()), moved  # everything moves, often
    # an integer at its bottom moves up by a step, never out of range
    ups = {perturb({"n": 1}, dists, ("n",), random.Random(s))["n"] for s in range(50)}
    assert ups <= set(range(1, 6)) and 2 in ups


def test_a_member_without_a_donor_says_why_it_kept_its_own():
    from nbtune.run.pbt import format_pbt

    note = {"member": 12, "epoch": 8, "value": 0.8, "rank": 6, "n": 6, "no_donor": True}
    assert format_pbt(note, "acc") == (
        "member 12 at epoch 8: kept its own state and hyperparameters (acc 0.8, 6 of 6); it is in the bottom "
        "quarter, but no better member's checkpoint was left to copy (a finished run deletes them)"
    )


def test_a_member_that_copied_another_is_not_the_baseline(ip):
    res = run(ip, "--maximize Q --scheduler pbt --population 4 --interval 4 --seed 0 -o res", TOY)
    defaults = {"h": "theta0"}
    for t in res.study.trials:
        if t.user_attrs.get(ATTR.BASELINE):
            assert t.params == defaults, t.number


def test_no_member_is_ranked_at_an_interval_before_every_member_paused_there():
    """With two workers a member that had reported the interval's epoch but was not paused there
    yet counted as there: the first to continue was ranked among 3 of 4 (found trying nbtune as a
    new user)."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from nbtune.run.pbt import _next_interval
    from nbtune.run.schedulers import SchedulerSpec

    study = optuna.create_study(direction="maximize")
    dist = {"h": FloatDistribution(0.0, 1.0)}
    for member in range(3):  # paused at epoch 6, each with its decision
        study.add_trial(
            create_trial(
                state=TrialState.PRUNED,
                params={"h": 0.1 * (member + 1)},
                distributions=dist,
                intermediate_values={k: 0.1 * member + k for k in range(1, 7)},
                user_attrs={ATTR.DECISION: {"paused": True, "epoch": 6}},
            )
        )
    last = study.ask({"h": FloatDistribution(0.0, 1.0)})  # the fourth: reported epoch 6, deciding now
    for k in range(1, 7):
        last.report(0.5 + k, k)
    spec = SchedulerSpec(kind="pbt", R=12, r=1, metric="Q", direction="maximize", population=4, interval=6)
    assert _next_interval(spec, study, lambda t: True) is None
    last.set_user_attr(ATTR.DECISION, {"paused": True, "epoch": 6})
    study.tell(last, state=TrialState.PRUNED)
    first = _next_interval(spec, study, lambda t: True)
    assert first is not None and first.note["n"] == 4  # now every member is ranked
