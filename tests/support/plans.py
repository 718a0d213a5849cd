"""Plan-shape helpers: many small tables to ask about, a statement's plan, and the catalogs
a plan reads whole."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


def many_small_tables(cursor: Any, schema: str, count: int = 300) -> list[tuple[str, str]]:
    """``count`` tables (each with a primary key and a unique constraint, so it has indexes
    and constraints) in a new ``schema``, with fresh catalog statistics: enough of a small
    test database that a planner free to join would hash the catalogs whole."""
    cursor.execute(f"CREATE SCHEMA {schema}")
    for i in range(1, count + 1):
        cursor.execute(
            f"CREATE TABLE {schema}.t{i} (id int PRIMARY KEY, tenant_id int, "
            "UNIQUE (tenant_id, id))"
        )
    cursor.execute("ANALYZE pg_class, pg_index, pg_constraint, pg_namespace")
    return [(schema, f"t{i}") for i in range(1, count + 1)]


def plan(cursor: Any, sql: str, params: Sequence[Any]) -> str:
    """The statement's plan, without costs."""
    cursor.execute("EXPLAIN (COSTS OFF) " + sql, params)
    return "\n".join(row[0] for row in cursor.fetchall())


def whole_catalog_scans(plans: str) -> list[tuple[str, str]]:
    """The ``(catalog, alias)`` sequential scans of ``plans`` that read a catalog whole.

    pg_index ix is what the index statements read from (a scan of it, when most of a small
    test database is asked for, is the planner's right choice); pg_am and, in a test
    database, pg_namespace are a page or two, where a scan is the cheapest lookup. Every
    other catalog must only be looked up, in the sub-selects run per table, per index and
    per partition too.
    """
    scans = re.findall(r"Seq Scan on (pg_\w+) (\w+)", plans)
    small = ("pg_am", "pg_namespace")
    return [s for s in scans if s != ("pg_index", "ix_1") and s[0] not in small]
