"""Erasure and retention reach the engine's event log: where a shopper walked is hers to see
and to have erased, and what was purged stays purged when the engine replays after a restart."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from walkout.service import retention
from walkout.service.clock import ManualClock
from walkout.service.models import EngineEvent, Visit
from walkout.service.runner import LiveRunner
from walkout.service.testing import make_svc
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store


@pytest.fixture(scope="module")
def sensors() -> Sensors:
    return Sensors.from_session(simulate(load_store("small"), 3, 1))


def _rows(svc, text: str) -> list[EngineEvent]:  # type: ignore[no-untyped-def]
    with svc.deps.sessions() as s:
        return list(s.scalars(select(EngineEvent).where(EngineEvent.payload.contains(text))))


def _count(svc, kind: str | None = None) -> int:  # type: ignore[no-untyped-def]
    q = select(func.count()).select_from(EngineEvent)
    with svc.deps.sessions() as s:
        return s.scalar(q if kind is None else q.where(EngineEvent.kind == kind)) or 0


def _people(svc) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    with svc.deps.sessions() as s:
        return [p for e in s.scalars(select(EngineEvent).where(EngineEvent.kind == "positions"))
                for p in json.loads(e.payload)["people"]]


def test_export_shows_her_movements_and_money_and_erasure_removes_the_movements(
        sensors: Sensors, engine) -> None:  # type: ignore[no-untyped-def]
    svc = make_svc(engine)
    with svc.client:
        cred = sensors.gates[0].credential  # what the gate puts in its entry event
        ann = svc.shopper(card="tok_ann", email="ann@example.org")
        r = svc.client.post("/v1/gates/entry/scan", headers=svc.gate,
                            json={"code": svc.code(ann), "credential": cred})
        assert r.status_code == 201, r.text
        LiveRunner(sensors, "sim").run(svc.deps)
        session = next(p["session"] for p in _people(svc) if p["credential"] == cred)
        decisions = _count(svc, "decision")
        [visit] = svc.client.get("/v1/me/export", headers=ann).json()["visits"]
        assert len(visit["movements"]) > 20  # [t, x, y] at 2 Hz over her visit
        assert all(len(p) == 3 for p in visit["movements"])
        kinds = [c["kind"] for c in visit["charges"]]
        assert kinds[0] == "preauth" and {"capture", "release"} & set(kinds[1:])

        r = svc.client.delete("/v1/me", headers=ann)
        assert r.status_code == 200 and r.json()["event_log_rows"] > 0
        assert _rows(svc, cred) == []  # neither the gate event nor the map names her
        assert not [p for p in _people(svc) if p["session"] == session]
        assert [p for p in _people(svc) if p["session"] != session]  # the others are kept
        assert _count(svc, "decision") == decisions  # what explains the kept receipts stays
        with svc.deps.sessions() as s:
            assert s.scalar(select(Visit.credential).where(Visit.id == visit["visit_id"])) \
                == f"erased:{visit['visit_id']}"
            visits = s.scalar(select(func.count()).select_from(Visit))

        # the service restarts: the engine replays its source from the start
        LiveRunner(sensors, "sim").run(make_svc(engine).deps)
        assert _rows(svc, cred) == []
        assert not [p for p in _people(svc) if p["session"] == session]
        with svc.deps.sessions() as s:  # her gate event does not admit a new visit
            assert s.scalar(select(func.count()).select_from(Visit)) == visits


def test_purged_event_log_rows_stay_purged_after_a_restart(sensors: Sensors,
                                                           engine) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock()
    svc = make_svc(engine, clock)
    LiveRunner(sensors, "sim").run(svc.deps)
    assert _count(svc, "positions") > 0
    clock.advance(31 * 86400)
    with svc.deps.sessions.begin() as s:
        assert retention.purge(s, clock.now(), 30)["engine_events"] > 0
    assert _count(svc) == 0
    LiveRunner(sensors, "sim").run(make_svc(engine, clock).deps)  # restart: replay
    assert _count(svc) == 0
