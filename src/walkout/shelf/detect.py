"""Per-plate rest → disturbance → rest detection, streaming and vectorised across plates.

Every sample first goes through a 3-sample median (one sample of delay), which removes
single-sample spikes (counted and reported) without blurring steps.

A plate is *quiet* at a sample when the std of the last ``stable_window`` samples is below
``stable_k`` × its effective noise σ: its own rest noise, scaled up while its gondola vibrates
(a shopper walking up shakes every plate of a gondola; the real plates then ring at 5-12 Hz
with several times their rest noise). The vibration factor is the median over the gondola's
plates of window std / rest σ, so one plate handled by a hand does not raise it.

A disturbance opens when a plate stops being quiet, or - for slow light presses that never
break quietness - when its level departs from the level ``lookback_s`` earlier by more than a
noise-aware threshold. The *before* level is always the level ``lookback_s`` before the
disturbance (never earlier than the last confirmed rest), so a press that creeps in slowly
cannot leak into it. A new rest is confirmed when the plate has been quiet for a level window
plus ``settle_s`` and its level is flat over that span (the level now equals the level
``settle_s`` earlier): a slow release is waited out. The settled change is the difference of
the two rest levels, with a variance taken from the noise actually seen in both windows.

A disturbance is not always one hand: two shoppers taking from one plate a few seconds apart
leave a rest between them too short to confirm. Such short flat rests (and a held-back slow
change that a new disturbance continues) are remembered; when the disturbance settles at a
level different from both the rest and the level before it, it is split there into two changes.
A rest that the end level undoes (the top of a press, an item held above and put back) is not.

Items land and leave in steps; a hand resting on a plate presses and eases off gradually. A
change that no ``creep_step_s`` span moved by half of it *crept in*, whatever opened it
(tremor or a slow departure): the flat top of a press was taken for a rest. It is held back
for ``creep_hold_s``, and a disturbance in that time continues it without splitting at its
level - nor at a pause in the release, a level the plate only crept to - so a press released
around a pick is one pick, not a put of the press and a pick of press + item.

A change that happened as a clean step (the plate went from one rest to the other within
``recal_max_s``, no press, no ringing) is flagged: that is a recalibration (tare jump), not a
hand. NaN readings and frozen readings (a std of ~0: real load cells always have noise) are
never quiet; when they last ``fault_after_s`` the plate raises an alert and forgets its rest
level, so that a sensor coming back with another tare cannot fake an event. Its first rest
after that raises ``plate_recovered``: a fault is a state the operator sees end, not only begin.

The heavy work (rolling sums over every sample of every plate) is numpy on cumulative sums;
Python only walks the few transitions of the plates that have any.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from walkout.events import Alert
from walkout.shelf.config import ShelfConfig

STARTUP, REST, DIST = 0, 1, 2


@dataclass(frozen=True, slots=True)
class PlateChange:
    """A settled disturbance on one plate (possibly ~0: a press), before merging/thresholds."""

    plate: int
    t_start: float  # first disturbed sample
    t_end: float  # first sample of the new rest
    t_confirm: float  # when the new rest was confirmed (stream time)
    before_g: float
    after_g: float
    var_g2: float  # noise variance of after - before
    step: bool = False  # a clean step with no hand transient (recalibration-like)

    @property
    def delta_g(self) -> float:
        return self.after_g - self.before_g


class _Chunk:
    """Arrays of one chunk (carry rows + new rows) shared by the per-plate walk."""

    __slots__ = (
        "base", "cs1", "cs2", "dep_thr", "fault", "flat", "flat_thr", "ls", "n_nan", "quiet",
        "tt", "vib",
    )

    def __init__(self, **kw: object) -> None:
        for k, v in kw.items():
            setattr(self, k, v)


class PlateDetector:
    """Streaming detector for all plates of a store (columns in store.plate_ids order)."""

    def __init__(
        self,
        plate_ids: tuple[str, ...],
        noise_g: np.ndarray,
        config: ShelfConfig,
        rate_hz: float,
        groups: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        self.cfg = config
        self.plate_ids = plate_ids
        n_p = len(plate_ids)
        self.ws = max(3, round(config.stable_window_s * rate_hz))
        self.wl = max(self.ws, round(config.level_window_s * rate_hz))
        self.ns = max(self.ws, self.wl // 2)  # short level window of the departure test
        self.guard = round(config.guard_s * rate_hz)
        self.lb = max(1, round(config.lookback_s * rate_hz))
        self.settle = round(config.settle_s * rate_hz)
        self.recal_n = round(config.recal_max_s * rate_hz)
        self.fault_n = max(1, round(config.fault_after_s * rate_hz))
        self.rate_hz = rate_hz
        # rows carried between chunks: enough for a level window `lookback` before a sample
        self.c = self.wl + max(self.lb + self.guard + 1, self.settle) + self.ws + 2
        self.unit = max(4 * self.ws, round(2.0 * rate_hz))  # first noise estimates: 2 s
        self.seg = self.unit * max(1, round(config.noise_update_s * rate_hz / self.unit))
        g = np.zeros(n_p, dtype=np.int64) if groups is None else np.asarray(groups)
        self._groups = [np.flatnonzero(g == k) for k in np.unique(g)]
        # gondolas of one size stacked (groups × plates), so one median serves them all
        sizes = sorted({c.size for c in self._groups if c.size >= config.vib_min_plates})
        self._vib_batches = [np.stack([c for c in self._groups if c.size == k]) for k in sizes]
        self._noise_acc: list[np.ndarray] = []
        self._carry_x = np.full((self.c, n_p), np.nan, dtype=np.float32)
        self._carry_t = np.full(self.c, np.nan)
        self._prev_raw = np.full(n_p, np.nan, dtype=np.float32)  # last processed raw sample
        self._hold_t: float | None = None  # newest raw sample, waiting for its successor
        self._hold_x = np.full(n_p, np.nan, dtype=np.float32)
        self._n_seen = 0
        self._ref = np.zeros(n_p)
        self.sigma = np.maximum(np.asarray(noise_g, dtype=np.float64), config.min_noise_g)
        self._sigma_known = np.zeros(n_p, dtype=bool)
        self.mode = np.full(n_p, STARTUP, dtype=np.int8)
        self.dist_t = np.full(n_p, np.nan)  # start time of the open disturbance
        self._dist_i = np.zeros(n_p, dtype=np.int64)
        self._dist_slow = np.zeros(n_p, dtype=bool)  # opened by a slow departure
        self._dist_press = np.zeros(n_p, dtype=bool)  # continues a held change that crept in
        self._dist_vib = np.ones(n_p)  # gondola vibration factor when it opened
        # a change that crept in slowly is held back until its new level has lasted
        # `slow_hold_s`: a slow press whose top looked like a rest is then undone by its release
        # change, before var, until, crept (no fast step: a press whose level is no rest), and
        # its largest level move (a disturbance continuing it goes on from there)
        self._prov: dict[int, tuple[PlateChange, float, int, bool, float]] = {}
        self.slow_hold = round(config.slow_hold_s * rate_hz)
        self.creep_n = round(config.creep_step_s * rate_hz)
        self.creep_hold = round(config.creep_hold_s * rate_hz)
        self._jump = np.zeros(n_p)  # largest level move over creep_n in the open disturbance
        self._chain: dict[int, PlateChange | None] = {}  # held change a disturbance continues
        # rests seen inside an open disturbance that were too short to confirm (another hand
        # came before settle_s was over): t_start, t_end, level, level variance, and the
        # largest level move over creep_n before it (a level only crept to is no rest)
        self._mids: dict[int, list[tuple[float, float, float, float, float]]] = {}
        self.split_n = round(config.split_min_s * rate_hz)
        self._before = np.zeros(n_p)
        self._before_var = np.zeros(n_p)
        self._rest_confirm = np.zeros(n_p, dtype=np.int64)
        self._quiet_since = np.full(n_p, -1, dtype=np.int64)
        self._last_quiet = np.zeros(n_p, dtype=bool)
        self._fault_run = np.zeros(n_p, dtype=np.int64)
        self.faulted = np.zeros(n_p, dtype=bool)
        self.spikes = np.zeros(n_p, dtype=np.int64)
        self._spike_alert_t = np.full(n_p, -np.inf)

    def open_since(self, p: int) -> float:
        """Start time of plate ``p``'s change in progress: an open disturbance or a slow change
        still held back; NaN when there is none."""
        if self.mode[p] == DIST:
            return float(self.dist_t[p])
        prov = self._prov.get(p)
        return prov[0].t_start if prov is not None else float("nan")

    def earliest_open(self) -> float:
        """Start time of the oldest change in progress on any plate (inf: none)."""
        starts = [*self.dist_t[self.mode == DIST].tolist(),
                  *(prov[0].t_start for prov in self._prov.values())]
        return min(starts, default=math.inf)

    def release(self, p: int, t0: float, t1: float) -> PlateChange | None:
        """Hand over plate ``p``'s held-back slow change now if it overlaps [t0, t1]: a partner
        plate of its footprint has settled, and the two halves belong in one event."""
        prov = self._prov.get(p)
        if prov is None or prov[0].t_start > t1 or prov[0].t_end < t0:
            return None
        return self._prov.pop(p)[0]

    # ---- streaming -------------------------------------------------------------------------

    def push(self, t: np.ndarray, grams: np.ndarray) -> tuple[list[PlateChange], list[Alert]]:
        """Consume samples (any count), return the disturbances that settled and new alerts.

        The newest sample is held back until the next one arrives (the spike filter needs it).
        """
        changes: list[PlateChange] = []
        alerts: list[Alert] = []
        n = t.shape[0]
        if n == 0:
            return changes, alerts
        g = np.asarray(grams, dtype=np.float32)
        if self._hold_t is not None:
            t = np.concatenate([[self._hold_t], t])
            g = np.concatenate([self._hold_x[None, :], g])
        self._hold_t, self._hold_x = float(t[-1]), g[-1].copy()
        self._run(t, g, changes, alerts)
        return changes, alerts

    def _run(
        self, t: np.ndarray, g: np.ndarray, changes: list[PlateChange], alerts: list[Alert]
    ) -> None:
        """Process all rows of ``g`` except the last, which is only the successor of the
        one before it (``g`` has one row more than is processed)."""
        i, n = 0, t.shape[0] - 1
        while i < n:
            # Chunks never straddle a noise update, so results do not depend on block sizes.
            # Updates come every `unit` samples while some plate's noise is still unknown,
            # then every `seg` samples.
            settled = bool((self._sigma_known | self.faulted).all())
            step = self.seg if settled else self.unit
            boundary = (self._n_seen // step + 1) * step
            take = min(n - i, boundary - self._n_seen, self.cfg.chunk_samples)
            self._chunk(t[i : i + take], g[i : i + take + 1], changes, alerts)
            i += take
            if self._n_seen % self.unit == 0:
                self._update_noise(full=self._n_seen % self.seg == 0)

    def flush(self) -> tuple[list[PlateChange], list[Alert]]:
        """End of stream: settle disturbances whose plate is quiet but not yet for a full
        settling span (using what there is); report the ones still disturbed."""
        changes: list[PlateChange] = []
        alerts: list[Alert] = []
        if self._hold_t is not None:
            last = self._hold_x[None, :]
            self._run(np.array([self._hold_t, self._hold_t]), np.concatenate([last, last]),
                      changes, alerts)
            self._hold_t = None
        changes += [v[0] for _, v in sorted(self._prov.items())]
        self._prov = {}
        end = self._n_seen
        if end == 0:
            return changes, alerts
        t_last = float(self._carry_t[-1])
        for p in np.flatnonzero(self.mode == DIST):
            qs = int(self._quiet_since[p])
            if qs >= 0 and not self.faulted[p]:
                e = max(qs - self.ws + 1, end - self.c)
                rows = slice(self.c - (end - e), self.c)
                seg = self._carry_x[rows, p].astype(np.float64)
                after = float(seg.mean())
                var = self._before_var[p] + max(self.sigma[p] ** 2, float(seg.var())) / seg.size
                t_end = max(float(self._carry_t[rows][0]), float(self.dist_t[p]))
                changes.append(
                    PlateChange(int(p), float(self.dist_t[p]), t_end, t_last,
                                float(self._before[p]), after, var)
                )
            elif not self.faulted[p]:
                # still moving: report it only if its level now differs from before
                k = min(self.wl, end - int(self._dist_i[p]), self.c)
                seg = self._carry_x[self.c - k :, p].astype(np.float64)
                seg = seg[np.isfinite(seg)]
                if seg.size:
                    diff = float(seg.mean()) - float(self._before[p])
                    var = self._before_var[p] + max(self.sigma[p] ** 2, float(seg.var())) / seg.size
                    thr = max(self.cfg.min_delta_g, self.cfg.event_k * np.sqrt(var))
                    if abs(diff) > thr:
                        alerts.append(
                            Alert(
                                t_last,
                                "shelf_unsettled",
                                f"plate {self.plate_ids[p]} still disturbed at end of stream "
                                f"(since t={self.dist_t[p]:.2f}s, now {diff:+.0f} g); "
                                "its change is unknown",
                                self.plate_ids[p],
                            )
                        )
            self.mode[p] = STARTUP
        return changes, alerts

    # ---- one chunk -------------------------------------------------------------------------

    def _chunk(
        self, t: np.ndarray, raw: np.ndarray, changes: list[PlateChange], alerts: list[Alert]
    ) -> None:
        """``raw`` holds the chunk's rows plus the next row (the median filter's successor)."""
        n = t.shape[0]
        if n == 0:
            return
        cfg = self.cfg
        c, ws, wl = self.c, self.ws, self.wl
        base = self._n_seen  # absolute index of the chunk's first sample
        prev = np.concatenate([self._prev_raw[None, :], raw[:-2]])
        cur, nxt = raw[:-1], raw[1:]
        lo, hi_ = np.minimum(prev, nxt), np.maximum(prev, nxt)
        med = np.maximum(lo, np.minimum(hi_, cur))
        nanmed = np.isnan(med)
        filt = np.where(nanmed, cur, med)  # a NaN neighbour: keep the sample as it is
        self._prev_raw = raw[-2].copy()

        x = np.concatenate([self._carry_x, filt])
        tt = np.concatenate([self._carry_t, np.asarray(t, dtype=np.float64)])
        nan = np.isnan(x)
        any_nan = bool(nan.any())
        xz = x.astype(np.float64)
        xz -= self._ref
        if any_nan:
            xz[nan] = 0.0
        cs1 = np.zeros((c + n + 1, x.shape[1]))
        np.cumsum(xz, axis=0, out=cs1[1:])
        xz *= xz
        cs2 = np.zeros_like(cs1)
        np.cumsum(xz, axis=0, out=cs2[1:])
        hi, lo_ = slice(c + 1, c + n + 1), slice(c + 1 - ws, c + n + 1 - ws)
        s1 = cs1[hi] - cs1[lo_]
        var = cs2[hi] - cs2[lo_]
        var -= s1 * s1 / ws
        var /= ws - 1
        frozen = var <= cfg.frozen_sd_g**2
        fault = frozen
        n_nan: np.ndarray | None = None
        if any_nan:
            csn = np.zeros((c + n + 1, x.shape[1]), dtype=np.int32)
            np.cumsum(nan, axis=0, out=csn[1:])
            n_nan = csn[hi] - csn[lo_]
            fault = fault | (n_nan > 0)

        sd = np.sqrt(np.maximum(var, 0.0))
        vib = self._vibration(sd, fault)  # (n, groups→plates) factor >= 1
        sig_eff = self.sigma * vib
        quiet = var <= (cfg.stable_k * sig_eff) ** 2
        quiet &= ~fault

        # spikes: samples the median removed, far outside the local noise
        jump = np.abs(cur - filt)
        spike = jump > np.maximum(cfg.spike_min_g, cfg.spike_k * sig_eff)
        if spike.any():
            self._spikes(spike, tt[c:], alerts)

        # levels: L over wl (confirmation, flatness), Ls over ns (departure), at every row
        rows = np.arange(c, c + n)
        lvl = (cs1[rows + 1] - cs1[rows + 1 - wl]) / wl
        # level tests: white noise σ averages down with the window; the plate's own ringing
        # (vibration, 5-12 Hz) leaves a residual of a fraction of its window std
        flat_thr = np.maximum(cfg.depart_min_g, cfg.depart_k * self.sigma * np.sqrt(2.0 / wl))
        flat_thr = np.maximum(flat_thr, 0.5 * cfg.level_sd_k * sd)
        # flat: the level now equals the levels settle/2 and settle earlier (a bump between
        # two equal levels, such as the top of a slow press, is not flat)
        half = self.settle // 2
        flat = np.abs(lvl - (cs1[rows + 1 - half] - cs1[rows + 1 - half - wl]) / wl) <= flat_thr
        flat &= (
            np.abs(lvl - (cs1[rows + 1 - self.settle] - cs1[rows + 1 - self.settle - wl]) / wl)
            <= flat_thr
        )
        ns = self.ns
        ls_all = (cs1[ns:] - cs1[:-ns]) / ns  # ls_all[r - ns + 1] = mean of rows r-ns+1..r
        dep_thr = np.maximum(cfg.depart_min_g, cfg.depart_k * self.sigma * np.sqrt(2.0 / ns))
        dep_thr = np.maximum(dep_thr, cfg.level_sd_k * sd)
        rc_row = self._rest_confirm - base + c
        ref = np.maximum(rows[:, None] - self.lb, rc_row[None, :])
        ref = np.clip(ref, ns - 1, None)
        cols = np.arange(x.shape[1])
        ls_now = ls_all[rows - ns + 1]
        ls_ref = ls_all[ref - ns + 1, cols[None, :]]
        dep = np.abs(ls_now - ls_ref) > dep_thr
        dep &= quiet

        ch = _Chunk(base=base, cs1=cs1, cs2=cs2, dep_thr=dep_thr, flat=flat, flat_thr=flat_thr,
                    ls=ls_all, quiet=quiet, fault=fault, n_nan=n_nan, tt=tt, vib=vib)
        moved = quiet[0] != self._last_quiet
        moved |= (quiet[1:] != quiet[:-1]).any(axis=0)
        moved |= dep.any(axis=0)
        walk = np.flatnonzero(moved | (self.mode != REST))
        for p in walk:
            self._walk(int(p), ch, changes, alerts)

        if self.creep_n > 0:
            for p in np.flatnonzero(self.mode == DIST):
                self._track_jump(int(p), ch, int(self._dist_i[p]) - base + c, c + n)
        if self._prov:
            for p in [p for p, v in self._prov.items() if v[2] < base + n]:
                changes.append(self._prov.pop(p)[0])
        self._collect_noise(var, quiet & (vib <= 1.0), fault, base)
        self._last_quiet = quiet[-1].copy()
        self._carry_x = x[-c:].copy()
        self._carry_t = tt[-c:].copy()
        last = x[-1].astype(np.float64)
        self._ref = np.where(np.isfinite(last), last, self._ref)
        self._n_seen += n

    def _vibration(self, sd: np.ndarray, fault: np.ndarray) -> np.ndarray:
        """Per sample and plate, the factor by which its gondola's vibration scales its noise."""
        cfg = self.cfg
        ratio = np.where(fault, np.nan, sd / self.sigma)
        out = np.ones_like(sd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for idx in self._vib_batches:  # (gondolas, plates) of one size
                r = ratio[:, idx]
                v = np.median(r, axis=2)
                for j in np.flatnonzero(np.isnan(r).any(axis=(0, 2))):  # a faulty plate
                    v[:, j] = np.nanmedian(r[:, j], axis=1)
                m = 1.0 + cfg.vib_gain * (np.nan_to_num(v, nan=0.0) - cfg.vib_floor)
                out[:, idx] = np.maximum(m, 1.0)[:, :, None]
        return out

    def _spikes(self, spike: np.ndarray, t: np.ndarray, alerts: list[Alert]) -> None:
        for p in np.flatnonzero(spike.any(axis=0)):
            hits = np.flatnonzero(spike[:, p])
            self.spikes[p] += hits.size
            t0 = float(t[hits[0]])
            if t0 - self._spike_alert_t[p] >= self.cfg.alert_repeat_s:
                self._spike_alert_t[p] = t0
                alerts.append(
                    Alert(t0, "plate_spikes",
                          f"plate {self.plate_ids[p]} gives isolated spikes (filtered out; "
                          f"{int(self.spikes[p])} so far)", self.plate_ids[p])
                )

    def _level(self, ch: _Chunk, row: int, p: int) -> tuple[float, float]:
        """Mean and variance of the level window ending at ``row`` (chunk rows)."""
        wl = self.wl
        s1 = ch.cs1[row + 1, p] - ch.cs1[row + 1 - wl, p]
        s2 = ch.cs2[row + 1, p] - ch.cs2[row + 1 - wl, p]
        mean = s1 / wl
        var = max((s2 - s1 * s1 / wl) / (wl - 1), 0.0)
        return float(mean + self._ref[p]), max(float(var), self.sigma[p] ** 2) / wl

    def _open(
        self, p: int, ch: _Chunk, k: int, lookback_from: int, changes: list[PlateChange],
        slow: bool = False,
    ) -> None:
        """Open a disturbance at chunk index ``k``; the before level is the rest level
        ``lookback`` before ``lookback_from`` (never before the last confirmed rest), or, when a
        slow change is still held back, that change's own before level (they are one)."""
        c, base = self.c, ch.base
        prov = self._prov.pop(p, None)
        if prov is not None and prov[2] <= base + k:
            changes.append(prov[0])
            prov = None
        self._dist_i[p] = base + k
        self._chain[p] = prov[0] if prov is not None else None
        self._mids.pop(p, None)
        self._jump[p] = prov[4] if prov is not None else 0.0
        self._dist_press[p] = False
        if prov is not None:
            # the held change's level becomes a rest inside this disturbance: if the end
            # level differs from it and from the level before, they were two changes - unless
            # it crept in: then it was a hand's press, and only the end level counts
            held = prov[0]
            if not prov[3]:
                self._mids[p] = [(held.t_end, float(ch.tt[k + c]), held.after_g,
                                  max(held.var_g2 - prov[1], 0.0), float("inf"))]
            self._before[p], self._before_var[p] = prov[0].before_g, prov[1]
            self.dist_t[p] = prov[0].t_start
            self._dist_slow[p] = True
            self._dist_press[p] = prov[3]
        else:
            j = max(int(self._rest_confirm[p]), base + lookback_from - self.lb)
            self._before[p], self._before_var[p] = self._level(ch, j - base + c, p)
            self.dist_t[p] = float(ch.tt[k + c])
            self._dist_slow[p] = slow
        self._dist_vib[p] = float(ch.vib[k, p])
        self.mode[p] = DIST

    def _walk(self, p: int, ch: _Chunk, changes: list[PlateChange], alerts: list[Alert]) -> None:
        """Run the rest/disturbance state machine of plate ``p`` over its quiet runs."""
        c, ws, wl, base = self.c, self.ws, self.wl, ch.base
        quiet = ch.quiet[:, p]
        n = quiet.shape[0]
        cuts = np.flatnonzero(quiet[1:] != quiet[:-1]) + 1
        starts = [0, *cuts.tolist()]
        ends = [*cuts.tolist(), n]
        for a, b in zip(starts, ends, strict=True):
            if not quiet[a]:
                if self.mode[p] == DIST and self._quiet_since[p] >= 0:
                    self._mid_rest(p, ch, int(self._quiet_since[p]), a)
                self._quiet_since[p] = -1
                if self.mode[p] == REST:
                    self._open(p, ch, a, a - 1 - self.guard, changes)
                self._faults(p, a, b, ch, alerts)
                continue
            self._fault_run[p] = 0
            k = a
            while k < b:
                if self.mode[p] == REST:
                    d = self._departure(p, ch, k, b)
                    if d < 0:
                        break
                    self._open(p, ch, d, d, changes, slow=True)
                    self._quiet_since[p] = base + d
                    k = d
                    continue
                if self._quiet_since[p] < 0:
                    self._quiet_since[p] = base + k
                qs = int(self._quiet_since[p])
                first = max(qs + wl + self.settle - ws, base + k)
                if first > base + b - 1:
                    break  # quiet, but not for long enough yet
                ok = np.flatnonzero(ch.flat[first - base : b, p])
                if ok.size == 0:
                    break
                conf = first + int(ok[0])
                after, after_var = self._level(ch, conf - base + c, p)
                if self.mode[p] == DIST:
                    e = max(qs - ws + 1, int(self._dist_i[p]))
                    t_start = float(self.dist_t[p])
                    # the new level is only known to hold from the start of the span that
                    # confirmed it: a change that crept in while the plate stayed quiet (a
                    # shaking gondola) may have ended any time before that
                    e_known = max(e, conf - wl - self.settle + ws - 1)
                    t_end = max(float(ch.tt[e_known - base + c]), t_start)
                    prev = self._chain.pop(p, None)
                    if prev is not None and abs(after - prev.after_g) <= float(
                        ch.flat_thr[conf - base, p]
                    ):
                        t_end = prev.t_end  # it only wobbled: the change ended back then
                    t_conf = float(ch.tt[conf - base + c])
                    parts, rest = self._split(p, after, after_var, t_conf)
                    if parts:
                        changes.extend(parts)
                        t_start, self._before[p], self._before_var[p] = rest
                    change = PlateChange(
                        p, t_start, t_end, t_conf,
                        float(self._before[p]), after,
                        float(self._before_var[p] + after_var),
                        step=self._is_step(p, e),
                    )
                    crept = self._crept(p, ch, conf - base + c, change.delta_g)
                    # a slow change goes on being one; after a press, what follows is judged
                    # afresh (the press was the hand's, not the load's)
                    slow = self._dist_slow[p] and not self._dist_press[p]
                    hold = max(self.slow_hold if slow else 0, self.creep_hold if crept else 0)
                    if hold > 0:
                        # held until its level has lasted that long since the rest began
                        until = max(conf, e_known + hold)
                        self._prov[p] = (change, float(self._before_var[p]), until, crept,
                                         float(self._jump[p]))
                    else:
                        changes.append(change)
                self.mode[p] = REST
                self.dist_t[p] = np.nan
                self._rest_confirm[p] = conf
                if self.faulted[p]:  # the operator saw it die: say that it is back
                    alerts.append(Alert(float(ch.tt[conf - base + c]), "plate_recovered",
                                        f"plate {self.plate_ids[p]} reads normally again; its "
                                        "events are reported from here on", self.plate_ids[p]))
                self.faulted[p] = False
                k = conf - base + 1

    def _track_jump(self, p: int, ch: _Chunk, r0: int, r1: int) -> None:
        """Fold into ``_jump[p]`` the largest move of the short level over ``creep_n`` samples
        among chunk rows [r0, r1) (rows with their carry)."""
        d, ns = self.creep_n, self.ns
        r0 = max(r0, ns - 1 + d)
        if r1 <= r0:
            return
        lvl = ch.ls[r0 - ns + 1 - d : r1 - ns + 1, p]
        self._jump[p] = max(float(self._jump[p]), float(np.abs(lvl[d:] - lvl[:-d]).max()))

    def _crept(self, p: int, ch: _Chunk, r_conf: int, delta: float) -> bool:
        """Whether the disturbance of plate ``p`` settling at row ``r_conf`` crept in: no span
        of ``creep_step_s`` moved its level by half of its change. Items land and leave in a
        step; a hand pressing on the plate, or easing off, moves it gradually."""
        if self.creep_n <= 0:
            return False
        self._track_jump(p, ch, int(self._dist_i[p]) - ch.base + self.c, r_conf + 1)
        return bool(self._jump[p] < 0.5 * abs(delta))

    def _mid_rest(self, p: int, ch: _Chunk, qs: int, a: int) -> None:
        """A quiet run of an open disturbance ends at chunk index ``a`` before it could be
        confirmed: if it lasted ``split_min_s`` at one flat level, remember that level.

        Two shoppers taking from one plate a few seconds apart leave a short rest between their
        hands; without it the two picks would settle as one change of both weights.
        """
        c, base = self.c, ch.base
        lo = max(qs - self.ws + 1, int(self._dist_i[p]) + 1, base - c + 1)
        hi = base + a - self.ws - self.guard  # last sample before the new hand's window
        n = hi - lo + 1
        if self.split_n <= 0 or n < self.split_n:
            return
        r0, r1 = lo - base + c, hi - base + c  # rows of the chunk with its carry
        half = n // 2
        m1 = (ch.cs1[r0 + half, p] - ch.cs1[r0, p]) / half
        m2 = (ch.cs1[r1 + 1, p] - ch.cs1[r0 + half, p]) / (n - half)
        s1 = ch.cs1[r1 + 1, p] - ch.cs1[r0, p]
        s2 = ch.cs2[r1 + 1, p] - ch.cs2[r0, p]
        var = max((s2 - s1 * s1 / n) / (n - 1), float(self.sigma[p]) ** 2)
        thr = max(self.cfg.depart_min_g, self.cfg.depart_k * np.sqrt(var * 4.0 / n))
        if abs(m1 - m2) > thr:
            return  # still creeping: not a rest
        level = float(s1 / n + self._ref[p])
        jump = float("inf")
        if self.creep_n > 0:
            self._track_jump(p, ch, int(self._dist_i[p]) - base + c, r1 + 1)
            jump = float(self._jump[p])
        self._mids.setdefault(p, []).append(
            (float(ch.tt[r0]), float(ch.tt[r1]), level, var / n, jump)
        )

    def _split(
        self, p: int, after: float, after_var: float, t_conf: float
    ) -> tuple[list[PlateChange], tuple[float, float, float]]:
        """The changes before the last one when an open disturbance held short rests at
        levels different from both neighbours (two hands one after the other), and the start,
        level and variance the last change then starts from; no changes if there were none."""
        mids = self._mids.pop(p, None)
        if not mids:
            return [], (0.0, 0.0, 0.0)
        cfg = self.cfg
        levels = [(float(self.dist_t[p]), float(self.dist_t[p]), float(self._before[p]),
                   float(self._before_var[p]), float("inf"))]
        for m in mids:
            prev = levels[-1]
            thr = max(cfg.min_delta_g, cfg.event_k * np.sqrt(prev[3] + m[3]))
            thr_after = max(cfg.min_delta_g, cfg.event_k * np.sqrt(m[3] + after_var))
            thr_undo = max(cfg.min_delta_g, cfg.event_k * np.sqrt(prev[3] + after_var))
            if (abs(m[2] - prev[2]) > thr and abs(after - m[2]) > thr_after
                    and abs(after - prev[2]) > thr_undo  # an undone press is no split
                    and m[4] >= 0.5 * abs(m[2] - prev[2])):  # nor a pause in a slow release
                levels.append(m)
        parts = [
            PlateChange(p, prev[1], m[0], t_conf, prev[2], m[2], prev[3] + m[3])
            for prev, m in pairwise(levels)
        ]
        last = levels[-1]
        return parts, (last[1], last[2], last[3])

    def _is_step(self, p: int, e: int) -> bool:
        """A clean, fast step while the gondola was still (nobody near): a recalibration."""
        if self._dist_slow[p] or self._dist_vib[p] > self.cfg.recal_max_vib:
            return False
        return e - int(self._dist_i[p]) <= self.recal_n

    def _departure(self, p: int, ch: _Chunk, a: int, b: int) -> int:
        """First chunk index in [a, b) where a resting plate's level has left the level
        ``lookback`` earlier (or its last confirmed rest, if more recent); -1 if none."""
        c, ns = self.c, self.ns
        rows = np.arange(a + c, b + c)
        rc = int(self._rest_confirm[p]) - ch.base + c
        ref = np.clip(np.maximum(rows - self.lb, rc), ns - 1, None)
        d = np.abs(ch.ls[rows - ns + 1, p] - ch.ls[ref - ns + 1, p]) > ch.dep_thr[a:b, p]
        hit = np.flatnonzero(d)
        return a + int(hit[0]) if hit.size else -1

    def _faults(self, p: int, a: int, b: int, ch: _Chunk, alerts: list[Alert]) -> None:
        """Track runs of NaN/frozen windows inside a disturbed run; alert and reset when long."""
        f = ch.fault[a:b, p]
        if not f.any():
            self._fault_run[p] = 0
            return
        n_nan = ch.n_nan
        edges = np.flatnonzero(np.diff(np.concatenate([[False], f, [False]]).astype(np.int8)))
        carry = int(self._fault_run[p]) if a == 0 else 0
        for r0, r1 in zip(edges[::2], edges[1::2], strict=True):
            c0 = carry if r0 == 0 else 0
            if c0 + (r1 - r0) >= self.fault_n:
                hit = a + r0 + max(0, self.fault_n - c0 - 1)
                self.mode[p] = STARTUP
                self.dist_t[p] = np.nan
                self._prov.pop(p, None)
                if not self.faulted[p]:
                    self.faulted[p] = True
                    dead = n_nan is not None and n_nan[hit, p] > 0
                    value = float(ch.cs1[hit + self.c + 1, p] - ch.cs1[hit + self.c, p])
                    zero = not dead and abs(value + self._ref[p]) < 1e-6
                    kind = "plate_dead" if dead or zero else "plate_stuck"
                    what = (
                        "no readings (NaN)" if dead
                        else "a constant zero" if zero
                        else "a frozen, noiseless value"
                    )
                    alerts.append(
                        Alert(
                            float(ch.tt[hit + self.c]),
                            kind,
                            f"plate {self.plate_ids[p]} gives {what}; its events are "
                            "suppressed until it reads normally again",
                            self.plate_ids[p],
                        )
                    )
        last_run = edges[-1] - edges[-2] if edges[-1] == b - a else 0
        if last_run and edges[-2] == 0:
            last_run += carry
        self._fault_run[p] = last_run

    def _collect_noise(
        self, var: np.ndarray, quiet: np.ndarray, fault: np.ndarray, base: int
    ) -> None:
        """Keep the window stds that describe the noise (every stride-th, by absolute index).

        Before a plate's σ is known, all its valid windows count (plates rest far more than
        they are touched, so the median is noise); afterwards only quiet ones without gondola
        vibration do, so that long interactions cannot inflate it.
        """
        stride = max(1, self.ws // 2)
        rows = slice((-base) % stride, None, stride)
        pick = np.where(self._sigma_known, quiet[rows], ~fault[rows])
        self._noise_acc.append(np.where(pick, np.sqrt(np.maximum(var[rows], 0.0)), np.nan))

    def _update_noise(self, full: bool) -> None:
        """Per-plate noise σ: the first estimate as soon as there are enough windows, then
        (``full``) a log-EMA of each segment's median window std."""
        if not self._noise_acc:
            return
        sd = np.concatenate(self._noise_acc)
        self._noise_acc = [sd]
        known = self._sigma_known
        enough = np.count_nonzero(~np.isnan(sd), axis=0) >= 4
        todo = enough & (True if full else ~known)
        if full:
            self._noise_acc = []
        if not todo.any():
            return
        cols = np.flatnonzero(todo)
        cand = np.maximum(np.nanmedian(sd[:, cols], axis=0), 1e-9)
        was = known[cols]
        alpha = 1.0 - np.exp(-self.seg / (self.cfg.noise_tau_s * self.rate_hz))
        old = self.sigma[cols]
        new = np.where(was, np.exp((1 - alpha) * np.log(old) + alpha * np.log(cand)), cand)
        self.sigma[cols] = np.maximum(new, self.cfg.min_noise_g)
        self._sigma_known[cols] = True
        if not full:
            sd[:, cols] = np.nan  # collected under the "all windows" rule: start afresh
