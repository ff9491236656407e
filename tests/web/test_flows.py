"""The three flows of issue 7 in a real browser (Chromium via Playwright) on a live simulated
store: a shopper's visit from sign-up to the e-mailed receipt; the dashboard's map following
the shoppers; an operator deciding a review case, and the receipt following the verdict.

One store serves the module (see conftest). What a test needs of it is a fixture of the
module: ``ada`` (she signed up in the app and the gate admitted her, which opens the store)
and ``shopping_done`` (the simulated period is over), each made once, by whichever test asks
first. So any test runs alone (``-k``) or with the others, in file order."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import func, select

from walkout.checkout.tax import percent
from walkout.perception.evidence import EvidenceRecorder
from walkout.service.models import EngineEvent, RunnerCheckpoint

if TYPE_CHECKING:
    from web.conftest import Store

Shot = Callable[[Page, str], Path]
Wait = Callable[..., Any]

EMAIL = "ada@example.org"
PHONE = {"width": 390, "height": 844}


def _chosen(store: Store) -> str:
    """The simulated shopper whose gate scan will carry the app's code: the first to leave
    with something in the cart (the ground truth, never shown to the engine)."""
    exits = {c: r for c, r in store.session.truth.receipts.items() if sum(r.values()) > 0}
    entries = [g.credential for g in store.session.gates if g.kind == "entry"]
    return next(c for c in entries if c in exits)


@dataclass
class Shopper:
    """Ada on her phone, in the shopper app, admitted at the entry gate."""

    context: BrowserContext
    page: Page


@pytest.fixture(scope="module")
def ada(store: Store, browser: Browser, shot: Shot) -> Iterator[Shopper]:
    """Ada signs up in the app, saves a card and shows her entry QR code, which the entry gate
    scans: the store opens (the engine was waiting for that scan). Made once per store, for
    every test that needs the store open, shoppers on the map, receipts."""
    ctx = browser.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True)
    page = ctx.new_page()
    page.goto(store.url + "/app")
    page.get_by_label("E-mail").fill(EMAIL)
    page.get_by_label("Name").fill("Ada")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_label("Card token").fill("tok_visa_ada")
    page.get_by_label("Label").fill("Visa ending 4242")
    page.get_by_role("button", name="Save payment method").click()
    qr = page.locator("#qr svg")
    expect(qr).to_be_visible()
    shot(page, "app-entry-qr")
    code = page.locator("#qr").get_attribute("data-code")
    assert code and code.count(".") >= 1
    # the simulated entry gate scans the phone; its GateEvent for the engine names the
    # simulated shopper who walks in, so the engine binds that person to this account
    credential = _chosen(store)
    r = store.api("POST", "/v1/gates/entry/scan", store.operator,
                  json={"code": code, "credential": credential})
    assert r.status_code == 201, r.text
    store.runner.go.set()  # the store opens
    try:
        yield Shopper(ctx, page)
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def shopping_done(store: Store, ada: Shopper, waiter: Wait) -> None:
    """The simulated period is over: the stream ended, every receipt is issued (the held ones
    as under review)."""
    def ended() -> bool:
        with store.deps.sessions() as s:
            cp = s.scalar(select(RunnerCheckpoint))
            return cp is not None and cp.t >= store.session.duration_s - 1e-6
    waiter("the end of the simulated stream", ended, 120)


def test_shopper_signs_up_enters_shops_and_gets_the_receipt(
        store: Store, ada: Shopper, browser: Browser, shot: Shot, waiter: Wait) -> None:
    page = ada.page
    # inside: the QR gives way to the live cart, which fills as the engine sees picks
    expect(page.locator("#cart")).to_be_visible(timeout=15_000)
    expect(page.locator("#cart-lines li[data-product]").first).to_be_visible(timeout=60_000)
    shot(page, "app-live-cart")
    # out: the receipt appears by itself (SSE), and the e-mail is in the SMTP server
    receipt = page.locator("#my-receipts button").first
    expect(receipt).to_be_visible(timeout=90_000)
    receipt.click()
    table = page.locator("#my-receipt table.rc")
    expect(table).to_be_visible()
    mail = waiter("the receipt e-mail", lambda: [m for m in store.inbox.messages
                                                    if m["To"] == EMAIL], 30)[0]
    total = table.locator("tfoot th.num").inner_text()
    amount = total.split()[0]
    assert amount in mail["Subject"], (total, mail["Subject"])
    assert Decimal(amount) > 0
    got = store.api("GET", "/v1/receipts", _token(page)).json()
    assert len(got) == 1 and got[0]["total"] == amount
    # prices include tax: the receipt shows it per rate, as the API computed it
    assert got[0]["tax"], "the small store itemises tax"
    rows = page.locator("#my-receipt table.tax tbody tr")
    expect(rows).to_have_count(len(got[0]["tax"]))
    t = got[0]["tax"][0]
    expect(rows.first.locator("td")).to_have_text(
        [t["tax_class"], percent(Decimal(t["rate"])), t["net"], t["tax"], t["gross"]])
    expect(page.locator("#my-receipt")).not_to_contain_text("null")  # absent parts skipped
    shot(page, "app-receipt")
    # contest a line: the dispute reaches the operators
    line = got[0]["lines"][0]
    page.get_by_label("Line", exact=True).select_option(line["product_id"])
    page.get_by_label("What happened").fill("I put it back")
    page.get_by_role("button", name="Contest this line").click()
    expect(page.get_by_role("status").filter(has_text="staff will look")).to_be_visible()
    disputes = store.api("GET", "/v1/disputes", store.operator).json()
    assert [(d["receipt_id"], d["product_id"]) for d in disputes] == [
        (got[0]["receipt_id"], line["product_id"])]
    ada.context.close()
    # the kiosk finds the same receipt by the address
    kiosk = browser.new_page(viewport={"width": 1024, "height": 768})
    kiosk.goto(f"{store.url}/kiosk#token={store.kiosk}")
    kiosk.get_by_label("Your e-mail address").fill(EMAIL.upper())
    kiosk.get_by_role("button", name="Show my receipts").click()
    found = kiosk.locator(f"article[data-receipt='{got[0]['receipt_id']}']")
    expect(found).to_be_visible()
    expect(found.locator("tfoot")).to_contain_text(amount)
    shot(kiosk, "kiosk")
    kiosk.close()


def _token(page: object) -> str:
    return str(page.evaluate("localStorage.getItem('wo-shopper')"))  # type: ignore[attr-defined]


@pytest.mark.usefixtures("ada")
def test_dashboard_map_shows_the_shoppers_moving(store: Store, browser: Browser,
                                                 shot: Shot, waiter: Wait) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{store.url}/#token={store.operator}")
    expect(page.locator("#conn")).to_have_text("live", timeout=15_000)
    marks = page.locator("#map g.person")
    expect(marks.first).to_be_visible(timeout=20_000)

    def where() -> dict[str, tuple[float, float]]:
        return {g["track"]: (float(g["x"]), float(g["y"])) for g in page.eval_on_selector_all(
            "#map g.person", "gs => gs.map(g => ({track: g.dataset.track, x: g.dataset.x, "
            "y: g.dataset.y}))")}

    before = where()
    page.wait_for_timeout(2500)
    after = where()
    both = set(before) & set(after)
    assert both, (before, after)
    moved = [t for t in both if abs(before[t][0] - after[t][0]) + abs(before[t][1] - after[t][1])
             > 0.05]
    assert moved, f"nobody moved on the map: {before} → {after}"
    # a bound shopper carries a pseudonym, never a name or an address
    labels = page.locator("#people li").all_inner_texts()
    assert labels and not any("@" in x or "Ada" in x for x in labels)
    assert any(re.match(r"acct-[0-9a-f]{6}|s\d{5}", x) for x in labels), labels
    expect(page.locator("#events li").first).to_be_visible()
    waiter("a pick in the event stream", lambda: page.locator("#events li[data-kind=pick]").count(),
           60)
    # newest first by store time, though a pick is decided seconds after later gate passes
    ts = [float(t) for t in page.eval_on_selector_all(
        "#events li", "ls => ls.map(l => l.dataset.t)")]
    assert len(ts) > 1 and ts == sorted(ts, reverse=True), ts
    shot(page, "dashboard-live")
    # the event stream filters
    page.get_by_role("checkbox", name="picks", exact=True).uncheck()
    assert page.locator("#events li[data-kind=pick]:visible").count() == 0
    page.get_by_role("checkbox", name="picks", exact=True).check()
    # alerts: one acknowledged with its button, one by another operator (the API), which the
    # page learns of from the stream's "changed"
    ids = [_alert(store, seq, kind) for seq, kind in ((90_000, "hand_over"),
                                                       (90_001, "plate_dead"))]
    mine, theirs = (page.locator(f"#events li[data-alert='{i}']") for i in ids)
    expect(mine.get_by_role("button", name="Acknowledge this alert")).to_be_visible(
        timeout=10_000)
    mine.get_by_role("button", name="Acknowledge this alert").click()
    expect(mine).to_have_class(re.compile(r"\backed\b"))
    expect(mine).to_contain_text("acknowledged by")
    expect(mine.get_by_role("button")).to_have_count(0)
    r = store.api("POST", f"/v1/ops/alerts/{ids[1]}/ack", store.operator, json={"note": "seen"})
    assert r.status_code == 200 and r.json()["acked"]["note"] == "seen", r.text
    expect(theirs).to_contain_text("(seen)", timeout=10_000)
    expect(theirs).to_have_class(re.compile(r"\backed\b"))
    page.close()


def _alert(store: Store, seq: int, kind: str) -> int:
    """An engine alert in the event log as ``live._alert_rows`` writes it, at the latest
    store time (the top of the dashboard's event stream); returns its event id."""
    with store.deps.sessions.begin() as s:
        t = s.scalar(select(func.max(EngineEvent.t))) or 0.0
        row = EngineEvent(source="web:test/alerts", seq=seq, kind=kind, t=t, ref=None,
                          recorded_at=store.deps.clock.now(), payload=json.dumps(
                              {"t": t, "kind": kind, "message": f"a {kind} alert",
                               "subject": ""}))
        s.add(row)
        s.flush()
        return row.id


@pytest.mark.usefixtures("shopping_done")
def test_operator_decides_a_review_case_and_the_receipt_follows(
        store: Store, browser: Browser, shot: Shot, waiter: Wait) -> None:
    cases = store.api("GET", "/v1/ops/reviews", store.operator).json()
    assert cases and cases[0]["state"] == "open", cases
    case = store.api("GET", f"/v1/ops/reviews/{cases[0]['case_id']}", store.operator).json()
    charged = {sid: items for sid, items in case["decided"].items() if items}
    assert charged, case
    sid = next(iter(charged))
    receipt_id = waiter("the charged shopper's receipt", lambda: store.api(
        "GET", f"/v1/ops/reviews/{case['case_id']}", store.operator).json()
        ["people"][sid]["receipt_id"], 30)
    before = store.api("GET", f"/v1/ops/receipts/{receipt_id}", store.operator).json()
    assert before["under_review"] and before["state"] == "in_review"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{store.url}/#token={store.operator}")
    page.get_by_role("tab", name=re.compile("Review queue")).click()
    expect(page.locator("#review-count")).to_have_text(re.compile(r"[1-9]"))
    # a blurred camera clip `walkout evidence` cut around the case (here: 1 s of grey)
    rec = EvidenceRecorder(store.deps.settings.evidence_dir, fps=10, pre_s=0.5, post_s=0.5)
    rec.request(f"{case['case_id']}-cam1", 0.5)
    for k in range(12):
        rec.push(k / 10, np.full((96, 160, 3), 20 * k, np.uint8))
    assert len(rec.written) == 1
    page.locator(f"#cases button[data-case='{case['case_id']}']").click()
    # Chromium plays it (WebM/VP8), fetched with the operator's token
    expect(page.locator("#case video")).to_have_count(1)
    video = page.locator("#case video")
    waiter("the clip's metadata in the player",
           lambda: video.evaluate("v => v.readyState") >= 1, 15)  # CDP: the page's CSP stays
    assert httpx.get(f"{store.url}/v1/ops/clips/{case['case_id']}-cam1.webm").status_code == 401
    assert store.api("GET", "/v1/ops/clips/..%2Fweb.db", store.operator).status_code == 404
    # the evidence: weight plot, hypotheses with scores, the animated replay
    expect(page.locator("#case svg.plot polyline").first).to_be_visible()
    expect(page.locator("#case .hyp").first).to_be_visible()
    frame0 = page.locator("#replay .replay-clock").text_content()
    page.wait_for_timeout(400)
    assert page.locator("#replay line").count() > 0
    assert page.locator("#replay .replay-clock").text_content() != frame0  # it plays
    shot(page, "dashboard-review")
    # the verdict: nobody took it — the line leaves the receipt, the money comes back
    page.get_by_role("button", name="Nothing was taken").click()
    expect(page.locator("#case [role=status]")).to_contain_text("applied", timeout=30_000)

    def revised() -> dict[str, object] | None:
        r = store.api("GET", f"/v1/ops/receipts/{receipt_id}", store.operator).json()
        return r if not r["under_review"] else None
    after = waiter("the revised receipt", revised, 30)
    gone = dict(charged[sid])
    was = {ln["product_id"]: ln["quantity"] for ln in before["lines"]}
    now = {ln["product_id"]: ln["quantity"] for ln in after["lines"]}  # type: ignore[index]
    for pid, q in gone.items():
        assert now.get(pid, 0) == was.get(pid, 0) - q, (was, now, gone)
    assert Decimal(after["total"]) < Decimal(before["total"])  # type: ignore[arg-type]
    refunds = [c for c in after["charges"] if c["kind"] == "refund"]  # type: ignore[index]
    assert refunds and refunds[0]["status"] == "succeeded"
    assert Decimal(refunds[0]["amount"]) == Decimal(before["total"]) - Decimal(after["total"])  # type: ignore[arg-type]
    # the receipts page shows it settled
    page.get_by_role("tab", name="Receipts & disputes").click()
    page.get_by_label("Receipt id, e-mail or product").fill(receipt_id[:10])
    page.get_by_role("button", name="Search").click()
    page.locator(f"#receipts button[data-receipt='{receipt_id}']").click()
    expect(page.locator("#receipt")).to_contain_text(str(after["total"]))
    expect(page.locator("#receipt .state").first).to_have_text("charged")
    expect(page.locator("#receipt")).not_to_contain_text("null")
    shot(page, "dashboard-receipts")
    for tab in ("Store health", "Analytics"):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(600)
        if tab == "Store health":  # the recording's repeated plate sample, said to the operator
            expect(page.locator("#inputs .input-problem")).to_contain_text(
                "1 repeated plate samples dropped")
        else:  # Store health's, with stock moves and the store closed: the next test
            shot(page, "dashboard-analytics")
    assert page.locator("#heat rect[fill^='rgba']").count() > 0
    assert page.locator("#bars rect").count() > 0
    # sales of the store's days: the visits of this test are today's, in the totals
    expect(page.locator("#sales tbody tr")).to_have_count(7)
    expect(page.locator("#sales tfoot th")).to_have_text("Total")
    expect(page.locator("#sales-zone")).to_contain_text("Europe/Paris")
    assert int(page.locator("#sales tfoot td").first.inner_text()) >= 1  # visits
    assert page.locator("#hours rect[height]:not([height='0'])").count() >= 1
    expect(page.locator("#top-products li").first).to_contain_text("sold")
    page.close()
    assert json.loads(json.dumps(after))  # plain JSON all the way
    assert httpx.get(store.url + "/health").json() == {"status": "ok"}


def _stock_decision(store: Store, seq: int, t: float, kind: str, plates: list[str],
                    item: tuple[str, int], session_id: str | None) -> None:
    """A staff hand's (or a closed store's) stock move as the runner logs it."""
    now = store.deps.clock.now()
    ref = f"night-{seq}"
    with store.deps.sessions.begin() as s:
        s.add(EngineEvent(source="night:web/shelf", seq=seq, kind=kind, t=t, ref=ref,
                          recorded_at=now, payload=json.dumps(
                              {"event_id": ref, "plates": plates, "delta_g": 0.0})))
        s.add(EngineEvent(source="night:web/decisions", seq=seq, kind="decision", t=t, ref=ref,
                          recorded_at=now, payload=json.dumps(
                              {"event_id": ref, "session_id": session_id, "confidence": 1.0,
                               "scores": [], "items": [list(item)], "takers": [],
                               "needs_review": False, "stock": True, "reasons": []})))


@pytest.mark.usefixtures("shopping_done")
def test_operator_closes_the_store_for_restocking_and_sees_the_stock_moves(
        store: Store, browser: Browser, shot: Shot,
        csp_watch: Callable[[Page], list[str]]) -> None:
    """After the shopping: the Store health tab lists the stock moves (a staff restock, then a
    removal on the store closed) newest first; the operator closes the store for restocking,
    confirming first, and opens it again."""
    entry = store.session.store.planogram[0]
    product = store.session.store.products[entry.product]
    end = store.session.duration_s
    _stock_decision(store, 0, end + 5.0, "put", list(entry.plates), (product.id, -24), "s00099")
    _stock_decision(store, 1, end + 9.0, "pick", list(entry.plates), (product.id, 2), None)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    refused = csp_watch(page)
    page.goto(f"{store.url}/#token={store.operator}")
    page.get_by_role("tab", name="Store health").click()
    moves = page.locator("#stock-moves li")
    expect(moves).to_have_count(2)
    expect(moves.nth(0)).to_contain_text(f"\u22122 × {product.name}")
    expect(moves.nth(0)).to_contain_text("store closed")
    expect(moves.nth(1)).to_contain_text(f"+24 × {product.name}")
    expect(moves.nth(1)).to_contain_text("staff s00099")
    expect(moves.nth(1)).to_contain_text(", ".join(entry.plates))
    status = page.locator("#mode-status")
    expect(status).to_have_attribute("data-mode", "open")
    # closing asks first, and says whether shoppers are inside; cancelling changes nothing
    page.get_by_role("button", name="Close for restocking…").click()
    expect(page.locator("#mode-confirm")).to_be_visible()
    expect(page.locator("#mode-inside")).to_have_attribute("data-count", re.compile(r"^\d+$"))
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#mode-confirm")).to_have_count(0)
    assert store.api("GET", "/v1/store-mode", store.operator).json()["closed"] is False
    page.get_by_role("button", name="Close for restocking…").click()
    page.get_by_label("Note (optional)").fill("night restock")
    page.get_by_role("button", name="Close the store", exact=True).click()
    expect(status).to_have_attribute("data-mode", "closed")
    expect(status).to_contain_text("closed for restocking")
    expect(status).to_contain_text("set by operator")  # the staff account's name
    expect(status).to_contain_text("night restock")
    mode = store.api("GET", "/v1/store-mode", store.operator).json()
    assert (mode["closed"], mode["set_by_name"], mode["note"]) == (True, "operator",
                                                                   "night restock")
    expect(page.locator("#store-mode")).not_to_contain_text("null")
    shot(page, "dashboard-health")
    page.get_by_role("button", name="Open the store again").click()
    expect(status).to_have_attribute("data-mode", "open")
    expect(page.get_by_role("button", name="Close for restocking…")).to_be_visible()
    assert store.api("GET", "/v1/store-mode", store.operator).json()["closed"] is False
    assert refused == []
    page.close()
