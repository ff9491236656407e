"""An append-only sequence whose oldest items can be forgotten while every position stays.

The engine hands its outputs (shelf events, decisions, receipts, cart lines) to the service as
sequences read by position: each chunk the service takes what lies past the position it had
reached (``log[seen:]``) and writes it under that position (the event log's ``seq``). A store
that is never empty runs one stream for days, so these sequences must let go of what the
service took long ago, without moving a single position (``len`` counts everything ever
appended). Asking for a forgotten position is a bug, and raises rather than shifting silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar, overload

T = TypeVar("T")


class SeqLog(Generic[T]):
    """A list-like log: ``append``/``extend``/``+=``, positions stable, oldest forgettable."""

    __slots__ = ("_items", "start")

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._items: list[T] = list(items)
        self.start = 0  # positions before it were forgotten

    def append(self, item: T) -> None:
        self._items.append(item)

    def extend(self, items: Iterable[T]) -> None:
        self._items.extend(items)

    def __iadd__(self, items: Iterable[T]) -> SeqLog[T]:
        self._items.extend(items)
        return self

    def __len__(self) -> int:
        """Every item ever appended, forgotten ones included (the next item's position)."""
        return self.start + len(self._items)

    def __iter__(self) -> Iterator[T]:
        """The items still held, oldest first."""
        return iter(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    @overload
    def __getitem__(self, i: int) -> T: ...
    @overload
    def __getitem__(self, i: slice) -> list[T]: ...
    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            if i.step not in (None, 1):
                raise ValueError("a SeqLog slice takes no step")
            a = 0 if i.start is None else self._position(i.start)
            b = len(self) if i.stop is None else max(self._position(i.stop, end=True), a)
            self._check(a)
            return self._items[a - self.start : b - self.start]
        k = self._position(i)
        self._check(k)
        if k >= len(self):
            raise IndexError(f"position {i} is past the end ({len(self)} items)")
        return self._items[k - self.start]

    def _position(self, i: int, end: bool = False) -> int:
        k = i + len(self) if i < 0 else i
        return min(k, len(self)) if end else k

    def _check(self, k: int) -> None:
        if k < self.start:
            raise IndexError(f"position {k} was forgotten (this log holds {self.start} on); "
                             "its reader fell behind by more than the engine keeps")

    def forget_before(self, position: int) -> int:
        """Forget every item before ``position``; how many went."""
        n = max(0, min(position, len(self)) - self.start)
        if n:
            del self._items[:n]
            self.start += n
        return n

    def __repr__(self) -> str:
        return f"SeqLog(start={self.start}, {self._items!r})"
