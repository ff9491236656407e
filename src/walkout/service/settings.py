"""Service settings: strict (unknown fields refused), from arguments or ``WALKOUT_*`` env.

Secrets are ``SecretStr`` (masked in ``repr`` and logs) and validation errors never echo an
input (``hide_input_in_errors``): a mistyped key is named by its variable, never shown.

``extra="forbid"`` covers arguments only: pydantic-settings skips an environment variable that
names no field, so a misspelt one (a ``DAY`` for ``DAYS``) would leave the default in force
unnoticed. Every ``WALKOUT_*`` variable in the environment must therefore be a setting or one of
:data:`OTHER_VARIABLES` (read by the unit file, the scripts and the tests).
"""

from __future__ import annotations

import difflib
import os
import re
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "WALKOUT_"
#: ``WALKOUT_*`` variables that are not settings: the systemd unit's command line
#: (deploy/walkout.service), the backup script's (deploy/walkout-backup.sh), scripts/services.sh's
#: and the web tests' screenshot switch
OTHER_VARIABLES = frozenset({
    "WALKOUT_SOURCE", "WALKOUT_PORT", "WALKOUT_BACKUP_DIR", "WALKOUT_BACKUP_KEEP", "WALKOUT_BIN",
    "WALKOUT_SERVICES_STATE", "WALKOUT_PG_PORT", "WALKOUT_MQTT_PORT",
    "WALKOUT_UPDATE_SCREENSHOTS",
})
#: prefixes of further such variables: the test suite's (WALKOUT_TEST_PG_URL, ...) and
#: scripts/services.sh's Ray head (WALKOUT_RAY_PORT, WALKOUT_RAY_BIN, WALKOUT_RAY_CPUS)
OTHER_PREFIXES = ("WALKOUT_TEST_", "WALKOUT_RAY_")
#: the shortest HMAC key (entry codes, staff badges) taken: ``secrets.token_urlsafe(32)`` is 43
MIN_SECRET_CHARS = 32
#: the shortest bootstrap admin token taken (``"wo_" + secrets.token_urlsafe(32)`` is 46)
MIN_ADMIN_TOKEN_CHARS = 24
MAKE_SECRET = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class ServiceSettings(BaseSettings):
    """Everything `walkout serve` and `create_app` are configured with."""

    model_config = SettingsConfigDict(env_prefix="WALKOUT_", extra="forbid", frozen=True,
                                      hide_input_in_errors=True)

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
        "ledger", description="ledger: built-in double-entry ledger in the database; stripe: "
        "card payments through Stripe (needs stripe_api_key and stripe_webhook_secret)"
    )
    # ---- Stripe (payment_provider = stripe) ----
    stripe_api_key: SecretStr | None = Field(
        None, description="Stripe secret key: sk_live_… or sk_test_…, or a restricted key "
        "rk_… allowed to write PaymentIntents and Refunds")
    stripe_webhook_secret: SecretStr | None = Field(
        None, description="signing secret (whsec_…) of the webhook endpoint registered at "
        "Stripe for <public url>/v1/webhooks/stripe")
    stripe_webhook_tolerance_s: int = Field(
        300, ge=10, le=3600, description="a webhook signed longer ago than this is refused "
        "(Stripe's replay window)")
    entry_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_urlsafe(32)),
        description="HMAC key of entry QR codes (set it, or codes die with the process)",
    )
    entry_code_ttl_s: float = Field(30.0, gt=0, le=300, description="QR code rotation period")
    entry_code_grace_s: float = Field(5.0, ge=0, le=30, description="clock skew allowed")
    entry_codes_per_minute: int = Field(6, ge=1, description="rate limit of code issuance")
    disputes_per_hour: int = Field(5, ge=1, description="rate limit of disputes per account")
    balance_payments_per_hour: int = Field(
        5, ge=1, description="rate limit of a shopper's attempts to pay a balance she owes")
    card_taps_per_minute: int = Field(
        30, ge=1, description="rate limit of bank-card taps per gate (a gate admits one "
        "person every few seconds; a leaked gate token cannot test stolen cards faster)")
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

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_variables(cls, data: object) -> object:
        """Refuse a ``WALKOUT_*`` variable that is neither a setting nor one the deployment
        uses, naming the nearest setting: pydantic-settings would skip it in silence."""
        fields = {PREFIX + f.upper() for f in cls.model_fields}
        for name in sorted(os.environ):
            up = name.upper()  # settings are read from the environment case-insensitively
            if (not up.startswith(PREFIX) or up in fields or up in OTHER_VARIABLES
                    or up.startswith(OTHER_PREFIXES)):
                continue
            near = difflib.get_close_matches(up.removeprefix(PREFIX), sorted(
                f.removeprefix(PREFIX) for f in fields), n=1, cutoff=0.6)  # not the prefix
            hint = (f"did you mean {PREFIX}{near[0]}?" if near
                    else "see docs/service.md for the settings")
            raise ValueError(f"environment variable {name} is not a walkout setting ({hint}); "
                             "unset or rename it")
        return data

    @field_validator("entry_secret")
    @classmethod
    def _strong_entry_secret(cls, v: SecretStr) -> SecretStr:
        """An empty or short HMAC key (an env file with an unset ${VAR}) lets anyone sign
        entry codes and staff badges."""
        if len(v.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"WALKOUT_ENTRY_SECRET must be at least {MIN_SECRET_CHARS} "
                             f"characters (got {len(v.get_secret_value())}); make one with "
                             f"{MAKE_SECRET}")
        return v

    @field_validator("bootstrap_admin_token")
    @classmethod
    def _strong_admin_token(cls, v: SecretStr | None) -> SecretStr | None:
        """An empty or short bootstrap token would make a guessable admin."""
        if v is not None and len(v.get_secret_value()) < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(f"WALKOUT_BOOTSTRAP_ADMIN_TOKEN, when set, must be at least "
                             f"{MIN_ADMIN_TOKEN_CHARS} characters (got "
                             f"{len(v.get_secret_value())}); make one with "
                             f"echo wo_$({MAKE_SECRET})")
        return v

    @model_validator(mode="after")
    def _no_placeholders(self) -> ServiceSettings:
        """A secret still holding the example env file's ``CHANGE-ME`` placeholder is known to
        anyone who read the example (the admin token's placeholder is long enough to pass the
        length rule): refused by name, whichever secret it is."""
        for name in type(self).model_fields:
            v = getattr(self, name)
            if isinstance(v, SecretStr) and "CHANGE-ME" in v.get_secret_value():
                raise ValueError(f"WALKOUT_{name.upper()} still holds the example's CHANGE-ME "
                                 f"placeholder: replace it (docs/deploy.md), e.g. with "
                                 f"{MAKE_SECRET}")
        return self

    @field_validator("db_url")
    @classmethod
    def _supported_database(cls, url: str) -> str:
        """Refuse at start-up what would otherwise fail deep in SQLAlchemy on first use."""
        return check_database_url(url)

    @model_validator(mode="after")
    def _stripe_configured(self) -> ServiceSettings:
        """A Stripe store needs its key and its webhook's secret, each of the right kind; and
        Stripe settings on a ledger store are refused, since that store would hand out goods
        against a ledger no card is behind. Messages name variables, never values."""
        key, whsec = self.stripe_api_key, self.stripe_webhook_secret
        if self.payment_provider != "stripe":
            given = [name for name, v in (("WALKOUT_STRIPE_API_KEY", key),
                                          ("WALKOUT_STRIPE_WEBHOOK_SECRET", whsec)) if v]
            if given:
                raise ValueError(f"{' and '.join(given)} set but WALKOUT_PAYMENT_PROVIDER is "
                                 f"{self.payment_provider}: set it to stripe to take card "
                                 "payments, or unset the Stripe settings")
            return self
        missing = [name for name, v in (("WALKOUT_STRIPE_API_KEY", key),
                                        ("WALKOUT_STRIPE_WEBHOOK_SECRET", whsec)) if v is None]
        if missing:
            raise ValueError(f"payment_provider is stripe but {' and '.join(missing)} "
                             f"{'is' if len(missing) == 1 else 'are'} not set (the secret key "
                             "from the Stripe dashboard's API keys, the signing secret of the "
                             "webhook endpoint for /v1/webhooks/stripe)")
        assert key is not None and whsec is not None
        k = key.get_secret_value()
        if k.startswith("pk_"):
            raise ValueError("WALKOUT_STRIPE_API_KEY is a publishable key (pk_…): use the "
                             "secret key (sk_…) or a restricted key (rk_…)")
        if not STRIPE_KEY.fullmatch(k):
            raise ValueError("WALKOUT_STRIPE_API_KEY is not a Stripe secret key (sk_live_…, "
                             "sk_test_…, rk_live_… or rk_test_…)")
        if not STRIPE_WEBHOOK_SECRET.fullmatch(whsec.get_secret_value()):
            raise ValueError("WALKOUT_STRIPE_WEBHOOK_SECRET is not a webhook signing secret "
                             "(whsec_…)")
        return self

    @property
    def stripe_live(self) -> bool:
        """Whether the Stripe key moves real money (a live key), not test-mode money."""
        key = self.stripe_api_key
        return key is not None and key.get_secret_value()[3:8] == "live_"


#: Stripe's secret and restricted keys, and webhook signing secrets
STRIPE_KEY = re.compile(r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+")
STRIPE_WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=_-]+")


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
