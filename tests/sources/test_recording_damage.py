"""Recordings damaged past repair: refused with a RecordingError that names the file and the
line, row or frame, instead of a TypeError deep in the engine or a silently wrong replay.
(What can be put right — readings out of order, repeats — is: test_recording_order.py.)"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from walkout.sim.session import simulate
from walkout.sources.recording import RecordingError, load_sensors, write_recording
from walkout.store import load_store


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "small-2"
    write_recording(simulate(load_store("small"), 2, 2), out)
    return out


def _copy(clean: Path, tmp_path: Path) -> Path:
    rec = tmp_path / "rec"
    shutil.copytree(clean, rec)
    return rec


def _gate_line(rec: Path, n: int, edit: Callable[[dict[str, Any]], Any]) -> None:
    """Line ``n`` (1-based) of gates.jsonl replaced by ``edit`` of its object (or its text)."""
    lines = (rec / "gates.jsonl").read_text().splitlines()
    obj = json.loads(lines[n - 1])
    new = edit(obj)
    lines[n - 1] = new if isinstance(new, str) else json.dumps(obj)
    (rec / "gates.jsonl").write_text("\n".join(lines) + "\n")


def _set(**kw: Any) -> Callable[[dict[str, Any]], None]:
    return lambda o: o.update(kw)


@pytest.mark.parametrize(("edit", "said"), [
    (_set(t="12.5"), "t='12.5' is not a finite number"),
    (_set(t=None), "t=None is not a finite number"),
    (lambda o: json.dumps(o).replace(f'"t": {json.dumps(o["t"])}', '"t": NaN'),
     "t=nan is not a finite number"),
    (lambda o: json.dumps(o).replace(f'"t": {json.dumps(o["t"])}', '"t": Infinity'),
     "t=inf is not a finite number"),
    (_set(t=True), "t=True is not a finite number"),
    (_set(gate_id="G99"), "gate 'G99' is not one of the store's ['entry', 'exit']"),
    (_set(kind="sideways"), "kind 'sideways' on the entry gate 'entry'"),
    (_set(kind="exit"), "kind 'exit' on the entry gate 'entry'"),
    (_set(party_size=0), "party_size 0 is not a whole number in 1..20"),
    (_set(party_size=21), "party_size 21 is not a whole number in 1..20"),
    (_set(party_size=2.5), "party_size 2.5 is not a whole number in 1..20"),
    (_set(credential=7), "credential 7 is not a string"),
    (_set(colour="red"), "not a gate event"),
    (lambda o: "[1, 2]", "not a gate event"),
])
def test_a_bad_gate_line_is_refused_with_its_line(
        clean: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], Any], said: str) -> None:
    rec = _copy(clean, tmp_path)
    first = json.loads((rec / "gates.jsonl").read_text().splitlines()[0])
    assert first["gate_id"] == first["kind"] == "entry"
    _gate_line(rec, 1, edit)
    with pytest.raises(RecordingError) as e:
        load_sensors(rec)
    assert str(e.value).startswith(f"{rec / 'gates.jsonl'}:1: ") and said in str(e.value)


def _keypoints(rec: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> None:
    z = dict(np.load(rec / "keypoints.npz"))
    edit(z)
    np.savez(rec / "keypoints.npz", **z)


@pytest.mark.parametrize("bad", [-1, 12, 99])
def test_a_frame_naming_a_camera_the_file_lacks_is_refused(
        clean: Path, tmp_path: Path, bad: int) -> None:
    rec = _copy(clean, tmp_path)

    def edit(z: dict[str, np.ndarray]) -> None:
        z["camera"] = z["camera"].copy()
        z["camera"][3] = bad

    _keypoints(rec, edit)
    with pytest.raises(RecordingError, match=rf"keypoints\.npz: 1 frames name a camera index "
                                             rf"outside the 12 cameras of the file \(first at "
                                             rf"frame 3: {bad}\)"):
        load_sensors(rec)


def test_decreasing_frame_offsets_are_refused(clean: Path, tmp_path: Path) -> None:
    rec = _copy(clean, tmp_path)

    def edit(z: dict[str, np.ndarray]) -> None:
        off = z["offsets"].copy()
        i = int(np.flatnonzero(np.diff(off) > 0)[0]) + 1  # the end of the first non-empty frame
        off[i] = off[i - 1] - 1 if off[i - 1] > 0 else off[i + 1] + 1
        z["offsets"] = off

    _keypoints(rec, edit)
    with pytest.raises(RecordingError, match=r"keypoints\.npz: frame offsets decrease at frame"):
        load_sensors(rec)


@pytest.mark.parametrize(("meta", "said"), [
    ("[]", "not a JSON object but list"),
    ({"duration_s": ...}, "duration_s must be a number of seconds >= 0, got None"),
    ({"duration_s": "100"}, "duration_s must be a number of seconds >= 0, got '100'"),
    ({"duration_s": -1.0}, "duration_s must be a number of seconds >= 0, got -1.0"),
    ({"duration_s": 1e12}, "duration_s 1e+12 is more than a week"),  # was a MemoryError
])
def test_a_bad_recording_json_is_refused(clean: Path, tmp_path: Path, meta: Any,
                                         said: str) -> None:
    rec = _copy(clean, tmp_path)
    if isinstance(meta, dict):
        m = json.loads((rec / "recording.json").read_text())
        m.update(meta)
        meta = json.dumps({k: v for k, v in m.items() if v is not ...})
    (rec / "recording.json").write_text(meta)
    with pytest.raises(RecordingError, match=r"recording\.json: ") as e:
        load_sensors(rec)
    assert said in str(e.value)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_an_infinite_plate_weight_is_refused_with_its_row(
        clean: Path, tmp_path: Path, value: float) -> None:
    rec = _copy(clean, tmp_path)
    z = dict(np.load(rec / "plates.npz"))
    g = z["grams"].copy()
    g[5, 3] = value
    z["grams"] = g
    np.savez(rec / "plates.npz", **z)
    plate = str(z["plate_ids"][3])
    with pytest.raises(RecordingError, match=rf"plates\.npz: 1 plate weights are infinite "
                                             rf"\(first at row 5, plate {plate}\)"):
        load_sensors(rec)


def test_a_missing_weight_is_still_no_reading(clean: Path, tmp_path: Path) -> None:
    rec = _copy(clean, tmp_path)
    z = dict(np.load(rec / "plates.npz"))
    g = z["grams"].copy()
    g[5, 3] = np.nan
    z["grams"] = g
    np.savez(rec / "plates.npz", **z)
    assert np.isnan(load_sensors(rec).plates.grams[5, 3])


@pytest.mark.parametrize(("value", "col", "what"), [
    (np.nan, 0, "x = nan"), (np.inf, 1, "y = inf"), (-np.inf, 2, "confidence = -inf")])
def test_non_finite_keypoints_are_refused_with_camera_and_frame(
        clean: Path, tmp_path: Path, value: float, col: int, what: str) -> None:
    """The live MQTT decoder refused them; a recording on disk passed them to the tracker."""
    rec = _copy(clean, tmp_path)
    z = dict(np.load(rec / "keypoints.npz"))
    off = z["offsets"]
    frame = int(np.flatnonzero(np.diff(off) > 1)[2])  # a frame with two people or more
    kp = z["keypoints"].copy()
    kp[off[frame] + 1, 5, col] = value  # its second person's left shoulder
    z["keypoints"] = kp
    np.savez(rec / "keypoints.npz", **z)
    cam = str(z["camera_ids"][z["camera"][frame]])
    with pytest.raises(RecordingError) as e:
        load_sensors(rec)
    assert str(e.value).startswith(f"{rec / 'keypoints.npz'}: 1 keypoint values are not finite "
                                   f"(first in frame {frame}: camera {cam!r}, t=")
    assert f"person 1, joint 5 {what})" in str(e.value)


def _far_plate(rec: Path, t: float) -> str:
    z = dict(np.load(rec / "plates.npz"))
    times = z["t"].copy()
    times[-1] = t
    z["t"] = times
    np.savez(rec / "plates.npz", **z)
    return f"{rec / 'plates.npz'}: row {len(times) - 1}: plate sample stamped t={t:g} s"


def _far_frame(rec: Path, t: float) -> str:
    z = dict(np.load(rec / "keypoints.npz"))
    times = z["t"].copy()
    times[3] = t
    z["t"] = times
    np.savez(rec / "keypoints.npz", **z)
    cam = str(z["camera_ids"][z["camera"][3]])
    return f"{rec / 'keypoints.npz'}: frame 3 (camera {cam!r}): frame stamped t={t:g} s"


def _far_gate(rec: Path, t: float) -> str:
    lines = (rec / "gates.jsonl").read_text().splitlines()
    (rec / "gates.jsonl").write_text(
        "\n".join([*lines, json.dumps({**json.loads(lines[-1]), "t": t})]) + "\n")
    return f"{rec / 'gates.jsonl'}:{len(lines) + 1}: gate event stamped t={t:g} s"


def _far_mode(rec: Path, t: float) -> str:
    (rec / "store_modes.jsonl").write_text(json.dumps({"t": t, "mode": "closed"}) + "\n")
    return f"{rec / 'store_modes.jsonl'}:1: store-mode change stamped t={t:g} s"


@pytest.mark.parametrize("t", [1e11, 1e7, -1e7])
@pytest.mark.parametrize("stamp", [_far_plate, _far_frame, _far_gate, _far_mode])
def test_a_reading_stamped_far_outside_the_recording_is_refused(
        clean: Path, tmp_path: Path, stamp: Callable[[Path, float], str], t: float) -> None:
    """One stamp at 1e7..1e11 s in a recording of ~100 s made replay cut millions of empty
    chunks or die with MemoryError in chunk_edges: refused, naming the file, row or line."""
    rec = _copy(clean, tmp_path)
    said = stamp(rec, t)
    with pytest.raises(RecordingError) as e:
        load_sensors(rec)
    assert str(e.value).startswith(said), str(e.value)
    assert "outside the recording's" in str(e.value)


@pytest.mark.parametrize("stamp", [_far_plate, _far_frame, _far_gate, _far_mode])
def test_a_stamp_within_a_minute_of_the_recording_still_loads(
        clean: Path, tmp_path: Path, stamp: Callable[[Path, float], str]) -> None:
    rec = _copy(clean, tmp_path)
    end = json.loads((rec / "recording.json").read_text())["duration_s"]
    stamp(rec, end + 59.0)
    load_sensors(rec)


def test_replay_of_a_gate_stamped_far_in_the_future_is_a_clean_error(
        clean: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from walkout.cli import app

    rec = _copy(clean, tmp_path)
    _far_gate(rec, 1e11)
    n = len((rec / "gates.jsonl").read_text().splitlines())
    res = CliRunner().invoke(app, ["replay", str(rec), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert f"gates.jsonl:{n}:gateeventstampedt=1e+11s" in "".join(res.output.split())
    assert not (tmp_path / "r.json").exists()
