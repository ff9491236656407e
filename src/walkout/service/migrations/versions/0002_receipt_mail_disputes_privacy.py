"""Receipt e-mails sent once, dispute decisions and evidence refs, kiosk role, erasure.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

The kiosk role loosens the CHECK on ``accounts.role``. PostgreSQL alters the constraint in
place. SQLite cannot, and Alembic's batch mode would rebuild ``accounts`` — dropping a table
that other tables reference, which the enforced foreign keys refuse once there is data. So on
SQLite the stored table definition is edited, the documented way for changes that leave the
on-disk rows valid (https://sqlite.org/lang_altertable.html, "other kinds of changes").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

OLD_ROLES = "role IN ('shopper', 'operator', 'admin')"
NEW_ROLES = "role IN ('shopper', 'operator', 'admin', 'kiosk')"


def _roles(old: str, new: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_accounts_role"), "accounts", type_="check")
        op.create_check_constraint(op.f("ck_accounts_role"), "accounts", new)
        return
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'accounts'").scalar_one()
    if old not in sql:
        raise RuntimeError(f"accounts table has no CHECK ({old}): {sql}")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND "
                         "name = 'accounts'", (sql.replace(old, new),))
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    _roles(OLD_ROLES, NEW_ROLES)
    op.add_column('accounts', sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('disputes', sa.Column('decided_by', sa.String(length=32), nullable=True))
    op.add_column('engine_events', sa.Column('ref', sa.String(length=64), nullable=True))
    op.create_index(op.f('ix_engine_events_ref'), 'engine_events', ['ref'], unique=False)
    op.add_column('disputes', sa.Column('note', sa.String(length=1000), nullable=True))
    op.create_table(
        'receipt_mails',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('receipt_id', sa.String(length=32), nullable=False),
        sa.Column('message_id', sa.String(length=255), nullable=False),
        sa.Column('recipient', sa.String(length=320), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('error', sa.String(length=300), nullable=True),
        sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('sending', 'sent', 'failed')",
                           name=op.f('ck_receipt_mails_state')),
        sa.ForeignKeyConstraint(['receipt_id'], ['receipts.id'],
                                name=op.f('fk_receipt_mails_receipt_id_receipts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_receipt_mails')),
        sa.UniqueConstraint('message_id', name=op.f('uq_receipt_mails_message_id')),
        sa.UniqueConstraint('receipt_id', name=op.f('uq_receipt_mails_receipt_id')),
    )


def downgrade() -> None:
    op.drop_table('receipt_mails')
    # plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): no table rebuild, see above
    op.drop_column('disputes', 'note')
    op.drop_column('disputes', 'decided_by')
    op.drop_index(op.f('ix_engine_events_ref'), table_name='engine_events')
    op.drop_column('engine_events', 'ref')
    op.drop_column('accounts', 'erased_at')
    # kiosk devices cannot exist under the old constraint: their tokens and accounts go
    op.execute("DELETE FROM api_tokens WHERE role = 'kiosk'")
    op.execute("DELETE FROM accounts WHERE role = 'kiosk'")
    _roles(NEW_ROLES, OLD_ROLES)
