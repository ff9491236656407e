"""Shopper accounts, staff accounts and payment methods (provider tokens only)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from walkout.service.deps import Deps
from walkout.service.errors import ServiceError
from walkout.service.models import Account, PaymentMethod
from walkout.service.payments.base import ChecksPayerRef, PaymentError
from walkout.service.security import Role, issue_token

_DIGITS = re.compile(r"[\d \-]{12,}")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def refuse_card_number(value: str) -> str:
    """Provider tokens only: a value that looks like a card number is refused unstored."""
    for run in _DIGITS.findall(value):
        digits = re.sub(r"\D", "", run)
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            raise ValueError("looks like a card number: send the payment provider's token")
    return value


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
    with d.sessions.begin() as s:
        acct = Account(kind="app", role=Role.SHOPPER.value, email=email, display_name=name,
                       created_at=d.clock.now())
        s.add(acct)
        s.flush()
        return acct.id, issue_token(s, acct.id, Role.SHOPPER, d.clock)


def create_staff(
    d: Deps, role: Role, name: str | None, token: str | None = None
) -> tuple[str, str]:
    with d.sessions.begin() as s:
        acct = Account(kind="staff", role=role.value, display_name=name, created_at=d.clock.now())
        s.add(acct)
        s.flush()
        return acct.id, issue_token(s, acct.id, role, d.clock, token)


def add_payment_method(d: Deps, account_id: str, provider_ref: str, label: str | None) -> str:
    """Attach a provider token to the account; the same token twice is the same method."""
    refuse_card_number(provider_ref)
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


def card_guest(d: Deps, card_token: str, email: str | None) -> tuple[str, str]:
    """The guest account whose identity is ``card_token``: created on its first tap, found
    again on later taps (so its receipts go to the address it gave before).

    Returns (account id, payment method id).
    """
    refuse_card_number(card_token)
    check_payer_ref(d, card_token, "card_token")
    name = d.provider.name
    for _ in range(2):  # a concurrent first tap of the same card: the loser reads the winner
        with d.sessions() as s:  # a read; the rare write below takes the write lock first
            pm = s.scalar(select(PaymentMethod).where(PaymentMethod.provider == name,
                                                      PaymentMethod.provider_ref == card_token))
            acct = s.get(Account, pm.account_id) if pm is not None else None
        if pm is not None:
            if acct is not None and email and not acct.email:
                with d.sessions.begin() as s:
                    a2 = s.get(Account, pm.account_id)
                    if a2 is not None and not a2.email:
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
