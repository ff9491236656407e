"""A store on the sensor network (``walkout serve --source mqtt://``): the devices the source
finds silent reach the dashboard (event log and health snapshot), and cameras that do send
are alive there, against a real Mosquitto and a SQLite service database."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import select

from walkout.engine import EngineConfig
from walkout.service.db import make_engine, upgrade
from walkout.service.models import EngineEvent
from walkout.service.mqtt_runner import MqttRunner
from walkout.service.testing import make_svc
from walkout.sources import wire
from walkout.sources.mqtt import MqttPublisher, MqttSource, drop_session
from walkout.store import load_store


def test_silent_cameras_reach_the_dashboard_and_live_ones_are_alive(
    mqtt_url: str, tmp_path: Path
) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'walkout.db'}")
    upgrade(db)
    deps = make_svc(db).deps
    store = load_store("small")
    name = f"ops{uuid.uuid4().hex[:8]}"
    runner = MqttRunner(
        f"{mqtt_url}/{name}",
        store,
        config=EngineConfig(chunk_s=1.0),
        accept_end=True,
        silent_after_s=0.5,
    )
    # the engine's session exists before anything is published: the broker queues for it
    # however long the runner takes to subscribe (a fixed wait lost them on a busy machine)
    MqttSource(mqtt_url, store, name, client_id=runner.client_id).start().close()
    stop = threading.Event()
    worker = threading.Thread(target=runner.run, args=(deps, stop), daemon=True)
    worker.start()
    try:
        kp = np.zeros((0, 17, 3), np.float32)
        t0 = time.monotonic()
        with MqttPublisher(mqtt_url) as pub:
            for k in range(15 * 4):  # 4 s of C01 at its 15 fps; every other device is silent
                while time.monotonic() < t0 + k / 15:
                    time.sleep(0.005)
                pub.publish(wire.keypoints_topic(name, "C01"), wire.encode_keypoints(k, k / 15, kp))
            pub.publish(wire.end_topic(name), wire.encode_end(4.0, {"cameras/C01": 60}))
            pub.flush()
        worker.join(30)
        assert not worker.is_alive()
    finally:
        stop.set()
        worker.join(5)
        drop_session(mqtt_url, runner.client_id)
    with deps.sessions() as s:
        rows = list(s.scalars(select(EngineEvent).order_by(EngineEvent.id)))
    silent = {r.ref for r in rows if r.source.endswith("/alerts") and r.kind == "device_silent"}
    assert {"cameras/C02", "plates/A1S"} <= silent
    assert runner.published["alerts"] == sum(r.source.endswith("/alerts") for r in rows)
    health = [json.loads(r.payload) for r in rows if r.source.endswith("/health")]
    last = health[-1]
    assert last["cameras"]["C01"] == "alive"
    assert last["cameras"]["C02"] == "dead"
