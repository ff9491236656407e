"""Durability benchmark: SIGKILL the real service mid-stream, restart it, and compare.

Why this shape. The service promises that a crash never loses a cart line and never charges
anyone twice; the only honest test of that is the real process (``walkout serve``) killed
without warning (SIGKILL: no ``finally``, no flush) at moments it did not choose. A run is
deterministic because the simulator is seeded and the engine is a pure function of its input
streams, so an uninterrupted run of the same seed on a fresh database is the reference: after
N kills and restarts on one database, its engine log, cart lines, receipts and money must be
the same, compared per engine credential (the service's own ids are random, the gate
credentials are not). Every start runs one frozen copy of the package (:func:`freeze_sources`),
so edits made to the checkout meanwhile cannot pass for crash damage.

Kill moments are seeded. Every restart replays the stream from its start (that is how the
runner recovers), so kills aim at sorted random stream positions: one beyond what is
committed is new work, killed a random fraction of a chunk's time after the checkpoint passes
it (down to the last exits and captures); one already committed is start-up, recovery or
replay, killed at a random moment between the reference run's first database write and the
time its replay reaches that position. "Finished" is the runner's final checkpoint, written
after ``Engine.finish()`` and the last receipts; the last start is left to answer ``/health``
and to finish.

Figures: ``sessions`` (visits of the reference run), ``lost_events`` (engine events and cart
lines of the reference missing or altered after the crashes), ``extra_events`` (the reverse),
``double_charges`` (money movements — service charges or ledger transactions — beyond the
reference's, per credential and kind), ``charge_mismatches`` (credentials whose money moved
differently), ``receipt_mismatches`` (credentials whose receipt differs, or is missing or
extra), ``state_mismatches`` (visits left in another state, e.g. unsettled), plus ``kills``,
``kill_points`` and ``seconds``.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from walkout.engine import EngineConfig
from walkout.service.db import normalise_url
from walkout.service.models import (
    CartLine,
    Charge,
    EngineEvent,
    LedgerTransaction,
    PaymentMethod,
    Receipt,
    ReceiptLine,
    RunnerCheckpoint,
    Visit,
)

Progress = Callable[[str], None]

#: charge kinds that take or hold a payer's money (a release or refund gives it back)
MONEY_KINDS = ("preauth", "capture")


class DurabilityError(RuntimeError):
    """The service did not get through a run (crashed on its own, hung, or refused to start)."""


# ---- what a database holds, keyed by engine credential ----------------------------------------


@dataclass
class Snapshot:
    """The durable state of one run, keyed so that two runs of one seed compare equal."""

    events: dict[tuple[str, int], tuple[str, float, str]] = field(default_factory=dict)
    lines: dict[str, Counter[tuple[str, str, int, str, str]]] = field(default_factory=dict)
    receipts: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    charges: dict[str, Counter[tuple[str, str, str]]] = field(default_factory=dict)
    ledger: dict[str, Counter[tuple[str, str]]] = field(default_factory=dict)
    states: dict[str, list[str]] = field(default_factory=dict)


def read_engine(url: str) -> Engine:
    """A plain engine for reading (no ``BEGIN IMMEDIATE``: reading must not block the server)."""
    return create_engine(normalise_url(url))


def snapshot(url: str) -> Snapshot:
    """Read engine log, cart lines, receipts, charges, ledger and visit states from ``url``."""
    eng = read_engine(url)
    snap = Snapshot()
    try:
        with eng.connect() as c:
            # (columns unpacked, not read as attributes: ``Row.t`` is the row as a tuple)
            for src, seq, kind, t, payload in c.execute(select(
                    EngineEvent.source, EngineEvent.seq, EngineEvent.kind, EngineEvent.t,
                    EngineEvent.payload)):
                snap.events[(src, seq)] = (kind, t, payload)
            cred = {v.id: v.credential for v in c.execute(select(Visit.id, Visit.credential))}
            for v in c.execute(select(Visit.credential, Visit.state)):
                snap.states.setdefault(v.credential, []).append(v.state)
            for ln in c.execute(select(CartLine)):
                snap.lines.setdefault(cred[ln.visit_id], Counter())[
                    (ln.line_key, ln.product_id, ln.quantity, str(ln.unit_price), ln.event_id)] += 1
            rlines: dict[str, list[tuple[Any, ...]]] = {}
            for rl in c.execute(select(ReceiptLine).order_by(ReceiptLine.receipt_id,
                                                             ReceiptLine.position)):
                rlines.setdefault(rl.receipt_id, []).append(
                    (rl.position, rl.product_id, rl.name, rl.quantity, str(rl.unit_price),
                     str(rl.amount), rl.events))
            for r in c.execute(select(Receipt)):
                snap.receipts.setdefault(cred[r.visit_id], []).append(
                    (r.currency, str(r.total), bool(r.needs_review),
                     tuple(rlines.get(r.id, []))))
            for ch in c.execute(select(Charge)):
                snap.charges.setdefault(cred[ch.visit_id], Counter())[
                    (ch.kind, ch.status, str(ch.amount))] += 1
            payer = {pm: c_ for pm, c_ in c.execute(
                select(PaymentMethod.provider_ref, Visit.credential)
                .join(Visit, Visit.payment_method_id == PaymentMethod.id))}
            if inspect(c).has_table(LedgerTransaction.__tablename__):
                for tx in c.execute(select(LedgerTransaction)):
                    who = payer.get(tx.payer_ref, f"payer:{tx.payer_ref}")
                    snap.ledger.setdefault(who, Counter())[(tx.kind, str(tx.amount))] += 1
    finally:
        eng.dispose()
    return snap


def _lost(ref: Counter[Any], got: Counter[Any]) -> int:
    return sum((ref - got).values())


def compare(ref: Snapshot, got: Snapshot) -> dict[str, Any]:
    """Differences of ``got`` (the crashed run) from ``ref`` (the uninterrupted run).

    Every count is zero exactly when the two runs hold the same durable state; ``where``
    names the credentials (or event keys) behind each non-zero count.
    """
    where: dict[str, list[str]] = {}

    def note(kind: str, what: str) -> None:
        where.setdefault(kind, []).append(what)

    lost_ev = [k for k, v in ref.events.items() if got.events.get(k) != v]
    extra_ev = [k for k in got.events if k not in ref.events]
    lost_lines = extra_lines = 0
    for cred in sorted(set(ref.lines) | set(got.lines)):
        a, b = ref.lines.get(cred, Counter()), got.lines.get(cred, Counter())
        lo, ex = _lost(a, b), _lost(b, a)
        lost_lines, extra_lines = lost_lines + lo, extra_lines + ex
        if lo or ex:
            note("cart_lines", f"{cred}: {lo} lost, {ex} extra")
    for k in lost_ev:
        note("engine_events", f"{k[0]}#{k[1]} lost or altered")
    for k in extra_ev:
        note("engine_events", f"{k[0]}#{k[1]} extra")

    double = 0
    money_diff: set[str] = set()
    for cred in sorted(set(ref.charges) | set(got.charges) | set(ref.ledger) | set(got.ledger)):
        for table, src in (("charges", (ref.charges, got.charges)),
                           ("ledger", (ref.ledger, got.ledger))):
            a, b = src[0].get(cred, Counter()), src[1].get(cred, Counter())
            if a != b:
                money_diff.add(cred)
                note("money", f"{cred}: {table} {dict(a)} vs {dict(b)}")
        for kind in MONEY_KINDS:  # one movement counted once, whichever record shows it more
            n_ref = max(_count_kind(ref.charges.get(cred), kind, ok_only=True),
                        _count_kind(ref.ledger.get(cred), kind))
            n_got = max(_count_kind(got.charges.get(cred), kind, ok_only=True),
                        _count_kind(got.ledger.get(cred), kind))
            if n_got > n_ref:
                double += n_got - n_ref
                note("double_charges", f"{cred}: {n_got} × {kind}, uninterrupted {n_ref}")

    receipt_mm = 0
    for cred in sorted(set(ref.receipts) | set(got.receipts)):
        if ref.receipts.get(cred) != got.receipts.get(cred):
            receipt_mm += 1
            note("receipts", f"{cred}: {ref.receipts.get(cred)} vs {got.receipts.get(cred)}")
    state_mm = 0
    for cred in sorted(set(ref.states) | set(got.states)):
        if sorted(ref.states.get(cred, [])) != sorted(got.states.get(cred, [])):
            state_mm += 1
            note("states", f"{cred}: {ref.states.get(cred)} vs {got.states.get(cred)}")
    return {
        "sessions": len(ref.states),
        "sessions_after_kills": len(got.states),
        "engine_events": len(ref.events),
        "cart_lines": sum(sum(c.values()) for c in ref.lines.values()),
        "lost_events": len(lost_ev) + lost_lines,
        "lost_engine_events": len(lost_ev),
        "lost_cart_lines": lost_lines,
        "extra_events": len(extra_ev) + extra_lines,
        "double_charges": double,
        "charge_mismatches": len(money_diff),
        "receipt_mismatches": receipt_mm,
        "state_mismatches": state_mm,
        "where": {k: v[:20] for k, v in where.items()},
    }


def _count_kind(c: Counter[tuple[str, ...]] | None, kind: str, ok_only: bool = False) -> int:
    if not c:
        return 0
    return sum(n for k, n in c.items() if k[0] == kind and (not ok_only or k[1] == "succeeded"))


# ---- the service process ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServeSpec:
    """How `walkout serve` is started for one run (the same for every restart of a run)."""

    db_url: str
    shoppers: int
    seed: int
    store: str = "small"
    workdir: Path = Path(".")
    pythonpath: Path | None = None  # a frozen copy of the package (see freeze_sources)

    def argv(self, port: int) -> list[str]:
        return [sys.executable, "-m", "walkout.cli", "serve", "--db", self.db_url,
                "--store", self.store, "--source", "sim", "--shoppers", str(self.shoppers),
                "--seed", str(self.seed), "--speed", "0", "--port", str(port)]

    def spawn(self, log: Path) -> tuple[subprocess.Popen[bytes], int]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("WALKOUT_DB_URL", None)
        if self.pythonpath is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                [str(self.pythonpath.resolve()), *filter(None, [env.get("PYTHONPATH")])])
        port = free_port()
        with log.open("ab") as out:
            return subprocess.Popen(self.argv(port), cwd=self.workdir, stdout=out,
                                    stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True), port


def sources_fingerprint(root: Path | None = None) -> str:
    """SHA-256 of the walkout package's sources (``root``: a copy of the package)."""
    import hashlib

    import walkout

    root = root or Path(walkout.__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def freeze_sources(workdir: Path) -> tuple[Path, str]:
    """A private copy of the walkout package for every spawn of a benchmark.

    Each restart imports the code afresh, and others may be editing the checkout meanwhile:
    without a frozen copy, the reference and the restarts could run different simulators or
    runners and the comparison would measure the edit, not the crash. Returns the directory
    to put first on ``PYTHONPATH`` and the copy's fingerprint.
    """
    import shutil

    import walkout

    src = Path(walkout.__file__).parent
    dst = workdir / "frozen-src"
    for _ in range(5):
        before = sources_fingerprint(src)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst / "walkout", ignore=shutil.ignore_patterns("__pycache__"))
        code = sources_fingerprint(dst / "walkout")
        if code == before:
            return dst, code
    raise DurabilityError("the walkout sources keep changing: could not take a stable copy")


def final_chunk(store: str, shoppers: int, seed: int) -> tuple[int, int]:
    """The runner's last checkpoint for this source (``len(edges)``, as ``LiveRunner.run``
    writes it after ``Engine.finish()``) and the number of entry scans the source holds."""
    from walkout.sim.session import simulate
    from walkout.sources.recording import Sensors
    from walkout.store import load_store

    sn = Sensors.from_session(simulate(load_store(store), shoppers, seed))
    edges = sn.edges(EngineConfig().chunk_s)
    return len(edges), sum(1 for g in sn.gates if g.kind == "entry" and g.credential)


class Probe:
    """Reads the runner's progress from the database without disturbing the server."""

    def __init__(self, url: str) -> None:
        self.url = url
        u = make_url(normalise_url(url))
        self.sqlite_path = u.database if u.get_backend_name() == "sqlite" else None
        self._eng: Engine | None = None

    def _engine(self) -> Engine | None:
        if self.sqlite_path is not None and not Path(self.sqlite_path).exists():
            return None  # not created yet (connecting would create it)
        if self._eng is None:
            self._eng = read_engine(self.url)
        return self._eng

    def touched(self) -> bool:
        """Has the service started writing (its migrations ran)?"""
        eng = self._engine()
        if eng is None:
            return False
        try:
            with eng.connect() as c:
                return inspect(c).has_table("alembic_version")
        except Exception:  # mid-creation: not yet
            return False

    def chunk(self) -> int:
        eng = self._engine()
        if eng is None:
            return -1
        try:
            with eng.connect() as c:
                v = c.execute(select(RunnerCheckpoint.chunk)).scalars().all()
        except Exception:  # table not there yet, or locked for a moment
            return -1
        return max(v, default=-1)

    def close(self) -> None:
        if self._eng is not None:
            self._eng.dispose()


def _tail(log: Path, n: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _wait(proc: subprocess.Popen[bytes], probe: Probe, done_chunk: int, deadline_s: float,
          log: Path, until_s: float | None = None, until_chunk: int | None = None,
          on_touch: Callable[[float], None] | None = None) -> tuple[bool, float]:
    """Poll until the run is done, or ``until_s`` after the call, or the checkpoint reaches
    ``until_chunk``; returns (done, seconds). Raises when the service fails on its own."""
    t0 = time.monotonic()
    touched = False
    while True:
        el = time.monotonic() - t0
        if until_s is not None and el >= until_s:
            return probe.chunk() >= done_chunk, el
        if on_touch is not None and not touched and probe.touched():
            touched = True
            on_touch(el)
        ck = probe.chunk()
        if until_s is None and ck >= min(done_chunk, until_chunk or done_chunk):
            return ck >= done_chunk, el
        if proc.poll() is not None:
            raise DurabilityError(f"`walkout serve` exited on its own (rc {proc.returncode}):\n"
                                  + _tail(log))
        if el > deadline_s:
            raise DurabilityError(f"run not finished after {deadline_s:.0f} s (checkpoint "
                                  f"{ck} of {done_chunk}):\n" + _tail(log))
        if "engine runner stopped on an error" in log.read_text(errors="replace"):
            raise DurabilityError("the engine runner stopped on an error:\n" + _tail(log, 60))
        time.sleep(0.05)


def _wait_health(proc: subprocess.Popen[bytes], port: int, deadline_s: float, log: Path) -> None:
    """Until the service answers ``GET /health`` (its start-up recovery has run)."""
    import urllib.request

    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        if proc.poll() is not None:
            raise DurabilityError(f"`walkout serve` exited on its own (rc {proc.returncode}):\n"
                                  + _tail(log))
        with suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/health",
                                                       timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.1)
    raise DurabilityError(f"`walkout serve` did not answer /health in {deadline_s:.0f} s")


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


# ---- databases ---------------------------------------------------------------------------------


@contextmanager
def fresh_databases(db: str | None, workdir: Path, keep: bool = False,
                    names: tuple[str, ...] = ("reference", "crashed")) -> Iterator[list[str]]:
    """Empty databases, one per name: SQLite files in ``workdir`` by default, or new databases
    on the PostgreSQL server of ``db`` (dropped afterwards unless ``keep``)."""
    if db is None or make_url(normalise_url(db)).get_backend_name() == "sqlite":
        urls = [f"sqlite:///{(workdir / f'{n}.db').resolve()}" for n in names]
        there = [f"{make_url(u).database}{suffix}" for u in urls for suffix in ("", "-wal", "-shm")
                 if Path(f"{make_url(u).database}{suffix}").exists()]
        if there:  # a user's database is never deleted to make room for a bench
            raise FileExistsError(f"{there[0]} exists: give an empty --workdir")
        yield urls
        return
    admin = create_engine(normalise_url(db), isolation_level="AUTOCOMMIT")
    tag = uuid.uuid4().hex[:8]
    dbs = [f"walkout_bench_{tag}_{n}" for n in names]
    with admin.connect() as c:
        for n in dbs:
            c.execute(text(f'CREATE DATABASE "{n}"'))
    try:
        yield [admin.url.set(database=n).render_as_string(hide_password=False) for n in dbs]
    finally:
        if not keep:
            with admin.connect() as c:
                for n in dbs:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'))
        admin.dispose()


# ---- the benchmark ---------------------------------------------------------------------------


@dataclass
class DurabilityRun:
    """Figures of a run and where its databases are (for tests that tamper with them)."""

    figures: dict[str, Any]
    reference_url: str
    crashed_url: str


def run_durability(kills: int, seed: int, shoppers: int, workdir: Path, db: str | None = None,
                   store: str = "small", progress: Progress | None = None,
                   keep: bool = False) -> dict[str, Any]:
    """Reference run, then ``kills`` SIGKILLs and restarts on a second database; compare."""
    with fresh_databases(db, workdir, keep) as (ref_url, crash_url):
        return run_on(ref_url, crash_url, kills, seed, shoppers, workdir, store,
                      progress).figures


def run_on(ref_url: str, crash_url: str, kills: int, seed: int, shoppers: int, workdir: Path,
           store: str = "small", progress: Progress | None = None) -> DurabilityRun:
    """:func:`run_durability` on two given empty databases (left in place afterwards)."""
    say = progress or (lambda _: None)
    t_start = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    frozen, code = freeze_sources(workdir)
    done_chunk, scans = final_chunk(store, shoppers, seed)
    if sources_fingerprint() != code:  # final_chunk imported the simulator just now
        raise DurabilityError("the walkout sources changed while the benchmark started: run it "
                              "again")

    # 1. the reference: uninterrupted
    say(f"reference run ({shoppers} shoppers, seed {seed}, {done_chunk} checkpoints)")
    ref_spec = ServeSpec(ref_url, shoppers, seed, store, workdir, frozen)
    log = workdir / "reference.log"
    probe = Probe(ref_url)
    touched_at: list[float] = []
    proc, _ = ref_spec.spawn(log)
    try:
        _, t_done = _wait(proc, probe, done_chunk, 600.0, log, on_touch=touched_at.append)
    finally:
        _stop(proc)
        probe.close()
    t_touch = touched_at[0] if touched_at else 0.0
    say(f"reference done in {t_done:.1f} s (database first touched at {t_touch:.1f} s)")

    # 2. the same seed, killed ``kills`` times at sorted random stream positions: a position
    # beyond what is committed is new work (killed a random fraction of a chunk's time after
    # the checkpoint passes it); one already committed is start-up or replay (killed at a
    # random moment between the first database write and the time the replay gets there)
    rng = random.Random(seed)
    targets = sorted(rng.randint(1, done_chunk) for _ in range(kills))
    chunk_wall = max(t_done - t_touch, 0.1) / done_chunk
    spec = ServeSpec(crash_url, shoppers, seed, store, workdir, frozen)
    log = workdir / "crashed.log"
    probe = Probe(crash_url)
    points: list[dict[str, Any]] = []
    deadline = 10 * t_done + 60
    try:
        for k, target in enumerate(targets):
            extra = rng.uniform(0, chunk_wall)
            at = rng.uniform(t_touch, t_touch + (t_done - t_touch) * target / done_chunk)
            before = probe.chunk()
            mode = "new work" if target > before else "start-up/replay"
            proc, _ = spec.spawn(log)
            try:
                if target > before:
                    _, el = _wait(proc, probe, done_chunk, deadline, log, until_chunk=target)
                    done, el2 = _wait(proc, probe, done_chunk, deadline, log, until_s=extra)
                    el += el2
                else:
                    done, el = _wait(proc, probe, done_chunk, deadline, log, until_s=at)
            finally:
                _stop(proc, signal.SIGKILL)
            now = probe.chunk()
            points.append({"mode": mode, "position": target, "after_s": round(el, 3),
                           "checkpoint_before": before, "checkpoint_at_kill": now,
                           "finished": done})
            say(f"kill {k + 1}/{kills} ({mode}, position {target}) at {el:.2f} s "
                f"(checkpoint {now}/{done_chunk})")
        proc, port = spec.spawn(log)  # the last start: up (recovery done), then to the end
        try:
            _wait_health(proc, port, deadline, log)
            _, t_last = _wait(proc, probe, done_chunk, deadline, log)
        finally:
            _stop(proc)
    finally:
        probe.close()
    say(f"finished after the kills ({t_last:.1f} s); comparing")
    figures = {
        "store": store, "seed": seed, "shoppers": shoppers, "entry_scans": scans,
        "db": make_url(ref_url).get_backend_name(), "kills": kills,
        **compare(snapshot(ref_url), snapshot(crash_url)),
        "kills_before_finish": sum(1 for p in points if not p["finished"]),
        "kills_in_new_work": sum(1 for p in points if p["mode"] == "new work"),
        "reference_run_s": round(t_done, 2),
        "seconds": round(time.monotonic() - t_start, 1),
        "kill_points": points,
    }
    return DurabilityRun(figures, ref_url, crash_url)
