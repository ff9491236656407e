"""Charges record when the provider confirmed them.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-11

A charge's row is written when it is first tried (``created_at``) and confirmed later when
the provider was away meanwhile: a capture tried at 21:00 and confirmed by a retry the next
morning is the next day's money in the provider's statement. ``charges`` gets
``settled_at``, the moment walkout recorded the provider's confirmation; the sales figures
count a charge on that day. Rows from before this revision have none: they count on the day
they were created, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('charges', sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('charges', 'settled_at')
