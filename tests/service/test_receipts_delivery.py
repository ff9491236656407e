"""Receipt e-mails through a real SMTP server (aiosmtpd) that misbehaves after, or while,
taking the message: each receipt reaches the shopper exactly once, across outages and restarts.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import Engine, delete, select

from walkout.service import housekeeping, receipting, revisions
from walkout.service.checkout import LineRequest
from walkout.service.models import ReceiptMail
from walkout.service.testing import Svc, make_mail_svc, restart_and_resume_mail

BAR, WATER = "018627032007", "073360771026"  # 9.19 and 7.59 EUR in the `small` store


class Server:
    """aiosmtpd handler: keeps what it accepts; ``quit_reply``/``quit_delay_s`` change how it
    ends a session after the message was accepted, ``data_reply`` refuses the message."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.quit_reply: str | None = None
        self.quit_delay_s = 0.0
        self.data_reply: str | None = None

    async def handle_DATA(self, server: SMTP, session: SmtpSession,
                          envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        assert isinstance(envelope.content, bytes)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: SmtpSession,
                          envelope: Envelope) -> str:
        await asyncio.sleep(self.quit_delay_s)
        return self.quit_reply or "221 Bye"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Server, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = Server()
    controller = Controller(server, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield server, port
    finally:
        controller.stop()


def _mails(svc: Svc) -> list[tuple[int, str, int]]:
    """(revision, state, attempts) of every receipt e-mail recorded."""
    with svc.deps.sessions() as s:
        return [(m.revision, m.state, m.attempts) for m in s.scalars(
            select(ReceiptMail).order_by(ReceiptMail.revision))]


def test_a_receipt_accepted_before_an_odd_goodbye_is_not_sent_again(
        engine: Engine, smtp_server: tuple[Server, int]) -> None:
    """The server took the message (250 after DATA) and then answered QUIT with something
    other than 221: the shopper has the receipt, so it is recorded sent and never resent."""
    server, port = smtp_server
    server.quit_reply = "421 4.3.2 shutting down"
    svc = make_mail_svc(engine, port)
    vid = svc.enter(svc.shopper())
    svc.leave(vid, {BAR: 1})
    assert len(server.messages) == 1
    assert _mails(svc) == [(0, "sent", 1)]
    assert receipting.resume_mail(svc.deps) == 0
    assert restart_and_resume_mail(engine, port) == 0
    assert len(server.messages) == 1



def test_a_receipt_revised_during_an_outage_is_first_sent_as_it_was_issued(
        mailed: tuple[Svc, Any]) -> None:
    """The SMTP server is down at the exit and still down when a review verdict revises the
    receipt. Once it is back, the shopper gets the receipt as issued (what her card was
    charged) and then the revision (what changed, what was refunded), not the revised receipt
    twice with a revision that removes a bar the first one never showed."""
    svc, inbox = mailed
    inbox.refuse = True  # 451 to every message
    vid = svc.enter(svc.shopper())
    out = svc.leave(vid, {BAR: 2, WATER: 1})
    assert out["charged"] == {"amount": "25.97", "currency": "EUR"}
    revisions.add_review_lines(svc.deps, vid, [LineRequest(
        f"ev-review:{BAR}:-1:review", BAR, -1, "ev-review")])
    revisions.revise(svc.deps, vid, needs_review=False)  # 9.19 refunded
    assert inbox.messages == [] and [(r, st) for r, st, _ in _mails(svc)] == [
        (0, "failed"), (1, "failed")]
    inbox.refuse = False
    assert receipting.resume_mail(svc.deps) == 2
    first, revised = inbox.messages
    assert first["Subject"].endswith(": 25.97 EUR")
    text = first.get_body(preferencelist=("plain",)).get_content()
    bar = svc.deps.store.products[BAR].name
    assert f"2 x {bar} @ 9.19 = 18.38" in text and "Total: 25.97 EUR" in text
    assert revised["Subject"].endswith("was revised: 16.78 EUR")
    text = revised.get_body(preferencelist=("plain",)).get_content()
    assert f"Removed: 1 x {bar} (9.19 EUR)" in text and "Total: 16.78 EUR" in text
    assert receipting.resume_mail(svc.deps) == 0 and len(inbox.messages) == 2


def test_a_revision_never_goes_out_before_the_receipt_it_revises(
        mailed: tuple[Svc, Any]) -> None:
    """A crash between the exit and the claim of its e-mail leaves the receipt unclaimed; a
    review verdict then revises it. The shopper gets the receipt first, then the revision
    (before: the revision went out alone, and the receipt only at the next start)."""
    svc, inbox = mailed
    vid = svc.enter(svc.shopper())
    out = svc.leave(vid, {BAR: 2})
    with svc.deps.sessions.begin() as s:  # as if the exit's claim had never been made
        s.execute(delete(ReceiptMail).where(ReceiptMail.receipt_id == out["receipt_id"]))
    inbox.messages.clear()
    revisions.add_review_lines(svc.deps, vid, [LineRequest(
        f"ev-review:{BAR}:-1:review", BAR, -1, "ev-review")])
    revisions.revise(svc.deps, vid, needs_review=False)
    assert [m["Subject"].rsplit(" ", 2)[-2] for m in inbox.messages] == ["18.38", "9.19"]
    assert "was revised" in inbox.messages[1]["Subject"]
    assert receipting.resume_mail(svc.deps) == 0 and len(inbox.messages) == 2


def test_a_receipt_refused_by_the_mail_server_is_sent_by_the_timer_once_it_is_back(
        mailed: tuple[Svc, Any]) -> None:
    """The SMTP server refuses (451) at the exit. The housekeeping timer tries again once the
    wait is over, without a restart (before: only the next start retried it), and never before
    its wait; after the last try the row is left to staff."""
    svc, inbox = mailed
    inbox.refuse = True
    svc.leave(svc.enter(svc.shopper()), {BAR: 1})
    assert [(r, st) for r, st, _ in _mails(svc)] == [(0, "failed")]
    housekeeping.turn(svc.deps)  # too soon: not tried
    assert [n for _, _, n in _mails(svc)] == [1]
    svc.clock.advance(61)
    housekeeping.turn(svc.deps)  # still refused: a second try, the wait grows
    assert [(st, n) for _, st, n in _mails(svc)] == [("failed", 2)]
    inbox.refuse = False
    svc.clock.advance(120)
    housekeeping.turn(svc.deps)
    assert inbox.messages == []  # 5 minutes after the second try, not 2
    svc.clock.advance(181)
    housekeeping.turn(svc.deps)
    assert len(inbox.messages) == 1 and [(st, n) for _, st, n in _mails(svc)] == [("sent", 3)]
    housekeeping.turn(svc.deps)
    assert len(inbox.messages) == 1


def test_a_mailbox_that_does_not_exist_is_not_tried_again(mailed: tuple[Svc, Any]) -> None:
    """550 to the recipient: the address is wrong for good, so neither the timer nor a start
    tries it again (before: 5 more tries at every start, each refused the same)."""
    svc, inbox = mailed
    inbox.unknown.add("nobody@example.org")
    svc.leave(svc.enter(svc.shopper(email="nobody@example.org")), {BAR: 1})
    [(rev, state, tries)] = _mails(svc)
    assert (rev, state) == (0, "failed") and tries >= receipting.MAX_ATTEMPTS
    with svc.deps.sessions() as s:
        error = s.scalars(select(ReceiptMail.error)).one()
    assert error is not None and "550" in error and "nobody@" not in error
    svc.clock.advance(3600)
    housekeeping.turn(svc.deps)
    assert receipting.resume_mail(svc.deps) == 0 and inbox.messages == []
