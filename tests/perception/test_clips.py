"""Evidence clips cut from a camera's video around the review cases of a replay."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from walkout.cli import app
from walkout.perception.clips import ClipRequest, cut_clips

from .test_evidence import _read, _sharpness

FPS = 10.0


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """6 s of a fine checkerboard whose corner square brightens with the frame index."""
    path = tmp_path / "cam1.mp4"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (160, 96))
    yy, xx = np.mgrid[0:96, 0:160]
    board = (((yy // 4) + (xx // 4)) % 2 * 255).astype(np.uint8)
    for i in range(60):
        img = np.dstack([board] * 3)
        img[:16, :16] = 4 * i  # which frame this is, readable after blurring
        vw.write(img)
    vw.release()
    return path


def test_clips_cover_the_window_blurred_and_report_cases_outside_the_video(
        video: Path, tmp_path: Path) -> None:
    written, missed = cut_clips(video, [ClipRequest("late", 99.0), ClipRequest("e1-cam1", 2.0)],
                                tmp_path / "clips", pre_s=1.0, post_s=1.0)
    assert [p.name for p in written] == ["e1-cam1.webm"] and missed == ["late"]
    frames = _read(written[0])
    assert 19 <= len(frames) <= 22  # 1.0-3.0 s at 10 fps
    sharp = _sharpness(_read(video)[20])
    assert all(_sharpness(f) < 0.05 * sharp for f in frames)
    # the first frame is the one at 1.0 s (corner 4 × 10), not the start of the video
    assert abs(float(frames[0][4:12, 4:12].mean()) - 40) < 8


def test_walkout_evidence_cuts_the_replays_review_cases(video: Path, tmp_path: Path) -> None:
    replay = tmp_path / "receipts.json"
    replay.write_text(json.dumps({"receipts": [], "alerts": [], "review_cases": [
        {"case_id": "G1-S2-P3-2.000", "t": 2.5, "t_start": 2.0, "plates": ["G1-S2-P3"],
         "reasons": ["same-weight products"], "sessions": ["s00001"], "open": True}]}))
    out = tmp_path / "clips"
    r = CliRunner().invoke(app, ["evidence", "--video", str(video), "--camera", "1",
                                 "--cases", str(replay), "--out", str(out), "--pre", "1",
                                 "--post", "1"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[0])["not_in_video"] == []
    assert [p.name for p in out.iterdir()] == ["G1-S2-P3-2.000-cam1.webm"]


def test_walkout_evidence_names_a_file_that_is_not_a_replay_output(video: Path,
                                                                  tmp_path: Path) -> None:
    bad = tmp_path / "receipts.json"
    bad.write_text(json.dumps({"receipts": []}))  # written before review cases were listed
    r = CliRunner().invoke(app, ["evidence", "--video", str(video), "--camera", "1",
                                 "--cases", str(bad), "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "not a `walkout replay` output" in r.output
    assert not (tmp_path / "c").exists()
