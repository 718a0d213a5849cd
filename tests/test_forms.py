"""Model forms of fail-closed models, defined at import time like a user writes them."""

from __future__ import annotations

import pytest
from django import forms

from tenant_indexes import TenantNotSetError, tenant_context
from tenant_indexes.forms import TenantModelForm
from tests.scopingapp.models import Project, Task
from tests.test_scoping import World, _populate


class TaskForm(forms.ModelForm):
    """Module level, with a foreign key to a scoped model: importing it must not raise."""

    class Meta:
        model = Task
        fields = ["project", "title"]


class ProjectPicker(forms.Form):
    project = forms.ModelChoiceField(queryset=Project.objects.all())


class TaskAcrossTenantsForm(TenantModelForm):
    class Meta:
        model = Task
        fields = ["tenant", "project", "title"]


@pytest.fixture
def world(db: None) -> World:
    return _populate()


def test_model_form__renders_only_the_current_tenants_choices(world: World) -> None:
    for tenant, mine, theirs in ((world.a, "a-project", "b-project"), (world.b, "b-", "a-")):
        with tenant_context(tenant):
            html = TaskForm().as_div() + ProjectPicker().as_div()
        assert mine in html and theirs not in html


def test_model_form__another_tenants_row_is_not_a_valid_choice(world: World) -> None:
    with tenant_context(world.a):
        form = TaskForm(data={"project": world.b_project.pk, "title": "x"})
        assert not form.is_valid()
        assert "project" in form.errors
        good = TaskForm(data={"project": world.a_project.pk, "title": "x"})
        assert good.is_valid()
        task = good.save()
    assert task.tenant_id == world.a.pk


def test_model_form__rendering_without_a_tenant_raises(world: World) -> None:
    with pytest.raises(TenantNotSetError):
        TaskForm().as_div()


def test_tenant_model_form__refuses_rows_of_two_tenants(world: World) -> None:
    from tenant_indexes import all_tenants

    with all_tenants():
        form = TaskAcrossTenantsForm(
            data={"tenant": world.b.pk, "project": world.a_project.pk, "title": "x"}
        )
        assert not form.is_valid()
        assert form.errors["project"] == [f"{world.a_project} belongs to another tenant."]
