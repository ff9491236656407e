"""An entry the service refuses (declined card, party too large) opens no gate for the engine:
whoever walks in anyway is an unbound person with an alert, and the store's engine goes on."""

from __future__ import annotations

import dataclasses
import json

import pytest
from sqlalchemy import select

from walkout.engine import Engine as Pipeline
from walkout.service.models import EngineEvent, Visit
from walkout.service.runner import LiveRunner
from walkout.service.testing import make_svc
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store


@pytest.fixture(scope="module")
def sensors() -> Sensors:
    return Sensors.from_session(simulate(load_store("small"), 3, 1))


def _alerts(svc, kind: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    with svc.deps.sessions() as s:
        return [json.loads(e.payload) for e in s.scalars(
            select(EngineEvent).where(EngineEvent.kind == kind))]


def _states(svc) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with svc.deps.sessions() as s:
        return {v.credential: v.state for v in s.scalars(select(Visit))}


def test_a_declined_card_at_the_gate_binds_nobody_and_the_others_are_charged(
        sensors: Sensors, engine) -> None:  # type: ignore[no-untyped-def]
    svc = make_svc(engine)
    with svc.client:
        first = next(g.credential for g in sensors.gates if g.kind == "entry")
        ann = svc.shopper(card="tok_decline_ann", email="ann@example.org")
        r = svc.client.post("/v1/gates/entry/scan", headers=svc.gate,
                            json={"code": svc.code(ann), "credential": first})
        assert r.status_code == 402, r.text
        LiveRunner(sensors, "sim").run(svc.deps)  # used to stop at her exit (visit not open)
    states = _states(svc)
    assert states.pop(first) == "refused"
    assert len(states) == 2 and set(states.values()) <= {"charged", "released"}
    assert _alerts(svc, "unbound_person")  # she walked in anyway: staff are told


def test_a_party_too_large_is_refused_and_its_shopper_is_alerted_not_served_free(
        sensors: Sensors, engine) -> None:  # type: ignore[no-untyped-def]
    receipts = Pipeline(sensors.store).run(sensors).receipts
    victim = next(r.credential for r in receipts if r.total > 0)
    gates = [dataclasses.replace(g, party_size=2) if g.credential == victim else g
             for g in sensors.gates]
    svc = make_svc(engine, max_party_size=1)
    bigger = Sensors(sensors.store, sensors.plates, sensors.frames, gates, sensors.duration_s)
    LiveRunner(bigger, "sim").run(svc.deps)
    states = _states(svc)
    assert victim not in states and len(states) == 2
    # before, the engine bound her to the refused scan: goods charged to no visit, no alert
    assert _alerts(svc, "unbound_person")
