"""A tenant table named ``'"billing"."invoice"'``: build, check, repair and stats compare it
by (schema, name), and every one of them can run again.

The ``qualified_table`` scenario's ``0002`` builds a tenant index and a unique constraint
that includes the tenant, concurrently. The table lives in the schema ``billing``, which is
not on the search_path, so a name compared without its schema (or quoted as one identifier)
shows up as a missing table, a mismatch or a second build.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import override_settings

from tests.support import manage
from tests.support.pg import invalid_indexes

APP = "qualified_table"
TENANT = "00000000-0000-0000-0000-0000000000b1"


def _run(sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []


def _migrate(*args: str) -> str:
    out = StringIO()
    call_command("migrate", APP, *args, stdout=out, verbosity=1)
    return out.getvalue()


def _billing_objects() -> dict[str, str]:
    """Index name -> the constraint type it backs ('' for none), in schema billing."""
    rows = _run(
        "SELECT i.relname, coalesce(c.contype::text, '') FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid "
        "WHERE x.indrelid = to_regclass('billing.invoice') AND NOT x.indisprimary"
    )
    return dict(rows)


def _check_status() -> tuple[int, dict[str, Any]]:
    code, out, err = manage.call("check_tenant_indexes", APP, "--format", "json")
    assert out, err
    return code, json.loads(out)


@pytest.fixture
def billing() -> Iterator[None]:
    _run("CREATE SCHEMA billing")
    _run(
        "INSERT INTO tenants (id, name, slug, created_at) VALUES (%s, 'b', 'b', now()) "
        "ON CONFLICT DO NOTHING",
        [TENANT],
    )
    with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, f"tests.scenarios.{APP}"]):
        try:
            yield
        finally:
            try:
                call_command("migrate", APP, "zero", "--fake", verbosity=0)
            finally:
                _run("DROP SCHEMA billing CASCADE")


@pytest.mark.django_db(transaction=True)
def test_qualified_table__migrate_twice_adopts_what_the_first_run_built(billing: None) -> None:
    first = _migrate()
    assert 'built index "invoice_tenant_status"' in first, first
    assert 'built unique constraint "invoice_tenant_number"' in first, first
    assert _billing_objects() == {"invoice_tenant_status": "", "invoice_tenant_number": "u"}
    # The second run of the same migration (unrecorded, as after a crash before the record).
    _run("DELETE FROM django_migrations WHERE app = %s AND name LIKE '0002%%'", [APP])
    second = _migrate()
    assert 'adopted the existing valid index "invoice_tenant_status"' in second, second
    assert 'adopted the existing constraint "invoice_tenant_number"' in second, second
    assert "built index" not in second
    code, report = _check_status()
    assert code == 0, report
    assert {(ix["schema"], ix["table"], ix["status"]) for ix in report["indexes"]} == {
        ("billing", "invoice", "ok")
    }
    assert {ix["name"] for ix in report["indexes"]} == {
        "invoice_tenant_status",
        "invoice_tenant_number",
    }
    stats_code, out, err = manage.call("tenant_index_stats", APP, "--format", "json")
    assert stats_code == 0, out + err
    stats = json.loads(out)
    assert {(ix["schema"], ix["name"]) for ix in stats["indexes"]} >= {
        ("billing", "invoice_tenant_status"),
        ("billing", "invoice_tenant_number"),
    }


@pytest.mark.django_db(transaction=True)
def test_qualified_table__repair_builds_the_faked_index_and_constraint_and_reruns_clean(
    billing: None,
) -> None:
    """0002 faked: repair's dry run SQL runs in the server as printed; a real repair after
    a drop builds the index and the constraint (index, then USING INDEX); twice is a no-op."""
    _migrate("0001")
    _migrate("0002", "--fake")
    assert _billing_objects() == {}
    code, report = _check_status()
    assert code == 1
    assert {f["id"] for f in report["findings"]} >= {"tenant_indexes.E001"}
    dry_code, out, err = manage.call("repair_tenant_indexes", APP, "--dry-run")
    assert dry_code == 1, out + err
    statements = [line for line in out.splitlines() if line and not line.startswith("--")]
    assert (
        'CREATE UNIQUE INDEX CONCURRENTLY "invoice_tenant_number" ON "billing"."invoice" '
        '("tenant_id", "number");'
    ) in statements, out
    assert (
        'ALTER TABLE "billing"."invoice" ADD CONSTRAINT "invoice_tenant_number" UNIQUE USING '
        'INDEX "invoice_tenant_number";'
    ) in statements, out
    assert any(
        s.startswith('CREATE INDEX CONCURRENTLY "invoice_tenant_status" ON "billing"."invoice"')
        for s in statements
    ), out
    for statement in statements:  # what the dry run prints runs as printed
        _run(statement)
    _run("RESET lock_timeout; RESET statement_timeout")
    assert _billing_objects() == {"invoice_tenant_status": "", "invoice_tenant_number": "u"}
    assert _check_status()[0] == 0
    _run('ALTER TABLE "billing"."invoice" DROP CONSTRAINT invoice_tenant_number')
    _run("DROP INDEX billing.invoice_tenant_status")
    repair_code, out, err = manage.call("repair_tenant_indexes", APP)
    assert repair_code == 0, out + err
    assert _billing_objects() == {"invoice_tenant_status": "", "invoice_tenant_number": "u"}
    again_code, out, err = manage.call("repair_tenant_indexes", APP)
    assert again_code == 0, out + err
    assert "present and valid" in out, out
    assert _check_status()[0] == 0
    assert invalid_indexes() == []


@pytest.mark.django_db(transaction=True)
def test_repair__unique_constraint_resumes_after_each_step(billing: None) -> None:
    """Stopped after the unique index (no constraint yet): repair only attaches it. An
    INVALID unique index (a concurrent build over duplicate rows) is dropped, and after the
    duplicates are gone, built and attached."""
    _migrate("0001")
    _migrate("0002", "--fake")
    _run("CREATE INDEX billing_status ON billing.invoice (tenant_id, status)")
    _run("ALTER INDEX billing.billing_status RENAME TO invoice_tenant_status")
    _run("CREATE UNIQUE INDEX invoice_tenant_number ON billing.invoice (tenant_id, number)")
    dry_code, out, _ = manage.call("repair_tenant_indexes", APP, "--dry-run")
    statements = [line for line in out.splitlines() if line and not line.startswith("--")]
    assert dry_code == 1
    assert statements == [
        'ALTER TABLE "billing"."invoice" ADD CONSTRAINT "invoice_tenant_number" UNIQUE USING '
        'INDEX "invoice_tenant_number";'
    ], out
    assert manage.call("repair_tenant_indexes", APP)[0] == 0
    assert _billing_objects()["invoice_tenant_number"] == "u"
    # INVALID, the honest way.
    _run('ALTER TABLE "billing"."invoice" DROP CONSTRAINT invoice_tenant_number')
    _run(
        "INSERT INTO billing.invoice (tenant_id, number, status) VALUES (%s, 'n1', 'open'), "
        "(%s, 'n1', 'open')",
        [TENANT, TENANT],
    )
    with pytest.raises(Exception, match="could not create unique index"):
        _run(
            "CREATE UNIQUE INDEX CONCURRENTLY invoice_tenant_number ON billing.invoice "
            "(tenant_id, number)"
        )
    assert invalid_indexes() == ["billing.invoice_tenant_number"]
    code, out, err = manage.call("repair_tenant_indexes", APP)
    assert code == 1, out + err  # the duplicates are still there: the build fails again
    assert "invoice_tenant_number" in out + err
    _run("DELETE FROM billing.invoice WHERE ctid <> (SELECT min(ctid) FROM billing.invoice)")
    assert manage.call("repair_tenant_indexes", APP)[0] == 0
    assert _billing_objects() == {"invoice_tenant_status": "", "invoice_tenant_number": "u"}
    assert invalid_indexes() == []
