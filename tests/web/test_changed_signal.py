"""The operator event stream's ``changed`` for changes it did not count, through the real
service: a balance written off or collected, a review verdict recorded but not yet applied, a
second refund of a line already refunded. Its marker counted receipts, applied verdicts,
disputes by state, alert acknowledgements and payment events; none of these moves one of
them (the balance is on the visit, the verdict waits for the engine worker, the second refund
adds a charge to a dispute that stays *refunded*), so another desk's open receipt or case kept
showing what was no longer so until something else changed. Read as the dashboard reads it
(``/v1/ops/stream``), and in Debian's Chromium: the open pane follows.

The store is seeded through the API on SQLite (no engine), as in test_stale_views."""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from tests.web.conftest import (
    RelayedShop,
    enter,
    relayed_shop,
    sqlite_db,
)

from walkout.service.models import ReviewVerdict, Visit

ADMIN = "wo_web-changed-admin-0123456789abcdef"
#: how long a ``changed`` may take: the stream looks every 0.5 s
WITHIN_S = 5.0


@dataclass
class Shop(RelayedShop):
    desk_two: str = ""  # a second operator's token
    cases: int = 0

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

    def owes(self, vid: str, amount: str) -> None:
        """Record ``amount`` of the visit as owed, as an exit does when the card paid less."""
        with self.deps.sessions.begin() as s:
            v = s.get(Visit, vid)
            assert v is not None
            v.balance_owed, v.state = Decimal(amount), "in_review"

    def refund(self, receipt: str, pid: str, token: str) -> None:
        r = self.api("POST", f"/v1/ops/receipts/{receipt}/refund", token,
                     json={"product_id": pid, "quantity": 1, "note": "brought back"})
        assert r.status_code == 200, r.text

    def case(self) -> str:
        """A review case in the event log (two shoppers reached), as the engine logs one: its
        id."""
        self.cases += 1
        case_id = f"changed-case-{self.cases}"
        self.log_case(case_id, "sim:changed/evidence", seq=self.cases, t=12.0 + self.cases,
                      recorded_at=self.deps.clock.now())
        return case_id


db_url = sqlite_db("webchanged")


@pytest.fixture(scope="module")
def shop(db_url: str) -> Iterator[Shop]:
    with relayed_shop(db_url, ADMIN, Shop, desk_two="Desk Two") as shop:
        shop.case()  # the log is never empty: every stream's first turn brings this row
        yield shop


class Stream:
    """The operator event stream read in a thread, as the dashboard reads it: each event's
    name and data, in order."""

    def __init__(self, shop: Shop) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.client = httpx.Client(base_url=shop.url, timeout=30,
                                   headers={"Authorization": f"Bearer {shop.operator}"})
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        name = None
        try:
            with self.client.stream("GET", "/v1/ops/stream?after=0") as r:
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: ") and name:
                        self.events.put((name, json.loads(line[6:])))
        except (httpx.HTTPError, RuntimeError, OSError):
            return  # closed by the test

    def next(self, name: str, timeout: float = WITHIN_S) -> Any:
        """The data of the next event called ``name`` within ``timeout`` s (None: none
        came)."""
        try:
            while True:
                got, data = self.events.get(timeout=timeout)
                if got == name:
                    return data
        except queue.Empty:
            return None

    def started(self) -> None:
        """Wait for the stream's first turn (the log's rows: its marker is taken with them)."""
        assert self.next("review", 30) is not None, "the stream brought nothing"
        self.settle()

    def settle(self) -> None:
        """Let pass the ``changed`` of what the test set up, so that the next one is its
        action's."""
        while self.next("changed", 1.5) is not None:
            pass

    def close(self) -> None:
        self.client.close()
        self.thread.join(5)


@pytest.fixture
def stream(shop: Shop) -> Iterator[Stream]:
    st = Stream(shop)
    st.started()
    try:
        yield st
    finally:
        st.close()


def test_a_balance_written_off_moves_changed(shop: Shop, stream: Stream) -> None:
    """Desk Two writes off a balance owed: the visit is settled (its receipt no longer *in
    review*, its shopper let in again) and every open dashboard must hear of it."""
    vid, _ = shop.visit_of("ann", {shop.products[0]: 1})
    shop.owes(vid, "1.20")
    stream.settle()  # what setting it up moved
    r = shop.api("POST", f"/v1/ops/visits/{vid}/balance/write-off", shop.desk_two, json={})
    assert r.status_code == 200 and r.json()["settled"], r.text
    changed = stream.next("changed")
    assert changed is not None, "no changed for a balance written off"
    assert changed["balances_settled"] >= 1


def test_a_balance_collected_moves_changed(shop: Shop, stream: Stream) -> None:
    """Desk Two charges the saved card again for a balance owed, and it is paid."""
    vid, _ = shop.visit_of("bo", {shop.products[0]: 1})
    shop.owes(vid, "0.80")
    stream.settle()
    r = shop.api("POST", f"/v1/ops/visits/{vid}/balance/collect", shop.desk_two)
    assert r.status_code == 200 and r.json()["settled"], r.text
    assert stream.next("changed") is not None, "no changed for a balance collected"


def test_a_verdict_recorded_but_not_yet_applied_moves_changed(shop: Shop,
                                                              stream: Stream) -> None:
    """A verdict waits for the engine worker (for good when none runs): the case is decided
    from the moment it is recorded, and another desk deciding it too is refused."""
    case_id = shop.case()
    stream.settle()
    r = shop.api("POST", f"/v1/ops/reviews/{case_id}/decision", shop.desk_two,
                 json={"shares": {}, "note": "nothing was taken"})
    assert r.status_code == 201, r.text
    changed = stream.next("changed")
    assert changed is not None, "no changed for a verdict recorded"
    with shop.deps.sessions() as s:
        assert s.get(ReviewVerdict, {"source": "sim:changed", "case_id": case_id}
                     ).applied_at is None
    assert changed["verdicts"] >= 1 and changed["applied_verdicts"] == 0


def test_a_second_refund_of_a_refunded_line_moves_changed(shop: Shop, stream: Stream) -> None:
    """The shopper brings back a second unit of a line refunded before: the line's dispute is
    *refunded* before and after (a line is refunded through one dispute), so only the new
    refund charge says so."""
    p0 = shop.products[0]
    _, receipt = shop.visit_of("cy", {p0: 3})
    shop.refund(receipt, p0, shop.operator)
    stream.settle()
    shop.refund(receipt, p0, shop.desk_two)
    changed = stream.next("changed")
    assert changed is not None, "no changed for a second refund of a line"
    assert changed["charges"] >= 1


# ---- what the operator at the other desk sees -------------------------------------------------


def _desk(browser: Browser, shop: Shop) -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(f"{shop.page_url}/#token={shop.operator}")
    expect(page.locator("#conn")).to_have_text("live")
    return page


def test_an_open_receipt_shows_another_desks_second_refund(shop: Shop,
                                                           browser: Browser) -> None:
    p0 = shop.products[0]
    name = shop.deps.store.products[p0].name
    _, receipt = shop.visit_of("dee", {p0: 3})
    shop.refund(receipt, p0, shop.operator)
    one = _desk(browser, shop)
    one.get_by_role("tab", name=re.compile(r"^Receipts & disputes")).click()
    one.locator(f"#receipts button[data-receipt='{receipt}']").click()
    pane = one.locator("#receipt")
    expect(pane.locator("li[data-kind='refund']")).to_have_count(1)
    shop.refund(receipt, p0, shop.desk_two)
    expect(pane.locator("li[data-kind='refund']")).to_have_count(2, timeout=10_000)
    expect(pane.locator(".changed-marker")).to_contain_text("(new)")
    expect(pane.locator(".changed-marker")).to_contain_text(f"Dispute of {name}: refunded")
    one.context.close()


def test_an_open_case_shows_another_desks_verdict_before_the_engine_applies_it(
        shop: Shop, browser: Browser) -> None:
    case_id = shop.case()
    one = _desk(browser, shop)
    one.get_by_role("tab", name=re.compile("Review queue")).click()
    one.locator(f"#cases button[data-case='{case_id}']").click()
    pane = one.locator("#case")
    expect(pane.locator("form")).to_have_count(1)
    r = shop.api("POST", f"/v1/ops/reviews/{case_id}/decision", shop.desk_two,
                 json={"shares": {}, "note": "nothing was taken"})
    assert r.status_code == 201, r.text
    expect(pane.locator(".verdict")).to_contain_text("decided (waiting for the engine)",
                                                     timeout=10_000)
    expect(pane.locator(".verdict")).to_contain_text("decided by Desk Two")
    expect(pane.locator(".changed-marker")).to_contain_text(
        "Verdict: not decided yet → decided by Desk Two")
    expect(pane.locator("form")).to_have_count(0)
    expect(one.locator(f"#cases button[data-case='{case_id}'] .state")).to_have_text("decided")
    one.context.close()
