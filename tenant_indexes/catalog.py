"""The catalog snapshot: the tables and indexes of one database alias, read in one pass.

:class:`CatalogIndex` is the one row type of an index read from ``pg_index``: the check, the
usage statistics (:mod:`tenant_indexes.statistics`) and the build
(:mod:`tenant_indexes.buildcontrol`) all read it through :func:`index_rows_sql` and
:func:`index_from_row`. The helpers at the end bound every read (connect timeout, local
``statement_timeout`` / ``lock_timeout``, a transaction that is rolled back).

Values go through parameters and identifiers through :mod:`tenant_indexes.sql` or the
server's own ``quote_ident``; one snapshot costs a constant number of statements, never one
per table or index.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections

from .partitionleaves import LEAVES_COLUMN_SQL, PartitionLeaf, parse_leaves
from .reads import check_timeouts, connect_with_timeout, first_error_line

if TYPE_CHECKING:
    from .normalise import DeclaredDefinition, NormalisedDefinition


@dataclass(frozen=True)
class CatalogIndex:
    """One index as PostgreSQL has it.

    Attributes:
        schema: schema of the index (always that of its table).
        table: the table it indexes.
        name: the index name.
        columns: key columns in order; ``None`` for an expression.
        descending: one flag per key column, ``True`` for ``DESC``.
        include: ``INCLUDE`` columns.
        keys: one text per key: the column or expression as the server writes it
            (``pg_get_indexdef(oid, k, true)``) with its collation, operator class, options
            and order, so two keys are interchangeable exactly when their texts are equal.
        expressions: the expressions as SQL (``pg_get_expr``), ``None`` without any.
        predicate: the partial-index predicate as SQL, ``None`` without one.
        unique: ``indisunique``.
        primary: ``indisprimary``.
        constraint: the constraint the index backs (primary key, unique, exclusion).
        method: the access method (``btree``, ``gin``, ...).
        valid: ``indisvalid``: the planner may use it (false after a failed or cancelled
            concurrent build).
        ready: ``indisready``: inserts maintain it.
        live: ``indislive``: not being dropped.
        definition: ``pg_get_indexdef()``.
        size_bytes: ``relpages * block_size``: exact as of the build or the last VACUUM or
            ANALYZE. Read from ``pg_class`` because ``pg_relation_size()`` takes a lock per
            relation and a readiness probe must never queue behind an ALTER TABLE.
        idx_scan: scans since statistics were reset.
        idx_tup_read: index entries returned by scans.
        idx_tup_fetch: live rows fetched by simple index scans.
        building_pid: pid of a backend whose ``CREATE INDEX`` is building it right now.
        exact_size_bytes: ``pg_relation_size()``, read by the usage statistics only.
        last_idx_scan: the time of the last scan, read by the usage statistics only and only
            from PostgreSQL 16 on; ``None`` when never scanned or unknown.
        partitions_total: for the index of a partitioned table, the leaf partitions under
            the table (``pg_partition_tree``); ``None`` for an ordinary index.
        partitions_attached: of those, how many have a valid index attached under this one.
    """

    schema: str
    table: str
    name: str
    columns: tuple[str | None, ...]
    descending: tuple[bool, ...]
    include: tuple[str, ...]
    keys: tuple[str, ...]
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
    idx_scan: int | None = None
    idx_tup_read: int | None = None
    idx_tup_fetch: int | None = None
    building_pid: int | None = None
    exact_size_bytes: int | None = None
    last_idx_scan: datetime | None = None
    partitions_total: int | None = None
    partitions_attached: int | None = None

    @property
    def partitioned(self) -> bool:
        """An index of a partitioned table (``relkind 'I'``): it holds no rows itself."""
        return self.partitions_total is not None

    @property
    def building(self) -> bool:
        """A ``CREATE INDEX [CONCURRENTLY]`` of this index is in progress."""
        return self.building_pid is not None

    @property
    def known_size_bytes(self) -> int:
        """The exact size where it was read, else the lock-free estimate."""
        return self.size_bytes if self.exact_size_bytes is None else self.exact_size_bytes

    @property
    def usable(self) -> bool:
        """Valid and not being built: queries may rely on it."""
        return self.valid and not self.building


@dataclass(frozen=True)
class CatalogTable:
    """One table the snapshot was asked about, as found on the server.

    Attributes:
        schema: the schema it was found in.
        name: the table name.
        requested_schema: the schema asked for (``None``: resolved on the search_path).
        estimated_rows: ``pg_class.reltuples`` (``-1`` or ``0`` before the first ANALYZE).
        size_bytes: ``relpages * block_size`` (lock-free estimate, see :class:`CatalogIndex`).
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
    #: For a partitioned table, its leaf partitions (``None`` for any other table).
    partition_leaves: tuple[PartitionLeaf, ...] | None = None


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
        normalised: predicates and expressions of declared and live indexes as the server
            normalised them (:mod:`tenant_indexes.normalise`).
    """

    alias: str
    vendor: str
    server_version: str
    server_version_num: int
    tables: tuple[CatalogTable, ...]
    indexes: tuple[CatalogIndex, ...]
    building: frozenset[str] = frozenset()
    current_schema: str | None = None
    normalised: tuple[NormalisedDefinition, ...] = ()
    missing_schemas: tuple[str, ...] = ()

    # Lookups are dictionaries built once per snapshot: at thousands of tables a linear scan
    # per declared index would make the comparison quadratic.
    @functools.cached_property
    def _tables_by_request(self) -> dict[tuple[str | None, str], CatalogTable]:
        return {(t.requested_schema, t.name): t for t in self.tables}

    @functools.cached_property
    def _indexes_by_name(self) -> dict[tuple[str, str], CatalogIndex]:
        return {(ix.schema, ix.name): ix for ix in self.indexes}

    @functools.cached_property
    def _indexes_by_table(self) -> dict[tuple[str, str], tuple[CatalogIndex, ...]]:
        grouped: dict[tuple[str, str], list[CatalogIndex]] = {}
        for ix in self.indexes:
            grouped.setdefault((ix.schema, ix.table), []).append(ix)
        return {key: tuple(value) for key, value in grouped.items()}

    @functools.cached_property
    def _normalised_by_name(self) -> dict[tuple[str, str], NormalisedDefinition]:
        return {(n.schema, n.name): n for n in self.normalised}

    def table(self, schema: str | None, name: str) -> CatalogTable | None:
        """The live table for a requested ``(schema or None, name)``, ``None`` if missing."""
        return self._tables_by_request.get((schema, name))

    def indexes_of(self, table: CatalogTable) -> tuple[CatalogIndex, ...]:
        """Every index of one live table."""
        return self._indexes_by_table.get((table.schema, table.name), ())

    def index(self, schema: str, name: str) -> CatalogIndex | None:
        """The index called ``name`` in ``schema`` (index names are unique per schema)."""
        return self._indexes_by_name.get((schema, name))

    def normalised_definition(self, schema: str, name: str) -> NormalisedDefinition | None:
        """The server-normalised predicate/expressions of index ``name``, if it has any."""
        return self._normalised_by_name.get((schema, name))


# The requested tables, resolved the way the server would resolve the name: through the
# search_path when no schema is given. Identifiers are quoted by quote_ident, never by us.
# Parameters: the schemas (NULL for the search_path) and the names, as two text arrays.
REQUESTED_TABLES_SQL = """
    SELECT DISTINCT ON (c.oid, r.schema) c.oid, r.schema
      FROM unnest(%s::text[], %s::text[]) AS r(schema, name)
      JOIN pg_class c
        ON c.oid = to_regclass(
               CASE WHEN r.schema IS NULL THEN quote_ident(r.name)
                    ELSE quote_ident(r.schema) || '.' || quote_ident(r.name) END)
     WHERE c.relkind IN ('r', 'p')
"""

# indkey is an int2vector: unnest WITH ORDINALITY keeps its order whatever its lower bound.
# attnum 0 marks an expression, so the LEFT JOIN yields NULL there; the list is split into
# key and INCLUDE columns by indnkeyatts in Python: one sub-select per index, not two.
# indoption bit 0 is DESC, bit 1 NULLS FIRST; indclass, indcollation and indoption are
# zero-based vectors. The progress view only shows other roles' builds to members of
# pg_read_all_stats. The counters are the functions behind pg_stat_all_indexes, called
# directly: joining the view re-joins pg_class, pg_index and pg_namespace for every index.
_INDEX_ROWS_SQL = """
    WITH building AS (
        SELECT DISTINCT ON (index_relid) index_relid, pid
          FROM pg_stat_progress_create_index
         WHERE index_relid IS NOT NULL AND index_relid <> 0
         ORDER BY index_relid, pid
    ){extra_ctes}
    SELECT n.nspname, t.relname, i.relname,
           array(SELECT a.attname::text
                   FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                   LEFT JOIN pg_attribute a
                          ON a.attrelid = ix.indrelid AND a.attnum = k.attnum AND k.attnum <> 0
                  ORDER BY k.n),
           ix.indnkeyatts,
           ix.indoption::int2[],
           array(SELECT pg_get_indexdef(ix.indexrelid, k.n, true)
                        || coalesce(' COLLATE '
                                    || nullif(ix.indcollation[k.n - 1], 0)::regcollation::text,
                                    '')
                        || ' ' || opc.opcnamespace::regnamespace::text || '.'
                        || quote_ident(opc.opcname)
                        || coalesce('(' || array_to_string(a.attoptions, ', ') || ')', '')
                        || CASE WHEN ix.indoption[k.n - 1] & 1 = 1 THEN ' DESC' ELSE '' END
                        || CASE WHEN ix.indoption[k.n - 1] & 2 = 2 THEN ' NULLS FIRST'
                                ELSE ' NULLS LAST' END
                   FROM generate_series(1, ix.indnkeyatts::int) AS k(n)
                   JOIN pg_opclass opc ON opc.oid = ix.indclass[k.n - 1]
                   LEFT JOIN pg_attribute a ON a.attrelid = ix.indexrelid AND a.attnum = k.n
                  ORDER BY k.n),
           pg_get_expr(ix.indexprs, ix.indrelid),
           pg_get_expr(ix.indpred, ix.indrelid),
           ix.indisunique, ix.indisprimary, con.conname::text, am.amname::text,
           ix.indisvalid, ix.indisready, ix.indislive,
           pg_get_indexdef(ix.indexrelid),
           CASE WHEN i.relkind = 'I' THEN (SELECT sum(c.relpages)::bigint
                                              FROM pg_partition_tree(ix.indexrelid) p
                                              JOIN pg_class c ON c.oid = p.relid)
                ELSE i.relpages::bigint END * current_setting('block_size')::bigint,
           CASE WHEN i.relkind = 'I' THEN (SELECT sum(pg_stat_get_numscans(p.relid))::bigint
                                              FROM pg_partition_tree(ix.indexrelid) p)
                ELSE pg_stat_get_numscans(ix.indexrelid) END,
           CASE WHEN i.relkind = 'I'
                THEN (SELECT sum(pg_stat_get_tuples_returned(p.relid))::bigint
                        FROM pg_partition_tree(ix.indexrelid) p)
                ELSE pg_stat_get_tuples_returned(ix.indexrelid) END,
           CASE WHEN i.relkind = 'I'
                THEN (SELECT sum(pg_stat_get_tuples_fetched(p.relid))::bigint
                        FROM pg_partition_tree(ix.indexrelid) p)
                ELSE pg_stat_get_tuples_fetched(ix.indexrelid) END,
           building.pid{extra_columns}
      FROM pg_index ix
      JOIN pg_class i ON i.oid = ix.indexrelid
      JOIN pg_class t ON t.oid = ix.indrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
      JOIN pg_am am ON am.oid = i.relam
      LEFT JOIN pg_constraint con
             ON con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid
            AND con.contype IN ('p', 'u', 'x')
      LEFT JOIN building ON building.index_relid = ix.indexrelid
     WHERE {where}
     ORDER BY n.nspname, t.relname, i.relname
"""

#: The ``WHERE`` of :func:`index_rows_sql` for "every index of the requested tables"
#: (parameters: the two arrays of :data:`REQUESTED_TABLES_SQL`).
INDEXES_OF_REQUESTED_TABLES = "ix.indrelid IN (SELECT oid FROM requested)"
_REQUESTED_CTE = f",\n    requested AS ({REQUESTED_TABLES_SQL})"


def index_rows_sql(
    where: str, *, extra_columns: Sequence[str] = (), requested: bool = False
) -> str:
    """The one statement that reads indexes; :func:`index_from_row` reads its rows.

    Args:
        where: the condition on ``ix`` (``pg_index``), ``i`` (the index's ``pg_class``) and
            ``t`` (the table's), e.g. :data:`INDEXES_OF_REQUESTED_TABLES`.
        extra_columns: SQL expressions selected after the common columns, in order; their
            values go into the fields named by ``index_from_row(row, extra_fields)``.
        requested: add the ``requested`` CTE of :data:`REQUESTED_TABLES_SQL` (its two
            parameters come first).
    """
    return _INDEX_ROWS_SQL.format(
        extra_ctes=_REQUESTED_CTE if requested else "",
        extra_columns="".join(f",\n           {column}" for column in extra_columns),
        where=where,
    )


_INDOPTION_DESC = 1  # pg_index.indoption bit: the key column sorts descending
_COMMON_COLUMNS = 22  # the columns every index_rows_sql() row starts with


def index_from_row(row: Sequence[Any], extra_fields: Sequence[str] = ()) -> CatalogIndex:
    """One row of :func:`index_rows_sql` as a :class:`CatalogIndex`.

    Args:
        row: the row.
        extra_fields: the fields (``exact_size_bytes``, ``last_idx_scan``) that the
            statement's ``extra_columns`` fill, in the same order.
    """
    (schema, table, name, all_columns, key_count, options, keys, expressions, predicate,
     unique, primary, constraint, method, valid, ready, live, definition, size_bytes,
     idx_scan, idx_tup_read, idx_tup_fetch, building_pid) = row[:_COMMON_COLUMNS]  # fmt: skip
    extras = dict(zip(extra_fields, row[_COMMON_COLUMNS:], strict=True))
    return CatalogIndex(
        schema=schema,
        table=table,
        name=name,
        columns=tuple(all_columns[:key_count]),
        descending=tuple(bool(option & _INDOPTION_DESC) for option in options[:key_count]),
        include=tuple(all_columns[key_count:]),
        keys=tuple(keys),
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
        building_pid=building_pid,
        **extras,
    )


_SNAPSHOT_SETTINGS_SQL = """
    SELECT set_config('statement_timeout', %s, true),
           set_config('lock_timeout', %s, true),
           current_setting('server_version'),
           current_setting('server_version_num')::int,
           current_schema(),
           array(SELECT s FROM unnest(%s::text[]) AS s
                  WHERE to_regnamespace(quote_ident(s)) IS NULL ORDER BY s)
"""

_SNAPSHOT_TABLES_SQL = f"""
    WITH requested AS ({REQUESTED_TABLES_SQL})
    SELECT n.nspname, c.relname, r.schema, c.reltuples::float8,
           c.relpages::bigint * current_setting('block_size')::bigint,
           s.seq_scan, s.idx_scan, s.n_live_tup, {LEAVES_COLUMN_SQL}
      FROM requested r
      JOIN pg_class c ON c.oid = r.oid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
"""

# For the index of a partitioned table only: its leaf partitions and how many of them have
# a valid index attached under it (the server marks it valid when all of them do).
PARTITION_COUNT_COLUMNS = (
    "CASE WHEN i.relkind = 'I' THEN (SELECT count(*) FROM pg_partition_tree(ix.indrelid) p "
    "WHERE p.isleaf AND p.level > 0) END",
    "CASE WHEN i.relkind = 'I' THEN (SELECT count(*) FROM pg_partition_tree(ix.indexrelid) p "
    "JOIN pg_index cx ON cx.indexrelid = p.relid WHERE p.isleaf AND p.level > 0 "
    "AND cx.indisvalid) END",
)
PARTITION_COUNT_FIELDS = ("partitions_total", "partitions_attached")
_SNAPSHOT_INDEXES_SQL = index_rows_sql(
    INDEXES_OF_REQUESTED_TABLES, extra_columns=PARTITION_COUNT_COLUMNS, requested=True
)


def requested_arrays(tables: Iterable[tuple[str | None, str]]) -> list[list[Any]]:
    """The two parameters of :data:`REQUESTED_TABLES_SQL`, each requested table once."""
    requested = list(dict.fromkeys(tables))
    return [[schema for schema, _ in requested], [name for _, name in requested]]


def catalog_snapshot(
    using: str,
    tables: Iterable[tuple[str | None, str]],
    definitions: Iterable[DeclaredDefinition] = (),
) -> CatalogSnapshot:
    """Read the tables and indexes of one database alias in one read-only pass.

    The pass costs a constant number of statements (four outside a transaction, three
    inside one) whatever the number of tables, plus, only when ``definitions`` name
    existing indexes with a predicate or expressions, the few of
    :func:`tenant_indexes.normalise.normalise_definitions`. It runs in a transaction (a
    savepoint when the caller already holds one) that is rolled back at the end, so the local
    ``statement_timeout`` and ``lock_timeout`` and the read-only mode vanish with it and the
    connection is left as it was found.

    Args:
        using: the database alias.
        tables: ``(schema or None, table)`` pairs; ``None`` resolves the table on the
            connection's search_path. Tables that do not exist are simply absent from the
            snapshot.
        definitions: declared predicates and expressions to compare with the live indexes
            of the same name; only pairs where both sides have one cost statements.

    Returns:
        The snapshot.

    Raises:
        UnsupportedDatabase: the alias is not PostgreSQL.
        CatalogUnavailable: the server is unreachable, refused the credentials, or a
            statement failed or timed out.
    """
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError, transaction

    from .conf import get_config
    from .exceptions import CatalogUnavailable, UnsupportedDatabase
    from .normalise import definition_requests, normalise_definitions

    connection = connections[using]
    if connection.vendor != "postgresql":
        raise UnsupportedDatabase(
            f"database {using!r} is {connection.vendor}: a live index check needs PostgreSQL"
        )
    config = get_config()
    arrays = requested_arrays(tables)
    try:
        connect_with_timeout(connection, int(config["CHECK_CONNECT_TIMEOUT_S"]))
        outermost = not connection.in_atomic_block
        with transaction.atomic(using=using), connection.cursor() as cursor:
            if outermost:
                # Only possible as the first statement of a transaction; inside a caller's
                # transaction we issue nothing but SELECTs anyway.
                cursor.execute("SET TRANSACTION READ ONLY")
            schemas = sorted({schema for schema in arrays[0] if schema is not None})
            cursor.execute(_SNAPSHOT_SETTINGS_SQL, [*check_timeouts(), schemas])
            _, _, server_version, server_version_num, current_schema, missing_schemas = (
                cursor.fetchone()
            )
            cursor.execute(_SNAPSHOT_TABLES_SQL, arrays)
            live_tables = tuple(
                # The last column is the leaves' (LEAVES_COLUMN_SQL).
                CatalogTable(*row[:-1], partition_leaves=parse_leaves(row[-1]))  # type: ignore[misc]
                for row in cursor.fetchall()
            )
            cursor.execute(_SNAPSHOT_INDEXES_SQL, arrays)
            live_indexes = tuple(
                index_from_row(row, PARTITION_COUNT_FIELDS) for row in cursor.fetchall()
            )
            normalised = normalise_definitions(
                connection, definition_requests(definitions, live_tables, live_indexes)
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
        missing_schemas=tuple(missing_schemas),
    )


_VALID_LEADING_INDEXES_SQL = """
SELECT i.relname
  FROM pg_index ix
  JOIN pg_class i ON i.oid = ix.indexrelid
  JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = ix.indkey[0]
 WHERE ix.indrelid = to_regclass(%s)
   AND ix.indisvalid AND ix.indisready AND ix.indislive
   AND a.attname = %s
 ORDER BY i.relname
"""


def valid_indexes_leading_with(connection: Any, table: str, column: str) -> list[str]:
    """The names of the valid indexes of ``table`` whose first key is ``column``.

    One query on the connection as it is (no bounds): the migration operations ask it
    between two steps, to make sure the table keeps a valid tenant-leading index.

    Args:
        connection: a Django PostgreSQL connection.
        table: the table, quoted and schema-qualified as ``to_regclass()`` takes it.
        column: the column name.
    """
    with connection.cursor() as cursor:
        cursor.execute(_VALID_LEADING_INDEXES_SQL, [table, column])
        return [row[0] for row in cursor.fetchall()]
