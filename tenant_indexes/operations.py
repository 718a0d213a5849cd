"""Migration operations that build and drop indexes without blocking writes, safely re-runnable.

Django ships ``AddIndexConcurrently`` in ``django.contrib.postgres``, but that module needs
psycopg at import time and raises ``TypeError`` on other backends (``add_index()`` there has
no ``concurrently`` argument). These operations are drop-in replacements that use
``CREATE INDEX CONCURRENTLY`` / ``DROP INDEX CONCURRENTLY`` on PostgreSQL and the plain
statements everywhere else, so one migration serves every backend.

On PostgreSQL a build goes through :func:`tenant_indexes.build.build_index_concurrently`
(adopt, rebuild, bounded lock waits, progress). ``sqlmigrate`` (``collect_sql``) looks up
the table's ``relkind`` and nothing else for an ordinary table, whose SQL is the plain
``CREATE INDEX CONCURRENTLY`` / ``DROP INDEX CONCURRENTLY``; for a partitioned table it
prints what the run does there (:mod:`tenant_indexes.partitionplan`).
"""

from __future__ import annotations

from typing import Any

from django.db.migrations.operations import AddIndex, RemoveIndex
from django.db.migrations.state import ProjectState
from django.db.models import Index

from . import partitionplan, partitions
from .build import build_index_concurrently
from .progress import migrate_output
from .safe_changes import ensure_not_in_transaction


def _is_postgresql(schema_editor: Any) -> bool:
    return schema_editor.connection.vendor == "postgresql"


class _NotInTransactionMixin:
    def _ensure_not_in_transaction(self, schema_editor: Any) -> None:
        ensure_not_in_transaction(self, schema_editor)


class AddIndexConcurrently(_NotInTransactionMixin, AddIndex):
    """Create an index with ``CREATE INDEX CONCURRENTLY`` on PostgreSQL, plainly elsewhere.

    On PostgreSQL the build goes through :func:`build_index_concurrently`: it adopts an
    existing valid index with the same definition, replaces an INVALID one, bounds its lock
    waits and reports progress to ``migrate``. The migration that holds it must set
    ``atomic = False``.
    """

    atomic = False

    def describe(self) -> str:
        index = self.index
        kind = "field(s)" if index.fields else "expression(s)"
        keys = [str(key) for key in (index.fields or index.expressions)]
        if getattr(index, "tenant_field_known", True) is False and keys:
            # A TenantIndex loaded from a migration file meets its model only when it runs:
            # until then its first key is a placeholder, so name it by its role.
            keys[0] = "the tenant field"
        return (
            f"Concurrently create index {index.name} on {kind} {', '.join(keys)} "
            f"of model {self.model_name}"
        )

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._ensure_not_in_transaction(schema_editor)
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if not _is_postgresql(schema_editor):
            schema_editor.add_index(model, self.index)
        elif schema_editor.collect_sql:
            # sqlmigrate: the statements of the run, found with one relkind lookup unless
            # the table is partitioned.
            partitionplan.collect_add_index(schema_editor, model, self.index)
        else:
            output = migrate_output(schema_editor.connection.alias)
            build_index_concurrently(schema_editor, model, self.index, output=output)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._ensure_not_in_transaction(schema_editor)
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if _is_postgresql(schema_editor):
            partitions.remove_index(schema_editor, model, self.index)
        else:
            schema_editor.remove_index(model, self.index)


class RemoveIndexConcurrently(_NotInTransactionMixin, RemoveIndex):
    """Drop an index with ``DROP INDEX CONCURRENTLY`` on PostgreSQL, plainly elsewhere."""

    atomic = False

    def describe(self) -> str:
        return f"Concurrently remove index {self.name} from {self.model_name}"

    def _index_from(self, state: ProjectState, app_label: str) -> Index:
        return state.models[app_label, self.model_name_lower].get_index_by_name(self.name)

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._ensure_not_in_transaction(schema_editor)
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        index = self._index_from(from_state, app_label)
        if _is_postgresql(schema_editor):
            partitions.remove_index(schema_editor, model, index)
        else:
            schema_editor.remove_index(model, index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._ensure_not_in_transaction(schema_editor)
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        index = self._index_from(to_state, app_label)
        if _is_postgresql(schema_editor) and not schema_editor.collect_sql:
            output = migrate_output(schema_editor.connection.alias)
            build_index_concurrently(schema_editor, model, index, output=output)
        elif _is_postgresql(schema_editor):
            partitionplan.collect_add_index(schema_editor, model, index)
        else:
            schema_editor.add_index(model, index)
