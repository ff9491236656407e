"""MqttSource on crafted and glitched sensor input, fed through its message handler (no broker:
the receive times are the test's, so clocks and silences are exact).

Whatever a message carries, the handler accepts it or counts it under a reason, never raises;
one device's bad clock moves neither the chunk clock nor its own clock estimate; a repeat is
recognised by what it reads, not by its sequence number; a live consumer takes no end of
stream from the wire.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest

from walkout.events import GateEvent, GateKind
from walkout.service.mqtt_runner import MqttRunner
from walkout.sources import wire
from walkout.sources.mqtt import Chunk, MqttSource
from walkout.store.loader import load_store
from walkout.store.model import Store

STORE: Store = load_store("small")
NAME = "shop"
A1S = tuple(p.id for s in STORE.gondolas[0].shelves for p in s.plates)
BASE = 0.0  # monotonic receive time of source time 0: now, for each test (silence is real time)


@pytest.fixture(autouse=True)
def _base() -> None:
    global BASE
    BASE = time.monotonic()


def _src(**kw: Any) -> MqttSource:
    """A source never started: messages go straight to its handler."""
    opts: dict[str, Any] = {"chunk_s": 1.0, "reorder_window_s": 0.5, "skew_min_obs": 10}
    return MqttSource("mqtt://127.0.0.1:1", STORE, NAME, **{**opts, **kw})


def _frame(s: MqttSource, cam: str, seq: int, t: float, recv: float | None = None) -> None:
    kp = np.full((1, 17, 3), 10.0, np.float32)
    s._handle(wire.keypoints_topic(NAME, cam), wire.encode_keypoints(seq, t, kp),
              BASE + (t if recv is None else recv))


def _cams(s: MqttSource, cams: list[str], ks: range, seq0: int = 0) -> None:
    for k in ks:
        for c in cams:
            _frame(s, c, seq0 + k, k / 15)


def _plates(s: MqttSource, seq: int, t0: float, value: float = 500.0, n: int = 6,
            rate: float = 60.0, recv: float | None = None) -> None:
    g = np.full((n, len(A1S)), value, np.float32)
    s._handle(wire.plates_topic(NAME, "A1S"), wire.encode_plates("A1S", seq, t0, rate, A1S, g),
              BASE + (t0 + (n - 1) / rate if recv is None else recv))


def _gate(s: MqttSource, seq: int, t: float, kind: GateKind = "entry", cred: str = "qr-1",
          recv: float | None = None, gate: str | None = None) -> None:
    gid = gate or kind
    s._handle(wire.gate_topic(NAME, gid), wire.encode_gate(seq, GateEvent(t, gid, kind, cred)),
              BASE + (t if recv is None else recv))


def _end(s: MqttSource, t: float, recv: float) -> None:
    sent = {d: seen.unique for d, seen in s._seen.items()}
    s._handle(wire.end_topic(NAME), wire.encode_end(t, sent), BASE + recv)


def _released(s: MqttSource) -> list[Chunk]:
    out, s._ready = s._ready, []
    return out


def _accounted(s: MqttSource) -> int:
    st = s.stats
    return st.accepted + st.late + st.duplicates + sum(st.rejected.values())


# ---- nothing raises, everything is counted ---------------------------------------------------


def test_crafted_numbers_are_refused_and_counted_never_raised() -> None:
    s = _src(accept_end=True)
    _cams(s, ["C01", "C02", "C03"], range(30))
    g = np.full((6, len(A1S)), 500.0, np.float32)
    crafted = [
        (wire.plates_topic(NAME, "A1S"), wire.encode_plates("A1S", 0, 1.0, 1e308, A1S, g)),
        (wire.plates_topic(NAME, "A1S"), wire.encode_plates("A1S", 1, 1.0, 0.001, A1S, g)),
        (wire.plates_topic(NAME, "A1S"), wire.encode_plates("A1S", 2, 1e11, 60.0, A1S, g)),
        (wire.gate_topic(NAME, "entry"), b'{"v":1,"seq":0,"t":1.5,"gate":"entry","kind":'
                                         b'"entry","credential":"q","party_size":1000000}'),
        (wire.gate_topic(NAME, "entry"),
         wire.encode_gate(1, GateEvent(1e9, "entry", "entry", "qr-1"))),
        (wire.end_topic(NAME), b'{"v":1,"t":1e11,"sent":{}}'),
    ]
    for topic, payload in crafted:
        s._handle(topic, payload, BASE + 2.0)
    # the plate batch at 1e11 s waits for its gondola's clock (its first message)
    assert s.stats.rejected == Counter({"bad_header": 2, "bad_field": 1,
                                        "implausible_time": 2})
    assert not s.finished and s.stats.received == 90 + len(crafted) == _accounted(s) + 1
    _end(s, 2.0, 2.1)
    chunks = s.poll(0)
    assert s.finished and [now for *_, now in chunks] == [1.0, 2.0]
    assert s.stats.rejected["implausible_time"] == 3 and _accounted(s) + 1 == s.stats.received


def test_a_bug_while_admitting_is_counted_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _src(skew_min_obs=1)

    def boom(upto: float) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(s, "_release_upto", boom)
    _cams(s, ["C01"], range(3))
    assert s.stats.rejected == Counter({"error": 3}) and s.stats.received == 3


# ---- one bad clock -------------------------------------------------------------------------


def test_a_future_timestamp_moves_neither_the_chunk_clock_nor_drops_good_frames() -> None:
    s = _src()
    _cams(s, ["C01"], range(30))
    _frame(s, "C01", 30, 5000.0, recv=2.0)  # the only camera: no other device to outvote it
    _cams(s, ["C01"], range(31, 60))
    chunks = _released(s)
    assert [now for *_, now in chunks] == [1.0, 2.0, 3.0]
    assert s.stats.late == 0 and s.stats.rejected == Counter({"implausible_time": 1})
    assert s.stats.accepted == 59


def test_one_glitch_does_not_poison_the_clock_estimate() -> None:
    s = _src()
    cams = ["C01", "C02", "C03"]
    _cams(s, cams, range(30))
    _frame(s, "C01", 30, 5000.0, recv=2.0)
    _cams(s, cams, range(31, 90))
    assert s.stats.late == 0 and s.stats.rejected == Counter({"implausible_time": 1})
    s._finish(6.0)
    assert s.stats.corrections_s == {}  # C01's clock still trusted as it is
    c01 = [f.t for _, fs, _, _ in _released(s) for f in fs if f.camera_id == "C01"]
    assert c01 == [k / 15 for k in range(90) if k != 30]


def test_a_confirmed_step_of_a_clock_is_corrected_and_loses_nothing() -> None:
    """C04's clock jumps 100 s ahead for good: its first frames after the jump look like a
    glitch, but the next ones confirm it, and all are placed at the store's time."""
    s = _src()
    cams = ["C01", "C02", "C03", "C04"]
    for k in range(60):
        for c in cams:
            t = k / 15
            _frame(s, c, k, t + (100.0 if c == "C04" and k >= 30 else 0.0), recv=t)
    s._finish(4.0)
    frames = [f for _, fs, _, _ in _released(s) for f in fs if f.camera_id == "C04"]
    assert not s.stats.rejected and s.stats.late == 0 and len(frames) == 60
    assert s.stats.corrections_s["cameras/C04"] == pytest.approx(-100.0)
    assert [f.t for f in frames] == pytest.approx([k / 15 for k in range(60)], abs=1e-6)


def test_a_gate_far_in_the_past_does_not_place_the_first_chunk() -> None:
    s = _src()
    _gate(s, 0, -20000.0, recv=0.0)  # before any camera: waits for the first chunk, then
    _gate(s, 1, -3.0, recv=0.0, cred="qr-2")  # is before it: late
    _gate(s, 2, 0.5, recv=0.5, cred="qr-3")
    _cams(s, ["C01"], range(60))
    chunks = _released(s)
    assert [now for *_, now in chunks] == [1.0, 2.0, 3.0]
    assert [g.credential for _, _, gs, _ in chunks for g in gs] == ["qr-3"]
    assert s.stats.late == 2 and not s.stats.rejected


def test_a_frame_far_behind_before_the_first_chunk_is_refused() -> None:
    s = _src()
    _cams(s, ["C01", "C02"], range(20))  # up to 1.27 s: the first chunk is not placed yet
    _frame(s, "C01", 20, -20000.0, recv=1.3)  # would place it 20,000 s back
    _cams(s, ["C01", "C02"], range(21, 60))
    assert [now for *_, now in _released(s)] == [1.0, 2.0, 3.0]
    assert s.stats.rejected == Counter({"implausible_time": 1}) and s.stats.late == 0


def test_a_camera_clock_far_behind_is_corrected_before_its_frames_are_admitted() -> None:
    s = _src()
    _cams(s, ["C01", "C02"], range(12))
    _frame(s, "C03", 0, -20000.0, recv=0.0)  # C03's clock: behind the others by 20000 s
    for k in range(12, 60):
        _cams(s, ["C01", "C02"], range(k, k + 1))
        _frame(s, "C03", k, -20000.0 + k / 15, recv=k / 15)
    chunks = _released(s)
    # its own clock is consistent: once known it is corrected, and only then admitted (a
    # corrected time may land a hair before 0: a chunk of its own, as in a replay)
    assert [now for *_, now in chunks][-3:] == [1.0, 2.0, 3.0]
    assert s.stats.corrections_s["cameras/C03"] == pytest.approx(20000.0)
    c03 = [f.t for _, fs, _, _ in chunks for f in fs if f.camera_id == "C03"]
    want = [0.0, *(k / 15 for k in range(12, 60))]
    assert len(c03) >= 34 and c03 == pytest.approx(want[:len(c03)], abs=1e-6)
    assert not s.stats.rejected and s.stats.late == 0


def test_a_gate_clock_glitch_neither_passes_nor_shifts_the_next_scans() -> None:
    s = _src()
    k = 0
    for i in range(20):
        for _ in range(15):
            _frame(s, "C01", k, k / 15)
            k += 1
        if i == 12:
            _gate(s, 99, 3600 + 12.5, cred="qr-glitch", recv=12.5)
        _gate(s, i, i + 0.5, cred=f"qr-{i}")
    s._finish(20.0)
    scans = [g.credential for _, _, gs, _ in _released(s) for g in gs]
    assert scans == [f"qr-{i}" for i in range(20)] and s.stats.late == 0
    assert s.stats.rejected == Counter({"implausible_time": 1})
    assert "gates/entry" not in s.stats.corrections_s


def test_a_batch_spread_over_hours_is_refused() -> None:
    s = _src(skew_min_obs=1)
    _cams(s, ["C01"], range(30))
    _plates(s, 0, 1.0, n=60000, rate=1.0, recv=2.0)  # 1 Hz × 60,000 samples: 17 hours
    assert s.stats.rejected == Counter({"implausible_time": 1}) and not s._rows


# ---- end of stream ---------------------------------------------------------------------------


def test_a_live_consumer_takes_no_end_of_stream() -> None:
    s = _src()
    _cams(s, ["C01"], range(30))
    _end(s, 2.0, 2.0)
    s.poll(0)
    assert not s.finished and s.stats.rejected == Counter({"end_not_accepted": 1})


@pytest.mark.parametrize(("t", "finished"), [(0.0, False), (1.0, False), (1e9, False),
                                             (2.0, True), (1.7, True)])
def test_an_accepted_end_must_be_at_the_streams_time(t: float, finished: bool) -> None:
    s = _src(accept_end=True)
    _cams(s, ["C01"], range(30))  # newest frame at 1.93 s, reordering window 0.5 s
    _end(s, t, 2.0)
    s.poll(0)
    assert s.finished is finished
    assert s.stats.rejected == (Counter() if finished else Counter({"implausible_time": 1}))


# ---- repeats -------------------------------------------------------------------------------


def test_a_device_that_restarts_its_sequence_is_not_read_twice() -> None:
    s = _src(skew_min_obs=1)
    _cams(s, ["C01"], range(30), seq0=100)
    _gate(s, 7, 1.2, cred="qr-A")
    _gate(s, 0, 1.2, cred="qr-A")  # the same scan re-sent after the gate's reboot
    _gate(s, 1, 1.2, cred="qr-B")  # another scan at the same instant: not a repeat
    _cams(s, ["C01"], range(20, 60), seq0=-20)  # rebooted: seq from 0, re-sends 20..29
    s._finish(4.0)
    chunks = _released(s)
    ts = [f.t for _, fs, _, _ in chunks for f in fs]
    assert ts == [k / 15 for k in range(60)] and s.stats.duplicates == 11
    assert [g.credential for _, _, gs, _ in chunks for g in gs] == ["qr-A", "qr-B"]


def test_a_repeated_plate_sample_keeps_the_first_write_as_a_recording_does() -> None:
    s = _src(skew_min_obs=1)
    _cams(s, ["C01"], range(30))
    _plates(s, 5, 1.0, value=500.0)
    _plates(s, 0, 1.0, value=100.0)  # the same batch after a restart, other values: a repeat
    _plates(s, 1, 1.0 + 3 / 60, value=200.0)  # re-batched: 3 samples repeat, 3 are new
    _cams(s, ["C01"], range(30, 60))
    s._finish(4.0)
    col = STORE.plate_index[A1S[0]]
    got = [(round(t * 60), float(g[col])) for b, _, _, _ in _released(s)
           for t, g in zip(b.t, b.grams, strict=True) if not math.isnan(g[col])]
    assert got == [(60 + i, 500.0) for i in range(6)] + [(66 + i, 200.0) for i in range(3)]
    assert s.stats.duplicates == 1 and s.stats.accepted == 60 + 2


# ---- silence, wrong gate, settings, flood --------------------------------------------------


def test_a_device_never_heard_from_is_alerted() -> None:
    s = _src(silent_after_s=0.2, skew_min_obs=1)
    t0 = time.monotonic()
    k = 0
    while time.monotonic() < t0 + 0.5:
        _frame(s, "C01", k, k / 15, recv=time.monotonic() - BASE)
        s.poll(0)
        k += 1
        time.sleep(0.02)
    silent = {a.subject: a.message for a in s.take_alerts() if a.kind == "device_silent"}
    assert "cameras/C01" not in silent
    assert {"cameras/C02", "cameras/C12", "plates/A1S", "plates/W2"} <= set(silent)
    assert "since this consumer started" in silent["cameras/C02"]


def test_a_silent_device_that_sends_again_is_said_to_be_back() -> None:
    """The health page marks a silent gondola's plates dead; when the whole store fell silent
    no data flows, so nothing but the source can say the device is back."""
    s = _src(silent_after_s=0.2, skew_min_obs=1)
    t0 = time.monotonic()
    k = 0
    while time.monotonic() < t0 + 0.4:  # C01 sends, A1S sends once then falls silent
        _frame(s, "C01", k, k / 15, recv=time.monotonic() - BASE)
        if k == 0:
            _plates(s, 0, 0.0, recv=time.monotonic() - BASE)
        s.poll(0)
        k += 1
        time.sleep(0.02)
    assert "plates/A1S" in {a.subject for a in s.take_alerts() if a.kind == "device_silent"}
    _plates(s, 1, k / 15, recv=time.monotonic() - BASE)
    (back,) = [a for a in s.take_alerts() if a.kind == "device_back"]
    assert back.subject == "plates/A1S" and "sending again after" in back.message


def test_an_entry_scan_on_the_exit_gate_is_refused() -> None:
    s = _src(skew_min_obs=1)
    _cams(s, ["C01"], range(30))
    _gate(s, 0, 1.0, kind="entry", gate="exit")
    assert s.stats.rejected == Counter({"wrong_gate_kind": 1})


@pytest.mark.parametrize(("setting", "value", "said"), [
    ("skew_min_obs", 200, "skew_min_obs must be between 1 and"),
    ("skew_min_obs", 0, "skew_min_obs must be between 1 and"),
    ("chunk_s", 0.0, "chunk_s must be a finite number > 0"),
    ("chunk_s", -5.0, "chunk_s must be a finite number > 0"),
    ("chunk_s", math.nan, "chunk_s must be a finite number > 0"),
    ("reorder_window_s", -0.1, "reorder_window_s must be a finite number >= 0"),
    ("max_jump_s", 0.0, "max_jump_s must be a finite number > 0"),
])
def test_a_wrong_setting_is_refused_at_construction(setting: str, value: float,
                                                    said: str) -> None:
    with pytest.raises(ValueError, match=said):
        _src(**{setting: value})


class _Msg:
    """What paho hands the network callback."""

    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic, self.payload = topic, payload
        self.qos, self.mid, self.dup = 0, 0, False


def test_a_flood_is_bounded_counted_and_shown_on_the_health_page() -> None:
    s = _src(max_inbox=3, skew_min_obs=1)
    s.inbox_wait_s = 0.01
    empty = np.zeros((0, 17, 3), np.float32)
    for k in range(5):
        msg = _Msg(wire.keypoints_topic(NAME, "C01"), wire.encode_keypoints(k, k / 15, empty))
        s._on_message(None, None, msg)  # type: ignore[arg-type]
    s.poll(0)
    assert s.stats.received == 5 and s.stats.accepted == 3
    assert s.stats.rejected == Counter({"overflow": 2})
    runner = MqttRunner(f"mqtt://127.0.0.1:1/{NAME}", STORE)
    runner._src = s
    s.stats.sessions_lost = 1
    inputs = runner.input_stats()
    assert inputs["rejected"] == {"overflow": 2} and inputs["sessions_lost"] == 1
    assert "no session kept by the broker" in inputs["notes"][0]


def test_a_consumer_falling_behind_moves_no_device_clock() -> None:
    """The whole path's delay rising (the consumer stalled now and then, as the engine's chunk
    work or a broker backlog does) is common to every device and corrects none of them, while a
    camera whose own clock is 2 s ahead is still corrected. A per-device window of 128 messages
    spans 8.5 s of a 15 fps camera but 12.8 s of a gondola sending ten batches a second: the
    gondolas kept an older, lower minimum delay and were "corrected" by seconds, their samples
    dropped as late (the MQTT end-to-end test lost frames this way now and then)."""
    s = _src(chunk_s=5.0)
    cams = ["C01", "C02", "C03", "C04"]
    rng = np.random.default_rng(7)
    lag, k = 0.0, 0
    for i in range(40 * 30):  # 40 s in 1/30 s steps: frames at 15 fps, plate batches at 10/s
        t = i / 30
        if rng.random() < 0.03:
            lag += float(rng.uniform(0.05, 0.4))  # a stall: all later messages arrive later
        if i % 2 == 0:
            for c in cams:
                _frame(s, c, k, t + (2.0 if c == "C04" else 0.0), recv=t + lag)
            k += 1
        if i % 3 == 0:
            _plates(s, i // 3, t, n=6, rate=60.0, recv=t + 5 / 60 + lag)
    assert lag > 5.0
    s._finish(40.0)
    assert s.stats.late == 0 and not s.stats.rejected
    assert set(s.stats.corrections_s) == {"cameras/C04"}
    assert s.stats.corrections_s["cameras/C04"] == pytest.approx(-2.0, abs=0.02)
    frames = [f for _, fs, _, _ in _released(s) for f in fs]
    assert len(frames) == 4 * 600
    assert {round(f.t * 15) / 15 for f in frames if f.camera_id == "C04"} == {
        k / 15 for k in range(600)}


def test_a_plate_clock_correction_that_steps_back_loses_no_sample() -> None:
    """The plates' messages arrive 0.3 s later than the cameras' for 8 s (a queue on their
    path), so their clock is corrected by 0.3 s (above the 0.25 s tolerance); then they arrive
    on time and the correction goes back to 0. Their next batches fell on samples already in
    and were dropped as repeats (the fresh-clone CI lost two batches so under load); they are
    new by the gondola's own clock and go after its last sample: none is lost, none twice,
    and its timeline never runs backwards."""
    s = _src()
    todo: list[tuple[float, int, Any]] = []
    for k in range(16 * 15):  # three cameras on time: the consensus
        for cam in ("C01", "C02", "C03"):
            todo.append((k / 15, 0, lambda k=k, cam=cam: _frame(s, cam, k, k / 15)))
    batches = 16 * 10
    for j in range(batches):  # 6 samples at 60 Hz: a batch every 0.1 s
        t0 = j / 10
        late = 0.3 if t0 < 8 else 0.0
        recv = t0 + 5 / 60 + late
        todo.append((recv, 1, lambda j=j, t0=t0, recv=recv: _plates(
            s, j, t0, value=500.0 + j, recv=recv)))
    for _, _, send in sorted(todo, key=lambda x: (x[0], x[1])):
        send()
    assert s.stats.corrections_s.get("plates/A1S", 0.0) > 0.25  # it was corrected
    s._finish(20.0)
    col = STORE.plate_index[A1S[0]]
    got = [(float(t), float(g[col])) for b, _, _, _ in _released(s)
           for t, g in zip(b.t, b.grams, strict=True) if not math.isnan(g[col])]
    assert s.stats.duplicates == 0 and s.stats.late == 0
    assert s.stats.accepted == 3 * 16 * 15 + batches
    values = [v for _, v in got]
    assert sorted(set(values)) == [500.0 + j for j in range(batches)]
    assert len(values) == 6 * batches  # every sample once
    times = [t for t, _ in got]
    assert all(b > a for a, b in itertools.pairwise(times))
