"""Each finding produced from a real broken database state, on the real server.

Transactional tests (the default) roll their DDL back; the concurrent ones
(``transaction=True``) put back what they broke in ``finally``.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from django.db import IntegrityError, connection

from tenant_indexes.findings import IndexState
from tenant_indexes.health import check_databases
from tenant_indexes.helpdesk.models import Tenant, User
from tests.support import dbapi
from tests.testapp.models import Order

POLL_DEADLINE_S = 30.0


def _run(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _states(report) -> dict[str, IndexState]:
    return {ix.name: ix.status for ix in report.indexes}


def _ids(report, table: str | None = None) -> list[str]:
    return sorted(f.id for f in report.findings if table is None or f.table == table)


def _raw_connection(autocommit: bool = True) -> dbapi.Session:
    """A second session on the test database, outside Django's connection handling."""
    return dbapi.connect_like(connection.settings_dict, autocommit=autocommit)


def _wait_for(condition, what: str) -> None:
    """Poll the server until ``condition()`` holds; fail loudly at the deadline."""
    deadline = time.monotonic() + POLL_DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def _as_role(suffix: str, *grants: str):
    """Reconnect Django's default connection as a fresh non-superuser login role."""
    role = f"ti_{suffix}_{connection.settings_dict['NAME']}"[:63]
    _run(f'DROP ROLE IF EXISTS "{role}"')
    _run(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
    for grant in grants:
        _run(f'GRANT {grant} TO "{role}"')
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["USER"] = role
    try:
        yield role
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
        _run(f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.django_db
def test_check__healthy_database_has_no_findings() -> None:
    report = check_databases(["default"])
    assert report.status == "ok" and report.findings == ()
    assert set(_states(report).values()) == {IndexState.OK}
    assert report.exit_code() == 0


@pytest.mark.django_db
def test_check__dropped_index_is_e001_missing() -> None:
    _run("DROP INDEX idx_customers_tenant_status")
    report = check_databases(["default"])
    assert _states(report)["idx_customers_tenant_status"] is IndexState.MISSING
    # customers still has idx_customers_tenant_id, so it keeps a tenant-leading index.
    assert _ids(report) == ["tenant_indexes.E001"]
    (finding,) = report.findings
    assert finding.index == "idx_customers_tenant_status" and finding.table == "customers"
    assert "repair_tenant_indexes" in finding.hint
    assert report.exit_code() == 1


@pytest.mark.django_db
def test_check__same_name_different_column_order_is_e003_drift() -> None:
    _run("DROP INDEX idx_tickets_tenant_status")
    _run("CREATE INDEX idx_tickets_tenant_status ON tickets (status, tenant_id)")
    report = check_databases(["default"])
    assert _states(report)["idx_tickets_tenant_status"] is IndexState.DRIFT
    (finding,) = report.findings
    assert finding.id == "tenant_indexes.E003"
    assert "(status, tenant_id)" in finding.message and "(tenant_id, status)" in finding.message
    assert 'DROP INDEX CONCURRENTLY "public"."idx_tickets_tenant_status"' in finding.hint


@pytest.mark.django_db
def test_check__same_name_different_uniqueness_and_direction_is_e003_drift() -> None:
    _run("DROP INDEX testapp_inv_tenant__3911d9_idx")
    # Declared (tenant_id, paid, number DESC); this one is ascending and unique.
    _run(
        "CREATE UNIQUE INDEX testapp_inv_tenant__3911d9_idx "
        "ON testapp_invoice (tenant_id, paid, number)"
    )
    report = check_databases(["default"], app_labels=["testapp"])
    (finding,) = [f for f in report.findings if f.id == "tenant_indexes.E003"]
    assert "ASC/DESC" in finding.message and "UNIQUE" in finding.message


@pytest.mark.django_db
def test_check__table_without_tenant_leading_index_is_e004() -> None:
    _run("DROP INDEX idx_usage_metrics_tenant_id")
    report = check_databases(["default"])
    assert _ids(report, "tenant_usage_metrics") == ["tenant_indexes.E001", "tenant_indexes.E004"]
    e004 = next(f for f in report.findings if f.id == "tenant_indexes.E004")
    assert e004.index is None and "tenant_id" in e004.message


@pytest.mark.django_db
def test_check__hand_made_tenant_index_satisfies_e004_but_a_partial_one_does_not() -> None:
    _run("DROP INDEX idx_users_tenant_id")
    _run("CREATE INDEX users_partial ON users (tenant_id) WHERE is_active")
    assert "tenant_indexes.E004" in _ids(check_databases(["default"]), "users")
    _run("CREATE INDEX users_by_hand ON users (tenant_id, email)")
    assert _ids(check_databases(["default"]), "users") == ["tenant_indexes.E001"]


@pytest.mark.django_db
def test_check__missing_table_is_e005_with_migrate_hint() -> None:
    _run("ALTER TABLE files RENAME TO files_elsewhere")
    report = check_databases(["default"])
    assert _ids(report, "files") == ["tenant_indexes.E005"]
    assert "migrate tenant_indexes" in report.findings[0].hint
    assert _states(report)["idx_files_tenant_id"] is IndexState.MISSING
    missing = next(ix for ix in report.indexes if ix.name == "idx_files_tenant_id")
    assert missing.schema == report.findings[0].schema == "public"


@pytest.mark.django_db(transaction=True)
def test_check__failed_concurrent_unique_build_is_e002_invalid() -> None:
    """A CREATE UNIQUE INDEX CONCURRENTLY over duplicate rows leaves an INVALID index."""
    name = "testapp_ord_tenant__39ff50_idx"
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    Order.objects.create(tenant=tenant, number="A-1")
    Order.objects.create(tenant=tenant, number="A-2")
    try:
        _run(f"DROP INDEX CONCURRENTLY {name}")
        with pytest.raises(IntegrityError):
            _run(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON testapp_order (tenant_id)")
        report = check_databases(["default"], app_labels=["testapp"])
        assert _states(report)[name] is IndexState.INVALID
        # Its only tenant-leading index is unusable, so the table also fails E004.
        assert _ids(report, "testapp_order") == ["tenant_indexes.E002", "tenant_indexes.E004"]
        e002 = next(f for f in report.findings if f.id == "tenant_indexes.E002")
        assert "INVALID" in e002.message and "DROP INDEX CONCURRENTLY" in e002.hint
        assert report.exit_code() == 1
    finally:
        _run(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        _run(f"CREATE INDEX {name} ON testapp_order (tenant_id)")
    assert check_databases(["default"], app_labels=["testapp"]).status == "ok"


@pytest.mark.django_db(transaction=True)
def test_check__concurrent_build_in_progress_is_building_not_a_failure() -> None:
    """A CREATE INDEX CONCURRENTLY waiting for an open writer is reported as building."""
    name = "idx_users_tenant_id"
    tenant = Tenant.objects.create(name="Acme", slug="acme")
    User.objects.create(tenant=tenant, email="a@example.com")
    _run(f"DROP INDEX CONCURRENTLY {name}")
    writer = _raw_connection(autocommit=False)
    builder = _raw_connection()
    # Statistics views are a snapshot per transaction: poll from an autocommit session.
    observer = _raw_connection()
    errors: list[BaseException] = []

    def build() -> None:
        try:
            builder.execute(f"CREATE INDEX CONCURRENTLY {name} ON users (tenant_id)")
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    thread = threading.Thread(target=build, daemon=True)
    try:
        # An open writer: the build must wait for it before it can scan the table.
        writer.execute("UPDATE users SET name = 'x'")
        thread.start()

        def build_registered() -> bool:
            row = observer.execute(
                "SELECT count(*) FROM pg_stat_progress_create_index p "
                "JOIN pg_class c ON c.oid = p.index_relid WHERE c.relname = %s",
                [name],
            ).fetchone()
            return row[0] == 1

        _wait_for(build_registered, "the concurrent build to register its index")
        report = check_databases(["default"], app_labels=["tenant_indexes_helpdesk"])
        assert _states(report)[name] is IndexState.BUILDING
        assert _ids(report, "users") == []
        assert report.exit_code() == 0
        # Another role sees the build only with pg_read_all_stats (docs/health.md, minimum grants);
        # without it the unfinished index is honestly INVALID.
        with _as_role("stats", "pg_read_all_stats"):
            report = check_databases(["default"], app_labels=["tenant_indexes_helpdesk"])
            assert _states(report)[name] is IndexState.BUILDING
        with _as_role("nostats"):
            report = check_databases(["default"], app_labels=["tenant_indexes_helpdesk"])
            assert _states(report)[name] is IndexState.INVALID
    finally:
        writer.rollback()
        thread.join(POLL_DEADLINE_S)
        for conn in (writer, builder, observer):
            conn.close()
    assert not errors, errors
    assert _states(check_databases(["default"]))[name] is IndexState.OK


@pytest.mark.django_db(transaction=True)
def test_check__works_as_a_role_that_is_not_a_superuser() -> None:
    """Minimum grants (docs/health.md): CONNECT on the database and USAGE on the schema, both
    PUBLIC's by default; nothing on the tables themselves."""
    with _as_role("check") as role:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
            )
            assert cursor.fetchone() == (role, False)
            with pytest.raises(Exception, match="permission denied"):
                cursor.execute("SELECT count(*) FROM customers")
        report = check_databases(["default"], app_labels=["tenant_indexes_helpdesk"])
        assert report.status == "ok", report.findings
        assert len(report.indexes) == 11  # the seed's
        assert all(ix.live is not None and ix.live.definition for ix in report.indexes)


@pytest.mark.django_db
def test_check__check_schemas_looks_for_the_tables_in_every_schema() -> None:
    from django.test import override_settings

    from tenant_indexes.helpdesk.models import File

    with connection.schema_editor() as editor:
        editor.execute("CREATE SCHEMA ti_shard")
        editor.execute("SET LOCAL search_path TO ti_shard")
        editor.create_model(Tenant)
        editor.create_model(File)
    # After the block: the editor's deferred SQL (foreign keys) also runs in ti_shard.
    _run("SET LOCAL search_path TO DEFAULT")
    with override_settings(TENANT_INDEXES={"CHECK_SCHEMAS": ["public", "ti_shard"]}):
        report = check_databases(["default"], app_labels=["tenant_indexes_helpdesk"])
    shard_files = [ix for ix in report.indexes if ix.schema == "ti_shard" and ix.table == "files"]
    assert [(ix.name, ix.status) for ix in shard_files] == [("idx_files_tenant_id", IndexState.OK)]
    missing = {(f.schema, f.table) for f in report.findings if f.id == "tenant_indexes.E005"}
    assert missing == {
        ("ti_shard", t)
        for t in (
            "customers",
            "users",
            "tickets",
            "messages",
            "integration_credentials",
            "audit_logs",
            "tenant_usage_metrics",
        )
    }
    assert {f.id for f in report.findings} == {"tenant_indexes.E005"}


@pytest.mark.django_db(transaction=True)
def test_check__locked_catalog_times_out_as_could_not_check_never_hangs() -> None:
    """An ACCESS EXCLUSIVE lock on a catalog the pass reads: lock_timeout, then exit 2."""
    from django.test import override_settings

    connection.ensure_connection()
    locker = _raw_connection(autocommit=False)
    try:
        locker.execute("LOCK TABLE pg_catalog.pg_am IN ACCESS EXCLUSIVE MODE")
        # Were the pass unbounded, this would wait for the lock holder, i.e. forever.
        with override_settings(TENANT_INDEXES={"CHECK_LOCK_TIMEOUT_MS": 200}):
            report = check_databases(["default"])
    finally:
        locker.rollback()
        locker.close()
    (database,) = report.databases
    assert "lock timeout" in database.error
    assert report.status == "unknown" and report.exit_code() == 2
    assert check_databases(["default"]).status == "ok"  # the connection is usable again
