"""The calibration check: a right calibration scores keypoint noise, a moved camera or a
mislabelled video scores tens of pixels, and a relabelling is found."""

from __future__ import annotations

import cv2
import numpy as np

from walkout.events import KeypointFrame
from walkout.perception.calib_check import best_assignment, score
from walkout.store import load_store
from walkout.store.model import CameraPose

STORE = load_store("aifi-nanostore")
CAMS = STORE.cameras_by_id


def _walk(cam_ids: list[str], noise_px: float = 2.0) -> dict[str, list[KeypointFrame]]:
    """A 'person' (17 points in a 0.5 x 0.3 x 1.7 m column) walking the aisle, projected into
    each camera with pixel noise; points outside the image are given confidence 0."""
    rng = np.random.default_rng(3)
    body = np.c_[rng.uniform(-0.25, 0.25, 17), rng.uniform(-0.15, 0.15, 17),
                 np.linspace(0.1, 1.7, 17)]
    out: dict[str, list[KeypointFrame]] = {c: [] for c in cam_ids}
    for k in range(60):
        t = k / 10
        pts = body + np.array([0.5 + 3.5 * k / 60, -0.6 - 0.6 * np.sin(k / 9), 0.0])
        for c in cam_ids:
            cam = CAMS[c]
            uv, _ = cv2.projectPoints(pts, np.array(cam.pose.rvec), np.array(cam.pose.tvec),
                                      cam.K_array, cam.dist_array)
            uv = uv.reshape(-1, 2) + rng.normal(0, noise_px, (17, 2))
            inside = (uv[:, 0] >= 0) & (uv[:, 0] < 640) & (uv[:, 1] >= 0) & (uv[:, 1] < 360)
            kp = np.c_[uv, np.where(inside, 0.9, 0.0)].astype(np.float32)[None]
            out[c].append(KeypointFrame(c, t, kp))
    return out


def test_right_calibration_scores_keypoint_noise_and_a_moved_camera_does_not():
    frames = _walk(["cam2", "cam4", "cam6", "cam8"])
    good = score(frames, CAMS, {c: c for c in frames})
    assert len(good) >= 3 and max(s.median_px for s in good) < 3.0
    r = CAMS["cam4"].pose
    rot, _ = cv2.Rodrigues(np.array(r.rvec))
    turned, _ = cv2.Rodrigues(cv2.Rodrigues(np.array([0, 0.35, 0.0]))[0] @ rot)  # 20 deg pan
    moved = dict(CAMS)
    moved["cam4"] = CAMS["cam4"].model_copy(update={"pose": CameraPose(
        rvec=tuple(float(v) for v in turned.ravel()), tvec=r.tvec)})
    bad = [s for s in score(frames, moved, {c: c for c in frames}) if "cam4" in (
        s.video_a, s.video_b)]
    assert bad and min(s.median_px for s in bad) > 15.0


def test_a_mislabelled_video_is_found_by_the_assignment_search():
    frames = _walk(["cam2", "cam4", "cam6"])
    swapped = {"cam2": frames["cam4"], "cam4": frames["cam2"], "cam6": frames["cam6"]}
    swapped = {v: [KeypointFrame(v, f.t, f.keypoints) for f in fs] for v, fs in swapped.items()}
    ranked = best_assignment(swapped, CAMS)
    assert ranked[0][1] == {"cam2": "cam4", "cam4": "cam2", "cam6": "cam6"}
    assert ranked[0][0] < 3.0 < 15.0 < np.mean([s.median_px for s in score(
        swapped, CAMS, {v: v for v in swapped})])
