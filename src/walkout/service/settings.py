"""Service settings: strict (unknown fields refused), from arguments or ``WALKOUT_*`` env."""

from __future__ import annotations

import secrets
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Everything `walkout serve` and `create_app` are configured with."""

    model_config = SettingsConfigDict(env_prefix="WALKOUT_", extra="forbid", frozen=True)

    db_url: str = Field("sqlite:///walkout.db", description="SQLAlchemy URL: SQLite or PostgreSQL")
    store: str = Field("small", description="shipped store name or store YAML path")
    sqlite_synchronous: Literal["NORMAL", "FULL", "EXTRA"] = Field(
        "NORMAL", description="SQLite PRAGMA synchronous (WAL): NORMAL survives a crash of the "
        "process, FULL also a power loss (one fsync per commit)"
    )
    api_threads: int = Field(
        40, ge=1, le=256, description="threads answering requests (synchronous endpoints); "
        "fewer queue requests at the door, more wait on the GIL and SQLite's write lock")
    payment_provider: Literal["ledger", "stripe"] = Field(
        "ledger", description="ledger: built-in double-entry ledger in the database"
    )
    entry_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
        description="HMAC key of entry QR codes (set it, or codes die with the process)",
    )
    entry_code_ttl_s: float = Field(30.0, gt=0, le=300, description="QR code rotation period")
    entry_code_grace_s: float = Field(5.0, ge=0, le=30, description="clock skew allowed")
    entry_codes_per_minute: int = Field(6, ge=1, description="rate limit of code issuance")
    disputes_per_hour: int = Field(5, ge=1, description="rate limit of disputes per account")
    hold_per_person: Decimal = Field(Decimal("50.00"), gt=0, description="pre-auth per person")
    max_party_size: int = Field(8, ge=1, le=20, description="largest group on one scan")
    bootstrap_admin_token: SecretStr | None = Field(
        None, description="creates an admin with this bearer token on start (first run)"
    )
    # ---- receipts by e-mail ----
    smtp_host: str | None = Field(
        None, description="SMTP server receipts are sent through; unset: kept in memory only"
    )
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP server port")
    smtp_starttls: bool = Field(False, description="upgrade the SMTP connection with STARTTLS")
    smtp_username: str | None = Field(None, description="SMTP login (with smtp_password)")
    smtp_password: SecretStr | None = Field(None, description="SMTP password")
    mail_sender: str = Field("receipts@walkout.invalid", pattern=r"^[^@\s]+@[^@\s]+$",
                             description="From address of receipt e-mails")
    public_url: str | None = Field(
        None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", description="the store's public "
        "base URL (https://shop.example): receipt e-mails link to the shopper app's dispute "
        "form under it; unset: they carry no link")
    kiosk_lookups_per_minute: int = Field(10, ge=1, description="rate limit of kiosk look-ups")
    # ---- disputes ----
    dispute_flag_rejections: int = Field(
        3, ge=1, description="rejected disputes within the window that flag a shopper"
    )
    dispute_flag_window_days: int = Field(30, ge=1, description="window of that count")
    # ---- privacy ----
    retention_days: int = Field(
        30, ge=1, description="tracks, evidence and the engine event log are purged after this"
    )
    retention_check_s: float = Field(
        3600.0, ge=0, description="how often the service purges what is past retention; 0: "
        "never by itself (then run POST /v1/admin/retention/purge from cron)")
    housekeeping_s: float = Field(
        60.0, ge=0, description="how often the service retries payments whose outcome was "
        "unknown and checks out abandoned visits; 0: only at start")
    max_visit_s: float = Field(
        4 * 3600.0, ge=0, description="a visit open longer than this (its exit never seen) is "
        "checked out with its cart and held for review; 0: never")
    evidence_dir: Path | None = Field(
        None, description="where the perception stage writes blurred evidence clips: purged "
        "with the event log")

    @field_validator("db_url")
    @classmethod
    def _supported_database(cls, url: str) -> str:
        """Refuse at start-up what would otherwise fail deep in SQLAlchemy on first use."""
        return check_database_url(url)


def check_database_url(url: str) -> str:
    """``url`` when it is a SQLite or PostgreSQL URL, else a ValueError saying so (the URL
    itself is not echoed: it may hold a password). Shared by the service's settings and the
    benches' ``--db``, which would otherwise fail on a missing driver."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as e:
        raise ValueError("not a database URL (e.g. sqlite:///walkout.db or "
                         "postgresql://user@host:5432/walkout)") from e
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"{backend} databases are not supported: use SQLite or PostgreSQL")
    return url
