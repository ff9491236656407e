"""The analytics heatmap is "where shoppers walked and dwelt" (docs/web.md, Analytics): an
associate restocking a shelf is not a shopper dwelling there. Picks and put-backs already left
staff out (stock, not shopping); the heatmap counted their positions."""

from __future__ import annotations

import json

from sqlalchemy import select

from walkout.service.models import EngineEvent
from walkout.service.runner import LiveRunner
from walkout.service.testing import Svc, badged
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store


def _person(track: int, session: str, staff: bool, x: float, t0: float) -> dict[str, object]:
    return {"track": track, "session": session,
            "credential": "staff:" + "a" * 32 if staff else "wq1.visit",
            "staff": staff, "cart": 0, "left": False, "alert": False,
            "pts": [[t0 + 0.5 * (k + 1), x, 2.2] for k in range(10)]}


def _cells(svc: Svc) -> tuple[int, int]:
    grid = svc.client.get("/v1/ops/analytics", headers=svc.gate).json()["grid"]
    return sum(map(sum, grid["walk"])), sum(map(sum, grid["dwell"]))


def test_a_restocking_associate_is_not_in_the_shoppers_heatmap(svc: Svc) -> None:
    people = [_person(1, "s00001", False, 1.2, 0.0),   # a shopper standing at a shelf
              _person(2, "s00002", True, 3.2, 0.0)]    # an associate restocking another
    with svc.deps.sessions.begin() as s:
        s.add(EngineEvent(source="sim/live", seq=0, kind="positions", t=5.0,
                          payload=json.dumps({"t0": 0.0, "t1": 5.0, "people": people}),
                          recorded_at=svc.clock.now(), ref=None))
    # the shopper's 10 samples only (the first's speed is unknown: walk; then 9 dwell)
    assert _cells(svc) == (1, 9)


def test_the_live_engines_staff_positions_are_left_out(svc: Svc) -> None:
    """The service's runner on a simulated restock (an associate with trays, shoppers
    meanwhile; the badge a real staff account's): the heatmap holds every shopper's sample the
    engine wrote and no staff one."""
    session = simulate(load_store("small"), 0, 1, scenarios=["restock"])
    LiveRunner(badged(svc.deps, Sensors.from_session(session))[0], "sim").run(svc.deps)
    with svc.deps.sessions() as s:
        people = [p for payload in s.scalars(select(EngineEvent.payload).where(
            EngineEvent.source == "sim/live")) for p in json.loads(payload)["people"]]
    staff = sum(len(p["pts"]) for p in people if p["staff"])
    shoppers = sum(len(p["pts"]) for p in people if not p["staff"])
    assert staff > 0 and shoppers > 0  # the associate was tracked, and so were shoppers
    assert sum(_cells(svc)) == shoppers
