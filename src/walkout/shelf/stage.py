"""The streaming weights → ShelfEvent stage.

Plate blocks go through the per-plate detector; settled changes on plates of one product
footprint that overlap in time are merged (a product standing on two plates loads both, so a
pick shows on both); groups whose summed change clears a noise-aware threshold become
ShelfEvents with product hypotheses. A change waits until every partner plate of its footprint
has settled too, so that the same pick is never reported half now and half later.
"""

from __future__ import annotations

import math

import numpy as np

from walkout.events import Alert, PlateBlock, ShelfEvent
from walkout.shelf.config import ShelfConfig
from walkout.shelf.detect import PlateChange, PlateDetector
from walkout.shelf.infer import Explainer
from walkout.shelf.inventory import PlateInventory, Stock
from walkout.store.model import Store


class ShelfStage:
    """Turns plate readings into ShelfEvents, tracks plate contents and sensor faults."""

    def __init__(self, store: Store, config: ShelfConfig | None = None) -> None:
        self.store = store
        self.config = config or ShelfConfig()
        self.inventory = PlateInventory.from_store(store)
        self.alerts: list[Alert] = []
        self._explainer = Explainer(store, self.config)
        self._index = store.plate_index
        self._partners = _footprint_partners(store)
        self._detector: PlateDetector | None = None
        self._pending: list[PlateChange] = []
        self._event_plates: dict[str, tuple[str, ...]] = {}
        self._event_t: dict[str, float] = {}  # event → end time (its alerts' time)
        self._t_last = -math.inf
        self._warned: set[str] = set()

    # ---- public API ------------------------------------------------------------------------

    def process(self, block: PlateBlock) -> list[ShelfEvent]:
        """Consume the next block (time-ordered, any length); return the events now settled."""
        if block.t.shape[0] == 0:
            return []
        if block.t[0] <= self._t_last:
            raise ValueError(
                f"blocks must arrive in time order: block starts at t={block.t[0]:.3f}s, "
                f"the previous one ended at t={self._t_last:.3f}s"
            )
        n0 = len(self.alerts)
        det = self._detector or self._start(block)
        grams = self._store_columns(block, det)
        changes, alerts = det.push(block.t, grams)
        for a in alerts:
            if a.kind == "plate_recovered":  # a plate absent again later is alerted again
                self._warned.discard(a.subject)
        self._t_last = float(block.t[-1])
        self.alerts.extend(alerts)
        self._pending.extend(changes)
        events = self._emit(final=False)
        self._order_alerts(n0)
        return events

    def flush(self) -> list[ShelfEvent]:
        """End of stream: settle what can be settled and emit everything still waiting."""
        if self._detector is None:
            return []
        n0 = len(self.alerts)
        changes, alerts = self._detector.flush()
        self.alerts.extend(alerts)
        self._pending.extend(changes)
        events = self._emit(final=True)
        self._order_alerts(n0)
        return events

    def apply(self, event_id: str, product_id: str, quantity: int) -> None:
        """Record what an event really was (signed: +put, −pick); the inventory follows.

        Called by a later stage once it has decided; once per product of a mixture.
        """
        try:
            plates = self._event_plates[event_id]
        except KeyError:
            raise KeyError(f"unknown shelf event {event_id!r}") from None
        if product_id not in self.store.products:
            raise KeyError(f"product {product_id!r} is not in the catalogue")
        done = self.inventory.add(plates, product_id, quantity)
        if proves_unlisted(self.store, plates, product_id, quantity, done):
            # a pick of an item no record put there: the plate really holds that product
            # (a wrong planogram entry); later events there weigh it like a listed one
            self._explainer.learn(plates, product_id)
        elif done > quantity:
            # more of a listed product left the plate than the record held: stock came in
            # with no restock recorded (or an earlier event was read wrong), so the count
            # shown to staff is too low. Said once per event, for a person to count the facing
            self.alerts.append(Alert(
                self._event_t.get(event_id, 0.0), "inventory_mismatch",
                f"{done - quantity} × {product_id} taken from plate(s) {', '.join(plates)} "
                f"beyond the {-done} the record held: stock arrived unrecorded (restock "
                "without a badge or restock mode?) or an earlier event was misread; count the "
                "facing", plates[0]))

    def restock(self, stock: Stock) -> None:
        """Hold ``stock`` instead of the planogram's opening stock, and explain later events
        with the products it says picks proved on plates not listing them: a new stream
        continues the shelves of one whose engine state was lost (``Engine.restock``). Only
        before the first block: the plates' readings so far rest on the stock they had."""
        if self._detector is not None or self._event_plates:
            raise RuntimeError("a shelf stage is restocked before its first block only")
        self.inventory = PlateInventory.from_store(self.store, stock.counts)
        self._explainer.learned = {p: set(v) for p, v in stock.learned.items()}

    @property
    def learned(self) -> dict[str, set[str]]:
        """Plate → products decided picks proved it holds though its planogram does not list
        them (a staff removal of such an item is explained by them too)."""
        return self._explainer.learned

    # ---- internals -------------------------------------------------------------------------

    def _start(self, block: PlateBlock) -> PlateDetector:
        rate = self.config.rate_hz
        if rate is None:
            dt = np.diff(block.t)
            rate = 1.0 / float(np.median(dt)) if dt.size else 60.0
        noise = np.array([self.store.plates[p].noise_g for p in self.store.plate_ids])
        self._detector = PlateDetector(
            self.store.plate_ids, noise, self.config, rate, _gondola_groups(self.store)
        )
        return self._detector

    def _store_columns(self, block: PlateBlock, det: PlateDetector) -> np.ndarray:
        """Block columns in store plate order; plates missing from the block read NaN (and
        are reported once here, as absent, rather than later by the detector as NaN)."""
        if block.plate_ids == self.store.plate_ids:
            return block.grams
        out = np.full((block.t.shape[0], len(self.store.plate_ids)), np.nan, dtype=np.float32)
        t0 = float(block.t[0])
        for j, pid in enumerate(block.plate_ids):
            col = self._index.get(pid)
            if col is None:
                self._warn(
                    pid, Alert(t0, "plate_unknown", f"plate {pid!r} is not in the store", pid)
                )
            else:
                out[:, col] = block.grams[:, j]
        for pid in set(self.store.plate_ids) - set(block.plate_ids):
            self._warn(pid, Alert(t0, "plate_dead", f"plate {pid} is absent from the stream", pid))
            det.faulted[self._index[pid]] = True
        return out

    def _order_alerts(self, n0: int) -> None:
        """The alerts of one call in a canonical order (time, plate, kind): a stage split by
        gondola (walkout.distributed) merges its parts' alerts into exactly this order."""
        self.alerts[n0:] = sorted(self.alerts[n0:], key=lambda a: alert_key(a, self._index))

    def forget_events(self) -> None:
        """Drop what is kept per past event (their plates and times, for their alerts) and the
        alerts passed on: a new stream begins (``Engine.successor``); the plates' state stays."""
        self._event_plates.clear()
        self._event_t.clear()
        self.alerts.clear()

    def forget_events_before(self, t: float, keep: set[str]) -> None:
        """Drop what is kept per event for the events that ended before ``t``, except
        ``keep`` (whose verdict may still move the plates: :meth:`apply`)."""
        old = [e for e, t_end in self._event_t.items() if t_end < t and e not in keep]
        for e in old:
            del self._event_t[e]
            self._event_plates.pop(e, None)

    def earliest_open(self) -> float:
        """Start time of the oldest plate change not yet handed out as an event (inf: none):
        an event can come out long after it began (an item held over the shelf), and whoever
        reads the tracks for it then must still find them."""
        det = math.inf if self._detector is None else self._detector.earliest_open()
        return min([det, *(c.t_start for c in self._pending)])

    def _warn(self, key: str, alert: Alert) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.alerts.append(alert)

    def _ready(self, ch: PlateChange) -> bool:
        """A change is final once no partner plate has an open disturbance that could be the
        other half of it (or it has waited long enough)."""
        det = self._detector
        assert det is not None
        if self._t_last - ch.t_confirm >= self.config.max_merge_wait_s:
            return True
        horizon = ch.t_end + self.config.merge_gap_s
        return not any(det.open_since(q) <= horizon for q in self._partners[ch.plate])

    def _emit(self, final: bool) -> list[ShelfEvent]:
        gap = self.config.merge_gap_s
        det = self._detector
        if det is not None:  # a partner's held-back half of the same footprint joins now
            for ch in list(self._pending):
                for q in self._partners[ch.plate]:
                    half = det.release(q, ch.t_start - gap, ch.t_end + gap)
                    if half is not None:
                        self._pending.append(half)
        pend = sorted(self._pending, key=lambda c: (c.t_start, c.plate))
        if not pend:
            return []
        parent = list(range(len(pend)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i, a in enumerate(pend):
            for j in range(i + 1, len(pend)):
                b = pend[j]
                if b.t_start > a.t_end + gap:
                    break
                if b.plate in self._partners[a.plate] and a.t_start <= b.t_end + gap:
                    parent[root(j)] = root(i)
        groups: dict[int, list[PlateChange]] = {}
        for i, ch in enumerate(pend):
            groups.setdefault(root(i), []).append(ch)
        events: list[ShelfEvent] = []
        self._pending = []
        for members in groups.values():
            if final or all(self._ready(m) for m in members):
                ev = self._event(members)
                if ev is not None:
                    events.append(ev)
            else:
                self._pending.extend(members)
        events.sort(key=lambda e: (e.t_start, self._index[e.plate_ids[0]]))
        return events

    def _event(self, members: list[PlateChange]) -> ShelfEvent | None:
        cfg = self.config
        plates = tuple(self.store.plate_ids[p] for p in sorted({m.plate for m in members}))
        delta = sum(m.delta_g for m in members)
        noise_var = sum(m.var_g2 for m in members)
        threshold = max(cfg.min_delta_g, cfg.event_k * math.sqrt(noise_var + cfg.model_sd_g**2))
        if abs(delta) <= threshold:
            return None  # a press, or too small to be any product
        t_start = min(m.t_start for m in members)
        if all(m.step for m in members):
            # a clean jump between two rests with no hand transient: the plate was re-tared
            self.alerts.append(
                Alert(
                    t_start,
                    "plate_recalibrated",
                    f"plate(s) {', '.join(plates)} jumped {delta:+.1f} g in one step with no "
                    "hand transient (recalibration / tare change); no event reported",
                    plates[0],
                )
            )
            return None
        var = noise_var + cfg.model_sd_g**2
        hyps = self._explainer.explain(plates, delta, var, self.inventory)
        plain = self._explainer.unlisted_pick(plates, delta, var, self.inventory)
        # only a rare count of the listed ones fits, and one unlisted item as well or better
        rare = not plain and delta < 0 and self._explainer.doubted_by_unlisted(
            plates, hyps, self.inventory)
        unlisted = plain or rare
        if unlisted:
            best = f"; best fit {hyps[0].items}" if hyps else ""
            but = " but as a rare count of identical items" if rare else ""
            self.alerts.append(Alert(t_start, "planogram_mismatch",
                                     f"plate(s) {', '.join(plates)} lost {-delta:.0f} g, which no "
                                     f"product listed for them explains{but}{best}: check the "
                                     "planogram and the shelf", plates[0]))
        event_id = f"{plates[0]}-{t_start:.3f}"
        self._event_plates[event_id] = plates
        t_end = self._event_t[event_id] = max(m.t_end for m in members)
        return ShelfEvent(
            event_id=event_id,
            t_start=t_start,
            t_end=t_end,
            plate_ids=plates,
            delta_g=float(delta),
            hypotheses=hyps,
            noise_var_g2=float(var),
            unlisted=unlisted,
        )


def _gondola_groups(store: Store) -> np.ndarray:
    """Gondola index of every plate (plates of a gondola vibrate together)."""
    out = np.zeros(len(store.plate_ids), dtype=np.int64)
    idx = store.plate_index
    for k, g in enumerate(store.gondolas):
        for s in g.shelves:
            for p in s.plates:
                out[idx[p.id]] = k
    return out


def _footprint_partners(store: Store) -> list[frozenset[int]]:
    """For each plate, the other plates of the same shelf sharing a product footprint."""
    idx = store.plate_index
    out: list[set[int]] = [set() for _ in store.plate_ids]
    for e in store.planogram:
        for a in e.plates:
            for b in e.plates:
                if a != b and store.plate_shelf[a] == store.plate_shelf[b]:
                    out[idx[a]].add(idx[b])
    return [frozenset(s) for s in out]


def alert_key(a: Alert, plate_index: dict[str, int]) -> tuple[float, int, str, str]:
    """Sort key of shelf alerts: time, then the plate's store position, kind and text."""
    return (a.t, plate_index.get(a.subject, -1), a.kind, a.message)


def proves_unlisted(store: Store, plates: tuple[str, ...], product_id: str, quantity: int,
                    done: int) -> bool:
    """Whether applying ``quantity`` of ``product_id`` to ``plates`` (``done``: what the
    inventory could move) proves the plates hold a product their planogram does not list: a
    pick of an item no record put there. Every shelf stage (one process, or its partitioned
    proxy on Ray) learns by this one rule."""
    listed = any(product_id in store.plate_products.get(p, ()) for p in plates)
    return done > quantity and not listed
