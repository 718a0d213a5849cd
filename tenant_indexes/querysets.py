"""Tenant-scoped querysets."""

from __future__ import annotations

from typing import Any, Self

from django.db import models

from .exceptions import TenantNotSetError


class TenantQuerySet(models.QuerySet):
    """A queryset that knows how to narrow itself to one tenant."""

    tenant_field = "tenant"

    def for_tenant(self, tenant: Any) -> Self:
        """Rows of one tenant: a ``Tenant`` instance or its primary key.

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
        return self.filter(**{f"{self.tenant_field}_id": pk})


TenantManager = models.Manager.from_queryset(TenantQuerySet)
