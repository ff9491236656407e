"""The load-cell sensor model: realistic enough that passing it means something."""

from __future__ import annotations

import numpy as np
import pytest

from walkout.sim.loadcell import PlateInteraction, draw_noise_g, simulate_plates

IDS = ("P1", "P2", "P3")


def _sim(
    interactions: list[PlateInteraction],
    duration_s: float = 20.0,
    seed: int = 0,
    noise: float | None = 1.0,
):
    noise_g = None if noise is None else np.full(len(IDS), noise)
    return simulate_plates(
        np.array([1000.0, 2000.0, 0.0]),
        interactions,
        duration_s,
        np.random.default_rng(seed),
        plate_ids=IDS,
        noise_g=noise_g,
    )


def _mean(block, plate: int, t0: float, t1: float) -> float:
    sel = (block.t >= t0) & (block.t < t1)
    return float(block.grams[sel, plate].mean())


def test_shapes_and_types() -> None:
    block = _sim([], duration_s=10.0)
    assert block.t.dtype == np.float64 and block.grams.dtype == np.float32
    assert block.grams.shape == (600, 3) and block.plate_ids == IDS
    assert block.t[1] - block.t[0] == pytest.approx(1 / 60)


def test_unknown_tare_and_given_noise() -> None:
    block = _sim([], duration_s=60.0, noise=4.0)
    offsets = block.grams.mean(axis=0) - np.array([1000.0, 2000.0, 0.0])
    assert np.all(np.abs(offsets) < 520) and np.ptp(offsets) > 1.0
    # short windows: drift is negligible there, so the std is the noise
    win = block.grams[:60]
    assert np.std(win, axis=0) == pytest.approx([4.0, 4.0, 4.0], rel=0.3)


def test_default_noise_matches_real_plates() -> None:
    sigma = draw_noise_g(20000, np.random.default_rng(1))
    assert 1.2 < np.median(sigma) < 2.0
    assert 3.0 < np.percentile(sigma, 90) < 5.0
    assert sigma.max() <= 10.0 and (sigma > 8.0).any()


def test_step_press_and_ringdown() -> None:
    it = PlateInteraction(plate=0, t_in=5.0, t_out=8.0, t_change=6.0, delta_g=-300.0, press_g=80.0)
    block = _sim([it])
    before, after = _mean(block, 0, 1.0, 4.9), _mean(block, 0, 10.0, 19.0)
    assert after - before == pytest.approx(-300.0, abs=2.0)
    # the hand presses: well above the old level before the change, above the new one after it
    assert block.grams[(block.t > 5.5) & (block.t < 6.0), 0].max() > before + 40.0
    assert block.grams[(block.t > 6.3) & (block.t < 7.7), 0].max() > after + 40.0
    ring = block.grams[(block.t > 8.0) & (block.t < 8.3), 0]
    assert np.std(ring) > 2.0  # still ringing just after the hand left
    # other plates untouched
    assert _mean(block, 1, 10.0, 19.0) - _mean(block, 1, 1.0, 4.9) == pytest.approx(0.0, abs=1.5)


def test_press_without_change_returns_to_level() -> None:
    it = PlateInteraction(plate=2, t_in=5.0, t_out=7.0, t_change=6.0, delta_g=0.0, press_g=200.0)
    block = _sim([it])
    assert block.grams[:, 2].max() > _mean(block, 2, 1.0, 4.9) + 150.0
    assert _mean(block, 2, 10.0, 19.0) == pytest.approx(_mean(block, 2, 1.0, 4.9), abs=1.5)


def test_drift_is_slow() -> None:
    block = _sim([], duration_s=1800.0, noise=0.5, seed=4)
    first, last = block.grams[:600].mean(axis=0), block.grams[-600:].mean(axis=0)
    assert np.all(np.abs(last - first) < 15.0)
    assert np.any(np.abs(last - first) > 0.2)


def test_deterministic_per_seed() -> None:
    it = [PlateInteraction(1, 2.0, 4.0, 3.0, 120.0, 30.0)]
    a, b, c = _sim(it, seed=7, noise=None), _sim(it, seed=7, noise=None), _sim(it, seed=8)
    assert np.array_equal(a.grams, b.grams)
    assert not np.array_equal(a.grams, c.grams)


@pytest.mark.parametrize(
    "bad",
    [
        PlateInteraction(3, 1.0, 2.0, 1.5, -10.0, 0.0),  # no such plate
        PlateInteraction(0, 1.0, 2.0, 2.5, -10.0, 0.0),  # change after the hand left
        PlateInteraction(0, 1.0, 2.0, 1.5, -10.0, -5.0),  # negative press
    ],
)
def test_bad_interactions_are_refused(bad: PlateInteraction) -> None:
    with pytest.raises(ValueError):
        _sim([bad])


def test_interaction_running_past_the_end_is_clipped() -> None:
    block = _sim([PlateInteraction(0, 9.0, 11.0, 9.5, -50.0, 10.0)], duration_s=10.0)
    assert block.grams.shape[0] == 600 and np.isfinite(block.grams).all()
