"""`walkout evidence --stream` names a case's clips by its stream and id: stream names hold ':'
and '/', the clip route serves only plain names, and case ids repeat across streams."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from walkout.cli import app
from walkout.perception.evidence import case_clip_stem, stream_key

from .test_clips import video as video  # the fixture: 6 s of one camera

#: what GET /v1/ops/clips/{name} serves (walkout.web.routes._CLIP_NAME)
SERVED = re.compile(r"^[A-Za-z0-9_.-]{1,160}$")


def _evidence(video: Path, tmp: Path, *extra: str) -> tuple[int, str, list[str]]:
    replay = tmp / "receipts.json"
    replay.write_text(json.dumps({"receipts": [], "alerts": [], "review_cases": [
        {"case_id": "G1-S2-P3-2.000", "t": 2.5}]}))
    out = tmp / "clips"
    r = CliRunner().invoke(app, ["evidence", "--video", str(video), "--camera", "1", "--cases",
                                 str(replay), "--out", str(out), "--pre", "1", "--post", "1",
                                 *extra])
    return r.exit_code, r.output, sorted(p.name for p in out.iterdir()) if out.exists() else []


def test_each_stream_gets_its_own_clip_of_a_case(video: Path, tmp_path: Path) -> None:
    streams = ["recording:aifi/cps-test-01", "recording:aifi/CPS-test-01", "sim:small:6:20"]
    for stream in streams:
        code, output, _ = _evidence(video, tmp_path, "--stream", stream)
        assert code == 0, output
    _, _, names = _evidence(video, tmp_path, "--stream", streams[0])
    expected = sorted(case_clip_stem(s, "G1-S2-P3-2.000", "1") + ".webm" for s in streams)
    assert names == expected and len(set(n.lower() for n in names)) == 3  # any file system
    assert all(SERVED.match(n) for n in names)
    assert case_clip_stem(streams[0], "G1-S2-P3-2.000", "1") == (
        "ojswg33smruw4zz2mfuwm2jpmnyhgllumvzxiljqge.G1-S2-P3-2.000-cam1")
    assert case_clip_stem(None, "G1-S2-P3-2.000", "1") == "G1-S2-P3-2.000-cam1"


def test_a_stream_that_cannot_name_a_served_clip_is_refused(video: Path,
                                                            tmp_path: Path) -> None:
    for bad, said in (("", "--stream is empty"), ("x" * 100, "not a safe file name")):
        code, output, names = _evidence(video, tmp_path, "--stream", bad)
        assert code == 2 and said in output and names == []
    with pytest.raises(ValueError):
        stream_key("")
