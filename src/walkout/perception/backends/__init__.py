"""Pose backends, one module each, chosen by name in :class:`PerceptionConfig`.

A backend turns a BGR image (any size) into :class:`Poses` in that image's pixels. Modules are
imported only when chosen, so a box without OpenVINO can still run MoveNet.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from walkout.perception.config import BackendName, PerceptionConfig

#: backend name -> module under walkout.perception.backends exposing ``create(config)``
BACKENDS: dict[str, str] = {
    "movenet": "movenet",
    "openvino-hpe": "openvino_hpe",
    "onnx": "onnx",
}


class ModelError(RuntimeError):
    """A model file that is missing, unreadable or not what the backend expects, or a backend
    whose runtime is not installed."""


@dataclass(frozen=True, slots=True)
class Poses:
    """People found in one image.

    ``keypoints[k, j] = (x_px, y_px, confidence)`` (COCO-17, image pixels; confidence 0: not
    found). ``scores[k]`` is the person's score. ``limb_scores`` (people, limbs), when the
    backend has part-affinity fields, is the mean PAF support of each of the person's limbs
    (NaN where the limb was not grouped); it is folded into the joint confidences the tracker
    weighs, and kept here for consumers that want it raw.
    """

    keypoints: np.ndarray  # (people, 17, 3) float32
    scores: np.ndarray  # (people,) float32
    limb_scores: np.ndarray | None = field(default=None)

    @staticmethod
    def empty() -> Poses:
        return Poses(np.zeros((0, 17, 3), np.float32), np.zeros(0, np.float32))


class PoseBackend(Protocol):
    """What the perception stage needs of a pose model."""

    name: str

    def infer(self, image_bgr: np.ndarray) -> Poses:
        """People in one BGR uint8 image of shape (h, w, 3)."""
        ...

    def infer_batch(self, images_bgr: list[np.ndarray]) -> list[Poses]:
        """People in several images (one call where the runtime batches)."""
        ...


def create_backend(config: PerceptionConfig, name: BackendName | None = None) -> PoseBackend:
    """The configured backend (or ``name``), with its model loaded."""
    which = name or config.backend
    module = importlib.import_module(f"walkout.perception.backends.{BACKENDS[which]}")
    try:
        backend: PoseBackend = module.create(config)
    except ImportError as e:  # the runtimes are an extra: a box set up without it
        runtime = (e.name or "its runtime").split(".")[0]
        raise ModelError(f"the {which} backend needs {runtime}, which is not installed: "
                         "pip install 'walkout[perception]'") from e
    return backend


def filter_people(poses: Poses, min_score: float, max_people: int) -> Poses:
    """Best ``max_people`` people scoring at least ``min_score``."""
    keep = np.flatnonzero(poses.scores >= min_score)
    keep = keep[np.argsort(-poses.scores[keep], kind="stable")][:max_people]
    limbs = poses.limb_scores[keep] if poses.limb_scores is not None else None
    return Poses(poses.keypoints[keep], poses.scores[keep], limbs)
