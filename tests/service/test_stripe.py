"""Stripe provider against recorded HTTP exchanges (there is no network here), webhook
signatures, and the settings of a store on Stripe.

The recorded client replaces only the HTTP transport: the official ``stripe`` library still
builds every request (form encoding, headers, idempotency keys) and parses every response into
its objects and errors. A request that matches no recorded exchange fails the test, so the
fixtures pin what is sent: amounts in minor units, ``capture_method=manual``, our keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import stripe
from pydantic import SecretStr, ValidationError

from walkout.checkout.money import Money
from walkout.service.payments.base import (
    AuthorizationGone,
    ChargesSavedMethod,
    ChecksPayerRef,
    IdempotencyConflict,
    PaymentDeclined,
    PaymentError,
    PaymentProvider,
    UnknownPayment,
    is_final,
)
from walkout.service.payments.stripe import (
    StripeProvider,
    StripeWebhookReceiver,
    WebhookRejected,
    from_stripe_amount,
    to_stripe_amount,
)
from walkout.service.redact import redact
from walkout.service.settings import ServiceSettings

from .stripe_recorded import FIXTURES, RecordedStripe
from .stripe_recorded import sign as _sign_with

WHSEC = "whsec_test_0123456789abcdef"


def _provider(*names: str) -> tuple[StripeProvider, RecordedStripe]:
    http = RecordedStripe(*names)
    # no network retries: a recorded error must surface at once, not be retried
    return StripeProvider.from_api_key("sk_test_recorded", http_client=http,
                                       max_network_retries=0), http


def eur(s: str) -> Money:
    return Money(Decimal(s), "EUR")


# ---- amounts ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("amount", "currency", "units"), [
    ("12.50", "EUR", 1250), ("0.01", "USD", 1), ("1500", "JPY", 1500), ("7", "KRW", 7),
    ("1.230", "KWD", 1230), ("0", "EUR", 0), ("123", "ISK", 12300),
])
def test_minor_units_are_exact_both_ways(amount: str, currency: str, units: int) -> None:
    m = Money(Decimal(amount), currency)
    assert to_stripe_amount(m) == units
    assert from_stripe_amount(units, currency.lower()) == m


def test_the_provider_implements_the_interface() -> None:
    provider, _ = _provider()
    assert isinstance(provider, PaymentProvider) and provider.name == "stripe"


# ---- pre-authorisation, capture, release, refund ----------------------------------------------

def test_preauthorize_holds_with_manual_capture() -> None:
    provider, http = _provider("preauthorize")
    auth = provider.preauthorize("cus_QShopper1:pm_1QCardVisa", eur("20.00"), "entry-s00001")
    assert auth.auth_id == "pi_3QEntry00001" and auth.amount == eur("20.00")
    assert auth.payer_ref == "cus_QShopper1:pm_1QCardVisa"
    [(method, path, headers, params)] = http.requests
    assert (method, path) == ("post", "/v1/payment_intents")
    assert headers["Idempotency-Key"] == "entry-s00001"
    assert params["amount"] == "2000" and params["capture_method"] == "manual"


def test_preauthorize_zero_decimal_currency() -> None:
    provider, http = _provider("preauthorize")
    auth = provider.preauthorize("pm_1QCardJcb", Money(Decimal(1500), "JPY"), "entry-s00002")
    assert auth.amount == Money(Decimal(1500), "JPY")
    assert http.requests[0][3]["amount"] == "1500" and http.requests[0][3]["currency"] == "jpy"


def test_retried_preauthorize_reuses_the_key() -> None:
    provider, http = _provider("preauthorize")
    a = provider.preauthorize("cus_QShopper1:pm_1QCardVisa", eur("20"), "entry-s00001")
    b = provider.preauthorize("cus_QShopper1:pm_1QCardVisa", eur("20"), "entry-s00001")
    assert a == b
    assert [r[2]["Idempotency-Key"] for r in http.requests] == ["entry-s00001"] * 2


def test_declined_card_and_3ds_challenge_are_declines() -> None:
    provider, _ = _provider("preauthorize_declined")
    with pytest.raises(PaymentDeclined, match="insufficient_funds"):
        provider.preauthorize("pm_1QCardNoFunds", eur("20.00"), "entry-s00003")
    with pytest.raises(PaymentDeclined, match="authentication_required"):
        provider.preauthorize("pm_1QCard3DS", eur("20.00"), "entry-s00004")


def test_capture_takes_the_final_amount() -> None:
    provider, http = _provider("capture")
    cap = provider.capture("pi_3QEntry00001", eur("7.35"), "exit-s00001")
    assert cap.auth_id == "pi_3QEntry00001" and cap.capture_id == "ch_3QEntry00001"
    assert cap.amount == eur("7.35")
    assert http.requests[0][3] == {"amount_to_capture": "735"}
    assert http.requests[0][2]["Idempotency-Key"] == "exit-s00001"


def test_capture_key_reused_for_another_amount_is_a_conflict() -> None:
    provider, _ = _provider("capture_conflict")
    with pytest.raises(IdempotencyConflict, match="same parameters"):
        provider.capture("pi_3QEntry00001", eur("8.00"), "exit-s00001")


def test_capture_of_an_unknown_intent() -> None:
    provider, _ = _provider("capture_conflict")
    with pytest.raises(UnknownPayment, match="pi_3QMissing"):
        provider.capture("pi_3QMissing", eur("1.00"), "exit-s09999")


def test_release_cancels_the_intent() -> None:
    provider, http = _provider("release")
    provider.release("pi_3QEntry00002", "release-s00002")
    [(_, path, headers, params)] = http.requests
    assert path == "/v1/payment_intents/pi_3QEntry00002/cancel"
    assert headers["Idempotency-Key"] == "release-s00002"
    assert params == {"cancellation_reason": "abandoned"}


def test_refund_part_of_a_capture() -> None:
    provider, http = _provider("refund")
    ref = provider.refund("ch_3QEntry00001", eur("2.99"), "dispute-d00001")
    assert ref.refund_id == "re_3QRefund00001" and ref.amount == eur("2.99")
    assert ref.capture_id == "ch_3QEntry00001"
    assert http.requests[0][3] == {"amount": "299", "charge": "ch_3QEntry00001"}


@pytest.mark.parametrize(("call", "match"), [
    (lambda p: p.preauthorize("pm_1", eur("1"), " "), "idempotency key"),
    (lambda p: p.capture("pi_1", eur("1"), ""), "idempotency key"),
    (lambda p: p.release("pi_1", ""), "idempotency key"),
    (lambda p: p.refund("ch_1", eur("1"), ""), "idempotency key"),
    (lambda p: p.preauthorize("pm_1", eur("0"), "k"), "must be positive"),
    (lambda p: p.capture("pi_1", eur("0"), "k"), "release an empty cart"),
    (lambda p: p.refund("ch_1", eur("-1"), "k"), "must be positive"),
])
def test_bad_calls_never_reach_stripe(call: Callable[[StripeProvider], object],
                                      match: str) -> None:
    provider, http = _provider()
    with pytest.raises(ValueError, match=match):
        call(provider)
    assert http.requests == []


@pytest.mark.parametrize("payer", ["cus_x:", ":pm_1", "cus_1:pm_1:pm_2", "pm_1 ", "x",
                                   "bank_1:pm_1", "", "cus_1:pm_card_visa\n"])
def test_malformed_payer_is_a_payment_error_before_any_request(payer: str) -> None:
    """A payment error, not a ValueError: the entry flow records a refusal for it instead of
    leaving the visit half-admitted."""
    provider, http = _provider()
    with pytest.raises(PaymentError, match="malformed payment token"):
        provider.preauthorize(payer, eur("1"), "k")
    with pytest.raises(PaymentError, match="malformed payment token"):
        provider.check_payer_ref(payer)
    assert http.requests == []


@pytest.mark.parametrize("payer", ["pm_1QCardVisa", "cus_QShopper1:pm_1QCardVisa",
                                   "pm_card_visa", "card_1Abc"])
def test_well_formed_payers_pass_the_check(payer: str) -> None:
    provider, _ = _provider()
    provider.check_payer_ref(payer)
    assert isinstance(provider, ChecksPayerRef)


class Unreachable(RecordedStripe):
    """The network is down: what the library's own clients raise on a refused connection."""

    def request(self, method: str, url: str, headers: Mapping[str, str] | None,
                post_data: Any = None, *, _usage: list[str] | None = None
                ) -> tuple[str, int, Mapping[str, str]]:
        raise stripe.APIConnectionError("Unexpected error communicating with Stripe.")


def test_unreachable_stripe_is_a_payment_error_that_says_retry_is_safe() -> None:
    provider = StripeProvider.from_api_key("sk_test_recorded", http_client=Unreachable(),
                                           max_network_retries=0)
    with pytest.raises(PaymentError, match="unreachable; retrying with the same idempotency"):
        provider.capture("pi_3QEntry00001", eur("7.35"), "exit-s00001")


# ---- webhooks ---------------------------------------------------------------------------------

def _sign(payload: str, secret: str = WHSEC, at: int | None = None) -> str:
    return _sign_with(payload, secret, at)


@pytest.fixture
def event_payload() -> str:
    return (FIXTURES / "event_payment_intent_succeeded.json").read_text()


def test_signed_webhook_is_accepted(event_payload: str) -> None:
    receiver = StripeWebhookReceiver(WHSEC)
    event = receiver.receive(event_payload.encode(), _sign(event_payload))
    assert event is not None and event.id == "evt_3QCaptured00001"
    assert event.type == "payment_intent.succeeded"
    assert event.data.object["amount_received"] == 735


@pytest.mark.parametrize("attack", ["tampered", "wrong_secret", "no_header", "stale", "garbage"])
def test_unverified_webhooks_are_refused(event_payload: str, attack: str) -> None:
    receiver = StripeWebhookReceiver(WHSEC, tolerance_s=300)
    payload, header = event_payload, _sign(event_payload)
    if attack == "tampered":
        payload = payload.replace('"amount_received": 735', '"amount_received": 1')
    elif attack == "wrong_secret":
        header = _sign(payload, secret="whsec_someone_else")
    elif attack == "no_header":
        header = None  # type: ignore[assignment]
    elif attack == "stale":
        header = _sign(payload, at=int(time.time()) - 3600)
    else:
        payload = "not json"
        header = _sign(payload)
    with pytest.raises(WebhookRejected):
        receiver.receive(payload, header)


def test_redelivered_event_is_ignored_once_handled(event_payload: str) -> None:
    handled: set[str] = set()
    receiver = StripeWebhookReceiver(WHSEC, seen=handled)
    first = receiver.receive(event_payload, _sign(event_payload))
    assert first is not None
    # not yet recorded as handled (e.g. crashed while applying it): Stripe's retry is processed
    assert receiver.receive(event_payload, _sign(event_payload)) is not None
    receiver.done(first)
    assert handled == {"evt_3QCaptured00001"}
    # a later redelivery, freshly signed by Stripe, changes nothing
    assert receiver.receive(event_payload, _sign(event_payload, at=int(time.time()) + 5)) is None
    # and a replay still has to verify: the id alone buys nothing
    with pytest.raises(WebhookRejected):
        receiver.receive(event_payload, _sign(event_payload, secret="whsec_x"))


# ---- holds that can no longer be captured -----------------------------------------------------

@pytest.mark.parametrize(("auth", "key"), [("pi_3QExpired0001", "exit-s00010"),
                                           ("pi_3QExpired0002", "exit-s00011")])
def test_capturing_a_hold_gone_is_a_final_refusal(auth: str, key: str) -> None:
    """An intent cancelled at Stripe (the authorisation expired) or an authorisation past its
    capture window: the service must not retry it for ever as an unknown outcome."""
    provider, _ = _provider("capture_hold_gone")
    with pytest.raises(AuthorizationGone, match="expired or was cancelled at Stripe") as e:
        provider.capture(auth, eur("7.35"), key)
    assert is_final(e.value)


def test_an_intent_captured_already_is_not_a_hold_gone() -> None:
    """'unexpected state: succeeded' may be an earlier capture whose answer was lost: money
    moved, so it stays an unknown outcome (retried with its key), never a refusal."""
    provider, _ = _provider("capture_hold_gone")
    with pytest.raises(PaymentError, match="status of succeeded") as e:
        provider.capture("pi_3QCaptured001", eur("7.35"), "exit-s00012")
    assert not is_final(e.value)


def test_releasing_a_hold_gone_is_done() -> None:
    provider, http = _provider("capture_hold_gone")
    provider.release("pi_3QExpired0001", "release-s00010")  # no error: the hold is gone
    assert http.sent("/v1/payment_intents/pi_3QExpired0001/cancel") == [
        {"cancellation_reason": "abandoned"}]


# ---- the provider the settings name -----------------------------------------------------------

def test_the_configured_provider_calls_stripe_with_the_settings_key(tmp_path: Path) -> None:
    from walkout.service.clock import ManualClock
    from walkout.service.db import make_engine, session_factory
    from walkout.service.payments.configured import configured_provider
    from walkout.service.payments.ledger import LedgerProvider

    sessions = session_factory(make_engine(f"sqlite:///{tmp_path / 'w.db'}"))
    settings = ServiceSettings(payment_provider="stripe",
                               stripe_api_key=SecretStr("sk_test_storeKey123"),
                               stripe_webhook_secret=SecretStr(WHSEC))
    http = RecordedStripe("preauthorize")
    provider = configured_provider(settings, sessions, ManualClock(), stripe_http_client=http)
    assert isinstance(provider, StripeProvider)
    provider.preauthorize("cus_QShopper1:pm_1QCardVisa", eur("20.00"), "entry-s00001")
    [(_, _, headers, _)] = http.requests
    assert headers["Authorization"] == "Bearer sk_test_storeKey123"
    assert isinstance(configured_provider(ServiceSettings(), sessions, ManualClock()),
                      LedgerProvider)


def test_a_signed_body_that_is_no_event_is_a_bad_payload() -> None:
    receiver = StripeWebhookReceiver(WHSEC)
    with pytest.raises(WebhookRejected) as e:
        receiver.verify("not json", _sign("not json"))
    assert e.value.code == "bad_payload"
    with pytest.raises(WebhookRejected) as e:
        receiver.verify("{}", _sign("{}", secret="whsec_other"))
    assert e.value.code == "bad_signature"


# ---- settings -----------------------------------------------------------------------------------

STORE_KEY = SecretStr("sk_live_51StoreSecretKey")
STORE_WHSEC = SecretStr("whsec_StoreSigningSecret")


@pytest.mark.parametrize(("given", "message"), [
    ({}, "payment_provider is stripe but WALKOUT_STRIPE_API_KEY and "
         "WALKOUT_STRIPE_WEBHOOK_SECRET are not set"),
    ({"stripe_webhook_secret": STORE_WHSEC}, "WALKOUT_STRIPE_API_KEY is not set"),
    ({"stripe_api_key": STORE_KEY}, "WALKOUT_STRIPE_WEBHOOK_SECRET is not set"),
    ({"stripe_api_key": SecretStr("pk_live_51Publishable"),
      "stripe_webhook_secret": STORE_WHSEC}, "publishable key"),
    ({"stripe_api_key": SecretStr("sk_live_51 spaced"), "stripe_webhook_secret": STORE_WHSEC},
     "WALKOUT_STRIPE_API_KEY is not a Stripe secret key"),
    ({"stripe_api_key": STORE_KEY, "stripe_webhook_secret": SecretStr("sk_live_51Swapped")},
     "WALKOUT_STRIPE_WEBHOOK_SECRET is not a webhook signing secret"),
])
def test_a_stripe_store_without_its_key_and_secret_is_refused(given: dict[str, Any],
                                                              message: str) -> None:
    with pytest.raises(ValidationError) as e:
        ServiceSettings(payment_provider="stripe", **given)
    text = str(e.value)
    assert message in text
    for v in given.values():  # the message names variables, never echoes a value
        assert v.get_secret_value() not in text


def test_stripe_settings_on_a_ledger_store_are_refused() -> None:
    """The key set, the provider forgotten: that store would hand out goods against a ledger
    no card is behind."""
    with pytest.raises(ValidationError, match="WALKOUT_STRIPE_API_KEY set but "
                                              "WALKOUT_PAYMENT_PROVIDER is ledger"):
        ServiceSettings(stripe_api_key=STORE_KEY)


def test_stripe_settings_come_from_the_environment_and_stay_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALKOUT_PAYMENT_PROVIDER", "stripe")
    with pytest.raises(ValidationError, match="WALKOUT_STRIPE_API_KEY and "
                                              "WALKOUT_STRIPE_WEBHOOK_SECRET are not set"):
        ServiceSettings()
    monkeypatch.setenv("WALKOUT_STRIPE_API_KEY", STORE_KEY.get_secret_value())
    monkeypatch.setenv("WALKOUT_STRIPE_WEBHOOK_SECRET", STORE_WHSEC.get_secret_value())
    s = ServiceSettings()
    assert s.stripe_live and s.stripe_api_key == STORE_KEY
    for shown in (repr(s), str(s), s.model_dump_json()):
        assert "StoreSecretKey" not in shown and "StoreSigningSecret" not in shown
    logged = redact(f"key {STORE_KEY.get_secret_value()} secret "
                    f"{STORE_WHSEC.get_secret_value()} rk_test_51Restricted")
    assert "Store" not in logged and "Restricted" not in logged


def test_serve_refuses_stripe_without_its_key_in_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from walkout.cli import app

    monkeypatch.setenv("WALKOUT_PAYMENT_PROVIDER", "stripe")
    monkeypatch.setenv("WALKOUT_STRIPE_WEBHOOK_SECRET", STORE_WHSEC.get_secret_value())
    res = CliRunner().invoke(app, ["serve", "--db", "sqlite:///:memory:"])
    assert res.exit_code == 2, res.output
    out = " ".join(res.output.split())
    assert "invalid settings: payment_provider is stripe but WALKOUT_STRIPE_API_KEY " \
           "is not set" in out
    assert "Traceback" not in out and "StoreSigningSecret" not in out


def test_charge_takes_a_balance_from_the_saved_card_off_session() -> None:
    """A visit's balance above its hold: an automatic-capture intent confirmed off-session,
    under the balance's key; a declined card is a decline (the balance stays owed)."""
    provider, http = _provider("charge_balance")
    assert isinstance(provider, ChargesSavedMethod)
    got = provider.charge("cus_QShopper1:pm_1QCardVisa", eur("349.60"), "visit:0a1b:balance")
    assert (got.capture_id, got.auth_id, got.amount) == ("ch_3QBalance0001", "pi_3QBalance0001",
                                                          eur("349.60"))
    [(method, path, headers, params)] = http.requests
    assert (method, path) == ("post", "/v1/payment_intents")
    assert headers["Idempotency-Key"] == "visit:0a1b:balance"
    assert params["capture_method"] == "automatic" and params["off_session"] == "true"
    with pytest.raises(PaymentDeclined, match="insufficient_funds"):
        provider.charge("pm_1QCardNoFunds", eur("5.14"), "visit:v2:balance")
    with pytest.raises(PaymentDeclined, match="malformed"):
        provider.charge("cus_x:", eur("5.14"), "visit:v3:balance")
    assert len(http.requests) == 2  # the malformed one never left
