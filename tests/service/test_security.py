"""Every endpoint is authorised, roles are enforced, and logs carry no personal or card data."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.routing import APIRoute

from walkout.service.app import PUBLIC_ROUTES
from walkout.service.redact import redact
from walkout.service.testing import Svc


def _routes(svc: Svc) -> list[tuple[str, str]]:
    app = svc.client.app
    out = []
    for r in app.routes:  # type: ignore[attr-defined]
        if isinstance(r, APIRoute):
            out += [(m, r.path) for m in r.methods]
    return out


def test_every_route_needs_a_token(svc: Svc) -> None:
    routes = _routes(svc)
    assert len(routes) > 10
    for method, path in routes:
        if (method, path) in PUBLIC_ROUTES:
            continue
        url = re.sub(r"\{[^}]+\}", "x", path)
        r = svc.client.request(method, url, json={})
        assert r.status_code == 401, f"{method} {path} answered {r.status_code} without a token"
        r = svc.client.request(method, url, json={}, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401, f"{method} {path} accepted an unknown token"


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/gates/entry/scan"), ("POST", "/v1/visits/x/exit"),
    ("POST", "/v1/visits/x/cart-lines"), ("GET", "/v1/disputes"), ("POST", "/v1/admin/staff"),
])
def test_shoppers_cannot_use_staff_routes(svc: Svc, method: str, path: str) -> None:
    r = svc.client.request(method, path, json={}, headers=svc.shopper())
    assert r.status_code == 403 and "role" in r.json()["detail"]


def test_operators_are_not_admins_nor_shoppers(svc: Svc) -> None:
    r = svc.client.post("/v1/admin/staff", json={"role": "admin"}, headers=svc.gate)
    assert r.status_code == 403
    assert svc.client.post("/v1/me/entry-code", headers=svc.gate).status_code == 403


def test_another_shoppers_receipt_is_invisible(svc: Svc) -> None:
    ann = svc.shopper()
    r = svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(ann)}, headers=svc.gate)
    vid = r.json()["visit_id"]
    rid = svc.client.post(f"/v1/visits/{vid}/exit", headers=svc.gate).json()["receipt_id"]
    assert svc.client.get(f"/v1/receipts/{rid}", headers=ann).status_code == 200
    bob = svc.shopper(card="tok_bob", email="bob@example.org")
    assert svc.client.get(f"/v1/receipts/{rid}", headers=bob).status_code == 404


def test_redact_masks_personal_and_card_data() -> None:
    text = ("ann@example.org paid with 4111 1111 1111 1111 / 4111111111111111, token "
            "wo_abcdefghijklmnopqrstuvwxyz, card tok_visa_1, Authorization: Bearer xyz")
    out = redact(text)
    for secret in ("ann@example.org", "4111", "wo_abc", "tok_visa_1", "xyz"):
        assert secret not in out


def test_logs_carry_no_personal_data(svc: Svc, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("walkout.service.test")
    log.info("card %s for %s", "4111111111111111", "ann@example.org")
    h = svc.shopper(card="tok_secret_card", email="cara@example.org")
    svc.client.post("/v1/gates/entry/card", json={"card_token": "5500 0000 0000 0004"},
                    headers=svc.gate)
    svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h)}, headers=svc.gate)
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert caplog.records
    for secret in ("4111111111111111", "ann@example.org", "cara@example.org",
                   "tok_secret_card", "5500 0000"):
        assert secret not in text


def test_disputes_are_rate_limited(svc: Svc) -> None:
    h = svc.shopper()
    r = svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h)}, headers=svc.gate)
    vid = r.json()["visit_id"]
    svc.client.post(f"/v1/visits/{vid}/cart-lines", json={"lines": [
        {"line_key": "a", "product_id": "018627032007", "quantity": 1, "event_id": "e"}]},
        headers=svc.gate)
    rid = svc.client.post(f"/v1/visits/{vid}/exit", headers=svc.gate).json()["receipt_id"]
    body = {"receipt_id": rid, "product_id": "018627032007", "reason": "I put it back"}
    codes = [svc.client.post("/v1/disputes", json=body, headers=h).status_code for _ in range(6)]
    assert codes == [201, 409, 409, 409, 409, 429]
