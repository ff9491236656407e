"""Generated stores: exact sizes, a valid store file, sensible geometry, cameras that cover
the floor, a planogram that weight can resolve."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from walkout.cli import app
from walkout.store.bigstore import StoreSizeError, coverage, generate_store, max_plates
from walkout.store.generate import SourceProduct, distinguishable
from walkout.store.loader import load_store
from walkout.store.model import Store


@pytest.fixture(scope="module")
def store() -> Store:
    return generate_store(1000, 40, 2000, seed=3)


def test_sizes_are_exact(store: Store) -> None:
    assert (len(store.plates), len(store.cameras)) == (2000, 40)
    xy = np.asarray(store.floor.outline)
    area = np.ptp(xy[:, 0]) * np.ptp(xy[:, 1])
    assert area == pytest.approx(1000, rel=1e-3)
    assert {g.kind for g in store.gates} == {"entry", "exit"}


def test_cli_writes_a_file_the_strict_loader_accepts(tmp_path: Path) -> None:
    out = tmp_path / "big.yaml"
    r = CliRunner().invoke(app, ["store", "generate", "--area", "300", "--cameras", "12",
                                 "--plates", "500", "--seed", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    back = load_store(out)
    assert back == generate_store(300, 12, 500, seed=2)
    assert len(back.plates) == 500 and "500" in r.output.replace(",", "")


def test_geometry_is_a_store(store: Store) -> None:
    xy = np.asarray(store.floor.outline)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    boxes = [g.box for g in store.gondolas]
    for b in boxes:  # inside the floor, clear of the gate zone
        assert lo[0] < b.min[0] and b.max[0] < hi[0] and b.min[1] > 3.0 and b.max[1] < hi[1]
    for a, b in itertools.combinations(boxes, 2):  # units touch back to back, never overlap
        overlap = [min(a.max[i], b.max[i]) - max(a.min[i], b.min[i]) for i in range(2)]
        assert min(overlap) <= 1e-9
    for g in store.gondolas:  # each plate inside its unit, in front of the aisle it faces
        for p in (p for s in g.shelves for p in s.plates):
            assert all(g.box.min[i] - 1e-9 <= p.box.min[i] <= p.box.max[i] <= g.box.max[i]
                       + 1e-9 for i in range(3))
    for gate in store.gates:
        assert lo[0] <= gate.area.min[0] and gate.area.max[0] <= hi[0]


def test_cameras_see_every_walkable_point_twice(store: Store) -> None:
    cov = coverage(store)
    assert cov["points"] > 1000
    assert cov["seen_2"] == 1.0 and cov["mean_views"] >= 3


def test_planogram_fills_every_plate_and_weight_tells_neighbours_apart(store: Store) -> None:
    assert all(store.plate_products[p] for p in store.plate_ids)
    src = load_store("small").products
    assert set(store.products) <= set(src)  # the shipped catalogue, prices included
    assert all(store.products[k] == src[k] for k in store.products)
    for prods in store.plate_products.values():
        sp = [SourceProduct(k, "", store.products[k].weight_g, store.products[k].weight_sd_g)
              for k in prods]
        assert all(distinguishable(a, b) for a, b in itertools.combinations(sp, 2))
    assert all(e.stock >= 2 for e in store.planogram)


def test_deterministic_by_seed() -> None:
    a, b = generate_store(300, 12, 400, seed=5), generate_store(300, 12, 400, seed=5)
    assert a == b
    assert generate_store(300, 12, 400, seed=6).planogram != a.planogram


def test_sizes_that_cannot_be_a_store_are_refused() -> None:
    with pytest.raises(StoreSizeError, match="do not fit in 100 m²"):
        generate_store(100, 12, max_plates(100) + 1)
    assert len(generate_store(100, 12, max_plates(100)).plates) == max_plates(100)
    with pytest.raises(StoreSizeError, match="at least one camera"):
        generate_store(300, 0, 100)
    r = CliRunner().invoke(app, ["store", "generate", "--area", "100", "--plates", "5000",
                                 "--out", "never.yaml"])
    assert r.exit_code == 2 and "do not fit" in r.output and not Path("never.yaml").exists()


def test_hypermarket_size() -> None:
    st = generate_store(10000, 400, 20000)
    assert (len(st.plates), len(st.cameras), len(st.gondolas)) == (20000, 400, 1250)
    assert coverage(st, spacing_m=2.0)["seen_2"] == 1.0
