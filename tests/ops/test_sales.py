"""The operator's sales figures (``GET /v1/ops/sales``): visits, conversion, baskets and money
per day of the store, in its own time zone (the `small` store is in Europe/Paris), through the
real service on SQLite. The visits straddle midnight and the night the clocks go forward
(2026-03-29, 02:00 CET → 03:00 CEST)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from walkout.bench.durability import fresh_databases
from walkout.service.clock import ManualClock
from walkout.service.db import make_engine, upgrade
from walkout.service.testing import Svc, make_svc

BAR, WATER = "018627032007", "073360771026"  # 9.19 and 7.59 EUR in the `small` store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Svc]:
    server = None
    if request.param == "postgres":
        server = os.environ.get("WALKOUT_TEST_PG_URL")
        if not server:
            pytest.fail("WALKOUT_TEST_PG_URL is not set: scripts/test.sh starts PostgreSQL and "
                        'sets it (or deselect with -m "not postgres")', pytrace=False)
    with fresh_databases(server, tmp_path, names=("sales",)) as (url,):
        db = make_engine(url)
        upgrade(db)
        s = make_svc(db, ManualClock(datetime(2026, 3, 28, 21, 0, tzinfo=UTC)))
        with s.client:
            yield s
        db.dispose()


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
                   "net": "25.97", "in_review": 0, "disputes": 0,
                   "visit_minutes_median": 10.0}
    assert d29 == {"date": "2026-03-29", "visits": 2, "shoppers": 2, "buyers": 1,
                   "conversion": 0.5, "items": 1, "receipts_total": "7.59",
                   "avg_basket": "7.59", "captured": "7.59", "refunded": "0.00",
                   "net": "7.59", "in_review": 0, "disputes": 0,
                   "visit_minutes_median": 9.5}
    assert d30 == {"date": "2026-03-30", "visits": 0, "shoppers": 0, "buyers": 0,
                   "conversion": None, "items": 0, "receipts_total": "0.00",
                   "avg_basket": None, "captured": "0.00", "refunded": "7.59",
                   "net": "-7.59", "in_review": 0, "disputes": 1,
                   "visit_minutes_median": None}
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
