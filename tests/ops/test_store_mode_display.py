"""The store mode the dashboard shows (``GET /v1/store-mode``): closed *since when*, *by whom*
and *the note* the operator gave. A new engine stream (a restart, a rollover, the next
recording) carries the closed mode over (``store_mode.carry_over``), and the copy it adds is
the latest row: it showed the new stream's start time and a generated note instead."""

from __future__ import annotations

from walkout.engine import Engine
from walkout.service import store_mode
from walkout.service.runner import LiveRunner
from walkout.service.testing import Svc
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store
from walkout.store.model import Store


def _close(svc: Svc) -> dict[str, object]:
    r = svc.client.post("/v1/store-mode", json={"closed": True, "note": "night restock"},
                        headers=svc.gate)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _shown(svc: Svc) -> tuple[object, ...]:
    now = svc.client.get("/v1/store-mode", headers=svc.gate).json()
    return now["closed"], now["set_at"], now["note"], now["set_by"], now["set_by_name"]


def test_a_carried_over_closed_mode_keeps_the_operators_time_and_note(
        svc: Svc, store: Store) -> None:
    before = _close(svc)
    store_mode.apply_modes(svc.deps, Engine(store), "net/s1", 0, 0.0)  # stream s1 applies it
    svc.clock.advance(2 * 3600)  # two hours later the engine begins its next stream
    assert store_mode.carry_over(svc.deps, "net/s2", 7200.0)
    assert _shown(svc) == (True, before["set_at"], "night restock", before["set_by"],
                           before["set_by_name"])


def test_the_next_streams_runner_shows_the_operators_closing(svc: Svc) -> None:
    """Through the service's runner: one stream applies the closing, the next carries it."""
    before = _close(svc)
    sensors = Sensors.from_session(simulate(load_store("small"), 2, 1))
    LiveRunner(sensors, "sim:yesterday", stop_after_chunk=1).run(svc.deps)
    svc.clock.advance(8 * 3600)
    LiveRunner(sensors, "sim:today", stop_after_chunk=1).run(svc.deps)
    now = svc.client.get("/v1/store-mode", headers=svc.gate).json()
    assert now["applied_t"] is not None  # today's stream applied its copy
    assert _shown(svc) == (True, before["set_at"], "night restock", before["set_by"],
                           before["set_by_name"])
