"""Camera files: recalibrated camera poses with the provenance that makes them checkable.

A store's cameras are part of its store file, but a calibration done on site later (cameras
moved, a survey taken) is a separate artefact: it has a date, the footage and survey it came
from, the command that produced it and how well it fits (residuals per camera and per survey
point). ``walkout aifi calibrate`` writes one; ``walkout aifi video --cameras FILE`` puts its
cameras into the store in place of those of the same id. The file is JSON, written with sorted
keys and rounded numbers so the same inputs give the same bytes (the date aside).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from walkout.perception.config import first_error
from walkout.store.model import Camera, Store


class CameraFileError(ValueError):
    """A camera file that cannot be read or does not fit the store it is applied to."""


class SurveyResidual(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    camera: str
    px: float = Field(ge=0, description="reprojection error of the pick (px)")
    world: tuple[float, float, float] = Field(description="solved store position (m)")


class CameraResidual(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    joints_median_px: float = Field(ge=0, description="median reprojection error of the joints")
    joints_kept: float = Field(ge=0, le=1, description="share of joint detections kept")
    survey_median_px: float | None = Field(None, ge=0)


class RefinedIntrinsics(BaseModel):
    """The camera matrix as the bundle adjustment left it, and the priors it was held by."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    f: float = Field(gt=0)
    cx: float
    cy: float
    f_sigma_px: float = Field(gt=0, description="prior on f about the measured f (px)")
    pp_sigma_px: float | None = Field(
        None, gt=0, description="prior on cx, cy about the measured ones (px); null: held")
    freed: str = Field("f,pp", description="what the adjustment freed: 'f' or 'f,pp'")


class RelativeStart(BaseModel):
    """One start of the relative solve (intrinsics it started from) and the robust cost over
    all joints it ended at; the lowest cost is kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    f: dict[str, float] = Field(description="camera id -> start f (px)")
    principal_point: dict[str, tuple[float, float]]
    cost: float = Field(ge=0)
    joints_kept: dict[str, float]
    kept: bool = Field(description="this start's solution was used")


class Intrinsics(BaseModel):
    """Where a camera's lens and camera matrix came from, when not from the store file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lens: str = Field(description="'store' (the store file's dist) or 'plumbline' (fitted on "
                      "the frame's straight edges)")
    k1: float
    k2: float
    lens_rms_px: float | None = Field(None, ge=0, description="edges' RMS off straight (px)")
    lens_edges: int | None = Field(None, ge=0, description="straight edges the lens rests on")
    focal: str = Field(description="'store' or 'image' (orthogonal vanishing points)")
    f: float = Field(gt=0)
    cx: float
    cy: float
    principal_point: str = Field(description="'store', 'image centre' or 'vanishing points'")
    f_spread_px: float | None = Field(None, ge=0,
                                      description="largest change of f with one edge left out")
    vanishing_groups: list[int] = Field(default_factory=list,
                                        description="edges per vanishing point used")
    edges_frame: int | None = Field(None, ge=0, description="video frame the edges came from")
    refined: RefinedIntrinsics | None = Field(
        None, description="f, cx, cy freed in the bundle adjustment (--refine-intrinsics); the "
        "fields above are then its start and prior, the camera's K is the refined one")


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    date: str = Field(description="UTC date the calibration was run (ISO 8601)")
    command: str
    videos: dict[str, str] = Field(description="camera id -> video file name")
    frames: dict[str, int] = Field(description="camera id -> frames read")
    backend: str
    survey: str | None = Field(description="survey file name, null when none")
    survey_sha256: str | None = None
    epipolar_px: dict[str, float] = Field(
        description="median epipolar error of the shopper's joints per camera pair")
    cameras: dict[str, CameraResidual]
    survey_points: list[SurveyResidual]
    intrinsics: dict[str, Intrinsics] = Field(
        default_factory=dict, description="camera id -> lens and camera matrix measured on "
        "the footage (absent: the store file's)")
    relative_starts: list[RelativeStart] = Field(
        default_factory=list, description="starts of the relative solve compared (empty: one)")


class CameraFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str = Field(min_length=1)
    provenance: Provenance
    cameras: list[Camera] = Field(min_length=1)


def write_camera_file(path: Path, data: CameraFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data.model_dump(mode="json"), indent=1, sort_keys=True) + "\n",
                    encoding="utf-8")


def load_camera_file(path: Path) -> CameraFile:
    """Read and validate a camera file, naming the file and the field of any problem."""
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CameraFileError(f"{path}: camera file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CameraFileError(f"{path}: cannot read camera file: {e}") from e
    try:
        return CameraFile.model_validate(raw)
    except ValidationError as e:
        raise CameraFileError(f"{path}: {first_error(e, 'file')}") from e


def with_cameras(store: Store, cameras: Sequence[Camera], source: str = "camera file") -> Store:
    """The store with ``cameras`` in place of its cameras of the same id; an id the store does
    not have, or a camera whose image size differs from the store's, is an error."""
    by_id = {c.id: c for c in cameras}
    unknown = sorted(set(by_id) - set(store.cameras_by_id))
    if unknown:
        raise CameraFileError(f"{source}: camera(s) {', '.join(unknown)} not in store "
                              f"'{store.name}' (cameras: {', '.join(store.cameras_by_id)})")
    for c in cameras:
        if c.resolution != store.cameras_by_id[c.id].resolution:
            raise CameraFileError(
                f"{source}: {c.id} is {c.resolution[0]}x{c.resolution[1]}, the store's "
                f"{c.id} is {store.cameras_by_id[c.id].resolution[0]}x"
                f"{store.cameras_by_id[c.id].resolution[1]}")
    # validated afresh, not model_copy: the store caches per-camera lookups
    fields = {k: getattr(store, k) for k in type(store).model_fields}
    return Store.model_validate({**fields, "cameras": [by_id.get(c.id, c)
                                                       for c in store.cameras]})
