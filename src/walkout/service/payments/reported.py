"""What the payment provider reported outside walkout's own calls (its webhook), as the money
paths must take it into account: a hold cancelled or expired at the provider, and bank
chargebacks. (Refunds made outside walkout are recorded as refund charges, so the caps count
them like walkout's own.) A leaf module: the checkout and dispute paths read it without
importing the webhook handling."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from walkout.checkout.money import Money
from walkout.service.models import Chargeback, PaymentWebhookEvent

#: event types by which the provider says an uncaptured hold is gone
HOLD_GONE_TYPES = ("payment_intent.canceled", "charge.expired")
#: chargeback states in which the money is (or may be) the bank's: withdrawn from the store,
#: returned to the cardholder unless the store wins. Inquiries (``warning_*``) move no money.
FUNDS_WITHHELD = ("needs_response", "under_review", "lost")
#: the idempotency key of the refund charge that records a refund made outside walkout (the
#: provider's dashboard, another tool), one per reporting event; ``OUTSIDE_REFUND_LIKE``
#: matches every such key in SQL. Walkout's own keys never start with ``stripe:``.
OUTSIDE_REFUND_KEY = "stripe:{event}:refund"
OUTSIDE_REFUND_LIKE = "stripe:%:refund"


def made_outside(idempotency_key: str) -> bool:
    """Whether a refund charge records a refund made outside walkout, which the provider
    reported, rather than one walkout made: staff see it marked, as nobody here decided it."""
    return idempotency_key.startswith("stripe:") and idempotency_key.endswith(":refund")


def hold_gone(s: Session, auth_id: str) -> str | None:
    """Why the hold ``auth_id`` can no longer be captured, if the provider said so (the
    recorded event's detail); None while nothing says so."""
    return s.scalar(select(PaymentWebhookEvent.detail).where(
        PaymentWebhookEvent.object_id == auth_id,
        PaymentWebhookEvent.type.in_(HOLD_GONE_TYPES),
        PaymentWebhookEvent.outcome != "ignored").limit(1))


def withheld_chargebacks(s: Session, visit_id: str) -> list[Chargeback]:
    """The visit's chargebacks whose money the bank holds or took: open or lost."""
    return list(s.scalars(select(Chargeback).where(Chargeback.visit_id == visit_id,
                                                   Chargeback.status.in_(FUNDS_WITHHELD))
                          .order_by(Chargeback.opened_at)))


def chargeback_total(s: Session, visit_id: str, currency: str) -> Money:
    """What open or lost chargebacks return to the shopper of the visit: money walkout must
    never refund again."""
    n = s.scalar(select(func.coalesce(func.sum(Chargeback.amount), 0)).where(
        Chargeback.visit_id == visit_id, Chargeback.status.in_(FUNDS_WITHHELD),
        Chargeback.currency == currency)) or 0
    return Money(Decimal(n), currency)
