"""The engine: sensor streams in, receipts out, one time chunk at a time.

Each chunk feeds the shelf stage (weights → ShelfEvents) and the tracker (keypoints → tracks),
binds new tracks to entry scans, attributes settled events to sessions by hand evidence, folds
decisions into the cart ledger and issues a receipt a few seconds after each exit. The engine is
a deterministic function of its inputs: the same streams give the same receipts, bit for bit.

Staff (a ``staff:`` credential at the gate) are tracked and bound like shoppers but own no cart:
a weight change their hands make is a restock or a stock removal of the plate's products, any
count (``walkout.shelf.decide.choose_stock``), and only the plate inventory moves. So is a change
nobody's hand made while the store is marked closed (:meth:`Engine.set_store_mode`) and no
shopper is inside. Neither is a sale or a shopper's review case.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from walkout.attribution import AttributionConfig, attribute
from walkout.attribution.floor import FloorReach, find_floor_reaches
from walkout.attribution.handover import HandMeeting, HandOverPolicy, find_meetings
from walkout.attribution.hands import wrist_distance
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
from walkout.review import Evidence, ReviewCase, Verdict, WeightTrace, corrections, hand_traces
from walkout.seqlog import SeqLog
from walkout.shelf import ShelfConfig, ShelfStage
from walkout.shelf.decide import choose, choose_stock
from walkout.shelf.inventory import read_stock
from walkout.sources.recording import Sensors
from walkout.store.model import Store
from walkout.tracking import Tracker, TrackerConfig

log = logging.getLogger("walkout.engine")


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
    handover_policy: HandOverPolicy = Field(
        HandOverPolicy.TAKER, description="who pays for an item handed to another payer "
        "(taker: whoever took it off the shelf; receiver: moved to the receiver, reviewed)"
    )
    review_hold_s: float = Field(
        120.0, ge=0, description="a receipt with open review cases waits this long after the "
        "exit for their verdicts before it is issued (marked as under review)"
    )
    evidence_pad_s: float = Field(
        2.0, ge=0, description="weight trace kept in a review case before and after its event"
    )
    evidence_keep_s: float = Field(
        60.0, gt=0, description="plate samples kept in memory for review evidence"
    )
    floor_lag_s: float = Field(
        4.0, ge=0, description="hands to the floor are looked for this far behind the stream, "
        "so that the picks before them are in the cart (what the shopper held is known)"
    )
    track_history_s: float | None = Field(
        300.0, gt=0, description="skeleton samples kept in memory per track, seconds behind "
        "the stream (and behind anything still waiting to be decided; a track's first and "
        "last sample stay): a store running for days must not keep everybody's whole path; "
        "None keeps all"
    )
    forget_visits_s: float | None = Field(
        None, gt=0, description="a visit settled this long ago (receipt issued, no review case "
        "open) is let go: its session, cart, track and receipt, and the events, decisions and "
        "receipts handed out this long ago, so that a store never empty for a minute keeps "
        "only its recent past in memory (the service's event log keeps the rest). None keeps "
        "everything, as a recording's run does to give its whole result"
    )


#: alerts that put a device out of service, and the alert that ends each
FAULTS = {"plate_dead": "plate_recovered", "plate_stuck": "plate_recovered",
          "device_silent": "device_back"}  # the last: the network source's, joined in


def in_force(alerts: list[Alert]) -> list[Alert]:
    """The fault alerts (:data:`FAULTS`) whose device has not recovered since: the latest of
    each subject, in the order raised."""
    last: dict[str, int] = {}
    for i, a in enumerate(alerts):
        if a.kind in FAULTS:
            last[a.subject] = i
        elif a.kind in FAULTS.values():
            last.pop(a.subject, None)
    return [alerts[i] for i in sorted(last.values())]


@dataclass
class Decision:
    """What the engine concluded about one shelf event."""

    attribution: Attribution
    items: tuple[tuple[str, int], ...]  # (product, signed quantity): + pick, - put-back
    needs_review: bool
    takers: tuple[str, ...] = ()  # sessions charged (several when hands shared the plate)
    reasons: tuple[str, ...] = ()  # why it needs review
    #: a staff restock/removal (or a change on a closed store): the plates' stock moved by
    #: ``items``, no cart did; reviewed, it is an inventory case (nobody is charged)
    stock: bool = False


@dataclass
class EngineResult:
    receipts: list[Receipt]
    events: list[ShelfEvent]
    decisions: list[Decision]
    alerts: list[Alert]
    tracks: list[Track]
    sessions: dict[str, Session]
    cases: dict[str, ReviewCase] = field(default_factory=dict)

    @property
    def review_queue(self) -> list[Decision]:
        return [d for d in self.decisions if d.needs_review]

    def explain(self, session_id: str, product_id: str) -> list[Decision]:
        """The decisions behind a receipt line: its provenance, with their evidence scores."""
        events = {e.event_id for e in self.ledger_entries.get(session_id, ())
                  if e.product_id == product_id}
        return [d for d in self.decisions if d.attribution.event.event_id in events]

    @property
    def ledger_entries(self) -> dict[str, list[CartEntry]]:
        out: dict[str, list[CartEntry]] = {}
        for e in self.entries:
            out.setdefault(e.session_id, []).append(e)
        return out

    entries: list[CartEntry] = field(default_factory=list)


@dataclass
class Engine:
    store: Store
    config: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        self.shelf = ShelfStage(self.store, self.config.shelf)
        self.tracker = Tracker(self.store, self.config.tracker)
        self.book = SessionBook(bind_window_s=self.config.bind_window_s, gate_areas={
            g.id: (g.area.min[0], g.area.min[1], g.area.max[0], g.area.max[1])
            for g in self.store.gates if g.kind == "entry"})
        self.ledger = CartLedger()
        # outputs read by position (``[seen:]``): a SeqLog lets the oldest go, positions stay
        self.events: SeqLog[ShelfEvent] = SeqLog()
        self.decisions: SeqLog[Decision] = SeqLog()
        self.alerts: list[Alert] = []
        self.receipts: dict[str, Receipt] = {}  # session → its latest receipt
        #: every receipt issued, revisions included, in order
        self.issued: SeqLog[Receipt] = SeqLog()
        self._pending: list[ShelfEvent] = []
        self._reviewed: set[str] = set()  # event ids whose decision awaits review
        # per shelf event, what the inventory was told left its plates (product → signed
        # count, + taken): a verdict corrects the plates by this, not by what was charged
        self._shelved: dict[str, Counter[str]] = {}
        self.cases: dict[str, ReviewCase] = {}
        self._recent: deque[PlateBlock] = deque()  # plate samples kept for review evidence
        self._now = 0.0
        self._shelf_seen = 0  # shelf alerts already passed on
        self.meetings: list[HandMeeting] = []  # hand-overs seen (wrists meeting off-shelf)
        self._meet_t = 0.0  # meetings searched up to here
        self._exits: list[tuple[float, Session]] = []  # checking out: (exit time, session)
        self._exited_tracks: set[int] = set()
        self._exit_waiting: list[tuple[Track, float]] = []  # left before being bound
        self._exit_tracks: list[tuple[str, float]] = []  # (gate, time) of tracks that left
        self._gate_exits: list[GateEvent] = []
        self._known_tracks = 0
        self.floor_reaches: list[FloorReach] = []  # hands to the floor while holding items
        self._floor_t = 0.0  # floor reaches searched up to here
        self._box_cache: dict[tuple[str, ...], np.ndarray] = {}
        #: (stream time, closed) of each store-mode change, in time order
        self.store_modes: list[tuple[float, bool]] = []
        self._removed: dict[str, Counter[str]] = {}  # staff session → items it took off plates
        # (stream time, positions of the output logs) at each forgetting (forget_visits_s)
        self._marks: deque[tuple[float, tuple[int, int, int, int]]] = deque()

    @property
    def now(self) -> float:
        """The stream time processed up to (the last :meth:`step`'s ``now``)."""
        return self._now

    # ---- store mode --------------------------------------------------------------------------

    def set_store_mode(self, t: float, closed: bool) -> None:
        """The operator marked the store closed (restock mode) or open again at stream time
        ``t``. Part of the engine's input: a replay must be given the same changes at the
        same times (the service records them, see ``walkout.service.store_mode``).

        While closed and no shopper is inside, a weight change no staff or shopper hand made
        is a restock or removal, not a review case."""
        if self.store_modes and t < self.store_modes[-1][0]:
            raise ValueError(f"store mode changes must come in time order: t={t:.3f} s is "
                             f"before the last one at t={self.store_modes[-1][0]:.3f} s")
        if self.closed_at(t) == closed:
            return
        self.store_modes.append((t, closed))
        self.alerts.append(Alert(t, "store_closed" if closed else "store_opened",
                                 "store marked closed: restock mode (weight changes with no "
                                 "shopper inside are stock moves)" if closed
                                 else "store open: restock mode ended"))

    def closed_at(self, t: float) -> bool:
        """Whether the store was marked closed at stream time ``t``."""
        closed = False
        for t0, c in self.store_modes:
            if t0 > t:
                break
            closed = c
        return closed

    # ---- one step ---------------------------------------------------------------------------

    def step(
        self, block: PlateBlock, frames: list[KeypointFrame], gates: list[GateEvent], now: float
    ) -> None:
        """Process everything that happened up to ``now``."""
        seen = self.tracker.process(frames)
        self.alerts += seen
        tracks = self.tracker.tracks
        retired = self.tracker.retired  # let go of: every one known long before
        for tr in tracks[self._known_tracks - retired :]:
            if tr.born_at is not None:
                self.book.born(tr)
        self._known_tracks = len(tracks) + retired
        self._identity_cases(seen, tracks)
        for g in gates:
            if g.kind == "entry":
                self.alerts += self.book.scan(g)
            else:
                self._gate_exits.append(g)
        self.alerts += self.book.resolve(now, tracks)
        self._track_exits(tracks)
        self._check_gate_exits(now)
        self._now = now
        self._keep(block, now)
        new = self.shelf.process(block)
        self._shelf_alerts()
        self.events += new
        self._pending += new
        self._attribute_ready(tracks, now - self.config.attribution.pad_s - 0.2)
        self._hand_overs(tracks, now - 0.5)
        self._floor_reaches(tracks, now - self.config.floor_lag_s)
        self._close_ready(now)
        self._forget(now)
        self._forget_visits(now)

    def _forget(self, now: float) -> None:
        """Let the tracker forget what no decision can still read (``track_history_s``).

        Every reader of a track's past looks back from something still open: a plate change
        not yet an event, an event waiting for attribution (its window from ``t_start -
        pad_s``, its review evidence from ``t_start - evidence_pad_s``), the hand-over and
        floor searches (from where they stopped), or the stream's present; the cut-off stays
        ``track_history_s`` behind all of them."""
        keep = self.config.track_history_s
        if keep is None:
            return
        # the evidence of a review case reaches further back than the attribution window
        pad = max(self.config.attribution.pad_s, self.config.evidence_pad_s)
        t = min([now, self._meet_t, self._floor_t, self.shelf.earliest_open() - pad,
                 *(e.t_start - pad for e in self._pending)]) - keep
        self.tracker.forget_before(t)

    def _forget_visits(self, now: float) -> None:
        """Let go of the visits settled ``forget_visits_s`` ago (once a minute of stream).

        A store's next stream begins only while it is empty (:meth:`successor`); one that is
        never empty for a minute (staff always inside, a store open round the clock) would
        otherwise keep every past visitor's session, cart, track and receipt (~4.5 KB each)
        and every slot would walk all their tracks. A visit goes once its receipt is issued,
        it left long enough ago and no open review case names it (a verdict may still revise
        it); a decided case keeps its verdict and drops its raw evidence (the service logged
        it when the case opened). The output logs let go of what they handed out that long
        ago: the service took it within the chunk. Deterministic in the stream, so a replay
        forgets as the first run did."""
        keep = self.config.forget_visits_s
        marks = getattr(self, "_marks", None)  # an engine snapshotted before there were any
        if keep is None:
            return
        if marks is None:
            marks = self._marks = deque()
        if marks and now - marks[-1][0] < min(keep, 60.0):
            return
        for name in ("events", "decisions", "issued"):
            if not isinstance(getattr(self, name), SeqLog):
                setattr(self, name, SeqLog(getattr(self, name)))
        marks.append((now, (len(self.events), len(self.decisions), len(self.issued),
                            len(self.ledger))))
        cut = now - keep
        mark = None
        while marks and marks[0][0] <= cut:
            mark = marks.popleft()[1]
        open_cases = {cid: c for cid, c in self.cases.items() if c.open}
        waiting = {sid for c in open_cases.values() for sid in c.sessions}
        left = self._left_at()
        gone = {sid for sid, s in self.book.sessions.items()
                if s.state == SessionState.CLOSED and left.get(sid, math.inf) < cut
                and sid not in waiting}
        self._lost_long_ago(left, cut, now)  # closed now, let go at a later pass
        self.book.forget(gone)
        for sid in gone:
            self.receipts.pop(sid, None)
            self._removed.pop(sid, None)
        self.ledger.forget(gone, mark[3] if mark else 0)
        # the tracks nobody is bound to any more, last seen that long ago (those that ended)
        bound = set(self.book.by_track) | self.book.unresolved()
        old = {tr.track_id for tr in self.tracker.tracks
               if tr.track_id not in bound and len(tr.t) and float(tr.t[-1]) < cut}
        if old and self.tracker.retire(old):
            kept = {tr.track_id for tr in self.tracker.tracks}
            self._exited_tracks = {t for t in self._exited_tracks if t in kept}
        if mark is not None:
            self.events.forget_before(mark[0])
            self.decisions.forget_before(mark[1])
            self.issued.forget_before(mark[2])
        # an event waiting for attribution is decided (and told to its plates) later
        self.shelf.forget_events_before(cut, set(open_cases) | {e.event_id for e in self._pending})
        # what the plates were told per event: read again only by a verdict (an open case)
        for eid in [e for e in self._shelved if e not in open_cases]:
            del self._shelved[eid]
        for c in self.cases.values():
            if (not c.open and c.event.t_end < cut
                    and (c.evidence.weights is not None or c.evidence.hands)):
                c.evidence = Evidence(None, c.evidence.hypotheses, ())
        self.meetings = [m for m in self.meetings if m.t >= cut]
        self.floor_reaches = [r for r in self.floor_reaches if r.t_end >= cut]
        self._exit_tracks = [(g, t) for g, t in self._exit_tracks if t >= cut]

    # ---- a stream that runs for days ---------------------------------------------------------

    def idle(self, now: float, quiet_s: float = 60.0, case_wait_s: float = math.inf) -> bool:
        """Whether nothing in the store is left to decide: no track seen for ``quiet_s``, no
        scan or birth waiting for its binding, no exit settling, no event waiting for
        attribution, no review case opened less than ``case_wait_s`` ago still open (an
        operator who never reviews must not keep every stream in memory for good: an older
        one is left to the receipts' refunds, :meth:`open_cases`), and no plate change in
        progress that began while
        somebody could have made it (a store's plates are never all still: one that began
        since, nobody's hand reaches, in this engine or the next). Then the store's next
        stream may begin here (:meth:`successor`)."""
        pad = max(self.config.attribution.pad_s, self.config.evidence_pad_s)
        return (not self._pending and not self._exits and not self._exit_waiting
                and self.book.idle() and not self.tracker.seen_since(now - quiet_s)
                and not any(c.open and c.opened_at > now - case_wait_s
                            for c in self.cases.values())
                and self.shelf.earliest_open() >= now - quiet_s + pad)

    def restock(self, inventory: Any, learned: Any = None) -> list[str]:
        """Continue the shelves from the stock a health row records instead of the
        planogram's opening stock: a new stream whose predecessor's engine state was lost (a
        restart on Ray, a snapshot an upgrade cannot load) would otherwise count every item
        taken before it as back on its plate, and explain picks by it. ``inventory`` and
        ``learned`` are the row's (``walkout.service.live.health``). Before the first
        :meth:`step` only. What the row holds that this store cannot take (another store
        file wrote it, or it is damaged) is skipped, logged and returned, never raised."""
        stock, skipped = read_stock(self.store, inventory, learned)
        for why in skipped:
            log.warning("restock: %s", why)
        self.shelf.restock(stock)
        return skipped

    def open_cases(self) -> list[str]:
        """Ids of the review cases still waiting for a verdict."""
        return [cid for cid, c in self.cases.items() if c.open]

    def successor(self, now: float) -> Engine:
        """The engine of the store's next stream, begun while the store is :meth:`idle`: the
        shelves go on (plate baselines, noise, stock) and so do the device faults still in force
        (:func:`in_force`), people and their decisions do not, so
        a store's engine keeps no visit in memory for longer than a stream lasts (its
        privacy promise, and its memory). A session still open (its shopper lost and gone
        without an exit seen) gets its receipt here, as at the end of a stream."""
        for s in self.book.sessions.values():
            if s.state == SessionState.OPEN and s.bound:
                self.alerts.append(Alert(now, "no_exit_seen", "session still open when the "
                                         "store was empty: its receipt is issued as it is",
                                         s.session_id))
                self._issue(s)
        self._unbound_inside()
        nxt = self._next_engine()
        # the faults still in force: the next stream's health page folds its own alerts, and
        # nothing raises these again (a dead plate is alerted once, a silent device until back)
        nxt.alerts = in_force(self.alerts)
        nxt.shelf = self.shelf
        self.shelf.forget_events()
        nxt._shelf_seen = len(self.shelf.alerts)
        nxt._recent = self._recent
        nxt._now = nxt._meet_t = nxt._floor_t = now
        return nxt

    def _left_at(self) -> dict[str, float]:
        """When each session was last in the store, where that is over: its exit, else (its
        shopper lost for good, every track ended away from an exit) its tracks' last sample,
        else (a scan nobody followed in) its scan. Sessions still inside are not listed."""
        still = self.tracker.open_ids() | self.book.unresolved()
        last = {tr.track_id: float(tr.t[-1]) for tr in self.tracker.tracks if len(tr.t)}
        out: dict[str, float] = {}
        for sid, s in self.book.sessions.items():
            if s.exited_at is not None:
                out[sid] = s.exited_at
            elif s.track_ids and not still.intersection(s.track_ids):
                out[sid] = max(last.get(t, -math.inf) for t in s.track_ids)
            elif not s.track_ids and sid != "store":
                out[sid] = s.entered_at
        return out

    def _lost_long_ago(self, left: dict[str, float], cut: float, now: float) -> None:
        """A session still open whose shopper was lost for good before ``cut`` (or whose scan
        nobody followed in) gets its receipt as :meth:`successor` gives it at a rollover:
        a store never empty never rolls over, and the session would stay open for good."""
        for sid, s in list(self.book.sessions.items()):
            if s.state != SessionState.OPEN or left.get(sid, math.inf) >= cut:
                continue
            if s.bound:
                self.alerts.append(Alert(now, "no_exit_seen", "session lost for "
                                         f"{now - left[sid]:.0f} s and never seen leaving: "
                                         "its receipt is issued as it is", sid))
                self._issue(s)
            elif not s.staff and +self.ledger.contents(sid):
                self._issue(s)  # an unbound person's goods: unbound_left_with_goods
            else:
                s.state = SessionState.CLOSED

    def _next_engine(self) -> Engine:
        """A fresh engine of this kind for the store's next stream (:meth:`successor` gives
        it the shelves)."""
        return Engine(self.store, self.config)

    def finish(self) -> None:
        """End of stream: settle everything and close every open session."""
        new = self.shelf.flush()
        self._shelf_alerts()
        self.events += new
        self._pending += new
        seen = self.tracker.finish()
        self.alerts += seen
        tracks = self.tracker.tracks
        self._identity_cases(seen, tracks)
        self.alerts += self.book.resolve(float("inf"), tracks)
        self._track_exits(tracks)
        self._check_gate_exits(float("inf"))
        self._attribute_ready(tracks, float("inf"))
        self._floor_reaches(tracks, float("inf"))
        self._close_ready(float("inf"), hold=False)
        for s in self.book.sessions.values():
            if s.state == SessionState.OPEN and s.bound:
                self.alerts.append(Alert(s.entered_at, "no_exit_seen",
                                         "session still open at the end of the stream",
                                         s.session_id))
                self._issue(s)
        self._unbound_inside()

    def _unbound_inside(self) -> None:
        """Unbound people still inside when the stream ends: their receipt (charged to nobody)
        is issued as at an exit, so that one holding goods raises ``unbound_left_with_goods``
        (their entry raised ``unbound_person`` already; without goods, nothing more)."""
        for s in self.book.sessions.values():
            if s.state == SessionState.OPEN and not s.bound and not s.staff \
                    and +self.ledger.contents(s.session_id):
                self._issue(s)

    def run(
        self, sensors: Sensors, progress: Callable[[float], None] | None = None
    ) -> EngineResult:
        """Run over a whole recording, in time chunks, as a live store would see it: its
        store-mode changes at the chunks where the service's engine worker applies an
        operator's (``Sensors.mode_steps``)."""
        modes = sensors.mode_steps(self.config.chunk_s)
        for i, (block, frames, gates, now) in enumerate(sensors.chunks(self.config.chunk_s)):
            for t, closed in modes[i]:
                self.set_store_mode(t, closed)
            self.step(block, frames, gates, now)
            if progress:
                progress(now)
        self.finish()
        return self.result()

    def result(self) -> EngineResult:
        return EngineResult(
            receipts=[self.receipts[k] for k in sorted(self.receipts)],
            events=list(self.events), decisions=list(self.decisions), alerts=self.alerts,
            tracks=self.tracker.tracks, sessions=self.book.sessions, cases=self.cases,
            entries=self.ledger.entries(),
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
        ready.sort(key=lambda e: (e.t_start, e.event_id))
        for i, ev in enumerate(ready):
            if self._awaits_binding(ev, tracks):
                # somebody whose binding is still open reached into the plate (a tailgater is
                # known to be unbound only ~20 s after entering): wait for it, and keep the
                # later events waiting too, so that put-backs still follow their picks
                self._pending += ready[i:]
                return
            cands = self._candidates(tracks, ev.t_start - pad, ev.t_end + pad)
            att = attribute(ev, cands, self._boxes(ev.plate_ids), self.config.attribution)
            self._decide(att, cands)

    def _awaits_binding(self, ev: ShelfEvent, tracks: list[Track]) -> bool:
        """Whether a track not yet bound nor declared unbound had a hand near ``ev``'s plates.

        Attributing without it would give its pick to whoever else was near, or to nobody.
        """
        waiting = self.book.unresolved()
        if not waiting:
            return False
        cfg = self.config.attribution
        t0, t1 = ev.t_start - cfg.pad_s, ev.t_end + cfg.pad_s
        boxes = self._boxes(ev.plate_ids)
        return any(
            tr.track_id in waiting and len(tr.t) > 0 and tr.t[0] <= t1 and tr.t[-1] >= t0
            and wrist_distance(tr, boxes, t0, t1) <= cfg.nobody_distance_m
            for tr in tracks
        )

    def _decide(self, att: Attribution, cands: dict[str, list[Track]]) -> None:
        ev = att.event
        sid = att.session_id
        if sid is not None and self.book.sessions[sid].staff:
            self._decide_stock(att, cands, sid)
            return
        if sid is None and ev.plate_ids and self.closed_at(ev.t_start) and not self._inside(ev):
            self._decide_stock(att, cands, None)
            return
        held = self.ledger.held(sid) if ev.kind == "put" and sid is not None else None
        choice = choose(ev, self.store, self.shelf.config, held)
        who = _attribution_reasons(att)
        if choice.hypothesis is None or (ev.unlisted and choice.needs_review):
            # nothing fits, or only products this plate should not hold and the catalogue does
            # not say which: a guess is never charged; the reviewer's verdict adds the line
            d = Decision(att, (), True, (), who + choice.reasons)
            self.decisions.append(d)
            self._open_case(d, {}, cands)
            return
        chosen = choice.hypothesis
        sign = 1 if ev.kind == "pick" else -1
        shares = self._split(att, chosen) if ev.kind == "pick" else None
        if shares is None:
            shares, split = {sid: chosen.items} if sid is not None else {}, False
        else:
            shares, split = shares
            together = sum(p for s, p in att.scores if s in shares)
            if not split and together >= self.config.attribution.review_below:
                who = ()  # each hand in the plate took one: who took what is settled
        reasons = who + choice.reasons + (("items shared among several hands",) if split else ())
        items = tuple((p, sign * q) for p, q in chosen.items)
        d = Decision(att, items, bool(reasons), tuple(shares), reasons)
        self.decisions.append(d)
        if d.needs_review:
            self._open_case(d, shares, cands)
        conf = min(att.confidence, chosen.probability)
        for pid, q in items:
            self.shelf.apply(ev.event_id, pid, -q)
        self._shelved[ev.event_id] = Counter(dict(items))
        for taker, taken in shares.items():
            for pid, q in taken:
                self.ledger.append(CartEntry(taker, pid, sign * q, ev.t_end, ev.event_id, conf,
                                             (ev.event_id,)))

    def _inside(self, ev: ShelfEvent) -> bool:
        """Whether a shopper (a payer or an unbound person, not staff) was in the store at
        ``ev``, or somebody whose binding is still open."""
        if self.book.unresolved():
            return True
        return any(not s.staff and s.track_ids and s.entered_at <= ev.t_end
                   and (s.exited_at is None or s.exited_at >= ev.t_start)
                   for s in self.book.sessions.values())

    def _store_session(self, t: float) -> str:
        """The pseudo-session ``store`` a closed store's stock moves (and their inventory
        cases' verdicts) are booked to: staff, never charged."""
        if "store" not in self.book.sessions:
            self.book.sessions["store"] = Session("store", "", t, bound=False, staff=True,
                                                  state=SessionState.CLOSED)
        return "store"

    def _decide_stock(self, att: Attribution, cands: dict[str, list[Track]],
                      staff: str | None) -> None:
        """A staff hand (``staff``) or nobody on a closed store changed the plate: restock
        (+) or removal (−) of a product it lists or holds, counted from the weight; only the
        inventory moves. A change no product fits, an ambiguous count, or an uncertain hand
        (a shopper was near too) opens an inventory case naming the staff session (and the
        shoppers near): its verdict moves stock for staff and charges only shoppers."""
        ev = att.event
        inv = getattr(self.shelf, "inventory", None)  # the Ray shelf keeps it in its zones
        present = inv.on(ev.plate_ids) if inv is not None else Counter()
        choice = choose_stock(ev, self.store, self.shelf.config, present,
                              getattr(self.shelf, "learned", None))
        sid = staff if staff is not None else self._store_session(ev.t_start)
        who = _attribution_reasons(att) if staff is not None and att.needs_review else ()
        if choice.hypothesis is None or choice.needs_review or who:
            d = Decision(att, (), True, (), who + choice.reasons, stock=True)
            self.decisions.append(d)
            self._open_case(d, {}, cands, also=(sid,))
            return
        sign = 1 if ev.kind == "pick" else -1
        items = tuple((p, sign * q) for p, q in choice.hypothesis.items)
        self.decisions.append(Decision(att, items, False, (), (), stock=True))
        for pid, q in items:
            self.shelf.apply(ev.event_id, pid, -q)
            if q > 0:
                self._removed.setdefault(sid, Counter())[pid] += q
                self.alerts.append(Alert(ev.t_end, "stock_removed",
                                         f"{_staff_name(sid)} removed {q} × {pid} from plate(s) "
                                         f"{', '.join(ev.plate_ids)} (expired or damaged stock?)",
                                         sid))
        self._shelved[ev.event_id] = Counter(dict(items))

    def _split(
        self, att: Attribution, chosen: Hypothesis
    ) -> tuple[dict[str, tuple[tuple[str, int], ...]], bool] | None:
        """Several hands in the plate and several items gone: share the items among them.

        Nobody takes more than the plate lost, and everybody whose hand was in it took at least
        one; an uneven share is a guess and goes to review. None when one hand explains it.
        """
        inside = [s for s, d in att.reach_m if d <= self.config.attribution.inside_m
                  and not self.book.sessions[s].staff]  # staff take no share of a sale
        if len(inside) < 2 or chosen.is_mixture or chosen.quantity < 2:
            return None
        (pid, q), = chosen.items
        takers = inside[: q]
        base, extra = divmod(q, len(takers))
        order = [s for s, _ in att.scores if s in takers]  # the likeliest gets the remainder
        shares = {s: ((pid, base + (1 if i < extra else 0)),) for i, s in enumerate(order)}
        return shares, extra != 0 or len(inside) > q

    def _track_exits(self, tracks: list[Track]) -> None:
        """A session checks out when its (last) track leaves through an exit gate.

        A track that left before its binding was decided (a tailgater is known unbound only
        ~18 s after entering) checks its session out once it is: else the pseudo-session would
        stay open and what the tailgater took would be on no receipt.
        """
        waiting, self._exit_waiting = self._exit_waiting, []
        for tr, t_exit in waiting:
            self._check_out(tr, t_exit)
        for tr in tracks:
            if tr.ended_at is None or tr.track_id in self._exited_tracks:
                continue
            self._exited_tracks.add(tr.track_id)
            gate = next((g for g in self.store.gates if g.id == tr.ended_at), None)
            if gate is None or gate.kind != "exit":
                continue
            t_exit = float(tr.t[-1])
            self._exit_tracks.append((gate.id, t_exit))
            self._check_out(tr, t_exit)

    def _check_out(self, tr: Track, t_exit: float) -> None:
        """Check out the session of ``tr``, which left at ``t_exit`` (its party's last)."""
        sid = self.book.by_track.get(tr.track_id)
        if sid is None:
            if tr.track_id in self.book.unresolved():
                self._exit_waiting.append((tr, t_exit))  # its binding is still open
            return
        s = self.book.sessions[sid]
        if s.state != SessionState.OPEN:
            return
        others = [t for t in s.track_ids if t != tr.track_id and t not in self._exited_tracks]
        if others:  # a party checks out when its last member leaves
            return
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

    def _close_ready(self, now: float, hold: bool = True) -> None:
        for t_exit, s in list(self._exits):
            if now >= t_exit + self.config.exit_settle_s and self._floor_t >= t_exit and not any(
                e.t_start <= t_exit for e in self._pending
            ):
                waiting = any(c.open and s.session_id in c.sessions for c in self.cases.values())
                if hold and waiting and now < t_exit + self.config.review_hold_s:
                    continue  # the receipt waits for its review verdicts
                self._exits.remove((t_exit, s))
                self._issue(s)

    # ---- review ------------------------------------------------------------------------------

    def resolve(self, case_id: str, verdict: Verdict) -> list[CartEntry]:
        """Apply a reviewer's verdict: correcting ledger lines (never edits), the plate
        inventory follows; a held receipt is released, an issued one is re-issued.
        Returns the correcting lines."""
        case = self.cases.get(case_id)
        if case is None:
            raise KeyError(f"no review case {case_id!r}")
        if not case.open:
            raise ValueError(f"review case {case_id!r} was already resolved")
        for sid in verdict.shares:
            if sid not in self.book.sessions:
                raise KeyError(f"verdict names unknown session {sid!r}")
        ev = case.event
        sign = 1 if ev.kind == "pick" else -1
        for sid, items in sorted(verdict.shares.items()):
            if self.book.sessions[sid].staff and sign > 0:
                taken = Counter(dict(items))
                if taken:
                    self._removed.setdefault(sid, Counter()).update(taken)
        fixes = []
        for sid, diff in sorted(corrections(case.decided, verdict).items()):
            if self.book.sessions[sid].staff:
                continue  # staff hands moved stock: the plates follow (below), no cart does
            for pid, q in sorted(diff.items()):
                entry = CartEntry(sid, pid, sign * q, ev.t_end, ev.event_id, 1.0,
                                  (ev.event_id, f"review:{verdict.reviewer}"))
                self.ledger.append(entry)
                fixes.append(entry)
        if ev.plate_ids:  # an item left on the floor is on no plate
            self._reshelve(ev.event_id, sign, verdict)
        case.verdict = verdict
        self._reviewed.discard(case_id)
        for sid in dict.fromkeys(case.sessions + tuple(verdict.shares)):  # each once
            s = self.book.sessions[sid]
            if s.state == SessionState.CLOSED:
                self._issue(s)  # the corrected receipt
        self._close_ready(self._now)
        return fixes

    def _reshelve(self, event_id: str, sign: int, verdict: Verdict) -> None:
        """The plates follow the verdict: what it says left (or reached) them, less what the
        decision already applied. Not the cart corrections: a pick nobody's hand was seen
        making took its item off the plate with no line to correct."""
        now: Counter[str] = Counter()
        for items in verdict.shares.values():
            for pid, q in items:
                now[pid] += sign * q
        before = self._shelved.get(event_id, Counter())
        for pid in sorted(set(now) | set(before)):
            diff = now[pid] - before[pid]
            if diff:
                self.shelf.apply(event_id, pid, -diff)
        self._shelved[event_id] = Counter({p: q for p, q in now.items() if q})

    def _open_case(
        self, d: Decision, shares: dict[str, tuple[tuple[str, int], ...]],
        cands: dict[str, list[Track]], also: tuple[str, ...] = (),
    ) -> None:
        ev = d.attribution.event
        self._reviewed.add(ev.event_id)
        pad = self.config.evidence_pad_s
        t0, t1 = ev.t_start - pad, ev.t_end + pad
        near = tuple(s for s, p in d.attribution.scores if p >= 0.01) or tuple(shares)
        self.cases[ev.event_id] = ReviewCase(
            case_id=ev.event_id, event=ev, decided=dict(shares), reasons=d.reasons,
            evidence=Evidence(self._weights(ev.plate_ids, t0, t1), ev.hypotheses,
                              hand_traces(d.attribution, cands, t0, t1)),
            sessions=tuple(sorted(set(shares) | set(near) | set(also))), opened_at=self._now,
        )

    def _hand_overs(self, tracks: list[Track], until: float) -> None:
        """Wrists of two payers meeting off-shelf: alert, and apply the hand-over policy."""
        t0 = max(0.0, self._meet_t - 1.0)  # overlap: a meeting across the boundary is whole
        if until <= t0:
            return
        cands = {sid: trs for sid, trs in self._candidates(tracks, t0, until).items()
                 if not self.book.sessions[sid].staff}  # staff handing stock over: no sale
        found = find_meetings(cands, self.store.plate_boxes, t0, until) if len(cands) > 1 else []
        self._meet_t = until
        for m in found:
            if any(o.sessions == m.sessions and abs(o.t - m.t) < 3.0 for o in self.meetings):
                continue
            self.meetings.append(m)
            a, b = m.sessions
            held = {s: self.ledger.held(s) for s in m.sessions}
            moved = ""
            if self.config.handover_policy == HandOverPolicy.RECEIVER:
                moved = self._move_handed(m, held, cands)
            self.alerts.append(Alert(m.t, "hand_over",
                                     f"sessions {a} and {b} passed something hand to hand "
                                     f"(wrists {100 * m.distance_m:.0f} cm apart, off-shelf); "
                                     f"policy {self.config.handover_policy.value}{moved}",
                                     f"{a},{b}"))

    def _move_handed(self, m: HandMeeting, held: dict[str, dict[str, int]],
                     cands: dict[str, list[Track]]) -> str:
        """Receiver policy: the one session holding items gave the most recent one.

        Which item passed is inferred, not seen, so it is a review case naming both: decided
        as "the receiver pays for it", a verdict says who does (each pays what the verdict
        gives them; nobody, when it names nobody). Without the case both receipts were
        marked under review with nothing in the queue to settle them."""
        givers = [s for s in m.sessions if held[s]]
        if len(givers) != 1:
            return "; who gave what is unclear: no cart changed"
        giver = givers[0]
        receiver = next(s for s in m.sessions if s != giver)
        last = next(e for e in reversed(self.ledger.entries(giver))
                    if e.quantity > 0 and held[giver].get(e.product_id, 0) > 0)
        pid = last.product_id
        ref = f"hand-over-{m.t:.3f}"
        for sid, q in ((giver, -1), (receiver, 1)):
            self.ledger.append(CartEntry(sid, pid, q, m.t, ref, 0.5, (ref,)))
        # an event on no plate, "taken" (weighing what the item weighs): a verdict's shares
        # are who pays for it, as for a pick; no plate moves, no item counts as picked again
        ev = ShelfEvent(ref, m.t, m.t, (), -self.store.products[pid].weight_g, ())
        att = Attribution(ev, receiver, 0.5, ((receiver, 0.5), (giver, 0.5)))
        d = Decision(att, (), True, (receiver,), (
            f"hand-over: 1 × {pid} moved from {giver} to {receiver}, the item inferred "
            "(the giver's latest still held), not seen: who pays for it?",))
        self.decisions.append(d)
        self._open_case(d, {receiver: ((pid, 1),)},
                        {s: cands[s] for s in m.sessions if s in cands})
        return f"; moved 1 × {pid} from {giver} to {receiver} (to review)"

    def _identity_cases(self, alerts: list[Alert], tracks: list[Track]) -> None:
        """Somebody came out of a blind area where several payers were and body size did not
        say who: the tracker's guess stands, but both receipts wait for a person to check."""
        for a in alerts:
            if a.kind != "identity_ambiguous":
                continue
            tids = [int(x) for x in a.subject.split(",") if x]
            sids = sorted({self.book.by_track[t] for t in tids if t in self.book.by_track})
            if len(sids) < 2:
                continue  # one payer (a group): whoever it is, the same receipt
            ev = ShelfEvent(f"identity-{a.t:.2f}", a.t, a.t, (), 0.0, ())
            att = Attribution(ev, None, 0.0, tuple((sid, 1.0 / len(sids)) for sid in sids))
            d = Decision(att, (), True, (), (a.message,))
            self.decisions.append(d)
            pad = self.config.evidence_pad_s
            self._open_case(d, {}, self._candidates(tracks, a.t - pad, a.t + pad))

    def _floor_reaches(self, tracks: list[Track], until: float) -> None:
        """A hand to the floor away from every shelf while holding items: maybe an item left
        there. Alert staff and open a review case; the cart is not touched (no evidence of
        which item, or that one was left at all, is strong enough to remove a line)."""
        t0 = max(0.0, self._floor_t - 1.0)  # overlap: a reach across the boundary is whole
        if until <= t0:
            return
        if until == float("inf"):
            until = max((float(tr.t[-1]) for tr in tracks if len(tr.t)), default=t0)
        cands = self._candidates(tracks, t0, until)
        found = find_floor_reaches(cands, self.store.plate_boxes, t0, until) if cands else []
        self._floor_t = max(self._floor_t, until)
        for r in found:
            if any(o.session_id == r.session_id and abs(o.t_start - r.t_start) < 3.0
                   for o in self.floor_reaches):
                continue
            held: Counter[str] = Counter()
            for e in self.ledger.entries(r.session_id):
                if e.t <= r.t_start:
                    held[e.product_id] += e.quantity
            held = +held
            if not held:
                continue  # nothing in hand: nothing can have been left
            self.floor_reaches.append(r)
            self._open_drop_case(r, held, cands)

    def _open_drop_case(self, r: FloorReach, held: Counter[str], cands: dict[str, list[Track]]
                        ) -> None:
        """The review case of a possible drop: a put-back to no plate, of one of the held
        products (each a hypothesis); a verdict naming an item removes its line."""
        sid = r.session_id
        n = sum(held.values())
        hyps = tuple(Hypothesis(((pid, 1),), 0.0, q / n) for pid, q in sorted(held.items()))
        ev = ShelfEvent(f"floor-{sid}-{r.t_start:.2f}", r.t_start, r.t_end, (), 0.0, hyps)
        att = Attribution(ev, sid, 1.0, ((sid, 1.0),), reach_m=((sid, 0.0),))
        x, y, _ = r.xyz
        why = (f"hand to the floor at ({x:.2f}, {y:.2f}) m, away from every shelf, while "
               f"holding {n} item(s): one may have been left there",)
        d = Decision(att, (), True, (), why)
        self.decisions.append(d)
        self.alerts.append(Alert(r.t_start, "possible_drop",
                                 f"session {sid}: {why[0]}; staff: look for an item there",
                                 sid))
        self._open_case(d, {}, cands)

    def _shelf_alerts(self) -> None:
        """Sensor faults and planogram mismatches the shelf stage raised since last time."""
        fresh = self.shelf.alerts[self._shelf_seen :]
        self._shelf_seen = len(self.shelf.alerts)
        self.alerts += fresh

    def _keep(self, block: PlateBlock, now: float) -> None:
        if block.t.shape[0]:
            self._recent.append(block)
        while self._recent and self._recent[0].t[-1] < now - self.config.evidence_keep_s:
            self._recent.popleft()

    def _weights(self, plate_ids: tuple[str, ...], t0: float, t1: float) -> WeightTrace | None:
        """The event's plates' samples within [t0, t1] from the kept blocks."""
        ts, gs = [], []
        for b in self._recent:
            if b.t[-1] < t0 or b.t[0] > t1:
                continue
            cols = [b.plate_ids.index(p) for p in plate_ids if p in b.plate_ids]
            m = (b.t >= t0) & (b.t <= t1)
            ts.append(b.t[m])
            gs.append(b.grams[m][:, cols])
        if not ts:
            return None
        return WeightTrace(np.concatenate(ts), np.concatenate(gs), plate_ids)

    def _issue(self, s: Session) -> None:
        """Issue (or, after a verdict, re-issue as the next revision) a session's receipt.

        A staff session gets none (nothing is charged); leaving with stock they took off the
        plates raises ``staff_left_with_goods``, the operator's record that it was no sale."""
        if s.staff:
            if s.state != SessionState.CLOSED:
                s.state = SessionState.CLOSED
                gone = +self._removed.get(s.session_id, Counter())
                if gone:
                    what = ", ".join(f"{q} × {p}" for p, q in sorted(gone.items()))
                    self.alerts.append(Alert(s.exited_at if s.exited_at is not None
                                             else self._now, "staff_left_with_goods",
                                             f"{_staff_name(s.session_id)} left with {what} "
                                             "taken off the shelves (a stock removal, not a "
                                             "sale)", s.session_id))
            return
        s.state = SessionState.CLOSED
        prev = self.receipts.get(s.session_id)
        r = build_receipt(s, self.ledger.entries(s.session_id), self.store, self._reviewed,
                          revision=0 if prev is None else prev.revision + 1)
        if not r.needs_review and any(c.open and s.session_id in c.sessions
                                      for c in self.cases.values()):
            r = replace(r, needs_review=True)  # a case may still add a line (unlisted pick)
        self.receipts[s.session_id] = r
        self.issued.append(r)
        if not s.bound or not s.credential:
            self._unbound_goods(s, r, prev)

    def _unbound_goods(self, s: Session, r: Receipt, prev: Receipt | None) -> None:
        """An unbound person (nobody's scan: a tailgater, a refused entry walked in anyway)
        leaving with goods raises ``unbound_left_with_goods``, what and for how much: their
        receipt names no payer, so the alert is the store's only word of it at the exit. A
        revision (a verdict) that changes what they took raises it again."""
        if not r.lines or (prev is not None and prev.counts() == r.counts()):
            return
        what = ", ".join(f"{ln.quantity} × {ln.product_id}" for ln in r.lines)
        again = f" (revised by a review verdict, revision {r.revision})" if r.revision else ""
        self.alerts.append(Alert(s.exited_at if s.exited_at is not None else self._now,
                                 "unbound_left_with_goods",
                                 f"{s.session_id}, bound to no visit, left with {what}: "
                                 f"{r.total} {r.currency} charged to nobody{again}",
                                 s.session_id))


def _staff_name(sid: str) -> str:
    return "the store (closed)" if sid == "store" else f"staff session {sid}"


def _attribution_reasons(att: Attribution) -> tuple[str, ...]:
    if att.session_id is None:
        return ("no shopper's hand was near the plate",)
    if att.needs_review and att.by_arm:
        return (f"no wrist seen in the plate; shopper uncertain by the arm's direction "
                f"(confidence {att.confidence:.2f})",)
    if att.needs_review:
        return (f"shopper uncertain (confidence {att.confidence:.2f})",)
    return ()
