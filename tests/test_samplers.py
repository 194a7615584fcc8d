"""The ``--sampler`` registry: checks against the space and the installed packages, and the Optuna samplers."""

from __future__ import annotations

import importlib.util

import optuna
import pytest

from nbtune.cell.space import Param, suggest
from nbtune.exceptions import ConfigError
from nbtune.run.samplers import (
    SAMPLERS,
    SamplerKind,
    check_sampler,
    grid_size,
    make_sampler,
    register_sampler,
    sampler_kind,
)

LR = Param("lr", "loguniform", (1e-5, 1e-1), default=1e-3, lineno=3)
DROP = Param("drop", "uniform", (0.0, 0.5), {"step": 0.1}, default=0.2, lineno=4)
LAYERS = Param("layers", "int", (1, 4), default=2, lineno=5)
ACT = Param("act", "choice", ("relu", "tanh", "gelu"), default="relu", lineno=6)
FINITE = [DROP, LAYERS, ACT]

OPTUNA_CLASS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "grid": "GridSampler",
    "gp": "GPSampler",
    "cmaes": "CmaEsSampler",
    "qmc": "QMCSampler",
}

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def installed(name):
    needs = SAMPLERS[name].needs
    return needs is None or importlib.util.find_spec(needs[0]) is not None


@pytest.fixture
def registry_guard():
    before = dict(SAMPLERS)
    yield
    SAMPLERS.clear()
    SAMPLERS.update(before)


def test_registered_names():
    assert list(SAMPLERS) == ["tpe", "random", "grid", "gp", "cmaes", "qmc"]
    assert [k for k in SAMPLERS if SAMPLERS[k].enumerates] == ["grid"]
    assert {k: SAMPLERS[k].needs for k in SAMPLERS if SAMPLERS[k].needs} == {
        "gp": ("torch", "gp"),
        "cmaes": ("cmaes", "cmaes"),
        "qmc": ("scipy", "qmc"),
    }
    assert all(SAMPLERS[k].help for k in SAMPLERS)


@pytest.mark.parametrize("name", ["TPE", "bayes", "", "grid "])
def test_unknown_sampler_lists_the_choices(name):
    for call in (lambda: sampler_kind(name), lambda: check_sampler(name, [LR]), lambda: make_sampler(name, [LR], 0)):
        with pytest.raises(ConfigError) as info:
            call()
        assert str(info.value) == f"--sampler must be one of tpe, random, grid, gp, cmaes, qmc; got {name!r}"


@pytest.mark.parametrize(
    "params, lineno, described",
    [
        ([LR], 3, "lr = loguniform(1e-05, 0.1)"),
        ([DROP, LAYERS, LR], 3, "lr = loguniform(1e-05, 0.1)"),
        ([Param("w", "uniform", (0, 1), default=0.5, lineno=9), LR], 9, "w = uniform(0, 1)"),
    ],
)
def test_grid_on_a_continuous_space_names_the_line(params, lineno, described):
    with pytest.raises(ConfigError) as info:
        check_sampler("grid", params)
    assert str(info.value) == (
        f"--sampler grid needs a finite space, but line {lineno} of the %%tune cell ({described}) is continuous; "
        "give it step=, use choice(...), or pick --sampler random/tpe"
    )


@pytest.mark.parametrize("name", ["tpe", "random", "grid"])
def test_check_sampler_on_a_finite_space(name):
    assert check_sampler(name, FINITE) is SAMPLERS[name]


@pytest.mark.parametrize("name", ["tpe", "random"])
def test_continuous_spaces_are_fine_for_samplers_that_draw(name):
    assert check_sampler(name, [LR, DROP]) is SAMPLERS[name]


@pytest.mark.parametrize(
    "params, size",
    [
        ([], 1),
        ([DROP], 6),
        ([LAYERS], 4),
        ([ACT], 3),
        (FINITE, 72),
        ([Param("b", "int", (0, 100), {"step": 10}, default=0), Param("c", "choice", (True,), default=True)], 11),
        ([LR, ACT], 0),
    ],
)
def test_grid_size(params, size):
    assert grid_size(params) == size


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.skipif(not installed(n), reason=f"{n} needs {SAMPLERS[n].needs}"))
        for n in SAMPLERS
    ],
)
def test_make_sampler_returns_the_optuna_sampler(name):
    params = FINITE if name == "grid" else [LR, DROP, LAYERS]
    check_sampler(name, params)
    sampler = make_sampler(name, params, seed=0)
    assert type(sampler) is getattr(optuna.samplers, OPTUNA_CLASS[name])


def test_tpe_is_multivariate():
    assert make_sampler("tpe", [LR], 7)._multivariate is True


def _objective(trial):
    return sum(float(suggest(trial, p.name, p.distribution()) != p.default) for p in FINITE)


@pytest.mark.parametrize("name", ["tpe", "random", "grid"])
def test_the_seed_makes_the_search_repeatable(name):
    runs = []
    for _ in range(2):
        study = optuna.create_study(sampler=make_sampler(name, FINITE, seed=3))
        study.optimize(_objective, n_trials=12)
        runs.append([t.params for t in study.trials])
    assert runs[0] == runs[1]
    assert len({tuple(sorted(p.items())) for p in runs[0]}) > 1


def test_grid_sampler_walks_every_grid_point():
    study = optuna.create_study(sampler=make_sampler("grid", FINITE, seed=0))
    study.optimize(_objective, n_trials=grid_size(FINITE))
    points = {(t.params["drop"], t.params["layers"], t.params["act"]) for t in study.trials}
    assert len(points) == 72
    assert {d for d, _, _ in points} == set(DROP.grid_values())


@pytest.mark.skipif(installed("gp"), reason="torch is installed")
def test_a_missing_package_names_the_extra():
    with pytest.raises(
        ConfigError, match=r"^--sampler gp needs the package 'torch'; install it with: pip install 'nbtune\[gp\]'$"
    ):
        check_sampler("gp", [LR])


def test_a_new_sampler_kind(registry_guard):
    made = []

    def make(params, seed):
        made.append(([p.name for p in params], seed))
        return optuna.samplers.BruteForceSampler(seed=seed)

    kind = register_sampler(SamplerKind("brute", make, enumerates=True, help="every point, in random order"))
    assert sampler_kind("brute") is kind and list(SAMPLERS)[-1] == "brute"
    with pytest.raises(
        ConfigError, match="^--sampler must be one of tpe, random, grid, gp, cmaes, qmc, brute; got 'x'$"
    ):
        sampler_kind("x")
    assert check_sampler("brute", FINITE) is kind
    with pytest.raises(ConfigError, match="^--sampler brute needs a finite space, but line 3 of the %%tune cell"):
        check_sampler("brute", [LR])
    assert isinstance(make_sampler("brute", [ACT], 5), optuna.samplers.BruteForceSampler)
    assert made == [(["act"], 5)]


def test_a_new_sampler_kind_checks_its_package(registry_guard):
    register_sampler(SamplerKind("exotic", lambda params, seed: None, needs=("nbtune_no_such_module", "exotic")))
    with pytest.raises(ConfigError) as info:
        check_sampler("exotic", [LR])
    assert str(info.value) == (
        "--sampler exotic needs the package 'nbtune_no_such_module'; install it with: pip install 'nbtune[exotic]'"
    )


def test_the_registry_is_restored():
    assert "brute" not in SAMPLERS and "exotic" not in SAMPLERS
