"""Store modes: the operator marks the store closed for restocking (or open again).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

One row per change, appended by the API; the engine worker stamps each with the chunk of the
stream it applied it at, so that a replay after a restart applies it at the same place and the
engine's stock decisions come out the same (``walkout.service.store_mode``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'store_modes',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('closed', sa.Boolean(), nullable=False),
        sa.Column('set_by', sa.String(length=32), nullable=False),
        sa.Column('note', sa.String(length=1000), nullable=True),
        sa.Column('set_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('source', sa.String(length=64), nullable=True),
        sa.Column('applied_chunk', sa.Integer(), nullable=True),
        sa.Column('applied_t', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_store_modes')),
    )


def downgrade() -> None:
    op.drop_table('store_modes')
