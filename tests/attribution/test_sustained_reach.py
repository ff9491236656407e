"""Attribution by the hand that stayed in the plate, not the one that brushed it."""

from __future__ import annotations

import numpy as np

from walkout.attribution import AttributionConfig, attribute
from walkout.attribution.hands import box_distance, reach_log_likelihood, sustained_distance
from walkout.events import L_WRIST, R_WRIST, WRISTS, Hypothesis, ShelfEvent, Track

BOX = np.array([[[0.0, 0.0, 1.0], [0.6, 0.45, 1.35]]])  # the plate's volume
INSIDE = (0.3, 0.2, 1.1)
RATE = 30.0


def _event() -> ShelfEvent:
    return ShelfEvent("p-1", 10.0, 11.0, ("P",), -300.0, (Hypothesis((("x", 1),), 0.0, 1.0),))


def _track(tid: int, wrist: dict[tuple[float, float], tuple[float, float, float]],
           rest=(0.3, -0.5, 0.9)) -> Track:
    """A shopper whose right wrist rests at ``rest`` except over the given time spans."""
    t = np.arange(8.0, 13.0, 1 / RATE)
    j = np.full((len(t), 17, 3), np.nan)
    j[:, 0] = (rest[0], -0.6, 1.7)
    j[:, R_WRIST] = rest
    j[:, L_WRIST] = (rest[0] - 0.2, -0.5, 0.9)
    for (a, b), xyz in wrist.items():
        j[(t >= a) & (t < b), R_WRIST] = xyz
    return Track(tid, t, j, np.full((len(t), 17), 0.02))


def test_a_brush_through_the_plate_loses_to_the_hand_held_in_it() -> None:
    """Crossing hands: B's wrist crosses the plate for 0.1 s on its way to the next one, A's
    stays in it for 0.8 s. Both came within 0 m of it; only A held something there."""
    a = _track(1, {(10.1, 10.9): INSIDE})
    b = _track(2, {(10.3, 10.4): (0.5, 0.2, 1.1), (10.4, 11.2): (0.8, 0.2, 1.1)}, (0.9, -0.5, 0.9))
    att = attribute(_event(), {"sa": [a], "sb": [b]}, BOX)
    assert att.session_id == "sa" and not att.needs_review and att.confidence > 0.99
    assert dict(att.reach_m)["sa"] == 0.0 and dict(att.reach_m)["sb"] > 0.1


def test_a_one_frame_tracker_glitch_is_not_a_reach() -> None:
    glitch = _track(2, {(10.5, 10.5 + 1 / RATE): INSIDE, (9.0, 12.0): (0.3, -0.12, 1.1)})
    glitch.joints[np.searchsorted(glitch.t, 10.5), R_WRIST] = INSIDE  # one frame inside
    taker = _track(1, {(10.2, 10.8): INSIDE})
    att = attribute(_event(), {"s1": [taker], "s2": [glitch]}, BOX)
    assert att.session_id == "s1" and not att.needs_review


def test_a_neighbour_hovering_at_the_edge_is_still_a_doubt() -> None:
    """A wrist 6 cm outside the plate for the whole event is clearly not the one in it; 2 cm
    outside is within the tracker's error of being in it: review."""
    taker = _track(1, {(10.2, 10.8): INSIDE})
    for gap, decided in ((0.06, True), (0.02, False)):
        near = _track(2, {(9.5, 11.5): (0.3, -gap, 1.1)})
        att = attribute(_event(), {"s1": [taker], "s2": [near]}, BOX)
        assert att.session_id == "s1"
        assert att.needs_review is not decided, gap


def test_sustained_reach_sees_through_occlusion() -> None:
    """Frames where no wrist is seen are skipped, not counted as far or near."""
    tr = _track(1, {(10.2, 10.8): INSIDE})
    tr.joints[::2, [L_WRIST, R_WRIST]] = np.nan  # every other frame unseen
    assert sustained_distance(tr, BOX, 9.4, 11.6, 0.4) == 0.0
    tr.joints[:, [L_WRIST, R_WRIST]] = np.nan
    assert sustained_distance(tr, BOX, 9.4, 11.6, 0.4) == float("inf")


def test_the_hand_in_the_plate_is_not_stood_in_for_by_the_other_hand() -> None:
    """Two shoppers side by side at one plate, each with one hand in it: B's hand in the plate
    is unseen in every third frame (A's arm in front of it) while B's other hand hangs 0.6 m
    away. Those frames are skipped for that hand, not filled with the far one: B held it."""
    a = _track(1, {(9.8, 11.2): INSIDE})
    b = _track(2, {}, (1.2, -0.5, 0.9))
    b.joints[(b.t >= 9.8) & (b.t < 11.2), L_WRIST] = (0.5, 0.3, 1.2)  # in the plate
    b.joints[::3, L_WRIST] = np.nan
    assert sustained_distance(b, BOX, 9.4, 11.6, 0.4) == 0.0
    att = attribute(_event(), {"sa": [a], "sb": [b]}, BOX)
    assert dict(att.reach_m) == {"sa": 0.0, "sb": 0.0} and att.needs_review


def test_reach_likelihood_has_a_heavy_tail() -> None:
    """Two far hands (20 and 25 cm: both mis-seen, or nobody's) are not told apart with
    confidence; near the plate the tracker's 2 cm error decides."""
    cfg = AttributionConfig()
    far = np.diff(reach_log_likelihood(np.array([0.25, 0.20]), cfg))[0]
    near = np.diff(reach_log_likelihood(np.array([0.08, 0.0]), cfg))[0]
    assert 0 < far < 2.0 and near > 3.0
    nobody = reach_log_likelihood(cfg.nobody_distance_m, cfg)
    assert reach_log_likelihood(0.3, cfg) > nobody > reach_log_likelihood(0.4, cfg)


def _numpy_sustained(track: Track, boxes: np.ndarray, t0: float, t1: float,
                     hold_s: float) -> float:
    """The sustained reach written with numpy (the compiled form must give the same bits)."""
    t_all, joints = track.window(t0, t1)
    out = float("inf")
    for w in WRISTS:
        d = box_distance(joints[:, w].astype(np.float64), boxes)
        seen = np.isfinite(d)
        if not seen.any():
            continue
        t, d = t_all[seen], d[seen]
        csum = np.concatenate(([0.0], np.cumsum(d)))
        i = np.arange(len(t))
        j = np.searchsorted(t, t + hold_s, side="right")
        n = j - i
        out = min(out, float(((csum[j] - csum[i]) / n)[n >= max(1, int(n.max()) // 2)].min()))
    return out


def test_compiled_sustained_reach_equals_the_numpy_form() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(1, 60))
        t = np.sort(rng.uniform(0, 3, n))
        joints = rng.normal([1.0, 0.5, 1.0], 0.3, (n, 17, 3))
        joints[rng.random((n, 17)) < 0.3] = np.nan  # unseen wrists, whole frames unseen
        boxes = np.sort(rng.uniform(0, 2, (int(rng.integers(1, 4)), 2, 3)), axis=1)
        tr = Track(1, t, joints, np.zeros((n, 17)))
        got = sustained_distance(tr, boxes, 0.5, 2.5, 0.4)
        want = _numpy_sustained(tr, boxes, 0.5, 2.5, 0.4)
        assert got == want or (np.isinf(got) and np.isinf(want))
