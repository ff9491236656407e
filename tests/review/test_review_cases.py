"""Review cases end to end: evidence collected, receipts held, verdicts applied as corrections."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from walkout.attribution import AttributionConfig
from walkout.engine import Engine, EngineConfig
from walkout.events import PlateBlock
from walkout.review import Verdict, corrections
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store


def test_corrections_are_the_difference_to_the_verdict() -> None:
    decided = {"s1": (("A", 1),), "s2": (("A", 1),)}
    assert corrections(decided, Verdict({"s1": (("A", 2),)})) == {"s1": {"A": 1}, "s2": {"A": -1}}
    assert corrections(decided, Verdict(dict(decided))) == {}
    assert corrections(decided, Verdict({})) == {"s1": {"A": -1}, "s2": {"A": -1}}


@pytest.fixture(scope="module")
def reviewed() -> tuple[Engine, object]:
    """Two shoppers' hands in one plate at the same moment (seed 1): a case to review for a
    store that reviews every hand it is not certain of (by default each hand in the plate
    took one of the two items and nothing is reviewed: tests/review/test_hard_attribution.py)."""
    store = load_store("small")
    session = simulate(store, 0, 1, scenarios=["same-plate-same-moment"])
    engine = Engine(store, EngineConfig(review_hold_s=1e9,
                                        attribution=AttributionConfig(review_below=1.0)))
    sensors = Sensors.from_session(session)
    chunk = engine.config.chunk_s
    frame_t = np.array([f.t for f in sensors.frames])
    for a in np.arange(0.0, sensors.duration_s + chunk, chunk):
        b = a + chunk
        i0, i1 = np.searchsorted(sensors.plates.t, [a, b])
        f0, f1 = np.searchsorted(frame_t, [a, b])
        gates = [g for g in sensors.gates if a <= g.t < b]
        block = PlateBlock(sensors.plates.t[i0:i1], sensors.plates.grams[i0:i1],
                           sensors.plates.plate_ids)
        engine.step(block, sensors.frames[f0:f1], gates, float(b))
    return engine, session


def test_uncertain_event_opens_a_case_with_its_evidence(reviewed: tuple[Engine, object]) -> None:
    engine, _ = reviewed
    assert len(engine.cases) == 1
    case = next(iter(engine.cases.values()))
    assert case.open and case.reasons and "uncertain" in case.reasons[0]
    ev = case.event
    w = case.evidence.weights
    assert w is not None and w.plate_ids == ev.plate_ids
    assert w.t[0] <= ev.t_start and w.t[-1] >= ev.t_end  # the whole change is in the trace
    drop = float(np.median(w.grams[-30:, 0]) - np.median(w.grams[:30, 0]))
    assert drop == pytest.approx(ev.delta_g, abs=15.0)
    assert case.evidence.hypotheses == ev.hypotheses
    assert len(case.evidence.hands) == 2  # both shoppers' wrists over the window
    assert {h.session_id for h in case.evidence.hands} == set(case.sessions)
    # both exited long ago, but their receipts wait for the verdict
    assert {s.session_id for _, s in engine._exits} == set(case.sessions)
    assert engine.receipts == {}


def test_verdict_corrects_the_ledger_and_releases_the_receipts(
    reviewed: tuple[Engine, object],
) -> None:
    engine, session = reviewed
    case = next(iter(engine.cases.values()))
    cred = {s.session_id: s.credential for s in engine.book.sessions.values()}
    truth = session.truth.receipts  # type: ignore[attr-defined]
    # the reviewer watched the video: each shopper took what the simulator says they took
    shares = {
        sid: tuple(sorted(truth[cred[sid]].items())) for sid in case.sessions
    }
    before = len(engine.ledger.entries())
    engine.resolve(case.case_id, Verdict(shares, reviewer="op1"))
    assert not case.open
    fixes = engine.ledger.entries()[before:]
    assert all(e.provenance == (case.case_id, "review:op1") for e in fixes)
    got = {cred[sid]: Counter(r.counts()) for sid, r in engine.receipts.items()}
    assert got == {c: Counter(v) for c, v in truth.items()}
    assert all(not r.needs_review for r in engine.receipts.values())
    with pytest.raises(ValueError, match="already resolved"):
        engine.resolve(case.case_id, Verdict(shares))
    with pytest.raises(KeyError):
        engine.resolve("nope", Verdict({}))


def test_wrong_planogram_entry_is_reviewed_with_an_alert_not_charged_silently() -> None:
    """A product stocked where the planogram does not list it: the pick is unexplained by the
    plate's products, so it goes to review with catalogue candidates and the operator is told."""
    from walkout.bench.accuracy import run_accuracy

    _, session, result = run_accuracy(load_store("small"), 0, 1,
                                      scenarios=["wrong-planogram-entry"])
    (true_ev,) = session.truth.events
    kinds = [a.kind for a in result.alerts]
    assert kinds.count("planogram_mismatch") == 1
    (case,) = result.cases.values()
    assert "no product listed for this plate fits the weight" in case.reasons
    assert case.event.unlisted
    assert true_ev.product_id in {p for h in case.evidence.hypotheses for p, _ in h.items}
    (receipt,) = result.receipts
    assert receipt.lines == ()  # a catalogue-wide guess is never charged before review
    assert receipt.needs_review
    assert case.decided == {} and case.sessions == (receipt.session_id,)
