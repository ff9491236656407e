"""Fixtures of the service tests: a fresh, migrated database per test, on SQLite and on the
real PostgreSQL server that `scripts/test.sh` starts (``WALKOUT_TEST_PG_URL``)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy import Engine, create_engine, text

from walkout.service.db import make_engine, normalise_url, upgrade
from walkout.service.testing import Svc, make_mail_svc, make_svc

PG_ENV = "WALKOUT_TEST_PG_URL"


def _pg_admin_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.fail(
            f"{PG_ENV} is not set: start PostgreSQL with `bash scripts/services.sh start postgres`"
            f" and export {PG_ENV}=<the URL it prints> (scripts/test.sh does both), or deselect"
            ' these tests with -m "not postgres"', pytrace=False,
        )
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database of each kind, dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'walkout.db'}"
        return
    admin = create_engine(normalise_url(_pg_admin_url()), isolation_level="AUTOCOMMIT")
    name = f"wt_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    base = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield base
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated engine on a fresh database."""
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


# ---- the service, built from real components -------------------------------------------------


@pytest.fixture
def svc(engine: Engine) -> Iterator[Svc]:
    s = make_svc(engine)
    with s.client:
        yield s


# ---- a real SMTP server ----------------------------------------------------------------------


class MailInbox:
    """aiosmtpd handler keeping every message it accepts; ``refuse`` makes it answer 451 to
    the message, ``unknown`` 550 to the recipients it names (a mailbox that does not exist)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse = False
        self.unknown: set[str] = set()

    async def handle_RCPT(self, server: SMTP, session: SmtpSession, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.unknown:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession,
                          envelope: Envelope) -> str:
        if self.refuse:
            return "451 4.3.0 try again later"
        assert isinstance(envelope.content, bytes)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK"


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[MailInbox, int]]:
    """An aiosmtpd server on 127.0.0.1 at a free port: (its inbox, the port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    inbox = MailInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def mailed(engine: Engine, smtp_inbox: tuple[MailInbox, int]) -> Iterator[tuple[Svc, MailInbox]]:
    """The service configured (settings only) to send through the aiosmtpd server."""
    inbox, port = smtp_inbox
    yield make_mail_svc(engine, port), inbox
