"""Cart lines in, money out: the visit's ledger, its receipt and its capture or release.

Lines are committed before they are acknowledged and are unique per (visit, line key), so a
line delivered twice or replayed after a restart is stored once. Exit follows the same
three-step pattern as entry: (1) one transaction freezes the receipt from the committed lines
and writes a pending capture (or release) charge; (2) the provider call, outside any
transaction, with the visit's idempotency key; (3) its record. :func:`resume_checkouts` redoes
step 2-3 for visits a crash left in ``checking_out`` — the key makes that charge once.

Only the provider's outright refusal (``payments.base.FINAL_ERRORS``) is recorded as a failed
charge: the visit goes ``in_review`` and, a refused capture having taken nothing, the whole
receipt is its ``balance_owed`` (below). When the refusal says nothing is held any more (the hold
expired or was cancelled: ``AuthorizationGone``, or is unknown to the provider) the saved
method is charged for it at once; a card decline at capture leaves it owed for staff, who know
whether the hold still stands. Once nothing is owed on such a receipt (paid, written off, or
taken off by founded disputes), a hold that still stands is released. Any other error leaves
the outcome unknown — the provider may be unreachable, or the money moved and the answer was
lost — so the charge stays pending and
the visit ``checking_out``: a retried exit or the next start repeats the call with the same
key, which returns the first call's result if it went through.

A cart above the hold: the exit captures the hold (a capture can take no more) and the rest is
the visit's ``balance_owed``, recorded with the capture's success. A provider that can charge
the saved payment method (``payments.base.ChargesSavedMethod``) is asked for it at once, once,
under ``visit:<id>:balance`` (a ``capture`` charge of its own); collected, the visit is
``charged`` as if the hold had been enough. Refused (or a provider that cannot), the balance
stays owed: the visit is ``in_review``, :func:`owed_balances` lists it for staff, and its
shopper is refused at the next entry (409 ``balance_owed``) until it is settled by
:func:`collect_balance` (a new attempt under ``visit:<id>:balance:<n>``) or written off
(:func:`write_off_balance`). An attempt whose outcome is unknown is repeated with its key by
:func:`resume_checkouts` (at start and on the housekeeping timer), never under a new one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from walkout.checkout.money import Money
from walkout.service import receipting
from walkout.service.balances import (
    balance_charges,
    balance_in_flight,
    next_balance_key,
    release_refused_hold,
    resume_hold_releases,
)
from walkout.service.carts import LineIn, cart_total, receipt_lines
from walkout.service.clock import aware
from walkout.service.deps import Deps
from walkout.service.errors import ServiceError, not_found
from walkout.service.models import (
    CartLine,
    Charge,
    PaymentMethod,
    Receipt,
    ReceiptLine,
    Visit,
)
from walkout.service.payments.base import (
    AuthorizationGone,
    ChargesSavedMethod,
    PaymentError,
    UnknownPayment,
    is_final,
)
from walkout.service.payments.reported import hold_gone

log = logging.getLogger("walkout.service.checkout")

#: how a visit's balance was settled (``visits.balance_settlement``)
SETTLED_CHARGED, SETTLED_WRITTEN_OFF = "charged", "written_off"
#: a provider call whose outcome is still unknown this long after it was first made is shown
#: to staff (:func:`unconfirmed_charges`): longer than any outage the retries ride out
UNCONFIRMED_AFTER = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class LineRequest:
    line_key: str
    product_id: str
    quantity: int
    event_id: str
    confidence: float = 1.0
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class ExitResult:
    visit_id: str
    state: str
    receipt_id: str
    total: Money
    charged: Money


def insert_ignore(s: Session, model: type, values: list[dict[str, object]],
                  keys: list[str]) -> int:
    """INSERT ... ON CONFLICT (keys) DO NOTHING, on SQLite and PostgreSQL alike; returns how
    many rows were new."""
    if not values:
        return 0
    ins = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
    # RETURNING counts the new rows on both (a multi-row INSERT's rowcount is -1 on psycopg)
    stmt = ins(model).values(values).on_conflict_do_nothing(index_elements=keys)
    return len(s.execute(stmt.returning(model.id)).all())  # type: ignore[attr-defined]


def add_lines(d: Deps, visit_id: str, lines: list[LineRequest]) -> int:
    """Commit cart lines of an open visit; returns how many were new (duplicates are no-ops)."""
    products = d.store.products
    for ln in lines:
        if ln.product_id not in products:
            raise ServiceError(422, "unknown_product", f"unknown product {ln.product_id!r}")
        if ln.quantity == 0:
            raise ServiceError(422, "zero_quantity", "quantity must not be 0")
    now = d.clock.now()
    with d.sessions.begin() as s:
        v = s.get(Visit, visit_id, with_for_update=True)
        if v is None:
            raise not_found("visit")
        if v.state != "open":
            raise ServiceError(409, "visit_not_open", f"visit is {v.state}: its cart is closed")
        return insert_ignore(s, CartLine, [
            {"visit_id": visit_id, "line_key": ln.line_key, "product_id": ln.product_id,
             "name": products[ln.product_id].name, "quantity": ln.quantity,
             "unit_price": products[ln.product_id].price, "currency": v.currency,
             "event_id": ln.event_id, "confidence": ln.confidence, "t": ln.t, "recorded_at": now}
            for ln in lines], ["visit_id", "line_key"])


def visit_lines(s: Session, visit_id: str) -> list[LineIn]:
    rows = s.scalars(select(CartLine).where(CartLine.visit_id == visit_id).order_by(CartLine.id))
    return [LineIn(r.product_id, r.name, r.quantity, Decimal(r.unit_price), r.currency,
                   r.event_id) for r in rows]


def exit_visit(d: Deps, visit_id: str, needs_review: bool = False,
               mail: bool = True) -> ExitResult:
    """Close the visit: receipt from the committed ledger, then capture it (or release).

    The answer is ``checking_out`` while the provider's outcome is unknown: the exit (or the
    next start) repeats the call with the same key. ``mail`` False leaves the e-mail to the
    caller (the API sends it after answering; a crash before it is caught by
    :func:`receipting.resume_mail` on the next start)."""
    now = d.clock.now()
    with d.sessions.begin() as s:
        v = s.get(Visit, visit_id, with_for_update=True)
        if v is None:
            raise not_found("visit")
        if v.state in ("authorizing", "refused"):
            raise ServiceError(409, "visit_not_open", f"visit is {v.state}")
        frozen = None
        if v.state == "open":
            frozen = _freeze(d, s, v, needs_review)
            v.state, v.exited_at = "checking_out", now
    out = _settle(d, visit_id, frozen)
    if mail:
        receipting.mail_receipt(d, out.receipt_id)  # once: a retried exit finds it sent
    return out


class _Frozen(NamedTuple):
    """What settling a visit needs, as its frozen receipt and pending charge hold it."""

    auth_id: str | None
    state: str
    receipt_id: str
    total: Money
    kind: str
    amount: Money
    key: str
    review: bool  # the visit goes to staff: the receipt needs review, or the hold was short
    status: str  # the charge's: pending | succeeded | failed
    #: the newest cart line the receipt was frozen from (None when read back: not known)
    last_line: int | None
    needs_review: bool = False  # the receipt's own flag


def _freeze(d: Deps, s: Session, v: Visit, needs_review: bool) -> _Frozen:
    lines = visit_lines(s, v.id)
    last_line = s.scalar(select(func.max(CartLine.id)).where(CartLine.visit_id == v.id)) or 0
    rlines = receipt_lines(lines, v.currency)
    total = cart_total(lines, v.currency)
    rec = Receipt(visit_id=v.id, currency=v.currency, total=total.amount,
                  needs_review=needs_review, issued_at=d.clock.now())
    s.add(rec)
    s.flush()
    taxes = d.store.product_tax  # snapshotted: a later catalogue change leaves it as issued
    for i, rl in enumerate(rlines):
        cls, rate = taxes.get(rl.product_id, (None, None))
        s.add(ReceiptLine(receipt_id=rec.id, position=i, product_id=rl.product_id, name=rl.name,
                          quantity=rl.quantity, unit_price=rl.unit_price.amount,
                          amount=rl.amount.amount, events=json.dumps(list(rl.events)),
                          tax_class=cls, tax_rate=rate))
    hold = Money(Decimal(v.hold_amount), v.currency)
    kind = "release" if total.is_zero else "capture"
    amount = min(total, hold) if kind == "capture" else hold
    key = f"visit:{v.id}:{kind}"
    s.add(Charge(visit_id=v.id, kind=kind, idempotency_key=key,
                 provider=d.provider.name, amount=amount.amount, currency=v.currency,
                 status="pending", created_at=d.clock.now()))
    stored = Decimal("0.0001")  # as MONEY keeps them: the answer is the same as on a resume
    total = Money(total.amount.quantize(stored), total.currency)
    amount = Money(amount.amount.quantize(stored), amount.currency)
    return _Frozen(v.auth_id, "checking_out", rec.id, total, kind, amount, key,
                   needs_review or (kind == "capture" and amount < total), "pending", last_line,
                   needs_review)


def _read(d: Deps, visit_id: str) -> _Frozen:
    """Step 1's values read back from the receipt and the exit's charge (a resume, a retry)."""
    with d.sessions() as s:
        v = s.get(Visit, visit_id)
        rec = s.scalar(select(Receipt).where(Receipt.visit_id == visit_id))
        ch = s.scalar(select(Charge).where(  # the exit's (a review may release later)
            Charge.visit_id == visit_id,
            Charge.idempotency_key.in_((f"visit:{visit_id}:capture",
                                        f"visit:{visit_id}:release"))))
        assert v is not None and rec is not None and ch is not None
        total = Money(Decimal(rec.total), rec.currency)
        amount = Money(Decimal(ch.amount), ch.currency)
        return _Frozen(v.auth_id, v.state, rec.id, total, ch.kind, amount, ch.idempotency_key,
                       rec.needs_review or (ch.kind == "capture" and amount < total),
                       ch.status, None, rec.needs_review)


def settle(d: Deps, visit_id: str, *, catch_up: bool = True) -> ExitResult:
    """Settle a visit left ``checking_out`` (repeating its pending charge with the same key),
    or answer as it was settled. ``catch_up`` False: the caller revises the receipt itself."""
    return _settle(d, visit_id, catch_up=catch_up)


def _settle(d: Deps, visit_id: str, frozen: _Frozen | None = None, *,
            catch_up: bool = True) -> ExitResult:
    """Steps 2-3 of the exit; ``frozen``: step 1's values (else read back, as on a resume)."""
    f = frozen or _read(d, visit_id)
    zero = Money.zero(f.total.currency)
    if f.state != "checking_out":  # settled before: answer as then
        captured = f.amount if f.kind == "capture" and f.status == "succeeded" else zero
        return ExitResult(visit_id, f.state, f.receipt_id, f.total,
                          captured + _balance_paid(d, visit_id, f.total.currency))
    assert f.auth_id is not None
    try:
        if f.kind == "capture":
            with d.sessions() as s:  # the provider said the hold is gone: never capture blind
                gone = hold_gone(s, f.auth_id)
            if gone is not None:
                raise AuthorizationGone(gone)
            ref: str | None = d.provider.capture(f.auth_id, f.amount, f.key).capture_id
        else:
            d.provider.release(f.auth_id, f.key)
            ref = None
    except PaymentError as e:
        final = is_final(e)
        balance_key = None
        with d.sessions.begin() as s:
            s.execute(update(Charge).where(Charge.idempotency_key == f.key,
                                           Charge.status == "pending")
                      .values(status="failed" if final else "pending", error=e.reason[:300]))
            moved = final and s.execute(update(Visit).where(
                Visit.id == visit_id, Visit.state == "checking_out")
                .values(state="in_review")).rowcount
            if moved and f.kind == "capture":  # nothing was taken: the whole receipt is owed
                balance_key = owe(d, s, visit_id, f.total, collect=_hold_is_gone(e))
        if not final:
            log.warning("visit %s: %s outcome unknown, kept pending for a retry with its key: "
                        "%s", visit_id, f.kind, e.reason)
            return ExitResult(visit_id, "checking_out", f.receipt_id, f.total, zero)
        log.warning("visit %s: %s refused: %s", visit_id, f.kind, e.reason)
        charged = zero
        if balance_key is not None:
            charged = collect(d, visit_id, balance_key, clear_review=not f.needs_review) or zero
        if catch_up and _catch_up(d, visit_id, f.last_line):
            return _settle(d, visit_id, catch_up=False)
        return ExitResult(visit_id, _state(d, visit_id), f.receipt_id, f.total, charged)
    final_state = "in_review" if f.review else ("charged" if f.kind == "capture" else "released")
    short = f.total - f.amount if f.kind == "capture" else zero
    balance_key = None
    with d.sessions.begin() as s:
        s.execute(update(Charge).where(Charge.idempotency_key == f.key)
                  .values(status="succeeded", settled_at=d.clock.now(),
                          provider_ref=ref, error=None))
        moved = s.execute(update(Visit).where(Visit.id == visit_id,
                                              Visit.state == "checking_out")
                          .values(state=final_state)).rowcount
        if moved and short.amount > 0:  # the cart was above the hold: the rest is owed
            balance_key = owe(d, s, visit_id, short)
    charged = f.amount if f.kind == "capture" else zero
    if balance_key is not None:
        paid = collect(d, visit_id, balance_key, clear_review=not f.needs_review)
        if paid is not None:
            charged, final_state = charged + paid, _state(d, visit_id)
    if catch_up and _catch_up(d, visit_id, f.last_line):
        return _settle(d, visit_id, catch_up=False)  # the revised receipt's answer
    return ExitResult(visit_id, final_state, f.receipt_id, f.total, charged)


def _catch_up(d: Deps, visit_id: str, last_line: int | None) -> bool:
    """Revise the receipt when a review verdict's lines reached the cart ledger while the
    exit's money was in flight (``revisions.revise`` waits for a visit to settle): the verdict
    is applied now instead of being lost. Returns whether it revised."""
    with d.sessions() as s:
        if last_line is not None:  # the usual case: nothing was appended since the freeze
            newest = s.scalar(select(func.max(CartLine.id))
                              .where(CartLine.visit_id == visit_id)) or 0
            if newest <= last_line:
                return False
        v = s.get(Visit, visit_id)
        rec = s.scalar(select(Receipt).where(Receipt.visit_id == visit_id))
        assert v is not None and rec is not None
        frozen = [(r.product_id, r.quantity, Decimal(r.unit_price)) for r in s.scalars(
            select(ReceiptLine).where(ReceiptLine.receipt_id == rec.id)
            .order_by(ReceiptLine.position))]
        ledger = [(rl.product_id, rl.quantity, rl.unit_price.amount)
                  for rl in receipt_lines(visit_lines(s, visit_id), v.currency)]
        if frozen == ledger:
            return False
        needs_review = rec.needs_review
    from walkout.service import revisions  # revisions builds on this module

    revisions.revise(d, visit_id, needs_review)
    return True


def resume_checkouts(d: Deps) -> int:
    """Settle visits a crash, or a provider outage, left between their frozen receipt and the
    provider's answer, and repeat the balance charges and hold releases whose outcome is
    unknown (each retried with its own key: charged or released once)."""
    with d.sessions() as s:
        ids = list(s.scalars(select(Visit.id).where(Visit.state == "checking_out")))
        balances = list(s.execute(select(Charge.visit_id, Charge.idempotency_key,
                                         Receipt.needs_review)
                                  .join(Receipt, Receipt.visit_id == Charge.visit_id)
                                  .where(Charge.status == "pending", _BALANCE_KEYS)
                                  .order_by(Charge.id)).all())
    for vid in ids:
        try:
            _settle(d, vid)
        except Exception:  # not a payment answer: still pending, and the start goes on
            log.exception("visit %s: settling its exit failed; its charge stays pending "
                          "and is retried with its key on the next start", vid)
    for vid, key, needs_review in balances:
        try:  # collected, a visit in review only for want of the money is charged
            collect(d, vid, key, clear_review=not needs_review)
        except Exception:
            log.exception("visit %s: its balance charge %s failed; it stays pending and is "
                          "retried with its key", vid, key)
    try:
        resume_hold_releases(d)
    except Exception:
        log.exception("repeating the hold releases whose outcome is unknown failed; they stay "
                      "pending and are retried with their keys")
    return len(ids)


# ---- a cart above the hold: the balance ---------------------------------------------------------

#: every balance charge's key: ``visit:<id>:balance``, then ``visit:<id>:balance:<n>``
_BALANCE_KEYS = or_(Charge.idempotency_key.like("visit:%:balance"),
                    Charge.idempotency_key.like("visit:%:balance:%"))


def _balance_paid(d: Deps, visit_id: str, currency: str) -> Money:
    """What the visit's balance charges took."""
    with d.sessions() as s:
        n = s.scalar(select(func.coalesce(func.sum(Charge.amount), 0)).where(
            Charge.visit_id == visit_id, Charge.status == "succeeded",
            balance_charges(visit_id))) or 0
    return Money(Decimal(n), currency)


def _state(d: Deps, visit_id: str) -> str:
    with d.sessions() as s:
        v = s.get(Visit, visit_id)
        assert v is not None
        return v.state


def _hold_is_gone(e: PaymentError) -> bool:
    """Whether a refused capture leaves nothing held (the hold expired, was cancelled, or the
    provider does not know it), so that charging the saved method cannot take the money twice.
    A card decline at capture says nothing of the hold: staff collect that one."""
    return isinstance(e, AuthorizationGone | UnknownPayment)


def owe(d: Deps, s: Session, visit_id: str, short: Money, *,
         collect: bool = True) -> str | None:
    """Record ``short`` owed on the visit (in the transaction that found it short: the
    capture's success, its refusal, a revision) and, when the provider can charge the saved
    method and ``collect``, the pending charge that collects it: its key (None: it stays owed
    for staff). A visit whose earlier balance was settled (charged, or written off) and that a
    later revision leaves short again owes the new difference: the balance is open again,
    collected under the next attempt's key, so a receipt that rises twice is asked for twice
    (what was written off stays in ``balance_written_off`` and is not asked for again)."""
    s.execute(update(Visit).where(Visit.id == visit_id, or_(
        Visit.balance_owed.is_(None), Visit.balance_settled_at.is_not(None)))
              .values(balance_owed=short.amount, balance_settled_at=None,
                      balance_settlement=None, balance_settled_by=None, balance_note=None))
    log.warning("visit %s: %s more than was captured is owed by the shopper", visit_id, short)
    if not collect or not isinstance(d.provider, ChargesSavedMethod):
        return None
    key = next_balance_key(s, visit_id)
    s.add(Charge(visit_id=visit_id, kind="capture", idempotency_key=key,
                 provider=d.provider.name, amount=short.amount, currency=short.currency,
                 status="pending", created_at=d.clock.now()))
    return key


def collect(d: Deps, visit_id: str, key: str, *, clear_review: bool = False) -> Money | None:
    """Steps 2-3 of a balance charge (pending under ``key``): what it took, or None (refused:
    the balance stays owed; unknown: pending, repeated with ``key``). Collected, the balance
    is settled; ``clear_review``: the visit was sent to staff only for the balance (its exit,
    just now), so it is ``charged`` now."""
    with d.sessions() as s:
        ch = s.scalar(select(Charge).where(Charge.idempotency_key == key))
        v = s.get(Visit, visit_id)
        if ch is None or v is None or ch.status != "pending":
            return None
        amount = Money(Decimal(ch.amount), ch.currency)
        payer = _payer(s, v)
    provider = d.provider
    if payer is None or not isinstance(provider, ChargesSavedMethod):
        return None
    try:
        got = provider.charge(payer, amount, key)
    except PaymentError as e:
        final = is_final(e)
        with d.sessions.begin() as s:
            s.execute(update(Charge).where(Charge.idempotency_key == key,
                                           Charge.status == "pending")
                      .values(status="failed" if final else "pending", error=e.reason[:300]))
        log.warning("visit %s: its balance of %s %s: %s", visit_id, amount,
                    "was refused, it stays owed" if final else
                    "not confirmed, retried with its key", e.reason)
        return None
    now = d.clock.now()
    rest = Decimal(0)
    with d.sessions.begin() as s:
        s.execute(update(Charge).where(Charge.idempotency_key == key)
                  .values(status="succeeded", settled_at=d.clock.now(),
                          provider_ref=got.capture_id, error=None))
        v = s.get(Visit, visit_id, with_for_update=True)
        assert v is not None
        if v.balance_settled_at is None:
            # a revision may have moved the balance while this charge was in flight: what it
            # did not cover is still owed (charged next, under the next attempt's key); what
            # it took above the balance goes back with the receipt's money settled again
            rest = Decimal(v.balance_owed or 0) - amount.amount
            if rest > 0:
                v.balance_owed = rest
                nxt = next_balance_key(s, visit_id)
                s.add(Charge(visit_id=visit_id, kind="capture", idempotency_key=nxt,
                             provider=d.provider.name, amount=rest, currency=v.currency,
                             status="pending", created_at=now))
            else:
                v.balance_settled_at, v.balance_settlement = now, SETTLED_CHARGED
                if clear_review and v.state == "in_review":
                    v.state = "charged"
        needs_review = bool(s.scalar(select(Receipt.needs_review)
                                     .where(Receipt.visit_id == visit_id)))
    log.info("visit %s: its balance of %s was charged", visit_id, amount)
    if rest > 0:
        log.warning("visit %s: a revision raised its balance while %s was being charged: "
                    "%s %s more is charged", visit_id, amount, rest, amount.currency)
        collect(d, visit_id, nxt, clear_review=clear_review)
        return amount
    if rest < 0:
        from walkout.service import revisions  # revisions builds on this module

        revisions.revise(d, visit_id, needs_review)  # refunds what it took above the balance
    release_refused_hold(d, visit_id)
    return amount


def _payer(s: Session, v: Visit) -> str | None:
    """The method a balance is charged to: the account's newest (after a decline the shopper
    adds another card, and every later attempt is made on it), else the visit's own."""
    pm = s.scalar(select(PaymentMethod).where(PaymentMethod.account_id == v.account_id)
                  .order_by(PaymentMethod.created_at.desc(), PaymentMethod.id.desc()).limit(1))
    pm = pm or s.get(PaymentMethod, v.payment_method_id)
    return pm.provider_ref if pm is not None else None


def _owing(s: Session, visit_id: str) -> Visit:
    v = s.get(Visit, visit_id, with_for_update=True)
    if v is None:
        raise not_found("visit")
    if not v.balance_owed:
        raise ServiceError(409, "no_balance", "this visit owes nothing above what was captured")
    return v


def collect_balance(d: Deps, visit_id: str) -> dict[str, object]:
    """Try to collect a visit's balance again (an operator, e.g. after the shopper updated
    their card): an attempt whose outcome is unknown is repeated with its key, otherwise a new
    one is made under ``visit:<id>:balance:<n>``. Settled already: answered as it is. 409
    ``no_balance``: nothing owed; ``cannot_charge``: the provider cannot charge a saved
    payment method (write it off, or collect it with the provider)."""
    # one attempt at a time: the visit's row lock (PostgreSQL) or the write lock taken at
    # BEGIN IMMEDIATE (SQLite) makes a second one wait, then take up the first's key
    with d.sessions.begin() as s:
        v = _owing(s, visit_id)
        if v.balance_settled_at is not None:
            return _balance_json(s, v)
        if not isinstance(d.provider, ChargesSavedMethod):
            raise ServiceError(409, "cannot_charge", f"the {d.provider.name} provider cannot "
                               "charge a saved payment method: collect it there, or write it "
                               "off")
        tries = list(s.scalars(select(Charge).where(Charge.visit_id == visit_id,
                                                    balance_charges(visit_id))))
        needs_review = bool(s.scalar(select(Receipt.needs_review)
                                     .where(Receipt.visit_id == visit_id)))
        pending = [c.idempotency_key for c in tries if c.status == "pending"]
        if pending:
            key = pending[0]
        else:
            key = next_balance_key(s, visit_id)
            s.add(Charge(visit_id=visit_id, kind="capture", idempotency_key=key,
                         provider=d.provider.name, amount=Decimal(v.balance_owed),
                         currency=v.currency, status="pending", created_at=d.clock.now()))
    collect(d, visit_id, key, clear_review=not needs_review)
    with d.sessions() as s:
        v = s.get(Visit, visit_id)
        assert v is not None
        return _balance_json(s, v)


def write_off_balance(d: Deps, visit_id: str, by: str, note: str | None = None
                      ) -> dict[str, object]:
    """An operator (``by``: their account id) settles a visit's balance without collecting it:
    its shopper may enter again. Idempotent: a balance settled already (written off, or
    charged) is answered as it is. 409 ``no_balance``: nothing owed;
    ``balance_collecting``: a charge of it is in flight (outcome unknown): wait for it."""
    with d.sessions.begin() as s:
        v = _owing(s, visit_id)
        if v.balance_settled_at is None:
            if balance_in_flight(s, visit_id):
                raise ServiceError(409, "balance_collecting",
                                   "a charge of this balance is in flight: its outcome comes "
                                   "first (retried on the service's timer)")
            v.balance_settled_at, v.balance_settlement = d.clock.now(), SETTLED_WRITTEN_OFF
            v.balance_written_off = Decimal(v.balance_written_off or 0) + v.balance_owed
            v.balance_settled_by, v.balance_note = by, note[:500] if note else None
            if v.state == "in_review" and not s.scalar(
                    select(Receipt.needs_review).where(Receipt.visit_id == visit_id)):
                v.state = "charged"  # it was in review only for want of the money
            log.warning("visit %s: its balance of %s %s was written off by %s", visit_id,
                        v.balance_owed, v.currency, by)
        out = _balance_json(s, v)
    release_refused_hold(d, visit_id)  # nothing is owed now: a hold left standing goes
    return out


def owed_by(s: Session, account_id: str) -> list[dict[str, object]]:
    """What a shopper sees of her balances still owed, oldest first (the app's cart shows
    them, and ``POST /v1/me/balances/{visit}/pay`` pays one)."""
    return [{"visit_id": v.id, "receipt_id": s.scalar(select(Receipt.id).where(
                Receipt.visit_id == v.id)),
             "amount": str(Money(Decimal(v.balance_owed or 0), v.currency).amount),
             "currency": v.currency, "exited_at": _iso(v.exited_at)}
            for v in s.scalars(select(Visit).where(
                Visit.account_id == account_id, Visit.balance_owed > 0,
                Visit.balance_settled_at.is_(None)).order_by(Visit.exited_at, Visit.id))]


def pay_own_balance(d: Deps, account_id: str, visit_id: str) -> dict[str, object]:
    """The shopper pays a balance she owes herself, with her newest payment method (she may
    have added one after a decline): :func:`collect_balance` for her own visit only. Paid (or
    settled already): the balance as she sees it. 404: not her visit; 409 ``no_balance``:
    nothing owed; 402 ``payment_declined``: refused, still owed; 503 ``payment_unavailable``:
    the outcome is not known yet (retried with its key; it must not be paid twice)."""
    with d.sessions() as s:
        v = s.get(Visit, visit_id)
        if v is None or v.account_id != account_id:
            raise not_found("visit")
    out = collect_balance(d, visit_id)
    if not out["settled"]:
        last = out["last_attempt"]
        if isinstance(last, dict) and last["status"] == "failed":
            raise ServiceError(402, "payment_declined",
                               f"the card was refused ({last['error']}): add another card and "
                               "pay again")
        raise ServiceError(503, "payment_unavailable",
                           "the payment is not confirmed yet: it is retried by itself, look "
                           "again in a few minutes")
    return {k: out[k] for k in ("visit_id", "receipt_id", "amount", "currency", "settled")}


def owed_balances(d: Deps, *, include_settled: bool = False,
                  since: datetime | None = None) -> list[dict[str, object]]:
    """The visits whose receipt came to more than was captured and whose balance is still
    owed, oldest first (``include_settled``: the settled ones too; ``since``: exited since),
    each with its receipt, amount, its last collection attempt and, once settled, how: what
    the operators' payments view lists."""
    with d.sessions() as s:
        q = select(Visit).where(Visit.balance_owed > 0)
        if not include_settled:
            q = q.where(Visit.balance_settled_at.is_(None))
        if since is not None:
            q = q.where(Visit.exited_at >= since)
        return [_balance_json(s, v) for v in s.scalars(q.order_by(Visit.exited_at, Visit.id))]


def _balance_json(s: Session, v: Visit) -> dict[str, object]:
    last = s.scalar(select(Charge).where(Charge.visit_id == v.id, balance_charges(v.id))
                    .order_by(Charge.id.desc()).limit(1))
    owed = Money(Decimal(v.balance_owed or 0), v.currency)
    return {
        "visit_id": v.id,
        "receipt_id": s.scalar(select(Receipt.id).where(Receipt.visit_id == v.id)),
        "state": v.state,
        "exited_at": _iso(v.exited_at),
        "amount": str(owed.amount), "currency": owed.currency,
        "settled": v.balance_settled_at is not None,
        "settlement": v.balance_settlement,
        "settled_at": _iso(v.balance_settled_at),
        "settled_by": v.balance_settled_by, "note": v.balance_note,
        # written off over the visit's life: a receipt a revision raised again after a
        # write-off owes only the new difference
        "written_off": str(Money(Decimal(v.balance_written_off or 0), v.currency).amount),
        "last_attempt": None if last is None else {
            "key": last.idempotency_key, "status": last.status, "error": last.error,
            "at": _iso(last.created_at)},
    }


def unconfirmed_charges(d: Deps, older_than: timedelta = UNCONFIRMED_AFTER
                        ) -> list[dict[str, object]]:
    """Provider calls whose outcome is still unknown ``older_than`` after they were first made,
    oldest first: the provider unreachable that long, or an error it does not report as a
    refusal (docs/service.md, Known limits). The service goes on repeating each with its own
    key, so nothing is charged twice, but until it is confirmed nobody knows where the money
    is: a receipt waits, a hold may stay on a card. Staff see them on the payments card and
    settle with the provider one that never resolves."""
    cutoff = d.clock.now() - older_than
    with d.sessions() as s:
        rows = s.scalars(select(Charge).where(Charge.status == "pending",
                                              Charge.created_at < cutoff)
                         .order_by(Charge.created_at, Charge.id))
        return [{"visit_id": ch.visit_id, "kind": _what(ch), "key": ch.idempotency_key,
                 "amount": str(Money(Decimal(ch.amount), ch.currency).amount),
                 "currency": ch.currency, "since": _iso(ch.created_at),
                 "error": ch.error} for ch in rows]


def _iso(at: datetime | None) -> str | None:
    """A stored time as ISO 8601 with its zone (SQLite gives it back without one: UTC)."""
    return aware(at).isoformat() if at is not None else None


def _what(ch: Charge) -> str:
    """What a charge is to staff: its kind, a balance charge told apart from a capture."""
    if ch.kind == "capture" and ":balance" in ch.idempotency_key:
        return "balance"
    return ch.kind
