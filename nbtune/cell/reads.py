"""Which notebook variables a cell reads: the one place this is decided.

Two questions, two answers:

* :func:`outside_reads`: the globals a trial needs, sent to the workers. A superset: a name the
  cell binds only under a condition, in a loop or a ``with`` counts as read when it is read
  later, since one global too many costs a little pickling and one too few fails every trial.
* :func:`notebook_inputs`: the variables whose values the cell's results depend on, which go
  into the study's identity (:mod:`nbtune.cell.identity`). Here a name too many is the costly
  mistake: after ``--apply``, a plain run of the cell, or an earlier cell that left ``xb, yb``
  behind, the notebook holds the cell's own variables (``epoch``, ``preds``, ``model``), their
  values differ after every run, and the stored study would look like another one. So the cell
  is followed in the order it runs, assuming what a training cell does: a loop's body runs at
  least once, a ``try`` body completes, a name bound on both branches of an ``if`` is bound
  after it, and the functions it defines are called after the names they use are bound.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

__all__ = [
    "changes_notebook_arrays",
    "never_read",
    "non_finite_assignments",
    "notebook_inputs",
    "outside_reads",
    "scored_on_fit_data",
    "zero_division_nan",
]

# Line magics whose argument is Python code that runs in the cell's namespace (``%time
# model.fit(X, y)``): its reads are the cell's. IPython hands it over as a string.
_CODE_MAGICS = {"time", "timeit", "prun"}


class _InlineMagics(ast.NodeTransformer):
    """``get_ipython().run_line_magic('time', 'm = f(x)')`` read as ``m = f(x)``."""

    def visit_Expr(self, node: ast.Expr) -> ast.AST | list[ast.stmt]:
        code = _magic_code(node.value)
        if code is not None:
            body = _parse_code(code)
            if body is not None:
                for stmt in body:
                    ast.copy_location(stmt, node)
                    for child in ast.walk(stmt):
                        ast.copy_location(child, node)
                return body
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        code = _magic_code(node)
        if code is not None:  # y = %time f(x): the expression
            body = _parse_code(code)
            if body is not None and len(body) == 1 and isinstance(body[0], ast.Expr):
                expr = body[0].value
                for child in ast.walk(expr):
                    ast.copy_location(child, node)
                return expr
        return self.generic_visit(node)


def called_name(call: ast.Call) -> str:
    """The name a call is made by: ``fit`` of ``model.fit(X, y)``, ``train_test_split`` of a plain call ("" else)."""
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")


def _magic_code(node: ast.AST) -> str | None:
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "run_line_magic"
        and len(node.args) == 2
        and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
    ):
        return None
    name, code = node.args[0].value, node.args[1].value  # type: ignore[attr-defined]
    return code if name in _CODE_MAGICS else None


def _parse_code(code: str) -> list[ast.stmt] | None:
    """The statements of a magic's code, its options (``-n 3``, ``-r 2``, ``-q``) left out."""
    import re

    code = re.sub(r"^\s*(?:-[a-zA-Z](?:\s+[^-\s]\S*)?\s+)*", "", code)
    try:
        return ast.parse(code).body
    except SyntaxError:
        return None


def visible(tree: ast.Module) -> ast.Module:
    """The cell as it runs: the code inside ``%time``-like magics in place of their calls."""
    if not any(_magic_code(n) is not None for n in ast.walk(tree)):
        return tree
    import copy

    inlined: ast.Module = ast.fix_missing_locations(_InlineMagics().visit(copy.deepcopy(tree)))
    return inlined


def _unconditional_stores(stmt: ast.stmt) -> set[str]:
    """Names a top-level statement always binds (assignments, imports, definitions)."""
    if isinstance(stmt, ast.Assign):
        return {n.id for t in stmt.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None and isinstance(stmt.target, ast.Name):
        return {stmt.target.id}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names if a.name != "*"}
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    return set()


def outside_reads(tree: ast.Module) -> set[str]:
    """The names the cell may read before binding them itself: the globals a trial is given.

    Statement by statement: a name read (anywhere inside, functions included) before an
    earlier top-level statement bound it for sure. A name bound only under a condition, in a
    loop or a ``with`` counts as read from outside when read later: better to send one
    global too many to the workers than to miss one.
    """
    reads: set[str] = set()
    for body in {id(t): t for t in (tree, visible(tree))}.values():  # (the magic's call needs get_ipython)
        reads |= _reads_before_binding(body)
    return reads


def _reads_before_binding(tree: ast.Module) -> set[str]:
    bound: set[str] = set()
    reads: set[str] = set()
    for stmt in tree.body:
        nodes = list(ast.walk(stmt))
        used = {n.id for n in nodes if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store)}
        used |= {n.target.id for n in nodes if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name)}
        reads |= used - bound
        bound |= _unconditional_stores(stmt)
    return reads


def unconditional_reads(tree: ast.Module) -> dict[str, int]:
    """The names the cell reads for sure when it runs, each with the first line that reads it
    (:func:`unconditional_nodes`). A name read only where the cell may never go is left out (``if
    use_gpu: cuda_model()``)."""
    out: dict[str, int] = {}
    for node in unconditional_nodes(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            out.setdefault(node.id, node.lineno)
    return out


def unconditional_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """The expression nodes the cell evaluates for sure when it runs: in its top-level statements
    and the bodies of its ``for`` and ``with`` blocks, outside functions, lambdas, the bodies of
    comprehensions, branches (``if``, ``try``, ``while``, ``match``, an ``and``/``or`` past its first
    operand, ``x if c else y`` past its test) and annotations (not evaluated under ``from __future__
    import annotations``, which an earlier cell may have run)."""

    def expr(node: ast.AST) -> Iterator[ast.AST]:
        yield node
        if isinstance(node, ast.Lambda):
            for d in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                yield from expr(d)
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            yield from expr(node.generators[0].iter)
        elif isinstance(node, ast.BoolOp):
            yield from expr(node.values[0])
        elif isinstance(node, ast.IfExp):
            yield from expr(node.test)
        else:
            for child in ast.iter_child_nodes(node):
                yield from expr(child)

    def block(stmts: list[ast.stmt]) -> Iterator[ast.AST]:
        for stmt in stmts:
            if isinstance(stmt, (ast.For, ast.AsyncFor)):
                yield from expr(stmt.iter)
                yield from block(stmt.body)
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                for item in stmt.items:
                    yield from expr(item.context_expr)
                yield from block(stmt.body)
            elif isinstance(stmt, (ast.If, ast.While)):
                yield from expr(stmt.test)
            elif isinstance(stmt, ast.Match):
                yield from expr(stmt.subject)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                for d in stmt.decorator_list:
                    yield from expr(d)
            elif isinstance(stmt, (ast.Try, ast.Global, ast.Nonlocal)) or type(stmt).__name__ == "TryStar":
                continue
            elif isinstance(stmt, ast.AnnAssign):
                if stmt.value is not None:
                    yield from expr(stmt.value)
                yield from expr(stmt.target)
            else:
                yield from expr(stmt)

    yield from block(tree.body)


def changed_in_some_trials(tree: ast.Module, notebook: set[str]) -> list[tuple[int, str, str]]:
    """Where the cell changes a notebook object in place only under a condition: ``base.set_params(
    ...)`` or ``base.C = ...`` in an ``if``, ``match`` or ``try`` block, on a notebook variable the
    cell does not rebind (``notebook``: the names it reads from the notebook). Every trial gets the
    same object, so a setting made in one trial stays for the trials after it that do not make it
    (found trying nbtune as a new user: a scaler switched off in one trial stayed off in the next
    ones, which the results said had it). Each as (line, the variable, the code)."""
    stores = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    rebound = set(stores)
    # another name for the notebook's object, bound once (params = base_params): a change through it is a
    # change of the notebook's (found trying nbtune as a new user: said only after the search)
    alias = {
        node.targets[0].id: node.value.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Name)
        and node.value.id in notebook
        and node.value.id not in rebound
        and stores.count(node.targets[0].id) == 1
    }
    out: list[tuple[int, str, str]] = []

    def base(node: ast.expr) -> str | None:
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        if isinstance(node, ast.Name) and node.id in alias:
            return alias[node.id]
        return node.id if isinstance(node, ast.Name) and node.id in notebook and node.id not in rebound else None

    def visit(stmts: list[ast.stmt], conditional: bool) -> None:
        for stmt in stmts:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if conditional:
                found = None
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                    f = stmt.value.func
                    if isinstance(f, ast.Attribute) and f.attr in ("set_params", "set_config", "update"):
                        found = base(f.value)
                elif isinstance(stmt, (ast.Assign, ast.AugAssign)):
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                    found = next(
                        (b for t in targets if isinstance(t, (ast.Attribute, ast.Subscript)) and (b := base(t))), None
                    )
                if found is not None and not any(line == stmt.lineno and name == found for line, name, _ in out):
                    out.append((stmt.lineno, found, ast.unparse(stmt)[:60]))  # (once a line: found retesting)
            if isinstance(stmt, (ast.If, ast.While)):
                visit(stmt.body, True)
                visit(stmt.orelse, True)
            elif isinstance(stmt, ast.Match):
                for case in stmt.cases:
                    visit(case.body, True)
            elif isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
                for block in (stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody):  # type: ignore[attr-defined]
                    visit(block, True)
            elif isinstance(stmt, (ast.For, ast.AsyncFor, ast.With, ast.AsyncWith)):
                visit(stmt.body, conditional)
                visit(getattr(stmt, "orelse", []), True)

    visit(tree.body, False)
    return out


_NUMPY_IN_PLACE = {"at", "copyto", "put", "place", "putmask", "shuffle", "fill_diagonal"}  # np.add.at(U, ...)
_METHODS_IN_PLACE = {"fill", "sort", "resize", "put", "itemset", "shuffle", "partition", "setflags"}


def changes_notebook_arrays(tree: ast.Module, arrays: set[str]) -> list[tuple[int, str, str]]:
    """Where the cell changes a notebook array in place, in every trial: ``U += lr * grad``,
    ``U[u] -= ...``, ``np.add.at(U, rows, step)``, ``rng.shuffle(X)``, ``W.add_(...)`` (torch), a
    call's ``out=U``, on ``arrays`` (the notebook arrays, frames and tensors the cell reads) it does
    not make itself. Every trial then starts from what the trials before it left: factors made in
    an earlier cell and updated in the cell warm-started each trial from the last, and the best was
    whichever ran late (found trying nbtune as a new user: said only after the search). Each name
    once, at its first change, as (line, the name, the code)."""
    # a name the cell binds (U = U0.copy(), then U += ...) is its own; 'U += ...' alone binds none of its own
    augmented = {id(n.target) for n in ast.walk(tree) if isinstance(n, ast.AugAssign)}
    made = {
        n.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) and id(n) not in augmented
    }

    def array(node: ast.expr | None) -> str | None:
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            if isinstance(node, ast.Attribute) and node.attr not in ("data", "values", "loc", "iloc", "at", "iat", "T"):
                return None  # (model.coef_ += ...: an attribute of something else)
            node = node.value
        return node.id if isinstance(node, ast.Name) and node.id in arrays and node.id not in made else None

    found: dict[str, tuple[int, str, str]] = {}
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            skip |= {id(n) for n in ast.walk(node)} - {id(node)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        name = None
        if isinstance(node, ast.AugAssign):
            name = array(node.target)
        elif isinstance(node, ast.Assign):
            name = next((a for t in node.targets if isinstance(t, ast.Subscript) and (a := array(t))), None)
        elif isinstance(node, ast.Call):
            f = node.func
            if (
                isinstance(f, ast.Attribute)
                and node.args
                and (f.attr in _NUMPY_IN_PLACE and not (isinstance(f.value, ast.Name) and f.value.id in arrays))
            ):
                name = array(node.args[0])  # np.add.at(U, ...), rng.shuffle(X), np.copyto(U, ...)
            elif isinstance(f, ast.Attribute) and (
                f.attr in _METHODS_IN_PLACE or (f.attr.endswith("_") and not f.attr.startswith("_"))
            ):
                name = array(f.value)  # U.fill(0), W.add_(...)
            name = name or next((a for k in node.keywords if k.arg == "out" and (a := array(k.value))), None)
            inplace = any(
                k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value for k in node.keywords
            )
            if name is None and inplace and isinstance(f, ast.Attribute):
                name = array(f.value)  # df.fillna(0, inplace=True)
        if name is not None and name not in found:
            stmt_line = getattr(node, "lineno", 0)
            found[name] = (stmt_line, name, ast.unparse(node)[:60])
    return sorted(found.values())


def notebook_inputs(tree: ast.Module) -> set[str]:
    """The names the cell reads before it binds them, followed in the order the cell runs (see
    the module's docstring for what is assumed): the notebook variables its results depend on."""
    reader = _Reader()
    bound = reader.block(visible(tree).body, set())
    for names, local in reader.deferred:  # function bodies: called once the cell has bound what they use
        reader.reads |= names - local - bound
    return reader.reads


def never_read(tree: ast.Module, names: list[str]) -> list[str]:
    """Those of ``names`` the cell reads nowhere (a tuned variable nothing uses)."""
    read = {n.id for n in ast.walk(visible(tree)) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store)}
    return [name for name in names if name not in read]


def _bound_by_target(target: ast.expr) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


class _Reader:
    def __init__(self) -> None:
        self.reads: set[str] = set()
        self.deferred: list[tuple[set[str], set[str]]] = []  # (names a function reads, its own names)

    def block(self, stmts: list[ast.stmt], bound: set[str]) -> set[str]:
        """The names bound after ``stmts`` run with ``bound`` bound before them."""
        bound = set(bound)
        for stmt in stmts:
            bound = self.stmt(stmt, bound)
        return bound

    def expr(self, node: ast.AST | None, bound: set[str]) -> None:
        """Record the reads of an expression; ``bound`` grows with its ``:=`` bindings."""
        if node is None:
            return
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load) and node.id not in bound:
                self.reads.add(node.id)
        elif isinstance(node, ast.NamedExpr):
            self.expr(node.value, bound)
            bound.add(node.target.id)
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = set(bound)
            for gen in node.generators:
                self.expr(gen.iter, inner)
                inner |= _bound_by_target(gen.target)
                for cond in gen.ifs:
                    self.expr(cond, inner)
            parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            for part in parts:
                self.expr(part, inner)
        elif isinstance(node, ast.Lambda):
            for default in [*node.args.defaults, *node.args.kw_defaults]:
                self.expr(default, bound)
            self._defer([node.body], node.args)
        else:
            for child in ast.iter_child_nodes(node):
                self.expr(child, bound)

    def _defer(self, body: list[ast.stmt] | list[ast.expr], args: ast.arguments) -> None:
        nodes = [n for part in body for n in ast.walk(part)]
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        local = {a.arg for a in params if a is not None}
        local |= {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        local |= {n.name for n in nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        local |= {n.arg for n in nodes if isinstance(n, ast.arg)}  # nested functions' parameters
        names = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        self.deferred.append((names, local))

    def target(self, node: ast.expr, bound: set[str]) -> None:
        """Bind an assignment's target; ``obj.attr = ...`` and ``x[i] = ...`` read ``obj``, ``x``, ``i``."""
        if isinstance(node, ast.Name):
            bound.add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                self.target(element, bound)
        elif isinstance(node, ast.Starred):
            self.target(node.value, bound)
        else:
            for child in ast.iter_child_nodes(node):
                self.expr(child, bound)

    def stmt(self, node: ast.stmt, bound: set[str]) -> set[str]:
        b = set(bound)
        if isinstance(node, ast.Assign):
            self.expr(node.value, b)
            for t in node.targets:
                self.target(t, b)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.expr(node.value, b)
                self.target(node.target, b)
        elif isinstance(node, ast.AugAssign):
            self.expr(node.target.value if isinstance(node.target, ast.Attribute) else node.target, b)
            if isinstance(node.target, ast.Name) and node.target.id not in b:
                self.reads.add(node.target.id)
            self.expr(node.value, b)
            self.target(node.target, b)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self.expr(node.iter, b)
            self.target(node.target, b)
            return self.block(node.orelse, self.block(node.body, b))
        elif isinstance(node, ast.While):
            self.expr(node.test, b)
            return self.block(node.orelse, self.block(node.body, b))
        elif isinstance(node, ast.If):
            self.expr(node.test, b)
            return self.block(node.body, b) & self.block(node.orelse, b)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.expr(item.context_expr, b)
                if item.optional_vars is not None:
                    self.target(item.optional_vars, b)
            return self.block(node.body, b)
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            after = self.block(node.body, b)  # type: ignore[attr-defined]
            for handler in node.handlers:  # type: ignore[attr-defined]
                self.expr(handler.type, set(b))
                self.block(handler.body, b | ({handler.name} if handler.name else set()))
            return self.block(node.finalbody, self.block(node.orelse, after))  # type: ignore[attr-defined]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for part in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
                self.expr(part, b)
            self._defer(node.body, node.args)
            b.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for part in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
                self.expr(part, b)
            self.block(node.body, b)  # runs now; its names are the class's
            b.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            b |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            pass
        else:  # expressions, return, raise, assert, del, match: every name they read
            for child in ast.iter_child_nodes(node):
                self.expr(child, b)
            if isinstance(node, ast.Match):
                b |= {n.name for n in ast.walk(node) if isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name}
        return b


_NON_FINITE = {"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def _non_finite(n: ast.AST) -> bool:
    """``float("nan")``, ``np.nan``, ``math.inf``, ``torch.inf`` and the like."""
    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "float" and n.args:
        arg = n.args[0]
        return isinstance(arg, ast.Constant) and str(arg.value).strip().lower() in _NON_FINITE
    return (
        isinstance(n, ast.Attribute)
        and n.attr.lower() in ("nan", "inf")
        and isinstance(n.value, ast.Name)
        and n.value.id in ("np", "numpy", "math", "torch")
    )


def non_finite_assignments(tree: ast.Module, name: str) -> list[int]:
    """The lines where the cell sets ``name`` to NaN or infinity itself under a condition
    (``except ValueError: acc = float("nan")``, ``if not ok: acc = np.nan``, ``acc = x if ok else
    math.nan``): the cell's verdict on some configurations, as its own ``raise`` is, not a
    divergence. An assignment made whatever the configuration is not one (a bug, or a placeholder)."""
    lines: set[int] = set()

    def visit(node: ast.AST, conditional: bool) -> None:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t))
            chosen = conditional or any(isinstance(n, (ast.IfExp, ast.BoolOp)) for n in ast.walk(node.value))
            if named and chosen and any(_non_finite(n) for n in ast.walk(node.value)):
                lines.add(node.lineno)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            return
        inner = conditional or isinstance(node, (ast.If, ast.ExceptHandler, ast.match_case))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return sorted(lines)


_FITS = {"fit", "partial_fit", "fit_transform", "fit_predict"}
_CROSS_VALIDATES = {"cross_val_score", "cross_validate", "cross_val_predict", "permutation_test_score"}


def scored_on_fit_data(tree: ast.Module, metric: str) -> tuple[int, int, list[str]] | None:
    """The metric scored on the very data a supervised fit in the cell trained on (``model.fit(X_train,
    y_train)`` then ``val_ap = average_precision_score(y_train, model.predict_proba(X_train)[:, 1])``):
    (the metric's line, the fit's line, the data as written), or None. The search would favour the
    configurations that fit their training data best. Read through the cell's own assignments (``p =
    model.predict(X_train)``); the fit's features and labels must both reach the metric, and nothing
    else the cell reads from the notebook; cross-validation (``cross_val_score``, ``cv=``) is other data."""
    body = visible(tree)
    assigned: dict[str, list[ast.expr]] = {}
    for node in ast.walk(body):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned.setdefault(node.targets[0].id, []).append(node.value)

    def sliced(arg: ast.expr) -> bool:  # X_train[idx], X.iloc[tr], df.y.values[:n]: a slice of a variable
        base = arg.value if isinstance(arg, ast.Subscript) else None
        while isinstance(base, ast.Attribute):
            base = base.value
        return isinstance(base, ast.Name)

    def leaves(expr: ast.expr, depth: int = 0, expand: bool = True) -> set[str] | None:
        """The data ``expr``'s calls are given (None: cross-validation, other data than any one fit's);
        ``expand``: a variable the cell assigns is read through (``p = model.predict(X_train)``), else it
        is data as written (``yy``, ``X`` made from a frame, and the fit reads them by those names)."""
        out: set[str] = set()
        # what a fit trains on is not what is scored: 'evaluate(model)' with model = LR().fit(X_train, y_train)
        # read as scored on X_train (found trying nbtune as a new user)
        trained = {
            id(x)
            for call in ast.walk(expr)
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in _FITS
            for a in [*call.args, *(k.value for k in call.keywords)]
            for x in ast.walk(a)
        }
        for call in (n for n in ast.walk(expr) if isinstance(n, ast.Call) and id(n) not in trained):
            name = called_name(call)
            if name in _FITS:
                continue
            if name in _CROSS_VALIDATES or any(k.arg == "cv" for k in call.keywords):
                return None
            for arg in [*call.args, *(k.value for k in call.keywords)]:
                if expand and isinstance(arg, ast.Name) and arg.id in assigned:
                    if depth < 3:
                        for value in assigned[arg.id]:
                            inner = leaves(value, depth + 1)
                            if inner is None:
                                return None
                            out |= inner
                elif isinstance(arg, ast.Name) or (
                    isinstance(arg, ast.Subscript)
                    and ((expand is False and sliced(arg)) or isinstance(arg.value, ast.Name))
                ):
                    out.add(ast.unparse(arg))
        return out

    fits = []
    for node in ast.walk(body):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _FITS
            and len(node.args) >= 2
            and all(isinstance(a, ast.Name) or (isinstance(a, ast.Subscript) and sliced(a)) for a in node.args[:2])
        ):
            fits.append((node.lineno, [ast.unparse(a) for a in node.args[:2]]))
    if not fits:
        return None
    for node in ast.walk(body):
        if not (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == metric for t in node.targets)):
            continue
        # read through the cell's assignments, or as written (fit(X, yy) then mean_absolute_error(yy,
        # model.predict(X)), where X and yy are made in the cell; fit(X.iloc[tr], ...) and scored on
        # X.iloc[tr]: both unsaid, found trying nbtune as a new forecasting user)
        for scored in (leaves(node.value), leaves(node.value, expand=False)):
            if not scored:
                continue
            for line, data in fits:
                if set(data) == scored:
                    return node.lineno, line, data
    return None


def zero_division_nan(tree: ast.Module) -> int | None:
    """The line of a call given ``zero_division=np.nan`` (or ``float("nan")``): scikit-learn's precision,
    recall and F1 then give NaN, without a warning, for a split with no predicted (or no true) positives."""
    for node in ast.walk(visible(tree)):
        if isinstance(node, ast.Call):
            for k in node.keywords:
                if k.arg == "zero_division" and _non_finite(k.value):
                    return node.lineno
    return None
