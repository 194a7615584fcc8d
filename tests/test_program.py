"""The cell rewritten into a trial: compiling, running with fixed values, the metric, pickling, tracebacks, epochs."""

from __future__ import annotations

import ast
import itertools
import linecache
import math
import pickle
import re
from fractions import Fraction

import numpy as np
import optuna
import pytest

from nbtune.cell import program as program_module
from nbtune.cell.annotations import ANNOTATIONS, BaseAnnotation, register_annotation
from nbtune.cell.program import (
    CellProgram,
    MetricError,
    TrialInterrupted,
    TrialRuntime,
    check_metric,
    compile_cell,
)
from nbtune.exceptions import AnnotationError, CellError, ConfigError

CELL = "lr = 0.1  # tune: loguniform(1e-3, 1.0)\nn = 2  # tune: int(1, 4)\nm = lr * n\n"


def compile_(cell, **kw):
    kw.setdefault("metric", "m")
    kw.setdefault("direction", "maximize")
    return compile_cell(cell, **kw)


def run_fixed(program, **fixed):
    return program.run(TrialRuntime(program, None, fixed=fixed))


def test_compile_cell():
    program = compile_(CELL, direction="minimize")
    assert isinstance(program, CellProgram)
    assert (program.source, program.metric, program.direction, program.line_offset) == (CELL, "m", "minimize", 1)
    assert [p.name for p in program.params] == ["lr", "n"]
    assert program.globals == {}
    assert program.filename.startswith("<%%tune cell ") and program.filename == compile_(CELL).filename
    assert program.filename != compile_(CELL + "\n").filename


@pytest.mark.parametrize("metric", ["val acc", "1st", "m.x", ""])
def test_metric_must_be_a_name(metric):
    with pytest.raises(ConfigError, match=f"^the metric must be a variable name, got {metric!r}$"):
        compile_(CELL, metric=metric)


@pytest.mark.parametrize(
    "cell", ["m = 1\n", "m = 1  # tuned by hand\n", "for e in range(3):  # tune: epochs\n    m = e\n"]
)
def test_a_cell_without_values_has_nothing_to_search(cell):
    with pytest.raises(
        ConfigError, match="^the %%tune cell has no '# tune:' annotations, so there is nothing to search"
    ):
        compile_(cell)


@pytest.mark.parametrize("cell, error", [("m = (\n", CellError), ("m = 1  # tune: int(0)\n", AnnotationError)])
def test_compile_cell_passes_parse_errors_on(cell, error):
    with pytest.raises(error, match="^line 2 of the %%tune cell"):
        compile_(cell)


def test_transform_runs_before_parsing():
    seen = []

    def transform(cell):
        seen.append(cell)
        return cell.replace("!echo hi", "shell = 'hi'")

    program = compile_("!echo hi\nx = 1  # tune: int(0, 3)\nm = x\n", transform=transform, line_offset=4)
    assert seen == ["!echo hi\nx = 1  # tune: int(0, 3)\nm = x\n"]
    assert program.source.startswith("shell = 'hi'\n")
    assert program.params[0].lineno == 6 and program.line_offset == 4


@pytest.mark.parametrize(
    "fixed, expected",
    [
        ({}, 0.2),
        ({"lr": 0.5}, 1.0),
        ({"lr": 0.5, "n": 3}, 1.5),
        ({"n": 4}, 0.4),
    ],
)
def test_run_with_fixed_values(fixed, expected):
    assert run_fixed(compile_(CELL), **fixed) == pytest.approx(expected)


def test_fixed_values_win_over_the_trial():
    program = compile_(CELL)
    trial = optuna.trial.FixedTrial({"lr": 0.01, "n": 1})
    assert program.run(TrialRuntime(program, trial, fixed={"n": 4})) == pytest.approx(0.04)
    assert trial.params == {"lr": 0.01}


def test_a_study_trial_suggests_each_annotated_value():
    program = compile_(CELL)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    value = program.run(TrialRuntime(program, trial))
    assert set(trial.params) == {"lr", "n"}
    assert value == pytest.approx(trial.params["lr"] * trial.params["n"])
    assert 1e-3 <= trial.params["lr"] <= 1.0 and trial.params["n"] in (1, 2, 3, 4)


def test_annotated_assignment_with_a_type_is_rewritten():
    program = compile_("lr: float = 0.1  # tune: uniform(0, 1)\nm = lr\n")
    assert run_fixed(program, lr=0.7) == 0.7


def test_run_in_a_given_namespace():
    program = compile_("offset = 5\nx = 1  # tune: int(0, 3)\nm = x + offset\n")
    base = {"before": 1}
    assert program.run(TrialRuntime(program, None, fixed={"x": 3}), base=base) == 8
    assert base["x"] == 3 and base["offset"] == 5 and base["before"] == 1
    assert isinstance(base["__nbtune__"], TrialRuntime)


def test_a_fresh_namespace_per_run():
    program = compile_("x = 1  # tune: int(0, 3)\ntry:\n    calls += 1\nexcept NameError:\n    calls = 1\nm = calls\n")
    assert run_fixed(program) == 1
    assert run_fixed(program) == 1


class Scalar:
    """Has ``item()`` like a framework's 0-d tensor."""

    def __init__(self, v):
        self.v = v

    def item(self):
        return self.v


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.5, 0.5),
        (3, 3.0),
        (-0.0, 0.0),
        (Fraction(1, 4), 0.25),
        (np.float64(0.5), 0.5),
        (np.float32(0.25), 0.25),
        (np.int64(7), 7.0),
        (np.array(0.5), 0.5),
        (np.array([[2.5]]), 2.5),
        (Scalar(1.5), 1.5),
    ],
)
def test_check_metric_accepts_real_numbers(value, expected):
    got = check_metric("m", {"m": value}, "here")
    assert got == expected and type(got) is float


@pytest.mark.parametrize(
    "value, message",
    [
        (True, "m is not a number at the end: got bool True"),
        (np.bool_(False), "m is not a number at the end: got bool holding False"),
        ("0.5", "m is not a number at the end: got str '0.5'"),
        (None, "m is not a number at the end: got NoneType None; give it a number in every run"),
        (
            (0.72, 304),  # two objectives (found trying nbtune as a new user: 'reduce it to one, e.g. m.mean()')
            "m is not one number at the end: got a tuple of 2 values; nbtune tunes one metric: keep the others as "
            "guardrails (--subject-to 'n_coef <= 100') or records (--record n_coef)",
        ),
        (1 + 2j, "m is not a number at the end: got complex (1+2j)"),
        (
            np.array([1.0, 2.0]),
            "m is not one number at the end: got ndarray with 2 values; reduce it to one, e.g. m.mean()",
        ),
        ([0.5], "m is not a number at the end: got list [0.5]"),
        (Scalar("x"), "m is not a number at the end: got Scalar holding 'x'"),
        ("a" * 200, "m is not a number at the end: got str '" + "a" * 79),
        (math.nan, "m is not finite at the end: got nan"),
        (math.inf, "m is not finite at the end: got inf"),
        (-math.inf, "m is not finite at the end: got -inf"),
        (np.float64("nan"), "m is not finite at the end: got nan"),
        (np.array(np.inf), "m is not finite at the end: got inf"),
    ],
)
def test_check_metric_rejects(value, message):
    with pytest.raises(MetricError) as info:
        check_metric("m", {"m": value}, "at the end")
    assert str(info.value) == message


def test_none_in_an_epochs_loop_gets_the_loops_advice():
    """Only there: a cell without a loop had been told of '# tune: epochs' (found trying nbtune as a new user)."""
    with pytest.raises(MetricError, match=r"at the end of epoch 1: got NoneType None; give it a number in every run "):
        check_metric("m", {"m": None}, "at the end of epoch 1")
    with pytest.raises(MetricError, match="from the first epoch on .e.g. the mean of what there is so far while a"):
        check_metric("m", {"m": None}, "at the end of epoch 1")


def test_check_metric_missing():
    with pytest.raises(MetricError) as info:
        check_metric("val_acc", {"m": 1.0}, "at the end of the cell")
    assert str(info.value) == ("val_acc was not set at the end of the cell; assign it in the cell")


@pytest.mark.parametrize(
    "tail, message",
    [
        ("if x > 5:\n    m = x\n", "m was not set at the end of the cell"),
        ("m = 'high'\n", "m is not a number at the end of the cell: got str 'high'"),
        ("m = float('nan')\n", "m is not finite at the end of the cell: got nan"),
    ],
)
def test_run_checks_the_metric(tail, message):
    program = compile_("x = 1  # tune: int(0, 3)\n" + tail)
    with pytest.raises(MetricError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        run_fixed(program)


def test_globals_are_the_notebook_names_the_cell_uses():
    ns = {
        "data": [1, 2, 3],
        "scale": 2,
        "unused": object(),
        "_last": 4,
        "get_ipython": lambda: None,
        "exit": object(),
        "quit": object(),
        "__builtins__": {},
        "__name__": "__main__",
        "__file__": "nb.ipynb",
    }
    cell = (
        "x = 1  # tune: int(0, 3)\nshell = get_ipython()\nquitters = (exit, quit)\nsrc = __file__ if x > 5 else ''\n"
        "m = sum(data) * scale + x + _last\n"
    )
    program = compile_(cell, user_ns=ns)
    assert list(program.globals) == ["_last", "data", "scale"]
    assert program.globals["data"] is ns["data"]


def test_globals_seed_the_namespace_and_get_ipython_is_the_runtimes():
    program = compile_(
        "x = 1  # tune: int(0, 3)\nshell = get_ipython()\nm = sum(data) + x\n",
        user_ns={"data": [1, 2], "get_ipython": lambda: "the notebook shell"},
    )
    base = program.namespace(None)
    assert base["data"] == [1, 2] and base["__name__"] == "__main__"
    assert base["get_ipython"] is program_module._get_ipython
    rt = TrialRuntime(program, None)
    assert program.run(rt) == 4
    assert rt._ns["shell"] != "the notebook shell" and hasattr(rt._ns["shell"], "system")


def test_the_namespace_keeps_a_get_ipython_given_in_the_globals():
    program = compile_("x = 1  # tune: int(0, 3)\nm = x\n")
    program.globals["get_ipython"] = "mine"
    assert program.namespace(None)["get_ipython"] == "mine"


def test_names_the_cell_only_assigns_are_not_captured():
    """An unpicklable leftover of an earlier run must not stop --jobs 2 when the cell never reads it."""
    program = compile_("x = 1  # tune: int(0, 3)\nmodel = object()\nm = x\n", user_ns={"model": "stale", "m": 0.0})
    assert program.globals == {}


@pytest.mark.parametrize(
    "body, captured",
    [
        ("model = model + 1\nm = 1\n", {"model"}),  # read before it is bound
        ("model += 1\nm = 1\n", {"model"}),
        ("if flag:\n    model = 1\nm = model\n", {"flag", "model"}),  # bound only under a condition
        ("for i in range(2):\n    model = i\nm = model\n", {"model"}),
        ("def f():\n    return model\nm = f()\nmodel = 2\n", {"model"}),  # a function reads it first
        ("import os\nm = len(os.sep)\n", set()),
        ("from math import pi as model\nm = model\n", set()),
        ("def model():\n    return 1\nm = model()\n", set()),
        ("model, other = 1, 2\nm = model + other\n", set()),
        ("model: int = 3\nm = model\n", set()),
        ("del model\nm = 1\n", {"model"}),
    ],
)
def test_globals_are_the_names_read_before_the_cell_binds_them(body, captured):
    ns = {"model": 1, "other": 2, "flag": True, "os": "not os", "f": None, "m": 0}
    program = compile_("x = 1  # tune: int(0, 3)\n" + body, user_ns=ns)
    assert set(program.globals) == captured


def test_pickled_program_runs_after_a_fresh_compile():
    cell = "lr = 0.1  # tune: loguniform(1e-3, 1.0)\nfor e in range(3):  # tune: epochs\n    m = lr * (e + offset)\n"
    program = compile_(cell, user_ns={"offset": 10})
    clone = pickle.loads(pickle.dumps(program))
    assert program.spec.tree is not None and clone.spec.tree is None
    assert clone.params == program.params and clone.spec.marks == program.spec.marks
    assert clone.spec.epochs == program.spec.epochs and clone.globals == {"offset": 10}
    assert clone.filename == program.filename
    fresh_process()
    steps = []
    rt = TrialRuntime(clone, None, fixed={"lr": 0.5}, on_epoch=lambda s, v: steps.append((s, v)))
    assert clone.run(rt) == 6.0
    assert steps == [(1, 5.0), (2, 5.5), (3, 6.0)]
    assert program.run(TrialRuntime(program, None)) == pytest.approx(1.2)


def test_pickled_program_names_the_users_line():
    program = compile_("x = 1  # tune: int(0, 3)\nm = x\nraise KeyError('nope')\n")
    clone = pickle.loads(pickle.dumps(program))
    fresh_process()
    with pytest.raises(KeyError) as info:
        run_fixed(clone)
    assert f"File \"{clone.filename}\", line 4, in <module>\n    raise KeyError('nope')" in clone.user_traceback(
        info.value
    )


def test_traceback_names_the_users_lines():
    cell = "x = 1  # tune: int(0, 3)\ndef f(d):\n    return 1 / d\nm = f(x - x)\n"
    program = compile_(cell)
    with pytest.raises(ZeroDivisionError) as info:
        run_fixed(program)
    tb = program.user_traceback(info.value)
    assert tb.startswith("Traceback (most recent call last):\n")
    assert f'File "{program.filename}", line 5, in <module>\n    m = f(x - x)' in tb
    assert f'File "{program.filename}", line 4, in f\n    return 1 / d' in tb
    assert tb.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "program.py" not in tb and "nbtune" not in tb


def test_traceback_goes_into_library_code():
    program = compile_("x = 1  # tune: int(0, 3)\nimport json\nm = json.loads('oops')\n", line_offset=3)
    with pytest.raises(ValueError) as info:
        run_fixed(program)
    tb = program.user_traceback(info.value)
    assert f"File \"{program.filename}\", line 6, in <module>\n    m = json.loads('oops')" in tb
    assert "json" in tb.split(program.filename)[1] and "program.py" not in tb


def test_traceback_of_an_error_outside_the_cell_is_kept_whole():
    program = compile_("x = 1  # tune: int(0, 3)\nm = x\n")
    try:
        raise RuntimeError("elsewhere")
    except RuntimeError as e:
        tb = program.user_traceback(e)
    assert "test_program.py" in tb and "RuntimeError: elsewhere" in tb


def test_same_source_at_another_offset_has_its_own_line_numbers():
    cell = "x = 1  # tune: int(0, 3)\nm = x\nraise ValueError('offset numbers')\n"
    for offset in (1, 5):
        program = compile_(cell, line_offset=offset)
        with pytest.raises(ValueError) as info:
            run_fixed(program)
        assert f"line {3 + offset}, in <module>" in program.user_traceback(info.value)


def test_same_source_at_another_offset_shows_its_own_source_line():
    cell = "x = 1  # tune: int(0, 3)\nm = x\nraise ValueError('offset text')\n"
    for offset in (1, 5):
        program = compile_(cell, line_offset=offset)
        with pytest.raises(ValueError) as info:
            run_fixed(program)
        assert f"line {3 + offset}, in <module>\n    raise ValueError('offset text')" in program.user_traceback(
            info.value
        )


def fresh_process():
    """Forget what this process compiled, as a new worker process would."""
    program_module._compiled.cache_clear()
    for name in [n for n in linecache.cache if n.startswith("<%%tune cell ")]:
        del linecache.cache[name]


def epochs_of(body, **kw):
    program = compile_("x = 1  # tune: int(0, 3)\n" + body)
    steps = []
    rt = TrialRuntime(program, None, on_epoch=lambda s, v: steps.append((s, v)), **kw)
    return program, rt, steps


@pytest.mark.parametrize(
    "body, pairs, final",
    [
        ("for e in range(4):  # tune: epochs\n    m = e * 10\n", [(1, 0), (2, 10), (3, 20), (4, 30)], 30),
        ("for e in range(5):  # tune: epochs\n    m = e\n    if e == 2:\n        break\n", [(1, 0), (2, 1), (3, 2)], 2),
        ("for e in range(5):  # tune: epochs\n    m = e\n    break\n", [(1, 0)], 0),
        (
            "m = -1\nfor e in range(5):  # tune: epochs\n    if e % 2:\n        continue\n    m = e\n",
            [(1, 0), (2, 0), (3, 2), (4, 2), (5, 4)],
            4,
        ),
        (
            "for e in range(3):  # tune: epochs\n    m = e\n    if e == 1:\n        continue\n    m = m + 0.5\nm = 100\n",
            [(1, 0.5), (2, 1), (3, 2.5)],
            100,
        ),
        ("for e in range(3):  # tune: epochs\n    m = e\nelse:\n    m = 7\n", [(1, 0), (2, 1), (3, 2)], 7),
        ("m = 9\nfor e in range(0):  # tune: epochs\n    m = e\n", [], 9),
        (
            "for e in [0.5, 0.25]:  # tune: epochs\n    for b in range(3):\n        m = e * b\n",
            [(1, 1.0), (2, 0.5)],
            0.5,
        ),
        ("if x >= 0:\n    for e in range(2):  # tune: epochs\n        m = e + x\n", [(1, 1), (2, 2)], 2),
    ],
)
def test_epochs_are_reported(body, pairs, final):
    program, rt, steps = epochs_of(body)
    assert program.run(rt) == final
    assert steps == pairs
    assert all(type(v) is float for _, v in steps)


def test_epoch_without_the_metric():
    """Set in the loop, but not in every epoch, where the cell cannot tell before it runs (a
    placeholder before the loop): found when the first epoch ends."""
    program, rt, steps = epochs_of(
        "m = float('inf')\nfor e in range(3):  # tune: epochs\n    if e % 2:\n        m = 1\n"
    )
    with pytest.raises(MetricError) as info:
        program.run(rt)
    assert str(info.value) == (
        "m was not set at the end of epoch 1: with a '# tune: epochs' loop it is read after every epoch; "
        "assign it in every iteration of the loop (not only after the loop, or every few epochs)"
    )
    assert steps == []


@pytest.mark.parametrize(
    "body, expected",
    [
        (
            "for e in range(3):  # tune: epochs\n    pass\nm = 1\n",
            "line 3 of the %%tune cell: the epochs loop reports 'm' after every epoch, but the cell assigns it only "
            "outside the loop (line 5); compute it inside the loop",
        ),
        ("for e in range(3):  # tune: epochs\n    n = e\n", "the %%tune cell never assigns 'm', so no trial"),
    ],
)
def test_a_metric_the_epochs_loop_never_sets_is_an_error_before_any_trial(body, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        epochs_of(body)


@pytest.mark.parametrize(
    "body, line, how",
    [
        (  # evaluated every few epochs
            "for e in range(6):  # tune: epochs\n    train = e\n    if e % 3 == 2:\n        m = e\n",
            5,
            "the 'if' there sets it only in some epochs",
        ),
        (  # inside a with block, as torch.no_grad()
            "for e in range(6):  # tune: epochs\n    with open('/dev/null'):\n        if e % 2:\n            m = e\n",
            5,
            "the 'if' there sets it only in some epochs",
        ),
        (  # a warm-up skipped
            "for e in range(6):  # tune: epochs\n    if e < 2:\n        continue\n    m = e\n",
            5,
            "the 'continue' there ends some epochs before it is set",
        ),
    ],
)
def test_a_metric_set_only_in_some_epochs_is_an_error_before_any_trial(body, line, how):
    with pytest.raises(ConfigError) as info:
        epochs_of(body)
    assert str(info.value) == (
        f"line {line} of the %%tune cell: the epochs loop reports 'm' after every epoch, but {how}; set it in every "
        "epoch (successive halving compares trials by it as they train), or make each pass of the '# tune: epochs' "
        "loop one evaluation period, with the epochs between two evaluations inside it"
    )


@pytest.mark.parametrize(
    "body, final",
    [
        ("for e in range(4):  # tune: epochs\n    if e % 2:\n        m = 1\n    else:\n        m = 2\n", 1),
        ("for e in range(4):  # tune: epochs\n    if e % 2:\n        print()\n    m = e\n", 3),
        ("for e in range(4):  # tune: epochs\n    for b in range(2):\n        m = e + b\n", 4),
        ("for e in range(4):  # tune: epochs\n    try:\n        m = e\n    except ValueError:\n        pass\n", 3),
        ("for e in range(4):  # tune: epochs\n    if e > 9:\n        break\n    m = e\n", 3),
        ("for e in range(4):  # tune: epochs\n    if e > 9:\n        raise ValueError\n    m = e\n", 3),
        ("for e in range(4):  # tune: epochs\n    if (m := e) > 9:\n        pass\n", 3),
        # a value from before the loop stands in an epoch that does not set it
        ("best = 0\nm = 0\nfor e in range(4):  # tune: epochs\n    if e % 2:\n        m = e\n", 3),
    ],
)
def test_a_metric_set_in_every_epoch_passes_the_check(body, final):
    program, rt, steps = epochs_of(body)
    assert program.run(rt) == final
    assert len(steps) == 4


def test_a_metric_a_function_of_the_cell_sets_as_a_global_passes_the_check():
    program, rt, steps = epochs_of(
        "def ev():\n    global m\n    m = 0.5\nfor e in range(2):  # tune: epochs\n    ev()\n"
    )
    program.run(rt)
    assert steps == [(1, 0.5), (2, 0.5)]


def test_epoch_with_a_bad_metric():
    program, rt, steps = epochs_of(
        "for e in range(3):  # tune: epochs\n    m = 1 / (1 - e) if e != 1 else float('inf')\n"
    )
    with pytest.raises(MetricError, match="^m is not finite at the end of epoch 2: got inf$"):
        program.run(rt)
    assert steps == [(1, 1.0)]


def test_the_epochs_hint_is_given_only_when_the_metric_is_missing():
    """Computing the metric inside the loop is the fix only when it was not set there."""
    program, rt, _ = epochs_of("m = float('nan')\nfor e in range(3):  # tune: epochs\n    if e % 2:\n        m = 1.0\n")
    with pytest.raises(
        MetricError, match="m was not set at the end of epoch 1.*assign it in every iteration of the loop"
    ):
        program.run(rt)


@pytest.mark.parametrize("stop_after, pairs", [(0, []), (1, [(1, 0)]), (3, [(1, 0), (2, 1), (3, 2)])])
def test_stop_now_interrupts_at_the_next_epoch(stop_after, pairs):
    answers = itertools.chain([False] * stop_after, itertools.repeat(True))
    program, rt, steps = epochs_of(
        "for e in range(5):  # tune: epochs\n    m = e\n", should_stop_now=lambda: next(answers)
    )
    with pytest.raises(TrialInterrupted):
        program.run(rt)
    assert steps == pairs


def test_epochs_without_a_trial_never_stop():
    program, rt, steps = epochs_of("for e in range(4):  # tune: epochs\n    m = e\n", max_step=2)
    assert program.run(rt) == 3 and len(steps) == 4


class ConstantTag(BaseAnnotation):
    """``tag = 0  # tune: tag`` runs as ``tag = 1234`` (a test kind)."""

    name = "tag"
    usage = "tag = 0  # tune: tag"

    def attach(self, spec, node, args, kwargs, lineno):
        pass

    def rewrite(self, node, spec):
        node.value = ast.copy_location(ast.Constant(1234), node.value)
        return node


def test_a_new_annotation_kind_rewrites_its_statement():
    register_annotation(ConstantTag())
    try:
        program = compile_("tag = 0  # tune: tag\nx = 1  # tune: int(0, 3)\nm = tag + x\n")
        assert run_fixed(program, x=2) == 1236
    finally:
        ANNOTATIONS.pop("tag")
    assert program.spec.marks == {2: "tag", 3: "int"}


class _TensorLike:
    """What torch/jax/tensorflow scalars look like to nbtune: .item(), a size() method, no float subclass."""

    def __init__(self, *values):
        self.values = values
        self.requires_grad = True

    def item(self):
        if len(self.values) != 1:
            raise RuntimeError("a Tensor with 2 elements cannot be converted to Scalar")
        return self.values[0]

    def size(self):
        return (len(self.values),)


@pytest.mark.parametrize(
    "value, expected",
    [
        (__import__("decimal").Decimal("0.25"), 0.25),
        (__import__("fractions").Fraction(1, 4), 0.25),
        (__import__("numpy").float32(0.25), 0.25),
        (__import__("numpy").array(0.25), 0.25),
        (__import__("numpy").array([0.25]), 0.25),
        (_TensorLike(0.25), 0.25),
        (_TensorLike(3), 3.0),
    ],
)
def test_metrics_as_people_compute_them(value, expected):
    assert check_metric("m", {"m": value}, "here") == expected


@pytest.mark.parametrize(
    "value, kind, text",
    [
        (_TensorLike(0.25, 0.5), "not one number", "got _TensorLike with 2 values; reduce it to one, e.g. m.mean()"),
        (__import__("numpy").array([0.1, 0.2]), "not one number", "got ndarray with 2 values"),
        (True, "not a number", "got bool True"),
        ("0.5", "not a number", "got str '0.5'"),
        (_TensorLike(float("nan")), "not finite", "got nan"),
        (__import__("decimal").Decimal("Infinity"), "not finite", "got inf"),
    ],
)
def test_metric_errors_say_what_and_have_a_kind(value, kind, text):
    with pytest.raises(MetricError) as info:
        check_metric("m", {"m": value}, "here")
    assert info.value.kind == kind and text in str(info.value)


def test_torch_scalars_when_torch_is_installed():
    torch = pytest.importorskip("torch")
    w = torch.tensor(0.5, requires_grad=True)
    assert check_metric("m", {"m": w * 2}, "here") == 1.0
    assert check_metric("m", {"m": torch.tensor([0.25])}, "here") == 0.25


class _Loader:
    """A PyTorch DataLoader as nbtune sees it: it has a length (batches) and is not a list."""

    def __len__(self):
        return 7

    def __iter__(self):
        return iter(range(7))


@pytest.mark.parametrize(
    "loop, ns, length",
    [
        ("for e in range(EPOCHS):", {"EPOCHS": 12}, 12),
        ("for e in range(cfg['epochs']):", {"cfg": {"epochs": 5}}, 5),
        ("for e in range(args.epochs):", {"args": __import__("types").SimpleNamespace(epochs=6)}, 6),
        ("for e in range(2 * 2):", {}, 4),
        ("for e in range(1, EPOCHS + 1):", {"EPOCHS": 3}, 3),
        ("for e in tqdm(range(10)):", {"tqdm": None}, 10),
        ("for e in tqdm.auto.tqdm(range(10), desc='epochs'):", {"tqdm": None}, 10),
        ("for e in trange(8):", {"trange": None}, 8),
        ("for i, b in enumerate(loader):", {"loader": _Loader()}, 7),
        ("for b in loader:", {"loader": _Loader()}, 7),
        ("for e in range(len(sizes)):", {"sizes": [1, 2, 3]}, 3),
        ("for e in range(N):", {}, 9),  # the cell's own earlier literal: N = 9
        ("for e in range(int(EPOCHS)):", {"EPOCHS": 6.0}, 6),  # found trying nbtune as a new user
        ("for e in range(int(EPOCHS * 1.5)):", {"EPOCHS": 4}, 6),
        ("for e in range(max(1, EPOCHS // 2)):", {"EPOCHS": 10}, 5),
        ("for e in range(round(EPOCHS / 2)):", {"EPOCHS": 9}, 4),
        # a simulation's time steps (its length said "1: is not a literal"; found trying nbtune as a new user)
        ("for i, t in enumerate(t_obs[1:]):", {"t_obs": list(range(21))}, 20),
        ("for t in t_obs[:N:2]:", {"t_obs": list(range(21))}, 5),
        # a bar bound to a name, to call its set_postfix (found trying nbtune as a new user)
        ("pbar = tqdm(range(EPOCHS), desc='train')\nfor epoch in pbar:", {"tqdm": None, "EPOCHS": 12}, 12),
        ("bar = trange(N)\nfor epoch in bar:", {"trange": None}, 9),
        ("batches = enumerate(loader)\nfor i, b in batches:", {"loader": _Loader()}, 7),
        # tqdm under another name, and a bar opened by 'with' around the loop (found retesting)
        (
            "pbar = atqdm(range(EPOCHS))\nfor epoch in pbar:",
            {"atqdm": __import__("tqdm.auto").auto.tqdm, "EPOCHS": 5},
            5,
        ),
        ("with tqdm(range(EPOCHS)) as pbar:\n  for epoch in pbar:", {"tqdm": None, "EPOCHS": 4}, 4),
    ],
)
def test_the_epochs_loop_length_is_found_as_people_write_it(loop, ns, length):
    body = "      m = x\n" if loop.startswith("with") else "    m = x\n"
    cell = f"x = 1  # tune: int(0, 3)\nN = 9\n{loop}  # tune: epochs\n{body}"
    assert compile_(cell, metric="m", user_ns=ns).spec.epochs.length == length


def test_a_name_a_magic_may_define_is_left_to_the_trials():
    """'%run setup.py' or '%store -r X' may define what the cell reads next: no NameError is said for it
    before the trials (one they raise is theirs)."""
    cell = "x = 1  # tune: int(0, 3)\nget_ipython().run_line_magic('run', 'setup.py')\nm = x + from_setup\n"
    assert compile_(cell, metric="m", user_ns={"get_ipython": None}).metric == "m"
    with pytest.raises(ConfigError, match="reads 'from_setup', which neither the cell nor the notebook defines"):
        compile_(cell.replace("get_ipython().run_line_magic('run', 'setup.py')\n", ""), metric="m", user_ns={})


@pytest.mark.parametrize(
    "loop, ns, why",
    [
        # (set by no one that nbtune can see: with no star import it is a NameError, said before any trial)
        (
            "from math import *\nfor e in range(EPOCHS):",
            {},
            "EPOCHS is neither a notebook variable nor a literal assigned earlier",
        ),
        ("for e in range(x * 2):", {}, "x is tuned, so the loop's length changes from trial to trial"),
        ("for e in make_epochs():", {"make_epochs": lambda: range(3)}, "calls make_epochs, which nbtune does not run"),
        ("for e in gen:", {"gen": iter(range(3))}, "gen has no length"),
        ("for e in range(cfg.n):", {"cfg": type("C", (), {"n": property(lambda s: 3)})()}, "would run code"),
        # a bar over a tuned length, or over what a call returns: set by code nbtune does not run
        ("pbar = tqdm(range(x))\nfor e in pbar:", {"tqdm": None}, "pbar is set on line 3 of the cell"),
        ("pbar = tqdm(make_epochs())\nfor e in pbar:", {"tqdm": None, "make_epochs": lambda: range(3)}, "pbar is set"),
    ],
)
def test_an_unknowable_length_says_why(loop, ns, why):
    cell = f"x = 1  # tune: int(0, 3)\n{loop}  # tune: epochs\n    m = x\n"
    epochs = compile_(cell, metric="m", user_ns=ns).spec.epochs
    assert epochs.length is None and why in epochs.why


class _Settings:
    epochs = 27


@pytest.mark.parametrize(
    "before, loop, length, why",
    [
        ("CFG.epochs = 2", "range(CFG.epochs)", 2, ""),
        ("cfg['epochs'] = 5", 'range(cfg["epochs"])', 5, ""),
        ("EPOCHS = 4", "range(EPOCHS)", 4, ""),
        ("EPOCHS = int('3')", "range(EPOCHS)", None, "EPOCHS is set on line 3 of the cell by code nbtune does not run"),
        ("EPOCHS += 3", "range(EPOCHS)", None, "EPOCHS is set on line 3"),
        ("if x > 0.5:\n    EPOCHS = 5", "range(EPOCHS)", None, "EPOCHS is set on line 4"),
        ("cfg.update(epochs=5)", 'range(cfg["epochs"])', None, "cfg is set on line 3"),
        ("CFG.epochs = 2\nCFG = make()", "range(CFG.epochs)", None, "CFG is set on line 4"),
        ("import math", "range(EPOCHS)", 27, ""),  # what the loop does not read changes nothing
    ],
)
def test_a_length_the_cell_sets_before_the_loop_is_not_the_notebooks(before, loop, length, why):
    """'CFG.epochs = 2' in the cell, the notebook's class saying 27: R was read as 27, and every
    trial ended at epoch 2 with no rung reached and nothing said (found trying nbtune as a new
    user). A value the cell sets is read, or the length is unknown (then --max-epochs is asked for)."""
    ns = {"CFG": _Settings, "cfg": {"epochs": 27}, "EPOCHS": 27, "make": object}
    cell = f"x = 1  # tune: int(0, 3)\n{before}\nfor e in {loop}:  # tune: epochs\n    m = x\n"
    epochs = compile_(cell, metric="m", user_ns=ns).spec.epochs
    assert epochs.length == length and why in epochs.why


def test_an_interrupt_after_an_epoch_loses_none_of_it():
    """Stop now / Interrupt was checked when the epoch's value was reported, before its checkpoint
    was saved: the re-run resumed an epoch early and trained it again (found trying nbtune as a new
    user). The finished epoch is saved first."""
    program = compile_cell(
        "x = 0.5  # tune: uniform(0, 1)\nw = 0.0  # the state\nfor epoch in range(5):  # tune: epochs\n"
        "    w += x\n    loss = w\n",
        metric="loss",
        direction="minimize",
    )
    saved: list[int] = []
    stop = {"now": False}

    def checkpoint(step: int, ns: dict) -> None:
        saved.append(step)

    def epoch_ended(step: int, value: float) -> None:
        stop["now"] = step == 2  # Interrupt arrives as epoch 2 ends

    study = optuna.create_study()
    runtime = TrialRuntime(
        program,
        study.ask(),
        should_stop_now=lambda: stop["now"],
        on_epoch=epoch_ended,
        max_step=5,
        on_checkpoint=checkpoint,
    )
    with pytest.raises(TrialInterrupted):
        program.run(runtime)
    assert saved == [1, 2]  # epoch 2 finished and was kept


def test_a_placeholder_metric_an_epoch_left_alone_is_not_divergence():
    """'val_loss = float("inf")' before the loop and the loss computed every 2 epochs: epoch 1 ended
    with the placeholder, which read as a diverged trial ('lower the range's top'; found trying
    nbtune as a new user). It is the metric not set in that epoch."""
    program, rt, _ = epochs_of(
        "m = float('inf')\nfor e in range(4):  # tune: epochs\n    if e % 2 == 1:\n        m = e * 1.0\n"
    )
    with pytest.raises(MetricError, match="m was not set at the end of epoch 1") as e:
        program.run(rt)
    assert e.value.kind == "missing"
    program, rt, _ = epochs_of(
        "m = float('inf')\nfor e in range(3):  # tune: epochs\n    m = float('inf') if e == 2 else e\n"
    )
    with pytest.raises(MetricError) as e:  # a metric that does become inf is still not finite
        program.run(rt)
    assert e.value.kind != "missing"


@pytest.mark.parametrize(
    "cell, said",
    [
        # a typo on a branch a few configurations take (found trying nbtune as a new user: torch.optim.RMSProp)
        (
            "if x > 0.9:\n    y = math.Sqrt(x)\nloss = x\n",
            "line 4 of the %%tune cell reads math.Sqrt, which module 'math' does not have: the trials that run that line would fail with an AttributeError; did you mean 'sqrt'?",
        ),
        (
            "import numpy as np\nif x > 0.9:\n    y = np.arang(3)\nloss = x\n",
            "reads np.arang, which module 'numpy' does not have",
        ),
        ("import os.path as osp\nif x > 0.9:\n    y = osp.joinn('a')\nloss = x\n", "reads osp.joinn, which module"),
        # on a line every trial runs: any missing attribute
        (
            "y = math.nosuchthing(x)\nloss = x\n",
            "reads math.nosuchthing, which module 'math' does not have: the trials that run that line would fail with an AttributeError; check the name",
        ),
        # left to the trials: a branch's attribute that is no typo (a version check), asked about, caught, set, rebound
        ("if x > 0.9:\n    y = math.nosuchthing(x)\nloss = x\n", None),
        ("if hasattr(math, 'Sqrt'):\n    y = math.Sqrt(x)\nloss = x\n", None),
        ("try:\n    y = math.Sqrt(x)\nexcept AttributeError:\n    y = 0\nloss = x\n", None),
        ("math.Sqrt = math.sqrt\ny = math.Sqrt(x)\nloss = x\n", None),
        ("import types\nmath = types.SimpleNamespace(Sqrt=abs)\ny = math.Sqrt(x)\nloss = x\n", None),
        ("y = math.sqrt(x) + math.pi\nloss = x\n", None),
        ("import xml\nif x > 0.9:\n    y = xml.dom\nloss = x\n", None),  # a submodule, maybe not imported yet
    ],
)
def test_a_module_attribute_the_module_does_not_have_is_said_before_any_trial(cell, said):
    import math

    source = "x = 0.5  # tune: uniform(0, 1)\n" + cell
    if said is None:
        compile_cell(source, metric="loss", direction="minimize", user_ns={"math": math})
    else:
        with pytest.raises(ConfigError) as e:
            compile_cell(source, metric="loss", direction="minimize", user_ns={"math": math})
        assert said in str(e.value), str(e.value)
