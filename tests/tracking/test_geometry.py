"""Triangulation and undistortion against exact projections through the store's real lenses."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from walkout.store import load_store
from walkout.store.model import Store
from walkout.tracking import CameraGeometry, robust_triangulate, triangulate, undistort


@pytest.fixture(scope="module")
def store() -> Store:
    return load_store("small")


def _observe(store: Store, X: np.ndarray, noise_px: float, rng: np.random.Generator):
    """Normalised observations of points ``X`` (N, 3) in every camera, with pixel noise."""
    cams = [CameraGeometry.from_camera(c) for c in store.cameras]
    xn, vis = [], []
    for c, g in zip(store.cameras, cams, strict=True):
        px, _ = cv2.projectPoints(X, np.asarray(c.pose.rvec), c.t, c.K_array, c.dist_array)
        px = px.reshape(-1, 2) + rng.normal(0, noise_px, (X.shape[0], 2))
        depth = (X @ g.R.T + g.t)[:, 2]
        w, h = c.resolution
        vis.append(
            (depth > 0.1) & (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
        )
        xn.append(undistort(g.K, g.dist, px))
    xn = np.stack(xn, 1)  # (N, V, 2)
    conf = np.stack(vis, 1).astype(float)
    V = len(cams)
    R = np.broadcast_to(np.stack([g.R for g in cams]), (X.shape[0], V, 3, 3))
    t = np.broadcast_to(np.stack([g.t for g in cams]), (X.shape[0], V, 3))
    f = np.broadcast_to(np.array([g.f for g in cams]), (X.shape[0], V))
    return xn, conf, R, t, f


def _points(rng: np.random.Generator, n: int = 200) -> np.ndarray:
    return rng.uniform([0.5, 0.5, 0.05], [9.5, 9.5, 1.9], (n, 3))


def test_undistort_inverts_projection_at_image_corners(store: Store) -> None:
    cam = store.cameras[0]
    xn = np.array([[1.2, 0.7], [-1.1, -0.65], [0.0, 0.0], [0.9, -0.6]])
    pts = np.concatenate([xn, np.ones((4, 1))], 1)
    px, _ = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), cam.K_array, cam.dist_array)
    back = undistort(cam.K_array, cam.dist_array, px.reshape(-1, 2))
    np.testing.assert_allclose(back, xn, atol=1e-7)


def test_exact_projections_triangulate_below_a_millimetre(store: Store) -> None:
    rng = np.random.default_rng(0)
    X = _points(rng)
    xn, conf, R, t, _ = _observe(store, X, 0.0, rng)
    est, ok = triangulate(xn, conf, R, t)
    assert ok.all()
    err = np.linalg.norm(est - X, axis=1)
    assert err.max() < 1e-3


def test_three_pixel_noise_gives_centimetre_accuracy(store: Store) -> None:
    rng = np.random.default_rng(1)
    X = _points(rng)
    xn, conf, R, t, f = _observe(store, X, 3.0, rng)
    tri = robust_triangulate(xn, conf, R, t, f, outlier_px=20.0, noise_px=3.0)
    err = np.linalg.norm(tri.X - X, axis=1)
    assert np.median(err) < 0.015
    assert np.percentile(err, 95) < 0.04
    # The reported sigma is the right order of magnitude (error / sigma is O(1)).
    ratio = err / tri.sigma
    assert 0.3 < np.median(ratio) < 3.0


def test_two_views_only(store: Store) -> None:
    rng = np.random.default_rng(2)
    X = _points(rng, 50)
    xn, conf, R, t, _ = _observe(store, X, 0.0, rng)
    keep = np.zeros_like(conf)
    for i in range(X.shape[0]):  # the first two cameras that see each point
        keep[i, np.flatnonzero(conf[i])[:2]] = 1.0
    est, ok = triangulate(xn, keep, R, t)
    assert ok.all()
    assert np.linalg.norm(est - X, axis=1).max() < 1e-3
    one = keep.copy()
    one[:, :] = 0
    one[:, 0] = 1
    _, ok1 = triangulate(xn, one, R, t)
    assert not ok1.any()


def test_outlier_view_is_rejected(store: Store) -> None:
    rng = np.random.default_rng(3)
    X = _points(rng, 100)
    xn, conf, R, t, f = _observe(store, X, 1.0, rng)
    # Corrupt one visible view of every point by ~60 px.
    bad = np.array([np.flatnonzero(c)[0] for c in conf])
    xn = xn.copy()
    xn[np.arange(X.shape[0]), bad] += 0.12
    tri = robust_triangulate(xn, conf, R, t, f, outlier_px=20.0, noise_px=3.0)
    assert not tri.used[np.arange(X.shape[0]), bad].any()
    assert np.median(np.linalg.norm(tri.X - X, axis=1)) < 0.01
