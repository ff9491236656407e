"""A one-gondola store and plate streams for the operations tests (inventory, alerts,
store health): the real shelf stage and engine, with the load-cell simulator for weights."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import private_broker

from walkout.engine import Engine, EngineConfig
from walkout.events import GateEvent, PlateBlock
from walkout.service.db import make_engine, upgrade
from walkout.service.testing import Svc, make_svc
from walkout.sim.loadcell import PlateInteraction, simulate_plates
from walkout.store.model import Store

CHUNK_S = 5.0


def _plate(pid: str, x0: float, z0: float) -> dict[str, object]:
    return {"id": pid, "box": {"min": (x0, 0.0, z0), "max": (x0 + 0.3, 0.4, z0 + 0.3)}}


def build_store() -> Store:
    """One gondola: P1 holds A (300 g, 3 in stock), P2 holds B (120 g, 8), P3 holds C
    (200 g, 6); D (410 g) is in the catalogue but on no plate."""
    products = [("A", 300.0, 3.0), ("B", 120.0, 2.0), ("C", 200.0, 2.0), ("D", 410.0, 3.0)]
    return Store.model_validate(
        {
            "name": "ops",
            "floor": {"outline": [(0, 0), (5, 0), (5, 5), (0, 5)]},
            "gondolas": [
                {
                    "id": "G1",
                    "box": {"min": (0, 0, 0), "max": (0.9, 0.4, 1.5)},
                    "front": (0.0, 1.0),
                    "shelves": [
                        {
                            "id": "S1",
                            "plates": [_plate(f"P{i + 1}", 0.3 * i, 0.5) for i in range(3)],
                        }
                    ],
                }
            ],
            "catalogue": [
                {"id": i, "name": i, "price": "1.00", "weight_g": w, "weight_sd_g": sd}
                for i, w, sd in products
            ],
            "planogram": [
                {"product": "A", "plates": ["P1"], "stock": 3},
                {"product": "B", "plates": ["P2"], "stock": 8},
                {"product": "C", "plates": ["P3"], "stock": 6},
            ],
            "cameras": [
                {
                    "id": "cam1",
                    "resolution": (640, 480),
                    "fps": 10,
                    "K": ((500, 0, 320), (0, 500, 240), (0, 0, 1)),
                    "pose": {"rvec": (0, 0, 0), "tvec": (0, 0, 3)},
                }
            ],
            "gates": [
                {"id": "in", "kind": "entry", "area": {"min": (0, 4, 0), "max": (1, 5, 0)}},
                {"id": "out", "kind": "exit", "area": {"min": (2, 4, 0), "max": (3, 5, 0)}},
            ],
        }
    )


@pytest.fixture(scope="session")
def store() -> Store:
    return build_store()


def _touch(
    store: Store, plate: str, t: float, delta_g: float, press_g: float = 40.0, dur: float = 2.0
) -> PlateInteraction:
    """A hand on ``plate`` from ``t`` for ``dur`` s, changing its load by ``delta_g``."""
    return PlateInteraction(store.plate_index[plate], t, t + dur, t + 0.45 * dur, delta_g, press_g)


def _plates(
    store: Store, interactions: Sequence[PlateInteraction], duration_s: float, seed: int = 0
) -> PlateBlock:
    """Simulated readings of every plate, loaded with the planogram's opening stock."""
    load = np.zeros(len(store.plate_ids))
    for e in store.planogram:
        for p in e.plates:
            load[store.plate_index[p]] += (
                store.products[e.product].weight_g * e.stock / len(e.plates)
            )
    return simulate_plates(
        load,
        interactions,
        duration_s,
        np.random.default_rng(seed),
        plate_ids=store.plate_ids,
        noise_g=np.full(len(store.plate_ids), 1.5),
        groups=np.zeros(len(store.plate_ids), dtype=np.int64),
    )


def _run_engine(
    store: Store,
    block: PlateBlock,
    gates: Sequence[GateEvent] = (),
    config: EngineConfig | None = None,
    closed: bool = False,
    reopen_at: float | None = None,
) -> Engine:
    """The engine stepped over ``block`` chunk by chunk (no camera frames: nobody is seen);
    ``closed``: the store marked closed (restock mode) from the start, until ``reopen_at``."""
    eng = Engine(store, config or EngineConfig(review_hold_s=1e9))
    if closed:
        eng.set_store_mode(0.0, True)
    end = float(block.t[-1])
    for a in np.arange(0.0, end + CHUNK_S, CHUNK_S):
        if reopen_at is not None and a <= reopen_at < a + CHUNK_S:
            eng.set_store_mode(reopen_at, False)
        b = float(a + CHUNK_S)
        i0, i1 = np.searchsorted(block.t, [a, b])
        eng.step(
            PlateBlock(block.t[i0:i1], block.grams[i0:i1], block.plate_ids),
            [],
            [g for g in gates if a <= g.t < b],
            b,
        )
    return eng


Touch = Callable[..., PlateInteraction]
Plates = Callable[..., PlateBlock]
RunEngine = Callable[..., Engine]


@pytest.fixture
def touch(store: Store) -> Touch:
    """``touch(plate, t, delta_g, press_g=40, dur=2)``: a hand visit changing the load."""
    return partial(_touch, store)


@pytest.fixture
def plates(store: Store) -> Plates:
    """``plates(interactions, duration_s, seed=0)``: every plate's simulated readings."""
    return partial(_plates, store)


@pytest.fixture
def run_engine(store: Store) -> RunEngine:
    """``run_engine(block, gates=(), config=None)``: the engine stepped over ``block``."""
    return partial(_run_engine, store)


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Svc]:
    """The real service on a fresh, migrated SQLite file (a test module may override it)."""
    db = make_engine(f"sqlite:///{tmp_path / 'walkout.db'}")
    upgrade(db)
    s = make_svc(db)
    with s.client:
        yield s
    db.dispose()


@pytest.fixture(scope="module")
def mqtt_url() -> Iterator[str]:
    """A private Mosquitto for the module (the sensor network's runner tests)."""
    yield from private_broker()
