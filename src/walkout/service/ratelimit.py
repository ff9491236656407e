"""Sliding-window rate limits (entry codes, disputes, kiosk look-ups), per key, in memory.

Per process on purpose: a store runs one service process, and a limit that resets on restart
costs nothing here (codes are single-use and short-lived anyway). The limiters are made once
(:class:`Limits`) and handed to every route that spends the same budget, the API's and the web
pages' alike: a second route with a limiter of its own would double the budget, and one
without would bypass it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from dataclasses import dataclass

from walkout.service.clock import Clock
from walkout.service.errors import ServiceError
from walkout.service.settings import ServiceSettings


class RateLimiter:
    """At most ``limit`` requests of a key per ``window_s``. Keys are held as digests, and a
    key with no request left in the window is forgotten (swept once a window): some keys
    are personal data (a looked-up e-mail address, a card token), which must not outlive
    retention or an erasure in the memory of a process that runs for months."""

    def __init__(self, clock: Clock, limit: int, window_s: float, what: str) -> None:
        self._clock, self.limit, self.window_s, self.what = clock, limit, window_s, what
        self._hits: dict[bytes, deque[float]] = {}
        self._next_sweep = 0.0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many keys are held (what the sweep bounds)."""
        return len(self._hits)

    def hit(self, key: str) -> None:
        """Count one request of ``key``; raise 429 once it is over the limit."""
        now = self._clock.now().timestamp()
        digest = hashlib.sha256(key.encode()).digest()
        with self._lock:
            if now >= self._next_sweep:
                self._next_sweep = now + self.window_s
                for k in [k for k, q in self._hits.items()
                          if not q or q[-1] <= now - self.window_s]:
                    del self._hits[k]
            q = self._hits.setdefault(digest, deque())
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if len(q) >= self.limit:
                wait = q[0] + self.window_s - now
                raise ServiceError(429, "rate_limited",
                                   f"too many {self.what}: at most {self.limit} per "
                                   f"{self.window_s:.0f} s; retry in {wait:.0f} s")
            q.append(now)


@dataclass(frozen=True, slots=True)
class Limits:
    """The service's shared limiters: ``entry_codes`` per account, ``disputes`` per account,
    ``lookups`` per kiosk terminal and per looked-up address or card, ``balance_payments``
    per account (a shopper paying what she owes: few tries, so that the route cannot be used
    to test stolen cards), ``card_taps`` per gate (each tap pre-authorises a card: the same
    reason, should a gate's token leak)."""

    entry_codes: RateLimiter
    disputes: RateLimiter
    lookups: RateLimiter
    balance_payments: RateLimiter
    card_taps: RateLimiter

    @classmethod
    def from_settings(cls, clock: Clock, settings: ServiceSettings) -> Limits:
        return cls(RateLimiter(clock, settings.entry_codes_per_minute, 60.0, "entry codes"),
                   RateLimiter(clock, settings.disputes_per_hour, 3600.0, "disputes"),
                   RateLimiter(clock, settings.kiosk_lookups_per_minute, 60.0, "look-ups"),
                   RateLimiter(clock, settings.balance_payments_per_hour, 3600.0,
                               "payment attempts"),
                   RateLimiter(clock, settings.card_taps_per_minute, 60.0,
                               "card taps at this gate"))
