"""What is on the shelves: a multiset of products per footprint.

Items are kept per *footprint* (the tuple of plates an item stands on) rather than per plate,
because a product spanning two plates loads both and cannot be split between them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from walkout.store.model import Store

Footprint = tuple[str, ...]

#: a count whose items would weigh more than this on each plate of their footprint is no
#: reading of a shelf (a damaged or hand-edited row): refused, not stocked
MAX_LOAD_KG = 500.0


@dataclass
class Stock:
    """Shelf contents to continue from instead of the planogram's opening stock: ``counts``
    per footprint (store plate order) and product, and ``learned``, plate → products picks
    proved it holds though its planogram does not list them (``ShelfStage.learned``)."""

    counts: dict[Footprint, dict[str, int]] = field(default_factory=dict)
    learned: dict[str, set[str]] = field(default_factory=dict)

    def within(self, plates: Collection[str]) -> Stock:
        """The part on ``plates`` (a shelf zone's): footprints wholly on them."""
        keep = set(plates)
        return Stock({fp: dict(c) for fp, c in self.counts.items() if keep.issuperset(fp)},
                     {p: set(v) for p, v in self.learned.items() if p in keep})


def read_stock(store: Store, inventory: Any, learned: Any = None) -> tuple[Stock, list[str]]:
    """The :class:`Stock` a health row of the service's event log records (its ``inventory``
    entries ``{plates, product, count, misplaced}`` and its ``learned``, as
    ``walkout.service.live`` writes them), checked against ``store``, and what was skipped and
    why. The row may come from another store file (changed between two runs) or be damaged:
    an unknown plate or product, a count that is not a whole number, is negative or weighs
    more than :data:`MAX_LOAD_KG` per plate, and a facing the row lists as planned that this
    planogram does not have (moved: its new facing keeps the planogram's stock) are skipped;
    a facing of this planogram the row lacks keeps the planogram's stock, and is said too."""
    index = store.plate_index
    facings = {(tuple(sorted(set(e.plates), key=index.__getitem__)), e.product)
               for e in store.planogram}
    stock, notes = Stock(), []
    for row in inventory if isinstance(inventory, list) else []:
        why, key = _check_entry(store, facings, row)
        if why is not None:
            notes.append(f"inventory entry {row!r} skipped: {why}")
            continue
        assert key is not None
        fp, product = key
        counts = stock.counts.setdefault(fp, {})
        if product in counts:
            notes.append(f"inventory entry {row!r} skipped: {product} on {list(fp)} is "
                         "listed twice")
            continue
        counts[product] = row["count"]
    if not isinstance(inventory, list):
        notes.append(f"no inventory list in the row ({type(inventory).__name__})")
    have = {(fp, p) for fp, c in stock.counts.items() for p in c}
    for fp, product in sorted(facings - have):
        notes.append(f"{product} on {list(fp)} is not in the row (a new facing?): it keeps "
                     "the planogram's stock")
    for plate, products in (learned.items() if isinstance(learned, dict) else ()):
        if plate not in index:
            notes.append(f"learned products of plate {plate!r} skipped: no such plate")
            continue
        for product in products if isinstance(products, list) else [products]:
            if isinstance(product, str) and product in store.products:
                stock.learned.setdefault(plate, set()).add(product)
            else:
                notes.append(f"learned product {product!r} of plate {plate} skipped: not in "
                             "the catalogue")
    if learned is not None and not isinstance(learned, dict):
        notes.append(f"learned products skipped: not a mapping ({type(learned).__name__})")
    return stock, notes


def _check_entry(store: Store, facings: set[tuple[Footprint, str]], row: Any
                 ) -> tuple[str | None, tuple[Footprint, str] | None]:
    """Why a health row's inventory entry cannot be stocked (None: it can), and its
    (footprint, product)."""
    if not isinstance(row, dict):
        return "not an inventory entry", None
    plates, product, n = row.get("plates"), row.get("product"), row.get("count")
    if not isinstance(plates, list) or not plates or not all(isinstance(p, str) for p in plates):
        return "no plates", None
    index = store.plate_index
    unknown = [p for p in plates if p not in index]
    if unknown:
        return f"plate {unknown[0]!r} is not in the store", None
    if not isinstance(product, str) or product not in store.products:
        return f"product {product!r} is not in the catalogue", None
    if not isinstance(n, int) or isinstance(n, bool):
        return f"count {n!r} is not a whole number", None
    if n < 0:
        return f"negative count {n}", None
    if n * store.products[product].weight_g > MAX_LOAD_KG * 1000.0 * len(set(plates)):
        return f"{n} items weigh more than {MAX_LOAD_KG:.0f} kg a plate", None
    fp = tuple(sorted(set(plates), key=index.__getitem__))
    if row.get("misplaced") is False and (fp, product) not in facings:
        # a planned facing of the store file that wrote it, not of this one
        return "the planogram no longer has this facing", None
    return None, (fp, product)


class PlateInventory:
    """Product counts per footprint; only changes through :meth:`add`."""

    def __init__(
        self,
        plate_order: Sequence[str],
        home: Mapping[str, Sequence[Footprint]] | None = None,
    ) -> None:
        self._order = {p: i for i, p in enumerate(plate_order)}
        self._home: dict[str, list[Footprint]] = {
            k: [self._canon(f) for f in v] for k, v in (home or {}).items()
        }
        self._items: dict[Footprint, Counter[str]] = {}

    @classmethod
    def from_store(cls, store: Store,
                   counts: Mapping[Footprint, Mapping[str, int]] | None = None
                   ) -> PlateInventory:
        """The opening stock of the planogram; ``counts`` (footprint → product → count: a
        :class:`Stock`'s) replace it where they say, the rest stays the planogram's."""
        home: dict[str, list[Footprint]] = {}
        for e in store.planogram:
            home.setdefault(e.product, []).append(tuple(e.plates))
        inv = cls(store.plate_ids, home)
        for e in store.planogram:
            if e.stock:
                inv._items.setdefault(inv._canon(e.plates), Counter())[e.product] += e.stock
        for fp, c in (counts or {}).items():
            items = inv._items.setdefault(inv._canon(fp), Counter())
            for product, n in c.items():
                if n < 0:
                    raise ValueError(f"negative count {n} of {product} on {list(fp)}")
                items[product] = n
            inv._items[inv._canon(fp)] = +items
        return inv

    def _canon(self, plates: Iterable[str]) -> Footprint:
        """Footprints in canonical plate order, so one set of plates has one key."""
        try:
            return tuple(sorted(set(plates), key=self._order.__getitem__))
        except KeyError as exc:
            raise KeyError(f"unknown plate {exc.args[0]!r}") from None

    def on(self, plates: Iterable[str]) -> Counter[str]:
        """Products whose footprint touches any of ``plates``, with their counts."""
        want = set(plates)
        out: Counter[str] = Counter()
        for fp, items in self._items.items():
            if want.intersection(fp):
                out.update(items)
        return +out

    def count(self, plates: Iterable[str], product_id: str) -> int:
        return self.on(plates)[product_id]

    def add(self, plates: Sequence[str], product_id: str, quantity: int) -> int:
        """Put (+) or take (−) items on ``plates``; returns the change actually applied.

        A put lands on the product's planogram footprint when that overlaps ``plates``
        (an item put back on one of its two plates still spans both), else on ``plates``.
        A take removes from the footprints touching ``plates`` that hold the product, never
        below zero: the inventory cannot know about unrecorded restocks.
        """
        event = self._canon(plates)
        if quantity > 0:
            fp = next((f for f in self._home.get(product_id, []) if set(f) & set(event)), event)
            self._items.setdefault(fp, Counter())[product_id] += quantity
            return quantity
        left = -quantity
        touching = sorted(
            (f for f in self._items if set(f) & set(event) and self._items[f][product_id] > 0),
            key=lambda f: (f != event, f),
        )
        for fp in touching:
            take = min(left, self._items[fp][product_id])
            self._items[fp][product_id] -= take
            if not self._items[fp][product_id]:
                del self._items[fp][product_id]
            left -= take
            if not left:
                break
        return quantity + left

    def snapshot(self) -> dict[Footprint, dict[str, int]]:
        """A plain copy of the contents, for display and tests."""
        return {fp: dict(sorted(c.items())) for fp, c in sorted(self._items.items()) if c}
