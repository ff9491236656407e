"""``walkout db``: the store database's schema version, migrations, backup and restore.

What an operator needs on the store's box besides ``walkout serve`` (docs/deploy.md): see
which schema a database is at, migrate it ahead of a start, take a consistent copy while the
service runs and writes, and put one back.

- SQLite is copied with SQLite's online backup API (``sqlite3.Connection.backup``) in one
  step: one read transaction, so the copy is the database as of one commit, while the service
  goes on writing (WAL mode: readers and the writer do not wait for each other). A copy of the
  file would miss the commits still in the ``-wal`` file, or catch a checkpoint half-way.
- PostgreSQL goes through ``pg_dump`` / ``pg_restore`` (custom format): PostgreSQL's own
  consistent snapshot, nothing of ours to get wrong.

A backup or restored file is written under a temporary name beside its target, checked, and
only then given its name: a failed or interrupted run never leaves a file that looks like a
good one. Files the user names are never overwritten without ``--force`` (the project's
convention), and a database that is not walkout's (no ``alembic_version`` at a revision this
code knows) is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from walkout.commands.say import error

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory
    from sqlalchemy import Engine

console = Console(soft_wrap=True)  # one line per fact: a timer's journal greps them

#: ``walkout serve``'s default (``ServiceSettings.db_url``), from the same variable
DEFAULT_URL = "sqlite:///walkout.db"
DbOpt = Annotated[str, typer.Option(
    "--db", envvar="WALKOUT_DB_URL", help="database URL, as `walkout serve` takes it")]
#: Debian's PostgreSQL installations (one folder per major version), where pg_dump may be
#: when it is not on PATH
PG_LIB = Path("/usr/lib/postgresql")
SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"  # pg_dump's custom format
#: the tables `status` counts first, with what they hold; every other table follows
MAIN_TABLES = {"accounts": "accounts", "visits": "visits", "cart_lines": "cart lines",
               "receipts": "receipts", "charges": "charges", "disputes": "disputes",
               "engine_events": "event log"}


class DbError(Exception):
    """A problem said in one line: the user's input (exit 2) or a failed tool (exit 1)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def register(app: typer.Typer, bench_app: typer.Typer, store_app: typer.Typer,
             aifi_app: typer.Typer) -> None:
    db_app = typer.Typer(no_args_is_help=True, help="The store's database: schema version, "
                         "migrations, backup and restore (docs/deploy.md).")
    app.add_typer(db_app, name="db")
    db_app.command("status")(db_status)
    db_app.command("upgrade")(db_upgrade)
    db_app.command("backup")(db_backup)
    db_app.command("restore")(db_restore)


# ---- the commands ----------------------------------------------------------------------------


def db_status(
    db: DbOpt = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Schema revision against this code's newest, pending migrations, rows, size.

    Reads only: a SQLite file is opened read-only and never created."""
    with _said():
        url = _checked_url(db)
        st = read_status(url)
    if as_json:
        print(json.dumps(st.as_json(), indent=2))
        return
    console.print(f"database  {escape(st.where)}")
    if st.size_bytes is not None:
        console.print(f"size      {_size(st.size_bytes)} on disk")
    console.print(f"revision  {st.schema.describe()}")
    if st.schema.pending:
        console.print(f"pending   {len(st.schema.pending)} migration(s), applied by `walkout db "
                      "upgrade` or the next `walkout serve`:")
        for rev, title in st.schema.pending:
            console.print(f"            {rev}  {escape(title)}")
    if st.rows:
        console.print("rows      " + ", ".join(
            f"{MAIN_TABLES.get(t, t)} {n:,}" for t, n in st.rows.items()))


def db_upgrade(db: DbOpt = DEFAULT_URL) -> None:
    """Apply the pending migrations, as `walkout serve` does on start.

    A new SQLite file is created. Back the database up first: `walkout db backup`."""
    with _said():
        url = _checked_url(db)
        before, after = upgrade_database(url)
    where = _where(url)
    if before.revision == after.revision:
        console.print(f"{escape(where)}: already at the newest schema, {after.revision}")
        return
    console.print(f"{escape(where)}: upgraded from {before.revision or 'an empty database'} "
                  f"to {after.revision} ({len(before.pending)} migration(s): "
                  f"{', '.join(r for r, _ in before.pending)})")


def db_backup(
    out: Annotated[Path, typer.Option("--out", help="backup file to write (SQLite: a database "
                                      "file; PostgreSQL: a pg_dump custom-format archive)")],
    db: DbOpt = DEFAULT_URL,
    force: Annotated[bool, typer.Option("--force", help="overwrite --out if it exists")] = False,
) -> None:
    """A consistent copy of the database, while `walkout serve` runs and writes.

    SQLite: its online backup API; PostgreSQL: pg_dump (custom format)."""
    with _said():
        url = _checked_url(db)
        t0 = time.perf_counter()
        made = backup_database(url, out, force)
    console.print(
        f"wrote {escape(str(out))}: {_size(made.size_bytes)}, revision {made.revision}"
        f"{'' if made.revision == made.head else f' (this code: {made.head})'}, "
        f"{made.rows.get('visits', 0):,} visits, {made.rows.get('receipts', 0):,} receipts, "
        f"taken {made.taken_at} ({made.method}, {time.perf_counter() - t0:.1f} s)")


def db_restore(
    backup: Annotated[Path, typer.Argument(help="a file `walkout db backup` wrote")],
    db: DbOpt = DEFAULT_URL,
    force: Annotated[bool, typer.Option(
        "--force", help="SQLite: replace the database file if it exists; PostgreSQL: restore "
        "into a database that is not empty (walkout's tables are dropped first)")] = False,
) -> None:
    """Put a backup back, into a new SQLite file or an empty PostgreSQL database.

    Stop `walkout serve` on that database first; `walkout db status` shows what came back."""
    with _said():
        url = _checked_url(db)
        st = restore_database(backup, url, force)
    console.print(f"restored {escape(str(backup))} into {escape(st.where)}: revision "
                  f"{st.schema.describe()}; {st.rows.get('visits', 0):,} visits, "
                  f"{st.rows.get('receipts', 0):,} receipts")
    if st.schema.pending:
        console.print(f"{len(st.schema.pending)} migration(s) pending: `walkout db upgrade` or "
                      "the next `walkout serve` applies them")


@contextlib.contextmanager
def _said() -> Iterator[None]:
    """Every expected failure as one line on stderr and an exit status, never a traceback."""
    from sqlalchemy.exc import DBAPIError

    try:
        yield
    except DbError as e:
        error(str(e))
        raise typer.Exit(e.code) from e
    except DBAPIError as e:  # the server refused us, a file SQLite cannot read
        error(f"{_reason(e)}")
        raise typer.Exit(2) from e


# ---- what the commands do ---------------------------------------------------------------------


@dataclass
class Schema:
    """Where a database's schema stands against the packaged migrations."""

    revision: str | None  # None: no schema yet
    head: str  # this code's newest
    known: bool  # revision is one of this code's (else: written by a newer walkout)
    pending: list[tuple[str, str]] = field(default_factory=list)  # (revision, title), oldest first

    @property
    def state(self) -> str:
        if self.revision is None:
            return "empty"
        if not self.known:
            return "newer"
        return "behind" if self.pending else "current"

    def describe(self) -> str:
        return {
            "empty": f"none: no schema yet (this code's newest: {self.head})",
            "newer": f"{self.revision}: NEWER than this code (its newest is {self.head}); this "
                     "walkout cannot serve it: install the version that wrote it",
            "behind": f"{self.revision}, behind this code's newest {self.head}",
            "current": f"{self.revision} (this code's newest)",
        }[self.state]


@dataclass
class Status:
    where: str  # the URL, password hidden
    dialect: str
    schema: Schema
    rows: dict[str, int]
    size_bytes: int | None

    def as_json(self) -> dict[str, Any]:
        return {"database": self.where, "dialect": self.dialect,
                "revision": self.schema.revision, "head": self.schema.head,
                "state": self.schema.state,
                "pending": [{"revision": r, "title": t} for r, t in self.schema.pending],
                "rows": self.rows, "size_bytes": self.size_bytes}


@dataclass
class Backup:
    path: Path
    size_bytes: int
    revision: str
    head: str
    rows: dict[str, int]
    taken_at: str  # UTC, when the snapshot was read
    method: str


def read_status(url: str, name: str | None = None) -> Status:
    """The schema, row counts and size of the database at ``url`` (``name`` in messages),
    which is not changed."""
    from sqlalchemy.exc import DBAPIError

    path = _sqlite_path(url)
    name = name or (str(path) if path is not None else _where(url))
    eng = _reader(url)
    try:
        with eng.connect() as c:
            schema, tables = _schema_of(c, name)
            rows = _counts(c, tables)
            size = None
            if c.dialect.name == "postgresql":
                size = int(c.exec_driver_sql("SELECT pg_database_size(current_database())")
                           .scalar_one())
    except DBAPIError as e:  # the server refused us, a file SQLite cannot read
        raise DbError(f"cannot read {name}: {_reason(e)}") from e
    finally:
        eng.dispose()
    if path is not None:
        size = sum(p.stat().st_size for p in _with_wal(path) if p.exists())
    return Status(_where(url), eng.dialect.name, schema, rows, size)


def upgrade_database(url: str) -> tuple[Schema, Schema]:
    """Apply the pending migrations with the function `walkout serve` uses; (before, after)."""
    from walkout.service.db import make_engine, upgrade

    path = _sqlite_path(url)
    if path is not None:
        if path.exists():  # a file that is not walkout's is refused before it is touched
            _refuse_newer(read_status(url).schema, url)
        elif not path.parent.is_dir():
            raise DbError(f"--db: the folder {path.parent} does not exist")
    eng = make_engine(url)
    try:
        with eng.connect() as c:
            before, _ = _schema_of(c, _where(url))
        _refuse_newer(before, url)
        try:
            upgrade(eng)
        except Exception as e:  # a migration refusing the data (0005 names two visits inside)
            from sqlalchemy.exc import DBAPIError

            why = _reason(e) if isinstance(e, DBAPIError) else _first_line(e)
            raise DbError(f"the upgrade stopped (`walkout db status` shows where): {why}",
                          1) from e
        with eng.connect() as c:
            after, _ = _schema_of(c, _where(url))
    finally:
        eng.dispose()
    return before, after


def _refuse_newer(schema: Schema, url: str) -> None:
    if schema.state == "newer":
        raise DbError(f"{_where(url)} is at revision {schema.revision}, newer than this code "
                      f"(its newest is {schema.head}): install the walkout that wrote it")


def backup_database(url: str, out: Path, force: bool) -> Backup:
    """Write a consistent backup of ``url`` to ``out`` (see the module's docstring)."""
    path = _sqlite_path(url)
    if path is None:  # the tools missing are said first
        pg_tool("pg_dump")
        pg_tool("pg_restore")  # reads the archive back
    st = read_status(url)  # refuses what is not a walkout database, before anything is written
    if st.schema.revision is None:
        raise DbError(f"{st.where} holds no walkout schema yet: nothing to back up")
    problem = _out_problem(out, force)
    if problem:
        raise DbError(f"--out {out}: {problem}")
    if path is not None and out.resolve() in {p.resolve() for p in _with_wal(path)}:
        raise DbError(f"--out {out}: is the database itself")
    with _partial(out) as tmp:
        if path is not None:
            taken = _sqlite_backup(path, tmp)
            method = "SQLite online backup"
            check = _read_sqlite_backup(tmp, path, newer_ok=True)  # opens, is whole
            revision, rows = check.schema.revision, check.rows
        else:
            taken = _now()
            _pg(["pg_dump", "--format=custom", "--no-password", f"--file={tmp}"], url)
            revision = _archive_revision(tmp, out)
            method, rows = "pg_dump custom format", st.rows
        _place(tmp, out, force)
    assert revision is not None
    return Backup(out, out.stat().st_size, revision, st.schema.head, rows, taken, method)


def restore_database(backup: Path, url: str, force: bool) -> Status:
    """Restore ``backup`` into ``url``; the database's status afterwards."""
    kind = _backup_kind(backup)
    path = _sqlite_path(url)
    if (kind == "sqlite") != (path is not None):
        want = "sqlite:///FILE" if kind == "sqlite" else "postgresql://…"
        what = "a SQLite database" if kind == "sqlite" else "a pg_dump archive"
        raise DbError(f"{backup} is {what}: restore it into a --db {want} (there is no "
                      "conversion between SQLite and PostgreSQL)")
    if path is not None:
        _restore_sqlite(backup, path, force)
    else:
        _restore_pg(backup, url, force)
    return read_status(url)


# ---- SQLite -----------------------------------------------------------------------------------


def _sqlite_backup(path: Path, tmp: Path) -> str:
    """The online backup of ``path`` into the new file ``tmp``, in one step (``pages=-1``: one
    read transaction, a snapshot of one commit; in steps, every write of the service between
    two steps restarts the copy, which may then never end). Returns when it was taken."""
    try:
        src = sqlite3.connect(_ro_uri(path), uri=True, timeout=30)
    except sqlite3.Error as e:
        raise DbError(f"{path}: cannot be opened: {e}", 1) from e
    try:  # a folder that takes no new file (e.g. /proc) passes os.access but not this
        dst = sqlite3.connect(tmp)
    except sqlite3.Error as e:
        src.close()
        raise DbError(f"--out: no file can be made in {tmp.parent}: {e}") from e
    try:
        taken = _now()
        src.backup(dst, pages=-1)
        # one self-contained file (the copy carries the source's WAL flag)
        dst.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as e:
        raise DbError(f"the backup of {path} failed: {e}", 1) from e
    finally:
        dst.close()
        src.close()
    return taken


def _read_sqlite_backup(path: Path, named: Path, newer_ok: bool = False) -> Status:
    """The status of the SQLite file ``path`` (``named`` in messages) once it has passed
    SQLite's ``quick_check`` and holds a walkout schema this code knows (or, ``newer_ok``:
    one a newer walkout wrote; a copy of it is still a backup)."""
    con = sqlite3.connect(_ro_uri(path), uri=True)
    try:
        verdict = con.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise DbError(f"{named}: not a readable SQLite database ({e})") from e
    finally:
        con.close()
    if verdict != "ok":
        raise DbError(f"{named}: corrupt SQLite database ({verdict})")
    st = read_status(f"sqlite:///{path}", str(named))
    schema = st.schema
    if schema.revision is None:
        raise DbError(f"{named}: not a walkout database (no schema, no alembic_version)")
    if not schema.known and not newer_ok:
        raise DbError(f"{named} is at revision {schema.revision}, newer than this code (its "
                      f"newest is {schema.head}): restore it with the walkout version that "
                      "wrote it")
    return st


def _restore_sqlite(backup: Path, target: Path, force: bool) -> None:
    if target.exists():
        if not force:
            raise DbError(f"--db {target}: exists; use --force to replace it (stop `walkout "
                          "serve` on it first)")
        if target.resolve() == backup.resolve():
            raise DbError(f"--db {target}: is the backup itself")
    else:
        try:  # a fresh box: /var/lib/walkout may not be there yet
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DbError(f"--db {target}: its folder cannot be made: {e.strerror or e}") from e
    with _partial(target) as tmp:
        try:  # checked on a copy: the backup itself is never opened for writing
            shutil.copyfile(backup, tmp)
        except OSError as e:
            raise DbError(f"cannot copy {backup} to {target.parent}: {e.strerror or e}") from e
        _read_sqlite_backup(tmp, backup)
        if not target.exists():
            _place(tmp, target, force=False)
            return
        # over an existing database: through SQLite (its write lock, its WAL), not by
        # swapping files under a -wal that would then be replayed onto the new one
        try:
            src, dst = sqlite3.connect(tmp), sqlite3.connect(target, timeout=30)
        except sqlite3.Error as e:
            raise DbError(f"--db {target}: cannot be opened: {e}") from e
        try:
            src.backup(dst)
        except sqlite3.Error as e:
            raise DbError(f"cannot write {target}: {e}") from e
        finally:
            dst.close()
            src.close()


def _ro_uri(path: Path) -> str:
    return path.resolve().as_uri() + "?mode=ro"


def _with_wal(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


# ---- PostgreSQL -------------------------------------------------------------------------------


def pg_tool(name: str) -> str:
    """``pg_dump`` or ``pg_restore``: on PATH, else Debian's newest under
    /usr/lib/postgresql/*/bin (installed there, not always on PATH); a newer one reads older
    servers, an older one refuses newer servers."""
    found = shutil.which(name)
    if found:
        return found
    found_in = sorted(PG_LIB.glob(f"*/bin/{name}"),
                      key=lambda p: [int(x) for x in re.findall(r"\d+", p.parts[-3])])
    if found_in:
        return str(found_in[-1])
    raise DbError(f"{name} not found: PostgreSQL backups need PostgreSQL's client tools "
                  f"(Debian: apt-get install postgresql-client), with {name} on PATH", 1)


def _pg(args: list[str], url: str) -> str:
    """Run a PostgreSQL client tool on ``url`` (the password in the environment, not on the
    command line where ``ps`` shows it); its stdout, or a DbError with its own words."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    env = dict(os.environ)
    if u.password is not None:
        env["PGPASSWORD"] = str(u.password)
    conninfo = u.set(drivername="postgresql", password=None).render_as_string(
        hide_password=False)
    tool = pg_tool(args[0])
    try:
        r = subprocess.run([tool, *args[1:], f"--dbname={conninfo}"], env=env,
                           capture_output=True, text=True, check=False)
    except OSError as e:
        raise DbError(f"cannot run {tool}: {e.strerror or e}", 1) from e
    if r.returncode != 0:
        raise DbError(f"{args[0]} failed: {_last_line(r.stderr)}", 1)
    return r.stdout


def _pg_archive(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``pg_restore`` on an archive file alone (no database)."""
    return subprocess.run([pg_tool("pg_restore"), *args], capture_output=True, text=True,
                          check=False)


def _archive_revision(archive: Path, named: Path) -> str:
    """The walkout revision a pg_dump archive holds (its alembic_version row), checked."""
    r = _pg_archive(["--list", str(archive)])
    if r.returncode != 0:
        raise DbError(f"{named}: not a readable pg_dump archive ({_last_line(r.stderr)})")
    r = _pg_archive(["--data-only", "--table=alembic_version", "--file=-", str(archive)])
    m = re.search(r"^COPY \S*alembic_version \(version_num\) FROM stdin;\n(.*?)\n\\\.$",
                  r.stdout, re.M | re.S)
    revision = m.group(1).strip() if m else ""
    if r.returncode != 0 or not revision:
        raise DbError(f"{named}: not a walkout database (no alembic_version row in the archive)")
    schema = _schema(revision)
    if not schema.known:
        raise DbError(f"{named} is at revision {revision}, newer than this code (its newest is "
                      f"{schema.head}): restore it with the walkout version that wrote it")
    return revision


def _restore_pg(backup: Path, url: str, force: bool) -> None:
    from sqlalchemy.exc import DBAPIError

    _archive_revision(backup, backup)
    eng = _reader(url)
    try:
        with eng.connect() as c:
            n = c.exec_driver_sql(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN "
                "('pg_catalog', 'information_schema')").scalar_one()
    except DBAPIError as e:
        raise DbError(f"cannot open {_where(url)} (restore into an existing, empty database: "
                      f"createdb): {_reason(e)}") from e
    finally:
        eng.dispose()
    if n and not force:
        raise DbError(f"{_where(url)} is not empty ({n} tables): restore into an empty database "
                      "(createdb), or use --force to drop and replace walkout's tables there")
    clean = ["--clean", "--if-exists"] if n else []
    _pg(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
         "--single-transaction", *clean, str(backup)], url)


# ---- shared -----------------------------------------------------------------------------------


def _checked_url(db: str) -> str:
    from walkout.service.settings import check_database_url

    try:
        url = check_database_url(db)
    except ValueError as e:
        raise DbError(f"--db: {e}") from e
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database in (None, "", ":memory:"):
        raise DbError("--db: an in-memory SQLite database has nothing to keep: name a file")
    return url


def _sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (relative to the working directory, as SQLAlchemy takes it);
    None for PostgreSQL."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    return Path(u.database or "")


def _where(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _reader(url: str) -> Engine:
    """An engine that reads ``url`` and changes nothing there: a SQLite file is opened
    read-only (never created, never switched to WAL as the service's engine does)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from walkout.service.db import make_engine

    path = _sqlite_path(url)
    if path is None:
        return make_engine(url)
    if not path.exists():
        raise DbError(f"--db {path}: no such file (`walkout db upgrade` or `walkout serve` "
                      "creates the database)")
    if not path.is_file():
        raise DbError(f"--db {path}: not a file")
    uri = _ro_uri(path)
    return create_engine("sqlite://", poolclass=NullPool, creator=lambda: sqlite3.connect(
        uri, uri=True, timeout=30, check_same_thread=False))


def _scripts() -> ScriptDirectory:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from walkout.service.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


def _schema(revision: str | None) -> Schema:
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    scripts = _scripts()
    head = scripts.get_current_head()
    assert head is not None
    try:
        pending = list(scripts.iterate_revisions("heads", revision or "base"))
    except (CommandError, RevisionError):  # a revision this code does not have
        return Schema(revision, head, known=False)
    return Schema(revision, head, known=True,
                  pending=[(s.revision, " ".join(s.doc.split())) for s in reversed(pending)])


def _schema_of(conn: Any, name: str) -> tuple[Schema, set[str]]:
    """The schema of the database behind ``conn`` (``name`` in messages), and its tables; a
    DbError when it holds tables but no alembic_version (not walkout's: migrating it would
    fail half-way)."""
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    tables = set(inspect(conn).get_table_names())
    revision = None
    if "alembic_version" in tables:
        revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None and tables - {"alembic_version"}:
        some = ", ".join(sorted(tables)[:3]) + (", …" if len(tables) > 3 else "")
        raise DbError(f"{name}: not a walkout database (tables {some} but no alembic_version)")
    return _schema(revision), tables


def _counts(conn: Any, tables: set[str]) -> dict[str, int]:
    """Rows per table of the schema present: the main ones first, the rest by name."""
    from sqlalchemy import func, select
    from sqlalchemy import table as table_

    from walkout.service.models import Base

    names = [t for t in MAIN_TABLES if t in tables]
    names += sorted(t for t in Base.metadata.tables if t in tables and t not in MAIN_TABLES)
    return {t: int(conn.execute(select(func.count()).select_from(table_(t))).scalar_one())
            for t in names}


def _backup_kind(backup: Path) -> str:
    try:
        with backup.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError as e:
        raise DbError(f"{backup}: no such file") from e
    except IsADirectoryError as e:
        raise DbError(f"{backup}: is a directory, not a backup file") from e
    except OSError as e:
        raise DbError(f"{backup}: cannot be read: {e.strerror or e}") from e
    if head == SQLITE_MAGIC:
        return "sqlite"
    if head.startswith(PGDUMP_MAGIC):
        return "pg_dump"
    raise DbError(f"{backup}: not a walkout backup (neither a SQLite database nor a pg_dump "
                  "custom-format archive)")


def _out_problem(out: Path, force: bool) -> str | None:
    from walkout.commands import output_file_problem

    problem = output_file_problem(out, force)
    if problem:
        return problem
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"its folder {out.parent} cannot be made: {e.strerror or e}"
    if not os.access(out.parent, os.W_OK | os.X_OK):
        return f"its folder {out.parent} is not writable (permission denied)"
    return None


@contextlib.contextmanager
def _partial(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` (same file system: the final rename is atomic),
    removed with its SQLite side files unless it was given its name."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        yield tmp
    except OSError as e:
        raise DbError(f"cannot write {target}: {e.strerror or e}") from e
    finally:
        for p in _with_wal(tmp):
            p.unlink(missing_ok=True)


def _place(tmp: Path, target: Path, force: bool) -> None:
    """Give the checked file its name, durably; without ``force`` never over a file that
    appeared meanwhile (a hard link fails where a rename would replace)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    if force:
        os.replace(tmp, target)
    else:
        try:
            os.link(tmp, target)
        except FileExistsError as e:
            raise DbError(f"{target}: exists; use --force to overwrite it") from e
        except OSError:  # a file system without hard links
            if target.exists():
                raise DbError(f"{target}: exists; use --force to overwrite it") from None
            os.replace(tmp, target)
        tmp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the new name itself survives a power loss
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reason(e: Any) -> str:
    """A database error's first line, the URL's password hidden by SQLAlchemy."""
    orig = getattr(e, "orig", None)
    return _first_line(orig if orig is not None else e)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
