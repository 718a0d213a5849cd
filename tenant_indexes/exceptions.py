"""The exceptions tenant_indexes raises."""


class TenantIndexesError(Exception):
    """Base class of every error raised by tenant_indexes."""


class TenantNotSetError(TenantIndexesError):
    """A tenant-scoped query was made without naming a tenant."""


# --- Fail-closed tenant scoping (issue #7, scoping.py) -----------------------------------


class TenantScopeError(TenantIndexesError):
    """A query or write would cross from the current tenant into another one."""
