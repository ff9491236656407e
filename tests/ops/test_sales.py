"""The operator's sales figures (``GET /v1/ops/sales``): visits, conversion, baskets and money
per day of the store, in its own time zone (the `small` store is in Europe/Paris), through the
real service on SQLite and PostgreSQL. The visits straddle midnight and the night the clocks go
forward (2026-03-29, 02:00 CET → 03:00 CEST)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from walkout.bench.durability import fresh_databases
from walkout.service.clock import ManualClock
from walkout.service.db import make_engine, session_factory, upgrade
from walkout.service.models import Charge, Visit
from walkout.service.payments.ledger import LedgerProvider
from walkout.service.testing import STRIPE_WEBHOOK_SECRET, Svc, make_svc

BAR, WATER = "018627032007", "073360771026"  # 9.19 and 7.59 EUR in the `small` store


@contextmanager
def _service(param: str, tmp_path: Path, stripe: bool = False) -> Iterator[Svc]:
    """The service on a fresh database of kind ``param``; ``stripe``: a Stripe store's
    settings (its webhook mounted, taking events signed with the test secret) with the
    built-in ledger moving the money, as there is no network here."""
    server = None
    if param == "postgres":
        server = os.environ.get("WALKOUT_TEST_PG_URL")
        if not server:
            pytest.fail("WALKOUT_TEST_PG_URL is not set: scripts/test.sh starts PostgreSQL and "
                        'sets it (or deselect with -m "not postgres")', pytrace=False)
    with fresh_databases(server, tmp_path, names=("sales",)) as (url,):
        db = make_engine(url)
        upgrade(db)
        clock = ManualClock(datetime(2026, 3, 28, 21, 0, tzinfo=UTC))
        kw: dict[str, Any] = {}
        if stripe:
            kw = {"payment_provider": "stripe",
                  "provider": LedgerProvider(session_factory(db), clock)}
        s = make_svc(db, clock, **kw)
        with s.client:
            yield s
        db.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Svc]:
    with _service(request.param, tmp_path) as s:
        yield s


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stripe_svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Svc]:
    with _service(request.param, tmp_path, stripe=True) as s:
        yield s


def _at(svc: Svc, when: datetime) -> None:
    svc.clock.advance((when - svc.clock.now()).total_seconds())


def _visit(svc: Svc, email: str, enter: datetime, leave: datetime,
           items: dict[str, int]) -> dict[str, object]:
    h = svc.shopper(card=f"tok_visa_{email[:3]}", email=email)
    _at(svc, enter)
    vid = svc.enter(h)
    _at(svc, leave)
    out = svc.leave(vid, items)
    out["h"] = h
    return out


def test_days_are_the_stores_and_money_counts_on_the_day_it_moved(svc: Svc) -> None:
    utc = UTC
    ann = _visit(svc, "ann@example.org", datetime(2026, 3, 28, 21, 0, tzinfo=utc),
                 datetime(2026, 3, 28, 21, 10, tzinfo=utc), {BAR: 2, WATER: 1})
    # 23:20 UTC on the 28th is 00:20 in Paris on the 29th: the 29th's visit, not the 28th's
    _visit(svc, "bob@example.org", datetime(2026, 3, 28, 23, 20, tzinfo=utc),
           datetime(2026, 3, 28, 23, 35, tzinfo=utc), {})
    # 01:30 UTC on the 29th is 03:30 summer time (02:30 without the clock change)
    cat = _visit(svc, "cat@example.org", datetime(2026, 3, 29, 1, 30, tzinfo=utc),
                 datetime(2026, 3, 29, 1, 34, tzinfo=utc), {WATER: 1})
    assert ann["state"] == "charged" and cat["state"] == "charged"
    # the 30th: Cat contests the water and is refunded: the 30th's money, not the 29th's
    _at(svc, datetime(2026, 3, 30, 7, 0, tzinfo=utc))
    r = svc.client.post("/v1/disputes", json={"receipt_id": cat["receipt_id"],
                                              "product_id": WATER, "quantity": 1,
                                              "reason": "I put it back"}, headers=cat["h"])
    assert r.status_code == 201, r.text
    r = svc.client.post(f"/v1/disputes/{r.json()['dispute_id']}/decision",
                        json={"decision": "refund"}, headers=svc.gate)
    assert r.status_code == 200 and r.json()["refund"]["amount"] == "7.59", r.text

    rep = svc.client.get("/v1/ops/sales?days=3", headers=svc.gate).json()
    assert (rep["timezone"], rep["currency"], rep["first"], rep["last"]) == (
        "Europe/Paris", "EUR", "2026-03-28", "2026-03-30")  # today is the 30th in Paris
    d28, d29, d30 = rep["days"]
    assert d28 == {"date": "2026-03-28", "visits": 1, "shoppers": 1, "buyers": 1,
                   "conversion": 1.0, "items": 3, "receipts_total": "25.97",
                   "avg_basket": "25.97", "captured": "25.97", "refunded": "0.00",
                   "net": "25.97", "in_review": 0, "disputes": 0, "chargebacks": 0,
                   "chargebacks_at_risk": "0.00", "chargebacks_lost": "0.00",
                   "chargeback_fees": "0.00",
                   "net_after_chargebacks": "25.97", "visit_minutes_median": 10.0}
    assert d29 == {"date": "2026-03-29", "visits": 2, "shoppers": 2, "buyers": 1,
                   "conversion": 0.5, "items": 1, "receipts_total": "7.59",
                   "avg_basket": "7.59", "captured": "7.59", "refunded": "0.00",
                   "net": "7.59", "in_review": 0, "disputes": 0, "chargebacks": 0,
                   "chargebacks_at_risk": "0.00", "chargebacks_lost": "0.00",
                   "chargeback_fees": "0.00",
                   "net_after_chargebacks": "7.59", "visit_minutes_median": 9.5}
    assert d30 == {"date": "2026-03-30", "visits": 0, "shoppers": 0, "buyers": 0,
                   "conversion": None, "items": 0, "receipts_total": "0.00",
                   "avg_basket": None, "captured": "0.00", "refunded": "7.59",
                   "net": "-7.59", "in_review": 0, "disputes": 1, "chargebacks": 0,
                   "chargebacks_at_risk": "0.00", "chargebacks_lost": "0.00",
                   "chargeback_fees": "0.00",
                   "net_after_chargebacks": "-7.59", "visit_minutes_median": None}
    tot = rep["totals"]
    assert (tot["visits"], tot["buyers"], tot["conversion"], tot["items"]) == (3, 2, 0.6667, 4)
    assert (tot["receipts_total"], tot["captured"], tot["refunded"], tot["net"]) == (
        "33.56", "33.56", "7.59", "25.97")
    assert tot["avg_basket"] == "16.78" and tot["visit_minutes_median"] == 10.0
    hours = rep["entries_by_hour"]
    assert len(hours) == 24 and sum(hours) == 3
    assert hours[22] == hours[0] == hours[3] == 1  # local hours: 22:00, 00:20, 03:30 CEST
    assert rep["top_products"] == [
        {"product_id": BAR, "name": rep["top_products"][0]["name"], "quantity": 2,
         "amount": "18.38"},
        {"product_id": WATER, "name": rep["top_products"][1]["name"], "quantity": 2,
         "amount": "15.18"}]
    # a period given by its last day; one day only
    one = svc.client.get("/v1/ops/sales?days=1&until=2026-03-28", headers=svc.gate).json()
    assert [d["date"] for d in one["days"]] == ["2026-03-28"] and one["totals"]["visits"] == 1


def test_bad_periods_and_shoppers_are_refused(svc: Svc) -> None:
    h = svc.shopper()
    assert svc.client.get("/v1/ops/sales", headers=h).status_code == 403
    for q in ("days=0", "days=400", "until=2026-02-30", "until=yesterday"):
        r = svc.client.get(f"/v1/ops/sales?{q}", headers=svc.gate)
        assert r.status_code == 422, (q, r.text)


# ---- bank chargebacks ---------------------------------------------------------------------------

def _chargeback(svc: Svc, visit_id: str, dispute: str, status: str, *, event: str,
                created: datetime, opened: datetime, kind: str = "updated") -> dict[str, Any]:
    """Stripe's ``charge.dispute.<kind>`` event about the visit's payment, signed with the
    store's webhook secret and delivered to its webhook: its answer."""
    with svc.deps.sessions() as s:
        v = s.get(Visit, visit_id)
        cap = s.scalar(select(Charge).where(Charge.visit_id == visit_id,
                                            Charge.kind == "capture"))
        assert v is not None and v.auth_id and cap is not None
        intent, charge, amount = v.auth_id, cap.provider_ref, int(cap.amount * 100)
    body = json.dumps({
        "id": event, "object": "event", "api_version": "2026-10-28.endive",
        "created": int(created.timestamp()), "livemode": False,
        "type": f"charge.dispute.{kind}",
        "data": {"object": {
            "id": dispute, "object": "dispute", "amount": amount, "charge": charge,
            "payment_intent": intent, "created": int(opened.timestamp()), "currency": "eur",
            "evidence_details": {"due_by": int(opened.timestamp()) + 9 * 86400},
            "reason": "fraudulent", "status": status}}})
    t = int(time.time())
    mac = hmac.new(STRIPE_WEBHOOK_SECRET.encode(), f"{t}.{body}".encode(),
                   hashlib.sha256).hexdigest()
    r = svc.client.post("/v1/webhooks/stripe", content=body.encode(),
                        headers={"Content-Type": "application/json",
                                 "Stripe-Signature": f"t={t},v1={mac}"})
    assert r.status_code == 200 and r.json()["outcome"] != "ignored", r.text
    return dict(r.json())


def test_chargebacks_count_on_the_days_the_bank_opened_and_decided_them(
        stripe_svc: Svc) -> None:
    """Chargebacks are opened on the store's day the bank opened them; their money is lost
    on the day the bank decided against the store, and only then leaves the net; undecided,
    it is at risk. A chargeback won, and a bank's inquiry, take nothing."""
    svc, utc = stripe_svc, UTC
    ann = _visit(svc, "ann@example.org", datetime(2026, 3, 28, 21, 0, tzinfo=utc),
                 datetime(2026, 3, 28, 21, 10, tzinfo=utc), {BAR: 2, WATER: 1})  # 25.97
    cat = _visit(svc, "cat@example.org", datetime(2026, 3, 29, 8, 0, tzinfo=utc),
                 datetime(2026, 3, 29, 8, 5, tzinfo=utc), {WATER: 1})  # 7.59
    dan = _visit(svc, "dan@example.org", datetime(2026, 3, 29, 9, 0, tzinfo=utc),
                 datetime(2026, 3, 29, 9, 5, tzinfo=utc), {BAR: 1})  # 9.19
    eve = _visit(svc, "eve@example.org", datetime(2026, 3, 29, 10, 0, tzinfo=utc),
                 datetime(2026, 3, 29, 10, 5, tzinfo=utc), {BAR: 1})  # 9.19
    # Ann's: opened 22:30 UTC on the 29th, 00:30 on the 30th in Paris; lost at 21:30 UTC
    # on the 31st (23:30 in Paris, still the 31st)
    ann_opened = datetime(2026, 3, 29, 22, 30, tzinfo=utc)
    _chargeback(svc, str(ann["visit_id"]), "dp_ann", "needs_response", event="evt_ann1",
                created=ann_opened, opened=ann_opened, kind="created")
    _chargeback(svc, str(ann["visit_id"]), "dp_ann", "lost", event="evt_ann2",
                created=datetime(2026, 3, 31, 21, 30, tzinfo=utc), opened=ann_opened,
                kind="closed")
    # Cat's: opened on the 30th, evidence sent, the bank still deciding
    cat_opened = datetime(2026, 3, 30, 10, 0, tzinfo=utc)
    _chargeback(svc, str(cat["visit_id"]), "dp_cat", "needs_response", event="evt_cat1",
                created=cat_opened, opened=cat_opened, kind="created")
    _chargeback(svc, str(cat["visit_id"]), "dp_cat", "under_review", event="evt_cat2",
                created=datetime(2026, 3, 31, 9, 0, tzinfo=utc), opened=cat_opened)
    # Dan's: opened on the 30th, won on the 31st
    dan_opened = datetime(2026, 3, 30, 11, 0, tzinfo=utc)
    _chargeback(svc, str(dan["visit_id"]), "dp_dan", "needs_response", event="evt_dan1",
                created=dan_opened, opened=dan_opened, kind="created")
    _chargeback(svc, str(dan["visit_id"]), "dp_dan", "won", event="evt_dan2",
                created=datetime(2026, 3, 31, 10, 0, tzinfo=utc), opened=dan_opened,
                kind="closed")
    # Eve's bank only asks (an inquiry): no money moves, no chargeback
    eve_asked = datetime(2026, 3, 30, 12, 0, tzinfo=utc)
    _chargeback(svc, str(eve["visit_id"]), "dp_eve", "warning_needs_response",
                event="evt_eve1", created=eve_asked, opened=eve_asked, kind="created")

    rep = svc.client.get("/v1/ops/sales?days=4&until=2026-03-31", headers=svc.gate).json()
    keys = ("captured", "refunded", "net", "chargebacks", "chargebacks_at_risk",
            "chargebacks_lost", "net_after_chargebacks")
    got = {d["date"]: tuple(d[k] for k in keys) for d in rep["days"]}
    assert got == {
        "2026-03-28": ("25.97", "0.00", "25.97", 0, "0.00", "0.00", "25.97"),
        "2026-03-29": ("25.97", "0.00", "25.97", 0, "0.00", "0.00", "25.97"),
        "2026-03-30": ("0.00", "0.00", "0.00", 3, "7.59", "0.00", "0.00"),
        "2026-03-31": ("0.00", "0.00", "0.00", 0, "0.00", "25.97", "-25.97")}
    assert tuple(rep["totals"][k] for k in keys) == (
        "51.94", "0.00", "51.94", 3, "7.59", "25.97", "25.97")
    # what shoppers did is not what the banks did: the baskets stay where they happened
    assert rep["totals"]["receipts_total"] == "51.94" and rep["totals"]["buyers"] == 4
    # a period that ends before Ann's was lost: opened there, lost after it (and at risk no
    # more: the bank has decided since)
    before = svc.client.get("/v1/ops/sales?days=3&until=2026-03-30", headers=svc.gate).json()
    assert tuple(before["totals"][k] for k in keys[3:]) == (3, "7.59", "0.00", "51.94")
