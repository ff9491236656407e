"""Recordings whose readings are out of time order or repeated: put right, said, same receipts."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from walkout.cli import app
from walkout.engine import Engine
from walkout.sim.session import simulate
from walkout.sources.recording import RecordingError, load_sensors, write_recording
from walkout.store import load_store


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "small-3"
    write_recording(simulate(load_store("small"), 3, 2), out)
    return out


def _damaged(clean: Path, tmp_path: Path, name: str, edit: Callable[[dict], None]) -> Path:
    rec = tmp_path / "rec"
    shutil.copytree(clean, rec)
    z = dict(np.load(rec / name))
    edit(z)
    np.savez(rec / name, **z)
    return rec


def _receipts(rec: Path) -> list[tuple[str, dict[str, int]]]:
    result = Engine(load_store("small")).run(load_sensors(rec))
    return sorted((r.credential, dict(r.counts())) for r in result.receipts)


def _swap_times(step: int) -> Callable[[dict], None]:
    """An edit that swaps the time of the middle reading with the one ``step`` rows on."""
    def edit(z: dict) -> None:
        t = z["t"].copy()
        i = len(t) // 2
        t[i], t[i + step] = t[i + step], t[i]
        z["t"] = t
    return edit


def _repeat_plate_sample(z: dict) -> None:
    i = len(z["t"]) // 3
    z["t"] = np.insert(z["t"], i, z["t"][i])
    z["grams"] = np.insert(z["grams"], i, z["grams"][i], axis=0)


def test_a_clean_recording_loads_without_notes(clean: Path) -> None:
    assert load_sensors(clean).notes == ()


@pytest.mark.parametrize(("name", "edit", "said"), [
    ("plates.npz", _swap_times(1), "1 plate samples out of time order put back in order"),
    ("plates.npz", _repeat_plate_sample, "1 repeated plate samples dropped"),
    ("keypoints.npz", _swap_times(7), "frames out of time order put back in order"),
])
def test_disordered_readings_are_put_right_said_and_charge_the_same(
        clean: Path, tmp_path: Path, name: str, edit: Callable[[dict], None],
        said: str) -> None:
    rec = _damaged(clean, tmp_path, name, edit)
    sensors = load_sensors(rec)
    assert len(sensors.notes) == 1 and name in sensors.notes[0] and said in sensors.notes[0]
    assert np.all(np.diff(sensors.plates.t) > 0)
    assert np.all(np.diff([f.t for f in sensors.frames]) >= 0)
    assert _receipts(rec) == _receipts(clean)
    res = CliRunner().invoke(app, ["replay", str(rec), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0 and "warning:" in res.output and said in " ".join(res.output.split())


def test_a_repeated_frame_of_one_camera_is_dropped_but_not_another_cameras(
        clean: Path, tmp_path: Path) -> None:
    def two_copies(z: dict) -> None:
        """Frame i twice more at its own time: once from its camera (a repeat), once as if
        from the next camera (a different reading that happens to share the time)."""
        i = len(z["t"]) // 2
        a, b = z["offsets"][i], z["offsets"][i + 1]
        other = (z["camera"][i] + 1) % len(z["camera_ids"])
        z["camera"] = np.insert(z["camera"], i, [z["camera"][i], other])
        z["t"] = np.insert(z["t"], i, [z["t"][i]] * 2)
        z["keypoints"] = np.insert(z["keypoints"], a, np.concatenate([z["keypoints"][a:b]] * 2),
                                   axis=0)
        n = b - a
        z["offsets"] = np.concatenate([z["offsets"][:i + 1], [a + n], z["offsets"][i:] + 2 * n])
    rec = _damaged(clean, tmp_path, "keypoints.npz", two_copies)
    sensors, before = load_sensors(rec), load_sensors(clean)
    assert len(sensors.frames) == len(before.frames) + 1
    assert sensors.notes == (f"{rec / 'keypoints.npz'}: 1 repeated frames dropped",)


def test_gate_events_out_of_order_are_sorted_and_said(clean: Path, tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    shutil.copytree(clean, rec)
    lines = (rec / "gates.jsonl").read_text().splitlines()
    assert len(lines) >= 2
    (rec / "gates.jsonl").write_text("\n".join(reversed(lines)) + "\n")
    sensors = load_sensors(rec)
    assert [g.t for g in sensors.gates] == sorted(json.loads(x)["t"] for x in lines)
    assert "gate events out of time order" in sensors.notes[0]


def test_a_non_finite_time_is_refused_with_the_row(clean: Path, tmp_path: Path) -> None:
    def nan_t(z: dict) -> None:
        t = z["t"].copy()
        t[5] = np.nan
        z["t"] = t
    rec = _damaged(clean, tmp_path, "plates.npz", nan_t)
    with pytest.raises(RecordingError, match=r"plates\.npz: 1 plate samples stamped with a time "
                                             r"that is not finite \(first at row 5\)"):
        load_sensors(rec)


def test_a_repeated_gate_scan_is_dropped_and_said(clean: Path, tmp_path: Path) -> None:
    """A gates.jsonl line repeated verbatim is one scan read twice (the MQTT source drops it by
    t, kind and credential): kept, replay opened a phantom second session for the credential.
    A scan at the same time with another credential is a different scan and is kept."""
    rec = tmp_path / "rec"
    shutil.copytree(clean, rec)
    lines = (rec / "gates.jsonl").read_text().splitlines()
    other = json.dumps({**json.loads(lines[0]), "credential": "qr-someone-else"})
    (rec / "gates.jsonl").write_text("\n".join([lines[0], other, *lines]) + "\n")
    sensors = load_sensors(rec)
    assert len(sensors.gates) == len(lines) + 1
    assert sum(g.credential == "qr-someone-else" for g in sensors.gates) == 1
    assert sensors.notes == (f"{rec / 'gates.jsonl'}: 1 repeated gate events dropped (same t, "
                             "gate, kind and credential as an earlier line; first at line 3)",)
    (rec / "gates.jsonl").write_text("\n".join([lines[0], *lines]) + "\n")
    assert _receipts(rec) == _receipts(clean)
