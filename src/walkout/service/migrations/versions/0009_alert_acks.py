"""Operators acknowledge engine alerts.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26

The alerts are an append-only part of the event log, so the dashboard could not tell the
alerts someone handled from the ones nobody looked at. ``alert_acks`` records who acknowledged
an alert (its event-log row id), when, and an optional note; ``POST /v1/ops/alerts/{id}/ack``
writes it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'alert_acks',
        sa.Column('event_id', sa.Integer(), nullable=False),
        sa.Column('acked_by', sa.String(length=32), nullable=False),
        sa.Column('note', sa.String(length=1000), nullable=True),
        sa.Column('acked_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['event_id'], ['engine_events.id'], ondelete='CASCADE',
                                name=op.f('fk_alert_acks_event_id_engine_events')),
        sa.PrimaryKeyConstraint('event_id', name=op.f('pk_alert_acks')),
    )


def downgrade() -> None:
    op.drop_table('alert_acks')
