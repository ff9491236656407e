"""Entry: QR codes are single-use, rotate, and are bound to their account; cards are
identities; a party enters on one scan."""

from __future__ import annotations

from walkout.service.testing import Svc


def test_qr_admits_once_and_replay_is_refused(svc: Svc) -> None:
    h = svc.shopper()
    code = svc.code(h)
    r = svc.client.post("/v1/gates/entry/scan", json={"code": code}, headers=svc.gate)
    assert r.status_code == 201, r.text
    assert r.json()["hold"] == {"amount": "50.00", "currency": "EUR"}
    again = svc.client.post("/v1/gates/entry/scan", json={"code": code}, headers=svc.gate)
    assert again.status_code == 409
    assert again.json()["error"] == "code_used"
    assert "already used" in again.json()["detail"]


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
