"""`walkout bench ray`: the same recording through the single-process engine and on a Ray
cluster; throughput of both, per-partition costs, and the overhead of going distributed.

Runs have the shape of the scale bench's (``area_m2``, ``shoppers``, ``cameras``, ``plates``,
``engine``, ``real_time_factor``, ``events``, ``seconds``); the ray run adds ``costs`` and
``overhead``. Events are sensor messages: camera keypoint frames, plate samples (one per plate
per sample time) and gate scans.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from walkout.store.model import Store


def floor_area_m2(store: Store) -> float:
    """Area of the walkable floor polygon (shoelace)."""
    xy = np.array(store.floor.outline, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def run_ray_bench(
    store: Store, shoppers: int, seed: int, address: str, zones: int | None,
    areas: int | None, say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    from walkout.cli import _receipts_json
    from walkout.distributed import DistributedEngine
    from walkout.engine import Engine
    from walkout.sim.session import simulate
    from walkout.sources.recording import Sensors

    say(f"simulating {shoppers} shoppers in '{store.name}'")
    sensors = Sensors.from_session(simulate(store, shoppers, seed))
    events = len(sensors.frames) + int(sensors.plates.grams.size) + len(sensors.gates)
    base = {"area_m2": round(floor_area_m2(store), 1), "shoppers": shoppers,
            "cameras": len(store.cameras), "plates": len(store.plate_ids), "events": events}

    def run(engine: Engine) -> tuple[dict[str, Any], Any]:
        t0 = time.perf_counter()
        result = engine.run(sensors)
        s = time.perf_counter() - t0
        return {**base, "real_time_factor": round(sensors.duration_s / s, 2),
                "seconds": round(s, 2)}, result

    say("single process")
    single, r1 = run(Engine(store))
    say(f"on the Ray cluster at {address}")
    t0 = time.perf_counter()
    eng = DistributedEngine(store, ray_address=address, shelf_zones=zones, floor_areas=areas)
    startup = time.perf_counter() - t0
    dist, r2 = run(eng)
    same = json.dumps(_receipts_json(r1)) == json.dumps(_receipts_json(r2))
    costs = eng.costs()
    dist.update(costs=costs, overhead=_overhead(costs, single["seconds"], events),
                identical_receipts=same, startup_s=round(startup, 2))
    return {"store": store.name, "seed": seed, "duration_s": round(sensors.duration_s, 1),
            "runs": [{**single, "engine": "single"}, {**dist, "engine": "ray"}]}


def _overhead(c: dict[str, Any], single_s: float, events: int) -> dict[str, float]:
    """What going distributed costs. A phase's overhead is its wait in the driver minus the
    busiest partition's work in it (serialisation, scheduling, transfer, stragglers)."""
    areas = c["floor_areas"]
    busy_a = max(a["associate_busy_s"] for a in areas)
    busy_t = max(a["triangulate_busy_s"] for a in areas)
    over_a = max(c["associate_wall_s"] - busy_a, 0.0)
    over_t = max(c["triangulate_wall_s"] - busy_t, 0.0)
    trips = c["associate_round_trips"] + c["triangulate_round_trips"]
    driver = c["engine_step_s"] - c["associate_wall_s"] - c["triangulate_wall_s"] - c[
        "shelf_wait_s"]
    total = over_a + over_t
    work = sum(a["associate_busy_s"] + a["triangulate_busy_s"] for a in areas) + sum(
        z["busy_s"] for z in c["shelf_zones"])
    return {
        "round_trips": trips,
        "per_round_trip_ms": round(1000 * total / max(trips, 1), 3),
        "per_event_us": round(1e6 * total / max(events, 1), 3),
        "driver_s": round(driver, 3),
        "partition_work_s": round(work, 3),
        "single_process_s": round(single_s, 3),
    }
