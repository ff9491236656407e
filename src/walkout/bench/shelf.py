"""Shelf-stage benchmark: many simulated plate interactions, every hard case and sensor fault.

A 160-plate store (the shipped ``small`` store, with a few plates turned into same-weight pairs)
is simulated with the realistic load-cell model (per-plate noise 0.3-10 g from the real
distribution, unknown tares, drift, quantisation, gondola vibration while shoppers are near).
Each gondola gets one scenario at a time, drawn from :data:`CASES`; a few plates carry sensor
faults instead. The shelf stage runs over the stream in 5 s blocks, as in the engine; after each
event its best hypothesis is applied to the plate inventory, as the engine would.

Scoring. Every scenario yields the settled changes it should produce (``truth``): a detected
event matches a truth change on overlapping plates within the visit's time window.
``event_precision`` = matched detections / detections; ``event_recall`` = matched truths /
truths; ``item_accuracy`` = matched truths whose best hypothesis is the right product(s) and
quantity, over truths that are not inherently ambiguous, where a truth whose weight another
explanation matches just as well (same-weight products on one plate) counts as correct when it
is routed to review (by the engine's rule, :func:`walkout.shelf.decide.choose`) with the right
answer among its hypotheses. ``review_rate`` = detections routed to review; a reviewed event's
verdict (the truth) is what the inventory then follows. ``samples_per_second`` = plate samples
(samples × plates) through the shelf stage per CPU second of one core (process time, so other
load on the machine does not change it; the wall-clock figure is reported beside it).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from walkout.events import PlateBlock, ShelfEvent
from walkout.shelf import ShelfConfig, ShelfStage
from walkout.shelf.decide import choose
from walkout.sim.loadcell import (
    PlateInteraction,
    add_dead,
    add_recalibration,
    add_spikes,
    add_stuck,
    draw_noise_g,
    drop_plates,
    simulate_plates,
)
from walkout.store import load_store
from walkout.store.model import Store

#: Interaction scenarios and their relative frequency.
CASES: dict[str, float] = {
    "pick": 4.0,
    "put_back": 1.5,
    "multi_pick": 1.0,
    "mixture": 0.6,
    "press": 1.0,
    "slow_press": 1.0,
    "held_above": 0.8,
    "rest_then_take": 0.8,
    "neighbours": 0.8,
    "two_plate": 1.0,
    "same_weight": 0.6,
    "misplaced": 0.6,
}
#: Sensor faults and the alert each must raise.
FAULTS: dict[str, str] = {
    "spikes": "plate_spikes",
    "recalibration": "plate_recalibrated",
    "dead_nan": "plate_dead",
    "dead_zero": "plate_dead",
    "stuck": "plate_stuck",
    "absent": "plate_dead",
}
RATE_HZ = 60.0


@dataclass
class Truth:
    case: str
    plates: tuple[str, ...]
    t0: float
    t1: float
    items: tuple[tuple[str, int], ...]  # signed: - taken, + put
    ambiguous: bool = False


@dataclass
class _Plan:
    interactions: list[PlateInteraction] = field(default_factory=list)
    truths: list[Truth] = field(default_factory=list)
    no_event: list[tuple[str, str, float, float]] = field(default_factory=list)  # case, plate


def bench_store() -> Store:
    """The ``small`` store with a third of its two-product plates made same-weight pairs."""
    store = load_store("small")
    data = store.model_dump(mode="python")
    weights = {p["id"]: p for p in data["catalogue"]}
    twins = [v for v in store.plate_products.values() if len(v) == 2]
    for a, b in twins[::3]:
        weights[b]["weight_g"] = weights[a]["weight_g"]
        weights[b]["weight_sd_g"] = weights[a]["weight_sd_g"]
    return Store.model_validate(data)


class _Scenarios:
    def __init__(self, store: Store, rng: np.random.Generator) -> None:
        self.store = store
        self.rng = rng
        self.idx = store.plate_index
        self.stock: dict[tuple[str, ...], Counter[str]] = {}
        self.home: dict[str, tuple[str, ...]] = {}
        for e in store.planogram:
            fp = tuple(e.plates)
            self.stock.setdefault(fp, Counter())[e.product] += e.stock
            self.home.setdefault(e.product, fp)
        self.misplaced: dict[tuple[str, ...], str] = {}
        self.plan = _Plan()

    # ---- helpers ----------------------------------------------------------------------------

    def w(self, pid: str) -> float:
        p = self.store.products[pid]
        return float(p.weight_g + p.weight_sd_g * self.rng.standard_normal())

    def visit(
        self, plate: str, t: float, delta: float, dwell: float | None = None, **kw: Any
    ) -> tuple[float, float]:
        rng = self.rng
        dwell = float(rng.uniform(1.0, 3.0)) if dwell is None else dwell
        t_change = t + float(rng.uniform(0.3, 0.7)) * dwell
        press = kw.pop("press_g", float(rng.uniform(15.0, 150.0)))
        self.plan.interactions.append(
            PlateInteraction(self.idx[plate], t, t + dwell, t_change, delta, press, **kw)
        )
        return t, t + dwell

    def truth(
        self, case: str, plates: tuple[str, ...], t0: float, t1: float,
        items: tuple[tuple[str, int], ...],
    ) -> None:
        amb = self._ambiguous(plates, items)
        self.plan.truths.append(Truth(case, plates, t0 - 1.0, t1 + 1.0, items, amb))
        for pid, q in items:
            fp = self.home[pid] if set(self.home[pid]) & set(plates) else plates
            self.stock.setdefault(fp, Counter())[pid] += q

    def _ambiguous(self, plates: tuple[str, ...], items: tuple[tuple[str, int], ...]) -> bool:
        """Another explanation with (nearly) the same weight among the plates' products."""
        prods = self.store.products
        local = {p for fp, c in self.stock.items() if set(fp) & set(plates) for p in c if c[p]}
        local |= {p for pl in plates for p in self.store.plate_products.get(pl, ())}
        true_w = sum(abs(q) * prods[p].weight_g for p, q in items)
        true_sd2 = sum(abs(q) * prods[p].weight_sd_g**2 for p, q in items)
        key = tuple(sorted((p, abs(q)) for p, q in items))
        for p in local:
            for q in range(1, 5):
                if ((p, q),) == key:
                    continue
                d = abs(q * prods[p].weight_g - true_w)
                if d < 3.0 * math.sqrt(true_sd2 + q * prods[p].weight_sd_g**2 + 4.0):
                    return True
        return False

    def fp_of(self, plate: str) -> list[tuple[tuple[str, ...], str]]:
        return [(fp, p) for fp, c in self.stock.items() if plate in fp for p in c if c[p] > 0]

    # ---- the cases (each returns the time the gondola is free again) -----------------------

    def run(self, case: str, plates: list[str], t: float) -> float:
        return float(getattr(self, f"c_{case}")(plates, t))

    def _single(self, plates: list[str], t: float, qty: int, put: bool, case: str) -> float:
        rng = self.rng
        order = rng.permutation(len(plates))
        for k in order:
            plate = plates[k]
            opts = [(fp, p) for fp, p in self.fp_of(plate) if len(fp) == 1]
            opts = [(fp, p) for fp, p in opts if put or self.stock[fp][p] >= qty]
            if opts:
                fp, pid = opts[int(rng.integers(len(opts)))]
                sign = 1 if put else -1
                delta = sign * sum(self.w(pid) for _ in range(qty))
                t0, t1 = self.visit(plate, t, delta)
                self.truth(case, fp, t0, t1, ((pid, sign * qty),))
                return t1
        return t

    def c_pick(self, plates: list[str], t: float) -> float:
        return self._single(plates, t, 1, False, "pick")

    def c_put_back(self, plates: list[str], t: float) -> float:
        return self._single(plates, t, 1, True, "put_back")

    def c_multi_pick(self, plates: list[str], t: float) -> float:
        return self._single(plates, t, int(self.rng.integers(2, 4)), False, "multi_pick")

    def c_mixture(self, plates: list[str], t: float) -> float:
        for plate in self.rng.permutation(plates):
            opts = [(fp, p) for fp, p in self.fp_of(str(plate)) if len(fp) == 1]
            prods = sorted({p for _, p in opts})
            w = self.store.products
            if len(prods) >= 2 and abs(w[prods[0]].weight_g - w[prods[1]].weight_g) > 10:
                a, b = prods[:2]
                t0, t1 = self.visit(str(plate), t, -self.w(a) - self.w(b))
                self.truth("mixture", (str(plate),), t0, t1, ((a, -1), (b, -1)))
                return t1
        return self.c_pick(plates, t)

    def c_press(self, plates: list[str], t: float) -> float:
        plate = str(self.rng.choice(plates))
        t0, t1 = self.visit(plate, t, 0.0, press_g=float(self.rng.uniform(30.0, 250.0)))
        self.plan.no_event.append(("press", plate, t0, t1))
        return t1

    def c_slow_press(self, plates: list[str], t: float) -> float:
        plate = str(self.rng.choice(plates))
        span = float(self.rng.uniform(3.0, 7.0))
        t0, t1 = self.visit(plate, t, 0.0, dwell=span, press_g=float(self.rng.uniform(8.0, 60.0)),
                            tremor_g=0.0)
        self.plan.no_event.append(("slow_press", plate, t0, t1))
        return t1

    def c_held_above(self, plates: list[str], t: float) -> float:
        rng = self.rng
        for plate in rng.permutation(plates):
            opts = [(fp, p) for fp, p in self.fp_of(str(plate)) if len(fp) == 1]
            if opts:
                fp, pid = opts[int(rng.integers(len(opts)))]
                hold = float(rng.uniform(5.0, 15.0))
                t_change = t + float(rng.uniform(0.4, 1.0))
                contact = t_change + float(rng.uniform(0.3, 0.8))
                self.plan.interactions.append(
                    PlateInteraction(self.idx[str(plate)], t, contact + hold, t_change,
                                     -self.w(pid), float(rng.uniform(15.0, 120.0)),
                                     contact_end=contact)
                )
                self.truth("held_above", fp, t, contact + hold, ((pid, -1),))
                return contact + hold
        return t

    def c_rest_then_take(self, plates: list[str], t: float) -> float:
        rng = self.rng
        for plate in rng.permutation(plates):
            opts = [(fp, p) for fp, p in self.fp_of(str(plate))
                    if len(fp) == 1 and self.stock[fp][p] >= 2]
            if opts:
                fp, pid = opts[int(rng.integers(len(opts)))]
                w1, w2 = self.w(pid), self.w(pid)
                dwell = float(rng.uniform(3.0, 5.0))
                t1, t2, t3 = t + 0.2 * dwell, t + 0.5 * dwell, t + 0.8 * dwell
                self.plan.interactions.append(
                    PlateInteraction(self.idx[str(plate)], t, t + dwell, t1, -(w1 + w2),
                                     float(rng.uniform(20.0, 120.0)),
                                     steps=((t2, w1 + w2), (t3, -w1)))
                )
                self.truth("rest_then_take", fp, t, t + dwell, ((pid, -1),))
                return t + dwell
        return t

    def c_neighbours(self, plates: list[str], t: float) -> float:
        """Two shoppers (or two hands) pick from adjacent plates at the same moment."""
        shelf = self.store.plate_shelf
        for k in self.rng.permutation(len(plates) - 1):
            a, b = plates[k], plates[k + 1]
            if shelf[a] != shelf[b]:
                continue
            oa = [(fp, p) for fp, p in self.fp_of(a) if fp == (a,)]
            ob = [(fp, p) for fp, p in self.fp_of(b) if fp == (b,)]
            if oa and ob:
                end = t
                for plate, (fp, pid) in ((a, oa[0]), (b, ob[0])):
                    t0, t1 = self.visit(plate, t + float(self.rng.uniform(0, 0.3)), -self.w(pid))
                    self.truth("neighbours", fp, t0, t1, ((pid, -1),))
                    end = max(end, t1)
                return end
        return self.c_pick(plates, t)

    def c_two_plate(self, plates: list[str], t: float) -> float:
        rng = self.rng
        opts = [(fp, p) for fp, c in self.stock.items() if len(fp) == 2 and fp[0] in plates
                for p in c if c[p] > 0]
        if not opts:
            return self.c_pick(plates, t)
        fp, pid = opts[int(rng.integers(len(opts)))]
        put = rng.random() < 0.3
        delta = (1 if put else -1) * self.w(pid)
        share = float(rng.uniform(0.3, 0.7))
        dwell = float(rng.uniform(1.0, 3.0))
        t_change = t + 0.5 * dwell
        press = float(rng.uniform(15.0, 150.0))
        for plate, f in zip(fp, (share, 1 - share), strict=True):
            self.plan.interactions.append(
                PlateInteraction(self.idx[plate], t, t + dwell, t_change, delta * f, press * f)
            )
        self.truth("two_plate", fp, t, t + dwell, ((pid, 1 if put else -1),))
        return t + dwell

    def c_same_weight(self, plates: list[str], t: float) -> float:
        w = self.store.products
        for plate in self.rng.permutation(plates):
            opts = [(fp, p) for fp, p in self.fp_of(str(plate)) if len(fp) == 1]
            same = [(fp, p) for fp, p in opts if any(
                q != p and w[q].weight_g == w[p].weight_g for _, q in opts)]
            if same:
                fp, pid = same[int(self.rng.integers(len(same)))]
                t0, t1 = self.visit(str(plate), t, -self.w(pid))
                self.truth("same_weight", fp, t0, t1, ((pid, -1),))
                return t1
        return self.c_pick(plates, t)

    def c_misplaced(self, plates: list[str], t: float) -> float:
        """A product from another gondola put back on this one, then picked from there."""
        rng = self.rng
        plate = str(rng.choice([p for p in plates if len(self.fp_of(p)) > 0] or plates))
        foreign = [p for p in self.home if plate not in self.home[p]]
        pid = str(foreign[int(rng.integers(len(foreign)))])
        t0, t1 = self.visit(plate, t, self.w(pid))
        self.truth("misplaced_put", (plate,), t0, t1, ((pid, 1),))
        t2 = t1 + float(rng.uniform(10.0, 14.0))
        t2a, t3 = self.visit(plate, t2, -self.w(pid))
        self.truth("misplaced_pick", (plate,), t2a, t3, ((pid, -1),))
        return t3


def plan_scenarios(
    store: Store, duration_s: float, rng: np.random.Generator, fault_plates: set[str]
) -> _Plan:
    """One scenario at a time per gondola, 10-16 s apart (the gondola calms down between
    shoppers), until ``duration_s`` - 25 s."""
    sc = _Scenarios(store, rng)
    names = list(CASES)
    p = np.array([CASES[c] for c in names])
    p /= p.sum()
    for g in store.gondolas:
        plates = [pl.id for s in g.shelves for pl in s.plates if pl.id not in fault_plates]
        t = float(rng.uniform(20.0, 25.0))
        while t < duration_s - 25.0:
            case = names[int(rng.choice(len(names), p=p))]
            end = sc.run(case, plates, t)
            t = max(end, t + 1.0) + float(rng.uniform(10.0, 16.0))
    return sc.plan


def _calm_time(store: Store, plan: _Plan, pid: str, duration_s: float) -> float:
    """Middle of the longest time nobody is at the plate's gondola (a re-tare by staff)."""
    gondola = next(g for g in store.gondolas for s in g.shelves for p in s.plates if p.id == pid)
    cols = {store.plate_index[p.id] for s in gondola.shelves for p in s.plates}
    busy = sorted((it.t_in - 6.0, it.t_out + 4.0) for it in plan.interactions if it.plate in cols)
    best, t_prev = (0.0, 20.0), 20.0
    for a, b in [*busy, (duration_s - 5.0, duration_s)]:
        if a - t_prev > best[0]:
            best = (a - t_prev, 0.5 * (a + t_prev))
        t_prev = max(t_prev, b)
    return best[1]


def _faults(
    block: PlateBlock, store: Store, plates: dict[str, str], duration_s: float,
    rng: np.random.Generator, calm: dict[str, float],
) -> PlateBlock:
    for kind, pid in plates.items():
        j = store.plate_index[pid]
        t0 = float(rng.uniform(20.0, duration_s / 2))
        if kind == "spikes":
            times = np.sort(rng.uniform(10.0, duration_s - 5.0, 12))
            amps = rng.choice([-1.0, 1.0], 12) * rng.uniform(80.0, 3000.0, 12)
            block = add_spikes(block, j, times.tolist(), amps.tolist())
        elif kind == "recalibration":
            jump = float(rng.choice([-1.0, 1.0]) * rng.uniform(40.0, 1500.0))
            block = add_recalibration(block, j, calm.get(pid, t0), jump)
        elif kind == "dead_nan":
            block = add_dead(block, j, t0, t0 + 30.0)
            block = add_recalibration(block, j, t0 + 30.0, float(rng.uniform(-200, 200)))
        elif kind == "dead_zero":
            block = add_dead(block, j, t0, t0 + 30.0, value=0.0)
        elif kind == "stuck":
            block = add_stuck(block, j, t0, t0 + 30.0)
    if "absent" in plates:
        block = drop_plates(block, [plates["absent"]])
    return block


#: the shortest simulated period benched: faults start between 20 s and half the period and
#: last 30 s, and the first scenarios start at 20-25 s and end 25 s before the period does, so a
#: shorter one has faults running past its end and no scenario to score
MIN_DURATION_S = 60.0


def run_shelf_bench(
    seed: int = 1,
    duration_s: float = 1200.0,
    config: ShelfConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Simulate, run the shelf stage, score. Returns the figures as a JSON-able dict."""
    if not duration_s >= MIN_DURATION_S:
        raise ValueError(f"duration_s {duration_s} is shorter than the {MIN_DURATION_S:g} s "
                         "the bench's faults and scenarios need")
    say = progress or (lambda _: None)
    rng = np.random.default_rng(seed)
    store = bench_store()
    ids = store.plate_ids
    free = [p for p in ids if len(store.plate_products.get(p, ())) == 1]
    chosen = rng.choice(len(free), len(FAULTS), replace=False)
    # keep faults off two-plate footprints so a fault never cuts a product in half
    two = {p for e in store.planogram if len(e.plates) > 1 for p in e.plates}
    pool = [p for p in free if p not in two]
    chosen = rng.choice(len(pool), len(FAULTS), replace=False)
    fault_plates = {k: pool[int(i)] for k, i in zip(FAULTS, chosen, strict=True)}
    say("plan")
    plan = plan_scenarios(store, duration_s, rng, set(fault_plates.values()))

    say("simulate")
    initial = np.zeros(len(ids))
    for e in store.planogram:
        w = store.products[e.product].weight_g * e.stock / len(e.plates)
        for p in e.plates:
            initial[store.plate_index[p]] += w
    groups = np.zeros(len(ids), dtype=np.int64)
    for k, g in enumerate(store.gondolas):
        for s in g.shelves:
            for pl in s.plates:
                groups[store.plate_index[pl.id]] = k
    noise = np.clip(draw_noise_g(len(ids), rng), 1.0, 10.0)  # the brief: noise 1-10 g
    block = simulate_plates(initial, plan.interactions, duration_s, rng, rate_hz=RATE_HZ,
                            plate_ids=ids, noise_g=noise, groups=groups)
    calm = {fault_plates["recalibration"]: _calm_time(
        store, plan, fault_plates["recalibration"], duration_s)}
    block = _faults(block, store, fault_plates, duration_s, rng, calm)

    say("shelf stage")
    stage = ShelfStage(store, config)
    events: list[ShelfEvent] = []
    step = round(5.0 * RATE_HZ)
    # CPU time of this (single-threaded) process: "per second of one core", whatever else
    # the machine is running; the wall time is reported beside it
    t0, c0 = time.perf_counter(), time.process_time()
    for a in range(0, block.t.shape[0], step):
        events += stage.process(PlateBlock(block.t[a : a + step], block.grams[a : a + step],
                                           block.plate_ids))
    events += stage.flush()
    elapsed = time.process_time() - c0
    wall = time.perf_counter() - t0
    # the decisions (what the engine would charge; the inventory follows them) are replayed
    # afterwards so that the timing is the shelf stage's alone: a second stage sees the same
    # stream and takes the decisions as its events come
    stage = ShelfStage(store, config)
    events = []
    match: dict[int, int] = {}
    used: set[int] = set()
    chosen: list[tuple[tuple[str, int], ...]] = []
    reviewed: list[bool] = []
    for a in range(0, block.t.shape[0] + step, step):
        new = (stage.process(PlateBlock(block.t[a : a + step], block.grams[a : a + step],
                                        block.plate_ids))
               if a < block.t.shape[0] else stage.flush())
        for ev in new:
            i = _match_one(ev, plan.truths, used)
            if i is not None:
                used.add(i)
                match[len(events)] = i
            items, review = _decide(stage, ev, plan.truths[i] if i is not None else None)
            chosen.append(items)
            reviewed.append(review)
            events.append(ev)

    say("score")
    return _score(store, plan, events, chosen, reviewed, match, stage, fault_plates, block,
                  elapsed, wall, seed, duration_s)


def _decide(
    stage: ShelfStage, ev: ShelfEvent, truth: Truth | None
) -> tuple[tuple[tuple[str, int], ...], bool]:
    """The engine's rule (:func:`walkout.shelf.decide.choose`), the putter holding what the
    simulated shopper really put back. Returns the chosen items and whether it is reviewed.

    The inventory follows the decision; a reviewed event follows the reviewer's verdict (the
    truth), as the store's review queue corrects the plate contents once someone has looked.
    """
    held = {p: abs(q) for p, q in truth.items} if truth is not None and ev.kind == "put" else None
    choice = choose(ev, stage.store, stage.config, held)
    best = choice.hypothesis.items if choice.hypothesis is not None else ()
    applied = truth.items if choice.needs_review and truth is not None else None
    if applied is None:
        sign = -1 if ev.kind == "pick" else 1
        applied = tuple((p, sign * q) for p, q in best)
    for pid, q in applied:
        stage.apply(ev.event_id, pid, q)
    return tuple(sorted(best)), choice.needs_review


def _match_one(ev: ShelfEvent, truths: list[Truth], used: set[int]) -> int | None:
    for i, tr in enumerate(truths):
        if i in used or not set(tr.plates) & set(ev.plate_ids):
            continue
        if ev.t_start <= tr.t1 + 2.0 and ev.t_end >= tr.t0 - 1.0:
            return i
    return None


def _score(
    store: Store, plan: _Plan, events: list[ShelfEvent],
    chosen: list[tuple[tuple[str, int], ...]], reviewed: list[bool], match: dict[int, int],
    stage: ShelfStage, fault_plates: dict[str, str], block: PlateBlock, elapsed: float,
    wall: float,
    seed: int, duration_s: float,
) -> dict[str, Any]:
    truths = plan.truths
    per: dict[str, Counter[str]] = {}
    for tr in truths:
        per.setdefault(tr.case, Counter())["truths"] += 1
    matched_truth = {i: k for k, i in match.items()}
    correct = scored = 0
    for i, tr in enumerate(truths):
        c = per[tr.case]
        if i not in matched_truth:
            continue
        c["detected"] += 1
        ev = events[matched_truth[i]]
        want = tuple(sorted((p, abs(q)) for p, q in tr.items))
        best = chosen[matched_truth[i]]
        right_kind = (ev.kind == "pick") == (tr.items[0][1] < 0)
        ok = right_kind and best == want
        if tr.ambiguous and not ok:
            ok = right_kind and reviewed[matched_truth[i]] and any(
                tuple(sorted(h.items)) == want for h in ev.hypotheses)
        c["ambiguous"] += tr.ambiguous
        c["item_correct"] += ok
        scored += 1
        correct += ok
    false = [k for k in range(len(events)) if k not in match]
    fault_ids = set(fault_plates.values())
    for k in false:
        ev = events[k]
        near = [c for c, p, a, b in plan.no_event if p in ev.plate_ids
                and ev.t_start <= b + 2.0 and ev.t_end >= a - 1.0]
        case = near[0] if near else (
            "fault:" + next(f for f, p in fault_plates.items() if p in ev.plate_ids)
            if fault_ids & set(ev.plate_ids) else "other")
        per.setdefault(case, Counter())["false_events"] += 1
    for c, _, _, _ in plan.no_event:
        per.setdefault(c, Counter())["truths_no_event"] += 1
    alerts = Counter((a.kind, a.subject) for a in stage.alerts)
    fault_report = {
        kind: {"plate": pid, "alert": FAULTS[kind], "raised": alerts[(FAULTS[kind], pid)] > 0}
        for kind, pid in fault_plates.items()
    }
    spurious = sorted({(a.kind, a.subject) for a in stage.alerts
                       if a.subject not in fault_ids})
    n_samples = int(block.grams.size)
    review = sum(reviewed)
    return {
        "seed": seed,
        "store": "small (same-weight variant)",
        "plates": len(store.plate_ids),
        "duration_s": duration_s,
        "event_precision": round(len(match) / max(1, len(events)), 5),
        "event_recall": round(len(match) / max(1, len(truths)), 5),
        "item_accuracy": round(correct / max(1, scored), 5),
        "review_rate": round(review / max(1, len(events)), 5),
        "samples_per_second": round(n_samples / elapsed),
        "samples_per_wall_second": round(n_samples / wall),
        "counts": {
            "interactions": len(plan.interactions),
            "truth_events": len(truths),
            "detected_events": len(events),
            "matched": len(match),
            "false_events": len(false),
            "missed": len(truths) - len(match),
            "item_scored": scored,
            "item_correct": correct,
            "plate_samples": n_samples,
            "shelf_stage_cpu_s": round(elapsed, 3),
            "shelf_stage_wall_s": round(wall, 3),
        },
        "per_case": {k: dict(sorted(v.items())) for k, v in sorted(per.items())},
        "faults": fault_report,
        "faults_all_alerted": all(v["raised"] for v in fault_report.values()),
        "alerts": dict(sorted(Counter(a.kind for a in stage.alerts).items())),
        "alerts_on_healthy_plates": [f"{k}:{s}" for k, s in spurious][:20],
    }
