"""Tenant-scoped PostgreSQL indexes for multi-tenant Django apps.

Public API::

    from tenant_indexes import TenantIndex, TenantForeignKey, TenantQuerySet, TenantManager
    from tenant_indexes.models import TenantModel          # abstract base model
    from tenant_indexes.operations import AddIndexConcurrently, RemoveIndexConcurrently
    from tenant_indexes import TenantScopedManager, tenant_context, all_tenants  # fail closed
    from tenant_indexes import get_tenant_model, tenant_field_of  # the tenant model and field

    # Checks (need the app registry; import after django.setup()):
    from tenant_indexes.health import check_databases      # -> HealthReport (.as_dict())
    from tenant_indexes.usage import collect_usage         # tenant_index_stats' core
    from tenant_indexes.views import tenant_index_health   # or include("tenant_indexes.urls")

The help desk's models live in the ``tenant_indexes.helpdesk`` app
(``from tenant_indexes.helpdesk.models import Tenant, Ticket``).
"""

from .exceptions import (
    TenantIndexesError,
    TenantModelNotConfigured,
    TenantNotSetError,
    TenantScopeError,
)
from .fields import TenantForeignKey
from .indexes import TenantIndex
from .querysets import TenantManager, TenantQuerySet
from .scoping import (
    TenantScopedManager,
    TenantScopedQuerySet,
    TenantScopeMiddleware,
    all_tenants,
    get_current_tenant,
    get_current_tenant_id,
    tenant_context,
)
from .tenancy import get_tenant_model, tenant_column_of, tenant_field_of, tenant_model_label

__version__ = "0.1.0"

__all__ = [
    "TenantForeignKey",
    "TenantIndex",
    "TenantIndexesError",
    "TenantManager",
    "TenantModelNotConfigured",
    "TenantNotSetError",
    "TenantQuerySet",
    "TenantScopeError",
    "TenantScopeMiddleware",
    "TenantScopedManager",
    "TenantScopedQuerySet",
    "__version__",
    "all_tenants",
    "get_current_tenant",
    "get_current_tenant_id",
    "get_tenant_model",
    "tenant_column_of",
    "tenant_context",
    "tenant_field_of",
    "tenant_model_label",
]
