"""The pages' defences, in Debian's Chromium against the real service: security headers on
every response, a dashboard that will not render in another site's frame, a strict
Content-Security-Policy that every page works under, sign-out on each page, revoked tokens
that end open pages at once; and the dispute views operators and shoppers rely on (the
flagged shopper, a dispute a review corrected, the e-mailed "Contest this line" link).

The store here is seeded through the API (no engine): a visit of Ann's with its receipt and
e-mail, Bo with a rejected dispute (so flagged) and an open one, a dispute a review revision
corrected, and one review case in the event log."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from pydantic import SecretStr
from sqlalchemy import update
from tests.web.conftest import call, enter, free_port, leave, serving, sign_up, sqlite_db

from walkout.service.app import create_app
from walkout.service.deps import Deps
from walkout.service.mail import OutboxMailer
from walkout.service.models import Dispute, EngineEvent
from walkout.service.settings import ServiceSettings

ADMIN = "wo_web-security-admin-0123456789abcdef"
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
            "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
Watch = Callable[[Page], list[str]]


@dataclass
class Shop:
    url: str
    deps: Deps
    operator: str
    kiosk: str
    ann: str
    receipt: str  # Ann's
    products: list[str]
    disputes: dict[str, str] = field(default_factory=dict)  # name → dispute id

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        return call(self.url, method, path, token, **kw)

    def staff(self, role: str) -> tuple[str, str]:
        r = self.api("POST", "/v1/admin/staff", ADMIN, json={"role": role, "name": role})
        assert r.status_code == 201, r.text
        return r.json()["account_id"], r.json()["token"]

    def visit(self, email: str, card: str, products: list[str]) -> tuple[str, str]:
        """A shopper's visit taking one of each of ``products``: (their token, receipt id)."""
        tok = sign_up(self.url, email, email[:3], card)
        return tok, leave(self.url, self.operator, enter(self.url, self.operator, tok), products)

    def dispute(self, tok: str, receipt: str, product: str) -> str:
        r = self.api("POST", "/v1/disputes", tok, json={
            "receipt_id": receipt, "product_id": product, "reason": "I put it back"})
        assert r.status_code == 201, r.text
        return str(r.json()["dispute_id"])

    def mail_to(self, email: str) -> Any:
        assert isinstance(self.deps.mailer, OutboxMailer)
        end = time.monotonic() + 15
        while time.monotonic() < end:  # sent right after the exit's answer
            got = [m for m in self.deps.mailer.outbox if m["To"] == email]
            if got:
                return got[0]
            time.sleep(0.1)
        raise AssertionError(f"no receipt e-mail to {email}")


# SQLite is enough: these are the pages' defences, not the database's
db_url = sqlite_db("websec")


@pytest.fixture(scope="module")
def shop(db_url: str) -> Iterator[Shop]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = ServiceSettings(db_url=db_url, entry_secret=SecretStr("w" * 32),
                               bootstrap_admin_token=SecretStr(ADMIN), public_url=url,
                               dispute_flag_rejections=1, retention_check_s=0)
    app = create_app(settings)
    with serving(app, port):
        deps: Deps = app.state.deps
        products = [p.id for p in deps.store.catalogue[:3]]
        shop = Shop(url, deps, "", "", "", "", products)
        shop.operator, shop.kiosk = shop.staff("operator")[1], shop.staff("kiosk")[1]
        shop.ann, shop.receipt = shop.visit("ann@example.org", "tok_visa_ann", products)
        # Ann's third line: a review revision took it off the receipt, which corrected her
        # dispute
        shop.disputes["corrected"] = shop.dispute(shop.ann, shop.receipt, products[2])
        with deps.sessions.begin() as s:
            s.execute(update(Dispute).where(Dispute.id == shop.disputes["corrected"])
                      .values(state="corrected", quantity=0, resolved_at=deps.clock.now()))
        # Bo: one dispute rejected (flagged from one on, here), one open
        bo, bo_receipt = shop.visit("bo@example.org", "tok_visa_bo", products[:2])
        rejected = shop.dispute(bo, bo_receipt, products[0])
        assert shop.api("POST", f"/v1/disputes/{rejected}/decision", shop.operator,
                        json={"decision": "reject", "note": "seen taking it"}).status_code == 200
        shop.disputes["flagged"] = shop.dispute(bo, bo_receipt, products[1])
        # a review case in the event log (its page draws probability bars)
        plate = next(pl.id for g in deps.store.gondolas for sh in g.shelves for pl in sh.plates)
        case = {"case_id": "case-1", "event": {"kind": "pick", "delta_g": -300, "plates": [plate],
                                               "t_start": 10.0, "t_end": 12.0},
                "reasons": ["two shoppers reached"], "sessions": ["s1", "s2"],
                "decided": {"s1": [[products[0], 1]]},
                "hypotheses": [{"items": [[products[0], 1]], "probability": 0.6},
                               {"items": [[products[1], 1]], "probability": 0.4}],
                "hands": [{"session_id": "s1", "probability": 0.7, "reach_m": 0.1},
                          {"session_id": "s2", "probability": 0.3, "reach_m": None}],
                "weights": None, "plate_boxes": {}, "skeletons": {}, "credentials": {}}
        with deps.sessions.begin() as s:
            s.add(EngineEvent(source="sim:websec/evidence", seq=0, kind="review", t=12.0,
                              payload=json.dumps(case), recorded_at=datetime.now(UTC),
                              ref="case-1"))
        yield shop


def _signed_in(page: Page, shop: Shop, token: str | None = None) -> None:
    page.goto(f"{shop.url}/#token={token or shop.operator}")
    expect(page.locator("#tabs")).to_be_visible()


# ---- headers and framing -----------------------------------------------------------------------


def _sign_up(page: Page, who: str) -> None:
    """Sign up in the shopper app and add a card, as a shopper does: the entry QR shows."""
    page.get_by_label("E-mail").fill(f"{who}@example.org")
    page.get_by_label("Name").fill(who.title())
    page.get_by_role("button", name="Sign up").click()
    page.get_by_label("Card token").fill(f"tok_visa_{who}")
    page.get_by_role("button", name="Save payment method").click()
    expect(page.locator("#qr svg")).to_be_visible()


def test_every_response_carries_the_security_headers(shop: Shop) -> None:
    paths = ["/", "/app", "/kiosk", f"/receipts/{shop.receipt}/disputes/new", "/static/app.js",
             "/v1/ops/store", "/health"]
    for path in paths:
        r = shop.api("GET", path, shop.operator)
        assert r.status_code == 200, path
        assert (r.headers.get("content-security-policy"), r.headers.get("x-frame-options"),
                r.headers.get("referrer-policy"), r.headers.get("x-content-type-options")) == (
            PAGE_CSP, "DENY", "no-referrer", "nosniff"), (path, dict(r.headers))
    # the receipt page: no script at all, only its own inline style (by hash)
    r = shop.api("GET", f"/v1/receipts/{shop.receipt}.html", shop.ann)
    csp = r.headers["content-security-policy"]
    assert re.fullmatch(r"default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]+=*'; "
                        r"base-uri 'none'; form-action 'none'; frame-ancestors 'none'", csp), csp
    assert r.headers["x-frame-options"] == "DENY"


def _framing_site(target: str) -> tuple[ThreadingHTTPServer, int]:
    """Another site on the same host (another port) that frames the dashboard."""
    html = (f'<!doctype html><title>Win a prize</title><p>Click the button!</p>'
            f'<iframe id=f src="{target}/" style="width:1200px;height:900px;opacity:0.05">'
            f'</iframe>').encode()

    class Prize(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *a: object) -> None:
            pass

    port = free_port()
    srv = ThreadingHTTPServer(("127.0.0.1", port), Prize)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, port


def test_the_dashboard_will_not_render_in_another_sites_frame(
        shop: Shop, browser: Browser, csp_watch: Watch, waiter: Callable[..., Any]) -> None:
    ctx = browser.new_context()
    page = ctx.new_page()
    _signed_in(page, shop)  # the operator's token is in this browser's localStorage
    srv, port = _framing_site(shop.url)
    try:
        attacker = ctx.new_page()
        refused = csp_watch(attacker)
        attacker.goto(f"http://127.0.0.1:{port}/")
        waiter("Chromium refusing the frame", lambda: [m for m in refused
                                                       if "frame-ancestors" in m], 10)
        frame = attacker.frame_locator("#f")
        expect(frame.locator("#tabs, #signin, #receipts")).to_have_count(0)
    finally:
        srv.shutdown()
        ctx.close()


def test_every_page_works_under_the_policy(shop: Shop, browser: Browser,
                                           csp_watch: Watch) -> None:
    """The pages set no inline script or style: a tour of each, in the states people see it,
    sends the policy and breaks none of it."""
    watched: list[list[str]] = []  # per page, filled as the pages go
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    watched.append(csp_watch(page))
    r = page.goto(f"{shop.url}/#token={shop.operator}")
    assert r is not None and r.headers.get("content-security-policy") == PAGE_CSP
    expect(page.locator("#conn")).to_have_text("live")
    page.get_by_role("tab", name=re.compile("Review queue")).click()
    page.locator("#cases button[data-case='case-1']").click()
    bar = page.locator("#case .hyp .meter > span").first
    expect(bar).to_be_visible()  # its width is set through the CSSOM: no style attribute
    assert bar.evaluate("e => e.getBoundingClientRect().width / "
                        "e.parentElement.getBoundingClientRect().width") == pytest.approx(0.6,
                                                                                         abs=0.02)
    page.get_by_role("tab", name="Receipts & disputes").click()
    page.locator(f"#receipts button[data-receipt='{shop.receipt}']").click()
    expect(page.locator("#receipt li[data-product]").first).to_be_visible()
    for tab in ("Store health", "Analytics"):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(300)
    # the shopper app: sign-up, payment method, the entry QR (server-drawn SVG put in by script)
    app = ctx.new_page()
    watched.append(csp_watch(app))
    r = app.goto(shop.url + "/app")
    assert r is not None and r.headers.get("content-security-policy") == PAGE_CSP
    _sign_up(app, "cy")
    # the kiosk
    kiosk = ctx.new_page()
    watched.append(csp_watch(kiosk))
    kiosk.goto(f"{shop.url}/kiosk#token={shop.kiosk}")
    kiosk.get_by_label("Your e-mail address").fill("ann@example.org")
    kiosk.get_by_role("button", name="Show my receipts").click()
    expect(kiosk.locator(f"article[data-receipt='{shop.receipt}']")).to_be_visible()
    ctx.close()
    # the receipt page, with its inline style allowed by hash
    ctx = browser.new_context(extra_http_headers={"Authorization": f"Bearer {shop.ann}"})
    receipt = ctx.new_page()
    watched.append(csp_watch(receipt))
    receipt.goto(f"{shop.url}/v1/receipts/{shop.receipt}.html")
    expect(receipt.locator("table").first).to_be_visible()  # the lines (the tax follows)
    assert receipt.evaluate("getComputedStyle(document.body).maxWidth") != "none"
    ctx.close()
    refused = [m for seen in watched for m in seen]
    assert not refused, refused


# ---- signing out, revocation ---------------------------------------------------------------


def test_an_operator_signs_out_and_the_next_person_finds_the_sign_in(shop: Shop,
                                                                   browser: Browser) -> None:
    ctx = browser.new_context()
    page = ctx.new_page()
    _signed_in(page, shop)
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#tabs")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('wo-operator')") is None
    later = ctx.new_page()  # the next person at the desk
    later.goto(shop.url + "/")
    expect(later.locator("#signin")).to_be_visible()
    expect(later.locator("#tabs")).to_be_hidden()
    ctx.close()


def test_revoking_an_operator_signs_out_the_open_dashboard(shop: Shop, browser: Browser) -> None:
    acct, tok = shop.staff("operator")
    page = browser.new_page()
    _signed_in(page, shop, tok)
    expect(page.locator("#conn")).to_have_text("live")
    r = shop.api("DELETE", f"/v1/admin/staff/{acct}", ADMIN)
    assert r.status_code == 200 and r.json()["active_tokens"] == 0
    assert shop.api("GET", "/v1/ops/store", tok).status_code == 401
    # its event stream ends; the reconnection is refused, and the page forgets the token
    expect(page.locator("#signin")).to_be_visible(timeout=10_000)
    expect(page.locator("#signin-error")).to_contain_text("revoked")
    expect(page.locator("#tabs")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('wo-operator')") is None
    page.close()


def test_the_kiosk_signs_out_and_asks_again_once_its_token_is_revoked(
        shop: Shop, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(f"{shop.url}/kiosk#token={shop.kiosk}")
    page.get_by_role("button", name="Sign this terminal out").click()
    expect(page.locator("#setup")).to_be_visible()
    expect(page.locator("#lookup")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('wo-kiosk')") is None
    acct, tok = shop.staff("kiosk")  # set up again, then revoked
    page.get_by_label("Kiosk token").fill(tok)
    page.get_by_role("button", name="Start").click()
    assert shop.api("DELETE", f"/v1/admin/staff/{acct}", ADMIN).status_code == 200
    page.get_by_label("Your e-mail address").fill("ann@example.org")
    page.get_by_role("button", name="Show my receipts").click()
    expect(page.locator("#setup")).to_be_visible()
    expect(page.locator("#setup-error")).to_contain_text("revoked")
    assert page.evaluate("localStorage.getItem('wo-kiosk')") is None
    page.close()


def test_a_shopper_signs_out_for_good(shop: Shop, browser: Browser) -> None:
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = ctx.new_page()
    page.goto(shop.url + "/app")
    _sign_up(page, "dee")
    token = page.evaluate("localStorage.getItem('wo-shopper')")
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#signout-confirm")).to_contain_text("no password")
    page.get_by_role("button", name="Sign out for good").click()
    expect(page.get_by_role("button", name="Sign up")).to_be_visible()
    expect(page.locator("#qr")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('wo-shopper')") is None
    assert shop.api("GET", "/v1/me", token).status_code == 401  # revoked, not just forgotten
    ctx.close()


# ---- disputes ----------------------------------------------------------------------------------


def test_the_dispute_list_shows_a_flagged_shopper(shop: Shop, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _signed_in(page, shop)
    page.get_by_role("tab", name="Receipts & disputes").click()
    flagged = page.locator(f"#disputes li[data-dispute='{shop.disputes['flagged']}']")
    expect(flagged.locator(".badge")).to_have_text("flagged")
    expect(flagged.locator(".badge")).to_have_attribute("title", re.compile("1 disputes rejected"))
    ann = page.locator(f"#disputes li[data-dispute='{shop.disputes['corrected']}']")
    expect(ann).to_be_visible()
    expect(ann.locator(".badge")).to_have_count(0)
    page.close()


def test_a_dispute_a_review_corrected_has_nothing_left_to_decide(shop: Shop,
                                                                browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    _signed_in(page, shop)
    page.get_by_role("tab", name="Receipts & disputes").click()
    listed = page.locator(f"#disputes li[data-dispute='{shop.disputes['corrected']}']")
    expect(listed).to_contain_text("corrected by review")
    expect(listed).not_to_contain_text("× 0")
    page.locator(f"#receipts button[data-receipt='{shop.receipt}']").click()
    shown = page.locator(f"#receipt li[data-dispute='{shop.disputes['corrected']}']")
    expect(shown.locator(".state")).to_have_text("corrected by review")
    expect(shown).not_to_contain_text("× 0")
    expect(shown.locator("button")).to_have_count(0)  # no refund, no reject
    page.close()


def test_the_emailed_contest_link_opens_the_dispute_form_of_that_line(
        shop: Shop, browser: Browser) -> None:
    mail = shop.mail_to("ann@example.org")
    html = mail.get_body(("html",)).get_content()
    line = shop.products[0]
    [link] = [h for h in re.findall(r'href="([^"]+)"', html) if h.endswith("=" + line)]
    assert link == f"{shop.url}/receipts/{shop.receipt}/disputes/new?product_id={line}"
    # on another device (no token): where to open it instead, not a new account's sign-up
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(link)
    expect(page.locator("#contest-elsewhere")).to_be_visible()
    expect(page.locator("#signup")).to_be_hidden()
    ctx.close()
    # on Ann's phone: her receipt, the form with that line chosen, the reason to fill in
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = ctx.new_page()
    page.goto(shop.url + "/app")
    page.evaluate(f"localStorage.setItem('wo-shopper', {json.dumps(shop.ann)})")
    page.goto(link)
    expect(page.get_by_label("Line", exact=True)).to_have_value(line)
    expect(page.get_by_label("What happened")).to_be_focused()
    page.get_by_label("What happened").fill("I put it back")
    page.get_by_role("button", name="Contest this line").click()
    expect(page.get_by_role("status").filter(has_text="staff will look")).to_be_visible()
    ctx.close()
    mine = [(d["receipt_id"], d["product_id"], d["state"])
            for d in shop.api("GET", "/v1/disputes", shop.operator).json()]
    assert (shop.receipt, line, "open") in mine


def test_the_kiosk_gets_a_receipts_html_and_pdf_only_through_its_look_up(shop: Shop) -> None:
    """A receipt's HTML and PDF answered shoppers (their own) and operators, never a kiosk,
    so a terminal could not print one. A kiosk gets them while it names the look-up that
    shows the receipt (``X-Kiosk-Email``, ``X-Kiosk-Card``: what the customer gave it), and
    never more: the id alone, or another customer's address or card, answers 404."""
    kiosk = {"Authorization": f"Bearer {shop.kiosk}"}
    found = shop.api("POST", "/v1/kiosk/receipts", shop.kiosk, json={"email": "ann@example.org"})
    assert shop.receipt in [r["receipt_id"] for r in found.json()]
    for key in ({"X-Kiosk-Email": "Ann@Example.org"}, {"X-Kiosk-Card": "tok_visa_ann"}):
        html = httpx.get(f"{shop.url}/v1/receipts/{shop.receipt}.html", headers=kiosk | key)
        assert html.status_code == 200, html.text
        assert shop.receipt in html.text and "script-src" not in html.headers[
            "content-security-policy"]
        pdf = httpx.get(f"{shop.url}/v1/receipts/{shop.receipt}.pdf", headers=kiosk | key)
        assert pdf.status_code == 200, pdf.text
        assert pdf.headers["content-type"] == "application/pdf" and pdf.content[:4] == b"%PDF"
    _, cleo = shop.visit("cleo@example.org", "tok_visa_cleo", shop.products[:1])
    for key in ({}, {"X-Kiosk-Email": "ann@example.org"}, {"X-Kiosk-Card": "tok_visa_ann"}):
        for ext in ("html", "pdf"):
            r = httpx.get(f"{shop.url}/v1/receipts/{cleo}.{ext}", headers=kiosk | key)
            assert r.status_code == 404, (key, ext, r.text)
    assert httpx.get(f"{shop.url}/v1/receipts/{cleo}.html", headers=kiosk | {
        "X-Kiosk-Email": "cleo@example.org"}).status_code == 200
    # nothing else of the receipt API opens to a kiosk
    assert shop.api("GET", f"/v1/receipts/{cleo}", shop.kiosk).status_code == 403
    # the shopper and the operator as before; another shopper's receipt does not exist for her
    assert shop.api("GET", f"/v1/receipts/{cleo}.html", shop.operator).status_code == 200
    assert shop.api("GET", f"/v1/receipts/{cleo}.pdf", shop.ann).status_code == 404
    assert shop.api("GET", f"/v1/receipts/{shop.receipt}.pdf", shop.ann).status_code == 200
