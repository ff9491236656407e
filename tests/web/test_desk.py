"""The operations desk and the shopper's phone when things are not tidy, in Debian's Chromium
against the real service: a browser in another time zone than the server, receipts of other
days, a connection that drops and comes back (through a relay the test can cut, as a Wi-Fi
hand-over or a proxy restart does), a request the service refuses or cannot answer, alerts
raised while nobody had the dashboard open, a decided review case, and a second click on a
money button.

The store is seeded through the API on SQLite (no engine), as in test_security: SQLite hands
back naive datetimes, which is where a page in another time zone went wrong."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import update
from tests.web.conftest import (
    RelayedShop,
    relayed_shop,
    sqlite_db,
    staff_token,
)

from walkout.service.models import EngineEvent, Receipt, Visit
from walkout.web import routes as web_routes

ADMIN = "wo_web-desk-admin-0123456789abcdef"
TOKYO = "Asia/Tokyo"  # UTC+9 all year: no daylight saving to reason about
Watch = Callable[[Page], list[str]]


@dataclass
class Shop(RelayedShop):
    def owes(self, vid: str, amount: str) -> None:
        """Record ``amount`` of the visit as owed, as an exit does when the card paid less."""
        with self.deps.sessions.begin() as s:
            v = s.get(Visit, vid)
            assert v is not None
            v.balance_owed, v.state = Decimal(amount), "in_review"


db_url = sqlite_db("webdesk")


@pytest.fixture(scope="module")
def shop(db_url: str) -> Iterator[Shop]:
    with relayed_shop(db_url, ADMIN, Shop) as shop:
        yield shop


def _dashboard(browser: Browser, shop: Shop, **ctx: Any) -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}, **ctx).new_page()
    page.goto(f"{shop.page_url}/#token={shop.operator}")
    expect(page.locator("#conn")).to_have_text("live")
    return page


def _receipts_tab(page: Page) -> None:
    page.get_by_role("tab", name=re.compile(r"^Receipts & disputes")).click()


# ---- time zones --------------------------------------------------------------------------------


def test_times_are_shown_in_the_browsers_zone_with_the_day_when_not_today(
        shop: Shop, browser: Browser) -> None:
    """The server keeps UTC; SQLite hands it back without its zone, and a page that parsed
    such a time as the browser's own local time put a receipt, a balance owed and the
    shopper's unpaid visit nine hours off in Tokyo. A receipt of another day also said only
    its time of day: which day, the operator could not tell."""
    vid, today = shop.visit("tz-ann")
    _, older = shop.visit("tz-bo")
    shop.owes(vid, "3.20")
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    with shop.deps.sessions.begin() as s:
        s.execute(update(Receipt).where(Receipt.id == older).values(issued_at=three_days_ago))
        issued = s.get(Receipt, today).issued_at  # type: ignore[union-attr]
        exited = s.get(Visit, vid).exited_at  # type: ignore[union-attr]
    zone = ZoneInfo(TOKYO)

    def local(dt: datetime) -> datetime:
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(zone)

    page = _dashboard(browser, shop, timezone_id=TOKYO, locale="en-GB")
    _receipts_tab(page)
    row = page.locator(f"#receipts button[data-receipt='{today}']")
    expect(row).to_contain_text(local(issued).strftime("%H:%M"))
    old = page.locator(f"#receipts button[data-receipt='{older}']")
    expect(old).to_contain_text(local(three_days_ago).strftime("%d/%m/%Y"))
    expect(old).to_contain_text(local(three_days_ago).strftime("%H:%M"))
    owed = page.locator(f"#owed-balances li[data-visit='{vid}']")
    expect(owed).to_contain_text(f"left {local(exited).strftime('%H:%M')}")
    page.context.close()
    # her phone, in Tokyo: the unpaid visit's time is hers
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, timezone_id=TOKYO,
                              locale="en-GB")
    app = ctx.new_page()
    app.goto(shop.page_url + "/app")
    app.evaluate("t => localStorage.setItem('wo-shopper', t)", shop.tokens["tz-ann"])
    app.reload()
    item = app.locator(f"#owed li[data-visit='{vid}']")
    expect(item).to_contain_text(local(exited).strftime("%H:%M"))
    ctx.close()
    shop.api("POST", f"/v1/ops/visits/{vid}/balance/write-off", shop.operator)


# ---- a connection that drops ------------------------------------------------------------------


def test_a_dashboard_cut_off_says_so_and_catches_up_once_back(shop: Shop,
                                                             browser: Browser) -> None:
    """The network between the desk and the service goes (the service runs on): the page says
    it is offline, a receipt clicked meanwhile says why it does not open instead of doing
    nothing, and once the network is back the page shows what changed while it was cut off
    (a shopper's new dispute): the stream's ``changed`` after a reconnection compares with
    nothing, so it never came for what happened in the gap."""
    _, receipt = shop.visit("drop-cy")
    page = _dashboard(browser, shop)
    _receipts_tab(page)
    row = page.locator(f"#receipts button[data-receipt='{receipt}']")
    expect(row).to_be_visible()
    shop.relay.down()
    try:
        expect(page.locator("#conn")).to_have_text("offline", timeout=10_000)
        row.click()
        expect(page.locator("#problem")).to_contain_text("cannot be reached")
        expect(page.locator("#receipt h2")).to_have_count(0)  # nothing opened, nothing stale
        dispute = shop.api("POST", "/v1/disputes", shop.tokens["drop-cy"], json={
            "receipt_id": receipt, "product_id": shop.products[0], "reason": "not mine"})
        assert dispute.status_code == 201, dispute.text
    finally:
        shop.relay.up()
    expect(page.locator("#conn")).to_have_text("live", timeout=10_000)
    expect(page.locator(f"#disputes li[data-dispute='{dispute.json()['dispute_id']}']")
           ).to_be_visible(timeout=10_000)
    row.click()
    expect(page.locator("#receipt h2")).to_have_text(f"Receipt {receipt[:8]}")
    expect(page.locator("#problem")).to_be_hidden()  # said while it lasted
    page.context.close()


def test_a_dispute_decided_at_another_desk_shows_decided_at_once(shop: Shop,
                                                                 browser: Browser) -> None:
    """Two operators: one has the dispute list open, the other decides the dispute (through
    the API, as another desk's click does). The stream's ``changed`` marker counted disputes
    but not their states, so a decision (no new row) did not refresh the open list: it kept
    offering an open dispute somebody had already rejected."""
    _, receipt = shop.visit("desk-dot")
    dispute = shop.api("POST", "/v1/disputes", shop.tokens["desk-dot"], json={
        "receipt_id": receipt, "product_id": shop.products[0], "reason": "not mine"})
    assert dispute.status_code == 201, dispute.text
    did = dispute.json()["dispute_id"]
    other = staff_token(shop.url, ADMIN, "operator", "Desk Two")
    page = _dashboard(browser, shop)
    _receipts_tab(page)
    state = page.locator(f"#disputes li[data-dispute='{did}'] [data-state]")
    expect(state).to_have_attribute("data-state", "open")
    r = shop.api("POST", f"/v1/disputes/{did}/decision", other,
                 json={"decision": "reject", "note": "seen on the shelf camera"})
    assert r.status_code == 200, r.text
    expect(state).to_have_attribute("data-state", "rejected", timeout=5_000)
    page.context.close()


# ---- alerts raised while nobody watched ------------------------------------------------------


def test_alerts_nobody_acknowledged_are_listed_when_the_dashboard_opens(
        shop: Shop, browser: Browser) -> None:
    """The event stream starts 30 s of store time back: an alert raised earlier, while no
    dashboard was open (overnight, before the shift), was nowhere on the page, nor that it
    waited for someone. It is listed with its Acknowledge button, counted on the Live store
    tab, and leaves the count once acknowledged; an acknowledged one is not brought back."""
    run = "sim:desk-alerts"
    now = datetime.now(UTC)
    with shop.deps.sessions.begin() as s:
        def add(sub: str, seq: int, kind: str, t: float, payload: dict[str, Any]) -> EngineEvent:
            ev = EngineEvent(source=f"{run}/{sub}", seq=seq, kind=kind, t=t, recorded_at=now,
                             payload=json.dumps(payload), ref=None)
            s.add(ev)
            return ev
        waiting = add("alerts", 0, "left_unbound", 100.0, {
            "t": 100.0, "kind": "left_unbound", "subject": "track:7",
            "message": "track 7 left with goods and no session"})
        done = add("alerts", 1, "left_unbound", 110.0, {
            "t": 110.0, "kind": "left_unbound", "subject": "track:8",
            "message": "track 8 left with goods and no session"})
        add("live", 0, "positions", 600.0, {"t0": 595.0, "t1": 600.0, "people": []})
        s.flush()
        waiting_id, done_id = waiting.id, done.id
    assert shop.api("POST", f"/v1/ops/alerts/{done_id}/ack", shop.operator).status_code == 200
    page = _dashboard(browser, shop)
    item = page.locator(f"#events li[data-alert='{waiting_id}']")
    expect(item).to_contain_text("track 7 left with goods")
    expect(page.locator(f"#events li[data-alert='{done_id}']")).to_have_count(0)
    count = page.locator("#alert-count")
    expect(count).to_be_visible()
    expect(count).to_contain_text("1")
    page.get_by_role("tab", name=re.compile("Review queue")).click()  # still counted elsewhere
    expect(count).to_be_visible()
    page.get_by_role("tab", name=re.compile("Live store")).click()
    item.get_by_role("button", name="Acknowledge this alert").click()
    expect(item).to_contain_text("acknowledged by Desk One")
    expect(count).to_be_hidden()
    unacked = shop.api("GET", "/v1/ops/alerts?unacked=true", shop.operator).json()
    assert waiting_id not in [a["id"] for a in unacked]
    page.context.close()


# ---- a decided review case -------------------------------------------------------------------


def test_a_decided_case_says_who_decided_it_when_and_why(shop: Shop, browser: Browser) -> None:
    """The reviewer writes why (the form sent a fixed "decided in the dashboard"), and the
    decided case shows who decided it, when, and that note: what the next operator, or a
    dispute about the same pick, needs to know."""
    shop.log_case("desk-case-1", "sim:desk-review/evidence")
    p0 = shop.products[0]
    page = _dashboard(browser, shop, timezone_id=TOKYO, locale="en-GB")
    page.get_by_role("tab", name=re.compile("Review queue")).click()
    page.locator("#cases button[data-case='desk-case-1']").click()
    page.get_by_label("Note (why)").fill("<b>clip 2</b> shows s2's hand on the shelf")
    page.locator("#case input[name=who][value=s2]").check()
    page.get_by_role("button", name="Charge the chosen shopper").click()
    verdict = page.locator("#case .verdict")
    expect(verdict).to_contain_text("decided by Desk One")
    expect(verdict).to_contain_text("“<b>clip 2</b> shows s2's hand on the shelf”")
    decided = shop.api("GET", "/v1/ops/reviews/desk-case-1", shop.operator).json()["verdict"]
    assert decided["note"] == "<b>clip 2</b> shows s2's hand on the shelf"
    assert decided["shares"] == {"s2": [[p0, 1]]}
    at = datetime.fromisoformat(decided["decided_at"]).astimezone(ZoneInfo(TOKYO))
    expect(verdict).to_contain_text(at.strftime("%H:%M"))
    page.reload()  # as another operator finds it later
    page.get_by_role("tab", name=re.compile("Review queue")).click()
    page.locator("#cases button[data-case='desk-case-1']").click()
    expect(page.locator("#case .verdict")).to_contain_text("decided by Desk One")
    page.context.close()


def test_a_stream_that_goes_quiet_is_taken_for_dropped(
        shop: Shop, browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection can die without a close (a laptop asleep, a NAT entry dropped): the page
    kept saying *live* over a stream that carried nothing, for as long as it stayed open. The
    service sends a keep-alive at least every ``KEEPALIVE_S`` and says so; three of them
    missed, the page calls it offline, drops the stream and reconnects."""
    monkeypatch.setattr(web_routes, "KEEPALIVE_S", 1.0)  # the page waits 3 s, not 45
    page = _dashboard(browser, shop)
    shop.relay.stall()
    try:
        expect(page.locator("#conn")).to_have_text("offline", timeout=10_000)
    finally:
        shop.relay.up()
    expect(page.locator("#conn")).to_have_text("live", timeout=10_000)
    page.context.close()


# ---- nothing found, and more than the page lists -------------------------------------------


def test_the_receipt_list_says_when_nothing_matches_and_when_it_is_cut(
        shop: Shop, browser: Browser) -> None:
    """A search that finds nothing left an empty list (did it search at all?), and the list
    showed the newest 50 receipts as if they were all of them."""
    have = len(shop.api("GET", "/v1/ops/receipts?limit=60", shop.operator).json())
    for i in range(max(0, 51 - have)):  # letters: a card token with digits is refused
        shop.visit(f"many-{chr(97 + i // 26)}{chr(97 + i % 26)}", shop.products[:1])
    page = _dashboard(browser, shop)
    _receipts_tab(page)
    listed = page.locator("#receipts li")
    expect(page.locator("#receipts button[data-receipt]")).to_have_count(50)
    expect(listed.last).to_contain_text("only the newest 50")
    page.locator("#rq").fill("nobody@example.org")
    page.get_by_role("button", name="Search").click()
    expect(listed).to_have_count(1)
    expect(listed).to_have_text("No receipt matches “nobody@example.org”.")
    page.context.close()
