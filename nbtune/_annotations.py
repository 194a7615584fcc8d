"""Find the ``# tune:`` comments of a cell and the statements they annotate.

Comments come from :mod:`tokenize` (with their line and column), statements from
:mod:`ast`; the annotation text itself is parsed with :mod:`ast`, never ``eval``.
Line numbers are reported as the notebook shows them: the ``%%tune`` line is line 1,
so line ``k`` of the cell body is line ``k + line_offset``.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Any

from nbtune._space import PARAM_KINDS, Param
from nbtune.exceptions import AnnotationError, CellError

__all__ = ["CellSpec", "EpochsLoop", "parse_cell", "ANNOTATION_KINDS"]

# Annotation kinds that mark a statement rather than a value. New kinds (a seed, a data
# split) are added here and handled in _objective without touching the parser.
LOOP_KINDS = ("epochs",)
ANNOTATION_KINDS = tuple(PARAM_KINDS) + LOOP_KINDS

_COMMENT_RE = re.compile(r"#\s*tune\s*:(?P<text>.*)$")


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


@dataclass
class CellSpec:
    """What the annotations of one cell say.

    Attributes:
        source: the cell body after IPython's transformation (``!cmd`` -> a call).
        params: the tunable variables, in cell order.
        epochs: the epochs loop, if any.
        tree: the parsed body, line numbers already in notebook numbering.
        line_offset: added to body line numbers to get notebook line numbers.
    """

    source: str
    params: list[Param] = field(default_factory=list)
    epochs: EpochsLoop | None = None
    tree: ast.Module | None = None
    line_offset: int = 1

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


def _literal(node: ast.AST, lineno: int, col: int, what: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise AnnotationError(
            f"line {lineno}, column {col} of the %%tune cell: {what} must be a Python literal "
            f"(a number, string, True/False/None), got {ast.unparse(node)!r}",
            lineno,
        ) from None


def _comments(source: str) -> list[tuple[int, int, str, int]]:
    """(body line, column of the comment, annotation text, column of the text)."""
    out: list[tuple[int, int, str, int]] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return out  # the ast parse reports the real syntax error with its line
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        m = _COMMENT_RE.match(tok.string)
        if m:
            text = m.group("text")
            stripped = text.strip()
            text_col = tok.start[1] + m.start("text") + (len(text) - len(text.lstrip()))
            out.append((tok.start[0], tok.start[1], stripped, text_col))
    return out


def _parse_annotation(text: str, lineno: int, col: int) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    valid = ", ".join(ANNOTATION_KINDS)
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
        raise AnnotationError(
            f"line {lineno}, column {c} of the %%tune cell: cannot parse annotation "
            f"{text!r} ({e.msg}); write it as KIND(args), e.g. loguniform(1e-5, 1e-1)",
            lineno,
        ) from None
    if isinstance(node, ast.Name):
        kind, call = node.id, None
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        kind, call = node.func.id, node
    else:
        raise AnnotationError(
            f"line {lineno}, column {col + 1} of the %%tune cell: cannot read annotation "
            f"{text!r}; write it as KIND(args), e.g. loguniform(1e-5, 1e-1)",
            lineno,
        )
    if kind not in ANNOTATION_KINDS:
        raise AnnotationError(
            f"line {lineno} of the %%tune cell: unknown annotation kind {kind!r}; "
            f"valid kinds are {valid}",
            lineno,
        )
    if call is None:
        return kind, (), {}
    args = tuple(_literal(a, lineno, col + a.col_offset + 1, f"argument {i + 1} of {kind}")
                 for i, a in enumerate(call.args))
    kwargs = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise AnnotationError(f"line {lineno} of the %%tune cell: {kind} does not take **kwargs", lineno)
        kwargs[kw.arg] = _literal(kw.value, lineno, col + kw.value.col_offset + 1, f"{kw.arg}=")
    return kind, args, kwargs


def _check_arity(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any], lineno: int) -> None:
    if kind in LOOP_KINDS:
        if args or kwargs:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: '{kind}' takes no arguments; "
                "write '# tune: epochs' on the for header (use --max-epochs for the length)",
                lineno,
            )
        return
    arity, allowed = PARAM_KINDS[kind]
    if arity is not None and len(args) != arity:
        raise AnnotationError(
            f"line {lineno} of the %%tune cell: {kind} takes {arity} arguments (low, high), "
            f"got {len(args)}",
            lineno,
        )
    bad = set(kwargs) - allowed
    if bad:
        ok = ", ".join(sorted(allowed)) or "no keyword arguments"
        raise AnnotationError(
            f"line {lineno} of the %%tune cell: {kind} got unknown keyword "
            f"{sorted(bad)[0]!r}; it accepts {ok}",
            lineno,
        )


def _loop_length(node: ast.For) -> int | None:
    """len() of ``range(<literals>)`` without running anything."""
    it = node.iter
    if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range" and not it.keywords:
        try:
            args = [ast.literal_eval(a) for a in it.args]
            return len(range(*args))
        except (ValueError, TypeError):
            return None
    return None


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
    except SyntaxError as e:
        line = (e.lineno or 0) + line_offset
        text = (e.text or "").strip()
        raise CellError(
            f"line {line} of the %%tune cell: {e.msg}" + (f": {text}" if text else "")
        ) from None
    ast.increment_lineno(tree, line_offset)
    spec = CellSpec(source=source, tree=tree, line_offset=line_offset)

    # Which top-level statement starts on which line; which lines lie inside a def/class.
    top_level = {stmt.lineno: stmt for stmt in tree.body}
    loops: dict[int, tuple[ast.For, bool]] = {}
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, in_def = stack.pop()
        for child in ast.iter_child_nodes(node):
            child_in_def = in_def or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            if isinstance(child, (ast.For, ast.AsyncFor)):
                loops[child.lineno] = (child, in_def)  # type: ignore[assignment]
            stack.append((child, child_in_def))

    seen: dict[str, int] = {}
    for body_line, _ccol, text, text_col in _comments(source):
        lineno = body_line + line_offset
        kind, args, kwargs = _parse_annotation(text, lineno, text_col)
        _check_arity(kind, args, kwargs, lineno)
        if kind == "epochs":
            found = loops.get(lineno)
            if found is None or isinstance(found[0], ast.AsyncFor):
                raise AnnotationError(
                    f"line {lineno} of the %%tune cell: '# tune: epochs' must sit on a 'for' header "
                    "line, e.g. 'for epoch in range(20):  # tune: epochs'",
                    lineno,
                )
            node, in_def = found
            if in_def:
                raise AnnotationError(
                    f"line {lineno} of the %%tune cell: the epochs loop is inside a function or "
                    "class; move the loop to the cell's top level so nbtune can read the metric "
                    "after each epoch",
                    lineno,
                )
            if spec.epochs is not None:
                raise AnnotationError(
                    f"line {lineno} of the %%tune cell: a second '# tune: epochs' loop (the first is "
                    f"on line {spec.epochs.lineno}); mark only the outer training loop",
                    lineno,
                )
            spec.epochs = EpochsLoop(lineno=lineno, length=_loop_length(node))
            continue

        stmt = top_level.get(lineno)
        ok = (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.end_lineno == lineno
        ) or (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and stmt.value is not None
            and stmt.end_lineno == lineno
        )
        if not ok:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: '# tune: {kind}(...)' must annotate a simple "
                "top-level assignment on one line, such as 'lr = 1e-3  # tune: loguniform(1e-5, 1e-1)'",
                lineno,
            )
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target  # type: ignore[union-attr]
        name = target.id  # type: ignore[union-attr]
        if name in seen:
            raise AnnotationError(
                f"line {lineno} of the %%tune cell: {name!r} is annotated twice (also on line "
                f"{seen[name]}); keep one annotation per variable",
                lineno,
            )
        seen[name] = lineno
        value = stmt.value  # type: ignore[union-attr]
        default = _literal(value, lineno, value.col_offset + 1, f"the default of {name!r}")
        spec.params.append(Param(name=name, kind=kind, args=args, kwargs=kwargs, default=default, lineno=lineno))
    return spec
