"""Operators acknowledge engine alerts (``POST /v1/ops/alerts/{id}/ack``) through the real
service on SQLite, with alerts written into the event log as the runner writes them: the
listing (``GET /v1/ops/alerts``) says who acknowledged which, an acknowledgement is made once,
and it goes with its alert when the retention purge deletes the row."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from walkout.service.models import AlertAck, EngineEvent
from walkout.service.retention import purge
from walkout.service.testing import Svc


def _alert(svc: Svc, seq: int, t: float, kind: str, message: str,
           source: str = "sim/alerts") -> int:
    """An alert as ``live._alert_rows`` logs it; returns its event id."""
    with svc.deps.sessions.begin() as s:
        row = EngineEvent(source=source, seq=seq, kind=kind, t=t, ref="P1",
                          recorded_at=svc.clock.now(), payload=json.dumps(
                              {"t": t, "kind": kind, "message": message, "subject": "P1"}))
        s.add(row)
        s.flush()
        return row.id


def _alerts(svc: Svc, query: str = "") -> list[dict[str, Any]]:
    r = svc.client.get("/v1/ops/alerts" + query, headers=svc.gate)
    assert r.status_code == 200, r.text
    return list(r.json())


def test_an_operator_acknowledges_an_alert_once(svc: Svc) -> None:
    a = _alert(svc, 0, 10.0, "unbound_person", "track 3 is not bound to a visit")
    b = _alert(svc, 1, 20.0, "plate_dead", "plate G1-S1-P1 sends nothing")
    other = _alert(svc, 0, 30.0, "x", "not an alert", source="sim/decisions")
    listed = _alerts(svc)
    assert [x["id"] for x in listed] == [b, a]  # newest first, alerts only
    assert all(x["acked"] is None for x in listed)
    assert listed[0]["data"]["message"] == "plate G1-S1-P1 sends nothing"

    op = svc.staff("operator")
    r = svc.client.post(f"/v1/ops/alerts/{a}/ack", json={"note": "walked them out"},
                        headers=op)
    assert r.status_code == 200, r.text
    first = r.json()["acked"]
    assert first["by"] and first["by_name"] == "operator" and first["note"] == "walked them out"
    assert first["at"]
    # idempotent: a second acknowledgement, by anyone, answers the first one
    svc.clock.advance(60)
    for h, body in ((op, None), (svc.gate, {"note": "me too"})):
        r = svc.client.post(f"/v1/ops/alerts/{a}/ack", json=body, headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["acked"] == first
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AlertAck)) == 1
    listed = _alerts(svc)
    assert [(x["id"], x["acked"]) for x in listed] == [(b, None), (a, first)]
    assert [x["id"] for x in _alerts(svc, "?unacked=true")] == [b]

    # unknown ids, and event-log rows that are not alerts
    for bad in (999, other):
        r = svc.client.post(f"/v1/ops/alerts/{bad}/ack", headers=op)
        assert r.status_code == 404, r.text
    # operators only
    shopper = svc.shopper()
    assert svc.client.post(f"/v1/ops/alerts/{b}/ack", headers=shopper).status_code == 403
    assert svc.client.get("/v1/ops/alerts", headers=shopper).status_code == 403
    # a note is text of at most 1000 characters, nothing else
    r = svc.client.post(f"/v1/ops/alerts/{b}/ack", json={"note": "x" * 1001}, headers=op)
    assert r.status_code == 422
    assert _alerts(svc, "?unacked=true")[0]["acked"] is None


def test_the_retention_purge_takes_an_alerts_acknowledgement_with_it(svc: Svc) -> None:
    a = _alert(svc, 0, 10.0, "hand_over", "a hand over the counter")
    assert svc.client.post(f"/v1/ops/alerts/{a}/ack", headers=svc.gate).status_code == 200
    with svc.deps.sessions.begin() as s:
        assert purge(s, svc.clock.now() + timedelta(days=31))["engine_events"] == 1
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(AlertAck)) == 0
    assert svc.client.post(f"/v1/ops/alerts/{a}/ack", headers=svc.gate).status_code == 404
