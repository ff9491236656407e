"""The built-in ``ledger`` payment provider: a real double-entry ledger in the database.

Every call is one transaction whose postings balance (debits = credits):

- pre-authorise X:  debit ``hold:<auth>`` X, credit ``payer:<ref>`` X
- capture Y ≤ X:    credit ``hold:<auth>`` X, debit ``store:sales`` Y, debit ``payer:<ref>`` X−Y
- release:          credit ``hold:<auth>`` X, debit ``payer:<ref>`` X
- refund Z:         credit ``store:sales`` Z, debit ``payer:<ref>`` Z
- charge C:         debit ``store:sales`` C, credit ``payer:<ref>`` C (no hold: a balance)

Idempotency is the database's job: ``idempotency_key`` is UNIQUE, so a retried or concurrent
duplicate either finds the first row or loses the insert race and then reads it; either way it
returns the original result. ``closes`` is UNIQUE as well, so one authorisation is captured or
released once, whatever keys the callers use. Parents are locked (``FOR UPDATE``) so that two
different refunds cannot together exceed the capture.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from decimal import Decimal

from sqlalchemy import func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from walkout.checkout.money import Money
from walkout.service.clock import Clock
from walkout.service.models import LedgerAccount, LedgerPosting, LedgerTransaction
from walkout.service.payments.base import (
    Authorization,
    Capture,
    IdempotencyConflict,
    PaymentDeclined,
    PaymentError,
    Refund,
    UnknownPayment,
)

Posting = tuple[str, str, Decimal]  # (account name, side, amount > 0)


class LedgerProvider:
    """Payment provider backed by the service's own database (the embedded default).

    Payer references starting with ``decline_prefix`` are refused, as a real provider's test
    cards are, so that declines can be exercised without a network.
    """

    name = "ledger"

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, decline_prefix: str = "tok_decline"
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._decline_prefix = decline_prefix

    # ---- the provider interface ---------------------------------------------------------------

    def preauthorize(self, payer_ref: str, amount: Money, idempotency_key: str) -> Authorization:
        if amount.amount <= 0:
            raise PaymentError(f"pre-authorisation must be positive, got {amount}")
        if payer_ref.startswith(self._decline_prefix):
            raise PaymentDeclined("payment method declined")
        request = {"op": "preauth", "payer": payer_ref, "amount": str(amount)}

        def build(s: Session) -> tuple[LedgerTransaction, list[Posting]]:
            ref = _ref("auth")
            cur = amount.currency
            tx = self._tx("preauth", ref, idempotency_key, request, None, None, payer_ref, amount)
            return tx, [(f"hold:{ref}:{cur}", "debit", amount.amount),
                        (f"payer:{payer_ref}:{cur}", "credit", amount.amount)]

        tx, new = self._run(idempotency_key, request, build)
        status = "authorized" if new else self._auth_status(tx.ref)
        return Authorization(tx.ref, tx.payer_ref, _money(tx), status)

    def capture(self, auth_id: str, amount: Money, idempotency_key: str) -> Capture:
        request = {"op": "capture", "auth": auth_id, "amount": str(amount)}

        def build(s: Session) -> tuple[LedgerTransaction, list[Posting]]:
            auth = self._open_auth(s, auth_id)
            held = _money(auth)
            if amount.currency != held.currency:
                raise PaymentError(f"capture in {amount.currency} of a hold in {held.currency}")
            if amount.amount <= 0 or amount > held:
                raise PaymentError(f"capture {amount} must be > 0 and ≤ the hold of {held}")
            cur, rest = held.currency, held.amount - amount.amount
            tx = self._tx("capture", _ref("cap"), idempotency_key, request, auth_id, auth_id,
                          auth.payer_ref, amount)
            postings: list[Posting] = [(f"hold:{auth_id}:{cur}", "credit", held.amount),
                                       (f"store:sales:{cur}", "debit", amount.amount)]
            if rest > 0:
                postings.append((f"payer:{auth.payer_ref}:{cur}", "debit", rest))
            return tx, postings

        tx, _ = self._run(idempotency_key, request, build)
        return Capture(tx.ref, auth_id, _money(tx))

    def release(self, auth_id: str, idempotency_key: str) -> None:
        request = {"op": "release", "auth": auth_id}

        def build(s: Session) -> tuple[LedgerTransaction, list[Posting]]:
            auth = self._open_auth(s, auth_id)
            held = _money(auth)
            tx = self._tx("release", _ref("rel"), idempotency_key, request, auth_id, auth_id,
                          auth.payer_ref, held)
            return tx, [(f"hold:{auth_id}:{held.currency}", "credit", held.amount),
                        (f"payer:{auth.payer_ref}:{held.currency}", "debit", held.amount)]

        self._run(idempotency_key, request, build)

    def charge(self, payer_ref: str, amount: Money, idempotency_key: str) -> Capture:
        """Take ``amount`` from the payer without a hold (``ChargesSavedMethod``); refunds
        point at the returned ``capture_id`` as at a capture's."""
        if amount.amount <= 0:
            raise PaymentError(f"a charge must be positive, got {amount}")
        if payer_ref.startswith(self._decline_prefix):
            raise PaymentDeclined("payment method declined")
        request = {"op": "charge", "payer": payer_ref, "amount": str(amount)}

        def build(s: Session) -> tuple[LedgerTransaction, list[Posting]]:
            tx = self._tx("charge", _ref("chg"), idempotency_key, request, None, None,
                          payer_ref, amount)
            return tx, [(f"store:sales:{amount.currency}", "debit", amount.amount),
                        (f"payer:{payer_ref}:{amount.currency}", "credit", amount.amount)]

        tx, _ = self._run(idempotency_key, request, build)
        return Capture(tx.ref, tx.ref, _money(tx))

    def refund(self, capture_id: str, amount: Money, idempotency_key: str) -> Refund:
        request = {"op": "refund", "capture": capture_id, "amount": str(amount)}

        def build(s: Session) -> tuple[LedgerTransaction, list[Posting]]:
            cap = s.scalar(select(LedgerTransaction).where(
                LedgerTransaction.ref == capture_id,
                LedgerTransaction.kind.in_(("capture", "charge"))
            ).with_for_update())
            if cap is None:
                raise UnknownPayment(f"no capture {capture_id}")
            done = s.scalar(select(func.coalesce(func.sum(LedgerTransaction.amount), 0)).where(
                LedgerTransaction.parent_ref == capture_id, LedgerTransaction.kind == "refund"))
            left = _money(cap) - Money(Decimal(done), cap.currency)
            if amount.currency != cap.currency or amount.amount <= 0 or amount > left:
                raise PaymentError(f"refund {amount} must be > 0 and ≤ the {left} not yet refunded")
            tx = self._tx("refund", _ref("ref"), idempotency_key, request, capture_id, None,
                          cap.payer_ref, amount)
            return tx, [(f"store:sales:{amount.currency}", "credit", amount.amount),
                        (f"payer:{cap.payer_ref}:{amount.currency}", "debit", amount.amount)]

        tx, _ = self._run(idempotency_key, request, build)
        return Refund(tx.ref, capture_id, _money(tx))

    # ---- reading the ledger -------------------------------------------------------------------

    def balance(self, account: str) -> Decimal:
        """Debits minus credits of one ledger account (0 for an account never used)."""
        with self._sessions() as s:
            return account_balance(s, account)

    # ---- internals ----------------------------------------------------------------------------

    def _tx(self, kind: str, ref: str, key: str, request: dict[str, str], parent: str | None,
            closes: str | None, payer_ref: str, amount: Money) -> LedgerTransaction:
        return LedgerTransaction(
            ref=ref, kind=kind, idempotency_key=key, request_hash=_hash(request),
            parent_ref=parent, closes=closes, payer_ref=payer_ref, amount=amount.amount,
            currency=amount.currency, created_at=self._clock.now(),
        )

    def _open_auth(self, s: Session, auth_id: str) -> LedgerTransaction:
        auth = s.scalar(select(LedgerTransaction).where(
            LedgerTransaction.ref == auth_id, LedgerTransaction.kind == "preauth"
        ).with_for_update())
        if auth is None:
            raise UnknownPayment(f"no authorisation {auth_id}")
        closed = s.scalar(select(LedgerTransaction.kind).where(LedgerTransaction.closes == auth_id))
        if closed is not None:
            raise PaymentError(f"authorisation {auth_id} was already {closed}d")
        return auth

    def _auth_status(self, auth_id: str) -> str:
        with self._sessions() as s:
            closed = s.scalar(
                select(LedgerTransaction.kind).where(LedgerTransaction.closes == auth_id))
        return {None: "authorized", "capture": "captured", "release": "released"}[closed]

    def _run(
        self, key: str, request: dict[str, str],
        build: Callable[[Session], tuple[LedgerTransaction, list[Posting]]],
    ) -> tuple[LedgerTransaction, bool]:
        """Record one balanced transaction, or return the one already recorded under ``key``
        (with False: not new)."""
        try:
            with self._sessions.begin() as s:
                again = self._lookup(s, key, request)  # inside the lock (SQLite) / snapshot
                if again is not None:
                    return again, False
                tx, postings = build(s)
                s.add(tx)
                s.flush()
                _post(s, tx, postings)
            return tx, True
        except (IntegrityError, PaymentError) as e:
            # a concurrent duplicate won the race (the insert failed, or it closed the hold
            # while we waited for its lock): its row is the answer
            found = self._existing(key, request)
            if found is not None:
                return found, False
            if isinstance(e, PaymentError):
                raise
            raise PaymentError("authorisation already captured or released") from None

    def _existing(self, key: str, request: dict[str, str]) -> LedgerTransaction | None:
        with self._sessions() as s:
            return self._lookup(s, key, request)

    @staticmethod
    def _lookup(s: Session, key: str, request: dict[str, str]) -> LedgerTransaction | None:
        tx = s.scalar(select(LedgerTransaction).where(LedgerTransaction.idempotency_key == key))
        if tx is not None and tx.request_hash != _hash(request):
            raise IdempotencyConflict(f"idempotency key {key!r} was used for a different request")
        return tx


def pseudonymise_payer(s: Session, old: str, new: str) -> int:
    """Replace payer reference ``old`` by ``new`` everywhere in the ledger (erasure); returns
    the transactions touched. Amounts and postings are unchanged, so every balance still adds
    up. A pre-authorisation's request hash embeds the payer, so it is recomputed: the old hash
    would let whoever holds the card token find the erased rows again. Only the payer's own
    accounts (``payer:<old>:<currency>``) are renamed, never one whose name merely starts so."""
    n = 0
    for tx in s.scalars(select(LedgerTransaction).where(LedgerTransaction.payer_ref == old)):
        tx.payer_ref = new
        if tx.kind in ("preauth", "charge"):  # their requests name the payer
            tx.request_hash = _hash({"op": tx.kind, "payer": new, "amount": str(_money(tx))})
        n += 1
    for acct in s.scalars(select(LedgerAccount).where(LedgerAccount.name.startswith(
            f"payer:{old}:", autoescape=True))):
        if acct.name == f"payer:{old}:{acct.currency}":
            acct.name = f"payer:{new}:{acct.currency}"
    return n


def _post(s: Session, tx: LedgerTransaction, postings: list[Posting]) -> None:
    debit = sum((a for _, side, a in postings if side == "debit"), Decimal(0))
    credit = sum((a for _, side, a in postings if side == "credit"), Decimal(0))
    if debit != credit:  # a bug, never a runtime condition: refuse to write it
        raise AssertionError(f"unbalanced ledger transaction {tx.ref}: {debit} != {credit}")
    ids = _accounts(s, [name for name, _, _ in postings], tx.currency)
    s.execute(insert(LedgerPosting), [
        {"transaction_id": tx.id, "account_id": ids[name], "side": side, "amount": amount,
         "currency": tx.currency} for name, side, amount in postings])


def _accounts(s: Session, names: list[str], currency: str) -> dict[str, int]:
    """Ids of the ledger accounts ``names``, creating the missing ones (INSERT ... ON CONFLICT
    DO NOTHING: losing a creation race to a concurrent transaction is not an error)."""
    want = set(names)
    by_name = select(LedgerAccount.name, LedgerAccount.id)
    ids: dict[str, int] = {n: i for n, i in s.execute(
        by_name.where(LedgerAccount.name.in_(want)))}
    missing = sorted(want - ids.keys())
    if missing:
        ins = pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert
        s.execute(ins(LedgerAccount).values([{"name": n, "currency": currency} for n in missing])
                  .on_conflict_do_nothing(index_elements=["name"]))
        ids.update({n: i for n, i in s.execute(by_name.where(LedgerAccount.name.in_(missing)))})
    return ids


def account_balance(s: Session, account: str) -> Decimal:
    rows = s.execute(
        select(LedgerPosting.side, func.sum(LedgerPosting.amount))
        .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
        .where(LedgerAccount.name == account).group_by(LedgerPosting.side)
    ).all()
    sums = {side: Decimal(v) for side, v in rows}
    return sums.get("debit", Decimal(0)) - sums.get("credit", Decimal(0))


def unbalanced_transactions(s: Session) -> list[str]:
    """Refs of transactions whose debits differ from their credits (should always be none)."""
    out = []
    for ref, tid in s.execute(select(LedgerTransaction.ref, LedgerTransaction.id)).all():
        rows = s.execute(select(LedgerPosting.side, func.sum(LedgerPosting.amount))
                         .where(LedgerPosting.transaction_id == tid)
                         .group_by(LedgerPosting.side)).all()
        sums = {side: Decimal(v) for side, v in rows}
        if sums.get("debit", 0) != sums.get("credit", 0) or not sums:
            out.append(ref)
    return out


def _money(tx: LedgerTransaction) -> Money:
    return Money(Decimal(tx.amount), tx.currency)


def _ref(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _hash(request: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
