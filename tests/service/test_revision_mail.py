"""A receipt revised by a review verdict is e-mailed again, once per revision, over real SMTP
(aiosmtpd), on SQLite and PostgreSQL; and migration 0004 keeps the e-mails recorded before it."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError

from walkout.service import receipting, revisions
from walkout.service.checkout import LineRequest
from walkout.service.db import downgrade, make_engine, upgrade
from walkout.service.models import ReceiptMail
from walkout.service.receipts import ReceiptDocLine, diff_lines
from walkout.service.testing import MAIL_SENDER, Svc, restart_and_resume_mail

BAR, WATER = "018627032007", "073360771026"  # 9.19 and 7.59 EUR in the `small` store
SENDER = MAIL_SENDER


def _verdict(svc: Svc, vid: str, product: str, quantity: int) -> None:
    """A review verdict after the receipt: its correcting line, then the revision (as the
    engine worker applies it)."""
    revisions.add_review_lines(svc.deps, vid, [LineRequest(
        f"ev-review:{product}:{quantity:+d}:review", product, quantity, "ev-review")])
    revisions.revise(svc.deps, vid, needs_review=False)


def _text(msg: EmailMessage) -> str:
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


def _mails(svc: Svc) -> list[tuple[int, str, str]]:
    with svc.deps.sessions() as s:
        return [(m.revision, m.state, m.message_id) for m in s.scalars(
            select(ReceiptMail).order_by(ReceiptMail.revision))]


def test_a_revised_receipt_is_emailed_once_with_what_changed(
        mailed: tuple[Svc, Any], engine: Engine, smtp_inbox: tuple[Any, int]) -> None:
    svc, inbox = mailed
    vid = svc.enter(svc.shopper(email="ann@example.org"))
    out = svc.leave(vid, {BAR: 2, WATER: 1})
    assert len(inbox.messages) == 1 and inbox.messages[0]["Subject"].endswith("25.97 EUR")
    bar = svc.deps.store.products[BAR].name

    _verdict(svc, vid, BAR, -1)  # one bar was not taken: 9.19 back to the card
    assert len(inbox.messages) == 2
    msg = inbox.messages[1]
    assert msg["To"] == "ann@example.org" and msg["From"] == SENDER
    assert msg["Subject"] == f"Your receipt from {svc.deps.store.name} was revised: 16.78 EUR"
    assert msg["Message-ID"] == f"<receipt.{out['receipt_id']}.rev1@corner.example>"
    assert msg["Message-ID"] != inbox.messages[0]["Message-ID"]
    body = _text(msg)
    assert "was revised after a review" in body
    assert f"Removed: 1 x {bar} (9.19 EUR)" in body and "Added:" not in body
    assert "9.19 EUR has been refunded to your card." in body
    assert f"1 x {bar} @ 9.19" in body and "Total: 16.78 EUR" in body  # the revised receipt
    html = msg.get_body(preferencelist=("html",))
    assert html is not None and "9.19 EUR has been refunded" in html.get_content()
    [pdf] = list(msg.iter_attachments())
    assert "16.78 EUR" in PdfReader(io.BytesIO(pdf.get_content())).pages[0].extract_text()

    # the verdict delivered again (a replay, a second worker pass), a resume, a restart:
    # nothing more is sent
    _verdict(svc, vid, BAR, -1)
    assert receipting.resume_mail(svc.deps) == 0
    # a restart: its start-up resends what is unsent (nothing here), and so would a resume
    assert restart_and_resume_mail(engine, smtp_inbox[1]) == 0
    assert len(inbox.messages) == 2
    assert [(r, st) for r, st, _ in _mails(svc)] == [(0, "sent"), (1, "sent")]

    # a second verdict is a second revision: e-mailed once more, under its own Message-ID
    _verdict(svc, vid, WATER, -1)
    assert len(inbox.messages) == 3
    assert inbox.messages[2]["Message-ID"].startswith(f"<receipt.{out['receipt_id']}.rev2@")
    assert "7.59 EUR has been refunded" in _text(inbox.messages[2])
    assert len({mid for _, _, mid in _mails(svc)}) == 3


def test_a_verdict_that_changes_nothing_sends_nothing(mailed: tuple[Svc, Any]) -> None:
    svc, inbox = mailed
    vid = svc.enter(svc.shopper())
    svc.leave(vid, {BAR: 1})
    revisions.revise(svc.deps, vid, needs_review=False)
    assert len(inbox.messages) == 1 and [r for r, _, _ in _mails(svc)] == [0]


def test_a_revision_mail_that_failed_is_resent_once_with_the_same_message(
        mailed: tuple[Svc, Any]) -> None:
    svc, inbox = mailed
    vid = svc.enter(svc.shopper())
    svc.leave(vid, {BAR: 1, WATER: 1})
    inbox.refuse = True  # the SMTP server is down when the verdict lands
    _verdict(svc, vid, WATER, +1)  # a bottle missed: added (the closed authorisation: no refund)
    assert len(inbox.messages) == 1
    [(_, state, mid)] = [m for m in _mails(svc) if m[0] == 1]
    assert state == "failed"
    inbox.refuse = False
    svc.clock.advance(3600)  # the e-mail says when the receipt was revised, not when it went
    assert receipting.resume_mail(svc.deps) == 1
    assert receipting.resume_mail(svc.deps) == 0
    assert len(inbox.messages) == 2
    msg = inbox.messages[1]
    assert msg["Message-ID"] == mid
    body = _text(msg)
    name = svc.deps.store.products[WATER].name
    assert f"Added: 1 x {name} (7.59 EUR)" in body and "refunded" not in body
    assert "Total: 24.37 EUR" in body

    # a sender that crashed mid-send leaves a stale claim: resent once after STALE_CLAIM
    with svc.deps.sessions.begin() as s:
        m = s.scalars(select(ReceiptMail).where(ReceiptMail.revision == 1)).one()
        m.state, m.claimed_at = "sending", svc.deps.clock.now()
    assert receipting.resume_mail(svc.deps) == 0  # still fresh: another worker may be on it
    svc.clock.advance(receipting.STALE_CLAIM.total_seconds() + 1)
    assert receipting.resume_mail(svc.deps) == 1
    assert [m["Message-ID"] for m in inbox.messages[1:]] == [mid, mid]


def test_lines_removed_and_added_per_product() -> None:
    def ln(pid: str, q: int) -> ReceiptDocLine:
        return ReceiptDocLine(pid, pid.upper(), q, Decimal("1.50"))

    removed, added = diff_lines([ln("a", 2), ln("b", 1)], [ln("a", 1), ln("c", 3)])
    assert removed == (ln("a", 1), ln("b", 1)) and added == (ln("c", 3),)
    assert diff_lines([ln("a", 2)], [ln("a", 2)]) == ((), ())


def test_upgrade_from_0003_keeps_mails_as_revision_0(db_url: str) -> None:
    eng = make_engine(db_url)
    upgrade(eng, "0003")
    t = datetime(2026, 1, 1, tzinfo=UTC)
    with eng.begin() as c:
        c.execute(text("INSERT INTO accounts (id, kind, role, created_at) VALUES "
                       "('a1', 'app', 'shopper', :t)"), {"t": t})
        c.execute(text("INSERT INTO payment_methods (id, account_id, provider, provider_ref, "
                       "created_at) VALUES ('pm1', 'a1', 'ledger', 'tok', :t)"), {"t": t})
        c.execute(text(
            "INSERT INTO visits (id, credential, account_id, payment_method_id, gate_id, "
            "party_size, state, currency, hold_amount, entered_at) VALUES ('v1', 'c1', 'a1', "
            "'pm1', 'g1', 1, 'charged', 'EUR', 50, :t)"), {"t": t})
        c.execute(text("INSERT INTO receipts (id, visit_id, currency, total, needs_review, "
                       "issued_at) VALUES ('r1', 'v1', 'EUR', 9.19, false, :t)"), {"t": t})
        c.execute(text("INSERT INTO receipt_mails (receipt_id, message_id, recipient, state, "
                       "attempts, claimed_at) VALUES ('r1', '<receipt.r1@x>', 'a@x.org', "
                       "'sent', 1, :t)"), {"t": t})
    upgrade(eng)
    insert = text("INSERT INTO receipt_mails (receipt_id, revision, message_id, state, "
                  "attempts, claimed_at) VALUES ('r1', :rev, :mid, 'sending', 1, :t)")
    with eng.begin() as c:
        assert c.execute(text("SELECT receipt_id, revision, message_id FROM receipt_mails")
                         ).all() == [("r1", 0, "<receipt.r1@x>")]
        c.execute(insert, {"rev": 1, "mid": "<receipt.r1.rev1@x>", "t": t})
    for rev, mid in ((1, "<other@x>"), (2, "<receipt.r1@x>")):  # one row per revision, and
        with pytest.raises(IntegrityError), eng.begin() as c:   # Message-IDs stay unique
            c.execute(insert, {"rev": rev, "mid": mid, "t": t})
    downgrade(eng, "0003")  # back to one e-mail per receipt: the original's record stays
    with eng.begin() as c:
        assert c.execute(text("SELECT receipt_id, message_id FROM receipt_mails")).all() == [
            ("r1", "<receipt.r1@x>")]
    eng.dispose()
