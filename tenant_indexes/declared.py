"""What the installed models declare: tenant-scoped tables and their tenant indexes.

Pure model introspection, no database access: ``declared_tenant_tables()`` is safe in a
system check, at import of a management command, or before the database exists.

A model is tenant-scoped when it has a :class:`~tenant_indexes.TenantForeignKey` (whatever
the field is called) or a concrete column named like ``TENANT_INDEXES["TENANT_COLUMN"]``
(default ``tenant_id``); :mod:`tenant_indexes.tenancy` finds it. Its tenant indexes are the
declared indexes whose columns include the tenant column: ``Meta.indexes``,
``Meta.constraints`` that are backed by a unique index, and the implicit index of a tenant
field with ``db_index=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import connections, models, router
from django.db.models import F
from django.db.models.expressions import OrderBy
from django.db.models.functions import Collate

from .conf import get_config
from .indexes import TenantIndex
from .sql import split_db_table, table_name
from .tenancy import tenant_column_of

# Index classes name their access method in ``suffix`` (GinIndex.suffix == "gin"); the base
# class says "idx" and builds a B-tree.
_BASE_INDEX_SUFFIX = "idx"


@dataclass(frozen=True)
class DeclaredIndex:
    """One index a model declares, resolved to database column names.

    Attributes:
        table: the model's ``db_table`` without its schema (see ``TenantTable.schema``).
        name: the index name the database will use.
        columns: key columns in order; ``None`` stands for an expression.
        descending: one flag per key column, ``True`` for ``DESC``.
        include: covering (``INCLUDE``) columns.
        expressions: the index expressions as SQL, ``None`` for a plain column index.
        condition: the partial-index predicate as SQL, ``None`` when there is none.
        unique: whether the index enforces uniqueness.
        method: access method (``btree``, ``gin``, ...).
        model: the model label (``app_label.ModelName``).
        app_label: the model's app label.
        origin: ``"index"`` (``Meta.indexes``), ``"constraint"`` (``Meta.constraints``) or
            ``"implicit"`` (a field's ``db_index=True``).
        key_expressions: each key expression that is not a plain column as SQL, without
            its sort order, in key order (what ``pg_get_expr(indexprs)`` lists).
    """

    table: str
    name: str
    columns: tuple[str | None, ...]
    descending: tuple[bool, ...] = ()
    include: tuple[str, ...] = ()
    expressions: str | None = None
    condition: str | None = None
    unique: bool = False
    method: str = "btree"
    model: str = ""
    app_label: str = ""
    origin: str = "index"
    key_expressions: tuple[str, ...] = ()

    @property
    def leads_with(self) -> str | None:
        """The first key column, ``None`` for an expression or an empty index."""
        return self.columns[0] if self.columns else None


@dataclass(frozen=True)
class TenantTable:
    """A tenant-scoped table and the tenant indexes its model declares.

    Attributes:
        app_label: the model's app label.
        model: the model label (``app_label.ModelName``).
        schema: the schema a ``db_table = '"schema"."table"'`` names, or ``None`` for
            "the connection's search_path" (and, when checked, each checked schema).
        table: the table name (``db_table`` without its schema).
        tenant_column: the column that holds the tenant.
        indexes: the declared indexes whose columns include the tenant column.
        all_index_names: every index name the model declares (for the static name checks).
        tenant_column_type: the column type Django writes for the tenant column on this
            alias (``Field.db_type()``: for a foreign key, the type of the tenant model's
            primary key, e.g. ``uuid``); ``None`` when unknown (no alias).
    """

    app_label: str
    model: str
    schema: str | None
    table: str
    tenant_column: str
    indexes: tuple[DeclaredIndex, ...]
    all_index_names: tuple[str, ...] = field(default=())
    tenant_column_type: str | None = None

    def in_schema(self, schema: str) -> TenantTable:
        """This table as checked in ``schema``: ``dataclasses.replace(self, schema=schema)``,
        without its call of ``__init__`` per field (a check makes one per table and schema)."""
        copy = object.__new__(TenantTable)
        copy.__dict__.update(self.__dict__, schema=schema)
        return copy

    @property
    def has_tenant_leading_index(self) -> bool:
        """Whether a declared, non-partial index leads with the tenant column."""
        return any(
            ix.leads_with == self.tenant_column and ix.condition is None for ix in self.indexes
        )


def declared_tenant_tables(
    using: str | None, app_labels: Sequence[str] | None = None
) -> tuple[TenantTable, ...]:
    """Every tenant-scoped table that the installed models declare for one database alias.

    Args:
        using: the database alias whose routers decide (``allow_migrate_model``); ``None``
            ignores routers (the static system checks look at every model).
        app_labels: only these apps (``None``: every installed app).

    Returns:
        One :class:`TenantTable` per managed, concrete, non-proxy tenant model that may be
        migrated to ``using``, in app and model order.

    Raises:
        LookupError: an app label is not installed.
    """
    if app_labels:
        model_lists = [apps.get_app_config(label).get_models() for label in app_labels]
        candidates = [m for group in model_lists for m in group]
    else:
        candidates = list(apps.get_models())
    tenant_column = get_config()["TENANT_COLUMN"]
    # Index names and expression SQL come from the schema editor of the alias (its quoting);
    # building one touches no database.
    editor = connections[using].schema_editor() if using else None
    tables = (
        tenant_table_for_model(model, using, tenant_column=tenant_column, editor=editor)
        for model in candidates
    )
    return tuple(t for t in tables if t is not None)


def tenant_table_for_model(
    model: type[models.Model],
    using: str | None = None,
    *,
    tenant_column: str | None = None,
    editor: Any = None,
) -> TenantTable | None:
    """The :class:`TenantTable` of one model, ``None`` when there is none to check.

    ``None`` for proxy, unmanaged, swapped and abstract models (their tables are someone
    else's), for models that the routers keep off ``using``, and for models that are not
    tenant-scoped.

    Args:
        model: the model class.
        using: the alias whose routers decide; ``None`` ignores routers.
        tenant_column: the configured tenant column (default: from the settings).
        editor: a schema editor of ``using`` (built on demand; it touches no database).
    """
    meta = model._meta
    if meta.proxy or not meta.managed or meta.swapped or meta.abstract:
        return None
    if using is not None and not router.allow_migrate_model(using, model):
        return None
    column = tenant_column_of(model, tenant_column)
    if column is None:
        return None
    if editor is None and using is not None:
        editor = connections[using].schema_editor()
    indexes = tuple(
        ix
        for ix, refs in _declared_indexes(model, editor)
        if column in ix.columns or column in refs
    )
    schema, table = split_db_table(meta.db_table)
    # Without routers (using=None) the column types still come from the editor's database.
    types_from = using if using is not None or editor is None else editor.connection.alias
    return TenantTable(
        app_label=meta.app_label,
        model=meta.label,
        schema=schema,
        table=table,
        tenant_column=column,
        indexes=indexes,
        all_index_names=tuple(ix.name for ix in meta.indexes if ix.name),
        tenant_column_type=_column_type(model, column, types_from),
    )


def _column_type(model: type[models.Model], column: str, using: str | None) -> str | None:
    """``db_type()`` of the field of ``model`` whose column is ``column``, on ``using``."""
    if using is None:
        return None
    for f in model._meta.local_concrete_fields:
        if f.column == column:
            try:
                return f.db_type(connections[using])
            except (ValueError, LookupError):  # a foreign key whose target is not resolved
                return None
    return None


def _declared_indexes(
    model: type[models.Model], editor: Any
) -> list[tuple[DeclaredIndex, set[str]]]:
    """Every declared index with the columns its expressions refer to."""
    meta = model._meta
    found: list[tuple[DeclaredIndex, set[str]]] = []
    for index in meta.indexes:
        if not index.name:
            continue
        found.append((_from_index(model, index, editor), _referenced_columns(model, index)))
    for constraint in meta.constraints:
        declared = _from_constraint(model, constraint, editor)
        if declared is not None:
            found.append((declared, set()))
    for f in meta.local_concrete_fields:
        # Field.db_index is set in Field.__init__; django-stubs leave the attribute out.
        if f.db_index and not f.unique:  # type: ignore[attr-defined]
            found.append(
                (
                    DeclaredIndex(
                        table=table_name(meta.db_table),
                        name=_implicit_index_name(model, f.column, editor),
                        columns=(f.column,),
                        descending=(False,),
                        model=meta.label,
                        app_label=meta.app_label,
                        origin="implicit",
                    ),
                    set(),
                )
            )
    return found


def declared_index(model: type[models.Model], index: models.Index, editor: Any) -> DeclaredIndex:
    """The :class:`DeclaredIndex` of one ``Index`` on ``model``, as the check sees it.

    The migration operation compares an existing index with this too, so the build and the
    check agree on what "the same definition" is.

    Args:
        model: the model (real or historical) the index belongs to.
        index: a named ``django.db.models.Index``.
        editor: a schema editor of the alias (its quoting); ``None`` keeps the SQL texts
            approximate (``str()`` of the expressions).
    """
    return _from_index(model, index, editor)


def _from_index(model: type[models.Model], index: models.Index, editor: Any) -> DeclaredIndex:
    if isinstance(index, TenantIndex):
        # An operation's index has not met its (historical) model yet.
        index.resolve_tenant_field(model)
    meta = model._meta
    key_expressions: tuple[str, ...] = ()
    if index.expressions:
        keys = [_expression_key(model, e) for e in index.expressions]
        columns: tuple[str | None, ...] = tuple(column for column, _ in keys)
        descending: tuple[bool, ...] = tuple(desc for _, desc in keys)
        expressions = _expressions_sql(model, index, editor)
        key_expressions = _key_expressions_sql(model, index, editor)
    else:
        columns = tuple(_column_of(model, name) for name, _ in index.fields_orders)
        descending = tuple(order == "DESC" for _, order in index.fields_orders)
        expressions = None
    method = index.suffix if index.suffix != _BASE_INDEX_SUFFIX else "btree"
    return DeclaredIndex(
        table=table_name(meta.db_table),
        name=index.name,
        columns=columns,
        descending=descending,
        include=_include_columns(model, index.include),
        expressions=expressions,
        condition=_condition_sql(model, index.condition, editor),
        unique=False,
        method=method,
        model=meta.label,
        app_label=meta.app_label,
        origin="index",
        key_expressions=key_expressions,
    )


def _expression_key(model: type[models.Model], expression: Any) -> tuple[str | None, bool]:
    """``(column, descending)`` of one index expression; ``column`` is ``None`` unless the
    expression is a bare field reference, which PostgreSQL stores as a plain key column."""
    descending = False
    if isinstance(expression, OrderBy):
        descending = bool(expression.descending)
        expression = expression.expression
    expression = _without_collation_and_opclass(expression)
    if isinstance(expression, F):
        try:
            return _column_of(model, expression.name), descending
        except Exception:  # a transform or a relation path: an expression after all
            return None, descending
    return None, descending


def _referenced_columns(model: type[models.Model], index: Any) -> set[str]:
    """Columns an expression index refers to anywhere in its expressions."""
    columns: set[str] = set()
    stack = list(index.expressions)
    while stack:
        node = stack.pop()
        # F has no flatten(); walk source expressions by hand.
        if isinstance(node, F):
            try:
                column = _column_of(model, node.name)
            except Exception:  # not a plain field name
                continue
            if column is not None:
                columns.add(column)
        elif hasattr(node, "get_source_expressions"):
            stack.extend(e for e in node.get_source_expressions() if e is not None)
    return columns


def _from_constraint(
    model: type[models.Model], constraint: models.BaseConstraint, editor: Any
) -> DeclaredIndex | None:
    # Only unique constraints on plain fields are backed by an index we can compare
    # column by column; check and exclusion constraints are left alone.
    if not isinstance(constraint, models.UniqueConstraint) or not constraint.fields:
        return None
    meta = model._meta
    columns = tuple(_column_of(model, name) for name in constraint.fields)
    return DeclaredIndex(
        table=table_name(meta.db_table),
        name=constraint.name,
        columns=columns,
        descending=tuple(False for _ in columns),
        # UniqueConstraint.include is set in __init__; django-stubs leave the attribute out.
        include=_include_columns(model, constraint.include),  # type: ignore[attr-defined]
        condition=_condition_sql(model, constraint.condition, editor),
        unique=True,
        method="btree",
        model=meta.label,
        app_label=meta.app_label,
        origin="constraint",
    )


def _column_of(model: type[models.Model], name: str) -> str | None:
    """The column of the field ``name``, ``None`` for a name without a column of its own.

    A many-to-many field or a reverse relation in an index has no column; Django's own model
    checks report it (``models.E012``, ``models.E013``).
    """
    field = model._meta.get_field(name)
    return field.column if isinstance(field, models.Field) else None


def _include_columns(model: type[models.Model], names: Sequence[str]) -> tuple[str, ...]:
    """The ``INCLUDE`` columns of an index or constraint (see :func:`_column_of`)."""
    columns = (_column_of(model, name) for name in names)
    return tuple(column for column in columns if column is not None)


def _implicit_index_name(model: type[models.Model], column: str, editor: Any) -> str:
    if editor is None:
        # No alias: the name only matters for the static checks, which look at
        # explicit names; the base algorithm is the same on every backend.
        editor = connections["default"].schema_editor()
    return editor._create_index_name(model._meta.db_table, [column], suffix="")


def _condition_sql(model: type[models.Model], condition: Any, editor: Any) -> str | None:
    if condition is None:
        return None
    if editor is None:
        return str(condition)
    try:
        from django.db.models.sql import Query

        query = Query(model=model, alias_cols=False)
        where = query.build_where(condition)
        compiler = query.get_compiler(connection=editor.connection)
        sql, params = where.as_sql(compiler, editor.connection)
        return sql % tuple(editor.quote_value(p) for p in params)
    except Exception:  # quoting may need a live connection: keep the shape
        return str(condition)


def _expressions_sql(model: type[models.Model], index: models.Index, editor: Any) -> str:
    if editor is None:
        return ", ".join(str(e) for e in index.expressions)
    try:
        return str(index.create_sql(model, editor).parts["columns"])
    except Exception:  # compiling may need a live connection: keep the shape
        return ", ".join(str(e) for e in index.expressions)


def _key_expressions_sql(
    model: type[models.Model], index: models.Index, editor: Any
) -> tuple[str, ...]:
    """Each key expression that is not a bare column, compiled alone as a select-list item.

    ``_expressions_sql`` renders the whole key list with sort orders and operator classes,
    which is no valid SQL expression; the server-side comparison needs plain expressions.
    """
    texts = []
    for expression in index.expressions:
        column, _ = _expression_key(model, expression)
        if column is not None:
            continue  # PostgreSQL stores it as a key column, not in indexprs
        bare = expression.expression if isinstance(expression, OrderBy) else expression
        texts.append(_expression_sql(model, _without_collation_and_opclass(bare), editor))
    return tuple(texts)


def _without_collation_and_opclass(expression: Any) -> Any:
    # PostgreSQL keeps an index key's collation and operator class apart from the expression
    # (indcollation, indclass) and stores COLLATE over a bare column as that column; like for
    # plain columns, they are not compared.
    while isinstance(expression, Collate) or type(expression).__name__ == "OpClass":
        expression = expression.get_source_expressions()[0]
    return expression


def _expression_sql(model: type[models.Model], expression: Any, editor: Any) -> str:
    if editor is None:
        return str(expression)
    try:
        from django.db.models.sql import Query

        query = Query(model=model, alias_cols=False)
        resolved = expression.resolve_expression(query, allow_joins=False)
        compiler = query.get_compiler(connection=editor.connection)
        sql, params = compiler.compile(resolved)
        return sql % tuple(editor.quote_value(p) for p in params)
    except Exception:  # quoting may need a live connection: keep the shape
        return str(expression)
