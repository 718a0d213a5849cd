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
from django.db.migrations.operations import AddIndex
from django.db.migrations.optimizer import MigrationOptimizer
from django.db.migrations.writer import MigrationWriter

from .indexes import TenantIndex
from .operations import AddIndexConcurrently

_CLASS_LINE = "class Migration(migrations.Migration):\n"


def is_tenant_index(index: Any) -> bool:
    """Whether makemigrations builds ``index`` concurrently: any :class:`TenantIndex`."""
    return isinstance(index, TenantIndex)


class TenantIndexAutodetector(MigrationAutodetector):
    """Django's autodetector, with tenant indexes on existing tables built concurrently."""

    def add_operation(
        self, app_label: str, operation: Any, dependencies: Any = None, beginning: bool = False
    ) -> None:
        if (
            type(operation) is AddIndex
            and is_tenant_index(operation.index)
            and (app_label, operation.model_name_lower) in self.from_state.models
        ):
            operation = AddIndexConcurrently(model_name=operation.model_name, index=operation.index)
        super().add_operation(app_label, operation, dependencies, beginning)

    def _detect_changes(self, convert_apps: Any = None, graph: Any = None) -> Any:
        # _detect_changes() is private Django API, absent from django-stubs.
        changes = super()._detect_changes(convert_apps, graph)  # type: ignore[misc]
        renamed: dict[tuple[str, str], tuple[str, str]] = {}
        for app_label, migrations in changes.items():
            changes[app_label] = [
                part
                for migration in migrations
                for part in _isolate_concurrent_operations(app_label, migration, renamed)
            ]
        # Whatever depended on a split migration now depends on its last part.
        for migrations in changes.values():
            for migration in migrations:
                migration.dependencies = [renamed.get(d, d) for d in migration.dependencies]
        return changes


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
    app_label: str, migration: Any, renamed: dict[tuple[str, str], tuple[str, str]]
) -> list[Any]:
    """Split ``migration`` in two: its other operations, then its concurrent ones, non-atomic.

    Moving the concurrent index builds to the end is safe: the autodetector never generates
    an operation that needs an index it adds in the same run. Without them in between, the
    optimizer may fold what they kept apart (a ``CreateModel`` and its ``AddField``), so it
    runs again on the rest.
    """
    concurrent = [op for op in migration.operations if isinstance(op, AddIndexConcurrently)]
    others = [op for op in migration.operations if not isinstance(op, AddIndexConcurrently)]
    if not concurrent:
        return [migration]
    if not others:
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
        if getattr(self.migration, "atomic", True) is False and _CLASS_LINE in text:
            text = text.replace(_CLASS_LINE, _CLASS_LINE + "    atomic = False\n", 1)
        return text
