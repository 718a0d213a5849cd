"""Migration operations that build and drop indexes without blocking writes.

Django ships ``AddIndexConcurrently`` in ``django.contrib.postgres``, but that module needs
psycopg at import time and raises ``TypeError`` on other backends (``add_index()`` there has
no ``concurrently`` argument). These operations are drop-in replacements that use
``CREATE INDEX CONCURRENTLY`` / ``DROP INDEX CONCURRENTLY`` on PostgreSQL and the plain
statements everywhere else, so one migration serves every backend.
"""

from __future__ import annotations

from typing import Any

from django.db import NotSupportedError
from django.db.migrations.operations import AddIndex, RemoveIndex


def _is_postgresql(schema_editor: Any) -> bool:
    return schema_editor.connection.vendor == "postgresql"


class _NotInTransactionMixin:
    def _ensure_not_in_transaction(self, schema_editor: Any) -> None:
        # Only PostgreSQL refuses CONCURRENTLY inside a transaction block; elsewhere the
        # plain statement is fine either way. sqlmigrate (collect_sql) executes nothing.
        if (
            _is_postgresql(schema_editor)
            and not schema_editor.collect_sql
            and schema_editor.connection.in_atomic_block
        ):
            raise NotSupportedError(
                f"The {self.__class__.__name__} operation cannot be executed inside a "
                "transaction (set atomic = False on the migration)."
            )


class AddIndexConcurrently(_NotInTransactionMixin, AddIndex):
    """Create an index with ``CREATE INDEX CONCURRENTLY`` on PostgreSQL, plainly elsewhere.

    The migration that holds it must set ``atomic = False``.
    """

    atomic = False

    def describe(self) -> str:
        return (
            f"Concurrently create index {self.index.name} on field(s) "
            f"{', '.join(self.index.fields)} of model {self.model_name}"
        )

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._ensure_not_in_transaction(schema_editor)
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if _is_postgresql(schema_editor):
            schema_editor.add_index(model, self.index, concurrently=True)
        else:
            schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._ensure_not_in_transaction(schema_editor)
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if _is_postgresql(schema_editor):
            schema_editor.remove_index(model, self.index, concurrently=True)
        else:
            schema_editor.remove_index(model, self.index)


class RemoveIndexConcurrently(_NotInTransactionMixin, RemoveIndex):
    """Drop an index with ``DROP INDEX CONCURRENTLY`` on PostgreSQL, plainly elsewhere."""

    atomic = False

    def describe(self) -> str:
        return f"Concurrently remove index {self.name} from {self.model_name}"

    def _index_from(self, state, app_label):  # type: ignore[no-untyped-def]
        return state.models[app_label, self.model_name_lower].get_index_by_name(self.name)

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._ensure_not_in_transaction(schema_editor)
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        index = self._index_from(from_state, app_label)
        if _is_postgresql(schema_editor):
            schema_editor.remove_index(model, index, concurrently=True)
        else:
            schema_editor.remove_index(model, index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._ensure_not_in_transaction(schema_editor)
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        index = self._index_from(to_state, app_label)
        if _is_postgresql(schema_editor):
            schema_editor.add_index(model, index, concurrently=True)
        else:
            schema_editor.add_index(model, index)
