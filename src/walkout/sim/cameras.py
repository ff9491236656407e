"""Camera sensor model: turns ground-truth 3D skeletons into noisy 2D keypoint frames.

The tracker is only as trustworthy as the data it is tested on, so this model reproduces the
failure modes a real multi-camera pose pipeline shows: unsynchronised cameras (random phase,
jittered timestamps), lens distortion, pixel noise, occlusion by gondolas and by other people,
missed joints and people, and spurious detections. Everything is vectorised per camera over
blocks of ticks so a full shopping session renders in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from walkout.events import N_JOINTS, KeypointFrame
from walkout.store.model import Camera, Gondola, Store

#: A standing 1.70 m COCO-17 skeleton (metres), feet centre at the origin, facing +x, left = +y.
STANDING_SKELETON = np.array(
    [
        [0.10, 0.000, 1.60],  # nose
        [0.08, 0.035, 1.64],  # left_eye
        [0.08, -0.035, 1.64],  # right_eye
        [0.00, 0.075, 1.62],  # left_ear
        [0.00, -0.075, 1.62],  # right_ear
        [0.00, 0.190, 1.42],  # left_shoulder
        [0.00, -0.190, 1.42],  # right_shoulder
        [0.00, 0.220, 1.10],  # left_elbow
        [0.00, -0.220, 1.10],  # right_elbow
        [0.03, 0.220, 0.83],  # left_wrist
        [0.03, -0.220, 0.83],  # right_wrist
        [0.00, 0.100, 0.92],  # left_hip
        [0.00, -0.100, 0.92],  # right_hip
        [0.02, 0.100, 0.50],  # left_knee
        [0.02, -0.100, 0.50],  # right_knee
        [0.00, 0.100, 0.08],  # left_ankle
        [0.00, -0.100, 0.08],  # right_ankle
    ],
    dtype=np.float64,
)

_PERSON_BLOCK = 512  # ticks rendered together: bounds the size of the temporaries


@dataclass(frozen=True, slots=True)
class PersonPath:
    """Ground truth for one shopper from the shopper simulator.

    ``t`` is a regular 30 Hz grid covering the time the person is in the store; ``joints[i]``
    is the COCO-17 world skeleton (metres) at ``t[i]``.
    """

    person_id: int
    t: np.ndarray  # (n,) float64 seconds
    joints: np.ndarray  # (n, 17, 3) float32 world metres

    def __post_init__(self) -> None:
        if self.t.ndim != 1 or self.joints.shape != (self.t.shape[0], N_JOINTS, 3):
            raise ValueError(
                f"PersonPath {self.person_id}: t {self.t.shape} and joints {self.joints.shape} "
                f"must be (n,) and (n, {N_JOINTS}, 3)"
            )
        if self.t.shape[0] < 1:
            raise ValueError(f"PersonPath {self.person_id} is empty")

    def at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Linearly interpolated skeletons ``(m, 17, 3)`` and a presence mask ``(m,)``.

        Outside ``[t[0], t[-1]]`` the person is absent (joints NaN).
        """
        times = np.asarray(times, dtype=np.float64)
        present = (times >= self.t[0]) & (times <= self.t[-1])
        out = np.full((times.shape[0], N_JOINTS, 3), np.nan)
        if not present.any() or self.t.shape[0] == 1:
            out[present] = self.joints[0]
            return out, present
        tp = times[present]
        i1 = np.clip(np.searchsorted(self.t, tp, side="right"), 1, self.t.shape[0] - 1)
        i0 = i1 - 1
        w = ((tp - self.t[i0]) / (self.t[i1] - self.t[i0]))[:, None, None]
        j = self.joints.astype(np.float64)
        out[present] = j[i0] * (1.0 - w) + j[i1] * w
        return out, present


class CameraSimConfig(BaseModel):
    """Knobs of the camera sensor model. Defaults mimic a good 2D pose detector on 720p video."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pixel_noise_px: float = Field(
        default=3.0, ge=0, description="Gaussian keypoint noise σ in pixels at 1280 px width"
    )
    occluded_noise_factor: float = Field(
        default=3.0, ge=1, description="noise multiplier for occluded joints the detector guesses"
    )
    joint_miss_rate: float = Field(
        default=0.05, ge=0, le=1, description="probability that a visible joint is not detected"
    )
    person_miss_rate: float = Field(
        default=0.03, ge=0, le=1, description="probability that a whole visible person is missed"
    )
    occluded_keep_rate: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="probability that an occluded joint is still reported (a low-confidence guess)",
    )
    min_visible_joints: int = Field(
        default=4, ge=1, le=N_JOINTS, description="fewer reported joints than this: no detection"
    )
    false_detections_per_frame: float = Field(
        default=0.05, ge=0, description="Poisson mean of spurious skeletons per frame"
    )
    timestamp_jitter_ms: float = Field(
        default=2.0, ge=0, description="σ of the error of reported frame timestamps (ms)"
    )
    random_phase: bool = Field(
        default=True, description="give every camera a random capture phase in [0, 1/fps)"
    )
    phase_offsets_s: dict[str, float] = Field(
        default_factory=dict, description="explicit capture phase per camera id (overrides random)"
    )
    occlusion: bool = Field(default=True, description="model occlusion by gondolas and people")
    person_radius_m: float = Field(
        default=0.25, gt=0, description="radius of the vertical cylinder a person occludes"
    )
    gondola_open_front_m: float = Field(
        default=0.3,
        ge=0,
        description=(
            "depth behind a gondola's front face that does not occlude (open shelves), so a hand "
            "reaching into a shelf stays visible from the aisle it faces"
        ),
    )
    confidence_near: float = Field(
        default=0.92, gt=0, le=1, description="mean confidence of a visible joint at 2 m"
    )
    confidence_per_m: float = Field(
        default=0.04, ge=0, description="mean confidence lost per metre of distance beyond 2 m"
    )
    confidence_noise: float = Field(default=0.05, ge=0, description="σ of confidence noise")
    occluded_confidence: tuple[float, float] = Field(
        default=(0.1, 0.35), description="uniform range of confidence of guessed occluded joints"
    )
    false_confidence: tuple[float, float] = Field(
        default=(0.15, 0.5), description="uniform range of confidence of spurious skeleton joints"
    )


def _occluder_boxes(gondolas: Sequence[Gondola], open_front_m: float) -> np.ndarray:
    """(B, 2, 3) occluding boxes: each gondola minus the open front of its shelves."""
    boxes = []
    for g in gondolas:
        lo, hi = np.array(g.box.min, dtype=np.float64), np.array(g.box.max, dtype=np.float64)
        fx, fy = g.front
        for axis, f in ((0, fx), (1, fy)):
            if f > 0.5:
                hi[axis] = max(lo[axis], hi[axis] - open_front_m)
            elif f < -0.5:
                lo[axis] = min(hi[axis], lo[axis] + open_front_m)
        boxes.append((lo, hi))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 3)


def _blocked_by_boxes(center: np.ndarray, pts: np.ndarray, boxes: np.ndarray,
                     groups: np.ndarray | None = None) -> np.ndarray:
    """Whether the segment ``center → pts[i]`` passes through any box (slab test), ``(m,)``.

    With ``groups`` (e.g. the person of each point) each group is tested only against the boxes
    that overlap, on the floor, the rectangle spanned by the camera and the group's points: no
    segment can meet a box outside it, so the answer is the same, and a big store's hundreds of
    gondolas cost what the few between a camera and a person cost."""
    if groups is not None and boxes.shape[0] > 8 and pts.shape[0]:
        out = np.zeros(pts.shape[0], dtype=bool)
        order = np.argsort(groups, kind="stable")
        cuts = np.flatnonzero(np.diff(groups[order])) + 1
        for sel in np.split(order, cuts):
            p = pts[sel]
            lo = np.minimum(p[:, :2].min(axis=0), center[:2])
            hi = np.maximum(p[:, :2].max(axis=0), center[:2])
            near = ((boxes[:, 0, 0] <= hi[0]) & (boxes[:, 1, 0] >= lo[0])
                    & (boxes[:, 0, 1] <= hi[1]) & (boxes[:, 1, 1] >= lo[1]))
            if near.any():
                out[sel] = _blocked_by_boxes(center, p, boxes[near])
        return out
    if boxes.shape[0] == 0 or pts.shape[0] == 0:
        return np.zeros(pts.shape[0], dtype=bool)
    d = pts - center  # (m, 3)
    d = np.where(np.abs(d) < 1e-12, 1e-12, d)
    inv = 1.0 / d
    tmin = np.zeros((pts.shape[0], boxes.shape[0]))
    # The segment must enter the box before the joint (1 cm slack: a joint on a box face).
    tmax = np.broadcast_to(1.0 - 0.01 / np.linalg.norm(d, axis=1)[:, None], tmin.shape).copy()
    for k in range(3):  # per-axis slabs, kept 2D: far cheaper than reducing a (m, B, 3) array
        t0 = np.multiply.outer(inv[:, k], boxes[:, 0, k] - center[k])
        t1 = np.multiply.outer(inv[:, k], boxes[:, 1, k] - center[k])
        np.maximum(tmin, np.minimum(t0, t1), out=tmin)
        np.minimum(tmax, np.maximum(t0, t1), out=tmax)
    return (tmax >= tmin).any(axis=1)


def _blocked_by_people(
    center: np.ndarray, joints: np.ndarray, present: np.ndarray, radius: float
) -> np.ndarray:
    """Joints hidden behind another person's cylinder, ``(T, P, 17)``.

    ``joints`` is ``(T, P, 17, 3)``; each present person is a vertical cylinder of ``radius``
    around their hip centre, from the floor to their highest joint. A cheap per-person test
    first keeps only (tick, person, occluder) triples whose occluder is near the camera→hip
    segment, so the joint-level test stays linear in practice.
    """
    T, P = joints.shape[:2]
    out = np.zeros((T, P, N_JOINTS), dtype=bool)
    if P < 2:
        return out
    safe = np.where(present[:, :, None, None], joints, 0.0)
    hip = safe[:, :, 11:13, :2].mean(axis=2)  # (T, P, 2)
    top = safe[:, :, :, 2].max(axis=2)  # (T, P)
    c = center[:2]
    # Person level: distance of occluder q's axis to the floor segment c -> hip_p.
    dh = hip - c  # (T, P, 2)
    f = hip - c  # (T, Q, 2)
    s = (
        np.einsum("tpk,tqk->tpq", dh, f)
        / np.maximum(np.einsum("tpk,tpk->tp", dh, dh), 1e-9)[..., None]
    )
    s = np.clip(s, 0.0, 1.0)
    near = c + s[..., None] * dh[:, :, None, :] - hip[:, None, :, :]  # (T, P, Q, 2)
    reach = 0.9  # no joint is farther than this from its own hip on the floor
    cand = np.einsum("tpqk,tpqk->tpq", near, near) < (radius + reach) ** 2
    cand &= present[:, :, None] & present[:, None, :] & ~np.eye(P, dtype=bool)[None]
    ti, pi, qi = np.nonzero(cand)
    if ti.size == 0:
        return out
    pts = joints[ti, pi]  # (K, 17, 3)
    d = pts[..., :2] - c  # (K, 17, 2)
    fq = c - hip[ti, qi]  # (K, 2)
    a = np.einsum("kjx,kjx->kj", d, d)
    b = np.einsum("kjx,kx->kj", d, fq)
    cc = (np.einsum("kx,kx->k", fq, fq) - radius**2)[:, None]
    disc = b * b - a * cc
    sq = np.sqrt(np.maximum(disc, 0.0))
    a = np.maximum(a, 1e-12)
    lo = np.maximum((-b - sq) / a, 0.0)
    hi = np.minimum((-b + sq) / a, 1.0 - 1e-3)
    z0 = center[2]
    dz = pts[..., 2] - z0
    z_lo, z_hi = z0 + lo * dz, z0 + hi * dz
    hit = (disc > 0) & (lo < hi)
    hit &= (np.minimum(z_lo, z_hi) <= top[ti, qi][:, None]) & (np.maximum(z_lo, z_hi) >= 0.0)
    np.logical_or.at(out, (ti, pi), hit)
    return out


def _undistorted_radius_limit(cam: Camera) -> float:
    """Largest normalised radius inside the image (with margin), beyond which we do not project.

    OpenCV's polynomial distortion model can fold far off-axis points back into the image;
    cutting at the image corners' undistorted radius prevents such ghost joints.
    """
    w, h = cam.resolution
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64).reshape(-1, 1, 2)
    und = cv2.undistortPointsIter(
        corners,
        cam.K_array,
        cam.dist_array,
        None,
        None,
        (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12),
    ).reshape(-1, 2)
    return float(np.linalg.norm(und, axis=1).max() * 1.1)


def _false_skeleton(cam: Camera, rng: np.random.Generator, config: CameraSimConfig) -> np.ndarray:
    """A plausible-looking upright 2D skeleton at a random image place, low-ish confidence."""
    w, h = cam.resolution
    height_px = rng.uniform(0.12, 0.6) * h
    sk = STANDING_SKELETON
    yaw = rng.uniform(0, 2 * np.pi)
    side = sk[:, 0] * np.sin(yaw) + sk[:, 1] * np.cos(yaw)
    scale = height_px / 1.7
    xy = np.stack([side * scale, -(sk[:, 2] - 0.85) * scale], axis=1)
    xy += rng.uniform([0, 0], [w, h])
    xy += rng.normal(0, config.pixel_noise_px * w / 1280.0 * 2, xy.shape)
    conf = rng.uniform(*config.false_confidence, N_JOINTS)
    keep = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    conf = np.where(keep, conf, 0.0)
    xy = np.where(keep[:, None], xy, 0.0)
    return np.concatenate([xy, conf[:, None]], axis=1)


def _render_camera_block(
    cam: Camera,
    times: np.ndarray,
    people: Sequence[PersonPath],
    boxes: np.ndarray,
    r_limit: float,
    rng: np.random.Generator,
    config: CameraSimConfig,
) -> list[np.ndarray]:
    """Keypoints ``(people_k, 17, 3)`` for each capture time in ``times`` of one camera."""
    people = [p for p in people if p.t[0] <= times[-1] and p.t[-1] >= times[0]]
    T, P = times.shape[0], len(people)
    w, h = cam.resolution
    if P == 0:
        return [np.zeros((0, N_JOINTS, 3), np.float32) for _ in range(T)]
    joints = np.empty((T, P, N_JOINTS, 3))
    present = np.empty((T, P), dtype=bool)
    for p, path in enumerate(people):
        joints[:, p], present[:, p] = path.at(times)

    flat = joints.reshape(-1, 3)
    valid = np.repeat(present.reshape(-1), N_JOINTS)
    flat_safe = np.where(valid[:, None], flat, 0.0)
    cam_pts = flat_safe @ cam.R.T + cam.t
    depth = cam_pts[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        r_norm = np.linalg.norm(cam_pts[:, :2], axis=1) / depth
    valid &= (depth > 0.1) & (r_norm < r_limit)
    px = np.zeros((flat.shape[0], 2))
    if valid.any():
        proj, _ = cv2.projectPoints(
            flat_safe[valid].reshape(-1, 1, 3),
            np.asarray(cam.pose.rvec, dtype=np.float64),
            cam.t,
            cam.K_array,
            cam.dist_array,
        )
        px[valid] = proj.reshape(-1, 2)

    occluded = np.zeros(flat.shape[0], dtype=bool)
    if config.occlusion:
        idx = np.flatnonzero(valid)
        person = (idx // N_JOINTS) % P  # flat index = (tick * P + person) * 17 + joint
        occluded[idx] = _blocked_by_boxes(cam.center, flat_safe[idx], boxes, person)
        occluded |= (
            _blocked_by_people(cam.center, joints, present, config.person_radius_m).reshape(-1)
            & valid
        )

    n = flat.shape[0]
    scale = w / 1280.0
    guessed = occluded & (rng.random(n) < config.occluded_keep_rate)
    sigma = np.where(guessed, config.occluded_noise_factor, 1.0) * config.pixel_noise_px * scale
    px = px + rng.normal(0.0, 1.0, (n, 2)) * sigma[:, None]
    inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    dist = np.linalg.norm(flat_safe - cam.center, axis=1)
    conf = config.confidence_near - config.confidence_per_m * np.maximum(dist - 2.0, 0.0)
    conf = conf + rng.normal(0.0, config.confidence_noise, n)
    conf = np.where(guessed, rng.uniform(*config.occluded_confidence, n), conf)
    conf = np.clip(conf, 0.05, 1.0)
    reported = valid & inside & (~occluded | guessed) & (rng.random(n) >= config.joint_miss_rate)

    kp = np.zeros((n, 3), dtype=np.float32)
    kp[:, :2] = np.where(reported[:, None], px, 0.0)
    kp[:, 2] = np.where(reported, conf, 0.0)
    kp = kp.reshape(T, P, N_JOINTS, 3)
    n_rep = reported.reshape(T, P, N_JOINTS).sum(axis=2)
    detected = (n_rep >= config.min_visible_joints) & (
        rng.random((T, P)) >= config.person_miss_rate
    )
    n_false = rng.poisson(config.false_detections_per_frame, T)

    out: list[np.ndarray] = []
    for i in range(T):
        dets = [kp[i, detected[i]]]
        if n_false[i]:
            fakes = [_false_skeleton(cam, rng, config) for _ in range(n_false[i])]
            dets.append(np.asarray(fakes, dtype=np.float32))
        frame = np.concatenate(dets, axis=0) if len(dets) > 1 else dets[0]
        if frame.shape[0] > 1:  # detector output order carries no identity
            frame = frame[rng.permutation(frame.shape[0])]
        out.append(np.ascontiguousarray(frame, dtype=np.float32))
    return out


def render_keypoints(
    store: Store,
    people: Sequence[PersonPath],
    duration_s: float,
    rng: np.random.Generator,
    config: CameraSimConfig | None = None,
) -> list[KeypointFrame]:
    """Simulate every camera of ``store`` for ``duration_s`` seconds.

    Each frame shows the skeletons at its true capture time; its reported ``t`` carries the
    timestamp jitter, as real unsynchronised cameras do. Returns one frame per camera per tick
    (possibly with no people), sorted by reported time.
    """
    cfg = config or CameraSimConfig()
    boxes = _occluder_boxes(store.gondolas, cfg.gondola_open_front_m)
    if store.blind_areas:  # closed enclosures: nobody inside is seen, and they hide what is behind
        walls = [(b.box.min, b.box.max) for b in store.blind_areas]
        boxes = np.concatenate([boxes, np.asarray(walls, dtype=np.float64).reshape(-1, 2, 3)])
    frames: list[KeypointFrame] = []
    for cam in store.cameras:
        period = 1.0 / cam.fps
        if cam.id in cfg.phase_offsets_s:
            phase = cfg.phase_offsets_s[cam.id] % period
        else:
            phase = rng.uniform(0.0, period) if cfg.random_phase else 0.0
        capture = phase + period * np.arange(int(np.ceil((duration_s - phase) / period)))
        capture = capture[capture < duration_s]
        reported = capture + rng.normal(0.0, cfg.timestamp_jitter_ms * 1e-3, capture.shape)
        r_limit = _undistorted_radius_limit(cam)
        for s in range(0, capture.shape[0], _PERSON_BLOCK):
            block = capture[s : s + _PERSON_BLOCK]
            kps = _render_camera_block(cam, block, people, boxes, r_limit, rng, cfg)
            frames.extend(
                KeypointFrame(cam.id, float(t), k)
                for t, k in zip(reported[s : s + _PERSON_BLOCK], kps, strict=True)
            )
    order = {c.id: i for i, c in enumerate(store.cameras)}
    frames.sort(key=lambda f: (f.t, order[f.camera_id]))
    return frames
