"""Which database aliases, app labels and tables a check, a usage report or a repair reads.

Shared by the three so that a typo gets the same message (and exit code 2) from every
command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connections
from django.utils.module_loading import import_string

from .conf import get_config
from .declared import TenantTable, declared_tenant_tables
from .exceptions import TenantIndexesConfigError, UnknownAppLabel, UnknownDatabaseAlias


def check_schemas(alias: str | None = None) -> list[str]:
    """The schemas that each hold a copy of the tenant tables, in order, each once.

    ``TENANT_INDEXES["CHECK_SCHEMAS"]`` is a list of schema names, or the dotted path of a
    callable returning them (called with ``alias=`` when it accepts it, else with no
    argument, once per call of this function). Empty: the tenant schemas of django-tenants'
    tenant model when it is installed (``alias`` its tenant alias), else none (the tables
    are looked up on the connection's search_path).

    Raises:
        TenantIndexesConfigError: the path does not import, the callable fails, or it
            returns something other than schema names.
    """
    configured = get_config()["CHECK_SCHEMAS"]
    if isinstance(configured, str):
        try:
            source = import_string(configured)
        except ImportError as e:
            raise TenantIndexesConfigError(
                f"TENANT_INDEXES['CHECK_SCHEMAS'] = {configured!r} does not import: {e}"
            ) from e
        try:
            try:
                names = source(alias=alias)
            except TypeError:
                names = source()
        except Exception as e:
            raise TenantIndexesConfigError(
                f"TENANT_INDEXES['CHECK_SCHEMAS'] callable {configured!r} failed: "
                f"{type(e).__name__}: {e}"
            ) from e
        where = f"the callable {configured!r}"
    elif configured:
        names, where = configured, "TENANT_INDEXES['CHECK_SCHEMAS']"
    else:
        from .contrib import django_tenants

        if alias is not None and django_tenants.is_active(alias):
            return django_tenants.tenant_schemas(alias)
        return []
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise TenantIndexesConfigError(f"{where} must give a list of schema names, not {names!r}")
    return list(dict.fromkeys(names))


@contextlib.contextmanager
def search_path_of(connection: Any, schema: str | None) -> Iterator[None]:
    """Resolve unqualified names in ``schema`` (then ``public``) on ``connection`` for the
    block, as django-tenants does for a tenant; ``None`` changes nothing."""
    if schema is None:
        yield
        return
    if hasattr(connection, "set_schema") and hasattr(connection, "set_tenant"):
        # django-tenants' backend sets its own search_path on every new cursor: tell it.
        previous_tenant = getattr(connection, "tenant", None)
        include_public = getattr(connection, "include_public_schema", True)
        connection.set_schema(schema)
        try:
            yield
        finally:
            if previous_tenant is not None:
                connection.set_tenant(previous_tenant, include_public=include_public)
            else:
                connection.set_schema_to_public()
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('search_path')")
        (previous,) = cursor.fetchone()
        path = [schema] if schema == "public" else [schema, "public"]
        cursor.execute(
            "SELECT set_config('search_path', "
            "array_to_string(array(SELECT quote_ident(s) FROM unnest(%s::text[]) s), ', '), "
            "false)",
            [path],
        )
    try:
        yield
    finally:
        # After a terminated backend there is no session left to restore.
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('search_path', %s, false)", [previous])


def missing_schemas(alias: str, schemas: Sequence[str | None]) -> list[str]:
    """Which of ``schemas`` (``None`` entries ignored) do not exist on ``alias``.

    One bounded, read-only statement; none at all when no schema is named.
    """
    from .reads import bounded_read, check_timeouts

    wanted = sorted({s for s in schemas if s is not None})
    if not wanted:
        return []
    with bounded_read(alias) as cursor:
        cursor.execute(
            "SELECT s FROM (SELECT set_config('statement_timeout', %s, true), "
            "set_config('lock_timeout', %s, true)) AS bounds, unnest(%s::text[]) AS s "
            "WHERE to_regnamespace(quote_ident(s)) IS NULL ORDER BY s",
            [*check_timeouts(), wanted],
        )
        return [row[0] for row in cursor.fetchall()]


def tenant_tables_for(alias: str, app_labels: Sequence[str] | None = None) -> list[TenantTable]:
    """The declared tenant tables to look for on one alias, one copy per checked schema
    (:func:`check_schemas`); with django-tenants and no ``CHECK_SCHEMAS``, one per schema
    its tenant model names (:mod:`tenant_indexes.contrib.django_tenants`)."""
    if not get_config()["CHECK_SCHEMAS"]:
        from .contrib import django_tenants

        if django_tenants.is_active(alias):
            return django_tenants.tenant_tables(alias, app_labels)
    tables = declared_tenant_tables(alias, app_labels)
    schemas = check_schemas(alias)
    if not schemas:
        return list(tables)
    # A table whose db_table names its schema is checked there only, once.
    qualified = [t for t in tables if t.schema is not None]
    return [t.in_schema(s) for s in schemas for t in tables if t.schema is None] + qualified


def default_databases(app_labels: Sequence[str] | None = None) -> list[str]:
    """Every PostgreSQL alias that tenant models migrate to.

    When tenant models migrate only to other backends, those aliases are returned so the
    check can say that it needs PostgreSQL instead of silently checking nothing.
    """
    with_tenant_models = [
        alias for alias in settings.DATABASES if declared_tenant_tables(alias, app_labels)
    ]
    postgres = [a for a in with_tenant_models if connections[a].vendor == "postgresql"]
    return postgres or with_tenant_models


def resolve_databases(
    databases: Sequence[str] | None = None, app_labels: Sequence[str] | None = None
) -> list[str]:
    """Validate the requested app labels and aliases and say which aliases to read.

    Args:
        databases: requested aliases, in order; repeats are read once. Empty or ``None``:
            :func:`default_databases`.
        app_labels: requested app labels (``None``: every installed app).

    Returns:
        The aliases to read, each once, in the order given.

    Raises:
        UnknownDatabaseAlias: an alias is not in ``settings.DATABASES``.
        UnknownAppLabel: an app label is not installed.
    """
    for label in app_labels or ():
        try:
            apps.get_app_config(label)
        except LookupError as e:
            raise UnknownAppLabel(f"unknown app label {label!r}") from e
    for alias in databases or ():
        if alias not in settings.DATABASES:
            raise UnknownDatabaseAlias(
                f"unknown database alias {alias!r} (known: {', '.join(settings.DATABASES)})"
            )
    return list(dict.fromkeys(databases)) if databases else default_databases(app_labels)
