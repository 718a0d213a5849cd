"""``manage.py repair_tenant_indexes`` on the real server of the run."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from tests.support.pg import index_columns_by_table, invalid_indexes
from tests.test_operations import all_seed_indexes_valid_and_unique, run_sql

TENANT = "00000000-0000-0000-0000-000000000001"


def repair(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("repair_tenant_indexes", *args, stdout=out, stderr=err)
    except CommandError as e:
        return e.returncode, out.getvalue(), err.getvalue() + str(e)
    return 0, out.getvalue(), err.getvalue()


def break_two_indexes() -> None:
    """idx_users_tenant_id missing; idx_files_tenant_id INVALID (failed unique build)."""
    run_sql(
        connection,
        "INSERT INTO tenants (id, name, slug, created_at) "
        f"VALUES ('{TENANT}', 't', 't', now());"
        "INSERT INTO files (tenant_id, name, size, content_type, storage_key, created_at) "
        f"VALUES ('{TENANT}', 'a', 1, 'x', 'k1', now()), ('{TENANT}', 'b', 1, 'x', 'k2', now());"
        "DROP INDEX idx_users_tenant_id; DROP INDEX idx_files_tenant_id",
    )
    with pytest.raises(Exception, match="could not create unique index"):
        run_sql(
            connection, "CREATE UNIQUE INDEX CONCURRENTLY idx_files_tenant_id ON files (tenant_id)"
        )


@pytest.mark.django_db(transaction=True)
def test_repair__healthy_database_exits_0() -> None:
    code, out, _ = repair()
    assert code == 0
    assert "present and valid" in out


@pytest.mark.django_db(transaction=True)
def test_repair__dry_run_prints_the_exact_sql_changes_nothing_and_exits_1() -> None:
    break_two_indexes()
    code, out, _ = repair("--dry-run")
    assert code == 1
    statements = [line for line in out.splitlines() if line and not line.startswith("--")]
    assert 'DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_files_tenant_id";' in statements
    assert 'CREATE INDEX CONCURRENTLY "idx_files_tenant_id" ON "files" ("tenant_id");' in statements
    assert 'CREATE INDEX CONCURRENTLY "idx_users_tenant_id" ON "users" ("tenant_id");' in statements
    assert "SET statement_timeout = '0';" in statements
    # Nothing ran.
    assert invalid_indexes() == ["idx_files_tenant_id"]
    assert "idx_users_tenant_id" not in index_columns_by_table(["users"])["users"]
    # The printed SQL is the repair: run verbatim, it heals the database.
    for statement in statements:
        run_sql(connection, statement.rstrip(";"))
    run_sql(connection, "RESET ALL")
    all_seed_indexes_valid_and_unique()


@pytest.mark.django_db(transaction=True)
def test_repair__builds_missing_and_rebuilds_invalid_then_exits_0() -> None:
    break_two_indexes()
    code, out, err = repair()
    assert code == 0, err
    assert 'dropping the INVALID index "idx_files_tenant_id"' in out
    assert 'built index "idx_users_tenant_id"' in out
    all_seed_indexes_valid_and_unique()
    assert repair()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_repair__drifted_index_is_reported_left_alone_and_exits_1() -> None:
    run_sql(connection, "DROP INDEX idx_users_tenant_id")
    run_sql(connection, "CREATE INDEX idx_users_tenant_id ON users (email)")
    try:
        code, _, err = repair()
        assert code == 1
        assert "idx_users_tenant_id on users is drift, not repaired" in err
        assert index_columns_by_table(["users"])["users"]["idx_users_tenant_id"] == ("email",)
    finally:
        run_sql(connection, "DROP INDEX idx_users_tenant_id")
        run_sql(connection, "CREATE INDEX idx_users_tenant_id ON users (tenant_id)")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--database", "sqlite"), "PostgreSQL"),
        (("--database", "nope"), "nope"),
        (("no_such_app",), "no_such_app"),
    ],
)
def test_repair__cannot_check_exits_2(args: tuple[str, ...], expected: str) -> None:
    code, _, message = repair(*args)
    assert code == 2
    assert expected in message
