"""The engine on a Ray cluster: the same :class:`Engine`, its heavy stages partitioned.

``DistributedEngine`` is the engine class itself with two stages swapped for partitioned
ones of the same interface: the shelf stage by gondola zone (:mod:`.shelf`) and tracking by
floor area (:mod:`.tracking`). Every decision — binding, attribution, the cart ledger,
hand-overs, review cases, receipts — runs the engine's own code in the driver, in the same
order, so a recording gives byte-identical receipts on a cluster and in one process.
Attribution and the ledger are keyed by shopper and cost a few per cent of the engine
(docs/scale-out.md); they would be sharded by session id the day they are the bottleneck.

Each chunk, the zones start on the chunk's plate block before tracking starts on its frames,
so shelf processing runs beside tracking on other workers.
"""

from __future__ import annotations

import time
from dataclasses import InitVar, dataclass, field
from typing import Any

from walkout.distributed.cluster import connect
from walkout.distributed.shelf import PartitionedShelf
from walkout.distributed.tracking import PartitionedTracker
from walkout.engine import Engine
from walkout.events import GateEvent, KeypointFrame, PlateBlock


@dataclass
class DistributedEngine(Engine):
    """:class:`Engine` whose shelf and tracking stages run on Ray actors.

    ``ray_address``: the cluster to join (joined once per process); ``shelf_zones`` and
    ``floor_areas``: partitions of each stage (default: one per CPU of the cluster).
    """

    ray_address: str = "auto"
    shelf_zones: int | None = None
    floor_areas: int | None = None
    stats: dict[str, float] = field(default_factory=dict)

    #: the stages of the stream this engine follows (:meth:`_next_engine`): its actors serve
    #: this one too; not kept (an engine must not hold on to its predecessor)
    after: InitVar[DistributedEngine | None] = None

    def __post_init__(self, after: DistributedEngine | None) -> None:
        super().__post_init__()
        if after is not None:
            ray = after.shelf.ray  # type: ignore[attr-defined]
            self.shelf = after.shelf  # the shelves go on (Engine.successor)
            self.tracker = after.tracker.fresh()  # type: ignore[attr-defined]
        else:
            ray = connect(self.ray_address)
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            self.shelf = PartitionedShelf(  # type: ignore[assignment]
                ray, self.store, self.config.shelf, self.shelf_zones or cpus)
            self.tracker = PartitionedTracker(  # type: ignore[assignment]
                ray, self.store, self.config.tracker, self.floor_areas or cpus)
        self._step_s = 0.0
        self._driver_cpu_s = 0.0
        self._actors = [*self.shelf.actors, *self.tracker.actors]  # type: ignore[attr-defined]
        self._actor_cpu0 = ray.get([a.cpu_s.remote() for a in self._actors])

    def step(
        self, block: PlateBlock, frames: list[KeypointFrame], gates: list[GateEvent], now: float
    ) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        if block.t.shape[0]:
            self.shelf.submit(block)  # type: ignore[attr-defined]
        super().step(block, frames, gates, now)
        self._step_s += time.perf_counter() - t0
        self._driver_cpu_s += time.process_time() - c0

    def _next_engine(self) -> Engine:
        """The next stream's engine on this one's actors: the shelf zones go on with their
        plates (``Engine.successor`` hands the shelf stage over and has it forget its events),
        the tracker starts afresh on the same area actors. A rollover starts no actors, and
        leaves none behind: the old engine's handles are the new one's."""
        return DistributedEngine(self.store, self.config, ray_address=self.ray_address,
                                 shelf_zones=self.shelf_zones, floor_areas=self.floor_areas,
                                 after=self)

    def costs(self) -> dict[str, Any]:
        """Where the time went: per partition busy seconds, the waits and the round trips
        (the shelf zones' since their first stream: their stage goes on across rollovers)."""
        sh: PartitionedShelf = self.shelf  # type: ignore[assignment]
        tr: PartitionedTracker = self.tracker  # type: ignore[assignment]
        return {
            "shelf_zones": [
                {"gondolas": len(z.gondolas), "plates": len(z.plate_ids), "busy_s": round(b, 4)}
                for z, b in zip(sh.zones, sh.busy_s, strict=True)
            ],
            "floor_areas": [
                {"cameras": len(a.cameras), "associate_busy_s": round(ba, 4),
                 "triangulate_busy_s": round(bt, 4)}
                for a, ba, bt in zip(tr.areas, tr.busy_s["associate"],
                                     tr.busy_s["triangulate"], strict=True)
            ],
            "shelf_wait_s": round(sh.wall_s, 4),
            "shelf_round_trips": sh.calls,
            "associate_wall_s": round(tr.wall_s["associate"], 4),
            "associate_round_trips": tr.calls["associate"],
            "triangulate_wall_s": round(tr.wall_s["triangulate"], 4),
            "triangulate_round_trips": tr.calls["triangulate"],
            "engine_step_s": round(self._step_s, 4),
            # CPU seconds, unaffected by other load on the machine: the driver's (its share of
            # the stages, serialisation, Ray's client threads) and every actor process's
            "driver_cpu_s": round(self._driver_cpu_s, 4),
            "actors_cpu_s": round(sum(self.shelf.ray.get(  # type: ignore[attr-defined]
                [a.cpu_s.remote() for a in self._actors])) - sum(self._actor_cpu0), 4),
        }


def make_engine(store: Any, config: Any = None, ray_address: str | None = None) -> Engine:
    """The single-process engine, or the distributed one when a Ray address is given."""
    from walkout.engine import EngineConfig

    cfg = config or EngineConfig()
    if ray_address:
        return DistributedEngine(store, cfg, ray_address=ray_address)
    return Engine(store, cfg)
