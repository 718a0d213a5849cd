"""The one quoting rule for identifiers that reach SQL.

PostgreSQL quotes an identifier by wrapping it in double quotes and doubling every double
quote inside it. Django's ``quote_name`` wraps without doubling, so a table or index name
that contains ``"`` would end the identifier early; every identifier this app writes into a
statement (or passes to ``to_regclass()``) goes through :func:`quote_identifier` instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Django's own spelling of a table in a schema: ``db_table = '"schema"."table"'`` (its
# ``quote_name`` leaves a name that starts and ends with ``"`` as it is).
_QUALIFIED_DB_TABLE = re.compile(r'^"((?:[^"]|"")+)"\."((?:[^"]|"")+)"$')


def quote_identifier(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier: ``a"b`` becomes ``"a""b"``."""
    return '"' + identifier.replace('"', '""') + '"'


def qualified_name(schema: str | None, name: str) -> str:
    """``"schema"."name"`` quoted; without a schema, the bare quoted name (the search_path)."""
    if schema is None:
        return quote_identifier(name)
    return f"{quote_identifier(schema)}.{quote_identifier(name)}"


def split_db_table(db_table: str) -> tuple[str | None, str]:
    """``(schema, table)`` of a model's ``db_table``; ``(None, db_table)`` when it names no
    schema (the table is then found on the search_path).

    ``'"billing"."invoice"'`` (Django's quoted form) is ``("billing", "invoice")``; doubled
    quotes inside either part are undone. Every module that takes a ``db_table`` apart goes
    through this function.
    """
    match = _QUALIFIED_DB_TABLE.match(db_table)
    if match is None:
        return None, db_table
    schema, table = (part.replace('""', '"') for part in match.groups())
    return schema, table


def table_name(db_table: str) -> str:
    """The table part of ``db_table``, without its schema (see :func:`split_db_table`)."""
    return split_db_table(db_table)[1]


def table_reference(db_table: str) -> str:
    """``db_table`` quoted as SQL (and ``to_regclass()``) takes it: ``"schema"."table"``
    for a schema-qualified one, else the bare quoted name."""
    return qualified_name(*split_db_table(db_table))


@contextmanager
def quoting_by_our_rule(schema_editor: Any) -> Iterator[None]:
    """Make Django quote with :func:`quote_identifier` while it writes a statement.

    Django writes ``CREATE INDEX`` (table, index, columns, ``INCLUDE``, expressions and the
    predicate) through the schema editor's ``quote_name`` and its connection's
    ``ops.quote_name``; both are swapped for the duration of the block and restored after.
    """
    ops = schema_editor.connection.ops
    saved_editor = schema_editor.__dict__.get("quote_name")
    saved_ops = ops.__dict__.get("quote_name")
    schema_editor.quote_name = quote_identifier
    ops.quote_name = quote_identifier
    try:
        yield
    finally:
        for owner, saved in ((schema_editor, saved_editor), (ops, saved_ops)):
            if saved is None:
                del owner.quote_name
            else:
                owner.quote_name = saved
