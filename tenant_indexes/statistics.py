"""Usage statistics reads: the server's statistics age, index and table usage, tenant plans.

Four statements per alias whatever the number of tables (clear the statistics snapshot and
bound the reads, server facts, every index of the tables, the tables); ``--explain`` adds two
statements per table (a real tenant value, then EXPLAIN without ANALYZE). Every read runs
under the ``CHECK_*`` timeouts in a transaction that is rolled back
(:func:`tenant_indexes.reads.bounded_read`). The indexes are
:class:`~tenant_indexes.catalog.CatalogIndex` rows with their exact size and last scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .indexrows import (
    INDEXES_OF_REQUESTED_TABLES,
    REQUESTED_TABLES_SQL,
    CatalogIndex,
    index_from_row,
    index_rows_sql,
    requested_arrays,
)
from .reads import bounded_read, check_timeouts, explain_plan, plan_nodes
from .sql import qualified_name, quote_identifier, table_reference


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
        stats_start: from PostgreSQL 15 on, since when the server's statistics have been
            counting: the earlier ``stats_reset`` of ``pg_stat_archiver`` and
            ``pg_stat_bgwriter``. Both are set when the statistics are created (initdb) or
            thrown away (a crash), and kept across a clean restart, as the index counters
            are. ``None`` before 15, where this does not hold.
    """

    alias: str
    server_version: str
    server_version_num: int
    in_recovery: bool
    stats_reset: datetime | None
    postmaster_start: datetime
    now: datetime
    stats_start: datetime | None = None

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
    tenant from. ``index_names`` are the indexes the plan scans on this table. ``role`` is
    ``"typical"`` (a tenant outside ``pg_stats.most_common_vals``) or ``"largest"`` (the most
    common tenant, whose share of the rows is ``tenant_share``); ``estimated_rows`` is the
    planner's row estimate for that tenant.
    """

    schema: str
    table: str
    tenant_column: str
    tenant: str | None
    node_types: tuple[str, ...]
    index_names: tuple[str, ...]
    role: str = "typical"
    estimated_rows: float | None = None
    tenant_share: float | None = None


_SERVER_STATS_SQL = """
SELECT current_setting('server_version'),
       current_setting('server_version_num')::int,
       pg_is_in_recovery(),
       d.stats_reset,
       pg_postmaster_start_time(),
       clock_timestamp(),
       CASE WHEN current_setting('server_version_num')::int >= 150000
            THEN (SELECT least(a.stats_reset, b.stats_reset)
                    FROM pg_stat_archiver a, pg_stat_bgwriter b) END
  FROM pg_stat_database d
 WHERE d.datname = current_database()
"""

# Clears the statistics snapshot (with stats_fetch_consistency = cache a read inside a
# longer transaction would otherwise see the counters of its first statistics access) and
# bounds the statements that follow in the same transaction.
# No JIT for catalog reads (see the snapshot's settings in catalog.py).
_CLEAR_AND_BOUND_SQL = """
SELECT pg_stat_clear_snapshot(),
       set_config('statement_timeout', %s, true),
       set_config('lock_timeout', %s, true),
       set_config('jit', 'off', true)
"""

# pg_relation_size() takes a share lock per relation: bounded by the lock timeout above.
_INDEX_USAGE_FIELDS = ("exact_size_bytes", "last_idx_scan")


def _index_usage_sql(recent: bool) -> str:
    # pg_stat_get_lastscan() (last_idx_scan) exists from 16 on.
    last_scan = "pg_stat_get_lastscan(ix.indexrelid)" if recent else "NULL::timestamptz"
    partition_scan = last_scan.replace("ix.indexrelid", "p.relid")
    return index_rows_sql(
        INDEXES_OF_REQUESTED_TABLES,
        extra_columns=(
            "CASE WHEN ix.relkind = 'I' THEN (SELECT sum(pg_relation_size(p.relid))::bigint "
            "FROM pg_partition_tree(ix.indexrelid) p) ELSE pg_relation_size(ix.indexrelid) END",
            f"CASE WHEN ix.relkind = 'I' THEN (SELECT max({partition_scan}) "
            f"FROM pg_partition_tree(ix.indexrelid) p) ELSE {last_scan} END",
        ),
        requested=True,
        per_row_lookups=True,
    )


# A partitioned table (relkind 'p') has no rows or scans of its own: everything is summed
# over its leaf partitions (pg_partition_tree, which lists nothing for an ordinary table).
_TABLE_USAGE_SQL = f"""
WITH requested AS ({REQUESTED_TABLES_SQL})
SELECT n.nspname, c.relname,
       coalesce(t.seq_scan, 0),
       coalesce(t.seq_tup_read, 0),
       coalesce(t.idx_scan, 0),
       coalesce(t.n_live_tup, 0),
       t.last_seq_scan,
       coalesce(t.table_bytes, 0),
       coalesce(t.total_bytes, 0),
       CASE WHEN c.relkind = 'p' THEN coalesce(t.reltuples, 0) ELSE c.reltuples::float8 END
  FROM (SELECT DISTINCT oid FROM requested) r
  CROSS JOIN LATERAL (SELECT c.oid, c.relname, c.relnamespace, c.relkind, c.reltuples
                        FROM pg_class c WHERE c.oid = r.oid OFFSET 0) c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN LATERAL (
      SELECT sum(pg_stat_get_numscans(p.relid))::bigint AS seq_scan,
             sum(pg_stat_get_tuples_returned(p.relid))::bigint AS seq_tup_read,
             sum((SELECT sum(pg_stat_get_numscans(i.indexrelid))
                    FROM pg_index i WHERE i.indrelid = p.relid))::bigint AS idx_scan,
             sum(pg_stat_get_live_tuples(p.relid))::bigint AS n_live_tup,
             max({{last_seq_scan}}) AS last_seq_scan,
             sum(pg_relation_size(p.relid))::bigint AS table_bytes,
             sum(pg_total_relation_size(p.relid))::bigint AS total_bytes,
             sum(greatest((SELECT pc.reltuples FROM pg_class pc WHERE pc.oid = p.relid),
                          0))::float8 AS reltuples
        FROM (SELECT relid FROM pg_partition_tree(c.oid) WHERE c.relkind = 'p' AND isleaf
              UNION ALL
              SELECT c.oid WHERE c.relkind <> 'p') p
  ) t ON true
 ORDER BY n.nspname, c.relname
"""


def server_stats(using: str) -> ServerStats:
    """How old one alias's statistics are, and what its server can tell (two statements)."""
    with bounded_read(using) as cursor:
        return _server_stats(using, cursor)


def _server_stats(using: str, cursor: Any) -> ServerStats:
    cursor.execute(_CLEAR_AND_BOUND_SQL, check_timeouts())
    cursor.execute(_SERVER_STATS_SQL)
    version, version_num, in_recovery, stats_reset, started, now, counting = cursor.fetchone()
    return ServerStats(
        alias=using,
        server_version=str(version).split()[0],
        server_version_num=version_num,
        in_recovery=in_recovery,
        stats_reset=stats_reset,
        postmaster_start=started,
        now=now,
        stats_start=counting,
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
            _TABLE_USAGE_SQL.format(
                last_seq_scan="pg_stat_get_lastscan(p.relid)" if recent else "NULL::timestamptz"
            ),
            arrays,
        )
        table_rows = tuple(TableUsage(*row) for row in cursor.fetchall())
    return UsageSnapshot(server=server, indexes=indexes, tables=table_rows)


# The tenants a skew-aware EXPLAIN plans, from the planner's own statistics. The largest is
# the first of pg_stats.most_common_vals (they come ordered by frequency); a typical one is a
# real row whose tenant is not among them, so its estimate is the "rest of the tenants" one.
# When every tenant is common (few tenants) the typical one is the least common of them;
# without statistics (never analysed) it is any row and there is no largest. The inherited
# row of a partitioned or inheritance parent is preferred: it describes the whole tree.
_TENANT_STATISTICS_SQL = """
SELECT s.most_common_vals::text::text[], s.most_common_freqs
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = %s
 WHERE c.oid = %s::regclass
 ORDER BY s.inherited DESC
 LIMIT 1
"""

_TYPICAL_TENANT_SQL = """
SELECT {column}::text FROM {relation}
 WHERE {column} IS NOT NULL AND {column}::text <> ALL (%s::text[])
 LIMIT 1
"""

_COLUMN_TYPE_SQL = """
SELECT format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a
 WHERE a.attrelid = %s::regclass AND a.attname = %s AND NOT a.attisdropped
"""


@dataclass(frozen=True)
class RepresentativeTenants:
    """The tenants a skew-aware EXPLAIN plans on one table.

    Attributes:
        typical: a real tenant outside ``pg_stats.most_common_vals`` (the least common of
            them when every tenant is common), ``None`` on an empty table.
        largest: the most common tenant according to ``pg_stats``, ``None`` without
            statistics (never analysed) or when the column has no most common values.
        largest_share: the planner's estimated share of the table's rows that are
            ``largest``'s (``most_common_freqs[0]``).
        type_name: the tenant column's type as the server writes it.
    """

    typical: str | None
    largest: str | None
    largest_share: float | None
    type_name: str | None


def _representative_tenants(cursor: Any, relation: str, column: str) -> RepresentativeTenants:
    """:class:`RepresentativeTenants` of ``relation`` (already quoted) on an open cursor."""
    cursor.execute(_COLUMN_TYPE_SQL, [relation, column])
    row = cursor.fetchone()
    if row is None:
        return RepresentativeTenants(None, None, None, None)
    type_name = row[0]
    cursor.execute(_TENANT_STATISTICS_SQL, [column, relation])
    row = cursor.fetchone()
    common: list[str] = list(row[0] or []) if row else []
    freqs: list[float] = list(row[1] or []) if row else []
    cursor.execute(
        _TYPICAL_TENANT_SQL.format(column=quote_identifier(column), relation=relation), [common]
    )
    found = cursor.fetchone()
    if found is not None:
        typical: str | None = found[0]
    elif len(common) > 1:
        typical = common[-1]  # every tenant is common: the least common of them
    else:
        typical = common[0] if common else None
    largest = common[0] if common else None
    if largest is not None and largest == typical:
        largest = None  # one tenant only: nothing to compare with
    return RepresentativeTenants(
        typical=typical,
        largest=largest,
        largest_share=freqs[0] if freqs and largest is not None else None,
        type_name=type_name,
    )


def representative_tenants(
    using: str, table: str | tuple[str, str], column: str
) -> tuple[str | None, str | None]:
    """A typical tenant and the largest tenant of ``table``, as text.

    The typical tenant is a real row's tenant that is not among the tenant column's
    ``pg_stats.most_common_vals``: the planner estimates every such tenant alike, so its
    plan is the one most tenants get. The largest is the first of ``most_common_vals``
    (``None`` when the table was never analysed or has one tenant only): for it a
    sequential scan can be the right plan. Costs four statements under the ``CHECK_*``
    timeouts, in a transaction that is rolled back; reads one row of the table.

    Args:
        using: the database alias.
        table: a table name (resolved on the search_path) or a ``(schema, table)`` pair.
        column: the tenant column.

    Returns:
        ``(typical, largest)``; ``(None, None)`` when the table or the column does not exist
        or the table is empty.
    """
    relation = qualified_name(*table) if isinstance(table, tuple) else table_reference(table)
    with bounded_read(using) as cursor:
        cursor.execute(_CLEAR_AND_BOUND_SQL, check_timeouts())
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [relation])
        if not cursor.fetchone()[0]:
            return None, None
        found = _representative_tenants(cursor, relation, column)
    return found.typical, found.largest


def tenant_query_plans(
    using: str, tables: Sequence[tuple[str, str, str]]
) -> tuple[TenantQueryPlan, ...]:
    """EXPLAIN (never ANALYZE) a tenant-scoped query on each table, for two tenants.

    For each ``(live schema, table, tenant_column)``: find a typical and the largest tenant
    (:func:`representative_tenants`), then
    ``EXPLAIN (FORMAT JSON) SELECT * FROM table WHERE tenant_column = <tenant>`` for each.
    The typical tenant's plan comes first (``role="typical"``), the largest's second
    (``role="largest"``, absent when the statistics name no most common tenant). Nothing is
    executed but one single-row read per table, so this is safe in production. Tables that
    do not exist are left out; a table without rows gets one typical plan with no tenant.
    Costs at most six statements per table, plus two, under the same timeouts as
    :func:`usage_snapshot`.
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
            tenants = _representative_tenants(cursor, relation, column)
            if tenants.typical is None or tenants.type_name is None:
                plans.append(TenantQueryPlan(schema, table, column, None, (), ()))
                continue
            for role, tenant in (("typical", tenants.typical), ("largest", tenants.largest)):
                if tenant is None:
                    continue
                # The value goes as a parameter cast to the column's type (a type name the
                # server produced, already quoted), so the planner sees a typed constant as
                # in a real tenant query and can use the column's statistics.
                root = explain_plan(
                    cursor,
                    f"EXPLAIN (FORMAT JSON) SELECT * FROM {relation} "
                    f"WHERE {quote_identifier(column)} = %s::{tenants.type_name}",
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
                        role=role,
                        estimated_rows=float(root.get("Plan Rows", 0.0)),
                        tenant_share=tenants.largest_share if role == "largest" else None,
                    )
                )
    return tuple(plans)
