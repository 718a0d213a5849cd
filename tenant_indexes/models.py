"""The abstract :class:`TenantModel`; the core app itself has no concrete model (no table)."""

from __future__ import annotations

from django.db import models

from .fields import TenantForeignKey
from .indexes import TenantIndex
from .querysets import TenantManager


class TenantModel(models.Model):
    """Abstract base for users' tenant-scoped models.

    Gives the model a ``tenant`` foreign key to the tenant model
    (``TENANT_INDEXES["TENANT_MODEL"]``), a ``for_tenant()`` manager and a tenant-only
    :class:`TenantIndex` with a generated name. A project that calls its tenant field
    otherwise replaces the inherited one (``tenant = None`` and
    ``organization = TenantForeignKey()``); the index and the manager find it.

    A subclass that declares its own ``Meta`` should inherit this one
    (``class Meta(TenantModel.Meta)``); replacing ``indexes`` is fine as long as one of
    them leads with the tenant (any ``TenantIndex`` does), and the system checks say so
    when none does.
    """

    tenant = TenantForeignKey()

    objects = TenantManager()

    class Meta:
        abstract = True
        indexes = [TenantIndex(fields=[])]
