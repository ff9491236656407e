"""Stripe webhooks: the events received, once each, and bank chargebacks.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

``payment_webhook_events`` records every webhook event the payment provider sent, with what it
did (``outcome``, ``detail``), in the transaction of its effect: its primary key, the event id,
makes a redelivery a no-op across restarts. ``chargebacks`` records the bank chargebacks
(Stripe disputes) of visits' payments, so walkout never refunds on top of one and operators
see them (``GET /v1/ops/chargebacks``). Two indexes let an event find its visit by the hold
(``visits.auth_id``) or the capture (``charges.provider_ref``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

MONEY = sa.Numeric(precision=14, scale=4, asdecimal=True)


def upgrade() -> None:
    op.create_table(
        'payment_webhook_events',
        sa.Column('event_id', sa.String(length=255), nullable=False),
        sa.Column('provider', sa.String(length=32), nullable=False),
        sa.Column('type', sa.String(length=100), nullable=False),
        sa.Column('object_id', sa.String(length=255), nullable=True),
        sa.Column('visit_id', sa.String(length=32), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('detail', sa.String(length=500), nullable=False),
        sa.CheckConstraint("outcome IN ('applied', 'attention', 'ignored')",
                           name=op.f('ck_payment_webhook_events_outcome')),
        sa.ForeignKeyConstraint(['visit_id'], ['visits.id'],
                                name=op.f('fk_payment_webhook_events_visit_id_visits')),
        sa.PrimaryKeyConstraint('event_id', name=op.f('pk_payment_webhook_events')),
    )
    op.create_index(op.f('ix_payment_webhook_events_object_id'), 'payment_webhook_events',
                    ['object_id'], unique=False)
    op.create_index(op.f('ix_payment_webhook_events_visit_id'), 'payment_webhook_events',
                    ['visit_id'], unique=False)
    op.create_table(
        'chargebacks',
        sa.Column('id', sa.String(length=255), nullable=False),
        sa.Column('provider', sa.String(length=32), nullable=False),
        sa.Column('visit_id', sa.String(length=32), nullable=False),
        sa.Column('charge_ref', sa.String(length=255), nullable=False),
        sa.Column('amount', MONEY, nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('reason', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('evidence_due_by', sa.DateTime(timezone=True), nullable=True),
        sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('visit_state_before', sa.String(length=16), nullable=True),
        sa.Column('as_of', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['visit_id'], ['visits.id'],
                                name=op.f('fk_chargebacks_visit_id_visits')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_chargebacks')),
    )
    op.create_index(op.f('ix_chargebacks_visit_id'), 'chargebacks', ['visit_id'], unique=False)
    # a provider's event finds its visit by the hold (pi_…) or the capture (ch_…)
    op.create_index('ix_visits_auth_id', 'visits', ['auth_id'], unique=False)
    op.create_index('ix_charges_provider_ref', 'charges', ['provider_ref'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_charges_provider_ref', table_name='charges')
    op.drop_index('ix_visits_auth_id', table_name='visits')
    op.drop_index(op.f('ix_chargebacks_visit_id'), table_name='chargebacks')
    op.drop_table('chargebacks')
    op.drop_index(op.f('ix_payment_webhook_events_visit_id'),
                  table_name='payment_webhook_events')
    op.drop_index(op.f('ix_payment_webhook_events_object_id'),
                  table_name='payment_webhook_events')
    op.drop_table('payment_webhook_events')
