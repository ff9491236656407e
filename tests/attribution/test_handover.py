"""Hand-overs: wrists of two payers meeting away from every shelf, and the store's policy."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from walkout.attribution.handover import HandOverPolicy, find_meetings
from walkout.bench.accuracy import run_accuracy
from walkout.engine import Engine, EngineConfig
from walkout.events import L_HIP, L_WRIST, R_HIP, R_WRIST, Track
from walkout.review.cases import Verdict
from walkout.sources.recording import Sensors
from walkout.store import load_store

SHELF = np.array([[[0.0, 0.0, 0.0], [2.0, 0.5, 1.8]]])  # one gondola along y = 0..0.5


def _person(tid: int, x: float, y: float, wrist: tuple[float, float, float] | None) -> Track:
    """Standing at (x, y) from t = 0 to 4 s; the right wrist at ``wrist`` for 1.5-2.5 s."""
    t = np.arange(0.0, 4.0, 1 / 15)
    j = np.full((len(t), 17, 3), np.nan)
    j[:, L_HIP] = (x - 0.1, y, 0.9)
    j[:, R_HIP] = (x + 0.1, y, 0.9)
    j[:, L_WRIST] = (x - 0.25, y, 0.8)
    j[:, R_WRIST] = (x + 0.25, y, 0.8)
    if wrist is not None:
        j[(t > 1.5) & (t < 2.5), R_WRIST] = wrist
    return Track(tid, t, j, np.full((len(t), 17), 0.02))


def test_wrists_meeting_in_open_floor_are_a_meeting() -> None:
    a = _person(1, 4.0, 3.0, (4.4, 3.0, 0.95))
    b = _person(2, 4.8, 3.0, (4.43, 3.0, 0.95))
    (m,) = find_meetings({"s1": [a], "s2": [b]}, SHELF, 0.0, 4.0)
    assert m.sessions == ("s1", "s2") and 1.5 < m.t < 2.5 and m.distance_m < 0.05


def test_no_meeting_at_a_shelf_when_apart_or_too_brief() -> None:
    # two hands side by side in front of the shelf: reaching, not handing over
    a = _person(1, 0.8, 0.9, (1.0, 0.55, 1.0))
    b = _person(2, 1.6, 0.9, (1.05, 0.56, 1.0))
    assert find_meetings({"s1": [a], "s2": [b]}, SHELF, 0.0, 4.0) == []
    # in open floor but 30 cm apart
    c = _person(3, 4.0, 3.0, (4.4, 3.0, 0.95))
    d = _person(4, 4.8, 3.0, (4.7, 3.0, 0.95))
    assert find_meetings({"s3": [c], "s4": [d]}, SHELF, 0.0, 4.0) == []
    # one session's own tracks never meet each other (a group pays once)
    assert find_meetings({"s1": [a, b]}, SHELF, 0.0, 4.0) == []


def test_meeting_found_in_a_crowd_and_long_arms_reach_across_the_near_limit() -> None:
    """Pairs whose hips never came within 1.5 m are skipped unseen; that skips nobody who
    could meet: a meeting among 30 other people is found, and so is one between two people
    whose hips stay 1.45 m apart (long arms; the limit is on hips, not wrists)."""
    crowd = {f"c{i:02d}": [_person(10 + i, 6.0 + 2.0 * (i % 6), 6.0 + 2.0 * (i // 6), None)]
             for i in range(30)}
    a = _person(1, 4.0, 3.0, (4.4, 3.0, 0.95))
    b = _person(2, 4.8, 3.0, (4.43, 3.0, 0.95))
    (m,) = find_meetings({**crowd, "s1": [a], "s2": [b]}, SHELF, 0.0, 4.0)
    assert m.sessions == ("s1", "s2")
    c = _person(3, 4.0, 3.0, (4.72, 3.0, 0.95))
    d = _person(4, 5.45, 3.0, (4.75, 3.0, 0.95))
    (m,) = find_meetings({"s3": [c], "s4": [d]}, SHELF, 0.0, 4.0, meet_m=0.12)
    assert m.sessions == ("s3", "s4")
    e = _person(5, 5.55, 3.0, (4.75, 3.0, 0.95))  # hips 1.55 m apart: not close enough
    assert find_meetings({"s3": [c], "s5": [e]}, SHELF, 0.0, 4.0) == []


@pytest.mark.parametrize("policy", [HandOverPolicy.TAKER, HandOverPolicy.RECEIVER])
def test_hand_over_scenario_under_each_policy(policy: HandOverPolicy) -> None:
    """Within a group nothing is reported; between strangers the meeting is alerted, and the
    item is charged to the taker (default) or moved to the receiver for review."""
    config = EngineConfig(handover_policy=policy)
    _, session, result = run_accuracy(load_store("small"), 0, 1, scenarios=["hand-over"],
                                      config=config)
    stranger = [h for h in session.truth.handovers if h.giver != h.receiver]
    (h,) = stranger
    alerts = [a for a in result.alerts if a.kind == "hand_over"]
    assert len(alerts) == 1 and policy.value in alerts[0].message
    got = {r.credential: Counter(r.counts()) for r in result.receipts}
    if policy == HandOverPolicy.TAKER:
        assert got[h.giver] == Counter({h.product_id: 1}) and got[h.receiver] == Counter()
        assert not any(r.needs_review for r in result.receipts)
    else:
        assert got[h.giver] == Counter() and got[h.receiver] == Counter({h.product_id: 1})
        by_cred = {r.credential: r for r in result.receipts}
        assert by_cred[h.giver].needs_review and by_cred[h.receiver].needs_review


def test_a_hand_over_moved_to_the_receiver_is_a_review_case_the_verdict_settles() -> None:
    """Receiver policy: the moved item is inferred, so both receipts wait for review. That
    review must exist as a case naming both shoppers (before, the receipts were marked under
    review with no case to settle them: they stayed under review for good), and its verdict
    says who pays for the item that passed."""
    store = load_store("small")
    config = EngineConfig(handover_policy=HandOverPolicy.RECEIVER)
    _, session, _ = run_accuracy(store, 0, 1, scenarios=["hand-over"], config=config)
    (h,) = [h for h in session.truth.handovers if h.giver != h.receiver]
    eng = Engine(store, config)
    res = eng.run(Sensors.from_session(session))
    sid = {s.credential: k for k, s in res.sessions.items()}
    giver, receiver = sid[h.giver], sid[h.receiver]
    (case,) = [c for c in res.cases.values() if c.case_id.startswith("hand-over-")]
    assert case.open and set(case.sessions) == {giver, receiver}
    assert case.decided == {receiver: ((h.product_id, 1),)}
    eng.resolve(case.case_id, Verdict({giver: ((h.product_id, 1),)}))  # the giver kept it
    by_cred = {r.credential: r for r in eng.result().receipts}  # the latest issue of each
    assert Counter(by_cred[h.giver].counts()) == Counter({h.product_id: 1})
    assert Counter(by_cred[h.receiver].counts()) == Counter()
    assert not by_cred[h.giver].needs_review and not by_cred[h.receiver].needs_review
