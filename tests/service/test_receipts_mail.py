"""Receipts e-mailed to a real SMTP server (aiosmtpd on 127.0.0.1, a free port per test)."""

from __future__ import annotations

import io
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pypdf import PdfReader

from walkout.service.receipts import (
    ReceiptDeliveryError,
    ReceiptDoc,
    ReceiptDocLine,
    build_message,
    send_receipt,
)

SENDER = "receipts@shop.example"


class Inbox:
    """aiosmtpd handler that keeps what it accepts and refuses chosen recipients and data."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []
        self.refuse_domain = "refused.example"
        self.refuse_data = False

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address.endswith("@" + self.refuse_domain):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse_data:
            return "554 5.7.1 message rejected as spam"
        assert isinstance(envelope.content, bytes)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((envelope, msg))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _doc(email: str | None = "Ana@Example.org", rid: str = "r-s00001") -> ReceiptDoc:
    return ReceiptDoc(rid, "Corner Shop", datetime(2024, 5, 1, 12, 30, tzinfo=UTC), "EUR",
                      (ReceiptDocLine("p1", "Oat milk", 2, Decimal("1.25")),
                       ReceiptDocLine("p2", "Crème fraîche", 3, Decimal("0.83"))), email)


def test_receipt_arrives_with_html_text_and_a_pdf(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    mid = send_receipt(_doc(), "127.0.0.1", port, SENDER)
    assert len(inbox.messages) == 1
    envelope, msg = inbox.messages[0]
    assert envelope.mail_from == SENDER and envelope.rcpt_tos == ["Ana@Example.org"]
    assert msg["To"] == "Ana@Example.org" and msg["From"] == SENDER
    assert msg["Subject"] == "Your receipt from Corner Shop: 4.99 EUR"
    assert msg["Message-ID"] == mid == "<receipt.r-s00001@shop.example>"

    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert "Total: 4.99 EUR" in text.get_content()
    assert "4.99 EUR" in html.get_content() and "Crème fraîche" in html.get_content()

    [pdf_part] = list(msg.iter_attachments())
    assert pdf_part.get_content_type() == "application/pdf"
    assert pdf_part.get_filename() == "receipt-r-s00001.pdf"
    pdf = pdf_part.get_content()
    assert isinstance(pdf, bytes) and pdf.startswith(b"%PDF-")
    pdf_text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert "4.99 EUR" in pdf_text and "Crème fraîche" in pdf_text


def test_the_email_itemises_the_tax_in_every_part(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    rate = Decimal("0.055")
    doc = ReceiptDoc("r-tax", "Corner Shop", datetime(2024, 5, 1, 12, 30, tzinfo=UTC), "EUR",
                     (ReceiptDocLine("p1", "Oat milk", 2, Decimal("1.25"), "reduced", rate),
                      ReceiptDocLine("p2", "Soap", 1, Decimal("0.99"), "standard",
                                     Decimal("0.20"))), "ana@example.org")
    send_receipt(doc, "127.0.0.1", port, SENDER)
    [(_, msg)] = inbox.messages
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    # 2.50 × 0.055 / 1.055 = 0.1303 → 0.13; 0.99 / 6 = 0.165 → 0.16 (half-even)
    assert "reduced 5.5%: net 2.37, tax 0.13, gross 2.50" in text.get_content()
    assert "standard 20%: net 0.83, tax 0.16, gross 0.99" in text.get_content()
    body = html.get_content()
    table = body[body.index('<table class="tax">'):body.index("Prices include tax.")]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", r) for r in table.split("<tr")[2:]]
    assert rows == [["reduced", "5.5%", "2.37", "0.13", "2.50"],
                    ["standard", "20%", "0.83", "0.16", "0.99"]]
    [pdf_part] = list(msg.iter_attachments())
    pdf_text = PdfReader(io.BytesIO(pdf_part.get_content())).pages[0].extract_text()
    assert "reduced 5.5% 2.37 0.13 2.50" in pdf_text and "Prices include tax." in pdf_text


def test_resending_a_recorded_receipt_sends_nothing(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    sent: set[str] = set()
    sent.add(send_receipt(_doc(), "127.0.0.1", port, SENDER, already_sent=sent))
    assert send_receipt(_doc(), "127.0.0.1", port, SENDER, already_sent=sent) in sent
    assert len(inbox.messages) == 1
    # a crash before recording: the retry is the very same e-mail, so clients can fold it
    again = build_message(_doc(), SENDER)
    assert again["Message-ID"] == inbox.messages[0][1]["Message-ID"]
    assert again["Date"] == inbox.messages[0][1]["Date"]


def test_refused_recipient_is_named_masked(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    with pytest.raises(ReceiptDeliveryError,
                       match=rf"127\.0\.0\.1:{port} refused the recipient a\*\*\*@refused"
                             r"\.example: 550 5\.1\.1 mailbox unavailable") as e:
        send_receipt(_doc("ana@refused.example"), "127.0.0.1", port, SENDER)
    assert "ana@" not in str(e.value)
    assert inbox.messages == []


def test_refused_message_is_reported(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    inbox.refuse_data = True
    with pytest.raises(ReceiptDeliveryError, match=r"refused receipt r-s00001: 554 .*spam"):
        send_receipt(_doc(), "127.0.0.1", port, SENDER)


def test_unreachable_server_is_reported() -> None:
    port = _free_port()  # nothing listens there
    with pytest.raises(ReceiptDeliveryError, match=rf"127\.0\.0\.1:{port} is unreachable"):
        send_receipt(_doc(), "127.0.0.1", port, SENDER, timeout=2.0)


@pytest.mark.parametrize(("email", "match"), [
    (None, "has no e-mail address"),
    ("", "has no e-mail address"),
    ("not an address", "is not a valid e-mail address"),
])
def test_missing_or_invalid_address_is_refused_before_connecting(
        email: str | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        send_receipt(_doc(email), "127.0.0.1", _free_port(), SENDER)


def test_store_name_cannot_inject_headers(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    doc = ReceiptDoc("r-x", "Shop\r\nBcc: everyone@evil.example", _doc().issued_at, "EUR", (),
                     "ana@example.org")
    send_receipt(doc, "127.0.0.1", port, SENDER)
    envelope, msg = inbox.messages[0]
    assert envelope.rcpt_tos == ["ana@example.org"] and msg["Bcc"] is None
    assert msg["Subject"] == "Your receipt from Shop Bcc: everyone@evil.example: 0.00 EUR"
