"""A shelf stage restocked from a health row (``ShelfStage.restock``, ``Engine.restock``): a new
stream after one whose engine state was lost goes on with the stock and the learned products
that stream left, not the planogram's opening stock; a row another store file wrote, or a
damaged one, is taken where it fits and skipped where it does not, never raised."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from walkout.engine import Engine, EngineConfig
from walkout.events import PlateBlock
from walkout.review import Verdict
from walkout.service.live import _inventory, _learned
from walkout.shelf import ShelfConfig, ShelfStage
from walkout.shelf.decide import choose
from walkout.shelf.inventory import PlateInventory, Stock, read_stock
from walkout.store.model import Store

from .conftest import Sim, Touch, split_block

CFG = ShelfConfig()


def _picked(stage: ShelfStage, block: PlateBlock) -> list[Any]:
    """The stage over ``block``, each event decided and applied as the engine does."""
    events = []
    for b in split_block(block, 1.0):
        for ev in stage.process(b):
            c = choose(ev, stage.store, CFG)
            if c.hypothesis is not None and not c.needs_review:
                for pid, q in c.hypothesis.items:
                    stage.apply(ev.event_id, pid, -q)
            events.append(ev)
    return events + stage.flush()


def test_a_restocked_stage_goes_on_with_the_stock_and_what_picks_taught_the_plates(
        store: Store, sim: Sim, touch: Touch) -> None:
    """The first stream: two A taken from S1-P1 and one H, which S1-P1 does not list (the
    plate learns it holds H). The next stream's stage, restocked from it, holds 8 A there and
    explains the next 410 g pick as an ordinary H; one started from the planogram holds 10 A
    and takes the same pick for an unlisted one (a planogram alert)."""
    first = ShelfStage(store, CFG)
    _picked(first, sim([touch("S1-P1", 3.0, -600.0), touch("S1-P1", 14.0, -410.0)],
                       duration_s=26.0))
    assert first.inventory.count(["S1-P1"], "A") == 8 and first.learned == {"S1-P1": {"H"}}
    again = sim([touch("S1-P1", 3.0, -411.0)], duration_s=15.0)

    restocked = ShelfStage(store, CFG)
    restocked.restock(Stock(first.inventory.snapshot(), first.learned))
    assert restocked.inventory.snapshot() == first.inventory.snapshot()
    assert restocked.learned == first.learned
    (ev,) = _picked(restocked, again)
    assert not ev.unlisted and ev.hypotheses[0].items == (("H", 1),)
    assert [a.kind for a in restocked.alerts] == []

    fresh = ShelfStage(store, CFG)
    assert fresh.inventory.count(["S1-P1"], "A") == 10
    (ev,) = _picked(fresh, again)
    assert ev.unlisted and [a.kind for a in fresh.alerts] == ["planogram_mismatch"]


def test_a_stage_is_restocked_before_its_first_block_only(store: Store, sim: Sim) -> None:
    stage = ShelfStage(store, CFG)
    stage.process(split_block(sim([], duration_s=3.0), 1.0)[0])
    with pytest.raises(RuntimeError, match="before its first block"):
        stage.restock(Stock())


def test_a_row_from_another_store_file_or_damaged_is_taken_where_it_fits(
        store: Store) -> None:
    """Unknown plates and products, counts that are no counts, negative or absurd, a facing
    this planogram no longer has and an entry given twice are skipped, each said; a facing
    the row lacks keeps the planogram's stock; what fits is stocked."""
    rows: list[Any] = [
        {"plates": ["S1-P1"], "product": "A", "count": 3, "misplaced": False},
        {"plates": ["S1-P4", "S1-P3"], "product": "D", "count": 0, "misplaced": False},
        {"plates": ["S2-P2"], "product": "H", "count": 2, "misplaced": True},
        {"plates": ["S9-P1"], "product": "A", "count": 1, "misplaced": False},
        {"plates": ["S1-P2"], "product": "Z", "count": 1, "misplaced": True},
        {"plates": ["S1-P2"], "product": "B", "count": -4, "misplaced": False},
        {"plates": ["S1-P2"], "product": "C", "count": 2.5, "misplaced": False},
        {"plates": ["S2-P1"], "product": "E", "count": True, "misplaced": False},
        {"plates": ["S2-P1"], "product": "F", "count": 10**9, "misplaced": False},
        {"plates": ["S2-P2"], "product": "A", "count": 4, "misplaced": False},  # moved facing
        {"plates": ["S1-P1"], "product": "A", "count": 7, "misplaced": False},  # twice
        {"plates": [], "product": "A", "count": 1},
        "not an entry",
    ]
    learned = {"S1-P1": ["H", "Q"], "S7-P7": ["H"]}
    stock, skipped = read_stock(store, rows, learned)
    assert stock.counts == {("S1-P1",): {"A": 3}, ("S1-P3", "S1-P4"): {"D": 0},
                            ("S2-P2",): {"H": 2}}
    assert stock.learned == {"S1-P1": {"H"}}
    said = "\n".join(skipped)
    for why in ("'S9-P1' is not in the store", "'Z' is not in the catalogue", "negative count",
                "2.5 is not a whole number", "True is not a whole number", "kg a plate",
                "no longer has this facing", "listed twice", "no plates", "not an inventory "
                "entry", "'Q' of plate S1-P1", "plate 'S7-P7'"):
        assert why in said, why
    # B, C, E, F and G were skipped or missing: their planogram stock stands, and is said
    for p in ("B", "C", "E", "F", "G"):
        assert f"{p} on " in said and "keeps the planogram's stock" in said
    want = PlateInventory.from_store(store).snapshot()
    want |= {("S1-P1",): {"A": 3}, ("S2-P2",): {"G": 12, "H": 2}}
    del want[("S1-P3", "S1-P4")]  # sold out
    assert PlateInventory.from_store(store, stock.counts).snapshot() == want
    # nothing usable at all: the planogram's stock, said, never raised
    for junk in (None, {"plates": 1}, [None], "x"):
        stock, skipped = read_stock(store, junk, junk)
        assert stock.counts == {} and stock.learned == {} and skipped


def _closed_store(store: Store, moves: list[tuple[str, float, float]], seed: int = 0
                  ) -> PlateBlock:
    """Plate readings of staff moves on a closed store (nobody in view): (plate, t, grams)."""
    from walkout.sim.loadcell import PlateInteraction, simulate_plates

    from .conftest import initial_loads

    touches = [PlateInteraction(store.plate_index[p], t, t + 3.0, t + 1.2, g, 40.0)
               for p, t, g in moves]
    return simulate_plates(initial_loads(store), touches, 40.0, np.random.default_rng(seed),
                           plate_ids=store.plate_ids, noise_g=np.full(len(store.plate_ids), 1.5),
                           groups=np.zeros(len(store.plate_ids), dtype=np.int64))


def _run_closed(eng: Engine, block: PlateBlock, verdicts: dict[str, Verdict]) -> Engine:
    """``eng`` over ``block`` on a closed store, each inventory case settled as it opens by
    the verdict for its plate."""
    eng.set_store_mode(0.0, True)
    for a in np.arange(0.0, float(block.t[-1]) + 5.0, 5.0):
        i0, i1 = np.searchsorted(block.t, [a, a + 5.0])
        eng.step(PlateBlock(block.t[i0:i1], block.grams[i0:i1], block.plate_ids), [], [],
                 float(a + 5.0))
        for cid, case in list(eng.cases.items()):
            if case.open:
                eng.resolve(cid, verdicts[case.event.plate_ids[0]])
    eng.finish()
    return eng


def test_the_engine_restocked_from_its_health_row_holds_what_the_last_one_held(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """``Engine.restock`` with the inventory and learned products a health row carries (as
    ``walkout.service.live`` writes them): the new engine's shelves equal the old one's.
    The old one, on a closed store: staff took 4 A off S1-P1 (decided from the weight), put
    3 H (listed nowhere) on S2-P2 and took an A off S2-P1, which does not list it (inventory
    cases, their verdicts: H misplaced there, S2-P1 learns it holds A). A row entry this
    store cannot take is skipped and logged."""
    w = {p: x.weight_g for p, x in store.products.items()}
    block = _closed_store(store, [("S1-P1", 5.0, -4 * w["A"]), ("S2-P2", 15.0, 3 * w["H"]),
                                  ("S2-P1", 25.0, -w["A"])])
    old = _run_closed(Engine(store, EngineConfig(review_hold_s=1e9)), block, {
        "S2-P2": Verdict({"store": (("H", 3),)}, reviewer="op"),
        "S2-P1": Verdict({"store": (("A", 1),)}, reviewer="op")})
    snap = old.shelf.inventory.snapshot()
    assert snap[("S1-P1",)] == {"A": 6} and snap[("S2-P2",)] == {"G": 12, "H": 3}
    assert old.shelf.learned == {"S2-P1": {"A"}}
    rows, learned = _inventory(old), _learned(old)
    assert {"plates": ["S2-P2"], "product": "H", "count": 3, "low": False, "reorder_at": 2,
            "misplaced": True} in rows
    assert learned == {"S2-P1": ["A"]}
    new = Engine(store)
    with caplog.at_level(logging.WARNING, "walkout.engine"):
        assert new.restock([*rows, {"plates": ["S1-P1"], "product": "nope", "count": 1}],
                           learned) != []
    assert new.shelf.inventory.snapshot() == snap and new.shelf.learned == old.shelf.learned
    assert _inventory(new) == rows and _learned(new) == learned
    assert "'nope' is not in the catalogue" in caplog.text
