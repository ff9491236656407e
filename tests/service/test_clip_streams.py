"""Evidence clips belong to a case of one stream. A case id (``<plate>-<stream time>``) repeats
when recordings or simulations, whose clocks start at 0, are served into one database (here:
one scene served as ``day1`` and as ``day2`` with other shoppers), so `walkout evidence
--stream` names the clips by stream and case: the review page of a case lists its own stream's
clips, a shopper's erasure deletes her case's clips and not the other stream's of the same id,
and retention keeps the clips a dispute rests on in its own stream only. Clips named by case
id alone (earlier versions) are read as those of the only stream with the case. Real service,
real clips cut from a video, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from walkout.cli import app
from walkout.service.models import EngineEvent, Visit
from walkout.service.testing import ADMIN_TOKEN, Svc, make_svc
from walkout.sources.recording import Sensors

from .test_review_streams import (
    CREDENTIAL,
    OTHER,
    PRODUCT,
    _admit,
    _decide,
    _logged,
    _run,
    _serve_both,
)
from .test_review_streams import days as days  # the fixture: one scene, two streams

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two minutes of one camera at 2 fps (the simulated scene lasts 114 s)."""
    path = tmp_path_factory.mktemp("video") / "cam1.mp4"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 2.0, (64, 48))
    for i in range(240):
        vw.write(np.full((48, 64, 3), i % 200, np.uint8))
    vw.release()
    return path


def _cut(video: Path, clips: Path, tmp: Path, stream: str | None,
         cases: list[tuple[str, float]]) -> list[str]:
    """`walkout evidence` on the replay of ``stream``'s cases: the clips' file names."""
    replay = tmp / f"replay-{stream}.json"
    replay.write_text(json.dumps({"receipts": [], "alerts": [], "review_cases": [
        {"case_id": cid, "t": t} for cid, t in cases]}))
    r = CliRunner().invoke(app, ["evidence", "--video", str(video), "--camera", "1",
                                 "--cases", str(replay), "--out", str(clips), "--pre", "1",
                                 "--post", "1", *(["--stream", stream] if stream else [])])
    assert r.exit_code == 0, r.output
    out = json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith("{")))
    assert out["not_in_video"] == []
    return [Path(p).name for p in out["clips"]]


def _case(svc: Svc, cid: str, stream: str) -> dict[str, Any]:
    r = svc.client.get(f"/v1/ops/reviews/{cid}?stream={stream}", headers=svc.gate)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_review_and_erasure_see_only_their_own_streams_clips(
        days: tuple[Sensors, Sensors], engine: Engine, video: Path, tmp_path: Path) -> None:
    """Ann is day one's shopper of the case, Bob day two's: each case lists its own stream's
    clip, and Ann's erasure deletes hers, not Bob's of the same case id and camera."""
    clips = tmp_path / "clips"
    svc = make_svc(engine, evidence_dir=clips)
    with svc.client:
        ann = svc.shopper(card="tok_ann", email="ann@example.org")
        bob = svc.shopper(card="tok_bob", email="bob@example.org")
        _admit(svc, ann, CREDENTIAL)
        _admit(svc, bob, OTHER + CREDENTIAL)
        cid = _serve_both(svc, engine, days)
        assert _decide(svc, cid, 3, "day1").status_code == 201
        assert _decide(svc, cid, 2, "day2").status_code == 201
        _run(svc, engine, days[0], "day1")
        _run(svc, engine, days[1], "day2")
        t = float(_case(svc, cid, "day1")["event"]["t_end"])
        [ann_clip] = _cut(video, clips, tmp_path, "day1", [(cid, t)])
        [bob_clip] = _cut(video, clips, tmp_path, "day2", [(cid, t)])
        assert ann_clip != bob_clip  # one camera, one case id: two streams, two clips
        assert sorted(p.name for p in clips.iterdir()) == sorted([ann_clip, bob_clip])
        assert _case(svc, cid, "day1")["clips"] == [{"name": ann_clip, "camera": "1"}]
        assert _case(svc, cid, "day2")["clips"] == [{"name": bob_clip, "camera": "1"}]
        for name in (ann_clip, bob_clip):  # the player fetches them by these names
            r = svc.client.get(f"/v1/ops/clips/{name}", headers=svc.gate)
            assert r.status_code == 200 and r.headers["content-type"] == "video/webm"
            assert r.content == (clips / name).read_bytes()

        r = svc.client.delete("/v1/me", headers=ann)
        assert r.status_code == 200, r.text
        assert r.json()["evidence_clips"] == 1
        assert [p.name for p in clips.iterdir()] == [bob_clip]
        assert _case(svc, cid, "day1")["clips"] == []
        assert _case(svc, cid, "day2")["clips"] == [{"name": bob_clip, "camera": "1"}]


def test_clips_named_by_case_id_alone_are_the_only_streams_with_the_case(
        engine: Engine, video: Path, tmp_path: Path) -> None:
    """Clips cut without a stream (as earlier versions named every clip): a case only day one
    has shows them; a case both streams have shows neither stream a clip that may be the
    other's, and each still shows its own stream's."""
    clips = tmp_path / "clips"
    svc = make_svc(engine, evidence_dir=clips)
    with svc.client:
        now = svc.clock.now()
        _logged(svc, "day1", 0, "P-1.000", now, items=[])
        _logged(svc, "day2", 0, "P-1.000", now, items=[])
        _logged(svc, "day1", 1, "Q-2.000", now, items=[])
        old = _cut(video, clips, tmp_path, None, [("P-1.000", 1.0), ("Q-2.000", 2.0)])
        assert old == ["P-1.000-cam1.webm", "Q-2.000-cam1.webm"]
        [day2] = _cut(video, clips, tmp_path, "day2", [("P-1.000", 1.0)])
        assert _case(svc, "Q-2.000", "day1")["clips"] == [{"name": "Q-2.000-cam1.webm",
                                                           "camera": "1"}]
        assert _case(svc, "P-1.000", "day1")["clips"] == []
        assert _case(svc, "P-1.000", "day2")["clips"] == [{"name": day2, "camera": "1"}]


def test_retention_keeps_a_disputed_lines_clips_of_its_own_stream_only(
        engine: Engine, tmp_path: Path) -> None:
    """Ann disputes a line decided on shelf event ``ev``, logged by stream s1 whose gate
    admitted her; stream s2 has an event of the same id. Past retention the purge keeps s1's
    clip of it and one named by the id alone (whose it is is not known), and deletes s2's;
    once the dispute is decided, the next purge takes the rest."""
    clips = tmp_path / "clips"
    clips.mkdir()
    svc = make_svc(engine, evidence_dir=clips, retention_check_s=0)
    with svc.client:
        h = svc.shopper()
        visit = svc.enter(h)
        out = svc.leave(visit, {PRODUCT: 1})
        ev = f"ev-{visit[:8]}-{PRODUCT}"
        when = svc.clock.now() - timedelta(days=29)
        with svc.deps.sessions.begin() as s:
            cred = s.scalar(select(Visit.credential).where(Visit.id == visit))
            s.add_all([EngineEvent(source="s1/gates", seq=0, kind="entry", t=0.0, ref=None,
                                   payload=json.dumps({"credential": cred}), recorded_at=when),
                       *(EngineEvent(source=f"{st}/decisions", seq=0, kind="decision", t=1.0,
                                     ref=ev, payload=json.dumps({"event_id": ev}),
                                     recorded_at=when) for st in ("s1", "s2"))])
        # as `walkout evidence --camera 0 [--stream s1|s2]` names them (base32 of the stream)
        names = {"s1": f"omyq.{ev}-cam0.webm", "s2": f"omza.{ev}-cam0.webm",
                 "old": f"{ev}-cam0.webm"}
        for name in names.values():
            (clips / name).write_bytes(b"\0")
            os.utime(clips / name, (when.timestamp(), when.timestamp()))
        r = svc.client.post("/v1/disputes", headers=h, json={
            "receipt_id": out["receipt_id"], "product_id": PRODUCT, "reason": "not mine"})
        assert r.status_code == 201, r.text
        dispute = r.json()["dispute_id"]
        svc.clock.advance(2 * 86400)  # 31 days old now, the dispute still open
        r = svc.client.post("/v1/admin/retention/purge", json={}, headers=ADMIN)
        assert r.json()["deleted"]["evidence_clips"] == 1, r.text
        assert sorted(p.name for p in clips.iterdir()) == sorted([names["s1"], names["old"]])
        r = svc.client.post(f"/v1/disputes/{dispute}/decision", json={"decision": "reject"},
                            headers=svc.gate)
        assert r.status_code == 200, r.text
        r = svc.client.post("/v1/admin/retention/purge", json={}, headers=ADMIN)
        assert r.json()["deleted"]["evidence_clips"] == 2 and list(clips.iterdir()) == []
