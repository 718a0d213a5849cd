"""Which database aliases, app labels and tables a check, a usage report or a repair reads.

Shared by the three so that a typo gets the same message (and exit code 2) from every
command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from django.apps import apps
from django.conf import settings
from django.db import connections

from .conf import get_config
from .declared import TenantTable, declared_tenant_tables
from .exceptions import UnknownAppLabel, UnknownDatabaseAlias


def tenant_tables_for(alias: str, app_labels: Sequence[str] | None = None) -> list[TenantTable]:
    """The declared tenant tables to look for on one alias, one copy per configured schema."""
    tables = declared_tenant_tables(alias, app_labels)
    schemas = list(get_config()["CHECK_SCHEMAS"] or [])
    if not schemas:
        return list(tables)
    return [
        replace(t, schema=schema) if t.schema is None else t for schema in schemas for t in tables
    ]


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
