"""The scale bench: its JSON (the issue's keys), the window it times, its plot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from walkout.bench.scale import (
    bench_session,
    concurrency,
    cut,
    plot,
    run_scale,
    size_for,
    start_of,
)
from walkout.cli import app
from walkout.engine import EngineConfig
from walkout.store.bigstore import generate_store

RUN_KEYS = {"area_m2", "shoppers", "cameras", "plates", "engine", "real_time_factor", "events",
            "seconds"}


def test_sizes_follow_the_area() -> None:
    assert size_for(1000) == size_for(1000, 40, 2000)
    assert (size_for(10000).cameras, size_for(10000).plates) == (400, 20000)
    assert size_for(100).cameras == 12 and size_for(100).plates == 192  # what the floor holds


def test_window_is_the_busiest_stretch_on_its_own_clock() -> None:
    st = generate_store(100, 12, 192)
    s = bench_session(st, 3, 1, 10.0)
    start = start_of(s, 12.0)
    _, busiest = concurrency(s, start, 12.0)
    for other in (0.0, start / 2, start + 5.0, s.duration_s - 12.0):
        assert concurrency(s, other, 12.0)[1] <= busiest
    assert busiest > 1  # the shoppers are in the store together
    sn = cut(s, start, 12.0)
    assert sn.duration_s == pytest.approx(12.0)
    assert sn.frames and all(0 <= f.t < 12.0 for f in sn.frames)
    assert sn.plates.t[0] >= 0 and sn.plates.t[-1] < 12.0
    assert len(sn.frames) == sum(start <= f.t < start + 12.0 for f in s.frames)
    assert any(f.keypoints.shape[0] for f in sn.frames)


def test_run_scale_json_and_plot(tmp_path: Path) -> None:
    url = os.environ.get("WALKOUT_TEST_MQTT_URL")
    figures = run_scale([100], [2], seed=1, window_s=15.0, mqtt_url=url, mqtt=bool(url),
                        profile=True, repeats=3)
    (run,) = figures["runs"]
    assert set(run) >= RUN_KEYS
    assert run["engine"] == "single" and (run["area_m2"], run["cameras"]) == (100.0, 12)
    # the engine ran from the opening; only the busiest 15 s (from the chunk edge before
    # them) were timed, with the shoppers of the warm-up already tracked
    start = start_of(bench_session(generate_store(100, 12, 192), 2, 1, 20.0), 15.0)
    chunk = EngineConfig().chunk_s
    assert start - chunk < run["warm_up_store_seconds"] <= start
    assert 15.0 <= run["store_seconds"] <= 15.0 + chunk and run["camera_frames"] > 12 * 15 * 14
    # both are rounded (seconds to 10 ms): compare within that rounding
    assert run["store_seconds"] / run["real_time_factor"] == pytest.approx(run["seconds"],
                                                                           abs=0.006)
    assert run["tracks"] == 2 and run["receipts"] == 2
    # three runs of the same window, the middle one reported
    each = run["seconds_each_run"]
    assert len(each) == 3 and each == sorted(each) and run["seconds"] == each[1]
    stages = run["stages_s"]
    assert stages["total"] > 0 and stages["shelf"] > 0 and stages["tracking"] > 0
    assert stages["shelf"] + stages["tracking"] <= stages["total"] * 1.01
    if url:
        assert figures["mqtt"]["lost"] == 0 and figures["mqtt"]["plate_samples_per_s"] > 0
    json.dumps(figures)
    png = tmp_path / "scale.png"
    plot(figures, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_refuses_bad_sizes() -> None:
    r = CliRunner().invoke(app, ["bench", "scale", "--area", "10", "--no-mqtt"])
    assert r.exit_code == 2 and "--area must be 40-50,000" in r.output
    r = CliRunner().invoke(app, ["bench", "scale", "--shoppers", "0", "--no-mqtt"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["bench", "scale", "--repeats", "0", "--no-mqtt"])
    assert r.exit_code == 2 and "--repeats >= 1" in r.output
