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

Admissions are idempotent for a gate that retries after losing the answer: the same QR code
again (its nonce records the visit it admitted) at the same gate, or the same card at the same
gate within :data:`CARD_RETRY_WINDOW_S`, answers the original admission (same visit and
credential, ``replayed``) while that visit is still ``open``. A shopper who owes the balance of
an earlier visit (a cart above the hold that could not be collected, see
:mod:`walkout.service.checkout`) is refused with 409 ``balance_owed`` until it is settled.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import exists, select, update
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
#: the same card tapped again at the same gate within this many seconds of its admission, for
#: the same party, is the gate retrying a request whose answer it lost: it gets the original
#: admission back instead of 409 ``already_inside``
CARD_RETRY_WINDOW_S = 60.0
#: a visit still ``authorizing`` this long after its scan was given up by its gate (which
#: answered, or timed out, long before): housekeeping refuses it and releases any hold made
STALE_AUTHORIZING_S = 30.0


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
    #: True when this answers a repeated request (a gate retrying after a lost answer): the
    #: visit was admitted by the first one and nothing new was held
    replayed: bool = False


def issue_code(d: Deps, account_id: str) -> IssuedCode:
    """A fresh entry code for the app to show (the app asks again when it expires)."""
    now = d.clock.now().replace(microsecond=0)
    nonce = secrets.token_hex(16)
    with d.sessions.begin() as s:
        # locked: an erasure committing meanwhile (its request authenticated before) either
        # waits for this code and deletes it, or is seen here
        _lock_account(s, account_id)
        acct = s.get(Account, account_id)
        if acct is None or acct.kind != "app" or acct.erased_at is not None:
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


def owing_visit(s: Session, account_id: str) -> str | None:
    """A visit of the account with part of its receipt still owed (above the hold, or a
    capture refused, or a revision above what was taken), if any."""
    return s.scalar(select(Visit.id).where(Visit.account_id == account_id,
                                           Visit.balance_owed > 0,
                                           Visit.balance_settled_at.is_(None)).limit(1))


def _refuse_if_owing(s: Session, account_id: str) -> None:
    """A shopper who owes the balance of an earlier visit (what its capture could not take and
    the saved card did not pay) enters again once it is settled: collected by a later charge,
    or written off by an operator (:func:`walkout.service.checkout.collect_balance`,
    ``write_off_balance``)."""
    if owing_visit(s, account_id) is not None:
        raise ServiceError(409, "balance_owed",
                           "this account still owes part of an earlier visit's receipt: pay "
                           "it in the app (or ask staff) before entering")


def _replay(s: Session, v: Visit | None, gate_id: str, party_size: int,
            credential: str | None) -> Admission | None:
    """The original admission, when this request repeats the one that admitted ``v`` (same
    gate, party and credential) and ``v`` is still ``open``; None: not a repeat (the caller
    refuses it as before). A repeat that arrives while the first is still pre-authorising is
    told to try again in a moment."""
    if v is None or v.gate_id != gate_id or v.party_size != party_size \
            or (credential or f"visit-{v.id}") != v.credential:
        return None
    if v.state == "authorizing":
        raise ServiceError(503, "admission_pending",
                           "this admission is still being authorised: try again in a moment")
    if v.state != "open":
        return None
    return Admission(v.id, v.credential, v.party_size,
                     Money(Decimal(v.hold_amount), v.currency), replayed=True)


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
    if isinstance(pending, Admission):  # the gate repeating a scan whose answer it lost
        return pending
    return _authorize(d, visit_id, pending)


def _admit_qr_step1(d: Deps, account_id: str, nonce: str, now: datetime, visit_id: str,
                    gate_id: str, party_size: int,
                    credential: str | None) -> _Pending | Admission:
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
            if known.account_id == account_id and known.visit_id is not None:
                again = _replay(s, s.get(Visit, known.visit_id), gate_id, party_size,
                                credential)
                if again is not None:
                    return again
            raise ServiceError(409, "code_used",
                               "entry code already used: each code admits once; show the "
                               "current code from your own app")
        pm = s.scalar(select(PaymentMethod).where(PaymentMethod.account_id == account_id)
                      .order_by(PaymentMethod.created_at.desc()).limit(1))
        if pm is None:
            raise ServiceError(409, "no_payment_method", "account has no payment method")
        _refuse_if_inside(s, account_id)
        _refuse_if_owing(s, account_id)
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
    visit_id = new_id()
    for _ in range(2):  # the card's account erased between its look-up and the lock: again
        try:
            account_id, pm_id = card_guest(d, card_token, email)
        except ValueError as e:
            raise ServiceError(422, "card_number_refused", str(e)) from None
        try:
            with d.sessions.begin() as s:
                _lock_account(s, account_id)
                if not _holds_card(s, account_id, pm_id, card_token):
                    continue
                again = _replay(s, _card_visit(d, s, account_id, pm_id), gate_id,
                                party_size, credential)
                if again is not None:  # the gate repeating a tap whose answer it lost
                    return again
                _refuse_if_inside(s, account_id)
                _refuse_if_owing(s, account_id)
                _refuse_if_credential_taken(s, credential)
                pending = _new_visit(d, s, visit_id, account_id, pm_id, gate_id, party_size,
                                     credential)
        except IntegrityError:
            _lost_race(d, account_id, credential)
            raise
        return _authorize(d, visit_id, pending._replace(payer=card_token))
    raise ServiceError(409, "conflict", "the card's account changed during the tap: tap again")


def _holds_card(s: Session, account_id: str, pm_id: str, card_token: str) -> bool:
    """Whether, under the account's lock, the card still is this account's. Read before the
    lock, it may not be: an erasure that committed in between renamed the token and left the
    account a pseudonym, which must never be inside again (the next look-up makes the card
    a new guest, as any tap after the erasure does)."""
    pm, acct = s.get(PaymentMethod, pm_id), s.get(Account, account_id)
    return (pm is not None and acct is not None and acct.erased_at is None
            and pm.account_id == account_id and pm.provider_ref == card_token)


def _card_visit(d: Deps, s: Session, account_id: str, pm_id: str) -> Visit | None:
    """The account's visit inside that this card's tap admitted in the last
    :data:`CARD_RETRY_WINDOW_S` (a QR admission is never one: its code is its key)."""
    since = d.clock.now() - timedelta(seconds=CARD_RETRY_WINDOW_S)
    by_code = exists().where(EntryCode.account_id == account_id,
                             EntryCode.visit_id == Visit.id)
    return s.scalar(select(Visit).where(
        Visit.account_id == account_id, Visit.state.in_(INSIDE),
        Visit.payment_method_id == pm_id, Visit.entered_at >= since, ~by_code).limit(1))


class ProviderFault(ServiceError):
    """The provider's pre-auth call raised something other than a ``PaymentError`` (a bug, a
    provider-side check). Its outcome is unknown: at the gate the visit is refused with its
    charge left pending (:func:`void_unknown_holds` releases a hold made regardless) and the
    gate is answered 503 ``payment_unavailable``, as when the provider is unreachable."""

    def __init__(self, cause: str) -> None:
        super().__init__(503, "payment_unavailable",
                         f"the payment provider failed ({cause}): scan a fresh code in a moment")
        self.cause = cause


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
    except Exception as e:  # not a payment error: its outcome is unknown
        fault = ProviderFault(type(e).__name__)
        log.error("visit %s: pre-authorisation failed with %s, not a payment answer; visit "
                  "refused, a hold made regardless is released under %s", visit_id,
                  fault.cause, key)
        try:
            _refuse(d, visit_id, key, f"pre-authorisation failed: {fault.cause}", known=False)
        except Exception:  # left authorizing: refuse_stale_authorizing takes it up
            log.exception("visit %s: refusal not recorded", visit_id)
        raise fault from e
    with d.sessions.begin() as s:
        v = s.get(Visit, visit_id, with_for_update=True)
        assert v is not None
        state = v.state
        if state == "authorizing":
            v.state, v.auth_id = "open", auth.auth_id
            state = "open"
        if state == "open":
            s.execute(update(Charge).where(Charge.idempotency_key == key)
                      .values(status="succeeded", settled_at=d.clock.now(),
                              provider_ref=auth.auth_id))
    if state != "open":  # given up while the provider answered (refuse_stale_authorizing)
        _void(d, visit_id, key, auth.auth_id, hold)
        raise ServiceError(503, "payment_unavailable", "the payment provider answered too "
                           "late: scan a fresh code")
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
        try:
            auth = d.provider.preauthorize(payer, hold, key)
        except PaymentError as e:
            if is_final(e):  # nothing is held (e.g. declined now): nothing to release
                with d.sessions.begin() as s:
                    s.execute(update(Charge).where(Charge.idempotency_key == key)
                              .values(status="failed", error=e.reason[:300]))
            continue
        except Exception as e:  # not a payment answer, again: given up, as a start does
            log.error("visit %s: repeating its pre-authorisation failed with %s; a hold made "
                      "regardless is under %s (not released)", vid, type(e).__name__, key)
            with d.sessions.begin() as s:
                s.execute(update(Charge).where(Charge.idempotency_key == key).values(
                    status="failed", error=f"pre-authorisation failed: {type(e).__name__}"))
            continue
        done += _void(d, vid, key, auth.auth_id, hold)
    return done


def _void(d: Deps, visit_id: str, key: str, auth_id: str, hold: Money) -> bool:
    """Release the hold ``auth_id`` a refused admission's pre-authorisation (``key``) made,
    and record it; a release that fails leaves the charge pending for
    :func:`void_unknown_holds`. Returns whether it was released."""
    release_key = f"visit:{visit_id}:void"
    try:
        d.provider.release(auth_id, release_key)
    except PaymentError as e:
        log.warning("visit %s: the hold of a refused admission is not released yet: %s",
                    visit_id, e.reason)
        with d.sessions.begin() as s:
            s.execute(update(Charge).where(Charge.idempotency_key == key).values(
                status="pending", provider_ref=auth_id))
        return False
    with d.sessions.begin() as s:
        s.execute(update(Charge).where(Charge.idempotency_key == key).values(
            status="failed", provider_ref=auth_id,
            error="answer lost at the gate; the hold was released"))
        if s.scalar(select(Charge.id).where(Charge.idempotency_key == release_key)) is None:
            s.add(Charge(visit_id=visit_id, kind="release", idempotency_key=release_key,
                         provider=d.provider.name, provider_ref=auth_id,
                         amount=hold.amount, currency=hold.currency, status="succeeded",
                         created_at=d.clock.now(), settled_at=d.clock.now()))
    log.info("visit %s: a hold left by a lost pre-authorisation answer was released", visit_id)
    return True


def refuse_stale_authorizing(d: Deps, older_than_s: float = STALE_AUTHORIZING_S) -> int:
    """Refuse the admissions still ``authorizing`` ``older_than_s`` after their scan: the gate
    has long answered (an error) or given up, and nobody was let in under them, but they keep
    their shopper "inside" (every later scan 409 ``already_inside``, erasure refused). Such a
    visit is left by a process that died between the visit and its pre-authorisation record
    (an engine worker, while the API goes on), or by a refusal that could not be recorded.
    Each is refused with its pre-auth charge pending, so :func:`void_unknown_holds` (the next
    task of the same turn) repeats the pre-authorisation with its own key and releases a hold
    it finds; a provider answer that still comes for it is released at once (``_authorize``).
    Runs on the housekeeping timer. Returns how many."""
    cutoff = d.clock.now() - timedelta(seconds=older_than_s)
    with d.sessions.begin() as s:
        ids = list(s.scalars(select(Visit.id).where(Visit.state == "authorizing",
                                                    Visit.entered_at < cutoff)))
        for vid in ids:
            s.execute(update(Visit).where(Visit.id == vid, Visit.state == "authorizing")
                      .values(state="refused"))
            s.execute(update(Charge).where(Charge.idempotency_key == f"visit:{vid}:preauth",
                                           Charge.status == "pending")
                      .values(error="admission not finished; given up by housekeeping"))
    for vid in ids:
        log.warning("visit %s: still authorizing %.0f s after its scan: refused, a hold made "
                    "regardless is released under visit:%s:preauth", vid, older_than_s, vid)
    return len(ids)


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
        except ProviderFault as e:  # logged as an error by _authorize, naming the visit
            log.info("visit %s: pre-authorisation failed (%s) at start: its charge is "
                     "recorded failed, not retried (a hold made regardless is under %s)",
                     vid, e.cause, key)
            try:
                _refuse(d, vid, key, f"pre-authorisation failed: {e.cause}")
            except Exception:
                log.exception("visit %s: refusal not recorded; retried on the next start", vid)
        except ServiceError:
            pass  # the provider refused: recorded on the visit
        except Exception:
            log.exception("visit %s: pre-authorisation not finished; retried on the next start",
                          vid)
    return len(ids)
