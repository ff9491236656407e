"""What a receipt e-mail needs: an address it can be sent to (refused at sign-up and at the
gate otherwise, not failed on at every exit), and links that work in a mail client — absolute,
under the store's public URL, to a page the service serves — or none."""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import Engine

from walkout.service.testing import MAIL_SENDER, Svc, make_svc

BAR, WATER = "018627032007", "073360771026"  # products of the `small` store
PUBLIC = "https://shop.example/corner"


@pytest.mark.parametrize("email", [
    "a,b@example.org",  # two recipients, or none
    "a;b@example.org",
    "ann(comment)@example.org",  # would be sent to ann@example.org
    'a"b@example.org',
    "jos\u00e9@example.org",  # needs SMTPUTF8, which the mailer does not ask for
    "ann@example",
])
def test_sign_up_refuses_an_address_receipts_cannot_be_sent_to(svc: Svc, email: str) -> None:
    r = svc.client.post("/v1/accounts", json={"email": email, "name": "Ann"})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_request" and "email" in r.json()["detail"]
    assert email not in r.text  # never echoed
    r = svc.client.post("/v1/gates/entry/card", json={"card_token": "tok_visa_9",
                                                      "email": email}, headers=svc.gate)
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("email", ["ann@example.org", "Ann.Lee+receipts@Example.ORG",
                                   '"ann<b>"@example.org'])
def test_sign_up_accepts_what_the_mailer_can_address(svc: Svc, email: str) -> None:
    assert svc.client.post("/v1/accounts", json={"email": email}).status_code == 201


def _mailed(engine: Engine, port: int, **settings: Any) -> Svc:
    return make_svc(engine, smtp_host="127.0.0.1", smtp_port=port, mail_sender=MAIL_SENDER,
                    **settings)


def _links(msg: EmailMessage) -> tuple[list[str], str]:
    html = msg.get_body(("html",))
    text = msg.get_body(("plain",))
    assert html is not None and text is not None
    return re.findall(r'href="([^"]*)"', html.get_content()), text.get_content()


def test_the_receipt_email_links_to_the_dispute_form_under_the_public_url(
        engine: Engine, smtp_inbox: tuple[Any, int]) -> None:
    inbox, port = smtp_inbox
    svc = _mailed(engine, port, public_url=PUBLIC + "/")
    with svc.client:
        rid = svc.leave(svc.enter(svc.shopper()), {BAR: 1, WATER: 2})["receipt_id"]
        [msg] = inbox.messages
        hrefs, text = _links(msg)
        form = f"{PUBLIC}/receipts/{rid}/disputes/new"
        assert sorted(hrefs) == sorted([f"{form}?product_id={BAR}", f"{form}?product_id={WATER}",
                                        form])
        assert f"Contest a line: {form}" in text
        # the service serves the link's path: the shopper app, which opens the form
        page = svc.client.get(f"/receipts/{rid}/disputes/new", params={"product_id": BAR})
        assert page.status_code == 200 and '<script src="/static/app.js">' in page.text


def test_without_a_public_url_the_email_carries_no_dead_link(
        engine: Engine, smtp_inbox: tuple[Any, int]) -> None:
    inbox, port = smtp_inbox
    svc = _mailed(engine, port)
    with svc.client:
        h = svc.shopper()
        rid = svc.leave(svc.enter(h), {BAR: 1})["receipt_id"]
        [msg] = inbox.messages
        hrefs, text = _links(msg)
        assert hrefs == [] and "Contest" not in text
        # the receipt page the service itself serves keeps its (same-site) links
        html = svc.client.get(f"/v1/receipts/{rid}.html", headers=h).text
        assert f'href="/receipts/{rid}/disputes/new?product_id={BAR}"' in html
