"""A bare ``TenantForeignKey()`` in a project with neither ``TENANT_MODEL`` nor the help desk."""

from django.db import models

from tenant_indexes import TenantForeignKey, TenantIndex


class Note(models.Model):
    tenant = TenantForeignKey()
    body = models.TextField()

    class Meta:
        indexes = [TenantIndex(name="note_tenant")]

    def __str__(self) -> str:
        return self.body
