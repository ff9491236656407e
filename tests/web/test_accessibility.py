"""Every page, in the states people see it, passes an automated WCAG 2.1 A/AA audit (axe-core,
run in Debian's Chromium): the shopper app on a phone, the kiosk, and each dashboard tab with
live data and an open review case. An audit is not a usability study, but what it finds (a
control without a name, text that does not stand out from its background, a landmark missing)
shuts people out, and no release should bring one back. The same tour listens for anything the
pages' Content-Security-Policy refuses: in these states too, they must need nothing it forbids."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from walkout.bench.durability import fresh_databases

if TYPE_CHECKING:
    from web.conftest import Store

TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
PHONE = {"width": 390, "height": 844}
Watch = Callable[[Page], list[str]]


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SQLite store is enough here: the pages do not depend on the database."""
    with fresh_databases(None, tmp_path_factory.mktemp("a11y"), names=("a11y",)) as (url,):
        yield url


def audit(page: Page, what: str) -> None:
    """Fail with every violation's rule, impact and first elements, so the fix is obvious."""
    res = Axe().run(page, options={"runOnly": {"type": "tag", "values": TAGS}})
    found = res.response["violations"]
    lines = [f"{v['id']} ({v['impact']}): {v['help']} — "
             + "; ".join(" ".join(n["target"]) for n in v["nodes"][:4]) for v in found]
    assert not found, f"{what}: {len(found)} accessibility violation(s):\n" + "\n".join(lines)


def test_shopper_app_on_a_phone(store: Store, browser: Browser, csp_watch: Watch) -> None:
    ctx = browser.new_context(viewport=PHONE, is_mobile=True)
    page = ctx.new_page()
    refused = csp_watch(page)
    page.goto(store.url + "/app")
    expect(page.get_by_label("E-mail")).to_be_visible()
    audit(page, "app: sign-up")
    page.get_by_label("E-mail").fill("grace@example.org")
    page.get_by_label("Name").fill("Grace")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_label("Card token").fill("tok_visa_grace")
    page.get_by_label("Label").fill("Visa ending 1111")
    page.get_by_role("button", name="Save payment method").click()
    expect(page.locator("#qr svg")).to_be_visible()
    audit(page, "app: entry code")
    ctx.close()
    assert not refused, refused


def test_kiosk(store: Store, browser: Browser, csp_watch: Watch) -> None:
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    refused = csp_watch(page)
    page.goto(f"{store.url}/kiosk#token={store.kiosk}")
    expect(page.get_by_label("Your e-mail address")).to_be_visible()
    audit(page, "kiosk")
    page.close()
    assert not refused, refused


def test_dashboard_every_tab_with_live_data(store: Store, browser: Browser,
                                            csp_watch: Watch) -> None:
    store.runner.go.set()  # the store opens: people, events, then a review case
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    refused = csp_watch(page)
    page.goto(f"{store.url}/#token={store.operator}")
    expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
    expect(page.locator("#map g.person").first).to_be_visible(timeout=30_000)
    expect(page.locator("#events li").first).to_be_visible(timeout=30_000)
    audit(page, "dashboard: live store")
    page.get_by_role("tab", name=re.compile("Review queue")).click()
    expect(page.locator("#cases button").first).to_be_visible(timeout=90_000)
    page.locator("#cases button").first.click()
    expect(page.locator("#case .hyp").first).to_be_visible()
    audit(page, "dashboard: review case")
    for tab in ("Receipts & disputes", "Store health", "Analytics"):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(600)
        audit(page, f"dashboard: {tab}")
        if tab == "Store health":  # the confirmation before closing for restocking
            page.get_by_role("button", name="Close for restocking…").click()
            expect(page.locator("#mode-confirm")).to_be_visible()
            audit(page, "dashboard: closing the store for restocking")
            page.get_by_role("button", name="Cancel").click()
    page.close()
    assert not refused, refused
