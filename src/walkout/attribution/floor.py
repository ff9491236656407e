"""Hands to the floor: the one trace an item left on the floor leaves in the sensors.

No plate weighs an item dropped or set down on the floor; the cameras see skeletons, not items.
What they do see is a shopper bending down until a wrist is near the floor, away from every
shelf (near a shelf that is a reach into a low shelf, which the plates see). Done while the
shopper holds items, it may have left one there: the engine opens a review case and asks staff
to look, and keeps the line charged until a reviewer says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from walkout.attribution.hands import box_distance
from walkout.events import WRISTS, Track


@dataclass(frozen=True, slots=True)
class FloorReach:
    """A wrist held near the floor, clear of every shelf."""

    session_id: str
    t_start: float
    t_end: float
    xyz: tuple[float, float, float]  # the lowest wrist position seen


def find_floor_reaches(
    tracks: Mapping[str, Sequence[Track]],
    boxes: np.ndarray,
    t0: float,
    t1: float,
    floor_m: float = 0.25,
    shelf_clear_m: float = 0.5,
    min_s: float = 0.25,
    gap_s: float = 0.3,
) -> list[FloorReach]:
    """Reaches to the floor within [t0, t1] by each session's tracks (session → its tracks).

    A reach is a run of samples with a wrist below ``floor_m`` and at least ``shelf_clear_m``
    from every plate box, lasting ``min_s`` (runs closer than ``gap_s`` are one reach).
    """
    out = []
    for sid in sorted(tracks):
        for tr in tracks[sid]:
            t, joints = tr.window(t0, t1)
            if len(t) == 0:
                continue
            w = joints[:, list(WRISTS)].astype(np.float64)  # (n, 2, 3)
            z = np.where(np.isfinite(w[..., 2]), w[..., 2], np.inf)
            low = z < floor_m
            if not low.any():
                continue
            # the distance to every plate only where a wrist is low (it is all that counts)
            rows = np.flatnonzero(low.any(axis=1))
            clear = np.zeros_like(low)
            clear[rows] = box_distance(np.nan_to_num(w[rows], nan=1e6), boxes) >= shelf_clear_m
            hit = (low & clear).any(axis=1)
            idx = np.flatnonzero(hit)
            if idx.size == 0:
                continue
            runs = np.split(idx, np.flatnonzero(np.diff(t[idx]) > gap_s) + 1)
            for run in runs:
                if t[run[-1]] - t[run[0]] < min_s:
                    continue
                zz = np.where(low[run] & clear[run], z[run], np.inf)
                k, j = np.unravel_index(int(np.argmin(zz)), zz.shape)
                x, y, zlow = (float(v) for v in w[run[k], j])
                out.append(FloorReach(sid, float(t[run[0]]), float(t[run[-1]]), (x, y, zlow)))
    return out
