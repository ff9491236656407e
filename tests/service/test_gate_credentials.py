"""Entry scans of a sensor source (simulator, recording, MQTT) bind a person to a visit only
when the service admitted that visit, it is still ``open``, and its credential enters for the
first time in the stream; a staff credential only for an active staff account and one person.
Any other scan binds nobody: whoever walks in on it is an unbound person (``unbound_person``),
with an alert that says why, and leaving with goods raises ``unbound_left_with_goods``.

Before, a credential seen twice bound a second person to the first one's visit (or, after
that visit was charged, let them shop for free with no alert); an empty or over-long one, a
made-up staff badge or a pre-authorisation that raised went unnoticed or stopped the engine."""

from __future__ import annotations

import dataclasses
import json
import logging
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from walkout.engine import Engine as Pipeline
from walkout.engine import EngineConfig
from walkout.service import checkout, entry
from walkout.service.models import CartLine, Charge, EngineEvent, Visit
from walkout.service.runner import LiveRunner
from walkout.service.testing import ADMIN_TOKEN, Svc, make_svc
from walkout.sim.session import SimConfig, simulate
from walkout.sim.shoppers import ShopperConfig
from walkout.sources.recording import Sensors
from walkout.store import load_store

FIRST, SECOND, THIRD = "qr-0001-00000", "qr-0001-00001", "qr-0001-00002"


@pytest.fixture(scope="module")
def sensors() -> Sensors:
    return Sensors.from_session(simulate(load_store("small"), 3, 1))


@pytest.fixture(scope="module")
def apart() -> Sensors:
    """Two shoppers, the second entering after the first left (qr-0005-00000, -00001)."""
    return Sensors.from_session(simulate(load_store("small"), 2, 5, SimConfig(
        shoppers=ShopperConfig(mean_arrival_gap_s=40))))


def _with(sn: Sensors, old: str, **change: Any) -> Sensors:
    gates = [dataclasses.replace(g, **change) if g.credential == old else g for g in sn.gates]
    return Sensors(sn.store, sn.plates, sn.frames, gates, sn.duration_s)


def _truth(sn: Sensors) -> dict[str, Decimal]:
    return {r.credential: r.total for r in Pipeline(sn.store).run(sn).receipts}


def _alerts(svc: Svc) -> list[tuple[int, str, str]]:
    """The alerts in the event log: (seq, kind, message)."""
    with svc.deps.sessions() as s:
        return [(e.seq, e.kind, json.loads(e.payload)["message"]) for e in s.scalars(
            select(EngineEvent).where(EngineEvent.source.like("%/alerts"))
            .order_by(EngineEvent.seq))]


def _kinds(svc: Svc) -> list[str]:
    return [k for _, k, _ in _alerts(svc)]


def _captured(svc: Svc) -> dict[str, Decimal]:
    with svc.deps.sessions() as s:
        return {v.credential: Decimal(c.amount) for c, v in s.execute(
            select(Charge, Visit).join(Visit, Visit.id == Charge.visit_id)
            .where(Charge.kind == "capture", Charge.status == "succeeded")).all()}


def _states(svc: Svc) -> dict[str, str]:
    with svc.deps.sessions() as s:
        return {v.credential: v.state for v in s.scalars(select(Visit))}


def _lines(svc: Svc, cred: str) -> list[tuple[str, int]]:
    with svc.deps.sessions() as s:
        return [(ln.product_id, ln.quantity) for ln in s.scalars(
            select(CartLine).join(Visit, Visit.id == CartLine.visit_id)
            .where(Visit.credential == cred))]


def _chunk_at(sn: Sensors, t: float) -> int:
    edges = list(sn.edges(LiveRunner(sn, "x").config.chunk_s))
    return next(i for i, b in enumerate(edges[1:]) if b > t)


def test_a_credential_scanned_again_while_its_visit_is_inside_binds_nobody_to_it(
        sensors: Sensors, engine: Engine) -> None:
    truth = _truth(sensors)
    reused = _with(sensors, THIRD, credential=FIRST)
    svc = make_svc(engine)
    LiveRunner(reused, "sim").run(svc.deps)
    assert _states(svc) == {FIRST: "charged", SECOND: "charged"}
    # the first shopper pays what she took, not the second person's goods too
    assert _captured(svc) == {FIRST: truth[FIRST], SECOND: truth[SECOND]}
    kinds = _kinds(svc)
    assert kinds.count("credential_reused") == 1
    assert "unbound_person" in kinds
    gone = [m for _, k, m in _alerts(svc) if k == "unbound_left_with_goods"]
    assert len(gone) == 1 and f"{truth[THIRD]} EUR" in gone[0]


def test_a_credential_replayed_after_its_visit_was_charged_is_no_free_visit(
        apart: Sensors, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    a, b = "qr-0005-00000", "qr-0005-00001"
    truth = _truth(apart)
    svc = make_svc(engine)
    with caplog.at_level(logging.WARNING, "walkout.service.runner"):
        LiveRunner(_with(apart, b, credential=a), "sim").run(svc.deps)
    assert _captured(svc) == {a: truth[a]}
    assert _kinds(svc).count("credential_reused") == 1
    gone = [m for _, k, m in _alerts(svc) if k == "unbound_left_with_goods"]
    assert len(gone) == 1 and f"{truth[b]} EUR" in gone[0]
    assert any("entered before in this stream" in r.getMessage() for r in caplog.records)


def test_a_restart_replays_the_same_bindings_and_alerts(apart: Sensors, engine: Engine,
                                                        tmp_path: Any) -> None:
    """Replayed after the first visit was charged, its scan still binds, the reused one still
    does not: the same sessions, alerts and charges as a run that never stopped."""
    from walkout.service.db import make_engine, upgrade

    a, b = "qr-0005-00000", "qr-0005-00001"
    sn = _with(apart, b, credential=a)
    second = [g.t for g in sn.gates if g.kind == "entry"][1]
    svc = make_svc(engine)
    LiveRunner(sn, "sim", stop_after_chunk=_chunk_at(sn, second) + 12).run(svc.deps)
    assert _states(svc) == {a: "charged"}
    for _ in range(2):
        LiveRunner(sn, "sim").run(make_svc(engine).deps)
    other = make_engine(f"sqlite:///{tmp_path}/straight.db")
    upgrade(other)
    straight = make_svc(other)
    LiveRunner(sn, "sim").run(straight.deps)
    assert _alerts(svc) == _alerts(straight)
    assert _captured(svc) == _captured(straight) == {a: _truth(apart)[a]}
    other.dispose()


def test_an_error_admitting_one_scan_neither_stops_the_engine_nor_binds_it(
        sensors: Sensors, engine: Engine, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Whatever the admission raises (a provider library's bug, a database error) is logged
    with the gate and time and leaves that scan refused; before, the worker died on it, at
    every restart (the chunk is admitted again)."""
    real = entry.admit_card

    def admit(d: Any, token: str, gate: str, **kw: Any) -> Any:
        if kw.get("credential") == FIRST:
            raise RuntimeError("provider SDK blew up")
        return real(d, token, gate, **kw)

    monkeypatch.setattr(entry, "admit_card", admit)
    svc = make_svc(engine)
    with caplog.at_level(logging.WARNING, "walkout.service.runner"):
        LiveRunner(sensors, "sim").run(svc.deps)
    assert set(_captured(svc)) == {SECOND, THIRD}
    assert _kinds(svc).count("entry_refused") == 1
    assert any("failed to be admitted" in r.getMessage() and "entry" in r.getMessage()
               for r in caplog.records)


def test_an_authorizing_visit_binds_nobody_even_once_it_is_finished(
        sensors: Sensors, engine: Engine) -> None:
    """A visit still ``authorizing`` (its pre-authorisation has no answer yet) when its scan
    reaches the engine binds nobody; the replay after a restart decides the same although the
    visit is ``open`` by then (the same sessions, alerts and charges)."""
    svc = make_svc(engine)
    with svc.client:
        ann = svc.shopper()
        r = svc.client.post("/v1/gates/entry/scan", headers=svc.gate,
                            json={"code": svc.code(ann), "credential": FIRST})
        assert r.status_code == 201, r.text
    with svc.deps.sessions.begin() as s:  # as a crash mid-admission leaves it
        s.execute(update(Visit).where(Visit.credential == FIRST).values(state="authorizing"))
    first = next(g.t for g in sensors.gates if g.kind == "entry")
    LiveRunner(sensors, "sim", stop_after_chunk=_chunk_at(sensors, first) + 4).run(svc.deps)
    assert _kinds(svc).count("entry_not_open") == 1
    with svc.deps.sessions.begin() as s:  # finished meanwhile
        s.execute(update(Visit).where(Visit.credential == FIRST).values(state="open"))
    LiveRunner(sensors, "sim").run(make_svc(engine).deps)
    assert _lines(svc, FIRST) == []
    kinds = _kinds(svc)
    assert kinds.count("entry_not_open") == 1 and "unbound_person" in kinds
    assert set(_captured(svc)) == {SECOND, THIRD}


@pytest.mark.parametrize("cred", ["qr-" + "x" * 200, "qr 1/ä"])
def test_a_credential_the_service_never_hands_out_is_refused_and_the_engine_goes_on(
        sensors: Sensors, engine: Engine, cred: str) -> None:
    sn = _with(sensors, SECOND, credential=cred)
    truth = _truth(sensors)
    svc = make_svc(engine)
    for _ in range(2):  # on PostgreSQL it stopped the engine, at every restart
        LiveRunner(sn, "sim").run(make_svc(engine).deps)
    assert _states(svc) == {FIRST: "charged", THIRD: "charged"}
    assert _captured(svc) == {FIRST: truth[FIRST], THIRD: truth[THIRD]}
    kinds = _kinds(svc)
    assert kinds.count("entry_refused") == 1 and "unbound_left_with_goods" in kinds


def test_an_entry_scan_without_a_credential_is_an_unbound_person(
        sensors: Sensors, engine: Engine) -> None:
    svc = make_svc(engine)
    LiveRunner(_with(sensors, SECOND, credential=""), "sim").run(svc.deps)
    assert _states(svc) == {FIRST: "charged", THIRD: "charged"}
    kinds = _kinds(svc)
    assert kinds.count("credential_missing") == 1
    assert "unbound_person" in kinds and "unbound_left_with_goods" in kinds


def _staff(svc: Svc, revoke: bool = False) -> str:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = svc.client.post("/v1/admin/staff", json={"role": "operator", "name": "Bo"},
                        headers=admin)
    bo = r.json()["account_id"]
    if revoke:
        assert svc.client.delete(f"/v1/admin/staff/{bo}", headers=admin).status_code < 300
    return f"staff:{bo}"


@pytest.mark.parametrize(("revoke", "party", "bound"), [
    (False, 1, True), (True, 1, False), (False, 2, False), (None, 1, False)])
def test_a_staff_credential_binds_only_an_active_account_and_one_person(
        sensors: Sensors, engine: Engine, revoke: bool | None, party: int,
        bound: bool) -> None:
    svc = make_svc(engine)
    badge = "staff:0123456789abcdef0123456789abcdef" if revoke is None else _staff(svc, revoke)
    LiveRunner(_with(sensors, SECOND, credential=badge, party_size=party),
               "sim").run(svc.deps)
    assert _states(svc) == {FIRST: "charged", THIRD: "charged"}
    kinds = _kinds(svc)
    if bound:  # a staff session: nobody's tailgater, never charged
        assert "staff_badge_refused" not in kinds and "unbound_person" not in kinds
    else:
        assert kinds.count("staff_badge_refused") == 1
        assert "unbound_person" in kinds and "unbound_left_with_goods" in kinds


def test_one_staff_badge_admits_one_person_at_a_time(sensors: Sensors,
                                                    engine: Engine) -> None:
    """The second and third people come in on the same badge while the second is inside: the
    third is nobody's staff (staff are never charged: a lent badge would be free shopping),
    an unbound person with an alert that says why."""
    svc = make_svc(engine)
    badge = _staff(svc)
    LiveRunner(_with(_with(sensors, SECOND, credential=badge), THIRD, credential=badge),
               "sim").run(svc.deps)
    kinds = _kinds(svc)
    assert kinds.count("credential_reused") == 1, kinds
    assert "unbound_person" in kinds and "unbound_left_with_goods" in kinds


def test_a_staff_badge_enters_again_once_its_holder_left(apart: Sensors,
                                                        engine: Engine) -> None:
    """An associate goes out and comes back in on her badge: bound both times, no alert."""
    svc = make_svc(engine)
    badge = _staff(svc)
    both = _with(_with(apart, "qr-0005-00000", credential=badge), "qr-0005-00001",
                 credential=badge)
    LiveRunner(both, "sim").run(svc.deps)
    kinds = _kinds(svc)
    assert "credential_reused" not in kinds and "unbound_person" not in kinds, kinds


def test_a_staff_badge_enters_again_after_the_engine_let_its_last_visit_go(
        apart: Sensors, engine: Engine) -> None:
    """A store never empty lets a visit go some time after it was settled
    (``forget_visits_s``): the badge's earlier entry has no session in the engine any more,
    which is not the same as one entering in this very chunk (still inside)."""
    svc = make_svc(engine)
    badge = _staff(svc)
    both = _with(_with(apart, "qr-0005-00000", credential=badge), "qr-0005-00001",
                 credential=badge)
    runner = _Kept(both, "sim", config=EngineConfig(forget_visits_s=1.0))
    runner.run(svc.deps)
    kinds = _kinds(svc)
    assert "credential_reused" not in kinds and "unbound_person" not in kinds, kinds
    assert runner.kept.book.forgotten >= 1  # the first visit was let go before the second


class _Kept(LiveRunner):
    def _engine(self) -> Pipeline:
        self.kept = super()._engine()
        return self.kept


def test_a_bound_party_is_the_visits_not_the_gate_events(sensors: Sensors,
                                                         engine: Engine) -> None:
    svc = make_svc(engine)
    with svc.client:
        ann = svc.shopper()
        r = svc.client.post("/v1/gates/entry/scan", headers=svc.gate,
                            json={"code": svc.code(ann), "credential": SECOND})
        assert r.status_code == 201, r.text
    runner = _Kept(_with(sensors, SECOND, party_size=4), "sim")
    runner.run(svc.deps)
    (sess,) = [s for s in runner.kept.book.sessions.values() if s.credential == SECOND]
    assert sess.party_size == 1
    with svc.deps.sessions() as s:
        rows = [json.loads(p) for p in s.scalars(select(EngineEvent.payload).where(
            EngineEvent.source == "sim/gates", EngineEvent.kind == "entry"))]
    assert [(p["party_size"], p["party"]) for p in rows if p["credential"] == SECOND] == [(4, 1)]


def test_lines_for_a_visit_closed_meanwhile_are_logged_and_alerted(
        sensors: Sensors, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """The service checked the visit out (abandoned after ``max_visit_s``) while the engine
    still saw its shopper: what they took after is not charged, and staff are told."""
    res = Pipeline(sensors.store).run(sensors)
    (sid,) = [r.session_id for r in res.receipts if r.credential == SECOND]
    ts = sorted(e.t for e in res.ledger_entries[sid])
    svc = make_svc(engine)
    LiveRunner(sensors, "sim", stop_after_chunk=_chunk_at(sensors, ts[0]) + 1).run(svc.deps)
    with svc.deps.sessions() as s:
        vid = s.scalar(select(Visit.id).where(Visit.credential == SECOND))
    assert vid is not None and len(_lines(svc, SECOND)) < len(ts)
    checkout.exit_visit(svc.deps, vid, needs_review=True)
    with caplog.at_level(logging.WARNING, "walkout.service.runner"):
        LiveRunner(sensors, "sim").run(make_svc(engine).deps)
    lost = [m for _, k, m in _alerts(svc) if k == "lines_not_charged"]
    assert lost and all(vid in m for m in lost)
    assert any("not charged" in r.getMessage() and vid in r.getMessage()
               for r in caplog.records)
