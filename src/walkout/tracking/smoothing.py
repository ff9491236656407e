"""Causal temporal smoothing of tracked 3D joints: a one-euro filter per track and joint.

Triangulated joints jitter by a few centimetres from frame to frame (2D detector noise, a view
dropped or regained by the outlier test). A fixed low-pass filter would remove the jitter but
lag behind a fast hand; the one-euro filter (Casiez, Roussel & Vogel, CHI 2012) adapts its
cut-off to the joint's own speed, smoothing hard at rest and little in fast motion. It is
causal (no look-ahead), costs a few array operations per frame, and keeps no state beyond the
last filtered position and velocity of each track.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class OneEuroConfig:
    """Filter settings, in the paper's terms (Hz for cut-offs, s/m for ``beta``).

    The defaults are the usual starting point of the method (1 Hz minimum and derivative
    cut-offs) with ``beta`` so that the cut-off doubles at 1 m/s, a brisk hand movement.
    """

    rate_hz: float = 25.0  # frame rate of the sequence
    min_cutoff_hz: float = 1.0  # cut-off at rest
    beta: float = 1.0  # cut-off increase per m/s of joint speed
    d_cutoff_hz: float = 1.0  # cut-off of the speed estimate
    forget_frames: int = 5  # a track unseen this long restarts from its next measurement

    def __post_init__(self) -> None:
        if self.rate_hz <= 0 or self.min_cutoff_hz <= 0 or self.d_cutoff_hz <= 0:
            raise ValueError("rate_hz, min_cutoff_hz and d_cutoff_hz must be positive")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")


def _alpha(cutoff_hz: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of an exponential filter with this cut-off at step ``dt``."""
    r = 2.0 * math.pi * np.asarray(cutoff_hz) * dt
    return r / (r + 1.0)


@dataclass(slots=True)
class _State:
    x: np.ndarray  # (J, 3) filtered position (NaN: joint never seen)
    dx: np.ndarray  # (J, 3) filtered velocity, m/s
    frame: int


class JointSmoother:
    """One-euro filter over ``(J, 3)`` joint arrays keyed by track id.

    A joint that is NaN in the input stays NaN in the output and leaves its state unchanged;
    a joint seen for the first time starts from its measurement.
    """

    def __init__(self, config: OneEuroConfig | None = None) -> None:
        self.cfg = config or OneEuroConfig()
        self._state: dict[int, _State] = {}
        self._frame = 0

    def step(self, tracks: Iterable[tuple[int, np.ndarray]]) -> list[np.ndarray]:
        """Filter this frame's ``(track id, joints (J, 3))`` pairs; returns filtered joints."""
        cfg = self.cfg
        dt = 1.0 / cfg.rate_hz
        out = []
        for tid, x in tracks:
            x = np.asarray(x, dtype=np.float64)
            st = self._state.get(tid)
            if st is None or self._frame - st.frame > cfg.forget_frames:
                st = _State(x=x.copy(), dx=np.zeros_like(x), frame=self._frame)
                self._state[tid] = st
                out.append(x.copy())
                continue
            gap = self._frame - st.frame  # frames since this track's last measurement
            h = gap * dt
            known = np.isfinite(x[:, 0]) & np.isfinite(st.x[:, 0])
            new = np.isfinite(x[:, 0]) & ~np.isfinite(st.x[:, 0])
            dx_raw = np.where(known[:, None], (x - np.where(known[:, None], st.x, 0.0)) / h, 0.0)
            dx = st.dx + _alpha(cfg.d_cutoff_hz, h) * (dx_raw - st.dx)
            speed = np.linalg.norm(dx, axis=1, keepdims=True)
            a = _alpha(cfg.min_cutoff_hz + cfg.beta * speed, h)
            xf = np.where(known[:, None], st.x + a * (x - st.x), st.x)
            xf[new] = x[new]
            st.dx = np.where(known[:, None], dx, np.where(new[:, None], 0.0, st.dx))
            st.x = xf
            st.frame = self._frame
            out.append(np.where(np.isfinite(x[:, :1]), xf, np.nan))
        self._frame += 1
        if len(self._state) > 64:
            self._state = {
                k: s for k, s in self._state.items() if self._frame - s.frame <= cfg.forget_frames
            }
        return out
