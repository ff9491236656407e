"""The live engine of ``walkout serve --source mqtt://...``: the store's sensor network in
through the broker, receipts and alerts back out on the result topics.

Same outputs as :class:`~walkout.service.runner.LiveRunner` (event log, cart lines, charges at
exit, all idempotent), fed by :class:`~walkout.sources.mqtt.MqttSource` chunk by chunk instead
of from a recording. Each receipt the engine issues (revisions included) is published on
``walkout/{store}/receipts/{session}``, each alert (the engine's and the source's
``device_silent``) on ``walkout/{store}/alerts`` (docs/mqtt.md); the source's alerts join the
engine's, so that the dashboard's alert stream and health page show them too.

A live store's runner ignores an end-of-stream message (counted as rejected
``end_not_accepted``): anybody who can publish on the broker could otherwise stop its engine.
``accept_end`` (``walkout serve --accept-end``) obeys it, for replays and simulations.

A live stream cannot be replayed from its beginning after a crash the way a recording can, so
the runner journals every chunk it steps on and snapshots the engine every few minutes
(:mod:`walkout.service.live_state`): a restart, after a crash or a clean stop, continues the
store's stream where it was, with everybody inside still bound to their visit. A stream that
ended (``accept_end``), or whose state the code cannot load (an upgrade; any restart on Ray),
is followed by a new one, whose event-log source carries its start time; after a lost one, its
shelves go on from the stock the lost one last logged (:meth:`MqttRunner._restock`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Any

from sqlalchemy import func, select

from walkout.cart.sessions import SessionState
from walkout.engine import Engine, EngineConfig
from walkout.events import Alert, GateEvent, KeypointFrame
from walkout.service import live, live_state
from walkout.service.checkout import insert_ignore
from walkout.service.clock import aware
from walkout.service.deps import Deps
from walkout.service.models import EngineEvent, ReviewVerdict, RunnerCheckpoint, Visit
from walkout.service.runner import LiveRunner, _issued, live_config
from walkout.sources.mqtt import Chunk, MqttPublisher, MqttSource, PublishRefused, split_url
from walkout.store.model import Store

log = logging.getLogger("walkout.service.mqtt_runner")

#: the alerts that join the engine's between chunks, which no journaled chunk carries: the
#: source's (:meth:`MqttSource.take_alerts`) and the runner's own at a new stream's start
OUTSIDE_ALERTS = ("device_silent", "device_back", "stream_gap", "engine_state_lost")


class MqttRunner(LiveRunner):
    """Runs the engine on the chunks an :class:`MqttSource` releases, until the source's end of
    stream (a replayed or simulated store, with ``accept_end``) or the service stops.

    ``url`` is ``mqtt://host:port[/store]``: the path names the store on the wire (default: the
    store's own name). Picklable: the broker connections are made in :meth:`run`, in the
    engine's worker process.
    """

    def __init__(self, url: str, store: Store, *, client_id: str | None = None,
                 config: EngineConfig | None = None, poll_s: float = 0.2,
                 accept_end: bool = False, silent_after_s: float = 10.0,
                 snapshot_every_s: float = 300.0, keep_state: bool = True,
                 roll_after_s: float | None = 6 * 3600.0, roll_quiet_s: float = 60.0,
                 roll_case_wait_s: float = 6 * 3600.0) -> None:
        self.url, wire_name = split_url(url)
        self.store_name = wire_name or store.name
        self._store = store
        self.client_id = client_id or f"walkout-engine-{self.store_name}"
        self.config = config or live_config()
        self.poll_s = poll_s
        self.accept_end = accept_end
        self.silent_after_s = silent_after_s  # a camera or gondola quiet this long: alerted
        #: the stream's event-log source: a new one here, the store's open stream once
        #: :meth:`run` found one to continue
        self.source = f"{self.stream_prefix}{time.strftime('%Y%m%dT%H%M%S')}"
        #: journal and snapshots (live_state): off for an engine on Ray, whose state lives in
        #: its actors
        self.keep_state = keep_state
        self.snapshot_every_s = snapshot_every_s
        self.resumed_from: int | None = None  # the chunk a restart continued after
        self._snap_t = -math.inf  # stream time of the last snapshot
        self._origin: float | None = None  # the stream's first chunk start
        #: a stream this old begins the next one when the store is next empty (None: never)
        self.roll_after_s = roll_after_s
        self.roll_quiet_s = roll_quiet_s  # ... and nobody was seen for this long
        #: ... and no review case younger than this waits for its verdict
        self.roll_case_wait_s = roll_case_wait_s
        self._t_start: float | None = None  # stream time the stream began
        self._k0 = 0  # chunks the source released before this stream (earlier streams)
        self.engine: Engine | None = None
        self.speed = None
        self.stop_after_chunk = None
        self.chunks_done = 0
        self._gates: list[GateEvent] = []
        self.published = {"receipts": 0, "alerts": 0}
        self._engine_alerts = 0  # engine alerts already published
        self._t = 0.0  # end of the last chunk stepped
        self._src: MqttSource | None = None  # while running: its counters feed the health page
        #: the frames of the chunk being persisted: the health page's camera liveness (a live
        #: source keeps no recording to look them up in)
        self.chunk_frames: list[KeypointFrame] = []

    @property
    def store(self) -> Any:
        return self._store

    @property
    def stream_prefix(self) -> str:
        """What every stream of this store's event-log sources starts with."""
        return f"mqtt:{self.store_name}:"

    def _gate_log(self) -> list[GateEvent]:
        return self._gates

    def input_stats(self) -> dict[str, Any]:
        """The source's counters so far (read in the runner's thread, which updates them)."""
        if self._src is None:
            return {}
        st = self._src.stats
        notes = [f"{st.sessions_lost} reconnections found no session kept by the broker: what "
                 "it received meanwhile was lost"] if st.sessions_lost else []
        return {"received": st.received, "accepted": st.accepted, "duplicates": st.duplicates,
                "late": st.late, "redelivered": st.redelivered, "missing": st.missing,
                "rejected": dict(st.rejected),
                "reconnects": max(0, st.connects - 1), "sessions_lost": st.sessions_lost,
                "notes": notes}

    def run(self, d: Deps, stop: threading.Event | None = None) -> None:
        eng, seen = self._restore(d)
        self.engine = eng  # while it runs, and after: what it decided (tests, tools)
        src = self._src = MqttSource(self.url, self.store, self.store_name,
                                     client_id=self.client_id, chunk_s=self.config.chunk_s,
                                     accept_end=self.accept_end,
                                     silent_after_s=self.silent_after_s,
                                     manual_ack=self.keep_state)
        if self._origin is not None:  # a continued stream: its chunks go on from there
            src.resume(self._origin, self._k0 + self.chunks_done, self._idle_s)
        pub = MqttPublisher(self.url, client_id=f"{self.client_id}-results")
        try:
            src.start()
            log.info("consuming %s (store %r on the wire) as %s", self.url, self.store_name,
                     self.client_id)
            self._publish(pub, eng)  # what a restart's replay issued and nobody was told
            while not src.finished:
                if stop is not None and stop.is_set():
                    self._snapshot(d, eng, seen, pub)  # a clean stop: nothing to replay
                    return
                for chunk in src.poll(self.poll_s):
                    if self._origin is None:
                        self._origin = src.origin
                    self._step(d, eng, seen, chunk, committed=-1, pub=pub)
                    # journaled: what the broker delivered for it can be let go
                    src.acknowledge(chunk[3])
                    if self._t_start is None:
                        self._t_start = chunk[3]
                    # an engine without state (on Ray) too: its memory of people
                    if (self.roll_after_s is not None
                            and chunk[3] - self._t_start >= self.roll_after_s
                            and eng.idle(chunk[3], self.roll_quiet_s,
                                        self.roll_case_wait_s)):
                        eng, seen = self._roll(d, eng, seen, pub)
                        self.engine = eng
                self._device_alerts(d, pub, eng, src.take_alerts())
            eng.finish()
            self._persist(d, eng, seen, self.chunks_done + 1, self._t)
            self._publish(pub, eng)
            self._ended(d, self.source, eng.open_cases(), self._t)
            if self.keep_state:
                live_state.forget_stream(d, self.source)  # ended: the next start is a new one
                src.acknowledge(math.inf)
            _flush(pub, 30.0, "at the end")  # the line below says they were published
            st = src.stats
            log.info("end of stream: %d messages accepted, %d duplicates, %d late, %d missing, "
                     "rejected %s; %d receipts published", st.accepted, st.duplicates, st.late,
                     st.missing, dict(st.rejected), self.published["receipts"])
        finally:
            src.close()
            _flush(pub, 30.0, "at the end")
            pub.close()

    def _step(self, d: Deps, eng: Engine, seen: dict[str, int], chunk: Chunk, committed: int,
              pub: MqttPublisher | None) -> None:
        """One chunk: journaled (a fresh one), the operator's inputs due, the engine's step,
        its outputs committed. ``committed``: the last chunk whose outputs a previous run
        committed (a replayed chunk up to it writes nothing again); ``pub`` None: a replayed
        chunk, whose results were published when it was new."""
        block, frames, gates, now = chunk
        i = self.chunks_done
        if self.keep_state and pub is not None:
            live_state.journal(d, self.source, i, now, (self._origin, self._k0, chunk))
        self._gates += gates
        t0 = self._t if i else now - self.config.chunk_s  # the chunk's start
        eng.step(block, frames, self._inputs(d, eng, i, t0, gates, fresh=i > committed), now)
        self._t = now
        self.chunk_frames = frames
        self._persist(d, eng, seen, i, now, log_rows=i > committed, fresh=i >= committed)
        self.chunks_done = i + 1
        if pub is not None:
            self._publish(pub, eng)
        elif i <= committed:  # its alerts were published before the restart (at most once)
            self._engine_alerts = len(eng.alerts)
        # its receipts too, maybe: paho held them in memory until the broker took them, and a
        # kill lost those. So a replay's receipts are all published again once connected (QoS
        # 1 is at least once: a receipt is its session's and revision's), those before the
        # snapshot not: it is taken once the broker acknowledged them
        if pub is not None and now - self._snap_t >= self.snapshot_every_s:
            self._snapshot(d, eng, seen, pub)

    # ---- surviving a restart (live_state) ----------------------------------------------------

    def _restore(self, d: Deps) -> tuple[Engine, dict[str, int]]:
        """The engine to run on: the store's open stream continued (its snapshot loaded, its
        journal after it replayed), or a fresh one for a new stream."""
        seen = {"gates": 0, "shelf": 0, "decisions": 0, "cases": 0, "lines": 0, "receipts": 0}
        self._idle_s = 0.0
        if self.ray_address:
            self.keep_state = False
            log.warning("an engine on Ray keeps no state across restarts: each start of the "
                        "service begins a new stream")
        stream = live_state.open_stream(d, self.stream_prefix, self.store)
        if stream is None and not self.keep_state:
            stream = self._unended(d)  # an engine without state's own last stream
        if stream is None:
            return self._after_orphan(d, self._engine()), seen
        if not self.keep_state:  # left open, a later start with state would continue it
            stream.lost = "this engine keeps no state (on Ray) and cannot continue it"
        if stream.lost is not None:
            return self._lost(d, stream), seen
        self.source = stream.source
        eng = self._engine()
        if stream.state is not None:
            st = stream.state
            eng, seen = st["engine"], st["seen"]
            self._gates, self.published = st["gates"], st["published"]
            self._engine_alerts, self._t, self._origin = st["engine_alerts"], st["t"], st["origin"]
            self.chunks_done, self._k0, self._t_start = st["chunks_done"], st["k0"], st["t_start"]
            self.__dict__["_live_state"] = st["live"]
            self._snap_t = self._t
        with d.sessions() as s:
            cp = s.get(RunnerCheckpoint, self.source)
            committed = cp.chunk if cp else -1
        # the real time the stream stood still since: its checkpoint, or what was written of
        # it after (a stream just rolled over has a snapshot and no checkpoint yet)
        last_at = aware(cp.updated_at) if cp else None
        if stream.at is not None:
            last_at = stream.at if last_at is None else max(last_at, stream.at)
        logged = self._device_log(d, len(eng.alerts))
        lost = logged.get(0) if stream.state is None else None
        if lost is not None and lost.kind == "engine_state_lost":
            # it began after a lost stream, from that one's stock: so does its replay
            self._restock(d, eng, lost.subject)
        for i, (origin, k0, chunk) in stream.chunks:
            assert i == self.chunks_done, (i, self.chunks_done)
            self._origin, self._k0 = origin, k0
            self._rejoin(eng, logged)
            self._step(d, eng, seen, chunk, committed, pub=None)
        self._rejoin(eng, logged)
        live.state_of(self).alerts = len(eng.alerts)
        self.resumed_from = self.chunks_done - 1
        if last_at is not None:
            self._idle_s = max(0.0, (d.clock.now() - last_at).total_seconds())
        inside = sum(1 for x in eng.book.sessions.values() if x.state == SessionState.OPEN)
        log.info("continuing stream %s after chunk %d (snapshot at %d, %d chunks replayed): "
                 "%d people inside", self.source, self.resumed_from, stream.snapshot_chunk,
                 len(stream.chunks), inside)
        return eng, seen

    def _device_log(self, d: Deps, after: int) -> dict[int, Alert]:
        """The :data:`OUTSIDE_ALERTS` this stream's event log got from index ``after`` on, by
        index. They joined the engine's alerts between two chunks and no chunk carries them,
        so the engine rebuilt from the journal lacks them; its later alerts took their indexes,
        and the event log, which holds one row per index, dropped those (:meth:`_rejoin`)."""
        with d.sessions() as s:
            rows = s.execute(select(EngineEvent.seq, EngineEvent.payload).where(
                EngineEvent.source == f"{self.source}/alerts",
                EngineEvent.kind.in_(OUTSIDE_ALERTS), EngineEvent.seq >= after))
            return {seq: Alert(p["t"], p["kind"], p["message"], p["subject"])
                    for seq, p in ((seq, json.loads(payload)) for seq, payload in rows)}

    def _rejoin(self, eng: Engine, logged: dict[int, Alert]) -> None:
        """Put those alerts back where the first run added them: at the index their
        event-log row has, which the replay reaches between the same two chunks. They were
        published then."""
        published = self._engine_alerts == len(eng.alerts)
        while (a := logged.get(len(eng.alerts))) is not None:
            eng.alerts.append(a)
        if published:
            self._engine_alerts = len(eng.alerts)

    def _unended(self, d: Deps) -> live_state.Stream | None:
        """The store's newest stream (by its runner checkpoint; a stream's name carries the
        time it began) unless it ended: one an engine without state ran (on Ray), which kept
        neither journal nor snapshot, and stopped or died. Its people and review cases are
        lost as a kept stream's are (:meth:`_lost`)."""
        with d.sessions() as s:
            cp = s.scalars(select(RunnerCheckpoint).where(
                RunnerCheckpoint.source.startswith(self.stream_prefix, autoescape=True))
                .order_by(RunnerCheckpoint.updated_at.desc(), RunnerCheckpoint.source.desc())
                .limit(1)).first()
            if cp is None or s.scalar(select(EngineEvent.id).where(
                    EngineEvent.source == f"{cp.source}/stream",
                    EngineEvent.kind == "stream_ended")) is not None:
                return None
            return live_state.Stream(cp.source, cp.chunk, None, [], cp.t)

    def _after_orphan(self, d: Deps, eng: Engine) -> Engine:
        """A new stream's engine, given the shelves of the stream before where a start began
        one (after a lost stream, or a rollover on Ray) and stopped before its first chunk:
        nothing of that one was written (its ``engine_state_lost`` alert neither), so the
        next start found no stream to continue and began from the planogram's opening stock,
        saying nothing. It is said now, and the shelves go on from the last logged stock."""
        with d.sessions() as s:
            row = s.execute(select(EngineEvent.source, EngineEvent.t, EngineEvent.payload)
                            .where(EngineEvent.kind == "stream_ended",
                                   EngineEvent.source.startswith(self.stream_prefix,
                                                                 autoescape=True))
                            .order_by(EngineEvent.recorded_at.desc(), EngineEvent.id.desc())
                            .limit(1)).first()
            if row is None:
                return eng
            ended, t, payload = row
            orphan = _next_stream(payload)
            if orphan is None or s.get(RunnerCheckpoint, orphan) is not None or s.scalar(
                    select(EngineEvent.id).where(EngineEvent.source.startswith(
                        f"{orphan}/", autoescape=True)).limit(1)) is not None:
                return eng  # a stream that ended for good, or none before: a fresh start
        shelves = self._restock(d, eng, orphan)
        msg = (f"stream {orphan}, begun after {ended.removesuffix('/stream')} ended, "
               "stopped before its first chunk: nothing of it was written, an alert it raised "
               "(engine_state_lost: whoever was inside is an unbound person to this engine) "
               f"neither. {shelves}")
        log.error("%s", msg)
        eng.alerts.append(Alert(float(t), "engine_state_lost", msg, orphan))
        return eng

    def _lost(self, d: Deps, stream: live_state.Stream) -> Engine:
        """A stream whose state cannot be loaded: a new one begins, its shelves from the old
        one's last logged stock (:meth:`_restock`), and says what was lost; the old one's end
        is logged with the review cases it left undecided (expired: no engine will apply a
        verdict on them)."""
        eng = self._engine()
        shelves = self._restock(d, eng, stream.source)
        with d.sessions() as s:
            inside = s.scalar(select(func.count()).select_from(Visit)
                              .where(Visit.state == "open")) or 0
        msg = (f"the engine's state of stream {stream.source} was not continued: {stream.lost}. "
               f"{inside} visits were open: whoever is inside is an unbound person to this "
               "engine until they leave, and their visits are checked out for review after "
               f"max_visit_s. {shelves}")
        log.error("%s", msg)
        eng.alerts.append(Alert(stream.t, "engine_state_lost", msg, stream.source))
        with d.sessions() as s:
            applied = set(s.scalars(select(ReviewVerdict.case_id).where(
                ReviewVerdict.source == stream.source, ReviewVerdict.applied_at.is_not(None))))
            cases = [c for c in s.scalars(select(EngineEvent.ref).where(
                EngineEvent.source == f"{stream.source}/cases").order_by(EngineEvent.seq))
                if c not in applied]
        self._ended(d, stream.source, cases, stream.t)
        live_state.forget_stream(d, stream.source)
        return eng

    def _restock(self, d: Deps, eng: Engine, lost: str) -> str:
        """Give the new engine's shelves the stock stream ``lost`` last logged (its newest
        health row, :meth:`_last_health`) instead of the planogram's opening stock, which
        would count every item taken before the restart as back on its plate; returns what
        the ``engine_state_lost`` alert says of the shelves. The same row every time: a
        replay of the new stream (killed before its first snapshot) begins from it too."""
        found = self._last_health(d, lost)
        if found is None:
            return ("No health row of it was logged: the shelves start from the planogram's "
                    "opening stock.")
        source, t, at, payload = found
        skipped = eng.restock(payload.get("inventory"), payload.get("learned"))
        where = f"the last health row of stream {source}, at {t:.0f} s" + (
            "" if source == lost else ": the stream it followed, as it logged none")
        log.info("the shelves continue from the stock of %s (%s)", at, where)
        return (f"The shelves continue from the stock of {at} ({where})"
                + (f"; {len(skipped)} differences of that row from this store file were "
                   "skipped (see the engine's log)." if skipped else "."))

    def _last_health(self, d: Deps, source: str
                     ) -> tuple[str, float, str, dict[str, Any]] | None:
        """The newest health row of stream ``source`` as (its stream, stream time, when it
        was written, payload); where it logged none, the newest of the stream it followed
        (whose ``stream_ended`` row names it ``next``: its shelves went on from that one's),
        and so on. None: no stream before it logged its shelves (or the row is unreadable)."""
        for _ in range(8):
            with d.sessions() as s:
                row = s.execute(select(EngineEvent.t, EngineEvent.recorded_at,
                                       EngineEvent.payload)
                                .where(EngineEvent.source == f"{source}/health")
                                .order_by(EngineEvent.seq.desc()).limit(1)).first()
                if row is not None:
                    t, recorded_at, raw = row
                    try:
                        payload = json.loads(raw)
                    except ValueError as e:
                        log.warning("the last health row of %s is unreadable: %s", source, e)
                        return None
                    if not isinstance(payload, dict):
                        return None
                    at = aware(recorded_at).isoformat(sep=" ", timespec="seconds")
                    return source, float(t), at, payload
                ends = s.execute(select(EngineEvent.source, EngineEvent.payload).where(
                    EngineEvent.kind == "stream_ended",
                    EngineEvent.source.startswith(self.stream_prefix, autoescape=True),
                    EngineEvent.payload.contains(json.dumps(source))))
                prev = [src.removesuffix("/stream") for src, p in ends
                        if _next_stream(p) == source]
            if not prev:
                return None
            source = prev[0]
        return None

    def _roll(self, d: Deps, eng: Engine, seen: dict[str, int],
              pub: MqttPublisher) -> tuple[Engine, dict[str, int]]:
        """Begin the store's next stream while it is empty (``roll_after_s``): the old one's
        last receipts committed and published, its journal and snapshot deleted; the new
        engine keeps the shelves (``Engine.successor``) and is snapshotted at once, so that a
        restart finds it. What the old stream's people did stays where the service keeps it
        (visits, receipts, the event log, under its retention), not in the engine."""
        nxt = eng.successor(self._t)
        self._persist(d, eng, seen, self.chunks_done, self._t)
        self._publish(pub, eng)
        old = self.source
        self.source = f"{self.stream_prefix}{time.strftime('%Y%m%dT%H%M%S')}.{self._k0}"
        if self.source == old:  # pragma: no cover - a stream lasts longer than a second
            self.source += "b"
        self._k0 += self.chunks_done
        self.chunks_done = 0
        # the faults the successor carries were published and written to the event log when
        # raised, where an operator may have acknowledged them: neither the alerts topic nor
        # the new stream's event log gets them again (its health page folds them from the
        # engine's alerts), else each rollover listed them anew, unacknowledged
        self._gates, self.published = [], {"receipts": 0, "alerts": 0}
        self._engine_alerts = len(nxt.alerts)
        self.__dict__.pop("_live_state", None)
        live.state_of(self).alerts = len(nxt.alerts)
        self._t_start = self._t
        seen = {k: 0 for k in seen}
        self._snapshot(d, nxt, seen, pub, force=True, replaces=old)  # the old stream goes
        self._ended(d, old, eng.open_cases(), self._t)
        log.info("stream %s rolled over to %s: the store was empty", old, self.source)
        return nxt, seen

    def _ended(self, d: Deps, old: str, cases: list[str], t: float) -> None:
        """Say in the event log that stream ``old`` ended at stream time ``t``, with the
        review cases it left open (``cases``): no engine holds them any more, so the API
        answers a verdict on one with what to do instead (a refund on the receipt)."""
        if cases:
            log.warning("stream %s ended with %d review cases nobody decided: their receipts "
                        "stand as issued", old, len(cases))
        row = {"source": f"{old}/stream", "seq": 0, "kind": "stream_ended", "t": t,
               "ref": None, "recorded_at": d.clock.now(),
               "payload": json.dumps({"next": self.source if self.source != old else None,
                                      "open_cases": cases})}
        with d.sessions.begin() as s:
            insert_ignore(s, EngineEvent, [row], ["source", "seq"])

    def _snapshot(self, d: Deps, eng: Engine, seen: dict[str, int],
                  pub: MqttPublisher | None = None, force: bool = False,
                  replaces: str | None = None) -> None:
        """Save the engine's state after the last chunk stepped (whose outputs are committed)
        and drop the journal up to it. ``pub``: what it published is waited for first (the
        snapshot counts it as delivered); ``force``: also before the stream's first chunk;
        ``replaces``: the stream this one follows, forgotten in the same transaction."""
        if not self.keep_state or (self.chunks_done == 0 and not force):
            return
        if pub is not None:  # the broker away: paho sends them when it is back, a kill loses them
            _flush(pub, 10.0, "before the engine snapshot")
        state = {"engine": eng, "seen": seen, "gates": self._gates, "published": self.published,
                 "engine_alerts": self._engine_alerts, "t": self._t, "origin": self._origin,
                 "chunks_done": self.chunks_done, "live": live.state_of(self), "k0": self._k0,
                 "t_start": self._t_start}
        t0 = time.perf_counter()
        size = live_state.save_snapshot(d, self.source, self.chunks_done - 1, self._t,
                                        self.store, state, replaces=replaces)
        self._snap_t = self._t
        log.info("engine snapshot after chunk %d: %.1f MB in %.0f ms", self.chunks_done - 1,
                 size / 1e6, (time.perf_counter() - t0) * 1e3)

    def _publish(self, pub: MqttPublisher, eng: Engine) -> None:
        """What the engine issued since the last call: receipts, then alerts."""
        issued = _issued(eng)
        for r in issued[self.published["receipts"]:]:
            pub.publish_receipt(self.store_name, r)
        self.published["receipts"] = len(issued)
        for a in eng.alerts[self._engine_alerts:]:
            self._publish_alert(pub, a)
        self._engine_alerts = len(eng.alerts)

    def _device_alerts(self, d: Deps, pub: MqttPublisher, eng: Engine,
                       alerts: list[Alert]) -> None:
        """The source's alerts (``device_silent``) join the engine's: published on the alerts
        topic and written to the event log at once (the dashboard's alert stream and health
        page read them there; a store whose devices all fell silent releases no chunk)."""
        if not alerts:
            return
        self._publish(pub, eng)  # the engine's own first, in the order they came
        eng.alerts.extend(alerts)
        for a in alerts:
            self._publish_alert(pub, a)
        self._engine_alerts = len(eng.alerts)
        live.publish_alerts(d, eng, self, self.source)

    def _publish_alert(self, pub: MqttPublisher, a: Alert) -> None:
        pub.publish_alert(self.store_name, a)
        self.published["alerts"] += 1


def _next_stream(payload: str) -> str | None:
    """The stream a ``stream_ended`` row says followed (None: none, or unreadable)."""
    try:
        nxt = json.loads(payload).get("next")
    except (ValueError, AttributeError):
        return None
    return nxt if isinstance(nxt, str) else None


def _flush(pub: MqttPublisher, timeout: float, when: str) -> None:
    """Wait for the broker to take what was published; what it did not is logged, not raised
    (each refusal was logged with its topic as it came)."""
    try:
        pub.flush(timeout)
    except TimeoutError as e:
        log.error("results not all acknowledged by the broker %s: %s", when, e)
    except PublishRefused as e:
        log.error("results refused by the broker %s: %s", when, e)
