"""The service's own timer: an exit nobody saw does not keep a hold on a card for ever, and
the retention purge runs from the start."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import Engine, select

from walkout.service.models import Charge, EngineEvent, Receipt, Visit
from walkout.service.testing import make_svc

BAR = "018627032007"  # 9.19 EUR in the `small` store


def _visit(svc, vid: str) -> Visit:  # type: ignore[no-untyped-def]
    with svc.deps.sessions() as s:
        v = s.get(Visit, vid)
        assert v is not None
        return v


def test_a_visit_open_past_max_visit_s_is_checked_out_and_held_for_review(
        engine: Engine) -> None:
    svc = make_svc(engine, housekeeping_s=0.05, max_visit_s=3600)
    with svc.client:
        ann, bob = svc.shopper(card="tok_ann"), svc.shopper(card="tok_bob",
                                                            email="bob@example.org")
        old = svc.enter(ann)
        r = svc.client.post(f"/v1/visits/{old}/cart-lines", headers=svc.gate, json={"lines": [
            {"line_key": "k1", "product_id": BAR, "quantity": 1, "event_id": "e1",
             "confidence": 0.99}]})
        assert r.status_code == 200, r.text
        svc.clock.advance(3000)
        recent = svc.enter(bob)
        svc.clock.advance(700)  # ann: 3700 s inside, bob 700 s
        deadline = time.monotonic() + 10
        while _visit(svc, old).state in ("open", "checking_out") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _visit(svc, old).state == "in_review"  # charged for her cart, staff look
        assert _visit(svc, recent).state == "open"
        with svc.deps.sessions() as s:
            cap = s.scalar(select(Charge).where(Charge.visit_id == old,
                                                Charge.kind == "capture"))
            receipt = s.scalar(select(Receipt).where(Receipt.visit_id == old))
        assert cap is not None and cap.status == "succeeded"
        assert Decimal(cap.amount) == Decimal("9.19")
        assert receipt is not None
        # she can come in again
        assert svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(ann)},
                               headers=svc.gate).status_code == 201


def test_the_retention_sweep_runs_when_the_service_starts(engine: Engine) -> None:
    """Not one `retention_check_s` (an hour) later: a service restarted more often than that
    would never purge."""
    svc = make_svc(engine, retention_check_s=3600, housekeeping_s=0)
    with svc.deps.sessions.begin() as s:
        s.add(EngineEvent(source="sim/live", seq=0, kind="positions", t=1.0, payload="{}",
                          recorded_at=svc.clock.now() - timedelta(days=45)))
        s.add(EngineEvent(source="sim/live", seq=1, kind="positions", t=2.0, payload="{}",
                          recorded_at=svc.clock.now() - timedelta(days=1)))

    def kept() -> list[int]:
        with svc.deps.sessions() as s:
            return list(s.scalars(select(EngineEvent.seq).order_by(EngineEvent.seq)))

    with svc.client:
        deadline = time.monotonic() + 10
        while kept() != [1] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert kept() == [1]
