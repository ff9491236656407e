"""The load-cell sensor model: realistic enough that passing it means something."""

from __future__ import annotations

import numpy as np
import pytest

from walkout.sim.loadcell import (
    PlateInteraction,
    add_dead,
    add_recalibration,
    add_spikes,
    add_stuck,
    draw_noise_g,
    drop_plates,
    simulate_plates,
)

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


# ---- realism measured on the real plates, hard-case knobs and faults (issue 3) ------------------


def test_readings_are_quantised_like_the_real_adc() -> None:
    block = _sim([], duration_s=10.0)
    steps = block.grams.astype(np.float64) / 0.241
    assert np.allclose(steps, np.round(steps), atol=1e-2)  # float32 keeps ~1e-4 g here
    repeats = np.mean(np.diff(block.grams, axis=0) == 0)
    assert 0.03 < repeats < 0.3  # real plates: 7-24 % repeated consecutive samples


def test_realism_off_is_the_older_model() -> None:
    ids = IDS
    a = simulate_plates(np.zeros(3), [], 5.0, np.random.default_rng(3), plate_ids=ids,
                        noise_g=np.ones(3), realism=None)
    assert len(np.unique(a.grams)) > 250  # not quantised


def test_interaction_shakes_its_gondola() -> None:
    it = PlateInteraction(plate=0, t_in=10.0, t_out=12.0, t_change=11.0, delta_g=-300.0,
                          press_g=50.0)
    block = simulate_plates(np.full(3, 1000.0), [it], 25.0, np.random.default_rng(0),
                            plate_ids=IDS, noise_g=np.full(3, 1.0), groups=[0, 0, 1])
    g = block.grams.astype(np.float64)

    def sd(p: int, t0: float) -> float:
        return float(np.std(g[(block.t > t0) & (block.t < t0 + 1.0), p]))

    assert sd(1, 8.0) > 2.0 * sd(1, 2.0)  # same gondola, untouched: vibrates while walked up to
    assert sd(2, 8.0) < 1.6 * sd(2, 2.0)  # other gondola: quiet
    assert sd(1, 20.0) < 1.6 * sd(1, 2.0)  # calm again afterwards


def test_held_above_and_multi_step_visits() -> None:
    held = PlateInteraction(0, 5.0, 15.0, 6.0, -300.0, 80.0, contact_end=6.5)
    steps = PlateInteraction(1, 5.0, 10.0, 6.0, -400.0, 30.0, steps=((7.5, 400.0), (9.0, -200.0)))
    block = _sim([held, steps], duration_s=25.0)
    # contact ended at 6.5 s: the plate is back at rest (new level) long before the hand leaves
    assert np.std(block.grams[(block.t > 9.0) & (block.t < 14.0), 0]) < 3.0
    assert _mean(block, 0, 9.0, 14.0) - _mean(block, 0, 1.0, 4.5) == pytest.approx(-300, abs=3)
    assert steps.net_g == -200.0
    assert _mean(block, 1, 15.0, 24.0) - _mean(block, 1, 1.0, 4.5) == pytest.approx(-200, abs=3)


def test_fault_helpers() -> None:
    base = _sim([], duration_s=10.0)
    b = add_spikes(base, 0, [2.0], 1000.0)
    assert np.isclose(np.max(b.grams[:, 0] - base.grams[:, 0]), 1000.0)
    b = add_recalibration(base, 1, 5.0, -250.0)
    assert np.allclose((b.grams - base.grams)[base.t >= 5.0, 1], -250.0)
    b = add_dead(base, 2, 3.0, 4.0)
    assert np.isnan(b.grams[(base.t >= 3.0) & (base.t < 4.0), 2]).all()
    b = add_dead(base, 2, 3.0, value=0.0)
    assert (b.grams[base.t >= 3.0, 2] == 0.0).all()
    b = add_stuck(base, 0, 3.0, 6.0)
    assert np.ptp(b.grams[(base.t >= 3.0) & (base.t < 6.0), 0]) == 0.0
    assert drop_plates(base, ["P2"]).plate_ids == ("P1", "P3")
    assert base.grams is not b.grams and np.isfinite(base.grams).all()
