"""A mail server that refuses the store's own settings for good — its sender (MAIL FROM 5xx) or
its login (AUTH 535) — or lacks what they require — STARTTLS, AUTH, a certificate this host
trusts — through a real aiosmtpd server: an operator alert says so once, no e-mail is used up
or tried once per message meanwhile, and all of them go out once it is fixed. The SMTP
conversation itself says which failures those are (``ReceiptDeliveryError.config``).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import Engine, delete, select

from walkout.service import housekeeping, receipting
from walkout.service.models import ReceiptMail
from walkout.service.receipts.mail import ReceiptDeliveryError, SmtpMailer
from walkout.service.testing import MAIL_SENDER, Svc, make_mail_svc, make_svc

BAR = "018627032007"  # 9.19 EUR in the `small` store
SHOPPERS = ("ann@example.org", "bob@example.org", "cy@example.org")


class Strict:
    """aiosmtpd handler and authenticator: ``sender_reply`` answers every MAIL FROM (None:
    250), a login succeeds only with ``password`` (else ``auth_reply``, None: 535). Counts the
    MAIL FROMs it answered, the connections that tried to log in (``peers``) and all of them
    (``connections``)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.sender_reply: str | None = None
        self.auth_reply: str | None = None
        self.password = "the-right-one"
        self.mail_from = 0
        self.peers: set[object] = set()
        self.connections: set[object] = set()

    async def handle_EHLO(self, server: SMTP, session: SmtpSession, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        self.connections.add(session.peer)
        session.host_name = hostname
        return responses

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
        return AuthResult(success=ok, handled=False,  # refused: 535 5.7.8
                          message=None if ok else self.auth_reply)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def strict() -> Iterator[tuple[Strict, int]]:
    """The server on 127.0.0.1 at a free port, offering AUTH without TLS (a test: no TLS)."""
    port = _free_port()
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


def _message(to: str = "ann@example.org") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = MAIL_SENDER, to, "a receipt"
    msg["Message-ID"] = "<receipt.r-1@walkout.test>"
    msg.set_content("9.19 EUR")
    return msg


@pytest.mark.parametrize(("sender_reply", "auth_reply", "config", "step", "code"), [
    ("553 5.7.1 sender address not owned by the login", None, True, "sender", 553),
    ("550 5.7.1 sender rejected by policy", None, True, "sender", 550),
    ("552 5.3.4 message size exceeds the limit", None, False, "sender", 552),
    ("451 4.7.1 greylisted, try again later", None, False, "sender", 451),
    (None, "535 5.7.8 authentication credentials invalid", True, "login", 535),
    (None, "454 4.7.0 temporary authentication failure", False, "login", 454),
])
def test_the_smtp_conversation_says_which_refusals_are_the_settings(
        strict: tuple[Strict, int], sender_reply: str | None, auth_reply: str | None,
        config: bool, step: str, code: int) -> None:
    """The mailer, which sees at which step the server answered what, says whether the store's
    settings are at fault: a 5xx to MAIL FROM or AUTH, but not 552 (that message is too large)
    and no 4xx (temporary). Before, the service read the smtplib error after the fact."""
    server, port = strict
    server.sender_reply, server.auth_reply = sender_reply, auth_reply
    mailer = SmtpMailer("127.0.0.1", port, username="corner-store",
                        password="wrong" if auth_reply else server.password)
    with pytest.raises(ReceiptDeliveryError) as e:
        mailer.send(_message())
    assert (e.value.config, e.value.step, e.value.code, e.value.final) == (
        config, step, code, False)
    assert str(code) in str(e.value) and "wrong" not in str(e.value)


# ---- a server without what the settings require ----------------------------------------------


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 that no CA signed: untrusted until a test makes the
    default trust store this file (``SSL_CERT_FILE``, read by every default SSL context)."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class Relay:
    """A :class:`Strict` server on a fixed local port, started again with other capabilities
    as a mail provider changes its server. ``tls``: it offers STARTTLS with ``tls_cert``;
    ``auth``: it offers AUTH, after STARTTLS when it has TLS (as servers on the open network
    do); neither: a plain server, no AUTH."""

    def __init__(self, cert: tuple[Path, Path]) -> None:
        self.server, self.port, self.cert = Strict(), _free_port(), cert
        self._controller: Controller | None = None

    def start(self, *, tls: bool, auth: bool) -> None:
        self.stop()
        ctx = None
        if tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*self.cert)
        self._controller = Controller(self.server, hostname="127.0.0.1", port=self.port,
                                      tls_context=ctx, authenticator=self.server,
                                      auth_require_tls=tls or not auth)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def trust(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """This host trusts the server's certificate (its CA file is that certificate)."""
        monkeypatch.setenv("SSL_CERT_FILE", str(self.cert[0]))


@pytest.fixture
def relay(tls_cert: tuple[Path, Path]) -> Iterator[Relay]:
    r = Relay(tls_cert)
    try:
        yield r
    finally:
        r.stop()


def _held_until_fixed(svc: Svc, relay: Relay, *needles: str) -> dict[str, Any]:
    """Three shoppers leave while the server lacks what the settings require: each exit tries
    its own receipt once, none is counted, one alert names ``needles``; then two days of the
    timer make one connection a turn, use nothing up and raise nothing more. The alert."""
    for i, email in enumerate(SHOPPERS):
        svc.leave(svc.enter(svc.shopper(f"tok_visa_{i}", email)), {BAR: 1})
    server = relay.server
    assert server.messages == [] and len(server.connections) == 3
    assert _mails(svc) == [("failed", 0)] * 3
    [alert] = _alerts(svc)
    message = alert["data"]["message"]
    assert alert["kind"] == "mail_refused", message
    for needle in needles:
        assert needle in message, message
    assert "E-mails waiting: 1" in message and not any(e in message for e in SHOPPERS)
    for _ in range(48):
        svc.clock.advance(3600)
        before = len(server.connections)
        housekeeping.turn(svc.deps)
        assert len(server.connections) == before + 1
    assert _mails(svc) == [("failed", 0)] * 3
    assert [a["kind"] for a in _alerts(svc)] == ["mail_refused"]
    return alert


def _all_sent_once_fixed(svc: Svc, relay: Relay) -> None:
    """The timer's next turn sends every receipt that waited, and says the mail is back."""
    svc.clock.advance(3600)
    housekeeping.turn(svc.deps)
    assert sorted(str(m["To"]) for m in relay.server.messages) == list(SHOPPERS)
    assert [st for st, _ in _mails(svc)] == ["sent"] * 3
    assert [a["kind"] for a in _alerts(svc)] == ["mail_back", "mail_refused"]


def test_starttls_the_server_does_not_offer_is_a_configuration_error(
        engine: Engine, relay: Relay, monkeypatch: pytest.MonkeyPatch) -> None:
    """WALKOUT_SMTP_STARTTLS set, a server without STARTTLS (a port for local relays, say).
    Before, each receipt was tried 8 times ("STARTTLS extension not supported") and given up,
    and nobody was told. Now: an alert naming STARTTLS and the settings to look at, nothing
    used up, and everything goes out once the server offers it."""
    relay.start(tls=False, auth=False)
    svc = make_svc(engine, smtp_host="127.0.0.1", smtp_port=relay.port,
                   mail_sender=MAIL_SENDER, smtp_starttls=True)
    _held_until_fixed(svc, relay, "does not offer STARTTLS", "WALKOUT_SMTP_HOST",
                      "WALKOUT_SMTP_PORT")
    relay.trust(monkeypatch)
    relay.start(tls=True, auth=False)  # the provider turns STARTTLS on
    _all_sent_once_fixed(svc, relay)


def test_a_login_the_server_offers_no_auth_for_is_a_configuration_error(
        engine: Engine, relay: Relay) -> None:
    """WALKOUT_SMTP_USERNAME set, a server that offers no AUTH (on a plain connection, as
    most). Before: 8 counted tries each ("SMTP AUTH extension not supported"), no alert. Now
    the alert names AUTH, the user (never the password) and STARTTLS, which many servers
    want first; once the server offers AUTH, everything goes out."""
    relay.start(tls=False, auth=False)
    svc = make_svc(engine, smtp_host="127.0.0.1", smtp_port=relay.port,
                   mail_sender=MAIL_SENDER, smtp_username="corner-store",
                   smtp_password=relay.server.password)
    alert = _held_until_fixed(svc, relay, "does not offer AUTH", "without STARTTLS",
                              "corner-store", "WALKOUT_SMTP_STARTTLS", "WALKOUT_SMTP_USERNAME")
    assert relay.server.password not in alert["data"]["message"]
    assert relay.server.peers == set()  # nobody tried to log in
    relay.start(tls=False, auth=True)
    _all_sent_once_fixed(svc, relay)
    assert len(relay.server.peers) == 3


def test_a_certificate_this_host_does_not_trust_is_a_configuration_error(
        engine: Engine, relay: Relay, monkeypatch: pytest.MonkeyPatch) -> None:
    """WALKOUT_SMTP_STARTTLS set, a server whose certificate no trusted CA signed: the TLS
    handshake fails the same for every message. Before, that read as an unreachable server:
    8 counted tries each, no alert. Now the alert names the handshake and why, and once this
    host trusts the certificate everything goes out."""
    relay.start(tls=True, auth=False)
    svc = make_svc(engine, smtp_host="127.0.0.1", smtp_port=relay.port,
                   mail_sender=MAIL_SENDER, smtp_starttls=True)
    _held_until_fixed(svc, relay, "TLS handshake", "certificate is not trusted",
                      "self-signed", "WALKOUT_SMTP_HOST")
    relay.trust(monkeypatch)
    _all_sent_once_fixed(svc, relay)
