"""The service benchmark: a few concurrent shoppers through a live `walkout serve`, and the
summary's arithmetic on known numbers (so errors and slow requests cannot hide)."""

from __future__ import annotations

from pathlib import Path

import pytest

from walkout.bench.service import Recorder, run_service_bench, summarise

ENDPOINTS = {
    "POST /v1/accounts", "POST /v1/me/payment-methods", "POST /v1/me/entry-code",
    "POST /v1/gates/{gate}/scan", "POST /v1/visits/{id}/cart-lines", "GET /v1/visits/{id}",
    "POST /v1/visits/{id}/exit", "GET /v1/receipts/{id}",
}


@pytest.mark.slow
def test_small_run_against_the_real_service(tmp_path: Path) -> None:
    f = run_service_bench(8, tmp_path, engine_shoppers=1, ramp_s=0.5, think_s=0.1)
    assert f["completed"] == 8 and f["errors"] == 0, f["error_samples"]
    assert f["receipt_total_mismatches"] == 0
    assert set(f["endpoints"]) >= ENDPOINTS
    for name in ENDPOINTS:
        e = f["endpoints"][name]
        assert e["count"] >= 8 and e["errors"] == 0
        assert 0 < e["p50_ms"] <= e["p99_ms"] <= e["max_ms"] < 60_000
    e2r = f["exit_to_receipt"]
    assert e2r["count"] == 8 and 0 < e2r["p50_s"] <= e2r["p99_s"] <= e2r["max_s"] < 60


def test_summary_counts_errors_and_tails() -> None:
    rec = Recorder()
    for i in range(100):
        rec.add("GET /x", (i + 1) / 1000, ok=i != 7, detail="500 boom")
    rec.exit_to_receipt = [0.1] * 98 + [5.0, 6.0]
    f = summarise(rec)
    assert f["endpoints"]["GET /x"] == {"count": 100, "errors": 1, "p50_ms": 50.5,
                                        "p99_ms": 99.0, "max_ms": 100.0}
    assert f["errors"] == 1 and f["error_samples"] == ["GET /x: 500 boom"]
    assert f["exit_to_receipt"]["p50_s"] == 0.1 and f["exit_to_receipt"]["p99_s"] > 4.9
