"""Bearer tokens end when they are revoked: an admin lists and revokes staff accounts, a
shopper signs out, and either stops working at once — past the auth cache, past a request
that authenticated just before the revocation, and on event streams already open."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from walkout.service.accounts import AuthCache
from walkout.service.errors import ServiceError
from walkout.service.security import Principal, Role
from walkout.service.testing import ADMIN_TOKEN, Svc, served

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _staff(svc: Svc, role: str = "operator") -> tuple[str, dict[str, str]]:
    r = svc.client.post("/v1/admin/staff", json={"role": role, "name": f"desk {role}"},
                        headers=ADMIN)
    assert r.status_code == 201, r.text
    return r.json()["account_id"], {"Authorization": f"Bearer {r.json()['token']}"}


def test_admin_lists_and_revokes_a_staff_account(svc: Svc) -> None:
    acct, h = _staff(svc)
    assert svc.client.get("/v1/ops/store", headers=h).status_code == 200  # now in the cache
    staff = {x["account_id"]: x for x in svc.client.get("/v1/admin/staff", headers=ADMIN).json()}
    assert staff[acct] | {"created_at": None} == {
        "account_id": acct, "role": "operator", "name": "desk operator", "created_at": None,
        "active_tokens": 1, "revoked_at": None}
    assert {x["role"] for x in staff.values()} == {"admin", "operator"}  # no shoppers listed
    r = svc.client.delete(f"/v1/admin/staff/{acct}", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["active_tokens"] == 0 and r.json()["revoked_at"]
    # refused at once, though it was cached a moment ago
    r = svc.client.get("/v1/ops/store", headers=h)
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"
    assert svc.client.delete(f"/v1/admin/staff/{acct}", headers=ADMIN).status_code == 200
    assert svc.client.get("/v1/ops/store", headers=svc.gate).status_code == 200  # others work


def test_staff_revocation_is_for_admins_and_not_of_oneself(svc: Svc) -> None:
    acct, _ = _staff(svc, "kiosk")
    assert svc.client.get("/v1/admin/staff", headers=svc.gate).status_code == 403
    assert svc.client.delete(f"/v1/admin/staff/{acct}", headers=svc.gate).status_code == 403
    me = svc.client.get("/v1/admin/staff", headers=ADMIN).json()
    own = next(x["account_id"] for x in me if x["role"] == "admin")
    r = svc.client.delete(f"/v1/admin/staff/{own}", headers=ADMIN)
    assert r.status_code == 409 and r.json()["error"] == "own_account"
    shopper = svc.client.post("/v1/accounts", json={"email": "ann@example.org"}).json()
    assert svc.client.delete(f"/v1/admin/staff/{shopper['account_id']}",
                             headers=ADMIN).status_code == 404
    assert svc.client.delete("/v1/admin/staff/nope", headers=ADMIN).status_code == 404


def test_a_shopper_signing_out_revokes_the_token(svc: Svc) -> None:
    h = svc.shopper()
    other = svc.shopper(card="tok_bo", email="bo@example.org")
    assert svc.client.get("/v1/me", headers=h).status_code == 200
    r = svc.client.delete("/v1/me/token", headers=h)
    assert r.status_code == 200 and r.json() == {"signed_out": True}
    assert svc.client.get("/v1/me", headers=h).status_code == 401
    assert svc.client.get("/v1/me", headers=other).status_code == 200
    assert svc.client.delete("/v1/me/token", headers=svc.gate).status_code == 403


def test_a_lookup_racing_a_revocation_does_not_cache_the_token() -> None:
    """The request read the token from the database just before the revocation committed and
    emptied the cache: it is answered, but must not put the token back for the cache's 5 s."""
    cache: AuthCache
    revoked = False

    def lookup(authorization: str | None) -> Principal:
        nonlocal revoked
        if revoked:
            raise ServiceError(401, "unauthenticated", "unknown or revoked token")
        revoked = True  # the revocation commits and clears the cache while this read is out
        cache.clear()
        return Principal("acct", Role.OPERATOR)

    cache = AuthCache(lookup, ttl=5.0)
    assert cache.principal("Bearer t").account_id == "acct"
    with pytest.raises(ServiceError) as e:
        cache.principal("Bearer t")
    assert e.value.status == 401


def test_the_auth_cache_keeps_a_token_for_its_ttl_only() -> None:
    now, reads = [0.0], []

    def lookup(authorization: str | None) -> Principal:
        reads.append(authorization)
        return Principal("acct", Role.SHOPPER)

    cache = AuthCache(lookup, ttl=5.0, clock=lambda: now[0])
    for t in (0.0, 4.9, 5.1):
        now[0] = t
        cache.principal("Bearer t")
    assert len(reads) == 2  # a database read at 0 s and again once 5 s had passed




def _read(url: str, h: dict[str, str], got: list[str]) -> threading.Thread:
    """Read an event stream in a thread, which ends when the stream does."""
    def run() -> None:
        with httpx.stream("GET", url, headers=h, timeout=30) as r:
            got.append(f"status {r.status_code}")
            for line in r.iter_lines():
                got.append(line)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def test_open_event_streams_end_when_their_tokens_are_revoked(svc: Svc) -> None:
    acct, op = _staff(svc)
    ann, bo = svc.shopper(), svc.shopper(card="tok_bo", email="bo@example.org")
    with served(svc.client.app) as url:  # type: ignore[arg-type]
        got: dict[str, list[Any]] = {"ops": [], "ann": [], "bo": []}
        streams = {"ops": _read(url + "/v1/ops/stream?backlog_s=0", op, got["ops"]),
                   "ann": _read(url + "/v1/app/stream", ann, got["ann"]),
                   "bo": _read(url + "/v1/app/stream", bo, got["bo"])}
        # each stream answered (a fixed 1.5 s was not always enough on a busy machine)
        end = time.monotonic() + 30
        while not (all(g[:1] == ["status 200"] for g in got.values())
                   and len(got["ann"]) >= 2):
            assert time.monotonic() < end, got
            time.sleep(0.05)
        assert all(th.is_alive() for th in streams.values()), got
        assert got["ann"][:2] == ["status 200", "event: cart"]
        # an admin revokes the operator; Ann erases her account; Bo signs out
        assert svc.client.delete(f"/v1/admin/staff/{acct}", headers=ADMIN).status_code == 200
        assert svc.client.delete("/v1/me", headers=ann).status_code == 200
        assert svc.client.delete("/v1/me/token", headers=bo).status_code == 200
        for name, th in streams.items():
            th.join(3)  # a stream checks its token at every turn (0.5 s)
            assert not th.is_alive(), f"the {name} stream outlived its revoked token"
