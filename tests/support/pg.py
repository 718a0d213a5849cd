"""Small catalog helpers for assertions (the app's own catalog code is tested, not reused)."""

from __future__ import annotations

from django.db import connection


def index_columns_by_table(tables: list[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    """``{table: {index name: (key columns in order)}}`` for the given tables."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT t.relname, i.relname,
                   array(SELECT a.attname
                           FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, n)
                           JOIN pg_attribute a
                             ON a.attrelid = t.oid AND a.attnum = k.attnum
                          ORDER BY k.n)
              FROM pg_index ix
              JOIN pg_class t ON t.oid = ix.indrelid
              JOIN pg_class i ON i.oid = ix.indexrelid
             WHERE t.relname = ANY(%s) AND t.relnamespace = 'public'::regnamespace
            """,
            [tables],
        )
        result: dict[str, dict[str, tuple[str, ...]]] = {t: {} for t in tables}
        for table, index, columns in cursor.fetchall():
            result[table][index] = tuple(columns)
        return result


def invalid_indexes() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid ORDER BY 1"
        )
        return [row[0] for row in cursor.fetchall()]


def server_version_num() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        return int(cursor.fetchone()[0])


VALID_LEADING_SQL = """
SELECT count(*)
  FROM pg_index ix
  JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = ix.indkey[0]
 WHERE ix.indrelid = to_regclass(%s) AND ix.indisvalid AND ix.indisready AND a.attname = %s
"""


def valid_leading_index_count(table: str, column: str, conn=None) -> int:  # type: ignore[no-untyped-def]
    """How many valid indexes of ``table`` lead with ``column`` (0 once the table is gone)."""
    with (conn or connection).cursor() as cursor:
        cursor.execute(VALID_LEADING_SQL, [table, column])
        return int(cursor.fetchone()[0])
