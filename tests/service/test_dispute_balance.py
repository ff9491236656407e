"""A founded dispute on a visit whose receipt is not fully paid (a balance above the hold, or
a capture refused): its credit comes off what the shopper still owes first, and only the rest
is refunded, so she is never asked to pay for what she contested rightly. Real service and
ledger."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Engine

from walkout.service import checkout, disputes
from walkout.service.errors import ServiceError
from walkout.service.models import Dispute, Visit
from walkout.service.testing import Svc

from .faults import ChargingLedger, charges, start, visit_state

BAR = "018627032007"  # 9.19 EUR: 6 of them are 55.14, above the 50.00 hold


def _dispute(svc: Svc, h: dict[str, str], rid: object, quantity: int) -> dict[str, object]:
    """A dispute of ``quantity`` bars, decided ``refund`` by staff: its summary."""
    r = svc.client.post("/v1/disputes", json={"receipt_id": rid, "product_id": BAR,
                                              "quantity": quantity, "reason": "not mine"},
                        headers=h)
    assert r.status_code == 201, r.text
    r = svc.client.post(f"/v1/disputes/{r.json()['dispute_id']}/decision",
                        json={"decision": "refund"}, headers=svc.gate)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _owed(svc: Svc, vid: str) -> Decimal | None:
    with svc.deps.sessions() as s:
        v = s.get(Visit, vid)
        assert v is not None
        return v.balance_owed


def test_a_dispute_of_the_whole_line_refunds_what_was_paid_and_cancels_the_balance(
        engine: Engine) -> None:
    svc, pay = start(engine, ledger=ChargingLedger)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        pay.fail("charge", "declined")
        out = svc.leave(vid, {BAR: 6})  # 55.14: 50.00 captured, 5.14 owed
        assert out["state"] == "in_review" and _owed(svc, vid) == Decimal("5.14")
        got = _dispute(svc, h, out["receipt_id"], 6)
        assert got["state"] == "refunded"
        assert pay.sales() == 0 and _owed(svc, vid) == 0  # all she paid back, nothing owed
        assert checkout.owed_balances(svc.deps) == []
        assert visit_state(svc, vid) == "charged"
        r = svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h)},
                            headers=svc.gate)
        assert r.status_code == 201, r.text


def test_a_dispute_of_part_of_a_receipt_whose_capture_was_refused_lowers_what_is_owed(
        engine: Engine) -> None:
    svc, pay = start(engine, ledger=ChargingLedger)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        pay.fail("capture", "declined")
        out = svc.leave(vid, {BAR: 2})  # 18.38 owed, nothing taken
        got = _dispute(svc, h, out["receipt_id"], 1)
        assert got["state"] == "refunded"  # credited, no provider call
        assert pay.keys("refund") == [] and _owed(svc, vid) == Decimal("9.19")
        assert checkout.collect_balance(svc.deps, vid)["settled"] is True
        assert pay.sales() == Decimal("9.19")


def test_a_dispute_above_the_balance_refunds_the_rest(engine: Engine) -> None:
    svc, pay = start(engine, ledger=ChargingLedger)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        pay.fail("charge", "declined")
        out = svc.leave(vid, {BAR: 6})  # 5.14 owed
        _dispute(svc, h, out["receipt_id"], 1)  # 9.19: 5.14 off the balance, 4.05 back
        assert _owed(svc, vid) == 0 and pay.sales() == Decimal("45.95")
        assert len(pay.keys("refund")) == 1


def test_a_dispute_that_forgives_a_declined_capture_releases_the_hold(
        engine: Engine) -> None:
    """The capture was declined (the hold may still stand) and a founded dispute takes the
    whole receipt off: nothing is owed, so the hold goes too, once, and is not left on the
    card until it lapses."""
    svc, pay = start(engine, ledger=ChargingLedger)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        pay.fail("capture", "declined")
        out = svc.leave(vid, {BAR: 2})  # 18.38 owed, nothing taken, 50.00 still held
        assert pay.held(svc, vid) == Decimal("50.00")
        _dispute(svc, h, out["receipt_id"], 1)  # 9.19 of it: the rest is still owed
        assert _owed(svc, vid) == Decimal("9.19")
        assert pay.held(svc, vid) == Decimal("50.00")  # still owed: staff may capture it
        again = svc.client.post(  # the same line again: one dispute per line
            "/v1/disputes", json={"receipt_id": out["receipt_id"], "product_id": BAR,
                                  "quantity": 1, "reason": "the other one"}, headers=h)
        assert again.status_code == 409
        checkout.write_off_balance(svc.deps, vid, "op-1")
        assert pay.held(svc, vid) == 0 and pay.sales() == 0
        assert pay.keys("release") == [f"visit:{vid}:hold-release"]
        assert visit_state(svc, vid) == "charged"


def test_a_whole_receipt_forgiven_by_its_dispute_releases_the_hold(engine: Engine) -> None:
    svc, pay = start(engine, ledger=ChargingLedger)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        pay.fail("capture", "declined")
        out = svc.leave(vid, {BAR: 2})
        got = _dispute(svc, h, out["receipt_id"], 2)
        assert got["state"] == "refunded" and _owed(svc, vid) == 0
        assert pay.held(svc, vid) == 0 and pay.sales() == 0
        assert pay.keys("release") == [f"visit:{vid}:hold-release"]
        assert pay.keys("refund") == [] and visit_state(svc, vid) == "charged"


def test_a_second_staff_refund_interrupted_is_finished_with_its_own_key(
        engine: Engine) -> None:
    """More units of a line refunded before, and the provider does not answer: the dispute
    is refunding again, its second refund pending under ``:refund:2``; the next start makes
    it with that key, once, and the first refund is not repeated."""
    svc, pay = start(engine, ledger=ChargingLedger)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        rid = svc.leave(vid, {BAR: 3})["receipt_id"]
        first = disputes.staff_refund(svc.deps, rid, BAR, 1, "op-1", "returned")
        did = first["dispute_id"]
        pay.fail("refund", "down")
        try:
            disputes.staff_refund(svc.deps, rid, BAR, 1, "op-1", "the second one")
            raise AssertionError("the provider's silence was taken for a refund")
        except ServiceError as e:
            assert e.code == "refund_failed"
        assert charges(svc, vid)[-1] == ("refund", f"dispute:{did}:refund:2", "pending")
        assert pay.sales() == Decimal("18.38")
        assert disputes.resume_refunds(svc.deps) == 1
        assert pay.sales() == Decimal("9.19")
        assert pay.keys("refund") == [f"dispute:{did}:refund", f"dispute:{did}:refund:2",
                                      f"dispute:{did}:refund:2"]
        with svc.deps.sessions() as s:
            dsp = s.get(Dispute, did)
            assert dsp is not None
            assert (dsp.state, dsp.quantity, dsp.refund_amount) == (
                "refunded", 2, Decimal("18.38"))
