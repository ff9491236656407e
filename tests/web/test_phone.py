"""The shopper's phone and the in-store kiosk when things are not tidy, in Debian's Chromium
against the real service: a database the service cannot read, a network that drops or
stalls (through the relay of ``conftest.Relay``), an entry code that expires while the phone
is cut off, a receipt a review revises while the app shows it, a contested line staff decide,
and the kiosk between two customers.

The store is seeded through the API on SQLite (no engine), as in test_desk."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect
from pydantic import SecretStr
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine, make_url
from tests.web.conftest import (
    Relay,
    RelayedShop,
    free_port,
    serving,
    sqlite_db,
    staff_token,
)

from walkout.service import revisions
from walkout.service.app import create_app
from walkout.service.checkout import LineRequest
from walkout.service.db import make_engine
from walkout.service.deps import Deps
from walkout.service.models import Account, EntryCode, ReceiptLine
from walkout.service.settings import ServiceSettings

ADMIN = "wo_web-phone-admin-0123456789abcdef"
PHONE = {"width": 390, "height": 844}
TTL_S = 8.0  # entry codes rotate quickly here: a test waits for one to expire


@dataclass
class Shop(RelayedShop):
    db_path: str
    engine: Engine
    kiosk: str


db_url = sqlite_db("webphone")


@pytest.fixture(scope="module")
def shop(db_url: str) -> Iterator[Shop]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = ServiceSettings(db_url=db_url, entry_secret=SecretStr("w" * 32),
                               bootstrap_admin_token=SecretStr(ADMIN), retention_check_s=0,
                               entry_code_ttl_s=TTL_S, entry_codes_per_minute=60)
    engine = make_engine(db_url)

    @event.listens_for(engine, "connect", insert=True)  # before the service's own PRAGMAs
    def _short_wait(dbapi_conn: Any, _rec: Any) -> None:
        # a locked database answers in 2 s, not the 30 s a busy store waits for its writers
        dbapi_conn.execute("PRAGMA busy_timeout=2000")

    app = create_app(settings, engine=engine)
    deps: Deps = app.state.deps

    with serving(app, port):
        relay = Relay(port)
        db_path = str(make_url(db_url).database)
        shop = Shop(url, f"http://127.0.0.1:{relay.port}", relay, deps,
                    staff_token(url, ADMIN, "operator", "Operator"),
                    [p.id for p in deps.store.catalogue[:2]], db_path, engine,
                    staff_token(url, ADMIN, "kiosk", "Kiosk"))
        try:
            yield shop
        finally:
            relay.close()


def _audit(page: Page, what: str) -> None:
    """WCAG 2.1 A/AA by axe-core, as test_accessibility audits the pages' other states."""
    res = Axe().run(page, options={"runOnly": {"type": "tag", "values": [
        "wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
    found = [f"{v['id']}: {v['help']} — " + "; ".join(" ".join(n["target"]) for n in v["nodes"])
             for v in res.response["violations"]]
    assert not found, f"{what}: " + "\n".join(found)


def _phone(browser: Browser, shop: Shop, name: str) -> Page:
    """The app on ``name``'s phone (signed up through the API: the token in its storage)."""
    page = browser.new_context(viewport=PHONE).new_page()
    page.goto(shop.page_url + "/app")
    page.evaluate("t => localStorage.setItem('wo-shopper', t)", shop.tokens[name])
    page.reload()
    return page


def _lock_out(shop: Shop) -> sqlite3.Connection:
    """Another program takes the database for itself (an exclusive lock held by a backup or
    a maintenance script): the service's connections, closed first, cannot open it again."""
    for _ in range(40):
        shop.engine.dispose()
        holder = sqlite3.connect(shop.db_path, timeout=0.5, isolation_level=None)
        try:
            holder.execute("PRAGMA locking_mode=EXCLUSIVE")
            holder.execute("BEGIN EXCLUSIVE")
            holder.execute("UPDATE accounts SET display_name = display_name WHERE 0")
            return holder
        except sqlite3.OperationalError:
            holder.close()
            time.sleep(0.1)
    raise AssertionError("could not lock the database")


# ---- the first load fails --------------------------------------------------------------------


def test_the_app_says_why_it_cannot_open_and_opens_once_it_can(shop: Shop,
                                                              browser: Browser) -> None:
    """The app's first look at the account (``GET /v1/app/cart``) failing with anything but a
    401 left the phone with an empty page, for good: no reason, no retry. It says what went
    wrong, tries again, and opens by itself once the service answers."""
    shop.shopper("lock-ann")
    page = browser.new_context(viewport=PHONE).new_page()
    page.goto(shop.page_url + "/app")
    page.evaluate("t => localStorage.setItem('wo-shopper', t)", shop.tokens["lock-ann"])
    holder = _lock_out(shop)
    try:
        page.reload()
        problem = page.locator("#load-error")
        expect(problem).to_be_visible(timeout=15_000)
        expect(problem).to_contain_text("Could not open your account: Internal Server Error")
        expect(problem.get_by_role("button", name="Try again now")).to_be_visible()
        _audit(page, "the app that cannot open the account")
    finally:
        holder.rollback()
        holder.close()
    expect(page.locator("#qr svg")).to_be_visible(timeout=20_000)
    expect(problem).to_be_hidden()
    page.context.close()


# ---- the entry code --------------------------------------------------------------------------


def _codes(shop: Shop, name: str) -> list[float]:
    """When each of the account's entry codes was issued (s since the first)."""
    with shop.deps.sessions() as s:
        aid = s.scalar(select(Account.id).where(Account.email == f"{name}@example.org"))
        at = sorted(s.scalars(select(EntryCode.issued_at).where(EntryCode.account_id == aid)))
    return [(t - at[0]).total_seconds() for t in at]


def test_the_app_asks_for_one_code_at_a_time(shop: Shop, browser: Browser) -> None:
    """Opening the app asked for two entry codes at once (its first look at the cart and its
    stream's first event each started one while the other was under way): each spends the
    account's rate limit (6 a minute), and two countdowns then ran side by side."""
    shop.shopper("once-bo")
    page = _phone(browser, shop, "once-bo")
    expect(page.locator("#qr svg")).to_be_visible()
    expect(page.locator("#conn")).to_have_text("live")
    time.sleep(1.0)
    # one code at a time: the next only as the rotation's, 3 s before the one shown expires
    # (TTL_S - 3 s after it), which a busy machine can reach before it gets here
    issued = _codes(shop, "once-bo")
    assert issued[:1] == [0.0] and all(b - a >= TTL_S - 4.0 for a, b in pairwise(issued)), \
        issued
    page.context.close()


def test_a_code_that_expired_while_the_phone_was_cut_off_is_not_shown(
        shop: Shop, browser: Browser) -> None:
    """The network stalls (the phone between Wi-Fi and mobile data) as the code nears its
    expiry: the request for the next one hangs, and the page kept showing the expired code
    under "A new code in 3 s", for as long as the request hung — a code the gate refuses.
    The countdown runs on: the expired code leaves the screen, the page says why, and a new
    one comes once the network is back."""
    shop.shopper("exp-cy")
    page = _phone(browser, shop, "exp-cy")
    expect(page.locator("#qr svg")).to_be_visible()
    shop.relay.stall()
    try:
        expect(page.locator("#qr svg")).to_be_hidden(timeout=(TTL_S + 2) * 1000)
        expect(page.locator("#qr-expiry")).to_contain_text(re.compile("expired|Getting a code"))
        expect(page.locator("#qr-error")).to_contain_text("did not answer", timeout=15_000)
        expect(page.locator("#qr-expiry")).to_contain_text("This code expired")
    finally:
        shop.relay.up()
    expect(page.locator("#qr svg")).to_be_visible(timeout=20_000)
    expect(page.locator("#qr-error")).to_have_text("")
    page.context.close()


# ---- receipts ------------------------------------------------------------------------------


def test_a_receipt_revised_by_a_review_shows_revised_at_once(shop: Shop,
                                                              browser: Browser) -> None:
    """A review verdict takes a line off an issued receipt (as the engine worker applies it:
    ``revisions.add_review_lines`` then ``revise``). The app reloaded receipts only when
    their number changed, so the open receipt and the list kept the total as first issued
    until the shopper reloaded the page; the e-mail of the revision said otherwise."""
    vid, rid = shop.visit("rev-di")
    page = _phone(browser, shop, "rev-di")
    page.locator(f"#my-receipts button[data-receipt='{rid}']").click()
    before = shop.api("GET", f"/v1/receipts/{rid}", shop.tokens["rev-di"]).json()["total"]
    expect(page.locator("#my-receipt tfoot")).to_contain_text(before)
    expect(page.locator("#conn")).to_have_text("live")
    p0 = shop.products[0]
    revisions.add_review_lines(shop.deps, vid, [LineRequest(f"review:{vid}:{p0}", p0, -1, "rv")])
    revisions.revise(shop.deps, vid, needs_review=False)
    after = shop.api("GET", f"/v1/receipts/{rid}", shop.tokens["rev-di"]).json()["total"]
    assert after != before
    expect(page.locator("#my-receipt tfoot")).to_contain_text(after, timeout=10_000)
    expect(page.locator(f"#my-receipts button[data-receipt='{rid}']")).to_contain_text(after)
    expect(page.locator(f"#my-receipt tbody tr[data-product='{p0}']")).to_have_count(0)
    page.context.close()


def test_a_contested_line_shows_its_answer(shop: Shop, browser: Browser) -> None:
    """The app thanked the shopper and said staff would "answer by e-mail", but no e-mail
    tells her a dispute's outcome, and the app never showed it: opened again, the receipt
    offered the same line's form, which the service then refused (409 already disputed).
    The line now says it is contested, then what staff decided (refunded, and how much), and
    is no longer offered for contesting; the other line still is."""
    _, rid = shop.visit("dsp-ed")
    p0, p1 = shop.products
    page = _phone(browser, shop, "dsp-ed")
    page.locator(f"#my-receipts button[data-receipt='{rid}']").click()
    page.get_by_label("Line", exact=True).select_option(p0)
    page.get_by_label("What happened").fill("I put it back")
    page.get_by_role("button", name="Contest this line").click()
    contested = page.locator(f"#my-disputes li[data-product='{p0}']")
    expect(contested).to_contain_text("staff are looking at it", timeout=10_000)
    expect(page.get_by_label("Line", exact=True).locator("option")).to_have_count(1)
    expect(page.get_by_label("Line", exact=True).locator(f"option[value='{p1}']")).to_have_count(1)
    page.get_by_label("What happened").fill("half written")  # a refresh keeps it
    did = next(x["dispute_id"] for x in shop.api("GET", "/v1/disputes", shop.operator).json()
               if x["receipt_id"] == rid)
    r = shop.api("POST", f"/v1/disputes/{did}/decision", shop.operator,
                 json={"decision": "refund", "note": "seen on the shelf camera"})
    assert r.status_code == 200, r.text
    refund = r.json()["refund"]
    expect(contested).to_contain_text(f"refunded {refund['amount']} {refund['currency']}",
                                      timeout=10_000)
    expect(page.get_by_label("What happened")).to_have_value("half written")
    expect(page.locator("#my-receipt")).not_to_contain_text("seen on the shelf camera")
    _audit(page, "the app with a contested line answered")
    page.context.close()


# ---- the kiosk between two customers --------------------------------------------------------


def test_the_kiosk_forgets_the_last_customer_a_minute_after_the_last_touch(
        shop: Shop, browser: Browser) -> None:
    """The kiosk cleared the receipts a minute after a look-up, but nothing before one: an
    address typed and never sent (the customer changed her mind, or was called away) stayed
    in the field for the next customer to read, or to send and see her receipts. Now a
    minute after the last touch the kiosk forgets it all; receipts being read stay while
    the customer is still using the kiosk."""
    _, rid = shop.visit("kio-fay")
    page = browser.new_context(viewport={"width": 1080, "height": 1920}).new_page()
    page.clock.install()
    page.goto(f"{shop.page_url}/kiosk#token={shop.kiosk}")
    address = page.get_by_label("Your e-mail address")
    address.fill("kio-fay@example.org")  # ... and she walks away without sending it
    page.clock.run_for(61_000)
    expect(address).to_have_value("")
    # the next customer looks her receipts up and reads them
    address.fill("kio-fay@example.org")
    page.get_by_role("button", name="Show my receipts").click()
    found = page.locator(f"#found article[data-receipt='{rid}']")
    expect(found).to_be_visible()
    page.clock.run_for(50_000)
    page.keyboard.press("PageDown")  # still reading
    page.clock.run_for(50_000)
    expect(found).to_be_visible()
    page.clock.run_for(15_000)
    expect(page.locator("#found")).to_be_hidden()
    expect(address).to_have_value("")
    page.context.close()


def test_the_kiosk_prints_the_receipt_chosen(shop: Shop, browser: Browser) -> None:
    """The kiosk showed receipts but could not print one. Each has a Print button; the
    page prints that receipt alone, without the look-up, the buttons or the other receipts
    (the print stylesheet; ``window.print`` stubbed, as a headless browser has no dialog)."""
    _, first = shop.visit("prn-kai")
    _, second = shop.visit("prn-kai")
    page = browser.new_context(viewport={"width": 1080, "height": 1920}).new_page()
    page.add_init_script("""window.__printed = [];
        window.print = () => window.__printed.push([...document.querySelectorAll('#found article')]
            .filter(a => !a.classList.contains('no-print')).map(a => a.dataset.receipt));""")
    page.goto(f"{shop.page_url}/kiosk#token={shop.kiosk}")
    page.get_by_label("Your e-mail address").fill("prn-kai@example.org")
    page.get_by_role("button", name="Show my receipts").click()
    older = page.locator(f"#found article[data-receipt='{first}']")
    expect(older).to_be_visible()
    expect(page.locator("#found").get_by_role("button", name="Print")).to_have_count(2)
    older.get_by_role("button", name="Print").click()
    assert page.evaluate("window.__printed") == [[first]]
    expect(page.locator("#found article.no-print")).to_have_count(0)  # all shown again
    _audit(page, "the kiosk with printable receipts")
    page.emulate_media(media="print")
    for hidden in (page.get_by_role("button", name="Print").first,
                   page.get_by_role("button", name="Done"),
                   page.get_by_label("Your e-mail address"),
                   page.get_by_role("button", name="Sign this terminal out")):
        expect(hidden).to_be_hidden()
    expect(page.locator(f"#found article[data-receipt='{second}'] table.rc")).to_be_visible()
    expect(page.locator("h1")).to_be_visible()  # the store's name heads the page
    page.context.close()


# ---- what the names hold ---------------------------------------------------------------------


def test_a_long_product_name_fits_the_phone_and_markup_stays_text(
        shop: Shop, browser: Browser, shot: Callable[[Page, str], Path]) -> None:
    """A catalogue name is the store's text: long, unbroken (an EAN-like code, a URL), or
    with markup in it. The phone (390 px) shows it whole, without a page that scrolls
    sideways, and markup as the characters it is."""
    _, rid = shop.visit("long-gus")
    long = "WholegrainOrganicSourdoughSandwichLoafSliced800gFamilyPack" * 2
    odd = '<img src=x onerror="document.title=1">'
    p0, p1 = shop.products
    with shop.deps.sessions.begin() as s:
        s.execute(update(ReceiptLine).where(ReceiptLine.receipt_id == rid,
                                            ReceiptLine.product_id == p0).values(name=long))
        s.execute(update(ReceiptLine).where(ReceiptLine.receipt_id == rid,
                                            ReceiptLine.product_id == p1).values(name=odd))
    page = _phone(browser, shop, "long-gus")
    page.locator(f"#my-receipts button[data-receipt='{rid}']").click()
    expect(page.locator(f"#my-receipt tbody tr[data-product='{p0}']")).to_contain_text(long)
    expect(page.locator(f"#my-receipt tbody tr[data-product='{p1}']")).to_contain_text(odd)
    assert shop.api("POST", "/v1/disputes", shop.tokens["long-gus"], json={
        "receipt_id": rid, "product_id": p0, "reason": "not mine"}).status_code == 201
    expect(page.locator(f"#my-disputes li[data-product='{p0}']")).to_contain_text(long)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, "app-long-names")
    assert page.title() != "1"
    page.context.close()


# ---- her data: a copy, and erasure ----------------------------------------------------------


def test_the_app_saves_a_copy_of_her_data(shop: Shop, browser: Browser) -> None:
    """``GET /v1/me/export`` existed, but the app offered no way to it, and the shopper has no
    password and never sees her token: she could not ask for her own data. "Download my
    data" saves it as a file."""
    vid, rid = shop.visit("data-gil")
    page = _phone(browser, shop, "data-gil")
    with page.expect_download() as got:
        page.get_by_role("button", name="Download my data").click()
    download = got.value
    assert download.suggested_filename.endswith(".json")
    data = json.loads(Path(download.path()).read_text())
    assert data["account"]["email"] == "data-gil@example.org"
    assert [v["visit_id"] for v in data["visits"]] == [vid]
    assert rid in json.dumps(data["receipts"])
    expect(page.locator("#export-error")).to_have_text("")
    page.context.close()


def test_she_deletes_her_account_from_the_app(shop: Shop, browser: Browser) -> None:
    """``DELETE /v1/me`` existed but the app did not offer it. It asks first, saying what is
    kept (receipts, pseudonymised) and when it is refused; once done the app forgets the
    token and is back at the sign-up, saying so."""
    shop.visit("gone-hal")
    tok = shop.tokens["gone-hal"]
    aid = shop.api("GET", "/v1/me", tok).json()["account_id"]
    page = _phone(browser, shop, "gone-hal")
    expect(page.locator("#conn")).to_have_text("live")
    page.get_by_role("button", name="Delete my account").click()
    confirm = page.locator("#erase-confirm")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("receipts and payments are kept")
    expect(confirm).to_contain_text("inside the store")
    expect(page.get_by_role("button", name="Keep my account")).to_be_focused()
    _audit(page, "the app asking before it deletes the account")
    page.get_by_role("button", name="Keep my account").click()  # changed her mind, once
    expect(confirm).to_be_hidden()
    assert shop.api("GET", "/v1/me", tok).status_code == 200
    page.get_by_role("button", name="Delete my account").click()
    page.get_by_role("button", name="Delete my account for good").click()
    expect(page.locator("#signup")).to_be_visible(timeout=10_000)
    expect(page.locator("#signup-note")).to_contain_text("Your account was deleted")
    assert page.evaluate("localStorage.getItem('wo-shopper')") is None
    expect(page.locator("#receipts-card")).to_be_hidden()
    assert shop.api("GET", "/v1/me", tok).status_code == 401
    with shop.deps.sessions() as s:
        gone = s.get(Account, aid)
        assert gone is not None and gone.erased_at is not None and gone.email is None
    page.context.close()


def test_a_refused_erasure_says_why_and_keeps_her_signed_in(shop: Shop,
                                                            browser: Browser) -> None:
    """Erasure is refused while she is inside the store (409 ``visit_in_progress``): the app
    says the service's reason and stays signed in, the account whole."""
    tok = shop.shopper("in-ida")
    code = shop.api("POST", "/v1/me/entry-code", tok).json()["code"]
    vid = shop.api("POST", "/v1/gates/entry/scan", shop.operator,
                   json={"code": code}).json()["visit_id"]
    page = _phone(browser, shop, "in-ida")
    expect(page.locator("#cart")).to_be_visible()
    page.get_by_role("button", name="Delete my account").click()
    page.get_by_role("button", name="Delete my account for good").click()
    expect(page.locator("#erase-error")).to_have_text(
        "Your account was not deleted: you are inside the store: ask again after you have left.")
    _audit(page, "the app refusing to delete the account")
    page.reload()
    expect(page.locator("#cart")).to_be_visible()
    assert page.evaluate("localStorage.getItem('wo-shopper')") == tok
    assert shop.api("GET", "/v1/me", tok).json()["email"] == "in-ida@example.org"
    assert shop.api("POST", f"/v1/visits/{vid}/exit", shop.operator).status_code == 200
    page.context.close()
