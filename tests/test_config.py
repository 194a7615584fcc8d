"""One place per option: TuneConfig declares every option; tune(), tune_async() and %%tune follow it."""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest

import nbtune
from nbtune._config import TuneConfig, parse_timeout
from nbtune.exceptions import ConfigError


def test_tune_and_tune_async_signatures_come_from_the_config():
    for fn in (nbtune.tune, nbtune.tune_async):
        params = inspect.signature(fn).parameters
        assert next(iter(params)) == "cell"
        for f in fields(TuneConfig):
            assert params[f.name].default == f.default, f.name
            assert params[f.name].kind is inspect.Parameter.KEYWORD_ONLY
        assert f"n_trials: {next(f for f in fields(TuneConfig) if f.name == 'n_trials').metadata['help']}" in fn.__doc__


def test_magic_defaults_are_the_config_defaults(ip):
    from IPython.core.magic_arguments import parse_argstring

    magic = ip.magics_manager.registry["TuneMagics"]
    args = parse_argstring(magic.tune, "")
    flagged = [f for f in fields(TuneConfig) if f.metadata.get("flags")]
    assert len(flagged) >= 16
    for f in flagged:
        assert getattr(args, f.name) == f.default, f.name
    assert args.out is None


@pytest.mark.parametrize(
    "line, attr, value",
    [
        ("-n 7", "n_trials", 7),
        ("--trials 7", "n_trials", 7),
        ("-j 2", "n_jobs", 2),
        ("--jobs -1", "n_jobs", -1),
        ("--fresh", "fresh", True),
        ("--apply", "apply", True),
        ("--min-epochs 3", "min_epochs", 3),
        ("--max-epochs 27", "max_epochs", 27),
        ("--timeout 10m", "timeout", "10m"),
        ("--seed 4", "seed", 4),
        ("--note 'before the new features'", "note", "before the new features"),
    ],
)
def test_magic_flags_map_to_config_fields(ip, line, attr, value):
    magic = ip.magics_manager.registry["TuneMagics"]
    _, cfg = magic._config("--maximize acc " + line)
    assert getattr(cfg, attr) == value and cfg.metric == "acc" and cfg.direction == "maximize"
    assert cfg.user_ns is ip.user_ns


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="tune\\(\\) got an unexpected keyword argument 'trials'"):
        nbtune.tune("x = 1  # tune: int(0, 2)\n", minimize="x", trials=3)


@pytest.mark.parametrize(
    "word, hint",
    [("direction", "maximize='VAR' or minimize='VAR'"), ("pruner", "scheduler= \\(asha"), ("storage", "store=")],
)
def test_an_optuna_keyword_names_nbtunes_own(word, hint):
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{word}'; in nbtune it is {hint}"):
        nbtune.tune("x = 1  # tune: int(0, 2)\n", minimize="x", **{word: "minimize"})


@pytest.mark.parametrize(
    "kw, said",
    [
        ({"directions": ["maximize", "minimize"]}, "unexpected keyword argument 'directions'; nbtune tunes one metric"),
        ({"sampler": "nsga2"}, "got 'nsga2': nbtune tunes one metric: keep the others as guardrails"),
        ({"maximize": "val_f1,n_coef"}, "got 'val_f1,n_coef'; nbtune tunes one metric"),
        ({"minimize": "n_coef"}, "both --maximize and --minimize were given; .*; nbtune tunes one metric"),
        ({"callbacks": []}, "unexpected keyword argument 'callbacks'; it is not an option"),
        ({"maximize": ["val_f1", "n_coef"]}, r"got \['val_f1', 'n_coef'\]; nbtune tunes one metric"),
        ({"sampler": "NSGAIISampler"}, "got 'nsgaiisampler': nbtune tunes one metric"),
    ],
)
def test_every_attempt_at_several_objectives_is_told_nbtune_tunes_one_metric(kw, said, tmp_path):
    """Each attempt got another message, most without a word on what to do (found trying nbtune as
    an Optuna user); before any trial."""
    cell = "alpha = 0.1  # tune: loguniform(0.01, 1.0)\nval_f1 = alpha\nn_coef = 3\n"
    options = {"maximize": "val_f1", **kw}
    with pytest.raises((TypeError, nbtune.ConfigError), match=said):
        nbtune.tune(cell, store=tmp_path, view=None, **options)
    with pytest.raises(nbtune.ConfigError, match=r"line 4 of the cell: 'objectives' is 2 values"):
        nbtune.tune(cell + "objectives = (val_f1, n_coef)\n", maximize="objectives", store=tmp_path, view=None)
    assert not any(tmp_path.iterdir())


def test_an_optuna_pruner_or_a_samplers_text_is_told_the_name_to_use(tmp_path):
    import optuna

    with pytest.raises(nbtune.ConfigError) as e:
        nbtune.tune("x = 1  # tune: int(0, 2)\n", minimize="x", scheduler=optuna.pruners.MedianPruner(n_warmup_steps=3))
    assert str(e.value) == (
        "--scheduler takes a name, not a MedianPruner object: use 'median' (nbtune makes it itself; its settings are "
        "not taken)"
    )
    with pytest.raises(nbtune.ConfigError, match="got 'tpesampler': it takes a name: use 'tpe'"):
        nbtune.tune("x = 1  # tune: int(0, 2)\n", minimize="x", sampler=str(optuna.samplers.TPESampler()))
    for pruner, name in ((optuna.pruners.SuccessiveHalvingPruner(), "asha"), (optuna.pruners.NopPruner(), "none")):
        with pytest.raises(nbtune.ConfigError, match=f"not a {type(pruner).__name__} object: use '{name}'"):
            nbtune.tune("x = 1  # tune: int(0, 2)\n", minimize="x", scheduler=pruner)
    with pytest.raises(nbtune.ConfigError, match="NSGAIISampler object; .*; nbtune tunes one metric"):
        nbtune.tune("x = 1  # tune: int(0, 2)\n", minimize="x", sampler=optuna.samplers.NSGAIISampler())


def test_names_are_taken_in_any_case_and_a_sampler_object_is_one_line(tmp_path):
    import optuna

    cell = "x = 1  # tune: int(0, 2)\n"
    res = nbtune.tune(cell, minimize="x", n_trials=3, sampler="TPE", backend="Auto", store=tmp_path, view=None)
    assert res.n_finished == 3 and res.sampler == "tpe"
    with pytest.raises(
        nbtune.ConfigError, match="^--sampler takes a name, not an Optuna CmaEsSampler object: use 'cmaes'"
    ):
        nbtune.tune(cell, minimize="x", sampler=optuna.samplers.CmaEsSampler(), store=tmp_path, view=None)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "no metric was given"),
        ({"maximize": "a", "minimize": "b"}, "both --maximize and --minimize were given"),
        ({"maximize": "a", "n_trials": 0}, "--trials must be a whole number >= 1; got 0"),
        ({"maximize": "a", "n_trials": True}, "--trials must be a whole number >= 1; got True"),
        ({"maximize": "a", "n_trials": 2.5}, "--trials must be a whole number"),
        ({"maximize": "a", "seed": -1}, "--seed must be a whole number >= 0; got -1"),
        ({"maximize": "a", "max_epochs": 0}, "--max-epochs must be >= 1; got 0"),
        ({"maximize": "a", "timeout": "soon"}, "--timeout takes seconds or a duration"),
        ({"maximize": "a", "name": "a b"}, "study name 'a b' may only use letters"),
    ],
)
def test_checks(kwargs, match):
    with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace("+", r"\+")):
        TuneConfig(**kwargs).check()


def test_a_good_config_passes_and_derives():
    cfg = TuneConfig(minimize="loss", timeout="2h").check()
    assert (cfg.metric, cfg.direction, cfg.seconds) == ("loss", "minimize", 7200.0)


@pytest.mark.parametrize(
    "value, seconds",
    [
        (None, None),
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("90 sec", 90.0),
        ("10m", 600.0),
        ("2min", 120.0),
        ("2h", 7200.0),
        (" 3.5h ", 12600.0),
        ("1m30s", 90.0),
        ("1h30m", 5400.0),
        ("1h 2m 3s", 3723.0),
    ],
)
def test_parse_timeout(value, seconds):
    assert parse_timeout(value) == seconds


@pytest.mark.parametrize("value", ["soon", "10d", "-5", 0, -1, True, "0s", "1m30", "30s1m", "hms", " "])
def test_parse_timeout_rejects(value):
    with pytest.raises(ConfigError, match="--timeout"):
        parse_timeout(value)


def test_a_cell_given_to_tune_as_a_string_counts_its_own_lines(tmp_path):
    """From a script there is no %%tune line above the cell: 'line 2 of the %%tune cell' named the
    wrong line, and a cell that is not one (found trying nbtune as a new user)."""
    with pytest.raises(nbtune.AnnotationError, match="^line 1 of the cell: loguniform for 'x' needs low > 0"):
        nbtune.tune("x = 0.5  # tune: loguniform(0, 1)\nloss = x\n", minimize="loss", store=tmp_path, view=None)
    cell = "x = 0.5  # tune: uniform(0, 1)\nraise ValueError('bad')\nloss = x\n"
    with pytest.raises(nbtune.TrialsFailedError, match=r"ValueError: bad \(line 2 of the cell\)"):
        nbtune.tune(cell, minimize="loss", store=tmp_path, view=None)
