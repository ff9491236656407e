"""Privacy: retention purges the event log but keeps receipts and the ledger; a shopper exports
exactly their own data and can have it erased (receipts and ledger kept, pseudonymised)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select

from walkout.service import retention
from walkout.service.models import (
    Account,
    EngineEvent,
    LedgerAccount,
    LedgerTransaction,
    Receipt,
    ReceiptLine,
)
from walkout.service.payments.ledger import LedgerProvider, unbalanced_transactions
from walkout.service.testing import ADMIN_TOKEN, Svc, make_svc

BAR, WATER = "018627032007", "073360771026"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _log(svc: Svc, seq: int, age_days: float) -> None:
    with svc.deps.sessions.begin() as s:
        s.add(EngineEvent(source="sim/cases", seq=seq, kind="review_case", t=1.0, ref="e",
                          payload="{}",
                          recorded_at=svc.clock.now() - timedelta(days=age_days)))


def _count(svc: Svc, model: type) -> int:
    with svc.deps.sessions() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_purge_drops_old_evidence_and_keeps_receipts_and_ledger(svc: Svc) -> None:
    svc.leave(svc.enter(svc.shopper()), {BAR: 1})
    _log(svc, 0, 45)
    _log(svc, 1, 31)
    _log(svc, 2, 29)
    before = (_count(svc, Receipt), _count(svc, ReceiptLine), _count(svc, LedgerTransaction))
    with svc.deps.sessions.begin() as s:
        assert retention.purge(s, svc.clock.now(), days=30)["engine_events"] == 2
    with svc.deps.sessions() as s:
        assert list(s.scalars(select(EngineEvent.seq))) == [2]
    assert (_count(svc, Receipt), _count(svc, ReceiptLine),
            _count(svc, LedgerTransaction)) == before
    # the admin endpoint, with the configured default (30) or a shorter retention
    assert svc.client.post("/v1/admin/retention/purge", json={},
                           headers=svc.gate).status_code == 403
    r = svc.client.post("/v1/admin/retention/purge", json={}, headers=ADMIN)
    assert r.json() == {"days": 30, "deleted": {"engine_events": 0, "entry_codes": 0,
                                                "review_notes": 0, "stream_states": 0}}
    r = svc.client.post("/v1/admin/retention/purge", json={"days": 7}, headers=ADMIN)
    assert r.json()["deleted"]["engine_events"] == 1
    r = svc.client.post("/v1/admin/retention/purge", json={"days": 0}, headers=ADMIN)
    assert r.status_code == 422


def test_export_holds_all_my_data_and_nobody_elses(svc: Svc) -> None:
    c = svc.client
    ann = svc.shopper(card="tok_ann", email="ann@example.org")
    out = svc.leave(svc.enter(ann), {BAR: 2})
    c.post("/v1/disputes", json={"receipt_id": out["receipt_id"], "product_id": BAR,
                                 "reason": "only took one"}, headers=ann)
    bob = svc.shopper(card="tok_bob", email="bob@example.org")
    svc.leave(svc.enter(bob), {WATER: 1})
    data = c.get("/v1/me/export", headers=ann).json()
    assert data["account"]["email"] == "ann@example.org"
    assert [r["total"] for r in data["receipts"]] == ["18.38"]
    assert data["receipts"][0]["lines"][0]["quantity"] == 2
    assert len(data["visits"]) == 1 and data["visits"][0]["state"] == "charged"
    assert data["disputes"][0]["reason"] == "only took one"
    assert data["payment_methods"][0]["provider"] == "ledger"
    text = json.dumps(data)
    for foreign in ("bob@example.org", WATER, "tok_bob", "tok_ann"):
        assert foreign not in text
    assert c.get("/v1/me/export", headers=svc.gate).status_code == 403


def test_erasure_keeps_receipts_and_ledger_pseudonymised(svc: Svc) -> None:
    c = svc.client
    ann = svc.shopper(card="tok_ann_card", email="ann@example.org")
    vid = svc.enter(ann)
    r = c.delete("/v1/me", headers=ann)  # inside the store: not now
    assert r.status_code == 409 and r.json()["error"] == "visit_in_progress"
    out = svc.leave(vid, {BAR: 1, WATER: 1})
    ledger = svc.deps.provider
    assert isinstance(ledger, LedgerProvider)
    sales = ledger.balance("store:sales:EUR")
    r = c.delete("/v1/me", headers=ann)
    assert r.status_code == 200 and r.json()["erased"] is True
    assert r.json()["tokens_revoked"] == 1
    assert c.get("/v1/me", headers=ann).status_code == 401  # tokens revoked
    # the receipt is kept (operators still see it), the money ledger too
    rec = c.get(f"/v1/receipts/{out['receipt_id']}", headers=svc.gate).json()
    assert rec["total"] == "16.78"
    assert ledger.balance("store:sales:EUR") == sales == Decimal("16.78")
    with svc.deps.sessions() as s:
        acct = s.scalars(select(Account).where(Account.kind == "app")).one()
        assert acct.email is None and acct.display_name is None and acct.erased_at is not None
        payers = list(s.scalars(select(LedgerTransaction.payer_ref)))
        names = list(s.scalars(select(LedgerAccount.name)))
        hashes = set(s.scalars(select(LedgerTransaction.request_hash)))
        assert unbalanced_transactions(s) == []
    assert payers and all(p.startswith("erased:") for p in payers)
    assert not any("tok_ann_card" in n for n in names)
    # whoever holds the card token cannot find her pre-authorisation by its request hash
    probe = hashlib.sha256(json.dumps({"op": "preauth", "payer": "tok_ann_card",
                                       "amount": "50.00 EUR"}, sort_keys=True).encode())
    assert probe.hexdigest() not in hashes
    [payer] = [n for n in names if n.startswith("payer:")]
    assert ledger.balance(payer) == Decimal("-16.78")  # what the payer paid, still adds up
    # nothing leads back to her: the kiosk finds nothing, her card is a stranger now
    kiosk = svc.staff("kiosk")
    assert c.post("/v1/kiosk/receipts", json={"email": "ann@example.org"},
                  headers=kiosk).json() == []
    r = c.post("/v1/gates/entry/card", json={"card_token": "tok_ann_card"}, headers=svc.gate)
    assert r.status_code == 201
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Account)
                        .where(Account.kind == "card")) == 1


def test_erasure_waits_for_undecided_disputes(svc: Svc) -> None:
    h = svc.shopper()
    out = svc.leave(svc.enter(h), {BAR: 1})
    svc.client.post("/v1/disputes", json={"receipt_id": out["receipt_id"], "product_id": BAR,
                                          "reason": "not mine"}, headers=h)
    r = svc.client.delete("/v1/me", headers=h)
    assert r.status_code == 409 and r.json()["error"] == "dispute_in_progress"
    assert svc.client.get("/v1/me", headers=h).status_code == 200


def test_erasure_renames_only_the_erased_payers_ledger_accounts(svc: Svc) -> None:
    """Provider tokens are opaque strings: Bob's ``tok_ann:x`` starts like Ann's ``tok_ann``
    up to the ':' that ledger account names use. Ann's erasure must not touch his account."""
    ledger = svc.deps.provider
    assert isinstance(ledger, LedgerProvider)
    bob = svc.shopper(card="tok_ann:x", email="bob@example.org")
    svc.leave(svc.enter(bob), {WATER: 1})
    bob_paid = ledger.balance("payer:tok_ann:x:EUR")
    assert bob_paid == Decimal("-7.59")
    ann = svc.shopper(card="tok_ann", email="ann@example.org")
    svc.leave(svc.enter(ann), {BAR: 1})
    assert svc.client.delete("/v1/me", headers=ann).status_code == 200
    with svc.deps.sessions() as s:
        names = set(s.scalars(select(LedgerAccount.name)))
        refs = set(s.scalars(select(LedgerTransaction.payer_ref)))
        assert unbalanced_transactions(s) == []
    assert "payer:tok_ann:x:EUR" in names and "payer:tok_ann:EUR" not in names
    assert "tok_ann:x" in refs and "tok_ann" not in refs
    assert ledger.balance("payer:tok_ann:x:EUR") == bob_paid


def test_the_service_purges_by_itself_without_a_cron_job(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Retention is a promise (30 days by default), not a job the operator must remember:
    the service sweeps the event log and the evidence clips every ``retention_check_s``."""
    clips = tmp_path / "clips"
    clips.mkdir()
    svc = make_svc(engine, retention_check_s=0.05, evidence_dir=clips)
    now = svc.clock.now().timestamp()
    for name, age_days in (("old.mp4", 45), ("recent.mp4", 1)):
        (clips / name).write_bytes(b"\0")
        os.utime(clips / name, (now - age_days * 86400, now - age_days * 86400))
    with svc.client:
        _log(svc, 0, 45)
        _log(svc, 1, 29)
        deadline = time.monotonic() + 10
        while ((_count(svc, EngineEvent) > 1 or (clips / "old.mp4").exists())
               and time.monotonic() < deadline):
            time.sleep(0.05)
        with svc.deps.sessions() as s:
            assert list(s.scalars(select(EngineEvent.seq))) == [1]
        assert sorted(p.name for p in clips.iterdir()) == ["recent.mp4"]
        # the admin endpoint sweeps the clips too
        (clips / "old.mp4").write_bytes(b"\0")
        os.utime(clips / "old.mp4", (now - 45 * 86400, now - 45 * 86400))
        r = svc.client.post("/v1/admin/retention/purge", json={}, headers=ADMIN)
        assert r.json()["deleted"]["evidence_clips"] in (0, 1)  # the sweep may be first
        assert sorted(p.name for p in clips.iterdir()) == ["recent.mp4"]


def test_staff_answer_a_card_guests_privacy_request(svc: Svc) -> None:
    """A card-tap guest has no app to export or erase with: an admin does it for them, found
    by the card token or the e-mail address they left (identity checked by staff)."""
    c = svc.client
    r = c.post("/v1/gates/entry/card", headers=svc.gate,
               json={"card_token": "tok_guest_card", "email": "Gus@Example.org"})
    assert r.status_code == 201, r.text
    out = svc.leave(r.json()["visit_id"], {BAR: 1})
    app_user = svc.shopper(card="tok_app", email="ann@example.org")  # not named: untouched
    assert c.post("/v1/admin/privacy/export", json={"card_token": "tok_guest_card"},
                  headers=svc.gate).status_code == 403  # admins only
    r = c.post("/v1/admin/privacy/export", json={"email": "gus@example.org"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    [doc] = r.json()["accounts"]
    assert doc["account"]["kind"] == "card" and doc["account"]["email"] == "Gus@Example.org"
    assert [x["receipt_id"] for x in doc["receipts"]] == [out["receipt_id"]]
    r = c.post("/v1/admin/privacy/erase", json={"card_token": "tok_guest_card"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    [(account_id, done)] = r.json()["accounts"].items()
    assert done["erased"] is True and account_id == doc["account"]["account_id"]
    r = c.post("/v1/admin/privacy/export", json={"email": "gus@example.org"}, headers=ADMIN)
    assert r.json()["accounts"] == []  # nothing leads to the guest any more
    assert c.get("/v1/me", headers=app_user).status_code == 200
    assert c.post("/v1/admin/privacy/erase", json={}, headers=ADMIN).status_code == 422
