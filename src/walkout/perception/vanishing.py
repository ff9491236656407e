"""A camera's focal length and principal point from the vanishing points of straight edges.

Edges of one scene direction (door frames: vertical; the glass wall's rail: across the aisle;
the shelf row's lips: along it) meet in one image point, the vanishing point ``v = K d``. For
two orthogonal directions ``v_i^T ω v_j = 0`` with ``ω = K^-T K^-1`` the image of the absolute
conic; with square pixels and no skew ``ω`` has four entries up to scale, so three mutually
orthogonal vanishing points fix ``f, cx, cy`` and two fix ``f`` once the principal point is
given. That is the footage's own camera matrix, measured without a survey or a shopper: a
video that was rectified before it was stored carries the rectifier's matrix, not the
factory calibration's.

The edges must be straight in the image (lens removed, :mod:`walkout.perception.plumbline`)
and the directions truly orthogonal (a door standing open is not): :func:`intrinsics_from_vps`
refuses groups whose lines do not meet in one point and directions that no real camera sees
as orthogonal, and reports the spread of ``f`` when one line at a time is left out.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: A line belongs to a vanishing point when its direction is within this of the direction from
#: its midpoint to the point (degrees).
MAX_ANGLE_DEG = 0.5
#: Fewest lines that make a vanishing point: two always meet somewhere.
MIN_GROUP_LINES = 3


class VanishingError(ValueError):
    """Edge groups that cannot give a camera's intrinsics."""


@dataclass(frozen=True, slots=True)
class Line:
    """A straight image edge: homogeneous line ``(a, b, c)`` with ``a² + b² = 1``, its
    midpoint and length (px)."""

    h: np.ndarray
    mid: np.ndarray
    length: float


def fit_line(points: np.ndarray) -> Line:
    """Total-least-squares line through ``(n, 2)`` edge points."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    if len(p) < 2:
        raise VanishingError("a line needs at least 2 points")
    mid = p.mean(axis=0)
    _, _, vt = np.linalg.svd(p - mid, full_matrices=False)
    along, normal = vt[0], vt[1]
    s = (p - mid) @ along
    return Line(np.array([normal[0], normal[1], -normal @ mid]), mid,
                float(s.max() - s.min()))


def _angle_to(line: Line, v: np.ndarray) -> float:
    """Angle (deg) between ``line`` and the direction from its midpoint to ``v`` (homogeneous;
    at infinity when ``v[2]`` is 0)."""
    d = v[:2] - line.mid * v[2]
    along = np.array([line.h[1], -line.h[0]])
    c = abs(float(d @ along)) / max(float(np.linalg.norm(d)), 1e-12)
    return float(np.degrees(np.arccos(min(1.0, c))))


def vanishing_point(lines: Sequence[Line]) -> np.ndarray:
    """The point (homogeneous, unit norm) nearest all ``lines`` in the least-squares sense,
    each line weighted by its length (a long edge fixes its direction better)."""
    a = np.array([ln.h * np.sqrt(ln.length) for ln in lines])
    return np.linalg.svd(a)[2][-1]


def group_lines(lines: Sequence[Line], max_angle_deg: float = MAX_ANGLE_DEG,
                min_lines: int = MIN_GROUP_LINES) -> list[list[int]]:
    """Lines sorted into vanishing points, greedily: the point met by most of the lines left
    (tried at every pair's intersection, then refitted on its lines until they agree), its
    lines removed, and again; groups of fewer than ``min_lines`` are not returned. Every
    returned group's lines meet its refitted point within ``max_angle_deg``."""
    left = list(range(len(lines)))
    groups = []
    while len(left) >= min_lines:
        best: list[int] = []
        for a, b in itertools.combinations(left, 2):
            v = np.cross(lines[a].h, lines[b].h)
            if not np.any(v):
                continue
            sup = [k for k in left if _angle_to(lines[k], v) <= max_angle_deg]
            if len(sup) > len(best) or (len(sup) == len(best) and sum(
                    lines[k].length for k in sup) > sum(lines[k].length for k in best)):
                best = sup
        if len(best) < min_lines:
            break
        for _ in range(10):  # refit and reassign until the group is its point's lines
            v = vanishing_point([lines[k] for k in best])
            again = [k for k in left if _angle_to(lines[k], v) <= max_angle_deg]
            if again == best or len(again) < min_lines:
                break
            best = again
        v = vanishing_point([lines[k] for k in best])
        best = [k for k in best if _angle_to(lines[k], v) <= max_angle_deg]
        if len(best) < min_lines:
            break
        groups.append(best)
        left = [k for k in left if k not in best]
    return groups


@dataclass(frozen=True, slots=True)
class VanishingIntrinsics:
    """``f, cx, cy`` (px) from orthogonal vanishing points, and what they rest on."""

    f: float
    cx: float
    cy: float
    principal_point_measured: bool  # three vanishing points; else the given point was used
    f_spread_px: float  # largest change of f with one line left out
    vanishing_points: tuple[tuple[float, float, float], ...]  # homogeneous, unit norm
    group_sizes: tuple[int, ...]

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.f, 0.0, self.cx], [0.0, self.f, self.cy], [0.0, 0.0, 1.0]])


def _solve_omega(vps: Sequence[np.ndarray],
                 pp: tuple[float, float] | None) -> tuple[float, float, float]:
    """``f, cx, cy`` from the orthogonality of every pair of ``vps`` (``ω`` with square
    pixels and no skew: ``[[w1, 0, w2], [0, w1, w3], [w2, w3, w4]]``); ``pp`` fixes
    ``cx, cy`` when given. Raises when no real camera sees the directions as orthogonal."""
    rows = []
    for u, v in itertools.combinations(vps, 2):
        rows.append([u[0] * v[0] + u[1] * v[1], u[0] * v[2] + u[2] * v[0],
                     u[1] * v[2] + u[2] * v[1], u[2] * v[2]])
    a = np.array(rows)
    if pp is None:
        w = np.linalg.svd(a)[2][-1]
    else:
        # w2 = -cx w1, w3 = -cy w1: one unknown ratio w4 / w1 left
        cx, cy = pp
        col = a[:, 0] - cx * a[:, 1] - cy * a[:, 2]
        ratio = -float(col @ a[:, 3]) / max(float(a[:, 3] @ a[:, 3]), 1e-300)
        w = np.array([1.0, -cx, -cy, ratio])
    if abs(w[0]) < 1e-15:
        raise VanishingError("the vanishing points do not fix the camera (degenerate: "
                             "two of them coincide or lie at infinity in one direction)")
    cx, cy = -w[1] / w[0], -w[2] / w[0]
    f2 = w[3] / w[0] - cx ** 2 - cy ** 2
    if not f2 > 0:
        raise VanishingError("the directions are not orthogonal: no real focal length makes "
                             "these vanishing points perpendicular")
    return float(np.sqrt(f2)), float(cx), float(cy)


def intrinsics_from_vps(groups: Sequence[Sequence[np.ndarray]], size: tuple[int, int],
                        principal_point: tuple[float, float] | None = None,
                        max_angle_deg: float = MAX_ANGLE_DEG,
                        min_lines: int = MIN_GROUP_LINES) -> VanishingIntrinsics:
    """``f, cx, cy`` of the camera that saw ``groups``: edges (each ``(n, 2)`` undistorted
    pixels) of two or three mutually orthogonal scene directions, one group per direction.

    With three groups the principal point is measured (it must fall inside the ``size``
    ``(w, h)`` image); with two, ``principal_point`` is used (the image centre when None).
    Refuses fewer than two groups, a group of fewer than ``min_lines`` lines, a group whose
    lines do not meet in one point within ``max_angle_deg``, and directions that are not
    orthogonal for any real camera.
    """
    if not 2 <= len(groups) <= 3:
        raise VanishingError(f"{len(groups)} edge group(s) given; need 2 or 3 orthogonal "
                             "directions")
    lines = [[fit_line(p) for p in g] for g in groups]
    for i, g in enumerate(lines):
        if len(g) < min_lines:
            raise VanishingError(f"group {i} has {len(g)} line(s); a vanishing point needs "
                                 f"at least {min_lines}")
    vps = []
    for i, g in enumerate(lines):
        v = vanishing_point(g)
        worst = max(_angle_to(ln, v) for ln in g)
        if worst > max_angle_deg:
            raise VanishingError(f"the lines of group {i} do not meet in one point (one is "
                                 f"{worst:.2f}° off, > {max_angle_deg:g}°): not one scene "
                                 "direction, or not straight")
        vps.append(v)
    w, h = size
    measured = len(groups) == 3
    pp = None if measured else (principal_point or ((w - 1) / 2, (h - 1) / 2))
    f, cx, cy = _solve_omega(vps, pp)
    if not (0 <= cx <= w and 0 <= cy <= h):
        raise VanishingError(f"the principal point comes out at ({cx:.0f}, {cy:.0f}), outside "
                             f"the {w}x{h} image: the directions are not orthogonal")
    spread = 0.0
    for i, g in enumerate(lines):
        if len(g) <= min_lines - 1 or len(g) < 3:
            continue
        for k in range(len(g)):
            alt = list(vps)
            alt[i] = vanishing_point(g[:k] + g[k + 1:])
            try:
                spread = max(spread, abs(_solve_omega(alt, pp)[0] - f))
            except VanishingError:
                spread = float("inf")
    return VanishingIntrinsics(f, cx, cy, measured, spread,
                               tuple(tuple(float(x) for x in v) for v in vps),
                               tuple(len(g) for g in groups))
