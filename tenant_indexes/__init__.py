"""Tenant-scoped PostgreSQL indexes for multi-tenant Django apps.

Public API::

    from tenant_indexes import TenantIndex, TenantForeignKey, TenantQuerySet, TenantManager
    from tenant_indexes.models import TenantModel          # abstract base model
    from tenant_indexes.operations import AddIndexConcurrently, RemoveIndexConcurrently
    from tenant_indexes import TenantScopedManager, tenant_context, all_tenants  # fail closed

    # Checks (need the app registry; import after django.setup()):
    from tenant_indexes.health import check_databases      # -> HealthReport (.as_dict())
    from tenant_indexes.usage import collect_usage         # tenant_index_stats' core
    from tenant_indexes.views import tenant_index_health   # or include("tenant_indexes.urls")
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
