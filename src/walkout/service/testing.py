"""The service assembled from real components for tests and benchmarks: an in-process HTTP
client, a manual clock, the built-in ledger provider and an operator (gate) token.

Needs the ``httpx`` package (a dev dependency) for FastAPI's test client.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine

from walkout.service.app import create_app
from walkout.service.clock import ManualClock
from walkout.service.deps import Deps
from walkout.service.settings import ServiceSettings

ADMIN_TOKEN = "wo_admin-test-token-0123456789"


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


def make_svc(engine: Engine, clock: ManualClock | None = None, **overrides: object) -> Svc:
    """A service on ``engine`` (migrated on start) with an admin and an operator token."""
    clock = clock or ManualClock()
    settings = ServiceSettings(db_url=str(engine.url), entry_secret=SecretStr("k" * 32),
                               bootstrap_admin_token=SecretStr(ADMIN_TOKEN), **overrides)
    app = create_app(settings, engine=engine, clock=clock)
    client = TestClient(app)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = client.post("/v1/admin/staff", json={"role": "operator", "name": "gate"}, headers=admin)
    assert r.status_code == 201, r.text
    return Svc(client, clock, app.state.deps, {"Authorization": f"Bearer {r.json()['token']}"})
