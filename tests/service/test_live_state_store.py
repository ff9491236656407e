"""The live stream's journal and snapshots in the service database, on SQLite and PostgreSQL:
what a restart finds (``walkout.service.live_state.open_stream``)."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from walkout.events import PlateBlock
from walkout.service import live_state
from walkout.service.db import make_engine, upgrade
from walkout.service.deps import Deps
from walkout.service.models import StreamChunk
from walkout.service.testing import make_svc
from walkout.store import load_store

STORE = load_store("small")
PREFIX = "mqtt:shop:"


def _deps(url: str) -> Deps:
    db = make_engine(url)
    upgrade(db)
    return make_svc(db).deps


def _chunk(k: int) -> tuple[float, tuple[PlateBlock, list[object], list[object], float]]:
    grams = np.full((50, len(STORE.plate_ids)), float(k), np.float32)  # a chunk's plates
    block = PlateBlock(np.arange(50) / 10 + 5 * k, grams, STORE.plate_ids)
    return 0.0, (block, [], [], 5.0 * (k + 1))


def test_a_restart_finds_the_snapshot_and_the_journal_after_it(db_url: str) -> None:
    d = _deps(db_url)
    assert live_state.open_stream(d, PREFIX, STORE) is None
    src = f"{PREFIX}20261124T080000"
    for k in range(4):
        live_state.journal(d, src, k, 5.0 * (k + 1), _chunk(k))
    live_state.journal(d, src, 3, 20.0, _chunk(99))  # a replayed chunk is journaled once
    big = {"engine": np.arange(2_000_000, dtype=np.float64), "chunks_done": 2}  # 16 MB
    live_state.save_snapshot(d, src, 1, 10.0, STORE, big)
    with d.sessions() as s:
        assert list(s.scalars(select(StreamChunk.chunk).order_by(StreamChunk.chunk))) == [2, 3]
    stream = live_state.open_stream(d, PREFIX, STORE)
    assert stream is not None and stream.lost is None and stream.source == src
    assert stream.snapshot_chunk == 1 and stream.state is not None
    assert np.array_equal(stream.state["engine"], big["engine"])
    assert [i for i, _ in stream.chunks] == [2, 3]
    block = stream.chunks[1][1][1][0]
    assert float(block.grams[0, 0]) == 3.0  # the first write of chunk 3 stands
    live_state.forget_stream(d, src)
    assert live_state.open_stream(d, PREFIX, STORE) is None


def test_a_stream_that_cannot_be_continued_says_why(db_url: str) -> None:
    d = _deps(db_url)
    src = f"{PREFIX}20261124T080000"
    live_state.save_snapshot(d, src, 1, 10.0, STORE, {"chunks_done": 2})
    live_state.journal(d, src, 3, 20.0, _chunk(3))  # chunk 2 never journaled
    stream = live_state.open_stream(d, PREFIX, STORE)
    assert stream is not None and stream.lost is not None and "gaps" in stream.lost
    other = STORE.model_copy(update={"name": "another"})
    live_state.journal(d, src, 2, 15.0, _chunk(2))
    stream = live_state.open_stream(d, PREFIX, other)  # another store file wrote it
    assert stream is not None and stream.lost is not None and "store file" in stream.lost
    assert live_state.open_stream(d, PREFIX, STORE).lost is None  # type: ignore[union-attr]


def test_the_journal_is_stored_compressed_and_an_uncompressed_row_still_loads(
        db_url: str) -> None:
    """Rows are zlib-compressed pickles (the journal is written all day); a row written before
    compression, a plain pickle, is read as it was."""
    import pickle

    d = _deps(db_url)
    src = f"{PREFIX}20261124T080000"
    live_state.journal(d, src, 0, 5.0, _chunk(0))
    with d.sessions.begin() as s:
        row = s.get(StreamChunk, (src, 0))
        assert row is not None
        plain = pickle.dumps(_chunk(0), protocol=pickle.HIGHEST_PROTOCOL)
        assert len(row.payload) < len(plain) / 2  # 50 samples of one value a plate
        s.add(StreamChunk(source=src, chunk=1, t=10.0, payload=pickle.dumps(_chunk(1)),
                          recorded_at=row.recorded_at))
    stream = live_state.open_stream(d, PREFIX, STORE)
    assert stream is not None and stream.lost is None
    assert [float(c[1][0].grams[0, 0]) for _, c in stream.chunks] == [0.0, 1.0]
