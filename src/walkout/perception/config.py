"""Perception settings: which pose backend, where its model lives, how to degrade under load.

Strict (``extra="forbid"``, frozen) like every walkout config: a misspelt key in a settings
file is an error, not a silently ignored default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

BackendName = Literal["movenet", "openvino-hpe", "onnx"]

#: Where the tests and benchmarks find the models: ../shared/models beside the checkout.
DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "models"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MoveNetConfig(_Strict):
    """MoveNet MultiPose Lightning (TFLite, dynamic input; sides multiples of 32)."""

    path: str = Field(
        default="movenet-multipose-lightning/movenet.tflite", description="relative to models_dir"
    )
    long_side: int = Field(
        default=320, ge=128, le=1024, multiple_of=32,
        description="network input long side (px); the short side follows the aspect ratio, "
        "rounded up to a multiple of 32",
    )


class OpenVinoHpeConfig(_Strict):
    """Intel OMZ human-pose-estimation-0001 (OpenPose-style heatmaps + part-affinity fields)."""

    path: str = Field(
        default="intel-omz/human-pose-estimation-0001/FP16-INT8/human-pose-estimation-0001.xml",
        description="OpenVINO IR .xml relative to models_dir (the .bin sits beside it)",
    )
    device: str = Field(default="CPU", description="OpenVINO device name")
    peak_threshold: float = Field(default=0.1, gt=0, lt=1, description="heatmap peak threshold")
    paf_samples: int = Field(default=10, ge=2, description="points sampled along each limb")
    paf_min_score: float = Field(
        default=0.05, ge=0, description="mean PAF projection a limb candidate needs"
    )
    min_joints: int = Field(default=3, ge=1, description="joints a grouped person needs")


class OnnxConfig(_Strict):
    """A user-supplied ONNX pose model, run by ONNX Runtime (CUDA EP when present).

    Supported output layouts: ``movenet`` — (1, P, 56): 17 × (y, x, score) normalised then a
    box and its score, as MoveNet MultiPose; ``keypoints`` — (P, 17, 3) or (1, P, 17, 3):
    (x, y, score) normalised to the input image.
    """

    path: str = Field(default="", description="model file relative to models_dir")
    input_size: tuple[int, int] = Field(default=(256, 160), description="width, height (px)")
    layout: Literal["nhwc", "nchw"] = "nhwc"
    dtype: Literal["uint8", "float32"] = "uint8"
    scale: float = Field(default=1.0, gt=0, description="float input = pixels × scale")
    output: Literal["movenet", "keypoints"] = "movenet"
    providers: tuple[str, ...] = Field(
        default=("CUDAExecutionProvider", "CPUExecutionProvider"),
        description="tried in order; those ONNX Runtime does not offer here are skipped",
    )


class PerceptionConfig(_Strict):
    """The whole perception stage."""

    backend: BackendName = "movenet"
    models_dir: Path = Field(default=DEFAULT_MODELS_DIR, description="root of the model files")
    threads: int = Field(default=2, ge=1, le=256, description="inference threads per stream")
    min_person_score: float = Field(
        default=0.15, ge=0, le=1, description="people below this score are dropped"
    )
    max_people: int = Field(default=6, ge=1, le=64)
    movenet: MoveNetConfig = MoveNetConfig()
    openvino_hpe: OpenVinoHpeConfig = OpenVinoHpeConfig()
    onnx: OnnxConfig = OnnxConfig()
    undistort: bool = Field(
        default=False,
        description="emit undistorted pixels (K-normalised back to pixels). Off by default: "
        "KeypointFrame carries raw pixels and the tracker undistorts points itself",
    )

    @model_validator(mode="after")
    def _onnx_needs_path(self) -> PerceptionConfig:
        if self.backend == "onnx" and not self.onnx.path:
            raise ValueError("backend 'onnx' needs onnx.path (the model file under models_dir)")
        return self

    def model_path(self, relative: str) -> Path:
        return (self.models_dir / relative).resolve()


def first_error(e: ValidationError, whole: str) -> str:
    """``where: what`` of a validation error's first problem (``whole``: no field named),
    the form every perception file and setting reports its errors in."""
    first = e.errors()[0]
    where = ".".join(str(x) for x in first["loc"]) or whole
    # a validator's own message reads better without pydantic's "Value error, " in front
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"
