"""A review case nobody decides holds a live stream's rollover back only for a while
(``Engine.idle(case_wait_s)``); after it, the API answers a verdict on it with what to do."""

from __future__ import annotations

import numpy as np

from walkout.engine import Engine
from walkout.events import PlateBlock
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store


def test_an_undecided_case_holds_the_rollover_back_for_case_wait_s_only() -> None:
    store = load_store("small")
    sensors = Sensors.from_session(simulate(store, 0, 1, scenarios=["wrong-planogram-entry"]))
    eng = Engine(store)
    for block, frames, gates, now in sensors.chunks(5.0):
        eng.step(block, frames, gates, now)
    plates, rate = sensors.plates, 60.0
    while now < 200.0:  # the store stays empty, its plates still, past the review hold
        t = now + np.arange(1, int(5 * rate) + 1) / rate
        eng.step(PlateBlock(t, np.repeat(plates.grams[-1:], len(t), axis=0), plates.plate_ids),
                 [], [], now + 5.0)
        now += 5.0
    assert len(eng.open_cases()) == 1
    assert not eng.idle(now, 5.0)  # a verdict may still come: the stream waits
    assert eng.idle(now, 5.0, case_wait_s=60.0)  # opened long ago: it waits no more
