"""A store's engine on the sensor network survives being killed with shoppers inside: the
restarted ``walkout serve`` continues the same stream (journal and snapshot,
``walkout.service.live_state``) and loses nothing the broker delivered, so every receipt equals
the in-process engine's on the same simulation. Against a real Mosquitto, through the CLI."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from walkout.engine import Engine
from walkout.sim.session import simulate
from walkout.sources import wire
from walkout.sources.mqtt import MqttPublisher, MqttSource, drop_session, session_messages
from walkout.sources.recording import Sensors
from walkout.store.loader import load_store

from .test_mqtt_cli import _free_port, _Listener, _stop, _walkout


def _serve(db: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("WALKOUT_DB_URL", None)
    with log.open("ab") as fh:
        return subprocess.Popen(
            _walkout("serve", "--db", f"sqlite:///{db}", "--store", "small", "--source", url,
                     "--accept-end", "--port", str(_free_port())),
            stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _progress(db: Path) -> list[tuple[str, int]]:
    """(source, last committed chunk) of each live stream in the service's database."""
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    try:
        return list(con.execute("SELECT source, chunk FROM runner_checkpoints "
                                "WHERE source LIKE 'mqtt:%' ORDER BY source"))
    except sqlite3.OperationalError:  # not migrated yet
        return []
    finally:
        con.close()


@pytest.mark.slow
def test_a_killed_engine_continues_its_stream_and_loses_nothing(mqtt_url: str,
                                                                tmp_path: Path) -> None:
    store = load_store("small")
    shoppers, seed = 4, 2
    session = simulate(store, shoppers, seed)
    name = f"rst{uuid.uuid4().hex[:8]}"
    url = f"{mqtt_url}/{name}"
    cid = f"walkout-engine-{name}"
    MqttSource(mqtt_url, store, name, client_id=cid).start().close()  # the broker queues
    listener = _Listener(mqtt_url, name)
    msgs, sent = session_messages(session, name)
    t_kill = 0.45 * session.duration_s
    first = [m for m in msgs if m.t_send < t_kill]
    burst = [m for m in msgs if t_kill <= m.t_send < t_kill + 3.0]  # in flight at the kill
    rest = [m for m in msgs if m.t_send >= t_kill + 3.0]
    db, log = tmp_path / "walkout.db", tmp_path / "serve.log"
    serve = _serve(db, url, log)
    try:
        with MqttPublisher(mqtt_url) as pub:
            for m in first:
                pub.publish(m.topic, m.payload)
            pub.flush()
            deadline = time.monotonic() + 120
            while not any(c >= t_kill / 5.0 - 2 for _, c in _progress(db)):
                assert serve.poll() is None and time.monotonic() < deadline, \
                    log.read_text()[-3000:]
                time.sleep(0.2)
            for m in burst:
                pub.publish(m.topic, m.payload)
            pub.flush()
            time.sleep(0.3)  # consumed, partly stepped: then the power goes
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
            (stream, before), = _progress(db)
            inside = [g for g in session.gates if g.kind == "entry" and g.t < t_kill]
            exits = [g for g in session.gates if g.kind == "exit" and g.t < t_kill]
            assert len(inside) > len(exits), "nobody inside at the kill: the test proves less"
            for m in rest:  # the devices go on while the engine is down
                pub.publish(m.topic, m.payload)
            pub.publish(wire.end_topic(name), wire.encode_end(float(session.duration_s), sent))
            pub.flush()
        serve = _serve(db, url, log)
        ref = Engine(store).run(Sensors.from_session(session))
        want = {r.credential: {p: q for p, q in r.counts().items() if q} for r in ref.receipts}
        listener.wait_for_published(log, serve, timeout=180)
        got = {r["credential"]: {ln["product"]: ln["quantity"] for ln in r["lines"]
                                 if ln["quantity"]}
               for r in listener.receipts().values()}
    finally:
        _stop(serve)
        listener.close()
        drop_session(mqtt_url, cid)
    text = log.read_text()
    assert f"continuing stream {stream}" in text, text[-3000:]
    assert [s for s, _ in _progress(db)] == [stream]  # one stream, not a new one per start
    assert before >= t_kill / 5.0 - 2
    assert len(want) == shoppers and any(want.values())
    assert got == want, text[-3000:]
    con = sqlite3.connect(db)
    left = con.execute("SELECT COUNT(*) FROM stream_chunks").fetchone()[0] + con.execute(
        "SELECT COUNT(*) FROM engine_snapshots").fetchone()[0]
    unbound = con.execute("SELECT COUNT(*) FROM engine_events WHERE source LIKE '%/alerts' "
                          "AND kind IN ('unbound_person', 'engine_state_lost')").fetchone()[0]
    con.close()
    assert left == 0  # the stream ended: its journal and snapshot went with it
    assert unbound == 0  # nobody inside was forgotten
