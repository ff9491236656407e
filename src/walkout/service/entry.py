"""Entry at the gate: QR code of an app account, a bank card, or a party on one scan.

Admission is two short transactions around one provider call, never a provider call inside a
transaction: (1) consume the code's nonce and create the visit in state ``authorizing`` with a
pending pre-auth charge; (2) pre-authorise through the provider with the visit's idempotency
key; (3) record the result and open the visit (or refuse it). A crash between the steps leaves
an ``authorizing`` visit that :func:`resume_authorizing` finishes with the same key, so a
restart never holds money twice.

One visit at a time per account: step 1 locks the account's row first (on PostgreSQL; SQLite
serialises writers already), so a second admission of the same account, at another gate or by
the same card, waits and is then refused; a partial UNIQUE index on the inside visits backs it.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from walkout.cart.sessions import STAFF_PREFIX, is_staff_credential
from walkout.checkout.money import Money
from walkout.service.accounts import card_guest
from walkout.service.deps import Deps
from walkout.service.entry_codes import make_code, read_code
from walkout.service.errors import ServiceError
from walkout.service.models import (
    INSIDE_STATES,
    Account,
    Charge,
    EntryCode,
    PaymentMethod,
    Visit,
    new_id,
)
from walkout.service.payments.base import PaymentDeclined, PaymentError, is_final

log = logging.getLogger("walkout.service.entry")

#: visit states in which the shopper is (still) inside the store
INSIDE = INSIDE_STATES


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


def _lock_account(s: Session, account_id: str) -> None:
    """Hold the account's row until the admission commits: a concurrent admission of the same
    account (or its erasure) waits here, then sees this one's visit. First in the transaction,
    so every path takes its locks in the same order."""
    s.execute(select(Account.id).where(Account.id == account_id).with_for_update())


def _refuse_if_inside(s: Session, account_id: str) -> None:
    inside = s.scalar(select(Visit.id).where(Visit.account_id == account_id,
                                             Visit.state.in_(INSIDE)).limit(1))
    if inside is not None:
        raise ServiceError(409, "already_inside",
                           "this account is already inside the store: one visit at a time "
                           "(bring companions in as a group on one scan)")


def _refuse_if_credential_taken(s: Session, credential: str | None) -> None:
    if credential and s.scalar(select(Visit.id).where(Visit.credential == credential)):
        raise ServiceError(409, "credential_in_use",
                           "the gate's credential belongs to another visit already")


def _lost_race(d: Deps, account_id: str, credential: str | None) -> None:
    """After a UNIQUE violation in step 1: the refusal the checks give now that the concurrent
    admission that won has committed (returns when it was something else)."""
    with d.sessions() as s:
        _refuse_if_inside(s, account_id)
        _refuse_if_credential_taken(s, credential)


def _not_staff(credential: str | None) -> None:
    """A shopper's visit never carries a staff credential: the engine would never charge it."""
    if credential and is_staff_credential(credential):
        raise ServiceError(422, "staff_credential",
                           f"credentials starting with {STAFF_PREFIX!r} are staff badges' "
                           "(POST /v1/gates/{gate}/staff), never a shopper's")


def admit_qr(d: Deps, code: str, gate_id: str, party_size: int = 1,
             credential: str | None = None) -> Admission:
    """Admit the holder of an entry code (and ``party_size - 1`` companions); ``credential``:
    the gate's own for this admission (see :func:`admit_card`)."""
    _party(d, party_size)
    _not_staff(credential)
    now = d.clock.now()
    secret = d.settings.entry_secret.get_secret_value().encode()
    claims = read_code(secret, code, now, d.settings.entry_code_ttl_s,
                       d.settings.entry_code_grace_s)
    visit_id = new_id()
    try:
        pending = _admit_qr_step1(d, claims.account_id, claims.nonce, now, visit_id, gate_id,
                                  party_size, credential)
    except IntegrityError:
        _lost_race(d, claims.account_id, credential)
        raise
    return _authorize(d, visit_id, pending)


def _admit_qr_step1(d: Deps, account_id: str, nonce: str, now: datetime, visit_id: str,
                    gate_id: str, party_size: int, credential: str | None) -> _Pending:
    with d.sessions.begin() as s:
        _lock_account(s, account_id)
        used = s.execute(
            update(EntryCode)
            .where(EntryCode.nonce == nonce, EntryCode.account_id == account_id,
                   EntryCode.used_at.is_(None))
            .values(used_at=now, visit_id=visit_id)
        ).rowcount
        if used != 1:
            known = s.get(EntryCode, nonce)
            if known is None:
                raise ServiceError(400, "code_unknown", "entry code was never issued")
            raise ServiceError(409, "code_used",
                               "entry code already used: each code admits once; show the "
                               "current code from your own app")
        pm = s.scalar(select(PaymentMethod).where(PaymentMethod.account_id == account_id)
                      .order_by(PaymentMethod.created_at.desc()).limit(1))
        if pm is None:
            raise ServiceError(409, "no_payment_method", "account has no payment method")
        _refuse_if_inside(s, account_id)
        _refuse_if_credential_taken(s, credential)
        pending = _new_visit(d, s, visit_id, account_id, pm.id, gate_id, party_size,
                             credential)
        return pending._replace(payer=pm.provider_ref)


def admit_card(d: Deps, card_token: str, gate_id: str, email: str | None = None,
               party_size: int = 1, credential: str | None = None) -> Admission:
    """Admit the holder of a bank card, known or not: the card token is the identity.

    ``credential`` is the gate's own credential when the gate event came from a sensor source
    (it must match the engine's sessions); by default the visit gets one.
    """
    _party(d, party_size)
    _not_staff(credential)
    try:
        account_id, pm_id = card_guest(d, card_token, email)
    except ValueError as e:
        raise ServiceError(422, "card_number_refused", str(e)) from None
    visit_id = new_id()
    try:
        with d.sessions.begin() as s:
            _lock_account(s, account_id)
            _refuse_if_inside(s, account_id)
            _refuse_if_credential_taken(s, credential)
            pending = _new_visit(d, s, visit_id, account_id, pm_id, gate_id, party_size,
                                 credential)
    except IntegrityError:
        _lost_race(d, account_id, credential)
        raise
    return _authorize(d, visit_id, pending._replace(payer=card_token))


class ProviderFault(Exception):
    """The provider's pre-auth call raised something other than a ``PaymentError`` (a bug, a
    provider-side check): its outcome is unknown, so the visit is left ``authorizing``."""


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
        final = is_final(e)
        _refuse(d, visit_id, key, e.reason, known=final)
        if not final:  # the hold may exist: void_unknown_holds releases it once it can
            raise ServiceError(503, "payment_unavailable", "the payment provider did not "
                               "answer: try again in a moment") from None
        code = "payment_declined" if isinstance(e, PaymentDeclined) else "payment_failed"
        raise ServiceError(402, code, f"pre-authorisation refused: {e.reason}") from None
    except Exception as e:  # not a payment error: the visit stays authorizing (see resume)
        raise ProviderFault(f"pre-authorisation failed: {type(e).__name__}") from e
    with d.sessions.begin() as s:
        v = s.get(Visit, visit_id)
        assert v is not None
        if v.state == "authorizing":
            v.state, v.auth_id = "open", auth.auth_id
        s.execute(update(Charge).where(Charge.idempotency_key == key)
                  .values(status="succeeded", provider_ref=auth.auth_id))
    return Admission(visit_id, cred, party, hold)


def _refuse(d: Deps, visit_id: str, key: str, reason: str, known: bool = True) -> None:
    """Record a failed pre-auth: the visit refused (the shopper is not inside), its charge
    failed with ``reason`` — or, when the provider's answer is unknown (``known`` False: it
    may have placed the hold and the answer was lost), left pending for
    :func:`void_unknown_holds`."""
    with d.sessions.begin() as s:
        v = s.get(Visit, visit_id)
        assert v is not None
        if v.state == "authorizing":
            v.state = "refused"
        s.execute(update(Charge).where(Charge.idempotency_key == key)
                  .values(status="failed" if known else "pending", error=reason[:300]))


def void_unknown_holds(d: Deps) -> int:
    """Release the holds a refused admission may have left: a pre-authorisation whose answer
    never came (provider unreachable, answer lost) turned the shopper away, but the provider
    may hold the money. The call is repeated with its own key — the provider answers with
    the hold it made, or makes it now — and the hold is released at once. Runs at start and
    on the service's timer; a provider still unreachable is tried again next time. Returns
    the holds released."""
    with d.sessions() as s:
        rows = s.execute(select(Visit.id, Charge.idempotency_key).join(
            Charge, Charge.visit_id == Visit.id).where(
            Visit.state == "refused", Charge.kind == "preauth", Charge.status == "pending")).all()
    done = 0
    for vid, key in rows:
        with d.sessions() as s:
            v = s.get(Visit, vid)
            pm = s.get(PaymentMethod, v.payment_method_id) if v else None
            if v is None or pm is None:
                continue
            hold, payer = Money(Decimal(v.hold_amount), v.currency), pm.provider_ref
        release_key = f"visit:{vid}:void"
        try:
            auth = d.provider.preauthorize(payer, hold, key)
            d.provider.release(auth.auth_id, release_key)
        except PaymentError as e:
            if is_final(e):  # nothing is held (e.g. declined now): nothing to release
                with d.sessions.begin() as s:
                    s.execute(update(Charge).where(Charge.idempotency_key == key)
                              .values(status="failed", error=e.reason[:300]))
            continue
        with d.sessions.begin() as s:
            s.execute(update(Charge).where(Charge.idempotency_key == key).values(
                status="failed", provider_ref=auth.auth_id,
                error="answer lost at the gate; the hold was released"))
            s.add(Charge(visit_id=vid, kind="release", idempotency_key=release_key,
                         provider=d.provider.name, provider_ref=auth.auth_id,
                         amount=hold.amount, currency=hold.currency, status="succeeded",
                         created_at=d.clock.now()))
        log.info("visit %s: a hold left by a lost pre-authorisation answer was released", vid)
        done += 1
    return done


def resume_authorizing(d: Deps) -> int:
    """Finish admissions a crash interrupted between the visit and its pre-auth record.

    Runs at every start, so one visit must never stop it. A visit whose pre-auth fails with a
    :class:`ProviderFault` is refused (its charge failed), as one the provider refused is: left
    ``authorizing`` it would keep its shopper "inside" for good and fail every later start the
    same way. Any other error (the database) leaves it for the next start. The log names the
    visit and its key, never the payer."""
    with d.sessions() as s:
        ids = list(s.scalars(select(Visit.id).where(Visit.state == "authorizing")))
    for vid in ids:
        key = f"visit:{vid}:preauth"
        try:
            _authorize(d, vid)
        except ServiceError:
            pass  # the provider refused: recorded on the visit
        except ProviderFault as e:
            log.error("visit %s: %s; visit refused (a hold made regardless is under %s)",
                      vid, e, key)
            try:
                _refuse(d, vid, key, str(e))
            except Exception:
                log.exception("visit %s: refusal not recorded; retried on the next start", vid)
        except Exception:
            log.exception("visit %s: pre-authorisation not finished; retried on the next start",
                          vid)
    return len(ids)
