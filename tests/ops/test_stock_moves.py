"""The dashboard's restocking view through the real service on SQLite: the engine's stock
decisions (``GET /v1/ops/stock-moves``) — the live engine on the simulator's ``restock``
scenario, and decisions written into the event log as the runner writes them (a closed store's
moves, inventory cases open and decided) — and who set the store's mode
(``GET /v1/store-mode``)."""

from __future__ import annotations

import json
from typing import Any

from walkout.service.models import EngineEvent, ReviewVerdict
from walkout.service.runner import LiveRunner
from walkout.service.testing import Svc, badged
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store

BAR, WATER = "018627032007", "073360771026"  # products of the `small` store


def _moves(svc: Svc, query: str = "") -> list[dict[str, Any]]:
    r = svc.client.get("/v1/ops/stock-moves" + query, headers=svc.gate)
    assert r.status_code == 200, r.text
    return list(r.json())


def test_the_staff_restocks_and_removal_of_the_live_engine_newest_first(svc: Svc) -> None:
    session = simulate(load_store("small"), 0, 1, scenarios=["restock"])
    truth = [te for te in session.truth.events if te.kind in ("restock", "remove")]
    assert len(truth) == 3
    LiveRunner(badged(svc.deps, Sensors.from_session(session))[0], "sim").run(svc.deps)
    moves = _moves(svc)
    assert [m["t"] for m in moves] == sorted((m["t"] for m in moves), reverse=True)
    names = {p.id: p.name for p in session.store.catalogue}
    # what really happened, newest first: + put on the plate, − taken off it
    expected = [(list(te.plates), te.product_id, te.quantity if te.kind == "restock"
                  else -te.quantity) for te in sorted(truth, key=lambda te: -te.t_change)]
    assert [(m["plates"], m["moves"][0]["product_id"], m["moves"][0]["quantity"])
            for m in moves] == expected
    assert all(m["moves"][0]["name"] == names[m["moves"][0]["product_id"]] for m in moves)
    # all by the one staff session, none reviewed, nobody charged
    assert len({m["by"] for m in moves}) == 1 and moves[0]["by"].startswith("s")
    assert all(m["review"] is None and m["charged"] == [] and len(m["moves"]) == 1
               for m in moves)
    assert _moves(svc, "?limit=1") == moves[:1]


def _decision(svc: Svc, seq: int, t: float, ref: str, kind: str, **decision: Any) -> None:
    """A shelf event and its decision as ``runner._decision`` logs them."""
    now = svc.clock.now()
    with svc.deps.sessions.begin() as s:
        s.add(EngineEvent(source="night/shelf", seq=seq, kind=kind, t=t, ref=ref,
                          recorded_at=now, payload=json.dumps(
                              {"event_id": ref, "plates": ["G1-S1-P1"], "delta_g": 0.0})))
        s.add(EngineEvent(source="night/decisions", seq=seq, kind="decision", t=t, ref=ref,
                          recorded_at=now, payload=json.dumps(
                              {"event_id": ref, "session_id": None, "confidence": 0.0,
                               "scores": [], "items": [], "takers": [], "needs_review": False,
                               "stock": True, "reasons": [], **decision})))


def test_a_closed_stores_moves_and_its_inventory_cases_as_their_verdicts_say(
        svc: Svc) -> None:
    _decision(svc, 0, 10.0, "e1", "put", items=[[BAR, -24]])  # nobody's hand, store closed
    _decision(svc, 1, 20.0, "e2", "pick", items=[[WATER, 3]], session_id="s00004")
    _decision(svc, 2, 30.0, "e3", "put", needs_review=True, reasons=["no product fits"])
    _decision(svc, 3, 40.0, "e4", "pick", needs_review=True, session_id="s00004",
              reasons=["a shopper reached in too"])
    _decision(svc, 4, 50.0, "e5", "pick", stock=False, items=[[BAR, 1]],  # a shopper's pick
              session_id="s00002")
    with svc.deps.sessions.begin() as s:  # e4: the shopper's hand took one, staff two
        s.add(ReviewVerdict(source="night", case_id="e4", shares=json.dumps({"s00004": [[WATER, 2]],
                                                             "s00002": [[WATER, 1]]}),
                            decided_by="op", decided_at=svc.clock.now()))
    moves = {m["event_id"]: m for m in _moves(svc)}
    assert list(moves) == ["e4", "e3", "e2", "e1"]  # newest first; e5 was no stock move
    assert moves["e1"]["by"] == "store" and moves["e1"]["plates"] == ["G1-S1-P1"]
    assert [(x["product_id"], x["quantity"]) for x in moves["e1"]["moves"]] == [(BAR, 24)]
    assert moves["e1"]["review"] is None
    assert moves["e2"]["by"] == "s00004"
    assert [(x["product_id"], x["quantity"]) for x in moves["e2"]["moves"]] == [(WATER, -3)]
    assert (moves["e3"]["moves"], moves["e3"]["review"], moves["e3"]["reasons"]) == (
        [], "open", ["no product fits"])
    assert [(x["product_id"], x["quantity"]) for x in moves["e4"]["moves"]] == [(WATER, -3)]
    assert (moves["e4"]["review"], moves["e4"]["charged"]) == ("decided", ["s00002"])
    assert [m["event_id"] for m in _moves(svc, "?limit=2")] == ["e4", "e3"]
    assert svc.client.get("/v1/ops/stock-moves?limit=0", headers=svc.gate).status_code == 422
    # operators only
    assert svc.client.get("/v1/ops/stock-moves").status_code == 401
    assert svc.client.get("/v1/ops/stock-moves", headers=svc.shopper()).status_code == 403


def test_the_store_mode_names_who_set_it(svc: Svc) -> None:
    assert svc.client.get("/v1/store-mode", headers=svc.gate).json()["set_by_name"] is None
    r = svc.client.post("/v1/store-mode", json={"closed": True, "note": "night restock"},
                        headers=svc.gate)
    assert r.status_code == 200 and r.json()["set_by_name"] == "gate"  # make_svc's operator
    mode = svc.client.get("/v1/store-mode", headers=svc.gate).json()
    assert (mode["closed"], mode["set_by_name"], mode["note"]) == (True, "gate", "night restock")


def test_restocks_are_not_counted_as_put_backs_in_the_analytics(svc: Svc) -> None:
    """A restock of 24 bars is stock, not 24 put-backs; a shopper's pick beside it counts."""
    _decision(svc, 0, 10.0, "e1", "put", items=[[BAR, -24]], session_id="s00099")
    _decision(svc, 1, 20.0, "e2", "pick", stock=False, items=[[BAR, 1]], session_id="s00002")
    products = svc.client.get("/v1/ops/analytics", headers=svc.gate).json()["products"]
    assert [(p["product_id"], p["picks"], p["putbacks"]) for p in products] == [(BAR, 1, 0)]
