"""Tenant-scoped querying that fails closed.

A model whose default manager is a :class:`TenantScopedManager` can only be queried while a
current tenant is set, and every query is then filtered on the tenant column, so it is served
by the tenant-leading index. Without a current tenant, building a queryset raises
:class:`~tenant_indexes.TenantNotSetError` instead of silently returning every tenant's rows::

    from tenant_indexes import TenantScopedManager, tenant_context, all_tenants

    class Ticket(models.Model):
        tenant = TenantForeignKey()
        objects = TenantScopedManager()

    Ticket.objects.filter(status="open")           # TenantNotSetError
    with tenant_context(tenant):
        Ticket.objects.filter(status="open")       # WHERE tenant_id = <tenant> AND ...
    Ticket.objects.for_tenant(tenant)              # the explicit form, no context needed
    Ticket.objects.unscoped()                      # escape hatch: every tenant (greppable)
    with all_tenants():                            # escape hatch for maintenance code
        Ticket.objects.count()

The current tenant lives in a :class:`contextvars.ContextVar`: each thread and each asyncio
task has its own, ``asgiref``'s ``sync_to_async`` / ``async_to_sync`` carry it across, and a
new ``threading.Thread`` starts without one (its queries fail closed).
:class:`TenantScopeMiddleware` sets it for a request.

What is guarded: every queryset a scoped manager builds (``filter``, ``get``, ``values``,
``aggregate``, ``count``, ``update``, ``delete``, ``in_bulk``, ``get_or_create``, the async
``a*`` methods ...), reverse and many-to-many related managers (``project.tasks``,
``task.labels``, ``tenant.ticket_set``: Django builds them from the related model's default
manager) and ``prefetch_related`` through them. ``raw()`` refuses to run inside a scope
(raw SQL cannot be filtered); use ``unscoped().raw()`` and filter by tenant yourself.

What is not guarded (documented, and tested to stay as documented): ``Model._base_manager``
and the Django internals that use it on purpose (the deletion collector's cascades,
``refresh_from_db()``, ``save()``'s UPDATE, forward foreign-key and one-to-one access such as
``message.ticket``, which follow the stored id), joins in lookups and ``select_related``
(the root model is filtered; the joined rows are those the stored ids point to), and raw
``connection.cursor()`` SQL. A foreign key that points into another tenant is therefore a
data-integrity bug to prevent at write time, e.g. with a composite ``(id, tenant_id)`` key.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import models
from django.utils.module_loading import import_string

from .conf import get_config
from .exceptions import TenantNotSetError, TenantScopeError
from .querysets import TenantQuerySet
from .tenancy import tenant_field_of

__all__ = [
    "TenantScopeMiddleware",
    "TenantScopedManager",
    "TenantScopedQuerySet",
    "all_tenants",
    "get_current_tenant",
    "get_current_tenant_id",
    "tenant_context",
    "tenant_from_request",
]


@dataclasses.dataclass(frozen=True)
class _Scope:
    tenant: Any  # a tenant instance or its primary key; None with all_tenants
    tenant_id: Any
    all_tenants: bool = False


_current_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "tenant_indexes_current_scope", default=None
)

# Marks a queryset built by unscoped() / all_tenants(): it may span tenants.
_UNSCOPED = object()


def _tenant_pk(tenant: Any) -> Any:
    return tenant.pk if isinstance(tenant, models.Model) else tenant


def get_current_tenant() -> Any | None:
    """The current tenant as it was given (instance or primary key), or ``None``."""
    scope = _current_scope.get()
    return None if scope is None else scope.tenant


def get_current_tenant_id() -> Any | None:
    """The primary key of the current tenant, or ``None`` (also inside :func:`all_tenants`)."""
    scope = _current_scope.get()
    return None if scope is None else scope.tenant_id


@contextlib.contextmanager
def tenant_context(tenant: Any) -> Iterator[None]:
    """Make ``tenant`` (an instance or its primary key) current inside the ``with`` block.

    Contexts nest; leaving one restores the previous tenant (or none).

    Raises:
        TenantNotSetError: ``tenant`` is ``None`` or an instance without a primary key.
    """
    tenant_id = _tenant_pk(tenant)
    if tenant_id is None:
        raise TenantNotSetError("tenant_context() needs a tenant or its primary key, got None.")
    token = _current_scope.set(_Scope(tenant=tenant, tenant_id=tenant_id))
    try:
        yield
    finally:
        _current_scope.reset(token)


@contextlib.contextmanager
def all_tenants() -> Iterator[None]:
    """Escape hatch: scoped managers return every tenant's rows inside the ``with`` block.

    Meant for admin and maintenance code (migrations' data fixes, offboarding, reports
    across tenants); grep for ``all_tenants(`` and ``unscoped(`` to review every use.
    """
    token = _current_scope.set(_Scope(tenant=None, tenant_id=None, all_tenants=True))
    try:
        yield
    finally:
        _current_scope.reset(token)


def _tenant_names(model: Any) -> tuple[str, str]:
    """``(name, attname)`` of the model's tenant field (``("account", "account_id")``).

    The field is found by :func:`~tenant_indexes.tenancy.tenant_field_of`, so a tenant
    field named ``organization`` works too.

    Raises:
        TenantNotSetError: the model has no tenant field.
    """
    field = tenant_field_of(model)
    if field is None:
        raise TenantNotSetError(
            f"{model.__name__} has no tenant field: give it a TenantForeignKey."
        )
    return field.name, field.attname


class TenantScopedQuerySet(TenantQuerySet):
    """A :class:`~tenant_indexes.TenantQuerySet` that remembers the tenant it is scoped to.

    Built by :class:`TenantScopedManager`; writes through it (``create``, ``bulk_create``,
    ``get_or_create``) get the scope's tenant and refuse another one, and ``raw()`` refuses
    to run because raw SQL cannot be filtered.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scope_tenant_id: Any = _UNSCOPED

    def _clone(self) -> TenantScopedQuerySet:
        # QuerySet._clone() is private Django API, absent from django-stubs.
        clone = super()._clone()  # type: ignore[misc]
        clone._scope_tenant_id = self._scope_tenant_id
        return clone

    def _scoped_to(self, tenant_id: Any) -> TenantScopedQuerySet:
        self._scope_tenant_id = tenant_id
        return self

    @property
    def is_tenant_scoped(self) -> bool:
        """True when this queryset is limited to one tenant by its scope."""
        return self._scope_tenant_id is not _UNSCOPED

    def _claim(self, obj: models.Model) -> None:
        # An object written through a scoped queryset belongs to the scope's tenant.
        if not self.is_tenant_scoped:
            return
        attname = self.tenant_attname
        current = getattr(obj, attname)
        if current is None:
            setattr(obj, attname, self._scope_tenant_id)
        elif str(current) != str(self._scope_tenant_id):
            raise TenantScopeError(
                f"Refusing to write a {self.model.__name__} of tenant {current} while "
                f"scoped to tenant {self._scope_tenant_id}."
            )

    def create(self, **kwargs: Any) -> Any:
        if self.is_tenant_scoped:
            field, attname = _tenant_names(self.model)
            given = _tenant_pk(kwargs.get(field, kwargs.get(attname)))
            if given is None:
                kwargs.pop(field, None)
                kwargs[attname] = self._scope_tenant_id
            elif str(given) != str(self._scope_tenant_id):
                raise TenantScopeError(
                    f"Refusing to create a {self.model.__name__} of tenant {given} while "
                    f"scoped to tenant {self._scope_tenant_id}."
                )
        return super().create(**kwargs)

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        objs = list(objs)
        for obj in objs:
            self._claim(obj)
        return super().bulk_create(objs, *args, **kwargs)

    def raw(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_tenant_scoped:
            raise TenantScopeError(
                f"{self.model.__name__}.objects.raw() cannot be limited to the current tenant. "
                "Use .unscoped().raw(...) and filter on the tenant column in the SQL."
            )
        return super().raw(*args, **kwargs)


class TenantScopedManager(models.Manager.from_queryset(TenantScopedQuerySet)):  # type: ignore[misc]
    """A fail-closed default manager for a tenant-scoped model.

    Querysets are filtered on the current tenant (:func:`tenant_context`, the middleware);
    without one they raise :class:`~tenant_indexes.TenantNotSetError`. Three explicit
    ways out: ``for_tenant(tenant)``, ``unscoped()`` and :func:`all_tenants`.

    ``create(tenant=...)`` and ``bulk_create()`` of objects that carry their tenant work
    without a current tenant (they are writes of a named tenant, not reads). Django's
    ``_base_manager`` stays a plain manager, so cascades, ``refresh_from_db()`` and
    ``save()`` work everywhere.
    """

    def _base_queryset(self) -> TenantScopedQuerySet:
        return super().get_queryset()

    def get_queryset(self) -> TenantScopedQuerySet:
        scope = _current_scope.get()
        qs = self._base_queryset()
        if scope is None:
            raise TenantNotSetError(
                f"{self.model.__name__} is tenant-scoped and no tenant is set. Wrap the code in "
                "tenant_context(tenant) (TenantScopeMiddleware does it per request), use "
                f"{self.model.__name__}.objects.for_tenant(tenant), or, for admin and "
                "maintenance work across tenants, .unscoped() or all_tenants()."
            )
        if scope.all_tenants:
            return qs
        return qs.filter(**{qs.tenant_attname: scope.tenant_id})._scoped_to(scope.tenant_id)

    def unscoped(self) -> TenantScopedQuerySet:
        """Escape hatch: every tenant's rows, whatever the current tenant. Use sparingly."""
        return self._base_queryset()

    def for_tenant(self, tenant: Any) -> TenantScopedQuerySet:
        """Rows of ``tenant``, with or without a current tenant.

        Raises:
            TenantNotSetError: ``tenant`` is ``None``.
            TenantScopeError: a different tenant is current (reading across tenants from
                inside another tenant's scope is a bug; use ``unscoped()`` on purpose).
        """
        tenant_id = _tenant_pk(tenant)
        scope = _current_scope.get()
        if (
            tenant_id is not None
            and scope is not None
            and not scope.all_tenants
            and str(scope.tenant_id) != str(tenant_id)
        ):
            raise TenantScopeError(
                f"{self.model.__name__}.objects.for_tenant({tenant_id}) inside the scope of "
                f"tenant {scope.tenant_id}."
            )
        return self._base_queryset().for_tenant(tenant)._scoped_to(tenant_id)

    def _write_queryset(self, tenant_id: Any) -> TenantScopedQuerySet:
        scope = _current_scope.get()
        if scope is None and tenant_id is not None:
            # A write that names its tenant needs no context.
            return self.for_tenant(tenant_id)
        return self.get_queryset()

    def create(self, **kwargs: Any) -> Any:
        field, attname = _tenant_names(self.model)
        tenant = kwargs.get(field, kwargs.get(attname))
        return self._write_queryset(_tenant_pk(tenant)).create(**kwargs)

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        objs = list(objs)
        if _current_scope.get() is None:
            _, attname = _tenant_names(self.model)
            if any(getattr(obj, attname) is None for obj in objs):
                raise TenantNotSetError(
                    f"bulk_create() of {self.model.__name__} without a current tenant needs "
                    "every object's tenant set."
                )
            return self._base_queryset().bulk_create(objs, *args, **kwargs)
        return self.get_queryset().bulk_create(objs, *args, **kwargs)


def tenant_from_request(request: Any) -> Any | None:
    """The default resolver: ``request.tenant``, set by your authentication layer."""
    return getattr(request, "tenant", None)


class TenantScopeMiddleware:
    """Make the request's tenant current while the view runs (sync and async).

    The tenant comes from the resolver named by ``TENANT_INDEXES["TENANT_RESOLVER"]``
    (default :func:`tenant_from_request`: ``request.tenant``). Place the middleware after the
    one that authenticates the user and sets the tenant. A request without a tenant runs with
    none, so tenant-scoped queries in its view fail closed. A streaming response's iterator
    runs after the middleware returned, so it runs without a tenant too.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.resolve_tenant: Callable[[Any], Any] = import_string(get_config()["TENANT_RESOLVER"])
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        tenant = self.resolve_tenant(request)
        if tenant is None:
            return self.get_response(request)
        with tenant_context(tenant):
            return self.get_response(request)

    async def __acall__(self, request: Any) -> Any:
        tenant = self.resolve_tenant(request)
        if tenant is None:
            return await self.get_response(request)
        with tenant_context(tenant):
            return await self.get_response(request)
