"""Readers for the AiFi AutoCheckout (CPS-IoT Week 2020 "Nanostore") data format.

The competition data is MongoDB exported as protobuf-JSON, which omits fields holding their
default value: a missing coordinate, rotation component, price or score means 0. The readers
follow that rule and turn everything into walkout's units and frame:

- ``store_meta/{Gondolas,Shelves,Plates}.json`` are in metres. Each transform is relative to its
  parent (gondola → world, shelf → gondola, plate → shelf), rotation as a Rodrigues vector, and the
  object spans ``translation + R @ [0..dim_x, 0..dim_y, 0..dim_z]`` (the translation is a corner:
  gondola 2 starts exactly where gondola 1 ends).
- ``calibration.json`` is in inches. ``K`` is normalised by the image size and ``Tw`` maps
  camera → world (its translation is the camera centre, ~2.43 m up; the principal ray from it meets
  the floor at the file's ``look_at``). We invert it into OpenCV world → camera rvec/tvec in metres.
- ``full_targets.json`` points are inches in the calibration's world frame, which is the same frame
  as the store meta: in BENCHMARK-1 the shopper's right wrist reaches to within 0.12 m of the front
  of plate G1-S5-P11 (x 1.04-1.14 m, shelf at 1.37 m) while that plate loses one 622 g item.
- ``plate_data.json`` holds one document per gondola per 0.2 s: a float32 array
  ``[12 samples x shelves x plates]`` at ``freq_samp`` (60 Hz), index 0 of both plate axes NaN
  padding. ``document.header.t_origin`` (UTC) is on an exact 0.2 s grid per gondola and is taken as
  the time of the block's first sample (the issue time, ~0.1 s later, is when it was sent). That
  choice is uncertain by up to one block (0.2 s); weight changes and hand positions in BENCHMARK-1
  agree at that level either way.

Nothing leaves this module as ``dict[str, Any]``: results are frozen dataclasses, numpy arrays
and walkout's own :class:`PlateBlock` / :class:`Track`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from walkout.events import COCO17, N_JOINTS, PlateBlock, Track

INCH_M = 0.0254
#: Resolution of the AiFi ceiling cameras (the K matrices are normalised to it).
AIFI_RESOLUTION = (640, 360)
#: The store's eight RGB ceiling cameras (keys of calibration.json; camera k has IP .(99+k)).
AIFI_CAMERA_IDS = ("1", "2", "3", "4", "5", "6", "7", "8")
#: Joint σ (m) given to a tracker score of 1; AiFi publishes scores, not uncertainties.
TARGET_SIGMA_M = 0.05

#: AiFi target joint name -> COCO-17 index. ``head`` is the tracker's head point, the nearest
#: COCO joint being the nose; ``neck`` and the ``hands`` list (a copy of the wrists) have no slot.
TARGET_JOINTS: dict[str, int] = {
    "head": COCO17.index("nose"),
    "l_shoulder": COCO17.index("left_shoulder"),
    "r_shoulder": COCO17.index("right_shoulder"),
    "l_elbow": COCO17.index("left_elbow"),
    "r_elbow": COCO17.index("right_elbow"),
    "l_wrist": COCO17.index("left_wrist"),
    "r_wrist": COCO17.index("right_wrist"),
}

_PLATE_ID = re.compile(r"^G(\d+)-S(\d+)-P(\d+)$")

Vec3 = tuple[float, float, float]


class AifiDataError(ValueError):
    """An AiFi file that is missing or does not hold what the format promises."""


# ---- results ------------------------------------------------------------------------------------


def plate_id(gondola: int, shelf: int, plate: int) -> str:
    """walkout plate id of an AiFi (gondola, shelf, plate) triple, all 1-based."""
    return f"G{gondola}-S{shelf}-P{plate}"


def parse_plate_id(pid: str) -> tuple[int, int, int]:
    """Inverse of :func:`plate_id`."""
    m = _PLATE_ID.match(pid)
    if not m:
        raise ValueError(f"{pid!r} is not an AiFi plate id of the form G<g>-S<s>-P<p>")
    return int(m[1]), int(m[2]), int(m[3])


@dataclass(frozen=True, slots=True)
class AifiBox:
    """World-frame axis-aligned box (m)."""

    min: Vec3
    max: Vec3


@dataclass(frozen=True, slots=True)
class AifiPlate:
    gondola: int
    shelf: int
    plate: int
    surface: AifiBox  # the plate itself (zero height: the data gives plates no thickness)

    @property
    def id(self) -> str:
        return plate_id(self.gondola, self.shelf, self.plate)


@dataclass(frozen=True, slots=True)
class AifiShelf:
    gondola: int
    shelf: int
    box: AifiBox  # the shelf's volume as given (its dim_z is the clearance above it)


@dataclass(frozen=True, slots=True)
class AifiGondola:
    gondola: int
    body: AifiBox  # the back panel as given (dim_y is only ~3 cm)
    front: tuple[float, float]  # unit floor vector from the back panel towards the shelves' fronts


@dataclass(frozen=True, slots=True)
class AifiGeometry:
    """The store fixtures, sorted by (gondola, shelf, plate)."""

    gondolas: tuple[AifiGondola, ...]
    shelves: tuple[AifiShelf, ...]
    plates: tuple[AifiPlate, ...]


@dataclass(frozen=True, slots=True)
class AifiCamera:
    """One camera in OpenCV terms: pixel K, distortion and world → camera pose (m)."""

    camera_id: str  # calibration.json key
    resolution: tuple[int, int]
    K: np.ndarray  # (3, 3) pixels
    dist: tuple[float, ...]
    rvec: Vec3
    tvec: Vec3

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (m)."""
        r, _ = cv2.Rodrigues(np.asarray(self.rvec, dtype=np.float64))
        return -r.T @ np.asarray(self.tvec, dtype=np.float64)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw (distorted) pixels of world points (n, 3), and whether each is in front."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        r, _ = cv2.Rodrigues(np.asarray(self.rvec, dtype=np.float64))
        depth = (pts @ r.T + np.asarray(self.tvec))[:, 2]
        uv, _ = cv2.projectPoints(
            pts, np.asarray(self.rvec), np.asarray(self.tvec), self.K, np.asarray(self.dist)
        )
        return uv.reshape(-1, 2), depth > 0


@dataclass(frozen=True, slots=True)
class AifiCalibration:
    cameras: tuple[AifiCamera, ...]
    world_ltrb_m: tuple[float, float, float, float]  # tracked area: x_min, y_min, x_max, y_max


@dataclass(frozen=True, slots=True)
class AifiProduct:
    upc: str
    name: str
    price: Decimal  # 0 where the file omits it (protobuf default)
    weight_g: float  # 0 where the file omits it: such a product cannot be weighed


@dataclass(frozen=True, slots=True)
class AifiFacing:
    """A planogram entry: a product standing on one or more plates."""

    upc: str
    plate_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AifiTargets:
    """The tracked shoppers of a case, with the AiFi target id of each track."""

    tracks: list[Track]
    target_ids: dict[int, str]  # Track.track_id -> AiFi target id


@dataclass(frozen=True, slots=True)
class AifiCase:
    """One recorded case on a common clock: ``t = 0`` is ``t0_unix`` (UTC epoch seconds)."""

    t0_unix: float
    plates: PlateBlock
    tracks: list[Track]
    target_ids: dict[int, str]


# ---- low-level JSON helpers ---------------------------------------------------------------------


def require_dir(path: Path, what: str, hint: str = "") -> None:
    """An AiFi directory that must exist, named with ``what`` it is when it does not (and
    ``hint``, what to do): a missing folder otherwise shows as the first file looked for in it."""
    try:
        if path.is_dir():
            return
        there = path.exists()
    except OSError as e:
        raise AifiDataError(f"{path}: {what} cannot be read: {e.strerror or e}") from e
    why = "is not a directory" if there else "not found"
    raise AifiDataError(f"{path}: {what} {why}{hint}")


def _open_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AifiDataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AifiDataError(f"{path}: cannot read: {e}") from e


def _load_json(path: Path) -> Any:
    try:
        return json.loads(_open_text(path))
    except json.JSONDecodeError as e:
        raise AifiDataError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from e


def _json_lines(path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, document)`` for each non-empty line; ``where`` is ``path:line`` for messages."""
    for n, line in enumerate(_open_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as e:
            raise AifiDataError(f"{where}: not valid JSON ({e.msg}, column {e.colno})") from e


def _get(obj: Any, dotted: str, where: str) -> Any:
    """``obj[a][b]...`` for ``dotted = "a.b..."``, or an error naming the missing field."""
    cur = obj
    for key in dotted.split("."):
        if not isinstance(cur, dict) or key not in cur:
            raise AifiDataError(f"{where}: missing field {dotted!r}")
        cur = cur[key]
    return cur


def _obj(obj: Any, dotted: str, where: str) -> dict[str, Any]:
    """``_get`` of a field that must be a JSON object: a string or a list there (a hand edit,
    another export) is an error naming the field, not an AttributeError on ``.get``."""
    v = _get(obj, dotted, where)
    if not isinstance(v, dict):
        raise AifiDataError(f"{where}: field {dotted!r} is {type(v).__name__} {v!r:.60}, "
                            "expected an object")
    return v


def _num(obj: Any, key: str, where: str) -> float:
    """A protobuf-JSON number: absent means 0. NaN and infinity (which Python's JSON reader
    takes) are refused: they would pass every range check below."""
    if not isinstance(obj, dict):
        raise AifiDataError(f"{where}: expected an object holding {key!r}")
    v = obj.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise AifiDataError(f"{where}: field {key!r} is {v!r}, not a finite number")
    return float(v)


def _vec(obj: Any, where: str) -> np.ndarray:
    return np.array([_num(obj, k, where) for k in "xyz"], dtype=np.float64)


def _int_id(obj: Any, dotted: str, where: str) -> int:
    v = _get(obj, dotted, where)
    if isinstance(v, bool) or not isinstance(v, int):
        raise AifiDataError(f"{where}: field {dotted!r} is {v!r}, not an integer")
    return v


def _time(value: Any, where: str) -> float:
    """UTC epoch seconds of an RFC 3339 timestamp such as ``2020-04-22T05:06:36.859Z``."""
    if not isinstance(value, str):
        raise AifiDataError(f"{where}: timestamp {value!r} is not a string")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as e:
        raise AifiDataError(f"{where}: bad timestamp {value!r}") from e


# ---- store meta ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Frame:
    r: np.ndarray  # (3, 3) rotation into the parent
    t: np.ndarray  # (3,) translation in the parent
    dims: np.ndarray  # (3,) extent along the local axes

    def corners(self) -> np.ndarray:
        """The 8 corners of the object's box in its parent frame."""
        g = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
        return (g * self.dims) @ self.r.T + self.t

    def to_parent(self, pts: np.ndarray) -> np.ndarray:
        return pts @ self.r.T + self.t


def _frame(coords: Any, where: str) -> _Frame:
    tr = _get(coords, "transform", where)
    r, _ = cv2.Rodrigues(_vec(tr.get("rotation", {}), where))
    dims = np.array([_num(coords, f"dim_{a}", where) for a in "xyz"], dtype=np.float64)
    if (dims < 0).any():
        raise AifiDataError(f"{where}: negative dimensions {dims.tolist()}")
    return _Frame(r=r, t=_vec(tr.get("translation", {}), where), dims=dims)


def _aabb(pts: np.ndarray, ndigits: int = 4) -> AifiBox:
    """Bounding box rounded to 0.1 mm (the data is inch-based, with float32/Rodrigues noise)."""
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return AifiBox(
        min=(round(lo[0], ndigits), round(lo[1], ndigits), round(lo[2], ndigits)),
        max=(round(hi[0], ndigits), round(hi[1], ndigits), round(hi[2], ndigits)),
    )


def _list_field(path: Path, key: str) -> list[Any]:
    data = _load_json(path)
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise AifiDataError(f"{path}: expected a non-empty list under {key!r}")
    return items


def read_geometry(meta_dir: Path) -> AifiGeometry:
    """World-frame gondolas, shelves and plates from ``Gondolas/Shelves/Plates.json``."""
    gpath, spath, ppath = (meta_dir / f"{n}.json" for n in ("Gondolas", "Shelves", "Plates"))
    gframes: dict[int, _Frame] = {}
    for i, g in enumerate(_list_field(gpath, "gondolas")):
        where = f"{gpath}: gondolas[{i}]"
        gframes[_int_id(g, "id.id", where)] = _frame(_get(g, "coordinates", where), where)
    sframes: dict[tuple[int, int], _Frame] = {}
    for i, s in enumerate(_list_field(spath, "shelves")):
        where = f"{spath}: shelves[{i}]"
        key = (_int_id(s, "id.gondola_id.id", where), _int_id(s, "id.shelf_index", where))
        if key[0] not in gframes:
            raise AifiDataError(f"{where}: gondola {key[0]} is not in {gpath.name}")
        sframes[key] = _frame(_get(s, "coordinates", where), where)
    pframes: dict[tuple[int, int, int], _Frame] = {}
    for i, p in enumerate(_list_field(ppath, "plates")):
        where = f"{ppath}: plates[{i}]"
        key3 = (
            _int_id(p, "id.shelf_id.gondola_id.id", where),
            _int_id(p, "id.shelf_id.shelf_index", where),
            _int_id(p, "id.plate_index", where),
        )
        if key3[:2] not in sframes:
            raise AifiDataError(f"{where}: shelf {key3[:2]} is not in {spath.name}")
        if key3 in pframes:
            raise AifiDataError(f"{where}: duplicate plate {plate_id(*key3)}")
        pframes[key3] = _frame(_get(p, "coordinates", where), where)

    gondolas = []
    for gid, gf in sorted(gframes.items()):
        # The shelves hang off the panel along local -y; "front" is that direction on the floor.
        fx, fy = (gf.r @ np.array([0.0, -1.0, 0.0]))[:2]
        n = math.hypot(fx, fy)
        gondolas.append(
            AifiGondola(gid, _aabb(gf.corners()), (round(fx / n, 4) + 0.0, round(fy / n, 4) + 0.0))
        )
    shelves = [
        AifiShelf(g, s, _aabb(gframes[g].to_parent(sf.corners())))
        for (g, s), sf in sorted(sframes.items())
    ]
    plates = [
        AifiPlate(g, s, p, _aabb(gframes[g].to_parent(sframes[(g, s)].to_parent(pf.corners()))))
        for (g, s, p), pf in sorted(pframes.items())
    ]
    return AifiGeometry(tuple(gondolas), tuple(shelves), tuple(plates))


def read_calibration(
    path: Path,
    camera_ids: Sequence[str] = AIFI_CAMERA_IDS,
    resolution: tuple[int, int] = AIFI_RESOLUTION,
) -> AifiCalibration:
    """Cameras of ``calibration.json`` as pixel K and world → camera pose in metres."""
    data = _load_json(path)
    cams = data.get("cameras") if isinstance(data, dict) else None
    if not isinstance(cams, dict):
        raise AifiDataError(f"{path}: missing 'cameras' object")
    w, h = resolution
    out = []
    for cid in camera_ids:
        where = f"{path}: cameras.{cid}"
        if cid not in cams:
            raise AifiDataError(f"{where}: camera not in file")
        c = cams[cid]
        try:
            k_norm = np.array(_get(c, "K", where), dtype=np.float64)
            tw = np.array(_get(c, "Tw", where), dtype=np.float64)
            dist = tuple(float(v) for v in _get(c, "dist_coeffs", where))
        except (TypeError, ValueError) as e:
            raise AifiDataError(f"{where}: K, Tw and dist_coeffs must be numeric: {e}") from e
        if k_norm.shape != (3, 3) or tw.shape != (4, 4):
            raise AifiDataError(f"{where}: K must be 3x3 and Tw 4x4")
        rot = tw[:3, :3]
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6):
            raise AifiDataError(f"{where}: Tw rotation is not orthonormal")
        k = k_norm * np.array([[w], [h], [1.0]])
        r_cw = rot.T  # Tw is camera -> world, in inches
        t_cw = -r_cw @ (tw[:3, 3] * INCH_M)
        rvec, _ = cv2.Rodrigues(r_cw)
        out.append(
            AifiCamera(
                camera_id=cid,
                resolution=(w, h),
                K=k,
                dist=dist,
                rvec=tuple(float(v) for v in rvec.ravel()),  # type: ignore[arg-type]
                tvec=tuple(float(v) for v in t_cw),  # type: ignore[arg-type]
            )
        )
    ltrb = data.get("world_ltrb")
    if not (isinstance(ltrb, list) and len(ltrb) == 4):
        raise AifiDataError(f"{path}: world_ltrb must be [left, top, right, bottom] (inches)")
    x0, y0, x1, y1 = (float(v) * INCH_M for v in ltrb)
    return AifiCalibration(tuple(out), (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))


# ---- case files ---------------------------------------------------------------------------------


def read_products(path: Path) -> list[AifiProduct]:
    """Products of ``products.json``, one per UPC (the export repeats identical documents)."""
    seen: dict[str, AifiProduct] = {}
    for where, doc in _json_lines(path):
        upc = _obj(doc, "product_id", where).get("id")
        if not isinstance(upc, str) or not upc:
            raise AifiDataError(f"{where}: product without an id")
        meta = _obj(doc, "metadata", where)
        price = meta.get("price", 0)
        if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(
                price):
            raise AifiDataError(f"{where}: price {price!r} is not a finite number")
        prod = AifiProduct(
            upc=upc,
            name=str(meta.get("name", "")),
            price=Decimal(str(price)),
            weight_g=_num(meta, "weight", where),
        )
        if upc in seen and seen[upc] != prod:
            raise AifiDataError(f"{where}: product {upc} differs from an earlier document")
        seen[upc] = prod
    return list(seen.values())


def read_planogram(path: Path) -> list[AifiFacing]:
    """Facings of ``planogram.json`` (entries without a product or plates are skipped)."""
    out = []
    for where, doc in _json_lines(path):
        upc = _obj(doc, "planogram_product_id", where).get("id")
        plates = doc.get("plate_ids") or []
        if not isinstance(plates, list):
            raise AifiDataError(f"{where}: field 'plate_ids' is {type(plates).__name__}, "
                                "expected a list")
        if not upc or not plates:
            continue
        ids = tuple(
            plate_id(
                _int_id(p, "shelf_id.gondola_id.id", where),
                _int_id(p, "shelf_id.shelf_index", where),
                _int_id(p, "plate_index", where),
            )
            for p in plates
        )
        out.append(AifiFacing(upc=str(upc), plate_ids=ids))
    return out


#: the longest span of plate_data documents read: a case is minutes; a document dated a day or
#: a century off (a typo) would size one grid of days or centuries (gigabytes to terabytes)
MAX_CASE_SPAN_S = 3600.0


@dataclass(frozen=True, slots=True)
class _GondolaBlocks:
    starts: list[float]  # unix time of each block's first sample
    blocks: list[np.ndarray]  # (samples, shelves, plates) float32
    rate_hz: float
    wheres: list[str]  # path:line of each block's document, for messages


def _read_plate_blocks(path: Path) -> dict[int, _GondolaBlocks]:
    per: dict[int, _GondolaBlocks] = {}
    for where, doc in _json_lines(path):
        pd = _obj(doc, "document.plate_data", where)
        gid = _int_id(pd, "plate_id.shelf_id.gondola_id.id", where)
        rate = _num(pd, "freq_samp", where)
        if rate <= 0:
            raise AifiDataError(f"{where}: freq_samp must be positive, got {rate}")
        vals = _obj(pd, "values", where)
        dtype = vals.get("type", "DATATYPE_FLOAT32")
        if dtype != "DATATYPE_FLOAT32":
            raise AifiDataError(f"{where}: plate values of type {dtype}, expected FLOAT32")
        shape = _get(vals, "shape", where)
        if not (
            isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) for s in shape)
        ):
            raise AifiDataError(
                f"{where}: plate values shape {shape!r} is not [samples, shelves, plates]"
            )
        try:
            raw = base64.b64decode(_get(vals, "data", where), validate=True)
        except (binascii.Error, ValueError, TypeError) as e:
            raise AifiDataError(f"{where}: plate values are not valid base64 ({e})") from e
        if len(raw) != 4 * math.prod(shape):
            raise AifiDataError(
                f"{where}: plate values hold {len(raw)} bytes, shape {shape} needs "
                f"{4 * math.prod(shape)}"
            )
        arr = np.frombuffer(raw, dtype="<f4").reshape(shape)
        start = _time(_get(doc, "document.header.t_origin", where), where)
        g = per.setdefault(gid, _GondolaBlocks([], [], rate, []))
        if rate != g.rate_hz:
            raise AifiDataError(f"{where}: gondola {gid} changes rate {g.rate_hz} -> {rate} Hz")
        g.starts.append(start)
        g.blocks.append(arr)
        g.wheres.append(where)
    if not per:
        raise AifiDataError(f"{path}: no plate_data documents")
    return per


def _plate_block(
    path: Path, per: dict[int, _GondolaBlocks], plate_ids: Sequence[str], t0_unix: float | None
) -> tuple[PlateBlock, float]:
    """All gondolas on one grid at their common rate, each sample in its nearest grid slot."""
    rates = {g.rate_hz for g in per.values()}
    if len(rates) != 1:
        raise AifiDataError(f"{path}: gondolas sample at different rates {sorted(rates)}")
    rate = rates.pop()
    first = min(min(g.starts) for g in per.values())
    last = max(
        s + (b.shape[0] - 1) / rate
        for g in per.values()
        for s, b in zip(g.starts, g.blocks, strict=True)
    )
    if last - first > MAX_CASE_SPAN_S:
        docs = [(s, w) for g in per.values() for s, w in zip(g.starts, g.wheres, strict=True)]
        mid = float(np.median([s for s, _ in docs]))
        s, w = max(docs, key=lambda d: abs(d[0] - mid))  # the one furthest from the rest
        raise AifiDataError(
            f"{w}: document.header.t_origin is {s - mid:+.0f} s from the middle of the other "
            f"plate_data documents; they span {last - first:.0f} s, a case at most "
            f"{MAX_CASE_SPAN_S:.0f} s (a wrong date?)")
    n = round((last - first) * rate) + 1
    grams = np.full((n, len(plate_ids)), np.nan, dtype=np.float32)
    cols: dict[int, list[tuple[int, int, int]]] = {}
    for j, pid in enumerate(plate_ids):
        g, s, p = parse_plate_id(pid)
        cols.setdefault(g, []).append((j, s, p))
    for gid, wanted in cols.items():
        if gid not in per:
            continue  # a gondola without sensor data in this case: its plates stay NaN
        gb = per[gid]
        for start, block in zip(gb.starts, gb.blocks, strict=True):
            i0 = round((start - first) * rate)
            rows = slice(i0, i0 + block.shape[0])
            for j, s, p in wanted:
                if s < block.shape[1] and p < block.shape[2]:
                    grams[rows, j] = block[:, s, p]
    t0 = first if t0_unix is None else t0_unix
    t = first - t0 + np.arange(n, dtype=np.float64) / rate
    return PlateBlock(t=t, grams=grams, plate_ids=tuple(plate_ids)), first


def read_plate_data(
    path: Path, plate_ids: Sequence[str], t0_unix: float | None = None
) -> PlateBlock:
    """One :class:`PlateBlock` over the whole file, columns in ``plate_ids`` order.

    Gondolas publish out of phase, so every sample goes to the nearest slot of one 60 Hz grid
    (off by at most half a sample, 8 ms). Plates the file lacks (a gondola or shelf not recorded)
    are NaN. ``t`` counts from ``t0_unix`` (default: the first sample).
    """
    return _plate_block(path, _read_plate_blocks(path), plate_ids, t0_unix)[0]


@dataclass(frozen=True, slots=True)
class _TargetSample:
    t: float
    joints: np.ndarray  # (17, 3) m
    sigma: np.ndarray  # (17,) m


def _read_target_samples(path: Path) -> dict[str, list[_TargetSample]]:
    per: dict[str, list[_TargetSample]] = {}
    for where, doc in _json_lines(path):
        t = _time(_get(doc, "document.header.t_origin", where), where)
        targets = _obj(doc, "document.targets", where).get("targets", [])
        if not isinstance(targets, list):
            raise AifiDataError(f"{where}: field 'document.targets.targets' is "
                                f"{type(targets).__name__}, expected a list")
        for k, tgt in enumerate(targets):
            w = f"{where}: targets[{k}]"
            if not isinstance(tgt, dict):
                raise AifiDataError(f"{w} is {type(tgt).__name__} {tgt!r:.60}, expected an "
                                    "object")
            tid = _get(tgt, "target_id.id", w)
            joints = np.full((N_JOINTS, 3), np.nan)
            sigma = np.full(N_JOINTS, np.nan)
            for name, j in TARGET_JOINTS.items():
                node = tgt.get(name) or {}
                score = _num(node, "score", w)  # first: it says when node is no object
                point = node.get("point") or {}
                if not point or score <= 0:
                    continue  # empty point / zero score: the tracker did not see this joint
                joints[j] = _vec(point, f"{w}.{name}") * INCH_M
                sigma[j] = TARGET_SIGMA_M / max(score, 0.1)
            per.setdefault(str(tid), []).append(_TargetSample(t, joints, sigma))
    return per


def _tracks(per: dict[str, list[_TargetSample]], t0: float) -> AifiTargets:
    tracks, ids = [], {}
    firsts = sorted(per, key=lambda tid: min(s.t for s in per[tid]))
    for n, tid in enumerate(firsts, start=1):
        samples = sorted(per[tid], key=lambda s: s.t)
        tracks.append(
            Track(
                track_id=n,
                t=np.array([s.t - t0 for s in samples]),
                joints=np.stack([s.joints for s in samples]),
                sigma=np.stack([s.sigma for s in samples]),
            )
        )
        ids[n] = tid
    return AifiTargets(tracks, ids)


def read_targets(path: Path, t0_unix: float | None = None) -> AifiTargets:
    """Tracks of ``full_targets.json`` in metres, one per target id, ids 1.. by first sighting.

    σ is a heuristic, ``TARGET_SIGMA_M / score``; joints without a point or score are NaN.
    ``t`` counts from ``t0_unix`` (default: the file's first document).
    """
    per = _read_target_samples(path)
    if t0_unix is None:
        t0_unix = min((s.t for v in per.values() for s in v), default=0.0)
    return _tracks(per, t0_unix)


def load_case(case_dir: Path, plate_ids: Sequence[str]) -> AifiCase:
    """Plates and tracks of one case on a common clock starting at the earlier of the two."""
    blocks = _read_plate_blocks(case_dir / "plate_data.json")
    targets = _read_target_samples(case_dir / "full_targets.json")
    first_plate = min(min(g.starts) for g in blocks.values())
    t0 = min([first_plate, *(s.t for v in targets.values() for s in v)])
    plates, _ = _plate_block(case_dir / "plate_data.json", blocks, plate_ids, t0)
    tr = _tracks(targets, t0)
    return AifiCase(t0_unix=t0, plates=plates, tracks=tr.tracks, target_ids=tr.target_ids)
