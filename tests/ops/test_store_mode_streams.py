"""A store closed for restocking stays closed for the engine across a new stream (a live
source's restart, another recording), and the sensor network's runner applies the operator's
mode at all; against a real Mosquitto and a SQLite service database."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from walkout.engine import Engine, EngineConfig
from walkout.service.db import make_engine, upgrade
from walkout.service.deps import Deps
from walkout.service.models import EngineEvent, StoreMode
from walkout.service.mqtt_runner import MqttRunner
from walkout.service.runner import LiveRunner
from walkout.service.testing import make_svc
from walkout.sim.session import simulate
from walkout.sources import wire
from walkout.sources.mqtt import MqttPublisher, MqttSource, drop_session
from walkout.sources.recording import Sensors
from walkout.store import load_store


def _deps(tmp_path: Path) -> Deps:
    db = make_engine(f"sqlite:///{tmp_path / 'walkout.db'}")
    upgrade(db)
    return make_svc(db).deps


def _closed(d: Deps, applied_by: str | None) -> None:
    """The operator closed the store; ``applied_by``: the stream that already applied it."""
    with d.sessions.begin() as s:
        s.add(StoreMode(closed=True, set_by="op", set_at=d.clock.now(), source=applied_by,
                        applied_chunk=None if applied_by is None else 3,
                        applied_t=None if applied_by is None else 15.0))


def _rows(d: Deps, source: str) -> tuple[list[StoreMode], set[str]]:
    with d.sessions() as s:
        modes = list(s.scalars(select(StoreMode).where(StoreMode.source == source)))
        alerts = set(s.scalars(select(EngineEvent.kind).where(
            EngineEvent.source == f"{source}/alerts")))
    return modes, alerts


def test_a_new_stream_starts_closed_when_the_store_is_and_a_replay_keeps_it(
        tmp_path: Path) -> None:
    d = _deps(tmp_path)
    _closed(d, "sim:yesterday")
    sensors = Sensors.from_session(simulate(load_store("small"), 2, 1))
    LiveRunner(sensors, "sim:today", stop_after_chunk=1).run(d)
    modes, alerts = _rows(d, "sim:today")
    assert [(m.closed, m.applied_chunk) for m in modes] == [(True, 0)]
    assert "store_closed" in alerts
    LiveRunner(sensors, "sim:today", stop_after_chunk=2).run(d)  # a restart replays chunk 0
    assert len(_rows(d, "sim:today")[0]) == 1  # and adds no second copy


def test_an_open_store_is_not_closed_by_a_new_stream(tmp_path: Path) -> None:
    d = _deps(tmp_path)
    sensors = Sensors.from_session(simulate(load_store("small"), 2, 1))
    LiveRunner(sensors, "sim:today", stop_after_chunk=1).run(d)
    modes, alerts = _rows(d, "sim:today")
    assert modes == [] and "store_closed" not in alerts


def _stream(d: Deps, url: str) -> MqttRunner:
    """3 s of one camera through the broker, then the end of the stream."""
    name = f"mode{uuid.uuid4().hex[:8]}"
    runner = MqttRunner(f"{url}/{name}", load_store("small"), config=EngineConfig(chunk_s=1.0),
                        accept_end=True)
    # the engine's session exists before anything is published: the broker queues for it
    # however long the runner takes to subscribe (a fixed wait lost them on a busy machine)
    MqttSource(url, runner.store, name, client_id=runner.client_id).start().close()
    worker = threading.Thread(target=runner.run, args=(d, threading.Event()), daemon=True)
    worker.start()
    try:
        kp = np.zeros((0, 17, 3), np.float32)
        with MqttPublisher(url) as pub:
            for k in range(45):
                pub.publish(wire.keypoints_topic(name, "C01"), wire.encode_keypoints(k, k / 15, kp))
            pub.publish(wire.end_topic(name), wire.encode_end(3.0, {"cameras/C01": 45}))
            pub.flush()
        worker.join(30)
        assert not worker.is_alive()
    finally:
        drop_session(url, runner.client_id)
    return runner


@pytest.mark.parametrize("applied_by", [None, "mqtt:small:20261123T220000"])
def test_the_sensor_networks_engine_takes_the_operators_mode(
        mqtt_url: str, tmp_path: Path, applied_by: str | None) -> None:
    d = _deps(tmp_path)
    _closed(d, applied_by)
    runner = _stream(d, mqtt_url)
    modes, alerts = _rows(d, runner.source)
    assert [(m.closed, m.applied_chunk) for m in modes] == [(True, 0)]
    assert "store_closed" in alerts


def test_a_recordings_own_store_modes_reach_the_service_runner(tmp_path: Path) -> None:
    """``walkout serve --source recording``: the recording's closed period is applied where
    ``walkout replay`` applies it, so the live service decides the same stock moves."""
    d = _deps(tmp_path)
    sensors = Sensors.from_session(simulate(load_store("small"), 0, 1,
                                            scenarios=["closed-restock"]))
    assert sensors.modes
    ref = Engine(sensors.store).run(sensors)
    LiveRunner(sensors, "rec:closed").run(d)
    with d.sessions() as s:
        rows = [json.loads(p) for p in s.scalars(
            select(EngineEvent.payload).where(EngineEvent.source == "rec:closed/decisions")
            .order_by(EngineEvent.seq))]
    want = [(dc.attribution.event.event_id, json.loads(json.dumps(dc.stock)), dc.needs_review)
            for dc in ref.decisions]
    assert [(r["event_id"], r["stock"], r["needs_review"]) for r in rows] == want
    assert any(stock for _, stock, _ in want)
