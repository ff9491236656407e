"""`walkout perceive --mqtt`: a camera's keypoint frames published live to the store's engine,
against the real Mosquitto (WALKOUT_TEST_MQTT_URL, else a private one) and the engine's own
MQTT source."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from walkout.events import KeypointFrame
from walkout.perception.config import PerceptionConfig
from walkout.perception.publish import BrokerError, KeypointPublisher
from walkout.perception.run import perceive_video
from walkout.sources import wire
from walkout.sources.mqtt import LocalMosquitto, MqttPublisher, MqttSource, drop_session, parse_url
from walkout.sources.recording import load_sensors
from walkout.store import load_store


def _clip(path: Path, videos_dir: Path, frames: int = 20) -> None:
    """Camera 3 around the shopper's first reach, at 10 fps: frames with a person in."""
    cap = cv2.VideoCapture(str(videos_dir / "cps-test-01-nodepth-cam3.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 100)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (640, 360))
    for _ in range(frames):
        ok, img = cap.read()
        assert ok
        out.write(img)
    out.release()
    cap.release()


class _Listener:
    """A plain subscriber collecting every payload on one topic."""

    def __init__(self, url: str, topic: str) -> None:
        self.payloads: list[bytes] = []
        self._ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.c.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *a: self._ready.set()
        self.c.on_message = lambda c, u, m: self.payloads.append(m.payload)
        self.c.connect(*parse_url(url))
        self.c.loop_start()
        assert self._ready.wait(10)

    def wait_for(self, n: int, timeout: float = 20.0) -> list[bytes]:
        end = time.monotonic() + timeout
        while len(self.payloads) < n and time.monotonic() < end:
            time.sleep(0.05)
        return self.payloads

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _walkout(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "walkout.cli", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_perceive_publishes_each_frame_as_recorded_and_the_engine_takes_them(
        tmp_path: Path, models_dir: Path, videos_dir: Path, mqtt_url: str):
    """The live path camera → keypoints → engine had no middle: `perceive` only wrote a
    recording at its end. Now each frame goes out on the camera's topic as it is made, with
    the recording's own time and keypoints, seq 0, 1, 2…, and the engine's MQTT source takes
    every one (no rejection, none late)."""
    clip = tmp_path / "clip.mp4"
    _clip(clip, videos_dir)
    name = f"t{uuid.uuid4().hex[:10]}"
    store = load_store("aifi-nanostore")
    listener = _Listener(mqtt_url, wire.keypoints_topic(name, "cam3"))
    src = MqttSource(mqtt_url, store, name, client_id=f"{name}-engine", chunk_s=1.0,
                     reorder_window_s=0.5, session_expiry_s=60, end_grace_s=5.0,
                     accept_end=True).start()
    try:
        rec = tmp_path / "rec"
        r = _walkout("perceive", "--video", str(clip), "--realtime", "--camera", "cam3",
                     "--store", "aifi-nanostore", "--out", str(rec), "--models",
                     str(models_dir), "--mqtt", f"{mqtt_url}/{name}")
        assert r.returncode == 0, r.stderr
        stats = json.loads(r.stdout.strip().splitlines()[-1])
        recorded = [f for f in load_sensors(rec).frames if f.camera_id == "cam3"]
        assert len(recorded) == stats["processed"] == stats["mqtt_published"] >= 10
        assert stats["mqtt_unacked"] == 0 and stats["mqtt_refused"] == 0
        assert sum(f.keypoints.shape[0] for f in recorded) >= 10  # the shopper is in them
        msgs = [wire.decode_keypoints(p) for p in listener.wait_for(len(recorded))]
        assert [m.seq for m in msgs] == list(range(len(recorded)))
        for m, f in zip(msgs, recorded, strict=True):
            assert m.t == f.t
            np.testing.assert_array_equal(m.keypoints, f.keypoints)

        with MqttPublisher(mqtt_url) as pub:  # the end a replay would send, to drain it
            pub.publish(wire.end_topic(name), wire.encode_end(
                recorded[-1].t, {"cameras/cam3": len(recorded)}))
            pub.flush()
        got: list[KeypointFrame] = []
        end = time.monotonic() + 30
        while not src.finished:
            assert time.monotonic() < end, src.stats
            got += [f for _, frames, _, _ in src.poll(0.1) for f in frames]
        assert not src.stats.rejected and src.stats.late == 0 and src.stats.missing == 0
        assert [(f.camera_id, f.t) for f in got] == [("cam3", f.t) for f in recorded]
        for g, f in zip(got, recorded, strict=True):
            np.testing.assert_array_equal(g.keypoints, f.keypoints)
    finally:
        listener.close()
        src.close()
        drop_session(mqtt_url, src.client_id)


def _numbered_video(path: Path, frames: int, fps: float) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 90))
    for i in range(frames):
        img = np.zeros((90, 160, 3), np.uint8)
        cv2.putText(img, str(i), (10, 60), 0, 1.5, (255, 255, 255), 2)
        w.write(img)
    w.release()


def test_publishing_only_holds_no_frames(tmp_path: Path, models_dir: Path, mqtt_url: str):
    """Without --out a run kept every frame in a list until it stopped (~1 KB a frame: a
    camera running all day grows without bound); published alone, none is kept."""
    video = tmp_path / "v.avi"
    _numbered_video(video, 12, 10.0)
    name = f"t{uuid.uuid4().hex[:10]}"
    listener = _Listener(mqtt_url, wire.keypoints_topic(name, "cam1"))
    try:
        with KeypointPublisher(mqtt_url, name, "cam1") as pub:
            res = perceive_video(video, "cam1", None,
                                 PerceptionConfig(models_dir=models_dir, threads=1),
                                 sink=pub, keep=False)
            stats = pub.close()
        assert res.frames == []
        assert stats["mqtt_published"] == res.stats["processed"] == 12
        assert len(listener.wait_for(12)) == 12
    finally:
        listener.close()


def test_a_broker_that_does_not_answer_is_an_error_naming_it(tmp_path: Path):
    """Refused at once, and one that accepts TCP but never speaks MQTT: both name the URL,
    before any model is loaded."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        silent = f"mqtt://127.0.0.1:{s.getsockname()[1]}"
        t0 = time.monotonic()
        with pytest.raises(BrokerError, match=f"{silent} did not answer"):
            KeypointPublisher(silent, "x", "cam1", connect_s=1.0)
        assert time.monotonic() - t0 < 5
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"mqtt://127.0.0.1:{s.getsockname()[1]}"
    r = _walkout("perceive", "--video", str(tmp_path / "none.avi"), "--camera", "cam1",
                 "--store", "aifi-nanostore", "--mqtt", f"{closed}/shop")
    assert r.returncode == 2 and f"cannot reach the MQTT broker at {closed}" in r.stderr, r.stderr
    r = _walkout("perceive", "--video", str(tmp_path / "none.avi"), "--camera", "cam1",
                 "--store", "aifi-nanostore")
    assert r.returncode == 2 and "--out DIR, --mqtt" in r.stderr, r.stderr


@pytest.fixture
def own_broker() -> Iterator[LocalMosquitto]:
    """A private Mosquitto this test may stop and start."""
    try:
        broker = LocalMosquitto().start()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    try:
        yield broker
    finally:
        broker.close()


def _frames(pub: KeypointPublisher, ks: range) -> None:
    kp = np.zeros((1, 17, 3), np.float32)
    for i in ks:
        pub(KeypointFrame("cam1", i / 10, kp))


def test_frames_published_while_the_broker_is_away_go_out_when_it_is_back(
        own_broker: LocalMosquitto):
    """A broker restart mid-run: publishing goes on without an error (paho keeps the frames),
    and once it is back every frame is acknowledged."""
    pub = KeypointPublisher(own_broker.url, "shop", "cam1")
    _frames(pub, range(5))
    own_broker.stop()
    _frames(pub, range(5, 15))
    own_broker.start()
    stats = pub.close(flush_s=15)
    assert stats["mqtt_published"] == 15 and stats["mqtt_unacked"] == 0, stats


def test_frames_a_broker_never_took_are_counted_as_unacknowledged(own_broker: LocalMosquitto):
    """The broker goes and stays away: closing waits its time, then says how many frames it
    never acknowledged (those are lost), not how many were published."""
    pub = KeypointPublisher(own_broker.url, "shop", "cam1")
    _frames(pub, range(5))
    pub._pub.flush(10)
    assert pub._pub.unacked == 0
    own_broker.stop()
    _frames(pub, range(5, 12))
    assert pub._pub.unacked == 7
    stats = pub.close(flush_s=1)
    assert stats["mqtt_published"] == 12 and stats["mqtt_unacked"] == 7, stats


def test_a_live_run_publishing_only_stops_on_ctrl_c_with_every_frame_sent(
        tmp_path: Path, models_dir: Path, mqtt_url: str):
    """`--stream … --mqtt` without --out: Ctrl-C stops it, the frames made are all
    acknowledged before it exits 0 with its counters, and no recording is written."""
    video = tmp_path / "v.avi"
    _numbered_video(video, 300, 10.0)  # 30 s played at its frame rate: Ctrl-C ends it first
    name = f"t{uuid.uuid4().hex[:10]}"
    listener = _Listener(mqtt_url, wire.keypoints_topic(name, "cam1"))
    p = subprocess.Popen(
        [sys.executable, "-m", "walkout.cli", "perceive", "--stream", str(video), "--camera",
         "cam1", "--store", "aifi-nanostore", "--models", str(models_dir), "--mqtt",
         f"{mqtt_url}/{name}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), cwd=tmp_path)
    lines: list[str] = []
    assert p.stdout is not None and p.stderr is not None
    reader = threading.Thread(target=lines.extend, args=(p.stderr,), daemon=True)
    reader.start()
    try:
        # Ctrl-C once a few frames went out (a fixed 1.5 s after "reading" made fewer than 5
        # on a busy machine): the model loaded, the stream open and perceived
        deadline = time.monotonic() + 120
        while len(listener.payloads) < 5:
            assert p.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        out = p.stdout.read()
    finally:
        if p.poll() is None:
            p.kill()
            listener.close()
    reader.join(5)
    assert p.returncode == 0, "".join(lines)
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["ended"] == "stopped" and 5 <= stats["processed"] < 300
    assert stats["mqtt_published"] == stats["processed"] and stats["mqtt_unacked"] == 0
    try:
        msgs = [wire.decode_keypoints(b) for b in listener.wait_for(stats["processed"])]
    finally:
        listener.close()
    assert [m.seq for m in msgs] == list(range(stats["processed"]))
    assert all(b.t > a.t for a, b in pairwise(msgs))
    # a live stream's frames go out on the wall clock (a restarted worker goes on with it,
    # as a device's clock does, instead of stepping back to 0)
    assert abs(msgs[0].t - time.time()) < 60, msgs[0].t
    assert list(tmp_path.iterdir()) == [video]  # nothing written

