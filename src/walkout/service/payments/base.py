"""The payment-provider interface every adapter (built-in ledger, Stripe) implements.

The store holds money in three steps: a pre-authorisation at entry, a capture of the final amount
at exit (or a release when the cart is empty), and refunds after disputes. Every call carries an
idempotency key: a retried or duplicated call with the same key returns the original result and
never moves money twice. The same key with different arguments is a programming error and raises
``IdempotencyConflict`` instead of guessing which call was meant.

Providers are called outside any open database transaction (a network call must never hold
locks); what they return is then recorded by the service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from walkout.checkout.money import Money


class PaymentError(Exception):
    """A payment call that failed; ``reason`` is safe to show (no card data)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PaymentDeclined(PaymentError):
    """The provider refused the payment method (insufficient funds, expired, blocked)."""


class IdempotencyConflict(PaymentError):
    """An idempotency key reused with different arguments."""


class UnknownPayment(PaymentError):
    """The authorisation or capture id does not exist at this provider."""


class AuthorizationGone(PaymentError):
    """The hold can no longer be captured: it expired, or it was cancelled outside walkout
    (Stripe: a PaymentIntent ``canceled``, ``charge_expired_for_capture``). Nothing was taken,
    and repeating the call can never take anything: staff collect the payment."""


#: errors by which a provider refuses a call outright. Any other ``PaymentError`` (unreachable,
#: timed out, an answer lost after the money moved) leaves the outcome unknown: the charge
#: stays pending and the call is repeated with the same idempotency key, never a new one.
FINAL_ERRORS: tuple[type[PaymentError], ...] = (PaymentDeclined, UnknownPayment,
                                                IdempotencyConflict, AuthorizationGone)


def is_final(e: PaymentError) -> bool:
    """Whether ``e`` is the provider's definite answer (see :data:`FINAL_ERRORS`)."""
    return isinstance(e, FINAL_ERRORS)


@dataclass(frozen=True, slots=True)
class Authorization:
    """Money held on a payer's method, to be captured or released later."""

    auth_id: str
    payer_ref: str
    amount: Money
    status: str = "authorized"  # authorized | captured | released


@dataclass(frozen=True, slots=True)
class Capture:
    """Money actually taken from an authorisation (at most the authorised amount)."""

    capture_id: str
    auth_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class Refund:
    """Money given back from a capture (at most what was captured, over all refunds)."""

    refund_id: str
    capture_id: str
    amount: Money


@runtime_checkable
class PaymentProvider(Protocol):
    """What the service needs from a payment provider. ``payer_ref`` is the provider's token for
    the payment method (customer/payment-method id), never a card number."""

    name: str

    def preauthorize(self, payer_ref: str, amount: Money, idempotency_key: str) -> Authorization:
        """Hold ``amount`` on the payer's method."""
        ...

    def capture(self, auth_id: str, amount: Money, idempotency_key: str) -> Capture:
        """Take ``amount`` (≤ authorised) and release the rest of the hold."""
        ...

    def release(self, auth_id: str, idempotency_key: str) -> None:
        """Drop the hold without taking anything (empty cart)."""
        ...

    def refund(self, capture_id: str, amount: Money, idempotency_key: str) -> Refund:
        """Give back ``amount`` of a capture."""
        ...


@runtime_checkable
class ChecksPayerRef(Protocol):
    """Optional: a provider that knows the shape of its own ``payer_ref`` tokens, so that the
    service refuses a malformed one when it is added or tapped, not at a later pre-auth.
    Providers without it take any token (the built-in ledger does)."""

    def check_payer_ref(self, payer_ref: str) -> None:
        """Raise ``PaymentError`` (safe to show) if ``payer_ref`` can never be charged."""
        ...


@runtime_checkable
class ChargesSavedMethod(Protocol):
    """Optional: a provider that can take money from the payer's saved method without a hold
    (off-session), as the service does for the part of a cart above the pre-authorisation
    (``checkout``: the visit's balance, under ``visit:<id>:balance``). Same idempotency rules
    as the other calls; a refusal is ``PaymentDeclined``. The ``Capture`` it returns has its
    own ``capture_id`` (refunds point at it) and ``auth_id`` the provider's payment id.
    Without it a balance stays owed, for staff to collect or write off."""

    def charge(self, payer_ref: str, amount: Money, idempotency_key: str) -> Capture:
        """Take ``amount`` from the payer's saved method at once."""
        ...
