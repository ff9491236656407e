"""Bearer tokens and roles. Tokens are random and stored as SHA-256 only."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from walkout.service.clock import Clock
from walkout.service.errors import ServiceError
from walkout.service.models import ApiToken


class Role(StrEnum):
    SHOPPER = "shopper"
    OPERATOR = "operator"  # store staff and gate devices
    ADMIN = "admin"
    KIOSK = "kiosk"  # an in-store receipt terminal: looks receipts up by e-mail, nothing else


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    role: Role


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(s: Session, account_id: str, role: Role, clock: Clock,
                token: str | None = None) -> str:
    """Create a token for ``account_id``; the plain token is returned once and never stored."""
    token = token or "wo_" + secrets.token_urlsafe(32)
    s.add(ApiToken(account_id=account_id, token_hash=hash_token(token), role=role.value,
                   created_at=clock.now()))
    return token


def authenticate(s: Session, authorization: str | None) -> Principal:
    """The principal of an ``Authorization: Bearer ...`` header, or 401."""
    if not authorization:
        raise ServiceError(401, "unauthenticated", "missing Authorization: Bearer <token> header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ServiceError(401, "unauthenticated", "Authorization must be 'Bearer <token>'")
    row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token.strip()),
                                          ApiToken.revoked_at.is_(None)))
    if row is None:
        raise ServiceError(401, "unauthenticated", "unknown or revoked token")
    return Principal(row.account_id, Role(row.role))


def authorize(p: Principal, allowed: frozenset[Role]) -> None:
    """403 unless the principal's role is allowed (admin may do what an operator may)."""
    if p.role in allowed or (p.role == Role.ADMIN and Role.OPERATOR in allowed):
        return
    need = " or ".join(sorted(r.value for r in allowed))
    raise ServiceError(403, "forbidden", f"this needs the {need} role, not {p.role.value}")
