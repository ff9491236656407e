"""Tracker evaluation against the simulator's ground truth (the future ``walkout bench tracking``).

Tracks and true people are compared on a regular time grid (one tracker slot by default): at each
grid time every track contributes the sample nearest in time (within half a step), and tracks and
people present then are matched one-to-one (Hungarian) on the floor distance of their hip centres,
a pair counting only within ``match_m``. From that per-time matching come:

- per person: the *main* track (the one matched most often), its coverage (fraction of the
  person's grid times matched to the main track), the track ids matched at all, identity switches
  and whether one track covered them from an entry birth to an exit end;
- CLEAR-MOT ``mota = 1 - (misses + false positives + switches) / ground-truth count``;
- ``idf1``: identity F1 with the best global one-to-one person↔track mapping (IDTP counted as
  grid times where the mapped pair is within ``match_m``, whether or not the per-time matching
  chose it);
- wrist error: distance of each triangulated wrist to the true wrist at the track sample's exact
  time, over the samples matched to the right person;
- alert counts by kind.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from walkout.events import L_HIP, R_HIP, WRISTS, Alert, Track
from walkout.sim.cameras import PersonPath


class _Truth(Protocol):
    paths: list[PersonPath]


class _Session(Protocol):
    truth: _Truth


def _hip_xy(joints: np.ndarray) -> np.ndarray:
    """(..., 2) hip centre of ``(..., 17, 3)`` skeletons, any seen joint where hips are not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        h = np.nanmean(joints[..., [L_HIP, R_HIP], :2], axis=-2)
        a = np.nanmean(joints[..., :2], axis=-2)
    return np.where(np.isnan(h), a, h)


def _nearest_sample(t: np.ndarray, grid: np.ndarray, tol: float) -> np.ndarray:
    """Index into ``t`` of the sample nearest each grid time within ``tol`` (-1: none)."""
    out = np.full(grid.shape[0], -1)
    if t.shape[0] == 0:
        return out
    i = np.clip(np.searchsorted(t, grid), 1, max(t.shape[0] - 1, 1))
    i0 = np.clip(i - 1, 0, t.shape[0] - 1)
    i1 = np.clip(i, 0, t.shape[0] - 1)
    near = np.where(np.abs(t[i0] - grid) <= np.abs(t[i1] - grid), i0, i1)
    ok = np.abs(t[near] - grid) <= tol
    out[ok] = near[ok]
    return out


def evaluate_tracking(
    session: _Session,
    tracks: Sequence[Track],
    alerts: Sequence[Alert] = (),
    *,
    match_m: float = 0.5,
    step_s: float | None = None,
) -> dict[str, Any]:
    """Score ``tracks`` (and ``alerts``) against ``session.truth.paths``; see the module doc.

    ``step_s`` is the grid step; by default the most common interval between track samples
    (one tracker slot), 1/15 s when there are no tracks. Returns plain Python numbers, lists and
    dicts (JSON-ready): summary figures at the top level and one entry per person in
    ``"persons"``.
    """
    paths = list(session.truth.paths)
    tracks = list(tracks)
    if step_s is None:
        d = np.concatenate([np.diff(tr.t) for tr in tracks]) if tracks else np.zeros(0)
        d = np.round(d[d > 1e-6], 6)
        if d.size:
            vals, counts = np.unique(d, return_counts=True)
            step_s = float(vals[np.argmax(counts)])
        else:
            step_s = 1.0 / 15.0
    t_lo = min([float(p.t[0]) for p in paths] + [float(tr.t[0]) for tr in tracks if len(tr.t)])
    t_hi = max([float(p.t[-1]) for p in paths] + [float(tr.t[-1]) for tr in tracks if len(tr.t)])
    # Align the grid with the track samples (slot centres) when there are any.
    anchor = next((float(tr.t[0]) for tr in tracks if len(tr.t)), t_lo)
    k0 = np.floor((t_lo - anchor) / step_s)
    grid = anchor + step_s * np.arange(k0, np.floor((t_hi - anchor) / step_s) + 1)
    G, P, T = grid.shape[0], len(paths), len(tracks)

    gt_hip = np.full((G, P, 2), np.nan)
    for p, path in enumerate(paths):
        j, present = path.at(grid)
        gt_hip[present, p] = _hip_xy(j[present])
    tr_idx = np.full((G, T), -1)
    tr_hip = np.full((G, T, 2), np.nan)
    for k, tr in enumerate(tracks):
        idx = _nearest_sample(np.asarray(tr.t), grid, step_s / 2.0)
        tr_idx[:, k] = idx
        has = idx >= 0
        if has.any():
            tr_hip[has, k] = _hip_xy(tr.joints[idx[has]])
    gt_on = ~np.isnan(gt_hip[..., 0])
    tr_on = ~np.isnan(tr_hip[..., 0])

    # Per-time matching, CLEAR-MOT style: a person keeps the track last matched to them while
    # it stays within match_m (two people passing through each other do not swap tracks in
    # the score); the others are matched by Hungarian assignment.
    matched = np.full((G, P), -1)  # track index matched to each person
    last = np.full(P, -1)
    for g in np.flatnonzero(gt_on.any(axis=1) & tr_on.any(axis=1)):
        taken: set[int] = set()
        for p in np.flatnonzero(gt_on[g] & (last >= 0)):
            k = last[p]
            if (
                int(k) not in taken
                and tr_on[g, k]
                and np.linalg.norm(gt_hip[g, p] - tr_hip[g, k]) < match_m
            ):
                matched[g, p] = k
                taken.add(int(k))
        ps = np.flatnonzero(gt_on[g] & (matched[g] < 0))
        ks = np.array([k for k in np.flatnonzero(tr_on[g]) if int(k) not in taken], dtype=int)
        if ps.size and ks.size:
            cost = np.linalg.norm(gt_hip[g, ps][:, None] - tr_hip[g, ks][None], axis=-1)
            rows, cols = linear_sum_assignment(np.where(cost < match_m, cost, 1e6))
            for r, c in zip(rows, cols, strict=True):
                if cost[r, c] < match_m:
                    matched[g, ps[r]] = ks[c]
        last = np.where(matched[g] >= 0, matched[g], last)
    n_gt = int(gt_on.sum())
    n_tr = int(tr_on.sum())
    n_match = int((matched >= 0).sum())

    # Identity: switches per person (changes of matched track between matched times).
    switches = 0
    persons: list[dict[str, Any]] = []
    main_of = np.full(P, -1)
    for p, path in enumerate(paths):
        seq = matched[gt_on[:, p], p]
        seq = seq[seq >= 0]
        sw = int((seq[1:] != seq[:-1]).sum()) if seq.size > 1 else 0
        switches += sw
        present = int(gt_on[:, p].sum())
        ids, counts = np.unique(seq, return_counts=True)
        main = int(ids[np.argmax(counts)]) if ids.size else -1
        main_of[p] = main
        cov = float(counts.max() / present) if ids.size and present else 0.0
        mt = tracks[main] if main >= 0 else None
        one_track = bool(
            mt is not None
            and ids.size == 1
            and mt.born_at is not None
            and mt.ended_at is not None
        )
        persons.append(
            {
                "person_id": int(path.person_id),
                "track_id": int(mt.track_id) if mt is not None else None,
                "track_ids": [int(tracks[i].track_id) for i in ids],
                "coverage": cov,
                "id_switches": sw,
                "born_at": mt.born_at if mt is not None else None,
                "ended_at": mt.ended_at if mt is not None else None,
                "entry_to_exit": one_track,
                "first_matched_t": float(grid[gt_on[:, p] & (matched[:, p] >= 0)][0])
                if seq.size
                else None,
                "t_in": float(path.t[0]),
                "t_out": float(path.t[-1]),
            }
        )
    mota = 1.0 - ((n_gt - n_match) + (n_tr - n_match) + switches) / max(n_gt, 1)

    # IDF1 with the best global person <-> track mapping.
    idtp = 0
    if P and T:
        close = np.zeros((P, T))
        for k in range(T):
            on = tr_on[:, k][:, None] & gt_on
            d = np.linalg.norm(gt_hip - tr_hip[:, k][:, None], axis=-1)
            close[:, k] = (on & (d < match_m)).sum(axis=0)
        rows, cols = linear_sum_assignment(-close)
        idtp = int(close[rows, cols].sum())
    idf1 = 2.0 * idtp / max(n_gt + n_tr, 1)

    # Wrist error of samples matched to the right (main) person.
    errs: list[np.ndarray] = []
    for p, path in enumerate(paths):
        k = main_of[p]
        if k < 0:
            continue
        rows = np.flatnonzero(matched[:, p] == k)
        si = np.unique(tr_idx[rows, k])
        if si.size == 0:
            continue
        tr = tracks[k]
        truth, present = path.at(np.asarray(tr.t)[si])
        e = np.linalg.norm(tr.joints[si][:, WRISTS] - truth[:, WRISTS], axis=-1)[present]
        errs.append(e[~np.isnan(e)])
    e = np.concatenate(errs) if errs else np.zeros(0)

    cov = np.array([x["coverage"] for x in persons]) if persons else np.zeros(1)
    return {
        "persons_total": P,
        "tracks_total": T,
        "step_s": step_s,
        "match_m": match_m,
        "entry_to_exit": int(sum(x["entry_to_exit"] for x in persons)),
        "coverage_mean": float(cov.mean()),
        "coverage_min": float(cov.min()),
        "id_switches": switches,
        "fragmented_persons": int(sum(len(x["track_ids"]) > 1 for x in persons)),
        "untracked_persons": int(sum(x["track_id"] is None for x in persons)),
        "tracks_unmatched": int(T - len({int(m) for m in main_of if m >= 0})),
        "misses": n_gt - n_match,
        "false_positives": n_tr - n_match,
        "mota": float(mota),
        "idf1": float(idf1),
        "wrist_samples": int(e.size),
        "wrist_median_m": float(np.median(e)) if e.size else float("nan"),
        "wrist_p95_m": float(np.percentile(e, 95)) if e.size else float("nan"),
        "alerts": dict(Counter(a.kind for a in alerts)),
        "persons": persons,
    }
