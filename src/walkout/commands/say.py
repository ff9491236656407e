"""The CLI's messages on stderr, in one voice: a coloured label, then the message as plain
text. Messages carry paths, URLs, store names and exception texts; printed as rich markup,
any ``[...]`` in them was taken for a tag and vanished (``pip install 'walkout[perception]'``
was shown as ``pip install 'walkout'``) or broke the print."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

err = Console(stderr=True, soft_wrap=True, highlight=False)  # errors stay greppable


def _label(label: str, style: str, msg: str) -> None:
    err.print(Text.assemble((label, style), " ", msg))


def error(msg: str) -> None:
    """``error: msg`` (the caller exits, usually with 2)."""
    _label("error:", "red", msg)


def warning(msg: str) -> None:
    _label("warning:", "yellow", msg)


def note(msg: str) -> None:
    _label("note:", "yellow", msg)


def mark(ok: bool, msg: str) -> None:
    """``ok msg`` or ``FAIL msg``: one line of a check."""
    _label("ok", "green", msg) if ok else _label("FAIL", "red", msg)


def dim(msg: str) -> None:
    """Progress and context, dimmed."""
    err.print(Text(msg, style="dim"))


def say(msg: str, style: str = "") -> None:
    """A plain line (a summary of what was written)."""
    err.print(Text(msg, style=style))
