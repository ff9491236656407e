"""The one decision rule shared by the engine, the AiFi runner and the shelf bench."""

from __future__ import annotations

from walkout.events import Hypothesis, ShelfEvent
from walkout.shelf import ShelfConfig
from walkout.shelf.decide import choose
from walkout.store.model import Store

CFG = ShelfConfig()


def _event(delta: float, *hyps: tuple[tuple[tuple[str, int], ...], float, float]) -> ShelfEvent:
    return ShelfEvent(
        "S1-P1-1.000", 1.0, 2.0, ("S1-P1",), delta,
        tuple(Hypothesis(items, ll, p) for items, ll, p in hyps), noise_var_g2=4.0,
    )


def test_clear_pick_is_taken_as_is(store: Store) -> None:
    ev = _event(-301.0, ((("A", 1),), -3.0, 0.99))
    c = choose(ev, store, CFG)
    assert c.hypothesis is not None and c.hypothesis.items == (("A", 1),)
    assert not c.needs_review


def test_same_weight_pick_goes_to_review_even_when_priors_are_confident(store: Store) -> None:
    """E and F weigh 250 g: stock counts made E 0.9 likely, but weight cannot tell them."""
    ev = _event(-250.0, ((("E", 1),), -2.8, 0.9), ((("F", 1),), -2.8, 0.1))
    c = choose(ev, store, CFG)
    assert c.needs_review and "same" in c.reasons[0]


def test_put_back_of_a_held_item_the_hypotheses_left_out(store: Store) -> None:
    """H (410 g) lives on no plate; the shopper holds one and puts it on S1-P1 among the A.
    The planogram-first hypotheses only list A; what the shopper holds wins."""
    ev = _event(408.0, ((("A", 1),), -400.0, 0.6))
    c = choose(ev, store, CFG, held={"H": 1, "B": 2})
    assert c.hypothesis is not None and c.hypothesis.items == (("H", 1),)
    assert not c.needs_review


def test_put_back_that_nothing_held_explains_is_reviewed(store: Store) -> None:
    ev = _event(300.0, ((("A", 1),), -3.0, 0.99))
    c = choose(ev, store, CFG, held={"B": 1})
    assert c.needs_review
    assert c.hypothesis is not None and c.hypothesis.items == (("A", 1),)


def test_put_back_of_one_of_two_held_same_weight_items_is_reviewed(store: Store) -> None:
    ev = _event(250.0)
    c = choose(ev, store, CFG, held={"E": 1, "F": 1})
    assert c.hypothesis is not None and c.hypothesis.quantity == 1
    assert c.needs_review


def test_put_back_prefers_one_item_to_a_pair_of_halves(store: Store) -> None:
    """Holding 2 G (80 g) and one C (200 g): +160 g is the two G, not anything else."""
    ev = _event(160.0)
    c = choose(ev, store, CFG, held={"G": 2, "C": 1})
    assert c.hypothesis is not None and c.hypothesis.items == (("G", 2),)


def test_no_hypothesis_and_nothing_held(store: Store) -> None:
    c = choose(_event(-999.0), store, CFG)
    assert c.hypothesis is None and c.needs_review
