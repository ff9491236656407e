"""Migrations bring an empty SQLite or PostgreSQL database to the models' schema and back."""

from __future__ import annotations

from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

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


def _visit(c: Connection, vid: str, account: str, state: str) -> None:
    from datetime import UTC, datetime

    c.execute(text("INSERT INTO visits (id, credential, account_id, payment_method_id, gate_id, "
                   "party_size, state, currency, hold_amount, entered_at) VALUES (:id, :id, :a, "
                   "'pm1', 'entry', 1, :st, 'EUR', 50, :t)"),
              {"id": vid, "a": account, "st": state, "t": datetime(2026, 1, 1, tzinfo=UTC)})


def _account_with_method(c: Connection, account: str = "a1") -> None:
    from datetime import UTC, datetime

    t = datetime(2026, 1, 1, tzinfo=UTC)
    c.execute(text("INSERT INTO accounts (id, kind, role, created_at) "
                   "VALUES (:a, 'app', 'shopper', :t)"), {"a": account, "t": t})
    c.execute(text("INSERT INTO payment_methods (id, account_id, provider, provider_ref, "
                   "created_at) VALUES ('pm1', :a, 'ledger', 'tok_1', :t)"), {"a": account, "t": t})


def test_one_visit_inside_per_account_is_a_database_rule(db_url: str) -> None:
    """0005: a second visit inside for one account fails at the database, whoever writes it;
    visits that are over do not count."""
    eng = make_engine(db_url)
    upgrade(eng)
    with eng.begin() as c:
        _account_with_method(c)
        for i, state in enumerate(("charged", "released", "refused", "open")):
            _visit(c, f"v{i}", "a1", state)
    for state in ("authorizing", "open", "checking_out"):
        with pytest.raises(IntegrityError), eng.begin() as c:
            _visit(c, "v9", "a1", state)
    downgrade(eng, "0004")  # the rule goes with its revision
    with eng.begin() as c:
        _visit(c, "v9", "a1", "open")
    eng.dispose()


def test_upgrade_names_visits_the_old_race_let_in_twice(db_url: str) -> None:
    """Two visits of one account inside cannot both be kept under 0005's rule, nor dropped
    (each holds money): the upgrade stops and names them."""
    eng = make_engine(db_url)
    upgrade(eng, "0004")
    with eng.begin() as c:
        _account_with_method(c)
        _visit(c, "twice1", "a1", "open")
        _visit(c, "twice2", "a1", "authorizing")
        _visit(c, "over", "a1", "charged")
    with pytest.raises(RuntimeError, match=r"all inside \(twice1, twice2\); let them exit"):
        upgrade(eng)
    with eng.begin() as c:
        c.execute(text("UPDATE visits SET state = 'charged' WHERE id = 'twice1'"))
    upgrade(eng)
    eng.dispose()


def test_0006_adds_tax_to_receipt_lines_and_takes_it_away_again(db_url: str) -> None:
    """Lines issued before 0006 keep what they said (no tax: NULL); a rate is stored exactly;
    the downgrade drops only the two columns, the lines stay."""
    from datetime import UTC, datetime

    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from walkout.service.models import ReceiptLine

    eng = make_engine(db_url)
    upgrade(eng, "0005")
    t = datetime(2026, 1, 1, tzinfo=UTC)
    line = ("INSERT INTO receipt_lines (receipt_id, position, product_id, name, quantity, "
            "unit_price, amount, events{}) VALUES ('r1', :pos, 'p1', 'Bread', 1, 1.99, 1.99, "
            "'[]'{})")
    with eng.begin() as c:
        _account_with_method(c)
        _visit(c, "v1", "a1", "charged")
        c.execute(text("INSERT INTO receipts (id, visit_id, currency, total, needs_review, "
                       "issued_at) VALUES ('r1', 'v1', 'EUR', 3.98, false, :t)"), {"t": t})
        c.execute(text(line.format("", "")), {"pos": 0})
    assert "tax_rate" not in {col["name"] for col in inspect(eng).get_columns("receipt_lines")}
    upgrade(eng)
    with eng.begin() as c:
        assert c.execute(text("SELECT tax_class, tax_rate FROM receipt_lines")).one() == (
            None, None)
        c.execute(text(line.format(", tax_class, tax_rate", ", 'reduced', 0.055")),
                  {"pos": 1})
    with Session(eng) as s:  # as the service reads it: an exact Decimal
        assert s.execute(select(ReceiptLine.tax_class, ReceiptLine.tax_rate)
                         .order_by(ReceiptLine.position)).all() == [
            (None, None), ("reduced", Decimal("0.055"))]
    downgrade(eng, "0005")
    assert not {"tax_class", "tax_rate"} & {
        col["name"] for col in inspect(eng).get_columns("receipt_lines")}
    with eng.begin() as c:
        assert c.execute(text("SELECT count(*) FROM receipt_lines")).scalar_one() == 2
    upgrade(eng)
    eng.dispose()


def test_0010_records_webhook_events_once_and_goes_away_cleanly(db_url: str) -> None:
    """0010: an event id is recorded once (the primary key is what makes a redelivery a
    no-op), outcomes are checked; the downgrade drops its tables and indexes, visits stay."""
    from datetime import UTC, datetime

    eng = make_engine(db_url)
    upgrade(eng, "0009")
    with eng.begin() as c:
        _account_with_method(c)
        _visit(c, "v1", "a1", "charged")
    upgrade(eng)
    insp = inspect(eng)
    assert {"payment_webhook_events", "chargebacks"} <= set(insp.get_table_names())
    assert "ix_visits_auth_id" in {i["name"] for i in insp.get_indexes("visits")}
    assert "ix_charges_provider_ref" in {i["name"] for i in insp.get_indexes("charges")}
    row = ("INSERT INTO payment_webhook_events (event_id, provider, type, visit_id, created_at, "
           "received_at, outcome, detail) VALUES (:id, 'stripe', 'charge.refunded', 'v1', :t, "
           ":t, :outcome, '')")
    t = datetime(2026, 1, 1, tzinfo=UTC)
    with eng.begin() as c:
        c.execute(text(row), {"id": "evt_1", "t": t, "outcome": "applied"})
    for event_id, outcome in (("evt_1", "ignored"), ("evt_2", "maybe")):
        with pytest.raises(IntegrityError), eng.begin() as c:
            c.execute(text(row), {"id": event_id, "t": t, "outcome": outcome})
    downgrade(eng, "0009")
    insp = inspect(eng)
    assert not {"payment_webhook_events", "chargebacks"} & set(insp.get_table_names())
    assert "ix_visits_auth_id" not in {i["name"] for i in insp.get_indexes("visits")}
    with eng.begin() as c:
        assert c.execute(text("SELECT id FROM visits")).scalars().all() == ["v1"]
    upgrade(eng)
    eng.dispose()


def test_0012_adds_acknowledgements_and_fees_and_takes_them_away_again(db_url: str) -> None:
    """0012: events and chargebacks recorded before it have no acknowledgement and no fee
    (null); a fee is stored exactly; the downgrade drops only the new columns, the rows and
    the outcome CHECK stay."""
    from datetime import UTC, datetime

    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from walkout.service.models import Chargeback, PaymentWebhookEvent

    new = {"payment_webhook_events": {"acknowledged_at", "acknowledged_by",
                                      "acknowledged_note"},
           "chargebacks": {"fee", "fee_currency"}}

    def columns(table: str) -> set[str]:
        return {col["name"] for col in inspect(eng).get_columns(table)}

    eng = make_engine(db_url)
    upgrade(eng, "0011")
    t = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    event = ("INSERT INTO payment_webhook_events (event_id, provider, type, visit_id, "
             "created_at, received_at, outcome, detail) VALUES (:id, 'stripe', "
             "'charge.dispute.created', 'v1', :t, :t, :outcome, '')")
    with eng.begin() as c:
        _account_with_method(c)
        _visit(c, "v1", "a1", "charged")
        c.execute(text(event), {"id": "evt_1", "t": t, "outcome": "attention"})
        c.execute(text("INSERT INTO chargebacks (id, provider, visit_id, charge_ref, amount, "
                       "currency, reason, status, opened_at, as_of, updated_at) VALUES "
                       "('dp_1', 'stripe', 'v1', 'ch_1', 16.78, 'EUR', 'fraudulent', "
                       "'needs_response', :t, :t, :t)"), {"t": t})
    for table, cols in new.items():
        assert not cols & columns(table)
    upgrade(eng)
    for table, cols in new.items():
        assert cols <= columns(table)
    with Session(eng) as s:  # as the service reads them: nobody acknowledged, no fee known
        ev = s.get(PaymentWebhookEvent, "evt_1")
        cb = s.get(Chargeback, "dp_1")
        assert ev is not None and cb is not None
        assert (ev.acknowledged_at, ev.acknowledged_by, ev.acknowledged_note) == (None,) * 3
        assert (cb.fee, cb.fee_currency) == (None, None)
        ev.acknowledged_at, ev.acknowledged_by, ev.acknowledged_note = t, "op1", "handled"
        cb.fee, cb.fee_currency = Decimal("15.00"), "EUR"
        s.commit()
    with Session(eng) as s:
        assert s.execute(select(Chargeback.fee)).scalar_one() == Decimal("15.00")
        assert s.execute(select(PaymentWebhookEvent.acknowledged_by)).scalar_one() == "op1"
    downgrade(eng, "0011")
    for table, cols in new.items():
        assert not cols & columns(table)
    with eng.begin() as c:
        assert c.execute(text("SELECT event_id, outcome FROM payment_webhook_events")).all() == [
            ("evt_1", "attention")]
        assert c.execute(text("SELECT id, status FROM chargebacks")).all() == [
            ("dp_1", "needs_response")]
    with pytest.raises(IntegrityError), eng.begin() as c:  # the rebuilt table kept its CHECK
        c.execute(text(event), {"id": "evt_2", "t": t, "outcome": "maybe"})
    upgrade(eng)
    eng.dispose()


def test_0013_adds_the_balance_owed_and_takes_it_away_again(db_url: str) -> None:
    """0013: visits from before it owe nothing recorded (null); a balance and its settlement
    are stored exactly; the downgrade drops only the new columns, the visits stay (and the
    one-visit-inside index with them)."""
    from datetime import UTC, datetime

    from sqlalchemy.orm import Session

    from walkout.service.models import Visit

    new = {"balance_owed", "balance_settled_at", "balance_settlement", "balance_settled_by",
           "balance_note"}

    def columns() -> set[str]:
        return {col["name"] for col in inspect(eng).get_columns("visits")}

    eng = make_engine(db_url)
    upgrade(eng, "0012")
    with eng.begin() as c:
        _account_with_method(c)
        _visit(c, "v1", "a1", "in_review")
        _visit(c, "v2", "a1", "open")
    assert not new & columns()
    upgrade(eng)
    assert new <= columns()
    t = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    with Session(eng) as s:
        v = s.get(Visit, "v1")
        assert v is not None
        assert (v.balance_owed, v.balance_settled_at, v.balance_settlement) == (None,) * 3
        v.balance_owed, v.balance_settled_at = Decimal("349.60"), t
        v.balance_settlement, v.balance_settled_by, v.balance_note = "written_off", "op1", "ok"
        s.commit()
    with Session(eng) as s:
        v = s.get(Visit, "v1")
        assert v is not None and v.balance_owed == Decimal("349.60")
        assert (v.balance_settlement, v.balance_settled_by) == ("written_off", "op1")
    downgrade(eng, "0012")
    assert not new & columns()
    with eng.begin() as c:
        assert c.execute(text("SELECT id, state FROM visits ORDER BY id")).all() == [
            ("v1", "in_review"), ("v2", "open")]
    with pytest.raises(IntegrityError), eng.begin() as c:  # still one visit inside
        _visit(c, "v3", "a1", "open")
    upgrade(eng)
    eng.dispose()


def test_0014_adds_when_a_charge_was_confirmed_and_takes_it_away_again(db_url: str) -> None:
    """0014: charges from before it have no confirmation time (the sales count them on the day
    they were made, as before); the downgrade drops only that column, the charges stay."""
    eng = make_engine(db_url)
    upgrade(eng, "0013")
    with eng.begin() as c:
        _account_with_method(c)
        _visit(c, "v1", "a1", "charged")
        c.execute(text("INSERT INTO charges (visit_id, kind, idempotency_key, provider, amount, "
                       "currency, status, created_at) VALUES ('v1', 'capture', 'visit:v1:capture',"
                       " 'ledger', 9.19, 'EUR', 'succeeded', '2026-01-01 20:00:00+00:00')"))

    def columns() -> set[str]:
        return {col["name"] for col in inspect(eng).get_columns("charges")}

    assert "settled_at" not in columns()
    upgrade(eng)
    assert "settled_at" in columns()
    with eng.begin() as c:
        assert c.execute(text("SELECT idempotency_key, settled_at FROM charges")).all() == [
            ("visit:v1:capture", None)]
    downgrade(eng, "0013")
    assert "settled_at" not in columns()
    with eng.begin() as c:
        assert c.execute(text("SELECT idempotency_key, status FROM charges")).all() == [
            ("visit:v1:capture", "succeeded")]
    upgrade(eng)
    eng.dispose()


def test_0015_event_ids_beyond_32_bits_are_stored_and_acknowledged(db_url: str) -> None:
    """0015: the event log's ids (and the acknowledgements pointing at them) are 64-bit, so a
    store's log goes on past 2^31 - 1 ids; the downgrade narrows them back."""
    eng = make_engine(db_url)
    upgrade(eng, "0014")
    big = 2**31 + 5
    row = ("INSERT INTO engine_events (id, source, seq, kind, t, payload, recorded_at) VALUES "
           "(:id, 's/alerts', 0, 'alert', 1.0, '{}', '2026-01-01 00:00:00+00:00')")
    ack = ("INSERT INTO alert_acks (event_id, acked_by, acked_at) VALUES "
           "(:id, 'op1', '2026-01-01 00:00:00+00:00')")
    if eng.dialect.name == "postgresql":
        with pytest.raises(DBAPIError), eng.begin() as c:  # what it was: out of range
            c.execute(text(row), {"id": big})
    upgrade(eng)
    with eng.begin() as c:
        c.execute(text(row), {"id": big})
        c.execute(text(ack), {"id": big})
        c.execute(text("INSERT INTO engine_events (source, seq, kind, t, payload, recorded_at) "
                       "VALUES ('s/alerts', 1, 'alert', 2.0, '{}', "
                       "'2026-01-01 00:00:00+00:00')"))
        ids = c.execute(text("SELECT id FROM engine_events ORDER BY id")).scalars().all()
        assert len(ids) == 2 and big in ids  # a later row is numbered as ever
        assert c.execute(text("SELECT event_id FROM alert_acks")).scalar() == big
    with eng.begin() as c:
        c.execute(text("DELETE FROM alert_acks"))
        c.execute(text("DELETE FROM engine_events"))
    downgrade(eng, "0014")
    upgrade(eng)
    eng.dispose()


def test_0016_carries_what_was_written_off(db_url: str) -> None:
    """0016: a balance written off before it is counted as written off (so a later revision
    does not ask for it again); a charged one is not; the downgrade drops only the column."""
    eng = make_engine(db_url)
    upgrade(eng, "0015")
    with eng.begin() as c:
        _account_with_method(c)
        _visit(c, "v1", "a1", "charged")
        _visit(c, "v2", "a1", "charged")
        c.execute(text("UPDATE visits SET balance_owed = 5.14, balance_settlement = "
                       "'written_off', balance_settled_at = '2026-01-01 20:00:00+00:00' "
                       "WHERE id = 'v1'"))
        c.execute(text("UPDATE visits SET balance_owed = 2.00, balance_settlement = "
                       "'charged', balance_settled_at = '2026-01-01 20:00:00+00:00' "
                       "WHERE id = 'v2'"))
    upgrade(eng)
    with eng.begin() as c:
        got = c.execute(text("SELECT id, balance_written_off FROM visits ORDER BY id")).all()
    assert [(i, None if w is None else Decimal(w).quantize(Decimal("0.01")))
            for i, w in got] == [("v1", Decimal("5.14")), ("v2", None)]
    downgrade(eng, "0015")
    assert "balance_written_off" not in {
        col["name"] for col in inspect(eng).get_columns("visits")}
    upgrade(eng)
    eng.dispose()
