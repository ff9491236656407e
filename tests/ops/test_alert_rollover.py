"""Alerts fire once: a device fault the operator acknowledged is not listed again,
unacknowledged, when the sensor network's engine rolls over to the store's next stream.
``Engine.successor`` carries the faults still in force, and ``MqttRunner._roll`` began the new
stream's live state at alert 0, so its first chunk wrote every carried fault again as a new
row of the alert list. In process against a real Mosquitto and a SQLite service database."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from walkout.engine import EngineConfig
from walkout.service.db import make_engine
from walkout.service.models import EngineEvent
from walkout.service.mqtt_runner import MqttRunner
from walkout.service.testing import Svc, make_svc
from walkout.sources import wire
from walkout.sources.mqtt import MqttPublisher, MqttSource, drop_session
from walkout.store import load_store

STORE = load_store("small")
KP = np.zeros((0, 17, 3), np.float32)
#: every camera and gondola but C01 never sends: each is alerted ``device_silent`` once
SILENT = {f"cameras/{c.id}" for c in STORE.cameras if c.id != "C01"} | {
    f"plates/{g.id}" for g in STORE.gondolas}


def _c01(url: str, name: str, pause_at: float, go: threading.Event, until: float) -> None:
    """Camera C01 (nobody in view) in real time, holding at ``pause_at`` s until ``go``."""
    with MqttPublisher(url) as pub:
        start = time.monotonic()
        for k in range(round(until * 15)):
            if k == round(pause_at * 15):
                pub.flush()
                go.wait(60)
                start = time.monotonic() - pause_at
            time.sleep(max(0.0, start + k / 15 - time.monotonic()))
            pub.publish(wire.keypoints_topic(name, "C01"), wire.encode_keypoints(k, k / 15, KP))
        pub.flush()


def _alerts(svc: Svc) -> list[dict[str, Any]]:
    r = svc.client.get("/v1/ops/alerts?limit=500", headers=svc.gate)
    assert r.status_code == 200, r.text
    return list(r.json())


def _wait(cond: Any, th: threading.Thread, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert th.is_alive() and time.monotonic() < end
        time.sleep(0.1)


def test_acknowledged_device_faults_stay_acknowledged_across_a_rollover(
        mqtt_url: str, tmp_path: Path) -> None:
    svc = make_svc(make_engine(f"sqlite:///{tmp_path / 'walkout.db'}"))
    name = f"lar{uuid.uuid4().hex[:8]}"
    cid = f"walkout-engine-{name}"
    MqttSource(mqtt_url, STORE, name, client_id=cid).start().close()  # the broker queues
    runner = MqttRunner(f"{mqtt_url}/{name}", STORE, accept_end=True,
                        config=EngineConfig(chunk_s=1.0), roll_after_s=5.0, roll_quiet_s=1.0,
                        silent_after_s=1.0)
    stop, go = threading.Event(), threading.Event()
    th = threading.Thread(target=runner.run, args=(svc.deps, stop), daemon=True)
    cam = threading.Thread(target=_c01, args=(mqtt_url, name, 2.0, go, 12.0), daemon=True)
    try:
        th.start()
        time.sleep(0.5)  # subscribed
        cam.start()
        first = runner.source
        _wait(lambda: {a["data"]["subject"] for a in _alerts(svc)
                       if a["kind"] == "device_silent"} >= SILENT, th)
        for a in _alerts(svc):  # the operator acknowledges every alert so far
            r = svc.client.post(f"/v1/ops/alerts/{a['id']}/ack", json={"note": "tech called"},
                                headers=svc.gate)
            assert r.status_code == 200, r.text
        assert runner.source == first  # acknowledged in the first stream
        go.set()
        _wait(lambda: runner.source != first and runner.chunks_done >= 2, th)
        stop.set()
        th.join(30)
        assert not th.is_alive()
        cam.join(30)
    finally:
        go.set()
        drop_session(mqtt_url, cid)
    assert runner.engine is not None
    carried = {a.subject for a in runner.engine.alerts if a.kind == "device_silent"}
    assert carried == SILENT  # the new stream's engine holds the faults still in force
    listed = [a for a in _alerts(svc) if a["data"]["subject"] in SILENT]
    # each fault is listed once, as the operator acknowledged it
    assert sorted(a["data"]["subject"] for a in listed) == sorted(SILENT), listed
    assert all(a["kind"] == "device_silent" and a["acked"] for a in listed), listed
    with svc.deps.sessions() as s:  # the new stream's event log does not write them again
        again = list(s.scalars(select(EngineEvent.ref).where(
            EngineEvent.source == f"{runner.source}/alerts")))
    assert not set(again) & SILENT, again
