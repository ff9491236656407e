"""A review verdict that lands after the receipt was issued: the receipt is revised.

The engine re-issues a session's receipt when a verdict changes it (``Receipt.revision``).
The service keeps the cart ledger append-only here too: the verdict's correcting lines are
appended to the closed visit's cart (unique per line key, so a replay adds nothing), the
receipt's lines and total are re-frozen from the whole ledger, and money follows in the same
three steps as a capture — a pending refund charge of what was captured above the new total,
the provider call outside any transaction with an idempotency key, its record. A verdict that
raises the total cannot capture more from an authorisation already closed: the receipt shows
the new total and the visit stays ``in_review`` for staff to collect the difference.

A revision that changes what the shopper bought or paid is e-mailed to them once: the claim of
that e-mail commits with the revision (``receipting.claim_revision``), the send follows the
refund so the e-mail can say it was made.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal

from sqlalchemy import delete, func, select, update

from walkout.service import checkout, receipting
from walkout.service.carts import cart_total, receipt_lines
from walkout.service.checkout import LineRequest, insert_ignore, visit_lines
from walkout.service.deps import Deps
from walkout.service.errors import ServiceError
from walkout.service.models import CartLine, Charge, Receipt, ReceiptLine, Visit
from walkout.service.money import Money
from walkout.service.payments.base import PaymentError

log = logging.getLogger("walkout.service.revisions")

#: visit states whose receipt was issued and settled: a verdict revises it
SETTLED = ("charged", "released", "in_review", "disputed")


def add_review_lines(d: Deps, visit_id: str, lines: list[LineRequest]) -> int:
    """Append a verdict's correcting lines to a visit, open or settled; returns how many were
    new. (Ordinary lines on a closed visit are still refused by ``checkout.add_lines``.)"""
    with d.sessions() as s:
        v = s.get(Visit, visit_id)
        state = v.state if v else None
    if state == "open":
        return checkout.add_lines(d, visit_id, lines)
    if state not in SETTLED:
        raise ServiceError(409, "visit_not_open", f"visit is {state}: not revisable now")
    products = d.store.products
    now = d.clock.now()
    with d.sessions.begin() as s:
        return insert_ignore(s, CartLine, [
            {"visit_id": visit_id, "line_key": ln.line_key, "product_id": ln.product_id,
             "name": products[ln.product_id].name, "quantity": ln.quantity,
             "unit_price": products[ln.product_id].price, "currency": v.currency,  # type: ignore[union-attr]
             "event_id": ln.event_id, "confidence": ln.confidence, "t": ln.t, "recorded_at": now}
            for ln in lines], ["visit_id", "line_key"])


def revise(d: Deps, visit_id: str, needs_review: bool) -> Money | None:
    """Re-freeze a settled visit's receipt from its ledger; refund what was captured above
    the new total. Returns the refund (None when there was none). A visit still open is
    exited instead (a revision that overtook the first issue, as on a replay)."""
    with d.sessions() as s:
        v0 = s.get(Visit, visit_id)
        state = v0.state if v0 else None
    if state == "open":
        checkout.exit_visit(d, visit_id, needs_review=needs_review, mail=False)
        return None
    if state not in SETTLED:
        return None
    with d.sessions.begin() as s:
        v = s.get(Visit, visit_id, with_for_update=True)
        rec = s.scalar(select(Receipt).where(Receipt.visit_id == visit_id))
        assert v is not None and rec is not None
        before = receipting.load(d, s, rec).doc.lines
        lines = visit_lines(s, visit_id)
        total = cart_total(lines, v.currency)
        s.execute(delete(ReceiptLine).where(ReceiptLine.receipt_id == rec.id))
        s.flush()
        for i, rl in enumerate(receipt_lines(lines, v.currency)):
            s.add(ReceiptLine(receipt_id=rec.id, position=i, product_id=rl.product_id,
                              name=rl.name, quantity=rl.quantity,
                              unit_price=rl.unit_price.amount, amount=rl.amount.amount,
                              events=json.dumps(list(rl.events))))
        rec.total, rec.needs_review = total.amount, needs_review
        cap = s.scalar(select(Charge).where(Charge.visit_id == visit_id,
                                            Charge.kind == "capture",
                                            Charge.status == "succeeded"))
        captured = Money(Decimal(cap.amount), v.currency) if cap else Money.zero(v.currency)
        refunded = Money(Decimal(s.scalar(select(func.coalesce(func.sum(Charge.amount), 0))
                                          .where(Charge.visit_id == visit_id,
                                                 Charge.kind == "refund",
                                                 Charge.status.in_(("pending", "succeeded"))))
                                 or 0), v.currency)
        over = captured - refunded - total
        key = None
        if cap is not None and over.amount > 0:
            n = s.scalar(select(func.count()).select_from(Charge).where(
                Charge.visit_id == visit_id, Charge.kind == "refund",
                Charge.idempotency_key.like(f"visit:{visit_id}:review-refund:%"))) or 0
            key = f"visit:{visit_id}:review-refund:{n}"
            s.add(Charge(visit_id=visit_id, kind="refund", idempotency_key=key,
                         provider=d.provider.name, amount=over.amount, currency=v.currency,
                         status="pending", created_at=d.clock.now()))
        short = total - (captured - refunded)
        if v.state == "in_review" and not needs_review and short.amount <= 0:
            v.state = "charged" if cap is not None else "released"
        if short.amount > 0:
            log.warning("visit %s: the revised receipt is %s above what was captured; the "
                        "authorisation is closed, staff collect it", visit_id, short)
        capture_ref = cap.provider_ref if cap else None
        s.flush()
        mail = receipting.claim_revision(d, s, rec, before,
                                         over.amount if key else Decimal(0), key)
        rid = rec.id
    refund = _refund(d, visit_id, capture_ref, over, key)
    if mail is not None:
        receipting.mail_revision(d, rid, mail, claimed=True)
    return refund


def _refund(d: Deps, visit_id: str, capture_ref: str | None, over: Money,
            key: str | None) -> Money | None:
    """The provider call and its record of a pending review refund (None: none made)."""
    if key is None or capture_ref is None:
        return None
    try:
        ref = d.provider.refund(capture_ref, over, key)
    except PaymentError as e:
        with d.sessions.begin() as s:
            s.execute(update(Charge).where(Charge.idempotency_key == key)
                      .values(status="failed", error=e.reason[:300]))
        log.warning("visit %s: refund after review failed: %s", visit_id, e.reason)
        return None
    with d.sessions.begin() as s:
        s.execute(update(Charge).where(Charge.idempotency_key == key)
                  .values(status="succeeded", provider_ref=ref.refund_id))
    return over
