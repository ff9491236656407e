"""Review cases of one id in two engine streams, on the dashboard in Debian's Chromium against
the real service. A case id is ``<plate>-<stream time>``, and recordings and simulations start
their clocks at 0 each time they are served, so two streams of one database can each have a
case of the id (tests/service/test_review_streams serves one scene twice to make one). The
service knows a case by its stream and id (``?stream=``, 409 ``ambiguous_case`` without it
where the id is in two streams); the dashboard asked for the id alone, so neither case opened
(a banner said the id was ambiguous) and neither could be decided.

The two cases are logged here as the engine logs them (``<stream>/evidence`` rows); their
streams' names hold characters a URL must encode. On SQLite (no engine), as in test_desk."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select
from tests.web.conftest import (
    RelayedShop,
    relayed_shop,
    sqlite_db,
)
from tests.web.test_accessibility import audit

from walkout.service.models import EngineEvent, ReviewVerdict

ADMIN = "wo_web-streams-admin-0123456789abcdef"
CASE = "g1-s1-p1-63.2"
#: two runs of one recording; '#', '&', '+' and ' ' mean something else in a URL
DAY1, DAY2 = "rec:corner #1 & co", "rec:corner +2"
#: what tells the two cases apart on screen: their shoppers and the engine's reasons
SESSIONS = {DAY1: ["s00004", "s00005"], DAY2: ["s00104", "s00105"]}
REASONS = {DAY1: "two shoppers reached (monday)", DAY2: "same weight, other product (tuesday)"}

db_url = sqlite_db("webstreams")


@pytest.fixture(scope="module")
def shop(db_url: str) -> Iterator[RelayedShop]:
    with relayed_shop(db_url, ADMIN, RelayedShop) as shop:
        for i, stream in enumerate((DAY1, DAY2)):
            _log_case(shop, stream, t=63.2 + i)
        yield shop


def _log_case(shop: RelayedShop, stream: str, t: float) -> None:
    """Case ``CASE`` of ``stream`` in the event log, as the engine logs one."""
    plate = next(pl.id for g in shop.deps.store.gondolas for sh in g.shelves for pl in sh.plates)
    p0, p1 = shop.products
    s1, s2 = SESSIONS[stream]
    case = {"case_id": CASE, "event": {"kind": "pick", "delta_g": -300, "plates": [plate],
                                       "t_start": 61.0, "t_end": 63.2},
            "reasons": [REASONS[stream]], "sessions": [s1, s2], "decided": {s1: [[p0, 1]]},
            "hypotheses": [{"items": [[p0, 1]], "probability": 0.6},
                           {"items": [[p1, 1]], "probability": 0.4}],
            "hands": [{"session_id": s1, "probability": 0.7, "reach_m": 0.1},
                      {"session_id": s2, "probability": 0.3, "reach_m": None}],
            "weights": None, "plate_boxes": {}, "skeletons": {}, "credentials": {}}
    with shop.deps.sessions.begin() as s:
        s.add(EngineEvent(source=f"{stream}/evidence", seq=0, kind="review", t=t,
                          payload=json.dumps(case), ref=CASE,
                          recorded_at=shop.deps.clock.now()))


def _verdicts(shop: RelayedShop) -> dict[str, dict[str, list[list[object]]]]:
    """stream → the shares of its verdict on ``CASE``."""
    with shop.deps.sessions() as s:
        return {v.source: json.loads(v.shares) for v in s.scalars(
            select(ReviewVerdict).where(ReviewVerdict.case_id == CASE))}


def _button(page: Page, stream: str) -> object:
    return page.locator(f"#cases button[data-case='{CASE}'][data-stream='{stream}']")


def test_a_case_id_in_two_streams_opens_and_is_decided_in_each(
        shop: RelayedShop, browser: Browser, shot: Callable[[Page, str], Path]) -> None:
    """Both cases are listed, each naming its stream; each opens as itself, and each verdict
    is recorded on its own stream's case (the other stays open, and is decided on its own)."""
    p0, p1 = shop.products
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url) if "/v1/ops/reviews/" in r.url else None)
    page.goto(f"{shop.page_url}/#token={shop.operator}")
    expect(page.locator("#conn")).to_have_text("live")
    page.get_by_role("tab", name=re.compile("Review queue")).click()
    expect(page.locator(f"#cases button[data-case='{CASE}']")).to_have_count(2)
    for stream in (DAY1, DAY2):
        expect(_button(page, stream)).to_contain_text(stream)  # told apart in the list

    pane = page.locator("#case")
    _button(page, DAY2).click()
    expect(pane.locator("h2")).to_have_text(f"Case {CASE}")
    expect(pane).to_contain_text(REASONS[DAY2])
    expect(pane).to_contain_text(DAY2)
    expect(pane.locator(f"input[name=who][value={SESSIONS[DAY2][1]}]")).to_have_count(1)
    expect(page.locator("#problem")).to_be_hidden()
    expect(_button(page, DAY2)).to_have_attribute("aria-current", "true")
    expect(_button(page, DAY1)).not_to_have_attribute("aria-current", "true")
    audit(page, "dashboard: a case whose id is in two streams")
    shot(page, "dashboard-case-of-two-streams")

    pane.get_by_role("button", name="Nothing was taken").click()
    expect(pane.locator(".verdict")).to_contain_text("nothing was taken")
    assert _verdicts(shop) == {DAY2: {}}
    expect(_button(page, DAY2).locator(".state")).to_have_text("decided")
    expect(_button(page, DAY1).locator(".state")).to_have_text("open")

    _button(page, DAY1).click()
    expect(pane).to_contain_text(REASONS[DAY1])
    expect(pane.locator("form")).to_have_count(1)  # its own case: not decided
    pane.locator(f"input[name=who][value={SESSIONS[DAY1][1]}]").check()
    pane.locator("input[name=what][value='1']").check()
    pane.get_by_label("Note (why)").fill("camera 2")
    pane.get_by_role("button", name="Charge the chosen shopper").click()
    expect(pane.locator(".verdict")).to_contain_text(SESSIONS[DAY1][1])
    assert _verdicts(shop) == {DAY2: {}, DAY1: {SESSIONS[DAY1][1]: [[p1, 1]]}}
    expect(page.locator("#problem")).to_be_hidden()
    expect(_button(page, DAY1).locator(".state")).to_have_text("decided")
    # every read and decision of a case named its stream, encoded
    assert urls and all(re.search(r"[?&]stream=rec%3Acorner(%20|\+)", u) for u in urls), urls
    assert p0 != p1
    page.context.close()
