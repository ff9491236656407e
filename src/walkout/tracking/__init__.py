"""tracking stage: 2D keypoint frames from many cameras → gate-bound 3D skeleton tracks."""

from walkout.tracking.geometry import (
    CameraGeometry,
    Triangulation,
    project,
    robust_triangulate,
    triangulate,
    undistort,
)
from walkout.tracking.tracker import Tracker, TrackerConfig

__all__ = [
    "CameraGeometry",
    "Tracker",
    "TrackerConfig",
    "Triangulation",
    "project",
    "robust_triangulate",
    "triangulate",
    "undistort",
]
