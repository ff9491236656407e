"""``PartitionedShelf.restock``: the engine on Ray continues a lost stream's shelves as one
process does. The driver's inventory and learned products (the engine's stock decisions and
the health rows read them) and each zone actor's own stage (its explainer reads them, for the
hypotheses of every event on its plates) hold the health row's stock, each zone the
footprints on its plates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from walkout.engine import Engine, EngineConfig
from walkout.events import PlateBlock
from walkout.service.live import _inventory
from walkout.shelf.inventory import PlateInventory
from walkout.sim.loadcell import PlateInteraction, simulate_plates
from walkout.store import load_store

from .test_inventory_on_ray import _closed_store_run, _decisions, _foreign, _ray_engine

pytestmark = pytest.mark.slow

STORE = load_store("small")


def _row(p: str, d: str, r: str, e: str) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """A health row of a lost stream: the opening stock with one facing sold out, two ``d``
    misplaced on ``p`` (a plate of the first zone) and plate ``r`` (of the last) known to hold
    ``e``, which it does not list."""
    rows = _inventory(Engine(STORE))
    rows[0] |= {"count": 0, "low": True}
    rows.append({"plates": [p], "product": d, "count": 2, "low": False, "reorder_at": 2,
                 "misplaced": True})
    return rows, {r: [e]}


def test_the_zones_and_the_driver_hold_the_restocked_shelves_as_one_process(
        ray_address: str) -> None:
    """Both engines restocked from the same row: the driver's copy and the zones' equal the
    single stage's. Then, on a closed store, staff take the two misplaced items and one of
    the learned product: decided from the record on both, event for event (no count of the
    plates' own products fits: started from the planogram's stock, each is an inventory
    case)."""
    (p, d), (r, e) = _foreign(0, 2), _foreign(2, 1)
    rows, learned = _row(p, d, r, e)
    cfg = EngineConfig(review_hold_s=1e9)
    single, ray = Engine(STORE, cfg), _ray_engine(ray_address, cfg)
    for eng in (single, ray):
        assert eng.restock(rows, learned) == []
    snap = single.shelf.inventory.snapshot()
    assert snap != PlateInventory.from_store(STORE).snapshot()
    assert snap[(p,)][d] == 2 and single.shelf.learned == {r: {e}}
    assert ray.shelf.inventory.snapshot() == snap and ray.shelf.learned == single.shelf.learned
    assert ray.shelf.zone_inventories() == (snap, single.shelf.learned)  # type: ignore[attr-defined]
    assert _inventory(ray) == _inventory(single)
    assert sorted(_inventory(single), key=str) == sorted(rows, key=str)

    w = {x.id: x.weight_g for x in STORE.catalogue}
    load = np.zeros(len(STORE.plate_ids))
    for x in STORE.planogram:
        for q in x.plates:
            load[STORE.plate_index[q]] += w[x.product] * x.stock / len(x.plates)
    load[STORE.plate_index[p]] += 2 * w[d]
    touches = [PlateInteraction(STORE.plate_index[q], t, t + 3.0, t + 1.2, g, 40.0)
               for q, t, g in ((p, 10.0, -2 * w[d]), (r, 11.0, -w[e]))]
    block = simulate_plates(load, touches, 30.0, np.random.default_rng(0),
                            plate_ids=STORE.plate_ids, noise_g=np.full(len(STORE.plate_ids), 1.5),
                            groups=np.zeros(len(STORE.plate_ids), dtype=np.int64))
    for eng in (single, ray):
        _closed_store_run(eng, block, {})
    assert sorted(dc.items for dc in single.decisions) == sorted([((d, 2),), ((e, 1),)])
    assert not single.cases and all(dc.stock for dc in single.decisions)
    assert list(ray.events) == list(single.events) and _decisions(ray) == _decisions(single)
    assert ray.alerts == single.alerts
    assert ray.shelf.inventory.snapshot() == single.shelf.inventory.snapshot()
    ray.shelf.forget_events()  # the decisions still queued for the zones go to them
    assert ray.shelf.zone_inventories() == (  # type: ignore[attr-defined]
        single.shelf.inventory.snapshot(), single.shelf.learned)


def test_the_engine_on_ray_refuses_a_restock_after_its_first_block(ray_address: str) -> None:
    ray = _ray_engine(ray_address)
    t = np.arange(0.0, 1.0, 1 / 60)
    grams = np.zeros((t.size, len(STORE.plate_ids)), np.float32)
    ray.step(PlateBlock(t, grams, STORE.plate_ids), [], [], 1.0)
    with pytest.raises(RuntimeError, match="before its first block"):
        ray.restock(_inventory(ray))
