"""Visits add up what operators wrote off of their balance.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24

A review revision can raise a receipt after its balance was settled. It then owes the new
difference, and ``balance_owed`` holds that (open again), so the amount written off before
needs a column of its own: ``visits.balance_written_off``, the sum of every write-off, which a
later revision does not ask for again. Rows written off before this revision get their
balance as it stood.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

MONEY = sa.Numeric(precision=14, scale=4, asdecimal=True)


def upgrade() -> None:
    op.add_column('visits', sa.Column('balance_written_off', MONEY, nullable=True))
    op.execute("UPDATE visits SET balance_written_off = balance_owed "
               "WHERE balance_settlement = 'written_off'")


def downgrade() -> None:
    op.drop_column('visits', 'balance_written_off')
