"""Issued receipts as documents, and their e-mail sent exactly once.

The document is rebuilt from the stored receipt rows (frozen at exit from the durable cart
ledger), never from engine memory, so what is shown, e-mailed and charged is one number.

Sending follows the pattern of payments: (1) a transaction claims the send by inserting the
receipt's ``receipt_mails`` row (``receipt_id`` and ``message_id`` UNIQUE: a concurrent second
claim loses the insert); (2) the SMTP hand-over, outside any transaction; (3) its record. A
``sent`` row is never sent again, so retried exits, duplicated exit messages and restarts send
nothing more. The one window left is a crash between (2) and (3): :func:`resume_mail` resends
such a stale claim with the same Message-ID, which mail clients fold into one message.

A review verdict that revises an issued receipt claims one more e-mail, ``revision`` n, in
the very transaction that re-freezes the receipt (:func:`claim_revision`): the claim and the
change commit together, a replayed verdict changes nothing and so claims nothing, and the row
holds the revised lines and what changed, so every attempt sends the same message. A receipt
whose own e-mail goes out only after a revision (an SMTP outage, a crash) is sent as it was
issued, rebuilt from that record, and its revisions follow it.

A decided dispute answers the shopper the same way: the decision's transaction claims the
receipt's next message (:func:`claim_dispute`, a row whose ``changes`` say ``"kind":
"dispute"``), sent after the refund by :func:`mail_revision`: refunded (back to the card, or
off what she still owed) or the charge kept, above the receipt as it stands.

A server that refuses the store's own settings for good, or lacks what they require (MAIL
FROM or AUTH answered 5xx, STARTTLS or AUTH not offered, a failed TLS handshake: the mailer
says so, :func:`~walkout.service.mail.config_refusal`) would fail every message: that try is
not counted against :data:`MAX_ATTEMPTS`, a batch of sends stops at it (the rest wait,
claimed, for the timer), and an operator alert says so once (``mail_refused``, on the event
log's :data:`MAIL_ALERTS`), followed by ``mail_back`` once a message goes out again, as a
silent device's ``device_silent`` is by its ``device_back``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from typing import Any, Literal

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from walkout.service import disputes
from walkout.service.balances import balance_charges
from walkout.service.clock import aware
from walkout.service.deps import Deps
from walkout.service.mail import ConfigRefusal, config_refusal
from walkout.service.models import (
    Account,
    Charge,
    Dispute,
    EngineEvent,
    Receipt,
    ReceiptLine,
    ReceiptMail,
    Visit,
)
from walkout.service.receipts import (
    ReceiptDoc,
    ReceiptDocLine,
    ReceiptRevision,
    build_dispute_message,
    build_message,
    build_revision_message,
    diff_lines,
    find_receipts,
    message_id,
    normalize_email,
)
from walkout.service.receipts.mail import mask_email
from walkout.service.receipts.render import dispute_notice, owed_notice, public_contest_url

log = logging.getLogger("walkout.service.receipts")

#: a ``sending`` claim older than this is taken for a crashed sender and retried
STALE_CLAIM = timedelta(minutes=5)
#: how long a failed send waits before its next try, by the tries made so far (the
#: housekeeping timer retries them: an SMTP outage of minutes or hours delays receipts, it
#: does not wait for the service's next start); after the last, the row is left to staff
RETRY_AFTER = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15),
               timedelta(hours=1), timedelta(hours=3), timedelta(hours=6),
               timedelta(hours=12))
#: a send is tried this many times in all
MAX_ATTEMPTS = len(RETRY_AFTER) + 1
#: the event-log source of the e-mail alerts (``GET /v1/ops/alerts`` lists every ``…/alerts``)
MAIL_ALERTS = "service:mail/alerts"
#: the server refuses (or lacks) what the store's settings send with; e-mail goes out again
MAIL_REFUSED, MAIL_BACK = "mail_refused", "mail_back"
#: by the step that failed (:class:`~walkout.service.mail.ConfigRefusal`): what the server
#: does to the store's settings, and what the operator must make true
_LACKS = "lacks what the store's settings require"
_FAULTS = {
    "sender": ("refuses the store's sender", "WALKOUT_MAIL_SENDER is fixed"),
    "login": ("refuses the store's login",
              "WALKOUT_SMTP_USERNAME and WALKOUT_SMTP_PASSWORD are fixed"),
    "starttls": (_LACKS,
                 "WALKOUT_SMTP_HOST and WALKOUT_SMTP_PORT name a server (or its submission "
                 "port) that offers STARTTLS"),
    "auth": (_LACKS,
             "the server offers AUTH (many do only after STARTTLS: WALKOUT_SMTP_STARTTLS), or "
             "WALKOUT_SMTP_USERNAME is unset for a server that needs no login"),
    "tls": (_LACKS,
            "the server's certificate is valid for WALKOUT_SMTP_HOST and trusted by this "
            "host's CA certificates"),
}
_FAULT = ("refuses the store's settings", "the SMTP settings are fixed")


class _Refused(Exception):
    """The server refused (or lacks) what the store's settings send with (recorded, alerted):
    every other message of the batch would fail the same, so the batch stops."""


@dataclass(frozen=True, slots=True)
class Issued:
    """A stored receipt as its document, with who it belongs to."""

    doc: ReceiptDoc
    visit_id: str
    account_id: str
    needs_review: bool


def recipient(acct: Account | None) -> str | None:
    """Where a visit's receipt goes: the account's address — for a card-tap guest, the one that
    card gave on an earlier tap — and nowhere once the shopper had their data erased."""
    if acct is None or acct.erased_at is not None or not acct.email:
        return None
    return acct.email


def load(d: Deps, s: Session, rec: Receipt, email: str | None = None) -> Issued:
    """The document of a stored receipt; ``email`` overrides the account's address."""
    v = s.get(Visit, rec.visit_id)
    assert v is not None
    acct = s.get(Account, v.account_id)
    rows = s.scalars(select(ReceiptLine).where(ReceiptLine.receipt_id == rec.id)
                     .order_by(ReceiptLine.position)).all()
    disputed = s.scalar(select(func.count()).select_from(Dispute).where(
        Dispute.receipt_id == rec.id, Dispute.state.in_(("open", "refunding")))) or 0
    doc = ReceiptDoc(
        receipt_id=rec.id, store_name=d.store.name, issued_at=aware(rec.issued_at),
        currency=rec.currency,
        lines=tuple(ReceiptDocLine(r.product_id, r.name, r.quantity, Decimal(r.unit_price),
                                   r.tax_class,
                                   None if r.tax_rate is None else Decimal(r.tax_rate))
                    for r in rows),
        email=email or recipient(acct), under_review=rec.needs_review or disputed > 0)
    return Issued(doc, v.id, v.account_id, rec.needs_review)


def for_account(d: Deps, account_id: str) -> list[Issued]:
    """A shopper's receipts, newest first."""
    with d.sessions() as s:
        recs = s.scalars(select(Receipt).join(Visit, Visit.id == Receipt.visit_id)
                         .where(Visit.account_id == account_id)
                         .order_by(Receipt.issued_at.desc(), Receipt.id.desc())).all()
        return [load(d, s, r) for r in recs]


def for_email(d: Deps, email: str, limit: int = 50) -> list[Issued]:
    """The kiosk look-up: receipts of the account with exactly this address (case-folded) or
    e-mailed to it, newest first; anything that is not an address finds nothing."""
    key = normalize_email(email)
    with d.sessions() as s:
        # the address an e-mail went to as a condition, not a join: a receipt with several
        # e-mails (revisions, dispute answers) is one row, so ``limit`` counts receipts
        mailed_to = exists().where(ReceiptMail.receipt_id == Receipt.id,
                                   func.lower(ReceiptMail.recipient) == key)
        recs = s.scalars(
            select(Receipt).join(Visit, Visit.id == Receipt.visit_id)
            .join(Account, Account.id == Visit.account_id)
            .where(or_(func.lower(Account.email) == key, mailed_to),
                   Account.erased_at.is_(None))
            .order_by(Receipt.issued_at.desc(), Receipt.id).limit(limit)).all()
        issued = {}
        for r in recs:
            it = load(d, s, r)
            if it.doc.email is None or normalize_email(it.doc.email) != key:
                sent_to = s.scalar(select(ReceiptMail.recipient)
                                   .where(ReceiptMail.receipt_id == r.id)
                                   .order_by(ReceiptMail.revision.desc()).limit(1))
                it = load(d, s, r, email=sent_to)
            issued[r.id] = it
    # the documented exact-match rule has the last word (SQL lower() is not casefold())
    return [issued[doc.receipt_id] for doc in find_receipts([i.doc for i in issued.values()],
                                                            key)]


def mail_receipt(d: Deps, receipt_id: str) -> str | None:
    """E-mail a receipt unless it was sent already; returns its Message-ID (None when there is
    nobody to send it to, or another worker holds the send). Never raises for delivery: a
    failure is recorded on the row and retried by :func:`resume_mail`."""
    try:
        return _mail_receipt(d, receipt_id)
    except _Refused:
        return None


def _mail_receipt(d: Deps, receipt_id: str, hold: str | None = None) -> str | None:
    """:func:`mail_receipt`, raising :class:`_Refused` when the server refused the store's
    settings. ``hold``: such a refusal stopped this batch already (why): nothing is sent, an
    unclaimed receipt is claimed ``failed`` without counting a try (left to the timer), a
    crashed sender's claim is handed to the timer the same way."""
    sender = d.settings.mail_sender
    now = d.clock.now()
    try:
        with d.sessions.begin() as s:
            rec = s.get(Receipt, receipt_id)
            if rec is None:
                return None
            issued = load(d, s, rec)
            to = issued.doc.email
            if to is None:
                return None
            mid = message_id(issued.doc, sender)
            m = s.scalar(select(ReceiptMail).where(ReceiptMail.receipt_id == receipt_id,
                                                   ReceiptMail.revision == 0)
                         .with_for_update())
            if m is None:
                s.add(ReceiptMail(receipt_id=receipt_id, message_id=mid, recipient=to,
                                  state="sending" if hold is None else "failed",
                                  attempts=1 if hold is None else 0, error=hold,
                                  claimed_at=now))
                s.flush()
                if hold is not None:
                    return None
            elif m.state == "sent":
                return m.message_id
            elif m.state == "sending" and aware(m.claimed_at) > now - STALE_CLAIM:
                return None  # another worker is sending it right now
            elif hold is not None:
                if m.state == "sending":  # a crashed sender's: the timer retries failed rows
                    m.state, m.error = "failed", hold
                return None
            else:  # failed, or a sender that crashed mid-send
                m.state, m.attempts, m.claimed_at = "sending", m.attempts + 1, now
            first = s.scalar(select(ReceiptMail.changes).where(
                ReceiptMail.receipt_id == receipt_id, ReceiptMail.revision > 0)
                .order_by(ReceiptMail.revision).limit(1))
            if first is not None:  # revised before it went out: send it as it was issued
                issued = replace(issued, doc=replace(issued.doc,
                                                     lines=_as_issued(json.loads(first))))
                notice: tuple[str, ...] = ()  # what is owed now is its revision's to say
            else:  # the card did not pay all of it: the shopper is told what is owed
                owed, key = _balance(s, rec.visit_id)
                notice = () if owed is None else owed_notice(issued.doc, owed, key is not None)
    except IntegrityError:
        return None  # a concurrent claim won the insert: it sends
    return _hand_over(d, receipt_id, 0, build_message(
        issued.doc, sender, contest_url=public_contest_url(d.settings.public_url),
        notice=notice))


def _hand_over(d: Deps, receipt_id: str, revision: int, msg: EmailMessage) -> str | None:
    """Steps (2) and (3) of a claimed send: the SMTP hand-over, then its record. Raises
    :class:`_Refused` (recorded) when the mailer says the store's settings are at fault."""
    to = str(msg["To"])
    try:
        d.mailer.send(msg)
    except Exception as e:  # any mailer: the exit must not fail because mail did
        why = str(e).replace(to, mask_email(to))
        pw = d.settings.smtp_password
        if pw is not None and pw.get_secret_value():  # a server that echoes it, say
            why = why.replace(pw.get_secret_value(), "***")
        why = why[:300]
        refusal = config_refusal(e)  # the store's settings: no message can go, none is used up
        final = refusal is None and getattr(e, "final", False)  # no such mailbox: never again
        log.warning("receipt %s (revision %d) not e-mailed%s: %s", receipt_id, revision,
                    ", for good" if final else
                    " (the store's settings, not counted)" if refusal else "", why)
        with d.sessions.begin() as s:
            m = s.scalar(select(ReceiptMail).where(ReceiptMail.receipt_id == receipt_id,
                                                   ReceiptMail.revision == revision))
            assert m is not None
            m.state, m.error = "failed", why
            if final:
                m.attempts = MAX_ATTEMPTS
            elif refusal is not None:
                m.attempts = max(0, m.attempts - 1)  # its claim counted this try
        if refusal is not None:
            _alert_refused(d, refusal, why)
            raise _Refused(why) from e
        return None
    with d.sessions.begin() as s:
        m = s.scalar(select(ReceiptMail).where(ReceiptMail.receipt_id == receipt_id,
                                               ReceiptMail.revision == revision))
        rec = s.get(Receipt, receipt_id)
        assert m is not None and rec is not None
        m.state, m.sent_at, m.error = "sent", d.clock.now(), None
        if revision == 0:
            rec.emailed_to, rec.emailed_at = m.recipient, m.sent_at
    _alert_back(d)
    return str(msg["Message-ID"])


def _last_alert(s: Session) -> tuple[int, str | None, dict[str, Any]]:
    """The newest e-mail alert: its seq (-1: none yet), kind and payload."""
    row = s.execute(select(EngineEvent.seq, EngineEvent.kind, EngineEvent.payload)
                    .where(EngineEvent.source == MAIL_ALERTS)
                    .order_by(EngineEvent.seq.desc()).limit(1)).first()
    return (-1, None, {}) if row is None else (row[0], row[1], json.loads(row[2]))


def waiting(s: Session) -> int:
    """How many e-mails wait for a retry (the alert's count, the health page's)."""
    return s.scalar(select(func.count()).select_from(ReceiptMail).where(
        ReceiptMail.state == "failed", ReceiptMail.attempts < MAX_ATTEMPTS)) or 0


def _add_alert(d: Deps, s: Session, seq: int, kind: str, message: str, **extra: Any) -> None:
    """An e-mail alert on the event log, where the dashboard and ``GET /v1/ops/alerts`` list
    the engine's (and operators acknowledge it). ``t``: the store time of the newest event,
    so it sits with what happened meanwhile; ``at`` is the wall clock."""
    t = s.scalar(select(func.max(EngineEvent.t))) or 0.0
    now = d.clock.now()
    payload = {"t": t, "kind": kind, "message": message, "subject": "mail",
               "at": now.isoformat(), **extra}
    s.add(EngineEvent(source=MAIL_ALERTS, seq=seq, kind=kind, t=t, recorded_at=now,
                      payload=json.dumps(payload, separators=(",", ":"))))


def _alert_refused(d: Deps, refusal: ConfigRefusal, why: str) -> None:
    """Tell the operator, once per fault, that the server refuses the store's settings."""
    does, fix = _FAULTS.get(refusal.what, _FAULT)
    try:
        with d.sessions.begin() as s:
            seq, kind, p = _last_alert(s)
            if kind == MAIL_REFUSED and p.get("key") == refusal.key:
                return  # raised already: the same fault
            n = waiting(s)
            message = (f"the mail server {does}: {why}. No e-mail goes out until {fix}. "
                       f"E-mails waiting: {n}; none is given up: they go out once the server "
                       "takes them (the timer tries one each turn; a restart, at once)")
            _add_alert(d, s, seq + 1, MAIL_REFUSED, message, key=refusal.key, waiting=n)
    except IntegrityError:
        return  # another process raised it at the same moment
    log.error("%s", message)


def _alert_back(d: Deps) -> None:
    """After a message went out: if the last e-mail alert was a refusal, say it is over."""
    try:
        with d.sessions.begin() as s:
            seq, kind, _ = _last_alert(s)
            if kind != MAIL_REFUSED:
                return
            n = waiting(s)
            message = ("the mail server takes the store's e-mail again. E-mails waiting: "
                       f"{n}; they go out as their retries come due (a restart: at once)")
            _add_alert(d, s, seq + 1, MAIL_BACK, message, waiting=n)
    except IntegrityError:
        return  # another process said so at the same moment
    log.warning("%s", message)


def _lines_json(lines: Sequence[ReceiptDocLine]) -> list[list[object]]:
    return [[ln.product_id, ln.name, ln.quantity, str(ln.unit_price), ln.tax_class,
             None if ln.tax_rate is None else str(ln.tax_rate)] for ln in lines]


def _lines(rows: list[list[Any]]) -> tuple[ReceiptDocLine, ...]:
    """Lines as :func:`_lines_json` recorded them (rows claimed before 0006 lack the tax)."""
    out = []
    for p, n, q, u, *tax in rows:
        cls, rate = tax or (None, None)
        out.append(ReceiptDocLine(str(p), str(n), int(q), Decimal(u), cls,
                                  None if rate is None else Decimal(rate)))
    return tuple(out)


def _as_issued(first: dict[str, Any]) -> tuple[ReceiptDocLine, ...]:
    """The lines a receipt was issued with, from the record of its first revision e-mail (the
    revised lines, less what it added, plus what it removed), in the receipt's order (by
    product id): the receipt's own e-mail, sent late, shows what the exit charged."""
    qty: dict[str, int] = {}
    ref: dict[str, ReceiptDocLine] = {}
    for ln in _lines(first["lines"]):
        qty[ln.product_id], ref[ln.product_id] = ln.quantity, ln
    for ln in _lines(first["removed"]):
        qty[ln.product_id] = qty.get(ln.product_id, 0) + ln.quantity
        ref.setdefault(ln.product_id, ln)
    for ln in _lines(first["added"]):
        qty[ln.product_id] = qty.get(ln.product_id, 0) - ln.quantity
    return tuple(replace(ref[p], quantity=qty[p]) for p in sorted(qty) if qty[p] > 0)


def claim_revision(d: Deps, s: Session, rec: Receipt, before: Sequence[ReceiptDocLine],
                   refund: Decimal, refund_key: str | None) -> int | None:
    """Inside the transaction that revised ``rec`` (its lines re-frozen in ``s``): claim the
    e-mail of this revision when it changed something for the shopper (lines or a refund).
    Returns the revision number to send with :func:`mail_revision` after the commit, or None
    (nothing changed, or nobody to tell)."""
    issued = load(d, s, rec)
    removed, added = diff_lines(before, issued.doc.lines)
    to = issued.doc.email
    if to is None or not (removed or added or refund > 0):
        return None
    last = s.scalar(select(func.max(ReceiptMail.revision))
                    .where(ReceiptMail.receipt_id == rec.id)) or 0
    number, now = last + 1, d.clock.now()
    owed, balance_key = _balance(s, rec.visit_id)
    changes = {"revised_at": now.isoformat(), "lines": _lines_json(issued.doc.lines),
               "under_review": issued.doc.under_review, "removed": _lines_json(removed),
               "added": _lines_json(added), "refund": str(refund), "refund_key": refund_key,
               "owed": None if owed is None else str(owed), "balance_key": balance_key}
    s.add(ReceiptMail(receipt_id=rec.id, revision=number, recipient=to, state="sending",
                      message_id=message_id(issued.doc, d.settings.mail_sender, number),
                      changes=json.dumps(changes), attempts=1, claimed_at=now))
    s.flush()
    return number


def claim_dispute(d: Deps, s: Session, dsp: Dispute, *, refunded: bool, refund: Decimal,
                  refund_key: str | None, credit: Decimal, quantity: int) -> int | None:
    """Inside the transaction that decided ``dsp`` (``refunded``, or rejected): claim the e-mail
    that answers the shopper, the receipt's next message, as a revision's is claimed. The
    row holds what was decided (``quantity`` units; ``refund`` back to the card under
    ``refund_key``, ``credit`` off her balance) and the receipt's lines, so every attempt
    sends the same message. Returns its number, to send with :func:`mail_revision` after
    the refund; None: nobody to tell (a card-tap guest without an address, erased)."""
    rec = s.get(Receipt, dsp.receipt_id)
    assert rec is not None
    issued = load(d, s, rec)
    to = issued.doc.email
    if to is None:
        return None
    name = next((ln.name for ln in issued.doc.lines if ln.product_id == dsp.product_id),
                dsp.product_id)
    last = s.scalar(select(func.max(ReceiptMail.revision))
                    .where(ReceiptMail.receipt_id == rec.id)) or 0
    number, now = last + 1, d.clock.now()
    changes = {"kind": "dispute", "dispute_id": dsp.id, "revised_at": now.isoformat(),
               "lines": _lines_json(issued.doc.lines), "under_review": issued.doc.under_review,
               "removed": [], "added": [], "name": name, "quantity": quantity,
               "refunded": refunded, "refund": str(refund),
               "refund_key": refund_key, "credit": str(credit),
               "by_store": dsp.reason.startswith(disputes.STAFF_REFUND)}
    s.add(ReceiptMail(receipt_id=rec.id, revision=number, recipient=to, state="sending",
                      message_id=message_id(issued.doc, d.settings.mail_sender, number),
                      changes=json.dumps(changes), attempts=1, claimed_at=now))
    s.flush()
    return number


def _balance(s: Session, visit_id: str) -> tuple[Decimal | None, str | None]:
    """The balance a revision leaves the visit owing (None: none open) and the key of the
    charge collecting it now (None: none in flight), as the revision's transaction sees them:
    a revision above what was captured asks for the difference, and its e-mail says so."""
    owed, settled = s.execute(select(Visit.balance_owed, Visit.balance_settled_at)
                              .where(Visit.id == visit_id)).one()
    if owed is None or settled is not None:
        return None, None
    key = s.scalar(select(Charge.idempotency_key).where(
        Charge.visit_id == visit_id, Charge.status == "pending", balance_charges(visit_id))
        .order_by(Charge.id.desc()).limit(1))
    return Decimal(owed), key


def _owed_status(s: Session, key: str | None) -> Literal["charged", "charging", "owed"]:
    """Where the charge of a revision's balance stands when its e-mail is sent."""
    status = None if key is None else s.scalar(
        select(Charge.status).where(Charge.idempotency_key == key))
    return "charged" if status == "succeeded" else "charging" if status == "pending" else "owed"


def mail_revision(d: Deps, receipt_id: str, revision: int, *, claimed: bool = False,
                  ) -> str | None:
    """E-mail revision ``revision`` of a receipt (or the answer to a dispute of it) as its row
    recorded it, unless it was sent already; ``claimed``: the caller holds the fresh claim
    (:func:`claim_revision`, :func:`claim_dispute`). Returns the
    Message-ID (None when not sent now). Never raises for delivery, as :func:`mail_receipt`.
    The receipt's own e-mail goes first (a crash may have left it unclaimed): while it is not
    sent, this one waits, ``failed``, for :func:`resume_mail`, which sends them in order."""
    try:
        return _mail_revision(d, receipt_id, revision, claimed=claimed)
    except _Refused:
        return None


def _mail_revision(d: Deps, receipt_id: str, revision: int, *, claimed: bool = False,
                   hold: str | None = None) -> str | None:
    """:func:`mail_revision`, raising :class:`_Refused` as :func:`_mail_receipt` does, which
    says what ``hold`` does."""
    with d.sessions() as s:
        own = s.scalar(select(ReceiptMail.state).where(ReceiptMail.receipt_id == receipt_id,
                                                       ReceiptMail.revision == 0))
    if own != "sent":
        refused: _Refused | None = None
        try:
            mid = _mail_receipt(d, receipt_id, hold)
        except _Refused as e:
            mid, refused = None, e
        if mid is None:
            with d.sessions.begin() as s:
                s.execute(update(ReceiptMail).where(
                    ReceiptMail.receipt_id == receipt_id, ReceiptMail.revision == revision,
                    ReceiptMail.state != "sent").values(
                    state="failed", error="waits for the receipt's own e-mail"))
            if refused is not None:
                raise refused
            return None
    now = d.clock.now()
    with d.sessions.begin() as s:
        m = s.scalar(select(ReceiptMail).where(ReceiptMail.receipt_id == receipt_id,
                                               ReceiptMail.revision == revision)
                     .with_for_update())
        if m is None or m.state == "sent":
            return m.message_id if m else None
        if not claimed:
            if m.state == "sending" and aware(m.claimed_at) > now - STALE_CLAIM:
                return None  # another worker is sending it right now
            if hold is not None:
                if m.state == "sending":  # a crashed sender's: the timer retries failed rows
                    m.state, m.error = "failed", hold
                return None
            m.state, m.attempts, m.claimed_at = "sending", m.attempts + 1, now
        rec = s.get(Receipt, receipt_id)
        assert rec is not None and m.changes is not None
        if m.recipient is None:  # the shopper had their data erased since
            m.state, m.attempts, m.error = "failed", MAX_ATTEMPTS, "no recipient (erased)"
            return None
        c = json.loads(m.changes)
        parts = [] if c["refund_key"] is None else disputes.refund_parts(s, c["refund_key"])
        refunded = bool(parts) and all(p.status == "succeeded" for p in parts)
        doc = ReceiptDoc(receipt_id=rec.id, store_name=d.store.name,
                         issued_at=aware(rec.issued_at), currency=rec.currency,
                         lines=_lines(c["lines"]), email=m.recipient,
                         under_review=c["under_review"])
        if c.get("kind") == "dispute":
            notice = dispute_notice(doc, name=c["name"], quantity=c["quantity"],
                                    refunded=c["refunded"], refund=Decimal(c["refund"]),
                                    done=refunded, credit=Decimal(c["credit"]),
                                    by_store=c["by_store"])
            msg = build_dispute_message(doc, revision, datetime.fromisoformat(c["revised_at"]),
                                        notice, d.settings.mail_sender,
                                        refunded=c["refunded"])
        else:
            msg = _revision_message(d, s, doc, revision, c, refunded)
    return _hand_over(d, receipt_id, revision, msg)


def _revision_message(d: Deps, s: Session, doc: ReceiptDoc, revision: int, c: dict[str, Any],
                      refunded: bool) -> EmailMessage:
    """The e-mail of a review revision as its row ``c`` recorded it."""
    owed = c.get("owed")  # rows claimed before the e-mail said what is owed lack it
    rev = ReceiptRevision(revision, datetime.fromisoformat(c["revised_at"]),
                          _lines(c["removed"]), _lines(c["added"]), Decimal(c["refund"]),
                          refunded, None if owed is None else Decimal(owed),
                          _owed_status(s, c.get("balance_key")))
    return build_revision_message(doc, rev, d.settings.mail_sender,
                                  contest_url=public_contest_url(d.settings.public_url))


def resume_mail(d: Deps, within: timedelta = timedelta(days=1)) -> int:
    """Send what a crash or an SMTP outage left unsent: failed sends (a few times), stale
    claims, and settled receipts of the last ``within`` that never got a claim at all (a crash
    between the capture and the claim). Returns how many were sent now."""
    now = d.clock.now()
    with d.sessions() as s:
        retry = s.execute(select(ReceiptMail.receipt_id, ReceiptMail.revision).where(or_(
            (ReceiptMail.state == "failed") & (ReceiptMail.attempts < MAX_ATTEMPTS),
            (ReceiptMail.state == "sending") & (ReceiptMail.claimed_at < now - STALE_CLAIM)))
            .order_by(ReceiptMail.receipt_id, ReceiptMail.revision)).all()
        unclaimed = list(s.scalars(
            select(Receipt.id).join(Visit, Visit.id == Receipt.visit_id)
            .outerjoin(ReceiptMail, (ReceiptMail.receipt_id == Receipt.id)
                       & (ReceiptMail.revision == 0))
            .where(ReceiptMail.id.is_(None), Receipt.issued_at >= now - within,
                   Visit.state != "checking_out")))
    return _send_in_order(d, [*retry, *((rid, 0) for rid in unclaimed)])


def retry_mail(d: Deps) -> int:
    """Send again, in order, the e-mails whose last try failed once their wait is over
    (:data:`RETRY_AFTER`): the housekeeping timer's task. Returns how many were sent now."""
    now = d.clock.now()
    with d.sessions() as s:
        rows = s.execute(select(ReceiptMail.receipt_id, ReceiptMail.revision,
                                ReceiptMail.attempts, ReceiptMail.claimed_at)
                         .where(ReceiptMail.state == "failed",
                                ReceiptMail.attempts < MAX_ATTEMPTS)
                         .order_by(ReceiptMail.receipt_id, ReceiptMail.revision)).all()
    due = [(rid, rev) for rid, rev, n, at in rows
           if aware(at) <= now - RETRY_AFTER[min(max(n, 1), len(RETRY_AFTER)) - 1]]
    # each one claimed and failed already: after a refusal of the store's settings they wait
    # as they are, and the next turn tries one again
    return _send_in_order(d, due, claimed=True)


def mail_unclaimed(d: Deps, since: datetime) -> int:
    """E-mail settled receipts issued since ``since`` that nobody claimed the send of yet (the
    outbox loop of a service whose API leaves e-mail to its engine worker). Returns how many
    were sent now."""
    with d.sessions() as s:
        ids = list(s.scalars(
            select(Receipt.id).join(Visit, Visit.id == Receipt.visit_id)
            .outerjoin(ReceiptMail, (ReceiptMail.receipt_id == Receipt.id)
                       & (ReceiptMail.revision == 0))
            .where(ReceiptMail.id.is_(None), Receipt.issued_at >= since,
                   Receipt.emailed_at.is_(None), Visit.state != "checking_out")
            .order_by(Receipt.issued_at)))
    return _send_in_order(d, [(rid, 0) for rid in ids])


def _send_in_order(d: Deps, todo: Iterable[tuple[str, int]], *, claimed: bool = False) -> int:
    """Send each (receipt id, revision) of ``todo`` in order; returns how many were sent now.
    Once the mailer says the store's settings are at fault (a refused sender or login, a
    server without the STARTTLS or AUTH they need, a failed TLS handshake), the rest are not
    tried (each would fail the same, a connection each): ``claimed`` (all of them failed
    rows) ends the batch there, else the rest are claimed and left to the timer."""
    sent, hold = 0, None
    for rid, rev in todo:
        try:
            mid = (_mail_receipt(d, rid, hold) if rev == 0
                   else _mail_revision(d, rid, rev, hold=hold))
        except _Refused as e:
            if claimed:
                break
            hold = f"not tried: {e}"[:300]
            continue
        sent += mid is not None
    return sent


def mail_loop(d: Deps, stop: Any, period_s: float = 0.5) -> None:
    """Send receipts as they are issued until ``stop`` is set (resume_mail first)."""
    try:
        resume_mail(d)
    except Exception:
        log.exception("resending unsent receipts failed")
    since = d.clock.now() - timedelta(minutes=10)
    while not stop.wait(period_s):
        now = d.clock.now()
        try:
            mail_unclaimed(d, since)
            since = now - timedelta(seconds=60)  # overlap: a receipt committed meanwhile
        except Exception:
            log.exception("receipt outbox pass failed")
