"""Synthetic walking skeletons for the tracker tests (offered as fixtures: pytest runs with
``--import-mode=importlib``, so test modules cannot import a helper module by name).

A standing 1.70 m COCO-17 skeleton is scaled to the person's height, turned to face the walking
direction, and animated: legs and arms swing with the gait, and an optional "pick" reaches one
wrist forward to a shelf target while the person stands still.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from walkout.events import L_ANKLE, L_WRIST, R_ANKLE, R_WRIST
from walkout.sim.cameras import STANDING_SKELETON, PersonPath

HZ = 30.0
L_ELBOW, R_ELBOW, L_KNEE, R_KNEE = 7, 8, 13, 14


@dataclass(frozen=True)
class Pick:
    """Reach the right wrist to ``target`` (world xyz) from ``t0`` for ``duration`` seconds."""

    t0: float
    duration: float
    target: tuple[float, float, float]


def walk(
    person_id: int,
    waypoints: Sequence[tuple[float, float]],
    t0: float = 0.0,
    speed: float = 1.2,
    height: float = 1.7,
    stops: Sequence[tuple[int, float]] = (),
    picks: Sequence[Pick] = (),
) -> PersonPath:
    """A person walking through ``waypoints`` at ``speed`` m/s, starting at ``t0``.

    ``stops`` are ``(waypoint index, seconds)`` pauses; picks should fall inside a stop.
    """
    wp = np.asarray(waypoints, dtype=np.float64)
    pause = dict(stops)
    # Piecewise timeline of (time, xy) knots.
    knots_t, knots_xy = [t0], [wp[0]]
    t = t0
    if 0 in pause:
        t += pause[0]
        knots_t.append(t)
        knots_xy.append(wp[0])
    for i in range(1, len(wp)):
        t += float(np.linalg.norm(wp[i] - wp[i - 1])) / speed
        knots_t.append(t)
        knots_xy.append(wp[i])
        if i in pause:
            t += pause[i]
            knots_t.append(t)
            knots_xy.append(wp[i])
    kt = np.asarray(knots_t)
    kxy = np.asarray(knots_xy)
    times = t0 + np.arange(int(np.floor((kt[-1] - t0) * HZ)) + 1) / HZ
    xy = np.stack([np.interp(times, kt, kxy[:, k]) for k in range(2)], axis=1)

    vel = np.gradient(xy, axis=0) * HZ
    spd = np.linalg.norm(vel, axis=1)
    heading = np.zeros(len(times))
    h = 0.0
    seg = wp[1] - wp[0] if len(wp) > 1 else np.array([1.0, 0.0])
    h = float(np.arctan2(seg[1], seg[0]))
    for i in range(len(times)):  # keep the last heading while standing still
        if spd[i] > 0.05:
            h = float(np.arctan2(vel[i, 1], vel[i, 0]))
        heading[i] = h
    dist = np.concatenate([[0.0], np.cumsum(spd[1:] / HZ)])
    phase = 2 * np.pi * dist / 1.4  # one stride (two steps) per 1.4 m
    swing = np.sin(phase) * np.minimum(spd / 1.0, 1.0)

    local = np.repeat(STANDING_SKELETON[None] * (height / 1.7), len(times), axis=0)
    local[:, L_ANKLE, 0] += 0.30 * swing
    local[:, R_ANKLE, 0] -= 0.30 * swing
    local[:, L_KNEE, 0] += 0.15 * swing
    local[:, R_KNEE, 0] -= 0.15 * swing
    local[:, L_WRIST, 0] -= 0.25 * swing  # arms swing against the legs
    local[:, R_WRIST, 0] += 0.25 * swing
    local[:, L_ELBOW, 0] -= 0.10 * swing
    local[:, R_ELBOW, 0] += 0.10 * swing

    c, s = np.cos(heading), np.sin(heading)
    world = np.empty_like(local)
    world[..., 0] = c[:, None] * local[..., 0] - s[:, None] * local[..., 1] + xy[:, None, 0]
    world[..., 1] = s[:, None] * local[..., 0] + c[:, None] * local[..., 1] + xy[:, None, 1]
    world[..., 2] = local[..., 2]

    shoulder = 6
    for pk in picks:
        # Smooth reach profile: 0 -> 1 -> 0 over the pick.
        u = np.clip((times - pk.t0) / pk.duration, 0.0, 1.0)
        a = np.sin(np.pi * u) ** 2
        tgt = np.asarray(pk.target)
        w0 = world[:, R_WRIST].copy()
        world[:, R_WRIST] = w0 + a[:, None] * (tgt - w0)
        mid = (world[:, shoulder] + world[:, R_WRIST]) / 2.0 - np.array([0, 0, 0.05])
        e0 = world[:, R_ELBOW].copy()
        world[:, R_ELBOW] = e0 + a[:, None] * (mid - e0)
    return PersonPath(person_id, times, world.astype(np.float32))


def aisle_crowd(
    n: int, duration_s: float, rng: np.random.Generator, gap_s: float = 2.0
) -> list[PersonPath]:
    """``n`` shoppers of the "small" store entering ``gap_s`` apart and roaming its aisles.

    Everyone keeps to the right of the aisle they walk (±0.35 m), so people meeting head-on
    pass 0.7 m apart, as real shoppers do, instead of walking through each other.
    """
    aisles_y = (2.5, 5.5, 8.3)
    paths = []
    for i in range(n):
        x, y = float(rng.uniform(1.0, 1.8)), 0.3
        wps = [(x, y)]
        t_end = i * gap_s
        while t_end < duration_s + 5:
            ay = float(aisles_y[rng.integers(3)])
            side_x = 1.0 if rng.random() < 0.5 else 9.0
            # go to the corridor, along it to the aisle, then along the aisle
            dy = 1 if ay > y else -1
            cx = side_x + (0.35 if dy > 0 else -0.35) * (1 if side_x < 5 else -1)
            tx = float(rng.uniform(1.5, 8.5))
            dx = 1 if tx > cx else -1
            ay_lane = ay - 0.35 * dx
            wps += [(cx, y), (cx, ay_lane), (tx, ay_lane)]
            x, y = tx, ay_lane
            t_end = (
                i * gap_s
                + sum(float(np.hypot(*np.subtract(b, a))) for a, b in itertools.pairwise(wps)) / 0.9
            )
        p = walk(i, wps, t0=i * gap_s, speed=0.9, height=float(rng.uniform(1.55, 1.9)))
        keep = p.t <= duration_s
        paths.append(PersonPath(i, p.t[keep], p.joints[keep]))
    return paths


@pytest.fixture(scope="session")
def walker() -> type[Walker]:
    """The helpers as one namespace: ``walker.walk``, ``walker.Pick``, ``walker.aisle_crowd``."""
    return Walker


class Walker:
    walk = staticmethod(walk)
    aisle_crowd = staticmethod(aisle_crowd)
    Pick = Pick
