"""`walkout aifi run` on the real BENCHMARK-1 case (skipped where the data is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from walkout.cli import app
from walkout.sources.aifi_run import AifiReceipt, receipts_json, run_case

AIFI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "aifi-autocheckout"
CASE = AIFI / "BENCHMARK-1"
SHOPPER = "3325379692103139202"
BOUGHT = "071142008582"


@pytest.fixture(scope="module")
def case_dir() -> Path:
    if not (CASE / "plate_data.json").is_file():
        pytest.skip(f"AiFi AutoCheckout data not found at {AIFI} (../shared/data beside the repo)")
    return CASE


def test_benchmark_1_receipt(case_dir: Path) -> None:
    result = run_case(case_dir)
    assert result.receipts == (AifiReceipt(SHOPPER, ((BOUGHT, 1),)),)
    assert receipts_json(result) == {
        "receipts": [{"target_id": SHOPPER, "products": [{"barcode": BOUGHT, "quantity": 1}]}]
    }
    charged = [d for d in result.decisions if d.items]
    assert len(charged) == 1
    d = charged[0]
    assert d.event.plate_ids[0] == "G1-S5-P11" and 14.0 < d.event.t_start < 15.0
    assert d.event.delta_g == pytest.approx(-622.0, abs=10.0)
    assert d.target_id == SHOPPER and not d.needs_review
    # the stuck/NaN/absent plates of the recording make alerts, never events
    kinds = {a.kind for a in result.alerts}
    assert kinds <= {"plate_dead", "plate_stuck", "plate_spikes", "shelf_unsettled",
                     "plate_recalibrated"}


def test_cli_writes_competition_json(case_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "receipts.json"
    res = CliRunner().invoke(app, ["aifi", "run", str(case_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data == {
        "receipts": [{"target_id": SHOPPER, "products": [{"barcode": BOUGHT, "quantity": 1}]}]
    }


def test_cli_missing_case_is_a_clear_error(tmp_path: Path) -> None:
    if not (AIFI / "store_meta").is_dir():
        pytest.skip("AiFi store_meta not available")
    (tmp_path / "case").mkdir()
    res = CliRunner().invoke(
        app, ["aifi", "run", str(tmp_path / "case"), "--meta", str(AIFI / "store_meta")]
    )
    assert res.exit_code == 2
    assert "file not found" in res.output


def test_cli_names_a_missing_case_directory_itself(tmp_path: Path) -> None:
    """A case folder that does not exist was reported as ../store_meta/Gondolas.json."""
    case = tmp_path / "BENCHMARK-9"
    res = CliRunner().invoke(app, ["aifi", "run", str(case)])
    assert res.exit_code == 2, res.output
    assert f"error: {case}: AiFi test case directory not found" in res.output
    assert "Gondolas.json" not in res.output


def test_cli_names_a_missing_default_store_meta(tmp_path: Path) -> None:
    (tmp_path / "case").mkdir()
    res = CliRunner().invoke(app, ["aifi", "run", str(tmp_path / "case")])
    assert res.exit_code == 2, res.output
    assert (f"error: {tmp_path / 'store_meta'}: store_meta directory not found beside the case: "
            "give its place with --meta") in res.output
