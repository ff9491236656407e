"""Every endpoint is authorised, roles are enforced, and logs carry no personal or card data."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import Engine

from walkout.service.app import PUBLIC_ROUTES
from walkout.service.redact import redact
from walkout.service.testing import Svc, make_svc, served


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


@pytest.mark.parametrize(("text", "secret"), [
    ("GET /v1/ops/receipts?q=ann.secret%40example.org HTTP/1.1", "ann.secret"),
    ("GET /v1/ops/receipts?q=ann.secret%2540example.org HTTP/1.1", "ann.secret"),  # twice
    ("/x?email=ANN%40Example.ORG&n=1", "ANN"),
    ("/x?card=4111%201111%201111%201111", "4111"),
    ("/x?t=tok%5Fvisa_1", "visa_1"),
])
def test_redact_masks_percent_encoded_data(text: str, secret: str) -> None:
    """URLs reach the logs percent-encoded (uvicorn's access log writes the raw query)."""
    assert secret not in redact(text)
    assert "%0A" in redact(text + "%0Anext")  # the decoded run keeps no line break


def test_redact_leaves_harmless_escapes_as_they_were() -> None:
    for text in ("GET /v1/ops/receipts?q=milk%20chocolate HTTP/1.1", "50% off", "100%",
                 "/x?q=%ZZ"):
        assert redact(text) == text


@pytest.mark.parametrize(("address", "part"), [
    ("ann.secret@example.org", "ann.secret"),
    ("mary.o'brien@example.ie", "mary"),  # an address the sign-up accepts, masked whole
])
def test_access_log_carries_no_encoded_email(engine: Engine, caplog: pytest.LogCaptureFixture,
                                             address: str, part: str) -> None:
    """The dashboard searches receipts by e-mail address in the query string: the real
    uvicorn access log line of that request holds no part of the address."""
    svc = make_svc(engine)
    caplog.set_level(logging.INFO)
    with served(svc.client.app) as url:  # type: ignore[arg-type]
        r = httpx.get(f"{url}/v1/ops/receipts", params={"q": address}, headers=svc.gate)
        assert r.status_code == 200
    access = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any("/v1/ops/receipts?q=[email]" in line for line in access), access
    assert not any(part in line.lower() for line in access), access


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


def test_numbers_in_log_calls_keep_their_format(svc: Svc,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """A time with many decimals is not a card number, and a card number passed as an int
    is masked without breaking the message's %d (logging would drop the record)."""
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("walkout.service.test")
    log.warning("entry at t=%.1f s", 12.345678901234567)
    log.warning("card %d at %s", 4111111111111111, "gate-1")
    assert [r.getMessage() for r in caplog.records if r.name == "walkout.service.test"] == [
        "entry at t=12.3 s", "card [card] at gate-1"]


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


def test_kiosk_card_lookups_spend_the_terminal_budget_and_are_limited_per_card(
        svc: Svc) -> None:
    """A terminal has one budget (10 a minute) for e-mail and card look-ups together, and one
    card can be looked up 10 times a minute across all terminals, as an address can."""
    kiosk = svc.staff("kiosk")
    c = svc.client
    for i in range(5):
        assert c.post("/v1/kiosk/receipts", json={"email": f"x{i}@example.org"},
                      headers=kiosk).status_code == 200
        assert c.post("/v1/kiosk/card-receipts", json={"card_token": f"tok_c{i}"},
                      headers=kiosk).status_code == 200
    r = c.post("/v1/kiosk/card-receipts", json={"card_token": "tok_c9"}, headers=kiosk)
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    # one card, many terminals
    for _ in range(5):
        other = svc.staff("kiosk")
        for _ in range(2):
            assert c.post("/v1/kiosk/card-receipts", json={"card_token": "tok_same"},
                          headers=other).status_code == 200
    other = svc.staff("kiosk")
    assert c.post("/v1/kiosk/card-receipts", json={"card_token": "tok_same"},
                  headers=other).status_code == 429
    assert c.post("/v1/kiosk/card-receipts", json={"card_token": "tok_else"},
                  headers=other).status_code == 200
