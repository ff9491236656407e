"""The ``restock`` scenario end to end: a staff badge at the gate, trays of stock (more than a
shopper's ``max_quantity``) put on plates and expired items taken off while shoppers shop; the
simulator's sensors through the real engine."""

from __future__ import annotations

from typing import Any

import pytest

from walkout.bench.accuracy import run_accuracy
from walkout.engine import EngineResult
from walkout.shelf import ShelfConfig
from walkout.sim.scenarios import SCENARIOS, hard_suite
from walkout.sim.session import SimSession
from walkout.store import load_store


@pytest.fixture(scope="module")
def run() -> tuple[dict[str, Any], SimSession, EngineResult]:
    return run_accuracy(load_store("small"), 5, 1, scenarios=["restock"])


def test_staff_are_tracked_never_charged_and_never_alerted_as_unbound(
    run: tuple[dict[str, Any], SimSession, EngineResult],
) -> None:
    figures, _, result = run
    (staff,) = [s for s in result.sessions.values() if s.staff]
    assert staff.credential.startswith("staff:") and staff.track_ids
    assert all(r.credential != staff.credential for r in result.receipts)
    assert not any(e.session_id == staff.session_id for e in result.entries)
    assert "unbound_person" not in figures["alerts"]
    assert figures["alerts"].get("staff_left_with_goods") == 1  # the expired items
    # the shoppers beside them are charged exactly
    assert figures["per_scenario"]["restock"]["exact_receipt_rate"] == 1.0
    assert figures["f1"] == 1.0


def test_restocks_above_max_quantity_move_the_inventory_to_the_truth(
    run: tuple[dict[str, Any], SimSession, EngineResult],
) -> None:
    figures, session, result = run
    restocks = [te for te in session.truth.events if te.kind == "restock"]
    assert restocks and all(te.quantity > ShelfConfig().max_quantity for te in restocks)
    stock = [d for d in result.decisions if d.stock]
    assert len(stock) == 3 and not any(d.needs_review for d in stock)
    assert sorted(abs(q) for d in stock for _, q in d.items) == sorted(
        te.quantity for te in session.truth.events if te.kind in ("restock", "remove"))
    inv = figures["inventory"]
    assert inv["footprints"] == 3 and inv["exact"] == 3, inv["rows"]
    assert figures["events_to_review"] == 0


def test_restock_runs_by_name_and_leaves_the_hard_suite_as_it_was() -> None:
    assert "restock" in SCENARIOS and "restock" not in hard_suite()
    assert hard_suite() == [  # placement follows this order: it must not move
        "crossing-hands", "same-plate-same-moment", "same-shelf-same-moment", "long-hold",
        "multi-grab", "shoulder-to-shoulder", "false-claim", "group-entry", "tailgating",
        "wrong-plate-put-back", "wrong-planogram-entry", "hand-over", "item-left",
        "changing-clothes"]
