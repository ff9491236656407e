"""Carts as an append-only ledger; contents are a pure fold over its entries."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from walkout.events import CartEntry
from walkout.seqlog import SeqLog


def fold(entries: Iterable[CartEntry]) -> dict[str, Counter[str]]:
    """Session id → product → quantity held, from ledger entries in any order."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for e in entries:
        out[e.session_id][e.product_id] += e.quantity
    return {s: Counter({p: q for p, q in c.items() if q != 0}) for s, c in out.items()}


class CartLedger:
    """Append-only record of what each session took and returned."""

    def __init__(self) -> None:
        self._entries: SeqLog[CartEntry] | list[CartEntry] = SeqLog()  # (a list: old snapshot)
        self._by_session: dict[str, list[CartEntry]] = defaultdict(list)
        self._held: dict[str, Counter[str]] = defaultdict(Counter)

    def append(self, entry: CartEntry) -> None:
        self._entries.append(entry)
        self._by_session[entry.session_id].append(entry)
        self._held[entry.session_id][entry.product_id] += entry.quantity

    def holds(self, session_id: str, product_id: str) -> int:
        return self._held[session_id][product_id]

    def held(self, session_id: str) -> dict[str, int]:
        """What the session holds now (product → count > 0): what it can put back."""
        return {p: q for p, q in self._held[session_id].items() if q > 0}

    def entries(self, session_id: str | None = None) -> list[CartEntry]:
        """A session's entries; without one, every entry still held (:meth:`forget`)."""
        if session_id is None:
            return list(self._entries)
        return list(self._by_session.get(session_id, ()))

    def __len__(self) -> int:
        """Entries ever appended: the next one's position (:meth:`since`)."""
        return len(self._entries)

    def since(self, position: int) -> list[CartEntry]:
        """The entries appended from ``position`` on (a reader that took those before)."""
        return self._entries[position:]

    def forget(self, session_ids: set[str], appended_before: int) -> None:
        """Let sessions settled long ago go (their carts), and the entries appended before
        position ``appended_before`` (every reader took them long ago)."""
        for sid in session_ids:
            self._by_session.pop(sid, None)
            self._held.pop(sid, None)
        if not isinstance(self._entries, SeqLog):
            self._entries = SeqLog(self._entries)
        self._entries.forget_before(appended_before)

    def contents(self, session_id: str) -> Counter[str]:
        return fold(self.entries(session_id)).get(session_id, Counter())
