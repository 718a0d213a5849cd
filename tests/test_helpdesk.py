"""The help-desk app: its tables and indexes after ``migrate``, on the real server of the run."""

from __future__ import annotations

from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from tests.support.helpdesk import EXPECTED_COLUMNS, HELPDESK_TABLES, SEED_INDEXES
from tests.support.pg import index_columns_by_table, invalid_indexes, server_version_num


def _multiset(columns: dict[str, tuple[str, ...]]) -> list[tuple[str, ...]]:
    return sorted(columns.values())


@pytest.mark.django_db
def test_migrate__creates_the_eleven_seed_indexes_with_exact_names_and_columns() -> None:
    live = index_columns_by_table(sorted({t for t, _ in SEED_INDEXES.values()}))
    for name, (table, columns) in SEED_INDEXES.items():
        assert live[table].get(name) == columns, (name, live[table])


@pytest.mark.django_db
def test_migrate__every_index_is_valid() -> None:
    assert invalid_indexes() == []
    assert "testapp_order" in connection.introspection.table_names()


@pytest.mark.django_db
def test_migrate__no_implicit_fk_index_duplicates_a_declared_one() -> None:
    live = index_columns_by_table(sorted(EXPECTED_COLUMNS))
    for table, expected in EXPECTED_COLUMNS.items():
        columns = _multiset(live[table])
        # A multiset: an implicit (tenant_id) FK index beside idx_*_tenant_id would repeat.
        assert columns == sorted(expected), (table, live[table])


@pytest.mark.django_db
def test_migrate__runs_on_a_supported_postgresql() -> None:
    assert connection.vendor == "postgresql"
    assert server_version_num() >= 130000


@pytest.mark.django_db
def test_makemigrations__check_reports_no_changes() -> None:
    out = StringIO()
    call_command("makemigrations", "tenant_indexes_helpdesk", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_sqlmigrate__0002_builds_every_index_concurrently() -> None:
    out = StringIO()
    call_command("sqlmigrate", "tenant_indexes_helpdesk", "0002", stdout=out)
    statements = [line for line in out.getvalue().splitlines() if line.startswith("CREATE")]
    assert len(statements) == 11
    assert all(s.startswith("CREATE INDEX CONCURRENTLY ") for s in statements), statements
    for name in SEED_INDEXES:
        assert any(f'"{name}"' in s for s in statements), name


@pytest.mark.django_db
def test_sqlmigrate__0001_creates_no_tenant_index() -> None:
    out = StringIO()
    call_command("sqlmigrate", "tenant_indexes_helpdesk", "0001", stdout=out)
    sql = out.getvalue()
    for name in SEED_INDEXES:
        assert name not in sql
    creates = [line for line in sql.splitlines() if line.startswith("CREATE INDEX")]
    assert creates, "the implicit tickets.customer_id index is expected"
    assert not [line for line in creates if "tenant_id" in line]


@pytest.mark.django_db(transaction=True)
def test_migrate__to_zero_and_back_again() -> None:
    """The concurrent operation reverses (DROP INDEX CONCURRENTLY) and re-applies."""
    tables = sorted(EXPECTED_COLUMNS)
    try:
        call_command("migrate", "tenant_indexes_helpdesk", "0001", verbosity=0)
        after_0001 = index_columns_by_table(tables)
        assert not any(name in after_0001[t] for name, (t, _) in SEED_INDEXES.items())
        call_command("migrate", "tenant_indexes_helpdesk", "zero", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('public.tickets')")
            assert cursor.fetchone()[0] is None
    finally:
        # Every app, not only the help desk: unapplying it unapplied its dependents too.
        call_command("migrate", verbosity=0)
    again = index_columns_by_table(tables)
    for name, (table, columns) in SEED_INDEXES.items():
        assert again[table].get(name) == columns
    assert invalid_indexes() == []
    assert "testapp_order" in connection.introspection.table_names()


def test_helpdesk__is_its_own_app_and_the_core_has_only_its_history_table() -> None:
    helpdesk = apps.get_app_config("tenant_indexes_helpdesk")
    assert helpdesk.name == "tenant_indexes.helpdesk"
    tables = {model._meta.db_table for model in helpdesk.get_models()}
    assert tables == set(HELPDESK_TABLES)
    core = [model._meta.db_table for model in apps.get_app_config("tenant_indexes").get_models()]
    assert core == ["tenant_indexes_usage_snapshot"]


@pytest.mark.django_db
def test_helpdesk__owns_both_migrations_and_the_core_only_its_history_table() -> None:
    loader = MigrationLoader(connection)
    core = sorted(name for app, name in loader.disk_migrations if app == "tenant_indexes")
    assert core == ["0001_initial"]  # tenant_indexes_usage_snapshot, no help-desk table
    assert sorted(
        name for app, name in loader.disk_migrations if app == "tenant_indexes_helpdesk"
    ) == ["0001_initial", "0002_tenant_indexes"]
    assert loader.get_migration("tenant_indexes_helpdesk", "0002_tenant_indexes").atomic is False
