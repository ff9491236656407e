"""The dashboard's analytics (``GET /v1/ops/analytics``) against what happened in the store:
the live engine on a simulated period, the real service on SQLite."""

from __future__ import annotations

import json
import threading
import time

from walkout.service.runner import LiveRunner
from walkout.service.testing import Svc
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store


def _wait(what: str, check: object, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_reviewed_pick_counts_as_the_verdict_says(svc: Svc) -> None:
    """A product stocked where the planogram does not list it is taken: the engine charges
    nothing and asks (its decision names no product); the operator's verdict names it. The
    products chart counts that pick, of that product, as the receipt does."""
    session = simulate(load_store("small"), 0, 1, scenarios=["wrong-planogram-entry"])
    (true_pick,) = session.truth.events
    runner = LiveRunner(Sensors.from_session(session), "sim")
    stop = threading.Event()
    worker = threading.Thread(target=runner.run, args=(svc.deps, stop), daemon=True)
    worker.start()
    try:
        _wait("the review case", lambda: svc.client.get("/v1/ops/reviews", headers=svc.gate).json())
        (case,) = svc.client.get("/v1/ops/reviews", headers=svc.gate).json()
        assert case["decided"] == {}
        (sid,) = case["sessions"]
        r = svc.client.post(
            f"/v1/ops/reviews/{case['case_id']}/decision",
            headers=svc.gate,
            json={"shares": {sid: [[true_pick.product_id, 1]]}},
        )
        assert r.status_code == 201, r.text
        _wait(
            "the verdict applied",
            lambda: (
                svc.client.get("/v1/ops/reviews", headers=svc.gate).json()[0]["state"] == "applied"
            ),
        )
    finally:
        stop.set()
        worker.join(30)
    products = svc.client.get("/v1/ops/analytics", headers=svc.gate).json()["products"]
    assert [(p["product_id"], p["picks"], p["putbacks"]) for p in products] == [
        (true_pick.product_id, 1, 0)
    ]


def test_standing_still_across_chunks_is_all_dwell(svc: Svc) -> None:
    """The engine worker writes positions one 5 s chunk per row; somebody who stands still
    for 10 s dwells for every sample but the very first (whose speed is unknown), not for
    all but the first of each row."""
    from walkout.service.models import EngineEvent

    def row(seq: int, t0: float, t1: float) -> EngineEvent:
        pts = [[t0 + 0.5 * (k + 1), 2.2, 2.2] for k in range(10)]
        person = {
            "track": 1,
            "session": "s00001",
            "credential": None,
            "cart": 0,
            "left": False,
            "alert": False,
            "pts": pts,
        }
        return EngineEvent(
            source="sim/live",
            seq=seq,
            kind="positions",
            t=t1,
            payload=json.dumps({"t0": t0, "t1": t1, "people": [person]}),
            recorded_at=svc.clock.now(),
            ref=None,
        )

    with svc.deps.sessions.begin() as s:
        s.add_all([row(0, 0.0, 5.0), row(1, 5.0, 10.0)])
    grid = svc.client.get("/v1/ops/analytics", headers=svc.gate).json()["grid"]
    assert sum(map(sum, grid["walk"])) == 1
    assert sum(map(sum, grid["dwell"])) == 19
