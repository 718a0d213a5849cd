"""Every SQL statement that reads PostgreSQL's catalogs and statistics views.

Nothing outside this module queries ``pg_catalog`` or ``pg_stat_*``. Values go through
parameters and identifiers through ``quote_name`` / ``to_regclass``; one snapshot per
database alias costs a constant number of queries, never one per table or index.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections

# --- Snapshot of indexes and tables (check_tenant_indexes, tenant_index_stats) ----------
# Owner: issue #3. One read-only pass per alias: four statements whatever the number of
# tables (read-only mode, timeouts + server version, tables, indexes).


@dataclass(frozen=True)
class LiveIndex:
    """One index as PostgreSQL has it, with its usage counters.

    Attributes:
        schema: schema of the index (and of its table).
        table: the table it indexes.
        name: the index name.
        columns: key columns in order; ``None`` for an expression.
        descending: one flag per key column, ``True`` for ``DESC``.
        include: ``INCLUDE`` columns.
        expressions: the expressions as SQL (``pg_get_expr``), ``None`` without any.
        predicate: the partial-index predicate as SQL, ``None`` without one.
        unique: ``indisunique``.
        primary: ``indisprimary``.
        constraint: the constraint the index backs (primary key, unique, exclusion).
        method: the access method (``btree``, ``gin``, ...).
        valid: ``indisvalid``: the planner may use it.
        ready: ``indisready``: inserts maintain it.
        live: ``indislive``: not being dropped.
        definition: ``pg_get_indexdef()``.
        size_bytes: ``relpages * block_size``: exact as of the build or the last VACUUM or
            ANALYZE. Read from ``pg_class`` because ``pg_relation_size()`` takes a lock
            per relation and a readiness probe must never queue behind an ALTER TABLE.
        idx_scan: scans since statistics were reset (``pg_stat_user_indexes``).
        idx_tup_read: index entries returned by scans.
        idx_tup_fetch: live rows fetched by simple index scans.
        building: a ``CREATE INDEX [CONCURRENTLY]`` of this index is in progress.
    """

    schema: str
    table: str
    name: str
    columns: tuple[str | None, ...]
    descending: tuple[bool, ...]
    include: tuple[str, ...]
    expressions: str | None
    predicate: str | None
    unique: bool
    primary: bool
    constraint: str | None
    method: str
    valid: bool
    ready: bool
    live: bool
    definition: str
    size_bytes: int
    idx_scan: int | None
    idx_tup_read: int | None
    idx_tup_fetch: int | None
    building: bool = False


@dataclass(frozen=True)
class LiveTable:
    """One table the snapshot was asked about, as found on the server.

    Attributes:
        schema: the schema it was found in.
        name: the table name.
        requested_schema: the schema asked for (``None``: resolved on the search_path).
        estimated_rows: ``pg_class.reltuples`` (``-1`` or ``0`` before the first ANALYZE).
        size_bytes: ``relpages * block_size`` (lock-free estimate, see ``LiveIndex``).
        seq_scan: sequential scans (``pg_stat_user_tables``).
        idx_scan: index scans on the table.
        n_live_tup: live rows according to the statistics collector.
    """

    schema: str
    name: str
    requested_schema: str | None
    estimated_rows: float
    size_bytes: int
    seq_scan: int | None
    idx_scan: int | None
    n_live_tup: int | None


@dataclass(frozen=True)
class CatalogSnapshot:
    """What one database alias has, read in one pass.

    Attributes:
        alias: the Django database alias.
        vendor: ``connection.vendor`` (always ``postgresql`` here).
        server_version: ``"16.2"``-style text.
        server_version_num: ``160002``-style number.
        tables: the requested tables that exist.
        indexes: every index of those tables.
        building: names (``schema.index``) of indexes whose build is in progress.
        current_schema: where an unqualified missing table would be created
            (``current_schema()``), used to name the schema of a table that is not there.
    """

    alias: str
    vendor: str
    server_version: str
    server_version_num: int
    tables: tuple[LiveTable, ...]
    indexes: tuple[LiveIndex, ...]
    building: frozenset[str] = frozenset()
    current_schema: str | None = None
    # fix-defs: predicates and expressions normalised by the server (see that section).
    normalised: tuple[NormalisedDefinition, ...] = ()

    # Lookups are dictionaries built once per snapshot: at thousands of tables a linear scan
    # per declared index would make the comparison quadratic.
    @functools.cached_property
    def _tables_by_request(self) -> dict[tuple[str | None, str], LiveTable]:
        return {(t.requested_schema, t.name): t for t in self.tables}

    @functools.cached_property
    def _indexes_by_name(self) -> dict[tuple[str, str], LiveIndex]:
        return {(ix.schema, ix.name): ix for ix in self.indexes}

    @functools.cached_property
    def _indexes_by_table(self) -> dict[tuple[str, str], tuple[LiveIndex, ...]]:
        grouped: dict[tuple[str, str], list[LiveIndex]] = {}
        for ix in self.indexes:
            grouped.setdefault((ix.schema, ix.table), []).append(ix)
        return {key: tuple(value) for key, value in grouped.items()}

    def table(self, schema: str | None, name: str) -> LiveTable | None:
        """The live table for a requested ``(schema or None, name)``, ``None`` if missing."""
        return self._tables_by_request.get((schema, name))

    def indexes_of(self, table: LiveTable) -> tuple[LiveIndex, ...]:
        """Every index of one live table."""
        return self._indexes_by_table.get((table.schema, table.name), ())

    def index(self, schema: str, name: str) -> LiveIndex | None:
        """The index called ``name`` in ``schema`` (index names are unique per schema)."""
        return self._indexes_by_name.get((schema, name))

    @functools.cached_property
    def _normalised_by_name(self) -> dict[tuple[str, str], NormalisedDefinition]:
        return {(n.schema, n.name): n for n in self.normalised}

    def normalised_definition(self, schema: str, name: str) -> NormalisedDefinition | None:
        """The server-normalised predicate/expressions of index ``name`` (fix-defs)."""
        return self._normalised_by_name.get((schema, name))


# The requested tables, resolved the way the server would resolve the name: through the
# search_path when no schema is given. Identifiers are quoted by quote_ident, never by us.
_REQUESTED_TABLES_SQL = """
    SELECT DISTINCT ON (c.oid, r.schema) c.oid, r.schema
      FROM unnest(%s::text[], %s::text[]) AS r(schema, name)
      JOIN pg_class c
        ON c.oid = to_regclass(
               CASE WHEN r.schema IS NULL THEN quote_ident(r.name)
                    ELSE quote_ident(r.schema) || '.' || quote_ident(r.name) END)
     WHERE c.relkind IN ('r', 'p')
"""

_SNAPSHOT_SETTINGS_SQL = """
    SELECT set_config('statement_timeout', %s, true),
           set_config('lock_timeout', %s, true),
           current_setting('server_version'),
           current_setting('server_version_num')::int,
           current_schema()
"""

_SNAPSHOT_TABLES_SQL = f"""
    WITH requested AS ({_REQUESTED_TABLES_SQL})
    SELECT n.nspname, c.relname, r.schema, c.reltuples::float8,
           c.relpages::bigint * current_setting('block_size')::bigint,
           s.seq_scan, s.idx_scan, s.n_live_tup
      FROM requested r
      JOIN pg_class c ON c.oid = r.oid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
"""

# indkey is an int2vector: unnest WITH ORDINALITY keeps its order whatever its lower bound.
# attnum 0 marks an expression, so the LEFT JOIN yields NULL there. indoption bit 0 is DESC. The
# progress view only shows other roles' builds to members of pg_read_all_stats.
_SNAPSHOT_INDEXES_SQL = f"""
    WITH tables AS (SELECT DISTINCT oid FROM ({_REQUESTED_TABLES_SQL}) AS requested),
    building AS (
        SELECT index_relid FROM pg_stat_progress_create_index
         WHERE index_relid IS NOT NULL AND index_relid <> 0
    )
    SELECT n.nspname, t.relname, i.relname,
           -- Every column in index order (NULL for an expression), split into key and
           -- INCLUDE columns by indnkeyatts in Python: one sub-select per index, not three.
           array(SELECT a.attname::text
                   FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                   LEFT JOIN pg_attribute a
                          ON a.attrelid = ix.indrelid AND a.attnum = k.attnum AND k.attnum <> 0
                  ORDER BY k.n),
           ix.indnkeyatts,
           ix.indoption::int2[],
           pg_get_expr(ix.indexprs, ix.indrelid),
           pg_get_expr(ix.indpred, ix.indrelid),
           ix.indisunique, ix.indisprimary, con.conname, am.amname,
           ix.indisvalid, ix.indisready, ix.indislive,
           pg_get_indexdef(ix.indexrelid),
           i.relpages::bigint * current_setting('block_size')::bigint,
           -- The functions behind pg_stat_user_indexes, called directly: joining the view
           -- re-joins pg_class, pg_index and pg_namespace for every index.
           pg_stat_get_numscans(ix.indexrelid),
           pg_stat_get_tuples_returned(ix.indexrelid),
           pg_stat_get_tuples_fetched(ix.indexrelid),
           ix.indexrelid IN (SELECT index_relid FROM building)
      FROM pg_index ix
      JOIN tables ON tables.oid = ix.indrelid
      JOIN pg_class i ON i.oid = ix.indexrelid
      JOIN pg_class t ON t.oid = ix.indrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
      JOIN pg_am am ON am.oid = i.relam
      LEFT JOIN pg_constraint con
             ON con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid
            AND con.contype IN ('p', 'u', 'x')
     ORDER BY n.nspname, t.relname, i.relname
"""


def catalog_snapshot(
    using: str,
    tables: Iterable[tuple[str | None, str]],
    definitions: Iterable[DeclaredDefinition] = (),
) -> CatalogSnapshot:
    """Read the tables and indexes of one database alias in one read-only pass.

    The pass costs a constant number of statements (four outside a transaction, three
    inside one) whatever the number of tables, plus, only when ``definitions`` name
    existing indexes with a predicate or expressions, the few of
    :func:`normalise_definitions`. It runs in a transaction (a savepoint when
    the caller already holds one) that is rolled back at the end, so the local
    ``statement_timeout`` and ``lock_timeout`` and the read-only mode vanish with it and the
    connection is left as it was found.

    Args:
        using: the database alias.
        tables: ``(schema or None, table)`` pairs; ``None`` resolves the table on the
            connection's search_path. Tables that do not exist are simply absent from the
            snapshot.
        definitions: declared predicates and expressions to compare with the live indexes
            of the same name (see :func:`normalise_definitions`); only pairs where both
            sides have one cost statements.

    Returns:
        The snapshot.

    Raises:
        UnsupportedDatabase: the alias is not PostgreSQL.
        CatalogUnavailable: the server is unreachable, refused the credentials, or a
            statement failed or timed out.
    """
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError, connections, transaction

    from .conf import get_config
    from .exceptions import CatalogUnavailable, UnsupportedDatabase

    connection = connections[using]
    if connection.vendor != "postgresql":
        raise UnsupportedDatabase(
            f"database {using!r} is {connection.vendor}: a live index check needs PostgreSQL"
        )
    config = get_config()
    requested = list(dict.fromkeys(tables))
    schemas = [schema for schema, _ in requested]
    names = [name for _, name in requested]
    try:
        _connect_with_timeout(connection, int(config["CHECK_CONNECT_TIMEOUT_S"]))
        outermost = not connection.in_atomic_block
        with transaction.atomic(using=using), connection.cursor() as cursor:
            if outermost:
                # Only possible as the first statement of a transaction; inside a caller's
                # transaction we issue nothing but SELECTs anyway.
                cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute(_SNAPSHOT_SETTINGS_SQL, _timeouts())
            _, _, server_version, server_version_num, current_schema = cursor.fetchone()
            cursor.execute(_SNAPSHOT_TABLES_SQL, [schemas, names])
            live_tables = tuple(LiveTable(*row) for row in cursor.fetchall())
            cursor.execute(_SNAPSHOT_INDEXES_SQL, [schemas, names])
            live_indexes = tuple(_live_index(row) for row in cursor.fetchall())
            normalised = normalise_definitions(
                connection, _definition_requests(definitions, live_tables, live_indexes)
            )
            # Roll back rather than commit: nothing this pass set (read-only mode, local
            # timeouts) outlives it, also when it ran in a savepoint of the caller's.
            transaction.set_rollback(True, using=using)
    except (DatabaseError, ImproperlyConfigured) as e:
        raise CatalogUnavailable(f"database {using!r}: {first_error_line(e)}") from e
    return CatalogSnapshot(
        alias=using,
        vendor=connection.vendor,
        server_version=str(server_version).split()[0],
        server_version_num=int(server_version_num),
        tables=live_tables,
        indexes=live_indexes,
        building=frozenset(f"{ix.schema}.{ix.name}" for ix in live_indexes if ix.building),
        current_schema=current_schema,
        normalised=normalised,
    )


_INDOPTION_DESC = 1  # pg_index.indoption bit: the key column sorts descending


def first_error_line(error: BaseException) -> str:
    """The first line of a database error's message (its class name when it has none).

    Drivers append DETAIL, HINT and context lines; a report keeps one line per database.
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _live_index(row: tuple[Any, ...]) -> LiveIndex:
    (schema, table, name, all_columns, key_count, options, expressions, predicate, unique,
     primary, constraint, method, valid, ready, live, definition, size_bytes, idx_scan,
     idx_tup_read, idx_tup_fetch, building) = row  # fmt: skip
    columns = tuple(all_columns[:key_count])
    return LiveIndex(
        schema=schema,
        table=table,
        name=name,
        columns=columns,
        descending=tuple(bool(option & _INDOPTION_DESC) for option in options[:key_count]),
        include=tuple(all_columns[key_count:]),
        expressions=expressions,
        predicate=predicate,
        unique=unique,
        primary=primary,
        constraint=constraint,
        method=method,
        valid=valid,
        ready=ready,
        live=live,
        definition=definition,
        size_bytes=size_bytes,
        idx_scan=idx_scan,
        idx_tup_read=idx_tup_read,
        idx_tup_fetch=idx_tup_fetch,
        building=bool(building),
    )


_CONNECT_OPTIONS_LOCK = threading.Lock()


def _connect_with_timeout(connection: Any, seconds: int) -> None:
    """Open the connection with a connect timeout unless the alias sets its own.

    The alias's settings are changed only for the duration of the connect, so other code
    that opens this alias later gets exactly what the user configured.
    """
    if connection.connection is not None:
        return
    settings_dict = connection.settings_dict
    options = settings_dict.get("OPTIONS") or {}
    if "connect_timeout" in options or seconds <= 0:
        connection.ensure_connection()
        return
    # Threads share the alias's settings dict: serialise the change-and-restore window so
    # one thread's restore never undoes (or keeps) another's timeout.
    with _CONNECT_OPTIONS_LOCK:
        settings_dict["OPTIONS"] = {**options, "connect_timeout": seconds}
        try:
            connection.ensure_connection()
        finally:
            settings_dict["OPTIONS"] = options


# --- end Snapshot ---------------------------------------------------------------------------

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
    estimated_rows: float  # pg_class.reltuples: what the planner believes (-1: never analysed)


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
       pg_get_expr(x.indexprs, x.indrelid),
       pg_get_expr(x.indpred, x.indrelid),
       am.amname,
       x.indisunique,
       x.indisprimary,
       con.conname::text,
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
       pg_total_relation_size(c.oid),
       c.reltuples::float8
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
 WHERE c.oid IN (SELECT to_regclass(name) FROM unnest(%s::text[]) AS name)
 ORDER BY n.nspname, c.relname
"""


def qualified_name(schema: str | None, table: str) -> str:
    """``"schema"."table"`` quoted for ``to_regclass``; without a schema, the search_path."""
    if schema is None:
        return _quote_identifier(table)
    return f"{_quote_identifier(schema)}.{_quote_identifier(table)}"


def _quote_identifier(identifier: str) -> str:
    # PostgreSQL's quoting rule. Django's quote_name does not double embedded quotes, and
    # these names go into to_regclass() as data, where a wrong quote is a wrong answer.
    return '"' + identifier.replace('"', '""') + '"'


@contextlib.contextmanager
def _bounded_read(using: str) -> Iterator[Any]:
    """A cursor in a transaction (a savepoint inside the caller's) that is rolled back.

    The connect timeout and the local ``statement_timeout`` / ``lock_timeout`` are the
    ``CHECK_*`` settings of check_tenant_indexes: ``pg_relation_size()`` and EXPLAIN take a
    share lock on each relation, and a report must fail (exit 2), not queue behind an
    ``ALTER TABLE``. The first statement run on the cursor must apply the timeouts (see
    :data:`_CLEAR_AND_BOUND_SQL`); nothing set here outlives the block.
    """
    from django.db import transaction

    from .conf import get_config

    connection = connections[using]
    _connect_with_timeout(connection, int(get_config()["CHECK_CONNECT_TIMEOUT_S"]))
    with transaction.atomic(using=using), connection.cursor() as cursor:
        yield cursor
        transaction.set_rollback(True, using=using)


# Clears the statistics snapshot (with stats_fetch_consistency = cache a read inside a
# longer transaction would otherwise see the counters of its first statistics access) and
# bounds the statements that follow in the same transaction.
_CLEAR_AND_BOUND_SQL = """
SELECT pg_stat_clear_snapshot(),
       set_config('statement_timeout', %s, true),
       set_config('lock_timeout', %s, true)
"""


def _timeouts() -> list[str]:
    # The CHECK_* statement and lock timeouts as set_config() values, for every read here.
    from .conf import get_config

    config = get_config()
    return [
        f"{int(config['CHECK_STATEMENT_TIMEOUT_MS'])}ms",
        f"{int(config['CHECK_LOCK_TIMEOUT_MS'])}ms",
    ]


def server_stats(using: str) -> ServerStats:
    """How old one alias's statistics are, and what its server can tell (two statements)."""
    with _bounded_read(using) as cursor:
        return _server_stats(using, cursor)


def _server_stats(using: str, cursor: Any) -> ServerStats:
    cursor.execute(_CLEAR_AND_BOUND_SQL, _timeouts())
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
    are left out; a ``None`` schema resolves the table on the search_path. The statistics snapshot
    is cleared first so that a read inside a longer transaction sees current counters
    (``stats_fetch_consistency`` caches them otherwise).
    """
    names = [qualified_name(schema, table) for schema, table in tables]
    with _bounded_read(using) as cursor:
        server = _server_stats(using, cursor)
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
                expressions=row[5],
                predicate=row[6],
                method=row[7],
                unique=row[8],
                primary=row[9],
                constraint=row[10],
                valid=row[11],
                definition=row[12],
                size_bytes=row[13],
                idx_scan=row[14],
                idx_tup_read=row[15],
                idx_tup_fetch=row[16],
                last_idx_scan=row[17],
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
) -> tuple[TenantQueryPlan, ...]:  # (live schema, table, tenant column)
    """EXPLAIN (never ANALYZE) a tenant-scoped query on each table.

    For each ``(schema, table, tenant_column)``: take the tenant of one real row (one that is
    not among ``pg_stats.most_common_vals`` when there is one), then
    ``EXPLAIN (FORMAT JSON) SELECT * FROM table WHERE tenant_column = <that tenant>``.
    Nothing is executed but one single-row read per table, so this is safe in production.
    Tables that do not exist are left out. Costs two statements per table, plus two, under
    the same timeouts as :func:`usage_snapshot`.
    """
    conn = connections[using]
    plans = []
    with _bounded_read(using) as cursor:
        cursor.execute(_CLEAR_AND_BOUND_SQL, _timeouts())
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
            # A typical tenant, not one of the most common values the planner knows: for a
            # dominant tenant a sequential scan is the right plan, and asking about it would
            # flag a healthy table. Falls back to any row when every tenant is common.
            cursor.execute(
                f"SELECT tenant, type_name FROM ("
                f" (SELECT {tenant_sql}::text AS tenant, pg_typeof({tenant_sql})::text"
                f"  AS type_name, 0 AS preference FROM {relation}"
                f"  WHERE {tenant_sql}::text <> ALL (coalesce((SELECT most_common_vals::text"
                f"   ::text[] FROM pg_stats WHERE schemaname = %s AND tablename = %s"
                f"   AND attname = %s), '{{}}'::text[])) LIMIT 1)"
                f" UNION ALL"
                f" (SELECT {tenant_sql}::text, pg_typeof({tenant_sql})::text, 1 FROM {relation}"
                f"  LIMIT 1)) AS candidates ORDER BY preference LIMIT 1",
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
# Everything the concurrent build needs to decide and to explain itself: the index by name
# (with the _ccnew/_ccold leftovers of an interrupted REINDEX CONCURRENTLY), the session
# settings it changes and restores, the advisory lock that keeps builders apart, the build's
# progress and the sessions that block it.

#: Key space of the two-key advisory locks (``pg_advisory_lock(int4, int4)``) taken around
#: index builds; the second key is ``hashtext()`` of the schema-qualified index name.
BUILD_LOCK_NAMESPACE = "tenant_indexes.build"


@dataclass(frozen=True)
class CatalogIndex:
    """One index as ``pg_index`` describes it.

    Attributes:
        schema: schema of the index (always that of its table).
        name: index name.
        table: name of the table it is on.
        is_valid: ``indisvalid``; false after a failed or cancelled concurrent build.
        is_ready: ``indisready``; false while a concurrent build has not reached its
            second phase.
        is_unique: ``indisunique``.
        method: access method (``btree``, ``gin`` ...).
        key_columns: key column names in order; ``None`` for an expression.
        descending: per key column, whether it is ``DESC``.
        include_columns: the ``INCLUDE`` columns.
        has_expressions: whether any key is an expression.
        predicate: the partial-index ``WHERE`` clause, or ``None``.
        definition: ``pg_get_indexdef()``.
        building_pid: pid of a backend whose ``CREATE INDEX`` is building it right now.
    """

    schema: str
    name: str
    table: str
    is_valid: bool
    is_ready: bool
    is_unique: bool
    method: str
    key_columns: tuple[str | None, ...]
    descending: tuple[bool, ...]
    include_columns: tuple[str, ...]
    has_expressions: bool
    predicate: str | None
    definition: str
    building_pid: int | None
    expressions: str | None = None  # fix-defs: pg_get_expr(indexprs), None without any

    def as_live_index(self) -> LiveIndex:
        """The same index as a :class:`LiveIndex` (usage counters unknown), so that the
        build compares definitions with the check's code (fix-defs)."""
        keys = len(self.key_columns)
        return LiveIndex(
            schema=self.schema,
            table=self.table,
            name=self.name,
            columns=self.key_columns,
            descending=tuple(self.descending[:keys]),
            include=self.include_columns,
            expressions=self.expressions,
            predicate=self.predicate,
            unique=self.is_unique,
            primary=False,
            constraint=None,
            method=self.method,
            valid=self.is_valid,
            ready=self.is_ready,
            live=True,
            definition=self.definition,
            size_bytes=0,
            idx_scan=None,
            idx_tup_read=None,
            idx_tup_fetch=None,
            building=self.building_pid is not None,
        )


@dataclass(frozen=True)
class BuildProgress:
    """One sample of ``pg_stat_progress_create_index`` for a build, with its blocker."""

    phase: str
    blocks_total: int
    blocks_done: int
    tuples_total: int
    tuples_done: int
    lockers_total: int
    lockers_done: int
    blocker: BlockingSession | None

    @property
    def percent(self) -> float | None:
        """Percent done of the current phase, or ``None`` when the phase has no measure."""
        if self.phase.startswith("waiting") and self.lockers_total:
            return 100.0 * self.lockers_done / self.lockers_total
        if "scanning table" in self.phase and self.blocks_total:
            return 100.0 * self.blocks_done / self.blocks_total
        if self.tuples_total:
            return 100.0 * self.tuples_done / self.tuples_total
        if self.blocks_total:
            return 100.0 * self.blocks_done / self.blocks_total
        return None


@dataclass(frozen=True)
class BlockingSession:
    """A session that makes an index build wait."""

    pid: int
    state: str | None
    query: str | None
    xact_start: _dt.datetime | None

    def describe(self) -> str:
        """``pid 123 (idle in transaction since ...): <query>`` for error messages."""
        since = f" since {self.xact_start:%Y-%m-%d %H:%M:%S%z}" if self.xact_start else ""
        query = " ".join((self.query or "").split())
        if len(query) > 200:
            query = query[:197] + "..."
        return f"pid {self.pid} ({self.state or 'unknown state'}{since}): {query or '<no query>'}"


_INDEX_AND_LEFTOVERS_SQL = """
SELECT n.nspname, i.relname, t.relname, x.indisvalid, x.indisready, x.indisunique, am.amname,
       ARRAY(SELECT a.attname::text
               FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
              WHERE k.ord <= x.indnkeyatts ORDER BY k.ord),
       ARRAY(SELECT (o.opt & 1) = 1
               FROM unnest(x.indoption::int2[]) WITH ORDINALITY AS o(opt, ord)
              ORDER BY o.ord),
       ARRAY(SELECT a.attname::text
               FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
              WHERE k.ord > x.indnkeyatts ORDER BY k.ord),
       x.indexprs IS NOT NULL,
       pg_get_expr(x.indpred, x.indrelid),
       pg_get_indexdef(x.indexrelid),
       (SELECT p.pid FROM pg_stat_progress_create_index p
         WHERE p.index_relid = x.indexrelid LIMIT 1),
       pg_get_expr(x.indexprs, x.indrelid)
  FROM pg_class i
  JOIN pg_index x ON x.indexrelid = i.oid
  JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = i.relnamespace
  JOIN pg_am am ON am.oid = i.relam
 WHERE i.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass(%(table)s))
   AND (i.relname = %(name)s
        OR (x.indrelid = to_regclass(%(table)s)
            AND left(i.relname, length(%(name)s)) = %(name)s
            AND substr(i.relname, length(%(name)s) + 1) ~ '^_cc(new|old)[0-9]*$'))
 ORDER BY i.relname
"""


def index_and_leftovers(connection: Any, table: str, name: str) -> tuple[CatalogIndex, ...]:
    """The index ``name`` in the schema of ``table`` and its ``_ccnew``/``_ccold`` leftovers.

    One query. The index with exactly that name is reported whichever table it is on (a
    name is unique per schema, so an index of that name on another table blocks the build
    too); the leftovers only when they are on ``table``.

    Args:
        connection: a Django PostgreSQL connection.
        table: the table name as Django knows it (``Model._meta.db_table``).
        name: the index name.

    Returns:
        The matching indexes, ordered by name; empty when the table does not exist.
    """
    params = {"table": connection.ops.quote_name(table), "name": name}
    with connection.cursor() as cursor:
        cursor.execute(_INDEX_AND_LEFTOVERS_SQL, params)
        rows = cursor.fetchall()
    return tuple(
        CatalogIndex(
            schema=row[0],
            name=row[1],
            table=row[2],
            is_valid=row[3],
            is_ready=row[4],
            is_unique=row[5],
            method=row[6],
            key_columns=tuple(row[7]),
            descending=tuple(row[8]),
            include_columns=tuple(row[9]),
            has_expressions=row[10],
            predicate=row[11],
            definition=row[12],
            building_pid=row[13],
            expressions=row[14],
        )
        for row in rows
    )


def table_schema(connection: Any, table: str) -> str | None:
    """The schema ``table`` resolves to on this connection's search_path, or ``None``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = to_regclass(%s)",
            [connection.ops.quote_name(table)],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def session_settings(connection: Any, names: tuple[str, ...]) -> dict[str, str | None]:
    """The current values of run-time settings; ``None`` for one the server doesn't know."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.name, current_setting(s.name, true) FROM unnest(%s::text[]) AS s(name)",
            [list(names)],
        )
        return dict(cursor.fetchall())


def set_session_settings(connection: Any, values: dict[str, str]) -> None:
    """``SET`` each setting for the session (``set_config(name, value, false)``)."""
    if not values:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config(s.name, s.value, false) "
            "FROM unnest(%s::text[], %s::text[]) AS s(name, value)",
            [list(values), list(values.values())],
        )


def acquire_build_lock(connection: Any, qualified_index: str) -> None:
    """Wait for the session advisory lock of one index build (bounded by lock_timeout)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_lock(hashtext(%s), hashtext(%s))",
            [BUILD_LOCK_NAMESPACE, qualified_index],
        )


def release_build_lock(connection: Any, qualified_index: str) -> None:
    """Release the advisory lock taken by :func:`acquire_build_lock`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))",
            [BUILD_LOCK_NAMESPACE, qualified_index],
        )


def build_lock_holder(connection: Any, qualified_index: str) -> BlockingSession | None:
    """The other session that holds the build lock of ``qualified_index``, if any."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.pid, a.state, a.query, a.xact_start
              FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.classid = hashtext(%s)::oid AND l.objid = hashtext(%s)::oid
               AND l.pid <> pg_backend_pid()
             LIMIT 1
            """,
            [BUILD_LOCK_NAMESPACE, qualified_index],
        )
        row = cursor.fetchone()
    return BlockingSession(*row) if row else None


def backend_pid(connection: Any) -> int:
    """``pg_backend_pid()`` of the connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def server_clock(connection: Any) -> _dt.datetime:
    """``clock_timestamp()``: the server's time now, to compare with ``xact_start``."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def build_progress(connection: Any, build_pid: int) -> BuildProgress | None:
    """Sample ``pg_stat_progress_create_index`` for the build running in ``build_pid``.

    The blocker is the locker the build waits for (``current_locker_pid``), else the first of
    ``pg_blocking_pids()``, with its query from ``pg_stat_activity``.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT p.phase, p.blocks_total, p.blocks_done, p.tuples_total, p.tuples_done,
                   p.lockers_total, p.lockers_done, b.pid, b.state, b.query, b.xact_start
              FROM pg_stat_progress_create_index p
              LEFT JOIN pg_stat_activity b
                ON b.pid = COALESCE(NULLIF(p.current_locker_pid, 0),
                                    (pg_blocking_pids(p.pid))[1])
             WHERE p.pid = %s
            """,
            [build_pid],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    blocker = BlockingSession(*row[7:]) if row[7] is not None else None
    blocks_total, blocks_done, tuples_total, tuples_done, lockers_total, lockers_done = (
        int(v or 0) for v in row[1:7]
    )
    return BuildProgress(
        phase=row[0],
        blocks_total=blocks_total,
        blocks_done=blocks_done,
        tuples_total=tuples_total,
        tuples_done=tuples_done,
        lockers_total=lockers_total,
        lockers_done=lockers_done,
        blocker=blocker,
    )


def likely_build_blockers(
    connection: Any, table: str, started_before: _dt.datetime
) -> tuple[BlockingSession, ...]:
    """Sessions that can make a concurrent build on ``table`` wait, oldest first.

    Used after a lock wait timed out, when ``pg_blocking_pids()`` of the build no longer says
    anything: the other sessions of this database whose transaction began before the build
    and that either hold a lock on the table (a build waits for writers, a drop for any
    locker) or hold a snapshot (a build waits for old snapshots before it is marked valid).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.pid, a.state, a.query, a.xact_start
              FROM pg_stat_activity a
             WHERE a.datname = current_database()
               AND a.pid <> pg_backend_pid()
               AND a.backend_type = 'client backend'
               AND a.xact_start <= %s
               AND (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL
                    OR EXISTS (SELECT 1 FROM pg_locks l
                                WHERE l.pid = a.pid AND l.relation = to_regclass(%s)))
             ORDER BY (EXISTS (SELECT 1 FROM pg_locks l
                                WHERE l.pid = a.pid AND l.relation = to_regclass(%s))) DESC,
                      a.xact_start
            """,
            [started_before, connection.ops.quote_name(table), connection.ops.quote_name(table)],
        )
        return tuple(BlockingSession(*row) for row in cursor.fetchall())


# --- Normalised predicates and expressions (definition drift, branch fix-defs) -------------
# PostgreSQL rewrites a partial-index predicate and index expressions when it stores them
# (casts, parentheses, IN lists as = ANY), so Django's text and pg_get_expr()'s text of the
# same predicate differ. The server normalises both with its own parser and deparser: EXPLAIN
# (VERBOSE, never ANALYZE: nothing is executed) of ``SELECT <expressions> FROM <table> WHERE
# <predicate>`` once for the declared text and once for the live text, with index scans off
# so the predicate stays a Filter. Equal deparsed Filter and Output means equal definitions.
# Cost: nothing for indexes without a predicate or expressions; otherwise one statement for
# the settings plus, per such index, a savepoint, two EXPLAINs and its release (EXPLAINs of
# different texts cannot share a statement without mixing their deparsed output, and the
# savepoint keeps one unparsable text from aborting the whole pass).

# Local to the transaction: index-only plans would hide the predicate inside the index.
_NORMALISE_SETTINGS_SQL = """
SELECT set_config('statement_timeout', %s, true),
       set_config('lock_timeout', %s, true),
       set_config('enable_indexscan', 'off', true),
       set_config('enable_indexonlyscan', 'off', true),
       set_config('enable_bitmapscan', 'off', true),
       set_config('max_parallel_workers_per_gather', '0', true)
"""


@dataclass(frozen=True)
class DefinitionRequest:
    """A declared and a live index of the same name whose predicate or expressions need the
    server to compare them.

    Attributes:
        schema: schema of the live index and its table.
        table: the table.
        name: the index name.
        declared_predicate: the declared ``WHERE`` clause as SQL (``None``: not compared).
        live_predicate: ``pg_get_expr(indpred)`` (``None``: not compared).
        declared_expressions: the declared key expressions as SQL, plain columns left out.
        live_expressions: ``pg_get_expr(indexprs)`` (``None``: not compared).
    """

    schema: str
    table: str
    name: str
    declared_predicate: str | None
    live_predicate: str | None
    declared_expressions: tuple[str, ...]
    live_expressions: str | None


@dataclass(frozen=True)
class NormalisedDefinition:
    """Both sides of a :class:`DefinitionRequest` as the server's deparser writes them.

    ``error`` is set (and the texts are ``None``) when the server could not normalise one
    side; the definitions are then not known to be equal.
    """

    schema: str
    name: str
    declared_predicate: str | None = None
    live_predicate: str | None = None
    declared_expressions: tuple[str, ...] | None = None
    live_expressions: tuple[str, ...] | None = None
    error: str | None = None


@dataclass(frozen=True)
class DeclaredDefinition:
    """What a declared index says about its predicate and expressions, for a snapshot.

    Attributes:
        schema: the schema asked for (``None``: the search_path), as in the snapshot's tables.
        table: the table.
        name: the index name.
        predicate: the ``WHERE`` clause as SQL, ``None`` without one.
        expressions: the key expressions as SQL, plain columns left out.
    """

    schema: str | None
    table: str
    name: str
    predicate: str | None
    expressions: tuple[str, ...] = ()


def _definition_requests(
    definitions: Iterable[DeclaredDefinition],
    live_tables: Sequence[LiveTable],
    live_indexes: Sequence[LiveIndex],
) -> list[DefinitionRequest]:
    tables = {(t.requested_schema, t.name): t for t in live_tables}
    indexes = {(ix.schema, ix.name): ix for ix in live_indexes}
    requests = []
    for declared in definitions:
        table = tables.get((declared.schema, declared.table))
        live = indexes.get((table.schema, declared.name)) if table else None
        # An INVALID or building index is reported as such; its definition is not compared.
        if live is None or not live.valid or live.building:
            continue
        request = definition_request(
            live.schema,
            live.table,
            live.name,
            declared_predicate=declared.predicate,
            live_predicate=live.predicate,
            declared_expressions=declared.expressions,
            live_expressions=live.expressions,
        )
        if request is not None:
            requests.append(request)
    return list(dict.fromkeys(requests))


def definition_request(
    schema: str,
    table: str,
    name: str,
    *,
    declared_predicate: str | None,
    live_predicate: str | None,
    declared_expressions: Sequence[str],
    live_expressions: str | None,
) -> DefinitionRequest | None:
    """The request to normalise one index pair, ``None`` when there is nothing to compare.

    A predicate (expressions) is compared only when both sides have one: when just one side
    has it the difference is plain without asking the server.
    """
    with_predicate = declared_predicate is not None and live_predicate is not None
    with_expressions = bool(declared_expressions) and live_expressions is not None
    if not (with_predicate or with_expressions):
        return None
    return DefinitionRequest(
        schema=schema,
        table=table,
        name=name,
        declared_predicate=declared_predicate if with_predicate else None,
        live_predicate=live_predicate if with_predicate else None,
        declared_expressions=tuple(declared_expressions) if with_expressions else (),
        live_expressions=live_expressions if with_expressions else None,
    )


def normalise_definitions(
    connection: Any, requests: Sequence[DefinitionRequest]
) -> tuple[NormalisedDefinition, ...]:
    """Let the server deparse both sides of each request (see the section comment).

    Runs in a transaction (a savepoint inside the caller's) that is read only when it is
    the outermost one and is rolled back at the end, so the local settings vanish with it;
    the ``CHECK_*`` timeouts bound every statement.

    Args:
        connection: a Django PostgreSQL connection.
        requests: the pairs to normalise (see :func:`definition_request`).

    Returns:
        One result per request, in order; a request whose text the server rejects gets a
        result with ``error`` set, the others are unaffected.
    """
    if not requests:
        return ()
    from django.db import DatabaseError, transaction

    results = []
    outermost = not connection.in_atomic_block
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if outermost:
            cursor.execute("SET TRANSACTION READ ONLY")
        cursor.execute(_NORMALISE_SETTINGS_SQL, _timeouts())
        for request in requests:
            relation = qualified_name(request.schema, request.table)
            try:
                with transaction.atomic(using=connection.alias):
                    declared = _deparse(
                        cursor,
                        relation,
                        request.declared_predicate,
                        ", ".join(request.declared_expressions) or None,
                    )
                    live = _deparse(
                        cursor, relation, request.live_predicate, request.live_expressions
                    )
            except DatabaseError as e:
                results.append(
                    NormalisedDefinition(
                        schema=request.schema, name=request.name, error=first_error_line(e)
                    )
                )
                continue
            results.append(
                NormalisedDefinition(
                    schema=request.schema,
                    name=request.name,
                    declared_predicate=declared[0] if request.declared_predicate else None,
                    live_predicate=live[0] if request.live_predicate else None,
                    declared_expressions=declared[1] if request.declared_expressions else None,
                    live_expressions=live[1] if request.live_expressions else None,
                )
            )
        transaction.set_rollback(True, using=connection.alias)
    return tuple(results)


def _deparse(
    cursor: Any, relation: str, predicate: str | None, expressions: str | None
) -> tuple[str, tuple[str, ...]]:
    """``(filters, outputs)`` of ``SELECT <expressions> FROM relation WHERE <predicate>``.

    The texts are SQL that Django compiled from the model or that pg_get_expr() returned;
    they are planned, never executed. No parameters are passed, so a ``%`` in them is data.
    """
    cursor.execute(
        f"EXPLAIN (VERBOSE, FORMAT JSON) SELECT {expressions or 'NULL'} "
        f"FROM {relation} WHERE {predicate or 'true'}"
    )
    document = cursor.fetchone()[0]
    if isinstance(document, str):
        document = json.loads(document)
    root = document[0]["Plan"]
    # A predicate the planner folds to a constant becomes a One-Time Filter of a Result.
    filters = [
        node[key]
        for node in _plan_nodes(root)
        for key in ("One-Time Filter", "Filter")
        if key in node
    ]
    return " AND ".join(filters), tuple(root.get("Output", ()))


# --- end Normalised predicates and expressions ---------------------------------------------
