"""Bad sensor input reaches the operator's health page, not only a log: what loading a
recording put right is in every health snapshot the live engine writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, select

from walkout.service.models import EngineEvent
from walkout.service.runner import LiveRunner
from walkout.service.testing import make_svc
from walkout.sim.session import simulate
from walkout.sources.recording import load_sensors, write_recording
from walkout.store import load_store


def _last_health(engine: Engine) -> dict:
    with make_svc(engine).deps.sessions() as s:
        row = s.scalar(select(EngineEvent).where(EngineEvent.source.like("%/health"))
                       .order_by(EngineEvent.id.desc()).limit(1))
    assert row is not None
    return json.loads(row.payload)


def test_a_recordings_repairs_show_in_the_health_snapshot(engine: Engine,
                                                          tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    write_recording(simulate(load_store("small"), 2, 3), rec)
    z = dict(np.load(rec / "plates.npz"))
    i = len(z["t"]) // 2
    z["t"] = np.insert(z["t"], i, z["t"][i])  # one plate sample sent twice
    z["grams"] = np.insert(z["grams"], i, z["grams"][i], axis=0)
    np.savez(rec / "plates.npz", **z)
    LiveRunner(load_sensors(rec), "rec").run(make_svc(engine).deps)
    notes = _last_health(engine)["inputs"]["notes"]
    assert notes == [f"{rec / 'plates.npz'}: 1 repeated plate samples dropped"]


def test_a_clean_source_reports_no_input_problem(engine: Engine, tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    write_recording(simulate(load_store("small"), 2, 3), rec)
    shutil.rmtree(rec / "truth")  # the engine never reads it; the recording still loads
    LiveRunner(load_sensors(rec), "rec").run(make_svc(engine).deps)
    assert _last_health(engine)["inputs"] == {"notes": []}
