"""Migration 0017: a review verdict is keyed by its case's stream and id. The verdicts kept
from before get their stream from the event log, and the downgrade refuses to lose one. On
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from walkout.service.db import downgrade, make_engine, upgrade

T = datetime(2026, 1, 1, tzinfo=UTC)


def _event(c: Connection, source: str, seq: int, ref: str, t: float = 1.0) -> None:
    c.execute(text("INSERT INTO engine_events (source, seq, kind, t, payload, recorded_at, ref) "
                   "VALUES (:s, :q, 'x', :t, '{}', :at, :r)"),
              {"s": source, "q": seq, "t": t, "at": T, "r": ref})


def _verdict(c: Connection, case_id: str, source: str | None = None,
             chunk: int | None = None, applied: bool = False) -> None:
    c.execute(text("INSERT INTO review_verdicts (case_id, shares, decided_by, decided_at, "
                   "applied_at, source, applied_chunk) VALUES (:c, '{}', 'op', :t, :a, :s, :k)"),
              {"c": case_id, "t": T, "a": T if applied else None, "s": source, "k": chunk})


def _checkpoint(c: Connection, source: str) -> None:
    c.execute(text("INSERT INTO runner_checkpoints (source, chunk, t, updated_at) "
                   "VALUES (:s, 9, 9.0, :t)"), {"s": source, "t": T})


def _rows(eng: Engine) -> dict[str, str | None]:
    with eng.connect() as c:
        return dict(c.execute(text("SELECT case_id, source FROM review_verdicts")).all())


def test_0017_gives_each_kept_verdict_its_stream_and_keys_by_it(db_url: str) -> None:
    eng = make_engine(db_url)
    upgrade(eng, "0016")
    with eng.begin() as c:
        _checkpoint(c, "day1")
        _checkpoint(c, "day2")
        _event(c, "day1/evidence", 0, "A-1.000")  # in two streams: day two's is the newest
        _event(c, "day2/evidence", 0, "A-1.000")
        _event(c, "day2/health", 0, "A-1.000")  # not a row a case id is the ref of
        _event(c, "day1/cases", 0, "B-2.000")
        _event(c, "day1/shelf", 1, "C-3.000", t=5.0)  # only its shelf event is left
        _event(c, "day1/evidence", 1, "E-5.000")
        _verdict(c, "A-1.000")
        _verdict(c, "B-2.000", applied=True)  # applied before 0008: no stamp
        _verdict(c, "C-3.000")
        _verdict(c, "D-4.000", applied=True)  # its case left the event log
        _verdict(c, "E-5.000", "day2", 3, applied=True)  # stamped by the stream that applied it
    upgrade(eng)
    assert _rows(eng) == {"A-1.000": "day2", "B-2.000": "day1", "C-3.000": "day1",
                          "D-4.000": "", "E-5.000": "day2"}
    assert inspect(eng).get_pk_constraint("review_verdicts")["constrained_columns"] == [
        "source", "case_id"]
    with eng.begin() as c:  # day one's case of the same id gets a verdict of its own
        _verdict(c, "A-1.000", "day1")
    with pytest.raises(IntegrityError), eng.begin() as c:  # but each case one
        _verdict(c, "A-1.000", "day1")
    with pytest.raises(IntegrityError), eng.begin() as c:
        _verdict(c, "F-6.000")  # a verdict names its stream
    with pytest.raises(RuntimeError, match=r"share a case id.*: A-1\.000; delete"):
        downgrade(eng, "0016")
    with eng.begin() as c:
        c.execute(text("DELETE FROM review_verdicts WHERE source = 'day1' "
                       "AND case_id = 'A-1.000'"))
    downgrade(eng, "0016")  # the stream of what was not applied yet goes: 0016 stamps it
    assert _rows(eng) == {"A-1.000": None, "B-2.000": None, "C-3.000": None, "D-4.000": None,
                          "E-5.000": "day2"}
    assert inspect(eng).get_pk_constraint("review_verdicts")["constrained_columns"] == [
        "case_id"]
    upgrade(eng)
    eng.dispose()


def test_0017_gives_a_verdict_whose_case_left_the_log_the_one_stream_there_was(
        db_url: str) -> None:
    eng = make_engine(db_url)
    upgrade(eng, "0016")
    with eng.begin() as c:
        _checkpoint(c, "sim:small:6:20")
        _verdict(c, "D-4.000", applied=True)
    upgrade(eng)
    assert _rows(eng) == {"D-4.000": "sim:small:6:20"}
    eng.dispose()
