"""`walkout aifi video` on the real cps-test-01 footage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from walkout.events import Track
from walkout.perception.aifi_video import AifiVideoConfig, interactions
from walkout.store import load_store


def _shelf_5_middle(store, gondola: int) -> float:
    """Height of the middle of shelf 5 of ``gondola`` (0-based)."""
    box = store.gondolas[gondola].shelves[4].plates[0].box
    return (box.min[2] + box.max[2]) / 2


def _wrist_interactions(store, t: np.ndarray, wrist: np.ndarray, joint: int, track_id: int):
    """The interactions found for a track whose only seen joint is ``wrist`` (T, 3)."""
    joints = np.full((t.size, 17, 3), np.nan)
    joints[:, joint] = wrist
    return interactions([Track(track_id, t, joints, np.full((t.size, 17), 0.05))], store,
                        AifiVideoConfig())


def test_a_wrist_held_in_front_of_a_shelf_is_one_interaction():
    store = load_store("aifi-nanostore")
    g2 = store.gondolas[1]
    z = _shelf_5_middle(store, 1)
    t = np.arange(0, 6, 0.1)
    wrist = np.tile([1.7, -1.0, 1.0], (t.size, 1))  # right wrist down by the side...
    reach = (t > 2.0) & (t < 3.0)
    wrist[reach] = [1.7, g2.box.min[1] - 0.1, z]  # ... then 1 s at G2 shelf 5
    got = _wrist_interactions(store, t, wrist, 10, 7)
    assert [(i.gondola, i.shelf, i.track) for i in got] == [(2, 5, 7)]
    assert 2.3 < got[0].t < 2.7


def test_a_wrist_inside_the_shelf_counts_and_one_above_it_does_not():
    """The wrist of a hand taking an item is 0.15-0.25 m behind the shelf's front edge: that is
    the interaction; the same wrist beside the gondola (past its end) is none."""
    store = load_store("aifi-nanostore")
    g1 = store.gondolas[0]
    z = _shelf_5_middle(store, 0)
    t = np.arange(0, 4, 0.1)
    wrist = np.tile([0.6, -1.0, 1.0], (t.size, 1))
    inside = (t > 1.0) & (t < 2.0)
    wrist[inside] = [0.6, g1.box.min[1] + 0.22, z]  # 0.22 m into G1 shelf 5
    got = _wrist_interactions(store, t, wrist, 9, 3)
    assert [(i.gondola, i.shelf) for i in got] == [(1, 5)]
    wrist[inside] = [g1.box.min[0] - 0.3, g1.box.min[1] + 0.22, z]  # past G1's end
    got = _wrist_interactions(store, t, wrist, 9, 3)
    assert got == []


def _run(videos: Path, tmp: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp / "report.json"
    r = subprocess.run([sys.executable, "-m", "walkout.cli", "aifi", "video", str(videos),
                        "--json", str(out), "--docs", str(tmp), *extra],
                       capture_output=True, text=True, timeout=900)
    return r, out


@pytest.mark.slow
def test_command_writes_report_track_and_plan(tmp_path: Path, models_dir: Path,
                                              videos_dir: Path):
    r, out = _run(videos_dir, tmp_path, "--frames", "40")
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert set(report) == {"cameras", "shoppers", "interactions"}
    # no calibration of the footage is shipped yet: the store file's (April) cameras, said so
    assert report["cameras"].startswith("aifi-nanostore store file")
    assert (tmp_path / "aifi-cps-test-01-plan.png").stat().st_size > 1000
    assert "tracks" in json.loads((tmp_path / "aifi-cps-test-01-track.json").read_text())


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known failure: the aifi-nanostore (April 2020) "
                   "calibration does not fit the January cps-test-01 footage, and the cameras "
                   "recalibrated on it are not yet placed in the store (the survey is refused; "
                   "the compromise finds G1 shelf 5 only; the frames turned out rectified, and "
                   "with "
                   "the plumb-line lens and f from vanishing points the G2 reach is named G1; "
                   "with f per camera from `aifi calibrate --intrinsics image` the survey is "
                   "refused at 12 px, and with f, cx, cy freed in the bundle adjustment "
                   "(--refine-intrinsics) too; from the good basin of the relative solve "
                   "(multi-start) with f alone refined, 2 cam5 picks are still over 12 px; "
                   "the far end of the row is pinned by one cam3 pick that the row foot seen "
                   "in cam1 contradicts by 1.2 m, the G1 end being hidden behind a counter): "
                   "docs/perception.md, sixth to tenth passes")
def test_cps_test_01_from_video_alone(tmp_path: Path, models_dir: Path, videos_dir: Path):
    r, out = _run(videos_dir, tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["shoppers"] == 1
    got = [(i["gondola"], i["shelf"]) for i in report["interactions"]]
    assert got == [(2, 5), (1, 5)]
    t = [i["t"] for i in report["interactions"]]
    assert 4.0 <= t[1] - t[0] <= 8.0
