"""A store on Stripe: its settings, and Stripe's webhook at ``POST /v1/webhooks/stripe``.

The service runs on the real Stripe provider over recorded HTTP exchanges (``service_flow``:
the official library builds and parses every call). Webhook events are signed in the test with
the configured secret, exactly as Stripe signs them, and verified by the library's own
``construct_event``. Everything runs on SQLite and on PostgreSQL (``engine``).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from walkout.service import housekeeping
from walkout.service.app import PUBLIC_ROUTES, create_app
from walkout.service.clock import ManualClock
from walkout.service.models import Charge, Chargeback, PaymentWebhookEvent, Visit
from walkout.service.payments.stripe import StripeProvider
from walkout.service.settings import ServiceSettings
from walkout.service.testing import (
    ADMIN_TOKEN,
    STRIPE_TEST_KEY,
    STRIPE_WEBHOOK_SECRET,
    Svc,
    make_svc,
)

from .stripe_recorded import RecordedStripe, event, sign

BAR, WATER = "018627032007", "073360771026"  # 9.19 and 7.59 EUR in the `small` store
CARD = "cus_QShopper1:pm_1QCardVisa"
PI, CH = "pi_3QWalkout0001", "ch_3QWalkout0001"
HOOK = "/v1/webhooks/stripe"


# ---- the service on Stripe ----------------------------------------------------------------------

def _stripe_svc(engine: Engine, http: RecordedStripe | None = None) -> tuple[Svc, RecordedStripe]:
    """The service with the Stripe provider over the recorded exchanges (started: its
    start-up resumes pending payments, as after a restart)."""
    http = http or RecordedStripe("service_flow", "charge_owed_receipt")
    provider = StripeProvider.from_api_key(STRIPE_TEST_KEY, http_client=http,
                                           max_network_retries=0)
    return make_svc(engine, provider=provider), http


@pytest.fixture
def stripe_svc(engine: Engine) -> tuple[Svc, RecordedStripe]:
    svc, http = _stripe_svc(engine)
    with svc.client:
        yield svc, http


def _charged(svc: Svc) -> tuple[str, str, dict[str, str]]:
    """A shopper's visit captured on Stripe (16.78 of a 50.00 hold): (visit, receipt, the
    shopper's Authorization header)."""
    h = svc.shopper(card=CARD)
    vid = svc.enter(h)
    out = svc.leave(vid, {BAR: 1, WATER: 1})
    assert (out["state"], out["charged"]) == ("charged", {"amount": "16.78", "currency": "EUR"})
    return vid, str(out["receipt_id"]), h


def _post(svc: Svc, ev: dict[str, Any] | str, *, secret: str = STRIPE_WEBHOOK_SECRET,
          header: str | None = "sign", at: int | None = None) -> Any:
    """Deliver ``ev`` as Stripe does: the raw JSON body, signed with ``secret``."""
    body = ev if isinstance(ev, str) else json.dumps(ev)
    headers = {"Content-Type": "application/json"}
    if header == "sign":
        headers["Stripe-Signature"] = sign(body, secret, at)
    elif header is not None:
        headers["Stripe-Signature"] = header
    return svc.client.post(HOOK, content=body.encode(), headers=headers)


def _ok(svc: Svc, ev: dict[str, Any]) -> dict[str, Any]:
    r = _post(svc, ev)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _dispute(svc: Svc, h: dict[str, str], rid: str, pid: str) -> str:
    r = svc.client.post("/v1/disputes", json={"receipt_id": rid, "product_id": pid,
                                              "quantity": 1, "reason": "I put it back"},
                        headers=h)
    assert r.status_code == 201, r.text
    return str(r.json()["dispute_id"])


def _decide(svc: Svc, dispute_id: str) -> Any:
    return svc.client.post(f"/v1/disputes/{dispute_id}/decision",
                           json={"decision": "refund"}, headers=svc.gate)


def _count(svc: Svc, model: type) -> int:
    with svc.deps.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _visit_state(svc: Svc, vid: str) -> str:
    with svc.deps.sessions() as s:
        v = s.get(Visit, vid)
        assert v is not None
        return v.state


def _refunds(svc: Svc, vid: str) -> list[tuple[str, Decimal, str]]:
    """The visit's refund charges: (key, amount, status), in order."""
    with svc.deps.sessions() as s:
        return [(c.idempotency_key, Decimal(c.amount), c.status) for c in s.scalars(
            select(Charge).where(Charge.visit_id == vid, Charge.kind == "refund")
            .order_by(Charge.id))]


REFUNDS_PATH = "/v1/refunds"


# ---- the app a Stripe store gets ----------------------------------------------------------------

def test_create_app_builds_stripe_from_the_settings(engine: Engine) -> None:
    settings = ServiceSettings(db_url=str(engine.url), payment_provider="stripe",
                               stripe_api_key=SecretStr(STRIPE_TEST_KEY),
                               stripe_webhook_secret=SecretStr(STRIPE_WEBHOOK_SECRET),
                               entry_secret=SecretStr("k" * 32))
    app = create_app(settings, engine=engine, clock=ManualClock())
    assert isinstance(app.state.deps.provider, StripeProvider)
    with TestClient(app) as client:  # the webhook is there, and wants Stripe's signature
        r = client.post(HOOK, content=b"{}")
        assert (r.status_code, r.json()["error"]) == (400, "bad_signature")


def test_a_ledger_store_has_no_stripe_webhook(svc: Svc) -> None:
    assert svc.client.post(HOOK, content=b"{}").status_code == 404


def test_the_webhook_is_the_only_route_without_a_token(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    svc, _ = stripe_svc
    assert ("POST", HOOK) in PUBLIC_ROUTES
    routes = [(m, r.path) for r in svc.client.app.routes  # type: ignore[attr-defined]
              if isinstance(r, APIRoute) for m in r.methods]
    assert ("POST", HOOK) in routes
    for method, path in routes:
        if (method, path) in PUBLIC_ROUTES:
            continue
        r = svc.client.request(method, re.sub(r"\{[^}]+\}", "x", path), json={})
        assert r.status_code == 401, f"{method} {path} answered {r.status_code} without a token"


# ---- signatures ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("attack", "code"), [
    ("no_header", "bad_signature"), ("wrong_secret", "bad_signature"),
    ("tampered", "bad_signature"), ("stale", "bad_signature"), ("garbage", "bad_signature"),
    ("signed_garbage", "bad_payload"),
])
def test_a_webhook_that_does_not_verify_is_refused_and_changes_nothing(
        stripe_svc: tuple[Svc, RecordedStripe], attack: str, code: str) -> None:
    svc, _ = stripe_svc
    vid, _, _ = _charged(svc)
    body = json.dumps(event("charge_dispute_created"))
    kw: dict[str, Any] = {}
    if attack == "no_header":
        kw["header"] = None
    elif attack == "wrong_secret":
        kw["secret"] = "whsec_someoneElse"
    elif attack == "tampered":  # signed, then the amount changed on the way
        kw["header"] = sign(body, STRIPE_WEBHOOK_SECRET)
        body = body.replace('"amount": 1678', '"amount": 1')
    elif attack == "stale":  # a captured delivery replayed an hour later
        kw["at"] = int(__import__("time").time()) - 3600
    elif attack == "garbage":
        kw["header"] = "t=1,v1=00"
    else:
        body = "not json"
    r = _post(svc, body, **kw)
    assert (r.status_code, r.json()["error"]) == (400, code), r.text
    assert STRIPE_WEBHOOK_SECRET not in r.text
    assert _count(svc, PaymentWebhookEvent) == 0 and _count(svc, Chargeback) == 0
    assert _visit_state(svc, vid) == "charged"


def test_an_oversized_body_is_refused_unread(stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    svc, _ = stripe_svc
    r = _post(svc, "x" * ((1 << 20) + 1))
    assert (r.status_code, r.json()["error"]) == (413, "too_large")
    assert _count(svc, PaymentWebhookEvent) == 0


# ---- once per event id --------------------------------------------------------------------------

def test_a_redelivered_event_is_processed_once_also_after_a_restart(engine: Engine) -> None:
    svc, http = _stripe_svc(engine)
    with svc.client:
        vid, _, _ = _charged(svc)
        ev = event("charge_refunded")  # 10.00 refunded in the Stripe dashboard
        first = _ok(svc, ev)
        assert (first["outcome"], first["duplicate"]) == ("attention", False)
        again = _ok(svc, ev)  # Stripe retries a delivery whose answer it did not get
        assert (again["outcome"], again["duplicate"]) == ("attention", True)
    restarted, _ = _stripe_svc(engine, http)  # a new process on the same database
    with restarted.client:
        third = _ok(restarted, ev)
        assert third["duplicate"] is True and third["detail"] == first["detail"]
        assert _refunds(restarted, vid) == [
            (f"stripe:{ev['id']}:refund", Decimal("10.0000"), "succeeded")]
        assert _count(restarted, PaymentWebhookEvent) == 1


def test_unknown_event_types_are_acknowledged_and_recorded_as_ignored(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    svc, _ = stripe_svc
    for ev in (event("payment_intent_succeeded"),
               event("charge_refunded", id="evt_1QUnknownType01", type="issuing_card.created")):
        got = _ok(svc, ev)
        assert got["outcome"] == "ignored" and "walkout takes no action on" in got["detail"]
    r = svc.client.get("/v1/ops/payment-events", headers=svc.gate)
    assert [(e["type"], e["outcome"]) for e in r.json()] == [
        ("issuing_card.created", "ignored"), ("payment_intent.succeeded", "ignored")]
    assert svc.client.get("/v1/ops/payment-events?attention=true",
                          headers=svc.gate).json() == []


def test_an_event_of_the_other_mode_is_ignored(stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    """A test-mode store (sk_test_) takes no live-mode event, and the other way round."""
    svc, _ = stripe_svc
    vid, _, _ = _charged(svc)
    got = _ok(svc, event("charge_dispute_created", livemode=True))
    assert got["outcome"] == "ignored" and "live-mode event" in got["detail"]
    assert _count(svc, Chargeback) == 0 and _visit_state(svc, vid) == "charged"


# ---- chargebacks --------------------------------------------------------------------------------

def test_a_chargeback_is_recorded_shown_and_never_refunded_on_top(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    svc, http = stripe_svc
    vid, rid, h = _charged(svc)
    did = _dispute(svc, h, rid, BAR)  # the shopper also contests a line with the store
    got = _ok(svc, event("charge_dispute_created"))
    assert got["outcome"] == "attention" and "respond in the Stripe dashboard by" in got["detail"]
    [cb] = svc.client.get("/v1/ops/chargebacks", headers=svc.gate).json()
    assert cb | {"opened_at": None, "evidence_due_by": None} == {
        "chargeback_id": "dp_1QWalkout0001", "visit_id": vid, "receipt_id": rid,
        "visit_state": "disputed", "charge": CH, "amount": "16.78", "currency": "EUR",
        "reason": "fraudulent", "status": "needs_response", "open": True,
        "funds_withheld": True, "fee": None, "fee_currency": None,  # no money moved yet
        "evidence_due_by": None, "opened_at": None, "closed_at": None}
    assert cb["evidence_due_by"].startswith("2026-01-14")
    assert svc.client.get("/v1/ops/chargebacks", headers=svc.shopper(
        card="tok_bob", email="bob@example.org")).status_code == 403
    [attention] = svc.client.get("/v1/ops/payment-events?attention=true",
                                 headers=svc.gate).json()
    assert attention["type"] == "charge.dispute.created" and attention["visit_id"] == vid

    # the bank returns the money: a refund of the line on top would pay the shopper twice
    r = _decide(svc, did)
    assert (r.status_code, r.json()["error"]) == (409, "chargeback"), r.text
    assert http.sent(REFUNDS_PATH) == [] and _refunds(svc, vid) == []

    lost = event("charge_dispute_created", id="evt_1QDisputeLost01",
                 type="charge.dispute.closed", created=1768500000, obj_status="lost")
    assert _ok(svc, lost)["outcome"] == "attention"
    # an update older than the close, delivered late, changes nothing
    late = event("charge_dispute_created", id="evt_1QDisputeLate01",
                 type="charge.dispute.updated", created=1767700000, obj_status="under_review")
    assert _ok(svc, late)["outcome"] == "ignored"
    [cb] = svc.client.get("/v1/ops/chargebacks", headers=svc.gate).json()
    assert (cb["status"], cb["open"], cb["visit_state"]) == ("lost", False, "disputed")
    assert cb["closed_at"] is not None
    assert svc.client.get("/v1/ops/chargebacks?only_open=true", headers=svc.gate).json() == []
    assert _decide(svc, did).json()["error"] == "chargeback"
    assert http.sent(REFUNDS_PATH) == []


def test_a_chargeback_won_gives_the_visit_back(stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    svc, http = stripe_svc
    vid, rid, h = _charged(svc)
    _ok(svc, event("charge_dispute_created"))
    assert _visit_state(svc, vid) == "disputed"
    won = event("charge_dispute_created", id="evt_1QDisputeWon001",
                type="charge.dispute.closed", created=1768500000, obj_status="won")
    assert _ok(svc, won)["outcome"] == "applied"
    assert _visit_state(svc, vid) == "charged"
    # the store kept the money: a founded dispute is refunded as usual, in full
    r = _decide(svc, _dispute(svc, h, rid, BAR))
    assert r.status_code == 200 and r.json()["state"] == "refunded", r.text
    assert http.sent(REFUNDS_PATH) == [{"amount": "919", "charge": CH}]


# ---- Stripe's chargeback fee --------------------------------------------------------------------

def _fee(svc: Svc) -> tuple[str | None, str | None]:
    """The one chargeback's fee as ``GET /v1/ops/chargebacks`` shows it."""
    [cb] = svc.client.get("/v1/ops/chargebacks", headers=svc.gate).json()
    return cb["fee"], cb["fee_currency"]


def _closed(status: str, *transactions: dict[str, Any], created: int = 1768500000,
            event_id: str = "evt_1QDisputeClose1") -> dict[str, Any]:
    """``charge.dispute.closed`` as ``status`` with these balance transactions."""
    return event("charge_dispute_created", id=event_id, type="charge.dispute.closed",
                 created=created, obj_status=status,
                 obj_balance_transactions=list(transactions))


def _transactions() -> list[dict[str, Any]]:
    """The recorded withdrawal (fee 15.00 EUR) and reinstatement (fee 15.00 given back)."""
    return list(event("charge_dispute_funds_reinstated")["data"]["object"]
                ["balance_transactions"])


def test_a_chargebacks_fee_is_the_net_of_its_balance_transactions(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    """Stripe lists the dispute's balance transactions as the money moves: the withdrawal
    with its dispute fee, and on a win (in some regions) a reversal giving the fee back."""
    svc, _ = stripe_svc
    _, rid, _ = _charged(svc)
    _ok(svc, event("charge_dispute_created"))  # opened: no money moved, no fee listed yet
    assert _fee(svc) == (None, None)
    got = _ok(svc, event("charge_dispute_funds_withdrawn"))
    assert got["outcome"] == "applied" and "Stripe's fee 15.00 EUR" in got["detail"]
    assert _fee(svc) == ("15.00", "EUR")
    # on the receipt, and on the dashboard's open chargebacks
    detail = svc.client.get(f"/v1/ops/receipts/{rid}", headers=svc.gate).json()
    assert [(c["fee"], c["fee_currency"]) for c in detail["chargebacks"]] == [("15.00", "EUR")]
    attention = svc.client.get("/v1/ops/payment-attention", headers=svc.gate).json()
    assert [c["fee"] for c in attention["open_chargebacks"]] == ["15.00"]
    # an update older than the withdrawal, delivered late, lists none: the fee stays
    late = event("charge_dispute_created", id="evt_1QDisputeLate01",
                 type="charge.dispute.updated", created=1767600100)
    assert _ok(svc, late)["outcome"] == "ignored"
    assert _fee(svc) == ("15.00", "EUR")
    # won, and Stripe gives the fee back: nothing net
    assert _ok(svc, event("charge_dispute_funds_reinstated"))["outcome"] == "applied"
    assert _fee(svc) == ("0.00", "EUR")


def test_a_fee_given_back_after_the_close_is_recorded(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    """A closed chargeback never reopens, but a newer event of it may list the fee's
    reversal (``fee_details`` only, here): the fee follows, the status stays."""
    svc, _ = stripe_svc
    vid, _, _ = _charged(svc)
    withdrawal, reversal = _transactions()
    _ok(svc, event("charge_dispute_created"))
    assert _ok(svc, _closed("won", withdrawal))["outcome"] == "applied"
    assert _fee(svc) == ("15.00", "EUR") and _visit_state(svc, vid) == "charged"
    del reversal["fee"]  # the fee as its details say it
    back = event("charge_dispute_funds_reinstated", created=1768500060,
                 obj_balance_transactions=[withdrawal, reversal])
    got = _ok(svc, back)
    assert got["outcome"] == "applied" and "now 0.00 EUR" in got["detail"], got
    assert _fee(svc) == ("0.00", "EUR")
    # told again, or by an older event: nothing changes
    again = event("charge_dispute_funds_reinstated", id="evt_1QDisputeBack02",
                  created=1768500120)
    assert "which is final" in _ok(svc, again)["detail"]
    assert _ok(svc, event("charge_dispute_funds_withdrawn", id="evt_1QDisputeFunds02")
               )["outcome"] == "ignored"
    [cb] = svc.client.get("/v1/ops/chargebacks", headers=svc.gate).json()
    assert (cb["status"], cb["fee"]) == ("won", "0.00")


@pytest.mark.parametrize(("closing", "fees", "lost", "net_after"), [
    ("lost", "15.00", "16.78", "-15.00"),
    ("won, fee kept", "15.00", "0.00", "1.78"),
    ("won, fee given back", "0.00", "0.00", "16.78"),
])
def test_the_sales_figures_count_the_fee_won_or_lost(
        stripe_svc: tuple[Svc, RecordedStripe], closing: str, fees: str, lost: str,
        net_after: str) -> None:
    """The fee is a cost whether the store wins or loses: on the day the chargeback opened
    (when Stripe takes it), net of what Stripe gave back, out of the net after chargebacks."""
    svc, _ = stripe_svc
    _charged(svc)  # captured on 2026-01-01
    _ok(svc, event("charge_dispute_created"))  # 2026-01-05
    _ok(svc, event("charge_dispute_funds_withdrawn"))
    withdrawal, reversal = _transactions()
    if closing == "lost":
        _ok(svc, _closed("lost", withdrawal))  # 2026-01-15
    elif closing == "won, fee kept":
        reversal |= {"fee": 0, "fee_details": [], "net": reversal["amount"]}
        _ok(svc, _closed("won", withdrawal, reversal))
    else:
        _ok(svc, event("charge_dispute_funds_reinstated"))
    rep = svc.client.get("/v1/ops/sales?days=16&until=2026-01-16", headers=svc.gate).json()
    day = {d["date"]: d for d in rep["days"]}
    assert (day["2026-01-05"]["chargebacks"], day["2026-01-05"]["chargeback_fees"]) == (1, fees)
    assert {d["chargeback_fees"] for k, d in day.items() if k != "2026-01-05"} == {"0.00"}
    keys = ("captured", "chargebacks_lost", "chargeback_fees", "net_after_chargebacks")
    assert tuple(rep["totals"][k] for k in keys) == ("16.78", lost, fees, net_after)


# ---- holds that expired or were cancelled outside walkout ---------------------------------------

def test_an_expired_hold_is_never_captured_blindly(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    """Nothing is held any more: the receipt is charged to the saved card off-session (an
    automatic-capture PaymentIntent under the visit's balance key), once."""
    svc, http = stripe_svc
    h = svc.shopper(card=CARD)
    vid = svc.enter(h)  # the shopper is inside when Stripe cancels the hold
    got = _ok(svc, event("payment_intent_canceled"))
    assert got["outcome"] == "attention" and "the exit will capture nothing" in got["detail"]
    out = svc.leave(vid, {BAR: 1, WATER: 1})
    assert (out["state"], out["charged"]["amount"]) == ("charged", "16.78")
    assert http.sent(f"/v1/payment_intents/{PI}/capture") == []  # no call made in vain
    with svc.deps.sessions() as s:
        caps = {c.idempotency_key: c for c in s.scalars(
            select(Charge).where(Charge.visit_id == vid, Charge.kind == "capture"))}
        cap, bal = caps[f"visit:{vid}:capture"], caps[f"visit:{vid}:balance"]
        assert cap.status == "failed" and cap.error is not None and "expired" in cap.error
        assert (bal.status, bal.provider_ref, bal.amount) == (
            "succeeded", "ch_3QBalance0002", Decimal("16.78"))
    [paid] = [p for p in http.sent("/v1/payment_intents") if p["capture_method"] == "automatic"]
    assert (paid["amount"], paid["off_session"]) == ("1678", "true")
    housekeeping.turn(svc.deps)  # nothing is left to retry
    assert http.sent(f"/v1/payment_intents/{PI}/capture") == []
    assert len(http.sent("/v1/payment_intents")) == 2  # the pre-authorisation and that one
    assert _visit_state(svc, vid) == "charged"


def test_an_expired_hold_settles_a_capture_left_unknown(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    """Stripe was unreachable at the exit (the capture's outcome unknown, retried with its
    key); then Stripe says the hold expired: the capture can never succeed, so it is recorded
    refused and the visit goes to staff instead of being retried for ever."""
    svc, http = stripe_svc
    vid = svc.enter(svc.shopper(card=CARD))
    http.down = True
    assert svc.leave(vid, {BAR: 1})["state"] == "checking_out"
    got = _ok(svc, event("payment_intent_canceled"))
    assert "the exit's capture is recorded refused" in got["detail"]
    assert _visit_state(svc, vid) == "in_review"
    http.down = False
    housekeeping.turn(svc.deps)  # the receipt, owed, is charged to the saved card
    assert len(http.sent(f"/v1/payment_intents/{PI}/capture")) == 1  # the one while down
    [paid] = [p for p in http.sent("/v1/payment_intents") if p["capture_method"] == "automatic"]
    assert paid["amount"] == "919"
    assert _visit_state(svc, vid) == "charged"


def test_walkouts_own_release_comes_back_ignored(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    svc, _ = stripe_svc
    vid = svc.enter(svc.shopper(card=CARD))
    assert svc.leave(vid, {})["state"] == "released"
    got = _ok(svc, event("payment_intent_canceled", obj_cancellation_reason="abandoned"))
    assert got["outcome"] == "ignored" and "released by walkout itself" in got["detail"]
    assert _visit_state(svc, vid) == "released"


# ---- refunds made outside walkout ---------------------------------------------------------------

def test_a_refund_made_in_the_dashboard_caps_walkouts_refunds(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    svc, http = stripe_svc
    vid, rid, h = _charged(svc)
    got = _ok(svc, event("charge_refunded"))  # 10.00 of the 16.78 refunded at Stripe
    assert got["outcome"] == "attention" and "10.00 EUR refunded outside walkout" in got["detail"]
    # the shopper contests the bar (9.19): only 6.78 of the payment is left to give back
    r = _decide(svc, _dispute(svc, h, rid, BAR))
    assert r.status_code == 200 and r.json()["refund"]["amount"] == "6.78", r.text
    assert http.sent(REFUNDS_PATH) == [{"amount": "678", "charge": CH}]
    # and nothing is left for the water
    r = _decide(svc, _dispute(svc, h, rid, WATER))
    assert (r.status_code, r.json()["error"]) == (409, "nothing_captured"), r.text
    assert len(http.sent(REFUNDS_PATH)) == 1
    # Stripe reports walkout's own refund too (16.78 refunded in all): nothing more is recorded
    echo = event("charge_refunded", id="evt_1QRefundEcho01", created=1767262100,
                 obj_amount_refunded=1678, obj_refunded=True)
    assert _ok(svc, echo)["outcome"] == "ignored"
    # an older report, delivered late, adds nothing either
    assert _ok(svc, event("charge_refunded", id="evt_1QRefundOld001", created=1767260000,
                          obj_amount_refunded=500))["outcome"] == "ignored"
    assert [(amount, status) for _, amount, status in _refunds(svc, vid)] == [
        (Decimal("10.0000"), "succeeded"), (Decimal("6.7800"), "succeeded")]
    detail = svc.client.get(f"/v1/ops/receipts/{rid}", headers=svc.gate).json()
    assert [(c["kind"], c["amount"]) for c in detail["charges"]] == [
        ("preauth", "50.00"), ("capture", "16.78"), ("refund", "10.00"), ("refund", "6.78")]


@pytest.mark.parametrize(("refunded", "outside"), [(3322, None), (4322, "10.00")])
def test_before_2025_03_31_the_uncaptured_rest_is_no_refund(
        stripe_svc: tuple[Svc, RecordedStripe], refunded: int, outside: str | None) -> None:
    """An endpoint on an older API version gets ``charge.refunded`` after every partial
    capture, the hold's uncaptured 33.22 counted in ``amount_refunded``: not money given back."""
    svc, _ = stripe_svc
    vid, _, _ = _charged(svc)
    got = _ok(svc, event("charge_refunded", api_version="2024-06-20",
                         obj_amount_refunded=refunded))
    assert [str(a.quantize(Decimal("0.01"))) for _, a, _ in _refunds(svc, vid)] == (
        [outside] if outside else [])
    assert got["outcome"] == ("attention" if outside else "ignored")


def test_an_event_for_another_systems_payment_is_ignored(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    """The Stripe account may take other payments (a web shop): not walkout's to record."""
    svc, _ = stripe_svc
    for ev in (event("charge_refunded", obj_id="ch_3QWebShop00001",
                     obj_payment_intent="pi_3QWebShop00001"),
               event("charge_dispute_created", id="evt_1QOtherDispute",
                     obj_charge="ch_3QWebShop00001", obj_payment_intent="pi_3QWebShop00001")):
        got = _ok(svc, ev)
        assert got["outcome"] == "ignored" and "not a walkout payment" in got["detail"]
    assert _count(svc, Chargeback) == 0


def test_the_admin_token_is_not_a_webhook_credential(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    svc, _ = stripe_svc
    r = svc.client.post(HOOK, content=json.dumps(event("charge_dispute_created")).encode(),
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert (r.status_code, r.json()["error"]) == (400, "bad_signature")


# ---- deliveries at the same time ----------------------------------------------------------------

def _at_once(svc: Svc, *events: dict[str, Any]) -> list[Any]:
    """``receive`` each event in its own thread, released together (as two deliveries that
    reach two API threads at once): their results, in order."""
    import threading

    import stripe

    from walkout.service import webhooks

    parsed = []
    for ev in events:
        body = json.dumps(ev)
        parsed.append(webhooks.Event.of(stripe.Webhook.construct_event(
            body, sign(body, STRIPE_WEBHOOK_SECRET), STRIPE_WEBHOOK_SECRET)))
    gate = threading.Barrier(len(parsed))
    out: list[Any] = [None] * len(parsed)

    def run(i: int) -> None:
        gate.wait()
        try:
            out[i] = webhooks.receive(svc.deps, parsed[i], False)
        except Exception as e:  # the test names it
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(parsed))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not [x for x in out if not isinstance(x, webhooks.Received)], out
    return out


def test_one_event_delivered_twice_at_once_is_applied_once(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    svc, _ = stripe_svc
    vid, _, _ = _charged(svc)
    ev = event("charge_refunded")
    first, second = _at_once(svc, ev, ev)
    assert sorted([first.duplicate, second.duplicate]) == [False, True], (first, second)
    assert [a for _, a, _ in _refunds(svc, vid)] == [Decimal("10.0000")]


def test_two_refund_reports_at_once_record_the_refund_once(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    """Two outside refunds (10.00, then 2.00 more: Stripe reports 10.00 and 12.00) whose
    events are handled at once: the visit's lock puts one after the other, so 12.00 is
    recorded in all, not 22.00."""
    svc, _ = stripe_svc
    vid, _, _ = _charged(svc)
    _at_once(svc, event("charge_refunded"),
             event("charge_refunded", id="evt_1QRefundDash02", created=1767261100,
                   obj_amount_refunded=1200))
    assert sum(a for _, a, _ in _refunds(svc, vid)) == Decimal("12.0000")


# ---- what the shopper, the dashboard and the figures see ----------------------------------------

def _keys(data: Any) -> list[str]:
    """Every key of a JSON document, nested ones included."""
    if isinstance(data, dict):
        return [*data, *(k for v in data.values() for k in _keys(v))]
    if isinstance(data, list):
        return [k for v in data for k in _keys(v)]
    return []


def _at(iso: str | None) -> datetime:
    assert iso is not None
    return datetime.fromisoformat(iso).astimezone(UTC)


def test_a_shoppers_export_lists_the_chargebacks_of_her_visits(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    """Her bank's chargeback is data about her: the export says what was claimed, how it
    ended and when, and nothing of the provider's references or the store's deadline."""
    svc, _ = stripe_svc
    vid, _, h = _charged(svc)
    assert svc.client.get("/v1/me/export", headers=h).json()["visits"][0]["chargebacks"] == []
    _ok(svc, event("charge_dispute_created"))
    _ok(svc, event("charge_dispute_funds_withdrawn"))  # Stripe's fee: the store's cost
    _ok(svc, event("charge_dispute_created", id="evt_1QDisputeLost01",
                   type="charge.dispute.closed", created=1768500000, obj_status="lost"))
    assert svc.client.get("/v1/ops/chargebacks", headers=svc.gate).json()[0]["fee"] == "15.00"
    data = svc.client.get("/v1/me/export", headers=h).json()
    [visit] = data["visits"]
    assert visit["visit_id"] == vid
    [cb] = visit["chargebacks"]
    assert cb | {"opened_at": None, "decided_at": None} == {
        "amount": "16.78", "currency": "EUR", "reason": "fraudulent", "status": "lost",
        "opened_at": None, "decided_at": None}
    assert _at(cb["opened_at"]) == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    assert _at(cb["decided_at"]) == datetime(2026, 1, 15, 18, 0, tzinfo=UTC)
    text = json.dumps(data)
    for ref in ("dp_1Q", CH, PI, "evt_1Q", "txn_1Q", "cus_", "pm_1Q", "2026-01-14", "15.00"):
        assert ref not in text, ref
    # no field of the fee or the deadline (as keys: "fee" as text matched a random visit id)
    assert not [k for k in _keys(data) if "fee" in k or "due" in k or "deadline" in k]
    # a request made to staff gets the same
    r = svc.client.post("/v1/admin/privacy/export", json={"email": "ann@example.org"},
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.json()["accounts"][0]["visits"][0]["chargebacks"] == [cb]
    # and another shopper's export holds none of it
    bob = svc.shopper(card="cus_QShopper2:pm_1QCardBob", email="bob@example.org")
    assert "chargebacks" not in json.dumps(svc.client.get("/v1/me/export", headers=bob).json())


def test_the_ops_receipt_marks_a_refund_made_outside_walkout(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    svc, _ = stripe_svc
    _, rid, h = _charged(svc)
    _ok(svc, event("charge_refunded"))  # 10.00 refunded in the Stripe dashboard
    assert _decide(svc, _dispute(svc, h, rid, BAR)).status_code == 200  # walkout's: 6.78
    detail = svc.client.get(f"/v1/ops/receipts/{rid}", headers=svc.gate).json()
    assert [(c["kind"], c["amount"], c["outside"]) for c in detail["charges"]] == [
        ("preauth", "50.00", False), ("capture", "16.78", False), ("refund", "10.00", True),
        ("refund", "6.78", False)]
    outside = detail["charges"][2]
    assert "refunded outside walkout" in outside["note"] and "evt_1QRefundDash01" in outside["note"]
    assert _at(outside["at"]) == datetime(2026, 1, 1, 9, 50, tzinfo=UTC)  # when Stripe made it
    assert [c["note"] for c in detail["charges"] if not c["outside"]] == [None] * 3
    assert detail["chargebacks"] == []


def test_the_dashboard_lists_open_chargebacks_first_due_and_recent_events_to_check(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    svc, _ = stripe_svc
    vid, rid, _ = _charged(svc)
    _ok(svc, event("charge_refunded"))  # needed attention, 8 days ago
    svc.clock.advance(8 * 86400)
    _ok(svc, event("charge_dispute_created"))  # due 2026-01-14
    # a second one on the payment (only to see the order): due two days earlier, first
    svc.clock.advance(60)
    _ok(svc, event("charge_dispute_created", id="evt_1QDisputeOpen02",
                   obj_id="dp_1QWalkout0002", obj_amount=500,
                   obj_evidence_details={"due_by": 1768435199 - 2 * 86400}))
    _ok(svc, event("payment_intent_succeeded"))  # nothing to check
    got = svc.client.get("/v1/ops/payment-attention", headers=svc.gate).json()
    assert (got["reports"], got["days"]) == (True, 7)
    assert got["counts"] == {"open_chargebacks": 2, "respond": 2, "attention_events": 2,
                             "acknowledged_events": 0, "owed_balances": 0,
                             "unconfirmed_charges": 0}
    assert [(c["chargeback_id"], c["amount"], c["receipt_id"], c["respond"])
            for c in got["open_chargebacks"]] == [
        ("dp_1QWalkout0002", "5.00", rid, True), ("dp_1QWalkout0001", "16.78", rid, True)]
    assert [(e["type"], e["object_id"], e["receipt_id"]) for e in got["attention_events"]] == [
        ("charge.dispute.created", "dp_1QWalkout0002", rid),
        ("charge.dispute.created", "dp_1QWalkout0001", rid)]
    wider = svc.client.get("/v1/ops/payment-attention?days=30", headers=svc.gate).json()
    assert [e["type"] for e in wider["attention_events"]] == [
        "charge.dispute.created", "charge.dispute.created", "charge.refunded"]
    # the receipt shows its chargebacks, the visit disputed
    detail = svc.client.get(f"/v1/ops/receipts/{rid}", headers=svc.gate).json()
    assert detail["state"] == "disputed"
    assert [(c["chargeback_id"], c["status"], c["open"], c["respond"])
            for c in detail["chargebacks"]] == [
        ("dp_1QWalkout0001", "needs_response", True, True),
        ("dp_1QWalkout0002", "needs_response", True, True)]
    assert _at(detail["chargebacks"][0]["evidence_due_by"]).date().isoformat() == "2026-01-14"
    # evidence sent for one (the bank deciding: nothing to answer), the other lost
    _ok(svc, event("charge_dispute_created", id="evt_1QDisputeRev02",
                   type="charge.dispute.updated", created=1767700000,
                   obj_id="dp_1QWalkout0002", obj_amount=500, obj_status="under_review"))
    _ok(svc, event("charge_dispute_created", id="evt_1QDisputeLost01",
                   type="charge.dispute.closed", created=1768500000, obj_status="lost"))
    got = svc.client.get("/v1/ops/payment-attention", headers=svc.gate).json()
    assert got["counts"] == {"open_chargebacks": 1, "respond": 0, "attention_events": 3,
                             "acknowledged_events": 0, "owed_balances": 0,
                             "unconfirmed_charges": 0}
    assert [(c["chargeback_id"], c["status"], c["respond"]) for c in got["open_chargebacks"]] == [
        ("dp_1QWalkout0002", "under_review", False)]
    assert got["attention_events"][0]["type"] == "charge.dispute.closed"
    assert svc.client.get("/v1/ops/payment-attention", headers=svc.shopper(
        card="cus_QShopper2:pm_1QCardBob", email="bob@example.org")).status_code == 403
    assert vid == detail["visit_id"]


def test_a_ledger_store_reports_no_payment_events(svc: Svc) -> None:
    got = svc.client.get("/v1/ops/payment-attention", headers=svc.gate).json()
    assert got["reports"] is False and got["open_chargebacks"] == []
    assert got["counts"] == {"open_chargebacks": 0, "respond": 0, "attention_events": 0,
                             "acknowledged_events": 0, "owed_balances": 0,
                             "unconfirmed_charges": 0}


# ---- staff acknowledge the events they handled --------------------------------------------------

def _operator(svc: Svc, name: str) -> tuple[str, dict[str, str]]:
    """A new operator account: (its id, its Authorization header)."""
    r = svc.client.post("/v1/admin/staff", json={"role": "operator", "name": name},
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 201, r.text
    return str(r.json()["account_id"]), {"Authorization": f"Bearer {r.json()['token']}"}


def _acknowledge(svc: Svc, event_id: str, h: dict[str, str], note: str | None = None) -> Any:
    return svc.client.post(f"/v1/ops/payment-events/{event_id}/acknowledge", headers=h,
                           **({"json": {"note": note}} if note else {}))


def _attention(svc: Svc, query: str = "") -> dict[str, Any]:
    r = svc.client.get("/v1/ops/payment-attention" + query, headers=svc.gate)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_an_acknowledged_event_leaves_the_list_and_says_who_and_when(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    svc, _ = stripe_svc
    _, rid, _ = _charged(svc)
    refund, opened = event("charge_refunded"), event("charge_dispute_created")
    _ok(svc, refund)
    _ok(svc, opened)
    got = _attention(svc)
    assert [e["event_id"] for e in got["attention_events"]] == [opened["id"], refund["id"]]
    assert [e["acknowledged"] for e in got["attention_events"]] == [None, None]
    assert (got["counts"]["attention_events"], got["counts"]["acknowledged_events"]) == (2, 0)

    mo, mo_h = _operator(svc, "Mo Desk")
    svc.clock.advance(600)
    r = _acknowledge(svc, refund["id"], mo_h, note="the manager refunded a broken bottle")
    assert r.status_code == 200, r.text
    first = r.json()
    assert (first["event_id"], first["type"], first["receipt_id"]) == (
        refund["id"], "charge.refunded", rid)
    assert first["acknowledged"] == {"by": mo, "by_name": "Mo Desk",
                                     "at": svc.clock.now().isoformat(),
                                     "note": "the manager refunded a broken bottle"}
    # idempotent: acknowledged again, later, by another operator: the first one stands
    _, lu_h = _operator(svc, "Lu Night")
    svc.clock.advance(600)
    again = _acknowledge(svc, refund["id"], lu_h)
    assert (again.status_code, again.json()) == (200, first)

    # the card lists what is left, and counts both
    got = _attention(svc)
    assert [e["event_id"] for e in got["attention_events"]] == [opened["id"]]
    assert got["counts"] == {"open_chargebacks": 1, "respond": 1, "attention_events": 1,
                             "acknowledged_events": 1, "owed_balances": 0,
                             "unconfirmed_charges": 0}
    # asked for, the acknowledged ones come too, with who and when
    both = _attention(svc, "?include_acknowledged=true")
    assert [(e["event_id"], e["acknowledged"]) for e in both["attention_events"]] == [
        (opened["id"], None), (refund["id"], first["acknowledged"])]
    assert both["counts"] == got["counts"]
    # and so does the list of every event
    listed = svc.client.get("/v1/ops/payment-events", headers=svc.gate).json()
    assert {e["event_id"]: e["acknowledged"] for e in listed} == {
        opened["id"]: None, refund["id"]: first["acknowledged"]}
    # past the period, it is counted no more
    svc.clock.advance(8 * 86400)
    assert _attention(svc)["counts"]["acknowledged_events"] == 0


def test_only_an_attention_event_that_exists_can_be_acknowledged(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    svc, _ = stripe_svc
    _charged(svc)
    ignored = event("payment_intent_succeeded")
    assert _ok(svc, ignored)["outcome"] == "ignored"
    r = _acknowledge(svc, "evt_1QNeverSent0001", svc.gate)
    assert (r.status_code, r.json()["error"]) == (404, "not_found"), r.text
    r = _acknowledge(svc, ignored["id"], svc.gate)
    assert (r.status_code, r.json()["error"]) == (409, "not_attention"), r.text
    assert "needed no staff attention" in r.json()["detail"]
    # staff only, and a note is short
    opened = event("charge_dispute_created")
    _ok(svc, opened)
    shopper = svc.shopper(card="cus_QShopper2:pm_1QCardBob", email="bob@example.org")
    assert _acknowledge(svc, opened["id"], shopper).status_code == 403
    assert svc.client.post(f"/v1/ops/payment-events/{opened['id']}/acknowledge"
                           ).status_code == 401
    assert _acknowledge(svc, opened["id"], svc.gate, note="x" * 501).status_code == 422
    with svc.deps.sessions() as s:
        rows = {r.event_id: r.acknowledged_at for r in s.scalars(select(PaymentWebhookEvent))}
    assert rows == {ignored["id"]: None, opened["id"]: None}


def test_two_operators_acknowledging_at_once_keep_one(
        stripe_svc: tuple[Svc, RecordedStripe]) -> None:
    """Two desks press Acknowledge at the same moment: both are answered the one that was
    recorded (a conditional UPDATE, on SQLite as on PostgreSQL)."""
    import threading

    from walkout.service import webhooks

    svc, _ = stripe_svc
    _charged(svc)
    opened = event("charge_dispute_created")
    _ok(svc, opened)
    who = [_operator(svc, f"Desk {i}")[0] for i in range(4)]
    gate = threading.Barrier(len(who))
    out: list[Any] = [None] * len(who)

    def run(i: int) -> None:
        gate.wait()
        try:
            out[i] = webhooks.acknowledge(svc.deps, opened["id"], who[i])["acknowledged"]
        except Exception as e:  # the test names it
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(who))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len({json.dumps(a, sort_keys=True, default=repr) for a in out}) == 1, out
    assert out[0]["by"] in who
