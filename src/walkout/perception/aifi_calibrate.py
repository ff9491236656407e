"""`walkout aifi calibrate`: the cameras of a footage recalibrated, as a camera file.

Keypoints of the shopper in every video (the perception stage) give the cameras' relative
poses, the survey gives the store frame (:func:`walkout.perception.calibrate.calibrate`); this
module wraps the result with its provenance and residuals (:mod:`walkout.perception.camera_file`)
so that a reader can judge the calibration without re-running it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from walkout.events import KeypointFrame
from walkout.perception.calib_check import score
from walkout.perception.calibrate import (
    CalibrationError,
    CalibrationResult,
    calibrate,
    joint_observations,
    survey_observations,
)
from walkout.perception.camera_file import (
    CameraFile,
    CameraResidual,
    Provenance,
    SurveyResidual,
)
from walkout.perception.survey import Survey
from walkout.store.model import Camera


def calibration_file(frames: Mapping[str, Sequence[KeypointFrame]], cameras: Sequence[Camera],
                     store: str, survey: Survey | None, *, command: str,
                     videos: Mapping[str, str], backend: str, survey_path: Path | None = None,
                     date: str | None = None) -> tuple[CameraFile, CalibrationResult]:
    """Calibrate ``cameras`` on the keypoint ``frames`` (and ``survey``) and describe it."""
    obs = joint_observations(frames, cameras)
    res = calibrate(obs, cameras, survey)
    per_cam: dict[str, CameraResidual] = {}
    sv = None if survey is None else survey_observations(survey, cameras)
    for i, c in enumerate(cameras):
        sel = (obs.cam == i) & res.inlier
        s_px = None
        if sv is not None and np.any(sv.cam == i):
            s_px = round(float(np.median(res.survey_px[sv.cam == i])), 2)
        per_cam[c.id] = CameraResidual(
            joints_median_px=round(float(np.median(res.joint_px[sel])), 2) if sel.any() else 0.0,
            joints_kept=round(float(res.inlier[obs.cam == i].mean()), 4)
            if np.any(obs.cam == i) else 0.0,
            survey_median_px=s_px)
    picks: list[SurveyResidual] = []
    if sv is not None:
        for k in range(len(sv.cam)):
            p = int(sv.point[k])
            picks.append(SurveyResidual(
                name=sv.names[p], camera=cameras[int(sv.cam[k])].id,
                px=round(float(res.survey_px[k]), 2),
                world=tuple(round(float(v), 4) for v in res.survey_world[p])))  # type: ignore[arg-type]
    by_id = {c.id: c for c in res.cameras}
    epi = {f"{s.video_a}-{s.video_b}": round(float(s.median_px), 2)
           for s in score({c: frames[c] for c in by_id if c in frames}, by_id,
                           {c: c for c in by_id if c in frames})}
    sha = None if survey_path is None else hashlib.sha256(survey_path.read_bytes()).hexdigest()
    prov = Provenance(
        date=date or datetime.now(UTC).date().isoformat(), command=command,
        videos=dict(videos), frames={c.id: len(frames.get(c.id, ())) for c in cameras},
        backend=backend, survey=None if survey_path is None else survey_path.name,
        survey_sha256=sha, epipolar_px=epi, cameras=per_cam, survey_points=picks)
    return CameraFile(store=store, provenance=prov, cameras=list(res.cameras)), res



def refuse_misfit(data: CameraFile, max_px: float) -> None:
    """Raise when a survey pick lands further than ``max_px`` from where it was picked: the
    survey and the footage disagree (a wrong pick, a fixture that moved, a misread plan), and
    the cameras would be a compromise between them."""
    worst = sorted(data.provenance.survey_points, key=lambda r: -r.px)
    off = [r for r in worst if r.px > max_px]
    if off:
        lines = "; ".join(f"{r.name!r} in {r.camera} {r.px:.1f} px" for r in off[:5])
        raise CalibrationError(f"the survey does not fit the footage: {len(off)} pick(s) off "
                               f"by more than {max_px:g} px ({lines})")
