"""A unique constraint built online: its unique index concurrently, then the constraint
attached to it with ``ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX``.

The one place of that SQL and of its re-runnable steps, used by the migration operation
:class:`~tenant_indexes.safe_changes.AddUniqueConstraintConcurrently`, by the adoption of a
database built outside Django (:mod:`tenant_indexes.adoption`) and by
``repair_tenant_indexes`` (:mod:`tenant_indexes.repair`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.models import UniqueConstraint

from . import buildcontrol
from .conf import get_config
from .exceptions import IndexBuildError, IndexDefinitionMismatchError
from .safe_changes import _drop_concurrently, _say, _table_schema, run_short_transaction
from .sessions import interruptible_statements
from .sql import qualified_name, quote_identifier, table_name, table_reference


def uses_index_then_constraint(constraint: Any) -> bool:
    """Whether ``constraint`` can be attached ``USING INDEX``: a plain unique constraint on
    fields (no condition, expressions, ``INCLUDE``, operator classes or deferral). The
    others are unique *indexes* in Django already, and are built as such."""
    return bool(
        isinstance(constraint, UniqueConstraint)
        and constraint.fields
        and not constraint.condition
        and not constraint.expressions
        and not getattr(constraint, "include", None)
        and not getattr(constraint, "opclasses", None)
        and constraint.deferrable is None
    )


def _table_sql(model: Any, schema: str | None) -> str:
    """The model's table as SQL: in ``schema`` when one is given, else as its ``db_table``
    names it (``"schema"."table"``, or the bare name on the search_path)."""
    db_table = model._meta.db_table
    return qualified_name(schema, table_name(db_table)) if schema else table_reference(db_table)


def unique_index_sql(
    schema_editor: Any, model: Any, constraint: Any, schema: str | None = None
) -> str:
    """``CREATE UNIQUE INDEX CONCURRENTLY`` for ``constraint`` (fields or expressions); the
    table qualified by ``schema`` when one is given (``repair_tenant_indexes --dry-run``)."""
    statement = constraint.create_sql(model, schema_editor)
    text = str(statement)
    if uses_index_then_constraint(constraint):
        # Django writes ALTER TABLE ... ADD CONSTRAINT ... UNIQUE (cols): same columns.
        columns = ", ".join(
            quote_identifier(model._meta.get_field(f).column) for f in constraint.fields
        )
        nulls = ""
        if getattr(constraint, "nulls_distinct", None) is False:
            nulls = " NULLS NOT DISTINCT"
        return (
            f"CREATE UNIQUE INDEX CONCURRENTLY {quote_identifier(constraint.name)} ON "
            f"{_table_sql(model, schema)} ({columns}){nulls}"
        )
    return text.replace("CREATE UNIQUE INDEX", "CREATE UNIQUE INDEX CONCURRENTLY", 1)


def attach_constraint_sql(
    schema_editor: Any, model: Any, name: str, schema: str | None = None
) -> str:
    """``ALTER TABLE ... ADD CONSTRAINT name UNIQUE USING INDEX name``."""
    return (
        f"ALTER TABLE {_table_sql(model, schema)} ADD CONSTRAINT "
        f"{quote_identifier(name)} UNIQUE USING INDEX {quote_identifier(name)}"
    )


def add_unique_constraint_concurrently(schema_editor: Any, model: Any, constraint: Any) -> None:
    """Build ``constraint``'s unique index concurrently, then attach the constraint to it.

    Re-runnable: a valid unique index of that name is taken as built, an INVALID one is
    dropped and built again, an existing constraint is left alone.
    """
    connection = schema_editor.connection
    table = model._meta.db_table
    name = constraint.name
    if schema_editor.collect_sql:
        schema_editor.execute(unique_index_sql(schema_editor, model, constraint))
        if uses_index_then_constraint(constraint):
            schema_editor.execute(attach_constraint_sql(schema_editor, model, name))
        return
    schema = _table_schema(schema_editor, model)
    found = next(
        (f for f in buildcontrol.index_and_leftovers(connection, table, name) if f.name == name),
        None,
    )
    if found is not None and found.constraint:
        _say(schema_editor, 'adopted the existing constraint "%s"', name)
        return
    if found is not None and found.valid:
        _refuse_another_definition(model, constraint, found)
    if found is not None and not found.valid:
        _say(schema_editor, 'dropping the INVALID index "%s" concurrently', name)
        _drop_concurrently(schema_editor, schema, name)
        found = None
    if found is None:
        with _build_session(connection), interruptible_statements():
            schema_editor.execute(unique_index_sql(schema_editor, model, constraint), params=None)
    after = next(
        (f for f in buildcontrol.index_and_leftovers(connection, table, name) if f.name == name),
        None,
    )
    if after is None or not after.valid:
        raise IndexBuildError(
            f'CREATE UNIQUE INDEX CONCURRENTLY "{name}" returned but the index is '
            f"{'missing' if after is None else 'INVALID'}; run again to rebuild it."
        )
    if uses_index_then_constraint(constraint):
        run_short_transaction(schema_editor, [attach_constraint_sql(schema_editor, model, name)])
    _say(schema_editor, 'built unique constraint "%s" concurrently', name)


def _refuse_another_definition(model: Any, constraint: Any, found: Any) -> None:
    """A valid index with the constraint's name is adopted only if it is the constraint's:
    unique, no predicate unless the constraint has one, and the same key columns."""
    wanted = tuple(model._meta.get_field(f).column for f in constraint.fields)
    same = found.unique and (not wanted or tuple(found.columns) == wanted)
    same = same and (found.predicate is None) == (constraint.condition is None)
    if not same:
        raise IndexDefinitionMismatchError(
            f'A valid index "{found.name}" exists with another definition than the unique '
            f"constraint's ({found.definition}); drop or rename it, or rename the constraint."
        )


@contextmanager
def _build_session(connection: Any) -> Iterator[None]:
    """``lock_timeout`` of a build and no ``statement_timeout``, restored afterwards."""
    from .build import build_settings

    names = ("lock_timeout", "statement_timeout")
    previous = buildcontrol.session_settings(connection, names)
    wanted = {k: v for k, v in build_settings(get_config()).items() if k in names}
    buildcontrol.set_session_settings(connection, wanted)
    try:
        yield
    finally:
        if connection.connection is not None and connection.is_usable():
            buildcontrol.set_session_settings(
                connection, {k: v for k, v in previous.items() if v is not None}
            )
