"""MqttSource against a real Mosquitto: reordering, late and duplicate messages, bad payloads,
clock skew, silent devices and a persistent session.

The broker is the one of scripts/test.sh (WALKOUT_TEST_MQTT_URL) or, without it, a private
Mosquitto started here; each test uses its own store name and client ids, so tests never see
each other's messages or sessions.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest

from walkout.events import KeypointFrame
from walkout.sources import wire
from walkout.sources.mqtt import (
    Chunk,
    MqttPublisher,
    MqttSource,
    drop_session,
)
from walkout.store.loader import load_store
from walkout.store.model import Store


@pytest.fixture(scope="module")
def store() -> Store:
    return load_store("small")


@pytest.fixture
def name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def source(mqtt_url: str, store: Store, name: str) -> Iterator[MqttSource]:
    src = MqttSource(mqtt_url, store, name, client_id=f"{name}-engine", chunk_s=1.0,
                     reorder_window_s=0.5, session_expiry_s=60, end_grace_s=5.0,
                     accept_end=True)
    src.start()
    yield src
    src.close()
    drop_session(mqtt_url, src.client_id)


def _kp(t: float) -> np.ndarray:
    """A one-person frame whose nose x encodes its time: lets tests check payloads arrive."""
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, 0] = (t * 1000.0, 1.0, 1.0)
    return kp


def _frames(cams: list[str], seconds: float) -> list[tuple[str, int, float]]:
    """(camera, seq, t) of 15 fps cameras, in time order."""
    return [(c, k, k / 15) for k in range(round(seconds * 15)) for c in cams]


def _send_frames(pub: MqttPublisher, name: str, frames: list[tuple[str, int, float]],
                 shift: dict[str, float] | None = None) -> None:
    for cam, seq, t in frames:
        ts = t + (shift or {}).get(cam, 0.0)
        pub.publish(wire.keypoints_topic(name, cam), wire.encode_keypoints(seq, ts, _kp(t)))


def _end(pub: MqttPublisher, name: str, t: float, frames: list[tuple[str, int, float]]) -> None:
    sent = Counter(f"cameras/{c}" for c, _, _ in frames)
    pub.publish(wire.end_topic(name), wire.encode_end(t, dict(sent)))
    pub.flush()


def _run(src: MqttSource, timeout: float = 30.0) -> list[Chunk]:
    out: list[Chunk] = []
    end = time.monotonic() + timeout
    while not src.finished:
        assert time.monotonic() < end, f"stream did not end; stats {src.stats}"
        out += src.poll(0.1)
    return out


def _all_frames(chunks: list[Chunk]) -> list[KeypointFrame]:
    return [f for _, frames, _, _ in chunks for f in frames]


def test_reorders_within_window_and_drops_late(
    mqtt_url: str, source: MqttSource, name: str, caplog: pytest.LogCaptureFixture,
) -> None:
    cams = ["C01", "C02", "C03"]
    frames = _frames(cams, 3.0)
    shuffled = []
    rng = random.Random(3)
    for i in range(0, len(frames), 9):  # displaced by up to 0.2 s, inside the 0.5 s window
        group = frames[i : i + 9]
        rng.shuffle(group)
        shuffled += group
    with MqttPublisher(mqtt_url) as pub:
        _send_frames(pub, name, shuffled)
        # 2.5 s behind the newest frame: its chunk [0, 1) is long released (not at a frame's
        # time: a frame of the same camera and time is a repeat, whatever its seq)
        pub.publish(wire.keypoints_topic(name, "C01"), wire.encode_keypoints(999, 0.41,
                                                                             _kp(0.41)))
        _end(pub, name, 3.0, [*frames, ("C01", 999, 0.41)])
    with caplog.at_level(logging.WARNING, "walkout.sources.mqtt"):
        chunks = _run(source)
    assert [now for *_, now in chunks] == [1.0, 2.0, 3.0]  # as Engine.run cuts 3 s
    for _, fs, _, now in chunks:
        ts = [f.t for f in fs]
        assert ts == sorted(ts) and all(now - 1.0 <= t < now for t in ts)
    got = sorted((f.camera_id, f.t) for f in _all_frames(chunks))
    assert got == sorted((c, t) for c, _, t in frames)  # every in-window frame, the late one not
    assert source.stats.late == 1 and source.stats.accepted == len(frames)
    assert "late message from cameras/C01 (seq 999" in caplog.text


def test_duplicates_applied_once(mqtt_url: str, source: MqttSource, name: str) -> None:
    frames = _frames(["C01", "C02"], 2.0)
    with MqttPublisher(mqtt_url) as pub:
        _send_frames(pub, name, frames)
        _send_frames(pub, name, frames[10:20])  # QoS 1 re-deliveries: same device, same seq
        _send_frames(pub, name, frames[12:13])
        _end(pub, name, 2.0, frames)
    chunks = _run(source)
    got = [(f.camera_id, f.t) for f in _all_frames(chunks)]
    assert len(got) == len(set(got)) == len(frames)
    assert source.stats.duplicates == 11


def test_malformed_payloads_rejected_counted_and_survived(
    mqtt_url: str, source: MqttSource, name: str, caplog: pytest.LogCaptureFixture,
) -> None:
    good = _frames(["C01"], 2.0)
    g = np.zeros((6, 1), np.float32)
    kp = wire.encode_keypoints(5, 0.3, _kp(0))
    bad = [
        (wire.plates_topic(name, "A1S"), b"\x00garbage"),
        (wire.plates_topic(name, "A1S"), wire.encode_plates("x", 0, 0.0, 60.0, ("B1N-S1-P1",), g)),
        (wire.plates_topic(name, "A1S"), wire.encode_plates("x", 0, 0.0, 60.0, ("nope",), g)),
        (wire.keypoints_topic(name, "C01"), wire.encode_keypoints(5, 0.3, _kp(0))[:-8]),
        (wire.keypoints_topic(name, "C01"), kp[:2] + b"\x63" + kp[3:]),  # version 99
        (wire.keypoints_topic(name, "C99"), wire.encode_keypoints(5, 0.3, _kp(0))),
        (wire.gate_topic(name, "entry"), b'{"v": 2, "seq": 0, "t": 1.0}'),
        (wire.gate_topic(name, "entry"), b"not json at all"),
        (wire.end_topic(name), b'{"v": 1, "t": "later", "sent": {}}'),
    ]
    with MqttPublisher(mqtt_url) as pub:
        _send_frames(pub, name, good[:10])
        for topic, payload in bad:
            pub.publish(topic, payload)
        _send_frames(pub, name, good[10:])
        _end(pub, name, 2.0, good)
    with caplog.at_level(logging.WARNING, "walkout.sources.mqtt"):
        chunks = _run(source)
    assert source.stats.rejected == Counter({
        "truncated": 1, "unknown_plate": 2, "bad_length": 1, "unknown_version": 2,
        "unknown_device": 1, "bad_json": 1, "bad_field": 1,
    })
    assert len(_all_frames(chunks)) == len(good)  # the pipeline went on
    assert "rejected message on walkout/" in caplog.text and "unknown_version" in caplog.text


def test_clock_skew_estimated_and_corrected(mqtt_url: str, source: MqttSource, name: str) -> None:
    """Four cameras in real time, one of them with its clock 2 s ahead."""
    cams = ["C01", "C02", "C03", "C04"]
    frames = _frames(cams, 1.6)
    t0 = time.monotonic()
    with MqttPublisher(mqtt_url) as pub:
        for k in range(0, len(frames), len(cams)):
            delay = t0 + frames[k][2] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            _send_frames(pub, name, frames[k : k + len(cams)], shift={"C04": 2.0})
        _end(pub, name, 1.6, frames)
    chunks = _run(source)
    got = _all_frames(chunks)
    assert len(got) == len(frames)
    for f in got:
        true_t = round(float(f.keypoints[0, 0, 0]) * 15 / 1000) / 15  # frame k at k / 15
        if f.camera_id == "C04":
            assert f.t == pytest.approx(true_t, abs=0.05)
        else:
            assert f.t == true_t  # in-sync clocks keep their exact timestamps
    assert set(source.stats.corrections_s) == {"cameras/C04"}
    assert source.stats.corrections_s["cameras/C04"] == pytest.approx(-2.0, abs=0.05)


def test_silent_device_raises_alert(mqtt_url: str, store: Store, name: str) -> None:
    src = MqttSource(mqtt_url, store, name, client_id=f"{name}-engine", chunk_s=1.0,
                     silent_after_s=0.5, session_expiry_s=60).start()
    try:
        t0 = time.monotonic()
        with MqttPublisher(mqtt_url) as pub:
            for seq in range(30):  # 2 s at 15 fps; C02 stops after 0.4 s
                while time.monotonic() < t0 + seq / 15:
                    src.poll(0.01)
                cams = ["C01", "C02"] if seq < 6 else ["C01"]
                _send_frames(pub, name, [(c, seq, seq / 15) for c in cams])
            pub.flush()
        src.poll(0.1)
        alerts = src.take_alerts()
        silent = {a.subject: a for a in alerts if a.kind == "device_silent"}
        assert len(silent) == len(alerts) and "cameras/C01" not in silent
        c02 = silent.pop("cameras/C02")
        assert "sent nothing for" in c02.message
        assert 0.3 < c02.t < 2.0  # stamped in store time, when it was noticed
        # every other camera and gondola never sent anything: alerted as well
        assert set(silent) == {f"cameras/{c.id}" for c in store.cameras[2:]} | {
            f"plates/{g.id}" for g in store.gondolas}
        assert all("since this consumer started" in a.message for a in silent.values())
    finally:
        src.close()
        drop_session(mqtt_url, src.client_id)


def test_persistent_session_keeps_what_came_while_away(
    mqtt_url: str, store: Store, name: str,
) -> None:
    """The engine restarts: what was published while it was down is delivered on return."""
    cid = f"{name}-engine"
    MqttSource(mqtt_url, store, name, client_id=cid, session_expiry_s=60).start().close()
    frames = _frames(["C01", "C02"], 2.0)
    with MqttPublisher(mqtt_url) as pub:
        _send_frames(pub, name, frames)
        _end(pub, name, 2.0, frames)
    src = MqttSource(mqtt_url, store, name, client_id=cid, chunk_s=1.0, session_expiry_s=60,
                     end_grace_s=3.0, accept_end=True).start()
    try:
        got = _all_frames(_run(src))
        assert len(got) == len(frames) and src.stats.missing == 0
    finally:
        src.close()
        drop_session(mqtt_url, cid)
