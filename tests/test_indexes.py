"""TenantIndex: leads with the model's tenant field, whatever its name; validates as Index."""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.db import connection, models
from django.db.migrations.state import ModelState, ProjectState
from django.db.migrations.writer import MigrationWriter
from django.db.models import F
from django.db.models.functions import Lower
from django.test.utils import isolate_apps

from tenant_indexes import TenantForeignKey, TenantIndex
from tenant_indexes.helpdesk.models import Tenant
from tests.testapp.models import Invoice, Order


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
        TenantIndex(Lower("email"), F("created_at").desc(), name="t_expr"),
    ],
    ids=["columns", "tenant-only", "custom-field", "partial", "expressions"],
)
def test_tenant_index__deconstructs_to_an_equal_index(index: TenantIndex) -> None:
    path, args, kwargs = index.deconstruct()
    assert path == "tenant_indexes.indexes.TenantIndex"
    assert "tenant" not in kwargs.get("fields", [])
    assert F("tenant") not in args
    rebuilt = TenantIndex(*args, **kwargs)
    assert rebuilt == index
    assert rebuilt.fields == index.fields
    assert rebuilt.expressions == index.expressions
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


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {"fields": "status", "name": "x"}, "Index.fields must be a list or tuple"),
        ((Lower("email"),), {}, "must be named to use expressions"),
        ((Lower("email"),), {"fields": ["status"], "name": "x"}, "mutually exclusive"),
        ((), {"fields": ["status"], "condition": "status = 'open'"}, "must be a Q instance"),
        ((), {"fields": [1], "name": "x"}, "only strings"),
        ((), {"fields": ["status"], "include": ["body"]}, "covering index must be named"),
    ],
    ids=[
        "fields-string",
        "expression-unnamed",
        "fields-and-expressions",
        "condition",
        "int",
        "include",
    ],
)
def test_tenant_index__validates_its_arguments_as_index_does(args, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        TenantIndex(*args, **kwargs)


def test_tenant_index__generated_names_are_valid_and_short() -> None:
    for model in (Order, Invoice):
        (index,) = model._meta.indexes
        assert index.fields[0] == "tenant"
        assert 0 < len(index.name) <= 30
        assert not index.name[0].isdigit() and index.name[0] != "_"
    assert Order._meta.indexes[0].name != Invoice._meta.indexes[0].name


def test_tenant_index__explicit_names_may_reach_postgresql_limit() -> None:
    """The help desk's 37-character name passes Django's model checks (E034 is for Oracle)."""
    from tenant_indexes.helpdesk.models import IntegrationCredential

    errors = [e for e in IntegrationCredential.check() if e.id == "models.E034"]
    assert errors == []


def tenant_model(name: str, tenant_field: str, column: str, *indexes: TenantIndex) -> Any:
    """A model of ``tests.testapp`` (inside ``isolate_apps``) with a tenant foreign key called
    ``tenant_field``, one text ``column`` and ``indexes``."""
    meta = type("Meta", (), {"app_label": "testapp", "indexes": list(indexes)})
    attrs = {
        "__module__": __name__,
        tenant_field: TenantForeignKey(Tenant),
        column: models.CharField(max_length=100),
        "Meta": meta,
    }
    return type(name, (models.Model,), attrs)


@isolate_apps("tests.testapp")
def test_tenant_index__finds_a_tenant_field_of_any_name() -> None:
    Project = tenant_model(
        "Project",
        "organization",
        "status",
        TenantIndex(fields=["status"], name="project_org_status"),
        TenantIndex(fields=["-status"]),
    )

    named, generated = Project._meta.indexes
    assert named.tenant_field == "organization"
    assert named.fields == ["organization", "status"]
    assert generated.fields == ["organization", "-status"]
    assert "organiz" in generated.name
    # The tenant field is found again, not written out: the migration stays field-agnostic.
    assert named.deconstruct()[2] == {"name": "project_org_status", "fields": ["status"]}
    editor = connection.schema_editor()
    assert str(named.create_sql(Project, editor)) == (
        'CREATE INDEX "project_org_status" ON "testapp_project" ("organization_id", "status")'
    )
    assert str(generated.create_sql(Project, editor)).endswith('("organization_id", "status" DESC)')


@isolate_apps("tests.testapp")
def test_tenant_index__expressions_lead_with_the_tenant_column() -> None:
    Member = tenant_model(
        "Member", "account", "email", TenantIndex(Lower("email"), name="member_acct_email")
    )

    (index,) = Member._meta.indexes
    assert index.expressions == (F("account"), Lower("email"))
    sql = str(index.create_sql(Member, connection.schema_editor()))
    assert (
        sql
        == 'CREATE INDEX "member_acct_email" ON "testapp_member" ("account_id", (LOWER("email")))'
    )


@isolate_apps("tests.testapp")
def test_tenant_index__an_index_from_a_migration_meets_its_historical_model() -> None:
    """A migration's TenantIndex names no tenant field; the rendered model supplies it."""
    Project = tenant_model(
        "Project",
        "organization",
        "status",
        TenantIndex(fields=["status"], name="project_org_status"),
    )

    state = ProjectState()
    state.add_model(ModelState.from_model(Tenant))
    state.add_model(ModelState.from_model(Project))
    (from_state,) = state.models["testapp", "project"].options["indexes"]
    assert from_state == Project._meta.indexes[0]
    historical = state.apps.get_model("testapp", "Project")
    (index,) = historical._meta.indexes
    assert index.fields == ["organization", "status"]
    # An operation's index object (never attached) is resolved when it builds.
    loose = TenantIndex(fields=["status"], name="project_org_status")
    sql = str(loose.create_sql(historical, connection.schema_editor()))
    assert '("organization_id", "status")' in sql
    assert apps.get_model("tenant_indexes_helpdesk", "Tenant") is Tenant
