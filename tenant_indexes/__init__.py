"""Tenant-scoped PostgreSQL indexes for multi-tenant Django apps.

Public API::

    from tenant_indexes import TenantIndex, TenantForeignKey, TenantQuerySet, TenantManager
    from tenant_indexes.models import TenantModel          # abstract base model
    from tenant_indexes.operations import AddIndexConcurrently, RemoveIndexConcurrently
"""

from .exceptions import TenantIndexesError, TenantNotSetError
from .fields import TenantForeignKey
from .indexes import TenantIndex
from .querysets import TenantManager, TenantQuerySet

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
