"""Simulated shoppers: physically plausible paths, reaches into plates, consistent truth."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import numpy as np
import pytest

from walkout.attribution import box_distance
from walkout.events import WRISTS
from walkout.sim.floor import FloorGrid
from walkout.sim.shoppers import ShopperConfig, ShopperSimulator
from walkout.store import load_store


@pytest.fixture(scope="module")
def visits():
    store = load_store("small")
    sim = ShopperSimulator(store, ShopperConfig(put_back_p=0.5), np.random.default_rng(4))
    return store, [sim.shopper(i, f"q{i}", 1.0 + 5.0 * i) for i in range(30)]


def test_paths_avoid_gondolas_and_speeds_are_human(visits) -> None:
    store, results = visits
    for r in results:
        hips = r.path.joints[:, 11:13, :2].mean(axis=1)
        for g in store.gondolas:
            inside = (
                (hips[:, 0] > g.box.min[0])
                & (hips[:, 0] < g.box.max[0])
                & (hips[:, 1] > g.box.min[1])
                & (hips[:, 1] < g.box.max[1])
            )
            assert not inside.any(), f"{r.credential} walks through {g.id}"
        v = np.linalg.norm(np.diff(hips, axis=0), axis=1) * 30.0
        assert v.max() < 1.7, "faster than a brisk walk"
        assert np.median(v[v > 0.3]) > 0.6


def test_every_interaction_puts_a_wrist_in_the_plate(visits) -> None:
    store, results = visits
    n = 0
    for r in results:
        for e in r.events:
            m = (r.path.t >= e.t_in) & (r.path.t <= e.t_out)
            boxes = np.array([[store.plates[p].box.min, store.plates[p].box.max] for p in e.plates])
            d = box_distance(r.path.joints[m][:, list(WRISTS)].astype(float), boxes)
            assert d.min() == 0.0
            n += 1
    assert n > 60


def test_truth_receipts_are_picks_minus_put_backs(visits) -> None:
    _, results = visits
    puts = 0
    for r in results:
        net: Counter[str] = Counter()
        for e in r.events:
            net[e.product_id] += e.quantity if e.kind == "pick" else -e.quantity
            puts += e.kind == "put"
        assert +net == r.receipt
        assert [g.kind for g in r.gates] == ["entry", "exit"]
        assert r.gates[0].credential == r.credential
    assert puts >= 5


def test_same_plate_is_never_used_by_two_hands_at_once(visits) -> None:
    _, results = visits
    spans: dict[str, list[tuple[float, float]]] = {}
    for r in results:
        for e in r.events:
            for p in e.plates:
                spans.setdefault(p, []).append((e.t_in, e.t_out))
    for p, s in spans.items():
        s.sort()
        for (_, b), (a, _) in pairwise(s):
            assert a >= b, p


def test_floor_paths_are_walkable() -> None:
    store = load_store("small")
    grid = FloorGrid(store)
    path = grid.path(np.array([1.5, 0.4]), np.array([6.0, 9.0]))
    assert np.allclose(path[0], [1.5, 0.4]) and np.allclose(path[-1], [6.0, 9.0])
    dense = np.concatenate([np.linspace(a, b, 50) for a, b in pairwise(path)])
    for g in store.gondolas:
        assert not any(g.box.contains_xy(x, y) for x, y in dense)


def test_simulator_is_deterministic() -> None:
    store = load_store("small")
    a = ShopperSimulator(store, ShopperConfig(), np.random.default_rng(9)).shopper(0, "q", 1.0)
    b = ShopperSimulator(store, ShopperConfig(), np.random.default_rng(9)).shopper(0, "q", 1.0)
    assert np.array_equal(a.path.joints, b.path.joints) and a.events == b.events


def test_people_pass_the_entry_gate_one_at_a_time() -> None:
    store = load_store("small")
    sim = ShopperSimulator(store, ShopperConfig(), np.random.default_rng(5))
    results = [sim.shopper(i, f"q{i}", 1.0 + 0.5 * i) for i in range(6)]  # all arrive at once
    scans = sorted(g.t for r in results for g in r.gates if g.kind == "entry")
    assert min(np.diff(scans)) >= ShopperConfig().gate_gap_s - 1e-6
