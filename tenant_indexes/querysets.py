"""Tenant-scoped querysets."""

from __future__ import annotations

from typing import Any, Self

from django.db import models

from .exceptions import TenantNotSetError
from .tenancy import tenant_field_of


class TenantQuerySet(models.QuerySet):
    """A queryset that knows how to narrow itself to one tenant.

    The tenant field is found on the model (its ``TenantForeignKey``, whatever its name, or
    the field whose column is ``TENANT_INDEXES["TENANT_COLUMN"]``); a subclass may name it
    with ``tenant_field``.
    """

    tenant_field: str | None = None

    @property
    def tenant_attname(self) -> str:
        """The attribute the tenant filter uses (``organization_id``).

        Raises:
            TenantNotSetError: the model has no tenant field, so it cannot be narrowed.
        """
        if self.tenant_field:
            return str(self.model._meta.get_field(self.tenant_field).attname)
        field = tenant_field_of(self.model)
        if field is None:
            raise TenantNotSetError(
                f"{self.model.__name__} has no tenant field: give it a TenantForeignKey."
            )
        return str(field.attname)

    def for_tenant(self, tenant: Any) -> Self:
        """Rows of one tenant: a tenant instance or its primary key (int, bigint or UUID).

        The filter is on the tenant column itself (``tenant_id = %s``), so it is served by
        the tenant-leading index and needs no join.

        Raises:
            TenantNotSetError: ``tenant`` is ``None``; a tenant-scoped query without a
                tenant would otherwise return every tenant's rows.
        """
        if tenant is None:
            raise TenantNotSetError(
                f"{self.model.__name__}.objects.for_tenant() needs a tenant, got None."
            )
        pk = tenant.pk if isinstance(tenant, models.Model) else tenant
        return self.filter(**{self.tenant_attname: pk})


TenantManager = models.Manager.from_queryset(TenantQuerySet)
