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


def _postgres_bin() -> str | None:
    import glob
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for this test session, reachable only through a Unix socket in a
    temp folder (no network port), and the URL of an empty database on it. initdb and pg_ctl
    refuse to run as root: as root they run as the 'postgres' user. Skipped, saying why, where
    no server can be started."""
    import getpass
    import shutil
    import subprocess

    pytest.importorskip("psycopg", reason="the database store needs psycopg: pip install 'nbtune[postgres]'")
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    import tempfile
    from pathlib import Path

    # not under pytest's temp folder: that one is private to this user, and the server may run as another
    base = Path(tempfile.mkdtemp(prefix="nbtune-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    prefix: list[str] = []
    user = getpass.getuser()
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("PostgreSQL cannot run as root and there is no runuser to run it as 'postgres'")
        prefix, user = ["runuser", "-u", "postgres", "--"], "postgres"
        shutil.chown(base, user="postgres")
        shutil.chown(sock, user="postgres")
        os.chmod(base, 0o755)

    def pg(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        pg(f"{bindir}/initdb", "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8")
        pg(
            f"{bindir}/pg_ctl", "-D", str(data), "-w", "-l", str(base / "log"),
            "-o", f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off",
            "start",
        )  # fmt: skip
    except (subprocess.CalledProcessError, OSError) as e:
        err = getattr(e, "stderr", b"") or b""
        pytest.skip(f"could not start PostgreSQL: {err.decode(errors='replace').strip()[-300:] or e}")
    try:
        pg(f"{bindir}/createdb", "-h", str(sock), "-p", str(port), "-U", user, "nbtune_test")
        yield f"postgresql://{user}@/nbtune_test?host={sock}&port={port}"
    finally:
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", str(data), "-m", "fast", "stop"], capture_output=True, timeout=60
        )
        shutil.rmtree(base, ignore_errors=True)
