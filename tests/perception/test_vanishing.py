"""Focal length and principal point from orthogonal vanishing points
(`walkout.perception.vanishing`), and the camera they give `walkout aifi calibrate`."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from walkout.cli import app
from walkout.perception.aifi_calibrate import image_intrinsics
from walkout.perception.vanishing import (
    VanishingError,
    fit_line,
    group_lines,
    intrinsics_from_vps,
)
from walkout.store import load_store

SIZE = (640, 360)
TRUE_K = np.array([[380.0, 0.0, 331.0], [0.0, 380.0, 171.0], [0.0, 0.0, 1.0]])


def _rotation(yaw_deg: float, down_deg: float) -> np.ndarray:
    """World (z up) → camera (x right, y down, z forward): looking along ``yaw`` and
    ``down_deg`` below the horizon, as a ceiling camera does."""
    y, p = np.radians(yaw_deg), np.radians(down_deg)
    fwd = np.array([np.cos(p) * np.cos(y), np.cos(p) * np.sin(y), -np.sin(p)])
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    return np.stack([right, down, fwd])


R = _rotation(35.0, 40.0)
CENTRE = np.array([0.0, 0.0, 2.6])


def _project(pts: np.ndarray, K: np.ndarray = TRUE_K) -> np.ndarray:
    pc = (pts - CENTRE) @ R.T
    return (pc[:, :2] / pc[:, 2:]) @ K[:2, :2].T + K[:2, 2]


def _edges(rng: np.random.Generator, direction: np.ndarray, n: int, noise: float = 0.1,
           K: np.ndarray = TRUE_K) -> list[np.ndarray]:
    """``n`` straight scene edges along ``direction`` seen by the camera, as edge points."""
    fwd = R[2]
    out = []
    while len(out) < n:
        base = CENTRE + fwd * rng.uniform(2.5, 6.0) + rng.uniform(-2.0, 2.0, 3)
        pts = _project(base + np.linspace(-0.8, 0.8, 60)[:, None] * direction, K)
        inside = ((pts >= 0) & (pts < SIZE)).all(axis=1)
        if inside.sum() >= 40:
            out.append(pts[inside] + rng.normal(0.0, noise, (int(inside.sum()), 2)))
    return out


AXES = np.eye(3)


def test_three_orthogonal_directions_give_back_focal_length_and_principal_point():
    rng = np.random.default_rng(1)
    groups = [_edges(rng, d, 6) for d in AXES]
    got = intrinsics_from_vps(groups, SIZE)
    assert got.principal_point_measured
    assert got.f == pytest.approx(380.0, abs=2.0)
    assert (got.cx, got.cy) == (pytest.approx(331.0, abs=3.0), pytest.approx(171.0, abs=3.0))
    assert got.f_spread_px < 3.0
    assert got.group_sizes == (6, 6, 6)


def test_two_directions_give_the_focal_length_at_a_given_principal_point():
    rng = np.random.default_rng(2)
    groups = [_edges(rng, AXES[2], 5), _edges(rng, AXES[0], 5)]
    got = intrinsics_from_vps(groups, SIZE, principal_point=(331.0, 171.0))
    assert not got.principal_point_measured
    assert got.f == pytest.approx(380.0, abs=2.0)
    # at the image centre instead, f is off by what that principal point costs, not more
    centre = intrinsics_from_vps(groups, SIZE)
    assert (centre.cx, centre.cy) == (319.5, 179.5)
    assert abs(centre.f - 380.0) < 25.0


def test_edges_are_sorted_into_their_vanishing_points():
    rng = np.random.default_rng(3)
    groups = [_edges(rng, d, n) for d, n in zip(AXES, (7, 5, 4), strict=True)]
    lines = [fit_line(p) for g in groups for p in g]
    order = rng.permutation(len(lines))
    found = group_lines([lines[i] for i in order])
    truth = np.repeat([0, 1, 2], (7, 5, 4))[order]
    assert sorted(len(g) for g in found) == [4, 5, 7]
    for g in found:
        assert len(set(truth[g])) == 1


@pytest.mark.parametrize(("groups", "message"), [
    (lambda rng: [_edges(rng, AXES[2], 5)], "1 edge group"),
    (lambda rng: [_edges(rng, AXES[2], 5), _edges(rng, AXES[0], 2)], "group 1 has 2 line"),
    # two directions 40° apart, both close to the image plane: no real camera sees them
    # as perpendicular
    (lambda rng: [_edges(rng, R[0] + 0.3 * R[2], 4),
                  _edges(rng, np.cos(0.7) * R[0] + np.sin(0.7) * R[1] + 0.3 * R[2], 4)],
     "not orthogonal"),
    (lambda rng: [_edges(rng, AXES[2], 4) + _edges(rng, AXES[1], 1), _edges(rng, AXES[0], 4)],
     "group 0 do not meet in one point"),
])
def test_evidence_that_cannot_fix_the_camera_is_refused(groups, message: str):
    with pytest.raises(VanishingError, match=message):
        intrinsics_from_vps(groups(np.random.default_rng(4)), SIZE)


def test_three_directions_not_orthogonal_put_the_principal_point_off_the_image():
    rng = np.random.default_rng(5)
    tilted = np.array([1.0, 0.0, 1.2]) / np.linalg.norm([1.0, 0.0, 1.2])
    groups = [_edges(rng, AXES[2], 5), _edges(rng, tilted, 5), _edges(rng, AXES[1], 5)]
    with pytest.raises(VanishingError, match="not orthogonal"):
        intrinsics_from_vps(groups, SIZE)


RENDER_K = np.array([[360.0, 0.0, 319.5], [0.0, 360.0, 179.5], [0.0, 0.0, 1.0]])


def _render(directions: list[np.ndarray], rng: np.random.Generator,
            bars: tuple[int, ...] = (7, 7)) -> np.ndarray:
    """A rectified 640x360 frame (no lens) of dark bars (two edges each) along straight scene
    edges, ``bars`` of them per direction."""
    img = np.full((360, 640), 190, np.uint8)
    for d, n in zip(directions, bars, strict=True):
        for pts in _edges(rng, d, n, noise=0.0, K=RENDER_K):
            cv2.polylines(img, [np.round(pts * 16).astype(np.int32)], False, 60, 5,
                          cv2.LINE_AA, 4)
    return cv2.GaussianBlur(img, (0, 0), 0.7)


def test_calibrate_measures_lens_and_focal_length_on_a_rectified_frame():
    """The cps-test-01 case: a frame with straight edges and the store's camera claiming a
    strong barrel lens and another focal length; the frame's own camera comes back."""
    cam = load_store("aifi-nanostore").cameras_by_id["cam1"]
    assert cam.dist[0] < -0.4 and cam.K[0][0] > 500  # what the store file says
    img = _render([AXES[2], AXES[0]], np.random.default_rng(6))
    new, rec = image_intrinsics(img, cam, frame=300)
    assert new.K[0][0] == pytest.approx(360.0, rel=0.02)
    assert (new.K[0][2], new.K[1][2]) == (319.5, 179.5)
    corner = np.array([[[0.0, 0.0]]])
    moved = cv2.undistortPoints(corner, new.K_array, new.dist_array, P=new.K_array)
    assert np.linalg.norm(moved - corner) < 1.5  # no lens to speak of
    assert rec.lens == "plumbline" and rec.focal == "image"
    assert rec.principal_point == "image centre" and rec.edges_frame == 300
    assert rec.f == new.K[0][0] and rec.k1 == new.dist[0]
    assert len(rec.vanishing_groups) == 2 and min(rec.vanishing_groups) >= 3


def test_a_frame_with_one_edge_direction_gives_no_focal_length():
    cam = load_store("aifi-nanostore").cameras_by_id["cam5"]
    # one bar across: its two edges are too few for a vanishing point; the verticals alone
    # (one point, or split into two nearly equal ones) cannot give a focal length
    img = _render([AXES[2], AXES[0]], np.random.default_rng(7), bars=(12, 1))
    with pytest.raises(VanishingError, match="orthogonal"):
        image_intrinsics(img, cam)


def test_calibrate_command_refuses_image_focal_length_under_the_store_lens(tmp_path):
    r = CliRunner().invoke(app, ["aifi", "calibrate", str(tmp_path), "--survey",
                                 str(tmp_path / "s.yaml"), "--out", str(tmp_path / "c.json"),
                                 "--intrinsics", "image"])
    assert r.exit_code != 0
    assert "needs --lens plumbline" in r.output
    assert not (tmp_path / "c.json").exists()


def test_calibrate_command_refuses_refined_intrinsics_without_measured_ones(tmp_path):
    r = CliRunner().invoke(app, ["aifi", "calibrate", str(tmp_path), "--survey",
                                 str(tmp_path / "s.yaml"), "--out", str(tmp_path / "c.json"),
                                 "--lens", "plumbline", "--refine-intrinsics", "f"])
    assert r.exit_code != 0
    assert "--refine-intrinsics needs --intrinsics image" in r.output
    assert not (tmp_path / "c.json").exists()
