"""The shelf stage split by gondola zone: one Ray actor per zone, one proxy for the engine.

Each zone actor runs an ordinary :class:`ShelfStage` on the zone's part of the store. The
proxy has the stage's interface (``process``, ``flush``, ``apply``, ``alerts``, ``config``),
so the engine's own code drives it. Exactness rests on three facts: nothing in the shelf
stage couples plates of different gondolas; a zone's plates keep their store order; and the
engine's inventory feedback (``apply``) reaches each zone before its next block, exactly when
the single stage would see it. Events are merged by ``(t_start, plate position)`` and alerts
by :func:`walkout.shelf.stage.alert_key`, the orders the single stage itself emits.
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
from walkout.shelf.stage import alert_key
from walkout.store.model import Store

Apply = tuple[str, str, int]  # (event id, product, signed quantity)


class ShelfZone:
    """One zone's shelf stage (a Ray actor): applies the engine's pending decisions, then
    consumes the zone's columns of the next block. Reports its busy time per call."""

    def __init__(self, store: Store, zone: Zone, config: ShelfConfig) -> None:
        self.stage = ShelfStage(zone_store(store, zone), config)
        self.zone = zone

    def process(
        self, applies: list[Apply], t: np.ndarray, grams: np.ndarray
    ) -> tuple[list[ShelfEvent], list[Alert], float, float]:
        c0 = time.thread_time()
        self._apply(applies)
        n0 = len(self.stage.alerts)
        events = self.stage.process(PlateBlock(t, grams, self.zone.plate_ids))
        return (events, self.stage.alerts[n0:], time.thread_time() - c0,
                self.stage.earliest_open())

    def flush(self, applies: list[Apply]
              ) -> tuple[list[ShelfEvent], list[Alert], float, float]:
        c0 = time.thread_time()
        self._apply(applies)
        n0 = len(self.stage.alerts)
        events = self.stage.flush()
        return (events, self.stage.alerts[n0:], time.thread_time() - c0,
                self.stage.earliest_open())

    def cpu_s(self) -> float:
        """CPU seconds this actor's process has used (work, serialisation, Ray's threads)."""
        return time.process_time()

    def _apply(self, applies: list[Apply]) -> None:
        for event_id, product_id, q in applies:
            self.stage.apply(event_id, product_id, q)


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
        self._event_zone: dict[str, int] = {}
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
        have applied it: after this chunk's events, before the next chunk's)."""
        try:
            z = self._event_zone[event_id]
        except KeyError:
            raise KeyError(f"unknown shelf event {event_id!r}") from None
        if product_id not in self.store.products:
            raise KeyError(f"product {product_id!r} is not in the catalogue")
        self._applies[z].append((event_id, product_id, quantity))

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
        for z, (events, _, busy, open_t) in enumerate(parts):
            self.busy_s[z] += busy
            self._open[z] = open_t
            for ev in events:
                self._event_zone[ev.event_id] = z
        self.alerts += heapq.merge(*(a for _, a, _, _ in parts),
                                   key=lambda a: alert_key(a, index))
        return list(heapq.merge(*(e for e, _, _, _ in parts),
                                key=lambda e: (e.t_start, index[e.plate_ids[0]])))
