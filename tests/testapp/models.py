"""Models a user of the package would write, built from its building blocks."""

from django.db import models

from tenant_indexes import TenantForeignKey, TenantIndex
from tenant_indexes.models import TenantModel


class Order(TenantModel):
    """Inherits the base model's Meta: gets the generated (tenant_id) index."""

    number = models.CharField(max_length=32)
    status = models.CharField(max_length=16, default="new")

    def __str__(self) -> str:
        return self.number


class Invoice(TenantModel):
    """Replaces the inherited indexes with a wider tenant-leading one."""

    number = models.CharField(max_length=32)
    paid = models.BooleanField(default=False)

    class Meta(TenantModel.Meta):
        indexes = [TenantIndex(fields=["paid", "-number"])]

    def __str__(self) -> str:
        return self.number


class Shipment(models.Model):
    """Uses the foreign key and the index directly, with a custom tenant field name."""

    account = TenantForeignKey()
    carrier = models.CharField(max_length=32)

    class Meta:
        indexes = [TenantIndex(fields=["carrier"], tenant_field="account", name="shipment_acct")]

    def __str__(self) -> str:
        return self.carrier
