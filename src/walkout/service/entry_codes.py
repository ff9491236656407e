"""Entry QR codes: HMAC-signed, short-lived, single-use and bound to one account.

A code reads ``wo1.<account>.<nonce>.<issued unix s>.<signature>``. The signature (HMAC-SHA256
of the rest under the service's secret) makes it unforgeable and ties it to the account; the
issue time makes it expire when the app shows the next one (~30 s); the nonce, stored at issue
and consumed atomically at the gate, makes it single-use. A screenshot is therefore useless once
the code rotated, and useless a second time even within the window.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from walkout.service.errors import ServiceError

PREFIX = "wo1"
_SHAPE = re.compile(r"^wo1\.([0-9a-f]{32})\.([0-9a-f]{32})\.(\d{1,12})\.([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class CodeClaims:
    account_id: str
    nonce: str
    issued_at: datetime


def _sign(secret: bytes, body: str) -> str:
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def make_code(secret: bytes, account_id: str, nonce: str, issued_at: datetime) -> str:
    body = f"{PREFIX}.{account_id}.{nonce}.{int(issued_at.timestamp())}"
    return f"{body}.{_sign(secret, body)}"


def read_code(secret: bytes, code: str, now: datetime, ttl_s: float, grace_s: float) -> CodeClaims:
    """Check shape, signature and age of ``code``; the nonce's single use is checked by the
    caller in the database. Each refusal says what is wrong, and nothing more."""
    m = _SHAPE.match(code.strip())
    if m is None:
        raise ServiceError(400, "code_malformed", "not a walkout entry code")
    account, nonce, ts, sig = m.groups()
    body = code.strip().rsplit(".", 1)[0]
    if not hmac.compare_digest(sig, _sign(secret, body)):
        raise ServiceError(400, "code_forged", "entry code signature is not valid")
    issued = datetime.fromtimestamp(int(ts), UTC)
    age = (now - issued).total_seconds()
    if age < -grace_s:
        raise ServiceError(400, "code_not_yet_valid", "entry code is from the future")
    if age > ttl_s + grace_s:
        raise ServiceError(410, "code_expired",
                           f"entry code expired {age - ttl_s:.0f} s ago: codes rotate every "
                           f"{ttl_s:.0f} s, show the current one from the app")
    return CodeClaims(account, nonce, issued)
