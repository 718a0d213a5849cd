"""The shop's tables, one copy in each tenant's schema (a tenant app)."""

from django.db import models


class Order(models.Model):
    tenant_id = models.BigIntegerField()
    status = models.CharField(max_length=16, default="new")

    class Meta:
        db_table = "shop_order"
        indexes = [models.Index(fields=["tenant_id", "status"], name="order_tenant_status")]

    def __str__(self) -> str:
        return f"order {self.pk} ({self.status})"
