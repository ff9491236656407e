"""A shopper's export and erasure read and change only her own engine sessions, though the
engine numbers its sessions afresh in every stream (``s00001`` again after each start of a
recording's runner, each MQTT stream or rollover): a session is known by its stream (the
event-log source without its last part) and its id together. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from walkout.engine import EngineConfig
from walkout.service.models import EngineEvent, ReviewVerdict
from walkout.service.runner import LiveRunner
from walkout.service.testing import Svc, make_svc
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store

HOLD = EngineConfig(review_hold_s=600.0)
#: day two's one review case is about the shopper who scans this (session s00004, as in
#: test_review_workflow), picking 3 × PRODUCT that another product weighs the same as
CASE_CREDENTIAL, CASE_SESSION, PRODUCT = "qr-0020-00003", "s00004", "812186020426"


@pytest.fixture(scope="module")
def days() -> tuple[Sensors, Sensors]:
    store = load_store("small")
    return (Sensors.from_session(simulate(store, 6, 1)),
            Sensors.from_session(simulate(store, 6, 20)))


def _people(svc: Svc, stream: str) -> list[dict]:  # type: ignore[type-arg]
    with svc.deps.sessions() as s:
        return [p for e in s.scalars(select(EngineEvent).where(
            EngineEvent.kind == "positions", EngineEvent.source == f"{stream}/live"))
            for p in json.loads(e.payload)["people"]]


def _pts(svc: Svc, stream: str, cred: str) -> list[list[float]]:
    return sorted(pt for p in _people(svc, stream) if p["credential"] == cred for pt in p["pts"])


def _admit(svc: Svc, who: dict[str, str], cred: str) -> None:
    r = svc.client.post("/v1/gates/entry/scan", headers=svc.gate,
                        json={"code": svc.code(who), "credential": cred})
    assert r.status_code == 201, r.text


def test_the_same_session_id_in_another_stream_is_somebody_else(
        days: tuple[Sensors, Sensors], engine: Engine) -> None:
    """Ann is s00001 of day one's stream, Bob s00001 of day two's: Ann's export holds none of
    Bob's movements, and her erasure leaves his map rows and his own export as they were."""
    day1, day2 = days
    ann_cred, bob_cred = day1.gates[0].credential, day2.gates[0].credential
    svc = make_svc(engine)
    with svc.client:
        ann = svc.shopper(card="tok_ann", email="ann@example.org")
        bob = svc.shopper(card="tok_bob", email="bob@example.org")
        _admit(svc, ann, ann_cred)
        LiveRunner(day1, "day1").run(svc.deps)
        _admit(svc, bob, bob_cred)
        LiveRunner(day2, "day2").run(svc.deps)
        ann_sid = {p["session"] for p in _people(svc, "day1") if p["credential"] == ann_cred}
        bob_sid = {p["session"] for p in _people(svc, "day2") if p["credential"] == bob_cred}
        assert ann_sid == bob_sid  # the collision this is about
        ann_pts, bob_pts = _pts(svc, "day1", ann_cred), _pts(svc, "day2", bob_cred)
        assert ann_pts and bob_pts

        [visit] = svc.client.get("/v1/me/export", headers=ann).json()["visits"]
        assert visit["movements"] == ann_pts  # hers, all of them, and nobody else's
        bob_before = svc.client.get("/v1/me/export", headers=bob).json()["visits"][0]
        assert bob_before["movements"] == bob_pts
        assert {d["event_id"] for d in visit["decisions"]}.isdisjoint(
            {d["event_id"] for d in bob_before["decisions"]})

        r = svc.client.delete("/v1/me", headers=ann)
        assert r.status_code == 200, r.text
        assert _pts(svc, "day1", ann_cred) == []
        assert not [p for p in _people(svc, "day1") if p["session"] in ann_sid]
        assert _pts(svc, "day2", bob_cred) == bob_pts  # Bob's map rows untouched
        assert [p for p in _people(svc, "day2") if p["session"] in bob_sid]
        bob_after = svc.client.get("/v1/me/export", headers=bob).json()["visits"][0]
        assert bob_after["movements"] == bob_pts
        assert bob_after["decisions"] == bob_before["decisions"]


def test_erasure_leaves_another_streams_review_case_alone(
        days: tuple[Sensors, Sensors], engine: Engine, tmp_path: Path) -> None:
    """Ann is s00004 of day one, Bob s00004 of day two, where his pick opened a review case:
    Ann's erasure leaves Bob's case as it was (his skeletons, the link to his visit, the
    operator's note on the verdict, the case's clip), and her export does not list it."""
    day1, day2 = days
    clips = tmp_path / "clips"
    clips.mkdir()
    svc = make_svc(engine, evidence_dir=clips)
    with svc.client:
        ann = svc.shopper(card="tok_ann", email="ann@example.org")
        bob = svc.shopper(card="tok_bob", email="bob@example.org")
        ann_cred = [g.credential for g in day1.gates if g.kind == "entry"][3]
        _admit(svc, ann, ann_cred)
        LiveRunner(day1, "day1", config=HOLD).run(svc.deps)
        assert {p["session"] for p in _people(svc, "day1")
                if p["credential"] == ann_cred} == {CASE_SESSION}
        _admit(svc, bob, CASE_CREDENTIAL)
        LiveRunner(day2, "day2", config=HOLD).run(svc.deps)
        [case] = svc.client.get("/v1/ops/reviews", headers=svc.gate).json()
        assert case["sessions"] == [CASE_SESSION]
        cid = case["case_id"]
        r = svc.client.post(f"/v1/ops/reviews/{cid}/decision", headers=svc.gate,
                            json={"shares": {CASE_SESSION: [[PRODUCT, 2]]},
                                  "note": "Bob, blue jacket: two on the video"})
        assert r.status_code == 201, r.text
        LiveRunner(day2, "day2", config=HOLD).run(svc.deps)  # the verdict is applied
        (clips / f"{cid}-cam1.webm").write_bytes(b"\0")
        before = svc.client.get(f"/v1/ops/reviews/{cid}", headers=svc.gate).json()
        assert before["skeletons"][CASE_SESSION] and before["people"][CASE_SESSION]["visit_id"]

        [visit] = svc.client.get("/v1/me/export", headers=ann).json()["visits"]
        r = svc.client.delete("/v1/me", headers=ann)
        assert r.status_code == 200, r.text
        after = svc.client.get(f"/v1/ops/reviews/{cid}", headers=svc.gate).json()
        assert after["skeletons"] == before["skeletons"]
        assert after["people"] == before["people"]
        assert after["clips"] == before["clips"] == [{"name": f"{cid}-cam1.webm",
                                                     "camera": "1"}]
        with svc.deps.sessions() as s:
            v = s.get(ReviewVerdict, ("day2", cid))
            assert v is not None and v.note == "Bob, blue jacket: two on the video"
        assert r.json()["review_notes"] == 0 and r.json()["evidence_clips"] == 0
        # her export did not list his case; his does
        assert visit["review_cases"] == []
        [bobs] = svc.client.get("/v1/me/export", headers=bob).json()["visits"]
        assert [c["case_id"] for c in bobs["review_cases"]] == [cid]
