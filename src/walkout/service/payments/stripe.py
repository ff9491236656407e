"""Stripe payment provider: PaymentIntents with manual capture, through the official library.

Entry pre-authorises (a PaymentIntent confirmed off-session with ``capture_method="manual"``
holds the money), exit captures the final amount (``amount_to_capture``; Stripe releases the
rest of the hold), an empty cart cancels the intent, and disputes refund. Every call sends the
caller's idempotency key as Stripe's ``Idempotency-Key``, so a retried call replays Stripe's
first answer instead of moving money twice, and the same key with other parameters comes back
as ``IdempotencyConflict``.

Amounts cross the boundary as integers in Stripe's minor units, converted from ``Decimal``
exactly: an amount finer than the currency allows is refused, never rounded.

A hold that can no longer be captured — the authorisation expired (``charge_expired_for_capture``)
or the intent was cancelled outside walkout (capturing answers ``payment_intent_unexpected_state``
with the intent ``canceled``) — is ``AuthorizationGone``: a definite answer, never retried;
releasing such a hold succeeds, since the hold is gone either way.

Webhooks are verified with ``stripe.Webhook.construct_event`` (HMAC signature and timestamp
tolerance); :mod:`walkout.service.webhooks` records what each event does, once per event id.
"""

from __future__ import annotations

import re
from collections.abc import MutableSet
from decimal import Decimal
from typing import Literal, NoReturn

import stripe

from walkout.checkout.money import Money
from walkout.service.payments.base import (
    Authorization,
    AuthorizationGone,
    Capture,
    IdempotencyConflict,
    PaymentDeclined,
    PaymentError,
    Refund,
    UnknownPayment,
)

#: Currencies Stripe takes in whole units (https://docs.stripe.com/currencies#zero-decimal).
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF",
                          "UGX", "VND", "VUV", "XAF", "XOF", "XPF"})
#: Currencies Stripe takes in thousandths (https://docs.stripe.com/currencies#three-decimal).
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def stripe_exponent(currency: str) -> int:
    """Decimal places of ``currency`` in Stripe's integer amounts (ISK and HUF stay at two)."""
    cur = currency.upper()
    return 0 if cur in ZERO_DECIMAL else 3 if cur in THREE_DECIMAL else 2


def to_stripe_amount(money: Money) -> int:
    """``money`` in Stripe's minor units; refuses (never rounds) an amount finer than that."""
    units = money.amount.scaleb(stripe_exponent(money.currency))
    if units != units.to_integral_value():
        raise ValueError(f"{money} has more decimals than Stripe accepts for {money.currency}")
    return int(units)


def from_stripe_amount(units: int, currency: str) -> Money:
    """Stripe's integer amount in ``currency`` (lower or upper case) as ``Money``."""
    cur = currency.upper()
    return Money(Decimal(units).scaleb(-stripe_exponent(cur)), cur)


def _fail(e: stripe.StripeError, what: str) -> NoReturn:
    """Raise the provider-neutral error for a Stripe error (messages carry no card data)."""
    detail = f"{what}: {e.user_message or e.code or type(e).__name__}"
    if isinstance(e, stripe.CardError):
        decline = e.error.decline_code if e.error is not None else None
        raise PaymentDeclined(f"{detail} ({decline or e.code})") from e
    if isinstance(e, stripe.IdempotencyError):
        raise IdempotencyConflict(detail) from e
    if isinstance(e, stripe.InvalidRequestError) and e.code == "resource_missing":
        raise UnknownPayment(detail) from e
    if _hold_gone(e):
        raise AuthorizationGone(f"{what}: the authorisation expired or was cancelled at "
                                f"Stripe; nothing was taken ({e.code})") from e
    if isinstance(e, stripe.APIConnectionError):
        raise PaymentError(f"{what}: Stripe unreachable; retrying with the same idempotency key "
                           "is safe") from e
    raise PaymentError(detail) from e


def _hold_gone(e: stripe.StripeError) -> bool:
    """Whether Stripe says the hold no longer exists: the authorisation expired, or the intent
    is ``canceled``. Another unexpected state (``succeeded``: captured, maybe by an earlier
    call whose answer was lost) is not: that one stays an unknown outcome."""
    if not isinstance(e, stripe.InvalidRequestError):
        return False
    if e.code == "charge_expired_for_capture":
        return True
    intent = e.error.payment_intent if e.error is not None else None
    return (e.code == "payment_intent_unexpected_state" and intent is not None
            and intent.status == "canceled")


def _charge_id(intent: stripe.PaymentIntent) -> str:
    """The charge a capture produced (refunds point at it), or the intent when it has none."""
    charge = intent.latest_charge
    if charge is None:
        return intent.id
    return charge if isinstance(charge, str) else charge.id


_CUSTOMER = re.compile(r"cus_[A-Za-z0-9_]+")
_METHOD = re.compile(r"[a-z]+_[A-Za-z0-9_]+")  # pm_…, or a legacy card_… / src_…


def _split_payer(payer_ref: str) -> tuple[str | None, str]:
    """``"cus_…:pm_…"`` or ``"pm_…"`` into (customer, payment method).

    A malformed reference is a ``PaymentError`` (never sent: Stripe could only refuse it), so
    the service records a refusal instead of failing on an unexpected exception; the message
    does not echo the value."""
    customer: str | None
    customer, sep, method = payer_ref.partition(":")
    if not sep:
        customer, method = None, payer_ref
    if (customer is not None and not _CUSTOMER.fullmatch(customer)) \
            or not _METHOD.fullmatch(method):
        # a definite refusal (no request was made): the payment method can never be charged
        raise PaymentDeclined("malformed payment token: Stripe takes 'pm_…' or 'cus_…:pm_…'")
    return customer, method


class StripeProvider:
    """The ``PaymentProvider`` over Stripe. Takes a ready ``StripeClient`` so that tests (and
    deployments with a proxy) choose its HTTP client."""

    name = "stripe"

    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    @classmethod
    def from_api_key(cls, api_key: str, *, http_client: stripe.HTTPClient | None = None,
                     max_network_retries: int = 2) -> StripeProvider:
        """A provider on its own ``StripeClient``; network retries are safe since every call
        carries an idempotency key."""
        return cls(stripe.StripeClient(api_key, http_client=http_client,
                                       max_network_retries=max_network_retries))

    def check_payer_ref(self, payer_ref: str) -> None:
        """Refuse (``PaymentError``) a reference no Stripe call could use, before it is stored
        or tapped (:class:`~walkout.service.payments.base.ChecksPayerRef`)."""
        _split_payer(payer_ref)

    def preauthorize(self, payer_ref: str, amount: Money, idempotency_key: str) -> Authorization:
        """Hold ``amount`` on the payer's card: an off-session, manual-capture PaymentIntent."""
        _need_key(idempotency_key)
        if amount.amount <= 0:
            raise ValueError(f"a pre-authorisation must be positive, got {amount}")
        intent = self._off_session(payer_ref, amount, "manual", idempotency_key,
                                   "pre-authorisation")
        if intent.status != "requires_capture":
            raise PaymentDeclined(f"pre-authorisation not held: intent {intent.id} is "
                                  f"{intent.status}")
        held = from_stripe_amount(intent.amount_capturable, intent.currency)
        if held != amount:
            raise PaymentError(f"pre-authorisation {intent.id} holds {held}, asked {amount}")
        return Authorization(auth_id=intent.id, payer_ref=payer_ref, amount=held)

    def _off_session(self, payer_ref: str, amount: Money, capture_method: Literal[
                         "automatic", "manual"], idempotency_key: str,
                     what: str) -> stripe.PaymentIntent:
        """A confirmed off-session PaymentIntent on the payer's saved card: a hold at the gate
        (``manual`` capture) or a charge after the visit (``automatic``). Nobody is at a
        screen to answer 3-D Secure either way: it fails instead of waiting."""
        customer, method = _split_payer(payer_ref)
        params: stripe.params.PaymentIntentCreateParams = {
            "amount": to_stripe_amount(amount),
            "currency": amount.currency.lower(),
            "capture_method": capture_method,
            "confirm": True,
            "off_session": True,
            "payment_method": method,
            "allowed_payment_method_types": ["card"],
            "error_on_requires_action": True,
        }
        if customer is not None:
            params["customer"] = customer
        try:
            return self._client.v1.payment_intents.create(
                params, options={"idempotency_key": idempotency_key})
        except stripe.StripeError as e:
            _fail(e, what)

    def capture(self, auth_id: str, amount: Money, idempotency_key: str) -> Capture:
        """Take ``amount`` of the hold; Stripe releases the remainder in the same call."""
        _need_key(idempotency_key)
        if amount.amount <= 0:
            raise ValueError(f"capture must be positive, got {amount}; release an empty cart")
        try:
            intent = self._client.v1.payment_intents.capture(
                auth_id, {"amount_to_capture": to_stripe_amount(amount)},
                options={"idempotency_key": idempotency_key})
        except stripe.StripeError as e:
            _fail(e, f"capture of {auth_id}")
        if intent.status != "succeeded":
            raise PaymentError(f"capture of {auth_id} left the intent {intent.status}")
        taken = from_stripe_amount(intent.amount_received, intent.currency)
        if taken != amount:
            raise PaymentError(f"capture of {auth_id} took {taken}, asked {amount}")
        return Capture(capture_id=_charge_id(intent), auth_id=intent.id, amount=taken)

    def release(self, auth_id: str, idempotency_key: str) -> None:
        """Cancel the intent, which drops the hold on the card (nothing was taken). A hold
        already gone (expired, or cancelled outside walkout) is released: that was the aim."""
        _need_key(idempotency_key)
        try:
            intent = self._client.v1.payment_intents.cancel(
                auth_id, {"cancellation_reason": "abandoned"},
                options={"idempotency_key": idempotency_key})
        except stripe.StripeError as e:
            if _hold_gone(e):
                return
            _fail(e, f"release of {auth_id}")
        if intent.status != "canceled":
            raise PaymentError(f"release of {auth_id} left the intent {intent.status}")

    def charge(self, payer_ref: str, amount: Money, idempotency_key: str) -> Capture:
        """Take ``amount`` from the payer's saved card at once: an off-session PaymentIntent
        captured automatically (``ChargesSavedMethod``; a visit's balance above its hold).
        Returns the charge (refunds point at it) and the intent."""
        _need_key(idempotency_key)
        if amount.amount <= 0:
            raise ValueError(f"a charge must be positive, got {amount}")
        intent = self._off_session(payer_ref, amount, "automatic", idempotency_key, "charge")
        if intent.status in ("requires_payment_method", "canceled"):
            raise PaymentDeclined(f"charge not made: intent {intent.id} is {intent.status}")
        if intent.status != "succeeded":
            raise PaymentError(f"charge {intent.id} is {intent.status}")
        taken = from_stripe_amount(intent.amount_received, intent.currency)
        if taken != amount:
            raise PaymentError(f"charge {intent.id} took {taken}, asked {amount}")
        return Capture(capture_id=_charge_id(intent), auth_id=intent.id, amount=taken)

    def refund(self, capture_id: str, amount: Money, idempotency_key: str) -> Refund:
        """Give back ``amount`` of a capture (a charge ``ch_…`` or an intent ``pi_…``)."""
        _need_key(idempotency_key)
        if amount.amount <= 0:
            raise ValueError(f"a refund must be positive, got {amount}")
        params: stripe.params.RefundCreateParams = {"amount": to_stripe_amount(amount)}
        if capture_id.startswith("pi_"):
            params["payment_intent"] = capture_id
        else:
            params["charge"] = capture_id
        try:
            refund = self._client.v1.refunds.create(
                params, options={"idempotency_key": idempotency_key})
        except stripe.StripeError as e:
            _fail(e, f"refund of {capture_id}")
        if refund.status in ("failed", "canceled"):
            raise PaymentError(f"refund {refund.id} of {capture_id} {refund.status}: "
                               f"{refund.failure_reason or 'no reason given'}")
        given = from_stripe_amount(refund.amount, refund.currency)
        if given != amount:
            raise PaymentError(f"refund {refund.id} gave {given}, asked {amount}")
        return Refund(refund_id=refund.id, capture_id=capture_id, amount=given)


def _need_key(key: str) -> None:
    if not key or not key.strip():
        raise ValueError("every Stripe call needs a non-empty idempotency key")


class WebhookRejected(PaymentError):
    """A webhook whose signature, timestamp or body does not verify: never act on it.
    ``code``: ``bad_signature`` (missing, wrong or stale Stripe-Signature) or ``bad_payload``
    (signed, but not a Stripe event)."""

    def __init__(self, reason: str, code: str = "bad_signature") -> None:
        super().__init__(reason)
        self.code = code


class StripeWebhookReceiver:
    """Verifies Stripe webhooks and reports each event id once.

    ``seen`` holds the ids already handled (in memory: for callers without a database). The
    service uses :meth:`verify` only and records each event id in ``payment_webhook_events``
    in the very transaction of its effect (:mod:`walkout.service.webhooks`), so that
    redeliveries (Stripe retries until it gets a 2xx) stay no-ops across restarts. Add an id
    only after the event's effect is recorded.
    """

    def __init__(self, secret: str, *, seen: MutableSet[str] | None = None,
                 tolerance_s: int = stripe.Webhook.DEFAULT_TOLERANCE) -> None:
        if not secret:
            raise ValueError("a webhook signing secret (whsec_…) is required")
        self._secret = secret
        self._seen: MutableSet[str] = seen if seen is not None else set()
        self._tolerance = tolerance_s

    def verify(self, payload: bytes | str, sig_header: str | None) -> stripe.Event:
        """The event, if ``sig_header`` signs ``payload`` (the raw body, unparsed) recently."""
        if not sig_header:
            raise WebhookRejected("no Stripe-Signature header: Stripe signs every webhook")
        try:
            event: stripe.Event = stripe.Webhook.construct_event(
                payload, sig_header, self._secret, tolerance=self._tolerance)
            return event
        except stripe.SignatureVerificationError as e:
            raise WebhookRejected(f"webhook signature does not verify: {e.user_message}") from e
        except ValueError as e:  # not JSON (or not UTF-8)
            raise WebhookRejected(f"webhook body is not a Stripe event: {e}",
                                  "bad_payload") from e

    def receive(self, payload: bytes | str, sig_header: str | None) -> stripe.Event | None:
        """The verified event, or None when its id was already handled (a redelivery)."""
        event = self.verify(payload, sig_header)
        if event.id in self._seen:
            return None
        return event

    def done(self, event: stripe.Event) -> None:
        """Mark ``event`` handled; later deliveries of its id are ignored."""
        self._seen.add(event.id)
