"""Generate stores of any size: from a 100 m² shop to a 10,000 m² hypermarket.

The scale benchmark and the distributed engine need stores far larger than the shipped ones,
with the sensor counts a real one would have. :func:`generate_store` lays out a rectangular
floor the way stores are built: an entry/exit zone along the front wall, rows of double-sided
island gondolas (2.4 m units of 4 shelves) with aisles between rows and cross aisles every few
units, and ceiling cameras on a grid, each tilted a different way so that every point of the
floor is seen from several sides. The planogram reuses the shipped ``small`` store's catalogue
(real products and weights) under the same rule as the small store: products that weight alone
cannot tell apart never share a plate. Deterministic for a given seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from walkout.store.generate import (
    GONDOLA_HEIGHT,
    SHELF_PITCH,
    SHELF_SURFACES,
    UNIT_DEPTH,
    UNIT_LENGTH,
    SourceProduct,
    distinguishable,
    look_at_camera,
)
from walkout.store.model import (
    Box,
    Camera,
    Floor,
    Gate,
    Gondola,
    PlanogramEntry,
    Plate,
    Shelf,
    Store,
)

FRONT_ZONE_M = 3.6  # gates and lobby along the front wall (y = 0)
WALL_GAP_M = 1.0  # walkway between the outer walls and the gondolas
AISLE_M = 1.8  # between two rows of islands
CROSS_AISLE_M = 2.0  # across the rows, every BLOCK_UNITS units
BLOCK_UNITS = 5
ASPECT = 1.25  # floor width / depth
CAMERA_HEIGHT_M = 3.6
CAMERA_REACH_M = 3.0  # each camera looks at a floor point this far from below it
PLATES_PER_UNIT = len(SHELF_SURFACES) * 4


class StoreSizeError(ValueError):
    """Sizes that cannot make a store (too many plates for the floor, too few cameras...)."""


@dataclass(frozen=True)
class Layout:
    """Where the islands go: their lower-left corners (south face at ``y``)."""

    width: float
    depth: float
    islands: list[tuple[float, float]]


def _island_slots(width: float, depth: float) -> list[tuple[float, float]]:
    """Every place an island (two units back to back) fits, row by row from the front."""
    x0, x1 = WALL_GAP_M, width - WALL_GAP_M
    y0, y1 = FRONT_ZONE_M, depth - WALL_GAP_M
    xs: list[float] = []
    x, k = x0, 0
    while x + UNIT_LENGTH <= x1 + 1e-9:
        xs.append(round(x, 3))
        k += 1
        x += UNIT_LENGTH + (CROSS_AISLE_M if k % BLOCK_UNITS == 0 else 0.0)
    ys: list[float] = []
    y = y0
    while y + 2 * UNIT_DEPTH <= y1 + 1e-9:
        ys.append(round(y, 3))
        y += 2 * UNIT_DEPTH + AISLE_M
    return [(x, y) for y in ys for x in xs]


def max_plates(area_m2: float) -> int:
    """The most plates :func:`generate_store` fits on ``area_m2`` m²."""
    depth = math.sqrt(area_m2 / ASPECT)
    return len(_island_slots(area_m2 / depth, depth)) * 2 * PLATES_PER_UNIT


def plan_layout(area_m2: float, plates: int) -> Layout:
    """The floor and the islands that carry ``plates`` plates, spread evenly over it."""
    if area_m2 < 40:
        raise StoreSizeError(f"--area {area_m2:g} m²: a store needs at least 40 m²")
    if plates < 1:
        raise StoreSizeError(f"--plates {plates}: a store needs at least one plate")
    depth = math.sqrt(area_m2 / ASPECT)
    width = area_m2 / depth
    slots = _island_slots(width, depth)
    need = math.ceil(plates / (2 * PLATES_PER_UNIT))
    if need > len(slots):
        most = len(slots) * 2 * PLATES_PER_UNIT
        raise StoreSizeError(
            f"--plates {plates} do not fit in {area_m2:g} m² (at most {most} plates there: "
            f"{len(slots)} islands of {2 * PLATES_PER_UNIT}); give a larger --area")
    # spread the islands over the whole floor: shoppers walk all of it, cameras see all of it
    pick = np.unique(np.round(np.linspace(0, len(slots) - 1, need)).astype(int))
    return Layout(round(width, 3), round(depth, 3), [slots[i] for i in pick])


def _unit(gid: str, x0: float, y0: float, front: tuple[float, float],
          n_plates: int) -> Gondola:
    """One single-sided unit with ``n_plates`` plates (16 when full), shelf by shelf."""
    x1, y1 = round(x0 + UNIT_LENGTH, 3), round(y0 + UNIT_DEPTH, 3)
    width = UNIT_LENGTH / 4
    shelves = []
    left = n_plates
    for s, z in enumerate(SHELF_SURFACES, 1):
        k = min(4, left)
        if k == 0:
            break
        left -= k
        shelves.append(Shelf(id=f"{gid}-S{s}", plates=[
            Plate(id=f"{gid}-S{s}-P{p}", box=Box(
                min=(round(x0 + (p - 1) * width, 3), y0, z),
                max=(round(x0 + p * width, 3), y1, round(z + SHELF_PITCH - 0.05, 3))))
            for p in range(1, k + 1)]))
    return Gondola(id=gid, box=Box(min=(x0, y0, 0.0), max=(x1, y1, GONDOLA_HEIGHT)),
                   front=front, shelves=shelves)


def _gondolas(layout: Layout, plates: int) -> list[Gondola]:
    out: list[Gondola] = []
    left = plates
    for i, (x, y) in enumerate(layout.islands, 1):
        for side, yy, front in (("S", y, (0.0, -1.0)), ("N", round(y + UNIT_DEPTH, 3),
                                                         (0.0, 1.0))):
            n = min(PLATES_PER_UNIT, left)
            if n == 0:
                break
            out.append(_unit(f"I{i:04d}{side}", x, yy, front, n))
            left -= n
    return out


def _cameras(layout: Layout, n: int) -> list[Camera]:
    """``n`` cameras on a grid over the floor, at ``CAMERA_HEIGHT_M``, each tilted towards a
    point ``CAMERA_REACH_M`` away in one of four directions (turning from one camera to the
    next), so that neighbouring cameras see each spot from different sides."""
    if n < 1:
        raise StoreSizeError(f"--cameras {n}: a store needs at least one camera")
    w, d = layout.width, layout.depth
    ny = max(1, round(math.sqrt(n * d / w)))
    per_row = [n // ny + (1 if j < n % ny else 0) for j in range(ny)]  # as even as it goes
    spots = [((i + 0.5) * w / cols, (j + 0.5) * d / ny, i, j)
             for j, cols in enumerate(per_row) for i in range(cols)]
    cams = []
    dirs = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))
    for k, (x, y, i, j) in enumerate(spots):
        dx, dy = dirs[(i + 2 * j) % 4]
        reach = min(CAMERA_REACH_M, 0.35 * min(w, d))
        tx = float(np.clip(x + dx * reach, 0.5, w - 0.5))
        ty = float(np.clip(y + dy * reach, 0.5, d - 0.5))
        if math.hypot(tx - x, ty - y) < 0.3:  # a tiny store: look at its centre instead
            tx, ty = w / 2 + 0.5, d / 2
        cams.append(look_at_camera(f"C{k + 1:03d}", (round(x, 3), round(y, 3),
                                                     CAMERA_HEIGHT_M), (tx, ty, 0.6)))
    return cams


def _planogram(gondolas: list[Gondola], pool: list[SourceProduct],
               rng: np.random.Generator) -> list[PlanogramEntry]:
    """Shelf by shelf, a realistic pattern of footprints, products drawn in a shuffled cycle of
    the catalogue; a product is skipped for a footprint whose plates hold one it cannot be told
    apart from by weight."""
    patterns = [((0,), (1,), (2,), (3,)), ((0, 1), (2,), (3,)), ((0,), (1, 2), (3,)),
                ((0, 1), (2, 3)), ((0,), (1,), (2,), (3,), (3,))]
    order = [pool[i] for i in rng.permutation(len(pool))]
    k = 0
    entries: list[PlanogramEntry] = []
    for g in gondolas:
        for shelf in g.shelves:
            n = len(shelf.plates)
            pattern = [fp for fp in patterns[int(rng.integers(len(patterns)))]
                       if max(fp) < n] or [(i,) for i in range(n)]
            on_plate: dict[int, list[SourceProduct]] = {}
            for fp in pattern:
                for _ in range(len(order)):
                    cand = order[k % len(order)]
                    k += 1
                    near = [q for i in fp for q in on_plate.get(i, [])]
                    if all(q is not cand and distinguishable(cand, q) for q in near):
                        break
                else:
                    raise StoreSizeError("catalogue too small to fill a shelf")
                for i in fp:
                    on_plate.setdefault(i, []).append(cand)
                share = max(len(on_plate[i]) for i in fp)
                stock = int(np.clip(len(fp) * 3500.0 / share // cand.weight_g, 2, 12))
                entries.append(PlanogramEntry(product=cand.id,
                                              plates=[shelf.plates[i].id for i in fp],
                                              stock=stock))
    return entries


def _gates(layout: Layout) -> list[Gate]:
    """One entry and one exit gate on the front wall, the entry left, the exit right."""
    w = layout.width
    ex0 = min(0.8, w / 2 - 1.6)
    return [
        Gate(id="entry", kind="entry", area=Box(min=(round(ex0, 3), 0.0, 0.0),
                                                  max=(round(ex0 + 1.4, 3), 1.0, 0.0))),
        Gate(id="exit", kind="exit", area=Box(min=(round(w - ex0 - 1.4, 3), 0.0, 0.0),
                                                max=(round(w - ex0, 3), 1.0, 0.0))),
    ]


def generate_store(area_m2: float, cameras: int, plates: int, seed: int = 1,
                   name: str | None = None, catalogue: Store | None = None) -> Store:
    """A store of ``area_m2`` m² with exactly ``cameras`` cameras and ``plates`` plates.

    Products, prices, weights and tax come from ``catalogue`` (default: the shipped
    ``small`` store). Raises :class:`StoreSizeError` when the sizes cannot make a store."""
    from walkout.store.loader import load_store

    src = catalogue or load_store("small")
    layout = plan_layout(area_m2, plates)
    gondolas = _gondolas(layout, plates)
    pool = [SourceProduct(p.id, p.name, p.weight_g, p.weight_sd_g) for p in src.catalogue]
    planogram = _planogram(gondolas, pool, np.random.default_rng(seed))
    used = {e.product for e in planogram}
    w, d = layout.width, layout.depth
    return Store(
        name=name or f"generated-{area_m2:g}m2-{cameras}c-{plates}p-s{seed}",
        currency=src.currency,
        floor=Floor(outline=[(0.0, 0.0), (w, 0.0), (w, d), (0.0, d)]),
        gondolas=gondolas,
        catalogue=[p for p in src.catalogue if p.id in used],
        planogram=planogram,
        cameras=_cameras(layout, cameras),
        gates=_gates(layout),
        tax_rates=src.tax_rates,  # the products keep their tax classes
        default_tax=src.default_tax,
    )


def coverage(store: Store, spacing_m: float = 0.5, z: float = 1.0) -> dict[str, float]:
    """How many cameras see each walkable floor point at hand height (``z``), ignoring
    occlusion: the fraction seen by at least 1 and by at least 2, and the mean count."""
    from walkout.sim.floor import FloorGrid

    grid = FloorGrid(store)
    pts = []
    for x in np.arange(spacing_m / 2, grid.shape[0] * grid.res, spacing_m):
        for y in np.arange(spacing_m / 2, grid.shape[1] * grid.res, spacing_m):
            p = np.array([grid.origin[0] + x, grid.origin[1] + y])
            if grid.free[tuple(grid.ij(p))]:
                pts.append((p[0], p[1], z))
    world = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
    seen = np.zeros(len(world), dtype=int)
    for cam in store.cameras:
        pc = world @ cam.R.T + cam.t
        front = pc[:, 2] > 0.1
        uv = pc[:, :2] / np.where(front, pc[:, 2], 1.0)[:, None] @ np.diag(
            [cam.K_array[0, 0], cam.K_array[1, 1]]) + cam.K_array[:2, 2]
        w, h = cam.resolution
        seen += front & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    n = max(len(world), 1)
    return {"points": float(len(world)), "seen_1": float((seen >= 1).sum() / n),
            "seen_2": float((seen >= 2).sum() / n), "mean_views": float(seen.mean())}
