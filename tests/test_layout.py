"""The package's modules import one another without a loop, and the layers point one way.

Every ``import`` counts, including those inside functions (lazy imports are still
dependencies); only ``if TYPE_CHECKING:`` blocks are left out (they never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).parent.parent / "nbtune"

# Lower layers never import higher ones. Top-level modules of the package sit above all.
LAYERS = ["exceptions", "_compat", "_registry", "cell", "store", "run", "view"]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("importlib.import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            out.add(str(node.args[0].value))
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = {m for m in _imports(path) if m in modules and m != name and m != "nbtune"}
        graph[name] = deps
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


def test_no_import_loops():
    graph = _graph()
    assert "nbtune.run.worker" in graph and "nbtune.view.widgets" in graph
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = [*stack[stack.index(d) :], d]
                pytest.fail("import loop: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_layers_point_one_way():
    bad = []
    for m, deps in _graph().items():
        lm = _layer(m)
        if lm is None:
            continue
        for d in deps:
            ld = _layer(d)
            if ld is None or ld > lm:
                bad.append(f"{m} imports {d}")
    assert not bad, bad


def test_the_checker_sees_a_loop(tmp_path):
    """The graph builder finds function-level imports and skips TYPE_CHECKING ones."""
    p = tmp_path / "m.py"
    p.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import nbtune.view.result\n"
        "def f():\n    from nbtune.run.worker import Job\n"
    )
    assert _imports(p) == {"typing", "typing.TYPE_CHECKING", "nbtune.run.worker", "nbtune.run.worker.Job"}


def test_import_nbtune_is_light():
    """``import nbtune`` and ``%load_ext nbtune`` load no heavy library."""
    code = (
        "import sys, nbtune, nbtune._magics, nbtune._config\n"
        "heavy = [m for m in ('optuna', 'pandas', 'matplotlib', 'ipywidgets', 'joblib', 'numpy') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


PRIVATE = [
    "._trial_id",
    "._storage",
    "._study_id",
    "._thread_local",
    "._stop_flag",
    "_pop_waiting_trial_id",
    "_get_bracket_id",
    "_tell_with_warning",
    "completed_rung_",
    "_AsyncIORunner",
    "._get_trials",
]


def test_private_api_only_in_compat():
    """Optuna's and IPython's private API is used in nbtune/_compat.py only."""
    uses = [
        f"{p.relative_to(PKG.parent)}: {name}"
        for p in PKG.rglob("*.py")
        if p.name != "_compat.py"
        for name in PRIVATE
        if name in p.read_text()
    ]
    assert not uses, uses
    compat = (PKG / "_compat.py").read_text()
    assert all(name in compat for name in PRIVATE)
