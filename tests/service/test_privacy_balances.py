"""A shopper's owed balance is data about her: her export says what she owed and how it was
settled, and her erasure takes the operator's free-text note on it (as it takes the notes on
her disputes) while the amounts stay for the books. Real service, real ledger, on SQLite and
PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Engine

from walkout.service import checkout, webhooks
from walkout.service.models import PaymentWebhookEvent, Visit

from .faults import FaultyLedger, start

BAR = "018627032007"  # 9.19 EUR in the `small` store: 6 of them are 55.14, above the 50.00 hold


def test_export_shows_her_balance_and_erasure_takes_the_operators_note(engine: Engine) -> None:
    svc, _ = start(engine, ledger=FaultyLedger)  # cannot charge a saved method: stays owed
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        assert svc.leave(vid, {BAR: 6})["state"] == "in_review"
        owed = svc.client.get("/v1/me/export", headers=h).json()["visits"][0]["balance"]
        assert owed == {"owed": "5.14", "currency": "EUR", "settled_at": None,
                        "settlement": None, "note": None, "written_off": "0.00"}
        checkout.write_off_balance(svc.deps, vid, "op-1", "Ann S., says her card was stolen")
        data = svc.client.get("/v1/me/export", headers=h).json()
        bal = data["visits"][0]["balance"]
        assert (bal["owed"], bal["settlement"], bal["written_off"]) == (
            "5.14", "written_off", "5.14")
        assert bal["settled_at"] is not None
        assert bal["note"] == "Ann S., says her card was stolen"
        # the money the visit moved reads as money everywhere in the export
        assert [c["amount"] for c in data["visits"][0]["charges"]] == ["50.00", "50.00"]
        assert svc.client.delete("/v1/me", headers=h).status_code == 200
        with svc.deps.sessions() as s:
            v = s.get(Visit, vid)
            assert v is not None
            assert v.balance_note is None  # free text about her: gone
            # the books keep what was owed and how it was settled
            assert v.balance_owed == Decimal("5.14") and v.balance_settlement == "written_off"


def test_a_visit_that_never_owed_exports_no_balance(engine: Engine) -> None:
    svc, _ = start(engine)
    with svc.client:
        h = svc.shopper()
        svc.leave(svc.enter(h), {BAR: 1})
        [visit] = svc.client.get("/v1/me/export", headers=h).json()["visits"]
        assert visit["balance"] is None


def test_a_dispute_refund_reads_as_money_in_the_export(engine: Engine) -> None:
    svc, _ = start(engine)
    with svc.client:
        h = svc.shopper()
        out = svc.leave(svc.enter(h), {BAR: 1})
        r = svc.client.post("/v1/disputes", headers=h, json={
            "receipt_id": out["receipt_id"], "product_id": BAR, "reason": "not mine"})
        assert r.status_code == 201, r.text
        r = svc.client.post(f"/v1/disputes/{r.json()['dispute_id']}/decision",
                            json={"decision": "refund"}, headers=svc.gate)
        assert r.status_code == 200, r.text
        [dispute] = svc.client.get("/v1/me/export", headers=h).json()["disputes"]
        assert dispute["refund_amount"] == "9.19"


def test_erasure_takes_staffs_note_on_a_payment_event_of_her_visit(engine: Engine) -> None:
    """Staff acknowledging a payment event that needed them (a chargeback, a hold gone while
    she owed money) may write about her ("called Ann, she did not know the store's name"):
    free text about her, gone with her erasure; the event itself names a visit and stays."""
    svc, _ = start(engine)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        svc.leave(vid, {BAR: 1})
        bob = svc.shopper(card="tok_bob", email="bob@example.org")
        bob_vid = svc.enter(bob)
        svc.leave(bob_vid, {BAR: 1})
        now = svc.clock.now()
        with svc.deps.sessions.begin() as s:
            for ev, v in (("evt_ann", vid), ("evt_bob", bob_vid)):
                s.add(PaymentWebhookEvent(event_id=ev, provider="stripe",
                                          type="charge.dispute.created", object_id="dp_1",
                                          visit_id=v, created_at=now, received_at=now,
                                          outcome="attention", detail="chargeback dp_1"))
        webhooks.acknowledge(svc.deps, "evt_ann", "op-1", "called Ann S. on 0612345678")
        webhooks.acknowledge(svc.deps, "evt_bob", "op-1", "Bob will call back")
        assert svc.client.delete("/v1/me", headers=h).status_code == 200
        with svc.deps.sessions() as s:
            ann, other = s.get(PaymentWebhookEvent, "evt_ann"), s.get(PaymentWebhookEvent,
                                                                      "evt_bob")
            assert ann is not None and other is not None
            assert ann.acknowledged_note is None and ann.acknowledged_at is not None
            assert other.acknowledged_note == "Bob will call back"
