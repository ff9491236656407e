"""Multi-camera 3D skeleton tracker with gate-bound identities.

Identity is purely geometric and continuous: a track is born only at an entry gate (so every
track can be bound to a credential), follows its person by prediction + per-camera assignment +
triangulation, and ends either at an exit gate or with an ``identity_lost`` alert. A person who
appears anywhere else raises ``unbound_person`` instead of getting a track, because guessing an
identity there could charge the wrong shopper.

Frames are grouped into slots of one camera period (``floor(t / slot_s)``), and a slot is
processed only once a later frame arrives (or at :meth:`Tracker.finish`), so any chunking of
the same frame stream gives identical tracks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from walkout.events import L_HIP, N_JOINTS, R_HIP, Alert, KeypointFrame, Track
from walkout.store.model import Gate, Store
from walkout.tracking.associate import GATED_COST, Detection, assign, cluster_arrays
from walkout.tracking.geometry import CameraGeometry, Lenses
from walkout.tracking.kernels import (
    assign_frames,
    association_costs,
    observe_tracks,
    triangulate_groups,
)

_TORSO = np.array([5, 6, 11, 12], dtype=np.int64)
#: Body-size cue: shoulder width, hip width and both torso sides. The trunk stays rigid
#: whatever the pose (limb keypoints move with reaching and bent knees), so these lengths tell
#: people of different builds apart.
_BONES = np.array([(5, 6), (11, 12), (5, 11), (6, 12)])


class TrackerConfig(BaseModel):
    """Tracker parameters. Distances are metres in the world unless marked px."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slot_s: float | None = Field(
        default=None, gt=0, description="time slot length; default one period of the fastest camera"
    )
    min_confidence: float = Field(
        default=0.2, ge=0, le=1, description="2D joints below this confidence are ignored"
    )
    assoc_gate_m: float = Field(
        default=0.35, gt=0, description="max robust mean joint distance detection↔track"
    )
    assoc_cap_m: float = Field(
        default=1.5, gt=0, description="per-joint cap of the association cost (robustness)"
    )
    min_assoc_joints: int = Field(
        default=4, ge=1, description="joints a detection and a track must share to be compared"
    )
    reacquire_growth_m_per_s: float = Field(
        default=0.8, ge=0, description="gate growth per second a track goes unobserved"
    )
    reacquire_gate_max_m: float = Field(
        default=1.2, gt=0, description="largest gate of a briefly lost track"
    )
    claim_gate_m: float = Field(
        default=0.6,
        gt=0,
        description="unassigned detections this close to a track are not used to birth people",
    )
    min_views: int = Field(default=2, ge=2, description="views needed to triangulate a joint")
    outlier_px: float = Field(
        default=20.0, gt=0, description="reprojection error beyond which a view is rejected (px)"
    )
    noise_px: float = Field(default=3.0, gt=0, description="assumed 2D keypoint noise σ (px)")
    min_update_joints: int = Field(
        default=5, ge=1, description="triangulated joints needed to count a track as observed"
    )
    velocity_gain: float = Field(
        default=0.4, gt=0, le=1, description="gain of the per-joint velocity (alpha-beta) filter"
    )
    max_joint_speed: float = Field(default=4.0, gt=0, description="velocity clamp (m/s)")
    coast_s: float = Field(
        default=0.5, ge=0, description="a lost track is predicted forward at most this long"
    )
    max_jump_m: float = Field(
        default=0.6, gt=0, description="a triangulated joint this far from prediction is dropped"
    )
    lost_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "a track unobserved (and not hidden by a neighbour) this long raises identity_lost; "
            "it stays recoverable for recovery_window_s"
        ),
    )
    recovery_window_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "a lost track can be resumed by a new candidate this long after it was last seen "
            "(or last known hidden); then it ends for good"
        ),
    )
    max_walk_speed: float = Field(
        default=1.8, gt=0, description="fastest plausible walking speed for re-acquisition (m/s)"
    )
    recovery_margin_m: float = Field(
        default=0.6, ge=0, description="slack on the reach of a lost person (m)"
    )
    occlusion_radius_m: float = Field(
        default=0.7,
        ge=0,
        description=(
            "a track lost this close to an observed track is taken as hidden by it: its loss "
            "clock does not run while the neighbour stays there"
        ),
    )
    max_hidden_s: float = Field(
        default=60.0, ge=0, description="longest a track may stay hidden behind a neighbour"
    )
    exit_timeout_s: float = Field(
        default=0.5,
        gt=0,
        description=(
            "a track lost inside an exit area ends this soon: whoever appears there next is far "
            "more likely someone else leaving than the same person re-found"
        ),
    )
    pair_radius_m: float = Field(
        default=1.0, gt=0, description="floor distance within which detections are paired"
    )
    pair_max_residual_m: float = Field(
        default=0.1, gt=0, description="median 2-view residual for two detections to agree"
    )
    birth_min_slots: int = Field(
        default=3, ge=1, description="slots a candidate must be seen before it becomes a person"
    )
    candidate_max_gap_slots: int = Field(
        default=2, ge=0, description="missed slots a not-yet-confirmed candidate survives"
    )
    candidate_match_m: float = Field(
        default=0.6, gt=0, description="hip distance to continue a candidate from slot to slot"
    )
    duplicate_radius_m: float = Field(
        default=0.3,
        gt=0,
        description=(
            "a candidate whose hips are this close to an observed track's is its echo; below "
            "the 0.4 m at which two people can stand side by side"
        ),
    )
    gate_margin_m: float = Field(
        default=0.5, ge=0, description="margin around entry/exit gate areas (birth/exit zone)"
    )
    body_radius_m: float = Field(
        default=0.8,
        gt=0,
        description=(
            "tracks whose hips are this close are entangled: their views may be mixed up, so "
            "they do not learn their body size and are checked for swapped identities"
        ),
    )
    body_noise_m: float = Field(
        default=0.025, gt=0, description="σ of one triangulated bone length (m)"
    )
    body_window_s: float = Field(
        default=3.0,
        gt=0,
        description=(
            "how long after two tracks were last close their identities are still compared: "
            "views are clean again once they part, which is when body sizes tell them apart"
        ),
    )
    body_min_samples: int = Field(
        default=15, ge=1, description="clear observations of a bone before it is used as a cue"
    )
    swap_radius_m: float = Field(
        default=0.3,
        gt=0,
        description=(
            "only tracks whose hips came this close can have been confused (people stand "
            "0.4 m apart at the closest); farther apart their views never mix"
        ),
    )
    body_min_contrast: float = Field(
        default=0.5,
        ge=0,
        description=(
            "bodies must differ by this much (Σ Δ² / 2σ² over the bones, the evidence one "
            "slot gives) to be compared; below it, pose-dependent bias would decide"
        ),
    )
    blind_edge_m: float = Field(
        default=1.0,
        gt=0,
        description=(
            "a track lost this close to a blind area (fitting room) went into it; somebody "
            "appearing this close to it may be coming out"
        ),
    )
    blind_stay_s: float = Field(
        default=3600.0,
        gt=0,
        description="a track that went into a blind area can be found at its edge this long",
    )
    reid_evidence: float = Field(
        default=8.0,
        gt=0,
        description=(
            "log-likelihood ratio (body sizes) by which the person coming out of a blind area "
            "must fit one of several people inside better than the others; below it the "
            "re-identification is a guess and raises identity_ambiguous (review)"
        ),
    )
    swap_evidence: float = Field(
        default=8.0,
        gt=0,
        description=(
            "log-likelihood ratio (body sizes) at which two entangled tracks swap identities"
        ),
    )

    @model_validator(mode="after")
    def _gates_below_cap(self) -> TrackerConfig:
        # The cost saturates at assoc_cap_m: a gate at or above it would accept anything.
        for name in ("assoc_gate_m", "claim_gate_m", "reacquire_gate_max_m"):
            if getattr(self, name) >= self.assoc_cap_m:
                raise ValueError(f"{name} must be below assoc_cap_m ({self.assoc_cap_m})")
        return self


class _History:
    """Append-only track samples in amortised-growth arrays.

    :meth:`view` hands out read-only views of the filled part: later appends write past it
    (or into a new buffer), so a view never changes and nothing is copied per read.
    """

    __slots__ = ("S", "X", "n", "t")

    def __init__(self, cap: int = 64) -> None:
        self.t = np.empty(cap)
        self.X = np.empty((cap, N_JOINTS, 3))
        self.S = np.empty((cap, N_JOINTS))
        self.n = 0

    def append(self, t: float, X: np.ndarray, S: np.ndarray) -> None:
        if self.n == self.t.shape[0]:
            cap = 2 * self.n
            for name in ("t", "X", "S"):
                old = getattr(self, name)
                new = np.empty((cap, *old.shape[1:]))
                new[: self.n] = old[: self.n]
                setattr(self, name, new)
        self.t[self.n], self.X[self.n], self.S[self.n] = t, X, S
        self.n += 1

    def spliced(self, k: int, other: _History, k_other: int) -> _History:
        """A new history: this one's first ``k`` samples, then ``other``'s from ``k_other``."""
        n = k + other.n - k_other
        out = _History(max(64, 2 * n))
        for name in ("t", "X", "S"):
            dst = getattr(out, name)
            dst[:k] = getattr(self, name)[:k]
            dst[k:n] = getattr(other, name)[k_other : other.n]
        out.n = n
        return out

    def forget_before(self, cutoff: float, min_drop: int = 256) -> bool:
        """Drop the samples older than ``cutoff``, keeping the first and the last: a track's
        birth and last sighting stay what they were (binding and exits read them), the rest
        of the past goes. Only when at least ``min_drop`` samples and as many as would stay
        can go, so that the copy is amortised over the samples it frees; but always when
        every sample but the last is older (a track that ended, or lost for good: after this
        copy it has nothing left to forget, and a store's every past visitor must not keep
        ``min_drop`` samples each). Returns whether anything was dropped (then views handed
        out earlier keep the old buffers)."""
        n = self.n
        k = min(int(np.searchsorted(self.t[:n], cutoff)), n - 1)  # first sample kept after 0
        drop = k - 1
        if drop < 1 or (drop < max(min_drop, n - k) and k < n - 1):
            return False
        m = n - drop
        out = _History(max(64, 2 * m))
        for name in ("t", "X", "S"):
            src, dst = getattr(self, name), getattr(out, name)
            dst[0] = src[0]
            dst[1:m] = src[k:n]
            setattr(self, name, dst)
        self.n = m
        return True

    def __getstate__(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pickled (the live engine's snapshot, ``walkout.service.live_state``) without the
        spare capacity, often as much again as the samples."""
        n = self.n
        return self.t[:n], self.X[:n], self.S[:n]

    def __setstate__(self, state: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        t, X, S = state
        self.n = n = t.shape[0]
        cap = max(64, 2 * n)
        self.t, self.X, self.S = (np.empty((cap, *a.shape[1:])) for a in (t, X, S))
        self.t[:n], self.X[:n], self.S[:n] = t, X, S

    def view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = (self.t[: self.n], self.X[: self.n], self.S[: self.n])
        for a in out:
            a.flags.writeable = False
        return out


@dataclass(slots=True)
class _TrackState:
    track_id: int
    born_at: str | None
    X: np.ndarray  # (17, 3) filled estimate at t_last
    V: np.ndarray  # (17, 3) per-joint velocity
    t_last: float
    joint_t: np.ndarray  # (17,) last time each joint was triangulated (-inf: never)
    hist: _History = field(default_factory=_History)
    ended: bool = False
    ended_at: str | None = None
    # Loss bookkeeping: when last seen or last known hidden behind a neighbour (anchor_t),
    # where (anchor_xy), and whether identity_lost was raised for the current loss.
    anchor_t: float = -math.inf
    anchor_xy: np.ndarray = field(default_factory=lambda: np.zeros(2))
    lost_alerted: bool = False
    hidden: bool = False
    blind: int = -1  # index of the blind area it went into (-1: none)
    cache: Track | None = None
    # Body-size signature: sum and count of each _BONES length over clear observations.
    bone_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(_BONES)))
    bone_n: np.ndarray = field(default_factory=lambda: np.zeros(len(_BONES)))

    def predict(self, t: float, coast_s: float) -> np.ndarray:
        return self.X + self.V * min(t - self.t_last, coast_s)

    @property
    def hip(self) -> np.ndarray:
        # (a + b) * 0.5: the same bits as mean() of the two, a fifth of the cost
        return (self.X[L_HIP, :2] + self.X[R_HIP, :2]) * 0.5

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        """Pickled without :attr:`cache`: a copy of the samples' views, rebuilt on demand."""
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["cache"] = None
        return None, state

    def track(self) -> Track:
        if self.cache is None or self.cache.t.shape[0] != self.hist.n or (
            self.cache.ended_at != self.ended_at
        ):
            t, X, S = self.hist.view()
            self.cache = Track(self.track_id, t, X, S, self.born_at, self.ended_at)
        return self.cache


@dataclass(frozen=True, slots=True)
class SlotDetections:
    """A slot's usable detections as columns, in frame order (rows ``off[f]:off[f+1]`` are
    frame ``f``'s, in the detector's order): undistorted joints, confidences, camera, time."""

    off: np.ndarray  # (F + 1,)
    xn: np.ndarray  # (D, 17, 2) normalised undistorted coordinates
    conf: np.ndarray  # (D, 17) 0 where missing / below the confidence floor
    cam: np.ndarray  # (D,) camera index
    t: np.ndarray  # (D,) frame time

    def detection(self, row: int) -> Detection:
        return Detection(int(self.cam[row]), float(self.t[row]), self.xn[row], self.conf[row])


@dataclass(frozen=True, slots=True)
class Association:
    """A slot's detections and what association made of them."""

    dets: SlotDetections
    match: np.ndarray  # (D,) index of the live track each detection went to (-1: none)
    claimed: np.ndarray  # (D,) near a track that got none in that camera: not a newcomer


@dataclass(slots=True)
class _Pair:
    """Two tracks that came close: when last, when closest (and how close), swap evidence."""

    t_near: float
    t_cross: float
    d_cross: float
    ev: float = 0.0


@dataclass(slots=True)
class _Candidate:
    cid: int
    X: np.ndarray  # (17, 3) filled
    t_last: float
    hits: int
    hist_t: list[float] = field(default_factory=list)
    hist_X: list[np.ndarray] = field(default_factory=list)
    hist_S: list[np.ndarray] = field(default_factory=list)
    alerted: bool = False
    first_hip: np.ndarray | None = None  # where (and hist_t[0] when) it first appeared

    @property
    def hip(self) -> np.ndarray:
        return (self.X[L_HIP, :2] + self.X[R_HIP, :2]) * 0.5


def _fill(X_obs: np.ndarray, X_prev: np.ndarray) -> np.ndarray:
    """Fill unobserved joints by moving the previous skeleton with the observed torso."""
    seen = ~np.isnan(X_obs[:, 0])
    if not seen.any():
        return X_prev.copy()
    torso = _TORSO[seen[_TORSO]]
    ref = torso if torso.size else np.flatnonzero(seen)
    shift = np.median(X_obs[ref] - X_prev[ref], axis=0)
    return np.where(seen[:, None], X_obs, X_prev + shift)


def _bone_lengths(X: np.ndarray) -> np.ndarray:
    """Lengths of the _BONES of skeleton(s) ``X`` ``(..., 17, 3)`` (NaN: a joint missing)."""
    return np.linalg.norm(X[..., _BONES[:, 0], :] - X[..., _BONES[:, 1], :], axis=-1)


def _distinct(
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]], radius: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One skeleton per person: the views of one newcomer can fall into two clusters (a body
    half-seen at a door, a camera that disagrees on a joint) that triangulate a few cm apart;
    as two candidates they would both grow into tracks, and the second newcomer's scan would
    then find nobody to bind. The best-seen skeleton within ``radius`` of another is kept."""
    if len(found) < 2:
        return found
    seen = [int((~np.isnan(X[:, 0])).sum()) for X, _, _ in found]
    kept: list[int] = []
    for i in sorted(range(len(found)), key=lambda i: -seen[i]):
        if all(float(np.linalg.norm(found[i][2] - found[j][2])) > radius for j in kept):
            kept.append(i)
    return [found[i] for i in sorted(kept)]


def _skeleton_hip(X: np.ndarray) -> np.ndarray | None:
    hips = X[[L_HIP, R_HIP], :2]
    ok = ~np.isnan(hips[:, 0])
    if ok.any():
        return hips[ok].mean(axis=0)
    seen = ~np.isnan(X[:, 0])
    return X[seen, :2].mean(axis=0) if seen.any() else None


class Tracker:
    """Streams keypoint frames into 3D tracks; see the module docstring for the method."""

    def __init__(self, store: Store, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._store = store
        self._cams = [CameraGeometry.from_camera(c) for c in store.cameras]
        self._cam_index = {c.id: i for i, c in enumerate(store.cameras)}
        self._cam_R = np.stack([c.R for c in self._cams])
        self._cam_t = np.stack([c.t for c in self._cams])
        self._cam_bounds = np.array([c.bounds for c in self._cams], dtype=np.float64)
        self._cam_f = np.array([c.f for c in self._cams], dtype=np.float64)
        self._cam_center = np.stack([c.center for c in self._cams])
        self._lenses = Lenses(self._cams)
        self._slot_s = self.config.slot_s or 1.0 / max(c.fps for c in store.cameras)
        self._entries: list[Gate] = store.gates_of("entry")
        self._exits: list[Gate] = store.gates_of("exit")
        self._blind = [b.box for b in store.blind_areas]
        self._tracks: list[_TrackState] = []
        # the tracks not ended (track_id order): what every slot works on, so that a slot's
        # cost follows the people in the store, not everybody it ever saw
        self._open: list[_TrackState] = []
        self.retired = 0  # ended tracks let go (:meth:`retire`), no longer in ``tracks``
        self._candidates: list[_Candidate] = []
        self._pending: list[KeypointFrame] = []
        self._pending_slot: int | None = None
        self._next_track = 1
        self._next_candidate = 1
        # Tracks that came close lately, keyed (track_id, track_id): see _identities.
        self._pairs: dict[tuple[int, int], _Pair] = {}
        self.dropped_frames = 0  # frames that arrived after their slot was processed

    # ---- public API -----------------------------------------------------------------------

    def process(self, frames: Sequence[KeypointFrame]) -> list[Alert]:
        """Consume frames (time order, any cameras, any chunking); alerts raised meanwhile."""
        alerts: list[Alert] = []
        for f in frames:
            if f.camera_id not in self._cam_index:
                raise ValueError(f"frame from unknown camera {f.camera_id!r}")
            k = math.floor(f.t / self._slot_s)
            if self._pending_slot is None or k == self._pending_slot:
                self._pending_slot = k
                self._pending.append(f)
            elif k > self._pending_slot:
                alerts += self._process_slot(self._pending_slot, self._pending)
                self._pending_slot, self._pending = k, [f]
            else:
                self.dropped_frames += 1
        return alerts

    def finish(self) -> list[Alert]:
        """Process the last buffered slot. Tracks still live stay open (``ended_at`` None)."""
        alerts: list[Alert] = []
        if self._pending_slot is not None and self._pending:
            alerts = self._process_slot(self._pending_slot, self._pending)
            self._pending = []
        return alerts

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A snapshot taken before the open tracks were kept apart gets them here."""
        self.__dict__.update(state)
        if "_open" not in state:
            self._open = [s for s in self._tracks if not s.ended]
            self.retired = 0

    @property
    def tracks(self) -> list[Track]:
        """Every track so far, alive and ended, ordered by ``track_id``, less the ended
        ones let go (:meth:`retire`).

        Cheap to read after every chunk: a track's :class:`Track` is rebuilt only when it has
        new samples, and its arrays are read-only views of the tracker's append-only buffers
        (no copy), which later samples never modify.
        """
        return [s.track() for s in self._tracks]

    def seen_since(self, t: float) -> bool:
        """Whether a track still going on was seen at or after ``t`` (somebody is around)."""
        return any(s.t_last >= t for s in self._open)

    def open_ids(self) -> set[int]:
        """Ids of the tracks not ended (their person may still be seen again)."""
        return {s.track_id for s in self._open}

    def retire(self, track_ids: set[int]) -> int:
        """Let ended tracks go for good (a past visitor settled long ago: ``Engine``'s
        ``forget_visits_s``); a track still open, or one a swap may still splice, stays.
        ``retired`` counts them, so a reader of ``tracks`` by position can keep its place.
        Returns how many went."""
        busy = {tid for k in self._pairs for tid in k}
        keep = [s for s in self._tracks
                if not (s.ended and s.track_id in track_ids and s.track_id not in busy)]
        n = len(self._tracks) - len(keep)
        if n:
            self._tracks = keep
            self.retired += n
        return n

    def forget_before(self, t: float) -> int:
        """Let every track forget its samples older than ``t`` (its first and last kept; see
        :meth:`_History.forget_before`), except from where two tracks' swap evidence still
        reaches back (a swap splices their histories at the crossing). A store that runs for
        days would otherwise keep every skeleton sample of everybody it ever saw in memory.
        Returns how many tracks forgot something."""
        t = min([t, *(p.t_cross for p in self._pairs.values())])
        n = 0
        for s in self._tracks:
            if s.hist.n > 2 and s.hist.t[1] < t and s.hist.forget_before(t):
                s.cache = None  # a rebuilt Track, not the old one with the same length
                n += 1
        return n

    # ---- one slot -------------------------------------------------------------------------

    def _detect(self, frames: list[KeypointFrame]) -> SlotDetections:
        """Each frame's usable detections (enough confident joints), undistorted."""
        cfg = self.config
        F = len(frames)
        cams = np.array([self._cam_index[f.camera_id] for f in frames], dtype=np.int64)
        ts = np.array([f.t for f in frames], dtype=np.float64)
        kps = [np.asarray(f.keypoints, dtype=np.float64) for f in frames]
        counts = np.array([k.shape[0] for k in kps], dtype=np.int64)
        off = np.zeros(F + 1, dtype=np.int64)
        if not counts.any():
            return SlotDetections(off, np.zeros((0, N_JOINTS, 2)), np.zeros((0, N_JOINTS)),
                                  np.zeros(0, dtype=np.int64), np.zeros(0))
        kp = np.concatenate([k for k in kps if k.shape[0]])
        frame_of = np.repeat(np.arange(F), counts)
        conf = np.where(kp[..., 2] >= max(cfg.min_confidence, 1e-6), kp[..., 2], 0.0)
        rows = np.flatnonzero((conf > 0).sum(axis=1) >= cfg.min_assoc_joints)
        frame_of, conf = frame_of[rows], conf[rows]
        cam = cams[frame_of]
        xn = self._lenses.undistort(kp[rows, :, :2].reshape(-1, 2), np.repeat(cam, N_JOINTS),
                                    conf.ravel() > 0)
        off[1:] = np.cumsum(np.bincount(frame_of, minlength=F))
        return SlotDetections(off, xn.reshape(-1, N_JOINTS, 2), conf, cam, ts[frame_of])

    def _process_slot(self, k: int, frames: list[KeypointFrame]) -> list[Alert]:
        t_ref = (k + 0.5) * self._slot_s
        frames = sorted(frames, key=lambda f: (f.t, self._cam_index[f.camera_id]))
        # Tracks lost for longer than lost_timeout_s no longer take detections directly (their
        # frozen prediction would capture whoever passes by); they come back only through a
        # confirmed candidate that nobody else can explain (see _update_candidates).
        lost_s = self.config.lost_timeout_s
        live = [s for s in self._open if t_ref - s.t_last <= lost_s]
        # Track states stacked once per slot; each frame only extrapolates them to its time.
        motion = (
            (
                np.stack([s.X for s in live]),
                np.stack([s.V for s in live]),
                np.array([s.t_last for s in live]),
            )
            if live
            else None
        )
        assoc = self._associate(frames, motion)
        observed = self._update_tracks(live, assoc, t_ref, motion)
        free = np.flatnonzero((assoc.match < 0) & ~assoc.claimed)
        alerts = self._births(assoc.dets, free, live, observed, t_ref)
        self._identities(t_ref)
        alerts += self._timeouts(t_ref)
        return alerts

    def _associate(
        self,
        frames: list[KeypointFrame],
        motion: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> Association:
        """Each frame's detections assigned one-to-one to the live tracks predicted in its
        camera (minimum total cost within the gates), and the claimed ones: detections near
        a track that got none here may be that track's, badly matched, and must not seed a
        new person; near a track that got its own detection in this camera a detection is
        somebody else's (people stand 0.4 m apart) and stays free.

        ``motion`` is ``(X, V, t_last)`` of the live tracks stacked (see ``_TrackState``).
        Frames of one slot depend only on that snapshot, never on each other: the
        distributed tracker (walkout.distributed) computes them by floor area elsewhere.
        """
        cfg = self.config
        sd = self._detect(frames)
        D = sd.t.shape[0]
        if motion is None or D == 0:
            return Association(sd, np.full(D, -1, dtype=np.int64), np.zeros(D, dtype=bool))
        X, V, t_last = motion
        frame_cam = np.array([self._cam_index[f.camera_id] for f in frames], dtype=np.int64)
        frame_t = np.array([f.t for f in frames], dtype=np.float64)
        visible, cost = association_costs(
            X, V, t_last, cfg.coast_s, self._cam_R, self._cam_t, self._cam_bounds,
            frame_cam, frame_t, sd.off, sd.xn, sd.conf, cfg.assoc_cap_m, cfg.min_assoc_joints,
            (L_HIP, R_HIP),
        )
        missed = np.maximum(frame_t[:, None] - t_last[None, :] - self._slot_s, 0.0)
        gates = np.minimum(
            cfg.assoc_gate_m + cfg.reacquire_growth_m_per_s * missed, cfg.reacquire_gate_max_m
        )
        match, claimed = assign_frames(cost, visible, sd.off, gates, cfg.claim_gate_m, GATED_COST)
        return Association(sd, match, claimed)

    def _triangulate_views(
        self, groups: list[list[Detection]], velocities: list[np.ndarray], t_ref: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Motion-compensated triangulation of each group of views: ``(G, 17, 3)``, ``(G, 17)``.

        Views come from unsynchronised cameras; each is shifted to ``t_ref`` with the joint's
        velocity by folding ``R v Δt`` into that view's translation
        (:func:`walkout.tracking.kernels.triangulate_groups`). A group's result depends on its
        own views only, so a subset of groups triangulated elsewhere gives the same bits.
        """
        flat = [d for g in groups for d in g]
        off = np.zeros(len(groups) + 1, dtype=np.int64)
        off[1:] = np.cumsum([len(g) for g in groups])
        dets = SlotDetections(
            np.array([0, len(flat)]), np.stack([d.xn for d in flat]),
            np.stack([d.conf for d in flat]), np.array([d.cam for d in flat], dtype=np.int64),
            np.array([d.t for d in flat], dtype=np.float64),
        )
        return self._triangulate_rows(dets, np.arange(len(flat)), off, velocities, t_ref)

    def _triangulate_block(
        self, dets: SlotDetections, rows: np.ndarray, off: np.ndarray,
        velocities: list[np.ndarray], t_ref: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_triangulate_views` of groups given as detection rows ``rows[off[g]:
        off[g+1]]`` of ``dets``; the distributed tracker spreads it over its actors."""
        return self._triangulate_rows(dets, rows, off, velocities, t_ref)

    def _triangulate_rows(
        self, dets: SlotDetections, rows: np.ndarray, off: np.ndarray,
        velocities: list[np.ndarray], t_ref: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        return triangulate_groups(
            dets.xn, dets.conf, dets.cam, dets.t, rows.astype(np.int64), off, t_ref,
            np.stack(velocities), self._cam_R, self._cam_t, self._cam_f, cfg.outlier_px,
            cfg.noise_px, 3, cfg.min_views,
        )

    def _update_tracks(
        self, live: list[_TrackState], assoc: Association, t_ref: float,
        motion: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> set[int]:
        """Triangulate every track seen by two views or more and update it (one kernel call
        for all: :func:`walkout.tracking.kernels.observe_tracks`, jumps gated).

        Only joints seen recently have a prediction worth trusting; a joint unseen for long
        must be free to come back wherever it is, or it would be locked out.
        """
        m = assoc.match
        if motion is None or not live:
            return set()
        counts = np.bincount(m[m >= 0], minlength=len(live))
        idx = np.flatnonzero(counts >= 2).tolist()
        if not idx:
            return set()
        # each track's views in row (frame) order, tracks in index order
        views = np.flatnonzero((m >= 0) & (counts[np.maximum(m, 0)] >= 2))
        views = views[np.argsort(m[views], kind="stable")]
        off = np.zeros(len(idx) + 1, dtype=np.int64)
        off[1:] = np.cumsum(counts[idx])
        Xo, So = self._triangulate_block(assoc.dets, views, off, [live[i].V for i in idx], t_ref)
        rows = np.array(idx)
        X, V, t_last = (np.ascontiguousarray(a[rows]) for a in motion)
        joint_t = np.stack([live[i].joint_t for i in idx])
        updated = self._observe_all(X, V, t_last, joint_t, Xo, So, t_ref, gate_jumps=True)
        observed: set[int] = set()
        for g in np.flatnonzero(updated).tolist():
            self._store_observation(live[idx[g]], X[g], V[g], joint_t[g], Xo[g], So[g], t_ref)
            observed.add(idx[g])
        return observed

    def _observe_all(
        self, X: np.ndarray, V: np.ndarray, t_last: np.ndarray, joint_t: np.ndarray,
        Xo: np.ndarray, So: np.ndarray, t_ref: float, gate_jumps: bool,
    ) -> np.ndarray:
        cfg = self.config
        return observe_tracks(
            X, V, t_last, joint_t, Xo, So, t_ref, _TORSO, cfg.coast_s, self._slot_s,
            cfg.max_jump_m, cfg.max_joint_speed, cfg.min_update_joints, cfg.velocity_gain,
            gate_jumps,
        )

    @staticmethod
    def _store_observation(
        s: _TrackState, X: np.ndarray, V: np.ndarray, joint_t: np.ndarray, Xo: np.ndarray,
        So: np.ndarray, t_ref: float,
    ) -> None:
        s.X, s.V, s.joint_t, s.t_last = X, V, joint_t, t_ref
        s.hist.append(t_ref, Xo, So)

    def _observe(self, s: _TrackState, Xo: np.ndarray, So: np.ndarray, t_ref: float) -> None:
        """Update one track with an observation (a re-acquisition: no jump gate)."""
        X, V, joint_t = s.X[None].copy(), s.V[None].copy(), s.joint_t[None].copy()
        Xo, So = Xo[None].copy(), So[None].copy()
        self._observe_all(X, V, np.array([s.t_last]), joint_t, Xo, So, t_ref, gate_jumps=False)
        self._store_observation(s, X[0], V[0], joint_t[0], Xo[0], So[0], t_ref)

    def _identities(self, t_ref: float) -> None:
        """Keep identities through close encounters with the body-size cue.

        When two people come within ``body_radius_m`` their detections look alike in every
        camera and position alone can hand each track the other's person. A track learns its
        bone lengths only while nobody has been near it for ``body_window_s`` (so the
        signature is its own). For that long after an encounter, every slot in which both
        tracks are observed adds the log-likelihood ratio of "swapped" over "as is"; past
        ``swap_evidence`` the two exchange the people they follow from the moment they were
        closest, so each identity stays with the body that fits it.
        """
        cfg = self.config
        active = self._open
        by_id = {s.track_id: s for s in active}
        pairs = {k: p for k, p in self._pairs.items() if k[0] in by_id and k[1] in by_id}
        if len(active) >= 2:
            X = np.stack([s.X for s in active])
            hips = (X[:, L_HIP, :2] + X[:, R_HIP, :2]) * 0.5  # each track's .hip
            d = np.linalg.norm(hips[:, None] - hips[None], axis=-1)
            for i, j in zip(*np.nonzero(np.triu(d <= cfg.body_radius_m, 1)), strict=True):
                key = (active[i].track_id, active[j].track_id)
                p = pairs.setdefault(key, _Pair(t_ref, t_ref, np.inf))
                p.t_near = t_ref
                if d[i, j] < p.d_cross:
                    p.d_cross, p.t_cross = float(d[i, j]), t_ref
        self._pairs = {k: p for k, p in pairs.items() if t_ref - p.t_near <= cfg.body_window_s}
        entangled = {tid for k in self._pairs for tid in k}
        now = [s for s in active if s.hist.n and s.hist.t[s.hist.n - 1] == t_ref]  # observed
        bones: dict[int, np.ndarray] = {}
        if now:
            lengths = _bone_lengths(np.stack([s.hist.X[s.hist.n - 1] for s in now]))
            bones = {s.track_id: b for s, b in zip(now, lengths, strict=True)}
            # the signature learns only from tracks nobody was near (its own body)
            learn = [k for k, s in enumerate(now) if s.track_id not in entangled]
            if learn:
                b = lengths[learn]
                seen = ~np.isnan(b)
                sums = np.stack([now[k].bone_sum for k in learn]) + np.where(seen, b, 0.0)
                counts = np.stack([now[k].bone_n for k in learn]) + seen
                for k, total, n in zip(learn, sums, counts, strict=True):
                    now[k].bone_sum, now[k].bone_n = total, n
        sig2 = cfg.body_noise_m**2
        cap = (2.5 * cfg.body_noise_m) ** 2
        ready: list[tuple[float, tuple[int, int]]] = []
        for key, p in sorted(self._pairs.items()):
            if key[0] not in bones or key[1] not in bones:
                continue
            si, sj = by_id[key[0]], by_id[key[1]]
            use = (si.bone_n >= cfg.body_min_samples) & (sj.bone_n >= cfg.body_min_samples)
            bi, bj = bones[key[0]], bones[key[1]]
            use &= ~np.isnan(bi) & ~np.isnan(bj)
            if p.d_cross > cfg.swap_radius_m or not use.any():
                continue
            gi = si.bone_sum[use] / si.bone_n[use]
            gj = sj.bone_sum[use] / sj.bone_n[use]
            if float(((gi - gj) ** 2).sum()) / (2 * sig2) < cfg.body_min_contrast:
                continue
            bi, bj = bi[use], bj[use]
            keep = np.minimum((bi - gi) ** 2, cap) + np.minimum((bj - gj) ** 2, cap)
            swap = np.minimum((bi - gj) ** 2, cap) + np.minimum((bj - gi) ** 2, cap)
            p.ev = max(p.ev + float((keep - swap).sum()) / (2 * sig2), -cfg.swap_evidence)
            if p.ev >= cfg.swap_evidence:
                ready.append((p.ev, key))
        done: set[int] = set()
        for _, key in sorted(ready, key=lambda r: (-r[0], r[1])):
            if done & set(key):
                continue
            done |= set(key)
            p = self._pairs[key]
            _swap_people(by_id[key[0]], by_id[key[1]], p.t_cross)
            p.ev, p.d_cross = 0.0, np.inf  # a later mix-up dates from a later crossing

    # ---- births, re-acquisition, unbound people -------------------------------------------

    def _births(
        self,
        dets: SlotDetections,
        free: np.ndarray,
        live: list[_TrackState],
        observed: set[int],
        t_ref: float,
    ) -> list[Alert]:
        """People nobody tracks: the free detections (rows of ``dets``) grouped across
        cameras; echoes of observed tracks dropped, lost tracks re-acquired, the rest
        candidates (see :meth:`_update_candidates`)."""
        cfg = self.config
        clusters = cluster_arrays(
            dets.xn[free], dets.conf[free], dets.cam[free], self._cam_R, self._cam_t,
            self._cam_center, cfg.pair_radius_m, cfg.pair_max_residual_m, cfg.min_assoc_joints,
        )
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (X, S, hip)
        if clusters:
            rows = np.concatenate([free[list(c.members)] for c in clusters])
            off = np.zeros(len(clusters) + 1, dtype=np.int64)
            off[1:] = np.cumsum([len(c.members) for c in clusters])
            still = [np.zeros((N_JOINTS, 3))] * len(clusters)
            X, S = self._triangulate_rows(dets, rows, off, still, t_ref)
            for g in range(len(clusters)):
                hip = _skeleton_hip(X[g])
                if hip is None or (~np.isnan(X[g, :, 0])).sum() < cfg.min_update_joints:
                    continue
                found.append((X[g], S[g], hip))
        found = _distinct(found, cfg.duplicate_radius_m)

        # Echoes of observed tracks are dropped; near a lost track they re-acquire it.
        rest: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        if found and live:
            ph = self._predicted_hips(live, t_ref)
            missed = np.maximum(t_ref - np.array([s.t_last for s in live]) - self._slot_s, 0.0)
            gates = np.minimum(
                cfg.assoc_gate_m + cfg.reacquire_growth_m_per_s * missed, cfg.reacquire_gate_max_m
            ).tolist()
        for Xc, Sc, hip in found:
            best, best_d = None, np.inf
            echo = False
            # Somebody standing in an entry gate is a newcomer unless the unseen track was last
            # seen there too: people enter at gates, tracks do not wander back into them.
            at_entry = self._gate_at(self._entries, hip) is not None
            dists = np.linalg.norm(ph - hip, axis=1).tolist() if live else []
            for i, d in enumerate(dists):
                if i in observed:
                    echo |= d <= cfg.duplicate_radius_m
                    continue
                if at_entry and self._gate_at(self._entries, live[i].hip) is None:
                    continue
                if d <= gates[i] and d < best_d:
                    best, best_d = i, d
            if echo:
                continue
            if best is not None:
                self._observe(live[best], Xc, Sc, t_ref)
                observed.add(best)
                ph[best] = self._predicted_hips([live[best]], t_ref)[0]
                continue
            rest.append((Xc, Sc, hip))
        return self._update_candidates(rest, t_ref)

    def _predicted_hips(self, tracks: list[_TrackState], t_ref: float) -> np.ndarray:
        """Where each track's hip centre is predicted on the floor at ``t_ref`` ``(n, 2)``."""
        X = np.stack([s.X for s in tracks])[:, [L_HIP, R_HIP], :2]
        V = np.stack([s.V for s in tracks])[:, [L_HIP, R_HIP], :2]
        dt = np.minimum(t_ref - np.array([s.t_last for s in tracks]), self.config.coast_s)
        return (X + V * dt[:, None, None]).mean(axis=1)

    def _update_candidates(
        self, found: list[tuple[np.ndarray, np.ndarray, np.ndarray]], t_ref: float
    ) -> list[Alert]:
        cfg = self.config
        alerts: list[Alert] = []
        cands = self._candidates
        matched: dict[int, int] = {}
        if cands and found:
            cost = np.array(
                [[float(np.linalg.norm(h - c.hip)) for c in cands] for _, _, h in found]
            )
            # An unbound person keeps their one alert while they move about unseen for a while.
            gates = np.array(
                [
                    cfg.candidate_match_m
                    + (
                        # capped: beyond a second's walk, re-detection goes through
                        # _same_unbound_person so that entries and lost tracks come first
                        self._reach(min(t_ref - c.t_last - self._slot_s, 1.0))
                        if c.alerted
                        else 0.0
                    )
                    for c in cands
                ]
            )
            matched = {c: r for r, c in assign(cost, gates)}
        used_rows = set(matched.values())
        for ci, c in enumerate(cands):
            if ci not in matched:
                continue
            Xc, Sc, _ = found[matched[ci]]
            c.X = _fill(Xc, c.X)
            c.hits += 1
            c.t_last = t_ref
            if not c.alerted:
                c.hist_t.append(t_ref)
                c.hist_X.append(Xc)
                c.hist_S.append(Sc)
        for r, (Xc, Sc, _) in enumerate(found):
            if r in used_rows:
                continue
            # Joints not seen yet start at the body centre (never at the origin).
            filled = np.where(np.isnan(Xc), np.nanmean(Xc, axis=0), Xc)
            c = _Candidate(self._next_candidate, filled, t_ref, 1, [t_ref], [Xc], [Sc])
            c.first_hip = c.hip.copy()
            self._next_candidate += 1
            cands.append(c)

        keep: list[_Candidate] = []
        for c in cands:
            gap = t_ref - c.t_last
            if c.alerted:
                if gap <= cfg.recovery_window_s:
                    keep.append(c)
                continue
            if gap > (cfg.candidate_max_gap_slots + 0.5) * self._slot_s:
                continue
            if c.hits < cfg.birth_min_slots or gap > 0:
                keep.append(c)
                continue
            # An unbound person seen again stays unbound (is never handed to a lost track)
            # and is not alerted twice.
            same = self._same_unbound_person(c, cands)
            lost = self._lost_tracks_within_reach(c, t_ref)
            if c.first_hip is not None and self._gate_at(self._entries, c.first_hip) is not None:
                # appeared in an entry gate: a newcomer, unless a track was lost right there
                lost = [s for s in lost if self._gate_at(self._entries, s.hip) is not None]
            door = self._blind_at(c.first_hip) if c.first_hip is not None else -1
            inside = [s for s in lost if door >= 0 and s.blind == door]
            if same is None and inside:
                # coming out of a blind area: one of those who went in, told apart by body size
                alerts += self._reidentify(inside, c, t_ref)
                continue
            lost = [s for s in lost if s.blind < 0 or t_ref - s.anchor_t <= cfg.recovery_window_s]
            if same is None and len(lost) == 1:
                alerts += self._resume(lost[0], c, t_ref)
                continue
            gate = self._gate_at(self._entries, c.hip) if not lost else None
            if gate is not None:
                self._birth(c, gate.id)
                continue
            c.alerted = True
            keep.append(c)
            if same is not None:
                same.t_last = -math.inf  # c carries on for it: forget the older one
                continue
            x, y = c.hip
            why = (
                f"could be any of tracks {', '.join(str(s.track_id) for s in lost)}"
                if lost
                else "did not come through an entry"
            )
            alerts.append(
                Alert(
                    t=t_ref,
                    kind="unbound_person",
                    message=f"person at ({x:.2f}, {y:.2f}) m {why}",
                    subject=f"candidate-{c.cid}",
                )
            )
        self._candidates = keep
        return alerts

    # ---- recovery -------------------------------------------------------------------------

    def _reach(self, gap_s: float) -> float:
        """How far a person can have moved unseen in ``gap_s`` seconds (plus the margin)."""
        return self.config.max_walk_speed * max(gap_s, 0.0) + self.config.recovery_margin_m

    def _lost_tracks_within_reach(self, c: _Candidate, t_ref: float) -> list[_TrackState]:
        """Unobserved, still recoverable tracks that could have become candidate ``c``."""
        assert c.first_hip is not None
        t0 = c.hist_t[0]
        out = []
        door = self._blind_at(c.first_hip)
        for s in self._open:
            if s.t_last >= t0:
                continue
            if s.blind >= 0 and s.blind == door:  # whoever went in may come out at any time
                out.append(s)
                continue
            reach = self._reach(t0 - s.anchor_t)
            if s.hidden:
                reach += self.config.occlusion_radius_m
            if float(np.linalg.norm(c.first_hip - s.anchor_xy)) <= reach:
                out.append(s)
        return out

    def _same_unbound_person(self, c: _Candidate, cands: list[_Candidate]) -> _Candidate | None:
        """The already alerted candidate that new candidate ``c`` is a re-detection of."""
        assert c.first_hip is not None
        t0 = c.hist_t[0]
        for o in cands:
            if o is c or not o.alerted:
                continue
            if o.t_last >= t0:  # seen alongside c: the same person only if right there
                same = float(np.linalg.norm(c.hip - o.hip)) <= self.config.candidate_match_m
            else:
                same = float(np.linalg.norm(c.first_hip - o.hip)) <= self._reach(t0 - o.t_last)
            if same:
                return o
        return None

    def _blind_at(self, xy: np.ndarray) -> int:
        """Index of the blind area within ``blind_edge_m`` of floor point ``xy`` (-1: none)."""
        for i, b in enumerate(self._blind):
            dx = max(b.min[0] - xy[0], 0.0, xy[0] - b.max[0])
            dy = max(b.min[1] - xy[1], 0.0, xy[1] - b.max[1])
            if math.hypot(dx, dy) <= self.config.blind_edge_m:
                return i
        return -1

    def _reidentify(self, inside: list[_TrackState], c: _Candidate, t_ref: float) -> list[Alert]:
        """Candidate ``c`` came out of a blind area that ``inside`` went into: resume the one
        whose body size fits (identity is geometric: clothes may have changed, bones not).
        With one inside there is nobody to confuse; with several, a fit that is not clearly
        the best raises ``identity_ambiguous`` naming them all, for review."""
        cfg = self.config
        if len(inside) == 1:
            return self._resume(inside[0], c, t_ref)
        bones = np.array([_bone_lengths(x) for x in c.hist_X])
        n = (~np.isnan(bones)).sum(axis=0)
        # compared on the bones every one of them has learnt and the newcomer shows
        use = n > 0
        for s in inside:
            use &= s.bone_n >= cfg.body_min_samples
        scores = np.zeros(len(inside))
        if use.any():
            mine = np.nanmean(bones[:, use], axis=0)
            for i, s in enumerate(inside):
                sig = s.bone_sum[use] / s.bone_n[use]
                var = cfg.body_noise_m**2 * (1.0 / n[use] + 1.0 / s.bone_n[use])
                scores[i] = -0.5 * float(np.sum((mine - sig) ** 2 / var))
        # no usable evidence: first in, first out is as good a guess as any (and is reviewed)
        order = sorted(range(len(inside)), key=lambda i: (-scores[i], inside[i].anchor_t))
        best = inside[order[0]]
        margin = float(scores[order[0]] - scores[order[1]])
        alerts = self._resume(best, c, t_ref)
        if margin < cfg.reid_evidence:
            ids = sorted(s.track_id for s in inside)
            alerts.append(Alert(
                t=t_ref, kind="identity_ambiguous",
                message=(f"person coming out of a blind area could be any of tracks "
                         f"{', '.join(map(str, ids))} (body-size evidence {margin:.1f} < "
                         f"{cfg.reid_evidence:.1f}); resumed as track {best.track_id}"),
                subject=",".join(map(str, ids)),
            ))
        return alerts

    def _resume(self, s: _TrackState, c: _Candidate, t_ref: float) -> list[Alert]:
        """Continue lost track ``s`` with candidate ``c``'s observations (same track_id)."""
        cfg = self.config
        alerts: list[Alert] = []
        if s.lost_alerted:
            x, y = c.first_hip if c.first_hip is not None else c.hip
            alerts.append(
                Alert(
                    t=t_ref,
                    kind="identity_recovered",
                    message=(
                        f"track {s.track_id} resumed at ({x:.2f}, {y:.2f}) m after "
                        f"{c.hist_t[0] - s.t_last:.1f} s unseen"
                    ),
                    subject=str(s.track_id),
                )
            )
        for t, Xc, Sc in zip(c.hist_t, c.hist_X, c.hist_S, strict=True):
            if t > s.t_last:
                s.hist.append(t, Xc, Sc)
                seen = ~np.isnan(Xc[:, 0])
                s.joint_t = np.where(seen, t, s.joint_t)
        s.X = c.X.copy()
        s.V = _candidate_velocity(c)
        s.t_last = c.t_last
        s.anchor_t, s.anchor_xy = c.t_last, s.hip
        s.lost_alerted = False
        s.hidden = False
        s.blind = -1
        del cfg
        return alerts

    def _birth(self, c: _Candidate, gate_id: str) -> None:
        s = _TrackState(
            track_id=self._next_track,
            born_at=gate_id,
            X=c.X.copy(),
            V=_candidate_velocity(c),
            t_last=c.t_last,
            joint_t=np.where(
                np.any([~np.isnan(x[:, 0]) for x in c.hist_X], axis=0), c.t_last, -np.inf
            ),
        )
        for t, Xc, Sc in zip(c.hist_t, c.hist_X, c.hist_S, strict=True):
            s.hist.append(t, Xc, Sc)
        s.anchor_t, s.anchor_xy = c.t_last, s.hip
        self._next_track += 1
        self._tracks.append(s)
        self._open.append(s)

    def _gate_at(self, gates: list[Gate], xy: np.ndarray) -> Gate | None:
        m = self.config.gate_margin_m
        for g in gates:
            if g.area.contains_xy(float(xy[0]), float(xy[1]), margin=m):
                return g
        return None

    # ---- endings --------------------------------------------------------------------------

    def _timeouts(self, t_ref: float) -> list[Alert]:
        """Exit endings, hidden tracks, identity_lost alerts and final endings."""
        alerts: list[Alert] = []
        cfg = self.config
        active = self._open
        seen_now = [s for s in active if s.t_last >= t_ref]
        seen_hips = np.array([s.hip for s in seen_now]) if seen_now else np.zeros((0, 2))
        for s in active:
            if s.t_last >= t_ref:
                s.anchor_t, s.anchor_xy, s.hidden, s.blind = t_ref, s.hip, False, -1
                continue
            unseen = t_ref - s.t_last
            if unseen <= min(cfg.exit_timeout_s, cfg.lost_timeout_s):
                continue
            gate = self._gate_at(self._exits, s.hip)
            if gate is not None:
                s.ended, s.ended_at = True, gate.id
                continue
            if s.blind < 0:
                s.blind = self._blind_at(s.anchor_xy)
            if s.blind >= 0:  # went into a blind area: found again at its edge, for a long time
                lost_for = t_ref - s.anchor_t
                if lost_for > cfg.blind_stay_s:
                    s.ended = True
                if lost_for <= cfg.lost_timeout_s or s.lost_alerted:
                    continue
                s.lost_alerted = True
                x, y = s.anchor_xy
                alerts.append(Alert(
                    t=t_ref, kind="identity_lost",
                    message=(f"track {s.track_id} went into blind area "
                             f"{self._store.blind_areas[s.blind].id} at ({x:.2f}, {y:.2f}) m"),
                    subject=str(s.track_id),
                ))
                continue
            # Vanished right where someone else is seen: hidden by them (or standing so close
            # that the detector merges the two), not lost, as long as they stay there.
            if (
                unseen <= cfg.max_hidden_s
                and seen_hips.shape[0]
                and np.linalg.norm(seen_hips - s.anchor_xy, axis=1).min() <= cfg.occlusion_radius_m
            ):
                s.anchor_t, s.hidden = t_ref, True
                continue
            lost_for = t_ref - s.anchor_t
            if lost_for > cfg.recovery_window_s:
                s.ended = True
            if lost_for <= cfg.lost_timeout_s or s.lost_alerted:
                continue
            s.lost_alerted = True
            x, y = s.hip
            alerts.append(
                Alert(
                    t=t_ref,
                    kind="identity_lost",
                    message=(
                        f"track {s.track_id} unseen for {unseen:.1f} s, last at "
                        f"({x:.2f}, {y:.2f}) m away from any exit"
                    ),
                    subject=str(s.track_id),
                )
            )
        if any(s.ended for s in active):
            self._open = [s for s in active if not s.ended]
        return alerts


def _swap_people(a: _TrackState, b: _TrackState, t0: float) -> None:
    """Exchange the people two tracks follow from ``t0`` on: kinematic state and samples.

    Identity (id, gate, body signature) stays. The swapped samples go to new buffers, so
    tracks handed out earlier keep their content; :attr:`Tracker.tracks` gives the fix.
    """
    for name in ("X", "V", "t_last", "joint_t", "anchor_t", "anchor_xy", "hidden"):
        va, vb = getattr(a, name), getattr(b, name)
        setattr(a, name, vb)
        setattr(b, name, va)
    ha, hb = a.hist, b.hist
    ka = int(np.searchsorted(ha.t[: ha.n], t0))
    kb = int(np.searchsorted(hb.t[: hb.n], t0))
    a.hist = ha.spliced(ka, hb, kb)
    b.hist = hb.spliced(kb, ha, ka)
    a.cache = b.cache = None


def _candidate_velocity(c: _Candidate) -> np.ndarray:
    """Body velocity (all joints alike, on the floor) from a candidate's first and last hips."""
    V = np.zeros((N_JOINTS, 3))
    ts = c.hist_t
    if len(ts) >= 2 and ts[-1] > ts[0]:
        h0 = _skeleton_hip(c.hist_X[0])
        h1 = _skeleton_hip(c.hist_X[-1])
        if h0 is not None and h1 is not None:
            V[:, :2] = (h1 - h0) / (ts[-1] - ts[0])
    return V
