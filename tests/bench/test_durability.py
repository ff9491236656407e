"""The durability benchmark on a small run: the real `walkout serve`, SIGKILLed three times,
ends with the state of an uninterrupted run; and the comparison sees a tampered database
(an altered receipt, a lost cart line, a second capture), so an all-zero result means something.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from walkout.bench.durability import DurabilityRun, compare, run_on, snapshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> DurabilityRun:
    wd = tmp_path_factory.mktemp("durability")
    return run_on(f"sqlite:///{wd / 'ref.db'}", f"sqlite:///{wd / 'crash.db'}", kills=3,
                  seed=2, shoppers=2, workdir=wd)


def test_three_kills_lose_nothing_and_charge_once(run: DurabilityRun) -> None:
    f = run.figures
    assert f["kills"] == 3 and len(f["kill_points"]) == 3
    assert f["sessions"] >= 2 and f["cart_lines"] > 0 and f["engine_events"] > 0
    zero = ("lost_events", "extra_events", "double_charges", "charge_mismatches",
            "receipt_mismatches", "state_mismatches")
    assert {k: f[k] for k in zero} == dict.fromkeys(zero, 0), f["where"]
    assert f["sessions_after_kills"] == f["sessions"]


def _tampered(run: DurabilityRun, tmp_path: Path, sql: str) -> dict[str, Any]:
    """Compare the reference with a copy of the crashed database after ``sql``."""
    src = make_url(run.crashed_url).database
    assert src is not None
    dst = tmp_path / "tampered.db"
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
        b.execute(sql)
    return compare(snapshot(run.reference_url), snapshot(f"sqlite:///{dst}"))


def test_detects_an_altered_receipt_line(run: DurabilityRun, tmp_path: Path) -> None:
    f = _tampered(run, tmp_path, "UPDATE receipt_lines SET quantity = quantity + 1 "
                                 "WHERE id = (SELECT MIN(id) FROM receipt_lines)")
    assert f["receipt_mismatches"] == 1 and f["lost_events"] == 0


def test_detects_a_lost_cart_line(run: DurabilityRun, tmp_path: Path) -> None:
    f = _tampered(run, tmp_path, "DELETE FROM cart_lines WHERE id = (SELECT MAX(id) FROM "
                                 "cart_lines)")
    assert f["lost_events"] == 1 and f["lost_cart_lines"] == 1


def test_detects_a_lost_engine_event(run: DurabilityRun, tmp_path: Path) -> None:
    f = _tampered(run, tmp_path, "DELETE FROM engine_events WHERE id = (SELECT MAX(id) FROM "
                                 "engine_events)")
    assert f["lost_events"] == 1 and f["lost_engine_events"] == 1


def test_detects_a_second_capture(run: DurabilityRun, tmp_path: Path) -> None:
    f = _tampered(run, tmp_path, (
        "INSERT INTO ledger_transactions (ref, kind, idempotency_key, request_hash, parent_ref,"
        " closes, payer_ref, amount, currency, created_at) SELECT 'cap_again', kind,"
        " idempotency_key || ':again', request_hash, parent_ref, NULL, payer_ref, amount,"
        " currency, created_at FROM ledger_transactions WHERE kind = 'capture' LIMIT 1"))
    assert f["double_charges"] == 1 and f["charge_mismatches"] == 1
