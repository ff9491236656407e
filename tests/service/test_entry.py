"""Entry: QR codes are single-use, rotate, and are bound to their account; cards are
identities; a party enters on one scan; one visit at a time per account, also when two gates
admit it at the same moment; a payment token the provider can never charge is refused where it
comes in, and never leaves a visit half-admitted or the service unable to start."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import pytest
import stripe
from sqlalchemy import Engine, func, select, text

from walkout.service import entry
from walkout.service.errors import ServiceError
from walkout.service.models import Account, Charge, EntryCode, PaymentMethod, Visit, new_id
from walkout.service.payments.stripe import StripeProvider
from walkout.service.testing import Svc, make_svc


def test_qr_admits_once_and_replay_is_refused(svc: Svc) -> None:
    h = svc.shopper()
    code = svc.code(h)
    r = svc.client.post("/v1/gates/entry/scan", json={"code": code}, headers=svc.gate)
    assert r.status_code == 201, r.text
    assert r.json()["hold"] == {"amount": "50.00", "currency": "EUR"}
    vid = r.json()["visit_id"]
    svc.leave(vid, {})
    again = svc.client.post("/v1/gates/entry/scan", json={"code": code}, headers=svc.gate)
    assert again.status_code == 409
    assert again.json()["error"] == "code_used"
    assert "already used" in again.json()["detail"]


def test_a_gate_repeating_a_scan_whose_answer_it_lost_gets_the_admission_back(
        svc: Svc) -> None:
    """The same code at the same gate while its visit is open: the original admission (same
    visit, same credential), nothing held twice. At another gate, for another party, or once
    the visit has left, the code is used."""
    h = svc.shopper()
    code = svc.code(h)
    first = svc.client.post("/v1/gates/entry/scan", json={"code": code}, headers=svc.gate)
    assert first.status_code == 201, first.text
    again = svc.client.post("/v1/gates/entry/scan", json={"code": code}, headers=svc.gate)
    assert again.status_code == 200 and again.json() == {**first.json(), "replayed": True}
    assert first.json()["replayed"] is False
    assert entry.admit_qr(svc.deps, code, "entry").replayed is True
    for gate, party in (("entry-2", 1), ("entry", 2)):
        with pytest.raises(ServiceError) as e:
            entry.admit_qr(svc.deps, code, gate, party_size=party)
        assert e.value.code == "code_used"
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Visit)) == 1
        assert s.scalar(select(func.count()).select_from(Charge)) == 1  # one hold
        assert s.scalar(select(EntryCode.visit_id)) == first.json()["visit_id"]
    svc.leave(first.json()["visit_id"], {})
    r = svc.client.post("/v1/gates/entry/scan", json={"code": code}, headers=svc.gate)
    assert r.status_code == 409 and r.json()["error"] == "code_used"


def test_a_gate_repeating_a_card_tap_within_the_window_gets_the_admission_back(
        svc: Svc) -> None:
    tap = {"card_token": "tok_card_42", "email": "c@example.org"}
    first = svc.client.post("/v1/gates/entry/card", json=tap, headers=svc.gate)
    assert first.status_code == 201, first.text
    again = svc.client.post("/v1/gates/entry/card", json=tap, headers=svc.gate)
    assert again.status_code == 200 and again.json() == {**first.json(), "replayed": True}
    d = svc.deps
    assert entry.admit_card(d, "tok_card_42", "entry").replayed is True
    # another gate, another party, or past the window: the card is inside already
    for gate, party, later in (("entry-2", 1, 0.0), ("entry", 3, 0.0),
                               ("entry", 1, entry.CARD_RETRY_WINDOW_S + 1)):
        svc.clock.advance(later)
        with pytest.raises(ServiceError) as e:
            entry.admit_card(d, "tok_card_42", gate, party_size=party)
        assert e.value.code == "already_inside"
    with d.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Visit)) == 1
        assert s.scalar(select(func.count()).select_from(Charge)) == 1


def test_a_card_tap_never_replays_its_holders_qr_admission(svc: Svc) -> None:
    """A shopper who came in by code: her card tapped at the same gate a moment later is
    someone else trying to come in on her account, not a repeat."""
    h = svc.shopper(card="tok_card_ann")
    svc.enter(h)
    r = svc.client.post("/v1/gates/entry/card", json={"card_token": "tok_card_ann"},
                        headers=svc.gate)
    assert r.status_code == 409 and r.json()["error"] == "already_inside"


def test_screenshot_after_rotation_is_refused(svc: Svc) -> None:
    h = svc.shopper()
    code = svc.code(h)
    svc.clock.advance(36)  # the app shows a new code every 30 s (+5 s grace)
    r = svc.client.post("/v1/gates/entry/scan", json={"code": code}, headers=svc.gate)
    assert r.status_code == 410
    assert r.json()["error"] == "code_expired" and "rotate" in r.json()["detail"]


def test_shared_code_cannot_be_rebound_or_used_while_owner_inside(svc: Svc) -> None:
    ann = svc.shopper()
    bob = svc.shopper(card="tok_visa_bob", email="bob@example.org")
    ann_code = svc.code(ann)
    bob_code = svc.code(bob)
    # someone edits the account part of Ann's screenshot to Bob's: the signature breaks
    parts = ann_code.split(".")
    parts[1] = bob_code.split(".")[1]
    r = svc.client.post("/v1/gates/entry/scan", json={"code": ".".join(parts)}, headers=svc.gate)
    assert r.status_code == 400 and r.json()["error"] == "code_forged"
    # Ann enters; a second fresh code of hers (shared screenshot) is refused while she is in
    assert svc.client.post("/v1/gates/entry/scan", json={"code": ann_code},
                           headers=svc.gate).status_code == 201
    r = svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(ann)}, headers=svc.gate)
    assert r.status_code == 409 and r.json()["error"] == "already_inside"


def test_group_entry_holds_for_the_party(svc: Svc) -> None:
    h = svc.shopper()
    r = svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h), "party_size": 3},
                        headers=svc.gate)
    assert r.status_code == 201
    assert r.json()["party_size"] == 3 and r.json()["hold"]["amount"] == "150.00"
    too_many = svc.client.post("/v1/gates/entry/scan",
                               json={"code": svc.code(svc.shopper(card="tok_2")),
                                     "party_size": 9}, headers=svc.gate)
    assert too_many.status_code == 422 and "party_size" in too_many.json()["detail"]


def test_card_is_the_identity_and_keeps_its_email(svc: Svc) -> None:
    r = svc.client.post("/v1/gates/entry/card",
                        json={"card_token": "tok_card_77", "email": "cara@example.org"},
                        headers=svc.gate)
    assert r.status_code == 201, r.text
    v1 = r.json()["visit_id"]
    assert svc.client.post(f"/v1/visits/{v1}/exit", headers=svc.gate).json()["state"] == "released"
    r = svc.client.post("/v1/gates/entry/card", json={"card_token": "tok_card_77"},
                        headers=svc.gate)
    assert r.status_code == 201
    from walkout.service.models import Account, Visit

    with svc.deps.sessions() as s:
        a1 = s.get(Visit, v1)
        a2 = s.get(Visit, r.json()["visit_id"])
        assert a1 is not None and a2 is not None and a1.account_id == a2.account_id
        acct = s.get(Account, a2.account_id)
        assert acct is not None and acct.email == "cara@example.org"


def test_card_numbers_and_declines_are_refused(svc: Svc) -> None:
    r = svc.client.post("/v1/gates/entry/card", json={"card_token": "4111 1111 1111 1111"},
                        headers=svc.gate)
    assert r.status_code == 422 and "card number" in r.json()["detail"]
    assert "4111" not in r.text  # never echoed back
    r = svc.client.post("/v1/gates/entry/card", json={"card_token": "tok_decline_1"},
                        headers=svc.gate)
    assert r.status_code == 402 and r.json()["error"] == "payment_declined"


def test_entry_codes_are_rate_limited(svc: Svc) -> None:
    h = svc.shopper()
    codes = [svc.client.post("/v1/me/entry-code", headers=h).status_code for _ in range(7)]
    assert codes == [200] * 6 + [429]
    svc.clock.advance(61)
    assert svc.client.post("/v1/me/entry-code", headers=h).status_code == 200


def test_web_app_codes_share_the_entry_code_rate_limit(svc: Svc) -> None:
    """The shopper page's QR route spends the same per-account budget as the API's."""
    h = svc.shopper()
    web = [svc.client.post("/v1/app/entry-qr", headers=h).status_code for _ in range(4)]
    api = [svc.client.post("/v1/me/entry-code", headers=h).status_code for _ in range(2)]
    assert web + api == [200] * 6
    assert svc.client.post("/v1/app/entry-qr", headers=h).status_code == 429
    assert svc.client.post("/v1/me/entry-code", headers=h).status_code == 429
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(EntryCode)) == 6
    svc.clock.advance(61)
    assert svc.client.post("/v1/app/entry-qr", headers=h).status_code == 200


# ---- a payment token the provider can never charge --------------------------------------------


class NoNetwork(stripe.HTTPClient):
    """Stripe's transport in these tests: nothing here may reach Stripe."""

    name = "no-network"

    def request(self, method: str, url: str, headers: Mapping[str, str] | None,
                post_data: Any = None, *, _usage: list[str] | None = None
                ) -> tuple[str, int, Mapping[str, str]]:
        raise AssertionError(f"unexpected Stripe request {method} {url}")

    def request_stream(self, method: str, url: str, headers: Mapping[str, str] | None,
                       post_data: Any = None, *, _usage: list[str] | None = None
                       ) -> tuple[Any, int, Mapping[str, str]]:
        raise AssertionError(f"unexpected Stripe request {method} {url}")

    def close(self) -> None:
        pass


def _stripe_svc(engine: Engine) -> Svc:
    return make_svc(engine, provider=StripeProvider.from_api_key(
        "sk_test_offline", http_client=NoNetwork(), max_network_retries=0))


def _half_admitted(svc: Svc, provider_ref: str, hold: str = "50.00") -> str:
    """A visit as a crash between step 1 and the pre-auth leaves it, paid by a token an older
    version stored unchecked: its id."""
    now = svc.clock.now()
    with svc.deps.sessions.begin() as s:
        acct = Account(kind="app", role="shopper", created_at=now)
        s.add(acct)
        s.flush()
        pm = PaymentMethod(account_id=acct.id, provider="stripe", provider_ref=provider_ref,
                           created_at=now)
        s.add(pm)
        s.flush()
        vid = new_id()
        s.add(Visit(id=vid, credential=f"visit-{vid}", account_id=acct.id,
                    payment_method_id=pm.id, gate_id="entry", party_size=1,
                    state="authorizing", currency="EUR", hold_amount=Decimal(hold),
                    entered_at=now))
        s.flush()
        s.add(Charge(visit_id=vid, kind="preauth", idempotency_key=f"visit:{vid}:preauth",
                     provider="stripe", amount=Decimal(hold), currency="EUR",
                     status="pending", created_at=now))
    return vid


def test_malformed_stripe_token_is_refused_where_it_comes_in(engine: Engine) -> None:
    """Adding it, or tapping it at a gate, is a 422 naming the field; nothing is stored."""
    svc = _stripe_svc(engine)
    r = svc.client.post("/v1/accounts", json={"name": "Mallory"})
    h = {"Authorization": f"Bearer {r.json()['token']}"}
    r = svc.client.post("/v1/me/payment-methods", json={"provider_ref": "cus_x:"}, headers=h)
    assert r.status_code == 422 and r.json()["error"] == "bad_payment_token", r.text
    assert r.json()["detail"].startswith("provider_ref: malformed payment token")
    assert svc.client.post("/v1/me/entry-code", headers=h).json()["error"] == "no_payment_method"
    r = svc.client.post("/v1/gates/entry/card", json={"card_token": "cus_x:"}, headers=svc.gate)
    assert r.status_code == 422 and r.json()["detail"].startswith("card_token: malformed")
    with svc.deps.sessions() as s:
        assert s.scalar(select(func.count()).select_from(PaymentMethod)) == 0
        assert s.scalar(select(func.count()).select_from(Visit)) == 0
    r = svc.client.post("/v1/me/payment-methods", json={"provider_ref": "cus_1:pm_1"}, headers=h)
    assert r.status_code == 201, r.text


def test_scan_with_a_stored_malformed_token_is_refused_not_stuck(engine: Engine) -> None:
    """A token stored before the check: the scan answers 402 and the visit is refused, so the
    shopper is not left 'inside' (the 'authorizing' visit used to stay, after a 500)."""
    svc = _stripe_svc(engine)
    h = svc.shopper(card="cus_1:pm_1")
    with svc.deps.sessions.begin() as s:
        for pm in s.scalars(select(PaymentMethod)):
            pm.provider_ref = "cus_x:"
    r = svc.client.post("/v1/gates/entry/scan", json={"code": svc.code(h)}, headers=svc.gate)
    assert r.status_code == 402 and r.json()["error"] == "payment_declined", r.text
    with svc.deps.sessions() as s:
        assert list(s.scalars(select(Visit.state))) == ["refused"]
        assert list(s.scalars(select(Charge.status))) == ["failed"]


def test_start_refuses_each_admission_it_cannot_finish_and_goes_on(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Start-up finishes 'authorizing' visits; one whose pre-auth fails, even with an error
    the provider does not report as a payment error (here Stripe's ValueError for a hold of
    nothing), is refused and logged without its token, and the service starts."""
    bad_token = _half_admitted(_stripe_svc(engine), "cus_x:")
    bad_amount = _half_admitted(_stripe_svc(engine), "cus_ann:pm_ann", hold="0.00")
    caplog.set_level(logging.INFO)
    svc = _stripe_svc(engine)  # a restart: must come up
    with svc.deps.sessions() as s:
        states = {v: st for v, st in s.execute(select(Visit.id, Visit.state))}
        charges = {v: st for v, st in s.execute(select(Charge.visit_id, Charge.status))}
    assert states == {bad_token: "refused", bad_amount: "refused"}
    assert charges == {bad_token: "failed", bad_amount: "failed"}
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert bad_amount in line and "ValueError" in line
    assert "cus_" not in caplog.text and "pm_ann" not in caplog.text


# ---- one visit at a time, under concurrency ---------------------------------------------------


def _slow_visit_inserts(engine: Engine) -> None:
    """On PostgreSQL every visit INSERT takes 0.5 s (a trigger), so two admissions released
    together both run their checks before either commits: the race, made certain. (SQLite
    serialises writers; there the same test shows the same outcome.)"""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as c:
        c.execute(text("CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS "
                       "$$ BEGIN PERFORM pg_sleep(0.5); RETURN NEW; END $$"))
        c.execute(text("CREATE TRIGGER slow_visits BEFORE INSERT ON visits FOR EACH ROW "
                       "EXECUTE FUNCTION slow_insert()"))


def _at_once(*calls: Callable[[], object]) -> list[str]:
    """Run ``calls`` in threads released together: 'admitted' or the refusal's code each."""
    barrier = threading.Barrier(len(calls))
    out: list[str] = []

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            call()
            out.append("admitted")
        except ServiceError as e:
            out.append(e.code)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sorted(out)


@pytest.mark.parametrize("how", ["two codes", "one new card twice", "code and its card"])
def test_one_account_at_two_gates_at_once_enters_once(svc: Svc, engine: Engine,
                                                      how: str) -> None:
    """Two admissions of one account at the same moment: one enters, the other is refused
    as already inside. A tapped card is the account that holds it: a new card's two taps
    make one guest, and an app shopper's card is that shopper."""
    h = svc.shopper(card="tok_card_race")
    _slow_visit_inserts(engine)
    d = svc.deps
    code, code2 = svc.code(h), svc.code(h)
    calls: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "two codes": (lambda: entry.admit_qr(d, code, "entry"),
                      lambda: entry.admit_qr(d, code2, "entry-2")),
        "one new card twice": (lambda: entry.admit_card(d, "tok_new_card", "entry"),
                               lambda: entry.admit_card(d, "tok_new_card", "entry-2")),
        "code and its card": (lambda: entry.admit_qr(d, code, "entry"),
                              lambda: entry.admit_card(d, "tok_card_race", "entry-2")),
    }
    assert _at_once(*calls[how]) == ["admitted", "already_inside"]
    with d.sessions() as s:
        inside = list(s.scalars(select(Visit.id).where(Visit.state.in_(entry.INSIDE))))
        guests = s.scalar(select(func.count()).select_from(Account)
                          .where(Account.kind == "card"))
    assert len(inside) == 1
    assert guests == (1 if how == "one new card twice" else 0)


def test_one_gate_credential_for_two_cards_at_once_is_refused_cleanly(svc: Svc,
                                                                     engine: Engine) -> None:
    """Two accounts, one credential (a gate event delivered twice): the visit that loses the
    race on the UNIQUE credential is refused as 'credential_in_use', not a 500."""
    _slow_visit_inserts(engine)
    d = svc.deps
    assert _at_once(lambda: entry.admit_card(d, "tok_a", "entry", credential="cred-1"),
                    lambda: entry.admit_card(d, "tok_b", "entry", credential="cred-1")
                    ) == ["admitted", "credential_in_use"]
