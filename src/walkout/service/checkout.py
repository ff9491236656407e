"""Cart lines in, money out: the visit's ledger, its receipt and its capture or release.

Lines are committed before they are acknowledged and are unique per (visit, line key), so a
line delivered twice or replayed after a restart is stored once. Exit follows the same
three-step pattern as entry: (1) one transaction freezes the receipt from the committed lines
and writes a pending capture (or release) charge; (2) the provider call, outside any
transaction, with the visit's idempotency key; (3) its record. :func:`resume_checkouts` redoes
step 2-3 for visits a crash left in ``checking_out`` — the key makes that charge once.

Only the provider's outright refusal (``payments.base.FINAL_ERRORS``) is recorded as a failed charge
(the visit goes ``in_review``, its hold still open). Any other error leaves the outcome
unknown — the provider may be unreachable, or the money moved and the answer was lost — so the
charge stays pending and the visit ``checking_out``: a retried exit or the next start repeats
the call with the same key, which returns the first call's result if it went through.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from walkout.checkout.money import Money
from walkout.service import receipting
from walkout.service.carts import LineIn, cart_total, receipt_lines
from walkout.service.deps import Deps
from walkout.service.errors import ServiceError, not_found
from walkout.service.models import CartLine, Charge, Receipt, ReceiptLine, Visit
from walkout.service.payments.base import AuthorizationGone, PaymentError, is_final
from walkout.service.payments.reported import hold_gone

log = logging.getLogger("walkout.service.checkout")



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
    review: bool
    status: str  # the charge's: pending | succeeded | failed
    #: the newest cart line the receipt was frozen from (None when read back: not known)
    last_line: int | None


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
                   needs_review or (kind == "capture" and amount < total), "pending", last_line)


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
                       ch.status, None)


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
        done = f.kind == "capture" and f.status == "succeeded"
        return ExitResult(visit_id, f.state, f.receipt_id, f.total, f.amount if done else zero)
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
        with d.sessions.begin() as s:
            s.execute(update(Charge).where(Charge.idempotency_key == f.key,
                                           Charge.status == "pending")
                      .values(status="failed" if final else "pending", error=e.reason[:300]))
            if final:  # refused: nothing moved, the hold is still open; staff take it up
                s.execute(update(Visit).where(Visit.id == visit_id,
                                              Visit.state == "checking_out")
                          .values(state="in_review"))
        if not final:
            log.warning("visit %s: %s outcome unknown, kept pending for a retry with its key: "
                        "%s", visit_id, f.kind, e.reason)
            return ExitResult(visit_id, "checking_out", f.receipt_id, f.total, zero)
        log.warning("visit %s: %s refused: %s", visit_id, f.kind, e.reason)
        if catch_up and _catch_up(d, visit_id, f.last_line):
            return _settle(d, visit_id, catch_up=False)
        return ExitResult(visit_id, "in_review", f.receipt_id, f.total, zero)
    final_state = "in_review" if f.review else ("charged" if f.kind == "capture" else "released")
    with d.sessions.begin() as s:
        s.execute(update(Charge).where(Charge.idempotency_key == f.key)
                  .values(status="succeeded", provider_ref=ref, error=None))
        s.execute(update(Visit).where(Visit.id == visit_id, Visit.state == "checking_out")
                  .values(state=final_state))
    if catch_up and _catch_up(d, visit_id, f.last_line):
        return _settle(d, visit_id, catch_up=False)  # the revised receipt's answer
    return ExitResult(visit_id, final_state, f.receipt_id, f.total,
                      f.amount if f.kind == "capture" else zero)


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
    provider's answer (each retried with its own key: charged once)."""
    with d.sessions() as s:
        ids = list(s.scalars(select(Visit.id).where(Visit.state == "checking_out")))
    for vid in ids:
        try:
            _settle(d, vid)
        except Exception:  # not a payment answer: still pending, and the start goes on
            log.exception("visit %s: settling its exit failed; its charge stays pending "
                          "and is retried with its key on the next start", vid)
    return len(ids)
