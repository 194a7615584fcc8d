from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

_MYPY: dict[str, object] = {}  # the type check started with the session (test_typing reads it)


def pytest_collection_modifyitems(config, items):
    """mypy --strict takes about 40 s of one core: started as the session starts, niced, it runs
    beside the tests (which keep one core busy about 80 % of the time) instead of after them."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    if any(item.nodeid.endswith("test_typing.py::test_mypy_strict") for item in items) and importlib.util.find_spec(
        "mypy"
    ):
        _MYPY["proc"] = subprocess.Popen(
            [sys.executable, "-m", "mypy", "nbtune"],
            cwd=Path(__file__).parent.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=lambda: os.nice(10),
        )


@pytest.fixture(scope="session")
def _ip():
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    ip.run_line_magic("load_ext", "nbtune")
    return ip


@pytest.fixture
def ip(_ip, tmp_path, monkeypatch):
    """A real IPython shell with nbtune loaded, working in a fresh folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    before = set(_ip.user_ns)
    yield _ip
    for k in set(_ip.user_ns) - before:
        _ip.user_ns.pop(k, None)


def run(ip, line, cell):
    """Run a %%tune cell quietly and return its result."""
    return ip.run_cell_magic("tune", line, cell)


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for this test session (see tests/postgres.py), and the URL of an
    empty database on it. Skipped, saying why, where no server can be started."""
    from postgres import NoServer, postgres_server

    pytest.importorskip("psycopg", reason="the database store needs psycopg: pip install 'nbtune[postgres]'")
    try:
        with postgres_server() as url:
            yield url
    except NoServer as e:
        pytest.skip(str(e))
