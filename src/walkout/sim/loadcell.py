"""Load-cell sensor model: true shelf loads and hand interactions → raw plate readings.

The model is deliberately at least as unfriendly as the real AiFi plates (see
``docs/loadcell-vs-real.md``, measured on BENCHMARK-1):

- each plate has an unknown tare and its own noise level drawn from the measured distribution
  (median ~1.5 g, p90 ~4 g, worst ~10 g); part of that noise is two narrow tones (~1.5 Hz and
  ~24.5 Hz on the real plates), the rest white;
- readings are quantised to the real ADC step (0.241 g), which gives the real rate of repeated
  consecutive samples;
- slow drift (random walk + linear creep);
- a hand presses, trembles and rings the plate, which rings down after it leaves;
- **shelf vibration**: while a shopper walks up to and handles a gondola, every plate of that
  group rings at its own resonance (5-12 Hz) with an amplitude several times its rest noise
  (up to ±80 g peaks on the real top shelves) although nobody touches it.

Hard cases and sensor faults are knobs: :class:`PlateInteraction` can hold an item above the
plate after a short contact (``contact_end``), press slowly without tremor (``tremor_g=0``) or
make several load changes in one visit (``steps``: rest two items, take one); the helpers
:func:`add_spikes`, :func:`add_recalibration`, :func:`add_dead`, :func:`add_stuck` and
:func:`drop_plates` inject faults into a simulated block.

Everything is a pure function of its inputs and the numpy ``Generator``: same seed, same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

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
class LoadCellRealism:
    """The parts of the model measured on the real plates (on by default)."""

    quant_g: float = 0.241  # ADC step of the AiFi plates; 0 = no quantisation
    hum_fraction: float = 0.25  # share of the rest-noise variance in the two tones
    hum_low_hz: tuple[float, float] = (1.0, 2.0)
    hum_high_hz: tuple[float, float] = (23.5, 25.5)
    vibration: bool = True  # shelf vibration around every interaction, on its group
    vib_factor_median: float = 4.0  # vibration std / the plate's rest σ (real: ~3-15)
    vib_factor_log_sd: float = 0.6
    vib_factor_max: float = 15.0
    vib_gain_log_sd: float = 0.4  # per-plate spread of the factor within one gondola
    vib_amp_max_g: float = 40.0  # cap on the vibration std (real worst 1-s std ~45 g)
    vib_freq_hz: tuple[float, float] = (5.0, 12.0)
    vib_q: float = 8.0  # resonance quality factor
    vib_lead_s: float = 4.0  # vibration starts this long before the hand arrives (walking up)
    vib_tail_s: float = 2.0


@dataclass(frozen=True, slots=True)
class Vibration:
    """A vibration episode: ``plates`` ring with std ``amp_g`` × their gain (× their rest σ)."""

    plates: tuple[int, ...]
    t0: float
    t1: float
    amp_g: float  # std (g) of a gain-1 plate at full envelope (× its rest σ if relative)
    relative: bool = True  # amp_g is a factor of each plate's rest noise σ (as on real plates)


@dataclass(frozen=True, slots=True)
class PlateInteraction:
    """Ground truth of one hand visit to one plate, produced by the shopper simulator."""

    plate: int  # column index in store.plate_ids
    t_in: float  # hand enters the plate volume (s)
    t_out: float  # hand leaves it
    t_change: float  # moment the items leave/arrive, t_in < t_change < t_out
    delta_g: float  # true load change on THIS plate (negative = removed)
    press_g: float  # peak extra force of the hand touching/leaning (>= 0)
    #: the hand touches the plate only until then (default ``t_out``); after it the hand is
    #: still in the plate volume, holding the item above it (it rings down from there)
    contact_end: float | None = None
    #: amplitude of the hand tremor while touching; None: the default (press and load based)
    tremor_g: float | None = None
    #: further load changes in the same visit: ``(t, delta_g)`` with t_in < t < t_out
    steps: tuple[tuple[float, float], ...] = field(default=())

    @property
    def net_g(self) -> float:
        """Total load change of the visit."""
        return self.delta_g + sum(d for _, d in self.steps)


def draw_noise_g(n_plates: int, rng: np.random.Generator) -> np.ndarray:
    """Per-plate noise σ (g) drawn from the distribution measured on the real AiFi plates."""
    sigma = NOISE_MEDIAN_G * np.exp(NOISE_LOG_SD * rng.standard_normal(n_plates))
    return np.clip(sigma, *NOISE_RANGE_G)


def _child(rng: np.random.Generator) -> np.random.Generator:
    """A generator for the realism parts that leaves ``rng``'s own stream untouched."""
    try:
        return rng.spawn(1)[0]
    except (TypeError, ValueError):  # a generator without a seed sequence
        return np.random.default_rng(int(rng.bit_generator.random_raw() % (2**63)))


def simulate_plates(
    initial_g: np.ndarray,
    interactions: Sequence[PlateInteraction],
    duration_s: float,
    rng: np.random.Generator,
    *,
    rate_hz: float = 60.0,
    plate_ids: tuple[str, ...],
    noise_g: np.ndarray | None = None,
    groups: Sequence[int] | np.ndarray | None = None,
    realism: LoadCellRealism | None = LoadCellRealism(),
    vibrations: Sequence[Vibration] = (),
) -> PlateBlock:
    """Raw readings of every plate over ``[0, duration_s)``.

    ``initial_g[j]`` is the true load on plate j at t=0 (what the engine would read with a zero
    tare); ``noise_g`` overrides the per-plate noise σ (otherwise drawn like the real plates).
    ``groups[j]`` (e.g. the gondola or shelf index of plate j) says which plates vibrate
    together: with realism on, every interaction shakes its whole group from ``vib_lead_s``
    before the hand arrives until ``vib_tail_s`` after it leaves (without groups there is no
    interaction-driven vibration). ``realism=None`` gives the older, friendlier model (white
    noise, no quantisation, no vibration); ``vibrations`` adds explicit episodes.
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
    for it in interactions:
        _check(it, n_plates)

    tare = rng.uniform(*TARE_RANGE_G, n_plates)
    grams = rng.standard_normal((n, n_plates), dtype=np.float32)
    white = sigma
    if realism is not None and realism.hum_fraction > 0:
        white = sigma * np.sqrt(1.0 - realism.hum_fraction)
    grams *= white.astype(np.float32)
    grams += (tare + initial).astype(np.float32)
    grams += _drift(t, n_plates, rng)

    # Load changes: a short ramp at each change, then the new level for the rest of the run.
    steps = np.zeros((n + 1, n_plates), dtype=np.float64)
    ramp = max(1, round(CHANGE_RAMP_S * rate_hz))
    for it in interactions:
        for tc, dg in ((it.t_change, it.delta_g), *it.steps):
            i0 = min(int(np.ceil(tc * rate_hz)), n)
            i1 = min(i0 + ramp, n)
            if i1 > i0:
                steps[i0:i1, it.plate] += dg / ramp
                steps[i1, it.plate] += dg * (1.0 - (i1 - i0) / ramp)
            else:
                steps[i0, it.plate] += dg
    grams += np.cumsum(steps[:n], axis=0).astype(np.float32)

    for it in interactions:
        _add_hand(grams, t, it, rate_hz, rng)

    if realism is not None or vibrations:
        crng = _child(rng)
        model = realism or LoadCellRealism(quant_g=0.0, hum_fraction=0.0, vibration=False)
        if model.hum_fraction > 0:
            _add_hum(grams, t, sigma, model, crng)
        episodes = list(vibrations)
        gain = np.exp(model.vib_gain_log_sd * crng.standard_normal(n_plates))
        if model.vibration and interactions and groups is not None:
            episodes += _episodes(interactions, sigma, groups, model, crng)
        freq = crng.uniform(*model.vib_freq_hz, n_plates)
        for ep in episodes:
            _add_vibration(grams, t, ep, gain * (sigma if ep.relative else 1.0), freq, model,
                           rate_hz, crng)
        if model.quant_g > 0:
            np.round(grams / np.float32(model.quant_g), out=grams)
            grams *= np.float32(model.quant_g)
    return PlateBlock(t=t, grams=grams, plate_ids=tuple(plate_ids))


def _check(it: PlateInteraction, n_plates: int) -> None:
    if not 0 <= it.plate < n_plates:
        raise ValueError(f"interaction on plate {it.plate}, but there are {n_plates} plates")
    if not it.t_in < it.t_change < it.t_out:
        raise ValueError(f"need t_in < t_change < t_out, got {it}")
    if it.press_g < 0:
        raise ValueError(f"press_g must be >= 0, got {it.press_g}")
    if it.contact_end is not None and not it.t_in < it.contact_end <= it.t_out:
        raise ValueError(f"need t_in < contact_end <= t_out, got {it}")
    if it.tremor_g is not None and it.tremor_g < 0:
        raise ValueError(f"tremor_g must be >= 0, got {it.tremor_g}")
    for tc, _ in it.steps:
        if not it.t_in < tc < it.t_out:
            raise ValueError(f"a step at t={tc} is outside the visit {it.t_in}..{it.t_out}")


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
    """Hand force: a smooth press with ringing while touching, then a decaying ring-down."""
    n = grams.shape[0]
    t_off = it.t_out if it.contact_end is None else it.contact_end
    i_in = min(int(np.ceil(it.t_in * rate_hz)), n)
    i_out = min(int(np.ceil(t_off * rate_hz)), n)
    i_end = min(int(np.ceil((t_off + RINGDOWN_S) * rate_hz)), n)
    span = t_off - it.t_in
    freq = rng.uniform(4.0, 12.0)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    moved = abs(it.delta_g) + sum(abs(d) for _, d in it.steps)
    ring = 0.15 * it.press_g + 0.02 * moved + 2.0 if it.tremor_g is None else it.tremor_g
    if i_out > i_in:
        tt = t[i_in:i_out]
        u = np.sin(np.pi * (tt - it.t_in) / span)
        tremor = ring * u * np.sin(2.0 * np.pi * freq * tt + phase)
        grams[i_in:i_out, it.plate] += (it.press_g * u * u + tremor).astype(np.float32)
    if i_end > i_out and ring > 0:
        dt = t[i_out:i_end] - t_off
        down = ring * np.exp(-dt / RINGDOWN_TAU_S) * np.sin(2.0 * np.pi * freq * 1.3 * dt)
        grams[i_out:i_end, it.plate] += down.astype(np.float32)


def _add_hum(
    grams: np.ndarray,
    t: np.ndarray,
    sigma: np.ndarray,
    model: LoadCellRealism,
    rng: np.random.Generator,
) -> None:
    """Two narrow tones per plate carrying ``hum_fraction`` of the rest-noise variance."""
    n_p = grams.shape[1]
    amp = sigma * np.sqrt(model.hum_fraction)  # two tones of amplitude a: variance a²/2 each
    for lo, hi in (model.hum_low_hz, model.hum_high_hz):
        f = rng.uniform(lo, hi, n_p)
        ph = rng.uniform(0.0, 2.0 * np.pi, n_p)
        grams += (amp * np.sin(2.0 * np.pi * t[:, None] * f + ph)).astype(np.float32)


def _episodes(
    interactions: Sequence[PlateInteraction],
    sigma: np.ndarray,
    groups: Sequence[int] | np.ndarray,
    model: LoadCellRealism,
    rng: np.random.Generator,
) -> list[Vibration]:
    """A vibration episode on the group of every interaction (a shopper walking up to it)."""
    g = np.asarray(groups)
    out = []
    for it in interactions:
        plates = tuple(np.flatnonzero(g == g[it.plate]).tolist())
        factor = model.vib_factor_median * np.exp(model.vib_factor_log_sd * rng.standard_normal())
        factor = min(factor, model.vib_factor_max)
        out.append(
            Vibration(plates, it.t_in - model.vib_lead_s, it.t_out + model.vib_tail_s, factor)
        )
    return out


def _add_vibration(
    grams: np.ndarray,
    t: np.ndarray,
    ep: Vibration,
    gain: np.ndarray,
    freq: np.ndarray,
    model: LoadCellRealism,
    rate_hz: float,
    rng: np.random.Generator,
) -> None:
    """Each plate of the episode rings at its resonance: white noise through a resonator."""
    n = grams.shape[0]
    i0, i1 = max(0, int(np.ceil(ep.t0 * rate_hz))), min(n, int(np.ceil(ep.t1 * rate_hz)))
    if i1 - i0 < 4 or not ep.plates:
        return
    m = i1 - i0
    cols = list(ep.plates)
    ramp = min(0.5 * rate_hz, m / 2.0)
    k = np.arange(m, dtype=np.float64)
    env = np.clip(np.minimum(k + 1, m - k) / ramp, 0.0, 1.0)
    out = np.empty((m, len(cols)))
    for c, p in enumerate(cols):
        w = 2.0 * np.pi * freq[p] / rate_hz
        r = np.exp(-w / (2.0 * model.vib_q))
        y = lfilter([1.0], [1.0, -2.0 * r * np.cos(w), r * r], rng.standard_normal(m + 60))[60:]
        sd = float(y.std()) or 1.0
        out[:, c] = y / sd * min(ep.amp_g * gain[p], model.vib_amp_max_g)
    grams[i0:i1, cols] += (out * env[:, None]).astype(np.float32)


# ---- sensor faults (applied to a simulated block) ------------------------------------------------


def _copy(block: PlateBlock) -> tuple[np.ndarray, np.ndarray]:
    return block.t, block.grams.copy()


def add_spikes(
    block: PlateBlock,
    plate: int,
    times: Sequence[float],
    amp_g: float | Sequence[float],
) -> PlateBlock:
    """Single-sample spikes (electrical glitches) of ``amp_g`` at ``times`` on one plate."""
    t, g = _copy(block)
    amps = np.broadcast_to(np.asarray(amp_g, dtype=np.float64), (len(times),))
    for ts, a in zip(times, amps, strict=True):
        i = int(np.searchsorted(t, ts))
        if i < t.shape[0]:
            g[i, plate] += np.float32(a)
    return PlateBlock(t, g, block.plate_ids)


def add_recalibration(block: PlateBlock, plate: int, t_at: float, jump_g: float) -> PlateBlock:
    """The plate is re-tared at ``t_at``: its readings jump by ``jump_g`` in one sample, with
    nobody near (no press, no ringing)."""
    t, g = _copy(block)
    g[t >= t_at, plate] += np.float32(jump_g)
    return PlateBlock(t, g, block.plate_ids)


def add_dead(
    block: PlateBlock, plate: int, t0: float, t1: float = np.inf, value: float = np.nan
) -> PlateBlock:
    """The plate reads ``value`` (NaN: no reading; 0.0: a dead amplifier) over ``[t0, t1)``."""
    t, g = _copy(block)
    g[(t >= t0) & (t < t1), plate] = np.float32(value)
    return PlateBlock(t, g, block.plate_ids)


def add_stuck(block: PlateBlock, plate: int, t0: float, t1: float = np.inf) -> PlateBlock:
    """The plate repeats its reading at ``t0`` over ``[t0, t1)`` (a frozen sensor)."""
    t, g = _copy(block)
    sel = (t >= t0) & (t < t1)
    if sel.any():
        g[sel, plate] = g[np.flatnonzero(sel)[0], plate]
    return PlateBlock(t, g, block.plate_ids)


def drop_plates(block: PlateBlock, plate_ids: Sequence[str]) -> PlateBlock:
    """The block without the columns of ``plate_ids`` (plates that send no data at all)."""
    gone = set(plate_ids)
    keep = [j for j, p in enumerate(block.plate_ids) if p not in gone]
    return PlateBlock(block.t, block.grams[:, keep], tuple(block.plate_ids[j] for j in keep))
