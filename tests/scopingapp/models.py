"""Models a user writes with the fail-closed manager (the scoping tests)."""

from django.db import models

from tenant_indexes import TenantForeignKey, TenantIndex, TenantScopedManager


class Project(models.Model):
    tenant = TenantForeignKey(related_name="projects")
    name = models.CharField(max_length=64)

    objects = TenantScopedManager()

    class Meta:
        indexes = [TenantIndex()]

    def __str__(self) -> str:
        return self.name


class Label(models.Model):
    tenant = TenantForeignKey(related_name="labels")
    name = models.CharField(max_length=32)

    objects = TenantScopedManager()

    class Meta:
        indexes = [TenantIndex()]

    def __str__(self) -> str:
        return self.name


class Task(models.Model):
    tenant = TenantForeignKey(related_name="tasks")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=64)
    points = models.IntegerField(default=1)
    done = models.BooleanField(default=False)
    labels = models.ManyToManyField(Label, related_name="tasks", blank=True)

    objects = TenantScopedManager()

    class Meta:
        indexes = [TenantIndex(fields=["done"])]

    def __str__(self) -> str:
        return self.title


class Comment(models.Model):
    """Uses a tenant field with another name: the scoping finds it by its type."""

    account = TenantForeignKey(related_name="comments")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="comments")
    body = models.CharField(max_length=200)

    objects = TenantScopedManager()

    class Meta:
        indexes = [TenantIndex(tenant_field="account")]

    def __str__(self) -> str:
        return self.body


class Secret(models.Model):
    """Row-level security on (migration 0002 enables it): the database isolates tenants too."""

    tenant = TenantForeignKey(related_name="secrets")
    body = models.CharField(max_length=64)

    objects = TenantScopedManager()
    tenant_rls = True

    class Meta:
        indexes = [TenantIndex()]

    def __str__(self) -> str:
        return self.body
