"""How many epochs the ``# tune: epochs`` loop runs, found without running the cell.

Hyperband needs the epochs of a full trial (R) before the first trial starts. The loop's
iterable is evaluated statically over a small, safe subset of Python: literals and
arithmetic on them, names bound to such values (the notebook's variables, or the cell's
own earlier top-level assignments), subscripts (``cfg["epochs"]``), ``range``, ``len``, ``int``,
``round``, ``max``, ``min`` of numbers, and
wrappers that keep the length (``tqdm``/``trange``, ``enumerate``, ``reversed``, ``list``,
``sorted``). A notebook object that has a length (a list, an array, a PyTorch ``DataLoader``
when the loop is over batches) counts by ``len()``. No function of the user's is called.
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import operator
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sized
from typing import Any

__all__ = ["lengths_over", "loop_length"]

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.Div: operator.truediv,
}
_NUMBER_CALLS: dict[str, Callable[..., Any]] = {"int": int, "round": round, "max": max, "min": min}
_KEEP_LENGTH = {"tqdm", "trange", "enumerate", "reversed", "list", "tuple", "sorted", "notebook", "auto"}


class _Unknown(Exception):
    """Why the value cannot be known statically."""


def _value(node: ast.expr, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Attribute, ast.Subscript)) and ast.unparse(node) in env:
        return env[ast.unparse(node)]  # CFG.epochs = 2 earlier in the cell
    if isinstance(node, ast.Name):
        if isinstance(env.get(node.id), _SetInCell):
            raise _Unknown(
                f"{node.id} is set on line {env[node.id].line} of the cell by code nbtune does not run before the trials"
            )
        if node.id in env:
            return env[node.id]
        raise _Unknown(f"{node.id} is neither a notebook variable nor a literal assigned earlier in the cell")
    if isinstance(node, (ast.Tuple, ast.List)):
        return [_value(e, env) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_value(k, env): _value(v, env) for k, v in zip(node.keys, node.values) if k is not None}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _value(node.operand, env)
        return -v if isinstance(node.op, ast.USub) else +v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _value(node.left, env), _value(node.right, env)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
            raise _Unknown(f"{ast.unparse(node)} is not arithmetic on numbers")
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise _Unknown(f"{ast.unparse(node)} is too large")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.Subscript):
        container = _value(node.value, env)
        if isinstance(node.slice, ast.Slice):  # t_obs[1:], data[:EPOCHS]: its length is known too
            parts = [
                None if p is None else _value(p, env) for p in (node.slice.lower, node.slice.upper, node.slice.step)
            ]
            if not all(p is None or (isinstance(p, int) and not isinstance(p, bool)) for p in parts):
                raise _Unknown(f"{ast.unparse(node)} is sliced by something other than whole numbers")
            key: Any = slice(*parts)
        else:
            key = _value(node.slice, env)
        try:
            return container[key]
        except Exception:
            raise _Unknown(f"{ast.unparse(node)} cannot be looked up") from None
    if isinstance(node, ast.Attribute):
        # attributes of a notebook object are data, not code: cfg.epochs, args.epochs
        base = _value(node.value, env)
        attr = getattr(type(base), node.attr, None)
        if callable(attr) or isinstance(attr, property):
            raise _Unknown(f"{ast.unparse(node)} would run code")
        try:
            return vars(base)[node.attr]
        except Exception:
            raise _Unknown(f"{ast.unparse(node)} cannot be looked up") from None
    if isinstance(node, ast.Call):
        return _call(node, env)
    raise _Unknown(f"{ast.unparse(node)} is not a literal, a variable or range(...)")


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):  # tqdm.tqdm(...), tqdm.auto.tqdm(...)
        return func.attr
    return ""


def _call(node: ast.Call, env: dict[str, Any]) -> Any:
    name = _callee(node)
    if isinstance(node.func, ast.Name) and env.get(name) is not None and not isinstance(env[name], _SetInCell):
        # the notebook's object, by its own name: 'from tqdm.auto import tqdm as atqdm' is tqdm, and a
        # trange imported as tqdm is trange (found retesting)
        own, module = getattr(env[name], "__name__", None), getattr(env[name], "__module__", None) or ""
        if isinstance(own, str) and module.startswith("tqdm"):  # (tqdm.auto's is tqdm_asyncio or tqdm_notebook)
            name = "trange" if "trange" in own else "tqdm"
        elif isinstance(own, str) and module == "builtins" and own in {*_KEEP_LENGTH, "range"}:
            name = own
    if node.keywords and name not in _KEEP_LENGTH:
        raise _Unknown(f"{ast.unparse(node)} has keyword arguments")
    if name in ("range", "trange"):
        args = [_value(a, env) for a in node.args]
        if not args or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            raise _Unknown(f"{ast.unparse(node)} needs whole numbers")
        return range(*args)
    if name == "len" and len(node.args) == 1:
        return _length(_value(node.args[0], env), node.args[0])
    if name in ("int", "round", "max", "min") and isinstance(node.func, ast.Name) and node.args:
        args = [_value(a, env) for a in node.args]  # range(int(EPOCHS * 1.5)), range(max(1, EPOCHS // 2))
        if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise _Unknown(f"{ast.unparse(node)} needs numbers")
        return _NUMBER_CALLS[name](*args)
    if name in _KEEP_LENGTH and node.args:
        return _Sized(_length(_value(node.args[0], env), node.args[0]))
    raise _Unknown(f"{ast.unparse(node)} calls {name or 'a function'}, which nbtune does not run before the trials")


class _Sized:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _length(value: Any, node: ast.expr) -> int:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sized) or isinstance(value, type):
        raise _Unknown(f"{ast.unparse(node)} has no length")
    try:
        return len(value)
    except Exception:
        raise _Unknown(f"{ast.unparse(node)} has no length") from None


class _SetInCell:
    """A name the cell sets before the loop to something nbtune cannot know without running it."""

    def __init__(self, line: int) -> None:
        self.line = line


_MUTATORS = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__setattr__"}


def _root(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _set_by(stmt: ast.stmt) -> dict[str, int]:
    """The names ``stmt`` binds or changes in place (``CFG.epochs = 2``, ``cfg.update(...)``),
    outside the bodies of the functions and classes it defines, with the line where each is set."""
    names: dict[str, int] = {}
    todo: list[ast.AST] = [stmt]
    while todo:
        node = todo.pop()
        found: list[str | None] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.setdefault(node.name, node.lineno)
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            found.append(_root(node))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found.extend((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in _MUTATORS:
                found.append(_root(func.value))
            elif isinstance(func, ast.Name) and func.id in ("setattr", "delattr") and node.args:
                found.append(_root(node.args[0]))
        for name in found:
            if name is not None and isinstance(node, (ast.expr, ast.stmt)):
                names[name] = min(names.get(name, node.lineno), node.lineno)
        todo.extend(ast.iter_child_nodes(node))
    return names


def earlier_literals(
    tree: ast.Module,
    before_line: int,
    notebook: dict[str, Any] | None = None,
    tuned: set[str] = frozenset(),  # type: ignore[assignment]
) -> dict[str, Any]:
    """What the cell's top level sets before the loop, as the loop's length is found from it:
    ``NAME = <literal>`` and ``NAME.attr = <literal>`` / ``NAME[key] = <literal>`` give their
    values (keyed by the target's source for the last two), and so does ``NAME = <what an epochs
    loop may iterate>`` that nbtune reads without running it (``pbar = tqdm(range(EPOCHS))``, to
    call ``pbar.set_postfix``: found trying nbtune as a new user), with the ``notebook``'s values
    and those set before it; a name set any other way (a call, an ``if``, ``+=``) hides the
    notebook's value of it, so a stale one is never read."""
    env: dict[str, Any] = {}
    for stmt in tree.body:
        if stmt.lineno >= before_line:
            break
        set_here = _set_by(stmt)
        # an override's key is its target's source ('CFG.epochs'): its root is the name it starts with
        for key in [k for k in env if not k.isidentifier() and re.split(r"[.\[]", k, maxsplit=1)[0] in set_here]:
            del env[key]
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            try:
                value = ast.literal_eval(stmt.value)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                pass
            else:
                if isinstance(target, ast.Name):
                    env[target.id] = value
                    continue
                if isinstance(target, (ast.Attribute, ast.Subscript)) and _root(target) is not None:
                    env[ast.unparse(target)] = value
                    continue
            if isinstance(target, ast.Name) and isinstance(stmt.value, ast.Call):
                try:
                    known = {k: v for k, v in {**(notebook or {}), **env}.items() if k not in tuned}
                    env[target.id] = _Sized(_length(_value(stmt.value, known), stmt.value))
                    continue
                except Exception:  # (_Unknown, or arithmetic): set by code nbtune does not run
                    pass
        for name, line in set_here.items():
            env[name] = _SetInCell(line)
        if isinstance(stmt, ast.With):  # 'with tqdm(range(EPOCHS)) as pbar:' around the loop
            for item in stmt.items:
                bar, made = item.optional_vars, item.context_expr
                if isinstance(bar, ast.Name) and isinstance(made, ast.Call):
                    with contextlib.suppress(Exception):  # (_Unknown: set by code nbtune does not run)
                        known = {k: v for k, v in {**(notebook or {}), **env}.items() if k not in tuned}
                        env[bar.id] = _Sized(_length(_value(made, known), made))
    return env


def loop_length(
    loop: ast.For | ast.AsyncFor,
    tree: ast.Module,
    user_ns: dict[str, Any] | None,
    tuned: set[str] = frozenset(),  # type: ignore[assignment]
) -> tuple[int | None, str]:
    """(the number of iterations, '') or (None, why it cannot be known before the cell runs)."""
    env = {k: v for k, v in (user_ns or {}).items() if not k.startswith("_")}
    env.update(earlier_literals(tree, loop.lineno, env, set(tuned)))
    for name in tuned:
        env.pop(name, None)
    used = {n.id for n in ast.walk(loop.iter) if isinstance(n, ast.Name)} & set(tuned)
    if used:
        return None, f"{', '.join(sorted(used))} is tuned, so the loop's length changes from trial to trial"
    try:
        return _length(_value(loop.iter, env), loop.iter), ""
    except _Unknown as e:
        return None, str(e)
    except Exception as e:  # arithmetic errors and the like: not knowable, never a crash
        return None, f"{ast.unparse(loop.iter)} cannot be evaluated ({type(e).__name__})"


def lengths_over(
    loop: ast.For | ast.AsyncFor, tree: ast.Module, user_ns: dict[str, Any] | None, values: dict[str, list[Any]]
) -> tuple[int, int] | None:
    """The shortest and longest the loop runs when the tuned names it reads take ``values`` (each
    name's ends and default, say), the others as the cell sets them; None when it cannot be read."""
    env = {k: v for k, v in (user_ns or {}).items() if not k.startswith("_")}
    env.update(earlier_literals(tree, loop.lineno, env, set()))
    used = [n for n in dict.fromkeys(_loaded(loop.iter)) if n in values]
    if not used:
        return None
    lengths: list[int] = []
    for combo in itertools.product(*(values[n] for n in used)):
        try:
            lengths.append(_length(_value(loop.iter, {**env, **dict(zip(used, combo))}), loop.iter))
        except Exception:  # (_Unknown, arithmetic): not knowable, never a crash
            return None
    return min(lengths), max(lengths)


def _loaded(node: ast.AST) -> list[str]:
    """The names ``node`` reads, in the order they appear."""
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]


def epochs_loop(tree: ast.Module, loop_line: int) -> ast.For | ast.AsyncFor | None:
    """The ``for`` statement at ``loop_line`` (the ``# tune: epochs`` loop), or None."""
    return next((n for n in ast.walk(tree) if isinstance(n, (ast.For, ast.AsyncFor)) and n.lineno == loop_line), None)


def names_read_each_epoch(tree: ast.Module, loop_line: int) -> set[str]:
    """The names the epochs loop (at ``loop_line``) reads on every pass: in its body, and in the
    functions the cell defines (the loop may call them). A name read only before the loop (when
    the model or optimizer is built) is not among them."""
    loop = epochs_loop(tree, loop_line)
    if loop is None:
        return set()
    scopes: list[ast.AST] = [*loop.body, *loop.orelse]
    scopes += [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    return {name for s in scopes for name in _loaded(s)}


def _assignments_before(tree: ast.Module, loop_line: int) -> list[tuple[list[ast.expr], list[str], int]]:
    """The cell's assignments before the loop at ``loop_line``, at the top level or in its blocks
    (an optimizer chosen by ``if``/``else`` or ``match``, found trying nbtune as a new user; not in a function
    or class): (their targets, the names their value reads, their line), in the cell's order."""
    out: list[tuple[list[ast.expr], list[str], int]] = []
    for top in tree.body:
        if top.lineno >= loop_line:
            break
        stack: list[ast.AST] = [top]
        while stack:
            stmt = stack.pop()
            if isinstance(stmt, ast.Assign):
                out.append((list(stmt.targets), _loaded(stmt.value), stmt.lineno))
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                out.append(([stmt.target], _loaded(stmt.value), stmt.lineno))
            elif not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                # (a match statement's cases hold their statements: 'case "sgd": opt = SGD(...)')
                inner = [n for n in ast.iter_child_nodes(stmt) if isinstance(n, (ast.stmt, ast.match_case))]
                stack.extend(reversed(inner))
    return out


def built_from_state(tree: ast.Module, state: list[str], loop_line: int) -> list[tuple[str, int, str]]:
    """Variables the cell builds before the epochs loop (at ``loop_line``) from a state variable,
    directly or through another such variable, that are not state themselves and that the loop
    uses: ``opt = SGD(model.parameters())`` and ``sched = StepLR(opt, 3)`` with only ``model``
    marked. As ``(name, line, the state variable it comes from)``, in the cell's order."""
    source = {name: name for name in state}
    found: list[tuple[str, int, str]] = []
    for targets, read, line in _assignments_before(tree, loop_line):
        if len(targets) != 1 or not isinstance(targets[0], ast.Name) or targets[0].id in source:
            continue
        origin = next((source[r] for r in read if r in source), None)
        if origin is not None:
            source[targets[0].id] = origin
            found.append((targets[0].id, line, origin))
    used = names_read_each_epoch(tree, loop_line)  # (empty without that loop)
    return [f for f in found if f[0] in used]


def names_that_take_effect(tree: ast.Module, loop_line: int, state: list[str]) -> set[str]:
    """The names whose value a member of a population uses after it went on from a checkpoint:
    read by the epochs loop, or by what the cell builds afresh before the loop and the loop uses
    (an optimizer that is not state: ``opt = SGD(model.parameters(), lr=lr)`` takes the new
    ``lr``). What only builds a state variable (a model's width) is overwritten by the loaded state."""
    used = names_read_each_epoch(tree, loop_line)  # (empty without that loop: nothing follows)
    before = [
        ({n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}, set(read))
        for targets, read, _ in _assignments_before(tree, loop_line)
    ]
    changed = True
    while changed:  # a variable the loop uses, built from others: those count too, until nothing new
        changed = False
        for names, read in reversed(before):
            if names & used and not names & set(state) and not read <= used:
                used |= read
                changed = True
    return used


def _stores(node: ast.AST, name: str) -> bool:
    """``node`` binds ``name`` somewhere (an assignment, ``+=``, a tuple target, ``:=``, a ``for``
    or ``with`` target), not counting the functions and classes it defines."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store):
            return True
        if n is node or not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(n))
    return False


def epoch_without(loop: ast.For | ast.AsyncFor, name: str) -> tuple[int, str] | None:
    """A way through the epochs loop's body that ends an epoch without setting ``name``, as (its
    line, what happens there), or None when every epoch sets it.

    Judged leniently, so that a cell that sets it is never refused: whatever an inner loop, a
    ``try``, a ``match`` or a ``while`` sets counts as set; only an ``if`` without a matching branch,
    and a ``continue`` before the assignment, are ways around it."""
    Unset = tuple[int, str]  # not set on some way here: where that way went around it
    found: list[Unset] = []  # epochs a continue ended before it was set

    def block(stmts: list[ast.stmt], done: bool | Unset | None) -> bool | Unset | None:
        # done: True set on every way here, None no way reaches here
        for s in stmts:
            if done is None:
                return None
            done = statement(s, done)
        return done

    def statement(s: ast.stmt, done: bool | Unset) -> bool | Unset | None:
        if isinstance(s, ast.Continue):
            if done is not True:
                found.append(
                    done
                    if isinstance(done, tuple)
                    else (s.lineno, "the 'continue' there ends some epochs before it is set")
                )
            return None
        if isinstance(s, (ast.Break, ast.Raise, ast.Return)):  # (after a break the last value set is reported)
            return None
        if isinstance(s, ast.If):
            if done is True or _stores(s.test, name):
                return True
            reached = [b for b in (block(s.body, done), block(s.orelse, done)) if b is not None]
            if not reached:
                return None
            if all(b is True for b in reached):
                return True
            return done if isinstance(done, tuple) else (s.lineno, "the 'if' there sets it only in some epochs")
        if isinstance(s, (ast.With, ast.AsyncWith)):
            return block(s.body, True if any(_stores(i, name) for i in s.items) else done)
        if done is True:
            return True
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return True if s.name == name else done
        return True if _stores(s, name) else done

    end = block(loop.body, False)
    if isinstance(end, tuple):
        found.append(end)
    elif end is False:
        found.append((loop.lineno, "its body does not set it in every epoch"))
    return found[0] if found else None


def carried_across_epochs(tree: ast.Module, loop_line: int) -> list[str]:
    """The variables the code before the epochs loop (at ``loop_line``) sets and the loop reads or
    sets again: what one epoch hands to the next besides the state (a step count for a warm-up,
    the best score so far and a patience counter, a history list). A trial that goes on from a
    checkpoint needs them as the epoch left them, not as the code before the loop sets them."""
    loop = epochs_loop(tree, loop_line)
    if loop is None:
        return []
    inside = {id(n) for part in [*loop.body, *loop.orelse] for n in ast.walk(part)}
    before: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:  # the cell's own variables set before the loop, not a function's locals
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.lineno < loop_line:
            before.add(node.id)
        stack.extend(ast.iter_child_nodes(node))
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) in inside}
    target = {n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)}
    return sorted((before & used) - target)


def set_in_epochs_loop(tree: ast.Module, loop_line: int) -> set[str]:
    """The names the epochs loop's body assigns (``ema = 0.9 * ema + ...``, ``step += 1``)."""
    loop = epochs_loop(tree, loop_line)
    if loop is None:
        return set()
    return {
        n.id for part in loop.body for n in ast.walk(part) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }


def running_best(tree: ast.Module, loop_line: int, metric: str, state: list[str]) -> tuple[str, int] | None:
    """(where it comes from, its line) when the epochs loop sets the metric to a best-so-far score rather
    than the epoch's own: ``val_acc = best_acc`` with ``best_acc`` set only under an ``if`` in the
    loop (``if acc > best_acc: best_acc = acc``), ``val_acc = max(val_acc, acc)`` or ``max(history)``
    with ``history.append(acc)`` in the loop, or the metric itself set only under an ``if`` that reads
    it (``if val_acc > best_val_acc: best_val_acc = val_acc``, the commonest form: found trying
    nbtune as a new user); and none of
    ``state`` is kept the same way (``best_model = copy.deepcopy(model)`` under that ``if``). Else None."""
    loop = epochs_loop(tree, loop_line)
    if loop is None:
        return None
    under_if: dict[str, bool] = {}  # name -> every assignment of it in the loop is under an if

    def walk(stmts: list[ast.stmt], conditional: bool) -> None:
        for s in stmts:
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            targets = s.targets if isinstance(s, ast.Assign) else [s.target] if isinstance(s, ast.AnnAssign) else []
            for target in targets:
                for n in ast.walk(target):
                    if isinstance(n, ast.Name):
                        under_if[n.id] = under_if.get(n.id, True) and conditional
            if isinstance(s, ast.If):
                walk(s.body, True)
                walk(s.orelse, True)
            else:
                for field in ("body", "orelse", "finalbody"):
                    inner = getattr(s, field, None)
                    if isinstance(inner, list):
                        walk(inner, conditional)
                for h in getattr(s, "handlers", []):
                    walk(h.body, conditional)

    walk(loop.body, False)
    if any(under_if.get(name) for name in state):
        return None
    appended = {
        n.func.value.id
        for n in ast.walk(loop)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "append"
        and isinstance(n.func.value, ast.Name)
    }
    for node in ast.walk(loop):
        if not (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == metric for t in node.targets)):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id != metric and under_if.get(value.id):
            return repr(value.id), node.lineno
        if (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id in ("max", "min")
            and any(isinstance(a, ast.Name) and a.id == metric for a in value.args)
        ):
            return f"{metric} = {ast.unparse(value)}", node.lineno
        if (  # val_acc = max(history), with history.append(acc) in the loop
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id in ("max", "min")
            and len(value.args) == 1
            and isinstance(value.args[0], ast.Name)
            and value.args[0].id in appended
        ):
            return ast.unparse(value), node.lineno
    if under_if.get(metric):  # if val_acc > best_val_acc: best_val_acc = val_acc (with --maximize best_val_acc)
        for node in ast.walk(loop):
            if not isinstance(node, ast.If) or not any(
                isinstance(n, ast.Name) and n.id == metric for n in ast.walk(node.test)
            ):
                continue
            for inner in node.body:
                if isinstance(inner, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == metric for t in inner.targets
                ):
                    return f"set only under 'if {ast.unparse(node.test)}'", inner.lineno
    return None


# Arguments that cap the rounds a booster or an iterative model trains (scikit-learn, LightGBM,
# XGBoost, CatBoost), and those that turn on the early stopping that ends it before the cap.
_ROUND_CAPS = {"n_estimators", "num_boost_round", "num_iterations", "num_rounds", "nrounds", "max_iter", "iterations"}
_STOPS_EARLY = {"early_stopping_rounds", "early_stopping_round", "n_iter_no_change", "od_wait"}


def _named_values(node: ast.AST) -> Iterator[tuple[str, ast.expr]]:
    """Every ``name=value`` of a call and ``"name": value`` of a dict literal in ``node``."""
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            yield from ((k.arg, k.value) for k in n.keywords if k.arg is not None)
        elif isinstance(n, ast.Dict):
            for key, value in zip(n.keys, n.values, strict=True):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    yield key.value, value


def _stops_early(node: ast.AST, assigned: dict[str, ast.expr]) -> int | None:
    """The line of the early stopping ``node`` turns on (``early_stopping_rounds=50``,
    ``early_stopping=True``, ``lgb.early_stopping(50)`` in its arguments), or None. A name is read
    as what the cell assigned to it (``es = True`` ... ``early_stopping=es``; ``rounds = None``)."""
    for name, given in _named_values(node):
        value = assigned.get(given.id, given) if isinstance(given, ast.Name) else given
        off = isinstance(value, ast.Constant) and value.value in (None, 0, False)
        if (name in _STOPS_EARLY and not off) or (
            name == "early_stopping" and isinstance(value, ast.Constant) and value.value is True
        ):
            return given.lineno
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and _callee(n) in ("early_stopping", "EarlyStopping"):
            return n.lineno
    return None


def cap_beside_early_stopping(
    tree: ast.Module, tuned: set[str], notebook: dict[str, Any] | None = None
) -> tuple[str, int, int] | None:
    """A tuned variable that caps the rounds (``n_estimators=n_est``, ``"num_boost_round": rounds``)
    of a model whose training stops early: in the same call (``XGBClassifier(n_estimators=n,
    early_stopping_rounds=50)``, ``lgb.train(..., num_boost_round=n, callbacks=[lgb.early_stopping(50)])``),
    in the dict of parameters given with it, or in a call on the model it made (``m =
    LGBMClassifier(n_estimators=n)`` then ``m.fit(..., callbacks=[lgb.early_stopping(50)])``): (its
    name, the cap's line, the early stopping's line), or None. Early stopping ends most trials before
    the cap, so the cap's value changes nothing there. Early stopping of another model is not it."""
    assigned: dict[str, ast.expr] = {}  # m = Model(...), params = {...}, cb = [lgb.early_stopping(50)], es = True
    calls_on: defaultdict[str, list[ast.Call]] = defaultdict(list)  # m -> m.fit(...), m.set_params(...)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned[node.targets[0].id] = node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
        ):
            calls_on[node.func.value.id].append(node)
    name_of = {id(value): name for name, value in assigned.items()}
    fixed: dict[str, ast.expr] = {  # a notebook's ES = True, as a constant (found retesting)
        name: ast.Constant(value)
        for name, value in (notebook or {}).items()
        if value is None or isinstance(value, (bool, int, float))
    }
    fixed.update({name: value for name, value in assigned.items() if name not in tuned})  # (a tuned es = True varies)

    def with_what_it_is_given(call: ast.Call) -> list[ast.AST]:
        given = [*call.args, *(k.value for k in call.keywords)]
        return [call, *(assigned[g.id] for g in given if isinstance(g, ast.Name) and g.id in assigned)]

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        holders = with_what_it_is_given(node)  # and the calls on the model it made (m.fit(...)), with theirs
        target = name_of.get(id(node))
        for call in calls_on.get(target, ()) if target is not None else ():
            holders += with_what_it_is_given(call)
        caps = [
            (r, value.lineno)
            for holder in holders
            for name, value in _named_values(holder)
            if name in _ROUND_CAPS
            for r in sorted({n.id for n in ast.walk(value) if isinstance(n, ast.Name)} & tuned)
        ]
        if not caps:
            continue
        stops = [line for holder in holders if (line := _stops_early(holder, fixed)) is not None]
        if stops:
            return caps[0][0], caps[0][1], min(stops)
    return None
