"""The ``# tune:`` comments of a cell: what they mean, where they may sit, and the errors naming the line."""

from __future__ import annotations

import ast
import re

import pytest

from nbtune.cell.annotations import (
    ANNOTATIONS,
    BaseAnnotation,
    CellSpec,
    EpochsLoop,
    ValueAnnotation,
    annotation_kinds,
    parse_cell,
    register_annotation,
)
from nbtune.exceptions import AnnotationError, CellError

VALID_KINDS = "uniform, loguniform, int, logint, choice, epochs, seed, folds, outer, state"


@pytest.mark.parametrize(
    "line, name, kind, args, kwargs, default",
    [
        ("lr = 0.01  # tune: loguniform(1e-5, 1e-1)", "lr", "loguniform", (1e-5, 1e-1), {}, 0.01),
        ("p = 0.5  # tune: uniform(0, 1)", "p", "uniform", (0, 1), {}, 0.5),
        ("p = 0.5  # tune: uniform(0.0, 1.0, step=0.25)", "p", "uniform", (0.0, 1.0), {"step": 0.25}, 0.5),
        ("n = 3  # tune: int(1, 10)", "n", "int", (1, 10), {}, 3),
        ("n = 4  # tune: int(0, 100, step=2)", "n", "int", (0, 100), {"step": 2}, 4),
        ("bs = 64  # tune: logint(16, 512)", "bs", "logint", (16, 512), {}, 64),
        ("act = 'relu'  # tune: choice('relu', 'tanh', None)", "act", "choice", ("relu", "tanh", None), {}, "relu"),
        ("flag = True  # tune: choice(True, False)", "flag", "choice", (True, False), {}, True),
        ("lr: float = 0.01  # tune: loguniform(1e-5, 1e-1)", "lr", "loguniform", (1e-5, 1e-1), {}, 0.01),
        ("x = -1.5  # tune: uniform(-2, 2)", "x", "uniform", (-2, 2), {}, -1.5),
        ("x = 1  #tune:int(0,2)", "x", "int", (0, 2), {}, 1),
    ],
)
def test_value_kinds(line, name, kind, args, kwargs, default):
    spec = parse_cell(line + "\nm = 1\n")
    (p,) = spec.params
    assert (p.name, p.kind, p.args, p.kwargs, p.default, p.lineno) == (name, kind, args, kwargs, default, 2)
    assert spec.marks == {2: kind}
    assert spec.defaults == {name: default}
    assert spec.epochs is None


def test_params_in_cell_order_with_notebook_lines():
    spec = parse_cell("import math\nb = 2  # tune: int(0, 5)\n\na = 0.1  # tune: uniform(0, 1)\nm = a * b\n")
    assert [(p.name, p.lineno) for p in spec.params] == [("b", 3), ("a", 5)]
    assert spec.defaults == {"b": 2, "a": 0.1}
    assert spec.marks == {3: "int", 5: "uniform"}


@pytest.mark.parametrize("offset", [0, 1, 7])
def test_line_offset_shifts_every_line(offset):
    spec = parse_cell(
        "x = 0.5  # tune: uniform(0, 1)\nfor e in range(3):  # tune: epochs\n    m = e\n", line_offset=offset
    )
    assert spec.params[0].lineno == 1 + offset
    assert spec.epochs == EpochsLoop(lineno=2 + offset, length=3)
    assert spec.line_offset == offset
    assert spec.tree.body[1].lineno == 2 + offset
    with pytest.raises(AnnotationError, match=f"^line {2 + offset} of the %%tune cell") as info:
        parse_cell("m = 1\nx = 5  # tune: int(0, 2)\n", line_offset=offset)
    assert info.value.lineno == 2 + offset


def test_plain_comments_and_strings_are_not_annotations():
    spec = parse_cell("s = '# tune: uniform(0, 1)'\nx = 1  # tuned by hand\n# a note: tune: later\nm = 1\n")
    assert spec.params == [] and spec.marks == {} and spec.epochs is None
    assert isinstance(spec.tree, ast.Module) and isinstance(spec, CellSpec)


@pytest.mark.parametrize(
    "header, length",
    [
        ("for e in range(10):", 10),
        ("for e in range(2, 11, 3):", 3),
        ("for e in range(5, 0):", 0),
        ("for e in range(-3, 3):", 6),
        ("for e in range(n):", None),
        ("for e in range(0, n):", None),
        ("for e in range(0, 10, 0):", None),
        ("for e in range(2.5):", None),
        ("for e in enumerate(range(4)):", 4),
        ("for e in [1, 2, 3]:", 3),
        ("for e in loader:", None),
        ("for i, batch in enumerate(loader):", None),
    ],
)
def test_epochs_loop_and_its_length(header, length):
    spec = parse_cell(f"x = 0.5  # tune: uniform(0, 1)\nn = 4\nloader = []\n{header}  # tune: epochs\n    m = 1\n")
    assert spec.epochs == EpochsLoop(lineno=5, length=length)
    assert spec.marks == {2: "uniform", 5: "epochs"}


@pytest.mark.parametrize(
    "cell, lineno",
    [
        ("if True:\n    for e in range(4):  # tune: epochs\n        m = e\n", 3),
        ("with open('f') as f:\n    for e in range(4):  # tune: epochs\n        m = e\n", 3),
    ],
)
def test_epochs_loop_nested_in_top_level_blocks(cell, lineno):
    spec = parse_cell(cell)
    assert spec.epochs == EpochsLoop(lineno=lineno, length=4)


@pytest.mark.parametrize(
    "cell, lineno, message",
    [
        (
            "x = 1  # tune:\n",
            2,
            f"line 2, column 15 of the %%tune cell: empty annotation; write a kind after 'tune:', one of {VALID_KINDS}",
        ),
        (
            "x = 1  # tune: uniform(0, \n",
            2,
            "line 2, column 23 of the %%tune cell: cannot parse annotation 'uniform(0,' "
            "('(' was never closed); write it as KIND(args), e.g. loguniform(1e-5, 1e-1)",
        ),
        (
            "x = 1  # tune: uniform(0, 2)   (changed default)\n",
            2,
            "line 2, column 29 of the %%tune cell: text after the annotation 'uniform(0, 2)': '(changed default)'; put "
            "a note in a comment of its own, '# tune: uniform(0, 2)  # (changed default)'",
        ),
        (
            "x = 1  # tune: uniform(0, 1)  # tune: uniform(0, 2)\n",
            2,
            "line 2 of the %%tune cell: two '# tune:' annotations on one line ('# tune: uniform(0, 1)  # tune: "
            "uniform(0, 2)'); keep the one you mean",
        ),
        (
            "x = 1  # tune: 3\n",
            2,
            "line 2, column 16 of the %%tune cell: cannot read annotation '3'; "
            "write it as KIND(args), e.g. loguniform(1e-5, 1e-1)",
        ),
        (
            "x = 1  # tune: np.uniform(0, 1)\n",
            2,
            "line 2, column 16 of the %%tune cell: cannot read annotation 'np.uniform(0, 1)'",
        ),
        (
            "m = 0\nx = 1  # tune: normal(0, 1)\n",
            3,
            f"line 3 of the %%tune cell: unknown annotation kind 'normal'; valid kinds are {VALID_KINDS}",
        ),
        (
            "x = 1  # tune: uniform(0, hi)\n",
            2,
            "line 2, column 27 of the %%tune cell: argument 2 of uniform must be a "
            "Python literal (a number, string, True/False/None, a tuple of them, or arithmetic of numbers such as 10**-3), got 'hi'",
        ),
        (
            "x = 1  # tune: uniform(0, 2, step=s)\n",
            2,
            "line 2, column 35 of the %%tune cell: step= must be a Python literal",
        ),
        (
            "x = y  # tune: uniform(0, 2)\n",
            2,
            "line 2, column 5 of the %%tune cell: the default of 'x' must be a Python "
            "literal (a number, string, True/False/None, a tuple of them, or arithmetic of numbers such as 10**-3), got 'y'",
        ),
        ("x = 1  # tune: choice(**opts)\n", 2, "line 2 of the %%tune cell: choice does not take **kwargs"),
        # a choice among objects, or of unquoted words: the fix (found trying nbtune as a new user)
        (
            's = "a"  # tune: choice("a", StandardScaler())\n',
            2,
            "line 2, column 30 of the %%tune cell: argument 2 of choice must be a Python literal (a number, string, "
            "True/False/None, a tuple of them, or arithmetic of numbers such as 10**-3), got 'StandardScaler()'; to "
            "choose among "
            'objects, tune their names and build the one chosen: \'scaler_name = "standard"  # tune: choice(',
        ),
        (
            's = "a"  # tune: choice(a, b)\n',
            2,
            "line 2, column 25 of the %%tune cell: argument 1 of choice must be a "
            "Python literal (a number, string, True/False/None, a tuple of them, or arithmetic of numbers such as 10**-3), got 'a'; a "
            "string is quoted: 'a'",
        ),
    ],
)
def test_malformed_annotations(cell, lineno, message):
    with pytest.raises(AnnotationError) as info:
        parse_cell(cell)
    assert str(info.value).startswith(message)
    assert info.value.lineno == lineno


@pytest.mark.parametrize(
    "annotation, message",
    [
        ("uniform(0)", "uniform takes 2 arguments (low, high), got 1"),
        ("int(0, 2, 3)", "int takes 2 arguments (low, high), got 3"),
        ("loguniform", "loguniform takes 2 arguments (low, high), got 0"),
        ("uniform(0, 2, foo=1)", "uniform got unknown keyword 'foo'; it accepts step"),
        ("loguniform(1, 2, step=1)", "loguniform got unknown keyword 'step'; it accepts no keyword arguments"),
        ("logint(1, 8, step=2)", "logint got unknown keyword 'step'; it accepts no keyword arguments"),
        ("choice(1, 2, step=1)", "choice got unknown keyword 'step'; it accepts no keyword arguments"),
    ],
)
def test_arity_and_keywords(annotation, message):
    with pytest.raises(AnnotationError, match="^line 2 of the %%tune cell: " + re.escape(message)):
        parse_cell(f"x = 1  # tune: {annotation}\n")


@pytest.mark.parametrize("annotation", ["epochs(3)", "epochs(n=3)"])
def test_epochs_takes_no_arguments(annotation):
    with pytest.raises(
        AnnotationError,
        match="^line 2 of the %%tune cell: 'epochs' takes no arguments; write '# tune: epochs' on the for header",
    ):
        parse_cell(f"for e in range(3):  # tune: {annotation}\n    m = e\n")


def test_epochs_with_empty_parentheses_is_accepted():
    assert parse_cell("for e in range(3):  # tune: epochs()\n    m = e\n").epochs == EpochsLoop(lineno=2, length=3)


ASSIGN_ONLY = (
    "must annotate a simple top-level assignment on one line, such as 'lr = 1e-3  # tune: loguniform(1e-5, 1e-1)'"
)
FOR_ONLY = "must sit on a 'for' header line, e.g. 'for epoch in range(20):  # tune: epochs'"


@pytest.mark.parametrize(
    "cell, lineno, message",
    [
        (
            "def f():\n    x = 1  # tune: uniform(0, 2)\n",
            3,
            f"'# tune: uniform(...)' {ASSIGN_ONLY}; this one is inside a function (line 2): set 'x = ...  # tune: "
            "uniform(0, 2)' at the top level above it, and use x there",
        ),
        (
            "if True:\n    x = 1  # tune: uniform(0, 2)\n",
            3,
            f"'# tune: uniform(...)' {ASSIGN_ONLY}; this one is inside an 'if' block (line 2): set 'x = ...  # tune: "
            "uniform(0, 2)' at the top level above it, and use x there",
        ),
        (
            "with open('f') as f:\n    x = 1  # tune: uniform(0, 2)\n",
            3,
            f"'# tune: uniform(...)' {ASSIGN_ONLY}; this one is inside a 'with' block (line 2): set 'x = ...  # tune: "
            "uniform(0, 2)' at the top level above it, and use x there",
        ),
        (
            "x = 1.0; y = 2  # tune: uniform(0, 2)\n",
            2,
            f"'# tune: uniform(...)' {ASSIGN_ONLY}; the line holds 2 statements (x = 1.0; y = 2): put the one to tune "
            "on a line of its own, with the comment",
        ),
        ("x = y = 1  # tune: uniform(0, 2)\n", 2, f"'# tune: uniform(...)' {ASSIGN_ONLY}"),
        (
            "a, b = 1, 2  # tune: uniform(0, 2)\n",
            2,
            f"'# tune: uniform(...)' {ASSIGN_ONLY}; one variable a line, each with its own '# tune:' comment: "
            '"a = 1", "b = 2"',
        ),
        (
            "d = {}\nd['k'] = 1  # tune: uniform(0, 2)\n",
            3,
            f"'# tune: uniform(...)' {ASSIGN_ONLY}; declare the value on a line of its own above it, "
            "'k = 1  # tune: uniform(0, 2)', and write d['k'] = k",
        ),
        (
            "x = 0\nx += 1  # tune: int(0, 2)\n",
            3,
            f"'# tune: int(...)' {ASSIGN_ONLY}; 'x += 1' changes a value set before: annotate the line that first "
            "sets it, 'x = ...  # tune: int(0, 2)'",
        ),
        ("x: int  # tune: int(0, 5)\n", 2, f"'# tune: int(...)' {ASSIGN_ONLY}"),
        ("x = (1 +\n     2)  # tune: int(0, 5)\n", 3, f"'# tune: int(...)' {ASSIGN_ONLY}"),
        ("x = (1 +  # tune: int(0, 5)\n     2)\n", 2, f"'# tune: int(...)' {ASSIGN_ONLY}"),
        ("# tune: choice(1, 2)\nx = 1\n", 2, f"'# tune: choice(...)' {ASSIGN_ONLY}"),
        ("for e in range(3):  # tune: uniform(0, 1)\n    m = e\n", 2, f"'# tune: uniform(...)' {ASSIGN_ONLY}"),
        ("x = 1  # tune: epochs\n", 2, f"'# tune: epochs' {FOR_ONLY}"),
        ("while True:  # tune: epochs\n    break\n", 2, f"'# tune: epochs' {FOR_ONLY}"),
        ("ms = [e for e in range(3)]  # tune: epochs\n", 2, f"'# tune: epochs' {FOR_ONLY}"),
        ("for e in range(3):\n    m = e  # tune: epochs\n", 3, f"'# tune: epochs' {FOR_ONLY}"),
        ("async def f(xs):\n    async for e in xs:  # tune: epochs\n        pass\n", 3, f"'# tune: epochs' {FOR_ONLY}"),
    ],
)
def test_misplaced_annotations(cell, lineno, message):
    with pytest.raises(AnnotationError) as info:
        parse_cell(cell)
    assert str(info.value) == f"line {lineno} of the %%tune cell: {message}"
    assert info.value.lineno == lineno


@pytest.mark.parametrize(
    "cell, lineno",
    [
        ("def train():\n    for e in range(3):  # tune: epochs\n        pass\n", 3),
        ("class Trainer:\n    def fit(self):\n        for e in range(3):  # tune: epochs\n            pass\n", 4),
        ("class Trainer:\n    for e in range(3):  # tune: epochs\n        pass\n", 3),
        ("f = lambda: None\ndef g():\n    if True:\n        for e in range(3):  # tune: epochs\n            pass\n", 5),
    ],
)
def test_epochs_loop_inside_a_def_or_class(cell, lineno):
    with pytest.raises(
        AnnotationError,
        match=f"^line {lineno} of the %%tune cell: the epochs loop is inside a "
        "function or class; move the loop to the cell's top level",
    ):
        parse_cell(cell)


def test_two_epochs_loops():
    cell = (
        "x = 1  # tune: int(0, 2)\nfor a in range(2):  # tune: epochs\n    m = a\n"
        "for b in range(2):  # tune: epochs\n    m = b\n"
    )
    with pytest.raises(AnnotationError) as info:
        parse_cell(cell)
    assert str(info.value) == (
        "line 5 of the %%tune cell: a second '# tune: epochs' loop (the first is on line 3), where a cell has one: "
        "mark only the outer training loop; for loops in branches (one per model), build the model in the "
        "branches and train it in one loop after them"
    )
    assert info.value.lineno == 5


@pytest.mark.parametrize("outer", ["for i in range(3):", "while True:"])
def test_an_epochs_loop_inside_another_loop_is_one_line(outer):
    """The inner loop's epochs start again on each round of the outer one: steps 1-12 reported
    against rungs planned for 4 (found trying nbtune as a new user)."""
    cell = f"x = 1  # tune: int(0, 3)\n{outer}\n    for j in range(4):  # tune: epochs\n        loss = x\n"
    with pytest.raises(
        AnnotationError, match=r"^line 4 of the %%tune cell: the epochs loop runs inside another loop \(line 3\)"
    ):
        parse_cell(cell)
    parse_cell(
        "x = 1  # tune: int(0, 3)\nfor i in range(3):  # tune: epochs\n    for j in range(4):\n        loss = x\n"
    )


def test_nested_epochs_loops():
    cell = "for a in range(2):  # tune: epochs\n    for b in range(2):  # tune: epochs\n        m = b\n"
    with pytest.raises(AnnotationError, match=r"^line 3 .* a second '# tune: epochs' loop \(the first is on line 2\)"):
        parse_cell(cell)


@pytest.mark.parametrize("second", ["x = 2  # tune: int(0, 5)", "x: int = 2  # tune: choice(1, 2)"])
def test_duplicate_variable(second):
    with pytest.raises(AnnotationError) as info:
        parse_cell(f"x = 1  # tune: int(0, 5)\nm = x\n{second}\n")
    assert str(info.value) == (
        "line 4 of the %%tune cell: 'x' is annotated twice (also on line 2); keep one annotation per variable"
    )
    assert info.value.lineno == 4


def test_value_errors_come_from_the_space_with_the_line():
    with pytest.raises(AnnotationError) as info:
        parse_cell("m = 0\nlr = 0.5  # tune: loguniform(0, 1)\n")
    assert str(info.value).startswith("line 3 of the %%tune cell: loguniform for 'lr' needs low > 0 (log scale)")
    assert info.value.lineno == 3


@pytest.mark.parametrize(
    "cell, message",
    [
        ("x = 1 +\n", "line 2 of the %%tune cell: invalid syntax: x = 1 +"),
        ("x = 1\n  y = 2\n", "line 3 of the %%tune cell: unexpected indent: y = 2"),
        ("x = 0.5  # tune: uniform(0, 1)\nm = (x,\n", "line 3 of the %%tune cell: '(' was never closed: m = (x,"),
        (
            "x = 0.5  # tune: uniform(0, 1)\nfor e in range(3):  # tune: epochs\nm = 1\n",
            "line 4 of the %%tune cell: expected an indented block after 'for' statement on line 2: m = 1",
        ),
    ],
)
def test_syntax_errors_name_the_notebook_line(cell, message):
    with pytest.raises(CellError) as info:
        parse_cell(cell)
    assert str(info.value) == message
    assert not isinstance(info.value, AnnotationError)


def test_syntax_error_with_an_offset():
    with pytest.raises(CellError, match="^line 13 of the %%tune cell: invalid syntax"):
        parse_cell("m = 1\nm = = 2\n", line_offset=11)


def test_registry_holds_the_builtin_kinds():
    assert annotation_kinds() == tuple(VALID_KINDS.split(", "))
    assert all(isinstance(ANNOTATIONS[k], ValueAnnotation) for k in annotation_kinds()[:-5])
    assert ANNOTATIONS["epochs"].sits_on == "for" and ANNOTATIONS["seed"].sits_on == "assign"
    assert ANNOTATIONS["choice"].arity is None and ANNOTATIONS["uniform"].keywords == frozenset({"step"})


class TagAnnotation(BaseAnnotation):
    """``tag = 0  # tune: tag``: a kind that only records where it sits (a test kind)."""

    name = "tag"
    sits_on = "assign"
    usage = "tag = 0  # tune: tag"

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def attach(self, spec, node, args, kwargs, lineno):
        self.seen.append((node.targets[0].id, lineno))


@pytest.fixture
def tag_kind():
    kind = register_annotation(TagAnnotation())
    try:
        yield kind
    finally:
        ANNOTATIONS.pop("tag", None)


def test_a_new_annotation_kind_needs_no_parser_change(tag_kind):
    assert ANNOTATIONS["tag"] is tag_kind and annotation_kinds()[-1] == "tag"
    spec = parse_cell("s = 42  # tune: tag\nlr = 0.1  # tune: uniform(0, 1)\nm = s * lr\n")
    assert tag_kind.seen == [("s", 2)]
    assert spec.marks == {2: "tag", 3: "uniform"}
    assert [p.name for p in spec.params] == ["lr"]


@pytest.mark.parametrize(
    "cell, message",
    [
        (
            "def f():\n    s = 1  # tune: tag\n",
            "line 3 of the %%tune cell: '# tune: tag' must annotate a simple "
            "top-level assignment on one line, such as 'tag = 0  # tune: tag'; this one is inside a function (line "
            "2): set 's = ...  # tune: tag' at the top level above it, and use s there",
        ),
        ("s = 1  # tune: tag(3)\n", "line 2 of the %%tune cell: tag takes 0 arguments, got 1"),
        (
            "s = 1  # tune: tag(base=3)\n",
            "line 2 of the %%tune cell: tag got unknown keyword 'base'; it accepts no keyword arguments",
        ),
        (
            "s = 1  # tune: tga\n",
            f"line 2 of the %%tune cell: unknown annotation kind 'tga'; valid kinds are {VALID_KINDS}, tag",
        ),
    ],
)
def test_a_new_annotation_kind_gets_the_usual_errors(tag_kind, cell, message):
    with pytest.raises(AnnotationError) as info:
        parse_cell(cell)
    assert str(info.value) == message
    assert tag_kind.seen == []


def test_an_unregistered_kind_is_unknown_again():
    kind = register_annotation(TagAnnotation())
    try:
        parse_cell("s = 1  # tune: tag\n")
    finally:
        ANNOTATIONS.pop("tag")
    assert kind.seen == [("s", 2)]
    with pytest.raises(AnnotationError, match="unknown annotation kind 'tag'"):
        parse_cell("s = 1  # tune: tag\n")


def test_arithmetic_of_numbers_is_a_literal_for_defaults_and_bounds():
    """'C = 10**-1' and 'loguniform(10**-3, 1e2)' are what people write (found trying nbtune as a
    new user); names, calls and huge powers are not numbers written down."""
    spec = parse_cell(
        "C = 10**-1  # tune: loguniform(10**-3, 1e2)\nh = 2 * 32  # tune: int(16, 2**8, step=16)\nm = C + h\n"
    )
    assert [(p.default, p.args, p.kwargs) for p in spec.params] == [
        (0.1, (0.001, 100.0), {}),
        (64, (16, 256), {"step": 16}),
    ]
    for bad in ("LOW", "10**1000", "float('inf')", "(-8) ** 0.5"):
        with pytest.raises(AnnotationError, match="must be a Python literal .*arithmetic of numbers such as 10"):
            parse_cell(f"C = 0.1  # tune: loguniform({bad}, 1)\nm = C\n")


def test_low_and_high_may_be_given_by_name():
    """'int(low=1, high=12)' said 'int takes 2 arguments (low, high), got 0' (found trying nbtune as a new user)."""
    spec = parse_cell(
        "a = 2  # tune: int(low=1, high=12)\nb = 0.1  # tune: loguniform(1e-3, high=1.0)\n"
        "c = 4  # tune: int(high=8, low=2, step=2)\nm = a + b + c\n"
    )
    assert [(p.args, p.kwargs) for p in spec.params] == [((1, 12), {}), ((1e-3, 1.0), {}), ((2, 8), {"step": 2})]


@pytest.mark.parametrize(
    "cell, said",
    [
        # a param_grid's habits (found trying nbtune as a new user): the rewrite, not "build objects"
        ('loss = "hinge"  # tune: choice(["hinge", "log_loss"])\n', "write choice('hinge', 'log_loss')"),
        # a list where a tuple is a value (hidden_layer_sizes): the tuple
        ("h = [64]  # tune: choice([64], [64, 32])\n", "got the list [64]; write it as a tuple, (64,)"),
        # a tuple default under a kind of one value: the tuple named (it read 'default (1, 2) is not among the
        # choices [1, 2]', found trying nbtune as a new user)
        ("ng = 1, 2  # tune: choice(1, 2)\n", "default (1, 2) is a tuple (a comma on the line makes one)"),
        # a tuple written as text: the tuple itself (the text of a tuple is how Optuna keeps one)
        (
            'ng = (1, 1)  # tune: choice("(1, 1)", "(1, 2)")\n',
            "has the text '(1, 1)', which reads as a tuple; write the tuple itself, (1, 1)",
        ),
        ("ng = (1, 1)  # tune: int(1, 2)\n", "default (1, 1) is a tuple"),
        ("a = 0.1  # tune: uniform(1e-6, 1.0, log=True)\n", "(a log scale is its own kind: loguniform(low, high))"),
        ("k = 2  # tune: int(1, 5, log=True)\n", "(a log scale is its own kind: logint(low, high))"),
        ("a = 0.1  # tune: categorical(0.1, 0.2)\n", "(categorical is choice here)"),
        ("a = 0.1  # tune: suggest_float(0.0, 1.0)\n", "(suggest_float is uniform (loguniform on a log scale) here)"),
        ("k = 2  # tune: int(1, 10, 2)\n", "(a step is named: int(1, 9, step=2))"),  # (a top on a step)
        (
            'params = {\n    "clf__alpha": 1e-4,  # tune: loguniform(1e-6, 1e-2)\n}\n',
            "declare the value on a line of its own above it, 'alpha = 0.0001  # tune: loguniform(1e-6, 1e-2)', "
            "and write 'clf__alpha': alpha",
        ),
        (
            'params = {}\nparams["clf__alpha"] = 1e-4  # tune: loguniform(1e-6, 1e-2)\n',
            "and write params['clf__alpha'] = alpha",
        ),
        ("m = dict(\n    alpha=1e-4,  # tune: loguniform(1e-6, 1e-2)\n)\n", "and write alpha=alpha"),
        ('x = "a"  # tune: choice(("a", "b"))\n', "not a tuple: got ('a', 'b'); write choice('a', 'b')"),
        ("class CFG:\n    pass\nCFG.alpha = 1e-4  # tune: loguniform(1e-6, 1e-2)\n", "and write CFG.alpha = alpha"),
        (
            'alpha, loss = 1e-4, "hinge"  # tune: loguniform(1e-6, 1e-2)\n',
            "one variable a line, each with its own '# tune:' comment: \"alpha = 0.0001\", \"loss = 'hinge'\"",
        ),
    ],
)
def test_habits_from_other_tools_are_told_the_rewrite(cell, said):
    with pytest.raises(AnnotationError) as info:
        parse_cell(cell)
    assert said in str(info.value), str(info.value)


def test_tuple_choices_written_with_arithmetic_or_empty():
    """``choice((64,), (2 * 16,))`` and the default ``(2 * 32,)`` were refused as not literals, and an empty
    tuple read as 'got ()' (found retesting tuple choices as a user)."""
    spec = parse_cell("hidden = (2 * 32,)  # tune: choice((64,), (2 * 16,), (64, 2**5))\nacc = 1\n")
    assert spec.params[0].args == ((64,), (32,), (64, 32)) and spec.params[0].default == (64,)
    with pytest.raises(AnnotationError, match=r"has an empty tuple, \(\); give each tuple one value or more"):
        parse_cell("hidden = (64,)  # tune: choice((), (64,))\nacc = 1\n")


def test_a_parenthesised_number_beside_tuple_choices_is_told_the_comma():
    """``choice((64), (128,))``: ``(64)`` is the number 64, and ngram_range=64 fails every trial that draws
    it (found retesting tuple choices as a user). A number beside tuples, written as a number, is a value."""
    with pytest.raises(
        AnnotationError, match=r"column 33 of the %%tune cell: \(64\) is the number 64, not a tuple; a "
    ):
        parse_cell("hidden = (128,)  # tune: choice((64), (128,))\nacc = 1\n")
    assert parse_cell("hidden = 64  # tune: choice(64, (64, 32))\nacc = 1\n").params[0].args == (64, (64, 32))
