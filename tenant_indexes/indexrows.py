"""One index as PostgreSQL has it: :class:`CatalogIndex`, the one statement that reads
index rows (:func:`index_rows_sql`) and its parser (:func:`index_from_row`).

The snapshot (:mod:`tenant_indexes.catalog`), the usage statistics
(:mod:`tenant_indexes.statistics`) and the build's lookups (:mod:`tenant_indexes.buildcontrol`)
all read indexes through these, so an index is the same value wherever it was read.
Identifiers are quoted by the server's own ``quote_ident``; values go through parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from sys import intern as _intern_str
from typing import Any


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
           array(SELECT (SELECT a.attname::text FROM pg_attribute a
                          WHERE a.attrelid = ix.indrelid AND a.attnum = k.attnum
                            AND k.attnum <> 0)
                   FROM unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
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


def intern(text: str | None) -> str | None:
    """``sys.intern`` that passes ``None`` through: the catalog gives NULL for the key text
    or a column name of an index that a concurrent build or drop is changing."""
    return None if text is None else _intern_str(text)


def index_from_row(
    row: Sequence[Any],
    extra_fields: Sequence[str] = (),
    shared: dict[tuple[Any, ...], tuple[Any, ...]] | None = None,
) -> CatalogIndex:
    """One row of :func:`index_rows_sql` as a :class:`CatalogIndex`.

    Args:
        row: the row.
        extra_fields: the fields (``exact_size_bytes``, ``last_idx_scan``) that the
            statement's ``extra_columns`` fill, in the same order.
        shared: where the rows of one read keep their column, order and key tuples, so
            that equal ones are one tuple (every schema copy of a table repeats them).
    """
    (schema, table, name, all_columns, key_count, options, keys, expressions, predicate,
     unique, primary, constraint, method, valid, ready, live, definition, size_bytes,
     idx_scan, idx_tup_read, idx_tup_fetch, building_pid) = row[:_COMMON_COLUMNS]  # fmt: skip
    extras = dict(zip(extra_fields, row[_COMMON_COLUMNS:], strict=True)) if extra_fields else {}
    shared = {} if shared is None else shared
    # Every index of a table repeats its schema and table name, every schema copy of a table
    # its index and column names and key texts: one string each instead of one per row.
    columns = tuple(intern(c) for c in all_columns[:key_count])
    descending = tuple([bool(option & _INDOPTION_DESC) for option in options[:key_count]])
    include = tuple([intern(c) for c in all_columns[key_count:]])
    key_texts = tuple([intern(k) for k in keys])
    return CatalogIndex(
        _intern_str(schema),
        _intern_str(table),
        _intern_str(name),
        shared.setdefault(columns, columns),
        shared.setdefault(descending, descending),
        shared.setdefault(include, include),
        shared.setdefault(key_texts, key_texts),
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


def requested_arrays(tables: Iterable[tuple[str | None, str]]) -> list[list[Any]]:
    """The two parameters of :data:`REQUESTED_TABLES_SQL`, each requested table once."""
    requested = list(dict.fromkeys(tables))
    return [[schema for schema, _ in requested], [name for _, name in requested]]
