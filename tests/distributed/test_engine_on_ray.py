"""The engine on a real local Ray cluster gives what the single process gives, bit for bit."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from walkout.cli import _receipts_json, app
from walkout.distributed import DistributedEngine, RayError, connect
from walkout.engine import Engine, EngineResult
from walkout.sim.session import SimSession, simulate
from walkout.sources.recording import Sensors, write_recording
from walkout.store import load_store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session() -> SimSession:
    # a put-back to a wrong plate and an unlisted product: inventory feedback across chunks
    # and shelf alerts, both of which cross the zone boundary
    return simulate(load_store("small"), 3, 5, scenarios=("wrong-planogram-entry",))


@pytest.fixture(scope="module")
def single(session: SimSession) -> EngineResult:
    return Engine(session.store).run(Sensors.from_session(session))


@pytest.fixture(scope="module")
def distributed(session: SimSession, ray_address: str) -> tuple[EngineResult, DistributedEngine]:
    eng = DistributedEngine(session.store, ray_address=ray_address, shelf_zones=3, floor_areas=2)
    return eng.run(Sensors.from_session(session)), eng


def _text(result: EngineResult) -> str:
    return json.dumps(_receipts_json(result), indent=1) + "\n"


def test_receipts_and_alerts_are_byte_identical(
    single: EngineResult, distributed: tuple[EngineResult, DistributedEngine]
) -> None:
    got, _ = distributed
    assert single.receipts, "the period must charge somebody, or the comparison proves nothing"
    assert any(a.kind == "planogram_mismatch" for a in single.alerts)
    assert _text(got) == _text(single)


def test_every_stage_output_is_identical(
    single: EngineResult, distributed: tuple[EngineResult, DistributedEngine]
) -> None:
    got, _ = distributed
    assert [(e.event_id, e.delta_g, e.hypotheses) for e in got.events] == [
        (e.event_id, e.delta_g, e.hypotheses) for e in single.events]
    assert len(got.tracks) == len(single.tracks) > 0
    for a, b in zip(got.tracks, single.tracks, strict=True):
        assert (a.track_id, a.born_at, a.ended_at) == (b.track_id, b.born_at, b.ended_at)
        assert np.array_equal(a.t, b.t)
        assert np.array_equal(a.joints, b.joints, equal_nan=True)
        assert np.array_equal(a.sigma, b.sigma, equal_nan=True)
    assert [(d.attribution.event.event_id, d.items, d.takers, d.needs_review)
            for d in got.decisions] == [(d.attribution.event.event_id, d.items, d.takers,
                                         d.needs_review) for d in single.decisions]
    assert got.entries == single.entries


def test_every_partition_did_its_share(
    distributed: tuple[EngineResult, DistributedEngine],
) -> None:
    _, eng = distributed
    costs = eng.costs()
    assert len(costs["shelf_zones"]) == 3 and len(costs["floor_areas"]) == 2
    assert all(z["busy_s"] > 0 for z in costs["shelf_zones"])
    assert all(a["associate_busy_s"] > 0 and a["triangulate_busy_s"] > 0
               for a in costs["floor_areas"])
    assert costs["associate_round_trips"] > 100 and costs["triangulate_round_trips"] > 0


def test_replay_with_ray_writes_the_same_receipts(
    session: SimSession, single: EngineResult, ray_address: str, tmp_path: Path
) -> None:
    rec = tmp_path / "rec"
    write_recording(session, rec)
    out = tmp_path / "receipts.json"
    res = CliRunner().invoke(app, ["replay", str(rec), "--out", str(out), "--ray", ray_address])
    assert res.exit_code == 0, res.output
    assert out.read_text() == _text(single)


@pytest.mark.parametrize("address", ["", "  "])
def test_an_empty_address_is_refused_by_name(address: str) -> None:
    with pytest.raises(RayError, match="empty Ray address"):
        connect(address)


def test_bench_ray_prints_runs_of_both_engines(ray_address: str, tmp_path: Path) -> None:
    out = tmp_path / "ray.json"
    res = CliRunner().invoke(app, ["bench", "ray", "--ray", ray_address, "--shoppers", "1",
                                   "--zones", "2", "--areas", "2", "--json", str(out)])
    assert res.exit_code == 0, res.output
    figures = json.loads(out.read_text())
    single, dist = figures["runs"]
    assert (single["engine"], dist["engine"]) == ("single", "ray")
    for run in (single, dist):
        assert {"area_m2", "shoppers", "cameras", "plates", "real_time_factor", "events",
                "seconds"} <= set(run)
        assert run["events"] > 0 and run["real_time_factor"] > 0
    assert dist["identical_receipts"] is True
    over = dist["overhead"]
    assert over["round_trips"] > 0 and over["partition_work_cpu_s"] > 0
    assert over["driver_cpu_s"] > 0 and over["actors_cpu_s"] > 0
    assert len(dist["costs"]["shelf_zones"]) == 2


def test_bench_ray_refuses_a_bad_partition_count(ray_address: str) -> None:
    res = CliRunner().invoke(app, ["bench", "ray", "--ray", ray_address, "--zones", "0"])
    assert res.exit_code == 2
    assert "--zones must be at least 1" in res.output


def _closed_port() -> int:
    with socket.socket() as s:  # a port just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_address_where_no_head_listens_is_refused_in_seconds(
        session: SimSession, tmp_path: Path) -> None:
    """`replay --ray` to a closed port hung in Ray's retry loop for minutes."""
    pytest.importorskip("ray")
    rec = tmp_path / "rec"
    write_recording(session, rec)
    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "walkout.cli", "replay", str(rec), "--out",
                          str(tmp_path / "r.json"), "--ray", address],
                         capture_output=True, text=True, timeout=120, check=False)
    assert time.monotonic() - t0 < 60, res.stderr
    assert res.returncode == 2, res.stderr
    assert f"error: --ray: cannot join the Ray cluster at '{address}': nothing answers" \
        in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("address", ["garbage", "127.0.0.1:http", "ray://:99999"])
def test_an_address_that_is_not_host_port_is_refused_by_name(address: str) -> None:
    with pytest.raises(RayError, match="is not host:port of the cluster's head"):
        connect(address)
