"""What the help-desk app (``tenant_indexes.helpdesk``) builds: its tables and indexes."""

from __future__ import annotations

from typing import Any

HELPDESK_TABLES = (
    "tenants",
    "customers",
    "tickets",
    "messages",
    "users",
    "files",
    "integration_credentials",
    "audit_logs",
    "tenant_usage_metrics",
)

SEED_INDEXES = {
    "idx_customers_tenant_id": ("customers", ("tenant_id",)),
    "idx_tickets_tenant_id": ("tickets", ("tenant_id",)),
    "idx_messages_tenant_id": ("messages", ("tenant_id",)),
    "idx_users_tenant_id": ("users", ("tenant_id",)),
    "idx_files_tenant_id": ("files", ("tenant_id",)),
    "idx_integration_credentials_tenant_id": ("integration_credentials", ("tenant_id",)),
    "idx_audit_logs_tenant_id": ("audit_logs", ("tenant_id",)),
    "idx_usage_metrics_tenant_id": ("tenant_usage_metrics", ("tenant_id",)),
    "idx_tickets_tenant_status": ("tickets", ("tenant_id", "status")),
    "idx_customers_tenant_status": ("customers", ("tenant_id", "status")),
    "idx_messages_ticket_tenant": ("messages", ("ticket_id", "tenant_id")),
}

# Every index of every seed table, as key-column tuples: the primary keys, the unique
# constraints, the seed's indexes and the one implicit FK index nothing else covers
# (tickets.customer_id). No (tenant_id) or (ticket_id) duplicate from an implicit FK index.
EXPECTED_COLUMNS: dict[str, Any] = {
    "tenants": [("id",), ("slug",)],
    "customers": {("id",), ("tenant_id",), ("tenant_id", "status")},
    "tickets": {("id",), ("customer_id",), ("tenant_id",), ("tenant_id", "status")},
    "messages": {("id",), ("author_id",), ("tenant_id",), ("ticket_id", "tenant_id")},
    "users": {("id",), ("tenant_id",)},
    "files": {("id",), ("storage_key",), ("tenant_id",)},
    "integration_credentials": {("id",), ("tenant_id",)},
    "audit_logs": {("id",), ("tenant_id",)},
    "tenant_usage_metrics": {("id",), ("tenant_id",)},
}
