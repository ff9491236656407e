"""A review case left open when its live stream ended (a rollover of an empty store) has no
engine to apply a verdict: the queue says so and the API answers a verdict with what to do."""

from __future__ import annotations

import json

from walkout.service.models import EngineEvent
from walkout.service.testing import Svc


def _case(seq: int, source: str, case_id: str, svc: Svc) -> EngineEvent:
    ev = {"case_id": case_id, "reasons": ["r"], "sessions": ["s00001"], "decided": {},
          "hypotheses": [], "hands": [], "credentials": {},
          "event": {"kind": "pick", "plates": ["P"], "delta_g": -1.0, "t_start": 1.0,
                    "t_end": 1.0}}
    return EngineEvent(source=f"{source}/evidence", seq=seq, kind="case_evidence", t=1.0,
                       ref=case_id, payload=json.dumps(ev), recorded_at=svc.clock.now())


def test_a_verdict_on_a_case_of_an_ended_stream_is_refused_with_what_to_do(svc: Svc) -> None:
    old, new = "mqtt:shop:20261124T080000", "mqtt:shop:20261124T140000.4000"
    with svc.deps.sessions.begin() as s:
        s.add_all([_case(0, old, "P-1.000", svc), _case(0, new, "Q-2.000", svc),
                   EngineEvent(source=f"{old}/stream", seq=0, kind="stream_ended", t=9.0,
                               payload=json.dumps({"next": new, "open_cases": ["P-1.000"]}),
                               recorded_at=svc.clock.now())])
    queue = {c["case_id"]: c["state"]
             for c in svc.client.get("/v1/ops/reviews", headers=svc.gate).json()}
    assert queue == {"P-1.000": "expired", "Q-2.000": "open"}
    r = svc.client.post("/v1/ops/reviews/P-1.000/decision", json={"shares": {}},
                        headers=svc.gate)
    assert r.status_code == 409 and r.json()["error"] == "stream_ended"
    assert "refund" in r.json()["detail"]
    r = svc.client.post("/v1/ops/reviews/Q-2.000/decision", json={"shares": {}},
                        headers=svc.gate)
    assert r.status_code == 201, r.text


def test_two_ended_streams_with_the_same_case_id_each_leave_it_expired(svc: Svc) -> None:
    """Recorded or simulated streams served into one database repeat case ids: a case is
    expired in each stream that ended with it open, not in the last one logged only."""
    a, b = "recording:day1", "recording:day2"
    with svc.deps.sessions.begin() as s:
        s.add_all([_case(0, a, "P-1.000", svc), _case(0, b, "P-1.000", svc)])
        s.add_all([EngineEvent(source=f"{src}/stream", seq=0, kind="stream_ended", t=9.0,
                               payload=json.dumps({"next": None, "open_cases": ["P-1.000"]}),
                               recorded_at=svc.clock.now()) for src in (a, b)])
    queue = {(c["stream"], c["state"])
             for c in svc.client.get("/v1/ops/reviews", headers=svc.gate).json()}
    assert queue == {(a, "expired"), (b, "expired")}
    for src in (a, b):
        r = svc.client.post(f"/v1/ops/reviews/P-1.000/decision?stream={src}",
                            json={"shares": {}}, headers=svc.gate)
        assert r.status_code == 409 and r.json()["error"] == "stream_ended", r.text
