"""Camera poses from the footage itself: bundle adjustment on the shopper, anchored by a survey.

When the cameras moved since they were calibrated (AiFi cps-test-01: January footage, April
calibration), the footage still holds what is needed to recalibrate them. A person walking
through the overlapping views is a cloud of 3D points (17 joints per instant) seen by several
cameras at once, so the cameras' poses relative to each other follow from a bundle adjustment
of the poses and the per-instant joints, intrinsics and lens fixed. That leaves the similarity
gauge (where the store is, which way is up, the scale) to a survey: static points of the
fixtures whose store coordinates are known (shelf-front corners, uprights, floor at the
gondola bases), picked by hand in the frames. Both enter one least-squares problem; joints go
through a robust loss (a detector's occasional wrong limb), survey points are trusted to a few
pixels. Everything is deterministic: same inputs, same poses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix
from scipy.spatial.transform import Rotation

from walkout.events import KeypointFrame
from walkout.perception.calib_check import main_person
from walkout.perception.survey import Survey
from walkout.store.model import Camera, CameraPose

#: A detected joint enters the adjustment at this confidence or above.
MIN_CONF = 0.35
#: Robust scale of the joint residuals (px): beyond it a residual counts linearly (soft-L1).
JOINT_SCALE_PX = 4.0
#: Trust in a surveyed pixel (px, one sigma): hand-picked on 640x360 frames.
SURVEY_SIGMA_PX = 3.0
#: A joint residual above this after the first pass is dropped as a wrong correspondence.
OUTLIER_PX = 25.0
#: Prior on the principal point when the intrinsics are refined (px, one sigma, about the given
#: cx, cy): weak, a rectified video's principal point is near its centre but not at it.
PP_SIGMA_PX = 30.0
#: Floor of the focal length's prior sigma (px): a vanishing-point f's leave-one-out spread
#: (1-5 px on cps-test-01) measures noise only, not the principal point's pull on it (~6 px
#: per 15 px of cy), so the prior is never trusted tighter than this.
F_SIGMA_FLOOR_PX = 10.0


class CalibrationError(ValueError):
    """Too little or inconsistent input to calibrate the cameras."""


@dataclass(frozen=True, slots=True)
class Observations:
    """Joint detections of one person at synced instants, lens removed.

    Row ``i``: camera ``cam[i]`` saw joint ``joint[i]`` of the person at instant ``instant[i]``
    at normalised image point ``xy[i]`` (undistorted, ``K^-1`` applied) with ``conf[i]``.
    """

    cam: np.ndarray  # (n,) int, index into the camera list
    point: np.ndarray  # (n,) int, index of the 3D point (one per instant and joint)
    xy: np.ndarray  # (n, 2) float
    conf: np.ndarray  # (n,) float
    n_points: int
    instants: np.ndarray  # (n_points,) float, time of each point
    joints: np.ndarray  # (n_points,) int, COCO-17 joint of each point


def normalise(cam: Camera, px: np.ndarray) -> np.ndarray:
    """Raw pixels (n, 2) → undistorted normalised image points (n, 2)."""
    pts = np.asarray(px, np.float64).reshape(-1, 1, 2)
    return cv2.undistortPoints(pts, cam.K_array, cam.dist_array).reshape(-1, 2)


def joint_observations(frames: Mapping[str, Sequence[KeypointFrame]], cameras: Sequence[Camera],
                       min_conf: float = MIN_CONF) -> Observations:
    """The main person's joints in every camera at each instant (timestamps matched to 1 ms,
    the videos being frame-synced), kept where at least two cameras saw the joint."""
    per: dict[tuple[float, int], list[tuple[int, np.ndarray, float]]] = {}
    for ci, cam in enumerate(cameras):
        for f in frames.get(cam.id, ()):
            k = main_person(f)
            if k is None:
                continue
            ok = np.flatnonzero(k[:, 2] >= min_conf)
            if not ok.size:
                continue
            xy = normalise(cam, k[ok, :2])
            for j, p, c in zip(ok, xy, k[ok, 2], strict=True):
                per.setdefault((round(f.t, 3), int(j)), []).append((ci, p, float(c)))
    cam_i, pt_i, xys, confs, inst, jts = [], [], [], [], [], []
    for (t, j), seen in sorted(per.items()):
        if len({s[0] for s in seen}) < 2:
            continue
        n = len(inst)
        inst.append(t)
        jts.append(j)
        for ci, p, c in seen:
            cam_i.append(ci)
            pt_i.append(n)
            xys.append(p)
            confs.append(c)
    return Observations(np.asarray(cam_i, int), np.asarray(pt_i, int),
                        np.asarray(xys, float).reshape(-1, 2), np.asarray(confs, float),
                        len(inst), np.asarray(inst, float), np.asarray(jts, int))


def _rt(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rotations (c, 3, 3), translations (c, 3)) of packed camera parameters (c, 6)."""
    return Rotation.from_rotvec(p[:, :3]).as_matrix(), p[:, 3:]


def triangulate(xy: np.ndarray, cams: np.ndarray, point: np.ndarray, n_points: int,
                rs: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation of every point from its normalised observations."""
    a = np.zeros((n_points, 4, 4))
    proj = np.concatenate([rs, ts[:, :, None]], axis=2)  # (c, 3, 4)
    pm = proj[cams]
    r1 = xy[:, :1] * pm[:, 2] - pm[:, 0]
    r2 = xy[:, 1:] * pm[:, 2] - pm[:, 1]
    np.add.at(a, point, r1[:, :, None] * r1[:, None, :] + r2[:, :, None] * r2[:, None, :])
    _, vecs = np.linalg.eigh(a)
    h = vecs[:, :, 0]
    return h[:, :3] / np.where(np.abs(h[:, 3:]) < 1e-12, 1e-12, h[:, 3:])


@dataclass(frozen=True, slots=True)
class SurveyObs:
    """Survey picks in the cameras being solved; ``world`` NaN where a coordinate is open."""

    cam: np.ndarray  # (m,) int
    point: np.ndarray  # (m,) int, index into world / names
    xy: np.ndarray  # (m, 2) normalised
    world: np.ndarray  # (p, 3)
    names: tuple[str, ...]
    #: (p,) shared-upright group of each point (its open x and y are one unknown), -1 for none
    group: np.ndarray | None = None


def survey_observations(survey: Survey, cameras: Sequence[Camera]) -> SurveyObs:
    index = {c.id: i for i, c in enumerate(cameras)}
    cam_i, pt_i, xy, world, names, group = [], [], [], [], [], []
    uprights: dict[str, int] = {}
    for p in survey.points:
        seen = [(cid, px) for cid, px in p.pixels.items() if cid in index]
        if not seen:
            continue
        for cid, px in seen:
            cam_i.append(index[cid])
            pt_i.append(len(names))
            xy.append(normalise(cameras[index[cid]], np.asarray([px]))[0])
        world.append([np.nan if v is None else v for v in p.world])
        names.append(p.name)
        group.append(uprights.setdefault(p.upright, len(uprights)) if p.upright else -1)
    return SurveyObs(np.asarray(cam_i, int), np.asarray(pt_i, int),
                     np.asarray(xy, float).reshape(-1, 2), np.asarray(world, float).reshape(-1, 3),
                     tuple(names), np.asarray(group, int))


def open_params(sv: SurveyObs) -> tuple[np.ndarray, np.ndarray, int]:
    """The survey's open coordinates as unknowns: ``(open_idx (k, 2) of (point, axis),
    param (k,) the unknown each one reads, number of unknowns)``; the x (y) of all points on
    one upright is one unknown."""
    open_idx = np.argwhere(np.isnan(sv.world))
    group = sv.group if sv.group is not None else np.full(len(sv.world), -1)
    keys: dict[tuple[str, int, int], int] = {}
    param = np.empty(len(open_idx), int)
    for j, (p, axis) in enumerate(open_idx):
        g = int(group[p])
        key = ("g", g, int(axis)) if g >= 0 and axis < 2 else ("p", int(p), int(axis))
        param[j] = keys.setdefault(key, len(keys))
    return open_idx, param, len(keys)


def _param_start(world0: np.ndarray, open_idx: np.ndarray, param: np.ndarray,
                 n: int) -> np.ndarray:
    """Start value of each unknown: the mean of the ray fills that read it."""
    if not n:
        return np.empty(0)
    v = world0[open_idx[:, 0], open_idx[:, 1]]
    return np.bincount(param, weights=v, minlength=n) / np.bincount(param, minlength=n)


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    cameras: tuple[Camera, ...]
    points: np.ndarray  # (n_points, 3) the shopper's joints, world frame
    joint_px: np.ndarray  # (n,) reprojection error of each joint observation (px)
    inlier: np.ndarray  # (n,) bool, kept after the outlier pass
    survey_world: np.ndarray  # (p, 3) survey points, open coordinates solved
    survey_px: np.ndarray  # (m,) reprojection error of each survey observation (px)
    cost: float
    #: the relative solve's starts, the one kept first (empty: one start, nothing compared)
    starts: tuple[StartOutcome, ...] = ()


@dataclass(frozen=True, slots=True)
class StartOutcome:
    """One start of the relative solve: its intrinsics, where it ended, and the cost it is
    compared on (robust, over every joint detection, the outlier cut undone, same priors)."""

    name: str
    k: np.ndarray  # (c, 3) start f, cx, cy
    cost: float
    kept: np.ndarray  # (c,) share of each camera's joint detections within OUTLIER_PX


@dataclass(frozen=True, slots=True)
class IntrinsicsPrior:
    """Free each camera's ``f, cx, cy`` in the adjustment (square pixels, no skew), held by
    Gaussian priors at the given cameras' values: ``f_sigma_px`` per camera (e.g. a
    vanishing-point f's spread, floored at :data:`F_SIGMA_FLOOR_PX`) and ``pp_sigma_px`` for
    the principal point. The lens stays as given (applied under the start matrix: exact for the
    rectified cps-test-01 videos, whose lens is ~0)."""

    f_sigma_px: tuple[float, ...]
    pp_sigma_px: float = PP_SIGMA_PX
    #: what is freed: ``"f"`` (principal point held where given: one shopper along one aisle
    #: does not pin it, a shift of it is nearly a small rotation) or ``"f,pp"``
    free: str = "f"

    def mask(self, n_cams: int) -> np.ndarray:
        """(c, 3) bool: which of f, cx, cy are unknowns."""
        if self.free not in ("f", "f,pp"):
            raise CalibrationError(f"intrinsics to free: {self.free!r}; expected 'f' or 'f,pp'")
        return np.tile([True, self.free == "f,pp", self.free == "f,pp"], (n_cams, 1))

    def sigmas(self, n_cams: int) -> np.ndarray:
        """(c, 3) sigma of f, cx, cy per camera."""
        if len(self.f_sigma_px) != n_cams:
            raise CalibrationError(f"{len(self.f_sigma_px)} focal-length priors for {n_cams} "
                                   "cameras")
        f = np.maximum(np.asarray(self.f_sigma_px, float), F_SIGMA_FLOOR_PX)
        pp = np.full(n_cams, max(float(self.pp_sigma_px), 1e-3))
        return np.stack([f, pp, pp], axis=1)


def _focal(cameras: Sequence[Camera]) -> np.ndarray:
    return np.array([(c.K_array[0, 0] + c.K_array[1, 1]) / 2 for c in cameras])


def _kvec(cameras: Sequence[Camera]) -> np.ndarray:
    """(c, 3) ``f, cx, cy`` per camera (f the mean of fx, fy)."""
    return np.array([[(c.K_array[0, 0] + c.K_array[1, 1]) / 2, c.K_array[0, 2],
                      c.K_array[1, 2]] for c in cameras])


def _gaussian_under_soft_l1(z: np.ndarray) -> np.ndarray:
    """Residuals that the soft-L1 loss turns back into ``z**2``: a prior must not go linear
    beyond one sigma like a joint does (``2 (sqrt(1 + g**2) - 1) = z**2``)."""
    return z * np.sqrt(1.0 + z * z / 4.0)


def _renormalise(xy: np.ndarray, ci: np.ndarray, k_old: np.ndarray,
                 k_new: np.ndarray) -> np.ndarray:
    """Normalised points under ``k_old`` → the same pixels normalised under ``k_new``."""
    px = xy * k_old[ci, :1] + k_old[ci, 1:]
    return (px - k_new[ci, 1:]) / k_new[ci, :1]


def _project(rs: np.ndarray, ts: np.ndarray, ci: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pc = np.einsum("nij,nj->ni", rs[ci], pts) + ts[ci]
    z = np.where(pc[:, 2:] > 1e-6, pc[:, 2:], 1e-6)
    return pc[:, :2] / z


def _ray_fill(sv: SurveyObs, rs: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Open survey coordinates from the first view's ray: the ray point nearest the known
    coordinates (an open-height point on a vertical edge gets the height there)."""
    world = sv.world.copy()
    for p in range(len(world)):
        open_ = np.isnan(world[p])
        if not open_.any():
            continue
        k = int(np.flatnonzero(sv.point == p)[0])
        c, r, t = sv.cam[k], rs[sv.cam[k]], ts[sv.cam[k]]
        centre = -r.T @ t
        d = r.T @ np.array([*sv.xy[k], 1.0])
        kn = ~open_
        s = float(d[kn] @ (world[p, kn] - centre[kn]) / max(float(d[kn] @ d[kn]), 1e-12))
        world[p, open_] = (centre + max(s, 0.1) * d)[open_]
        del c
    return world


def _solve(obs: Observations, keep: np.ndarray, sv: SurveyObs | None, cams0: np.ndarray,
           pts0: np.ndarray, k0: np.ndarray, fixed_cam: int | None, scale_pair: tuple[int, int],
           scale: float, floor: np.ndarray | None = None, max_nfev: int = 200,
           prior: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]:
    """One robust least-squares pass over the free cameras, the joints and the survey's open
    coordinates; returns camera params (c, 6), joints, survey world points, the cost and the
    intrinsics (c, 3) ``f, cx, cy``.

    Residuals are in pixels: each point is projected through its camera's matrix ``k0`` (the
    one ``obs.xy`` and ``sv.xy`` are normalised under). With ``prior = (mean, sigma, free)``,
    all (c, 3), the intrinsics marked ``free`` are unknowns too, each held to its mean by
    ``sigma``; the others (all, without a prior) are fixed at ``k0``. ``floor``: indices of
    joint points (planted ankles) held near ``ANKLE_HEIGHT_M``."""
    floor = np.empty(0, int) if floor is None else floor
    nc, npnt = len(cams0), len(pts0)
    free = [i for i in range(nc) if i != fixed_cam]
    slot = {c: k for k, c in enumerate(free)}
    ci, pi = obs.cam[keep], obs.point[keep]
    px = obs.xy[keep] * k0[ci, :1] + k0[ci, 1:]
    w = np.sqrt(obs.conf[keep]) / JOINT_SCALE_PX  # residuals in units of the scale
    n_cam_p = 6 * len(free)
    n_pt_p = 3 * npnt
    if sv is not None:
        rs0, ts0 = _rt(cams0)
        world0 = _ray_fill(sv, rs0, ts0)
        open_idx, param, n_open = open_params(sv)
        sv_px = sv.xy * k0[sv.cam, :1] + k0[sv.cam, 1:]
    else:
        world0, open_idx, sv_px = np.empty((0, 3)), np.empty((0, 2), int), np.empty((0, 2))
        param, n_open = np.empty(0, int), 0
    m_sv = 0 if sv is None else len(sv.cam)
    kmask = np.zeros((nc, 3), bool) if prior is None else prior[2]
    n_k = int(kmask.sum())
    kcol = np.full((nc, 3), -1)
    kcol[kmask] = np.arange(n_k)
    k_base = n_cam_p + n_pt_p + n_open

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cp = cams0.copy()
        cp[free] = x[:n_cam_p].reshape(-1, 6)
        world = world0.copy()
        if len(open_idx):
            world[open_idx[:, 0], open_idx[:, 1]] = x[n_cam_p + n_pt_p:k_base][param]
        k = k0.copy()
        k[kmask] = x[k_base:]
        return cp, x[n_cam_p:n_cam_p + n_pt_p].reshape(npnt, 3), world, k

    def fun(x: np.ndarray) -> np.ndarray:
        cp, pts, world, k = unpack(x)
        rs, ts = _rt(cp)
        uv = _project(rs, ts, ci, pts[pi]) * k[ci, :1] + k[ci, 1:]
        res = [((uv - px) * w[:, None]).ravel()]
        if sv is not None:
            uv = _project(rs, ts, sv.cam, world[sv.point]) * k[sv.cam, :1] + k[sv.cam, 1:]
            res.append(((uv - sv_px) / SURVEY_SIGMA_PX).ravel())
        if len(floor):
            res.append((pts[floor, 2] - ANKLE_HEIGHT_M) / FLOOR_SIGMA_M)
        if fixed_cam is not None:
            a, b = scale_pair
            gap = np.linalg.norm(rs[a].T @ ts[a] - rs[b].T @ ts[b])
            res.append(np.array([(gap - scale) * 100.0]))
        if prior is not None:
            res.append(_gaussian_under_soft_l1(((k - prior[0]) / prior[1])[kmask]))
        return np.concatenate(res)

    n_fixed = 1 if fixed_cam is not None else 0
    n_res = 2 * len(ci) + 2 * m_sv + len(floor) + n_fixed + n_k
    sp = lil_matrix((n_res, k_base + n_k), dtype=np.int8)
    rows = np.arange(len(ci))
    for k in range(2):
        r = 2 * rows + k
        for d in range(3):
            sp[r, n_cam_p + 3 * pi + d] = 1
        for c in range(nc):
            sel = ci == c
            if c in slot:
                for d in range(6):
                    sp[r[sel], 6 * slot[c] + d] = 1
            for d in np.flatnonzero(kmask[c]):
                sp[r[sel], k_base + kcol[c, d]] = 1
    if sv is not None:
        base = 2 * len(ci)
        for k in range(2):
            for c in range(nc):
                sel = np.flatnonzero(sv.cam == c)
                if c in slot:
                    for d in range(6):
                        sp[base + 2 * sel + k, 6 * slot[c] + d] = 1
                for d in np.flatnonzero(kmask[c]):
                    sp[base + 2 * sel + k, k_base + kcol[c, d]] = 1
            for j, (p, _axis) in enumerate(open_idx):
                sel = np.flatnonzero(sv.point == p)
                sp[base + 2 * sel + k, n_cam_p + n_pt_p + param[j]] = 1
    base = 2 * len(ci) + 2 * m_sv
    sp[base + np.arange(len(floor)), n_cam_p + 3 * floor + 2] = 1
    if fixed_cam is not None:
        for c in scale_pair:
            if c in slot:
                sp[base + len(floor), 6 * slot[c]:6 * slot[c] + 6] = 1
    if n_k:
        sp[n_res - n_k + np.arange(n_k), k_base + np.arange(n_k)] = 1
    x0 = np.concatenate([cams0[free].ravel(), pts0.ravel(),
                         _param_start(world0, open_idx, param, n_open),
                         k0[kmask]])
    lb, ub = np.full(len(x0), -np.inf), np.full(len(x0), np.inf)
    if prior is not None:
        # f stays within a factor of 2 of its prior: a camera whose points all fall behind it
        # otherwise fits them best with f -> 0 (seen on cps-test-01 under a tight cx, cy prior)
        fc = k_base + kcol[:, 0]
        lb[fc], ub[fc] = prior[0][:, 0] / 2, prior[0][:, 0] * 2
        x0 = np.clip(x0, lb, ub)
    sol = least_squares(fun, x0, jac_sparsity=sp.tocsr(), loss="soft_l1", f_scale=1.0,
                        x_scale="jac", method="trf", max_nfev=max_nfev, xtol=1e-10, ftol=1e-10,
                        bounds=(lb, ub))
    cp, pts, world, k = unpack(sol.x)
    return cp, pts, world, float(sol.cost), k.copy()


def _views(obs: Observations, n_cams: int) -> list[dict[int, np.ndarray]]:
    """Per camera: point index -> its normalised observation."""
    out: list[dict[int, np.ndarray]] = [{} for _ in range(n_cams)]
    for c, p, xy in zip(obs.cam, obs.point, obs.xy, strict=True):
        out[c][int(p)] = xy
    return out


def relative_poses(obs: Observations, n_cams: int, f: float = 500.0,
                   thresh_px: float = 4.0) -> np.ndarray:
    """Camera poses (c, 6) from the observations alone, up to a similarity.

    The pair sharing most points gives the essential matrix (RANSAC) and, decomposed, the
    second camera relative to the first at unit baseline; their inliers are triangulated and
    every other camera is resected on them (PnP RANSAC), most shared points first.
    """
    views = _views(obs, n_cams)
    counts = {(a, b): len(views[a].keys() & views[b].keys())
              for a in range(n_cams) for b in range(a + 1, n_cams)}
    (a, b), n = max(counts.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
    if n < 30:
        raise CalibrationError(f"no two cameras share 30 joint observations (best {n})")
    ids = sorted(views[a].keys() & views[b].keys())
    xa = np.array([views[a][i] for i in ids])
    xb = np.array([views[b][i] for i in ids])
    cv2.setRNGSeed(0)
    e, mask = cv2.findEssentialMat(xa, xb, np.eye(3), cv2.RANSAC, 0.9999, thresh_px / f)
    if e is None or e.shape != (3, 3):
        raise CalibrationError(f"no essential matrix between cameras {a} and {b}")
    _, r, t, mask = cv2.recoverPose(e, xa, xb, np.eye(3), mask=mask)
    poses = np.full((n_cams, 6), np.nan)
    poses[a] = 0.0
    poses[b, :3] = Rotation.from_matrix(r).as_rotvec()
    poses[b, 3:] = t.ravel()
    placed = [a, b]
    while len(placed) < n_cams:
        rs, ts = _rt(poses[placed])
        sub = np.isin(obs.cam, placed)
        remap = {c: k for k, c in enumerate(placed)}
        cam_k = np.array([remap[c] for c in obs.cam[sub]], int)
        multi = np.bincount(obs.point[sub], minlength=obs.n_points) >= 2
        pts = triangulate(obs.xy[sub], cam_k, obs.point[sub], obs.n_points, rs, ts)
        todo = [c for c in range(n_cams) if c not in placed]
        nxt = max(todo, key=lambda c: (sum(multi[p] for p in views[c]), -c))
        ids = sorted(p for p in views[nxt] if multi[p])
        if len(ids) < 12:
            raise CalibrationError(f"camera {nxt} shares only {len(ids)} triangulated joints "
                                   "with the others; cannot place it")
        ok, rvec, tvec, _ = cv2.solvePnPRansac(
            pts[ids], np.array([views[nxt][i] for i in ids]), np.eye(3), None,
            reprojectionError=thresh_px / f, iterationsCount=500, confidence=0.9999,
            flags=cv2.SOLVEPNP_EPNP)
        if not ok:
            raise CalibrationError(f"camera {nxt} could not be placed (PnP failed)")
        poses[nxt] = [*rvec.ravel(), *tvec.ravel()]
        placed.append(nxt)
    return poses


def align_similarity(rel: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Move relative poses (c, 6) by the similarity that best puts them on reference poses:
    rotation the chordal mean of the per-camera frame rotations, then scale and shift from
    the camera centres. A rough start for the survey solve, which then fixes the frame."""
    r_rel, t_rel = _rt(rel)
    r_ref, t_ref = _rt(ref)
    m = sum(r_ref[i].T @ r_rel[i] for i in range(len(rel)))  # rel -> world, per camera
    u, _, vt = np.linalg.svd(m)
    q = u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt
    c_rel = np.einsum("nji,nj->ni", r_rel, -t_rel) @ q.T
    c_ref = np.einsum("nji,nj->ni", r_ref, -t_ref)
    d_rel, d_ref = c_rel - c_rel.mean(0), c_ref - c_ref.mean(0)
    s = float(np.sum(d_rel * d_ref) / max(np.sum(d_rel * d_rel), 1e-12))
    shift = c_ref.mean(0) - s * c_rel.mean(0)
    out = np.empty_like(rel)
    for i in range(len(rel)):
        r_new = r_rel[i] @ q.T
        c_new = s * c_rel[i] + shift
        out[i, :3] = Rotation.from_matrix(r_new).as_rotvec()
        out[i, 3:] = -r_new @ c_new
    return out


def _pack(cameras: Sequence[Camera]) -> np.ndarray:
    return np.array([[*c.pose.rvec, *c.pose.tvec] for c in cameras], float)


def reproject(rs: np.ndarray, ts: np.ndarray, ci: np.ndarray, pts: np.ndarray,
              xy: np.ndarray, f: np.ndarray) -> np.ndarray:
    pc = np.einsum("nij,nj->ni", rs[ci], pts) + ts[ci]
    return np.linalg.norm(pc[:, :2] / pc[:, 2:] - xy, axis=1) * f[ci]


#: Typical ceiling-camera height (m) above the floor: only the scale of the first guess when
#: the footage frame is placed on the survey; the survey itself sets the scale.
GUESS_CAMERA_HEIGHT_M = 2.45
#: Height of the ankle joint above the floor while walking (m), for the same first guess.
ANKLE_HEIGHT_M = 0.08
ANKLES = (15, 16)
#: Two equally good survey placements with cameras further apart than this: ambiguous (m).
AMBIGUOUS_M = 0.3
#: How closely a planted ankle is held to that height (m); a lifted foot passes the soft-L1.
FLOOR_SIGMA_M = 0.05


def planted_ankles(obs: Observations, pts: np.ndarray) -> np.ndarray:
    """Point indices of the lower ankle at each instant (the foot on the floor)."""
    ank = np.flatnonzero(np.isin(obs.joints, ANKLES))
    best: dict[float, int] = {}
    for i in ank:
        t = float(obs.instants[i])
        if t not in best or pts[i, 2] < pts[best[t], 2]:
            best[t] = int(i)
    return np.array(sorted(best.values()), int)


def _similarity(cp: np.ndarray, pts: np.ndarray, q: np.ndarray, s: float,
                t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cameras (c, 6) and points moved by ``x -> s q x + t``."""
    rs, ts = _rt(cp)
    centres = np.einsum("nji,nj->ni", rs, -ts)
    out = np.empty_like(cp)
    for i in range(len(cp)):
        r_new = rs[i] @ q.T
        out[i, :3] = Rotation.from_matrix(r_new).as_rotvec()
        out[i, 3:] = -r_new @ (s * q @ centres[i] + t)
    return out, s * pts @ q.T + t


def _level(obs: Observations, cp: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, float,
                                                                         np.ndarray]:
    """A similarity putting the ankles' plane on the floor, z up, cameras at a typical height."""
    ank = pts[np.isin(obs.joints, ANKLES)]
    if len(ank) < 20:
        raise CalibrationError(f"only {len(ank)} ankle points seen by two cameras: cannot "
                               "find the floor")
    mid = np.median(ank, axis=0)
    _, _, vt = np.linalg.svd(ank - mid, full_matrices=False)
    up = vt[2]
    rs, ts = _rt(cp)
    centres = np.einsum("nji,nj->ni", rs, -ts)
    if np.mean((centres - mid) @ up) < 0:
        up = -up
    q = Rotation.align_vectors([[0.0, 0.0, 1.0]], [up])[0].as_matrix()
    height = float(np.median((centres - mid) @ up))
    s = (GUESS_CAMERA_HEIGHT_M - ANKLE_HEIGHT_M) / max(height, 1e-9)
    t = np.array([0.0, 0.0, ANKLE_HEIGHT_M]) - s * q @ mid
    return q, s, t


def _umeyama_start(sv: SurveyObs, cp: np.ndarray,
                   q0: np.ndarray) -> tuple[float, float, np.ndarray] | None:
    """(yaw, scale, shift) from the fully known survey points seen by two cameras or more:
    triangulated in the footage's frame and matched to their store coordinates (Umeyama).
    None when fewer than three such points."""
    rs, ts = _rt(cp)
    src, dst = [], []
    for p in range(len(sv.world)):
        k = np.flatnonzero(sv.point == p)
        if np.isnan(sv.world[p]).any() or len(set(sv.cam[k].tolist())) < 2:
            continue
        x = triangulate(sv.xy[k], sv.cam[k], np.zeros(len(k), int), 1, rs, ts)[0]
        src.append(x)
        dst.append(sv.world[p])
    if len(src) < 3:
        return None
    a, b = np.asarray(src), np.asarray(dst)
    ma, mb = a.mean(0), b.mean(0)
    u, d, vt = np.linalg.svd((b - mb).T @ (a - ma))
    sgn = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    q = u @ sgn @ vt
    s = float(np.trace(np.diag(d) @ sgn) / max(np.sum((a - ma) ** 2), 1e-12))
    yaw_m = q @ q0.T
    return float(np.arctan2(yaw_m[1, 0], yaw_m[0, 0])), s, mb - s * q @ ma


def _place_on_survey(obs: Observations, sv: SurveyObs, cp: np.ndarray, pts: np.ndarray,
                     f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The similarity that best puts the footage's frame on the survey, the relative poses
    held: leveled on the ankles (a single fixture face cannot tell up from a tilt), then yaw,
    scale and shift fitted from twelve yaw starts 30 degrees apart."""
    q0, s0, t0 = _level(obs, cp, pts)
    target = np.nanmean(sv.world, axis=0)
    target = np.where(np.isnan(target), 0.0, target)
    found: list[tuple[float, np.ndarray]] = []

    def _centres(x: np.ndarray) -> np.ndarray:
        qq = Rotation.from_euler("z", x[0]).as_matrix() @ q0
        cc, _ = _similarity(cp, pts[:0], qq, float(np.exp(x[1])), x[2:5])
        rs, ts = _rt(cc)
        return np.einsum("nji,nj->ni", rs, -ts)

    starts: list[tuple[float, float, np.ndarray]] = []
    for k in range(12):
        yaw = Rotation.from_euler("z", 30.0 * k, degrees=True).as_matrix()
        q = yaw @ q0
        cam_c = np.einsum("nji,nj->ni", *(_rt(cp)[0], -_rt(cp)[1]))
        t = yaw @ t0
        t[:2] += target[:2] - (s0 * cam_c @ q.T + t).mean(axis=0)[:2]
        starts.append((np.radians(30.0 * k), s0, t))
    umeyama = _umeyama_start(sv, cp, q0)
    if umeyama is not None:
        starts.insert(0, umeyama)
    for yaw0, s, t in starts:
        q = Rotation.from_euler("z", yaw0).as_matrix() @ q0
        c1, _ = _similarity(cp, pts, q, s, t)
        world0 = _ray_fill(sv, *_rt(c1))
        open_idx, param, n_open = open_params(sv)

        def fun(x: np.ndarray, open_idx: np.ndarray = open_idx, param: np.ndarray = param,
                world0: np.ndarray = world0) -> np.ndarray:
            qq = Rotation.from_euler("z", x[0]).as_matrix() @ q0
            cc, _ = _similarity(cp, pts[:0], qq, float(np.exp(x[1])), x[2:5])
            world = world0.copy()
            world[open_idx[:, 0], open_idx[:, 1]] = x[5:][param]
            rs, ts = _rt(cc)
            return ((_project(rs, ts, sv.cam, world[sv.point]) - sv.xy)
                    * (f[sv.cam] / SURVEY_SIGMA_PX)[:, None]).ravel()

        x0 = np.concatenate([[yaw0, np.log(s)], t, _param_start(world0, open_idx, param, n_open)])
        sol = least_squares(fun, x0, method="trf", max_nfev=300)
        if np.all(np.isfinite(sol.x)) and np.exp(sol.x[1]) > 1e-3 * s0:
            found.append((float(sol.cost), sol.x))
    if not found:
        raise CalibrationError("the survey could not be fitted from any starting yaw")
    found.sort(key=lambda r: r[0])
    x = found[0][1]
    # A survey that leaves the frame open fits equally well in different places: refuse it
    # rather than pick one at random.
    ref = _centres(x)
    for cost, other in found[1:]:
        gap = float(np.max(np.linalg.norm(_centres(other) - ref, axis=1)))
        if cost <= found[0][0] * 1.05 + 1e-6 and gap > AMBIGUOUS_M:
            raise CalibrationError(
                f"the survey does not fix the store frame: two placements fit it equally well "
                f"(cost {found[0][0]:.2f} and {cost:.2f}) with cameras {gap:.1f} m apart; add "
                "fully known points seen by other cameras, or points on lines with one open "
                "coordinate on other fixtures")
    return _similarity(cp, pts, Rotation.from_euler("z", x[0]).as_matrix() @ q0,
                       float(np.exp(x[1])), x[2:5])


def common_focal_start(cameras: Sequence[Camera]) -> np.ndarray:
    """(c, 3) start intrinsics: every camera at the median of the given f, principal point at
    the image centre. Per-camera f from vanishing points can put the essential matrix and the
    resections in a poor basin that one shared f avoids (cps-test-01, docs/perception.md)."""
    f = float(np.median(_focal(cameras)))
    return np.array([[f, (c.resolution[0] - 1) / 2, (c.resolution[1] - 1) / 2]
                     for c in cameras])


def _robust_cost(obs: Observations, cp: np.ndarray, pts: np.ndarray, k: np.ndarray,
                 prior: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> float:
    """The adjustment's cost (soft-L1 joints, Gaussian priors) over every joint detection,
    dropped ones too, so that starts whose outlier cuts differ are compared on one footing.
    Each detection counts at most as one off by ``OUTLIER_PX`` (a dropped one): a few points
    behind a camera in a poor basin would otherwise decide the comparison alone. A point whose
    detections were all dropped is re-triangulated first (it was not solved)."""
    rs, ts = _rt(cp)
    seen = np.zeros(obs.n_points, bool)
    err = reproject(rs, ts, obs.cam, pts[obs.point], obs.xy, k[:, 0])
    seen[obs.point[err <= OUTLIER_PX]] = True
    if not seen.all():
        pts = pts.copy()
        pts[~seen] = triangulate(obs.xy, obs.cam, obs.point, obs.n_points, rs, ts)[~seen]
    uv = _project(rs, ts, obs.cam, pts[obs.point]) * k[obs.cam, :1] + k[obs.cam, 1:]
    px = obs.xy * k[obs.cam, :1] + k[obs.cam, 1:]
    e = np.minimum(np.linalg.norm(uv - px, axis=1), OUTLIER_PX)
    z2 = obs.conf * (e / JOINT_SCALE_PX) ** 2
    cost = float(np.sum(np.sqrt(1.0 + z2) - 1.0))  # least_squares' 0.5 * sum rho, per axis pair
    if prior is not None:
        cost += 0.5 * float(np.sum((((k - prior[0]) / prior[1])[prior[2]]) ** 2))
    return cost


def calibrate(obs: Observations, cameras: Sequence[Camera], survey: Survey | None = None,
              min_points: int = 6, from_footage: bool = True,
              intrinsics: IntrinsicsPrior | None = None,
              starts: Sequence[tuple[str, np.ndarray]] = ()) -> CalibrationResult:
    """Refine the poses of ``cameras`` (and, with ``intrinsics``, their ``f`` or ``f, cx,
    cy``; the lens is kept) on the joint observations.

    ``from_footage`` starts from :func:`relative_poses` moved onto ``cameras`` by
    :func:`align_similarity` (the given poses may be far off: moved cameras); otherwise from
    ``cameras`` as they are. The relative solve keeps the first camera where it is and the
    distance between the first two camera centres. ``starts`` (name, (c, 3) f, cx, cy) are
    further start intrinsics for it: each is solved with its intrinsics held, then again from
    there under the given intrinsics and priors, and the start with the lowest robust cost
    over all joints (:func:`_robust_cost`) is kept; the given cameras are the start named
    ``"given"``. With a survey, that solution is then placed on the survey by a similarity
    (:func:`_place_on_survey`) and everything is solved again with the survey fixing the
    store frame. Each solve runs twice, the second time without the joint observations off by
    more than ``OUTLIER_PX`` after the first. Refined intrinsics are carried from solve to
    solve (the observations normalised afresh under them); their priors stay at the given
    cameras' values throughout.
    """
    if obs.n_points < 50:
        raise CalibrationError(
            f"only {obs.n_points} joints were seen by two cameras at once; need at least 50 "
            "(do the videos overlap and are they in sync?)")
    sv = None
    if survey is not None:
        sv = survey_observations(survey, cameras)
        if len(sv.cam) < min_points:
            raise CalibrationError(
                f"the survey has {len(sv.cam)} picks in cameras "
                f"{', '.join(c.id for c in cameras)}; need at least {min_points} to fix the "
                "store frame")
        full = {tuple(w) for w in sv.world if not np.isnan(w).any()}
        if not full:
            raise CalibrationError(
                "the survey has no fully known point; need at least 1 (with the open ones) to "
                "fix the store frame")
    nc = len(cameras)
    k_in = _kvec(cameras)
    k = k_in
    prior = None if intrinsics is None else (k_in, intrinsics.sigmas(nc), intrinsics.mask(nc))
    for name, ks in starts:
        if np.shape(ks) != (nc, 3):
            raise CalibrationError(f"start {name!r}: intrinsics of shape {np.shape(ks)} for "
                                   f"{nc} cameras")

    def solve(obs: Observations, sv: SurveyObs | None, cp: np.ndarray, pts: np.ndarray,
              fixed_cam: int | None, floor: np.ndarray | None = None, held: bool = False,
              ) -> tuple[Observations, SurveyObs | None, np.ndarray, np.ndarray, np.ndarray,
                         float]:
        nonlocal k
        cp, pts, world, cost, k_new = _solve(obs, keep, sv, cp, pts, k, fixed_cam, (0, 1),
                                             scale, floor, prior=None if held else prior)
        if prior is not None and not held:
            obs = replace(obs, xy=_renormalise(obs.xy, obs.cam, k, k_new))
            if sv is not None:
                sv = replace(sv, xy=_renormalise(sv.xy, sv.cam, k, k_new))
            k = k_new
        return obs, sv, cp, pts, world, cost

    def twice(obs: Observations, cp: np.ndarray, pts: np.ndarray, held: bool,
              ) -> tuple[Observations, np.ndarray, np.ndarray]:
        nonlocal keep
        for _ in range(2):
            obs, _, cp, pts, _, _ = solve(obs, None, cp, pts, 0, held=held)
            rs, ts = _rt(cp)
            keep = reproject(rs, ts, obs.cam, pts[obs.point], obs.xy, k[:, 0]) <= OUTLIER_PX
        return obs, cp, pts

    obs_in = obs
    outcomes: list[tuple[StartOutcome, tuple]] = []
    for name, ks in [("given", k_in), *starts]:
        ks = np.asarray(ks, float)
        k = ks
        obs = replace(obs_in, xy=_renormalise(obs_in.xy, obs_in.cam, k_in, ks))
        cams0 = _pack(cameras)
        if from_footage:
            cams0 = align_similarity(relative_poses(obs, nc, float(np.mean(ks[:, 0]))), cams0)
        rs, ts = _rt(cams0)
        pts = triangulate(obs.xy, obs.cam, obs.point, obs.n_points, rs, ts)
        centres = np.einsum("nji,nj->ni", rs, -ts)
        scale = float(np.linalg.norm(centres[0] - centres[1]))
        keep = np.ones(len(obs.cam), bool)
        moved = not np.array_equal(ks, k_in)
        obs, cp, pts = twice(obs, cams0, pts, held=moved)
        if moved:  # from the start's basin, under the given intrinsics and their priors
            obs, k = replace(obs, xy=_renormalise(obs.xy, obs.cam, ks, k_in)), k_in
            obs, cp, pts = twice(obs, cp, pts, held=False)
        out = StartOutcome(name, ks, _robust_cost(obs, cp, pts, k, prior), np.array(
            [keep[obs.cam == c].mean() if np.any(obs.cam == c) else 0.0 for c in range(nc)]))
        outcomes.append((out, (obs, cp, pts, k, keep, scale)))
    outcomes.sort(key=lambda o: o[0].cost)
    obs, cp, pts, k, keep, scale = outcomes[0][1]
    record = tuple(o for o, _ in outcomes) if starts else ()
    cost = outcomes[0][0].cost
    world = np.empty((0, 3))
    if sv is not None:
        sv = replace(sv, xy=_renormalise(sv.xy, sv.cam, k_in, k))
        cp, pts = _place_on_survey(obs, sv, cp, pts, k[:, 0])
        floor = planted_ankles(obs, pts)
        for _ in range(2):
            obs, sv, cp, pts, world, cost = solve(obs, sv, cp, pts, None, floor)
            rs, ts = _rt(cp)
            keep = reproject(rs, ts, obs.cam, pts[obs.point], obs.xy, k[:, 0]) <= OUTLIER_PX
    rs, ts = _rt(cp)
    err = reproject(rs, ts, obs.cam, pts[obs.point], obs.xy, k[:, 0])
    sv_err = (np.empty(0) if sv is None
              else reproject(rs, ts, sv.cam, world[sv.point], sv.xy, k[:, 0]))
    out = []
    for c, p, kc in zip(cameras, cp, k, strict=True):
        upd: dict[str, object] = {"pose": CameraPose(
            rvec=tuple(round(float(v), 8) for v in p[:3]),  # type: ignore[arg-type]
            tvec=tuple(round(float(v), 6) for v in p[3:]))}  # type: ignore[arg-type]
        if prior is not None:
            f, cx, cy = (round(float(v), 3) for v in kc)
            upd["K"] = ((f, 0.0, cx), (0.0, f, cy), (0.0, 0.0, 1.0))
        out.append(Camera.model_validate({**c.model_dump(), **upd}))
    return CalibrationResult(tuple(out), pts, err, keep, world, sv_err, cost, record)
