from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


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
