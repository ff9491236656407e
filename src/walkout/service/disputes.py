"""Disputes: a shopper contests a receipt line, an operator decides with the evidence in view.

A dispute never changes the receipt or the cart ledger: the shopper's word alone removes
nothing. What an operator's refund decision does is one more money movement, through the same
three steps as a capture: (1) a transaction moves the dispute ``open → refunding`` (a
conditional UPDATE, so of two concurrent decisions exactly one wins) and writes a pending refund
charge whose idempotency key is derived from the dispute id; (2) the provider call, outside any
transaction; (3) its record. A crash or provider error in between leaves ``refunding``: deciding
"refund" again (or :func:`resume_refunds`) retries with the same key, so money moves once.
A refund is capped by the line's amount and by what was captured and not yet refunded on the
visit.

The evidence of a line is what the engine logged about the shelf events behind it (the cart
lines' event ids): the shelf event, the decision with every candidate's score (what
``EngineResult.explain`` returns, persisted by the runner), and any review case's summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from walkout.service.clock import aware
from walkout.service.deps import Deps
from walkout.service.errors import ServiceError, not_found
from walkout.service.models import (
    CartLine,
    Charge,
    Dispute,
    EngineEvent,
    Receipt,
    ReceiptLine,
)
from walkout.service.money import Money
from walkout.service.payments.base import PaymentError


@dataclass(frozen=True, slots=True)
class Flag:
    """A shopper's record of unfounded disputes within the configured window."""

    rejected: int
    window_days: int
    flagged: bool


def flag(d: Deps, s: Session, account_id: str) -> Flag:
    """Flagged when at least ``dispute_flag_rejections`` disputes were rejected in the window:
    operators see it beside every dispute of that shopper (it decides nothing by itself)."""
    days = d.settings.dispute_flag_window_days
    since = d.clock.now() - timedelta(days=days)
    n = s.scalar(select(func.count()).select_from(Dispute).where(
        Dispute.account_id == account_id, Dispute.state == "rejected",
        Dispute.resolved_at >= since)) or 0
    return Flag(n, days, n >= d.settings.dispute_flag_rejections)


def summary(d: Deps, s: Session, dsp: Dispute) -> dict[str, Any]:
    f = flag(d, s, dsp.account_id)
    return {
        "dispute_id": dsp.id, "receipt_id": dsp.receipt_id, "product_id": dsp.product_id,
        "quantity": dsp.quantity, "state": dsp.state, "created_at": aware(dsp.created_at)
        .isoformat(),
        "refund": None if dsp.refund_amount is None else {
            "amount": str(Money(Decimal(dsp.refund_amount), _currency(s, dsp)).amount),
            "currency": _currency(s, dsp)},
        "shopper": {"account_id": dsp.account_id, "rejected_disputes": f.rejected,
                    "window_days": f.window_days, "flagged": f.flagged},
    }


def _currency(s: Session, dsp: Dispute) -> str:
    rec = s.get(Receipt, dsp.receipt_id)
    assert rec is not None
    return rec.currency


def case(d: Deps, dispute_id: str) -> dict[str, Any]:
    """The operator's view: the dispute, the shopper's flag, the line and its evidence."""
    with d.sessions() as s:
        dsp = s.get(Dispute, dispute_id)
        if dsp is None:
            raise not_found("dispute")
        rec = s.get(Receipt, dsp.receipt_id)
        assert rec is not None
        line = s.scalar(select(ReceiptLine).where(ReceiptLine.receipt_id == rec.id,
                                                  ReceiptLine.product_id == dsp.product_id))
        assert line is not None
        cart = s.scalars(select(CartLine).where(CartLine.visit_id == rec.visit_id,
                                                CartLine.product_id == dsp.product_id)
                         .order_by(CartLine.id)).all()
        refs = sorted({c.event_id for c in cart})
        logged = s.scalars(select(EngineEvent).where(EngineEvent.ref.in_(refs))
                           .order_by(EngineEvent.t, EngineEvent.id)).all() if refs else []
        out = summary(d, s, dsp)
        out["reason"] = dsp.reason
        out["note"] = dsp.note
        cur = rec.currency
        out["line"] = {"name": line.name, "quantity": line.quantity,
                       "unit_price": str(Money(Decimal(line.unit_price), cur).amount),
                       "amount": str(Money(Decimal(line.amount), cur).amount), "currency": cur}
        out["evidence"] = [{
            "event_id": ev_id,
            "cart_lines": [{"line_key": c.line_key, "quantity": c.quantity,
                            "confidence": c.confidence, "t": c.t}
                           for c in cart if c.event_id == ev_id],
            "log": [{"kind": e.kind, "source": e.source, "t": e.t,
                     "data": json.loads(e.payload)} for e in logged if e.ref == ev_id],
        } for ev_id in refs]
        out["min_confidence"] = min((c.confidence for c in cart), default=None)
        return out


def decide(d: Deps, dispute_id: str, operator_id: str, decision: str,
           note: str | None) -> dict[str, Any]:
    """Refund the contested quantity through the provider, or reject; once per dispute."""
    now = d.clock.now()
    with d.sessions.begin() as s:
        dsp = s.get(Dispute, dispute_id, with_for_update=True)
        if dsp is None:
            raise not_found("dispute")
        if dsp.state == "refunding" and decision == "refund":
            pass  # a retry of an interrupted refund: same key, same amount
        elif dsp.state != "open":
            raise ServiceError(409, "already_decided", f"this dispute was already decided: "
                               f"{dsp.state}")
        elif decision == "reject":
            s.execute(update(Dispute).where(Dispute.id == dispute_id, Dispute.state == "open")
                      .values(state="rejected", resolved_at=now, decided_by=operator_id,
                              note=note))
        else:
            amount, visit_id = _refundable(s, dsp)
            won = s.execute(update(Dispute).where(Dispute.id == dispute_id,
                                                  Dispute.state == "open")
                            .values(state="refunding", decided_by=operator_id, note=note,
                                    refund_amount=amount.amount)).rowcount
            if won != 1:
                raise ServiceError(409, "already_decided", "this dispute was decided meanwhile")
            s.add(Charge(visit_id=visit_id, kind="refund", idempotency_key=_key(dispute_id),
                         provider=d.provider.name, amount=amount.amount,
                         currency=amount.currency, status="pending", created_at=now))
    if decision == "refund":
        _refund(d, dispute_id)
    with d.sessions() as s:
        dsp = s.get(Dispute, dispute_id)
        assert dsp is not None
        return summary(d, s, dsp)


def _key(dispute_id: str) -> str:
    return f"dispute:{dispute_id}:refund"


def _refundable(s: Session, dsp: Dispute) -> tuple[Money, str]:
    """The contested units at the line's price, capped by the line's amount and by what the
    visit's capture still holds after earlier refunds (the capture may be below the total when
    the hold was smaller than the cart)."""
    rec = s.get(Receipt, dsp.receipt_id)
    assert rec is not None
    cur = rec.currency
    line = s.scalar(select(ReceiptLine).where(ReceiptLine.receipt_id == rec.id,
                                              ReceiptLine.product_id == dsp.product_id))
    assert line is not None
    cap = s.scalar(select(Charge).where(Charge.visit_id == rec.visit_id,
                                        Charge.kind == "capture", Charge.status == "succeeded"))
    if cap is None:
        raise ServiceError(409, "nothing_captured",
                           "nothing was captured for this visit: there is nothing to refund")
    refunded = s.scalar(select(func.coalesce(func.sum(Charge.amount), 0)).where(
        Charge.visit_id == rec.visit_id, Charge.kind == "refund",
        Charge.status.in_(("pending", "succeeded")))) or 0
    want = Money(Decimal(line.unit_price), cur) * min(dsp.quantity, line.quantity)
    caps = [Money(Decimal(line.amount), cur),
            Money(Decimal(cap.amount), cur) - Money(Decimal(refunded), cur)]
    amount = min([want, *caps], key=lambda m: m.amount)
    if amount.amount <= 0:
        raise ServiceError(409, "nothing_captured", "everything captured was refunded already")
    return amount, rec.visit_id


def _refund(d: Deps, dispute_id: str) -> None:
    key = _key(dispute_id)
    with d.sessions() as s:
        ch = s.scalar(select(Charge).where(Charge.idempotency_key == key))
        assert ch is not None
        cap = s.scalar(select(Charge).where(Charge.visit_id == ch.visit_id,
                                            Charge.kind == "capture",
                                            Charge.status == "succeeded"))
        assert cap is not None and cap.provider_ref is not None
        amount, capture_ref = Money(Decimal(ch.amount), ch.currency), cap.provider_ref
    try:
        ref = d.provider.refund(capture_ref, amount, key)
    except PaymentError as e:
        with d.sessions.begin() as s:
            s.execute(update(Charge).where(Charge.idempotency_key == key)
                      .values(status="failed", error=e.reason[:300]))
        raise ServiceError(502, "refund_failed",
                           f"the payment provider refused the refund: {e.reason}; deciding "
                           "'refund' again retries it") from None
    now = d.clock.now()
    with d.sessions.begin() as s:
        s.execute(update(Charge).where(Charge.idempotency_key == key)
                  .values(status="succeeded", provider_ref=ref.refund_id, error=None))
        s.execute(update(Dispute).where(Dispute.id == dispute_id, Dispute.state == "refunding")
                  .values(state="refunded", resolved_at=now))


def resume_refunds(d: Deps) -> int:
    """Finish refunds a crash or a provider outage left between the decision and its record."""
    with d.sessions() as s:
        ids = list(s.scalars(select(Dispute.id).where(Dispute.state == "refunding")))
    done = 0
    for dispute_id in ids:
        try:
            _refund(d, dispute_id)
            done += 1
        except ServiceError:
            pass  # recorded as failed on the charge; an operator retries
    return done

