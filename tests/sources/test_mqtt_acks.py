"""The consumer's acknowledgements (``MqttSource(manual_ack=True)``): a message is acknowledged
once what it carried is safe, in the order received, so that what a crash interrupted comes
again. Against a real Mosquitto: what is left unacknowledged is what a restarted consumer of
the session is sent again, and nothing may keep that from moving on."""

from __future__ import annotations

import math
import threading
import time
import uuid

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from walkout.sources import wire
from walkout.sources.mqtt import MqttPublisher, MqttSource, drop_session, parse_url
from walkout.store import load_store

STORE = load_store("small")
KP = np.zeros((0, 17, 3), np.float32)


def _redelivered(url: str, name: str, cid: str, wait_s: float = 2.0) -> int:
    """How many messages the broker sends again to the session's next consumer."""
    src = MqttSource(url, STORE, name, client_id=cid, manual_ack=True, chunk_s=1.0).start()
    try:
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            src.poll(0.1)
        return src.stats.received
    finally:
        src.close()


@pytest.mark.parametrize("c02", [[k / 15 for k in range(3)],  # too few for its clock
                                 [k / 15 for k in range(12)] + [20.0]],  # a glitch, then dead
                         ids=["clock-unknown", "glitch-unconfirmed"])
def test_a_device_that_falls_silent_with_messages_waiting_holds_back_no_acknowledgement(
        mqtt_url: str, c02: list[float]) -> None:
    """C02 sends a few frames and dies: too few for its clock to be known, or its last one
    stamped 20 s ahead, which only more of its frames could confirm. They waited forever, and
    every later message's acknowledgement behind them: the broker would have stopped
    delivering at 65,535 in flight (the store's engine stalled), and each restart was sent
    everything since again. Once the device is silent they are decided."""
    name = f"ack{uuid.uuid4().hex[:8]}"
    cid = f"walkout-engine-{name}"
    src = MqttSource(mqtt_url, STORE, name, client_id=cid, manual_ack=True, chunk_s=1.0,
                     silent_after_s=1.0).start()
    n_c01 = 90  # 6 s at 15 fps, sent in real time

    def devices() -> None:
        with MqttPublisher(mqtt_url) as pub:
            for k, t in enumerate(c02):
                pub.publish(wire.keypoints_topic(name, "C02"), wire.encode_keypoints(k, t, KP))
            t0 = time.monotonic()
            for k in range(n_c01):
                time.sleep(max(0.0, t0 + k / 15 - time.monotonic()))
                pub.publish(wire.keypoints_topic(name, "C01"), wire.encode_keypoints(k, k / 15, KP))
            pub.flush()

    th = threading.Thread(target=devices)
    th.start()
    chunks = 0
    try:
        end = time.monotonic() + 8.5
        while time.monotonic() < end:
            for chunk in src.poll(0.1):
                chunks += 1
                src.acknowledge(chunk[3])  # as the runner does once it is journaled
        th.join()
        assert chunks >= 4
        if len(c02) > 3:
            assert src.stats.rejected["implausible_time"] == 1
    finally:
        src.close()
    try:
        again = _redelivered(mqtt_url, name, cid)
    finally:
        drop_session(mqtt_url, cid)
    # what the last chunks had not taken in yet (~1.5 s of C01), not the whole stream
    assert again <= 30, again


def test_what_a_restart_is_sent_again_is_not_reported_as_late(
        mqtt_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The engine journals a chunk, steps on it and only then acknowledges its messages: killed
    in between (most of a chunk's time is its step), the restart is sent that chunk's
    messages again, behind the stream it continues. Each was counted as a late message and
    logged as a warning (a chunk of a store's cameras and gondolas: a thousand lines at every
    restart, and "late messages" on the health page, the sign of a network problem). They are
    counted apart, as ``redelivered``, in one line."""
    name = f"ack{uuid.uuid4().hex[:8]}"
    cid = f"walkout-engine-{name}"
    src = MqttSource(mqtt_url, STORE, name, client_id=cid, manual_ack=True, chunk_s=1.0).start()
    try:
        with MqttPublisher(mqtt_url) as pub:
            for k in range(90):  # 6 s of C01
                pub.publish(wire.keypoints_topic(name, "C01"), wire.encode_keypoints(k, k / 15, KP))
            pub.flush()
        done = 0
        end = time.monotonic() + 10
        while done < 5 and time.monotonic() < end:
            for chunk in src.poll(0.1):
                done += 1
                if chunk[3] <= 3.0:  # chunks to 3 s acknowledged; the one to 4 s journaled,
                    src.acknowledge(chunk[3])  # then the power went
        assert done == 5
    finally:
        src.close()
    again = MqttSource(mqtt_url, STORE, name, client_id=cid, manual_ack=True, chunk_s=1.0)
    again.resume(0.0, 4)
    again.start()
    caplog.clear()
    try:  # until the 45 unacknowledged messages are back (slow on a busy machine), then a
        end = time.monotonic() + 20  # moment more: nothing else may come
        while again.stats.received < 45 and time.monotonic() < end:
            again.poll(0.1)
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            again.poll(0.1)
    finally:
        again.close()
        drop_session(mqtt_url, cid)
    st = again.stats
    assert st.received == 45 and st.redelivered == 15 and st.late == 0
    assert st.accepted == 30  # 4-6 s: the chunks after the journal's
    assert not [r for r in caplog.records if "late message" in r.getMessage()]


def test_acknowledgements_sent_before_closing_are_kept_while_messages_keep_coming(
        mqtt_url: str) -> None:
    """A store's sensors do not pause for the engine to stop. paho closes the socket just
    after writing the DISCONNECT; with the broker's next messages unread in it the kernel
    resets the connection, and the broker dropped the acknowledgements it had not read yet:
    the restart was sent all of the stream again (CI, under load: 88 of 90). ``close()``
    waits for the broker to confirm them first."""
    name = f"ack{uuid.uuid4().hex[:8]}"
    cid = f"walkout-engine-{name}"
    src = MqttSource(mqtt_url, STORE, name, client_id=cid, manual_ack=True, chunk_s=1.0).start()
    stop = threading.Event()

    def camera_2() -> None:  # keeps the broker sending to the source while it closes
        with MqttPublisher(mqtt_url) as pub:
            k = 0
            while not stop.is_set():
                pub.publish(wire.keypoints_topic(name, "C02"), wire.encode_keypoints(k, k / 15, KP))
                k += 1
                if k % 50 == 0:
                    time.sleep(0.001)

    th = threading.Thread(target=camera_2)
    acked = 0
    try:
        with MqttPublisher(mqtt_url) as pub:
            for k in range(600):  # 40 s of C01, every message acknowledged below
                pub.publish(wire.keypoints_topic(name, "C01"), wire.encode_keypoints(k, k / 15, KP))
            pub.flush()
        end = time.monotonic() + 20
        while src.stats.received < 600 and time.monotonic() < end:
            src.poll(0.1)
        assert src.stats.received == 600
        th.start()
        time.sleep(0.2)
        acked = src.acknowledge(math.inf)
    finally:
        src.close()
        stop.set()
        if th.is_alive():
            th.join()
    assert acked == 600
    again: list[str] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid,
                    protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
    c.on_message = lambda _c, _u, msg: again.append(msg.topic)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 60
    c.connect(*parse_url(mqtt_url), clean_start=False, properties=props)
    c.loop_start()
    try:
        time.sleep(2.0)
    finally:
        c.disconnect()
        c.loop_stop()
        drop_session(mqtt_url, cid)
    assert again.count(wire.keypoints_topic(name, "C01")) == 0


def test_a_continued_stream_whose_session_the_broker_lost_says_so(mqtt_url: str) -> None:
    """A restart continues the stream where it stopped; the broker should have kept what came
    meanwhile. When it kept no session (restarted without persistence, the session expired
    while the engine was down for over an hour), that was lost, and only a reconnection said
    so: the first connection of a continued stream said nothing."""
    name = f"ack{uuid.uuid4().hex[:8]}"
    cid = f"walkout-engine-{name}"
    drop_session(mqtt_url, cid)
    src = MqttSource(mqtt_url, STORE, name, client_id=cid, manual_ack=True, chunk_s=1.0)
    src.resume(0.0, 4)
    try:
        src.start()
    finally:
        src.close()
        drop_session(mqtt_url, cid)
    assert src.stats.sessions_lost == 1
    fresh = MqttSource(mqtt_url, STORE, name, client_id=cid, manual_ack=True).start()
    fresh.close()
    drop_session(mqtt_url, cid)
    assert fresh.stats.sessions_lost == 0  # a new stream expects none


class _Client:
    """Records the acknowledgements a source sends."""

    def __init__(self) -> None:
        self.acks: list[int] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acks.append(mid)


def test_acknowledgements_of_a_session_the_broker_lost_are_not_sent() -> None:
    """Packet ids belong to the broker's session: once it lost the session, the ids of the
    messages still waiting name the new session's messages, and acknowledging the old ones
    released new ones before their chunk was journaled."""
    src = MqttSource("mqtt://127.0.0.1:1", STORE, "shop", manual_ack=True, chunk_s=1.0,
                     skew_min_obs=1)
    client = _Client()
    src._client = client  # type: ignore[assignment]
    now = time.monotonic()
    for k in range(10):  # mids 1-10 of the first session
        src._handle(wire.keypoints_topic("shop", "C01"), wire.encode_keypoints(k, k / 10, KP),
                    now + k / 10, mid=k + 1)
    flags = type("Flags", (), {"session_present": False})()
    rc = type("Rc", (), {"is_failure": False})()
    src.stats.connects = 1
    src._on_connect(type("C", (), {"subscribe": lambda *a: None})(), None, flags, rc, None)
    src.acknowledge(0.5)  # the old session's messages: not acknowledged to the new one
    assert client.acks == []
    src._handle(wire.keypoints_topic("shop", "C01"), wire.encode_keypoints(10, 1.0, KP),
                now + 1.0, mid=1, epoch=src._epoch)
    src.acknowledge(2.0)
    assert client.acks == [1]  # the new session's mid 1, once


def test_a_gate_scan_stamped_far_ahead_does_not_hold_back_the_acknowledgements_for_ever(
        ) -> None:
    """A gate whose clock runs 25 s fast (not estimated yet: its first scans) sends a scan the
    stream reaches 25 s later; its acknowledgement waits until then, and every later one in
    order behind it. In a store sending ~2,000 messages a second that filled the broker's
    65,535 in flight: it stopped delivering, the stream never reached the scan, and the engine
    stalled for good. Past a budget of waiting acknowledgements the ready ones behind it go
    out of order (Mosquitto frees each by its packet id), the scan's when its chunk is safe."""
    src = MqttSource("mqtt://127.0.0.1:1", STORE, "shop", manual_ack=True, chunk_s=1.0)
    src.ack_budget = 100  # the 32,768 of a store, scaled down
    client = _Client()
    src._client = client  # type: ignore[assignment]
    now = time.monotonic()
    mid = 0

    def frame(k: int) -> None:
        nonlocal mid
        mid += 1
        src._handle(wire.keypoints_topic("shop", "C01"), wire.encode_keypoints(k, k / 15, KP),
                    now + k / 15, mid=mid)

    from walkout.events import GateEvent

    for k in range(15):
        frame(k)
    mid += 1
    scan = mid
    src._handle(wire.gate_topic("shop", "entry"),
                wire.encode_gate(0, GateEvent(26.0, "entry", "entry", "qr-1")), now + 1.0,
                mid=scan)
    for k in range(15, 15 + 15 * 12):  # 12 s more of the camera
        frame(k)
    out = src.poll(0)
    for chunk in [*src._ready, *out]:
        src.acknowledge(chunk[3])
    src.acknowledge(11.0)  # the chunks to 11 s are journaled
    assert scan not in client.acks
    assert len(client.acks) > 15 and len(src._acks) <= 100  # the budget, not the stream
    assert client.acks[:15] == list(range(1, 16))  # in order while they could be
    src.acknowledge(27.0)  # the scan's chunk journaled
    assert scan in client.acks
