"""A review revision while a bank chargeback withholds the payment's money, on the real service
and ledger: the bank is returning that money, so the revision neither refunds any of it nor
charges the saved card for it as if it had never been paid; once the chargeback is won (the
provider's webhook event), the difference the revision made is refunded, once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine, select

from walkout.service import revisions, webhooks
from walkout.service.checkout import LineRequest
from walkout.service.models import Charge, Visit
from walkout.service.testing import Svc

from .faults import ChargingLedger, FaultyLedger, start, visit_state

BAR, WATER = "018627032007", "073360771026"  # 9.19 and 7.59 EUR in the `small` store


def _chargeback(svc: Svc, vid: str, n: int, status: str,
                type_: str = "charge.dispute.created") -> webhooks.Received:
    """The provider's event ``evt_<n>`` about a chargeback of the visit's whole payment."""
    with svc.deps.sessions() as s:
        v = s.get(Visit, vid)
        cap = s.scalar(select(Charge).where(Charge.visit_id == vid, Charge.kind == "capture",
                                            Charge.status == "succeeded"))
        assert v is not None and cap is not None
        intent, charge = v.auth_id, cap.provider_ref
    obj = {"id": "dp_1", "object": "dispute", "amount": 1678, "currency": "eur",
           "charge": charge, "payment_intent": intent, "reason": "fraudulent",
           "status": status, "created": 1767225600, "evidence_details": {"due_by": None}}
    ev = webhooks.Event(f"evt_{n}", type_, datetime(2026, 1, 1, n, tzinfo=UTC), False, obj)
    return webhooks.receive(svc.deps, ev, live=False)


def _verdict(svc: Svc, vid: str, product: str, quantity: int) -> None:
    revisions.add_review_lines(svc.deps, vid, [LineRequest(
        f"ev-review:{product}:{quantity:+d}:review", product, quantity, "ev-review")])
    revisions.revise(svc.deps, vid, needs_review=False)


def test_a_revision_during_a_chargeback_charges_nobody_and_refunds_nothing(
        engine: Engine) -> None:
    svc, pay = start(engine, ledger=ChargingLedger)
    with svc.client:
        vid = svc.enter(svc.shopper())
        svc.leave(vid, {BAR: 1, WATER: 1})
        _chargeback(svc, vid, 1, "needs_response")
        assert visit_state(svc, vid) == "disputed"
        revisions.revise(svc.deps, vid, needs_review=False)  # the verdict agrees: a note
        _verdict(svc, vid, WATER, -1)  # the water was not taken
        assert pay.keys("charge") == [] and pay.keys("refund") == []
        assert pay.sales() == Decimal("16.78")
        with svc.deps.sessions() as s:
            v = s.get(Visit, vid)
            assert v is not None and not v.balance_owed


def test_the_difference_a_revision_made_during_a_chargeback_is_refunded_once_it_is_won(
        engine: Engine) -> None:
    svc, pay = start(engine, ledger=FaultyLedger)
    with svc.client:
        vid = svc.enter(svc.shopper())
        svc.leave(vid, {BAR: 1, WATER: 1})
        _chargeback(svc, vid, 1, "needs_response")
        _verdict(svc, vid, WATER, -1)
        assert pay.sales() == Decimal("16.78")  # withheld: nothing refunded meanwhile
        _chargeback(svc, vid, 2, "under_review", "charge.dispute.updated")
        assert pay.keys("refund") == []  # still withheld
        _chargeback(svc, vid, 3, "won", "charge.dispute.closed")
        assert pay.sales() == Decimal("9.19")  # the water, refunded now
        assert len(pay.keys("refund")) == 1
        assert visit_state(svc, vid) == "charged"
        assert _chargeback(svc, vid, 3, "won", "charge.dispute.closed").duplicate
        _chargeback(svc, vid, 4, "won", "charge.dispute.funds_reinstated")
        assert len(pay.keys("refund")) == 1 and pay.sales() == Decimal("9.19")  # once
