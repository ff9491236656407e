"""A review verdict that lands after the receipt was issued: the receipt is revised.

The engine re-issues a session's receipt when a verdict changes it (``Receipt.revision``).
The service keeps the cart ledger append-only here too: the verdict's correcting lines are
appended to the closed visit's cart (unique per line key, so a replay adds nothing), the
receipt's lines and total are re-frozen from the whole ledger, and money follows in the same
three steps as a capture — a pending refund charge of what was captured above what the shopper
now owes, the provider call outside any transaction with an idempotency key, its record.

What the shopper owes is counted per line: the revised line, less what a refunded dispute of
that line gave back for units the revision did not itself cut. A dispute and a review of the
same line are taken to be about the same units (``disputes.follow_revision``), so whichever
comes first, a unit is refunded once.

A refund whose outcome is unknown (provider unreachable, answer lost, a crash) stays pending and
is repeated with its own key — at the next start and at the start of the visit's next revision
(:func:`resume_pending`) — never re-made under a new key; only the provider's outright refusal
marks it failed (the visit goes ``in_review``; the next revision tries again). A visit whose
hold was never captured (the capture was refused) and that now owes nothing has the hold
released through the provider the same way, and only then is ``released``. A verdict that
raises what is owed above what was captured cannot capture more from an authorisation already
closed: the difference becomes the visit's ``balance_owed``, charged to the saved payment
method at once as at an exit above the hold (``checkout.owe``), and the visit is ``in_review``
until it is collected (or an operator writes it off); a balance written off is not asked for
again, and a receipt raised again after its balance was settled owes the new difference the
same way. A verdict for a visit whose exit is still settling (``checking_out``, the
capture's outcome unknown) has its lines appended and is applied once the capture settles
(``checkout.settle``).

A revision that changes what the shopper bought or paid is e-mailed to them once: the claim of
that e-mail commits with the revision (``receipting.claim_revision``), the send follows the
refund so the e-mail can say it was made.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from walkout.checkout.money import Money
from walkout.service import checkout, disputes, receipting
from walkout.service.carts import cart_total, receipt_lines
from walkout.service.checkout import LineRequest, insert_ignore, visit_lines
from walkout.service.deps import Deps
from walkout.service.errors import ServiceError
from walkout.service.models import CartLine, Charge, Receipt, ReceiptLine, Visit
from walkout.service.payments.base import PaymentDeclined, PaymentError, UnknownPayment
from walkout.service.payments.reported import chargeback_total

log = logging.getLogger("walkout.service.revisions")

#: visit states whose receipt was issued and settled: a verdict revises it
SETTLED = ("charged", "released", "in_review", "disputed")
#: a verdict's lines are appended in these too: the receipt is frozen, its money in flight
APPENDABLE = (*SETTLED, "checking_out")
#: the refusals after which a review refund or release may be tried again under a new key:
#: nothing moved. (An ``IdempotencyConflict`` says the key did serve another request, which
#: may have moved money: that charge stays pending, retried with its own key, never replaced.)
REFUSED: tuple[type[PaymentError], ...] = (PaymentDeclined, UnknownPayment)
REFUND, RELEASE = "review-refund", "review-release"


def add_review_lines(d: Deps, visit_id: str, lines: list[LineRequest]) -> int:
    """Append a verdict's correcting lines to a visit, open or settled; returns how many were
    new. (Ordinary lines on a closed visit are still refused by ``checkout.add_lines``.)"""
    with d.sessions() as s:
        v = s.get(Visit, visit_id)
        state = v.state if v else None
    if state == "open":
        return checkout.add_lines(d, visit_id, lines)
    if state not in APPENDABLE:
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
    what is now owed. Returns the refund (None when there was none made now). A visit still
    open is exited instead (a revision that overtook the first issue, as on a replay)."""
    with d.sessions() as s:
        v0 = s.get(Visit, visit_id)
        state = v0.state if v0 else None
    if state == "open":
        checkout.exit_visit(d, visit_id, needs_review=needs_review, mail=False)
        return None
    if state == "checking_out":  # the exit's charge first (same key), then the revision
        state = checkout.settle(d, visit_id, catch_up=False).state
        if state == "checking_out":
            log.warning("visit %s: the exit's payment is still unsettled; the revision "
                        "follows when it settles", visit_id)
            return None
    if state not in SETTLED:
        return None
    resume_pending(d, visit_id)  # what an earlier revision left pending: its own keys, first
    now = d.clock.now()
    with d.sessions.begin() as s:
        v = s.get(Visit, visit_id, with_for_update=True)
        rec = s.scalar(select(Receipt).where(Receipt.visit_id == visit_id))
        assert v is not None and rec is not None
        cur = v.currency
        before = receipting.load(d, s, rec).doc.lines
        lines = visit_lines(s, visit_id)
        revised = receipt_lines(lines, cur)
        total = cart_total(lines, cur)
        # a line keeps the tax it was issued with; one new to the receipt (or issued before
        # receipts kept their tax) takes the catalogue's: the breakdown is then recomputed
        taxes = {**d.store.product_tax, **{
            ln.product_id: (ln.tax_class, ln.tax_rate) for ln in before
            if ln.tax_class is not None and ln.tax_rate is not None}}
        s.execute(delete(ReceiptLine).where(ReceiptLine.receipt_id == rec.id))
        s.flush()
        for i, rl in enumerate(revised):
            cls, rate = taxes.get(rl.product_id, (None, None))
            s.add(ReceiptLine(receipt_id=rec.id, position=i, product_id=rl.product_id,
                              name=rl.name, quantity=rl.quantity,
                              unit_price=rl.unit_price.amount, amount=rl.amount.amount,
                              events=json.dumps(list(rl.events)), tax_class=cls,
                              tax_rate=rate))
        rec.total, rec.needs_review = total.amount, needs_review
        after = {rl.product_id: rl.quantity for rl in revised}
        cut = {ln.product_id: ln.quantity - after.get(ln.product_id, 0) for ln in before
               if ln.quantity > after.get(ln.product_id, 0)}
        credit = disputes.follow_revision(s, rec.id, cut,
                                          {rl.product_id: rl.unit_price for rl in revised}, now)
        zero = Money.zero(cur)
        owed = zero
        for rl in revised:
            owed = owed + max(rl.amount - credit.get(rl.product_id, zero), zero)
        caps = disputes.captures(s, visit_id)  # the hold's, and a balance charged above it
        paid = disputes.captured(s, visit_id, cur) - disputes.refunds_made(s, visit_id, cur)
        # what a bank chargeback withholds is not refunded again, nor asked for again: it
        # may come back to the store
        withheld = chargeback_total(s, visit_id, cur)
        # a balance an operator wrote off is not asked for again
        forgiven = Money(Decimal(v.balance_written_off or 0), cur)
        over, short = paid - withheld - owed, owed - paid - forgiven
        if v.balance_owed is not None and v.balance_settled_at is None:
            # a balance still owed above the hold is what the revised receipt leaves owed
            v.balance_owed = max(short, zero).amount
        key = balance_key = None
        if caps and over.amount > 0:
            key = _refund_key(s, v)
            disputes.add_refund(d, s, visit_id, key, over, d.clock.now())
        release = None
        if short.amount > 0:
            if v.state in ("charged", "released"):
                v.state = "in_review"  # until the difference is collected
            if v.balance_owed is None or v.balance_settled_at is not None:
                # owed now (again, if an earlier balance was settled): charged to the saved
                # card where it can be
                balance_key = checkout.owe(d, s, visit_id, short, collect=(
                    _hold(s, visit_id) == "closed" and withheld.amount == 0))
        elif not needs_review:
            hold = _hold(s, visit_id)
            if hold == "open":  # never captured and nothing owed: release it, then 'released'
                release = _new_charge(d, s, v, RELEASE, "release", Money(v.hold_amount, cur))
            elif hold == "closed" and v.state == "in_review":
                v.state = "charged" if caps else "released"
        auth_id = v.auth_id
        s.flush()
        mail = receipting.claim_revision(d, s, rec, before,
                                         over.amount if key else Decimal(0), key)
        rid = rec.id
    refund = _refund_all(d, visit_id, key) if key else None
    if balance_key is not None:
        checkout.collect(d, visit_id, balance_key, clear_review=not needs_review)
    if release is not None and auth_id is not None:
        _release(d, visit_id, auth_id, release)
    if mail is not None:
        receipting.mail_revision(d, rid, mail, claimed=True)
    return refund


def _refund_key(s: Session, v: Visit) -> str:
    """The key of the visit's next review refund (its parts add ``@<capture>``, see
    ``disputes.add_refund``)."""
    keys = s.scalars(select(Charge.idempotency_key).where(
        Charge.visit_id == v.id, Charge.idempotency_key.like(f"visit:{v.id}:{REFUND}:%")))
    return f"visit:{v.id}:{REFUND}:{len({k.split('@')[0] for k in keys})}"


def _refund_all(d: Deps, visit_id: str, key: str) -> Money | None:
    """Steps 2-3 of every part of the review refund under ``key``: what was refunded, None
    when any part was not made now (it stays pending, retried by :func:`resume_pending`)."""
    with d.sessions() as s:
        parts = disputes.refund_parts(s, key)
        caps = disputes.captures(s, visit_id)
        todo = [(ch.idempotency_key, Money(Decimal(ch.amount), ch.currency),
                 getattr(disputes.target_of(ch.idempotency_key, caps), "provider_ref", None))
                for ch in parts]
    total, ok = None, True
    for k, amount, ref in todo:
        got = _refund(d, visit_id, ref, amount, k)
        ok = ok and got is not None
        total = got if total is None else (total + got if got is not None else total)
    return total if ok else None


def _new_charge(d: Deps, s: Session, v: Visit, what: str, kind: str, amount: Money) -> str:
    """Step 1 of a review refund or release: its pending charge, under the visit's next key
    for ``what`` (a new key only ever after the last one was refused outright)."""
    n = s.scalar(select(func.count()).select_from(Charge).where(
        Charge.visit_id == v.id, Charge.idempotency_key.like(f"visit:{v.id}:{what}:%"))) or 0
    key = f"visit:{v.id}:{what}:{n}"
    s.add(Charge(visit_id=v.id, kind=kind, idempotency_key=key, provider=d.provider.name,
                 amount=amount.amount, currency=amount.currency, status="pending",
                 created_at=d.clock.now()))
    return key


def _hold(s: Session, visit_id: str) -> str:
    """The visit's authorisation: ``closed`` (captured or released), ``closing`` (a release
    whose outcome is not known yet) or ``open``."""
    rows = s.execute(select(Charge.kind, Charge.status).where(
        Charge.visit_id == visit_id, Charge.kind.in_(("capture", "release")))).all()
    if any(st == "succeeded" for _, st in rows):
        return "closed"
    return "closing" if any(st == "pending" for _, st in rows) else "open"


def _refund(d: Deps, visit_id: str, capture_ref: str | None, amount: Money,
            key: str) -> Money | None:
    """Steps 2-3 of a pending review refund (None: not made now)."""
    if capture_ref is None:
        return None
    try:
        ref = d.provider.refund(capture_ref, amount, key)
    except PaymentError as e:
        _failed(d, visit_id, key, e, "refund after review")
        return None
    with d.sessions.begin() as s:
        s.execute(update(Charge).where(Charge.idempotency_key == key)
                  .values(status="succeeded", settled_at=d.clock.now(),
                          provider_ref=ref.refund_id, error=None))
    return amount


def _release(d: Deps, visit_id: str, auth_id: str, key: str) -> bool:
    """Steps 2-3 of a pending release of a hold nothing was captured from; the visit is
    ``released`` only once the provider confirms it."""
    try:
        d.provider.release(auth_id, key)
    except PaymentError as e:
        _failed(d, visit_id, key, e, "release after review")
        return False
    with d.sessions.begin() as s:
        s.execute(update(Charge).where(Charge.idempotency_key == key)
                  .values(status="succeeded", settled_at=d.clock.now(), error=None))
        s.execute(update(Visit).where(Visit.id == visit_id, Visit.state == "in_review")
                  .values(state="released"))
    return True


def _failed(d: Deps, visit_id: str, key: str, e: PaymentError, what: str) -> None:
    """Record a failed attempt: refused outright, the charge failed and the visit goes to
    staff (``in_review``); otherwise the outcome is unknown, the charge stays pending (its
    money reserved) and is repeated with the same key."""
    refused = isinstance(e, REFUSED)
    with d.sessions.begin() as s:
        s.execute(update(Charge).where(Charge.idempotency_key == key,
                                       Charge.status == "pending")
                  .values(status="failed" if refused else "pending", error=e.reason[:300]))
        if refused:
            s.execute(update(Visit).where(Visit.id == visit_id,
                                          Visit.state.in_(("charged", "released")))
                      .values(state="in_review"))
    log.warning("visit %s: %s %s: %s", visit_id, what,
                "refused" if refused else "not confirmed, retried with its key", e.reason)


def resume_pending(d: Deps, visit_id: str | None = None) -> int:
    """Repeat the review refunds and releases a crash, an outage or a lost answer left pending
    (of one visit, or all), each with its own key; returns how many went through now."""
    todo: list[tuple[str, str, str | None, Money, str]] = []
    with d.sessions() as s:
        q = select(Charge).where(Charge.status == "pending", or_(
            Charge.idempotency_key.like(f"visit:%:{REFUND}:%"),
            Charge.idempotency_key.like(f"visit:%:{RELEASE}:%")))
        if visit_id is not None:
            q = q.where(Charge.visit_id == visit_id)
        for ch in s.scalars(q.order_by(Charge.id)):
            if ch.kind == "refund":
                cap = disputes.target_of(ch.idempotency_key,
                                         disputes.captures(s, ch.visit_id))
                ref = cap.provider_ref if cap is not None else None
            else:
                v = s.get(Visit, ch.visit_id)
                ref = v.auth_id if v else None
            todo.append((ch.kind, ch.visit_id, ref, Money(Decimal(ch.amount), ch.currency),
                         ch.idempotency_key))
    done = 0
    for kind, vid, ref, amount, key in todo:
        if ref is None:
            continue
        try:
            if kind == "refund":
                done += _refund(d, vid, ref, amount, key) is not None
            else:
                done += _release(d, vid, ref, key)
        except Exception:  # not a payment answer: still pending, the others go on
            log.exception("visit %s: %s %s failed (retried with its key)", vid, kind, key)
    return done
