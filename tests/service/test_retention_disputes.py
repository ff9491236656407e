"""Retention keeps what a money claim still being decided rests on: the event-log rows (and
the blurred clips) of the shelf events a disputed receipt line names stay while the dispute
is undecided, or while the bank's chargeback of the visit is, and go at the first purge after
it is decided. Everything else goes on time. Real service, real ledger, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from walkout.service import retention
from walkout.service.models import Chargeback, EngineEvent, ReceiptLine, Visit
from walkout.service.testing import ADMIN_TOKEN, Svc, make_svc

BAR, WATER = "018627032007", "073360771026"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _evidence(svc: Svc, receipt_id: str, age_days: float, clips: Path | None = None) -> None:
    """What the engine logged (a decision per shelf event the receipt's lines name, one row
    of another stream's event) ``age_days`` ago, and a clip of each of those events."""
    when = svc.clock.now() - timedelta(days=age_days)
    with svc.deps.sessions.begin() as s:
        refs = sorted({ref for ev in s.scalars(select(ReceiptLine.events).where(
            ReceiptLine.receipt_id == receipt_id)) for ref in json.loads(ev)})
        n = len(list(s.scalars(select(EngineEvent.id))))
        for i, ref in enumerate([*refs, "ev-somebody-else"]):
            s.add(EngineEvent(source="s1/live", seq=n + i, kind="decision", t=float(i),
                              ref=ref, payload=json.dumps({"event_id": ref}), recorded_at=when))
    if clips is not None:
        for ref in [*refs, "ev-somebody-else"]:
            p = clips / f"{ref}-cam0.webm"
            p.write_bytes(b"\0")
            os.utime(p, (when.timestamp(), when.timestamp()))


def _refs(svc: Svc) -> list[str | None]:
    with svc.deps.sessions() as s:
        return sorted(s.scalars(select(EngineEvent.ref)), key=str)


def test_an_undecided_disputes_evidence_outlives_retention(engine: Engine,
                                                           tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    svc = make_svc(engine, evidence_dir=clips, retention_check_s=0)
    with svc.client:
        h = svc.shopper()
        out = svc.leave(svc.enter(h), {BAR: 1, WATER: 1})
        short = str(out["visit_id"])[:8]
        bar, water = f"ev-{short}-{BAR}", f"ev-{short}-{WATER}"
        _evidence(svc, str(out["receipt_id"]), age_days=29, clips=clips)
        r = svc.client.post("/v1/disputes", headers=h, json={
            "receipt_id": out["receipt_id"], "product_id": BAR, "reason": "not mine"})
        assert r.status_code == 201, r.text
        dispute = r.json()["dispute_id"]
        svc.clock.advance(2 * 86400)  # the rows are 31 days old now, the dispute still open
        r = svc.client.post("/v1/admin/retention/purge", json={}, headers=ADMIN).json()
        assert r["deleted"]["engine_events"] == 2  # the undisputed line's row and the other's
        assert r["deleted"]["evidence_clips"] == 2
        assert _refs(svc) == [bar]
        assert sorted(p.name for p in clips.iterdir()) == [f"{bar}-cam0.webm"]
        # the operator deciding it still sees what the engine logged
        case = svc.client.get(f"/v1/disputes/{dispute}", headers=svc.gate).json()
        [ev] = case["evidence"]
        assert ev["event_id"] == bar and [x["kind"] for x in ev["log"]] == ["decision"]
        assert water not in _refs(svc)
        r = svc.client.post(f"/v1/disputes/{dispute}/decision", json={"decision": "reject"},
                            headers=svc.gate)
        assert r.status_code == 200, r.text
        # decided: the next purge takes it
        r = svc.client.post("/v1/admin/retention/purge", json={}, headers=ADMIN).json()
        assert r["deleted"]["engine_events"] == 1 and r["deleted"]["evidence_clips"] == 1
        assert _refs(svc) == [] and list(clips.iterdir()) == []


def test_an_undecided_chargebacks_evidence_outlives_retention(engine: Engine) -> None:
    svc = make_svc(engine, retention_check_s=0)
    with svc.client:
        out = svc.leave(svc.enter(svc.shopper()), {BAR: 1})
        _evidence(svc, str(out["receipt_id"]), age_days=29)
        bar = f"ev-{str(out['visit_id'])[:8]}-{BAR}"
        now = svc.clock.now()
        with svc.deps.sessions.begin() as s:
            s.add(Chargeback(id="dp_1", provider="ledger", visit_id=out["visit_id"],
                             charge_ref="ch_1", amount=9.19, currency="EUR",
                             reason="fraudulent", status="needs_response", opened_at=now,
                             as_of=now, updated_at=now))
        svc.clock.advance(2 * 86400)
        with svc.deps.sessions.begin() as s:
            assert retention.purge(s, svc.clock.now(), 30)["engine_events"] == 1
        assert _refs(svc) == [bar]
        with svc.deps.sessions.begin() as s:
            cb = s.get(Chargeback, "dp_1")
            assert cb is not None
            cb.status, cb.closed_at = "won", svc.clock.now()
        with svc.deps.sessions.begin() as s:
            assert retention.purge(s, svc.clock.now(), 30)["engine_events"] == 1
        assert _refs(svc) == []


def test_only_the_disputed_visits_own_stream_keeps_its_rows(engine: Engine) -> None:
    """Streams repeat event ids (recorded and simulated ones replayed into one database): the
    rows of the disputed event id were kept in every stream, another stream's shopper's
    included. Only the stream whose gate admitted the visit keeps them now."""
    svc = make_svc(engine, retention_check_s=0)
    with svc.client:
        h = svc.shopper()
        out = svc.leave(svc.enter(h), {BAR: 1})
        _evidence(svc, str(out["receipt_id"]), age_days=29)  # the visit's stream: s1
        bar = f"ev-{str(out['visit_id'])[:8]}-{BAR}"
        when = svc.clock.now() - timedelta(days=29)
        with svc.deps.sessions.begin() as s:
            cred = s.scalar(select(Visit.credential).where(Visit.id == out["visit_id"]))
            n = len(list(s.scalars(select(EngineEvent.id))))
            s.add(EngineEvent(source="s2/live", seq=n, kind="decision", t=0.0, ref=bar,
                              payload=json.dumps({"event_id": bar}), recorded_at=when))
            s.add(EngineEvent(source="s1/gates", seq=n + 1, kind="entry", t=0.0, ref=None,
                              payload=json.dumps({"credential": cred}),
                              recorded_at=svc.clock.now()))
        r = svc.client.post("/v1/disputes", headers=h, json={
            "receipt_id": out["receipt_id"], "product_id": BAR, "reason": "not mine"})
        assert r.status_code == 201, r.text
        svc.clock.advance(2 * 86400)
        with svc.deps.sessions.begin() as s:
            assert retention.purge(s, svc.clock.now(), 30)["engine_events"] == 2
            left = sorted(s.execute(select(EngineEvent.source, EngineEvent.ref)).all(),
                          key=str)
        assert [tuple(r) for r in left] == [("s1/gates", None), ("s1/live", bar)]
