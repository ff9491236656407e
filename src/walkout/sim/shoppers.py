"""Simulated shoppers: arrival, walking between gondolas, reaching into plates, exit.

Each shopper is planned in arrival order against a shared schedule of plate use, so that the
standard mix has shoppers close together and on neighbouring plates at once, but never two
hands in the same plate at the same moment (those cases are named scenarios of their own).
The output is ground truth: body paths, plate interactions, gate events and true receipts.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from walkout.events import L_WRIST, R_WRIST, GateEvent, StoreModeChange
from walkout.sim.body import BodyState, skeleton
from walkout.sim.cameras import PersonPath
from walkout.sim.floor import FloorGrid
from walkout.sim.loadcell import PlateInteraction
from walkout.store.model import Gondola, Store

BODY_HZ = 30.0
STAND_OFFSET = 0.35  # m between the gondola face and a standing shopper's pelvis
STEP_BACK_M = 0.6  # m out into the aisle before walking on from a shelf spot (and in again)


class ShopperConfig(BaseModel):
    """How the standard mix of shoppers behaves."""

    model_config = ConfigDict(extra="forbid")

    mean_arrival_gap_s: float = Field(8.0, gt=0, description="mean time between arrivals")
    speed_mps: tuple[float, float] = Field((0.7, 1.5), description="walking speed range")
    mean_stops: float = Field(2.5, ge=0, description="mean plates visited per shopper")
    max_stops: int = Field(6, ge=1, description="most plates one shopper visits")
    multi_item_p: float = Field(0.2, ge=0, le=1, description="chance a pick takes 2–3 items")
    put_back_p: float = Field(0.15, ge=0, le=1, description="chance a shopper puts one back")
    put_elsewhere_p: float = Field(
        0.25, ge=0, le=1, description="of put-backs, the share put on another plate"
    )
    press_g: tuple[float, float] = Field(
        (0.0, 400.0), description="range of extra force of a hand on the plate (g)"
    )
    height_m: tuple[float, float] = Field((1.5, 1.95), description="range of body heights")
    body_gap_m: float = Field(
        0.5, gt=0, description="walkers keep this far from other people (hip to hip)"
    )
    close_gap_m: float = Field(
        0.3, gt=0, description="a visit that brings someone closer than this (hip to hip) to "
        "another person is carried out again, up to replan_tries times"
    )
    replan_tries: int = Field(9, ge=1, description="attempts at a visit that keeps its distance")
    min_gap_m: float = Field(
        0.6, ge=0, description="nobody stands closer than this to another shopper at a shelf"
    )
    gate_gap_s: float = Field(
        4.0, ge=0, description="people pass a gate one at a time, at least this far apart"
    )


@dataclass(frozen=True, slots=True)
class TrueEvent:
    """What really happened at a shelf (ground truth, never read by the engine)."""

    shopper: str
    #: "pick" | "put" | "drop" (left off-shelf: on the floor; no plate sees it) | "restock" |
    #: "remove" (staff hands adding or taking away stock: a put or pick for the plate, no sale)
    kind: str
    product_id: str
    quantity: int
    plates: tuple[str, ...]
    t_in: float
    t_out: float
    t_change: float


@dataclass
class _Shelving:
    """Where each product is, how many are left, and who uses which plate when."""

    store: Store
    stock: list[int] = field(default_factory=list)
    #: items left where they do not belong: (plates, product) -> their weights
    misplaced: dict[tuple[tuple[str, ...], str], list[float]] = field(default_factory=dict)
    busy: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)  # + owner
    #: items on a plate from the start that its planogram does not list (a stocking error)
    preloaded: list[tuple[tuple[str, ...], str, float]] = field(default_factory=list)

    def preload(self, plates: tuple[str, ...], product: str, weights: list[float]) -> None:
        """Put items on ``plates`` before opening, where the planogram says they are not."""
        self.misplaced.setdefault((plates, product), []).extend(weights)
        self.preloaded += [(plates, product, w) for w in weights]

    def __post_init__(self) -> None:
        self.stock = [e.stock for e in self.store.planogram]

    stands: list[tuple[np.ndarray, float, float, int]] = field(default_factory=list)  # + owner

    def free_at(self, plates: tuple[str, ...], xy: np.ndarray | None, t0: float, length: float,
                min_gap_m: float = 0.0, owner: int | None = None) -> float:
        """Earliest start >= t0 at which, for ``length`` s, no other hand is in these plates
        and nobody else stands within ``min_gap_m`` of ``xy`` (``owner``'s own spots aside)."""
        start = t0
        moved = True
        while moved:
            moved = False
            spans = [(a, b) for p in plates for a, b, o in self.busy.get(p, [])
                     if owner is None or o != owner]
            if xy is not None:
                spans += [(a, b) for q, a, b, o in self.stands
                          if (owner is None or o != owner) and np.hypot(*(q - xy)) < min_gap_m]
            for a, b in spans:
                if start < b and a < start + length:
                    start, moved = b, True
        return start

    def book(self, plates: tuple[str, ...], t0: float, t1: float, owner: int = -1) -> None:
        for p in plates:
            self.busy.setdefault(p, []).append((t0, t1, owner))

    def book_stand(self, xy: np.ndarray, t0: float, t1: float, owner: int = -1) -> None:
        self.stands.append((xy, t0, t1, owner))


def sample_walk(
    polyline: np.ndarray, speed: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Positions, headings and distances walked at each 30 Hz sample along a polyline."""
    seg = np.diff(polyline, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    total = float(lengths.sum())
    if total < 0.05:
        return None
    n = max(1, int(np.ceil(total / speed * BODY_HZ)))  # never faster than ``speed``
    s = np.linspace(0, total, n + 1)[1:]
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(seg) - 1)
    frac = ((s - cum[k]) / np.maximum(lengths[k], 1e-9))[:, None]
    return polyline[k] + seg[k] * frac, np.arctan2(seg[k, 1], seg[k, 0]), s


@dataclass
class _Timeline:
    """Body states of one shopper, appended segment by segment on the 30 Hz grid."""

    t0: float
    height: float
    owner: int = -1  # person id: their own plate bookings never hold them up
    parts: list[dict[str, np.ndarray]] = field(default_factory=list)
    t: float = 0.0
    xy: np.ndarray = field(default_factory=lambda: np.zeros(2))
    heading: float = np.pi / 2
    gait: float = 0.0
    aisle: np.ndarray | None = None  # at a shelf spot: the point behind it in the aisle

    def __post_init__(self) -> None:
        self.t = self.t0

    def _n(self, seconds: float) -> int:
        return max(1, round(seconds * BODY_HZ))

    def _add(self, n: int, **cols: np.ndarray) -> None:
        base = {
            "xy": np.broadcast_to(self.xy, (n, 2)),
            "heading": np.full(n, self.heading),
            "gait": np.full(n, self.gait),
            "stride": np.zeros(n),
            "reach": np.zeros(n),
            "reach_target": np.zeros((n, 3)),
            "reach_wrist": np.full(n, R_WRIST),
        }
        base.update(cols)
        self.parts.append(base)
        self.t += n / BODY_HZ

    def stand(self, seconds: float) -> None:
        self._add(self._n(seconds))

    def walk(self, polyline: np.ndarray, speed: float) -> None:
        sampled = sample_walk(polyline, speed)
        if sampled is None:
            return
        xy, heading, s = sampled
        n, total = len(s), float(s[-1])
        gait = self.gait + s * (np.pi / 0.7)  # one gait cycle per ~1.4 m
        ramp = np.minimum(1.0, np.minimum(s, total - s) / 0.3 + 0.2)
        self._add(n, xy=xy, heading=heading, gait=gait, stride=ramp)
        self.xy, self.heading, self.gait = xy[-1].copy(), float(heading[-1]), float(gait[-1])

    def turn_to(self, heading: float) -> None:
        self.heading = heading

    def reach(self, target: np.ndarray, wrist: int, dwell: float) -> tuple[float, float]:
        """Reach out, hold for ``dwell`` s, come back; returns the time span of the hold."""
        up, down = self._n(0.5), self._n(0.5)
        hold = self._n(dwell)
        prof = np.concatenate(
            [0.5 - 0.5 * np.cos(np.linspace(0, np.pi, up)), np.ones(hold),
             0.5 + 0.5 * np.cos(np.linspace(0, np.pi, down))]
        )
        t_hold0 = self.t + up / BODY_HZ
        n = len(prof)
        self._add(
            n, reach=prof, reach_target=np.broadcast_to(target, (n, 3)),
            reach_wrist=np.full(n, wrist),
        )
        return t_hold0, t_hold0 + hold / BODY_HZ

    def positions(self) -> np.ndarray:
        """(n, 2) floor position at every 30 Hz sample so far."""
        return np.concatenate([np.asarray(p["xy"]) for p in self.parts])

    def path(self, person_id: int) -> PersonPath:
        cols = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        n = len(cols["heading"])
        state = BodyState(height=self.height, **cols)
        return PersonPath(
            person_id=person_id,
            t=self.t0 + np.arange(n) / BODY_HZ,
            joints=skeleton(state),
        )


@dataclass(frozen=True, slots=True)
class Take:
    """Take ``quantity`` items of a planogram entry from its footprint."""

    entry: int  # index into store.planogram
    quantity: int = 1
    hold_s: float | None = None  # how long the hand stays in the plate (default: random)
    at: float | None = None  # have the hand in the plate at this time (synchronised scenarios)
    stand_offset_m: float = 0.0  # stand this far along the face from the reach point
    pause_s: float | None = None  # looking at the shelf afterwards (default: random 0.5–5 s)


@dataclass(frozen=True, slots=True)
class PutBack:
    """Put one held item down: on ``plates`` (default: where it came from)."""

    plates: tuple[str, ...] = ()
    product_id: str | None = None  # which held product (default: first taken, or last)
    last: bool = False
    hold_s: float | None = None
    at: float | None = None
    stand_offset_m: float = 0.0


@dataclass(frozen=True, slots=True)
class TakeMisplaced:
    """Take an item somebody left on the wrong plate (``plates``) earlier."""

    plates: tuple[str, ...]
    product_id: str
    hold_s: float | None = None
    at: float | None = None
    stand_offset_m: float = 0.0


@dataclass(frozen=True, slots=True)
class HandOver:
    """Meet another visitor at ``spot`` (floor x, y) facing ``heading`` and, at ``at``, hand
    them the last item held (``give``) or take one from them (not ``give``)."""

    partner: str  # the other visitor's credential
    give: bool
    at: float
    spot: tuple[float, float]
    heading: float


@dataclass(frozen=True, slots=True)
class Drop:
    """Walk to ``spot`` (floor x, y) and leave one held item on the floor there: bend down
    until the wrist is near the floor, let go, stand up. No plate sees it; the item is not
    bought (staff pick it up)."""

    spot: tuple[float, float]
    heading: float = 0.0
    product_id: str | None = None  # which held product (default: the last one taken)


@dataclass(frozen=True, slots=True)
class Hide:
    """Walk into ``area`` (floor x0, y0, x1, y1: a place no camera sees, e.g. a fitting room),
    stay ``stay_s`` seconds, come out where one went in."""

    area: tuple[float, float, float, float]
    stay_s: float


@dataclass(frozen=True, slots=True)
class Restock:
    """Staff: put ``quantity`` items of a planogram entry on its footprint in one go (a tray
    of stock: far more than a shopper's grab). Not a sale."""

    entry: int
    quantity: int
    hold_s: float = 3.0


@dataclass(frozen=True, slots=True)
class RemoveStock:
    """Staff: take ``quantity`` items of a planogram entry off its footprint in one go
    (expired or damaged goods). Not a sale."""

    entry: int
    quantity: int
    hold_s: float = 2.0


Action = Take | PutBack | TakeMisplaced | HandOver | Drop | Hide | Restock | RemoveStock


@dataclass(frozen=True, slots=True)
class TrueHandOver:
    """An item passed from hand to hand (ground truth)."""

    giver: str
    receiver: str
    product_id: str
    t: float


@dataclass(frozen=True, slots=True)
class Plan:
    """What one visitor will do, in order; scenarios write these by hand."""

    credential: str
    t_arrive: float
    actions: tuple[Action, ...]
    scans: bool = True  # False: slips in without scanning (tailgating)
    party_size: int = 1
    wrist: int | None = None  # hand used (default: right for 3 in 4 people)


@dataclass
class ShopperResult:
    """Ground truth of one simulated visit."""

    credential: str
    path: PersonPath
    gates: list[GateEvent]
    interactions: list[PlateInteraction]
    events: list[TrueEvent]
    receipt: Counter[str]
    handovers: list[TrueHandOver] = field(default_factory=list)


def _approach(xy: np.ndarray, dest: np.ndarray, last_m: float = 0.7) -> np.ndarray:
    """The samples of a walk before its final ``last_m`` metres."""
    far = np.hypot(*(xy - dest).T) > last_m
    return xy[: int(np.flatnonzero(far)[-1]) + 1] if far.any() else xy[:0]


def _length(polyline: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(polyline, axis=0), axis=1).sum())


def _stand_point(g: Gondola, x: float) -> tuple[np.ndarray, float]:
    fx, fy = g.front
    face_y = g.box.max[1] if fy > 0 else g.box.min[1]
    face_x = g.box.max[0] if fx > 0 else g.box.min[0]
    if abs(fy) > 0.5:
        xy = np.array([x, face_y + fy * STAND_OFFSET])
    else:
        xy = np.array([face_x + fx * STAND_OFFSET, x])
    return xy, float(np.arctan2(-fy, -fx))


class ShopperSimulator:
    """Plans shoppers one after another against shared shelving and plate schedules."""

    def __init__(self, store: Store, config: ShopperConfig, rng: np.random.Generator) -> None:
        self.store, self.config, self.rng = store, config, rng
        self.floor = FloorGrid(store)
        self.shelving = _Shelving(store)
        self.plate_col = store.plate_index
        self.entry = store.gates_of("entry")[0]
        self.exit = store.gates_of("exit")[0]
        self._bodies: list[tuple[float, np.ndarray]] = []  # (t0, 30 Hz floor positions)
        #: the store marked closed (restock mode) or open again by scenarios, in time order
        self.store_modes: list[StoreModeChange] = []
        #: stock moved by no hand any camera sees (:meth:`stock_from_behind`): each visit's
        #: plate interactions and its true event
        self.unseen: list[tuple[list[PlateInteraction], TrueEvent]] = []

    def set_store_mode(self, t: float, closed: bool) -> None:
        """The operator marks the store closed or open at ``t`` (an input of the engine the
        recording carries, not something the sensors see)."""
        self.store_modes.append(StoreModeChange(t, closed))

    def stock_from_behind(self, who: str, entry: int, quantity: int, at: float,
                          rng: np.random.Generator, add: bool = True,
                          hold_s: float = 3.0) -> TrueEvent | None:
        """Put ``quantity`` items of a planogram entry on its footprint (``add``) or take them
        off, from behind the shelf: a walk-in cooler's shelves loaded from the back room, where
        no camera sees the hand. Only the load cells see it: on a store marked closed the
        engine books it as a restock or removal, on an open one it is a review case.
        ``at``: the earliest moment (the plate's schedule may push it later). ``rng``: the
        caller's (a scenario's), so that the shoppers' draws stay as they were."""
        entry_ = self.store.planogram[entry]
        product = self.store.products[entry_.product]
        qty = quantity if add else min(quantity, self.shelving.stock[entry])
        if qty <= 0:
            return None
        plates = tuple(entry_.plates)
        weights = rng.normal(product.weight_g, product.weight_sd_g, size=qty)
        t_in = self.shelving.free_at(plates, None, at, hold_s + 2.5)
        t_out = t_in + hold_s
        self.shelving.book(plates, t_in - 2.0, t_out + 3.0)
        self.shelving.stock[entry] += qty if add else -qty
        t_change = float(rng.uniform(t_in + 0.3 * hold_s, t_out - 0.3 * hold_s))
        press = float(rng.uniform(*self.config.press_g))
        delta = float(weights.sum()) * (1 if add else -1)
        out = [PlateInteraction(plate=self.plate_col[p], t_in=t_in, t_out=t_out,
                                t_change=t_change, delta_g=delta / len(plates),
                                press_g=press / len(plates)) for p in plates]
        ev = TrueEvent(who, "restock" if add else "remove", product.id, qty, plates, t_in,
                       t_out, t_change)
        self.unseen.append((out, ev))
        return ev

    def _others_at(self, times: np.ndarray) -> list[np.ndarray]:
        """Positions (len(times), 2) of every earlier-planned person, NaN where absent."""
        out = []
        for t0, xy in self._bodies:
            if t0 > times[-1] or t0 + len(xy) / BODY_HZ < times[0]:
                continue
            idx = np.round((times - t0) * BODY_HZ).astype(int)
            ok = (idx >= 0) & (idx < len(xy))
            pos = np.full((len(times), 2), np.nan)
            pos[ok] = xy[idx[ok]]
            out.append(pos)
        return out

    def _clear(self, xy: np.ndarray, t0: float, min_gap: float) -> bool:
        """Whether a walk keeps ``min_gap`` from everybody planned earlier; from somebody it
        starts closer to than that, it must only not come closer (stepping away is fine)."""
        if len(xy) == 0:
            return True
        times = t0 + np.arange(1, len(xy) + 1) / BODY_HZ
        for pos in self._others_at(times):
            d = np.hypot(*(pos - xy).T)
            limit = min(min_gap, float(d[0])) if np.isfinite(d[0]) else min_gap
            if np.nanmin(d, initial=np.inf) < limit - 0.02:
                return False
        return True

    def _free_spot(
        self, draw: Callable[[], np.ndarray], t: float, tries: int = 20,
        horizon_s: float = 10.0, gap_m: float = 0.8,
    ) -> np.ndarray:
        """A spot from ``draw`` where nobody already planned stands for ``horizon_s``; if
        none of ``tries`` draws is, the walkable one farthest from everybody (a crowd does
        not push people into the shelving)."""
        times = t + np.arange(0.0, horizon_s, 0.25)
        others = self._others_at(times)
        first = spot = draw()
        best: tuple[float, np.ndarray] | None = None
        for _ in range(tries):
            if self.floor.free[tuple(self.floor.ij(spot))]:
                room = min(
                    (float(np.nanmin(np.hypot(*(pos - spot).T), initial=np.inf))
                     for pos in others), default=np.inf,
                )
                if room >= gap_m:
                    return spot
                if best is None or room > best[0]:
                    best = (room, spot)
            spot = draw()
        return first if best is None else best[1]

    def _linger(self, tl: _Timeline, seconds: float) -> None:
        """Wait ``seconds``; first step aside to a nearby free spot if the current one will be
        taken by somebody already planned (people do not stand inside each other)."""
        times = tl.t + np.arange(0.0, seconds + 0.5, 0.25)
        here = tl.xy.copy()
        crowded = any(
            np.nanmin(np.hypot(*(pos - here).T), initial=np.inf) < self.config.body_gap_m + 0.1
            for pos in self._others_at(times)
        )
        if crowded:
            rng = self.rng
            spot = self._free_spot(
                lambda: here + rng.uniform(-0.8, 0.8, size=2), tl.t,
                horizon_s=seconds + 1.0, gap_m=self.config.body_gap_m + 0.1,
            )
            self._walk(tl, spot, self.config.speed_mps[1])
        tl.stand(max(seconds - (tl.t - times[0]), 0.0))

    def _walk(
        self, tl: _Timeline, dest: np.ndarray, speed: float, step_in: bool = True
    ) -> None:
        """Walk to ``dest`` without walking through anybody: go round people standing in the
        way, and wait (up to 6 s) for people crossing to pass; then go regardless.
        ``step_in``: the last steps go into a spot beside others at a shelf, allowed close.
        From a shelf spot, people first step back into the aisle (unless the next spot is
        the neighbouring one)."""
        back, tl.aisle = tl.aisle, None
        if back is not None and float(np.hypot(*(dest - tl.xy))) > STEP_BACK_M + 0.1:
            self._walk(tl, back, speed, step_in=False)
        gap = self.config.body_gap_m
        path = self.floor.path(tl.xy, dest)

        def checked(xy: np.ndarray) -> np.ndarray:
            return _approach(xy, dest) if step_in else xy

        for _ in range(12):
            sampled = sample_walk(path, speed)
            if sampled is None or self._clear(checked(sampled[0]), tl.t, gap):
                break
            standing = self._standing_in_the_way(checked(sampled[0]), tl.t, gap)
            if standing:
                try:
                    detour = self.floor.path(tl.xy, dest, np.array(standing), radius=gap + 0.1)
                except ValueError:  # they block the only way: wait for them instead
                    detour = path
                d_sampled = sample_walk(detour, speed)
                # waiting does not move people who stand: go round them in any case, and wait
                # only for those walking by
                path = detour
                if d_sampled is None or self._clear(checked(d_sampled[0]), tl.t, gap):
                    break
            tl.stand(0.5)
        tl.walk(path, speed)

    def _standing_in_the_way(self, xy: np.ndarray, t0: float, gap: float) -> list[np.ndarray]:
        """Where people this walk would come within ``gap`` of stand still then (moving less
        than 0.3 m over 1 s either side): waiting for them does not help, going round does."""
        times = t0 + np.arange(1, len(xy) + 1) / BODY_HZ
        out = []
        for pos in self._others_at(times):
            d = np.hypot(*(pos - xy).T)
            if not np.nanmin(d, initial=np.inf) < gap:
                continue
            k = int(np.nanargmin(d))
            w = int(BODY_HZ)
            around = pos[max(k - w, 0) : k + w + 1]
            around = around[np.isfinite(around[:, 0])]
            if len(around) and np.ptp(around, axis=0).max() < 0.3:
                out.append(around.mean(axis=0))
        return out

    def _reach_target(
        self, plates: tuple[str, ...], near: float | None = None
    ) -> tuple[np.ndarray, float]:
        """A point inside the footprint (first plate's front part) and the along-face coordinate;
        with ``near``, within a third of the usual spread of that along-face coordinate."""
        boxes = [self.store.plates[p].box for p in plates]
        lo = np.min([b.min for b in boxes], axis=0)
        hi = np.max([b.max for b in boxes], axis=0)
        g = self.store.plate_gondola[plates[0]]
        along = 0 if abs(g.front[1]) > 0.5 else 1
        a = self.rng.uniform(lo[along] + 0.08, hi[along] - 0.08)
        if near is not None:
            a = float(np.clip(near + (a - 0.5 * (lo[along] + hi[along])) / 3.0,
                              lo[along] + 0.08, hi[along] - 0.08))  # same draw, narrowed
        target = np.empty(3)
        target[along] = a
        depth_axis = 1 - along
        front_sign = g.front[depth_axis]
        face = hi[depth_axis] if front_sign > 0 else lo[depth_axis]
        target[depth_axis] = face - front_sign * self.rng.uniform(0.08, 0.2)
        target[2] = lo[2] + self.rng.uniform(0.04, 0.12)
        return target, a

    def _footprint_centre(self, plates: tuple[str, ...]) -> float:
        """The along-face coordinate of the middle of a footprint."""
        boxes = [self.store.plates[p].box for p in plates]
        g = self.store.plate_gondola[plates[0]]
        along = 0 if abs(g.front[1]) > 0.5 else 1
        return 0.5 * (min(b.min[along] for b in boxes) + max(b.max[along] for b in boxes))

    def _interact(
        self, tl: _Timeline, plates: tuple[str, ...], delta_g: float, wrist: int,
        hold_s: float | None = None, at: float | None = None, stand_offset_m: float = 0.0,
        pause_s: float | None = None,
    ) -> tuple[list[PlateInteraction], tuple[float, float, float]]:
        """Walk to a footprint, wait until it is free, reach in, change its load, look around.

        ``at`` asks for the hand to be in the plate at that time (scenarios that synchronise
        shoppers); it overrides the plate schedule but not physics: nobody walks faster.
        """
        g = self.store.plate_gondola[plates[0]]
        # People scripted side by side (``at``) reach near the middle of their footprints:
        # reaching anywhere in them would put neighbours' hips as little as 0.16 m apart,
        # bodies inside each other.
        centre = None if at is None else self._footprint_centre(plates)
        target, along = self._reach_target(plates, near=centre)
        stand, heading = _stand_point(g, along + stand_offset_m)
        speed = self.rng.uniform(*self.config.speed_mps)
        walk_s = _length(self.floor.path(tl.xy, stand)) / speed
        dwell = float(self.rng.uniform(0.6, 1.8)) if hold_s is None else hold_s
        pause = float(self.rng.uniform(0.5, 5.0)) if pause_s is None else pause_s
        stay = 1.2 + dwell + pause
        if at is None:
            arrive = self.shelving.free_at(
                plates, stand, tl.t + walk_s, stay, self.config.min_gap_m, owner=tl.owner
            )
        else:
            # a scripted moment: come into the aisle behind the spot early and browse there
            # (people converging on one shelf at one moment would otherwise all walk there at
            # once, through each other)
            front = self._aisle_point(stand, g)
            if front is not None and float(np.hypot(*(tl.xy - stand))) > STEP_BACK_M + 0.1:
                t_there = tl.t + _length(self.floor.path(tl.xy, front)) / speed
                rng, first = self.rng, [True]

                def near_front() -> np.ndarray:  # the point itself, else somewhere close by
                    if first:
                        first.clear()
                        return front
                    return front + rng.uniform(-0.6, 0.6, size=2)

                spot = self._free_spot(
                    near_front, t_there, horizon_s=max(at - t_there, 1.0),
                    gap_m=self.config.body_gap_m + 0.1,
                )
                self._walk(tl, spot, speed, step_in=False)
                walk_s = _length(self.floor.path(tl.xy, stand)) / speed
            arrive = max(tl.t + walk_s, at - 0.5)
        if arrive > tl.t + walk_s:  # lingers until the spot is free (or the scripted
            # moment comes), out of others' way
            self._linger(tl, arrive - tl.t - walk_s)
            walk_s = _length(self.floor.path(tl.xy, stand)) / speed
        t_arrive = tl.t + walk_s
        self._walk_in(tl, stand, g, speed)
        if at is None:
            # going round people can make them late, and meanwhile somebody planned earlier
            # may stand at or beside the spot: then they wait aside and come back
            for _ in range(4):
                free = self.shelving.free_at(
                    (), stand, tl.t, stay, self.config.min_gap_m, owner=tl.owner
                )
                if free <= tl.t:
                    break
                self._linger(tl, free - tl.t)
                self._walk_in(tl, stand, g, speed)
        t_arrive = tl.t
        tl.turn_to(heading)
        if at is None:  # walking round people may have made them late: the plate may be busy
            start = self.shelving.free_at(plates, None, tl.t, dwell + 2.5, owner=tl.owner)
            if start > tl.t:
                tl.stand(start - tl.t)
        t_in, t_out = tl.reach(target, wrist, dwell)
        # the next hand waits until this one is well clear (close calls are scenarios)
        self.shelving.book(plates, t_in - 2.0, t_out + 3.0, owner=tl.owner)
        t_change = float(self.rng.uniform(t_in + 0.15 * dwell, t_out - 0.15 * dwell))
        press = float(self.rng.uniform(*self.config.press_g))
        shares = self.rng.uniform(0.3, 0.7) if len(plates) == 2 else 1.0
        parts = [shares, 1 - shares] if len(plates) == 2 else [1.0 / len(plates)] * len(plates)
        out = [
            PlateInteraction(
                plate=self.plate_col[p], t_in=t_in, t_out=t_out, t_change=t_change,
                delta_g=delta_g * f, press_g=press * f,
            )
            for p, f in zip(plates, parts, strict=True)
        ]
        tl.stand(pause)
        # the spot was theirs for as long as they really stood there (delays included)
        self.shelving.book_stand(stand, t_arrive - 0.5, tl.t + 0.5, owner=tl.owner)
        tl.aisle = self._aisle_point(stand, g)  # the next walk away steps back there first
        return out, (t_in, t_out, t_change)

    def _aisle_point(self, stand: np.ndarray, g: Gondola) -> np.ndarray | None:
        """The point ``STEP_BACK_M`` out into the aisle from a shelf spot (None where the
        floor there is not walkable: a narrow aisle, a wall)."""
        xy = stand + STEP_BACK_M * np.asarray(g.front[:2], dtype=float)
        ij = self.floor.ij(xy)
        inside = all(0 <= int(k) < n for k, n in zip(ij, self.floor.free.shape, strict=True))
        return xy if inside and bool(self.floor.free[tuple(ij)]) else None

    def _walk_in(self, tl: _Timeline, stand: np.ndarray, g: Gondola, speed: float) -> None:
        """Come to a shelf spot from the aisle, then step in: walking along the line where
        people stand at the shelf would go through them (their neighbours are ``min_gap_m``
        apart there), people go along the aisle behind them."""
        front = self._aisle_point(stand, g)
        if front is not None and float(np.hypot(*(tl.xy - stand))) > STEP_BACK_M + 0.1:
            self._walk(tl, front, speed, step_in=False)
        self._walk(tl, stand, speed)

    def random_plan(self, credential: str, t_arrive: float) -> Plan:
        """The standard mix: a few picks, sometimes a put-back (same plate or elsewhere)."""
        cfg, rng = self.config, self.rng
        n_stops = int(min(cfg.max_stops, rng.poisson(cfg.mean_stops) + 1))
        puts_back = rng.random() < cfg.put_back_p
        put_elsewhere = puts_back and rng.random() < cfg.put_elsewhere_p
        stocked = [i for i, n in enumerate(self.shelving.stock) if n > 0]
        actions: list[Action] = []
        if not stocked:
            return Plan(credential, t_arrive, ())
        for stop in range(n_stops):
            e_idx = int(rng.choice(stocked))
            plates = tuple(self.store.planogram[e_idx].plates)
            if put_elsewhere and stop == n_stops - 1 and stop > 0:
                actions.append(PutBack(plates=plates[:1]))  # the first item, on a wrong plate
                break
            qty = 1
            if rng.random() < cfg.multi_item_p:
                qty = int(rng.choice([2, 3], p=[0.75, 0.25]))
            actions.append(Take(entry=e_idx, quantity=qty))
            if puts_back and not put_elsewhere and stop == 0:
                actions.append(PutBack(plates=plates, last=True))  # changes their mind at once
        return Plan(credential, t_arrive, tuple(actions))

    def shopper(self, person_id: int, credential: str, t_arrive: float) -> ShopperResult:
        """Plan and carry out one standard-mix visit."""
        return self.execute(person_id, self.random_plan(credential, t_arrive))

    def execute(self, person_id: int, plan: Plan) -> ShopperResult:
        """Carry out a plan: entry scan, its actions in order, exit; returns the ground truth.

        Everybody planned earlier is fixed, so the avoidance rules of the walk can still leave
        this visitor passing through someone (crossing head-on near a shelf spot, standing where
        another walks by). People do not do that: the visit is then carried out again (other
        random draws, a little later) and the one coming least close is kept. Scripted visits
        (scenario moments, followers) are carried out once, as written.
        """
        scripted = not plan.scans or any(getattr(a, "at", None) is not None for a in plan.actions)
        tries = 1 if scripted else self.config.replan_tries
        best: tuple[float, int, ShopperResult, _Shelving, object] | None = None
        for k in range(tries):
            shelving = copy.deepcopy(self.shelving)
            rng_state = self.rng.bit_generator.state
            # a little later each time, then (the crowd still in the way) much later
            delay = 1.5 * k if k < 5 else 7.5 + 6.0 * (k - 4)
            shifted = replace(plan, t_arrive=plan.t_arrive + delay)
            res, positions, t0 = self._execute(person_id, shifted)
            close = self._too_close(t0, positions)
            if best is None or close < best[0]:
                best = (close, k, res, self.shelving, (t0, positions))
            if close == 0.0 or k == tries - 1:
                break
            self.shelving = shelving  # undo this attempt's bookings
            self.rng.bit_generator.state = rng_state
            self.rng.random()  # and draw differently next time
        assert best is not None
        _, _, res, self.shelving, body = best
        self._bodies.append(body)  # type: ignore[arg-type]
        self._book_stops(*body, owner=person_id)  # type: ignore[misc]
        return res

    def _book_stops(
        self, t0: float, positions: np.ndarray, owner: int, min_s: float = 1.0
    ) -> None:
        """Book every place this visitor stood still for ``min_s`` or more, not only the spots
        in front of plates: a scripted wait, a hand-over, a bend to the floor happen somewhere
        too, and a later shopper must not choose a shelf spot inside them."""
        n = len(positions)
        if n < 2:
            return
        step = np.hypot(*np.diff(positions, axis=0).T) * BODY_HZ  # m/s between samples
        still = np.concatenate([[False], step < 0.05, [False]])
        edges = np.flatnonzero(np.diff(still.astype(np.int8)))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            if (b - a) / BODY_HZ >= min_s:
                xy = positions[a : b + 1].mean(axis=0)
                self.shelving.book_stand(xy, t0 + a / BODY_HZ - 0.5, t0 + b / BODY_HZ + 0.5, owner)

    def _too_close(self, t0: float, positions: np.ndarray) -> float:
        """Seconds this visitor spends within ``close_gap_m`` of anybody planned earlier."""
        times = t0 + np.arange(len(positions)) / BODY_HZ
        total = 0
        for pos in self._others_at(times):
            total += int(np.count_nonzero(np.hypot(*(pos - positions).T) < self.config.close_gap_m))
        return total / BODY_HZ

    def _execute(self, person_id: int, plan: Plan) -> tuple[ShopperResult, np.ndarray, float]:
        cfg, rng, store = self.config, self.rng, self.store
        # people pass a gate one at a time: a later arrival waits outside
        entry_key = (f"gate:{self.entry.id}",)
        gap = cfg.gate_gap_s
        ea = self.entry.area
        if plan.scans:
            t_arrive = self.shelving.free_at(entry_key, None, plan.t_arrive, gap)
        else:  # a follower (group member or tailgater) slips in right beside the person ahead
            t_arrive = plan.t_arrive
        tl = _Timeline(t0=t_arrive, height=float(rng.uniform(*cfg.height_m)), owner=person_id)
        tl.xy = self._free_spot(
            lambda: np.array([rng.uniform(ea.min[0] + 0.3, ea.max[0] - 0.3), ea.min[1] + 0.25]),
            t_arrive, horizon_s=2.0, gap_m=0.55,
        )
        tl.heading = np.pi / 2
        tl.stand(float(rng.uniform(1.0, 2.0)))
        # step clear of the gate before anything else: the next person needs it
        x0, y0 = tl.xy[0], ea.max[1]
        lobby = self._free_spot(
            lambda: np.array([x0 + rng.uniform(-0.3, 2.0), y0 + rng.uniform(0.8, 2.0)]), tl.t
        )
        self._walk(tl, lobby, rng.uniform(*cfg.speed_mps))
        # the gate is theirs until they are clear of it (waiting included)
        self.shelving.book(entry_key, t_arrive, max(t_arrive + gap, tl.t - 0.5))
        gates = []
        if plan.scans:
            gates.append(GateEvent(t=t_arrive + 0.7, gate_id=self.entry.id, kind="entry",
                                   credential=plan.credential, party_size=plan.party_size))
        wrist = plan.wrist if plan.wrist is not None else (
            R_WRIST if rng.random() < 0.75 else L_WRIST
        )
        interactions: list[PlateInteraction] = []
        events: list[TrueEvent] = []
        held: list[tuple[str, float, tuple[str, ...]]] = []  # product, item weight, from plates
        handovers: list[TrueHandOver] = []
        for act in plan.actions:
            if isinstance(act, Take):
                entry = store.planogram[act.entry]
                product = store.products[entry.product]
                qty = min(act.quantity, self.shelving.stock[act.entry])
                if qty <= 0:
                    continue
                weights = rng.normal(product.weight_g, product.weight_sd_g, size=qty)
                self.shelving.stock[act.entry] -= qty
                plates = tuple(entry.plates)
                inter, (t_in, t_out, t_ch) = self._interact(
                    tl, plates, -float(weights.sum()), wrist, act.hold_s, act.at,
                    act.stand_offset_m, act.pause_s,
                )
                interactions += inter
                events.append(TrueEvent(plan.credential, "pick", product.id, qty, plates,
                                        t_in, t_out, t_ch))
                held += [(product.id, float(w), plates) for w in weights]
            elif isinstance(act, PutBack):
                if not held:
                    continue
                k = next((i for i, h in enumerate(held) if h[0] == act.product_id), None)
                if k is None:
                    k = len(held) - 1 if act.last else 0
                pid, w, from_plates = held.pop(k)
                plates = act.plates or from_plates
                inter, (t_in, t_out, t_ch) = self._interact(
                    tl, plates, w, wrist, act.hold_s, act.at, act.stand_offset_m
                )
                interactions += inter
                home = next((i for i, e in enumerate(store.planogram)
                             if tuple(e.plates) == plates and e.product == pid), None)
                if home is not None:
                    self.shelving.stock[home] += 1
                else:
                    self.shelving.misplaced.setdefault((plates, pid), []).append(w)
                events.append(TrueEvent(plan.credential, "put", pid, 1, plates, t_in, t_out, t_ch))
            elif isinstance(act, TakeMisplaced):
                left = self.shelving.misplaced.get((act.plates, act.product_id), [])
                if not left:
                    continue
                w = left.pop()
                inter, (t_in, t_out, t_ch) = self._interact(
                    tl, act.plates, -w, wrist, act.hold_s, act.at, act.stand_offset_m
                )
                interactions += inter
                events.append(TrueEvent(plan.credential, "pick", act.product_id, 1, act.plates,
                                        t_in, t_out, t_ch))
                held.append((act.product_id, w, act.plates))
            elif isinstance(act, HandOver):
                self._walk(tl, np.asarray(act.spot, dtype=float), cfg.speed_mps[0])
                tl.turn_to(act.heading)
                if tl.t < act.at - 0.5:
                    tl.stand(act.at - 0.5 - tl.t)
                # both hands meet half-way between the two, at waist height
                ahead = np.array([np.cos(act.heading), np.sin(act.heading)])
                meet = np.array([*(tl.xy + 0.38 * ahead), 0.95 + 0.02 * (1 if act.give else -1)])
                _, t_out = tl.reach(meet, wrist, 0.8)
                if act.give and held:
                    pid, _, _ = held.pop()
                    handovers.append(TrueHandOver(plan.credential, act.partner, pid, t_out))
            elif isinstance(act, Drop):
                if not held:
                    continue
                k = next((i for i, h in enumerate(held) if h[0] == act.product_id),
                         len(held) - 1)
                pid, _, _ = held.pop(k)
                self._walk(tl, np.asarray(act.spot, dtype=float), rng.uniform(*cfg.speed_mps))
                tl.turn_to(act.heading)
                tl.stand(float(rng.uniform(0.3, 1.0)))
                ahead = np.array([np.cos(act.heading), np.sin(act.heading)])
                floor = np.array([*(tl.xy + 0.3 * ahead), float(rng.uniform(0.03, 0.08))])
                t_in, t_out = tl.reach(floor, wrist, float(rng.uniform(0.6, 1.2)))
                events.append(TrueEvent(plan.credential, "drop", pid, 1, (), t_in, t_out,
                                        0.5 * (t_in + t_out)))
                tl.stand(float(rng.uniform(0.5, 1.5)))
            elif isinstance(act, Restock | RemoveStock):
                entry = store.planogram[act.entry]
                product = store.products[entry.product]
                add = isinstance(act, Restock)
                qty = act.quantity if add else min(act.quantity, self.shelving.stock[act.entry])
                if qty <= 0:
                    continue
                weights = rng.normal(product.weight_g, product.weight_sd_g, size=qty)
                self.shelving.stock[act.entry] += qty if add else -qty
                plates = tuple(entry.plates)
                inter, (t_in, t_out, t_ch) = self._interact(
                    tl, plates, float(weights.sum()) * (1 if add else -1), wrist, act.hold_s
                )
                interactions += inter
                events.append(TrueEvent(plan.credential, "restock" if add else "remove",
                                        product.id, qty, plates, t_in, t_out, t_ch))
            elif isinstance(act, Hide):
                x0, y0, x1, y1 = act.area
                mid = np.array([0.5 * (x0 + x1), 0.5 * (y0 + y1)])
                door = self.floor.centre(self.floor.cell(mid))  # nearest walkable floor
                self._walk(tl, door, rng.uniform(*cfg.speed_mps))
                inside = np.array([np.clip(door[0], x0 + 0.4, x1 - 0.4),
                                   np.clip(door[1], y0 + 0.4, y1 - 0.4)])
                tl.walk(np.array([tl.xy, inside]), 0.8)
                tl.stand(act.stay_s)
                tl.walk(np.array([tl.xy, door]), 0.8)
        xa = self.exit.area
        gate_xy = np.array([rng.uniform(xa.min[0] + 0.3, xa.max[0] - 0.3), xa.min[1] + 0.6])
        speed = rng.uniform(*cfg.speed_mps)
        walk_s = _length(self.floor.path(tl.xy, gate_xy)) / speed
        exit_key = (f"gate:{self.exit.id}",)
        t_gate = self.shelving.free_at(exit_key, None, tl.t + walk_s, cfg.gate_gap_s)
        self.shelving.book(exit_key, t_gate, t_gate + cfg.gate_gap_s)
        if t_gate > tl.t + walk_s:  # lingers so as to reach a free exit gate
            tl.stand(t_gate - tl.t - walk_s)
        self._walk(tl, gate_xy, speed)
        gates.append(GateEvent(t=tl.t, gate_id=self.exit.id, kind="exit"))
        tl.walk(np.array([tl.xy, [tl.xy[0], xa.min[1] + 0.15]]), 1.0)
        tl.stand(0.3)
        receipt: Counter[str] = Counter()
        for ev in events:
            if ev.kind in ("restock", "remove"):
                continue  # staff moving stock: no sale
            receipt[ev.product_id] += ev.quantity if ev.kind == "pick" else -ev.quantity
        # a hand-over does not move a charge (the store's documented default: the shopper who
        # took it off the shelf pays); ``handovers`` records who physically left with it
        result = ShopperResult(plan.credential, tl.path(person_id), gates, interactions, events,
                               +receipt, handovers)
        return result, tl.positions(), tl.t0
