"""Tenant-scoped PostgreSQL indexes for multi-tenant Django apps.

Public API::

    from tenant_indexes import TenantIndex, TenantForeignKey, TenantQuerySet, TenantManager
    from tenant_indexes.models import TenantModel          # abstract base model
    from tenant_indexes.operations import AddIndexConcurrently, RemoveIndexConcurrently
    from tenant_indexes import TenantScopedManager, tenant_context, all_tenants  # fail closed
"""

from .exceptions import TenantIndexesError, TenantNotSetError, TenantScopeError
from .fields import TenantForeignKey
from .indexes import TenantIndex
from .querysets import TenantManager, TenantQuerySet

# --- Fail-closed tenant scoping (issue #7) ---
from .scoping import (
    TenantScopedManager,
    TenantScopedQuerySet,
    TenantScopeMiddleware,
    all_tenants,
    get_current_tenant,
    get_current_tenant_id,
    tenant_context,
)

__version__ = "0.1.0"

__all__ = [
    "TenantForeignKey",
    "TenantIndex",
    "TenantIndexesError",
    "TenantManager",
    "TenantNotSetError",
    "TenantQuerySet",
    "__version__",
]

# --- Fail-closed tenant scoping (issue #7) ---
__all__ += [
    "TenantScopeError",
    "TenantScopeMiddleware",
    "TenantScopedManager",
    "TenantScopedQuerySet",
    "all_tenants",
    "get_current_tenant",
    "get_current_tenant_id",
    "tenant_context",
]
