"""Build the shipped ``small`` store from real product data.

The layout is a ~100 m² convenience store: two rows of double-sided island gondolas and a
wall unit (10 single-sided units, 160 plates), 12 wide-angle ceiling cameras, one entry and
one exit gate.

The catalogue is made of real products and real unit weights: AiFi AutoCheckout's
``products.json`` (one weight per product) and AIM3S's ``product_info.json`` (several measured
weights per product, so a real per-item spread). Many of them weigh nearly the same; the
planogram never puts two products that weight alone cannot tell apart on one plate, which is
what a store operator would do, so that location + weight identifies a product. The source data
has no real prices (AiFi lists 1 for everything): prices here are illustrative, drawn from a
fixed seed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import cv2
import numpy as np

from walkout.store.model import (
    BlindArea,
    Box,
    Camera,
    CameraPose,
    Floor,
    Gate,
    Gondola,
    PlanogramEntry,
    Plate,
    Product,
    Shelf,
    Store,
)

UNIT_LENGTH = 2.4  # m, along x
UNIT_DEPTH = 0.45  # m, one side of an island
PLATES_PER_SHELF = 4
SHELF_SURFACES = (0.15, 0.55, 0.95, 1.35)  # m, plate surface heights
SHELF_PITCH = 0.4
GONDOLA_HEIGHT = 1.9


@dataclass(frozen=True)
class SourceProduct:
    id: str
    name: str
    weight_g: float
    weight_sd_g: float


def read_aifi_products(path: Path) -> list[SourceProduct]:
    """AiFi products.json: one JSON document per line; sd from a 1.5 % packaging spread."""
    out: dict[str, SourceProduct] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            pid = str(doc["product_id"]["id"])
            meta = doc["metadata"]
            if "weight" not in meta:  # some real entries were never weighed
                continue
            w = float(meta["weight"])
            name = str(meta["name"]).strip()
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: not an AiFi product document: {e}") from e
        if len(pid) >= 8 and 20.0 <= w <= 2000.0 and name:
            sd = round(max(1.0, 0.015 * w), 2)
            out.setdefault(pid, SourceProduct(pid, name, round(w, 2), sd))
    return list(out.values())


def read_aim3s_products(path: Path) -> list[SourceProduct]:
    """AIM3S product_info.json: several measured weights per product give a real spread."""
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for p in data["products"]:
        ws = np.asarray(p.get("weights") or [], dtype=np.float64)
        if ws.size == 0 or not 20.0 <= ws.mean() <= 2000.0:
            continue
        sd = float(ws.std(ddof=1)) if ws.size > 1 else 0.015 * float(ws.mean())
        out.append(
            SourceProduct(
                str(p["barcode"]), str(p["name"]).strip(), round(float(ws.mean()), 2),
                round(max(1.0, sd), 2),
            )
        )
    return out


def distinguishable(a: SourceProduct, b: SourceProduct, max_qty: int = 3) -> bool:
    """Whether no small count of ``a`` weighs like a small count of ``b``."""
    for qa in range(1, max_qty + 1):
        for qb in range(1, max_qty + 1):
            spread = 4.0 * np.sqrt(qa * a.weight_sd_g**2 + qb * b.weight_sd_g**2) + 15.0
            if abs(qa * a.weight_g - qb * b.weight_g) < spread:
                return False
    return True


def look_at_camera(
    cam_id: str, position: Iterable[float], target: Iterable[float], fx: float = 500.0
) -> Camera:
    """A 1280×720 camera at ``position`` looking at ``target`` (x right, y down, z forward)."""
    c = np.asarray(list(position), dtype=np.float64)
    z = np.asarray(list(target), dtype=np.float64) - c
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    rvec, _ = cv2.Rodrigues(R)
    t = -R @ c
    return Camera(
        id=cam_id,
        resolution=(1280, 720),
        fps=15.0,
        K=((fx, 0.0, 640.0), (0.0, fx, 360.0), (0.0, 0.0, 1.0)),
        dist=(-0.08, 0.015, 0.0, 0.0, 0.0),
        pose=CameraPose(
            rvec=tuple(round(float(v), 6) for v in rvec.ravel()),  # type: ignore[arg-type]
            tvec=tuple(round(float(v), 6) for v in t),  # type: ignore[arg-type]
        ),
    )


def _unit(gid: str, x0: float, y0: float, front: tuple[float, float]) -> Gondola:
    x1, y1 = x0 + UNIT_LENGTH, y0 + UNIT_DEPTH
    width = UNIT_LENGTH / PLATES_PER_SHELF
    shelves = []
    for s, z in enumerate(SHELF_SURFACES, 1):
        plates = [
            Plate(
                id=f"{gid}-S{s}-P{p}",
                box=Box(
                    min=(round(x0 + (p - 1) * width, 3), y0, z),
                    max=(round(x0 + p * width, 3), y1, round(z + SHELF_PITCH - 0.05, 3)),
                ),
            )
            for p in range(1, PLATES_PER_SHELF + 1)
        ]
        shelves.append(Shelf(id=f"{gid}-S{s}", plates=plates))
    return Gondola(
        id=gid, box=Box(min=(x0, y0, 0.0), max=(x1, y1, GONDOLA_HEIGHT)), front=front,
        shelves=shelves,
    )


def _gondolas() -> list[Gondola]:
    units = []
    for row, y0 in (("A", 3.6), ("B", 6.5)):
        for i, x0 in ((1, 2.0), (2, 5.6)):
            units.append(_unit(f"{row}{i}S", x0, y0, (0.0, -1.0)))
            units.append(_unit(f"{row}{i}N", x0, y0 + UNIT_DEPTH, (0.0, 1.0)))
    units.append(_unit("W1", 2.0, 9.4, (0.0, -1.0)))
    units.append(_unit("W2", 5.6, 9.4, (0.0, -1.0)))
    return units


def _cameras() -> list[Camera]:
    """12 wide-angle cameras on a 4×3 grid at 3.2 m, each tilted towards the store centre.

    Tilting makes every walkable point at hand height visible from 6 or more cameras (before
    occlusion), which is what multi-view triangulation of wrists needs in crowded aisles.
    """
    cams = []
    for y in (1.0, 5.0, 9.0):
        for x in (1.0, 3.7, 6.3, 9.0):
            pos = np.array([x, y, 3.2])
            to_centre = np.array([5.0, 5.0]) - pos[:2]
            d = float(np.linalg.norm(to_centre))
            tx, ty = pos[:2] + to_centre / d * min(3.5, d)
            cams.append(look_at_camera(f"C{len(cams) + 1:02d}", pos, (tx, ty, 0.6)))
    return cams


def _planogram(
    gondolas: list[Gondola], pool: list[SourceProduct], rng: np.random.Generator
) -> tuple[list[PlanogramEntry], list[SourceProduct]]:
    """Fill every shelf with one of a few realistic patterns of 4 plates."""
    patterns = [
        ((0,), (1,), (2,), (3,)),  # one product per plate
        ((0, 1), (2,), (3,)),  # a wide product over two plates
        ((0,), (1, 2), (3,)),
        ((0, 1), (2, 3)),
        ((0,), (1,), (2,), (3,), (3,)),  # two products share the last plate
        ((0,), (0,), (1,), (2, 3)),
    ]
    order = rng.permutation(len(pool))
    used: list[SourceProduct] = []
    next_i = 0
    entries: list[PlanogramEntry] = []
    for g in gondolas:
        for shelf in g.shelves:
            pattern = patterns[int(rng.integers(len(patterns)))]
            on_plate: dict[int, list[SourceProduct]] = {}
            for footprint in pattern:
                # next product that weight can tell apart from everything sharing its plates
                for _ in range(len(pool)):
                    cand = pool[order[next_i % len(pool)]]
                    next_i += 1
                    neighbours = [q for i in footprint for q in on_plate.get(i, [])]
                    if cand not in used and all(distinguishable(cand, q) for q in neighbours):
                        break
                else:
                    raise RuntimeError("catalogue too small for the planogram")
                used.append(cand)
                for i in footprint:
                    on_plate.setdefault(i, []).append(cand)
                share = max(len(on_plate[i]) for i in footprint)
                capacity = len(footprint) * 3500.0 / share
                stock = int(np.clip(capacity // cand.weight_g, 2, 12))
                entries.append(
                    PlanogramEntry(
                        product=cand.id,
                        plates=[shelf.plates[i].id for i in footprint],
                        stock=stock,
                    )
                )
    return entries, used


#: tax rates of the ``small`` store, illustrative (a French-style VAT): food and drink at the
#: reduced rate, everything else at the standard one
SMALL_TAX_RATES = {"standard": Decimal("0.20"), "reduced": Decimal("0.055")}
#: the ``small`` catalogue's products that are not food or drink (cleaning, paper, foil and
#: bags, first aid, a toy): taxed at the standard rate
SMALL_NON_FOOD = frozenset({
    "037000172208", "052548560096", "037000763437", "640562023941", "037000856801",
    "046500733321", "019200753524", "037000255741", "052548570217", "037000973065",
    "052548605131", "052548009564", "019200741859", "019200971812", "04456374584",
    "052548570682", "039101011059", "681131157308", "761706120293",
})


def build_small_store(aifi_products: Path, aim3s_products: Path, seed: int = 7) -> Store:
    """The ``small`` convenience store, deterministic for a given seed and source data."""
    rng = np.random.default_rng(seed)
    # AIM3S first: where a barcode is in both, keep its measured per-item spread
    by_id: dict[str, SourceProduct] = {}
    for p in read_aim3s_products(aim3s_products) + read_aifi_products(aifi_products):
        by_id.setdefault(p.id, p)
    pool = list(by_id.values())
    gondolas = _gondolas()
    planogram, used = _planogram(gondolas, pool, rng)
    catalogue = []
    for p in used:
        cents = int(rng.integers(79, 999))
        price = Decimal(cents - cents % 10 + 9) / 100
        catalogue.append(
            Product(id=p.id, name=p.name, price=price, weight_g=p.weight_g,
                    weight_sd_g=p.weight_sd_g,
                    tax="standard" if p.id in SMALL_NON_FOOD else None)
        )
    return Store(
        name="small",
        currency="EUR",
        floor=Floor(outline=[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]),
        gondolas=gondolas,
        catalogue=catalogue,
        planogram=planogram,
        cameras=_cameras(),
        gates=[
            Gate(id="entry", kind="entry", area=Box(min=(0.8, 0.0, 0.0), max=(2.2, 1.0, 0.0))),
            Gate(id="exit", kind="exit", area=Box(min=(7.8, 0.0, 0.0), max=(9.2, 1.0, 0.0))),
        ],
        # a fitting room in the north-east corner, door to the south: no camera sees inside
        blind_areas=[BlindArea(id="fitting-room", box=Box(min=(8.6, 8.4, 0.0),
                                                          max=(10.0, 10.0, 2.3)))],
        tax_rates=SMALL_TAX_RATES,
        default_tax="reduced",
    )
