"""The tenant model (TENANT_MODEL, the help-desk default) and tenant-field discovery.

Also tenant models whose primary key is an integer or a UUID (``tests/scenarios/
tenant_pk_types``); the bigint case is the own-tenant project in ``tests/integration``.
"""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, models
from django.test import override_settings
from django.test.utils import isolate_apps

from demo_project.demo.models import ScopedTicket
from tenant_indexes import (
    TenantModelNotConfigured,
    TenantNotSetError,
    TenantScopeError,
    get_tenant_model,
    tenant_column_of,
    tenant_context,
    tenant_field_of,
    tenant_model_label,
)
from tenant_indexes.checks import check_tenant_index_declarations
from tenant_indexes.health import check_databases
from tenant_indexes.helpdesk.models import Tenant, Ticket
from tests.scenarios.tenant_pk_types.models import Board, Player, Team, Workspace
from tests.support.pg import index_columns_by_table
from tests.testapp.models import Order, Shipment


def test_tenant_model__defaults_to_the_helpdesk_tenant_when_installed() -> None:
    assert tenant_model_label() == "tenant_indexes_helpdesk.Tenant"
    assert get_tenant_model() is Tenant


def test_tenant_model__comes_from_the_setting() -> None:
    with override_settings(TENANT_INDEXES={"TENANT_MODEL": "tenant_pk_types.Team"}):
        assert tenant_model_label() == "tenant_pk_types.Team"
        assert get_tenant_model() is Team
        assert check_tenant_index_declarations() == []


def test_tenant_model__not_installed_is_e010() -> None:
    with override_settings(TENANT_INDEXES={"TENANT_MODEL": "accounts.Organization"}):
        with pytest.raises(TenantModelNotConfigured, match="not an installed model"):
            get_tenant_model()
        messages = check_tenant_index_declarations()
    assert [m.id for m in messages] == ["tenant_indexes.E010"]
    assert "accounts.Organization" in messages[0].msg
    assert messages[0].hint


def test_tenant_model__unset_without_the_helpdesk_has_none(monkeypatch) -> None:
    monkeypatch.setattr("tenant_indexes.tenancy.helpdesk_installed", lambda: False)
    assert tenant_model_label() is None
    with pytest.raises(TenantModelNotConfigured, match="No tenant model is configured"):
        get_tenant_model()


@pytest.mark.parametrize(
    ("model", "name", "column"),
    [
        (Order, "tenant", "tenant_id"),
        (Shipment, "account", "account_id"),
        (Board, "workspace", "workspace_id"),
        (Player, "team", "team_id"),
        (Ticket, "tenant", "tenant_id"),
    ],
)
def test_tenant_field_of__finds_the_tenant_foreign_key_by_type(model, name, column) -> None:
    field = tenant_field_of(model)
    assert field is not None and (field.name, field.column) == (name, column)
    assert tenant_column_of(model) == column


def test_tenant_field_of__a_proxy_has_its_concrete_models_field() -> None:
    field = tenant_field_of(ScopedTicket)
    assert field is not None and field.name == "tenant"
    assert tenant_column_of(ScopedTicket) is None  # the proxy has no table of its own


@isolate_apps("tests.testapp")
def test_tenant_field_of__falls_back_to_the_tenant_column() -> None:
    class Legacy(models.Model):  # noqa: DJ008
        tenant_id = models.IntegerField()

        class Meta:
            app_label = "testapp"

    class Custom(models.Model):  # noqa: DJ008
        org = models.ForeignKey(Tenant, on_delete=models.CASCADE, db_column="org_ref")

        class Meta:
            app_label = "testapp"

    class Plain(models.Model):  # noqa: DJ008
        name = models.CharField(max_length=10)

        class Meta:
            app_label = "testapp"

    assert tenant_field_of(Legacy).name == "tenant_id"
    assert tenant_field_of(Custom) is None
    with override_settings(TENANT_INDEXES={"TENANT_COLUMN": "org_ref"}):
        assert tenant_field_of(Custom).name == "org"
        assert tenant_column_of(Custom) == "org_ref"
    assert tenant_field_of(Plain) is None


@pytest.mark.django_db
def test_tenant_pk_types__foreign_keys_take_the_tenant_key_type() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT table_name, column_name, data_type FROM information_schema.columns
             WHERE (table_name, column_name) IN (('tenant_pk_types_board', 'workspace_id'),
                                                 ('tenant_pk_types_player', 'team_id'))
             ORDER BY table_name
            """
        )
        assert cursor.fetchall() == [
            ("tenant_pk_types_board", "workspace_id", "integer"),
            ("tenant_pk_types_player", "team_id", "uuid"),
        ]


@pytest.mark.django_db
def test_tenant_pk_types__indexes_lead_with_the_tenant_column() -> None:
    live = index_columns_by_table(["tenant_pk_types_board", "tenant_pk_types_player"])
    assert live["tenant_pk_types_board"]["pk_board_ws_archived"] == ("workspace_id", "archived")
    assert live["tenant_pk_types_player"]["pk_player_team_nick"] == ("team_id", "nickname")
    report = check_databases(["default"], app_labels=["tenant_pk_types"])
    assert report.status == "ok", report.as_dict()["findings"]
    assert {ix.name for ix in report.indexes} == {"pk_board_ws_archived", "pk_player_team_nick"}


@pytest.mark.django_db
def test_tenant_pk_types__integer_key_with_the_scoped_manager() -> None:
    one, two = Workspace.objects.create(name="one"), Workspace.objects.create(name="two")
    with tenant_context(one):
        Board.objects.create(title="roadmap")
        assert [b.title for b in Board.objects.all()] == ["roadmap"]
        with pytest.raises(TenantScopeError):
            Board.objects.create(title="x", workspace=two)
    with tenant_context(two.pk):
        assert Board.objects.count() == 0
    assert [b.title for b in Board.objects.for_tenant(one.pk)] == ["roadmap"]
    with pytest.raises(TenantNotSetError):
        Board.objects.count()


@pytest.mark.django_db
def test_tenant_pk_types__uuid_key_with_for_tenant() -> None:
    red, blue = Team.objects.create(name="red"), Team.objects.create(name="blue")
    Player.objects.create(team=red, nickname="Ann")
    Player.objects.create(team=blue, nickname="Bob")
    assert [p.nickname for p in Player.objects.for_tenant(red)] == ["Ann"]
    assert [p.nickname for p in Player.objects.for_tenant(str(blue.pk))] == ["Bob"]
    assert Player.objects.for_tenant(uuid.uuid4()).count() == 0
