"""The export holds every row stored under her account: besides her visits, receipts and
disputes, the entry codes she asked for (when issued, until when, when and for which visit
used: they say when she came) and her app's sign-ins (when made, when revoked). The code's
nonce and the token's hash are credentials, not data about her: left out."""

from __future__ import annotations

import json

from walkout.service.testing import Svc

BAR = "018627032007"


def test_export_lists_her_entry_codes_and_sign_ins(svc: Svc) -> None:
    h = svc.shopper()
    vid = svc.enter(h)  # one code, used for this visit
    svc.leave(vid, {BAR: 1})
    svc.clock.advance(60)
    svc.code(h)  # another one, never used
    data = svc.client.get("/v1/me/export", headers=h).json()
    used, unused = data["entry_codes"]
    assert used["visit_id"] == vid and used["used_at"] is not None
    assert unused["visit_id"] is None and unused["used_at"] is None
    assert set(used) == {"issued_at", "expires_at", "used_at", "visit_id"}
    [sign_in] = data["sign_ins"]
    assert sign_in["created_at"] and sign_in["revoked_at"] is None
    assert set(sign_in) == {"role", "created_at", "revoked_at"}
    token = h["Authorization"].split()[1]
    assert token not in json.dumps(data)
