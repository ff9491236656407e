"""Receipt e-mails per revision: a receipt revised after a review verdict is e-mailed again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

``receipt_mails`` gets ``revision`` (0: the original e-mail, which every existing row is) and
``changes`` (what a revision changed, as JSON, so a retried send is the same e-mail); the
unique key becomes (receipt_id, revision). Nothing references ``receipt_mails``, so SQLite's
batch mode may rebuild it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('receipt_mails', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revision', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('changes', sa.Text(), nullable=True))
        batch_op.drop_constraint(op.f('uq_receipt_mails_receipt_id'), type_='unique')
        batch_op.create_unique_constraint('uq_receipt_mails_receipt_revision',
                                          ['receipt_id', 'revision'])


def downgrade() -> None:
    # one e-mail per receipt again: the revision e-mails' records go
    op.execute("DELETE FROM receipt_mails WHERE revision <> 0")
    with op.batch_alter_table('receipt_mails', schema=None) as batch_op:
        batch_op.drop_constraint('uq_receipt_mails_receipt_revision', type_='unique')
        batch_op.create_unique_constraint(op.f('uq_receipt_mails_receipt_id'), ['receipt_id'])
        batch_op.drop_column('changes')
        batch_op.drop_column('revision')
