"""Entry at the gate: QR code of an app account, a bank card, or a party on one scan.

Admission is two short transactions around one provider call, never a provider call inside a
transaction: (1) consume the code's nonce and create the visit in state ``authorizing`` with a
pending pre-auth charge; (2) pre-authorise through the provider with the visit's idempotency
key; (3) record the result and open the visit (or refuse it). A crash between the steps leaves
an ``authorizing`` visit that :func:`resume_authorizing` finishes with the same key, so a
restart never holds money twice.
"""

from __future__ import annotations

import secrets
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from walkout.service.accounts import card_guest
from walkout.service.deps import Deps
from walkout.service.entry_codes import make_code, read_code
from walkout.service.errors import ServiceError
from walkout.service.models import Account, Charge, EntryCode, PaymentMethod, Visit, new_id
from walkout.service.money import Money
from walkout.service.payments.base import PaymentDeclined, PaymentError

#: visit states in which the shopper is (still) inside the store
INSIDE = ("authorizing", "open", "checking_out")


@dataclass(frozen=True, slots=True)
class IssuedCode:
    code: str
    expires_in_s: float


@dataclass(frozen=True, slots=True)
class Admission:
    visit_id: str
    credential: str  # what the gate puts in its GateEvent for the engine
    party_size: int
    hold: Money


def issue_code(d: Deps, account_id: str) -> IssuedCode:
    """A fresh entry code for the app to show (the app asks again when it expires)."""
    now = d.clock.now().replace(microsecond=0)
    nonce = secrets.token_hex(16)
    with d.sessions.begin() as s:
        acct = s.get(Account, account_id)
        if acct is None or acct.kind != "app":
            raise ServiceError(403, "forbidden", "entry codes are for app shopper accounts")
        if s.scalar(select(PaymentMethod.id).where(PaymentMethod.account_id == account_id)) is None:
            raise ServiceError(409, "no_payment_method",
                               "add a payment method before asking for an entry code")
        ttl = d.settings.entry_code_ttl_s
        s.add(EntryCode(nonce=nonce, account_id=account_id, issued_at=now,
                        expires_at=now + timedelta(seconds=ttl)))
    secret = d.settings.entry_secret.get_secret_value().encode()
    return IssuedCode(make_code(secret, account_id, nonce, now), ttl)


def _party(d: Deps, party_size: int) -> None:
    if not 1 <= party_size <= d.settings.max_party_size:
        raise ServiceError(422, "bad_party_size",
                           f"party_size must be 1 to {d.settings.max_party_size}, got {party_size}")


def _hold(d: Deps, party_size: int) -> Money:
    return Money(d.settings.hold_per_person * party_size, d.store.currency)


def _refuse_if_inside(s: Session, account_id: str) -> None:
    inside = s.scalar(select(Visit.id).where(Visit.account_id == account_id,
                                             Visit.state.in_(INSIDE)).limit(1))
    if inside is not None:
        raise ServiceError(409, "already_inside",
                           "this account is already inside the store: one visit at a time "
                           "(bring companions in as a group on one scan)")


def admit_qr(d: Deps, code: str, gate_id: str, party_size: int = 1,
             credential: str | None = None) -> Admission:
    """Admit the holder of an entry code (and ``party_size - 1`` companions); ``credential``:
    the gate's own for this admission (see :func:`admit_card`)."""
    _party(d, party_size)
    now = d.clock.now()
    secret = d.settings.entry_secret.get_secret_value().encode()
    claims = read_code(secret, code, now, d.settings.entry_code_ttl_s,
                       d.settings.entry_code_grace_s)
    visit_id = new_id()
    with d.sessions.begin() as s:
        used = s.execute(
            update(EntryCode)
            .where(EntryCode.nonce == claims.nonce, EntryCode.account_id == claims.account_id,
                   EntryCode.used_at.is_(None))
            .values(used_at=now, visit_id=visit_id)
        ).rowcount
        if used != 1:
            known = s.get(EntryCode, claims.nonce)
            if known is None:
                raise ServiceError(400, "code_unknown", "entry code was never issued")
            raise ServiceError(409, "code_used",
                               "entry code already used: each code admits once; show the "
                               "current code from your own app")
        pm = s.scalar(select(PaymentMethod).where(PaymentMethod.account_id == claims.account_id)
                      .order_by(PaymentMethod.created_at.desc()).limit(1))
        if pm is None:
            raise ServiceError(409, "no_payment_method", "account has no payment method")
        _refuse_if_inside(s, claims.account_id)
        if credential and s.scalar(select(Visit.id).where(Visit.credential == credential)):
            raise ServiceError(409, "credential_in_use",
                               "the gate's credential belongs to another visit already")
        pending = _new_visit(d, s, visit_id, claims.account_id, pm.id, gate_id, party_size,
                             credential)
        pending = pending._replace(payer=pm.provider_ref)
    return _authorize(d, visit_id, pending)


def admit_card(d: Deps, card_token: str, gate_id: str, email: str | None = None,
               party_size: int = 1, credential: str | None = None) -> Admission:
    """Admit the holder of a bank card, known or not: the card token is the identity.

    ``credential`` is the gate's own credential when the gate event came from a sensor source
    (it must match the engine's sessions); by default the visit gets one.
    """
    _party(d, party_size)
    try:
        account_id, pm_id = card_guest(d, card_token, email)
    except ValueError as e:
        raise ServiceError(422, "card_number_refused", str(e)) from None
    visit_id = new_id()
    with d.sessions.begin() as s:
        _refuse_if_inside(s, account_id)
        pending = _new_visit(d, s, visit_id, account_id, pm_id, gate_id, party_size, credential)
    return _authorize(d, visit_id, pending._replace(payer=card_token))


class _Pending(NamedTuple):
    """What step 2 needs, as step 1 committed it (``payer``: the provider's token)."""

    hold: Money
    payer: str
    party_size: int
    credential: str


def _new_visit(d: Deps, s: Session, visit_id: str, account_id: str, pm_id: str, gate_id: str,
               party_size: int, credential: str | None = None) -> _Pending:
    hold = _hold(d, party_size)
    now = d.clock.now()
    credential = credential or f"visit-{visit_id}"
    s.add(Visit(id=visit_id, credential=credential, account_id=account_id,
                payment_method_id=pm_id, gate_id=gate_id, party_size=party_size,
                state="authorizing", currency=hold.currency, hold_amount=hold.amount,
                entered_at=now))
    s.flush()
    s.add(Charge(visit_id=visit_id, kind="preauth", idempotency_key=f"visit:{visit_id}:preauth",
                 provider=d.provider.name, amount=hold.amount, currency=hold.currency,
                 status="pending", created_at=now))
    return _Pending(hold, "", party_size, credential)


def _authorize(d: Deps, visit_id: str, pending: _Pending | None = None) -> Admission:
    """Steps 2 and 3: the provider call, outside any transaction, then its record.
    ``pending``: step 1's values (else read back, as on a resume)."""
    if pending is None:
        with d.sessions() as s:
            v = s.get(Visit, visit_id)
            assert v is not None
            pm = s.get(PaymentMethod, v.payment_method_id)
            assert pm is not None
            pending = _Pending(Money(Decimal(v.hold_amount), v.currency), pm.provider_ref,
                               v.party_size, v.credential)
    hold, payer, party, cred = pending
    key = f"visit:{visit_id}:preauth"
    try:
        auth = d.provider.preauthorize(payer, hold, key)
    except PaymentError as e:
        with d.sessions.begin() as s:
            v = s.get(Visit, visit_id)
            assert v is not None
            v.state = "refused"
            s.execute(update(Charge).where(Charge.idempotency_key == key)
                      .values(status="failed", error=e.reason[:300]))
        code = "payment_declined" if isinstance(e, PaymentDeclined) else "payment_failed"
        raise ServiceError(402, code, f"pre-authorisation refused: {e.reason}") from None
    with d.sessions.begin() as s:
        v = s.get(Visit, visit_id)
        assert v is not None
        if v.state == "authorizing":
            v.state, v.auth_id = "open", auth.auth_id
        s.execute(update(Charge).where(Charge.idempotency_key == key)
                  .values(status="succeeded", provider_ref=auth.auth_id))
    return Admission(visit_id, cred, party, hold)


def resume_authorizing(d: Deps) -> int:
    """Finish admissions a crash interrupted between the visit and its pre-auth record."""
    with d.sessions() as s:
        ids = list(s.scalars(select(Visit.id).where(Visit.state == "authorizing")))
    for vid in ids:
        with suppress(ServiceError):  # a refusal is recorded on the visit
            _authorize(d, vid)
    return len(ids)
