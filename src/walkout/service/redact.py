"""Keep personal and card data out of logs, whatever a log call passes.

A log record is rendered and scrubbed when it is created (a record factory), so no handler,
formatter or third-party logger (uvicorn's access log included) ever sees the raw text.

URLs arrive percent-encoded (an access log writes ``?q=ann%40example.org``), so a run of text
holding escapes is also read decoded: if the decoded form has anything to mask, the run is
logged decoded and masked; otherwise it is left exactly as it was.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote, unquote

#: an address's local part: every character the sign-up accepts (RFC 5322 atext, so
#: ``mary.o'brien``, ``ann#1``) and any letter (``jürgen``), else the masking began after the
#: first one it did not know and logged the rest (``mary.o'[email]``). URL delimiters
#: (``/ ? = &``) stay out so an access log keeps its path and query names; an apostrophe
#: counts only between two such characters, so a quoting ``'ann@…'`` keeps its quotes
_LOCAL = r"[\w.%+!#$*^`{|}~-]+(?:'[\w.%+!#$*^`{|}~-]+)*"
_EMAIL = re.compile(_LOCAL + r"@[\w.-]+\.[^\W\d_]{2,}")
_PAN = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")  # 13-19 digits, maybe grouped
_SECRETS = re.compile(  # bearer tokens, entry codes, provider tokens (a card token is an identity)
    r"\b(?:wo_[A-Za-z0-9_-]{16,}|wo1\.[A-Za-z0-9._-]+|(?:tok|pm|cus)_[A-Za-z0-9_]+"
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+|whsec_[A-Za-z0-9+/=_-]+)"  # Stripe's secrets
)
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
_RUN = re.compile(r"[^\s\"'<>]+")  # a run of URL-ish text (linear: no backtracking)
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def redact(text: str) -> str:
    """``text`` with e-mail addresses, card numbers, tokens and entry codes masked, also where
    they are percent-encoded."""
    if "%" in text:
        text = _RUN.sub(_decoded_run, text)
    return _mask(text)


def _decoded_run(m: re.Match[str]) -> str:
    raw = plain = m.group(0)
    if not _ESCAPE.search(raw):
        return raw
    for _ in range(3):  # %2540 is %40 encoded once more
        decoded = unquote(plain)
        if decoded == plain:
            break
        plain = decoded
    masked = _mask(plain)
    if masked == plain:
        return raw
    return _CONTROL.sub(lambda c: quote(c.group(0)), masked)  # no decoded line breaks


def _mask(text: str) -> str:
    text = _BEARER.sub(r"\1[token]", text)
    text = _SECRETS.sub("[secret]", text)
    text = _EMAIL.sub("[email]", text)
    return _PAN.sub("[card]", text)


class RedactingFilter(logging.Filter):
    """A filter for handlers that do not go through :func:`install` (kept for explicit use)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub(record)
        return True


def _scrub(record: logging.LogRecord) -> None:
    """Scrub the message and each argument in place; argument shapes are kept, because some
    formatters (uvicorn's access log) read ``record.args`` themselves."""
    args = record.args
    values = args.values() if isinstance(args, dict) else args or ()
    if any(isinstance(a, int) and not isinstance(a, bool) and redact(str(a)) != str(a)
           for a in values):
        # a number that reads like a card number: masking it in place would break a %d in the
        # message, so the record is rendered here and the text masked as a whole
        record.msg, record.args = redact(record.getMessage()), None
    else:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(args, tuple):
            record.args = tuple(_arg(a) for a in args)
        elif isinstance(args, dict):
            record.args = {k: _arg(v) for k, v in args.items()}
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None


def _arg(a: object) -> object:
    if isinstance(a, str):
        return redact(a)
    if isinstance(a, int | float) or a is None:
        return a  # numbers keep their type for %d / %.1f (a card-like int is handled above)
    return redact(str(a))


_installed = False


def install() -> None:
    """Scrub every log record of the process from now on (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _scrub(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
