"""The plate inventory an operator restocks by: it must follow what physically left or
reached each plate, whoever the engine (or a reviewer) says did it."""

from __future__ import annotations

from collections.abc import Callable

from walkout.engine import Engine
from walkout.events import GateEvent, PlateBlock
from walkout.review import Verdict
from walkout.sim.loadcell import PlateInteraction

Touch = Callable[..., PlateInteraction]
Plates = Callable[..., PlateBlock]
RunEngine = Callable[..., Engine]
SCAN = GateEvent(1.0, "in", "entry", "qr-1")  # a session to name (nobody is seen entering)


def test_a_verdict_on_a_pick_nobody_was_seen_making_takes_the_item_once(
    touch: Touch, plates: Plates, run_engine: RunEngine
) -> None:
    """The pick was decided (product known, taker not): the item left the shelf then. The
    verdict only says who took it; the plate must not lose the item a second time."""
    eng = run_engine(plates([touch("P1", 10.0, -300.0)], 30.0), [SCAN])
    (case,) = eng.cases.values()
    assert case.decided == {} and eng.shelf.inventory.count(["P1"], "A") == 2
    sid = next(iter(eng.book.sessions))
    eng.resolve(case.case_id, Verdict({sid: (("A", 1),)}, reviewer="op"))
    assert eng.ledger.contents(sid) == {"A": 1}
    assert eng.shelf.inventory.count(["P1"], "A") == 2


def test_a_verdict_on_a_put_nobody_was_seen_making_adds_the_item_once(
    touch: Touch, plates: Plates, run_engine: RunEngine
) -> None:
    eng = run_engine(plates([touch("P2", 10.0, 120.0)], 30.0), [SCAN])
    (case,) = eng.cases.values()
    assert eng.shelf.inventory.count(["P2"], "B") == 9
    sid = next(iter(eng.book.sessions))
    eng.resolve(case.case_id, Verdict({sid: (("B", 1),)}, reviewer="op"))
    assert eng.shelf.inventory.count(["P2"], "B") == 9


def test_a_pick_beyond_the_recorded_stock_is_alerted_for_a_count(
    touch: Touch, plates: Plates, run_engine: RunEngine
) -> None:
    """P1 holds 3 × A by the record; a fourth A leaves it. The record cannot go below zero, so
    it says "none left" while the shelf obviously had one more: stock arrived unrecorded. Staff
    are told to count the facing (before, nothing was said and the count stayed wrong)."""
    eng = run_engine(plates([touch("P1", 10.0 * k, -300.0) for k in range(1, 5)], 60.0), [SCAN])
    assert [d.items for d in eng.decisions] == [(("A", 1),)] * 4
    (alert,) = [a for a in eng.alerts if a.kind == "inventory_mismatch"]
    assert alert.subject == "P1" and 35.0 < alert.t < 45.0
    assert "1 × A taken from plate(s) P1 beyond the 0 the record held" in alert.message
    assert eng.shelf.inventory.count(["P1"], "A") == 0
