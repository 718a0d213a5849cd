"""Benchmark: building a tenant index while the application writes, plain vs concurrent.

The seed's ``idx_tickets_tenant_status (tenant_id, status)`` is built twice on the same
``tickets`` table (``--rows`` rows, default 1,000,000) while a writer thread inserts tickets
one per transaction, as an application would:

* **plain**: ``CREATE INDEX`` (what a migration without ``AddIndexConcurrently`` runs): it
  holds a SHARE lock, so every insert waits until the build ends;
* **concurrent**: ``tenant_indexes.build.build_index_concurrently()``, the retry-safe
  ``CREATE INDEX CONCURRENTLY`` that ``migrate`` runs for the seed indexes.

Prints, for each way, the build's wall time, the writer's longest stall, its median and p99
insert latency and how many inserts completed during the build; then the ratios and the
machine. Not part of the test run: timings depend on the machine.

    .venv-django5.2/bin/python benchmarks/bench_online_build.py                  # embedded PG 18
    createdb -h 127.0.0.1 -U postgres ti_bench_build   # DATABASE_URL must name an existing database
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ti_bench_build \\
        .venv-django5.2/bin/python benchmarks/bench_online_build.py --rows 2000000
"""

from __future__ import annotations

import argparse

import _common

INDEX_NAME = "idx_tickets_tenant_status"


def load_rows(rows: int, tenants: int) -> None:
    """Tenants, one customer per tenant, ``rows`` tickets; reused when already there."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tickets")
        if cursor.fetchone()[0] == rows:
            return
        cursor.execute("TRUNCATE tickets, customers, tenants CASCADE")
        cursor.execute(
            "INSERT INTO tenants (id, name, slug, created_at)"
            " SELECT md5(i::text)::uuid, 'Tenant ' || i, 't' || i, now()"
            " FROM generate_series(1, %s) AS i",
            [tenants],
        )
        cursor.execute(
            "INSERT INTO customers (tenant_id, name, email, status, created_at)"
            " SELECT id, 'Customer', 'c@example.com', 'active', now() FROM tenants"
        )
        cursor.execute(
            "INSERT INTO tickets (tenant_id, customer_id, subject, status, priority,"
            " created_at, updated_at)"
            " SELECT c.tenant_id, c.id, 'Ticket ' || i,"
            " (ARRAY['open','pending','resolved','closed'])[1 + i %% 4], 'normal', now(), now()"
            " FROM generate_series(1, %s) AS i"
            " JOIN customers c ON c.id = (SELECT min(id) FROM customers) + i %% %s",
            [rows, tenants],
        )
        cursor.execute("VACUUM ANALYZE tickets")


def build_once(way: str) -> dict[str, float]:
    from django.db import connection

    from tenant_indexes.helpdesk.models import Ticket

    (index,) = [ix for ix in Ticket._meta.indexes if ix.name == INDEX_NAME]
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, tenant_id FROM customers ORDER BY id LIMIT 1")
        customer_id, tenant_id = cursor.fetchone()
    writer = _common.Writer(
        "INSERT INTO tickets (tenant_id, customer_id, subject, status, priority,"
        " created_at, updated_at)"
        " VALUES (%s, %s, 'written during the build', 'open', 'high', now(), now())",
        lambda n: [tenant_id, customer_id],
    )
    return _common.build_under_writer(way, Ticket, index, writer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    _common.configure(
        "tenant_indexes_bench_build",
        apps=("tenant_indexes.helpdesk",),
        TENANT_INDEXES=_common.QUIET_BUILDS,
    )
    from django.core.management import call_command

    call_command("migrate", "tenant_indexes_helpdesk", verbosity=0)
    load_rows(args.rows, args.tenants)
    print(f"Machine: {_common.machine()}; PostgreSQL {_common.server_version()}")
    print(f"tickets: {args.rows:,} rows over {args.tenants:,} tenants; index {INDEX_NAME}")
    print(f"median of {args.repeat} builds per way, a writer inserting one ticket per transaction")
    results: dict[str, list[dict[str, float]]] = {"plain": [], "concurrent": []}
    for _ in range(args.repeat):
        for way in results:
            results[way].append(build_once(way))
    summary = _common.print_builds(results)
    plain, conc = summary["plain"], summary["concurrent"]
    stall_ratio = plain["max_stall_ms"] / conc["max_stall_ms"]
    print(
        f"concurrent/plain build time: {conc['build_s'] / plain['build_s']:.2f}x; "
        f"longest writer stall: plain {plain['max_stall_ms']:.0f} ms vs concurrent "
        f"{conc['max_stall_ms']:.0f} ms ({stall_ratio:.0f}x shorter)"
    )


if __name__ == "__main__":
    main()
