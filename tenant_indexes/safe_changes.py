"""Online-safe index changes: replace, unique constraints, the ``TenantForeignKey`` conversion.

``makemigrations`` (:mod:`tenant_indexes.autodetector`) writes these operations instead of
Django's for tenant tables (every table with ``TENANT_INDEXES["SAFE_MIGRATIONS_ALL_TABLES"]``),
each in a migration with ``atomic = False``. On PostgreSQL none of them holds a lock that
blocks the table's writes for longer than a catalog update, and none leaves the table
without the index it had until its replacement is built and valid:

- :class:`ChangeIndexConcurrently`: the new definition is built concurrently (under a
  temporary name when the name stays the same), verified valid, the names are swapped with
  ``ALTER INDEX ... RENAME`` in one short transaction, then the old index is dropped
  concurrently. A re-run after any step carries on from there.
- :class:`AddUniqueConstraintConcurrently`: ``CREATE UNIQUE INDEX CONCURRENTLY``, then
  ``ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX`` (a catalog update).
- :class:`ConvertToTenantForeignKey`: a ``ForeignKey`` to the tenant becomes a
  ``TenantForeignKey``; the foreign-key constraint is left as it is (Django drops it and
  validates it again under lock), and the old implicit index is dropped concurrently, only
  once another valid index leads with the tenant column.

On other backends they run Django's plain statements, so one migration serves every
backend. ``sqlmigrate`` prints the statements; it looks up the table's ``relkind`` and, on
a partitioned table, prints the partitioned build, swap and bounded drop the run does.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import NotSupportedError, OperationalError, transaction
from django.db.migrations.operations import AddConstraint, AlterField
from django.db.migrations.operations.base import Operation

from . import buildcontrol, partitionplan, partitions
from .build import (
    _is_lock_timeout,
    build_index_concurrently,
    drop_index_sql,
    existing_index_state,
)
from .catalog import valid_indexes_leading_with
from .conf import get_config
from .exceptions import IndexBuildError, LockWaitTimeoutError
from .progress import migrate_output
from .sql import qualified_name, quote_identifier, table_name

logger = logging.getLogger(__name__)

POSTGRES_NAME_LIMIT = 63


def _is_postgresql(schema_editor: Any) -> bool:
    return schema_editor.connection.vendor == "postgresql"


def ensure_not_in_transaction(operation: Any, schema_editor: Any) -> None:
    """Refuse to run a concurrent operation inside a transaction, as Django's own does.

    Only PostgreSQL refuses ``CONCURRENTLY`` in a transaction block. Also under
    ``sqlmigrate``: the SQL of an atomic migration would be wrapped in
    ``BEGIN``/``COMMIT``, which PostgreSQL rejects for ``CONCURRENTLY``.
    """
    if _is_postgresql(schema_editor) and (
        # sqlmigrate: whether the migration's SQL would be wrapped in BEGIN ... COMMIT.
        schema_editor.atomic_migration
        if schema_editor.collect_sql
        else schema_editor.connection.in_atomic_block
    ):
        raise NotSupportedError(
            f"The {operation.__class__.__name__} operation cannot be executed inside a "
            "transaction (set atomic = False on the migration)."
        )


def temporary_name(name: str, suffix: str) -> str:
    """``name`` with ``_<suffix>``, shortened to fit PostgreSQL's 63 characters."""
    tail = f"_{suffix}"
    return name[: POSTGRES_NAME_LIMIT - len(tail)] + tail


def _renamed(index: Any, name: str) -> Any:
    clone = index.clone()
    clone.name = name
    return clone


def _say(schema_editor: Any, message: str, *args: Any) -> None:
    logger.info(message, *args)
    output = migrate_output(schema_editor.connection.alias)
    if output is not None and output.verbosity >= 1:
        output.write("    " + (message % args))


def _table_schema(schema_editor: Any, model: Any) -> str:
    table = model._meta.db_table
    schema = buildcontrol.table_schema(schema_editor.connection, table)
    if schema is None:
        raise IndexBuildError(f'Table "{table}" does not exist.')
    return schema


def run_short_transaction(schema_editor: Any, statements: list[str]) -> None:
    """Run ``statements`` in one transaction whose lock waits are bounded.

    ``lock_timeout`` is ``BUILD_LOCK_TIMEOUT`` (``SET LOCAL``); a lock wait that runs into
    it rolls everything back and is retried ``BUILD_LOCK_RETRIES`` times with backoff, so a
    long transaction of the application delays the step instead of queueing its writes
    behind it.

    Raises:
        LockWaitTimeoutError: every try ran into the lock timeout.
    """
    config = get_config()
    connection = schema_editor.connection
    retries = int(config["BUILD_LOCK_RETRIES"])
    for attempt in range(1, retries + 2):
        try:
            with transaction.atomic(using=connection.alias):
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT set_config('lock_timeout', %s, true)",
                        [str(config["BUILD_LOCK_TIMEOUT"])],
                    )
                    for sql in statements:
                        cursor.execute(sql)
            return
        except OperationalError as error:
            if not _is_lock_timeout(error) or attempt > retries:
                if _is_lock_timeout(error):
                    raise LockWaitTimeoutError(
                        f"Gave up after {attempt} lock waits of {config['BUILD_LOCK_TIMEOUT']}"
                        f" each: {'; '.join(statements)}. Another session holds a lock on the"
                        " table; end it or wait, then run migrate again."
                    ) from error
                raise
            time.sleep(buildcontrol.retry_pause(config, attempt))


def _drop_concurrently(
    schema_editor: Any, schema: str, name: str, partitioned: bool = False
) -> None:
    if partitioned:
        # A partitioned index refuses CONCURRENTLY, and its partitions' attached indexes
        # cannot be dropped on their own: one plain DROP INDEX under a lock timeout.
        partitions.drop_partitioned_index(schema_editor, schema, name)
    else:
        schema_editor.execute(drop_index_sql(schema, name), params=None)


def replace_index_concurrently(schema_editor: Any, model: Any, old: Any, new: Any) -> None:
    """Replace index ``old`` of ``model`` by ``new`` without a moment without either.

    PostgreSQL, outside a transaction, not ``collect_sql``. Re-runnable after any step.
    On a partitioned table the build goes through :mod:`tenant_indexes.partitions`, the
    swap renames the partitioned indexes only (a catalog step; the partitions' indexes keep
    the names they were built under) and the old one goes in one bounded ``DROP INDEX``.
    """
    schema = _table_schema(schema_editor, model)
    output = migrate_output(schema_editor.connection.alias)
    part = partitions.is_partitioned(schema_editor.connection, table_name(model._meta.db_table),
                                     schema)  # fmt: skip
    how = "with one bounded DROP INDEX" if part else "concurrently"
    if new.name != old.name:
        build_index_concurrently(schema_editor, model, new, output=output)
        _say(schema_editor, 'dropping the replaced index "%s" %s', old.name, how)
        _drop_concurrently(schema_editor, schema, old.name, part)
        return
    staged = _renamed(new, temporary_name(new.name, "ti_new"))
    retired = temporary_name(old.name, "ti_old")
    state = existing_index_state(schema_editor, model, new)
    staged_state = existing_index_state(schema_editor, model, staged)
    if not (state == "same" and staged_state == "missing"):
        # The new definition under a temporary name, built and verified valid by the build.
        build_index_concurrently(schema_editor, model, staged, output=output)
        statements = []
        if state != "missing":
            statements.append(
                f"ALTER INDEX {qualified_name(schema, new.name)} "
                f"RENAME TO {quote_identifier(retired)}"
            )
        statements.append(
            f"ALTER INDEX {qualified_name(schema, staged.name)} "
            f"RENAME TO {quote_identifier(new.name)}"
        )
        if existing_index_state(schema_editor, model, _renamed(new, retired)) != "missing":
            # A retired index left by an interrupted run is dropped before the swap.
            _drop_concurrently(schema_editor, schema, retired, part)
        run_short_transaction(schema_editor, statements)
        _say(schema_editor, 'swapped the new definition in under the name "%s"', new.name)
        if existing_index_state(schema_editor, model, new) != "same":
            raise IndexBuildError(
                f'After the swap, index "{new.name}" is not the valid new definition; '
                "run migrate again."
            )
    _say(schema_editor, 'dropping the old definition "%s" %s', retired, how)
    _drop_concurrently(schema_editor, schema, retired, part)


def _collect_partitioned_replace(
    schema_editor: Any, model: Any, old: Any, new: Any, schema: str
) -> None:
    """What :func:`replace_index_concurrently` runs on a partitioned table, for ``sqlmigrate``:
    the partitioned build, the swap in a lock-bounded transaction, one bounded drop."""
    if new.name != old.name:
        partitionplan.collect_build(schema_editor, model, new, schema)
        drop = partitionplan.bounded_drop_sql(schema_editor, schema, old.name)
        partitionplan.collect(schema_editor, drop)
        return
    staged = _renamed(new, temporary_name(new.name, "ti_new"))
    retired = temporary_name(old.name, "ti_old")
    partitionplan.collect_build(schema_editor, model, staged, schema)
    timeout = schema_editor.quote_value(str(get_config()["BUILD_LOCK_TIMEOUT"]))
    swap = [
        "BEGIN",
        f"SET LOCAL lock_timeout = {timeout}",
        f"ALTER INDEX {qualified_name(schema, new.name)} RENAME TO {quote_identifier(retired)}",
        f"ALTER INDEX {qualified_name(schema, staged.name)} RENAME TO {quote_identifier(new.name)}",
        "COMMIT",
    ]
    partitionplan.collect(schema_editor, swap)
    partitionplan.collect(
        schema_editor, partitionplan.bounded_drop_sql(schema_editor, schema, retired)
    )


def _collect_replace_sql(schema_editor: Any, model: Any, old: Any, new: Any) -> None:
    """What :func:`replace_index_concurrently` runs, for ``sqlmigrate``."""
    partitioned = partitionplan.partitioned_schema(schema_editor, model)
    if partitioned is not None:
        _collect_partitioned_replace(schema_editor, model, old, new, partitioned)
        return
    schema = None  # the search_path
    if new.name != old.name:
        schema_editor.add_index(model, new, concurrently=True)
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote_identifier(old.name)}")
        return
    staged = _renamed(new, temporary_name(new.name, "ti_new"))
    retired = temporary_name(old.name, "ti_old")
    schema_editor.add_index(model, staged, concurrently=True)
    schema_editor.execute("BEGIN")
    schema_editor.execute(
        f"ALTER INDEX {qualified_name(schema, new.name)} RENAME TO {quote_identifier(retired)}"
    )
    schema_editor.execute(
        f"ALTER INDEX {qualified_name(schema, staged.name)} RENAME TO {quote_identifier(new.name)}"
    )
    schema_editor.execute("COMMIT")
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote_identifier(retired)}")


class ChangeIndexConcurrently(Operation):
    """Replace an index by a new definition concurrently: build, verify, swap, drop.

    Django's autodetector writes ``RemoveIndex`` then ``AddIndex`` for a changed index: a
    ``DROP INDEX`` under an ``ACCESS EXCLUSIVE`` lock, and a table without the index until
    the build ends. This operation builds first and drops last (see the module docstring).

    Args:
        model_name: the model.
        old_index: the index as it was (a named ``Index``).
        new_index: the index as it is declared now.
    """

    atomic = False
    reduces_to_sql = False
    reversible = True

    def __init__(self, model_name: str, old_index: Any, new_index: Any) -> None:
        self.model_name = model_name
        self.old_index = old_index
        self.new_index = new_index

    @property
    def model_name_lower(self) -> str:
        return self.model_name.lower()

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs = {
            "model_name": self.model_name,
            "old_index": self.old_index,
            "new_index": self.new_index,
        }
        return self.__class__.__qualname__, [], kwargs

    def state_forwards(self, app_label: str, state: Any) -> None:
        state.remove_index(app_label, self.model_name_lower, self.old_index.name)
        state.add_index(app_label, self.model_name_lower, self.new_index)

    def _replace(self, schema_editor: Any, model: Any, old: Any, new: Any) -> None:
        ensure_not_in_transaction(self, schema_editor)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if not _is_postgresql(schema_editor):
            schema_editor.remove_index(model, old)
            schema_editor.add_index(model, new)
        elif schema_editor.collect_sql:
            _collect_replace_sql(schema_editor, model, old, new)
        else:
            replace_index_concurrently(schema_editor, model, old, new)

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        self._replace(schema_editor, model, self.old_index, self.new_index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        self._replace(schema_editor, model, self.new_index, self.old_index)

    def describe(self) -> str:
        return (
            f"Concurrently replace index {self.old_index.name} on {self.model_name} "
            f"by its new definition {self.new_index.name}"
        )

    @property
    def migration_name_fragment(self) -> str:
        return f"{self.model_name_lower}_change_{self.new_index.name.lower()}"


class AddUniqueConstraintConcurrently(AddConstraint):
    """A ``UniqueConstraint`` added without blocking writes.

    ``CREATE UNIQUE INDEX CONCURRENTLY`` (an INVALID leftover of an earlier try, or a unique
    build over duplicate rows, is dropped and reported), then
    ``ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX`` in a short, lock-bounded
    transaction. A constraint with a condition or expressions is a unique index in Django
    and is built as one, concurrently.
    """

    atomic = False
    model_name: str  # set by AddConstraint; django-stubs do not declare them
    constraint: Any

    def describe(self) -> str:
        return (
            f"Concurrently create unique constraint {self.constraint.name} on model "
            f"{self.model_name}"
        )

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        ensure_not_in_transaction(self, schema_editor)
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if not _is_postgresql(schema_editor):
            schema_editor.add_constraint(model, self.constraint)
            return
        from .uniquebuild import add_unique_constraint_concurrently

        add_unique_constraint_concurrently(schema_editor, model, self.constraint)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        schema_editor.remove_constraint(model, self.constraint)


def implicit_index_names(schema_editor: Any, model: Any, field: Any) -> list[str]:
    """The names Django gives a ForeignKey's implicit index (and its ``_like`` twin)."""
    table = model._meta.db_table
    names = [schema_editor._create_index_name(table, [field.column], suffix="")]
    names.append(schema_editor._create_index_name(table, [field.column], suffix="_like"))
    return names


class ConvertToTenantForeignKey(AlterField):
    """A ``ForeignKey`` to the tenant becomes a ``TenantForeignKey``, online.

    Django's ``AlterField`` for this change drops the foreign-key constraint, drops the
    implicit index with a plain ``DROP INDEX`` and adds the constraint again, which
    validates every row under a ``SHARE ROW EXCLUSIVE`` lock. The column and the constraint
    do not change, so on PostgreSQL this operation only drops the implicit index,
    concurrently, and only when another valid index of the table leads with the tenant
    column (the ``TenantIndex`` built before it); otherwise it stops with a clear error and
    drops nothing. Other backends run Django's ``AlterField``.
    """

    atomic = False

    def describe(self) -> str:
        return (
            f"Convert {self.model_name}.{self.name} to a TenantForeignKey (its implicit index "
            "dropped concurrently once a tenant-leading index is valid)"
        )

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if not _is_postgresql(schema_editor):
            super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        ensure_not_in_transaction(self, schema_editor)
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        old_field = from_state.apps.get_model(app_label, self.model_name)._meta.get_field(self.name)
        names = implicit_index_names(schema_editor, model, old_field)
        if schema_editor.collect_sql:
            for name in names:
                schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote_identifier(name)}")
            return
        schema = _table_schema(schema_editor, model)
        table = qualified_name(schema, table_name(model._meta.db_table))
        leading = valid_indexes_leading_with(schema_editor.connection, table, old_field.column)
        keep = [n for n in leading if n not in names]
        if not keep:
            raise IndexBuildError(
                f"Not dropping the implicit index of {model._meta.label}.{self.name}: no other "
                f"valid index of {model._meta.db_table} leads with {old_field.column}, and the "
                "table would be left without one. Declare a TenantIndex on the model "
                "(makemigrations builds it before this step), or run repair_tenant_indexes."
            )
        for name in names:
            if existing_index_state_by_name(schema_editor, model, name):
                _say(schema_editor, 'dropping the implicit index "%s" concurrently', name)
                _drop_concurrently(schema_editor, schema, name)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if not _is_postgresql(schema_editor):
            super().database_backwards(app_label, schema_editor, from_state, to_state)
            return
        ensure_not_in_transaction(self, schema_editor)
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        field = model._meta.get_field(self.name)
        for index in _implicit_indexes(schema_editor, model, field):
            if schema_editor.collect_sql:
                schema_editor.add_index(model, index, concurrently=True)
            else:
                build_index_concurrently(
                    schema_editor,
                    model,
                    index,
                    output=migrate_output(schema_editor.connection.alias),
                )


def existing_index_state_by_name(schema_editor: Any, model: Any, name: str) -> bool:
    """Whether an index called ``name`` exists in the schema of ``model``'s table."""
    found = buildcontrol.index_and_leftovers(schema_editor.connection, model._meta.db_table, name)
    return any(f.name == name for f in found)


def _implicit_indexes(schema_editor: Any, model: Any, field: Any) -> list[Any]:
    from django.db.models import Index

    name = implicit_index_names(schema_editor, model, field)[0]
    return [Index(fields=[field.name], name=name)]


def concurrent_operation_types() -> tuple[type, ...]:
    """Every operation of this app that runs ``CONCURRENTLY`` on PostgreSQL."""
    from .operations import AddIndexConcurrently, RemoveIndexConcurrently

    return (
        AddIndexConcurrently,
        RemoveIndexConcurrently,
        ChangeIndexConcurrently,
        AddUniqueConstraintConcurrently,
        ConvertToTenantForeignKey,
    )


def is_concurrent_operation(operation: Any) -> bool:
    """Whether ``operation`` runs ``CONCURRENTLY`` on PostgreSQL: one of this app's, or
    ``django.contrib.postgres``'s (recognised by name: importing it needs psycopg), also
    inside ``SeparateDatabaseAndState``."""
    if isinstance(operation, concurrent_operation_types()):
        return True
    if type(operation).__module__ == "django.contrib.postgres.operations" and type(
        operation
    ).__name__ in ("AddIndexConcurrently", "RemoveIndexConcurrently"):
        return True
    return any(is_concurrent_operation(op) for op in getattr(operation, "database_operations", ()))
