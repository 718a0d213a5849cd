"""Model forms for tenant-scoped models.

A ``ModelForm`` or ``ModelChoiceField`` of a fail-closed model needs nothing special: its
queryset is bound when it runs (see :mod:`tenant_indexes.querybinding`), so a form class defined
at import time renders and validates the choices of the tenant current at request time.
:class:`TenantModelForm` adds the check that matters when the form spans tenants (a superuser in
:func:`~tenant_indexes.all_tenants`, e.g. in the admin): every chosen related row must belong to
the row's own tenant.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from .scoping import get_current_tenant_id
from .tenancy import tenant_field_of

__all__ = ["TenantModelForm"]


def _pk(value: Any) -> Any:
    return value.pk if isinstance(value, models.Model) else value


class TenantModelForm(forms.ModelForm):
    """A ``ModelForm`` that refuses related rows of another tenant than the row's own.

    The row's tenant is the one chosen in the form (when the tenant field is a form field),
    else the instance's, else the current tenant.
    """

    def _row_tenant_id(self, tenant_field: Any) -> Any:
        if tenant_field.name in self.cleaned_data:
            return _pk(self.cleaned_data[tenant_field.name])
        return getattr(self.instance, tenant_field.attname, None) or get_current_tenant_id()

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or self.cleaned_data
        tenant_field = tenant_field_of(self._meta.model)
        if tenant_field is None:
            return cleaned
        tenant_id = self._row_tenant_id(tenant_field)
        if tenant_id is None:
            return cleaned
        for name, value in list(cleaned.items()):
            if name == tenant_field.name:
                continue
            rows = list(value) if isinstance(value, models.QuerySet) else [value]
            for row in rows:
                if not isinstance(row, models.Model):
                    continue
                field = tenant_field_of(type(row))
                if field is not None and str(getattr(row, field.attname)) != str(tenant_id):
                    self.add_error(
                        name,
                        ValidationError(
                            "%(row)s belongs to another tenant.",
                            code="other_tenant",
                            params={"row": row},
                        ),
                    )
                    break
        return cleaned
