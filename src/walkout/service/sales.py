"""Sales figures for the operator: visits, conversion, baskets and money, per day of the store.

A store's day is its own (``Store.timezone``): a visit at 23:30 in Paris belongs to that
evening's day, not to the next UTC one, and a day with a clock change has 23 or 25 hours.
Three clocks are kept apart on purpose:

- **what shoppers did** (visits, buyers, items, receipts' totals, review, visit times) is
  counted on the day the visit *entered*, from the receipt as it stands now (after every review
  revision), so a basket is counted once, whole, where it happened;
- **money** is counted on the day it *moved*: captures and refunds the provider confirmed
  (``succeeded``), on the day walkout recorded the confirmation (``settled_at``: a capture
  tried during an outage at 21:00 and confirmed by a retry the next morning is the next
  day's), so the figures agree with the provider's statement. A refund decided today
  for last week's visit lowers today's net, not last week's sales. Pending or failed charges
  are not money.
- **bank chargebacks** (``chargebacks``, from the provider's webhook) count on the day the bank
  acted: one is *opened* on the day the bank opened it, and its money is *lost* on the day
  the bank decided against the store (the provider's event closing it as ``lost``): only
  then is it no longer revenue (``net_after_chargebacks``). Until it is decided its amount is
  *at risk*, shown on the day it was opened and not subtracted: the store may still win it.
  (Stripe's balance withdraws the amount when the chargeback opens and returns it if the
  store wins.) The provider's *fee* for a chargeback is a cost whether it is won or lost:
  it counts on the day the chargeback was opened (when Stripe takes it, with the amount),
  as it stands now (net of a fee given back on a win, which Stripe does in some regions
  only), and leaves ``net_after_chargebacks`` at once; a fee in a currency other than the
  report's is not counted. Inquiries (``warning_*``: the bank asks, no money moves) are not
  chargebacks and count nowhere.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from walkout.checkout.money import Money
from walkout.service.clock import aware
from walkout.service.models import Charge, Chargeback, Dispute, Receipt, ReceiptLine, Visit

#: visit states that are not a shopper in the store (the gate turned them away)
_NOT_ADMITTED = ("refused", "authorizing")
#: chargeback states in which the bank has not decided yet: the money is withheld, at risk
_UNDECIDED = ("needs_response", "under_review")


@dataclass
class _Day:
    visits: int = 0
    shoppers: int = 0
    buyers: int = 0
    items: int = 0
    receipts: Money | None = None
    captured: Money | None = None
    refunded: Money | None = None
    in_review: int = 0
    disputes: int = 0
    chargebacks: int = 0
    at_risk: Money | None = None
    lost: Money | None = None
    fees: Money | None = None
    minutes: list[float] = field(default_factory=list)


def _amt(m: Money) -> str:
    """The amount as a decimal string (the report names its currency once)."""
    return str(m.amount)


def local_bounds(zone: ZoneInfo, first: date, last: date) -> tuple[datetime, datetime]:
    """UTC instants of the start of ``first`` and of the day after ``last``, in ``zone``."""
    def start(d: date) -> datetime:
        return datetime.combine(d, time(0), zone).astimezone(UTC)
    return start(first), start(last + timedelta(days=1))


def sales_report(s: Session, *, zone: ZoneInfo, currency: str, first: date, last: date,
                 names: dict[str, str] | None = None, top: int = 10) -> dict[str, Any]:
    """Per-day figures for the store's days ``first``..``last`` (inclusive), their totals,
    entries per hour of the day, and the ``top`` products by quantity sold."""
    if last < first:
        raise ValueError(f"the period ends ({last}) before it starts ({first})")
    lo, hi = local_bounds(zone, first, last)
    zero = Money.zero(currency)
    days = {first + timedelta(days=i): _Day() for i in range((last - first).days + 1)}
    hours = [0] * 24

    def day_of(t: datetime) -> _Day | None:
        return days.get(aware(t).astimezone(zone).date())

    visits = list(s.execute(
        select(Visit.id, Visit.entered_at, Visit.exited_at, Visit.party_size, Visit.state)
        .where(Visit.entered_at >= lo, Visit.entered_at < hi,
               Visit.state.not_in(_NOT_ADMITTED))))
    receipts = {r.visit_id: r for r in s.scalars(
        select(Receipt).where(Receipt.visit_id.in_([v.id for v in visits])))} if visits else {}
    lines: dict[str, list[ReceiptLine]] = defaultdict(list)
    if receipts:
        for ln in s.scalars(select(ReceiptLine).where(
                ReceiptLine.receipt_id.in_([r.id for r in receipts.values()]))):
            lines[ln.receipt_id].append(ln)
    qty: Counter[str] = Counter()
    amount: dict[str, Money] = defaultdict(lambda: zero)
    for vid, entered, exited, party, state in visits:
        d = day_of(entered)
        if d is None:
            continue
        hours[aware(entered).astimezone(zone).hour] += 1
        d.visits += 1
        d.shoppers += party
        if exited is not None:
            d.minutes.append((aware(exited) - aware(entered)).total_seconds() / 60.0)
        rec = receipts.get(vid)
        if rec is None:
            continue
        tot = Money.of(rec.total, currency)
        d.receipts = (d.receipts or zero) + tot
        d.buyers += not tot.is_zero
        d.in_review += bool(rec.needs_review) or state == "in_review"
        for ln in lines[rec.id]:
            d.items += ln.quantity
            qty[ln.product_id] += ln.quantity
            amount[ln.product_id] += Money.of(ln.amount, currency)
    moved = func.coalesce(Charge.settled_at, Charge.created_at)  # confirmed (before 0014: made)
    for kind, amt, when in s.execute(
            select(Charge.kind, Charge.amount, moved)
            .where(Charge.kind.in_(("capture", "refund")), Charge.status == "succeeded",
                   moved >= lo, moved < hi)):
        d = day_of(when)
        if d is None:
            continue
        m = Money.of(amt, currency)
        if kind == "capture":
            d.captured = (d.captured or zero) + m
        else:
            d.refunded = (d.refunded or zero) + m
    for (created,) in s.execute(select(Dispute.created_at).where(
            Dispute.created_at >= lo, Dispute.created_at < hi)):
        d = day_of(created)
        if d is not None:
            d.disputes += 1
    for status, amt, opened, closed, fee, fee_currency in s.execute(
            select(Chargeback.status, Chargeback.amount, Chargeback.opened_at,
                   Chargeback.closed_at, Chargeback.fee, Chargeback.fee_currency)
            .where(Chargeback.currency == currency,
                   or_(and_(Chargeback.opened_at >= lo, Chargeback.opened_at < hi),
                       and_(Chargeback.closed_at >= lo, Chargeback.closed_at < hi)))):
        if status.startswith("warning_"):
            continue  # an inquiry: no money moved, no chargeback (yet)
        m = Money.of(amt, currency)
        d = day_of(opened)
        if d is not None:
            d.chargebacks += 1
            if status in _UNDECIDED:
                d.at_risk = (d.at_risk or zero) + m
            if fee is not None and fee_currency == currency:
                d.fees = (d.fees or zero) + Money.of(fee, currency)
        d = day_of(closed) if status == "lost" and closed is not None else None
        if d is not None:
            d.lost = (d.lost or zero) + m

    def row(d: _Day) -> dict[str, Any]:
        receipts_total, captured, refunded = (d.receipts or zero, d.captured or zero,
                                              d.refunded or zero)
        lost, fees = d.lost or zero, d.fees or zero
        return {
            "visits": d.visits, "shoppers": d.shoppers, "buyers": d.buyers,
            "conversion": round(d.buyers / d.visits, 4) if d.visits else None,
            "items": d.items, "receipts_total": _amt(receipts_total),
            "avg_basket": _amt(Money.of(receipts_total.amount / d.buyers, currency))
            if d.buyers else None,
            "captured": _amt(captured), "refunded": _amt(refunded),
            "net": _amt(captured - refunded),
            "in_review": d.in_review, "disputes": d.disputes,
            "chargebacks": d.chargebacks, "chargebacks_at_risk": _amt(d.at_risk or zero),
            "chargebacks_lost": _amt(lost), "chargeback_fees": _amt(fees),
            "net_after_chargebacks": _amt(captured - refunded - lost - fees),
            "visit_minutes_median": round(statistics.median(d.minutes), 1)
            if d.minutes else None,
        }

    whole = _Day()
    for d in days.values():
        for k in ("visits", "shoppers", "buyers", "items", "in_review", "disputes",
                  "chargebacks"):
            setattr(whole, k, getattr(whole, k) + getattr(d, k))
        whole.minutes += d.minutes
        for k in ("receipts", "captured", "refunded", "at_risk", "lost", "fees"):
            v = getattr(d, k)
            if v is not None:
                setattr(whole, k, (getattr(whole, k) or zero) + v)
    names = names or {}
    return {
        "timezone": zone.key, "currency": currency,
        "first": first.isoformat(), "last": last.isoformat(),
        "days": [{"date": k.isoformat(), **row(d)} for k, d in days.items()],
        "totals": row(whole),
        "entries_by_hour": hours,
        "top_products": [{"product_id": pid, "name": names.get(pid, pid), "quantity": q,
                          "amount": _amt(amount[pid])}
                         for pid, q in sorted(qty.items(), key=lambda kv: (-kv[1], kv[0]))
                         if q > 0][:top],
    }
