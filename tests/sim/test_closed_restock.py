"""The ``closed-restock`` scenario: the store marked closed, shelves loaded from behind (only
the load cells see it), expired items pulled, the store opened again for a shopper. The closed
period is part of the simulated session (``SimSession.modes``), which the engine is given as
the service's worker would give it an operator's change."""

from __future__ import annotations

from typing import Any

import pytest

from walkout.bench.accuracy import run_accuracy
from walkout.engine import Engine, EngineResult
from walkout.events import StoreModeChange
from walkout.sim.scenarios import SCENARIOS, hard_suite
from walkout.sim.session import SimSession, simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store


@pytest.fixture(scope="module")
def run() -> tuple[dict[str, Any], SimSession, EngineResult]:
    return run_accuracy(load_store("small"), 0, 1, scenarios=["closed-restock"])


def test_the_session_carries_the_closed_period_and_the_unseen_stock_moves(
    run: tuple[dict[str, Any], SimSession, EngineResult],
) -> None:
    _, session, _ = run
    assert session.modes == (StoreModeChange(1.0, True), StoreModeChange(31.0, False))
    moved = [te for te in session.truth.events if te.kind in ("restock", "remove")]
    assert [te.kind for te in moved] == ["restock", "remove"]
    assert all(te.t_in > 1.0 and te.t_out < 31.0 for te in moved)  # while closed
    assert all(session.truth.scenario_of[te.shopper] == "closed-restock" for te in moved)
    # nobody walked in to do it: one person (the shopper after reopening), one receipt
    assert len(session.truth.paths) == 1 and list(session.truth.receipts) == [
        "closed-restock-1-0-0"]
    assert all(not te.shopper.startswith("closed-restock-1-0-0") for te in moved)


def test_the_engine_books_them_as_stock_and_charges_the_shopper_exactly(
    run: tuple[dict[str, Any], SimSession, EngineResult],
) -> None:
    figures, _, result = run
    stock = [d for d in result.decisions if d.stock]
    assert len(stock) == 2 and not any(d.needs_review for d in result.decisions)
    assert all(d.attribution.session_id is None for d in stock)  # nobody's hand: the store's
    assert figures["f1"] == 1.0 and figures["exact_receipt_rate"] == 1.0
    inv = figures["inventory"]
    assert inv["footprints"] == 2 and inv["exact"] == 2, inv["rows"]
    assert figures["alerts"]["store_closed"] == figures["alerts"]["store_opened"] == 1


def test_without_the_closed_period_the_same_weights_go_to_review(
    run: tuple[dict[str, Any], SimSession, EngineResult],
) -> None:
    _, session, _ = run
    s = Sensors.from_session(session)
    opened = Engine(session.store).run(Sensors(s.store, s.plates, s.frames, s.gates,
                                               s.duration_s))
    assert not any(d.stock for d in opened.decisions)
    assert sum(d.needs_review for d in opened.decisions) == 2


def test_it_runs_by_name_only_and_leaves_the_shoppers_draws_alone() -> None:
    assert "closed-restock" in SCENARIOS and "closed-restock" not in hard_suite()
    # no store mode, no unseen stock in the standard mix: its sensors are as they were
    plain = simulate(load_store("small"), 3, 4)
    assert plain.modes == () and not any(te.kind in ("restock", "remove")
                                         for te in plain.truth.events)
