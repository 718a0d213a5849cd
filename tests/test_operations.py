"""The retry-safe concurrent index build, on the real server of the run."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext, override_settings

from tenant_indexes import buildcontrol
from tenant_indexes.exceptions import (
    IndexDefinitionMismatchError,
    LockWaitTimeoutError,
)
from tests.support.helpdesk import EXPECTED_COLUMNS, SEED_INDEXES
from tests.support.pg import index_columns_by_table, invalid_indexes

# The hand-written SQL that the help-desk schema offers instead of its migration, verbatim.
SEED_OPTION_2_SQL = """
CREATE INDEX IF NOT EXISTS idx_customers_tenant_id ON customers (tenant_id);
CREATE INDEX IF NOT EXISTS idx_tickets_tenant_id ON tickets (tenant_id);
CREATE INDEX IF NOT EXISTS idx_messages_tenant_id ON messages (tenant_id);
CREATE INDEX IF NOT EXISTS idx_users_tenant_id ON users (tenant_id);
CREATE INDEX IF NOT EXISTS idx_files_tenant_id ON files (tenant_id);
CREATE INDEX IF NOT EXISTS idx_tickets_tenant_status ON tickets (tenant_id, status);
CREATE INDEX IF NOT EXISTS idx_customers_tenant_status ON customers (tenant_id, status);
"""
OPTION_2_NAMES = [
    line.split()[5] for line in SEED_OPTION_2_SQL.strip().splitlines() if line.startswith("CREATE")
]

FAST_GIVE_UP = {
    "BUILD_LOCK_TIMEOUT": "300ms",
    "BUILD_LOCK_RETRIES": 1,
    "BUILD_RETRY_BACKOFF": 0.05,
}


@contextmanager
def seed_indexes_unapplied() -> Iterator[None]:
    """Migrate tenant_indexes back to 0001 (no seed index), and forward again at the end."""
    call_command("migrate", "tenant_indexes_helpdesk", "0001", verbosity=0)
    try:
        yield
    finally:
        call_command("migrate", verbosity=0)


@contextmanager
def other_session() -> Iterator[Any]:
    """A second, independent connection to the test database (autocommit)."""
    other = connections.create_connection("default")
    try:
        yield other
    finally:
        other.close()


def run_sql(conn: Any, sql: str) -> Any:
    with conn.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall() if cursor.description else None


def recorded(app: str, name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM django_migrations WHERE app = %s AND name = %s", [app, name])
        return cursor.fetchone() is not None


def all_seed_indexes_valid_and_unique() -> None:
    live = index_columns_by_table(sorted(EXPECTED_COLUMNS))
    for name, (table, columns) in SEED_INDEXES.items():
        assert live[table].get(name) == columns, (name, live[table])
    for table, expected in EXPECTED_COLUMNS.items():
        assert sorted(live[table].values()) == sorted(expected), (table, live[table])
    assert invalid_indexes() == []


# What only the build's own queries contain (Django's recorder lists tables via pg_class).
BUILD_QUERY_MARKERS = ("pg_index", "pg_stat", "advisory", "set_config", "current_setting")
RELKIND_LOOKUP = "SELECT relkind::text FROM pg_class WHERE oid = to_regclass("


@pytest.mark.django_db
def test_sqlmigrate__prints_concurrently_and_runs_one_relkind_lookup_per_operation() -> None:
    """On ordinary tables the only query of an operation is the lookup that tells whether
    its table is partitioned (where the run builds per partition instead)."""
    out = io.StringIO()
    with CaptureQueriesContext(connection) as queries:
        call_command("sqlmigrate", "tenant_indexes_helpdesk", "0002", stdout=out)
    assert out.getvalue().count("CREATE INDEX CONCURRENTLY") == 11
    assert "ON ONLY" not in out.getvalue() and "-- tenant_indexes" not in out.getvalue()
    build_queries = [
        q["sql"]
        for q in queries.captured_queries
        if any(word in q["sql"] for word in BUILD_QUERY_MARKERS)
    ]
    assert build_queries == []
    lookups = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(RELKIND_LOOKUP)]
    assert len(lookups) == 11
    tables = {sql.split("to_regclass(")[1].split(")")[0] for sql in lookups}
    assert tables == {f"'\"{table}\"'" for table, _ in SEED_INDEXES.values()}
    others = [
        q["sql"]
        for q in queries.captured_queries
        if "pg_class" in q["sql"] and not q["sql"].startswith(RELKIND_LOOKUP)
    ]
    assert all("django_migrations" in sql or "relkind IN" in sql for sql in others), others


@pytest.mark.django_db(transaction=True)
def test_migrate__adopts_the_seed_manual_sql_indexes_without_duplicates() -> None:
    with seed_indexes_unapplied():
        run_sql(connection, SEED_OPTION_2_SQL)
        out = io.StringIO()
        call_command("migrate", "tenant_indexes_helpdesk", stdout=out, verbosity=1)
        text = out.getvalue()
        for name in OPTION_2_NAMES:
            assert f'adopted the existing valid index "{name}"' in text, text
        others = set(SEED_INDEXES) - set(OPTION_2_NAMES)
        assert len(others) == 4
        for name in others:
            assert f'built index "{name}"' in text, text
        assert text.count("adopted") == 7
        all_seed_indexes_valid_and_unique()
        assert recorded("tenant_indexes_helpdesk", "0002_tenant_indexes")


@pytest.mark.django_db(transaction=True)
def test_migrate__valid_index_with_another_definition_stops_with_a_clear_error() -> None:
    with seed_indexes_unapplied():
        run_sql(connection, "CREATE INDEX idx_users_tenant_id ON users (email)")
        with pytest.raises(IndexDefinitionMismatchError) as raised:
            call_command("migrate", "tenant_indexes_helpdesk", verbosity=0)
        message = str(raised.value)
        assert '"idx_users_tenant_id" already exists and is valid' in message
        assert "(email)" in message and '"tenant_id"' in message
        assert not recorded("tenant_indexes_helpdesk", "0002_tenant_indexes")
        # The wrong index is kept as it was, not replaced.
        assert index_columns_by_table(["users"])["users"]["idx_users_tenant_id"] == ("email",)
        run_sql(connection, "DROP INDEX idx_users_tenant_id")
    all_seed_indexes_valid_and_unique()


@pytest.mark.django_db(transaction=True)
def test_migrate__drops_invalid_index_and_ccnew_leftover_then_rebuilds() -> None:
    """INVALID the honest way: a concurrent UNIQUE build over duplicate rows fails."""
    with seed_indexes_unapplied():
        tenant = "00000000-0000-0000-0000-000000000001"
        run_sql(
            connection,
            "INSERT INTO tenants (id, name, slug, created_at) "
            f"VALUES ('{tenant}', 't', 't', now());"
            f"INSERT INTO users (tenant_id, email, name, role, is_active, created_at) "
            f"VALUES ('{tenant}', 'a@x', '', 'agent', true, now()), "
            f"('{tenant}', 'b@x', '', 'agent', true, now())",
        )
        for name in ("idx_users_tenant_id", "idx_users_tenant_id_ccnew"):
            with pytest.raises(Exception, match="could not create unique index"):
                run_sql(connection, f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON users (tenant_id)")
        assert invalid_indexes() == ["idx_users_tenant_id", "idx_users_tenant_id_ccnew"]
        out = io.StringIO()
        call_command("migrate", "tenant_indexes_helpdesk", stdout=out)
        assert 'dropping the INVALID index "idx_users_tenant_id"' in out.getvalue()
        assert 'dropping the INVALID index "idx_users_tenant_id_ccnew"' in out.getvalue()
        all_seed_indexes_valid_and_unique()
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM users")
            assert cursor.fetchone()[0] == 2


def _migrate_fast() -> None:
    with override_settings(TENANT_INDEXES=FAST_GIVE_UP):
        call_command("migrate", "tenant_indexes_helpdesk", verbosity=0)


def _migrate_gives_up_behind(*statements: str) -> tuple[int, str]:
    """Another session runs ``statements`` and stays open; ``migrate`` gives up behind it.
    Returns that session's pid and the error's message."""
    with other_session() as blocker:
        blocker_pid = run_sql(blocker, "SELECT pg_backend_pid()")[0][0]
        for sql in statements:
            run_sql(blocker, sql)
        try:
            with pytest.raises(LockWaitTimeoutError) as raised:
                _migrate_fast()
        finally:
            run_sql(blocker, "ROLLBACK")
    return blocker_pid, str(raised.value)


@pytest.mark.django_db(transaction=True)
def test_migrate__old_snapshot_makes_build_give_up_naming_the_blocker_and_leave_nothing() -> None:
    with seed_indexes_unapplied():
        blocker_pid, message = _migrate_gives_up_behind(
            "BEGIN ISOLATION LEVEL REPEATABLE READ",
            "SELECT count(*) /* long report */ FROM tenants",
        )
        assert f"pid {blocker_pid}" in message, message
        assert "long report" in message, message
        assert "after 2 lock waits of 300ms" in message
        assert "Nothing was left behind" in message
        assert invalid_indexes() == []
        assert not recorded("tenant_indexes_helpdesk", "0002_tenant_indexes")
        # The blocker has ended: the next run succeeds.
        _migrate_fast()
        assert recorded("tenant_indexes_helpdesk", "0002_tenant_indexes")
    all_seed_indexes_valid_and_unique()


@pytest.mark.django_db(transaction=True)
def test_migrate__open_writer_makes_build_give_up_and_next_run_heals() -> None:
    """A writer blocks the build and its cleanup alike: the message says what is left."""
    with seed_indexes_unapplied():
        blocker_pid, message = _migrate_gives_up_behind(
            "BEGIN", "UPDATE customers SET name = name /* bulk import */"
        )
        assert f"pid {blocker_pid}" in message and "bulk import" in message, message
        assert 'INVALID index "idx_customers_tenant_id"' in message, message
        assert "the next run drops it" in message
        assert invalid_indexes() == ["idx_customers_tenant_id"]
        assert not recorded("tenant_indexes_helpdesk", "0002_tenant_indexes")
        _migrate_fast()
    all_seed_indexes_valid_and_unique()


@pytest.mark.django_db(transaction=True)
def test_migrate__waits_for_another_builder_through_the_advisory_lock() -> None:
    with seed_indexes_unapplied(), other_session() as builder:
        builder_pid = run_sql(builder, "SELECT pg_backend_pid()")[0][0]
        buildcontrol.acquire_build_lock(builder, "public.idx_customers_tenant_id")
        with override_settings(TENANT_INDEXES={**FAST_GIVE_UP, "BUILD_BUILDER_WAIT": 0.5}):
            with pytest.raises(LockWaitTimeoutError) as raised:
                call_command("migrate", "tenant_indexes_helpdesk", verbosity=0)
        assert 'for another build on the index "public.idx_customers_tenant_id"' in str(
            raised.value
        )
        assert f"pid {builder_pid}" in str(raised.value)
        assert invalid_indexes() == []
        buildcontrol.release_build_lock(builder, "public.idx_customers_tenant_id")


@pytest.mark.django_db(transaction=True)
def test_migrate__restores_session_settings_after_build_and_after_failure() -> None:
    with seed_indexes_unapplied():
        run_sql(connection, "SET lock_timeout = '7s'; SET statement_timeout = '9s'")
        before = buildcontrol.session_settings(connection, ("lock_timeout", "statement_timeout"))
        run_sql(connection, "CREATE INDEX idx_users_tenant_id ON users (email)")
        with pytest.raises(IndexDefinitionMismatchError):
            call_command("migrate", "tenant_indexes_helpdesk", verbosity=0)
        assert (
            buildcontrol.session_settings(connection, ("lock_timeout", "statement_timeout"))
            == before
        )
        run_sql(connection, "DROP INDEX idx_users_tenant_id")
        call_command("migrate", "tenant_indexes_helpdesk", verbosity=0)
        assert (
            buildcontrol.session_settings(connection, ("lock_timeout", "statement_timeout"))
            == before
        )
        assert before == {"lock_timeout": "7s", "statement_timeout": "9s"}
        run_sql(connection, "RESET lock_timeout; RESET statement_timeout")


def test_add_index_concurrently__describe_names_the_keys_of_an_unbound_tenant_index() -> None:
    """Loaded from a migration file, a TenantIndex has not met its model yet: its provisional
    first key is named by its role, not shown as a field called ``tenant``."""
    from django.db.models.functions import Lower

    from tenant_indexes import TenantIndex
    from tenant_indexes.operations import AddIndexConcurrently

    by_fields = AddIndexConcurrently("invoice", TenantIndex(fields=["paid"], name="inv_paid"))
    assert by_fields.describe() == (
        "Concurrently create index inv_paid on field(s) the tenant field, paid of model invoice"
    )
    by_expression = AddIndexConcurrently("member", TenantIndex(Lower("email"), name="m_email"))
    assert by_expression.describe().startswith(
        "Concurrently create index m_email on expression(s) the tenant field, Lower(F(email))"
    )
    explicit = TenantIndex(fields=["paid"], name="inv_paid", tenant_field="organization")
    assert "field(s) organization, paid" in AddIndexConcurrently("invoice", explicit).describe()
