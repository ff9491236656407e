"""Who took it: score each shopper by how their wrists stayed in the plate around the event.

Attribution uses hands, never heads: the shopper whose wrist was in the plate's volume while
its weight changed is the likeliest taker. A hand takes or leaves an item over a grasp, not a
frame, so each candidate is scored on its *sustained reach*: the smallest wrist-to-plate
distance averaged over ``hold_s`` of the event window, each wrist on its own. A neighbour
whose hand crosses or brushes the plate for a frame or two (crossing hands, shoulder to
shoulder, a tracker glitch) does not look like the hand that held the item there. Scores
become probabilities over the candidates plus a "nobody seen" alternative, so an event with
no hand near the plate is reviewable rather than silently charged to whoever stood closest.
Only then is the arm asked: a hand deep in a high shelf is often hidden from every camera, and
the shopper whose upper arm points into the plate (the hand put a forearm on from the elbow)
is scored with a wider spread; a seen hand always outranks it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from walkout.events import (
    L_ELBOW,
    L_SHOULDER,
    L_WRIST,
    R_ELBOW,
    R_SHOULDER,
    R_WRIST,
    WRISTS,
    Attribution,
    ShelfEvent,
    Track,
)


class AttributionConfig(BaseModel):
    """How hand evidence is turned into a decision."""

    model_config = ConfigDict(extra="forbid")

    sigma_m: float = Field(
        0.02, gt=0, description="spread of the sustained reach of the hand that was in the plate "
        "(the tracker's wrist error: 2 cm median in 3D)"
    )
    tail_sigma_m: float = Field(
        0.08, gt=0, description="spread of the reach when the wrist was mis-seen (occlusion, "
        "the wrong joint): the likelihood's heavy tail"
    )
    tail_weight: float = Field(
        0.05, gt=0, lt=1, description="share of events whose taker's wrist is mis-seen"
    )
    hold_s: float = Field(
        0.4, gt=0, description="a hand takes or leaves an item over at least this long: the "
        "reach is the wrist-to-plate distance averaged over this long a stretch"
    )
    pad_s: float = Field(0.6, ge=0, description="time searched before and after the event")
    nobody_distance_m: float = Field(
        0.35, gt=0, description="distance at which 'nobody took it' is as likely as a shopper"
    )
    review_below: float = Field(0.9, ge=0, le=1, description="confidence under which to review")
    inside_m: float = Field(
        0.04, ge=0, description="a wrist whose sustained reach is this close was in the plate"
    )
    forearm_m: float = Field(
        0.26, gt=0, description="elbow to wrist, for a hand the cameras did not see in the "
        "shelf: it is put this far on along the upper arm (an arm reaching in is straight)"
    )
    arm_sigma_m: float = Field(
        0.08, gt=0, description="spread of that stand-in hand's reach (arms are not quite "
        "straight, forearms differ)"
    )


def box_distance(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Distance of each point (..., 3) to the nearest of ``boxes`` (k, 2, 3); 0 inside."""
    p = points[..., None, :]
    d = np.maximum(np.maximum(boxes[:, 0] - p, p - boxes[:, 1]), 0.0)
    return np.sqrt((d**2).sum(-1)).min(-1)


def wrist_distance(track: Track, boxes: np.ndarray, t0: float, t1: float) -> float:
    """Closest approach of either wrist to the boxes within [t0, t1] (inf if never seen)."""
    _, joints = track.window(t0, t1)
    if len(joints) == 0:
        return float("inf")
    d = box_distance(joints[:, list(WRISTS)].astype(np.float64), boxes)
    d = d[np.isfinite(d)]
    return float(d.min()) if d.size else float("inf")


def sustained_distance(
    track: Track, boxes: np.ndarray, t0: float, t1: float, hold_s: float
) -> float:
    """Smallest mean distance of a wrist to the boxes over any ``hold_s`` stretch of
    [t0, t1], each wrist on its own (inf if never seen).

    Each wrist is its own series: a frame where the hand in the plate is unseen is skipped,
    not stood in for by the other hand hanging at the shopper's side. Only stretches in
    which the wrist is seen at least half as often as in its best-seen one count, so that a
    lone frame between occlusions cannot stand for a whole grasp; a wrist seen too little for
    any stretch is judged on what was seen.
    """
    t, joints = track.window(t0, t1)
    if len(t) == 0:
        return float("inf")
    w = np.ascontiguousarray(joints[:, list(WRISTS)], dtype=np.float64)
    return float(_sustained(t.astype(np.float64), w, np.ascontiguousarray(boxes, np.float64),
                            float(hold_s)))


@njit(cache=True)
def _sustained(t: np.ndarray, wrists: np.ndarray, boxes: np.ndarray, hold_s: float) -> float:
    """:func:`sustained_distance` over a window's samples, compiled (it runs for every shopper
    in the store at every event): the same operations in the same order as the numpy form
    (box distance, running sum per wrist), so the same bits."""
    n = t.shape[0]
    out = np.inf
    d = np.empty(n)
    ts = np.empty(n)
    for w in range(wrists.shape[1]):
        m = 0
        for s in range(n):
            p0, p1, p2 = wrists[s, w, 0], wrists[s, w, 1], wrists[s, w, 2]
            if math.isnan(p0) or math.isnan(p1) or math.isnan(p2):
                continue  # unseen: no distance
            best = np.inf
            for b in range(boxes.shape[0]):
                e0 = max(max(boxes[b, 0, 0] - p0, p0 - boxes[b, 1, 0]), 0.0)
                e1 = max(max(boxes[b, 0, 1] - p1, p1 - boxes[b, 1, 1]), 0.0)
                e2 = max(max(boxes[b, 0, 2] - p2, p2 - boxes[b, 1, 2]), 0.0)
                best = min(best, math.sqrt(e0 * e0 + e1 * e1 + e2 * e2))
            d[m] = best
            ts[m] = t[s]
            m += 1
        if m == 0:
            continue
        csum = np.zeros(m + 1)
        for k in range(m):
            csum[k + 1] = csum[k] + d[k]
        j = np.searchsorted(ts[:m], ts[:m] + hold_s, side="right")
        most = 0
        for i in range(m):
            most = max(most, j[i] - i)
        least = max(1, most // 2)
        for i in range(m):
            k = j[i] - i
            if k >= least:
                out = min(out, (csum[j[i]] - csum[i]) / k)
    return out


#: (shoulder, elbow, wrist) of each arm, in the order of ``WRISTS``
_ARMS = ((L_SHOULDER, L_ELBOW, L_WRIST), (R_SHOULDER, R_ELBOW, R_WRIST))


def arm_distance(track: Track, boxes: np.ndarray, t0: float, t1: float, hold_s: float,
                 forearm_m: float) -> float:
    """:func:`sustained_distance` of each hand as best known: the wrist where it was seen,
    else the point ``forearm_m`` on from the elbow along the upper arm.

    A hand deep in a high shelf is often hidden from every camera while the elbow and shoulder
    are not; the arm still points at the plate it is in."""
    t, joints = track.window(t0, t1)
    if len(t) == 0:
        return float("inf")
    hands = np.empty((len(t), 2, 3))
    for k, (sh, el, wr) in enumerate(_ARMS):
        up = joints[:, el] - joints[:, sh]
        with np.errstate(invalid="ignore", divide="ignore"):
            ray = joints[:, el] + up / np.linalg.norm(up, axis=1, keepdims=True) * forearm_m
        seen = ~np.isnan(joints[:, wr]).any(axis=1)
        hands[:, k] = np.where(seen[:, None], joints[:, wr], ray)
    return float(_sustained(t.astype(np.float64), hands, np.ascontiguousarray(boxes, np.float64),
                            float(hold_s)))


def reach_log_likelihood(reach_m: np.ndarray | float, cfg: AttributionConfig) -> np.ndarray:
    """Log-likelihood that a hand with this sustained reach held the item in the plate:
    the tracker's wrist error, with a heavy tail for the wrist mis-seen."""
    r = np.asarray(reach_m, dtype=np.float64)
    core = np.log1p(-cfg.tail_weight) - 0.5 * (r / cfg.sigma_m) ** 2
    tail = np.log(cfg.tail_weight) - 0.5 * (r / cfg.tail_sigma_m) ** 2
    return np.logaddexp(core, tail)


def attribute(
    event: ShelfEvent,
    candidates: Mapping[str, Sequence[Track]],
    boxes: np.ndarray,
    config: AttributionConfig | None = None,
) -> Attribution:
    """Score ``candidates`` (session id → its tracks) for ``event`` over plate ``boxes``."""
    cfg = config or AttributionConfig()
    t0, t1 = event.t_start - cfg.pad_s, event.t_end + cfg.pad_s
    names, dists = [], []
    for sid, tracks in candidates.items():
        d = min((sustained_distance(tr, boxes, t0, t1, cfg.hold_s) for tr in tracks),
                default=float("inf"))
        if np.isfinite(d):
            names.append(sid)
            dists.append(d)
    reach = tuple((names[i], float(dists[i])) for i in np.argsort(dists, kind="stable"))
    if not names:
        return (_by_arm(event, candidates, boxes, cfg, reach)
                or Attribution(event=event, session_id=None, confidence=0.0, needs_review=True))
    scores, p_nobody = _posterior(names, reach_log_likelihood(np.asarray(dists), cfg), cfg)
    best, conf = scores[0]
    if p_nobody >= conf:
        return (_by_arm(event, candidates, boxes, cfg, reach)
                or Attribution(event, None, p_nobody, scores, True, reach))
    return Attribution(event, best, conf, scores, conf < cfg.review_below, reach)


def _posterior(names: list[str], loglik: np.ndarray, cfg: AttributionConfig,
               ) -> tuple[tuple[tuple[str, float], ...], float]:
    """Candidates' probabilities, best first, beside "nobody seen" (its probability)."""
    all_l = np.append(loglik, reach_log_likelihood(cfg.nobody_distance_m, cfg))
    p = np.exp(all_l - all_l.max())
    p /= p.sum()
    order = np.argsort(-p[:-1], kind="stable")
    return tuple((names[i], float(p[i])) for i in order), float(p[-1])


def _by_arm(event: ShelfEvent, candidates: Mapping[str, Sequence[Track]], boxes: np.ndarray,
            cfg: AttributionConfig, reach: tuple[tuple[str, float], ...]) -> Attribution | None:
    """When no seen wrist was near the plate: whose arm pointed into it (:func:`arm_distance`),
    scored with the stand-in hand's wider spread. None when nobody's did either, so that the
    event stays "nobody seen"; it is only asked then, so it never overrides a seen hand."""
    t0, t1 = event.t_start - cfg.pad_s, event.t_end + cfg.pad_s
    names, dists = [], []
    for sid, tracks in candidates.items():
        d = min((arm_distance(tr, boxes, t0, t1, cfg.hold_s, cfg.forearm_m) for tr in tracks),
                default=float("inf"))
        if np.isfinite(d):
            names.append(sid)
            dists.append(d)
    if not names:
        return None
    loglik = math.log(cfg.tail_weight) - 0.5 * (np.asarray(dists) / cfg.arm_sigma_m) ** 2
    scores, p_nobody = _posterior(names, loglik, cfg)
    best, conf = scores[0]
    if p_nobody >= conf:
        return None
    return Attribution(event, best, conf, scores, conf < cfg.review_below, reach, by_arm=True)
