"""Camera calibration from the footage (`walkout.perception.calibrate`) on synthetic data:
known poses, a walking person's joints projected with noise, the poses recovered."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from walkout.events import KeypointFrame
from walkout.perception.calib_check import score
from walkout.perception.calibrate import (
    CalibrationError,
    IntrinsicsPrior,
    calibrate,
    joint_observations,
)
from walkout.perception.survey import Survey, SurveyError, SurveyPoint, load_survey
from walkout.store.model import Camera, CameraPose

K = ((500.0, 0.0, 320.0), (0.0, 500.0, 180.0), (0.0, 0.0, 1.0))
DIST = (-0.3, 0.1, 0.0, 0.0, 0.0)


def _camera(cid: str, centre: tuple[float, float, float], target: tuple[float, float, float],
            ) -> Camera:
    """A ceiling camera at ``centre`` looking at ``target`` (world z up)."""
    c, t = np.asarray(centre), np.asarray(target)
    z = (t - c) / np.linalg.norm(t - c)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    r = np.stack([x, y, z])
    rvec, _ = cv2.Rodrigues(r)
    return Camera(id=cid, resolution=(640, 360), fps=10.0, K=K, dist=DIST,
                  pose=CameraPose(rvec=tuple(rvec.ravel()), tvec=tuple(-r @ c)))


CAMERAS = [
    _camera("cam1", (4.4, -0.3, 2.45), (1.5, -1.0, 0.5)),
    _camera("cam3", (3.8, -1.2, 2.45), (0.5, -0.6, 0.5)),
    _camera("cam5", (1.8, -0.4, 2.45), (4.5, -1.0, 0.5)),
    _camera("cam7", (0.3, -1.0, 2.45), (3.5, -0.6, 0.5)),
]

#: A standing person's COCO-17 joints relative to the point between the feet (m).
BODY = np.array([
    [0.10, 0.0, 1.65], [0.12, 0.04, 1.70], [0.12, -0.04, 1.70], [0.05, 0.08, 1.68],
    [0.05, -0.08, 1.68], [0.0, 0.2, 1.45], [0.0, -0.2, 1.45], [0.05, 0.25, 1.15],
    [0.05, -0.25, 1.15], [0.15, 0.25, 0.9], [0.15, -0.25, 0.9], [0.0, 0.12, 0.95],
    [0.0, -0.12, 0.95], [0.03, 0.12, 0.5], [0.03, -0.12, 0.5], [0.0, 0.12, 0.08],
    [0.0, -0.12, 0.08]])


def _walk(n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """Times and (n, 17, 3) joints of a person walking a loop through the views."""
    t = np.arange(n) / 10.0
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pos = np.stack([2.3 + 1.6 * np.cos(a), -1.0 + 0.5 * np.sin(a)], axis=1)
    joints = np.empty((n, 17, 3))
    for i in range(n):
        c, s = np.cos(a[i] + np.pi / 2), np.sin(a[i] + np.pi / 2)
        rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        joints[i] = BODY @ rot.T + [*pos[i], 0.0]
    # arms swing a little, so the joints are not a rigid body
    joints[:, 9:11, 2] += 0.1 * np.sin(3 * a)[:, None]
    return t, joints


def _frames(cameras: list[Camera], noise_px: float,
            seed: int = 0) -> dict[str, list[KeypointFrame]]:
    rng = np.random.default_rng(seed)
    t, joints = _walk()
    out: dict[str, list[KeypointFrame]] = {}
    for cam in cameras:
        fr = []
        for ti, j in zip(t, joints, strict=True):
            uv, _ = cv2.projectPoints(j, np.asarray(cam.pose.rvec), np.asarray(cam.pose.tvec),
                                      cam.K_array, cam.dist_array)
            uv = uv.reshape(-1, 2) + rng.normal(0, noise_px, (17, 2))
            depth = (j @ cam.R.T + cam.t)[:, 2]
            inside = (uv[:, 0] >= 0) & (uv[:, 0] < 640) & (uv[:, 1] >= 0) & (uv[:, 1] < 360)
            conf = np.where(inside & (depth > 0), 0.8, 0.0)
            kp = np.concatenate([uv, conf[:, None]], axis=1)[None].astype(np.float32)
            fr.append(KeypointFrame(cam.id, float(ti), kp))
        out[cam.id] = fr
    return out


def _perturbed(cameras: list[Camera], deg: float, metres: float, seed: int = 1) -> list[Camera]:
    """The cameras moved: each rotated by ``deg`` about a random axis and shifted."""
    rng = np.random.default_rng(seed)
    out = []
    for c in cameras:
        axis = rng.normal(size=3)
        axis *= np.radians(deg) / np.linalg.norm(axis)
        r = cv2.Rodrigues(axis)[0] @ c.R
        centre = c.center + rng.normal(size=3) * metres / np.sqrt(3)
        rvec, _ = cv2.Rodrigues(r)
        out.append(c.model_copy(update={"pose": CameraPose(
            rvec=tuple(rvec.ravel()), tvec=tuple(-r @ centre))}))
    return [Camera.model_validate(c.model_dump()) for c in out]


def _rot_deg(a: Camera, b: Camera) -> float:
    return float(np.degrees(np.linalg.norm(cv2.Rodrigues(a.R @ b.R.T)[0])))


def _similar(rel: list[Camera], ref: list[Camera]) -> tuple[float, float]:
    """Worst centre error (m) and rotation error (deg) of ``rel`` after the best similarity
    onto ``ref`` (Umeyama on the centres)."""
    a = np.array([c.center for c in rel])
    b = np.array([c.center for c in ref])
    ma, mb = a.mean(0), b.mean(0)
    u, d, vt = np.linalg.svd((b - mb).T @ (a - ma))
    sgn = np.diag([1, 1, np.sign(np.linalg.det(u @ vt))])
    q = u @ sgn @ vt
    s = np.trace(np.diag(d) @ sgn) / np.sum((a - ma) ** 2)
    moved = s * (a - ma) @ q.T + mb
    rot = max(float(np.degrees(np.linalg.norm(cv2.Rodrigues(x.R @ q.T @ y.R.T)[0])))
              for x, y in zip(rel, ref, strict=True))
    return float(np.max(np.linalg.norm(moved - b, axis=1))), rot


def test_relative_poses_recovered_from_a_walking_person():
    frames = _frames(CAMERAS, noise_px=1.5)
    start = _perturbed(CAMERAS, deg=20.0, metres=0.8)
    before = np.mean([s.median_px for s in score(frames, {c.id: c for c in start},
                                                  {c.id: c.id for c in start})])
    obs = joint_observations(frames, start)
    res = calibrate(obs, start)
    pos, rot = _similar(list(res.cameras), CAMERAS)
    assert pos < 0.05 and rot < 0.5, (pos, rot)
    after = [s.median_px for s in score(frames, {c.id: c for c in res.cameras},
                                        {c.id: c.id for c in res.cameras})]
    assert before > 10.0
    assert max(after) < 2.5, after
    assert np.median(res.joint_px[res.inlier]) < 2.5


def _survey(cameras: list[Camera], world: list[tuple[float, float, float]],
            see: list[list[str]], rng: np.random.Generator) -> Survey:
    by = {c.id: c for c in cameras}
    pts = []
    for i, (w, cams) in enumerate(zip(world, see, strict=True)):
        pix = {}
        for cid in cams:
            c = by[cid]
            assert (np.asarray(w) @ c.R.T + c.t)[2] > 0.3, f"p{i} is behind {cid}"
            uv, _ = cv2.projectPoints(np.asarray([w], float), np.asarray(c.pose.rvec),
                                      np.asarray(c.pose.tvec), c.K_array, c.dist_array)
            x, y = uv.ravel() + rng.normal(0, 1.0, 2)
            assert 0 <= x < 640 and 0 <= y < 360, f"p{i} is outside {cid}"
            pix[cid] = (float(x), float(y))
        pts.append(SurveyPoint(name=f"p{i}", world=w, pixels=pix))
    return Survey(store="synthetic", frames="synthetic", points=pts)


def test_survey_fixes_the_store_frame():
    rng = np.random.default_rng(3)
    frames = _frames(CAMERAS, noise_px=1.5)
    # shelf-front corners of a gondola row along y = 0.2 and an end gondola at x = 4.8
    world = [(0.0, 0.2, 1.4), (1.2, 0.2, 1.4), (2.2, 0.2, 0.6), (3.4, 0.2, 1.4),
             (4.8, -1.2, 1.6), (4.8, -0.3, 0.3), (1.2, 0.2, 0.0), (3.4, 0.2, 0.0)]
    see = [["cam1", "cam3"], ["cam3", "cam1"], ["cam1", "cam3"], ["cam1", "cam5"],
           ["cam5", "cam7"], ["cam5"], ["cam1", "cam3"], ["cam7"]]
    survey = _survey(CAMERAS, world, see, rng)
    start = _perturbed(CAMERAS, deg=20.0, metres=0.8)
    res = calibrate(joint_observations(frames, start), start, survey)
    for got, want in zip(res.cameras, CAMERAS, strict=True):
        assert np.linalg.norm(got.center - want.center) < 0.05, (got.id, got.center)
        assert _rot_deg(got, want) < 0.5
    assert np.max(res.survey_px) < 4.0


def test_a_survey_on_one_face_seen_by_one_camera_is_refused():
    rng = np.random.default_rng(4)
    frames = _frames(CAMERAS, noise_px=1.5)
    world = [(4.8, -1.2, z) for z in (0.3, 0.6, 0.9, 1.2, 1.4, 1.6)]
    survey = _survey(CAMERAS, world, [["cam5"]] * len(world), rng)
    with pytest.raises(CalibrationError, match="does not fix the store frame"):
        calibrate(joint_observations(frames, CAMERAS), CAMERAS, survey)


def test_too_few_survey_picks_are_refused():
    rng = np.random.default_rng(5)
    frames = _frames(CAMERAS, noise_px=1.5)
    survey = _survey(CAMERAS, [(4.8, -1.2, 0.3), (4.8, -1.2, 1.6)], [["cam5"], ["cam5"]], rng)
    with pytest.raises(CalibrationError, match="need at least 6"):
        calibrate(joint_observations(frames, CAMERAS), CAMERAS, survey)


def test_views_that_never_overlap_are_refused():
    frames = _frames(CAMERAS, noise_px=1.5)
    shifted = {c: [KeypointFrame(f.camera_id, f.t + 100.0 * i, f.keypoints) for f in fr]
               for i, (c, fr) in enumerate(frames.items())}
    with pytest.raises(CalibrationError, match="seen by two cameras"):
        calibrate(joint_observations(shifted, CAMERAS), CAMERAS)


# ---- intrinsics refined in the adjustment ------------------------------------------------------

#: A rectified video's camera (no lens): f 360 px, principal point (340, 160), 20 px off the
#: image centre in each direction.
#: Start f per camera, 10-25 px off (a vanishing-point f), principal point at the image centre.
F_START = (340.0, 385.0, 350.0, 372.0)


def _with_k(c: Camera, f: float, cx: float, cy: float) -> Camera:
    return Camera.model_validate({**c.model_dump(), "K": ((f, 0.0, cx), (0.0, f, cy),
                                                          (0.0, 0.0, 1.0)),
                                  "dist": (0.0,) * 5})


def _intrinsics_rig(ids: tuple[str, ...], n: int = 80,
                    ) -> tuple[dict[str, list[KeypointFrame]], list[Camera]]:
    """The first ``n`` frames of the true rig, and the cameras moved with f, cx, cy wrong."""
    true = [_with_k(c, 360.0, 340.0, 160.0) for c in CAMERAS]
    frames = _frames(true, noise_px=1.0)
    start = [_with_k(c, f, 319.5, 179.5)
             for c, f in zip(_perturbed(true, deg=20.0, metres=0.8), F_START, strict=True)]
    return ({k: v[:n] for k, v in frames.items() if k in ids},
            [c for c in start if c.id in ids])


def test_intrinsics_refined_from_four_views():
    frames, start = _intrinsics_rig(("cam1", "cam3", "cam5", "cam7"))
    obs = joint_observations(frames, start)
    res = calibrate(obs, start, intrinsics=IntrinsicsPrior(f_sigma_px=(30.0,) * 4, free="f,pp"))
    for c in res.cameras:
        f, cx, cy = c.K[0][0], c.K[0][2], c.K[1][2]
        assert abs(f - 360.0) < 4.0, (c.id, f)
        # cx comes back; cy (along the ceiling cameras' tilt) only most of the way: the prior
        # at 179.5 still pulls it
        assert abs(cx - 340.0) < 4.0, (c.id, cx)
        assert 155.0 < cy < 170.0, (c.id, cy)
        assert c.K[1][1] == f
    pos, rot = _similar(list(res.cameras), [_with_k(c, 360.0, 340.0, 160.0) for c in CAMERAS])
    assert pos < 0.03 and rot < 1.0, (pos, rot)
    assert np.median(res.joint_px[res.inlier]) < 1.0
    # the same start with the intrinsics held: wrong f cannot be absorbed by the poses
    held = calibrate(obs, start)
    assert [c.K for c in held.cameras] == [c.K for c in start]
    assert np.median(held.joint_px[held.inlier]) > 1.3 * np.median(res.joint_px[res.inlier])


def test_intrinsics_stay_at_the_prior_where_the_views_cannot_tell():
    # two cameras, 2 s of walking (~100 joints): f 20-25 px off and the principal point 28 px
    # off are not pulled to the truth, the prior keeps them where they started
    frames, start = _intrinsics_rig(("cam1", "cam3"), n=20)
    obs = joint_observations(frames, start)
    assert obs.n_points < 150
    res = calibrate(obs, start,
                    intrinsics=IntrinsicsPrior(f_sigma_px=(10.0, 10.0), pp_sigma_px=10.0,
                                               free="f,pp"))
    for c, f0 in zip(res.cameras, F_START[:2], strict=True):
        assert abs(c.K[0][0] - f0) < 6.0, (c.id, c.K[0][0], f0)
        assert np.hypot(c.K[0][2] - 319.5, c.K[1][2] - 179.5) < 6.0, (c.id, c.K)


def test_a_focal_spread_is_not_trusted_tighter_than_the_floor():
    sig = IntrinsicsPrior(f_sigma_px=(2.0, 30.0), pp_sigma_px=20.0).sigmas(2)
    assert sig.tolist() == [[10.0, 20.0, 20.0], [30.0, 20.0, 20.0]]


def test_intrinsics_prior_needs_one_focal_sigma_per_camera():
    frames, start = _intrinsics_rig(("cam1", "cam3", "cam5", "cam7"))
    with pytest.raises(CalibrationError, match="3 focal-length priors for 4 cameras"):
        calibrate(joint_observations(frames, start), start,
                  intrinsics=IntrinsicsPrior(f_sigma_px=(10.0,) * 3))


def test_calibration_file_records_the_refined_intrinsics(tmp_path: Path):
    from walkout.perception.aifi_calibrate import calibration_file
    from walkout.perception.camera_file import Intrinsics, load_camera_file, write_camera_file

    frames, start = _intrinsics_rig(("cam1", "cam3", "cam5", "cam7"))
    measured = {c.id: Intrinsics(lens="plumbline", k1=0.0, k2=0.0, focal="image", f=c.K[0][0],
                                 cx=c.K[0][2], cy=c.K[1][2], principal_point="image centre",
                                 f_spread_px=spread)
                for c, spread in zip(start, (25.0, 30.0, 30.0, 30.0), strict=True)}
    kw = {"command": "c", "videos": {}, "backend": "movenet", "intrinsics": measured}
    with pytest.raises(CalibrationError, match="not measured: cam7"):
        calibration_file(frames, start, "synthetic", None, refine_intrinsics="f,pp",
                         **{**kw, "intrinsics": {k: measured[k] for k in ("cam1", "cam3",
                                                                          "cam5")}})
    data, _ = calibration_file(frames, start, "synthetic", None, refine_intrinsics="f,pp", **kw)
    write_camera_file(tmp_path / "c.json", data)
    back = load_camera_file(tmp_path / "c.json")
    for cam, f0 in zip(back.cameras, F_START, strict=True):
        rec = back.provenance.intrinsics[cam.id]
        assert rec.f == f0 and rec.refined is not None
        assert (rec.refined.f, rec.refined.cx, rec.refined.cy) == (cam.K[0][0], cam.K[0][2],
                                                                   cam.K[1][2])
        assert abs(cam.K[0][0] - 360.0) < 4.0, (cam.id, cam.K)
        assert rec.refined.pp_sigma_px == 30.0 and rec.refined.freed == "f,pp"
    assert back.provenance.intrinsics["cam1"].refined.f_sigma_px == 25.0  # type: ignore[union-attr]
    held, _ = calibration_file(frames, start, "synthetic", None, **kw)
    assert all(r.refined is None for r in held.provenance.intrinsics.values())
    assert [c.K for c in held.cameras] == [c.K for c in start]


def test_f_only_holds_the_principal_point_and_still_fits_f():
    frames, start = _intrinsics_rig(("cam1", "cam3", "cam5", "cam7"))
    obs = joint_observations(frames, start)
    res = calibrate(obs, start, intrinsics=IntrinsicsPrior(f_sigma_px=(30.0,) * 4))
    for c, f0 in zip(res.cameras, F_START, strict=True):
        assert (c.K[0][2], c.K[1][2]) == (319.5, 179.5)
        # f moves from its 10-25 px wrong start toward the truth (360); the 20 px principal
        # point error it cannot absorb keeps it from getting all the way
        assert abs(c.K[0][0] - 360.0) < abs(f0 - 360.0), (c.id, c.K[0][0], f0)
    held = calibrate(obs, start)
    assert np.median(res.joint_px[res.inlier]) < np.median(held.joint_px[held.inlier])
    with pytest.raises(CalibrationError, match="expected 'f' or 'f,pp'"):
        calibrate(obs, start, intrinsics=IntrinsicsPrior(f_sigma_px=(30.0,) * 4, free="pp"))


def test_the_relative_solve_keeps_the_cheapest_start_and_records_all():
    from walkout.perception.calibrate import common_focal_start

    frames, start = _intrinsics_rig(("cam1", "cam3", "cam5", "cam7"))
    obs = joint_observations(frames, start)
    common = common_focal_start(start)
    assert common[:, 0].tolist() == [361.0] * 4  # median of 340, 385, 350, 372
    assert common[:, 1:].tolist() == [[319.5, 179.5]] * 4
    # a start far off (f 200 everywhere) lands in a poor basin that solving on under the given
    # intrinsics does not leave (joints dropped); the cost ranks it last, the kept solution is
    # the cheapest, and every start is reported
    far = common.copy()
    far[:, 0] = 200.0
    res = calibrate(obs, start, starts=[("common", common), ("far", far)])
    names = [o.name for o in res.starts]
    assert sorted(names) == ["common", "far", "given"]
    # it drops joints the winner keeps (how many depends on the solver's version: 3-18 % of
    # a camera's with scipy 1.1x), and costs more than twice as much
    assert names[-1] == "far" and res.starts[-1].kept.min() < res.starts[0].kept.min()
    assert res.starts[-1].cost > 2 * res.starts[0].cost
    assert res.starts[0].kept.min() > 0.99 and res.inlier.mean() > 0.99
    costs = [o.cost for o in res.starts]
    assert costs == sorted(costs) and res.cost == costs[0]
    assert all(o.kept.shape == (4,) and 0.0 <= o.kept.min() <= o.kept.max() <= 1.0
               for o in res.starts)
    # the intrinsics held: whichever start won, the cameras keep the given matrices
    assert [c.K for c in res.cameras] == [c.K for c in start]
    one = calibrate(obs, start)
    assert one.starts == ()
    winner = res.starts[0].name
    if winner == "given":  # the same solve as without starts
        assert [c.pose for c in res.cameras] == [c.pose for c in one.cameras]
    with pytest.raises(CalibrationError, match="start 'bad'"):
        calibrate(obs, start, starts=[("bad", common[:3])])


def test_calibration_file_records_the_starts_compared():
    from walkout.perception.aifi_calibrate import calibration_file

    frames, start = _intrinsics_rig(("cam1", "cam3", "cam5", "cam7"))
    data, res = calibration_file(frames, start, "synthetic", None, command="c", videos={},
                                 backend="movenet", multi_start=True)
    rel = data.provenance.relative_starts
    assert [r.name for r in rel] == [o.name for o in res.starts]
    assert {r.name for r in rel} == {"given", "common f 361.0"}
    assert [r.kept for r in rel] == [True, False]
    assert rel[0].cost <= rel[1].cost
    common = next(r for r in rel if r.name != "given")
    assert common.f == {c.id: 361.0 for c in start}
    assert common.principal_point["cam5"] == (319.5, 179.5)
    single, _ = calibration_file(frames, start, "synthetic", None, command="c", videos={},
                                 backend="movenet")
    assert single.provenance.relative_starts == []


# ---- the survey file ----------------------------------------------------------------------------


def _write(tmp: Path, text: str) -> Path:
    p = tmp / "survey.yaml"
    p.write_text(text)
    return p


def test_survey_file_loads_with_open_coordinates(tmp_path: Path):
    s = load_survey(_write(tmp_path, (
        "store: aifi-nanostore\nframes: frame 300\npoints:\n"
        "  - {name: a, world: [1, 0.0857, 1.42], pixels: {cam5: [10, 20.5]}}\n"
        "  - {name: b, world: [4.5085, null, 1.42], pixels: {cam5: [11, 21], cam7: [3, 4]}}\n")))
    assert [p.world for p in s.points] == [(1.0, 0.0857, 1.42), (4.5085, None, 1.42)]
    assert s.points[1].pixels["cam7"] == (3.0, 4.0)


@pytest.mark.parametrize(("text", "message"), [
    ("store: x\nframes: f\npoints: []\n", "points: List should have at least 1 item"),
    ("store: x\nframes: f\npoints:\n  - {name: a, world: [1, 2], pixels: {cam5: [1, 2]}}\n",
     "points.0.world"),
    ("store: x\nframes: f\npoints:\n  - {name: a, world: [null, null, null], "
     "pixels: {cam5: [1, 2]}}\n", "at least one world coordinate"),
    ("store: x\nframes: f\npoints:\n  - {name: a, world: [1, 2, 3], pixels: {}}\n",
     "points.0.pixels"),
    ("store: x\nframes: f\npoints:\n  - {name: a, world: [1, 2, 3], pixels: {cam5: [1, 2]}}\n"
     "  - {name: a, world: [1, 2, 4], pixels: {cam5: [1, 3]}}\n", "appears twice"),
    ("store: x\nframes: f\npoints:\n  - {name: a, world: [1, 2, 3], pixels: {cam5: [1, 2]}, "
     "colour: red}\n", "points.0.colour: Extra inputs"),
    ("store: x\nframes: f\npoints:\n  - {name: a, world: [1, 2, '3'], pixels: {cam5: [1, 2]}}\n",
     "points.0.world"),
    ("[1, 2]\n", "a survey is a mapping"),
    ("store: [unclosed\n", "cannot read survey"),
])
def test_bad_survey_files_name_the_problem(tmp_path: Path, text: str, message: str):
    with pytest.raises(SurveyError, match=message.replace("[", r"\[")):
        load_survey(_write(tmp_path, text))


def test_missing_survey_file(tmp_path: Path):
    with pytest.raises(SurveyError, match="survey file not found"):
        load_survey(tmp_path / "nope.yaml")


def test_survey_pixels_checked_against_the_cameras():
    s = Survey(store="x", frames="f", points=[
        SurveyPoint(name="a", world=(1.0, 2.0, 3.0), pixels={"cam9": (1.0, 2.0)})])
    with pytest.raises(SurveyError, match="camera 'cam9' is not in the store"):
        s.check_cameras({c.id: c for c in CAMERAS})
    s = Survey(store="x", frames="f", points=[
        SurveyPoint(name="a", world=(1.0, 2.0, 3.0), pixels={"cam1": (700.0, 2.0)})])
    with pytest.raises(SurveyError, match="outside its 640x360 image"):
        s.check_cameras({c.id: c for c in CAMERAS})


def test_shipped_cps_test_01_survey_loads():
    from walkout.store import load_store

    p = (Path(__file__).parents[2] / "src/walkout/perception/aifi_calibration"
         / "cps-test-01-survey.yaml")
    s = load_survey(p)
    s.check_cameras(load_store("aifi-nanostore").cameras_by_id)
    assert s.store == "aifi-nanostore"


# ---- shared floor points and the camera file ---------------------------------------------------


def _floor_survey(rng: np.random.Generator) -> tuple[Survey, tuple[float, float, float]]:
    """Fixture points as in test_survey_fixes_the_store_frame, plus a floor mark whose store
    position is unknown ([null, null, 0]) seen by two cameras."""
    world = [(0.0, 0.2, 1.4), (1.2, 0.2, 1.4), (2.2, 0.2, 0.6), (3.4, 0.2, 1.4),
             (4.8, -1.2, 1.6), (4.8, -0.3, 0.3), (1.2, 0.2, 0.0), (3.4, 0.2, 0.0)]
    see = [["cam1", "cam3"], ["cam3", "cam1"], ["cam1", "cam3"], ["cam1", "cam5"],
           ["cam5", "cam7"], ["cam5"], ["cam1", "cam3"], ["cam7"]]
    mark = (4.0, -1.1, 0.0)
    base = _survey(CAMERAS, [*world, mark], [*see, ["cam5", "cam7"]], rng)
    pts = [*base.points[:-1], SurveyPoint(name="floor mark", world=(None, None, 0.0),
                                           pixels=base.points[-1].pixels)]
    return Survey(store="synthetic", frames="synthetic", points=pts), mark


def test_a_shared_floor_mark_is_solved_where_it_is():
    """A mark on the floor picked in two views is one unknown point: the solve places it
    where the views agree, on the floor, and it pulls every camera that sees it."""
    survey, mark = _floor_survey(np.random.default_rng(6))
    start = _perturbed(CAMERAS, deg=20.0, metres=0.8)
    res = calibrate(joint_observations(_frames(CAMERAS, noise_px=1.5), start), start, survey)
    k = [p.name for p in survey.points].index("floor mark")
    assert np.linalg.norm(res.survey_world[k] - np.asarray(mark)) < 0.05, res.survey_world[k]
    assert res.survey_world[k][2] == 0.0
    assert np.max(res.survey_px) < 4.0
    for got, want in zip(res.cameras, CAMERAS, strict=True):
        assert np.linalg.norm(got.center - want.center) < 0.05, (got.id, got.center)


def test_a_floor_mark_picked_at_different_spots_shows_in_the_residuals():
    """The same mark picked 25 px off in one view does not fit: its residual says which."""
    survey, _ = _floor_survey(np.random.default_rng(6))
    pts = list(survey.points)
    mark = pts[-1]
    x, y = mark.pixels["cam7"]
    pts[-1] = mark.model_copy(update={"pixels": {**mark.pixels, "cam7": (x + 25.0, y)}})
    bad = survey.model_copy(update={"points": pts})
    from walkout.perception.aifi_calibrate import calibration_file, refuse_misfit

    data, _ = calibration_file(_frames(CAMERAS, noise_px=1.5), CAMERAS, "synthetic", bad,
                               command="c", videos={}, backend="movenet")
    worst = max(data.provenance.survey_points, key=lambda r: r.px)
    assert (worst.name, worst.camera) == ("floor mark", "cam7")
    assert worst.px > 8.0
    # `walkout aifi calibrate` refuses to write such a calibration, naming the pick
    with pytest.raises(CalibrationError, match=r"does not fit the footage.*'floor mark' in cam7"):
        refuse_misfit(data, 8.0)
    refuse_misfit(data, worst.px + 0.1)


def test_calibration_file_has_provenance_and_residuals_and_is_deterministic(tmp_path: Path):
    from walkout.perception.aifi_calibrate import calibration_file
    from walkout.perception.camera_file import load_camera_file, write_camera_file

    survey, _ = _floor_survey(np.random.default_rng(6))
    frames = _frames(CAMERAS, noise_px=1.5)
    start = _perturbed(CAMERAS, deg=20.0, metres=0.8)
    kw = {"command": "walkout aifi calibrate V --survey s.yaml --out c.json",
          "videos": {c.id: f"{c.id}.mp4" for c in CAMERAS}, "backend": "movenet",
          "date": "2020-01-28"}
    data, _ = calibration_file(frames, start, "synthetic", survey, **kw)
    write_camera_file(tmp_path / "a.json", data)
    again, _ = calibration_file(frames, start, "synthetic", survey, **kw)
    write_camera_file(tmp_path / "b.json", again)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    back = load_camera_file(tmp_path / "a.json")
    assert [c.id for c in back.cameras] == ["cam1", "cam3", "cam5", "cam7"]
    for got, want in zip(back.cameras, CAMERAS, strict=True):
        assert np.linalg.norm(got.center - want.center) < 0.05
    p = back.provenance
    assert p.date == "2020-01-28" and p.frames == {c.id: 80 for c in CAMERAS}
    assert set(p.epipolar_px) == {"cam1-cam3", "cam1-cam5", "cam1-cam7", "cam3-cam5",
                                  "cam3-cam7", "cam5-cam7"}
    assert max(p.epipolar_px.values()) < 2.5
    assert all(r.joints_median_px < 2.5 and r.joints_kept > 0.95 for r in p.cameras.values())
    assert len(p.survey_points) == sum(len(s.pixels) for s in survey.points)
    assert {r.name for r in p.survey_points if r.camera == "cam7"} >= {"floor mark"}
    assert all(r.px < 4.0 for r in p.survey_points)


# ---- an upright of a moved fixture --------------------------------------------------------------


def _upright_survey(rng: np.random.Generator, shared: bool) -> Survey:
    """The row's foot ([null, 0.2, 0]) in two views, two fully known floor points, and an upright
    of a fixture at an unknown floor position (4.6, -1.4) picked at its shelf heights in one
    view (``shared``: as one upright, else as independent points)."""
    heights = (0.0, 0.3, 0.6, 0.9, 1.2, 1.6)
    row = [(x, 0.2, 0.0) for x in (0.5, 1.0, 1.8, 2.6, 4.0)]
    world = [*row, (1.0, -0.3, 0.0), (3.4, 0.2, 0.0), *[(4.6, -1.4, z) for z in heights]]
    see = [["cam1"]] * 3 + [["cam7"]] * 2 + [["cam3"], ["cam7"]] + [["cam5"]] * len(heights)
    base = _survey(CAMERAS, world, see, rng)
    pts = [p.model_copy(update={"world": (None, 0.2, 0.0)}) for p in base.points[:5]]
    pts += base.points[5:7]
    for p, z in zip(base.points[7:], heights, strict=True):
        pts.append(SurveyPoint(name=p.name, world=(None, None, z), pixels=p.pixels,
                               upright="end rack" if shared else ""))
    return Survey(store="synthetic", frames="synthetic", points=pts)


def test_an_upright_at_an_unknown_place_is_solved_on_one_vertical_line():
    """Picks up one vertical edge at known heights, their floor position open and shared, are
    one unknown: solved where the upright stands, all on one vertical line, the cameras back
    where they are (as independent points each pick would land on its own ray)."""
    survey = _upright_survey(np.random.default_rng(7), shared=True)
    start = _perturbed(CAMERAS, deg=20.0, metres=0.8)
    res = calibrate(joint_observations(_frames(CAMERAS, noise_px=1.5), start), start, survey)
    for got, want in zip(res.cameras, CAMERAS, strict=True):
        assert np.linalg.norm(got.center - want.center) < 0.05, (got.id, got.center)
    up = [p.name for p in survey.points].index("p7")
    assert np.linalg.norm(res.survey_world[up][:2] - (4.6, -1.4)) < 0.05, res.survey_world[up]
    assert len({tuple(res.survey_world[k][:2]) for k in range(up, up + 6)}) == 1
    assert np.max(res.survey_px) < 4.0


def test_an_upright_needs_open_x_and_y_and_a_height(tmp_path: Path):
    with pytest.raises(SurveyError, match=r"on upright 'u' must have world \[null, null, h"):
        load_survey(_write(tmp_path, (
            "store: x\nframes: f\npoints:\n"
            "  - {name: a, world: [1.0, null, 0.3], upright: u, pixels: {cam5: [1, 2]}}\n")))


@pytest.mark.parametrize("where", ["dir", "exists"])
def test_calibrate_out_is_checked_before_any_work(tmp_path: Path, where: str):
    """--out was first looked at after perceiving four videos and the bundle adjustment: a
    directory there was an IsADirectoryError traceback and the calibration lost; an existing
    camera file was overwritten. Said first now: not even the videos are looked at."""
    from typer.testing import CliRunner

    from walkout.cli import app
    from walkout.perception import aifi_calibrate

    survey = (Path(aifi_calibrate.__file__).parent / "aifi_calibration"
              / "cps-test-01-survey.yaml")
    out = tmp_path / "cams.json"
    if where == "dir":
        out.mkdir()
    else:
        out.write_text("precious")
    args = ["aifi", "calibrate", str(tmp_path / "no-videos"), "--survey", str(survey),
            "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    said = "is a directory" if where == "dir" else "exists; use --force to overwrite it"
    assert f"error: --out {out}: {said}" in " ".join(res.output.split())
    if where == "exists":
        assert out.read_text() == "precious"
        res = CliRunner().invoke(app, [*args, "--force"])  # taken: on to the videos
        assert res.exit_code == 2 and "not a directory of videos" in res.output, res.output
