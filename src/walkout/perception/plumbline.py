"""A camera's radial lens distortion from straight scene edges (the plumb-line method).

A straight edge in the scene (a door frame, a wall's bottom rail, the lip band of a shelf row)
is straight in the image only once the lens is removed, so the lens is the ``k1, k2`` under
which the edges' pixels undistort onto straight lines. That needs no survey and no other
camera: it separates the lens from the poses, which a bundle adjustment on a walking shopper
cannot do (freeing ``k1`` there runs off, the joints trading lens for pose). The focal length
and principal point stay fixed: with them open a plumb-line fit is degenerate (any scaling
about the centre keeps lines straight).

The edges are located on the frame itself (:func:`edge_points`: gradient peaks across a guide
segment, sub-pixel), and :func:`fit_lens` refuses evidence that cannot fix the lens: too few
lines, lines that stay curved under every ``k1, k2`` (not straight edges), or lines that carry
no curvature (short, or through the image centre where radial distortion bends nothing).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import map_coordinates
from scipy.optimize import least_squares

_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 60, 1e-12)

#: Fewest lines a lens fit accepts: two coefficients, and one wrong edge must not decide them.
MIN_LINES = 4
#: Fewest edge points on one line.
MIN_POINTS = 8
#: A fit whose lines stay further than this off straight (RMS, px) has curved or wrong edges.
MAX_RMS_PX = 1.0
#: Refuse a fit whose one-sigma uncertainty of the distortion at the image corner exceeds this
#: (px): the lines do not constrain the lens.
MAX_CORNER_SIGMA_PX = 2.0
#: An edge sample needs at least this intensity gradient across it (grey levels per px).
MIN_GRADIENT = 8.0
#: ``|k1|, |k2|`` searched up to this: beyond it the model folds over inside a 640x360 frame.
K_BOUND = 1.5


class PlumbLineError(ValueError):
    """Line evidence that cannot fix a lens: too little, or not straight."""


@dataclass(frozen=True, slots=True)
class LensFit:
    """``k1, k2`` (OpenCV's radial terms; tangential and ``k3`` zero) and how well they fit."""

    k1: float
    k2: float
    rms_px: float  # distance of the edge points to their lines, all lines (px)
    line_rms_px: tuple[float, ...]  # the same per line
    start_rms_px: float  # ... under the starting lens
    corner_sigma_px: float  # one-sigma uncertainty of the distortion at the image corner (px)
    n_points: int

    @property
    def dist(self) -> np.ndarray:
        """OpenCV distortion vector ``(k1, k2, p1, p2, k3)``."""
        return np.array([self.k1, self.k2, 0.0, 0.0, 0.0])


def _undistort(pts: np.ndarray, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Raw pixels (n, 2) → undistorted normalised points (n, 2); iterated to convergence (the
    AiFi lenses, k1 ≈ -0.5, leave pixel errors at the corners after OpenCV's default 5)."""
    src = np.asarray(pts, np.float64).reshape(-1, 1, 2)
    return cv2.undistortPointsIter(src, K, dist, None, None, _CRITERIA).reshape(-1, 2)


def line_distances(lines: Sequence[np.ndarray], K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Signed distance (raw px) of every point to the image of its line under ``dist``; the
    lines' points concatenated in order.

    Each line is fitted (total least squares) to its points undistorted with ``dist``; the
    foot of each point on that line is distorted back and the distance taken in the raw image.
    Measuring in the raw image keeps the fit honest: in undistorted space a lens that shrinks
    the whole image would make every line look straight.
    """
    raw = np.concatenate(lines)
    und = _undistort(raw, K, dist)
    feet = np.empty_like(und)
    side = np.empty(len(und))
    start = 0
    for ln in lines:
        sl = slice(start, start + len(ln))
        p = und[sl]
        mid = p.mean(axis=0)
        normal = np.linalg.svd(p - mid, full_matrices=False)[2][1]
        off = (p - mid) @ normal
        feet[sl] = p - off[:, None] * normal
        side[sl] = np.sign(off)
        start += len(ln)
    back, _ = cv2.projectPoints(np.c_[feet, np.ones(len(feet))], np.zeros(3), np.zeros(3), K,
                                dist)
    return np.linalg.norm(raw - back.reshape(-1, 2), axis=1) * side


def _corner_radius(K: np.ndarray, size: tuple[int, int], k: np.ndarray) -> float | None:
    """Undistorted normalised radius of the image corner farthest from the principal point
    under ``k1, k2``; None when the lens folds over before it (not one-to-one in the image)."""
    w, h = size
    cx, cy, f = K[0, 2], K[1, 2], float(K[0, 0] + K[1, 1]) / 2
    rd = max(np.hypot(x - cx, y - cy) for x in (0, w) for y in (0, h)) / f
    # r (1 + k1 r^2 + k2 r^4) = rd: the smallest positive root, with the map increasing on it
    roots = np.roots([k[1], 0.0, k[0], 0.0, 1.0, -rd])
    real = np.sort(roots[(np.abs(roots.imag) < 1e-9) & (roots.real > 0)].real)
    for r in real:
        rr = np.linspace(0.0, r, 64)
        if np.all(1 + 3 * k[0] * rr ** 2 + 5 * k[1] * rr ** 4 > 0):
            return float(r)
        break
    return None


def fit_lens(lines: Sequence[np.ndarray], K: np.ndarray, size: tuple[int, int],
             k0: tuple[float, float] = (0.0, 0.0), *, min_lines: int = MIN_LINES,
             max_rms_px: float = MAX_RMS_PX,
             max_corner_sigma_px: float = MAX_CORNER_SIGMA_PX) -> LensFit:
    """``k1, k2`` that make the raw-pixel ``lines`` (each ``(n, 2)``: points of one straight
    scene edge) straight, ``K`` held; ``size`` is the image's ``(w, h)``.

    Robust (soft-L1 at 1 px) against a stray edge point. Raises :class:`PlumbLineError` when
    fewer than ``min_lines`` lines of ``MIN_POINTS`` points are given, when the fitted lines
    are still more than ``max_rms_px`` off straight, or when the fit leaves the distortion at
    the image corner uncertain by more than ``max_corner_sigma_px``.
    """
    lines = [np.asarray(ln, np.float64).reshape(-1, 2) for ln in lines]
    short = [i for i, ln in enumerate(lines) if len(ln) < MIN_POINTS]
    if short:
        raise PlumbLineError(f"line(s) {short} have fewer than {MIN_POINTS} points")
    if len(lines) < min_lines:
        raise PlumbLineError(f"{len(lines)} line(s) given; a lens fit needs at least "
                             f"{min_lines} straight edges")
    K = np.asarray(K, np.float64)

    def fun(k: np.ndarray) -> np.ndarray:
        return line_distances(lines, K, np.array([k[0], k[1], 0.0, 0.0, 0.0]))

    start = fun(np.asarray(k0, float))
    sol = least_squares(fun, np.asarray(k0, float), method="trf", loss="soft_l1",
                        f_scale=1.0, x_scale=np.array([0.1, 0.1]), diff_step=1e-4,
                        bounds=([-K_BOUND, -K_BOUND], [K_BOUND, K_BOUND]))
    d = fun(sol.x)
    n = len(d)
    rms = float(np.sqrt(np.mean(d ** 2)))
    per_line = []
    start_i = 0
    for ln in lines:
        per_line.append(round(float(np.sqrt(np.mean(d[start_i:start_i + len(ln)] ** 2))), 3))
        start_i += len(ln)
    if rms > max_rms_px:
        worst = int(np.argmax(per_line))
        raise PlumbLineError(
            f"the lines are not straight under any k1, k2: {rms:.2f} px RMS after the fit "
            f"(> {max_rms_px:g}; worst line {worst} at {per_line[worst]:.2f} px): curved or "
            "mis-picked edges")
    r = _corner_radius(K, size, sol.x)
    if r is None:
        raise PlumbLineError(f"the fitted lens (k1 {sol.x[0]:.3f}, k2 {sol.x[1]:.3f}) folds "
                             "over inside the image: the lines do not constrain the lens")
    # One-sigma of the corner's raw-pixel position, from the Gauss-Newton covariance of k.
    jac = sol.jac
    sigma2 = float(np.sum(d ** 2)) / max(n - 2, 1)
    try:
        cov = np.linalg.inv(jac.T @ jac) * sigma2
    except np.linalg.LinAlgError:
        cov = np.full((2, 2), np.inf)
    grad = float(K[0, 0] + K[1, 1]) / 2 * np.array([r ** 3, r ** 5])
    var = float(grad @ cov @ grad)
    corner_sigma = float(np.sqrt(var)) if np.isfinite(var) and var >= 0 else float("inf")
    if corner_sigma > max_corner_sigma_px:
        raise PlumbLineError(
            f"the lines do not constrain the lens: the distortion at the image corner is "
            f"uncertain by {corner_sigma:.1f} px (> {max_corner_sigma_px:g}); use longer "
            "edges away from the image centre")
    return LensFit(float(sol.x[0]), float(sol.x[1]), rms, tuple(per_line),
                   float(np.sqrt(np.mean(start ** 2))), corner_sigma, n)


def edge_points(gray: np.ndarray, guide: np.ndarray, step: float = 2.0,
                search: float = 3.0) -> np.ndarray:
    """Sub-pixel edge points along a hand-picked guide polyline ``(m, 2)`` on an image.

    Every ``step`` px along each guide segment, the intensity profile across the segment
    (the image lightly blurred, cubic-spline sampled every 0.25 px) is differentiated and its
    steepest point within ``search`` px, refined by a parabola, is the edge. Samples without a
    clear edge (gradient under ``MIN_GRADIENT``, or steepest at the window's end) are dropped. Each
    guide segment must follow one edge to within ``search`` px.
    """
    img = cv2.GaussianBlur(np.asarray(gray, np.float32), (0, 0), 1.0)
    guide = np.asarray(guide, np.float64).reshape(-1, 2)
    h = 0.25
    offs = np.arange(-search - 1.0, search + 1.0 + h / 2, h)
    inner = (offs >= -search) & (offs <= search)
    centres, normals = [], []
    for a, b in itertools.pairwise(guide):
        length = float(np.linalg.norm(b - a))
        if length < step:
            continue
        u = (b - a) / length
        s = np.arange(step / 2, length, step)
        centres.append(a + s[:, None] * u)
        normals.append(np.tile([-u[1], u[0]], (len(s), 1)))
    if not centres:
        return np.empty((0, 2))
    c, n = np.concatenate(centres), np.concatenate(normals)
    q = c[:, None, :] + offs[None, :, None] * n[:, None, :]  # (samples, offsets, xy)
    prof = map_coordinates(img, [q[..., 1].ravel(), q[..., 0].ravel()], order=3,
                           mode="nearest").reshape(len(c), len(offs))
    g = np.abs(np.gradient(prof, h, axis=1))
    g[:, ~inner] = 0.0
    i = np.argmax(g, axis=1)
    rows = np.arange(len(c))
    lo, hi = np.flatnonzero(inner)[[0, -1]]
    peak = g[rows, i]
    ok = (i > lo) & (i < hi) & (peak >= MIN_GRADIENT)
    i = np.clip(i, 1, len(offs) - 2)
    g0, g1, g2 = g[rows, i - 1], peak, g[rows, i + 1]
    den = g0 - 2 * g1 + g2
    frac = np.where(den < 0, 0.5 * (g0 - g2) / np.where(den < 0, den, -1.0), 0.0)
    pts = c + ((offs[i] + frac * h)[:, None]) * n
    return pts[ok]


def trace_edge(gray: np.ndarray, guide: np.ndarray, search: float = 4.0,
               tol_px: float = 1.0) -> np.ndarray:
    """Edge points of one straight scene edge from a rough guide polyline (picked by eye to a
    few px): :func:`edge_points` within ``search`` px, a robust parabola through them (in the
    guide's chord frame: the image of a line under a radial lens bends gently), then the edge
    again within 1.5 px of that parabola over the span found, keeping the points within
    ``tol_px`` of it. The parabola only steers the search onto one edge (a mullion has two, a
    few px apart); the points are the image's own."""
    guide = np.asarray(guide, np.float64).reshape(-1, 2)
    a, b = guide[0], guide[-1]
    u = (b - a) / np.linalg.norm(b - a)
    n = np.array([-u[1], u[0]])

    def curve(pts: np.ndarray) -> np.ndarray:
        s, d = (pts - a) @ u, (pts - a) @ n
        keep = np.ones(len(s), bool)
        coef = np.zeros(3)
        for _ in range(4):
            if keep.sum() < 8:
                break
            coef = np.polyfit(s[keep], d[keep], 2)
            r = d - np.polyval(coef, s)
            keep = np.abs(r) <= max(tol_px, 3.0 * 1.4826 * float(np.median(np.abs(r[keep]))))
        return coef

    first = edge_points(gray, guide, search=search)
    if len(first) < 8:
        return np.empty((0, 2))
    coef = curve(first)
    along = (first - a) @ u
    s = np.linspace(float(along.min()), float(along.max()), 64)
    dense = a + s[:, None] * u + np.polyval(coef, s)[:, None] * n
    pts = edge_points(gray, dense, search=1.5)
    if len(pts) == 0:
        return pts
    r = (pts - a) @ n - np.polyval(coef, (pts - a) @ u)
    return pts[np.abs(r) <= tol_px]


def line_segments(gray: np.ndarray, min_len: float = 12.0) -> np.ndarray:
    """Straight segments ``(n, 4)`` (x1, y1, x2, y2) of an image, OpenCV's LSD detector."""
    lsd = cv2.createLineSegmentDetector(cv2.LSD_REFINE_STD)
    found = lsd.detect(np.asarray(gray, np.uint8))[0]
    segs = np.empty((0, 4)) if found is None else found.reshape(-1, 4).astype(np.float64)
    return segs[np.hypot(segs[:, 2] - segs[:, 0], segs[:, 3] - segs[:, 1]) >= min_len]


def _cross(u: np.ndarray, v: np.ndarray) -> float:
    return float(u[0] * v[1] - u[1] * v[0])


def chain_segments(segs: np.ndarray, max_gap: float = 12.0, max_turn_deg: float = 6.0,
                   max_offset: float = 1.5, min_len: float = 100.0) -> list[np.ndarray]:
    """Chains of segments that continue one another: the pieces a detector of straight
    segments cuts a gently bent edge into (the image of a straight edge under a radial lens).

    Greedy from the longest segment: a chain grows at either end by the segment whose near
    end is within ``max_gap`` px of it, whose direction turns by at most ``max_turn_deg``
    from the chain's end segment, and whose ends lie within ``max_offset`` px of that end
    segment's extension (plus what that turn allows over the distance). Returns each chain of
    total length ``min_len`` px or more as its ordered segments ``(k, 4)``.
    """
    segs = np.asarray(segs, np.float64).reshape(-1, 4)
    length = np.hypot(segs[:, 2] - segs[:, 0], segs[:, 3] - segs[:, 1])
    used = np.zeros(len(segs), bool)
    cos_turn = np.cos(np.radians(max_turn_deg))
    chains = []

    def grow(end: np.ndarray) -> int | None:
        """Index of the free segment continuing ``end`` (x1, y1, x2, y2, growing at x2, y2)."""
        p, q = end[:2], end[2:]
        u = (q - p) / np.linalg.norm(q - p)
        best, best_gap = None, max_gap
        for j in np.flatnonzero(~used):
            a, b = segs[j, :2], segs[j, 2:]
            if np.linalg.norm(b - q) < np.linalg.norm(a - q):
                a, b = b, a  # orient the candidate away from the chain's end
            gap = float(np.linalg.norm(a - q))
            v = (b - a) / length[j]
            if gap > best_gap or u @ v < cos_turn or (a - q) @ u < -2.0:
                continue
            bend = abs(float((b - q) @ u)) * np.sin(np.radians(max_turn_deg))
            if (abs(_cross(u, a - q)) <= max_offset
                    and abs(_cross(u, b - q)) <= max_offset + bend):
                best, best_gap = j, gap
        return best

    for i in np.argsort(-length):
        if used[i]:
            continue
        used[i] = True
        chain = [segs[i].copy()]
        for forward in (True, False):
            while True:
                end = chain[-1] if forward else chain[0][[2, 3, 0, 1]]
                j = grow(end)
                if j is None:
                    break
                used[j] = True
                s = segs[j]
                a_near = np.linalg.norm(s[:2] - end[2:]) <= np.linalg.norm(s[2:] - end[2:])
                if forward:
                    chain.append(s if a_near else s[[2, 3, 0, 1]])
                else:
                    chain.insert(0, s[[2, 3, 0, 1]] if a_near else s)
        c = np.asarray(chain)
        if np.hypot(c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]).sum() >= min_len:
            chains.append(c)
    return chains


#: A line whose RMS after the fit exceeds this many times the median line's is dropped (a
#: hanging cable, a bent shelf lip): scene edges are not all straight.
OUTLIER_LINE_RATIO = 2.5


@dataclass(frozen=True, slots=True)
class ImageLensFit:
    """A lens fitted on one frame, with the edge evidence: every chain of edge points found
    and which were kept as straight."""

    fit: LensFit
    lines: tuple[np.ndarray, ...]
    kept: tuple[int, ...]


def fit_lens_on_image(gray: np.ndarray, K: np.ndarray, k0: tuple[float, float] = (0.0, 0.0),
                      min_len: float = 100.0) -> ImageLensFit:
    """The lens of the camera that took ``gray``, by plumb-line on its long edges, found
    without hand-picks: LSD segments chained into edges of ``min_len`` px or more
    (:func:`chain_segments`), sub-pixel edge points along them (:func:`edge_points`), then
    :func:`fit_lens`, dropping the worst line while it is more than ``OUTLIER_LINE_RATIO``
    times the median line's RMS (edges that are not straight in the scene)."""
    h, w = np.asarray(gray).shape[:2]
    lines = []
    for ch in chain_segments(line_segments(gray), min_len=min_len):
        pts = np.concatenate([edge_points(gray, s.reshape(2, 2), search=1.5) for s in ch])
        if len(pts) >= MIN_POINTS:
            lines.append(pts)
    kept = list(range(len(lines)))
    while True:
        fit = fit_lens([lines[i] for i in kept], K, (w, h), k0)
        per = np.asarray(fit.line_rms_px)
        if per.max() <= OUTLIER_LINE_RATIO * float(np.median(per)):
            return ImageLensFit(fit, tuple(lines), tuple(kept))
        kept.pop(int(np.argmax(per)))
