"""Restock mode: the operator marks the store closed (or open again).

While the store is marked closed and no shopper is inside, a weight change that no staff or
shopper hand made is a restock or a stock removal (``walkout.engine``), not a review case: the
night shift restocks without a badge scan per shelf. The mode is an input of the engine like a
gate event, so it must replay the same: the API appends a :class:`StoreMode` row, and the
engine worker applies each row at the start of its next chunk and stamps it with that chunk;
after a restart the replay applies stamped rows at their stamped chunks. A store starts open.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from walkout.engine import Engine
from walkout.service.clock import aware
from walkout.service.deps import Deps
from walkout.service.models import Account, StoreMode

log = logging.getLogger(__name__)


def set_mode(d: Deps, closed: bool, by: str, note: str | None = None) -> dict[str, Any]:
    """Record the operator's change (a no-op when the store is already in that mode)."""
    with d.sessions.begin() as s:
        last = s.scalar(select(StoreMode).order_by(StoreMode.id.desc()).limit(1))
        if (last.closed if last is not None else False) == closed:
            return _out(s, last)
        row = StoreMode(closed=closed, set_by=by, note=note, set_at=d.clock.now())
        s.add(row)
        s.flush()
        return _out(s, row)


def current(d: Deps) -> dict[str, Any]:
    with d.sessions() as s:
        return _out(s, s.scalar(select(StoreMode).order_by(StoreMode.id.desc()).limit(1)))


def apply_modes(d: Deps, eng: Engine, source: str, chunk: int, t: float,
                fresh: bool = True) -> int:
    """Give the engine the mode changes due at the start of ``chunk`` (stream time ``t``):
    those stamped with this chunk (a replay) and, when ``fresh`` (a chunk never processed
    before: not a replay after a restart), those not applied yet, stamped now.
    Returns how many were applied."""
    due = (StoreMode.source == source) & (StoreMode.applied_chunk == chunk)
    if fresh:
        due = due | StoreMode.applied_chunk.is_(None)
    with d.sessions() as s:
        rows = list(s.scalars(select(StoreMode).where(due).order_by(StoreMode.id)))
    for r in rows:
        at = r.applied_t if r.applied_chunk is not None and r.applied_t is not None else t
        eng.set_store_mode(max(at, eng.store_modes[-1][0]) if eng.store_modes else at, r.closed)
        if r.applied_chunk is None:
            with d.sessions.begin() as s:
                s.execute(update(StoreMode).where(StoreMode.id == r.id,
                                                  StoreMode.applied_chunk.is_(None))
                          .values(source=source, applied_chunk=chunk, applied_t=t))
    return len(rows)


def _out(s: Session, row: StoreMode | None) -> dict[str, Any]:
    """The mode as the API answers it; ``set_by_name``: the staff account's name (what the
    dashboard shows), ``None`` when it has none."""
    if row is None:
        return {"closed": False, "set_by": None, "set_by_name": None, "set_at": None,
                "applied_t": None}
    return {"closed": row.closed, "set_by": row.set_by,
            "set_by_name": s.scalar(select(Account.display_name)
                                    .where(Account.id == row.set_by)),
            "note": row.note, "set_at": aware(row.set_at).isoformat(),
            "applied_t": row.applied_t}


def carry_over(d: Deps, source: str, t: float) -> bool:
    """Start a new engine stream (a live source's restart, another recording) in the store's
    mode: a store closed for restocking stays closed. The latest row was applied to another
    stream, so it would never reach this one; a copy stamped with this stream's first chunk
    does, and a replay of this stream applies it there again. The copy keeps who closed the
    store, when and their note: the latest row is what ``GET /v1/store-mode`` shows, and the
    operator's closing is what it must show, not the engine's new stream (that is logged).
    Called for the first chunk of a stream, only when it is processed for the first time.
    Returns whether one was added."""
    with d.sessions.begin() as s:
        last = s.scalar(select(StoreMode).order_by(StoreMode.id.desc()).limit(1))
        if (last is None or not last.closed or last.applied_chunk is None
                or last.source == source):
            return False  # open; or not applied yet (this stream takes it fresh); or its own
        old = last.source
        s.add(StoreMode(closed=True, set_by=last.set_by, set_at=last.set_at, note=last.note,
                        source=source, applied_chunk=0, applied_t=t))
    log.info("stream %s starts with the store closed, as stream %s left it", source, old)
    return True
