"""Retention: what the store saw of people is purged after a while; what it sold is kept.

The engine event log (gate events, shelf events, the engine's decisions and review-case
evidence: hand traces near the plates, scores) is what links a body in the store to a moment
and a place, so it goes after ``days`` (30 by default, ``retention_days`` in settings).
Entry codes go too. Receipts, their lines, cart lines, charges and the money ledger stay:
bookkeeping law wants them, and they say what was bought, not how a person moved.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from walkout.service.models import EngineEvent, EntryCode


def purge(session: Session, now: datetime, days: int = 30) -> dict[str, int]:
    """Delete tracks/evidence/event-log rows recorded before ``now - days``; returns the
    number of rows deleted per table. The caller owns the transaction."""
    if days < 1:
        raise ValueError(f"retention must be at least 1 day, got {days}")
    cutoff = now - timedelta(days=days)
    events = session.execute(delete(EngineEvent).where(EngineEvent.recorded_at < cutoff))
    codes = session.execute(delete(EntryCode).where(EntryCode.expires_at < cutoff))
    return {"engine_events": int(events.rowcount or 0), "entry_codes": int(codes.rowcount or 0)}
