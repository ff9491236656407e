"""Tax on receipts through the service, on SQLite and PostgreSQL: each line's tax class and
rate are snapshotted when the receipt is issued, shown in every JSON a receipt is served as
(shopper, kiosk, export, operators), kept as issued when the catalogue changes, and the
breakdown is recomputed when a review verdict revises the receipt (and e-mailed so)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import yaml
from pypdf import PdfReader
from sqlalchemy import Engine, update

from walkout.service import revisions
from walkout.service.checkout import LineRequest
from walkout.service.models import ReceiptLine
from walkout.service.testing import Svc, make_svc
from walkout.store.loader import resolve_store_path

# in the shipped `small` store: a trail-mix bar 9.19 and sparkling water 7.59 (food and
# drink: reduced, 5.5 %), washing-up liquid 3.29 (standard, 20 %)
BAR, WATER, SOAP = "018627032007", "073360771026", "037000172208"


def _row(tax_class: str, rate: str, gross: str, net: str, tax: str) -> dict[str, str]:
    return {"tax_class": tax_class, "rate": rate, "gross": gross, "net": net, "tax": tax}


def _verdict(svc: Svc, vid: str, product: str, quantity: int) -> None:
    """A review verdict after the receipt: its correcting line, then the revision."""
    revisions.add_review_lines(svc.deps, vid, [LineRequest(
        f"ev-review:{product}:{quantity:+d}:review", product, quantity, "ev-review")])
    revisions.revise(svc.deps, vid, needs_review=False)


def test_every_receipt_json_itemises_the_tax_per_rate(svc: Svc) -> None:
    c = svc.client
    ann = svc.shopper(email="ann@example.org")
    out = svc.leave(svc.enter(ann), {BAR: 2, WATER: 1, SOAP: 1})
    rid = out["receipt_id"]
    # prices include the tax: the total is what the lines say, and what was charged
    assert out["total"] == {"amount": "29.26", "currency": "EUR"} == out["charged"]
    # 25.97 × 0.055 / 1.055 = 1.3539 → 1.35; 3.29 × 0.2 / 1.2 = 0.5483 → 0.55
    tax = [_row("reduced", "0.055", "25.97", "24.62", "1.35"),
           _row("standard", "0.2", "3.29", "2.74", "0.55")]
    rec = c.get(f"/v1/receipts/{rid}", headers=ann).json()
    assert rec["total"] == "29.26" and rec["tax"] == tax
    assert {ln["product_id"]: (ln["tax_class"], ln["tax_rate"]) for ln in rec["lines"]} == {
        BAR: ("reduced", "0.055"), WATER: ("reduced", "0.055"), SOAP: ("standard", "0.2")}
    assert c.get("/v1/receipts", headers=ann).json()[0]["tax"] == tax
    kiosk = svc.staff("kiosk")
    [found] = c.post("/v1/kiosk/receipts", json={"email": "ann@example.org"},
                     headers=kiosk).json()
    assert found["tax"] == tax
    [exported] = c.get("/v1/me/export", headers=ann).json()["receipts"]
    assert exported["tax"] == tax and exported["lines"][0]["tax_rate"] == "0.055"
    ops = c.get(f"/v1/ops/receipts/{rid}", headers=svc.gate).json()
    assert ops["tax"] == tax and ops["lines"][0]["tax_class"] == "reduced"
    html = c.get(f"/v1/receipts/{rid}.html", headers=ann).text
    assert '<table class="tax">' in html and "24.62" in html and "1.35" in html
    pdf = PdfReader(io.BytesIO(c.get(f"/v1/receipts/{rid}.pdf", headers=ann).content))
    assert "reduced 5.5% 24.62 1.35 25.97" in pdf.pages[0].extract_text()


def _changed_store(tmp_path: Path) -> str:
    """The `small` store after a tax change: the bar moved to the standard class and the
    reduced rate raised to 7 %."""
    d = yaml.safe_load(resolve_store_path("small").read_text())
    d["tax_rates"]["reduced"] = "0.07"
    next(p for p in d["catalogue"] if p["id"] == BAR)["tax"] = "standard"
    path = tmp_path / "small-2027.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return str(path)


def test_a_catalogue_change_never_rewrites_an_issued_receipt(engine: Engine,
                                                             tmp_path: Path) -> None:
    before = make_svc(engine)
    with before.client:
        ann = before.shopper()
        vid = before.enter(ann)
        rid = before.leave(vid, {BAR: 2, SOAP: 1})["receipt_id"]
        issued = before.client.get(f"/v1/receipts/{rid}", headers=ann).json()
        html = before.client.get(f"/v1/receipts/{rid}.html", headers=ann).text
    assert issued["tax"] == [_row("reduced", "0.055", "18.38", "17.42", "0.96"),
                             _row("standard", "0.2", "3.29", "2.74", "0.55")]

    after = make_svc(engine, store=_changed_store(tmp_path))  # the store restarted, new rates
    with after.client:
        assert after.deps.store.product_tax[BAR][0] == "standard"
        assert after.client.get(f"/v1/receipts/{rid}", headers=ann).json() == issued
        assert after.client.get(f"/v1/receipts/{rid}.html", headers=ann).text == html

        # a verdict: one bar was not taken, a water was. The bar's line keeps the rate it was
        # issued with; the water, new to the receipt, takes today's; the breakdown is redone
        _verdict(after, vid, BAR, -1)
        _verdict(after, vid, WATER, 1)
        revised = after.client.get(f"/v1/receipts/{rid}", headers=ann).json()
    assert revised["total"] == "20.07"
    assert {ln["product_id"]: (ln["tax_class"], ln["tax_rate"]) for ln in revised["lines"]} == {
        BAR: ("reduced", "0.055"), SOAP: ("standard", "0.2"), WATER: ("reduced", "0.07")}
    # 9.19 × 0.055 / 1.055 = 0.4791 → 0.48; 7.59 × 0.07 / 1.07 = 0.4965 → 0.50
    assert revised["tax"] == [_row("reduced", "0.055", "9.19", "8.71", "0.48"),
                              _row("reduced", "0.07", "7.59", "7.09", "0.50"),
                              _row("standard", "0.2", "3.29", "2.74", "0.55")]


def test_a_receipt_issued_before_tax_was_kept_itemises_none(svc: Svc) -> None:
    """Lines without a snapshot (issued before migration 0006) say so, whatever the store's
    rates are now."""
    ann = svc.shopper()
    rid = svc.leave(svc.enter(ann), {BAR: 1})["receipt_id"]
    with svc.deps.sessions.begin() as s:
        s.execute(update(ReceiptLine).where(ReceiptLine.receipt_id == rid)
                  .values(tax_class=None, tax_rate=None))
    rec = svc.client.get(f"/v1/receipts/{rid}", headers=ann).json()
    assert rec["tax"] == [] and rec["lines"][0]["tax_class"] is None and rec["total"] == "9.19"
    assert "No tax is itemised" in svc.client.get(f"/v1/receipts/{rid}.html", headers=ann).text


def test_the_revision_email_carries_the_recomputed_breakdown(mailed: tuple[Svc, Any]) -> None:
    svc, inbox = mailed
    vid = svc.enter(svc.shopper(email="ann@example.org"))
    svc.leave(vid, {BAR: 2, SOAP: 1})
    first = inbox.messages[0].get_body(preferencelist=("plain",)).get_content()
    assert "reduced 5.5%: net 17.42, tax 0.96, gross 18.38" in first
    _verdict(svc, vid, BAR, -1)
    revised = inbox.messages[1].get_body(preferencelist=("plain",)).get_content()
    assert "reduced 5.5%: net 8.71, tax 0.48, gross 9.19" in revised
    assert "standard 20%: net 2.74, tax 0.55, gross 3.29" in revised
