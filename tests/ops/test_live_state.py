"""The sensor network's engine across restarts of the service (``walkout.service.live_state``),
in process against a real Mosquitto and a SQLite service database: a clean stop snapshots the
engine and the next start continues the stream with nothing lost; a snapshot the code cannot
load starts a new stream and says what was lost. (A SIGKILL in the middle of a chunk:
``tests/sources/test_mqtt_restart.py``.)"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from walkout.engine import Engine, EngineConfig
from walkout.service import live_state
from walkout.service.db import make_engine, upgrade
from walkout.service.deps import Deps
from walkout.service.models import (
    CartLine,
    EngineEvent,
    EngineSnapshot,
    RunnerCheckpoint,
    StreamChunk,
    Visit,
)
from walkout.service.mqtt_runner import MqttRunner
from walkout.service.testing import make_svc
from walkout.sim.session import SimConfig, simulate
from walkout.sim.shoppers import ShopperConfig
from walkout.sources import wire
from walkout.sources.mqtt import (
    MqttPublisher,
    MqttSource,
    drop_session,
    session_messages,
)
from walkout.sources.recording import Sensors
from walkout.store import load_store

STORE = load_store("small")


def _deps(tmp_path: Path) -> Deps:
    db = make_engine(f"sqlite:///{tmp_path / 'walkout.db'}")
    upgrade(db)
    return make_svc(db).deps


def _start(d: Deps, url: str, name: str, **kw: object) -> tuple[MqttRunner, threading.Thread,
                                                                 threading.Event]:
    runner = MqttRunner(f"{url}/{name}", STORE, accept_end=True, **kw)  # type: ignore[arg-type]
    stop = threading.Event()
    th = threading.Thread(target=runner.run, args=(d, stop), daemon=True)
    th.start()
    return runner, th, stop


def test_a_clean_stop_snapshots_and_the_next_start_continues_the_stream(
        mqtt_url: str, tmp_path: Path) -> None:
    d = _deps(tmp_path)
    session = simulate(STORE, 3, 2)
    name = f"ls{uuid.uuid4().hex[:8]}"
    cid = f"walkout-engine-{name}"
    MqttSource(mqtt_url, STORE, name, client_id=cid).start().close()  # the broker queues
    msgs, sent = session_messages(session, name)
    half = 0.5 * session.duration_s
    try:
        r1, th1, stop1 = _start(d, mqtt_url, name, snapshot_every_s=20.0)
        with MqttPublisher(mqtt_url) as pub:
            for m in msgs:
                if m.t_send < half:
                    pub.publish(m.topic, m.payload)
            pub.flush()
            deadline = time.monotonic() + 60
            while r1.chunks_done < half / 5.0 - 1:
                assert th1.is_alive() and time.monotonic() < deadline
                time.sleep(0.1)
            stop1.set()  # `systemctl restart walkout` with shoppers inside
            th1.join(30)
            assert not th1.is_alive()
            with d.sessions() as s:
                snap = s.get(EngineSnapshot, r1.source)
                journal = list(s.scalars(select(StreamChunk.chunk)
                                         .where(StreamChunk.source == r1.source)))
            assert snap is not None and snap.chunk == r1.chunks_done - 1
            assert journal == []  # all of it in the snapshot
            for m in msgs:
                if m.t_send >= half:
                    pub.publish(m.topic, m.payload)
            pub.publish(wire.end_topic(name), wire.encode_end(float(session.duration_s), sent))
            pub.flush()
        r2, th2, _ = _start(d, mqtt_url, name, snapshot_every_s=20.0)
        th2.join(120)
        assert not th2.is_alive()
    finally:
        drop_session(mqtt_url, cid)
    assert r2.source == r1.source and r2.resumed_from == r1.chunks_done - 1
    ref = Engine(STORE).run(Sensors.from_session(session))
    with d.sessions() as s:
        sources = list(s.scalars(select(RunnerCheckpoint.source)))
        left = list(s.scalars(select(EngineSnapshot.source)))
    assert sources == [r1.source] and left == []
    want = {r.credential: r.counts() for r in ref.receipts}
    assert r2.engine is not None
    got = {r.credential: r.counts() for r in r2.engine.receipts.values()}
    assert want == got and any(want.values())


def test_a_snapshot_this_code_cannot_load_starts_a_new_stream_and_says_so(
        mqtt_url: str, tmp_path: Path) -> None:
    d = _deps(tmp_path)
    name = f"ls{uuid.uuid4().hex[:8]}"
    old = f"mqtt:{name}:20261123T080000"
    with d.sessions.begin() as s:
        s.add(EngineSnapshot(source=old, chunk=40, t=200.0, code="an older walkout",
                             payload=b"\x80\x05N.", created_at=d.clock.now()))
        s.add(StreamChunk(source=old, chunk=41, t=205.0, payload=b"\x80\x05N.",
                          recorded_at=d.clock.now()))
    stream = live_state.open_stream(d, f"mqtt:{name}:", STORE)
    assert stream is not None and stream.lost is not None and "changed" in stream.lost
    # the broker queues for the engine's session however long the runner takes to subscribe
    MqttSource(mqtt_url, STORE, name, client_id=f"walkout-engine-{name}").start().close()
    runner, th, _ = _start(d, mqtt_url, name, config=EngineConfig(chunk_s=1.0))
    try:
        with MqttPublisher(mqtt_url) as pub:
            kp = np.zeros((0, 17, 3), np.float32)
            for k in range(30):
                pub.publish(wire.keypoints_topic(name, "C01"), wire.encode_keypoints(k, k / 15, kp))
            pub.publish(wire.end_topic(name), wire.encode_end(2.0, {"cameras/C01": 30}))
            pub.flush()
        th.join(30)
        assert not th.is_alive()
    finally:
        drop_session(mqtt_url, runner.client_id)
    assert runner.source != old
    with d.sessions() as s:
        lost = list(s.scalars(select(EngineEvent.payload).where(
            EngineEvent.source == f"{runner.source}/alerts",
            EngineEvent.kind == "engine_state_lost")))
        rows = list(s.scalars(select(StreamChunk.source))) + list(
            s.scalars(select(EngineSnapshot.source)))
    assert len(lost) == 1 and old in lost[0] and "upgrade" in lost[0]
    assert rows == []  # the old stream's state is gone, the new one ended


def test_an_empty_store_begins_the_next_stream_keeping_the_shelves(
        mqtt_url: str, tmp_path: Path) -> None:
    """A stream older than ``roll_after_s`` rolls over when the store is next empty: the new
    engine holds none of the first shopper's data but the shelves' stock she changed, and a
    restart after the rollover continues the new stream."""
    d = _deps(tmp_path)
    cfg = SimConfig(shoppers=ShopperConfig(mean_arrival_gap_s=80.0))
    session = simulate(STORE, 2, 3, config=cfg)  # in 18-75 s, out; the next in 113-168 s
    name = f"ls{uuid.uuid4().hex[:8]}"
    cid = f"walkout-engine-{name}"
    MqttSource(mqtt_url, STORE, name, client_id=cid).start().close()
    msgs, sent = session_messages(session, name)
    kw = {"roll_after_s": 30.0, "roll_quiet_s": 5.0}
    try:
        r1, th1, stop1 = _start(d, mqtt_url, name, **kw)
        first = r1.source
        with MqttPublisher(mqtt_url) as pub:
            for m in msgs:
                if m.t_send < 130.0:
                    pub.publish(m.topic, m.payload)
            pub.flush()
            deadline = time.monotonic() + 60
            while r1.source == first or r1.chunks_done < 3:
                assert th1.is_alive() and time.monotonic() < deadline
                time.sleep(0.1)
            stop1.set()
            th1.join(30)
            assert not th1.is_alive()
            for m in msgs:
                if m.t_send >= 130.0:
                    pub.publish(m.topic, m.payload)
            pub.publish(wire.end_topic(name), wire.encode_end(float(session.duration_s), sent))
            pub.flush()
        r2, th2, _ = _start(d, mqtt_url, name, **kw)
        th2.join(120)
        assert not th2.is_alive()
    finally:
        drop_session(mqtt_url, cid)
    second = r2.source
    assert second != first and r2.resumed_from is not None
    assert r2.engine is not None
    ref_engine = Engine(STORE)
    ref = ref_engine.run(Sensors.from_session(session))
    # the second stream's engine knows only the second shopper, and the shelves as they are
    assert [s.credential for s in r2.engine.book.sessions.values()] == [ref.receipts[1].credential]
    assert repr(r2.engine.shelf.inventory.__dict__) == repr(ref_engine.shelf.inventory.__dict__)
    with d.sessions() as s:
        sources = set(s.scalars(select(RunnerCheckpoint.source)))
        lines = s.execute(select(Visit.credential, CartLine.product_id,
                                 func.sum(CartLine.quantity))
                          .join(CartLine, CartLine.visit_id == Visit.id)
                          .group_by(Visit.credential, CartLine.product_id)).all()
        states = list(s.scalars(select(Visit.state)))
    assert sources == {first, second}
    got: dict[str, dict[str, int]] = {}
    for cred, product, q in lines:
        if q:
            got.setdefault(cred, {})[product] = int(q)
    want = {r.credential: {p: q for p, q in r.counts().items() if q} for r in ref.receipts}
    assert got == want and len(want) == 2
    assert "open" not in states
