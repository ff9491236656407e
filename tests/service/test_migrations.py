"""Migrations bring an empty SQLite or PostgreSQL database to the models' schema and back."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

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
