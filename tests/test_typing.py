"""The package type-checks with mypy --strict (configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import _MYPY


@pytest.mark.timeout(600)  # (it may still be checking: it started with the session)
def test_mypy_strict():
    pytest.importorskip("mypy")
    proc = _MYPY.get("proc")
    if isinstance(proc, subprocess.Popen):  # started with the session (conftest)
        out, _ = proc.communicate()
        assert proc.returncode == 0, out
        return
    root = Path(__file__).parent.parent
    run = subprocess.run([sys.executable, "-m", "mypy", "nbtune"], cwd=root, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
