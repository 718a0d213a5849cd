"""``TenantIndex``: an index whose first column is always the tenant column."""

from __future__ import annotations

from typing import Any

from django.db import models

DEFAULT_TENANT_FIELD = "tenant"


class TenantIndex(models.Index):
    """A B-tree index that always leads with the tenant column.

    ``TenantIndex(fields=["status"])`` on a model with a ``tenant`` foreign key indexes
    ``(tenant_id, status)``; ``TenantIndex(fields=[])`` indexes ``(tenant_id)`` alone.
    Every tenant-scoped query filters on the tenant first, so a tenant-leading index
    serves both the tenant-only lookups and those that add the other columns.

    Without a ``name``, Django's generated name is used (at most 30 characters, valid on
    every backend). An explicit name may be up to 63 characters, PostgreSQL's limit
    (``NAMEDATALEN - 1``): the seed's ``idx_integration_credentials_tenant_id`` has 37.

    Args:
        fields: the columns that follow the tenant column, as model field names
            (``"-name"`` for descending). The tenant field may be listed first; it is
            never repeated.
        tenant_field: the model field that holds the tenant (default ``"tenant"``).
        **kwargs: anything :class:`django.db.models.Index` accepts except expressions.
    """

    # Django's 30 is for Oracle; explicit names here target PostgreSQL, MySQL and SQLite,
    # whose limits are 63, 64 and unlimited. Generated names stay within 30.
    max_name_length = 63

    def __init__(
        self,
        *,
        fields: list[str] | tuple[str, ...] = (),
        tenant_field: str = DEFAULT_TENANT_FIELD,
        **kwargs: Any,
    ) -> None:
        if not tenant_field or tenant_field.startswith("-"):
            raise ValueError("TenantIndex.tenant_field must be a plain field name.")
        if f"-{tenant_field}" in fields:
            raise ValueError(
                "TenantIndex always leads with the tenant column in ascending order; "
                f"remove '-{tenant_field}' from fields."
            )
        rest = [f for f in fields if f != tenant_field]
        if kwargs.get("opclasses"):
            raise ValueError(
                "TenantIndex does not take opclasses; use models.Index with explicit "
                "fields and opclasses for that."
            )
        self.tenant_field = tenant_field
        super().__init__(fields=[tenant_field, *rest], **kwargs)

    def deconstruct(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        path, args, kwargs = super().deconstruct()
        path = "tenant_indexes.indexes.TenantIndex"
        kwargs["fields"] = [f for f in kwargs["fields"] if f != self.tenant_field]
        if not kwargs["fields"]:
            del kwargs["fields"]
        if self.tenant_field != DEFAULT_TENANT_FIELD:
            kwargs["tenant_field"] = self.tenant_field
        return path, args, kwargs

    def __repr__(self) -> str:
        return f"<TenantIndex: fields={self.fields!r} name={self.name!r}>"
