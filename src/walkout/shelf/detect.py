"""Per-plate rest → disturbance → rest detection, streaming and vectorised across plates.

A plate is *quiet* at a sample when the std of the last ``stable_window`` samples is below
``stable_k`` × its noise σ. Hand presses, ringing and steps all break quietness; drift never
does (it is far too slow). A disturbance ends when the plate has been quiet for a whole level
window, and the settled change is the mean of that window minus the mean of the rest window
before the disturbance. Comparing neighbouring rests only is what makes the detector immune to
drift and to the unknown tare, and a press that leaves nothing behind yields a change of ~0.

The heavy work (rolling sums over every sample of every plate) is numpy on cumulative sums;
Python only walks the few quiet/disturbed transitions of the plates that have any.
NaN readings and frozen readings (a std of exactly ~0: real load cells always have noise)
are never quiet; when they last ``fault_after_s`` the plate raises an alert and forgets its
rest level, so that a sensor coming back with another tare cannot fake an event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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

    @property
    def delta_g(self) -> float:
        return self.after_g - self.before_g


class PlateDetector:
    """Streaming detector for all plates of a store (columns in store.plate_ids order)."""

    def __init__(
        self,
        plate_ids: tuple[str, ...],
        noise_g: np.ndarray,
        config: ShelfConfig,
        rate_hz: float,
    ) -> None:
        self.cfg = config
        self.plate_ids = plate_ids
        n_p = len(plate_ids)
        self.ws = max(3, round(config.stable_window_s * rate_hz))
        self.wl = max(self.ws, round(config.level_window_s * rate_hz))
        self.guard = round(config.guard_s * rate_hz)
        self.fault_n = max(1, round(config.fault_after_s * rate_hz))
        self.rate_hz = rate_hz
        self.c = self.wl + self.guard + 1  # rows carried between chunks
        self.unit = max(4 * self.ws, round(2.0 * rate_hz))  # first noise estimates: 2 s
        self.seg = self.unit * max(1, round(config.noise_update_s * rate_hz / self.unit))
        self._noise_acc: list[np.ndarray] = []
        self._carry_x = np.full((self.c, n_p), np.nan, dtype=np.float32)
        self._carry_t = np.full(self.c, np.nan)
        self._n_seen = 0
        self._ref = np.zeros(n_p)
        self.sigma = np.maximum(np.asarray(noise_g, dtype=np.float64), config.min_noise_g)
        self._sigma_known = np.zeros(n_p, dtype=bool)
        self.mode = np.full(n_p, STARTUP, dtype=np.int8)
        self.dist_t = np.full(n_p, np.nan)  # start time of the open disturbance
        self._before = np.zeros(n_p)
        self._before_var = np.zeros(n_p)
        self._rest_confirm = np.zeros(n_p, dtype=np.int64)
        self._quiet_since = np.full(n_p, -1, dtype=np.int64)
        self._last_quiet = np.zeros(n_p, dtype=bool)
        self._fault_run = np.zeros(n_p, dtype=np.int64)
        self.faulted = np.zeros(n_p, dtype=bool)

    # ---- streaming -------------------------------------------------------------------------

    def push(self, t: np.ndarray, grams: np.ndarray) -> tuple[list[PlateChange], list[Alert]]:
        """Consume samples (any count), return the disturbances that settled and new alerts."""
        changes: list[PlateChange] = []
        alerts: list[Alert] = []
        i, n = 0, t.shape[0]
        while i < n:
            # Chunks never straddle a noise update, so results do not depend on block sizes.
            # Updates come every `unit` samples while some plate's noise is still unknown,
            # then every `seg` samples.
            settled = bool((self._sigma_known | self.faulted).all())
            step = self.seg if settled else self.unit
            boundary = (self._n_seen // step + 1) * step
            take = min(n - i, boundary - self._n_seen, self.cfg.chunk_samples)
            self._chunk(t[i : i + take], grams[i : i + take], changes, alerts)
            i += take
            if self._n_seen % self.unit == 0:
                self._update_noise(full=self._n_seen % self.seg == 0)
        return changes, alerts

    def flush(self) -> tuple[list[PlateChange], list[Alert]]:
        """End of stream: settle disturbances whose plate is quiet but not yet for a full level
        window (using what there is); report the ones still disturbed."""
        changes: list[PlateChange] = []
        alerts: list[Alert] = []
        end = self._n_seen
        t_last = float(self._carry_t[-1])
        for p in np.flatnonzero(self.mode == DIST):
            qs = int(self._quiet_since[p])
            if qs >= 0 and not self.faulted[p]:
                e = qs - self.ws + 1
                rows = slice(self.c - (end - e), self.c)
                seg = self._carry_x[rows, p].astype(np.float64)
                after = float(seg.mean())
                var = self._before_var[p] + self.sigma[p] ** 2 / seg.size
                t_end = float(self._carry_t[rows][0])
                changes.append(
                    PlateChange(
                        int(p),
                        float(self.dist_t[p]),
                        t_end,
                        t_last,
                        float(self._before[p]),
                        after,
                        var,
                    )
                )
            elif not self.faulted[p]:
                alerts.append(
                    Alert(
                        t_last,
                        "shelf_unsettled",
                        f"plate {self.plate_ids[p]} still disturbed at end of stream "
                        f"(since t={self.dist_t[p]:.2f}s); its change is unknown",
                        self.plate_ids[p],
                    )
                )
            self.mode[p] = STARTUP
        return changes, alerts

    # ---- one chunk -------------------------------------------------------------------------

    def _chunk(
        self, t: np.ndarray, g: np.ndarray, changes: list[PlateChange], alerts: list[Alert]
    ) -> None:
        n = t.shape[0]
        if n == 0:
            return
        c, ws, wl = self.c, self.ws, self.wl
        base = self._n_seen  # absolute index of the chunk's first sample
        x = np.concatenate([self._carry_x, np.asarray(g, dtype=np.float32)])
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
        hi, lo = slice(c + 1, c + n + 1), slice(c + 1 - ws, c + n + 1 - ws)
        s1 = cs1[hi] - cs1[lo]
        var = cs2[hi] - cs2[lo]
        var -= s1 * s1 / ws
        var /= ws - 1
        frozen = var <= self.cfg.frozen_sd_g**2
        quiet = var <= (self.cfg.stable_k * self.sigma) ** 2
        quiet &= ~frozen
        fault = frozen
        n_nan: np.ndarray | None = None
        if any_nan:
            csn = np.zeros((c + n + 1, x.shape[1]), dtype=np.int32)
            np.cumsum(nan, axis=0, out=csn[1:])
            n_nan = csn[hi] - csn[lo]
            bad = n_nan > 0
            quiet &= ~bad
            fault = fault | bad

        def level(row: int, p: int) -> float:
            return float((cs1[row + 1, p] - cs1[row + 1 - wl, p]) / wl + self._ref[p])

        moved = quiet[0] != self._last_quiet
        moved |= (quiet[1:] != quiet[:-1]).any(axis=0)
        walk = np.flatnonzero(moved | (self.mode != REST))
        for p in walk:
            self._walk(int(p), quiet[:, p], fault[:, p], n_nan, base, tt, level, changes, alerts)

        self._collect_noise(var, quiet, fault, base)
        self._last_quiet = quiet[-1].copy()
        self._carry_x = x[-c:].copy()
        self._carry_t = tt[-c:].copy()
        last = x[-1].astype(np.float64)
        self._ref = np.where(np.isfinite(last), last, self._ref)
        self._n_seen += n

    def _walk(
        self,
        p: int,
        quiet: np.ndarray,
        fault: np.ndarray,
        n_nan: np.ndarray | None,
        base: int,
        tt: np.ndarray,
        level: Callable[[int, int], float],
        changes: list[PlateChange],
        alerts: list[Alert],
    ) -> None:
        """Run the rest/disturbance state machine of plate ``p`` over its quiet runs."""
        c, ws, wl, n = self.c, self.ws, self.wl, quiet.shape[0]
        cuts = np.flatnonzero(quiet[1:] != quiet[:-1]) + 1
        starts = [0, *cuts.tolist()]
        ends = [*cuts.tolist(), n]
        for a, b in zip(starts, ends, strict=True):
            if quiet[a]:
                self._fault_run[p] = 0
                if self.mode[p] == REST:
                    continue
                if self._quiet_since[p] < 0:
                    self._quiet_since[p] = base + a
                conf = int(self._quiet_since[p]) + wl - ws
                if conf > base + b - 1:
                    continue  # quiet, but not for long enough yet
                after = level(conf - base + c, p)
                if self.mode[p] == DIST:
                    e = int(self._quiet_since[p]) - ws + 1
                    var = self._before_var[p] + self.sigma[p] ** 2 / wl
                    changes.append(
                        PlateChange(
                            p,
                            float(self.dist_t[p]),
                            max(float(tt[e - base + c]), float(self.dist_t[p])),
                            float(tt[conf - base + c]),
                            float(self._before[p]),
                            after,
                            float(var),
                        )
                    )
                self.mode[p] = REST
                self.dist_t[p] = np.nan
                self._rest_confirm[p] = conf
                self.faulted[p] = False
            else:
                self._quiet_since[p] = -1
                if self.mode[p] == REST:
                    lvl = max(int(self._rest_confirm[p]), base + a - 1 - self.guard)
                    self._before[p] = level(lvl - base + c, p)
                    self._before_var[p] = self.sigma[p] ** 2 / wl
                    self.dist_t[p] = float(tt[a + c])
                    self.mode[p] = DIST
                self._faults(p, a, b, fault, n_nan, tt, alerts)

    def _faults(
        self,
        p: int,
        a: int,
        b: int,
        fault: np.ndarray,
        n_nan: np.ndarray | None,
        tt: np.ndarray,
        alerts: list[Alert],
    ) -> None:
        """Track runs of NaN/frozen windows inside a disturbed run; alert and reset when long."""
        f = fault[a:b]
        if not f.any():
            self._fault_run[p] = 0
            return
        edges = np.flatnonzero(np.diff(np.concatenate([[False], f, [False]]).astype(np.int8)))
        carry = int(self._fault_run[p]) if a == 0 else 0
        for r0, r1 in zip(edges[::2], edges[1::2], strict=True):
            c0 = carry if r0 == 0 else 0
            if c0 + (r1 - r0) >= self.fault_n:
                hit = a + r0 + max(0, self.fault_n - c0 - 1)
                self.mode[p] = STARTUP
                self.dist_t[p] = np.nan
                if not self.faulted[p]:
                    self.faulted[p] = True
                    dead = n_nan is not None and n_nan[hit, p] > 0
                    kind = "plate_dead" if dead else "plate_stuck"
                    what = "no readings (NaN)" if dead else "a frozen, noiseless value"
                    alerts.append(
                        Alert(
                            float(tt[hit + self.c]),
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
        they are touched, so the median is noise); afterwards only quiet ones do, so that long
        interactions cannot inflate it.
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
