"""What a revision e-mail says of the money: a revision that raises a receipt above what was
captured asks the shopper for the difference (charged to her card at once, or owed), and the
e-mail says which; so does one that lowers a balance still owed, and the receipt's own e-mail
when the card did not pay all of it at the exit. Real service, real SMTP server
(aiosmtpd), the real ledger behind scripted faults, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine

from walkout.service import checkout, receipting, revisions
from walkout.service.app import create_app
from walkout.service.checkout import LineRequest
from walkout.service.clock import ManualClock
from walkout.service.db import session_factory
from walkout.service.payments.ledger import LedgerProvider
from walkout.service.settings import ServiceSettings
from walkout.service.testing import ADMIN_TOKEN, MAIL_SENDER, Svc

from .faults import ChargingLedger, FaultyLedger

BAR, WATER = "018627032007", "073360771026"  # 9.19 and 7.59 EUR in the `small` store


def _start(engine: Engine, port: int, ledger: type[FaultyLedger] = ChargingLedger,
           ) -> tuple[Svc, FaultyLedger]:
    """The service paying through the scripted ledger and mailing through ``port``."""
    clock = ManualClock()
    sessions = session_factory(engine)
    provider = ledger(LedgerProvider(sessions, clock))
    settings = ServiceSettings(db_url=str(engine.url), entry_secret=SecretStr("k" * 32),
                               bootstrap_admin_token=SecretStr(ADMIN_TOKEN),
                               smtp_host="127.0.0.1", smtp_port=port, mail_sender=MAIL_SENDER)
    app = create_app(settings, engine=engine, sessions=sessions, clock=clock, provider=provider)
    client = TestClient(app)
    r = client.post("/v1/admin/staff", json={"role": "operator", "name": "gate"},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 201, r.text
    return Svc(client, clock, app.state.deps, {"Authorization": f"Bearer {r.json()['token']}"}), \
        provider


@pytest.fixture
def shop(engine: Engine, smtp_inbox: tuple[Any, int]) -> Iterator[tuple[Svc, FaultyLedger, Any]]:
    inbox, port = smtp_inbox
    svc, pay = _start(engine, port)
    with svc.client:
        yield svc, pay, inbox


def _verdict(svc: Svc, vid: str, product: str, quantity: int, tag: str = "review") -> None:
    revisions.add_review_lines(svc.deps, vid, [LineRequest(
        f"ev-review:{product}:{quantity:+d}:{tag}", product, quantity, f"ev-{tag}")])
    revisions.revise(svc.deps, vid, needs_review=False)


def _bodies(msg: EmailMessage) -> tuple[str, str]:
    text, html = (msg.get_body(preferencelist=(k,)) for k in ("plain", "html"))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def test_a_rise_charged_to_the_card_says_so(shop: tuple[Svc, FaultyLedger, Any]) -> None:
    svc, pay, inbox = shop
    vid = svc.enter(svc.shopper())
    svc.leave(vid, {BAR: 1})  # 9.19 captured
    _verdict(svc, vid, WATER, +1)  # a bottle missed: 7.59 more, charged to the saved card
    assert pay.keys("charge") == [f"visit:{vid}:balance"]
    text, html = _bodies(inbox.messages[-1])
    assert "The difference, 7.59 EUR, has been charged to your card." in text
    assert "The difference, 7.59 EUR, has been charged to your card." in html
    assert "refunded" not in text and "Total: 16.78 EUR" in text

    # a second rise: the new difference only, charged under the next attempt's key
    _verdict(svc, vid, BAR, +1, "second")
    assert pay.keys("charge") == [f"visit:{vid}:balance", f"visit:{vid}:balance:1"]
    text, _ = _bodies(inbox.messages[-1])
    assert "The difference, 9.19 EUR, has been charged to your card." in text
    assert "7.59" not in text.split("The revised receipt follows")[0]
    assert len(inbox.messages) == 3


def test_a_rise_the_card_refused_is_owed_and_said_so(
        shop: tuple[Svc, FaultyLedger, Any]) -> None:
    svc, pay, inbox = shop
    vid = svc.enter(svc.shopper())
    svc.leave(vid, {BAR: 1})
    pay.fail("charge", "declined")
    _verdict(svc, vid, WATER, +1)
    text, html = _bodies(inbox.messages[-1])
    owed = "7.59 EUR is still owed for this visit"
    assert owed in text and owed in html and "has been charged" not in text

    # a second rise while that is owed: the whole of it is owed now (nothing charged)
    _verdict(svc, vid, BAR, +1, "second")
    text, _ = _bodies(inbox.messages[-1])
    assert "16.78 EUR is still owed for this visit" in text

    # a verdict that lowers it lowers what is owed, and says so: nothing was refunded
    _verdict(svc, vid, BAR, -1, "third")
    text, _ = _bodies(inbox.messages[-1])
    assert "7.59 EUR is still owed for this visit" in text and "refunded" not in text
    _verdict(svc, vid, WATER, -1, "fourth")
    text, _ = _bodies(inbox.messages[-1])
    assert "Nothing is owed for this visit any more." in text
    assert checkout.owed_balances(svc.deps) == []
    assert receipting.resume_mail(svc.deps) == 0 and len(inbox.messages) == 5


def test_after_a_write_off_a_rise_asks_for_the_new_difference_only(
        engine: Engine, smtp_inbox: tuple[Any, int]) -> None:
    inbox, port = smtp_inbox
    svc, _ = _start(engine, port, FaultyLedger)  # a provider that cannot charge a card
    with svc.client:
        vid = svc.enter(svc.shopper())
        svc.leave(vid, {BAR: 6})  # 55.14: 50.00 captured, 5.14 owed
        checkout.write_off_balance(svc.deps, vid, "op-1")
        _verdict(svc, vid, WATER, +1)  # 62.73: 7.59 more; the 5.14 stays written off
        text, _ = _bodies(inbox.messages[-1])
        notice = text.split("The revised receipt follows")[0]
        assert "7.59 EUR is still owed for this visit" in notice and " 5.14" not in notice


def test_a_receipt_above_what_the_card_paid_says_what_is_still_owed(
        shop: tuple[Svc, FaultyLedger, Any]) -> None:
    """A cart above the hold whose rest the card refused: the receipt's total is not what was
    charged, and the e-mail says what is owed (the gate refuses her until it is paid)."""
    svc, pay, inbox = shop
    vid = svc.enter(svc.shopper())
    pay.fail("charge", "declined")
    out = svc.leave(vid, {BAR: 6})  # 55.14: 50.00 captured, 5.14 refused
    assert out["charged"] == {"amount": "50.00", "currency": "EUR"}
    [msg] = inbox.messages
    text, html = _bodies(msg)
    owed = "5.14 EUR of this total is still owed for this visit"
    assert owed in text and owed in html and "Total: 55.14 EUR" in text

    # paid in full at the exit (the rest charged to the card at once): nothing more is said
    vid = svc.enter(svc.shopper(card="tok_visa_2", email="bo@example.org"))
    svc.leave(vid, {BAR: 6})
    text, _ = _bodies(inbox.messages[-1])
    assert "owed" not in text and "Total: 55.14 EUR" in text
