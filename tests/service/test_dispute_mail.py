"""A decided dispute answers the shopper by e-mail, once, over real SMTP (aiosmtpd), on
SQLite and PostgreSQL: refunded (back to the card, or off what she still owed), the charge
kept, or refunded by staff of their own accord. The operator's own note is never in it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Engine

from walkout.service import disputes, receipting
from walkout.service.receipts import ReceiptDoc, ReceiptDocLine
from walkout.service.receipts.render import dispute_notice
from walkout.service.testing import Svc, restart_and_resume_mail

BAR = "018627032007"  # 9.19 EUR in the `small` store


def _text(msg: EmailMessage) -> str:
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def _dispute(svc: Svc, h: dict[str, str], rid: object, decision: str) -> dict[str, Any]:
    r = svc.client.post("/v1/disputes", json={"receipt_id": rid, "product_id": BAR,
                                              "quantity": 1, "reason": "I put it back"},
                        headers=h)
    assert r.status_code == 201, r.text
    r = svc.client.post(f"/v1/disputes/{r.json()['dispute_id']}/decision",
                        json={"decision": decision, "note": "checked cam 3, internal"},
                        headers=svc.gate)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_refunded_dispute_is_answered_by_email_once(
        mailed: tuple[Svc, Any], engine: Engine, smtp_inbox: tuple[Any, int]) -> None:
    svc, inbox = mailed
    h = svc.shopper(email="ann@example.org")
    out = svc.leave(svc.enter(h), {BAR: 2})
    assert len(inbox.messages) == 1
    _dispute(svc, h, out["receipt_id"], "refund")
    assert len(inbox.messages) == 2
    msg = inbox.messages[1]
    bar = svc.deps.store.products[BAR].name
    assert msg["To"] == "ann@example.org"
    assert msg["Subject"] == f"Your receipt from {svc.deps.store.name}: refunded"
    assert msg["Message-ID"] == f"<receipt.{out['receipt_id']}.rev1@corner.example>"
    body = _text(msg)
    assert f"You contested 1 x {bar} on receipt {out['receipt_id']}: staff found" in body
    assert "9.19 EUR has been refunded to your card." in body
    assert "Total: 18.38 EUR" in body  # the receipt as issued: a refund changes no line
    assert "cam 3" not in body and "Contest a line" not in body
    assert receipting.resume_mail(svc.deps) == 0
    assert restart_and_resume_mail(engine, smtp_inbox[1]) == 0
    assert len(inbox.messages) == 2


def test_a_rejected_dispute_says_the_charge_stands(mailed: tuple[Svc, Any]) -> None:
    svc, inbox = mailed
    h = svc.shopper(email="ann@example.org")
    out = svc.leave(svc.enter(h), {BAR: 1})
    _dispute(svc, h, out["receipt_id"], "reject")
    msg = inbox.messages[-1]
    assert msg["Subject"].endswith(": the charge stands")
    body = _text(msg)
    assert "the charge stands" in body and "refunded" not in body
    assert "internal" not in body


def test_a_staff_refund_and_its_second_part_are_each_told(mailed: tuple[Svc, Any]) -> None:
    svc, inbox = mailed
    h = svc.shopper(email="ann@example.org")
    rid = svc.leave(svc.enter(h), {BAR: 3})["receipt_id"]
    disputes.staff_refund(svc.deps, str(rid), BAR, 1, "op-1", "returned at the desk")
    disputes.staff_refund(svc.deps, str(rid), BAR, 1, "op-1", "the second one")
    first, second = inbox.messages[-2:]
    assert "The store refunded 1 x" in _text(first) and "9.19 EUR has been refunded" in _text(
        first)
    assert "The store refunded 1 x" in _text(second)
    assert first["Message-ID"] != second["Message-ID"]
    assert "desk" not in _text(first)


def test_a_dispute_that_lowers_a_balance_owed_says_so() -> None:
    """The card paid 50.00 of 55.14 and the rest is owed: a founded dispute of one bar takes
    5.14 off what she owes and refunds the other 4.05, and the answer says both."""
    doc = ReceiptDoc(receipt_id="r1", store_name="Corner", issued_at=datetime(2026, 1, 1,
                                                                               tzinfo=UTC),
                     currency="EUR", lines=(ReceiptDocLine(BAR, "Bar", 6, Decimal("9.19")),))
    notice = dispute_notice(doc, name="Bar", quantity=1, refunded=True,
                            refund=Decimal("4.05"), done=False, credit=Decimal("5.14"),
                            by_store=False)
    assert notice == ("You contested 1 x Bar on receipt r1: staff found for you.",
                      "5.14 EUR was taken off what you still owed for this visit.",
                      "4.05 EUR is being refunded to your card.")


def test_the_kiosk_counts_receipts_not_their_emails(mailed: tuple[Svc, Any]) -> None:
    """Receipts with several e-mails each (a dispute's answer beside the receipt's own) are
    one receipt each in the look-up's limit (before: its rows were receipt x e-mail, so the
    newest receipt's e-mails filled the limit and older receipts went missing)."""
    svc, _ = mailed
    h = svc.shopper(email="ann@example.org")
    rids = []
    for _ in range(3):
        rid = svc.leave(svc.enter(h), {BAR: 2})["receipt_id"]
        _dispute(svc, h, rid, "reject")
        svc.clock.advance(60)
        rids.append(rid)
    got = receipting.for_email(svc.deps, "ann@example.org", limit=2)
    assert [i.doc.receipt_id for i in got] == [rids[2], rids[1]]
