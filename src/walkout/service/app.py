"""The FastAPI app factory: every dependency comes in as an argument, nothing is global.

(No ``from __future__ import annotations`` here: FastAPI must see the role aliases that
``create_app`` defines locally as real objects, not strings.)

Routes are thin: they authorise, validate and call the domain modules (``entry``,
``checkout``, ``accounts``), which own the transactions. Every route needs a bearer token
except ``GET /health``, ``POST /v1/accounts`` (sign-up) and, on a Stripe store, ``POST
/v1/webhooks/stripe`` (authenticated by its Stripe-Signature HMAC instead); ``test_security``
walks the route table to keep it that way.
"""


import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from anyio import to_thread
from fastapi import BackgroundTasks, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from walkout.checkout.money import Money
from walkout.service import (
    accounts,
    checkout,
    disputes,
    entry,
    housekeeping,
    privacy,
    receipting,
    redact,
    retention,
    revisions,
    staff,
    store_mode,
    webhooks,
)
from walkout.service.clock import Clock, SystemClock
from walkout.service.db import make_engine, session_factory, upgrade
from walkout.service.deps import Deps
from walkout.service.errors import ServiceError, not_found
from walkout.service.mail import Mailer, OutboxMailer
from walkout.service.models import (
    Account,
    ApiToken,
    CartLine,
    Dispute,
    Receipt,
    ReceiptLine,
    Visit,
)
from walkout.service.payments.base import PaymentProvider
from walkout.service.payments.configured import configured_provider
from walkout.service.ratelimit import Limits
from walkout.service.receipts import normalize_email, render_html, render_pdf
from walkout.service.receipts.mail import SmtpMailer
from walkout.service.receipts.model import line_tax, tax_rows
from walkout.service.receipts.render import HTML_CSP
from walkout.service.schemas import (
    AccountCreated,
    AdmissionOut,
    CardTap,
    CartLinesIn,
    CartLinesOut,
    DisputeDecision,
    DisputeOut,
    EntryCodeOut,
    ExitOut,
    KioskLookup,
    MoneyOut,
    NewAccount,
    NewDispute,
    NewPaymentMethod,
    NewStaff,
    PrivacyRequest,
    PurgeIn,
    QrScan,
    ReceiptLineOut,
    ReceiptOut,
    StaffAdmissionOut,
    StaffBadgeOut,
    StaffBadgeScan,
    StaffOut,
    StoreModeIn,
    TaxLineOut,
    VisitOut,
)
from walkout.service.security import Principal, Role, authenticate, authorize, hash_token
from walkout.service.settings import ServiceSettings
from walkout.store import load_store
from walkout.store.model import Store
from walkout.web import PAGES as WEB_PAGES
from walkout.web import card_receipts
from walkout.web import mount as mount_web

log = logging.getLogger("walkout.service")

STRIPE_WEBHOOK = "/v1/webhooks/stripe"

#: routes without a bearer token; the Stripe webhook (on a Stripe store only) is authenticated
#: by its signature
PUBLIC_ROUTES = frozenset({("GET", "/health"), ("POST", "/v1/accounts"),
                           ("POST", STRIPE_WEBHOOK)}) | WEB_PAGES
#: how long an authenticated token is taken on trust, and how many are kept
AUTH_CACHE_S = 5.0
AUTH_CACHE_SIZE = 10_000


def _money(m: Money) -> MoneyOut:
    return MoneyOut(amount=str(m.amount), currency=m.currency)


def create_app(
    settings: ServiceSettings,
    *,
    engine: Engine | None = None,
    sessions: sessionmaker[Session] | None = None,
    clock: Clock | None = None,
    provider: PaymentProvider | None = None,
    mailer: Mailer | None = None,
    store: Store | None = None,
    migrate: bool = True,
    background: Callable[[Deps, threading.Event], None] | None = None,
    mail_in_api: bool = True,
) -> FastAPI:
    """Build the service. Anything not given is made from ``settings`` (SQLite file, the
    configured payment provider: the ledger, or Stripe with its key; system clock, in-memory
    outbox). ``background`` runs in a thread for the app's
    lifetime (the live engine runner) and is told to stop through the event.

    ``mail_in_api`` False leaves receipt e-mails to another process (``walkout serve``: the
    engine worker's outbox loop, :func:`receipting.mail_loop`), so that rendering them costs
    the API nothing; by default the API sends each right after answering the exit."""
    redact.install()
    engine = engine or make_engine(settings.db_url, synchronous=settings.sqlite_synchronous)
    if migrate:
        upgrade(engine)
    sessions = sessions or session_factory(engine)
    clock = clock or SystemClock()
    if provider is None:
        provider = configured_provider(settings, sessions, clock)
    if settings.payment_provider == "stripe":
        log.info("payments: Stripe, %s mode", "live" if settings.stripe_live else "test")
    deps = Deps(settings, sessions, clock, provider, mailer or _mailer(settings),
                store or load_store(settings.store))
    limits = Limits.from_settings(clock, settings)  # shared with the web routes (mount_web)
    if settings.bootstrap_admin_token is not None:
        _bootstrap_admin(deps, settings.bootstrap_admin_token.get_secret_value())
    entry.resume_authorizing(deps)
    checkout.resume_checkouts(deps)
    disputes.resume_refunds(deps)
    revisions.resume_pending(deps)  # review refunds and releases a crash or outage left
    entry.void_unknown_holds(deps)  # holds of shoppers turned away on a lost answer

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # request threads share one GIL and (on SQLite) one write lock; measured under the
        # burst profile of `walkout bench service`, 8 threads gave a worse tail than 40
        to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        stop = threading.Event()
        # unsent receipts (SMTP outage, crash) go out in the background: an unreachable mail
        # server must not hold up the start of the store
        if mail_in_api:
            threading.Thread(target=_resume_mail, args=(deps,), name="mail",
                             daemon=True).start()
        # payments left unknown, abandoned visits, retention: without a restart or a cron job
        threading.Thread(target=housekeeping.run, args=(deps, stop), name="housekeeping",
                         daemon=True).start()
        th = None
        if background is not None:
            th = threading.Thread(target=background, args=(deps, stop), name="engine",
                                  daemon=True)
            th.start()
        yield
        stop.set()
        if th is not None:
            th.join(timeout=30)

    app = FastAPI(title="walkout store service", version="1", lifespan=lifespan)
    app.state.deps = deps

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, e: ServiceError) -> JSONResponse:
        return JSONResponse({"error": e.code, "detail": e.detail}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        # name the field and the problem; never echo the input (it may be a card number)
        problems = [f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        return JSONResponse({"error": "invalid_request", "detail": "; ".join(problems)},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(e.detail)}, status_code=e.status_code)

    def _authenticate(authorization: str | None) -> Principal:
        with sessions() as s:
            return authenticate(s, authorization)

    # bearer token (its hash) → principal, for a few seconds (accounts.AuthCache). Whatever
    # revokes tokens here (erasure, staff revocation, a shopper signing out) calls
    # auth_cache.clear() after its commit: the tokens stop working at once, and a request
    # that authenticated just before cannot re-cache them.
    auth_cache = accounts.AuthCache(_authenticate, AUTH_CACHE_S, AUTH_CACHE_SIZE)

    def need(*roles: Role) -> Callable[..., Principal]:
        allowed = frozenset(roles)

        def dep(authorization: Annotated[str | None, Header()] = None) -> Principal:
            p = auth_cache.principal(authorization)
            authorize(p, allowed)
            return p

        return dep

    Shopper = Annotated[Principal, Depends(need(Role.SHOPPER))]
    Operator = Annotated[Principal, Depends(need(Role.OPERATOR))]
    Admin = Annotated[Principal, Depends(need(Role.ADMIN))]
    Anyone = Annotated[Principal, Depends(need(Role.SHOPPER, Role.OPERATOR))]
    Kiosk = Annotated[Principal, Depends(need(Role.KIOSK, Role.OPERATOR))]

    # ---- public ----------------------------------------------------------------------------

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/accounts", status_code=201)
    def sign_up(body: NewAccount) -> AccountCreated:
        account_id, token = accounts.create_shopper(deps, body.email, body.name)
        log.info("account created: %s", account_id)
        return AccountCreated(account_id=account_id, token=token)

    if settings.payment_provider == "stripe":
        _mount_stripe_webhook(app, deps)

    # ---- shopper ---------------------------------------------------------------------------

    @app.get("/v1/me")
    def me(p: Shopper) -> dict[str, Any]:
        with sessions() as s:
            a = s.get(Account, p.account_id)
            assert a is not None
            return {"account_id": a.id, "kind": a.kind, "email": a.email,
                    "name": a.display_name, "owed": checkout.owed_by(s, a.id)}

    @app.post("/v1/me/payment-methods", status_code=201)
    def add_method(body: NewPaymentMethod, p: Shopper) -> dict[str, str]:
        return {"payment_method_id": accounts.add_payment_method(
            deps, p.account_id, body.provider_ref, body.label)}

    @app.post("/v1/me/balances/{visit_id}/pay")
    def pay_balance(visit_id: str, p: Shopper) -> dict[str, Any]:
        """Pay what an earlier visit still owes (the gate refuses her until it is settled)
        with her newest payment method: add a card first to pay with another one. 402
        ``payment_declined``: refused, still owed; 409 ``no_balance``; 429: too many tries."""
        limits.balance_payments.hit(p.account_id)
        return checkout.pay_own_balance(deps, p.account_id, visit_id)

    @app.post("/v1/me/entry-code")
    def entry_code(p: Shopper) -> EntryCodeOut:
        limits.entry_codes.hit(p.account_id)
        issued = entry.issue_code(deps, p.account_id)
        return EntryCodeOut(code=issued.code, expires_in_s=issued.expires_in_s)

    def _receipt(receipt_id: str, p: Principal) -> receipting.Issued:
        with sessions() as s:
            r = s.get(Receipt, receipt_id)
            v = s.get(Visit, r.visit_id) if r else None
            if r is None or v is None or (p.role == Role.SHOPPER and v.account_id != p.account_id):
                raise not_found("receipt")  # another shopper's receipt does not exist for you
            return receipting.load(deps, s, r)

    @app.get("/v1/receipts")
    def my_receipts(p: Shopper) -> list[ReceiptOut]:
        return [_receipt_out(it) for it in receipting.for_account(deps, p.account_id)]

    Reader = Annotated[Principal, Depends(need(Role.SHOPPER, Role.OPERATOR, Role.KIOSK))]
    # what a kiosk still holds of its look-up: the address typed or the card tapped
    KioskEmail = Annotated[str | None, Header(max_length=320)]
    KioskCard = Annotated[str | None, Header(max_length=255)]

    def _printable(receipt_id: str, p: Principal, email: str | None,
                   card: str | None) -> receipting.Issued:
        """A receipt to render as HTML or PDF. A kiosk has no receipts of its own: it gets
        one only while it names the look-up that shows it (``X-Kiosk-Email`` or
        ``X-Kiosk-Card``: what the customer gave it, which the page forgets with her) and
        that look-up finds it now, so it never sees more than the look-up routes show (not
        by the id alone, nor once the account is erased). Not rate-limited again: without
        the unguessable id only a look-up gives out, the answer is always 404."""
        if p.role != Role.KIOSK:
            return _receipt(receipt_id, p)
        found = (receipting.for_email(deps, email) if email
                 else card_receipts(deps, card) if card else [])
        it = next((x for x in found if x.doc.receipt_id == receipt_id), None)
        if it is None:
            raise not_found("receipt")
        return it

    # the .html/.pdf routes come first: {receipt_id} alone would match "x.html" too
    @app.get("/v1/receipts/{receipt_id}.html", response_class=HTMLResponse)
    def receipt_html(receipt_id: str, p: Reader, x_kiosk_email: KioskEmail = None,
                     x_kiosk_card: KioskCard = None) -> HTMLResponse:
        it = _printable(receipt_id, p, x_kiosk_email, x_kiosk_card)
        return HTMLResponse(render_html(it.doc), headers={"Content-Security-Policy": HTML_CSP})

    @app.get("/v1/receipts/{receipt_id}.pdf", response_class=Response)
    def receipt_pdf(receipt_id: str, p: Reader, x_kiosk_email: KioskEmail = None,
                    x_kiosk_card: KioskCard = None) -> Response:
        it = _printable(receipt_id, p, x_kiosk_email, x_kiosk_card)
        return Response(render_pdf(it.doc), media_type="application/pdf",
                        headers={"Content-Disposition":
                                 f'inline; filename="receipt-{receipt_id}.pdf"'})

    @app.get("/v1/receipts/{receipt_id}")
    def get_receipt(receipt_id: str, p: Anyone) -> ReceiptOut:
        return _receipt_out(_receipt(receipt_id, p))

    @app.get("/v1/me/export")
    def export_me(p: Shopper) -> dict[str, Any]:
        return privacy.export(deps, p.account_id)

    @app.delete("/v1/me")
    def erase_me(p: Shopper) -> dict[str, Any]:
        done = privacy.erase(deps, p.account_id)
        auth_cache.clear()  # its tokens are revoked: no request may pass on a cached one
        log.info("account erased: %s", p.account_id)
        return {"erased": True, **done}

    @app.post("/v1/disputes", status_code=201)
    def open_dispute(body: NewDispute, p: Shopper) -> DisputeOut:
        limits.disputes.hit(p.account_id)
        with sessions.begin() as s:
            r = s.get(Receipt, body.receipt_id)
            v = s.get(Visit, r.visit_id) if r else None
            if r is None or v is None or v.account_id != p.account_id:
                raise not_found("receipt")
            line = s.scalar(select(ReceiptLine).where(ReceiptLine.receipt_id == r.id,
                                                      ReceiptLine.product_id == body.product_id))
            if line is None:
                raise ServiceError(422, "no_such_line",
                                   f"receipt has no line for product {body.product_id!r}")
            if body.quantity > line.quantity:
                raise ServiceError(422, "too_many",
                                   f"the line has {line.quantity}, cannot dispute "
                                   f"{body.quantity}")
            if s.scalar(select(Dispute.id).where(Dispute.receipt_id == r.id,
                                                 Dispute.product_id == body.product_id)):
                raise ServiceError(409, "already_disputed", "this line is already disputed")
            dsp = Dispute(receipt_id=r.id, account_id=p.account_id, product_id=body.product_id,
                          quantity=body.quantity, reason=body.reason, state="open",
                          created_at=clock.now())
            s.add(dsp)
            try:
                s.flush()
            except IntegrityError:  # the same line disputed at the same moment (a double tap)
                raise ServiceError(409, "already_disputed",
                                   "this line is already disputed") from None
            return DisputeOut(dispute_id=dsp.id, state=dsp.state)

    # ---- gates and store staff ---------------------------------------------------------------

    def _admission(a: entry.Admission, response: Response) -> AdmissionOut:
        """201 for a new admission; 200 for a gate's retry answered with the original one
        (``entry``: the same code, or card, at the same gate while the visit is open)."""
        if a.replayed:
            response.status_code = 200
        return AdmissionOut(visit_id=a.visit_id, credential=a.credential,
                            party_size=a.party_size, hold=_money(a.hold), replayed=a.replayed)

    @app.post("/v1/gates/{gate_id}/scan", status_code=201)
    def scan(gate_id: str, body: QrScan, _: Operator, response: Response) -> AdmissionOut:
        _gate(deps, gate_id)
        return _admission(entry.admit_qr(deps, body.code, gate_id, body.party_size,
                                         body.credential), response)

    @app.post("/v1/gates/{gate_id}/card", status_code=201)
    def card(gate_id: str, body: CardTap, p: Operator, response: Response) -> AdmissionOut:
        _gate(deps, gate_id)
        limits.card_taps.hit(f"{p.account_id}:{gate_id}")
        return _admission(entry.admit_card(deps, body.card_token, gate_id, body.email,
                                           body.party_size), response)

    @app.post("/v1/gates/{gate_id}/staff", status_code=201)
    def staff_scan(gate_id: str, body: StaffBadgeScan, _: Operator) -> StaffAdmissionOut:
        """A staff badge at the gate: no visit, no pre-authorisation; the gate puts the
        answer's credential in its GateEvent and the engine tracks a staff session."""
        _gate(deps, gate_id)
        a = staff.admit_staff(deps, body.badge)
        return StaffAdmissionOut(account_id=a.account_id, credential=a.credential)

    @app.get("/v1/store-mode")
    def get_store_mode(_: Operator) -> dict[str, Any]:
        return store_mode.current(deps)

    @app.post("/v1/store-mode")
    def put_store_mode(body: StoreModeIn, p: Operator) -> dict[str, Any]:
        """Mark the store closed for restocking (or open again); the engine applies it at its
        next chunk and records where, so that a replay applies it at the same place."""
        return store_mode.set_mode(deps, body.closed, p.account_id, body.note)

    @app.get("/v1/visits/{visit_id}")
    def get_visit(visit_id: str, p: Anyone) -> VisitOut:
        with sessions() as s:
            v = s.get(Visit, visit_id)
            if v is None or (p.role == Role.SHOPPER and v.account_id != p.account_id):
                raise not_found("visit")
            n = s.scalar(select(func.count()).select_from(CartLine)
                         .where(CartLine.visit_id == visit_id)) or 0
            return VisitOut(visit_id=v.id, state=v.state, party_size=v.party_size,
                            gate_id=v.gate_id, lines=n)

    @app.post("/v1/visits/{visit_id}/cart-lines")
    def cart_lines(visit_id: str, body: CartLinesIn, _: Operator) -> CartLinesOut:
        added = checkout.add_lines(deps, visit_id, [
            checkout.LineRequest(ln.line_key, ln.product_id, ln.quantity, ln.event_id,
                                 ln.confidence, ln.t) for ln in body.lines])
        return CartLinesOut(added=added)

    @app.post("/v1/visits/{visit_id}/exit")
    def exit_(visit_id: str, _: Operator, tasks: BackgroundTasks) -> ExitOut:
        r = checkout.exit_visit(deps, visit_id, mail=False)
        # the receipt is stored and the money settled: answer now, e-mail right after (once;
        # a crash in between is resent by resume_mail on the next start)
        if mail_in_api:
            tasks.add_task(_mail, deps, r.receipt_id)
        return ExitOut(visit_id=r.visit_id, state=r.state, receipt_id=r.receipt_id,
                       total=_money(r.total), charged=_money(r.charged))

    @app.get("/v1/disputes")
    def list_disputes(_: Operator) -> list[dict[str, Any]]:
        with sessions() as s:
            return [disputes.summary(deps, s, d)
                    for d in s.scalars(select(Dispute).order_by(Dispute.created_at))]

    @app.get("/v1/disputes/{dispute_id}")
    def get_dispute(dispute_id: str, _: Operator) -> dict[str, Any]:
        return disputes.case(deps, dispute_id)

    @app.post("/v1/disputes/{dispute_id}/decision")
    def decide_dispute(dispute_id: str, body: DisputeDecision, p: Operator) -> dict[str, Any]:
        return disputes.decide(deps, dispute_id, p.account_id, body.decision, body.note)

    # ---- what the payment provider reported (its webhook) -------------------------------------

    @app.get("/v1/ops/chargebacks")
    def list_chargebacks(_: Operator, only_open: bool = False) -> list[dict[str, Any]]:
        """Bank chargebacks of visits' payments, newest first (``only_open``: not yet won,
        lost or closed): respond to them in the provider's dashboard before
        ``evidence_due_by``; walkout refunds nothing of a payment while its money is
        withheld."""
        return webhooks.chargebacks(deps, only_open)

    @app.get("/v1/ops/payment-events")
    def payment_events(_: Operator, attention: bool = False,
                       limit: Annotated[int, Query(ge=1, le=500)] = 100
                       ) -> list[dict[str, Any]]:
        """The provider's webhook events, newest first, with what each did (``attention``:
        only those staff must act on: chargebacks, holds gone, refunds made elsewhere)."""
        return webhooks.events(deps, attention, limit)

    # ---- kiosk -------------------------------------------------------------------------------

    @app.post("/v1/kiosk/receipts")
    def kiosk_receipts(body: KioskLookup, p: Kiosk) -> list[ReceiptOut]:
        limits.lookups.hit(p.account_id)  # per terminal, and per address across terminals
        limits.lookups.hit("address:" + normalize_email(body.email))
        return [_receipt_out(it) for it in receipting.for_email(deps, body.email)]

    # ---- admin -------------------------------------------------------------------------------

    @app.post("/v1/admin/retention/purge")
    def purge(body: PurgeIn, _: Admin) -> dict[str, Any]:
        days = body.days or settings.retention_days
        return {"days": days, "deleted": retention.sweep(deps, days)}

    # ---- privacy requests made to staff (a card-tap guest has no app to make them with) -----

    @app.post("/v1/admin/privacy/export")
    def privacy_export(body: PrivacyRequest, _: Admin) -> dict[str, Any]:
        """Everything stored about each account the request names (staff have checked the
        requester's identity)."""
        ids = privacy.accounts_for_request(deps, body.email, body.card_token)
        return {"accounts": [privacy.export(deps, a) for a in ids]}

    @app.post("/v1/admin/privacy/erase")
    def privacy_erase(body: PrivacyRequest, p: Admin) -> dict[str, Any]:
        """Erase each account the request names, as ``DELETE /v1/me`` would."""
        ids = privacy.accounts_for_request(deps, body.email, body.card_token)
        done = {a: {"erased": True, **privacy.erase(deps, a)} for a in ids}
        auth_cache.clear()  # their tokens are revoked
        log.info("accounts erased on request, by %s: %s", p.account_id, ", ".join(ids))
        return {"accounts": done}

    @app.post("/v1/admin/staff", status_code=201)
    def new_staff(body: NewStaff, _: Admin) -> AccountCreated:
        account_id, token = accounts.create_staff(deps, Role(body.role), body.name)
        return AccountCreated(account_id=account_id, token=token)

    @app.post("/v1/admin/staff/{account_id}/badge", status_code=201)
    def staff_badge(account_id: str, _: Admin) -> StaffBadgeOut:
        """A badge for a staff account to enter as staff (revoked with the account)."""
        return StaffBadgeOut(account_id=account_id, badge=staff.issue_badge(deps, account_id))

    # ---- token revocation (staff accounts; a shopper signing out) ----------------------------

    @app.get("/v1/admin/staff")
    def list_staff(_: Admin) -> list[StaffOut]:
        return [StaffOut(**x) for x in accounts.list_staff(deps)]

    @app.delete("/v1/admin/staff/{account_id}")
    def revoke_staff(account_id: str, p: Admin) -> StaffOut:
        """Revoke a staff account's tokens: refused at once, open event streams end."""
        if account_id == p.account_id:  # the last admin would lock everyone out
            raise ServiceError(409, "own_account", "an admin cannot revoke their own account: "
                               "ask another admin")
        out = accounts.revoke_staff(deps, account_id)
        auth_cache.clear()
        log.info("staff account revoked: %s", account_id)
        return StaffOut(**out)

    @app.delete("/v1/me/token")
    def sign_out(_: Shopper, authorization: Annotated[str, Header()]) -> dict[str, bool]:
        """The shopper app's sign-out: the token it forgets is revoked as well."""
        accounts.revoke_token(deps, authorization)
        auth_cache.clear()
        return {"signed_out": True}

    # the dashboard, shopper app and kiosk (walkout.web); its event streams re-check tokens
    mount_web(app, deps, need, limits, auth_cache.principal)
    return app


def _mount_stripe_webhook(app: FastAPI, d: Deps) -> None:
    """``POST /v1/webhooks/stripe``: public, authenticated by the Stripe-Signature HMAC of
    the raw body under ``stripe_webhook_secret``. A body that does not verify is refused (400)
    with nothing recorded; a verified event is recorded and applied once
    (:func:`webhooks.receive`) and answered 200, whatever it was, so Stripe stops sending it;
    only a failure to record it answers 5xx, and Stripe's retry applies it then."""
    from walkout.service.payments.stripe import StripeWebhookReceiver, WebhookRejected

    s = d.settings
    assert s.stripe_webhook_secret is not None  # the settings refuse stripe without it
    receiver = StripeWebhookReceiver(s.stripe_webhook_secret.get_secret_value(),
                                     tolerance_s=s.stripe_webhook_tolerance_s)
    live = s.stripe_live

    @app.post(STRIPE_WEBHOOK)
    async def stripe_webhook(request: Request) -> dict[str, Any]:
        payload = await _body(request, webhooks.MAX_BODY)
        try:
            event = webhooks.Event.of(
                receiver.verify(payload, request.headers.get("stripe-signature")))
        except WebhookRejected as e:
            log.warning("stripe webhook refused: %s", e.reason)
            raise ServiceError(400, e.code, e.reason) from None
        except ValueError as e:  # signed, but no event walkout can read
            log.warning("stripe webhook refused: %s", e)
            raise ServiceError(400, "bad_payload", str(e)) from None
        got = await to_thread.run_sync(webhooks.receive, d, event, live)
        return {"received": True, "event_id": got.event_id, "type": got.type,
                "outcome": got.outcome, "detail": got.detail, "duplicate": got.duplicate}


async def _body(request: Request, limit: int) -> bytes:
    """The raw body (a signature covers the bytes as sent), refused (413) past ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ServiceError(413, "too_large", f"a webhook body is at most {limit} bytes")
    chunks, n = [], 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > limit:
            raise ServiceError(413, "too_large", f"a webhook body is at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _receipt_out(it: receipting.Issued) -> ReceiptOut:
    doc = it.doc
    return ReceiptOut(
        receipt_id=doc.receipt_id, visit_id=it.visit_id, currency=doc.currency,
        total=doc.fmt(doc.total), needs_review=it.needs_review, under_review=doc.under_review,
        issued_at=doc.issued_at.isoformat(),
        lines=[ReceiptLineOut(product_id=ln.product_id, name=ln.name, quantity=ln.quantity,
                              unit_price=doc.fmt(ln.unit_price),
                              amount=doc.fmt(doc.line_total(ln)), **line_tax(ln))
               for ln in doc.lines],
        tax=[TaxLineOut(**row) for row in tax_rows(doc)])


def _mailer(settings: ServiceSettings) -> Mailer:
    """SMTP when a host is configured, else the in-memory outbox (embedded default)."""
    if settings.smtp_host is None:
        return OutboxMailer()
    pw = settings.smtp_password
    return SmtpMailer(settings.smtp_host, settings.smtp_port, starttls=settings.smtp_starttls,
                      username=settings.smtp_username,
                      password=pw.get_secret_value() if pw else None)


def _mail(d: Deps, receipt_id: str) -> None:
    try:
        receipting.mail_receipt(d, receipt_id)
    except Exception:
        log.exception("receipt %s: e-mail not sent (resent on the next start)", receipt_id)


def _resume_mail(d: Deps) -> None:
    try:
        receipting.resume_mail(d)
    except Exception:
        log.exception("resending unsent receipts failed")


def _gate(d: Deps, gate_id: str) -> None:
    gates = {g.id for g in d.store.gates if g.kind == "entry"}
    if gate_id not in gates:
        raise ServiceError(404, "unknown_gate",
                           f"no entry gate {gate_id!r} in store {d.store.name!r}")


def _bootstrap_admin(d: Deps, token: str) -> None:
    """First start: an admin with the configured token (later starts find it and do nothing)."""
    with d.sessions() as s:
        if s.scalar(select(ApiToken.id).where(ApiToken.token_hash == hash_token(token))):
            return
    accounts.create_staff(d, Role.ADMIN, "bootstrap admin", token)
