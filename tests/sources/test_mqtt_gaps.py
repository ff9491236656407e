"""MqttSource when the sensor data has a hole: what the broker could not keep (its queue full
while the engine was down or behind, a session expired) never comes, and the data after it is
far ahead of the data before. Fed through the message handler with exact receive times, as in
``test_mqtt_input.py``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from walkout.sources import wire
from walkout.sources.mqtt import Chunk, MqttSource
from walkout.store.loader import load_store

STORE = load_store("small")
NAME = "shop"
CAMS = ["C01", "C02", "C03"]


def _src(**kw: Any) -> MqttSource:
    """A source never started: messages go straight to its handler."""
    opts: dict[str, Any] = {"chunk_s": 1.0, "reorder_window_s": 0.5, "skew_min_obs": 10}
    return MqttSource("mqtt://127.0.0.1:1", STORE, NAME, **{**opts, **kw})


def _frame(s: MqttSource, cam: str, seq: int, t: float, recv: float) -> list[Chunk]:
    kp = np.full((1, 17, 3), 10.0, np.float32)
    s._handle(wire.keypoints_topic(NAME, cam), wire.encode_keypoints(seq, t, kp), recv)
    out, s._ready = s._ready, []
    return out


def test_a_hole_in_the_data_after_a_backlog_is_crossed_once_the_devices_agree() -> None:
    """The engine was down: the broker kept 20 s of the store's data and lost the next three
    minutes (its queue full). The kept part comes in a burst, then live data 180 s ahead of
    it. The guard against one glitched clock moving the stream (``max_jump_s``) allows for the
    real time since the stream last advanced, which the burst had just moved: every later
    message was refused as an implausible jump, for good, and the store's engine never
    stepped again. When most of the store's cameras and gondolas agree on the jump, it is the
    stream's: it goes on there, and the operator is told what is missing."""
    s = _src()
    base = time.monotonic()
    chunks: list[Chunk] = []
    seq = 0
    for k in range(300):  # 0-20 s, delivered in 0.3 s when the engine comes back
        for c in CAMS:
            chunks += _frame(s, c, seq, k / 15, base + 0.001 * k)
        seq += 1
    assert chunks and chunks[-1][3] >= 19.0
    for k in range(45):  # live again: 200-203 s
        for c in CAMS:
            chunks += _frame(s, c, seq, 200 + k / 15, base + 0.5 + k / 15)
        seq += 1
    ends = [c[3] for c in chunks]
    assert ends == [float(e) for e in range(1, len(ends) + 1)]  # one chunk after the other
    assert ends[-1] >= 202.0, (ends[-1], dict(s.stats.rejected))
    frames = [f for c in chunks for f in c[1]]
    assert sum(f.t >= 200 for f in frames) >= 3 * 30 - 5  # released so far, but for a few
    assert s.stats.rejected["implausible_time"] <= 3 * 5
    gap = [a for a in s.take_alerts() if a.kind == "stream_gap"]
    assert len(gap) == 1 and "180" in gap[0].message


def test_one_device_jumping_ahead_moves_no_stream() -> None:
    """A single camera whose clock jumps three minutes ahead for good is no hole in the
    stream: its clock is corrected (the stream stays where the others are)."""
    s = _src()
    base = time.monotonic()
    chunks: list[Chunk] = []
    for k in range(300):
        for c in CAMS:
            t = k / 15 + (180.0 if c == "C03" and k >= 150 else 0.0)
            chunks += _frame(s, c, k, t, base + k / 15)
    assert chunks[-1][3] >= 18.0
    assert all(f.t < 20 for c in chunks for f in c[1])
    assert sum(f.camera_id == "C03" for c in chunks for f in c[1]) >= 250
    assert not [a for a in s.take_alerts() if a.kind == "stream_gap"]
