"""The shelf benchmark in a small, fast configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from walkout.bench.shelf import CASES, FAULTS, run_shelf_bench
from walkout.cli import app


def test_small_bench_runs_and_scores() -> None:
    r = run_shelf_bench(seed=2, duration_s=240.0)
    for key in ("event_precision", "event_recall", "item_accuracy", "review_rate",
                "samples_per_second", "per_case", "counts", "faults"):
        assert key in r
    assert r["counts"]["truth_events"] > 50
    assert r["event_precision"] >= 0.95 and r["event_recall"] >= 0.95
    assert r["item_accuracy"] >= 0.9
    assert r["faults_all_alerted"], r["faults"]
    assert set(r["faults"]) == set(FAULTS)
    seen = set(r["per_case"])
    assert {"pick", "press", "slow_press", "two_plate"} <= seen
    assert r["per_case"]["slow_press"].get("false_events", 0) == 0
    assert set(CASES) - {"misplaced"} - seen == set() or len(seen) > 8


def test_bench_is_deterministic() -> None:
    a = run_shelf_bench(seed=5, duration_s=90.0)
    b = run_shelf_bench(seed=5, duration_s=90.0)
    for r in (a, b):
        for key in ("samples_per_second", "samples_per_wall_second"):
            r.pop(key)
        for key in ("shelf_stage_cpu_s", "shelf_stage_wall_s"):
            r["counts"].pop(key)
    assert a == b


def test_cli_bench_shelf(tmp_path: Path) -> None:
    out = tmp_path / "shelf.json"
    res = CliRunner().invoke(
        app, ["bench", "shelf", "--seed", "3", "--duration", "90", "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["seed"] == 3 and "event_precision" in data


@pytest.mark.parametrize("duration", ["10", "59"])
def test_cli_bench_shelf_too_short_a_period_is_refused(duration: str) -> None:
    """Anything under 40 s died in rng.uniform (ValueError: high - low < 0); under 60 s the
    faults run past the period's end and no scenario is played."""
    res = CliRunner().invoke(app, ["bench", "shelf", "--duration", duration])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert "--duration" in res.output and "60" in res.output


def test_the_shortest_period_is_the_benchs_own() -> None:
    from walkout.bench.shelf import MIN_DURATION_S
    from walkout.cli import SHELF_MIN_DURATION_S

    assert SHELF_MIN_DURATION_S == MIN_DURATION_S
    with pytest.raises(ValueError, match="shorter than the 60 s"):
        run_shelf_bench(seed=1, duration_s=30.0)
    assert run_shelf_bench(seed=1, duration_s=MIN_DURATION_S)["duration_s"] == MIN_DURATION_S
