"""The perception stage: camera frames in, :class:`KeypointFrame` out, frames dropped.

Privacy by design: an image lives only inside :meth:`PerceptionStage.process` (the source's
buffer and the network's input tensor); nothing here stores, copies out or returns pixels.

Load: :class:`FrameGovernor` keeps the stage on the camera's clock. When inference is slower
than the frame rate it processes a steady fraction of frames, spread evenly (a Bresenham
accumulator: at ratio 2/3 it takes 2 of every 3), instead of queueing frames and falling further
behind. Every skipped frame is counted in :class:`PerceptionStats`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from walkout.events import N_JOINTS, KeypointFrame
from walkout.perception.backends import PoseBackend, Poses
from walkout.perception.evidence import EvidenceRecorder, person_boxes
from walkout.perception.undistort import undistort_keypoints
from walkout.store.model import Camera


@dataclass(slots=True)
class PerceptionStats:
    """Counters of one camera's stage (plain numbers: cheap to read and to report)."""

    frames_in: int = 0
    processed: int = 0
    skipped: int = 0  # skipped by the governor under load
    people: int = 0
    cpu_s: float = 0.0  # process CPU seconds spent in inference (all threads)
    wall_s: float = 0.0  # wall seconds spent in inference

    def as_dict(self) -> dict[str, float | int]:
        return {
            "frames_in": self.frames_in, "processed": self.processed, "skipped": self.skipped,
            "people": self.people, "cpu_s": round(self.cpu_s, 3), "wall_s": round(self.wall_s, 3),
            "ms_per_frame_wall": round(1000 * self.wall_s / max(self.processed, 1), 2),
        }


@dataclass(slots=True)
class FrameGovernor:
    """Decides which frames to process so that the stage keeps up with ``fps``.

    Each frame costs its reading (decoding: paid for every frame, skipped or not, tracked with
    :meth:`observe_overhead`) and, if taken, its inference (:meth:`observe`). With their moving
    averages ``o`` and ``e`` the fraction that fits the frame period ``P`` is
    ``ratio = (P × headroom - o) / e``, capped at 1 and floored at one frame a second (below
    that the run falls behind; the caller reports by how much). Frames are taken when the
    accumulator passes 1, which spreads the skips evenly.
    """

    fps: float
    headroom: float = 0.9
    alpha: float = 0.2
    _ema_s: float | None = None
    _over_s: float = 0.0
    _acc: float = 1.0
    ratio: float = 1.0
    history: list[float] = field(default_factory=list)

    def admit(self) -> bool:
        self._acc += self.ratio
        if self._acc >= 1.0:
            self._acc -= 1.0
            return True
        return False

    def observe(self, seconds: float) -> None:
        """Inference took ``seconds`` on a taken frame."""
        self._ema_s = seconds if self._ema_s is None else (
            self.alpha * seconds + (1 - self.alpha) * self._ema_s)
        self._update()

    def observe_overhead(self, seconds: float) -> None:
        """Reading one frame (taken or skipped) took ``seconds``."""
        a = self.alpha / 4  # measured on every frame: averaged over as many frames
        self._over_s = a * seconds + (1 - a) * self._over_s
        self._update()

    def _update(self) -> None:
        if self._ema_s is None:
            return
        budget = self.headroom / self.fps - self._over_s
        floor = min(1.0, 1.0 / self.fps)
        self.ratio = min(1.0, max(floor, budget / max(self._ema_s, 1e-6)))
        self._acc = min(self._acc, 1.0)


class PerceptionStage:
    """One camera: images → keypoint frames in that camera's raw pixels (or undistorted)."""

    def __init__(
        self,
        backend: PoseBackend,
        camera_id: str,
        camera: Camera | None = None,
        *,
        undistort: bool = False,
        governor: FrameGovernor | None = None,
        evidence: EvidenceRecorder | None = None,
    ) -> None:
        if undistort and camera is None:
            raise ValueError("undistorting keypoints needs the camera's calibration")
        self.backend, self.camera_id, self.camera = backend, camera_id, camera
        self.undistort = undistort
        self.governor = governor
        self.evidence = evidence  # blurred clips on request (perception/evidence.py)
        self.stats = PerceptionStats()
        self.last_poses: Poses | None = None  # keypoints only, for callers wanting PAF scores

    def process(self, t: float, image_bgr: np.ndarray) -> KeypointFrame | None:
        """The frame's people, or None when the governor skips it under load."""
        self.stats.frames_in += 1
        if self.governor is not None and not self.governor.admit():
            self.stats.skipped += 1
            return None
        c0, w0 = time.process_time(), time.perf_counter()
        poses = self.backend.infer(image_bgr)
        dw = time.perf_counter() - w0
        self.stats.cpu_s += time.process_time() - c0
        self.stats.wall_s += dw
        if self.governor is not None:
            self.governor.observe(dw)
        self.stats.processed += 1
        self.stats.people += int(poses.keypoints.shape[0])
        self.last_poses = poses
        if self.evidence is not None:
            self.evidence.push(t, image_bgr, person_boxes(poses.keypoints))
        return to_frame(poses, self.camera_id, t, self.camera if self.undistort else None)


def to_frame(poses: Poses, camera_id: str, t: float, camera: Camera | None) -> KeypointFrame:
    """A :class:`KeypointFrame`; with ``camera``, keypoints are undistorted with its calibration.

    Joints the backend did not find (confidence 0) keep coordinates that mean nothing.
    """
    kp = np.ascontiguousarray(poses.keypoints, dtype=np.float32).reshape(-1, N_JOINTS, 3)
    if camera is not None and kp.shape[0]:
        kp = undistort_keypoints(kp, camera.K_array, camera.dist_array)
    return KeypointFrame(camera_id=camera_id, t=float(t), keypoints=kp)
