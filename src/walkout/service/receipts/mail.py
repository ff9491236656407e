"""Receipts by e-mail over SMTP: an HTML body, a plain-text alternative and the PDF attached.

The message is a pure function of the receipt (Message-ID and Date come from the receipt id and
visit time), so a retried send is recognisably the same e-mail: the caller records the returned
Message-ID (the service under a unique constraint) and passes what it has recorded as
``already_sent`` to make retries no-ops. Delivery failures raise ``ReceiptDeliveryError`` naming
the server and what it refused, with the recipient's address masked (no personal data in logs).
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Container
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from walkout.service.receipts.model import ReceiptDoc, ReceiptRevision
from walkout.service.receipts.render import (
    render_html,
    render_pdf,
    render_text,
    revision_notice,
)


class ReceiptDeliveryError(RuntimeError):
    """The receipt could not be handed to the SMTP server; the message says why. ``final``:
    the server refused the recipient for good (5xx: no such mailbox), so trying again with
    the same address cannot succeed. ``config``: the server refuses, or lacks, what every
    message is sent with (the sender, the login, the STARTTLS or AUTH the settings ask for, a
    TLS handshake with a certificate they trust), so no message can go until the settings or
    the server change. Said by :func:`deliver`, which knows at which ``step`` the conversation
    failed (``starttls``, ``tls``, ``auth``, ``login``, ``sender``; None: another); ``code``:
    the server's reply code, if it gave one."""

    def __init__(self, message: str, *, final: bool = False, config: bool = False,
                 step: str | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.final, self.config, self.step, self.code = final, config, step, code


#: a MAIL FROM refused for the message's size (RFC 1870): that message's, not the store's
_SIZE_REFUSED = 552


def mask_email(address: str) -> str:
    """``a***@example.com``: enough to tell addresses apart in an error, not to read them."""
    local, _, domain = address.strip().rpartition("@")
    return f"{local[:1]}***@{domain}" if local else "***"


def message_id(doc: ReceiptDoc, sender: str, revision: int = 0) -> str:
    """The Message-ID of ``doc``'s e-mail: the same for every attempt to send that receipt
    (or that ``revision`` of it), and different for each revision."""
    domain = Address(addr_spec=sender).domain or "walkout.invalid"
    local = re.sub(r"[^A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]", "-", doc.receipt_id)
    return f"<receipt.{local}{f'.rev{revision}' if revision else ''}@{domain}>"


def build_revision_message(doc: ReceiptDoc, rev: ReceiptRevision, sender: str, *,
                           contest_url: str | None = None,
                           font_path: str | Path | None = None) -> EmailMessage:
    """The e-mail telling the shopper that ``doc`` (already revised) changed after a review:
    what changed and the refund above the receipt, the revised PDF attached. A pure function
    of its inputs, so a retried send is the same message."""
    notice = revision_notice(doc, rev)
    msg = build_message(doc, sender, contest_url=contest_url, font_path=font_path,
                        notice=notice)
    store = " ".join(doc.store_name.split())
    msg.replace_header("Subject", f"Your receipt from {store} was revised: "
                                  f"{doc.fmt(doc.total)} {doc.currency}")
    msg.replace_header("Date", format_datetime(rev.revised_at))
    msg.replace_header("Message-ID", message_id(doc, sender, rev.number))
    return msg


def build_dispute_message(doc: ReceiptDoc, number: int, decided_at: datetime,
                          notice: tuple[str, ...], sender: str, *, refunded: bool,
                          font_path: str | Path | None = None) -> EmailMessage:
    """The e-mail answering a contested line of ``doc`` (message ``number`` of the receipt, as
    a revision's): the decision in ``notice`` above the receipt, which it leaves as it is (a
    refund is money back, not a change of what was taken). No contest links: the line was
    contested already. A pure function of its inputs, so a retried send is the same."""
    msg = build_message(doc, sender, contest_url=None, font_path=font_path, notice=notice)
    store = " ".join(doc.store_name.split())
    msg.replace_header("Subject", f"Your receipt from {store}: "
                                  + ("refunded" if refunded else "the charge stands"))
    msg.replace_header("Date", format_datetime(decided_at))
    msg.replace_header("Message-ID", message_id(doc, sender, number))
    return msg


def build_message(doc: ReceiptDoc, sender: str, *, contest_url: str | None = None,
                  font_path: str | Path | None = None,
                  notice: tuple[str, ...] = ()) -> EmailMessage:
    """The receipt e-mail to ``doc.email``; raises ``ValueError`` when it has no valid address.
    ``notice`` paragraphs precede the receipt in both bodies. ``contest_url``: the absolute
    dispute URL (:func:`~walkout.service.receipts.render.public_contest_url`); None: no link,
    since a relative one is dead in a mail client."""
    if not doc.email:
        raise ValueError(f"receipt {doc.receipt_id} has no e-mail address to send it to")
    try:
        to = Address(addr_spec=doc.email.strip())
    except (ValueError, IndexError) as e:  # the header parser raises either on garbage
        raise ValueError(f"receipt {doc.receipt_id}: {mask_email(doc.email)} is not a valid "
                         "e-mail address") from e
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    # a store name is configuration, but a line break in it must not forge headers
    store = " ".join(doc.store_name.split())
    msg["Subject"] = f"Your receipt from {store}: {doc.fmt(doc.total)} {doc.currency}"
    msg["Date"] = format_datetime(doc.issued_at)
    msg["Message-ID"] = message_id(doc, sender)
    msg.set_content(render_text(doc, contest_url=contest_url, notice=notice))
    msg.add_alternative(render_html(doc, contest_url=contest_url, notice=notice),
                        subtype="html")
    msg.add_attachment(render_pdf(doc, font_path=font_path), maintype="application",
                       subtype="pdf", filename=f"receipt-{doc.receipt_id}.pdf")
    return msg


def send_receipt(doc: ReceiptDoc, smtp_host: str, smtp_port: int, sender: str, *,
                 already_sent: Container[str] = frozenset(), starttls: bool = False,
                 username: str | None = None, password: str | None = None,
                 timeout: float = 10.0, contest_url: str | None = None,
                 font_path: str | Path | None = None) -> str:
    """E-mail ``doc`` to ``doc.email`` and return its Message-ID.

    Nothing is sent when that Message-ID is in ``already_sent`` (a retry after a crash between
    sending and recording). ``starttls`` upgrades the connection before logging in, which a
    server on the open network needs; a local relay usually does not.
    """
    msg = build_message(doc, sender, contest_url=contest_url, font_path=font_path)
    mid = str(msg["Message-ID"])
    if mid in already_sent:
        return mid
    deliver(msg, smtp_host, smtp_port, what=f"receipt {doc.receipt_id}", starttls=starttls,
            username=username, password=password, timeout=timeout)
    return mid


def deliver(msg: EmailMessage, smtp_host: str, smtp_port: int, *, what: str,
            starttls: bool = False, username: str | None = None, password: str | None = None,
            timeout: float = 10.0) -> None:
    """Hand ``msg`` to the SMTP server; ``ReceiptDeliveryError`` says who refused what, and
    whether it is the settings' fault (``config``): a 5xx to MAIL FROM (but 552, a message too
    large) or to AUTH, STARTTLS or AUTH asked for and not offered, a failed TLS handshake. A 4xx
    anywhere is temporary."""
    where = f"SMTP server {smtp_host}:{smtp_port}"
    sender = str(msg["From"])
    try:
        smtp = smtplib.SMTP(smtp_host, smtp_port, timeout=timeout)
        try:
            if starttls:
                _starttls(smtp, where)
            if username is not None:
                _login(smtp, where, username, password or "", tls=starttls)
            smtp.send_message(msg)
        except BaseException:
            smtp.close()
            raise
        # the server took the message (250 after DATA): whatever QUIT answers (a 421, a
        # reset), the shopper has it, and reporting a failure would have it sent again
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
    except smtplib.SMTPRecipientsRefused as e:
        why = "; ".join(f"{code} {_text(reply)}" for code, reply in e.recipients.values())
        to = ", ".join(mask_email(a) for a in e.recipients)
        final = all(_permanent(code) for code, _ in e.recipients.values())
        raise ReceiptDeliveryError(f"{where} refused the recipient {to}: {why}",
                                   final=final, step="recipient") from e
    except smtplib.SMTPSenderRefused as e:
        code = e.smtp_code
        raise ReceiptDeliveryError(
            f"{where} refused the sender {sender}: {code} {_text(e.smtp_error)}",
            config=_permanent(code) and code != _SIZE_REFUSED, step="sender", code=code) from e
    except smtplib.SMTPResponseException as e:
        raise ReceiptDeliveryError(
            f"{where} refused {what}: {e.smtp_code} {_text(e.smtp_error)}",
            code=e.smtp_code) from e
    except smtplib.SMTPException as e:
        raise ReceiptDeliveryError(f"{where} failed for {what}: {e}") from e
    except OSError as e:  # refused, unreachable, DNS failure, timeout
        raise ReceiptDeliveryError(f"{where} is unreachable: {e}") from e


def _starttls(smtp: smtplib.SMTP, where: str) -> None:
    """Upgrade the connection, as the settings ask: a server that does not offer it, refuses
    it for good or fails the handshake (a certificate the default trust store does not trust,
    or not for this host name) would do the same to every message."""
    try:
        smtp.starttls(context=ssl.create_default_context())
    except smtplib.SMTPHeloError:
        raise
    except smtplib.SMTPNotSupportedError as e:
        raise ReceiptDeliveryError(
            f"{where} does not offer STARTTLS (it offers {_offered(smtp)})", config=True,
            step="starttls") from e
    except smtplib.SMTPResponseException as e:  # STARTTLS answered other than 220
        raise ReceiptDeliveryError(
            f"{where} refused STARTTLS: {e.smtp_code} {_text(e.smtp_error)}",
            config=_permanent(e.smtp_code), step="starttls", code=e.smtp_code) from e
    except ssl.SSLCertVerificationError as e:
        raise ReceiptDeliveryError(
            f"{where} failed the TLS handshake: its certificate is not trusted here "
            f"({e.verify_message})", config=True, step="tls") from e
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:  # cut off: an outage
        raise ReceiptDeliveryError(f"{where} cut the TLS handshake: {e}", step="tls") from e
    except ssl.SSLError as e:  # no protocol version or cipher in common, say
        raise ReceiptDeliveryError(f"{where} failed the TLS handshake: {e.reason or e}",
                                   config=True, step="tls") from e


def _login(smtp: smtplib.SMTP, where: str, username: str, password: str, *,
           tls: bool) -> None:
    """Log in, as the settings ask (a user is set): a server that offers no AUTH (many offer
    it only after STARTTLS), none this client speaks, or refuses the login for good would do
    the same to every message. The password never goes into a message."""
    try:
        smtp.login(username, password)
    except smtplib.SMTPNotSupportedError as e:
        plain = "" if tls else " on a connection without STARTTLS"
        raise ReceiptDeliveryError(
            f"{where} does not offer AUTH{plain} (it offers {_offered(smtp)}), which the "
            f"login of {username!r} needs", config=True, step="auth") from e
    except smtplib.SMTPAuthenticationError as e:
        code = e.smtp_code
        raise ReceiptDeliveryError(
            f"{where} rejected the login of {username!r}: {code} {_text(e.smtp_error)}",
            config=_permanent(code), step="login", code=code) from e
    except smtplib.SMTPException as e:
        if type(e) is not smtplib.SMTPException:  # a disconnect, a refused EHLO: not AUTH's
            raise
        # smtplib's own "No suitable authentication method found."
        raise ReceiptDeliveryError(
            f"{where} offers no AUTH method this client speaks for the login of "
            f"{username!r} (it offers AUTH {smtp.esmtp_features.get('auth', '')})",
            config=True, step="auth") from e


def _permanent(code: int) -> bool:
    return 500 <= code < 600


def _offered(smtp: smtplib.SMTP) -> str:
    """What the server's EHLO offered, for a message saying what it lacks."""
    return ", ".join(k.upper() for k in smtp.esmtp_features) or "no extensions"


class SmtpMailer:
    """The service's ``Mailer`` over SMTP: one connection per message, which is plenty for
    receipts (one per visit) and survives the server restarting between them."""

    def __init__(self, host: str, port: int, *, starttls: bool = False,
                 username: str | None = None, password: str | None = None,
                 timeout: float = 10.0) -> None:
        self.host, self.port, self.starttls = host, port, starttls
        self._username, self._password, self._timeout = username, password, timeout

    def send(self, message: EmailMessage) -> None:
        deliver(message, self.host, self.port, what=f"message {message['Message-ID']}",
                starttls=self.starttls, username=self._username, password=self._password,
                timeout=self._timeout)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
