"""Picks the planogram does not explain: charged when the catalogue says clearly what they are,
remembered for the plate's later events, reviewed when it does not."""

from __future__ import annotations

from walkout.shelf import ShelfConfig, ShelfStage
from walkout.shelf.decide import choose
from walkout.store.model import Store

from .conftest import Sim, Touch, split_block

CFG = ShelfConfig()


def test_a_clear_unlisted_pick_is_charged_and_the_plate_remembered(
    store: Store, sim: Sim, touch: Touch
) -> None:
    """Two H (410 g, listed nowhere) were stocked on S1-P1, which lists only A (300 g). Only H
    weighs 410 g: the first pick is H (alert for staff, no review); once decided, the plate is
    known to hold H and the second pick of one is an ordinary pick."""
    block = sim([touch("S1-P1", 3.0, -410.0), touch("S1-P1", 18.0, -411.0)], duration_s=32.0)
    stage = ShelfStage(store, CFG)
    events = []
    for b in split_block(block, 1.0):
        for ev in stage.process(b):
            c = choose(ev, store, CFG)
            assert c.hypothesis is not None and not c.needs_review, c.reasons
            (pid, q), = c.hypothesis.items
            stage.apply(ev.event_id, pid, -q)  # what the engine does once it has decided
            events.append(ev)
    events += stage.flush()
    first, second = events
    assert first.unlisted and first.hypotheses[0].items == (("H", 1),)
    assert [a.kind for a in stage.alerts].count("planogram_mismatch") == 1
    assert not second.unlisted and second.hypotheses[0].items == (("H", 1),)
    assert second.hypotheses[0].probability > 0.95


def test_an_unlisted_pick_two_products_explain_is_reviewed(store: Store) -> None:
    """250 g off S1-P1 (A, 300 g): E or F (both 250 g, listed elsewhere) - not charged."""
    stage = ShelfStage(store, CFG)
    ex = stage._explainer
    hyps = ex.explain(("S1-P1",), -250.0, 4.0, stage.inventory)
    from walkout.events import ShelfEvent

    ev = ShelfEvent("S1-P1-1.000", 1.0, 2.0, ("S1-P1",), -250.0, hyps, 4.0, unlisted=True)
    c = choose(ev, store, CFG)
    assert c.needs_review and "no product listed for this plate fits the weight" in c.reasons
    assert {p for h in hyps[:2] for p, _ in h.items} == {"E", "F"}


def test_a_rare_count_is_doubted_when_one_unlisted_item_weighs_as_much(
    store: Store, sim: Sim, touch: Touch
) -> None:
    """405 g off S2-P2 (G, 80 g): five G, or one H (410 g) that should not be there, fit about
    as well. Five identical items in one grab is rare: both stay visible, staff are alerted and
    the pick is reviewed without a charge (five G would be a prior's guess)."""
    from walkout.events import ShelfEvent

    stage = ShelfStage(store, CFG)
    hyps = stage._explainer.explain(("S2-P2",), -405.0, 4.0, stage.inventory)
    assert not stage._explainer.unlisted_pick(("S2-P2",), -405.0, 4.0, stage.inventory)
    assert stage._explainer.doubted_by_unlisted(("S2-P2",), hyps, stage.inventory)
    assert hyps[0].items == (("G", 5),) and (("H", 1),) in [h.items for h in hyps]
    ev = ShelfEvent("S2-P2-1.000", 1.0, 2.0, ("S2-P2",), -405.0, hyps, 4.0, unlisted=True)
    assert choose(ev, store, CFG).reasons[0].startswith("only a rare count of the listed")
    (seen,) = stage.process(sim([touch("S2-P2", 3.0, -405.0)], duration_s=15.0)) + stage.flush()
    assert seen.unlisted and "rare count" in stage.alerts[0].message
    # three G (240 g) is an ordinary grab: nothing else is looked for
    few = stage._explainer.explain(("S2-P2",), -240.0, 4.0, stage.inventory)
    assert {p for h in few for p, _ in h.items} == {"G"}
    assert not stage._explainer.doubted_by_unlisted(("S2-P2",), few, stage.inventory)
    assert not choose(ShelfEvent("S2-P2-2.000", 2.0, 3.0, ("S2-P2",), -240.0, few, 4.0),
                      store, CFG).needs_review


def test_one_unlisted_item_beats_a_rare_count_that_fits_badly(
    store: Store, sim: Sim, touch: Touch
) -> None:
    """410 g off S2-P2: five G would be 400 g (3 σ off), one H is exact. H is charged as an
    unlisted pick: the planogram alert goes to staff."""
    stage = ShelfStage(store, CFG)
    (ev,) = stage.process(sim([touch("S2-P2", 3.0, -410.0)], duration_s=15.0)) + stage.flush()
    assert ev.unlisted and ev.hypotheses[0].items == (("H", 1),)
    assert [a.kind for a in stage.alerts] == ["planogram_mismatch"]
    c = choose(ev, store, CFG)
    assert c.hypothesis is not None and c.hypothesis.items == (("H", 1),) and not c.needs_review

