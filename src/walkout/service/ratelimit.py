"""Sliding-window rate limits (entry codes, disputes), per key, in memory.

Per process on purpose: a store runs one service process, and a limit that resets on restart
costs nothing here (codes are single-use and short-lived anyway).
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque

from walkout.service.clock import Clock
from walkout.service.errors import ServiceError


class RateLimiter:
    def __init__(self, clock: Clock, limit: int, window_s: float, what: str) -> None:
        self._clock, self.limit, self.window_s, self.what = clock, limit, window_s, what
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def hit(self, key: str) -> None:
        """Count one request of ``key``; raise 429 once it is over the limit."""
        now = self._clock.now().timestamp()
        with self._lock:
            q = self._hits[key]
            while q and q[0] <= now - self.window_s:
                q.popleft()
            if len(q) >= self.limit:
                wait = q[0] + self.window_s - now
                raise ServiceError(429, "rate_limited",
                                   f"too many {self.what}: at most {self.limit} per "
                                   f"{self.window_s:.0f} s; retry in {wait:.0f} s")
            q.append(now)
