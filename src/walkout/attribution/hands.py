"""Who took it: score each shopper by their wrists' distance to the plate around the event.

Attribution uses hands, never heads: the shopper whose wrist was in (or nearest to) the plate's
volume while its weight changed is the likeliest taker. Scores become probabilities over the
candidates plus a "nobody seen" alternative, so an event with no hand near the plate is
reviewable rather than silently charged to whoever stood closest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from walkout.events import WRISTS, Attribution, ShelfEvent, Track


class AttributionConfig(BaseModel):
    """How hand evidence is turned into a decision."""

    model_config = ConfigDict(extra="forbid")

    sigma_m: float = Field(0.08, gt=0, description="wrist-to-plate distance scale (m)")
    pad_s: float = Field(0.6, ge=0, description="time searched before and after the event")
    nobody_distance_m: float = Field(
        0.35, gt=0, description="distance at which 'nobody took it' is as likely as a shopper"
    )
    review_below: float = Field(0.9, ge=0, le=1, description="confidence under which to review")
    inside_m: float = Field(
        0.04, ge=0, description="a wrist this close to the plate volume was in it"
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
        d = min((wrist_distance(tr, boxes, t0, t1) for tr in tracks), default=float("inf"))
        if np.isfinite(d):
            names.append(sid)
            dists.append(d)
    if not names:
        return Attribution(event=event, session_id=None, confidence=0.0, needs_review=True)
    logl = -0.5 * (np.asarray(dists) / cfg.sigma_m) ** 2
    nobody = -0.5 * (cfg.nobody_distance_m / cfg.sigma_m) ** 2
    all_l = np.append(logl, nobody)
    p = np.exp(all_l - all_l.max())
    p /= p.sum()
    order = np.argsort(-p[:-1], kind="stable")
    scores = tuple((names[i], float(p[i])) for i in order)
    reach = tuple((names[i], float(dists[i])) for i in np.argsort(dists, kind="stable"))
    best, conf = scores[0]
    if p[-1] >= conf:
        return Attribution(event, None, float(p[-1]), scores, True, reach)
    return Attribution(event, best, conf, scores, conf < cfg.review_below, reach)
