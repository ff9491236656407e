"""One-euro joint smoother: jitter removed at rest, little lag in fast motion, gaps handled."""

from __future__ import annotations

import numpy as np
import pytest

from walkout.tracking.smoothing import JointSmoother, OneEuroConfig


def _run(sm: JointSmoother, xs: np.ndarray, tid: int = 7) -> np.ndarray:
    return np.stack([sm.step([(tid, x)])[0] for x in xs])


def test_jitter_at_rest_is_reduced() -> None:
    rng = np.random.default_rng(0)
    true = np.array([[1.0, 2.0, 1.5]])
    xs = true + rng.normal(0.0, 0.02, (200, 1, 3))  # 2 cm triangulation jitter
    out = _run(JointSmoother(), xs)
    raw = np.linalg.norm(xs[50:] - true, axis=-1).mean()
    filt = np.linalg.norm(out[50:] - true, axis=-1).mean()
    assert filt < 0.5 * raw


def test_fast_motion_lags_less_than_a_fixed_filter() -> None:
    rate = 25.0
    t = np.arange(100) / rate
    xs = np.zeros((100, 1, 3))
    xs[:, 0, 0] = 1.5 * t  # a hand moving at 1.5 m/s
    adaptive = _run(JointSmoother(OneEuroConfig(rate_hz=rate)), xs)
    fixed = _run(JointSmoother(OneEuroConfig(rate_hz=rate, beta=0.0)), xs)
    lag_a = np.abs(adaptive[50:, 0, 0] - xs[50:, 0, 0]).mean()
    lag_f = np.abs(fixed[50:, 0, 0] - xs[50:, 0, 0]).mean()
    assert lag_a < 0.6 * lag_f
    assert lag_a < 0.12  # within a PCP tolerance of a forearm (~0.25 m)


def test_missing_joints_and_tracks() -> None:
    sm = JointSmoother(OneEuroConfig(forget_frames=2))
    a = np.array([[0.0, 0.0, 1.0], [np.nan, np.nan, np.nan]])
    out = sm.step([(1, a)])[0]
    assert np.array_equal(out[0], a[0]) and np.isnan(out[1]).all()
    # a joint seen for the first time starts from its measurement; a missing one stays NaN
    b = np.array([[np.nan, np.nan, np.nan], [5.0, 5.0, 5.0]])
    out = sm.step([(1, b)])[0]
    assert np.isnan(out[0]).all() and np.array_equal(out[1], b[1])
    # the first joint's state survived the gap: smoothed towards the new value, not reset
    c = np.array([[1.0, 0.0, 1.0], [5.0, 5.0, 5.0]])
    out = sm.step([(1, c)])[0]
    assert 0.0 < out[0, 0] < 1.0
    # several tracks in one frame are independent
    o1, o2 = sm.step([(1, c), (2, a)])
    assert np.array_equal(o2[0], a[0]) and o1[0, 0] > 0.0
    # a track unseen longer than forget_frames restarts from its measurement
    for _ in range(3):
        sm.step([])
    far = np.array([[9.0, 9.0, 9.0], [9.0, 9.0, 9.0]])
    assert np.array_equal(sm.step([(1, far)])[0], far)


@pytest.mark.parametrize(
    "kwargs", [{"rate_hz": 0.0}, {"min_cutoff_hz": -1.0}, {"beta": -0.1}, {"d_cutoff_hz": 0.0}]
)
def test_bad_settings_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        OneEuroConfig(**kwargs)
