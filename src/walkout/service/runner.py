"""The engine running live inside the service, durable across crashes.

The engine is a deterministic function of its input streams, so recovery is a replay: on start
the runner feeds the source again from the beginning and every output is written idempotently
— gate and shelf events under a unique (source, seq), cart lines under a unique (visit, line
key), charges under their visit's idempotency keys. What was committed before a crash is found
again and not duplicated; what was not is written now. A chunk's outputs are committed before
its checkpoint, and the checkpoint before the next chunk is read.

Entry gate events from the source go through the entry logic (a visit and a pre-auth per
scan; the scan's credential is the payer's token), receipts the engine issues at exit go
through checkout (capture or release). A ``staff:`` credential is a badge the gate checked
(``walkout.service.staff``): no visit, no pre-auth; the engine tracks a staff session. The
operator's store mode (restock mode) reaches the engine at chunk starts
(``walkout.service.store_mode``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from contextlib import suppress
from dataclasses import asdict, replace
from typing import Any

from sqlalchemy import select

from walkout.cart.sessions import STAFF_PREFIX, SessionState, is_staff_credential
from walkout.checkout import Receipt
from walkout.engine import Decision, Engine, EngineConfig
from walkout.events import Alert, GateEvent
from walkout.review import ReviewCase
from walkout.seqlog import SeqLog
from walkout.service import checkout, entry, live, redact, revisions, store_mode
from walkout.service.checkout import LineRequest, insert_ignore
from walkout.service.deps import Deps
from walkout.service.errors import ServiceError
from walkout.service.models import CartLine, EngineEvent, RunnerCheckpoint, Visit
from walkout.service.staff import active_staff
from walkout.sources.recording import Sensors
from walkout.sources.wire import is_credential

log = logging.getLogger("walkout.service.runner")

#: niceness of the engine worker process (relative to the API's)
WORKER_NICE = 5

#: why an entry scan of a sensor source binds nobody: the kind of the alert the runner raises
#: (beside the engine's ``unbound_person`` for whoever walks in on it), and what it says
NOT_BOUND = {
    "credential_missing": "it carries no credential",
    "credential_reused": "its credential entered before in this stream",
    "entry_refused": "the service admitted no visit for its credential (refused, or never "
                     "admitted)",
    "entry_not_open": "its visit is not open (its pre-authorisation has no answer yet, or "
                      "the visit is closed)",
    "staff_badge_refused": "a staff credential that names no active staff account, or for "
                           "a party of more than one",
}


def _still_inside(eng: Engine, credential: str, before: float) -> bool:
    """Whether the entry on ``credential`` at ``before`` has not left: its session is open
    (or checking out), or the engine has none for it yet (it entered in this very chunk).
    One it has none for from an earlier chunk left long ago (``forget_visits_s``)."""
    mine = [s for s in eng.book.sessions.values() if s.credential == credential]
    if not mine:
        return before >= eng.now
    return any(s.state != SessionState.CLOSED for s in mine)


class WorkerProcess:
    """Runs a runner (``runner(deps, stop)``) in a separate process beside the API.

    The engine is CPU-bound Python; in the API's process it would hold the GIL against every
    request. Here it gets a process of its own (``spawn``: nothing of the parent's threads,
    pools or sockets is inherited) that builds its own database engine, provider and mailer
    from ``settings`` and writes to the same database; everything it writes is idempotent, so
    it needs nothing from the API process. Use as ``create_app(background=...)``: the API's
    background thread starts the worker, watches it and stops it (``stop`` → the worker's
    own event, then terminate after ``grace_s``). The worker dies with the API process
    (``PR_SET_PDEATHSIG``, and a parent check): a SIGKILLed service leaves no orphan engine
    behind to race its successor.

    A worker that dies before the service stops (its runner failed, the kernel's OOM killer,
    a crash) is started again after ``restart_s`` (doubling up to a minute while it keeps
    dying within the minute): its runner continues from what it committed (a recording's
    checkpoint, a live stream's journal and snapshot). Before, the service went on answering
    at the door with no engine behind it until somebody restarted it. A worker that exits
    cleanly (code 0) is not started again.
    """

    def __init__(self, runner: Any, settings: Any, grace_s: float = 30.0,
                 mail: bool = True, restart_s: float = 2.0) -> None:
        self.runner, self.settings, self.grace_s, self.mail = runner, settings, grace_s, mail
        self.restart_s = restart_s
        self.exitcode: int | None = None
        self.restarts = 0  # workers started again after one died

    def __call__(self, d: Deps, stop: threading.Event) -> None:
        import multiprocessing as mp
        import signal

        ctx = mp.get_context("spawn")
        # Ctrl-C at the terminal reaches the whole process group; the worker is stopped by
        # ``child_stop`` instead. A signal blocked in this thread stays blocked in the child
        # it starts (across exec), so not even the seconds of its start-up are exposed.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        delay = self.restart_s
        while True:
            child_stop = ctx.Event()
            proc = ctx.Process(target=_worker_main, name="walkout-engine", daemon=True,
                               args=(self.runner, self.settings, child_stop, os.getpid(),
                                     self.mail))
            proc.start()
            started = time.monotonic()
            log.info("engine worker started (pid %s)", proc.pid)
            while not stop.wait(0.5):
                if not proc.is_alive():
                    break
            child_stop.set()
            proc.join(self.grace_s)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            self.exitcode = proc.exitcode
            if stop.is_set() or proc.exitcode in (0, None):
                return
            if time.monotonic() - started > 60.0:
                delay = self.restart_s  # it ran a while: a new failure, not the same one
            log.error("engine worker exited with code %s: starting it again in %.0f s (it "
                      "continues from what it committed)", proc.exitcode, delay)
            if stop.wait(delay):
                return
            delay = min(60.0, 2 * delay)
            self.restarts += 1


def _die_with_parent(parent_pid: int) -> None:
    import signal

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)

    def watch() -> None:  # where prctl is missing: poll the parent
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def worker_deps(settings: Any, store: Any) -> Deps:
    """The dependencies of an engine worker, made from the service's settings."""
    from walkout.service.app import _mailer
    from walkout.service.clock import SystemClock
    from walkout.service.db import make_engine, session_factory
    from walkout.service.payments.configured import configured_provider

    engine = make_engine(settings.db_url, synchronous=settings.sqlite_synchronous)
    sessions = session_factory(engine)
    clock = SystemClock()
    # the worker exits visits (captures) and applies verdicts (refunds): the API's provider
    return Deps(settings, sessions, clock, configured_provider(settings, sessions, clock),
                _mailer(settings), store)


def _worker_main(runner: Any, settings: Any, stop: Any, parent_pid: int, mail: bool) -> None:
    import signal

    _die_with_parent(parent_pid)
    # Ctrl-C at the terminal reaches the whole process group: the service's shutdown stops
    # this worker through ``stop`` (committing the chunk in hand), not a KeyboardInterrupt
    # in the middle of it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the API answers people at the door; the engine is paced in 5 s chunks and has slack:
    # under CPU contention the API goes first
    with suppress(OSError):
        os.nice(WORKER_NICE)
    # a spawned process starts with the default log record factory: scrub personal and card
    # data here too (SMTP errors name recipients, database errors carry bound parameters)
    redact.install()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: [engine] %(message)s")
    d = worker_deps(settings, runner.store)
    if mail:  # the service's receipt outbox: e-mails rendered and sent here, not in the API
        from walkout.service.receipting import mail_loop

        threading.Thread(target=mail_loop, args=(d, stop), name="mail", daemon=True).start()
    try:
        runner(d, stop)
    except Exception:  # logged by the runner: this worker ends, the service starts another
        sys.exit(1)
    stop.wait()  # the stream ended: keep the outbox going until the service stops


#: a store's engine lets a visit go this long after it was settled (``forget_visits_s``): a
#: review verdict names only the sessions of its case, which stay while it is open
LIVE_FORGET_VISITS_S = 3600.0


def live_config() -> EngineConfig:
    """The engine configuration of a store's service: its defaults, visits let go."""
    return EngineConfig(forget_visits_s=LIVE_FORGET_VISITS_S)


class LiveRunner:
    """Runs ``Engine`` over ``sensors`` chunk by chunk; ``speed`` 1.0 paces it in real time
    (a live store), None runs as fast as it can (replays, tests)."""

    def __init__(self, sensors: Sensors, source: str, speed: float | None = None,
                 config: EngineConfig | None = None, stop_after_chunk: int | None = None) -> None:
        self.sensors, self.source, self.speed = sensors, source, speed
        self.config = config or live_config()
        self.stop_after_chunk = stop_after_chunk  # for crash tests: stop as if killed there
        self.chunks_done = 0

    @property
    def store(self) -> Any:
        return self.sensors.store

    def input_stats(self) -> dict[str, Any]:
        """For the health page: what loading the recording put right (empty for a simulation
        or a clean recording)."""
        return {"notes": list(self.sensors.notes)}

    #: the Ray cluster the engine's stages run on (``walkout serve --ray``); None: in-process
    ray_address: str | None = None

    def _engine(self) -> Engine:
        """A fresh engine for this run, distributed when :attr:`ray_address` is set."""
        if self.ray_address:
            from walkout.distributed import DistributedEngine

            return DistributedEngine(self.store, self.config, ray_address=self.ray_address)
        return Engine(self.store, self.config)

    def __call__(self, d: Deps, stop: threading.Event) -> None:
        try:
            self.run(d, stop)
        except Exception:
            log.exception("engine runner stopped on an error")
            raise  # in a worker process: the service starts another (WorkerProcess)

    def run(self, d: Deps, stop: threading.Event | None = None) -> None:
        eng = self._engine()
        sn = self.sensors
        chunk = self.config.chunk_s
        n_chunks = len(sn.edges(chunk)) - 1
        recorded = sn.mode_steps(chunk)  # the recording's own store-mode changes (its input)
        with d.sessions() as s:
            cp = s.get(RunnerCheckpoint, self.source)
            resume = cp.chunk if cp else -1
        if resume >= 0:
            log.info("resuming %s after chunk %d (replaying the log)", self.source, resume)
        seen = {"gates": 0, "shelf": 0, "decisions": 0, "cases": 0, "lines": 0, "receipts": 0}
        start = time.monotonic()
        t_prev = 0.0  # stream time the chunk starts at
        for i, (block, frames, gates, b) in enumerate(sn.chunks(chunk)):
            if stop is not None and stop.is_set():
                return
            if self.speed and i > resume:
                wait = b / self.speed - (time.monotonic() - start)
                if wait > 0 and stop is not None and stop.wait(wait):
                    return
            for t_mode, closed in recorded[i]:  # replayed chunks too: not from the database
                eng.set_store_mode(max(t_mode, eng.store_modes[-1][0]) if eng.store_modes
                                   else t_mode, closed)
            opened = self._inputs(d, eng, i, t_prev, gates, fresh=i > resume)
            t_prev = b
            eng.step(block, frames, opened, b)
            self._persist(d, eng, seen, i, b, log_rows=i > resume, fresh=i >= resume)
            self.chunks_done = i + 1
            if self.stop_after_chunk is not None and i >= self.stop_after_chunk:
                return
        eng.finish()
        self._persist(d, eng, seen, n_chunks + 1, sn.duration_s, log_rows=n_chunks + 1 > resume,
                      fresh=n_chunks + 1 >= resume)
        # the stream ended, its review cases did not: verdicts still revise their receipts
        while stop is not None and not stop.wait(1.0):
            if any(c.open for c in eng.cases.values()):
                self._persist(d, eng, seen, n_chunks + 1, sn.duration_s)

    def _inputs(self, d: Deps, eng: Engine, i: int, t0: float, gates: list[GateEvent],
                fresh: bool) -> list[GateEvent]:
        """What chunk ``i`` (starting at stream time ``t0``) gives the engine besides its
        readings: its entry scans admitted (``fresh``: a chunk never processed before; a
        replayed one was admitted then, or erased since), the operator's store mode due, and
        the gate events the engine sees (:meth:`_opened`)."""
        if fresh:
            self._admit(d, gates)
            if i == 0:
                store_mode.carry_over(d, self.source, t0)
        store_mode.apply_modes(d, eng, self.source, i, t0, fresh=fresh)
        return self._opened(d, gates, eng, fresh=fresh)

    def _gate_log(self) -> list[GateEvent]:
        """Every gate event of the source so far, in time order (a live source grows it)."""
        return self.sensors.gates

    # ---- one chunk's outputs -----------------------------------------------------------------

    def _opened(self, d: Deps, gates: list[GateEvent], eng: Engine | None = None,
                fresh: bool = True) -> list[GateEvent]:
        """The gate events the engine sees. An entry scan binds its person to a visit only
        when (:meth:`_binding`) its credential names a visit the service admitted and that is
        still ``open`` (not refused, not ``authorizing``: a pre-authorisation with no answer,
        not closed), entering for the first time in this stream, or an active staff account's
        badge for one person. Any other scan did not open the gate for anybody the service can
        charge: it is dropped, so whoever walks in on it is an unbound person (the engine's
        ``unbound_person`` alert, charged to no visit, as any tailgater), and the runner
        raises an alert that says why (:data:`NOT_BOUND`). A bound scan's party is the
        visit's, not the gate event's.

        Each scan's binding is decided once, when its chunk is first processed, and logged
        with the scan's event-log row (``refused``: why not; ``party``: the party bound):
        a replay after a restart takes it from there, so it binds the same people however the
        visits changed since (charged, erased, an ``authorizing`` one finished). Dropping or
        adding a scan on a replay would renumber every later session (the engine numbers them
        in order of entry), and the verdicts, review cases and map rows that name those
        numbers would point at other shoppers.

        A visit erased since has lost its credential, but it was an entry: its scan is still
        bound, under a credential that names nobody (``erased:<gate>:<t>``, which no visit
        has, so nothing is charged). The log's entry row of an erased visit says ``erased``
        (:mod:`walkout.service.privacy`)."""
        entries = [g for g in gates if g.kind == "entry"]
        if not entries:
            return gates
        pos, before = self._entered_before(entries)
        logged = self._logged(d, entries, pos)
        out: list[GateEvent] = []
        for g in gates:
            if g.kind != "entry":
                out.append(g)
                continue
            b = self._binding(d, g, logged.get(id(g)), before[id(g)], fresh, eng)
            self._bindings[pos[id(g)]] = b
            if "refused" in b:
                self._not_bound(eng, g, b["refused"], before[id(g)])
                continue
            cred = b.get("credential", g.credential)
            out.append(replace(g, credential=cred, party_size=b.get("party", g.party_size)))
        return out

    @property
    def _bindings(self) -> dict[int, dict[str, Any]]:
        """Bindings decided in this chunk, by the scan's gate-log seq: logged by _persist."""
        return self.__dict__.setdefault("_bindings_", {})

    def _entered_before(self, entries: list[GateEvent]
                        ) -> tuple[dict[int, int], dict[int, float | None]]:
        """Each of ``entries``' seq in the gate log (its event-log row's), and when its
        credential entered before in this stream (None: never). Read from the stream's own
        gate events, so a replay finds the same."""
        want = {id(g) for g in entries}
        pos: dict[int, int] = {}
        before: dict[int, float | None] = {}
        first: dict[str, float] = {}
        for k, ev in enumerate(self._gate_log()):
            if id(ev) in want:
                pos[id(ev)] = k
                before[id(ev)] = first.get(ev.credential) if ev.credential else None
                if len(pos) == len(want):
                    break
            if ev.kind == "entry" and ev.credential:
                first.setdefault(ev.credential, ev.t)
        for g in entries:  # pragma: no cover - every chunk's gate event is in the log
            if id(g) not in pos:
                raise RuntimeError(f"gate event at {g.gate_id} t={g.t} is not in the gate log")
        return pos, before

    def _logged(self, d: Deps, entries: list[GateEvent], pos: dict[int, int]
                ) -> dict[int, dict[str, Any]]:
        """The event-log rows of ``entries`` already written (a replayed chunk's, or a fresh
        one's a crash interrupted), by the scan's ``id``."""
        by_seq = {pos[id(g)]: g for g in entries}
        with d.sessions() as s:
            rows = s.execute(select(EngineEvent.seq, EngineEvent.payload).where(
                EngineEvent.source == f"{self.source}/gates", EngineEvent.kind == "entry",
                EngineEvent.seq.in_(list(by_seq))))
            out = {}
            for seq, payload in rows:
                p, g = json.loads(payload), by_seq[seq]
                if p.get("gate_id") == g.gate_id and p.get("t") == g.t:
                    out[id(g)] = p
            return out

    def _binding(self, d: Deps, g: GateEvent, row: dict[str, Any] | None,
                 before: float | None, fresh: bool, eng: Engine | None = None
                 ) -> dict[str, Any]:
        """How entry scan ``g`` binds: ``{"party": n}`` (with ``credential`` when its visit
        was erased since) or ``{"refused": reason}`` (:data:`NOT_BOUND`). ``row``: its
        event-log row, where an earlier run logged the decision; ``before``: when its
        credential entered before in this stream; ``fresh``: its chunk is processed for the
        first time; ``eng``: the engine before this chunk (whether a staff badge's earlier
        entry left)."""
        erased = f"erased:{g.gate_id}:{g.t:.3f}"
        if row is not None and ("refused" in row or "party" in row):
            b = {k: row[k] for k in ("refused", "party") if k in row}
            if row.get("credential") == "erased" and "party" in b:
                b["credential"] = erased
            return b
        # ``old``: the row of a run before bindings were logged: the same as that run did
        # (bound unless its visit was refused), whatever it did wrong, or every later session
        # would be renumbered
        old = row is not None
        if old and row.get("credential") == "erased":
            return {"party": g.party_size, "credential": erased}
        cred = g.credential
        if not cred:
            return {"refused": "credential_missing"}
        if is_staff_credential(cred):
            if old:
                return {"party": g.party_size}
            if g.party_size != 1 or active_staff(d, cred.removeprefix(STAFF_PREFIX)) is None:
                return {"refused": "staff_badge_refused"}
            if before is not None and eng is not None and _still_inside(eng, cred, before):
                # associates come and go all day on one badge, but one at a time: a second
                # person on a badge whose holder is inside is nobody's staff (staff are never
                # charged, so a lent badge would be free shopping)
                return {"refused": "credential_reused"}
            return {"party": 1}
        if before is not None and not old:
            return {"refused": "credential_reused"}
        if not is_credential(cred):
            return {"refused": "entry_refused"}
        with d.sessions() as s:
            v = s.execute(select(Visit.state, Visit.party_size).where(
                Visit.credential == cred)).first()
        if v is None or v.state == "refused":
            return {"refused": "entry_refused"}
        if old:
            return {"party": g.party_size}
        if fresh and v.state != "open":
            return {"refused": "entry_not_open"}
        # not fresh and no row: a replayed chunk whose row the retention purge removed; its
        # visit was open then, as far as anything left can tell
        return {"party": v.party_size}

    def _not_bound(self, eng: Engine | None, g: GateEvent, reason: str,
                   before: float | None) -> None:
        """Say why an entry scan binds nobody: logged, and an alert the engine's outputs carry
        (raised again, the same, by a replay)."""
        why = NOT_BOUND.get(reason, reason)
        if reason == "credential_reused" and before is not None:
            why += f" (at t={before:.1f} s)"
        msg = (f"an entry scan at {g.gate_id} at t={g.t:.1f} s binds nobody: {why}. Whoever "
               "walked in on it is an unbound person, charged to no visit")
        log.warning("%s", msg)
        if eng is not None:
            eng.alerts.append(Alert(g.t, reason, msg, g.gate_id))

    def _admit(self, d: Deps, gates: list) -> None:  # type: ignore[type-arg]
        """Admit each entry scan's visit (its pre-authorisation) that is not admitted yet.
        Whatever goes wrong with one scan (a refusal, a provider's fault, a database error)
        is logged with its gate and time and leaves that scan refused: one bad gate event
        never stops the store's engine (a stream's chunk is replayed at every restart)."""
        for g in gates:
            if g.kind != "entry" or not g.credential or is_staff_credential(g.credential):
                continue  # staff (a badge): no visit, no pre-authorisation (see _binding)
            if not is_credential(g.credential):
                log.warning("entry at %s at t=%s s refused: its credential (%d characters) is "
                            "not one the service hands a gate", g.gate_id, round(g.t, 1),
                            len(g.credential))
                continue
            try:
                with d.sessions() as s:
                    if s.scalar(select(Visit.id).where(Visit.credential == g.credential)):
                        continue  # admitted before the restart, or through the API
                entry.admit_card(d, f"tok_gate_{g.credential}", g.gate_id,
                                 party_size=g.party_size, credential=g.credential)
            except ServiceError as e:
                log.warning("entry refused at %s at t=%s s: %s", g.gate_id, round(g.t, 1),
                            e.detail)
            except Exception:  # one gate event must not stop the store's engine
                log.exception("entry at %s at t=%s s failed to be admitted: taken as refused",
                              g.gate_id, round(g.t, 1))

    def _persist(self, d: Deps, eng: Engine, seen: dict[str, int], chunk: int, t: float,
                 log_rows: bool = True,
                 fresh: bool | None = None) -> None:
        """Commit one chunk's outputs, then the checkpoint. ``log_rows`` False: the chunk is
        replayed after a restart and its event-log rows were committed before it (the
        checkpoint is written after them); they are not written again, so rows the retention
        purge or an erasure removed since stay removed. ``fresh`` (default: ``log_rows``): the
        verdicts not applied yet may be applied here; a replay applies only those stamped with
        this chunk or earlier, and the last chunk the first run completed takes the new ones
        (recorded while the worker was down), as that run would have met them next."""
        # operators' verdicts (review_verdicts) first, where the first run met them
        live.apply_verdicts(d, eng, self.source, chunk, fresh=log_rows if fresh is None else fresh)
        now = d.clock.now()
        gate_events = [ev for ev in self._gate_log() if ev.t <= t][seen["gates"]:]
        bindings = self._bindings
        rows = [{"source": f"{self.source}/gates", "seq": seen["gates"] + k, "kind": ev.kind,
                 "t": ev.t, "recorded_at": now, "payload": json.dumps(
                     {**asdict(ev), **bindings.pop(seen["gates"] + k, {})})}
                for k, ev in enumerate(gate_events)]
        shelf = eng.events[seen["shelf"]:]
        rows = [{**r, "ref": None} for r in rows]
        rows += [{"source": f"{self.source}/shelf", "seq": seen["shelf"] + k, "kind": ev.kind,
                  "t": ev.t_end, "recorded_at": now, "ref": ev.event_id,
                  "payload": json.dumps({"event_id": ev.event_id, "plates": ev.plate_ids,
                                         "delta_g": ev.delta_g})}
                 for k, ev in enumerate(shelf)]
        # the evidence a dispute is judged on: each decision with every candidate's score
        # (what EngineResult.explain returns) and each review case's summary
        decisions = eng.decisions[seen["decisions"]:]
        rows += [{"source": f"{self.source}/decisions", "seq": seen["decisions"] + k,
                  "kind": "decision", "t": dc.attribution.event.t_end, "recorded_at": now,
                  "ref": dc.attribution.event.event_id, "payload": json.dumps(_decision(dc))}
                 for k, dc in enumerate(decisions)]
        cases = list(eng.cases.values())[seen["cases"]:]
        rows += [{"source": f"{self.source}/cases", "seq": seen["cases"] + k,
                  "kind": "review_case", "t": c.event.t_end, "recorded_at": now,
                  "ref": c.case_id, "payload": json.dumps(_case(c))}
                 for k, c in enumerate(cases)]
        if log_rows:
            with d.sessions.begin() as s:
                insert_ignore(s, EngineEvent, rows, ["source", "seq"])
        seen["gates"] += len(gate_events)
        seen["shelf"] += len(shelf)
        seen["decisions"] += len(decisions)
        seen["cases"] += len(cases)
        entries = eng.ledger.since(seen["lines"])
        by_visit: dict[str, list[LineRequest]] = {}
        for e in entries:
            vid = self._visit(d, eng, e.session_id)
            if vid is not None:
                review = any(p.startswith("review:") for p in e.provenance)
                by_visit.setdefault(vid, []).append(LineRequest(
                    f"{e.event_id}:{e.product_id}:{e.quantity:+d}" + (":review" * review),
                    e.product_id, e.quantity, e.event_id, e.confidence, e.t))
        for vid, lines in by_visit.items():
            try:
                checkout.add_lines(d, vid, lines)
            except ServiceError as err:  # closed already: the replay of a finished visit
                if err.code != "visit_not_open":
                    raise
                fixes = [ln for ln in lines if ln.line_key.endswith(":review")]
                if fixes:  # a verdict after the receipt: appended, the receipt is revised
                    revisions.add_review_lines(d, vid, fixes)
                self._not_charged(d, eng, vid, [ln for ln in lines if ln not in fixes], err)
        seen["lines"] += len(entries)
        issued = _issued(eng)
        for r in issued[seen["receipts"]:]:  # a later revision (review verdict) is not re-charged
            vid = self._visit(d, eng, r.session_id)
            if vid is not None and r.revision > 0:
                revisions.revise(d, vid, r.needs_review)
            elif vid is not None:
                try:
                    checkout.exit_visit(d, vid, needs_review=r.needs_review)
                except ServiceError as err:  # one visit's state must not stop the store's engine
                    if err.code != "visit_not_open":
                        raise
                    log.warning("receipt of visit %s not charged: %s", vid, err.detail)
                    continue
                if _decided_case(eng, r.session_id):
                    # a replay met a verdict before the exit that the first run met after it:
                    # this issue carries the correction, the receipt settled then does not
                    revisions.revise(d, vid, r.needs_review)
        seen["receipts"] = len(issued)
        # what the dashboard shows (map, alerts, review evidence): before the checkpoint, which
        # says that everything of the chunk is committed
        live.publish(d, eng, self, self.source, chunk, t, write=log_rows)
        with d.sessions.begin() as s:
            cp = s.get(RunnerCheckpoint, self.source)
            if cp is None:
                s.add(RunnerCheckpoint(source=self.source, chunk=chunk, t=t, updated_at=now))
            elif chunk > cp.chunk:
                cp.chunk, cp.t, cp.updated_at = chunk, t, now

    @staticmethod
    def _not_charged(d: Deps, eng: Engine, vid: str, lines: list[LineRequest],
                     err: ServiceError) -> None:
        """Lines the engine attributed to a visit no longer open (checked out as abandoned
        after ``max_visit_s``, or its exit already settled): logged and alerted, not charged.
        A replay's lines that were committed while the visit was open are no news."""
        if not lines:
            return
        with d.sessions() as s:
            have = set(s.scalars(select(CartLine.line_key).where(
                CartLine.visit_id == vid,
                CartLine.line_key.in_([ln.line_key for ln in lines]))))
        lost = [ln for ln in lines if ln.line_key not in have]
        if not lost:
            return
        what = ", ".join(f"{ln.quantity:+d} × {ln.product_id}" for ln in lost)
        msg = (f"cart lines of visit {vid} not charged ({err.detail}): {what}")
        log.warning("%s", msg)
        eng.alerts.append(Alert(min(ln.t for ln in lost), "lines_not_charged", msg, vid))

    @staticmethod
    def _visit(d: Deps, eng: Engine, session_id: str) -> str | None:
        sess = eng.book.sessions.get(session_id)
        if sess is None or not sess.credential:
            return None  # an unbound person: an alert for staff, nobody to charge
        with d.sessions() as s:
            return s.scalar(select(Visit.id).where(Visit.credential == sess.credential))


def _decision(dc: Decision) -> dict[str, Any]:
    """A decision as logged: the event, who was charged what, every candidate's score."""
    att = dc.attribution
    return {"event_id": att.event.event_id, "session_id": att.session_id,
            "confidence": att.confidence, "scores": [list(x) for x in att.scores],
            "reach_m": [list(x) for x in att.reach_m], "by_arm": att.by_arm,
            "items": [list(x) for x in dc.items],
            "takers": list(dc.takers), "needs_review": dc.needs_review, "stock": dc.stock,
            "reasons": list(dc.reasons),
            "hypotheses": [{"items": [list(i) for i in h.items], "probability": h.probability}
                           for h in att.event.hypotheses[:5]]}


def _case(c: ReviewCase) -> dict[str, Any]:
    """A review case's evidence in summary (the raw traces stay in the engine's memory)."""
    ev = c.evidence
    w = ev.weights
    return {"case_id": c.case_id, "reasons": list(c.reasons), "sessions": list(c.sessions),
            "decided": {k: [list(i) for i in v] for k, v in c.decided.items()},
            "weights": None if w is None else {
                "plates": list(w.plate_ids), "samples": int(w.t.shape[0]),
                "t": [float(w.t[0]), float(w.t[-1])] if w.t.shape[0] else []},
            "hands": [{"session_id": h.session_id, "probability": h.probability,
                       "reach_m": h.reach_m} for h in ev.hands],
            "open": c.open}


def _decided_case(eng: Engine, session_id: str) -> bool:
    """Whether a verdict has settled a review case of the session. On a replay after a
    restart a verdict is applied as soon as its case reopens, often before the exit it came
    after in the first run, so the engine's first issue already carries it; a visit the
    service settled before must then be revised from it (idempotent when it already was)."""
    return any(c.verdict is not None and (session_id in c.sessions
                                          or session_id in c.verdict.shares)
               for c in eng.cases.values())


def _issued(eng: Engine) -> list[Receipt] | SeqLog[Receipt]:
    """Receipts in the order the engine issued them (``issued`` where the engine keeps one)."""
    issued = getattr(eng, "issued", None)
    if isinstance(issued, (list, SeqLog)):
        return issued
    rs = eng.receipts
    return list(rs.values()) if isinstance(rs, dict) else list(rs)
