"""A mail server that refuses the store's own settings for good — its sender (MAIL FROM 5xx) or
its login (AUTH 535) — through a real aiosmtpd server: an operator alert says so once, no
e-mail is used up or tried once per message meanwhile, and all of them go out once it is fixed.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import Engine, delete, select

from walkout.service import housekeeping, receipting
from walkout.service.models import ReceiptMail
from walkout.service.testing import MAIL_SENDER, Svc, make_mail_svc, make_svc

BAR = "018627032007"  # 9.19 EUR in the `small` store
SHOPPERS = ("ann@example.org", "bob@example.org", "cy@example.org")


class Strict:
    """aiosmtpd handler and authenticator: ``sender_reply`` answers every MAIL FROM (None:
    250), a login succeeds only with ``password``. Counts the MAIL FROMs it answered and the
    connections that tried to log in (``peers``)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.sender_reply: str | None = None
        self.password = "the-right-one"
        self.mail_from = 0
        self.peers: set[object] = set()

    async def handle_MAIL(self, server: SMTP, session: SmtpSession, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        self.mail_from += 1
        if self.sender_reply is not None:
            return self.sender_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession,
                          envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK"

    def __call__(self, server: SMTP, session: SmtpSession, envelope: Envelope,
                 mechanism: str, auth_data: Any) -> AuthResult:
        self.peers.add(session.peer)
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.password == self.password.encode())
        return AuthResult(success=ok, handled=False)  # refused: 535 5.7.8


@pytest.fixture
def strict() -> Iterator[tuple[Strict, int]]:
    """The server on 127.0.0.1 at a free port, offering AUTH without TLS (a test: no TLS)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = Strict()
    controller = Controller(server, hostname="127.0.0.1", port=port, authenticator=server,
                            auth_require_tls=False)
    controller.start()
    try:
        yield server, port
    finally:
        controller.stop()


def _mails(svc: Svc) -> list[tuple[str, int]]:
    """(state, attempts) of every receipt e-mail, by receipt."""
    with svc.deps.sessions() as s:
        return [(m.state, m.attempts) for m in s.scalars(
            select(ReceiptMail).order_by(ReceiptMail.receipt_id, ReceiptMail.revision))]


def _alerts(svc: Svc) -> list[dict[str, Any]]:
    """The e-mail alerts as operators see them (``GET /v1/ops/alerts``), newest first."""
    r = svc.client.get("/v1/ops/alerts", headers=svc.gate)
    assert r.status_code == 200, r.text
    return [a for a in r.json() if a["kind"] in ("mail_refused", "mail_back")]


def test_a_refused_sender_holds_every_email_alerts_once_and_all_go_out_once_fixed(
        engine: Engine, strict: tuple[Strict, int]) -> None:
    """MAIL FROM answered 553: a configuration error of the store, not of one receipt. Before,
    each receipt was tried 8 times and given up for good, the timer tried every one each turn,
    and nobody was told. Now: one alert naming the server's answer and the sender, no try
    counted, one connection a timer turn, and every receipt goes out when the sender is
    accepted again, followed by a ``mail_back`` alert."""
    server, port = strict
    server.sender_reply = f"553 5.7.1 <{MAIL_SENDER}>: sender address not owned by the login"
    svc = make_mail_svc(engine, port)
    for i, email in enumerate(SHOPPERS):
        svc.leave(svc.enter(svc.shopper(f"tok_visa_{i}", email)), {BAR: 1})
    assert server.messages == [] and server.mail_from == 3  # each exit tried its own once
    assert _mails(svc) == [("failed", 0)] * 3
    [alert] = _alerts(svc)
    message = alert["data"]["message"]
    assert alert["kind"] == "mail_refused" and alert["acked"] is None
    assert "553 5.7.1" in message and MAIL_SENDER in message
    assert "WALKOUT_MAIL_SENDER" in message and "E-mails waiting: 1" in message  # when raised
    assert not any(e in message for e in SHOPPERS)
    # two days of the timer: one try a turn, not one per receipt, none of them used up
    for _ in range(48):
        svc.clock.advance(3600)
        before = server.mail_from
        housekeeping.turn(svc.deps)
        assert server.mail_from == before + 1
    assert _mails(svc) == [("failed", 0)] * 3
    assert [a["kind"] for a in _alerts(svc)] == ["mail_refused"]  # raised once
    r = svc.client.post(f"/v1/ops/alerts/{alert['id']}/ack", json={}, headers=svc.gate)
    assert r.status_code == 200 and r.json()["acked"] is not None

    server.sender_reply = None  # the operator had the provider accept the sender
    svc.clock.advance(3600)
    housekeeping.turn(svc.deps)
    assert sorted(str(m["To"]) for m in server.messages) == list(SHOPPERS)
    assert [st for st, _ in _mails(svc)] == ["sent"] * 3
    back, refused = _alerts(svc)
    assert (back["kind"], refused["kind"]) == ("mail_back", "mail_refused")
    assert back["acked"] is None and "takes the store's e-mail again" in back["data"]["message"]
    housekeeping.turn(svc.deps)
    assert len(server.messages) == 3 and len(_alerts(svc)) == 2


def test_a_refused_login_names_the_user_not_the_password_and_a_restart_sends_everything(
        engine: Engine, strict: tuple[Strict, int]) -> None:
    """AUTH answered 535 (a wrong password): the alert names the server's answer and the
    configured user, never the password; the service restarted with the right one sends
    every receipt that waited, however long that was."""
    server, port = strict
    wrong = "wrong-pw-4711"
    settings = {"smtp_host": "127.0.0.1", "smtp_port": port, "mail_sender": MAIL_SENDER,
                "smtp_username": "corner-store"}
    svc = make_svc(engine, **settings, smtp_password=wrong)
    for i, email in enumerate(SHOPPERS[:2]):
        svc.leave(svc.enter(svc.shopper(f"tok_visa_{i}", email)), {BAR: 1})
    assert _mails(svc) == [("failed", 0)] * 2 and len(server.peers) == 2
    [alert] = _alerts(svc)
    message = alert["data"]["message"]
    assert "535" in message and "corner-store" in message
    assert "WALKOUT_SMTP_USERNAME and WALKOUT_SMTP_PASSWORD" in message
    with svc.deps.sessions() as s:
        errors = list(s.scalars(select(ReceiptMail.error)))
    assert all(wrong not in x for x in [message, *map(str, errors)])
    svc.clock.advance(30 * 86400)  # a month of the timer's tries would have used them up
    for _ in range(10):
        svc.clock.advance(13 * 3600)
        housekeeping.turn(svc.deps)
    assert _mails(svc) == [("failed", 0)] * 2 and len(server.peers) == 12

    restarted = make_svc(engine, svc.clock, **settings, smtp_password=server.password)
    assert receipting.resume_mail(restarted.deps) == 2  # what the start does
    assert sorted(str(m["To"]) for m in server.messages) == list(SHOPPERS[:2])
    assert [a["kind"] for a in _alerts(restarted)] == ["mail_back", "mail_refused"]


def test_a_batch_stops_at_the_refusal_and_claims_the_rest_for_the_timer(
        engine: Engine, strict: tuple[Strict, int]) -> None:
    """A start (or the engine worker's outbox) with receipts nobody claimed yet (a crash
    before the claim): the first is refused for the sender, the others are not tried one by
    one but claimed, failed, uncounted, and the timer sends them once the sender is fixed."""
    server, port = strict
    svc = make_mail_svc(engine, port)
    for i, email in enumerate(SHOPPERS):
        svc.leave(svc.enter(svc.shopper(f"tok_visa_{i}", email)), {BAR: 1})
    with svc.deps.sessions.begin() as s:  # as if the service had crashed before each claim
        s.execute(delete(ReceiptMail))
    server.messages.clear()
    server.sender_reply = "550 5.7.1 sender rejected by policy"
    before = server.mail_from
    assert receipting.resume_mail(svc.deps) == 0
    assert server.mail_from == before + 1 and _mails(svc) == [("failed", 0)] * 3
    with svc.deps.sessions() as s:
        errors = sorted(s.scalars(select(ReceiptMail.error)))
    assert sum(x.startswith("not tried: ") for x in errors) == 2
    server.sender_reply = None
    svc.clock.advance(61)
    assert receipting.retry_mail(svc.deps) == 3 and len(server.messages) == 3


def test_a_temporary_refusal_of_the_sender_is_an_outage_not_a_configuration_error(
        engine: Engine, strict: tuple[Strict, int]) -> None:
    """MAIL FROM answered 451 (greylisting, a full queue): tried again and counted as any
    outage, no alert."""
    server, port = strict
    server.sender_reply = "451 4.7.1 greylisted, try again later"
    svc = make_mail_svc(engine, port)
    svc.leave(svc.enter(svc.shopper()), {BAR: 1})
    svc.clock.advance(61)
    housekeeping.turn(svc.deps)
    assert _mails(svc) == [("failed", 2)] and _alerts(svc) == []
