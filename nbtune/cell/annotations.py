"""Find the ``# tune:`` comments of a cell and the statements they annotate.

Comments come from :mod:`tokenize` (with their line and column), statements from
:mod:`ast`; the annotation text itself is parsed with :mod:`ast`, never ``eval``.
Line numbers are reported as the notebook shows them: the ``%%tune`` line is line 1,
so line ``k`` of the cell body is line ``k + line_offset``.
"""

from __future__ import annotations

import ast
import contextlib
import io
import keyword
import operator
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nbtune.cell.loops import loop_length
from nbtune.cell.space import PARAM_KINDS, Param
from nbtune.exceptions import AnnotationError, CellError

__all__ = [
    "ANNOTATIONS",
    "BaseAnnotation",
    "CellSpec",
    "EpochsLoop",
    "FoldsVar",
    "SeedVar",
    "ValueAnnotation",
    "annotation_kinds",
    "compared_outside_choices",
    "hashable_literal",
    "literal",
    "parse_cell",
    "register_annotation",
    "runtime_call",
]

RUNTIME = "__nbtune__"  # the name the rewritten cell calls the trial's runtime by

_COMMENT_RE = re.compile(r"#\s*tune\s*:(?P<text>.*)$")
# "# Tune: uniform(...)", "# tune uniform(...)", "# tune= choice(...)": meant as annotations, not read as
# one. Only flagged when a known kind follows, so prose such as "# tune the learning rate" stays prose.
# '# Tune: int(...)', '# tune int(...)', '# tunes: choice(...)'; later in the comment only with its
# colon ('# l2, tune: loguniform(...)'), not prose ('# no need to tune seed here')
_NEAR_RE = re.compile(
    r"#\s*tunes?\b\s*[:=\-\u2013\u2014]*\s*(?P<kind>[A-Za-z_]\w*)|\btunes?\s*[:=]\s*(?P<later>[A-Za-z_]\w*)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class EpochsLoop:
    """The ``for`` loop marked ``# tune: epochs``: the budget (fidelity) axis.

    Attributes:
        lineno: notebook line of the ``for`` header.
        length: the number of iterations when it can be known without running the
            cell (a literal ``range(...)``), else None.
    """

    lineno: int
    length: int | None = None
    why: str = field(default="", compare=False)  # why the length cannot be known before the cell runs


@dataclass(frozen=True)
class SeedVar:
    """The variable marked ``# tune: seed``: the randomness the cell uses.

    Attributes:
        name: the variable; default: its value in the cell (the search's seed); lineno: its line.
    """

    name: str
    default: int
    lineno: int


@dataclass(frozen=True)
class FoldsVar:
    """The variable marked ``# tune: folds(k)`` (cross-validation inside a trial) or
    ``# tune: outer(k)`` (the outer loop of nested cross-validation).

    Attributes:
        name: the variable; k: how many folds; default: its value in the cell; lineno: its line.
    """

    name: str
    k: int
    default: int
    lineno: int


@dataclass
class CellSpec:
    """What the annotations of one cell say.

    Attributes:
        source: the cell body after IPython's transformation (``!cmd`` -> a call).
        params: the tunable variables, in cell order.
        epochs: the epochs loop, if any.
        seed: the seed variable, if any.
        folds: the cross-validation fold variable, if any; outer: nested CV's outer fold variable.
        tree: the parsed body, line numbers already in notebook numbering.
        line_offset: added to body line numbers to get notebook line numbers.
        marks: the annotated statements: notebook line -> annotation kind.
    """

    source: str
    params: list[Param] = field(default_factory=list)
    epochs: EpochsLoop | None = None
    seed: SeedVar | None = None
    folds: FoldsVar | None = None
    outer: FoldsVar | None = None
    state: list[tuple[str, int]] = field(default_factory=list)  # (variable, line) of '# tune: state'
    tree: ast.Module | None = None
    line_offset: int = 1
    marks: dict[int, str] = field(default_factory=dict)  # notebook line -> annotation kind

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


def _assigned(node: ast.stmt) -> ast.Name:
    """The variable of an annotated simple assignment (``name = value`` or ``name: T = value``)."""
    target = node.targets[0] if isinstance(node, ast.Assign) else node.target  # type: ignore[attr-defined]
    assert isinstance(target, ast.Name)
    return target


def runtime_call(method: str, args: list[ast.expr], like: ast.AST) -> ast.Call:
    """``__nbtune__.method(*args)`` as an AST node placed where ``like`` is."""
    call = ast.Call(
        func=ast.Attribute(value=ast.Name(id=RUNTIME, ctx=ast.Load()), attr=method, ctx=ast.Load()),
        args=args,
        keywords=[],
    )
    return ast.copy_location(call, like)


class BaseAnnotation:
    """One kind of ``# tune:`` comment: where it may sit, what it records, how it rewrites the cell.

    The parser finds the comment, reads ``KIND(args)`` with :mod:`ast`, finds the statement on
    that line of the kind :attr:`sits_on`, and calls :meth:`attach`; the rewriter later calls
    :meth:`rewrite` on that statement. A new kind (a seed, a data fold) is one subclass and one
    :func:`register_annotation`; neither the parser nor the rewriter changes.

    Attributes:
        name: what follows ``# tune:``.
        sits_on: ``"assign"`` (a simple top-level ``name = literal``) or ``"for"`` (a loop header).
        arity: positional arguments it takes (None: any number); keywords: the keyword arguments.
        usage: an example shown when it is misplaced.
        spans_lines: the assignment may span lines, the comment on its first or its last (a
            constructor call laid out one argument a line, as formatters do); else it is on one line.
    """

    name: str = ""
    sits_on: str = "assign"
    spans_lines: bool = False
    arity: int | None = 0
    keywords: frozenset[str] = frozenset()
    usage: str = ""

    def check_arity(self, args: tuple[Any, ...], kwargs: dict[str, Any], lineno: int) -> None:
        if self.arity is not None and len(args) != self.arity:
            # loguniform(min=1e-4, max=1e-1), W&B's and Ray's names: by position (found trying nbtune as a new user)
            named = [v for k, v in kwargs.items() if k not in self.keywords]
            by_position = (
                f" (the bounds go by position: {self.name}({', '.join(map(repr, (*args, *named)))}))"
                if named and len(args) + len(named) == self.arity
                else ""
            )
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: {self.name} takes {self.arity} arguments"
                + (" (low, high)" if self.arity == 2 else "")
                + f", got {len(args)}"
                + by_position
                + (
                    _step_hint(self.name, args)
                    if self.arity == 2 and len(args) == 3 and "step" in self.keywords
                    else ""
                ),
                lineno,
            )
        bad = set(kwargs) - self.keywords
        if bad:
            ok = ", ".join(sorted(self.keywords)) or "no keyword arguments"
            log = {"uniform": "loguniform", "int": "logint"}.get(self.name) if "log" in bad else None
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: {self.name} got unknown keyword {sorted(bad)[0]!r}; it accepts {ok}"
                + (f" (a log scale is its own kind: {log}(low, high))" if log else ""),
                lineno,
            )

    def attach(
        self, spec: CellSpec, node: ast.stmt, args: tuple[Any, ...], kwargs: dict[str, Any], lineno: int
    ) -> None:
        """Record what the annotation says in ``spec`` (validating it)."""
        raise NotImplementedError

    def rewrite(self, node: ast.stmt, spec: CellSpec) -> ast.stmt | list[ast.stmt]:
        """The statement as a trial runs it."""
        return node


class ValueAnnotation(BaseAnnotation):
    """``name = default  # tune: KIND(args)``: a tuned variable (a :class:`~nbtune.cell.space.Param`)."""

    sits_on = "assign"
    usage = "lr = 1e-3  # tune: loguniform(1e-5, 1e-1)"

    def __init__(self, name: str) -> None:
        kind = PARAM_KINDS[name]
        self.name = name
        self.arity, self.keywords = kind.arity, kind.keywords

    def attach(
        self, spec: CellSpec, node: ast.stmt, args: tuple[Any, ...], kwargs: dict[str, Any], lineno: int
    ) -> None:
        target = _assigned(node)
        name = target.id
        for p in spec.params:
            if p.name == name:
                raise AnnotationError(
                    f"line {lineno} of the %%tune cell: {name!r} is annotated twice (also on line {p.lineno}); "
                    "keep one annotation per variable",
                    lineno,
                )
        value = node.value  # type: ignore[attr-defined]
        default = _literal(value, lineno, value.col_offset + 1, f"the default of {name!r}")
        spec.params.append(Param(name=name, kind=self.name, args=args, kwargs=kwargs, default=default, lineno=lineno))

    def rewrite(self, node: ast.stmt, spec: CellSpec) -> ast.stmt:
        p = next(p for p in spec.params if p.lineno == node.lineno)
        node.value = runtime_call("value", [ast.Constant(p.name)], node.value)  # type: ignore[attr-defined]
        return node


class EpochsAnnotation(BaseAnnotation):
    """``for ... :  # tune: epochs``: the training loop, the budget (fidelity) axis.

    The loop iterates ``__nbtune__.epochs(<iterable>)``, which reports the metric after every
    iteration and may stop the trial there; a call after the loop reports the last
    iteration when the body ``break``-s.
    """

    name = "epochs"
    sits_on = "for"
    usage = "for epoch in range(20):  # tune: epochs"

    def check_arity(self, args: tuple[Any, ...], kwargs: dict[str, Any], lineno: int) -> None:
        if args or kwargs:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: 'epochs' takes no arguments; write '# tune: epochs' on the "
                "for header (use --max-epochs for the length)",
                lineno,
            )

    def attach(
        self, spec: CellSpec, node: ast.stmt, args: tuple[Any, ...], kwargs: dict[str, Any], lineno: int
    ) -> None:
        if spec.epochs is not None:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: a second '# tune: epochs' loop (the first is on line "
                f"{spec.epochs.lineno}), where a cell has one: mark only the outer training loop; for loops in "
                "branches (one per model), build the model in the branches and train it in one loop after them",
                lineno,
            )
        assert isinstance(node, ast.For)
        # Literals only here; compile_cell also reads notebook variables and the cell's earlier assignments.
        length, why = loop_length(node, ast.Module(body=[], type_ignores=[]), None)
        spec.epochs = EpochsLoop(lineno=lineno, length=length, why=why)

    def rewrite(self, node: ast.stmt, spec: CellSpec) -> list[ast.stmt]:
        assert isinstance(node, ast.For)
        node.iter = runtime_call("epochs", [node.iter], node.iter)
        after = ast.copy_location(ast.Expr(value=runtime_call("epochs_done", [], node)), node)
        return [node, after]


class SeedAnnotation(BaseAnnotation):
    """``seed = 0  # tune: seed``: the variable the cell seeds its randomness with.

    It is not searched. During the search it keeps the cell's value in every trial (common
    random numbers: trials differ only by their hyperparameters), unless ``--vary-seed`` gives
    each trial its own; re-validation and the holdout evaluation set it to other seeds.
    """

    name = "seed"
    sits_on = "assign"
    usage = "seed = 0  # tune: seed"

    def check_arity(self, args: tuple[Any, ...], kwargs: dict[str, Any], lineno: int) -> None:
        if args or kwargs:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: 'seed' takes no arguments; write 'seed = 0  # tune: seed' "
                "(the value is the seed the search uses)",
                lineno,
            )

    def attach(
        self, spec: CellSpec, node: ast.stmt, args: tuple[Any, ...], kwargs: dict[str, Any], lineno: int
    ) -> None:
        target = _assigned(node)
        if spec.seed is not None:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: a second '# tune: seed' ({target.id!r}; the first is "
                f"{spec.seed.name!r} on line {spec.seed.lineno}); mark one seed and derive the others from it, "
                f"e.g. 'split_seed = {spec.seed.name} + 1'",
                lineno,
            )
        value = node.value  # type: ignore[attr-defined]
        default = _literal(value, lineno, value.col_offset + 1, f"the seed {target.id!r}")
        if not isinstance(default, int) or isinstance(default, bool) or default < 0:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: the seed {target.id!r} must be a whole number >= 0 "
                f"(got {default!r}); e.g. '{target.id} = 0  # tune: seed'",
                lineno,
            )
        spec.seed = SeedVar(name=target.id, default=default, lineno=lineno)

    def rewrite(self, node: ast.stmt, spec: CellSpec) -> ast.stmt:
        assert spec.seed is not None
        node.value = runtime_call("seed", [ast.Constant(spec.seed.default)], node.value)  # type: ignore[attr-defined]
        return node


class FoldsAnnotation(BaseAnnotation):
    """``fold = 0  # tune: folds(5)``: run the cell once per fold (``fold`` = 0 ... 4) in every
    trial and optimise the mean of the metric; the folds are the trial's steps (a scheduler may
    stop a trial between folds). Not searched; ``--apply`` runs the cell's own value."""

    name = "folds"
    sits_on = "assign"
    arity = 1
    usage = "fold = 0  # tune: folds(5)"
    attr = "folds"  # the CellSpec field
    method = "fold"  # the runtime call

    def check_arity(self, args: tuple[Any, ...], kwargs: dict[str, Any], lineno: int) -> None:
        if len(args) != 1 or kwargs:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: {self.name} takes the number of folds, e.g. '{self.usage}'", lineno
            )

    def attach(
        self, spec: CellSpec, node: ast.stmt, args: tuple[Any, ...], kwargs: dict[str, Any], lineno: int
    ) -> None:
        target = _assigned(node)
        first = getattr(spec, self.attr)
        if first is not None:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: a second '# tune: {self.name}(...)' (the first is {first.name!r} "
                f"on line {first.lineno}); mark one",
                lineno,
            )
        k = args[0]
        if not isinstance(k, int) or isinstance(k, bool) or k < 2:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: {self.name}(k) needs a whole number of folds k >= 2, got {k!r}; "
                f"e.g. '{self.usage}'",
                lineno,
            )
        value = node.value  # type: ignore[attr-defined]
        default = _literal(value, lineno, value.col_offset + 1, f"the fold {target.id!r}")
        if not isinstance(default, int) or isinstance(default, bool) or not 0 <= default < k:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: the fold {target.id!r} must start as a whole number from 0 to "
                f"{k - 1} (got {default!r}); e.g. '{target.id} = 0  # tune: {self.name}({k})'",
                lineno,
            )
        setattr(spec, self.attr, FoldsVar(name=target.id, k=k, default=default, lineno=lineno))

    def rewrite(self, node: ast.stmt, spec: CellSpec) -> ast.stmt:
        var = getattr(spec, self.attr)
        node.value = runtime_call(self.method, [ast.Constant(var.default)], node.value)  # type: ignore[attr-defined]
        return node


class StateAnnotation(BaseAnnotation):
    """``model = Net()  # tune: state``: a variable that is part of a trial's state. When a trial
    completes, its state variables are saved with it (a checkpoint), so the best model can be
    had back without retraining (``res.best_state()``, ``--apply``)."""

    name = "state"
    sits_on = "assign"
    spans_lines = True  # the model's constructor, one argument a line
    usage = "model = make_model()  # tune: state"

    def check_arity(self, args: tuple[Any, ...], kwargs: dict[str, Any], lineno: int) -> None:
        if args or kwargs:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: 'state' takes no arguments; write '{self.usage}'", lineno
            )

    def attach(
        self, spec: CellSpec, node: ast.stmt, args: tuple[Any, ...], kwargs: dict[str, Any], lineno: int
    ) -> None:
        target = _assigned(node)
        if any(p.name == target.id for p in spec.params):
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: {target.id!r} is tuned, so it cannot also be state; mark the "
                "model or optimizer the tuned values build",
                lineno,
            )
        if target.id not in [n for n, _ in spec.state]:
            spec.state.append((target.id, lineno))


class OuterAnnotation(FoldsAnnotation):
    """``outer = 0  # tune: outer(5)``: nested cross-validation. nbtune runs one search per
    outer fold (each its own study, ``NAME.outer0`` ...), with ``outer`` set to that fold, and
    scores each winner once on the sealed holdout (``--holdout``), which the cell computes on
    the outer fold's test data."""

    name = "outer"
    usage = "outer = 0  # tune: outer(5)"
    attr = "outer"
    method = "outer_fold"


ANNOTATIONS: dict[str, BaseAnnotation] = {}


def register_annotation(kind: BaseAnnotation) -> BaseAnnotation:
    """Make ``# tune: <kind.name>`` known to the parser and the rewriter."""
    ANNOTATIONS[kind.name] = kind
    return kind


def annotation_kinds() -> tuple[str, ...]:
    """Every annotation kind, value kinds first (for error messages and the help)."""
    return tuple(ANNOTATIONS)


for _name in PARAM_KINDS:
    register_annotation(ValueAnnotation(_name))
register_annotation(EpochsAnnotation())
register_annotation(SeedAnnotation())
register_annotation(FoldsAnnotation())
register_annotation(OuterAnnotation())
register_annotation(StateAnnotation())


def _literal(node: ast.AST, lineno: int, col: int, what: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    with contextlib.suppress(ValueError, ArithmeticError):
        return _arithmetic(node)
    if isinstance(node, ast.Tuple):  # a tuple choice written with arithmetic, (2 * 16,)
        return tuple(_literal(e, lineno, col, what) for e in node.elts)
    hint = ""
    if isinstance(node, ast.Name):  # choice(standard, robust): a word meant as a string
        hint = f"; a string is quoted: {node.id!r}"
    elif isinstance(node, (ast.Call, ast.Attribute)):  # choice(StandardScaler(), RobustScaler()) (found trying nbtune)
        hint = (
            "; to choose among objects, tune their names and build the one chosen: "
            '\'scaler_name = "standard"  # tune: choice("standard", "robust")\', then '
            '\'scaler = {"standard": StandardScaler(), "robust": RobustScaler()}[scaler_name]\''
        )
    raise AnnotationError(
        f"line {lineno}, column {col} of the %%tune cell: {what} must be a Python literal "
        f"(a number, string, True/False/None, a tuple of them, or arithmetic of numbers such as 10**-3), got "
        f"{ast.unparse(node)!r}" + hint,
        lineno,
    )


_OPERATORS: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _arithmetic(node: ast.AST) -> int | float:
    """Arithmetic of number literals (``10**-3``, ``2 * 64``, ``1 / 3``), never names or calls:
    what people write for a default or a bound. ValueError for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _arithmetic(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _arithmetic(node.left), _arithmetic(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
            raise ValueError("too large a power to write as a bound")
        result = _OPERATORS[type(node.op)](left, right)
        if not isinstance(result, (int, float)):  # a negative number to a fractional power: complex
            raise ValueError("not a real number")
        return result
    raise ValueError("not arithmetic of numbers")


def _comments(source: str, line_offset: int) -> list[tuple[int, str, int]]:
    """(notebook line, annotation text, column of the text) of each ``# tune:`` comment.

    Raises:
        AnnotationError: a comment meant as an annotation but not written as one.
    """
    out: list[tuple[int, str, int]] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return out  # the ast parse reports the real syntax error with its line
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        lineno = tok.start[0] + line_offset
        m = _COMMENT_RE.match(tok.string)
        if m:
            text = m.group("text")
            if re.search(r"#\s*tune\s*:", text):  # the second was ignored, silently (found trying nbtune)
                raise AnnotationError(
                    f"line {lineno} of the %%tune cell: two '# tune:' annotations on one line ({tok.string!r}); keep "
                    "the one you mean",
                    lineno,
                )
            text_col = tok.start[1] + m.start("text") + (len(text) - len(text.lstrip()))
            out.append((lineno, text.strip(), text_col))
            continue
        near = _NEAR_RE.search(tok.string)
        kind = (near.group("kind") or near.group("later")).lower() if near else ""
        if kind in ANNOTATIONS:
            example = f"# tune: {kind}" + ("(...)" if kind in PARAM_KINDS else "")
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: {tok.string!r} looks like an annotation but is not read as "
                f"one; write it as '{example}' (lower-case 'tune' and a colon, at the start of the comment)",
                lineno,
            )
    return out


# Optuna's and other libraries' words for the kinds (suggest_float, categorical, randint)
_OPTUNA_KINDS = {
    "float": "uniform (loguniform on a log scale)",
    "categorical": "choice",
    "randint": "int (its top taken in: Ray's randint(1, 10) is int(1, 9))",
    "discrete_uniform": "uniform(low, high, step=...)",
    "int_log": "logint",
    "float_log": "loguniform",
    "log_uniform": "loguniform",
    "loguniform_int": "logint",
    "int": "int",
    "integer": "int",
    "choices": "choice",
    "reciprocal": "loguniform",
    # Ray Tune's, W&B's and hyperopt's words (found trying nbtune as a new user, coming from them)
    "lograndint": "logint (its top taken in: Ray's lograndint(1, 100) is logint(1, 99))",
    "qrandint": "int(low, high, step=q)",
    "quniform": "uniform(low, high, step=q)",
    "qloguniform": "loguniform",
    "log_uniform_values": "loguniform",
    "q_log_uniform_values": "loguniform",
    "int_uniform": "int",
    "q_uniform": "uniform(low, high, step=q)",
    "grid_search": "choice (every value in turn: --sampler grid)",
    "values": "choice",
}


def _annotation_and_text_after(text: str) -> tuple[str, str]:
    """The shortest start of ``text`` that reads as a whole annotation of a known kind (``KIND`` or
    ``KIND(args)``), and the text after it; ("", "") if there is none."""
    ends = [i + 1 for i, c in enumerate(text) if c == ")"]
    first = text.split(maxsplit=1)[0] if text.split() else ""
    if first.isidentifier():
        ends.insert(0, len(first))
    for end in ends:
        head, rest = text[:end].strip(), text[end:].strip()
        if not rest:
            continue
        try:
            node = ast.parse(head, mode="eval").body
        except SyntaxError:
            continue
        func = node.func if isinstance(node, ast.Call) else node
        if isinstance(func, ast.Name) and func.id in ANNOTATIONS:
            return head, rest
    return "", ""


def _parse_annotation(text: str, lineno: int, col: int) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    valid = ", ".join(ANNOTATIONS)
    if not text:
        raise AnnotationError(
            f"line {lineno}, column {col + 1} of the %%tune cell: empty annotation; "
            f"write a kind after 'tune:', one of {valid}",
            lineno,
        )
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        c = col + (e.offset or 1)
        head, rest = _annotation_and_text_after(text)
        if head:  # 'loguniform(1e-3, 1e1)   (changed default)': a note after a whole annotation
            raise AnnotationError(
                f"line {lineno}, column {col + len(head) + 1} of the %%tune cell: text after the annotation "
                f"'{head}': {rest!r}; put a note in a comment of its own, '# tune: {head}  # {rest.lstrip(',;:- ')}'",
                lineno,
            ) from None
        raise AnnotationError(
            f"line {lineno}, column {c} of the %%tune cell: cannot parse annotation "
            f"{text!r} ({e.msg}); write it as KIND(args), e.g. loguniform(1e-5, 1e-1)",
            lineno,
        ) from None
    if isinstance(node, ast.Name):
        kind, call = node.id, None
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        kind, call = node.func.id, node
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):  # tune.loguniform(...), hp.choice(...)
        word = node.func.attr.removeprefix("suggest_")
        same = word if word in ANNOTATIONS else _OPTUNA_KINDS.get(word)
        owner = ast.unparse(node.func.value)
        given = list(node.args)
        if given and isinstance(given[0], ast.Constant) and isinstance(given[0].value, str):
            given = given[1:]  # the name hyperopt's hp.uniform("lr", 0, 1) and Optuna's suggest_* are given first
        raise AnnotationError(
            f"line {lineno}, column {col + 1} of the %%tune cell: cannot read annotation {text!r}; write the kind "
            f"alone, without {owner + '.'!r}"
            + (f": # tune: {same}({', '.join(ast.unparse(a) for a in given)})" if same in ANNOTATIONS else "")
            + (f" ({word} is {same} here)" if same and same not in ANNOTATIONS else ""),
            lineno,
        )
    else:
        raise AnnotationError(
            f"line {lineno}, column {col + 1} of the %%tune cell: cannot read annotation "
            f"{text!r}; write it as KIND(args), e.g. loguniform(1e-5, 1e-1)",
            lineno,
        )
    if kind not in ANNOTATIONS:
        word = kind.removeprefix("suggest_")
        same = _OPTUNA_KINDS.get(word) or (word if word in ANNOTATIONS else None)
        raise AnnotationError(
            f"line {lineno} of the %%tune cell: unknown annotation kind {kind!r}; valid kinds are {valid}"
            + (f" ({kind} is {same} here)" if same else ""),
            lineno,
        )
    if call is None:
        return kind, (), {}
    args = tuple(
        _literal(a, lineno, col + a.col_offset + 1, f"argument {i + 1} of {kind}") for i, a in enumerate(call.args)
    )
    if any(isinstance(a, ast.Tuple) for a in call.args):
        for a in call.args:  # choice((64), (128,)): '(64)' is the number 64 (found retesting tuple choices)
            before = text[: a.col_offset].rstrip()
            opened = len(before) - 1  # (the node's span leaves its parentheses out: the call's own is not one)
            if (
                isinstance(a, ast.Constant)
                and before.endswith("(")
                and opened != call.func.end_col_offset
                and text[a.end_col_offset or 0 :].lstrip().startswith(")")
            ):
                raise AnnotationError(
                    f"line {lineno}, column {col + opened + 1} of the %%tune cell: ({a.value!r}) is the number "
                    f"{a.value!r}, not a tuple; a tuple of one value is written with a comma, ({a.value!r},)",
                    lineno,
                )
    kwargs = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise AnnotationError(f"line {lineno} of the %%tune cell: {kind} does not take **kwargs", lineno)
        kwargs[kw.arg] = _literal(kw.value, lineno, col + kw.value.col_offset + 1, f"{kw.arg}=")
    return kind, args, kwargs


def _step_hint(kind: str, args: tuple[Any, ...]) -> str:
    """``int(1, 10, 2)``: the step is named, and the top moved onto a step (1, 3, ..., 9) so that
    the suggestion is itself valid (found trying nbtune as a new user)."""
    low, high, step = args
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in args) and step > 0 and high > low:
        high = low + ((high - low) // step) * step
        if isinstance(step, float) or isinstance(low, float):
            high = round(high, 12)
    return f" (a step is named: {kind}({low!r}, {high!r}, step={step!r}))"


_BLOCKS = {
    ast.If: "an 'if' block",
    ast.With: "a 'with' block",
    ast.For: "a 'for' loop",
    ast.While: "a 'while' loop",
    ast.Try: "a 'try' block",
    ast.FunctionDef: "a function",
    ast.AsyncFunctionDef: "a function",
    ast.ClassDef: "a class",
}


def _where_instead(tree: ast.Module, lineno: int, annotation: str) -> str:
    """What is wrong with the annotated line, and the fix: a comment on a dict entry, a keyword
    argument or a dict item (a ``param_grid``'s habit, found trying nbtune as a new user): the
    variable to declare and how to use it; an assignment inside a block or an augmented one, two
    statements on the line; else ""."""
    on_line = [st for st in tree.body if st.lineno <= lineno <= (st.end_lineno or st.lineno)]
    if len(on_line) > 1:  # 'alpha = 1.0; beta = 2  # tune: ...' (the last one had been tuned, silently)
        return (
            f"; the line holds {len(on_line)} statements ({'; '.join(ast.unparse(st) for st in on_line)}): put the "
            "one to tune on a line of its own, with the comment"
        )
    for top in on_line:
        inner = [
            st
            for st in ast.walk(top)
            if st is not top and isinstance(st, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and st.lineno == lineno
        ]
        if inner and isinstance(top, tuple(_BLOCKS)):
            target = inner[0].targets[0] if isinstance(inner[0], ast.Assign) else inner[0].target
            name = ast.unparse(target)
            if annotation.strip() == "state" and isinstance(target, ast.Name):  # an optimizer chosen by if/else
                return (
                    f"; this one is inside {_BLOCKS[type(top)]} (line {top.lineno}): name it with --state instead "
                    f"(--state {name}, with the model's name if it is not marked: the option takes a variable set "
                    "anywhere in the cell)"
                )
            return (
                f"; this one is inside {_BLOCKS[type(top)]} (line {top.lineno}): set '{name} = ...  # tune: "
                f"{annotation}' at the top level above it, and use {name} there"
            )
    first = on_line[0] if on_line else None
    if isinstance(first, ast.AugAssign):  # alpha += 0.5
        name = ast.unparse(first.target)
        return (
            f"; '{ast.unparse(first)}' changes a value set before: annotate the line that first sets it, "
            f"'{name} = ...  # tune: {annotation}'"
        )
    for node in ast.walk(tree):
        found: tuple[str, ast.expr, str] | None = None
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if key is not None and value.lineno == lineno:
                    found = (_variable_for(key), value, f"{ast.unparse(key)}: {{name}}")
        elif isinstance(node, ast.keyword) and node.arg and node.value.lineno == lineno:
            found = (node.arg, node.value, f"{node.arg}={{name}}")
        elif (
            isinstance(node, ast.Assign)
            and node.lineno == lineno
            and len(node.targets) == 1
            and isinstance(node.targets[0], (ast.Subscript, ast.Attribute))
        ):
            target = node.targets[0]  # params["alpha"] = ..., CFG.alpha = ...
            key = target.slice if isinstance(target, ast.Subscript) else ast.Constant(target.attr)
            found = (_variable_for(key), node.value, f"{ast.unparse(target)} = {{name}}")
        elif (
            isinstance(node, ast.Assign)
            and node.lineno == lineno
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Tuple)
            and isinstance(node.value, ast.Tuple)
            and len(node.targets[0].elts) == len(node.value.elts)
        ):  # alpha, loss = 1e-4, "hinge": one annotation per variable
            pairs = [
                f'"{ast.unparse(t)} = {ast.unparse(v)}"'
                for t, v in zip(node.targets[0].elts, node.value.elts, strict=True)
            ]
            return f"; one variable a line, each with its own '# tune:' comment: {', '.join(pairs)}"
        if found is not None:
            name, value, use = found
            return (
                f"; declare the value on a line of its own above it, '{name} = {ast.unparse(value)}  # tune: "
                f"{annotation}', and write {use.format(name=name)}"
            )
    return ""


def _variable_for(key: ast.expr) -> str:
    """A variable name for a dict key: ``"clf__alpha"`` -> ``alpha``."""
    text = key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else ast.unparse(key)
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in text.rsplit("__", 1)[-1]).strip("_")
    return name if name.isidentifier() and not keyword.iskeyword(name) else "value"


def _is_simple_assignment(stmt: ast.stmt | None, lineno: int) -> bool:
    """``name = value`` (or ``name: T = value``) on one line."""
    if isinstance(stmt, ast.Assign):
        return len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) and stmt.end_lineno == lineno
    if isinstance(stmt, ast.AnnAssign):
        return isinstance(stmt.target, ast.Name) and stmt.value is not None and stmt.end_lineno == lineno
    return False


def _check_not_overwritten(spec: CellSpec, tree: ast.Module) -> None:
    """A tuned variable set again later at the top level (without reading it) would make every
    trial ignore its tuned value. ``lr = lr * 0.1`` or ``lr *= 0.9`` (a schedule) read it: fine."""
    tuned = {p.name: p.lineno for p in spec.params}
    for var in (spec.seed, spec.folds, spec.outer):
        if var is not None:
            tuned[var.name] = var.lineno
    for stmt in tree.body:
        if not isinstance(stmt, (ast.Assign, ast.AnnAssign)) or stmt.lineno in spec.marks:
            continue
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        reads = {n.id for n in ast.walk(stmt.value) if isinstance(n, ast.Name)} if stmt.value is not None else set()
        for target in targets:
            for n in ast.walk(target):
                if isinstance(n, ast.Name) and n.id in tuned and stmt.lineno > tuned[n.id] and n.id not in reads:
                    raise AnnotationError(
                        f"line {stmt.lineno} of the %%tune cell: {n.id!r} is annotated on line {tuned[n.id]} but "
                        "set again here, so no trial would use the value nbtune gives it; remove this assignment "
                        "or use another name",
                        stmt.lineno,
                    )


def _edits(a: str, b: str) -> tuple[int, bool]:
    """The edits from ``a`` to ``b`` (letters replaced, added, dropped, or two neighbours swapped),
    and whether one of them replaced a letter."""
    rows = [[(j, False) for j in range(len(b) + 1)]]
    for i in range(1, len(a) + 1):
        row = [(i, False)]
        for j in range(1, len(b) + 1):
            options = [(rows[i - 1][j][0] + 1, rows[i - 1][j][1]), (row[j - 1][0] + 1, row[j - 1][1])]
            same = a[i - 1] == b[j - 1]
            options.append((rows[i - 1][j - 1][0] + (not same), rows[i - 1][j - 1][1] or not same))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                options.append((rows[i - 2][j - 2][0] + 1, rows[i - 2][j - 2][1]))
            row.append(min(options, key=lambda o: (o[0], o[1])))
        rows.append(row)
    return rows[-1][-1]


def _typo_of(value: str, strings: list[str]) -> tuple[str | None, str | None]:
    """The choice ``value`` is a typo of, if it looks like one (the case; a letter added, dropped or two
    swapped; a letter or two replaced in a longer word), and the choice it is one letter from where
    that may be another name (``"xgb"`` beside ``"lgb"``): (typo of, near), either None."""
    import difflib

    like = next((c for c in strings if c.lower() == value.lower()), None)
    if like is not None:
        return like, None
    near = None
    for c in strings:
        n, replaced = _edits(value.lower(), c.lower())
        if n == 1 and (not replaced or min(len(value), len(c)) >= 5) and len(value) >= 3:
            return c, None
        if n == 2 and min(len(value), len(c)) >= 7:
            return c, None
        if n == 1 and near is None:
            near = c
    close = difflib.get_close_matches(value, strings, n=1, cutoff=0.8)
    return (close[0], None) if close else (None, near)


def literal(node: ast.expr | None) -> tuple[bool, Any]:
    """``(True, value)`` for a constant written in the code, or a tuple or list of them (a tuple choice's
    ``(64, 32)``; ``[64, 32]``, which no tuple equals); else ``(False, None)``."""
    if isinstance(node, ast.Constant):
        return True, node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [literal(e) for e in node.elts]
        if all(ok for ok, _ in items):
            values = [v for _, v in items]
            return True, tuple(values) if isinstance(node, ast.Tuple) else values
    return False, None


def hashable_literal(node: ast.expr | None) -> tuple[bool, Any]:
    """:func:`literal`, when its value can be a set's member or a dict's key (a tuple, not a list)."""
    ok, value = literal(node)
    try:
        hash(value)
    except TypeError:
        return False, None
    return ok, value


def compared_outside_choices(spec: CellSpec) -> list[tuple[int, Param, Any, Any, Any]]:
    """Where the cell compares a tuned ``choice`` with a value that is not one of its choices
    (``if model == "Lasso":`` for ``choice("ridge", "lasso")``; ``in``, ``!=`` and ``match``
    too): in the search that test never holds, or always does. Each as ``(line, param, value,
    the choice it is a typo of, the choice it is one letter from)``, the last two None or a choice:
    one that differs only in case, by a letter added, dropped or two swapped, or (in a longer
    word) a letter or two replaced, is what a typo looks like (``"smv"`` for ``"svm"``); a short
    one a letter from a choice may be another name (``"xgb"`` beside ``"lgb"``)."""
    if spec.tree is None:
        return []
    choices = {p.name: p for p in spec.params if p.kind == "choice"}
    if not choices:
        return []
    found: list[tuple[int, Param, Any, Any, Any]] = []

    def check(name: str, values: list[ast.expr], lineno: int) -> None:
        p = choices[name]
        for node in values:
            ok, v = literal(node)
            if not ok:
                continue
            if any(v == c and type(v) is type(c) for c in p.args):
                continue
            like = near = None
            if isinstance(v, str):
                like, near = _typo_of(v, [c for c in p.args if isinstance(c, str)])
            found.append((lineno, p, v, like, near))

    for node in _outside_definitions(spec.tree):
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left, op, right = node.left, node.ops[0], node.comparators[0]
            if isinstance(op, (ast.Eq, ast.NotEq)):
                for a, b in ((left, right), (right, left)):
                    if isinstance(a, ast.Name) and a.id in choices:
                        check(a.id, [b], node.lineno)
            elif (
                isinstance(op, (ast.In, ast.NotIn))
                and isinstance(left, ast.Name)
                and left.id in choices
                and isinstance(right, (ast.Tuple, ast.List, ast.Set))
            ):
                check(left.id, right.elts, node.lineno)
        elif isinstance(node, ast.Match) and isinstance(node.subject, ast.Name) and node.subject.id in choices:
            for case in node.cases:
                patterns = case.pattern.patterns if isinstance(case.pattern, ast.MatchOr) else [case.pattern]
                values = [pt.value for pt in patterns if isinstance(pt, ast.MatchValue)]
                check(node.subject.id, values, case.pattern.lineno)
    return found


def _choice_test(test: ast.expr, choices: dict[str, Param]) -> tuple[str, set[Any], bool] | None:
    """``model == "svm"`` / ``model in ("a", "b")`` / ``!=`` / ``not in`` on a tuned choice: (its name,
    the values compared, whether the test holds for them); None for any other test."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    left, op, right = test.left, test.ops[0], test.comparators[0]
    if isinstance(right, ast.Name) and literal(left)[0] and isinstance(op, (ast.Eq, ast.NotEq)):
        left, right = right, left
    if not (isinstance(left, ast.Name) and left.id in choices):
        return None
    if isinstance(op, (ast.Eq, ast.NotEq)):
        ok, value = hashable_literal(right)  # (a tuple choice's (64, 32) too)
        return (left.id, {value}, isinstance(op, ast.Eq)) if ok else None
    if isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, (ast.Tuple, ast.List, ast.Set)):
        found = [hashable_literal(e) for e in right.elts]
        if all(ok for ok, _ in found):
            return left.id, {v for _, v in found}, isinstance(op, ast.In)
    return None


def read_only_under(spec: CellSpec) -> dict[str, list[list[tuple[str, set[Any], bool]]]]:
    """The tuned variables the cell reads only under tests of a tuned choice (``if model == "knn":``
    for ``n_neighbors``; ``elif``, ``else``, ``x if model == "knn" else y`` and ``match model:`` too):
    for each, one list of conditions per place it is read, ``(choice, values, held)`` each, all of
    which hold where it is read. A variable read anywhere else (outside such tests, in a function the
    cell defines, under a test of anything else alone) is not in it: every trial reads it."""
    return _under_choices(spec, {p.name for p in spec.params}, store=False)


def set_only_under(spec: CellSpec, name: str) -> list[list[tuple[str, set[Any], bool]]] | None:
    """Where the cell sets ``name`` (the metric) when it sets it only under tests of a tuned choice
    (:func:`read_only_under`'s conditions, one list per place), else None."""
    return _under_choices(spec, {name}, store=True).get(name)


def _under_choices(spec: CellSpec, names: set[str], store: bool) -> dict[str, list[list[tuple[str, set[Any], bool]]]]:
    if spec.tree is None:
        return {}
    choices = {p.name: p for p in spec.params if p.kind == "choice"}
    if not choices:
        return {}
    out: dict[str, list[list[tuple[str, set[Any], bool]]]] = {}
    always: set[str] = set()
    wanted = ast.Store if store else ast.Load

    def walk(node: ast.AST, held: list[tuple[str, set[Any], bool]]) -> None:
        if isinstance(node, ast.Name) and isinstance(node.ctx, wanted) and node.id in names:
            if held:
                out.setdefault(node.id, []).append(list(held))
            else:
                always.add(node.id)
            return
        if isinstance(node, ast.Lambda):  # run where it is called: as its place says (a dict of models by choice)
            walk(node.body, held)
            return
        if (  # {"knn": KNN(n_neighbors=k), "rf": RF()}[model]: each value is for its key
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Dict)
            and isinstance(node.slice, ast.Name)
            and node.slice.id in choices
            and all(hashable_literal(k)[0] for k in node.value.keys)
        ):
            walk(node.slice, held)
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                walk(value, [*held, (node.slice.id, {hashable_literal(key)[1]}, True)])
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            # read or set from a function the cell defines: when it runs cannot be told, so left alone
            inside = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            inside |= {g for n in ast.walk(node) if isinstance(n, (ast.Global, ast.Nonlocal)) for g in n.names}
            always.update(names & inside)
            return
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):  # a and b: b only where a held
            inner = held
            for value in node.values:
                walk(value, inner)
                test = _choice_test(value, choices)
                inner = inner if test is None else [*inner, test]
            return
        if isinstance(node, (ast.If, ast.IfExp)):
            walk(node.test, held)
            parts = node.test.values if isinstance(node.test, ast.BoolOp) and isinstance(node.test.op, ast.And) else []
            tests = [t for t in map(lambda v: _choice_test(v, choices), parts or [node.test]) if t is not None]
            body: list[ast.AST] = [*node.body] if isinstance(node.body, list) else [node.body]
            orelse: list[ast.AST] = [*node.orelse] if isinstance(node.orelse, list) else [node.orelse]
            for child in body:  # where every choice test of it held
                walk(child, [*held, *tests])
            # the else: where the test failed, which says something only of a test of one choice
            inner = held if len(tests) != 1 or parts else [*held, (tests[0][0], tests[0][1], not tests[0][2])]
            for child in orelse:
                walk(child, inner)
            return
        if isinstance(node, ast.Match) and isinstance(node.subject, ast.Name) and node.subject.id in choices:
            walk(node.subject, held)
            for case in node.cases:
                patterns = case.pattern.patterns if isinstance(case.pattern, ast.MatchOr) else [case.pattern]
                values = {
                    pt.value.value
                    for pt in patterns
                    if isinstance(pt, ast.MatchValue) and isinstance(pt.value, ast.Constant)
                }
                plain = len(values) == len(patterns) and case.guard is None
                inner = [*held, (node.subject.id, values, True)] if plain else held
                for child in case.body:
                    walk(child, inner)
            return
        for child in ast.iter_child_nodes(node):
            walk(child, held)

    walk(spec.tree, [])
    return {name: places for name, places in out.items() if name not in always}


def inactive_in(params: dict[str, Any], under: dict[str, list[list[tuple[str, set[Any], bool]]]]) -> set[str]:
    """The tuned variables a configuration never reads (:func:`read_only_under`): ``n_neighbors`` of
    a trial whose ``model`` is ``"rf"``."""
    return {
        name
        for name, places in under.items()
        if not any(all((params.get(c) in values) == held for c, values, held in place) for place in places)
    }


def _outside_definitions(tree: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``tree`` outside function, lambda and class bodies, where a name is the cell's
    own (a function's parameter ``model`` is another variable)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo.extend(ast.iter_child_nodes(node))


def _check_compared_choices(spec: CellSpec) -> None:
    """A tuned choice compared with what looks like a typo of one of its choices: that branch
    never runs in the search, silently (``if model == "Lasso":`` ran Ridge in every "lasso"
    trial, and the results said lasso)."""
    for lineno, p, value, like, _ in compared_outside_choices(spec):
        if like is not None:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: {p.name!r} is compared with {value!r}, which is not one of its "
                f"choices {list(p.args)!r} (line {p.lineno}), so in the search that test never holds (or always "
                f"does); did you mean {like!r}?",
                lineno,
            )


def parse_cell(source: str, line_offset: int = 1) -> CellSpec:
    """Parse an annotated cell body.

    Args:
        source: the cell body (IPython syntax already transformed to Python).
        line_offset: how many notebook lines come before the body (the ``%%tune`` line).

    Returns:
        The parameters, the epochs loop and the parsed tree.

    Raises:
        CellError: the cell is not valid Python (the message names the notebook line).
        AnnotationError: an annotation is malformed or misplaced.

    Example:
        >>> spec = parse_cell("lr = 0.1  # tune: loguniform(1e-3, 1.0)\\nscore = lr\\n")
        >>> spec.params[0].name, spec.params[0].default
        ('lr', 0.1)
    """
    try:
        tree = ast.parse(source, filename="<%%tune cell>")
    except (SyntaxError, ValueError) as e:  # ValueError: a NUL byte, on some Pythons
        msg = getattr(e, "msg", None) or str(e)
        body_line = getattr(e, "lineno", None)
        if body_line is None:  # no position (a NUL byte): find it
            body_line = source[: source.find("\0")].count("\n") + 1 if "\0" in source else 1
        line = body_line + line_offset
        text = (getattr(e, "text", None) or "").strip()
        raise CellError(f"line {line} of the %%tune cell: {msg}" + (f": {text}" if text else "")) from None
    ast.increment_lineno(tree, line_offset)
    spec = CellSpec(source=source, tree=tree, line_offset=line_offset)

    # Which top-level statement starts on which line; which lines lie inside a def/class.
    top_level = {stmt.lineno: stmt for stmt in tree.body}
    loops: dict[int, tuple[ast.For, bool]] = {}
    outer_loop: dict[int, int] = {}  # a for loop's line -> the line of a loop it runs inside
    stack: list[tuple[ast.AST, bool, int | None]] = [(tree, False, None)]
    while stack:
        parent, in_def, in_loop = stack.pop()
        for child in ast.iter_child_nodes(parent):
            child_in_def = in_def or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
            )
            if isinstance(child, (ast.For, ast.AsyncFor)):
                loops[child.lineno] = (child, in_def)  # type: ignore[assignment]
                if in_loop is not None:
                    outer_loop[child.lineno] = in_loop
            is_loop = isinstance(child, (ast.For, ast.AsyncFor, ast.While))
            stack.append((child, child_in_def, child.lineno if is_loop else in_loop))  # type: ignore[attr-defined]

    for lineno, text, text_col in _comments(source, line_offset):
        name, args, kwargs = _parse_annotation(text, lineno, text_col)
        kind = ANNOTATIONS[name]
        if kind.arity == 2 and {"low", "high"} & set(kwargs):  # int(low=1, high=12): as Optuna spells them
            args = (*args, *(kwargs.pop(k) for k in ("low", "high")[len(args) :] if k in kwargs))
        kind.check_arity(args, kwargs, lineno)
        node: ast.stmt
        if kind.sits_on == "for":
            found = loops.get(lineno)
            if found is None or isinstance(found[0], ast.AsyncFor):
                raise AnnotationError(
                    f"line {lineno} of the %%tune cell: '# tune: {name}' must sit on a 'for' header line, "
                    f"e.g. '{kind.usage}'",
                    lineno,
                )
            node, in_def = found
            if in_def:
                raise AnnotationError(
                    f"line {lineno} of the %%tune cell: the {name} loop is inside a function or class; move the "
                    "loop to the cell's top level so nbtune can read the metric after each epoch",
                    lineno,
                )
        else:
            stmt = top_level.get(lineno)
            if kind.spans_lines:
                # 'model = Net(\n    hidden=64,\n)  # tune: state': the comment on its first line or its last
                stmt = stmt or next((st for st in tree.body if st.end_lineno == lineno), None)
                ok = stmt is not None and _is_simple_assignment(stmt, stmt.end_lineno or stmt.lineno)
            else:
                ok = _is_simple_assignment(stmt, lineno)
            # one statement on the line: of 'alpha = 1.0; beta = 2  # tune: ...', the last had been tuned
            ok = ok and sum(st.lineno <= lineno <= (st.end_lineno or st.lineno) for st in tree.body) == 1
            if not ok:
                raise AnnotationError(
                    f"line {lineno} of the %%tune cell: '# tune: {name}{'' if kind.arity == 0 else '(...)'}' must annotate a simple "
                    f"top-level assignment{'' if kind.spans_lines else ' on one line'}, such as '{kind.usage}'"
                    + _where_instead(tree, lineno, text),
                    lineno,
                )
            assert stmt is not None
            lineno = stmt.lineno  # marked where the statement starts, where the rewriter looks
            node = stmt
        kind.attach(spec, node, args, kwargs, lineno)  # (a second epochs loop, the outer one marked: said here)
        if kind.sits_on == "for" and lineno in outer_loop:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: the {name} loop runs inside another loop (line "
                f"{outer_loop[lineno]}), so its epochs would start again each time round; mark the outer loop if "
                "it runs once per epoch, else drop the mark (around a loop of folds, trials then run to the end)",
                lineno,
            )
        spec.marks[lineno] = name
    _check_not_overwritten(spec, tree)
    _check_compared_choices(spec)
    return spec
