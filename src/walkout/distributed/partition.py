"""How a store is cut into partitions: pure functions of the store description.

* Shelf zones: runs of consecutive gondolas (store order) with about equal plate counts.
  Everything the shelf stage couples stays inside one gondola (vibration is shared by a
  gondola's plates, product footprints span plates of one shelf), and gondolas joined by a
  planogram entry are never separated, so a zone's stage sees exactly what the whole-store
  stage sees for those plates. Consecutive runs keep each zone's plates in store order, which
  is what makes merging the zones' outputs a plain sort.
* Floor areas: cameras grouped by where on the floor they look (k-means-like strips along the
  store's longer side, by the camera's floor point), with about equal camera counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from walkout.store.model import Store


@dataclass(frozen=True)
class Zone:
    """Shelf partition: consecutive gondolas and their plates (store order)."""

    index: int
    gondolas: tuple[str, ...]
    plate_ids: tuple[str, ...]
    columns: np.ndarray  # indices of plate_ids in the store's plate order


@dataclass(frozen=True)
class Area:
    """Tracking partition: the cameras looking at one strip of the floor."""

    index: int
    cameras: tuple[int, ...]  # indices into store.cameras
    x_range: tuple[float, float]  # floor strip along the split axis (m)


def shelf_zones(store: Store, n: int) -> list[Zone]:
    """At most ``n`` zones of consecutive gondolas with balanced plate counts."""
    if n < 1:
        raise ValueError(f"need at least one shelf zone, got {n}")
    gondolas = store.gondolas
    # gondolas that a planogram entry joins must share a zone: cut only between free pairs
    g_of = {p.id: k for k, g in enumerate(gondolas) for s in g.shelves for p in s.plates}
    joined = np.zeros(len(gondolas), dtype=bool)  # joined[k]: gondola k and k+1 inseparable
    for e in store.planogram:
        ks = [g_of[p] for p in e.plates]
        joined[min(ks) : max(ks)] = True
    sizes = np.array([sum(len(s.plates) for s in g.shelves) for g in gondolas])
    target = sizes.sum() / min(n, len(gondolas))
    runs: list[list[int]] = [[]]
    acc = 0.0
    for k in range(len(gondolas)):
        runs[-1].append(k)
        acc += sizes[k]
        last = k == len(gondolas) - 1
        if not last and not joined[k] and acc >= target * len(runs) - 1e-9 and len(runs) < n:
            runs.append([])
    index = store.plate_index
    out = []
    for i, run in enumerate(r for r in runs if r):
        plates = tuple(p.id for k in run for s in gondolas[k].shelves for p in s.plates)
        out.append(Zone(i, tuple(gondolas[k].id for k in run), plates,
                        np.array([index[p] for p in plates], dtype=np.int64)))
    return out


def zone_store(store: Store, zone: Zone) -> Store:
    """The store as one zone's shelf stage sees it: its gondolas, its planogram entries (the
    whole catalogue stays: a pick is explained against every product)."""
    keep = set(zone.gondolas)
    plates = set(zone.plate_ids)
    data = store.model_dump()
    data["gondolas"] = [g for g in data["gondolas"] if g["id"] in keep]
    data["planogram"] = [e for e in data["planogram"] if set(e["plates"]) <= plates]
    return Store.model_validate(data)


def floor_areas(store: Store, n: int) -> list[Area]:
    """At most ``n`` areas: cameras sorted by the floor point they look at along the store's
    longer side and cut into runs of about equal size."""
    if n < 1:
        raise ValueError(f"need at least one floor area, got {n}")
    pts = np.array([_floor_point(store, i) for i in range(len(store.cameras))])
    outline = np.array(store.floor.outline)
    axis = int(np.ptp(outline[:, 1]) > np.ptp(outline[:, 0]))
    order = np.argsort(pts[:, axis], kind="stable")
    out = []
    for i, part in enumerate(p for p in np.array_split(order, min(n, len(order))) if p.size):
        xs = pts[part, axis]
        out.append(Area(i, tuple(sorted(int(c) for c in part)), (float(xs.min()), float(xs.max()))))
    return out


def _floor_point(store: Store, i: int) -> np.ndarray:
    """Where camera ``i``'s optical axis meets the floor (its position if it looks up)."""
    cam = store.cameras[i]
    c = cam.center
    axis = cam.R[2]  # camera z axis in world coordinates
    if axis[2] >= -1e-6:
        return np.asarray(c[:2], dtype=np.float64)
    s = -c[2] / axis[2]
    return np.asarray((c + s * axis)[:2], dtype=np.float64)
