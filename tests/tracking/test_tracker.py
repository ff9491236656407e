"""End-to-end tracker behaviour on simulated camera frames of the "small" store."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from walkout.events import WRISTS, Alert, KeypointFrame, Track
from walkout.sim.cameras import PersonPath, render_keypoints
from walkout.store import load_store
from walkout.store.model import Store
from walkout.tracking import Tracker, TrackerConfig


@pytest.fixture(scope="module")
def store() -> Store:
    return load_store("small")


def run(
    store: Store, frames: list[KeypointFrame], chunk: int | None = None
) -> tuple[Tracker, list[Alert]]:
    tr = Tracker(store)
    alerts: list[Alert] = []
    if chunk is None:
        alerts += tr.process(frames)
    else:
        for i in range(0, len(frames), chunk):
            alerts += tr.process(frames[i : i + chunk])
    alerts += tr.finish()
    return tr, alerts


def hip_xy(joints: np.ndarray) -> np.ndarray:
    """(n, 2) hip centre, falling back to any joint where the hips were not seen."""
    with warnings.catch_warnings():  # all-NaN rows are expected and give NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        h = np.nanmean(joints[:, 11:13, :2], axis=1)
        any_ = np.nanmean(joints[..., :2], axis=1)
    return np.where(np.isnan(h), any_, h)


def match(tracks: list[Track], people: list[PersonPath]) -> dict[int, list[int]]:
    """Per person, the track matched at each slot (Hungarian on hip distance < 0.5 m)."""
    times = np.unique(np.concatenate([t.t for t in tracks]))
    seq: dict[int, list[int]] = {p.person_id: [] for p in people}
    for t in times:
        tr = [(k, i) for k in tracks for i in np.flatnonzero(np.isclose(k.t, t))]
        gt = [(p, p.at(np.array([t]))) for p in people]
        gt = [(p, j[0]) for p, (j, pres) in gt if pres[0]]
        if not tr or not gt:
            continue
        C = np.array(
            [
                [np.linalg.norm(hip_xy(k.joints[i : i + 1])[0] - hip_xy(j[None])[0]) for k, i in tr]
                for _, j in gt
            ]
        )
        for r, c in zip(*linear_sum_assignment(C), strict=True):
            if C[r, c] < 0.5:
                seq[gt[r][0].person_id].append(tr[c][0].track_id)
    return seq


@pytest.fixture(scope="module")
def two_shoppers(store: Store, walker) -> tuple[list[PersonPath], list[KeypointFrame], float]:
    """A enters, walks aisle y≈5.3 east and leaves; B enters, loops round, walks the same aisle
    west (passing A 0.6 m apart while picking from a shelf) and leaves by the middle corridor."""
    walk, Pick = walker.walk, walker.Pick
    a = walk(0, [(1.5, 0.3), (1.5, 5.3), (8.5, 5.3), (8.5, 0.4)], t0=0.0, speed=0.8)
    b = walk(
        1,
        [
            (1.1, 0.3),
            (1.1, 2.4),
            (8.8, 2.4),
            (8.8, 5.75),
            (6.8, 5.9),
            (5.0, 5.9),
            (5.0, 2.4),
            (8.2, 2.4),
            (8.2, 0.4),
        ],
        t0=1.0,
        speed=1.3,
        stops=[(4, 2.0)],
        picks=[Pick(12.9, 1.5, (6.8, 6.6, 1.1))],
    )
    people = [a, b]
    duration = max(p.t[-1] for p in people) + 3.0
    frames = render_keypoints(store, people, duration, np.random.default_rng(11))
    return people, frames, duration


def test_two_shoppers_keep_identities(store: Store, two_shoppers) -> None:
    people, frames, _ = two_shoppers
    tr, alerts = run(store, frames)
    tracks = tr.tracks
    assert [t.track_id for t in tracks] == [1, 2]
    assert alerts == []
    assert all(t.born_at == "entry" and t.ended_at == "exit" for t in tracks)
    seq = match(tracks, people)
    for pid, ids in seq.items():
        assert len(set(ids)) == 1, f"person {pid} switched tracks: {sorted(set(ids))}"
        present = people[pid].t[-1] - people[pid].t[0]
        assert len(ids) > 0.9 * present * 15  # matched nearly every slot (MOTA-like count)
    assert seq[0][0] != seq[1][0]
    # Wrist accuracy, the quantity attribution depends on.
    errs = []
    for t in tracks:
        pid = next(p for p, ids in seq.items() if ids[0] == t.track_id)
        j, _ = people[pid].at(t.t)
        errs.append(np.linalg.norm(t.joints[:, WRISTS] - j[:, WRISTS], axis=2).ravel())
    e = np.concatenate(errs)
    e = e[~np.isnan(e)]
    assert np.median(e) <= 0.05
    assert np.percentile(e, 90) <= 0.12
    # Sigma is in metres and of the right order.
    s = np.concatenate([t.sigma[~np.isnan(t.sigma)] for t in tracks])
    assert 0.003 < np.median(s) < 0.08


def test_chunking_gives_identical_tracks(store: Store, two_shoppers) -> None:
    _, frames, _ = two_shoppers
    frames = frames[: len(frames) // 2]
    ref, ref_alerts = run(store, frames)
    for chunk in (1, 7, 500):
        tr, alerts = run(store, frames, chunk)
        assert alerts == ref_alerts
        assert len(tr.tracks) == len(ref.tracks)
        for a, b in zip(ref.tracks, tr.tracks, strict=True):
            assert (a.track_id, a.born_at, a.ended_at) == (b.track_id, b.born_at, b.ended_at)
            assert np.array_equal(a.t, b.t)
            assert np.array_equal(a.joints, b.joints, equal_nan=True)
            assert np.array_equal(a.sigma, b.sigma, equal_nan=True)


def test_person_appearing_mid_store_is_unbound(store: Store, walker) -> None:
    ghost = walker.walk(0, [(3.0, 5.4), (7.0, 5.4)], t0=1.0, speed=0.8)
    frames = render_keypoints(store, [ghost], 8.0, np.random.default_rng(3))
    tr, alerts = run(store, frames)
    assert tr.tracks == []
    assert [a.kind for a in alerts] == ["unbound_person"]
    assert 1.0 < alerts[0].t < 2.0


def test_person_vanishing_mid_store_loses_identity(store: Store, walker) -> None:
    p = walker.walk(0, [(1.5, 0.3), (1.5, 5.4), (4.0, 5.4)], t0=0.0, speed=1.0)
    t_gone = float(p.t[-1])
    frames = render_keypoints(store, [p], t_gone + 4.0, np.random.default_rng(4))
    tr, alerts = run(store, frames)
    (track,) = tr.tracks
    assert track.born_at == "entry" and track.ended_at is None
    assert [(a.kind, a.subject) for a in alerts] == [("identity_lost", str(track.track_id))]
    timeout = TrackerConfig().lost_timeout_s
    assert t_gone + timeout <= alerts[0].t <= t_gone + timeout + 0.3


def test_leaving_through_the_exit_ends_quietly(store: Store, walker) -> None:
    p = walker.walk(0, [(1.5, 0.3), (1.5, 2.5), (8.5, 2.5), (8.5, 0.3)], t0=0.0, speed=1.2)
    frames = render_keypoints(store, [p], float(p.t[-1]) + 3.0, np.random.default_rng(5))
    tr, alerts = run(store, frames)
    assert alerts == []
    (track,) = tr.tracks
    assert (track.born_at, track.ended_at) == ("entry", "exit")


def test_config_rejects_gates_above_the_cost_cap() -> None:
    with pytest.raises(ValueError, match="assoc_cap_m"):
        TrackerConfig(assoc_gate_m=2.0)
    with pytest.raises(ValueError):
        TrackerConfig(unknown=1)  # type: ignore[call-arg]
