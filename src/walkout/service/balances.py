"""What checkout and disputes both need of a visit's balance owed: which charges collect it,
whether one is in flight, and the release of a hold a refused capture may have left standing.

A module of its own because ``checkout`` imports ``receipting``, which imports ``disputes``:
the two cannot import each other, and each kept a copy of these rules before.
"""

from __future__ import annotations

import logging

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from walkout.service.deps import Deps
from walkout.service.models import Charge, Visit
from walkout.service.payments.base import PaymentError, is_final
from walkout.service.payments.reported import hold_gone

log = logging.getLogger("walkout.service.balances")


def balance_charges(visit_id: str) -> ColumnElement[bool]:
    """The charges that collect the visit's balance: ``visit:<id>:balance`` and the later
    attempts ``visit:<id>:balance:<n>``."""
    return or_(Charge.idempotency_key == f"visit:{visit_id}:balance",
               Charge.idempotency_key.like(f"visit:{visit_id}:balance:%"))


def next_balance_key(s: Session, visit_id: str) -> str:
    """The key of the visit's next balance charge: ``visit:<id>:balance``, then
    ``visit:<id>:balance:<n>`` (n: the attempts made before it)."""
    tries = s.scalar(select(func.count(Charge.id)).where(Charge.visit_id == visit_id,
                                                         balance_charges(visit_id))) or 0
    return f"visit:{visit_id}:balance" + (f":{tries}" if tries else "")


def balance_in_flight(s: Session, visit_id: str) -> bool:
    """Whether a charge of the balance is pending (its outcome unknown, retried with its key):
    nothing may settle or lower the balance under it, or it could be paid twice."""
    return s.scalar(select(Charge.id).where(Charge.visit_id == visit_id,
                                            Charge.status == "pending",
                                            balance_charges(visit_id)).limit(1)) is not None


def release_refused_hold(d: Deps, visit_id: str) -> None:
    """Once nothing is owed any more on a receipt whose capture was refused (its balance was
    charged, written off by staff, or taken off by founded disputes), its hold, if it still
    stands (a card decline at capture says nothing of it), is released under
    ``visit:<id>:hold-release``, so the card does not carry it until it lapses. Once only,
    and best effort: a refusal is recorded (the hold was gone), an unknown outcome stays
    pending, repeated with its key by :func:`resume_hold_releases` (at start and on the
    housekeeping timer) and listed among the unconfirmed payments for staff after a while.
    Not while anything is
    still owed: a hold that stands is what staff may yet capture by hand."""
    with d.sessions.begin() as s:
        v = s.get(Visit, visit_id, with_for_update=True)
        if v is None or v.auth_id is None:
            return
        if v.balance_owed and v.balance_settled_at is None:
            return
        refused = s.scalar(select(Charge.status).where(
            Charge.idempotency_key == f"visit:{visit_id}:capture")) == "failed"
        key = f"visit:{visit_id}:hold-release"
        if (not refused or hold_gone(s, v.auth_id) is not None  # the provider said it went
                or s.scalar(select(Charge.id).where(Charge.idempotency_key == key))):
            return
        s.add(Charge(visit_id=visit_id, kind="release", idempotency_key=key,
                     provider=d.provider.name, amount=v.hold_amount, currency=v.currency,
                     status="pending", created_at=d.clock.now()))
        auth_id = v.auth_id
    _release(d, visit_id, auth_id, key)


def resume_hold_releases(d: Deps) -> int:
    """Repeat the hold releases whose outcome is unknown (the provider away, the answer lost),
    each with its own key, so a hold is not left on a card because one call went unanswered;
    returns how many were tried."""
    with d.sessions() as s:
        todo = list(s.execute(select(Charge.visit_id, Charge.idempotency_key, Visit.auth_id)
                              .join(Visit, Visit.id == Charge.visit_id)
                              .where(Charge.status == "pending",
                                     Charge.idempotency_key.like("visit:%:hold-release"))
                              .order_by(Charge.id)).all())
    for visit_id, key, auth_id in todo:
        if auth_id is not None:
            _release(d, visit_id, auth_id, key)
    return len(todo)


def _release(d: Deps, visit_id: str, auth_id: str, key: str) -> None:
    """Steps 2-3 of a pending hold release under ``key``."""
    try:
        d.provider.release(auth_id, key)
    except PaymentError as e:
        with d.sessions.begin() as s:
            s.execute(update(Charge).where(Charge.idempotency_key == key)
                      .values(status="failed" if is_final(e) else "pending",
                              error=e.reason[:300]))
        log.warning("visit %s: releasing the hold of its refused capture: %s", visit_id,
                    e.reason)
        return
    with d.sessions.begin() as s:
        s.execute(update(Charge).where(Charge.idempotency_key == key)
                  .values(status="succeeded", settled_at=d.clock.now(), error=None))
