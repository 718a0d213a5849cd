"""Usage statistics reads: the server's statistics age, index and table usage, tenant plans.

Four statements per alias whatever the number of tables (clear the statistics snapshot and
bound the reads, server facts, every index of the tables, the tables); ``--explain`` adds two
statements per table (a real tenant value, then EXPLAIN without ANALYZE). Every read runs
under the ``CHECK_*`` timeouts in a transaction that is rolled back
(:func:`tenant_indexes.catalog.bounded_read`). The indexes are
:class:`~tenant_indexes.catalog.CatalogIndex` rows with their exact size and last scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .catalog import (
    INDEXES_OF_REQUESTED_TABLES,
    REQUESTED_TABLES_SQL,
    CatalogIndex,
    bounded_read,
    check_timeouts,
    explain_plan,
    index_from_row,
    index_rows_sql,
    plan_nodes,
    requested_arrays,
)
from .sql import qualified_name, quote_identifier


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
    estimated_rows: float  # pg_class.reltuples: what the planner believes (-1: never analysed)


@dataclass(frozen=True)
class UsageSnapshot:
    """What one alias's statistics views say about the given tables, read in one pass."""

    server: ServerStats
    indexes: tuple[CatalogIndex, ...]
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

# Clears the statistics snapshot (with stats_fetch_consistency = cache a read inside a
# longer transaction would otherwise see the counters of its first statistics access) and
# bounds the statements that follow in the same transaction.
_CLEAR_AND_BOUND_SQL = """
SELECT pg_stat_clear_snapshot(),
       set_config('statement_timeout', %s, true),
       set_config('lock_timeout', %s, true)
"""

# pg_relation_size() takes a share lock per relation: bounded by the lock timeout above.
_INDEX_USAGE_FIELDS = ("exact_size_bytes", "last_idx_scan")


def _index_usage_sql(recent: bool) -> str:
    # pg_stat_get_lastscan() (last_idx_scan) exists from 16 on.
    last_scan = "pg_stat_get_lastscan(ix.indexrelid)" if recent else "NULL::timestamptz"
    return index_rows_sql(
        INDEXES_OF_REQUESTED_TABLES,
        extra_columns=("pg_relation_size(ix.indexrelid)", last_scan),
        requested=True,
    )


_TABLE_USAGE_SQL = f"""
WITH requested AS ({REQUESTED_TABLES_SQL})
SELECT n.nspname, c.relname,
       coalesce(s.seq_scan, 0),
       coalesce(s.seq_tup_read, 0),
       coalesce(s.idx_scan, 0),
       coalesce(s.n_live_tup, 0),
       {{last_seq_scan}},
       pg_relation_size(c.oid),
       pg_total_relation_size(c.oid),
       c.reltuples::float8
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
 WHERE c.oid IN (SELECT oid FROM requested)
 ORDER BY n.nspname, c.relname
"""


def server_stats(using: str) -> ServerStats:
    """How old one alias's statistics are, and what its server can tell (two statements)."""
    with bounded_read(using) as cursor:
        return _server_stats(using, cursor)


def _server_stats(using: str, cursor: Any) -> ServerStats:
    cursor.execute(_CLEAR_AND_BOUND_SQL, check_timeouts())
    cursor.execute(_SERVER_STATS_SQL)
    version, version_num, in_recovery, stats_reset, started, now = cursor.fetchone()
    return ServerStats(
        alias=using,
        server_version=str(version).split()[0],
        server_version_num=version_num,
        in_recovery=in_recovery,
        stats_reset=stats_reset,
        postmaster_start=started,
        now=now,
    )


def usage_snapshot(using: str, tables: Sequence[tuple[str | None, str]]) -> UsageSnapshot:
    """Read the statistics of ``tables`` (``(schema or None, table)`` pairs) on ``using``.

    Costs four statements whatever the number of tables (plus the transaction's own), under
    the ``CHECK_*`` timeouts, in a transaction that is rolled back. Tables that do not exist
    are left out; a ``None`` schema resolves the table on the search_path. The statistics
    snapshot is cleared first so that a read inside a longer transaction sees current
    counters (``stats_fetch_consistency`` caches them otherwise).
    """
    arrays = requested_arrays(tables)
    with bounded_read(using) as cursor:
        server = _server_stats(using, cursor)
        recent = server.has_last_idx_scan
        cursor.execute(_index_usage_sql(recent), arrays)
        indexes = tuple(index_from_row(row, _INDEX_USAGE_FIELDS) for row in cursor.fetchall())
        cursor.execute(
            _TABLE_USAGE_SQL.format(last_seq_scan="s.last_seq_scan" if recent else "NULL"),
            arrays,
        )
        table_rows = tuple(TableUsage(*row) for row in cursor.fetchall())
    return UsageSnapshot(server=server, indexes=indexes, tables=table_rows)


# A typical tenant, not one of the most common values the planner knows: for a dominant
# tenant a sequential scan is the right plan, and asking about it would flag a healthy
# table. Falls back to any row when every tenant is common.
_TYPICAL_TENANT_SQL = """
SELECT tenant, type_name FROM (
  (SELECT {column}::text AS tenant, pg_typeof({column})::text AS type_name, 0 AS preference
     FROM {relation}
    WHERE {column}::text <> ALL (coalesce((SELECT most_common_vals::text::text[]
                                             FROM pg_stats
                                            WHERE schemaname = %s AND tablename = %s
                                              AND attname = %s), '{{}}'::text[]))
    LIMIT 1)
  UNION ALL
  (SELECT {column}::text, pg_typeof({column})::text, 1 FROM {relation} LIMIT 1)
) AS candidates ORDER BY preference LIMIT 1
"""


def tenant_query_plans(
    using: str, tables: Sequence[tuple[str, str, str]]
) -> tuple[TenantQueryPlan, ...]:
    """EXPLAIN (never ANALYZE) a tenant-scoped query on each table.

    For each ``(live schema, table, tenant_column)``: take the tenant of one real row (one
    that is not among ``pg_stats.most_common_vals`` when there is one), then
    ``EXPLAIN (FORMAT JSON) SELECT * FROM table WHERE tenant_column = <that tenant>``.
    Nothing is executed but one single-row read per table, so this is safe in production.
    Tables that do not exist are left out. Costs two statements per table, plus two, under
    the same timeouts as :func:`usage_snapshot`.
    """
    plans = []
    with bounded_read(using) as cursor:
        cursor.execute(_CLEAR_AND_BOUND_SQL, check_timeouts())
        cursor.execute(
            "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NOT NULL",
            [[qualified_name(s, t) for s, t, _ in tables]],
        )
        existing = {row[0] for row in cursor.fetchall()}
        for schema, table, column in tables:
            relation = qualified_name(schema, table)
            if relation not in existing:
                continue
            tenant_sql = quote_identifier(column)
            cursor.execute(
                _TYPICAL_TENANT_SQL.format(column=tenant_sql, relation=relation),
                [schema, table, column],
            )
            row = cursor.fetchone()
            if row is None:
                plans.append(TenantQueryPlan(schema, table, column, None, (), ()))
                continue
            tenant, type_name = row
            # The value goes as a parameter cast to the column's type (a regtype name the
            # server produced, already quoted), so the planner sees a typed constant as in
            # a real tenant query and can use the column's statistics.
            root = explain_plan(
                cursor,
                f"EXPLAIN (FORMAT JSON) SELECT * FROM {relation} "
                f"WHERE {tenant_sql} = %s::{type_name}",
                [tenant],
            )
            nodes = list(plan_nodes(root))
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


_LARGEST_TENANT_SQL = """
SELECT (most_common_vals::text::text[])[1]
  FROM pg_stats
 WHERE schemaname = %s AND tablename = %s AND attname = %s
"""


def representative_tenants(
    using: str, table: str | tuple[str, str], column: str
) -> tuple[str | None, str | None]:
    """A typical tenant and the largest tenant of ``table``, as text.

    The typical tenant is a real row's tenant outside the column's
    ``pg_stats.most_common_vals`` (the planner estimates every such tenant alike, so its plan
    is the one most tenants get); the largest is the first of ``most_common_vals``, else the
    typical one. Reads one row of the table under the ``CHECK_*`` timeouts, in a transaction
    that is rolled back.

    Args:
        using: the database alias.
        table: a table name (on the search_path) or a ``(schema, table)`` pair.
        column: the tenant column.

    Returns:
        ``(typical, largest)``; ``(None, None)`` when the table does not exist or is empty.
    """
    relation = qualified_name(*table) if isinstance(table, tuple) else quote_identifier(table)
    with bounded_read(using) as cursor:
        cursor.execute(_CLEAR_AND_BOUND_SQL, check_timeouts())
        cursor.execute(
            "SELECT n.nspname, c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
            [relation],
        )
        found = cursor.fetchone()
        if found is None:
            return None, None
        schema, name = found
        cursor.execute(
            _TYPICAL_TENANT_SQL.format(column=quote_identifier(column), relation=relation),
            [schema, name, column],
        )
        row = cursor.fetchone()
        if row is None:
            return None, None
        typical = row[0]
        cursor.execute(_LARGEST_TENANT_SQL, [schema, name, column])
        largest = cursor.fetchone()
    return typical, (largest[0] if largest and largest[0] is not None else typical)
