"""A new stream after one whose engine state was lost goes on with that stream's shelves.

The engine's state of a live stream is lost on every restart on Ray and, in one process,
when its snapshot cannot be loaded (an upgrade). The new engine's shelves started from the
planogram's opening stock: the health page counted every item taken before the restart as
back on its plate, low-stock alerts went quiet and the shelf stage explained picks by items
that were gone. Now the runner restocks them from the lost stream's last health row
(``MqttRunner._restock``, ``Engine.restock``). In process against a real Mosquitto and a
SQLite service database."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from tests.ops.live_runners import Killable, sqlite_deps, start_runner, until

from walkout.engine import Engine
from walkout.service.clock import aware
from walkout.service.deps import Deps
from walkout.service.models import EngineEvent, EngineSnapshot
from walkout.service.mqtt_runner import MqttRunner
from walkout.shelf.inventory import PlateInventory
from walkout.sim.session import SimConfig, simulate
from walkout.sim.shoppers import ShopperConfig
from walkout.sources import wire
from walkout.sources.mqtt import MqttPublisher, MqttSource, drop_session, session_messages
from walkout.sources.recording import Sensors
from walkout.store import load_store

STORE = load_store("small")
OPENING = {(fp, p): n for fp, c in PlateInventory.from_store(STORE).snapshot().items()
           for p, n in c.items()}


def _start(d: Deps, url: str, name: str, killed: bool = False
           ) -> tuple[Killable, threading.Thread, threading.Event]:
    return start_runner(d, url, name, STORE, killed=killed)


def _first_shopper_then_upgrade(d: Deps, url: str, name: str, msgs: list[Any],
                                pub: MqttPublisher) -> Killable:
    """The first shopper shops and leaves (to 100 s); the service stops cleanly and is
    upgraded: its snapshot cannot be loaded, the stream is lost to the next start."""
    r1, th1, stop1 = _start(d, url, name)
    for m in msgs:
        if m.t_send < 100.0:
            pub.publish(m.topic, m.payload)
    pub.flush()
    until(lambda: r1.chunks_done >= 18, th1)
    stop1.set()  # a clean stop: snapshotted ...
    th1.join(30)
    with d.sessions.begin() as s:  # ... by a walkout older than the one started next
        s.execute(update(EngineSnapshot).where(EngineSnapshot.source == r1.source)
                  .values(code="an older walkout"))
    return r1


def _health(d: Deps, source: str) -> list[dict[tuple[tuple[str, ...], str], int]]:
    """The stream's health rows' inventory counts, in chunk order."""
    with d.sessions() as s:
        rows = s.scalars(select(EngineEvent.payload).where(
            EngineEvent.source == f"{source}/health").order_by(EngineEvent.seq))
        return [{(tuple(i["plates"]), i["product"]): i["count"]
                 for i in json.loads(p)["inventory"]} for p in rows]


def test_the_stream_after_a_lost_one_goes_on_with_its_shelves(
        mqtt_url: str, tmp_path: Path) -> None:
    """The first shopper shops and leaves (18-75 s); the service stops and is upgraded (its
    snapshot cannot be loaded: the stream is lost). The new stream's first health row shows
    the stock the first shopper left, not the planogram's; it is killed before its first
    snapshot while the second shopper shops (113-168 s), and the restart replays it from the
    same restocked shelves: at the end they hold what one engine over the whole day holds."""
    d = sqlite_deps(tmp_path)
    cfg = SimConfig(shoppers=ShopperConfig(mean_arrival_gap_s=80.0))
    session = simulate(STORE, 2, 3, config=cfg)
    name = f"lst{uuid.uuid4().hex[:8]}"
    cid = f"walkout-engine-{name}"
    MqttSource(mqtt_url, STORE, name, client_id=cid).start().close()  # the broker queues
    msgs, sent = session_messages(session, name)
    try:
        with MqttPublisher(mqtt_url) as pub:
            r1 = _first_shopper_then_upgrade(d, mqtt_url, name, msgs, pub)
            r2, th2, stop2 = _start(d, mqtt_url, name, killed=True)
            for m in msgs:
                if 100.0 <= m.t_send < 140.0:
                    pub.publish(m.topic, m.payload)
            pub.flush()
            until(lambda: r2.chunks_done >= 6, th2)
            stop2.set()  # killed: no snapshot, the journal is what a restart has
            th2.join(30)
            for m in msgs:
                if m.t_send >= 140.0:
                    pub.publish(m.topic, m.payload)
            pub.publish(wire.end_topic(name), wire.encode_end(float(session.duration_s), sent))
            pub.flush()
        r3, th3, _ = _start(d, mqtt_url, name)
        th3.join(120)
        assert not th3.is_alive()
    finally:
        drop_session(mqtt_url, cid)
    assert r2.source != r1.source and r3.source == r2.source and r3.resumed_from is not None
    # the first shopper took items: the lost stream's last health row shows fewer
    before = _health(d, r1.source)[-1]
    assert before != OPENING and all(before[k] <= n for k, n in OPENING.items())
    # the new stream's first row goes on from there, not from the planogram's stock
    after = _health(d, r2.source)
    assert after[0] == before
    # its alert says so, with when that row was written
    assert r3.engine is not None
    (lost,) = [a for a in r3.engine.alerts if a.kind == "engine_state_lost"]
    assert r1.source in lost.message and "upgrade" in lost.message
    with d.sessions() as s:
        at = s.scalars(select(EngineEvent.recorded_at).where(
            EngineEvent.source == f"{r1.source}/health").order_by(EngineEvent.seq.desc())).first()
    assert at is not None
    when = aware(at).isoformat(sep=" ", timespec="seconds")
    assert (f"The shelves continue from the stock of {when} (the last health row of stream "
            f"{r1.source}, at ") in lost.message
    # the replay after the kill began from the same shelves: at the end of the day they hold
    # what one engine over the whole day holds (both shoppers' items gone)
    ref = Engine(STORE)
    ref.run(Sensors.from_session(session))
    day = {(fp, p): n for fp, c in ref.shelf.inventory.snapshot().items() for p, n in c.items()}
    assert r3.engine.shelf.inventory.snapshot() == ref.shelf.inventory.snapshot()
    assert {k: n for k, n in after[-1].items() if n} == day and after[-1] != before


def test_a_lost_stream_that_logged_no_shelves_leaves_the_planogram_stock_and_says_so(
        mqtt_url: str, tmp_path: Path) -> None:
    """No health row of the lost stream, nor of a stream before it: the planogram's stock,
    and the alert says so."""
    d = sqlite_deps(tmp_path)
    name = f"lst{uuid.uuid4().hex[:8]}"
    with d.sessions.begin() as s:
        s.add(EngineSnapshot(source=f"mqtt:{name}:20261123T080000", chunk=40, t=200.0,
                             code="an older walkout", payload=b"\x80\x05N.",
                             created_at=d.clock.now()))
    r, th, stop = _start(d, mqtt_url, name)
    try:
        until(lambda: r.engine is not None, th)
        stop.set()
        th.join(30)
    finally:
        drop_session(mqtt_url, r.client_id)
    assert r.engine is not None
    (lost,) = [a for a in r.engine.alerts if a.kind == "engine_state_lost"]
    assert "No health row of it was logged: the shelves start from the planogram's opening " \
           "stock." in lost.message
    assert r.engine.shelf.inventory.snapshot() == PlateInventory.from_store(STORE).snapshot()


def test_the_shelves_of_a_stream_that_logged_none_are_those_of_the_one_it_followed(
        tmp_path: Path) -> None:
    """A lost stream with no health row of its own (it died before its first chunk was
    written) began with the shelves of the stream it followed (``stream_ended`` names it
    ``next``): those go on. A stream nothing led to, and a damaged row, give none."""
    d = sqlite_deps(tmp_path)
    runner = MqttRunner("mqtt://127.0.0.1:1/st", STORE)
    a, b, c = (f"mqtt:st:20261123T0{h}0000" for h in (7, 8, 9))
    inv = [{"plates": ["B1N-S1-P1"], "product": "x", "count": 1, "misplaced": True}]

    def row(source: str, seq: int, kind: str, payload: Any) -> EngineEvent:
        return EngineEvent(source=source, seq=seq, kind=kind, t=float(seq), ref=None,
                           recorded_at=d.clock.now(), payload=json.dumps(payload))

    with d.sessions.begin() as s:
        s.add_all([row(f"{a}/health", 3, "health", {"inventory": []}),
                   row(f"{a}/health", 4, "health", {"inventory": inv}),
                   row(f"{a}/stream", 0, "stream_ended", {"next": b, "open_cases": []}),
                   row(f"{b}/stream", 0, "stream_ended", {"next": c, "open_cases": []}),
                   row("mqtt:other:1/stream", 0, "stream_ended", {"next": c})])
    found = runner._last_health(d, c)
    assert found is not None and found[0] == a and found[1] == 4.0
    assert found[3]["inventory"] == inv
    assert runner._last_health(d, "mqtt:st:nothing") is None
    with d.sessions.begin() as s:
        s.add(EngineEvent(source=f"{c}/health", seq=0, kind="health", t=0.0, ref=None,
                          recorded_at=d.clock.now(), payload="{not json"))
    assert runner._last_health(d, c) is None


def test_a_start_that_stopped_before_its_first_chunk_leaves_the_shelves_and_says_so(
        mqtt_url: str, tmp_path: Path) -> None:
    """The stream after a lost one stopped before its first chunk (a crash loop at start):
    nothing of it was written, its alert neither, so the next start found no stream to
    continue and began from the planogram's stock, silently. It goes on from the stock the
    lost stream last logged, and says what happened."""
    d = sqlite_deps(tmp_path)
    session = simulate(STORE, 2, 3, config=SimConfig(
        shoppers=ShopperConfig(mean_arrival_gap_s=80.0)))  # the first leaves at 75 s
    name = f"lst{uuid.uuid4().hex[:8]}"
    cid = f"walkout-engine-{name}"
    MqttSource(mqtt_url, STORE, name, client_id=cid).start().close()
    msgs, _ = session_messages(session, name)
    try:
        with MqttPublisher(mqtt_url) as pub:
            r1 = _first_shopper_then_upgrade(d, mqtt_url, name, msgs, pub)
        time.sleep(1.1)  # stream names carry the second they began
        r2, th2, stop2 = _start(d, mqtt_url, name)
        until(lambda: r2.engine is not None, th2)
        stop2.set()  # before any chunk: nothing of it is written
        th2.join(30)
        with d.sessions() as s:
            assert s.scalar(select(EngineEvent.id).where(
                EngineEvent.source.startswith(f"{r2.source}/"))) is None
        time.sleep(1.1)
        r3, th3, stop3 = _start(d, mqtt_url, name)
        until(lambda: r3.engine is not None, th3)
        stop3.set()
        th3.join(30)
    finally:
        drop_session(mqtt_url, cid)
    assert len({r1.source, r2.source, r3.source}) == 3 and r3.engine is not None
    before = _health(d, r1.source)[-1]
    assert before != OPENING
    now = {(fp, p): n for fp, c in r3.engine.shelf.inventory.snapshot().items()
           for p, n in c.items()}
    assert now == {k: n for k, n in before.items() if n}
    (lost,) = [a for a in r3.engine.alerts if a.kind == "engine_state_lost"]
    assert lost.subject == r2.source and "stopped before its first chunk" in lost.message
    assert f"the last health row of stream {r1.source}" in lost.message
