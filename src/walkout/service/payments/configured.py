"""The payment provider ``ServiceSettings`` name, built the same way by the API process
(``create_app``) and the engine worker process (``runner.worker_deps``): both move money, so
both must talk to the same provider with the same key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from walkout.service.clock import Clock
from walkout.service.payments.base import PaymentProvider

if TYPE_CHECKING:
    import stripe

    from walkout.service.settings import ServiceSettings


def configured_provider(settings: ServiceSettings, sessions: sessionmaker[Session],
                        clock: Clock, *,
                        stripe_http_client: stripe.HTTPClient | None = None) -> PaymentProvider:
    """The built-in ledger, or Stripe with ``stripe_api_key`` (``stripe_http_client``: the
    transport, for a proxy or for tests; default: the library's own)."""
    if settings.payment_provider == "ledger":
        from walkout.service.payments.ledger import LedgerProvider

        return LedgerProvider(sessions, clock)
    from walkout.service.payments.stripe import StripeProvider

    key = settings.stripe_api_key
    if key is None:  # refused by the settings' own validation; kept for a hand-made object
        raise ValueError("payment_provider is stripe but WALKOUT_STRIPE_API_KEY is not set")
    return StripeProvider.from_api_key(key.get_secret_value(), http_client=stripe_http_client)
