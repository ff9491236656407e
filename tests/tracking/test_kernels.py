"""The tracker's compiled kernels against plain numpy / OpenCV / scipy formulations of the same
arithmetic: the kernels exist for speed only, and must not change what the tracker computes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from walkout.events import L_HIP, R_HIP
from walkout.store import load_store
from walkout.tracking import CameraGeometry
from walkout.tracking.associate import GATED_COST, Detection, cluster_detections
from walkout.tracking.geometry import Lenses, project, undistort
from walkout.tracking.kernels import assign_frames, association_costs, triangulate_groups

J = 17


def _numpy_cost(det_xn: np.ndarray, det_conf: np.ndarray, pred_xn: np.ndarray,
                pred_depth: np.ndarray, cap_m: float, min_joints: int) -> np.ndarray:
    """The association cost as the tracker computed it with numpy before the kernel."""
    valid = (det_conf[:, None, :] > 0) & (pred_depth[None, :, :] > 0.2)
    d = np.linalg.norm(det_xn[:, None] - pred_xn[None], axis=-1) * pred_depth[None]
    d = np.minimum(np.nan_to_num(d, nan=cap_m), cap_m)
    w = np.where(valid, det_conf[:, None, :], 0.0)
    cost = (d * w).sum(axis=2) / np.maximum(w.sum(axis=2), 1e-9)
    return np.where(valid.sum(axis=2) >= min_joints, cost, np.inf)


@pytest.fixture(scope="module")
def cams() -> list[CameraGeometry]:
    return [CameraGeometry.from_camera(c) for c in load_store("small").cameras]


def _people(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` rough standing skeletons (17 joints spread over a 0.5 × 0.3 × 1.7 m box)."""
    base = rng.uniform([1.5, 1.5, 0.0], [8.5, 8.5, 0.0], (n, 1, 3))
    return base + rng.uniform([-0.25, -0.15, 0.05], [0.25, 0.15, 1.7], (n, J, 3))


def test_association_costs_equal_the_numpy_formulation(cams: list[CameraGeometry]) -> None:
    rng = np.random.default_rng(3)
    X, V = _people(rng, 9), rng.normal(0, 0.5, (9, J, 3))
    t_last = rng.uniform(0.8, 1.0, 9)
    frame_cam = np.array([0, 3, 5, 7, 11])
    frame_t = rng.uniform(1.0, 1.07, 5)
    n_dets = np.array([3, 0, 4, 2, 5])
    off = np.concatenate([[0], np.cumsum(n_dets)])
    det_xn = rng.normal(0, 0.4, (off[-1], J, 2))
    det_conf = np.where(rng.random((off[-1], J)) < 0.2, 0.0, rng.uniform(0.3, 1, (off[-1], J)))
    R = np.stack([c.R for c in cams])
    t = np.stack([c.t for c in cams])
    bounds = np.array([c.bounds for c in cams])
    visible, cost = association_costs(X, V, t_last, 0.4, R, t, bounds, frame_cam, frame_t, off,
                                      det_xn, det_conf, 0.5, 4, (L_HIP, R_HIP))
    assert visible.any() and not visible.all()
    for f in range(5):
        cam = cams[frame_cam[f]]
        Xp = X + V * np.minimum(frame_t[f] - t_last, 0.4)[:, None, None]
        xn, z = project(cam.R, cam.t, Xp)
        cols = np.flatnonzero(visible[f])
        ref = _numpy_cost(det_xn[off[f]:off[f + 1]], det_conf[off[f]:off[f + 1]], xn[cols],
                          z[cols], 0.5, 4)
        np.testing.assert_allclose(cost[off[f]:off[f + 1]][:, cols], ref, rtol=1e-12)
        assert np.isinf(cost[off[f]:off[f + 1]][:, ~visible[f]]).all()


def test_assignment_equals_scipy_also_on_ties() -> None:
    rng = np.random.default_rng(0)
    for trial in range(500):
        nd, T = rng.integers(1, 8), rng.integers(1, 8)
        cost = rng.uniform(0, 1.5, (nd, T))
        if trial % 2:
            cost = np.round(cost, 1)  # many exact ties
        cost[rng.random((nd, T)) < 0.2] = np.inf
        gates = rng.uniform(0.3, 1.0, (1, T))
        visible = np.ones((1, T), dtype=bool)
        match, claimed = assign_frames(cost, visible, np.array([0, nd]), gates, 0.8, GATED_COST)
        ok = cost <= gates
        rows, cols = linear_sum_assignment(np.where(ok, cost, GATED_COST))
        want = {int(r): int(c) for r, c in zip(rows, cols, strict=True) if ok[r, c]}
        assert {d: int(k) for d, k in enumerate(match) if k >= 0} == want
        free_tracks = [k for k in range(T) if k not in want.values()]
        assert claimed.tolist() == [bool((cost[d, free_tracks] <= 0.8).any())
                                    for d in range(nd)]


def _distort(xy: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """OpenCV's k1 k2 p1 p2 k3 model applied to normalised points ``(n, 2)``."""
    k1, k2, p1, p2, k3 = (list(dist) + [0.0] * 5)[:5]
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    rad = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    return np.stack([x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                     y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y], 1)


@pytest.mark.parametrize("store_name", ["small", "aifi-nanostore"])
def test_undistortion_is_opencv_or_more_exact(store_name: str) -> None:
    """Over the whole image of every camera: where OpenCV's iteration converged the two agree
    to 1e-12; where they differ (near the fold of a strong lens, where OpenCV's 40 fixed-point
    steps are not enough) ours is an exact inverse of the lens model and OpenCV's is not;
    beyond the fold (no inverse on the inner branch) the points are OpenCV's own."""
    store = load_store(store_name)
    geoms = [CameraGeometry.from_camera(c) for c in store.cameras]
    lenses = Lenses(geoms)
    for i, (g, c) in enumerate(zip(geoms, store.cameras, strict=True)):
        w, h = c.resolution
        px = np.stack(np.meshgrid(np.linspace(0, w, 64), np.linspace(0, h, 36)), -1).reshape(-1, 2)
        got = lenses.undistort(px, np.full(len(px), i))
        ref = undistort(g.K, g.dist, px)
        target = (px - g.K[[0, 1], [2, 2]]) / g.K[[0, 1], [0, 1]]
        ref_err = np.abs(_distort(ref, g.dist) - target).max(axis=1)
        got_err = np.abs(_distort(got, g.dist) - target).max(axis=1)
        differ = np.abs(got - ref).max(axis=1) > 1e-12
        assert (got_err[differ] < 1e-12).all() and (got_err[differ] <= ref_err[differ]).all()
        inner = (got ** 2).sum(axis=1) < lenses.fold_r2[i]
        assert (got[~inner] == ref[~inner]).all()  # beyond the fold: OpenCV's answer


def test_richer_lens_models_go_to_opencv(cams: list[CameraGeometry]) -> None:
    """A rational (8-term) model is not what the Newton kernel inverts: OpenCV does it."""
    rational = replace(cams[0], dist=np.array([-0.3, 0.1, 0.001, -0.002, 0.0, 0.05, 0.0, 0.0]))
    lenses = Lenses([cams[1], rational])
    px = np.stack(np.meshgrid(np.linspace(0, 1280, 20), np.linspace(0, 720, 12)), -1)
    px = px.reshape(-1, 2)
    got = lenses.undistort(px, np.ones(len(px), dtype=np.int64))
    assert not lenses.newton[1] and lenses.newton[0]
    assert (got == undistort(rational.K, rational.dist, px)).all()


def test_unseen_joints_are_only_normalised(cams: list[CameraGeometry]) -> None:
    px = np.array([[100.0, 80.0], [900.0, 600.0]])
    got = Lenses(cams).undistort(px, np.zeros(2, dtype=np.int64), np.array([True, False]))
    K = cams[0].K
    assert got[1].tolist() == [(900.0 - K[0, 2]) / K[0, 0], (600.0 - K[1, 2]) / K[1, 1]]
    np.testing.assert_allclose(got[0], undistort(K, cams[0].dist, px[:1])[0], atol=1e-12)


def test_groups_triangulate_alone_whatever_else_is_in_the_batch(
    cams: list[CameraGeometry],
) -> None:
    """The distributed tracker triangulates subsets of a slot's groups on other machines:
    a group's result must not depend on which other groups share the call."""
    rng = np.random.default_rng(5)
    people = _people(rng, 4)
    xn, conf, cam, rows, off = [], [], [], [], [0]
    for p in people:
        for c in rng.choice(len(cams), 5, replace=False):
            xy, _ = project(cams[c].R, cams[c].t, p)
            xn.append(xy + rng.normal(0, 0.002, xy.shape))
            conf.append(np.full(J, 0.9))
            cam.append(c)
            rows.append(len(rows))
        off.append(len(rows))
    args = (np.stack(xn), np.stack(conf), np.array(cam), np.zeros(len(cam)))
    R, t = np.stack([c.R for c in cams]), np.stack([c.t for c in cams])
    f = np.array([c.f for c in cams])
    vel = np.zeros((4, J, 3))
    X, S = triangulate_groups(*args, np.array(rows), np.array(off), 0.0, vel, R, t, f, 20.0,
                              2.0, 3, 2)
    assert np.nanmax(np.linalg.norm(X - people, axis=-1)) < 0.05 and np.isfinite(S).all()
    X2, S2 = triangulate_groups(*args, np.array(rows[5:10]), np.array([0, 5]), 0.0, vel[1:2],
                                R, t, f, 20.0, 2.0, 3, 2)
    assert X2.tobytes() == X[1:2].tobytes() and S2.tobytes() == S[1:2].tobytes()


def test_clusters_of_two_people_and_a_ghost(cams: list[CameraGeometry]) -> None:
    """Views of one person in several cameras form one cluster; a false detection and a
    second view from an already-used camera stay out."""
    rng = np.random.default_rng(8)
    a, b = _people(rng, 2)
    dets = []
    for p, chosen in ((a, (0, 4, 9)), (b, (2, 4, 7))):
        for c in chosen:
            xy, z = project(cams[c].R, cams[c].t, p)
            if (z > 0).all():
                dets.append(Detection(int(c), 0.0, xy + rng.normal(0, 0.001, xy.shape),
                                      np.full(J, 0.9)))
    dets.append(Detection(1, 0.0, rng.normal(0, 0.3, (J, 2)), np.full(J, 0.9)))  # ghost
    clusters = cluster_detections(dets, cams, 0.8, 0.05, 4)
    groups = [{dets[m].cam for m in c.members} for c in clusters]
    assert len(clusters) == 2 and all(len(g) == len(c.members) for g, c in
                                      zip(groups, clusters, strict=True))
    assert len(dets) - 1 not in {m for c in clusters for m in c.members}
