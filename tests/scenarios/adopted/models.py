"""A tenant table that was made outside Django, then adopted with ``migrate --fake-initial``.

The test builds ``adopted_tickets`` by hand first: ``tenant_id varchar(36)``,
where Django's ``TenantForeignKey`` to the help desk's ``Tenant`` (a ``UUIDField`` primary
key) is ``uuid``.
"""

from django.db import models

from tenant_indexes import TenantForeignKey, TenantIndex


class Ticket(models.Model):
    tenant = TenantForeignKey()
    status = models.CharField(max_length=20)

    class Meta:
        db_table = "adopted_tickets"
        indexes = [TenantIndex(fields=["status"], name="adopted_tickets_tenant_status")]

    def __str__(self) -> str:
        return self.status
