"""The built-in ledger provider with scripted faults, as a network provider (Stripe) fails: the
real ledger moves the money (or not), then the answer comes back — or does not.

Faults, per provider operation, consumed in order (an operation with none left goes through):

- ``down``: unreachable, nothing moved (``PaymentError``, as ``StripeProvider`` reports a
  connection error: "retrying with the same idempotency key is safe")
- ``lost``: the call went through, its answer was lost (the same ``PaymentError``)
- ``declined``: refused outright, nothing moved (``PaymentDeclined``)
- ``gone``: refused outright, the authorisation expired or was cancelled (``AuthorizationGone``)
- ``crash``: the process dies before the call (``Crash``)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Literal, TypeVar

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, event, select

from walkout.checkout.money import Money
from walkout.service.app import create_app
from walkout.service.clock import ManualClock
from walkout.service.db import session_factory
from walkout.service.models import Charge, Visit
from walkout.service.payments.base import (
    Authorization,
    AuthorizationGone,
    Capture,
    PaymentDeclined,
    PaymentError,
    Refund,
)
from walkout.service.payments.ledger import LedgerProvider
from walkout.service.settings import ServiceSettings
from walkout.service.testing import ADMIN_TOKEN, Svc

Fault = Literal["down", "lost", "declined", "gone", "crash"]
Op = Literal["preauthorize", "capture", "release", "refund"]
T = TypeVar("T")

UNREACHABLE = "Stripe unreachable; retrying with the same idempotency key is safe"


class Crash(Exception):
    """The process died in the middle of a payment step."""


class FaultyLedger:
    """A ``PaymentProvider``: the real :class:`LedgerProvider` behind scripted faults."""

    name = "ledger"

    def __init__(self, inner: LedgerProvider) -> None:
        self.inner = inner
        self.faults: dict[Op, list[Fault]] = {}
        self.calls: list[tuple[Op, str]] = []  # (operation, idempotency key), in call order

    def fail(self, op: Op, *faults: Fault) -> None:
        """Script the next calls of ``op`` to fail so, in order."""
        self.faults.setdefault(op, []).extend(faults)

    def _call(self, op: Op, key: str, fn: Callable[[], T]) -> T:
        self.calls.append((op, key))
        left = self.faults.get(op)
        fault = left.pop(0) if left else None
        if fault == "down":
            raise PaymentError(f"{op}: {UNREACHABLE}")
        if fault == "declined":
            raise PaymentDeclined(f"{op}: card_declined")
        if fault == "gone":
            raise AuthorizationGone(f"{op}: the authorisation expired")
        if fault == "crash":
            raise Crash(op)
        out = fn()
        if fault == "lost":
            raise PaymentError(f"{op}: {UNREACHABLE}")
        return out

    def keys(self, op: Op) -> list[str]:
        """The idempotency keys ``op`` was called with, in order."""
        return [k for o, k in self.calls if o == op]

    def preauthorize(self, payer_ref: str, amount: Money, idempotency_key: str) -> Authorization:
        return self._call("preauthorize", idempotency_key,
                          lambda: self.inner.preauthorize(payer_ref, amount, idempotency_key))

    def capture(self, auth_id: str, amount: Money, idempotency_key: str) -> Capture:
        return self._call("capture", idempotency_key,
                          lambda: self.inner.capture(auth_id, amount, idempotency_key))

    def release(self, auth_id: str, idempotency_key: str) -> None:
        self._call("release", idempotency_key,
                   lambda: self.inner.release(auth_id, idempotency_key))

    def refund(self, capture_id: str, amount: Money, idempotency_key: str) -> Refund:
        return self._call("refund", idempotency_key,
                          lambda: self.inner.refund(capture_id, amount, idempotency_key))

    # ---- what the ledger holds ----------------------------------------------------------------

    def sales(self) -> Decimal:
        """What the store kept, over every visit (captures less refunds)."""
        return self.inner.balance("store:sales:EUR")

    def held(self, svc: Svc, visit_id: str) -> Decimal:
        """What is still held on the visit's authorisation (0 once captured or released)."""
        with svc.deps.sessions() as s:
            v = s.get(Visit, visit_id)
            assert v is not None and v.auth_id is not None
            return self.inner.balance(f"hold:{v.auth_id}:EUR")


class ChargingLedger(FaultyLedger):
    """The faulty ledger that can also charge a saved payment method
    (``ChargesSavedMethod``; ``charge`` faults are scripted like the others)."""

    def charge(self, payer_ref: str, amount: Money, idempotency_key: str) -> Capture:
        return self._call("charge", idempotency_key,  # type: ignore[arg-type]
                          lambda: self.inner.charge(payer_ref, amount, idempotency_key))


def start(engine: Engine, clock: ManualClock | None = None,
          ledger: type[FaultyLedger] = FaultyLedger) -> tuple[Svc, FaultyLedger]:
    """The service on ``engine`` paying through a :class:`FaultyLedger` (or a subclass of
    it, ``ledger``). Its start-up resumes what a previous start left pending, as a restart
    does; use it as ``with svc.client:``."""
    clock = clock or ManualClock()
    sessions = session_factory(engine)
    provider = ledger(LedgerProvider(sessions, clock))
    settings = ServiceSettings(db_url=str(engine.url), entry_secret=SecretStr("k" * 32),
                               bootstrap_admin_token=SecretStr(ADMIN_TOKEN))
    app = create_app(settings, engine=engine, sessions=sessions, clock=clock, provider=provider)
    client = TestClient(app)
    r = client.post("/v1/admin/staff", json={"role": "operator", "name": "gate"},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 201, r.text
    gate = {"Authorization": f"Bearer {r.json()['token']}"}
    return Svc(client, clock, app.state.deps, gate), provider


def charges(svc: Svc, visit_id: str) -> list[tuple[str, str, str]]:
    """The visit's charges as (kind, idempotency key, status), oldest first."""
    with svc.deps.sessions() as s:
        return [(c.kind, c.idempotency_key, c.status) for c in s.scalars(
            select(Charge).where(Charge.visit_id == visit_id).order_by(Charge.id))]


def visit_state(svc: Svc, visit_id: str) -> str:
    with svc.deps.sessions() as s:
        v = s.get(Visit, visit_id)
        assert v is not None
        return v.state


def at_once(svc: Svc, insert_into: str, call: Callable[[], object], n: int = 2) -> list[object]:
    """``call`` from ``n`` threads at once, each held at its first ``INSERT INTO
    <insert_into>`` until all got there (a race window made wide, with no mock): what each
    returned, or the name of what it raised (the test client raises the server's own error,
    a 500). A backend that serialises them earlier (a row lock) lets one through alone: the
    barrier then times out and the others go on after it."""
    barrier = threading.Barrier(n, timeout=3)
    bind = svc.deps.sessions.kw["bind"]

    def hold(conn: object, cursor: object, statement: str, *_: object) -> None:
        if statement.startswith(f"INSERT INTO {insert_into}"):
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

    got: list[object] = []

    def run() -> None:
        try:
            got.append(call())
        except Exception as e:
            got.append(type(e).__name__)

    event.listen(bind, "before_cursor_execute", hold)
    try:
        threads = [threading.Thread(target=run) for _ in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
    finally:
        event.remove(bind, "before_cursor_execute", hold)
    return got
