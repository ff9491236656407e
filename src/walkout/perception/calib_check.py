"""Does a calibration fit the footage? Epipolar consistency of a person seen by several cameras.

A ceiling camera that was moved, or a video filed under the wrong camera id, breaks multi-view
tracking without any error: every view still finds the person, they just never triangulate.
This check needs no surveyed points: at each synced instant the most confident person in two
views gives up to 17 joint correspondences, and a correct pair of calibrations puts each joint
on the epipolar line of its partner. The median Sampson distance (pixels) per camera pair is the
figure: a few pixels when the calibration fits (keypoint noise), tens when it does not.
:func:`best_assignment` also tries every assignment of the store's cameras to the videos, which
tells a mislabelled file (some assignment fits) from moved cameras (none does).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from walkout.events import KeypointFrame
from walkout.store.model import Camera

#: A joint counts as a correspondence when both views give it at least this confidence.
MIN_CONF = 0.35
#: Fewer correspondences than this and a pair is not scored (the views barely overlap).
MIN_PAIRS = 40


def main_person(f: KeypointFrame, min_mean: float = 0.2) -> np.ndarray | None:
    """The most confident person of a frame: the shopper in a one-shopper case."""
    k = f.keypoints
    if not k.shape[0]:
        return None
    s = k[:, :, 2].mean(axis=1)
    i = int(np.argmax(s))
    return k[i] if s[i] >= min_mean else None


def correspondences(a: Sequence[KeypointFrame], b: Sequence[KeypointFrame],
                    min_conf: float = MIN_CONF) -> tuple[np.ndarray, np.ndarray]:
    """Raw-pixel joint pairs of the most confident person in both views at the same instants
    (timestamps matched to 1 ms: the videos are frame-synced)."""
    by_t = {round(f.t, 3): f for f in b}
    pa: list[np.ndarray] = []
    pb: list[np.ndarray] = []
    for f in a:
        g = by_t.get(round(f.t, 3))
        ka = main_person(f)
        kb = None if g is None else main_person(g)
        if ka is None or kb is None:
            continue
        ok = (ka[:, 2] >= min_conf) & (kb[:, 2] >= min_conf)
        pa.append(ka[ok, :2])
        pb.append(kb[ok, :2])
    if not pa:
        return np.empty((0, 2)), np.empty((0, 2))
    return np.concatenate(pa).astype(float), np.concatenate(pb).astype(float)


def _pose(c: Camera) -> tuple[np.ndarray, np.ndarray]:
    r, _ = cv2.Rodrigues(np.asarray(c.pose.rvec, float))
    return r, np.asarray(c.pose.tvec, float)


def epipolar_px(ca: Camera, cb: Camera, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Sampson distance of each pair under the two calibrations, in pixels (lens undistorted,
    scaled by the mean focal length)."""
    na = cv2.undistortPoints(pa.reshape(-1, 1, 2), ca.K_array, ca.dist_array).reshape(-1, 2)
    nb = cv2.undistortPoints(pb.reshape(-1, 1, 2), cb.K_array, cb.dist_array).reshape(-1, 2)
    ra, ta = _pose(ca)
    rb, tb = _pose(cb)
    r = rb @ ra.T
    t = tb - r @ ta
    e = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]]) @ r
    xa, xb = np.c_[na, np.ones(len(na))], np.c_[nb, np.ones(len(nb))]
    ex, etx = xa @ e.T, xb @ e
    num = np.sum(xb * ex, axis=1) ** 2
    den = ex[:, 0] ** 2 + ex[:, 1] ** 2 + etx[:, 0] ** 2 + etx[:, 1] ** 2
    f = (ca.K_array[0, 0] + ca.K_array[1, 1] + cb.K_array[0, 0] + cb.K_array[1, 1]) / 4
    return np.sqrt(num / np.maximum(den, 1e-18)) * f


@dataclass(frozen=True, slots=True)
class PairScore:
    video_a: str
    video_b: str
    camera_a: str
    camera_b: str
    pairs: int
    median_px: float


def score(frames: Mapping[str, Sequence[KeypointFrame]], cameras: Mapping[str, Camera],
          assignment: Mapping[str, str]) -> list[PairScore]:
    """Median epipolar error per overlapping video pair, video ``v`` calibrated as camera
    ``assignment[v]``."""
    out = []
    for va, vb in itertools.combinations(sorted(frames), 2):
        pa, pb = correspondences(frames[va], frames[vb])
        if len(pa) < MIN_PAIRS:
            continue
        ca, cb = assignment[va], assignment[vb]
        d = epipolar_px(cameras[ca], cameras[cb], pa, pb)
        out.append(PairScore(va, vb, ca, cb, len(pa), round(float(np.median(d)), 1)))
    return out


def best_assignment(frames: Mapping[str, Sequence[KeypointFrame]],
                    cameras: Mapping[str, Camera]) -> list[tuple[float, dict[str, str]]]:
    """Every assignment of distinct store cameras to the videos, best first, scored by the mean
    of the pairs' median epipolar errors."""
    videos = sorted(frames)
    corr = {(a, b): correspondences(frames[a], frames[b])
            for a, b in itertools.combinations(videos, 2)}
    corr = {k: v for k, v in corr.items() if len(v[0]) >= MIN_PAIRS}
    cache: dict[tuple[str, str, str, str], float] = {}

    def med(a: str, b: str, ca: str, cb: str) -> float:
        key = (a, b, ca, cb)
        if key not in cache:
            pa, pb = corr[(a, b)]
            cache[key] = float(np.median(epipolar_px(cameras[ca], cameras[cb], pa, pb)))
        return cache[key]

    ranked = []
    for perm in itertools.permutations(sorted(cameras), len(videos)):
        m = dict(zip(videos, perm, strict=True))
        ranked.append((float(np.mean([med(a, b, m[a], m[b]) for a, b in corr])), m))
    ranked.sort(key=lambda r: r[0])
    return ranked
