"""A bulk table whose tenant index takes long enough to be killed mid-build."""

from django.db import models

from tenant_indexes import TenantIndex


class BulkRow(models.Model):
    # A plain uuid rather than a TenantForeignKey: the tests load hundreds of thousands of
    # rows with generate_series, and a foreign key check per row would dominate the run.
    tenant_id = models.UUIDField()
    n = models.IntegerField()
    payload = models.TextField()

    class Meta:
        db_table = "scenario_bulk_rows"
        indexes = [
            TenantIndex(fields=["n"], tenant_field="tenant_id", name="scenario_bulk_tenant_n")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.n}"
