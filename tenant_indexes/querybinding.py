"""Scoping that binds when a query runs: the query-compile hook.

A queryset of a fail-closed model records no tenant when it is built. The tenant is bound when
Django compiles the query, which happens when it runs (``_fetch_all``, ``iterator``, ``count``,
``exists``, ``aggregate``, ``update``, ``delete``, a subquery inside another query). So a
queryset built at import time (a form's ``ModelChoiceField``, an admin class, a module constant)
is filtered by the tenant current when it is evaluated, and raises only then if there is none.

:func:`install` (called by the app's ``ready()``) wraps three Django internals:

- ``Query.get_compiler``: the root table of a query on a scoped table gets
  ``tenant_column = <tenant>`` (an auto-created many-to-many table gets its scoped foreign keys
  limited to the tenant's rows); inserts and updates are checked (tenant filled in, another
  tenant refused, foreign keys into another tenant refused with one query per statement).
- ``Join.as_sql``: a join into a scoped table, from any model, gets the tenant condition in its
  ``ON`` clause (``Tenant.objects.values("projects__name")``, ``Count("tasks")``, a through
  model's ``values("task__title")``, ``select_related``, ordering across relations).
- ``Query.resolve_expression``: a subquery inherits the tenant named by ``for_tenant()`` on the
  query that contains it.

Which tables are scoped: the tables of concrete models whose default manager is a
:class:`~tenant_indexes.TenantScopedManager`. A queryset made by that manager on a proxy model
is scoped at its root too.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator
from typing import Any

from django.apps import apps
from django.db import connections
from django.db.models import Model, Q
from django.db.models.expressions import RawSQL
from django.db.models.lookups import Exact
from django.db.models.sql import Query
from django.db.models.sql.datastructures import Join
from django.db.models.sql.subqueries import AggregateQuery, InsertQuery, UpdateQuery
from django.db.models.sql.where import AND, ExtraWhere, WhereNode

from .exceptions import TenantNotSetError, TenantScopeError
from .tenancy import tenant_field_of

# Attributes a query carries (Query.clone() copies them with __dict__).
BINDING_ATTR = "_tenant_binding"  # UNSCOPED, or an explicit tenant id from for_tenant()
SCOPED_ROOT_ATTR = "_tenant_scoped_root"  # made by a TenantScopedManager: never unguarded
BOUND_ATTR = "_tenant_bound"  # the root filter is already in the WHERE clause

UNSCOPED = "unscoped"
MISSING = object()  # a tenant is required and none is set
_NO_FILTER = object()  # nothing to add: unscoped(), all_tenants(), or an unguarded root


@dataclasses.dataclass(frozen=True)
class ScopedTable:
    """A table of a fail-closed model and its tenant field."""

    model: type[Model]
    tenant_field: Any

    @property
    def tenant_column(self) -> str:
        return str(self.tenant_field.column)


@functools.cache
def scoped_tables() -> dict[str, ScopedTable]:
    """``{table name: ScopedTable}`` for every concrete model with a fail-closed manager."""
    from .scoping import TenantScopedManager

    tables: dict[str, ScopedTable] = {}
    for model in apps.get_models():
        if model._meta.proxy or not isinstance(model._default_manager, TenantScopedManager):
            continue
        field = tenant_field_of(model)
        if field is None or field.model._meta.db_table != model._meta.db_table:
            continue  # a multi-table child: its tenant column lives on the parent's table
        tables[model._meta.db_table] = ScopedTable(model, field)
    return tables


@functools.cache
def scoped_through_tables() -> dict[str, tuple[Any, ...]]:
    """``{table: (foreign keys into scoped models)}`` of auto-created many-to-many tables."""
    tables = scoped_tables()
    through: dict[str, tuple[Any, ...]] = {}
    for model in apps.get_models(include_auto_created=True):
        if not model._meta.auto_created:
            continue
        fks = tuple(
            f
            for f in model._meta.concrete_fields
            if f.is_relation
            and getattr(f.related_model, "_meta", None) is not None
            and f.related_model._meta.db_table in tables  # type: ignore[union-attr]
        )
        if fks:
            through[model._meta.db_table] = fks
    return through


def _current_scope() -> Any:
    from .scoping import _current_scope

    return _current_scope.get()


def _tenant_id_of(value: Any) -> Any:
    return value.pk if isinstance(value, Model) else value


def effective_tenant(query: Query) -> Any:
    """The tenant a query is bound to now: a tenant id, ``_NO_FILTER`` or ``MISSING``.

    A current tenant wins over ``for_tenant()`` (a queryset of tenant B evaluated in A's scope
    is filtered on both, so it returns nothing); ``unscoped()`` wins over everything.
    """
    binding = getattr(query, BINDING_ATTR, None)
    if binding == UNSCOPED:
        return _NO_FILTER
    scope = _current_scope()
    if scope is not None and not scope.all_tenants:
        return scope.tenant_id
    if binding is not None:
        return binding
    if scope is not None:  # all_tenants()
        return _NO_FILTER
    return MISSING


def not_set_error(model: Any) -> TenantNotSetError:
    name = getattr(model, "__name__", str(model))
    return TenantNotSetError(
        f"{name} is tenant-scoped and no tenant is set. Wrap the code in "
        "tenant_context(tenant) (TenantScopeMiddleware does it per request), use "
        f"{name}.objects.for_tenant(tenant), or, for admin and "
        "maintenance work across tenants, .unscoped() or all_tenants()."
    )


def _same(a: Any, b: Any) -> bool:
    return str(_tenant_id_of(a)) == str(_tenant_id_of(b))


# Raw SQL pieces cannot be limited to a tenant.


def _expressions(node: Any) -> Iterator[Any]:
    if isinstance(node, Query):
        return  # a subquery is compiled, and checked, on its own
    yield node
    children = node.children if isinstance(node, WhereNode) else None
    if children is None:
        get = getattr(node, "get_source_expressions", None)
        children = get() if get is not None else []
    for child in children:
        if child is not None:
            yield from _expressions(child)


def _refuse_raw_sql(query: Query, model: Any) -> None:
    nodes: list[Any] = [query.where, *query.annotations.values()]
    nodes += [o for o in query.order_by if not isinstance(o, str)]
    has_raw = bool(query.extra or query.extra_tables or query.extra_order_by) or any(
        isinstance(n, RawSQL | ExtraWhere) for node in nodes for n in _expressions(node)
    )
    if has_raw:
        raise TenantScopeError(
            f"A query on {model.__name__} uses RawSQL() or extra(), which cannot be limited to "
            "the current tenant. Use .unscoped() and filter on the tenant column in the SQL."
        )


# The root table.


def _root_table(query: Query) -> str | None:
    if query.alias_map:
        return str(query.alias_map[query.base_table].table_name)
    if query.model is None:
        return None
    return str(query.get_meta().db_table)


def _bind_root(query: Query, connection: Any) -> Query:
    table = _root_table(query)
    if table is None:
        return query
    tables = scoped_tables()
    through = scoped_through_tables()
    scoped_root = getattr(query, SCOPED_ROOT_ATTR, False)
    if table not in tables and table not in through and not scoped_root:
        return query
    tenant = effective_tenant(query)
    if tenant is _NO_FILTER:
        return query
    own_table = query.model is not None and table == query.get_meta().db_table
    if tenant is MISSING:
        if scoped_root or (table in tables and not own_table):
            raise not_set_error(tables[table].model if table in tables else query.model)
        # Model._base_manager and a through model's manager without a scope: Django's own
        # paths (cascades, refresh_from_db(), save(), forward foreign keys) stay usable.
        return query
    model = tables[table].model if table in tables else query.model
    if table in tables or scoped_root:
        _refuse_raw_sql(query, model)
    if isinstance(query, UpdateQuery):
        _check_update(query, tenant, connection)
    bound = query.clone()
    setattr(bound, BOUND_ATTR, True)
    alias = bound.get_initial_alias()
    if table in tables or scoped_root:
        field = tables[table].tenant_field if table in tables else tenant_field_of(query.model)
        if field is None:
            return query
        bound.where.add(Exact(field.get_col(alias), tenant), AND)
    elif own_table:
        for fk in through[table]:
            target = scoped_tables()[fk.related_model._meta.db_table]
            ids = target.model._base_manager.filter(**{target.tenant_field.attname: tenant}).values(
                "pk"
            )
            setattr(ids.query, BOUND_ATTR, True)
            bound.add_q(Q(**{f"{fk.name}__in": ids}))
    return bound


# Writes.


@dataclasses.dataclass
class _Probe:
    """One ``SELECT`` branch: rows of ``table`` with these key values and another tenant."""

    what: str
    table: str
    columns: tuple[str, ...]
    keys: list[tuple[Any, ...]]
    tenant_column: str


def _refuse_foreign_rows(probes: Iterable[_Probe], tenant: Any, connection: Any) -> None:
    """Run every probe in one statement; raise if one finds a row of another tenant."""
    probes = [p for p in probes if p.keys]
    if not probes:
        return
    qn = connection.ops.quote_name
    branches, params = [], []
    for probe in probes:
        cols = ", ".join(qn(c) for c in probe.columns)
        row = "(" + ", ".join(["%s"] * len(probe.columns)) + ")"
        branches.append(
            f"(SELECT %s FROM {qn(probe.table)} WHERE ({cols}) IN "
            f"({', '.join([row] * len(probe.keys))}) "
            f"AND {qn(probe.tenant_column)} IS DISTINCT FROM %s LIMIT 1)"
        )
        params.append(probe.what)
        for key in probe.keys:
            params.extend(key)
        params.append(tenant)
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(branches), params)
        found = cursor.fetchone()
    if found:
        raise TenantScopeError(
            f"Refusing to write: {found[0]} belongs to another tenant than the current one "
            f"({tenant})."
        )


def _fk_probe(field: Any, values: Iterable[Any], connection: Any) -> _Probe | None:
    target = scoped_tables().get(field.related_model._meta.db_table)
    if target is None:
        return None
    target_field = field.target_field
    keys = sorted(
        {
            (target_field.get_db_prep_value(_tenant_id_of(v), connection),)
            for v in values
            if v is not None and not hasattr(v, "resolve_expression")
        },
        key=str,
    )
    return _Probe(
        f"the {field.related_model.__name__} that {field.model.__name__}.{field.name} points at",
        target.model._meta.db_table,
        (target_field.column,),
        keys,
        target.tenant_column,
    )


def _check_insert(query: Any, connection: Any) -> None:
    table = query.get_meta().db_table
    tables = scoped_tables()
    if table not in tables and table not in scoped_through_tables():
        return
    tenant = effective_tenant(query)
    if tenant is _NO_FILTER or tenant is MISSING or query.raw:
        return  # without a scope a write names its tenant; the database constraint holds
    model = query.model
    probes: list[_Probe] = []
    entry = tables.get(table)
    if entry is not None:
        attname = entry.tenant_field.attname
        for obj in query.objs:
            current = getattr(obj, attname)
            if current is None:
                setattr(obj, attname, tenant)
            elif not _same(current, tenant):
                raise TenantScopeError(
                    f"Refusing to write a {model.__name__} of tenant {current} while scoped "
                    f"to tenant {tenant}."
                )
        # A row with the same key that belongs to another tenant: an INSERT that would
        # fall back from save()'s bound UPDATE, or an upsert that would overwrite it.
        unique = list(query.unique_fields) or [model._meta.pk]
        if entry.tenant_field not in unique:
            keys = [
                tuple(f.get_db_prep_value(getattr(obj, f.attname), connection) for f in unique)
                for obj in query.objs
            ]
            keys = [k for k in keys if all(v is not None for v in k)]
            probes.append(
                _Probe(
                    f"a {model.__name__} with the same {', '.join(f.name for f in unique)}",
                    table,
                    tuple(f.column for f in unique),
                    keys,
                    entry.tenant_column,
                )
            )
    for field in query.fields:
        if (
            field.is_relation
            and field.many_to_one
            and field is not getattr(entry, "tenant_field", None)
        ):
            probe = _fk_probe(field, (getattr(o, field.attname) for o in query.objs), connection)
            if probe is not None:
                probes.append(probe)
    _refuse_foreign_rows(probes, tenant, connection)


def _check_update(query: Any, tenant: Any, connection: Any) -> None:
    entry = scoped_tables().get(query.get_meta().db_table)
    probes = []
    for field, _model, value in query.values:
        if entry is not None and field == entry.tenant_field:
            if hasattr(value, "resolve_expression") or not _same(value, tenant):
                raise TenantScopeError(
                    f"Refusing to move {query.model.__name__} rows to another tenant "
                    f"({field.name}={_tenant_id_of(value)!r}) while scoped to tenant {tenant}."
                )
        elif field.is_relation and field.many_to_one:
            probe = _fk_probe(field, [value], connection)
            if probe is not None:
                probes.append(probe)
    _refuse_foreign_rows(probes, tenant, connection)


# The hooks.

_original_get_compiler = Query.get_compiler
_original_join_as_sql = Join.as_sql
_original_resolve_expression = Query.resolve_expression


def _get_compiler(
    self: Query, using: Any = None, connection: Any = None, elide_empty: bool = True
) -> Any:
    if not getattr(self, BOUND_ATTR, False) and not isinstance(self, AggregateQuery):
        conn = connection if connection is not None else connections[using or "default"]
        if isinstance(self, InsertQuery):
            _check_insert(self, conn)
        else:
            self = _bind_root(self, conn)
    return _original_get_compiler(self, using, connection, elide_empty)


def _join_as_sql(self: Join, compiler: Any, connection: Any) -> tuple[str, Any]:
    sql, params = _original_join_as_sql(self, compiler, connection)
    entry = scoped_tables().get(self.table_name)
    if entry is None:
        return sql, params
    tenant = effective_tenant(compiler.query)
    if tenant is _NO_FILTER:
        return sql, params
    if tenant is MISSING:
        raise not_set_error(entry.model)
    qn = connection.ops.quote_name
    field = getattr(entry.tenant_field, "target_field", entry.tenant_field)
    value = field.get_db_prep_value(tenant, connection)
    return f"{sql} AND {qn(self.table_alias)}.{qn(entry.tenant_column)} = %s", [
        *params,
        value,
    ]


def _resolve_expression(self: Query, query: Any = None, *args: Any, **kwargs: Any) -> Any:
    resolved = _original_resolve_expression(self, query, *args, **kwargs)
    outer = getattr(query, BINDING_ATTR, None)
    if outer not in (None, UNSCOPED) and getattr(resolved, BINDING_ATTR, None) is None:
        setattr(resolved, BINDING_ATTR, outer)
    return resolved


def install() -> None:
    """Install the hooks (idempotent); ``AppConfig.ready()`` calls it."""
    if Query.get_compiler is _get_compiler:
        return
    Query.get_compiler = _get_compiler  # type: ignore[method-assign]
    Join.as_sql = _join_as_sql  # type: ignore[method-assign]
    Query.resolve_expression = _resolve_expression  # type: ignore[method-assign]
