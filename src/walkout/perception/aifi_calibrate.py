"""`walkout aifi calibrate`: the cameras of a footage recalibrated, as a camera file.

Keypoints of the shopper in every video (the perception stage) give the cameras' relative
poses, the survey gives the store frame (:func:`walkout.perception.calibrate.calibrate`); this
module wraps the result with its provenance and residuals (:mod:`walkout.perception.camera_file`)
so that a reader can judge the calibration without re-running it. :func:`image_intrinsics`
replaces a camera's lens and camera matrix by those measured on one of its frames: the
cps-test-01 videos were rectified before they were stored, so the store file's lens and focal
length (the April factory calibration) do not describe them (docs/perception.md, sixth pass).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from walkout.events import KeypointFrame
from walkout.perception.calib_check import score
from walkout.perception.calibrate import (
    CalibrationError,
    CalibrationResult,
    IntrinsicsPrior,
    calibrate,
    common_focal_start,
    joint_observations,
    survey_observations,
)
from walkout.perception.camera_file import (
    CameraFile,
    CameraResidual,
    Intrinsics,
    Provenance,
    RefinedIntrinsics,
    RelativeStart,
    SurveyResidual,
)
from walkout.perception.plumbline import fit_lens_on_image
from walkout.perception.survey import Survey
from walkout.perception.vanishing import (
    VanishingError,
    fit_line,
    group_lines,
    intrinsics_from_vps,
)
from walkout.store.model import Camera

#: Shortest chain of edge segments used for the lens and the vanishing points (px): 60 finds
#: a second edge direction in every cps-test-01 view (100 leaves cam5 with verticals only).
EDGE_MIN_LEN_PX = 60.0


def video_frame(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` of a video as a grey image; a video too short or unreadable raises."""
    cap = cv2.VideoCapture(str(path))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, img = cap.read()
    finally:
        cap.release()
    if not ok:
        raise OSError(f"{path}: cannot read frame {index}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)


def image_intrinsics(gray: np.ndarray, camera: Camera, *, lens: str = "plumbline",
                     focal: str = "image", frame: int | None = None,
                     min_len: float = EDGE_MIN_LEN_PX) -> tuple[Camera, Intrinsics]:
    """``camera`` with its lens (``lens="plumbline"``) and camera matrix (``focal="image"``)
    measured on its frame ``gray``, and the record of how.

    The lens is the plumb-line fit on the frame's long straight edges
    (:func:`~walkout.perception.plumbline.fit_lens_on_image`, from no distortion). The focal
    length comes from the vanishing points of the two largest groups of those edges, taken as
    orthogonal (in a store: the verticals and the main horizontal direction; check them drawn
    on the frame), with the principal point at the image centre: a third direction that would
    measure it is not found reliably. The lens is then fitted again under the new focal length
    (its coefficients are in normalised units). Raises
    :class:`~walkout.perception.plumbline.PlumbLineError` or
    :class:`~walkout.perception.vanishing.VanishingError` when the frame cannot give them.
    """
    if focal == "image" and lens != "plumbline":
        raise VanishingError("image intrinsics need the plumb-line lens: the store's lens "
                             "belongs to the store's camera matrix")
    w, h = camera.resolution
    K, dist = camera.K_array, camera.dist_array
    rec: dict[str, object] = {"lens": "store", "k1": float(dist[0]), "k2": float(dist[1]),
                              "focal": "store", "principal_point": "store",
                              "edges_frame": frame}
    if lens == "plumbline":
        fit = fit_lens_on_image(gray, K, min_len=min_len)
        edges = [fit.lines[i] for i in fit.kept]
        if focal == "image":
            und = [cv2.undistortPoints(e.reshape(-1, 1, 2), K, fit.fit.dist, P=K).reshape(-1, 2)
                   for e in edges]
            lines = [fit_line(p) for p in und]
            groups = group_lines(lines)
            if len(groups) < 2:
                raise VanishingError(f"{camera.id}: the frame's straight edges meet in "
                                     f"{len(groups)} vanishing point(s); need 2 orthogonal "
                                     "directions")
            vi = intrinsics_from_vps([[und[k] for k in g] for g in groups[:2]], (w, h))
            K = vi.K
            fit = fit_lens_on_image(gray, K, min_len=min_len)
            rec.update(focal="image", principal_point="image centre",
                       f_spread_px=round(vi.f_spread_px, 2),
                       vanishing_groups=list(vi.group_sizes))
        dist = fit.fit.dist
        rec.update(lens="plumbline", k1=fit.fit.k1, k2=fit.fit.k2,
                   lens_rms_px=round(fit.fit.rms_px, 3), lens_edges=len(fit.kept))
    rec.update(k1=round(float(rec["k1"]), 5), k2=round(float(rec["k2"]), 5),  # type: ignore[arg-type]
               f=round(float(K[0, 0]), 2), cx=round(float(K[0, 2]), 2),
               cy=round(float(K[1, 2]), 2))
    new = Camera.model_validate({
        **camera.model_dump(), "dist": (rec["k1"], rec["k2"], 0.0, 0.0, 0.0),
        "K": ((rec["f"], 0.0, rec["cx"]), (0.0, rec["f"], rec["cy"]), (0.0, 0.0, 1.0))})
    return new, Intrinsics.model_validate(rec)


def calibration_file(frames: Mapping[str, Sequence[KeypointFrame]], cameras: Sequence[Camera],
                     store: str, survey: Survey | None, *, command: str,
                     videos: Mapping[str, str], backend: str, survey_path: Path | None = None,
                     date: str | None = None,
                     intrinsics: Mapping[str, Intrinsics] | None = None,
                     refine_intrinsics: str | None = None, multi_start: bool = False,
                     ) -> tuple[CameraFile, CalibrationResult]:
    """Calibrate ``cameras`` on the keypoint ``frames`` (and ``survey``) and describe it;
    ``intrinsics`` records cameras whose lens and matrix were measured on the footage.

    ``refine_intrinsics`` (``"f"`` or ``"f,pp"``) frees every camera's f (and cx, cy) in the
    adjustment, held at the measured values by priors: f by its vanishing-point spread
    (floored, see :class:`~walkout.perception.calibrate.IntrinsicsPrior`), the principal point
    weakly. It needs every camera measured (``intrinsics``): a store's matrix comes with its
    own lens. ``multi_start`` also starts the relative solve from one common f
    (:func:`~walkout.perception.calibrate.common_focal_start`) and records both starts' costs."""
    measured = dict(intrinsics or {})
    prior = None
    if refine_intrinsics:
        missing = [c.id for c in cameras if c.id not in measured]
        if missing:
            raise CalibrationError(f"refining the intrinsics needs them measured on the footage "
                                   f"first; not measured: {', '.join(missing)}")
        prior = IntrinsicsPrior(f_sigma_px=tuple(
            float(measured[c.id].f_spread_px or 0.0) for c in cameras), free=refine_intrinsics)
        prior.mask(len(cameras))  # refuse an unknown choice before the footage is read
    obs = joint_observations(frames, cameras)
    starts = [(f"common f {np.median([c.K[0][0] for c in cameras]):.1f}",
               common_focal_start(cameras))] if multi_start else []
    res = calibrate(obs, cameras, survey, intrinsics=prior, starts=starts)
    if prior is not None:
        sig = prior.sigmas(len(cameras))
        for i, c in enumerate(res.cameras):
            measured[c.id] = measured[c.id].model_copy(update={"refined": RefinedIntrinsics(
                f=c.K[0][0], cx=c.K[0][2], cy=c.K[1][2], f_sigma_px=round(float(sig[i, 0]), 2),
                pp_sigma_px=round(float(sig[i, 1]), 2) if prior.free == "f,pp" else None,
                freed=prior.free)})
    rel = [RelativeStart(
        name=o.name, f={c.id: round(float(o.k[i, 0]), 2) for i, c in enumerate(cameras)},
        principal_point={c.id: (round(float(o.k[i, 1]), 2), round(float(o.k[i, 2]), 2))
                         for i, c in enumerate(cameras)},
        cost=round(o.cost, 2), kept=j == 0,
        joints_kept={c.id: round(float(o.kept[i]), 4) for i, c in enumerate(cameras)})
        for j, o in enumerate(res.starts)]
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
        survey_sha256=sha, epipolar_px=epi, cameras=per_cam, survey_points=picks,
        intrinsics=measured, relative_starts=rel)
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
