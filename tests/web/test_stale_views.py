"""The dashboard's detail panes (the open receipt, the open review case) kept current, in
Debian's Chromium against the real service: two desks, or the API, change what one desk has
open. The stream's ``changed`` reloaded the lists but not the pane on screen, so the operator
kept looking at a receipt another desk had refunded or a dispute another desk had decided,
and acting on it got the service's 409 as a bare error. Now the pane is fetched again on
``changed`` and on the catch-up after a drop, redrawn keeping what the operator typed, the
focus and the scroll, with a marker saying what changed; a refused action says why and shows
the current state; a case purged meanwhile says it no longer exists.

The store is seeded through the API on SQLite (no engine), as in test_desk."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import update
from tests.web.conftest import (
    RelayedShop,
    enter,
    relayed_shop,
    sqlite_db,
)
from tests.web.test_accessibility import audit

from walkout.service.models import ReviewVerdict, Visit

ADMIN = "wo_web-stale-admin-0123456789abcdef"
STREAM = re.compile(r"/v1/ops/stream")
Watch = Callable[[Page], list[str]]


@dataclass
class Shop(RelayedShop):
    desk_two: str = ""  # a second operator's token

    def name(self, pid: str) -> str:
        return self.deps.store.products[pid].name

    def visit_of(self, who: str, quantities: dict[str, int]) -> tuple[str, str]:
        """A visit of ``who`` taking ``quantities`` (product → units) and leaving: (visit id,
        receipt id)."""
        vid = enter(self.url, self.operator, self.tokens.get(who) or self.shopper(who))
        lines = [{"line_key": f"{vid}:{p}", "product_id": p, "quantity": q,
                  "event_id": f"e-{vid}-{p}", "confidence": 0.9} for p, q in quantities.items()]
        r = self.api("POST", f"/v1/visits/{vid}/cart-lines", self.operator, json={"lines": lines})
        assert r.status_code == 200, r.text
        r = self.api("POST", f"/v1/visits/{vid}/exit", self.operator)
        assert r.status_code == 200, r.text
        return vid, str(r.json()["receipt_id"])

    def dispute(self, who: str, receipt: str, pid: str) -> str:
        r = self.api("POST", "/v1/disputes", self.tokens[who],
                     json={"receipt_id": receipt, "product_id": pid, "reason": "not mine"})
        assert r.status_code == 201, r.text
        return str(r.json()["dispute_id"])

    def case(self, case_id: str, recorded_at: datetime | None = None) -> None:
        """A review case in the event log (two shoppers reached), as the engine logs one."""
        self.log_case(case_id, f"sim:stale-{case_id}/evidence", recorded_at=recorded_at)


db_url = sqlite_db("webstale")


@pytest.fixture(scope="module")
def shop(db_url: str) -> Iterator[Shop]:
    with relayed_shop(db_url, ADMIN, Shop, desk_two="Desk Two") as shop:
        yield shop


def _desk(browser: Browser, shop: Shop, token: str | None = None, stream: bool = True,
          **ctx: Any) -> Page:
    """A dashboard signed in with ``token`` (Desk One's by default). ``stream=False``: its
    event stream never gets through (a proxy that buffers it): nothing tells it of a change,
    so what it shows goes stale, as in the moment between another desk's click and the
    stream's ``changed``."""
    page = browser.new_context(**{"viewport": {"width": 1400, "height": 1000}, **ctx}).new_page()
    if not stream:
        page.route(STREAM, lambda route: route.abort())
    page.goto(f"{shop.page_url}/#token={token or shop.operator}")
    expect(page.locator("#conn")).to_have_text("live" if stream else "offline")
    return page


def _open_receipt(page: Page, receipt: str) -> None:
    page.get_by_role("tab", name=re.compile(r"^Receipts & disputes")).click()
    page.locator(f"#receipts button[data-receipt='{receipt}']").click()
    expect(page.locator("#receipt h2")).to_have_text(f"Receipt {receipt[:8]}")


def _open_case(page: Page, case_id: str) -> None:
    page.get_by_role("tab", name=re.compile("Review queue")).click()
    page.locator(f"#cases button[data-case='{case_id}']").click()
    expect(page.locator("#case h2")).to_have_text(f"Case {case_id}")


# ---- the open receipt -------------------------------------------------------------------------


def test_another_desks_refund_shows_on_the_open_receipt_keeping_what_was_typed(
        shop: Shop, browser: Browser, csp_watch: Watch,
        shot: Callable[[Page, str], Path]) -> None:
    """Desk One has a receipt open and is writing a refund (how many, and why), scrolled to
    the form; Desk Two refunds another line of it. Desk One's receipt shows the refund at
    once, marked as changed since it was opened, without losing the quantity and the note
    being typed, the focus or the scroll; the refund then made from it carries them."""
    p0, p1 = shop.products
    _, receipt = shop.visit_of("ann", {p0: 3, p1: 1})
    one = _desk(browser, shop, viewport={"width": 1400, "height": 520})
    refused = csp_watch(one)
    two = _desk(browser, shop, shop.desk_two)
    _open_receipt(one, receipt)
    _open_receipt(two, receipt)
    pane = one.locator("#receipt")
    qty = pane.get_by_label(f"How many {shop.name(p0)} to refund")
    qty.fill("2")
    note = pane.get_by_label("Why (kept with a refund or a dispute's decision)")
    note.fill("brought back unopened")
    note.press("Home")  # the caret where the operator left it
    note.evaluate("e => window.scrollTo(0, window.scrollY + e.getBoundingClientRect().top - 300)")
    assert one.evaluate("window.scrollY") > 0  # the pane is scrolled: a redraw could lose it
    before = note.bounding_box()
    assert before is not None

    two.locator("#receipt").get_by_role("button", name=f"Refund {shop.name(p1)}").click()
    expect(two.locator(f"#receipt li[data-product='{p1}']")).to_be_visible()
    expect(two.locator("#receipt li[data-dispute] [data-state]")).to_have_attribute(
        "data-state", "refunded")
    expect(two.locator("#receipt .changed-marker")).to_have_count(0)  # its own doing

    marker = pane.locator(".changed-marker")
    expect(marker).to_contain_text("Changed since you opened this receipt", timeout=10_000)
    expect(marker).to_contain_text(f"Dispute of {shop.name(p1)}: refunded, 1 unit")
    expect(marker).to_contain_text("(new)")
    refund = pane.locator("li[data-dispute]")
    expect(refund).to_have_count(1)
    expect(refund.locator(".changed-tag")).to_have_text("new")
    expect(refund.locator("[data-state]")).to_have_attribute("data-state", "refunded")
    expect(pane.locator("li[data-kind='refund']")).to_have_count(1)
    # what Desk One was doing is as it was
    expect(qty).to_have_value("2")
    expect(note).to_have_value("brought back unopened")
    expect(note).to_be_focused()
    assert note.evaluate("e => [e.selectionStart, e.selectionEnd]") == [0, 0]
    after = note.bounding_box()
    assert after is not None and abs(after["y"] - before["y"]) < 2, (before, after)
    audit(one, "dashboard: a receipt changed at another desk")
    shot(one, "dashboard-receipt-changed-at-another-desk")

    pane.get_by_role("button", name="Mark these changes as seen").click()
    expect(marker).to_have_count(0)
    expect(pane.locator(".changed-tag")).to_have_count(0)
    pane.get_by_role("button", name=f"Refund {shop.name(p0)}").click()
    mine = pane.locator(f"li[data-dispute]:has-text('{p0} × 2')")
    expect(mine).to_contain_text("brought back unopened")
    expect(pane.locator(".changed-marker")).to_have_count(0)  # Desk One's own refund
    assert not refused, refused
    one.context.close()
    two.context.close()


def test_a_dispute_decided_at_another_desk_updates_the_open_receipt(
        shop: Shop, browser: Browser) -> None:
    """The shopper's dispute is open on Desk One's screen, its Reject button focused; Desk Two
    rejects it. Desk One's receipt showed it open, with its buttons, until reopened: now it
    shows it rejected, says so, and the focus goes to what says so (the button is gone)."""
    p0, _ = shop.products
    _, receipt = shop.visit_of("bo", {p0: 1})
    did = shop.dispute("bo", receipt, p0)
    one = _desk(browser, shop)
    _open_receipt(one, receipt)
    pane = one.locator("#receipt")
    item = pane.locator(f"li[data-dispute='{did}']")
    expect(item.locator("[data-state]")).to_have_attribute("data-state", "open")
    item.get_by_role("button", name=re.compile("^Reject")).focus()
    r = shop.api("POST", f"/v1/disputes/{did}/decision", shop.desk_two,
                 json={"decision": "reject", "note": "seen on the shelf camera"})
    assert r.status_code == 200, r.text
    expect(item.locator("[data-state]")).to_have_attribute("data-state", "rejected",
                                                           timeout=10_000)
    expect(item.get_by_role("button")).to_have_count(0)
    marker = pane.locator(".changed-marker")
    expect(marker).to_contain_text(f"Dispute of {shop.name(p0)}: open, 1 unit → rejected, 1 unit")
    expect(marker).to_be_focused()
    expect(item.locator(".changed-tag")).to_have_text("changed")
    # opened again: what it shows now is what later changes are told against
    one.locator(f"#receipts button[data-receipt='{receipt}']").click()
    expect(marker).to_have_count(0)
    one.context.close()


def test_an_action_on_a_stale_receipt_says_it_changed_and_shows_it_as_it_stands(
        shop: Shop, browser: Browser, shot: Callable[[Page, str], Path]) -> None:
    """Desk One's stream tells it nothing (a buffering proxy: the same as the moment before
    a ``changed`` arrives), Desk Two rejects the dispute, and Desk One refunds it from what it
    still shows. The service refuses (409); the dashboard said only the service's words
    beside a dispute still shown open. Now it says the receipt changed meanwhile, shows it as
    it stands, and keeps the note the operator wrote."""
    p0, _ = shop.products
    _, receipt = shop.visit_of("cy", {p0: 1})
    did = shop.dispute("cy", receipt, p0)
    one = _desk(browser, shop, stream=False)
    _open_receipt(one, receipt)
    pane = one.locator("#receipt")
    pane.get_by_label("Why (kept with a refund or a dispute's decision)").fill("receipt shows it")
    r = shop.api("POST", f"/v1/disputes/{did}/decision", shop.desk_two,
                 json={"decision": "reject", "note": "seen on the shelf camera"})
    assert r.status_code == 200, r.text
    item = pane.locator(f"li[data-dispute='{did}']")
    expect(item.locator("[data-state]")).to_have_attribute("data-state", "open")  # stale
    item.get_by_role("button", name=f"Refund the dispute of {shop.name(p0)}").click()
    conflict = pane.locator(".conflict")
    expect(conflict).to_contain_text("Not done: this dispute was already decided: rejected")
    expect(conflict).to_contain_text("shown below as it stands now")
    expect(conflict).to_be_focused()
    expect(item.locator("[data-state]")).to_have_attribute("data-state", "rejected")
    expect(pane.locator(".changed-marker")).to_contain_text("open, 1 unit → rejected, 1 unit")
    expect(pane.get_by_label("Why (kept with a refund or a dispute's decision)")
           ).to_have_value("receipt shows it")
    expect(one.locator("#problem")).to_be_hidden()  # not a failure to load: said in the pane
    audit(one, "dashboard: an action refused on a receipt that changed")
    shot(one, "dashboard-receipt-action-refused")
    one.context.close()


def test_a_balance_written_off_while_cut_off_shows_on_the_open_receipt_once_back(
        shop: Shop, browser: Browser) -> None:
    """The desk's connection drops with a receipt open whose balance is owed; another desk
    writes the balance off meanwhile. A new stream sends no ``changed`` for the gap: the
    catch-up reloaded the lists, and the open receipt kept saying *in review*."""
    p0, _ = shop.products
    vid, receipt = shop.visit_of("dee", {p0: 1})
    with shop.deps.sessions.begin() as s:
        v = s.get(Visit, vid)
        assert v is not None
        v.balance_owed, v.state = Decimal("1.20"), "in_review"
    one = _desk(browser, shop)
    _open_receipt(one, receipt)
    pane = one.locator("#receipt")
    expect(pane.locator(".state").first).to_have_text("in_review")
    shop.relay.down()
    try:
        expect(one.locator("#conn")).to_have_text("offline", timeout=10_000)
        r = shop.api("POST", f"/v1/ops/visits/{vid}/balance/write-off", shop.desk_two, json={})
        assert r.status_code == 200, r.text
    finally:
        shop.relay.up()
    expect(one.locator("#conn")).to_have_text("live", timeout=10_000)
    expect(pane.locator(".state").first).to_have_text("charged", timeout=10_000)
    expect(pane.locator(".changed-marker")).to_contain_text("State: in review → charged")
    one.context.close()


# ---- the open review case ---------------------------------------------------------------------


def test_a_case_decided_at_another_desk_is_shown_decided_with_the_unsent_note(
        shop: Shop, browser: Browser) -> None:
    """Desk One is deciding a case (a shopper chosen, a note half written) when Desk Two's
    verdict is applied. The pane shows the verdict, says it changed since it was opened, and
    the note that can no longer be sent is quoted rather than wiped without a word."""
    shop.case("stale-case-live")
    one = _desk(browser, shop)
    _open_case(one, "stale-case-live")
    pane = one.locator("#case")
    pane.locator("input[name=who][value=s2]").check()
    pane.get_by_label("Note (why)").fill("clip 2 shows s2")
    r = shop.api("POST", "/v1/ops/reviews/stale-case-live/decision", shop.desk_two,
                 json={"shares": {"s1": [[shop.products[0], 1]]}, "note": "s1 on camera 1"})
    assert r.status_code == 201, r.text
    with shop.deps.sessions.begin() as s:  # what the engine worker does at its next chunk
        s.execute(update(ReviewVerdict).where(ReviewVerdict.case_id == "stale-case-live")
                  .values(applied_at=datetime.now(UTC)))
    expect(pane.locator(".verdict")).to_contain_text("decided by Desk Two", timeout=10_000)
    marker = pane.locator(".changed-marker")
    expect(marker).to_contain_text("Changed since you opened this review case")
    expect(marker).to_contain_text("Verdict: not decided yet → decided by Desk Two")
    expect(pane.locator(".lost")).to_contain_text("“clip 2 shows s2”")
    expect(pane.locator("form")).to_have_count(0)
    one.context.close()


def test_a_decision_on_a_stale_case_says_another_desk_decided_it(
        shop: Shop, browser: Browser) -> None:
    """Desk One decides a case Desk Two decided a moment before (its stream has told it
    nothing yet): the service refuses (409) and the pane said only "this review case was
    already decided" beside the form; now it says so in the pane and shows Desk Two's
    verdict, with what Desk One had written."""
    shop.case("stale-case-409")
    one = _desk(browser, shop, stream=False)
    _open_case(one, "stale-case-409")
    pane = one.locator("#case")
    pane.locator("input[name=who][value=s2]").check()
    pane.get_by_label("Note (why)").fill("clip 2 shows s2")
    r = shop.api("POST", "/v1/ops/reviews/stale-case-409/decision", shop.desk_two,
                 json={"shares": {}, "note": "nothing was taken"})
    assert r.status_code == 201, r.text
    pane.get_by_role("button", name="Charge the chosen shopper").click()
    conflict = pane.locator(".conflict")
    expect(conflict).to_contain_text("Not done: this review case was already decided")
    expect(conflict).to_be_focused()
    expect(pane.locator(".verdict")).to_contain_text("decided by Desk Two")
    expect(pane.locator(".verdict")).to_contain_text("nothing was taken")
    expect(pane.locator(".lost")).to_contain_text("“clip 2 shows s2”")
    one.context.close()


def test_a_case_purged_while_open_says_it_no_longer_exists(shop: Shop,
                                                           browser: Browser) -> None:
    """A case past the retention period is purged while a desk has it open (cut off at that
    moment, it catches up once back): the pane kept the purged evidence, and a banner said
    the case could not be opened. Now the pane says it no longer exists."""
    shop.case("stale-case-old", recorded_at=datetime.now(UTC) - timedelta(days=40))
    one = _desk(browser, shop)
    _open_case(one, "stale-case-old")
    pane = one.locator("#case")
    expect(pane.locator(".hyp").first).to_be_visible()
    shop.relay.down()
    try:
        expect(one.locator("#conn")).to_have_text("offline", timeout=10_000)
        r = shop.api("POST", "/v1/admin/retention/purge", ADMIN, json={"days": 30})
        assert r.status_code == 200, r.text
    finally:
        shop.relay.up()
    expect(one.locator("#conn")).to_have_text("live", timeout=10_000)
    expect(pane.locator(".gone")).to_contain_text(
        "Review case stale-case-old no longer exists", timeout=10_000)
    expect(pane.locator(".hyp")).to_have_count(0)
    expect(one.locator("#cases button[data-case='stale-case-old']")).to_have_count(0)
    expect(one.locator("#problem")).to_be_hidden()
    audit(one, "dashboard: a review case purged while open")
    one.context.close()
