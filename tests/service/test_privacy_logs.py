"""Every address the service accepts at sign-up is masked whole in its logs: an apostrophe
(``mary.o'brien``), a ``#`` or a letter outside ASCII no longer stops the masking half-way,
which logged the first name in front of ``[email]``."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from walkout.service.redact import redact
from walkout.service.testing import make_svc

#: addresses the sign-up accepts (RFC 5322 atext in the local part)
ACCEPTED = ["mary.o'brien@example.ie", "ann#1@example.org", "x!y@example.org",
            "a{b}@example.org", "~bo@example.org"]


@pytest.mark.parametrize("address", ACCEPTED)
def test_an_accepted_address_is_masked_whole(engine: Engine, address: str) -> None:
    svc = make_svc(engine)
    with svc.client:
        r = svc.client.post("/v1/accounts", json={"email": address, "name": "M"})
        assert r.status_code == 201, r.text  # the service takes it
    for text in (f"550 5.1.1 <{address}>: Recipient address rejected",
                 f"to {address}, cc {address.upper()}"):
        out = redact(text)
        assert "@" not in out and address.split("@")[0][:3] not in out, out


@pytest.mark.parametrize(("text", "kept"), [
    ("email='ann@example.org'", "email='[email]'"),
    ("['ann@example.org', 'bo@example.org']", "['[email]', '[email]']"),
    ("GET /v1/ops/receipts?q=ann%40example.org HTTP/1.1",
     "GET /v1/ops/receipts?q=[email] HTTP/1.1"),
    ("to jürgen@müller.de.", "to [email]."),
])
def test_what_surrounds_an_address_stays(text: str, kept: str) -> None:
    assert redact(text) == kept
