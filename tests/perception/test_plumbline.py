"""Plumb-line lens fit (`perception/plumbline.py`) on a synthetic camera with a known lens."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from walkout.perception.plumbline import (
    PlumbLineError,
    edge_points,
    fit_lens,
    fit_lens_on_image,
    line_distances,
)

# An AiFi-like camera: 640x360, f ≈ 510 px, principal point above the centre, strong barrel.
K = np.array([[511.5, 0.0, 320.0], [0.0, 511.5, 165.0], [0.0, 0.0, 1.0]])
SIZE = (640, 360)
TRUE = np.array([-0.47, 0.20, 0.0, 0.0, 0.0])


def _project(pts3: np.ndarray, dist: np.ndarray = TRUE) -> np.ndarray:
    px, _ = cv2.projectPoints(pts3, np.zeros(3), np.zeros(3), K, dist)
    return px.reshape(-1, 2)


def _inside(px: np.ndarray) -> np.ndarray:
    return px[(px[:, 0] >= 0) & (px[:, 0] < SIZE[0]) & (px[:, 1] >= 0) & (px[:, 1] < SIZE[1])]


def _scene_lines(rng: np.random.Generator, n: int,
                 dist: np.ndarray = TRUE) -> list[np.ndarray]:
    """``n`` straight 3D segments 2-4 m in front of the camera, each crossing much of the
    view, projected through ``dist`` (points inside the image only), 0.3 px noise."""
    lines = []
    while len(lines) < n:
        a = np.array([rng.uniform(-2.5, 2.5), rng.uniform(-1.5, 1.5), rng.uniform(2.0, 4.0)])
        d = rng.normal(size=3)
        d[2] *= 0.3
        d /= np.linalg.norm(d)
        pts = a + np.linspace(-3.0, 3.0, 200)[:, None] * d
        px = _inside(_project(pts[pts[:, 2] > 0.5], dist))
        if len(px) >= 60 and np.ptp(px, axis=0).max() > 150:
            lines.append(px + rng.normal(0, 0.3, px.shape))
    return lines


def _displacement(dist: np.ndarray) -> np.ndarray:
    """Where the lens ``dist`` puts a grid of normalised points (px), for comparing lenses."""
    g = np.stack(np.meshgrid(np.linspace(-0.65, 0.65, 9), np.linspace(-0.35, 0.4, 7)), -1)
    return _project(np.concatenate([g.reshape(-1, 2), np.ones((63, 1))], 1), dist)


def test_straight_lines_give_back_the_lens():
    lines = _scene_lines(np.random.default_rng(3), 8)
    fit = fit_lens(lines, K, SIZE)
    assert fit.start_rms_px > 2.0  # the lines are visibly bent under no lens ...
    assert fit.rms_px < 0.4  # ... and straight to the noise under the fitted one
    assert fit.k1 == pytest.approx(TRUE[0], abs=0.03)
    assert fit.k2 == pytest.approx(TRUE[1], abs=0.08)
    # what matters downstream: where the lens puts points, to well under a pixel
    err = np.linalg.norm(_displacement(fit.dist) - _displacement(TRUE), axis=1)
    assert err.max() < 0.5
    assert fit.corner_sigma_px < 1.0


def test_the_true_lens_makes_the_lines_straight_and_another_does_not():
    lines = _scene_lines(np.random.default_rng(4), 5)
    assert np.sqrt(np.mean(line_distances(lines, K, TRUE) ** 2)) < 0.45
    wrong = TRUE + np.array([0.1, 0, 0, 0, 0])
    assert np.sqrt(np.mean(line_distances(lines, K, wrong) ** 2)) > 1.0


def test_too_few_lines_are_refused():
    lines = _scene_lines(np.random.default_rng(5), 3)
    with pytest.raises(PlumbLineError, match="at least 4 straight edges"):
        fit_lens(lines, K, SIZE)


def test_curved_edges_are_refused():
    """Arcs (the rim of a round table, a hanging cable) stay curved under every lens."""
    rng = np.random.default_rng(6)
    arcs = []
    for _ in range(6):
        c = np.array([rng.uniform(-1, 1), rng.uniform(-0.5, 0.5), rng.uniform(2.5, 3.5)])
        a = np.linspace(0, np.pi, 120) + rng.uniform(0, np.pi)
        pts = c + 0.8 * np.stack([np.cos(a), np.sin(a) * 0.5, np.sin(a) * 0.5], 1)
        arcs.append(_inside(_project(pts)) + rng.normal(0, 0.3, (1, 2)))
    with pytest.raises(PlumbLineError, match="not straight"):
        fit_lens(arcs, K, SIZE)


def test_lines_through_the_centre_do_not_fix_the_lens():
    """Radial lines are not bent by a radial lens: they carry no evidence of it."""
    rng = np.random.default_rng(7)
    lines = []
    for ang in np.linspace(0, np.pi, 6, endpoint=False):
        r = np.linspace(20, 160, 50)
        px = np.stack([320 + r * np.cos(ang), 165 + r * np.sin(ang)], 1)
        lines.append(px + rng.normal(0, 0.3, px.shape))
    with pytest.raises(PlumbLineError, match="do not constrain the lens"):
        fit_lens(lines, K, SIZE)


def test_edge_points_land_on_a_drawn_edge():
    """A light/dark boundary drawn with sub-pixel position (pixel k covers [k-0.5, k+0.5],
    the boundary row partly covered) is found to a tenth of a pixel from a guide 2 px off."""
    e = 100.3
    rows = np.clip(np.arange(200) + 0.5 - e, 0.0, 1.0)  # dark fraction of each row
    img = np.repeat((200 - 160 * rows)[:, None], 300, axis=1).astype(np.uint8)
    pts = edge_points(img, np.array([[20.0, 98.3], [280.0, 98.3]]))
    assert len(pts) > 100
    assert np.median(np.abs(pts[:, 1] - e)) < 0.1
    # a guide over a flat area finds nothing rather than noise
    assert len(edge_points(img, np.array([[20.0, 40.0], [280.0, 40.0]]))) == 0


_S = np.linspace(0, 1, 100)
CABLE = np.stack([150 + 100 * _S + 80 * _S * (1 - _S), 20 + 300 * _S], 1)


def _render(dist: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 640x360 frame of dark bars (door frames, rails) along straight 3D lines, taken
    through ``dist``, plus a hanging cable (a curved bar) that must not count as a line."""
    img = np.full((360, 640), 190, np.uint8)
    for _ in range(10):
        pts = _scene_lines(rng, 1, dist)[0]
        cv2.polylines(img, [np.round(pts * 16).astype(np.int32)], False, 60, 5, cv2.LINE_AA, 4)
    cv2.polylines(img, [np.round(CABLE * 16).astype(np.int32)], False, 20, 4, cv2.LINE_AA, 4)
    return cv2.GaussianBlur(img, (0, 0), 0.7)


def test_the_lens_is_found_on_a_frame_without_picks():
    img = _render(TRUE, np.random.default_rng(11))
    found = fit_lens_on_image(img, K)
    err = np.linalg.norm(_displacement(found.fit.dist) - _displacement(TRUE), axis=1)
    assert err.max() < 1.0
    assert found.fit.rms_px < 0.3
    assert len(found.kept) >= 8
    for i in found.kept:  # no edge of the cable counts as a line
        near = np.min(np.linalg.norm(found.lines[i][:, None] - CABLE[None], axis=2), axis=1)
        assert np.mean(near < 4.0) < 0.5


def test_a_frame_without_distortion_gives_a_flat_lens():
    """What the AiFi cps-test-01 frames turned out to be: straight edges under no lens."""
    img = _render(np.zeros(5), np.random.default_rng(12))
    found = fit_lens_on_image(img, K, k0=(-0.5, 0.2))  # started from a strong barrel
    err = np.linalg.norm(_displacement(found.fit.dist) - _displacement(np.zeros(5)), axis=1)
    assert err.max() < 1.0
