"""Fuzzing: no cell and no %%tune line makes nbtune fail with an internal traceback.

Every input either works or gets nbtune's own one-line error (AnnotationError, CellError,
ConfigError, or IPython's UsageError from the magic).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from nbtune._config import TuneConfig
from nbtune._tune import _compile
from nbtune.cell.annotations import ANNOTATIONS, parse_cell
from nbtune.cell.program import compile_cell
from nbtune.exceptions import NbtuneError

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

literal = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["True", "False", "None", "'relu'", '"a"', "1e-5", "-0.0", "(1, 2)", "[1]", "{}", "x", "1j"]),
)
arguments = st.lists(literal, max_size=4).map(", ".join)
keyword = st.sampled_from(["", ", step=0.5", ", step=2", ", step=0", ", step=-1", ", stride=2", ", step='a'", ", **k"])
kind = st.one_of(st.sampled_from(sorted(ANNOTATIONS)), st.sampled_from(["Uniform", "seed", "fold", "", "tune"]))
annotation = st.one_of(
    st.builds(lambda k, a, kw: f"{k}({a}{kw})", kind, arguments, keyword),
    kind,
    st.text(max_size=30).filter(lambda t: "\n" not in t and "\r" not in t),
)
comment = st.builds(
    lambda prefix, a: f"{prefix}{a}",
    st.sampled_from(["# tune: ", "#tune:", "# Tune: ", "# tune ", "# tune:"]),
    annotation,
)
statement = st.one_of(
    st.builds(lambda v, d, c: f"{v} = {d}  {c}", st.sampled_from(["x", "y", "lr", "loss"]), literal, comment),
    st.builds(lambda c: f"for epoch in range(3):  {c}\n    loss = epoch", comment),
    st.sampled_from(
        [
            "x = 1  # tune: int(0, 3)",
            "x = 0.5  # tune: uniform(0, 1)",
            "lr = 1e-3  # tune: loguniform(1e-5, 1)",
            "act = 'a'  # tune: choice('a', 'b')",
        ]
    ),
    st.sampled_from(
        [
            "loss = x",
            "y = 1",
            "x = x * 2",
            "if x:\n    loss = 1",
            "def f():\n    return x",
            "loss = (",
            "  indented = 1",
            "for i in []:\n    pass",
            "import math",
            "%time x = 1",
            "!echo hi",
        ]
    ),
)
cell = st.lists(statement, min_size=1, max_size=6).map(lambda lines: "\n".join(lines) + "\n")


@SETTINGS
@given(cell)
def test_any_cell_parses_or_gets_a_clear_error(source):
    try:
        compile_cell(source, metric="loss", direction="minimize", user_ns={"loss": 0.0})
    except NbtuneError as e:
        assert "\n" not in str(e) and str(e), repr(e)


@SETTINGS
@given(annotation)
@example("uniform(-5e+27, 0, step=0.5)")  # found by CI: 1e28 steps were past Decimal's default 28 digits
@example("uniform(0, 1e+20, step=0.3)")  # not a multiple, with 3e20 values: the error must not list them all
def test_any_annotation_text_parses_or_names_its_line(text):
    try:
        parse_cell(f"x = 1  # tune: {text}\nloss = x\n")
    except NbtuneError as e:
        assert str(e).startswith("line 2"), str(e)


word = st.one_of(
    st.sampled_from(
        [
            "--maximize",
            "--minimize",
            "-n",
            "--trials",
            "--timeout",
            "--sampler",
            "--seed",
            "--name",
            "--store",
            "--fresh",
            "--resume",
            "--apply",
            "-j",
            "--jobs",
            "--backend",
            "--scheduler",
            "--min-epochs",
            "--eta",
            "--max-epochs",
            "-o",
            "--out",
            "-h",
            "--",
            "-",
        ]
    ),
    st.sampled_from(
        [
            "loss",
            "acc",
            "3",
            "-1",
            "0",
            "1.5",
            "10m",
            "tpe",
            "grid",
            "ray",
            "dask",
            "hyperband",
            "none",
            "'a b'",
            '"',
            "'",
            "\\",
            "$x",
            "{x}",
            "é",
            "a/b",
            "",
            "/proc/x",
        ]
    ),
    st.text(max_size=8).filter(lambda t: "\n" not in t),
)
line = st.lists(word, max_size=8).map(" ".join)


@SETTINGS
@given(line)
def test_any_tune_line_is_read_or_gets_one_usage_line(ip, text):
    magic = ip.magics_manager.registry["TuneMagics"]
    body = "x = 0.5  # tune: uniform(0, 1)\nfor epoch in range(3):  # tune: epochs\n    loss = x + epoch\n"
    try:
        _, cfg = magic._config(text)
        _compile(body, cfg.check())
    except (UsageError, NbtuneError) as e:
        assert "\n" not in str(e).strip(), repr(e)


def test_the_fuzzers_reach_errors_and_successes():
    """The strategies are not vacuous: they produce cells that compile and cells that don't."""
    from hypothesis import find

    def compiles(source: str) -> bool:
        try:
            compile_cell(source, metric="loss", direction="minimize", user_ns={"loss": 0.0})
            return True
        except NbtuneError:
            return False

    assert compiles(find(cell, compiles))
    assert not compiles(find(cell, lambda c: not compiles(c)))
    with pytest.raises(NbtuneError):
        TuneConfig(maximize="a", minimize="b").check()
