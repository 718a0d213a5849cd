"""The help desk: its tenant model and the eight tenant-scoped tables.

Table and index names are part of the public contract (``check_tenant_indexes`` reports
them by name, and existing databases already have them). Every tenant foreign key is a
:class:`~tenant_indexes.fields.TenantForeignKey` to :class:`Tenant` (NOT NULL, no implicit
index) because the explicit ``idx_<table>_tenant_id`` index covers it.

The tenant-leading indexes are not created by ``0001_initial``: ``0002`` builds them with
``CREATE INDEX CONCURRENTLY`` so that adding the app to a live database blocks no writes.
"""

from __future__ import annotations

import uuid

from django.db import models

from tenant_indexes.fields import TenantForeignKey
from tenant_indexes.indexes import TenantIndex
from tenant_indexes.querysets import TenantManager


class Tenant(models.Model):
    """A customer organisation of the help desk; every other row belongs to one."""

    # uuid: 16 bytes in PostgreSQL's native type, half the seed's varchar(36), and no
    # extra varchar_pattern_ops "_like" index.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=63, db_index=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "tenants"
        # A constraint rather than unique=True: equality lookups need no extra
        # varchar_pattern_ops "_like" index.
        constraints = [models.UniqueConstraint(fields=["slug"], name="tenants_slug_key")]

    def __str__(self) -> str:
        return self.name


class Customer(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        INACTIVE = "inactive", "Inactive"
        BLOCKED = "blocked", "Blocked"

    tenant = TenantForeignKey(Tenant)
    name = models.CharField(max_length=200)
    email = models.EmailField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()

    class Meta:
        db_table = "customers"
        indexes = [
            TenantIndex(name="idx_customers_tenant_id"),
            TenantIndex(fields=["status"], name="idx_customers_tenant_status"),
        ]

    def __str__(self) -> str:
        return self.name


class User(models.Model):
    """An agent or administrator of a tenant's help desk (not ``django.contrib.auth``)."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Administrator"
        AGENT = "agent", "Agent"
        VIEWER = "viewer", "Viewer"

    tenant = TenantForeignKey(Tenant)
    email = models.EmailField()
    name = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.AGENT)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()

    class Meta:
        db_table = "users"
        indexes = [TenantIndex(name="idx_users_tenant_id")]

    def __str__(self) -> str:
        return self.email


class Ticket(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PENDING = "pending", "Pending"
        RESOLVED = "resolved", "Resolved"
        CLOSED = "closed", "Closed"

    class Priority(models.TextChoices):
        LOW = "low", "Low"
        NORMAL = "normal", "Normal"
        HIGH = "high", "High"
        URGENT = "urgent", "Urgent"

    tenant = TenantForeignKey(Tenant)
    # PROTECT: a customer with tickets is deactivated, not deleted with its history.
    # The implicit customer_id index stays: nothing else leads with customer_id.
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="tickets")
    subject = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.NORMAL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantManager()

    class Meta:
        db_table = "tickets"
        indexes = [
            TenantIndex(name="idx_tickets_tenant_id"),
            TenantIndex(fields=["status"], name="idx_tickets_tenant_status"),
        ]

    def __str__(self) -> str:
        return self.subject


class Message(models.Model):
    tenant = TenantForeignKey(Tenant)
    # db_index=False: idx_messages_ticket_tenant (ticket_id, tenant_id) leads with ticket_id.
    ticket = models.ForeignKey(
        Ticket, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    # SET_NULL: removing an agent keeps the conversation.
    author = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages"
    )
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()

    class Meta:
        db_table = "messages"
        indexes = [
            TenantIndex(name="idx_messages_tenant_id"),
            models.Index(fields=["ticket", "tenant"], name="idx_messages_ticket_tenant"),
        ]

    def __str__(self) -> str:
        return f"Message {self.pk} on ticket {self.ticket_id}"


class File(models.Model):
    """Metadata of an uploaded file; the bytes live in object storage under ``storage_key``."""

    tenant = TenantForeignKey(Tenant)
    name = models.CharField(max_length=255)
    size = models.BigIntegerField(help_text="Size in bytes.")
    content_type = models.CharField(max_length=127)
    storage_key = models.CharField(max_length=512)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()

    class Meta:
        db_table = "files"
        indexes = [TenantIndex(name="idx_files_tenant_id")]
        constraints = [
            models.UniqueConstraint(fields=["storage_key"], name="files_storage_key_key")
        ]

    def __str__(self) -> str:
        return self.name


class IntegrationCredential(models.Model):
    """A tenant's connection to a third-party service.

    The secret itself never touches this table: ``secret_ref`` names where the secret
    manager keeps it (for example ``vault:secret/data/tenants/<id>/slack``), so a database
    dump or a replica leaks no credential.
    """

    class Provider(models.TextChoices):
        SLACK = "slack", "Slack"
        GITHUB = "github", "GitHub"
        JIRA = "jira", "Jira"
        SALESFORCE = "salesforce", "Salesforce"
        EMAIL = "email", "Email (SMTP/IMAP)"

    tenant = TenantForeignKey(Tenant)
    provider = models.CharField(max_length=32, choices=Provider.choices)
    label = models.CharField(max_length=100, blank=True)
    secret_ref = models.CharField(
        max_length=255, help_text="Reference to the secret in the secret manager, never the secret."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)

    objects = TenantManager()

    class Meta:
        db_table = "integration_credentials"
        indexes = [TenantIndex(name="idx_integration_credentials_tenant_id")]

    def __str__(self) -> str:
        return f"{self.provider} {self.label}".strip()


class AuditLog(models.Model):
    """An append-only record of who did what to which object.

    ``actor`` is a copy of the actor's identity, not a foreign key: the trail must outlive
    the user it names.
    """

    tenant = TenantForeignKey(Tenant)
    action = models.CharField(max_length=64)
    actor = models.CharField(max_length=255)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantManager()

    class Meta:
        db_table = "audit_logs"
        indexes = [TenantIndex(name="idx_audit_logs_tenant_id")]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target_type}:{self.target_id}"


class UsageMetric(models.Model):
    """One metric of one tenant over one period (billing, quotas)."""

    class Metric(models.TextChoices):
        TICKETS_CREATED = "tickets_created", "Tickets created"
        MESSAGES_SENT = "messages_sent", "Messages sent"
        STORAGE_BYTES = "storage_bytes", "Storage used (bytes)"
        ACTIVE_USERS = "active_users", "Active users"
        API_CALLS = "api_calls", "API calls"

    tenant = TenantForeignKey(Tenant)
    metric = models.CharField(max_length=32, choices=Metric.choices)
    value = models.BigIntegerField()
    period_start = models.DateField()
    period_end = models.DateField()

    objects = TenantManager()

    class Meta:
        db_table = "tenant_usage_metrics"
        indexes = [TenantIndex(name="idx_usage_metrics_tenant_id")]

    def __str__(self) -> str:
        return f"{self.metric}={self.value} ({self.period_start}..{self.period_end})"
