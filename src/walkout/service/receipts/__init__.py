"""Receipt channels: the receipt document, its HTML/PDF renderings, e-mail and kiosk look-up."""

from walkout.service.receipts.kiosk import find_receipts, normalize_email
from walkout.service.receipts.mail import (
    ReceiptDeliveryError,
    build_dispute_message,
    build_message,
    build_revision_message,
    message_id,
    send_receipt,
)
from walkout.service.receipts.model import (
    ReceiptDoc,
    ReceiptDocLine,
    ReceiptError,
    ReceiptRevision,
    diff_lines,
    from_engine_receipt,
    line_total,
    receipt_total,
)
from walkout.service.receipts.render import render_html, render_pdf, render_text

__all__ = [
    "ReceiptDeliveryError",
    "ReceiptDoc",
    "ReceiptDocLine",
    "ReceiptError",
    "ReceiptRevision",
    "build_dispute_message",
    "build_message",
    "build_revision_message",
    "diff_lines",
    "find_receipts",
    "from_engine_receipt",
    "line_total",
    "message_id",
    "normalize_email",
    "receipt_total",
    "render_html",
    "render_pdf",
    "render_text",
    "send_receipt",
]
