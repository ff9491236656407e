"""A live store for the browser tests: the real service (uvicorn on a free port) with the
engine running a simulated store in real time ×``SPEED``, a real SMTP server (aiosmtpd), and
Debian's Chromium driven by Playwright.

One store serves the whole module: the flows happen in it in order, as in a real shop — the
shopper signs up and enters (the engine waits for the gate's scan), shops while the dashboard
watches, leaves; then an operator settles the review case the visit left behind. Each test
asks for the state it needs through fixtures (test_flows.py), so that one runs alone too.
"""

from __future__ import annotations

import contextlib
import json
import os
import select as selectmod
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, sync_playwright
from pydantic import SecretStr

from walkout.bench.durability import fresh_databases
from walkout.engine import EngineConfig
from walkout.service.app import create_app
from walkout.service.deps import Deps
from walkout.service.models import EngineEvent
from walkout.service.runner import LiveRunner
from walkout.service.settings import ServiceSettings
from walkout.sim.session import SimSession, simulate
from walkout.sources.recording import load_sensors, write_recording
from walkout.store import load_store

#: store time per wall second: 114 s of shopping in about 45 s
SPEED = 2.5
SHOPPERS, SEED = 6, 20  # this draw has a review case at t ≈ 63 s (another product weighs the same)
ADMIN = "wo_web-test-admin-0123456789abcdef"
S = TypeVar("S", bound="RelayedShop")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "web"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK"


class GatedRunner:
    """The live engine, held until ``go`` is set (the test's gate scans a code first)."""

    def __init__(self, runner: LiveRunner) -> None:
        self.runner, self.go = runner, threading.Event()

    def __call__(self, d: Deps, stop: threading.Event) -> None:
        while not self.go.wait(0.1):
            if stop.is_set():
                return
        self.runner(d, stop)


class Relay:
    """A TCP relay between the browser and the service, which the test can cut: ``down()``
    closes every connection through it and refuses new ones (the network is gone),
    ``stall()`` holds them open with nothing going through, ``up()`` lets them through
    again. The service itself keeps running, and the test keeps talking to it directly, so
    things change while the page is cut off."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.open, self.flowing = threading.Event(), threading.Event()
        self.open.set()
        self.flowing.set()
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                if not self.flowing.is_set():  # stalled: held open, nothing through
                    time.sleep(0.05)
                    continue
                ready, _, _ = selectmod.select([a, b], [], [], 0.2)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except OSError:
            pass
        finally:
            for x in (a, b):
                with self.lock:
                    self.conns.discard(x)
                with contextlib.suppress(OSError):
                    x.close()

    def down(self) -> None:
        self.open.clear()
        with self.lock:
            conns, self.conns = list(self.conns), set()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def stall(self) -> None:
        """Connections stay open but carry nothing, new ones too (a sleeping laptop, a NAT
        entry dropped): no side sees a close."""
        self.flowing.clear()

    def up(self) -> None:
        self.open.set()
        self.flowing.set()

    def close(self) -> None:
        self.down()
        self.listener.close()


@dataclass
class Store:
    url: str
    session: SimSession
    runner: GatedRunner
    inbox: Inbox
    deps: Deps
    operator: str  # bearer tokens
    kiosk: str

    def api(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {token}"},
                             timeout=30, **kw)


# ---- the stores seeded through the API (test_desk, test_phone, test_payments, test_security) --



@dataclass
class RelayedShop:
    """A service on a free port, reached by the browser through a :class:`Relay` (cut or
    stalled at will) and by the test straight, with an operator's token and the products
    visits take: what the dashboard's and the phone's tests drive."""

    url: str  # the service, straight
    page_url: str  # the same, through the relay
    relay: Relay
    deps: Deps
    operator: str
    products: list[str]
    tokens: dict[str, str] = field(default_factory=dict, kw_only=True)  # shoppers', by name

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        return call(self.url, method, path, token, **kw)

    def shopper(self, name: str, card: bool = True) -> str:
        tok = self.tokens[name] = sign_up(self.url, f"{name}@example.org", name.title(),
                                          f"tok_visa_{name}" if card else None)
        return tok

    def visit(self, name: str, products: list[str] | None = None) -> tuple[str, str]:
        """A visit of ``name`` (signed up first if new) taking one of each of ``products``:
        (visit id, receipt id)."""
        vid = enter(self.url, self.operator, self.tokens.get(name) or self.shopper(name))
        return vid, leave(self.url, self.operator, vid, products or self.products)

    def log_case(self, case_id: str, source: str, seq: int = 0, t: float = 12.0,
                 recorded_at: datetime | None = None) -> None:
        """A review case in the event log under ``source`` (two shoppers reached a plate,
        s1 charged one of the first product), as the engine logs one."""
        plate = next(pl.id for g in self.deps.store.gondolas for sh in g.shelves
                     for pl in sh.plates)
        p0, p1 = self.products
        case = {"case_id": case_id, "event": {"kind": "pick", "delta_g": -300, "plates": [plate],
                                              "t_start": 10.0, "t_end": 12.0},
                "reasons": ["two shoppers reached"], "sessions": ["s1", "s2"],
                "decided": {"s1": [[p0, 1]]},
                "hypotheses": [{"items": [[p0, 1]], "probability": 0.6},
                               {"items": [[p1, 1]], "probability": 0.4}],
                "hands": [{"session_id": "s1", "probability": 0.7, "reach_m": 0.1},
                          {"session_id": "s2", "probability": 0.3, "reach_m": None}],
                "weights": None, "plate_boxes": {}, "skeletons": {}, "credentials": {}}
        with self.deps.sessions.begin() as s:
            s.add(EngineEvent(source=source, seq=seq, kind="review", t=t,
                              payload=json.dumps(case), ref=case_id,
                              recorded_at=recorded_at or datetime.now(UTC)))

@contextlib.contextmanager
def serving(app: FastAPI, port: int) -> Iterator[None]:
    """The service on ``port`` (uvicorn in a thread) for the ``with`` block; an open event
    stream does not hold up its shutdown for long."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    th = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    th.start()
    end = time.monotonic() + 30
    while not server.started and time.monotonic() < end:
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        th.join(30)


def sqlite_db(name: str) -> Any:
    """A module's ``db_url`` fixture: one empty SQLite database, for a store seeded through
    the API (what its tests look at is the pages, not the database)."""

    @pytest.fixture(scope="module")
    def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
        with fresh_databases(None, tmp_path_factory.mktemp(name), names=(name,)) as (url,):
            yield url

    return db_url


@contextlib.contextmanager
def relayed_shop(db_url: str, admin: str, kind: type[S], **desks: str) -> Iterator[S]:
    """A service on ``db_url`` on a free port, reached through a :class:`Relay`, as ``kind``
    with "Desk One"'s operator token and two catalogue products; ``desks``: more operators'
    tokens, by field and name (``desk_two="Desk Two"``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = ServiceSettings(db_url=db_url, entry_secret=SecretStr("w" * 32),
                               bootstrap_admin_token=SecretStr(admin), retention_check_s=0)
    app = create_app(settings)
    with serving(app, port):
        relay = Relay(port)
        deps: Deps = app.state.deps
        try:
            yield kind(url, f"http://127.0.0.1:{relay.port}", relay, deps,
                       staff_token(url, admin, "operator", "Desk One"),
                       [p.id for p in deps.store.catalogue[:2]],
                       **{k: staff_token(url, admin, "operator", v) for k, v in desks.items()})
        finally:
            relay.close()


def staff_token(url: str, admin: str, role: str, name: str) -> str:
    """A new staff account of ``role`` made by the admin token ``admin``: its token."""
    r = call(url, "POST", "/v1/admin/staff", admin, json={"role": role, "name": name})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def call(url: str, method: str, path: str, token: str | None = None,
         **kw: Any) -> httpx.Response:
    """One request to the service at ``url``, with ``token`` as its bearer when given."""
    h = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, url + path, headers=h, timeout=30, **kw)


def sign_up(url: str, email: str, name: str, card: str | None = None) -> str:
    """A shopper's account (with the payment token ``card`` when given): her token."""
    r = call(url, "POST", "/v1/accounts", json={"email": email, "name": name})
    assert r.status_code == 201, r.text
    tok = str(r.json()["token"])
    if card is not None:
        r = call(url, "POST", "/v1/me/payment-methods", tok, json={"provider_ref": card})
        assert r.status_code == 201, r.text
    return tok


def enter(url: str, operator: str, token: str) -> str:
    """The shopper's entry code scanned at the gate: her visit's id."""
    code = call(url, "POST", "/v1/me/entry-code", token).json()["code"]
    r = call(url, "POST", "/v1/gates/entry/scan", operator, json={"code": code})
    assert r.status_code == 201, r.text
    return str(r.json()["visit_id"])


def leave(url: str, operator: str, visit_id: str, products: list[str]) -> str:
    """The visit takes one of each of ``products`` and leaves: its receipt's id."""
    lines = [{"line_key": f"{visit_id}:{p}", "product_id": p, "quantity": 1,
              "event_id": f"e-{p}", "confidence": 0.9} for p in products]
    r = call(url, "POST", f"/v1/visits/{visit_id}/cart-lines", operator, json={"lines": lines})
    assert r.status_code == 200, r.text
    r = call(url, "POST", f"/v1/visits/{visit_id}/exit", operator)
    assert r.status_code == 200, r.text
    return str(r.json()["receipt_id"])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll ``check`` (test side only) until it returns something truthy."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database of each kind for the module's service: the pages run on both."""
    server = None
    if request.param == "postgres":
        server = os.environ.get("WALKOUT_TEST_PG_URL")
        if not server:
            pytest.fail("WALKOUT_TEST_PG_URL is not set: scripts/test.sh starts PostgreSQL and "
                        'sets it (or deselect with -m "not postgres")', pytrace=False)
    with fresh_databases(server, tmp_path_factory.mktemp("web"), names=("web",)) as (url,):
        yield url


def _recorded_with_one_sample_twice(session: SimSession, rec: Path) -> Path:
    """The session as a recording whose plates file has one sample sent twice: loading drops
    it (the receipts are the same) and says so, which the health page must show."""
    write_recording(session, rec)
    z = dict(np.load(rec / "plates.npz"))
    i = len(z["t"]) // 2
    z["t"] = np.insert(z["t"], i, z["t"][i])
    z["grams"] = np.insert(z["grams"], i, z["grams"][i], axis=0)
    np.savez(rec / "plates.npz", **z)
    return rec


@pytest.fixture(scope="module")
def store(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    session = simulate(load_store("small"), SHOPPERS, SEED)
    sensors = load_sensors(_recorded_with_one_sample_twice(
        session, tmp_path_factory.mktemp("rec") / "web"))
    assert len(sensors.notes) == 1
    inbox = Inbox()
    smtp_port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    settings = ServiceSettings(db_url=db_url, entry_secret=SecretStr("w" * 32),
                               evidence_dir=tmp_path_factory.mktemp("clips"),
                               bootstrap_admin_token=SecretStr(ADMIN), smtp_host="127.0.0.1",
                               smtp_port=smtp_port)
    runner = GatedRunner(LiveRunner(sensors, f"sim:web:{SEED}", speed=SPEED,
                                    config=EngineConfig(review_hold_s=600.0)))
    app = create_app(settings, store=sensors.store, background=runner)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    th.start()
    wait_for("the service to start", lambda: server.started, 30)
    url = f"http://127.0.0.1:{port}"

    def staff(role: str) -> str:
        r = httpx.post(url + "/v1/admin/staff", json={"role": role, "name": role},
                       headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    try:
        yield Store(url, session, runner, inbox, app.state.deps, staff("operator"),
                    staff("kiosk"))
    finally:
        server.should_exit = True
        th.join(30)
        smtp.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    exe = os.environ.get("WALKOUT_TEST_CHROMIUM") or shutil.which("chromium")
    if not exe:
        pytest.fail("Debian's chromium is not installed: `bash scripts/services.sh start "
                    "chromium` (scripts/test.sh does it)", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)  # a fresh profile
        yield b
        b.close()


@pytest.fixture(scope="session")  # plain functions: module fixtures use them too
def shot() -> Callable[[Page, str], Path]:
    return take_shot


@pytest.fixture(scope="session")
def waiter() -> Callable[..., Any]:
    return wait_for


@pytest.fixture
def csp_watch() -> Callable[[Page], list[str]]:
    return watch_csp


def watch_csp(page: Page) -> list[str]:
    """What the Content-Security-Policy refuses on ``page`` from now on, across navigations:
    the page's own ``securitypolicyviolation`` events and Chromium's console reports (a refused
    frame is reported to the console of the page that framed it)."""
    seen: list[str] = []
    page.expose_function("__cspViolation", lambda what: seen.append(what))
    page.add_init_script("document.addEventListener('securitypolicyviolation', e => "
                         "window.__cspViolation(`${e.violatedDirective} ${e.blockedURI} "
                         "${e.sourceFile}:${e.lineNumber}`));")
    page.on("console", lambda m: seen.append(m.text)
            if "Content Security Policy" in m.text else None)
    return seen


def take_shot(page: Page, name: str) -> Path:
    """A screenshot as a test artifact (artifacts/web/); with WALKOUT_UPDATE_SCREENSHOTS=1
    also the current one in docs/screenshots/ (what README shows)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("WALKOUT_UPDATE_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SHOTS / path.name)
    return path
