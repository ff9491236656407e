"""COCO-17 skeletons from a body state (position, heading, gait, reach), vectorised over time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from walkout.events import L_ELBOW, L_WRIST, N_JOINTS, R_ELBOW, R_WRIST

# Standing template for a 1 m tall person; body frame: x forward, y left, z up.
_TEMPLATE = np.array(
    [
        (0.08, 0.0, 0.935),  # nose
        (0.06, 0.03, 0.95),  # left eye
        (0.06, -0.03, 0.95),  # right eye
        (0.0, 0.07, 0.94),  # left ear
        (0.0, -0.07, 0.94),  # right ear
        (0.0, 0.12, 0.82),  # left shoulder
        (0.0, -0.12, 0.82),  # right shoulder
        (0.0, 0.14, 0.64),  # left elbow
        (0.0, -0.14, 0.64),  # right elbow
        (0.02, 0.14, 0.48),  # left wrist
        (0.02, -0.14, 0.48),  # right wrist
        (0.0, 0.06, 0.53),  # left hip
        (0.0, -0.06, 0.53),  # right hip
        (0.0, 0.06, 0.29),  # left knee
        (0.0, -0.06, 0.29),  # right knee
        (0.0, 0.06, 0.04),  # left ankle
        (0.0, -0.06, 0.04),  # right ankle
    ],
    dtype=np.float64,
)
_SHOULDER = {L_WRIST: 5, R_WRIST: 6}
_ELBOW = {L_WRIST: L_ELBOW, R_WRIST: R_ELBOW}


@dataclass(frozen=True, slots=True)
class BodyState:
    """Per-sample body state of one person (all arrays of length n)."""

    xy: np.ndarray  # (n, 2) position of the pelvis on the floor
    heading: np.ndarray  # (n,) radians, direction the person faces
    gait: np.ndarray  # (n,) gait phase in radians (advances while walking)
    stride: np.ndarray  # (n,) 0 standing .. 1 full walking swing
    reach: np.ndarray  # (n,) 0 arm at rest .. 1 wrist at the reach target
    reach_target: np.ndarray  # (n, 3) world point the reaching wrist goes to
    reach_wrist: np.ndarray  # (n,) joint index of the reaching wrist (L_WRIST or R_WRIST)
    height: float


def skeleton(state: BodyState) -> np.ndarray:
    """(n, 17, 3) world joint positions for a body state."""
    n = len(state.heading)
    h = state.height
    body = np.broadcast_to(_TEMPLATE * h, (n, N_JOINTS, 3)).copy()
    # gait: legs and arms swing in opposition
    swing = np.sin(state.gait) * state.stride
    body[:, 13, 0] += 0.10 * h * swing
    body[:, 15, 0] += 0.22 * h * swing
    body[:, 14, 0] -= 0.10 * h * swing
    body[:, 16, 0] -= 0.22 * h * swing
    body[:, 7, 0] -= 0.05 * h * swing
    body[:, 9, 0] -= 0.12 * h * swing
    body[:, 8, 0] += 0.05 * h * swing
    body[:, 10, 0] += 0.12 * h * swing
    body[:, :, 2] += 0.015 * h * np.abs(np.cos(state.gait))[:, None] * state.stride[:, None]

    c, s = np.cos(state.heading), np.sin(state.heading)
    world = np.empty_like(body)
    world[..., 0] = state.xy[:, 0, None] + c[:, None] * body[..., 0] - s[:, None] * body[..., 1]
    world[..., 1] = state.xy[:, 1, None] + s[:, None] * body[..., 0] + c[:, None] * body[..., 1]
    world[..., 2] = body[..., 2]

    # squat for low shelves: knees bend forward, hips drop, the trunk leans towards the shelf
    drop = np.clip(0.8 - state.reach_target[:, 2], 0.0, 0.55) * state.reach  # metres
    fwd = np.stack([c, s], axis=1)
    lean = (0.35 * drop)[:, None]
    world[:, 11:13, 2] -= drop[:, None]  # hips
    world[:, 13:15, 2] -= 0.5 * drop[:, None]  # knees come down half as much...
    world[:, 13:15, :2] += (fwd * 0.5 * drop[:, None])[:, None, :]  # ...and forward
    upper = np.arange(N_JOINTS) < 11  # head, shoulders, arms follow the hips and lean forward
    world[:, upper, 2] -= drop[:, None]
    world[:, upper, :2] += (fwd * lean)[:, None, :]

    # the reaching arm: wrist blends towards the target, elbow between shoulder and wrist
    r = state.reach[:, None]
    for wrist in (L_WRIST, R_WRIST):
        m = (state.reach_wrist == wrist) & (state.reach > 0)
        if not m.any():
            continue
        rest = world[m, wrist]
        target = state.reach_target[m]
        world[m, wrist] = rest + (target - rest) * r[m]
        shoulder = world[m, _SHOULDER[wrist]]
        elbow = 0.5 * (shoulder + world[m, wrist])
        elbow[:, 2] -= 0.08 * h * (1 - 0.5 * r[m, 0])
        world[m, _ELBOW[wrist]] = world[m, _ELBOW[wrist]] * (1 - r[m]) + elbow * r[m]
    return world.astype(np.float32)
