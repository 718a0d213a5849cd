"""TenantForeignKey: NOT NULL, no implicit index, PROTECT, pointing at the tenant model."""

from __future__ import annotations

import pytest
from django.db import models
from django.test.utils import isolate_apps

from tenant_indexes import TenantForeignKey
from tenant_indexes.helpdesk.models import Tenant
from tenant_indexes.tenancy import UNSET_TENANT_MODEL
from tests.testapp.models import Order, Shipment


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
    assert kwargs["to"] == "tenant_indexes_helpdesk.tenant"


def test_tenant_foreign_key__refuses_null() -> None:
    with pytest.raises(ValueError, match="cannot be nullable"):
        TenantForeignKey(null=True)


def test_tenant_foreign_key__points_at_the_configured_tenant_model() -> None:
    """Without ``to``: the help desk's Tenant here (installed, TENANT_MODEL unset)."""
    assert TenantForeignKey().remote_field.model == "tenant_indexes_helpdesk.Tenant"
    assert TenantForeignKey("tenant_pk_types.Team").remote_field.model == "tenant_pk_types.Team"


@isolate_apps("tests.testapp")
def test_tenant_foreign_key__without_a_tenant_model_is_e010(monkeypatch) -> None:
    """The models load; the field's check says what to configure (the real project is in
    tests/integration/test_own_tenant_model.py)."""
    monkeypatch.setattr("tenant_indexes.fields.tenant_model_label", lambda: None)

    class Note(models.Model):  # noqa: DJ008
        tenant = TenantForeignKey()

        class Meta:
            app_label = "testapp"

    field = Note._meta.get_field("tenant")
    assert field.remote_field.model == UNSET_TENANT_MODEL
    (error,) = [m for m in field.check() if m.id.startswith("tenant_indexes.")]
    assert error.id == "tenant_indexes.E010"
    assert "testapp.Note.tenant" in error.msg
    assert "TENANT_MODEL" in error.hint
    assert not [m for m in field.check() if m.id == "fields.E300"]


@pytest.mark.django_db
def test_tenant_foreign_key__protects_tenants_with_rows() -> None:
    tenant = Tenant.objects.create(name="A", slug="a")
    Shipment.objects.create(account=tenant, carrier="dhl")
    with pytest.raises(models.ProtectedError):
        tenant.delete()
