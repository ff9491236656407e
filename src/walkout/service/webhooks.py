"""Stripe's webhook: what each event changes in walkout's records, once per event id.

``POST /v1/webhooks/stripe`` (``app.py``) checks the Stripe-Signature HMAC over the raw body
(:class:`~walkout.service.payments.stripe.StripeWebhookReceiver`); :func:`receive` then records
the event (``payment_webhook_events``, primary key: the event id) and applies its effect in
one transaction. A redelivered event finds its row and changes nothing, across restarts; an
effect that fails rolls its row back with it, so Stripe's retry applies it. Every effect is a
database write (no provider call is made here), so the row and the effect are atomic.

Events arrive in any order and may repeat, so each handler is written against the object the
event carries (its full state at the event's time), never against "the previous event":

- ``charge.dispute.*`` — a bank chargeback: one ``chargebacks`` row per dispute id, updated
  by newer events only, ``won``/``lost`` final. While its money is withheld (open or lost)
  the visit is ``disputed`` and walkout refunds nothing of that payment; won, the visit goes
  back to its earlier state. Stripe's fee for it is the net of the fees of the dispute's
  balance transactions (charged when the funds are withdrawn, given back on a win in some
  regions only); a newer event may still change the fee of a closed chargeback.
- ``payment_intent.canceled`` / ``charge.expired`` — a hold gone outside walkout (expired
  after 7 days, cancelled in the dashboard): a capture in flight is recorded refused and the
  visit goes to review; a shopper still inside gets no blind capture at the exit
  (``checkout`` asks :func:`~walkout.service.payments.reported.hold_gone` first). Walkout's
  own releases come back here too, and are ignored.
- ``charge.refunded`` — Stripe's cumulative ``amount_refunded`` (less, for endpoints on an API
  version before 2025-03-31, the uncaptured rest of the hold, which Stripe booked as a refund
  then): what exceeds walkout's own refunds and those recorded before is a refund made
  outside walkout, recorded as a refund charge, so every later refund is capped by it.
- anything else — acknowledged and recorded as ignored.

Staff acknowledge an ``attention`` event once they have handled it (:func:`acknowledge`): the
dashboard lists those nobody has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, not_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from walkout.checkout.money import CurrencyMismatch, Money
from walkout.service import checkout, revisions
from walkout.service.clock import aware
from walkout.service.deps import Deps
from walkout.service.errors import ServiceError, not_found
from walkout.service.models import (
    Account,
    Charge,
    Chargeback,
    PaymentWebhookEvent,
    Receipt,
    Visit,
)
from walkout.service.payments.reported import (
    FUNDS_WITHHELD,
    OUTSIDE_REFUND_KEY,
    OUTSIDE_REFUND_LIKE,
    withheld_chargebacks,
)

if TYPE_CHECKING:  # the library is imported where Stripe is configured, not by every app
    import stripe

log = logging.getLogger("walkout.service.webhooks")

#: the largest webhook body read (Stripe's events are a few kB; a larger body is refused)
MAX_BODY = 1 << 20
APPLIED, ATTENTION, IGNORED = "applied", "attention", "ignored"
#: chargeback states that never change again
FINAL = ("won", "lost")
#: states a chargeback is over in (an inquiry closes as ``warning_closed``)
CLOSED = (*FINAL, "warning_closed")
#: the API version from which a partial capture's uncaptured rest (and a cancelled hold) is
#: no longer booked as a refund: before it, ``charge.refunded`` follows every partial capture
BASIL = "2025-03-31"
#: key of the refund charge that records a refund made outside walkout
OUTSIDE_KEY = OUTSIDE_REFUND_KEY
_OUTSIDE_LIKE = OUTSIDE_REFUND_LIKE


@dataclass(frozen=True, slots=True)
class Received:
    """What an event did (``duplicate``: it had been received before, and did nothing now)."""

    event_id: str
    type: str
    outcome: str
    detail: str
    visit_id: str | None
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    """The fields of a verified Stripe event walkout reads, as plain data."""

    id: str
    type: str
    created: datetime
    livemode: bool
    obj: dict[str, Any]
    #: the API version the object is rendered in (the webhook endpoint's): it decides what
    #: some fields mean (``charge.refunded`` before 2025-03-31)
    api_version: str | None = None

    @classmethod
    def of(cls, event: stripe.Event) -> Event:
        """``event``'s fields (a signed body that is no event: ValueError, before any write)."""
        try:
            raw = event.to_dict()
            obj = raw["data"]["object"]
            created = datetime.fromtimestamp(int(raw["created"]), UTC)
            version = raw.get("api_version")
            return cls(str(raw["id"]), str(raw["type"]), created, bool(raw.get("livemode")),
                       dict(obj), str(version) if version else None)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a Stripe event: {type(e).__name__} {e}") from None


@dataclass(frozen=True, slots=True)
class _Result:
    outcome: str
    detail: str
    visit_id: str | None = None
    object_id: str | None = None  # when not the event's object's own id


def receive(d: Deps, ev: Event, live: bool) -> Received:
    """Record ``ev`` (verified by the caller, :meth:`Event.of`) and apply its effect, once per
    event id; ``live``: whether this store's key is a live one (an event of the other mode is
    ignored)."""
    now = d.clock.now()
    try:
        with d.sessions.begin() as s:
            seen = s.get(PaymentWebhookEvent, ev.id)
            if seen is not None:
                return _again(seen)
            row = PaymentWebhookEvent(event_id=ev.id, provider="stripe", type=ev.type[:100],
                                      object_id=_id(ev.obj.get("id")), created_at=ev.created,
                                      received_at=now, outcome=IGNORED, detail="")
            s.add(row)
            s.flush()  # claims the id: a concurrent delivery of it waits here, then fails
            if ev.livemode != live:
                res = _Result(IGNORED, f"a {_mode(ev.livemode)}-mode event, and this store "
                              f"runs on a {_mode(live)} key: not this store's money")
            else:
                res = HANDLERS.get(ev.type, _not_handled)(d, s, ev)
            row.outcome, row.detail, row.visit_id = res.outcome, res.detail[:500], res.visit_id
            if res.object_id is not None:
                row.object_id = res.object_id
    except IntegrityError:
        with d.sessions() as s:  # a concurrent delivery recorded it first
            seen = s.get(PaymentWebhookEvent, ev.id)
            if seen is None:
                raise
            return _again(seen)
    level = logging.WARNING if res.outcome == ATTENTION else logging.INFO
    log.log(level, "stripe event %s (%s): %s: %s", ev.id, ev.type, res.outcome, res.detail)
    if res.visit_id and ev.type.startswith("charge.dispute.") and res.outcome != IGNORED:
        settle_after_chargeback(d, res.visit_id)
    return Received(ev.id, ev.type, res.outcome, res.detail, res.visit_id)


def settle_after_chargeback(d: Deps, visit_id: str) -> None:
    """Once no chargeback withholds a visit's money any more (won, or an inquiry closed), its
    receipt is settled again: a review revision made meanwhile refunded nothing of what the
    bank held, so the difference is refunded now (``revisions.revise``: nothing when there is
    none). A failure is logged; the next revision or chargeback event tries again."""
    with d.sessions() as s:
        if withheld_chargebacks(s, visit_id):
            return
        rec = s.scalar(select(Receipt).where(Receipt.visit_id == visit_id))
        if rec is None:
            return
        needs_review = rec.needs_review
    try:
        revisions.revise(d, visit_id, needs_review)
    except Exception:
        log.exception("visit %s: settling its receipt after the chargeback failed", visit_id)


def _again(row: PaymentWebhookEvent) -> Received:
    log.info("stripe event %s (%s) received again: already %s", row.event_id, row.type,
             row.outcome)
    return Received(row.event_id, row.type, row.outcome, row.detail, row.visit_id,
                    duplicate=True)


def _mode(live: bool) -> str:
    return "live" if live else "test"


def _not_handled(d: Deps, s: Session, ev: Event) -> _Result:
    return _Result(IGNORED, f"walkout takes no action on {ev.type}")


# ---- chargebacks --------------------------------------------------------------------------------


def _chargeback(d: Deps, s: Session, ev: Event) -> _Result:
    """``charge.dispute.*``: record or update the chargeback; the visit is ``disputed`` while
    the bank withholds its money."""
    o = ev.obj
    dp, charge = str(o["id"]), _id(o.get("charge"))
    v = _visit(s, _id(o.get("payment_intent")), charge)
    if v is None:
        return _Result(IGNORED, f"chargeback {dp} of {charge}: not a walkout payment")
    status = str(o.get("status") or "needs_response")
    amount = _amount(o["amount"], o["currency"])
    due = _ts((o.get("evidence_details") or {}).get("due_by"))
    try:
        fee, fee_note = _fee(o), ""
    except CurrencyMismatch:  # never seen: one dispute's money moves in one balance
        fee, fee_note = None, "; its fees are in several currencies: not recorded, see Stripe"
    now = d.clock.now()
    cb = s.get(Chargeback, dp, with_for_update=True)
    new = cb is None
    if cb is None:
        cb = Chargeback(id=dp, provider="stripe", visit_id=v.id, charge_ref=charge or "",
                        amount=amount.amount, currency=amount.currency,
                        reason=str(o.get("reason") or "general")[:64], status=status,
                        evidence_due_by=due, opened_at=_ts(o.get("created")) or ev.created,
                        as_of=ev.created, updated_at=now)
        s.add(cb)
        was = None
    else:
        if aware(cb.as_of) > ev.created:
            return _Result(IGNORED, f"chargeback {dp}: this event is older than its recorded "
                           f"state ({cb.status})", v.id)
        if cb.status in FINAL:
            return _final_fee(cb, fee, ev, now, v.id)
        was = cb.status
        cb.status, cb.amount, cb.currency = status, amount.amount, amount.currency
        cb.reason = str(o.get("reason") or cb.reason)[:64]
        cb.evidence_due_by, cb.as_of, cb.updated_at = due or cb.evidence_due_by, ev.created, now
    if fee is not None:  # balance transactions are only ever added: the newer list is fuller
        cb.fee, cb.fee_currency = fee.amount, fee.currency
    if status in CLOSED and cb.closed_at is None:
        cb.closed_at = ev.created
    s.flush()
    visit_note = _follow_chargebacks(s, v, cb)
    what = (f"chargeback {dp} of {cb.charge_ref}: {amount} ({cb.reason}), {status}"
            + (f", was {was}" if was and was != status else ""))
    if fee is not None and not fee.is_zero:
        what += f"; Stripe's fee {fee}"
    what += fee_note
    if status in ("needs_response", "warning_needs_response") and due is not None:
        what += f"; respond in the Stripe dashboard by {due.date().isoformat()}"
    if status == "lost":
        what += "; the bank returned the money to the shopper: walkout refunds none of it"
    elif status in FUNDS_WITHHELD:
        what += "; walkout refunds nothing of this payment while it is open"
    what += visit_note
    return _Result(ATTENTION if new or status == "lost" else APPLIED, what, v.id)


def _fee(o: dict[str, Any]) -> Money | None:
    """The net of the fees across the dispute's balance transactions (each one's ``fee``, or
    the sum of its ``fee_details``, in minor units of the balance's currency: positive when
    Stripe charges it, negative when it gives it back), or None while none is listed.
    Several currencies raise :class:`CurrencyMismatch`."""
    txs = [t for t in o.get("balance_transactions") or () if isinstance(t, dict)]
    net: Money | None = None
    for t in txs:
        units = t.get("fee")
        if units is None:
            units = sum(int(f.get("amount") or 0) for f in t.get("fee_details") or ())
        fee = _amount(units, t["currency"])
        net = fee if net is None else net + fee
    return net


def _final_fee(cb: Chargeback, fee: Money | None, ev: Event, now: datetime,
               visit_id: str) -> _Result:
    """An event newer than a closed chargeback: the status stays, but its balance
    transactions may list a fee given back after the close (a win, in some regions)."""
    if fee is None or (cb.fee, cb.fee_currency) == (fee.amount, fee.currency):
        return _Result(IGNORED, f"chargeback {cb.id}: already {cb.status}, which is final",
                       visit_id)
    cb.fee, cb.fee_currency, cb.as_of, cb.updated_at = fee.amount, fee.currency, ev.created, now
    return _Result(APPLIED, f"chargeback {cb.id} ({cb.status}): Stripe's fee for it is now "
                   f"{fee}, net of what it gave back", visit_id)


def _follow_chargebacks(s: Session, v: Visit, cb: Chargeback) -> str:
    """The visit is ``disputed`` while a chargeback withholds its money, and goes back to the
    state it had once none does (won, or an inquiry closed)."""
    withheld = s.scalar(select(func.count()).select_from(Chargeback).where(
        Chargeback.visit_id == v.id, Chargeback.status.in_(FUNDS_WITHHELD))) or 0
    if withheld and v.state in ("charged", "in_review", "released"):
        cb.visit_state_before = v.state
        v.state = "disputed"
        return f"; visit {v.id} is disputed"
    if not withheld and v.state == "disputed" and cb.visit_state_before is not None:
        v.state = cb.visit_state_before
        return f"; visit {v.id} is {v.state} again"
    return ""


# ---- holds that expired or were cancelled outside walkout ----------------------------------------

#: Stripe's ``cancellation_reason`` of a PaymentIntent, in words
_CANCELLED = {
    "expired": "expired (Stripe cancels a hold not captured within about 7 days)",
    "automatic": "expired (Stripe cancels a hold not captured within about 7 days)",
    "requested_by_customer": "was cancelled at the customer's request",
    "fraudulent": "was cancelled as fraudulent",
    "duplicate": "was cancelled as a duplicate",
    "abandoned": "was cancelled as abandoned",
    "failed_invoice": "was cancelled (failed invoice)",
    "void_invoice": "was cancelled (void invoice)",
}


def _hold_gone(d: Deps, s: Session, ev: Event) -> _Result:
    """``payment_intent.canceled`` / ``charge.expired``: the visit's hold can no longer be
    captured. Walkout's own release is ignored; otherwise a capture in flight is recorded
    refused (the visit to review, staff collect) and a later exit captures nothing."""
    o = ev.obj
    if ev.type == "charge.expired":
        pi, why = _id(o.get("payment_intent")), "expired before it was captured"
    else:
        pi = _id(o.get("id"))
        reason = str(o.get("cancellation_reason") or "")
        why = _CANCELLED.get(reason, f"was cancelled ({reason or 'no reason given'})")
    v = _visit(s, pi, None)
    if pi is None or v is None:
        return _Result(IGNORED, f"hold {pi}: not a walkout payment", object_id=pi)
    kinds = dict(s.execute(select(Charge.kind, Charge.status).where(
        Charge.visit_id == v.id, Charge.kind.in_(("capture", "release")),
        Charge.status.in_(("pending", "succeeded")))).all())
    if "release" in kinds:
        return _Result(IGNORED, f"hold {pi}: released by walkout itself", v.id, pi)
    if kinds.get("capture") == "succeeded":
        return _Result(IGNORED, f"hold {pi}: captured before (nothing left to hold)", v.id, pi)
    if v.state == "refused":
        return _Result(IGNORED, f"hold {pi} of an entry that was refused: nothing owed",
                       v.id, pi)
    what = f"the hold {pi} of visit {v.id} {why} outside walkout: nothing can be captured"
    if kinds.get("capture") == "pending":  # the exit's capture, outcome unknown until now
        s.execute(update(Charge).where(Charge.visit_id == v.id, Charge.kind == "capture",
                                       Charge.status == "pending")
                  .values(status="failed", error=what[:300]))
        if v.state == "checking_out":
            v.state = "in_review"
            total = s.scalar(select(Receipt.total).where(Receipt.visit_id == v.id))
            if total:  # nothing was taken: the receipt is owed, charged to the saved method
                checkout.owe(d, s, v.id, Money(Decimal(total), v.currency))
        what += ("; the exit's capture is recorded refused: the receipt is owed (charged to the "
                 "saved card on the service's timer where the provider can; else staff collect)")
    elif v.state in ("authorizing", "open"):
        what += ("; the shopper may still be inside: the exit will capture nothing and the "
                 "visit goes to review, staff collect")
    else:
        what += f"; the visit is {v.state}: staff collect what is owed"
    return _Result(ATTENTION, what, v.id, pi)


# ---- refunds made outside walkout ---------------------------------------------------------------


def _refunded(d: Deps, s: Session, ev: Event) -> _Result:
    """``charge.refunded``: Stripe's cumulative ``amount_refunded`` less walkout's own refunds
    (made, or pending: they may be in it) and those recorded before is a refund made outside
    walkout; it is recorded as a refund charge, which every later cap counts. An older event
    (smaller total) finds it recorded and adds nothing; if walkout's own refund in flight was
    not yet in Stripe's total, the next ``charge.refunded`` records the rest."""
    o = ev.obj
    ch = str(o["id"])
    v = _visit(s, _id(o.get("payment_intent")), ch)
    if v is None:
        return _Result(IGNORED, f"refund of {ch}: not a walkout payment")
    units = int(o.get("amount_refunded") or 0)
    if (ev.api_version or "")[:10] < BASIL:
        # Stripe booked the uncaptured rest of a partial capture (walkout captures the cart
        # from a larger hold) or a cancelled hold as a refund then: no money given back
        amount = int(o.get("amount") or 0)
        captured = o.get("amount_captured")
        units -= amount - int(amount if captured is None else captured)
    reported = _amount(max(units, 0), o["currency"])
    if reported.currency != v.currency:
        return _Result(ATTENTION, f"{ch} of visit {v.id} refunded {reported}, the visit is in "
                       f"{v.currency}: not counted, check it at Stripe", v.id)
    refunds = select(func.coalesce(func.sum(Charge.amount), 0)).where(
        Charge.visit_id == v.id, Charge.kind == "refund",
        Charge.status.in_(("pending", "succeeded")))
    ours = _money(s.scalar(refunds.where(not_(Charge.idempotency_key.like(_OUTSIDE_LIKE)))),
                  v.currency)
    before = _money(s.scalar(refunds.where(Charge.idempotency_key.like(_OUTSIDE_LIKE))),
                    v.currency)
    outside = reported - ours - before
    if outside.amount <= 0:
        return _Result(IGNORED, f"{ch}: Stripe reports {reported} refunded, which walkout's "
                       f"own refunds ({ours}) and those recorded before ({before}) account "
                       "for", v.id)
    s.add(Charge(visit_id=v.id, kind="refund", idempotency_key=OUTSIDE_KEY.format(event=ev.id),
                 provider="stripe", provider_ref=ch, amount=outside.amount,
                 currency=outside.currency, status="succeeded",
                 error=f"refunded outside walkout (Stripe dashboard or API), reported by "
                       f"{ev.id}"[:300], created_at=ev.created))
    return _Result(ATTENTION, f"{ch} of visit {v.id}: {outside} refunded outside walkout "
                   f"(Stripe reports {reported} refunded in all): recorded, and walkout's "
                   "refunds of this payment are capped by it", v.id)


HANDLERS: dict[str, Callable[[Deps, Session, Event], _Result]] = {
    "charge.dispute.created": _chargeback,
    "charge.dispute.updated": _chargeback,
    "charge.dispute.closed": _chargeback,
    "charge.dispute.funds_withdrawn": _chargeback,
    "charge.dispute.funds_reinstated": _chargeback,
    "payment_intent.canceled": _hold_gone,
    "charge.expired": _hold_gone,
    "charge.refunded": _refunded,
}


# ---- what operators see -------------------------------------------------------------------------


def chargebacks(d: Deps, only_open: bool = False) -> list[dict[str, Any]]:
    """Chargebacks newest first, with their visit's receipt and state (``GET
    /v1/ops/chargebacks``)."""
    with d.sessions() as s:
        q = (select(Chargeback, Visit.state, Receipt.id)
             .join(Visit, Visit.id == Chargeback.visit_id)
             .outerjoin(Receipt, Receipt.visit_id == Chargeback.visit_id))
        if only_open:
            q = q.where(Chargeback.status.not_in(CLOSED))
        rows = s.execute(q.order_by(Chargeback.opened_at.desc(), Chargeback.id)).all()
        return [{
            "chargeback_id": cb.id, "visit_id": cb.visit_id, "receipt_id": rid,
            "visit_state": state, "charge": cb.charge_ref,
            "amount": str(Money(Decimal(cb.amount), cb.currency).amount),
            "currency": cb.currency, "reason": cb.reason, "status": cb.status,
            "open": cb.status not in CLOSED, "funds_withheld": cb.status in FUNDS_WITHHELD,
            **fee_json(cb),
            "evidence_due_by": _iso(cb.evidence_due_by), "opened_at": _iso(cb.opened_at),
            "closed_at": _iso(cb.closed_at)} for cb, state, rid in rows]


def fee_json(cb: Chargeback) -> dict[str, str | None]:
    """``fee``: what the provider charged the store for the chargeback, net of any it gave
    back, as a decimal string in ``fee_currency``; both null while none is reported."""
    if cb.fee is None or cb.fee_currency is None:
        return {"fee": None, "fee_currency": None}
    return {"fee": str(Money(Decimal(cb.fee), cb.fee_currency).amount),
            "fee_currency": cb.fee_currency}


def _with_acks() -> Select[tuple[PaymentWebhookEvent, str | None]]:
    """Events with the name of the staff account that acknowledged each (or None)."""
    return (select(PaymentWebhookEvent, Account.display_name)
            .outerjoin(Account, Account.id == PaymentWebhookEvent.acknowledged_by))


def _event_json(r: PaymentWebhookEvent, by_name: str | None) -> dict[str, Any]:
    return {"event_id": r.event_id, "type": r.type, "object_id": r.object_id,
            "visit_id": r.visit_id, "outcome": r.outcome, "detail": r.detail,
            "created_at": _iso(r.created_at), "received_at": _iso(r.received_at),
            "acknowledged": None if r.acknowledged_at is None else {
                "by": r.acknowledged_by, "by_name": by_name, "at": _iso(r.acknowledged_at),
                "note": r.acknowledged_note}}


def events(d: Deps, attention: bool = False, limit: int = 100,
           since: datetime | None = None,
           acknowledged: bool | None = None) -> list[dict[str, Any]]:
    """The webhook events received, newest first, with what each did and ``acknowledged``
    (``by``: the operator's account id, ``by_name``, ``at``, ``note``; null while nobody
    has) (``GET /v1/ops/payment-events``); ``attention``: only those staff must act on;
    ``since``: only those received from then on (the dashboard's recent ones);
    ``acknowledged``: only those staff did (True) or did not (False) acknowledge."""
    with d.sessions() as s:
        q = _with_acks()
        if attention:
            q = q.where(PaymentWebhookEvent.outcome == ATTENTION)
        if since is not None:
            q = q.where(PaymentWebhookEvent.received_at >= since)
        if acknowledged is not None:
            ack = PaymentWebhookEvent.acknowledged_at
            q = q.where(ack.is_not(None) if acknowledged else ack.is_(None))
        rows = s.execute(q.order_by(PaymentWebhookEvent.received_at.desc(),
                                    PaymentWebhookEvent.created_at.desc()).limit(limit))
        return [_event_json(r, name) for r, name in rows]


def acknowledge(d: Deps, event_id: str, by: str, note: str | None = None) -> dict[str, Any]:
    """Staff handled the ``attention`` event ``event_id`` (``by``: the operator's account
    id): it leaves the dashboard's list. Idempotent: the first acknowledgement is kept and
    answered again. An unknown event is 404; one that needed nobody, 409 ``not_attention``.

    A conditional UPDATE, so that two operators acknowledging at once keep one of them on
    SQLite as on PostgreSQL."""
    pwe = PaymentWebhookEvent
    with d.sessions.begin() as s:
        done = s.execute(update(pwe).where(pwe.event_id == event_id, pwe.outcome == ATTENTION,
                                           pwe.acknowledged_at.is_(None))
                         .values(acknowledged_at=d.clock.now(), acknowledged_by=by,
                                 acknowledged_note=note)
                         .execution_options(synchronize_session=False)).rowcount
        found = s.execute(_with_acks().where(pwe.event_id == event_id)).one_or_none()
        if found is None:
            raise not_found("payment event")
        row, name = found
        if row.outcome != ATTENTION:
            raise ServiceError(409, "not_attention",
                               f"this event was {row.outcome}: it needed no staff attention, "
                               "so there is nothing to acknowledge")
        out = _event_json(row, name)
    if done:
        log.info("payment event %s (%s) acknowledged by %s", event_id, out["type"], by)
    return out


# ---- helpers ------------------------------------------------------------------------------------


def _visit(s: Session, intent: str | None, charge: str | None) -> Visit | None:
    """The visit whose hold is ``intent`` (its ``auth_id``), else whose capture produced
    ``charge``; locked, so that two events of one visit apply one after the other."""
    vid = s.scalar(select(Visit.id).where(Visit.auth_id == intent)) if intent else None
    if vid is None and charge:
        vid = s.scalar(select(Charge.visit_id).where(Charge.kind == "capture",
                                                     Charge.provider_ref == charge).limit(1))
    return s.get(Visit, vid, with_for_update=True) if vid else None


def _id(x: Any) -> str | None:
    """A Stripe reference, expanded (an object with an ``id``) or not (the id)."""
    if isinstance(x, dict):
        x = x.get("id")
    return str(x) if x else None


def _ts(x: Any) -> datetime | None:
    """Stripe's Unix seconds as an aware datetime (None stays None)."""
    return None if x is None else datetime.fromtimestamp(int(x), UTC)


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else aware(dt).isoformat()


def _amount(units: Any, currency: Any) -> Money:
    """A Stripe amount (minor units) as Money."""
    from walkout.service.payments.stripe import from_stripe_amount

    return from_stripe_amount(int(units), str(currency))


def _money(n: Any, currency: str) -> Money:
    return Money(Decimal(n or 0), currency)
