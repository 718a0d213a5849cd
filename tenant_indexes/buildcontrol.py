"""The SQL a concurrent index build needs to decide and to explain itself.

The index by name with the ``_ccnew``/``_ccold`` leftovers of an interrupted
``REINDEX CONCURRENTLY``, the session settings the build changes and restores, the advisory
lock that keeps builders apart, the build's progress and the sessions that block it. Every
function takes the connection the build runs on (or, for sampling, a second one).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from .indexrows import CatalogIndex, index_from_row, index_rows_sql
from .sql import table_reference

#: Key space of the two-key advisory locks (``pg_advisory_lock(int4, int4)``) taken around
#: index builds; the second key is ``hashtext()`` of the schema-qualified index name.
BUILD_LOCK_NAMESPACE = "tenant_indexes.build"


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


_INDEX_AND_LEFTOVERS_SQL = index_rows_sql(
    """i.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass(%(table)s))
       AND (i.relname = %(name)s
            OR (ix.indrelid = to_regclass(%(table)s)
                AND left(i.relname, length(%(name)s)) = %(name)s
                AND substr(i.relname, length(%(name)s) + 1) ~ '^_cc(new|old)[0-9]*$'))"""
)


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
        The matching indexes, ordered by table and name; empty when the table does not exist.
    """
    params = {"table": table_reference(table), "name": name}
    with connection.cursor() as cursor:
        cursor.execute(_INDEX_AND_LEFTOVERS_SQL, params)
        rows = cursor.fetchall()
    return tuple(index_from_row(row) for row in rows)


def table_schema(connection: Any, table: str) -> str | None:
    """The schema ``table`` (a ``db_table``, maybe ``"schema"."table"``) is in, resolved on
    this connection's search_path when it names no schema; ``None`` when it does not exist."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = to_regclass(%s)",
            [table_reference(table)],
        )
        row = cursor.fetchone()
    return row[0] if row else None


#: SQLSTATEs of a lock wait given up: ``lock_timeout`` ran out, or a deadlock was broken.
LOCK_NOT_AVAILABLE, DEADLOCK_DETECTED = "55P03", "40P01"


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error (Django's, or the driver's it wraps), from
    psycopg 3 (``sqlstate``) or psycopg2 (``pgcode``); ``None`` for another error."""
    cause = error.__cause__ or error
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def retry_pause(config: Any, attempt: int) -> float:
    """Seconds to wait before try ``attempt + 1`` of a step that hit a lock wait.

    Doubling from ``BUILD_RETRY_BACKOFF``, at most ``BUILD_RETRY_BACKOFF_MAX``; a step gets
    ``BUILD_LOCK_RETRIES`` + 1 tries.
    """
    backoff = float(config["BUILD_RETRY_BACKOFF"])
    return min(backoff * 2 ** (attempt - 1), float(config["BUILD_RETRY_BACKOFF_MAX"]))


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


#: Key space of the per-table advisory lock a builder takes after the per-index one: two
#: concurrent builds on one table would queue on the table's SHARE UPDATE EXCLUSIVE lock
#: inside the server (and give up at lock_timeout); they queue here instead, on the client.
BUILD_TABLE_LOCK_NAMESPACE = "tenant_indexes.build.table"


def try_build_lock(connection: Any, namespace: str, key: str) -> bool:
    """``pg_try_advisory_lock()`` once: never waits on the server.

    Polled from the client between statements, so a waiting builder holds no snapshot
    (a blocked ``pg_advisory_lock()`` does, and ``CREATE INDEX CONCURRENTLY`` of the
    holder waits for that snapshot: the deadlock of two builders).
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))", [namespace, key])
        return bool(cursor.fetchone()[0])


def acquire_build_lock(connection: Any, qualified_index: str) -> None:
    """Wait for the session advisory lock of one index build (bounded by lock_timeout)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_lock(hashtext(%s), hashtext(%s))",
            [BUILD_LOCK_NAMESPACE, qualified_index],
        )


def release_lock(connection: Any, namespace: str, key: str) -> None:
    """``pg_advisory_unlock()`` of a lock taken by :func:`try_build_lock`."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))", [namespace, key])


def release_build_lock(connection: Any, qualified_index: str) -> None:
    """Release the advisory lock taken by :func:`acquire_build_lock`."""
    release_lock(connection, BUILD_LOCK_NAMESPACE, qualified_index)


def lock_holder(connection: Any, namespace: str, key: str) -> BlockingSession | None:
    """The other session that holds the advisory lock ``(namespace, key)``, if any."""
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
            [namespace, key],
        )
        row = cursor.fetchone()
    return BlockingSession(*row) if row else None


def in_recovery(connection: Any) -> bool:
    """``pg_is_in_recovery()``: the server is a hot standby (read-only)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        return bool(cursor.fetchone()[0])


def driver_backend_pid(connection: Any) -> int | None:
    """The backend pid the driver got at connect (BackendKeyData), ``None`` if unknown.

    Equal to ``pg_backend_pid()`` on a direct connection; a pooler such as PgBouncer hands
    the client a key of its own, so a difference means a pooler sits in between.
    """
    raw = connection.connection
    info = getattr(raw, "info", None)
    if info is not None and hasattr(info, "backend_pid"):
        return int(info.backend_pid)  # psycopg 3
    if hasattr(raw, "get_backend_pid"):
        return int(raw.get_backend_pid())  # psycopg2
    return None


def build_lock_holder(connection: Any, qualified_index: str) -> BlockingSession | None:
    """The other session that holds the build lock of ``qualified_index``, if any."""
    return lock_holder(connection, BUILD_LOCK_NAMESPACE, qualified_index)


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
               AND a.xact_start <= %(before)s
               AND (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL
                    OR EXISTS (SELECT 1 FROM pg_locks l
                                WHERE l.pid = a.pid AND l.relation = to_regclass(%(table)s)))
             ORDER BY (EXISTS (SELECT 1 FROM pg_locks l
                                WHERE l.pid = a.pid AND l.relation = to_regclass(%(table)s)))
                      DESC, a.xact_start
            """,
            {"before": started_before, "table": table_reference(table)},
        )
        return tuple(BlockingSession(*row) for row in cursor.fetchall())
