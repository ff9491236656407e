"""Disputes: a shopper contests a receipt line, an operator decides with the evidence in view.

A dispute never changes the receipt or the cart ledger: the shopper's word alone removes
nothing. What an operator's refund decision does is one more money movement, through the same
three steps as a capture: (1) a transaction moves the dispute ``open → refunding`` (a
conditional UPDATE, so of two concurrent decisions exactly one wins) and writes a pending refund
charge whose idempotency key is derived from the dispute id; (2) the provider call, outside any
transaction; (3) its record. A crash or provider error in between leaves ``refunding`` and the
charge pending — the money stays reserved, whatever the last attempt said, since the refund may
have gone through with its answer lost: deciding "refund" again (or :func:`resume_refunds`)
retries with the same key, so money moves once. A refund is capped by the line's amount and by
what was captured and not yet refunded (or reserved for a refund) on the visit.

A review verdict that revises the receipt (``revisions.revise``) and a dispute of the same line
are taken to be about the same units: the units the revision cut answer the dispute first
(:func:`follow_revision`). An open dispute shrinks by them, and one with nothing left is
``corrected`` (the revision refunded it; it does not count against the shopper); a refunded one
no longer credits the units the revision itself took off the receipt. Either order of the two
therefore refunds a unit once.

The evidence of a line is what the engine logged about the shelf events behind it (the cart
lines' event ids): the shelf event, the decision with every candidate's score (what
``EngineResult.explain`` returns, persisted by the runner), any review case's summary, and the
verdict that settled it (:func:`reviews`: who decided, when, why). A shelf event's id is
``<plate>-<stream time>``, so another engine stream served into the database (a recording's
clock starts at 0 each time) may have an event, a case and a verdict of the same id: a line's
evidence is read from its visit's stream only (:func:`streams_of`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from walkout.checkout.money import Money
from walkout.service.balances import balance_in_flight, release_refused_hold
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
    ReviewVerdict,
    Visit,
)
from walkout.service.payments.base import PaymentError
from walkout.service.payments.reported import chargeback_total, withheld_chargebacks

log = logging.getLogger("walkout.service.disputes")

#: how the reason of a refund staff made of their own accord begins (no dispute of hers)
STAFF_REFUND = "refunded by staff: "


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


def streams_of(s: Session, visit_id: str, refs: list[str]) -> list[str] | None:
    """The engine streams whose event log the visit's shelf events ``refs`` are read from.

    Where the log has ``refs`` in one stream, that one; where several streams have events of
    these ids, those whose gate admitted the visit (their entry row names its credential);
    where that no longer tells (the shopper was erased, the gate rows were purged), all of
    them, as before streams were told apart. None: the log has none of ``refs`` any more (the
    retention purge): any stream's verdict of these ids."""
    streams = sorted({src.rpartition("/")[0] for src in s.scalars(
        select(EngineEvent.source).distinct().where(EngineEvent.ref.in_(refs)))}) if refs else []
    if len(streams) <= 1:
        return streams or None
    cred = s.scalar(select(Visit.credential).where(Visit.id == visit_id))
    if cred is None or cred.startswith("erased:"):
        return streams
    said = json.dumps({"credential": cred})[1:-1]  # as the runner's gate rows write it
    admitted = sorted({src.rpartition("/")[0] for src in s.scalars(
        select(EngineEvent.source).where(
            EngineEvent.source.in_([f"{st}/gates" for st in streams]),
            EngineEvent.kind == "entry", EngineEvent.payload.contains(said, autoescape=True)))})
    return admitted or streams


def reviews(s: Session, refs: list[str], streams: list[str] | None = None
            ) -> dict[str, dict[str, Any]]:
    """The review of each of ``refs`` (shelf event ids) that had a case in one of ``streams``
    (None: any; see :func:`streams_of`): its state and the verdict with who decided it, when
    and why. A line a verdict changed carries the engine's decision and the correcting line
    under the same event id: without this its evidence reads as the engine's uncertain guess,
    with nothing to say that a person settled it."""
    if not refs:
        return {}
    case_q = select(EngineEvent.ref).where(
        EngineEvent.ref.in_(refs), EngineEvent.kind.in_(("review_case", "case_evidence")))
    verdict_q = select(ReviewVerdict).where(ReviewVerdict.case_id.in_(refs))
    if streams is not None:
        case_q = case_q.where(EngineEvent.source.in_(
            [f"{st}/{sub}" for st in streams for sub in ("cases", "evidence")]))
        verdict_q = verdict_q.where(ReviewVerdict.source.in_(streams))
    cased = set(s.scalars(case_q))
    verdicts = {v.case_id: v for v in s.scalars(verdict_q.order_by(ReviewVerdict.decided_at))}
    out: dict[str, dict[str, Any]] = {}
    for ref in sorted(cased | set(verdicts)):
        v = verdicts.get(ref)
        out[ref] = {"case_id": ref, "state": "open" if v is None else
                    "applied" if v.applied_at is not None else "decided",
                    "verdict": None if v is None else {
                        "shares": json.loads(v.shares), "decided_by": v.decided_by,
                        "decided_at": aware(v.decided_at).isoformat(), "note": v.note}}
    return out


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
        cart = s.scalars(select(CartLine).where(CartLine.visit_id == rec.visit_id,
                                                CartLine.product_id == dsp.product_id)
                         .order_by(CartLine.id)).all()
        refs = sorted({c.event_id for c in cart})
        streams = streams_of(s, rec.visit_id, refs)
        logged = s.scalars(select(EngineEvent).where(EngineEvent.ref.in_(refs))
                           .order_by(EngineEvent.t, EngineEvent.id)).all() if refs else []
        if streams is not None:
            logged = [e for e in logged if e.source.rpartition("/")[0] in streams]
        out = summary(d, s, dsp)
        out["reason"] = dsp.reason
        out["note"] = dsp.note
        cur = rec.currency
        # None: a review revision removed the line since (the dispute is corrected, or moot)
        out["line"] = None if line is None else {
            "name": line.name, "quantity": line.quantity,
            "unit_price": str(Money(Decimal(line.unit_price), cur).amount),
            "amount": str(Money(Decimal(line.amount), cur).amount), "currency": cur}
        review = reviews(s, refs, streams)
        out["evidence"] = [{
            "event_id": ev_id, "review": review.get(ev_id),
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
    with d.sessions.begin() as s:
        dsp = s.get(Dispute, dispute_id, with_for_update=True)
        if dsp is None:
            raise not_found("dispute")
        refund, mail = _decide(d, s, dsp, operator_id, decision, note)
    return _after(d, dispute_id, refund, mail)


def staff_refund(d: Deps, receipt_id: str, product_id: str, quantity: int, operator_id: str,
                 note: str) -> dict[str, Any]:
    """Refund ``quantity`` of a line on the store's own initiative: a dispute the operator
    opens and decides at once (the same capped, idempotent refund as a shopper's), in one
    transaction, so a refusal leaves no dispute behind. The line's open dispute, if the
    shopper opened one, is decided for the quantity staff found (their finding, not her
    claim); one staff rejected before is overruled so (new evidence); one refunded before
    refunds ``quantity`` more units (the shopper brings back a second one unopened), under the
    dispute's next refund key. 404 no receipt; 422 ``no_such_line``; 409 ``already_disputed``
    (every unit refunded already, or corrected by a review), or the decision's own
    refusals."""
    with d.sessions.begin() as s:
        r = s.get(Receipt, receipt_id)
        v = s.get(Visit, r.visit_id) if r else None
        if r is None or v is None:
            raise not_found("receipt")
        line = s.scalar(select(ReceiptLine).where(ReceiptLine.receipt_id == r.id,
                                                  ReceiptLine.product_id == product_id))
        if line is None:
            raise ServiceError(422, "no_such_line",
                               f"receipt has no line for product {product_id!r}")
        dsp = s.scalar(select(Dispute).where(Dispute.receipt_id == r.id,
                                             Dispute.product_id == product_id)
                       .with_for_update())
        more = 0
        if dsp is None:
            dsp = Dispute(receipt_id=r.id, account_id=v.account_id, product_id=product_id,
                          quantity=min(quantity, line.quantity),
                          reason=f"{STAFF_REFUND}{note}"[:1000], state="open",
                          created_at=d.clock.now())
            s.add(dsp)
            try:
                s.flush()
            except IntegrityError:  # the shopper disputed it at the same moment
                raise ServiceError(409, "already_disputed", "the shopper has just disputed "
                                   "this line: decide her dispute") from None
        elif dsp.state in ("open", "rejected"):
            if dsp.state == "rejected":
                # staff overrule their own rejection (new evidence: the video, a count of the
                # shelf): the shopper's dispute is founded after all, so it no longer counts
                # against her; who rejected it, and why, stays in the decision's note
                when = aware(dsp.resolved_at).isoformat() if dsp.resolved_at else "?"
                note = (f"{note} [overrules the rejection by {dsp.decided_by} at {when}: "
                        f"{dsp.note or 'no note'}]")[:1000]
                log.warning("dispute %s: its rejection is overruled by %s", dsp.id,
                            operator_id)
                dsp.state, dsp.resolved_at = "open", None
            dsp.quantity = min(quantity, line.quantity)
        elif dsp.state == "refunded":
            more = min(quantity, line.quantity - dsp.quantity)
            if more <= 0:
                raise ServiceError(409, "already_disputed", f"all {line.quantity} unit(s) of "
                                   "this line were refunded already")
        else:
            raise ServiceError(409, "already_disputed", f"this line's dispute was already "
                               f"decided ({dsp.state}, {dsp.quantity} unit(s)): a line is "
                               "refunded through one dispute")
        refund, mail = _decide(d, s, dsp, operator_id, "refund", note, more=more)
        dispute_id = dsp.id
    return _after(d, dispute_id, refund, mail)


def _decide(d: Deps, s: Session, dsp: Dispute, operator_id: str, decision: str,
            note: str | None, *, more: int = 0) -> tuple[bool, int | None]:
    """The decision, inside the caller's transaction (``dsp`` locked): whether a refund is
    to be made through the provider now (its pending charges are written), and the number of
    the e-mail claimed to answer the shopper (None: none). ``more``: staff refund that many
    units more of a dispute refunded before."""
    from walkout.service import receipting  # receipting reads disputes' refunds

    now = d.clock.now()
    if dsp.state == "refunding" and decision == "refund":
        return True, None  # a retry of an interrupted refund: same key, same amount
    again = more > 0 and dsp.state == "refunded"
    if dsp.state == "corrected":
        raise ServiceError(409, "already_decided", "a review verdict already took the "
                           "contested items off the receipt (and refunded them if they "
                           "were paid): nothing is left to decide")
    if dsp.state != "open" and not again:
        raise ServiceError(409, "already_decided", f"this dispute was already decided: "
                           f"{dsp.state}")
    if decision == "reject":
        s.execute(update(Dispute).where(Dispute.id == dsp.id, Dispute.state == "open")
                  .values(state="rejected", resolved_at=now, decided_by=operator_id,
                          note=note))
        return False, receipting.claim_dispute(
            d, s, dsp, refunded=False, refund=Decimal(0), refund_key=None, credit=Decimal(0),
            quantity=dsp.quantity)
    amount, unpaid, visit_id = _refundable(s, dsp, more if again else None)
    # the credit comes off what she still owes first: only the rest is paid back
    credit = amount + unpaid
    before = Decimal(dsp.refund_amount or 0) if again else Decimal(0)
    if again:
        note = f"{note} [after {dsp.quantity} unit(s) refunded by {dsp.decided_by}: " \
               f"{dsp.note or 'no note'}]"[:1000]
    won = s.execute(update(Dispute).where(Dispute.id == dsp.id, Dispute.state == dsp.state)
                    .values(state="refunding" if amount.amount > 0 else "refunded",
                            resolved_at=None if amount.amount > 0 else now,
                            decided_by=operator_id, note=note,
                            quantity=dsp.quantity + (more if again else 0),
                            refund_amount=before + credit.amount)).rowcount
    if won != 1:
        raise ServiceError(409, "already_decided", "this dispute was decided meanwhile")
    if unpaid.amount > 0:
        _forgive(s, visit_id, unpaid)
    key = _next_key(s, dsp.id) if amount.amount > 0 else None
    if key is not None:
        add_refund(d, s, visit_id, key, amount, now)
    mail = receipting.claim_dispute(
        d, s, dsp, refunded=True, refund=amount.amount, refund_key=key, credit=unpaid.amount,
        quantity=more if again else dsp.quantity)
    return key is not None, mail  # credited alone: nothing to pay back through the provider


def _after(d: Deps, dispute_id: str, refund: bool, mail: int | None = None
           ) -> dict[str, Any]:
    """Steps 2-3 of the decided refund (``refund``), the e-mail answering the shopper
    (``mail``, claimed with the decision: sent also when the refund is not confirmed yet, it
    then says it is being made), then the dispute as it stands."""
    from walkout.service import receipting  # receipting reads disputes' refunds

    try:
        if refund:
            _refund(d, dispute_id)
    finally:
        if mail is not None:
            with d.sessions() as s:
                rid = s.scalar(select(Dispute.receipt_id).where(Dispute.id == dispute_id))
            if rid is not None:
                receipting.mail_revision(d, rid, mail, claimed=True)
    with d.sessions() as s:
        visit_id = s.scalar(select(Receipt.visit_id).join(
            Dispute, Dispute.receipt_id == Receipt.id).where(
            Dispute.id == dispute_id, Dispute.state.in_(("refunding", "refunded"))))
    if visit_id is not None:
        release_refused_hold(d, visit_id)  # the credit may have cleared what was owed
    with d.sessions() as s:
        dsp = s.get(Dispute, dispute_id)
        assert dsp is not None
        return summary(d, s, dsp)


def _key(dispute_id: str) -> str:
    return f"dispute:{dispute_id}:refund"


def _next_key(s: Session, dispute_id: str) -> str:
    """The key of the dispute's next refund: ``dispute:<id>:refund``, then (more units
    refunded later) ``dispute:<id>:refund:<n>``; its parts add ``@<capture>``."""
    base = _key(dispute_id)
    made = {k.split("@")[0] for k in s.scalars(select(Charge.idempotency_key).where(
        Charge.idempotency_key.like(f"{base}%")))}
    return base if not made else f"{base}:{len(made) + 1}"


def _forgive(s: Session, visit_id: str, unpaid: Money) -> None:
    """Take a founded dispute's credit off the visit's balance still owed (in the decision's
    transaction): the shopper is not asked to pay for what she contested rightly. Nothing left
    owed, a visit in review only for want of the money is ``charged``."""
    v = s.get(Visit, visit_id, with_for_update=True)
    assert v is not None and v.balance_owed is not None
    v.balance_owed = max(Decimal(v.balance_owed) - unpaid.amount, Decimal(0))
    needs_review = s.scalar(select(Receipt.needs_review).where(Receipt.visit_id == visit_id))
    if v.balance_owed == 0 and v.state == "in_review" and not needs_review:
        v.state = "charged"
    log.info("visit %s: a founded dispute took %s off its balance owed", visit_id, unpaid)


def _refundable(s: Session, dsp: Dispute, more: int | None = None
                ) -> tuple[Money, Money, str]:
    """What a founded dispute gives back: the contested units at the line's price, capped by
    the line's amount, as (paid back through the provider, taken off the balance still owed,
    the visit). The balance goes first: of a receipt not fully paid, the contested units
    are what was not paid; the refund is capped by what the visit's captures still hold
    after earlier refunds. ``more``: that many units more of a dispute refunded before,
    capped by what its earlier refund left of the line (as a revision counts it)."""
    rec = s.get(Receipt, dsp.receipt_id)
    assert rec is not None
    cur = rec.currency
    line = s.scalar(select(ReceiptLine).where(ReceiptLine.receipt_id == rec.id,
                                              ReceiptLine.product_id == dsp.product_id))
    if line is None:
        raise ServiceError(409, "line_revised", "a review verdict removed this line from the "
                           "receipt (refunding it if it was paid): there is nothing to refund")
    caps = captures(s, rec.visit_id)
    for cb in withheld_chargebacks(s, rec.visit_id):  # the bank returns it: never twice
        raise ServiceError(409, "chargeback", f"the shopper's bank has a chargeback of this "
                           f"payment ({cb.id}, {cb.status}): the bank returns the money, so "
                           "walkout refunds nothing of it (see GET /v1/ops/chargebacks)")
    price, whole = Money(Decimal(line.unit_price), cur), Money(Decimal(line.amount), cur)
    if more is None:
        want = min(price * min(dsp.quantity, line.quantity), whole, key=lambda m: m.amount)
    else:
        standing = min(Money(Decimal(dsp.refund_amount or 0), cur), price * dsp.quantity,
                       key=lambda m: m.amount)
        want = min(price * more, whole - standing, key=lambda m: m.amount)
    v = s.get(Visit, rec.visit_id)
    assert v is not None
    owed = Money(Decimal(v.balance_owed or 0), cur)
    if owed.amount > 0 and v.balance_settled_at is None:
        if balance_in_flight(s, v.id):
            raise ServiceError(409, "balance_collecting",
                               "a charge of this visit's balance is in flight: its outcome "
                               "comes first (retried on the service's timer)")
        unpaid = min(want, owed, key=lambda m: m.amount)
    else:
        unpaid = Money.zero(cur)
    left = captured(s, rec.visit_id, cur) - committed_refunds(s, rec.visit_id, cur)
    amount = min(want - unpaid, max(left, Money.zero(cur)), key=lambda m: m.amount)
    if amount.amount <= 0 and unpaid.amount <= 0:
        raise ServiceError(409, "nothing_captured",
                           "nothing was captured for this visit: there is nothing to refund"
                           if not caps else "everything captured was refunded already")
    return amount, unpaid, rec.visit_id


def committed_refunds(s: Session, visit_id: str, currency: str) -> Money:
    """Refunds made or still owed on a visit (:func:`refunds_made`) and what open or lost bank
    chargebacks return. What is left of a capture to refund is the capture less this."""
    return refunds_made(s, visit_id, currency) + chargeback_total(s, visit_id, currency)


def refunds_made(s: Session, visit_id: str, currency: str) -> Money:
    """Money given back by refunds, made or still owed: every dispute refund (decided, so
    retried with its key until it is made, whatever its last attempt said), every review
    refund not refused outright, refunds made outside walkout (the provider's webhook). Not a
    bank chargeback: what it withholds may come back to the store."""
    n = s.scalar(select(func.coalesce(func.sum(Charge.amount), 0)).where(
        Charge.visit_id == visit_id, Charge.kind == "refund",
        or_(Charge.status.in_(("pending", "succeeded")),
            Charge.idempotency_key.like("dispute:%")))) or 0
    return Money(Decimal(n), currency)


def captures(s: Session, visit_id: str) -> list[Charge]:
    """The visit's succeeded captures: the hold's, and a balance charged above it
    (:mod:`walkout.service.checkout`), oldest first."""
    return list(s.scalars(select(Charge).where(
        Charge.visit_id == visit_id, Charge.kind == "capture", Charge.status == "succeeded")
        .order_by(Charge.id)))


def captured(s: Session, visit_id: str, currency: str) -> Money:
    """What the store took for the visit, every capture together."""
    return sum((Money(Decimal(c.amount), currency) for c in captures(s, visit_id)),
               Money.zero(currency))


def target_of(key: str, caps: list[Charge]) -> Charge | None:
    """The capture a refund charge (by its idempotency key) is made on: ``<key>@<capture
    charge id>`` names it; a key without (a visit with one capture, or a refund recorded
    before a visit could have two) is the first capture's."""
    _, at, cid = key.rpartition("@")
    if at and cid.isdigit():
        return next((c for c in caps if c.id == int(cid)), None)
    return caps[0] if caps else None


def split_refund(s: Session, visit_id: str, amount: Money) -> list[tuple[Charge, Money]]:
    """A refund of ``amount`` on the visit, as parts on its captures: a refund is made on one
    payment and can return no more than that payment took, and a visit whose cart was above
    its hold has two (the hold's capture and its balance's charge). Each capture's room is
    what it took less the refunds already made or owed on it (chargebacks and refunds the
    provider reported are counted on the first); the roomiest first, so that a refund that
    fits one payment stays one. Empty when nothing was captured."""
    caps = captures(s, visit_id)
    if not caps:
        return []
    cur = amount.currency
    room = {c.id: Money(Decimal(c.amount), cur) for c in caps}
    for key, n in s.execute(select(Charge.idempotency_key, Charge.amount).where(
            Charge.visit_id == visit_id, Charge.kind == "refund",
            or_(Charge.status.in_(("pending", "succeeded")),
                Charge.idempotency_key.like("dispute:%")))):
        c = target_of(key, caps)
        if c is not None:
            room[c.id] = room[c.id] - Money(Decimal(n), cur)
    room[caps[0].id] = room[caps[0].id] - chargeback_total(s, visit_id, cur)
    if len(caps) == 1:
        return [(caps[0], amount)]  # the provider refuses what the payment has no room for
    parts: list[tuple[Charge, Money]] = []
    left = amount
    for c in sorted(caps, key=lambda c: (-room[c.id].amount, c.id)):
        part = min(left, room[c.id], key=lambda m: m.amount)
        if part.amount > 0:
            parts.append((c, part))
            left = left - part
    if left.amount > 0:  # more than every payment's room: the rest on the roomiest, refused
        parts = parts or [(caps[0], Money.zero(cur))]
        c0, p0 = parts[0]
        parts[0] = (c0, p0 + left)
    return parts


def add_refund(d: Deps, s: Session, visit_id: str, key: str, amount: Money,
               now: datetime) -> list[str]:
    """Step 1 of a refund: its pending charges, one per part (:func:`split_refund`), under
    ``key`` (one part on a visit with one capture) or ``key@<capture charge id>``; returns
    their keys."""
    parts = split_refund(s, visit_id, amount)
    many = len(captures(s, visit_id)) > 1
    keys = []
    for cap, part in parts:
        k = f"{key}@{cap.id}" if many else key
        s.add(Charge(visit_id=visit_id, kind="refund", idempotency_key=k,
                     provider=d.provider.name, amount=part.amount, currency=part.currency,
                     status="pending", created_at=now))
        keys.append(k)
    return keys


def refund_parts(s: Session, key: str) -> list[Charge]:
    """The charges of the refund recorded under ``key`` (:func:`add_refund`)."""
    return list(s.scalars(select(Charge).where(or_(
        Charge.idempotency_key == key, Charge.idempotency_key.like(f"{key}@%")))
        .order_by(Charge.id)))


def follow_revision(s: Session, receipt_id: str, cut: dict[str, int],
                    prices: dict[str, Money], now: datetime) -> dict[str, Money]:
    """Inside the transaction of a review revision that cut ``cut[product]`` units off the
    receipt's lines: the cut answers the line's dispute first (see the module). Returns, per
    product, what refunded (or refunding) disputes still credit against the revised line:
    their refund, at most the ``prices`` of the units no revision has cut since."""
    credit: dict[str, Money] = {}
    # locked: a decision of one of them waits for the revision (and then sees its refund), or
    # the revision waits for the decision (and then counts its refund)
    for dsp in s.scalars(select(Dispute).where(Dispute.receipt_id == receipt_id)
                         .order_by(Dispute.id).with_for_update()):
        drop = min(cut.get(dsp.product_id, 0), dsp.quantity)
        if drop > 0 and dsp.state in ("open", "refunding", "refunded"):
            dsp.quantity -= drop
            if dsp.state == "open" and dsp.quantity == 0:
                dsp.state, dsp.resolved_at = "corrected", now
        price = prices.get(dsp.product_id)  # None: the line is gone, nothing to credit
        if price is not None and dsp.state in ("refunding", "refunded") \
                and dsp.refund_amount is not None:
            paid = Money(Decimal(dsp.refund_amount), price.currency)
            credit[dsp.product_id] = min(paid, price * dsp.quantity)
    return credit


def _refund(d: Deps, dispute_id: str) -> None:
    """Steps 2-3 of every part of the dispute's refunds not made yet (each under its key)."""
    with d.sessions() as s:
        parts = list(s.scalars(select(Charge).where(
            Charge.idempotency_key.like(f"{_key(dispute_id)}%")).order_by(Charge.id)))
        assert parts
        caps = captures(s, parts[0].visit_id)
        todo = []
        for ch in parts:
            cap = target_of(ch.idempotency_key, caps)
            assert cap is not None and cap.provider_ref is not None
            if ch.status != "succeeded":
                todo.append((ch.idempotency_key, Money(Decimal(ch.amount), ch.currency),
                             cap.provider_ref))
    for key, amount, capture_ref in todo:  # each part on its payment, under its own key
        try:
            ref = d.provider.refund(capture_ref, amount, key)
        except PaymentError as e:
            # the dispute stays refunding, so the charge stays pending: the refund is still
            # owed (and may even have been made, its answer lost); a retry uses the same key
            with d.sessions.begin() as s:
                s.execute(update(Charge).where(Charge.idempotency_key == key,
                                               Charge.status != "succeeded")
                          .values(status="pending", error=e.reason[:300]))
            raise ServiceError(502, "refund_failed",
                               f"the payment provider did not confirm the refund: {e.reason}; "
                               "it stays owed, and deciding 'refund' again retries it") from None
        with d.sessions.begin() as s:
            s.execute(update(Charge).where(Charge.idempotency_key == key)
                      .values(status="succeeded", settled_at=d.clock.now(),
                              provider_ref=ref.refund_id, error=None))
    now = d.clock.now()
    with d.sessions.begin() as s:
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
            pass  # still owed (the charge pending): the next start or the operator retries
        except Exception:  # not a payment answer: still pending, and the start goes on
            log.exception("dispute %s: its refund failed (key %s; retried on the next start)",
                          dispute_id, _key(dispute_id))
    return done

