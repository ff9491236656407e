"""Payment providers: the interface (`base`) and one adapter per file (`ledger`, `stripe`)."""

from walkout.service.payments.base import (
    Authorization,
    AuthorizationGone,
    Capture,
    ChargesSavedMethod,
    IdempotencyConflict,
    PaymentDeclined,
    PaymentError,
    PaymentProvider,
    Refund,
    UnknownPayment,
)

__all__ = [
    "Authorization",
    "AuthorizationGone",
    "Capture",
    "ChargesSavedMethod",
    "IdempotencyConflict",
    "PaymentDeclined",
    "PaymentError",
    "PaymentProvider",
    "Refund",
    "UnknownPayment",
]
