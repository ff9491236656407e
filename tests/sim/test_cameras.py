"""The camera sensor model: timing, projection, occlusion, misses and false detections."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from walkout.events import L_ANKLE, R_ANKLE
from walkout.sim.cameras import STANDING_SKELETON, CameraSimConfig, PersonPath, render_keypoints
from walkout.store import load_store
from walkout.store.model import Store

CLEAN = CameraSimConfig(
    pixel_noise_px=0.0,
    joint_miss_rate=0.0,
    person_miss_rate=0.0,
    false_detections_per_frame=0.0,
    occluded_keep_rate=0.0,
    timestamp_jitter_ms=0.0,
)


@pytest.fixture(scope="module")
def store() -> Store:
    return load_store("small")


def standing(person_id: int, xy: tuple[float, float], t0: float, t1: float) -> PersonPath:
    t = np.arange(t0, t1 + 1e-9, 1 / 30)
    j = STANDING_SKELETON + np.array([xy[0], xy[1], 0.0])
    return PersonPath(person_id, t, np.repeat(j[None], len(t), 0).astype(np.float32))


def walking_x(person_id: int, y: float, t1: float) -> PersonPath:
    """Walks along +x at 1 m/s from x = 1 (no gait, so positions are exact)."""
    t = np.arange(0.0, t1 + 1e-9, 1 / 30)
    j = STANDING_SKELETON[None] + np.stack([1.0 + t, np.full_like(t, y), 0 * t], 1)[:, None]
    return PersonPath(person_id, t, j.astype(np.float32))


def test_person_path_interpolates_and_is_absent_outside() -> None:
    p = walking_x(0, 2.0, 2.0)
    j, present = p.at(np.array([-0.1, 0.5, 1.01, 2.5]))
    assert present.tolist() == [False, True, True, False]
    np.testing.assert_allclose(j[1, 11, 0], STANDING_SKELETON[11, 0] + 1.5, atol=1e-5)
    np.testing.assert_allclose(j[2, 11, 0], STANDING_SKELETON[11, 0] + 2.01, atol=1e-5)
    assert np.isnan(j[0]).all()


def test_one_frame_per_camera_per_tick_sorted_with_phase(store: Store) -> None:
    frames = render_keypoints(store, [], 2.0, np.random.default_rng(0))
    assert len(frames) == len(store.cameras) * 30
    ts = [f.t for f in frames]
    assert ts == sorted(ts)
    per_cam: dict[str, list[float]] = {}
    for f in frames:
        per_cam.setdefault(f.camera_id, []).append(f.t)
        assert f.keypoints.shape == (0, 17, 3)
    phases = {round(v[0] % (1 / 15), 4) for v in per_cam.values()}
    assert len(phases) > 6  # cameras are not synchronised
    for v in per_cam.values():
        d = np.diff(v)
        assert np.all(np.abs(d - 1 / 15) < 0.02)  # jittered around the period


def test_frames_show_the_true_capture_time(store: Store) -> None:
    person = walking_x(0, 2.4, 3.0)
    cfg = CLEAN.model_copy(update={"phase_offsets_s": {c.id: 0.01 for c in store.cameras}})
    frames = render_keypoints(store, [person], 3.0, np.random.default_rng(0), cfg)
    cams = store.cameras_by_id
    checked = 0
    for f in frames:
        if f.keypoints.shape[0] != 1:
            continue
        c = cams[f.camera_id]
        j, _ = person.at(np.array([f.t]))
        px, _ = cv2.projectPoints(j[0], np.asarray(c.pose.rvec), c.t, c.K_array, c.dist_array)
        seen = f.keypoints[0, :, 2] > 0
        err = np.linalg.norm(f.keypoints[0, seen, :2] - px.reshape(-1, 2)[seen], axis=1)
        assert err.max() < 0.05
        checked += 1
    assert checked > 50


def test_jitter_is_in_the_timestamp_not_the_content(store: Store) -> None:
    person = walking_x(0, 2.4, 3.0)
    cfg = CLEAN.model_copy(update={"timestamp_jitter_ms": 5.0})
    a = render_keypoints(store, [person], 3.0, np.random.default_rng(0), cfg)
    b = render_keypoints(store, [person], 3.0, np.random.default_rng(0), CLEAN)
    for cam in store.cameras:
        fa = [f for f in a if f.camera_id == cam.id]
        fb = [f for f in b if f.camera_id == cam.id]
        assert len(fa) == len(fb)
        dt = np.array([f.t - g.t for f, g in zip(fa, fb, strict=True)])
        assert 1e-3 < np.abs(dt).mean() < 1e-2
        for f, g in zip(fa, fb, strict=True):  # same capture, same pixels
            assert np.array_equal(f.keypoints, g.keypoints)


def test_gondola_hides_the_feet_of_a_person_behind_it(store: Store) -> None:
    # C02 stands at (3.7, 1, 3.2) looking +y; gondolas A1S/A1N (y 3.6-4.5, 1.9 m) lie between
    # it and a person standing in the next aisle at y = 5.2.
    person = standing(0, (3.2, 5.2), 0.0, 1.0)
    occ = render_keypoints(store, [person], 1.0, np.random.default_rng(0), CLEAN)
    free = render_keypoints(
        store,
        [person],
        1.0,
        np.random.default_rng(0),
        CLEAN.model_copy(update={"occlusion": False}),
    )
    ank = [L_ANKLE, R_ANKLE]
    occ_c02 = [f for f in occ if f.camera_id == "C02"]
    free_c02 = [f for f in free if f.camera_id == "C02"]
    assert all(f.keypoints.shape[0] == 1 for f in free_c02)
    assert all((f.keypoints[0, ank, 2] > 0).all() for f in free_c02)
    assert all(f.keypoints.shape[0] == 0 or (f.keypoints[0, ank, 2] == 0).all() for f in occ_c02)
    # The head is above the gondola and stays visible.
    assert all(f.keypoints.shape[0] == 1 and f.keypoints[0, 0, 2] > 0 for f in occ_c02)


def test_a_person_in_front_hides_the_one_behind(store: Store) -> None:
    # C05 at (1, 5, 3.2) looks +x along the aisle y = 5: the person at x = 3 hides the legs and
    # hips of the one at x = 4; the rear head stays visible above the front cylinder.
    front = standing(0, (3.0, 5.0), 0.0, 1.0)
    back = standing(1, (4.0, 5.0), 0.0, 1.0)
    frames = render_keypoints(store, [front, back], 1.0, np.random.default_rng(0), CLEAN)
    c05 = [f for f in frames if f.camera_id == "C05"]
    lower = [11, 12, 13, 14, L_ANKLE, R_ANKLE]
    for f in c05:
        with_legs = (f.keypoints[:, lower, 2] > 0).all(axis=1)
        assert with_legs.sum() == 1
    alone = render_keypoints(store, [back], 1.0, np.random.default_rng(0), CLEAN)
    for f in alone:
        if f.camera_id == "C05":
            assert (f.keypoints[0, lower, 2] > 0).all()


def test_noise_misses_and_false_detections(store: Store) -> None:
    person = standing(0, (5.0, 5.5), 0.0, 20.0)
    cfg = CameraSimConfig(false_detections_per_frame=0.2, person_miss_rate=0.1)
    frames = render_keypoints(store, [person], 20.0, np.random.default_rng(0), cfg)
    counts = np.array([f.keypoints.shape[0] for f in frames])
    assert (counts >= 2).mean() > 0.05  # spurious skeletons
    confs = np.concatenate([f.keypoints[..., 2].ravel() for f in frames])
    confs = confs[confs > 0]
    assert confs.min() >= 0.05 and confs.max() <= 1.0
    # Pixel noise: the same standing person jitters by a few pixels in one camera.
    c = [f.keypoints for f in frames if f.camera_id == "C07" and f.keypoints.shape[0] == 1]
    noses = np.array([k[0, 0, :2] for k in c if k[0, 0, 2] > 0.5])
    assert 1.5 < noses.std(axis=0).mean() < 6.0


def test_deterministic_for_a_seed(store: Store) -> None:
    people = [walking_x(0, 2.4, 3.0), standing(1, (5.0, 5.5), 0.5, 3.0)]
    a = render_keypoints(store, people, 3.0, np.random.default_rng(7))
    b = render_keypoints(store, people, 3.0, np.random.default_rng(7))
    assert [(f.camera_id, f.t) for f in a] == [(f.camera_id, f.t) for f in b]
    assert all(np.array_equal(f.keypoints, g.keypoints) for f, g in zip(a, b, strict=True))


def test_twenty_people_render_fast(store: Store) -> None:
    rng = np.random.default_rng(0)
    people = [walking_x(i, float(y), 30.0) for i, y in enumerate(np.linspace(0.5, 9.5, 20))]
    t0 = time.perf_counter()
    frames = render_keypoints(store, people, 30.0, rng)
    dt = time.perf_counter() - t0
    assert len(frames) == 12 * 450
    assert dt < 10.0  # ~1 s here: a 10-minute session renders in well under a minute
