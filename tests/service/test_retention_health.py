"""Superseded health snapshots do not pile up in the event log for the retention period: the
latest of each stream stays, the rest goes after an hour. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from walkout.service import retention
from walkout.service.db import make_engine, session_factory, upgrade
from walkout.service.models import EngineEvent

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_old_health_snapshots_go_and_each_streams_latest_stays(db_url: str) -> None:
    db = make_engine(db_url)
    upgrade(db)
    sessions = session_factory(db)
    rows = [("a/health", 0, 5), ("a/health", 1, 3), ("a/health", 2, 0.5),  # hours old
            ("b/health", 0, 10),  # a stream long over: its last snapshot stays
            ("a/live", 0, 5), ("a/alerts", 0, 5)]  # not health: the retention rule only
    with sessions.begin() as s:
        for source, seq, hours in rows:
            s.add(EngineEvent(source=source, seq=seq, kind=source.split("/")[1], t=float(seq),
                              payload="{}", recorded_at=NOW - timedelta(hours=hours)))
    with sessions.begin() as s:
        assert retention.purge(s, NOW, days=30)["engine_events"] == 2
    with sessions() as s:
        left = sorted(s.execute(select(EngineEvent.source, EngineEvent.seq)).tuples())
    assert left == [("a/alerts", 0), ("a/health", 2), ("a/live", 0), ("b/health", 0)]
    db.dispose()
