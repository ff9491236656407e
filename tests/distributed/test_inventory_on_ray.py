"""The plate inventory of the engine on Ray is the single process's at every point of the
stream: the engine's staff stock decisions read it (and the products picks taught the plates),
the service's health rows show it. ``PartitionedShelf`` had none: on Ray the engine decided
stock moves without counts and ``walkout serve --ray`` failed on its first chunk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from walkout.distributed import DistributedEngine
from walkout.distributed.partition import shelf_zones
from walkout.engine import Engine, EngineConfig
from walkout.events import PlateBlock, ShelfEvent
from walkout.review import Verdict
from walkout.service.db import make_engine, upgrade
from walkout.service.models import EngineEvent
from walkout.service.runner import LiveRunner
from walkout.service.testing import Svc, badged, make_svc
from walkout.shelf import ShelfConfig
from walkout.shelf.decide import choose_stock
from walkout.shelf.inventory import PlateInventory
from walkout.sim.loadcell import PlateInteraction, simulate_plates
from walkout.sim.session import SimSession, simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store

pytestmark = pytest.mark.slow

STORE = load_store("small")
OPENING = PlateInventory.from_store(STORE).snapshot()
CHUNK_S = 5.0


def _ray_engine(ray_address: str, config: EngineConfig | None = None) -> DistributedEngine:
    return DistributedEngine(STORE, config or EngineConfig(), ray_address=ray_address,
                             shelf_zones=3, floor_areas=2)


def _decisions(eng: Engine) -> list[tuple[Any, ...]]:
    return [(d.attribution.event.event_id, d.attribution.session_id, d.items, d.takers,
             d.needs_review, d.stock, d.reasons) for d in eng.decisions]


def _zone_stock(eng: DistributedEngine) -> tuple[dict[Any, Any], dict[str, set[str]]]:
    """What the zone actors' own stages hold, once the decisions still queued for them are
    sent (``forget_events`` sends them, as at a rollover: the end of this engine's use)."""
    eng.shelf.forget_events()
    return eng.shelf.zone_inventories()  # type: ignore[attr-defined]


# ---- the simulator's restock scenario ----------------------------------------------------------


@pytest.fixture(scope="module")
def restock() -> SimSession:
    # a staff badge restocks two plates and removes expired items from a third while shoppers
    # pick; an item put back on a wrong plate leaves an unlisted product in stock
    return simulate(STORE, 1, 2, scenarios=("restock", "wrong-plate-put-back"))


def test_the_inventory_on_ray_is_the_single_stages_after_every_chunk(
    restock: SimSession, ray_address: str
) -> None:
    """Compared right after each step, while the chunk's decisions are still queued for the
    zones, then after the end; the zones' own stages agree once those reach them."""
    sn = Sensors.from_session(restock)
    single, ray = Engine(STORE), _ray_engine(ray_address)
    moved = 0
    for block, frames, gates, now in sn.chunks(CHUNK_S):
        for eng in (single, ray):
            eng.step(block, frames, gates, now)
        assert ray.shelf.inventory.snapshot() == single.shelf.inventory.snapshot(), now
        assert ray.shelf.learned == single.shelf.learned
        moved += ray.shelf.inventory.snapshot() != OPENING
    single.finish()
    ray.finish()
    snap = single.shelf.inventory.snapshot()
    assert moved and snap != OPENING
    # staff restocks and removals, shoppers' picks and a put-back to a plate not listing it
    assert sum(te.kind in ("restock", "remove") for te in restock.truth.events) == 3
    assert sum(d.stock and not d.needs_review for d in single.decisions) == 3
    assert any(not d.stock and d.items for d in single.decisions)
    assert any(p not in STORE.plate_products.get(fp[0], ()) for fp, c in snap.items() for p in c)
    assert ray.shelf.inventory.snapshot() == snap
    assert ray.shelf.learned == single.shelf.learned
    # the engine decided as one process: receipts, decisions and alerts
    assert _decisions(ray) == _decisions(single)
    assert list(ray.issued) == list(single.issued) and single.issued
    assert ray.alerts == single.alerts
    assert _zone_stock(ray) == (snap, single.shelf.learned)


# ---- a closed store's removals decided from the record -------------------------------------


def _foreign(zone: int, q: int) -> tuple[str, str]:
    """A single-plate facing of ``zone`` and a product it does not list, of which ``q`` items
    weigh what no count of the facing's own product does: a staff move of them is decided only
    when the record says they lie there (or a pick taught the plate the product)."""
    cfg, var = ShelfConfig(), 4.0 * 1.5**2 + 1.0
    plates = set(shelf_zones(STORE, 3)[zone].plate_ids)
    for e in STORE.planogram:
        (p,) = e.plates if len(e.plates) == 1 else ("",)
        if p not in plates:
            continue
        for prod in STORE.catalogue:
            if prod.id in STORE.plate_products.get(p, ()) or prod.weight_g < 150.0:
                continue
            ev = ShelfEvent("e", 0.0, 1.0, (p,), -q * prod.weight_g, (), var)
            fits = [choose_stock(ev, STORE, cfg, present, learned)
                    for present, learned in (({prod.id: q}, None), ({}, {p: {prod.id}}))]
            if (choose_stock(ev, STORE, cfg, {}).hypothesis is None
                    and all(c.hypothesis is not None and not c.needs_review
                            and c.hypothesis.items == ((prod.id, q),) for c in fits)):
                return p, prod.id
    raise AssertionError(f"no facing of zone {zone} fits")


def _closed_store_run(eng: Engine, block: PlateBlock,
                      verdicts: dict[str, Verdict]) -> Engine:
    """The engine stepped over ``block`` on a closed store nobody is in (no frames), each
    inventory case settled as soon as it opens by the verdict for its plate."""
    eng.set_store_mode(0.0, True)
    end = float(block.t[-1])
    for a in np.arange(0.0, end + CHUNK_S, CHUNK_S):
        b = float(a + CHUNK_S)
        i0, i1 = np.searchsorted(block.t, [a, b])
        eng.step(PlateBlock(block.t[i0:i1], block.grams[i0:i1], block.plate_ids), [], [], b)
        for cid, case in list(eng.cases.items()):
            if case.open:
                eng.resolve(cid, verdicts[case.event.plate_ids[0]])
    eng.finish()
    return eng


def test_a_closed_stores_removals_are_decided_from_the_record_as_in_one_process(
    ray_address: str,
) -> None:
    """Two items of a product the plate does not list are put on a plate of the first zone,
    one taken off a plate of the last: no count of the plates' own products fits, so each is
    an inventory case, and its verdict puts them in the record (the pick teaches the plate the
    product). Their removal later is then decided from the record, as staff stock, by the
    single process; on Ray the engine read no inventory and opened cases instead."""
    (p, d), (r, e) = _foreign(0, 2), _foreign(2, 1)
    lister = next(x for x in STORE.planogram if len(x.plates) == 1
                  and x.plates[0] in shelf_zones(STORE, 3)[1].plate_ids)
    w = {x.id: x.weight_g for x in STORE.catalogue}
    load = np.zeros(len(STORE.plate_ids))
    for x in STORE.planogram:
        for q in x.plates:
            load[STORE.plate_index[q]] += w[x.product] * x.stock / len(x.plates)
    moves = [(p, 10.0, 2 * w[d]), (r, 11.0, -w[e]),
             (lister.plates[0], 12.0, 12 * w[lister.product]),  # a restock of its own product
             (p, 40.0, -2 * w[d]), (r, 41.0, -w[e])]
    touches = [PlateInteraction(STORE.plate_index[q], t, t + 3.0, t + 1.2, g, 40.0)
               for q, t, g in moves]
    block = simulate_plates(load, touches, 60.0, np.random.default_rng(0),
                            plate_ids=STORE.plate_ids, noise_g=np.full(len(STORE.plate_ids), 1.5),
                            groups=np.zeros(len(STORE.plate_ids), dtype=np.int64))
    verdicts = {p: Verdict({"store": ((d, 2),)}, reviewer="op"),
                r: Verdict({"store": ((e, 1),)}, reviewer="op")}
    cfg = EngineConfig(review_hold_s=1e9)
    single = _closed_store_run(Engine(STORE, cfg), block, verdicts)
    ray = _closed_store_run(_ray_engine(ray_address, cfg), block, verdicts)
    removals = [d.items for d in single.decisions if d.stock and not d.needs_review
                and d.attribution.event.t_start > 30.0]
    assert sorted(removals) == sorted([((d, 2),), ((e, 1),)])
    assert single.shelf.learned == {r: {e}}
    assert [a.kind for a in single.alerts].count("stock_removed") == 2
    assert _decisions(ray) == _decisions(single)
    assert ray.alerts == single.alerts
    assert sorted(ray.cases) == sorted(single.cases) and len(single.cases) == 2
    assert ray.shelf.inventory.snapshot() == single.shelf.inventory.snapshot()
    assert _zone_stock(ray) == (single.shelf.inventory.snapshot(), single.shelf.learned)


# ---- the service on Ray ------------------------------------------------------------------------


@pytest.fixture
def svcs(tmp_path: Path) -> Iterator[dict[str, Svc]]:
    """Two services on fresh SQLite files: one runs the engine in process, one on Ray."""
    out, dbs = {}, []
    for name in ("single", "ray"):
        db = make_engine(f"sqlite:///{tmp_path / name}.db")
        upgrade(db)
        dbs.append(db)
        out[name] = make_svc(db)
    with out["single"].client, out["ray"].client:
        yield out
    for db in dbs:
        db.dispose()


def _health(svc: Svc) -> list[dict[str, Any]]:
    with svc.deps.sessions() as s:
        rows = s.scalars(select(EngineEvent).where(EngineEvent.source == "sim/health")
                         .order_by(EngineEvent.seq))
        return [json.loads(r.payload) for r in rows]


def test_the_service_on_ray_runs_to_the_end_with_the_inventory_in_its_health_rows(
    svcs: dict[str, Svc], restock: SimSession, ray_address: str
) -> None:
    """``walkout serve --ray``'s runner over the restock scenario: a health row per chunk,
    each with the inventory the single process's shows (it failed on its first chunk)."""
    rows = {}
    for name, svc in svcs.items():
        runner = LiveRunner(badged(svc.deps, Sensors.from_session(restock))[0], "sim")
        runner.ray_address = ray_address if name == "ray" else None
        runner.run(svc.deps)
        rows[name] = _health(svc)
    single, ray = rows["single"], rows["ray"]
    n_chunks = len(Sensors.from_session(restock).edges(CHUNK_S)) - 1
    assert len(single) >= n_chunks
    assert ray == single
    # the staff restocks show: some facing's count rose above its opening stock
    opening = {(tuple(fp), p): n for fp, c in OPENING.items() for p, n in c.items()}
    last = {(tuple(i["plates"]), i["product"]): i["count"] for i in single[-1]["inventory"]}
    assert any(n > opening.get(k, 0) for k, n in last.items())
