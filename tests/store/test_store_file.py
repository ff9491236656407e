"""Store files: the shipped stores load, and bad files get errors naming file, line and field."""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from walkout.store import StoreFileError, builtin_stores, load_store, parse_store
from walkout.store.loader import dump_store


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


@pytest.mark.parametrize(("where", "value"), [
    (("cameras", 0, "fps"), float("inf")), (("cameras", 0, "K", 0, 0), float("nan")),
    (("gondolas", 0, "box", "min", 0), float("nan")), (("floor", "outline", 0, 0), float("nan"))])
def test_nan_and_infinity_are_refused_with_their_field(
        tmp_path: Path, where: tuple, value: float) -> None:  # type: ignore[type-arg]
    """Non-finite numbers used to pass and fail later deep in the simulator or tracker."""
    d = _small_dict()
    node = d
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    msg = _error(d, tmp_path)
    assert ".".join(map(str, where)) in msg and "finite number" in msg


def test_camera_resolution_must_be_positive(tmp_path: Path) -> None:
    d = _small_dict()
    d["cameras"][0]["resolution"] = [0, 720]
    assert "cameras.0.resolution.0" in _error(d, tmp_path)


@pytest.mark.parametrize(("K", "says"), [
    ([[0, 0, 0], [0, 0, 0], [0, 0, 0]], "focal lengths fx, fy must be positive"),
    ([[900, 0, 640], [0, -900, 360], [0, 0, 1]], "focal lengths fx, fy must be positive"),
    ([[900, 0, 0], [0, 900, 0], [640, 360, 1]], "last row [640.0, 360.0, 1.0]"),
    ([[900, 0, 640], [0, 900, 360], [0, 0, 2]], "last row [0.0, 0.0, 2.0]")])
def test_a_camera_matrix_that_projects_nothing_is_refused(
        tmp_path: Path, K: list[list[float]], says: str) -> None:
    """All zeros, a negative focal length, a transposed matrix: the camera would see nobody
    (the demo ran, that camera silently empty)."""
    d = _small_dict()
    d["cameras"][0]["K"] = K
    msg = _error(d, tmp_path)
    assert "cameras.0.K" in msg and says in msg


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


# ---- tax ----------------------------------------------------------------------------------


def _line_of(tmp_path: Path, needle: str) -> int:
    """1-based line of the first line of the written bad.yaml that contains ``needle``."""
    lines = (tmp_path / "bad.yaml").read_text().splitlines()
    return next(i for i, ln in enumerate(lines, 1) if needle in ln)


def test_small_store_itemises_tax_food_reduced_the_rest_standard() -> None:
    s = load_store("small")
    assert s.tax_rates == {"standard": Decimal("0.20"), "reduced": Decimal("0.055")}
    assert set(s.product_tax) == set(s.products)
    classes = {p.name: s.product_tax[p.id][0] for p in s.catalogue}
    assert classes["KASHI TRAIL MIX BAR"] == classes["Red Bull Red"] == "reduced"
    assert classes["Dawn Simply Clean"] == classes["Heavy Duty Aluminium Foil"] == "standard"
    # a store without tax rates itemises none, and its products name no class
    assert load_store("aifi-nanostore").product_tax == {}


def test_unknown_tax_class_names_the_product_and_its_line(tmp_path: Path) -> None:
    d = _small_dict()
    d["catalogue"][5]["tax"] = "luxury"
    msg = _error(d, tmp_path)
    pid = d["catalogue"][5]["id"]
    assert f"bad.yaml:{_line_of(tmp_path, 'tax: luxury')}: field catalogue.5.tax" in msg
    assert f"product {pid!r}" in msg and "unknown tax class 'luxury'" in msg
    assert "reduced, standard" in msg  # what it could have been


@pytest.mark.parametrize("rate", ["20", "1", "-0.1", "0.1234567"])
def test_tax_rate_must_be_a_fraction_in_0_1(tmp_path: Path, rate: str) -> None:
    d = _small_dict()
    d["tax_rates"]["standard"] = rate
    msg = _error(d, tmp_path)
    assert f"bad.yaml:{_line_of(tmp_path, 'standard: ')}: field tax_rates.standard" in msg
    assert ("fraction in [0, 1)" in msg) or ("at most 6 decimal places" in msg)


def test_tax_classes_without_tax_rates_are_refused(tmp_path: Path) -> None:
    d = _small_dict()
    del d["tax_rates"]
    msg = _error(d, tmp_path)
    assert "field default_tax: default_tax needs tax_rates" in msg
    i = next(i for i, p in enumerate(d["catalogue"]) if p.get("tax"))
    pid = d["catalogue"][i]["id"]
    assert (f"field catalogue.{i}.tax: product {pid!r} ({d['catalogue'][i]['name']}) has tax "
            "class 'standard' but the store has no tax_rates") in msg


def test_products_without_a_class_need_a_default(tmp_path: Path) -> None:
    d = _small_dict()
    del d["default_tax"]
    msg = _error(d, tmp_path)
    untaxed = [i for i, p in enumerate(d["catalogue"]) if "tax" not in p]
    first = d["catalogue"][untaxed[0]]
    line = _line_of(tmp_path, f"name: {first['name']}") - 1  # the item starts at its id
    assert (f"bad.yaml:{line}: field catalogue.{untaxed[0]}: product {first['id']!r} "
            f"({first['name']}) has no tax class and the store sets no default_tax") in msg
    # a catalogue of thousands is not listed whole
    assert msg.count("has no tax class") == 20
    assert f"and {len(untaxed) - 20} more like these" in msg
    d = _small_dict()
    d["default_tax"] = "zero"
    assert "default_tax 'zero' is not a class of tax_rates (reduced, standard)" in _error(
        d, tmp_path)


def test_a_store_without_tax_loads_as_before(tmp_path: Path) -> None:
    d = _small_dict()
    del d["tax_rates"], d["default_tax"]
    for p in d["catalogue"]:
        p.pop("tax", None)
    f = tmp_path / "plain.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    s = load_store(f)
    assert s.tax_rates is None and s.product_tax == {}
    dump_store(s, tmp_path / "again.yaml")  # written without the unset tax fields
    again = (tmp_path / "again.yaml").read_text()
    assert "tax_rates" not in again and "default_tax" not in again and "  tax:" not in again


def test_a_binary_store_file_is_named_not_a_traceback(tmp_path: Path) -> None:
    f = tmp_path / "bin.yaml"
    f.write_bytes(b"name: x\n\xff\xfe\x00")
    with pytest.raises(StoreFileError, match=r"bin\.yaml: not a text \(UTF-8\) store file"):
        load_store(f)


@pytest.mark.parametrize("outline", [[[0, 0], [5, 0], [10, 0]], [[0, 0], [0.1, 0], [0, 0.1]]])
def test_a_floor_without_area_is_refused(tmp_path: Path, outline: list) -> None:  # type: ignore[type-arg]
    """A collinear or tiny outline used to pass and fail deep in the simulator."""
    d = _small_dict()
    d["floor"]["outline"] = outline
    assert "floor.outline" in (msg := _error(d, tmp_path)) and "at least 1 m²" in msg


def _on_first_gondola(d: dict) -> dict:  # type: ignore[type-arg]
    (x0, y0, _), (x1, y1, _) = d["gondolas"][0]["box"]["min"], d["gondolas"][0]["box"]["max"]
    return {"min": [x0, y0, 0.0], "max": [(x0 + x1) / 2, (y0 + y1) / 2, 2.3]}


@pytest.mark.parametrize(("box", "said"), [
    (lambda d: {"min": [-1.0, -1.0, 0.0], "max": [11.0, 11.0, 2.5]},
     "entry gate 'entry' and exit gate 'exit' and gondola"),
    (lambda d: {"min": [1.0, 0.2, 0.0], "max": [2.0, 0.8, 2.3]}, "of entry gate 'entry':"),
    (_on_first_gondola, "of gondola ")], ids=["whole-floor", "entry-gate", "gondola"])
def test_a_blind_area_over_a_gate_or_a_gondola_is_refused(
        tmp_path: Path, box: Any, said: str) -> None:
    """A blind area covering the whole floor used to load: nobody could ever be seen."""
    d = _small_dict()
    d["blind_areas"].append({"id": "closet", "box": box(d)})
    msg = _error(d, tmp_path)
    assert "bad.yaml:" in msg and "blind_areas.1.box" in msg and said in msg, msg
    assert "may not overlap a gate or a gondola" in msg


def test_the_small_stores_fitting_room_touches_nothing_it_must_not() -> None:
    """The rule above leaves the shipped fitting room (clear of gates and gondolas) alone."""
    assert [b.id for b in load_store("small").blind_areas] == ["fitting-room"]


def test_a_price_finer_than_the_currency_is_refused_with_its_line(tmp_path: Path) -> None:
    """'1.235' EUR was taken: the engine's receipt totals 2.470 for two, the service charges
    2 x 1.24 = 2.48. A price is a whole number of the currency's smallest unit."""
    d = _small_dict()
    d["catalogue"][4]["price"] = "1.235"
    msg = _error(d, tmp_path)
    pid = d["catalogue"][4]["id"]
    line = _line_of(tmp_path, "price: '1.235'")
    assert f"bad.yaml:{line}: field catalogue.4.price" in msg
    assert f"product {pid!r}" in msg and "price 1.235 is finer than the smallest EUR unit " \
        "(0.01)" in msg


def test_the_smallest_unit_is_the_currencys(tmp_path: Path) -> None:
    d = _small_dict()
    d["currency"] = "JPY"
    for p in d["catalogue"]:
        p["price"] = str(round(float(p["price"]) * 100))
    f = tmp_path / "yen.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    assert load_store(f).currency == "JPY"
    d["catalogue"][0]["price"] = "120.50"
    assert "price 120.50 is finer than the smallest JPY unit (1)" in _error(d, tmp_path)


def test_a_planogram_entry_given_twice_is_refused_not_summed(tmp_path: Path) -> None:
    """Pasted twice, an entry passed and doubled that facing's opening stock in the engine's
    inventory. The same product on other plates (a second facing) is still fine."""
    d = _small_dict()
    d["planogram"].append(dict(d["planogram"][0], plates=list(reversed(d["planogram"][0]
                                                                        ["plates"]))))
    n = len(d["planogram"]) - 1
    msg = _error(d, tmp_path)
    assert f"field planogram.{n}: planogram[{n}]: product {d['planogram'][0]['product']!r}" in msg
    assert "repeats planogram[0]" in msg and "double its opening stock" in msg
    d["planogram"][n]["plates"] = d["planogram"][1]["plates"]  # a second facing elsewhere
    f = tmp_path / "two-facings.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    assert len(load_store(f).planogram) == n + 1


def test_a_plate_listed_twice_in_one_entry_is_refused(tmp_path: Path) -> None:
    d = _small_dict()
    plate = d["planogram"][7]["plates"][0]
    d["planogram"][7]["plates"] = [plate, plate]
    msg = _error(d, tmp_path)
    assert f"field planogram.7.plates: planogram[7]: plate {plate!r} is listed twice" in msg
