"""What produced a study: the cell's code, the notebook it came from, the data it read.

A study remembers these fingerprints. When the same cell is run again with other code (a
changed model), in another notebook (two notebooks in one folder tuning the same names) or
on other data (an outer cross-validation loop calling ``nbtune.tune`` once per fold), the
stored trials belong to something else: nbtune starts a new version and says what changed,
instead of showing the old results as the new ones.

* **code**: the cell's syntax tree, so comments and whitespace don't count (nor the default
  values of tuned variables, which only set the baseline trial).
* **notebook**: the notebook's path, when the kernel knows it (Jupyter Server, VS Code).
* **data**: one hash per notebook variable the cell reads, by the C pickler with the order of
  dicts and sets made the same in every process (:func:`data_hash`; 10-25x faster than
  ``joblib.hash``, which nbtune used until 2026-12-01, on lists of dicts, strings or token lists;
  about 0.15 s per 100 MB array), and pandas' vectorised row hashes for DataFrames and Series
  (0.11 s per 100 MB frame, against 1.4 s through pickling).
  Functions and classes defined in the notebook are hashed by their code (not by the file name
  and line numbers the kernel gives a cell, which change with every restart), and the notebook
  variables they read count as read by the cell. A value that
  cannot be hashed is recorded by its type only, a weaker fingerprint the message names.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import copy
import functools
import hashlib
import inspect
import os
import pickle
import sys
import types
from collections.abc import Callable
from typing import Any

from nbtune import _compat
from nbtune.cell import rng
from nbtune.cell.annotations import CellSpec
from nbtune.cell.reads import called_name, notebook_inputs

__all__ = [
    "cell_identity",
    "library_versions",
    "describe_difference",
    "describe_space_change",
    "data_hash",
    "imported_code",
    "user_modules_loaded",
    "settings_set_from_outside",
    "users_file",
    "legacy_fingerprints",
    "fingerprinted_apart",
    "made_by_joblib",
    "without_output",
    "notebook_path",
    "same_data",
    "PICKLED",
    "JOBLIB",
    "value_fingerprint",
    "weakly_known",
    "WEAK",
]

WEAK = "type:"  # prefix of a fingerprint that only records the value's type
# the fingerprint of a name the cell reads that the notebook did not define when the study ran: its
# trials failed with a NameError, and defining it is a change of the data (a new version), not a
# resume that keeps those failures and counts them toward -n (found trying nbtune as a new user)
UNDEFINED = "undefined"


def _digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:16]


class _Without(ast.NodeTransformer):
    """The tree without the statements at ``positions`` ((line, column), as ``sealed_lines`` gives them)."""

    def __init__(self, positions: set[tuple[int, int]]) -> None:
        self.positions = positions

    def visit(self, node: ast.AST) -> Any:
        if isinstance(node, ast.stmt) and (node.lineno, node.col_offset) in self.positions:
            return None
        return super().visit(node)


def _search_tree(spec: CellSpec, sealed: set[tuple[int, int]]) -> ast.Module:
    """A copy of the cell's tree without the lines sealed with the holdout (the spec's is shared)."""
    assert spec.tree is not None
    tree = copy.deepcopy(spec.tree)
    return _Without(sealed).visit(tree) if sealed else tree


# What a cell shows without computing: print(...) and display(...) of names, attributes, f-strings and
# these calls (loss.item(), len(X), round(v, 3)); one that calls anything else may change what it computes
_SHOWS = frozenset({"print", "display", "pprint"})
_PURE_CALLS = frozenset(
    {"len", "round", "str", "repr", "float", "int", "abs", "min", "max", "sum", "format", "type", "sorted", "bool"}
    | {"item", "tolist", "mean", "std", "numpy", "cpu", "detach", "get_last_lr", "keys", "values", "items"}
)


class _WithoutOutput(ast.NodeTransformer):
    """The tree without the statements that only show something (``print(f"epoch {epoch}: {acc:.3f}")``)."""

    def visit(self, node: ast.AST) -> Any:
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id in _SHOWS
            and all(
                called_name(c) in _PURE_CALLS
                for c in ast.walk(node.value)
                if isinstance(c, ast.Call) and c is not node.value
            )
        ):
            return None
        return super().visit(node)


def without_output(tree: ast.Module) -> ast.Module:
    """A copy of ``tree`` without the statements that only show something (:class:`_WithoutOutput`)."""
    out: ast.Module = _WithoutOutput().visit(copy.deepcopy(tree))
    return out


def code_fingerprint(
    spec: CellSpec,
    sealed: set[tuple[int, int]] = frozenset(),  # type: ignore[assignment]
    output: bool = True,
) -> str:
    """The cell's code without comments, whitespace or the tuned variables' default values; and
    without the statements at ``sealed``, the lines sealed with the holdout, which no trial runs.
    ``output=False``: without the statements that only show something (:class:`_WithoutOutput`)."""
    tree = _search_tree(spec, sealed)
    if not output:
        tree = _WithoutOutput().visit(tree)  # (a copy already)
    tuned = {p.name for p in spec.params}
    for stmt in tree.body:
        target = (
            stmt.targets[0]
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            else getattr(stmt, "target", None)
        )
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(target, ast.Name) and target.id in tuned:
            stmt.value = ast.Constant("<tuned>")
    dump = ast.dump(tree)  # no line numbers: moving code around is no change
    # The folds a trial's metric is the mean over live in a comment: folds(3) -> folds(5), or the
    # comment dropped, is another metric (a re-run resumed the old study, mixing the two)
    folds = [(role, v.name, v.k) for role, v in (("folds", spec.folds), ("outer", spec.outer)) if v is not None]
    return _digest((dump + repr(folds) if folds else dump).encode())


def _code_bytes(code: types.CodeType) -> bytes:
    """Bytecode, names, constants and nested functions' code; not where the code was written.

    A function defined in a notebook cell has a file name with the kernel's process id in it
    (``/tmp/ipykernel_4242/123.py``), a new one after every restart, and its line numbers move
    when a line is added above it: neither changes what it computes. Nor is it ``marshal``'s
    bytes, which depend on which of the code's strings are shared objects: cloudpickle, loading
    a checkpoint of a notebook class's instance, rebuilds the class's methods with equal code that
    marshals differently.
    """
    return repr(_code_key(code)).encode()


def _code_key(code: types.CodeType) -> tuple[Any, ...]:
    return (
        code.co_code,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
        code.co_name,
        getattr(code, "co_exceptiontable", b""),
        tuple(_const_key(c) for c in code.co_consts),
    )


def _unwrapped(f: types.FunctionType) -> types.FunctionType:
    """The function a decorator wrapped (``functools.wraps`` leaves it as ``__wrapped__``), else ``f``."""
    inner = inspect.unwrap(f)
    return inner if isinstance(inner, types.FunctionType) else f


def _const_key(value: Any) -> Any:
    """A constant of compiled code, in a form whose ``repr`` does not depend on the process (a
    frozenset's order follows its strings' hashes, which are salted per process)."""
    if isinstance(value, types.CodeType):
        return _code_key(value)
    if isinstance(value, tuple):
        return tuple(_const_key(v) for v in value)
    if isinstance(value, frozenset):
        return ("frozenset", sorted(repr(_const_key(v)) for v in value))
    return value


def value_fingerprint(value: Any, pickled: bool = True) -> str:
    """A hash of one notebook value: its data, or the code of a function or class.

    ``pickled``: data by :func:`data_hash`; False: by ``joblib.hash`` alone, as every value was
    before 2026-12-01 (and still is inside a function's defaults, a partial's arguments and a
    class's settings, whose fingerprints are digests of their parts' and would otherwise change).
    """
    try:
        if not isinstance(value, (type, types.FunctionType)) and isinstance(
            getattr(value, "__wrapped__", None), types.FunctionType
        ):
            value = value.__wrapped__  # '@functools.lru_cache' def f: f's code (its C wrapper does not pickle)
        if isinstance(value, types.FunctionType):
            value = _unwrapped(value)  # '@torch.no_grad()' def evaluate: evaluate's code, not the decorator's
            # default values by their own fingerprints: a repr can hold an address ("at 0x7f..."), new per kernel
            defaults = [*(value.__defaults__ or ()), *sorted((value.__kwdefaults__ or {}).items())]
            return "code:" + _digest(
                _code_bytes(value.__code__) + repr([value_fingerprint(d, False) for d in defaults]).encode()
            )
        if isinstance(value, functools.partial):  # partial(score, X_val): its function and arguments
            parts = [value.func, *value.args, *sorted(value.keywords.items())]
            return "partial:" + _digest(repr([value_fingerprint(p, False) for p in parts]).encode())
        if isinstance(value, type) and value.__module__ == "__main__":
            return _class_fingerprint(value)
        if isinstance(value, types.ModuleType):
            return "module:" + value.__name__
        if rng.is_generator(value):
            # A random generator's state moves on every time a trial draws from it: its type is what it is.
            return f"rng:{type(value).__module__}.{type(value).__qualname__}"

        if type(value).__module__.startswith("xgboost") and type(value).__name__ in ("DMatrix", "QuantileDMatrix"):
            # a handle to XGBoost's C matrix, which does not pickle: its data and labels
            with contextlib.suppress(Exception):
                get = value.get_data
                return "xgboost:" + _compat.content_hash(
                    (value.num_row(), value.num_col(), value.get_label(), value.get_weight(), get())
                )
        if type(value).__module__.startswith("scipy.sparse") and hasattr(value, "tocsr"):
            # by its content: scipy caches facts about it in its __dict__ as it is read
            # ('_has_sorted_indices' after a fit), which changed its pickle and read as data changed in
            # place (found trying nbtune as a new user)
            with contextlib.suppress(Exception):
                m = value.tocsr(copy=True)
                m.sum_duplicates()  # (sorts its indices: a fit that sorts them in place changes no value)
                return "sparse:" + _compat.content_hash(
                    (type(value).__name__, m.shape, m.dtype.str, m.indptr, m.indices, m.data)
                )
        if type(value).__module__.startswith("pandas") and type(value).__name__ in ("DataFrame", "Series"):
            with contextlib.suppress(Exception):  # e.g. lists in an object column: pickled below
                return "pandas:" + _pandas_hash(value)
        return data_hash(value) if pickled else _compat.content_hash(value)
    except Exception:  # unpicklable (a lock, an open file, a GPU handle): its type is all we can say
        return f"{WEAK}{type(value).__module__}.{type(value).__qualname__}"


def _class_fingerprint(value: type) -> str:
    """A notebook class by its methods' code and its settings (a Kaggle-style ``class CFG: lr = 1e-3``)."""
    # a method a library wrapped (scikit-learn's TransformerMixin wraps transform) by its own code
    methods = sorted((k, _unwrapped(v)) for k, v in vars(value).items() if isinstance(v, types.FunctionType))
    parts = [k.encode() + _code_bytes(v.__code__) for k, v in methods]
    settings = sorted(
        (k, v)
        for k, v in vars(value).items()
        if not k.startswith("__") and not isinstance(v, (types.FunctionType, staticmethod, classmethod, property))
    )
    # a nested settings class ('class CFG: class model: hidden = 8') by its own fingerprint
    parts += [k.encode() + (value_fingerprint(v, False) if v is not value else "self").encode() for k, v in settings]
    return "code:" + _digest(value.__qualname__.encode() + b"".join(parts))


PICKLED = "pickle:"  # prefix of a fingerprint made by _pickled_hash (before 2026-12-01: joblib.hash, no prefix)
JOBLIB = "joblib:"  # and by joblib.hash, for what _pickled_hash cannot pickle (since 2026-12-01)
_PLAIN = frozenset({int, float, str, bytes, bool, type(None), complex, tuple, bytearray})
_SHARED = frozenset({dict, list, set, frozenset, collections.defaultdict})
_NAMED = (type, types.FunctionType, types.BuiltinFunctionType)


class _Digest:
    """A file that hashes what is written to it."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)

    def write(self, data: Any) -> None:
        self.md5.update(data)


class _Pickler(pickle.Pickler):
    """The C pickler, made to pickle a value the same way in every process: what ``joblib.hash``
    does, at its speed (a list of 1M dicts: 3.3 s against 32 s; 200k lists of ints 1.3 s against
    15 s: ``benchmarks/bench_fingerprint.py``).

    Its ``persistent_id``, called for every object, writes in their place: a dict's items sorted
    (equal dicts built in another order, from a set of strings, are the same data), a set's
    elements sorted (their order follows their strings' hashes, which are salted per process), an
    array or tensor by its dtype, shape and a digest of its bytes, a random generator by its type
    (its state moves at every search), and a class or function by its module and name. ``fast``
    mode keeps no memo, so a value is pickled by what it holds, not by which objects it shares
    (``['aa', 'aa']`` with one string or two), but for containers of more than 16 items and arrays,
    written once and then referred to, as joblib.hash's memo does. What it cannot pickle so
    (unorderable keys, a cycle through small containers, a lock) raises, and ``joblib.hash`` hashes it.
    """

    def __init__(self, file: _Digest) -> None:
        super().__init__(file, protocol=4)
        self.fast = True
        self._numpy: Any = sys.modules.get("numpy")
        self._torch: Any = sys.modules.get("torch")
        self._seen: dict[int, int] = {}  # id of a container or array -> the order it was first met in
        self._held: list[Any] = []  # (which stay alive, so that no other object takes their id)

    def persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind in _PLAIN:
            return None
        if (kind in _SHARED and len(obj) > 16) or (self._numpy is not None and kind is self._numpy.ndarray):
            # met again (2,000 records sharing one vocabulary dict): written as a reference, as
            # joblib.hash's memo writes it, not pickled and sorted once per record (and a cycle ends;
            # not small ones: a million 4-key records are cheaper written out than looked up)
            again = self._seen.get(id(obj))
            if again is not None:
                return ("again", again)
            self._seen[id(obj)] = len(self._seen)
            self._held.append(obj)
        # (as tuples: a list made here is no container of the value's to refer to again)
        if kind is dict:
            return ("dict", tuple(sorted(obj.items()))) if len(obj) > 1 else None
        if kind is collections.defaultdict:  # (pickled as its items in the order they were added)
            return ("defaultdict", obj.default_factory, tuple(sorted(obj.items())))
        if kind is set or kind is frozenset:
            return (kind.__name__, tuple(sorted(obj)))
        if isinstance(obj, _NAMED):
            return ("named", getattr(obj, "__module__", None), getattr(obj, "__qualname__", None))
        np, torch = self._numpy, self._torch
        if np is not None and kind is np.ndarray and not obj.dtype.hasobject:
            return ("ndarray", str(obj.dtype), obj.shape, _bytes_digest(np.ascontiguousarray(obj)))
        if torch is not None and isinstance(obj, torch.Tensor):
            data = obj.detach().cpu()
            if data.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
                data = data.float()
            return ("torch.Tensor", str(obj.dtype), tuple(obj.shape), _bytes_digest(data.contiguous().numpy()))
        if rng.is_generator(obj):
            return ("random generator", kind.__module__, kind.__qualname__)
        return None


def _bytes_digest(array: Any) -> str:
    return hashlib.md5(array.data.cast("B") if array.size else b"", usedforsecurity=False).hexdigest()


def _pickled_hash(value: Any) -> str | None:
    """A hash of ``value`` by :class:`_Pickler` (None: it cannot pickle it so)."""
    import gc

    digest = _Digest()
    collecting = gc.isenabled()
    gc.disable()  # (the sorted copies it makes are garbage at once: collections would scan the value again and again)
    try:
        _Pickler(digest).dump(value)
    except Exception:  # unorderable keys, a value that does not pickle
        return None
    finally:
        if collecting:
            gc.enable()
    return PICKLED + digest.md5.hexdigest()


def data_hash(value: Any) -> str:
    """The fingerprint of a notebook value's data: :func:`_pickled_hash`, or ``joblib.hash``
    (:func:`nbtune._compat.content_hash`) for what it cannot pickle so (marked: a value that goes
    from one kind to the other, a dict that gains a key of another type, changed)."""
    return _pickled_hash(value) or JOBLIB + _compat.content_hash(value)


def _pandas_hash(value: Any) -> str:
    """pandas' own vectorised row hashes (about 12x faster than pickling a large frame)."""
    import joblib
    import pandas as pd

    columns = list(map(str, value.columns)) if hasattr(value, "columns") else [str(value.name)]
    dtypes = list(map(str, value.dtypes)) if hasattr(value, "columns") else [str(value.dtype)]
    return joblib.hash((columns, dtypes, pd.util.hash_pandas_object(value, index=True).to_numpy())) or ""


def notebook_path(user_ns: dict[str, Any] | None) -> str | None:
    """The notebook the kernel runs, when it knows (the same sources as the store's location)."""
    ns = user_ns or {}
    # (papermill's --inject-paths parameter too: a kernel nbconvert or papermill starts knows no notebook)
    for candidate in (
        ns.get("__vsc_ipynb_file__"),
        os.environ.get("JPY_SESSION_NAME"),
        ns.get("__session__"),
        ns.get("PAPERMILL_INPUT_PATH"),
    ):
        if isinstance(candidate, str) and candidate.endswith(".ipynb"):
            return candidate
    return None


def cell_identity(
    spec: CellSpec,
    globals_read: dict[str, Any],
    user_ns: dict[str, Any] | None,
    sealed: set[tuple[int, int]] = frozenset(),  # type: ignore[assignment]
) -> dict[str, Any]:
    """The fingerprints a study records (JSON-able): of the globals the cell is given, those its
    results depend on (not the variables it binds before reading them, which the notebook holds
    after a plain run of the cell or ``--apply``).

    ``sealed``: the positions of the lines sealed with the holdout. No trial of the search runs
    them, so they and the data only they read are not the search's: an edit of the final refit, or
    a corrected test set, keeps the search, and only the checks that ran them run again. They are
    fingerprinted apart, as ``"sealed"``; ``"code_with_sealed"`` is the code with them, as studies
    recorded before 2026-11-30 fingerprinted it.
    """
    assert spec.tree is not None
    search_tree = _search_tree(spec, sealed)
    inputs = notebook_inputs(search_tree)
    read = {name: v for name, v in globals_read.items() if name in inputs}
    read.update(read_by_notebook_code(read))
    import builtins

    missing = {
        n
        for n in inputs
        if n not in read and n not in (user_ns or {}) and not hasattr(builtins, n) and n not in _SHELLS_OWN
    }
    data = {name: value_fingerprint(v) for name, v in read.items()} | dict.fromkeys(missing, UNDEFINED)
    out = {
        "code": code_fingerprint(spec, sealed),
        "code_with_sealed": code_fingerprint(spec),  # --holdout given or dropped is no edit of the search
        # an edit of what the cell prints is no edit of what it computes (since 2026-12-01: a study recorded
        # before compares "code"; an f-string's edit started the whole search again, found trying nbtune)
        "code_shown": code_fingerprint(spec, sealed, output=False),
        "code_shown_with_sealed": code_fingerprint(spec, output=False),
        "notebook": notebook_path(user_ns),
        "data": dict(sorted(data.items())),
        "imports": imported_code(read),
        # the functions and classes it reads from those modules: an edit there is said once, as the module's
        "imported": {n: m.__name__ for n, v in read.items() if _is_code(v) and _is_users(m := _home(v))},
    }
    if sealed:
        only_sealed = {n: v for n, v in globals_read.items() if n in notebook_inputs(spec.tree) - inputs}
        only_sealed.update(read_by_notebook_code(only_sealed))
        statements = [n for n in ast.walk(spec.tree) if isinstance(n, ast.stmt) and (n.lineno, n.col_offset) in sealed]
        # (by joblib.hash, as before 2026-12-01: a digest of fingerprints that otherwise changed with them)
        data = {n: value_fingerprint(v, False) for n, v in sorted(only_sealed.items()) if n not in read}
        out["sealed"] = _digest(repr(([ast.dump(n) for n in statements], data)).encode())
    return out


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    """Where Python's own modules and installed packages live (not a project's ``src/``, nor a
    package installed with ``pip install -e``, whose files stay in the project)."""
    import site
    import sysconfig

    dirs = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs |= {*site.getsitepackages(), site.getusersitepackages()}
    nbtune_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs | {nbtune_dir} if d)


def _is_users(module: Any) -> bool:
    """A module of the user's own code: a ``.py`` file outside the libraries' folders (a project's
    ``src/mlproj/models.py``, a ``utils.py`` beside the notebook, an editable install)."""
    file = getattr(module, "__file__", None)
    if not isinstance(module, types.ModuleType) or not isinstance(file, str):
        return False
    return module.__name__ != "__main__" and users_file(file)


@functools.lru_cache(maxsize=8192)
def users_file(file: str) -> bool:
    """A ``.py`` file of the user's own: outside Python's and the installed packages' folders."""
    return file.endswith(".py") and not os.path.realpath(file).startswith(_library_dirs())


def _home(value: Any) -> Any:
    """The module ``value`` is, or was defined in (a function's, a class's, an instance's class's)."""
    if isinstance(value, types.ModuleType):
        return value
    if isinstance(value, functools.partial):
        value = value.func
    owner = value if isinstance(value, (type, types.FunctionType)) else type(value)
    name = getattr(owner, "__module__", None)
    return sys.modules.get(name) if isinstance(name, str) else None


def _module_fingerprint(module: types.ModuleType) -> str:
    """A user module's code: its functions' and its classes' methods' code as the kernel has it
    loaded (what the trials run, whether or not the file was edited since, and what ``%autoreload``
    brings in), and the rest as its file has it (:func:`_statements`: ``N_CLASSES = 3``, a class's
    attributes, default values, imports). Not what its code holds at run time (a cache it fills, a
    counter, a timestamp made at import), nor docstrings and comments."""
    parts = [_statements(module)]
    for name, value in sorted(vars(module).items()):
        code = _own_code(value)
        if getattr(code, "__module__", None) != module.__name__ or name.startswith("__"):
            continue
        if isinstance(code, type):
            parts += _methods(code, name)
        elif isinstance(code, types.FunctionType):
            parts.append(f"{name}={_digest(_code_bytes(_without_docstring(code)))}")
    return _digest("\n".join(parts).encode())


def _methods(cls: type, name: str, depth: int = 0) -> list[str]:
    """The code of a class's methods, static and class methods, properties, and those of the classes
    defined in it (``class Config: class Model: def build(self): ...``)."""
    out = []
    for k, member in sorted(vars(cls).items()):
        if isinstance(member, type) and member.__qualname__ == f"{cls.__qualname__}.{k}" and depth < 5:
            out += _methods(member, f"{name}.{k}", depth + 1)
            continue
        for f in (getattr(member, "__func__", member), getattr(member, "fget", None), getattr(member, "fset", None)):
            if isinstance(f, types.FunctionType):
                out.append(f"{name}.{k}={_digest(_code_bytes(_without_docstring(f)))}")
    return out


def _without_docstring(f: types.FunctionType) -> types.CodeType:
    f = _unwrapped(f)
    code = f.__code__
    if f.__doc__ is not None and code.co_consts[:1] == (f.__doc__,):
        return code.replace(co_consts=(None, *code.co_consts[1:]))
    return code


# a file's content's md5 -> (its digest, its settings as written: name -> literal value)
_STATEMENTS: dict[bytes, tuple[str, dict[str, Any]]] = {}
_SCALARS = (int, float, str, bytes, bool, complex, type(None))


def _statements(module: types.ModuleType) -> str:
    """A digest of a module's file without its functions' bodies (their code counts as loaded),
    docstrings, comments and line numbers: its settings, its classes' attributes, its functions'
    signatures with their default values, its imports, as written; and the settings the notebook
    set on it since (:func:`set_from_outside`)."""
    digest, written = _read_module(module)
    changed = _differing(module, written)
    return digest + (repr(sorted((k, repr(v)) for k, v in changed.items())) if changed else "")


def _read_module(module: types.ModuleType) -> tuple[str, dict[str, Any]]:
    try:
        with open(str(module.__file__), "rb") as f:
            source = f.read()
    except OSError:
        return "?", {}
    key = hashlib.md5(source, usedforsecurity=False).digest()
    if key not in _STATEMENTS:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            _STATEMENTS[key] = ("?", {})
        else:
            digest = _digest(ast.dump(ast.Module(body=_outline(tree.body), type_ignores=[])).encode())
            _STATEMENTS[key] = (digest, _settings_as_written(tree))
    return _STATEMENTS[key]


def _settings_as_written(tree: ast.Module) -> dict[str, Any]:
    """A module's top-level ``NAME = <number or string>``, but for names its functions assign
    (``global N_CALLS``: a counter, not a setting)."""
    kept = {n for node in ast.walk(tree) if isinstance(node, ast.Global) for n in node.names}
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                value = ast.literal_eval(node.value)
                if isinstance(value, _SCALARS) and node.targets[0].id not in kept:
                    out[node.targets[0].id] = value
    return out


def set_from_outside(module: types.ModuleType) -> dict[str, Any]:
    """The settings of a user's module that differ from what its file says (``reg.SCALE = 3.0`` run
    in the notebook): they count in its fingerprint (a study resumed silently over them), and worker
    processes, which import the module from its file, are given them (found retesting)."""
    return _differing(module, _read_module(module)[1])


def _differing(module: types.ModuleType, written: dict[str, Any]) -> dict[str, Any]:
    now = vars(module)
    return {
        n: now[n]
        for n, v in written.items()
        if n in now and isinstance(now[n], _SCALARS) and (type(now[n]) is not type(v) or now[n] != v)
    }


def _outline(body: list[ast.stmt]) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for i, node in enumerate(body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            node = copy.copy(node)
            node.body = _outline(node.body) if isinstance(node, ast.ClassDef) else []
        out.append(node)
    return out


def _own_code(value: Any) -> Any:
    """A function under a decorator (``functools.lru_cache``, ``torch.no_grad()``) as its own code."""
    if isinstance(value, types.FunctionType):
        return _unwrapped(value)
    if isinstance(value, type):
        return value
    try:
        wrapped = value.__wrapped__
    except Exception:  # (no such attribute, or an object whose attribute lookup raises)
        return value
    return wrapped if isinstance(wrapped, types.FunctionType) else value


def _is_code(value: Any) -> bool:
    return isinstance(value, (type, types.FunctionType, functools.partial))


def imported_code(values: dict[str, Any]) -> dict[str, str]:
    """The fingerprints (:func:`_module_fingerprint`) of the user's own modules (:func:`_is_users`)
    that ``values`` come from, and of those these modules use in turn: a cell that calls
    ``make_model`` from ``src/mlproj/models.py`` depends on that module's code, its helpers, its
    constants, and ``mlproj.data`` that it imports. An edit there (with ``%autoreload``, or after a
    restart) is a change of what produced the study, as an edit of the cell is (module -> fingerprint)."""
    found: dict[str, str] = {}
    todo = [_home(v) for v in values.values()]
    while todo:
        module = todo.pop()
        if module is None or module.__name__ in found or not _is_users(module):
            continue
        try:
            found[module.__name__] = _module_fingerprint(module)
        except Exception:  # (an object of the module's whose attributes raise): known by its name only
            found[module.__name__] = "?"
            continue
        todo += [_home(v) for n, v in vars(module).items() if not n.startswith("__")]
    return dict(sorted(found.items()))


def _users_modules_loaded() -> dict[str, types.ModuleType]:
    return {name: m for name, m in list(sys.modules.items()) if _is_users(m)}


def settings_set_from_outside() -> dict[str, dict[str, Any]]:
    """:func:`set_from_outside` of every user module loaded (module name -> settings)."""
    out = {}
    for name, module in _users_modules_loaded().items():
        with contextlib.suppress(Exception):
            changed = set_from_outside(module)
            if changed:
                out[name] = changed
    return out


def user_modules_loaded() -> dict[str, str]:
    """The fingerprints of every user module this process has loaded (:func:`imported_code`):
    worker processes that imported an older state of one are replaced."""
    return imported_code(_users_modules_loaded())


def module_code_here(name: str) -> str | None:
    """This process's :func:`_module_fingerprint` of the module ``name``, to compare with the
    kernel's in a worker process (None: not loaded here, or not from a ``.py`` file it can read)."""
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None)
    if not isinstance(module, types.ModuleType) or not isinstance(file, str) or not file.endswith(".py"):
        return None
    if not os.access(file, os.R_OK):
        return None
    return _module_fingerprint(module)


def read_by_notebook_code(values: dict[str, Any]) -> dict[str, Any]:
    """The notebook variables that the functions and classes defined in the notebook among
    ``values`` read as globals, and those that theirs read in turn: ``def evaluate(m): return
    m.score(X_val, y_val)`` makes a cell that calls it depend on ``X_val`` and ``y_val`` too."""
    found: dict[str, Any] = {}
    seen = set(values) | _SHELLS_OWN
    todo = list(values.values())
    while todo:
        for names, namespace in _globals_used(todo.pop()):
            for name in names:
                if name not in seen and name in namespace:
                    seen.add(name)
                    found[name] = namespace[name]
                    todo.append(namespace[name])
    return found


def functions_reading(
    values: dict[str, Any], user_ns: dict[str, Any], names: set[str]
) -> tuple[dict[str, types.FunctionType], set[str]]:
    """The notebook's functions the cell may call (among ``values``, and those their code calls in
    turn) that read one of ``names`` as a global, or call one that does: ``def make_opt(m): return
    SGD(m.parameters(), lr=lr)`` with ``lr`` tuned in the cell. Run as a plain cell, the cell's
    ``lr = ...`` is the notebook's, so they see it; a trial runs in a namespace of its own, where
    they would read the notebook's ``lr`` instead. As (name -> function, which of ``names`` they
    read). Only functions defined in the notebook (their globals are ``user_ns``): a decorator's
    wrapper (``@torch.no_grad()``) is a library's code and keeps its own."""

    def notebook_function(value: Any) -> bool:
        return isinstance(value, types.FunctionType) and value.__globals__ is user_ns

    reads: dict[str, set[str]] = {}
    todo = [n for n, v in values.items() if notebook_function(v)]
    while todo:
        name = todo.pop()
        if name not in reads:
            reads[name] = code_names((values[name] if name in values else user_ns[name]).__code__)
            todo += [n for n in reads[name] if n not in reads and n not in values and notebook_function(user_ns.get(n))]
    # and a function that sets a global ('global last_epoch'): in a plain run the cell reads what it set
    need = {n for n, r in reads.items() if r & names or sets_globals(values[n] if n in values else user_ns[n])}
    grown = True
    while grown:  # a function that calls one of them looks it up in its own globals: it goes too
        callers = {n for n, r in reads.items() if n not in need and r & need}
        need |= callers
        grown = bool(callers)
    return {n: values[n] if n in values else user_ns[n] for n in need}, {x for n in need for x in reads[n] & names}


def unreachable_readers(
    values: dict[str, Any], user_ns: dict[str, Any], names: set[str], rebound: dict[str, Any]
) -> list[tuple[str, str, list[str]]]:
    """Notebook functions that read one of ``names`` (variables the cell sets) as a global but that a
    trial cannot hand its namespace, being reached other than by their global name: under a
    library's decorator (``@torch.no_grad()``, ``@functools.lru_cache``), as a default argument, in a ``dict`` of functions,
    in a ``partial``, as a method of a notebook class. They read the notebook's value where a plain
    run of the cell gives them the cell's. As (the cell's global that holds it, the function's name,
    the names it reads)."""
    done = {id(f) for f in rebound.values()}
    found: list[tuple[str, str, list[str]]] = []

    def inner(value: Any, depth: int) -> list[Any]:
        if depth > 3:
            return []
        if isinstance(value, types.FunctionType):
            cells = [c.cell_contents for c in value.__closure__ or () if _filled(c)]
            return [*cells, *(value.__defaults__ or ()), *(value.__kwdefaults__ or {}).values()]
        if isinstance(value, functools.partial):
            return [value.func, *value.args, *value.keywords.values()]
        if not isinstance(value, type) and isinstance(getattr(value, "__wrapped__", None), types.FunctionType):
            return [value.__wrapped__]  # a C-level wrapper: functools.lru_cache, functools.cache
        if isinstance(value, dict) and len(value) <= 100:
            return list(value.values())
        if isinstance(value, (list, tuple)) and len(value) <= 100:
            return list(value)
        if isinstance(value, type) and value.__module__ == "__main__":
            return [getattr(m, "__func__", m) for m in vars(value).values()]
        if type(value).__module__ == "__main__" and not isinstance(value, type):
            return [type(value)]
        return []

    for holder, value in values.items():
        seen: set[int] = set()
        todo = [(v, 1) for v in inner(value, 0)]
        while todo:
            v, depth = todo.pop()
            if id(v) in seen:
                continue
            seen.add(id(v))
            if isinstance(v, types.FunctionType) and v.__globals__ is user_ns and id(v) not in done:
                read = sorted(_global_loads(v.__code__) & names)  # not attributes: 'self.lr' is no global
                if read:
                    found.append((holder, "a lambda" if v.__name__ == "<lambda>" else v.__qualname__, read))
            todo += [(w, depth + 1) for w in inner(v, depth)]
    return found


def _global_names(code: types.CodeType, ops: tuple[str, ...]) -> set[str]:
    """The globals a code object (and the code nested in it) uses with one of the opcodes ``ops``."""
    import dis

    out: set[str] = set()
    todo = [code]
    while todo:
        c = todo.pop()
        out |= {str(i.argval) for i in dis.get_instructions(c) if i.opname in ops}
        todo += [k for k in c.co_consts if isinstance(k, types.CodeType)]
    return out


def _global_loads(code: types.CodeType) -> set[str]:
    """The globals a code object (and the code nested in it) reads."""
    return _global_names(code, ("LOAD_GLOBAL", "LOAD_NAME"))


def _functions_reached(name: str, user_ns: dict[str, Any]) -> list[types.FunctionType]:
    """The notebook functions ``user_ns[name]`` is or holds (a dict, a list or a ``partial`` of
    them: ``scorers = {"test": lambda m: ...}``), and those their code calls in turn."""

    def functions(value: Any) -> list[types.FunctionType]:
        if isinstance(value, functools.partial):
            value = value.func
        if isinstance(value, dict) and len(value) <= 100:
            return [f for v in value.values() for f in functions(v) if not isinstance(v, (dict, list, tuple))]
        if isinstance(value, (list, tuple)) and len(value) <= 100:
            return [f for v in value for f in functions(v) if not isinstance(v, (dict, list, tuple))]
        return [value] if isinstance(value, types.FunctionType) and value.__globals__ is user_ns else []

    out: list[types.FunctionType] = []
    todo, seen = [name], set()
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        for f in functions(user_ns.get(n)):
            out.append(f)
            todo += _global_loads(f.__code__)
    return out


def globals_read_through(name: str, user_ns: dict[str, Any]) -> set[str]:
    """The globals the notebook functions ``user_ns[name]`` is or holds read, and those the
    notebook functions they call read in turn (empty when it holds none)."""
    return {g for f in _functions_reached(name, user_ns) for g in _global_loads(f.__code__)}


def trained_on_through(name: str, user_ns: dict[str, Any], calls: set[str]) -> set[str]:
    """The names those functions pass to one of ``calls`` (``fit``, ...) in their source: ``def
    refit(m): return clone(m).fit(np.vstack([X_train, X_val]), ...)`` trains on X_train and X_val.
    Empty for a function whose source cannot be read."""
    import textwrap

    out: set[str] = set()
    for f in _functions_reached(name, user_ns):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(f)))
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in calls:
                args = [*node.args, *(k.value for k in node.keywords)]
                out |= {x.id for a in args for x in ast.walk(a) if isinstance(x, ast.Name)}
    return out


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # a cell not yet bound
        return False
    return True


# What IPython puts in the notebook's namespace: no data of the cell's, and the shell itself does not hash
_SHELLS_OWN = {"get_ipython", "In", "Out", "exit", "quit", "_ih", "_oh", "_dh", "_", "__", "___", "_i", "_ii", "_iii"}


def _globals_used(value: Any) -> list[tuple[set[str], dict[str, Any]]]:
    """Of a notebook function or class: the names its code looks up, and the namespace it looks
    them up in (the notebook's). Nothing for anything else (a library's code is not the notebook's)."""
    if isinstance(value, types.FunctionType) and value.__module__ == "__main__":
        inner = _unwrapped(value)
        return [(code_names(inner.__code__), inner.__globals__)]
    if isinstance(value, functools.partial):
        return [u for part in (value.func, *value.args, *value.keywords.values()) for u in _globals_used(part)]
    if isinstance(value, type) and value.__module__ == "__main__":
        out = []
        for member in vars(value).values():
            fn = getattr(member, "__func__", member)  # staticmethod, classmethod
            for f in (fn, getattr(member, "fget", None), getattr(member, "fset", None)):  # property
                if isinstance(f, types.FunctionType):
                    f = _unwrapped(f)
                    out.append((code_names(f.__code__), f.__globals__))
        return out
    if type(value).__module__ == "__main__":  # an instance of a notebook class: its methods
        return _globals_used(type(value))
    return []


def sets_globals(f: types.FunctionType) -> set[str]:
    """The globals ``f``'s code (or code nested in it) assigns or deletes (``global x; x = ...``)."""
    return _global_names(f.__code__, ("STORE_GLOBAL", "DELETE_GLOBAL"))


def code_names(code: types.CodeType) -> set[str]:
    """The global (and attribute) names a code object and the code nested in it look up."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= code_names(const)
    return names


def _notebook_name(path: str) -> str:
    return os.path.basename(path.replace("\\", "/"))


def _args(args: list[Any]) -> tuple[Any, ...]:
    """A parameter's arguments as recorded, as the cell wrote them: JSON made a tuple choice's tuples lists."""
    return tuple(tuple(a) if isinstance(a, list) else a for a in args)


def describe_space_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two studies' search settings as recorded (``ATTR.SPACE``: the tuned
    parameters and their ranges, the guardrails, the schedule, the metric), in words."""
    o = {p[0]: p for p in old.get("params", [])}
    n = {p[0]: p for p in new.get("params", [])}
    changes = []
    for name in sorted(set(o) | set(n)):
        if name not in o:
            changes.append(f"{name} added")
        elif name not in n:
            changes.append(f"{name} removed")
        elif o[name] != n[name]:
            changes.append(f"{name} {o[name][1]}{_args(o[name][2])} -> {n[name][1]}{_args(n[name][2])}")
    if old.get("guardrails") != new.get("guardrails"):
        changes.append(f"guardrails {old.get('guardrails') or []} -> {new.get('guardrails') or []}")
    if old.get("schedule") != new.get("schedule"):
        never = "trials that never pause"  # stop-only, or no early stopping: no trial continues later
        changes.append(f"schedule {old.get('schedule') or never} -> {new.get('schedule') or never}")
    for key in ("metric", "direction"):  # --minimize val_f1, then --maximize val_f1 (found trying nbtune)
        if old.get(key) != new.get(key) and old.get(key) is not None:
            changes.append(f"{key} {old.get(key)} -> {new.get(key)}")
    return ", ".join(changes) or "settings changed"


def describe_difference(
    old: dict[str, Any] | None, new: dict[str, Any], legacy: Callable[[str], str | None] | None = None
) -> list[str]:
    """What differs between a stored study's identity and this cell's, in words (empty: the same).

    A study recorded before nbtune kept identities (``old`` None) matches anything; a
    notebook that either side does not know does not count, nor a variable the study recorded
    that the notebook no longer has (a cell that read it could not run without it; and studies
    recorded before 2026-11-30 also hold variables the cell binds before it reads them).

    ``legacy`` (:func:`legacy_fingerprints`) gives a variable's fingerprint as nbtune made it before
    2026-12-01, for a study recorded then; without it, such a variable is not compared.
    """
    if not old:
        return []
    out = []
    # The search's code: the same without the lines sealed with the holdout (an edit of those alone),
    # or the same with them (--holdout added or dropped; a study recorded before they were told apart)
    # ("code_shown": the same without what it only prints, recorded since 2026-12-01)
    code, with_sealed = (
        ("code_shown", "code_shown_with_sealed") if "code_shown" in old else ("code", "code_with_sealed")
    )
    if old.get(code) != new[code] and old.get(with_sealed, old.get(code)) != new.get(with_sealed):
        out.append("the cell's code changed")
    # By its file's name: the project folder moved or copied, store and all, is the same notebook
    # (the whole search ran again as a new version, "a.ipynb -> a.ipynb"; found trying nbtune as a new user)
    if old.get("notebook") and new["notebook"] and _notebook_name(old["notebook"]) != _notebook_name(new["notebook"]):
        out.append(f"another notebook ({_notebook_name(old['notebook'])} -> {_notebook_name(new['notebook'])})")
    # the user's own modules the cell's code comes from (recorded since 2026-12-01)
    old_code, new_code = old.get("imports") or {}, new.get("imports") or {}
    edited = sorted(m for m in new_code if m in old_code and old_code[m] != new_code[m])
    if edited:
        out.append(f"the code it imports changed: {', '.join(edited)}")
    old_data, new_data = old.get("data", {}), new["data"]
    in_place = old.get("in_place", {})  # what its own trials changed in place left behind
    # A variable only this identity records is no change by itself: the cell (or a notebook
    # function it calls) reads it now because its code changed, which is said above or in that
    # function's own fingerprint; or because what counts as read grew (studies recorded before
    # 2026-11-30 hold no variables that notebook functions read).
    said = {n for n, m in (new.get("imported") or {}).items() if m in edited}
    changed = sorted(
        n
        for n in new_data
        if n in old_data and n not in said and not _same_variable(n, old_data[n], new_data[n], in_place.get(n), legacy)
    )
    if changed:
        by_trials = [n for n in changed if n in in_place]
        defined = [n for n in changed if old_data[n] == UNDEFINED]
        out.append(
            "the notebook data it reads changed: "
            + ", ".join(changed)
            + (f" ({', '.join(by_trials)} also changed in place by the study's own trials)" if by_trials else "")
            + (f" ({', '.join(defined)} not defined when it ran: its trials failed)" if defined else "")
        )
    return out


def _same_variable(
    name: str, old: str, new: str, after_trials: str | None, legacy: Callable[[str], str | None] | None
) -> bool:
    """:func:`same_data`; where the study fingerprinted ``name`` before 2026-12-01 (by ``joblib.hash``,
    where this run's is :func:`data_hash`'s), in its terms: ``legacy``'s fingerprint of the value now."""
    if legacy is not None and new.startswith(PICKLED) and made_by_joblib(old):
        new = legacy(name) or new
    return same_data(old, new, after_trials)


def fingerprinted_apart(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The variables two identities hold fingerprints of that were made different ways (one by
    ``joblib.hash`` before 2026-12-01, the other by :func:`data_hash`), so not compared."""
    old_data, new_data = old.get("data") or {}, new.get("data") or {}
    return sorted(n for n in new_data if n in old_data and _made_two_ways(old_data[n], new_data[n]))


def _made_two_ways(a: str, b: str) -> bool:
    """One fingerprint made before 2026-12-01 (``joblib.hash``), the other pickled: not comparable."""
    return (a.startswith(PICKLED) and made_by_joblib(b)) or (b.startswith(PICKLED) and made_by_joblib(a))


def made_by_joblib(fingerprint: str) -> bool:
    """A fingerprint of data that ``joblib.hash`` made (all of them before 2026-12-01): no prefix."""
    return bool(fingerprint) and ":" not in fingerprint and fingerprint != UNDEFINED  # (since: JOBLIB)


def legacy_fingerprints(globals_read: dict[str, Any]) -> Callable[[str], str | None]:
    """A variable's fingerprint as nbtune made it before 2026-12-01 (its data by ``joblib.hash``),
    made when asked and once per name: a study recorded then is compared with the notebook's
    values now in its own terms (None: the cell does not read it)."""
    made: dict[str, str | None] = {}
    values: dict[str, Any] = {}

    def legacy(name: str) -> str | None:
        if name not in made:
            if not values:
                values.update(globals_read)
                values.update(read_by_notebook_code(globals_read))
            made[name] = value_fingerprint(values[name], False) if name in values else None
        return made[name]

    return legacy


def same_data(old: str, new: str, after_trials: str | None = None) -> bool:
    """Whether two fingerprints of a variable say it is the same: equal, or one of them only its
    type (it could not be hashed on that side: nothing to compare, nothing to claim), or one made
    before 2026-12-01 (``joblib.hash``, no prefix) against :func:`data_hash`'s pickled one (nothing
    to compare either: :func:`legacy_fingerprints` compares them), or the fingerprint the study's
    own trials left when they changed it in place."""
    return (
        old.removeprefix(JOBLIB) == new.removeprefix(JOBLIB)  # (joblib.hash's, before 2026-12-01 or since)
        or old.startswith(WEAK)
        or new.startswith(WEAK)
        or (after_trials is not None and after_trials.removeprefix(JOBLIB) == new.removeprefix(JOBLIB))
        or _made_two_ways(old, new)
    )


def weakly_known(identity: dict[str, Any]) -> list[str]:
    """The variables compared by their type only (they cannot be hashed)."""
    return [n for n, h in identity["data"].items() if str(h).startswith(WEAK)]


# import names whose distribution is named otherwise, for a package without __version__ (rare)
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "skimage": "scikit-image", "PIL": "pillow", "cv2": "opencv-python"}


def library_versions(globals_read: dict[str, Any], tree: ast.Module | None) -> dict[str, str]:
    """The versions a cell's results rest on: Python's, nbtune's and Optuna's, and those of the
    packages of the modules, functions, classes and objects it reads from the notebook or imports
    itself (``{"python": "3.11.2", "sklearn": "1.5.0", ...}``), read from the loaded modules'
    ``__version__`` (else the installed distribution's): nothing is imported to find them."""
    import importlib.metadata
    import platform
    import sys

    roots = {"nbtune", "optuna"}
    for value in globals_read.values():
        try:  # (a proxy's attribute lookup may raise anything: its type's module then)
            module = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        except Exception:
            module = None
        if not isinstance(module, str):
            module = type(value).__module__
        if isinstance(module, str):
            roots.add(module.partition(".")[0])
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Import):
            roots.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.partition(".")[0])
    roots -= {*sys.stdlib_module_names, "__main__", "builtins", ""}
    out = {"python": platform.python_version()}
    for root in sorted(roots, key=str.lower):
        try:
            version = getattr(sys.modules.get(root), "__version__", None)
        except Exception:  # a lazy module that fails to load its version
            version = None
        if not isinstance(version, str):
            try:
                version = importlib.metadata.version(_DISTRIBUTIONS.get(root, root))
            except (importlib.metadata.PackageNotFoundError, ValueError):
                continue  # the notebook's own module, or one not installed as a distribution
        out[root] = version
    return out
