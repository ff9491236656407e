"""The shelf stage split by gondola zone: one Ray actor per zone, one proxy for the engine.

Each zone actor runs an ordinary :class:`ShelfStage` on the zone's part of the store. The
proxy has the stage's interface (``process``, ``flush``, ``apply``, ``alerts``, ``config``,
``earliest_open``, ``forget_events``, ``forget_events_before``, ``inventory``, ``learned``,
``restock``), so the engine's own code and the service drive and read it. Exactness rests on
three facts: nothing in the shelf stage couples plates of different gondolas; a zone's plates
keep their store order; and the engine's inventory feedback (``apply``) reaches each zone
before its next block, exactly when the single stage would see it. Events are merged by
``(t_start, plate position)``, a block's alerts by :func:`walkout.shelf.stage.alert_key`, the
orders the single stage itself emits; the alerts the feedback raises come first, in the order
the engine applied it.

The proxy keeps the plate inventory in the driver too (:attr:`PartitionedShelf.inventory`,
:attr:`PartitionedShelf.learned`): the engine reads it for its staff stock decisions, the
service for its health rows, and the single stage's copy moves at ``apply``, a block before
the zones hear of it. Only ``apply`` moves it (and ``restock``, before the first block, which
sets the zones' too), so the driver's copy, given the same decisions in the same order from
the same opening stock, equals the single stage's at every point of the stream without a
round trip.

The proxy outlives its engine: a live store's next stream (``Engine.successor``) goes on with
the same zones and plates, its events forgotten (``forget_events``); a stream that runs for
days lets go of old events (``forget_events_before``). Both are sent to the zones without
waiting for them: a zone runs its caller's calls in the order they were made.
"""

from __future__ import annotations

import heapq
import math
import time
from typing import Any

import numpy as np

from walkout.distributed.partition import Zone, shelf_zones, zone_store
from walkout.events import Alert, PlateBlock, ShelfEvent
from walkout.shelf import ShelfConfig, ShelfStage
from walkout.shelf.inventory import PlateInventory, Stock
from walkout.shelf.stage import alert_key, proves_unlisted
from walkout.store.model import Store

#: (its place among every apply the engine made, event id, product, signed quantity)
Apply = tuple[int, str, str, int]
#: a zone's answer to a block: its events; the alerts its applies raised, each with its
#: apply's place; the block's own alerts; its busy time; its oldest change in progress
Part = tuple[list[ShelfEvent], list[tuple[int, Alert]], list[Alert], float, float]


class ShelfZone:
    """One zone's shelf stage (a Ray actor): applies the engine's pending decisions, then
    consumes the zone's columns of the next block. Reports its busy time per call."""

    def __init__(self, store: Store, zone: Zone, config: ShelfConfig) -> None:
        self.stage = ShelfStage(zone_store(store, zone), config)
        self.zone = zone

    def process(self, applies: list[Apply], t: np.ndarray, grams: np.ndarray) -> Part:
        c0 = time.thread_time()
        raised = self._apply(applies)
        n0 = len(self.stage.alerts)
        events = self.stage.process(PlateBlock(t, grams, self.zone.plate_ids))
        return (events, raised, self.stage.alerts[n0:], time.thread_time() - c0,
                self.stage.earliest_open())

    def flush(self, applies: list[Apply]) -> Part:
        c0 = time.thread_time()
        raised = self._apply(applies)
        n0 = len(self.stage.alerts)
        events = self.stage.flush()
        return (events, raised, self.stage.alerts[n0:], time.thread_time() - c0,
                self.stage.earliest_open())

    def forget_events(self, applies: list[Apply]) -> None:
        """``ShelfStage.forget_events`` (a new stream begins), after the decisions the engine
        made before it, as the single stage had applied them (their alerts go unread with the
        stream's, as the single stage's do)."""
        self._apply(applies)
        self.stage.forget_events()

    def forget_events_before(self, t: float, keep: set[str]) -> None:
        """``ShelfStage.forget_events_before``: the driver keeps the events it still has
        decisions queued for in ``keep``."""
        self.stage.forget_events_before(t, keep)

    def restock(self, stock: Stock) -> None:
        """``ShelfStage.restock`` with the zone's part of the store's stock."""
        self.stage.restock(stock.within(self.zone.plate_ids))

    def stock(self) -> tuple[dict[tuple[str, ...], dict[str, int]], dict[str, set[str]]]:
        """The zone stage's inventory snapshot and learned products (for checks)."""
        return self.stage.inventory.snapshot(), self.stage.learned

    def cpu_s(self) -> float:
        """CPU seconds this actor's process has used (work, serialisation, Ray's threads)."""
        return time.process_time()

    def _apply(self, applies: list[Apply]) -> list[tuple[int, Alert]]:
        """The engine's decisions, in its order; the alerts they raise (a pick beyond the
        recorded stock), each with its apply's place, for the driver to put them in the order
        the single stage raised them: every zone's, by when the engine applied them."""
        raised = []
        for seq, event_id, product_id, q in applies:
            n0 = len(self.stage.alerts)
            self.stage.apply(event_id, product_id, q)
            raised += [(seq, a) for a in self.stage.alerts[n0:]]
        return raised


class PartitionedShelf:
    """The engine's shelf stage, run by one :class:`ShelfZone` actor per gondola zone.

    :meth:`submit` starts a block on every zone at once (the engine does so before tracking
    the same chunk, so both run side by side); :meth:`process` collects it.
    """

    def __init__(self, ray: Any, store: Store, config: ShelfConfig, zones: int) -> None:
        self.ray, self.store, self.config = ray, store, config
        self.zones = shelf_zones(store, zones)
        actor = ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(ShelfZone)
        self.actors = [actor.remote(store, z, config) for z in self.zones]
        self.alerts: list[Alert] = []
        self._zone_of = {p: z.index for z in self.zones for p in z.plate_ids}
        self._applies: list[list[Apply]] = [[] for _ in self.zones]
        self._seq = 0  # applies so far: their order across zones
        self._event_zone: dict[str, int] = {}
        self._event_t: dict[str, float] = {}  # event → end time, as its zone's stage has it
        self._event_plates: dict[str, tuple[str, ...]] = {}  # event → its plates (for apply)
        #: ``ShelfStage.inventory`` and ``ShelfStage.learned`` of the whole store, moved by
        #: every decision as the engine makes it (the zones' copies: at their next block)
        self.inventory = PlateInventory.from_store(store)
        self.learned: dict[str, set[str]] = {}
        self._inflight: tuple[PlateBlock, list[Any]] | None = None
        self.busy_s = [0.0] * len(self.zones)  # per zone: time spent in its stage
        self._open = [math.inf] * len(self.zones)  # per zone: its oldest change in progress
        self.wall_s = 0.0  # time the engine waited for the zones
        self.calls = 0

    # ---- the ShelfStage interface ----------------------------------------------------------

    def submit(self, block: PlateBlock) -> None:
        """Start ``block`` on every zone (with the decisions applied since the last one)."""
        if block.plate_ids != self.store.plate_ids:
            raise ValueError("blocks for the partitioned shelf stage must carry every plate of "
                             "the store in store order")
        if self._inflight is not None:
            raise RuntimeError("a block is already in flight: process() it first")
        refs = [a.process.remote(self._take(z.index), block.t, block.grams[:, z.columns])
                for a, z in zip(self.actors, self.zones, strict=True)]
        self._inflight = (block, refs)

    def process(self, block: PlateBlock) -> list[ShelfEvent]:
        if block.t.shape[0] == 0:
            return []
        if self._inflight is None or self._inflight[0] is not block:
            self.submit(block)
        assert self._inflight is not None
        refs = self._inflight[1]
        self._inflight = None
        return self._collect(refs)

    def flush(self) -> list[ShelfEvent]:
        return self._collect([a.flush.remote(self._take(z.index))
                              for a, z in zip(self.actors, self.zones, strict=True)])

    def earliest_open(self) -> float:
        """As ``ShelfStage.earliest_open``, over every zone (as of the last block)."""
        return min(self._open, default=math.inf)

    def apply(self, event_id: str, product_id: str, quantity: int) -> None:
        """Queued for the event's zone; sent with its next block (when the single stage would
        have applied it: after this chunk's events, before the next chunk's). The driver's
        inventory follows at once, as ``ShelfStage.apply`` moves the single stage's: a pick
        of an item no record put on plates that do not list it teaches them the product."""
        try:
            z = self._event_zone[event_id]
        except KeyError:
            raise KeyError(f"unknown shelf event {event_id!r}") from None
        if product_id not in self.store.products:
            raise KeyError(f"product {product_id!r} is not in the catalogue")
        self._applies[z].append((self._seq, event_id, product_id, quantity))
        self._seq += 1
        plates = self._event_plates[event_id]
        done = self.inventory.add(plates, product_id, quantity)
        if proves_unlisted(self.store, plates, product_id, quantity, done):
            for p in plates:
                self.learned.setdefault(p, set()).add(product_id)

    def restock(self, stock: Stock) -> None:
        """As ``ShelfStage.restock`` (a new stream continues a lost one's shelves): the
        driver's inventory and learned products, and each zone's stage with its part (the
        footprints on its plates), which its explainer reads. Waits for the zones, so that a
        zone that cannot take it fails here, not at the first block."""
        if self.calls or self._inflight is not None or self._event_zone:
            raise RuntimeError("a shelf stage is restocked before its first block only")
        self.ray.get([a.restock.remote(stock) for a in self.actors])
        self.inventory = PlateInventory.from_store(self.store, stock.counts)
        self.learned = {p: set(v) for p, v in stock.learned.items()}

    def zone_inventories(self) -> tuple[dict[tuple[str, ...], dict[str, int]],
                                        dict[str, set[str]]]:
        """The zones' own inventory snapshot and learned products, merged (a round trip to
        every zone): what the driver's copy had before the decisions still queued for them.
        For checks and tests; the engine and the service read :attr:`inventory`."""
        parts = self.ray.get([a.stock.remote() for a in self.actors])
        snap = {fp: c for s, _ in parts for fp, c in s.items()}
        learned = {p: ps for _, lr in parts for p, ps in lr.items()}
        return dict(sorted(snap.items())), learned

    def forget_events(self) -> None:
        """As ``ShelfStage.forget_events`` (a new stream begins: ``Engine.successor``): what
        is kept per past event goes, here and in every zone (after the decisions still queued
        for it, which the single stage had applied already), and the alerts passed on; the
        plates' state stays. Sent without waiting: a zone runs its caller's calls in order."""
        if self._inflight is not None:
            raise RuntimeError("a block is in flight: process() it before a new stream")
        for a, z in zip(self.actors, self.zones, strict=True):
            a.forget_events.remote(self._take(z.index))
        self._event_zone.clear()
        self._event_t.clear()
        self._event_plates.clear()
        self.alerts.clear()

    def forget_events_before(self, t: float, keep: set[str]) -> None:
        """As ``ShelfStage.forget_events_before``: the events that ended before ``t`` are
        forgotten here and in their zones, except ``keep`` (a verdict may still ``apply``
        them) and those with a decision still queued for their zone's next block (forgotten
        at a later call: the single stage had applied it already). Only the zones with
        something to forget are sent a call, and none is waited for."""
        queued = {e for q in self._applies for _, e, _, _ in q}
        old = [e for e, t_end in self._event_t.items()
               if t_end < t and e not in keep and e not in queued]
        if not old:
            return
        zones = set()
        for e in old:
            zones.add(self._event_zone.pop(e))
            del self._event_t[e]
            del self._event_plates[e]
        # what each zone must keep of its own events that ended before t: the same set goes
        kept: list[set[str]] = [set() for _ in self.zones]
        for e in (keep | queued) & self._event_zone.keys():
            if self._event_t[e] < t:
                kept[self._event_zone[e]].add(e)
        for z in sorted(zones):
            self.actors[z].forget_events_before.remote(t, kept[z])

    # ---- internals ---------------------------------------------------------------------------

    def _take(self, z: int) -> list[Apply]:
        out, self._applies[z] = self._applies[z], []
        return out

    def _collect(self, refs: list[Any]) -> list[ShelfEvent]:
        w0 = time.perf_counter()
        parts = self.ray.get(refs)
        self.wall_s += time.perf_counter() - w0
        self.calls += 1
        index = self.store.plate_index
        for z, (events, _, _, busy, open_t) in enumerate(parts):
            self.busy_s[z] += busy
            self._open[z] = open_t
            for ev in events:
                self._event_zone[ev.event_id] = z
                self._event_t[ev.event_id] = ev.t_end
                self._event_plates[ev.event_id] = ev.plate_ids
        # the single stage's order: what the engine's applies raised, as it applied them,
        # then the block's own alerts (canonical order)
        self.alerts += [a for _, a in sorted((r for p in parts for r in p[1]),
                                             key=lambda r: r[0])]
        self.alerts += heapq.merge(*(p[2] for p in parts), key=lambda a: alert_key(a, index))
        return list(heapq.merge(*(p[0] for p in parts),
                                key=lambda e: (e.t_start, index[e.plate_ids[0]])))
