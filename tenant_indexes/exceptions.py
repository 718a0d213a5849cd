"""The exceptions tenant_indexes raises."""


class TenantIndexesError(Exception):
    """Base class of every error raised by tenant_indexes."""


class TenantNotSetError(TenantIndexesError):
    """A tenant-scoped query was made without naming a tenant."""


# --- Safe online index builds (operations.py, repair_tenant_indexes) --------------------


class IndexBuildError(TenantIndexesError):
    """A concurrent index build could not be completed; the message says why and what next."""


class IndexDefinitionMismatchError(IndexBuildError):
    """A valid index with the declared name exists but its definition differs."""


class LockWaitTimeoutError(IndexBuildError):
    """A build gave up after its bounded lock waits; the message names the blocker."""


class UnsafeServerVersionError(IndexBuildError):
    """The server's version has a known bug in concurrent index builds."""


# --- end safe online index builds -------------------------------------------------------
