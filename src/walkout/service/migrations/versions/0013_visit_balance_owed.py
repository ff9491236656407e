"""Visits keep the balance a cart above the hold left owed.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-10

The exit captures at most the pre-authorisation: a cart above it was captured up to the hold
and the rest was recorded nowhere. ``visits`` gets ``balance_owed`` (what the receipt came to
above the capture) and how it was settled: ``balance_settled_at``, ``balance_settlement``
(``charged``: a later charge of the saved payment method; ``written_off``: an operator),
``balance_settled_by`` (the operator's account id) and ``balance_note``. Rows from before
this revision owe nothing recorded (null). ``visits`` is referenced by most tables, so the
columns are added and dropped in place (ALTER TABLE on both databases; SQLite ≥ 3.35 drops
a column without rebuilding the table).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

MONEY = sa.Numeric(precision=14, scale=4, asdecimal=True)
COLUMNS = ('balance_owed', 'balance_settled_at', 'balance_settlement', 'balance_settled_by',
           'balance_note')


def upgrade() -> None:
    op.add_column('visits', sa.Column('balance_owed', MONEY, nullable=True))
    op.add_column('visits', sa.Column('balance_settled_at', sa.DateTime(timezone=True),
                                      nullable=True))
    op.add_column('visits', sa.Column('balance_settlement', sa.String(length=16), nullable=True))
    op.add_column('visits', sa.Column('balance_settled_by', sa.String(length=32), nullable=True))
    op.add_column('visits', sa.Column('balance_note', sa.String(length=500), nullable=True))


def downgrade() -> None:
    # the visits stay; only what they owed goes
    for name in reversed(COLUMNS):
        op.drop_column('visits', name)
