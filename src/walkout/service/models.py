"""The service's tables, as typed SQLAlchemy 2 models.

Money columns are ``Numeric(14, 4)`` beside a ``currency`` column: exact on SQLite and
PostgreSQL alike. Everything that must not happen twice (a charge, a ledger transaction, a cart
line, an engine event, an entry code's use) has a UNIQUE constraint, so the database, not the
code path, is what makes retries and duplicated messages safe. The Alembic migrations in
``migrations/versions`` create exactly these tables; a test checks they agree.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MONEY = Numeric(14, 4, asdecimal=True)
#: a tax rate as a fraction, exact to the 6 decimal places a store file may give
TAX_RATE = Numeric(7, 6, asdecimal=True)


def new_id() -> str:
    """Random public id: not guessable, so ids in URLs leak nothing."""
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTime(timezone=True)}  # noqa: RUF012


# ---- people and credentials -------------------------------------------------------------------


class Account(Base):
    """A shopper (with the app), a card-only guest (identity = card token) or a staff member."""

    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))  # app | card | staff
    role: Mapped[str] = mapped_column(String(16))  # shopper | operator | admin | kiosk
    email: Mapped[str | None] = mapped_column(String(320))
    display_name: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime]
    #: set when the shopper asked for erasure: personal fields are gone, the id stays as the
    #: pseudonym that receipts and the money ledger (kept by law) still point to
    erased_at: Mapped[datetime | None]
    __table_args__ = (
        CheckConstraint("role IN ('shopper', 'operator', 'admin', 'kiosk')", name="role"),
        CheckConstraint("kind IN ('app', 'card', 'staff')", name="kind"),
    )


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored, so a database leak yields no usable token."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class PaymentMethod(Base):
    """A provider token for a payer's method (never a card number); ``last4`` for display."""

    __tablename__ = "payment_methods"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_ref: Mapped[str] = mapped_column(String(255))
    label: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("provider", "provider_ref"),)


class EntryCode(Base):
    """An issued entry QR code's nonce; ``used_at`` set once, atomically, when it is scanned."""

    __tablename__ = "entry_codes"
    nonce: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    visit_id: Mapped[str | None] = mapped_column(String(32))


# ---- visits, the engine's log and carts --------------------------------------------------------


#: visit states in which the shopper is (still) inside the store: one such visit per account
INSIDE_STATES = ("authorizing", "open", "checking_out")
_INSIDE_SQL = "state IN ('authorizing', 'open', 'checking_out')"


class Visit(Base):
    """One admission at the gate: a party of ``party_size`` sharing one payer.

    ``credential`` is what the engine's ``GateEvent`` carries, so engine sessions map to visits.
    States: authorizing → open → checking_out → charged | released | in_review | disputed;
    refused when the pre-authorisation failed. A partial UNIQUE index allows one visit inside
    (``INSIDE_STATES``) per account: "one visit at a time" holds whatever the isolation level.
    """

    __tablename__ = "visits"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    credential: Mapped[str] = mapped_column(String(128), unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    payment_method_id: Mapped[str] = mapped_column(ForeignKey("payment_methods.id"))
    gate_id: Mapped[str] = mapped_column(String(64))
    party_size: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    hold_amount: Mapped[Decimal] = mapped_column(MONEY)
    auth_id: Mapped[str | None] = mapped_column(String(128))
    engine_session_id: Mapped[str | None] = mapped_column(String(64))
    entered_at: Mapped[datetime]
    exited_at: Mapped[datetime | None]
    #: what the receipt came to above what the exit captured (a cart above the hold), owed by
    #: the shopper until ``balance_settled_at``: collected by a later charge
    #: (``balance_settlement`` ``charged``) or written off by an operator (``written_off``,
    #: ``balance_settled_by``, ``balance_note``). Null: nothing was ever owed.
    balance_owed: Mapped[Decimal | None] = mapped_column(MONEY)
    balance_settled_at: Mapped[datetime | None]
    balance_settlement: Mapped[str | None] = mapped_column(String(16))
    balance_settled_by: Mapped[str | None] = mapped_column(String(32))
    balance_note: Mapped[str | None] = mapped_column(String(500))
    #: every amount operators wrote off on this visit, added up: a later revision that raises
    #: the receipt again asks only for the new difference (``balance_owed`` then holds that,
    #: open again). Null: nothing was written off.
    balance_written_off: Mapped[Decimal | None] = mapped_column(MONEY)
    __table_args__ = (
        CheckConstraint("party_size >= 1 AND party_size <= 20", name="party_size"),
        Index("ix_visits_account_state", "account_id", "state"),
        Index("uq_visits_account_inside", "account_id", unique=True,
              sqlite_where=text(_INSIDE_SQL), postgresql_where=text(_INSIDE_SQL)),
    )


class EngineEvent(Base):
    """Append-only log of what the engine consumed and produced; (source, seq) is unique so a
    re-delivered or replayed event is a no-op. ``payload`` is JSON text."""

    __tablename__ = "engine_events"
    #: 64-bit (0015): a store's log outgrows 2^31 ids in years; SQLite's rowid is 64-bit
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    t: Mapped[float] = mapped_column(Float)
    payload: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime]
    #: the shelf event id a row is about (shelf event, decision, review case): how a disputed
    #: line finds its evidence
    ref: Mapped[str | None] = mapped_column(String(64), index=True)
    __table_args__ = (UniqueConstraint("source", "seq", name="uq_engine_events_source_seq"),)


class RunnerCheckpoint(Base):
    """How far the live engine got on a source: every output up to ``chunk`` is committed."""

    __tablename__ = "runner_checkpoints"
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer)
    t: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime]


class StreamChunk(Base):
    """One chunk of a live sensor stream as the engine stepped on it (its input), journaled
    before the step (``walkout.service.live_state``). A live source cannot be read again
    after a crash, so these rows are what a restart replays, from the last
    :class:`EngineSnapshot` on; the rows up to a snapshot are deleted with it."""

    __tablename__ = "stream_chunks"
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    t: Mapped[float] = mapped_column(Float)  # stream time the chunk ends at
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    recorded_at: Mapped[datetime]


class EngineSnapshot(Base):
    """The live engine's whole state after ``chunk`` of a live stream (one row per stream,
    replaced as it goes), so that a restart need not replay the stream from its beginning.
    ``code`` names the engine code and store file it was made with: another version does not
    load it."""

    __tablename__ = "engine_snapshots"
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    chunk: Mapped[int] = mapped_column(Integer)
    t: Mapped[float] = mapped_column(Float)
    code: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class CartLine(Base):
    """One append-only cart-ledger line of a visit: +q for a pick, -q for a put-back.

    ``line_key`` (the shelf event and product) is unique per visit: the same line delivered
    twice, or replayed after a restart, is stored once.
    """

    __tablename__ = "cart_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    visit_id: Mapped[str] = mapped_column(ForeignKey("visits.id"), index=True)
    line_key: Mapped[str] = mapped_column(String(160))
    product_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    event_id: Mapped[str] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    t: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime]
    __table_args__ = (
        UniqueConstraint("visit_id", "line_key", name="uq_cart_lines_visit_key"),
        CheckConstraint("quantity <> 0", name="quantity"),
    )


# ---- charges and the built-in ledger provider --------------------------------------------------


class Charge(Base):
    """The service's record of one provider call (pre-auth, capture, release, refund)."""

    __tablename__ = "charges"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    visit_id: Mapped[str] = mapped_column(ForeignKey("visits.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_ref: Mapped[str | None] = mapped_column(String(128))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))  # pending | succeeded | failed
    error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime]  # first tried
    #: when the provider's confirmation was recorded (None: not yet, or before 0014): the
    #: day the money moved, as the provider's statement has it
    settled_at: Mapped[datetime | None]
    __table_args__ = (
        CheckConstraint("kind IN ('preauth', 'capture', 'release', 'refund')", name="kind"),
    )


class LedgerAccount(Base):
    """An account of the built-in provider's double-entry ledger (payer, hold, store)."""

    __tablename__ = "ledger_accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    currency: Mapped[str] = mapped_column(String(3))


class LedgerTransaction(Base):
    """One money movement. ``idempotency_key`` is unique (a retry returns this row);
    ``closes`` is unique too, so an authorisation is captured or released at most once even
    under two different keys."""

    __tablename__ = "ledger_transactions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(64), unique=True)  # auth_/cap_/rel_/ref_ id
    kind: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    parent_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    closes: Mapped[str | None] = mapped_column(String(64), unique=True)
    payer_ref: Mapped[str] = mapped_column(String(255))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime]


class LedgerPosting(Base):
    """One side of a transaction; per transaction the debits equal the credits."""

    __tablename__ = "ledger_postings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    side: Mapped[str] = mapped_column(String(6))  # debit | credit
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    __table_args__ = (
        CheckConstraint("side IN ('debit', 'credit')", name="side"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )


# ---- after the visit ---------------------------------------------------------------------------


class Receipt(Base):
    """A visit's receipt; lines and total are fixed at issue (the ledger stays the truth)."""

    __tablename__ = "receipts"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    visit_id: Mapped[str] = mapped_column(ForeignKey("visits.id"), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal] = mapped_column(MONEY)
    needs_review: Mapped[bool]
    issued_at: Mapped[datetime]
    emailed_to: Mapped[str | None] = mapped_column(String(320))
    emailed_at: Mapped[datetime | None]


class ReceiptMail(Base):
    """One e-mail of a receipt: revision 0 is the receipt as issued, 1, 2, ... each revision
    a review verdict made (``changes``: what it changed, JSON). (receipt_id, revision) and
    ``message_id`` are UNIQUE: whoever inserts the row owns the send, and a row in state
    ``sent`` means it is never sent again.

    States: sending (claimed; a crash here leaves it to :func:`resume_mail` after
    ``claimed_at`` grows stale) → sent | failed (retried later)."""

    __tablename__ = "receipt_mails"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    receipt_id: Mapped[str] = mapped_column(ForeignKey("receipts.id"))
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    changes: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    recipient: Mapped[str | None] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(300))
    claimed_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("receipt_id", "revision", name="uq_receipt_mails_receipt_revision"),
        CheckConstraint("state IN ('sending', 'sent', 'failed')", name="state"),
    )


class ReceiptLine(Base):
    __tablename__ = "receipt_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    receipt_id: Mapped[str] = mapped_column(ForeignKey("receipts.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(MONEY)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    events: Mapped[str] = mapped_column(Text)  # JSON list of shelf event ids (provenance)
    #: the tax class and rate (a fraction) the price included when the line was issued: a
    #: later catalogue change never rewrites an issued receipt. NULL: no tax itemised (the
    #: store has no tax rates, or the receipt is older than migration 0006)
    tax_class: Mapped[str | None] = mapped_column(String(64))
    tax_rate: Mapped[Decimal | None] = mapped_column(TAX_RATE)
    __table_args__ = (UniqueConstraint("receipt_id", "position"),)


class Dispute(Base):
    """A shopper contesting one receipt line; resolved by an operator, refunds via provider."""

    __tablename__ = "disputes"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    receipt_id: Mapped[str] = mapped_column(ForeignKey("receipts.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    product_id: Mapped[str] = mapped_column(String(64))
    #: contested units that no review revision has taken off the line since (it lowers this)
    quantity: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(1000))
    #: open | refunding | refunded | rejected | corrected (a review revision took the contested
    #: units off the receipt first: see ``disputes.follow_revision``)
    state: Mapped[str] = mapped_column(String(16))
    refund_amount: Mapped[Decimal | None] = mapped_column(MONEY)
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(32))  # the operator's account id
    note: Mapped[str | None] = mapped_column(String(1000))  # the operator's reason
    __table_args__ = (UniqueConstraint("receipt_id", "product_id", name="uq_disputes_line"),)


# ---- review room -------------------------------------------------------------------------------


class ReviewVerdict(Base):
    """An operator's verdict on an engine review case: ``case_id`` (its shelf event id) in
    the engine stream ``source``.

    A case id is ``<plate>-<stream time>``, and a recording or simulation starts its clock at
    0 each time it is served, so two streams of one database can each have a case of one id:
    (``source``, ``case_id``) is the primary key, decided once. The API records the verdict
    with the case's stream; that stream's engine worker, in another process, applies it to its
    engine at the next chunk (and again on a replay after a restart, where the case reopens).
    ``source`` ``''``: the stream of a verdict recorded before 0017 could not be told (its
    case had left the event log); no engine applies it."""

    __tablename__ = "review_verdicts"
    #: the stream: the runner's source, what the case's event-log rows begin with
    #: (``<source>/evidence``)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: JSON {engine session id: [[product id, quantity > 0], ...]}; {} = nothing was taken
    shares: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(String(32))  # the operator's account id
    note: Mapped[str | None] = mapped_column(String(1000))
    decided_at: Mapped[datetime]
    #: when an engine first applied it (None: still waiting for the worker)
    applied_at: Mapped[datetime | None]
    #: the chunk after whose step the stream's engine applied it, so that a replay after a
    #: restart applies it at the same place (None: not yet, or before 0008)
    applied_chunk: Mapped[int | None] = mapped_column(Integer)


class StoreMode(Base):
    """The operator marked the store closed for restocking (``closed``) or open again.

    Appended by the API; the engine worker applies each row at its next chunk and stamps it
    (``source``, ``applied_chunk``, ``applied_t``): a replay after a restart applies it at
    that very chunk, so the engine's stock decisions are the same (its input, like a gate
    event). The latest row is the store's mode."""

    __tablename__ = "store_modes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    closed: Mapped[bool] = mapped_column(Boolean)
    set_by: Mapped[str] = mapped_column(String(32))  # the operator's account id
    note: Mapped[str | None] = mapped_column(String(1000))
    set_at: Mapped[datetime]
    source: Mapped[str | None] = mapped_column(String(64))  # the engine source that applied it
    applied_chunk: Mapped[int | None] = mapped_column(Integer)
    applied_t: Mapped[float | None] = mapped_column(Float)  # stream time it took effect


class AlertAck(Base):
    """An operator acknowledged an engine alert (an ``…/alerts`` row of the event log).

    ``event_id`` is the alert's event-log row id: the runner inserts each alert once (its
    ``(source, seq)`` is unique and a replay after a restart inserts nothing), so the id names
    the same alert across restarts. The primary key makes an alert acknowledged once; the
    acknowledgement goes with its alert when the retention purge deletes the row."""

    __tablename__ = "alert_acks"
    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("engine_events.id", ondelete="CASCADE"), primary_key=True)
    acked_by: Mapped[str] = mapped_column(String(32))  # the operator's account id
    note: Mapped[str | None] = mapped_column(String(1000))
    acked_at: Mapped[datetime]


# ---- what the payment provider reports (its webhook) -------------------------------------------


class PaymentWebhookEvent(Base):
    """One event the payment provider sent to its webhook, and what it did here.

    The row is written in the transaction of the event's effect and ``event_id`` is the
    primary key: a redelivered event (Stripe retries until it gets a 2xx, and may deliver one
    twice) finds its row and changes nothing, across restarts; an effect that failed takes its
    row with it, so the provider's retry applies it. ``outcome``: ``applied`` (walkout's
    records changed), ``attention`` (changed, and staff must act: a chargeback, a hold gone
    while money is owed, a refund made outside walkout) or ``ignored`` (``detail`` says why)."""

    __tablename__ = "payment_webhook_events"
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(100))
    #: the provider's object the event is about (pi_…, ch_…, dp_…): how a hold's cancellation
    #: is found again at the visit's exit
    object_id: Mapped[str | None] = mapped_column(String(255), index=True)
    visit_id: Mapped[str | None] = mapped_column(ForeignKey("visits.id"), index=True)
    created_at: Mapped[datetime]  # when the provider created the event
    received_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(500))
    #: staff handled an ``attention`` event: when, who (the operator's account id) and an
    #: optional note; the first acknowledgement is kept (null: nobody has, it stays listed)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(32))
    acknowledged_note: Mapped[str | None] = mapped_column(String(500))
    __table_args__ = (
        CheckConstraint("outcome IN ('applied', 'attention', 'ignored')", name="outcome"),
    )


class Chargeback(Base):
    """A bank chargeback of a visit's captured payment (Stripe calls it a dispute; walkout's
    ``Dispute`` is a shopper contesting a receipt line with the store).

    While it is open or lost, the bank returns that money to the shopper: walkout refunds none
    of it on top (``disputes.committed_refunds`` counts it, a dispute decision is refused).
    One row per provider dispute id, updated by its events in the provider's order: an event
    created before ``as_of`` changes nothing, and a closed chargeback never reopens."""

    __tablename__ = "chargebacks"
    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # the provider's (dp_…)
    provider: Mapped[str] = mapped_column(String(32))
    visit_id: Mapped[str] = mapped_column(ForeignKey("visits.id"), index=True)
    charge_ref: Mapped[str] = mapped_column(String(255))  # the charge it claws back (ch_…)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(64))  # the bank's: fraudulent, duplicate, …
    #: the provider's: warning_needs_response | warning_under_review | warning_closed (an
    #: inquiry: no money moved) | needs_response | under_review | won | lost
    status: Mapped[str] = mapped_column(String(32))
    evidence_due_by: Mapped[datetime | None]
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    #: the visit's state before the chargeback made it ``disputed``, restored if it is won
    visit_state_before: Mapped[str | None] = mapped_column(String(16))
    #: what the provider charged the store for it, net of any fee it gave back (won, in some
    #: regions): the sum of the fees of the dispute's balance transactions, in its balance's
    #: currency. A cost whether won or lost; null: not reported (rows from before 0012)
    fee: Mapped[Decimal | None] = mapped_column(MONEY)
    fee_currency: Mapped[str | None] = mapped_column(String(3))
    as_of: Mapped[datetime]  # creation time of the provider event the row is as of
    updated_at: Mapped[datetime]


#: how a provider's event finds its visit: by the hold (``auth_id``: pi_…) or by the capture
#: (its ``provider_ref``: ch_…), without scanning every visit or charge
Index("ix_visits_auth_id", Visit.auth_id)
Index("ix_charges_provider_ref", Charge.provider_ref)
