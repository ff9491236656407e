"""A track forgets its old samples (a store runs for days) but keeps its birth and last sighting."""

from __future__ import annotations

import numpy as np

from walkout.tracking.tracker import N_JOINTS, _History


def _history(n: int) -> _History:
    h = _History()
    for i in range(n):
        h.append(float(i), np.full((N_JOINTS, 3), float(i)), np.full(N_JOINTS, float(i)))
    return h


def test_old_samples_go_the_first_and_the_recent_ones_stay() -> None:
    h = _history(2000)
    old_t = h.view()[0]
    assert h.forget_before(1500.0, min_drop=256)
    t, X, S = h.view()
    assert t[0] == 0.0 and t[1] == 1500.0 and t[-1] == 1999.0 and t.shape[0] == 501
    assert (X[:, 0, 0] == t).all() and (S[:, 0] == t).all()
    assert old_t.shape[0] == 2000 and old_t[1] == 1.0  # a view handed out earlier is unchanged
    h.append(2000.0, np.zeros((N_JOINTS, 3)), np.zeros(N_JOINTS))
    assert h.view()[0][-1] == 2000.0 and h.n == 502


def test_the_last_sample_stays_when_the_whole_past_is_old() -> None:
    h = _history(1000)
    assert h.forget_before(5000.0, min_drop=256)
    assert h.view()[0].tolist() == [0.0, 999.0]


def test_nothing_is_copied_for_a_few_samples_or_more_kept_than_freed() -> None:
    h = _history(300)
    assert not h.forget_before(100.0, min_drop=256)  # 99 would go: fewer than min_drop
    assert not h.forget_before(120.0, min_drop=10)  # 119 would go, 181 stay: not worth a copy
    assert h.n == 300 and h.view()[0][1] == 1.0
    assert h.forget_before(200.0, min_drop=10)  # 199 go, 101 stay
    assert h.n == 101


def test_a_track_whose_whole_past_is_old_keeps_two_samples_however_short() -> None:
    """A visitor who left keeps their first and last sample only, not ``min_drop`` of them:
    a store open round the clock would otherwise grow by every past visit."""
    h = _history(100)
    assert h.forget_before(500.0, min_drop=256)
    assert h.view()[0].tolist() == [0.0, 99.0]
    assert not h.forget_before(600.0, min_drop=256)  # nothing left to forget
    assert not _history(2).forget_before(10.0) and not _history(1).forget_before(10.0)
