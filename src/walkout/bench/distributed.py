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
        t0, c0 = time.perf_counter(), time.process_time()
        result = engine.run(sensors)
        s, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {**base, "real_time_factor": round(sensors.duration_s / s, 2),
                "seconds": round(s, 2), "cpu_s": round(cpu, 2)}, result

    say("single process")
    single, r1 = run(Engine(store))
    say(f"on the Ray cluster at {address}")
    t0 = time.perf_counter()
    eng = DistributedEngine(store, ray_address=address, shelf_zones=zones, floor_areas=areas)
    startup = time.perf_counter() - t0
    dist, r2 = run(eng)
    same = json.dumps(_receipts_json(r1)) == json.dumps(_receipts_json(r2))
    costs = eng.costs()
    dist.update(costs=costs, overhead=_overhead(costs, single["cpu_s"], events),
                identical_receipts=same, startup_s=round(startup, 2))
    return {"store": store.name, "seed": seed, "duration_s": round(sensors.duration_s, 1),
            "runs": [{**single, "engine": "single"}, {**dist, "engine": "ray"}]}


def _overhead(c: dict[str, Any], single_cpu_s: float, events: int) -> dict[str, float]:
    """What going distributed costs, in CPU seconds (other load on the machine does not
    change them): everything the driver and the actors spent beyond what the single process
    spent on the same period; per round trip and per sensor event. ``wait_ms_per_round_trip``
    is the wall-clock view: the driver's wait minus the busiest partition's work."""
    areas = c["floor_areas"]
    trips = c["associate_round_trips"] + c["triangulate_round_trips"] + c["shelf_round_trips"]
    extra = c["driver_cpu_s"] + c["actors_cpu_s"] - single_cpu_s
    work = sum(a["associate_busy_s"] + a["triangulate_busy_s"] for a in areas) + sum(
        z["busy_s"] for z in c["shelf_zones"])
    wait = (c["associate_wall_s"] - max(a["associate_busy_s"] for a in areas)
            + c["triangulate_wall_s"] - max(a["triangulate_busy_s"] for a in areas))
    return {
        "round_trips": trips,
        "cpu_ms_per_round_trip": round(1000 * extra / max(trips, 1), 3),
        "cpu_us_per_event": round(1e6 * extra / max(events, 1), 3),
        "wait_ms_per_round_trip": round(1000 * max(wait, 0.0) / max(trips, 1), 3),
        "partition_work_cpu_s": round(work, 3),
        "driver_cpu_s": c["driver_cpu_s"],
        "actors_cpu_s": c["actors_cpu_s"],
        "single_process_cpu_s": round(single_cpu_s, 3),
    }
