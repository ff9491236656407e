"""Review cases of two engine streams served into one database, through the real service.

A case's id is its shelf event's, ``<plate>-<stream time>``, and a recording or a simulation
starts its clock at 0 every time it is served, so two streams can each open a case of one id
(here: one scene served as ``day1`` and again as ``day2`` with other shoppers). Each is a case
of its own: both are listed and decided, each verdict is applied only by its own stream's
engine (also on the replay after a restart), and the receipt, dispute, export and erasure of a
shopper see only her stream's case and verdict. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import replace
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

#: as in test_review_workflow: this draw's one review case is s00004 (visit qr-0020-00003)
#: picking 3 × PRODUCT, which another product weighs the same as
SHOPPERS, SEED = 6, 20
PRODUCT, CREDENTIAL, SESSION = "812186020426", "qr-0020-00003", "s00004"
HOLD = EngineConfig(review_hold_s=600.0)
#: the second stream's shoppers: the same scene, other people (other gate credentials)
OTHER = "b-"


@pytest.fixture(scope="module")
def days() -> tuple[Sensors, Sensors]:
    day1 = Sensors.from_session(simulate(load_store("small"), SHOPPERS, SEED))
    gates = [replace(g, credential=OTHER + g.credential) if g.credential else g
             for g in day1.gates]
    day2 = Sensors(day1.store, day1.plates, day1.frames, gates, day1.duration_s,
                   modes=day1.modes)
    return day1, day2


def _run(svc: Svc, engine: Engine, sensors: Sensors, stream: str) -> None:
    """One run of the stream's engine worker: the first, or a restart replaying it."""
    LiveRunner(sensors, stream, config=HOLD).run(make_svc(engine, svc.clock).deps)


def _serve_both(svc: Svc, engine: Engine, days: tuple[Sensors, Sensors]) -> str:
    """Both streams to their end, each leaving its case open; the case id they share."""
    _run(svc, engine, days[0], "day1")
    _run(svc, engine, days[1], "day2")
    queue = svc.client.get("/v1/ops/reviews", headers=svc.gate).json()
    ids = {c["case_id"] for c in queue}
    assert len(ids) == 1, queue  # the collision this is about
    return ids.pop()


def _visit(svc: Svc, cred: str) -> Visit:
    with svc.deps.sessions() as s:
        v = s.scalar(select(Visit).where(Visit.credential == cred))
        assert v is not None
        return v


def _line(svc: Svc, cred: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The visit's receipt (as operators see it, with ``needs_review``) and its PRODUCT line."""
    with svc.deps.sessions() as s:
        r = s.scalar(select(Receipt).join(Visit, Visit.id == Receipt.visit_id)
                     .where(Visit.credential == cred))
        assert r is not None
        rid, needs_review = r.id, r.needs_review
    rec = svc.client.get(f"/v1/ops/receipts/{rid}", headers=svc.gate).json()
    return ({**rec, "needs_review": needs_review},
            next(ln for ln in rec["lines"] if ln["product_id"] == PRODUCT))


def _refunds(svc: Svc, cred: str) -> list[str]:
    vid = _visit(svc, cred).id
    with svc.deps.sessions() as s:
        return [str(Decimal(c.amount).normalize()) for c in s.scalars(
            select(Charge).where(Charge.visit_id == vid, Charge.kind == "refund",
                                 Charge.status == "succeeded"))]


def _decide(svc: Svc, case_id: str, quantity: int, stream: str | None,
            note: str | None = None) -> Any:
    query = "" if stream is None else f"?stream={stream}"
    return svc.client.post(f"/v1/ops/reviews/{case_id}/decision{query}", headers=svc.gate,
                           json={"shares": {SESSION: [[PRODUCT, quantity]]}, "note": note})


def test_both_streams_cases_are_listed_shown_and_decided_each_on_its_own(
        days: tuple[Sensors, Sensors], engine: Engine) -> None:
    svc = make_svc(engine)
    with svc.client:
        cid = _serve_both(svc, engine, days)
        queue = svc.client.get("/v1/ops/reviews", headers=svc.gate).json()
        assert sorted((c["case_id"], c["stream"], c["state"]) for c in queue) == [
            (cid, "day1", "open"), (cid, "day2", "open")]
        # the id alone does not say which: the answer names the streams to choose from
        for r in (svc.client.get(f"/v1/ops/reviews/{cid}", headers=svc.gate),
                  _decide(svc, cid, 2, None)):
            assert r.status_code == 409 and r.json()["error"] == "ambiguous_case", r.text
            assert "day1" in r.json()["detail"] and "day2" in r.json()["detail"]
        assert _decide(svc, cid, 3, "day1", "three, as the engine said").status_code == 201
        r = _decide(svc, cid, 2, "day2", "two on the video")
        assert r.status_code == 201, r.text
        assert r.json()["stream"] == "day2"
        assert _decide(svc, cid, 1, "day2").json()["error"] == "already_decided"
        assert svc.client.get(f"/v1/ops/reviews/{cid}?stream=nowhere",
                              headers=svc.gate).status_code == 404
        for stream, q in (("day1", 3), ("day2", 2)):
            case = svc.client.get(f"/v1/ops/reviews/{cid}?stream={stream}",
                                  headers=svc.gate).json()
            assert case["stream"] == stream and case["case_id"] == cid
            assert case["verdict"]["shares"] == {SESSION: [[PRODUCT, q]]}
        # each stream's engine applies its own verdict, at a restart, and again at the next
        price = Decimal(_line(svc, CREDENTIAL)[1]["unit_price"])
        for _ in range(2):
            _run(svc, engine, days[0], "day1")
            _run(svc, engine, days[1], "day2")
            rec1, line1 = _line(svc, CREDENTIAL)
            rec2, line2 = _line(svc, OTHER + CREDENTIAL)
            assert (line1["quantity"], rec1["needs_review"]) == (3, False)
            assert (line2["quantity"], rec2["needs_review"]) == (2, False)
            assert _refunds(svc, CREDENTIAL) == []
            assert _refunds(svc, OTHER + CREDENTIAL) == [str(price.normalize())]
        states = {c["stream"]: c["state"] for c in
                  svc.client.get("/v1/ops/reviews", headers=svc.gate).json()}
        assert states == {"day1": "applied", "day2": "applied"}


def test_a_verdict_is_applied_only_by_its_own_streams_engine(
        days: tuple[Sensors, Sensors], engine: Engine) -> None:
    """Day two's case is decided; day one's engine restarts first and must leave its own case
    open (its shopper's receipt stays under review), however the same id reads. The receipt
    and the dispute views of each line show its own stream's review."""
    svc = make_svc(engine)
    with svc.client:
        cid = _serve_both(svc, engine, days)
        assert _decide(svc, cid, 2, "day2", "two on the video").status_code == 201
        _run(svc, engine, days[0], "day1")
        rec1, line1 = _line(svc, CREDENTIAL)
        assert (line1["quantity"], rec1["needs_review"]) == (3, True)
        assert _visit(svc, CREDENTIAL).state == "in_review"
        _run(svc, engine, days[1], "day2")
        rec2, line2 = _line(svc, OTHER + CREDENTIAL)
        assert (line2["quantity"], rec2["needs_review"]) == (2, False)
        rec1, line1 = _line(svc, CREDENTIAL)  # day two's run did not touch day one's either
        assert (line1["quantity"], rec1["needs_review"]) == (3, True)
        with svc.deps.sessions() as s:
            got = {(v.source, v.case_id): v.applied_at is not None
                   for v in s.scalars(select(ReviewVerdict))}
        assert got == {("day2", cid): True}

        (ev1,) = line1["evidence"]
        (ev2,) = line2["evidence"]
        assert ev1["event_id"] == ev2["event_id"] == cid
        assert (ev1["review"]["state"], ev1["review"]["verdict"]) == ("open", None)
        assert ev2["review"]["state"] == "applied"
        assert ev2["review"]["verdict"]["note"] == "two on the video"
        # a dispute of day one's line is judged on day one's log and case only
        r = svc.client.post(f"/v1/ops/receipts/{rec1['receipt_id']}/refund", headers=svc.gate,
                            json={"product_id": PRODUCT, "quantity": 1, "note": "goodwill"})
        assert r.status_code in (200, 201), r.text
        (dispute,) = svc.client.get("/v1/disputes", headers=svc.gate).json()
        case = svc.client.get(f"/v1/disputes/{dispute['dispute_id']}", headers=svc.gate).json()
        (ev,) = case["evidence"]
        assert ev["review"]["state"] == "open" and ev["review"]["verdict"] is None
        assert ev["log"] and {x["source"].split("/")[0] for x in ev["log"]} == {"day1"}


def _admit(svc: Svc, who: dict[str, str], cred: str) -> None:
    r = svc.client.post("/v1/gates/entry/scan", headers=svc.gate,
                        json={"code": svc.code(who), "credential": cred})
    assert r.status_code == 201, r.text


def test_export_and_erasure_see_only_her_own_streams_case(
        days: tuple[Sensors, Sensors], engine: Engine) -> None:
    """Ann is the case's shopper of day one, Bob of day two (both s00004). Bob's verdict is
    not Ann's: her export does not say it charged her, and her erasure still waits for her
    own case; once hers is applied, her erasure blanks her case's note, not Bob's."""
    svc = make_svc(engine)
    with svc.client:
        ann = svc.shopper(card="tok_ann", email="ann@example.org")
        bob = svc.shopper(card="tok_bob", email="bob@example.org")
        _admit(svc, ann, CREDENTIAL)
        _admit(svc, bob, OTHER + CREDENTIAL)
        cid = _serve_both(svc, engine, days)
        assert _decide(svc, cid, 2, "day2", "Bob, blue jacket").status_code == 201
        _run(svc, engine, days[1], "day2")

        def case_of(who: dict[str, str]) -> dict[str, Any]:
            [visit] = svc.client.get("/v1/me/export", headers=who).json()["visits"]
            (case,) = visit["review_cases"]
            assert case["case_id"] == cid
            return dict(case)

        assert case_of(ann)["verdict"] is None
        assert case_of(bob)["verdict"]["charged"] == [[PRODUCT, 2]]
        r = svc.client.delete("/v1/me", headers=ann)
        assert r.status_code == 409 and r.json()["error"] == "review_in_progress", r.text

        assert _decide(svc, cid, 3, "day1", "Ann, red coat").status_code == 201
        _run(svc, engine, days[0], "day1")
        assert case_of(ann)["verdict"]["charged"] == [[PRODUCT, 3]]
        r = svc.client.delete("/v1/me", headers=ann)
        assert r.status_code == 200, r.text
        assert r.json()["review_notes"] == 1
        with svc.deps.sessions() as s:
            notes = {v.source: v.note for v in s.scalars(select(ReviewVerdict))}
        assert notes == {"day1": None, "day2": "Bob, blue jacket"}


def _logged(svc: Svc, stream: str, seq: int, ref: str, at: Any, **decision: Any) -> None:
    """A review case of ``stream`` and its decision as the runner logs them."""
    case = {"case_id": ref, "reasons": ["r"], "sessions": ["s00001"], "decided": {},
            "hypotheses": [], "hands": [], "credentials": {},
            "event": {"kind": "pick", "plates": ["P"], "delta_g": -1.0, "t_start": 1.0,
                      "t_end": 1.0}}
    with svc.deps.sessions.begin() as s:
        s.add_all([
            EngineEvent(source=f"{stream}/evidence", seq=seq, kind="case_evidence", t=1.0,
                        ref=ref, payload=json.dumps(case), recorded_at=at),
            EngineEvent(source=f"{stream}/shelf", seq=seq, kind="pick", t=1.0, ref=ref,
                        recorded_at=at, payload=json.dumps(
                            {"event_id": ref, "plates": ["P"], "delta_g": -1.0})),
            EngineEvent(source=f"{stream}/decisions", seq=seq, kind="decision", t=1.0,
                        ref=ref, recorded_at=at, payload=json.dumps(
                            {"event_id": ref, "session_id": "s00001", "confidence": 0.5,
                             "scores": [], "needs_review": True, "stock": False,
                             "reasons": [], "takers": [], **decision}))])


def test_analytics_count_each_streams_decision_as_its_own_verdict_says(svc: Svc) -> None:
    """Day one's case was decided (two taken, not one), day two's of the same id not: the
    picks are day one's two and day two's one as the engine decided it."""
    _logged(svc, "day1", 0, "P-1.000", svc.clock.now(), items=[[PRODUCT, 1]])
    _logged(svc, "day2", 0, "P-1.000", svc.clock.now(), items=[[PRODUCT, 1]])
    r = svc.client.post("/v1/ops/reviews/P-1.000/decision?stream=day1", headers=svc.gate,
                        json={"shares": {"s00001": [[PRODUCT, 2]]}})
    assert r.status_code == 201, r.text
    products = svc.client.get("/v1/ops/analytics", headers=svc.gate).json()["products"]
    assert [(p["product_id"], p["picks"]) for p in products] == [(PRODUCT, 3)]


def test_a_verdicts_note_goes_with_its_own_streams_case(engine: Engine) -> None:
    """The retention purge removed day one's case from the event log; day two's case of the
    same id is still there: the note of day one's verdict goes, that of day two's stays."""
    from datetime import timedelta

    from walkout.service import retention

    svc = make_svc(engine, retention_check_s=0)  # the purge below is the only one
    now = svc.clock.now()
    _logged(svc, "day1", 0, "P-1.000", now - timedelta(days=40), items=[])
    _logged(svc, "day2", 0, "P-1.000", now, items=[])
    for stream in ("day1", "day2"):
        r = svc.client.post(f"/v1/ops/reviews/P-1.000/decision?stream={stream}",
                            headers=svc.gate, json={"shares": {}, "note": f"{stream}'s"})
        assert r.status_code == 201, r.text
    with svc.deps.sessions.begin() as s:
        assert retention.purge(s, now, days=30)["review_notes"] == 1
    with svc.deps.sessions() as s:
        notes = {v.source: v.note for v in s.scalars(select(ReviewVerdict))}
    assert notes == {"day1": None, "day2": "day2's"}


def test_stock_moves_show_each_streams_inventory_case_as_its_own_verdict_says(
        svc: Svc) -> None:
    """An inventory case of day one is decided, day two's of the same id is not."""
    for stream in ("day1", "day2"):
        _logged(svc, stream, 0, "P-1.000", svc.clock.now(), items=[[PRODUCT, 1]], stock=True)
    r = svc.client.post("/v1/ops/reviews/P-1.000/decision?stream=day1", headers=svc.gate,
                        json={"shares": {"s00001": [[PRODUCT, 2]]}})
    assert r.status_code == 201, r.text
    moves = svc.client.get("/v1/ops/stock-moves", headers=svc.gate).json()
    assert sorted((m["review"], [(x["product_id"], x["quantity"]) for x in m["moves"]])
                  for m in moves) == [("decided", [(PRODUCT, -2)]), ("open", [(PRODUCT, -1)])]
