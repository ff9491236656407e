"""Hostile input at the door: what a gate, an app or a tampered request sends that the happy
path never does. Each case answers a 4xx naming what is wrong, the same on SQLite and on
PostgreSQL, and leaves nothing half-written behind."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from walkout.service.models import Account, PaymentMethod, Visit
from walkout.service.testing import ADMIN_TOKEN, Svc


@pytest.mark.parametrize("token", ["tok\x00card", "tok\ncard", "tok\tcard", "tok\x7fcard"])
def test_a_card_token_with_control_characters_is_refused_naming_the_field(
        svc: Svc, token: str) -> None:
    """A NUL in a tapped card's token was a 500 on PostgreSQL (its text cannot hold one)
    and a new guest on SQLite; no provider's token has a control character."""
    r = svc.client.post("/v1/gates/entry/card", json={"card_token": token}, headers=svc.gate)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_request"
    assert r.json()["detail"].startswith("body.card_token:")
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Visit)) == 0
        assert s.scalar(select(func.count()).select_from(PaymentMethod)) == 0


def test_control_characters_in_names_and_tokens_are_refused_naming_the_field(
        svc: Svc) -> None:
    """Sign-up's name, a payment method's token and label, a staff member's name."""
    r = svc.client.post("/v1/accounts", json={"name": "Ann\x00"})
    assert r.status_code == 422 and r.json()["detail"].startswith("body.name:"), r.text
    h = {"Authorization": "Bearer "
         + svc.client.post("/v1/accounts", json={"name": "Ann"}).json()["token"]}
    for body, field in (({"provider_ref": "tok_\x00visa"}, "provider_ref"),
                        ({"provider_ref": "tok_visa", "label": "my\x00card"}, "label")):
        r = svc.client.post("/v1/me/payment-methods", json=body, headers=h)
        assert r.status_code == 422 and r.json()["detail"].startswith(f"body.{field}:"), r.text
    r = svc.client.post("/v1/admin/staff", json={"role": "operator", "name": "Bo\x00"},
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 422 and r.json()["detail"].startswith("body.name:"), r.text
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(PaymentMethod)) == 0
        # the bootstrap admin, the gate's operator and Ann
        assert s.scalar(select(func.count()).select_from(Account)) == 3
