"""Staff acknowledge payment events; chargebacks keep the provider's fee.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-09

The dashboard listed every payment event that needed staff attention for days, with no way to
say one was handled, so the list never emptied and a new event drowned among old ones.
``payment_webhook_events`` gets who acknowledged an event (``acknowledged_by``, the operator's
account id), when and an optional note; ``POST /v1/ops/payment-events/{id}/acknowledge``
writes them. ``chargebacks`` gets ``fee`` and ``fee_currency``: what the provider charged the
store for the chargeback, net of any fee it returned (Stripe's dispute balance transactions),
in its balance's currency; rows from before this revision have none (null: not reported).
Nothing references either table, so SQLite's batch mode may rebuild them to drop the columns.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

MONEY = sa.Numeric(precision=14, scale=4, asdecimal=True)


def upgrade() -> None:
    with op.batch_alter_table('payment_webhook_events') as b:
        b.add_column(sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column('acknowledged_by', sa.String(length=32), nullable=True))
        b.add_column(sa.Column('acknowledged_note', sa.String(length=500), nullable=True))
    with op.batch_alter_table('chargebacks') as b:
        b.add_column(sa.Column('fee', MONEY, nullable=True))
        b.add_column(sa.Column('fee_currency', sa.String(length=3), nullable=True))


def downgrade() -> None:
    # the events and chargebacks stay; only the acknowledgements and fees go
    with op.batch_alter_table('chargebacks') as b:
        b.drop_column('fee_currency')
        b.drop_column('fee')
    with op.batch_alter_table('payment_webhook_events') as b:
        b.drop_column('acknowledged_note')
        b.drop_column('acknowledged_by')
        b.drop_column('acknowledged_at')
