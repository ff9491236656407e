"""A store that is never empty runs one stream for days: its engine lets the visits settled
long ago go (``forget_visits_s``) without changing anything it hands the service, and keeps
what a review verdict still needs."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from walkout.cart import SessionState
from walkout.engine import Engine, EngineConfig
from walkout.events import KeypointFrame
from walkout.review import Verdict
from walkout.seqlog import SeqLog
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store

from .test_long_running import LOOKING_BACK


@pytest.fixture(scope="module")
def sensors() -> Sensors:
    return Sensors.from_session(simulate(load_store("small"), 10, 2, scenarios=LOOKING_BACK))


def _taker(eng: Engine, out: list[str]) -> Any:
    """What the service does after each chunk: take what lies past the positions it read
    (events, decisions, cart lines, receipts, alerts) and write it down."""
    seen = {"events": len(eng.events), "decisions": len(eng.decisions),
            "lines": len(eng.ledger), "issued": len(eng.issued), "alerts": len(eng.alerts)}

    def take() -> None:
        new: dict[str, Any] = {
            "events": eng.events[seen["events"]:],
            "decisions": [(d.attribution.event.event_id, d.attribution.session_id,
                           d.attribution.scores, d.items, d.needs_review, d.reasons)
                          for d in eng.decisions[seen["decisions"]:]],
            "lines": eng.ledger.since(seen["lines"]),
            "issued": eng.issued[seen["issued"]:],
            "alerts": eng.alerts[seen["alerts"]:],
        }
        seen.update(events=len(eng.events), decisions=len(eng.decisions),
                    lines=len(eng.ledger), issued=len(eng.issued), alerts=len(eng.alerts))
        out.append(repr(new))

    return take


def _run(eng: Engine, chunks: list[Any], finish: bool = True) -> list[str]:
    out: list[str] = []
    take = _taker(eng, out)
    for block, frames, gates, now in chunks:
        eng.step(block, frames, gates, now)
        take()
    if finish:
        eng.finish()
        take()
    return out


def _stream(sensors: Sensors, forget_s: float | None) -> tuple[Engine, list[str]]:
    eng = Engine(sensors.store, EngineConfig(forget_visits_s=forget_s))
    return eng, _run(eng, list(sensors.chunks(eng.config.chunk_s)))


def test_letting_settled_visits_go_changes_nothing_handed_out(sensors: Sensors) -> None:
    full, every = _stream(sensors, None)
    short, kept = _stream(sensors, 5.0)
    assert kept == every  # chunk by chunk, the same outputs at the same positions
    # what the short memory still holds: the visits no case waits for are gone
    waiting = {sid for c in short.cases.values() if c.open for sid in c.sessions}
    assert len(full.book.sessions) > 15
    stale = {sid for sid, s in short.book.sessions.items() if s.state == SessionState.CLOSED
             and s.exited_at is not None and s.exited_at < short.now - 5.0 - 60.0}
    assert stale <= waiting
    assert len(short.book.sessions) < len(full.book.sessions) / 2
    assert len(short.tracker.tracks) < len(full.tracker.tracks) / 2
    assert short.tracker.retired == len(full.tracker.tracks) - len(short.tracker.tracks)
    assert len(short.ledger.entries()) < len(full.ledger.entries()) / 2
    assert len(list(short.issued)) < len(list(full.issued)) / 2
    assert len(pickle.dumps(short)) < len(pickle.dumps(full))
    with pytest.raises(IndexError, match="forgotten"):
        short.events[0:]  # a reader that fell that far behind is told, not shifted


def test_a_verdict_long_after_the_exit_revises_the_receipt_as_with_every_visit_kept(
        sensors: Sensors) -> None:
    """The sessions an open case names stay, however long ago they left: the verdict
    corrects the cart and re-issues their receipts exactly as an engine that forgot
    nothing does."""
    full, _ = _stream(sensors, None)
    short, _ = _stream(sensors, 5.0)
    cases = [cid for cid, c in full.cases.items() if c.open and c.sessions]
    assert cases, "the scenarios give review cases"
    for cid in cases:
        c = full.cases[cid]
        assert all(sid in short.book.sessions for sid in c.sessions)
        verdict = Verdict({c.sessions[0]: ()}, reviewer="test")
        assert short.resolve(cid, verdict) == full.resolve(cid, verdict)
    assert short.issued[len(short.issued) - len(cases):] == \
        full.issued[len(full.issued) - len(cases):]
    for sid, r in short.receipts.items():
        assert full.receipts[sid] == r


def test_a_restored_engine_from_before_visits_were_let_go_goes_on_the_same(
        sensors: Sensors) -> None:
    """A snapshot taken by the previous version (plain lists, no marks, no open-track list)
    is continued and begins forgetting without a change in what it hands out."""
    chunks = list(sensors.chunks(EngineConfig().chunk_s))
    half = len(chunks) // 2
    old = Engine(sensors.store, EngineConfig(forget_visits_s=None))
    for block, frames, gates, now in chunks[:half]:
        old.step(block, frames, gates, now)
    # as the previous version pickled it
    old.events, old.decisions, old.issued = list(old.events), list(old.decisions), \
        list(old.issued)
    old.ledger._entries = list(old.ledger._entries)
    del old._marks, old.tracker._open, old.tracker.retired
    old.config = EngineConfig(forget_visits_s=5.0)  # the new version's service sets it
    eng = pickle.loads(pickle.dumps(old))
    ref = Engine(sensors.store, old.config)
    _run(ref, chunks[:half], finish=False)
    assert _run(eng, chunks[half:]) == _run(ref, chunks[half:])
    assert eng.tracker.retired > 0 and eng.book.forgotten > 0
    assert set(eng.receipts) == set(ref.receipts)


def test_a_shopper_lost_for_good_gets_the_receipt_a_rollover_would_give() -> None:
    """Everybody vanishes from every camera mid-visit (away from the exits) and the store
    never empties as far as the engine knows: an engine that lets visits go issues their
    receipts, as they were, with ``no_exit_seen``, once they are lost that long, instead of
    keeping the sessions open for good; an engine keeping everything issues the same at the
    end of the stream."""
    sn = Sensors.from_session(simulate(load_store("small"), 3, 1))
    entries = sorted(g.t for g in sn.gates if g.kind == "entry")
    t_cut = entries[-1] + 15.0  # all three inside by then (a visit lasts minutes)
    empty = np.zeros((0, 17, 3), np.float32)
    frames = [f if f.t < t_cut else KeypointFrame(f.camera_id, f.t, empty) for f in sn.frames]
    # the cameras keep sending (nobody in view) for five more minutes
    step = 1 / 15
    t, cams = sn.duration_s, [c.id for c in sn.store.cameras]
    while t < sn.duration_s + 300.0:
        frames += [KeypointFrame(c, t, empty) for c in cams]
        t += step
    lost = Sensors(sn.store, sn.plates, frames, [g for g in sn.gates if g.t < t_cut],
                   sn.duration_s + 300.0)
    full, _ = _stream(lost, None)
    short = Engine(lost.store, EngineConfig(forget_visits_s=5.0))
    handed: list[Any] = []  # every receipt as the service took it, chunk by chunk
    for block, frames_, gates, now in lost.chunks(short.config.chunk_s):
        n = len(short.issued)
        short.step(block, frames_, gates, now)
        handed += short.issued[n:]
    at_end = {a.subject for a in full.alerts if a.kind == "no_exit_seen"}
    assert len(at_end) == 3, [a for a in full.alerts if a.kind == "no_exit_seen"]
    told = [a for a in short.alerts if a.kind == "no_exit_seen"]
    assert {a.subject for a in told} == at_end
    assert all("never seen leaving" in a.message for a in told)
    by_session = {r.session_id: r for r in handed}
    for sid in at_end:  # the same lines, issued an hour (here: seconds) after being lost
        assert by_session[sid].lines == full.receipts[sid].lines
        assert sid not in short.book.sessions or \
            short.book.sessions[sid].state == SessionState.CLOSED


def test_a_seqlog_keeps_every_position_after_forgetting() -> None:
    log = SeqLog("abcde")
    assert log.forget_before(2) == 2 and log.forget_before(1) == 0
    assert len(log) == 5 and list(log) == ["c", "d", "e"]
    assert log[2:] == ["c", "d", "e"] and log[3:4] == ["d"] and log[-1] == "e"
    assert log[5:] == [] and log[2:99] == ["c", "d", "e"]
    log += "f"
    log.append("g")
    assert len(log) == 7 and log[6] == "g"
    for forgotten in (lambda: log[1:], lambda: log[0], lambda: log[:3]):
        with pytest.raises(IndexError, match="was forgotten"):
            forgotten()
    with pytest.raises(IndexError, match="past the end"):
        log[7]
    assert pickle.loads(pickle.dumps(log))[2:] == list("cdefg")
