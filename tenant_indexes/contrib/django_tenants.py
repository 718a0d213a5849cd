"""django-tenants: the tenant schemas come from its tenant model, with no configuration.

When ``django_tenants`` is in ``INSTALLED_APPS`` and ``TENANT_INDEXES["CHECK_SCHEMAS"]`` is
empty, the check, the statistics and the repair look for the tenant tables in the schema of
every tenant (``TENANT_MODEL``'s ``schema_name``), not on the search_path of the public
schema, where tables of ``TENANT_APPS`` do not exist. The migration operations need nothing
from here: ``migrate_schemas`` runs them with the tenant's schema on the search_path, and the
build resolves the table there.
"""

from __future__ import annotations

from django.apps import apps
from django.db import DatabaseError

from ..exceptions import CatalogUnavailable


def installed() -> bool:
    """``django_tenants`` is an installed app."""
    return apps.is_installed("django_tenants")


def tenant_schemas(alias: str | None = None) -> list[str]:
    """The schema of every tenant, in ``schema_name`` order, without the public schema.

    Empty when django-tenants is not installed. One statement, on the public schema (where
    django-tenants keeps its tenant model), whatever the number of tenants.

    Raises:
        CatalogUnavailable: the tenant table cannot be read (not migrated, unreachable).
    """
    if not installed():
        return []
    from django_tenants.utils import get_public_schema_name, get_tenant_model

    model = get_tenant_model()
    using = alias or "default"
    try:
        names = (
            model.objects.using(using)
            .exclude(schema_name=get_public_schema_name())
            .order_by("schema_name")
            .values_list("schema_name", flat=True)
        )
        return list(names)
    except DatabaseError as e:
        from ..catalog import first_error_line

        raise CatalogUnavailable(
            f"database {using!r}: cannot list the django-tenants schemas: {first_error_line(e)}"
        ) from e
