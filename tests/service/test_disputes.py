"""Disputes: the operator sees the line's evidence and decides once; a refund goes through the
provider with a key derived from the dispute, never above what was captured; repeated
unfounded disputes flag the shopper; the shopper's word alone changes nothing."""

from __future__ import annotations

import json
from decimal import Decimal

from sqlalchemy import Engine, select

from walkout.service.models import Charge, EngineEvent
from walkout.service.payments.ledger import LedgerProvider
from walkout.service.testing import Svc, make_svc

BAR, WATER = "018627032007", "073360771026"  # 9.19 and 7.59 EUR in the `small` store


def _sales(svc: Svc) -> Decimal:
    ledger = svc.deps.provider
    assert isinstance(ledger, LedgerProvider)
    return ledger.balance("store:sales:EUR")


def _dispute(svc: Svc, h: dict[str, str], rid: str, pid: str, qty: int = 1) -> str:
    r = svc.client.post("/v1/disputes", json={"receipt_id": rid, "product_id": pid,
                                              "quantity": qty, "reason": "I put it back"},
                        headers=h)
    assert r.status_code == 201, r.text
    return str(r.json()["dispute_id"])


def test_operator_sees_the_evidence_then_refunds_once(svc: Svc) -> None:
    c, op = svc.client, svc.gate
    h = svc.shopper()
    vid = svc.enter(h)
    out = svc.leave(vid, {BAR: 2, WATER: 1})
    event = f"ev-{vid[:8]}-{BAR}"
    with svc.deps.sessions.begin() as s:  # what the runner logs about that shelf event
        s.add(EngineEvent(source="sim/decisions", seq=0, kind="decision", t=12.5, ref=event,
                          payload=json.dumps({"confidence": 0.62, "scores": [["s1", 0.62],
                                                                              ["s2", 0.38]]}),
                          recorded_at=svc.clock.now()))
    did = _dispute(svc, h, str(out["receipt_id"]), BAR)
    # the shopper's word alone: the receipt, the ledger and the money are unchanged
    rec = c.get(f"/v1/receipts/{out['receipt_id']}", headers=h).json()
    assert [(ln["product_id"], ln["quantity"]) for ln in rec["lines"]] == [(BAR, 2), (WATER, 1)]
    assert _sales(svc) == Decimal("25.97")
    assert c.post(f"/v1/disputes/{did}/decision", json={"decision": "refund"},
                  headers=h).status_code == 403
    case = c.get(f"/v1/disputes/{did}", headers=op).json()
    assert case["line"] == {"name": case["line"]["name"], "quantity": 2, "unit_price": "9.19",
                            "amount": "18.38", "currency": "EUR"}
    [ev] = case["evidence"]
    assert ev["event_id"] == event and ev["cart_lines"][0]["confidence"] == 0.9
    assert ev["log"][0]["kind"] == "decision" and ev["log"][0]["data"]["scores"][1] == ["s2",
                                                                                        0.38]
    assert case["shopper"]["flagged"] is False and case["reason"] == "I put it back"

    r = c.post(f"/v1/disputes/{did}/decision", json={"decision": "refund", "note": "video"},
               headers=op)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "refunded" and r.json()["refund"]["amount"] == "9.19"
    assert _sales(svc) == Decimal("16.78")
    for again in ("refund", "reject"):  # a second decision is refused, and moves no money
        r = c.post(f"/v1/disputes/{did}/decision", json={"decision": again}, headers=op)
        assert r.status_code == 409 and r.json()["error"] == "already_decided"
    assert _sales(svc) == Decimal("16.78")
    with svc.deps.sessions() as s:
        refund = s.scalars(select(Charge).where(Charge.kind == "refund")).one()
    assert refund.idempotency_key == f"dispute:{did}:refund" and refund.status == "succeeded"


def test_a_refund_is_split_over_the_hold_and_the_balance_and_never_exceeds_them(
        engine: Engine) -> None:
    """A cart above the hold is paid by two payments (the hold's capture, the balance charged
    to the saved card); a refund is made on one payment at most up to what it took, so a
    refund larger than either's room is split over both, and nothing beyond what the two
    took is ever refunded (before, the refunds read the first capture only: the bar's was
    cut to 2.41)."""
    svc = make_svc(engine, hold_per_person=Decimal("10.00"))  # the hold caps the capture
    h = svc.shopper()
    out = svc.leave(svc.enter(h), {BAR: 1, WATER: 1})
    assert out["charged"]["amount"] == "16.78" and out["total"]["amount"] == "16.78"
    rid = str(out["receipt_id"])
    d1, d2 = _dispute(svc, h, rid, WATER), _dispute(svc, h, rid, BAR)
    decide = {"decision": "refund"}
    r1 = svc.client.post(f"/v1/disputes/{d1}/decision", json=decide, headers=svc.gate).json()
    r2 = svc.client.post(f"/v1/disputes/{d2}/decision", json=decide, headers=svc.gate).json()
    assert r1["refund"]["amount"] == "7.59" and r2["refund"]["amount"] == "9.19"
    assert (r1["state"], r2["state"]) == ("refunded", "refunded")
    with svc.deps.sessions() as s:
        caps = {c.id: c.amount for c in s.scalars(select(Charge).where(
            Charge.kind == "capture", Charge.status == "succeeded"))}
        parts = [(c.idempotency_key.split(":")[1], caps[int(c.idempotency_key.split("@")[1])],
                  c.amount, c.status) for c in s.scalars(select(Charge).where(
                      Charge.kind == "refund").order_by(Charge.id))]
    assert sorted(caps.values()) == [Decimal("6.78"), Decimal("10.00")]
    # the water on the hold's capture alone; the bar on what is left of both
    assert parts == [(d1, Decimal("10.00"), Decimal("7.59"), "succeeded"),
                     (d2, Decimal("6.78"), Decimal("6.78"), "succeeded"),
                     (d2, Decimal("10.00"), Decimal("2.41"), "succeeded")]
    assert _sales(svc) == 0  # everything the two payments took was given back, no more


def test_nothing_captured_nothing_refunded(svc: Svc) -> None:
    h = svc.shopper()
    out = svc.leave(svc.enter(h), {BAR: 1})
    did = _dispute(svc, h, str(out["receipt_id"]), BAR)
    with svc.deps.sessions.begin() as s:  # as if the capture had failed at exit
        cap = s.scalars(select(Charge).where(Charge.kind == "capture")).one()
        cap.status = "failed"
    r = svc.client.post(f"/v1/disputes/{did}/decision", json={"decision": "refund"},
                        headers=svc.gate)
    assert r.status_code == 409 and r.json()["error"] == "nothing_captured"
    assert svc.client.get(f"/v1/disputes/{did}", headers=svc.gate).json()["state"] == "open"


def test_repeated_unfounded_disputes_flag_the_shopper(engine: Engine) -> None:
    svc = make_svc(engine, dispute_flag_rejections=3, dispute_flag_window_days=30)
    c, op = svc.client, svc.gate
    h = svc.shopper()
    other = svc.shopper(card="tok_other", email="o@example.org")
    od = _dispute(svc, other, str(svc.leave(svc.enter(other), {BAR: 1})["receipt_id"]), BAR)
    ids = []
    for _ in range(3):
        ids.append(_dispute(svc, h, str(svc.leave(svc.enter(h), {BAR: 1})["receipt_id"]), BAR))
        svc.clock.advance(3600)
    for i, did in enumerate(ids):
        r = c.post(f"/v1/disputes/{did}/decision", json={"decision": "reject"}, headers=op)
        assert r.status_code == 200 and r.json()["state"] == "rejected"
        assert r.json()["shopper"] == {"account_id": r.json()["shopper"]["account_id"],
                                       "rejected_disputes": i + 1, "window_days": 30,
                                       "flagged": i + 1 >= 3}
    listed = {d["dispute_id"]: d["shopper"]["flagged"]
              for d in c.get("/v1/disputes", headers=op).json()}
    assert listed == {ids[0]: True, ids[1]: True, ids[2]: True, od: False}
    assert _sales(svc) == Decimal("36.76")  # rejected: all four captures stand
    svc.clock.advance(31 * 86400)  # the window moves on
    assert c.get(f"/v1/disputes/{ids[0]}", headers=op).json()["shopper"]["flagged"] is False


def test_runner_logs_the_evidence_behind_every_cart_line(engine: Engine) -> None:
    from walkout.service.models import CartLine
    from walkout.service.runner import LiveRunner
    from walkout.sim.session import simulate
    from walkout.sources.recording import Sensors
    from walkout.store import load_store

    sensors = Sensors.from_session(simulate(load_store("small"), 2, 2))
    svc = make_svc(engine)
    LiveRunner(sensors, "sim").run(svc.deps)
    with svc.deps.sessions() as s:
        events = set(s.scalars(select(CartLine.event_id)))
        decided = set(s.scalars(select(EngineEvent.ref).where(EngineEvent.kind == "decision")))
        shelf = set(s.scalars(select(EngineEvent.ref).where(EngineEvent.source == "sim/shelf")))
    assert events and events <= decided <= shelf
