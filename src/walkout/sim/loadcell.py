"""Load-cell sensor model: true shelf loads and hand interactions → raw plate readings.

The model is deliberately as unfriendly as the real AiFi plates (``shared/data/README.md``):
each plate has an unknown tare, its own noise level drawn from the measured distribution
(median ~1.5 g, p90 ~4 g, worst ~10 g), slow drift, and a hand that presses, rings the plate and
lets it ring down after leaving. A shelf stage that passes on this data has earned something.

Everything is a pure function of its inputs and the numpy ``Generator``: same seed, same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from walkout.events import PlateBlock

#: Log-normal per-plate noise σ fitted to the real plates: median 1.5 g, p90 4 g.
NOISE_MEDIAN_G = 1.5
NOISE_LOG_SD = float(np.log(4.0 / 1.5) / 1.2816)
NOISE_RANGE_G = (0.3, 10.0)
TARE_RANGE_G = (-500.0, 500.0)
#: Random-walk drift step (g per √s) and linear drift (g per 1000 s, uniform ±).
DRIFT_WALK_G = 0.05
DRIFT_SLOPE_G = 2.0
#: Hand transient: the load change is not instantaneous, and the plate rings after release.
CHANGE_RAMP_S = 0.15
RINGDOWN_S = 1.5
RINGDOWN_TAU_S = 0.25


@dataclass(frozen=True, slots=True)
class PlateInteraction:
    """Ground truth of one hand visit to one plate, produced by the shopper simulator."""

    plate: int  # column index in store.plate_ids
    t_in: float  # hand enters the plate volume (s)
    t_out: float  # hand leaves it
    t_change: float  # moment the items leave/arrive, t_in < t_change < t_out
    delta_g: float  # true load change on THIS plate (negative = removed)
    press_g: float  # peak extra force of the hand touching/leaning (>= 0)


def draw_noise_g(n_plates: int, rng: np.random.Generator) -> np.ndarray:
    """Per-plate noise σ (g) drawn from the distribution measured on the real AiFi plates."""
    sigma = NOISE_MEDIAN_G * np.exp(NOISE_LOG_SD * rng.standard_normal(n_plates))
    return np.clip(sigma, *NOISE_RANGE_G)


def simulate_plates(
    initial_g: np.ndarray,
    interactions: Sequence[PlateInteraction],
    duration_s: float,
    rng: np.random.Generator,
    *,
    rate_hz: float = 60.0,
    plate_ids: tuple[str, ...],
    noise_g: np.ndarray | None = None,
) -> PlateBlock:
    """Raw readings of every plate over ``[0, duration_s)``.

    ``initial_g[j]`` is the true load on plate j at t=0 (what the engine would read with a zero
    tare); ``noise_g`` overrides the per-plate noise σ (otherwise drawn like the real plates).
    Vectorised over samples and plates; only the (sparse) interactions are looped over.
    """
    initial = np.asarray(initial_g, dtype=np.float64)
    n_plates = len(plate_ids)
    if initial.shape != (n_plates,):
        raise ValueError(f"initial_g has shape {initial.shape}, expected ({n_plates},)")
    if duration_s <= 0 or rate_hz <= 0:
        raise ValueError("duration_s and rate_hz must be positive")
    n = round(duration_s * rate_hz)
    t = np.arange(n, dtype=np.float64) / rate_hz
    if noise_g is None:
        sigma = draw_noise_g(n_plates, rng)
    else:
        sigma = np.broadcast_to(np.asarray(noise_g, dtype=np.float64), (n_plates,))
        if np.any(sigma < 0):
            raise ValueError("noise_g must be >= 0")

    tare = rng.uniform(*TARE_RANGE_G, n_plates)
    grams = rng.standard_normal((n, n_plates), dtype=np.float32)
    grams *= sigma.astype(np.float32)
    grams += (tare + initial).astype(np.float32)
    grams += _drift(t, n_plates, rng)

    # Load changes: a short ramp at t_change, then the new level for the rest of the run.
    steps = np.zeros((n + 1, n_plates), dtype=np.float64)
    ramp = max(1, round(CHANGE_RAMP_S * rate_hz))
    for it in interactions:
        _check(it, n_plates)
        i0 = min(int(np.ceil(it.t_change * rate_hz)), n)
        i1 = min(i0 + ramp, n)
        if i1 > i0:
            steps[i0:i1, it.plate] += it.delta_g / ramp
            steps[i1, it.plate] += it.delta_g * (1.0 - (i1 - i0) / ramp)
        else:
            steps[i0, it.plate] += it.delta_g
    grams += np.cumsum(steps[:n], axis=0).astype(np.float32)

    for it in interactions:
        _add_hand(grams, t, it, rate_hz, rng)
    return PlateBlock(t=t, grams=grams, plate_ids=tuple(plate_ids))


def _check(it: PlateInteraction, n_plates: int) -> None:
    if not 0 <= it.plate < n_plates:
        raise ValueError(f"interaction on plate {it.plate}, but there are {n_plates} plates")
    if not it.t_in < it.t_change < it.t_out:
        raise ValueError(f"need t_in < t_change < t_out, got {it}")
    if it.press_g < 0:
        raise ValueError(f"press_g must be >= 0, got {it.press_g}")


def _drift(t: np.ndarray, n_plates: int, rng: np.random.Generator) -> np.ndarray:
    """Random walk (sampled at 1 Hz, linearly interpolated) plus a linear creep, float32."""
    n_knots = int(np.ceil(t[-1])) + 2
    walk = np.cumsum(rng.normal(0.0, DRIFT_WALK_G, (n_knots, n_plates)), axis=0)
    walk -= walk[0]
    slope = rng.uniform(-DRIFT_SLOPE_G, DRIFT_SLOPE_G, n_plates) / 1000.0
    k = np.floor(t).astype(np.int64)
    f = (t - k)[:, None]
    out = walk[k] * (1.0 - f) + walk[k + 1] * f + t[:, None] * slope
    return out.astype(np.float32)


def _add_hand(
    grams: np.ndarray, t: np.ndarray, it: PlateInteraction, rate_hz: float, rng: np.random.Generator
) -> None:
    """Hand force: a smooth press with ringing while inside, then a decaying ring-down."""
    n = grams.shape[0]
    i_in = min(int(np.ceil(it.t_in * rate_hz)), n)
    i_out = min(int(np.ceil(it.t_out * rate_hz)), n)
    i_end = min(int(np.ceil((it.t_out + RINGDOWN_S) * rate_hz)), n)
    span = it.t_out - it.t_in
    freq = rng.uniform(4.0, 12.0)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    ring = 0.15 * it.press_g + 0.02 * abs(it.delta_g) + 2.0
    if i_out > i_in:
        tt = t[i_in:i_out]
        u = np.sin(np.pi * (tt - it.t_in) / span)
        tremor = ring * u * np.sin(2.0 * np.pi * freq * tt + phase)
        grams[i_in:i_out, it.plate] += (it.press_g * u * u + tremor).astype(np.float32)
    if i_end > i_out:
        dt = t[i_out:i_end] - it.t_out
        down = ring * np.exp(-dt / RINGDOWN_TAU_S) * np.sin(2.0 * np.pi * freq * 1.3 * dt)
        grams[i_out:i_end, it.plate] += down.astype(np.float32)
