"""Tax on receipts: each receipt line keeps the tax class and rate its price included.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

``receipt_lines`` gets ``tax_class`` and ``tax_rate`` (a fraction), snapshotted when the line
is issued as its name and unit price are, so that changing a store's tax rates never rewrites
a receipt already issued. Both are nullable: receipts issued before this revision (and those of
stores without tax rates) itemise no tax, as they said. Nothing references ``receipt_lines``,
so SQLite's batch mode may rebuild it to drop the columns again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('receipt_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tax_class', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('tax_rate', sa.Numeric(precision=7, scale=6),
                                      nullable=True))


def downgrade() -> None:
    # the receipts' lines stay; only what they said about tax goes
    with op.batch_alter_table('receipt_lines', schema=None) as batch_op:
        batch_op.drop_column('tax_rate')
        batch_op.drop_column('tax_class')
