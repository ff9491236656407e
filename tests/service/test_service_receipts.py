"""Receipts through the service: e-mailed once over real SMTP (aiosmtpd) at exit, shown to
their shopper as JSON, HTML and PDF, found at a kiosk by e-mail address only."""

from __future__ import annotations

import io
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from walkout.service import checkout, receipting
from walkout.service.models import Receipt, ReceiptMail
from walkout.service.receipts.render import UNDER_REVIEW
from walkout.service.testing import MAIL_SENDER, Svc, make_svc, restart_and_resume_mail

BAR, WATER = "018627032007", "073360771026"  # 9.19 and 7.59 EUR in the `small` store
SENDER = MAIL_SENDER


def test_exit_emails_the_receipt_exactly_once(mailed: tuple[Svc, Any], engine: Engine,
                                              smtp_inbox: tuple[Any, int]) -> None:
    svc, inbox = mailed
    h = svc.shopper(email="ann@example.org")
    vid = svc.enter(h)
    out = svc.leave(vid, {BAR: 2, WATER: 1})
    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert msg["To"] == "ann@example.org" and msg["From"] == SENDER
    assert msg["Subject"].endswith("25.97 EUR")
    [pdf] = list(msg.iter_attachments())
    assert "25.97 EUR" in PdfReader(io.BytesIO(pdf.get_content())).pages[0].extract_text()
    # a retried exit, a duplicated exit message, a restart's resume: nothing more is sent
    assert svc.client.post(f"/v1/visits/{vid}/exit", headers=svc.gate).json() == out
    assert receipting.resume_mail(svc.deps) == 0
    # a restart: its start-up resends what is unsent (nothing here), and so would a resume
    assert restart_and_resume_mail(engine, smtp_inbox[1]) == 0
    assert len(inbox.messages) == 1
    with svc.deps.sessions() as s:
        m = s.scalars(select(ReceiptMail)).one()
        rec = s.get(Receipt, out["receipt_id"])
        assert rec is not None and rec.emailed_to == "ann@example.org"
    assert m.state == "sent" and m.message_id == msg["Message-ID"] and m.attempts == 1


def test_message_id_is_unique_in_the_database(mailed: tuple[Svc, Any]) -> None:
    svc, _ = mailed
    r1 = svc.leave(svc.enter(svc.shopper()), {BAR: 1})
    r2 = svc.leave(svc.enter(svc.shopper(card="tok_2", email="bo@example.org")), {BAR: 1})
    with svc.deps.sessions() as s:
        mid = s.scalars(select(ReceiptMail.message_id)
                        .where(ReceiptMail.receipt_id == r1["receipt_id"])).one()
    with pytest.raises(IntegrityError), svc.deps.sessions.begin() as s:
        m2 = s.scalars(select(ReceiptMail)
                       .where(ReceiptMail.receipt_id == r2["receipt_id"])).one()
        m2.message_id = mid


def test_card_tap_receipt_goes_to_the_address_the_card_gave_before(
        mailed: tuple[Svc, Any]) -> None:
    svc, inbox = mailed
    c, g = svc.client, svc.gate
    r = c.post("/v1/gates/entry/card", json={"card_token": "tok_card_9",
                                             "email": "cara@example.org"}, headers=g)
    svc.leave(r.json()["visit_id"], {WATER: 1})
    r = c.post("/v1/gates/entry/card", json={"card_token": "tok_card_9"}, headers=g)
    svc.leave(r.json()["visit_id"], {BAR: 1})
    assert [m["To"] for m in inbox.messages] == ["cara@example.org"] * 2
    assert len({m["Message-ID"] for m in inbox.messages}) == 2


def test_smtp_outage_does_not_fail_the_exit_and_is_resent_once(
        mailed: tuple[Svc, Any]) -> None:
    svc, inbox = mailed
    inbox.refuse = True
    out = svc.leave(svc.enter(svc.shopper()), {BAR: 1})
    assert out["state"] == "charged" and inbox.messages == []
    with svc.deps.sessions() as s:
        m = s.scalars(select(ReceiptMail)).one()
    assert m.state == "failed" and m.error is not None and "451" in m.error
    assert "ann@example.org" not in m.error  # no personal data in what is recorded
    inbox.refuse = False
    assert receipting.resume_mail(svc.deps) == 1
    assert receipting.resume_mail(svc.deps) == 0
    assert len(inbox.messages) == 1


def test_shopper_sees_own_receipts_as_json_html_and_pdf(svc: Svc) -> None:
    c = svc.client
    ann = svc.shopper()
    r1 = svc.leave(svc.enter(ann), {BAR: 1})
    svc.clock.advance(60)
    r2 = svc.leave(svc.enter(ann), {WATER: 2})
    bob = svc.shopper(card="tok_bob", email="bob@example.org")
    svc.leave(svc.enter(bob), {BAR: 3})
    mine = c.get("/v1/receipts", headers=ann).json()
    assert [r["receipt_id"] for r in mine] == [r2["receipt_id"], r1["receipt_id"]]
    assert [r["total"] for r in mine] == ["15.18", "9.19"]
    rid = r1["receipt_id"]
    html = c.get(f"/v1/receipts/{rid}.html", headers=ann)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "9.19 EUR" in html.text and UNDER_REVIEW not in html.text
    pdf = c.get(f"/v1/receipts/{rid}.pdf", headers=ann)
    assert pdf.headers["content-type"] == "application/pdf"
    assert "9.19 EUR" in PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    for suffix in ("", ".html", ".pdf"):
        assert c.get(f"/v1/receipts/{rid}{suffix}", headers=bob).status_code == 404
    assert c.get("/v1/receipts", headers=svc.gate).status_code == 403


def test_receipt_with_open_review_cases_is_marked(svc: Svc) -> None:
    h = svc.shopper()
    vid = svc.enter(h)
    svc.client.post(f"/v1/visits/{vid}/cart-lines", json={"lines": [
        {"line_key": "k", "product_id": BAR, "quantity": 1, "event_id": "e"}]},
        headers=svc.gate)
    out = checkout.exit_visit(svc.deps, vid, needs_review=True)
    rec = svc.client.get(f"/v1/receipts/{out.receipt_id}", headers=h).json()
    assert rec["needs_review"] is True and rec["under_review"] is True
    html = svc.client.get(f"/v1/receipts/{out.receipt_id}.html", headers=h).text
    assert UNDER_REVIEW in html
    # an undecided dispute marks a receipt too
    other = svc.leave(svc.enter(h), {WATER: 1})
    svc.client.post("/v1/disputes", json={"receipt_id": other["receipt_id"],
                                          "product_id": WATER, "reason": "not mine"}, headers=h)
    rec = svc.client.get(f"/v1/receipts/{other['receipt_id']}", headers=h).json()
    assert rec["needs_review"] is False and rec["under_review"] is True


def test_kiosk_finds_only_that_address_receipts(svc: Svc) -> None:
    c = svc.client
    kiosk = svc.staff("kiosk")
    ann = svc.shopper(email="Ann@Example.org")
    r1 = svc.leave(svc.enter(ann), {BAR: 1})
    bob = svc.shopper(card="tok_bob", email="bob@example.org")
    svc.leave(svc.enter(bob), {WATER: 1})
    r = c.post("/v1/kiosk/receipts", json={"email": " ann@EXAMPLE.org "}, headers=kiosk)
    assert r.status_code == 200, r.text
    assert [x["receipt_id"] for x in r.json()] == [r1["receipt_id"]]
    for probe in ("example.org@x.io", "nn@example.org", "ann@example.or"):
        assert c.post("/v1/kiosk/receipts", json={"email": probe}, headers=kiosk).json() == []
    r = c.post("/v1/kiosk/receipts", json={"email": "%"}, headers=kiosk)
    assert r.status_code == 422
    # operators may use it; shoppers may not; a kiosk can do nothing else
    assert c.post("/v1/kiosk/receipts", json={"email": "a@b.org"},
                  headers=svc.gate).status_code == 200
    assert c.post("/v1/kiosk/receipts", json={"email": "a@b.org"},
                  headers=ann).status_code == 403
    assert c.get(f"/v1/receipts/{r1['receipt_id']}", headers=kiosk).status_code == 403
    assert c.get("/v1/disputes", headers=kiosk).status_code == 403


def test_kiosk_lookups_are_rate_limited(engine: Engine) -> None:
    svc = make_svc(engine, kiosk_lookups_per_minute=3)
    kiosk = svc.staff("kiosk")
    codes = [svc.client.post("/v1/kiosk/receipts", json={"email": f"x{i}@example.org"},
                             headers=kiosk).status_code for i in range(4)]
    assert codes == [200, 200, 200, 429]
    svc.clock.advance(61)
    other = svc.staff("kiosk")  # the same address from many terminals is limited as well
    codes = [svc.client.post("/v1/kiosk/receipts", json={"email": "same@example.org"},
                             headers=h).status_code for h in (kiosk, other, kiosk, other)]
    assert codes == [200, 200, 200, 429]
