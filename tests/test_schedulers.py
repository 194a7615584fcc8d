"""The arithmetic of the schedulers: validation, brackets, rungs, descriptions and the sentences of a stop.

``test_scheduler.py`` runs the schedulers end to end; this module checks the numbers alone.
"""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState, create_trial

import nbtune.run.pbt  # noqa: F401  (registers --scheduler pbt, as nbtune.tune's imports do: this module runs alone too)
from nbtune.exceptions import ConfigError
from nbtune.run.schedulers import (
    SCHEDULERS,
    BaseScheduler,
    SchedulerSpec,
    first_rung,
    format_decision,
    make_pruner,
    register_scheduler,
    scheduler_kind,
)

KINDS = "hyperband, asha, median, none, pbt"


def test_defaults():
    spec = SchedulerSpec()
    assert (spec.kind, spec.R, spec.r, spec.eta, spec.metric, spec.direction) == (
        "none",
        None,
        1,
        3,
        "value",
        "maximize",
    )
    assert spec.scheduler is SCHEDULERS["none"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "sha"}, f"--scheduler must be one of {KINDS}; got 'sha'"),
        ({"kind": "Hyperband"}, f"--scheduler must be one of {KINDS}; got 'Hyperband'"),
        ({"kind": "asha", "r": 0}, "--min-epochs must be >= 1, got 0"),
        ({"kind": "median", "r": -2}, "--min-epochs must be >= 1, got -2"),
        ({"kind": "hyperband", "R": 27, "eta": 1}, "--eta must be >= 2 (the reduction factor), got 1"),
        ({"kind": "none", "eta": 0}, "--eta must be >= 2 (the reduction factor), got 0"),
        ({"kind": "hyperband", "R": 2, "r": 3}, "the epochs loop has 2 epochs, fewer than --min-epochs 3"),
        ({"kind": "asha", "R": 4, "r": 5}, "the epochs loop has 4 epochs, fewer than --min-epochs 5"),
    ],
)
def test_spec_validation(kwargs, message):
    with pytest.raises(ConfigError) as info:
        SchedulerSpec(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "median", "R": 2, "r": 3},
        {"kind": "none", "R": 1, "r": 5},
        {"kind": "asha", "R": 3, "r": 3},
        {"kind": "hyperband", "R": None, "r": 4},
        {"kind": "asha", "eta": 2},
    ],
)
def test_spec_accepts(kwargs):
    assert SchedulerSpec(**kwargs).kind == kwargs["kind"]


@pytest.mark.parametrize(
    "name, traits",
    [
        ("hyperband", (True, True, True)),
        ("asha", (True, True, True)),
        ("median", (True, False, False)),
        ("none", (False, False, False)),
    ],
)
def test_scheduler_traits(name, traits):
    kind = scheduler_kind(name)
    assert kind is SCHEDULERS[name] and kind.name == name
    assert (kind.needs_epochs, kind.needs_R, kind.rungs) == traits


@pytest.mark.parametrize("name", ["", "ASHA", "successive-halving"])
def test_scheduler_kind_lists_the_choices(name):
    with pytest.raises(ConfigError) as info:
        scheduler_kind(name)
    assert str(info.value) == f"--scheduler must be one of {KINDS}; got {name!r}"


@pytest.mark.parametrize(
    "kind, R, r, eta, brackets",
    [
        ("hyperband", 81, 1, 3, 5),
        ("hyperband", 80, 1, 3, 4),
        ("hyperband", 1000, 1, 10, 4),
        ("hyperband", 10, 1, 2, 4),
        ("hyperband", 16, 2, 2, 4),
        ("hyperband", 5, 5, 3, 1),
        ("hyperband", None, 1, 3, 1),
        ("asha", 81, 1, 3, 1),
        ("median", 81, 1, 3, 1),
        ("none", 81, 1, 3, 1),
    ],
)
def test_n_brackets(kind, R, r, eta, brackets):
    assert SchedulerSpec(kind=kind, R=R, r=r, eta=eta).n_brackets == brackets


@pytest.mark.parametrize(
    "R, eta, n, r",
    [
        (27, 3, 19, 3),  # -n 20 less the baseline: rungs at 3 and 9, 19 -> 6 -> 2 reach 27
        (27, 3, 26, 3),
        (27, 3, 27, 1),  # 27 -> 9 -> 3 -> 1: rungs at 1, 3, 9
        (27, 3, 500, 1),  # never below one epoch
        (27, 3, 8, 9),  # fewer than eta**2: one rung
        (27, 3, 1, 9),  # fewer than eta: still one rung (the end of the search promotes the best)
        (10, 3, 19, 2),  # rounded up: rungs at 2 and 6, below R
        (10, 3, 8, 4),
        (32, 4, 30, 2),  # rungs at 2 and 8
        (5, 3, 19, 1),  # folds
        (1, 3, 19, 1),
        (None, 3, 19, 1),  # R unknown
        (27, 1, 19, 1),  # --eta 1: SchedulerSpec refuses it afterwards, with the fix
        (27, 3, 10**18, 1),
    ],
)
def test_first_rung(R, eta, n, r):
    assert first_rung(R, eta, n) == r


def test_first_rung_is_the_earliest_that_n_configurations_fill():
    """Every rung keeps at least one of the n trials on merit, and from one epoch earlier the
    last rung would not (unless r is already 1); a search of fewer than eta**2 keeps one rung."""
    for R in range(1, 90):
        for eta in (2, 3, 4):
            for n in range(1, 300):
                r = first_rung(R, eta, n)
                rungs = SchedulerSpec(kind="asha", R=R, r=r, eta=eta).rung_epochs()
                assert 1 <= r <= R and len(rungs) <= max(1, math.floor(math.log(n, eta) + 1e-9))
                if len(rungs) > 1:
                    assert n // eta ** len(rungs) >= 1, (R, eta, n, r, rungs)
                if r > 1:  # from one epoch earlier, the last rung would keep none on merit
                    earlier = SchedulerSpec(kind="asha", R=R, r=r - 1, eta=eta).rung_epochs()
                    assert n // eta ** len(earlier) == 0, (R, eta, n, r, earlier)


@pytest.mark.parametrize(
    "kind, R, r, eta, s, rungs",
    [
        ("asha", 27, 1, 3, 0, [1, 3, 9]),
        ("asha", 28, 1, 3, 0, [1, 3, 9, 27]),
        ("asha", 27, 1, 3, 1, [3, 9]),
        ("asha", 27, 1, 3, 2, [9]),
        ("asha", 27, 1, 3, 3, []),
        ("asha", 20, 2, 2, 0, [2, 4, 8, 16]),
        ("asha", 3, 3, 3, 0, []),
        ("hyperband", 81, 1, 3, 4, []),
        ("hyperband", 81, 1, 3, 3, [27]),
        ("hyperband", 100, 5, 4, 1, [20, 80]),
        ("median", 27, 1, 3, 0, []),
        ("none", 27, 1, 3, 0, []),
    ],
)
def test_rung_epochs(kind, R, r, eta, s, rungs):
    assert SchedulerSpec(kind=kind, R=R, r=r, eta=eta).rung_epochs(s) == rungs


def test_rung_epochs_without_R_stop_after_21_rungs():
    rungs = SchedulerSpec(kind="asha", r=2, eta=3).rung_epochs()
    assert rungs == [2 * 3**k for k in range(21)]
    assert SchedulerSpec(kind="asha", r=2, eta=3).rung_epochs(2) == [2 * 3**k for k in range(2, 23)]


@pytest.mark.parametrize(
    "r, eta, step, rung",
    [
        (1, 3, None, None),
        (1, 3, 0, None),
        (2, 3, 1, None),
        (1, 3, 1, 0),
        (1, 3, 2, 0),
        (1, 3, 3, 1),
        (1, 3, 8, 1),
        (1, 3, 9, 2),
        (1, 3, 26, 2),
        (1, 3, 243, 5),
        (1, 10, 1000, 3),
        (1, 10, 999, 2),
        (3, 5, 375, 3),
        (3, 5, 374, 2),
        (2, 4, 7, 0),
        (2, 4, 8, 1),
        (2, 4, 128, 3),
    ],
)
def test_rung_of(r, eta, step, rung):
    for kind in ("asha", "hyperband"):
        assert SchedulerSpec(kind=kind, R=10_000, r=r, eta=eta).rung_of(step) == rung


@pytest.mark.parametrize("kind", ["median", "none"])
@pytest.mark.parametrize("step", [None, 1, 3, 27])
def test_rung_of_without_rungs(kind, step):
    assert SchedulerSpec(kind=kind, R=27).rung_of(step) is None


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"kind": "hyperband", "R": 27}, "Hyperband (r=1, R=27, eta=3, 4 brackets)"),
        ({"kind": "hyperband", "R": 100, "r": 2, "eta": 4}, "Hyperband (r=2, R=100, eta=4, 3 brackets)"),
        ({"kind": "asha", "R": 27}, "ASHA (r=1, R=27, eta=3, rungs at epochs [1, 3, 9])"),
        ({"kind": "asha", "R": 20, "r": 2, "eta": 2}, "ASHA (r=2, R=20, eta=2, rungs at epochs [2, 4, 8, 16])"),
        (
            {"kind": "asha", "R": 3, "r": 3},
            "ASHA (r=3, R=3, eta=3: no rung before the last epoch, every trial runs to the end)",
        ),
        (
            {"kind": "asha", "R": 1},
            "ASHA (r=1, R=1, eta=3: no rung before the last epoch, every trial runs to the end)",
        ),
        ({"kind": "median", "R": 27, "r": 5}, "median stopping (after 5 epochs)"),
        ({"kind": "none", "R": 27}, "no scheduler: every trial runs to its end"),
        ({"kind": "none"}, "no scheduler: every trial runs to its end"),
    ],
)
def test_describe(kwargs, text):
    assert SchedulerSpec(**kwargs).describe() == text


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"kind": "median", "r": 1}, "median stopping (after 1 epoch)"),
        ({"kind": "hyperband", "R": 3, "r": 3}, "Hyperband (r=3, R=3, eta=3, 1 bracket)"),
    ],
)
def test_describe_in_the_singular(kwargs, text):
    assert SchedulerSpec(**kwargs).describe() == text


@pytest.mark.parametrize(
    "kind, inner",
    [
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("asha", optuna.pruners.SuccessiveHalvingPruner),
        ("median", optuna.pruners.MedianPruner),
    ],
)
def test_make_pruner_wraps_optunas(kind, inner):
    spec = SchedulerSpec(kind=kind, R=27)
    pruner = make_pruner(spec)
    assert type(pruner).__name__ == "ExplainedPruner" and isinstance(pruner, optuna.pruners.BasePruner)
    assert type(pruner._inner) is inner and pruner._spec is spec
    assert type(make_pruner(SchedulerSpec(kind="asha", R=9))) is type(pruner)


def test_no_scheduler_never_prunes():
    assert SCHEDULERS["none"].pruner(SchedulerSpec()) is None
    assert type(make_pruner(SchedulerSpec())) is optuna.pruners.NopPruner


def _median_study(curves):
    study = optuna.create_study()
    for curve in curves:
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=curve[max(curve)], intermediate_values=curve))
    return study


@pytest.mark.parametrize(
    "direction, others, mine, value, cutoff, n",
    [
        ("maximize", [{1: 0.5, 2: 0.6}, {1: 0.7, 2: 0.8}, {1: 0.9, 2: 1.0}], {1: 0.3, 2: 0.4}, 0.4, 0.8, 3),
        (
            "maximize",
            [{1: 0.5, 2: 0.6}, {1: 0.7, 2: 0.8}, {1: 0.9, 2: 1.0}, {1: 0.1, 2: 0.2}],
            {1: 0.55, 2: 0.3},
            0.55,
            0.7,
            4,
        ),
        ("minimize", [{1: 5.0, 2: 4.0}, {1: 3.0, 2: 2.0}, {1: 1.0}], {1: 9.0, 2: 7.0}, 7.0, 3.0, 2),
    ],
)
def test_median_explains_with_the_median_of_completed_trials(direction, others, mine, value, cutoff, n):
    study = _median_study(others)
    study.add_trial(create_trial(state=TrialState.PRUNED, intermediate_values=mine))
    trial = study.trials[-1]
    spec = SchedulerSpec(kind="median", metric="acc", direction=direction)
    d = SCHEDULERS["median"].explain(None, spec, study, trial, {"epoch": 2, "value": mine[2], "scheduler": "median"})
    assert d["value"] == pytest.approx(value) and d["cutoff"] == pytest.approx(cutoff)
    assert d["n_compared"] == n and d["rung"] is None and d["bracket"] is None
    assert d["rule"] == "best so far worse than the median of completed trials at this epoch"


@pytest.mark.parametrize(
    "decision, direction, sentence",
    [
        ({"epoch": 3, "reason": "acc is NaN"}, "maximize", "trial 5 stopped at epoch 3: acc is NaN"),
        (
            {"epoch": None, "reason": "stopped by the scheduler"},
            "minimize",
            "trial 5 stopped at epoch None: stopped by the scheduler",
        ),
        (
            {"epoch": 2, "rung": 0, "reason": "acc is NaN"},
            "maximize",
            "trial 5 stopped at epoch 2 (rung 0): acc is NaN",
        ),
        (
            {"epoch": 4, "scheduler": "median", "value": 0.123456, "cutoff": 0.5, "n_compared": 7},
            "maximize",
            "trial 5 stopped at epoch 4: best acc 0.1235 < median 0.5 of 7 completed trials",
        ),
        (
            {"epoch": 4, "scheduler": "median", "value": 2.5, "cutoff": 1.25, "n_compared": 3, "rung": None},
            "minimize",
            "trial 5 stopped at epoch 4: best acc 2.5 > median 1.25 of 3 completed trials",
        ),
        (
            {
                "epoch": 9,
                "rung": 2,
                "bracket": None,
                "scheduler": "asha",
                "value": 0.9,
                "cutoff": 0.95,
                "n_keep": 1,
                "n_compared": 3,
            },
            "maximize",
            "trial 5 stopped at epoch 9 (rung 2): acc 0.9 < cutoff 0.95, only the top 1 of 3 go on",
        ),
        (
            {
                "epoch": 3,
                "rung": 1,
                "bracket": 0,
                "scheduler": "hyperband",
                "value": 1234567.0,
                "cutoff": 1000.0,
                "n_keep": 4,
                "n_compared": 12,
            },
            "minimize",
            "trial 5 stopped at epoch 3 (rung 1, bracket 0): acc 1.235e+06 > cutoff 1000, only the top 4 of 12 go on",
        ),
        (
            {"epoch": 1, "rung": 0, "bracket": 2, "value": -0.5, "cutoff": -0.25, "n_keep": 1, "n_compared": 1},
            "maximize",
            "trial 5 stopped at epoch 1 (rung 0, bracket 2): acc -0.5 < cutoff -0.25, only the top 1 of 1 go on",
        ),
    ],
)
def test_format_decision(decision, direction, sentence):
    assert format_decision(5, decision, "acc", direction) == sentence


class _Patience(BaseScheduler):
    name = "patience"


def test_a_new_scheduler_is_one_registration():
    try:
        kind = register_scheduler(_Patience())
        assert scheduler_kind("patience") is kind
        spec = SchedulerSpec(kind="patience", R=9)
        assert (spec.describe(), spec.n_brackets, spec.rung_epochs(), spec.rung_of(9)) == (
            "no scheduler: every trial runs to its end",
            1,
            [],
            None,
        )
        assert type(make_pruner(spec)) is optuna.pruners.NopPruner
        with pytest.raises(ConfigError, match=f"^--scheduler must be one of {KINDS}, patience; got 'x'$"):
            scheduler_kind("x")
    finally:
        SCHEDULERS.pop("patience", None)
    with pytest.raises(ConfigError, match="got 'patience'"):
        SchedulerSpec(kind="patience")
