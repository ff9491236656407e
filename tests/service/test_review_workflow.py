"""The review workflow end to end, as a reviewer, an operator and a shopper rely on it: the live
engine inside the real service on a simulated store whose one uncertain pick opens a review
case (another product weighs the same), verdicts through the operators' API, restarts replaying
the source, refunds through the built-in ledger."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select

from walkout.engine import EngineConfig
from walkout.service.models import Charge, EngineEvent, Receipt, ReviewVerdict, Visit
from walkout.service.runner import LiveRunner
from walkout.service.testing import Svc, make_svc
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store

#: this draw has one review case: s00004 (visit qr-0020-00003) picks 3 × PRODUCT at t ≈ 63 s,
#: and another product weighs the same
SHOPPERS, SEED = 6, 20
PRODUCT, CREDENTIAL, SESSION = "812186020426", "qr-0020-00003", "s00004"
HOLD = EngineConfig(review_hold_s=600.0)


@pytest.fixture(scope="module")
def sensors() -> Sensors:
    return Sensors.from_session(simulate(load_store("small"), SHOPPERS, SEED))


def _visit(svc: Svc) -> Visit:
    with svc.deps.sessions() as s:
        v = s.scalar(select(Visit).where(Visit.credential == CREDENTIAL))
        assert v is not None
        return v


def _state(svc: Svc) -> str | None:
    """The visit's state (None before the shopper is admitted)."""
    with svc.deps.sessions() as s:
        return s.scalar(select(Visit.state).where(Visit.credential == CREDENTIAL))


def _receipt(svc: Svc) -> dict[str, Any]:
    with svc.deps.sessions() as s:
        rid = s.scalar(select(Receipt.id).join(Visit, Visit.id == Receipt.visit_id)
                       .where(Visit.credential == CREDENTIAL))
        needs_review = s.scalar(select(Receipt.needs_review).where(Receipt.id == rid))
    r = svc.client.get(f"/v1/ops/receipts/{rid}", headers=svc.gate)
    assert r.status_code == 200, r.text
    return {**r.json(), "needs_review": needs_review}


def _refunds(svc: Svc) -> list[tuple[str, str]]:
    vid = _visit(svc).id
    with svc.deps.sessions() as s:
        return [(str(Decimal(c.amount).normalize()), c.status) for c in s.scalars(
            select(Charge).where(Charge.visit_id == vid, Charge.kind == "refund"))]


def _case_id(svc: Svc) -> str:
    r = svc.client.get("/v1/ops/reviews", headers=svc.gate)
    assert r.status_code == 200, r.text
    (case,) = r.json()
    assert case["sessions"] == [SESSION] and case["state"] == "open"
    return str(case["case_id"])


def _decide(svc: Svc, case_id: str, quantity: int, note: str = "two on the video") -> None:
    r = svc.client.post(f"/v1/ops/reviews/{case_id}/decision",
                        json={"shares": {SESSION: [[PRODUCT, quantity]]}, "note": note},
                        headers=svc.gate)
    assert r.status_code == 201, r.text


def _wait(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_verdict_recorded_while_the_engine_was_down_revises_the_receipt_on_restart(
        sensors: Sensors, engine: Engine) -> None:
    """The receipt was issued under review and captured in full; the operator decides while
    the engine worker is down (a crash, a deploy). On restart the replay meets the verdict as
    soon as the case reopens, before the shopper's exit, so the engine issues the corrected
    receipt as revision 0 of a visit the service had settled: it must still be revised and
    the unit refunded, not left under review with the correction only in the cart ledger."""
    svc = make_svc(engine)
    LiveRunner(sensors, "sim", config=HOLD).run(svc.deps)
    rec = _receipt(svc)
    assert rec["needs_review"] is True and _visit(svc).state == "in_review"
    price = Decimal(next(ln["unit_price"] for ln in rec["lines"]
                         if ln["product_id"] == PRODUCT))
    _decide(svc, _case_id(svc), 2)  # one of the three was the same-weight product's: not taken
    LiveRunner(sensors, "sim", config=HOLD).run(make_svc(engine).deps)  # the restart
    rec = _receipt(svc)
    line = next(ln for ln in rec["lines"] if ln["product_id"] == PRODUCT)
    assert line["quantity"] == 2
    assert rec["needs_review"] is False and _visit(svc).state == "charged"
    assert _refunds(svc) == [(str(price.normalize()), "succeeded")]
    LiveRunner(sensors, "sim", config=HOLD).run(make_svc(engine).deps)  # and once more
    assert _refunds(svc) == [(str(price.normalize()), "succeeded")]


def test_a_verdict_applied_live_is_applied_once_and_survives_restarts(
        sensors: Sensors, engine: Engine) -> None:
    """The engine worker applies the verdict once; the revision refunds once; every restart
    after it replays the verdict without refunding again; who decided, when and why is kept
    and shown with the case."""
    svc = make_svc(engine)
    stop = threading.Event()
    runner = LiveRunner(sensors, "sim", config=HOLD)
    th = threading.Thread(target=runner, args=(svc.deps, stop), daemon=True)
    th.start()
    try:
        _wait("the receipt under review", lambda: _state(svc) == "in_review")
        case_id = _case_id(svc)
        _decide(svc, case_id, 2)
        r = svc.client.post(f"/v1/ops/reviews/{case_id}/decision",
                            json={"shares": {}}, headers=svc.gate)
        assert r.status_code == 409 and r.json()["error"] == "already_decided"
        _wait("the revision", lambda: _state(svc) == "charged")
    finally:
        stop.set()
        th.join(30)
    refunds = _refunds(svc)
    assert len(refunds) == 1 and refunds[0][1] == "succeeded"
    for _ in range(2):
        LiveRunner(sensors, "sim", config=HOLD).run(make_svc(engine).deps)
    assert _refunds(svc) == refunds
    case = svc.client.get(f"/v1/ops/reviews/{case_id}", headers=svc.gate).json()
    with svc.deps.sessions() as s:
        v = s.get(ReviewVerdict, ("sim", case_id))
        assert v is not None and v.applied_at is not None
    assert case["verdict"]["note"] == "two on the video" and case["verdict"]["applied"]
    assert case["verdict"]["decided_by"] == v.decided_by  # the audit trail: who decided


def test_review_queue_puts_the_longest_waiting_open_case_first(svc: Svc) -> None:
    """Open cases by how long their receipts have waited (the oldest event first: its hold
    runs out first), decided ones after them."""
    def case(seq: int, t: float) -> EngineEvent:
        ev = {"case_id": f"P{seq}-{t:.3f}", "reasons": ["r"], "sessions": ["s1"],
              "decided": {}, "hypotheses": [], "hands": [], "credentials": {},
              "event": {"kind": "pick", "plates": ["P"], "delta_g": -1.0,
                        "t_start": t, "t_end": t}}
        return EngineEvent(source="sim/evidence", seq=seq, kind="case_evidence", t=t,
                           ref=ev["case_id"], payload=json.dumps(ev),
                           recorded_at=svc.clock.now())

    with svc.deps.sessions.begin() as s:
        s.add_all([case(0, 10.0), case(1, 20.0), case(2, 30.0)])
    r = svc.client.post("/v1/ops/reviews/P0-10.000/decision", json={"shares": {}},
                        headers=svc.gate)
    assert r.status_code == 201, r.text
    got = [c["case_id"] for c in svc.client.get("/v1/ops/reviews", headers=svc.gate).json()]
    assert got == ["P1-20.000", "P2-30.000", "P0-10.000"]


def test_a_reviewed_line_leads_to_its_case_and_the_verdict_that_changed_it(
        sensors: Sensors, engine: Engine) -> None:
    """The dashboard's receipt and a dispute of the line explain it: the event behind it once
    (not once per ledger line), the review case it went through, and the verdict that
    changed it with who decided it, when and why."""
    svc = make_svc(engine)
    LiveRunner(sensors, "sim", config=HOLD).run(svc.deps)
    case_id = _case_id(svc)
    _decide(svc, case_id, 2)
    LiveRunner(sensors, "sim", config=HOLD).run(make_svc(engine).deps)
    with svc.deps.sessions() as s:
        v = s.get(ReviewVerdict, ("sim", case_id))
        assert v is not None
        who = v.decided_by
    rec = _receipt(svc)
    line = next(ln for ln in rec["lines"] if ln["product_id"] == PRODUCT)
    (ev,) = line["evidence"]
    assert ev["event_id"] == case_id and ev["scores"][0][0] == SESSION
    assert ev["review"]["case_id"] == case_id and ev["review"]["state"] == "applied"
    assert ev["review"]["verdict"]["decided_by"] == who
    assert ev["review"]["verdict"]["shares"] == {SESSION: [[PRODUCT, 2]]}
    assert ev["review"]["verdict"]["note"] == "two on the video"
    # a line the engine was sure of went through no review
    other = next(ln for ln in rec["lines"] if ln["product_id"] != PRODUCT)
    assert all(e["review"] is None for e in other["evidence"])
    # the store refunds one more on its own initiative: the dispute shows the verdict too
    r = svc.client.post(f"/v1/ops/receipts/{rec['receipt_id']}/refund",
                        json={"product_id": PRODUCT, "quantity": 1, "note": "goodwill"},
                        headers=svc.gate)
    assert r.status_code in (200, 201), r.text
    dsp = svc.client.get(f"/v1/disputes/{r.json()['dispute_id']}", headers=svc.gate).json()
    (ev,) = dsp["evidence"]
    assert ev["review"]["verdict"]["decided_by"] == who


def _erase(svc: Svc) -> int:
    r = svc.client.post("/v1/admin/privacy/erase", json={"card_token": f"tok_gate_{CREDENTIAL}"},
                        headers={"Authorization": "Bearer wo_admin-test-token-0123456789"})
    assert r.status_code in (200, 409), r.text
    if r.status_code == 409:
        assert r.json()["error"] == "review_in_progress"
    return r.status_code


def test_erasure_waits_for_the_review_of_her_receipt_and_the_case_still_opens_after(
        sensors: Sensors, engine: Engine) -> None:
    """The shopper asks for erasure while her receipt waits for review. Her verdict's lines
    reach her receipt (and the refund her card) through the visit's gate credential, which
    erasure unlinks: erased first, the verdict was applied to nobody and nothing was refunded.
    Erasure is refused until the verdict is applied (as while a dispute is undecided); after
    it, the case still opens (her skeletons and the link to her visit gone)."""
    svc = make_svc(engine)
    stop = threading.Event()
    th = threading.Thread(target=LiveRunner(sensors, "sim", config=HOLD),
                          args=(svc.deps, stop), daemon=True)
    th.start()
    try:
        _wait("the receipt under review", lambda: _state(svc) == "in_review")
        assert _erase(svc) == 409
        case_id = _case_id(svc)
        _decide(svc, case_id, 2)
        # the refund row is written pending before the provider answers: wait for the answer
        _wait("the refund", lambda: any(st == "succeeded" for _, st in _refunds(svc)))
        assert [st for _, st in _refunds(svc)] == ["succeeded"]
        assert _erase(svc) == 200
    finally:
        stop.set()
        th.join(30)
    r = svc.client.get(f"/v1/ops/reviews/{case_id}", headers=svc.gate)
    assert r.status_code == 200, r.text
    assert r.json()["skeletons"] == {} and r.json()["people"] == {}
    assert r.json()["verdict"]["applied"] is True


def test_a_case_whose_evidence_expired_is_answered_not_found(
        sensors: Sensors, engine: Engine) -> None:
    """Retention purged the event log: the queue is empty, the case and a verdict on it are
    404 (not a server error), the receipt still opens with its lines."""
    svc = make_svc(engine)
    LiveRunner(sensors, "sim", config=HOLD).run(svc.deps)
    case_id = _case_id(svc)
    svc.clock.advance(31 * 86400)
    r = svc.client.post("/v1/admin/retention/purge", json={},
                        headers={"Authorization": "Bearer wo_admin-test-token-0123456789"})
    assert r.status_code == 200, r.text
    assert svc.client.get("/v1/ops/reviews", headers=svc.gate).json() == []
    assert svc.client.get(f"/v1/ops/reviews/{case_id}", headers=svc.gate).status_code == 404
    r = svc.client.post(f"/v1/ops/reviews/{case_id}/decision", json={"shares": {}},
                        headers=svc.gate)
    assert r.status_code == 404
    line = next(ln for ln in _receipt(svc)["lines"] if ln["product_id"] == PRODUCT)
    assert [e["event_id"] for e in line["evidence"]] == [case_id]


class _Kept(LiveRunner):
    """A runner that keeps its engine for the test to read."""

    eng: Any = None

    def _engine(self) -> Any:
        self.eng = super()._engine()
        return self.eng


def _issues(runner: _Kept) -> list[tuple[int, int]]:
    """(revision, quantity of PRODUCT) of every issue of the case's receipt, in order."""
    return [(r.revision, dict(r.counts()).get(PRODUCT, 0)) for r in runner.eng.issued
            if r.session_id == SESSION]


def test_a_restart_replays_a_verdict_where_the_first_run_applied_it(
        sensors: Sensors, engine: Engine) -> None:
    """The verdict came after the shopper's exit: the first run issued the receipt, then its
    revision. The replay after a restart must do the same (it applied the verdict as soon as
    the case reopened, before the exit, and issued the corrected receipt as the only one: the
    engine's outputs and the plates' history differed from the first run's)."""
    svc = make_svc(engine)
    stop = threading.Event()
    first = _Kept(sensors, "sim", config=HOLD)
    th = threading.Thread(target=first, args=(svc.deps, stop), daemon=True)
    th.start()
    try:
        _wait("the receipt under review", lambda: _state(svc) == "in_review")
        _decide(svc, _case_id(svc), 2)
        _wait("the revision", lambda: _state(svc) == "charged")
    finally:
        stop.set()
        th.join(30)
    assert _issues(first) == [(0, 3), (1, 2)]
    again = _Kept(sensors, "sim", config=HOLD)
    again.run(make_svc(engine).deps)
    assert _issues(again) == _issues(first)
    with svc.deps.sessions() as s:
        v = s.scalars(select(ReviewVerdict)).one()
    assert v.source == "sim" and v.applied_chunk is not None
