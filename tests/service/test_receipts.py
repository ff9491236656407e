"""Receipt documents: totals, rendering (HTML, text, PDF), engine conversion, kiosk look-up."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from walkout.cart import CartLedger, SessionBook
from walkout.checkout import build_receipt
from walkout.events import CartEntry, GateEvent
from walkout.service.receipts import (
    ReceiptDoc,
    ReceiptDocLine,
    ReceiptError,
    find_receipts,
    from_engine_receipt,
    receipt_total,
    render_html,
    render_pdf,
    render_text,
)
from walkout.service.receipts.render import contest_link, public_contest_url
from walkout.store import load_store
from walkout.store.model import Store

T0 = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def _doc(rid: str = "r-1", *, email: str | None = "ana@example.org", at: datetime = T0,
         lines: tuple[ReceiptDocLine, ...] | None = None, currency: str = "EUR",
         store: str = "Corner Shop") -> ReceiptDoc:
    if lines is None:
        lines = (ReceiptDocLine("p1", "Oat milk", 2, Decimal("1.25")),
                 ReceiptDocLine("p2", "Dark chocolate", 1, Decimal("2.49")))
    return ReceiptDoc(rid, store, at, currency, lines, email)


def _pdf_text(pdf: bytes) -> str:
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)


# ---- totals ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("prices", "currency", "total"), [
    ([("1.25", 2), ("2.49", 1)], "EUR", "4.99"),
    ([], "EUR", "0.00"),
    ([("0.10", 3)], "USD", "0.30"),  # exact in Decimal where a float sum is 0.30000000000000004
    ([("0.005", 1), ("0.015", 1)], "EUR", "0.02"),  # each line rounded half-even, then summed
    ([("120", 3)], "JPY", "360"),
    ([("1.2345", 1)], "KWD", "1.234"),
])
def test_total_is_sum_of_rounded_lines_at_the_minor_unit(
        prices: list[tuple[str, int]], currency: str, total: str) -> None:
    lines = [ReceiptDocLine(f"p{i}", f"P{i}", q, Decimal(p)) for i, (p, q) in enumerate(prices)]
    got = receipt_total(lines, currency)
    assert got == Decimal(total) and str(got) == total
    assert _doc(lines=tuple(lines), currency=currency).total == got


@pytest.mark.parametrize("quantity", [0, -1])
def test_non_positive_quantity_is_rejected_naming_the_product(quantity: int) -> None:
    with pytest.raises(ReceiptError, match=r"'p9'.*quantity must be positive"):
        ReceiptDocLine("p9", "Tea", quantity, Decimal("1.00"))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"unit_price": Decimal("-0.01")}, "must not be negative"),
    ({"unit_price": Decimal("NaN")}, "finite Decimal"),
    ({"unit_price": 1.5}, "finite Decimal"),
    ({"quantity": True}, "must be an int"),
])
def test_bad_line_values_are_rejected(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"product_id": "p1", "name": "Tea", "quantity": 1,
                               "unit_price": Decimal("1")} | kwargs
    with pytest.raises(ReceiptError, match=match):
        ReceiptDocLine(**args)  # type: ignore[arg-type]


def test_document_rejects_naive_time_bad_currency_and_duplicate_products() -> None:
    with pytest.raises(ReceiptError, match="timezone-aware"):
        _doc(at=datetime(2024, 5, 1, 12, 30))
    with pytest.raises(ReceiptError, match="ISO code"):
        _doc(currency="eur")
    ln = ReceiptDocLine("p1", "Tea", 1, Decimal("1"))
    with pytest.raises(ReceiptError, match="two lines"):
        _doc(lines=(ln, ln))


def test_document_is_frozen() -> None:
    doc = _doc()
    with pytest.raises(AttributeError):
        doc.email = "mallory@example.org"  # type: ignore[misc]


# ---- rendering --------------------------------------------------------------------------------

def test_html_shows_every_field_and_a_contest_link_per_line() -> None:
    html = render_html(_doc(), contest_url="https://shop.example/r/{receipt_id}/contest")
    for text in ("Corner Shop", "r-1", "2024-05-01 12:30 UTC", "Oat milk", "Dark chocolate",
                 "1.25", "2.50", "2.49", "4.99 EUR"):
        assert text in html
    assert 'href="https://shop.example/r/r-1/contest?product_id=p1"' in html
    assert 'href="https://shop.example/r/r-1/contest?product_id=p2"' in html
    assert "Contest a line" in html


def test_html_escapes_names_and_ids() -> None:
    evil = ReceiptDocLine("p&1", "<script>alert(1)</script>", 1, Decimal("1"))
    html = render_html(_doc('r"1', lines=(evil,), store="Tom & Jerry's <b>"))
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Tom &amp; Jerry&#39;s &lt;b&gt;" in html
    assert "product_id=p%261" in html and "/receipts/r%221/" in html


def test_empty_receipt_says_nothing_was_charged() -> None:
    doc = _doc(lines=())
    assert "not been charged" in render_html(doc)
    assert "Total: 0.00 EUR" in render_text(doc)
    assert "0.00 EUR" in _pdf_text(render_pdf(doc))


def test_text_alternative_lists_lines_and_total() -> None:
    text = render_text(_doc())
    assert "2 x Oat milk @ 1.25 = 2.50" in text
    assert "Total: 4.99 EUR" in text


def test_pdf_parses_and_holds_the_receipt() -> None:
    pdf = render_pdf(_doc())
    assert pdf.startswith(b"%PDF-")
    text = _pdf_text(pdf)
    for needle in ("Corner Shop", "Receipt r-1", "Oat milk", "Dark chocolate", "4.99 EUR"):
        assert needle in text
    assert render_pdf(_doc()) == pdf  # same receipt, same bytes


def test_pdf_survives_names_outside_latin1_and_long_lists() -> None:
    lines = tuple(ReceiptDocLine(f"p{i}", f"Crème “bio” 抹茶 ★ {'long name ' * (i % 9)}",
                                 i + 1, Decimal("0.99")) for i in range(60))
    doc = _doc(lines=lines)
    reader = PdfReader(io.BytesIO(render_pdf(doc)))
    assert len(reader.pages) >= 2
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert 'Crème "bio"' in text and f"{doc.fmt(doc.total)} EUR" in text


DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@pytest.mark.skipif(not DEJAVU.exists(), reason="no DejaVu font here (Debian: fonts-dejavu-core)")
def test_pdf_with_a_unicode_font_prints_names_as_they_are() -> None:
    line = ReceiptDocLine("p1", "Crème “bio” Ωmega", 1, Decimal("3.10"))
    text = _pdf_text(render_pdf(_doc(lines=(line,)), font_path=DEJAVU))
    assert "Crème “bio” Ωmega" in text and "3.10 EUR" in text


# ---- tax ---------------------------------------------------------------------------------------

R, S = Decimal("0.055"), Decimal("0.20")


def tax_cells(html: str) -> list[list[str]]:
    """The cells of each row of a receipt page's tax table."""
    table = html[html.index('<table class="tax">'):]
    rows = table[:table.index("</table>")].split('<tr class="tax-line">')[1:]
    return [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in rows]


def _taxed() -> ReceiptDoc:
    """Three reduced-rate lines and one standard: 5.97 + 0.99 + 0.07 = 7.03 at 5.5 %, whose
    tax on the sum (0.37) is not the sum of per-line taxes (0.31 + 0.05 + 0.00 = 0.36)."""
    return _doc(lines=(ReceiptDocLine("p1", "Bread", 3, Decimal("1.99"), "reduced", R),
                       ReceiptDocLine("p2", "Soap", 1, Decimal("3.29"), "standard", S),
                       ReceiptDocLine("p3", "Milk", 1, Decimal("0.99"), "reduced", R),
                       ReceiptDocLine("p4", "Gum", 1, Decimal("0.07"), "reduced", R)))


def test_tax_breakdown_adds_up_to_the_total() -> None:
    doc = _taxed()
    assert [(t.tax_class, t.gross, t.net, t.tax) for t in doc.tax] == [
        ("reduced", Decimal("7.03"), Decimal("6.66"), Decimal("0.37")),
        ("standard", Decimal("3.29"), Decimal("2.74"), Decimal("0.55"))]
    assert sum(t.gross for t in doc.tax) == doc.total == Decimal("10.32")


def test_html_text_and_pdf_show_the_tax_breakdown() -> None:
    doc = _taxed()
    html = render_html(doc)
    assert '<table class="tax">' in html and "Prices include tax." in html
    assert "No tax is itemised" not in html
    assert tax_cells(html) == [["reduced", "5.5%", "6.66", "0.37", "7.03"],
                               ["standard", "20%", "2.74", "0.55", "3.29"]]
    text = render_text(doc)
    assert "3 x Bread @ 1.99 = 5.97 (tax 5.5%)" in text
    assert "  reduced 5.5%: net 6.66, tax 0.37, gross 7.03" in text
    assert "  standard 20%: net 2.74, tax 0.55, gross 3.29" in text
    pdf = _pdf_text(render_pdf(doc))
    assert "Tax included in the prices" in pdf and "Prices include tax." in pdf
    assert "reduced 5.5% 6.66 0.37 7.03" in pdf and "standard 20% 2.74 0.55 3.29" in pdf


def test_receipt_without_tax_rates_says_no_tax_is_itemised() -> None:
    doc = _doc()
    assert doc.tax == ()
    assert "No tax is itemised on this receipt." in render_html(doc)
    assert "No tax is itemised on this receipt." in render_text(doc)
    assert "No tax is itemised on this receipt." in _pdf_text(render_pdf(doc))
    # a line without its rate (issued before its store had rates): nothing is itemised
    mixed = _doc(lines=(*_taxed().lines, ReceiptDocLine("p9", "Old", 1, Decimal("1.00"))))
    assert mixed.tax == () and "No tax is itemised" in render_html(mixed)


@pytest.mark.parametrize(("cls", "rate", "match"), [
    ("reduced", None, "a tax class and a tax rate go together"),
    (None, Decimal("0.2"), "a tax class and a tax rate go together"),
    ("standard", Decimal("1"), r"tax rate must be a Decimal fraction in \[0, 1\)"),
    ("standard", 0.2, "tax rate must be a Decimal"),
])
def test_bad_line_tax_is_refused(cls: str | None, rate: object, match: str) -> None:
    with pytest.raises(ReceiptError, match=match):
        ReceiptDocLine("p1", "Soap", 1, Decimal("1"), cls, rate)  # type: ignore[arg-type]


# ---- from the engine ----------------------------------------------------------------------------

def test_from_engine_receipt_uses_catalogue_names_and_prices() -> None:
    store = load_store("small")
    a, b = store.catalogue[0], store.catalogue[1]
    led = CartLedger()
    for e in (CartEntry("s00001", a.id, 2, 10.0, "e1", 1.0),
              CartEntry("s00001", b.id, 1, 11.0, "e2", 1.0)):
        led.append(e)
    book = SessionBook()
    book.scan(GateEvent(1_714_566_000.0, "entry", "entry", "qr-1"))
    session = book.sessions["s00001"]
    session.exited_at = 1_714_566_600.0
    receipt = build_receipt(session, led.entries("s00001"), store)

    doc = from_engine_receipt(receipt, store, email="ana@example.org")
    assert doc.receipt_id == "r-s00001" and doc.store_name == store.name
    assert doc.currency == store.currency == receipt.currency
    assert doc.issued_at == datetime.fromtimestamp(1_714_566_600, UTC)
    assert {(ln.product_id, ln.name, ln.quantity, ln.unit_price) for ln in doc.lines} == {
        (a.id, a.name, 2, a.price), (b.id, b.name, 1, b.price)}
    assert doc.total == receipt.total.quantize(Decimal("0.01"))
    assert from_engine_receipt(receipt, store, email="ana@example.org") == doc  # deterministic
    # the catalogue's tax classes come along, and both breakdowns agree
    assert {(ln.tax_class, ln.tax_rate) for ln in doc.lines} == {
        store.product_tax[a.id], store.product_tax[b.id]}
    assert doc.tax == receipt.tax


def test_from_engine_receipt_refuses_products_outside_the_catalogue() -> None:
    store = load_store("small")
    a = store.catalogue[0]
    led = CartLedger()
    led.append(CartEntry("s00001", a.id, 1, 1.0, "e1", 1.0))
    book = SessionBook()
    book.scan(GateEvent(0.0, "entry", "entry", "qr-1"))
    receipt = build_receipt(book.sessions["s00001"], led.entries("s00001"), store)
    data = store.model_dump()
    data["catalogue"] = [p for p in data["catalogue"] if p["id"] != a.id]
    data["planogram"] = [e for e in data["planogram"] if e["product"] != a.id]
    other = Store.model_validate(data)
    with pytest.raises(ReceiptError, match=f"{a.id!r} is not in the catalogue"):
        from_engine_receipt(receipt, other)


# ---- kiosk ------------------------------------------------------------------------------------

def _kiosk_docs() -> list[ReceiptDoc]:
    cet = timezone(timedelta(hours=2))
    return [
        _doc("r-old", email="Ana@Example.org", at=T0 - timedelta(days=3)),
        _doc("r-new", email="ana@example.org", at=T0),
        _doc("r-mid", email=" ANA@EXAMPLE.ORG ", at=datetime(2024, 5, 1, 13, 0, tzinfo=cet)),
        _doc("r-bob", email="bob@example.org", at=T0 + timedelta(hours=1)),
        _doc("r-anon", email=None, at=T0 + timedelta(hours=2)),
        _doc("r-lookalike", email="ana@example.org.evil", at=T0),
        _doc("r-prefix", email="xana@example.org", at=T0),
    ]


def test_kiosk_finds_own_receipts_case_insensitive_newest_first() -> None:
    found = find_receipts(_kiosk_docs(), "  ANA@example.ORG\n")
    # 13:00+02:00 is 11:00 UTC: between the 3-day-old one and 12:30 UTC
    assert [d.receipt_id for d in found] == ["r-new", "r-mid", "r-old"]


@pytest.mark.parametrize("query", ["", "   ", "@", "ana", "example.org", "@example.org", "ana@",
                                   "*", "ana@example", "bob@example.org "])
def test_kiosk_never_reveals_other_shoppers_receipts(query: str) -> None:
    found = find_receipts(_kiosk_docs(), query)
    if query.strip() == "bob@example.org":
        assert [d.receipt_id for d in found] == ["r-bob"]
    else:
        assert found == []


def test_a_brace_in_the_public_url_does_not_break_the_contest_link() -> None:
    """The setting allows any path; a ``{`` in it raised in every receipt e-mail's render."""
    url = public_contest_url("https://shop.example/{store}")
    assert url is not None
    assert contest_link(_doc(), "p1", url) == (
        "https://shop.example/{store}/receipts/r-1/disputes/new?product_id=p1")
