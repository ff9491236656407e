"""The review cases about a shopper's visit: her export lists them (the verdict as it concerns
her, not the operator's note) with the engine's decisions behind her receipt lines, and her
erasure takes the operator's note on the verdict and the case's camera clips with her
skeletons. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from walkout.engine import EngineConfig
from walkout.service.models import ReviewVerdict
from walkout.service.runner import LiveRunner
from walkout.service.testing import Svc, make_svc
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store

#: this draw has one review case: s00004 (visit qr-0020-00003) picks 3 × PRODUCT at t ≈ 63 s,
#: and another product weighs the same (as in test_review_workflow)
PRODUCT, CREDENTIAL, SESSION = "812186020426", "qr-0020-00003", "s00004"
HOLD = EngineConfig(review_hold_s=600.0)
NOTE = "Ann Zed (a regular, red coat) took two"


@pytest.fixture(scope="module")
def sensors() -> Sensors:
    return Sensors.from_session(simulate(load_store("small"), 6, 20))


def _decided_case(svc: Svc, sensors: Sensors) -> tuple[dict[str, str], str]:
    """Ann scans in as the case's shopper; the operator decides her case (with :data:`NOTE`)
    and the engine applies the verdict. Returns her token's headers and the case id."""
    ann = svc.shopper(card="tok_ann", email="ann@example.org")
    r = svc.client.post("/v1/gates/entry/scan", headers=svc.gate,
                        json={"code": svc.code(ann), "credential": CREDENTIAL})
    assert r.status_code == 201, r.text
    LiveRunner(sensors, "sim", config=HOLD).run(svc.deps)
    [case] = svc.client.get("/v1/ops/reviews", headers=svc.gate).json()
    assert case["sessions"] == [SESSION]
    r = svc.client.post(f"/v1/ops/reviews/{case['case_id']}/decision", headers=svc.gate,
                        json={"shares": {SESSION: [[PRODUCT, 2]]}, "note": NOTE})
    assert r.status_code == 201, r.text
    LiveRunner(sensors, "sim", config=HOLD).run(svc.deps)
    return ann, str(case["case_id"])


def test_export_lists_her_review_case_and_the_decisions_behind_her_receipt(
        sensors: Sensors, engine: Engine) -> None:
    svc = make_svc(engine)
    with svc.client:
        ann, cid = _decided_case(svc, sensors)
        data = svc.client.get("/v1/me/export", headers=ann).json()
    [visit] = data["visits"]
    [rc] = visit["review_cases"]
    assert rc["case_id"] == cid and rc["engine_charged"] == [[PRODUCT, 3]]
    assert rc["verdict"]["charged"] == [[PRODUCT, 2]]
    assert rc["verdict"]["decided_at"] and rc["verdict"]["applied_at"]
    assert "red coat" not in json.dumps(data)  # the operator's words are not hers
    # every line of her receipts names the shelf events the engine decided it on
    decided = {d["event_id"]: d for d in visit["decisions"]}
    lines = [ln for rec in data["receipts"] for ln in rec["lines"]]
    assert lines and all(ln["events"] and set(ln["events"]) <= set(decided) for ln in lines)
    assert decided[cid]["needs_review"] is True and decided[cid]["items"] == [[PRODUCT, 3]]
    # her own score and reach, not the other candidates'
    assert all(set(d) == {"event_id", "t", "items", "shared", "score", "reach_m",
                          "needs_review", "reasons"} for d in decided.values())


def test_erasure_takes_the_operators_note_and_the_cases_clips(
        sensors: Sensors, engine: Engine, tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    svc = make_svc(engine, evidence_dir=clips)
    with svc.client:
        ann, cid = _decided_case(svc, sensors)
        for name in (f"{cid}-cam1.webm", f"{cid}-cam2.webm", "B2N-S1-P1-10.000-cam1.webm"):
            (clips / name).write_bytes(b"\0")
        r = svc.client.delete("/v1/me", headers=ann)
        assert r.status_code == 200, r.text
        with svc.deps.sessions() as s:
            v = s.get(ReviewVerdict, ("sim", cid))
            assert v is not None and v.note is None  # the verdict itself stays
            assert json.loads(v.shares) == {SESSION: [[PRODUCT, 2]]}
        ev = svc.client.get(f"/v1/ops/reviews/{cid}", headers=svc.gate).json()
        assert ev["verdict"]["note"] is None and ev["verdict"]["applied"] is True
        assert ev["clips"] == [] and ev["skeletons"] == {}
        assert sorted(p.name for p in clips.iterdir()) == ["B2N-S1-P1-10.000-cam1.webm"]
        assert r.json()["review_notes"] == 1 and r.json()["evidence_clips"] == 2


def test_a_case_its_stream_left_open_when_it_ended_does_not_hold_erasure_back(
        sensors: Sensors, engine: Engine) -> None:
    """Erasure waits for an undecided case about her visit (money may still move), but not for
    one whose stream ended with it open: no engine holds it, no verdict will ever be applied
    (a verdict on it is answered 409 stream_ended), so waiting would refuse her for good."""
    from walkout.service.models import EngineEvent

    svc = make_svc(engine)
    with svc.client:
        ann = svc.shopper(card="tok_ann", email="ann@example.org")
        r = svc.client.post("/v1/gates/entry/scan", headers=svc.gate,
                            json={"code": svc.code(ann), "credential": CREDENTIAL})
        assert r.status_code == 201, r.text
        LiveRunner(sensors, "sim", config=HOLD).run(svc.deps)
        [case] = svc.client.get("/v1/ops/reviews", headers=svc.gate).json()
        r = svc.client.delete("/v1/me", headers=ann)
        assert (r.status_code, r.json()["error"]) == (409, "review_in_progress")
        with svc.deps.sessions.begin() as s:
            s.add(EngineEvent(source="sim/stream", seq=0, kind="stream_ended", t=99.0,
                              ref=None, recorded_at=svc.deps.clock.now(),
                              payload=json.dumps({"next": None,
                                                  "open_cases": [case["case_id"]]})))
        r = svc.client.delete("/v1/me", headers=ann)
        assert r.status_code == 200, r.text
