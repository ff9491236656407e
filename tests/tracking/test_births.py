"""One newcomer, one track: views of one person split into two clusters must not birth two."""

from __future__ import annotations

import numpy as np

from walkout.events import L_HIP, N_JOINTS, R_HIP
from walkout.tracking.tracker import _distinct


def _skeleton(hip_xy: tuple[float, float], seen: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.full((N_JOINTS, 3), np.nan)
    X[:seen] = [hip_xy[0], hip_xy[1], 1.0]
    X[[L_HIP, R_HIP]] = [hip_xy[0], hip_xy[1], 0.9]
    return X, np.ones((N_JOINTS, 3)), np.array(hip_xy)


def test_two_clusters_of_one_person_give_the_better_seen_skeleton() -> None:
    a = _skeleton((1.46, 0.26), 13)
    b = _skeleton((1.43, 0.24), 17)  # 3.6 cm away, more joints seen
    kept = _distinct([a, b], radius=0.3)
    assert len(kept) == 1 and kept[0] is b


def test_people_apart_are_all_kept_in_their_order() -> None:
    found = [_skeleton((1.0, 0.3), 17), _skeleton((2.0, 0.3), 12), _skeleton((1.0, 1.0), 15)]
    assert _distinct(found, radius=0.3) == found
