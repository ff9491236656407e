"""Migrations bring an empty SQLite or PostgreSQL database to the models' schema and back."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from walkout.service.db import downgrade, make_engine, upgrade
from walkout.service.models import Base


def test_upgrade_creates_every_table_and_matches_models(db_url: str) -> None:
    eng = make_engine(db_url)
    upgrade(eng)
    tables = set(inspect(eng).get_table_names())
    assert set(Base.metadata.tables) <= tables
    with eng.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    assert diff == [], f"models and migrations disagree: {diff}"
    upgrade(eng)  # idempotent: already at head
    eng.dispose()


def test_downgrade_to_base_and_up_again(db_url: str) -> None:
    eng = make_engine(db_url)
    upgrade(eng)
    downgrade(eng, "base")
    assert set(inspect(eng).get_table_names()) <= {"alembic_version"}
    upgrade(eng)
    assert "visits" in inspect(eng).get_table_names()
    eng.dispose()


def test_upgrade_from_0001_keeps_data_and_allows_kiosks(db_url: str) -> None:
    """0002 loosens the role CHECK without rebuilding ``accounts`` (referenced by rows)."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    eng = make_engine(db_url)
    upgrade(eng, "0001")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with eng.begin() as c:
        c.execute(text("INSERT INTO accounts (id, kind, role, created_at) VALUES "
                       "('a1', 'app', 'shopper', :t)"), {"t": now})
        c.execute(text("INSERT INTO api_tokens (account_id, token_hash, role, created_at) "
                       "VALUES ('a1', 'h', 'shopper', :t)"), {"t": now})
    upgrade(eng)
    with eng.begin() as c:
        c.execute(text("INSERT INTO accounts (id, kind, role, created_at) VALUES "
                       "('k1', 'staff', 'kiosk', :t)"), {"t": now})
        assert c.execute(text("SELECT count(*) FROM api_tokens")).scalar_one() == 1
    try:
        with eng.begin() as c:
            c.execute(text("INSERT INTO accounts (id, kind, role, created_at) VALUES "
                           "('x1', 'staff', 'king', :t)"), {"t": now})
        raise AssertionError("a role outside the CHECK was accepted")
    except IntegrityError:
        pass
    downgrade(eng, "0001")  # kiosks go, the shopper stays
    with eng.begin() as c:
        assert c.execute(text("SELECT id FROM accounts")).scalars().all() == ["a1"]
    eng.dispose()
