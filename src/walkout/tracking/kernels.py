"""Compiled inner loops of the tracker (numba): triangulation and association cost.

The tracker's arithmetic is small — a 3×3 normal system per joint, a 17-joint distance per
detection and track — but there is a great deal of it: a 1,000 m² store has 40 cameras at
15 fps and 50 people, some 36,000 camera frames and 38,000 joint triangulations per minute
of store time. As numpy calls on small arrays the interpreter and dispatch overhead was ten
times the arithmetic. Here each point and each detection is one loop iteration, so the cost
is the arithmetic, and a point's result depends on its own inputs only (never on what else is
in the batch), which keeps the distributed tracker bit-identical to the single process.

Compiled on first use and cached on disk (``cache=True``) next to this file.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_DEPTH_MIN = 1e-3  # depth below which a view gets no 1/depth weighting


@njit(cache=True, inline="always", error_model="numpy")
def _normal_system(
    xn: np.ndarray, w: np.ndarray, R: np.ndarray, t: np.ndarray, n: int, M: np.ndarray,
    rhs: np.ndarray,
) -> int:
    """Weighted normal equations of point ``n``; returns the number of views with weight."""
    M[:] = 0.0
    rhs[:] = 0.0
    k = 0
    for v in range(xn.shape[1]):
        wv = w[n, v]
        if wv == 0.0:
            continue
        k += 1
        w2 = wv * wv
        x = xn[n, v, 0]
        y = xn[n, v, 1]
        b1 = t[n, v, 0] - x * t[n, v, 2]
        b2 = t[n, v, 1] - y * t[n, v, 2]
        for i in range(3):
            a1i = x * R[n, v, 2, i] - R[n, v, 0, i]
            a2i = y * R[n, v, 2, i] - R[n, v, 1, i]
            rhs[i] += w2 * (a1i * b1 + a2i * b2)
            for j in range(3):
                a1j = x * R[n, v, 2, j] - R[n, v, 0, j]
                a2j = y * R[n, v, 2, j] - R[n, v, 1, j]
                M[i, j] += w2 * (a1i * a1j + a2i * a2j)
    return k


@njit(cache=True, inline="always", error_model="numpy")
def _solve3(M: np.ndarray, rhs: np.ndarray, out: np.ndarray) -> bool:
    """Solve the 3×3 system by cofactors; False when it is near singular (nearly parallel
    rays leave the depth undetermined), judged against the trace as the numpy code did."""
    c00 = M[1, 1] * M[2, 2] - M[1, 2] * M[2, 1]
    c01 = M[1, 2] * M[2, 0] - M[1, 0] * M[2, 2]
    c02 = M[1, 0] * M[2, 1] - M[1, 1] * M[2, 0]
    det = M[0, 0] * c00 + M[0, 1] * c01 + M[0, 2] * c02
    tr = max(M[0, 0] + M[1, 1] + M[2, 2], 1e-30)
    if not det > 1e-9 * tr * tr * tr:
        return False
    c10 = M[0, 2] * M[2, 1] - M[0, 1] * M[2, 2]
    c11 = M[0, 0] * M[2, 2] - M[0, 2] * M[2, 0]
    c12 = M[0, 1] * M[2, 0] - M[0, 0] * M[2, 1]
    c20 = M[0, 1] * M[1, 2] - M[0, 2] * M[1, 1]
    c21 = M[0, 2] * M[1, 0] - M[0, 0] * M[1, 2]
    c22 = M[0, 0] * M[1, 1] - M[0, 1] * M[1, 0]
    out[0] = (c00 * rhs[0] + c10 * rhs[1] + c20 * rhs[2]) / det
    out[1] = (c01 * rhs[0] + c11 * rhs[1] + c21 * rhs[2]) / det
    out[2] = (c02 * rhs[0] + c12 * rhs[1] + c22 * rhs[2]) / det
    return True


@njit(cache=True, inline="always", error_model="numpy")
def _reproject(X: np.ndarray, xn: np.ndarray, R: np.ndarray, t: np.ndarray, n: int, v: int
               ) -> tuple[float, float]:
    """Normalised reprojection error and depth of ``X`` in view ``v`` of point ``n``."""
    c0 = R[n, v, 0, 0] * X[0] + R[n, v, 0, 1] * X[1] + R[n, v, 0, 2] * X[2] + t[n, v, 0]
    c1 = R[n, v, 1, 0] * X[0] + R[n, v, 1, 1] * X[1] + R[n, v, 1, 2] * X[2] + t[n, v, 1]
    z = R[n, v, 2, 0] * X[0] + R[n, v, 2, 1] * X[1] + R[n, v, 2, 2] * X[2] + t[n, v, 2]
    ex = c0 / z - xn[n, v, 0]
    ey = c1 / z - xn[n, v, 1]
    return math.sqrt(ex * ex + ey * ey), z


@njit(cache=True, error_model="numpy")
def triangulate_points(
    xn: np.ndarray, w: np.ndarray, R: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted linear triangulation, see :func:`walkout.tracking.geometry.triangulate`."""
    N = xn.shape[0]
    X = np.full((N, 3), np.nan)
    ok = np.zeros(N, dtype=np.bool_)
    M = np.empty((3, 3))
    rhs = np.empty(3)
    sol = np.empty(3)
    for n in range(N):
        if _normal_system(xn, w, R, t, n, M, rhs) >= 2 and _solve3(M, rhs, sol):
            X[n] = sol
            ok[n] = True
    return X, ok


@njit(cache=True, error_model="numpy")
def robust_triangulate_points(
    xn: np.ndarray, conf: np.ndarray, R: np.ndarray, t: np.ndarray, f: np.ndarray,
    outlier_px: float, noise_px: float, max_rejections: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per point: solve, re-solve with 1/depth weights, drop the worst view while its error
    exceeds ``outlier_px`` (both views of a disagreeing pair), then the 1-σ error from the
    normal matrix; see :func:`walkout.tracking.geometry.robust_triangulate`."""
    N, V = xn.shape[0], xn.shape[1]
    X = np.full((N, 3), np.nan)
    sigma = np.full(N, np.nan)
    used = np.zeros((N, V), dtype=np.bool_)
    rms = np.zeros(N)
    _robust_into(xn, conf, R, t, f, outlier_px, noise_px, max_rejections, X, sigma, used, rms)
    return X, sigma, used, rms


@njit(cache=True, error_model="numpy")
def _robust_into(
    xn: np.ndarray, conf: np.ndarray, R: np.ndarray, t: np.ndarray, f: np.ndarray,
    outlier_px: float, noise_px: float, max_rejections: int,
    X: np.ndarray, sigma: np.ndarray, used: np.ndarray, rms: np.ndarray,
) -> None:
    """:func:`robust_triangulate_points` into given outputs (NaN-filled ``X``, ``sigma``)."""
    N, V = xn.shape[0], xn.shape[1]
    w = np.zeros((N, V))
    for n in range(N):
        for v in range(V):
            if conf[n, v] > 0.0:
                w[n, v] = conf[n, v]
    wz = w.copy()
    M = np.empty((3, 3))
    rhs = np.empty(3)
    sol = np.zeros(3)
    zero = np.zeros(3)
    for n in range(N):
        ok = _normal_system(xn, w, R, t, n, M, rhs) >= 2 and _solve3(M, rhs, sol)
        P = sol if ok else zero
        # second pass with 1/depth weights: residuals then become (weighted) pixel errors
        for v in range(V):
            _, z = _reproject(P, xn, R, t, n, v)
            if ok and z > _DEPTH_MIN:
                wz[n, v] = w[n, v] / z
            used[n, v] = w[n, v] > 0.0
        ok = _normal_system(xn, wz, R, t, n, M, rhs) >= 2 and _solve3(M, rhs, sol)
        for _ in range(max_rejections):
            P = sol if ok else zero
            worst, worst_err, n_used = -1, -1.0, 0
            for v in range(V):
                if not used[n, v]:
                    continue
                n_used += 1
                e, _ = _reproject(P, xn, R, t, n, v)
                e *= f[n, v]
                if math.isnan(worst_err):
                    continue  # the first NaN stays the worst (as numpy's argmax)
                if math.isnan(e) or e > worst_err:
                    worst, worst_err = v, e
            if not (ok and worst >= 0 and worst_err > outlier_px):
                break
            used[n, worst] = False
            if n_used <= 2:  # two views that disagree: no telling which is wrong
                for v in range(V):
                    used[n, v] = False
            for v in range(V):
                if not used[n, v]:
                    wz[n, v] = 0.0
            ok = _normal_system(xn, wz, R, t, n, M, rhs) >= 2 and _solve3(M, rhs, sol)
        P = sol if ok else zero
        k = 0
        ss = 0.0
        fsum = 0.0
        M[:] = 0.0
        for v in range(V):
            if not used[n, v]:
                continue
            k += 1
            e, z = _reproject(P, xn, R, t, n, v)
            ss += (e * f[n, v]) ** 2
            fsum += f[n, v]
            if z > _DEPTH_MIN:
                # covariance ~ s^2 (A^T W A)^-1, rows in normalised units, weights 1/depth
                wu2 = 1.0 / (z * z)
                x = xn[n, v, 0]
                y = xn[n, v, 1]
                for i in range(3):
                    a1i = x * R[n, v, 2, i] - R[n, v, 0, i]
                    a2i = y * R[n, v, 2, i] - R[n, v, 1, i]
                    for j in range(3):
                        a1j = x * R[n, v, 2, j] - R[n, v, 0, j]
                        a2j = y * R[n, v, 2, j] - R[n, v, 1, j]
                        M[i, j] += wu2 * (a1i * a1j + a2i * a2j)
        rms[n] = math.sqrt(ss / max(k, 1))
        if not ok:
            for v in range(V):
                used[n, v] = False
            continue
        X[n] = sol
        fm = fsum / max(k, 1)
        # residuals of a 2-view fit underestimate the noise (1 dof left of 4): inflate them
        dof = max(2 * k - 3, 1)
        s_px = max(rms[n] * math.sqrt(2 * k / dof), noise_px)
        s_norm = s_px / max(fm, 1e-9)
        for i in range(3):
            M[i, i] += 1e-12
        sigma[n] = s_norm * math.sqrt(_trace_inverse3(M) / 3.0)


@njit(cache=True, error_model="numpy")
def triangulate_groups(
    view_xn: np.ndarray, view_conf: np.ndarray, view_cam: np.ndarray, view_t: np.ndarray,
    rows: np.ndarray, group_off: np.ndarray, t_ref: float, velocity: np.ndarray,
    cam_R: np.ndarray, cam_t: np.ndarray, cam_f: np.ndarray, outlier_px: float,
    noise_px: float, max_rejections: int, min_views: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Motion-compensated robust triangulation of groups of views (one person each).

    The views of group ``g`` are detections ``rows[group_off[g]:group_off[g+1]]`` (normalised
    joints ``(J, 2)``, confidences, camera, time); each is moved to ``t_ref`` with the group's
    per-joint ``velocity`` by folding ``R v Δt`` into its translation.
    A joint kept by fewer than ``min_views`` views is NaN. Returns ``X`` ``(G, J, 3)`` and
    ``sigma`` ``(G, J)``.
    """
    G, J = group_off.shape[0] - 1, view_xn.shape[1]
    X = np.full((G, J, 3), np.nan)
    S = np.full((G, J), np.nan)
    for g in range(G):
        a, b = group_off[g], group_off[g + 1]
        V = b - a
        xs = np.empty((J, V, 2))
        cs = np.empty((J, V))
        Rs = np.empty((J, V, 3, 3))
        ts = np.empty((J, V, 3))
        fs = np.empty((J, V))
        for v in range(V):
            r = rows[a + v]
            c = view_cam[r]
            dt = view_t[r] - t_ref
            for j in range(J):
                xs[j, v, 0] = view_xn[r, j, 0]
                xs[j, v, 1] = view_xn[r, j, 1]
                cs[j, v] = view_conf[r, j]
                Rs[j, v] = cam_R[c]
                fs[j, v] = cam_f[c]
                for i in range(3):
                    ts[j, v, i] = cam_t[c, i] + (
                        cam_R[c, i, 0] * (velocity[g, j, 0] * dt)
                        + cam_R[c, i, 1] * (velocity[g, j, 1] * dt)
                        + cam_R[c, i, 2] * (velocity[g, j, 2] * dt)
                    )
        Xg = np.full((J, 3), np.nan)
        Sg = np.full(J, np.nan)
        used = np.zeros((J, V), dtype=np.bool_)
        rms = np.zeros(J)
        _robust_into(xs, cs, Rs, ts, fs, outlier_px, noise_px, max_rejections, Xg, Sg, used,
                     rms)
        for j in range(J):
            if used[j].sum() >= min_views:
                X[g, j] = Xg[j]
                S[g, j] = Sg[j]
    return X, S


@njit(cache=True, inline="always", error_model="numpy")
def _trace_inverse3(M: np.ndarray) -> float:
    c00 = M[1, 1] * M[2, 2] - M[1, 2] * M[2, 1]
    c11 = M[0, 0] * M[2, 2] - M[0, 2] * M[2, 0]
    c22 = M[0, 0] * M[1, 1] - M[0, 1] * M[1, 0]
    det = (M[0, 0] * c00 + M[0, 1] * (M[1, 2] * M[2, 0] - M[1, 0] * M[2, 2])
           + M[0, 2] * (M[1, 0] * M[2, 1] - M[1, 1] * M[2, 0]))
    return (c00 + c11 + c22) / det


@njit(cache=True, inline="always", error_model="numpy")
def _project(X: np.ndarray, V: np.ndarray, k: int, j: int, dt: float, R: np.ndarray,
             t: np.ndarray, pxy: np.ndarray, pz: np.ndarray) -> None:
    """Joint ``j`` of track ``k``, moved on by ``dt``, into a camera: ``pxy[j]``, ``pz[j]``."""
    p0 = X[k, j, 0] + V[k, j, 0] * dt
    p1 = X[k, j, 1] + V[k, j, 1] * dt
    p2 = X[k, j, 2] + V[k, j, 2] * dt
    z = R[2, 0] * p0 + R[2, 1] * p1 + R[2, 2] * p2 + t[2]
    pz[j] = z
    pxy[j, 0] = (R[0, 0] * p0 + R[0, 1] * p1 + R[0, 2] * p2 + t[0]) / z
    pxy[j, 1] = (R[1, 0] * p0 + R[1, 1] * p1 + R[1, 2] * p2 + t[1]) / z


@njit(cache=True, error_model="numpy")
def association_costs(
    X: np.ndarray, V: np.ndarray, t_last: np.ndarray, coast_s: float,
    cam_R: np.ndarray, cam_t: np.ndarray, cam_bounds: np.ndarray,
    frame_cam: np.ndarray, frame_t: np.ndarray, frame_off: np.ndarray,
    det_xn: np.ndarray, det_conf: np.ndarray, cap_m: float, min_joints: int,
    hips: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of a slot against every live track at once.

    Tracks ``(T, J, 3)`` positions ``X`` and velocities ``V`` at ``t_last`` are extrapolated
    to each frame's time (at most ``coast_s``) and projected into its camera; a track is
    visible when its hips are in front of the camera and within the image border plus 20 %.
    The cost of detection ``d`` (rows ``frame_off[f]:frame_off[f+1]`` belong to frame ``f``)
    and a visible track is the confidence-weighted mean joint distance in metres at the
    predicted depth, each joint's term capped at ``cap_m``; ``inf`` with fewer than
    ``min_joints`` comparable joints or an invisible track.
    Returns ``visible`` ``(F, T)`` and ``cost`` ``(D, T)``.
    """
    F, T, J = frame_cam.shape[0], X.shape[0], X.shape[1]
    visible = np.zeros((F, T), dtype=np.bool_)
    cost = np.full((det_xn.shape[0], T), np.inf)
    pxy = np.empty((J, 2))
    pz = np.empty(J)
    for f in range(F):
        a, b = frame_off[f], frame_off[f + 1]
        if a == b:
            continue
        c = frame_cam[f]
        R = cam_R[c]
        x0, x1, y0, y1 = cam_bounds[c, 0], cam_bounds[c, 1], cam_bounds[c, 2], cam_bounds[c, 3]
        mx = 0.2 * (x1 - x0)
        my = 0.2 * (y1 - y0)
        for k in range(T):
            dt = min(frame_t[f] - t_last[k], coast_s)
            # the hips first: most tracks are out of most cameras' view
            for j in hips:
                _project(X, V, k, j, dt, R, cam_t[c], pxy, pz)
            hx = 0.5 * (pxy[hips[0], 0] + pxy[hips[1], 0])
            hy = 0.5 * (pxy[hips[0], 1] + pxy[hips[1], 1])
            hz = 0.5 * (pz[hips[0]] + pz[hips[1]])
            if not (hz > 0.2 and x0 - mx < hx < x1 + mx and y0 - my < hy < y1 + my):
                continue
            visible[f, k] = True
            for j in range(J):
                if j != hips[0] and j != hips[1]:
                    _project(X, V, k, j, dt, R, cam_t[c], pxy, pz)
            for d in range(a, b):
                n = 0
                num = 0.0
                den = 0.0
                for j in range(J):
                    w = det_conf[d, j]
                    if not (w > 0.0 and pz[j] > 0.2):
                        continue
                    n += 1
                    ex = det_xn[d, j, 0] - pxy[j, 0]
                    ey = det_xn[d, j, 1] - pxy[j, 1]
                    dist = math.sqrt(ex * ex + ey * ey) * pz[j]
                    if not dist < cap_m:  # NaN and inf count as the cap
                        dist = cap_m
                    num += dist * w
                    den += w
                if n >= min_joints:
                    cost[d, k] = num / max(den, 1e-9)
    return visible, cost


@njit(cache=True, error_model="numpy")
def undistort_points(px: np.ndarray, cam: np.ndarray, intr: np.ndarray, dist: np.ndarray,
                     fold_r2: np.ndarray, use: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw pixels ``(N, 2)`` of camera ``cam[n]`` to normalised undistorted coordinates.

    ``intr`` ``(C, 4)`` is fx, fy, cx, cy (skew ignored, as OpenCV's undistortPoints does);
    ``dist`` ``(C, 5)`` the k1 k2 p1 p2 k3 lens model, ``fold_r2`` the squared radius where
    its distorted radius stops growing (inf: never). The distortion is inverted by Newton's
    method (quadratic: 3–5 steps to machine precision, where OpenCV's fixed-point iteration
    needs its full 40 at a wide lens's corners). Points not to ``use`` (joints the detector
    did not see) are only normalised. Returns the points and whether each
    converged: one beyond the fold of a strong lens model has no inverse, and the caller gives
    it to OpenCV, whose answer there the tracker has always used.
    """
    out = np.empty((px.shape[0], 2))
    converged = np.zeros(px.shape[0], dtype=np.bool_)
    for n in range(px.shape[0]):
        c = cam[n]
        xd = (px[n, 0] - intr[c, 2]) / intr[c, 0]
        yd = (px[n, 1] - intr[c, 3]) / intr[c, 1]
        k1, k2, p1, p2, k3 = dist[c, 0], dist[c, 1], dist[c, 2], dist[c, 3], dist[c, 4]
        x, y = xd, yd
        done = not use[n] or (k1 == 0.0 and k2 == 0.0 and p1 == 0.0 and p2 == 0.0 and k3 == 0.0)
        for _ in range(20):
            if done:
                break
            r2 = x * x + y * y
            rad = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
            drad = k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)
            fx = x * rad + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x) - xd
            fy = y * rad + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y - yd
            a = rad + 2.0 * x * x * drad + 2.0 * p1 * y + 6.0 * p2 * x
            b = 2.0 * x * y * drad + 2.0 * p1 * x + 2.0 * p2 * y
            d = rad + 2.0 * y * y * drad + 6.0 * p1 * y + 2.0 * p2 * x
            det = a * d - b * b
            if not abs(det) > 1e-12:
                break
            sx = (d * fx - b * fy) / det
            sy = (a * fy - b * fx) / det
            x -= sx
            y -= sy
            done = abs(sx) + abs(sy) <= 1e-15 * (1.0 + abs(x) + abs(y))
        if done and use[n]:
            # the root must be on the lens model's inner branch (within ``fold_r2``, where the
            # distorted radius still grows): a strong model folds back and rises again, and
            # Newton can land on an outer root that is not where the ray came from
            r2 = x * x + y * y
            rad = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
            drad = k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)
            a = rad + 2.0 * x * x * drad + 2.0 * p1 * y + 6.0 * p2 * x
            b = 2.0 * x * y * drad + 2.0 * p1 * x + 2.0 * p2 * y
            d = rad + 2.0 * y * y * drad + 6.0 * p1 * y + 2.0 * p2 * x
            # and a root: beyond the largest radius the lens reaches, Newton stalls at the
            # fold with ever smaller steps and no root
            fx = x * rad + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x) - xd
            fy = y * rad + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y - yd
            done = (rad > 0.0 and a * d - b * b > 0.0 and abs(fx) + abs(fy) <= 1e-12
                    and r2 < fold_r2[c])
        converged[n] = done and math.isfinite(x) and math.isfinite(y)
        out[n, 0] = x
        out[n, 1] = y
    return out, converged


@njit(cache=True, error_model="numpy")
def observe_tracks(
    X: np.ndarray, V: np.ndarray, t_last: np.ndarray, joint_t: np.ndarray,
    Xo: np.ndarray, So: np.ndarray, t_ref: float, torso: np.ndarray,
    coast_s: float, slot_s: float, max_jump_m: float, max_joint_speed: float,
    min_update_joints: int, velocity_gain: float, gate_jumps: bool,
) -> np.ndarray:
    """Update tracks ``(G, J, 3)`` in place with their observations at ``t_ref``.

    With ``gate_jumps``, a joint seen recently that lands farther from its prediction than a
    person can move is dropped from the observation first (a wrong view won the vote), and a
    track left with fewer than ``min_update_joints`` joints is not updated. The update: unseen
    joints follow the observed torso's median shift from the prediction; velocities move by
    ``velocity_gain`` towards the innovation, unseen joints take the body's velocity, and no
    joint is faster than ``max_joint_speed``. ``Xo``/``So`` are masked in place (NaN where
    dropped), ready to be stored. Returns which tracks were updated.
    """
    G, J = X.shape[0], X.shape[1]
    updated = np.zeros(G, dtype=np.bool_)
    pred = np.empty((J, 3))
    seen = np.empty(J, dtype=np.bool_)
    for g in range(G):
        step = min(t_ref - t_last[g], coast_s)
        for j in range(J):
            for i in range(3):
                pred[j, i] = X[g, j, i] + V[g, j, i] * step
        if gate_jumps:
            jump = max_jump_m + max_joint_speed * max(t_ref - t_last[g] - slot_s, 0.0)
            for j in range(J):
                if t_ref - joint_t[g, j] <= coast_s + slot_s:
                    d = math.sqrt((Xo[g, j, 0] - pred[j, 0]) ** 2 + (Xo[g, j, 1] - pred[j, 1]) ** 2
                                  + (Xo[g, j, 2] - pred[j, 2]) ** 2)
                    if d > jump:
                        Xo[g, j, :] = np.nan
                        So[g, j] = np.nan
        n_seen = 0
        for j in range(J):
            seen[j] = not math.isnan(Xo[g, j, 0])
            n_seen += seen[j]
        if gate_jumps and n_seen < min_update_joints:
            continue
        updated[g] = True
        dt = t_ref - t_last[g]
        # fill: unseen joints move with the observed torso (any seen joint without one)
        ref = np.empty(J, dtype=np.int64)
        n_ref = 0
        for j in torso:
            if seen[j]:
                ref[n_ref] = j
                n_ref += 1
        if n_ref == 0:
            for j in range(J):
                if seen[j]:
                    ref[n_ref] = j
                    n_ref += 1
        shift = np.zeros(3)
        if n_ref:
            diff = np.empty(n_ref)
            for i in range(3):
                for r in range(n_ref):
                    diff[r] = Xo[g, ref[r], i] - pred[ref[r], i]
                shift[i] = np.median(diff)
        filled = np.empty((J, 3))
        for j in range(J):
            for i in range(3):
                filled[j, i] = Xo[g, j, i] if seen[j] else pred[j, i] + shift[i]
        if dt > 0 and n_seen:
            Vn = np.empty((J, 3))
            for j in range(J):
                for i in range(3):
                    Vn[j, i] = V[g, j, i] + velocity_gain * (filled[j, i] - pred[j, i]) / dt
            body = np.zeros(3)
            for r in range(n_ref):
                for i in range(3):
                    body[i] += Vn[ref[r], i]
            for i in range(3):
                body[i] /= n_ref
            for j in range(J):
                if not seen[j]:
                    Vn[j, :] = body
                speed = math.sqrt(Vn[j, 0] ** 2 + Vn[j, 1] ** 2 + Vn[j, 2] ** 2)
                k = min(1.0, max_joint_speed / max(speed, 1e-9))
                for i in range(3):
                    V[g, j, i] = Vn[j, i] * k
        for j in range(J):
            X[g, j, :] = filled[j]
            if seen[j]:
                joint_t[g, j] = t_ref
        t_last[g] = t_ref
    return updated


@njit(cache=True)
def _lsap(C: np.ndarray) -> np.ndarray:
    """Minimum-cost assignment of every row of ``C`` ``(nr, nc)``, ``nr <= nc``: the column
    of each row. The shortest augmenting path method of Crouse (2016), step for step as
    scipy's ``linear_sum_assignment`` runs it, so that ties are broken the same way."""
    nr, nc = C.shape
    u = np.zeros(nr)
    v = np.zeros(nc)
    shortest = np.empty(nc)
    path = np.empty(nc, dtype=np.int64)
    col4row = np.full(nr, -1, dtype=np.int64)
    row4col = np.full(nc, -1, dtype=np.int64)
    remaining = np.empty(nc, dtype=np.int64)
    SR = np.empty(nr, dtype=np.bool_)
    SC = np.empty(nc, dtype=np.bool_)
    for cur in range(nr):
        shortest[:] = np.inf
        path[:] = -1
        SR[:] = False
        SC[:] = False
        for it in range(nc):
            remaining[it] = nc - it - 1
        n_rem = nc
        min_val = 0.0
        i = cur
        sink = -1
        while sink == -1:
            SR[i] = True
            index = -1
            lowest = np.inf
            for it in range(n_rem):
                j = remaining[it]
                r = min_val + C[i, j] - u[i] - v[j]
                if r < shortest[j]:
                    path[j] = i
                    shortest[j] = r
                if shortest[j] < lowest or (shortest[j] == lowest and row4col[j] == -1):
                    lowest = shortest[j]
                    index = it
            min_val = lowest
            j = remaining[index]
            if row4col[j] == -1:
                sink = j
            else:
                i = row4col[j]
            SC[j] = True
            n_rem -= 1
            remaining[index] = remaining[n_rem]
        u[cur] += min_val
        for i in range(nr):
            if SR[i] and i != cur:
                u[i] += min_val - shortest[col4row[i]]
        for j in range(nc):
            if SC[j]:
                v[j] -= min_val - shortest[j]
        j = sink
        while True:
            i = path[j]
            row4col[j] = i
            prev = col4row[i]
            col4row[i] = j
            j = prev
            if i == cur:
                break
    return col4row


@njit(cache=True)
def assign_frames(
    cost: np.ndarray, visible: np.ndarray, frame_off: np.ndarray, gates: np.ndarray,
    claim_gate: float, big: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the one-to-one assignment of its detections to visible tracks with
    ``cost <= gates[f, track]`` at minimum total cost (pairs over the gate cost ``big`` in the
    solve and are dropped after, as :func:`walkout.tracking.associate.assign` does), and the
    claimed detections: within ``claim_gate`` of a visible track that got none in that frame.
    Returns each detection's track (-1: none) and the claimed flags."""
    D = cost.shape[0]
    match = np.full(D, -1, dtype=np.int64)
    claimed = np.zeros(D, dtype=np.bool_)
    for f in range(visible.shape[0]):
        a, b = frame_off[f], frame_off[f + 1]
        if a == b:
            continue
        cols = np.flatnonzero(visible[f])
        nc = cols.size
        if nc == 0:
            continue
        nd = b - a
        C = np.empty((nd, nc))
        any_ok = False
        for d in range(nd):
            for k in range(nc):
                c = cost[a + d, cols[k]]
                if c <= gates[f, cols[k]]:
                    C[d, k] = c
                    any_ok = True
                else:
                    C[d, k] = big
        taken = np.zeros(nc, dtype=np.bool_)
        if any_ok:
            if nd <= nc:
                col4row = _lsap(C)
                for d in range(nd):
                    k = col4row[d]
                    if cost[a + d, cols[k]] <= gates[f, cols[k]]:
                        match[a + d] = cols[k]
                        taken[k] = True
            else:
                row4col = _lsap(C.T.copy())
                for k in range(nc):
                    d = row4col[k]
                    if cost[a + d, cols[k]] <= gates[f, cols[k]]:
                        match[a + d] = cols[k]
                        taken[k] = True
        for d in range(nd):
            for k in range(nc):
                if not taken[k] and cost[a + d, cols[k]] <= claim_gate:
                    claimed[a + d] = True
                    break
    return match, claimed


@njit(cache=True, error_model="numpy")
def floor_positions(
    xn: np.ndarray, conf: np.ndarray, cam: np.ndarray, cam_R: np.ndarray,
    cam_center: np.ndarray, cue_joints: np.ndarray, cue_height: np.ndarray,
) -> np.ndarray:
    """Where each single detection stands on the floor ``(D, 2)`` (NaN: unknown), from the
    first body cue whose two joints it shows (hips, shoulders, ankles) at a typical height."""
    D = xn.shape[0]
    out = np.full((D, 2), np.nan)
    for d in range(D):
        for q in range(cue_joints.shape[0]):
            j0, j1 = cue_joints[q, 0], cue_joints[q, 1]
            if not (conf[d, j0] > 0.0 and conf[d, j1] > 0.0):
                continue
            px = (xn[d, j0, 0] + xn[d, j1, 0]) / 2.0
            py = (xn[d, j0, 1] + xn[d, j1, 1]) / 2.0
            R = cam_R[cam[d]]
            c = cam_center[cam[d]]
            rx = R[0, 0] * px + R[1, 0] * py + R[2, 0]
            ry = R[0, 1] * px + R[1, 1] * py + R[2, 1]
            rz = R[0, 2] * px + R[1, 2] * py + R[2, 2]
            if rz < -1e-6:  # at or above the horizon: no floor point
                s = (cue_height[q] - c[2]) / rz
                out[d, 0] = c[0] + s * rx
                out[d, 1] = c[1] + s * ry
            break
    return out


@njit(cache=True, error_model="numpy")
def cluster_views(
    xn: np.ndarray, conf: np.ndarray, cam: np.ndarray, xy: np.ndarray,
    cam_R: np.ndarray, cam_t: np.ndarray, n_cams: int,
    radius_m: float, max_residual_m: float, min_joints: int,
) -> np.ndarray:
    """Group detections of different cameras that triangulate into one standing person;
    see :func:`walkout.tracking.associate.cluster_detections`. Returns each detection's
    group (the smallest member index; a detection alone is its own group)."""
    D, J = xn.shape[0], xn.shape[1]
    # candidate pairs: floor positions within radius_m (a sweep along x), different cameras
    order = np.argsort(xy[:, 0])
    pa = []
    pb = []
    for u in range(D):
        i = order[u]
        if math.isnan(xy[i, 0]):
            break  # NaNs sort last
        for w in range(u + 1, D):
            j = order[w]
            if math.isnan(xy[j, 0]) or xy[j, 0] - xy[i, 0] > radius_m:
                break
            near = math.hypot(xy[i, 0] - xy[j, 0], xy[i, 1] - xy[j, 1]) <= radius_m
            if cam[i] != cam[j] and near:
                pa.append(min(i, j))
                pb.append(max(i, j))
    P = len(pa)
    parent = np.arange(D)
    if P == 0:
        return parent
    ia = np.array(pa)
    ib = np.array(pb)
    lex = np.argsort(ia * D + ib)  # (i, j) ascending
    ia, ib = ia[lex], ib[lex]
    med = np.full(P, np.inf)
    res = np.empty(J)
    M = np.empty((3, 3))
    rhs = np.empty(3)
    X = np.empty(3)
    for p in range(P):
        a, b = ia[p], ib[p]
        n_ok = 0
        zmin, zmax = np.inf, -np.inf
        for j in range(J):
            if not (conf[a, j] > 0.0 and conf[b, j] > 0.0):
                continue
            # 2-view weighted normal equations (the tracker's triangulation)
            M[:] = 0.0
            rhs[:] = 0.0
            for v in range(2):
                d = a if v == 0 else b
                w2 = conf[d, j] * conf[d, j]
                R = cam_R[cam[d]]
                t = cam_t[cam[d]]
                x, y = xn[d, j, 0], xn[d, j, 1]
                b1 = t[0] - x * t[2]
                b2 = t[1] - y * t[2]
                for r in range(3):
                    a1r = x * R[2, r] - R[0, r]
                    a2r = y * R[2, r] - R[1, r]
                    rhs[r] += w2 * (a1r * b1 + a2r * b2)
                    for c in range(3):
                        M[r, c] += w2 * (a1r * (x * R[2, c] - R[0, c])
                                         + a2r * (y * R[2, c] - R[1, c]))
            if not _solve3(M, rhs, X):
                continue
            worst = 0.0
            front = True
            for v in range(2):
                d = a if v == 0 else b
                R = cam_R[cam[d]]
                t = cam_t[cam[d]]
                c0 = R[0, 0] * X[0] + R[0, 1] * X[1] + R[0, 2] * X[2] + t[0]
                c1 = R[1, 0] * X[0] + R[1, 1] * X[1] + R[1, 2] * X[2] + t[1]
                z = R[2, 0] * X[0] + R[2, 1] * X[1] + R[2, 2] * X[2] + t[2]
                ex = c0 / z - xn[d, j, 0]
                ey = c1 / z - xn[d, j, 1]
                worst = max(worst, math.sqrt(ex * ex + ey * ey) * abs(z))  # metres at depth
                front = front and z > 0.2
            if not front:
                continue
            res[n_ok] = worst
            n_ok += 1
            zmin = min(zmin, X[2])
            zmax = max(zmax, X[2])
        if n_ok >= min_joints:
            m = np.median(res[:n_ok])
            # on the floor and no taller than a person: not a ghost from two mismatched views
            if m <= max_residual_m and zmin > -0.3 and zmax < 2.4:
                med[p] = m
    # merge consistent pairs greedily, best first, never two detections of one camera
    cams_of = np.zeros((D, n_cams), dtype=np.bool_)
    for i in range(D):
        cams_of[i, cam[i]] = True
    for k in np.argsort(med, kind="mergesort"):
        if med[k] == np.inf:
            break
        ra, rb = _root(parent, ia[k]), _root(parent, ib[k])
        if ra == rb:
            continue
        clash = False
        for c in range(n_cams):
            if cams_of[ra, c] and cams_of[rb, c]:
                clash = True
                break
        if clash:
            continue
        lo, hi = min(ra, rb), max(ra, rb)
        parent[hi] = lo
        for c in range(n_cams):
            cams_of[lo, c] = cams_of[lo, c] or cams_of[hi, c]
    for i in range(D):
        parent[i] = _root(parent, i)
    return parent


@njit(cache=True, inline="always")
def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i
