"""The shelf zones on Ray tell what the single shelf stage tells: the alerts the engine's
inventory feedback raises in a zone reach the engine, in the single stage's order."""

from __future__ import annotations

import numpy as np
import pytest

from walkout.distributed import DistributedEngine
from walkout.distributed.partition import shelf_zones
from walkout.engine import Engine, EngineConfig
from walkout.events import GateEvent, PlateBlock
from walkout.sim.loadcell import PlateInteraction, simulate_plates
from walkout.store import load_store

pytestmark = pytest.mark.slow

STORE = load_store("small")
CHUNK_S = 5.0


def _step_over(eng: Engine, block: PlateBlock, gates: list[GateEvent]) -> Engine:
    """The engine stepped over ``block`` chunk by chunk (no camera frames: nobody is seen)."""
    end = float(block.t[-1])
    for a in np.arange(0.0, end + CHUNK_S, CHUNK_S):
        b = float(a + CHUNK_S)
        i0, i1 = np.searchsorted(block.t, [a, b])
        eng.step(PlateBlock(block.t[i0:i1], block.grams[i0:i1], block.plate_ids), [],
                 [g for g in gates if a <= g.t < b], b)
    eng.finish()
    return eng


def test_a_pick_beyond_the_recorded_stock_is_alerted_as_in_one_process(
    ray_address: str,
) -> None:
    """One more item than the record holds leaves a plate of the first zone and one of the
    last: the engine's decisions reach each zone with its next block, and the stage alerts
    ``inventory_mismatch`` when it applies them. The zones returned only the block's alerts,
    so on Ray these were lost."""
    zones = shelf_zones(STORE, 3)
    single_plate = [e for e in STORE.planogram if len(e.plates) == 1 and e.stock <= 4]
    entries = [next(e for e in single_plate if e.plates[0] in zones[z].plate_ids)
               for z in (-1, 0)]
    load = np.zeros(len(STORE.plate_ids))
    for e in STORE.planogram:
        for p in e.plates:
            load[STORE.plate_index[p]] += (
                STORE.products[e.product].weight_g * e.stock / len(e.plates))
    touches = [PlateInteraction(STORE.plate_index[e.plates[0]], t, t + 2.0, t + 0.9,
                                -STORE.products[e.product].weight_g, 40.0)
               for i, e in enumerate(entries) for t in 10.0 * np.arange(1, e.stock + 2) + i]
    duration = 10.0 * (max(e.stock for e in entries) + 3)
    block = simulate_plates(load, touches, duration, np.random.default_rng(0),
                            plate_ids=STORE.plate_ids, noise_g=np.full(len(STORE.plate_ids), 1.5),
                            groups=np.zeros(len(STORE.plate_ids), dtype=np.int64))
    scan = [GateEvent(1.0, STORE.gates_of("entry")[0].id, "entry", "qr-1")]
    cfg = EngineConfig(review_hold_s=1e9)
    single = _step_over(Engine(STORE, cfg), block, scan)
    ray = _step_over(DistributedEngine(STORE, cfg, ray_address=ray_address, shelf_zones=3,
                                       floor_areas=2), block, scan)
    mismatches = [a.subject for a in single.alerts if a.kind == "inventory_mismatch"]
    assert sorted(mismatches) == sorted(e.plates[0] for e in entries)
    assert ray.alerts == single.alerts
    assert ray.result().entries == single.result().entries
