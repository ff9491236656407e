"""Restocks and removals in the browser: the live event stream labels them as such (not as
put-backs and picks) and names the associate by their staff account, as do the live map and the
Store health tab's stock moves; a closed store's moves say so; shoppers stay unnamed.

The rows are written into the event log as the engine worker writes them (a staff session
``s00042`` opened by Bo's badge, Bo's restock and removal, a closed store's removal, a
shopper's pick, Bo's ``stock_removed`` alert, the map's positions); this module's store never
starts its engine, so they are all the stream carries."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from walkout.bench.durability import fresh_databases
from walkout.service.models import EngineEvent

if TYPE_CHECKING:
    from collections.abc import Iterator

    from web.conftest import Store

ADMIN = "wo_web-test-admin-0123456789abcdef"  # the bootstrap admin token of conftest's store
RUN = "night:labels"
STAFF, SHOPPER = "s00042", "s00007"


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLite only: what is shown here does not depend on the database (the flows' module
    runs on both)."""
    with fresh_databases(None, tmp_path_factory.mktemp("labels"), names=("labels",)) as (url,):
        yield url


def _log(store: Store, rows: list[tuple[str, int, str, float, Any, str | None]]) -> None:
    """Event-log rows ``(source suffix, seq, kind, t, payload, ref)`` of the run ``RUN``."""
    now = store.deps.clock.now()
    with store.deps.sessions.begin() as s:
        for sub, seq, kind, t, payload, ref in rows:
            s.add(EngineEvent(source=f"{RUN}/{sub}", seq=seq, kind=kind, t=t, ref=ref,
                              recorded_at=now, payload=json.dumps(payload)))


def _decision(seq: int, t: float, kind: str, item: tuple[str, int], session: str | None,
              stock: bool, plates: list[str]) -> list[tuple[str, int, str, float, Any, str]]:
    ref = f"labels-{seq}"
    return [("shelf", seq, kind, t, {"event_id": ref, "plates": plates, "delta_g": 0.0}, ref),
            ("decisions", seq, "decision", t,
             {"event_id": ref, "session_id": session, "confidence": 1.0, "scores": [],
              "items": [list(item)], "takers": [], "needs_review": False, "stock": stock,
              "reasons": []}, ref)]


def test_restocks_and_removals_are_labelled_and_name_the_associate(
        store: Store, browser: Browser, shot: Callable[[Page, str], Path],
        csp_watch: Callable[[Page], list[str]]) -> None:
    r = httpx.post(store.url + "/v1/admin/staff", json={"role": "operator", "name": "Bo Stock"},
                   headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201, r.text
    badge = f"staff:{r.json()['account_id']}"
    entry = store.session.store.planogram[0]
    product = store.session.store.products[entry.product]
    plates = list(entry.plates)
    rm = f"staff session {STAFF} removed 2 × {product.id} from plate(s) {', '.join(plates)}"
    _log(store, [
        ("staff", 0, "staff_session", 10.0, {"session_id": STAFF, "credential": badge}, STAFF),
        ("gates", 0, "entry", 10.0, {"t": 10.0, "gate_id": "entry", "kind": "entry",
                                     "credential": badge, "party_size": 1}, None),
        ("gates", 1, "entry", 11.0, {"t": 11.0, "gate_id": "entry", "kind": "entry",
                                     "credential": "qr-labels-1", "party_size": 1}, None),
        *_decision(0, 20.0, "put", (product.id, -24), STAFF, True, plates),
        *_decision(1, 24.0, "pick", (product.id, 2), STAFF, True, plates),
        *_decision(2, 26.0, "pick", (product.id, 1), SHOPPER, False, plates),
        *_decision(3, 28.0, "pick", (product.id, 3), None, True, plates),
        ("alerts", 0, "stock_removed", 24.0, {"t": 24.0, "kind": "stock_removed",
                                              "message": rm + " (expired or damaged stock?)",
                                              "subject": STAFF}, STAFF),
        ("live", 0, "positions", 30.0, {"t0": 25.0, "t1": 30.0, "people": [
            {"track": 1, "session": STAFF, "credential": badge, "staff": True, "cart": 0,
             "left": False, "alert": False, "pts": [[t, 3.0, 3.0] for t in (25.0, 27.5, 30.0)]},
            {"track": 2, "session": SHOPPER, "credential": "qr-labels-1", "staff": False,
             "cart": 1, "left": False, "alert": False,
             "pts": [[t, 5.0, 5.0] for t in (25.0, 27.5, 30.0)]}]}, None),
    ])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    refused = csp_watch(page)
    page.goto(f"{store.url}/#token={store.operator}")
    events = page.locator("#events li")
    restock = events.filter(has=page.locator(".k.restock"))
    expect(restock).to_have_count(1)
    expect(restock).to_contain_text(f"24 × {product.name}")
    expect(restock).to_contain_text("Bo Stock (staff)")
    expect(restock.locator(".k")).to_have_text("restock")
    removal = events.filter(has=page.locator(".k.removal"))
    expect(removal).to_have_count(2)  # Bo's, and the closed store's
    expect(removal.filter(has_text="Bo Stock (staff)")).to_contain_text(f"2 × {product.name}")
    expect(removal.filter(has_text="store closed")).to_contain_text(f"3 × {product.name}")
    # nothing of it is a pick or a put-back; the shopper's pick still is, unnamed
    picks = events.filter(has=page.locator(".k.pick"))
    expect(picks).to_have_count(1)
    expect(picks).to_contain_text(SHOPPER)
    expect(events.filter(has=page.locator(".k.put"))).to_have_count(0)
    # the badge at the gate and the alert about the removal name Bo, not a session or account
    expect(events.filter(has_text="Bo Stock (staff)")).to_have_count(4)
    expect(events.filter(has_text=badge)).to_have_count(0)
    expect(events.filter(has_text="stock_removed")).to_contain_text(
        "Bo Stock (staff) removed 2 ×")
    expect(events.filter(has_text="qr-labels-1")).to_have_count(1)  # a shopper, as before
    # restocks and removals filter apart from picks and put-backs
    page.get_by_label("restocks and removals").uncheck()
    expect(restock).to_be_hidden()
    expect(picks).to_be_visible()
    page.get_by_label("restocks and removals").check()
    expect(restock).to_be_visible()
    # the map: Bo by name, in staff colours; the shopper by session id
    expect(page.locator("#people")).to_contain_text("Bo Stock (staff)")
    expect(page.locator("#map g.person[data-staff=true]")).to_have_count(1)
    expect(page.locator(f"#map g.person[data-session={SHOPPER}]")).to_contain_text(SHOPPER)
    shot(page, "dashboard-stock-labels")
    # Store health: the stock moves name Bo (and the session), a closed store's say so
    page.get_by_role("tab", name="Store health").click()
    moves = page.locator("#stock-moves li")
    expect(moves).to_have_count(3)
    expect(moves.nth(0)).to_contain_text("store closed")
    expect(moves.nth(1)).to_contain_text(f"staff Bo Stock ({STAFF})")
    expect(moves.nth(2)).to_contain_text(f"staff Bo Stock ({STAFF})")
    expect(moves.nth(2)).to_contain_text(f"+24 × {product.name}")
    assert refused == []
    page.close()
