"""Kiosk look-up: a shopper types their e-mail address and sees their own receipts.

The match is exact on the normalised address (trimmed, case-folded): no prefix, substring or
wildcard search, and an empty or address-less query finds nothing, so that a kiosk can never be
used to browse other shoppers' receipts.
"""

from __future__ import annotations

from collections.abc import Iterable

from walkout.service.receipts.model import ReceiptDoc


def normalize_email(address: str) -> str:
    """The form addresses are compared in: surrounding spaces dropped, case folded."""
    return address.strip().casefold()


def find_receipts(docs: Iterable[ReceiptDoc], email: str) -> list[ReceiptDoc]:
    """Receipts sent to ``email``, newest first (ties by receipt id, for a stable order)."""
    key = normalize_email(email)
    if "@" not in key or key.startswith("@") or key.endswith("@"):
        return []
    mine = [d for d in docs if d.email is not None and normalize_email(d.email) == key]
    return sorted(mine, key=lambda d: (d.issued_at, d.receipt_id), reverse=True)
