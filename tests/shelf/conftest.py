"""A small hand-built store and helpers to simulate plates and run the shelf stage on them."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from walkout.events import PlateBlock, ShelfEvent
from walkout.shelf import ShelfConfig, ShelfStage
from walkout.sim.loadcell import PlateInteraction, simulate_plates
from walkout.store.model import Store

Sim = Callable[..., PlateBlock]
Run = Callable[..., tuple[list[ShelfEvent], ShelfStage]]
Touch = Callable[..., PlateInteraction]


def _plate(pid: str, x0: float, z0: float) -> dict[str, object]:
    return {"id": pid, "box": {"min": (x0, 0.0, z0), "max": (x0 + 0.3, 0.4, z0 + 0.3)}}


def build_store() -> Store:
    """One gondola, two shelves: S1 has 4 plates (D spans P3+P4), S2 has 2."""
    s1 = [_plate(f"S1-P{i + 1}", 0.3 * i, 0.5) for i in range(4)]
    s2 = [_plate(f"S2-P{i + 1}", 0.3 * i, 1.0) for i in range(2)]
    products = [
        ("A", 300.0, 3.0),
        ("B", 120.0, 2.0),
        ("C", 200.0, 2.0),
        ("D", 500.0, 4.0),
        ("E", 250.0, 2.0),
        ("F", 250.0, 2.0),
        ("G", 80.0, 1.0),
        ("H", 410.0, 3.0),  # in the catalogue, on no plate
    ]
    return Store.model_validate(
        {
            "name": "test",
            "floor": {"outline": [(0, 0), (5, 0), (5, 5), (0, 5)]},
            "gondolas": [
                {
                    "id": "G1",
                    "box": {"min": (0, 0, 0), "max": (1.2, 0.4, 1.5)},
                    "front": (0.0, 1.0),
                    "shelves": [{"id": "S1", "plates": s1}, {"id": "S2", "plates": s2}],
                }
            ],
            "catalogue": [
                {"id": i, "name": i, "price": "1.00", "weight_g": w, "weight_sd_g": sd}
                for i, w, sd in products
            ],
            "planogram": [
                {"product": "A", "plates": ["S1-P1"], "stock": 10},
                {"product": "B", "plates": ["S1-P2"], "stock": 8},
                {"product": "C", "plates": ["S1-P2"], "stock": 8},
                {"product": "D", "plates": ["S1-P3", "S1-P4"], "stock": 6},
                {"product": "E", "plates": ["S2-P1"], "stock": 5},
                {"product": "F", "plates": ["S2-P1"], "stock": 5},
                {"product": "G", "plates": ["S2-P2"], "stock": 12},
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


def initial_loads(store: Store) -> np.ndarray:
    """True load per plate from the planogram stock (footprints split evenly)."""
    load = np.zeros(len(store.plate_ids))
    for e in store.planogram:
        w = store.products[e.product].weight_g * e.stock / len(e.plates)
        for p in e.plates:
            load[store.plate_index[p]] += w
    return load


@pytest.fixture
def touch(store: Store) -> Touch:
    """``touch(plate, t, delta_g, press_g=40, dur=2)``: a hand visit changing the load."""

    def _touch(
        plate: str, t: float, delta_g: float, press_g: float = 40.0, dur: float = 2.0
    ) -> PlateInteraction:
        return PlateInteraction(
            store.plate_index[plate], t, t + dur, t + 0.45 * dur, delta_g, press_g
        )

    return _touch


@pytest.fixture
def sim(store: Store) -> Sim:
    def _sim(
        interactions: Sequence[PlateInteraction],
        duration_s: float = 30.0,
        seed: int = 0,
        noise_g: float | np.ndarray | None = 1.5,
    ) -> PlateBlock:
        noise = None if noise_g is None else np.broadcast_to(noise_g, (len(store.plate_ids),))
        return simulate_plates(
            initial_loads(store),
            interactions,
            duration_s,
            np.random.default_rng(seed),
            plate_ids=store.plate_ids,
            noise_g=noise,
            groups=np.zeros(len(store.plate_ids), dtype=np.int64),
        )

    return _sim


def split_block(block: PlateBlock, block_s: float) -> list[PlateBlock]:
    """Cut a block into consecutive blocks of ``block_s`` seconds."""
    edges = np.searchsorted(block.t, np.arange(0.0, block.t[-1] + block_s, block_s))
    edges = np.unique(np.append(edges, block.t.shape[0]))
    return [
        PlateBlock(block.t[a:b], block.grams[a:b], block.plate_ids)
        for a, b in itertools.pairwise(edges)
        if b > a
    ]


@pytest.fixture
def split() -> Callable[[PlateBlock, float], list[PlateBlock]]:
    return split_block


@pytest.fixture
def run(store: Store) -> Run:
    def _run(
        block: PlateBlock, block_s: float = 10.0, config: ShelfConfig | None = None
    ) -> tuple[list[ShelfEvent], ShelfStage]:
        stage = ShelfStage(store, config)
        events: list[ShelfEvent] = []
        for b in split_block(block, block_s):
            events += stage.process(b)
        events += stage.flush()
        return events, stage

    return _run
