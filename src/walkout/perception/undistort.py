"""Lens distortion on keypoints, not frames: undistorting 17 points per person is ~1000× cheaper
than remapping a whole image, and the pose network sees the camera's own pixels (what it would
see in deployment anyway)."""

from __future__ import annotations

import cv2
import numpy as np

_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-10)


def undistort_keypoints(keypoints: np.ndarray, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """``(people, joints, 3)`` raw-pixel keypoints → the same in undistorted pixels (same K).

    Confidences are kept. Uses OpenCV's iterative solver to convergence: the AiFi lenses
    (k1 ≈ -0.5) leave pixel-level errors at the image corners after the default 5 iterations.
    """
    out = np.array(keypoints, dtype=np.float32, copy=True)
    if out.size == 0:
        return out
    pts = out[..., :2].reshape(-1, 1, 2).astype(np.float64)
    und = cv2.undistortPointsIter(pts, K, dist, None, K, _CRITERIA)
    out[..., :2] = und.reshape((*out.shape[:-1], 2))
    return out
