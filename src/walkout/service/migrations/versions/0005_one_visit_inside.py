"""One visit inside per account, enforced by the database.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

The entry check ("this account is already inside") was a SELECT before an INSERT: on
PostgreSQL (READ COMMITTED) two scans of one account at once both passed it. A partial UNIQUE
index on ``visits(account_id)`` over the states in which a shopper is inside makes the second
insert fail whatever the isolation level. Both databases take partial indexes; nothing is
rebuilt.

Visits the old race already let in twice cannot be fixed here (each has its own hold): the
upgrade stops and names them, and they must leave (their exits) on the previous version first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

INSIDE = "state IN ('authorizing', 'open', 'checking_out')"


def upgrade() -> None:
    twice = op.get_bind().execute(sa.text(
        f"SELECT id FROM visits WHERE {INSIDE} AND account_id IN "
        f"(SELECT account_id FROM visits WHERE {INSIDE} GROUP BY account_id "
        "HAVING count(*) > 1) ORDER BY account_id, entered_at, id")).scalars().all()
    if twice:
        raise RuntimeError(
            "cannot enforce one visit inside per account: these visits share an account and "
            f"are all inside ({', '.join(twice)}); let them exit on the previous version of "
            "walkout, then upgrade")
    op.create_index('uq_visits_account_inside', 'visits', ['account_id'], unique=True,
                    sqlite_where=sa.text(INSIDE), postgresql_where=sa.text(INSIDE))


def downgrade() -> None:
    op.drop_index('uq_visits_account_inside', table_name='visits')
