"""The Store health tab says that receipts are not going out while the mail server refuses the
store's own settings, through the real service, a real SMTP server (aiosmtpd, refusing the
sender as tests/service/test_mail_config_errors' does) and Debian's Chromium.

The service raises one alert when it starts (``mail_refused``) and one when it ends
(``mail_back``); an operator acknowledging the first, or one opening the dashboard later, had
nothing telling them that no receipt e-mail went out, or why. Now ``GET /v1/ops/health``
carries the fault (``mail.fault``) from its ``mail_refused`` until its ``mail_back``, and the
Store health tab shows it with the server's answer, the e-mails waiting, and a badge on the
tab.

The store is seeded through the API on SQLite (no engine), as in test_desk."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Page, expect
from pydantic import SecretStr
from tests.service.test_mail_config_errors import Strict
from tests.web.conftest import (
    Relay,
    RelayedShop,
    free_port,
    serving,
    sqlite_db,
    staff_token,
    wait_for,
)
from tests.web.test_accessibility import audit

from walkout.service import receipting
from walkout.service.app import create_app
from walkout.service.deps import Deps
from walkout.service.settings import ServiceSettings
from walkout.service.testing import MAIL_SENDER

ADMIN = "wo_web-mail-admin-0123456789abcdef"
REFUSAL = f"553 5.7.1 <{MAIL_SENDER}>: sender address not owned by the login"


@dataclass
class Shop(RelayedShop):
    smtp: Strict | None = None

    def health(self) -> dict[str, Any]:
        r = self.api("GET", "/v1/ops/health", self.operator)
        assert r.status_code == 200, r.text
        return dict(r.json())


db_url = sqlite_db("webmail")


@pytest.fixture(scope="module")
def shop(db_url: str) -> Iterator[Shop]:
    smtp, smtp_port = Strict(), free_port()
    controller = Controller(smtp, hostname="127.0.0.1", port=smtp_port, authenticator=smtp,
                            auth_require_tls=False)
    controller.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = ServiceSettings(db_url=db_url, entry_secret=SecretStr("w" * 32),
                               bootstrap_admin_token=SecretStr(ADMIN), retention_check_s=0,
                               housekeeping_s=0,  # the test sends what waits, when it says
                               smtp_host="127.0.0.1", smtp_port=smtp_port,
                               mail_sender=MAIL_SENDER)
    app = create_app(settings)
    try:
        with serving(app, port):
            relay = Relay(port)
            deps: Deps = app.state.deps
            shop = Shop(url, f"http://127.0.0.1:{relay.port}", relay, deps,
                        staff_token(url, ADMIN, "operator", "Desk One"),
                        [p.id for p in deps.store.catalogue[:1]], smtp=smtp)
            try:
                yield shop
            finally:
                relay.close()
    finally:
        controller.stop()


def _health_tab(browser: Browser, shop: Shop) -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(f"{shop.page_url}/#token={shop.operator}")
    expect(page.locator("#conn")).to_have_text("live")
    return page


def test_the_health_tab_shows_the_mail_fault_while_it_lasts(
        shop: Shop, browser: Browser, shot: Callable[[Page, str], Path]) -> None:
    smtp = shop.smtp
    assert smtp is not None
    assert shop.health()["mail"] == {"smtp": True, "fault": None}

    smtp.sender_reply = REFUSAL
    shop.visit("ann")  # its receipt's e-mail is refused at the exit
    fault = wait_for("the mail fault", lambda: shop.health()["mail"]["fault"], 30)
    assert "553 5.7.1" in fault["message"] and "WALKOUT_MAIL_SENDER" in fault["message"]
    assert fault["waiting"] == 1 and fault["acked"] is None and fault["since"]
    alerts = shop.api("GET", "/v1/ops/alerts", shop.operator).json()
    assert [a["id"] for a in alerts if a["kind"] == "mail_refused"] == [fault["alert_id"]]

    page = _health_tab(browser, shop)
    tab = page.get_by_role("tab", name=re.compile("^Store health"))
    expect(page.locator("#mail-count")).to_be_visible()  # seen from the Live store tab
    tab.click()
    box = page.locator("#mail-fault")
    expect(box).to_contain_text("receipts not going out")
    expect(box).to_contain_text("The mail server refuses the store's sender")
    expect(box).to_contain_text(REFUSAL)
    expect(page.locator("#mail-waiting")).to_have_text("1 e-mail waiting")
    expect(page.locator("#problem")).to_be_hidden()
    audit(page, "dashboard: Store health with the receipt e-mail refused")
    shot(page, "dashboard-health-mail-refused")

    # acknowledging the alert does not end the fault; another receipt waits behind it
    r = shop.api("POST", f"/v1/ops/alerts/{fault['alert_id']}/ack", shop.operator,
                 json={"note": "asked the provider"})
    assert r.status_code == 200, r.text
    shop.visit("bo")
    again = wait_for("two e-mails waiting",
                     lambda: (f := shop.health()["mail"]["fault"]) and f["waiting"] == 2 and f)
    assert again["alert_id"] == fault["alert_id"] and again["acked"]["by_name"] == "Desk One"
    expect(box).to_contain_text("acknowledged by Desk One", timeout=10_000)
    page.get_by_role("tab", name=re.compile("^Live store")).click()
    tab.click()  # shown again: as it stands
    expect(page.locator("#mail-waiting")).to_have_text("2 e-mails waiting")

    # the sender is accepted again: everything goes out, mail_back, and the tab says so live
    smtp.sender_reply = None
    assert receipting.resume_mail(shop.deps) == 2  # what a restart does
    assert sorted(str(m["To"]) for m in smtp.messages) == ["ann@example.org",
                                                           "bo@example.org"]
    assert shop.health()["mail"] == {"smtp": True, "fault": None}
    expect(page.locator("#mail-fault")).to_have_count(0, timeout=10_000)
    expect(page.locator("#mail-ok")).to_contain_text("the mail server takes the store's e-mail")
    expect(page.locator("#mail-count")).to_be_hidden()
    page.context.close()
