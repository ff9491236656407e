"""`walkout db` through the real CLI: status, upgrade, backup while the service writes, restore
(then `status` reads it and the service starts on it), and the refusals: one line naming the
problem, a non-zero exit, no traceback, and nothing that was there touched."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from click.testing import Result
from sqlalchemy import Engine, create_engine, text
from typer.testing import CliRunner

from walkout.cli import app
from walkout.commands import db as dbcmd
from walkout.service.db import MIGRATIONS, make_engine, normalise_url, upgrade
from walkout.service.settings import ServiceSettings
from walkout.service.testing import Svc, make_svc

BAR, WATER = "018627032007", "073360771026"  # 9.19 and 7.59 EUR in the `small` store


def _scripts() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


HEAD = str(_scripts().get_current_head())  # not a literal: migrations are added over time
PREV = str(_scripts().get_revision(HEAD).down_revision)


def db(*args: str) -> Result:
    return CliRunner().invoke(app, ["db", *args])


def ok(*args: str) -> Result:
    r = db(*args)
    assert r.exit_code == 0 and r.exception is None, (r.output, r.exception)
    return r


def status(url: str) -> dict[str, Any]:
    import json

    return dict(json.loads(ok("status", "--db", url, "--json").stdout))


def refused(args: list[str], said: str, code: int = 2) -> Result:
    """The command fails with one line on stderr that says ``said``, and no traceback."""
    r = db(*args)
    assert r.exit_code == code, (r.exit_code, r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert said in lines[0], r.stderr
    return r


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def shop(engine: Engine, visits: int = 2) -> list[dict[str, Any]]:
    """Real data through the service's API: shoppers who enter, pick and leave; their exits."""
    svc: Svc = make_svc(engine)
    out = []
    with svc.client:
        for i in range(visits):
            h = svc.shopper(card=f"tok_visa_{i}", email=f"s{i}@example.org")
            out.append(svc.leave(svc.enter(h), {BAR: 1 + i, WATER: 1}))
    return out


@pytest.fixture
def store_db(tmp_path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A SQLite store database at the newest schema with two visits and their receipts."""
    url = sqlite_url(tmp_path / "store" / "walkout.db")
    (tmp_path / "store").mkdir()
    eng = make_engine(url)
    exits = shop(eng)
    eng.dispose()
    yield url, exits


# ---- status and upgrade ----------------------------------------------------------------------


def test_status_of_a_fresh_database(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "w.db")
    r = ok("upgrade", "--db", url)
    assert f"upgraded from an empty database to {HEAD}" in r.stdout
    st = status(url)
    assert (st["revision"], st["head"], st["state"], st["pending"]) == (HEAD, HEAD, "current", [])
    assert st["rows"]["visits"] == 0 and st["rows"]["engine_events"] == 0
    assert set(st["rows"]) >= {"accounts", "visits", "receipts", "cart_lines", "engine_events"}
    assert st["size_bytes"] == (tmp_path / "w.db").stat().st_size + sum(
        p.stat().st_size for p in tmp_path.glob("w.db-*"))
    text_out = ok("status", "--db", url).stdout
    assert f"revision  {HEAD} (this code's newest)" in text_out
    assert "event log 0" in text_out
    assert f"already at the newest schema, {HEAD}" in ok("upgrade", "--db", url).stdout


def test_status_of_a_database_behind_head_and_its_upgrade(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "old.db")
    eng = make_engine(url)
    upgrade(eng, PREV)
    with eng.begin() as c:
        c.execute(text("INSERT INTO accounts (id, kind, role, created_at) VALUES "
                       "('a1', 'app', 'shopper', '2026-01-01 00:00:00')"))
    eng.dispose()
    st = status(url)
    assert (st["revision"], st["state"]) == (PREV, "behind")
    assert [p["revision"] for p in st["pending"]] == [HEAD]
    assert st["pending"][0]["title"]  # the migration's first docstring line
    assert "1 migration(s), applied by `walkout db upgrade`" in ok("status", "--db", url).stdout
    r = ok("upgrade", "--db", url)
    assert f"upgraded from {PREV} to {HEAD}" in r.stdout
    st = status(url)
    assert (st["revision"], st["state"], st["rows"]["accounts"]) == (HEAD, "current", 1)


def test_status_counts_the_rows_the_service_wrote(store_db: tuple[str, list[Any]]) -> None:
    url, exits = store_db
    rows = status(url)["rows"]
    assert rows["visits"] == 2 and rows["receipts"] == len(exits) == 2
    assert rows["cart_lines"] == 4 and rows["accounts"] >= 2


def test_status_never_creates_or_changes_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    refused(["status", "--db", sqlite_url(missing)], f"--db {missing}: no such file")
    assert not missing.exists()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE notes (x TEXT)")
    c.close()
    before = other.read_bytes()
    refused(["status", "--db", sqlite_url(other)], "not a walkout database")
    refused(["upgrade", "--db", sqlite_url(other)], "not a walkout database")
    assert other.read_bytes() == before  # not even switched to WAL


def test_the_default_database_is_the_services() -> None:
    assert ServiceSettings.model_fields["db_url"].default == dbcmd.DEFAULT_URL


# ---- backup while the service writes ---------------------------------------------------------

WRITER = r"""
import sys, time
from pathlib import Path
from sqlalchemy import text
from walkout.service.db import make_engine
url, stop, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
eng = make_engine(url)
while not stop.exists():  # one transaction: the event and the checkpoint naming it
    with eng.begin() as c:
        c.execute(text("INSERT INTO engine_events (source, seq, kind, t, payload, recorded_at) "
                       "VALUES ('writer', :n, 'tick', :n, :p, '2026-01-01 00:00:00')"),
                  {"n": n, "p": "x" * 300})
        c.execute(text("UPDATE runner_checkpoints SET chunk = :n WHERE source = 'writer'"),
                  {"n": n})
    n += 1
print(n)
"""


def _committed(path: Path, source: str = "writer") -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM engine_events WHERE source = ?",
                               (source,)).fetchone()[0])
    finally:
        con.close()


def _wait_for_rows(path: Path, source: str, n: int, writer: Any) -> None:
    deadline = time.monotonic() + 60
    while _committed(path, source) < n:
        alive = writer.poll() is None if hasattr(writer, "poll") else writer.is_alive()
        assert alive and time.monotonic() < deadline, "the writer stalled"
        time.sleep(0.05)


@contextmanager
def _old_snapshot(path: Path) -> Iterator[None]:
    """A reader on a snapshot of now, as the dashboard's long reads hold one: no checkpoint
    may move the commits after it out of the WAL into the database file meanwhile."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    con.execute("BEGIN")
    con.execute("SELECT count(*) FROM engine_events").fetchone()
    try:
        yield
    finally:
        con.close()


def test_backup_while_another_process_writes_is_a_consistent_prefix(tmp_path: Path) -> None:
    """The copy opens, is at the same revision, and holds exactly the writes committed up to
    one moment: every one committed before the backup began, none half. A copy of the file
    alone would miss the ones still in the WAL."""
    path = tmp_path / "live.db"
    url = sqlite_url(path)
    eng = make_engine(url)
    upgrade(eng)
    first = 20_000  # a few MB, so that the backup overlaps the writes
    with eng.begin() as c:
        c.execute(text("INSERT INTO runner_checkpoints (source, chunk, t, updated_at) VALUES "
                       "('writer', -1, 0, '2026-01-01 00:00:00')"))
        c.execute(text("INSERT INTO engine_events (source, seq, kind, t, payload, recorded_at) "
                       "VALUES ('writer', :n, 'tick', :n, :p, '2026-01-01 00:00:00')"),
                  [{"n": i, "p": "x" * 300} for i in range(first)])
        c.execute(text("UPDATE runner_checkpoints SET chunk = :n"), {"n": first - 1})
    eng.dispose()
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url, str(stop), str(first)],
                              stdout=subprocess.PIPE, text=True)
    try:
        with _old_snapshot(path):
            _wait_for_rows(path, "writer", first + 200, writer)  # the writer is going
            before = _committed(path)
            out = tmp_path / "backups" / "live.bak"
            r = ok("backup", "--db", url, "--out", str(out))
            after = _committed(path)
    finally:
        stop.touch()
        written = int(writer.communicate(timeout=60)[0])
    assert writer.returncode == 0
    assert after > before, "nothing was written during the backup: the test proves nothing"
    assert f"wrote {out}: " in r.stdout and f"revision {HEAD}" in r.stdout
    assert not list(out.parent.glob(".*"))  # no temporary left behind
    con = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
        n, top = con.execute("SELECT count(*), max(seq) FROM engine_events").fetchone()
        chunk = con.execute("SELECT chunk FROM runner_checkpoints").fetchone()[0]
    finally:
        con.close()
    assert before <= n <= after <= written, (before, n, after, written)
    assert top == n - 1 == chunk  # seq 0..n-1 with no gap, the checkpoint of the same commit
    assert status(sqlite_url(out))["revision"] == HEAD


def test_backup_beside_a_running_service_thread(store_db: tuple[str, list[Any]],
                                                tmp_path: Path) -> None:
    """The service's own engine writing in another thread of the same process meanwhile."""
    url, _ = store_db
    eng = make_engine(url)
    stop = threading.Event()
    done: list[int] = []

    def write() -> None:
        n = 0
        while not stop.is_set():
            with eng.begin() as c:
                c.execute(text("INSERT INTO engine_events (source, seq, kind, t, payload, "
                               "recorded_at) VALUES ('thread', :n, 'tick', 0, '{}', "
                               "'2026-01-01 00:00:00')"), {"n": n})
            n += 1
        done.append(n)

    path = Path(url.removeprefix("sqlite:///"))
    th = threading.Thread(target=write)
    th.start()
    try:
        with _old_snapshot(path):
            _wait_for_rows(path, "thread", 100, th)
            before = _committed(path, "thread")
            out = tmp_path / "b.db"
            ok("backup", "--db", url, "--out", str(out))
            after = _committed(path, "thread")
    finally:
        stop.set()
        th.join(30)
        eng.dispose()
    con = sqlite3.connect(out)
    n, top = con.execute("SELECT count(*), max(seq) FROM engine_events "
                         "WHERE source = 'thread'").fetchone()
    con.close()
    assert before <= n <= after <= done[0] and top == n - 1, (before, n, after, done)


# ---- restore ---------------------------------------------------------------------------------


def test_restore_then_status_and_the_service_starts_on_it(store_db: tuple[str, list[Any]],
                                                          tmp_path: Path) -> None:
    url, exits = store_db
    bak = tmp_path / "b.db"
    ok("backup", "--db", url, "--out", str(bak))
    target = tmp_path / "restored" / "walkout.db"  # its folder is made
    r = ok("restore", str(bak), "--db", sqlite_url(target))
    assert f"restored {bak} into sqlite:///{target}: revision {HEAD}" in r.stdout
    assert "2 visits, 2 receipts" in r.stdout
    assert status(sqlite_url(target))["rows"] == status(url)["rows"]
    eng = make_engine(sqlite_url(target))
    svc = make_svc(eng)  # create_app: migrations, start-up work, then the API answers
    with svc.client:
        assert svc.client.get("/health").json() == {"status": "ok"}
        for e in exits:
            got = svc.client.get(f"/v1/receipts/{e['receipt_id']}", headers=svc.gate)
            assert got.status_code == 200, got.text
            assert got.json()["total"] == e["total"]["amount"]
        h = svc.shopper(card="tok_visa_new", email="new@example.org")  # and it writes
        total = svc.leave(svc.enter(h), {BAR: 1})["total"]
        assert total == {"amount": "9.19", "currency": "EUR"}
    eng.dispose()


def test_restore_of_an_older_backup_says_what_is_pending(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "old.db")
    eng = make_engine(url)
    upgrade(eng, PREV)
    eng.dispose()
    bak = tmp_path / "old.bak"
    ok("backup", "--db", url, "--out", str(bak))
    r = ok("restore", str(bak), "--db", sqlite_url(tmp_path / "new.db"))
    assert f"revision {PREV}, behind this code's newest {HEAD}" in r.stdout
    assert "1 migration(s) pending" in r.stdout


def test_force_replaces_a_database_with_a_wal_of_its_own(store_db: tuple[str, list[Any]],
                                                         tmp_path: Path) -> None:
    """The target left as a crash leaves it, committed pages still in its -wal: replacing its
    file alone would have SQLite replay that WAL onto the restored database."""
    url, _ = store_db
    bak = tmp_path / "b.db"
    ok("backup", "--db", url, "--out", str(bak))
    live = tmp_path / "live.db"
    eng = make_engine(sqlite_url(live))
    upgrade(eng)
    eng.dispose()
    holder = sqlite3.connect(live)  # kept open: its WAL is not checkpointed away
    holder.execute("PRAGMA wal_autocheckpoint=0")
    with holder:
        holder.executemany("INSERT INTO engine_events (source, seq, kind, t, payload, "
                           "recorded_at) VALUES ('gone', ?, 'x', 0, '{}', '2026-01-01')",
                           [(i,) for i in range(500)])
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for p in tmp_path.glob("live.db*"):  # the files as they are on disk at a crash
        (crashed / p.name.replace("live", "walkout")).write_bytes(p.read_bytes())
    holder.close()
    target = crashed / "walkout.db"
    assert (crashed / "walkout.db-wal").stat().st_size > 0
    refused(["restore", str(bak), "--db", sqlite_url(target)],
            f"--db {target}: exists; use --force to replace it")
    ok("restore", str(bak), "--db", sqlite_url(target), "--force")
    rows = status(sqlite_url(target))["rows"]
    assert rows == status(url)["rows"]
    con = sqlite3.connect(target)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    gone = con.execute("SELECT count(*) FROM engine_events WHERE source = 'gone'").fetchone()
    assert gone[0] == 0
    con.close()


# ---- refusals --------------------------------------------------------------------------------


def test_backup_never_overwrites_without_force(store_db: tuple[str, list[Any]],
                                               tmp_path: Path) -> None:
    url, _ = store_db
    out = tmp_path / "kept.db"
    out.write_text("precious")
    refused(["backup", "--db", url, "--out", str(out)],
            f"--out {out}: exists; use --force to overwrite it")
    assert out.read_text() == "precious"
    ok("backup", "--db", url, "--out", str(out), "--force")
    assert status(sqlite_url(out))["rows"]["receipts"] == 2


def test_restore_never_overwrites_without_force(store_db: tuple[str, list[Any]],
                                                tmp_path: Path) -> None:
    url, _ = store_db
    bak = tmp_path / "b.db"
    ok("backup", "--db", url, "--out", str(bak))
    other = tmp_path / "other.db"
    eng = make_engine(sqlite_url(other))
    upgrade(eng)
    eng.dispose()
    before = status(sqlite_url(other))["rows"]
    refused(["restore", str(bak), "--db", sqlite_url(other)], "exists; use --force")
    assert status(sqlite_url(other))["rows"] == before
    refused(["restore", str(bak), "--db", sqlite_url(bak), "--force"], "is the backup itself")
    refused(["backup", "--db", url, "--out", url.removeprefix("sqlite:///"), "--force"],
            "is the database itself")


def _corrupt(good: Path, bad: Path) -> Path:
    data = bytearray(good.read_bytes())
    data[4096:12288] = b"\xa5" * 8192  # the schema's and the first tables' pages
    bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize(("make", "said"), [
    (lambda tmp, bak: tmp / "missing.db", "missing.db: no such file"),
    (lambda tmp, bak: tmp, "is a directory, not a backup file"),
    (lambda tmp, bak: (tmp / "junk").write_bytes(b"not a database" * 300) and tmp / "junk",
     "junk: not a walkout backup (neither a SQLite database nor a pg_dump"),
    (lambda tmp, bak: _corrupt(bak, tmp / "corrupt.db"), "corrupt.db: "),
    (lambda tmp, bak: _foreign(tmp / "foreign.db"),
     "foreign.db: not a walkout database (tables notes but no alembic_version)"),
    (lambda tmp, bak: _empty_sqlite(tmp / "empty.db"), "empty.db: not a walkout database"),
    (lambda tmp, bak: _newer(bak, tmp / "newer.db"),
     f"newer.db is at revision 9999_future, newer than this code (its newest is {HEAD})"),
], ids=["missing", "directory", "junk", "corrupt", "foreign", "empty", "newer"])
def test_restore_refuses_what_is_not_a_good_walkout_backup(
        store_db: tuple[str, list[Any]], tmp_path: Path, make: Any, said: str) -> None:
    url, _ = store_db
    bak = tmp_path / "good.db"
    ok("backup", "--db", url, "--out", str(bak))
    bad = make(tmp_path, bak)
    target = tmp_path / "target" / "walkout.db"
    refused(["restore", str(bad), "--db", sqlite_url(target)], said)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []  # no temporary


def _foreign(path: Path) -> Path:
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE notes (x TEXT)")
    c.close()
    return path


def _empty_sqlite(path: Path) -> Path:
    c = sqlite3.connect(path)
    c.execute("PRAGMA user_version=1")  # a valid SQLite file with no table at all
    c.close()
    return path


def _newer(good: Path, path: Path) -> Path:
    path.write_bytes(good.read_bytes())
    with sqlite3.connect(path) as c:
        c.execute("UPDATE alembic_version SET version_num = '9999_future'")
    c.close()
    return path


def test_a_corrupt_database_is_not_backed_up(store_db: tuple[str, list[Any]],
                                             tmp_path: Path) -> None:
    url, _ = store_db
    path = Path(url.removeprefix("sqlite:///"))
    bad = _corrupt(path, tmp_path / "bad.db")
    out = tmp_path / "out.db"
    r = db("backup", "--db", sqlite_url(bad), "--out", str(out))
    assert r.exit_code != 0 and r.stderr.startswith("error: "), r.output
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not out.exists() and not list(tmp_path.glob(".out.db*"))


@pytest.mark.parametrize("cmd", [["status"], ["upgrade"], ["backup", "--out", "x.db"],
                                 ["restore", "x.db"]])
@pytest.mark.parametrize(("url", "said"), [
    ("mysql://shop@127.0.0.1/walkout", "--db: mysql databases are not supported"),
    ("notaurl", "--db: not a database URL"),
    ("sqlite://", "--db: an in-memory SQLite database has nothing to keep")])
def test_unsupported_urls_are_refused_by_every_command(
        cmd: list[str], url: str, said: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    refused([*cmd, "--db", url], said)
    assert list(tmp_path.iterdir()) == []


def test_the_url_comes_from_walkout_db_url(store_db: tuple[str, list[Any]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = store_db
    monkeypatch.setenv("WALKOUT_DB_URL", url)
    r = CliRunner().invoke(app, ["db", "status", "--json"])
    assert r.exit_code == 0 and '"visits": 2' in r.stdout, r.output


def test_unwritable_backup_paths_are_named(store_db: tuple[str, list[Any]],
                                           tmp_path: Path) -> None:
    url, _ = store_db
    f = tmp_path / "file"
    f.write_text("precious")
    refused(["backup", "--db", url, "--out", str(f / "sub" / "b.db")],
            f"--out {f}/sub/b.db: is under {f}, which is a file")
    refused(["backup", "--db", url, "--out", str(tmp_path)], "is a directory")
    refused(["restore", str(tmp_path / "x"), "--db", sqlite_url(f / "w.db")], "no such file")
    assert f.read_text() == "precious"
    # a folder that takes no new file though access() says it may (procfs, even for root):
    # found only by SQLite opening the file, which was an OperationalError traceback
    refused(["backup", "--db", url, "--out", "/proc/walkout-backup.db"],
            "--out: no file can be made in /proc: unable to open database file")


def test_a_sqlite_backup_is_not_restored_into_postgresql(store_db: tuple[str, list[Any]],
                                                         tmp_path: Path) -> None:
    url, _ = store_db
    bak = tmp_path / "b.db"
    ok("backup", "--db", url, "--out", str(bak))
    refused(["restore", str(bak), "--db", "postgresql://nobody@127.0.0.1:1/none"],
            "is a SQLite database: restore it into a --db sqlite:///FILE")


def test_without_pg_dump_the_backup_says_so(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setattr(dbcmd.shutil, "which", lambda name: None)
    monkeypatch.setattr(dbcmd, "PG_LIB", tmp_path)  # no Debian PostgreSQL either
    refused(["backup", "--db", "postgresql://shop@127.0.0.1:1/walkout", "--out",
             str(tmp_path / "b.dump")], "pg_dump not found: PostgreSQL backups need", code=1)
    assert not (tmp_path / "b.dump").exists()


def test_pg_dump_is_found_in_debians_folders(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    for v in ("9.6", "15", "16"):
        exe = tmp_path / v / "bin" / "pg_dump"
        exe.parent.mkdir(parents=True)
        exe.write_text("#!/bin/sh\n")
    monkeypatch.setattr(dbcmd.shutil, "which", lambda name: None)
    monkeypatch.setattr(dbcmd, "PG_LIB", tmp_path)
    assert dbcmd.pg_tool("pg_dump") == str(tmp_path / "16" / "bin" / "pg_dump")  # the newest


# ---- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def pg_databases() -> Iterator[tuple[str, str]]:
    """Two new databases on the test server: (source, empty target)."""
    server = os.environ.get("WALKOUT_TEST_PG_URL")
    if not server:
        pytest.skip("WALKOUT_TEST_PG_URL is not set (bash scripts/services.sh start postgres)")
    try:
        dbcmd.pg_tool("pg_dump")
        dbcmd.pg_tool("pg_restore")
    except dbcmd.DbError as e:
        pytest.skip(str(e))
    admin = create_engine(normalise_url(server), isolation_level="AUTOCOMMIT")
    names = [f"wdb_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with admin.connect() as c:
        for n in names:
            c.execute(text(f'CREATE DATABASE "{n}"'))
    urls = [admin.url.set(database=n, drivername="postgresql").render_as_string(
        hide_password=False) for n in names]
    try:
        yield urls[0], urls[1]
    finally:
        with admin.connect() as c:
            for n in names:
                c.execute(text(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_postgresql_backup_and_restore(pg_databases: tuple[str, str], tmp_path: Path) -> None:
    src, dst = pg_databases
    eng = make_engine(src)
    exits = shop(eng)
    eng.dispose()
    dump = tmp_path / "store.dump"
    r = ok("backup", "--db", src, "--out", str(dump))
    assert f"revision {HEAD}" in r.stdout and "pg_dump custom format" in r.stdout
    assert dump.read_bytes()[:5] == b"PGDMP"
    refused(["backup", "--db", src, "--out", str(dump)], "exists; use --force")
    ok("restore", str(dump), "--db", dst)
    assert status(dst)["rows"] == status(src)["rows"]
    assert status(dst)["revision"] == HEAD
    # not into a database that holds something, unless told
    refused(["restore", str(dump), "--db", dst], "is not empty")
    ok("restore", str(dump), "--db", dst, "--force")
    assert status(dst)["rows"] == status(src)["rows"]
    refused(["restore", str(dump), "--db", sqlite_url(tmp_path / "x.db")],
            "is a pg_dump archive: restore it into a --db postgresql://")
    trunc = tmp_path / "trunc.dump"
    trunc.write_bytes(dump.read_bytes()[:4000])
    refused(["restore", str(trunc), "--db", dst, "--force"], "not a readable pg_dump archive")
    eng = make_engine(dst)
    svc = make_svc(eng)
    with svc.client:
        assert svc.client.get("/health").json() == {"status": "ok"}
        got = svc.client.get(f"/v1/receipts/{exits[1]['receipt_id']}", headers=svc.gate)
        assert got.status_code == 200 and got.json()["total"] == exits[1]["total"]["amount"]
    eng.dispose()


@pytest.mark.postgres
def test_postgresql_status_and_upgrade(pg_databases: tuple[str, str]) -> None:
    src, _ = pg_databases
    assert status(src)["state"] == "empty"
    eng = make_engine(src)
    upgrade(eng, PREV)
    eng.dispose()
    st = status(src)
    assert (st["revision"], st["state"], st["dialect"]) == (PREV, "behind", "postgresql")
    assert st["size_bytes"] > 0
    assert f"upgraded from {PREV} to {HEAD}" in ok("upgrade", "--db", src).stdout
    assert status(src)["state"] == "current"
