"""A live sensor stream that survives a restart of its engine.

A recording or simulation can be read again from its beginning, so its runner recovers from a
crash by replaying it (:mod:`walkout.service.runner`). The store's sensor network cannot: what
the broker delivered is gone once consumed. Before this, each start of ``walkout serve
--source mqtt://`` was a new stream; the engine forgot everybody inside, their visits stayed
open until the housekeeping's ``max_visit_s``, and what they took afterwards went to nobody.

So the live runner keeps two things in the service's database (the same truth as the event
log, backed up with it):

- **the journal** (:class:`StreamChunk`): every chunk the engine steps on, written before the
  step. The engine is a deterministic function of its chunks (plus the operator's stamped
  verdicts and store modes), so replaying them rebuilds its state exactly;
- **a snapshot** (:class:`EngineSnapshot`) of the engine and the runner's bookkeeping every
  ``snapshot_every_s`` of stream time and at a clean stop, after which the journal up to it is
  deleted: a restart replays minutes, not the whole day, and the journal holds minutes of
  skeletons, not the day's.

Both are pickles. The journal's are compressed with zlib at its fastest level (:func:`pack`):
a 5 s chunk of a 12-camera store is ~1.2 MB pickled and the journal is written for as long as
the store is open, so the box's disk (often flash) takes ~37 % fewer writes for ~15 ms of CPU a
chunk. A snapshot is not: the tracks' triangulated samples are noise to zlib (22 MB → 19.5 MB
for 0.8 s more, while the engine waits). :func:`unpack` reads either kind (and the journal
rows written before compression).

A snapshot is loaded only from the service's own database, and only by the code and
store file that wrote it (``code``): an upgrade or a changed store file starts a new stream
and says so in an ``engine_state_lost`` alert. A crash loses no sensor data: the consumer
acknowledges a broker message only once its readings are in a journaled chunk
(``MqttSource(manual_ack=True)``), so the broker delivers again what was in flight.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import zlib
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from walkout.service.clock import aware
from walkout.service.deps import Deps
from walkout.service.models import EngineEvent, EngineSnapshot, StreamChunk
from walkout.store.model import Store

log = logging.getLogger("walkout.service.live_state")


@cache
def _package_digest() -> str:
    import walkout

    h = hashlib.sha256()
    root = Path(walkout.__file__).parent
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def code_version(store: Store) -> str:
    """What a snapshot can be loaded by: this code and this store file, hashed."""
    h = hashlib.sha256(_package_digest().encode())
    h.update(store.model_dump_json().encode())
    return h.hexdigest()


def pack(obj: Any) -> bytes:
    """``obj`` pickled and zlib-compressed (level 1: most of the saving, a fraction of the
    time of the higher levels on float arrays)."""
    return zlib.compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), 1)


def unpack(blob: bytes) -> Any:
    """The object :func:`pack` stored; a plain pickle (a row written before compression)
    too: a pickle starts with its protocol byte 0x80, a zlib stream with 0x78."""
    raw = zlib.decompress(blob) if blob[:1] == b"\x78" else blob
    return pickle.loads(raw)  # the service's own database: trusted


@dataclass
class Stream:
    """What a restart finds of a stream: its snapshot (``None``: replay from chunk 0), the
    chunks journaled after it, and why it cannot be continued (``lost``)."""

    source: str
    snapshot_chunk: int
    state: dict[str, Any] | None
    chunks: list[tuple[int, Any]]
    t: float
    lost: str | None = None
    #: the real time its snapshot or its newest journaled chunk was written: the stream stood
    #: still since (a stream just rolled over has no runner checkpoint to say so)
    at: datetime | None = None


def open_stream(d: Deps, prefix: str, store: Store) -> Stream | None:
    """The newest stream of this store (sources starting with ``prefix``) whose state is
    kept, loaded; ``None`` when there is none (the last one ended, or none ever ran)."""
    with d.sessions() as s:
        snaps = list(s.execute(select(EngineSnapshot.source, EngineSnapshot.created_at)
                               .where(EngineSnapshot.source.startswith(prefix, autoescape=True))))
        journals = list(s.execute(select(StreamChunk.source, StreamChunk.recorded_at)
                                  .where(StreamChunk.source.startswith(prefix, autoescape=True))))
    newest = sorted(snaps + journals, key=lambda r: r[1])
    if not newest:
        return None
    source = newest[-1][0]
    at = max(aware(r[1]) for r in newest if r[0] == source)
    with d.sessions() as s:
        snap = s.get(EngineSnapshot, source)
        after = -1 if snap is None else snap.chunk
        t = 0.0 if snap is None else snap.t
        rows = list(s.execute(select(StreamChunk.chunk, StreamChunk.t, StreamChunk.payload)
                              .where(StreamChunk.source == source, StreamChunk.chunk > after)
                              .order_by(StreamChunk.chunk)))
        code, blob = (None, None) if snap is None else (snap.code, snap.payload)
    stream = Stream(source, after, None, [], rows[-1][1] if rows else t, at=at)
    if [r[0] for r in rows] != list(range(after + 1, after + 1 + len(rows))):
        stream.lost = (f"its journal has gaps after chunk {after}: "
                       f"{[r[0] for r in rows][:5]}...")
        return stream
    if code is not None and code != code_version(store):
        stream.lost = ("the engine code or the store file changed since its last snapshot "
                       "(an upgrade): the old state cannot be loaded")
        return stream
    try:
        if blob is not None:
            stream.state = unpack(blob)
        stream.chunks = [(i, unpack(p)) for i, _, p in rows]
    except Exception as e:  # a damaged row: say so, start afresh
        stream.lost = f"its saved state could not be read ({type(e).__name__}: {e})"
    return stream


def journal(d: Deps, source: str, chunk: int, t: float, payload: Any) -> None:
    """Write one chunk's input before the engine steps on it (a replay finds it there)."""
    blob = pack(payload)
    with d.sessions.begin() as s:
        if s.get(StreamChunk, (source, chunk)) is None:
            s.add(StreamChunk(source=source, chunk=chunk, t=t, payload=blob,
                              recorded_at=d.clock.now()))


def save_snapshot(d: Deps, source: str, chunk: int, t: float, store: Store,
                  state: dict[str, Any], replaces: str | None = None) -> int:
    """Replace the stream's snapshot with ``state`` after ``chunk`` and delete the journal up
    to it, in one transaction; returns the snapshot's size in bytes. ``replaces``: the stream
    this one follows (a rollover), whose journal and snapshot go in the same transaction, so
    that a crash leaves one of the two to continue, never neither."""
    blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)  # not compressed: see above
    with d.sessions.begin() as s:
        if replaces is not None:
            _forget(s, replaces)
        row = s.get(EngineSnapshot, source)
        if row is None:
            s.add(EngineSnapshot(source=source, chunk=chunk, t=t, code=code_version(store),
                                 payload=blob, created_at=d.clock.now()))
        else:
            row.chunk, row.t, row.code, row.payload = chunk, t, code_version(store), blob
            row.created_at = d.clock.now()
        s.execute(delete(StreamChunk).where(StreamChunk.source == source,
                                            StreamChunk.chunk <= chunk))
    return len(blob)


def forget_stream(d: Deps, source: str) -> None:
    """The stream ended (or cannot be continued): its journal and snapshot go."""
    with d.sessions.begin() as s:
        _forget(s, source)


def _forget(s: Session, source: str) -> None:
    s.execute(delete(StreamChunk).where(StreamChunk.source == source))
    s.execute(delete(EngineSnapshot).where(EngineSnapshot.source == source))


def ended_cases(s: Session) -> set[tuple[str, str]]:
    """(stream, case id) of the review cases a stream left open when it ended (a live
    store's rollover, ``stream_ended`` rows): no engine holds them any more, so no verdict
    will ever be applied to them; their receipts stand as issued (refunds instead). Keyed by
    both: a case id repeats across recorded or simulated streams served into one database."""
    out: set[tuple[str, str]] = set()
    for row in s.scalars(select(EngineEvent).where(EngineEvent.kind == "stream_ended",
                                                   EngineEvent.source.like("%/stream"))):
        stream = row.source.rsplit("/", 1)[0]
        out.update((stream, cid) for cid in json.loads(row.payload).get("open_cases", []))
    return out
