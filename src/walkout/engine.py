"""The engine: sensor streams in, receipts out, one time chunk at a time.

Each chunk feeds the shelf stage (weights → ShelfEvents) and the tracker (keypoints → tracks),
binds new tracks to entry scans, attributes settled events to sessions by hand evidence, folds
decisions into the cart ledger and issues a receipt a few seconds after each exit. The engine is
a deterministic function of its inputs: the same streams give the same receipts, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from walkout.attribution import AttributionConfig, attribute
from walkout.cart import CartLedger, Session, SessionBook, SessionState
from walkout.checkout import Receipt, build_receipt
from walkout.events import (
    Alert,
    Attribution,
    CartEntry,
    GateEvent,
    Hypothesis,
    KeypointFrame,
    PlateBlock,
    ShelfEvent,
    Track,
)
from walkout.shelf import ShelfConfig, ShelfStage
from walkout.shelf.decide import choose
from walkout.sources.recording import Sensors
from walkout.store.model import Store
from walkout.tracking import Tracker, TrackerConfig


class EngineConfig(BaseModel):
    """Configuration of every stage of the engine."""

    model_config = ConfigDict(extra="forbid")

    shelf: ShelfConfig = Field(default_factory=ShelfConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    attribution: AttributionConfig = Field(default_factory=AttributionConfig)
    chunk_s: float = Field(5.0, gt=0, description="time processed per step")
    bind_window_s: float = Field(
        2.5, gt=0, description="max time between an entry scan and its person's track birth"
    )
    exit_settle_s: float = Field(
        4.0, ge=0, description="wait after an exit for the last shelf events to settle"
    )


@dataclass
class Decision:
    """What the engine concluded about one shelf event."""

    attribution: Attribution
    items: tuple[tuple[str, int], ...]  # (product, signed quantity): + pick, - put-back
    needs_review: bool
    takers: tuple[str, ...] = ()  # sessions charged (several when hands shared the plate)


@dataclass
class EngineResult:
    receipts: list[Receipt]
    events: list[ShelfEvent]
    decisions: list[Decision]
    alerts: list[Alert]
    tracks: list[Track]
    sessions: dict[str, Session]

    @property
    def review_queue(self) -> list[Decision]:
        return [d for d in self.decisions if d.needs_review]


@dataclass
class Engine:
    store: Store
    config: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        self.shelf = ShelfStage(self.store, self.config.shelf)
        self.tracker = Tracker(self.store, self.config.tracker)
        self.book = SessionBook(bind_window_s=self.config.bind_window_s)
        self.ledger = CartLedger()
        self.events: list[ShelfEvent] = []
        self.decisions: list[Decision] = []
        self.alerts: list[Alert] = []
        self.receipts: list[Receipt] = []
        self._pending: list[ShelfEvent] = []
        self._reviewed: set[str] = set()  # event ids whose decision awaits review
        self._exits: list[tuple[float, Session]] = []  # checking out: (exit time, session)
        self._exited_tracks: set[int] = set()
        self._exit_tracks: list[tuple[str, float]] = []  # (gate, time) of tracks that left
        self._gate_exits: list[GateEvent] = []
        self._known_tracks = 0
        self._box_cache: dict[tuple[str, ...], np.ndarray] = {}

    # ---- one step ---------------------------------------------------------------------------

    def step(
        self, block: PlateBlock, frames: list[KeypointFrame], gates: list[GateEvent], now: float
    ) -> None:
        """Process everything that happened up to ``now``."""
        self.alerts += self.tracker.process(frames)
        tracks = self.tracker.tracks
        for tr in tracks[self._known_tracks :]:
            if tr.born_at is not None:
                self.book.born(tr)
        self._known_tracks = len(tracks)
        for g in gates:
            if g.kind == "entry":
                self.alerts += self.book.scan(g)
            else:
                self._gate_exits.append(g)
        self.alerts += self.book.resolve(now)
        self._track_exits(tracks)
        self._check_gate_exits(now)
        new = self.shelf.process(block)
        self.events += new
        self._pending += new
        self._attribute_ready(tracks, now - self.config.attribution.pad_s - 0.2)
        self._close_ready(now)

    def finish(self) -> None:
        """End of stream: settle everything and close every open session."""
        new = self.shelf.flush()
        self.events += new
        self._pending += new
        self.alerts += self.tracker.finish()
        tracks = self.tracker.tracks
        self.alerts += self.book.resolve(float("inf"))
        self._track_exits(tracks)
        self._check_gate_exits(float("inf"))
        self._attribute_ready(tracks, float("inf"))
        self._close_ready(float("inf"))
        for s in self.book.sessions.values():
            if s.state == SessionState.OPEN and s.bound:
                self.alerts.append(Alert(s.entered_at, "no_exit_seen",
                                         "session still open at the end of the stream",
                                         s.session_id))
                self._issue(s)

    def run(
        self, sensors: Sensors, progress: Callable[[float], None] | None = None
    ) -> EngineResult:
        """Run over a whole recording, in time chunks, as a live store would see it."""
        chunk = self.config.chunk_s
        plates, frames, gates = sensors.plates, sensors.frames, sensors.gates
        frame_t = np.array([f.t for f in frames])
        gate_t = np.array([g.t for g in gates])
        edges = np.arange(0.0, sensors.duration_s + chunk, chunk)
        for a, b in pairwise(edges):
            i0, i1 = np.searchsorted(plates.t, [a, b])
            f0, f1 = np.searchsorted(frame_t, [a, b])
            g0, g1 = np.searchsorted(gate_t, [a, b])
            block = PlateBlock(plates.t[i0:i1], plates.grams[i0:i1], plates.plate_ids)
            self.step(block, frames[f0:f1], gates[g0:g1], float(b))
            if progress:
                progress(float(b))
        self.finish()
        return self.result()

    def result(self) -> EngineResult:
        return EngineResult(
            receipts=sorted(self.receipts, key=lambda r: r.session_id),
            events=self.events, decisions=self.decisions, alerts=self.alerts,
            tracks=self.tracker.tracks, sessions=self.book.sessions,
        )

    # ---- internals --------------------------------------------------------------------------

    def _boxes(self, plate_ids: tuple[str, ...]) -> np.ndarray:
        if plate_ids not in self._box_cache:
            idx = [self.store.plate_index[p] for p in plate_ids]
            self._box_cache[plate_ids] = self.store.plate_boxes[idx]
        return self._box_cache[plate_ids]

    def _candidates(self, tracks: list[Track], t0: float, t1: float) -> dict[str, list[Track]]:
        out: dict[str, list[Track]] = {}
        for tr in tracks:
            sid = self.book.by_track.get(tr.track_id)
            if sid is None or len(tr.t) == 0 or tr.t[0] > t1 or tr.t[-1] < t0:
                continue
            out.setdefault(sid, []).append(tr)
        return out

    def _attribute_ready(self, tracks: list[Track], horizon: float) -> None:
        ready = [e for e in self._pending if e.t_end <= horizon]
        self._pending = [e for e in self._pending if e.t_end > horizon]
        pad = self.config.attribution.pad_s
        for ev in sorted(ready, key=lambda e: (e.t_start, e.event_id)):
            cands = self._candidates(tracks, ev.t_start - pad, ev.t_end + pad)
            att = attribute(ev, cands, self._boxes(ev.plate_ids), self.config.attribution)
            self._decide(att)

    def _decide(self, att: Attribution) -> None:
        ev = att.event
        sid = att.session_id
        held = self.ledger.held(sid) if ev.kind == "put" and sid is not None else None
        choice = choose(ev, self.store, self.shelf.config, held)
        if choice.hypothesis is None:
            self.decisions.append(Decision(att, (), True))
            self._reviewed.add(ev.event_id)
            return
        chosen = choice.hypothesis
        review = att.needs_review or choice.needs_review
        sign = 1 if ev.kind == "pick" else -1
        shares = self._split(att, chosen) if ev.kind == "pick" else None
        if shares is None:
            shares, split_review = {sid: chosen.items} if sid is not None else {}, False
        else:
            shares, split_review = shares
        review = review or split_review
        items = tuple((p, sign * q) for p, q in chosen.items)
        self.decisions.append(Decision(att, items, review, tuple(shares)))
        if review:
            self._reviewed.add(ev.event_id)
        conf = min(att.confidence, chosen.probability)
        for pid, q in items:
            self.shelf.apply(ev.event_id, pid, -q)
        for taker, taken in shares.items():
            for pid, q in taken:
                self.ledger.append(CartEntry(taker, pid, sign * q, ev.t_end, ev.event_id, conf,
                                             (ev.event_id,)))

    def _split(
        self, att: Attribution, chosen: Hypothesis
    ) -> tuple[dict[str, tuple[tuple[str, int], ...]], bool] | None:
        """Several hands in the plate and several items gone: share the items among them.

        Nobody takes more than the plate lost, and everybody whose hand was in it took at least
        one; an uneven share is a guess and goes to review. None when one hand explains it.
        """
        inside = [s for s, d in att.reach_m if d <= self.config.attribution.inside_m]
        if len(inside) < 2 or chosen.is_mixture or chosen.quantity < 2:
            return None
        (pid, q), = chosen.items
        takers = inside[: q]
        base, extra = divmod(q, len(takers))
        order = [s for s, _ in att.scores if s in takers]  # the likeliest gets the remainder
        shares = {s: ((pid, base + (1 if i < extra else 0)),) for i, s in enumerate(order)}
        return shares, extra != 0 or len(inside) > q

    def _track_exits(self, tracks: list[Track]) -> None:
        """A session checks out when its (last) track leaves through an exit gate."""
        for tr in tracks:
            if tr.ended_at is None or tr.track_id in self._exited_tracks:
                continue
            self._exited_tracks.add(tr.track_id)
            gate = next((g for g in self.store.gates if g.id == tr.ended_at), None)
            if gate is None or gate.kind != "exit":
                continue
            t_exit = float(tr.t[-1])
            self._exit_tracks.append((gate.id, t_exit))
            sid = self.book.by_track.get(tr.track_id)
            if sid is None:
                continue  # an unbound track's pseudo-session is closed by resolve()
            s = self.book.sessions[sid]
            if s.state != SessionState.OPEN:
                continue
            others = [t for t in s.track_ids if t != tr.track_id and t not in self._exited_tracks]
            if others:  # a party checks out when its last member leaves
                continue
            s.state = SessionState.CHECKING_OUT
            s.exited_at = t_exit
            self._exits.append((t_exit, s))

    def _check_gate_exits(self, now: float) -> None:
        """Every exit gate opening must match a track leaving there (else: alert)."""
        for g in list(self._gate_exits):
            if any(gid == g.gate_id and abs(t - g.t) <= 3.0 for gid, t in self._exit_tracks):
                self._gate_exits.remove(g)
            elif now - g.t > 5.0:
                self._gate_exits.remove(g)
                self.alerts.append(Alert(g.t, "exit_unmatched",
                                         f"exit gate {g.gate_id} opened with no tracked shopper "
                                         "leaving through it"))

    def _close_ready(self, now: float) -> None:
        for t_exit, s in list(self._exits):
            if now >= t_exit + self.config.exit_settle_s and not any(
                e.t_start <= t_exit for e in self._pending
            ):
                self._exits.remove((t_exit, s))
                self._issue(s)

    def _issue(self, s: Session) -> None:
        s.state = SessionState.CLOSED
        self.receipts.append(
            build_receipt(s, self.ledger.entries(s.session_id), self.store, self._reviewed)
        )
