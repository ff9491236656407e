"""End to end through the API: account → QR → entry → cart lines → exit → capture equals the
receipt total; duplicated lines and exits change nothing."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from walkout.service.models import Charge
from walkout.service.payments.ledger import LedgerProvider
from walkout.service.testing import Svc

BAR, WATER = "018627032007", "073360771026"  # 9.19 and 7.59 EUR in the `small` store


def _enter(svc: Svc) -> str:
    h = svc.shopper()
    r = svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h)}, headers=svc.gate)
    assert r.status_code == 201, r.text
    return str(r.json()["visit_id"])


def test_capture_equals_receipt_total(svc: Svc) -> None:
    vid = _enter(svc)
    lines = [
        {"line_key": "e1:bar", "product_id": BAR, "quantity": 2, "event_id": "e1"},
        {"line_key": "e2:water", "product_id": WATER, "quantity": 1, "event_id": "e2"},
        {"line_key": "e3:bar", "product_id": BAR, "quantity": -1, "event_id": "e3"},
    ]
    r = svc.client.post(f"/v1/visits/{vid}/cart-lines", json={"lines": lines}, headers=svc.gate)
    assert r.json() == {"added": 3}
    # the same lines delivered again (retry, duplicated message): nothing new
    r = svc.client.post(f"/v1/visits/{vid}/cart-lines", json={"lines": lines}, headers=svc.gate)
    assert r.json() == {"added": 0}
    out = svc.client.post(f"/v1/visits/{vid}/exit", headers=svc.gate).json()
    assert out["state"] == "charged"
    assert out["total"] == {"amount": "16.78", "currency": "EUR"}
    assert out["charged"] == out["total"]
    rec = svc.client.get(f"/v1/receipts/{out['receipt_id']}", headers=svc.gate).json()
    assert rec["total"] == "16.78"
    assert [(ln["product_id"], ln["quantity"]) for ln in rec["lines"]] == [(BAR, 1), (WATER, 1)]
    # a second exit (retry) answers the same and charges nothing more
    assert svc.client.post(f"/v1/visits/{vid}/exit", headers=svc.gate).json() == out
    ledger = svc.deps.provider
    assert isinstance(ledger, LedgerProvider)
    assert ledger.balance("store:sales:EUR") == Decimal("16.78")
    with svc.deps.sessions() as s:
        kinds = sorted(c.kind for c in s.scalars(select(Charge).where(Charge.visit_id == vid)))
    assert kinds == ["capture", "preauth"]
    # the cart is closed now
    r = svc.client.post(f"/v1/visits/{vid}/cart-lines", json={"lines": lines}, headers=svc.gate)
    assert r.status_code == 409 and r.json()["error"] == "visit_not_open"


def test_empty_cart_releases_the_hold(svc: Svc) -> None:
    vid = _enter(svc)
    out = svc.client.post(f"/v1/visits/{vid}/exit", headers=svc.gate).json()
    assert out["state"] == "released" and out["charged"]["amount"] == "0.00"
    ledger = svc.deps.provider
    assert isinstance(ledger, LedgerProvider)
    assert ledger.balance("store:sales:EUR") == 0


def test_malformed_requests_get_clear_4xx(svc: Svc) -> None:
    vid = _enter(svc)
    c, g = svc.client, svc.gate
    r = c.post(f"/v1/visits/{vid}/cart-lines", json={"lines": [{"product_id": BAR}]}, headers=g)
    assert r.status_code == 422 and "line_key: Field required" in r.json()["detail"]
    r = c.post(f"/v1/visits/{vid}/cart-lines", json={"lines": [
        {"line_key": "x", "product_id": "nope", "quantity": 1, "event_id": "e"}]}, headers=g)
    assert r.status_code == 422 and "unknown product 'nope'" in r.json()["detail"]
    r = c.post("/v1/gates/entry/scan", json={"code": "hello"}, headers=g)
    assert r.status_code == 400 and r.json()["error"] == "code_malformed"
    r = c.post("/v1/gates/entry/scan", json={"code": "x", "colour": "red"}, headers=g)
    assert r.status_code == 422 and "colour: Extra inputs are not permitted" in r.json()["detail"]
    r = c.post("/v1/gates/back-door/scan", json={"code": "x"}, headers=g)
    assert r.status_code == 404 and "back-door" in r.json()["detail"]
    r = c.post("/v1/visits/nope/exit", headers=g)
    assert r.status_code == 404 and r.json()["detail"] == "visit not found"
    r = c.post("/v1/accounts", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]


def test_a_cart_above_the_hold_is_charged_in_full(svc: Svc) -> None:
    """The exit captures the 50.00 hold and charges the rest to the saved method (the built-in
    ledger can): nothing is left owed, and the shopper comes in again."""
    h = svc.shopper()
    r = svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h)}, headers=svc.gate)
    vid = str(r.json()["visit_id"])
    out = svc.leave(vid, {BAR: 40})
    assert out["total"] == {"amount": "367.60", "currency": "EUR"}
    assert out["charged"] == out["total"] and out["state"] == "charged"
    ledger = svc.deps.provider
    assert isinstance(ledger, LedgerProvider)
    assert ledger.balance("store:sales:EUR") == Decimal("367.60")
    with svc.deps.sessions() as s:
        rows = sorted((c.idempotency_key.split(":")[-1], str(c.amount)) for c in s.scalars(
            select(Charge).where(Charge.visit_id == vid, Charge.kind == "capture")))
    assert [(k, Decimal(a)) for k, a in rows] == [("balance", Decimal("317.60")),
                                                  ("capture", Decimal("50.00"))]
    r = svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h)}, headers=svc.gate)
    assert r.status_code == 201, r.text
