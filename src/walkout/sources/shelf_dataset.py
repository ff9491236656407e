"""Reader for the Shelf multi-view multi-person 3D pose benchmark (Belagiannis et al.).

The layout is the one described in ``shared/data/README.md`` (section ``shelf/``):

- ``calibration.json``: per camera ``K`` (3x3 row-major), ``RT`` (3x4 row-major world → camera)
  and ``imgSize`` (width, height). There is no lens distortion.
- ``detection/{view}.txt``: OpenPose BODY25 joint candidates and part-affinity scores, one block
  per frame. Header ``skelType frameCount``; then per frame, for each of the 25 joints a count
  ``n`` and three rows of ``n`` numbers (x, y normalised to [0, 1], score), then for each of the
  26 BODY25 part-affinity pairs (:data:`BODY25_PAFS`) an ``nA x nB`` matrix, row-major.
  Coordinates are scaled to pixels with ``width - 1`` / ``height - 1``.
- ``gt.txt`` and ``skel.txt``: skeleton sequences. Header ``jointCount frameCount``; per frame a
  person count and, per person, its id and a ``4 x J`` matrix (x, y, z, valid) in metres.

Everything is returned as frozen dataclasses holding numpy arrays; nothing leaves as a dict of
untyped values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BODY25_TYPE = 4
N_BODY25 = 25
# OpenPose BODY25 part-affinity pairs (joint A, joint B), in the detector's output order.
BODY25_PAFS: tuple[tuple[int, int], ...] = (
    (1, 8), (9, 10), (10, 11), (8, 9), (8, 12), (12, 13), (13, 14), (1, 2), (2, 3),
    (3, 4), (2, 17), (1, 5), (5, 6), (6, 7), (5, 18), (1, 0), (0, 15), (0, 16), (15, 17),
    (16, 18), (14, 19), (19, 20), (14, 21), (11, 22), (22, 23), (11, 24),
)  # fmt: skip
N_VIEWS = 5
# The 15 ground-truth joints, in gt.txt order.
SHELF15_JOINTS: tuple[str, ...] = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "r_wrist", "r_elbow",
    "r_shoulder", "l_shoulder", "l_elbow", "l_wrist", "neck", "head_top", "pelvis",
)  # fmt: skip


class ShelfDataError(ValueError):
    """A Shelf file does not follow the documented layout (message names file and place)."""


@dataclass(frozen=True, slots=True)
class ShelfCamera:
    """A pinhole camera: ``x ~ K (R X + t)``, pixels, no distortion."""

    id: str
    K: np.ndarray  # (3, 3)
    R: np.ndarray  # (3, 3) world -> camera
    t: np.ndarray  # (3,)
    size: tuple[int, int]  # (width, height)

    @property
    def P(self) -> np.ndarray:
        """The 3x4 projection matrix ``K [R | t]``."""
        return self.K @ np.hstack([self.R, self.t[:, None]])

    @property
    def center(self) -> np.ndarray:
        return -self.R.T @ self.t


@dataclass(frozen=True, slots=True)
class ViewFrame:
    """OpenPose output of one camera at one frame.

    ``joints[j]`` is ``(n_j, 3)``: pixel x, pixel y, score of the candidates of BODY25 joint ``j``;
    ``pafs[k]`` is ``(n_A, n_B)``: the part-affinity score of every candidate pair of
    :data:`BODY25_PAFS` ``[k]``.
    """

    joints: tuple[np.ndarray, ...]
    pafs: tuple[np.ndarray, ...]


@dataclass(frozen=True, slots=True)
class SkeletonFrame:
    """People of one frame of ``gt.txt`` / ``skel.txt``: id → ``(4, J)`` (x, y, z, valid)."""

    people: dict[int, np.ndarray]


def read_calibration(path: Path) -> list[ShelfCamera]:
    """Cameras of ``calibration.json`` in the order of their (numeric) keys."""
    try:
        raw = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ShelfDataError(f"{path}: not valid JSON ({e})") from e
    cams = []
    for key in sorted(raw, key=lambda k: (len(k), k)):
        c = raw[key]
        try:
            K = np.asarray(c["K"], dtype=np.float64).reshape(3, 3)
            RT = np.asarray(c["RT"], dtype=np.float64).reshape(3, 4)
            w, h = (int(v) for v in c["imgSize"])
        except (KeyError, ValueError, TypeError) as e:
            raise ShelfDataError(f"{path}: camera {key!r}: bad K/RT/imgSize ({e})") from e
        cams.append(ShelfCamera(id=key, K=K, R=RT[:, :3].copy(), t=RT[:, 3].copy(), size=(w, h)))
    return cams


def _tokens(path: Path) -> np.ndarray:
    try:
        return np.array(Path(path).read_text().split(), dtype=np.float64)
    except ValueError as e:
        raise ShelfDataError(f"{path}: non-numeric token ({e})") from e


def read_detections(path: Path, size: tuple[int, int]) -> list[ViewFrame]:
    """All frames of one ``detection/{view}.txt``, candidates scaled to pixels of ``size``."""
    tok = _tokens(path)
    if tok.size < 2:
        raise ShelfDataError(f"{path}: empty file")
    if int(tok[0]) != BODY25_TYPE:
        raise ShelfDataError(
            f"{path}: skeleton type {int(tok[0])}, expected {BODY25_TYPE} (BODY25)"
        )
    n_frames = int(tok[1])
    sx, sy = size[0] - 1.0, size[1] - 1.0
    i = 2
    frames: list[ViewFrame] = []
    try:
        for _ in range(n_frames):
            joints = []
            counts = []
            for _ in range(N_BODY25):
                n = int(tok[i])
                i += 1
                block = tok[i : i + 3 * n].reshape(3, n).T.copy()
                if block.shape[0] != n:
                    raise IndexError
                i += 3 * n
                block[:, 0] *= sx
                block[:, 1] *= sy
                joints.append(block)
                counts.append(n)
            pafs = []
            for a, b in BODY25_PAFS:
                na, nb = counts[a], counts[b]
                m = tok[i : i + na * nb]
                if m.size != na * nb:
                    raise IndexError
                pafs.append(m.reshape(na, nb))
                i += na * nb
            frames.append(ViewFrame(joints=tuple(joints), pafs=tuple(pafs)))
    except (IndexError, ValueError) as e:
        raise ShelfDataError(
            f"{path}: truncated or malformed at frame {len(frames)} (token {i})"
        ) from e
    if i != tok.size:
        raise ShelfDataError(f"{path}: {tok.size - i} unread tokens after {n_frames} frames")
    return frames


def read_skeletons(path: Path) -> tuple[int, list[SkeletonFrame]]:
    """``gt.txt`` / ``skel.txt``: joint count and per-frame people (id → ``(4, J)``)."""
    tok = _tokens(path)
    if tok.size < 2:
        raise ShelfDataError(f"{path}: empty file")
    n_joints, n_frames = int(tok[0]), int(tok[1])
    i = 2
    frames: list[SkeletonFrame] = []
    try:
        for _ in range(n_frames):
            n = int(tok[i])
            i += 1
            people = {}
            for _ in range(n):
                pid = int(tok[i])
                m = tok[i + 1 : i + 1 + 4 * n_joints]
                if m.size != 4 * n_joints:
                    raise IndexError
                people[pid] = m.reshape(4, n_joints).copy()
                i += 1 + 4 * n_joints
            frames.append(SkeletonFrame(people=people))
    except (IndexError, ValueError) as e:
        raise ShelfDataError(
            f"{path}: truncated or malformed at frame {len(frames)} (token {i})"
        ) from e
    if i != tok.size:
        raise ShelfDataError(f"{path}: {tok.size - i} unread tokens after {n_frames} frames")
    return n_joints, frames


@dataclass(frozen=True, slots=True)
class ShelfData:
    """The benchmark: cameras, per-view detections ``views[v][frame]``, ground truth."""

    cameras: list[ShelfCamera]
    views: list[list[ViewFrame]]
    gt: list[SkeletonFrame]

    @property
    def n_frames(self) -> int:
        return len(self.gt)


def load_shelf(root: Path, n_frames: int | None = None) -> ShelfData:
    """Read ``calibration.json``, ``detection/*.txt`` and ``gt.txt`` under ``root``."""
    root = Path(root)
    cams = read_calibration(root / "calibration.json")
    views = [read_detections(root / "detection" / f"{c.id}.txt", c.size) for c in cams]
    n_j, gt = read_skeletons(root / "gt.txt")
    if n_j != len(SHELF15_JOINTS):
        raise ShelfDataError(f"{root / 'gt.txt'}: {n_j} joints, expected 15")
    for c, v in zip(cams, views, strict=True):
        if len(v) != len(gt):
            raise ShelfDataError(
                f"{root / 'detection' / (c.id + '.txt')}: {len(v)} frames, gt.txt has {len(gt)}"
            )
    if n_frames is not None:
        views = [v[:n_frames] for v in views]
        gt = gt[:n_frames]
    return ShelfData(cameras=cams, views=views, gt=gt)
