"""An erasure between a crash and the restart must not move anybody else's engine session: the
engine numbers sessions in the order people entered, and verdicts, the live map and review
cases name those numbers. The erased shopper's scan is replayed without her credential, but
still as the entry it was."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from walkout.service.models import Charge, EngineEvent, Visit
from walkout.service.runner import LiveRunner
from walkout.service.testing import make_svc
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store


def _sessions(svc, after_t: float = -1.0) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """credential → engine session, as the live map rows say."""
    out: dict[str, str] = {}
    with svc.deps.sessions() as s:
        for e in s.scalars(select(EngineEvent).where(EngineEvent.kind == "positions",
                                                     EngineEvent.t > after_t)):
            for p in json.loads(e.payload)["people"]:
                if p.get("credential") and p.get("session"):
                    out[p["credential"]] = p["session"]
    return out


def test_an_erasure_before_a_restart_renumbers_nobody(engine) -> None:  # type: ignore[no-untyped-def]
    sensors = Sensors.from_session(simulate(load_store("small"), 6, 1))
    first = sensors.gates[0].credential
    svc = make_svc(engine)
    with svc.client:
        ann = svc.shopper(card="tok_ann", email="ann@example.org")
        r = svc.client.post("/v1/gates/entry/scan", headers=svc.gate,
                            json={"code": svc.code(ann), "credential": first})
        assert r.status_code == 201, r.text
        LiveRunner(sensors, "sim", stop_after_chunk=16).run(svc.deps)  # killed at t = 85 s
        before = _sessions(svc)
        with svc.deps.sessions() as s:
            state = s.scalar(select(Visit.state).where(Visit.credential == first))
        assert state in ("charged", "released"), state  # she has left: erasure is allowed
        assert len(before) == 6
        r = svc.client.delete("/v1/me", headers=ann)
        assert r.status_code == 200, r.text
    svc2 = make_svc(engine)
    with svc2.client:
        LiveRunner(sensors, "sim").run(svc2.deps)  # the restart replays chunks 0-16
        after = _sessions(svc2, after_t=85.0)
    assert first not in after
    assert after and all(after[c] == before[c] for c in after), (before, after)
    with svc2.deps.sessions() as s:
        states = dict(s.execute(select(Visit.credential, Visit.state)).all())
        captures = s.execute(select(Charge.visit_id, func.count()).where(
            Charge.kind == "capture").group_by(Charge.visit_id)).all()
    assert len(states) == 6 and all(v in ("charged", "released") for v in states.values())
    assert sum(c.startswith("erased:") for c in states) == 1  # hers, nobody else's
    assert all(n == 1 for _, n in captures)  # the replayed entry charged nobody again
