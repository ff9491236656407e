"""Receipts: a pure function of a session's ledger entries and the catalogue."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from walkout.cart.ledger import fold
from walkout.cart.sessions import Session
from walkout.checkout.tax import TaxLine, tax_breakdown
from walkout.events import CartEntry
from walkout.store.model import Store


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    product_id: str
    name: str
    quantity: int
    unit_price: Decimal
    amount: Decimal
    events: tuple[str, ...]  # provenance: the shelf events behind this line
    tax_class: str | None = None  # None: the store itemises no tax
    tax_rate: Decimal | None = None  # of tax_class, a fraction; included in the price


@dataclass(frozen=True, slots=True)
class Receipt:
    session_id: str
    credential: str
    currency: str
    lines: tuple[ReceiptLine, ...]
    total: Decimal
    entered_at: float
    exited_at: float | None
    needs_review: bool
    revision: int = 0  # 0 first issue; +1 for each correction after a review verdict

    def counts(self) -> dict[str, int]:
        return {line.product_id: line.quantity for line in self.lines}

    @property
    def tax(self) -> tuple[TaxLine, ...]:
        """The tax included in the total, per rate (``checkout.tax``); empty when the store
        itemises no tax."""
        taxed = [(ln.tax_class, ln.tax_rate, ln.amount) for ln in self.lines
                 if ln.tax_class is not None and ln.tax_rate is not None]
        return tax_breakdown(taxed, self.currency) if len(taxed) == len(self.lines) else ()


def build_receipt(session: Session, entries: list[CartEntry], store: Store,
                  reviewed: set[str] | None = None, revision: int = 0) -> Receipt:
    """Receipt of ``session`` from its ledger entries; lines with net quantity > 0 only."""
    held = fold(entries).get(session.session_id, {})
    prov: dict[str, list[str]] = defaultdict(list)
    for e in entries:
        prov[e.product_id].append(e.event_id)
    lines = []
    for pid in sorted(held):
        q = held[pid]
        if q <= 0:
            continue
        product = store.products[pid]
        tax = store.product_tax.get(pid)
        lines.append(ReceiptLine(pid, product.name, q, product.price, product.price * q,
                                 tuple(prov[pid]), *(tax or (None, None))))
    review = bool(reviewed and any(e.event_id in reviewed for e in entries))
    return Receipt(
        session_id=session.session_id, credential=session.credential, currency=store.currency,
        lines=tuple(lines), total=sum((ln.amount for ln in lines), Decimal("0")),
        entered_at=session.entered_at, exited_at=session.exited_at, needs_review=review,
        revision=revision,
    )
