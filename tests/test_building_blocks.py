"""TenantIndex, TenantForeignKey, TenantModel and for_tenant() on users' own models."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, models
from django.db.migrations.writer import MigrationWriter

from tenant_indexes import TenantForeignKey, TenantIndex, TenantNotSetError
from tenant_indexes.helpdesk.models import Customer, Tenant
from tests.support.pg import index_columns_by_table
from tests.testapp.models import Invoice, Order, Shipment


def test_tenant_index__prepends_the_tenant_field_once() -> None:
    assert TenantIndex(fields=["status"], name="x").fields == ["tenant", "status"]
    assert TenantIndex(fields=["tenant", "status"], name="x").fields == ["tenant", "status"]
    assert TenantIndex(name="x").fields == ["tenant"]
    assert TenantIndex(fields=["kind"], tenant_field="account", name="x").fields == [
        "account",
        "kind",
    ]


@pytest.mark.parametrize(
    "index",
    [
        TenantIndex(fields=["status", "-created_at"], name="t_status"),
        TenantIndex(name="t_only"),
        TenantIndex(fields=["kind"], tenant_field="account", name="t_acct"),
        TenantIndex(fields=["status"], name="t_partial", condition=models.Q(status="open")),
    ],
    ids=["columns", "tenant-only", "custom-field", "partial"],
)
def test_tenant_index__deconstructs_to_an_equal_index(index: TenantIndex) -> None:
    path, args, kwargs = index.deconstruct()
    assert path == "tenant_indexes.indexes.TenantIndex"
    assert "tenant" not in kwargs.get("fields", [])
    rebuilt = TenantIndex(*args, **kwargs)
    assert rebuilt == index
    assert rebuilt.fields == index.fields
    # It serialises into a migration file that imports it from the public path.
    source, imports = MigrationWriter.serialize(index)
    assert "import tenant_indexes.indexes" in imports
    assert source.startswith("tenant_indexes.indexes.TenantIndex(")


def test_tenant_index__rejects_a_descending_tenant_column() -> None:
    with pytest.raises(ValueError, match="ascending"):
        TenantIndex(fields=["-tenant", "status"], name="x")


def test_tenant_index__rejects_opclasses() -> None:
    with pytest.raises(ValueError, match="opclasses"):
        TenantIndex(fields=["name"], name="x", opclasses=["varchar_pattern_ops"])


def test_tenant_index__generated_names_are_valid_and_short() -> None:
    for model in (Order, Invoice):
        (index,) = model._meta.indexes
        assert index.fields[0] == "tenant"
        assert 0 < len(index.name) <= 30
        assert not index.name[0].isdigit() and index.name[0] != "_"
    assert Order._meta.indexes[0].name != Invoice._meta.indexes[0].name


def test_tenant_index__explicit_names_may_reach_postgresql_limit() -> None:
    """The seed's 37-character name passes Django's model checks (E034 is for Oracle's 30)."""
    from tenant_indexes.helpdesk.models import IntegrationCredential

    errors = [e for e in IntegrationCredential.check() if e.id == "models.E034"]
    assert errors == []


@pytest.mark.django_db
def test_tenant_model__builds_tenant_leading_indexes_and_no_fk_index() -> None:
    live = index_columns_by_table(["testapp_order", "testapp_invoice", "testapp_shipment"])
    assert sorted(live["testapp_order"].values()) == [("id",), ("tenant_id",)]
    assert sorted(live["testapp_invoice"].values()) == [("id",), ("tenant_id", "paid", "number")]
    assert sorted(live["testapp_shipment"].values()) == [("account_id", "carrier"), ("id",)]


@pytest.mark.django_db
def test_tenant_model__descending_column_is_built_descending() -> None:
    name = Invoice._meta.indexes[0].name
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_indexdef(%s::regclass)", [name])
        assert cursor.fetchone()[0].endswith("(tenant_id, paid, number DESC)")


def test_tenant_foreign_key__defaults() -> None:
    field = Order._meta.get_field("tenant")
    assert isinstance(field, TenantForeignKey)
    assert field.null is False
    assert field.db_index is False
    assert field.remote_field.on_delete is models.PROTECT
    assert field.related_model is Tenant
    assert field.get_internal_type() == "ForeignKey"
    _name, path, _args, kwargs = field.deconstruct()
    assert path == "tenant_indexes.fields.TenantForeignKey"
    assert kwargs["db_index"] is False


def test_tenant_foreign_key__refuses_null() -> None:
    with pytest.raises(ValueError, match="cannot be nullable"):
        TenantForeignKey(null=True)


@pytest.mark.django_db
def test_for_tenant__returns_only_that_tenants_rows() -> None:
    a = Tenant.objects.create(name="A", slug="a")
    b = Tenant.objects.create(name="B", slug="b")
    Customer.objects.create(tenant=a, name="a1", email="a1@example.com")
    Customer.objects.create(tenant=b, name="b1", email="b1@example.com")
    assert [c.name for c in Customer.objects.for_tenant(a)] == ["a1"]
    assert [c.name for c in Customer.objects.for_tenant(b.pk)] == ["b1"]
    assert Customer.objects.for_tenant(uuid.uuid4()).count() == 0
    Order.objects.create(tenant=a, number="1")
    assert Order.objects.for_tenant(a).count() == 1
    assert Order.objects.for_tenant(b).count() == 0


@pytest.mark.django_db
def test_for_tenant__filters_on_the_column_without_a_join() -> None:
    tenant = Tenant.objects.create(name="A", slug="a")
    sql = str(Customer.objects.for_tenant(tenant).query)
    assert '"customers"."tenant_id" =' in sql
    assert "JOIN" not in sql


def test_for_tenant__none_raises() -> None:
    with pytest.raises(TenantNotSetError, match="needs a tenant"):
        Customer.objects.for_tenant(None)


@pytest.mark.django_db
def test_tenant_foreign_key__protects_tenants_with_rows() -> None:
    tenant = Tenant.objects.create(name="A", slug="a")
    Shipment.objects.create(account=tenant, carrier="dhl")
    with pytest.raises(models.ProtectedError):
        tenant.delete()
