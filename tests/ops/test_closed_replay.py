"""A recording made in a store closed for restocking replays as the live service ran it.

The live service learns the store mode from its operator (``POST /v1/store-mode``), applied by
the engine worker at the start of its next chunk; a recording carries the same changes in
``store_modes.jsonl`` and ``walkout replay`` (``Engine.run``) applies them at those chunks. So
the recording of the simulator's ``closed-restock`` scenario must give the receipts, the stock
moves and the decisions the live service gave when its operator closed and opened the store at
those moments. Before recordings carried the mode, the replay saw an open store: the two
changes no hand made were review cases instead of a restock and a removal."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from walkout.engine import Decision, Engine
from walkout.service.models import EngineEvent, Receipt, ReceiptLine, Visit
from walkout.service.runner import LiveRunner
from walkout.service.testing import Svc
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors, load_sensors, write_recording
from walkout.store import load_store

CHUNK_S = 5.0


def _decided(d: Decision) -> tuple[Any, ...]:
    att = d.attribution
    return (att.event.event_id, att.session_id, [list(i) for i in d.items], d.needs_review,
            d.stock)


def test_the_recording_of_a_closed_period_replays_as_the_live_service_ran_it(
        svc: Svc, tmp_path: Path) -> None:
    session = simulate(load_store("small"), 0, 1, scenarios=["closed-restock"])
    assert [m.closed for m in session.modes] == [True, False]
    # the live service: the sensors alone; the operator closes and opens the store through the
    # API while the engine runs, the worker meeting each change before its next chunk (here:
    # stopped after the chunk before, as a worker between two chunks; it resumes from its
    # checkpoint, replaying the log)
    live = Sensors(session.store, session.plates, session.frames, session.gates,
                   session.duration_s)
    due = [i for i, ms in enumerate(Sensors.from_session(session).mode_steps(CHUNK_S)) if ms]
    assert len(due) == 2
    for i, m in zip(due, session.modes, strict=True):
        LiveRunner(live, "live", stop_after_chunk=i - 1).run(svc.deps)
        r = svc.client.post("/v1/store-mode", json={"closed": m.closed}, headers=svc.gate)
        assert r.status_code == 200 and r.json()["closed"] is m.closed
    LiveRunner(live, "live").run(svc.deps)

    # the replay of the recording, as `walkout replay rec/` runs it
    write_recording(session, tmp_path / "rec")
    sensors = load_sensors(tmp_path / "rec")
    assert sensors.modes == session.modes
    result = Engine(sensors.store).run(sensors)

    with svc.deps.sessions() as s:
        logged = [json.loads(p) for p in s.scalars(
            select(EngineEvent.payload).where(EngineEvent.source == "live/decisions")
            .order_by(EngineEvent.seq))]
        lines = s.execute(select(Visit.credential, ReceiptLine.product_id, ReceiptLine.quantity)
                          .join(Receipt, Receipt.visit_id == Visit.id)
                          .join(ReceiptLine, ReceiptLine.receipt_id == Receipt.id)).all()
        modes = [(k, t) for k, t in s.execute(
            select(EngineEvent.kind, EngineEvent.t).where(
                EngineEvent.source == "live/alerts",
                EngineEvent.kind.in_(("store_closed", "store_opened")))
            .order_by(EngineEvent.seq))]
    # the same decisions: the restock and the removal booked to nobody's hand, not reviewed
    assert [(d["event_id"], d["session_id"], d["items"], d["needs_review"], d.get("stock", False))
            for d in logged] == [_decided(d) for d in result.decisions]
    stock = [d for d in result.decisions if d.stock]
    assert len(stock) == 2 and not any(d.needs_review for d in result.decisions)
    # the same stock moves on the dashboard's list
    r = svc.client.get("/v1/ops/stock-moves", headers=svc.gate)
    assert r.status_code == 200
    assert sorted((m["event_id"], m["by"], [(x["product_id"], x["quantity"]) for x in m["moves"]])
                  for m in r.json()) == sorted(
        (d.attribution.event.event_id, "store", [(p, -q) for p, q in d.items]) for d in stock)
    # the same receipts, and the store closed and opened at the same moments
    live_receipts: dict[str, Counter[str]] = {}
    for cred, pid, q in lines:
        live_receipts.setdefault(cred, Counter())[pid] += q
    assert live_receipts == {r.credential: Counter(r.counts()) for r in result.receipts}
    assert sum(sum(c.values()) for c in live_receipts.values()) == 2
    assert modes == [(a.kind, a.t) for a in result.alerts
                     if a.kind in ("store_closed", "store_opened")]
    assert [t for _, t in modes] == [CHUNK_S * i for i in due]
