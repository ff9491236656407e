"""The ops routes' dates and ids out of what the database and the calendar hold are the
client's error (422, or 404 for an alert that cannot exist), never a 500: the sales period's
last day plus one overflowed ``date`` (9999-12-31) or its first day did (0001-01-01), and an
alert id past 2**63 - 1 raised SQLite's OverflowError. On SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from walkout.service.db import make_engine, normalise_url, upgrade
from walkout.service.testing import Svc, make_svc, served

PG_ENV = "WALKOUT_TEST_PG_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Svc]:
    """The real service on a fresh, migrated database of each kind."""
    if request.param == "sqlite":
        db = make_engine(f"sqlite:///{tmp_path / 'walkout.db'}")
        name = None
    else:
        url = os.environ.get(PG_ENV)
        if not url:
            pytest.fail(f"{PG_ENV} is not set (or deselect with -m 'not postgres')",
                        pytrace=False)
        admin = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
        name = f"wt_{uuid.uuid4().hex[:12]}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        db = make_engine(admin.url.set(database=name).render_as_string(hide_password=False))
    upgrade(db)
    s = make_svc(db)
    try:
        with s.client:
            yield s
    finally:
        db.dispose()
        if name is not None:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()




@pytest.fixture
def client(svc: Svc) -> TestClient:
    # what a real server answers: an unhandled error is a 500, not an exception in the test
    return TestClient(svc.client.app, raise_server_exceptions=False)


@pytest.mark.parametrize("q", ["until=9999-12-31", "until=0001-01-01", "days=7&until=0001-01-03",
                               "days=7&until=1970-01-06", "until=1969-12-31"])
def test_a_sales_period_out_of_range_is_a_422(svc: Svc, client: TestClient, q: str) -> None:
    r = client.get(f"/v1/ops/sales?{q}", headers=svc.gate)
    assert r.status_code == 422, (q, r.status_code, r.text[:200])
    assert r.json()["error"] == "invalid_request"
    assert "1970-01-01" in r.json()["detail"] and "9999-12-30" in r.json()["detail"]


@pytest.mark.parametrize(("q", "first", "last"), [
    ("until=9999-12-30", "9999-12-24", "9999-12-30"),
    ("days=7&until=1970-01-07", "1970-01-01", "1970-01-07"),
    ("days=1&until=1970-01-01", "1970-01-01", "1970-01-01")])
def test_the_sales_periods_at_the_edges_are_reported(svc: Svc, client: TestClient, q: str,
                                                     first: str, last: str) -> None:
    r = client.get(f"/v1/ops/sales?{q}", headers=svc.gate)
    assert r.status_code == 200, (q, r.status_code, r.text[:200])
    assert (r.json()["first"], r.json()["last"]) == (first, last)


@pytest.mark.parametrize("eid", [2**63, 10**30, 0, -1])
def test_acknowledging_an_alert_id_out_of_range_is_a_422(svc: Svc, client: TestClient,
                                                         eid: int) -> None:
    r = client.post(f"/v1/ops/alerts/{eid}/ack", json={}, headers=svc.gate)
    assert r.status_code == 422, (r.status_code, r.text[:200])
    assert r.json()["error"] == "invalid_request"


@pytest.mark.parametrize("eid", [2**31, 2**63 - 1])
def test_an_alert_id_past_the_databases_ids_is_no_alert(svc: Svc, client: TestClient,
                                                        eid: int) -> None:
    """PostgreSQL's id column is 32-bit: a larger id in the query was its error (a 500)."""
    r = client.post(f"/v1/ops/alerts/{eid}/ack", json={}, headers=svc.gate)
    assert (r.status_code, r.json()["error"]) == (404, "not_found"), r.text[:200]


@pytest.mark.parametrize("after", [2**63, 10**30, -1])
def test_the_event_stream_after_an_id_out_of_range_is_a_422(svc: Svc, client: TestClient,
                                                            after: int) -> None:
    r = client.get(f"/v1/ops/stream?after={after}", headers=svc.gate)
    assert r.status_code == 422, (r.status_code, r.text[:200])
    assert r.json()["error"] == "invalid_request"


@pytest.mark.parametrize("after", [2**31, 2**63 - 1])
def test_the_event_stream_after_an_id_past_the_databases_ids_stays_open(
        svc: Svc, after: int) -> None:
    """Through a real server: the stream's query with such an id was PostgreSQL's error, which
    ended the stream at once (the dashboard reconnected to the same error)."""
    ended = threading.Event()
    status: list[int] = []
    with served(svc.client.app) as url:
        def run() -> None:
            with suppress(httpx.HTTPError), httpx.stream(
                    "GET", f"{url}/v1/ops/stream?after={after}", headers=svc.gate,
                    timeout=30) as r:
                status.append(r.status_code)
                for _ in r.iter_lines():
                    pass
            ended.set()

        threading.Thread(target=run, daemon=True).start()
        assert not ended.wait(3.0), status  # six turns of the tail: still streaming
        assert status == [200]
