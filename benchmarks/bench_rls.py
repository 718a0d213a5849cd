#!/usr/bin/env python
"""Time the median tenant's ticket queries: scoped ORM alone, with RLS and its index, without it.

Usage (from the project root; DATABASE_URL or the embedded PostgreSQL, like manage.py)::

    python benchmarks/bench_rls.py --repeat 7

It builds its own table ``bench_rls_tickets`` (2,000,000 tickets over 2,000 tenants, skewed
like real tenants, with the help desk's two tenant indexes ``(tenant_id)`` and ``(tenant_id,
status)``; kept between runs unless ``--drop``), a non-owner role ``bench_rls_app``, and runs
two scoped ORM SELECTs of the median tenant, each three ways, each run in its own transaction
as that role. The queries:

- ``page``: the help desk's ticket list, one page: ``filter(status="open")
  .order_by("-created_at")[:50]`` (the query the policy is paid on, request after request);
- ``all``: every ticket of the tenant, ``values_list("id", "status", "subject")`` (about 700
  rows for the median tenant, so the client time is mostly the ORM building rows).

The sides:

- (a) the scoped ORM, no row-level security on the table;
- (b) row-level security on (the tenant policy of ``tenant_indexes.rls``) with the tenant index;
- (c) row-level security on, the tenant indexes dropped (in a transaction that is rolled back).

It prints the machine, the plan node of each side, the medians and the ratios (b)/(a) and
(c)/(b). Not part of the test suite (no timing assertions there).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent
TABLE = "bench_rls_tickets"
INDEXES = ("bench_rls_tickets_tenant_id", "bench_rls_tickets_tenant_status")
ROLE = "bench_rls_app"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="Timed runs per side (7).")
    parser.add_argument("--tickets", type=int, default=2_000_000)
    parser.add_argument("--tenants", type=int, default=2_000)
    parser.add_argument(
        "--queries",
        nargs="+",
        choices=("page", "all"),
        default=["page", "all"],
        help="Which queries to time (both).",
    )
    parser.add_argument("--drop", action="store_true", help="Drop the table and role afterwards.")
    return parser.parse_args(argv)


def _sql(statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def build_table(tickets: int, tenants: int) -> None:
    """The ticket table, filled once: tenant sizes follow a square law (a few large ones)."""
    exists = _sql(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass(%s) "
        "AND attname = 'created_at'",
        [TABLE],
    )[0][0]
    if exists and _sql(f"SELECT count(*) FROM {TABLE}")[0][0] == tickets:
        return
    _sql(f"DROP TABLE IF EXISTS {TABLE}")
    _sql(
        f"CREATE TABLE {TABLE} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "tenant_id bigint NOT NULL, status text NOT NULL, subject text NOT NULL, "
        "created_at timestamptz NOT NULL)"
    )
    _sql(
        f"INSERT INTO {TABLE} (tenant_id, status, subject, created_at) "
        "SELECT 1 + floor(%s * power(random(), 2))::bigint, "
        "(ARRAY['open', 'pending', 'closed'])[1 + i %% 3], 'Ticket ' || i, "
        "timestamptz '2026-01-01' + i * interval '10 seconds' "
        "FROM generate_series(1, %s) AS i",
        [tenants, tickets],
    )
    _sql(f"CREATE INDEX {INDEXES[0]} ON {TABLE} (tenant_id)")
    _sql(f"CREATE INDEX {INDEXES[1]} ON {TABLE} (tenant_id, status)")
    _sql(f"VACUUM ANALYZE {TABLE}")


def prepare_role() -> None:
    if not _sql("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE]):
        _sql(f"CREATE ROLE {ROLE} NOLOGIN")
    _sql(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
    _sql(f"GRANT SELECT ON {TABLE} TO {ROLE}")


def median_tenant() -> tuple[int, int, int]:
    rows = _sql(f"SELECT tenant_id, count(*) FROM {TABLE} GROUP BY 1 ORDER BY 2, 1")
    tenant, count = rows[len(rows) // 2]
    return int(tenant), int(count), len(rows)


def bench_model() -> Any:
    from django.db import models

    from tenant_indexes import TenantScopedManager

    class BenchTicket(models.Model):  # noqa: DJ008 - never printed
        tenant_id = models.BigIntegerField()
        status = models.TextField()
        subject = models.TextField()
        created_at = models.DateTimeField()

        objects = TenantScopedManager()

        class Meta:
            app_label = "tenant_indexes"
            db_table = TABLE
            managed = False

    return BenchTicket


def _scan_node(plan: str) -> str:
    for line in plan.splitlines():
        if "Scan" in line:
            return line.strip().lstrip("-> ").split("  (")[0]
    return plan.splitlines()[0].strip()


def query_of(model: Any, name: str) -> Any:
    """The scoped queryset of one benchmark query (built outside any scope: bound when run)."""
    if name == "page":
        return model.objects.filter(status="open").order_by("-created_at")[:50]
    return model.objects.values_list("id", "status", "subject")


def time_side(
    model: Any, query: str, tenant: int, repeat: int, rls: bool
) -> tuple[float, float, str, int]:
    """Median client ms and server ms of one scoped SELECT, each run in its own transaction
    as the app role."""
    from django.db import transaction

    from tenant_indexes import tenant_context
    from tenant_indexes.rls import set_rls_tenant

    timings, server, rows, plan = [], [], 0, ""
    for run in range(repeat + 1):  # the first run warms the cache
        with transaction.atomic(), tenant_context(tenant):
            _sql(f"SET LOCAL ROLE {ROLE}")
            if rls:
                set_rls_tenant(tenant)
            qs = query_of(model, query)
            if run == 0:
                plan = qs.explain()
            started = time.perf_counter()
            rows = len(list(qs))
            elapsed = (time.perf_counter() - started) * 1000
            analyzed = qs.explain(analyze=True)
        if run:
            timings.append(elapsed)
            line = next(x for x in analyzed.splitlines() if x.startswith("Execution Time"))
            server.append(float(line.split(":")[1].split()[0]))
    return statistics.median(timings), statistics.median(server), _scan_node(plan), rows


def run_query(model: Any, query: str, tenant: int, repeat: int, predicate: str) -> None:
    """Time one query three ways and print its table and ratios."""
    from django.db import transaction

    from tenant_indexes.rls import POLICY_NAME

    _sql(f"ALTER TABLE {TABLE} DISABLE ROW LEVEL SECURITY")
    _sql(f"DROP POLICY IF EXISTS {POLICY_NAME} ON {TABLE}")
    a = time_side(model, query, tenant, repeat, rls=False)
    _sql(f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY")
    _sql(f"CREATE POLICY {POLICY_NAME} ON {TABLE} USING {predicate}")
    try:
        b = time_side(model, query, tenant, repeat, rls=True)
        with transaction.atomic():
            for index in INDEXES:
                _sql(f"DROP INDEX {index}")
            c = time_side(model, query, tenant, repeat, rls=True)
            transaction.set_rollback(True)
    finally:
        _sql(f"DROP POLICY IF EXISTS {POLICY_NAME} ON {TABLE}")
        _sql(f"ALTER TABLE {TABLE} DISABLE ROW LEVEL SECURITY")
    print()
    print(f"Query {query!r}: {QUERY_TEXT[query]}")
    print(f"{'side':<28} {'plan node':<50} {'rows':>5} {'client ms':>10} {'server ms':>10}")
    for name, (ms, server_ms, plan, rows) in (
        ("(a) scoped ORM, no RLS", a),
        ("(b) RLS + tenant index", b),
        ("(c) RLS, no tenant index", c),
    ):
        print(f"{name:<28} {plan[:50]:<50} {rows:>5} {ms:>10.2f} {server_ms:>10.3f}")
    print(f"(b)/(a): client {b[0] / a[0]:.2f}x, server {b[1] / a[1]:.2f}x   (target: within 1.2x)")
    print(f"(c)/(b): client {c[0] / b[0]:.0f}x, server {c[1] / b[1]:.0f}x   (target: >= 100x)")


QUERY_TEXT = {
    "page": 'filter(status="open").order_by("-created_at")[:50]',
    "all": 'values_list("id", "status", "subject")',
}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(PROJECT_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")
    import django

    django.setup()
    from django.db import connection
    from django.db.utils import OperationalError

    from demo_project.demo.querybench import cpu_model
    from tenant_indexes.rls import policy_predicate

    if connection.vendor != "postgresql":
        print("Cannot run the benchmark: it needs PostgreSQL.", file=sys.stderr)
        return 2
    try:
        connection.ensure_connection()
    except OperationalError as e:
        print(f"Cannot run the benchmark: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    build_table(args.tickets, args.tenants)
    prepare_role()
    print(f"Table ready in {time.perf_counter() - started:.1f} s")
    model = bench_model()
    tenant, tenant_rows, tenants = median_tenant()
    version = _sql("SHOW server_version")[0][0]
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores; PostgreSQL {version}")
    print(
        f"Data: {args.tickets:,} tickets over {tenants:,} tenants; the median tenant "
        f"({tenant}) has {tenant_rows:,} tickets; median of {args.repeat} runs after a warm-up"
    )
    predicate = policy_predicate(model, connection)
    print(
        "client ms: the ORM round trip (execute + fetch + build rows); server ms: EXPLAIN "
        "ANALYZE Execution Time of the same SELECT"
    )
    for query in args.queries:
        run_query(model, query, tenant, args.repeat, predicate)
    if args.drop:
        _sql(f"DROP TABLE {TABLE}")
        _sql(f"DROP OWNED BY {ROLE}")
        _sql(f"DROP ROLE {ROLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
