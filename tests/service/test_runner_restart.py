"""The live engine inside the service: a crash mid-stream and a restart lose no cart line,
duplicate none and charge nobody twice; captures equal the engine's receipts."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select

from walkout.service.models import CartLine, Charge, EngineEvent, Visit
from walkout.service.runner import LiveRunner
from walkout.service.testing import make_svc
from walkout.sim.session import simulate
from walkout.sources.recording import Sensors
from walkout.store import load_store


@pytest.fixture(scope="module")
def sensors() -> Sensors:
    return Sensors.from_session(simulate(load_store("small"), 3, 1))


def _state(engine: Engine) -> tuple[Counter[tuple[str, str, int]], dict[str, str], int, int]:
    svc = make_svc(engine)
    with svc.deps.sessions() as s:
        lines = Counter((v.credential, ln.product_id, ln.quantity) for ln, v in s.execute(
            select(CartLine, Visit).join(Visit, Visit.id == CartLine.visit_id)).all())
        captured = {v.credential: str(c.amount) for c, v in s.execute(
            select(Charge, Visit).join(Visit, Visit.id == Charge.visit_id)
            .where(Charge.kind == "capture", Charge.status == "succeeded")).all()}
        charges = s.scalar(select(func.count()).select_from(Charge)) or 0
        events = s.scalar(select(func.count()).select_from(EngineEvent)) or 0
    return lines, captured, charges, events


def test_crash_and_resume_matches_an_uninterrupted_run(sensors: Sensors, engine: Engine,
                                                       tmp_path: object) -> None:
    from walkout.engine import Engine as Pipeline
    from walkout.service.db import make_engine, upgrade

    truth = {r.credential: r.total for r in Pipeline(sensors.store).run(sensors).receipts}
    # crashed run: stops after chunk 9 (mid-visit), then a fresh service resumes twice
    svc = make_svc(engine)
    LiveRunner(sensors, "sim", stop_after_chunk=9).run(svc.deps)
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Visit).where(Visit.state == "open"))
    for _ in range(2):  # resume, then a second restart after the end: nothing changes
        LiveRunner(sensors, "sim").run(make_svc(engine).deps)
    lines, captured, charges, events = _state(engine)
    assert captured == {c: str(Decimal(t).quantize(Decimal("0.0001"))) for c, t in truth.items()
                        if t > 0}
    assert charges == 2 * len(truth)  # one pre-auth and one capture (or release) per visit
    # the same stream without a crash, in a second database, gives the same ledger
    other = make_engine(f"sqlite:///{tmp_path}/uninterrupted.db")  # type: ignore[str-bytes-safe]
    upgrade(other)
    LiveRunner(sensors, "sim").run(make_svc(other).deps)
    assert _state(other) == (lines, captured, charges, events)
    other.dispose()
