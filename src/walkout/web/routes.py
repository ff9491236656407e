"""The web pages and the JSON/SSE endpoints behind them.

Pages (``/``, ``/app``, ``/kiosk``) are static shells: Jinja2 templates with no data in them,
so they need no token; everything they show comes from bearer-token endpoints the page's
script calls with the token it was given (sign-up in the shopper app; pasted, or passed in the
URL fragment, which never reaches a server, on the staff pages).

Live updates are Server-Sent Events. The engine runs in another process and writes what it
sees to the database (:mod:`walkout.service.live`), so each stream tails the database on the
server — one indexed query every ``TAIL_S`` per open page — and pushes what is new; browsers
never poll. The stream is read with ``fetch`` (an ``EventSource`` cannot send the bearer
header), in the standard ``text/event-stream`` format. A stream outlives the request that
authenticated it, so each turn of it checks its token again (through the auth cache) and ends
once the token is revoked.

Every response carries the security headers of :mod:`walkout.web.headers` (no framing, no
script but the pages' own).

(No ``from __future__ import annotations``: FastAPI must see the role aliases that ``mount``
defines locally as real objects, not strings.)
"""

import asyncio
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import segno
from anyio import to_thread
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import BigInteger, func, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from walkout.cart.sessions import STAFF_PREFIX, is_staff_credential
from walkout.checkout.money import Money
from walkout.perception.evidence import CLIP_SUFFIX, clips_of_case
from walkout.service import checkout, disputes, entry, live, receipting, webhooks
from walkout.service.clock import aware
from walkout.service.deps import Deps
from walkout.service.errors import ServiceError, not_found
from walkout.service.live_state import ended_cases
from walkout.service.models import (
    Account,
    AlertAck,
    CartLine,
    Charge,
    Chargeback,
    Dispute,
    EngineEvent,
    PaymentMethod,
    PaymentWebhookEvent,
    Receipt,
    ReceiptLine,
    ReviewVerdict,
    Visit,
)
from walkout.service.payments.reported import made_outside
from walkout.service.ratelimit import Limits
from walkout.service.receipts import normalize_email
from walkout.service.receipts.mail import mask_email
from walkout.service.receipts.model import line_tax, tax_rows
from walkout.service.sales import sales_report
from walkout.service.security import Principal, Role
from walkout.web.headers import SecurityHeaders

HERE = Path(__file__).parent
#: how often a live stream looks for new rows (server side)
TAIL_S = 0.5
#: a comment line this often keeps proxies from closing an idle stream
KEEPALIVE_S = 15.0
#: where the contest links of receipts lead (``receipts.render.DEFAULT_CONTEST_URL``): the
#: shopper app, which opens that receipt's dispute form
CONTEST_PAGE = "/receipts/{receipt_id}/disputes/new"
#: the pages: no data in them, so no token (``PUBLIC_ROUTES`` of the app lists them)
PAGES = frozenset({("GET", "/"), ("GET", "/app"), ("GET", "/kiosk"), ("GET", CONTEST_PAGE)})
#: the largest event-log id a client may name: a 64-bit id (SQLite's; PostgreSQL's column is
#: 32-bit, and a query compares with a 64-bit value so that a larger one is no row, not an error)
ID_MAX = 2**63 - 1
#: the days a sales period may cover: the last day's next one and the store's local midnights
#: must be dates and instants (``date.max`` has no next day), and nothing predates 1970
SALES_DAYS = (date(1970, 1, 1), date(9999, 12, 30))
#: heatmap cell (m); a sample slower than this (m/s) counts as dwelling
CELL_M = 0.5
DWELL_MPS = 0.25
#: how far back the dashboard lists the payment provider's events that needed staff attention
ATTENTION_DAYS = 7
#: chargeback states in which the store must answer the bank (with evidence) by its due date
RESPOND = ("needs_response", "warning_needs_response")
#: which event-log sources the dashboard's event stream carries, by their suffix
CHANNELS = {"live": "positions", "alerts": "alert", "gates": "gate", "decisions": "decision",
            "evidence": "review", "health": "health"}

_env = Environment(loader=FileSystemLoader(HERE / "templates"),
                   autoescape=select_autoescape(["html"]))


#: the engine stream a review case is of (a run: an event-log source without its last part),
#: where a case id alone is ambiguous (``GET /v1/ops/reviews`` lists each case's)
StreamParam = Annotated[str | None, Query(min_length=1, max_length=64)]


def _run_of(source: str) -> str:
    """The stream (run) of an event-log source: ``<run>/evidence`` → ``<run>``."""
    return source.rpartition("/")[0]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ReviewDecisionIn(_Strict):
    """``shares``: engine session → [[product id, quantity], ...] it really took (or put
    back); {} when nothing was taken."""

    shares: dict[str, list[tuple[str, Annotated[int, Field(ge=1, le=50)]]]] = Field(
        max_length=8)
    note: str | None = Field(None, max_length=1000)

    @field_validator("shares")
    @classmethod
    def _each_product_once(cls, shares: dict[str, list[tuple[str, int]]]
                           ) -> dict[str, list[tuple[str, int]]]:
        """One row per product and session: the engine reads the rows as a mapping (a second
        row of a product would charge one count and move the shelf's stock by another)."""
        for sid, items in shares.items():
            seen = [pid for pid, _ in items]
            twice = sorted({pid for pid in seen if seen.count(pid) > 1})
            if twice:
                raise ValueError(f"session {sid} lists product(s) {', '.join(twice)} more "
                                 "than once: give each product once, with its whole quantity")
        return shares


class LineRefundIn(_Strict):
    product_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(1, ge=1, le=1000)
    note: str = Field(min_length=1, max_length=1000)


class AlertAckIn(_Strict):
    note: str | None = Field(None, max_length=1000)


class PaymentAckIn(_Strict):
    note: str | None = Field(None, max_length=500)


class CardLookupIn(_Strict):
    card_token: str = Field(min_length=3, max_length=255)


def _page(name: str, **ctx: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**ctx))


def _sse(event: str, data: Any, eid: int | None = None) -> str:
    head = f"id: {eid}\n" if eid is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _channel(source: str) -> str | None:
    return CHANNELS.get(source.rpartition("/")[2])


def _pseudonym(account_id: str | None) -> str | None:
    """What the dashboard calls a bound shopper: not a name, not an address."""
    return None if account_id is None else "acct-" + account_id[:6]


def _staff_by_credential(s: Session, credentials: set[str]) -> dict[str, str]:
    """``staff:<account>`` credential → what the dashboard calls that associate: their staff
    account's name (``account <id…>`` where it has none). Other credentials (shoppers') are
    never looked up: the dashboard names no shopper."""
    ids = {c: c.removeprefix(STAFF_PREFIX) for c in credentials if is_staff_credential(c)}
    if not ids:
        return {}
    names = dict(s.execute(select(Account.id, Account.display_name).where(
        Account.id.in_(sorted(set(ids.values()))), Account.kind == "staff")).all())
    return {c: names.get(a) or f"account {a[:8]}" for c, a in ids.items() if a in names}


def _staff_sessions(s: Session, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(run, engine session id) → the associate's name, for those of ``wanted`` the engine
    published as staff sessions (``<run>/staff`` rows, ``walkout.service.live``; a run is an
    event-log source without its last part). A shopper's session has no such row."""
    if not wanted:
        return {}
    creds = {(src.rpartition("/")[0], ref): json.loads(payload)["credential"]
             for src, ref, payload in s.execute(
                 select(EngineEvent.source, EngineEvent.ref, EngineEvent.payload).where(
                     EngineEvent.source.in_(sorted({f"{run}/staff" for run, _ in wanted})),
                     EngineEvent.ref.in_(sorted({sid for _, sid in wanted}))))}
    names = _staff_by_credential(s, set(creds.values()))
    return {key: names[c] for key, c in creds.items() if key in wanted and c in names}


def _decision_label(d: dict[str, Any]) -> str | None:
    """What a logged decision was, as the event stream labels it: a shopper's ``pick`` or
    ``put`` (back), or a stock move (``"stock": true``: a staff hand, or nobody's on a store
    closed for restocking) — ``restock`` (onto the plate) or ``removal``. None: nothing was
    decided (a review case)."""
    q = next((int(q) for _, q in d.get("items", []) if q), None)
    if q is None:
        return None
    if d.get("stock"):
        return "removal" if q > 0 else "restock"
    return "pick" if q > 0 else "put"


def _mentioned(ev: dict[str, Any]) -> list[str]:
    """The engine sessions a stream event names that may be an associate's: a stock move's
    session, an alert's subject (not the tracker's, whose subjects are track ids)."""
    d = ev["data"]
    if ev["channel"] == "decision":
        return [d["session_id"]] if d.get("stock") and d.get("session_id") else []
    if ev["channel"] == "alert" and ev["kind"] not in live.TRACK_ALERTS:
        return [x for x in str(d.get("subject") or "").split(",") if x]
    return []


def _stream_names(s: Session, events: list[dict[str, Any]]) -> None:
    """Name the associates the stream's events mention (``names``: engine session id or
    credential → name; the map's people: ``who`` and ``staff``), and label the decisions
    (``label``): a restock is not a put-back, nor a removal a pick. Staff only: a shopper is
    still shown by session id, credential or pseudonym."""
    runs = [ev.pop("source").rpartition("/")[0] for ev in events]
    creds: set[str] = set()
    for ev in events:
        d = ev["data"]
        if ev["channel"] == "gate":
            creds.add(d.get("credential") or "")
        elif ev["channel"] == "positions":
            creds |= {x.get("credential") or "" for x in d["people"]}
    by_cred = _staff_by_credential(s, creds)
    by_session = _staff_sessions(s, {(run, sid) for run, ev in zip(runs, events, strict=True)
                                     for sid in _mentioned(ev)})
    for run, ev in zip(runs, events, strict=True):
        d = ev["data"]
        if ev["channel"] == "decision":
            ev["label"] = _decision_label(d)
        if ev["channel"] == "positions":
            for x in d["people"]:
                if x.get("credential") in by_cred:
                    x["who"], x["staff"] = by_cred[x["credential"]], True
            continue
        names = {sid: by_session[(run, sid)] for sid in _mentioned(ev)
                 if (run, sid) in by_session}
        if ev["channel"] == "gate" and d.get("credential") in by_cred:
            names[d["credential"]] = by_cred[d["credential"]]
        if names:
            ev["names"] = names


#: an evidence clip's file name: letters, digits, '_', '-', '.' (no path)
_CLIP_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,160}$")


def mount(app: FastAPI, deps: Deps, need: Callable[..., Callable[..., Principal]],
          limits: Limits, authenticate: Callable[[str | None], Principal]) -> None:
    """Add the pages, their static files, their endpoints and the security headers to the
    service. ``limits``: the API's own limiters, so a page's route spends the same budget as
    the API route it mirrors; ``authenticate``: the API's (cached) token check, which the
    event streams repeat as they run."""
    sessions = deps.sessions
    store = deps.store
    Shopper = Annotated[Principal, Depends(need(Role.SHOPPER))]
    Operator = Annotated[Principal, Depends(need(Role.OPERATOR))]
    Kiosk = Annotated[Principal, Depends(need(Role.KIOSK, Role.OPERATOR))]

    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def valid(authorization: str | None) -> bool:
        """Whether a stream's token still works: a revocation through the API ends it at its
        next turn, one anywhere else within the auth cache's few seconds."""
        try:
            authenticate(authorization)
        except ServiceError:
            return False
        return True

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard_page() -> HTMLResponse:
        return _page("dashboard.html", store=store.name)

    @app.get("/app", response_class=HTMLResponse, include_in_schema=False)
    def shopper_page() -> HTMLResponse:
        return _page("app.html", store=store.name)

    @app.get("/kiosk", response_class=HTMLResponse, include_in_schema=False)
    def kiosk_page() -> HTMLResponse:
        return _page("kiosk.html", store=store.name)

    @app.get(CONTEST_PAGE, response_class=HTMLResponse, include_in_schema=False)
    def contest_page(receipt_id: str) -> HTMLResponse:
        """A receipt e-mail's "Contest this line": the shopper app, which reads the receipt
        and the line from its own URL and opens their dispute form."""
        return _page("app.html", store=store.name)

    # ---- shopper app -------------------------------------------------------------------------

    @app.post("/v1/app/entry-qr")
    def entry_qr(p: Shopper) -> dict[str, Any]:
        """The entry code and its QR code as SVG (drawn here: the page needs no library);
        rate-limited together with ``POST /v1/me/entry-code``."""
        limits.entry_codes.hit(p.account_id)
        issued = entry.issue_code(deps, p.account_id)
        svg = segno.make(issued.code, error="m").svg_inline(omitsize=True, border=2, dark="#111",
                                                            light="#fff")
        return {"code": issued.code, "expires_in_s": issued.expires_in_s, "svg": svg}

    def receipts_seen(s: Session, account_id: str) -> str:
        """A digest of what the app shows of the shopper's receipts: each one's total and
        review flag, and each of her disputes' state and refund. A review revision or a
        dispute decision changes it (not the number of receipts), so the stream pushes a
        ``cart`` and the app reloads them (it kept showing the receipt as first issued)."""
        rows = s.execute(select(Receipt.id, Receipt.total, Receipt.needs_review)
                         .join(Visit, Visit.id == Receipt.visit_id)
                         .where(Visit.account_id == account_id).order_by(Receipt.id)).all()
        dsp = s.execute(select(Dispute.id, Dispute.state, Dispute.quantity, Dispute.refund_amount)
                        .where(Dispute.account_id == account_id).order_by(Dispute.id)).all()
        seen = repr(([tuple(map(str, r)) for r in rows], [tuple(map(str, d)) for d in dsp]))
        return hashlib.sha256(seen.encode()).hexdigest()[:16]

    def cart_of(account_id: str) -> dict[str, Any]:
        with sessions() as s:
            v = s.scalar(select(Visit).where(Visit.account_id == account_id)
                         .order_by(Visit.entered_at.desc(), Visit.id.desc()).limit(1))
            n_receipts = s.scalar(select(func.count()).select_from(Receipt)
                                  .join(Visit, Visit.id == Receipt.visit_id)
                                  .where(Visit.account_id == account_id)) or 0
            has_method = s.scalar(select(PaymentMethod.id)
                                  .where(PaymentMethod.account_id == account_id).limit(1))
            out: dict[str, Any] = {"visit": None, "lines": [], "total": "0.00",
                                   "receipts": n_receipts,
                                   "receipts_seen": receipts_seen(s, account_id),
                                   "payment_method": bool(has_method),
                                   "owed": checkout.owed_by(s, account_id)}
            if v is None:
                return out
            held: Counter[str] = Counter()
            names, prices = {}, {}
            for ln in s.scalars(select(CartLine).where(CartLine.visit_id == v.id)):
                held[ln.product_id] += ln.quantity
                names[ln.product_id], prices[ln.product_id] = ln.name, Decimal(ln.unit_price)
            lines = [{"product_id": pid, "name": names[pid], "quantity": q,
                      "amount": str(Money(prices[pid] * q, v.currency).amount)}
                     for pid, q in sorted(held.items()) if q > 0]
            total = sum((prices[x["product_id"]] * x["quantity"] for x in lines), Decimal(0))
            out.update(visit={"visit_id": v.id, "state": v.state, "currency": v.currency},
                       lines=lines, total=str(Money(total, v.currency).amount))
            return out

    @app.get("/v1/app/cart")
    def my_cart(p: Shopper) -> dict[str, Any]:
        """The shopper's latest visit with its cart as the ledger has it now."""
        return cart_of(p.account_id)

    @app.get("/v1/app/disputes")
    def my_disputes(p: Shopper) -> list[dict[str, Any]]:
        """The shopper's contested lines and what became of them (``state``: open,
        refunding, refunded, rejected, corrected; ``refund``: what was paid back), newest
        first: the app shows each beside its receipt's line. No e-mail tells her the answer,
        so this is where she finds it; the operator's note stays with staff."""
        with sessions() as s:
            rows = s.execute(select(Dispute, Receipt.currency)
                             .join(Receipt, Receipt.id == Dispute.receipt_id)
                             .where(Dispute.account_id == p.account_id)
                             .order_by(Dispute.created_at.desc(), Dispute.id)).all()
            return [{"dispute_id": d.id, "receipt_id": d.receipt_id,
                     "product_id": d.product_id, "quantity": d.quantity, "state": d.state,
                     "refund": None if d.refund_amount is None else
                     str(Money(Decimal(d.refund_amount), cur).amount),
                     "currency": cur, "created_at": aware(d.created_at).isoformat(),
                     "resolved_at": None if d.resolved_at is None
                     else aware(d.resolved_at).isoformat()} for d, cur in rows]

    @app.get("/v1/app/stream")
    async def my_stream(request: Request, p: Shopper) -> StreamingResponse:
        """SSE: ``cart`` whenever the shopper's visit, cart or receipts change."""

        auth = request.headers.get("authorization")

        def turn() -> dict[str, Any] | None:
            return cart_of(p.account_id) if valid(auth) else None

        async def gen() -> AsyncIterator[str]:
            last = None
            quiet = 0.0
            while not await request.is_disconnected():
                now = await to_thread.run_sync(turn)
                if now is None:
                    return  # revoked (signed out, erased): the page sees 401 on reconnecting
                if now != last:
                    yield _sse("cart", now)
                    last, quiet = now, 0.0
                elif quiet >= KEEPALIVE_S:
                    yield ": keep-alive\n\n"
                    quiet = 0.0
                await asyncio.sleep(TAIL_S)
                quiet += TAIL_S

        return _stream(gen())

    # ---- kiosk -------------------------------------------------------------------------------

    @app.post("/v1/kiosk/card-receipts")
    def kiosk_card(body: CardLookupIn, p: Kiosk) -> list[dict[str, Any]]:
        """A tapped card's receipts (the card token is a card-tap guest's identity). Limited
        as the e-mail look-up is: one budget per terminal for both, and per card across
        terminals."""
        limits.lookups.hit(p.account_id)
        limits.lookups.hit("card:" + body.card_token)
        return [_receipt_json(it) for it in card_receipts(deps, body.card_token)]

    # ---- dashboard ---------------------------------------------------------------------------

    @app.get("/v1/ops/store")
    def store_layout(_: Operator) -> dict[str, Any]:
        """What the map draws: floor, gondolas, gates, plates, and the catalogue's names."""
        plates = {}
        for g in store.gondolas:
            for sh in g.shelves:
                for pl in sh.plates:
                    b = pl.box
                    plates[pl.id] = {"gondola": g.id, "shelf": sh.id,
                                     "box": [b.min[0], b.min[1], b.max[0], b.max[1]],
                                     "z": [b.min[2], b.max[2]]}
        return {
            "name": store.name, "currency": store.currency, "floor": store.floor.outline,
            "gondolas": [{"id": g.id, "box": [g.box.min[0], g.box.min[1], g.box.max[0],
                                              g.box.max[1]], "front": g.front}
                         for g in store.gondolas],
            "gates": [{"id": g.id, "kind": g.kind, "box": [g.area.min[0], g.area.min[1],
                                                          g.area.max[0], g.area.max[1]]}
                      for g in store.gates],
            "cameras": [{"id": c.id, "xyz": [float(x) for x in c.center]}
                        for c in store.cameras],
            "plates": plates,
            "products": {pr.id: {"name": pr.name, "price": str(pr.price)}
                         for pr in store.catalogue},
        }

    def who(s: Session, credentials: list[str]) -> dict[str, dict[str, Any]]:
        """credential → its visit, pseudonymous account and receipt."""
        out: dict[str, dict[str, Any]] = {}
        if not credentials:
            return out
        for v, rid in s.execute(select(Visit, Receipt.id)
                                .outerjoin(Receipt, Receipt.visit_id == Visit.id)
                                .where(Visit.credential.in_(credentials))).all():
            out[v.credential] = {"visit_id": v.id, "state": v.state, "receipt_id": rid,
                                 "who": _pseudonym(v.account_id)}
        return out

    def acks(s: Session, ids: list[int]) -> dict[int, dict[str, Any]]:
        """alert event id → its acknowledgement (``by``: the operator's account id,
        ``by_name``: its name, ``at``, ``note``); an alert nobody acknowledged is absent."""
        if not ids:
            return {}
        return {a.event_id: {"by": a.acked_by, "by_name": name, "at": aware(a.acked_at)
                             .isoformat(), "note": a.note}
                for a, name in s.execute(select(AlertAck, Account.display_name)
                                         .outerjoin(Account, Account.id == AlertAck.acked_by)
                                         .where(AlertAck.event_id.in_(ids))).all()}

    def tail(after: int, limit: int = 400
             ) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
        with sessions() as s:
            rows = s.execute(select(EngineEvent.id, EngineEvent.source, EngineEvent.kind,
                                    EngineEvent.t, EngineEvent.payload)
                             .where(EngineEvent.id > literal(after, BigInteger))
                             .order_by(EngineEvent.id)
                             .limit(limit)).all()
            out = []
            creds: set[str] = set()
            for rid, source, kind, t, payload in rows:
                ch = _channel(source)
                if ch is None:
                    continue
                data = json.loads(payload)
                if ch == "positions":
                    creds |= {x["credential"] for x in data["people"] if x["credential"]}
                out.append({"id": rid, "channel": ch, "kind": kind, "t": t, "data": data,
                            "source": source})
            ids = who(s, sorted(creds))
            acked = acks(s, [ev["id"] for ev in out if ev["channel"] == "alert"])
            for ev in out:
                if ev["channel"] == "alert":
                    ev["acked"] = acked.get(ev["id"])
                if ev["channel"] == "positions":
                    for x in ev["data"]["people"]:
                        x["who"] = ids.get(x["credential"] or "", {}).get("who")
            _stream_names(s, out)  # takes each event's source off
            last = rows[-1][0] if rows else after
            return out, last, changes(s)

    def changes(s: Session) -> dict[str, Any]:
        """What the dashboard shows of receipts, verdicts, disputes, money and acknowledgements,
        as counts and latest times (cheap each turn): the stream says ``changed`` when it
        moves. Each part is there because a change of it moves nothing else counted here."""
        return {
            "receipts": s.scalar(select(func.count()).select_from(Receipt)),
            "issued": s.scalar(select(func.max(Receipt.issued_at))),
            # recorded (another desk decided the case) and applied (the engine corrected
            # its receipts) are two changes of an open case
            "verdicts": s.scalar(select(func.count()).select_from(ReviewVerdict)),
            "applied_verdicts": s.scalar(select(func.count()).select_from(ReviewVerdict)
                                         .where(ReviewVerdict.applied_at.is_not(None))),
            # by state: a decision (another desk's, a refund confirmed later, a review's
            # correction) adds no row, only moves one from a state to another
            "disputes": tuple((st, n) for st, n in s.execute(
                select(Dispute.state, func.count()).group_by(Dispute.state)
                .order_by(Dispute.state))),
            # money moved on a receipt's visit, by kind and state: a second refund of a line
            # refunded before leaves its dispute refunded, a balance collected is a capture,
            # a charge confirmed later changes state (not a shopper's hold at the gate:
            # no receipt shows it yet)
            "charges": tuple((k, st, n) for k, st, n in s.execute(
                select(Charge.kind, Charge.status, func.count())
                .where(Charge.kind != "preauth").group_by(Charge.kind, Charge.status)
                .order_by(Charge.kind, Charge.status))),
            # a balance collected or written off (its receipt leaves review, its shopper may
            # enter), or owed again (a revision raised the receipt)
            "balances": tuple(s.execute(select(func.count(Visit.balance_settled_at),
                                               func.max(Visit.balance_settled_at))).one()),
            "alert_acks": s.scalar(select(func.count()).select_from(AlertAck)),
            # every chargeback change comes with its provider event
            "payment_events": s.scalar(select(func.count()).select_from(PaymentWebhookEvent)),
            "acked_payment_events": s.scalar(
                select(func.count(PaymentWebhookEvent.acknowledged_at))),
        }

    def start_id(backlog_s: float) -> int:
        """Where a new dashboard begins: the last ``backlog_s`` of engine time."""
        with sessions() as s:
            t = s.scalar(select(func.max(EngineEvent.t))) or 0.0
            first = s.scalar(select(func.min(EngineEvent.id)).where(
                EngineEvent.t >= t - backlog_s))
            return int(first or 1) - 1

    @app.get("/v1/ops/stream")
    async def ops_stream(request: Request, _: Operator,
                         backlog_s: Annotated[float, Query(ge=0, le=3600)] = 30.0,
                         after: Annotated[int | None, Query(ge=0, le=ID_MAX)] = None
                         ) -> StreamingResponse:
        """SSE of the event log: ``positions``, ``alert``, ``gate``, ``decision``, ``review``,
        ``health``; ``changed`` when receipts, verdicts (recorded, applied), disputes (a new
        one, or a decision), money movements (refunds, balance charges), balances settled,
        alert acknowledgements or the payment provider's events (chargebacks) change
        (:func:`changes`). An ``alert`` carries ``acked`` (null while nobody acknowledged
        it)."""

        auth = request.headers.get("authorization")

        def turn(since: int) -> tuple[list[dict[str, Any]], int, dict[str, Any]] | None:
            return tail(since) if valid(auth) else None

        async def gen() -> AsyncIterator[str]:
            last = after if after is not None else await to_thread.run_sync(start_id,
                                                                            backlog_s)
            mark: dict[str, Any] | None = None
            quiet = 0.0
            while not await request.is_disconnected():
                got = await to_thread.run_sync(turn, last)
                if got is None:
                    return  # revoked: the page sees 401 on reconnecting
                events, last, m = got
                for ev in events:
                    yield _sse(ev["channel"], ev, ev["id"])
                if m != mark:
                    if mark is not None:
                        yield _sse("changed", {
                            "receipts": m["receipts"], "verdicts": m["verdicts"],
                            "applied_verdicts": m["applied_verdicts"],
                            "disputes": sum(n for _, n in m["disputes"]),
                            "charges": sum(n for *_, n in m["charges"]),
                            "balances_settled": m["balances"][0],
                            "alert_acks": m["alert_acks"],
                            "payment_events": m["payment_events"]})
                    mark = m
                if events:
                    quiet = 0.0
                    continue  # a backlog: the next page at once
                if quiet >= KEEPALIVE_S:
                    yield ": keep-alive\n\n"
                    quiet = 0.0
                await asyncio.sleep(TAIL_S)
                quiet += TAIL_S

        return _stream(gen())

    # ---- review queue --------------------------------------------------------------------------

    def case_rows(s: Session, case_id: str | None = None,
                  stream: str | None = None) -> list[EngineEvent]:
        """The cases' evidence rows, newest first (of one case id, of one stream)."""
        q = select(EngineEvent).where(EngineEvent.source.like("%/evidence"))
        if case_id is not None:
            q = q.where(EngineEvent.ref == case_id)
        if stream is not None:
            q = q.where(EngineEvent.source == f"{stream}/evidence")
        return list(s.scalars(q.order_by(EngineEvent.t.desc(), EngineEvent.id.desc())))

    def one_case(s: Session, case_id: str, stream: str | None) -> tuple[str, dict[str, Any]]:
        """The stream and evidence of case ``case_id`` of ``stream``, or of the one stream
        that has a case of this id. Ids repeat across streams (a recording's clock starts at
        0 each time it is served): 409 ``ambiguous_case`` names the streams to choose from."""
        rows = case_rows(s, case_id, stream)
        if not rows:
            raise not_found("review case")
        streams = sorted({_run_of(r.source) for r in rows})
        if len(streams) > 1:
            raise ServiceError(409, "ambiguous_case",
                               f"streams {', '.join(streams)} each have a case {case_id}: "
                               "name one with ?stream=")
        return streams[0], json.loads(rows[0].payload)

    @app.get("/v1/ops/reviews")
    def reviews(_: Operator) -> list[dict[str, Any]]:
        """Every review case, with its ``stream``: open ones first, the longest waiting first
        (its receipt is issued under review, as the engine decided it, once ``review_hold_s``
        runs out); then decided ones, newest first."""
        with sessions() as s:
            verdicts = {(v.source, v.case_id): v for v in s.scalars(select(ReviewVerdict))}
            ended = ended_cases(s)
            out = []
            seen: set[tuple[str, str]] = set()
            for row in case_rows(s):
                ev = json.loads(row.payload)
                key = (_run_of(row.source), ev["case_id"])
                if key in seen:
                    continue
                seen.add(key)
                v = verdicts.get(key)
                top = ev["hypotheses"][0] if ev["hypotheses"] else None
                out.append({"case_id": ev["case_id"], "stream": key[0], "t": row.t,
                            "kind": ev["event"]["kind"],
                            "reasons": ev["reasons"], "sessions": ev["sessions"],
                            "decided": ev["decided"], "top": top,
                            "state": ("expired" if key in ended else "open")
                            if v is None else ("applied" if v.applied_at else "decided")})
            # open: the oldest first (its receipt has waited longest, its hold ends first)
            out.sort(key=lambda c: (c["state"] != "open", c["t"] if c["state"] == "open"
                                    else -c["t"]))
            return out

    @app.get("/v1/ops/reviews/{case_id}")
    def review(case_id: str, _: Operator, stream: StreamParam = None) -> dict[str, Any]:
        """One case's evidence, with the visit and receipt of each session in it; ``stream``
        where more than one stream has a case of this id."""
        with sessions() as s:
            run, ev = one_case(s, case_id, stream)
            v = s.get(ReviewVerdict, {"source": run, "case_id": case_id})
            ev["stream"] = run
            creds = ev.get("credentials", {})
            ids = who(s, list(creds.values()))
            staff = _staff_by_credential(s, set(creds.values()))  # an inventory case's
            ev["people"] = {sid: {"who": staff[c], "staff": True} if c in staff
                            else ids.get(c, {"who": None}) for sid, c in creds.items()}
            ev["verdict"] = None if v is None else {
                "shares": json.loads(v.shares), "note": v.note, "decided_by": v.decided_by,
                "decided_by_name": s.scalar(select(Account.display_name)
                                            .where(Account.id == v.decided_by)),
                "decided_at": aware(v.decided_at).isoformat(),
                "applied": v.applied_at is not None}
            ev["products"] = {pid: store.products[pid].name for h in ev["hypotheses"]
                              for pid, _ in h["items"] if pid in store.products}
            ev["clips"] = case_clips(s, run, case_id)
            return dict(ev)

    def case_clips(s: Session, run: str, case_id: str) -> list[dict[str, str]]:
        """The blurred camera clips `walkout evidence` cut around the case of stream ``run``,
        in evidence_dir (named by stream and case: ``clips_of_case``); those named by case id
        alone only while no other stream has a case of this id (they may be its clips)."""
        folder = deps.settings.evidence_dir
        if folder is None:
            return []
        alone = {_run_of(r.source) for r in case_rows(s, case_id)} == {run}
        return [{"name": name, "camera": camera}
                for name, camera in clips_of_case(folder, run, case_id, unqualified=alone)]

    @app.get("/v1/ops/clips/{name}")
    def clip(name: str, _: Operator) -> FileResponse:
        """One evidence clip (already blurred), for the review page's player. Only plain
        names of clip files directly in evidence_dir are served."""
        folder = deps.settings.evidence_dir
        if (folder is None or not _CLIP_NAME.match(name) or not name.endswith(CLIP_SUFFIX)
                or not (folder / name).is_file()):
            raise not_found("clip")
        return FileResponse(folder / name, media_type="video/webm")

    @app.post("/v1/ops/reviews/{case_id}/decision", status_code=201)
    def decide_review(case_id: str, body: ReviewDecisionIn, p: Operator,
                      stream: StreamParam = None) -> dict[str, Any]:
        """Record the verdict on the case of ``stream`` (needed only where more than one
        stream has a case of this id); that stream's engine worker applies it at its next
        chunk, and the cart and the receipt follow (a receipt already issued is revised)."""
        with sessions() as s:
            run, ev = one_case(s, case_id, stream)
            allowed = set(ev["sessions"])
            if (run, case_id) in ended_cases(s):
                raise ServiceError(409, "stream_ended", "this case's engine stream ended (the "
                                   "store was empty and a new one began) with the case "
                                   "undecided: the receipt stands as issued; correct it with a "
                                   "refund on the receipt")
        for sid, items in body.shares.items():
            if sid not in allowed:
                raise ServiceError(422, "unknown_session",
                                   f"session {sid!r} is not one of this case's "
                                   f"({', '.join(sorted(allowed))})")
            for pid, _q in items:
                if pid not in store.products:
                    raise ServiceError(422, "unknown_product", f"unknown product {pid!r}")
        shares = {sid: [[pid, q] for pid, q in items] for sid, items in body.shares.items()
                  if items}
        try:
            with sessions.begin() as s:
                s.add(ReviewVerdict(source=run, case_id=case_id, shares=json.dumps(shares),
                                    decided_by=p.account_id, note=body.note,
                                    decided_at=deps.clock.now()))
        except IntegrityError:
            raise ServiceError(409, "already_decided",
                               "this review case was already decided") from None
        return {"case_id": case_id, "stream": run, "state": "decided", "shares": shares}

    # ---- receipts and disputes ---------------------------------------------------------------

    @app.get("/v1/ops/receipts")
    def search_receipts(_: Operator,
                        q: Annotated[str, Query(max_length=200)] = "",
                        limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[dict[str, Any]]:
        """Receipts newest first; ``q``: a receipt or visit id (prefix), an e-mail address,
        or a product (id or part of its name)."""
        q = q.strip()
        with sessions() as s:
            stmt = (select(Receipt, Visit, Account).join(Visit, Visit.id == Receipt.visit_id)
                    .join(Account, Account.id == Visit.account_id))
            if q:
                like = q.lower().replace("%", "").replace("_", "") + "%"
                in_lines = select(ReceiptLine.receipt_id).where(or_(
                    ReceiptLine.product_id == q,
                    func.lower(ReceiptLine.name).like("%" + like)))
                stmt = stmt.where(or_(Receipt.id.like(like), Visit.id.like(like),
                                      func.lower(Account.email) == normalize_email(q),
                                      Receipt.id.in_(in_lines)))
            found = s.execute(stmt.order_by(Receipt.issued_at.desc(), Receipt.id.desc())
                              .limit(limit)).all()
            open_disputes = Counter(s.scalars(select(Dispute.receipt_id).where(
                Dispute.state.in_(("open", "refunding")))))
            return [{"receipt_id": r.id, "visit_id": v.id,
                     "issued_at": aware(r.issued_at).isoformat(),
                     "total": str(Money(Decimal(r.total), r.currency).amount),
                     "currency": r.currency, "state": v.state, "needs_review": r.needs_review,
                     "who": _pseudonym(a.id),
                     "email": mask_email(a.email) if a.email else None,
                     "open_disputes": open_disputes.get(r.id, 0)} for r, v, a in found]

    @app.get("/v1/ops/receipts/{receipt_id}")
    def receipt_detail(receipt_id: str, _: Operator) -> dict[str, Any]:
        """A receipt with each line's evidence (the engine's decisions and their scores),
        its disputes, its money movements (``outside``: a refund made outside walkout, which
        the provider reported; ``note`` says so) and its bank chargebacks."""
        with sessions() as s:
            r = s.get(Receipt, receipt_id)
            if r is None:
                raise not_found("receipt")
            issued = receipting.load(deps, s, r)
            out = _receipt_json(issued)
            events = {ln.product_id: json.loads(ln.events) for ln in s.scalars(
                select(ReceiptLine).where(ReceiptLine.receipt_id == r.id))}
            refs = sorted({e for evs in events.values() for e in evs})
            # its visit's stream's: another stream may have events of the same ids
            streams = disputes.streams_of(s, r.visit_id, refs)
            logged = s.scalars(select(EngineEvent).where(
                EngineEvent.ref.in_(refs), EngineEvent.kind == "decision")).all() if refs else []
            by_ref = {e.ref: json.loads(e.payload) for e in logged
                      if streams is None or _run_of(e.source) in streams}
            review = disputes.reviews(s, refs, streams)
            for ln in out["lines"]:
                # one entry per event: a verdict's correcting line shares its event's id
                ln["evidence"] = [{"event_id": e, "review": review.get(e), **({
                    "confidence": by_ref[e]["confidence"], "scores": by_ref[e]["scores"],
                    "needs_review": by_ref[e]["needs_review"], "reasons": by_ref[e]["reasons"],
                    "by_arm": by_ref[e].get("by_arm", False)}  # older logs: by a seen wrist
                    if e in by_ref else {})}
                    for e in dict.fromkeys(events.get(ln["product_id"], []))]
            out["disputes"] = [disputes.summary(deps, s, d) | {"reason": d.reason}
                               for d in s.scalars(select(Dispute)
                                                  .where(Dispute.receipt_id == r.id))]
            out["charges"] = [_charge_json(c) for c in s.scalars(
                select(Charge).where(Charge.visit_id == r.visit_id).order_by(Charge.id))]
            out["chargebacks"] = [_chargeback_json(cb) for cb in s.scalars(
                select(Chargeback).where(Chargeback.visit_id == r.visit_id)
                .order_by(Chargeback.opened_at, Chargeback.id))]
            v = s.get(Visit, r.visit_id)
            out["state"] = v.state if v else None
            return out

    @app.post("/v1/ops/receipts/{receipt_id}/refund")
    def refund_line(receipt_id: str, body: LineRefundIn, p: Operator) -> dict[str, Any]:
        """Refund part of a line on the store's own initiative: recorded as a dispute the
        operator opens and decides at once, so it goes through the same capped, idempotent
        refund as a shopper's (``disputes.staff_refund``: the quantity staff found, also over
        the shopper's own open dispute of the line; a refusal leaves no dispute behind)."""
        return disputes.staff_refund(deps, receipt_id, body.product_id, body.quantity,
                                     p.account_id, body.note)

    # ---- what the payment provider reported: chargebacks, events staff must act on ----------

    def with_receipts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each event with its visit's ``receipt_id`` (None: no visit, or no receipt yet)."""
        vids = sorted({e["visit_id"] for e in events if e["visit_id"]})
        with sessions() as s:
            receipts = dict(s.execute(select(Receipt.visit_id, Receipt.id).where(
                Receipt.visit_id.in_(vids))).all()) if vids else {}
        for e in events:
            e["receipt_id"] = receipts.get(e["visit_id"])
        return events

    @app.get("/v1/ops/payment-attention")
    def payment_attention(_: Operator,
                          days: Annotated[int, Query(ge=1, le=90)] = ATTENTION_DAYS,
                          include_acknowledged: bool = False) -> dict[str, Any]:
        """What the dashboard's payments card shows: the open bank chargebacks, those the
        store must answer first, the nearest evidence due date first (past it, the money is
        lost), and the provider's events that needed staff attention in the last ``days``
        days (holds gone, captures refused, chargebacks, refunds made outside walkout) and
        that nobody acknowledged yet, newest first, each with its visit's receipt;
        ``include_acknowledged``: those staff acknowledged too, with who and when.
        ``counts``: ``attention_events`` still to check, ``acknowledged_events`` done, both
        over the ``days``, ``owed_balances``: visits with part of their receipt still owed
        (above the hold, a capture refused, a revision above what was taken) that the saved
        card did not pay (their shoppers are refused at the gate until it is collected or
        written off); ``unconfirmed_charges``: provider calls whose outcome is still
        unknown 15 minutes after they were first made (retried with their keys; one that never
        resolves is settled with the provider). ``reports``: whether this store's provider
        reports anything (a Stripe store's webhook)."""
        since = deps.clock.now() - timedelta(days=days)
        open_cbs = webhooks.chargebacks(deps, only_open=True)
        for cb in open_cbs:
            cb["respond"] = cb["status"] in RESPOND
        open_cbs.sort(key=lambda cb: (not cb["respond"], cb["evidence_due_by"] is None,
                                      datetime.fromisoformat(cb["evidence_due_by"] or
                                                             cb["opened_at"])))
        events = with_receipts(webhooks.events(
            deps, attention=True, limit=100, since=since,
            acknowledged=None if include_acknowledged else False))
        with sessions() as s:
            n_events, n_acked = s.execute(
                select(func.count(), func.count(PaymentWebhookEvent.acknowledged_at)).where(
                    PaymentWebhookEvent.outcome == webhooks.ATTENTION,
                    PaymentWebhookEvent.received_at >= since)).one()
        owed = checkout.owed_balances(deps)
        unconfirmed = with_receipts(checkout.unconfirmed_charges(deps))
        return {"reports": deps.settings.payment_provider == "stripe", "days": days,
                "counts": {"open_chargebacks": len(open_cbs),
                           "respond": sum(cb["respond"] for cb in open_cbs),
                           "attention_events": int(n_events) - int(n_acked),
                           "acknowledged_events": int(n_acked),
                           "owed_balances": len(owed),
                           "unconfirmed_charges": len(unconfirmed)},
                "open_chargebacks": open_cbs, "attention_events": events,
                "owed_balances": owed, "unconfirmed_charges": unconfirmed}

    @app.post("/v1/ops/visits/{visit_id}/balance/collect")
    def collect_balance(visit_id: str, _: Operator) -> dict[str, Any]:
        """Charge a visit's balance owed (what its capture could not take) to the shopper's
        saved card again (after they updated it): the balance as it stands after the attempt
        (``settled``, ``last_attempt``). 409 ``no_balance``: nothing owed; ``cannot_charge``: this
        provider cannot charge a saved card (collect it there, or write it off)."""
        return checkout.collect_balance(deps, visit_id)

    @app.post("/v1/ops/visits/{visit_id}/balance/write-off")
    def write_off_balance(visit_id: str, p: Operator,
                          body: PaymentAckIn | None = None) -> dict[str, Any]:
        """Settle a visit's balance without collecting it (the store gives it up, or took it
        another way): its shopper may enter again; who, when and the ``note`` are kept.
        Idempotent. 409 ``no_balance``; ``balance_collecting``: a charge of it is in flight."""
        return checkout.write_off_balance(deps, visit_id, p.account_id,
                                          body.note if body else None)  # logged there

    @app.post("/v1/ops/payment-events/{event_id}/acknowledge")
    def acknowledge_payment_event(event_id: str, p: Operator,
                                  body: PaymentAckIn | None = None) -> dict[str, Any]:
        """Staff handled a payment event that needed attention (its ``event_id``, as the
        payments card lists it): it leaves the card's list, and ``acknowledged`` says who
        (``by``, ``by_name``), when and the ``note``. Idempotent: acknowledging it again
        keeps the first acknowledgement and answers it. 404: no such event; 409
        ``not_attention``: an event that needed nobody."""
        return with_receipts([webhooks.acknowledge(deps, event_id, p.account_id,
                                                   body.note if body else None)])[0]

    # ---- store health and analytics ----------------------------------------------------------

    # ---- alerts -------------------------------------------------------------------------------

    def alert_out(s: Session, row: EngineEvent) -> dict[str, Any]:
        """An alert as the stream's ``alert`` events carry it, with its ``acked``."""
        return {"id": row.id, "kind": row.kind, "t": row.t, "data": json.loads(row.payload),
                "acked": acks(s, [row.id]).get(row.id)}

    @app.get("/v1/ops/alerts")
    def alerts(_: Operator, limit: Annotated[int, Query(ge=1, le=500)] = 100,
               unacked: bool = False) -> list[dict[str, Any]]:
        """The last ``limit`` alerts, newest first (store time), each with ``acked`` (``by``,
        ``by_name``, ``at``, ``note``; null while nobody acknowledged it) and, as the stream's
        have them, ``names`` of the associates it mentions; ``unacked``: only those (the
        dashboard lists them on opening: its stream starts only 30 s back)."""
        with sessions() as s:
            q = select(EngineEvent).where(EngineEvent.source.like("%/alerts"))
            if unacked:
                q = q.where(~select(AlertAck.event_id)
                            .where(AlertAck.event_id == EngineEvent.id).exists())
            rows = list(s.scalars(q.order_by(EngineEvent.t.desc(), EngineEvent.id.desc())
                                  .limit(limit)))
            acked = acks(s, [r.id for r in rows])
            out = [{"id": r.id, "channel": "alert", "kind": r.kind, "t": r.t,
                    "data": json.loads(r.payload), "acked": acked.get(r.id),
                    "source": r.source} for r in rows]
            _stream_names(s, out)  # takes each source off
            for ev in out:
                del ev["channel"]
            return out

    @app.post("/v1/ops/alerts/{event_id}/ack")
    def ack_alert(event_id: Annotated[int, PathParam(ge=1, le=ID_MAX)], p: Operator,
                  body: AlertAckIn | None = None) -> dict[str, Any]:
        """Acknowledge an alert (its event id, as the stream and ``GET /v1/ops/alerts`` give
        it). Idempotent: acknowledging it again changes nothing and answers the first
        acknowledgement."""
        def row(s: Session) -> EngineEvent:
            ev = s.scalar(select(EngineEvent)
                          .where(EngineEvent.id == literal(event_id, BigInteger)))
            if ev is None or not ev.source.endswith("/alerts"):
                raise not_found("alert")
            return ev

        with sessions() as s:
            ev = row(s)
            if s.get(AlertAck, event_id) is not None:
                return alert_out(s, ev)
        try:
            with sessions.begin() as s:
                s.add(AlertAck(event_id=event_id, acked_by=p.account_id,
                               note=body.note if body else None,
                               acked_at=deps.clock.now()))
        except IntegrityError:
            pass  # acknowledged meanwhile (or purged): the row says which
        with sessions() as s:
            return alert_out(s, row(s))

    @app.get("/v1/ops/health")
    def store_health(_: Operator) -> dict[str, Any]:
        """The latest health snapshot the engine wrote (plates, cameras, inventory), and the
        receipt e-mail's state (``mail``: :func:`mail_state`)."""
        with sessions() as s:
            row = s.scalar(select(EngineEvent).where(EngineEvent.source.like("%/health"))
                           .order_by(EngineEvent.id.desc()).limit(1))
            out = ({"t": None, "plates": {}, "cameras": {}, "inventory": [], "learned": {},
                    "inputs": {}}
                   if row is None else dict(json.loads(row.payload)))
            return out | {"mail": mail_state(s)}

    def mail_state(s: Session) -> dict[str, Any]:
        """``smtp``: whether receipts are e-mailed at all (a server is set); ``fault``: while
        the mail server refuses the store's own settings (its last e-mail alert is
        ``mail_refused``, not yet followed by ``mail_back``), that alert's ``alert_id``,
        ``message`` (what the server answered and which settings to fix), ``since`` (wall
        clock), ``acked`` (an acknowledgement does not end it: only a message going out does)
        and ``waiting``, the e-mails waiting for a retry now (the alert's own count is of when
        it was raised); null when there is none."""
        fault = None
        last = s.scalar(select(EngineEvent).where(EngineEvent.source == receipting.MAIL_ALERTS)
                        .order_by(EngineEvent.seq.desc()).limit(1))
        if last is not None and last.kind == receipting.MAIL_REFUSED:
            alert = json.loads(last.payload)
            waiting = receipting.waiting(s)
            fault = {"alert_id": last.id, "message": alert["message"],
                     "since": alert.get("at") or aware(last.recorded_at).isoformat(),
                     "acked": acks(s, [last.id]).get(last.id), "waiting": int(waiting)}
        return {"smtp": deps.settings.smtp_host is not None, "fault": fault}

    @app.get("/v1/ops/stock-moves")
    def stock_moves(_: Operator,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[dict[str, Any]]:
        """The engine's stock decisions, newest first (store time): restocks and removals by
        a staff hand (``by``: the staff session; ``by_name``: the associate's staff account
        name, null where the log does not say whose badge opened it) or by nobody's on a
        store marked closed (``by``: ``store``). ``moves``: what each plate's stock moved by,
        + restocked, − removed; an inventory case moves nothing while open, and what its
        verdict says once decided (``charged``: the shoppers it names, whose hand it was)."""
        with sessions() as s:
            return _stock_moves(s, limit, {pid: p.name for pid, p in store.products.items()})

    @app.get("/v1/ops/analytics")
    def analytics(_: Operator,
                  minutes: Annotated[float | None, Query(gt=0, le=24 * 60)] = None
                  ) -> dict[str, Any]:
        """Where shoppers walked and dwelt (counts per ``CELL_M`` cell; staff are left out),
        and picks and put-backs per product, over the last ``minutes`` of engine time
        (default: all)."""
        return analytics_of(minutes)

    @app.get("/v1/ops/sales")
    def sales(_: Operator,
              days: Annotated[int, Query(ge=1, le=366)] = 7,
              until: Annotated[date | None, Query(description="last day (YYYY-MM-DD, the "
                                                  "store's time zone); default today")] = None,
              ) -> dict[str, Any]:
        """Visits, conversion, baskets and money per day of the store (its time zone) over
        the ``days`` days ending ``until``: see ``walkout.service.sales`` for what is counted
        on which day. 422 ``invalid_request``: a period not within 1970-01-01..9999-12-30."""
        last = until or deps.clock.now().astimezone(store.zone).date()
        lo, hi = SALES_DAYS
        if not lo + timedelta(days=days - 1) <= last <= hi:
            raise ServiceError(422, "invalid_request",
                               f"until: {days} days ending {last} are not all within "
                               f"{lo}..{hi}")
        with sessions() as s:
            return sales_report(s, zone=store.zone, currency=store.currency,
                                first=last - timedelta(days=days - 1), last=last,
                                names={pid: p.name for pid, p in store.products.items()})

    def analytics_of(minutes: float | None) -> dict[str, Any]:
        xs = [p[0] for p in store.floor.outline]
        ys = [p[1] for p in store.floor.outline]
        x0, y0 = min(xs), min(ys)
        nx = max(1, math.ceil((max(xs) - x0) / CELL_M))
        ny = max(1, math.ceil((max(ys) - y0) / CELL_M))
        walk = [[0] * nx for _ in range(ny)]
        dwell = [[0] * nx for _ in range(ny)]
        picks: Counter[str] = Counter()
        puts: Counter[str] = Counter()
        with sessions() as s:
            t_max = s.scalar(select(func.max(EngineEvent.t))) or 0.0
            t_min = -math.inf if minutes is None else t_max - 60.0 * minutes
            # a person's samples continue from one chunk's row to the next: the speed of a
            # row's first sample is measured from the previous row's last
            last: dict[tuple[str, int], tuple[float, float, float]] = {}
            for source, payload in s.execute(select(EngineEvent.source, EngineEvent.payload)
                                             .where(EngineEvent.source.like("%/live"),
                                                    EngineEvent.t >= t_min)
                                             .order_by(EngineEvent.t, EngineEvent.id)):
                for person in json.loads(payload)["people"]:
                    if person.get("staff"):  # an associate restocking is not a shopper
                        continue
                    key = (source, person["track"])
                    prev = last.get(key)
                    for t, x, y in person["pts"]:
                        i = min(nx - 1, max(0, int((x - x0) / CELL_M)))
                        j = min(ny - 1, max(0, int((y - y0) / CELL_M)))
                        slow = prev is not None and t > prev[0] and math.hypot(
                            x - prev[1], y - prev[2]) / (t - prev[0]) < DWELL_MPS
                        (dwell if slow else walk)[j][i] += 1
                        prev = (t, x, y)
                    if prev is not None:
                        last[key] = prev
            for pid, q in _shelf_items(s, t_min):
                (picks if q > 0 else puts)[pid] += abs(q)
        products = [{"product_id": pid, "name": store.products[pid].name if pid in
                     store.products else pid, "picks": picks[pid], "putbacks": puts[pid]}
                    for pid in sorted(set(picks) | set(puts),
                                      key=lambda k: -(picks[k] + puts[k]))]
        return {"t0": None if minutes is None else t_min, "t1": t_max,
                "grid": {"x0": x0, "y0": y0, "cell": CELL_M, "nx": nx, "ny": ny,
                         "walk": walk, "dwell": dwell}, "products": products}


def _shelf_items(s: Session, t_min: float) -> list[tuple[str, int]]:
    """(product, signed quantity: + picked, − put back) of every shelf decision since
    ``t_min``, as settled: a decided review case counts as its verdict says (the engine's
    decision may name no product, or the wrong one), not as the engine first decided. Stock
    decisions (restocks and removals by staff hands or while the store was closed) are not
    shopping and are left out. A decision, its shelf event and its verdict are matched within
    their stream (another stream may have an event of the same id)."""
    rows = [(_run_of(src), ref, payload) for src, ref, payload in s.execute(
        select(EngineEvent.source, EngineEvent.ref, EngineEvent.payload).where(
            EngineEvent.source.like("%/decisions"), EngineEvent.t >= t_min))]
    refs = sorted({ref for _, ref, _ in rows if ref})
    verdicts: dict[tuple[str, str], dict[str, list[list[Any]]]] = {}
    kinds: dict[tuple[str, str], str] = {}
    if refs:
        verdicts = {(v.source, v.case_id): json.loads(v.shares) for v in s.scalars(
            select(ReviewVerdict).where(ReviewVerdict.case_id.in_(refs)))}
    if verdicts:  # a shelf event's kind (a hand to the floor is none: its items stay as is)
        kinds = {(_run_of(src), ref): kind for src, ref, kind in s.execute(
            select(EngineEvent.source, EngineEvent.ref, EngineEvent.kind).where(
                EngineEvent.source.in_(sorted({f"{run}/shelf" for run, _ in verdicts})),
                EngineEvent.ref.in_(sorted({ref for _, ref in verdicts}))))}
    out: list[tuple[str, int]] = []
    for run, ref, payload in rows:
        doc = json.loads(payload)
        if doc.get("stock"):
            continue  # a restock or removal (staff hands, store closed): stock, not shopping
        key = (run, ref or "")
        if key in verdicts and key in kinds:
            sign = 1 if kinds[key] == "pick" else -1
            out += [(str(pid), sign * int(q)) for items in verdicts[key].values()
                    for pid, q in items]
        else:
            out += [(str(pid), int(q)) for pid, q in doc["items"]]
    return out


def _stock_moves(s: Session, limit: int, names: dict[str, str]) -> list[dict[str, Any]]:
    """``GET /v1/ops/stock-moves``: the last ``limit`` decisions logged with ``"stock":
    true`` (``runner._decision``), each with its shelf event's plates and its inventory
    case's verdict, if any (a case's id is its shelf event's)."""
    rows = []  # (run: the source without "/decisions", ref, t, recorded_at, decision)
    for src, ref, t, at, payload in s.execute(
            select(EngineEvent.source, EngineEvent.ref, EngineEvent.t, EngineEvent.recorded_at,
                   EngineEvent.payload)
            .where(EngineEvent.source.like("%/decisions"),
                   EngineEvent.payload.like('%"stock": true%'))  # json.dumps' spacing
            .order_by(EngineEvent.t.desc(), EngineEvent.id.desc()).limit(limit)):
        d = json.loads(payload)
        if d.get("stock") is True:
            rows.append((src.rpartition("/")[0], ref, t, at, d))
    refs = sorted({ref for _, ref, *_ in rows if ref})
    shelf: dict[tuple[str, str], tuple[str, list[str]]] = {}
    verdicts: dict[tuple[str, str], ReviewVerdict] = {}
    if refs:
        for src, ref, kind, payload in s.execute(
                select(EngineEvent.source, EngineEvent.ref, EngineEvent.kind, EngineEvent.payload)
                .where(EngineEvent.source.in_(sorted({run + "/shelf" for run, *_ in rows})),
                       EngineEvent.ref.in_(refs))):
            shelf[(src.rpartition("/")[0], ref)] = (kind, json.loads(payload)["plates"])
        verdicts = {(v.source, v.case_id): v for v in s.scalars(
            select(ReviewVerdict).where(ReviewVerdict.case_id.in_(refs)))}
    staff = _staff_sessions(s, {(run, d["session_id"]) for run, *_, d in rows
                                if d.get("session_id")})
    out = []
    for run, ref, t, at, d in rows:
        kind, plates = shelf.get((run, ref), (None, []))
        by = d.get("session_id") or "store"  # a closed store's moves: its pseudo-session
        v = verdicts.get((run, ref)) if d.get("needs_review") else None
        if v is not None:  # a decided inventory case: + what was put on, − what was taken
            shares = json.loads(v.shares)
            sign = 1 if kind == "put" else -1
            moved: Counter[str] = Counter()
            for items in shares.values():
                for pid, q in items:
                    moved[str(pid)] += sign * int(q)
            charged = sorted(sid for sid in shares if sid != by)
        else:  # the decision's items: + taken off the plate, − put on it
            moved = Counter()
            for pid, q in d.get("items", []):
                moved[str(pid)] -= int(q)
            charged = []
        out.append({
            "event_id": ref, "t": t, "recorded_at": aware(at).isoformat(), "plates": plates,
            "by": by, "by_name": staff.get((run, by)),
            "moves": [{"product_id": pid, "name": names.get(pid, pid), "quantity": q}
                      for pid, q in moved.items() if q],
            "review": None if not d.get("needs_review") else
            "open" if v is None else "applied" if v.applied_at is not None else "decided",
            "charged": charged, "reasons": list(d.get("reasons", []))})
    return out


def card_receipts(deps: Deps, card_token: str) -> list[receipting.Issued]:
    """The kiosk's card look-up: the receipts of visits paid with this card token, the newest
    20. Shared with the receipt HTML/PDF routes, which show a kiosk only what this finds."""
    with deps.sessions() as s:
        recs = s.scalars(select(Receipt).join(Visit, Visit.id == Receipt.visit_id)
                         .join(PaymentMethod, PaymentMethod.id == Visit.payment_method_id)
                         .where(PaymentMethod.provider_ref == card_token)
                         .order_by(Receipt.issued_at.desc()).limit(20)).all()
        return [receipting.load(deps, s, r) for r in recs]


def _stream(gen: AsyncIterator[str]) -> StreamingResponse:
    """``X-Keepalive-S``: the longest the stream stays silent (a keep-alive comment at the
    latest), so that a page can tell a connection that died without a close from a quiet
    store and reconnect."""
    return StreamingResponse(gen, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no",
                                      "X-Keepalive-S": f"{KEEPALIVE_S:g}"})


def _receipt_json(it: receipting.Issued) -> dict[str, Any]:
    doc = it.doc
    return {"receipt_id": doc.receipt_id, "visit_id": it.visit_id, "currency": doc.currency,
            "total": doc.fmt(doc.total), "under_review": doc.under_review,
            "issued_at": doc.issued_at.isoformat(), "store": doc.store_name,
            "lines": [{"product_id": ln.product_id, "name": ln.name, "quantity": ln.quantity,
                       "unit_price": doc.fmt(ln.unit_price), "amount": doc.fmt(doc.line_total(ln)),
                       **line_tax(ln)} for ln in doc.lines],
            "tax": tax_rows(doc)}  # included in the total, per rate; empty: none itemised


def _charge_json(c: Charge) -> dict[str, Any]:
    """A money movement as a receipt's detail lists it; ``outside``: a refund made outside
    walkout (the provider's dashboard), which nobody decided here (``note`` says who reported
    it)."""
    outside = c.kind == "refund" and made_outside(c.idempotency_key)
    return {"kind": c.kind, "status": c.status,
            "amount": str(Money(Decimal(c.amount), c.currency).amount),
            "at": aware(c.created_at).isoformat(), "outside": outside,
            "note": c.error if outside else None}


def _chargeback_json(cb: Chargeback) -> dict[str, Any]:
    """A chargeback as a receipt's detail lists it (``GET /v1/ops/chargebacks`` has them all)."""
    return {"chargeback_id": cb.id, "amount": str(Money(Decimal(cb.amount), cb.currency).amount),
            "currency": cb.currency, "reason": cb.reason, "status": cb.status,
            "open": cb.status not in webhooks.CLOSED, "respond": cb.status in RESPOND,
            **webhooks.fee_json(cb),
            "evidence_due_by": None if cb.evidence_due_by is None
            else aware(cb.evidence_due_by).isoformat(),
            "opened_at": aware(cb.opened_at).isoformat(),
            "closed_at": None if cb.closed_at is None else aware(cb.closed_at).isoformat()}
