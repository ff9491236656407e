"""Blurred evidence clips: nothing sharp is kept, the window is right, retention deletes."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from walkout.perception.evidence import EvidenceRecorder, blur, person_boxes, purge_clips


def _sharpness(img: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def _checker(h: int = 180, w: int = 320, cell: int = 4) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    g = (((yy // cell) + (xx // cell)) % 2 * 255).astype(np.uint8)
    return np.dstack([g, g, g])


def _read(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            return out
        out.append(f)


def test_whole_frame_blur_removes_fine_detail():
    img = _checker()
    assert _sharpness(blur(img)) < 0.01 * _sharpness(img)


def test_box_blur_only_touches_the_person():
    img = _checker()
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, :2] = [[200 + (j % 3) * 10, 40 + j * 5] for j in range(17)]
    kp[0, :, 2] = 0.9
    boxes = person_boxes(kp)
    assert boxes == [(200.0, 40.0, 220.0, 120.0)]
    out = blur(img, boxes)
    assert _sharpness(out[60:100, 205:215]) < 0.01 * _sharpness(img[60:100, 205:215])
    np.testing.assert_array_equal(out[:, :150], img[:, :150])  # far from the box: untouched


def test_clip_holds_the_window_around_the_event_and_only_blurred_frames(tmp_path: Path):
    rec = EvidenceRecorder(tmp_path, fps=10, pre_s=1.0, post_s=0.5)
    written = []
    for i in range(40):  # 4 s at 10 fps; event at 2.0 s
        t = i / 10
        if i == 20:
            rec.request("ev-1", t)
        img = _checker()
        cv2.putText(img, str(i), (10, 170), 0, 0.5, (0, 0, 255), 1)
        written += rec.push(t, img)
    assert written == [tmp_path / "ev-1.webm"]
    frames = _read(written[0])
    assert len(frames) == 16  # 1.0..2.5 s inclusive
    assert max(_sharpness(f) for f in frames) < 0.02 * _sharpness(_checker())
    assert len(rec._ring) <= 11  # the buffer is bounded by pre_s


def test_bad_event_id_and_settings_are_refused(tmp_path: Path):
    rec = EvidenceRecorder(tmp_path, fps=10)
    with pytest.raises(ValueError, match="safe file name"):
        rec.request("../../etc/passwd", 1.0)
    with pytest.raises(ValueError, match="mode"):
        EvidenceRecorder(tmp_path, fps=10, mode="none")
    with pytest.raises(ValueError, match="fps"):
        EvidenceRecorder(tmp_path, fps=0)


def test_purge_deletes_clips_past_retention_and_keeps_recent_ones(tmp_path: Path):
    now = datetime(2025, 6, 1, tzinfo=UTC)
    # an earlier version's .mp4 clips go by the same rule; other files are never touched
    old, legacy, new = tmp_path / "old.webm", tmp_path / "legacy.mp4", tmp_path / "new.webm"
    other = tmp_path / "notes.txt"
    for p in (old, legacy, new, other):
        p.write_bytes(b"x")
    ts = (now - timedelta(days=31)).timestamp()
    for p in (old, legacy, other):
        os.utime(p, (ts, ts))
    ts = (now - timedelta(days=2)).timestamp()
    os.utime(new, (ts, ts))
    assert purge_clips(tmp_path, now, days=30) == 2
    assert not old.exists() and not legacy.exists() and new.exists() and other.exists()
    with pytest.raises(ValueError, match="at least 1 day"):
        purge_clips(tmp_path, now, days=0)


def test_stage_keeps_a_clip_with_the_real_shopper_blurred(tmp_path: Path, models_dir: Path,
                                                          shopper_frame: np.ndarray):
    from walkout.perception import PerceptionConfig, create_backend
    from walkout.perception.stage import PerceptionStage

    rec = EvidenceRecorder(tmp_path, fps=10, pre_s=0.2, post_s=0.1, mode="boxes")
    stage = PerceptionStage(create_backend(PerceptionConfig(models_dir=models_dir)), "cam7",
                            evidence=rec)
    rec.request("pick-1", 0.1)
    for i in range(4):
        f = stage.process(i / 10, shopper_frame)
        assert f is not None and f.keypoints.shape[0] >= 1
    assert rec.written == [tmp_path / "pick-1.webm"]
    clip = _read(rec.written[0])
    assert len(clip) == 3
    best = f.keypoints[np.argmax(f.keypoints[:, :, 2].mean(axis=1))][None]
    x0, y0, x1, y1 = (max(0, int(v)) for v in person_boxes(best)[0])
    assert (x1 - x0) * (y1 - y0) > 2000  # the shopper, not a stray detection
    person, orig = clip[0][y0:y1, x0:x1], shopper_frame[y0:y1, x0:x1]
    assert _sharpness(person) < 0.2 * _sharpness(orig)  # the shopper is blurred


def test_boxes_mode_blurs_the_whole_frame_when_nobody_was_detected(tmp_path: Path):
    """A backend that missed the person in a frame gives no boxes: the frame is blurred all
    over, never kept sharp (a missed person's face would be)."""
    img = _checker()
    rec = EvidenceRecorder(tmp_path, fps=10, pre_s=1.0, post_s=0.1, mode="boxes")
    rec.request("ev1", 0.0)
    for k in range(4):
        rec.push(k * 0.1, img, person_boxes(np.zeros((0, 17, 3), np.float32)))
    [clip] = rec.written
    for f in _read(clip):
        assert _sharpness(f) < 0.05 * _sharpness(img)


def test_a_person_box_without_a_confident_face_grows_to_cover_the_head():
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, :2] = [[200 + (j % 3) * 10, 40 + j * 5] for j in range(17)]
    kp[0, 5:, 2] = 0.9  # shoulders down seen, the face not
    [(x0, y0, x1, y1)] = person_boxes(kp)
    # the body spans x 200-220, y 65-120: grown by half the longer side (27.5 px) all round
    assert (x0, y0, x1, y1) == (172.5, 37.5, 247.5, 147.5)


def test_evidence_cases_that_is_a_directory_is_a_clean_error(tmp_path: Path):
    """--cases naming a folder was an IsADirectoryError traceback."""
    from typer.testing import CliRunner

    from walkout.cli import app

    res = CliRunner().invoke(app, ["evidence", "--video", str(tmp_path / "v.mp4"), "--camera",
                                   "1", "--cases", str(tmp_path), "--out",
                                   str(tmp_path / "clips")])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert f"{tmp_path}: cannot read the cases:" in " ".join(res.output.split())
    assert not (tmp_path / "clips").exists()
