"""The exceptions tenant_indexes raises."""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError


class TenantIndexesError(Exception):
    """Base class of every error raised by tenant_indexes."""


class TenantIndexesConfigError(TenantIndexesError, ImproperlyConfigured):
    """The ``TENANT_INDEXES`` setting has an unknown key or a value of the wrong type.

    Also an ``ImproperlyConfigured``; the commands report it with exit code 2.
    """


class TenantNotSetError(TenantIndexesError):
    """A tenant-scoped query was made without naming a tenant."""


# Reading the live catalog.


class CatalogUnavailable(TenantIndexesError):
    """The live catalog of a database alias could not be read.

    Raised for an unsupported backend (not PostgreSQL), an unreachable server, refused
    credentials or a statement that timed out. ``check_databases`` turns it into a
    ``DatabaseReport`` with an error and exit code 2; it never reaches the user as a
    traceback.
    """


class UnsupportedDatabase(CatalogUnavailable):
    """The alias is not a PostgreSQL database, so there is no catalog to compare with."""


class UnknownDatabaseAlias(TenantIndexesError):
    """An alias that is not in ``settings.DATABASES`` was asked for."""


class UnknownAppLabel(TenantIndexesError):
    """An app label that is not installed was asked for."""


# Concurrent index builds (build.py: migrate and repair_tenant_indexes).


class IndexBuildError(TenantIndexesError, CommandError):
    """A concurrent index build could not be completed; the message says why and what next.

    Also a ``CommandError``: raised inside ``manage.py migrate``, it ends the command with
    its message and exit status 1 instead of a traceback.
    """


class IndexDefinitionMismatchError(IndexBuildError):
    """A valid index with the declared name exists but its definition differs."""


class LockWaitTimeoutError(IndexBuildError):
    """A build gave up after its bounded lock waits; the message names the blocker."""


class UnsafeServerVersionError(IndexBuildError):
    """The server's version has a known bug in concurrent index builds."""


class BuildInterruptedError(IndexBuildError):
    """The build's statement failed on the server: its connection was terminated, the server
    shut down, a deadlock or a timeout cancelled it. The message is one line and says what
    the next run does (it drops an INVALID index left behind and builds again)."""


class BuildRefusedError(IndexBuildError):
    """The target cannot carry a safe build at all: a hot standby (read-only), or a
    connection whose server session changes between statements (a transaction pooler).
    Exit code 2, like a database that could not be checked."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args, returncode=2)


# Fail-closed tenant scoping (scoping.py).


class TenantScopeError(TenantIndexesError):
    """A query or write would cross from the current tenant into another one."""


class TenantModelNotConfigured(TenantIndexesError, ImproperlyConfigured):
    """No tenant model is configured, or ``TENANT_INDEXES["TENANT_MODEL"]`` names a model that
    is not installed (system check ``tenant_indexes.E010``)."""


class SchemaNotFound(TenantIndexesError):
    """A schema named by ``TENANT_INDEXES["CHECK_SCHEMAS"]`` does not exist."""
