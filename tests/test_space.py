"""Search-space dimensions: validation of each kind, its Optuna distribution, its grid and its suggestion."""

from __future__ import annotations

import json
import math
import warnings

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from nbtune.cell.space import PARAM_KINDS, Param, suggest
from nbtune.exceptions import AnnotationError


def param(kind, args, kwargs=None, default=None, name="v", lineno=4):
    return Param(name=name, kind=kind, args=args, kwargs=kwargs or {}, default=default, lineno=lineno)


@pytest.mark.parametrize(
    "kind, args, kwargs, default, what",
    [
        ("uniform", (0, "a"), {}, 0, "needs numeric bounds, got high='a'; give numbers such as 0.0 and 1.0"),
        ("uniform", (True, 1), {}, 0, "needs numeric bounds, got low=True; give numbers such as 0.0 and 1.0"),
        ("uniform", (0, None), {}, 0, "needs numeric bounds, got high=None; give numbers such as 0.0 and 1.0"),
        ("uniform", (0, math.inf), {}, 0, "needs finite bounds, got high=inf; give finite numbers"),
        ("uniform", (-math.inf, 0), {}, 0, "needs finite bounds, got low=-inf; give finite numbers"),
        ("uniform", (1, 1), {}, 1, "needs low < high, got low=1, high=1; swap or widen the bounds"),
        ("uniform", (2.0, 1.0), {}, 1, "needs low < high, got low=2.0, high=1.0; swap or widen the bounds"),
        ("int", (0, 1.5), {}, 0, "needs integer bounds, got high=1.5; use uniform() for real numbers"),
        ("int", (0.5, 2), {}, 1, "needs integer bounds, got low=0.5; use uniform() for real numbers"),
        ("int", (False, 2), {}, 1, "needs integer bounds, got low=False; use uniform() for real numbers"),
        ("int", (3, 3), {}, 3, "needs low < high, got low=3, high=3; swap or widen the bounds"),
        ("loguniform", (0, 1), {}, 0.5, "needs low > 0 (log scale), got 0; use uniform() or a low such as 1e-5"),
        (
            "loguniform",
            (-1e-3, 1),
            {},
            0.5,
            "needs low > 0 (log scale), got -0.001; use uniform() or a low such as 1e-5",
        ),
        ("logint", (0, 8), {}, 1, "needs low > 0 (log scale), got 0; use int() or a low such as 1"),
        ("logint", (-4, 8), {}, 1, "needs low > 0 (log scale), got -4; use int() or a low such as 1"),
        ("uniform", (0, 1), {"step": "a"}, 0, "step must be a number, got 'a'; fix step="),
        ("uniform", (0, 1), {"step": True}, 0, "step must be a number, got True; fix step="),
        ("uniform", (0, 1), {"step": 0}, 0, "step must be > 0, got 0; use a positive step"),
        ("uniform", (0, 1), {"step": -0.1}, 0, "step must be > 0, got -0.1; use a positive step"),
        ("int", (0, 10), {"step": 0.5}, 0, "step must be an integer, got 0.5; fix step="),
        ("int", (0, 10), {"step": True}, 0, "step must be an integer, got True; fix step="),
        ("int", (0, 10), {"step": -1}, 0, "step must be > 0, got -1; use a positive step"),
        (
            "uniform",
            (0, 1),
            {},
            2,
            "default 2 is outside the range [0, 1]; widen the range or change the assigned value",
        ),
        (
            "uniform",
            (0, 1),
            {},
            -0.5,
            "default -0.5 is outside the range [0, 1]; widen the range or change the assigned value",
        ),
        (
            "loguniform",
            (1e-5, 1e-1),
            {},
            1.0,
            "default 1.0 is outside the range [1e-05, 0.1]; widen the range or change the assigned value",
        ),
        ("uniform", (0, 1), {}, "a", "default must be a number, got 'a'; assign a number such as 0"),
        ("uniform", (0.5, 1), {}, None, "default must be a number, got None; assign a number such as 0.5"),
        ("uniform", (0, 1), {}, True, "default must be a number, got True; assign a number such as 0"),
        (
            "int",
            (0, 10),
            {},
            11,
            "default 11 is outside the range [0, 10]; widen the range or change the assigned value",
        ),
        ("int", (2, 10), {}, 1.0, "default must be an integer, got 1.0; assign an integer such as 2"),
        ("int", (0, 10), {}, True, "default must be an integer, got True; assign an integer such as 0"),
        (
            "logint",
            (1, 8),
            {},
            16,
            "default 16 is outside the range [1, 8]; widen the range or change the assigned value",
        ),
        ("choice", (), {}, None, 'needs at least one value; list the values, e.g. choice("relu", "tanh")'),
        (
            "choice",
            ("a", [1]),
            {},
            "a",
            "values must be numbers, strings, booleans, None or tuples of them, got the list [1]; write it as a tuple, (1,)",
        ),
        # (a tuple of such values is a value: hidden_layer_sizes; one of other things is not)
        (
            "choice",
            ("a", ([1],)),
            {},
            "a",
            "values must be numbers, strings, booleans, None or tuples of them, got ([1],)",
        ),
        (
            "choice",
            ("a", {"k": 1}),
            {},
            "a",
            "values must be numbers, strings, booleans, None or tuples of them, got {'k': 1}; give such values and "
            "build objects from them in the cell",
        ),
        ("choice", ("a", "a"), {}, "a", "has repeated values ['a', 'a']; list each value once"),
        ("choice", (1, 2, 1), {}, 1, "has repeated values [1, 2, 1]; list each value once"),
        (
            "choice",
            ("a", "b"),
            {},
            "c",
            "default 'c' is not among the choices ['a', 'b']; add the default to the choices or change the assigned value",
        ),
        ("choice", (1, 2), {}, True, "default True is not among the choices [1, 2]"),
        ("choice", (1, 2), {}, 1.0, "default 1.0 is not among the choices [1, 2]"),
        ("choice", (True, False), {}, 1, "default 1 is not among the choices [True, False]"),
        ("choice", ("1", "2"), {}, 1, "default 1 is not among the choices ['1', '2']"),
    ],
)
def test_validation_messages(kind, args, kwargs, default, what):
    with pytest.raises(AnnotationError) as info:
        param(kind, args, kwargs, default)
    assert str(info.value).startswith(f"line 4 of the %%tune cell: {kind} for 'v' {what}")
    assert info.value.lineno == 4


@pytest.mark.parametrize("choices, default", [((1, True), 1), ((1, 1.0), 1.0), ((0, False, "a"), "a")])
def test_choices_equal_under_eq_are_repeats(choices, default):
    """Optuna finds a choice by ==, so 1 and True (or 1 and 1.0) would share one index."""
    with pytest.raises(AnnotationError, match="has values that Python treats as equal"):
        param("choice", choices, default=default)


@pytest.mark.parametrize(
    "kind, args, kwargs, default",
    [
        ("uniform", (0, 1), {}, 0),
        ("uniform", (0, 1), {}, 1.0),
        ("uniform", (-1.5, 2), {"step": 0.5}, -1.5),
        ("uniform", (0, 10), {"step": 2}, 4),
        ("loguniform", (1e-5, 1e-1), {}, 1e-3),
        ("int", (0, 10), {}, 10),
        ("int", (-5, 5), {"step": 5}, 0),
        ("logint", (1, 1024), {}, 32),
        ("choice", ("relu",), {}, "relu"),
        ("choice", (None, "x", 2, 0.5, False), {}, None),
        ("choice", (True, False), {}, False),
    ],
)
def test_valid_params(kind, args, kwargs, default):
    p = param(kind, args, kwargs, default)
    assert (p.kind, p.args, p.kwargs, p.default) == (kind, args, kwargs, default)


def test_whole_numbers_written_as_floats_are_int_bounds():
    """'max_iter = 1000  # tune: int(1e2, 1e4)': 1e4 is how many write ten thousand (it was refused)."""
    p = param("int", (1e2, 1e4), {}, 1000)
    assert p.args == (100, 10000) and all(type(a) is int for a in p.args)
    assert param("logint", (1.0, 1024.0), {}, 32).args == (1, 1024)
    assert param("int", (1e2, 1e4), {"step": 1e2}, 1000).kwargs == {"step": 100}  # the step too
    # (not the default: the cell assigns it, and without the magic 'n = 1e3' is a float)


def test_every_kind_is_registered():
    assert list(PARAM_KINDS) == ["uniform", "loguniform", "int", "logint", "choice"]
    assert [PARAM_KINDS[k].arity for k in PARAM_KINDS] == [2, 2, 2, 2, None]
    assert {k: PARAM_KINDS[k].keywords for k in PARAM_KINDS} == {
        "uniform": frozenset({"step"}),
        "loguniform": frozenset(),
        "int": frozenset({"step"}),
        "logint": frozenset(),
        "choice": frozenset(),
    }


@pytest.mark.parametrize(
    "p, expected",
    [
        (param("uniform", (0, 1), default=0.5), FloatDistribution(0.0, 1.0)),
        (param("uniform", (0, 1), {"step": 0.25}, 0.5), FloatDistribution(0.0, 1.0, step=0.25)),
        (param("loguniform", (1e-5, 1e-1), default=1e-3), FloatDistribution(1e-5, 1e-1, log=True)),
        (param("int", (0, 10), default=3), IntDistribution(0, 10)),
        (param("int", (0, 10), {"step": 2}, 4), IntDistribution(0, 10, step=2)),
        (param("logint", (16, 512), default=64), IntDistribution(16, 512, log=True)),
        (param("choice", ("relu", "tanh", None), default=None), CategoricalDistribution(["relu", "tanh", None])),
    ],
)
def test_distribution(p, expected):
    dist = p.distribution()
    assert dist == expected
    assert type(dist) is type(expected)
    if isinstance(dist, FloatDistribution):
        assert type(dist.low) is float and type(dist.high) is float


EXACT_STEPS = [
    ((0, 1), 0.25),
    ((0, 0.8), 0.4),
    ((0, 9), 3),
    ((0, 9), 3.0),
    ((-2, 0), 2),
    ((0.1, 0.7), 0.2),
    ((0, 0.9), 0.3),  # (0.9 - 0) / 0.3 is just under 3 in floats: the top value must not be lost
    ((-1, 0.4), 0.7),
]


@pytest.mark.parametrize("args, step", EXACT_STEPS)
def test_uniform_with_step_keeps_its_top_value_and_optuna_adjusts_nothing(args, step):
    p = param("uniform", args, {"step": step}, args[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna has nothing to adjust, so it does not warn
        dist = p.distribution()
    assert dist.high == pytest.approx(args[1]) and dist.high == p.grid_values()[-1]
    assert dist.low == float(args[0]) and dist.step == step


@pytest.mark.parametrize(
    "kind, args, step, values",
    [
        ("uniform", (0, 1), 0.3, "0.0, 0.3, 0.6, 0.9"),
        ("uniform", (0.1, 0.75), 0.2, "0.1, 0.3, 0.5, 0.7"),
        ("uniform", (0, 1), 2, "0.0"),
        ("int", (0, 10), 3, "0, 3, 6, 9"),
        ("int", (1, 20), 2, "1, 3, 5, 7, 9, ..."),
    ],
)
def test_a_step_that_cannot_reach_high_is_refused(kind, args, step, values):
    """Cutting the range silently (as Optuna does, with a warning) would surprise: say it and the fix."""
    with pytest.raises(AnnotationError) as info:
        param(kind, args, {"step": step}, args[0])
    assert f"cannot reach high={args[1]!r} in steps of {step!r} from {args[0]!r} (the values are {values})" in str(
        info.value
    ) and "make high - low a multiple of step" in str(info.value)


@pytest.mark.parametrize("kind, args, step, default", [("uniform", (0, 0.9), 0.3, 0.5), ("int", (0, 9), 3, 4)])
def test_a_default_between_the_steps_is_refused(kind, args, step, default):
    with pytest.raises(AnnotationError, match=f"default {default!r} is not one of its values"):
        param(kind, args, {"step": step}, default)


@pytest.mark.parametrize(
    "p, values",
    [
        (param("int", (0, 5), default=0), [0, 1, 2, 3, 4, 5]),
        (param("int", (0, 9), {"step": 3}, 0), [0, 3, 6, 9]),
        (param("int", (-4, 4), {"step": 4}, 0), [-4, 0, 4]),
        (param("logint", (1, 4), default=2), [1, 2, 3, 4]),
        (param("uniform", (0, 1), {"step": 0.25}, 0), [0.0, 0.25, 0.5, 0.75, 1.0]),
        (param("uniform", (0, 1), {"step": 0.1}, 0), [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
        (param("uniform", (0, 0.9), {"step": 0.3}, 0), [0.0, 0.3, 0.6, 0.9]),
        (param("choice", ("b", "a", None), default="a"), ["b", "a", None]),
        (param("uniform", (0, 1), default=0), None),
        (param("loguniform", (1e-3, 1), default=0.1), None),
    ],
)
def test_grid_values(p, values):
    assert p.grid_values() == values


@pytest.mark.parametrize(
    "p, text",
    [
        (param("loguniform", (1e-5, 1e-1), default=1e-3), "loguniform(1e-05, 0.1)"),
        (param("uniform", (0.0, 1), {"step": 0.25}, 0.5), "uniform(0.0, 1, step=0.25)"),
        (param("int", (1, 10), default=3), "int(1, 10)"),
        (param("choice", ("relu", None, True), default=None), "choice('relu', None, True)"),
    ],
)
def test_describe(p, text):
    assert p.describe() == text


def test_fingerprint_is_json_and_ignores_default_and_line():
    a = param("uniform", (0, 1), {"step": 0.5}, 0.5, name="x", lineno=2)
    fp = a.fingerprint()
    assert fp == ["x", "uniform", [0, 1], [("step", 0.5)]]
    assert json.loads(json.dumps(fp)) == ["x", "uniform", [0, 1], [["step", 0.5]]]
    assert param("uniform", (0, 1), {"step": 0.5}, 1.0, name="x", lineno=9).fingerprint() == fp


@pytest.mark.parametrize(
    "other",
    [
        param("uniform", (0, 2), {"step": 0.5}, 0.5, name="x"),
        param("uniform", (0, 1), {"step": 0.25}, 0.5, name="x"),
        param("uniform", (0, 1), {}, 0.5, name="x"),
        param("uniform", (0, 1), {"step": 0.5}, 0.5, name="y"),
        param("loguniform", (0.1, 1), {}, 0.5, name="x"),
    ],
)
def test_fingerprint_changes_with_the_space(other):
    assert other.fingerprint() != param("uniform", (0, 1), {"step": 0.5}, 0.5, name="x").fingerprint()


SUGGESTED = [
    param("uniform", (0, 1), default=0.5),
    param("uniform", (0, 1), {"step": 0.25}, 0.5),
    param("loguniform", (1e-5, 1e-1), default=1e-3),
    param("int", (0, 10), {"step": 2}, 4),
    param("logint", (16, 512), default=64),
    param("choice", ("relu", "tanh", None), default=None),
]


@pytest.mark.parametrize("p, value", [(p, v) for p, v in zip(SUGGESTED, [0.25, 0.75, 3e-4, 6, 100, "tanh"])])
def test_suggest_with_a_fixed_trial(p, value):
    trial = optuna.trial.FixedTrial({"v": value})
    assert suggest(trial, "v", p.distribution()) == value
    assert trial.distributions["v"] == p.distribution()


@pytest.mark.parametrize("p", SUGGESTED)
def test_suggest_with_a_study_trial(p):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    dist = p.distribution()
    value = suggest(trial, "v", dist)
    assert trial.params["v"] == value
    assert study._storage.get_trial(trial._trial_id).distributions["v"] == dist
    if p.grid_values() is not None:
        assert value in p.grid_values()
    else:
        assert p.args[0] <= value <= p.args[1]
