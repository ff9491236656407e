"""AiFi AutoCheckout readers against the real BENCHMARK-1 case (skipped where data is absent)."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from walkout.events import L_WRIST, R_WRIST
from walkout.sources.aifi import (
    AifiCase,
    AifiDataError,
    load_case,
    read_calibration,
    read_geometry,
    read_plate_data,
    read_products,
    read_targets,
)
from walkout.store import Store, load_store

AIFI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "aifi-autocheckout"
SHOPPER = "3325379692103139202"
BOUGHT = "071142008582"


@pytest.fixture(scope="module")
def aifi_dir() -> Path:
    if not (AIFI / "BENCHMARK-1" / "plate_data.json").is_file():
        pytest.skip(f"AiFi AutoCheckout data not found at {AIFI} (../shared/data beside the repo)")
    return AIFI


@pytest.fixture(scope="module")
def store() -> Store:
    return load_store("aifi-nanostore")


@pytest.fixture(scope="module")
def case(aifi_dir: Path, store: Store) -> AifiCase:
    return load_case(aifi_dir / "BENCHMARK-1", store.plate_ids)


def test_geometry_counts_and_units(aifi_dir: Path) -> None:
    geo = read_geometry(aifi_dir / "store_meta")
    assert len(geo.gondolas) == 5
    assert len(geo.shelves) == 30
    assert len(geo.plates) == 306
    # Metres: 4-inch plates, gondolas 1.22 m / 0.91 m long, shelves 0.41 m deep.
    p = next(p for p in geo.plates if p.id == "G1-S1-P1")
    assert p.surface.max[0] - p.surface.min[0] == pytest.approx(0.1016, abs=1e-4)
    assert p.surface.max[1] - p.surface.min[1] == pytest.approx(0.4064, abs=1e-4)
    assert {g.front for g in geo.gondolas} == {(0.0, -1.0), (-1.0, 0.0)}


def test_calibration_is_inches_camera_to_world(aifi_dir: Path) -> None:
    cal = read_calibration(aifi_dir / "store_meta" / "calibration.json")
    assert [c.camera_id for c in cal.cameras] == [str(i) for i in range(1, 9)]
    for c in cal.cameras:
        # Ceiling cameras ~2.4 m up: only true if Tw is camera->world and in inches.
        assert 2.3 < c.center[2] < 2.6
        assert c.K[0, 2] == pytest.approx(320.0) and c.K[0, 0] == pytest.approx(c.K[1, 1], rel=0.01)
    x0, y0, x1, y1 = cal.world_ltrb_m
    assert (x0, y0, x1, y1) == pytest.approx((-1.6256, -2.794, 5.7658, 1.4224))


def test_plate_centres_project_into_cameras(aifi_dir: Path, store: Store) -> None:
    cal = read_calibration(aifi_dir / "store_meta" / "calibration.json")
    centres = store.plate_boxes.mean(axis=1)
    centres[:, 2] = store.plate_boxes[:, 0, 2]  # centre of the plate surface
    w, h = 640, 360
    seen = np.zeros(len(centres), dtype=bool)
    inside_by_cam = {}
    for c in cal.cameras:
        uv, front = c.project(centres)
        inside = front & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        inside_by_cam[c.camera_id] = inside
        seen |= inside
    gondola = np.array([p.split("-")[0] for p in store.plate_ids])
    # Camera 1 looks down the row from its gondola-4 end: gondolas 1-2 are fully in view,
    # gondola 3 mostly; gondola 5 (behind it) not at all.
    cam1 = inside_by_cam["1"]
    assert cam1[np.isin(gondola, ["G1", "G2"])].all()
    assert cam1[gondola == "G3"].mean() > 0.8
    assert not cam1[gondola == "G5"].any()
    assert seen.all(), "every plate is seen by at least one camera"


def test_plate_block_timing_and_noise(case: AifiCase, store: Store) -> None:
    pb = case.plates
    assert pb.plate_ids == store.plate_ids
    dt = np.diff(pb.t)
    assert np.allclose(dt, 1 / 60, atol=1e-9)
    assert 16.5 < pb.t[-1] - pb.t[0] < 18.0
    live = ~np.isnan(pb.grams).all(axis=0)
    # BENCHMARK-1 records gondolas 1-4 (G3 without its 6th shelf); gondola 5 is NaN.
    assert live.sum() == 72 + 54 + 60 + 54
    assert np.isnan(pb.grams[:, [store.plate_index[f"G5-S1-P{i}"] for i in range(1, 10)]]).all()
    rest = pb.grams[(pb.t > 3.0) & (pb.t < 6.0)][:, live]
    sd = np.nanstd(rest, axis=0)
    assert 0.3 < np.median(sd) < 3.0
    assert np.percentile(sd, 90) < 10.0


def test_the_pick_and_the_shopper(case: AifiCase, store: Store) -> None:
    assert list(case.target_ids.values()) == [SHOPPER]
    track = case.tracks[0]
    assert len(track.t) > 200 and np.all(np.diff(track.t) >= 0)
    # One 622 g bottle leaves G1-S5-P11 around t = 14.7 s.
    g = case.plates.grams[:, store.plate_index["G1-S5-P11"]]
    before = np.nanmedian(g[(case.plates.t > 10) & (case.plates.t < 14)])
    after = np.nanmedian(g[(case.plates.t > 15.5) & (case.plates.t < 18)])
    assert after - before == pytest.approx(-store.products[BOUGHT].weight_g, abs=20)
    # Wrists stay within the store floor, and one reaches the bottle's plate at that time.
    wrists = track.joints[:, [L_WRIST, R_WRIST], :2].reshape(-1, 2)
    wrists = wrists[~np.isnan(wrists).any(axis=1)]
    (x0, y0), (x1, y1) = store.floor.outline[0], store.floor.outline[2]
    assert ((wrists[:, 0] >= x0) & (wrists[:, 0] <= x1)).all()
    assert ((wrists[:, 1] >= y0) & (wrists[:, 1] <= y1)).all()
    box = store.plates["G1-S5-P11"].box
    _, joints = track.window(13.5, 15.5)
    near = [
        np.hypot(*(np.clip(w[:2], box.min[:2], box.max[:2]) - w[:2]))
        for w in joints[:, R_WRIST]
        if not np.isnan(w).any()
    ]
    assert min(near) < 0.15


def test_read_targets_default_clock(aifi_dir: Path) -> None:
    t = read_targets(aifi_dir / "BENCHMARK-1" / "full_targets.json")
    assert t.tracks[0].t[0] == 0.0
    assert t.tracks[0].joints.shape[1:] == (17, 3)
    head_z = np.nanmedian(t.tracks[0].joints[:, 0, 2])
    assert 1.5 < head_z < 1.9  # metres (the file is in inches)


def test_products_deduplicated(aifi_dir: Path) -> None:
    prods = read_products(aifi_dir / "BENCHMARK-1" / "products.json")
    ids = [p.upc for p in prods]
    assert len(ids) == len(set(ids)) == 361
    bottle = next(p for p in prods if p.upc == BOUGHT)
    assert bottle.weight_g == pytest.approx(621.67, abs=0.01)


# ---- corrupt input -------------------------------------------------------------------------------


def _lines(path: Path, n: int) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return [next(f) for _ in range(n)]


def test_truncated_json_line_names_file_and_line(aifi_dir: Path, tmp_path: Path) -> None:
    lines = _lines(aifi_dir / "BENCHMARK-1" / "plate_data.json", 3)
    bad = tmp_path / "plate_data.json"
    bad.write_text(lines[0] + lines[1][: len(lines[1]) // 2] + "\n" + lines[2], encoding="utf-8")
    with pytest.raises(AifiDataError, match=rf"{re.escape(str(bad))}:2: not valid JSON"):
        read_plate_data(bad, ["G1-S1-P1"])


def test_bad_base64_names_file(aifi_dir: Path, tmp_path: Path) -> None:
    doc = json.loads(_lines(aifi_dir / "BENCHMARK-1" / "plate_data.json", 1)[0])
    doc["document"]["plate_data"]["values"]["data"] = "%%%not-base64%%%"
    bad = tmp_path / "plate_data.json"
    where = re.escape(f"{bad}:1:")
    bad.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    with pytest.raises(AifiDataError, match=rf"{where} plate values are not valid base64"):
        read_plate_data(bad, ["G1-S1-P1"])
    short = base64.b64encode(b"\0" * 12).decode()
    doc["document"]["plate_data"]["values"]["data"] = short
    bad.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    with pytest.raises(AifiDataError, match=rf"{where} plate values hold 12 bytes"):
        read_plate_data(bad, ["G1-S1-P1"])


def test_missing_files_are_named(aifi_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(AifiDataError, match=r"full_targets\.json: file not found"):
        read_targets(tmp_path / "full_targets.json")
    meta = tmp_path / "meta"
    shutil.copytree(aifi_dir / "store_meta", meta)
    (meta / "Shelves.json").unlink()
    with pytest.raises(AifiDataError, match=r"Shelves\.json: file not found"):
        read_geometry(meta)
    (meta / "calibration.json").write_text('{"cameras": {"1": {"K": 1}}}', encoding="utf-8")
    with pytest.raises(AifiDataError, match=r"calibration\.json: cameras\.1"):
        read_calibration(meta / "calibration.json")


def _case_with(aifi_dir: Path, tmp_path: Path, fname: str, line: int, edit: object) -> Path:
    """A copy of BENCHMARK-1 with line ``line`` (1-based) of ``fname`` replaced by ``edit`` of
    its document (or by ``edit`` itself when it is a string)."""
    case = tmp_path / "case"
    shutil.copytree(aifi_dir / "BENCHMARK-1", case)
    lines = (case / fname).read_text(encoding="utf-8").splitlines()
    lines[line - 1] = edit if isinstance(edit, str) else json.dumps(
        edit(json.loads(lines[line - 1])))  # type: ignore[operator]
    (case / fname).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return case


def _runs(case: Path, tmp_path: Path) -> str:
    """`walkout aifi run` on ``case``: a clean error (exit 2, no traceback), its message."""
    from typer.testing import CliRunner

    from walkout.cli import app

    res = CliRunner().invoke(app, ["aifi", "run", str(case), "--meta",
                                   str(AIFI / "store_meta"), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert not (tmp_path / "r.json").exists()
    return " ".join(res.output.split())


def _set(path: str, value: object):  # type: ignore[no-untyped-def]
    def edit(doc: dict) -> dict:  # type: ignore[type-arg]
        *keys, last = path.split(".")
        node = doc
        for k in keys:
            node = node[k]
        node[last] = value
        return doc
    return edit


@pytest.mark.parametrize(("fname", "edit", "said"), [
    ("products.json", _set("product_id", "048014009909"),
     "field 'product_id' is str '048014009909', expected an object"),
    ("products.json", _set("metadata", [1]), "field 'metadata' is list [1], expected an object"),
    ("products.json", _set("metadata.price", float("nan")), "price nan is not a finite number"),
    ("products.json", _set("metadata.weight", float("inf")),
     "field 'weight' is inf, not a finite number"),
    ("full_targets.json", _set("document.targets.targets", [1]),
     "targets[0] is int 1, expected an object"),
    ("full_targets.json", _set("document.targets", "x"),
     "field 'document.targets' is str 'x', expected an object"),
    ("plate_data.json", _set("document.plate_data.freq_samp", float("nan")),
     "field 'freq_samp' is nan, not a finite number"),
])
def test_wrong_json_types_and_non_finite_numbers_are_named(
        aifi_dir: Path, tmp_path: Path, fname: str, edit: object, said: str) -> None:
    """`.get` on a string or a list was an AttributeError traceback; NaN (which Python's JSON
    reader takes) passed every range check."""
    out = _runs(_case_with(aifi_dir, tmp_path, fname, 1, edit), tmp_path)
    assert f"{fname}:1: " in out and said in out, out


@pytest.mark.parametrize("date", ["2120-04-22T05:06:36.859Z", "2020-04-23T05:06:36.859Z"])
def test_a_plate_document_dated_far_away_is_named(aifi_dir: Path, tmp_path: Path,
                                                  date: str) -> None:
    """One document dated a century (or a day) off sized one grid from the first to the last
    document: 211 TiB (6 GB) -> MemoryError."""
    case = _case_with(aifi_dir, tmp_path, "plate_data.json", 6,
                      _set("document.header.t_origin", date))
    out = _runs(case, tmp_path)
    assert "plate_data.json:6: document.header.t_origin is +" in out
    assert "a case at most 3600 s (a wrong date?)" in out
