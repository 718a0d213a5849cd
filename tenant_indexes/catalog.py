"""Every SQL statement that reads PostgreSQL's catalogs and statistics views.

Nothing outside this module queries ``pg_catalog`` or ``pg_stat_*``. Values go through
parameters and identifiers through ``quote_name`` / ``to_regclass``; one snapshot per
database alias costs a constant number of queries, never one per table or index.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections

# --- Snapshot of indexes and tables (check_tenant_indexes, tenant_index_stats) ----------

# --- Usage statistics beyond the snapshot (tenant_index_stats) ---------------------------
# Owned by tenant_index_stats (usage.py). Four queries per alias whatever the number of
# tables: clear the statistics snapshot, server facts, every index of the tables, the tables.
# --explain adds two statements per table (a real tenant value, then EXPLAIN without ANALYZE).


@dataclass(frozen=True)
class ServerStats:
    """Facts about one alias's server that decide how far its statistics can be trusted.

    Attributes:
        alias: the Django database alias.
        server_version: e.g. ``"16.2"``.
        server_version_num: e.g. ``160002``.
        in_recovery: the server is a standby (``pg_is_in_recovery()``).
        stats_reset: when this database's statistics were last reset, ``None`` if never.
        postmaster_start: when the server started (``pg_postmaster_start_time()``).
        now: the server's clock when the statistics were read (``clock_timestamp()``, not
            the transaction start: a reset inside the same transaction comes later than that).
    """

    alias: str
    server_version: str
    server_version_num: int
    in_recovery: bool
    stats_reset: datetime | None
    postmaster_start: datetime
    now: datetime

    @property
    def has_last_idx_scan(self) -> bool:
        """``pg_stat_*_indexes.last_idx_scan`` exists from PostgreSQL 16 on."""
        return self.server_version_num >= 160000


@dataclass(frozen=True)
class IndexUsage:
    """One live index with its definition and its statistics on one alias.

    ``key_columns`` holds ``None`` where a key is an expression (the expressions are in
    ``expressions``); ``include_columns`` are the ``INCLUDE`` columns, which are not keys.
    ``last_idx_scan`` is ``None`` when never scanned or when the server cannot tell
    (before 16: see :attr:`ServerStats.has_last_idx_scan`).
    """

    schema: str
    table: str
    name: str
    key_columns: tuple[str | None, ...]
    include_columns: tuple[str, ...]
    opclasses: tuple[str, ...]
    options: tuple[int, ...]
    collations: tuple[int, ...]
    expressions: str | None
    predicate: str | None
    method: str
    unique: bool
    primary: bool
    constraint: str | None
    valid: bool
    definition: str
    size_bytes: int
    idx_scan: int
    idx_tup_read: int
    idx_tup_fetch: int
    last_idx_scan: datetime | None


@dataclass(frozen=True)
class TableUsage:
    """One table's scan statistics and size on one alias."""

    schema: str
    table: str
    seq_scan: int
    seq_tup_read: int
    idx_scan: int
    n_live_tup: int
    last_seq_scan: datetime | None
    table_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class UsageSnapshot:
    """What one alias's statistics views say about the given tables, read in one pass."""

    server: ServerStats
    indexes: tuple[IndexUsage, ...]
    tables: tuple[TableUsage, ...]


@dataclass(frozen=True)
class TenantQueryPlan:
    """The plan of ``SELECT * FROM table WHERE tenant_column = <a real tenant>``.

    ``tenant`` is ``None`` (and the plan empty) when the table has no row to take a
    tenant from. ``index_names`` are the indexes the plan scans on this table.
    """

    schema: str
    table: str
    tenant_column: str
    tenant: str | None
    node_types: tuple[str, ...]
    index_names: tuple[str, ...]


_SERVER_STATS_SQL = """
SELECT current_setting('server_version'),
       current_setting('server_version_num')::int,
       pg_is_in_recovery(),
       d.stats_reset,
       pg_postmaster_start_time(),
       clock_timestamp()
  FROM pg_stat_database d
 WHERE d.datname = current_database()
"""

# {last_idx_scan}: the column on 16+, NULL before (the column does not exist there).
_INDEX_USAGE_SQL = """
SELECT n.nspname, t.relname, i.relname,
       array(SELECT a.attname::text
               FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
               LEFT JOIN pg_attribute a
                      ON a.attrelid = x.indrelid AND a.attnum = k.attnum AND k.attnum <> 0
              WHERE k.n <= x.indnkeyatts
              ORDER BY k.n),
       array(SELECT a.attname::text
               FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
               JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
              WHERE k.n > x.indnkeyatts
              ORDER BY k.n),
       array(SELECT oc.opcname::text
               FROM unnest(x.indclass::oid[]) WITH ORDINALITY AS c(opclass, n)
               JOIN pg_opclass oc ON oc.oid = c.opclass
              ORDER BY c.n),
       x.indoption::int2[],
       x.indcollation::oid[]::int8[],
       pg_get_expr(x.indexprs, x.indrelid),
       pg_get_expr(x.indpred, x.indrelid),
       am.amname,
       x.indisunique,
       x.indisprimary,
       con.contype::text,
       x.indisvalid,
       pg_get_indexdef(x.indexrelid),
       pg_relation_size(x.indexrelid),
       coalesce(s.idx_scan, 0),
       coalesce(s.idx_tup_read, 0),
       coalesce(s.idx_tup_fetch, 0),
       {last_idx_scan}
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_am am ON am.oid = i.relam
  LEFT JOIN pg_stat_all_indexes s ON s.indexrelid = x.indexrelid
  LEFT JOIN pg_constraint con
         ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid
        AND con.contype IN ('p', 'u', 'x')
 WHERE x.indrelid IN (SELECT to_regclass(name) FROM unnest(%s::text[]) AS name)
 ORDER BY n.nspname, t.relname, i.relname
"""

_TABLE_USAGE_SQL = """
SELECT n.nspname, c.relname,
       coalesce(s.seq_scan, 0),
       coalesce(s.seq_tup_read, 0),
       coalesce(s.idx_scan, 0),
       coalesce(s.n_live_tup, 0),
       {last_seq_scan},
       pg_relation_size(c.oid),
       pg_total_relation_size(c.oid)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
 WHERE c.oid IN (SELECT to_regclass(name) FROM unnest(%s::text[]) AS name)
 ORDER BY n.nspname, c.relname
"""


def qualified_name(schema: str, table: str) -> str:
    """``"schema"."table"`` quoted for ``to_regclass``."""
    return f"{_quote_identifier(schema)}.{_quote_identifier(table)}"


def _quote_identifier(identifier: str) -> str:
    # PostgreSQL's quoting rule. Django's quote_name does not double embedded quotes, and
    # these names go into to_regclass() as data, where a wrong quote is a wrong answer.
    return '"' + identifier.replace('"', '""') + '"'


def usage_snapshot(using: str, tables: Sequence[tuple[str, str]]) -> UsageSnapshot:
    """Read the statistics of ``tables`` (``(schema, table)`` pairs) on alias ``using``.

    Costs four queries, whatever the number of tables. Tables that do not exist are left
    out. The statistics snapshot is cleared first so that a read inside a longer
    transaction sees current counters (``stats_fetch_consistency`` caches them otherwise).
    """
    names = [qualified_name(schema, table) for schema, table in tables]
    conn = connections[using]
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(_SERVER_STATS_SQL)
        version, version_num, in_recovery, stats_reset, started, now = cursor.fetchone()
        server = ServerStats(
            alias=using,
            server_version=version,
            server_version_num=version_num,
            in_recovery=in_recovery,
            stats_reset=stats_reset,
            postmaster_start=started,
            now=now,
        )
        recent = server.has_last_idx_scan
        cursor.execute(
            _INDEX_USAGE_SQL.format(last_idx_scan="s.last_idx_scan" if recent else "NULL"),
            [names],
        )
        indexes = tuple(
            IndexUsage(
                schema=row[0],
                table=row[1],
                name=row[2],
                key_columns=tuple(row[3]),
                include_columns=tuple(row[4]),
                opclasses=tuple(row[5]),
                options=tuple(row[6]),
                collations=tuple(row[7]),
                expressions=row[8],
                predicate=row[9],
                method=row[10],
                unique=row[11],
                primary=row[12],
                constraint=row[13],
                valid=row[14],
                definition=row[15],
                size_bytes=row[16],
                idx_scan=row[17],
                idx_tup_read=row[18],
                idx_tup_fetch=row[19],
                last_idx_scan=row[20],
            )
            for row in cursor.fetchall()
        )
        cursor.execute(
            _TABLE_USAGE_SQL.format(last_seq_scan="s.last_seq_scan" if recent else "NULL"),
            [names],
        )
        table_rows = tuple(TableUsage(*row) for row in cursor.fetchall())
    return UsageSnapshot(server=server, indexes=indexes, tables=table_rows)


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)


def tenant_query_plans(
    using: str, tables: Sequence[tuple[str, str, str]]
) -> tuple[TenantQueryPlan, ...]:
    """EXPLAIN (never ANALYZE) a tenant-scoped query on each table.

    For each ``(schema, table, tenant_column)``: take the tenant of one real row, then
    ``EXPLAIN (FORMAT JSON) SELECT * FROM table WHERE tenant_column = <that tenant>``.
    Nothing is executed but one single-row read per table, so this is safe in production.
    Tables that do not exist are left out. Costs two statements per table.
    """
    conn = connections[using]
    plans = []
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NOT NULL",
            [[qualified_name(s, t) for s, t, _ in tables]],
        )
        existing = {row[0] for row in cursor.fetchall()}
        for schema, table, column in tables:
            if qualified_name(schema, table) not in existing:
                continue
            relation = f"{conn.ops.quote_name(schema)}.{conn.ops.quote_name(table)}"
            tenant_sql = conn.ops.quote_name(column)
            cursor.execute(
                f"SELECT {tenant_sql}::text, pg_typeof({tenant_sql})::text FROM {relation} LIMIT 1"
            )
            row = cursor.fetchone()
            if row is None:
                plans.append(TenantQueryPlan(schema, table, column, None, (), ()))
                continue
            tenant, type_name = row
            # The value goes as a parameter cast to the column's type (a regtype name the
            # server produced, already quoted), so the planner sees a typed constant as in
            # a real tenant query and can use the column's statistics.
            cursor.execute(
                f"EXPLAIN (FORMAT JSON) SELECT * FROM {relation} "
                f"WHERE {tenant_sql} = %s::{type_name}",
                [tenant],
            )
            document = cursor.fetchone()[0]
            if isinstance(document, str):
                document = json.loads(document)
            nodes = list(_plan_nodes(document[0]["Plan"]))
            plans.append(
                TenantQueryPlan(
                    schema=schema,
                    table=table,
                    tenant_column=column,
                    tenant=tenant,
                    node_types=tuple(node["Node Type"] for node in nodes),
                    index_names=tuple(
                        node["Index Name"]
                        for node in nodes
                        if "Index Name" in node and node.get("Relation Name", table) == table
                    ),
                )
            )
    return tuple(plans)


# --- Index builds (operations.py, repair_tenant_indexes) --------------------------------
