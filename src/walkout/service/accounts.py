"""Shopper accounts, staff accounts and their tokens, payment methods (provider tokens only)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from walkout.service.clock import aware
from walkout.service.deps import Deps
from walkout.service.errors import ServiceError, not_found
from walkout.service.models import Account, ApiToken, PaymentMethod
from walkout.service.payments.base import ChecksPayerRef, PaymentError
from walkout.service.security import Principal, Role, hash_token, issue_token

_DIGITS = re.compile(r"[\d \-]{12,}")
#: C0 control characters and DEL: in no payment token or name; NUL cannot even be stored by
#: PostgreSQL (the insert raised, a 500), SQLite kept it
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def refuse_card_number(value: str) -> str:
    """Provider tokens only: a value that looks like a card number is refused unstored, and
    so is one with control characters (no provider's token has one)."""
    if _CONTROL.search(value):
        raise ValueError("control characters are not allowed in a payment token")
    for run in _DIGITS.findall(value):
        digits = re.sub(r"\D", "", run)
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            raise ValueError("looks like a card number: send the payment provider's token")
    return value


def refuse_control(field: str, value: str | None) -> None:
    """422 naming ``field`` when a free-text value holds control characters: a name or label
    never has one, and NUL is refused by PostgreSQL mid-transaction (a 500) where SQLite
    stored it, so the same request must fail the same, cleanly, on both."""
    if value is not None and _CONTROL.search(value):
        raise ServiceError(422, "invalid_request",
                           f"body.{field}: control characters are not allowed")


def check_payer_ref(d: Deps, payer_ref: str, field: str) -> None:
    """422 naming ``field`` when the provider says ``payer_ref`` can never be charged: refused
    at the door, instead of a visit whose pre-authorisation cannot even be attempted."""
    if isinstance(d.provider, ChecksPayerRef):
        try:
            d.provider.check_payer_ref(payer_ref)
        except PaymentError as e:
            raise ServiceError(422, "bad_payment_token", f"{field}: {e.reason}") from None


def create_shopper(d: Deps, email: str | None, name: str | None) -> tuple[str, str]:
    """A new app shopper; returns (account id, bearer token shown once)."""
    refuse_control("name", name)
    with d.sessions.begin() as s:
        acct = Account(kind="app", role=Role.SHOPPER.value, email=email, display_name=name,
                       created_at=d.clock.now())
        s.add(acct)
        s.flush()
        return acct.id, issue_token(s, acct.id, Role.SHOPPER, d.clock)


def create_staff(
    d: Deps, role: Role, name: str | None, token: str | None = None
) -> tuple[str, str]:
    """A new staff account (operator, admin, kiosk); returns (account id, bearer token)."""
    refuse_control("name", name)
    with d.sessions.begin() as s:
        acct = Account(kind="staff", role=role.value, display_name=name, created_at=d.clock.now())
        s.add(acct)
        s.flush()
        return acct.id, issue_token(s, acct.id, role, d.clock, token)


def list_staff(d: Deps) -> list[dict[str, Any]]:
    """Every staff account with how many of its tokens still work (0: revoked)."""
    with d.sessions() as s:
        live = func.count(ApiToken.id).filter(ApiToken.revoked_at.is_(None))
        rows = s.execute(select(Account, live, func.max(ApiToken.revoked_at))
                         .outerjoin(ApiToken, ApiToken.account_id == Account.id)
                         .where(Account.kind == "staff").group_by(Account.id)
                         .order_by(Account.created_at, Account.id)).all()
        return [_staff(a, n, last) for a, n, last in rows]


def revoke_staff(d: Deps, account_id: str) -> dict[str, Any]:
    """Revoke every token of a staff account (idempotent). The caller must empty the auth
    cache afterwards (:meth:`AuthCache.clear`), or the tokens work on for a few seconds."""
    with d.sessions.begin() as s:
        a = s.get(Account, account_id)
        if a is None or a.kind != "staff":
            raise not_found("staff account")
        s.execute(update(ApiToken).where(ApiToken.account_id == account_id,
                                         ApiToken.revoked_at.is_(None))
                  .values(revoked_at=d.clock.now()))
    return next(x for x in list_staff(d) if x["account_id"] == account_id)


def revoke_token(d: Deps, authorization: str) -> None:
    """Revoke the bearer token of ``authorization`` (a shopper signing out: the app has no
    password, so a token it forgets is of use to nobody but whoever copied it)."""
    token = authorization.partition(" ")[2].strip()
    with d.sessions.begin() as s:
        s.execute(update(ApiToken).where(ApiToken.token_hash == hash_token(token),
                                         ApiToken.revoked_at.is_(None))
                  .values(revoked_at=d.clock.now()))


def _staff(a: Account, live: int, last_revoked: datetime | None) -> dict[str, Any]:
    return {"account_id": a.id, "role": a.role, "name": a.display_name,
            "created_at": aware(a.created_at).isoformat(), "active_tokens": int(live),
            "revoked_at": None if live or last_revoked is None
            else aware(last_revoked).isoformat()}


class AuthCache:
    """Bearer token (its hash) → principal, for ``ttl`` seconds: every request authenticates,
    and a database round trip each time is a large part of a small request's cost.

    Whatever revokes tokens in this process calls :meth:`clear` after its commit. That also
    moves a generation number, and a lookup stores what it read only if the generation did
    not move meanwhile: a request that read a token just before its revocation committed is
    still answered, but cannot put the token back for ``ttl`` seconds. Tokens revoked by
    another process (or by hand in the database) stop working within ``ttl``."""

    def __init__(self, lookup: Callable[[str | None], Principal], ttl: float = 5.0,
                 size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup, self._ttl, self._size, self._clock = lookup, ttl, size, clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._gen = 0

    def principal(self, authorization: str | None) -> Principal:
        """The principal of the header (401 ``ServiceError`` when unknown or revoked)."""
        key = hash_token(authorization) if authorization else ""
        now = self._clock()
        with self._lock:
            hit, gen = self._entries.get(key), self._gen
        if hit is not None and hit[0] > now:
            return hit[1]
        p = self._lookup(authorization)
        with self._lock:
            if self._gen == gen:  # no revocation since the read: safe to keep
                if len(self._entries) >= self._size:
                    self._entries.clear()
                self._entries[key] = (now + self._ttl, p)
        return p

    def clear(self) -> None:
        """Forget every cached token, and refuse to cache lookups already under way."""
        with self._lock:
            self._gen += 1
            self._entries.clear()


def add_payment_method(d: Deps, account_id: str, provider_ref: str, label: str | None) -> str:
    """Attach a provider token to the account; the same token twice is the same method."""
    refuse_card_number(provider_ref)
    refuse_control("label", label)
    check_payer_ref(d, provider_ref, "provider_ref")
    name = d.provider.name
    try:
        with d.sessions.begin() as s:
            pm = PaymentMethod(account_id=account_id, provider=name, provider_ref=provider_ref,
                               label=label, created_at=d.clock.now())
            s.add(pm)
            s.flush()
            return pm.id
    except IntegrityError:
        with d.sessions() as s:
            pm2 = s.scalar(select(PaymentMethod).where(PaymentMethod.provider == name,
                                                       PaymentMethod.provider_ref == provider_ref))
        if pm2 is None or pm2.account_id != account_id:
            raise ServiceError(409, "payment_method_taken",
                               "this payment method belongs to another account") from None
        return pm2.id


def _card_method(d: Deps, card_token: str) -> tuple[PaymentMethod | None, Account | None]:
    """The payment method whose token is ``card_token``, and its account (a read)."""
    with d.sessions() as s:
        pm = s.scalar(select(PaymentMethod).where(PaymentMethod.provider == d.provider.name,
                                                  PaymentMethod.provider_ref == card_token))
        return pm, s.get(Account, pm.account_id) if pm is not None else None


def card_guest(d: Deps, card_token: str, email: str | None) -> tuple[str, str]:
    """The guest account whose identity is ``card_token``: created on its first tap, found
    again on later taps (so its receipts go to the address it gave before). An erased
    account's renamed token (``erased:<method>``) is a pseudonym, not a card: 422.

    Returns (account id, payment method id).
    """
    refuse_card_number(card_token)
    check_payer_ref(d, card_token, "card_token")
    name = d.provider.name
    # a concurrent first tap of the same card: the loser reads the winner; the card's account
    # erased while it was read: read again (the card is nobody's now)
    for _ in range(3):
        pm, acct = _card_method(d, card_token)
        if pm is not None:
            if acct is not None and acct.erased_at is not None:
                if _card_method(d, card_token)[0] is not None:  # its pseudonym, tapped
                    raise ServiceError(422, "bad_payment_token",
                                       "card_token: not a payment token")
                continue
            if acct is not None and email and not acct.email:
                with d.sessions.begin() as s:
                    a2 = s.get(Account, pm.account_id)
                    if a2 is not None and not a2.email and a2.erased_at is None:
                        a2.email = email
            return pm.account_id, pm.id
        try:
            with d.sessions.begin() as s:
                acct = Account(kind="card", role=Role.SHOPPER.value, email=email,
                               created_at=d.clock.now())
                s.add(acct)
                s.flush()
                pm = PaymentMethod(account_id=acct.id, provider=name, provider_ref=card_token,
                                   label="card", created_at=d.clock.now())
                s.add(pm)
                s.flush()
                return acct.id, pm.id
        except IntegrityError:
            continue
    raise ServiceError(409, "conflict", "card registered concurrently; retry")
