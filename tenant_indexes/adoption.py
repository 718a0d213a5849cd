"""Adopting a database that Django did not build (``migrate --fake-initial``).

``migrate --fake-initial`` records an initial migration whose tables already exist without
running it, and Django skips its indexes and constraints with it. For tenant tables, this
app's ``migrate`` then calls :func:`build_faked_initial_indexes` before the migration is
recorded.

A table made outside Django may hold the tenant in a column of another type than Django's
(hand-made SQL often has ``tenant_id varchar(36)``; Django's foreign key to a tenant
model with a ``UUIDField`` primary key is ``uuid``). Nothing fails until the first query
that compares the two, so the check reports it (``tenant_indexes.E021``,
:func:`tenant_column_type_findings`) and the adoption says so in ``migrate``'s output.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from typing import Any

from django.db.models import UniqueConstraint

from .build import build_index_concurrently
from .findings import E_TENANT_COLUMN_TYPE, Finding, Level
from .sql import qualified_name, quote_identifier, table_reference
from .uniquebuild import add_unique_constraint_concurrently

logger = logging.getLogger(__name__)

# Django's spellings of a type (``Field.db_type()``) that format_type() writes otherwise.
_TYPE_ALIASES = {
    "varchar": "character varying",
    "char": "character",
    "bpchar": "character",
    "int": "integer",
    "int4": "integer",
    "serial": "integer",
    "int8": "bigint",
    "bigserial": "bigint",
    "int2": "smallint",
    "smallserial": "smallint",
    "bool": "boolean",
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
}


@functools.lru_cache(maxsize=256)
def base_type(type_name: str) -> str:
    """``type_name`` without its modifier, in ``format_type()``'s spelling:
    ``varchar(36)`` is ``character varying``, ``int8`` is ``bigint``. A database has few
    distinct types; a check asks for each once per table."""
    bare = re.sub(r"\s*\([^)]*\)", "", type_name.strip().lower())
    return _TYPE_ALIASES.get(bare, bare)


def tenant_column_mismatch(live_type: str | None, declared_type: str | None) -> bool:
    """Whether the live tenant column's type differs from the type Django gives it."""
    if not live_type or not declared_type:
        return False
    return base_type(live_type) != base_type(declared_type)


def tenant_column_type_message(table: str, column: str, live: str, declared: str) -> str:
    return (
        f"column {column} of {table} is {base_type(live)}, but Django gives it type "
        f"{base_type(declared)} (the type of the tenant model's primary key): queries that "
        f"filter or join by tenant compare {base_type(declared)} with {base_type(live)}, "
        "which PostgreSQL refuses (operator does not exist) or cannot serve from the tenant "
        "indexes"
    )


def tenant_column_type_hint(table: str, column: str, declared: str) -> str:
    kind = base_type(declared)
    column = quote_identifier(column)
    return (
        f"Convert the column in a maintenance window: ALTER TABLE {table} ALTER COLUMN "
        f"{column} TYPE {kind} USING {column}::{kind} rewrites the table and every index "
        "under an ACCESS EXCLUSIVE lock; or online: add a new column, backfill it in "
        "batches, build its index concurrently and swap the names in one short "
        "transaction (docs/migrations.md, 'A tenant column of another type')"
    )


def tenant_column_type_findings(tables: Sequence[Any], snapshot: Any) -> list[Finding]:
    """E021 for each tenant table of ``snapshot`` whose tenant column has another type than
    the one Django gives it. A finding producer: reads only the snapshot."""
    findings = []
    for table in tables:
        live = snapshot.table(table.schema, table.table)
        if live is None:
            continue
        live_type = live.column_type(table.tenant_column)
        if not tenant_column_mismatch(live_type, table.tenant_column_type):
            continue
        label = f"{live.schema}.{live.name}"
        findings.append(
            Finding(
                id=E_TENANT_COLUMN_TYPE,
                level=Level.ERROR,
                database=snapshot.alias,
                schema=live.schema,
                table=table.table,
                index=None,
                message=tenant_column_type_message(
                    label, table.tenant_column, live_type, table.tenant_column_type
                ),
                hint=tenant_column_type_hint(
                    qualified_name(live.schema, live.name),
                    table.tenant_column,
                    table.tenant_column_type,
                ),
            )
        )
    return findings


def _warn_about_tenant_column(connection: Any, model: Any, output: Any) -> None:
    """Say in ``migrate``'s output (and the log) that the adopted table's tenant column has
    another type than Django's: the same words as E021."""
    from .tenancy import tenant_column_of

    column = tenant_column_of(model)
    if column is None:
        return
    field = next((f for f in model._meta.local_concrete_fields if f.column == column), None)
    if field is None:  # the column is a parent model's (multi-table inheritance)
        return
    declared = field.db_type(connection)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT format_type(a.atttypid, NULL) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(%s) AND a.attname = %s AND NOT a.attisdropped",
            [table_reference(model._meta.db_table), column],
        )
        row = cursor.fetchone()
    if row is None or not tenant_column_mismatch(row[0], declared):
        return
    table = table_reference(model._meta.db_table)
    line = (
        f"{E_TENANT_COLUMN_TYPE}: {tenant_column_type_message(table, column, row[0], declared)}."
        f" {tenant_column_type_hint(table, column, declared)}."
    )
    logger.warning("%s", line)
    if output is not None and output.verbosity >= 1:
        output.write("    " + line)


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
        _warn_about_tenant_column(connection, model, output)
        with connection.schema_editor(atomic=False) as editor:
            for index in model._meta.indexes:
                build_index_concurrently(editor, model, index, output=output)
                done += 1
            for constraint in model._meta.constraints:
                if isinstance(constraint, UniqueConstraint):
                    add_unique_constraint_concurrently(editor, model, constraint)
                    done += 1
    return done
