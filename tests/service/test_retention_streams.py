"""Retention reaches what the event log's purge left behind: the operator's free-text note on
a review verdict goes with its case's evidence (the verdict stays), and a live stream that
stood still past the retention period loses its journal and engine snapshot (raw skeletons,
the gate's credentials) while a live stream keeps its own. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from walkout.service import retention
from walkout.service.db import make_engine, session_factory, upgrade
from walkout.service.models import EngineEvent, EngineSnapshot, ReviewVerdict, StreamChunk

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_a_verdicts_note_goes_with_its_cases_evidence(db_url: str) -> None:
    db = make_engine(db_url)
    upgrade(db)
    sessions = session_factory(db)
    with sessions.begin() as s:
        for seq, (case, days) in enumerate((("old-case", 40), ("new-case", 2))):
            at = NOW - timedelta(days=days)
            s.add(EngineEvent(source="sim/cases", seq=seq, kind="review_case", t=1.0,
                              ref=case, payload="{}", recorded_at=at))
            s.add(EngineEvent(source="sim/evidence", seq=seq, kind="case_evidence", t=1.0,
                              ref=case, payload="{}", recorded_at=at))
            s.add(ReviewVerdict(source="sim", case_id=case, shares='{"s00001": [["p", 1]]}',
                                decided_by="op", note=f"the lady in red ({case})",
                                decided_at=at, applied_at=at, applied_chunk=3))
    with sessions.begin() as s:
        out = retention.purge(s, NOW, days=30)
    with sessions() as s:
        left = {v.case_id: (v.note, v.shares, v.applied_at is not None)
                for v in s.scalars(select(ReviewVerdict))}
    assert left == {"old-case": (None, '{"s00001": [["p", 1]]}', True),
                    "new-case": ("the lady in red (new-case)", '{"s00001": [["p", 1]]}', True)}
    assert out["engine_events"] == 2 and out["review_notes"] == 1
    with sessions.begin() as s:  # nothing more to blank
        assert retention.purge(s, NOW, days=30)["review_notes"] == 0
    db.dispose()


def test_a_stream_that_stood_still_past_retention_loses_its_journal_and_snapshot(
        db_url: str) -> None:
    db = make_engine(db_url)
    upgrade(db)
    sessions = session_factory(db)
    old, live = NOW - timedelta(days=31), NOW - timedelta(seconds=5)
    with sessions.begin() as s:
        # stopped for good 31 days ago: its snapshot and the journal after it
        s.add(EngineSnapshot(source="mqtt:small:20261020T090000", chunk=10, t=50.0, code="c",
                             payload=b"skeletons", created_at=old - timedelta(hours=1)))
        s.add(StreamChunk(source="mqtt:small:20261020T090000", chunk=11, t=55.0,
                          payload=b"qr-0001", recorded_at=old))
        # running: an old snapshot (the store was quiet) and a fresh journal after it
        s.add(EngineSnapshot(source="mqtt:small:20261101T090000", chunk=3, t=15.0, code="c",
                             payload=b"state", created_at=old))
        s.add(StreamChunk(source="mqtt:small:20261101T090000", chunk=4, t=20.0,
                          payload=b"chunk", recorded_at=live))
        # running, just snapshotted (its journal up to it deleted)
        s.add(EngineSnapshot(source="mqtt:other:20261124T110000", chunk=7, t=35.0, code="c",
                             payload=b"state", created_at=live))
        # a journal without a snapshot, stopped long ago
        s.add(StreamChunk(source="mqtt:small:20260901T090000", chunk=0, t=5.0,
                          payload=b"qr-0002", recorded_at=old - timedelta(days=30)))
    with sessions.begin() as s:
        out = retention.purge(s, NOW, days=30)
    with sessions() as s:
        snaps = sorted(s.scalars(select(EngineSnapshot.source)))
        chunks = sorted(tuple(r) for r in s.execute(select(StreamChunk.source,
                                                           StreamChunk.chunk)))
    assert snaps == ["mqtt:other:20261124T110000", "mqtt:small:20261101T090000"]
    assert chunks == [("mqtt:small:20261101T090000", 4)]
    assert out["stream_states"] == 2
    db.dispose()
