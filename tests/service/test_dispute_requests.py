"""Disputes, staff refunds and review verdicts at the edges of their requests: the same line
disputed twice at once, a staff refund of another quantity than the shopper's dispute, a refund
refused, a long note, a verdict naming a product twice. Every answer is a 2xx or a 4xx naming
the problem; nothing half-done is left."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from walkout.service.models import Charge, Dispute, EngineEvent, ReviewVerdict
from walkout.service.testing import Svc

from .faults import at_once

BAR = "018627032007"  # 9.19 EUR in the `small` store


def test_two_disputes_of_one_line_at_once_answer_201_and_409(svc: Svc) -> None:
    """A double tap in the app: both requests pass the "already disputed" check before
    either inserts (a barrier holds both inserts until both checks ran); the second meets the
    line's unique constraint and is told so, not answered 500."""
    h = svc.shopper()
    out = svc.leave(svc.enter(h), {BAR: 2})

    def post() -> tuple[int, str | None]:
        r = svc.client.post("/v1/disputes", json={
            "receipt_id": out["receipt_id"], "product_id": BAR, "quantity": 1,
            "reason": "I put it back"}, headers=h)
        return r.status_code, r.json().get("error")

    got = at_once(svc, "disputes", post)
    assert sorted(map(str, got)) == sorted(map(str, [(201, None), (409, "already_disputed")]))
    r = svc.client.get("/v1/disputes", headers=svc.gate)
    assert len(r.json()) == 1


def _staff_refund(svc: Svc, rid: object, quantity: int, note: str = "seen on the video"
                  ) -> tuple[int, dict[str, Any]]:
    r = svc.client.post(f"/v1/ops/receipts/{rid}/refund",
                        json={"product_id": BAR, "quantity": quantity, "note": note},
                        headers=svc.gate)
    return r.status_code, dict(r.json())


def _sales(svc: Svc) -> Decimal:
    return Decimal(svc.deps.provider.balance("store:sales:EUR"))  # type: ignore[attr-defined]


def test_a_staff_refund_refunds_the_quantity_staff_found_not_the_shoppers_claim(
        svc: Svc) -> None:
    """She disputes 1 of her 2 bars; the video shows she took none: staff refund 2, and 2 are
    refunded (before, her open dispute's 1 was refunded and the answer said nothing)."""
    h = svc.shopper()
    rid = svc.leave(svc.enter(h), {BAR: 2})["receipt_id"]
    r = svc.client.post("/v1/disputes", json={"receipt_id": rid, "product_id": BAR,
                                              "quantity": 1, "reason": "only took one"},
                        headers=h)
    assert r.status_code == 201, r.text
    status, body = _staff_refund(svc, rid, 2)
    assert status == 200 and body["state"] == "refunded", body
    assert body["refund"]["amount"] == "18.38" and _sales(svc) == 0
    status, body = _staff_refund(svc, rid, 1)  # every unit refunded: said, not done twice
    assert (status, body["error"]) == (409, "already_disputed")
    assert "all 2 unit(s) of this line were refunded already" in body["detail"]
    assert _sales(svc) == 0


def test_staff_refund_more_units_of_a_line_refunded_before(svc: Svc) -> None:
    """One of three bars was refunded; the shopper then brings a second one back unopened:
    staff refund one more, under the dispute's next key, and never more than the line."""
    h = svc.shopper()
    rid = svc.leave(svc.enter(h), {BAR: 3})["receipt_id"]
    status, body = _staff_refund(svc, rid, 1, "returned at the desk")
    assert status == 200 and body["refund"]["amount"] == "9.19"
    assert _sales(svc) == Decimal("18.38")
    status, body = _staff_refund(svc, rid, 1, "the second one, unopened")
    assert status == 200, body
    assert (body["state"], body["quantity"], body["refund"]["amount"]) == (
        "refunded", 2, "18.38")
    assert _sales(svc) == Decimal("9.19")
    did = body["dispute_id"]
    with svc.deps.sessions() as s:
        keys = list(s.scalars(select(Charge.idempotency_key).where(Charge.kind == "refund")
                              .order_by(Charge.id)))
    assert keys == [f"dispute:{did}:refund", f"dispute:{did}:refund:2"]
    status, body = _staff_refund(svc, rid, 5, "all of them")  # only the one left
    assert status == 200 and body["quantity"] == 3 and _sales(svc) == 0
    status, body = _staff_refund(svc, rid, 1)
    assert (status, body["error"]) == (409, "already_disputed") and _sales(svc) == 0


def test_staff_overrule_a_dispute_they_rejected_with_a_refund(svc: Svc) -> None:
    """Her dispute was rejected; the video then shows she was right. Staff refund the line:
    the rejection is overruled (it no longer counts against her), the refund is made once,
    and who rejected it and why stays in the decision's note."""
    h = svc.shopper()
    rid = svc.leave(svc.enter(h), {BAR: 2})["receipt_id"]
    r = svc.client.post("/v1/disputes", json={"receipt_id": rid, "product_id": BAR,
                                              "quantity": 1, "reason": "put one back"},
                        headers=h)
    did = r.json()["dispute_id"]
    r = svc.client.post(f"/v1/disputes/{did}/decision",
                        json={"decision": "reject", "note": "sensors say taken"},
                        headers=svc.gate)
    assert r.status_code == 200 and r.json()["state"] == "rejected", r.text
    assert r.json()["shopper"]["rejected_disputes"] == 1
    status, body = _staff_refund(svc, rid, 1, "the video shows it put back")
    assert status == 200 and body["state"] == "refunded", body
    assert body["dispute_id"] == did and body["refund"]["amount"] == "9.19"
    assert body["shopper"]["rejected_disputes"] == 0  # founded after all
    with svc.deps.sessions() as s:
        note = s.get(Dispute, did).note  # type: ignore[union-attr]
    assert "overrules the rejection" in note and "sensors say taken" in note
    assert _sales(svc) == Decimal("9.19")
    status, body = _staff_refund(svc, rid, 2)  # the other bar too: only what is left
    assert status == 200 and body["quantity"] == 2 and _sales(svc) == 0


def test_a_refused_staff_refund_leaves_no_dispute_behind(svc: Svc) -> None:
    """Nothing was captured (the capture refused): the refund is refused, and no "refunded by
    staff" dispute stays open behind it (it read the receipt "under review", barred her own
    dispute and her erasure)."""
    h = svc.shopper()
    rid = svc.leave(svc.enter(h), {BAR: 1})["receipt_id"]
    with svc.deps.sessions.begin() as s:  # as if the capture had been refused at the exit
        cap = s.scalars(select(Charge).where(Charge.kind == "capture")).one()
        cap.status = "failed"
    status, body = _staff_refund(svc, rid, 1, "goodwill")
    assert (status, body["error"]) == (409, "nothing_captured")
    assert svc.client.get("/v1/disputes", headers=svc.gate).json() == []
    assert svc.client.get(f"/v1/receipts/{rid}", headers=h).json()["under_review"] is False
    r = svc.client.post("/v1/disputes", json={"receipt_id": rid, "product_id": BAR,
                                              "quantity": 1, "reason": "not mine"}, headers=h)
    assert r.status_code == 201, r.text


def test_a_staff_refund_with_the_longest_note_is_made(svc: Svc) -> None:
    """A note of the 1,000 characters allowed (the dispute's reason adds a prefix to it:
    PostgreSQL refused the row, a 500)."""
    rid = svc.leave(svc.enter(svc.shopper()), {BAR: 1})["receipt_id"]
    status, body = _staff_refund(svc, rid, 1, "n" * 1000)
    assert status == 200 and body["state"] == "refunded", body
    assert _sales(svc) == 0


def test_a_review_verdict_listing_a_product_twice_for_a_session_is_refused(svc: Svc) -> None:
    """[[bar, 2], [bar, 1]] for one session: the engine reads a verdict's rows as a mapping
    (the cart would take 1) while the shelves sum them (3), so it is refused, naming the
    product, and nothing is stored."""
    case = {"case_id": "P1-10.000", "t0": 9.0, "t1": 12.0, "reasons": ["ambiguous"],
            "event": {"kind": "pick", "plates": ["p1"], "delta_g": -50.0, "t_start": 10.0,
                      "t_end": 10.5},
            "decided": {"s00001": [[BAR, 1]]}, "sessions": ["s00001"], "credentials": {},
            "hypotheses": [], "hands": [], "weights": None, "skeletons": {},
            "plate_boxes": {}}
    with svc.deps.sessions.begin() as s:
        s.add(EngineEvent(source="sim/evidence", seq=0, kind="case_evidence", t=10.5,
                          ref="P1-10.000", payload=json.dumps(case),
                          recorded_at=svc.clock.now()))
    r = svc.client.post("/v1/ops/reviews/P1-10.000/decision",
                        json={"shares": {"s00001": [[BAR, 2], [BAR, 1]]}}, headers=svc.gate)
    assert r.status_code == 422 and BAR in r.text and "more than once" in r.text, r.text
    with svc.deps.sessions() as s:
        assert s.get(ReviewVerdict, ("sim", "P1-10.000")) is None
    r = svc.client.post("/v1/ops/reviews/P1-10.000/decision",
                        json={"shares": {"s00001": [[BAR, 3]]}}, headers=svc.gate)
    assert r.status_code == 201, r.text
