"""Retention: what the store saw of people is purged after a while; what it sold is kept.

The engine event log (gate events, shelf events, the engine's decisions and review-case
evidence: hand traces near the plates, scores) is what links a body in the store to a moment
and a place, so it goes after ``days`` (30 by default, ``retention_days`` in settings).
Entry codes go too. Receipts, their lines, cart lines, charges and the money ledger stay:
bookkeeping law wants them, and they say what was bought, not how a person moved.

The operator's free-text note on a review verdict may describe the person on the video, so
it goes with its case's evidence (the verdict stays: it explains a receipt's revision). A live
stream's journal and engine snapshot (``walkout.service.live_state``: raw sensor chunks with
the gate's credentials, the engine's sessions) go with the stream once it stood still past the
same cut-off: its newest row is older, so nobody is inside it to continue. A live stream's
current snapshot and journal are never touched.

What a money claim still being decided rests on is kept past the cut-off (storage limitation
yields to establishing a legal claim): the event-log rows and the clips of the shelf events a
disputed receipt line was decided on, while the shopper's dispute is undecided (``open``,
``refunding``) or the bank's chargeback of the visit is (not ``won``, ``lost`` or
``warning_closed``). The first purge after the decision takes them.

The service applies the rule itself (``housekeeping``, every ``retention_check_s``), so a store
that never set up a cron job still keeps nothing past its retention; evidence clips in
``evidence_dir`` go by the same rule.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, or_, select, true, tuple_, union, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import Subquery

from walkout.service.deps import Deps
from walkout.service.disputes import streams_of
from walkout.service.live_state import _forget
from walkout.service.models import (
    CartLine,
    Chargeback,
    Dispute,
    EngineEvent,
    EngineSnapshot,
    EntryCode,
    Receipt,
    ReviewVerdict,
    StreamChunk,
)

#: a shopper's dispute still to be decided, or its refund still to be made
UNDECIDED_DISPUTES = ("open", "refunding")
#: a bank chargeback the bank has decided (``warning_closed``: an inquiry that ended)
DECIDED_CHARGEBACKS = ("won", "lost", "warning_closed")


def _held_lines() -> Subquery:
    """(visit id, shelf event id) of the cart lines an undecided money claim rests on: the
    events of a disputed line (as the dispute's case view reads them, from the visit's cart
    lines of that product) while the dispute is undecided, and every event of a visit while
    a chargeback of its payment is undecided."""
    disputed = (select(CartLine.visit_id, CartLine.event_id)
                .join(Receipt, Receipt.visit_id == CartLine.visit_id)
                .join(Dispute, (Dispute.receipt_id == Receipt.id)
                      & (Dispute.product_id == CartLine.product_id))
                .where(Dispute.state.in_(UNDECIDED_DISPUTES)))
    charged_back = (select(CartLine.visit_id, CartLine.event_id)
                    .join(Chargeback, Chargeback.visit_id == CartLine.visit_id)
                    .where(Chargeback.status.not_in(DECIDED_CHARGEBACKS)))
    return union(disputed, charged_back).subquery()


def _held_streams(s: Session) -> list[tuple[list[str], list[str] | None]]:
    """Per visit an undecided money claim rests on: its held shelf event ids, and the streams
    whose event log they are read from (:func:`~walkout.service.disputes.streams_of`: another
    stream may have events of the same ids, which are not held; None: the log has none of
    them any more)."""
    refs: dict[str, set[str]] = {}
    for visit_id, ref in s.execute(select(_held_lines())):
        refs.setdefault(visit_id, set()).add(ref)
    return [(sorted(ids), streams_of(s, visit_id, sorted(ids))) for visit_id, ids in refs.items()]


def held_rows(s: Session) -> set[tuple[str, str]]:
    """``(source, ref)`` of the event-log rows an undecided money claim rests on: its shelf
    events' rows in its own streams only. Matching by the event id alone kept every stream's
    rows of that id (recorded and simulated streams repeat them) past retention."""
    out: set[tuple[str, str]] = set()
    for ids, streams in _held_streams(s):
        if streams is None:
            continue
        rows = s.execute(select(EngineEvent.source, EngineEvent.ref).distinct().where(
            EngineEvent.ref.in_(ids)))
        out |= {(src, ref) for src, ref in rows if src.rpartition("/")[0] in streams}
    return out


def held_clips(s: Session) -> set[str | tuple[str, str]]:
    """The evidence clips an undecided money claim rests on, as
    :func:`~walkout.perception.evidence.purge_clips` keeps them: ``(stream, event id)`` in the
    streams the visit's events are read from; the bare id where the event log no longer says
    which stream."""
    out: set[str | tuple[str, str]] = set()
    for ids, streams in _held_streams(s):
        out |= set(ids) if streams is None else {(st, ref) for st in streams for ref in ids}
    return out

#: the engine writes a health snapshot (every plate's and camera's state, the inventory) at
#: every chunk: a state, not an event. The dashboard reads the latest; kept for 30 days they
#: were most of the event log (240 KB a chunk in a 2,000-plate store, 4 GB a day), so the
#: superseded ones go after this, the latest of each stream stays
HEALTH_KEEP = timedelta(hours=1)


def purge(session: Session, now: datetime, days: int = 30) -> dict[str, int]:
    """Delete tracks/evidence/event-log rows recorded before ``now - days`` (not those an
    undecided dispute or chargeback rests on: :func:`held_rows`), and health
    snapshots superseded for longer than :data:`HEALTH_KEEP`; blank the notes of verdicts
    whose case is no longer in the event log; forget the journal and snapshot of live streams
    that stood still since before ``now - days``. Returns the number of rows deleted or
    blanked per table (``stream_states``: streams forgotten). The caller owns the
    transaction."""
    if days < 1:
        raise ValueError(f"retention must be at least 1 day, got {days}")
    cutoff = now - timedelta(days=days)
    held = sorted(held_rows(session))
    events = session.execute(delete(EngineEvent).where(
        EngineEvent.recorded_at < cutoff,
        or_(EngineEvent.ref.is_(None),
            tuple_(EngineEvent.source, EngineEvent.ref).not_in(held) if held else true())))
    health = EngineEvent.source.like("%/health")
    latest = select(func.max(EngineEvent.id)).where(health).group_by(EngineEvent.source)
    superseded = session.execute(delete(EngineEvent).where(
        health, EngineEvent.recorded_at < now - HEALTH_KEEP, EngineEvent.id.not_in(latest)))
    codes = session.execute(delete(EntryCode).where(EntryCode.expires_at < cutoff))
    # a verdict's note goes once its case's evidence is gone from the event log: its own
    # stream's case (another stream may have a case of the same id)
    case_rows = exists().where(EngineEvent.ref == ReviewVerdict.case_id,
                               EngineEvent.source.in_([ReviewVerdict.source + "/cases",
                                                       ReviewVerdict.source + "/evidence"]))
    notes = session.execute(update(ReviewVerdict).where(ReviewVerdict.note.is_not(None),
                                                        ~case_rows).values(note=None))
    return {"engine_events": int(events.rowcount or 0) + int(superseded.rowcount or 0),
            "entry_codes": int(codes.rowcount or 0),
            "review_notes": int(notes.rowcount or 0),
            "stream_states": _purge_streams(session, cutoff)}


def _purge_streams(session: Session, cutoff: datetime) -> int:
    """Forget the journal and snapshot of every live stream whose newest row (journaled chunk
    or snapshot) was written before ``cutoff``; returns how many streams. A stream still
    running writes a chunk every few seconds and a snapshot every ``snapshot_every_s``: its
    newest row is never that old."""
    streams = set(session.scalars(select(StreamChunk.source).distinct()))
    streams |= set(session.scalars(select(EngineSnapshot.source)))
    fresh = set(session.scalars(select(StreamChunk.source).distinct().where(
        StreamChunk.recorded_at >= cutoff)))
    fresh |= set(session.scalars(select(EngineSnapshot.source).where(
        EngineSnapshot.created_at >= cutoff)))
    for source in sorted(streams - fresh):
        _forget(session, source)
    return len(streams - fresh)


def sweep(d: Deps, days: int | None = None) -> dict[str, int]:
    """One purge of everything under the retention rule (event log, entry codes, verdict
    notes, stopped streams' journals and snapshots, evidence clips), ``days`` defaulting to
    the service's ``retention_days``."""
    days = days or d.settings.retention_days
    now = d.clock.now()
    with d.sessions.begin() as s:
        # before the purge: the gate rows that tell a visit's stream (streams_of) may go in it
        held = held_clips(s)
        out = purge(s, now, days)
    if d.settings.evidence_dir is not None:
        from walkout.perception.evidence import purge_clips  # OpenCV only where clips are kept

        out["evidence_clips"] = purge_clips(d.settings.evidence_dir, now, days, held)
    return out

