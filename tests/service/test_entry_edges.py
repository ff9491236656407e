"""Hostile input at the door: what a gate, an app or a tampered request sends that the happy
path never does. Each case answers a 4xx naming what is wrong, the same on SQLite and on
PostgreSQL, and leaves nothing half-written behind."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from walkout.service import entry, privacy
from walkout.service.errors import ServiceError
from walkout.service.models import Account, EntryCode, PaymentMethod, Visit
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


# ---- an erased account never enters again ---------------------------------------------------


def _account_of(svc: Svc, visit_id: str) -> str:
    with svc.deps.sessions() as s:
        v = s.get(Visit, visit_id)
        assert v is not None
        return v.account_id


def _erase_when(engine: Engine, svc: Svc, account_id: str, table: str) -> None:
    """Erase ``account_id`` (as ``DELETE /v1/me`` does) the moment this thread has read from
    ``table``: a request under way when her erasure commits, without a sleep or a mock."""
    fired: list[bool] = []
    me = threading.get_ident()

    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if fired or threading.get_ident() != me or f"FROM {table}" not in statement:
            return
        fired.append(True)
        privacy.erase(svc.deps, account_id)  # another connection of the pool: commits now

    event.listen(engine, "after_cursor_execute", after)


def test_a_card_tapped_as_its_guest_is_erased_makes_a_new_guest_not_a_visit_of_the_erased(
        svc: Svc, engine: Engine) -> None:
    """The tap found the card's guest account, then her erasure committed before the visit
    was written: the visit went on the erased pseudonym (her movements linked to it again,
    'inside' an account that no longer exists for her). The card is now nobody's: a new
    guest, as any tap after the erasure makes."""
    first = svc.client.post("/v1/gates/entry/card", json={"card_token": "tok_card_eve"},
                            headers=svc.gate)
    assert first.status_code == 201, first.text
    svc.leave(first.json()["visit_id"], {})
    erased = _account_of(svc, first.json()["visit_id"])
    _erase_when(engine, svc, erased, "payment_methods")
    a = entry.admit_card(svc.deps, "tok_card_eve", "entry")
    assert _account_of(svc, a.visit_id) != erased
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Visit).where(
            Visit.account_id == erased, Visit.state.in_(entry.INSIDE))) == 0


def test_an_erased_accounts_pseudonym_is_no_card(svc: Svc) -> None:
    """Erasure renames her payment token ``erased:<method>``; tapped as a card token that
    pseudonym admitted the erased account (with the ledger, which takes any token)."""
    first = svc.client.post("/v1/gates/entry/card", json={"card_token": "tok_card_eve"},
                            headers=svc.gate)
    svc.leave(first.json()["visit_id"], {})
    erased = _account_of(svc, first.json()["visit_id"])
    privacy.erase(svc.deps, erased)
    with svc.deps.sessions() as s:
        pseudonym = s.scalar(select(PaymentMethod.provider_ref))
    assert pseudonym is not None and pseudonym.startswith("erased:")
    r = svc.client.post("/v1/gates/entry/card", json={"card_token": pseudonym},
                        headers=svc.gate)
    assert r.status_code == 422 and r.json()["error"] == "bad_payment_token", r.text
    assert r.json()["detail"].startswith("card_token:")
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Visit)) == 1


def test_an_entry_code_asked_for_as_the_account_is_erased_admits_nobody(svc: Svc) -> None:
    """The app's request for a code authenticated just before her erasure committed (the
    handler runs after it): the code was stored after erasure had deleted her codes, and a
    gate admitted the erased account on it."""
    h = svc.shopper()
    vid = svc.enter(h)
    svc.leave(vid, {})
    erased = _account_of(svc, vid)
    privacy.erase(svc.deps, erased)
    with pytest.raises(ServiceError) as e:
        entry.issue_code(svc.deps, erased)
    assert e.value.status == 403
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(EntryCode)) == 0
