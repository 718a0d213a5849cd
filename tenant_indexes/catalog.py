"""Every SQL statement that reads PostgreSQL's catalogs and statistics views.

Nothing outside this module queries ``pg_catalog`` or ``pg_stat_*``. Values go through
parameters and identifiers through ``quote_name`` / ``to_regclass``; one snapshot per
database alias costs a constant number of queries, never one per table or index.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
    """

    alias: str
    vendor: str
    server_version: str
    server_version_num: int
    tables: tuple[LiveTable, ...]
    indexes: tuple[LiveIndex, ...]
    building: frozenset[str] = frozenset()

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
           current_setting('server_version_num')::int
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

# indkey/indoption are int2vectors: unnest WITH ORDINALITY keeps their order whatever their
# lower bound. attnum 0 marks an expression, so the LEFT JOIN yields NULL there. The
# progress view only shows other roles' builds to members of pg_read_all_stats.
_SNAPSHOT_INDEXES_SQL = f"""
    WITH tables AS (SELECT DISTINCT oid FROM ({_REQUESTED_TABLES_SQL}) AS requested),
    building AS (
        SELECT index_relid FROM pg_stat_progress_create_index
         WHERE index_relid IS NOT NULL AND index_relid <> 0
    )
    SELECT n.nspname, t.relname, i.relname,
           array(SELECT a.attname::text
                   FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                   LEFT JOIN pg_attribute a
                          ON a.attrelid = ix.indrelid AND a.attnum = k.attnum AND k.attnum <> 0
                  WHERE k.n <= ix.indnkeyatts
                  ORDER BY k.n),
           array(SELECT (o.opt & 1) = 1
                   FROM unnest(ix.indoption::int2[]) WITH ORDINALITY AS o(opt, n)
                  ORDER BY o.n),
           array(SELECT a.attname::text
                   FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                   JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum
                  WHERE k.n > ix.indnkeyatts
                  ORDER BY k.n),
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


def catalog_snapshot(using: str, tables: Iterable[tuple[str | None, str]]) -> CatalogSnapshot:
    """Read the tables and indexes of one database alias in one read-only pass.

    The pass costs a constant number of statements (four outside a transaction, three
    inside one) whatever the number of tables. It runs in a transaction (a savepoint when
    the caller already holds one) that is rolled back at the end, so the local
    ``statement_timeout`` and ``lock_timeout`` and the read-only mode vanish with it and the
    connection is left as it was found.

    Args:
        using: the database alias.
        tables: ``(schema or None, table)`` pairs; ``None`` resolves the table on the
            connection's search_path. Tables that do not exist are simply absent from the
            snapshot.

    Returns:
        The snapshot.

    Raises:
        UnsupportedDatabase: the alias is not PostgreSQL.
        CatalogUnavailable: the server is unreachable, refused the credentials, or a
            statement failed or timed out.
    """
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
            cursor.execute(
                _SNAPSHOT_SETTINGS_SQL,
                [
                    f"{int(config['CHECK_STATEMENT_TIMEOUT_MS'])}ms",
                    f"{int(config['CHECK_LOCK_TIMEOUT_MS'])}ms",
                ],
            )
            _, _, server_version, server_version_num = cursor.fetchone()
            cursor.execute(_SNAPSHOT_TABLES_SQL, [schemas, names])
            live_tables = tuple(LiveTable(*row) for row in cursor.fetchall())
            cursor.execute(_SNAPSHOT_INDEXES_SQL, [schemas, names])
            live_indexes = tuple(_live_index(row) for row in cursor.fetchall())
            # Roll back rather than commit: nothing this pass set (read-only mode, local
            # timeouts) outlives it, also when it ran in a savepoint of the caller's.
            transaction.set_rollback(True, using=using)
    except DatabaseError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CatalogUnavailable(f"database {using!r}: {first_line}") from e
    return CatalogSnapshot(
        alias=using,
        vendor=connection.vendor,
        server_version=str(server_version).split()[0],
        server_version_num=int(server_version_num),
        tables=live_tables,
        indexes=live_indexes,
        building=frozenset(f"{ix.schema}.{ix.name}" for ix in live_indexes if ix.building),
    )


def _live_index(row: tuple[Any, ...]) -> LiveIndex:
    (schema, table, name, columns, descending, include, expressions, predicate, unique,
     primary, constraint, method, valid, ready, live, definition, size_bytes, idx_scan,
     idx_tup_read, idx_tup_fetch, building) = row  # fmt: skip
    return LiveIndex(
        schema=schema,
        table=table,
        name=name,
        columns=tuple(columns),
        descending=tuple(descending[: len(columns)]),
        include=tuple(include),
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
    settings_dict["OPTIONS"] = {**options, "connect_timeout": seconds}
    try:
        connection.ensure_connection()
    finally:
        settings_dict["OPTIONS"] = options


# --- end Snapshot ---------------------------------------------------------------------------

# --- Usage statistics beyond the snapshot (tenant_index_stats) ---------------------------

# --- Index builds (operations.py, repair_tenant_indexes) --------------------------------
