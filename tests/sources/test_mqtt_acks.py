"""The consumer's acknowledgements (``MqttSource(manual_ack=True)``): a message is acknowledged
once what it carried is safe, in the order received, so that what a crash interrupted comes
again. Against a real Mosquitto: what is left unacknowledged is what a restarted consumer of
the session is sent again, and nothing may keep that from moving on."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest

from walkout.sources import wire
from walkout.sources.mqtt import MqttPublisher, MqttSource, drop_session
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
