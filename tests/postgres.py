"""Start a real PostgreSQL server in a temp folder, for the tests and the database benchmark.

It listens on a Unix socket in that folder only (no network port). initdb and pg_ctl refuse to
run as root: as root they run as the 'postgres' user (Debian's package creates it).
"""

from __future__ import annotations

import contextlib
import getpass
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["NoServer", "postgres_server"]


class NoServer(Exception):
    """No PostgreSQL server can be started here; the message says why."""


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


@contextlib.contextmanager
def postgres_server(database: str = "nbtune_test") -> Iterator[str]:
    """A running server with an empty ``database``; yields its SQLAlchemy URL.

    Raises:
        NoServer: PostgreSQL is not installed, or it could not start.
    """
    bindir = _bindir()
    if bindir is None:
        raise NoServer("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    # not under pytest's temp folder: that one is private to this user, and the server may run as another
    base = Path(tempfile.mkdtemp(prefix="nbtune-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    prefix: list[str] = []
    user = getpass.getuser()
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            raise NoServer("PostgreSQL cannot run as root and there is no runuser to run it as 'postgres'")
        prefix, user = ["runuser", "-u", "postgres", "--"], "postgres"
        shutil.chown(base, user="postgres")
        shutil.chown(sock, user="postgres")
        os.chmod(base, 0o755)

    def pg(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    import socket

    with socket.socket() as s:  # a free port number: it names the socket file, nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        pg(f"{bindir}/initdb", "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8")
        pg(
            f"{bindir}/pg_ctl", "-D", str(data), "-w", "-l", str(base / "log"),
            "-o", f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off -c max_connections=200",
            "start",
        )  # fmt: skip
    except (subprocess.CalledProcessError, OSError) as e:
        shutil.rmtree(base, ignore_errors=True)
        err = getattr(e, "stderr", b"") or b""
        raise NoServer(f"could not start PostgreSQL: {err.decode(errors='replace').strip()[-300:] or e}") from None
    try:
        pg(f"{bindir}/createdb", "-h", str(sock), "-p", str(port), "-U", user, database)
        yield f"postgresql://{user}@/{database}?host={sock}&port={port}"
    finally:
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", str(data), "-m", "fast", "stop"], capture_output=True, timeout=60
        )
        shutil.rmtree(base, ignore_errors=True)
