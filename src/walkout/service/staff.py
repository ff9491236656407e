"""Staff badges: how an associate enters as staff, not as a shopper.

An admin issues a badge (``POST /v1/admin/staff/{account}/badge``) to a staff account; its
code reads ``wsb1.<account>.<issued unix s>.<signature>`` (HMAC-SHA256 under the service's
entry secret, as entry QR codes are), printed on a card or shown as a QR. The gate checks it at
``POST /v1/gates/{gate}/staff`` and puts the answer's credential, ``staff:<account>``, in its
GateEvent: the engine binds the person to a *staff* session (``walkout.cart.sessions``), which
owns no cart and gets no receipt; what their hands do to a plate moves stock. No visit, no
pre-authorisation: nothing is ever charged. A badge works while its account is active:
revoking the account (``DELETE /v1/admin/staff/{account}``) refuses its badges at the gate.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from sqlalchemy import select

from walkout.cart.sessions import STAFF_PREFIX
from walkout.service.deps import Deps
from walkout.service.entry_codes import _sign
from walkout.service.errors import ServiceError, not_found
from walkout.service.models import Account, ApiToken

BADGE_PREFIX = "wsb1"
_SHAPE = re.compile(r"^wsb1\.([0-9a-f]{32})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class StaffAdmission:
    account_id: str
    credential: str  # what the gate puts in its GateEvent for the engine


def active_staff(d: Deps, account_id: str) -> Account | None:
    """The staff account, if it exists and has a working token (not revoked)."""
    with d.sessions() as s:
        a = s.get(Account, account_id)
        if a is None or a.kind != "staff":
            return None
        live = s.scalar(select(ApiToken.id).where(ApiToken.account_id == account_id,
                                                  ApiToken.revoked_at.is_(None)).limit(1))
        return a if live is not None else None


def issue_badge(d: Deps, account_id: str) -> str:
    """A badge code for an active staff account (404 otherwise)."""
    if active_staff(d, account_id) is None:
        raise not_found("active staff account")
    body = f"{BADGE_PREFIX}.{account_id}.{int(d.clock.now().timestamp())}"
    return f"{body}.{_sign(d.settings.entry_secret.get_secret_value().encode(), body)}"


def admit_staff(d: Deps, badge: str) -> StaffAdmission:
    """Check a badge at the gate: its signature, and that its account is still active."""
    m = _SHAPE.match(badge.strip())
    if m is None:
        raise ServiceError(400, "badge_malformed", "not a walkout staff badge")
    account_id, _, sig = m.groups()
    body = badge.strip().rsplit(".", 1)[0]
    secret = d.settings.entry_secret.get_secret_value().encode()
    if not hmac.compare_digest(sig, _sign(secret, body)):
        raise ServiceError(400, "badge_forged", "staff badge signature is not valid")
    if active_staff(d, account_id) is None:
        raise ServiceError(403, "badge_revoked", "this staff badge's account is revoked")
    return StaffAdmission(account_id, f"{STAFF_PREFIX}{account_id}")
