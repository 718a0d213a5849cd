"""TenantModel and for_tenant() on users' own models."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, models
from django.test.utils import isolate_apps

from tenant_indexes import TenantForeignKey, TenantManager, TenantNotSetError
from tenant_indexes.helpdesk.models import Customer, Tenant
from tenant_indexes.models import TenantModel
from tests.support.pg import index_columns_by_table
from tests.testapp.models import Invoice, Order


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


@isolate_apps("tests.testapp")
def test_tenant_model__tenant_field_may_take_the_projects_own_name() -> None:
    class Invoice(TenantModel):
        tenant = None
        organization = TenantForeignKey(Tenant)

        class Meta(TenantModel.Meta):
            app_label = "testapp"

    (index,) = Invoice._meta.indexes
    assert index.fields == ["organization"]
    assert "tenant" not in {f.name for f in Invoice._meta.fields}
    sql = str(Invoice.objects.for_tenant(uuid.uuid4()).query)
    assert '"testapp_invoice"."organization_id" =' in sql


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


@isolate_apps("tests.testapp")
def test_for_tenant__finds_a_tenant_field_named_otherwise() -> None:
    class Shipment(models.Model):  # noqa: DJ008
        account = TenantForeignKey(Tenant)

        objects = TenantManager()

        class Meta:
            app_label = "testapp"

    tenant = Tenant(pk=uuid.uuid4())
    sql = str(Shipment.objects.for_tenant(tenant).query)
    assert f'"testapp_shipment"."account_id" = {tenant.pk}' in sql


@isolate_apps("tests.testapp")
def test_for_tenant__a_model_without_tenant_field_says_so() -> None:
    class Plain(models.Model):  # noqa: DJ008
        name = models.CharField(max_length=10)

        objects = TenantManager()

        class Meta:
            app_label = "testapp"

    with pytest.raises(TenantNotSetError, match="has no tenant field"):
        Plain.objects.for_tenant(1)
