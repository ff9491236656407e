"""Store files: the shipped stores load, and bad files get errors naming file, line and field."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
import yaml

from walkout.store import StoreFileError, builtin_stores, load_store, parse_store


def test_small_store_meets_the_brief() -> None:
    s = load_store("small")
    floor = s.floor.outline
    xs, ys = [p[0] for p in floor], [p[1] for p in floor]
    assert 80 <= (max(xs) - min(xs)) * (max(ys) - min(ys)) <= 130
    assert len(s.gondolas) >= 4
    assert len(s.plates) >= 150
    assert len(s.cameras) >= 10
    assert {g.kind for g in s.gates} == {"entry", "exit"}
    # every plate is stocked by the planogram, some products span two plates
    assert all(s.plate_products[p] for p in s.plate_ids)
    assert any(len(e.plates) == 2 for e in s.planogram)
    assert any(len(s.plate_products[p]) == 2 for p in s.plate_ids)


def test_small_catalogue_has_real_near_identical_weights() -> None:
    s = load_store("small")
    w = sorted(p.weight_g for p in s.catalogue)
    close = sum(1 for a, b in pairwise(w) if b - a < 2.0)
    assert close >= 5, "the point of the real catalogue is products of nearly equal weight"


def test_builtin_list() -> None:
    assert "small" in builtin_stores()


def _small_dict() -> dict:
    return yaml.safe_load(Path(load_store.__globals__["resolve_store_path"]("small")).read_text())


def _error(data: dict, tmp_path: Path) -> str:
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(StoreFileError) as e:
        load_store(f)
    return str(e.value)


def test_unknown_field_is_named_with_file_and_line(tmp_path: Path) -> None:
    d = _small_dict()
    d["gondolas"][1]["shelves"][0]["plates"][2]["colour"] = "red"
    msg = _error(d, tmp_path)
    assert "bad.yaml:" in msg
    assert "gondolas.1.shelves.0.plates.2.colour" in msg
    assert "Extra inputs are not permitted" in msg


def test_negative_price_is_refused(tmp_path: Path) -> None:
    d = _small_dict()
    d["catalogue"][3]["price"] = "-1.00"
    msg = _error(d, tmp_path)
    assert "catalogue.3.price" in msg and "greater than or equal to 0" in msg


def test_inverted_box_is_refused(tmp_path: Path) -> None:
    d = _small_dict()
    d["gondolas"][0]["box"]["max"][2] = -1.0
    assert "gondolas.0.box" in _error(d, tmp_path)


def test_planogram_must_reference_known_plates_and_products(tmp_path: Path) -> None:
    d = _small_dict()
    d["planogram"][0]["plates"] = ["NOPE-S1-P1"]
    assert "plate 'NOPE-S1-P1' does not exist" in _error(d, tmp_path)
    d = _small_dict()
    d["planogram"][0]["product"] = "000"
    assert "product '000' is not in the catalogue" in _error(d, tmp_path)


def test_duplicate_ids_and_missing_gates(tmp_path: Path) -> None:
    d = _small_dict()
    d["cameras"][1]["id"] = d["cameras"][0]["id"]
    assert "duplicate camera id" in _error(d, tmp_path)
    d = _small_dict()
    d["gates"] = [{**g, "id": f"in{i}"} for i, g in enumerate(d["gates"]) if g["kind"] == "entry"]
    d["gates"] *= 2
    d["gates"][1] = {**d["gates"][1], "id": "in-2"}
    assert "at least one entry gate and one exit gate" in _error(d, tmp_path)


def test_bad_currency_and_distortion(tmp_path: Path) -> None:
    d = _small_dict()
    d["currency"] = "euro"
    assert "currency" in _error(d, tmp_path)
    d = _small_dict()
    d["cameras"][0]["dist"] = [0.1, 0.2, 0.3]
    assert "cameras.0.dist" in _error(d, tmp_path)


def test_not_yaml_and_not_a_mapping() -> None:
    with pytest.raises(StoreFileError, match=r"x\.yaml: not valid YAML"):
        parse_store("a: [1, 2", "x.yaml")
    with pytest.raises(StoreFileError, match="must be a mapping"):
        parse_store("- 1\n- 2\n", "x.yaml")


def test_unknown_store_name_lists_the_shipped_ones() -> None:
    with pytest.raises(StoreFileError, match=r"no store named 'nowhere'.*small"):
        load_store("nowhere")
