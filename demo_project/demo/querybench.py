"""The seed's typical tenant queries, timed with the tenant indexes present and dropped.

Both measurements run on the same data in the same database: the "without" side drops the
seed's eleven tenant indexes inside a transaction, measures, and rolls back, which restores
the indexes instantly without a rebuild (PostgreSQL's DDL is transactional). Meanwhile that
transaction holds ACCESS EXCLUSIVE locks on the seed's tables: run it on a demo database.
Nothing here prints; ``benchmarks/bench_tenant_queries.py`` renders the result.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Iterator
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet

from tenant_indexes.helpdesk.models import AuditLog, Customer, Message, Ticket

SEED_TENANT_INDEXES = (
    "idx_customers_tenant_id",
    "idx_customers_tenant_status",
    "idx_tickets_tenant_id",
    "idx_tickets_tenant_status",
    "idx_messages_tenant_id",
    "idx_messages_ticket_tenant",
    "idx_users_tenant_id",
    "idx_files_tenant_id",
    "idx_integration_credentials_tenant_id",
    "idx_audit_logs_tenant_id",
    "idx_usage_metrics_tenant_id",
)


@dataclasses.dataclass(frozen=True)
class BenchQuery:
    """One typical query: a label, the table it reads and the ORM queryset."""

    label: str
    table: str
    queryset: QuerySet


@dataclasses.dataclass(frozen=True)
class ScanNode:
    """The plan node that reads the query's table."""

    node_type: str  # "Seq Scan", "Index Scan", "Bitmap Heap Scan", ...
    index_name: str | None
    parallel_workers: int

    def __str__(self) -> str:
        text = self.node_type
        if self.index_name:
            text += f" {self.index_name}"
        if self.parallel_workers:
            text = f"Parallel {text} ({self.parallel_workers} workers)"
        return text


@dataclasses.dataclass(frozen=True)
class Timing:
    """One query on one side: client round trips (execute + fetch) and server execution."""

    scan: ScanNode
    rows: int
    median_ms: float  # client: what the application waits for
    server_median_ms: float  # EXPLAIN ANALYZE's Execution Time: no network, no Python
    samples_ms: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class QueryResult:
    label: str
    table: str
    without_indexes: Timing
    with_indexes: Timing

    @property
    def ratio(self) -> float:
        """How many times faster the indexed query is, client-side."""
        return self.without_indexes.median_ms / max(self.with_indexes.median_ms, 1e-6)

    @property
    def server_ratio(self) -> float:
        """How many times faster the indexed query is, in server execution time."""
        return self.without_indexes.server_median_ms / max(self.with_indexes.server_median_ms, 1e-6)


@dataclasses.dataclass(frozen=True)
class Machine:
    cpu_model: str
    cores: int
    server_version: str
    settings: dict[str, str]
    table_rows: dict[str, int]
    table_sizes: dict[str, str]


@dataclasses.dataclass(frozen=True)
class BenchResult:
    machine: Machine
    tenant_id: str
    tenant_tickets: int
    tenant_rank: str
    tenants: int
    repeat: int
    results: tuple[QueryResult, ...]


class BenchError(Exception):
    """The benchmark cannot run (no data, not PostgreSQL)."""


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


REPORTED_SETTINGS = (
    "max_parallel_workers_per_gather",
    "jit",
    "shared_buffers",
    "work_mem",
    "effective_cache_size",
    "random_page_cost",
)


def machine_info() -> Machine:
    """CPU, cores, PostgreSQL version and the planner settings that change the picture."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        settings = {}
        for name in REPORTED_SETTINGS:
            cursor.execute(f"SHOW {name}")
            settings[name] = cursor.fetchone()[0]
        cursor.execute(
            "SELECT c.relname, c.reltuples::bigint, pg_size_pretty(pg_table_size(c.oid)) "
            "FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
            "AND c.relname = ANY(%s) ORDER BY c.relname",
            [["tickets", "messages", "customers", "audit_logs"]],
        )
        rows, sizes = {}, {}
        for name, count, size in cursor.fetchall():
            rows[name], sizes[name] = int(count), size
    return Machine(cpu_model(), os.cpu_count() or 0, version, settings, rows, sizes)


def pick_tenant(which: str = "median") -> tuple[str, int, int]:
    """``(tenant id, its tickets, number of tenants)`` for the median or largest tenant."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tenant_id::text, count(*) FROM tickets GROUP BY tenant_id "
            "ORDER BY count(*), tenant_id"
        )
        sizes = cursor.fetchall()
    if not sizes:
        raise BenchError("No tickets: load data first (manage.py seed_demo_data).")
    if which == "largest":
        tenant_id, tickets = sizes[-1]
    else:
        tenant_id, tickets = sizes[len(sizes) // 2]
    return tenant_id, int(tickets), len(sizes)


def typical_queries(tenant_id: str) -> list[BenchQuery]:
    """The seed's typical tenant queries, as the ORM builds them (``for_tenant``)."""
    ticket_id = (
        Ticket.objects.for_tenant(tenant_id).order_by("id").values_list("id", flat=True).first()
    )
    return [
        BenchQuery(
            "tenant's open tickets",
            "tickets",
            Ticket.objects.for_tenant(tenant_id).filter(status=Ticket.Status.OPEN),
        ),
        BenchQuery("tenant's customers", "customers", Customer.objects.for_tenant(tenant_id)),
        BenchQuery(
            "messages of a ticket",
            "messages",
            Message.objects.for_tenant(tenant_id).filter(ticket_id=ticket_id),
        ),
        BenchQuery(
            "tenant's audit logs",
            "audit_logs",
            AuditLog.objects.for_tenant(tenant_id).order_by("-created_at"),
        ),
    ]


def _walk(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _walk(child)


def scan_node(queryset: QuerySet, table: str) -> ScanNode:
    """EXPLAIN the queryset and return the node that reads ``table``.

    A bitmap scan is reported as its heap node plus the index its child scans.
    """
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        raw = cursor.fetchone()[0]
    plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
    workers = max((n.get("Workers Planned", 0) for n in _walk(plan)), default=0)
    for node in _walk(plan):
        if node.get("Relation Name") != table:
            continue
        index = node.get("Index Name")
        if node["Node Type"] == "Bitmap Heap Scan":
            index = next((c.get("Index Name") for c in _walk(node) if c.get("Index Name")), None)
        return ScanNode(node["Node Type"], index, workers)
    raise BenchError(f"No scan of {table} in the plan of: {sql}")


def _time(queryset: QuerySet, table: str, repeat: int) -> Timing:
    sql, params = queryset.query.sql_with_params()
    scan = scan_node(queryset, table)
    samples = []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)  # warm-up: caches, plan
        rows = len(cursor.fetchall())
        for _ in range(repeat):
            started = time.perf_counter()
            cursor.execute(sql, params)
            cursor.fetchall()
            samples.append((time.perf_counter() - started) * 1000)
        server = []
        for _ in range(repeat):
            cursor.execute(f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}", params)
            raw = cursor.fetchone()[0]
            server.append((raw if isinstance(raw, list) else json.loads(raw))[0]["Execution Time"])
    return Timing(scan, rows, statistics.median(samples), statistics.median(server), tuple(samples))


def _set_session(parallel_workers: int | None, jit: str | None) -> None:
    with connection.cursor() as cursor:
        if parallel_workers is not None:
            cursor.execute(f"SET max_parallel_workers_per_gather = {int(parallel_workers)}")
        if jit is not None:
            cursor.execute(f"SET jit = {'on' if jit == 'on' else 'off'}")


def run_benchmark(
    *,
    repeat: int = 7,
    tenant: str = "median",
    parallel_workers: int | None = None,
    jit: str | None = None,
) -> BenchResult:
    """Time the typical queries without and with the seed's tenant indexes.

    Args:
        repeat: timed runs per query and side (after one warm-up run); the median is kept.
        tenant: ``"median"`` or ``"largest"`` tenant by number of tickets.
        parallel_workers: ``SET max_parallel_workers_per_gather`` for the session (None:
            the server's setting). Parallel sequential scans shorten the "without" side.
        jit: ``"on"`` / ``"off"`` for the session (None: the server's setting).
    """
    if connection.vendor != "postgresql":
        raise BenchError("The benchmark needs PostgreSQL.")
    _set_session(parallel_workers, jit)
    tenant_id, tickets, tenants = pick_tenant(tenant)
    queries = typical_queries(tenant_id)
    with_indexes = {q.label: _time(q.queryset, q.table, repeat) for q in queries}
    with transaction.atomic():
        qn = connection.ops.quote_name
        with connection.cursor() as cursor:
            for name in SEED_TENANT_INDEXES:
                cursor.execute(f"DROP INDEX IF EXISTS {qn(name)}")
        without = {q.label: _time(q.queryset, q.table, repeat) for q in queries}
        # Roll back: the indexes come back as they were, without a rebuild.
        transaction.set_rollback(True)
    return BenchResult(
        machine=machine_info(),
        tenant_id=tenant_id,
        tenant_tickets=tickets,
        tenant_rank=tenant,
        tenants=tenants,
        repeat=repeat,
        results=tuple(
            QueryResult(q.label, q.table, without[q.label], with_indexes[q.label]) for q in queries
        ),
    )
