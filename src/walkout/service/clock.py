"""Clocks: the service asks one for the time instead of calling ``datetime.now`` itself, so
code rotation and expiry are testable by moving a real clock forward rather than sleeping."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC now."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (simulations, replays, tests)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


def aware(dt: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone columns; they were stored as UTC."""
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
