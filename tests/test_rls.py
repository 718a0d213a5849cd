"""Row-level security on real PostgreSQL, as the application's non-owner role.

The ``Secret`` table of the scoping app has the tenant policy (its migration runs
``EnableTenantRowLevelSecurity``). The test suite connects as a superuser, which always bypasses
RLS, so each test switches to a role made for it (created inside the test's transaction, so it
is gone afterwards) with the privileges an application role has.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from django.db import DatabaseError, connection, transaction

from tenant_indexes import TenantScopeError
from tenant_indexes.findings import E_RLS_POLICY_MISSING, W_RLS_POLICY_UNSERVED
from tenant_indexes.helpdesk.models import Tenant
from tenant_indexes.rls import (
    EnableTenantRowLevelSecurity,
    find_rls_problems,
    rls_maintenance,
    rls_tenant,
    set_rls_tenant,
)
from tests.scopingapp.models import Secret

APP_ROLE = "ti_test_app"
MAINTENANCE_ROLE = "ti_test_maintenance"


def _sql(statement: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


@contextlib.contextmanager
def as_app_role() -> Iterator[None]:
    _sql(f"SET ROLE {APP_ROLE}")
    try:
        yield
    finally:
        _sql("RESET ROLE")


@pytest.fixture
def tenants(db: None) -> tuple[Tenant, Tenant]:
    _sql(f"CREATE ROLE {APP_ROLE} NOLOGIN")
    _sql(f"CREATE ROLE {MAINTENANCE_ROLE} NOLOGIN BYPASSRLS")
    _sql(f"GRANT {MAINTENANCE_ROLE} TO {APP_ROLE}")
    _sql(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}, {MAINTENANCE_ROLE}")
    for role in (APP_ROLE, MAINTENANCE_ROLE):
        _sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON scopingapp_secret TO {role}")
        _sql(f"GRANT USAGE ON SEQUENCE scopingapp_secret_id_seq TO {role}")
    a = Tenant.objects.create(name="A", slug="a")
    b = Tenant.objects.create(name="B", slug="b")
    for tenant in (a, b):
        for i in range(3):
            Secret.objects.create(tenant=tenant, body=f"{tenant.slug}-{i}")
    return a, b


def _visible() -> list[str]:
    return [r[0] for r in _sql("SELECT body FROM scopingapp_secret ORDER BY body")]


def test_rls__the_app_role_sees_only_the_scoped_tenant(tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    with as_app_role():
        with rls_tenant(a):
            assert _visible() == ["a-0", "a-1", "a-2"]  # raw SQL: the database filters
            assert [s.body for s in Secret.objects.order_by("body")] == ["a-0", "a-1", "a-2"]
        with rls_tenant(b):
            assert _visible() == ["b-0", "b-1", "b-2"]


def test_rls__without_a_tenant_the_app_role_sees_nothing(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    with as_app_role():
        assert _visible() == []
        with rls_tenant(a):
            pass
        assert _visible() == []  # the value ended with its transaction (savepoint: restored)


def test_rls__writes_into_another_tenant_are_refused_by_the_policy(
    tenants: tuple[Tenant, Tenant],
) -> None:
    a, b = tenants
    with as_app_role(), rls_tenant(a):
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            _sql(
                "INSERT INTO scopingapp_secret (tenant_id, body) VALUES (%s, 'x')",
                [b.pk],
            )
        assert _sql("UPDATE scopingapp_secret SET body = 'gone' WHERE tenant_id = %s", [b.pk]) == []
        assert _sql("SELECT count(*) FROM scopingapp_secret WHERE body = 'gone'") == [(0,)]
    assert Secret.objects.unscoped().filter(tenant=b, body__startswith="b-").count() == 3


def test_rls__maintenance_names_a_bypass_role(tenants: tuple[Tenant, Tenant]) -> None:
    with as_app_role():
        with rls_maintenance(MAINTENANCE_ROLE):
            assert len(_visible()) == 6
            assert Secret.objects.count() == 6  # the ORM's scope is lifted too
        assert _visible() == []


def test_rls__set_rls_tenant_needs_a_transaction(transactional_db: None) -> None:
    """In autocommit the value would end with the statement: refused, not silently lost."""
    with pytest.raises(TenantScopeError, match="needs a transaction"):
        set_rls_tenant(1)


def test_rls__policy_sql_is_the_tenant_predicate() -> None:
    op = EnableTenantRowLevelSecurity("secret", force=True)
    statements = op._statements(Secret, connection)
    assert statements[1] == 'ALTER TABLE "scopingapp_secret" FORCE ROW LEVEL SECURITY'
    assert (
        "USING (\"tenant_id\" = NULLIF(current_setting('tenant_indexes.tenant', true), '')"
        "::uuid)" in statements[2]
    )
    assert op.deconstruct()[2] == {"model_name": "secret", "force": True}


# The check's findings.


def test_check__policy_with_its_tenant_index_is_not_reported(
    tenants: tuple[Tenant, Tenant],
) -> None:
    assert find_rls_problems("default", [Secret]) == []


def test_check__policy_without_a_tenant_leading_index_is_w030(
    tenants: tuple[Tenant, Tenant],
) -> None:
    with transaction.atomic():
        _sql(f"DROP INDEX {Secret._meta.indexes[0].name}")
        findings = find_rls_problems("default", [Secret])
        transaction.set_rollback(True)
    assert [(f.id, f.table) for f in findings] == [(W_RLS_POLICY_UNSERVED, "scopingapp_secret")]
    assert "Index Cond" in findings[0].message


def test_check__rls_disabled_or_policy_dropped_is_e030(tenants: tuple[Tenant, Tenant]) -> None:
    _sql("SET CONSTRAINTS ALL IMMEDIATE")  # no pending trigger events before ALTER TABLE
    for statement in (
        "ALTER TABLE scopingapp_secret DISABLE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON scopingapp_secret",
    ):
        with transaction.atomic():
            _sql(statement)
            findings = find_rls_problems("default", [Secret])
            transaction.set_rollback(True)
        assert [f.id for f in findings] == [E_RLS_POLICY_MISSING], statement


def test_middleware__runs_the_view_in_a_transaction_with_the_tenant(
    tenants: tuple[Tenant, Tenant],
) -> None:
    from django.http import HttpResponse
    from django.test import RequestFactory

    from tenant_indexes.rls import TenantRLSMiddleware

    def view(request: object) -> HttpResponse:
        assert connection.in_atomic_block
        with as_app_role():
            return HttpResponse(",".join(_visible()))

    request = RequestFactory().get("/")
    request.tenant = tenants[1]
    assert TenantRLSMiddleware(view)(request).content == b"b-0,b-1,b-2"
    with as_app_role():
        assert _visible() == []  # the value ended with the middleware's transaction
