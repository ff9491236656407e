"""Disputes and staff refunds at the edges of their requests: the same line disputed twice
at once, a staff refund of another quantity than the shopper's dispute, a refund refused, a
long note. Every answer is a 2xx or a 4xx naming the problem; nothing half-done is left."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from sqlalchemy import event

from walkout.service.testing import Svc

BAR = "018627032007"  # 9.19 EUR in the `small` store


def test_two_disputes_of_one_line_at_once_answer_201_and_409(svc: Svc) -> None:
    """A double tap in the app: both requests pass the "already disputed" check before
    either inserts (a barrier holds both inserts until both checks ran); the second meets the
    line's unique constraint and is told so, not answered 500."""
    h = svc.shopper()
    out = svc.leave(svc.enter(h), {BAR: 2})
    barrier = threading.Barrier(2, timeout=3)
    engine = svc.deps.sessions.kw["bind"]

    def hold(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO disputes"):
            # a backend that serialises the checks too: one waits alone, and goes on
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

    event.listen(engine, "before_cursor_execute", hold)
    got: list[object] = []

    def post() -> None:
        try:
            r = svc.client.post("/v1/disputes", json={
                "receipt_id": out["receipt_id"], "product_id": BAR, "quantity": 1,
                "reason": "I put it back"}, headers=h)
            got.append((r.status_code, r.json().get("error")))
        except Exception as e:  # the test client raises the server's own error (a 500)
            got.append(type(e).__name__)

    try:
        threads = [threading.Thread(target=post) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
    finally:
        event.remove(engine, "before_cursor_execute", hold)
    assert sorted(map(str, got)) == sorted(map(str, [(201, None), (409, "already_disputed")]))
    r = svc.client.get("/v1/disputes", headers=svc.gate)
    assert len(r.json()) == 1
