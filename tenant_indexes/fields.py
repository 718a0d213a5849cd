"""``TenantForeignKey``: the foreign key every tenant-scoped row carries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import models

DEFAULT_TENANT_MODEL = "tenant_indexes_helpdesk.Tenant"


class TenantForeignKey(models.ForeignKey):
    """A NOT NULL foreign key to the tenant, without Django's implicit single-column index.

    The implicit ``(tenant_id)`` index that ``ForeignKey`` creates would duplicate the
    tenant-leading index the model declares (a :class:`~tenant_indexes.TenantIndex`, or the
    one :class:`~tenant_indexes.models.TenantModel` adds), so ``db_index`` defaults to
    ``False``. The system checks report a tenant model that ends up with no tenant-leading
    index.

    ``on_delete`` defaults to ``PROTECT``: deleting a tenant must be an explicit offboarding
    job that removes its rows table by table, not a cascade that deletes millions of rows in
    one transaction because somebody clicked "delete" in the admin.
    """

    def __init__(self, to: Any = DEFAULT_TENANT_MODEL, on_delete: Any = None, **kwargs: Any):
        kwargs.setdefault("db_index", False)
        if kwargs.get("null"):
            raise ValueError("A tenant foreign key cannot be nullable: every row has a tenant.")
        super().__init__(to, on_delete or models.PROTECT, **kwargs)

    def get_internal_type(self) -> str:
        # Backends special-case "ForeignKey" (MySQL recreates the implicit FK index InnoDB
        # needs before dropping a covering index); without this they would see the class name.
        return "ForeignKey"

    def deconstruct(self) -> tuple[str, str, Sequence[Any], dict[str, Any]]:
        name, _path, args, kwargs = super().deconstruct()
        return name, "tenant_indexes.fields.TenantForeignKey", args, kwargs
