"""Build the ``aifi-nanostore`` store from the AiFi AutoCheckout competition data.

Usage: ``python -m walkout.store.import_aifi META_DIR CASE_DIR OUT.yaml`` (regenerates the shipped
``builtin/aifi-nanostore.yaml`` from ``aifi-autocheckout/store_meta`` and ``BENCHMARK-1``).
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError

from walkout.sources.aifi import (
    AIFI_CAMERA_IDS,
    AifiBox,
    AifiCalibration,
    AifiDataError,
    AifiGeometry,
    read_calibration,
    read_geometry,
    read_planogram,
    read_products,
    require_dir,
)
from walkout.store.loader import dump_store
from walkout.store.model import (
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

STORE_NAME = "aifi-nanostore"
#: Clearance given to the plates of a gondola's top shelf, which has no shelf above it.
TOP_SHELF_CLEARANCE_M = 0.3
#: The ceiling cameras record 640x360 at 10 fps (the calibration holds neither).
CAMERA_FPS = 10.0
#: Opening stock per plate of a facing: a 0.41 m deep plate holds about five packs in a row.
STOCK_PER_PLATE = 5
#: Depth of the gate strips along the store's front wall (m).
GATE_DEPTH_M = 0.6


def weight_sd_g(weight_g: float) -> float:
    """Per-item weight spread; the data gives none, so 1.5 % of the unit weight, at least 1 g."""
    return round(max(1.0, 0.015 * weight_g), 3)


def _box(b: AifiBox) -> Box:
    return Box(min=b.min, max=b.max)


def _union(boxes: list[AifiBox]) -> tuple[list[float], list[float]]:
    lo = [min(b.min[i] for b in boxes) for i in range(3)]
    hi = [max(b.max[i] for b in boxes) for i in range(3)]
    return lo, hi


def _gondolas(geo: AifiGeometry) -> list[Gondola]:
    """Gondola volumes (panel + shelves, from the floor) with plates up to the next shelf."""
    out = []
    for g in geo.gondolas:
        shelves = [s for s in geo.shelves if s.gondola == g.gondola]
        lo, hi = _union([g.body, *(s.box for s in shelves)])
        shelf_z = {s.shelf: s.box.min[2] for s in shelves}
        levels = sorted(shelf_z.values())
        out_shelves = []
        for s in shelves:
            z0 = shelf_z[s.shelf]
            above = [z for z in levels if z > z0 + 1e-6]
            z1 = round(above[0] if above else z0 + TOP_SHELF_CLEARANCE_M, 4)
            plates = [
                Plate(
                    id=p.id,
                    box=Box(
                        min=(p.surface.min[0], p.surface.min[1], p.surface.min[2]),
                        max=(p.surface.max[0], p.surface.max[1], z1),
                    ),
                )
                for p in geo.plates
                if (p.gondola, p.shelf) == (s.gondola, s.shelf)
            ]
            if plates:
                out_shelves.append(Shelf(id=f"G{s.gondola}-S{s.shelf}", plates=plates))
        out.append(
            Gondola(
                id=f"G{g.gondola}",
                box=Box(min=(lo[0], lo[1], 0.0), max=(hi[0], hi[1], hi[2])),
                front=g.front,
                shelves=out_shelves,
            )
        )
    return out


def import_aifi_store(meta_dir: Path, case_dir: Path) -> Store:
    """The AiFi Nanostore as a walkout :class:`Store`.

    - Geometry, cameras: ``meta_dir`` (``Gondolas/Shelves/Plates.json``, ``calibration.json``);
      all five gondolas of the meta are kept (BENCHMARK-1 records sensors on gondolas 1-4 only,
      other competition cases use gondola 5). A plate's box runs from its surface to the shelf
      above, or +0.3 m on the top shelf. ``front`` is the gondola's local -y, the side its shelves
      stick out to: (0, -1) for the row of gondolas 1-4, (-1, 0) for gondola 5; in BENCHMARK-1 the
      shopper stands at y < 0 and reaches +y into gondola 1.
    - Floor: the calibration's tracked area ``world_ltrb`` (inches), cut at the back of the gondola
      row (camera 2 shows the wall right behind the shelves), so nobody is routed behind them.
    - Gates: the data has none. Both sit in open floor on the store's -y edge, the glass front with
      the doors that cameras 3 and 7 look at, as 0.6 m deep strips side by side: entry at
      x 3.0-4.2 m, exit at x 1.6-2.8 m (clear of gondola 5, which ends at y -1.22 m).
    - Catalogue: ``case_dir/products.json``, skipping products without a weight; price as given
      (the competition used a dummy price of 1 for most items); currency USD. ``weight_sd_g`` is not
      in the data: ``max(1.0, 0.015 * weight)``.
    - Planogram: ``case_dir/planogram.json`` facings whose product is in the catalogue, with an
      opening stock of 5 items per plate of the footprint (invented; the data has no counts).
    """
    require_dir(meta_dir, "AiFi store_meta directory")
    require_dir(case_dir, "AiFi test case directory")
    geo = read_geometry(meta_dir)
    cal = read_calibration(meta_dir / "calibration.json", AIFI_CAMERA_IDS)
    gondolas = _gondolas(geo)
    plate_ids = {p.id for g in gondolas for s in g.shelves for p in s.plates}

    x0, y0, x1, y1 = (round(v, 4) for v in cal.world_ltrb_m)
    row_back = max(g.box.max[1] for g in gondolas)
    y1 = min(y1, row_back)
    if not (x1 > x0 and y1 > y0):  # Floor would refuse it as a ValidationError naming neither
        raise AifiDataError(
            f"{meta_dir / 'calibration.json'}: world_ltrb leaves no floor in front of the "
            f"gondola row (x {x0}..{x1} m, y {y0}..{y1} m): expected [left, top, right, "
            "bottom] in inches enclosing the tracked area")
    try:
        return _store(case_dir, cal, gondolas, plate_ids, (x0, y0, x1, y1))
    except ValidationError as e:  # what the store model refuses in the data, said as data
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "store"
        msg = first["msg"].removeprefix("Value error, ")
        raise AifiDataError(f"{case_dir} with {meta_dir}: the imported store is invalid: "
                            f"{where}: {msg}") from e


def _store(case_dir: Path, cal: AifiCalibration, gondolas: list[Gondola], plate_ids: set[str],
           area: tuple[float, float, float, float]) -> Store:
    """The store of :func:`import_aifi_store` from its checked parts."""
    x0, y0, x1, y1 = area
    floor = Floor(outline=[(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    gates = [
        Gate(
            id="entry",
            kind="entry",
            area=Box(min=(3.0, y0, 0.0), max=(4.2, y0 + GATE_DEPTH_M, 2.0)),
        ),
        Gate(
            id="exit", kind="exit", area=Box(min=(1.6, y0, 0.0), max=(2.8, y0 + GATE_DEPTH_M, 2.0))
        ),
    ]

    cameras = [
        Camera(
            id=f"cam{c.camera_id}",
            resolution=c.resolution,
            fps=CAMERA_FPS,
            K=tuple(tuple(round(float(v), 4) for v in row) for row in c.K),  # type: ignore[arg-type]
            dist=c.dist,
            pose=CameraPose(
                rvec=tuple(round(v, 8) for v in c.rvec),  # type: ignore[arg-type]
                tvec=tuple(round(v, 6) for v in c.tvec),  # type: ignore[arg-type]
            ),
        )
        for c in cal.cameras
    ]

    catalogue = [
        Product(
            id=p.upc,
            name=p.name or p.upc,
            price=p.price,
            weight_g=round(p.weight_g, 3),
            weight_sd_g=weight_sd_g(p.weight_g),
        )
        for p in read_products(case_dir / "products.json")
        if p.weight_g > 0 and p.price >= Decimal(0)
    ]
    known = {p.id for p in catalogue}
    planogram = [
        PlanogramEntry(
            product=f.upc, plates=list(f.plate_ids), stock=STOCK_PER_PLATE * len(f.plate_ids)
        )
        for f in read_planogram(case_dir / "planogram.json")
        if f.upc in known and all(p in plate_ids for p in f.plate_ids)
    ]
    return Store(
        name=STORE_NAME,
        currency="USD",
        timezone="America/Los_Angeles",  # AiFi's store, Santa Clara, California
        floor=floor,
        gondolas=gondolas,
        catalogue=catalogue,
        planogram=planogram,
        cameras=cameras,
        gates=gates,
    )


def write_builtin(meta_dir: Path, case_dir: Path, out_path: Path) -> Store:
    """Import the store and write it as a store YAML file (the shipped builtin is made this way)."""
    store = import_aifi_store(meta_dir, case_dir)
    dump_store(store, out_path)
    return store


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print(
            "usage: python -m walkout.store.import_aifi META_DIR CASE_DIR OUT.yaml", file=sys.stderr
        )
        return 2
    store = write_builtin(Path(args[0]), Path(args[1]), Path(args[2]))
    print(
        f"wrote {args[2]}: {len(store.gondolas)} gondolas, {len(store.plate_ids)} plates, "
        f"{len(store.cameras)} cameras, {len(store.catalogue)} products, "
        f"{len(store.planogram)} facings"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
