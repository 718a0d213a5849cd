"""``TenantForeignKey``: the foreign key every tenant-scoped row carries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core import checks
from django.db import models

from .exceptions import TenantIndexesConfigError
from .findings import E_NO_TENANT_MODEL
from .tenancy import (
    NO_TENANT_MODEL_HINT,
    NO_TENANT_MODEL_MESSAGE,
    UNSET_TENANT_MODEL,
    tenant_model_label,
)


class TenantForeignKey(models.ForeignKey):
    """A NOT NULL foreign key to the tenant, without Django's implicit single-column index.

    ``to`` defaults to the tenant model (``TENANT_INDEXES["TENANT_MODEL"]``, else the help
    desk's ``Tenant`` when ``tenant_indexes.helpdesk`` is installed). Without either, the
    models still load and the system checks report the field (``tenant_indexes.E010``).
    The field may have any name; :func:`tenant_indexes.tenancy.tenant_field_of` finds it.

    The implicit ``(tenant_id)`` index that ``ForeignKey`` creates would duplicate the
    tenant-leading index the model declares (a :class:`~tenant_indexes.TenantIndex`, or the
    one :class:`~tenant_indexes.models.TenantModel` adds), so ``db_index`` defaults to
    ``False``. The system checks report a tenant model that ends up with no tenant-leading
    index.

    ``on_delete`` defaults to ``PROTECT``: deleting a tenant must be an explicit offboarding
    job that removes its rows table by table, not a cascade that deletes millions of rows in
    one transaction because somebody clicked "delete" in the admin.
    """

    def __init__(self, to: Any = None, on_delete: Any = None, **kwargs: Any):
        kwargs.setdefault("db_index", False)
        if kwargs.get("null"):
            raise ValueError("A tenant foreign key cannot be nullable: every row has a tenant.")
        super().__init__(to or _default_tenant_model(), on_delete or models.PROTECT, **kwargs)

    def get_internal_type(self) -> str:
        # Backends special-case "ForeignKey" (MySQL recreates the implicit FK index InnoDB
        # needs before dropping a covering index); without this they would see the class name.
        return "ForeignKey"

    def deconstruct(self) -> tuple[str, str, Sequence[Any], dict[str, Any]]:
        name, _path, args, kwargs = super().deconstruct()
        return name, "tenant_indexes.fields.TenantForeignKey", args, kwargs

    def _check_relation_model_exists(self) -> list[checks.CheckMessage]:
        # Django's own check would call the placeholder a model that is not installed.
        if self.remote_field.model == UNSET_TENANT_MODEL:
            return [
                checks.Error(
                    f"{NO_TENANT_MODEL_MESSAGE} {self.model._meta.label}.{self.name} is a "
                    "TenantForeignKey() without a model to point at.",
                    hint=NO_TENANT_MODEL_HINT,
                    obj=self,
                    id=E_NO_TENANT_MODEL,
                )
            ]
        # RelatedField's private check, absent from django-stubs.
        return super()._check_relation_model_exists()  # type: ignore[misc]


def _default_tenant_model() -> str:
    """The ``to`` of a ``TenantForeignKey()``: the tenant model, else the placeholder.

    Never raises while the models load: a bad ``TENANT_INDEXES`` is reported by its own
    system check (``tenant_indexes.E009``).
    """
    try:
        label = tenant_model_label()
    except TenantIndexesConfigError:
        label = None
    return label or UNSET_TENANT_MODEL
