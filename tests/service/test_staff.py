"""Staff at the gate and restock mode in the service (SQLite): a badge an admin issued admits a
staff session (no visit, no pre-authorisation, never charged); the live engine on the
simulator's ``restock`` scenario charges the shoppers only; the store mode is recorded where the
engine applied it, so that a replay applies it there again."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from walkout.service.models import Charge, EngineEvent, StoreMode, Visit
from walkout.service.runner import LiveRunner
from walkout.service.testing import ADMIN_TOKEN, Svc, badged, make_svc
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _staff_account(svc: Svc) -> str:
    r = svc.client.post("/v1/admin/staff", json={"role": "operator", "name": "Bo"},
                        headers=ADMIN)
    assert r.status_code == 201, r.text
    return str(r.json()["account_id"])


def test_a_staff_badge_admits_staff_without_a_visit_or_a_hold(svc: Svc) -> None:
    acct = _staff_account(svc)
    r = svc.client.post(f"/v1/admin/staff/{acct}/badge", headers=ADMIN)
    assert r.status_code == 201, r.text
    badge = r.json()["badge"]
    r = svc.client.post("/v1/gates/entry/staff", json={"badge": badge}, headers=svc.gate)
    assert r.status_code == 201, r.text
    assert r.json() == {"account_id": acct, "credential": f"staff:{acct}"}
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Visit)) == 0
        assert s.scalar(select(func.count()).select_from(Charge)) == 0
    forged = badge[:-4] + ("AAAA" if not badge.endswith("AAAA") else "BBBB")
    r = svc.client.post("/v1/gates/entry/staff", json={"badge": forged}, headers=svc.gate)
    assert r.status_code == 400 and r.json()["error"] == "badge_forged"
    # a badge is no API token, and only an admin issues one
    assert svc.client.get("/v1/store-mode", headers={"Authorization": f"Bearer {badge}"}
                          ).status_code == 401
    assert svc.client.post(f"/v1/admin/staff/{acct}/badge", headers=svc.gate).status_code == 403
    # revoking the account refuses its badge at the gate
    assert svc.client.delete(f"/v1/admin/staff/{acct}", headers=ADMIN).status_code == 200
    r = svc.client.post("/v1/gates/entry/staff", json={"badge": badge}, headers=svc.gate)
    assert r.status_code == 403 and r.json()["error"] == "badge_revoked"


def test_a_shopper_visit_cannot_carry_a_staff_credential(svc: Svc) -> None:
    h = svc.shopper()
    r = svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h),
                                                      "credential": "staff:x"},
                        headers=svc.gate)
    assert r.status_code == 422 and r.json()["error"] == "staff_credential"


def test_the_store_mode_is_recorded_and_applied_where_a_replay_applies_it_again(
    svc: Svc, engine: Engine
) -> None:
    r = svc.client.post("/v1/store-mode", json={"closed": True, "note": "night restock"},
                        headers=svc.gate)
    assert r.status_code == 200 and r.json()["closed"] is True
    assert svc.client.get("/v1/store-mode", headers=svc.gate).json()["closed"] is True
    # the same again is no new change
    svc.client.post("/v1/store-mode", json={"closed": True}, headers=svc.gate)
    sensors, _ = badged(svc.deps, Sensors.from_session(
        simulate(load_store("small"), 0, 1, scenarios=["restock"])))
    LiveRunner(sensors, "sim", stop_after_chunk=3).run(svc.deps)
    with svc.deps.sessions() as s:
        (row,) = s.scalars(select(StoreMode))
        assert (row.closed, row.source, row.applied_chunk, row.applied_t) == (True, "sim", 0,
                                                                              0.0)
    # a restart replays the log: the mode is applied at chunk 0 again, not where it resumes
    runner = LiveRunner(sensors, "sim")
    runner.run(make_svc(engine).deps)
    with svc.deps.sessions() as s:
        (row,) = s.scalars(select(StoreMode))
        assert row.applied_chunk == 0
        stock = [e for e in s.scalars(select(EngineEvent).where(EngineEvent.kind == "decision"))
                 if '"stock": true' in e.payload]
    assert len(stock) == 3  # the staff's two restocks and one removal, each logged once


def test_the_live_engine_charges_the_shoppers_and_never_the_staff(engine: Engine) -> None:
    """The ``restock`` scenario through the runner: the staff badge's credential opens no
    visit and gets no charge; the shoppers' visits are captured as the engine's receipts."""
    from walkout.engine import Engine as Pipeline

    svc = make_svc(engine)
    sensors, _ = badged(svc.deps, Sensors.from_session(
        simulate(load_store("small"), 2, 1, scenarios=["restock"])))
    truth = {r.credential: r.total for r in Pipeline(sensors.store).run(sensors).receipts}
    LiveRunner(sensors, "sim").run(svc.deps)
    staff = [g.credential for g in sensors.gates if g.credential.startswith("staff:")]
    assert len(staff) == 1
    with svc.deps.sessions() as s:
        creds = set(s.scalars(select(Visit.credential)))
        captured = {v.credential for c, v in s.execute(
            select(Charge, Visit).join(Visit, Visit.id == Charge.visit_id)
            .where(Charge.kind == "capture", Charge.status == "succeeded")).all()}
        decisions = [e.payload for e in s.scalars(select(EngineEvent)
                                                  .where(EngineEvent.kind == "decision"))]
    assert staff[0] not in creds and staff[0] not in truth
    assert captured == {c for c, t in truth.items() if t > 0}
    assert sum('"stock": true' in p for p in decisions) == 3
