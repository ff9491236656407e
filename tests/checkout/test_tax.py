"""The tax rule: per receipt and rate, tax = gross × r / (1 + r) rounded half-even at the
minor unit, net = gross − tax; the breakdown adds up to the receipt's total to the cent."""

from __future__ import annotations

import random
from decimal import Decimal
from types import SimpleNamespace

import pytest

from walkout.cart import CartLedger, SessionBook
from walkout.checkout import build_receipt
from walkout.checkout.tax import TaxLine, percent, rate_str, tax_breakdown, tax_json
from walkout.cli import _receipts_json
from walkout.events import CartEntry, GateEvent
from walkout.store import load_store

D = Decimal
R, S = D("0.055"), D("0.20")


def _row(rows: tuple[TaxLine, ...], rate: Decimal) -> TaxLine:
    [row] = [t for t in rows if t.rate == rate]
    return row


def test_a_tie_rounds_half_even() -> None:
    # 0.99 / 6 = 0.165 exactly: half-even gives 0.16 (half-up would say 0.17)
    [t] = tax_breakdown([("standard", S, D("0.99"))], "EUR")
    assert (t.gross, t.net, t.tax) == (D("0.99"), D("0.83"), D("0.16"))


def test_several_lines_of_one_rate_are_taxed_once_on_their_sum() -> None:
    # per line each is 0.165 → 0.16, three times 0.48; on the sum 2.97 / 6 = 0.495 → 0.50
    [t] = tax_breakdown([("standard", S, D("0.99"))] * 3, "EUR")
    assert (t.gross, t.net, t.tax) == (D("2.97"), D("2.47"), D("0.50"))
    # awkward reduced-rate amounts: 3 × 1.99 + 0.99 + 0.07 = 7.03; 7.03 × 0.055 / 1.055 =
    # 0.36649... → 0.37
    [t] = tax_breakdown([("reduced", R, D("5.97")), ("reduced", R, D("0.99")),
                         ("reduced", R, D("0.07"))], "EUR")
    assert (t.gross, t.net, t.tax) == (D("7.03"), D("6.66"), D("0.37"))


def test_mixed_rates_one_row_each_lowest_first() -> None:
    rows = tax_breakdown([("standard", S, D("3.29")), ("reduced", R, D("9.19")),
                          ("zero", D("0"), D("4.00")), ("reduced", R, D("18.38"))], "EUR")
    assert [t.tax_class for t in rows] == ["zero", "reduced", "standard"]
    assert _row(rows, D("0")) == TaxLine("zero", D("0"), D("4.00"), D("4.00"), D("0.00"))
    # 27.57 × 0.055 / 1.055 = 1.43734... → 1.44
    assert _row(rows, R) == TaxLine("reduced", R, D("27.57"), D("26.13"), D("1.44"))
    # 3.29 / 6 = 0.54833... → 0.55
    assert _row(rows, S) == TaxLine("standard", D("0.2"), D("3.29"), D("2.74"), D("0.55"))


def test_classes_sharing_a_rate_share_a_row() -> None:
    [t] = tax_breakdown([("food", R, D("1.00")), ("books", D("0.055000"), D("2.00"))], "EUR")
    assert t.tax_class == "books, food" and t.gross == D("3.00") and t.tax == D("0.16")


def test_currency_minor_units() -> None:
    [t] = tax_breakdown([("standard", D("0.10"), D("1000"))], "JPY")  # 90.909... → 91 yen
    assert (t.net, t.tax) == (D("909"), D("91"))
    assert tax_json([t], "JPY") == [{"tax_class": "standard", "rate": "0.1", "gross": "1000",
                                     "net": "909", "tax": "91"}]


@pytest.mark.parametrize("seed", range(5))
def test_breakdown_always_adds_up_to_the_total(seed: int) -> None:
    rng = random.Random(seed)
    rates = [D("0"), D("0.055"), D("0.07"), D("0.0825"), D("0.10"), D("0.19"), D("0.20")]
    lines = [(f"c{i}", rng.choice(rates), D(rng.randint(1, 99_999)).scaleb(-2))
             for i in range(rng.randint(1, 40))]
    rows = tax_breakdown(lines, "EUR")
    assert sum(t.gross for t in rows) == sum(a for _, _, a in lines)
    for t in rows:
        assert t.net + t.tax == t.gross
        exact = t.gross * t.rate / (1 + t.rate)
        assert abs(t.tax - exact) <= D("0.005")


def test_rates_as_printed_and_as_json() -> None:
    assert [percent(r) for r in (R, S, D("0.0825"), D("0"))] == ["5.5%", "20%", "8.25%", "0%"]
    assert [rate_str(r) for r in (D("0.055000"), S, D("0E-6"))] == ["0.055", "0.2", "0"]


def test_engine_receipt_itemises_the_small_stores_tax() -> None:
    """The shipped store's prices include tax: the total stays the sum of the lines, and the
    breakdown of the engine's receipt adds up to it."""
    store = load_store("small")
    bar, soap = "018627032007", "037000172208"  # a trail-mix bar (food), washing-up liquid
    assert store.product_tax[bar] == ("reduced", D("0.055"))
    assert store.product_tax[soap] == ("standard", D("0.20"))
    led = CartLedger()
    for e in (CartEntry("s00001", bar, 2, 10.0, "e1", 1.0),
              CartEntry("s00001", soap, 1, 11.0, "e2", 1.0)):
        led.append(e)
    book = SessionBook()
    book.scan(GateEvent(0.0, "entry", "entry", "qr-1"))
    r = build_receipt(book.sessions["s00001"], led.entries("s00001"), store)
    assert r.total == D("9.19") * 2 + D("3.29")  # tax-inclusive: totals do not change
    # 18.38 × 0.055 / 1.055 = 0.9582 → 0.96; 3.29 / 6 = 0.5483 → 0.55
    assert [(t.tax_class, t.gross, t.net, t.tax) for t in r.tax] == [
        ("reduced", D("18.38"), D("17.42"), D("0.96")),
        ("standard", D("3.29"), D("2.74"), D("0.55"))]
    # `walkout replay`'s receipts JSON: the same total, the breakdown beside it
    [out] = _receipts_json(SimpleNamespace(receipts=[r], alerts=[], cases={}))["receipts"]
    assert out["total"] == "21.67" and out["lines"][0]["tax_rate"] == "0.055"
    assert out["tax"] == [
        {"tax_class": "reduced", "rate": "0.055", "gross": "18.38", "net": "17.42", "tax": "0.96"},
        {"tax_class": "standard", "rate": "0.2", "gross": "3.29", "net": "2.74", "tax": "0.55"}]
