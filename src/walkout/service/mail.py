"""The mailer the service sends receipts with (SMTP adapter lives with the receipts code)."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Deliver one message, or raise."""
        ...


class OutboxMailer:
    """Keeps messages in memory: the embedded default until an SMTP server is configured."""

    def __init__(self) -> None:
        self.outbox: list[EmailMessage] = []

    def send(self, message: EmailMessage) -> None:
        self.outbox.append(message)
