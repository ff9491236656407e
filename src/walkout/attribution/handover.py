"""Hand-overs: two shoppers' hands meeting away from every shelf.

Cameras see skeletons, not items, so a hand-over is known only as a meeting of wrists of two
different sessions, held for a moment, with both hands clear of every plate (at a shelf, hands
near each other are just two people reaching). What happens to the charge is store policy
(see :class:`HandOverPolicy`); the meeting itself is always reported, because it is the
evidence a dispute ("I gave it to him") is settled with.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from walkout.attribution.hands import box_distance
from walkout.events import L_HIP, R_HIP, WRISTS, Track


class HandOverPolicy(StrEnum):
    """Who pays for an item handed to somebody with another payer.

    ``taker`` (default): the shopper who took it off the shelf, as the weight and hand evidence
    say; the hand-over is recorded and alerted, no cart changes. Within a group nothing changes
    either way: the group's payer pays for everything its members take.
    ``receiver``: the receiver; the giver's most recent item still held moves to the receiver's
    cart (correcting ledger lines) and both receipts are marked for review, since which item
    passed is inferred, not seen.
    """

    TAKER = "taker"
    RECEIVER = "receiver"


@dataclass(frozen=True, slots=True)
class HandMeeting:
    t: float  # middle of the meeting
    sessions: tuple[str, str]
    distance_m: float  # closest wrist-to-wrist distance


def find_meetings(
    tracks: Mapping[str, Sequence[Track]],
    boxes: np.ndarray,
    t0: float,
    t1: float,
    meet_m: float = 0.12,
    min_s: float = 0.4,
    shelf_clear_m: float = 0.3,
    near_m: float = 1.5,
) -> list[HandMeeting]:
    """Meetings within [t0, t1] between different sessions' tracks (session → its tracks)."""
    windows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for sid, trs in tracks.items():
        ts, js = [], []
        for tr in trs:
            t, joints = tr.window(t0, t1)
            if len(t):
                ts.append(t)
                js.append(joints)
        if ts:
            windows[sid] = (np.concatenate(ts), np.concatenate(js))
    out = []
    sids = sorted(windows)
    # Where each session's hips were over the window (a box on the floor): two sessions whose
    # boxes are farther apart than near_m never came close, and are not compared sample by
    # sample (all pairs of a full store are a thousand pairs, nearly all far apart).
    extent = {sid: _hip_extent(windows[sid][1]) for sid in sids}
    for i, a in enumerate(sids):
        ta, ja = windows[a]
        for b in sids[i + 1:]:
            if _apart(extent[a], extent[b], near_m):
                continue
            tb, jb = windows[b]
            m = _meeting(ta, ja, tb, jb, boxes, meet_m, min_s, shelf_clear_m, near_m)
            if m is not None:
                out.append(HandMeeting(m[0], (a, b), m[1]))
    return out


def _hips(joints: np.ndarray) -> np.ndarray:
    """Floor position of the hip centre of each sample ``(n, 2)`` (NaN: no hip seen)."""
    with warnings.catch_warnings():  # a hip unseen in a frame: that frame is not close
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(joints[:, [L_HIP, R_HIP], :2], 1)


def _hip_extent(joints: np.ndarray) -> np.ndarray | None:
    """``[xmin, ymin, xmax, ymax]`` of the hip centres over the samples; None: none seen."""
    h = _hips(joints)
    h = h[~np.isnan(h).any(axis=1)]
    return np.concatenate([h.min(axis=0), h.max(axis=0)]) if len(h) else None


def _apart(a: np.ndarray | None, b: np.ndarray | None, near_m: float) -> bool:
    """Whether no hip of extent ``a`` came within ``near_m`` of one of ``b``."""
    if a is None or b is None:
        return True
    gap = np.maximum(np.maximum(a[:2] - b[2:], b[:2] - a[2:]), 0.0)
    return float(np.hypot(gap[0], gap[1])) >= near_m


def _meeting(
    ta: np.ndarray, ja: np.ndarray, tb: np.ndarray, jb: np.ndarray, boxes: np.ndarray,
    meet_m: float, min_s: float, shelf_clear_m: float, near_m: float,
) -> tuple[float, float] | None:
    # b's samples at a's times (nearest within 1/20 s)
    k = np.clip(np.searchsorted(tb, ta), 0, len(tb) - 1)
    k0 = np.clip(k - 1, 0, len(tb) - 1)
    k = np.where(np.abs(tb[k0] - ta) < np.abs(tb[k] - ta), k0, k)
    ok = np.abs(tb[k] - ta) <= 0.05
    if not ok.any():
        return None
    ta, ja, jb = ta[ok], ja[ok], jb[k[ok]]
    hips = np.linalg.norm(_hips(ja) - _hips(jb), axis=1)
    close = hips < near_m
    if not close.any():
        return None
    ta, ja, jb = ta[close], ja[close], jb[close]
    wa, wb = ja[:, list(WRISTS)], jb[:, list(WRISTS)]  # (n, 2, 3)
    d = np.linalg.norm(wa[:, :, None] - wb[:, None, :], axis=-1).reshape(len(ta), 4)
    with np.errstate(invalid="ignore"):
        best = np.nanmin(np.where(np.isfinite(d), d, np.inf), axis=1)
    meet = best < meet_m
    if not meet.any():
        return None
    # both hands clear of every shelf (reaching side by side at a shelf is not a hand-over)
    pts = np.concatenate([wa[meet], wb[meet]], axis=1).reshape(-1, 3)
    clear = box_distance(np.nan_to_num(pts, nan=1e6), boxes).reshape(-1, 4).min(axis=1)
    idx = np.flatnonzero(meet)[clear > shelf_clear_m]
    if idx.size == 0:
        return None
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 2) + 1)
    run = max(runs, key=len)
    if ta[run[-1]] - ta[run[0]] < min_s:
        return None
    return float(0.5 * (ta[run[0]] + ta[run[-1]])), float(best[run].min())
