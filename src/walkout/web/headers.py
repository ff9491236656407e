"""Security headers on every response of the service: its pages must not be framed (an
operator's signed-in dashboard in someone else's frame is one click from a refund), and must
run no script but their own files.

The pages hold no inline script or style (the code under ``static/`` sets styles through the
CSSOM, which a policy does not restrict), so the policy is strict. A response that sets its
own ``Content-Security-Policy`` keeps it (the receipt page, with its inline style allowed by
hash). Pure ASGI rather than ``BaseHTTPMiddleware``, so the event streams are passed through
untouched.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: what the pages need: their own scripts, styles and API (fetch and the event streams), the
#: QR code's SVG inlined by script, ``data:`` images (the favicon), and ``blob:`` media (a
#: review case's evidence clips, fetched with the operator's token and played from memory)
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
            "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

HEADERS = {
    "content-security-policy": PAGE_CSP,
    "x-frame-options": "DENY",  # frame-ancestors for browsers that predate it
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


class SecurityHeaders:
    """Adds :data:`HEADERS` to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
