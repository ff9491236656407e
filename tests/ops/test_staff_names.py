"""The dashboard names the associate whose hands moved stock, and calls a restock a restock.

The live engine on the simulator's ``restock`` scenario, the badge's credential that of a real
staff account (``Bo``): the worker logs the staff session (``<source>/staff``), the stock-moves
list names Bo, and the operators' event stream labels each stock decision ``restock`` or
``removal`` (not ``put``/``pick``) with Bo's name, names Bo at the gate, on the map and in the
alerts about Bo's removals. Shoppers are named nowhere (pseudonyms and session ids as before)."""

from __future__ import annotations

import json
import threading
import time
from contextlib import suppress
from typing import Any

import httpx
from sqlalchemy import select

from walkout.service.models import EngineEvent
from walkout.service.runner import LiveRunner
from walkout.service.testing import ADMIN_TOKEN, Svc, badged, served
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store
from walkout.web.routes import _channel

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}




def _stream(url: str, h: dict[str, str], upto: int, timeout: float = 60.0
            ) -> list[dict[str, Any]]:
    """The operators' stream from the log's start: its events, read until the one of id
    ``upto`` came (read for a fixed 2 s, a busy machine's stream had not sent them all)."""
    lines: list[str] = []

    def run() -> None:
        with suppress(httpx.HTTPError), httpx.stream(  # until the server stops
                "GET", url + "/v1/ops/stream?after=0", headers=h, timeout=30) as r:
            lines.extend(r.iter_lines())

    threading.Thread(target=run, daemon=True).start()
    end = time.monotonic() + timeout
    while True:
        got, channel = [], None
        for line in list(lines):
            if line.startswith("event: "):
                channel = line.removeprefix("event: ")
            elif line.startswith("data: ") and channel != "changed":
                got.append(json.loads(line.removeprefix("data: ")))
        if any(e["id"] >= upto for e in got):
            return got
        assert time.monotonic() < end, f"the stream sent {len(got)} events, none of id {upto}"
        time.sleep(0.1)


def _last_streamed(svc: Svc) -> int:
    """The id of the event log's last row the operators' stream sends."""
    with svc.deps.sessions() as db:
        return max(i for i, source in db.execute(select(EngineEvent.id, EngineEvent.source))
                   if _channel(source) is not None)


def test_restocks_and_removals_are_labelled_and_name_the_associate(svc: Svc) -> None:
    session = simulate(load_store("small"), 2, 1, scenarios=["restock"])
    # what the gate puts in its event for Bo
    sensors, badge = badged(svc.deps, Sensors.from_session(session), "Bo")
    LiveRunner(sensors, "sim", stop_after_chunk=5).run(svc.deps)  # a restart on the way:
    LiveRunner(sensors, "sim").run(svc.deps)  # the replayed chunks log nobody twice

    with svc.deps.sessions() as db:
        (row,) = db.scalars(select(EngineEvent).where(EngineEvent.source == "sim/staff"))
    sid = row.ref
    assert json.loads(row.payload) == {"session_id": sid, "credential": badge}

    moves = svc.client.get("/v1/ops/stock-moves", headers=svc.gate).json()
    assert len(moves) == 3 and {(m["by"], m["by_name"]) for m in moves} == {(sid, "Bo")}

    with served(svc.client.app) as url:  # type: ignore[arg-type]
        events = _stream(url, svc.gate, _last_streamed(svc))
    decisions = [e for e in events if e["kind"] == "decision"]
    stock = [e for e in decisions if e["data"].get("stock")]
    assert sorted(e["label"] for e in stock) == ["removal", "restock", "restock"]
    assert all(e["names"] == {sid: "Bo"} for e in stock)
    for e in stock:  # the label follows the items: − onto the plate, + off it
        (_, q), = e["data"]["items"]
        assert e["label"] == ("restock" if q < 0 else "removal")
    shoppers = [e for e in decisions if not e["data"].get("stock")]
    assert shoppers and {e["label"] for e in shoppers} <= {"pick", "put"}
    assert not any("names" in e for e in shoppers)
    # at the gate, on the map, in the alerts about Bo's removals: Bo, by name
    (entry,) = [e for e in events if e["kind"] == "entry" and e["data"]["credential"] == badge]
    assert entry["names"] == {badge: "Bo"}
    assert not any("names" in e for e in events
                   if e["kind"] in ("entry", "exit") and e["data"]["credential"] != badge)
    people = [p for e in events if e["kind"] == "positions" for p in e["data"]["people"]]
    staff = [p for p in people if p["session"] == sid]
    assert staff and all(p["who"] == "Bo" and p["staff"] for p in staff)
    others = [p for p in people if p["session"] != sid]
    assert others and not any(p["staff"] for p in others)
    assert all(p["who"] is None or p["who"].startswith("acct-") for p in others)
    named = [e for e in events if e["kind"] in ("stock_removed", "staff_left_with_goods")]
    assert len(named) == 2 and all(e["names"] == {sid: "Bo"} for e in named)
