"""Every SQL statement that reads PostgreSQL's catalogs and statistics views.

Nothing outside this module queries ``pg_catalog`` or ``pg_stat_*``. Values go through
parameters and identifiers through ``quote_name`` / ``to_regclass``; one snapshot per
database alias costs a constant number of queries, never one per table or index.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass as _dataclass
from typing import Any as _Any

# --- Snapshot of indexes and tables (check_tenant_indexes, tenant_index_stats) ----------

# --- Usage statistics beyond the snapshot (tenant_index_stats) ---------------------------

# --- Index builds (operations.py, repair_tenant_indexes) --------------------------------
# Everything the concurrent build needs to decide and to explain itself: the index by name
# (with the _ccnew/_ccold leftovers of an interrupted REINDEX CONCURRENTLY), the session
# settings it changes and restores, the advisory lock that keeps builders apart, the build's
# progress and the sessions that block it.

#: Key space of the two-key advisory locks (``pg_advisory_lock(int4, int4)``) taken around
#: index builds; the second key is ``hashtext()`` of the schema-qualified index name.
BUILD_LOCK_NAMESPACE = "tenant_indexes.build"


@_dataclass(frozen=True)
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


@_dataclass(frozen=True)
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


@_dataclass(frozen=True)
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
         WHERE p.index_relid = x.indexrelid LIMIT 1)
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


def index_and_leftovers(connection: _Any, table: str, name: str) -> tuple[CatalogIndex, ...]:
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
        )
        for row in rows
    )


def table_schema(connection: _Any, table: str) -> str | None:
    """The schema ``table`` resolves to on this connection's search_path, or ``None``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = to_regclass(%s)",
            [connection.ops.quote_name(table)],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def session_settings(connection: _Any, names: tuple[str, ...]) -> dict[str, str | None]:
    """The current values of run-time settings; ``None`` for one the server doesn't know."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.name, current_setting(s.name, true) FROM unnest(%s::text[]) AS s(name)",
            [list(names)],
        )
        return dict(cursor.fetchall())


def set_session_settings(connection: _Any, values: dict[str, str]) -> None:
    """``SET`` each setting for the session (``set_config(name, value, false)``)."""
    if not values:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config(s.name, s.value, false) "
            "FROM unnest(%s::text[], %s::text[]) AS s(name, value)",
            [list(values), list(values.values())],
        )


def acquire_build_lock(connection: _Any, qualified_index: str) -> None:
    """Wait for the session advisory lock of one index build (bounded by lock_timeout)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_lock(hashtext(%s), hashtext(%s))",
            [BUILD_LOCK_NAMESPACE, qualified_index],
        )


def release_build_lock(connection: _Any, qualified_index: str) -> None:
    """Release the advisory lock taken by :func:`acquire_build_lock`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))",
            [BUILD_LOCK_NAMESPACE, qualified_index],
        )


def build_lock_holder(connection: _Any, qualified_index: str) -> BlockingSession | None:
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


def backend_pid(connection: _Any) -> int:
    """``pg_backend_pid()`` of the connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def server_clock(connection: _Any) -> _dt.datetime:
    """``clock_timestamp()``: the server's time now, to compare with ``xact_start``."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def build_progress(connection: _Any, build_pid: int) -> BuildProgress | None:
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
    counts = [int(v or 0) for v in row[1:7]]
    return BuildProgress(row[0], *counts, blocker=blocker)


def likely_build_blockers(
    connection: _Any, table: str, started_before: _dt.datetime
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
