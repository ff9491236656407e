"""Request and response bodies of the API: strict (unknown fields are refused, with a message
naming them), and money always as a decimal string beside its currency."""

from __future__ import annotations

from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from walkout.service.accounts import refuse_card_number

EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,255}\.[A-Za-z]{2,}$"


def mailable(value: str) -> str:
    """Accept only what the receipt mailer can address: the address must parse, whole and
    unchanged, as the ``To:`` header it becomes (``a,b@x.com`` would be two recipients, or
    none), and be ASCII (the mailer does not ask servers for SMTPUTF8). Never echoes it."""
    try:
        whole = value.isascii() and Address(addr_spec=value).addr_spec == value
    except (ValueError, IndexError, HeaderParseError):  # what the header parser raises
        whole = False
    if not whole:
        raise ValueError("not an e-mail address receipts can be sent to")
    return value


#: an e-mail address receipts will be sent to
MailAddress = Annotated[str, Field(pattern=EMAIL, max_length=320), AfterValidator(mailable)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Request(Strict):
    """A request body. Numbers and booleans must come as JSON numbers and booleans: a count
    sent as ``"3"`` or ``true`` is a client's mistake to name (422), not a value to guess.
    No text may hold a NUL character: PostgreSQL's text cannot store one (it was a 500 at
    the insert) and SQLite would keep it where every later reader trips on it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("holds a NUL character (\\u0000), which no text may")
        return value


class MoneyOut(Strict):
    amount: str
    currency: str


class NewAccount(Request):
    email: MailAddress | None = None
    name: str | None = Field(None, min_length=1, max_length=120)


class AccountCreated(Strict):
    account_id: str
    token: str


class NewPaymentMethod(Request):
    provider_ref: str = Field(min_length=3, max_length=255,
                              description="the provider's token for the method, never a number")
    label: str | None = Field(None, max_length=64)

    _no_pan = field_validator("provider_ref")(refuse_card_number)


class EntryCodeOut(Strict):
    code: str
    expires_in_s: float


class QrScan(Request):
    code: str = Field(min_length=1, max_length=200)
    party_size: int = Field(1, ge=1, le=20)
    credential: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._:-]{1,128}$",
        description="the credential the gate puts in its GateEvent for the engine (a gate "
        "that names its own); by default the visit gets one")


class CardTap(Request):
    card_token: str = Field(min_length=3, max_length=255)
    email: MailAddress | None = None
    party_size: int = Field(1, ge=1, le=20)

    _no_pan = field_validator("card_token")(refuse_card_number)


class AdmissionOut(Strict):
    visit_id: str
    credential: str
    party_size: int
    hold: MoneyOut
    #: a gate's retry of an admission it lost the answer to: the original one (HTTP 200)
    replayed: bool = False


class CartLineIn(Request):
    line_key: str = Field(min_length=1, max_length=160)
    product_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=-100, le=100)
    event_id: str = Field(min_length=1, max_length=64)
    confidence: float = Field(1.0, ge=0, le=1)
    t: float = 0.0


class CartLinesIn(Request):
    lines: list[CartLineIn] = Field(min_length=1, max_length=500)


class CartLinesOut(Strict):
    added: int


class ExitOut(Strict):
    visit_id: str
    state: str
    receipt_id: str
    total: MoneyOut
    charged: MoneyOut


class VisitOut(Strict):
    visit_id: str
    state: str
    party_size: int
    gate_id: str
    lines: int


class ReceiptLineOut(Strict):
    product_id: str
    name: str
    quantity: int
    unit_price: str
    amount: str
    tax_class: str | None = Field(None, description="None: the receipt itemises no tax")
    tax_rate: str | None = Field(None, description="a fraction, '0.055' is 5.5 %")


class TaxLineOut(Strict):
    """One rate of a receipt's tax breakdown (``walkout.checkout.tax``): gross = net + tax."""

    tax_class: str = Field(description="the tax class (several, comma-separated, at one rate)")
    rate: str = Field(description="a fraction, '0.2' is 20 %")
    gross: str
    net: str
    tax: str


class ReceiptOut(Strict):
    receipt_id: str
    visit_id: str
    currency: str
    total: str
    needs_review: bool  # open review cases held it at exit
    under_review: bool = False  # review cases or undecided disputes: it may still change
    issued_at: str | None = None
    lines: list[ReceiptLineOut]
    tax: list[TaxLineOut] = Field(
        default_factory=list, description="the tax included in the total, per rate; empty: "
        "no tax is itemised on this receipt")


class KioskLookup(Request):
    email: str = Field(pattern=EMAIL, max_length=320)


class DisputeDecision(Request):
    decision: Literal["refund", "reject"]
    note: str | None = Field(None, max_length=1000, description="why, for the record")


class PurgeIn(Request):
    days: int | None = Field(None, ge=1, le=3650,
                             description="retention in days; default: the configured one")


class PrivacyRequest(Request):
    """Who a privacy request made to staff is about: the e-mail address the shopper gave,
    or the card token the gate read (a card-tap guest has nothing else)."""

    email: str | None = Field(None, max_length=320)
    card_token: str | None = Field(None, min_length=1, max_length=200)


class NewDispute(Request):
    receipt_id: str = Field(min_length=1, max_length=32)
    product_id: str = Field(min_length=1, max_length=64)
    quantity: int = Field(1, ge=1, le=100)
    reason: str = Field(min_length=3, max_length=1000)


class DisputeOut(Strict):
    dispute_id: str
    state: str


class StaffBadgeScan(Request):
    badge: str = Field(min_length=1, max_length=200, description="the staff badge's code")


class StaffBadgeOut(Strict):
    account_id: str
    badge: str = Field(description="the badge code (print it on the card or as a QR)")


class StaffAdmissionOut(Strict):
    account_id: str
    credential: str = Field(description="what the gate puts in its GateEvent for the engine")


class StoreModeIn(Request):
    closed: bool = Field(description="true: closed for restocking; false: open to shoppers")
    note: str | None = Field(None, max_length=1000)


class NewStaff(Request):
    role: str = Field(pattern="^(operator|admin|kiosk)$")
    name: str | None = Field(None, max_length=120)


class StaffOut(Strict):
    account_id: str
    role: str
    name: str | None
    created_at: str
    active_tokens: int = Field(description="tokens that still work; 0 once revoked")
    revoked_at: str | None = Field(description="when its last token was revoked, if none works")
