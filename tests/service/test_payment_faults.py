"""Money under faults: the real service and ledger, the provider unreachable, its answer lost,
a refusal or a crash at each payment step (``faults.FaultyLedger``). Whatever happens, every
capture, release and refund is made exactly once, under the key it was first tried with, and a
review revision and a dispute of the same line never refund a unit twice."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine, delete, select, update

from walkout.checkout.money import Money
from walkout.service import entry, housekeeping, revisions
from walkout.service.checkout import LineRequest
from walkout.service.errors import ServiceError
from walkout.service.models import Charge, Dispute, Receipt, Visit
from walkout.service.payments.base import Authorization
from walkout.service.testing import Svc

from .faults import Crash, FaultyLedger, charges, start, visit_state

BAR, WATER = "018627032007", "073360771026"  # 9.19 and 7.59 EUR in the `small` store


def _verdict(svc: Svc, vid: str, product: str, quantity: int) -> None:
    """A review verdict after the receipt: its correcting line, then the revision (as the
    engine worker applies it)."""
    revisions.add_review_lines(svc.deps, vid, [LineRequest(
        f"ev-review:{product}:{quantity:+d}:review", product, quantity, "ev-review")])
    revisions.revise(svc.deps, vid, needs_review=False)


def _dispute(svc: Svc, h: dict[str, str], rid: object, pid: str) -> str:
    r = svc.client.post("/v1/disputes", json={"receipt_id": rid, "product_id": pid,
                                              "quantity": 1, "reason": "I put it back"},
                        headers=h)
    assert r.status_code == 201, r.text
    return str(r.json()["dispute_id"])


def _decide(svc: Svc, did: str, decision: str = "refund") -> tuple[int, dict[str, object]]:
    r = svc.client.post(f"/v1/disputes/{did}/decision", json={"decision": decision},
                        headers=svc.gate)
    return r.status_code, dict(r.json())


def _exit(svc: Svc, vid: str) -> dict[str, object]:
    """The gate retrying the exit."""
    r = svc.client.post(f"/v1/visits/{vid}/exit", headers=svc.gate)
    assert r.status_code == 200, r.text
    return dict(r.json())


# ---- capture at exit ---------------------------------------------------------------------------


def test_a_capture_the_provider_could_not_be_reached_for_is_retried_with_its_key(
        engine: Engine) -> None:
    svc, pay = start(engine)
    key = None
    with svc.client:
        vid = svc.enter(svc.shopper())
        key = f"visit:{vid}:capture"
        pay.fail("capture", "down", "down")
        out = svc.leave(vid, {BAR: 1})
        assert out["state"] == "checking_out" and out["charged"] == {"amount": "0.00",
                                                                     "currency": "EUR"}
        assert _exit(svc, vid)["state"] == "checking_out"  # still unreachable
        assert charges(svc, vid)[-1] == ("capture", key, "pending")  # owed, not failed
        assert pay.held(svc, vid) == Decimal("50.00")
    svc2, pay2 = start(engine, svc.clock)  # the next start settles it
    with svc2.client:
        assert visit_state(svc2, vid) == "charged"
        assert pay2.sales() == Decimal("9.19") and pay2.held(svc2, vid) == 0
        assert pay.keys("capture") + pay2.keys("capture") == [key] * 3


def test_a_capture_whose_answer_was_lost_is_charged_once_and_can_be_refunded(
        engine: Engine) -> None:
    svc, pay = start(engine)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        pay.fail("capture", "lost")
        out = svc.leave(vid, {BAR: 1, WATER: 1})
        assert out["state"] == "checking_out" and pay.sales() == Decimal("16.78")  # it moved
        again = _exit(svc, vid)  # the same key finds the capture made
        assert again["state"] == "charged" and again["charged"] == {"amount": "16.78",
                                                                    "currency": "EUR"}
        assert pay.sales() == Decimal("16.78")
        status, body = _decide(svc, _dispute(svc, h, out["receipt_id"], WATER))
        assert status == 200 and body["state"] == "refunded", body
        assert pay.sales() == Decimal("9.19")


def test_a_capture_unconfirmed_for_15_minutes_is_shown_to_staff_until_it_is(
        engine: Engine) -> None:
    """The provider away for long: the payments card lists the capture (what, how much, since
    when, the last error, its receipt) once it has been unconfirmed for 15 minutes, and no
    longer once a retry confirms it."""
    svc, pay = start(engine)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        pay.fail("capture", *["down"] * 3)
        out = svc.leave(vid, {BAR: 1})
        assert out["state"] == "checking_out"

        def listed() -> list[dict[str, object]]:
            r = svc.client.get("/v1/ops/payment-attention", headers=svc.gate)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["counts"]["unconfirmed_charges"] == len(body["unconfirmed_charges"])
            return list(body["unconfirmed_charges"])

        assert listed() == []  # a short outage is the retries' business
        svc.clock.advance(14 * 60)
        housekeeping.turn(svc.deps)  # still down
        assert listed() == []
        svc.clock.advance(2 * 60)
        housekeeping.turn(svc.deps)  # still down
        [c] = listed()
        assert (c["visit_id"], c["kind"], c["key"], c["amount"], c["currency"]) == (
            vid, "capture", f"visit:{vid}:capture", "9.19", "EUR")
        assert c["receipt_id"] == out["receipt_id"] and "unreachable" in str(c["error"])
        assert svc.client.get("/v1/ops/payment-attention", headers=h).status_code == 403
        housekeeping.turn(svc.deps)  # the provider is back: confirmed, charged once
        assert visit_state(svc, vid) == "charged" and pay.sales() == Decimal("9.19")
        assert listed() == []


def test_a_refused_capture_is_final_and_a_retried_exit_says_nothing_was_charged(
        engine: Engine) -> None:
    svc, pay = start(engine)
    with svc.client:
        vid = svc.enter(svc.shopper())
        pay.fail("capture", "declined")
        out = svc.leave(vid, {BAR: 1})
        assert out["state"] == "in_review"
        assert out["charged"] == {"amount": "0.00", "currency": "EUR"}
        assert _exit(svc, vid) == out  # answered as then: nothing was charged
        assert charges(svc, vid)[-1] == ("capture", f"visit:{vid}:capture", "failed")
        assert pay.keys("capture") == [f"visit:{vid}:capture"] and pay.sales() == 0


def test_a_verdict_while_the_capture_is_unsettled_waits_for_it(engine: Engine) -> None:
    """The verdict's lines are kept; the revision runs when the retried exit settles."""
    svc, pay = start(engine)
    with svc.client:
        vid = svc.enter(svc.shopper())
        pay.fail("capture", "down", "down")  # at the exit, then at the revision's retry
        svc.leave(vid, {BAR: 1, WATER: 1})
        _verdict(svc, vid, WATER, -1)
        assert visit_state(svc, vid) == "checking_out" and pay.sales() == 0
        again = _exit(svc, vid)
        assert again["state"] == "charged"
        assert again["total"] == {"amount": "9.19", "currency": "EUR"}
        assert pay.sales() == Decimal("9.19")  # 16.78 captured, the water refunded


def test_a_verdict_settles_an_unsettled_capture_first(engine: Engine) -> None:
    svc, pay = start(engine)
    with svc.client:
        vid = svc.enter(svc.shopper())
        pay.fail("capture", "down")
        svc.leave(vid, {BAR: 1, WATER: 1})
        _verdict(svc, vid, WATER, -1)
        assert visit_state(svc, vid) == "charged" and pay.sales() == Decimal("9.19")


# ---- review revisions --------------------------------------------------------------------------


def test_a_review_refund_whose_answer_was_lost_is_retried_with_its_own_key(
        engine: Engine) -> None:
    svc, pay = start(engine)
    with svc.client:
        vid = svc.enter(svc.shopper())
        svc.leave(vid, {BAR: 2, WATER: 1})  # 25.97
        key = f"visit:{vid}:review-refund:0"
        pay.fail("refund", "lost")
        _verdict(svc, vid, BAR, -1)  # 9.19 refunded, the answer lost
        assert pay.sales() == Decimal("16.78")
        assert charges(svc, vid)[-1] == ("refund", key, "pending")
        revisions.revise(svc.deps, vid, needs_review=False)  # the verdict replayed
        assert pay.sales() == Decimal("16.78") and pay.keys("refund") == [key, key]
        assert charges(svc, vid)[-1] == ("refund", key, "succeeded")


def test_a_review_refund_cut_short_by_a_crash_is_made_at_the_next_start(
        engine: Engine) -> None:
    svc, pay = start(engine)
    with svc.client:
        vid = svc.enter(svc.shopper())
        svc.leave(vid, {BAR: 2, WATER: 1})
        pay.fail("refund", "crash")
        with pytest.raises(Crash):
            _verdict(svc, vid, BAR, -1)
        assert pay.sales() == Decimal("25.97")
    svc2, pay2 = start(engine, svc.clock)
    with svc2.client:
        assert pay2.sales() == Decimal("16.78")  # made by the start-up
        revisions.revise(svc2.deps, vid, needs_review=False)  # and the runner's replay
        assert pay2.sales() == Decimal("16.78")
        assert [k for kind, k, _ in charges(svc2, vid) if kind == "refund"] == [
            f"visit:{vid}:review-refund:0"]


def test_a_refused_review_refund_goes_to_staff_and_the_next_revision_retries_it(
        engine: Engine) -> None:
    svc, pay = start(engine)
    with svc.client:
        vid = svc.enter(svc.shopper())
        svc.leave(vid, {BAR: 2, WATER: 1})
        pay.fail("refund", "declined")
        _verdict(svc, vid, BAR, -1)
        assert visit_state(svc, vid) == "in_review" and pay.sales() == Decimal("25.97")
        revisions.revise(svc.deps, vid, needs_review=False)  # nothing moved: a new key is safe
        assert visit_state(svc, vid) == "charged" and pay.sales() == Decimal("16.78")
        assert pay.keys("refund") == [f"visit:{vid}:review-refund:0",
                                      f"visit:{vid}:review-refund:1"]


def test_a_revision_to_nothing_releases_the_hold_it_never_captured(engine: Engine) -> None:
    svc, pay = start(engine)
    with svc.client:
        vid = svc.enter(svc.shopper())
        pay.fail("capture", "declined")
        svc.leave(vid, {BAR: 1})  # in review, the hold still open
        pay.fail("release", "down")
        _verdict(svc, vid, BAR, -1)
        # 'released' only once the provider released it
        assert visit_state(svc, vid) == "in_review" and pay.held(svc, vid) == Decimal("50.00")
        revisions.revise(svc.deps, vid, needs_review=False)  # retried with its key
        assert visit_state(svc, vid) == "released" and pay.held(svc, vid) == 0
        assert pay.keys("release") == [f"visit:{vid}:review-release:0"] * 2


def test_a_verdict_that_raises_what_is_owed_sends_the_visit_to_review(engine: Engine) -> None:
    svc, pay = start(engine)
    with svc.client:
        charged = svc.enter(svc.shopper())
        assert svc.leave(charged, {WATER: 1})["state"] == "charged"
        released = svc.enter(svc.shopper(card="tok_visa_2", email="bo@example.org"))
        assert svc.leave(released, {})["state"] == "released"
        for vid in (charged, released):
            _verdict(svc, vid, BAR, 1)  # an item the receipt missed: staff collect it
            assert visit_state(svc, vid) == "in_review"
        with svc.deps.sessions() as s:
            totals = [s.scalar(select(Receipt.total).where(Receipt.visit_id == v))
                      for v in (charged, released)]
        assert totals == [Decimal("16.78"), Decimal("9.19")] and pay.sales() == Decimal("7.59")


# ---- review revisions and disputes -------------------------------------------------------------


def test_a_dispute_refund_the_provider_did_not_confirm_stays_reserved(engine: Engine) -> None:
    svc, pay = start(engine)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        out = svc.leave(vid, {BAR: 1, WATER: 1})
        did = _dispute(svc, h, out["receipt_id"], WATER)
        key = f"dispute:{did}:refund"
        pay.fail("refund", "down")
        status, body = _decide(svc, did)
        assert status == 502 and body["error"] == "refund_failed"
        assert charges(svc, vid)[-1] == ("refund", key, "pending")
        _verdict(svc, vid, WATER, -1)  # the review agrees: the water is refunded once
        assert pay.keys("refund") == [key]
        status, body = _decide(svc, did)  # the operator retries, as the answer says
        assert status == 200 and body["state"] == "refunded"
        assert pay.sales() == Decimal("9.19") and pay.keys("refund") == [key, key]


@pytest.mark.parametrize("dispute_first", [True, False], ids=["dispute-first", "review-first"])
def test_a_dispute_and_a_revision_of_the_same_unit_refund_it_once_in_either_order(
        engine: Engine, dispute_first: bool) -> None:
    svc, pay = start(engine)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        out = svc.leave(vid, {BAR: 2, WATER: 1})  # 25.97
        did = _dispute(svc, h, out["receipt_id"], BAR)  # "I put one bar back"
        if dispute_first:
            assert _decide(svc, did)[0] == 200
            _verdict(svc, vid, BAR, -1)  # the review finds the same
        else:
            _verdict(svc, vid, BAR, -1)
            status, body = _decide(svc, did)
            assert status == 409 and body["error"] == "already_decided", body
        assert pay.sales() == Decimal("16.78")  # one bar and the water


def test_a_dispute_refund_is_not_taken_for_a_revision_of_another_line(engine: Engine) -> None:
    svc, pay = start(engine)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        out = svc.leave(vid, {BAR: 1, WATER: 1})
        assert _decide(svc, _dispute(svc, h, out["receipt_id"], WATER))[0] == 200
        _verdict(svc, vid, BAR, -1)  # the bar was not taken either
        assert pay.sales() == 0


def test_an_open_dispute_on_a_line_a_revision_removed_is_answered_not_crashed(
        engine: Engine) -> None:
    svc, pay = start(engine)
    with svc.client:
        h = svc.shopper()
        vid = svc.enter(h)
        out = svc.leave(vid, {BAR: 1, WATER: 1})
        did = _dispute(svc, h, out["receipt_id"], WATER)
        _verdict(svc, vid, WATER, -1)  # refunds the water itself
        case = svc.client.get(f"/v1/disputes/{did}", headers=svc.gate)
        assert case.status_code == 200, case.text
        assert case.json()["state"] == "corrected" and case.json()["line"] is None
        assert case.json()["shopper"]["rejected_disputes"] == 0  # no mark against the shopper
        for decision in ("refund", "reject"):
            status, body = _decide(svc, did, decision)
            assert status == 409 and "review" in str(body["detail"]), body
        with svc.deps.sessions.begin() as s:  # as if left open by a revision before this fix
            dsp = s.get(Dispute, did)
            assert dsp is not None
            dsp.state, dsp.quantity = "open", 1
        status, body = _decide(svc, did)
        assert status == 409 and body["error"] == "line_revised", body
        assert pay.sales() == Decimal("9.19")


# ---- pre-authorisation at the gate ---------------------------------------------------------------


def test_a_hold_whose_answer_was_lost_at_the_gate_is_released(engine: Engine) -> None:
    """The shopper is turned away (503: try again), the provider may hold the money: the
    hold is found with its own key and released, at the next housekeeping turn or start."""
    svc, pay = start(engine)
    with svc.client:
        h = svc.shopper()
        pay.fail("preauthorize", "lost")
        r = svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h)},
                            headers=svc.gate)
        assert r.status_code == 503 and r.json()["error"] == "payment_unavailable"
        with svc.deps.sessions() as s:
            [vid] = s.scalars(select(Visit.id))
        assert visit_state(svc, vid) == "refused"
        key = f"visit:{vid}:preauth"
        assert charges(svc, vid) == [("preauth", key, "pending")]  # unknown, not failed
        assert pay.inner.balance("payer:tok_visa_1:EUR") == Decimal("-50.00")  # held
        pay.fail("release", "down")  # the provider is still away at the first turn
        housekeeping.turn(svc.deps)
        assert charges(svc, vid) == [("preauth", key, "pending")]
        housekeeping.turn(svc.deps)
        assert charges(svc, vid) == [("preauth", key, "failed"),
                                     ("release", f"visit:{vid}:void", "succeeded")]
        assert pay.inner.balance("payer:tok_visa_1:EUR") == 0
        assert pay.keys("preauthorize") == [key] * 3  # never a second hold under a new key
        # she tries again with a fresh code: admitted
        assert svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h)},
                               headers=svc.gate).status_code == 201


def test_an_unsettled_capture_is_retried_by_the_timer_without_a_restart(engine: Engine) -> None:
    svc, pay = start(engine)
    with svc.client:
        vid = svc.enter(svc.shopper())
        pay.fail("capture", "down")
        assert svc.leave(vid, {BAR: 1})["state"] == "checking_out"
        housekeeping.turn(svc.deps)
        assert visit_state(svc, vid) == "charged" and pay.sales() == Decimal("9.19")


class _Buggy(FaultyLedger):
    """The faulty ledger whose next ``bugs`` pre-authorisations raise something other than a
    payment error (a bug in the provider's library, a check of its own)."""

    bugs = 0

    def preauthorize(self, payer_ref: str, amount: Money, idempotency_key: str) -> Authorization:
        if self.bugs:
            self.bugs -= 1
            self.calls.append(("preauthorize", idempotency_key))
            raise RuntimeError("the provider's library blew up")
        return super().preauthorize(payer_ref, amount, idempotency_key)


def test_a_preauth_failing_with_no_payment_error_answers_503_and_leaves_nobody_inside(
        engine: Engine) -> None:
    """The gate gets JSON it can act on (503 payment_unavailable: a fresh code in a moment),
    never a bare 500; the visit is refused at once (the shopper is not 'inside' until the next
    restart), and the hold the call may have made is found with its key and released."""
    svc, pay = start(engine)
    buggy = _Buggy(pay.inner)
    object.__setattr__(svc.deps, "provider", buggy)  # Deps is frozen: swap the provider in
    with svc.client:
        h = svc.shopper()
        buggy.bugs = 1
        r = svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h)},
                            headers=svc.gate)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "payment_unavailable" and "moment" in r.json()["detail"]
        with svc.deps.sessions() as s:
            [vid] = s.scalars(select(Visit.id))
        key = f"visit:{vid}:preauth"
        assert visit_state(svc, vid) == "refused"
        assert charges(svc, vid) == [("preauth", key, "pending")]
        assert svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h)},
                               headers=svc.gate).status_code == 201  # at once
        housekeeping.turn(svc.deps)  # the hold its key may have made: made now, released
        assert charges(svc, vid) == [("preauth", key, "failed"),
                                     ("release", f"visit:{vid}:void", "succeeded")]
        assert buggy.keys("preauthorize").count(key) == 2


def test_an_admission_left_authorizing_is_refused_by_the_timer_and_its_hold_released(
        engine: Engine) -> None:
    """A process died between the hold and its record (an engine worker: the API goes on).
    Once it is older than a few seconds the timer refuses it and releases the hold under its
    key; an admission still in progress is left alone, and a provider answer that comes after
    the timer gave up is released, not admitted."""
    svc, pay = start(engine)
    with svc.client:
        d = svc.deps
        h = svc.shopper()
        old, late = svc.enter(h), svc.enter(svc.shopper(card="tok_late",
                                                        email="bob@example.org"))
        with d.sessions.begin() as s:  # both as a crash mid-admission leaves them
            for vid in (old, late):
                s.execute(update(Visit).where(Visit.id == vid)
                          .values(state="authorizing", auth_id=None))
                s.execute(update(Charge).where(Charge.idempotency_key == f"visit:{vid}:preauth")
                          .values(status="pending"))
        svc.clock.advance(entry.STALE_AUTHORIZING_S - 5)
        housekeeping.turn(d)
        assert visit_state(svc, old) == visit_state(svc, late) == "authorizing"  # young
        svc.clock.advance(10)
        assert entry.refuse_stale_authorizing(d) == 2
        housekeeping.turn(d)  # void_unknown_holds: the same key finds the hold, released
        assert visit_state(svc, old) == "refused"
        assert charges(svc, old)[-1] == ("release", f"visit:{old}:void", "succeeded")
        assert pay.inner.balance("payer:tok_visa_1:EUR") == 0
        assert svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h)},
                               headers=svc.gate).status_code == 201
        # the late answer, after the timer gave up on it: released at once, the gate told 503
        with d.sessions.begin() as s:
            s.execute(update(Visit).where(Visit.id == late).values(state="authorizing"))
            s.execute(update(Charge).where(Charge.visit_id == late).values(status="pending"))
            s.execute(delete(Charge).where(Charge.idempotency_key == f"visit:{late}:void"))
        svc.clock.advance(entry.STALE_AUTHORIZING_S + 1)
        entry.refuse_stale_authorizing(d)
        with pytest.raises(ServiceError) as e:
            entry._authorize(d, late)
        assert e.value.status == 503
        assert visit_state(svc, late) == "refused"
        assert charges(svc, late)[-1] == ("release", f"visit:{late}:void", "succeeded")
        assert pay.inner.balance("payer:tok_late:EUR") == 0
