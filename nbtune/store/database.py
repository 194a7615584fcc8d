"""A database store: the studies in a database through Optuna's ``RDBStorage`` (PostgreSQL).

``--store postgresql://user@host/db`` (or ``postgresql+psycopg://...``) keeps every study
in that database, where workers on other machines reach it: Optuna's own guidance for
several machines. Everything else nbtune keeps while a search runs lives in the same
database too: a run's stop flags, its trial target and its workers (:class:`DatabaseControl`,
one small table, ``nbtune_control``), and the per-study lock that keeps the trial budget exact
(PostgreSQL's advisory locks; SQLite, for one machine, a lock file beside the database).

Credentials: the URL may hold the password, but it need not. Without one, the driver
(libpq) reads ``PGPASSWORD`` or ``~/.pgpass``, and ``NBTUNE_STORE`` may hold the whole URL
(``--store $NBTUNE_STORE`` in a cell, or ``store=os.environ["NBTUNE_STORE"]``). nbtune never
prints or stores a password: messages, the summary and ``repr`` show the URL with it masked.

Checkpoints (``# tune: state``) go to ``.nbtune/artifacts`` beside the notebook by default; on
several machines, to an object store every worker reaches (``artifacts="s3://bucket/prefix"``,
``--artifacts``, or ``NBTUNE_ARTIFACTS``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtune.exceptions import ConfigError
from nbtune.store.artifacts import artifacts_location, open_artifact_store
from nbtune.store.base import BaseStore, base_name
from nbtune.store.control import OWNER_KEY, BaseControl, owner_gone, run_owner

if TYPE_CHECKING:
    import optuna

__all__ = ["DatabaseStore", "DatabaseControl", "database_cause", "is_database_url", "masked", "store_error"]

_URL_RE = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.\-]*)://", re.IGNORECASE)
_SUPPORTED = ("postgresql", "sqlite")


def is_database_url(location: Any) -> bool:
    """Whether ``--store`` names a database (a URL) rather than a folder."""
    return isinstance(location, str) and _URL_RE.match(location) is not None


def masked(url: str, text: str | None = None) -> str:
    """``text`` (default: the URL itself) with the URL's password replaced by ``***`` wherever it
    appears (a driver's error message may quote it): never print a password."""
    # the password runs to the URL's last '@' (one written raw may hold an '@' of its own)
    out = re.sub(r"^([^:/]+://[^:/@]*):.*@", r"\1:***@", url) if text is None else text
    out = re.sub(r"(password\s*=\s*)\S+", r"\1***", out, flags=re.IGNORECASE)
    m = re.match(r"^[^:/]+://[^:/@]*:(?P<password>.*)@", url)
    if text is not None and m and len(m.group("password")) >= 4:
        out = out.replace(m.group("password"), "***")
    return out


def database_cause(e: BaseException) -> tuple[str, bool]:
    """What went wrong in the database, in the driver's words: the first line of the innermost
    error of ``e``'s chain that says something, the driver's (psycopg's, SQLAlchemy's) first
    (Optuna wraps the driver's error in a generic "An exception is raised during the commit ...
    e.g. exceeding max length", which misled, and a chain can end in an error with no message,
    "()"); and whether it is a refused permission (the user may read but not write) rather than a
    connection that failed."""
    chain: list[BaseException] = []
    inner: BaseException | None = e
    while inner is not None and all(inner is not c for c in chain):
        chain.append(inner)
        inner = inner.__cause__ or inner.__context__

    def said(x: BaseException) -> str:
        text = str(x).strip()
        return "" if text in ("", "()", '"""', "''") else text.splitlines()[0]

    drivers = [x for x in chain if type(x).__module__.split(".")[0] in ("psycopg", "psycopg2", "sqlalchemy")]
    with_words = [x for x in drivers if said(x)] or [x for x in chain if said(x)]
    found = with_words[-1] if with_words else e
    text = said(found) or type(found).__name__
    denied = any("permission denied" in said(x).lower() or type(x).__name__ == "InsufficientPrivilege" for x in chain)
    return text, denied


def store_error(e: BaseException, store: Any) -> Exception | None:
    """The one line for a database error raised mid-search (:class:`~nbtune.exceptions.StoreError`),
    or None when ``e`` is no database error. Made where the error is raised: a worker process's
    error reaches the kernel without its chain, where the driver's words are."""
    from nbtune.exceptions import StoreError

    if not {c.__name__ for c in type(e).__mro__} & DATABASE_ERRORS:
        return None
    cause, denied = database_cause(e)
    said = masked(str(store), cause[:200]) if store else cause[:200]
    if denied:  # a user that may read the study (load_study works) but not write it
        return StoreError(
            f"the database store refused a write ({said}): the database user may not write the study's tables; "
            "the finished trials are kept: run as a user that may (or grant this one INSERT, UPDATE and DELETE), "
            "or only view the study (nbtune.load_study, %tune_show)"
        )
    return StoreError(
        f"the database store could not be reached mid-search ({type(e).__name__}: {said}); "
        "the finished trials are kept: re-run the cell once the database is back (trials left running are run "
        "again)"
    )


DATABASE_ERRORS = {"OperationalError", "InterfaceError", "StorageInternalError", "ProgrammingError"}


class _Engines:
    """One Optuna storage (and its SQLAlchemy connection pool) per URL and process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.storages: dict[str, Any] = {}
        self.pid = os.getpid()

    def get(self, url: str, shown: str) -> Any:
        """The storage of ``url``; ``shown`` is the URL as the user wrote it (for messages)."""
        from optuna.storages import RDBStorage

        with self.lock:
            if os.getpid() != self.pid:  # a forked worker must not share the parent's connections
                self.storages.clear()
                self.pid = os.getpid()
            storage = self.storages.get(url)
            if storage is None:
                try:
                    storage = RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
                except ImportError as e:
                    driver = url.split("://", 1)[0].partition("+")[2] or "psycopg"
                    install = (
                        "pip install 'nbtune[postgres]' (psycopg)" if driver == "psycopg" else f"pip install {driver}"
                    )
                    raise ConfigError(
                        f"--store {masked(shown)} needs the database driver {driver} in {socket.gethostname()}'s "
                        f"process {os.getpid()}: {e}; {install} (the kernel and every worker that runs trials, a "
                        "cluster's too, need it)"
                    ) from None
                except Exception as e:  # the server is down, the credentials are wrong...
                    first, denied = database_cause(e)
                    raise ConfigError(
                        f"cannot open the store {masked(shown)}: {masked(url, first)[:300]}; "
                        + (
                            "the database user may not use Optuna's tables there: grant it SELECT, INSERT, UPDATE and "
                            "DELETE on them (or use the user that made them)"
                            if denied
                            else "check that the database server runs and the URL, user and password (PGPASSWORD, "
                            "~/.pgpass) are right"
                        )
                    ) from None
                self.storages[url] = storage
            return storage


_ENGINES = _Engines()
_LEASE_TABLES: dict[str, bool] = {}  # per process: the lease table exists in that database


class DatabaseStore(BaseStore):
    """Studies in a database, through Optuna's ``RDBStorage``.

    Args:
        url: an SQLAlchemy URL: ``postgresql://user@host:5432/db`` (the psycopg driver is used;
            ``postgresql+psycopg2://`` picks another), or ``sqlite:///path.db`` for one machine.
        artifacts: where checkpoint files go: an object store (``s3://bucket/prefix``) or a folder
            (default ``.nbtune/artifacts`` in the cwd).
    """

    def __init__(self, url: str, artifacts: str | os.PathLike[str] | None = None) -> None:
        m = _URL_RE.match(url)
        scheme = m.group("scheme").lower() if m else ""
        if scheme == "postgres":  # as many hosting services write it (SQLAlchemy wants postgresql)
            url, scheme = "postgresql" + url[len("postgres") :], "postgresql"
        dialect = scheme.split("+", 1)[0]
        if dialect not in _SUPPORTED:
            raise ConfigError(
                f"--store {masked(url)}: nbtune stores studies in PostgreSQL (postgresql://user@host/db) or, on "
                f"one machine, SQLite (sqlite:///file.db); {dialect!r} is neither"
            )
        self.shown = url  # as the user wrote it, for messages (masked)
        if scheme == "postgresql":
            url = "postgresql+psycopg" + url[len("postgresql") :]  # psycopg 3, not SQLAlchemy's default psycopg2
        self.url = url
        self.dialect = dialect
        self.artifacts = artifacts_location(artifacts, Path.cwd().absolute() / ".nbtune" / "artifacts")
        self.repairs = []

    def __repr__(self) -> str:
        return f"DatabaseStore({masked(self.shown)!r})"

    def location(self, name: str) -> str:
        return masked(self.shown)

    def storage(self, name: str) -> optuna.storages.BaseStorage:
        storage: optuna.storages.BaseStorage = _ENGINES.get(self.url, self.shown)
        return storage

    def engine(self) -> Any:
        """The SQLAlchemy engine of the Optuna storage (the control table and locks use it)."""
        return self.storage("").engine  # type: ignore[attr-defined]

    def study_names(self) -> list[str]:
        return [s.study_name for s in self.storage("").get_all_studies()]

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """A lock every worker of study ``name`` shares, on any machine: PostgreSQL's advisory
        lock on a key derived from the name (SQLite: a lock file beside the database)."""
        if self.dialect == "sqlite":
            from optuna.storages.journal import JournalFileOpenLock

            db = self.url.split(":///", 1)[1]
            lock = JournalFileOpenLock(f"{db}.{base_name(name)}.lock", grace_period=30)
            lock.acquire()
            try:
                yield
            finally:
                lock.release()
            return
        from sqlalchemy import text

        key = int.from_bytes(hashlib.blake2b(f"nbtune:{name}".encode(), digest_size=8).digest(), "big", signed=True)
        with self.engine().connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()

    def artifact_store(self) -> Any:
        return open_artifact_store(self.artifacts)

    def artifacts_where(self) -> str:
        return str(self.artifacts)

    # leases: a running trial's worker renews its row every few seconds, on the database's clock,
    # so a worker on any machine can tell that another machine's worker is gone
    leases = True
    _LEASES = "CREATE TABLE IF NOT EXISTS nbtune_lease (trial_id BIGINT PRIMARY KEY, renewed DOUBLE PRECISION NOT NULL)"

    def _now(self) -> str:
        """The database's clock in seconds (every machine reads the same one)."""
        return "(julianday('now') - 2440587.5) * 86400.0" if self.dialect == "sqlite" else "extract(epoch from now())"

    def _lease_sql(self, sql: str, **params: Any) -> Any:
        from sqlalchemy import text

        if not _LEASE_TABLES.get(self.url):
            # two processes creating it at once: one of them fails, and the table is there either way
            with contextlib.suppress(Exception), self.engine().begin() as conn:
                conn.execute(text(self._LEASES))
            _LEASE_TABLES[self.url] = True
        with self.engine().begin() as conn:
            result = conn.execute(text(sql), params)
            return result.first() if result.returns_rows else None

    def namespace(self, user_ns: dict[str, Any] | None) -> str:
        """``user.notebook.``: one database serves many notebooks and people, and two notebooks
        that tune the same cell must not share a study by accident (an explicit ``--name`` does)."""
        import getpass

        from nbtune.cell.identity import notebook_path

        notebook = notebook_path(user_ns)
        try:
            user = getpass.getuser()
        except Exception:  # no user name (some containers)
            user = "user"
        parts = [user, Path(notebook).stem if notebook else "script"]
        return ".".join(re.sub(r"[^A-Za-z0-9_\-]+", "_", p)[:40] for p in parts) + "."

    def started_count(self, study: optuna.Study) -> int | None:
        from nbtune import _compat

        try:
            return _compat.rdb_started_count(self.engine(), _compat.study_id(study))
        except Exception:  # another schema version: read the trials instead
            return None

    def renew_lease(self, trial_id: int) -> None:
        self._lease_sql(
            f"INSERT INTO nbtune_lease (trial_id, renewed) VALUES (:t, {self._now()}) "
            "ON CONFLICT (trial_id) DO UPDATE SET renewed = excluded.renewed",
            t=trial_id,
        )

    def end_lease(self, trial_id: int) -> None:
        self._lease_sql("DELETE FROM nbtune_lease WHERE trial_id = :t", t=trial_id)

    def lease_age(self, trial_id: int) -> float | None:
        row = self._lease_sql(f"SELECT {self._now()} - renewed FROM nbtune_lease WHERE trial_id = :t", t=trial_id)
        return None if row is None else float(row[0])

    def control(self, name: str, n_trials: int) -> BaseControl:
        control = DatabaseControl(n_trials, self, f"{base_name(name)}-{uuid.uuid4().hex[:8]}")
        control.sweep()
        return control


class DatabaseControl(BaseControl):
    """A run's stop flags, trial target and workers as rows of ``nbtune_control`` in the store's
    database, so a worker on any machine sees *Stop*, *Stop now* and *+ trials*.

    Args:
        n_trials: the run's target number of finished trials.
        store: the database store.
        run: this run's id (rows are keyed by it; :meth:`cleanup` deletes them).
    """

    FRESH = 0.5  # seconds a value read from the database is reused: a flag reaches workers within this

    def __init__(self, n_trials: int, store: DatabaseStore, run: str) -> None:
        super().__init__(n_trials)
        self.store, self.run = store, run
        self._seen: dict[str, tuple[float, str | None]] = {}
        self._ensure_table()
        self._put(OWNER_KEY, run_owner())  # (a sweep knows a dead run's rows)
        self.set_target(n_trials)

    def sweep(self) -> None:
        """Delete the rows of runs whose process is gone (a killed kernel leaves them behind);
        only this machine's, whose processes it can see."""
        table = self._table()
        with contextlib.suppress(Exception):
            with self.store.engine().connect() as conn:
                owners = conn.execute(
                    table.select().with_only_columns(table.c.run, table.c.value).where(table.c.key == OWNER_KEY)
                ).all()
            dead = [str(run) for run, owner in owners if owner_gone(str(owner))]
            if dead:
                with self.store.engine().begin() as conn:
                    conn.execute(table.delete().where(table.c.run.in_(dead)))

    def _table(self) -> Any:
        import sqlalchemy as sa

        meta = sa.MetaData()
        return sa.Table(
            "nbtune_control",
            meta,
            sa.Column("run", sa.String(160), primary_key=True),
            sa.Column("key", sa.String(160), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        )

    def _ensure_table(self) -> None:
        self._table().create(self.store.engine(), checkfirst=True)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_seen"] = {}
        return state

    def _put(self, key: str, value: str) -> None:
        self._seen.pop(key, None)
        table = self._table()
        with contextlib.suppress(Exception), self.store.engine().begin() as conn:  # best effort, as the contract says
            conn.execute(table.delete().where(table.c.run == self.run, table.c.key == key))
            conn.execute(table.insert().values(run=self.run, key=key, value=value))

    def _get(self, key: str) -> str | None:
        import time

        seen = self._seen.get(key)
        if seen is not None and time.monotonic() - seen[0] < self.FRESH:
            return seen[1]
        value = self._read(key)
        self._seen[key] = (time.monotonic(), value)
        return value

    def _read(self, key: str) -> str | None:
        table = self._table()
        try:
            with self.store.engine().connect() as conn:
                row = conn.execute(
                    table.select().with_only_columns(table.c.value).where(table.c.run == self.run, table.c.key == key)
                ).first()
        except Exception:
            return None
        return None if row is None else str(row[0])

    def clock(self) -> float:
        """The database's clock: machines' own clocks need not agree."""
        from sqlalchemy import text

        try:
            with self.store.engine().connect() as conn:
                return float(conn.execute(text(f"SELECT {self.store._now()}")).scalar_one())
        except Exception:  # unreachable for a moment: no verdict on the kernel from this worker now
            return float("nan")

    def _delete(self, key: str) -> None:
        self._seen.pop(key, None)
        table = self._table()
        with contextlib.suppress(Exception), self.store.engine().begin() as conn:
            conn.execute(table.delete().where(table.c.run == self.run, table.c.key == key))

    def _keys(self, prefix: str) -> list[str]:
        table = self._table()
        with self.store.engine().connect() as conn:
            rows = conn.execute(
                table.select()
                .with_only_columns(table.c.key)
                .where(table.c.run == self.run, table.c.key.startswith(prefix))
            ).all()
        return [str(r[0]) for r in rows]

    def cleanup(self) -> None:
        table = self._table()
        with contextlib.suppress(Exception), self.store.engine().begin() as conn:
            conn.execute(table.delete().where(table.c.run == self.run))
