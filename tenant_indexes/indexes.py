"""``TenantIndex``: an index whose first column is always the tenant column."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import models
from django.db.models import F
from django.db.models.signals import class_prepared

from .tenancy import tenant_field_name

# What a model without any tenant field falls back to: Django's own model check then
# reports the index as referring to a field that does not exist (models.E012).
FALLBACK_TENANT_FIELD = "tenant"


class TenantIndex(models.Index):
    """A B-tree index that always leads with the tenant column.

    ``TenantIndex(fields=["status"])`` on a model whose tenant field is ``organization``
    indexes ``(organization_id, status)``; ``TenantIndex(fields=[])`` indexes the tenant
    column alone, and ``TenantIndex(Lower("email"), name=...)`` indexes
    ``(organization_id, lower(email))``. Every tenant-scoped query filters on the tenant
    first, so a tenant-leading index serves both the tenant-only lookups and those that add
    the other keys.

    The tenant field is found on the model (:func:`tenant_indexes.tenancy.tenant_field_of`)
    when the index is attached to it, so it need not be named. Arguments are validated as
    :class:`django.db.models.Index` validates them (``fields="status"`` raises
    ``ValueError``; expressions need a ``name``).

    Without a ``name``, Django's generated name is used (at most 30 characters, valid on
    every backend). An explicit name may be up to 63 characters, PostgreSQL's limit
    (``NAMEDATALEN - 1``): the help desk's ``idx_integration_credentials_tenant_id`` has 37.

    Args:
        *expressions: index expressions that follow the tenant column, as ``Index`` takes
            them (``Lower("email")``, ``F("name").desc()``).
        fields: the columns that follow the tenant column, as model field names
            (``"-name"`` for descending). The tenant field may be listed first; it is
            never repeated.
        tenant_field: the model field that holds the tenant; needed only when the model
            has more than one ``TenantForeignKey``.
        **kwargs: anything :class:`django.db.models.Index` accepts except ``opclasses``.
    """

    # Django's 30 is for Oracle; explicit names here target PostgreSQL, MySQL and SQLite,
    # whose limits are 63, 64 and unlimited. Generated names stay within 30.
    max_name_length = 63

    def __init__(
        self,
        *expressions: Any,
        fields: Sequence[str] = (),
        tenant_field: str | None = None,
        **kwargs: Any,
    ) -> None:
        if tenant_field is not None and (
            not isinstance(tenant_field, str) or not tenant_field or tenant_field.startswith("-")
        ):
            raise ValueError("TenantIndex.tenant_field must be a plain field name.")
        if kwargs.get("opclasses"):
            raise ValueError(
                "TenantIndex does not take opclasses; use models.Index with explicit "
                "fields and opclasses for that."
            )
        # Index validates the arguments as given; a tenant-only index has neither fields
        # nor expressions, which Index refuses, so it is validated with a stand-in field.
        tenant_only = not expressions and isinstance(fields, (list, tuple)) and not fields
        stand_in = [tenant_field or FALLBACK_TENANT_FIELD] if tenant_only else fields
        super().__init__(*expressions, fields=stand_in, **kwargs)
        self._declared_fields: list[str] = list(fields)
        self._declared_expressions: tuple[Any, ...] = tuple(self.expressions)
        self._explicit_tenant_field = tenant_field
        # The tenant field's name: provisionally "tenant" until the index meets its model.
        self.tenant_field: str = tenant_field or FALLBACK_TENANT_FIELD
        # False while the name above is only the provisional one.
        self.tenant_field_known = tenant_field is not None
        self._lead_with(self.tenant_field)

    def _lead_with(self, tenant_field: str) -> None:
        """Make ``tenant_field`` the first key, ahead of the declared ones."""
        self.tenant_field = tenant_field
        if self._declared_expressions:
            self.expressions = (F(tenant_field), *self._declared_expressions)
            return
        if f"-{tenant_field}" in self._declared_fields:
            raise ValueError(
                "TenantIndex always leads with the tenant column in ascending order; "
                f"remove '-{tenant_field}' from fields."
            )
        rest = [f for f in self._declared_fields if f != tenant_field]
        self.fields = [tenant_field, *rest]
        self.fields_orders = [
            (name.removeprefix("-"), "DESC" if name.startswith("-") else "") for name in self.fields
        ]

    def resolve_tenant_field(self, model: Any) -> None:
        """Lead with ``model``'s tenant field (the explicit ``tenant_field`` if given)."""
        self._lead_with(
            self._explicit_tenant_field or tenant_field_name(model) or FALLBACK_TENANT_FIELD
        )
        self.tenant_field_known = True

    def set_name_with_model(self, model: Any) -> None:
        self.resolve_tenant_field(model)
        super().set_name_with_model(model)

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        self.resolve_tenant_field(model)
        return super().create_sql(model, schema_editor, using=using, **kwargs)

    def clone(self) -> TenantIndex:
        # A model's state (makemigrations) is built from clones: keep the resolved lead, so
        # that the operations describe the index by its real keys.
        _path, args, kwargs = self.deconstruct()
        clone = type(self)(*args, **kwargs)
        clone._lead_with(self.tenant_field)
        clone.tenant_field_known = self.tenant_field_known
        return clone

    def deconstruct(self) -> tuple[str, Sequence[Any], dict[str, Any]]:
        # The tenant field is never written out: it is found on the model again, so a
        # migration stays right when the field is renamed. ``tenant_field`` only when given.
        path, _args, kwargs = super().deconstruct()
        path = "tenant_indexes.indexes.TenantIndex"
        kwargs.pop("fields", None)
        rest = [f for f in self._declared_fields if f != self.tenant_field]
        if rest:
            kwargs["fields"] = rest
        if self._explicit_tenant_field not in (None, FALLBACK_TENANT_FIELD):
            kwargs["tenant_field"] = self._explicit_tenant_field
        return path, self._declared_expressions, kwargs

    def __repr__(self) -> str:
        keys = (
            f"expressions={self.expressions!r}" if self.expressions else f"fields={self.fields!r}"
        )
        return f"<TenantIndex: {keys} name={self.name!r}>"


def _lead_with_the_tenant(sender: Any, **kwargs: Any) -> None:
    """Resolve the tenant field of every ``TenantIndex`` of a model once it is built.

    Django names unnamed indexes with the model (``set_name_with_model``) but hands named
    ones nothing; this runs for every model class, historical ones in migrations included.
    """
    for index in sender._meta.indexes:
        if isinstance(index, TenantIndex):
            index.resolve_tenant_field(sender)


class_prepared.connect(_lead_with_the_tenant, dispatch_uid="tenant_indexes.TenantIndex")
