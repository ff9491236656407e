"""Service benchmark: concurrent shoppers through the HTTP API of a live `walkout serve`.

Why this shape. What a shopper feels is the API of the real process under load: a separate
``walkout serve`` (its engine running live on a simulated store beside, as in a store) and
N shoppers as concurrent asyncio tasks sharing one httpx client, each doing what the app and
the store's devices do for one visit: sign up, add a payment method, ask for an entry QR code,
get scanned at the gate, have cart lines posted for it (as the engine would, through the
operator API), check the visit, leave (the gate posts the exit) and fetch the receipt. Arrivals
are spread over ``ramp_s`` and shoppers pause ``think_s`` on average between picks (seeded),
so they are all in the store at once without being a single synchronous burst.

Figures: per endpoint (path templates) ``count``, ``errors``, ``p50_ms``, ``p99_ms``,
``max_ms``; ``exit_to_receipt`` p50/p99/max in seconds: from sending the exit to holding the
receipt (the exit answers with the receipt id; the receipt is then fetched as the app would);
``receipt_total_mismatches``: receipts whose total is not the sum of the lines posted;
``peak_in_store``: the most shoppers admitted and not yet out at one time.

Two profiles. The default (arrivals over 20 s, 15 s mean pause between picks) is a store with
everybody inside at once, shopping at a brisk but human pace (~20 requests/s for 200).
``--ramp 5 --think 0.5`` compresses 200 whole visits into ~10 s (~150 requests/s): a stress
test of the API's throughput, far beyond what 200 people in a shop send.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import make_url

from walkout.bench.durability import free_port, fresh_databases
from walkout.store import load_store

Progress = Callable[[str], None]


class ServiceBenchError(RuntimeError):
    """The service did not start, or the benchmark could not run against it."""


@dataclass
class Recorder:
    """Latencies per endpoint template, and errors with their first few answers."""

    latency: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    exit_to_receipt: list[float] = field(default_factory=list)
    total_mismatches: int = 0
    completed: int = 0
    in_store: int = 0  # admitted and not yet out
    peak_in_store: int = 0

    def add(self, name: str, seconds: float, ok: bool, detail: str = "") -> None:
        self.latency.setdefault(name, []).append(seconds)
        if not ok:
            self.errors[name] = self.errors.get(name, 0) + 1
            if len(self.samples) < 10:
                self.samples.append(f"{name}: {detail[:200]}")


class Api:
    """The service's endpoints as the shopper's app and the store's devices call them."""

    def __init__(self, client: Any, rec: Recorder) -> None:
        self.client, self.rec = client, rec

    async def call(self, name: str, method: str, url: str, token: str | None = None,
                   body: dict[str, Any] | None = None, ok: int = 200) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        t0 = time.perf_counter()
        try:
            r = await self.client.request(method, url, json=body, headers=headers)
        except Exception as e:  # a transport error is a failed request
            self.rec.add(name, time.perf_counter() - t0, False, repr(e))
            raise ServiceBenchError(f"{name}: {e!r}") from None
        self.rec.add(name, time.perf_counter() - t0, r.status_code == ok, r.text)
        if r.status_code != ok:
            raise ServiceBenchError(f"{name}: {r.status_code} {r.text[:200]}")
        data: dict[str, Any] = r.json()
        return data


async def shopper(api: Api, i: int, operator: str, products: list[tuple[str, Decimal]],
                  rng: random.Random, ramp_s: float, think_s: float) -> None:
    """One visit, start to receipt; raises on the first failed call (counted as an error)."""
    await asyncio.sleep(rng.uniform(0, ramp_s))
    acct = await api.call("POST /v1/accounts", "POST", "/v1/accounts",
                          body={"email": f"shopper{i}@example.org", "name": f"Shopper {i}"},
                          ok=201)
    tok = str(acct["token"])
    await api.call("POST /v1/me/payment-methods", "POST", "/v1/me/payment-methods", tok,
                   {"provider_ref": f"tok_bench_{i}_{secrets.token_hex(4)}"}, ok=201)
    code = await api.call("POST /v1/me/entry-code", "POST", "/v1/me/entry-code", tok)
    adm = await api.call("POST /v1/gates/{gate}/scan", "POST", "/v1/gates/entry/scan",
                         operator, {"code": code["code"]}, ok=201)
    vid = str(adm["visit_id"])
    api.rec.in_store += 1
    api.rec.peak_in_store = max(api.rec.peak_in_store, api.rec.in_store)
    expected = Decimal(0)
    for k in range(rng.randint(1, 4)):  # picks (and the odd put-back), one shelf event each
        await asyncio.sleep(rng.uniform(0, 2 * think_s))
        pid, price = rng.choice(products)
        q = rng.choice((1, 1, 1, 2))
        lines = [{"line_key": f"ev{k}:{pid}:+{q}", "product_id": pid, "quantity": q,
                  "event_id": f"ev{k}", "confidence": 0.97, "t": float(k)}]
        expected += price * q
        if q == 2 and rng.random() < 0.3:
            lines.append({"line_key": f"ev{k}b:{pid}:-1", "product_id": pid, "quantity": -1,
                          "event_id": f"ev{k}b", "t": float(k) + 0.5})
            expected -= price
        await api.call("POST /v1/visits/{id}/cart-lines", "POST", f"/v1/visits/{vid}/cart-lines",
                       operator, {"lines": lines})
    await api.call("GET /v1/visits/{id}", "GET", f"/v1/visits/{vid}", tok)
    await asyncio.sleep(rng.uniform(0, 2 * think_s))
    t0 = time.perf_counter()
    out = await api.call("POST /v1/visits/{id}/exit", "POST", f"/v1/visits/{vid}/exit", operator)
    api.rec.in_store -= 1
    rec = await api.call("GET /v1/receipts/{id}", "GET", f"/v1/receipts/{out['receipt_id']}", tok)
    api.rec.exit_to_receipt.append(time.perf_counter() - t0)
    if Decimal(rec["total"]) != expected:
        api.rec.total_mismatches += 1
    api.rec.completed += 1


async def drive(base_url: str, admin_token: str, shoppers: int, seed: int, store: str,
                ramp_s: float, think_s: float) -> tuple[Recorder, float]:
    """Run ``shoppers`` concurrent visits against ``base_url``; (recorder, wall seconds)."""
    import httpx

    st = load_store(store)
    products = sorted((pid, Decimal(str(p.price))) for pid, p in st.products.items())
    rec = Recorder()
    limits = httpx.Limits(max_connections=shoppers + 4, max_keepalive_connections=shoppers + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=120.0, limits=limits) as client:
        api = Api(client, rec)
        staff = await api.call("POST /v1/admin/staff", "POST", "/v1/admin/staff", admin_token,
                               {"role": "operator", "name": "gate"}, ok=201)
        operator = str(staff["token"])
        rngs = [random.Random(seed * 1_000_003 + i) for i in range(shoppers)]
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(shopper(api, i, operator, products, rngs[i], ramp_s, think_s)
              for i in range(shoppers)), return_exceptions=True)
        wall = time.perf_counter() - t0
    unexpected = [r for r in results
                  if isinstance(r, BaseException) and not isinstance(r, ServiceBenchError)]
    if unexpected:
        raise unexpected[0]
    return rec, wall


def _pct(xs: list[float], q: float, scale: float) -> float:
    return round(float(np.percentile(np.asarray(xs), q)) * scale, 1 if scale > 1 else 3)


def summarise(rec: Recorder) -> dict[str, Any]:
    """Per-endpoint latencies (ms) and exit-to-receipt times (s)."""
    ends = {name: {"count": len(xs), "errors": rec.errors.get(name, 0),
                   "p50_ms": _pct(xs, 50, 1000), "p99_ms": _pct(xs, 99, 1000),
                   "max_ms": round(max(xs) * 1000, 1)}
            for name, xs in sorted(rec.latency.items())}
    e2r = rec.exit_to_receipt
    return {
        "endpoints": ends,
        "exit_to_receipt": (
            {"count": len(e2r), "p50_s": _pct(e2r, 50, 1), "p99_s": _pct(e2r, 99, 1),
             "max_s": round(max(e2r), 3)} if e2r
            else {"count": 0, "p50_s": None, "p99_s": None, "max_s": None}),
        "requests": sum(len(xs) for xs in rec.latency.values()),
        "errors": sum(rec.errors.values()),
        "error_samples": rec.samples,
    }


# ---- the service process ------------------------------------------------------------------------


def start_service(db_url: str, workdir: Path, engine_shoppers: int, seed: int, store: str,
                  admin_token: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`walkout serve` on a free port, its engine live (real time) on a simulated store."""
    import httpx

    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WALKOUT_BOOTSTRAP_ADMIN_TOKEN": admin_token,
           "WALKOUT_ENTRY_SECRET": secrets.token_urlsafe(32)}
    env.pop("WALKOUT_DB_URL", None)
    argv = [sys.executable, "-m", "walkout.cli", "serve", "--db", db_url, "--store", store,
            "--source", "sim", "--shoppers", str(engine_shoppers), "--seed", str(seed),
            "--speed", "1", "--port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceBenchError(f"`walkout serve` exited (rc {proc.returncode}):\n"
                                    + log.read_text(errors="replace")[-3000:])
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_service(proc)
    raise ServiceBenchError("`walkout serve` did not answer /health within 180 s")


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_service_bench(shoppers: int, workdir: Path, db_url: str | None = None, seed: int = 1,
                      store: str = "small", engine_shoppers: int = 20, ramp_s: float = 20.0,
                      think_s: float = 15.0, progress: Progress | None = None) -> dict[str, Any]:
    """Start the service on a fresh database (a SQLite file in ``workdir``, or a new database
    on the PostgreSQL server of ``db_url``), drive ``shoppers`` concurrent visits through it,
    stop it, and return the figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    with fresh_databases(db_url, workdir, names=("service",)) as (url,):
        return _run(url, shoppers, workdir, seed, store, engine_shoppers, ramp_s, think_s,
                    progress or (lambda _: None))


def _run(url: str, shoppers: int, workdir: Path, seed: int, store: str, engine_shoppers: int,
         ramp_s: float, think_s: float, say: Progress) -> dict[str, Any]:
    load = round(os.getloadavg()[0], 2)
    admin = "wo_bench-" + secrets.token_hex(16)
    say(f"starting walkout serve ({engine_shoppers} simulated shoppers live beside)")
    proc, base = start_service(url, workdir, engine_shoppers, seed, store, admin,
                               workdir / "serve.log")
    try:
        say(f"{shoppers} concurrent shoppers against {base}")
        rec, wall = asyncio.run(drive(base, admin, shoppers, seed, store, ramp_s, think_s))
    finally:
        stop_service(proc)
    return {
        "shoppers": shoppers, "completed": rec.completed, "seed": seed, "store": store,
        "db": make_url(url).get_backend_name(), "engine_shoppers": engine_shoppers,
        "ramp_s": ramp_s, "think_s": think_s, "cpus": os.cpu_count(),
        "load_avg_1m_at_start": load,  # other work on the machine inflates the latencies
        **summarise(rec),
        "receipt_total_mismatches": rec.total_mismatches,
        "peak_in_store": rec.peak_in_store,  # shoppers admitted and not yet out, at most
        "seconds": round(wall, 2),
    }
