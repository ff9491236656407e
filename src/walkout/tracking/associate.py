"""Data association: detections to tracks within one camera, and detections across cameras.

Both steps only compare things that are already close: a camera only scores the tracks whose
prediction falls in its image, and cross-camera pairing only looks at detections whose floor
positions are close. Cost therefore grows with the people one camera
sees, not with everyone in the store.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from walkout.tracking.geometry import CameraGeometry
from walkout.tracking.kernels import cluster_views, floor_positions

L_SHOULDER, R_SHOULDER, L_HIP, R_HIP, L_ANKLE, R_ANKLE = 5, 6, 11, 12, 15, 16
#: Body points used to place a single detection on the floor: (joints, typical height m).
_FLOOR_CUES = (((L_HIP, R_HIP), 0.92), ((L_SHOULDER, R_SHOULDER), 1.42), ((L_ANKLE, R_ANKLE), 0.08))
_CUE_JOINTS = np.array([j for j, _ in _FLOOR_CUES], dtype=np.int64)
_CUE_HEIGHTS = np.array([h for _, h in _FLOOR_CUES])

GATED_COST = 1e9


@dataclass(frozen=True, slots=True)
class Detection:
    """One undistorted 2D skeleton: camera index, frame time, normalised joints, confidences."""

    cam: int
    t: float
    xn: np.ndarray  # (17, 2) normalised undistorted coordinates
    conf: np.ndarray  # (17,) 0 where missing / below the confidence floor


def assign(cost: np.ndarray, gate: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one pairs ``(row, col)`` with ``cost <= gate[col]``."""
    if cost.size == 0:
        return []
    ok = cost <= gate[None, :]
    if not ok.any():
        return []
    rows, cols = linear_sum_assignment(np.where(ok, cost, GATED_COST))
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if ok[r, c]]


@dataclass(frozen=True, slots=True)
class Cluster:
    """Detections (indices into the input list) that agree on one 3D person."""

    members: tuple[int, ...]


def cluster_detections(
    dets: list[Detection],
    cams: list[CameraGeometry],
    radius_m: float,
    max_residual_m: float,
    min_joints: int,
) -> list[Cluster]:
    """Group detections from different cameras that triangulate consistently.

    Candidate pairs are detections whose floor positions (from one view and a typical body
    height) are within ``radius_m`` (a sweep along the floor, not all pairs); a pair is
    consistent when the median joint residual of its 2-view triangulation, in metres
    at the joint's depth, is at most ``max_residual_m`` and the skeleton stands on the floor.
    Consistent pairs are merged greedily, best first, never two detections of one camera.
    """
    if len(dets) < 2:
        return []
    return cluster_arrays(
        np.stack([d.xn for d in dets]), np.stack([d.conf for d in dets]),
        np.array([d.cam for d in dets], dtype=np.int64), np.stack([c.R for c in cams]),
        np.stack([c.t for c in cams]), np.stack([c.center for c in cams]),
        radius_m, max_residual_m, min_joints,
    )


def cluster_arrays(
    xn: np.ndarray, conf: np.ndarray, cam: np.ndarray, cam_R: np.ndarray, cam_t: np.ndarray,
    cam_center: np.ndarray, radius_m: float, max_residual_m: float, min_joints: int,
) -> list[Cluster]:
    """:func:`cluster_detections` of detections given as columns (``xn`` ``(D, 17, 2)``,
    ``conf``, camera index) and cameras as stacked rotations, translations and centres."""
    if xn.shape[0] < 2:
        return []
    xy = floor_positions(xn, conf, cam, cam_R, cam_center, _CUE_JOINTS, _CUE_HEIGHTS)
    root = cluster_views(xn, conf, cam, xy, cam_R, cam_t, cam_R.shape[0], radius_m,
                         max_residual_m, min_joints)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(root.tolist()):
        groups[r].append(i)
    return [Cluster(tuple(g)) for _, g in sorted(groups.items()) if len(g) >= 2]
