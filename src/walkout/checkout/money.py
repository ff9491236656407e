"""Money: a Decimal amount with its currency, never a float.

Amounts of different currencies never mix silently: arithmetic between them raises. Amounts are
kept at the currency's minor unit (two places for the currencies a store uses here), rounded
half-even like a bank, so that what is stored, charged and shown are the same number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

#: Minor-unit exponent per ISO 4217 currency; anything not listed has two decimals.
_MINOR_DIGITS: dict[str, int] = {"JPY": 0, "KRW": 0, "ISK": 0, "KWD": 3, "BHD": 3, "TND": 3}


class CurrencyMismatch(ValueError):
    """Two amounts of different currencies were combined."""


def minor_digits(currency: str) -> int:
    """How many decimals the currency's smallest unit has (2 for EUR/USD/GBP, 0 for JPY)."""
    return _MINOR_DIGITS.get(currency, 2)


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in one currency (ISO 4217 code, upper case)."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError(f"Money amount must be a Decimal, not {type(self.amount).__name__}")
        if not self.amount.is_finite():
            raise ValueError(f"Money amount must be finite, got {self.amount}")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise ValueError(f"currency must be a 3-letter ISO code, got {self.currency!r}")
        q = Decimal(1).scaleb(-minor_digits(self.currency))
        object.__setattr__(self, "amount", self.amount.quantize(q, rounding=ROUND_HALF_EVEN))

    @classmethod
    def of(cls, amount: str | int | Decimal, currency: str) -> Money:
        """Money from a decimal string or integer (floats are refused: they are not exact)."""
        if isinstance(amount, float):
            raise TypeError("Money.of refuses floats; pass a decimal string")
        try:
            return cls(Decimal(amount), currency)
        except InvalidOperation as e:
            raise ValueError(f"not a decimal amount: {amount!r}") from e

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @property
    def minor_units(self) -> int:
        """The amount in the currency's smallest unit (cents), as payment APIs want it."""
        return int(self.amount.scaleb(minor_digits(self.currency)))

    @classmethod
    def from_minor(cls, units: int, currency: str) -> Money:
        return cls(Decimal(units).scaleb(-minor_digits(currency)), currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, n: int) -> Money:
        if not isinstance(n, int):
            raise TypeError("Money can only be multiplied by an integer quantity")
        return Money(self.amount * n, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    @property
    def is_zero(self) -> bool:
        return self.amount == 0

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def total(amounts: Iterable[Money], currency: str) -> Money:
    """Sum of ``amounts``, all in ``currency`` (zero when empty)."""
    out = Money.zero(currency)
    for m in amounts:
        out = out + m
    return out
