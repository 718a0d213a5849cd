"""The tenant model and how a model's tenant field is found.

The tenant model is named once, in ``TENANT_INDEXES["TENANT_MODEL"]``
(``"accounts.Organization"``). Without that key it is the help desk's ``Tenant`` when
``tenant_indexes.helpdesk`` is installed, and otherwise there is none: a
``TenantForeignKey()`` without ``to`` is then a configuration error that the system checks
report (``tenant_indexes.E010``), never a silent default.

A model's tenant field is its :class:`~tenant_indexes.TenantForeignKey`, whatever it is
called (``tenant``, ``organization``, ``account``); a model without one is tenant-scoped
when it has a column named ``TENANT_INDEXES["TENANT_COLUMN"]`` (default ``tenant_id``).
Everything that needs the tenant field (``TenantIndex``, ``for_tenant()``, the scoped
managers, the declared indexes, the checks) asks :func:`tenant_field_of`.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models

from .conf import DEFAULTS, get_config
from .exceptions import TenantIndexesConfigError, TenantModelNotConfigured

HELPDESK_APP = "tenant_indexes.helpdesk"
HELPDESK_TENANT_MODEL = "tenant_indexes_helpdesk.Tenant"

# The ``to`` of a TenantForeignKey() when no tenant model is configured. Django keeps it
# as an unresolved lazy reference (nothing crashes while the models load); the field's
# system check reports it as tenant_indexes.E010.
UNSET_TENANT_MODEL = "tenant_indexes.TenantModelNotConfigured"


def helpdesk_installed() -> bool:
    """Whether ``tenant_indexes.helpdesk`` is in ``INSTALLED_APPS``.

    Also answers while the app registry is still loading the models (a
    ``TenantForeignKey()`` is built then), from the setting itself.
    """
    if apps.apps_ready:
        return apps.is_installed(HELPDESK_APP)
    return any(
        entry == HELPDESK_APP or entry.startswith(f"{HELPDESK_APP}.apps.")
        for entry in settings.INSTALLED_APPS
    )


def tenant_model_label() -> str | None:
    """The label of the tenant model (``"accounts.Organization"``), ``None`` when unset.

    Raises:
        TenantIndexesConfigError: the ``TENANT_INDEXES`` setting is invalid.
    """
    configured: str | None = get_config()["TENANT_MODEL"]
    if configured:
        return configured
    return HELPDESK_TENANT_MODEL if helpdesk_installed() else None


def get_tenant_model() -> type[models.Model]:
    """The tenant model class.

    Raises:
        TenantModelNotConfigured: no tenant model is configured, or the configured one is
            not installed.
    """
    label = tenant_model_label()
    if label is None:
        raise TenantModelNotConfigured(NO_TENANT_MODEL_MESSAGE)
    try:
        return apps.get_model(label)
    except (LookupError, ValueError) as e:
        raise TenantModelNotConfigured(
            f"TENANT_INDEXES['TENANT_MODEL'] names {label!r}, which is not an installed model."
        ) from e


NO_TENANT_MODEL_MESSAGE = (
    "No tenant model is configured: TENANT_INDEXES['TENANT_MODEL'] is not set and "
    "tenant_indexes.helpdesk is not installed."
)
NO_TENANT_MODEL_HINT = (
    "Set TENANT_INDEXES = {'TENANT_MODEL': 'accounts.Organization'} (your tenant model), or "
    "pass it to the field: TenantForeignKey('accounts.Organization')."
)


def tenant_field_of(model: Any) -> models.Field[Any, Any] | None:
    """The field of ``model`` that holds the tenant, ``None`` when it is not tenant-scoped.

    The model's :class:`~tenant_indexes.TenantForeignKey` wins, whatever its name; otherwise
    a concrete field whose column is ``TENANT_INDEXES["TENANT_COLUMN"]``. The model's own
    fields come first, then those it inherits from a concrete parent.
    """
    from .fields import TenantForeignKey

    meta = model._meta
    local = list(meta.local_fields)
    candidates = [*local, *(f for f in meta.fields if f not in local)]
    for f in candidates:
        if isinstance(f, TenantForeignKey):
            return f
    column = _configured_tenant_column()
    for f in candidates:
        if f.concrete and f.column == column:
            return f
    return None


def _configured_tenant_column() -> str:
    # Read while the models load too: a bad TENANT_INDEXES must not stop them loading (its
    # own system check, tenant_indexes.E009, reports it), so fall back to the default.
    try:
        return str(get_config()["TENANT_COLUMN"])
    except TenantIndexesConfigError:
        return str(DEFAULTS["TENANT_COLUMN"])


def tenant_field_name(model: Any) -> str | None:
    """The name of ``model``'s tenant field (``"organization"``), ``None`` without one."""
    field = tenant_field_of(model)
    return None if field is None else field.name


def tenant_attname(model: Any) -> str | None:
    """The attribute that holds the tenant's primary key (``"organization_id"``)."""
    field = tenant_field_of(model)
    return None if field is None else field.attname


def tenant_column_of(model: Any, tenant_column: str | None = None) -> str | None:
    """The tenant column of ``model``'s own table, ``None`` when it is not tenant-scoped.

    A :class:`~tenant_indexes.TenantForeignKey` of the model's own table wins (its column
    may be ``organization_id``); otherwise a concrete column of its own named
    ``tenant_column`` (default: ``TENANT_INDEXES["TENANT_COLUMN"]``).
    """
    from .fields import TenantForeignKey

    local = model._meta.local_concrete_fields
    for f in local:
        if isinstance(f, TenantForeignKey):
            return str(f.column)
    wanted = tenant_column or _configured_tenant_column()
    for f in local:
        if f.column == wanted:
            return str(f.column)
    return None
