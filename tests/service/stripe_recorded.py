"""Stripe's HTTP exchanges, recorded, served to the official ``stripe`` library (there is no
network here), and Stripe-signed webhook events.

The recorded client replaces only the HTTP transport: the library still builds every request
(form encoding, headers, idempotency keys) and parses every response into its objects and
errors. A request that matches no recorded exchange fails the test, so the fixtures pin what
is sent: amounts in minor units, ``capture_method=manual``, the idempotency keys. The service
derives its keys from random visit and dispute ids, so an exchange may give an
``idempotency_key_pattern`` (a regular expression the key must match in full) instead of the
key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

FIXTURES = Path(__file__).parent / "fixtures" / "stripe"


class RecordedStripe(stripe.HTTPClient):
    """Serves recorded Stripe responses keyed by method + path, matched on the exact form
    parameters and idempotency key sent; keeps every request for inspection. ``down``: the
    network is down (what the library's own clients raise on a refused connection)."""

    name = "recorded"

    def __init__(self, *names: str) -> None:
        super().__init__()
        self.exchanges: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for name in names:
            for ex in json.loads((FIXTURES / f"{name}.json").read_text())["interactions"]:
                key = (ex["request"]["method"], ex["request"]["path"])
                self.exchanges.setdefault(key, []).append(ex)
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self.down = False

    def request(self, method: str, url: str, headers: Mapping[str, str] | None,
                post_data: Any = None, *, _usage: list[str] | None = None
                ) -> tuple[str, int, Mapping[str, str]]:
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.netloc == "api.stripe.com", url
        hdrs = dict(headers or {})
        body = post_data.decode() if isinstance(post_data, bytes) else post_data or ""
        params = dict(parse_qsl(body, keep_blank_values=True))
        self.requests.append((method, parts.path, hdrs, params))
        assert hdrs.get("Idempotency-Key"), f"{method} {parts.path} sent no idempotency key"
        if self.down:
            raise stripe.APIConnectionError("Unexpected error communicating with Stripe.")
        candidates = self.exchanges.get((method, parts.path), [])
        for ex in candidates:
            want = ex["request"]
            if want["params"] == params and _key_matches(want, hdrs["Idempotency-Key"]):
                resp = ex["response"]
                return json.dumps(resp["body"]), resp["status"], resp["headers"]
        raise AssertionError(
            f"unrecorded Stripe request {method} {parts.path} key={hdrs['Idempotency-Key']!r} "
            f"params={params}; recorded: {[c['request'] for c in candidates]}")

    def request_stream(self, method: str, url: str, headers: Mapping[str, str] | None,
                       post_data: Any = None, *, _usage: list[str] | None = None
                       ) -> tuple[Any, int, Mapping[str, str]]:
        raise AssertionError("the provider never streams")

    def close(self) -> None:
        pass

    def sent(self, path: str) -> list[dict[str, str]]:
        """The parameters of every request made to ``path``, in order."""
        return [params for _, p, _, params in self.requests if p == path]


def _key_matches(want: dict[str, Any], key: str) -> bool:
    if "idempotency_key_pattern" in want:
        return re.fullmatch(want["idempotency_key_pattern"], key) is not None
    return bool(want["idempotency_key"] == key)


def sign(payload: str, secret: str, at: int | None = None) -> str:
    """Stripe-Signature as Stripe documents it: t=<unix>,v1=HMAC-SHA256(secret, "t.payload")."""
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(name: str, **changes: Any) -> dict[str, Any]:
    """The recorded event ``event_<name>.json``; ``changes`` replace its envelope's fields
    (``id``, ``created``, ``type``, ``api_version``...) or, as ``obj_<field>``, its object's."""
    ev: dict[str, Any] = json.loads((FIXTURES / f"event_{name}.json").read_text())
    for k, v in changes.items():
        if k.startswith("obj_"):
            ev["data"]["object"][k[4:]] = v
        else:
            ev[k] = v
    return ev
