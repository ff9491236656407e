"""The mailer the service sends receipts with (SMTP adapter lives with the receipts code), and
which of its failures are the store's configuration rather than one message's."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver one message, or raise. An exception whose ``config`` attribute is true says
        the store's own settings are at fault, not this message (its ``step`` and ``code``,
        if any, say where): :func:`config_refusal`."""
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
    """The server refuses for good, or lacks, what every message is sent with: ``what`` is
    the step that failed (``sender``, ``login``, ``starttls``, ``auth``, ``tls``; ``settings``:
    a mailer that did not say), with the SMTP ``code`` (None: no reply to tell). No message can
    go out until the settings or the server change."""

    what: str
    code: int | None

    @property
    def key(self) -> str:
        """What tells one fault from another (a server's text may carry a session id)."""
        return f"{self.what}:{self.code}"


def config_refusal(e: BaseException) -> ConfigRefusal | None:
    """Whether a mailer's failure is the store's configuration rather than one message's: the
    mailer says so (``config``), since only it knows at which step its conversation failed
    (:func:`~walkout.service.receipts.mail.deliver`: a 552 to MAIL FROM is one message's, a
    4xx anywhere temporary)."""
    if not getattr(e, "config", False):
        return None
    step, code = getattr(e, "step", None), getattr(e, "code", None)
    return ConfigRefusal(step if isinstance(step, str) else "settings",
                         code if isinstance(code, int) else None)
