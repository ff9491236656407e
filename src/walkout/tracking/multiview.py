"""Per-frame multi-view multi-person 3D pose reconstruction and tracking from 2D candidates.

Input per frame: for each calibrated camera, OpenPose BODY25 joint candidates (pixels + score)
and the part-affinity (PAF) score of every candidate pair of each BODY25 limb. Output: 3D BODY25
poses with stable ids. One frame is processed as follows:

1. **2D assembly per view** (:func:`assemble_view`): OpenPose's greedy bipartite parsing. For
   every limb in BODY25 order the candidate pairs are taken by decreasing PAF score, each
   candidate at most once per limb, and grown/merged into 2D skeletons. The candidate sets are
   tiny (1-5 per joint), so this runs on Python lists, which beats numpy's per-call overhead.
2. **Association with the tracks**: every 2D skeleton of every view is compared with each track's
   previous 3D pose projected into that view (mean pixel distance over the joints they share,
   each clipped); a Hungarian assignment per view with a gate gives each track at most one
   skeleton per view. Joints a matched skeleton lacks are then filled, per view, by the nearest
   unclaimed candidate within a small radius of the projected track joint (fragments of a
   person split by occlusion are recovered this way).
3. **New people**: skeletons left unmatched are clustered across views by the symmetric
   epipolar distance of their shared joints (greedy, one skeleton per view per cluster); a
   cluster seen by at least two views that triangulates into a plausible body starts a track.
4. **Triangulation**: each joint of each track from its views at once
   (:func:`walkout.tracking.geometry.robust_triangulate`: confidence-weighted DLT, the worst
   view dropped while its reprojection error exceeds a threshold). A joint seen in a single
   view is placed on that view's ray nearest its previous position; a joint seen nowhere keeps
   its previous position moved with the body. Joints that would make a bone implausibly long
   are treated as unseen.
5. **Tracks** keep their id while matched; a track unseen for a few frames is dropped.

All geometry is in normalised camera coordinates (``K^-1 x``; the cameras have no distortion).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from walkout.tracking.geometry import robust_triangulate

N_J = 25
# OpenPose BODY25 part-affinity pairs, in output order (same as the Shelf reader's).
PAFS: tuple[tuple[int, int], ...] = (
    (1, 8), (9, 10), (10, 11), (8, 9), (8, 12), (12, 13), (13, 14), (1, 2), (2, 3),
    (3, 4), (2, 17), (1, 5), (5, 6), (6, 7), (5, 18), (1, 0), (0, 15), (0, 16), (15, 17),
    (16, 18), (14, 19), (19, 20), (14, 21), (11, 22), (22, 23), (11, 24),
)  # fmt: skip
# Kinematic tree of BODY25 used to bound bone lengths (child, parent, max length m).
_BONES: tuple[tuple[int, int, float], ...] = (
    (8, 1, 0.80), (9, 8, 0.25), (12, 8, 0.25), (10, 9, 0.65), (13, 12, 0.65), (11, 10, 0.65),
    (14, 13, 0.65), (2, 1, 0.35), (5, 1, 0.35), (3, 2, 0.50), (6, 5, 0.50), (4, 3, 0.45),
    (7, 6, 0.45), (0, 1, 0.40), (15, 0, 0.15), (16, 0, 0.15), (17, 0, 0.25), (18, 0, 0.25),
    (19, 14, 0.35), (20, 14, 0.35), (21, 14, 0.25), (22, 11, 0.35), (23, 11, 0.35),
    (24, 11, 0.25),
)  # fmt: skip
_BONE_C = np.array([c for c, _, _ in _BONES])
_BONE_P = np.array([p for _, p, _ in _BONES])
_BONE_MAX = np.array([m for _, _, m in _BONES])
# Joints that carry a track (torso): used for association weights and track validity.
_CORE = np.array([1, 2, 5, 8, 9, 12])
_JIDX = np.arange(N_J)
# One view of one frame: 25 arrays (n_j, 3) of pixel x, y, score; 26 PAF score matrices.
ViewInput = tuple[Sequence[np.ndarray], Sequence[np.ndarray]]


@dataclass(frozen=True, slots=True)
class MultiviewConfig:
    """Thresholds. Pixel values are at the Shelf cameras' scale (f ≈ 1100 px, 1032x776)."""

    min_paf: float = 0.05  # PAF score below which a candidate pair is never connected
    min_joints_2d: int = 4  # a 2D skeleton with fewer joints is ignored
    track_gate_px: float = 60.0  # mean joint distance gate of skeleton ↔ track matching
    track_clip_px: float = 150.0  # per-joint distance clip in that mean
    fill_radius_px: float = 40.0  # radius of the per-joint fill from projected track joints
    epipolar_gate_px: float = 20.0  # mean symmetric epipolar distance to join a new cluster
    outlier_px: float = 25.0  # triangulation: view dropped above this reprojection error
    noise_px: float = 3.0
    min_score: float = 0.05  # candidates below this detection score are ignored
    max_missed: int = 5  # frames a track survives unseen
    min_new_views: int = 2  # views needed to start a track
    min_new_sep_m: float = 0.4  # a new track's pelvis must be this far from existing ones


@dataclass(frozen=True, slots=True)
class Camera:
    """A pinhole camera as the tracker needs it."""

    K: np.ndarray  # (3, 3)
    R: np.ndarray  # (3, 3) world -> camera
    t: np.ndarray  # (3,)

    @property
    def f(self) -> float:
        return float((self.K[0, 0] + self.K[1, 1]) / 2.0)


@dataclass(slots=True)
class Track:
    """A tracked person: ``X`` ``(25, 3)`` BODY25 joints (NaN never seen), ``seen`` per joint."""

    id: int
    X: np.ndarray
    seen: np.ndarray  # (25,) bool: triangulated (or ray-placed) this frame
    missed: int = 0
    age: int = 0


@dataclass(frozen=True, slots=True)
class Pose3D:
    """One person of one frame: BODY25 joints ``(25, 3)`` (NaN unknown) and per-joint flags."""

    id: int
    joints: np.ndarray
    observed: np.ndarray  # (25,) bool


@dataclass(slots=True)
class _View:
    """Per-frame candidates of one view, flattened: candidate ``c`` of joint ``j`` is row
    ``off[j] + c`` of ``xn`` (normalised) / ``px`` / ``score``."""

    off: list[int]
    cnt: list[int]
    xn: np.ndarray  # (N, 2)
    score: np.ndarray  # (N,)
    joint: np.ndarray  # (N,) BODY25 joint of each candidate
    people: list[list[int]]  # 2D skeletons: 25 flat candidate indices (-1 absent)
    claimed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def assemble_view(
    counts: Sequence[int],
    scores: Sequence[float],
    off: Sequence[int],
    pafs: Sequence[list[list[float]]],
    min_paf: float,
    min_score: float,
) -> list[list[int]]:
    """OpenPose greedy parsing of one view into 2D skeletons (lists of 25 flat indices)."""
    owner = [-1] * len(scores)  # person index of each flat candidate
    people: list[list[int]] = []
    for k, (a, b) in enumerate(PAFS):
        na, nb = counts[a], counts[b]
        if na == 0 or nb == 0:
            continue
        M = pafs[k]
        oa, ob = off[a], off[b]
        pairs = [
            (s, i, j)
            for i, row in enumerate(M)
            if scores[oa + i] >= min_score
            for j, s in enumerate(row)
            if s > min_paf and scores[ob + j] >= min_score
        ]
        if not pairs:
            continue
        pairs.sort(reverse=True)
        used_a = 0
        used_b = 0
        for _, i, j in pairs:
            if used_a >> i & 1 or used_b >> j & 1:
                continue
            used_a |= 1 << i
            used_b |= 1 << j
            ca, cb = oa + i, ob + j
            pa, pb = owner[ca], owner[cb]
            if pa < 0 and pb < 0:
                p = [-1] * N_J
                p[a] = ca
                p[b] = cb
                owner[ca] = owner[cb] = len(people)
                people.append(p)
            elif pa >= 0 and pb < 0:
                if people[pa][b] < 0:
                    people[pa][b] = cb
                    owner[cb] = pa
            elif pb >= 0 and pa < 0:
                if people[pb][a] < 0:
                    people[pb][a] = ca
                    owner[ca] = pb
            elif pa != pb:
                P, Q = people[pa], people[pb]
                if all(x < 0 or y < 0 for x, y in zip(P, Q, strict=True)):
                    for jj in range(N_J):
                        if Q[jj] >= 0:
                            P[jj] = Q[jj]
                            owner[Q[jj]] = pa
                    people[pb] = [-1] * N_J
    return [p for p in people if any(x >= 0 for x in p)]


class MultiviewPoseTracker:
    """Online multi-person 3D pose tracker over calibrated views (see the module docstring)."""

    def __init__(self, cameras: Sequence[Camera], config: MultiviewConfig | None = None) -> None:
        self.cfg = config or MultiviewConfig()
        self.cams = list(cameras)
        V = len(self.cams)
        self.V = V
        self.R = np.stack([c.R for c in self.cams])  # (V, 3, 3)
        self.t = np.stack([c.t for c in self.cams])  # (V, 3)
        self.f = np.array([c.f for c in self.cams])
        self.fx = np.array([c.K[0, 0] for c in self.cams])
        self.fy = np.array([c.K[1, 1] for c in self.cams])
        self.cx = np.array([c.K[0, 2] for c in self.cams])
        self.cy = np.array([c.K[1, 2] for c in self.cams])
        self.center = -np.einsum("vji,vj->vi", self.R, self.t)
        # Fundamental-like matrices in normalised coordinates (essential matrices), E[v, w]
        # maps a point of view v to its epipolar line in view w.
        self.E = np.zeros((V, V, 3, 3))
        for v in range(V):
            for w in range(V):
                if v == w:
                    continue
                Rvw = self.R[w] @ self.R[v].T
                tvw = self.t[w] - Rvw @ self.t[v]
                tx = np.array([[0, -tvw[2], tvw[1]], [tvw[2], 0, -tvw[0]], [-tvw[1], tvw[0], 0]])
                self.E[v, w] = tx @ Rvw
        self.tracks: list[Track] = []
        self._next_id = 0

    # ---------------------------------------------------------------- per-frame preparation
    def _prepare(self, frame: Sequence[ViewInput]) -> list[_View]:
        cfg = self.cfg
        views = []
        for v, (joints, pafs) in enumerate(frame):
            cnt = [len(j) for j in joints]
            off = [0] * N_J
            s = 0
            for j in range(N_J):
                off[j] = s
                s += cnt[j]
            allc = np.concatenate(joints) if s else np.zeros((0, 3))
            xn = np.empty((s, 2))
            xn[:, 0] = (allc[:, 0] - self.cx[v]) / self.fx[v]
            xn[:, 1] = (allc[:, 1] - self.cy[v]) / self.fy[v]
            score = allc[:, 2]
            people = assemble_view(
                cnt, score.tolist(), off, [p.tolist() for p in pafs], cfg.min_paf, cfg.min_score
            )
            people = [p for p in people if sum(x >= 0 for x in p) >= cfg.min_joints_2d]
            views.append(
                _View(off=off, cnt=cnt, xn=xn, score=score, joint=np.repeat(_JIDX, cnt),
                      people=people, claimed=np.zeros(s, bool))
            )  # fmt: skip
        return views

    def _skeleton_arrays(self, view: _View) -> tuple[np.ndarray, np.ndarray]:
        """``(n, 25, 2)`` normalised joints (NaN absent) and ``(n, 25)`` scores of its skeletons."""
        n = len(view.people)
        idx = np.array(view.people, dtype=np.int64).reshape(n, N_J)
        ok = idx >= 0
        safe = np.where(ok, idx, 0)
        xy = np.where(ok[..., None], view.xn[safe] if len(view.xn) else 0.0, np.nan)
        sc = np.where(ok, view.score[safe] if len(view.score) else 0.0, 0.0)
        return xy, sc

    # ---------------------------------------------------------------- main step
    def step(self, frame: Sequence[ViewInput]) -> list[Pose3D]:
        """Process one frame: ``frame[v] = (joints, pafs)`` of view ``v`` (BODY25, pixels)."""
        cfg = self.cfg
        V = self.V
        views = self._prepare(frame)
        skels = [self._skeleton_arrays(vw) for vw in views]
        T = len(self.tracks)
        # obs[t, v, j] flat candidate index used for track t (-1 none)
        obs = np.full((T, V, N_J), -1, dtype=np.int64)
        matched_skel = [np.zeros(len(vw.people), bool) for vw in views]
        if T:
            X = np.stack([tr.X for tr in self.tracks])  # (T, 25, 3)
            proj = self._project(X)  # (T, V, 25, 2) normalised
            for v, vw in enumerate(views):
                xy, _ = skels[v]
                if len(xy) == 0:
                    continue
                d = np.linalg.norm(proj[:, v, None] - xy[None], axis=-1) * self.f[v]  # (T,n,25)
                valid = np.isfinite(d)
                dc = np.where(valid, np.minimum(d, cfg.track_clip_px), 0.0)
                nv = valid.sum(-1)
                cost = dc.sum(-1) / np.maximum(nv, 1)
                cost = np.where(nv >= 2, cost, 1e6)
                rows, cols = linear_sum_assignment(cost)
                for r, c in zip(rows, cols, strict=True):
                    if cost[r, c] < cfg.track_gate_px:
                        obs[r, v] = vw.people[c]
                        matched_skel[v][c] = True
                        vw.claimed[np.array([x for x in vw.people[c] if x >= 0])] = True
            self._fill(obs, views, proj)
        # new people from unmatched skeletons
        new_obs = self._cluster_new(views, skels, matched_skel)
        if new_obs is not None and len(new_obs):
            obs = np.concatenate([obs, new_obs]) if T else new_obs
        if len(obs) == 0:
            self._age()
            return []
        Xn, seen = self._triangulate(obs, views)
        # update tracks
        out = []
        for i in range(len(obs)):
            if i < T:
                tr = self.tracks[i]
                if seen[i][_CORE].sum() >= 2:
                    tr.X = Xn[i]
                    tr.seen = seen[i]
                    tr.missed = 0
                else:
                    tr.missed += 1
                    tr.seen = np.zeros(N_J, bool)
                tr.age += 1
            else:
                if seen[i][_CORE].sum() < 4 or not self._separate(Xn[i]):
                    continue
                tr = Track(id=self._next_id, X=Xn[i], seen=seen[i])
                self._next_id += 1
                self.tracks.append(tr)
        self.tracks = [tr for tr in self.tracks if tr.missed <= cfg.max_missed]
        for tr in self.tracks:
            if tr.missed == 0:
                out.append(Pose3D(id=tr.id, joints=tr.X.copy(), observed=tr.seen.copy()))
        return out

    def _age(self) -> None:
        for tr in self.tracks:
            tr.missed += 1
        self.tracks = [tr for tr in self.tracks if tr.missed <= self.cfg.max_missed]

    def _separate(self, X: np.ndarray) -> bool:
        c = np.nanmean(X[_CORE], axis=0)
        for tr in self.tracks:
            if tr.missed:
                continue
            d = np.linalg.norm(np.nanmean(tr.X[_CORE], axis=0) - c)
            if d < self.cfg.min_new_sep_m:
                return False
        return True

    # ---------------------------------------------------------------- geometry helpers
    def _project(self, X: np.ndarray) -> np.ndarray:
        """``(T, 25, 3)`` world → ``(T, V, 25, 2)`` normalised (NaN where behind/unknown)."""
        Xc = np.einsum("vij,tnj->tvni", self.R, X) + self.t[None, :, None, :]
        z = Xc[..., 2:3]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = Xc[..., :2] / z
        return np.where(z > 0.1, xy, np.nan)

    def _fill(self, obs: np.ndarray, views: list[_View], proj: np.ndarray) -> None:
        """Joints a track lacks in a view: nearest unclaimed candidate near its projection."""
        cfg = self.cfg
        for v, vw in enumerate(views):
            if len(vw.xn) == 0:
                continue
            miss = obs[:, v, :] < 0  # (T, 25)
            free = ~vw.claimed & (vw.score >= cfg.min_score)
            ok = miss[:, vw.joint] & free[None]  # (T, N)
            if not ok.any():
                continue
            ti, ci = np.nonzero(ok)
            d = np.linalg.norm(proj[ti, v, vw.joint[ci]] - vw.xn[ci], axis=-1) * self.f[v]
            near = d < cfg.fill_radius_px  # NaN (unknown projection) compares False
            if not near.any():
                continue
            ti, ci, d = ti[near], ci[near], d[near]
            for k in np.argsort(d).tolist():
                c = ci[k]
                j = vw.joint[c]
                if vw.claimed[c] or obs[ti[k], v, j] >= 0:
                    continue
                obs[ti[k], v, j] = c
                vw.claimed[c] = True

    def _cluster_new(
        self,
        views: list[_View],
        skels: list[tuple[np.ndarray, np.ndarray]],
        matched: list[np.ndarray],
    ) -> np.ndarray | None:
        """Greedy cross-view clustering of unmatched skeletons; ``(C, V, 25)`` observations."""
        cfg = self.cfg
        V = self.V
        items = []  # (view, skeleton index)
        for v, vw in enumerate(views):
            for s in range(len(vw.people)):
                if matched[v][s]:
                    continue
                idx = [x for x in vw.people[s] if x >= 0]
                # skeletons made mostly of candidates already used by tracks are fragments
                if vw.claimed[np.array(idx)].mean() > 0.5:
                    continue
                items.append((v, s))
        if len(items) < cfg.min_new_views:
            return None
        n = len(items)
        cost = np.full((n, n), np.inf)
        for a in range(n):
            va, sa = items[a]
            xa = skels[va][0][sa]  # (25, 2)
            for b in range(a + 1, n):
                vb, sb = items[b]
                if va == vb:
                    continue
                xb = skels[vb][0][sb]
                cost[a, b] = cost[b, a] = self._epi_dist(va, xa, vb, xb)
        # greedy agglomeration: best pairs first, clusters keep one skeleton per view
        cl = list(range(n))
        members: dict[int, list[int]] = {i: [i] for i in range(n)}
        order = np.argsort(cost, axis=None)
        for flat in order:
            a, b = divmod(int(flat), n)
            if a >= b:
                continue
            if not cost[a, b] < cfg.epipolar_gate_px:
                break
            ca, cb = cl[a], cl[b]
            if ca == cb:
                continue
            va = {items[i][0] for i in members[ca]}
            vb = {items[i][0] for i in members[cb]}
            if va & vb:
                continue
            # every cross pair must be consistent
            if max(cost[i, k] for i in members[ca] for k in members[cb]) > 2 * cfg.epipolar_gate_px:
                continue
            for i in members[cb]:
                cl[i] = ca
            members[ca].extend(members.pop(cb))
        out = []
        for mem in members.values():
            if len(mem) < cfg.min_new_views:
                continue
            o = np.full((V, N_J), -1, dtype=np.int64)
            for i in mem:
                v, s = items[i]
                o[v] = views[v].people[s]
            out.append(o)
        return np.stack(out) if out else None

    def _epi_dist(self, va: int, xa: np.ndarray, vb: int, xb: np.ndarray) -> float:
        """Mean symmetric epipolar distance (px) over the joints both skeletons have."""
        ok = np.isfinite(xa[:, 0]) & np.isfinite(xb[:, 0])
        if ok.sum() < 3:
            return np.inf
        pa = np.concatenate([xa[ok], np.ones((ok.sum(), 1))], 1)
        pb = np.concatenate([xb[ok], np.ones((ok.sum(), 1))], 1)
        la = pa @ self.E[va, vb].T  # lines in view b
        lb = pb @ self.E[vb, va].T  # lines in view a
        da = np.abs((la * pb).sum(1)) / np.linalg.norm(la[:, :2], axis=1) * self.f[vb]
        db = np.abs((lb * pa).sum(1)) / np.linalg.norm(lb[:, :2], axis=1) * self.f[va]
        return float(np.mean(0.5 * (da + db)))

    def _triangulate(self, obs: np.ndarray, views: list[_View]) -> tuple[np.ndarray, np.ndarray]:
        """Robust triangulation of ``obs`` ``(P, V, 25)`` → ``(P, 25, 3)`` and seen ``(P, 25)``."""
        cfg = self.cfg
        P, V, _ = obs.shape
        xn = np.zeros((P, V, N_J, 2))
        conf = np.zeros((P, V, N_J))
        for v, vw in enumerate(views):
            o = obs[:, v]
            ok = o >= 0
            if ok.any():
                xn[:, v][ok] = vw.xn[o[ok]]
                conf[:, v][ok] = vw.score[o[ok]]
        N = P * N_J
        xn_f = xn.transpose(0, 2, 1, 3).reshape(N, V, 2)
        cf = conf.transpose(0, 2, 1).reshape(N, V)
        R = np.broadcast_to(self.R, (N, V, 3, 3))
        t = np.broadcast_to(self.t, (N, V, 3))
        f = np.broadcast_to(self.f, (N, V))
        tri = robust_triangulate(xn_f, cf, R, t, f, cfg.outlier_px, cfg.noise_px)
        X = tri.X.reshape(P, N_J, 3)
        seen = np.isfinite(X[..., 0])
        T = len(self.tracks)
        prev = np.full((P, N_J, 3), np.nan)
        if T:
            prev[:T] = np.stack([tr.X for tr in self.tracks])
        # single-view joints with a previous position: nearest point on the ray
        nview = (cf > 0).sum(1).reshape(P, N_J)
        one = ~seen & (nview >= 1) & np.isfinite(prev[..., 0])
        if one.any():
            pi, ji = np.nonzero(one)
            c = conf[pi, :, ji]  # (k, V)
            v = np.argmax(c, axis=1)
            x = xn[pi, v, ji]
            d = np.einsum("kji,kj->ki", self.R[v], np.concatenate([x, np.ones((len(v), 1))], 1))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            C = self.center[v]
            s = np.einsum("ki,ki->k", prev[pi, ji] - C, d)
            X[pi, ji] = C + s[:, None] * d
            seen[pi, ji] = True
        X = self._check_bones(X, seen)
        seen = np.isfinite(X[..., 0]) & seen
        # unseen joints: previous position moved with the body's observed joints
        miss = ~seen & np.isfinite(prev[..., 0])
        if miss.any():
            both = seen & np.isfinite(prev[..., 0])
            shift = np.zeros((P, 3))
            for p in np.flatnonzero(miss.any(1)):
                if both[p].any():
                    shift[p] = np.mean(X[p, both[p]] - prev[p, both[p]], axis=0)
            X = np.where(miss[..., None], prev + shift[:, None], X)
        return X, seen

    def _check_bones(self, X: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """Drop (set NaN) child joints whose bone to the parent is implausibly long."""
        L = np.linalg.norm(X[:, _BONE_C] - X[:, _BONE_P], axis=-1)  # (P, nb)
        bad = L > _BONE_MAX
        if bad.any():
            X = X.copy()
            pi, bi = np.nonzero(bad)
            X[pi, _BONE_C[bi]] = np.nan
        return X


# ---------------------------------------------------------------- BODY25 → Shelf/Campus 15 joints
# Body joints: gt order 0 R-ankle, 1 R-knee, 2 R-hip, 3 L-hip, 4 L-knee, 5 L-ankle, 6 R-wrist,
# 7 R-elbow, 8 R-shoulder, 9 L-shoulder, 10 L-elbow, 11 L-wrist (12 neck, 13 head top, 14 pelvis
# are derived).
BODY25_TO_15 = np.array([11, 10, 9, 12, 13, 14, 4, 3, 2, 5, 6, 7])
# Anthropometric head offsets (adult averages, e.g. ANSUR II): the top of the head (vertex) is
# ~0.13 m above the ear openings (tragion) along the head's vertical axis; the bottom of the
# head (the chin, menton: head height vertex-menton ~0.23 m) ~0.10 m below them.
HEAD_TOP_ABOVE_EARS_M = 0.13
HEAD_BOTTOM_BELOW_EARS_M = 0.10


def head_anatomical(
    neck_base: np.ndarray, ear_centre: np.ndarray, up: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Bottom and top of the head from the ear centre along the head's vertical axis.

    ``up`` (``(..., 3)`` unit vectors, NaN where unknown) is the head's own vertical axis
    (:func:`head_up`); where it is missing the axis from the neck base to the ear centre is
    used. The top of the head lies :data:`HEAD_TOP_ABOVE_EARS_M` above the ears, the bottom
    :data:`HEAD_BOTTOM_BELOW_EARS_M` below (anthropometric averages, not fitted to a benchmark).
    """
    axis = ear_centre - neck_base
    axis = axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-9)
    if up is not None:
        axis = np.where(np.isfinite(up[..., :1]), up, axis)
    return (
        ear_centre - HEAD_BOTTOM_BELOW_EARS_M * axis,
        ear_centre + HEAD_TOP_ABOVE_EARS_M * axis,
    )


def head_up(r_ear: np.ndarray, l_ear: np.ndarray, nose: np.ndarray) -> np.ndarray:
    """The head's vertical axis from the face keypoints (``(..., 3)``; NaN where one is missing).

    The ears give the head's left-right axis and the nose its forward direction, so the axis
    perpendicular to both follows the head when it tilts or nods (looking down at a shelf)
    while the neck stays upright, which the neck-to-ears direction misses.
    """
    lat = r_ear - l_ear
    lat = lat / np.maximum(np.linalg.norm(lat, axis=-1, keepdims=True), 1e-9)
    fwd = nose - 0.5 * (r_ear + l_ear)
    fwd = fwd - np.sum(fwd * lat, axis=-1, keepdims=True) * lat
    fwd = fwd / np.maximum(np.linalg.norm(fwd, axis=-1, keepdims=True), 1e-9)
    return np.cross(lat, fwd)  # right-handed world: (towards the right ear) x forward = up


def head_published(
    r_shoulder: np.ndarray,
    l_shoulder: np.ndarray,
    neck: np.ndarray,
    pelvis: np.ndarray,
    ear_centre: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The head rule the reference (skel.txt) method publishes for its Shelf evaluation.

    Bottom of the head halfway between the shoulder centre and the ear centre; top 0.125 m
    along the facing direction ((neck - pelvis) x (right - left shoulder)) and 0.145 m up (world
    z) from there. Its offsets were chosen by that method's authors, presumably on Shelf itself,
    so it is only used here to compare body tracking under the same head convention.
    """
    face = np.cross(neck - pelvis, r_shoulder - l_shoulder)
    face = face / np.maximum(np.linalg.norm(face, axis=-1, keepdims=True), 1e-9)
    bottom = 0.5 * (r_shoulder + l_shoulder) + 0.5 * (ear_centre - 0.5 * (r_shoulder + l_shoulder))
    return bottom, bottom + 0.125 * face + np.array([0.0, 0.0, 0.145])


def body25_to_shelf15(X: np.ndarray, head: str = "anatomical") -> np.ndarray:
    """``(..., 25, 3)`` BODY25 joints → ``(..., 15, 3)`` in the Shelf/Campus gt order.

    Pelvis is the mid-point of the hips. The ear centre comes from whichever ears are known,
    else the eyes moved back 0.08 m along the facing direction, else the nose moved back
    0.10 m. ``head="anatomical"`` (default) derives the head joints with
    :func:`head_anatomical` from the ear centre along the head's own axis (:func:`head_up`:
    both ears and the nose), else along the direction from the BODY25 neck (base of the neck)
    to the ear centre; ``head="published"`` uses :func:`head_published` (comparison only).
    """
    X = np.asarray(X, dtype=np.float64)
    out = np.empty((*X.shape[:-2], 15, 3))
    out[..., :12, :] = X[..., BODY25_TO_15, :]
    out[..., 14, :] = 0.5 * (X[..., 9, :] + X[..., 12, :])
    neck = X[..., 1, :]
    # facing direction = up x (left → right shoulder): forward in a right-handed world
    face = np.cross(neck - out[..., 14, :], X[..., 2, :] - X[..., 5, :])
    face /= np.maximum(np.linalg.norm(face, axis=-1, keepdims=True), 1e-9)
    ears = _mean2(X[..., 17, :], X[..., 18, :])
    eyes = _mean2(X[..., 15, :], X[..., 16, :]) - 0.08 * face
    nose = X[..., 0, :] - 0.10 * face
    centre = np.where(np.isfinite(ears), ears, np.where(np.isfinite(eyes), eyes, nose))
    if head == "anatomical":
        up = head_up(X[..., 17, :], X[..., 18, :], X[..., 0, :])
        bottom, top = head_anatomical(neck, centre, up)
    elif head == "published":
        bottom, top = head_published(X[..., 2, :], X[..., 5, :], neck, out[..., 14, :], centre)
    else:
        raise ValueError(f"unknown head rule {head!r}")
    out[..., 12, :] = bottom
    out[..., 13, :] = top
    return out


def _mean2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean of two points where both are known, else whichever is (NaN if neither)."""
    fa = np.isfinite(a[..., :1])
    fb = np.isfinite(b[..., :1])
    return np.where(fa & fb, 0.5 * (a + b), np.where(fa, a, b))
