"""The package type-checks with mypy --strict (configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def test_mypy_strict():
    pytest.importorskip("mypy")
    root = Path(__file__).parent.parent
    proc = subprocess.run([sys.executable, "-m", "mypy", "nbtune"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
