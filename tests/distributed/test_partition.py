"""How a store is cut into shelf zones and floor areas (pure: no Ray needed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from walkout.distributed.partition import floor_areas, shelf_zones, zone_store
from walkout.store import load_store
from walkout.store.model import Store


@pytest.fixture(scope="module")
def store() -> Store:
    return load_store("small")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 1000])
def test_zones_cover_every_plate_once_in_store_order(store: Store, n: int) -> None:
    zones = shelf_zones(store, n)
    assert 1 <= len(zones) <= min(n, len(store.gondolas))
    plates = [p for z in zones for p in z.plate_ids]
    assert tuple(plates) == store.plate_ids  # consecutive runs: merging is a plain sort
    for z in zones:
        assert np.array_equal(z.columns, [store.plate_index[p] for p in z.plate_ids])
        gondolas = {store.plate_gondola[p].id for p in z.plate_ids}
        assert gondolas == set(z.gondolas)


def test_zones_are_balanced(store: Store) -> None:
    sizes = [len(z.plate_ids) for z in shelf_zones(store, 2)]
    assert len(sizes) == 2 and max(sizes) - min(sizes) <= 32  # one gondola's worth at most


def test_a_planogram_entry_across_gondolas_keeps_them_together(store: Store) -> None:
    g1, g2 = store.gondolas[0], store.gondolas[1]
    p1, p2 = g1.shelves[0].plates[0].id, g2.shelves[0].plates[0].id
    data = store.model_dump()
    data["planogram"].append({"product": store.catalogue[0].id, "plates": [p1, p2], "stock": 1})
    joined = Store.model_validate(data)
    for z in shelf_zones(joined, len(joined.gondolas)):
        assert (g1.id in z.gondolas) == (g2.id in z.gondolas)


def test_zone_store_keeps_the_catalogue_and_its_own_planogram(store: Store) -> None:
    z = shelf_zones(store, 3)[1]
    sub = zone_store(store, z)
    assert sub.plate_ids == z.plate_ids
    assert sub.catalogue == store.catalogue
    assert all(set(e.plates) <= set(z.plate_ids) for e in sub.planogram)
    assert sum(len(e.plates) for e in sub.planogram) == sum(
        len(e.plates) for e in store.planogram if set(e.plates) <= set(z.plate_ids))


@pytest.mark.parametrize("n", [1, 2, 5, 100])
def test_areas_cover_every_camera_once(store: Store, n: int) -> None:
    areas = floor_areas(store, n)
    assert len(areas) == min(n, len(store.cameras))
    cams = sorted(c for a in areas for c in a.cameras)
    assert cams == list(range(len(store.cameras)))
    spans = [a.x_range for a in areas]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # strips, in order


def test_bad_partition_counts_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="at least one shelf zone"):
        shelf_zones(store, 0)
    with pytest.raises(ValueError, match="at least one floor area"):
        floor_areas(store, 0)
