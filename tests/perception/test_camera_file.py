"""Camera files (`walkout.perception.camera_file`) and `walkout aifi calibrate`'s input checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from walkout.cli import app
from walkout.perception.camera_file import (
    CameraFileError,
    load_camera_file,
    with_cameras,
)
from walkout.store import load_store


def _valid(tmp: Path) -> dict:
    store = load_store("aifi-nanostore")
    cam = store.cameras_by_id["cam5"]
    moved = cam.model_copy(update={"pose": cam.pose.model_copy(update={"tvec": (0.1, 0.2, 2.0)})})
    return {"store": "aifi-nanostore", "cameras": [moved.model_dump(mode="json")],
            "provenance": {"date": "2020-01-28", "command": "walkout aifi calibrate ...",
                           "videos": {"cam5": "v5.mp4"}, "frames": {"cam5": 338},
                           "backend": "movenet", "survey": "s.yaml", "survey_sha256": None,
                           "epipolar_px": {}, "survey_points": [],
                           "cameras": {"cam5": {"joints_median_px": 2.1, "joints_kept": 0.99,
                                                "survey_median_px": None}}}}


def test_camera_file_replaces_the_store_cameras_of_the_same_id(tmp_path: Path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(_valid(tmp_path)))
    store = load_store("aifi-nanostore")
    got = with_cameras(store, load_camera_file(p).cameras, str(p))
    assert got.cameras_by_id["cam5"].pose.tvec == (0.1, 0.2, 2.0)
    assert got.cameras_by_id["cam1"] == store.cameras_by_id["cam1"]
    assert [c.id for c in got.cameras] == [c.id for c in store.cameras]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(cameras=[]), "cameras: List should have at least 1 item"),
    (lambda d: d.update(colour="red"), "colour: Extra inputs are not permitted"),
    (lambda d: d["provenance"].pop("date"), "provenance.date: Field required"),
    (lambda d: d["cameras"][0].update(fps=-1), "cameras.0.fps"),
])
def test_bad_camera_files_name_the_problem(tmp_path: Path, edit, message: str):
    d = _valid(tmp_path)
    edit(d)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(d))
    with pytest.raises(CameraFileError, match=message):
        load_camera_file(p)


def test_unreadable_camera_files(tmp_path: Path):
    with pytest.raises(CameraFileError, match="camera file not found"):
        load_camera_file(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(CameraFileError, match="cannot read camera file"):
        load_camera_file(tmp_path / "x.json")


def test_camera_file_for_another_store_is_refused(tmp_path: Path):
    d = _valid(tmp_path)
    d["cameras"][0]["id"] = "cam9"
    p = tmp_path / "c.json"
    p.write_text(json.dumps(d))
    with pytest.raises(CameraFileError, match="cam9 not in store 'aifi-nanostore'"):
        with_cameras(load_store("aifi-nanostore"), load_camera_file(p).cameras, str(p))
    d["cameras"][0].update(id="cam5", resolution=[1280, 720])
    p.write_text(json.dumps(d))
    with pytest.raises(CameraFileError, match="cam5 is 1280x720, the store's cam5 is 640x360"):
        with_cameras(load_store("aifi-nanostore"), load_camera_file(p).cameras, str(p))


def _videos(tmp: Path) -> Path:
    d = tmp / "videos"
    d.mkdir()
    for c in (1, 3, 5, 7):
        (d / f"cps-test-01-nodepth-cam{c}.mp4").write_bytes(b"")
    return d


@pytest.mark.parametrize(("survey", "message"), [
    (None, "survey file not found"),
    ("store: aifi-nanostore\nframes: f\npoints:\n"
     "  - {name: a, world: [1, 2, 3], pixels: {cam9: [1, 2]}}\n", "camera 'cam9' is not in"),
    ("store: aifi-nanostore\nframes: f\npoints:\n"
     "  - {name: a, world: [1, 2, 3], pixels: {cam5: [700, 2]}}\n", "outside its 640x360"),
    ("store: no-such-store\nframes: f\npoints:\n"
     "  - {name: a, world: [1, 2, 3], pixels: {cam5: [7, 2]}}\n", "no-such-store"),
])
def test_calibrate_command_names_a_bad_survey(tmp_path: Path, survey: str | None, message: str):
    s = tmp_path / "s.yaml"
    if survey is not None:
        s.write_text(survey)
    r = CliRunner().invoke(app, ["aifi", "calibrate", str(_videos(tmp_path)), "--survey", str(s),
                                 "--out", str(tmp_path / "c.json")])
    assert r.exit_code == 2, r.output
    assert message in r.output.replace("\n", "")
    assert not (tmp_path / "c.json").exists()


def test_calibrate_command_names_missing_videos(tmp_path: Path):
    r = CliRunner().invoke(app, ["aifi", "calibrate", str(tmp_path / "none"), "--survey", "s",
                                 "--out", "c.json"])
    assert r.exit_code == 2 and "not a directory of videos" in r.output.replace("\n", "")
    d = tmp_path / "v"
    d.mkdir()
    r = CliRunner().invoke(app, ["aifi", "calibrate", str(d), "--survey", "s", "--out", "c.json"])
    assert r.exit_code == 2 and "missing cps-test-01-nodepth-cam1.mp4" in r.output.replace("\n", "")


def test_aifi_video_names_a_bad_camera_file(tmp_path: Path):
    r = CliRunner().invoke(app, ["aifi", "video", str(tmp_path), "--cameras",
                                 str(tmp_path / "none.json")])
    assert r.exit_code == 2, r.output
    assert "camera file not found" in r.output.replace("\n", "")
