# The seed's eleven tenant indexes, built with CREATE INDEX CONCURRENTLY on PostgreSQL so
# that no write to these tables waits while they build (plain CREATE INDEX elsewhere).
# CONCURRENTLY cannot run inside a transaction, hence atomic = False.

from django.db import migrations, models

import tenant_indexes.indexes
from tenant_indexes.operations import AddIndexConcurrently


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tenant_indexes_helpdesk", "0001_initial"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="customer",
            index=tenant_indexes.indexes.TenantIndex(name="idx_customers_tenant_id"),
        ),
        AddIndexConcurrently(
            model_name="ticket",
            index=tenant_indexes.indexes.TenantIndex(name="idx_tickets_tenant_id"),
        ),
        AddIndexConcurrently(
            model_name="message",
            index=tenant_indexes.indexes.TenantIndex(name="idx_messages_tenant_id"),
        ),
        AddIndexConcurrently(
            model_name="user",
            index=tenant_indexes.indexes.TenantIndex(name="idx_users_tenant_id"),
        ),
        AddIndexConcurrently(
            model_name="file",
            index=tenant_indexes.indexes.TenantIndex(name="idx_files_tenant_id"),
        ),
        AddIndexConcurrently(
            model_name="integrationcredential",
            index=tenant_indexes.indexes.TenantIndex(name="idx_integration_credentials_tenant_id"),
        ),
        AddIndexConcurrently(
            model_name="auditlog",
            index=tenant_indexes.indexes.TenantIndex(name="idx_audit_logs_tenant_id"),
        ),
        AddIndexConcurrently(
            model_name="usagemetric",
            index=tenant_indexes.indexes.TenantIndex(name="idx_usage_metrics_tenant_id"),
        ),
        AddIndexConcurrently(
            model_name="ticket",
            index=tenant_indexes.indexes.TenantIndex(
                fields=["status"], name="idx_tickets_tenant_status"
            ),
        ),
        AddIndexConcurrently(
            model_name="customer",
            index=tenant_indexes.indexes.TenantIndex(
                fields=["status"], name="idx_customers_tenant_status"
            ),
        ),
        AddIndexConcurrently(
            model_name="message",
            index=models.Index(fields=["ticket", "tenant"], name="idx_messages_ticket_tenant"),
        ),
    ]
