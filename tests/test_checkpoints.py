"""Checkpoints: the state of each complete trial kept in the store (Optuna artifacts), the best
model back without retraining, retention, and clear errors; real models, real store files."""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.error import UsageError

from nbtune.exceptions import ConfigError
from nbtune.store.attrs import ATTR


def run(ip, line, cell):
    return ip.run_cell_magic("tune", line, cell)


SETUP = """\
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

X, y = load_breast_cancer(return_X_y=True)
X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.3, random_state=0)
"""

CELL = """\
C = 1.0   # tune: loguniform(1e-4, 10)
model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500))  # tune: state
model.fit(X_train, y_train)
open("fits.log", "a").write("x")  # counts the fits, outside the notebook's variables
val_acc = model.score(X_val, y_val)
"""


@pytest.fixture
def data(ip):
    ip.run_cell(SETUP)
    return ip


def test_a_study_without_saved_state_says_how_to_get_it(data):
    """Marking the model in a finished study's cell and re-running only continues the study (the
    annotation is a comment): the message says to start afresh."""
    res = run(data, "--maximize val_acc --trials 2 --seed 0", CELL.replace("  # tune: state", ""))
    with pytest.raises(Exception, match=r"has no saved state; mark the model .* run the search again with --fresh"):
        res.best_state()


def test_the_best_model_comes_back_without_retraining(data):
    res = run(data, "--maximize val_acc --trials 8 --seed 0 -o res", CELL)
    state = res.best_state()
    assert set(state) == {"model"}
    X_val, y_val = data.user_ns["X_val"], data.user_ns["y_val"]
    assert state["model"].score(X_val, y_val) == res.best_value  # the very model of the best trial
    assert res.best_params["C"] == state["model"][-1].C
    # retention: only the best 3 trials keep their files; the others' were deleted
    artifacts = Path(".nbtune/artifacts")
    assert len(list(artifacts.iterdir())) == 3
    kept = sorted(res.study.trials, key=lambda t: -t.value)[:3]
    assert all(res.best_state(t.number) for t in kept)
    worst = min(res.study.trials, key=lambda t: t.value)
    with pytest.raises(Exception, match=f"trial {worst.number} has no saved state \\(only the best"):
        res.best_state(worst.number)
    assert any(m.startswith("checkpoints: the state (model) of 3 trial(s) is kept (the best 3") for m in res.messages)
    with pytest.raises(Exception, match="takes a trial number from 0 to 7; got 99"):
        res.best_state(trial=99)
    with pytest.raises(Exception, match="got -1"):
        res.best_state(trial=-1)
    # --apply loads the checkpoint: no retraining in the notebook
    n_fits = len(Path("fits.log").read_text())
    data.user_ns["val_acc"] = -1.0  # left by an earlier cell: a later cell must not read it as the model's
    res = run(data, "--maximize val_acc --trials 8 --seed 0 --apply -o res", CELL)
    assert data.user_ns["val_acc"] == res.best_value
    assert len(Path("fits.log").read_text()) == n_fits == 8  # nothing ran again
    assert data.user_ns["model"].score(X_val, y_val) == res.best_value and data.user_ns["C"] == res.best_params["C"]
    assert any("loaded model from trial" in m and "(no retraining)" in m for m in res.messages)
    # with folds, the state is the last fold's model, fitted on that fold's training rows: said (it read as the
    # best model, found trying nbtune as a new user)
    folded = CELL.replace("C = 1.0", "fold = 0  # tune: folds(3)\nC = 1.0").replace(
        "model.fit(X_train, y_train)", "model.fit(X_train[fold::3], y_train[fold::3])"
    )
    res = run(data, "--maximize val_acc --trials 4 --seed 0 --apply --name folded -o res", folded)
    said = [m for m in res.messages if m.startswith("--apply: loaded model")]
    assert said and said[0].startswith(
        f"--apply: loaded model from trial {res.chosen_trial.number}'s checkpoint (no retraining; its last fold's, "
        "fold = 2, fitted on that fold's training rows only: for a final model on all the data, refit it with "
        "res.chosen_params) and set"
    ), said


def test_apply_from_a_checkpoint_sets_the_holdout_from_its_holdout_run(data):
    """--apply with '# tune: state' and --holdout loaded the model and left test_acc unset: the next cell
    read a NameError, where the README said --apply runs the sealed lines too (found trying nbtune as a
    new user). The chosen configuration's holdout run gives it; with re-validation, its runs' mean is
    no one run's value, and the message says where it is."""
    data.run_cell("X_val, X_test, y_val, y_test = train_test_split(X_val, y_val, test_size=0.5, random_state=0)")
    cell = CELL + "test_acc = model.score(X_test, y_test)\n"
    res = run(data, "--maximize val_acc --trials 6 --seed 0 --holdout test_acc --holdout-gap 0.5 --apply -o res", cell)
    report = res.holdout()
    assert (
        data.user_ns["test_acc"]
        == report.holdout_value
        == data.user_ns["model"].score(data.user_ns["X_test"], data.user_ns["y_test"])
    )
    assert any("and set C and val_acc (its value in that trial), test_acc (its holdout run)" in m for m in res.messages)


def test_a_script_gets_the_best_model_back_with_load_result(data, tmp_path):
    """The hand-off: a plain Python script (a new process, no IPython) opens the study as %tune_show
    -o binds it and takes the trained model. A TuneResult made by hand from load_study's study had
    said its saved state did not exist (found trying nbtune as a new user)."""
    import subprocess
    import sys

    import nbtune

    res = run(data, "--maximize val_acc --trials 4 --seed 0 -o res", CELL)
    script = tmp_path / "handoff.py"
    script.write_text(
        "import nbtune, pickle\n"
        "res = nbtune.load_result()\n"
        "model = res.best_state()['model']\n"
        "print('BEST', res.best_params['C'] == model[-1].C, res.best_value, res.metric)\n"
        "pickle.dump(model, open('model.pkl', 'wb'))\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], cwd=Path.cwd(), capture_output=True, text=True, timeout=120, check=False
    )
    assert f"BEST True {res.best_value} val_acc" in out.stdout, out.stdout + out.stderr
    import pickle

    model = pickle.loads(Path("model.pkl").read_bytes())
    assert model.score(data.user_ns["X_val"], data.user_ns["y_val"]) == res.best_value
    by_hand = nbtune.TuneResult(nbtune.load_study(), "val_acc")
    with pytest.raises(ConfigError, match=r"does not know its store, .*: open the study with nbtune.load_result\("):
        by_hand.best_state()
    with pytest.raises(KeyError, match="no study"):
        nbtune.load_result("nope")


def test_checkpoints_from_worker_processes_and_with_the_option(data):
    cell = CELL.replace("  # tune: state", "")
    res = run(data, "--maximize val_acc --trials 6 --seed 0 --jobs 2 --state model --keep-checkpoints 2 -o r", cell)
    assert res.best_state()["model"].score(data.user_ns["X_val"], data.user_ns["y_val"]) == res.best_value
    assert len(list(Path(".nbtune/artifacts").iterdir())) == 2
    metas = [t.user_attrs.get(ATTR.CHECKPOINT) for t in res.study.trials]
    assert all(m and m["names"] == ["model"] and m["bytes"] > 100 for m in metas)


def test_a_state_that_cannot_be_saved_is_named_and_the_trial_still_counts(data):
    cell = CELL + "handle = open('scratch.txt', 'w')  # tune: state\n"
    res = run(data, "--maximize val_acc --trials 3 --seed 0 -o r", cell)
    assert res.n_finished == 3 and all(t.state.name == "COMPLETE" for t in res.study.trials)
    error = res.study.trials[0].user_attrs[ATTR.CHECKPOINT_ERROR]
    assert error.startswith("cannot save the state variable 'handle' (TextIOWrapper) with pickle: PicklingError")
    assert any(m.startswith("checkpoint not saved: cannot save the state variable 'handle'") for m in res.messages)
    with pytest.raises(Exception, match="has no saved state: cannot save the state variable 'handle'"):
        res.best_state()


def test_loading_the_best_state_of_a_notebook_class_does_not_start_a_new_version(ip):
    """cloudpickle rebuilds a notebook class's methods when it loads a checkpoint of one of its
    instances; re-running the cell after ``best_state()`` (or after a cut trial resumed, or PBT
    exploited) started a new version and trained every trial again (found trying nbtune as a new
    user)."""
    torch = pytest.importorskip("torch")
    ip.run_cell(
        "import torch\nfrom torch import nn\n"
        "g = torch.Generator().manual_seed(0)\nX = torch.randn(64, 4, generator=g)\ny = (X.sum(1) > 0).long()\n"
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.lin = nn.Linear(4, 2)\n    def forward(self, x):\n        return self.lin(x)\n"
    )
    cell = (
        "lr = 0.01  # tune: loguniform(1e-3, 1e-1)\n"
        "torch.manual_seed(0)\n"
        "model = Net()  # tune: state\n"
        "opt = torch.optim.SGD(model.parameters(), lr=lr)\n"
        "for epoch in range(3):  # tune: epochs\n"
        "    opt.zero_grad()\n"
        "    nn.functional.cross_entropy(model(X), y).backward()\n"
        "    opt.step()\n"
        "    acc = (model(X).argmax(1) == y).float().mean().item()\n"
    )
    res = run(ip, "--maximize acc --trials 3 --seed 0 --scheduler none -o r", cell)
    assert isinstance(res.best_state()["model"], ip.user_ns["Net"])
    again = run(ip, "--maximize acc --trials 3 --seed 0 --scheduler none -o r", cell)
    assert again.study.study_name == res.study.study_name and not any("started" in m for m in again.messages)
    assert len(again.study.trials) == 3 and torch is not None


def test_a_pytorch_model_and_optimizer_are_saved_with_torch(ip):
    torch = pytest.importorskip("torch")
    ip.run_cell(
        "import torch\nfrom torch import nn\n"
        "g = torch.Generator().manual_seed(0)\nX = torch.randn(128, 4, generator=g)\ny = (X.sum(1) > 0).long()\n"
    )
    cell = (
        "lr = 0.01  # tune: loguniform(1e-3, 1e-1)\n"
        "torch.manual_seed(0)\n"
        "model = nn.Linear(4, 2)  # tune: state\n"
        "opt = torch.optim.SGD(model.parameters(), lr=lr)  # tune: state\n"
        "for epoch in range(5):  # tune: epochs\n"
        "    opt.zero_grad()\n"
        "    nn.functional.cross_entropy(model(X), y).backward()\n"
        "    opt.step()\n"
        "    with torch.no_grad():\n"
        "        acc = (model(X).argmax(1) == y).float().mean().item()\n"
    )
    res = run(ip, "--maximize acc --trials 4 --seed 0 --scheduler none -o r", cell)
    state = res.best_state()
    assert isinstance(state["model"], torch.nn.Module) and isinstance(state["opt"], torch.optim.SGD)
    with torch.no_grad():
        acc = (state["model"](ip.user_ns["X"]).argmax(1) == ip.user_ns["y"]).float().mean().item()
    assert acc == res.best_value
    assert state["opt"].param_groups[0]["lr"] == res.best_params["lr"]
    # saved together: the optimizer still updates the model's own parameters
    assert state["opt"].param_groups[0]["params"][0] is next(state["model"].parameters())


@pytest.mark.parametrize(
    "model",
    [
        # as formatters lay out a long constructor: the comment on the last line (it was refused; found
        # trying nbtune as a new user), or on the first
        "model = make_pipeline(\n    StandardScaler(),\n    LogisticRegression(C=C, max_iter=500),\n)  # tune: state",
        "model = make_pipeline(  # tune: state\n    StandardScaler(),\n    LogisticRegression(C=C, max_iter=500),\n)",
    ],
)
def test_state_on_an_assignment_over_several_lines(data, model):
    cell = CELL.splitlines()
    cell[1] = model
    res = run(data, "--maximize val_acc --trials 3 --sampler random", "\n".join(cell) + "\n")
    best = res.best_state()
    assert best["model"].score(data.user_ns["X_val"], data.user_ns["y_val"]) == pytest.approx(res.best_value)


def test_a_comment_inside_a_statement_is_no_state_mark(ip):
    cell = "x = 1  # tune: int(0, 3)\nm = dict(\n    a=1,  # tune: state\n    b=2,\n)\nloss = x\n"
    with pytest.raises(UsageError, match="line 4 of the %%tune cell: '# tune: state' must annotate a simple top-level"):
        run(ip, "--minimize loss --trials 2", cell)


@pytest.mark.parametrize(
    "line, cell, message",
    [
        ("--state nothing", "x = 1  # tune: int(0, 3)\nloss = x\n", "--state: the %%tune cell never assigns 'nothing'"),
        ("", "x = 1  # tune: state\nloss = x\ny = 1  # tune: int(0, 2)\n", None),
        ("", "x = 1  # tune: int(0, 3)\nm = 2  # tune: state(1)\nloss = x\n", "'state' takes no arguments"),
        (
            "--keep-checkpoints 0",
            "x = 1  # tune: int(0, 3)\nloss = x\n",
            "--keep-checkpoints must be a whole number >= 1",
        ),
        ("--state x", "x = 1  # tune: int(0, 3)\nloss = x\n", "--state x: 'x' is tuned, so it is not a trial's state"),
        (
            "",
            "x = 1  # tune: int(0, 3)\nif x:\n    m = 2  # tune: state\nloss = x\n",
            "'# tune: state' must annotate a simple",
        ),
    ],
)
def test_bad_state_input_is_one_line_before_any_trial(ip, line, cell, message):
    if message is None:  # a state variable is fine anywhere a simple assignment is
        run(ip, f"--minimize loss --trials 2 {line}", cell)
        return
    with pytest.raises(UsageError, match=message):
        run(ip, f"--minimize loss --trials 2 {line}", cell)


RESUME_SCRIPT = '''
import os, sys, time
import nbtune

cell = """
x = 0.5                  # tune: uniform(0.1, 0.9)
state = {"w": 0.0}       # tune: state
for epoch in range(6):   # tune: epochs
    open("epochs.log", "a").write(f"{x:.6f} {epoch}\\\\n")
    state["w"] += x
    if x != 0.5 and epoch == 3 and not os.path.exists("killed"):
        open("ready", "w").close()
        time.sleep(120)  # killed here, in the middle of epoch 3
    acc = state["w"]
"""
res = nbtune.tune(cell, maximize="acc", n_trials=2, seed=0, sampler="random", scheduler="none",
                  store=".nbtune", view=None, user_ns=globals())
print("DONE", res.n_finished)
'''


def test_a_trial_cut_by_a_dead_kernel_resumes_from_its_last_epoch(tmp_path):
    """The process running trial 1 is SIGKILLed in epoch 3 (index); run again, the trial continues
    from its checkpoint after epoch 2: the epochs it finished are not trained again, its
    learning curve continues without duplicated steps, and it ends where an uncut run would."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "search.py"
    script.write_text(RESUME_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    t0 = time.time()
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None and time.time() - t0 < 120, "the search never reached epoch 3 of trial 1"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (tmp_path / "killed").touch()
    # looked at before it runs again (%tune_show in a new kernel): the trial is said to be cut
    from nbtune._tune import stored_result
    from nbtune.store.journal import load_study, open_store

    shown = stored_result(load_study(store=tmp_path / ".nbtune"), open_store(tmp_path / ".nbtune"), None, None)
    assert any("show as running, but the kernel or worker that ran them is gone" in m for m in shown.messages)
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "DONE 2" in out.stdout, out.stdout + out.stderr

    import nbtune

    study = nbtune.load_study(store=tmp_path / ".nbtune")
    cut = next(t for t in study.trials if t.user_attrs.get(ATTR.INTERRUPTED))
    rerun = next(t for t in study.trials if t.user_attrs.get(ATTR.RERUN_OF) == cut.number)
    x = cut.params["x"]
    assert rerun.params == cut.params and rerun.state.name == "COMPLETE"
    assert sorted(rerun.intermediate_values) == [1, 2, 3, 4, 5, 6]  # one curve, no step twice
    assert rerun.intermediate_values == pytest.approx({k: k * x for k in range(1, 7)})
    assert rerun.value == pytest.approx(6 * x)  # what an uncut run ends with
    assert rerun.user_attrs[ATTR.RESUME]["step"] == 3
    epochs = [
        int(line.split()[1])
        for line in (tmp_path / "epochs.log").read_text().splitlines()
        if line.startswith(f"{x:.6f}")
    ]
    assert epochs == [0, 1, 2, 3, 3, 4, 5]  # epochs 0-2 trained once; epoch 3 was cut and done again
    # the cut trial's checkpoint is deleted once its re-run has ended; the best trials' are kept
    ids = {p.name for p in (tmp_path / ".nbtune" / "artifacts").iterdir()}
    assert cut.user_attrs[ATTR.CHECKPOINT]["artifact"] not in ids
    assert rerun.user_attrs[ATTR.CHECKPOINT]["artifact"] in ids and "step" not in rerun.user_attrs[ATTR.CHECKPOINT]


def test_a_registered_serializer_writes_the_states_it_accepts():
    from nbtune.run import checkpoints

    class Blob:
        def __init__(self, data):
            self.data = data

    calls = []

    def dumps(state):
        calls.append("dumps")
        return repr({k: v.data for k, v in state.items()}).encode()

    def loads(data):
        import ast

        return {k: Blob(v) for k, v in ast.literal_eval(data.decode()).items()}

    checkpoints.SERIALIZERS.register(
        "blob", checkpoints.Serializer(lambda s: all(isinstance(v, Blob) for v in s.values()), dumps, loads)
    )
    try:
        data = checkpoints.state_bytes({"b": Blob([1, 2])}, ("b",))
        assert calls == ["dumps"] and checkpoints.load_state(data)["b"].data == [1, 2]
        assert checkpoints.load_state(checkpoints.state_bytes({"n": 3}, ("n",))) == {"n": 3}  # cloudpickle
    finally:
        checkpoints.SERIALIZERS.pop("blob")


def test_what_a_continued_trial_builds_afresh_is_named_before_the_search(ip):
    """Only the model marked: the optimizer and the LR scheduler built from it before the loop
    start again in a trial that goes on from its checkpoint (a StepLR's learning rate jumped back;
    found trying nbtune as a new user). Said before the search, with the --state that keeps them."""
    pytest.importorskip("torch")
    ip.run_cell("import torch\nfrom torch import nn\nX = torch.randn(32, 4)\ny = (X[:, 0] > 0).long()\n")
    cell = (
        "lr = 0.05  # tune: loguniform(0.001, 0.5)\n"
        "model = nn.Linear(4, 2)  # tune: state\n"
        "opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)\n"
        "sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)\n"
        "for epoch in range(3):  # tune: epochs\n"
        "    opt.zero_grad()\n    nn.functional.cross_entropy(model(X), y).backward()\n    opt.step()\n    sched.step()\n"
        "    loss = nn.functional.cross_entropy(model(X), y).item()\n"
    )
    res = run(ip, "--minimize loss --trials 2 -o r", cell)
    assert (
        "opt (line 4) and sched (line 5) are built before the epochs loop from the state 'model' and are not state: "
        "a trial that goes on from its checkpoint (promoted, resumed after a cut, PBT) builds them afresh on the "
        "loaded state; if they keep state of their own (an optimizer's momentum, a scheduler's step count), mark "
        "them as state too (--state model,opt,sched)"
    ) in res.messages
    # a re-run with nothing to run does not say it again (it did at every re-run; found trying nbtune as a new user)
    again = run(ip, "--minimize loss --trials 2 -o r", cell)
    assert any("nothing to run" in m for m in again.messages)
    assert not any("built before the epochs loop" in m for m in again.messages)
    marked = cell.replace("momentum=0.9)\n", "momentum=0.9)  # tune: state\n").replace(
        "step_size=2)\n", "step_size=2)  # tune: state\n"
    )
    res = run(ip, "--minimize loss --trials 2 -o r", marked)
    assert not any("built before the epochs loop" in m for m in res.messages)


def test_a_data_loader_marked_as_state_is_named(ip):
    """'loader = DataLoader(...)  # tune: state' was accepted silently, and every epoch's checkpoint
    then held the loader and its dataset (found trying nbtune as a new PyTorch user)."""
    ip.run_cell("class DataLoader(list):\n    pass\n")  # (the check reads the cell: a stand-in for PyTorch's)
    cell = (
        "lr = 0.1  # tune: uniform(0.01, 1)\nmodel = {'w': 0.0}  # tune: state\n"
        "loader = DataLoader([1, 2, 3])  # tune: state\nfor epoch in range(3):  # tune: epochs\n"
        "    for b in loader:\n        model['w'] += lr * b\n    loss = (model['w'] - 3) ** 2\n"
    )
    res = run(ip, "--minimize loss --trials 2 -o r", cell)
    assert any(
        m.startswith("line 4: 'loader' is a data loader marked as state: every epoch's checkpoint would write it")
        for m in res.messages
    ), res.messages
    unmarked = cell.replace("])  # tune: state", "])")
    res = run(ip, "--minimize loss --trials 2 --name unmarked -o r", unmarked)
    assert not any("data loader marked as state" in m for m in res.messages), res.messages
    # marked by the option too; and a loader built on a generator marked as state is not advised as state to mark
    res = run(ip, "--minimize loss --trials 2 --state model,loader --name option -o r", unmarked)
    assert any(m.startswith("line 4: 'loader' is a data loader marked as state") for m in res.messages), res.messages
    on_generator = unmarked.replace("loader = DataLoader([1, 2, 3])", "g = [0]  # tune: state\nloader = DataLoader(g)")
    res = run(ip, "--minimize loss --trials 2 --name generator -o r", on_generator)
    assert not any("loader (line" in m or "data loader marked" in m for m in res.messages), res.messages


def test_an_optimizer_chosen_by_if_else_is_named_too(ip):
    """The optimizer built in an if/else before the loop (how most people choose one): no note,
    and continued trials scored what a straight run does not (found trying nbtune as a new user)."""
    pytest.importorskip("torch")
    ip.run_cell("import torch\nfrom torch import nn\nX = torch.randn(32, 4)\ny = (X[:, 0] > 0).long()\n")
    cell = (
        "lr = 0.05  # tune: loguniform(0.001, 0.5)\n"
        "name = 'sgd'  # tune: choice('sgd', 'adam')\n"
        "model = nn.Linear(4, 2)  # tune: state\n"
        "if name == 'adam':\n"
        "    opt = torch.optim.Adam(model.parameters(), lr=lr)\n"
        "else:\n"
        "    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)\n"
        "for epoch in range(3):  # tune: epochs\n"
        "    opt.zero_grad()\n    nn.functional.cross_entropy(model(X), y).backward()\n    opt.step()\n"
        "    loss = nn.functional.cross_entropy(model(X), y).item()\n"
    )
    res = run(ip, "--minimize loss --trials 2 -o r", cell)
    assert any(
        m.startswith("opt (line 6) is built before the epochs loop from the state 'model'")
        and "(--state model,opt)" in m
        for m in res.messages
    ), res.messages
    # or by a match statement
    matched = cell.replace("if name == 'adam':\n    opt", "match name:\n  case 'adam':\n    opt").replace(
        "else:\n    opt", "  case _:\n    opt"
    )
    res = run(ip, "--minimize loss --trials 2 -o r", matched)
    assert any(m.startswith("opt (line 7) is built before the epochs loop from the state") for m in res.messages), (
        res.messages
    )


def test_a_best_so_far_metric_with_the_last_epochs_state_is_named(ip):
    """Early stopping written by hand, 'val_acc = best_acc' (the best epoch's score) with the model as
    state: res.best_state() gave the last epoch's model, scoring less than val_acc said, and nothing
    said so (found trying nbtune as a new user). Named before the search, with both fixes."""
    cell = (
        "lr = 0.5  # tune: uniform(0.1, 1)\nw = [0.0]  # tune: state\nbest_acc = 0.0\n"
        "for epoch in range(4):  # tune: epochs\n    w[0] += lr\n    acc = 1 - abs(w[0] - 1)\n"
        "    if acc > best_acc:\n        best_acc = acc\n    val_acc = best_acc\n"
    )
    res = run(ip, "--maximize val_acc --trials 2 --scheduler none", cell)
    said = [m for m in res.messages if "best epoch's score so far" in m]
    assert said and said[0].startswith("line 10: 'val_acc' is the best epoch's score so far ('best_acc')"), res.messages
    # the best of a history the loop appends to (found trying nbtune as a new user)
    history = cell.replace(
        "    if acc > best_acc:\n        best_acc = acc\n    val_acc = best_acc\n",
        "    hist.append(acc)\n    val_acc = max(hist)\n",
    ).replace("best_acc = 0.0\n", "hist = []\n")
    said = [m for m in run(ip, "--maximize val_acc --trials 2 --scheduler none", history).messages if "so far" in m]
    assert said and said[0].startswith("line 9: 'val_acc' is the best epoch's score so far (max(hist))"), said
    # the metric itself set under the 'if' that reads it, with a patience 'break' (the commonest form: found
    # trying nbtune as a new PyTorch user; best_state() scored 0.885 where best_value said 0.915)
    itself = (
        "lr = 0.5  # tune: uniform(0.1, 1)\nw = [0.0]  # tune: state\nbest_val_acc = 0.0\nbad = 0\n"
        "for epoch in range(4):  # tune: epochs\n    w[0] += lr\n    val_acc = 1 - abs(w[0] - 1)\n"
        "    if val_acc > best_val_acc:\n        best_val_acc = val_acc\n        bad = 0\n    else:\n"
        "        bad += 1\n        if bad >= 2:\n            break\n"
    )
    said = [m for m in run(ip, "--maximize best_val_acc --trials 2 --scheduler none", itself).messages if "so far" in m]
    assert said and said[0].startswith(
        "line 10: 'best_val_acc' is the best epoch's score so far (set only under 'if val_acc > best_val_acc')"
    ), said
    # the epoch's own score, or the best epoch's model kept as state too: nothing to say
    own = cell.replace("val_acc = best_acc", "val_acc = acc")
    assert not any("so far" in m for m in run(ip, "--maximize val_acc --trials 2 --scheduler none", own).messages)
    kept = cell.replace("        best_acc = acc\n", "        best_acc = acc\n        best_w = list(w)\n").replace(
        "best_acc = 0.0\n", "best_acc = 0.0\nbest_w = None\n"
    )
    res = run(ip, "--maximize val_acc --trials 2 --scheduler none --state w,best_w", kept)
    assert not any("so far" in m for m in res.messages)
    kept = itself.replace(
        "        best_val_acc = val_acc\n", "        best_val_acc = val_acc\n        best_w = list(w)\n"
    ).replace("bad = 0\nfor", "bad = 0\nbest_w = None\nfor")
    res = run(ip, "--maximize best_val_acc --trials 2 --scheduler none --state w,best_w", kept)
    assert not any("so far" in m for m in res.messages), res.messages
    # a metric set under an 'if' that does not compare with it is the epoch's own score
    every_other = itself.replace("if val_acc > best_val_acc:", "if epoch % 1 == 0:")
    res = run(ip, "--maximize best_val_acc --trials 2 --scheduler none", every_other)
    assert not any("so far" in m for m in res.messages), res.messages


def test_an_end_state_that_could_not_be_written_is_not_replaced_by_an_earlier_epochs(ip, monkeypatch):
    """The disk filled after epoch 1's checkpoint: --apply and best_state() loaded that epoch's
    state as the model the trial's value measured (found trying nbtune as a new user)."""
    import optuna.artifacts

    real = optuna.artifacts.upload_artifact
    calls = {"n": 0}

    def fills_up(**kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(28, "No space left on device")
        return real(**kwargs)

    monkeypatch.setattr(optuna.artifacts, "upload_artifact", fills_up)
    cell = "lr = 0.1  # tune: uniform(0.01, 1)\nw = [0.0]  # tune: state\nfor epoch in range(3):  # tune: epochs\n    w[0] += lr\n    acc = w[0]\n"
    res = ip.run_cell_magic("tune", "--maximize acc -n 1 -o res", cell)
    t = res.study.trials[0]
    assert t.state.name == "COMPLETE" and t.user_attrs[ATTR.CHECKPOINT]["step"] == 1  # what is left
    with pytest.raises(ConfigError, match="trial 0 has no saved state: cannot write the checkpoint"):
        res.best_state()
