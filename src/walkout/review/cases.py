"""Review cases: an uncertain decision, the evidence a person needs to settle it, the verdict.

A case is opened for every decision the engine is not sure of (who took it, or what it was).
It carries everything needed to decide without going back to the raw streams: the weight trace
of the event's plates, the product hypotheses with their likelihoods, and the wrists of every
shopper near the plate over the event window. A verdict never edits the cart ledger: it appends
correcting lines, so the ledger still shows what the engine first thought and who changed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from walkout.events import WRISTS, Attribution, Hypothesis, ShelfEvent, Track

Items = tuple[tuple[str, int], ...]  # (product, quantity > 0)


@dataclass(frozen=True, slots=True)
class WeightTrace:
    """Samples of the event's plates from a little before to a little after it."""

    t: np.ndarray  # (n,)
    grams: np.ndarray  # (n, plates)
    plate_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HandTrace:
    """One candidate shopper's wrists over the event window, and their scores."""

    session_id: str
    t: np.ndarray  # (n,)
    wrists: np.ndarray  # (n, 2, 3): left, right (NaN unseen)
    probability: float
    reach_m: float  # sustained wrist-to-plate distance (walkout.attribution.hands)


@dataclass(frozen=True, slots=True)
class Evidence:
    weights: WeightTrace | None
    hypotheses: tuple[Hypothesis, ...]
    hands: tuple[HandTrace, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What really happened: per session, the items it took (pick) or put back (put).

    An empty mapping means nobody took anything (a false event)."""

    shares: Mapping[str, Items]
    reviewer: str = "operator"
    note: str = ""


@dataclass
class ReviewCase:
    case_id: str  # the shelf event id
    event: ShelfEvent
    decided: Mapping[str, Items]  # what the engine charged, per session
    reasons: tuple[str, ...]
    evidence: Evidence
    sessions: tuple[str, ...]  # whose receipts wait for it
    opened_at: float
    verdict: Verdict | None = field(default=None)

    @property
    def open(self) -> bool:
        return self.verdict is None


def hand_traces(att: Attribution, tracks: Mapping[str, list[Track]], t0: float,
                t1: float) -> tuple[HandTrace, ...]:
    """Wrist trajectories of the attribution's candidates (best first) over [t0, t1]."""
    prob = dict(att.scores)
    reach = dict(att.reach_m)
    out = []
    for sid in [s for s, _ in att.scores] or list(tracks):
        ts, ws = [], []
        for tr in tracks.get(sid, []):
            t, joints = tr.window(t0, t1)
            if len(t):
                ts.append(t)
                ws.append(joints[:, list(WRISTS)])
        if not ts:
            continue
        out.append(HandTrace(sid, np.concatenate(ts), np.concatenate(ws),
                             float(prob.get(sid, 0.0)), float(reach.get(sid, np.inf))))
    return tuple(out)


def corrections(decided: Mapping[str, Items], verdict: Verdict) -> dict[str, dict[str, int]]:
    """Per session and product, the signed change that turns ``decided`` into the verdict."""
    out: dict[str, dict[str, int]] = {}
    for sid in set(decided) | set(verdict.shares):
        before = dict(decided.get(sid, ()))
        after = dict(verdict.shares.get(sid, ()))
        diff = {p: after.get(p, 0) - before.get(p, 0) for p in set(before) | set(after)}
        diff = {p: q for p, q in diff.items() if q}
        if diff:
            out[sid] = diff
    return out
