"""Tax (VAT, sales tax) included in the prices, itemised per rate on a receipt.

Shelf prices are gross: they include the tax, as in the EU. A receipt's tax is computed once
per receipt and rate from the gross total of that rate, never per line (per-line rounding
would let the breakdown drift from the total by up to half a cent per line):

    gross = the sum of the receipt's line amounts at rate r
    tax   = gross × r / (1 + r), rounded half-even to the currency's minor unit
    net   = gross − tax

so the gross column adds up to the receipt's total to the cent, and net + tax = gross on
every row. Tax classes of one rate share a row (named by all of them): the law asks for the
tax per rate, and one rounding per rate is what makes that row right.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from walkout.checkout.money import minor_digits


@dataclass(frozen=True, slots=True)
class TaxLine:
    """One row of a receipt's tax breakdown: what its lines at ``rate`` hold."""

    tax_class: str  # the store's class at this rate; several, comma-separated, if they share it
    rate: Decimal  # a fraction: 0.055 is 5.5 %
    gross: Decimal
    net: Decimal
    tax: Decimal


def _quantize(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_digits(currency)), rounding=ROUND_HALF_EVEN)


def tax_breakdown(lines: Iterable[tuple[str, Decimal, Decimal]],
                  currency: str) -> tuple[TaxLine, ...]:
    """The breakdown of a receipt's ``(tax class, rate, line amount)`` lines, lowest rate
    first. Line amounts are taken at the minor unit, as the receipt prints them."""
    gross: dict[Decimal, Decimal] = defaultdict(Decimal)
    classes: dict[Decimal, set[str]] = defaultdict(set)
    for cls, rate, amount in lines:
        key = rate.normalize()  # 0.20 and 0.200000 (as a database returns it) are one rate
        gross[key] += _quantize(amount, currency)
        classes[key].add(cls)
    out = []
    for rate in sorted(gross):
        g = _quantize(gross[rate], currency)
        tax = _quantize(g * rate / (1 + rate), currency)
        out.append(TaxLine(", ".join(sorted(classes[rate])), rate, g, g - tax, tax))
    return tuple(out)


def rate_str(rate: Decimal) -> str:
    """A rate as the plain decimal string the JSON carries: ``0.055``, ``0.2``, ``0``."""
    return f"{rate.normalize():f}"


def percent(rate: Decimal) -> str:
    """A rate as a receipt prints it: ``5.5%``, ``20%``."""
    return f"{(rate * 100).normalize():f}%"


def tax_json(rows: Sequence[TaxLine], currency: str) -> list[dict[str, str]]:
    """The breakdown as JSON: rates and money as decimal strings (money at the minor unit)."""
    digits = minor_digits(currency)
    return [{"tax_class": t.tax_class, "rate": rate_str(t.rate), "gross": f"{t.gross:.{digits}f}",
             "net": f"{t.net:.{digits}f}", "tax": f"{t.tax:.{digits}f}"} for t in rows]
