"""A live writer and a lock watcher for migration scenarios, on their own connections.

:class:`LiveWriter` inserts rows into a table in a loop (autocommit, one row a statement)
for as long as the block runs. Next to it, a watcher samples ``pg_locks`` for a lock the
writer waits for, and whether the table has a valid index leading with the tenant column.
Tests assert the counts (samples where the writer waited, and for what: a wait behind a
catalog-only statement such as ``ALTER INDEX ... RENAME`` is the bound of a catalog
update; samples without a valid tenant-leading index), never a time; the stalls are
recorded for benchmarks.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import connections

from tests.support.pg import valid_leading_index_count


@dataclass
class WriterReport:
    rows: int = 0
    lock_wait_samples: int = 0
    # What the sessions the writer waited for were running, one entry a sample.
    blockers: list[str] = field(default_factory=list)
    unindexed_samples: int = 0
    samples: int = 0
    errors: list[str] = field(default_factory=list)
    stalls: list[float] = field(default_factory=list)  # seconds each insert took
    unindexed_seconds: float = 0.0

    @property
    def longest_stall(self) -> float:
        return max(self.stalls, default=0.0)

    def percentile(self, share: float) -> float:
        ordered = sorted(self.stalls)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class LiveWriter:
    """Insert into ``table`` throughout the block; watch its locks and its tenant index.

    Args:
        table: the table (as ``to_regclass`` takes it).
        insert_sql: an INSERT with one ``%s`` for a unique text value.
        tenant_column: the column a valid index must lead with at every sample.
    """

    def __init__(self, table: str, insert_sql: str, tenant_column: str = "tenant_id"):
        self.table = table
        self.insert_sql = insert_sql
        self.tenant_column = tenant_column
        self.report = WriterReport()
        self._stop = threading.Event()
        self._writer_pid: int | None = None
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> LiveWriter:
        self._threads = [
            threading.Thread(target=self._write, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]
        self._threads[0].start()
        self._ready.wait(10)
        self._threads[1].start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        time.sleep(0.05)
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _write(self) -> None:
        conn = connections.create_connection("default")
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self._writer_pid = cursor.fetchone()[0]
                self._ready.set()
                while not self._stop.is_set():
                    began = time.monotonic()
                    try:
                        cursor.execute(self.insert_sql, [uuid.uuid4().hex])
                        self.report.rows += 1
                    except Exception as error:  # recorded: the test asserts there are none
                        self.report.errors.append(str(error).splitlines()[0])
                        time.sleep(0.01)
                    self.report.stalls.append(time.monotonic() - began)
        finally:
            self._ready.set()
            conn.close()

    def _watch(self) -> None:
        conn = connections.create_connection("default")
        last = time.monotonic()
        try:
            with conn.cursor() as cursor:
                while not self._stop.is_set():
                    cursor.execute(
                        "SELECT a.query FROM pg_locks l "
                        "LEFT JOIN pg_stat_activity a ON a.pid = ANY(pg_blocking_pids(l.pid)) "
                        "WHERE l.pid = %s AND NOT l.granted",
                        [self._writer_pid],
                    )
                    waits = [row[0] or "" for row in cursor.fetchall()]
                    waiting = bool(waits)
                    self.report.blockers.extend(waits)
                    indexed = valid_leading_index_count(self.table, self.tenant_column, conn)
                    now = time.monotonic()
                    self.report.samples += 1
                    self.report.lock_wait_samples += bool(waiting)
                    if not indexed:
                        self.report.unindexed_samples += 1
                        self.report.unindexed_seconds += now - last
                    last = now
                    time.sleep(0.002)
        finally:
            conn.close()
