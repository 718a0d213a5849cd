"""The abstract :class:`TenantModel`, and the core's one table: recorded usage snapshots.

The core app creates no help-desk table; its only table, ``tenant_indexes_usage_snapshot``
(migration ``0001``), holds what ``tenant_index_stats --record`` stores.
"""

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


class IndexUsageSnapshot(models.Model):
    """One index's usage counters on one database alias at one moment.

    Written by ``tenant_index_stats --record`` (:func:`tenant_indexes.history.record_usage`),
    read by ``--since DAYS``. ``stats_reset`` and ``postmaster_start`` say which counting
    segment the counters belong to: a reset or a crash starts a new one.
    """

    id = models.BigAutoField(primary_key=True)
    recorded_at = models.DateTimeField(db_index=True)
    database = models.CharField(max_length=100)
    schema_name = models.CharField(max_length=63)
    table_name = models.CharField(max_length=63)
    index_name = models.CharField(max_length=63)
    idx_scan = models.BigIntegerField()
    idx_tup_read = models.BigIntegerField()
    idx_tup_fetch = models.BigIntegerField()
    size_bytes = models.BigIntegerField()
    stats_reset = models.DateTimeField(null=True)
    postmaster_start = models.DateTimeField()
    in_recovery = models.BooleanField()

    class Meta:
        db_table = "tenant_indexes_usage_snapshot"
        indexes = [
            models.Index(
                fields=["database", "schema_name", "index_name", "recorded_at"],
                name="tenant_indexes_usage_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.database}:{self.schema_name}.{self.index_name}@{self.recorded_at}"
