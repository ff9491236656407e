"""A shopper's rights: export of all their data, and erasure.

The export holds the account, payment-method labels, every visit with the money moved for it
(hold, capture or release, refunds), the chargebacks her bank made of its payment and where the
cameras placed the visitor on the floor (while the event log still has it), receipts, and
disputes with their outcome.

Erasure removes what identifies the person — e-mail, name, payment-method tokens, entry codes,
free-text dispute reasons and the operator's notes on them, receipt e-mail addresses — and
revokes every token. Her movements leave the engine's event log (floor positions, skeletons in
review-case replays; the gate's credential is unlinked from her visits), while the engine's
decisions that explain her charges stay. Receipts,
charges and the ledger stay, as bookkeeping law requires, but pseudonymised: the account id is
a random id that no longer leads to anyone, and the payment-method token in the built-in ledger
(transactions and payer accounts) becomes ``erased:<payment method id>``, so balances still
add up. A card tapped again after erasure is a stranger. Refused while the shopper is inside
the store, a dispute of theirs is undecided, or a review case about one of their visits has no
applied verdict yet (money is still moving).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from walkout.checkout.money import Money
from walkout.service import receipting
from walkout.service.clock import aware
from walkout.service.deps import Deps
from walkout.service.entry import INSIDE
from walkout.service.errors import ServiceError, not_found
from walkout.service.models import (
    Account,
    ApiToken,
    Charge,
    Chargeback,
    Dispute,
    EngineEvent,
    EntryCode,
    PaymentMethod,
    Receipt,
    ReceiptMail,
    ReviewVerdict,
    Visit,
)
from walkout.service.payments.ledger import pseudonymise_payer
from walkout.service.receipts.kiosk import normalize_email
from walkout.service.receipts.model import line_tax, tax_rows


def _iso(dt: Any) -> str | None:
    return None if dt is None else aware(dt).isoformat()


def export(d: Deps, account_id: str) -> dict[str, Any]:
    """Everything stored about one shopper, and nothing about anyone else."""
    with d.sessions() as s:
        a = s.get(Account, account_id)
        if a is None:
            raise not_found("account")
        methods = s.scalars(select(PaymentMethod).where(PaymentMethod.account_id == account_id)
                            .order_by(PaymentMethod.created_at)).all()
        visits = s.scalars(select(Visit).where(Visit.account_id == account_id)
                           .order_by(Visit.entered_at)).all()
        disputes = s.scalars(select(Dispute).where(Dispute.account_id == account_id)
                             .order_by(Dispute.created_at)).all()
        mails = {m.receipt_id: m for m in s.scalars(
            select(ReceiptMail).join(Receipt, Receipt.id == ReceiptMail.receipt_id)
            .join(Visit, Visit.id == Receipt.visit_id)
            .where(Visit.account_id == account_id, ReceiptMail.revision == 0))}
        out: dict[str, Any] = {
            "account": {"account_id": a.id, "kind": a.kind, "email": a.email,
                        "name": a.display_name, "created_at": _iso(a.created_at)},
            # the provider's token is a credential, not data about the person: label only
            "payment_methods": [{"payment_method_id": m.id, "provider": m.provider,
                                 "label": m.label, "created_at": _iso(m.created_at)}
                                for m in methods],
            "visits": [{"visit_id": v.id, "gate_id": v.gate_id, "party_size": v.party_size,
                        "state": v.state, "entered_at": _iso(v.entered_at),
                        "exited_at": _iso(v.exited_at),
                        # the money moved for the visit: hold, capture or release, refunds
                        "charges": [{"kind": c.kind, "amount": str(c.amount),
                                     "currency": c.currency, "status": c.status,
                                     "at": _iso(c.created_at)}
                                    for c in s.scalars(select(Charge).where(
                                        Charge.visit_id == v.id).order_by(Charge.id))],
                        "chargebacks": _chargebacks(s, v.id),
                        "movements": _movements(s, v.credential)} for v in visits],
            "disputes": [{"dispute_id": x.id, "receipt_id": x.receipt_id,
                          "product_id": x.product_id, "quantity": x.quantity,
                          "reason": x.reason, "state": x.state,
                          "refund_amount": None if x.refund_amount is None
                          else str(x.refund_amount), "decision_note": x.note,
                          "created_at": _iso(x.created_at), "resolved_at": _iso(x.resolved_at)}
                         for x in disputes],
        }
    receipts = []
    for it in receipting.for_account(d, account_id):
        doc, m = it.doc, mails.get(it.doc.receipt_id)
        receipts.append({
            "receipt_id": doc.receipt_id, "visit_id": it.visit_id, "currency": doc.currency,
            "total": doc.fmt(doc.total), "issued_at": doc.issued_at.isoformat(),
            "lines": [{"product_id": ln.product_id, "name": ln.name, "quantity": ln.quantity,
                       "unit_price": doc.fmt(ln.unit_price), **line_tax(ln)}
                      for ln in doc.lines],
            "tax": tax_rows(doc),  # included in the total, per rate
            "emailed_to": m.recipient if m and m.state == "sent" else None,
            "emailed_at": _iso(m.sent_at) if m else None,
        })
    out["receipts"] = receipts
    return out


def erase(d: Deps, account_id: str) -> dict[str, int]:
    """Erase a shopper's personal data (see the module docstring); returns what was touched."""
    now = d.clock.now()
    with d.sessions.begin() as s:
        a = s.get(Account, account_id, with_for_update=True)
        if a is None:
            raise not_found("account")
        if a.kind == "staff":
            raise ServiceError(409, "staff_account", "staff accounts are removed by an admin")
        inside = s.scalar(select(Visit.id).where(Visit.account_id == account_id,
                                                 Visit.state.in_(INSIDE)).limit(1))
        if inside is not None:
            raise ServiceError(409, "visit_in_progress",
                               "you are inside the store: ask again after you have left")
        pending = s.scalar(select(Dispute.id).where(Dispute.account_id == account_id,
                                                    Dispute.state.in_(("open", "refunding")))
                           .limit(1))
        if pending is not None:
            raise ServiceError(409, "dispute_in_progress",
                               "a dispute of yours is not decided yet: ask again afterwards")
        case = _open_review(s, account_id)
        if case is not None:
            raise ServiceError(409, "review_in_progress",
                               "a receipt of yours is still being reviewed: ask again after "
                               "it is settled")
        a.email, a.display_name, a.erased_at = None, None, now
        tokens = s.execute(update(ApiToken).where(ApiToken.account_id == account_id,
                                                  ApiToken.revoked_at.is_(None))
                           .values(revoked_at=now)).rowcount or 0
        methods = s.scalars(select(PaymentMethod).where(PaymentMethod.account_id == account_id))
        n_methods = 0
        for m in methods:
            old, new = m.provider_ref, f"erased:{m.id}"
            if old == new:
                continue
            m.provider_ref, m.label = new, None
            n_methods += 1
            pseudonymise_payer(s, old, new)
        rows_scrubbed = _erase_movements(s, account_id)
        codes = s.execute(delete(EntryCode).where(EntryCode.account_id == account_id)).rowcount
        receipt_ids = select(Receipt.id).join(Visit, Visit.id == Receipt.visit_id).where(
            Visit.account_id == account_id)
        s.execute(update(ReceiptMail).where(ReceiptMail.receipt_id.in_(receipt_ids))
                  .values(recipient=None, error=None))
        s.execute(update(Receipt).where(Receipt.id.in_(receipt_ids)).values(emailed_to=None))
        n_disputes = s.execute(update(Dispute).where(Dispute.account_id == account_id)
                               .values(reason="[erased]", note=None)).rowcount or 0
    return {"tokens_revoked": int(tokens), "payment_methods": n_methods,
            "entry_codes": int(codes or 0), "disputes": int(n_disputes),
            "event_log_rows": rows_scrubbed}


def _open_review(s: Session, account_id: str) -> str | None:
    """A review case about one of the shopper's visits whose verdict the engine has not
    applied yet, if any. Its correcting lines reach her receipt (and her refund her card)
    through the visit's gate credential, which erasure unlinks: until it is applied, money
    is still moving, as with an undecided dispute."""
    creds = set(s.scalars(select(Visit.credential).where(
        Visit.account_id == account_id, Visit.credential.not_like("erased:%"))))
    for cred in creds:
        for ref, payload in s.execute(select(EngineEvent.ref, EngineEvent.payload).where(
                EngineEvent.kind == "case_evidence",
                EngineEvent.payload.contains(cred, autoescape=True))).all():
            if cred not in json.loads(payload).get("credentials", {}).values():
                continue
            applied = s.scalar(select(ReviewVerdict.applied_at).where(
                ReviewVerdict.case_id == ref))
            if applied is None:
                return str(ref)
    return None


def accounts_for_request(d: Deps, email: str | None = None,
                         card_token: str | None = None) -> list[str]:
    """The shopper accounts a privacy request made to staff names (a card-tap guest has no
    app to ask with; an app shopper may have lost theirs): every account with this e-mail
    address (compared case-folded, as the kiosk does) or holding this card token. Staff check
    the requester's identity before acting on the answer."""
    if not email and not card_token:
        raise ServiceError(422, "nothing_to_match", "give the requester's email or card_token")
    ids: set[str] = set()
    with d.sessions() as s:
        if email:
            key = normalize_email(email)
            ids |= {a.id for a in s.scalars(select(Account).where(
                func.lower(Account.email) == key, Account.kind != "staff"))
                if a.email is not None and normalize_email(a.email) == key}
        if card_token:
            ids |= set(s.scalars(select(PaymentMethod.account_id).join(
                Account, Account.id == PaymentMethod.account_id).where(
                PaymentMethod.provider_ref == card_token, Account.kind != "staff")))
    return sorted(ids)


def _chargebacks(s: Session, visit_id: str) -> list[dict[str, Any]]:
    """The chargebacks of the visit's payment: what her bank claimed back and how it ended
    (``status`` as the provider says it: ``needs_response``/``under_review`` while the bank
    decides, ``lost``: the bank returned the money to her, ``won``: the store kept it,
    ``warning_*``: an inquiry, no money moved). Not the provider's ids nor the store's
    deadline to answer: they are the store's business with the bank, not data about her."""
    return [{"amount": str(Money(Decimal(cb.amount), cb.currency).amount),
             "currency": cb.currency, "reason": cb.reason, "status": cb.status,
             "opened_at": _iso(cb.opened_at), "decided_at": _iso(cb.closed_at)}
            for cb in s.scalars(select(Chargeback).where(Chargeback.visit_id == visit_id)
                                .order_by(Chargeback.opened_at, Chargeback.id))]


def _movements(s: Session, credential: str) -> list[list[float]]:
    """Where the store's cameras placed the visitor on the floor, ``[t, x, y]`` in store
    seconds and metres, from the event log (empty once retention or erasure removed it)."""
    sessions, rows = _about(s, {credential})
    pts: list[list[float]] = []
    for e in sorted(rows, key=lambda r: r.t):
        if e.kind == "positions":
            for x in json.loads(e.payload)["people"]:
                if x.get("credential") == credential or x.get("session") in sessions:
                    pts += x["pts"]
    return sorted(pts)


def _about(s: Session, creds: set[str]) -> tuple[set[str], list[EngineEvent]]:
    """The engine sessions bound to ``creds`` and the event-log rows that may mention them
    (a text pre-filter; the JSON is checked exactly by the callers)."""
    rows: dict[int, EngineEvent] = {}
    for c in creds:
        for e in s.scalars(select(EngineEvent).where(EngineEvent.payload.contains(
                c, autoescape=True))):
            rows[e.id] = e
    sessions: set[str] = set()
    for e in rows.values():
        p = json.loads(e.payload)
        if e.kind == "positions":
            sessions |= {x["session"] for x in p["people"]
                         if x.get("credential") in creds and x.get("session")}
        elif e.kind == "case_evidence":
            sessions |= {sid for sid, c in p.get("credentials", {}).items() if c in creds}
    for sid in sessions:
        for e in s.scalars(select(EngineEvent).where(EngineEvent.payload.contains(
                f'"{sid}"', autoescape=True), EngineEvent.kind.in_(MOVEMENT_KINDS))):
            rows[e.id] = e
    return sessions, list(rows.values())


#: event-log rows that hold where a person was and how they moved
MOVEMENT_KINDS = ("positions", "case_evidence", "entry", "exit")


def _erase_movements(s: Session, account_id: str) -> int:
    """Remove the shopper's movements from the event log: her floor positions and skeletons
    (map rows, review-case replays) are dropped, her visits' gate credential is unlinked from
    the gate events and from the visit itself. The engine's decisions and their scores stay:
    they explain the charges the (pseudonymised) receipts keep. Returns the rows changed."""
    visits = list(s.scalars(select(Visit).where(Visit.account_id == account_id)))
    creds = {v.credential for v in visits if not v.credential.startswith("erased:")}
    if not creds:
        return 0
    sessions, rows = _about(s, creds)
    changed = 0
    for e in rows:
        p = json.loads(e.payload)
        if e.kind == "positions":
            p["people"] = [x for x in p["people"]
                           if x.get("credential") not in creds and x.get("session") not in sessions]
        elif e.kind == "case_evidence":
            p["credentials"] = {k: v for k, v in p.get("credentials", {}).items()
                                if k not in sessions}
            p["skeletons"] = {k: v for k, v in p.get("skeletons", {}).items()
                              if k not in sessions}
        elif e.kind in ("entry", "exit") and p.get("credential") in creds:
            p["credential"] = "erased"
        new = json.dumps(p, separators=(",", ":"))
        if new != e.payload:
            e.payload = new
            changed += 1
    for v in visits:  # the map from engine sessions to the visit, and so to her receipts
        v.credential = f"erased:{v.id}"
    return changed
