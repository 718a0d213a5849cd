"""A tenant table in a schema of its own, named the way Django spells it.

``db_table = '"billing"."invoice"'``: Django's ``quote_name`` leaves the text as it is, so
the table is ``invoice`` in the schema ``billing`` (the test creates the schema). Migration
``0002`` adds a tenant index and a unique constraint that includes the tenant, concurrently.
"""

from django.db import models

from tenant_indexes import TenantForeignKey, TenantIndex


class BillingInvoice(models.Model):
    tenant = TenantForeignKey()
    number = models.CharField(max_length=20)
    status = models.CharField(max_length=20)

    class Meta:
        db_table = '"billing"."invoice"'
        indexes = [TenantIndex(fields=["status"], name="invoice_tenant_status")]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "number"], name="invoice_tenant_number")
        ]

    def __str__(self) -> str:
        return self.number
