"""A live sensor stream survives a restart: its chunks journaled, the engine snapshotted.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24

A live source (the store's sensor network over MQTT) cannot be read again after a crash, so
each restart used to start a new stream: the engine forgot everybody inside, their visits were
left open and what they took afterwards went to nobody. ``stream_chunks`` journals each chunk
the engine steps on, before the step; ``engine_snapshots`` keeps the engine's whole state every
few minutes (one row per stream). A restart loads the snapshot and replays the journal after
it (``walkout.service.live_state``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'stream_chunks',
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.Column('chunk', sa.Integer(), nullable=False),
        sa.Column('t', sa.Float(), nullable=False),
        sa.Column('payload', sa.LargeBinary(), nullable=False),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('source', 'chunk', name=op.f('pk_stream_chunks')),
    )
    op.create_table(
        'engine_snapshots',
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.Column('chunk', sa.Integer(), nullable=False),
        sa.Column('t', sa.Float(), nullable=False),
        sa.Column('code', sa.String(length=64), nullable=False),
        sa.Column('payload', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('source', name=op.f('pk_engine_snapshots')),
    )


def downgrade() -> None:
    op.drop_table('engine_snapshots')
    op.drop_table('stream_chunks')
