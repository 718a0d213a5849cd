"""One index as PostgreSQL has it: :class:`CatalogIndex`, the one statement that reads
index rows (:func:`index_rows_sql`) and its parser (:func:`index_from_row`).

The snapshot (:mod:`tenant_indexes.catalog`), the usage statistics
(:mod:`tenant_indexes.statistics`) and the build's lookups (:mod:`tenant_indexes.buildcontrol`)
all read indexes through these, so an index is the same value wherever it was read.
Identifiers are quoted by the server's own ``quote_ident``; values go through parameters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from sys import intern as _intern_str
from typing import Any

#: What identifies one key of an index (see :attr:`CatalogIndex.keys`): the column's
#: ``attnum`` (0 for an expression), the column name or the expression's text, the collation
#: and operator class oids, the operator class's options and the DESC / NULLS FIRST bits.
KeyIdentity = tuple[int, str, int, int, "str | None", int]


@dataclass(frozen=True, slots=True)
class CatalogIndex:
    """One index as PostgreSQL has it.

    Attributes:
        schema: schema of the index (always that of its table).
        table: the table it indexes.
        name: the index name.
        columns: key columns in order; ``None`` for an expression.
        descending: one flag per key column, ``True`` for ``DESC``.
        include: ``INCLUDE`` columns.
        keys: what identifies each key (:data:`KeyIdentity`): the column, or the
            expression as the server writes it (``pg_get_indexdef(oid, k, true)``), with its
            collation, operator class, options and order; two keys of one table are
            interchangeable exactly when their identities are equal.
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
    keys: tuple[KeyIdentity | None, ...]
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


# The requested tables, resolved the way the server would resolve the name: through the
# search_path when no schema is given (to_regclass, identifiers quoted by quote_ident, never
# by us); with a schema, by name in that schema: one to_regclass per table took 0.6 s of the
# tables statement's 2 s at 80,000 tables. Each name is looked up in pg_class's (name,
# schema) index (OFFSET 0 keeps the lookup a sub-select), not joined: joined, the planner
# hashed the whole of pg_class, which at 1,000 of 10,000 schemas was most of the statement
# (0.33 s against 0.21 s looked up; about the same either way at all 10,000).
# Parameters: the schemas (NULL for the search_path) and the names, as two text arrays.
REQUESTED_TABLES_SQL = """
    WITH asked AS (SELECT * FROM unnest(%s::text[], %s::text[]) AS r(schema, name))
    SELECT DISTINCT ON (found.oid, found.schema) found.oid, found.schema
      FROM (SELECT c.oid, r.schema, c.relkind
              FROM asked r
              JOIN pg_namespace n ON n.nspname = r.schema
              CROSS JOIN LATERAL (SELECT c.oid, c.relkind
                                    FROM pg_class c
                                   WHERE c.relname = r.name AND c.relnamespace = n.oid
                                  OFFSET 0) c
            UNION ALL
            SELECT c.oid, r.schema, c.relkind
              FROM asked r
              JOIN pg_class c ON c.oid = to_regclass(quote_ident(r.name))
             WHERE r.schema IS NULL) found
     WHERE found.relkind IN ('r', 'p')
"""

# Each key is read as the pieces that identify it: the column (attnum in indkey, 0 marks an
# expression, whose text pg_get_indexdef gives), the collation and operator class (oids,
# indcollation and indclass) and the DESC / NULLS FIRST bits (indoption bits 0 and 1); the
# vectors are read in their own text form ("1 2"), the cheapest to write and to parse. An
# operator class's options (opclass parameters, such as a GiST signature length) are on the
# index's attributes; no btree operator class takes any, so btree indexes skip the lookup.
# Composing names per key on the server (a join to pg_opclass, a cast to regcollation per
# key) took longer than the whole raw read of the same indexes at 10,000 schemas.
# The key and INCLUDE columns are told apart by indnkeyatts in Python. The column names are
# one sub-select per index (COLUMN_NAMES_SQL), or, for the snapshot, which reads every
# column of the tables anyway, looked up in Python (index_from_row's attribute_names).
# The progress view only shows other roles' builds to members of pg_read_all_stats; it is
# read once (MATERIALIZED), not once per index by the sub-select that looks a build up. The
# counters are the functions behind pg_stat_all_indexes, called directly: joining the view
# re-joins pg_class, pg_index and pg_namespace for every index.
# A partition tree's members are looked up one by one (a sub-select per member): the
# planner takes pg_partition_tree for a thousand rows and would hash the whole of pg_class
# (or pg_index) for each partitioned index.
# The indexes are found and sorted in the inner query (OFFSET 0 keeps the planner from
# merging the two), and the definitions, key texts and counters are made in the outer one,
# whose ORDER BY the inner order already satisfies: read through a server-side cursor, each
# fetch then makes its own rows' definitions, instead of the first making all of them
# before the sort (a statement_timeout bounds each fetch, as it does each statement).
_INDEX_ROWS_SQL = """
    WITH building AS MATERIALIZED (
        SELECT DISTINCT ON (index_relid) index_relid, pid
          FROM pg_stat_progress_create_index
         WHERE index_relid IS NOT NULL AND index_relid <> 0
         ORDER BY index_relid, pid
    ){extra_ctes}
    SELECT ix.nspname, ix.table_name, ix.index_name,
           {columns},
           ix.indkey::text,
           ix.indnkeyatts,
           ix.indoption::text,
           CASE WHEN 0 = ANY(ix.indkey::int2[])
                THEN array(SELECT CASE WHEN ix.indkey[k.n - 1] = 0
                                       THEN pg_get_indexdef(ix.indexrelid, k.n, true) END
                             FROM generate_series(1, ix.indnkeyatts::int) AS k(n)
                            ORDER BY k.n) END,
           ix.indclass::text,
           ix.indcollation::text,
           CASE WHEN ix.amname <> 'btree'
                THEN (SELECT json_object_agg(a.attnum, array_to_string(a.attoptions, ', '))
                        FROM pg_attribute a
                       WHERE a.attrelid = ix.indexrelid AND a.attoptions IS NOT NULL)::text END,
           pg_get_expr(ix.indexprs, ix.indrelid),
           pg_get_expr(ix.indpred, ix.indrelid),
           ix.indisunique, ix.indisprimary, ix.conname, ix.amname,
           ix.indisvalid, ix.indisready, ix.indislive,
           {definition},
           CASE WHEN ix.relkind = 'I'
                THEN (SELECT sum((SELECT c.relpages FROM pg_class c WHERE c.oid = p.relid))::bigint
                        FROM pg_partition_tree(ix.indexrelid) p)
                ELSE ix.relpages::bigint END * current_setting('block_size')::bigint,
           CASE WHEN ix.relkind = 'I' THEN (SELECT sum(pg_stat_get_numscans(p.relid))::bigint
                                               FROM pg_partition_tree(ix.indexrelid) p)
                ELSE pg_stat_get_numscans(ix.indexrelid) END,
           CASE WHEN ix.relkind = 'I'
                THEN (SELECT sum(pg_stat_get_tuples_returned(p.relid))::bigint
                        FROM pg_partition_tree(ix.indexrelid) p)
                ELSE pg_stat_get_tuples_returned(ix.indexrelid) END,
           CASE WHEN ix.relkind = 'I'
                THEN (SELECT sum(pg_stat_get_tuples_fetched(p.relid))::bigint
                        FROM pg_partition_tree(ix.indexrelid) p)
                ELSE pg_stat_get_tuples_fetched(ix.indexrelid) END,
           (SELECT b.pid FROM building b WHERE b.index_relid = ix.indexrelid){extra_columns}
      FROM (SELECT ix.indexrelid, ix.indrelid, ix.indkey, ix.indnkeyatts, ix.indoption,
                   ix.indclass, ix.indcollation, ix.indexprs, ix.indpred, ix.indisunique,
                   ix.indisprimary, ix.indisvalid, ix.indisready, ix.indislive, i.relkind,
                   i.relpages, i.reloptions, {nulls_not_distinct} AS nulls_not_distinct,
                   n.nspname, t.relname AS table_name, i.relname AS index_name,
                   am.amname::text AS amname, con.conname::text AS conname
              FROM pg_index ix
              {lookups}
              JOIN pg_namespace n ON n.oid = t.relnamespace
              JOIN pg_am am ON am.oid = i.relam
             WHERE {where}
             ORDER BY n.nspname, t.relname, i.relname
            OFFSET 0) ix
     ORDER BY ix.nspname, ix.table_name, ix.index_name
"""

# How the inner query finds each index's pg_class row, its table's and its constraint.
# Joined, the planner hashes the whole of pg_class and pg_constraint: the right plan when
# most of the database is asked for, and a fixed cost of the database's size otherwise.
_JOINED_LOOKUPS = """JOIN pg_class i ON i.oid = ix.indexrelid
              JOIN pg_class t ON t.oid = ix.indrelid
              LEFT JOIN pg_constraint con
                     ON con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid
                    AND con.contype IN ('p', 'u', 'x')"""
# Looked up by oid, row by row (OFFSET 0 keeps each a sub-select of its own, which the
# planner cannot turn into a hash join): for a WHERE that picks indexes by pg_index's
# own columns (ix.indrelid), the cost follows the indexes read, not the database's size.
# At 1,000 of 10,000 schemas the indexes statement took 0.2 s this way against 0.44 s
# joined; at all of them, about the same either way.
_PER_ROW_LOOKUPS = """CROSS JOIN LATERAL (
                   SELECT i.relname, i.relnamespace, i.relkind, i.relpages, i.reloptions,
                          i.relam
                     FROM pg_class i WHERE i.oid = ix.indexrelid OFFSET 0) i
              CROSS JOIN LATERAL (
                   SELECT t.relname, t.relnamespace
                     FROM pg_class t WHERE t.oid = ix.indrelid OFFSET 0) t
              LEFT JOIN LATERAL (
                   SELECT con.conname
                     FROM pg_constraint con
                    WHERE con.conrelid = ix.indrelid AND con.conindid = ix.indexrelid
                      AND con.contype IN ('p', 'u', 'x') OFFSET 0) con ON true"""

# The names of the key and INCLUDE columns, in order (NULL for an expression): unnest WITH
# ORDINALITY keeps the vector's order whatever its lower bound.
COLUMN_NAMES_SQL = """array(SELECT (SELECT a.attname::text FROM pg_attribute a
                          WHERE a.attrelid = ix.indrelid AND a.attnum = k.attnum
                            AND k.attnum <> 0)
                   FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                  ORDER BY k.n)"""

#: The ``WHERE`` of :func:`index_rows_sql` for "every index of the requested tables"
#: (parameters: the two arrays of :data:`REQUESTED_TABLES_SQL`).
INDEXES_OF_REQUESTED_TABLES = "ix.indrelid IN (SELECT oid FROM requested)"
_REQUESTED_CTE = f",\n    requested AS ({REQUESTED_TABLES_SQL})"


#: True for an index whose definition (``pg_get_indexdef``) another index's gives, with
#: only the schema changed, where both have the same name, table name, table columns and
#: key pieces (:mod:`tenant_indexes.definitions`): an ordinary index without expressions,
#: predicate, storage parameters or ``NULLS NOT DISTINCT``. Partitioned indexes are left out
#: because whether their definition says ``ONLY`` depends on the table being a partition.
SHARED_DEFINITION_SQL = (
    "ix.relkind = 'i' AND ix.indexprs IS NULL AND ix.indpred IS NULL "
    "AND ix.reloptions IS NULL AND NOT ix.nulls_not_distinct"
)


def index_rows_sql(
    where: str,
    *,
    extra_columns: Sequence[str] = (),
    requested: bool = False,
    column_names: bool = True,
    shared_definitions: bool = False,
    server_version_num: int = 0,
    per_row_lookups: bool = False,
) -> str:
    """The one statement that reads indexes; :func:`index_from_row` reads its rows.

    Args:
        where: the condition on ``ix`` (``pg_index``), ``i`` (the index's ``pg_class``) and
            ``t`` (the table's), e.g. :data:`INDEXES_OF_REQUESTED_TABLES`.
        extra_columns: SQL expressions selected after the common columns, in order; their
            values go into the fields named by ``index_from_row(row, extra_fields)``. They
            see ``ix``: ``pg_index``'s columns, and the index's ``relkind``, ``reloptions``
            and ``nulls_not_distinct``.
        requested: add the ``requested`` CTE of :data:`REQUESTED_TABLES_SQL` (its two
            parameters come first).
        column_names: read the column names on the server; ``False`` leaves them to
            ``index_from_row(row, attribute_names=...)``, for a caller that has read the
            tables' columns already.
        shared_definitions: leave the definition NULL where :data:`SHARED_DEFINITION_SQL`
            holds, for a caller that asks the server for one copy's and derives the others
            (:class:`tenant_indexes.definitions.SharedDefinitions`).
        server_version_num: with ``shared_definitions``, the server's version:
            ``indnullsnotdistinct`` exists from 15 on.
        per_row_lookups: look up each index's and table's ``pg_class`` row and its
            constraint by oid instead of joining the catalogs, for a ``where`` on
            ``ix.indrelid`` (see :data:`_PER_ROW_LOOKUPS`); a ``where`` on ``i`` or ``t``
            (a name) wants them joined.
    """
    definition = "pg_get_indexdef(ix.indexrelid)"
    if shared_definitions:
        definition = f"CASE WHEN {SHARED_DEFINITION_SQL} THEN NULL ELSE {definition} END"
    return _INDEX_ROWS_SQL.format(
        definition=definition,
        nulls_not_distinct=(
            "ix.indnullsnotdistinct"
            if shared_definitions and server_version_num >= 150000
            else "false"
        ),
        columns=COLUMN_NAMES_SQL if column_names else "NULL::text[]",
        extra_ctes=_REQUESTED_CTE if requested else "",
        extra_columns="".join(f",\n           {column}" for column in extra_columns),
        where=where,
        lookups=_PER_ROW_LOOKUPS if per_row_lookups else _JOINED_LOOKUPS,
    )


_INDOPTION_DESC = 1  # pg_index.indoption bits: the key sorts descending,
_INDOPTION_NULLS_FIRST = 2  # its NULLs come first
_COMMON_COLUMNS = 26  # the columns every index_rows_sql() row starts with


def intern(text: str | None) -> str | None:
    """``sys.intern`` that passes ``None`` through: the catalog gives NULL for the key text
    or a column name of an index that a concurrent build or drop is changing."""
    return None if text is None else _intern_str(text)


@lru_cache(maxsize=4096)
def _vector(text: str | None) -> tuple[int, ...]:
    """An ``int2vector`` / ``oidvector`` in its text form (``"1 2"``) as numbers; the few
    distinct ones of a database are parsed once."""
    return tuple(int(value) for value in text.split()) if text else ()


def _keys(
    attnums: tuple[int, ...],
    columns: Sequence[str | None],
    expressions: Sequence[str | None] | None,
    classes: tuple[int, ...],
    collations: tuple[int, ...],
    options: dict[str, str],
    flags: tuple[int, ...],
) -> tuple[KeyIdentity | None, ...]:
    keys: list[KeyIdentity | None] = []
    for k, column in enumerate(columns):
        what = column if column is not None else (expressions[k] if expressions else None)
        if what is None:  # an index that a concurrent build or drop is changing
            keys.append(None)
            continue
        order = flags[k] & (_INDOPTION_DESC | _INDOPTION_NULLS_FIRST)
        attnum = attnums[k] if k < len(attnums) else 0
        keys.append((attnum, what, collations[k], classes[k], options.get(str(k + 1)), order))
    return tuple(keys)


_SHAPE = object()  # marks the shapes among the shared tuples of index_from_row


def _shape(shape: tuple[Any, ...], by_position: bool) -> tuple[Any, ...]:
    """The columns, DESC flags, INCLUDE columns and key identities of an index shape."""
    _, names, attnum_text, key_count, flag_text, expressions, classes, collations, options = shape
    numbers = _vector(attnum_text)
    if by_position:
        names = names or ()
        names = [names[n - 1] if 0 < n <= len(names) else None for n in numbers]
    flags = _vector(flag_text)
    columns = tuple([intern(c) for c in names[:key_count]])
    return (
        columns,
        tuple([bool(flag & _INDOPTION_DESC) for flag in flags[:key_count]]),
        tuple([intern(c) for c in names[key_count:]]),
        _keys(
            numbers,
            columns,
            expressions,
            _vector(classes),
            _vector(collations),
            json.loads(options) if options else {},
            flags,
        ),
    )


def index_from_row(
    row: Sequence[Any],
    extra_fields: Sequence[str] = (),
    shared: dict[tuple[Any, ...], tuple[Any, ...]] | None = None,
    attribute_names: Sequence[str | None] | None = None,
) -> CatalogIndex:
    """One row of :func:`index_rows_sql` as a :class:`CatalogIndex`.

    Args:
        row: the row.
        extra_fields: the fields (``exact_size_bytes``, ``last_idx_scan``) that the
            statement's ``extra_columns`` fill, in the same order.
        shared: where the rows of one read keep what their shapes (columns, order, keys)
            come to, so that each is worked out once and equal ones are one tuple (every
            schema copy of a table repeats them).
        attribute_names: for a statement read with ``column_names=False``, the table's
            column names by position (``attnum - 1``; ``None`` for a dropped column).
    """
    (schema, table, name, all_columns, attnum_text, key_count, flag_text, key_expressions,
     class_text, collation_text, option_text, expressions, predicate, unique, primary,
     constraint, method, valid, ready, live, definition, size_bytes, idx_scan, idx_tup_read,
     idx_tup_fetch, building_pid) = row[:_COMMON_COLUMNS]  # fmt: skip
    extras = dict(zip(extra_fields, row[_COMMON_COLUMNS:], strict=True)) if extra_fields else {}
    shared = {} if shared is None else shared
    # Every schema copy of a table repeats its indexes' shapes: each is worked out once.
    shape = (
        _SHAPE,
        attribute_names if all_columns is None else tuple(all_columns),
        attnum_text,
        key_count,
        flag_text,
        None if key_expressions is None else tuple(key_expressions),
        class_text,
        collation_text,
        option_text,
    )
    known = shared.get(shape)
    if known is None:
        known = shared[shape] = _shape(shape, all_columns is None)
    columns, descending, include, keys = known
    return CatalogIndex(
        _intern_str(schema),
        _intern_str(table),
        _intern_str(name),
        columns,
        descending,
        include,
        keys,
        expressions,
        predicate,
        unique,
        primary,
        intern(constraint),
        _intern_str(method),
        valid,
        ready,
        live,
        definition,
        size_bytes,
        idx_scan,
        idx_tup_read,
        idx_tup_fetch,
        building_pid,
        **extras,
    )


def definition_key(row: Sequence[Any], table_columns: Any) -> tuple[Any, ...]:
    """What decides the definition of an index of :data:`SHARED_DEFINITION_SQL`'s kind but
    for its schema (see :mod:`tenant_indexes.definitions`), from its :func:`index_rows_sql`
    row: the table and index names, the key pieces (columns by number, key count, order
    bits, operator classes, collations, options), uniqueness and method; and
    ``table_columns``, something equal for tables whose columns have the same names, types
    and collations."""
    return (table_columns, row[1], row[2], *row[4:7], *row[8:11], row[13], row[16])


def requested_arrays(tables: Iterable[tuple[str | None, str]]) -> list[list[Any]]:
    """The two parameters of :data:`REQUESTED_TABLES_SQL`, each requested table once."""
    requested = list(dict.fromkeys(tables))
    return [[schema for schema, _ in requested], [name for _, name in requested]]


def array_literal(values: Iterable[Any]) -> str:
    """``values`` as one PostgreSQL array literal, for a ``%s::text[]`` (or ``::oid[]``)
    parameter: each element double-quoted with ``"`` and ``\\`` escaped, ``None`` as
    ``NULL``. The drivers adapt a list element by element in Python (psycopg 3 took 0.2 s
    for the 48,000 names and oids of 2,000 schemas); one text is passed as it is."""
    return (
        "{"
        + ",".join(
            "NULL"
            if value is None
            else '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
            for value in values
        )
        + "}"
    )
