"""The engine's stages on a Ray cluster, with results identical to the single process.

* :mod:`.cluster` — joining a cluster (the settings a loopback head needs), clear errors;
* :mod:`.partition` — shelf zones (gondolas) and floor areas (cameras) of a store;
* :mod:`.shelf` — the shelf stage, one actor per zone;
* :mod:`.tracking` — the tracker's per-slot association and triangulation, one actor per area;
* :mod:`.engine` — :class:`DistributedEngine`, the engine with those stages swapped in.

See docs/scale-out.md for the design and its measured costs.
"""

from walkout.distributed.cluster import RayError, connect
from walkout.distributed.engine import DistributedEngine, make_engine

__all__ = ["DistributedEngine", "RayError", "connect", "make_engine"]
