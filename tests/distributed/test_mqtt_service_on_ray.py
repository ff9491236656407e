"""The big store's production path end to end: ``walkout serve --ray ADDRESS --source
mqtt://HOST:PORT/STORE``. The service's sensor-network runner (``MqttRunner``) with its engine
on a real Ray cluster, fed by a real Mosquitto, writing to a real service database, gives what
the in-process runner gives on the same published stream: the receipts and alerts on the
result topics, the event log (gate and shelf events, decisions, review cases and their
evidence, alerts, the health rows, the stream's end), the visits, cart lines and charges,
across a rollover. And a restart on Ray does what docs/mqtt.md says of it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from walkout.distributed import DistributedEngine
from walkout.engine import Engine
from walkout.service.db import make_engine, upgrade
from walkout.service.deps import Deps
from walkout.service.housekeeping import close_abandoned
from walkout.service.models import CartLine, Charge, EngineEvent, Visit
from walkout.service.mqtt_runner import MqttRunner
from walkout.service.testing import Svc, make_svc
from walkout.sim.session import SimConfig, SimSession, simulate
from walkout.sources import wire
from walkout.sources.mqtt import (
    MqttPublisher,
    MqttSource,
    drop_session,
    parse_url,
    session_messages,
)
from walkout.store import load_store

pytestmark = pytest.mark.slow

STORE = load_store("small")
#: a stream begins the next one once 30 s old, when nobody was seen for 5 s; the devices are
#: alerted silent after 10 minutes (the tests pause the stream for seconds, in real time)
ROLL: dict[str, Any] = {"roll_after_s": 30.0, "roll_quiet_s": 5.0, "silent_after_s": 600.0}



@pytest.fixture(scope="module")
def session() -> SimSession:
    """Two shoppers taking the same product from one plate at once (a hand-over alert), in at
    2 and 6 s, out by 47 s; the store empty until a third comes in at 82 s, takes an item
    from a plate whose planogram entry is wrong (a review case, a planogram alert) and leaves
    at 101 s (107 s in all)."""
    return simulate(STORE, 0, 3, config=SimConfig(scenario_gap_s=80.0),
                    scenarios=("same-plate-same-moment", "wrong-planogram-entry"))


class _Listener:
    """A store system subscribed to the engine's result topics (receipts, alerts)."""

    def __init__(self, url: str, name: str) -> None:
        host, port = parse_url(url)
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-listener")
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [(f"walkout/{name}/receipts/#", 1), (wire.alerts_topic(name), 1)])
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_message = self._on_message
        self.c.connect(host, port)
        self.c.loop_start()
        assert ready.wait(10), "listener not subscribed"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            kind = "alert" if msg.topic.endswith("/alerts") else "receipt"
            self.messages.append((kind, wire.decode_result(msg.payload)))

    def got(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for k, m in self.messages if k == kind]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@dataclass
class _Run:
    """A runner in a thread, as the service's engine worker runs it."""

    runner: MqttRunner
    stop: threading.Event = field(default_factory=threading.Event)
    error: list[BaseException] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self, d: Deps) -> _Run:
        def main() -> None:
            try:
                self.runner.run(d, self.stop)
            except BaseException as e:  # said by the test, not lost in a thread
                self.error.append(e)
                raise

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        return self

    def wait(self, cond: Any, timeout: float = 300.0) -> None:
        end = time.monotonic() + timeout
        assert self.thread is not None
        while not cond():
            assert not self.error, self.error
            assert self.thread.is_alive() and time.monotonic() < end, "runner gone or stuck"
            time.sleep(0.1)

    def settle(self, quiet_s: float = 3.0) -> None:
        """Wait until the runner stepped every chunk the data published so far releases (none
        for ``quiet_s``): whatever is done next meets the engine after the same chunk."""
        last = (-1, time.monotonic())
        while time.monotonic() - last[1] < quiet_s:
            if self.runner.chunks_done != last[0]:
                last = (self.runner.chunks_done, time.monotonic())
            self.wait(lambda: True)
            time.sleep(0.1)

    def join(self, timeout: float = 300.0) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.error, self.error
        assert not self.thread.is_alive(), "runner did not finish"


def _svc(path: Path) -> Svc:
    db = make_engine(f"sqlite:///{path}")
    upgrade(db)
    return make_svc(db)


def _runner(url: str, name: str, ray_address: str | None, **kw: Any) -> MqttRunner:
    runner = MqttRunner(f"{url}/{name}", STORE, accept_end=True, **{**ROLL, **kw})
    runner.ray_address = ray_address  # `walkout serve --ray` sets it so
    return runner


def _serve(url: str, tmp_path: Path, label: str, session: SimSession,
           ray_address: str | None) -> tuple[MqttRunner, Svc, _Listener, list[str]]:
    """The session published onto the broker under a store name of its own (the engine's
    session exists first: the broker queues for it) and served to the end of the stream, the
    operator's verdict on its review case given once the engine waits for the data after
    100 s. Returns the runner, its service, what its result topics carried and the stream
    sources it went through, in order."""
    svc = _svc(tmp_path / f"{label}.db")
    name = f"{label}{uuid.uuid4().hex[:8]}"
    runner = _runner(url, name, ray_address)
    MqttSource(url, STORE, name, client_id=runner.client_id).start().close()
    listener = _Listener(url, name)
    streams = [runner.source]

    def track() -> None:
        if runner.source != streams[-1]:
            streams.append(runner.source)

    msgs, sent = session_messages(session, name)
    try:
        run = _Run(runner).start(svc.deps)
        with MqttPublisher(url) as pub:
            for m in msgs:
                if m.t_send < 100.0:
                    pub.publish(m.topic, m.payload)
            pub.flush()
            run.wait(lambda: track() or _reviews(svc))
            run.settle()
            (case,) = _reviews(svc)
            (sid,) = case["sessions"]
            (pick,) = [e for e in session.truth.events if e.t_in > 80.0]
            r = svc.client.post(f"/v1/ops/reviews/{case['case_id']}/decision", headers=svc.gate,
                                json={"shares": {sid: [[pick.product_id, 1]]}})
            assert r.status_code == 201, r.text
            for m in msgs:
                if m.t_send >= 100.0:
                    pub.publish(m.topic, m.payload)
            pub.publish(wire.end_topic(name), wire.encode_end(float(session.duration_s), sent))
            pub.flush()
        run.wait(lambda: track() or not run.thread.is_alive())  # type: ignore[union-attr]
        run.join()
        deadline = time.monotonic() + 30  # the result topics delivered
        while (len(listener.got("receipt")) < runner.published["receipts"]
               or len(listener.got("alert")) < runner.published["alerts"]):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        listener.close()
        drop_session(url, runner.client_id)
    return runner, svc, listener, streams


def _reviews(svc: Svc) -> list[dict[str, Any]]:
    r = svc.client.get("/v1/ops/reviews", headers=svc.gate)
    assert r.status_code == 200, r.text
    return list(r.json())


def _event_log(d: Deps) -> dict[str, list[tuple[Any, ...]]]:
    """Every event-log row as (stream number, sequence, kind, t, ref, payload), by what it is
    (gates, shelf, decisions, cases, alerts, evidence, live, health, staff, stream): streams
    numbered in the order they were written (their names carry the wall-clock time), the
    health rows without the source's message counters (how many had arrived when the chunk
    was stepped depends on the network's timing, not on the engine)."""
    with d.sessions() as s:
        rows = list(s.scalars(select(EngineEvent).order_by(EngineEvent.id)))
    number: dict[str, int] = {}
    for r in rows:
        number.setdefault(r.source.rsplit("/", 1)[0], len(number))
    out: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        stream, what = r.source.rsplit("/", 1)
        p = json.loads(r.payload)
        if what == "health":
            p.pop("inputs")
        if what == "stream" and p.get("next"):
            p["next"] = number.get(p["next"], p["next"])
        out.setdefault(what, []).append((number[stream], r.seq, r.kind, r.t, r.ref, p))
    return {k: sorted(v, key=lambda x: (x[0], x[1])) for k, v in out.items()}


def _money(d: Deps) -> dict[str, Any]:
    """Each visit by credential: its state, its cart lines and its charges."""
    with d.sessions() as s:
        visits = {v.id: v.credential for v in s.scalars(select(Visit))}
        out: dict[str, Any] = {c: {"state": None, "lines": [], "charges": []}
                               for c in visits.values()}
        for v in s.scalars(select(Visit)):
            out[v.credential]["state"] = v.state
        for ln in s.scalars(select(CartLine).order_by(CartLine.id)):
            out[visits[ln.visit_id]]["lines"].append((ln.line_key, ln.product_id, ln.quantity))
        for ch in s.scalars(select(Charge).order_by(Charge.id)):
            out[visits[ch.visit_id]]["charges"].append((ch.kind, str(ch.amount), ch.status))
    return out


def test_the_service_on_ray_through_mosquitto_is_the_in_process_service(
        mqtt_url: str, ray_address: str, tmp_path: Path, session: SimSession) -> None:
    served = {label: _serve(mqtt_url, tmp_path, label, session, addr)
              for label, addr in (("single", None), ("ray", ray_address))}
    (r1, svc1, l1, s1), (r2, svc2, l2, s2) = served["single"], served["ray"]
    d1, d2 = svc1.deps, svc2.deps
    assert isinstance(r2.engine, DistributedEngine) and type(r1.engine) is Engine
    # the store was empty after 47 s: both rolled over, once
    assert len(s1) == 2, s1
    assert len(s2) == len(s1), s2
    # what the store's other systems got on the result topics
    assert l2.got("receipt") == l1.got("receipt")
    assert len({r["credential"] for r in l1.got("receipt")}) == 3
    assert l2.got("alert") == l1.got("alert")
    assert {a["kind"] for a in l1.got("alert")} >= {"hand_over", "planogram_mismatch"}
    # what the service wrote: the event log row for row, the money visit by visit
    log1, log2 = _event_log(d1), _event_log(d2)
    assert sorted(log2) == sorted(log1)
    for what in log1:
        assert log2[what] == log1[what], what
    assert [c[0] for c in log1["cases"]] == [1] and len(log1["health"]) >= 20
    assert [(s[0], s[5]["next"]) for s in log1["stream"]] == [(0, 1), (1, None)]
    money = _money(d1)
    assert _money(d2) == money
    cases = [{k: v for k, v in c.items() if k != "stream"} for c in _reviews(svc1)]
    assert [{k: v for k, v in c.items() if k != "stream"} for c in _reviews(svc2)] == cases
    # each visit charged once, the third with what the operator's verdict named
    assert all(v["state"] == "charged" for v in money.values()), money
    assert sorted(c[1] for v in money.values() for c in v["charges"]
                  if c[0] == "capture") == ["3.7900", "3.7900", "5.5900"]
    assert [c["state"] for c in cases] == ["applied"]


def test_a_restart_on_ray_ends_the_stream_it_cannot_continue_and_says_so(
        mqtt_url: str, ray_address: str, tmp_path: Path, session: SimSession) -> None:
    """docs/mqtt.md: an engine on Ray keeps no state, so each start of the service begins a
    new stream; it ends the store's open stream with an ``engine_state_lost`` alert (how many
    visits were open: whoever is inside is an unbound person to the new engine, and their
    visits are checked out for review after max_visit_s); its shelves go on from the stock
    the lost stream last logged (they began from the planogram's stock again). The service
    stops (``systemctl restart``) with the third shopper inside and her review case
    undecided, and starts again on Ray while she finishes her visit."""
    svc = _svc(tmp_path / "ray.db")
    d = svc.deps
    name = f"rst{uuid.uuid4().hex[:8]}"
    r1 = _runner(mqtt_url, name, ray_address)
    MqttSource(mqtt_url, STORE, name, client_id=r1.client_id).start().close()
    listener = _Listener(mqtt_url, name)
    msgs, sent = session_messages(session, name)
    try:
        run1 = _Run(r1).start(d)
        with MqttPublisher(mqtt_url) as pub:
            for m in msgs:
                if m.t_send < 100.0:
                    pub.publish(m.topic, m.payload)
            pub.flush()
            run1.wait(lambda: _reviews(svc))
            run1.settle()
            run1.stop.set()  # a clean stop, the third shopper inside
            run1.join(60)
            old = r1.source
            r2 = _runner(mqtt_url, name, ray_address)
            run2 = _Run(r2).start(d)
            for m in msgs:
                if m.t_send >= 100.0:
                    pub.publish(m.topic, m.payload)
            pub.publish(wire.end_topic(name), wire.encode_end(float(session.duration_s), sent))
            pub.flush()
        run2.join()
        time.sleep(1.0)  # the result topics delivered
    finally:
        listener.close()
        drop_session(mqtt_url, r1.client_id)
    inside = "wrong-planogram-entry-3-1-0"
    assert r2.source != old and r2.engine is not None
    # the new stream says what was lost, in its engine's alerts and its event log
    lost = [a for a in r2.engine.alerts if a.kind == "engine_state_lost"]
    assert len(lost) == 1, r2.engine.alerts
    assert old in lost[0].message and "1 visits were open" in lost[0].message
    with d.sessions() as s:
        alerts = list(s.scalars(select(EngineEvent.kind).where(
            EngineEvent.source == f"{r2.source}/alerts").order_by(EngineEvent.seq)))
        ended = [json.loads(p) for p in s.scalars(select(EngineEvent.payload).where(
            EngineEvent.source == f"{old}/stream", EngineEvent.kind == "stream_ended"))]
    assert alerts[:1] == ["engine_state_lost"], alerts
    # she is an unbound person to the new engine, which charges her nothing
    assert "unbound_person" in alerts
    # the old stream ended, her case undecided: expired, a verdict on it refused
    assert [e["next"] for e in ended] == [r2.source]
    (case,) = _reviews(svc)
    assert case["stream"] == old and case["state"] == "expired"
    assert ended[0]["open_cases"] == [case["case_id"]]
    r = svc.client.post(f"/v1/ops/reviews/{case['case_id']}/decision", headers=svc.gate,
                        json={"shares": {case["sessions"][0]: []}})
    assert r.status_code == 409 and r.json()["error"] == "stream_ended", r.text
    # nothing charged twice: the first two once each; hers left open by the new engine ...
    money = _money(d)
    assert [c for v in money.values() for c in v["charges"] if c[0] == "capture"] == [
        ("capture", "3.7900", "succeeded")] * 2
    assert money[inside]["state"] == "open"
    assert [r["credential"] for r in listener.got("receipt")] == [
        "same-plate-same-moment-3-0-0", "same-plate-same-moment-3-0-1"]
    # ... until the housekeeping checks it out for review after max_visit_s
    svc.clock.advance(d.settings.max_visit_s + 1.0)
    assert close_abandoned(d) == 1
    money = _money(d)
    assert money[inside]["state"] == "in_review"
    # and the new engine's shelves go on from the lost stream's last health row: the two
    # bottles taken in it stay taken (they were back on the plate: the planogram's stock)
    assert "The shelves continue from the stock of" in lost[0].message
    with d.sessions() as s:
        def stock(where: Any, order: Any) -> dict[Any, int]:
            row = s.scalars(select(EngineEvent.payload).where(where).order_by(order)
                            .limit(1)).one()
            return {(tuple(i["plates"]), i["product"]): i["count"]
                    for i in json.loads(row)["inventory"]}

        opening = stock(EngineEvent.kind == "health", EngineEvent.id)
        before = stock(EngineEvent.source == f"{old}/health", EngineEvent.seq.desc())
        after = stock(EngineEvent.source == f"{r2.source}/health", EngineEvent.seq)
    assert after == before
    assert {k: (opening[k], n) for k, n in before.items() if opening[k] != n} == {
        (("B1N-S4-P1",), "632565000654"): (4, 2)}
    # the driver's copy and every zone actor's own (which its explainer reads) hold them, once
    # the decisions still queued for the zones are sent (as at a rollover)
    shelf = r2.engine.shelf
    shelf.forget_events()
    assert shelf.zone_inventories() == (  # type: ignore[attr-defined]
        shelf.inventory.snapshot(), shelf.learned)  # type: ignore[attr-defined]
