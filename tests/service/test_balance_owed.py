"""A cart above the pre-authorisation: the exit captures the hold, the rest is the visit's
balance. It is charged at once to the saved payment method (once, under its own key), or kept
owed: listed for staff, and its shopper refused at the next entry (409 ``balance_owed``, QR
and card) until a later charge or an operator's write-off settles it. Real service, real
ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Engine, select

from walkout.service import checkout, housekeeping, revisions
from walkout.service.checkout import LineRequest
from walkout.service.errors import ServiceError
from walkout.service.models import LedgerTransaction, Visit
from walkout.service.payments.base import ChargesSavedMethod
from walkout.service.testing import Svc

from .faults import ChargingLedger, Fault, FaultyLedger, at_once, charges, start, visit_state

BAR = "018627032007"  # 9.19 EUR in the `small` store: 6 of them are 55.14, above the 50.00 hold


def _start(engine: Engine, charging: bool = True) -> tuple[Svc, FaultyLedger]:
    """The service paying through the faulty ledger, with ``charge`` or (``charging`` False)
    without it, as a provider that cannot charge a saved method."""
    return start(engine, ledger=ChargingLedger if charging else FaultyLedger)


def _visit(svc: Svc, vid: str) -> Visit:
    with svc.deps.sessions() as s:
        v = s.get(Visit, vid)
        assert v is not None
        return v


def _scan(svc: Svc, h: dict[str, str]) -> tuple[int, str | None]:
    r = svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h)}, headers=svc.gate)
    return r.status_code, r.json().get("error")


def _tap(svc: Svc, card: str) -> tuple[int, str | None]:
    r = svc.client.post("/v1/gates/entry/card", json={"card_token": card}, headers=svc.gate)
    return r.status_code, r.json().get("error")


def test_the_balance_above_the_hold_is_charged_once_to_the_saved_method(
        engine: Engine) -> None:
    svc, pay = _start(engine)
    assert isinstance(pay, ChargesSavedMethod)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        out = svc.leave(vid, {BAR: 6})
        assert out["total"] == {"amount": "55.14", "currency": "EUR"}
        assert out["charged"] == out["total"] and out["state"] == "charged"
        assert charges(svc, vid) == [
            ("preauth", f"visit:{vid}:preauth", "succeeded"),
            ("capture", f"visit:{vid}:capture", "succeeded"),
            ("capture", f"visit:{vid}:balance", "succeeded")]
        assert pay.sales() == Decimal("55.14")
        v = _visit(svc, vid)
        assert v.balance_owed == Decimal("5.14") and v.balance_settlement == "charged"
        # a retried exit answers the same and charges nothing more
        again = svc.client.post(f"/v1/visits/{vid}/exit", headers=svc.gate).json()
        assert again == out and pay.keys("charge") == [f"visit:{vid}:balance"]
        housekeeping.turn(svc.deps)
        assert pay.keys("charge") == [f"visit:{vid}:balance"] and pay.sales() == Decimal("55.14")
        assert checkout.owed_balances(svc.deps) == []
        assert _scan(svc, h) == (201, None)


def test_a_refused_balance_stays_owed_and_blocks_entry_until_charged(engine: Engine) -> None:
    svc, pay = _start(engine)
    with svc.client:
        h = svc.shopper(card="tok_visa_owing")
        vid = svc.enter(h)
        pay.fail("charge", "declined")
        out = svc.leave(vid, {BAR: 6})
        assert out["state"] == "in_review"
        assert out["charged"] == {"amount": "50.00", "currency": "EUR"}
        assert pay.sales() == Decimal("50.00")
        [owed] = checkout.owed_balances(svc.deps)
        assert (owed["visit_id"], owed["amount"], owed["currency"]) == (vid, "5.14", "EUR")
        assert owed["receipt_id"] == out["receipt_id"] and owed["settled"] is False
        assert owed["last_attempt"]["status"] == "failed"  # type: ignore[index]
        # she is refused at the next entry, by code and by her card, until it is settled
        assert _scan(svc, h) == (409, "balance_owed")
        assert _tap(svc, "tok_visa_owing") == (409, "balance_owed")
        housekeeping.turn(svc.deps)  # a refusal is not retried blindly
        assert pay.keys("charge") == [f"visit:{vid}:balance"]
        # staff try again (her card works now): a new attempt under a new key
        got = checkout.collect_balance(svc.deps, vid)
        assert got["settled"] is True and got["settlement"] == "charged"
        assert pay.keys("charge") == [f"visit:{vid}:balance", f"visit:{vid}:balance:1"]
        assert pay.sales() == Decimal("55.14")
        assert checkout.collect_balance(svc.deps, vid)["settled"] is True  # idempotent
        assert pay.sales() == Decimal("55.14")
        assert checkout.owed_balances(svc.deps) == []
        assert _scan(svc, h) == (201, None)


def test_two_attempts_at_a_balance_at_once_charge_it_once(engine: Engine) -> None:
    """Staff press "Charge again" as the shopper pays it in her app: the second waits for the
    first's attempt (a barrier would hold two inserts of it; the locks let one through) and
    answers it settled: one charge. The times it answers carry their zone (SQLite stores
    them without one: the pages read them as the browser's local time)."""
    svc, pay = _start(engine)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        pay.fail("charge", "declined")
        svc.leave(vid, {BAR: 6})  # 5.14 owed, its first attempt refused
        got = at_once(svc, "charges",
                      lambda: checkout.collect_balance(svc.deps, vid)["settled"])
        assert got == [True, True], got
        assert pay.sales() == Decimal("55.14")
        assert set(pay.keys("charge")) == {f"visit:{vid}:balance", f"visit:{vid}:balance:1"}
        [bal] = checkout.owed_balances(svc.deps, include_settled=True)
        for at in (bal["exited_at"], bal["settled_at"], bal["last_attempt"]["at"]):  # type: ignore[index]
            assert str(at).endswith("+00:00"), bal


def test_an_operator_writes_a_balance_off(engine: Engine) -> None:
    svc, pay = _start(engine, charging=False)  # a provider that cannot charge a saved method
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        out = svc.leave(vid, {BAR: 6})
        assert out["state"] == "in_review" and pay.sales() == Decimal("50.00")
        assert [c[1] for c in charges(svc, vid)] == [f"visit:{vid}:preauth",
                                                     f"visit:{vid}:capture"]
        assert _visit(svc, vid).balance_owed == Decimal("5.14")
        assert _scan(svc, h) == (409, "balance_owed")
        try:
            checkout.collect_balance(svc.deps, vid)
            raise AssertionError("collected through a provider that cannot charge")
        except ServiceError as e:
            assert e.code == "cannot_charge"
        done = checkout.write_off_balance(svc.deps, vid, "op-1", "regular customer")
        assert (done["settlement"], done["settled_by"], done["note"]) == (
            "written_off", "op-1", "regular customer")
        again = checkout.write_off_balance(svc.deps, vid, "op-2")  # idempotent: the first
        assert again["settled_by"] == "op-1"
        assert checkout.owed_balances(svc.deps) == []
        [listed] = checkout.owed_balances(svc.deps, include_settled=True)
        assert listed["settlement"] == "written_off"
        assert _scan(svc, h) == (201, None)
        nothing = svc.enter(svc.shopper(card="tok_other", email="bob@example.org"))
        try:
            checkout.write_off_balance(svc.deps, nothing, "op-1")
            raise AssertionError("wrote off a visit that owes nothing")
        except ServiceError as e:
            assert e.code == "no_balance"


def test_a_balance_charge_whose_answer_was_lost_is_repeated_with_its_key(
        engine: Engine) -> None:
    svc, pay = _start(engine)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        pay.fail("charge", "lost")  # taken, the answer lost
        out = svc.leave(vid, {BAR: 6})
        assert out["state"] == "in_review"
        assert charges(svc, vid)[-1] == ("capture", f"visit:{vid}:balance", "pending")
        try:  # its money may have moved: it is not written off under it
            checkout.write_off_balance(svc.deps, vid, "op-1")
            raise AssertionError("written off while its charge was in flight")
        except ServiceError as e:
            assert e.code == "balance_collecting"
        assert _scan(svc, h) == (409, "balance_owed")
        housekeeping.turn(svc.deps)  # the timer repeats it, same key: charged once
        assert pay.keys("charge") == [f"visit:{vid}:balance"] * 2
        assert charges(svc, vid)[-1] == ("capture", f"visit:{vid}:balance", "succeeded")
        assert pay.sales() == Decimal("55.14")
        assert _visit(svc, vid).balance_settlement == "charged"
        assert visit_state(svc, vid) == "charged"  # in review only for want of the money
        assert _scan(svc, h) == (201, None)


def test_the_operators_see_a_balance_owed_and_settle_it_through_the_api(
        engine: Engine) -> None:
    """The payments card's data (``GET /v1/ops/payment-attention``) lists the balance and
    counts it; the card's buttons collect it (409 ``cannot_charge`` where the provider cannot
    charge a saved card) or write it off with who and a note; shoppers are refused."""
    svc, _ = _start(engine, charging=False)
    with svc.client:
        c, op = svc.client, svc.gate
        h = svc.shopper()
        vid = svc.enter(h)
        svc.leave(vid, {BAR: 6})
        att = c.get("/v1/ops/payment-attention", headers=op).json()
        assert att["counts"]["owed_balances"] == 1
        [owed] = att["owed_balances"]
        assert (owed["visit_id"], owed["amount"], owed["settled"]) == (vid, "5.14", False)
        r = c.post(f"/v1/ops/visits/{vid}/balance/collect", headers=op)
        assert (r.status_code, r.json()["error"]) == (409, "cannot_charge")
        assert c.post(f"/v1/ops/visits/{vid}/balance/write-off", json={"note": "regular"},
                      headers=h).status_code == 403  # a shopper cannot
        r = c.post(f"/v1/ops/visits/{vid}/balance/write-off", json={"note": "regular"},
                   headers=op)
        assert r.status_code == 200 and r.json()["settlement"] == "written_off"
        assert r.json()["note"] == "regular" and r.json()["settled_by"]
        att = c.get("/v1/ops/payment-attention", headers=op).json()
        assert att["counts"]["owed_balances"] == 0 and att["owed_balances"] == []
        r = c.post("/v1/ops/visits/nope/balance/collect", headers=op)
        assert r.status_code == 404


def test_erasure_waits_for_a_balance_owed(engine: Engine) -> None:
    """Money still moves while a balance is owed (it is collected, or written off): erasure
    is refused until then, as with an undecided dispute."""
    svc, _ = _start(engine, charging=False)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        svc.leave(vid, {BAR: 6})
        r = svc.client.delete("/v1/me", headers=h)
        assert (r.status_code, r.json()["error"]) == (409, "balance_owed")
        checkout.write_off_balance(svc.deps, vid, "op-1")
        assert svc.client.delete("/v1/me", headers=h).status_code == 200


# ---- a capture refused at the exit, a revision above what was taken ----------------------------


def _verdict(svc: Svc, vid: str, product: str, quantity: int, case: str = "review") -> None:
    """A review verdict of ``case`` after the receipt (as the engine worker applies it)."""
    revisions.add_review_lines(svc.deps, vid, [LineRequest(
        f"ev-{case}:{product}:{quantity:+d}:review", product, quantity, f"ev-{case}")])
    revisions.revise(svc.deps, vid, needs_review=False)


def _capture_refused(svc: Svc, pay: FaultyLedger, fault: Fault, bars: int
                     ) -> tuple[dict[str, str], str, dict[str, object]]:
    """A shopper whose exit's capture of ``bars`` bars is refused with ``fault``: her
    Authorization header, the visit and the exit's answer."""
    h = svc.shopper()
    vid = svc.enter(h)
    pay.fail("capture", fault)
    return h, vid, svc.leave(vid, {BAR: bars})


def test_a_capture_refused_because_the_hold_is_gone_charges_the_saved_method(
        engine: Engine) -> None:
    """The hold expired before the exit: nothing is held, so the whole receipt is owed and
    the saved card is charged for it at once, once."""
    svc, pay = _start(engine)
    with svc.client:
        h, vid, out = _capture_refused(svc, pay, "gone", 2)
        assert out["state"] == "charged"
        assert out["charged"] == out["total"] == {"amount": "18.38", "currency": "EUR"}
        assert charges(svc, vid)[1:] == [("capture", f"visit:{vid}:capture", "failed"),
                                         ("capture", f"visit:{vid}:balance", "succeeded"),
                                         ("release", f"visit:{vid}:hold-release", "succeeded")]
        assert pay.sales() == Decimal("18.38")
        assert pay.held(svc, vid) == 0  # a hold still there is not left beside the payment
        v = _visit(svc, vid)
        assert (v.balance_owed, v.balance_settlement) == (Decimal("18.38"), "charged")
        again = svc.client.post(f"/v1/visits/{vid}/exit", headers=svc.gate).json()
        assert again == out  # answered as then, nothing charged twice
        housekeeping.turn(svc.deps)
        assert pay.keys("charge") == [f"visit:{vid}:balance"]
        assert _scan(svc, h) == (201, None)


def test_a_capture_declined_leaves_the_receipt_owed_for_staff(engine: Engine) -> None:
    """A card decline at capture says nothing of the hold: the saved card is not charged
    blindly beside it. The receipt is owed, listed for staff, and its shopper refused at the
    gate until staff collect it."""
    svc, pay = _start(engine)
    with svc.client:
        h, vid, out = _capture_refused(svc, pay, "declined", 2)
        assert out["state"] == "in_review"
        assert out["charged"] == {"amount": "0.00", "currency": "EUR"}
        assert pay.keys("charge") == [] and pay.sales() == 0
        [owed] = checkout.owed_balances(svc.deps)
        assert (owed["visit_id"], owed["amount"], owed["settled"]) == (vid, "18.38", False)
        assert owed["last_attempt"] is None
        assert _scan(svc, h) == (409, "balance_owed")
        assert pay.held(svc, vid) == Decimal("50.00")  # the decline left the hold standing
        got = checkout.collect_balance(svc.deps, vid)  # staff, having checked the hold
        assert got["settled"] is True and pay.sales() == Decimal("18.38")
        assert pay.held(svc, vid) == 0  # paid: the hold is released, once
        checkout.collect_balance(svc.deps, vid)
        assert pay.keys("release") == [f"visit:{vid}:hold-release"]
        assert visit_state(svc, vid) == "charged"
        assert _scan(svc, h) == (201, None)


def test_a_hold_release_whose_answer_was_lost_is_repeated_with_its_key(engine: Engine) -> None:
    """The release after a declined capture was paid goes out, and its answer is lost: the
    housekeeping timer repeats it with the same key until it is confirmed (before, it stayed
    pending for good, listed for staff)."""
    svc, pay = _start(engine)
    with svc.client:
        _h, vid, _out = _capture_refused(svc, pay, "declined", 2)
        pay.fail("release", "down")
        checkout.collect_balance(svc.deps, vid)
        assert pay.held(svc, vid) == Decimal("50.00")
        assert charges(svc, vid)[-1] == ("release", f"visit:{vid}:hold-release", "pending")
        housekeeping.turn(svc.deps)
        assert pay.held(svc, vid) == 0
        assert charges(svc, vid)[-1] == ("release", f"visit:{vid}:hold-release", "succeeded")
        assert pay.keys("release") == [f"visit:{vid}:hold-release"] * 2
        housekeeping.turn(svc.deps)  # confirmed: not called again
        assert len(pay.keys("release")) == 2 and checkout.unconfirmed_charges(svc.deps) == []


def test_a_capture_refused_with_a_provider_that_cannot_charge_is_owed(engine: Engine) -> None:
    svc, pay = _start(engine, charging=False)
    with svc.client:
        h, vid, out = _capture_refused(svc, pay, "gone", 1)
        assert out["state"] == "in_review" and pay.sales() == 0
        assert _visit(svc, vid).balance_owed == Decimal("9.19")
        assert _scan(svc, h) == (409, "balance_owed")


def test_a_revision_above_what_was_taken_is_charged_to_the_saved_method(
        engine: Engine) -> None:
    """A verdict after the receipt adds an item: the capture is closed, so the difference is
    owed and charged to the saved card; refused, it blocks the next entry."""
    svc, pay = _start(engine)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        svc.leave(vid, {BAR: 1})
        _verdict(svc, vid, BAR, +1)
        assert visit_state(svc, vid) == "charged" and pay.sales() == Decimal("18.38")
        assert pay.keys("charge") == [f"visit:{vid}:balance"]
        assert _visit(svc, vid).balance_owed == Decimal("9.19")

        h2 = svc.shopper(card="tok_other", email="bob@example.org")
        v2 = svc.enter(h2)
        svc.leave(v2, {BAR: 1})
        pay.fail("charge", "declined")
        _verdict(svc, v2, BAR, +1)
        assert visit_state(svc, v2) == "in_review" and pay.sales() == Decimal("27.57")
        [owed] = checkout.owed_balances(svc.deps)
        assert (owed["visit_id"], owed["amount"]) == (v2, "9.19")
        assert _scan(svc, h2) == (409, "balance_owed")


def test_a_balance_written_off_is_not_asked_for_again_by_a_revision(engine: Engine) -> None:
    svc, pay = _start(engine, charging=False)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        svc.leave(vid, {BAR: 6})  # 55.14: 50.00 captured, 5.14 owed
        assert visit_state(svc, vid) == "in_review"
        checkout.write_off_balance(svc.deps, vid, "op-1")
        assert visit_state(svc, vid) == "charged"  # it was in review only for the money
        revisions.revise(svc.deps, vid, needs_review=False)  # e.g. a verdict's note
        assert visit_state(svc, vid) == "charged"
        assert checkout.owed_balances(svc.deps) == [] and _scan(svc, h) == (201, None)
        assert pay.sales() == Decimal("50.00")


def test_a_receipt_raised_again_after_its_balance_was_charged_owes_the_new_difference(
        engine: Engine) -> None:
    """A first verdict raises the receipt above the capture: the difference is charged. A
    second one raises it again: the new difference is owed and charged the same way, under
    the next attempt's key, not left for staff to find."""
    svc, pay = _start(engine)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        svc.leave(vid, {BAR: 1})
        _verdict(svc, vid, BAR, +1)
        assert pay.sales() == Decimal("18.38") and _visit(svc, vid).balance_settled_at
        pay.fail("charge", "declined")
        _verdict(svc, vid, BAR, +1, "second")  # 27.57 now: 9.19 more
        assert visit_state(svc, vid) == "in_review"
        [owed] = checkout.owed_balances(svc.deps)
        assert (owed["visit_id"], owed["amount"], owed["settled"]) == (vid, "9.19", False)
        assert _scan(svc, h) == (409, "balance_owed")
        got = checkout.collect_balance(svc.deps, vid)  # staff, once the card works again
        assert got["settled"] is True and pay.sales() == Decimal("27.57")
        assert pay.keys("charge") == [f"visit:{vid}:balance", f"visit:{vid}:balance:1",
                                      f"visit:{vid}:balance:2"]
        assert visit_state(svc, vid) == "charged" and _scan(svc, h) == (201, None)
        _verdict(svc, vid, BAR, -1, "third")  # a verdict that lowers it refunds what is over
        assert pay.sales() == Decimal("18.38")


def test_after_a_write_off_a_second_rise_asks_only_for_the_new_difference(
        engine: Engine) -> None:
    svc, pay = _start(engine, charging=False)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        svc.leave(vid, {BAR: 6})  # 55.14: 50.00 captured, 5.14 owed
        checkout.write_off_balance(svc.deps, vid, "op-1", "regular")
        _verdict(svc, vid, BAR, +1)  # 64.33: 9.19 more, the 5.14 stays written off
        assert visit_state(svc, vid) == "in_review"
        [owed] = checkout.owed_balances(svc.deps)
        assert (owed["amount"], owed["written_off"], owed["settled"]) == ("9.19", "5.14", False)
        assert _scan(svc, h) == (409, "balance_owed")
        done = checkout.write_off_balance(svc.deps, vid, "op-2")
        assert (done["written_off"], done["settled_by"]) == ("14.33", "op-2")
        revisions.revise(svc.deps, vid, needs_review=False)  # nothing new: nothing asked
        assert checkout.owed_balances(svc.deps) == [] and visit_state(svc, vid) == "charged"
        assert pay.sales() == Decimal("50.00") and _scan(svc, h) == (201, None)


WATER = "073360771026"  # 7.59 EUR


def test_a_rise_while_the_balance_charge_is_in_flight_is_charged_too(engine: Engine) -> None:
    """A verdict adds 7.59 and its charge goes unanswered; a second adds 9.19 while it is in
    flight. When the first is confirmed, the 9.19 is still owed and charged next, under the
    next attempt's key (before: the whole 16.78 was marked settled by the 7.59)."""
    svc, pay = _start(engine)
    with svc.client:
        vid = svc.enter(svc.shopper())
        svc.leave(vid, {BAR: 1})
        pay.fail("charge", "down")
        _verdict(svc, vid, WATER, +1, "first")  # 7.59 owed, its charge's outcome unknown
        _verdict(svc, vid, BAR, +1, "second")  # 9.19 more while it is in flight
        assert pay.sales() == Decimal("9.19")
        housekeeping.turn(svc.deps)
        assert pay.sales() == Decimal("25.97")
        assert pay.keys("charge") == [f"visit:{vid}:balance", f"visit:{vid}:balance",
                                      f"visit:{vid}:balance:1"]
        [bal] = checkout.owed_balances(svc.deps, include_settled=True)
        assert (bal["amount"], bal["settled"]) == ("9.19", True)
        assert visit_state(svc, vid) == "charged"


def test_a_fall_while_the_balance_charge_is_in_flight_is_refunded(engine: Engine) -> None:
    """A verdict adds 7.59 and its charge goes unanswered; a second takes the item off again
    while it is in flight. When the charge is confirmed after all, what it took is refunded."""
    svc, pay = _start(engine)
    with svc.client:
        vid = svc.enter(svc.shopper())
        svc.leave(vid, {BAR: 1})
        pay.fail("charge", "down")
        _verdict(svc, vid, WATER, +1, "first")
        _verdict(svc, vid, WATER, -1, "second")
        housekeeping.turn(svc.deps)
        assert pay.sales() == Decimal("9.19")
        assert len(pay.keys("refund")) == 1
        assert checkout.owed_balances(svc.deps) == []


# ---- the shopper pays what she owes herself ----------------------------------------------------


def _pay(svc: Svc, h: dict[str, str], vid: str) -> tuple[int, dict[str, object]]:
    r = svc.client.post(f"/v1/me/balances/{vid}/pay", headers=h)
    return r.status_code, dict(r.json())


def test_the_shopper_pays_her_balance_with_a_card_she_adds_after_a_decline(
        engine: Engine) -> None:
    """Her card is refused for the balance: the app shows what she owes (``GET /v1/me``), she
    pays it herself — refused again on the same card (402, still owed), then paid with the
    card she adds (her newest method, not the visit's) — and the gate lets her in."""
    svc, pay = _start(engine)
    with svc.client:
        h = svc.shopper(card="tok_visa_owing")
        vid = svc.enter(h)
        pay.fail("charge", "declined", "declined")
        out = svc.leave(vid, {BAR: 6})
        me = svc.client.get("/v1/me", headers=h).json()
        assert me["owed"] == [{"visit_id": vid, "receipt_id": out["receipt_id"],
                               "amount": "5.14", "currency": "EUR",
                               "exited_at": me["owed"][0]["exited_at"]}]
        status, body = _pay(svc, h, vid)
        assert (status, body["error"]) == (402, "payment_declined")
        assert "add another card" in str(body["detail"])
        assert _scan(svc, h) == (409, "balance_owed")
        svc.clock.advance(60)  # she adds a card a minute later: her newest
        r = svc.client.post("/v1/me/payment-methods", json={"provider_ref": "tok_visa_new"},
                            headers=h)
        assert r.status_code == 201
        status, body = _pay(svc, h, vid)
        assert status == 200 and body == {"visit_id": vid, "receipt_id": out["receipt_id"],
                                          "amount": "5.14", "currency": "EUR",
                                          "settled": True}
        assert pay.sales() == Decimal("55.14")
        with svc.deps.sessions() as s:  # the new card paid it
            payers = list(s.scalars(select(LedgerTransaction.payer_ref).where(
                LedgerTransaction.kind == "charge")))
        assert payers == ["tok_visa_new"]
        assert svc.client.get("/v1/me", headers=h).json()["owed"] == []
        assert visit_state(svc, vid) == "charged"
        assert _pay(svc, h, vid)[0] == 200  # paid already: answered as it is
        assert pay.sales() == Decimal("55.14")
        assert _scan(svc, h) == (201, None)


def test_a_shopper_pays_only_her_own_balance_and_only_a_few_times_an_hour(
        engine: Engine) -> None:
    svc, pay = _start(engine)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        pay.fail("charge", *["declined"] * 10)
        svc.leave(vid, {BAR: 6})
        other = svc.shopper(card="tok_other", email="bob@example.org")
        status, body = _pay(svc, other, vid)
        assert (status, body["error"]) == (404, "not_found")
        assert _pay(svc, svc.gate, vid)[0] == 403  # staff use the ops route
        nothing = svc.enter(other)
        assert _pay(svc, other, nothing)[1]["error"] == "no_balance"
        codes = [_pay(svc, h, vid)[0] for _ in range(6)]
        assert codes == [402] * 5 + [429]  # 5 tries an hour per account
        svc.clock.advance(3601)
        assert _pay(svc, h, vid)[0] == 402
