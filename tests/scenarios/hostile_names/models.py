"""A tenant table and indexes whose names PostgreSQL accepts only quoted.

The names carry a double quote, a space, mixed case, a dot and a semicolon; one index name
is an injection attempt that, written into SQL unquoted (or quoted without doubling its
``"``), ends the identifier and drops the ``canary`` table. The test puts the table in a
schema with a name of the same kind (``CHECK_SCHEMAS``).
"""

from django.db import models

from tenant_indexes import TenantIndex

from .names import INJECTION, SPACED, TABLE


class HostileRow(models.Model):
    tenant_id = models.UUIDField()
    n = models.IntegerField()

    class Meta:
        db_table = TABLE
        indexes = [
            TenantIndex(fields=["n"], tenant_field="tenant_id", name=INJECTION),
            TenantIndex(fields=["id"], tenant_field="tenant_id", name=SPACED),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.n}"
