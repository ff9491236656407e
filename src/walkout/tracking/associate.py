"""Data association: detections to tracks within one camera, and detections across cameras.

Both steps only compare things that are already close: a camera only scores the tracks whose
prediction falls in its image, and cross-camera pairing only looks at detections whose floor
positions fall in neighbouring grid cells. Cost therefore grows with the people one camera
sees, not with everyone in the store.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from walkout.tracking.geometry import CameraGeometry, reprojection_error, triangulate

L_SHOULDER, R_SHOULDER, L_HIP, R_HIP, L_ANKLE, R_ANKLE = 5, 6, 11, 12, 15, 16
#: Body points used to place a single detection on the floor: (joints, typical height m).
_FLOOR_CUES = (((L_HIP, R_HIP), 0.92), ((L_SHOULDER, R_SHOULDER), 1.42), ((L_ANKLE, R_ANKLE), 0.08))

GATED_COST = 1e9


@dataclass(frozen=True, slots=True)
class Detection:
    """One undistorted 2D skeleton: camera index, frame time, normalised joints, confidences."""

    cam: int
    t: float
    xn: np.ndarray  # (17, 2) normalised undistorted coordinates
    conf: np.ndarray  # (17,) 0 where missing / below the confidence floor


def association_cost(
    det_xn: np.ndarray,
    det_conf: np.ndarray,
    pred_xn: np.ndarray,
    pred_depth: np.ndarray,
    cap_m: float,
    min_joints: int,
) -> np.ndarray:
    """Robust mean joint distance ``(D, T)`` in metres at the predicted depth.

    A pixel error means more at 8 m than at 2 m, so distances are scaled by the predicted
    depth, making one gate valid across the whole store. Each joint's term is capped at
    ``cap_m`` so that a few mis-detected joints cannot dominate.
    """
    valid = (det_conf[:, None, :] > 0) & (pred_depth[None, :, :] > 0.2)  # (D, T, 17)
    d = np.linalg.norm(det_xn[:, None] - pred_xn[None], axis=-1) * pred_depth[None]
    d = np.minimum(np.nan_to_num(d, nan=cap_m), cap_m)
    w = np.where(valid, det_conf[:, None, :], 0.0)
    n = valid.sum(axis=2)
    cost = (d * w).sum(axis=2) / np.maximum(w.sum(axis=2), 1e-9)
    return np.where(n >= min_joints, cost, np.inf)


def assign(cost: np.ndarray, gate: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one pairs ``(row, col)`` with ``cost <= gate[col]``."""
    if cost.size == 0:
        return []
    ok = cost <= gate[None, :]
    if not ok.any():
        return []
    rows, cols = linear_sum_assignment(np.where(ok, cost, GATED_COST))
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if ok[r, c]]


def floor_position(cam: CameraGeometry, xn: np.ndarray, conf: np.ndarray) -> np.ndarray | None:
    """Where a single 2D detection stands on the floor, assuming a typical body height."""
    for joints, height in _FLOOR_CUES:
        c = conf[list(joints)]
        if (c > 0).all():
            p = xn[list(joints)].mean(axis=0)
            ray = cam.R.T @ np.array([p[0], p[1], 1.0])
            if ray[2] >= -1e-6:
                return None  # looks at or above the horizon: no floor point
            s = (height - cam.center[2]) / ray[2]
            return (cam.center + s * ray)[:2]
    return None


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

    Candidate pairs come from a floor grid of ``radius_m`` cells (only neighbours compared);
    a pair is consistent when the median joint residual of its 2-view triangulation, in metres
    at the joint's depth, is at most ``max_residual_m`` and the skeleton stands on the floor.
    Consistent pairs are merged greedily, best first, never two detections of one camera.
    """
    if len(dets) < 2:
        return []
    xy: list[np.ndarray | None] = [floor_position(cams[d.cam], d.xn, d.conf) for d in dets]
    grid: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, p in enumerate(xy):
        if p is not None:
            grid[(int(np.floor(p[0] / radius_m)), int(np.floor(p[1] / radius_m)))].append(i)
    pairs: list[tuple[int, int]] = []
    for (gx, gy), members in sorted(grid.items()):
        for i in members:
            pi = xy[i]
            assert pi is not None
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    for j in grid.get((gx + dx, gy + dy), ()):
                        pj = xy[j]
                        assert pj is not None
                        if (
                            j > i
                            and dets[j].cam != dets[i].cam
                            and float(np.hypot(*(pi - pj))) <= radius_m
                        ):
                            pairs.append((i, j))
    if not pairs:
        return []
    pairs.sort()
    P = len(pairs)
    nj = dets[0].xn.shape[0]
    ia = np.array([p[0] for p in pairs])
    ib = np.array([p[1] for p in pairs])
    xn = np.stack([np.stack([dets[i].xn for i in ia]), np.stack([dets[j].xn for j in ib])], 2)
    conf = np.stack([np.stack([dets[i].conf for i in ia]), np.stack([dets[j].conf for j in ib])], 2)
    Rs = np.stack([c.R for c in cams])
    ts = np.stack([c.t for c in cams])
    cam_idx = np.stack([[dets[i].cam for i in ia], [dets[j].cam for j in ib]], 1)  # (P, 2)
    R = np.broadcast_to(Rs[cam_idx][:, None], (P, nj, 2, 3, 3)).reshape(-1, 2, 3, 3)
    t = np.broadcast_to(ts[cam_idx][:, None], (P, nj, 2, 3)).reshape(-1, 2, 3)
    xn_f = xn.reshape(-1, 2, 2)
    w = np.where((conf > 0).all(axis=2, keepdims=True), conf, 0.0).reshape(-1, 2)
    X, ok = triangulate(xn_f, w, R, t)
    err, z = reprojection_error(np.nan_to_num(X), xn_f, R, t)
    res_m = np.where(ok[:, None], err * np.abs(z), np.nan).max(axis=1).reshape(P, nj)
    ok = ok.reshape(P, nj) & (z.reshape(P, nj, 2) > 0.2).all(axis=2)
    n_ok = ok.sum(axis=1)
    res = np.where(ok, res_m, np.nan)
    with np.errstate(all="ignore"):
        med = np.nanmedian(np.where(n_ok[:, None] > 0, res, 0.0), axis=1)
    Z = X.reshape(P, nj, 3)[..., 2]
    zmin = np.nanmin(np.where(ok, Z, np.inf), axis=1)
    zmax = np.nanmax(np.where(ok, Z, -np.inf), axis=1)
    good = (n_ok >= min_joints) & (med <= max_residual_m) & (zmin > -0.3) & (zmax < 2.4)
    order = np.argsort(np.where(good, med, np.inf), kind="stable")

    parent = list(range(len(dets)))
    cams_of: dict[int, set[int]] = {i: {d.cam} for i, d in enumerate(dets)}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k in order:
        if not good[k]:
            break
        a, b = root(int(ia[k])), root(int(ib[k]))
        if a == b or cams_of[a] & cams_of[b]:
            continue
        a, b = min(a, b), max(a, b)
        parent[b] = a
        cams_of[a] |= cams_of.pop(b)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(dets)):
        groups[root(i)].append(i)
    return [Cluster(tuple(g)) for _, g in sorted(groups.items()) if len(g) >= 2]
