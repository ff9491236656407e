"""What Stripe reports, on the operations dashboard (Debian's Chromium against the real service):
the open bank chargebacks with their evidence due dates and Stripe's fees, the most urgent
first, and the payment events staff must check, on the Receipts & disputes tab, counted on its
tab, each acknowledged there once handled; a receipt's chargebacks and a refund made outside
walkout; the chargebacks and their fees in the Sales card.

The store is a Stripe store's settings (its webhook mounted, events signed with its secret and
delivered over HTTP, as Stripe does) with the built-in ledger moving the money, as there is no
network here; visits are made through the API, no engine runs. SQLite only: what the page
shows is tested on both databases at the service level (tests/service/test_stripe_webhooks.py,
tests/ops/test_sales.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect
from pydantic import SecretStr
from sqlalchemy import select
from tests.web.conftest import (
    call,
    enter,
    free_port,
    leave,
    serving,
    sign_up,
    sqlite_db,
    staff_token,
)

from walkout.service.app import create_app
from walkout.service.clock import SystemClock
from walkout.service.db import make_engine, session_factory
from walkout.service.deps import Deps
from walkout.service.models import Charge, PaymentMethod, Visit
from walkout.service.payments.ledger import LedgerProvider
from walkout.service.settings import ServiceSettings

ADMIN = "wo_web-payments-admin-0123456789abcdef"
KEY, SECRET = "sk_test_webPayments", "whsec_webPayments0123456789"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
HOUR = 3600
Watch = Callable[[Page], list[str]]


@dataclass
class Visited:
    visit_id: str
    receipt_id: str | None
    intent: str  # the hold's reference (Stripe's payment intent)
    charge: str | None  # the capture's (Stripe's charge)
    cents: int  # what was captured


@dataclass
class Shop:
    url: str
    deps: Deps
    operator: str
    products: list[str]
    visits: dict[str, Visited]
    n_events: int = 0
    tokens: dict[str, str] = field(default_factory=dict)  # each shopper's, by name

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        return call(self.url, method, path, token, **kw)

    def enter(self, name: str) -> str:
        tok = self.tokens[name] = sign_up(self.url, f"{name}@example.org", name,
                                          f"tok_visa_{name}")
        return enter(self.url, self.operator, tok)

    def leave(self, name: str, vid: str) -> None:
        receipt = leave(self.url, self.operator, vid, self.products)
        with self.deps.sessions() as s:
            v = s.get(Visit, vid)
            cap = s.scalar(select(Charge).where(Charge.visit_id == vid, Charge.kind == "capture",
                                                Charge.status == "succeeded"))
            assert v is not None and v.auth_id
            self.visits[name] = Visited(vid, receipt, v.auth_id,
                                        cap.provider_ref if cap else None,
                                        int(cap.amount * 100) if cap else 0)

    def deliver(self, type_: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A Stripe event about ``obj``, signed with the webhook secret and posted to the
        store's webhook as Stripe does: its answer."""
        self.n_events += 1
        body = json.dumps({"id": f"evt_web{self.n_events:04d}", "object": "event",
                           "api_version": "2026-10-28.endive", "created": int(time.time()),
                           "livemode": False, "type": type_, "data": {"object": obj}})
        t = int(time.time())
        mac = hmac.new(SECRET.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
        r = httpx.post(self.url + "/v1/webhooks/stripe", content=body.encode(), timeout=30,
                       headers={"Content-Type": "application/json",
                                "Stripe-Signature": f"t={t},v1={mac}"})
        assert r.status_code == 200 and r.json()["outcome"] != "ignored", r.text
        return dict(r.json())

    def chargeback(self, name: str, status: str, due_in_s: float | None,
                   type_: str = "charge.dispute.created", reason: str = "fraudulent",
                   fee_cents: int | None = None) -> None:
        """``fee_cents``: the funds were withdrawn, with Stripe's dispute fee (its balance
        transaction listed as Stripe lists it)."""
        v = self.visits[name]
        now = int(time.time())
        obj = {"id": f"dp_web_{name}", "object": "dispute", "amount": v.cents, "currency": "eur",
               "charge": v.charge, "payment_intent": v.intent, "created": now - HOUR,
               "reason": reason, "status": status,
               "evidence_details": {"due_by": None if due_in_s is None else int(now + due_in_s)}}
        if fee_cents is not None:
            obj["balance_transactions"] = [{
                "id": f"txn_web_{name}", "object": "balance_transaction", "amount": -v.cents,
                "currency": "eur", "fee": fee_cents, "net": -v.cents - fee_cents,
                "fee_details": [{"amount": fee_cents, "currency": "eur",
                                 "description": "Dispute fee", "type": "stripe_fee"}],
                "reporting_category": "dispute", "type": "adjustment"}]
        self.deliver(type_, obj)


db_url = sqlite_db("webpay")


@pytest.fixture(scope="module")
def shop(db_url: str) -> Iterator[Shop]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = ServiceSettings(db_url=db_url, entry_secret=SecretStr("w" * 32),
                               bootstrap_admin_token=SecretStr(ADMIN), retention_check_s=0,
                               payment_provider="stripe", stripe_api_key=SecretStr(KEY),
                               stripe_webhook_secret=SecretStr(SECRET))
    engine = make_engine(db_url)
    sessions, clock = session_factory(engine), SystemClock()
    app = create_app(settings, engine=engine, sessions=sessions, clock=clock,
                     provider=LedgerProvider(sessions, clock))
    with serving(app, port):
        deps: Deps = app.state.deps
        shop = Shop(url, deps, staff_token(url, ADMIN, "operator", "desk"),
                    [p.id for p in deps.store.catalogue[:2]], {})
        for name in ("ann", "bo", "cy", "dee", "fay"):
            shop.leave(name, shop.enter(name))
        # Bo's chargeback is past its due date (Stripe took its fee), Ann's due in 30 hours, Cy's
        # evidence was sent
        shop.chargeback("bo", "needs_response", -2 * HOUR, fee_cents=1500)
        shop.chargeback("ann", "needs_response", 30 * HOUR, reason="product_not_received")
        shop.chargeback("cy", "under_review", 5 * 24 * HOUR)
        # Fay's was lost today: the bank gave her the money back
        shop.chargeback("fay", "needs_response", 24 * HOUR, fee_cents=2000)
        shop.chargeback("fay", "lost", None, type_="charge.dispute.closed")
        # 1.00 of Dee's payment refunded in the Stripe dashboard
        dee = shop.visits["dee"]
        shop.deliver("charge.refunded", {"id": dee.charge, "object": "charge", "amount": 5000,
                                         "amount_captured": dee.cents, "amount_refunded": 100,
                                         "currency": "eur", "payment_intent": dee.intent})
        # Eve is inside when her hold is cancelled: her exit captures nothing, her card pays
        eve = shop.enter("eve")
        with deps.sessions() as s:
            v = s.get(Visit, eve)
            assert v is not None
            intent = v.auth_id
        shop.deliver("payment_intent.canceled", {"id": intent, "object": "payment_intent",
                                                 "cancellation_reason": "requested_by_customer"})
        shop.leave("eve", eve)
        yield shop
    engine.dispose()


def _audit(page: Page, what: str) -> None:
    found = Axe().run(page, options={"runOnly": {"type": "tag", "values": TAGS}}).response[
        "violations"]
    assert not found, f"{what}: " + "; ".join(
        f"{v['id']}: {' '.join(n['target'][0] for n in v['nodes'][:3])}" for v in found)


def test_the_receipts_tab_lists_chargebacks_by_due_date_and_events_to_check(
        shop: Shop, browser: Browser, csp_watch: Watch,
        shot: Callable[[Page, str], Path]) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    refused = csp_watch(page)
    page.goto(f"{shop.url}/#token={shop.operator}")
    # counted on the tab bar from the start, and named for screen readers
    tab = page.get_by_role("tab", name=re.compile(
        r"Receipts & disputes 3 open chargebacks 7 payment events to check"))
    expect(tab).to_be_visible()
    expect(page.locator("#chargeback-count")).to_have_attribute("title", "3 open chargebacks")
    tab.click()
    rows = page.locator("#chargebacks tbody tr")
    expect(rows).to_have_count(3)
    # those to answer first, the nearest date first: Bo's overdue, Ann's; Cy's has nothing to do
    assert [rows.nth(i).get_attribute("data-chargeback") for i in range(3)] == [
        "dp_web_bo", "dp_web_ann", "dp_web_cy"]
    expect(rows.nth(0).locator("[data-due]")).to_have_text("overdue")
    expect(rows.nth(0).locator("[data-due]")).to_have_attribute("data-due", "overdue")
    expect(rows.nth(1).locator("[data-due]")).to_have_text(re.compile(r"^in (29|30) h$"))
    expect(rows.nth(1)).to_contain_text("product not received")
    expect(rows.nth(1)).to_contain_text("needs response")
    expect(rows.nth(2)).to_contain_text("evidence sent, nothing to do")
    expect(rows.nth(2)).to_contain_text("bank deciding")
    ann = shop.visits["ann"]
    expect(rows.nth(1)).to_contain_text(f"{ann.cents / 100:.2f} EUR")
    # Stripe's fee where it took one, a dash where it has reported none yet
    expect(rows.nth(0).locator("[data-fee]")).to_have_text("15.00 EUR")
    expect(rows.nth(1).locator("[data-fee]")).to_have_text("–")
    # the events to check: the four chargebacks opened, Fay's lost, Dee's outside refund and
    # Eve's hold gone, newest first (the count is the last 7 days')
    events = page.locator("#payment-events li")
    expect(events).to_have_count(7)
    expect(page.locator("#attention-days")).to_have_text("last 7 days: 7")
    expect(events.nth(0)).to_contain_text("hold gone")
    expect(events.nth(0)).to_contain_text("was cancelled at the customer's request")
    expect(events.nth(1)).to_contain_text("refunded outside walkout")
    expect(events.nth(2)).to_contain_text("chargeback closed")
    expect(page.locator("#payments")).not_to_contain_text("null")
    expect(page.locator("#payments")).not_to_contain_text("undefined")
    _audit(page, "dashboard: chargebacks and payment events")
    shot(page, "dashboard-chargebacks")

    # a chargeback's receipt opens beside it, focused, with the chargeback and its date
    rows.nth(1).get_by_role("button", name=f"Receipt {ann.receipt_id[:8]}").click()
    receipt = page.locator("#receipt")
    expect(receipt.locator("h2")).to_be_focused()
    expect(receipt.locator(".state").first).to_have_text("disputed")
    expect(receipt.locator("li[data-chargeback='dp_web_ann']")).to_contain_text("answer by")
    # the hold gone: Eve's receipt, charged to her saved card instead (nothing was held)
    events.nth(0).get_by_role("button", name=re.compile(r"^Receipt ")).click()
    expect(receipt.locator("h2")).to_have_text(
        f"Receipt {shop.visits['eve'].receipt_id[:8]}")  # type: ignore[index]
    expect(receipt.locator(".state").first).to_have_text("charged")
    # the refund made in Stripe's dashboard is marked as such on Dee's receipt
    events.nth(1).get_by_role("button", name=re.compile(r"^Receipt ")).click()
    outside = receipt.locator("li[data-outside='true']")
    expect(outside).to_have_count(1)
    expect(outside).to_contain_text("refund 1.00 · succeeded")
    expect(outside).to_contain_text("made outside walkout")
    expect(receipt.locator("li[data-kind='refund']")).to_have_count(1)
    _audit(page, "dashboard: a receipt with a refund made outside walkout")
    shot(page, "dashboard-receipt-outside-refund")

    # a new chargeback arrives while the page is open: the tab's count follows at once
    shop.chargeback("dee", "needs_response", 10 * 24 * HOUR)
    expect(page.locator("#chargeback-count")).to_have_attribute("title", "4 open chargebacks",
                                                               timeout=10_000)
    expect(rows).to_have_count(4)
    expect(rows.nth(3)).to_have_attribute("data-chargeback", "dp_web_cy")
    page.close()
    assert refused == [], refused


def test_the_sales_card_counts_the_chargebacks(shop: Shop, browser: Browser,
                                              shot: Callable[[Page, str], Path]) -> None:
    """The chargebacks opened today (Fay's lost among them: her money is no longer revenue;
    the undecided ones at risk), in the totals the table shows as the API gives them."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{shop.url}/#token={shop.operator}")
    page.get_by_role("tab", name="Analytics").click()
    heads = page.locator("#sales thead th")
    expect(heads).to_have_count(18)
    names = [heads.nth(i).inner_text().replace("\u00ad", "") for i in range(18)]
    total = page.locator("#sales tfoot tr")
    cell = {n: total.locator("th, td").nth(i) for i, n in enumerate(names)}
    r = shop.api("GET", "/v1/ops/sales?days=7", shop.operator).json()["totals"]
    cents = {n: v.cents for n, v in shop.visits.items()}
    at_risk = cents["ann"] + cents["bo"] + cents["cy"]  # and Dee's, once the test above ran
    assert r["chargebacks_lost"] == f"{cents['fay'] / 100:.2f}"
    assert r["chargebacks_at_risk"] in (f"{at_risk / 100:.2f}",
                                        f"{(at_risk + cents['dee']) / 100:.2f}")
    expect(cell["Lost to chargebacks"]).to_have_text(r["chargebacks_lost"])
    expect(cell["At risk"]).to_have_text(r["chargebacks_at_risk"])
    # Stripe's fees, Bo's (open) and Fay's (lost) alike, are out of the net after chargebacks
    assert r["chargeback_fees"] == "35.00"
    expect(cell["Chargeback fees"]).to_have_text("35.00")
    expect(cell["Net after chargebacks"]).to_have_text(r["net_after_chargebacks"])
    assert int(cell["Chargebacks"].inner_text()) == r["chargebacks"] >= 4
    shot(page, "dashboard-sales-chargebacks")
    page.close()


def test_an_event_acknowledged_on_the_dashboard_leaves_the_card(
        shop: Shop, browser: Browser, csp_watch: Watch,
        shot: Callable[[Page, str], Path]) -> None:
    """An operator acknowledges the newest event to check: it leaves the card at once, the
    tab's count drops, the focus moves to the next event's button; another desk's open
    dashboard drops it too (the stream's ``changed``); asked for, it is listed again with
    who acknowledged it."""
    before = shop.api("GET", "/v1/ops/payment-attention", shop.operator).json()
    n = before["counts"]["attention_events"]
    first, second = before["attention_events"][:2]
    pages = []
    for _ in range(2):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        refused = csp_watch(page)
        page.goto(f"{shop.url}/#token={shop.operator}")
        page.get_by_role("tab", name=re.compile(r"^Receipts & disputes")).click()
        expect(page.locator("#payment-events li")).to_have_count(n)
        pages.append((page, refused))
    (page, refused), (other, other_refused) = pages
    item = page.locator(f"#payment-events li[data-event='{first['event_id']}']")
    # named for the event it acknowledges ("Acknowledge chargeback opened of 10:32 (dp_…)")
    button = item.get_by_role("button", name=re.compile(r"^Acknowledge (chargeback|hold) .+ of "))
    expect(button).to_have_count(1)
    button.click()
    expect(item).to_have_count(0)
    expect(page.locator("#payment-events li")).to_have_count(n - 1)
    expect(page.locator("#attention-count")).to_have_attribute(
        "title", f"{n - 1} payment events to check (last 7 days)")
    expect(page.locator("#attention-days")).to_have_text(f"last 7 days: {n - 1}, 1 acknowledged")
    expect(page.locator(f"#payment-events li[data-event='{second['event_id']}'] button")
           .filter(has_text="Acknowledge")).to_be_focused()
    expect(page.locator("#payment-events")).not_to_contain_text("Not acknowledged")
    # the other desk's list follows (the stream's "changed", which redraws this one too: the
    # focus stays)
    expect(other.locator(f"#payment-events li[data-event='{first['event_id']}']")
           ).to_have_count(0, timeout=10_000)
    page.wait_for_timeout(1500)
    expect(page.locator(f"#payment-events li[data-event='{second['event_id']}'] button")
           .filter(has_text="Acknowledge")).to_be_focused()
    # the API says who and when
    after = shop.api("GET", "/v1/ops/payment-attention?include_acknowledged=true",
                     shop.operator).json()
    [acked] = [e for e in after["attention_events"] if e["event_id"] == first["event_id"]]
    assert acked["acknowledged"]["by_name"] == "desk", acked
    assert after["counts"]["attention_events"] == n - 1
    # shown on request: greyed, with who acknowledged it, and no button
    page.get_by_label("show the acknowledged ones too").check()
    expect(item).to_have_count(1)
    expect(item).to_have_class(re.compile(r"\backed\b"))
    expect(item).to_contain_text("acknowledged by desk")
    expect(item.get_by_role("button", name=re.compile("^Acknowledge"))).to_have_count(0)
    _audit(page, "dashboard: payment events, an acknowledged one shown")
    shot(page, "dashboard-payment-event-acknowledged")
    for p in (page, other):
        p.close()
    assert refused == [] and other_refused == [], (refused, other_refused)


def test_a_balance_owed_is_listed_and_written_off_on_the_dashboard(
        shop: Shop, browser: Browser, csp_watch: Watch) -> None:
    """A cart above the hold whose rest the card did not pay (here recorded as the exit
    records it when the charge is refused) is listed with its amount and receipt; "Write off"
    settles it: it leaves the list and its shopper may enter again."""
    name = "owes"
    shop.leave(name, shop.enter(name))
    vid = shop.visits[name].visit_id
    with shop.deps.sessions.begin() as s:
        v = s.get(Visit, vid)
        assert v is not None
        v.balance_owed, v.state = Decimal("5.14"), "in_review"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    refused = csp_watch(page)
    page.goto(f"{shop.url}/#token={shop.operator}")
    page.get_by_role("tab", name=re.compile(r"^Receipts & disputes")).click()
    item = page.locator(f"#owed-balances li[data-visit='{vid}']")
    expect(item).to_contain_text("5.14 EUR")
    _audit(page, "dashboard: a balance owed")
    item.get_by_role("button", name="Write off 5.14 EUR owed").click()
    expect(item).to_have_count(0)
    expect(page.locator("#owed-balances")).to_contain_text("Nothing owed.")
    with shop.deps.sessions() as s:
        v = s.get(Visit, vid)
        assert v is not None and v.balance_settlement == "written_off" and v.balance_settled_by
    page.close()
    assert refused == [], refused


def test_a_payment_unconfirmed_for_long_is_listed_with_its_receipt(
        shop: Shop, browser: Browser, csp_watch: Watch) -> None:
    """A capture the provider has not confirmed for 20 minutes (recorded as the exit records
    it while the provider is away) is listed on the payments card: what, how much, since when,
    the last error and its receipt; once confirmed it is gone."""
    name = "waits"
    shop.leave(name, shop.enter(name))
    vid = shop.visits[name].visit_id
    with shop.deps.sessions.begin() as s:
        cap = s.scalar(select(Charge).where(Charge.visit_id == vid, Charge.kind == "capture"))
        assert cap is not None
        cap.status, cap.error = "pending", "Stripe unreachable; retrying with the same key"
        cap.created_at = shop.deps.clock.now() - timedelta(minutes=20)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    refused = csp_watch(page)
    page.goto(f"{shop.url}/#token={shop.operator}")
    page.get_by_role("tab", name=re.compile(r"^Receipts & disputes")).click()
    item = page.locator(f"#unconfirmed-charges li[data-key='visit:{vid}:capture']")
    expect(item).to_contain_text(f"capture {cap.amount:.2f} EUR")
    expect(item).to_contain_text("Stripe unreachable")
    _audit(page, "dashboard: a payment not confirmed")
    item.get_by_role("button", name=re.compile(r"^Receipt ")).click()
    expect(page.locator("#receipt h2")).to_have_text(
        f"Receipt {shop.visits[name].receipt_id[:8]}")  # type: ignore[index]
    with shop.deps.sessions.begin() as s:
        got = s.get(Charge, cap.id)
        assert got is not None
        got.status = "succeeded"
    page.reload()
    page.get_by_role("tab", name=re.compile(r"^Receipts & disputes")).click()
    expect(page.locator("#unconfirmed-charges")).to_contain_text("Every payment is confirmed.")
    page.close()
    assert refused == [], refused


def test_a_shopper_who_owes_pays_in_the_app_with_a_card_she_adds(
        shop: Shop, browser: Browser, csp_watch: Watch) -> None:
    """Instead of an entry code the gate would refuse, the app shows what an earlier visit
    owes; "Pay now" with a card that is refused says so, and a card added there pays it:
    the entry code comes back and the payments card no longer lists the balance."""
    name = "pays"
    shop.leave(name, shop.enter(name))
    vid = shop.visits[name].visit_id
    with shop.deps.sessions.begin() as s:  # the balance refused, her card now declining
        v = s.get(Visit, vid)
        assert v is not None
        v.balance_owed, v.state = Decimal("5.14"), "in_review"
        pm = s.get(PaymentMethod, v.payment_method_id)
        assert pm is not None
        pm.provider_ref = "tok_decline_pays"
    page = browser.new_page(viewport={"width": 390, "height": 844})
    refused = csp_watch(page)
    page.goto(f"{shop.url}/app")
    page.evaluate("t => localStorage.setItem('wo-shopper', t)", shop.tokens[name])
    page.reload()
    owed = page.locator("#owed")
    expect(owed).to_be_visible()
    expect(page.locator("#enter")).to_be_hidden()  # no code the gate would refuse
    item = owed.locator(f"li[data-visit='{vid}']")
    expect(item).to_contain_text("5.14 EUR")
    _audit(page, "app: a balance owed")
    item.get_by_role("button", name="Pay 5.14 EUR now with your card").click()
    expect(page.locator("#owed-error")).to_contain_text("add another card")
    page.get_by_label("Pay with another card").fill("tok_visa_pays_new")
    page.get_by_role("button", name="Save the card and pay").click()
    expect(owed).to_be_hidden()
    expect(page.locator("#enter")).to_be_visible()
    expect(page.locator("#qr svg")).to_have_count(1)
    with shop.deps.sessions() as s:
        v = s.get(Visit, vid)
        assert v is not None and v.balance_settlement == "charged" and v.state == "charged"
    got = shop.api("GET", "/v1/ops/payment-attention", shop.operator).json()
    assert vid not in [b["visit_id"] for b in got["owed_balances"]]
    page.close()
    assert refused == [], refused
