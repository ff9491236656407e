"""What is on the shelves: a multiset of products per footprint.

Items are kept per *footprint* (the tuple of plates an item stands on) rather than per plate,
because a product spanning two plates loads both and cannot be split between them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from walkout.store.model import Store

Footprint = tuple[str, ...]


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
    def from_store(cls, store: Store) -> PlateInventory:
        """The opening stock of the planogram."""
        home: dict[str, list[Footprint]] = {}
        for e in store.planogram:
            home.setdefault(e.product, []).append(tuple(e.plates))
        inv = cls(store.plate_ids, home)
        for e in store.planogram:
            if e.stock:
                inv._items.setdefault(inv._canon(e.plates), Counter())[e.product] += e.stock
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
