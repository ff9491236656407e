"""The service assembled from real components for tests and benchmarks: an in-process HTTP
client, a manual clock, the built-in ledger provider and an operator (gate) token.

Needs the ``httpx`` package (a dev dependency) for FastAPI's test client.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine

from walkout.service.app import create_app
from walkout.service.clock import ManualClock
from walkout.service.deps import Deps
from walkout.service.payments.base import PaymentProvider
from walkout.service.settings import ServiceSettings
from walkout.sources.recording import Sensors

ADMIN_TOKEN = "wo_admin-test-token-0123456789"
#: the Stripe settings of a test service given a Stripe provider (the key is not used: the
#: provider is passed in; the webhook secret signs the tests' events)
STRIPE_TEST_KEY = "sk_test_walkoutTests"
STRIPE_WEBHOOK_SECRET = "whsec_walkoutTests0123456789"
#: the From: of the receipts the mail tests send
MAIL_SENDER = "receipts@corner.example"


@dataclass
class Svc:
    """A running app (in-process HTTP client) with its clock, ledger and a gate's token."""

    client: TestClient
    clock: ManualClock
    deps: Deps
    gate: dict[str, str]  # Authorization header of an operator (the gate device)

    def shopper(self, card: str = "tok_visa_1", email: str = "ann@example.org") -> dict[str, str]:
        """A signed-up shopper with a payment method: its Authorization header."""
        r = self.client.post("/v1/accounts", json={"email": email, "name": "Ann"})
        assert r.status_code == 201, r.text
        h = {"Authorization": f"Bearer {r.json()['token']}"}
        r = self.client.post("/v1/me/payment-methods", json={"provider_ref": card}, headers=h)
        assert r.status_code == 201, r.text
        return h

    def code(self, h: dict[str, str]) -> str:
        r = self.client.post("/v1/me/entry-code", headers=h)
        assert r.status_code == 200, r.text
        return str(r.json()["code"])

    def enter(self, h: dict[str, str]) -> str:
        """The shopper's QR scanned at the entry gate: the new visit's id."""
        r = self.client.post("/v1/gates/entry/scan", json={"code": self.code(h)},
                             headers=self.gate)
        assert r.status_code == 201, r.text
        return str(r.json()["visit_id"])

    def leave(self, visit_id: str, items: dict[str, int]) -> dict[str, object]:
        """Cart lines for ``items`` (product → quantity), then the exit: its answer."""
        lines = [{"line_key": f"{visit_id}:{pid}", "product_id": pid, "quantity": q,
                  "event_id": f"ev-{visit_id[:8]}-{pid}", "confidence": 0.9}
                 for pid, q in items.items()]
        if lines:
            r = self.client.post(f"/v1/visits/{visit_id}/cart-lines", json={"lines": lines},
                                 headers=self.gate)
            assert r.status_code == 200, r.text
        r = self.client.post(f"/v1/visits/{visit_id}/exit", headers=self.gate)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def staff(self, role: str) -> dict[str, str]:
        """A new staff member's (operator, admin, kiosk) Authorization header."""
        r = self.client.post("/v1/admin/staff", json={"role": role, "name": role},
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}


def badged(d: Deps, sensors: Sensors, name: str = "Bo") -> tuple[Sensors, str]:
    """``sensors`` whose staff entries carry the badge of a new staff account ``name``: the
    simulator's ``staff:<tag>`` names no account, and the runner binds only an active staff
    account's badge. Returns the sensors and the badge's credential."""
    from walkout.service import accounts
    from walkout.service.security import Role

    account_id, _ = accounts.create_staff(d, Role.OPERATOR, name)
    badge = f"staff:{account_id}"
    gates = [replace(g, credential=badge) if g.credential.startswith("staff:") else g
             for g in sensors.gates]
    return Sensors(sensors.store, sensors.plates, sensors.frames, gates,
                   sensors.duration_s), badge


def make_svc(engine: Engine, clock: ManualClock | None = None, *,
             provider: PaymentProvider | None = None, **overrides: object) -> Svc:
    """A service on ``engine`` (migrated on start) with an admin and an operator token;
    ``provider``: another payment provider than the built-in ledger."""
    clock = clock or ManualClock()
    if provider is not None:
        overrides.setdefault("payment_provider", provider.name)
    if overrides.get("payment_provider") == "stripe":  # what a Stripe store must configure
        overrides.setdefault("stripe_api_key", SecretStr(STRIPE_TEST_KEY))
        overrides.setdefault("stripe_webhook_secret", SecretStr(STRIPE_WEBHOOK_SECRET))
    settings = ServiceSettings(db_url=str(engine.url), entry_secret=SecretStr("k" * 32),
                               bootstrap_admin_token=SecretStr(ADMIN_TOKEN), **overrides)
    app = create_app(settings, engine=engine, clock=clock, provider=provider)
    client = TestClient(app)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = client.post("/v1/admin/staff", json={"role": "operator", "name": "gate"}, headers=admin)
    assert r.status_code == 201, r.text
    return Svc(client, clock, app.state.deps, {"Authorization": f"Bearer {r.json()['token']}"})


def make_mail_svc(engine: Engine, smtp_port: int, clock: ManualClock | None = None) -> Svc:
    """A service that sends its receipts through the SMTP server on 127.0.0.1:``smtp_port``."""
    return make_svc(engine, clock, smtp_host="127.0.0.1", smtp_port=smtp_port,
                    mail_sender=MAIL_SENDER)


def restart_and_resume_mail(engine: Engine, smtp_port: int) -> int:
    """Start the service afresh on the same database (its start-up resends what is unsent),
    stop it, then resume once more: how many e-mails that last resume sent."""
    from walkout.service import receipting

    restarted = make_mail_svc(engine, smtp_port)
    with restarted.client:
        pass
    return receipting.resume_mail(restarted.deps)


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` on a real HTTP server on a free local port, its base URL (a test client does
    not end a streaming response the way a server does)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    # log_config None: uvicorn's own would stop its loggers propagating, for later tests too
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_config=None, timeout_graceful_shutdown=1))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        th.join(10)
