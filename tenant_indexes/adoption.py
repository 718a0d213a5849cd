"""Adopting a database that Django did not build (``migrate --fake-initial``).

``migrate --fake-initial`` records an initial migration whose tables already exist without
running it, and Django skips its indexes and constraints with it. For tenant tables, this
app's ``migrate`` then calls :func:`build_faked_initial_indexes` before the migration is
recorded.
"""

from __future__ import annotations

from typing import Any

from django.db.models import UniqueConstraint

from .build import build_index_concurrently
from .uniquebuild import add_unique_constraint_concurrently


def build_faked_initial_indexes(connection: Any, migration: Any, output: Any = None) -> int:
    """Build what ``migrate --fake-initial`` skipped: the indexes and unique constraints of
    the tenant tables an initial migration creates, concurrently.

    For a database whose tables were made outside Django. Each declared index goes through
    :func:`build_index_concurrently`: a present one with the same definition is adopted, a
    missing one built, an INVALID one rebuilt, a different one refused with both
    definitions (:class:`~tenant_indexes.exceptions.IndexDefinitionMismatchError`). Unique
    constraints are built by :func:`add_unique_constraint_concurrently`.

    Returns:
        How many indexes and constraints were looked at.
    """
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.operations import CreateModel

    from .autodetector import is_safe_table

    if connection.vendor != "postgresql":
        return 0
    key = (migration.app_label, migration.name)
    state = MigrationLoader(connection).project_state(key, at_end=True)
    done = 0
    for operation in migration.operations:
        if not isinstance(operation, CreateModel):
            continue
        model_key = (migration.app_label, operation.name_lower)
        if not is_safe_table(state.models[model_key]):
            continue
        model = state.apps.get_model(*model_key)
        with connection.schema_editor(atomic=False) as editor:
            for index in model._meta.indexes:
                build_index_concurrently(editor, model, index, output=output)
                done += 1
            for constraint in model._meta.constraints:
                if isinstance(constraint, UniqueConstraint):
                    add_unique_constraint_concurrently(editor, model, constraint)
                    done += 1
    return done
