"""A live store's stream rolls over while the store is empty (``Engine.successor``): the next
engine keeps the shelves and nothing of the people, and what the operator sees of the store's
devices does not change at the rollover."""

from __future__ import annotations

from walkout.engine import Engine
from walkout.events import Alert
from walkout.service import live
from walkout.sim.loadcell import add_dead
from walkout.sim.session import SimConfig, simulate
from walkout.sim.shoppers import ShopperConfig
from walkout.sources.recording import Sensors
from walkout.store import load_store

STORE = load_store("small")


def test_a_dead_plate_and_a_silent_gondola_stay_dead_on_the_next_streams_health_page() -> None:
    """The health page's plate states are the fold of the engine's alerts (a fault until its
    ``plate_recovered``, a silent gondola until its ``device_back``); a successor began with
    none, so after a rollover a dead plate read alive until somebody noticed it on the shelf,
    though its detector still ignored it (nothing alerts it again)."""
    cfg = SimConfig(shoppers=ShopperConfig(mean_arrival_gap_s=80.0))
    sn = Sensors.from_session(simulate(STORE, 2, 3, config=cfg))  # empty in ~80-110 s
    dead = STORE.plate_ids[5]
    sn.plates = add_dead(sn.plates, 5, 10.0, value=0.0)  # a dead amplifier from 10 s on
    gondola = f"plates/{STORE.gondolas[-1].id}"
    silent = [p.id for sh in STORE.gondolas[-1].shelves for p in sh.plates]
    eng = Engine(STORE)
    nxt = None
    for block, frames, gates, now in sn.chunks(eng.config.chunk_s):
        (nxt or eng).step(block, frames, gates, now)
        if nxt is None and now == 40.0:  # the source's alert, between chunks
            eng.alerts.append(Alert(now, "device_silent", "sent nothing for 10.0 s", gondola))
        if nxt is None and now >= 85.0 and eng.idle(now, 5.0):
            before = live._plate_states(eng, now)
            nxt = eng.successor(now)
            after = live._plate_states(nxt, now)
    assert nxt is not None
    assert before[dead] == "dead" and all(before[p] == "dead" for p in silent)
    assert {p for p, v in after.items() if v == "dead"} == {p for p, v in before.items()
                                                            if v == "dead"}
    assert not any(a.kind in ("unbound_person", "no_exit_seen") for a in nxt.alerts)
    nxt.alerts.append(Alert(120.0, "device_back", "sending again", gondola))
    back = live._plate_states(nxt, 120.0)
    assert back[dead] == "dead" and back[silent[0]] == "alive"
