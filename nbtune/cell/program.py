"""Turn an annotated cell into something that runs one trial.

The cell is rewritten on its AST (never by joining strings):

* ``lr = 1e-3  # tune: loguniform(...)`` becomes ``lr = __nbtune__.value('lr')``;
* ``for epoch in range(27):  # tune: epochs`` iterates ``__nbtune__.epochs(range(27))``,
  which reports the metric after every iteration and may stop the trial there;
  a call after the loop reports the last iteration when the body ``break``-s.

The rewritten tree keeps the user's line numbers (notebook numbering), and the cell
source is registered with :mod:`linecache`, so a traceback shows the user's own lines.
A :class:`CellProgram` holds only text and plain data, so it pickles to worker
processes; each process compiles it once.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dataclasses
import functools
import inspect
import linecache
import math
import numbers
import sys
import traceback
import types
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbtune import _compat
from nbtune.cell import rng
from nbtune.cell.annotations import ANNOTATIONS, RUNTIME, CellSpec, hashable_literal, parse_cell, runtime_call
from nbtune.cell.identity import (
    code_names,
    functions_reading,
    globals_read_through,
    sets_globals,
    trained_on_through,
    unreachable_readers,
    without_output,
)
from nbtune.cell.loops import carried_across_epochs, epoch_without, epochs_loop, loop_length, set_in_epochs_loop
from nbtune.cell.names import measures, metric_reads_as, words
from nbtune.cell.reads import (
    never_read,
    non_finite_assignments,
    outside_reads,
    unconditional_nodes,
    unconditional_reads,
    visible,
)
from nbtune.cell.space import Param, as_drawn, suggest
from nbtune.exceptions import ONE_METRIC, CellError, ConfigError

if TYPE_CHECKING:
    from types import FrameType

    import optuna

__all__ = ["CellProgram", "TrialStopped", "TrialInterrupted", "MetricError", "compile_cell", "is_data"]


@functools.lru_cache(maxsize=64)
def _compiled(
    source: str, line_offset: int, filename: str, sealed: str | None = None, keep: tuple[str, ...] = ()
) -> Any:
    """The cell's rewritten tree, compiled; parsed afresh (rewriting changes the tree in place).
    ``keep``: the variables nbtune reads when the cell ends (never sealed with the holdout)."""
    spec = parse_cell(source, line_offset)
    assert spec.tree is not None
    lines = sealed_lines(spec, sealed, set(keep)) if sealed is not None else set()
    tree = ast.fix_missing_locations(_Rewriter(spec, lines).visit(spec.tree))
    # top-level await runs as in IPython: the cell's code is then a coroutine (see _execute)
    return compile(tree, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def sealed_lines(spec: CellSpec, holdout: str, keep: set[str]) -> set[tuple[int, int]]:
    """The lines that run only when the holdout is revealed: those that assign it, and the cell's
    top-level assignments whose variables only they read (``final = clone(model).fit(X_dev, y_dev)``
    before ``test_rmse = rmse(y_test, final.predict(X_test))``: a refit that ran in every trial,
    for a score no trial computes). ``keep``: what nbtune reads when the cell ends."""
    assert spec.tree is not None
    statements = [n for n in ast.walk(spec.tree) if isinstance(n, ast.stmt)]
    sealed = {id(n) for n in statements if _assigns(n, holdout)}
    grown = True
    reads = {
        id(stmt): {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store)}
        for stmt in spec.tree.body
    }
    while grown:
        grown = False
        # what the sealed lines read: a line whose variables nothing reads ('history = model.fit(...)',
        # the training itself) is no line of the holdout's
        inside = {
            n.id
            for stmt in statements
            if id(stmt) in sealed
            for n in ast.walk(stmt)
            if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store)
        }
        for stmt in spec.tree.body:
            if id(stmt) in sealed or stmt.lineno in spec.marks or not isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                continue
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            # read by another line the trials run: 'X = X.iloc[30:]' (read by the fit) was sealed because it
            # reads X itself, and every trial then ran on the data before that line (found trying nbtune)
            others = set().union(*(r for k, r in reads.items() if k != id(stmt) and k not in sealed))
            if len(names) == len(targets) and names <= inside and not names & (keep | others):
                sealed.add(id(stmt))
                grown = True
    return {(n.lineno, n.col_offset) for n in statements if id(n) in sealed}


class TrialStopped(BaseException):
    """Raised inside the cell when the scheduler stops the trial.

    A BaseException, so a user's ``except Exception`` around the loop cannot swallow it.
    """

    def __init__(self, step: int) -> None:
        super().__init__(step)
        self.step = step


class TrialInterrupted(BaseException):
    """Raised inside the cell when the user asked to stop now (Stop now, Interrupt)."""


class TrialTimeout(BaseException):
    """Raised inside the cell when the trial ran past ``--trial-timeout``: the configuration's
    doing, not the user's (a trial that is too slow fails, or stops at its last epoch, and the
    search goes on). A BaseException, so a user's ``except Exception`` cannot swallow it."""

    def __str__(self) -> str:  # raised as a class, in another thread's code: no message of its own
        return "the trial ran past --trial-timeout"


class MetricError(Exception):
    """The metric variable is missing, not one number, or not finite.

    Attributes:
        kind: what is wrong (``missing``, ``not a number``, ``not one number``, ``not finite``):
            failures of one kind are the same failure, whatever the values were.
        name: the variable (the metric, or a guardrail's or a record's); None: the metric.
    """

    def __init__(self, message: str, kind: str, name: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name


def _as_float(value: Any) -> float | None:
    """One float from whatever people compute a metric as, or None.

    Python and numpy numbers, 0-d and one-element arrays, torch/jax/tensorflow scalars
    (through ``.item()``, with or without grad), ``Decimal`` and ``Fraction`` (through
    ``__float__``). No library is imported to find out.
    """
    if type(value) is float:  # the common case, without the ABC check below
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            value = item()  # numpy, torch, jax, tensorflow: one element to a Python number
        except Exception:  # more than one element, or not that kind of item()
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return None
        return float(value)
    if hasattr(value, "__float__") and not isinstance(value, (str, bytes)):
        try:
            return float(value)  # Decimal, numbers.Rational, anything that says it is one number
        except (TypeError, ValueError, OverflowError):
            return None
    return None


def _size(value: Any) -> int | None:
    size = getattr(value, "size", None)
    size = size() if callable(size) else size  # torch's size() is a shape
    try:
        return int(math.prod(size)) if isinstance(size, tuple) else int(size)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def check_metric(name: str, ns: dict[str, Any], where: str) -> float:
    """The metric's value as a float, or :class:`MetricError` saying what is wrong."""
    if name not in ns:
        raise MetricError(f"{name} was not set {where}; assign it in the cell", "missing", name)
    value = ns[name]
    number = _as_float(value)
    if number is None:
        size = _size(value)
        if isinstance(value, (tuple, list)) and 1 < len(value) <= 5:  # (val_f1, n_coef): two objectives
            raise MetricError(
                f"{name} is not one number {where}: got a {type(value).__name__} of {len(value)} values; {ONE_METRIC}",
                "not one number",
                name,
            )
        if size is not None and size > 1:
            raise MetricError(
                f"{name} is not one number {where}: got {type(value).__name__} with {size} values; "
                f"reduce it to one, e.g. {name}.mean()",
                "not one number",
                name,
            )
        shown = repr(value)
        item = getattr(value, "item", None)
        if callable(item):
            with contextlib.suppress(Exception):
                shown = f"holding {item()!r}"  # what a tensor or an np.bool_ holds
        advice = ""
        if value is None:  # (the epochs loop's words only where one reports it: found trying nbtune as a new user)
            advice = "; give it a number in every run" + (
                " from the first epoch on (e.g. the mean of what there is so far while a running window fills)"
                if "epoch" in where
                else ""
            )
        raise MetricError(
            f"{name} is not a number {where}: got {type(value).__name__} {shown:.80}{advice}", "not a number", name
        )
    if not math.isfinite(number):
        raise MetricError(f"{name} is not finite {where}: got {number}", "not finite", name)
    return number


def recorded_value(name: str, ns: dict[str, Any]) -> float | int | bool | str | None:
    """What ``--record`` keeps of a variable: a whole number (Python's or numpy's) as an int (a
    model's ``n_iter_``, a booster's ``best_iteration``: they came back as floats), any other number
    as a float (NaN and infinities too), a bool or a string as it is, None as None (``n_iter_``
    where it has none), anything else as its short repr. Only a variable the cell did not set fails
    the trial; a value that is no number is kept, not a reason to lose the trial's metric."""
    if name not in ns:
        check_metric(name, ns, "at the end of the cell (--record)")  # raises: not set
    value = ns[name]
    if value is None:  # (it was kept as the text 'NoneType None')
        return None
    if isinstance(value, (bool, str)):
        return value if isinstance(value, bool) else value[:200]
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)  # (numpy's integers are registered as Integral)
    number = _as_float(value)
    if number is not None:
        return number
    return f"{type(value).__name__} {value!r:.80}"


def _mean_over_folds(values: list[float | int | bool | str | None]) -> float | int | bool | str | None:
    """A recorded variable over the folds: the mean of numbers, else the last fold's value."""
    found = [v for v in values if isinstance(v, (float, int)) and not isinstance(v, bool)]
    return math.fsum(found) / len(found) if len(found) == len(values) else values[-1]


def _assigning(tree: ast.Module, name: str) -> list[ast.stmt]:
    """The statements of ``tree``, at any depth, that bind ``name`` (for the holdout: its sealed lines)."""
    return [n for n in ast.walk(tree) if isinstance(n, ast.stmt) and _assigns(n, name)]


def _assigns(node: ast.stmt, name: str) -> bool:
    """The statement binds ``name`` (``name = ...``, ``name += ...``, ``a, name = ...``)."""
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        targets = [node.target]
    else:
        return False
    return any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t))


class _Rewriter(ast.NodeTransformer):
    """Each annotated statement is rewritten by its annotation kind (see ``ANNOTATIONS``); the
    statements that assign the sealed holdout metric run only when the runtime reveals it."""

    def __init__(self, spec: CellSpec, sealed: set[tuple[int, int]] | None = None) -> None:
        self.spec = spec
        self.sealed = sealed or set()  # (line, column) of the statements that run only when the holdout is revealed

    def _annotated(self, node: ast.stmt) -> Any:
        name = self.spec.marks.get(node.lineno)
        return node if name is None else ANNOTATIONS[name].rewrite(node, self.spec)

    def _seal(self, node: ast.stmt) -> Any:
        if (node.lineno, node.col_offset) not in self.sealed:
            return self._annotated(node)
        guard = ast.If(test=runtime_call("reveal", [], node), body=[node], orelse=[])
        return ast.copy_location(guard, node)

    def visit_Assign(self, node: ast.Assign) -> Any:
        return self._seal(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:
        return self._seal(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        return self._seal(node)

    def visit_For(self, node: ast.For) -> Any:
        self.generic_visit(node)
        return self._annotated(node)


def _filename(source: str, line_offset: int) -> str:
    import hashlib

    # The line offset is part of the name: linecache holds the source shifted by it.
    return f"<%%tune cell {hashlib.sha1(f'{line_offset}:{source}'.encode()).hexdigest()[:8]}>"


@dataclass
class CellProgram:
    """A compiled ``%%tune`` cell: everything a worker needs to run one trial.

    Attributes:
        source: the transformed cell body.
        spec: the parsed annotations.
        metric: the variable whose final (and per-epoch) value is the objective.
        direction: ``"maximize"`` or ``"minimize"``.
        globals: the notebook globals the cell reads (names -> objects).
        line_offset: notebook lines before the body (1 for the ``%%tune`` line).
        holdout: the sealed holdout metric: the statements assigning it run only in the checks
            after the search (never in a search trial), and its value is read after them.
        constraints: guardrails (``--subject-to``), read when the cell ends: each becomes an
            Optuna constraint value (<= 0 is feasible).
        records: more variables kept per trial (``--record``).
    """

    source: str
    spec: CellSpec
    metric: str
    direction: str
    globals: dict[str, Any] = field(default_factory=dict)
    line_offset: int = 1
    holdout: str | None = None
    constraints: tuple[tuple[str, str, float, str], ...] = ()  # (variable, "<=" | ">=", bound, label)
    records: tuple[str, ...] = ()
    state: tuple[str, ...] = ()  # variables saved with each complete trial ('# tune: state', --state)
    # Notebook functions that read variables the cell sets: each trial gives them its namespace
    # as their globals, as a plain run of the cell would (see identity.functions_reading).
    rebind: tuple[str, ...] = ()
    read_by_functions: tuple[str, ...] = ()  # the cell's variables those functions read
    # notebook functions that read the cell's variables but are reached other than by name (see
    # identity.unreachable_readers): (holder, function, names), said before the search
    unreachable: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    # Set before the epochs loop and used in it: an epoch's checkpoint keeps the plain ones with
    # the state (a warm-up's step count, a patience counter), so a continued trial goes on as one.
    carried: tuple[str, ...] = ()
    carried_set: tuple[str, ...] = ()  # those the loop assigns (an array is kept only then: not data it reads)
    # tuned variables the cell reads above their '# tune:' line too (the notebook's value there):
    # (name, those lines), said before the search; read only there is an error
    read_above: tuple[tuple[str, tuple[int, ...]], ...] = ()
    # the lines that set the metric to NaN or infinity themselves: a trial whose metric came out so
    # was judged by the cell (as at its own raise), not diverged
    sets_non_finite: tuple[int, ...] = ()

    @property
    def params(self) -> list[Param]:
        return self.spec.params

    @property
    def filename(self) -> str:
        name = self.__dict__.get("_filename")
        if name is None:
            name = self.__dict__["_filename"] = _filename(self.source, self.line_offset)
        return name

    def __getstate__(self) -> dict[str, Any]:
        # What is read from the AST, which is not shipped, is worked out here first: in a worker process the
        # guardrails set in the epochs loop read as set before it, and stopped trials at rungs (found trying
        # nbtune as a new user, --jobs 2), and no line was the cell's own raise.
        self.guardrails_before_the_loop()
        self.raises_at(None)
        state = self.__dict__.copy()
        spec = state["spec"]
        # The AST is rebuilt in the worker: smaller to ship and always consistent.
        state["spec"] = CellSpec(
            source=spec.source,
            params=spec.params,
            epochs=spec.epochs,
            seed=spec.seed,
            folds=spec.folds,
            outer=spec.outer,
            state=spec.state,
            tree=None,
            line_offset=spec.line_offset,
            marks=spec.marks,
        )
        state["_sources"] = _notebook_sources(self.globals)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        sources = state.pop("_sources", None)
        self.__dict__.update(state)
        if sources:
            _restore_sources(self.globals, sources)

    def code(self) -> Any:
        """The rewritten cell compiled (once per process and cell)."""
        # Tracebacks show the user's lines, numbered as the notebook numbers them.
        filename = self.filename
        if filename not in linecache.cache:
            lines = ["\n"] * self.line_offset + self.source.splitlines(True)
            linecache.cache[filename] = (len(self.source), None, lines, filename)
        return _compiled(self.source, self.line_offset, filename, self.holdout, self._keep())

    def _keep(self) -> tuple[str, ...]:
        """The variables nbtune reads when the cell ends, and those the notebook functions the cell
        calls read (never sealed with the holdout: 'X = X.iloc[30:]' read by a helper's fit was
        sealed, and every trial ran on the data before it; found retesting nbtune as a user)."""
        keep = self.__dict__.get("_kept")
        if keep is None:  # (once: code() runs before every trial)
            keep = self.__dict__["_kept"] = (
                self.metric,
                *self.records,
                *(c[0] for c in self.constraints),
                *self.state,
                *self.read_by_functions,
            )
        return keep

    def sealed(self) -> set[tuple[int, int]]:
        """The (line, column) of the statements sealed with the holdout: no trial of the search runs them."""
        if self.holdout is None:
            return set()
        found = self.__dict__.get("_sealed")
        if found is None:  # (once: a run asks at its start and again after the search)
            found = self.__dict__["_sealed"] = sealed_lines(
                parse_cell(self.source, self.line_offset), self.holdout, set(self._keep())
            )
        return set(found)

    def namespace(self, runtime: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
        """A fresh namespace seeded with the globals; or ``base`` itself (``--apply``)."""
        if base is not None:
            base[RUNTIME] = runtime
            return base
        ns: dict[str, Any] = {"__builtins__": builtins, "__name__": "__main__"}
        ns.update(self.globals)
        if self.rebind:
            for name in self.rebind:
                f = ns.get(name)
                if isinstance(f, types.FunctionType):
                    ns[name] = _with_globals(f, ns)
        ns[RUNTIME] = runtime
        if "get_ipython" not in ns:
            ns["get_ipython"] = _get_ipython
        # What IPython gives a cell besides the builtins: display (not there in a worker process) and
        # exit / quit (the notebook's end the kernel; in a trial they fail it, as sys.exit() does)
        if "display" not in ns and not hasattr(builtins, "display"):
            ns["display"] = _display
        ns.setdefault("exit", sys.exit)
        ns.setdefault("quit", sys.exit)
        return ns

    def run(self, runtime: TrialRuntime, base: dict[str, Any] | None = None) -> float:
        """Run the cell once; return the metric's final value.

        Raises:
            TrialStopped: the scheduler stopped the trial at an epoch.
            MetricError: the metric is missing or not a finite number.
            Exception: whatever the user's code raised.
        """
        folds = self.spec.folds
        if folds is None or base is not None:  # --apply: once, with the cell's own fold
            return self._run_once(runtime, base)
        # Cross-validation inside the trial: once per fold, the running mean is the trial's step.
        values, reads = [], []
        for i in range(folds.k):
            runtime.fold_index = i
            values.append(self._run_once(runtime, None))
            reads.append((dict(runtime.constraints), dict(runtime.records), runtime.holdout_value))
            runtime.report_step(i + 1, math.fsum(values) / len(values))
        runtime.fold_values = values
        # Guardrails, records and the holdout: their mean over the folds.
        runtime.constraints = {k: math.fsum(r[0][k] for r in reads) / len(reads) for k in reads[0][0]}
        runtime.records = {k: _mean_over_folds([r[1][k] for r in reads]) for k in reads[0][1]}
        holdouts = [r[2] for r in reads if r[2] is not None]
        runtime.holdout_value = math.fsum(holdouts) / len(holdouts) if holdouts else None
        return math.fsum(values) / len(values)

    def _run_once(self, runtime: TrialRuntime, base: dict[str, Any] | None) -> float:
        ns = self.namespace(runtime, base)
        runtime._ns = ns
        _execute(self.code(), ns)
        end = "at the end of the cell"
        if self.spec.folds is not None and base is None:  # which fold (a fold with one class: found trying nbtune)
            end += f" with {self.spec.folds.name} = {runtime.fold_index}"
        value = check_metric(self.metric, ns, end)
        for name, op, bound, label in self.constraints:
            v = check_metric(name, ns, f"{end} (the guardrail {label!r})")
            runtime.constraints[label] = v - bound if op == "<=" else bound - v
        for name in self.records:
            runtime.records[name] = recorded_value(name, ns)
        if self.holdout is not None and runtime.reveal():
            runtime.holdout_value = check_metric(self.holdout, ns, f"{end} (the holdout)")
        return value

    def guardrails_before_the_loop(self) -> tuple[tuple[str, str, float, str], ...]:
        """The guardrails whose variable the cell sets only before its epochs loop (``n_params =
        count(model)``): fixed for the whole trial once the loop starts, so what it breaks at an
        epoch it breaks at the end. One set in the loop or after it can change (a sparsity that
        training lowers below its bound by the last epoch): it is read at the end only."""
        found = self.__dict__.get("_early_guardrails")
        if found is None:
            epochs, tree = self.spec.epochs, self.spec.tree
            later: set[str] = set()
            if epochs is not None and tree is not None:
                later = {
                    n.id
                    for n in ast.walk(tree)
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) and n.lineno >= epochs.lineno
                }
            found = self.__dict__["_early_guardrails"] = (
                tuple(c for c in self.constraints if c[0] not in later) if epochs is not None else ()
            )
        return found

    def raises_at(self, line: int | None) -> bool:
        """Whether the cell's own ``raise`` statement is on notebook ``line``: the cell judged the
        configuration (``if not sol.success: raise RuntimeError(...)``), as a NaN metric does."""
        lines = self.__dict__.get("_raise_lines")
        if lines is None:
            tree = self.spec.tree
            lines = self.__dict__["_raise_lines"] = (
                frozenset(n.lineno for n in ast.walk(tree) if isinstance(n, ast.Raise)) if tree else frozenset()
            )
        return line in lines

    def failure_line(self, exc: BaseException) -> int | None:
        """The notebook line of the cell where ``exc`` was raised (the deepest frame in the cell)."""
        line = None
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        return line

    def stuck_at(self, frame: FrameType | None) -> tuple[int | None, str]:
        """Where a running trial's thread is (its innermost ``frame``): the notebook line of the
        cell (the deepest frame in it) and the stack from the cell down, as a traceback reads."""
        stack = []
        while frame is not None:
            stack.append(frame)
            frame = frame.f_back
        stack.reverse()  # outermost first
        mine = [i for i, f in enumerate(stack) if f.f_code.co_filename == self.filename]
        if not mine:
            return None, ""
        lines = traceback.format_list(traceback.StackSummary.extract((f, f.f_lineno) for f in stack[mine[0] :]))
        return stack[mine[-1]].f_lineno, "Stack of the trial when it was cut (most recent call last):\n" + "".join(
            lines
        )

    def user_traceback(self, exc: BaseException) -> str:
        """The traceback from the user's cell down, without nbtune's own frames."""
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != self.filename:
            tb = tb.tb_next
        return "".join(traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__))


class _WorkerShell:
    """Stands in for IPython in a worker process, so ``!cmd`` lines keep working there."""

    def system(self, cmd: str) -> None:
        import subprocess

        subprocess.run(cmd, shell=True, check=False)

    def getoutput(self, cmd: str, split: bool = True, depth: int = 0) -> Any:
        import subprocess

        from IPython.utils.text import SList

        out = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False).stdout
        return SList(out.splitlines()) if split else out

    def run_line_magic(self, name: str, line: str, _stack_depth: int = 1) -> Any:
        raise RuntimeError(
            f"%{name} cannot run in a worker process (no IPython there); use --backend threading "
            "or --jobs 1, or replace the magic with plain Python"
        )

    run_cell_magic = run_line_magic


def _notebook_functions(values: Iterable[Any]) -> Iterator[types.FunctionType]:
    """The functions among ``values``, the methods of the classes among them, and the functions
    they reach through their globals in turn (what cloudpickle ships by value with them)."""
    seen: set[int] = set()
    todo = list(values)
    while todo:
        v = todo.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if isinstance(v, type) and v.__module__ == "__main__":
            todo.extend(getattr(m, "__func__", m) for m in vars(v).values())
        elif isinstance(v, types.FunctionType) and v.__module__ == "__main__":
            yield v
            todo.extend(v.__globals__[n] for n in v.__code__.co_names if n in v.__globals__)


def _notebook_sources(values: dict[str, Any]) -> dict[str, Any]:
    """For a worker process: where the notebook's functions the cell uses were defined, and those
    cells' lines. cloudpickle ships a function's code as '<dynamic-code>', so a worker's traceback
    showed 'File "<dynamic-code>", line 19, in train_one_epoch' and no line, where the kernel's shows
    the cell and its line (found trying nbtune as a new user)."""
    where: dict[str, str] = {}
    lines: dict[str, list[str]] = {}
    for f in _notebook_functions(values.values()):
        name = f.__code__.co_filename
        cached = linecache.cache.get(name)
        if cached is None or len(cached) < 3 or name.startswith("<dynamic"):
            continue  # (a lazy entry, of a module file the worker reads itself)
        where[f"{f.__code__.co_qualname}:{f.__code__.co_firstlineno}"] = name
        lines[name] = list(cached[2])
    return {"where": where, "lines": lines} if where else {}


def _restore_sources(values: dict[str, Any], sources: dict[str, Any]) -> None:
    """In a worker process: the notebook functions' code named by its cell again, and its lines
    known to linecache (kept: a cell file is not on the disk)."""

    def refiled(code: types.CodeType, name: str) -> types.CodeType:
        consts = tuple(refiled(c, name) if isinstance(c, types.CodeType) else c for c in code.co_consts)
        return code.replace(co_filename=name, co_consts=consts)

    for name, lines in sources["lines"].items():
        linecache.cache.setdefault(name, (sum(map(len, lines)), None, lines, name))
    for f in _notebook_functions(values.values()):
        name = sources["where"].get(f"{f.__code__.co_qualname}:{f.__code__.co_firstlineno}")
        if name is not None and f.__code__.co_filename != name:
            with contextlib.suppress(ValueError, TypeError):
                f.__code__ = refiled(f.__code__, name)


def _with_globals(f: types.FunctionType, ns: dict[str, Any]) -> types.FunctionType:
    """``f`` looking up its globals in ``ns``: the trial's variables, where a plain run of the cell
    leaves them for the notebook's functions."""
    g = types.FunctionType(f.__code__, ns, f.__name__, f.__defaults__, f.__closure__)
    g.__kwdefaults__ = f.__kwdefaults__
    g.__dict__.update(f.__dict__)
    g.__qualname__, g.__doc__, g.__module__ = f.__qualname__, f.__doc__, f.__module__
    return g


class _TrialShell:
    """The kernel's IPython as a trial's code sees it: the same shell, except that a line magic
    run in the trial leaves no trial variable in the notebook. ``%timeit`` copies the trial's
    namespace into the notebook's to run and puts back only the names that were there before: a
    trial's ``model`` and ``r2`` were left in the notebook after the search (found trying nbtune as a
    new user)."""

    def __init__(self, shell: Any) -> None:
        self._shell = shell

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shell, name)

    def run_line_magic(self, name: str, line: str, _stack_depth: int = 1) -> Any:
        user_ns = self._shell.user_ns
        before = set(user_ns)
        try:  # (one frame deeper: the magic reads the trial's variables from the caller's frame)
            return self._shell.run_line_magic(name, line, _stack_depth + 1)
        finally:
            for added in set(user_ns) - before:
                user_ns.pop(added, None)


def _execute(code: types.CodeType, ns: dict[str, Any]) -> None:
    """Run the cell's code in ``ns``. A cell with a top-level ``await`` (which IPython runs in the
    kernel's event loop) is a coroutine: it runs in an event loop of its own, on the trial's thread
    (trials never run on the kernel's; the compile had failed every trial, found trying nbtune as a
    new user)."""
    if not code.co_flags & inspect.CO_COROUTINE:
        exec(code, ns)
        return
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a trial's thread
        asyncio.run(eval(code, ns))
        return
    # the kernel's own thread, whose loop is running (--apply): a thread and a loop of its own
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nbtune-await") as pool:
        pool.submit(asyncio.run, eval(code, ns)).result()


def _display(*objs: Any, **kwargs: Any) -> Any:
    """``display`` in a worker process, where IPython is not running (it prints the objects' text)."""
    from IPython.display import display

    return display(*objs, **kwargs)


def _get_ipython() -> Any:
    try:
        from IPython.core.getipython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover
        shell = None
    return _TrialShell(shell) if shell is not None else _WorkerShell()


class TrialRuntime:
    """The ``__nbtune__`` object a running cell talks to.

    Args:
        program: the cell.
        trial: the Optuna trial, or None to run with fixed values (baseline, ``--apply``).
        fixed: values to use instead of suggestions (for ``--apply``).
        should_stop_now: called at each epoch; True interrupts the trial.
        on_epoch: called after each report with (step, value) (live view).
        max_step: R; no stop is decided at or after it.
        prunable: False for the baseline (trial 0): the cell's own defaults always run to the end,
            so every search has a complete reference point.
        seed: the value of the ``# tune: seed`` variable in this run (None: the cell's own).
        reveal_holdout: compute the sealed holdout metric (the checks after a search only).
        on_checkpoint: called with (epoch, namespace) after each epoch the trial goes on from.
        resume: for a cut trial run again: returns (its saved state, the epochs it did, its
            learning curve); the epochs loop continues from there. A state of None (a promoted
            trial of a cell without declared state) retrains those epochs silently instead.
        guard: entered around nbtune's own work inside the trial (``--trial-timeout``'s clock).
        on_guardrails: called with (epoch, {guardrail: violation}) when the guardrails (``--subject-to``)
            the trial breaks change, read after each epoch for those whose variable the cell sets
            before its epochs loop (a model's size): the scheduler does not let such a trial go on
            at a rung.
    """

    def __init__(
        self,
        program: CellProgram,
        trial: optuna.Trial | None,
        fixed: dict[str, Any] | None = None,
        should_stop_now: Callable[[], bool] | None = None,
        on_epoch: Callable[[int, float], None] | None = None,
        max_step: int | None = None,
        prunable: bool = True,
        seed: int | None = None,
        reveal_holdout: bool = False,
        outer_fold: int | None = None,
        on_checkpoint: Callable[[int, dict[str, Any]], None] | None = None,
        resume: Callable[[], tuple[dict[str, Any] | None, int, dict[int, float]]] | None = None,
        guard: contextlib.AbstractContextManager[Any] | None = None,
        on_guardrails: Callable[[int, dict[str, float]], None] | None = None,
    ) -> None:
        self.program = program
        self._on_guardrails = on_guardrails if program.guardrails_before_the_loop() else None
        self._breaking: dict[str, float] = {}  # the guardrails broken after the latest epoch
        # --record's numbers after each epoch this run of the trial reported: {variable: {epoch: value}}
        self.record_curves: dict[str, dict[int, float]] = {}
        # Around what nbtune itself does inside a trial (the store's writes, checkpoints): a time
        # limit that runs out there takes effect when it is done, not in the middle of a write.
        self._guard = guard if guard is not None else contextlib.nullcontext()
        self._finish = getattr(guard, "finish", None)  # told when the last epoch (or fold) is in
        self._on_checkpoint = on_checkpoint
        self._resume = resume
        self._outer = outer_fold
        self.fold_index: int | None = None  # the fold running now (``# tune: folds``)
        self.fold_values: list[float] = []
        self._seed = seed
        self._reveal = reveal_holdout
        self.holdout_value: float | None = None
        self.constraints: dict[str, float] = {}  # guardrail label -> violation (<= 0: met)
        self.records: dict[str, float | int | bool | str | None] = {}
        self.trial = trial
        self.fixed = fixed or {}
        self._params = {p.name: p for p in program.params}
        self._should_stop_now = should_stop_now
        self._on_epoch = on_epoch
        self._max_step = max_step
        self._prunable = prunable
        self._step = 0
        self._silent = 0  # epochs up to this one are trained again, not reported (a retrained promotion)
        self._pending = False
        self._placeholder: float | None = None  # a non-finite metric the cell set before the loop
        self._ns: dict[str, Any] | None = None

    # called from the rewritten cell ---------------------------------------------------
    def value(self, name: str) -> Any:
        if name in self.fixed or self.trial is None:
            return as_drawn(self.fixed.get(name, self._params[name].default))
        with self._guard:
            try:
                return as_drawn(suggest(self.trial, name, self._params[name].distribution()))
            except ValueError:
                self._queued_as_list(name)
                raise

    def _queued_as_list(self, name: str) -> None:
        """A tuple choice queued with Optuna's ``study.enqueue_trial({"hidden": (64, 32)})``: Optuna keeps the
        tuple as a JSON list, which no choice is, and its ValueError read as the cell's (found retesting
        tuple choices as a user). Raises the error that says how to queue it."""
        p = self._params[name]
        if not any(isinstance(c, tuple) for c in p.args) or self.trial is None:
            return
        queued = _compat.fixed_params(self.trial).get(name)
        if isinstance(queued, (list, tuple)):
            raise ValueError(
                f"this trial was queued with {name} = {queued!r} (study.enqueue_trial), which Optuna keeps as a "
                f"list, not one of the choices: queue a tuple choice as its text, "
                f"{{{name!r}: {repr(tuple(queued))!r}}} (as res.study.best_params has it)"
            ) from None

    def seed(self, default: int) -> int:
        return default if self._seed is None else self._seed

    def reveal(self) -> bool:
        return self._reveal

    def fold(self, default: int) -> int:
        return default if self.fold_index is None else self.fold_index

    def outer_fold(self, default: int) -> int:
        return default if self._outer is None else self._outer

    def epochs(self, iterable: Iterable[Any]) -> Iterator[Any]:
        items = iter(iterable)
        # A placeholder the cell sets before the loop (val_loss = float("inf")): still the same
        # object after an epoch means the epoch did not set the metric, not that it diverged.
        before = self._ns.get(self.program.metric) if self._ns is not None else None
        self._placeholder = before if isinstance(before, float) and not math.isfinite(before) else None
        try:
            if self._resume is not None:
                with self._guard:
                    self._resume_from(items)
            for item in items:
                if self._pending:
                    self._report()
                self._check_stop_now()
                self._pending = True
                yield item
            if self._pending:
                self._report()
            if self._step < (self._read_length() or 0):
                self._not_the_length_read()
        finally:
            # Stopped at a rung (or failed): a tqdm bar over the epochs draws itself once more when
            # its iterator closes; here, where the trial's output is still kept, not later at GC.
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def _resume_from(self, items: Iterator[Any]) -> None:
        """Continue a cut trial: its saved state replaces what the cell built before the loop,
        its learning curve so far is reported again, and the epochs it did are skipped."""
        assert self._resume is not None and self._ns is not None
        state, step, values = self._resume()
        if self.trial is not None:
            for s in sorted(values):
                self.trial.report(values[s], s)
        if state is None:  # nothing saved: train those epochs again, without reporting them twice
            self._silent = step
            return
        generators = state.pop(rng.KEY, None)
        for name, saved in state.items():
            if not _load_in_place(self._ns.get(name), saved):
                self._ns[name] = saved
        if generators is not None:  # after the code before the loop ran (it may seed them again)
            rng.restore(generators, self._ns)
        for _ in range(step):
            next(items, None)
        self._step = step

    def _read_length(self) -> int | None:
        """The loop's length nbtune read before the search, when R was set from it."""
        loop = self.program.spec.epochs
        if loop is None or loop.length is None or loop.length != self._max_step:
            return None
        return loop.length

    def _not_the_length_read(self) -> None:
        loop = self.program.spec.epochs
        assert loop is not None
        raise CellError(
            f"line {loop.lineno} of the %%tune cell: the epochs loop ran "
            f"{f'more than {loop.length}' if self._step > (loop.length or 0) else self._step} epochs, but before the "
            f"search nbtune read {loop.length} from it, and set the rungs and R "
            "from that (the cell or a function it calls changes the length as it runs); set the length where nbtune "
            "can read it before the trials: a number, a notebook variable, or a variable the cell assigns a number "
            "before the loop (e.g. 'EPOCHS = 2')"
        )

    def epochs_done(self) -> None:
        # After a `break` the generator is never resumed: report the last epoch here.
        if self._pending:
            self._report()

    # internals ----------------------------------------------------------------------
    def _check_stop_now(self) -> None:
        if self._should_stop_now is not None and self._should_stop_now():
            raise TrialInterrupted()

    def _report(self) -> None:
        with self._guard:
            self._report_epoch()

    def _report_epoch(self) -> None:
        self._pending = False
        self._step += 1
        if self._step > (self._read_length() or self._step):
            self._not_the_length_read()
        if self._max_step is not None and self._step > self._max_step and self.trial is not None:
            loop = self.program.spec.epochs
            raise CellError(
                f"line {loop.lineno if loop else '?'} of the %%tune cell: the epochs loop ran more than --max-epochs "
                f"{self._max_step} epochs; --max-epochs is the epochs of a full trial (the rungs are set from it): "
                "give the loop's length, or stop the loop there"
            )
        assert self._ns is not None
        if self._step <= self._silent:  # retrained: its value was reported by the trial it continues
            self._check_stop_now()
            return
        try:
            if self._placeholder is not None and self._ns.get(self.program.metric) is self._placeholder:
                raise MetricError(f"{self.program.metric} still holds the value it had before the loop", "missing")
            value = check_metric(self.program.metric, self._ns, f"at the end of epoch {self._step}")
        except MetricError as e:
            if e.kind != "missing":
                raise
            raise MetricError(
                f"{self.program.metric} was not set at the end of epoch {self._step}: with a '# tune: epochs' "
                "loop it is read after every epoch; assign it in every iteration of the loop (not only after "
                "the loop, or every few epochs)",
                e.kind,
            ) from None
        for name in self.program.records:  # (a training loss beside the metric: its curve, as wandb.log keeps one)
            if (v := _as_float(self._ns.get(name))) is not None:
                self.record_curves.setdefault(name, {})[self._step] = v
        if self._on_epoch is not None:
            self._on_epoch(self._step, value)
        if self._on_guardrails is not None and self.trial is not None:
            self._check_guardrails()
        self.report_step(self._step, value, stop_now=False)
        if self._on_checkpoint is not None and (self._max_step is None or self._step < self._max_step):
            self._on_checkpoint(self._step, self._ns)  # the state after this epoch: a cut trial resumes here
        if self.trial is not None:  # (after the checkpoint: an Interrupt now loses no finished epoch)
            self._check_stop_now()

    def _check_guardrails(self) -> None:
        """The guardrails the variables set before the loop break, told when that changes: a
        guardrail is checked at the end of the cell, but such a value (a model's size) is known
        from the first epoch and does not change."""
        assert self._ns is not None and self._on_guardrails is not None
        breaking = {}
        for name, op, bound, label in self.program.guardrails_before_the_loop():
            v = _as_float(self._ns.get(name)) if name in self._ns else None
            if v is not None and math.isfinite(v) and (over := (v - bound if op == "<=" else bound - v)) > 0:
                breaking[label] = over
        if breaking.keys() != self._breaking.keys():
            self._on_guardrails(self._step, breaking)
        self._breaking = breaking

    def report_step(self, step: int, value: float, stop_now: bool = True) -> None:
        """Tell the trial its value at ``step`` (an epoch, or the mean after a fold); the scheduler
        may stop it here, and with ``stop_now`` Stop now / Interrupt too."""
        if self.trial is None:
            return
        with self._guard:
            self._report_step(step, value, stop_now)

    def _report_step(self, step: int, value: float, stop_now: bool) -> None:
        self._step = step
        assert self.trial is not None
        self.trial.report(value, self._step)
        if self._finish is not None:
            folds = self.program.spec.folds
            last = self._max_step if folds is None else folds.k
            if last is not None and step >= last:
                self._finish()  # the last epoch (or fold) is in: no time limit cuts it now
        # A trial that reached R is complete: no scheduler may turn it into a stopped one.
        if self._prunable and (self._max_step is None or self._step < self._max_step) and self.trial.should_prune():
            raise TrialStopped(self._step)
        if stop_now:
            self._check_stop_now()


def _bound_anywhere(tree: ast.Module) -> set[str]:
    """Every name the cell may bind, at any depth (a loose superset: used to catch a metric
    the cell can never set)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Global):
            out.update(node.names)
        elif (isinstance(node, ast.ExceptHandler) and node.name) or (
            isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name
        ):
            out.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:  # case {"a": 1, **rest}
            out.add(node.rest)
    return out


def compile_cell(
    cell: str,
    *,
    metric: str,
    direction: str,
    user_ns: dict[str, Any] | None = None,
    transform: Callable[[str], str] | None = None,
    line_offset: int = 1,
    holdout: str | None = None,
    constraints: list[tuple[str, str, float, str]] | None = None,
    records: list[str] | None = None,
    state: list[str] | None = None,
) -> CellProgram:
    """Parse and compile an annotated cell into a :class:`CellProgram`.

    Args:
        cell: the cell body as the user wrote it.
        metric: the variable to optimise.
        direction: ``"maximize"`` or ``"minimize"``.
        user_ns: the notebook namespace; the globals the cell reads are taken from it.
        transform: IPython's ``shell.transform_cell`` (``!cmd``, ``%magic`` -> Python).
        line_offset: notebook lines above the body.
        holdout: the sealed holdout metric (``--holdout``), computed only in the checks.
        constraints: parsed guardrails (``--subject-to``); records: variables to keep (``--record``).

    Raises:
        CellError, AnnotationError, ConfigError: the cell cannot become an objective.
    """
    if not metric.isidentifier():
        raise ConfigError(f"the metric must be a variable name, got {metric!r}")
    source = transform(cell) if transform is not None else cell
    spec = parse_cell(source, line_offset)
    if spec.tree is not None:
        ranges_declared_elsewhere(spec.tree, user_ns or {})
    if not spec.params:
        raise ConfigError(
            "the %%tune cell has no '# tune:' annotations, so there is nothing to search; "
            "annotate an assignment, e.g. 'lr = 1e-3  # tune: loguniform(1e-5, 1e-1)'"
        )
    assert spec.tree is not None
    names = outside_reads(spec.tree)
    user_ns = user_ns or {}
    if spec.epochs is not None and spec.epochs.length is None:
        loop = epochs_loop(spec.tree, spec.epochs.lineno)
        assert loop is not None  # (parse_cell put the annotation on a for loop)
        length, why = loop_length(loop, spec.tree, user_ns, {p.name for p in spec.params})
        spec.epochs = dataclasses.replace(spec.epochs, length=length, why=why)
    _check_names_defined(spec.tree, user_ns, names)
    _check_module_attributes(spec.tree, user_ns)
    _check_choice_keys(spec, user_ns)
    _check_metric_is_computed(spec, metric, user_ns)
    if spec.folds is not None and spec.epochs is not None:
        raise ConfigError(
            f"line {spec.folds.lineno} of the %%tune cell: cross-validation folds and an epochs loop (line "
            f"{spec.epochs.lineno}) in one cell are not supported: each fold would need its own learning curve; "
            "drop '# tune: epochs' (the folds are then the trial's steps) or the folds"
        )
    if spec.outer is not None and holdout is None:
        raise ConfigError(
            f"line {spec.outer.lineno} of the %%tune cell: nested cross-validation scores each outer fold's winner on "
            "that fold's test data; compute that score in the cell and name it with --holdout, e.g. "
            "'--holdout test_acc' with 'test_acc = model.score(X[test], y[test])'"
        )
    if holdout is not None:
        _check_holdout(spec.tree, holdout, metric)
    bound = _bound_anywhere(spec.tree)
    if holdout is not None:
        for name, option in [(c[0], "--subject-to") for c in constraints or []] + [
            (r, "--record") for r in records or []
        ]:
            if name == holdout:
                raise ConfigError(
                    f"{option} {name}: {name!r} is the sealed holdout, computed only after the search, so no trial "
                    f"could {'meet a guardrail on' if option == '--subject-to' else 'record'} it; use another variable"
                )
    for name in records or []:
        if name == metric:
            raise ConfigError(
                f"--record {name}: {name!r} is the metric, which every trial keeps already (res.df()['value']); "
                f"drop --record {name}"
            )
    for name, option in [(c[0], f"--subject-to {c[3]!r}") for c in constraints or []] + [
        (r, "--record") for r in records or []
    ]:
        # read at the end of each trial from the trial's own namespace: the notebook's value is not there,
        # and would be the same in every trial (a guardrail on it had failed every trial at run time)
        if not _set_by_cell(spec.tree, name, user_ns):
            raise ConfigError(
                f"{option}: the %%tune cell never assigns {name!r}, so no trial could "
                f"{'be checked against it' if option != '--record' else 'record it'}"
                f"{_why_not_notebooks(spec.tree, name, user_ns)}; compute it in the cell (e.g. '{name} = ...') "
                "or name a variable the cell sets"
            )
    for name in state or []:
        if name in {p.name for p in spec.params}:
            raise ConfigError(
                f"--state {name}: {name!r} is tuned, so it is not a trial's state; name the model or optimizer the "
                "tuned values build"
            )
        if name not in bound and name not in user_ns:
            raise ConfigError(
                f"--state: the %%tune cell never assigns {name!r} and the notebook has no variable {name!r}; "
                f"compute it in the cell (e.g. '{name} = ...') or name a variable the cell sets"
            )
    # IPython's own helpers hold the shell (unpicklable); the runtime provides get_ipython.
    hidden = {"get_ipython", "exit", "quit"}
    glb = {n: user_ns[n] for n in sorted(names) if n in user_ns and n not in hidden and not n.startswith("__")}
    assigned = {n.id for n in ast.walk(spec.tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    rebind, read_by_functions = functions_reading(glb, user_ns, assigned)
    for var, what in ((spec.folds, "cross-validation fold"), (spec.outer, "nested cross-validation's outer fold")):
        # (one read only by a print: every fold ran the same split, and nothing said so: found trying nbtune)
        if var is not None and never_read(without_output(spec.tree), [var.name]) and var.name not in read_by_functions:
            printed = "" if never_read(spec.tree, [var.name]) else " but by what the cell prints"
            raise ConfigError(
                f"line {var.lineno} of the %%tune cell: the {what} variable {var.name!r} is never read{printed}, so all "
                f"{var.k} folds would run the same split; choose the fold's rows with it (e.g. "
                f"'train, val = list(KFold({var.k}).split(X))[{var.name}]')"
            )
    above: list[tuple[str, tuple[int, ...]]] = []
    for param in spec.params:
        early, later = read_above(spec.tree, param.name, param.lineno)
        if early and later:
            above.append((param.name, tuple(early)))
        lines = ", ".join(map(str, early))
        if early and param.name not in user_ns:  # every trial would fail there
            raise ConfigError(
                f"line {lines} of the %%tune cell reads {param.name!r} before line {param.lineno} assigns it, and the "
                f"notebook has no {param.name!r}: every trial would fail with a NameError; move the '# tune:' "
                f"assignment above line {early[0]}"
            )
        if early and not later and param.name not in read_by_functions:
            raise ConfigError(
                f"line {param.lineno} of the %%tune cell tunes {param.name!r}, but the cell reads it only before that "
                f"(line {lines}), where it is still the notebook's value: every trial would run "
                f"with the same {param.name}; move the '# tune:' assignment above line {early[0]}"
            )
    for name, f in sorted(rebind.items()):
        glb.setdefault(name, f)
        for read in sorted(code_names(f.__code__)):  # what they read from the notebook, the workers need too
            if read in user_ns and read not in assigned and read not in hidden and not read.startswith("__"):
                glb.setdefault(read, user_ns[read])
    unreachable = unreachable_readers(glb, user_ns, assigned, rebind)
    for param in spec.params:
        readers = [(h, f) for h, f, read in unreachable if param.name in read]
        if readers and param.name not in read_by_functions and never_read(spec.tree, [param.name]):
            holder, function = readers[0]
            raise ConfigError(
                f"line {param.lineno} of the %%tune cell tunes {param.name!r}, but only {function} (reached through "
                f"{holder!r}: a decorator, a default argument, a dict, a partial or a method) reads it, as a global, and a "
                f"trial cannot give it its own: every trial would run with the notebook's {param.name}; pass the "
                "value as an argument"
                + ("" if function == "a lambda" else f" ({function}(..., {param.name}={param.name}))")
            )
    program = CellProgram(
        source=source,
        spec=spec,
        metric=metric,
        direction=direction,
        globals=glb,
        line_offset=line_offset,
        holdout=holdout,
        constraints=tuple(constraints or ()),
        records=tuple(records or ()),
        state=tuple(dict.fromkeys([n for n, _ in spec.state] + list(state or []))),
        rebind=tuple(sorted(rebind)),
        unreachable=tuple((h, f, tuple(r)) for h, f, r in unreachable),
        carried=_carried(spec, list(state or [])),
        carried_set=tuple(sorted(set_in_epochs_loop(spec.tree, spec.epochs.lineno))) if spec.epochs else (),
        read_by_functions=tuple(sorted(read_by_functions)),
        read_above=tuple(above),
        sets_non_finite=tuple(non_finite_assignments(spec.tree, metric)),
    )
    try:  # what the parser lets through and the compiler does not ('return' outside a function): before any trial
        program.code()
    except SyntaxError as e:
        body = source.splitlines()
        at = (e.lineno or 0) - line_offset - 1  # (compiled from the tree: no text of its own)
        text = (e.text or (body[at] if 0 <= at < len(body) else "")).strip()
        raise CellError(f"line {e.lineno} of the %%tune cell: {e.msg}" + (f": {text}" if text else "")) from None
    return program


def read_above(tree: ast.Module, name: str, line: int) -> tuple[list[int], bool]:
    """(the lines that read ``name`` before the top-level statement on ``line`` assigns it, whether a
    line reads it after): ``params = dict(lr=learning_rate)`` above ``learning_rate = 0.1  # tune:
    ...`` reads the notebook's value. The code of a function defined before counts as after (it
    runs when called); its defaults and decorators run where it is defined."""
    before: set[int] = set()
    after = False
    for stmt in visible(tree).body:
        deferred: set[int] = set()
        for node in ast.walk(stmt):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):  # its body, not its defaults
                body = node.body if isinstance(node.body, list) else [node.body]
                deferred |= {id(n) for part in body for n in ast.walk(part)}
        for node in ast.walk(stmt):
            if not (isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load)):
                continue
            if stmt.end_lineno is not None and stmt.end_lineno < line and id(node) not in deferred:
                before.add(node.lineno)
            else:
                after = True
    return sorted(before), after


def _carried(spec: CellSpec, state: list[str]) -> tuple[str, ...]:
    """The variables an epoch hands to the next besides the state (see ``CellProgram.carried``):
    not the seed or the fold (nbtune sets those), nor a tuned one, unless the loop changes it as it
    goes (``lr *= 0.5``, ``eps *= eps_decay``): a continuation restarted such a value from its drawn
    one, and reported a curve no straight run gives (found trying nbtune as a new user). PBT's
    continuation with new values takes those (``resume_point``)."""
    if spec.epochs is None or spec.tree is None:
        return ()
    changed = set_in_epochs_loop(spec.tree, spec.epochs.lineno)
    own = {p.name for p in spec.params if p.name not in changed} | {n for n, _ in spec.state} | set(state)
    own |= {a.name for a in (spec.seed, spec.folds, spec.outer) if a is not None}
    return tuple(n for n in carried_across_epochs(spec.tree, spec.epochs.lineno) if n not in own)


def _check_choice_keys(spec: CellSpec, user_ns: dict[str, Any]) -> None:
    """A tuned choice that looks a value up in a dict (``models[model_type]``, the cell's own dict
    literal or the notebook's dict) where a choice is no key: every trial that draws it fails with
    a KeyError, and the search learns that choice is bad (found trying nbtune as a new user: a
    typo, "hgbc" for "hgb"). Said before any trial."""
    assert spec.tree is not None
    choices = {p.name: p for p in spec.params if p.kind == "choice"}
    if not choices:
        return
    assigned: dict[str, list[ast.expr]] = {}
    for node in ast.walk(spec.tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                for n in ast.walk(target):
                    if isinstance(n, ast.Name):
                        assigned.setdefault(n.id, []).append(node.value if target is n else target)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.NamedExpr, ast.For, ast.With)):
            for n in ast.walk(getattr(node, "target", node)):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    assigned.setdefault(n.id, []).append(n)

    def keys_of(holder: ast.expr) -> tuple[str, Any] | None:
        """The keys of the dict ``holder`` names, when they are known before any trial runs."""
        literal = holder
        if isinstance(holder, ast.Name):
            values = assigned.get(holder.id)
            if values is None:  # the notebook's
                d = user_ns.get(holder.id)
                if type(d) is dict:  # (not a defaultdict, nor a mapping that makes its keys)
                    return holder.id, d.keys()
                return None
            if len(values) != 1:
                return None
            literal = values[0]
        written = "the dict written there" if literal is holder else holder.id  # type: ignore[attr-defined]
        if (  # dict(rf=RandomForestClassifier(), hgb=...)
            isinstance(literal, ast.Call)
            and getattr(literal.func, "id", None) == "dict"
            and not literal.args
            and all(kw.arg is not None for kw in literal.keywords)
        ):
            return written, {kw.arg for kw in literal.keywords}
        # (a tuple choice's keys too: {(64,): 0.1, (128,): 0.2})
        keys = [hashable_literal(k) for k in literal.keys] if isinstance(literal, ast.Dict) else [(False, None)]
        if not all(ok for ok, _ in keys):
            return None
        return written, {k for _, k in keys}

    reassigned = {n for n, v in assigned.items() if len(v) > 1}
    for node in unconditional_nodes(spec.tree):  # (a lookup under 'if name in MODELS:' or 'try:' is guarded)
        # MODELS[name], or MODELS.get(name) with no default (None for a missing key: "got None instead" later)
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            key, dict_node, how = node.slice, node.value, "would fail with a KeyError"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and len(node.args) == 1
            and not node.keywords
        ):
            key, dict_node, how = node.args[0], node.func.value, "would get None from it"
        else:
            continue
        if not (isinstance(key, ast.Name) and key.id in choices and key.id not in reassigned):
            continue
        found = keys_of(dict_node)
        if found is None:
            continue
        holder, keys = found
        p = choices[key.id]
        for choice in p.args:
            if choice in keys:
                continue
            near = _like(choice, [k for k in keys if isinstance(k, str)]) if isinstance(choice, str) else None
            raise ConfigError(
                f"line {node.lineno} of the %%tune cell: {ast.unparse(node)} looks up {holder}, which has no key "
                f"{choice!r}, one of the choices of {p.name!r} (line {p.lineno}): every trial that draws it {how}; "
                + (f"is {near!r} the same? " if near else "")
                + f"make the keys and the choices the same (the keys: {', '.join(sorted(map(repr, keys)))})"
            )


def _check_names_defined(tree: ast.Module, user_ns: dict[str, Any], read: set[str]) -> None:
    """A name the cell reads for sure that neither the cell, the notebook nor Python defines: every
    trial would fail with a NameError, and the search stop after three (found trying nbtune as a
    new user: a cell run before the one that makes the data). Said before any trial. ``read``: the
    names the cell reads from outside (:func:`outside_reads`)."""
    tree = visible(tree)  # (what '%time y = 1' binds)
    nodes = list(ast.walk(tree))
    if (
        any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in nodes)
        or any(isinstance(n, ast.Name) and n.id in _DEFINES_NAMES for n in nodes)
        # IPython beyond '!cmd' ('%run setup.py', '%store -r X', get_ipython().push(...)) may define anything
        or any(
            isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Call)
            and getattr(n.value.func, "id", None) == "get_ipython"
            and n.attr not in ("getoutput", "system")
            for n in nodes
        )
    ):
        return  # names the cell may define in ways not written in it
    by_functions = _globals_notebook_code_sets(read, user_ns)
    if by_functions is None:
        return
    defined = _bound_anywhere(tree) | set(user_ns) | set(dir(builtins)) | {"display", "get_ipython", "exit", "quit"}
    defined |= by_functions
    missing = sorted(
        (line, name)
        for name, line in unconditional_reads(tree).items()
        if name not in defined and not name.startswith("__")
    )
    if not missing:
        return
    line, name = missing[0]
    setter = _set_elsewhere(name, user_ns)
    if setter is not None:  # (it said "run the notebook cell that defines it first": found retesting)
        raise ConfigError(
            f"line {line} of the %%tune cell reads {name!r}, which {setter} sets with 'global {name}': that sets the "
            f"notebook's {name!r}, not the trial's, so every trial would fail with a NameError; return the value "
            f"from it instead ({name} = ...)"
        )
    _check_ranges_declared_elsewhere(tree, {name})  # lr = tune.loguniform(1e-4, 1e-1), tune undefined
    near = _like(name, sorted(n for n in defined if not n.startswith("_")))
    raise ConfigError(
        f"line {line} of the %%tune cell reads {name!r}, which neither the cell nor the notebook defines: every "
        "trial would fail with a NameError; "
        + (f"did you mean {near!r}? Else " if near else "")
        + f"run the notebook cell that defines {name!r} first, or define it in this cell"
    )


# Ray Tune's, hyperopt's and W&B's names of a range, as nbtune's kinds
_KIND_OF = {
    "loguniform": "loguniform",
    "uniform": "uniform",
    "randint": "int",
    "lograndint": "logint",
    "qrandint": "int",
    "quniform": "uniform",
    "choice": "choice",
    "grid_search": "choice",
}


def _check_ranges_declared_elsewhere(tree: ast.Module, modules: set[str]) -> None:
    """``lr = tune.loguniform(1e-4, 1e-1)``, Ray Tune's (or hyperopt's) way to declare a range, with one
    of ``modules`` ("tune", "hp"): refused with nbtune's form. Imported, the cell ran trials that each got
    a Ray search-space object, or failed to import Ray (found retesting)."""
    for module in sorted(modules):
        drawn = _search_space_call(tree, module)
        if drawn is not None:
            line, target, kind, args = drawn
            raise ConfigError(
                f"line {line} of the %%tune cell: {target} = {module}.{kind}(...) declares a range the way Ray Tune "
                f"or hyperopt do; in nbtune the cell keeps a plain value and a comment declares the range: "
                f"{target} = ...  # tune: {_KIND_OF.get(kind, kind)}({args})"
            )


def ranges_declared_elsewhere(tree: ast.Module, user_ns: dict[str, Any]) -> None:
    """:func:`_check_ranges_declared_elsewhere` for the names that are Ray Tune's or hyperopt's modules:
    imported by the cell (``from ray import tune``, ``from hyperopt import hp``) or by the notebook."""
    modules = {
        alias.asname or alias.name.rsplit(".", 1)[-1]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
        if (f"{node.module}." if isinstance(node, ast.ImportFrom) and node.module else "").startswith(
            ("ray.", "hyperopt.")
        )
        or alias.name.startswith(("ray.", "hyperopt."))
    }
    modules |= {
        n for n, v in user_ns.items() if isinstance(v, types.ModuleType) and v.__name__.startswith(("ray.", "hyperopt"))
    }
    _check_ranges_declared_elsewhere(tree, modules)


def _search_space_call(tree: ast.Module, module: str) -> tuple[int, str, str, str] | None:
    """``lr = tune.loguniform(1e-4, 1e-1)`` with ``module`` ("tune", "hp"): (its line, the variable, the
    call's kind, its arguments as written, a hyperopt label left out), for the first such assignment;
    else None."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        call = node.value
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
            continue
        kind = call.func.attr
        if not (isinstance(call.func.value, ast.Name) and call.func.value.id == module and kind in _KIND_OF):
            continue
        given: list[ast.expr] = [*call.args, *(k.value for k in call.keywords)]
        if given and isinstance(given[0], ast.Constant) and isinstance(given[0].value, str):
            given = given[1:]  # hyperopt's label: hp.uniform("lr", 0, 1)
        if kind in ("choice", "grid_search") and given and isinstance(given[0], (ast.List, ast.Tuple)):
            given = given[0].elts  # tune.choice([32, 64]): nbtune's choice takes the values themselves
        if kind in ("randint", "lograndint") and len(given) == 2:
            top = given[1]  # Ray's leaves its top out, nbtune's int takes it in: randint(1, 10) is int(1, 9)
            if isinstance(top, ast.Constant) and isinstance(top.value, int) and not isinstance(top.value, bool):
                given = [given[0], ast.Constant(top.value - 1)]
        return node.lineno, node.targets[0].id, kind, ", ".join(ast.unparse(a) for a in given)
    return None


def _check_module_attributes(tree: ast.Module, user_ns: dict[str, Any]) -> None:
    """A module's attribute the cell reads that the module does not have: on a line every trial runs,
    every trial would fail with an AttributeError; on a branch (``if opt == "rmsprop":
    torch.optim.RMSProp(...)``), the trials that take it would, and the search spent a third of its
    budget on them (found trying nbtune as a new user). A branch's is said when it is a typo of an
    attribute the module has (the same but for case, or a letter or two off): one missing for
    another reason (an older library, behind a version check) is left to the trials. The modules:
    the notebook's, and those the cell imports that this process has imported. Not read: an attribute
    the cell sets or asks about (``hasattr``, ``getattr``), code under a ``try`` that catches it, a
    submodule not imported yet."""
    import difflib
    import importlib.util

    tree = visible(tree)
    nodes = list(ast.walk(tree))
    modules = {n: v for n, v in user_ns.items() if isinstance(v, types.ModuleType)}
    for node in nodes:  # the cell's own imports, of modules already imported
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name if a.asname else a.name.split(".")[0]
                if top in sys.modules:
                    modules[a.asname or top] = sys.modules[top]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for a in node.names:
                if f"{node.module}.{a.name}" in sys.modules:
                    modules[a.asname or a.name] = sys.modules[f"{node.module}.{a.name}"]
    imported = {
        a.asname or a.name.split(".")[0] for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names
    }
    for name in _bound_anywhere(tree) - imported:  # rebound to something else in the cell
        modules.pop(name, None)
    asked = {a.value for n in nodes if isinstance(n, ast.Call) and getattr(n.func, "id", None) in ("hasattr", "getattr")
             for a in n.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}  # fmt: skip
    asked |= {n.attr for n in nodes if isinstance(n, ast.Attribute) and not isinstance(n.ctx, ast.Load)}
    caught: set[int] = set()
    for node in nodes:
        if isinstance(node, ast.Try) and any(
            h.type is None or any(getattr(t, "id", None) in ("AttributeError", "Exception", "BaseException")
                                  for t in (h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]))
            for h in node.handlers
        ):  # fmt: skip
            caught |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    sure = {id(n) for n in unconditional_nodes(tree)}
    found: list[tuple[int, str, str, str | None]] = []
    for node in nodes:
        if not (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)) or id(node) in caught:
            continue
        chain: list[str] = []
        root: ast.AST = node
        while isinstance(root, ast.Attribute):
            chain.insert(0, root.attr)
            root = root.value
        if not isinstance(root, ast.Name) or root.id not in modules or node.attr in asked:
            continue
        owner: Any = modules[root.id]
        try:
            with warnings.catch_warnings():  # (a deprecated alias warns when read: the trials' to say)
                warnings.simplefilter("ignore")
                for attr in chain[:-1]:  # (a prefix that does not resolve is its own node's to say)
                    owner = getattr(owner, attr)
                if not isinstance(owner, types.ModuleType) or hasattr(owner, node.attr):
                    continue
                if hasattr(owner, "__path__") and importlib.util.find_spec(f"{owner.__name__}.{node.attr}"):
                    continue  # a submodule not imported yet: whether the trials import it is theirs
        except Exception:  # a module whose attributes cannot be read plainly, a prefix missing
            continue
        near = _like(node.attr, [a for a in dir(owner) if not a.startswith("_")])
        typo = near is not None and (
            near.lower() == node.attr.lower() or difflib.SequenceMatcher(None, near, node.attr).ratio() >= 0.85
        )
        if id(node) in sure or typo:
            found.append((node.lineno, owner.__name__, ast.unparse(node), near))
    if not found:
        return
    line, module, said, near = min(found)  # (as the cell spells it: 'toptim.RMSProp')
    raise ConfigError(
        f"line {line} of the %%tune cell reads {said}, which module {module!r} does not have: the trials that run "
        f"that line would fail with an AttributeError"
        + (f"; did you mean {near!r}?" if near else "; check the name, or the library's version")
    )


# names through which code defines names it does not write (exec("x = 1"), globals()["X"] = ..., builtins.X = ...)
_DEFINES_NAMES = {"exec", "eval", "globals", "vars", "locals", "setattr", "builtins", "__builtins__", "__import__"}


def _globals_notebook_code_sets(read: set[str], user_ns: dict[str, Any]) -> set[str] | None:
    """The globals the notebook's functions the cell calls set in the trial's namespace ('def load():
    global X; X = ...', called by another notebook function the cell calls: found retesting the
    names check), following the notebook functions they call in turn (a trial gives them all its
    namespace: identity.functions_reading); None when one of them defines names in a way its code
    does not write (``globals()[...]``)."""
    seen: set[int] = set()
    todo = [user_ns[n] for n in read if n in user_ns]
    out: set[str] = set()
    while todo:
        f = todo.pop()
        # (a library's function sets no notebook variable; a method, a decorated function's original or
        # a partial's set the notebook's own: see _set_elsewhere)
        if id(f) in seen or not isinstance(f, types.FunctionType) or f.__globals__ is not user_ns:
            continue
        seen.add(id(f))
        names = code_names(f.__code__)
        if names & _DEFINES_NAMES:
            return None
        out |= sets_globals(f)
        todo.extend(user_ns[n] for n in names if n in user_ns)
    return out


def _set_elsewhere(name: str, user_ns: dict[str, Any]) -> str | None:
    """The notebook code that sets ``name`` as a global where a trial does not see it: a method of
    a notebook class, a decorated function (its original keeps the notebook's globals), a partial;
    in words ("the method Loader.load"), or None."""
    for holder, value in list(user_ns.items()):
        if holder.startswith("_"):
            continue
        candidates: list[tuple[str, Any]] = []
        if isinstance(value, type) and getattr(value, "__module__", None) == "__main__":
            candidates = [(f"the method {value.__name__}.{k}", v) for k, v in vars(value).items()]
        elif isinstance(value, functools.partial):
            candidates = [(f"the function {holder}, a partial", value.func)]
        elif getattr(value, "__wrapped__", None) is not None:
            candidates = [(f"the decorated function {holder}", value.__wrapped__)]
        for said, f in candidates:
            f = getattr(f, "__func__", f)  # (staticmethod, classmethod)
            if isinstance(f, types.FunctionType) and f.__globals__ is user_ns and name in sets_globals(f):
                return said
    return None


def _set_by_cell(tree: ast.Module, name: str, user_ns: dict[str, Any]) -> bool:
    """The cell assigns ``name``, or it is set as a global (:func:`_set_by_functions`)."""
    return bool(_stores(tree, name)) or _set_by_functions(tree, name, user_ns)


def _stores(tree: ast.Module, name: str) -> list[ast.Name]:
    """The cell's assignments of ``name``, at any depth."""
    return [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store)]


def sets_as_global(tree: ast.Module | None, name: str, user_ns: dict[str, Any]) -> bool:
    """A function the cell calls sets ``name`` as a global (:func:`_set_by_functions`)."""
    return tree is not None and _set_by_functions(tree, name, user_ns)


def _set_by_functions(tree: ast.Module, name: str, user_ns: dict[str, Any]) -> bool:
    """The cell declares ``name`` global, or a notebook function it calls sets it as a global ('def
    evaluate(): global acc; acc = ...'), or one that function calls in turn: a trial gives them all
    the trial's namespace (identity.functions_reading), where the cell reads what they set (a
    helper's helper's was refused: found reading the change)."""
    if any(isinstance(n, ast.Global) and name in n.names for n in ast.walk(tree)):
        return True
    reads = outside_reads(tree)
    transitive = _globals_notebook_code_sets(reads, user_ns)
    if transitive is not None:
        return name in transitive
    # (a function that defines names its code does not write, globals()[...]: the ones it writes)
    return any(name in sets_globals(user_ns[n]) for n in reads if isinstance(user_ns.get(n), types.FunctionType))


def _why_not_notebooks(tree: ast.Module, name: str, user_ns: dict[str, Any]) -> str:
    """Why the notebook's own ``name`` does not count, and the name the cell does set that was
    probably meant (" (did you mean 'val_f1'?)"), for a message about a variable the cell never sets."""
    out = (
        f" (the notebook's {name!r} would not do: each trial runs the cell in a namespace of its own)"
        if name in user_ns
        else ""
    )
    near = _like(name, sorted(_bound_anywhere(tree)))
    if near:  # --maximize val_F1 of a cell that sets val_f1 (found trying nbtune as a new user)
        out += f" (did you mean {near!r}?)"
    return out


def _like(name: str, candidates: list[str]) -> str | None:
    """The one of ``candidates`` that ``name`` was probably meant to be: the same but for case, else
    the closest by a letter or two (difflib), else None."""
    import difflib

    same = [c for c in candidates if c.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, candidates, 1)
    return close[0] if close else None


def _check_metric_is_computed(spec: CellSpec, metric: str, user_ns: dict[str, Any]) -> None:
    """The cell computes the metric, and with an epochs loop computes it in every epoch: else every
    trial would fail (after the first three the search stops as a bug), so say so before any runs."""
    assert spec.tree is not None
    stores = _stores(spec.tree, metric)
    set_by_functions = _set_by_functions(spec.tree, metric, user_ns)
    if not stores and not set_by_functions:
        raise ConfigError(
            f"the %%tune cell never assigns {metric!r}, so no trial could report it"
            f"{_why_not_notebooks(spec.tree, metric, user_ns)}; assign it in the cell "
            f"(e.g. '{metric} = model.score(X_val, y_val)') or name the variable the cell computes in "
            "--maximize/--minimize"
        )
    several = [
        n
        for n in ast.walk(spec.tree)
        if isinstance(n, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == metric for t in n.targets)
        and isinstance(n.value, (ast.Tuple, ast.List))
        and len(n.value.elts) > 1
    ]
    if several:  # (val_f1, n_coef): each trial would fail on it (found trying nbtune as an Optuna user)
        values = several[0].value
        assert isinstance(values, (ast.Tuple, ast.List))
        raise ConfigError(
            f"line {several[0].lineno} of the %%tune cell: {metric!r} is {len(values.elts)} values "
            f"({ast.unparse(values)[:60]}); {ONE_METRIC}"
        )
    if spec.epochs is None or set_by_functions:
        return
    loop = epochs_loop(spec.tree, spec.epochs.lineno)
    assert loop is not None
    inside = {id(n) for part in loop.body for n in ast.walk(part)}
    if not any(id(n) in inside for n in stores):
        where = ("line " if len(stores) == 1 else "lines ") + ", ".join(str(n.lineno) for n in stores)
        raise ConfigError(
            f"line {loop.lineno} of the %%tune cell: the epochs loop reports {metric!r} after every epoch, but the "
            f"cell assigns it only outside the loop ({where}); compute it inside the loop, at the end of each "
            f"epoch (e.g. '{metric} = model.score(X_val, y_val)')"
        )
    found = [
        (
            _none_in_some_epochs(loop, metric),
            " in some of them (a warm-up before a running mean has its window); give it a number from the first "
            f"epoch on, e.g. the mean of what there is so far ('{metric} = float(np.mean(returns[-20:]))' takes "
            "fewer than 20), or make each pass of the '# tune: epochs' loop one evaluation period",
        )
    ]
    if not any(n.lineno < loop.lineno for n in stores):  # else a value from before the loop stands (best_acc = 0)
        found.append(
            (
                epoch_without(loop, metric),
                "; set it in every epoch (successive halving compares trials by it as they train), or make each pass "
                "of the '# tune: epochs' loop one evaluation period, with the epochs between two evaluations inside it",
            )
        )
    for at, fix in found:
        if at is not None:
            raise ConfigError(
                f"line {at[0]} of the %%tune cell: the epochs loop reports {metric!r} after every epoch, but "
                f"{at[1]}{fix}"
            )


def _none_in_some_epochs(loop: ast.For | ast.AsyncFor, metric: str) -> tuple[int, str] | None:
    """(line, what) when the loop sets the metric to None or NaN on one side of a conditional
    expression (``x if len(returns) >= 20 else None``): every trial then fails at its first epoch,
    and after three the search stopped as a bug (found trying nbtune as a new user)."""
    for node in (n for part in loop.body for n in ast.walk(part)):
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or not isinstance(node.value, ast.IfExp):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if not any(isinstance(t, ast.Name) and t.id == metric for t in targets):
            continue
        for side in (node.value.body, node.value.orelse):
            if isinstance(side, ast.Constant) and side.value is None:
                return node.lineno, "it is None"
            text = ast.unparse(side).replace(" ", "").lower()
            if text in ("float('nan')", 'float("nan")', "np.nan", "numpy.nan", "math.nan", "torch.nan"):
                return node.lineno, "it is NaN"
    return None


def _check_holdout(tree: ast.Module, holdout: str, metric: str) -> None:
    """The holdout metric can be sealed: the cell assigns it, and reads it nowhere else (a read
    would fail in every search trial, where it is not computed)."""
    if not holdout.isidentifier():
        raise ConfigError(f"--holdout takes the name of the cell variable holding the holdout score; got {holdout!r}")
    if holdout == metric:
        raise ConfigError(
            f"--holdout {holdout} names the metric the search optimises; the holdout must be a separate score "
            f"on data the search never sees, e.g. '--holdout test_acc' beside '--maximize {metric}'"
        )
    # another measure than the metric (a log loss searched, an AUC held out; accuracy and AUC): its gap to the
    # search's value subtracted one from the other and blamed the split (found trying nbtune as a new user)
    kinds = {"error": "an error (lower is better)", "score": "a score (higher is better)"}
    theirs, ours = metric_reads_as(holdout), metric_reads_as(metric)
    theirs_m, ours_m = measures(holdout), measures(metric)
    differ = (
        f"reads as {kinds[theirs]} and the metric {metric} as {kinds[ours]}"
        if theirs in kinds and ours in kinds and theirs != ours
        else f"measures {', '.join(sorted(theirs_m))} and the metric {metric} {', '.join(sorted(ours_m))}"
        if theirs_m and ours_m and not theirs_m & ours_m
        else None
    )
    if differ is not None:
        same = "test_" + metric.removeprefix("val_").removeprefix("valid_").removeprefix("validation_")
        raise ConfigError(
            f"--holdout {holdout} {differ}: the holdout is the metric's own measure on the held-out data (nbtune "
            f"compares the two to say how optimistic the search's value is); compute it as {metric} is computed, on "
            f"the held-out data ('{same} = ...', --holdout {same})"
        )
    sealed = _assigning(tree, holdout)
    if not sealed:
        raise ConfigError(
            f"--holdout {holdout}: the %%tune cell never assigns {holdout!r}; compute it in the cell on the "
            f"held-out data, e.g. '{holdout} = model.score(X_test, y_test)' (nbtune runs that line only after "
            "the search)"
        )
    for stmt in sealed:
        shared = sorted(
            {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)} - {holdout}
        )
        if shared:
            raise ConfigError(
                f"line {stmt.lineno} of the %%tune cell assigns {holdout!r} (the sealed holdout) together with "
                f"{', '.join(repr(n) for n in shared)}: that line never runs during the search, so they would never "
                f"be set; give {holdout!r} a line of its own, e.g. '{holdout} = model.score(X_test, y_test)'"
            )
    inside = {id(n) for stmt in sealed for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == holdout and id(node) not in inside:
            raise ConfigError(
                f"line {node.lineno} of the %%tune cell reads {holdout!r}, the sealed holdout: it is computed only "
                "after the search, so this line would fail in every trial; remove it (res.holdout() gives the "
                "value) or read another variable"
            )


_INDEXERS = {"loc", "iloc", "at", "iat"}
_DESCRIBES = {"shape", "ndim", "size", "dtype", "dtypes", "columns", "index"}  # of data, no values
_TRAINING_CALLS = {"fit", "partial_fit", "fit_transform", "train"}
_NOT_DATA_KEYWORDS = {"labels", "classes", "target_names", "columns", "feature_names", "categories"}


def _selects_columns(index: ast.expr, user_ns: dict[str, Any]) -> bool:
    """``frame["y"]``, ``frame[["a", "b"]]``, ``frame[cols]`` (a notebook list of names): the
    subscript picks columns of the frame it indexes, which is then the data the line reads, not
    shared data indexed by the holdout's rows (``X[test]``). A pandas holdout read as
    ``test["y"]`` was taken for shared data and its leak went unnamed (found trying nbtune as a
    new user)."""

    def names(values: Iterable[Any]) -> bool:
        values = list(values)
        return bool(values) and all(isinstance(v, str) for v in values)

    if isinstance(index, ast.Constant):
        return isinstance(index.value, str)
    if isinstance(index, (ast.List, ast.Tuple)):
        return all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in index.elts) and bool(index.elts)
    if isinstance(index, ast.Name) and index.id in user_ns:
        value = user_ns[index.id]
        if isinstance(value, str):
            return True
        if isinstance(value, (list, tuple)) or type(value).__name__ == "Index":
            try:
                return names(value)
            except TypeError:
                return False
    return False


def holdout_leaks(
    tree: ast.Module, holdout: str, user_ns: dict[str, Any], positions: set[tuple[int, int]] | None = None
) -> list[str]:
    """Lines of the search that read the notebook data the sealed holdout's lines read, as one
    sentence each: ``val_rmse = rmse(y_test, model.predict(X_test))`` beside ``--holdout test_rmse``
    scored the search on the test data and reported a gap of 0, 'within' (found trying nbtune as a
    new user). Data is what has a shape or a length and is no model; a name the sealed line only
    indexes (``X[test]``, ``df.loc[test]``), trains a final refit on, or passes as ``labels=`` is
    shared data, and no sign of a leak. What a notebook function reads as
    a global counts as read by the line that calls it (``def test_score(m): return m.score(X_test,
    y_test)``), on either side. ``positions``: every line sealed with the holdout (:func:`sealed_lines`:
    a final refit, ``scale = y_test.std()`` that only the holdout's line reads), which no trial runs
    either (each read as a search line's leak: found retesting nbtune as a user)."""
    sealed = (
        [n for n in ast.walk(tree) if isinstance(n, ast.stmt) and (n.lineno, n.col_offset) in positions]
        if positions
        else _assigning(tree, holdout)
    )
    inside = {id(n) for stmt in sealed for n in ast.walk(stmt)}
    # not the holdout's data: what the sealed line indexes (X[test], df.loc[test]), what a final refit
    # trains on (clone(model).fit(X_train_val, ...).score(X_test, ...)), labels and column lists
    # passed by name (labels=classes)
    shared: set[int] = set()
    for stmt in sealed:
        for n in ast.walk(stmt):
            if isinstance(n, ast.Subscript):
                base = n.value.value if isinstance(n.value, ast.Attribute) and n.value.attr in _INDEXERS else n.value
                if not _selects_columns(n.slice, user_ns):  # test["y"], test[cols]: the frame is the data
                    shared.add(id(base))
            elif isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in _TRAINING_CALLS:
                shared |= {id(x) for a in [*n.args, *(k.value for k in n.keywords)] for x in ast.walk(a)}
            elif isinstance(n, ast.keyword) and n.arg in _NOT_DATA_KEYWORDS:
                shared |= {id(x) for x in ast.walk(n.value)}
    bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}

    def data(names: Iterable[str]) -> set[str]:
        return {n for n in names if n not in bound and n in user_ns and is_data(user_ns[n])}

    loads = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
    test_data = data(n.id for n in loads if id(n) in inside and id(n) not in shared)
    # what the search reads of the holdout's shape alone (X_test.shape[1], len(X_test), test_df.columns) tunes
    # nothing to it (found trying nbtune as a new user: each was a 'possible leak')
    described = {
        id(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and n.attr in _DESCRIBES and isinstance(n.value, ast.Name)
    } | {
        id(n.args[0])
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "len" and len(n.args) == 1
    }
    loads = [n for n in loads if id(n) not in described]
    test_data |= data(
        g
        for n in loads
        if id(n) in inside
        # (not what a notebook function trains on: a final refit, 'refit(model).score(X_test, y_test)')
        for g in globals_read_through(n.id, user_ns) - trained_on_through(n.id, user_ns, _TRAINING_CALLS)
    )
    test_data -= _evaluators_own_data(tree, sealed, inside, shared, data, user_ns)
    same = {id(user_ns[n]): n for n in test_data}  # another name for the same array: X_v2 = X_test
    reads: dict[int, set[str]] = {}
    for node in loads:
        if id(node) in inside:
            continue
        if node.id in test_data:
            reads.setdefault(node.lineno, set()).add(repr(node.id))
        elif node.id not in bound and id(user_ns.get(node.id)) in same:
            reads.setdefault(node.lineno, set()).add(f"{node.id!r} (the same object as {same[id(user_ns[node.id])]!r})")
        through = sorted(globals_read_through(node.id, user_ns) & test_data)
        if through:
            call = "()" if callable(user_ns.get(node.id)) else ""  # a function, or a dict of them
            reads.setdefault(node.lineno, set()).add(f"{', '.join(map(repr, through))} (through {node.id}{call})")
    if not reads:
        return []
    first = min((stmt.lineno for stmt in _assigning(tree, holdout)), default=0)
    # one note, the lines that read the same data together (a note per line said the same thing three times,
    # and again after the search: found trying nbtune as a new user)
    by_names: dict[str, list[int]] = {}
    for line, names in sorted(reads.items()):
        by_names.setdefault(", ".join(sorted(names)), []).append(line)
    parts: list[str] = []
    for names_read, lines in by_names.items():
        where = f"line {lines[0]}" if len(lines) == 1 else f"lines {', '.join(map(str, lines[:-1]))} and {lines[-1]}"
        verb = "reads" if len(lines) == 1 else "read"
        parts.append(f"{where}{' of the %%tune cell' if not parts else ''} {verb} {names_read}")
    return [
        f"possible leak: {', '.join(parts)}, as the sealed holdout's line {first} does: if that is the holdout's data, "
        "every trial sees it, the search tunes to it and the holdout is no longer a fair test; score the search on "
        "validation data (or the folds' held-out part) only"
    ]


_HOLDOUT_WORDS = {"test", "tst", "holdout", "heldout", "ho", "te"}


def _evaluators_own_data(
    tree: ast.Module,
    sealed: list[ast.stmt],
    inside: set[int],
    shared: set[int],
    data: Callable[[Iterable[str]], set[str]],
    user_ns: dict[str, Any],
) -> set[str]:
    """The data an evaluator reads whatever it scores: the sealed line calls a function the search
    calls too, on other data (``evaluate(U, V, test)`` and ``evaluate(U, V, val)``), and both calls
    read the rest alike (``train_mask``, the items a user already has, read as a global or passed as
    ``mask=``). That is no holdout data: every holdout check of a recommender was voided as a
    'possible leak' of its training mask (found trying nbtune as a new user). The data the two calls
    differ by stays the holdout's, and so does a shared name that reads as test data (``X_test``)."""

    def reads(call: ast.Call) -> set[str]:
        args = [*call.args, *(k.value for k in call.keywords)]
        direct = {x.id for a in args for x in ast.walk(a) if isinstance(x, ast.Name) and id(x) not in shared}
        through = globals_read_through(call.func.id, user_ns) if isinstance(call.func, ast.Name) else set()
        return data(direct) | data(through)

    calls: dict[str, list[ast.Call]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and id(node) not in inside:
            calls.setdefault(ast.unparse(node.func), []).append(node)
    own: set[str] = set()
    for stmt in sealed:
        for node in ast.walk(stmt):
            if not isinstance(node, ast.Call):
                continue
            scored = reads(node)
            for twin in calls.get(ast.unparse(node.func), []):
                other = reads(twin)
                if scored - other:  # the same evaluator on other data
                    own |= {n for n in scored & other if not words(n) & _HOLDOUT_WORDS}
    return own


def is_data(value: Any) -> bool:
    """An array, a frame, a tensor, a dataset or a data loader: not a model (a Pipeline has a
    length), and not a list of column names (``NUM = ["age", "income"]`` in ``test_df[NUM]``)."""
    if callable(value) or isinstance(value, (str, bytes, type, types.ModuleType)):
        return False
    if hasattr(value, "fit") or hasattr(value, "parameters"):
        return False
    if isinstance(value, (list, tuple, set, frozenset, dict, range)):
        return False
    return hasattr(value, "shape") or hasattr(value, "__len__")


def _load_in_place(current: Any, saved: Any) -> bool:
    """Copy a saved state into the object the cell built before the loop, when both are of the
    same class and it has a way in: torch modules, optimizers and LR schedulers
    (``state_dict``/``load_state_dict``), random generators (a ``torch.Generator``'s
    ``get_state``/``set_state``, NumPy's, Python's ``random.Random``). What the cell built from
    it before the loop (an optimizer over the model's parameters, a scheduler over the optimizer,
    a ``DataLoader`` over the generator) then works on the resumed state. Replacing the variable
    would leave such an optimizer stepping the fresh model's parameters, which nothing reads (the
    resumed trial would not learn), and the loader shuffling from the fresh generator. False
    (replace it) when that is not possible."""
    if current is None or current is saved or type(current).__qualname__ != type(saved).__qualname__:
        return False
    try:
        if callable(getattr(current, "load_state_dict", None)) and callable(getattr(saved, "state_dict", None)):
            current.load_state_dict(saved.state_dict())
        elif hasattr(current, "bit_generator") and hasattr(saved, "bit_generator"):  # numpy's Generator
            current.bit_generator.state = saved.bit_generator.state
        elif callable(getattr(current, "set_state", None)) and callable(getattr(saved, "get_state", None)):
            current.set_state(saved.get_state())  # torch.Generator, numpy's RandomState
        elif callable(getattr(current, "setstate", None)) and callable(getattr(saved, "getstate", None)):
            current.setstate(saved.getstate())  # random.Random
        else:
            return False
    except Exception:  # another shape (a tuned width): the saved object itself, as before
        return False
    return True
