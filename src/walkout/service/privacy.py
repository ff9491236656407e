"""A shopper's rights: export of all their data, and erasure.

The export holds the account, payment-method labels, the entry codes she asked for and her
sign-ins (never a code's nonce nor a token's hash: credentials), every visit with the money
moved for it (hold, capture or release, refunds) and the balance she owed on it, the
chargebacks her bank made of its payment, where the cameras placed the visitor on the floor,
the engine's decisions that put lines on her receipt (the shelf events her receipt lines name,
with the engine's confidence in her hand) and the review cases about her visit with the
verdict as it concerns her (while the event log still has them), receipts, and disputes with
their outcome. What the event log says of the other people near her (their scores, skeletons,
shares of a verdict) and the operator's free-text notes on a case are not hers and stay out.

The event log's engine sessions (``s00001``, ...) are numbered afresh by every engine stream
(a recording's run, each MQTT stream and rollover), so a session is known by its stream and id
together: a row's stream is its source without the last part (``<stream>/live``), and only the
rows of her session's stream are read or changed as hers.

Erasure removes what identifies the person — e-mail, name, payment-method tokens, entry codes,
free-text dispute reasons and the operator's notes on them, the operator's notes on the review
cases about her visits, on writing off a balance of hers and on acknowledging a payment event
of her visits, receipt e-mail addresses — and revokes every token. Her movements leave
the engine's event log (floor positions, skeletons in review-case replays; the gate's
credential is unlinked from her visits), while the engine's decisions that explain her charges
stay. The blurred camera clips of the review cases about her go from ``evidence_dir`` once the
erasure is committed, also those of a case that shows other shoppers too: a clip cannot be cut
down to the others (it shows her body, her clothes, the way she moves), and its case is decided
and applied already (erasure waits for that), so what it was kept for is done; the case's
weight trace, decisions and the others' skeletons stay to explain their receipts. Receipts,
charges and the ledger stay, as bookkeeping law requires, but pseudonymised: the account id is
a random id that no longer leads to anyone, and the payment-method token in the built-in ledger
(transactions and payer accounts) becomes ``erased:<payment method id>``, so balances still
add up. A card tapped again after erasure is a stranger. Refused while the shopper is inside
the store, a visit of theirs has a balance still owed above its hold, a dispute of theirs is
undecided, or a review case about one of their visits has no
applied verdict yet (money is still moving).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from walkout.checkout.money import Money
from walkout.service import receipting
from walkout.service.clock import aware
from walkout.service.deps import Deps
from walkout.service.entry import INSIDE, owing_visit
from walkout.service.errors import ServiceError, not_found
from walkout.service.live_state import ended_cases
from walkout.service.models import (
    Account,
    ApiToken,
    Charge,
    Chargeback,
    Dispute,
    EngineEvent,
    EntryCode,
    PaymentMethod,
    PaymentWebhookEvent,
    Receipt,
    ReceiptLine,
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
        # each receipt line's provenance: the shelf events (the decisions under "visits")
        events = {(r.receipt_id, r.position): json.loads(r.events) for r in s.scalars(
            select(ReceiptLine).join(Receipt, Receipt.id == ReceiptLine.receipt_id)
            .join(Visit, Visit.id == Receipt.visit_id).where(Visit.account_id == account_id))}
        out: dict[str, Any] = {
            "account": {"account_id": a.id, "kind": a.kind, "email": a.email,
                        "name": a.display_name, "created_at": _iso(a.created_at)},
            # the provider's token is a credential, not data about the person: label only
            "payment_methods": [{"payment_method_id": m.id, "provider": m.provider,
                                 "label": m.label, "created_at": _iso(m.created_at)}
                                for m in methods],
            "visits": [_visit(s, v) for v in visits],
            # when she asked for entry codes and used them (the nonce is a credential: out)
            "entry_codes": [{"issued_at": _iso(c.issued_at), "expires_at": _iso(c.expires_at),
                             "used_at": _iso(c.used_at), "visit_id": c.visit_id}
                            for c in s.scalars(select(EntryCode).where(
                                EntryCode.account_id == account_id)
                                .order_by(EntryCode.issued_at, EntryCode.nonce))],
            # her app's sign-ins (the token's hash is a credential: out)
            "sign_ins": [{"role": k.role, "created_at": _iso(k.created_at),
                          "revoked_at": _iso(k.revoked_at)}
                         for k in s.scalars(select(ApiToken).where(
                             ApiToken.account_id == account_id).order_by(ApiToken.id))],
            "disputes": [{"dispute_id": x.id, "receipt_id": x.receipt_id,
                          "product_id": x.product_id, "quantity": x.quantity,
                          "reason": x.reason, "state": x.state,
                          "refund_amount": None if x.refund_amount is None
                          else _money(x.refund_amount, _receipt_currency(s, x.receipt_id)),
                          "decision_note": x.note,
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
                       "unit_price": doc.fmt(ln.unit_price), **line_tax(ln),
                       "events": events.get((doc.receipt_id, i), [])}
                      for i, ln in enumerate(doc.lines)],
            "tax": tax_rows(doc),  # included in the total, per rate
            "emailed_to": m.recipient if m and m.state == "sent" else None,
            "emailed_at": _iso(m.sent_at) if m else None,
        })
    out["receipts"] = receipts
    return out


def _visit(s: Session, v: Visit) -> dict[str, Any]:
    keys, rows = _about(s, {v.credential})
    return {"visit_id": v.id, "gate_id": v.gate_id, "party_size": v.party_size,
            "state": v.state, "entered_at": _iso(v.entered_at), "exited_at": _iso(v.exited_at),
            # the money moved for the visit: hold, capture or release, refunds
            "charges": [{"kind": c.kind, "amount": _money(c.amount, c.currency),
                         "currency": c.currency, "status": c.status, "at": _iso(c.created_at),
                         "settled_at": _iso(c.settled_at)}
                        for c in s.scalars(select(Charge).where(Charge.visit_id == v.id)
                                           .order_by(Charge.id))],
            "balance": _balance(v),
            "chargebacks": _chargebacks(s, v.id),
            "movements": _movements(v.credential, keys, rows),
            "decisions": _decisions(s, keys),
            "review_cases": _review_cases(s, keys)}


def _money(amount: Decimal, currency: str) -> str:
    """An amount as the receipts write it (``"16.78"``, the currency's minor unit), not as
    the column stores it (``"16.7800"``)."""
    return str(Money(Decimal(amount), currency).amount)


def _receipt_currency(s: Session, receipt_id: str) -> str:
    rec = s.get(Receipt, receipt_id)
    assert rec is not None
    return rec.currency


def _balance(v: Visit) -> dict[str, Any] | None:
    """What the visit's receipt came to above what its exit captured, owed by her until
    settled (charged later, or written off by staff with their note): a debt of hers, so
    hers to see. None: she never owed anything on it."""
    if v.balance_owed is None or v.balance_owed <= 0:
        return None
    return {"owed": _money(v.balance_owed, v.currency), "currency": v.currency,
            "settled_at": _iso(v.balance_settled_at), "settlement": v.balance_settlement,
            "note": v.balance_note,
            "written_off": _money(v.balance_written_off or 0, v.currency)}


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
        if owing_visit(s, account_id) is not None:
            raise ServiceError(409, "balance_owed",
                               "a visit of yours has a balance still owed: ask again after it "
                               "is settled")
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
        rows_scrubbed, cases = _erase_movements(s, account_id)
        # the operator's free text on a case about her may name or describe her: it goes (the
        # verdict's shares stay, they explain a receipt's revision)
        notes = s.execute(update(ReviewVerdict).where(
            tuple_(ReviewVerdict.source, ReviewVerdict.case_id).in_(sorted(cases)),
            ReviewVerdict.note.is_not(None)).values(note=None)).rowcount if cases else 0
        codes = s.execute(delete(EntryCode).where(EntryCode.account_id == account_id)).rowcount
        receipt_ids = select(Receipt.id).join(Visit, Visit.id == Receipt.visit_id).where(
            Visit.account_id == account_id)
        s.execute(update(ReceiptMail).where(ReceiptMail.receipt_id.in_(receipt_ids))
                  .values(recipient=None, error=None))
        s.execute(update(Receipt).where(Receipt.id.in_(receipt_ids)).values(emailed_to=None))
        n_disputes = s.execute(update(Dispute).where(Dispute.account_id == account_id)
                               .values(reason="[erased]", note=None)).rowcount or 0
        # staff's note on writing off a balance of hers is free text about her, like their
        # note on a dispute; what was owed and how it was settled stay for the books
        s.execute(update(Visit).where(Visit.account_id == account_id,
                                      Visit.balance_note.is_not(None))
                  .values(balance_note=None))
        # and so is staff's note acknowledging a payment event of her visits (the event names
        # a visit and the provider's objects, never a person: it stays)
        s.execute(update(PaymentWebhookEvent).where(
            PaymentWebhookEvent.visit_id.in_(select(Visit.id).where(
                Visit.account_id == account_id)),
            PaymentWebhookEvent.acknowledged_note.is_not(None))
            .values(acknowledged_note=None))
    clips = 0
    if cases and d.settings.evidence_dir is not None:  # once her erasure is committed
        from walkout.perception.evidence import delete_case_clips  # OpenCV only where kept

        clips = delete_case_clips(d.settings.evidence_dir, cases)  # her cases' streams only
    return {"tokens_revoked": int(tokens), "payment_methods": n_methods,
            "entry_codes": int(codes or 0), "disputes": int(n_disputes),
            "event_log_rows": rows_scrubbed, "review_notes": int(notes or 0),
            "evidence_clips": clips}


def _open_review(s: Session, account_id: str) -> str | None:
    """A review case about one of the shopper's visits whose verdict the engine has not
    applied yet, if any. Its correcting lines reach her receipt (and her refund her card)
    through the visit's gate credential, which erasure unlinks: until it is applied, money
    is still moving, as with an undecided dispute. A case its stream left open when it ended
    (:func:`~walkout.service.live_state.ended_cases`) gets no verdict any more: not waited
    for. Her cases are those of her engine sessions
    in their own stream (see :func:`_review_cases`): a case naming the same session id in
    another stream is somebody else's."""
    creds = set(s.scalars(select(Visit.credential).where(
        Visit.account_id == account_id, Visit.credential.not_like("erased:%"))))
    if not creds:
        return None
    keys, _ = _about(s, creds)
    ended = ended_cases(s)  # left open when their stream ended: nothing moves any more
    for (stream, cid), c in _cases_of(s, keys).items():
        if (stream, cid) in ended:
            continue
        if c["verdict"] is None or c["verdict"]["applied_at"] is None:
            return cid
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


def _stream(source: str) -> str:
    """The engine stream an event-log row belongs to: its source without the last part
    (``<stream>/live``, ``<stream>/gates``, ``<stream>/evidence``, ...)."""
    return source.rsplit("/", 1)[0]


#: an engine session of one stream: ``(stream, session id)``. Session ids (``s00001``, ...)
#: restart with every stream (each start of a recording's runner, each MQTT stream or
#: rollover), so a session id alone names a different person in every stream
Key = tuple[str, str]


def _movements(credential: str, keys: set[Key], rows: list[EngineEvent]) -> list[list[float]]:
    """Where the store's cameras placed the visitor on the floor, ``[t, x, y]`` in store
    seconds and metres, from the event log (empty once retention or erasure removed it);
    ``keys`` and ``rows``: what :func:`_about` found of her credential."""
    pts: list[list[float]] = []
    for e in sorted(rows, key=lambda r: r.t):
        if e.kind == "positions":
            st = _stream(e.source)
            for x in json.loads(e.payload)["people"]:
                if x.get("credential") == credential or (st, x.get("session")) in keys:
                    pts += x["pts"]
    return sorted(pts)


def _review_cases(s: Session, keys: set[Key]) -> list[dict[str, Any]]:
    """The review cases about the visitor's engine sessions (``keys``): the case's id, when
    (store seconds of its stream), why the engine asked for a review, what it had charged her
    meanwhile, and the operator's verdict as it concerns her: what it charged her and when it
    was decided and applied. Not the other people of the case, not the operator's note nor
    who decided (the store's staff, not data about her)."""
    return list(_cases_of(s, keys).values())


def _cases_of(s: Session, keys: set[Key]) -> dict[Key, dict[str, Any]]:
    """:func:`_review_cases` by ``(stream, case id)``: a case id is ``<plate>-<stream
    time>``, so another stream (a recording served again) may have a case of the same id,
    with a verdict of its own that is not about her."""
    if not keys:
        return {}
    sids = {sid for _, sid in keys}
    cases: dict[Key, dict[str, Any]] = {}  # (stream, case id) → what it says of her
    mine: dict[Key, set[str]] = {}  # (stream, case id) → her session ids in it
    for e in s.scalars(select(EngineEvent).where(
            EngineEvent.kind.in_(("review_case", "case_evidence")),
            or_(*(EngineEvent.payload.contains(f'"{sid}"', autoescape=True)
                  for sid in sids))).order_by(EngineEvent.t, EngineEvent.id)):
        p, st = json.loads(e.payload), _stream(e.source)
        hers = {sid for sid in p.get("sessions", []) if (st, sid) in keys}
        if not hers or e.ref is None:
            continue
        key = (st, e.ref)
        mine.setdefault(key, set()).update(hers)
        c = cases.setdefault(key, {"case_id": e.ref, "t": e.t,
                                   "reasons": list(p.get("reasons", []))})
        c["engine_charged"] = sorted(i for sid in hers for i in p.get("decided", {}).get(sid, []))
    # a verdict may charge one of her sessions in a case she was no candidate of: the case is
    # hers when it belongs to the stream of that session
    for v in s.scalars(select(ReviewVerdict).where(or_(*(
            ReviewVerdict.shares.contains(f'"{sid}"', autoescape=True) for sid in sids)))):
        key = (v.source, v.case_id)
        hers = {sid for sid in json.loads(v.shares) if (v.source, sid) in keys}
        if not hers or key in cases:
            continue
        mine[key] = hers
        cases[key] = {"case_id": v.case_id, "t": None, "reasons": [], "engine_charged": []}
    for key, c in cases.items():
        v = s.get(ReviewVerdict, {"source": key[0], "case_id": key[1]})
        c["verdict"] = None if v is None else {
            "charged": sorted(i for sid in mine[key] for i in json.loads(v.shares).get(sid, [])),
            "decided_at": _iso(v.decided_at), "applied_at": _iso(v.applied_at)}
    return dict(sorted(cases.items(), key=lambda kc: (kc[1]["t"] is None, kc[1]["t"] or 0.0,
                                                      kc[1]["case_id"], kc[0][0])))


def _decisions(s: Session, keys: set[Key]) -> list[dict[str, Any]]:
    """The engine's decisions that charged (or credited, a put-back) the visitor's engine
    sessions: the shelf event (its id is what her receipt lines name as their provenance),
    what it moved, how sure the engine was that it was her hand and how far her hand was from
    the plate. The other candidates' scores and reaches are theirs, not hers: left out."""
    if not keys:
        return []
    out = []
    for e in s.scalars(select(EngineEvent).where(
            EngineEvent.kind == "decision",
            or_(*(EngineEvent.payload.contains(f'"{sid}"', autoescape=True)
                  for sid in {sid for _, sid in keys}))).order_by(EngineEvent.t, EngineEvent.id)):
        p, st = json.loads(e.payload), _stream(e.source)
        hers = [sid for sid in dict.fromkeys([p.get("session_id"), *p.get("takers", [])])
                if sid is not None and (st, sid) in keys]
        if not hers:
            continue
        score = {x[0]: x[1] for x in p.get("scores", [])}
        reach = {x[0]: x[1] for x in p.get("reach_m", [])}
        out.append({"event_id": p.get("event_id", e.ref), "t": e.t,
                    "items": p.get("items", []),
                    "shared": len(p.get("takers", [])) > 1,
                    "score": max((score[x] for x in hers if x in score), default=None),
                    "reach_m": min((reach[x] for x in hers if x in reach), default=None),
                    "needs_review": p.get("needs_review"), "reasons": p.get("reasons", [])})
    return out


def _about(s: Session, creds: set[str]) -> tuple[set[Key], list[EngineEvent]]:
    """The engine sessions bound to ``creds``, each with its stream, and the event-log rows
    that may mention them (a text pre-filter; the JSON is checked exactly by the callers).
    A session id matches only in its own stream's rows (source ``<stream>/...``)."""
    rows: dict[int, EngineEvent] = {}
    for c in creds:
        for e in s.scalars(select(EngineEvent).where(EngineEvent.payload.contains(
                c, autoescape=True))):
            rows[e.id] = e
    keys: set[Key] = set()
    for e in rows.values():
        p, st = json.loads(e.payload), _stream(e.source)
        if e.kind == "positions":
            keys |= {(st, x["session"]) for x in p["people"]
                     if x.get("credential") in creds and x.get("session")}
        elif e.kind == "case_evidence":
            keys |= {(st, sid) for sid, c in p.get("credentials", {}).items() if c in creds}
    for st, sid in keys:
        for e in s.scalars(select(EngineEvent).where(
                EngineEvent.source.startswith(f"{st}/", autoescape=True),
                EngineEvent.payload.contains(f'"{sid}"', autoescape=True),
                EngineEvent.kind.in_(MOVEMENT_KINDS))):
            if _stream(e.source) == st:
                rows[e.id] = e
    return keys, list(rows.values())


#: event-log rows that hold where a person was and how they moved
MOVEMENT_KINDS = ("positions", "case_evidence", "entry", "exit")


def _erase_movements(s: Session, account_id: str) -> tuple[int, set[Key]]:
    """Remove the shopper's movements from the event log: her floor positions and skeletons
    (map rows, review-case replays) are dropped, her visits' gate credential is unlinked from
    the gate events and from the visit itself. The engine's decisions and their scores stay:
    they explain the charges the (pseudonymised) receipts keep. Only rows of the stream of
    each of her engine sessions are touched (session ids restart with every stream). Returns
    the rows changed and the review cases (stream, case id) whose evidence named her."""
    visits = list(s.scalars(select(Visit).where(Visit.account_id == account_id)))
    creds = {v.credential for v in visits if not v.credential.startswith("erased:")}
    if not creds:
        return 0, set()
    keys, rows = _about(s, creds)
    # the cases whose evidence names her, and those whose verdict charged her
    cases = set(_cases_of(s, keys))
    changed = 0
    for e in rows:
        p, st = json.loads(e.payload), _stream(e.source)
        if e.kind == "positions":
            p["people"] = [x for x in p["people"] if x.get("credential") not in creds
                           and (st, x.get("session")) not in keys]
        elif e.kind == "case_evidence":
            named = set(p.get("sessions", [])) | set(p.get("credentials", {}))
            if any((st, sid) in keys for sid in named) and e.ref is not None:
                cases.add((st, e.ref))
            p["credentials"] = {k: v for k, v in p.get("credentials", {}).items()
                                if (st, k) not in keys}
            p["skeletons"] = {k: v for k, v in p.get("skeletons", {}).items()
                              if (st, k) not in keys}
        elif e.kind in ("entry", "exit") and p.get("credential") in creds:
            p["credential"] = "erased"
        new = json.dumps(p, separators=(",", ":"))
        if new != e.payload:
            e.payload = new
            changed += 1
    for v in visits:  # the map from engine sessions to the visit, and so to her receipts
        v.credential = f"erased:{v.id}"
    return changed, cases
