"""The whole MQTT path against a real Mosquitto: a simulated store end to end, a broker restart
mid-stream, and the throughput the issue asks for."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from walkout.engine import Engine
from walkout.sim.session import simulate
from walkout.sources import wire
from walkout.sources.mqtt import (
    LocalMosquitto,
    MqttPublisher,
    MqttSource,
    drop_session,
    measure_throughput,
    publish_session,
)
from walkout.sources.recording import Sensors
from walkout.store.loader import load_store


@pytest.mark.slow
def test_simulated_store_through_mosquitto_gives_the_same_receipts(mqtt_url: str) -> None:
    store = load_store("small")
    session = simulate(store, 3, 1)
    name = f"e2e{uuid.uuid4().hex[:8]}"
    src = MqttSource(mqtt_url, store, name, client_id=f"{name}-engine", session_expiry_s=120,
                     accept_end=True)
    src.start()
    try:
        sent = publish_session(session, mqtt_url, name, speed=None)
        engine = Engine(store)
        steps: list[float] = []
        n_frames = 0
        for block, frames, gates, now in src:
            engine.step(block, frames, gates, now)
            steps.append(now)
            n_frames += len(frames)
        engine.finish()
    finally:
        src.close()
        drop_session(mqtt_url, src.client_id)
    assert src.stats.accepted == sent["messages"] and src.stats.late == 0
    assert not src.stats.rejected and src.stats.missing == 0
    ref_steps: list[float] = []
    ref = Engine(store).run(Sensors.from_session(session), progress=ref_steps.append)
    got = engine.result()
    assert steps == ref_steps  # the same chunks as a replay of the same readings
    assert n_frames == len(session.frames)  # none dropped, not even one stamped before 0
    assert {r.credential: r.counts() for r in got.receipts} == {
        r.credential: r.counts() for r in ref.receipts}
    assert len(got.receipts) == 3 and any(r.lines for r in got.receipts)
    assert [e.event_id for e in got.events] == [e.event_id for e in ref.events]


def _frame(name: str, cam: str, k: int) -> tuple[str, bytes]:
    return wire.keypoints_topic(name, cam), wire.encode_keypoints(
        k, k / 15, np.zeros((0, 17, 3), np.float32))


@pytest.mark.slow
def test_broker_restart_loses_nothing() -> None:
    """Messages queued for the absent engine survive a broker restart (persistence); the engine
    and the publisher reconnect and resubscribe by themselves through a second restart."""
    try:
        broker = LocalMosquitto(persistence=True).start()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    store = load_store("small")
    name, cid = "restart", "restart-engine"
    cams = ["C01", "C02", "C03"]
    msgs = [_frame(name, c, k) for k in range(15 * 9) for c in cams]  # 9 s of 3 cameras
    a, b = len(msgs) // 3, 2 * len(msgs) // 3
    try:
        MqttSource(broker.url, store, name, client_id=cid).start().close()  # session exists
        pub = MqttPublisher(broker.url)
        for m in msgs[:a]:  # the engine is away: the broker queues these for its session
            pub.publish(*m)
        pub.flush()
        broker.restart()  # persisted on the way down, restored on the way up
        src = MqttSource(broker.url, store, name, client_id=cid, chunk_s=1.0,
                         end_grace_s=20.0, accept_end=True).start()
        for m in msgs[a:b]:
            pub.publish(*m)
        pub.flush(30)
        chunks = src.poll(0.2)
        broker.stop()  # both clients lose the broker mid-stream
        for m in msgs[b:]:
            pub.publish(*m)  # paho keeps them until it is connected again
        time.sleep(0.5)
        broker.start()
        pub.publish(wire.end_topic(name), wire.encode_end(9.0, {f"cameras/{c}": 135
                                                                for c in cams}))
        pub.flush(30)
        pub.close()
        deadline = time.monotonic() + 30
        while not src.finished and time.monotonic() < deadline:
            chunks += src.poll(0.1)
        src.close()
        got = sorted((f.camera_id, f.t) for _, fs, _, _ in chunks for f in fs)
        assert got == sorted((c, k / 15) for k in range(15 * 9) for c in cams)
        assert src.stats.missing == 0 and src.stats.late == 0 and src.stats.connects >= 2
    finally:
        broker.close()


def test_throughput_meets_the_goals(mqtt_url: str) -> None:
    r = measure_throughput(mqtt_url, seconds=5.0)
    assert r["lost"] == 0
    assert r["plate_samples_per_s"] >= 30_000
    assert r["keypoint_frames_per_s"] >= 600
