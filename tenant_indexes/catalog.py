"""The catalog snapshot: the tables and indexes of one database alias, read in one pass.

Indexes are read as :class:`~tenant_indexes.indexrows.CatalogIndex` rows through
:mod:`tenant_indexes.indexrows` (the row type is re-exported here). Every read is bounded
(connect timeout, local ``statement_timeout`` / ``lock_timeout``, a transaction that is
rolled back).

Values go through parameters and identifiers through :mod:`tenant_indexes.sql` or the
server's own ``quote_ident``; one snapshot costs a constant number of statements, never one
per table or index.
"""

from __future__ import annotations

import functools
import json
import queue
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import connections

from .definitions import SharedDefinitions
from .indexrows import (
    REQUESTED_TABLES_SQL,
    SHARED_DEFINITION_SQL,
    CatalogIndex,
    array_literal,
    definition_key,
    index_from_row,
    index_rows_sql,
    intern,
    requested_arrays,
)
from .partitionleaves import LEAVES_COLUMN_SQL, PartitionLeaf, parse_leaves
from .reads import check_timeouts, connect_with_timeout, first_error_line

if TYPE_CHECKING:
    from .normalise import DeclaredDefinition, NormalisedDefinition


@dataclass(frozen=True, slots=True)
class CatalogTable:
    """One table the snapshot was asked about, as found on the server.

    Attributes:
        schema: the schema it was found in.
        name: the table name.
        requested_schema: the schema asked for (``None``: resolved on the search_path).
        estimated_rows: ``pg_class.reltuples`` (``-1`` or ``0`` before the first ANALYZE).
        size_bytes: ``relpages * block_size`` (lock-free estimate, see :class:`CatalogIndex`).
        seq_scan: sequential scans (``pg_stat_user_tables``).
        idx_scan: index scans on the table: those of its indexes added up (for a
            partitioned table, of its partitions' indexes).
        n_live_tup: live rows according to the statistics collector.
        column_types: ``(column, type)`` of every column, the type as ``format_type()``
            writes it without its modifier (``character varying``, ``uuid``, ``bigint``).
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
    #: Every column and its type (`format_type`), in column order.
    column_types: tuple[tuple[str, str], ...] = ()

    def column_type(self, column: str) -> str | None:
        """The type of ``column`` (see :attr:`column_types`), ``None`` if there is none."""
        return dict(self.column_types).get(column)


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


# jit = off: a catalog read is what JIT is not for. Where the server has it (Debian's
# PostgreSQL packages do), compiling the indexes statement's expressions took longer than
# running it: 1.6 s to 1.9 s against 0.6 s to 0.9 s without, at 1,000 schemas on 15.
_SNAPSHOT_SETTINGS_SQL = """
    SELECT set_config('statement_timeout', %s, true),
           set_config('lock_timeout', %s, true),
           set_config('jit', 'off', true),
           current_setting('server_version'),
           current_setting('server_version_num')::int,
           current_schema(),
           array(SELECT s FROM unnest(%s::text[]) AS s
                  WHERE to_regnamespace(quote_ident(s)) IS NULL ORDER BY s)
"""

# seq_scan and n_live_tup as pg_stat_user_tables has them, from the functions behind it,
# called for the requested tables only: joined, the view is aggregated over every table and
# index of the database (it groups by table), whatever was requested. Its idx_scan is the
# sum over the table's indexes, which the indexes statement reads anyway: added up in Python.
# Each table's pg_class row is looked up by oid, as the indexes statement's are
# (indexrows._PER_ROW_LOOKUPS): never a hash of the whole of pg_class.
_USER_SCHEMA = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"
_SNAPSHOT_TABLES_SQL = f"""
    WITH requested AS ({REQUESTED_TABLES_SQL})
    SELECT c.oid, n.nspname, c.relname, r.schema, c.reltuples::float8,
           c.relpages::bigint * current_setting('block_size')::bigint,
           CASE WHEN {_USER_SCHEMA} THEN pg_stat_get_numscans(c.oid) END,
           CASE WHEN {_USER_SCHEMA} THEN pg_stat_get_live_tuples(c.oid) END,
           quote_ident(n.nspname),
           (SELECT json_agg(json_build_array(a.attnum, a.attname, format_type(a.atttypid, NULL),
                                             a.attcollation)
                            ORDER BY a.attnum)::text
              FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
           {LEAVES_COLUMN_SQL}
      FROM requested r
      CROSS JOIN LATERAL (SELECT c.oid, c.relname, c.relnamespace, c.relkind, c.reltuples,
                                 c.relpages
                            FROM pg_class c WHERE c.oid = r.oid OFFSET 0) c
      JOIN pg_namespace n ON n.oid = c.relnamespace
"""

# For the index of a partitioned table only: its leaf partitions and how many of them have
# a valid index attached under it (the server marks it valid when all of them do).
PARTITION_COUNT_COLUMNS = (
    "CASE WHEN ix.relkind = 'I' THEN (SELECT count(*) FROM pg_partition_tree(ix.indrelid) p "
    "WHERE p.isleaf AND p.level > 0) END",
    "CASE WHEN ix.relkind = 'I' THEN (SELECT count(*) FROM pg_partition_tree(ix.indexrelid) p "
    "WHERE p.isleaf AND p.level > 0 "
    "AND (SELECT cx.indisvalid FROM pg_index cx WHERE cx.indexrelid = p.relid)) END",
)
PARTITION_COUNT_FIELDS = ("partitions_total", "partitions_attached")


@functools.lru_cache(maxsize=8)
def _snapshot_indexes_sql(server_version_num: int) -> str:
    """The indexes of the tables the tables statement found, by oid: the names are resolved
    once. Their column names come from the tables statement's columns (see index_from_row),
    and the definitions of schema copies from one copy's (:mod:`tenant_indexes.definitions`):
    each row ends with the partition counts, whether its definition is derived, and its oid.
    """
    return index_rows_sql(
        "ix.indrelid = ANY(%s::oid[])",
        extra_columns=(*PARTITION_COUNT_COLUMNS, SHARED_DEFINITION_SQL, "ix.indexrelid"),
        column_names=False,
        shared_definitions=True,
        server_version_num=server_version_num,
        per_row_lookups=True,
    )


_COLUMNS = object()  # marks the column lists among the snapshot's shared tuples


def _columns(text: str | None) -> tuple[Any, ...]:
    """``(column, type)`` pairs and names by position of a JSON ``[attnum, name, type,
    collation]`` list."""
    columns = json.loads(text or "[]")
    names: list[str | None] = [None] * (columns[-1][0] if columns else 0)
    for attnum, name, *_ in columns:
        names[attnum - 1] = intern(name)
    return tuple([(intern(name), kind) for _, name, kind, _ in columns]), tuple(names)


class _TableRow:
    """A row of the tables statement, read: the table is made once its indexes are read,
    since its ``idx_scan`` is theirs added up."""

    __slots__ = (
        "column_types",
        "columns_text",
        "fields",
        "leaves",
        "names",
        "oid",
        "quoted_schema",
    )

    def __init__(self, row: Sequence[Any], shared: dict[tuple[Any, ...], tuple[Any, ...]]):
        # The table's oid, the fields in order, the schema as quote_ident writes it, then the
        # columns (JSON ``[attnum, name, type, collation]``) and the partition leaves
        # (``LEAVES_COLUMN_SQL``).
        self.oid = row[0]
        self.fields = tuple(row[1:8])
        self.quoted_schema = row[8]
        self.columns_text = row[9]
        self.leaves = row[10]
        # Every schema copy of a table has the same columns: read once per distinct text.
        key = (_COLUMNS, row[9])
        known = shared.get(key)
        if known is None:
            known = shared[key] = _columns(row[9])
        #: The columns and types, and the column names by position (``attnum - 1``,
        #: ``None`` where a column was dropped), for the index rows.
        self.column_types, self.names = known

    def table(self, index_scans: int | None) -> CatalogTable:
        schema, name, requested_schema, rows, size, seq_scan, live_tuples = self.fields
        return CatalogTable(
            schema,
            name,
            requested_schema,
            rows,
            size,
            seq_scan,
            None if seq_scan is None else index_scans,  # NULL outside user schemas
            live_tuples,
            partition_leaves=parse_leaves(self.leaves),
            column_types=self.column_types,
        )


#: Rows per fetch of the snapshot's server-side cursors.
ROWS_PER_FETCH = 5000


def _rows_in_batches(connection: Any, sql: str, params: Sequence[Any]) -> Iterator[Any]:
    """The rows of one statement, fetched :data:`ROWS_PER_FETCH` at a time through a
    server-side cursor (Django's ``chunked_cursor()``; a plain one where the alias sets
    ``DISABLE_SERVER_SIDE_CURSORS``, as ``QuerySet.iterator()`` does), and turned into
    objects as they come.

    Read whole, the driver would keep the result of every index of thousands of schemas in
    memory next to the objects made from it: more than the objects themselves. One
    statement still; the fetches are its rows, a round trip per batch.
    """
    plain = connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
    with connection.cursor() if plain else connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        if plain:  # the driver holds every row already: nothing to wait for
            while batch := cursor.fetchmany(ROWS_PER_FETCH):
                yield from batch
        else:
            batches = _fetched_ahead(cursor)
            try:
                for batch in batches:
                    yield from batch
            finally:
                batches.close()  # its thread is done before the cursor closes


def _fetched_ahead(cursor: Any) -> Generator[Sequence[Any], None, None]:
    """The batches of a server-side cursor, each fetched while the caller works on the one
    before.

    A fetch is mostly waiting for the server to make the batch's rows (definitions,
    counters), and the caller's work on a batch is Python's: on two cores they overlap. One
    thread fetches, at most one batch ahead, and stops with the caller, also when the
    caller stops early or fails; the connection is only used by that thread meanwhile (the
    caller issues nothing while it reads), and a fetch's error is raised in the caller.
    """
    batches: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                batch = cursor.fetchmany(ROWS_PER_FETCH)
                batches.put(batch)
                if not batch:
                    return
        except BaseException as e:  # handed to the caller, raised there
            batches.put(e)

    thread = threading.Thread(target=fetch, name="tenant_indexes-fetch", daemon=True)
    thread.start()
    try:
        while True:
            batch = batches.get()
            if isinstance(batch, BaseException):
                raise batch
            if not batch:
                return
            yield batch
    finally:
        stop.set()
        while thread.is_alive():  # a fetch in flight ends (bounded by statement_timeout)
            try:
                batches.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()


def catalog_snapshot(
    using: str,
    tables: Iterable[tuple[str | None, str]],
    definitions: Iterable[DeclaredDefinition] = (),
) -> CatalogSnapshot:
    """Read the tables and indexes of one database alias in one read-only pass.

    The pass costs a constant number of statements (five outside a transaction, four
    inside one) whatever the number of tables: the settings, the tables, the indexes and
    the definitions that schema copies share (:mod:`tenant_indexes.definitions`; one more
    if a copy was dropped or renamed meanwhile, none without any); plus, only when
    ``definitions`` name existing indexes with a predicate or expressions, the few of
    :func:`tenant_indexes.normalise.normalise_definitions`. The tables and indexes are read
    through server-side cursors, :data:`ROWS_PER_FETCH` rows a fetch, each fetch bounded by
    the ``statement_timeout``. It runs in a transaction (a
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
                # transaction we issue nothing but SELECTs anyway. REPEATABLE READ: the
                # tables and indexes statements see one snapshot, so the column names taken
                # from the first fit the indexes of the second.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            schemas = sorted({schema for schema in arrays[0] if schema is not None})
            cursor.execute(_SNAPSHOT_SETTINGS_SQL, [*check_timeouts(), array_literal(schemas)])
            _, _, _, server_version, server_version_num, current_schema, missing_schemas = (
                cursor.fetchone()
            )
            shared: dict[tuple[Any, ...], tuple[Any, ...]] = {}
            # A table asked for on the search_path and by its schema is two rows.
            table_rows = [
                _TableRow(row, shared)
                for row in _rows_in_batches(
                    connection, _SNAPSHOT_TABLES_SQL, [array_literal(a) for a in arrays]
                )
            ]
            by_name = {(t.fields[0], t.fields[1]): t for t in table_rows}
            oids = list(dict.fromkeys(t.oid for t in table_rows))
            index_scans: dict[tuple[str, str], int] = {}
            indexes_read = []
            derived = SharedDefinitions()
            indexes_sql = _snapshot_indexes_sql(int(server_version_num))
            for row in _rows_in_batches(connection, indexes_sql, [array_literal(oids)]):
                key = (row[0], row[1])
                table = by_name[key]
                ix = index_from_row(row[:-2], PARTITION_COUNT_FIELDS, shared, table.names)
                if row[-2]:  # its definition is derived from a copy's
                    derived.add(
                        definition_key(row, table.columns_text), ix, row[-1], table.quoted_schema
                    )
                indexes_read.append(ix)
                index_scans[key] = index_scans.get(key, 0) + (ix.idx_scan or 0)
            derived.resolve(cursor)
            live_indexes = tuple(indexes_read)
            live_tables = tuple(t.table(index_scans.get(t.fields[:2])) for t in table_rows)
            del shared, table_rows, by_name, indexes_read, derived
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
