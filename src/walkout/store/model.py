"""The store description: geometry, catalogue, planogram, cameras and gates.

One YAML file describes a store (format documented in ``docs/store-format.md``). Every model is
strict (``extra="forbid"``) so that a typo in a store file is an error, not a silent default.
All coordinates are metres in the store frame: x, y on the floor, z up.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cached_property
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    field_validator,
    model_validator,
)

Vec3 = tuple[float, float, float]
Vec2 = tuple[float, float]


class StrictModel(BaseModel):
    # NaN or infinity in a store file (a camera's K, a weight, a box corner) would pass here
    # and fail later deep in the simulator or tracker: refused with its line instead
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Loc = tuple[int | str, ...]


class StoreError(ValueError):
    """Cross-reference problems, each at a place in the file (a pydantic-style ``loc``), so
    that the loader can name the line of each one rather than the top of the file."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        super().__init__("; ".join(msg for _, msg in problems[:3]) + more)
        self.problems = tuple(problems)


#: a tax class name: short, so it fits on a receipt line and in the database
TaxClass = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,31}$")]


def _tax_rate(v: Decimal) -> Decimal:
    if not v.is_finite() or not 0 <= v < 1:
        raise ValueError(f"a tax rate is a fraction in [0, 1) (20% is 0.20), got {v}")
    if v != v.quantize(Decimal("0.000001")):
        raise ValueError(f"a tax rate has at most 6 decimal places, got {v}")
    return v


#: a tax rate as a decimal fraction: 0.20 is 20 %
TaxRate = Annotated[Decimal, AfterValidator(_tax_rate)]


class Box(StrictModel):
    """Axis-aligned 3D box in store coordinates."""

    min: Vec3 = Field(description="lowest x, y, z corner (m)")
    max: Vec3 = Field(description="highest x, y, z corner (m)")

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if any(a > b for a, b in zip(self.min, self.max, strict=True)):
            raise ValueError(f"box min {self.min} must be <= max {self.max} on every axis")
        return self

    @property
    def center(self) -> np.ndarray:
        return (np.asarray(self.min) + np.asarray(self.max)) / 2.0

    def overlaps_xy(self, other: Box) -> bool:
        """Whether the two boxes share floor area (z ignored; touching edges do not count)."""
        return all(self.min[k] < other.max[k] and other.min[k] < self.max[k] for k in (0, 1))

    def contains_xy(self, x: float, y: float, margin: float = 0.0) -> bool:
        return (
            self.min[0] - margin <= x <= self.max[0] + margin
            and self.min[1] - margin <= y <= self.max[1] + margin
        )


class Plate(StrictModel):
    id: str = Field(description="unique plate id, e.g. G1-S2-P3")
    box: Box = Field(description="the plate's volume: its surface up to the shelf above")
    noise_g: float = Field(default=2.0, ge=0, description="expected load-cell noise σ (g)")


class Shelf(StrictModel):
    id: str
    plates: list[Plate] = Field(min_length=1)


class Gondola(StrictModel):
    id: str
    box: Box = Field(description="the whole unit, floor to top (an obstacle for walking)")
    front: Vec2 = Field(description="unit vector on the floor pointing to the aisle it faces")
    shelves: list[Shelf] = Field(min_length=1)

    @field_validator("front")
    @classmethod
    def _unit(cls, v: Vec2) -> Vec2:
        n = float(np.hypot(*v))
        if not 0.99 < n < 1.01:
            raise ValueError(f"front must be a unit vector, got {v} (length {n:.3f})")
        return v


class Product(StrictModel):
    id: str = Field(description="barcode (UPC/EAN) or SKU")
    name: str
    price: Decimal = Field(ge=0, description="unit price, in the store's currency")
    weight_g: float = Field(gt=0, description="mean unit weight (g)")
    weight_sd_g: float = Field(ge=0, description="per-item weight spread σ (g)")
    tax: TaxClass | None = Field(
        None, description="tax class, a key of the store's tax_rates (default: default_tax)")


class PlanogramEntry(StrictModel):
    product: str = Field(description="product id from the catalogue")
    plates: list[str] = Field(
        min_length=1, description="plates the product stands on; its footprint spans all of them"
    )
    stock: int = Field(ge=0, description="items on the shelf when the store opens")
    reorder_at: int | None = Field(
        None, ge=0, description="the facing is low on stock (to restock) at this many items "
        "or fewer; default 2 (a fast seller on a deep shelf wants more warning)")


class CameraPose(StrictModel):
    """World-to-camera transform as OpenCV's rvec (Rodrigues) and tvec."""

    rvec: Vec3
    tvec: Vec3


class Camera(StrictModel):
    id: str
    resolution: tuple[PositiveInt, PositiveInt] = Field(description="width, height in pixels")
    fps: float = Field(gt=0)
    K: tuple[Vec3, Vec3, Vec3] = Field(description="3x3 intrinsic matrix in pixels")
    dist: tuple[float, ...] = Field(
        default=(0.0, 0.0, 0.0, 0.0, 0.0), description="OpenCV distortion k1 k2 p1 p2 [k3...]"
    )
    pose: CameraPose

    @field_validator("K")
    @classmethod
    def _pinhole(cls, v: tuple[Vec3, Vec3, Vec3]) -> tuple[Vec3, Vec3, Vec3]:
        """A camera matrix that projects nothing (all zeros, a transposed or scaled one) makes
        a camera that silently sees nobody: refused here."""
        fx, fy, zero, last = v[0][0], v[1][1], v[1][0], v[2]
        if not (fx > 0 and fy > 0):
            raise ValueError(f"K's focal lengths fx, fy must be positive, got {fx:g}, {fy:g}")
        if zero != 0 or tuple(last) != (0.0, 0.0, 1.0):
            raise ValueError("K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]]: got "
                             f"second row {list(v[1])}, last row {list(last)}")
        return v

    @field_validator("dist")
    @classmethod
    def _dist_len(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if len(v) not in (4, 5, 8, 12, 14):
            raise ValueError(f"dist must have 4, 5, 8, 12 or 14 coefficients, got {len(v)}")
        return v

    @cached_property
    def K_array(self) -> np.ndarray:
        return np.asarray(self.K, dtype=np.float64)

    @cached_property
    def dist_array(self) -> np.ndarray:
        return np.asarray(self.dist, dtype=np.float64)

    @cached_property
    def R(self) -> np.ndarray:
        import cv2

        r, _ = cv2.Rodrigues(np.asarray(self.pose.rvec, dtype=np.float64))
        return r

    @cached_property
    def t(self) -> np.ndarray:
        return np.asarray(self.pose.tvec, dtype=np.float64)

    @cached_property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        return -self.R.T @ self.t


class Gate(StrictModel):
    id: str
    kind: Literal["entry", "exit"]
    area: Box = Field(description="floor area (z ignored) where people pass the gate")


class Floor(StrictModel):
    outline: list[Vec2] = Field(min_length=3, description="polygon of the walkable floor (m)")

    @field_validator("outline")
    @classmethod
    def _has_area(cls, outline: list[Vec2]) -> list[Vec2]:
        """A collinear or tiny outline leaves nowhere to walk: the simulator and the floor
        map would fail deep inside instead (shoelace area of the polygon)."""
        xy = np.asarray(outline, dtype=float)
        area = 0.5 * abs(float(np.dot(xy[:, 0], np.roll(xy[:, 1], -1))
                               - np.dot(xy[:, 1], np.roll(xy[:, 0], -1))))
        if area < 1.0:
            raise ValueError(f"the floor outline encloses {area:.2f} m²: at least 1 m² needed")
        return outline


class BlindArea(StrictModel):
    """A closed place no camera sees into (fitting room, restroom): the tracker loses whoever
    goes in and must find the same person when they come out at its edge."""

    id: str
    box: Box = Field(description="the enclosure, floor to its ceiling (opaque to cameras)")


class Store(StrictModel):
    """A whole store. Cross-references are checked after parsing."""

    name: str = Field(min_length=1)
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    timezone: str = Field(
        "UTC", description="IANA time zone of the store (Europe/Paris): where a sales day "
        "starts and ends, and the hours of the day trade is counted in")
    floor: Floor
    gondolas: list[Gondola] = Field(min_length=1)
    catalogue: list[Product] = Field(min_length=1)
    planogram: list[PlanogramEntry]
    cameras: list[Camera] = Field(min_length=1)
    gates: list[Gate] = Field(min_length=2)
    blind_areas: list[BlindArea] = Field(
        default_factory=list, description="enclosures no camera sees into (fitting rooms)"
    )
    tax_rates: Annotated[dict[TaxClass, TaxRate], Field(min_length=1)] | None = Field(
        None, description="tax class → rate as a fraction (0.20 is 20 %); "
        "prices include it. Absent: receipts itemise no tax")
    default_tax: TaxClass | None = Field(
        None, description="tax class of products that name none (needs tax_rates)")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}: use an IANA name such as "
                             "'Europe/Paris' or 'UTC'") from e
        return v

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @model_validator(mode="after")
    def _references(self) -> Store:
        def unique(kind: str, ids: list[str]) -> set[str]:
            seen: set[str] = set()
            for i in ids:
                if i in seen:
                    raise ValueError(f"duplicate {kind} id {i!r}")
                seen.add(i)
            return seen

        unique("gondola", [g.id for g in self.gondolas])
        unique("shelf", [s.id for g in self.gondolas for s in g.shelves])
        plates = unique("plate", [p.id for g in self.gondolas for s in g.shelves for p in s.plates])
        products = unique("product", [p.id for p in self.catalogue])
        unique("camera", [c.id for c in self.cameras])
        unique("gate", [g.id for g in self.gates])
        unique("blind area", [b.id for b in self.blind_areas])
        for i, e in enumerate(self.planogram):
            if e.product not in products:
                raise ValueError(f"planogram[{i}]: product {e.product!r} is not in the catalogue")
            for p in e.plates:
                if p not in plates:
                    raise ValueError(f"planogram[{i}]: plate {p!r} does not exist")
        kinds = {g.kind for g in self.gates}
        if kinds != {"entry", "exit"}:
            raise ValueError("a store needs at least one entry gate and one exit gate")
        self._check_prices()
        self._check_facings()
        self._check_tax()
        self._check_blind_areas()
        return self

    def _check_prices(self) -> None:
        """A price is a whole number of the currency's minor unit: the engine's receipt adds
        prices as written (2 x 1.235 = 2.470) where the service charges rounded ones (2 x 1.24),
        so a finer price makes the two disagree."""
        from walkout.checkout.money import minor_digits  # walkout.checkout imports the store

        unit = Decimal(1).scaleb(-minor_digits(self.currency))
        problems: list[tuple[Loc, str]] = [
            (("catalogue", i, "price"), f"product {p.id!r} ({p.name}) price {p.price} is finer "
             f"than the smallest {self.currency} unit ({unit}); give it to {unit} at most")
            for i, p in enumerate(self.catalogue) if p.price != p.price.quantize(unit)]
        if problems:
            raise StoreError(problems)

    def _check_facings(self) -> None:
        """Each planogram entry is one facing: a plate listed twice in it, or an entry repeated
        (same product on the same plates, e.g. pasted twice), would be summed into one facing
        and double its opening stock."""
        problems: list[tuple[Loc, str]] = []
        first: dict[tuple[str, frozenset[str]], int] = {}
        for i, e in enumerate(self.planogram):
            twice = sorted({p for p in e.plates if e.plates.count(p) > 1})
            if twice:
                problems.append((("planogram", i, "plates"), f"planogram[{i}]: plate "
                                 f"{twice[0]!r} is listed twice for product {e.product!r}"))
            key = (e.product, frozenset(e.plates))
            if key in first:
                problems.append((("planogram", i), f"planogram[{i}]: product {e.product!r} on "
                                 f"plates {sorted(key[1])} repeats planogram[{first[key]}] "
                                 "(an entry given twice would double its opening stock); put "
                                 "the stock in one entry"))
            else:
                first[key] = i
        if problems:
            raise StoreError(problems)

    def _check_blind_areas(self) -> None:
        """A blind area is a closed room (a fitting room): it may not overlap a gate or a
        gondola on the floor. The tracker ties a credential to the person seen at the entry gate
        and a receipt to the one seen at the exit, and attributes a pick to the hands seen at
        the shelf; a blind area over either (one covering the whole floor, say) leaves a store
        whose receipts can never be right."""
        problems: list[tuple[Loc, str]] = []
        for i, b in enumerate(self.blind_areas):
            gates = [f"{g.kind} gate {g.id!r}" for g in self.gates if b.box.overlaps_xy(g.area)]
            units = [g.id for g in self.gondolas if b.box.overlaps_xy(g.box)]
            if not gates and not units:
                continue
            over = gates + ([f"gondola {units[0]!r}" + (f" and {len(units) - 1} more"
                                                          if len(units) > 1 else "")]
                            if units else [])
            problems.append((("blind_areas", i, "box"),
                             f"blind area {b.id!r} covers the floor of {' and '.join(over)}: "
                             "cameras must see people at the gates and at the shelves, so a "
                             "blind area (a closed room, e.g. a fitting room) may not overlap "
                             "a gate or a gondola"))
        if problems:
            raise StoreError(problems)

    def _check_tax(self) -> None:
        """Every product has a known tax class when the store has tax rates, and none names
        one when it has not: a receipt either itemises tax for every line or for none."""
        problems: list[tuple[Loc, str]] = []
        rates = self.tax_rates
        if rates is None:
            if self.default_tax is not None:
                problems.append((("default_tax",), "default_tax needs tax_rates"))
            problems += [(("catalogue", i, "tax"),
                          f"product {p.id!r} ({p.name}) has tax class {p.tax!r} but the store "
                          "has no tax_rates") for i, p in enumerate(self.catalogue) if p.tax]
        else:
            known = ", ".join(sorted(rates))
            if self.default_tax is not None and self.default_tax not in rates:
                problems.append((("default_tax",), f"default_tax {self.default_tax!r} is not "
                                 f"a class of tax_rates ({known})"))
            for i, p in enumerate(self.catalogue):
                if p.tax is not None and p.tax not in rates:
                    problems.append((("catalogue", i, "tax"), f"product {p.id!r} ({p.name}) "
                                     f"has unknown tax class {p.tax!r}; tax_rates has {known}"))
                elif p.tax is None and self.default_tax is None:
                    problems.append((("catalogue", i), f"product {p.id!r} ({p.name}) has no "
                                     "tax class and the store sets no default_tax"))
        if problems:
            raise StoreError(problems)

    # ---- derived, read-only views used by every stage -------------------------------------

    @cached_property
    def plates(self) -> dict[str, Plate]:
        return {p.id: p for g in self.gondolas for s in g.shelves for p in s.plates}

    @cached_property
    def plate_ids(self) -> tuple[str, ...]:
        """Canonical plate order: the column order of every PlateBlock of this store."""
        return tuple(self.plates)

    @cached_property
    def plate_index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.plate_ids)}

    @cached_property
    def plate_shelf(self) -> dict[str, str]:
        return {p.id: s.id for g in self.gondolas for s in g.shelves for p in s.plates}

    @cached_property
    def plate_gondola(self) -> dict[str, Gondola]:
        return {p.id: g for g in self.gondolas for s in g.shelves for p in s.plates}

    @cached_property
    def products(self) -> dict[str, Product]:
        return {p.id: p for p in self.catalogue}

    @cached_property
    def plate_products(self) -> dict[str, tuple[str, ...]]:
        """Products the planogram places on each plate."""
        out: dict[str, list[str]] = {p: [] for p in self.plate_ids}
        for e in self.planogram:
            for p in e.plates:
                if e.product not in out[p]:
                    out[p].append(e.product)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def plate_boxes(self) -> np.ndarray:
        """(plates, 2, 3) array of box min/max in canonical plate order."""
        return np.array([[p.box.min, p.box.max] for p in self.plates.values()], dtype=np.float64)

    @cached_property
    def product_tax(self) -> dict[str, tuple[str, Decimal]]:
        """Tax class and rate of each product; empty when the store itemises no tax."""
        if self.tax_rates is None:
            return {}
        out = {}
        for p in self.catalogue:
            cls = p.tax or self.default_tax
            assert cls is not None  # validated
            out[p.id] = (cls, self.tax_rates[cls])
        return out

    @cached_property
    def cameras_by_id(self) -> dict[str, Camera]:
        return {c.id: c for c in self.cameras}

    def gates_of(self, kind: Literal["entry", "exit"]) -> list[Gate]:
        return [g for g in self.gates if g.kind == kind]
