"""What every part of the service is built from, handed in by ``create_app`` (no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from walkout.service.clock import Clock
from walkout.service.mail import Mailer
from walkout.service.payments.base import PaymentProvider
from walkout.service.settings import ServiceSettings
from walkout.store.model import Store


@dataclass(frozen=True)
class Deps:
    settings: ServiceSettings
    sessions: sessionmaker[Session]
    clock: Clock
    provider: PaymentProvider
    mailer: Mailer
    store: Store
