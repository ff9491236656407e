"""``walkout bench memory``: the bounded engine holds less as the period goes on, and hands out
the same as the one keeping everything."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from walkout.cli import app


def test_bench_memory_json(tmp_path: Path) -> None:
    out = tmp_path / "mem.json"
    r = CliRunner().invoke(app, ["bench", "memory", "--shoppers", "6", "--every", "30",
                                 "--keep", "5", "--forget", "5", "--json", str(out)])
    assert r.exit_code == 0, r.output
    figures = json.loads(out.read_text())
    assert figures["same_outputs"] is True
    full, kept = figures["keep_all"]["samples"], figures["keep_5s"]["samples"]
    assert [s["t"] for s in full] == [s["t"] for s in kept] and len(full) >= 3
    assert kept[-1]["skeleton_samples"] * 2 < full[-1]["skeleton_samples"]
    assert kept[-1]["engine_mb"] < full[-1]["engine_mb"]
    # visits let go as well: fewer sessions and tracks held, nothing handed out differently
    let_go = figures["keep_5s_forget_visits_5s"]["samples"]
    assert let_go[-1]["sessions_held"] < kept[-1]["sessions_held"]
    assert let_go[-1]["tracks_held"] < kept[-1]["tracks_held"]
