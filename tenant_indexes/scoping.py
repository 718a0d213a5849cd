"""Tenant-scoped querying that fails closed.

A model whose default manager is a :class:`TenantScopedManager` can only be queried while a
current tenant is set, and every query is then filtered on the tenant column, so it is served
by the tenant-leading index. The tenant is bound when the query runs, not when it is built
(:mod:`tenant_indexes.querybinding`): building a queryset never raises, running it without a
current tenant raises :class:`~tenant_indexes.TenantNotSetError` instead of silently returning
every tenant's rows::

    from tenant_indexes import TenantScopedManager, tenant_context, all_tenants

    class Ticket(models.Model):
        tenant = TenantForeignKey()
        objects = TenantScopedManager()

    open_tickets = Ticket.objects.filter(status="open")  # builds, binds nothing
    list(open_tickets)                                   # TenantNotSetError
    with tenant_context(tenant):
        list(open_tickets)                               # WHERE tenant_id = <tenant> AND ...
    Ticket.objects.for_tenant(tenant)              # the explicit form, no context needed
    Ticket.objects.unscoped()                      # escape hatch: every tenant (greppable)
    with all_tenants():                            # escape hatch for maintenance code
        Ticket.objects.count()

The current tenant lives in a :class:`contextvars.ContextVar`: each thread and each asyncio
task has its own, ``asgiref``'s ``sync_to_async`` / ``async_to_sync`` carry it across, and a
new ``threading.Thread`` starts without one (its queries fail closed).
:class:`TenantScopeMiddleware` sets it for a request.

What is guarded, and the short list of what is not, is in docs/scoping.md and
:mod:`tenant_indexes.querybinding`: every query that reaches a scoped table (root, join,
subquery, through table, ``_base_manager`` inside a scope), ``raw()`` / ``extra()`` /
``RawSQL()`` refused in a scope, and writes checked against the current tenant.
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

from . import querybinding
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
    """A :class:`~tenant_indexes.TenantQuerySet` whose tenant is bound when it runs.

    Built by :class:`TenantScopedManager`. Building one never raises; evaluating it
    (iterating, ``count()``, ``exists()``, ``aggregate()``, ``update()``, ``delete()``, as a
    subquery) filters it on the tenant current then, or raises
    :class:`~tenant_indexes.TenantNotSetError` when there is none
    (:mod:`tenant_indexes.querybinding` does it when Django compiles the query). Writes
    through it get the current tenant and refuse another one; ``raw()`` and ``extra()``
    refuse to run inside a scope because raw SQL cannot be filtered.
    """

    def _binding(self) -> Any:
        return getattr(self.query, querybinding.BINDING_ATTR, None)

    @property
    def is_unscoped(self) -> bool:
        """True for a queryset made by ``unscoped()``: every tenant's rows, always."""
        return self._binding() == querybinding.UNSCOPED

    def _write_tenant(self) -> Any:
        """The tenant a write through this queryset belongs to now, or ``None``."""
        if self.is_unscoped:
            return None
        scope = _current_scope.get()
        if scope is not None and not scope.all_tenants:
            return scope.tenant_id
        return self._binding()

    def for_tenant(self, tenant: Any) -> TenantScopedQuerySet:
        qs = super().for_tenant(tenant)
        if not self.is_unscoped:
            setattr(qs.query, querybinding.BINDING_ATTR, _tenant_pk(tenant))
        return qs

    def _claim(self, obj: models.Model, tenant_id: Any) -> None:
        attname = self.tenant_attname
        current = getattr(obj, attname)
        if current is None:
            setattr(obj, attname, tenant_id)
        elif str(current) != str(tenant_id):
            raise TenantScopeError(
                f"Refusing to write a {self.model.__name__} of tenant {current} while "
                f"scoped to tenant {tenant_id}."
            )

    def create(self, **kwargs: Any) -> Any:
        tenant_id = self._write_tenant()
        field, attname = _tenant_names(self.model)
        given = _tenant_pk(kwargs.get(field, kwargs.get(attname)))
        if tenant_id is not None:
            if given is None:
                kwargs.pop(field, None)
                kwargs[attname] = tenant_id
            elif str(given) != str(tenant_id):
                raise TenantScopeError(
                    f"Refusing to create a {self.model.__name__} of tenant {given} while "
                    f"scoped to tenant {tenant_id}."
                )
        elif given is None and not self._spans_tenants():
            raise querybinding.not_set_error(self.model)
        return super().create(**kwargs)

    def _spans_tenants(self) -> bool:
        scope = _current_scope.get()
        return self.is_unscoped or (scope is not None and scope.all_tenants)

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        objs = list(objs)
        tenant_id = self._write_tenant()
        if tenant_id is not None:
            for obj in objs:
                self._claim(obj, tenant_id)
        elif not self._spans_tenants():
            _, attname = _tenant_names(self.model)
            if any(getattr(obj, attname) is None for obj in objs):
                raise TenantNotSetError(
                    f"bulk_create() of {self.model.__name__} without a current tenant needs "
                    "every object's tenant set."
                )
        return super().bulk_create(objs, *args, **kwargs)

    def _refuse_raw(self, method: str) -> None:
        if self.is_unscoped:
            return
        scope = _current_scope.get()
        if scope is None and self._binding() is None:
            raise querybinding.not_set_error(self.model)
        if scope is None or not scope.all_tenants or self._binding() is not None:
            raise TenantScopeError(
                f"{self.model.__name__}.objects.{method}() cannot be limited to the current "
                f"tenant. Use .unscoped().{method}(...) and filter on the tenant column in "
                "the SQL."
            )

    def _require_tenant(self) -> None:
        # update() and delete() mark the transaction for rollback on any error; fail first.
        if querybinding.effective_tenant(self.query) is querybinding.MISSING:
            raise querybinding.not_set_error(self.model)

    def update(self, **kwargs: Any) -> int:
        self._require_tenant()
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        self._require_tenant()
        return super().delete()

    def raw(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse_raw("raw")
        return super().raw(*args, **kwargs)

    def extra(self, *args: Any, **kwargs: Any) -> Any:
        self._refuse_raw("extra")
        return super().extra(*args, **kwargs)


class TenantScopedManager(models.Manager.from_queryset(TenantScopedQuerySet)):  # type: ignore[misc]
    """A fail-closed default manager for a tenant-scoped model.

    Its querysets are bound to the tenant current when they run (:func:`tenant_context`, the
    middleware); run without one they raise :class:`~tenant_indexes.TenantNotSetError`.
    Building them never raises, so forms, admin classes and module-level querysets import
    fine. Three explicit ways out: ``for_tenant(tenant)``, ``unscoped()`` and
    :func:`all_tenants`.

    ``create(tenant=...)`` and ``bulk_create()`` of objects that carry their tenant work
    without a current tenant (they are writes of a named tenant, not reads).
    """

    def _base_queryset(self) -> TenantScopedQuerySet:
        return super().get_queryset()

    def get_queryset(self) -> TenantScopedQuerySet:
        qs = self._base_queryset()
        setattr(qs.query, querybinding.SCOPED_ROOT_ATTR, True)
        return qs

    def unscoped(self) -> TenantScopedQuerySet:
        """Escape hatch: every tenant's rows, whatever the current tenant. Use sparingly."""
        qs = self._base_queryset()
        setattr(qs.query, querybinding.BINDING_ATTR, querybinding.UNSCOPED)
        return qs

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
        return self.get_queryset().for_tenant(tenant)


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
