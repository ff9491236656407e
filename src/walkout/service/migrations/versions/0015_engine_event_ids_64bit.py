"""The event log's row ids are 64-bit on PostgreSQL.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-12

``engine_events.id`` was a 32-bit ``integer`` (``serial``) on PostgreSQL: a store writing a few
hundred rows a minute reaches 2,147,483,647 in some years, and then every insert of the engine
fails, retention notwithstanding (purged ids are not reused). It becomes ``bigint``, with its
sequence and the acknowledgements that point at it (``alert_acks.event_id``). SQLite's integer
primary key is the 64-bit rowid already: nothing to do there. The downgrade narrows them back
(it fails, rightly, once an id above 2^31 - 1 exists).
"""

from __future__ import annotations

from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def _widen(kind: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE alert_acks ALTER COLUMN event_id TYPE {kind}")
    op.execute(f"ALTER TABLE engine_events ALTER COLUMN id TYPE {kind}")
    op.execute(f"ALTER SEQUENCE engine_events_id_seq AS {kind}")


def upgrade() -> None:
    _widen("bigint")


def downgrade() -> None:
    _widen("integer")
