"""The store-health snapshot (``walkout.service.live.health``) an operator acts on: a plate
or camera is shown in the state it is in now, and an empty facing is shown as one."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from walkout.engine import Engine
from walkout.events import Alert, PlateBlock
from walkout.service.live import health
from walkout.sim.loadcell import PlateInteraction
from walkout.store.model import Store

from .conftest import _plates, _run_engine

Touch = Callable[..., PlateInteraction]
Plates = Callable[..., PlateBlock]
RunEngine = Callable[..., Engine]


def _until(block: PlateBlock, t: float) -> PlateBlock:
    keep = block.t < t
    return PlateBlock(block.t[keep], block.grams[keep], block.plate_ids)


def test_a_plate_that_comes_back_is_alive_again(plates: Plates, run_engine: RunEngine) -> None:
    block = plates([], 40.0)
    grams = block.grams.copy()
    grams[(block.t > 5.0) & (block.t < 15.0), 0] = np.nan  # P1 gives no readings for 10 s
    block = PlateBlock(block.t, grams, block.plate_ids)
    during = run_engine(_until(block, 12.0))
    assert health(during, {}, {}, 12.0)["plates"]["P1"] == "dead"
    eng = run_engine(block)
    kinds = [(a.kind, a.subject) for a in eng.alerts]
    assert kinds == [("plate_dead", "P1"), ("plate_recovered", "P1")]
    assert health(eng, {}, {}, 40.0)["plates"] == {"P1": "alive", "P2": "alive", "P3": "alive"}


def test_a_plate_absent_again_is_alerted_again(plates: Plates, run_engine: RunEngine) -> None:
    block = plates([], 60.0)
    grams = block.grams.copy()
    grams[(block.t > 5.0) & (block.t < 15.0), 1] = np.nan
    grams[(block.t > 30.0) & (block.t < 40.0), 1] = np.nan
    eng = run_engine(PlateBlock(block.t, grams, block.plate_ids))
    assert [a.kind for a in eng.alerts if a.subject == "P2"] == [
        "plate_dead",
        "plate_recovered",
        "plate_dead",
        "plate_recovered",
    ]


def test_a_frozen_plate_is_not_shown_alive(plates: Plates, run_engine: RunEngine) -> None:
    block = plates([], 30.0)
    grams = block.grams.copy()
    grams[block.t > 5.0, 2] = grams[100, 2]  # P3 repeats one value: its events are lost
    eng = run_engine(PlateBlock(block.t, grams, block.plate_ids))
    assert [a.kind for a in eng.alerts] == ["plate_stuck"]
    assert health(eng, {}, {}, 30.0)["plates"]["P3"] == "dead"


def test_spikes_make_a_plate_noisy_while_they_last(run_engine: RunEngine, plates: Plates) -> None:
    eng = run_engine(plates([], 10.0))
    eng.alerts.append(Alert(10.0, "plate_spikes", "plate P1 gives isolated spikes", "P1"))
    assert health(eng, {}, {}, 20.0)["plates"]["P1"] == "noisy"
    repeat = eng.config.shelf.alert_repeat_s  # spikes that go on are alerted this often
    assert health(eng, {}, {}, 10.0 + 3 * repeat)["plates"]["P1"] == "alive"


def test_silent_devices_as_the_network_source_names_them(
    run_engine: RunEngine, plates: Plates
) -> None:
    """``MqttSource`` names devices ``cameras/<id>`` and ``plates/<gondola>``."""
    eng = run_engine(plates([], 10.0))
    eng.alerts.append(
        Alert(20.0, "device_silent", "cameras/cam1 sent nothing for 10 s", "cameras/cam1")
    )
    eng.alerts.append(Alert(20.0, "device_silent", "plates/G1 sent nothing for 10 s", "plates/G1"))
    h = health(eng, {"cam1": 10.0}, {}, 20.0)
    assert h["cameras"] == {"cam1": "dead"}
    assert set(h["plates"].values()) == {"dead"}
    # frames again after the alert: the camera is back
    assert health(eng, {"cam1": 24.0}, {"cam1": 10.0}, 25.0)["cameras"] == {"cam1": "alive"}
    # the gondola's device sends again (the whole store was silent: no plate ever failed or
    # recovered in the shelf's eyes): its plates are alive again
    eng.alerts.append(Alert(30.0, "device_back", "plates/G1 is sending again", "plates/G1"))
    assert set(health(eng, {"cam1": 24.0}, {"cam1": 10.0}, 31.0)["plates"].values()) == {"alive"}


def test_a_sold_out_facing_is_listed_as_low(
    touch: Touch, plates: Plates, run_engine: RunEngine
) -> None:
    """P1 opens with 3 × A and 3 are taken: the most urgent restock must be on the list."""
    eng = run_engine(plates([touch("P1", 15.0 + 10 * k, -300.0) for k in range(3)], 60.0))
    assert eng.shelf.inventory.count(["P1"], "A") == 0
    inv = {(tuple(i["plates"]), i["product"]): i for i in health(eng, {}, {}, 60.0)["inventory"]}
    assert inv[("P1",), "A"]["count"] == 0 and inv[("P1",), "A"]["low"]
    assert not inv[("P2",), "B"]["low"]


def test_a_facing_is_low_at_its_own_reorder_point(store: Store) -> None:
    """A fast seller on a deep shelf wants warning earlier than 2 left: the planogram entry's
    ``reorder_at``; entries without one keep the default."""
    doc = store.model_dump()
    doc["planogram"] = [{**e, "reorder_at": 8} if e["product"] == "B" else e
                        for e in doc["planogram"]]
    deep = Store.model_validate(doc)
    eng = _run_engine(deep, _plates(deep, [], 10.0))
    inv = {i["product"]: i for i in health(eng, {}, {}, 10.0)["inventory"]}
    assert (inv["B"]["count"], inv["B"]["reorder_at"], inv["B"]["low"]) == (8, 8, True)
    assert (inv["C"]["count"], inv["C"]["reorder_at"], inv["C"]["low"]) == (6, 2, False)
