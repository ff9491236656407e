"""Multi-view geometry for the tracker: undistortion, projection and weighted triangulation.

Detections are undistorted once into normalised camera coordinates, so every later step
(projection, association cost, triangulation) is a cheap linear-algebra operation on arrays.
Triangulation is a confidence-weighted linear least squares solved for all joints at once;
a per-view translation lets the caller fold in motion between unsynchronised frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from walkout.store.model import Camera
from walkout.tracking.kernels import (
    robust_triangulate_points,
    triangulate_points,
    undistort_points,
)

_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-12)


@dataclass(frozen=True, slots=True)
class CameraGeometry:
    """What the tracker needs of a camera, as arrays.

    ``bounds`` is ``(xmin, xmax, ymin, ymax)`` of the image border in normalised coordinates,
    used to decide cheaply whether a predicted person can appear in this camera.
    """

    id: str
    R: np.ndarray  # (3, 3) world -> camera
    t: np.ndarray  # (3,)
    center: np.ndarray  # (3,) world
    K: np.ndarray
    dist: np.ndarray
    f: float  # mean focal length (px): converts normalised errors to pixels
    bounds: tuple[float, float, float, float]

    @classmethod
    def from_camera(cls, cam: Camera) -> CameraGeometry:
        w, h = cam.resolution
        n = 32
        border = np.concatenate(
            [
                np.stack([np.linspace(0, w, n), np.zeros(n)], 1),
                np.stack([np.linspace(0, w, n), np.full(n, h)], 1),
                np.stack([np.zeros(n), np.linspace(0, h, n)], 1),
                np.stack([np.full(n, w), np.linspace(0, h, n)], 1),
            ]
        )
        und = undistort(cam.K_array, cam.dist_array, border)
        return cls(
            id=cam.id,
            R=cam.R.copy(),
            t=cam.t.copy(),
            center=cam.center.copy(),
            K=cam.K_array.copy(),
            dist=cam.dist_array.copy(),
            f=float((cam.K_array[0, 0] + cam.K_array[1, 1]) / 2.0),
            bounds=(
                float(und[:, 0].min()),
                float(und[:, 0].max()),
                float(und[:, 1].min()),
                float(und[:, 1].max()),
            ),
        )


def undistort(K: np.ndarray, dist: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Raw pixel coordinates ``(n, 2)`` to normalised undistorted coordinates ``(n, 2)``.

    Uses the iterative solver to convergence: the default 5 iterations leave millimetre-level
    errors at the corners of wide-angle lenses.
    """
    if px.shape[0] == 0:
        return np.zeros((0, 2))
    pts = np.ascontiguousarray(px, dtype=np.float64).reshape(-1, 1, 2)
    return cv2.undistortPointsIter(pts, K, dist, None, None, _UNDISTORT_CRITERIA).reshape(-1, 2)


class Lenses:
    """The lens models of a store's cameras as arrays, to undistort a slot's points at once.

    Newton's method (:func:`walkout.tracking.kernels.undistort_points`) inverts the 5-term
    model within its inner branch; points beyond the fold of a strong lens model (where the
    model has no inverse, or only an outer one the ray did not come from) and cameras with
    richer models (rational, thin prism, tilt) go to OpenCV, whose answer the tracker has
    always used there.
    """

    def __init__(self, cams: list[CameraGeometry]) -> None:
        self.cams = cams
        self.intr = np.array([[c.K[0, 0], c.K[1, 1], c.K[0, 2], c.K[1, 2]] for c in cams],
                             dtype=np.float64).reshape(-1, 4)
        self.dist = np.zeros((len(cams), 5))
        self.newton = np.ones(len(cams), dtype=bool)
        self.fold_r2 = np.full(len(cams), np.inf)
        for i, c in enumerate(cams):
            d = np.asarray(c.dist, dtype=np.float64).ravel()
            self.dist[i, : min(5, d.size)] = d[:5]
            self.newton[i] = not np.any(d[5:])
            # d(r·(1 + k1 r² + k2 r⁴ + k3 r⁶))/dr = 1 + 3k1 u + 5k2 u² + 7k3 u³ with u = r²
            k1, k2, _, _, k3 = self.dist[i]
            u = np.roots(np.trim_zeros([7 * k3, 5 * k2, 3 * k1, 1.0], "f"))
            u = u[(np.abs(u.imag) < 1e-12) & (u.real > 0)].real
            if u.size:
                self.fold_r2[i] = float(u.min())

    def undistort(self, px: np.ndarray, cam: np.ndarray, use: np.ndarray | None = None
                  ) -> np.ndarray:
        """Raw pixels ``(N, 2)`` of cameras ``cam`` ``(N,)`` to normalised coordinates; points
        not to ``use`` (unseen joints, whose values nothing reads) are only normalised."""
        use = np.ones(len(px), dtype=bool) if use is None else use
        xn, ok = undistort_points(*_f64(px), cam.astype(np.int64), self.intr, self.dist,
                                  self.fold_r2, use)
        ok |= ~use
        ok &= self.newton[cam]
        if not ok.all():
            for c in np.unique(cam[~ok]):
                sel = np.flatnonzero(~ok & (cam == c))
                xn[sel] = undistort(self.cams[c].K, self.cams[c].dist, px[sel])
        return xn


def project(R: np.ndarray, t: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image coordinates ``(..., 2)`` and depth ``(...)`` of world points ``X``."""
    Xc = X @ R.T + t
    z = Xc[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = Xc[..., :2] / z[..., None]
    return xy, z


def triangulate(
    xn: np.ndarray, w: np.ndarray, R: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted linear triangulation of ``N`` points from up to ``V`` views each.

    ``xn`` ``(N, V, 2)`` normalised observations, ``w`` ``(N, V)`` weights (0 = view unused),
    ``R`` ``(N, V, 3, 3)`` and ``t`` ``(N, V, 3)`` the world→camera transform of each view
    (``t`` may include the point's motion between the view time and the reference time).
    Each view gives two equations ``x (r3·X + t3) = r1·X + t1`` whose residual is the depth
    times the normalised error, so weights of ``confidence / depth`` minimise a confidence
    weighted pixel error. Returns ``X`` ``(N, 3)`` (NaN when fewer than 2 views) and ``ok``.
    """
    return triangulate_points(*_f64(xn, w, R, t))


@dataclass(frozen=True, slots=True)
class Triangulation:
    """Result of :func:`robust_triangulate` for ``N`` points."""

    X: np.ndarray  # (N, 3), NaN where not triangulated
    sigma: np.ndarray  # (N,) metres, NaN where not triangulated
    used: np.ndarray  # (N, V) bool: views kept after outlier rejection
    rms_px: np.ndarray  # (N,) reprojection error of the kept views


def robust_triangulate(
    xn: np.ndarray,
    conf: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    f: np.ndarray,
    outlier_px: float,
    noise_px: float,
    max_rejections: int = 3,
) -> Triangulation:
    """Triangulate, drop the worst view while its error exceeds ``outlier_px``, re-solve.

    ``f`` ``(N, V)`` is the focal length (px) of each view. A 2-view point whose views disagree
    cannot tell which is wrong, so it is dropped. ``sigma`` is the 1-σ position error implied
    by the view geometry (the normal matrix) and the larger of the residual and ``noise_px``.
    """
    X, sigma, used, rms_px = robust_triangulate_points(
        *_f64(xn, conf, R, t, f), float(outlier_px), float(noise_px), max_rejections
    )
    return Triangulation(X=X, sigma=sigma, used=used, rms_px=rms_px)


def _f64(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Float64 C-contiguous arrays, the one signature the compiled kernels are built for."""
    return tuple(np.ascontiguousarray(a, dtype=np.float64) for a in arrays)
