"""Camera states on the store-health page: alive, dead after 3 s without frames, and idle
(not dead) once a recording or simulation has no more frames."""

from __future__ import annotations

from walkout.engine import Engine
from walkout.service.live import CAMERA_DEAD_S, health
from walkout.store import load_store


def test_camera_states() -> None:
    eng = Engine(load_store("small"))
    cams = [c.id for c in eng.store.cameras]
    last = {c: 100.0 for c in cams}
    last[cams[1]] = 100.0 - CAMERA_DEAD_S - 1.0  # quiet for longer than allowed
    del last[cams[2]]  # never sent a frame
    rate = {c.id: c.fps for c in eng.store.cameras}
    live = health(eng, last, rate, 100.0)["cameras"]
    assert live[cams[0]] == "alive"
    assert live[cams[1]] == "dead" and live[cams[2]] == "dead"
    rate[cams[0]] = 0.2 * eng.store.cameras[0].fps
    assert health(eng, last, rate, 100.0)["cameras"][cams[0]] == "noisy"
    ended = health(eng, last, rate, 200.0, ended=True)["cameras"]
    assert set(ended.values()) == {"idle"}


def test_health_carries_the_sources_input_counters() -> None:
    eng = Engine(load_store("small"))
    counters = {"received": 10, "accepted": 7, "duplicates": 2, "late": 1, "missing": 0,
                "rejected": {"bad_payload": 1}, "reconnects": 0}
    assert health(eng, {}, {}, 1.0, inputs=counters)["inputs"] == counters
    assert health(eng, {}, {}, 1.0)["inputs"] == {}
