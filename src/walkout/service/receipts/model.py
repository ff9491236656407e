"""The receipt document: what a shopper is shown, e-mailed and can look up at a kiosk.

A ``ReceiptDoc`` is a frozen snapshot, decoupled from the engine's ``Receipt`` so that the
channels (HTML, PDF, e-mail, kiosk) depend on one small typed value and not on the engine or the
database. Money is ``Decimal``; the total is derived from the lines by a pure function so that
what is shown, e-mailed and charged are the same number, and so is the tax breakdown
(``walkout.checkout.tax``), from each line's tax class and rate as they were when it was issued.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

from walkout.checkout.money import minor_digits
from walkout.checkout.receipt import Receipt
from walkout.checkout.tax import TaxLine, rate_str, tax_breakdown, tax_json
from walkout.store.model import Store


class ReceiptError(ValueError):
    """A receipt document that cannot exist (bad quantity, price, currency or time)."""


def quantize(amount: Decimal, currency: str) -> Decimal:
    """``amount`` at the currency's minor unit, rounded half-even like ``Money``."""
    return amount.quantize(Decimal(1).scaleb(-minor_digits(currency)), rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class ReceiptDocLine:
    """One product on a receipt: ``quantity`` units at ``unit_price`` each, that price
    including tax at ``tax_rate`` of ``tax_class`` (both None: no tax itemised)."""

    product_id: str
    name: str
    quantity: int
    unit_price: Decimal
    tax_class: str | None = None
    tax_rate: Decimal | None = None

    def __post_init__(self) -> None:
        where = f"receipt line for product {self.product_id!r}"
        # bool is an int subclass: True units of something is a bug, not one item
        if not isinstance(self.quantity, int) or isinstance(self.quantity, bool):
            raise ReceiptError(f"{where}: quantity must be an int, got {self.quantity!r}")
        if self.quantity <= 0:
            raise ReceiptError(f"{where}: quantity must be positive, got {self.quantity}")
        if not isinstance(self.unit_price, Decimal) or not self.unit_price.is_finite():
            raise ReceiptError(f"{where}: unit price must be a finite Decimal, "
                               f"got {self.unit_price!r}")
        if self.unit_price < 0:
            raise ReceiptError(f"{where}: unit price must not be negative, got {self.unit_price}")
        if (self.tax_class is None) != (self.tax_rate is None):
            raise ReceiptError(f"{where}: a tax class and a tax rate go together, got "
                               f"{self.tax_class!r} and {self.tax_rate!r}")
        if self.tax_rate is not None and not (isinstance(self.tax_rate, Decimal)
                                              and self.tax_rate.is_finite()
                                              and 0 <= self.tax_rate < 1):
            raise ReceiptError(f"{where}: tax rate must be a Decimal fraction in [0, 1), "
                               f"got {self.tax_rate!r}")


def line_total(line: ReceiptDocLine, currency: str) -> Decimal:
    """Quantity × unit price at the currency's minor unit."""
    return quantize(line.unit_price * line.quantity, currency)


def receipt_total(lines: Iterable[ReceiptDocLine], currency: str) -> Decimal:
    """Sum of the rounded line totals, so the printed lines always add up to the printed total."""
    return quantize(sum((line_total(ln, currency) for ln in lines), Decimal(0)), currency)


@dataclass(frozen=True, slots=True)
class ReceiptDoc:
    """A shopper's receipt. ``issued_at`` must be timezone-aware (receipts are sorted and shown
    across time zones); ``email`` is where it is sent and what a kiosk finds it by."""

    receipt_id: str
    store_name: str
    issued_at: datetime
    currency: str
    lines: tuple[ReceiptDocLine, ...]
    email: str | None = None
    #: open review cases (or disputes) may still change it: said on every rendering, so a
    #: shopper never takes a provisional receipt for the final one
    under_review: bool = False

    def __post_init__(self) -> None:
        if not self.receipt_id:
            raise ReceiptError("receipt_id must not be empty")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise ReceiptError(f"currency must be a 3-letter upper-case ISO code, "
                               f"got {self.currency!r}")
        if self.issued_at.tzinfo is None or self.issued_at.utcoffset() is None:
            raise ReceiptError(f"receipt {self.receipt_id}: issued_at must be timezone-aware")
        object.__setattr__(self, "lines", tuple(self.lines))
        seen: set[str] = set()
        for ln in self.lines:
            if ln.product_id in seen:
                raise ReceiptError(f"receipt {self.receipt_id}: product {ln.product_id!r} "
                                   "appears on two lines; merge them into one")
            seen.add(ln.product_id)

    @property
    def total(self) -> Decimal:
        return receipt_total(self.lines, self.currency)

    def line_total(self, line: ReceiptDocLine) -> Decimal:
        return line_total(line, self.currency)

    @property
    def tax(self) -> tuple[TaxLine, ...]:
        """The tax included in the total, per rate; empty (no tax itemised) unless every line
        carries its rate: a receipt issued before its store had tax rates stays as it was."""
        taxed = [(ln.tax_class, ln.tax_rate, self.line_total(ln)) for ln in self.lines
                 if ln.tax_class is not None and ln.tax_rate is not None]
        return tax_breakdown(taxed, self.currency) if len(taxed) == len(self.lines) else ()

    def fmt(self, amount: Decimal) -> str:
        """``amount`` with exactly the currency's minor digits, e.g. ``2.50``."""
        return f"{quantize(amount, self.currency):.{minor_digits(self.currency)}f}"


@dataclass(frozen=True, slots=True)
class ReceiptRevision:
    """How a review verdict changed an issued receipt: what the shopper is told by e-mail.
    ``removed``/``added`` hold the change in units per product (at the line's unit price);
    ``refund`` is what goes back to the card (zero when nothing was captured above the new
    total), ``refunded`` whether the provider confirmed it already. ``owed`` is the visit's
    balance the revision leaves open (None: none; zero: one it took down to nothing), and
    ``owed_status`` where it stands: ``charged`` to the card, ``charging`` (outcome not known
    yet) or ``owed`` (refused, or not charged to a card)."""

    number: int
    revised_at: datetime
    removed: tuple[ReceiptDocLine, ...]
    added: tuple[ReceiptDocLine, ...]
    refund: Decimal = Decimal(0)
    refunded: bool = False
    owed: Decimal | None = None
    owed_status: Literal["charged", "charging", "owed"] = "owed"

    def __post_init__(self) -> None:
        if self.number < 1:
            raise ReceiptError(f"a revision is numbered from 1 (0 is the original), "
                               f"got {self.number}")
        if self.revised_at.tzinfo is None:
            raise ReceiptError(f"revision {self.number}: revised_at must be timezone-aware")


def diff_lines(old: Sequence[ReceiptDocLine], new: Sequence[ReceiptDocLine],
               ) -> tuple[tuple[ReceiptDocLine, ...], tuple[ReceiptDocLine, ...]]:
    """(removed, added) units per product from ``old`` to ``new``, in the order shown."""
    before = {ln.product_id: ln for ln in old}
    after = {ln.product_id: ln for ln in new}
    removed, added = [], []
    for pid in dict.fromkeys([*before, *after]):
        a, b = before.get(pid), after.get(pid)
        delta = (b.quantity if b else 0) - (a.quantity if a else 0)
        ref = b or a
        assert ref is not None
        if delta < 0:
            removed.append(ReceiptDocLine(pid, ref.name, -delta, ref.unit_price,
                                          ref.tax_class, ref.tax_rate))
        elif delta > 0:
            added.append(ReceiptDocLine(pid, ref.name, delta, ref.unit_price,
                                        ref.tax_class, ref.tax_rate))
    return tuple(removed), tuple(added)


def tax_rows(doc: ReceiptDoc) -> list[dict[str, str]]:
    """``doc``'s tax breakdown as the API's JSON (empty: no tax itemised)."""
    return tax_json(doc.tax, doc.currency)


def line_tax(line: ReceiptDocLine) -> dict[str, str | None]:
    """A line's tax class and rate as the API's JSON."""
    return {"tax_class": line.tax_class,
            "tax_rate": None if line.tax_rate is None else rate_str(line.tax_rate)}


def from_engine_receipt(receipt: Receipt, store: Store, *, email: str | None = None,
                        receipt_id: str | None = None,
                        issued_at: datetime | None = None) -> ReceiptDoc:
    """The document of an engine ``Receipt``, names, prices and tax classes taken from
    ``store``'s catalogue (the authority on what a product is called, costs and is taxed at).

    ``receipt_id`` defaults to one derived from the session, so re-building a receipt gives the
    same id (and the same e-mail Message-ID); ``issued_at`` defaults to the exit time (engine
    times are epoch seconds).
    """
    if receipt.currency != store.currency:
        raise ReceiptError(f"receipt {receipt.session_id} is in {receipt.currency} but store "
                           f"{store.name!r} sells in {store.currency}")
    lines = []
    for ln in receipt.lines:
        product = store.products.get(ln.product_id)
        if product is None:
            raise ReceiptError(f"receipt {receipt.session_id}: product {ln.product_id!r} is not "
                               f"in the catalogue of store {store.name!r}")
        cls, rate = store.product_tax.get(ln.product_id, (None, None))
        lines.append(ReceiptDocLine(ln.product_id, product.name, ln.quantity, product.price,
                                    cls, rate))
    when = receipt.exited_at if receipt.exited_at is not None else receipt.entered_at
    return ReceiptDoc(
        receipt_id=receipt_id or f"r-{receipt.session_id}",
        store_name=store.name,
        issued_at=issued_at or datetime.fromtimestamp(when, UTC),
        currency=store.currency,
        lines=tuple(lines),
        email=email,
    )
