"""perception stage: camera video → 2D keypoint frames (the tracker's input); frames dropped.

Pose models are plugins (``backends/``: MoveNet via LiteRT, OpenVINO OpenPose-style with
part-affinity fields, any ONNX model via ONNX Runtime) chosen by :class:`PerceptionConfig`.
"""

from walkout.perception.backends import ModelError, PoseBackend, Poses, create_backend
from walkout.perception.config import PerceptionConfig
from walkout.perception.stage import FrameGovernor, PerceptionStage, PerceptionStats

__all__ = [
    "FrameGovernor",
    "ModelError",
    "PerceptionConfig",
    "PerceptionStage",
    "PerceptionStats",
    "PoseBackend",
    "Poses",
    "create_backend",
]
