"""The MQTT path through the command line against a real Mosquitto: ``walkout sim --publish``
plays a simulated store onto the broker, ``walkout serve --source mqtt://...`` runs the engine
on it and publishes its receipts back; they equal the in-process engine's on the same
simulation."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from walkout.cli import app
from walkout.engine import Engine
from walkout.sim.session import simulate
from walkout.sources import wire
from walkout.sources.mqtt import MqttSource, drop_session, parse_url, split_url
from walkout.sources.recording import Sensors
from walkout.store.loader import load_store


class _Listener:
    """A store system subscribed to the engine's result topics."""

    def __init__(self, url: str, name: str) -> None:
        host, port = parse_url(url)
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-listener")
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [(f"walkout/{name}/receipts/#", 1), (wire.alerts_topic(name), 1)])
        self.c.on_subscribe = lambda *a: self._ready.set()
        self.c.on_message = self._on_message
        self.c.connect(host, port)
        self.c.loop_start()
        assert self._ready.wait(10), "listener not subscribed"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, wire.decode_result(msg.payload)))

    def receipts(self) -> dict[str, dict[str, Any]]:
        """The latest revision of each session's receipt."""
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for topic, r in self.messages:
                if "/receipts/" in topic and r["revision"] >= out.get(
                        r["session"], {"revision": -1})["revision"]:
                    out[r["session"]] = r
        return out

    def wait_for_published(self, log: Path, serve: subprocess.Popen[bytes],
                           timeout: float = 120.0) -> None:
        """Until the engine logged its end of stream and every receipt revision it counts as
        published there came: it logs the count before paho has handed them all to the
        broker, so a fixed wait after it lost a late revision on a busy machine."""
        end = time.monotonic() + timeout
        while True:
            m = re.search(r"end of stream: .*; (\d+) receipts published", log.read_text())
            if m is not None:
                with self._lock:
                    got = {(r["session"], r["revision"]) for topic, r in self.messages
                           if "/receipts/" in topic}
                if len(got) >= int(m.group(1)):
                    return
            assert serve.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < end, (m and m.group(0), len(self.messages))
            time.sleep(0.2)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(serve: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``walkout serve`` (it stops its worker and commits the chunk in hand); SIGKILL
    its process group if it is not gone within a minute."""
    if serve.poll() is not None:
        return
    serve.send_signal(signal.SIGTERM)
    try:
        serve.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(serve.pid, signal.SIGKILL)
        serve.wait()


def _walkout(*args: str) -> list[str]:
    return [sys.executable, "-m", "walkout.cli", *args]


@pytest.mark.slow
def test_sim_publish_into_serve_gives_the_in_process_receipts(mqtt_url: str,
                                                              tmp_path: Path) -> None:
    store = load_store("small")
    shoppers, seed = 3, 2
    name = f"cli{uuid.uuid4().hex[:8]}"
    url = f"{mqtt_url}/{name}"
    cid = f"walkout-engine-{name}"  # MqttRunner's default client id for this store name
    # the engine's persistent session exists before anything is published, as in a store
    # whose engine was started once: the broker queues for it from now on
    MqttSource(mqtt_url, store, name, client_id=cid).start().close()
    listener = _Listener(mqtt_url, name)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("WALKOUT_DB_URL", None)
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        serve = subprocess.Popen(
            _walkout("serve", "--db", f"sqlite:///{tmp_path}/walkout.db", "--store", "small",
                     "--source", url, "--accept-end", "--port", str(_free_port())),
            stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        pub = subprocess.run(
            _walkout("sim", "--publish", url, "--shoppers", str(shoppers), "--seed", str(seed),
                     "--speed", "0"),
            capture_output=True, text=True, env=env, timeout=300)
        assert pub.returncode == 0, pub.stderr
        assert "published" in pub.stdout
        ref = Engine(store).run(Sensors.from_session(simulate(store, shoppers, seed)))
        want = {r.credential: {p: q for p, q in r.counts().items() if q} for r in ref.receipts}
        deadline = time.monotonic() + 180
        while len(listener.receipts()) < len(want) and time.monotonic() < deadline:
            assert serve.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        listener.wait_for_published(log, serve)  # a late revision comes right behind
        got = {r["credential"]: {ln["product"]: ln["quantity"] for ln in r["lines"]
                                 if ln["quantity"]}
               for r in listener.receipts().values()}
    finally:
        t_stop = time.monotonic()
        _stop(serve)
        print(f"serve stopped in {time.monotonic() - t_stop:.1f} s")
        listener.close()
        drop_session(mqtt_url, cid)
    assert len(want) == shoppers and any(want.values())
    assert got == want, log.read_text()[-3000:]
    assert "end of stream" in log.read_text()
    # the source's counters reach the health page: every message accounted for
    db = sqlite3.connect(tmp_path / "walkout.db")
    payload, = db.execute("SELECT payload FROM engine_events WHERE source LIKE '%/health' "
                          "ORDER BY id DESC LIMIT 1").fetchone()
    db.close()
    inputs = json.loads(payload)["inputs"]
    assert inputs["accepted"] > 0 and inputs["duplicates"] == inputs["missing"] == 0
    counted = (inputs["accepted"] + inputs["late"] + inputs["duplicates"]
               + sum(inputs["rejected"].values()))
    assert inputs["received"] == counted + 1  # + the end-of-stream message


def test_sim_needs_a_target_and_a_valid_url() -> None:
    r = CliRunner().invoke(app, ["sim", "--shoppers", "1"])
    assert r.exit_code == 2 and "--out" in r.output and "--publish" in r.output
    r = CliRunner().invoke(app, ["sim", "--publish", "http://x:1", "--shoppers", "1"])
    assert r.exit_code == 2 and "not an MQTT URL" in r.output
    r = CliRunner().invoke(app, ["serve", "--source", "mqtt://127.0.0.1:1/a/b"])
    assert r.exit_code == 2 and "one store name" in r.output


def test_split_url() -> None:
    assert split_url("mqtt://127.0.0.1:18830/shop-1") == ("mqtt://127.0.0.1:18830", "shop-1")
    assert split_url("mqtt://broker") == ("mqtt://broker:1883", None)
    with pytest.raises(ValueError, match="one store name"):
        split_url("mqtt://broker/walkout/#")
