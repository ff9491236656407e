"""Sales count money on the day it moved, as the provider's statement does: a capture whose
provider was unreachable at the exit and that a retry confirms the next morning is the next
day's money (the visit and its receipt stay the evening's). Real service and ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine

from walkout.service import housekeeping
from walkout.service.clock import ManualClock

from .faults import start, visit_state

BAR = "018627032007"  # 9.19 EUR in the `small` store (Europe/Paris)


def test_a_capture_confirmed_the_next_day_is_the_next_days_money(engine: Engine) -> None:
    clock = ManualClock(datetime(2026, 3, 27, 20, 0, tzinfo=UTC))  # 21:00 in Paris, the 27th
    svc, pay = start(engine, clock)
    with svc.client:
        vid = svc.enter(svc.shopper())
        pay.fail("capture", "down")  # the provider is unreachable at the exit
        assert svc.leave(vid, {BAR: 1})["state"] == "checking_out"
        clock.advance(13 * 3600)  # 10:00 in Paris on the 28th: the provider is back
        housekeeping.turn(svc.deps)
        assert visit_state(svc, vid) == "charged" and pay.sales() == Decimal("9.19")
        rep = svc.client.get("/v1/ops/sales?days=2&until=2026-03-28", headers=svc.gate).json()
    d27, d28 = rep["days"]
    assert (d27["date"], d28["date"]) == ("2026-03-27", "2026-03-28")
    assert d27["receipts_total"] == "9.19"  # what she bought: the evening's
    assert (d27["captured"], d28["captured"]) == ("0.00", "9.19")  # the money: the morning's
    assert rep["totals"]["captured"] == "9.19"
