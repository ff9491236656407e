"""The built-in ledger provider: balanced postings, and each idempotency key moves money once,
even when the same request arrives twice at the same moment from two threads."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select

from walkout.checkout.money import Money
from walkout.service.clock import ManualClock
from walkout.service.db import session_factory
from walkout.service.models import LedgerTransaction
from walkout.service.payments.base import IdempotencyConflict, PaymentDeclined, PaymentError
from walkout.service.payments.ledger import LedgerProvider, unbalanced_transactions


def eur(x: str) -> Money:
    return Money.of(x, "EUR")


@pytest.fixture
def ledger(engine: Engine) -> LedgerProvider:
    return LedgerProvider(session_factory(engine), ManualClock())


def test_preauth_capture_refund_balance(ledger: LedgerProvider, engine: Engine) -> None:
    auth = ledger.preauthorize("tok_a", eur("50"), "k-auth")
    assert ledger.balance(f"hold:{auth.auth_id}:EUR") == Decimal("50")
    cap = ledger.capture(auth.auth_id, eur("12.34"), "k-cap")
    assert cap.amount == eur("12.34")
    assert ledger.balance(f"hold:{auth.auth_id}:EUR") == 0
    assert ledger.balance("payer:tok_a:EUR") == Decimal("-12.34")
    assert ledger.balance("store:sales:EUR") == Decimal("12.34")
    ledger.refund(cap.capture_id, eur("2.34"), "k-ref")
    assert ledger.balance("store:sales:EUR") == Decimal("10.00")
    with pytest.raises(PaymentError, match="not yet refunded"):
        ledger.refund(cap.capture_id, eur("10.01"), "k-ref2")
    with session_factory(engine)() as s:
        assert unbalanced_transactions(s) == []


def test_same_key_returns_original_and_charges_once(ledger: LedgerProvider,
                                                    engine: Engine) -> None:
    auth = ledger.preauthorize("tok_a", eur("50"), "k-auth")
    assert ledger.preauthorize("tok_a", eur("50"), "k-auth") == auth
    first = ledger.capture(auth.auth_id, eur("20"), "k-cap")
    again = ledger.capture(auth.auth_id, eur("20"), "k-cap")
    assert again == first
    assert ledger.balance("store:sales:EUR") == Decimal("20")
    with pytest.raises(IdempotencyConflict):
        ledger.capture(auth.auth_id, eur("21"), "k-cap")
    with pytest.raises(PaymentError, match="already capture"):
        ledger.capture(auth.auth_id, eur("20"), "another-key")  # one capture per hold
    with pytest.raises(PaymentError, match="already capture"):
        ledger.release(auth.auth_id, "k-rel")


def test_concurrent_duplicate_captures_charge_once(ledger: LedgerProvider,
                                                   engine: Engine) -> None:
    auth = ledger.preauthorize("tok_a", eur("50"), "k-auth")
    barrier = threading.Barrier(4)
    results: list[object] = []

    def go() -> None:
        barrier.wait()
        results.append(ledger.capture(auth.auth_id, eur("30"), "k-cap"))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(map(repr, results))) == 1
    assert ledger.balance("store:sales:EUR") == Decimal("30")
    with session_factory(engine)() as s:
        n = s.scalar(select(func.count()).select_from(LedgerTransaction)
                     .where(LedgerTransaction.kind == "capture"))
        assert n == 1
        assert unbalanced_transactions(s) == []


def test_decline_and_limits(ledger: LedgerProvider) -> None:
    with pytest.raises(PaymentDeclined):
        ledger.preauthorize("tok_decline_x", eur("5"), "k1")
    auth = ledger.preauthorize("tok_a", eur("5"), "k2")
    with pytest.raises(PaymentError, match="≤ the hold"):
        ledger.capture(auth.auth_id, eur("5.01"), "k3")
    ledger.release(auth.auth_id, "k4")
    assert ledger.balance("payer:tok_a:EUR") == 0


def test_charge_takes_without_a_hold_once_per_key_and_can_be_refunded(
        ledger: LedgerProvider, engine: Engine) -> None:
    """A visit's balance above its hold: charged from the saved method, no authorisation."""
    got = ledger.charge("tok_a", eur("349.60"), "visit:v1:balance")
    assert got.amount == eur("349.60") and got.capture_id.startswith("chg_")
    assert ledger.charge("tok_a", eur("349.60"), "visit:v1:balance") == got  # a retry
    assert ledger.balance("store:sales:EUR") == Decimal("349.60")
    assert ledger.balance("payer:tok_a:EUR") == Decimal("-349.60")
    with pytest.raises(IdempotencyConflict):
        ledger.charge("tok_a", eur("1.00"), "visit:v1:balance")
    with pytest.raises(PaymentDeclined):
        ledger.charge("tok_decline_1", eur("5"), "visit:v2:balance")
    with pytest.raises(PaymentError, match="positive"):
        ledger.charge("tok_a", eur("0"), "visit:v3:balance")
    ledger.refund(got.capture_id, eur("9.60"), "refund-1")
    assert ledger.balance("store:sales:EUR") == Decimal("340.00")
    with pytest.raises(PaymentError, match="not yet refunded"):
        ledger.refund(got.capture_id, eur("340.01"), "refund-2")
    with session_factory(engine)() as s:
        assert unbalanced_transactions(s) == []


def test_erasure_rehashes_a_charge_that_named_the_payer(ledger: LedgerProvider,
                                                         engine: Engine) -> None:
    from walkout.service.payments.ledger import _hash, pseudonymise_payer

    ledger.charge("tok_card_ann", eur("5.14"), "visit:v1:balance")
    with session_factory(engine).begin() as s:
        assert pseudonymise_payer(s, "tok_card_ann", "erased:1") == 1
    with session_factory(engine)() as s:
        tx = s.scalars(select(LedgerTransaction)).one()
        assert tx.payer_ref == "erased:1"
        assert tx.request_hash != _hash({"op": "charge", "payer": "tok_card_ann",
                                         "amount": str(eur("5.14"))})
