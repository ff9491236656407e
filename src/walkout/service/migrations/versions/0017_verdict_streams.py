"""A review verdict is keyed by its case's stream and id.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-14

A case's id is ``<plate>-<stream time>``, and recordings and simulations start their clocks at
0 each time they are served, so two streams served into one database can each open a case of
one id. With ``case_id`` alone as the key the second could not be decided, and a verdict was
applied by whichever stream's engine had a case of that id open first. The key becomes
(``source``, ``case_id``), ``source`` being the case's stream, recorded by the API with the
verdict (before: the stream that applied it, stamped then).

Rows without a stream get it from the event log: the stream of the case's rows (its evidence
first, else its summary, decision or shelf event); where several streams have a case of that
id, the newest case's (the one the API showed and checked the verdict against). A verdict
whose case left the event log gets the one stream the database ever ran, if it ran one, else
``''``: unknown, applied by no engine. The downgrade refuses while two streams' verdicts share
an id (one would have to be dropped), and a verdict not applied yet loses its stream again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

#: the event-log rows a case id (a shelf event id) is the ``ref`` of, best witness first
_KINDS = ("evidence", "cases", "decisions", "shelf")


def _stream_of(c: sa.Connection, case_id: str, only: str | None) -> str:
    """The stream of the case ``case_id`` (see the module docstring)."""
    rows = c.execute(sa.text("SELECT source, t, id FROM engine_events WHERE ref = :r"),
                     {"r": case_id}).all()
    ranked = sorted(((_KINDS.index(kind), -t, -i, stream) for src, t, i in rows
                     for stream, _, kind in [src.rpartition("/")] if kind in _KINDS))
    if ranked:
        return str(ranked[0][3])
    return only or ""


def upgrade() -> None:
    c = op.get_bind()
    streams = c.execute(sa.text("SELECT source FROM runner_checkpoints")).scalars().all()
    only = streams[0] if len(streams) == 1 else None
    for case_id in c.execute(sa.text(
            "SELECT case_id FROM review_verdicts WHERE source IS NULL")).scalars().all():
        c.execute(sa.text("UPDATE review_verdicts SET source = :s WHERE case_id = :c"),
                  {"s": _stream_of(c, case_id, only), "c": case_id})
    with op.batch_alter_table('review_verdicts') as b:
        b.alter_column('source', existing_type=sa.String(length=64), nullable=False)
        b.drop_constraint('pk_review_verdicts', type_='primary')
        b.create_primary_key('pk_review_verdicts', ['source', 'case_id'])


def downgrade() -> None:
    c = op.get_bind()
    twice = c.execute(sa.text(
        "SELECT case_id FROM review_verdicts GROUP BY case_id HAVING count(*) > 1 "
        "ORDER BY case_id")).scalars().all()
    if twice:
        raise RuntimeError(
            "review verdicts of more than one stream share a case id, which revision 0016 "
            f"keys alone: {', '.join(twice)}; delete the ones not to keep first")
    with op.batch_alter_table('review_verdicts') as b:
        b.drop_constraint('pk_review_verdicts', type_='primary')
        b.create_primary_key('pk_review_verdicts', ['case_id'])
        b.alter_column('source', existing_type=sa.String(length=64), nullable=True)
    # 0016's worker stamps the stream when it applies a verdict: NULL until then
    c.execute(sa.text("UPDATE review_verdicts SET source = NULL "
                      "WHERE source = '' OR applied_chunk IS NULL"))
