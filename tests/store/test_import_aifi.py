"""The aifi-nanostore import, and that the shipped store file matches a fresh import."""

from __future__ import annotations

from pathlib import Path

import pytest

from walkout.store import Store, load_store
from walkout.store.import_aifi import import_aifi_store, weight_sd_g, write_builtin
from walkout.store.loader import resolve_store_path

AIFI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "aifi-autocheckout"


@pytest.fixture(scope="module")
def aifi_dirs() -> tuple[Path, Path]:
    meta, case = AIFI / "store_meta", AIFI / "BENCHMARK-1"
    if not (meta / "Plates.json").is_file() or not (case / "products.json").is_file():
        pytest.skip(f"AiFi AutoCheckout data not found at {AIFI} (../shared/data beside the repo)")
    return meta, case


@pytest.fixture(scope="module")
def fresh(aifi_dirs: tuple[Path, Path]) -> Store:
    return import_aifi_store(*aifi_dirs)


def test_shipped_store_loads() -> None:
    store = load_store("aifi-nanostore")
    assert store.name == "aifi-nanostore"
    assert store.currency == "USD"
    assert len(store.gondolas) == 5
    assert len(store.plate_ids) == 306
    assert [c.id for c in store.cameras] == [f"cam{i}" for i in range(1, 9)]
    assert all(c.resolution == (640, 360) and c.fps == 10.0 for c in store.cameras)


def test_shipped_store_equals_fresh_import(
    fresh: Store, aifi_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    shipped = resolve_store_path("aifi-nanostore")
    out = tmp_path / "aifi-nanostore.yaml"
    write_builtin(*aifi_dirs, out)
    assert out.read_text(encoding="utf-8") == shipped.read_text(encoding="utf-8"), (
        "builtin/aifi-nanostore.yaml is stale: regenerate it with "
        "python -m walkout.store.import_aifi META_DIR CASE_DIR OUT.yaml"
    )
    assert load_store(shipped) == fresh


def test_geometry(fresh: Store) -> None:
    g = {x.id: x for x in fresh.gondolas}
    assert [len(s.plates) for s in g["G1"].shelves] == [12] * 6
    assert [len(s.plates) for s in g["G2"].shelves] == [9] * 6
    assert g["G1"].front == (0.0, -1.0)
    assert g["G5"].front == (-1.0, 0.0)
    # Plate boxes run from the surface to the shelf above; +0.3 m on the top shelf.
    p1 = fresh.plates["G1-S1-P1"].box
    assert (p1.min[2], p1.max[2]) == pytest.approx((0.3302, 0.5556))
    top = fresh.plates["G1-S6-P1"].box
    assert top.max[2] - top.min[2] == pytest.approx(0.3)
    for gon in fresh.gondolas:
        for s in gon.shelves:
            for p in s.plates:
                assert all(gon.box.min[i] <= p.box.min[i] for i in range(2))
                assert all(gon.box.max[i] >= p.box.max[i] for i in range(2))


def test_floor_and_gates(fresh: Store) -> None:
    xs = [p[0] for p in fresh.floor.outline]
    ys = [p[1] for p in fresh.floor.outline]
    assert (min(xs), min(ys), max(xs)) == pytest.approx((-1.6256, -2.794, 5.7658))
    assert max(ys) == pytest.approx(max(g.box.max[1] for g in fresh.gondolas))
    for gate in fresh.gates:
        a = gate.area
        assert min(xs) <= a.min[0] and a.max[0] <= max(xs) and min(ys) <= a.min[1]
        for gon in fresh.gondolas:  # open floor: no overlap with any gondola
            b = gon.box
            assert a.max[0] <= b.min[0] or a.min[0] >= b.max[0] or a.max[1] <= b.min[1]


def test_catalogue_and_planogram(fresh: Store) -> None:
    bottle = fresh.products["071142008582"]
    assert bottle.weight_g == pytest.approx(621.67)
    assert bottle.weight_sd_g == pytest.approx(weight_sd_g(621.67)) == pytest.approx(9.325)
    assert fresh.products["01"].weight_sd_g == 1.0  # a 5 g item: the 1 g floor
    entry = next(e for e in fresh.planogram if e.product == "071142008582")
    assert entry.plates == ["G1-S5-P11", "G1-S5-P12"]
    assert entry.stock == 10
    assert all(e.product in fresh.products for e in fresh.planogram)


def _meta_case(aifi_dirs: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    import shutil

    meta, case = tmp_path / "store_meta", tmp_path / "case"
    shutil.copytree(aifi_dirs[0], meta)
    shutil.copytree(aifi_dirs[1], case)
    return meta, case


def _import_fails(meta: Path, case: Path, tmp_path: Path) -> str:
    from typer.testing import CliRunner

    from walkout.cli import app

    res = CliRunner().invoke(app, ["store", "import-aifi", "--meta", str(meta), "--case",
                                   str(case), "--out", str(tmp_path / "s.yaml")])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert not (tmp_path / "s.yaml").exists()
    return " ".join(res.output.split())


@pytest.mark.parametrize("ltrb", [[0, 0, 0, 0], [100, 100, 100, 300]])
def test_a_tracked_area_without_floor_names_the_file_and_field(
        aifi_dirs: tuple[Path, Path], tmp_path: Path, ltrb: list[int]) -> None:
    """world_ltrb [0, 0, 0, 0] was a pydantic ValidationError traceback for Floor, naming
    neither calibration.json nor world_ltrb."""
    import json

    meta, case = _meta_case(aifi_dirs, tmp_path)
    cal = json.loads((meta / "calibration.json").read_text())
    (meta / "calibration.json").write_text(json.dumps({**cal, "world_ltrb": ltrb}))
    out = _import_fails(meta, case, tmp_path)
    assert f"{meta / 'calibration.json'}: world_ltrb leaves no floor" in out, out


def test_what_the_store_model_refuses_in_the_data_is_a_clean_error(
        aifi_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    """A price finer than a cent (the store model refuses it) in products.json: the import
    said it as a ValidationError traceback."""
    import json

    meta, case = _meta_case(aifi_dirs, tmp_path)
    docs = [json.loads(x) for x in (case / "products.json").read_text().splitlines()]
    for d in docs:  # every copy of the first product (the export repeats documents)
        if d["product_id"] == docs[0]["product_id"]:
            d["metadata"]["price"] = 1.235
    (case / "products.json").write_text("".join(json.dumps(d) + "\n" for d in docs))
    out = _import_fails(meta, case, tmp_path)
    assert "the imported store is invalid:" in out and "price 1.235 is finer" in out, out
