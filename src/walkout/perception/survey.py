"""Survey points: static store features located by hand in camera frames.

A survey ties the cameras to the store plan. Each point names a feature whose store
coordinates are known from the fixture data (a shelf-front corner, the foot of an upright),
gives those coordinates in metres (null for a coordinate not known: a point picked somewhere
along a shelf's front edge knows only its height and depth), and the raw pixel where it appears
in each camera that sees it (lens distortion included: the point as it is in the video frame).
A point with one open coordinate seen by one camera is one constraint; with two open
coordinates it needs two cameras to constrain anything. Points that name the same ``upright``
share their open x and y: picks up a vertical edge at known heights (the shelf lips of a fixture
that was moved) fix the scale from a single view. The file is YAML:

.. code-block:: yaml

    store: aifi-nanostore
    frames: "cps-test-01 videos, frame 300 (the store empty)"
    points:
      - name: G1/G2 upright, shelf 5 front edge
        world: [1.2446, 0.0857, 1.4224]
        pixels: {cam7: [143.0, 52.5], cam3: [601.0, 118.0]}
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from walkout.perception.config import first_error
from walkout.store.model import Camera

Vec2 = tuple[float, float]
Vec3 = tuple[float, float, float]
#: A world position with coordinates left open (None): a point somewhere on a known line or
#: plane, e.g. ``[null, 0.0857, 1.4224]`` for a pick anywhere along a shelf's front edge.
OpenVec3 = tuple[float | None, float | None, float | None]


class SurveyError(ValueError):
    """A survey file that cannot be read or does not fit the cameras it is for."""


class SurveyPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1)
    world: OpenVec3 = Field(description="store coordinates (m); null where not known")
    pixels: dict[str, Vec2] = Field(min_length=1, description="camera id -> raw pixel (x, y)")
    note: str = ""
    upright: str = Field("", description=(
        "points naming the same upright share their open x and y: a vertical edge whose floor "
        "position is not known but whose shelf heights are (a fixture that was moved)"))

    @field_validator("world")
    @classmethod
    def _finite(cls, v: OpenVec3) -> OpenVec3:
        if not all(x is None or math.isfinite(x) for x in v):
            raise ValueError(f"world coordinates must be finite or null, got {list(v)}")
        if all(x is None for x in v):
            raise ValueError("at least one world coordinate must be known")
        return v

    @model_validator(mode="after")
    def _upright_open_xy(self) -> SurveyPoint:
        if self.upright and (self.world[0] is not None or self.world[1] is not None
                             or self.world[2] is None):
            raise ValueError(f"point {self.name!r} on upright {self.upright!r} must have world "
                             f"[null, null, height], got {list(self.world)}")
        return self


class Survey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    store: str = Field(min_length=1)
    frames: str = Field(description="which frames the pixels were picked in")
    points: list[SurveyPoint] = Field(min_length=1)

    @field_validator("points")
    @classmethod
    def _unique(cls, v: list[SurveyPoint]) -> list[SurveyPoint]:
        seen: set[str] = set()
        for p in v:
            if p.name in seen:
                raise ValueError(f"survey point {p.name!r} appears twice")
            seen.add(p.name)
        return v

    def check_cameras(self, cameras: dict[str, Camera]) -> None:
        """Every camera named must exist and every pixel lie inside its image."""
        for p in self.points:
            for cid, (x, y) in p.pixels.items():
                if cid not in cameras:
                    raise SurveyError(f"survey point {p.name!r}: camera {cid!r} is not in the "
                                      f"store (cameras: {', '.join(sorted(cameras))})")
                w, h = cameras[cid].resolution
                if not (0 <= x < w and 0 <= y < h):
                    raise SurveyError(f"survey point {p.name!r}: pixel ({x}, {y}) in {cid} is "
                                      f"outside its {w}x{h} image")


def load_survey(path: Path) -> Survey:
    """Read and validate a survey file, naming the file and field of any problem."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SurveyError(f"{path}: survey file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise SurveyError(f"{path}: cannot read survey: {e}") from e
    if not isinstance(data, dict):
        raise SurveyError(f"{path}: a survey is a mapping with store, frames and points")
    # YAML gives lists where the model has tuples; convert those and nothing else
    pts = data.get("points")
    if isinstance(pts, list):
        for p in pts:
            if isinstance(p, dict):
                if isinstance(p.get("world"), list):
                    p["world"] = tuple(p["world"])
                if isinstance(p.get("pixels"), dict):
                    p["pixels"] = {k: tuple(v) if isinstance(v, list) else v
                                   for k, v in p["pixels"].items()}
    try:
        return Survey.model_validate(data)
    except ValidationError as e:
        raise SurveyError(f"{path}: {first_error(e, 'survey')}") from e
