"""Review verdicts remember where the engine applied them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24

A replay after a restart applied every verdict as soon as its case reopened, often chunks
before the first run had (the shopper's exit in between), so the replayed engine issued other
receipt revisions and moved the plates at another moment than the first run. The worker now
stamps each verdict with its source and chunk and a replay applies it there
(``walkout.service.live.apply_verdicts``). Rows applied before this revision keep no stamp and
are applied as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('review_verdicts') as b:
        b.add_column(sa.Column('source', sa.String(length=64), nullable=True))
        b.add_column(sa.Column('applied_chunk', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('review_verdicts') as b:
        b.drop_column('applied_chunk')
        b.drop_column('source')
