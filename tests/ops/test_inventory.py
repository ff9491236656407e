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
