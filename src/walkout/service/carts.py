"""Cart totals and receipts as pure functions of persisted cart-ledger lines.

The engine's own receipts come from ``walkout.checkout.build_receipt``; the service rebuilds
the same receipt from what it committed (the unit price stored on each line), so the amount
captured is whatever the durable ledger says, not what a process happened to hold in memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from walkout.checkout.money import Money


@dataclass(frozen=True, slots=True)
class LineIn:
    """One cart-ledger line as stored: signed quantity at a unit price."""

    product_id: str
    name: str
    quantity: int
    unit_price: Decimal
    currency: str
    event_id: str


@dataclass(frozen=True, slots=True)
class ReceiptLineOut:
    product_id: str
    name: str
    quantity: int
    unit_price: Money
    amount: Money
    events: tuple[str, ...]


def receipt_lines(lines: Iterable[LineIn], currency: str) -> list[ReceiptLineOut]:
    """Net quantity per product (picks minus put-backs), positive ones only, by product id.

    A product's price is the one on its first line (prices are fixed for a visit).
    """
    qty: dict[str, int] = defaultdict(int)
    first: dict[str, LineIn] = {}
    events: dict[str, list[str]] = defaultdict(list)
    for ln in lines:
        if ln.currency != currency:
            raise ValueError(f"cart line in {ln.currency} on a {currency} visit")
        qty[ln.product_id] += ln.quantity
        first.setdefault(ln.product_id, ln)
        events[ln.product_id].append(ln.event_id)
    out = []
    for pid in sorted(qty):
        if qty[pid] <= 0:
            continue
        price = Money(first[pid].unit_price, currency)
        out.append(ReceiptLineOut(pid, first[pid].name, qty[pid], price, price * qty[pid],
                                  tuple(events[pid])))
    return out


def cart_total(lines: Iterable[LineIn], currency: str) -> Money:
    """What a visit owes: the sum of its receipt lines."""
    total = Money.zero(currency)
    for rl in receipt_lines(lines, currency):
        total = total + rl.amount
    return total
