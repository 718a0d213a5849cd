"""The project's own tenant model and tables; every tenant foreign key is ``organization``.

``migrations/0001_initial`` is the state before the tenant indexes were declared: the
tables only. ``makemigrations`` adds them, concurrently, in a migration of its own.
"""

from django.db import models
from django.db.models.functions import Lower

from tenant_indexes import TenantForeignKey, TenantIndex, TenantManager, TenantScopedManager
from tenant_indexes.models import TenantModel


class Organization(models.Model):
    """The tenant: named in ``TENANT_INDEXES["TENANT_MODEL"]``, with a bigint key."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=100)

    class Meta:
        db_table = "organizations"

    def __str__(self) -> str:
        return self.name


class Project(models.Model):
    organization = TenantForeignKey()
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, default="active")

    objects = TenantManager()

    class Meta:
        db_table = "projects"
        indexes = [TenantIndex(fields=["status"], name="projects_org_status")]

    def __str__(self) -> str:
        return self.name


class Member(models.Model):
    organization = TenantForeignKey()
    email = models.EmailField()

    objects = TenantScopedManager()

    class Meta:
        db_table = "members"
        indexes = [TenantIndex(Lower("email"), name="members_org_lower_email")]

    def __str__(self) -> str:
        return self.email


class Invoice(TenantModel):
    """The abstract base, with its tenant field under the project's own name."""

    tenant = None
    organization = TenantForeignKey()
    number = models.CharField(max_length=32)

    class Meta(TenantModel.Meta):
        db_table = "invoices"

    def __str__(self) -> str:
        return self.number
