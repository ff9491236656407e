"""Hard attribution scenarios, run by name: decided from hand trajectories, not reviewed.

Each seed here was reviewed or wrong while attribution used each wrist's closest approach to
the plate (a hand crossing or brushing the plate looked like the hand that took the item);
they are decided by the sustained reach now (walkout.attribution.hands).
"""

from __future__ import annotations

import pytest

from walkout.bench.accuracy import predicted_receipts, run_accuracy, true_receipts
from walkout.store import load_store


def _run(name: str, seed: int):
    figures, session, result = run_accuracy(load_store("small"), 0, seed, scenarios=[name])
    return figures, predicted_receipts(result), true_receipts(session.truth), result


@pytest.mark.parametrize(("name", "seed"), [
    ("crossing-hands", 5), ("crossing-hands", 13),  # were F1 0.5 with two cases to review
    ("shoulder-to-shoulder", 1), ("shoulder-to-shoulder", 2),  # were 1 and 3 cases
])
def test_neighbours_hands_are_told_apart(name: str, seed: int) -> None:
    figures, pred, true, result = _run(name, seed)
    assert {c: +p for c, p in pred.items()} == true
    assert figures["events_to_review"] == 0, [d.reasons for d in result.review_queue]


def test_two_hands_in_one_plate_each_took_one() -> None:
    """Two items gone, two hands in the plate: each pays for one, nobody reviews it."""
    figures, pred, true, result = _run("same-plate-same-moment", 1)
    (d,) = result.decisions
    assert len(d.takers) == 2 and not d.needs_review
    assert pred == true and all(sum(c.values()) == 1 for c in true.values())
    assert figures["events_to_review"] == 0
