"""django-tenants: the schemas to check and repair come from its tenant model.

With ``django_tenants`` in ``INSTALLED_APPS`` and ``TENANT_INDEXES["CHECK_SCHEMAS"]`` unset,
:func:`tenant_indexes.targeting.tenant_tables_for` asks this module where each declared
table lives, with no configuration:

- a model of an app in ``TENANT_APPS`` has one copy per tenant schema, the
  ``schema_name`` of every row of django-tenants' tenant model except the public one;
- a model of an app in ``SHARED_APPS`` has its copy in the public schema;
- an app in both has both.

django-tenants' router decides by the schema the connection is on at the moment it is
asked, so the split is made here from the two app lists (``TENANT_TYPES`` with
``HAS_MULTI_TYPE_TENANTS``) rather than through the router. Only the tenant database alias
(``TENANT_DB_ALIAS``, default ``"default"``) holds schemas; other aliases are read as
usual. django-tenants is imported only when it is installed and in ``INSTALLED_APPS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connections

from ..declared import TenantTable, tenant_table_for_model


def is_active(alias: str | None = None) -> bool:
    """Whether django-tenants is installed and ``alias`` (if given) is its tenant alias."""
    if "django_tenants" not in settings.INSTALLED_APPS:
        return False
    if alias is None:
        return True
    from django_tenants.utils import get_tenant_database_alias

    return bool(alias == get_tenant_database_alias())


def public_schema() -> str:
    from django_tenants.utils import get_public_schema_name

    return str(get_public_schema_name())


def _app_lists() -> tuple[list[str], list[str]]:
    """``(shared apps, tenant apps)`` as django-tenants' router reads them."""
    from django_tenants.utils import get_tenant_types, has_multi_type_tenants

    if has_multi_type_tenants():
        types = get_tenant_types()
        public = public_schema()
        shared = list(types.get(public, {}).get("APPS", []))
        tenant = [app for name, t in types.items() if name != public for app in t.get("APPS", [])]
        return shared, tenant
    return list(getattr(settings, "SHARED_APPS", [])), list(getattr(settings, "TENANT_APPS", []))


def _in_list(app_label: str, names: Sequence[str]) -> bool:
    config = apps.get_app_config(app_label)
    full = f"{config.__module__}.{config.__class__.__name__}"
    return config.name in names or full in names


def tenant_schemas(alias: str | None = None) -> list[str]:
    """Every tenant's ``schema_name`` on the tenant alias, sorted, the public one left out.

    One read of the tenant model (its table is in the public schema, which django-tenants
    keeps on every tenant's search_path).
    """
    from django_tenants.utils import get_tenant_database_alias, get_tenant_model

    using = alias or get_tenant_database_alias()
    names = (
        get_tenant_model()
        .objects.using(using)
        .exclude(schema_name=public_schema())
        .order_by("schema_name")
        .values_list("schema_name", flat=True)
    )
    return [str(n) for n in names]


def tenant_tables(alias: str, app_labels: Sequence[str] | None = None) -> list[TenantTable]:
    """The declared tenant tables of ``alias``, one copy per schema that holds the table:
    the public schema for shared apps, each tenant schema for tenant apps."""
    if app_labels:
        models = [m for label in app_labels for m in apps.get_app_config(label).get_models()]
    else:
        models = list(apps.get_models())
    shared, tenant = _app_lists()
    editor = connections[alias].schema_editor()
    public = public_schema()
    schemas: list[str] | None = None
    found: list[TenantTable] = []
    for model in models:
        label = model._meta.app_label
        in_shared, in_tenant = _in_list(label, shared), _in_list(label, tenant)
        if not (in_shared or in_tenant):
            continue
        table = tenant_table_for_model(model, None, editor=editor)
        if table is None:
            continue
        if in_shared:
            found.append(table.in_schema(public))
        if in_tenant:
            if schemas is None:
                schemas = tenant_schemas(alias)
            found.extend(table.in_schema(s) for s in schemas)
    # Schema by schema, as CHECK_SCHEMAS orders them.
    order = {public: -1, **{s: n for n, s in enumerate(schemas or ())}}
    found.sort(key=lambda t: order.get(t.schema or public, -1))
    return found


def schema_of(connection: Any) -> str | None:
    """The schema django-tenants has set on ``connection``, ``None`` on another backend."""
    return getattr(connection, "schema_name", None) if hasattr(connection, "set_schema") else None


def install() -> None:
    """Give django-tenants' ``migrate`` (its ``migrate_schemas``) the autodetector of this
    app's ``makemigrations``: Django 5.2's system check ``commands.E001`` requires the two
    commands to share one (a warning-only use in ``migrate``)."""
    from django_tenants.management.commands.migrate_schemas import MigrateSchemasCommand

    from ..autodetector import TenantIndexAutodetector

    MigrateSchemasCommand.autodetector = TenantIndexAutodetector
