"""Database engines and migrations: SQLite file by default, PostgreSQL by URL.

SQLite runs in WAL mode with a busy timeout. Transactions begin the way they will be used:

- a session opened with ``sessions.begin()`` (every write in the service) starts with
  ``BEGIN IMMEDIATE``: writers queue for the one write lock at the start instead of failing
  half-way when two of them upgrade a read lock at once;
- a plain ``with sessions() as s:`` (reads: token checks, GETs, look-ups) starts with a
  deferred ``BEGIN``: in WAL mode it reads a snapshot and never waits for a writer.

A plain session must therefore not write; a write needs ``sessions.begin()``.

``synchronous`` is ``NORMAL`` by default: in WAL mode a commit is then durable against a crash
of the process (SIGKILL included: the WAL is in the OS's page cache and survives it) but the
last commits before a power loss or kernel crash may be rolled back (never corrupted); ``FULL``
(``WALKOUT_SQLITE_SYNCHRONOUS=FULL``) makes every commit survive those too, at one fsync per
commit (~3 ms here). Migrations are the packaged Alembic scripts, run programmatically, so
``walkout serve`` brings any database to the current schema on start.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"

#: execution option of connections that begin with a deferred ``BEGIN`` (reads)
DEFERRED = "walkout_deferred_begin"
_READ_BIND = "walkout_read_bind"
_WRITE_LOCK = "walkout_write_lock"
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the only PostgreSQL driver we install)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def make_engine(url: str, *, synchronous: str = "NORMAL", **kw: Any) -> Engine:
    """An engine for ``url`` with the per-dialect settings the service relies on.

    ``synchronous`` is SQLite's ``PRAGMA synchronous`` (ignored for PostgreSQL).
    """
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        sync = synchronous.upper()
        if sync not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        eng = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kw)

        @event.listens_for(eng, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # let us issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.close()

        @event.listens_for(eng, "begin")
        def _begin(conn: Any) -> None:
            deferred = conn.get_execution_options().get(DEFERRED, False)
            conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

        return eng
    return create_engine(url, pool_pre_ping=True, **kw)


class ServiceSession(Session):
    """A session that reads on a deferred transaction unless it was opened for writing
    (``sessionmaker.begin()`` / ``Session.begin()``), where SQLite takes the write lock first.

    On SQLite the writers of one process also queue on a Python lock before ``BEGIN
    IMMEDIATE``: SQLite's own busy handler polls with sleeps of up to 100 ms, so under load a
    waiting writer would sleep past the moment the lock is free, and the unlucky ones starve;
    the Python lock hands over at once. (Other processes still meet the busy handler.)"""

    _writes = False
    _holds: threading.RLock | None = None

    def begin(self, nested: bool = False) -> Any:
        if not nested and not self._writes:
            self._writes = True
            lock = self.info.get(_WRITE_LOCK)
            if lock is not None:
                lock.acquire()
                self._holds = lock
        try:
            return super().begin(nested)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        lock, self._holds = self._holds, None
        if lock is not None:
            lock.release()

    def get_bind(self, *args: Any, **kw: Any) -> Any:
        bind = super().get_bind(*args, **kw)
        read = self.info.get(_READ_BIND)
        if read is not None and not self._writes and bind is read[0]:
            return read[1]
        return bind


@event.listens_for(ServiceSession, "after_transaction_end")
def _transaction_end(session: Session, transaction: Any) -> None:
    if transaction.parent is None and isinstance(session, ServiceSession):
        session._release()


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    info: dict[str, Any] = {}
    if engine.dialect.name == "sqlite":
        info[_READ_BIND] = (engine, engine.execution_options(**{DEFERRED: True}))
        info[_WRITE_LOCK] = _WRITE_LOCKS.setdefault(engine, threading.RLock())
    return sessionmaker(engine, class_=ServiceSession, expire_on_commit=False, info=info)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (default: the newest schema)."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)
