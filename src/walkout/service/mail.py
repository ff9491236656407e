"""The mailer the service sends receipts with (SMTP adapter lives with the receipts code)."""

from __future__ import annotations

from collections import deque
from email.message import EmailMessage
from typing import Protocol


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver one message, or raise."""
        ...


class OutboxMailer:
    """Keeps messages in memory: the embedded default until an SMTP server is configured.
    Only the newest ``keep`` are held, so a long-running store without SMTP does not grow."""

    def __init__(self, keep: int = 1000) -> None:
        self.outbox: deque[EmailMessage] = deque(maxlen=keep)

    def send(self, message: EmailMessage) -> None:
        self.outbox.append(message)
