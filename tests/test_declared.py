"""What the installed models declare: no database access, routers and model kinds respected."""

from __future__ import annotations

import pytest
from django.db import models
from django.test import override_settings
from django.test.utils import isolate_apps

from tenant_indexes import TenantForeignKey, TenantIndex
from tenant_indexes.declared import declared_tenant_tables, tenant_table_for_model
from tests.support.helpdesk import HELPDESK_TABLES

SEED_TABLES = set(HELPDESK_TABLES) - {"tenants"}  # the tenant-scoped ones


class NoTestappRouter:
    """Keeps the test apps' models off every alias."""

    def allow_migrate(self, db, app_label, **hints):
        return False if app_label in {"testapp", "scopingapp", "tenant_pk_types"} else None


def _by_table(tables):
    return {t.table: t for t in tables}


def test_declared__seed_and_test_app_tables_with_their_tenant_indexes() -> None:
    tables = _by_table(declared_tenant_tables("default"))
    assert set(tables) == SEED_TABLES | {
        "testapp_order",
        "testapp_invoice",
        "testapp_shipment",
        "scopingapp_project",
        "scopingapp_label",
        "scopingapp_task",
        "scopingapp_comment",
        "scopingapp_secret",
        "tenant_pk_types_board",
        "tenant_pk_types_player",
    }
    # tenants itself is not tenant-scoped; messages keeps its ticket-leading index too.
    assert [ix.name for ix in tables["messages"].indexes] == [
        "idx_messages_tenant_id",
        "idx_messages_ticket_tenant",
    ]
    ticket_tenant = tables["messages"].indexes[1]
    assert ticket_tenant.columns == ("ticket_id", "tenant_id")
    assert ticket_tenant.leads_with == "ticket_id"
    assert tables["tickets"].indexes[1].columns == ("tenant_id", "status")


def test_declared__resolves_columns_order_and_custom_tenant_field() -> None:
    tables = _by_table(declared_tenant_tables("default", ["testapp"]))
    assert set(tables) == {"testapp_order", "testapp_invoice", "testapp_shipment"}
    invoice = tables["testapp_invoice"].indexes[0]
    assert invoice.columns == ("tenant_id", "paid", "number")
    assert invoice.descending == (False, False, True)
    assert invoice.method == "btree" and not invoice.unique
    shipment = tables["testapp_shipment"]
    assert shipment.tenant_column == "account_id"
    assert shipment.indexes[0].columns == ("account_id", "carrier")
    assert all(t.has_tenant_leading_index for t in tables.values())


def test_declared__respects_database_routers() -> None:
    with override_settings(DATABASE_ROUTERS=[f"{__name__}.NoTestappRouter"]):
        tables = _by_table(declared_tenant_tables("default"))
    assert set(tables) == SEED_TABLES


def test_declared__unknown_app_label_raises_lookup_error() -> None:
    with pytest.raises(LookupError):
        declared_tenant_tables("default", ["no_such_app"])


@isolate_apps("tests.testapp")
def test_declared__skips_proxy_unmanaged_and_untenanted_models() -> None:
    class Base(models.Model):  # noqa: DJ008
        tenant = TenantForeignKey()

        class Meta:
            app_label = "testapp"
            indexes = [TenantIndex(name="iso_base_tenant")]

    class Proxy(Base):  # noqa: DJ008
        class Meta:
            proxy = True
            app_label = "testapp"

    class Unmanaged(models.Model):  # noqa: DJ008
        tenant = TenantForeignKey()

        class Meta:
            managed = False
            app_label = "testapp"

    class Plain(models.Model):  # noqa: DJ008
        name = models.CharField(max_length=10)

        class Meta:
            app_label = "testapp"

    assert tenant_table_for_model(Base) is not None
    assert tenant_table_for_model(Proxy) is None
    assert tenant_table_for_model(Unmanaged) is None
    assert tenant_table_for_model(Plain) is None


@isolate_apps("tests.testapp")
def test_declared__configured_tenant_column_constraints_and_implicit_indexes() -> None:
    class Legacy(models.Model):  # noqa: DJ008
        # A raw column, no TenantForeignKey: found by the configured column name.
        org_id = models.IntegerField(db_index=True)
        code = models.CharField(max_length=10)

        class Meta:
            app_label = "testapp"
            indexes = [
                models.Index(fields=["org_id", "code"], name="legacy_org_code"),
                models.Index(fields=["code"], name="legacy_code"),
            ]
            constraints = [
                models.UniqueConstraint(fields=["org_id", "code"], name="legacy_org_code_key")
            ]

    assert tenant_table_for_model(Legacy) is None  # default column is tenant_id
    with override_settings(TENANT_INDEXES={"TENANT_COLUMN": "org_id"}):
        table = tenant_table_for_model(Legacy, "default")
    assert table is not None and table.tenant_column == "org_id"
    by_name = {ix.name: ix for ix in table.indexes}
    assert "legacy_code" not in by_name  # does not involve the tenant column
    assert by_name["legacy_org_code_key"].unique
    assert by_name["legacy_org_code_key"].origin == "constraint"
    implicit = [ix for ix in table.indexes if ix.origin == "implicit"]
    assert [ix.columns for ix in implicit] == [("org_id",)]
    assert implicit[0].name.startswith("testapp_legacy_org_id")


@isolate_apps("tests.testapp")
def test_declared__partial_and_expression_indexes_keep_their_sql() -> None:
    from django.db.models.functions import Lower

    class Note(models.Model):  # noqa: DJ008
        tenant = TenantForeignKey()
        title = models.CharField(max_length=10)
        archived = models.BooleanField(default=False)

        class Meta:
            app_label = "testapp"
            indexes = [
                TenantIndex(name="note_open", condition=models.Q(archived=False)),
                models.Index(Lower("title"), "tenant", name="note_lower"),
            ]

    table = tenant_table_for_model(Note, "default")
    assert table is not None
    open_ix, lower_ix = table.indexes
    assert open_ix.condition is not None and "archived" in open_ix.condition
    # A partial index does not serve every tenant query, and LOWER(title) leads the other.
    assert not table.has_tenant_leading_index
    # Expression indexes are only known by their SQL, not column by column.
    assert lower_ix.expressions is not None and "LOWER" in lower_ix.expressions.upper()
    # A bare field among expressions is a plain key column in PostgreSQL's catalog too.
    assert lower_ix.columns == (None, "tenant_id")
