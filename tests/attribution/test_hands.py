"""Attribution by wrist distance to the plate over the event window."""

from __future__ import annotations

import numpy as np

from walkout.attribution import attribute, box_distance
from walkout.events import L_WRIST, R_ELBOW, R_SHOULDER, R_WRIST, Hypothesis, ShelfEvent, Track

BOX = np.array([[[0.0, 0.0, 1.0], [0.6, 0.45, 1.35]]])


def _event() -> ShelfEvent:
    return ShelfEvent("p-1", 10.0, 11.0, ("P",), -300.0, (Hypothesis((("x", 1),), 0.0, 1.0),))


def _track(tid: int, wrist_xyz: tuple[float, float, float], head_xy=(0.3, -0.4)) -> Track:
    t = np.arange(8.0, 13.0, 0.1)
    j = np.full((len(t), 17, 3), np.nan)
    j[:, 0] = (*head_xy, 1.7)
    j[:, R_WRIST] = (0.3, -0.5, 0.9)
    inside = (t > 10.2) & (t < 10.8)
    j[inside, R_WRIST] = wrist_xyz
    j[:, L_WRIST] = (0.1, -0.5, 0.9)
    return Track(tid, t, j, np.full((len(t), 17), 0.02))


def test_box_distance() -> None:
    pts = np.array([[0.3, 0.2, 1.1], [0.3, -0.3, 1.1], [0.9, 0.2, 1.5]])
    d = box_distance(pts, BOX)
    assert d[0] == 0.0
    assert np.isclose(d[1], 0.3)
    assert np.isclose(d[2], np.hypot(0.3, 0.15))


def test_hand_in_plate_wins_over_nearer_head() -> None:
    reacher = _track(1, (0.3, 0.1, 1.1), head_xy=(0.3, -0.8))
    bystander = _track(2, (0.3, -0.45, 1.0), head_xy=(0.3, -0.3))  # head nearer, hand out
    a = attribute(_event(), {"s1": [reacher], "s2": [bystander]}, BOX)
    assert a.session_id == "s1" and a.confidence > 0.9 and not a.needs_review
    assert [s for s, _ in a.scores] == ["s1", "s2"]


def test_two_hands_in_the_plate_go_to_review() -> None:
    a = attribute(
        _event(), {"s1": [_track(1, (0.2, 0.1, 1.1))], "s2": [_track(2, (0.4, 0.1, 1.1))]}, BOX
    )
    assert a.needs_review and a.confidence < 0.9


def test_nobody_near_means_no_session() -> None:
    far = _track(1, (3.0, -2.0, 1.0))
    a = attribute(_event(), {"s1": [far]}, BOX)
    assert a.session_id is None and a.needs_review
    assert attribute(_event(), {}, BOX).session_id is None


def _arm_track(tid: int, elbow: tuple[float, float, float], x: float = 0.3) -> Track:
    """A shopper 0.35 m in front of the plate whose right hand is unseen from 9.8 to 11.2 s
    (deep in the shelf, or hanging hidden), shoulder seen throughout, elbow at ``elbow``."""
    t = np.arange(8.0, 13.0, 0.1)
    j = np.full((len(t), 17, 3), np.nan)
    j[:, 0] = (x, -0.4, 1.7)
    j[:, R_SHOULDER] = (x, -0.35, 1.35)
    j[:, R_ELBOW] = (x, -0.35, 1.05)
    j[:, R_WRIST] = (x, -0.35, 0.8)
    j[:, L_WRIST] = (x - 0.3, -0.4, 0.85)
    hidden = (t > 9.8) & (t < 11.2)
    j[hidden, R_ELBOW] = elbow
    j[hidden, R_WRIST] = np.nan
    return Track(tid, t, j, np.full((len(t), 17), 0.02))


def test_a_hand_hidden_in_the_shelf_is_found_along_the_arm() -> None:
    reaching = _arm_track(1, (0.3, -0.08, 1.3))  # upper arm level, pointing into the plate
    hanging = _arm_track(2, (1.2, -0.35, 1.05), x=1.2)  # beside it, arm down
    a = attribute(_event(), {"s1": [reaching], "s2": [hanging]}, BOX)
    assert a.session_id == "s1" and a.by_arm and a.confidence > 0.9 and not a.needs_review
    # the seen distances are kept as they were measured: no seen wrist came near
    assert dict(a.reach_m)["s1"] > 0.3


def test_a_seen_hand_in_the_plate_outranks_an_arm_pointing_at_it() -> None:
    seen = _track(1, (0.3, 0.1, 1.1), head_xy=(0.3, -0.8))
    pointing = _arm_track(2, (0.3, -0.08, 1.3))
    a = attribute(_event(), {"s1": [seen], "s2": [pointing]}, BOX)
    assert a.session_id == "s1" and not a.by_arm and not a.needs_review


def test_a_hidden_hand_on_a_lowered_arm_is_still_nobody() -> None:
    a = attribute(_event(), {"s1": [_arm_track(1, (0.3, -0.33, 1.05))]}, BOX)
    assert a.session_id is None and a.needs_review and not a.by_arm
