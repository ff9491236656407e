"""A receipt as HTML, plain text and PDF.

HTML goes through Jinja2 with autoescaping on: product and store names come from store files and
e-mail addresses from shoppers, and none of them may inject markup into a page or an e-mail. The
PDF is made by fpdf2 (pure Python, no external binaries) so that it renders the same on every
machine the service runs on.
"""

from __future__ import annotations

import base64
import hashlib
import unicodedata
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos
from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape
from markupsafe import Markup

from walkout.checkout.tax import percent
from walkout.service.receipts.model import ReceiptDoc, ReceiptDocLine, ReceiptRevision

#: Where a shopper contests a line; ``{receipt_id}`` is filled in (URL-quoted) and the line's
#: product id is added as ``?product_id=``. The service serves the shopper app's dispute form
#: here (``walkout.web``); an e-mail needs it absolute: :func:`public_contest_url`.
DEFAULT_CONTEST_URL = "/receipts/{receipt_id}/disputes/new"

_CSS = """
  body { font-family: system-ui, sans-serif; max-width: 40em; margin: 1em auto; color: #222; }
  table { width: 100%; border-collapse: collapse; }
  table.tax { margin-top: 1em; font-size: .9em; }
  caption { text-align: left; font-weight: bold; padding: .3em .4em; }
  th, td { padding: .3em .4em; border-bottom: 1px solid #ddd; text-align: left; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  tfoot td { font-weight: bold; border-bottom: none; }
  .meta { color: #555; }
  .notice { border: 1px solid #c90; background: #fff8e6; padding: .2em .8em; }
"""

#: The Content-Security-Policy of the receipt page served over HTTP: no script at all, and
#: only its own inline style (by hash: it is the same for every receipt).
HTML_CSP = ("default-src 'none'; style-src 'sha256-"
            + base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
            + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

_HTML = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Receipt {{ doc.receipt_id }} – {{ doc.store_name }}</title>
<style>{{ css }}</style>
</head>
<body>
<h1>{{ doc.store_name }}</h1>
<p class="meta">
  Receipt <span class="receipt-id">{{ doc.receipt_id }}</span><br>
  Visit: <time datetime="{{ doc.issued_at.isoformat() }}">{{ issued }}</time>
</p>
{% if notice %}
<div class="notice">
{% for para in notice %}
<p>{{ para }}</p>
{% endfor %}
</div>
{% endif %}
{% if doc.under_review %}
<p class="under-review"><strong>{{ review_note }}</strong></p>
{% endif %}
<table>
  <thead>
    <tr><th>Product</th><th class="num">Qty</th><th class="num">Unit price</th>
        <th class="num">Amount</th>{% if tax %}<th class="num">Tax</th>{% endif %}<th></th></tr>
  </thead>
  <tbody>
  {%- for line in doc.lines %}
    <tr>
      <td>{{ line.name }}</td>
      <td class="num">{{ line.quantity }}</td>
      <td class="num">{{ doc.fmt(line.unit_price) }}</td>
      <td class="num">{{ doc.fmt(doc.line_total(line)) }}</td>
      {% if tax %}<td class="num">{{ percent(line.tax_rate) }}</td>{% endif %}
      <td>
      {%- if contest %}<a href="{{ contest_link(line.product_id) }}">Contest this line</a>
      {%- endif %}</td>
    </tr>
  {%- else %}
    <tr><td colspan="5">Nothing was taken: you have not been charged.</td></tr>
  {%- endfor %}
  </tbody>
  <tfoot>
    <tr><td colspan="3">Total ({{ doc.currency }})</td>
        <td class="num total">{{ doc.fmt(doc.total) }} {{ doc.currency }}</td>
        {% if tax %}<td></td>{% endif %}<td></td></tr>
  </tfoot>
</table>
{% if tax %}
<table class="tax">
  <caption>Tax included in the prices</caption>
  <thead>
    <tr><th>Tax class</th><th class="num">Rate</th><th class="num">Net</th>
        <th class="num">Tax</th><th class="num">Gross</th></tr>
  </thead>
  <tbody>
  {%- for t in tax %}
    <tr class="tax-line">
      <td>{{ t.tax_class }}</td>
      <td class="num">{{ percent(t.rate) }}</td>
      <td class="num">{{ doc.fmt(t.net) }}</td>
      <td class="num">{{ doc.fmt(t.tax) }}</td>
      <td class="num">{{ doc.fmt(t.gross) }}</td>
    </tr>
  {%- endfor %}
  </tbody>
</table>
<p class="meta">Prices include tax.
{% else %}
<p class="meta">No tax is itemised on this receipt.
{% endif %}
{% if contest %}
  Something wrong? <a href="{{ contest_link(None) }}">Contest a line</a>.
{% endif %}
</p>
</body>
</html>
"""

#: Shown on a receipt that open review cases or disputes may still change.
UNDER_REVIEW = "Under review: some lines are being checked; this receipt may still change."

_env = Environment(
    loader=DictLoader({"receipt.html": _HTML}),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def public_contest_url(public_url: str | None) -> str | None:
    """The absolute contest URL under the store's public base URL (an e-mail's links must
    be absolute), or None without one: the e-mail then carries no link rather than a dead
    one."""
    return None if not public_url else public_url.rstrip("/") + DEFAULT_CONTEST_URL


def contest_link(doc: ReceiptDoc, product_id: str | None,
                 contest_url: str = DEFAULT_CONTEST_URL) -> str:
    """The dispute URL of one line of ``doc`` (or of the receipt when ``product_id`` is None)."""
    # a plain replace, not str.format: a brace elsewhere in the store's public URL (allowed
    # by its setting) must not break every receipt e-mail
    url = contest_url.replace("{receipt_id}", quote(doc.receipt_id, safe=""))
    if product_id is None:
        return url
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}product_id={quote(product_id, safe='')}"


def _issued(doc: ReceiptDoc) -> str:
    return doc.issued_at.strftime("%Y-%m-%d %H:%M %Z").strip()


def revision_notice(doc: ReceiptDoc, rev: ReceiptRevision) -> tuple[str, ...]:
    """What a revision e-mail says above the revised receipt: that it was revised after a
    review, each line removed or added, the money going back to the card, and what the
    shopper still owes above what was captured (charged to her card, or to pay)."""
    def line(ln: ReceiptDocLine) -> str:
        return (f"{ln.quantity} x {ln.name} ({doc.fmt(doc.line_total(ln))} "
                f"{doc.currency})")

    out = [f"Your receipt {doc.receipt_id} was revised after a review of your visit "
           f"(revision {rev.number}, {rev.revised_at.strftime('%Y-%m-%d %H:%M %Z').strip()})."]
    out += [f"Removed: {line(ln)}" for ln in rev.removed]
    out += [f"Added: {line(ln)}" for ln in rev.added]
    if not rev.removed and not rev.added:
        out.append("The lines are unchanged.")
    if rev.refund > 0:
        amount = f"{doc.fmt(rev.refund)} {doc.currency}"
        out.append(f"{amount} {'has been' if rev.refunded else 'is being'} refunded to your "
                   "card.")
    if rev.owed is not None:  # a balance above what was captured: asked for, or lowered
        owed = f"{doc.fmt(rev.owed)} {doc.currency}"
        if rev.owed <= 0:
            out.append("Nothing is owed for this visit any more.")
        elif rev.owed_status == "charged":
            out.append(f"The difference, {owed}, has been charged to your card.")
        elif rev.owed_status == "charging":
            out.append(f"The difference, {owed}, is being charged to your card.")
        else:
            out.append(f"{owed} is still owed for this visit: you can pay it in the app; "
                       "the store lets you in again once it is paid.")
    out.append(f"The revised receipt follows; its total is {doc.fmt(doc.total)} "
               f"{doc.currency}.")
    return tuple(out)


def dispute_notice(doc: ReceiptDoc, *, name: str, quantity: int, refunded: bool,
                   refund: Decimal, done: bool, credit: Decimal, by_store: bool
                   ) -> tuple[str, ...]:
    """What the e-mail answering a contested line says above the receipt: the line, what staff
    decided, and where the money is (back to the card, or taken off what she still owed).
    ``refunded`` False: the charge stands; ``done``: the provider confirmed the refund;
    ``by_store``: staff refunded it of their own accord (no dispute of hers). Never the
    operator's own note: it is written for the store's records."""
    what = f"{quantity} x {name}"
    if not refunded:
        return (f"You contested {what} on receipt {doc.receipt_id}. Staff checked the evidence "
                "of your visit (the shelf's weight sensors and where each shopper's hands "
                "were) and the charge stands.",
                "You can ask the store to see that evidence.")
    out = [f"The store refunded {what} on receipt {doc.receipt_id}." if by_store else
           f"You contested {what} on receipt {doc.receipt_id}: staff found for you."]
    if credit > 0:
        out.append(f"{doc.fmt(credit)} {doc.currency} was taken off what you still owed "
                   "for this visit.")
    if refund > 0:
        out.append(f"{doc.fmt(refund)} {doc.currency} {'has been' if done else 'is being'} "
                   "refunded to your card.")
    return tuple(out)


def owed_notice(doc: ReceiptDoc, owed: Decimal, charging: bool) -> tuple[str, ...]:
    """What a receipt's e-mail says above it when the card did not pay all of its total: the
    rest is being charged to the card, or is still owed (the gate refuses her until paid)."""
    if owed <= 0:
        return ()
    amount = f"{doc.fmt(owed)} {doc.currency}"
    if charging:
        return (f"{amount} of this total is being charged to your card.",)
    return (f"{amount} of this total is still owed for this visit: you can pay it in the app; "
            "the store lets you in again once it is paid.",)


def render_html(doc: ReceiptDoc, *, contest_url: str | None = DEFAULT_CONTEST_URL,
                notice: Sequence[str] = ()) -> str:
    """The receipt as a self-contained HTML page (inline CSS, so it also works as an e-mail;
    served over HTTP with :data:`HTML_CSP`); ``notice`` paragraphs are shown above it (a
    revision e-mail says what changed there). ``contest_url`` None: no contest links."""
    return _env.get_template("receipt.html").render(
        doc=doc, issued=_issued(doc), review_note=UNDER_REVIEW, notice=tuple(notice),
        css=Markup(_CSS), contest=contest_url is not None, tax=doc.tax, percent=percent,
        contest_link=lambda pid: contest_link(doc, pid, contest_url or DEFAULT_CONTEST_URL),
    )


def render_text(doc: ReceiptDoc, *, contest_url: str | None = DEFAULT_CONTEST_URL,
                notice: Sequence[str] = ()) -> str:
    """The receipt as plain text: the alternative part of the e-mail, for clients without HTML;
    ``notice`` lines come first. ``contest_url`` None: no contest link."""
    out = [*notice, *([""] if notice else []), doc.store_name, f"Receipt {doc.receipt_id}",
           f"Visit: {_issued(doc)}", ""]
    if doc.under_review:
        out[-1:] = [UNDER_REVIEW, ""]
    tax = bool(doc.tax)
    for ln in doc.lines:
        out.append(f"{ln.quantity} x {ln.name} @ {doc.fmt(ln.unit_price)} "
                   f"= {doc.fmt(doc.line_total(ln))}"
                   + (f" (tax {percent(ln.tax_rate)})" if tax and ln.tax_rate is not None
                      else ""))
    if not doc.lines:
        out.append("Nothing was taken: you have not been charged.")
    out += ["", f"Total: {doc.fmt(doc.total)} {doc.currency}", *tax_text(doc)]
    if contest_url is not None:
        out.append(f"Contest a line: {contest_link(doc, None, contest_url)}")
    out.append("")
    return "\n".join(out)


def tax_text(doc: ReceiptDoc) -> list[str]:
    """The tax lines under a receipt's total, in plain text (also what the PDF prints)."""
    if not doc.tax:
        return ["No tax is itemised on this receipt."]
    return ["Prices include tax:", *(
        f"  {t.tax_class} {percent(t.rate)}: net {doc.fmt(t.net)}, tax {doc.fmt(t.tax)}, "
        f"gross {doc.fmt(t.gross)}" for t in doc.tax)]


#: Typographic characters outside Latin-1 that have a faithful ASCII spelling.
_PLAIN = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                        "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u20ac": "EUR",
                        "\u2122": "(TM)", "\u00a0": " "})


def _latin1(text: str) -> str:
    """``text`` in the PDF core fonts' Latin-1: accents kept where Latin-1 has them, others
    decomposed to their base letter, anything else replaced by '?' (never an exception)."""
    out = []
    for ch in text.translate(_PLAIN):
        try:
            ch.encode("latin-1")
            out.append(ch)
        except UnicodeEncodeError:
            base = unicodedata.normalize("NFKD", ch).encode("latin-1", "ignore").decode("latin-1")
            out.append(base or "?")
    return "".join(out)


def _as_is(text: str) -> str:
    return text


def render_pdf(doc: ReceiptDoc, *, font_path: str | Path | None = None) -> bytes:
    """The receipt as a one-or-more page PDF.

    With ``font_path`` (a Unicode TrueType font) every name prints as is; without it the
    built-in Helvetica is used and characters outside Latin-1 are approximated, so that a
    product name never stops a receipt from being issued.
    """
    pdf = FPDF(format="A4")
    pdf.set_title(f"Receipt {doc.receipt_id}")
    pdf.set_author(doc.store_name)
    pdf.set_creation_date(doc.issued_at)  # same document bytes for the same receipt
    if font_path is not None:
        pdf.add_font("receipt", fname=str(font_path))
        pdf.add_font("receipt", style="B", fname=str(font_path))
        family, clean = "receipt", _as_is
    else:
        family, clean = "helvetica", _latin1
    pdf.add_page()
    w = pdf.epw
    pdf.set_font(family, style="B", size=16)
    pdf.cell(w, 10, clean(doc.store_name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(family, size=10)
    pdf.cell(w, 6, clean(f"Receipt {doc.receipt_id}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.cell(w, 6, clean(f"Visit: {_issued(doc)}"), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if doc.under_review:
        pdf.set_font(family, style="B", size=10)
        pdf.multi_cell(w, 6, clean(UNDER_REVIEW), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(family, size=10)
    pdf.ln(4)
    # a table wraps long product names and breaks pages, repeating the heading row
    taxed = bool(doc.tax)  # a Tax column with each line's rate
    with pdf.table(col_widths=(52, 10, 19, 19, *((12,) if taxed else ())),
                   text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT", *(("RIGHT",) if taxed else ())),
                   borders_layout="HORIZONTAL_LINES", line_height=6) as table:
        table.row(["Product", "Qty", "Unit price", "Amount", *(["Tax"] if taxed else [])])
        for ln in doc.lines:
            rate = [percent(ln.tax_rate)] if taxed and ln.tax_rate is not None else []
            table.row([clean(ln.name), str(ln.quantity), doc.fmt(ln.unit_price),
                       doc.fmt(doc.line_total(ln)), *rate])
    if not doc.lines:
        pdf.cell(w, 7, "Nothing was taken: you have not been charged.",
                 new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    pdf.set_font(family, style="B", size=11)
    pdf.cell(w * 0.6, 8, f"Total ({doc.currency})")
    pdf.cell(w * 0.4, 8, f"{doc.fmt(doc.total)} {doc.currency}", align=Align.R,
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    if doc.tax:
        pdf.ln(2)
        pdf.set_font(family, style="B", size=10)
        pdf.cell(w, 6, "Tax included in the prices", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(family, size=10)
        with pdf.table(col_widths=(40, 15, 15, 15, 15),
                       text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
                       borders_layout="HORIZONTAL_LINES", line_height=6) as table:
            table.row(["Tax class", "Rate", "Net", "Tax", "Gross"])
            for t in doc.tax:
                table.row([clean(t.tax_class), percent(t.rate), doc.fmt(t.net),
                           doc.fmt(t.tax), doc.fmt(t.gross)])
    pdf.set_font(family, size=8)
    pdf.cell(w, 5, "Prices include tax." if doc.tax else "No tax is itemised on this receipt.",
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())
