"""Request bodies are read as sent: a count sent as a string or a boolean is named as the
client's mistake (422), not guessed, and no text with a NUL character reaches the database
(PostgreSQL's text cannot hold one: a dispute's reason or a note with one was a 500).
Real service, SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from walkout.service.models import Dispute, StoreMode, Visit
from walkout.service.testing import Svc

BAR = "018627032007"


@pytest.mark.parametrize("party", ["3", True, 2.0, 2.5])
def test_a_party_size_that_is_not_a_json_integer_is_refused(svc: Svc, party: Any) -> None:
    h = svc.shopper()
    code = svc.client.post("/v1/me/entry-code", headers=h).json()["code"]
    r = svc.client.post("/v1/gates/entry/scan", json={"code": code, "party_size": party},
                        headers=svc.gate)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("body.party_size:")
    r = svc.client.post("/v1/gates/entry/card", json={"card_token": "tok_x", "party_size": party},
                        headers=svc.gate)
    assert r.status_code == 422 and r.json()["detail"].startswith("body.party_size:")
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Visit)) == 0
    r = svc.client.post("/v1/gates/entry/scan", json={"code": code, "party_size": 2},
                        headers=svc.gate)
    assert r.status_code == 201 and r.json()["party_size"] == 2  # the code is still good


def test_a_nul_in_a_dispute_reason_or_a_store_note_is_refused_naming_the_field(
        svc: Svc) -> None:
    h = svc.shopper()
    rid = svc.leave(svc.enter(h), {BAR: 1})["receipt_id"]
    body = {"receipt_id": rid, "product_id": BAR, "quantity": 1, "reason": "not\x00mine"}
    r = svc.client.post("/v1/disputes", json=body, headers=h)
    assert r.status_code == 422 and r.json()["detail"].startswith("body.reason:"), r.text
    r = svc.client.post("/v1/disputes", json={**body, "quantity": "1", "reason": "not mine"},
                        headers=h)
    assert r.status_code == 422 and r.json()["detail"].startswith("body.quantity:"), r.text
    r = svc.client.post("/v1/store-mode", json={"closed": "true"}, headers=svc.gate)
    assert r.status_code == 422 and r.json()["detail"].startswith("body.closed:"), r.text
    r = svc.client.post("/v1/store-mode", json={"closed": True, "note": "re\x00stock"},
                       headers=svc.gate)
    assert r.status_code == 422 and r.json()["detail"].startswith("body.note:"), r.text
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Dispute)) == 0
        assert s.scalar(select(func.count()).select_from(StoreMode)) == 0
    r = svc.client.post("/v1/disputes", json={**body, "reason": "not mine"}, headers=h)
    assert r.status_code == 201, r.text
