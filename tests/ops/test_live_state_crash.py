"""The sensor network's engine killed between two snapshots (``walkout.service.live_state``):
the restart rebuilds it from the snapshot and the journal, and what it writes afterwards must
fit what the first run wrote. In process against a real Mosquitto and a SQLite service
database; "killed" is a stop that skips the clean stop's snapshot, so the journal since the
last one is what the restart has, as after a SIGKILL between chunks."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from tests.ops.live_runners import Killable, sqlite_deps, start_runner, until

from walkout.engine import EngineConfig
from walkout.service import live_state, store_mode
from walkout.service.db import make_engine
from walkout.service.deps import Deps
from walkout.service.models import EngineEvent
from walkout.service.testing import make_svc
from walkout.sources import wire
from walkout.sources.mqtt import MqttPublisher, MqttSource, drop_session
from walkout.store import load_store

STORE = load_store("small")
KP = np.zeros((0, 17, 3), np.float32)


def _start(d: Deps, url: str, name: str, **kw: Any) -> tuple[Killable, threading.Thread,
                                                               threading.Event]:
    return start_runner(d, url, name, STORE, **kw)


def _camera(url: str, name: str, t0: float, t1: float, c02_until: float = 0.0) -> None:
    """Camera C01 (nobody in view) from ``t0`` to ``t1`` s of stream time, in real time, and
    C02 until ``c02_until``."""
    start = time.monotonic()
    with MqttPublisher(url) as pub:
        for k in range(round(t0 * 15), round(t1 * 15)):
            time.sleep(max(0.0, start + k / 15 - t0 - time.monotonic()))
            for cam in ("C01", "C02") if k / 15 < c02_until else ("C01",):
                pub.publish(wire.keypoints_topic(name, cam), wire.encode_keypoints(k, k / 15, KP))
        pub.flush()


def _alert_rows(d: Deps, source: str) -> list[tuple[int, str]]:
    with d.sessions() as s:
        return list(s.execute(select(EngineEvent.seq, EngineEvent.kind)
                              .where(EngineEvent.source == f"{source}/alerts")
                              .order_by(EngineEvent.seq)))


def _silent(d: Deps, source: str, device: str) -> bool:
    """Whether the stream's event log has the alert that ``device`` fell silent."""
    with d.sessions() as s:
        return s.scalar(select(EngineEvent.id).where(
            EngineEvent.source == f"{source}/alerts", EngineEvent.kind == "device_silent",
            EngineEvent.ref == device).limit(1)) is not None


def test_device_alerts_between_chunks_keep_their_place_in_the_event_log_across_a_kill(
        mqtt_url: str, tmp_path: Path) -> None:
    """The source's ``device_silent`` alerts join the engine's between two chunks, and are
    written to the event log at once under the next alert index. They are no chunk's input,
    so the engine rebuilt from the journal lacked them: its later alerts took their indexes,
    and the event log, which already had rows there, dropped them (here the operator's
    ``store_opened``, after a kill): the alert stream and its history lost alerts."""
    d = sqlite_deps(tmp_path)
    name = f"lsk{uuid.uuid4().hex[:8]}"
    cid = f"walkout-engine-{name}"
    MqttSource(mqtt_url, STORE, name, client_id=cid).start().close()  # the broker queues
    kw: dict[str, Any] = {"config": EngineConfig(chunk_s=1.0), "silent_after_s": 1.0,
                          "snapshot_every_s": 1e9}  # one snapshot, at the first chunk
    try:
        r1, th1, stop1 = _start(d, mqtt_url, name, **kw)
        cam = threading.Thread(target=_camera, args=(mqtt_url, name, 0.0, 10.0, 3.0))
        cam.start()
        # C02 falls silent after the first chunk's snapshot: alerted between two chunks. The
        # operator closes the store then, seconds before the camera's last chunk (a fixed
        # 2.5 s after the first silent device left 1.5 s, which a busy machine could miss)
        until(lambda: r1.chunks_done > 1 and _silent(d, r1.source, "cameras/C02"), th1, 30.0)
        store_mode.set_mode(d, True, "op", "restock")
        until(lambda: any(k == "store_closed" for _, k in _alert_rows(d, r1.source)), th1, 30.0)
        cam.join()
        r1.killed = True
        stop1.set()
        th1.join(30)
        assert not th1.is_alive()
        before = _alert_rows(d, r1.source)
        store_mode.set_mode(d, False, "op")  # while the engine is down
        r2, th2, _ = _start(d, mqtt_url, name, **kw)
        _camera(mqtt_url, name, 10.0, 13.0)
        with MqttPublisher(mqtt_url) as pub:
            pub.publish(wire.end_topic(name), wire.encode_end(13.0, {"cameras/C01": 195,
                                                                     "cameras/C02": 45}))
            pub.flush()
        th2.join(60)
        assert not th2.is_alive()
    finally:
        drop_session(mqtt_url, cid)
    assert r2.source == r1.source and r2.resumed_from is not None
    rows = _alert_rows(d, r1.source)
    assert rows[:len(before)] == before  # what the first run wrote stays
    assert "store_opened" in {k for _, k in rows}, rows
    assert r2.engine is not None
    assert [k for _, k in rows] == [a.kind for a in r2.engine.alerts]
    assert [s for s, _ in rows] == list(range(len(rows)))
    with d.sessions() as s:
        payloads = [json.loads(p) for p in s.scalars(
            select(EngineEvent.payload).where(EngineEvent.source == f"{r1.source}/alerts")
            .order_by(EngineEvent.seq))]
    assert [p["subject"] for p in payloads] == [a.subject for a in r2.engine.alerts]


def _roll_and_stop(d: Deps, url: str, name: str, **kw: Any) -> Killable:
    """C01 for 6.6 s, published at once: the stream rolls over at its last chunk (6 s; the
    store is empty) and the runner stops before the next stream's first chunk."""
    r, th, stop = _start(d, url, name, **kw)
    first = r.source
    time.sleep(0.5)  # subscribed
    with MqttPublisher(url) as pub:
        for k in range(99):
            pub.publish(wire.keypoints_topic(name, "C01"), wire.encode_keypoints(k, k / 15, KP))
        pub.flush()
    until(lambda: r.source != first, th, 30.0)
    time.sleep(0.5)
    stop.set()
    th.join(30)
    assert not th.is_alive() and r.chunks_done == 0
    return r


ROLL: dict[str, Any] = {"config": EngineConfig(chunk_s=1.0), "roll_after_s": 5.0,
                        "roll_quiet_s": 1.0, "silent_after_s": 600.0}


def test_a_restart_long_after_a_rollover_takes_the_data_after_the_gap(
        mqtt_url: str, tmp_path: Path) -> None:
    """The real time a stream stood still came from its runner checkpoint, which a stream just
    rolled over has none of: a restart two minutes later let the first data after the gap be
    only max_jump_s (30 s) ahead, refused all of it as an implausible jump of the clock, and
    the store's engine never stepped again (the broker had not kept the gap's messages)."""
    svc = make_svc(make_engine(f"sqlite:///{tmp_path / 'walkout.db'}"))
    d = svc.deps
    name = f"lsr{uuid.uuid4().hex[:8]}"
    cid = f"walkout-engine-{name}"
    MqttSource(mqtt_url, STORE, name, client_id=cid).start().close()
    try:
        r1 = _roll_and_stop(d, mqtt_url, name, **ROLL)
        svc.clock.advance(120.0)  # down for two minutes, and the broker's queue was lost
        drop_session(mqtt_url, cid)
        r2, th2, _ = _start(d, mqtt_url, name, **{**ROLL, "roll_after_s": None})
        # no session to queue for it: publish once the broker confirmed its subscriptions
        # (a fixed wait lost the first frames on a busy machine)
        until(lambda: r2._src is not None and r2._src._subscribed.is_set(), th2, 30.0)
        with MqttPublisher(mqtt_url) as pub:
            start = time.monotonic()
            for k in range(round(126.6 * 15), round(129.6 * 15)):
                time.sleep(max(0.0, start + k / 15 - 126.6 - time.monotonic()))
                pub.publish(wire.keypoints_topic(name, "C01"), wire.encode_keypoints(k, k / 15, KP))
            pub.publish(wire.end_topic(name), wire.encode_end(129.6, {"cameras/C01": 45}))
            pub.flush()
        th2.join(60)
        assert not th2.is_alive(), r2.input_stats()
    finally:
        drop_session(mqtt_url, cid)
    assert r2.source == r1.source and r2.resumed_from == -1
    assert r2.input_stats()["rejected"] == {} and r2.input_stats()["accepted"] == 45
    assert r2.engine is not None and r2._t >= 129.0


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_crash_in_the_middle_of_a_rollover_keeps_the_old_stream(
        mqtt_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old stream's journal and snapshot were deleted in one transaction and the new
    stream's first snapshot written in the next: a crash between the two left no stream to
    continue, and the restart began a fresh engine that had forgotten the shelves (their
    stock and baselines). Now both go in one transaction: the old stream is continued."""
    d = sqlite_deps(tmp_path)
    name = f"lsr{uuid.uuid4().hex[:8]}"
    cid = f"walkout-engine-{name}"
    MqttSource(mqtt_url, STORE, name, client_id=cid).start().close()

    real = live_state.code_version

    def crash(store: Any) -> str:  # the power goes while the new snapshot is written
        if any(f.f_code.co_name == "_roll" for f in _frames()):
            raise SystemExit("power cut")
        return real(store)

    monkeypatch.setattr(live_state, "code_version", crash)
    try:
        r, th, _ = _start(d, mqtt_url, name, **ROLL)
        first = r.source
        time.sleep(0.5)
        with MqttPublisher(mqtt_url) as pub:
            for k in range(99):
                pub.publish(wire.keypoints_topic(name, "C01"),
                            wire.encode_keypoints(k, k / 15, KP))
            pub.flush()
        th.join(30)
        assert not th.is_alive()
    finally:
        drop_session(mqtt_url, cid)
    monkeypatch.setattr(live_state, "code_version", real)
    stream = live_state.open_stream(d, r.stream_prefix, STORE)
    assert stream is not None and stream.source == first and stream.lost is None
    assert stream.state is not None  # the engine with its shelves, to continue


def _frames() -> Iterator[Any]:
    import sys

    f = sys._getframe(1)
    while f is not None:
        yield f
        f = f.f_back


def test_a_stream_an_engine_without_state_cannot_continue_is_not_left_for_later(
        mqtt_url: str, tmp_path: Path) -> None:
    """An engine on Ray (``serve --ray``) keeps no state, so it began a new stream and left
    the store's open one where it was: the next start without Ray, days later, continued that
    old stream, with the people inside then still inside. It ends it, and says so."""
    d = sqlite_deps(tmp_path)
    name = f"lsr{uuid.uuid4().hex[:8]}"
    old = f"mqtt:{name}:20261120T080000"
    live_state.save_snapshot(d, old, 3, 20.0, STORE, {"chunks_done": 4})
    r, th, stop = _start(d, mqtt_url, name, config=EngineConfig(chunk_s=1.0), keep_state=False)
    try:
        until(lambda: r.engine is not None, th, 30.0)
        time.sleep(1.0)
        stop.set()
        th.join(30)
    finally:
        drop_session(mqtt_url, r.client_id)
    assert r.source != old
    assert live_state.open_stream(d, r.stream_prefix, STORE) is None
    assert r.engine is not None
    lost = [a for a in r.engine.alerts if a.kind == "engine_state_lost"]
    assert len(lost) == 1 and old in lost[0].message and "keeps no state" in lost[0].message


def test_the_alert_that_a_stream_was_lost_survives_a_kill_before_the_first_snapshot(
        mqtt_url: str, tmp_path: Path) -> None:
    """``engine_state_lost`` joins the new engine's alerts before its first chunk, as the
    source's do between chunks: killed before a snapshot held it, the engine rebuilt from the
    journal lacked it, and its first alert took its index (and lost its event-log row)."""
    d = sqlite_deps(tmp_path)
    name = f"lsl{uuid.uuid4().hex[:8]}"
    with d.sessions.begin() as s:
        from walkout.service.models import EngineSnapshot

        s.add(EngineSnapshot(source=f"mqtt:{name}:20261123T080000", chunk=40, t=200.0,
                             code="an older walkout", payload=b"\x80\x05N.",
                             created_at=d.clock.now()))
    kw: dict[str, Any] = {"config": EngineConfig(chunk_s=1.0), "silent_after_s": 600.0}
    cid = f"walkout-engine-{name}"
    MqttSource(mqtt_url, STORE, name, client_id=cid).start().close()
    try:
        r1 = Killable(f"{mqtt_url}/{name}", STORE, accept_end=True, **kw)
        r1.killed = True  # no snapshot at all: the restart has the journal only
        stop1 = threading.Event()
        th1 = threading.Thread(target=r1.run, args=(d, stop1), daemon=True)
        th1.start()
        time.sleep(0.5)
        store_mode.set_mode(d, True, "op")  # an alert of the engine's own, at its first chunk
        _camera(mqtt_url, name, 0.0, 3.0)
        until(lambda: r1.chunks_done >= 2, th1, 30.0)
        stop1.set()
        th1.join(30)
        assert _alert_rows(d, r1.source)[:2] == [(0, "engine_state_lost"), (1, "store_closed")]
        r2, th2, _ = _start(d, mqtt_url, name, **kw)
        _camera(mqtt_url, name, 3.0, 5.0)
        with MqttPublisher(mqtt_url) as pub:
            pub.publish(wire.end_topic(name), wire.encode_end(5.0, {"cameras/C01": 75}))
            pub.flush()
        th2.join(60)
        assert not th2.is_alive()
    finally:
        drop_session(mqtt_url, cid)
    assert r2.source == r1.source and r2.engine is not None
    rows = _alert_rows(d, r1.source)
    assert [k for _, k in rows] == [a.kind for a in r2.engine.alerts]


class _Receipts:
    """The store's other systems, subscribed to the engine's receipts."""

    def __init__(self, url: str, name: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from walkout.sources.mqtt import parse_url

        self.got: list[tuple[str, int]] = []
        ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-erp")
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(f"walkout/{name}/receipts/#", 1)
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_message = lambda c, u, m: self.got.append(
            (json.loads(m.payload)["session"], json.loads(m.payload)["revision"]))
        self.c.connect(*parse_url(url))
        self.c.loop_start()
        assert ready.wait(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class _Unheard(Killable):
    """Its results never leave: what paho held in memory when the power went."""

    def _publish(self, pub: Any, eng: Any) -> None:
        pass


def test_receipts_issued_before_a_kill_and_never_sent_are_sent_by_the_restart(
        mqtt_url: str, tmp_path: Path) -> None:
    """The result topics are published asynchronously (paho's thread, QoS 1): receipts the
    engine had issued and committed but paho had not handed to the broker when the engine was
    killed are gone with it, and the restart's replay counted every receipt of the chunks the
    first run committed as published. The store's other systems never got them. The restart
    now sends again whatever the replayed chunks issued (QoS 1 is at least once: a consumer
    already keys a receipt by its session and revision), and a snapshot is taken only once
    the broker has acknowledged what came before it."""
    from walkout.engine import Engine
    from walkout.sim.session import simulate
    from walkout.sources.mqtt import session_messages
    from walkout.sources.recording import Sensors

    d = sqlite_deps(tmp_path)
    session = simulate(STORE, 3, 2)  # exits at 69, 80 and 86 s
    name = f"lsp{uuid.uuid4().hex[:8]}"
    cid = f"walkout-engine-{name}"
    MqttSource(mqtt_url, STORE, name, client_id=cid).start().close()
    msgs, sent = session_messages(session, name)
    erp = _Receipts(mqtt_url, name)
    try:
        r1 = _Unheard(f"{mqtt_url}/{name}", STORE, accept_end=True, snapshot_every_s=1e9)
        r1.killed = True
        stop1 = threading.Event()
        th1 = threading.Thread(target=r1.run, args=(d, stop1), daemon=True)
        th1.start()
        time.sleep(0.5)
        with MqttPublisher(mqtt_url) as pub:
            for m in msgs:
                if m.t_send < 84.0:
                    pub.publish(m.topic, m.payload)
            pub.flush()
            until(lambda: r1.chunks_done >= 16, th1, 60)
            stop1.set()
            th1.join(30)
            assert r1.engine is not None and r1.engine.issued  # a receipt, never sent
            for m in msgs:
                if m.t_send >= 84.0:
                    pub.publish(m.topic, m.payload)
            pub.publish(wire.end_topic(name), wire.encode_end(float(session.duration_s), sent))
            pub.flush()
        _, th2, _ = _start(d, mqtt_url, name)
        th2.join(120)
        assert not th2.is_alive()
        time.sleep(1.0)
    finally:
        erp.close()
        drop_session(mqtt_url, cid)
    ref = Engine(STORE).run(Sensors.from_session(session))
    assert {s for s, _ in erp.got} == {r.session_id for r in ref.receipts}
