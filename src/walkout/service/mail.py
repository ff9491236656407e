"""The mailer the service sends receipts with (SMTP adapter lives with the receipts code), and
which of its failures are the store's configuration rather than one message's."""

from __future__ import annotations

import smtplib
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver one message, or raise. An exception whose ``config`` attribute is true (or
        caused by an SMTP refusal of the sender or the login) says the store's own settings
        are refused: :func:`config_refusal`."""
        ...


class OutboxMailer:
    """Keeps messages in memory: the embedded default until an SMTP server is configured.
    Only the newest ``keep`` are held, so a long-running store without SMTP does not grow."""

    def __init__(self, keep: int = 1000) -> None:
        self.outbox: deque[EmailMessage] = deque(maxlen=keep)

    def send(self, message: EmailMessage) -> None:
        self.outbox.append(message)


@dataclass(frozen=True, slots=True)
class ConfigRefusal:
    """The server refused for good what every message is sent with: the store's sender
    (``what`` ``sender``) or its login (``login``), with the SMTP ``code`` (None: a mailer
    that only said ``config``). No message can go out until the settings change."""

    what: str
    code: int | None

    @property
    def key(self) -> str:
        """What tells one fault from another (a server's text may carry a session id)."""
        return f"{self.what}:{self.code}"


#: a MAIL FROM refused for the message's size (RFC 1870): that message's, not the store's
_SIZE_REFUSED = 552


def config_refusal(e: BaseException) -> ConfigRefusal | None:
    """Whether a mailer's failure is a permanent refusal of the store's configuration: MAIL
    FROM or AUTH answered 5xx (a 4xx is temporary, a refused recipient is one message's).
    Read from the exception or the smtplib error it was raised from."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, smtplib.SMTPSenderRefused):
            code = seen.smtp_code
            if 500 <= code < 600 and code != _SIZE_REFUSED:
                return ConfigRefusal("sender", code)
            return None
        if isinstance(seen, smtplib.SMTPAuthenticationError):
            code = seen.smtp_code
            return ConfigRefusal("login", code) if 500 <= code < 600 else None
        if getattr(seen, "config", False):
            return ConfigRefusal("settings", None)
        seen = seen.__cause__ or seen.__context__
    return None
