"""What a real broker can do to walkout's clients that a clean one never does: refuse a publish
(an ACL), and forget the consumer's session across a restart. Both need a private Mosquitto
configured for it, started here (skipped where Mosquitto is not installed)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from typer.testing import CliRunner

from walkout.cli import app
from walkout.events import Alert
from walkout.sources import wire
from walkout.sources.mqtt import LocalMosquitto, MqttPublisher, MqttSource, PublishRefused
from walkout.store.loader import load_store


def _broker(**kw: Any) -> LocalMosquitto:
    try:
        return LocalMosquitto(**kw).start()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture
def acl_broker() -> Iterator[LocalMosquitto]:
    """Anyone may read everything but publish only alerts: receipts are refused."""
    broker = _broker(acl="topic read #\ntopic readwrite walkout/+/alerts\n")
    yield broker
    broker.close()


def test_a_refused_publish_is_reported_not_counted_as_delivered(
        acl_broker: LocalMosquitto, caplog: pytest.LogCaptureFixture) -> None:
    got: list[str] = []
    ready = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:6]}",
                      protocol=MQTTProtocolVersion.MQTTv5)
    sub.on_message = lambda c, u, m: got.append(m.topic)
    sub.on_subscribe = lambda *a: ready.set()
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("walkout/#", qos=1)
    sub.connect("127.0.0.1", acl_broker.port)
    sub.loop_start()
    assert ready.wait(10)
    receipt = "walkout/shop/receipts/s00001"
    try:
        with MqttPublisher(acl_broker.url) as pub:
            pub.publish(receipt, b'{"v":1,"total":"12.40"}')
            pub.publish_alert("shop", Alert(1.0, "x", "m", "s"))
            with pytest.raises(PublishRefused, match=f"refused 1 of 2 messages .*{receipt}"):
                pub.flush(10.0)
            assert pub.refused == 1 and pub.refusals[0][0] == receipt
            assert "Not authorized" in pub.refusals[0][1]
            pub.flush(10.0)  # each refusal is raised once
        deadline = time.monotonic() + 5
        while wire.alerts_topic("shop") not in got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert got == [wire.alerts_topic("shop")]  # the allowed one went through, the other not
    assert f"the broker refused the message on {receipt}" in caplog.text


@pytest.mark.slow
def test_a_session_the_broker_forgot_is_counted() -> None:
    """A broker restarted without persistence has no session for the engine when it comes
    back: what was published meanwhile never reaches it, and the stats say so."""
    broker = _broker(persistence=False)
    try:
        src = MqttSource(broker.url, load_store("small"), "forgot", client_id="forgot-engine")
        src.start()
        try:
            broker.restart()
            deadline = time.monotonic() + 20
            while src.stats.connects < 2 and time.monotonic() < deadline:
                src.poll(0.1)
            assert src.stats.connects == 2 and src.stats.sessions_lost == 1
        finally:
            src.close()
    finally:
        broker.close()


def test_sim_publish_says_when_the_broker_refuses_it(acl_broker: LocalMosquitto) -> None:
    r = CliRunner().invoke(app, ["sim", "--publish", f"{acl_broker.url}/shop", "--shoppers", "1",
                                 "--speed", "0"])
    out = " ".join(r.output.split())
    assert r.exit_code == 1 and "error: publishing to" in out and "Not authorized" in out
