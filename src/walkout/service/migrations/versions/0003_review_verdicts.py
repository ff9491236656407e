"""Review verdicts: operators decide review cases in the dashboard, the engine worker applies
them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'review_verdicts',
        sa.Column('case_id', sa.String(length=64), nullable=False),
        sa.Column('shares', sa.Text(), nullable=False),
        sa.Column('decided_by', sa.String(length=32), nullable=False),
        sa.Column('note', sa.String(length=1000), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('case_id', name=op.f('pk_review_verdicts')),
    )


def downgrade() -> None:
    op.drop_table('review_verdicts')
