"""``makemigrations`` integration: new tenant indexes on existing tables build concurrently.

:class:`TenantIndexAutodetector` turns the ``AddIndex`` that Django generates for a
:class:`~tenant_indexes.TenantIndex` on an *existing* model into
:class:`~tenant_indexes.operations.AddIndexConcurrently`, and gives those operations a
migration of their own with ``atomic = False``: ``CREATE INDEX CONCURRENTLY`` cannot run in a
transaction, and other operations must not lose theirs. The concurrent indexes of one change
share one migration after the others (a failed run re-applies safely: built ones are
adopted). Indexes of models created in the same run stay in ``CreateModel`` (an empty table
needs no concurrent build).

:class:`AtomicAwareMigrationWriter` writes ``atomic = False`` into such migrations; Django's
writer drops the attribute.

The ``makemigrations`` command of this app installs both: on Django 5.2 through its
``autodetector`` attribute, on 4.2 (which has none) by swapping the names the command uses
for the duration of one call.
"""

from __future__ import annotations

from typing import Any

from django.db.migrations import Migration
from django.db.migrations.autodetector import MigrationAutodetector
from django.db.migrations.operations import AddConstraint, AddIndex, AlterField, RemoveIndex
from django.db.migrations.optimizer import MigrationOptimizer
from django.db.migrations.writer import MigrationWriter
from django.db.models import UniqueConstraint

from .conf import get_config
from .fields import TenantForeignKey
from .indexes import TenantIndex
from .operations import AddIndexConcurrently, RemoveIndexConcurrently
from .safe_changes import (
    AddUniqueConstraintConcurrently,
    ChangeIndexConcurrently,
    ConvertToTenantForeignKey,
    is_concurrent_operation,
)

_CLASS_LINE = "class Migration(migrations.Migration):\n"


def is_tenant_index(index: Any) -> bool:
    """Whether makemigrations builds ``index`` concurrently: any :class:`TenantIndex`."""
    return isinstance(index, TenantIndex)


def _field_column(name: str, field: Any) -> str:
    if field.db_column:
        return str(field.db_column)
    return f"{name}_id" if getattr(field, "many_to_one", False) else name


def tenant_column_of_state(model_state: Any) -> str | None:
    """The tenant column of a model state: its ``TenantForeignKey``'s, else a field whose
    column is ``TENANT_INDEXES["TENANT_COLUMN"]``; ``None`` for other tables."""
    column = get_config()["TENANT_COLUMN"]
    for name, field in model_state.fields.items():
        if isinstance(field, TenantForeignKey):
            return _field_column(name, field)
    for name, field in model_state.fields.items():
        if _field_column(name, field) == column:
            return column
    return None


def is_safe_table(model_state: Any) -> bool:
    """Whether index changes of this model get the online-safe operations: tenant tables,
    every table with ``TENANT_INDEXES["SAFE_MIGRATIONS_ALL_TABLES"]``."""
    return bool(get_config()["SAFE_MIGRATIONS_ALL_TABLES"]) or (
        tenant_column_of_state(model_state) is not None
    )


def _db_kwargs(field: Any) -> dict[str, Any]:
    """What of a field reaches the database, except ``db_index`` and the class path."""
    _name, _path, _args, kwargs = field.deconstruct()
    for key in ("db_index", "on_delete", "related_name", "related_query_name", "to"):
        kwargs.pop(key, None)
    for key in getattr(field, "non_db_attrs", ()):
        kwargs.pop(key, None)
    return kwargs


def is_tenant_fk_conversion(old_field: Any, new_field: Any) -> bool:
    """A plain ``ForeignKey`` with its implicit index becoming a ``TenantForeignKey``
    without one, to the same model, with nothing else of the column changed."""
    from django.db.models import ForeignKey

    if not (
        isinstance(new_field, TenantForeignKey)
        and isinstance(old_field, ForeignKey)
        and not isinstance(old_field, TenantForeignKey)
        and getattr(old_field, "db_index", False)
        and not getattr(new_field, "db_index", True)
    ):
        return False
    same_target = str(old_field.remote_field.model).lower() == str(
        new_field.remote_field.model
    ).lower() or getattr(old_field.remote_field.model, "_meta", None) == getattr(
        new_field.remote_field.model, "_meta", None
    )
    return same_target and _db_kwargs(old_field) == _db_kwargs(new_field)


class TenantIndexAutodetector(MigrationAutodetector):
    """Django's autodetector, with online-safe index operations for tenant tables."""

    def _safe_model(self, app_label: str, model_name: str) -> Any:
        """The model's state when it exists before and after and its changes are made safe."""
        key = (app_label, model_name.lower())
        if key not in self.from_state.models or key not in self.to_state.models:
            return None
        model_state = self.to_state.models[key]
        return model_state if is_safe_table(model_state) else None

    def _safe_operation(self, app_label: str, operation: Any) -> Any:
        kind = type(operation)
        if kind is AddIndex:
            model = self._safe_model(app_label, operation.model_name)
            if model is not None or (
                is_tenant_index(operation.index)
                and (app_label, operation.model_name_lower) in self.from_state.models
            ):
                return AddIndexConcurrently(model_name=operation.model_name, index=operation.index)
        elif kind is RemoveIndex:
            model = self._safe_model(app_label, operation.model_name)
            old = self.from_state.models.get((app_label, operation.model_name_lower))
            if model is not None and old is not None:
                index = old.get_index_by_name(operation.name)
                if all(name.lstrip("-") in model.fields for name in index.fields):
                    return RemoveIndexConcurrently(
                        model_name=operation.model_name, name=operation.name
                    )
        elif kind is AddConstraint and isinstance(operation.constraint, UniqueConstraint):
            model = self._safe_model(app_label, operation.model_name)
            if model is not None and self._includes_tenant(model, operation.constraint):
                return AddUniqueConstraintConcurrently(
                    model_name=operation.model_name, constraint=operation.constraint
                )
        elif kind is AlterField:
            key = (app_label, operation.model_name_lower)
            if key in self.from_state.models and key in self.to_state.models:
                old_field = self.from_state.models[key].fields.get(operation.name)
                if old_field is not None and is_tenant_fk_conversion(old_field, operation.field):
                    return ConvertToTenantForeignKey(
                        model_name=operation.model_name,
                        name=operation.name,
                        field=operation.field,
                        preserve_default=operation.preserve_default,
                    )
        return operation

    @staticmethod
    def _includes_tenant(model_state: Any, constraint: Any) -> bool:
        if get_config()["SAFE_MIGRATIONS_ALL_TABLES"]:
            return True
        column = tenant_column_of_state(model_state)
        return any(
            _field_column(name, model_state.fields[name]) == column
            for name in constraint.fields
            if name in model_state.fields
        )

    def add_operation(
        self, app_label: str, operation: Any, dependencies: Any = None, beginning: bool = False
    ) -> None:
        operation = self._safe_operation(app_label, operation)
        super().add_operation(app_label, operation, dependencies, beginning)

    def _detect_changes(self, convert_apps: Any = None, graph: Any = None) -> Any:
        # _detect_changes() is private Django API, absent from django-stubs.
        changes = super()._detect_changes(convert_apps, graph)  # type: ignore[misc]
        renamed: dict[tuple[str, str], tuple[str, str]] = {}
        for app_label, migrations in changes.items():
            changes[app_label] = [
                part
                for migration in migrations
                for part in _isolate_concurrent_operations(
                    app_label, migration, renamed, self.from_state
                )
            ]
        # Whatever depended on a split migration now depends on its last part.
        for migrations in changes.values():
            for migration in migrations:
                migration.dependencies = [renamed.get(d, d) for d in migration.dependencies]
        return changes


def _order_concurrent(app_label: str, operations: list[Any], from_state: Any) -> list[Any]:
    """Builds first, drops last; a drop and a build of the same name become one change.

    So the table keeps every index it had until its replacement is valid.
    """
    added = {
        (op.model_name_lower, op.index.name): op
        for op in operations
        if isinstance(op, AddIndexConcurrently)
    }
    builds: list[Any] = []
    drops: list[Any] = []
    paired: set[int] = set()
    for op in operations:
        if isinstance(op, RemoveIndexConcurrently):
            new = added.get((op.model_name_lower, op.name))
            if new is not None:
                old_index = from_state.models[app_label, op.model_name_lower].get_index_by_name(
                    op.name
                )
                builds.append(ChangeIndexConcurrently(op.model_name, old_index, new.index))
                paired.add(id(new))
            else:
                drops.append(op)
        elif isinstance(op, ConvertToTenantForeignKey):
            drops.append(op)
    for op in operations:
        if id(op) in paired or isinstance(op, (RemoveIndexConcurrently, ConvertToTenantForeignKey)):
            continue
        builds.append(op)
    # A change replaces in place: keep the order builds, changes, drops.
    builds.sort(key=lambda op: isinstance(op, ChangeIndexConcurrently))
    return builds + drops


def _new_migration(
    name: str,
    app_label: str,
    operations: list[Any],
    dependencies: list[tuple[str, str]],
    *,
    initial: bool | None = None,
    atomic: bool = True,
) -> Migration:
    # Class attributes, as in a migration file: Migration.__init__ copies operations and
    # dependencies to the instance (django-stubs declare them ClassVar).
    attributes = {
        "operations": operations,
        "dependencies": dependencies,
        "initial": initial,
        "atomic": atomic,
    }
    return type("Migration", (Migration,), attributes)(name, app_label)


def _isolate_concurrent_operations(
    app_label: str,
    migration: Any,
    renamed: dict[tuple[str, str], tuple[str, str]],
    from_state: Any,
) -> list[Any]:
    """Split ``migration`` in two: its other operations, then its concurrent ones, non-atomic.

    Moving the concurrent index builds to the end is safe: the autodetector never generates
    an operation that needs an index it adds in the same run. Without them in between, the
    optimizer may fold what they kept apart (a ``CreateModel`` and its ``AddField``), so it
    runs again on the rest.
    """
    concurrent = [op for op in migration.operations if is_concurrent_operation(op)]
    others = [op for op in migration.operations if not is_concurrent_operation(op)]
    if not concurrent:
        return [migration]
    concurrent = _order_concurrent(app_label, concurrent, from_state)
    if not others:
        migration.operations = concurrent
        migration.atomic = False
        return [migration]
    first = _new_migration(
        f"{migration.name}_0",
        app_label,
        MigrationOptimizer().optimize(others, app_label),
        list(migration.dependencies),
        initial=migration.initial,
    )
    second = _new_migration(
        f"{migration.name}_1", app_label, concurrent, [(app_label, first.name)], atomic=False
    )
    renamed[(app_label, migration.name)] = (app_label, second.name)
    return [first, second]


class AtomicAwareMigrationWriter(MigrationWriter):
    """Django's migration writer, plus ``atomic = False`` for non-atomic migrations."""

    def as_string(self) -> str:
        text = super().as_string()
        non_atomic = getattr(self.migration, "atomic", True) is False or (
            # squashmigrations builds a new Migration class without ``atomic``: a squash
            # that keeps a concurrent operation must stay non-atomic to apply at all.
            getattr(self.migration, "replaces", None)
            and any(is_concurrent_operation(op) for op in self.migration.operations)
        )
        if non_atomic and _CLASS_LINE in text:
            text = text.replace(_CLASS_LINE, _CLASS_LINE + "    atomic = False\n", 1)
        return text
