"""Restocking on the real shelf stage and engine (simulated plate readings): a closed store's
weight changes are stock moves, counted past a shopper's ``max_quantity``; what no product
fits is an inventory case whose verdict moves stock and charges nobody."""

from __future__ import annotations

from collections.abc import Callable

from walkout.engine import Engine
from walkout.events import ShelfEvent
from walkout.review import Verdict
from walkout.shelf import ShelfConfig
from walkout.shelf.decide import choose_stock
from walkout.sim.loadcell import PlateInteraction
from walkout.store.model import Store

Touch = Callable[..., PlateInteraction]
Plates = Callable[..., object]
RunEngine = Callable[..., Engine]


def test_a_closed_store_restock_of_20_items_raises_the_inventory_and_reviews_nothing(
    touch: Touch, plates: Plates, run_engine: RunEngine
) -> None:
    """20 × B (120 g) on P2: far above max_quantity (6), a tray of stock, not a grab."""
    eng = run_engine(plates([touch("P2", 10.0, 20 * 120.0, dur=4.0)], 30.0), closed=True)
    (d,) = eng.decisions
    assert d.stock and not d.needs_review and d.items == (("B", -20),)
    assert eng.shelf.inventory.count(["P2"], "B") == 8 + 20
    assert not eng.cases and eng.ledger.entries() == []
    assert [a.kind for a in eng.alerts] == ["store_closed"]


def test_the_same_restock_on_an_open_store_goes_to_review(
    touch: Touch, plates: Plates, run_engine: RunEngine
) -> None:
    """Without restock mode nobody's hand explains it: a review case, the shelf unchanged."""
    eng = run_engine(plates([touch("P2", 10.0, 20 * 120.0, dur=4.0)], 30.0))
    (d,) = eng.decisions
    assert d.needs_review and not d.stock
    assert eng.shelf.inventory.count(["P2"], "B") == 8


def test_a_closed_store_removal_lowers_the_inventory_and_is_alerted(
    touch: Touch, plates: Plates, run_engine: RunEngine
) -> None:
    eng = run_engine(plates([touch("P3", 10.0, -3 * 200.0)], 30.0), closed=True)
    (d,) = eng.decisions
    assert d.stock and d.items == (("C", 3),)
    assert eng.shelf.inventory.count(["P3"], "C") == 3
    assert [a.kind for a in eng.alerts] == ["store_closed", "stock_removed"]
    assert eng.ledger.entries() == []


def test_a_weight_no_product_fits_is_an_inventory_case_settled_without_a_charge(
    touch: Touch, plates: Plates, run_engine: RunEngine
) -> None:
    """+777 g on P2 (B weighs 120 g: 6.5 items) fits nothing: an inventory case naming the
    store's pseudo-session; its verdict moves the stock, and no cart line is ever written."""
    eng = run_engine(plates([touch("P2", 10.0, 777.0)], 30.0), closed=True)
    (case,) = eng.cases.values()
    assert case.sessions == ("store",) and eng.shelf.inventory.count(["P2"], "B") == 8
    assert "no product listed" in case.reasons[0]
    assert eng.resolve(case.case_id, Verdict({"store": (("B", 6),)}, reviewer="op")) == []
    assert eng.shelf.inventory.count(["P2"], "B") == 14
    assert eng.ledger.entries() == [] and eng.receipts == {}


def test_reopening_the_store_ends_restock_mode(
    touch: Touch, plates: Plates, run_engine: RunEngine
) -> None:
    eng = run_engine(plates([touch("P2", 10.0, 10 * 120.0, dur=4.0),
                             touch("P2", 40.0, 10 * 120.0, dur=4.0)], 60.0),
                     closed=True, reopen_at=30.0)
    first, second = eng.decisions
    assert first.stock and not first.needs_review
    assert not second.stock and second.needs_review
    assert eng.closed_at(20.0) and not eng.closed_at(35.0)


def test_staff_counts_go_past_max_quantity_and_doubt_is_reviewed(store: Store) -> None:
    cfg = ShelfConfig()
    var = 2.0 * 1.5**2 + 1.0

    def ev(delta: float, plate: str = "P2") -> ShelfEvent:
        return ShelfEvent("e", 0.0, 1.0, (plate,), delta, (), var)

    c = choose_stock(ev(23 * 120.0 + 3.0), store, cfg, {"B": 8})
    assert c.hypothesis is not None and c.hypothesis.items == (("B", 23),)
    assert not c.needs_review and c.hypothesis.quantity > cfg.max_quantity
    assert choose_stock(ev(777.0), store, cfg, {"B": 8}).hypothesis is None
    # 400 items of 120 g ± 2 g spread by ± 40 g: half an item over, 400 and 401 fit alike
    doubt = choose_stock(ev(400 * 120.0 + 60.0), store, cfg, {"B": 8})
    assert doubt.needs_review and "so does" in doubt.reasons[0]
    # a foreign product the inventory says lies there (D, 410 g) explains a removal too
    d = choose_stock(ev(-2 * 410.0, "P1"), store, cfg, {"A": 3, "D": 2})
    assert d.hypothesis is not None and d.hypothesis.items == (("D", 2),)
